//! Peer text made safe to show: [`Escaped`].
//!
//! Whatever the peer writes — a greeting, a reply text, a capability name, an
//! `[ALERT]`, a referral, a certificate name — may hold bytes that a terminal
//! or a log viewer acts on instead of showing: `ESC [31m` recolours the
//! screen, a bare CR or a backspace rewrites what the user already read, a
//! right-to-left override (U+202E) reorders it (terminal injection, threat
//! class 6 "UI spoofing" in `docs/threat-model.md`; Trojan Source,
//! CVE-2021-42574). Everything this crate and its tools print or quote from
//! the peer goes through [`Escaped`], one implementation for the whole crate.
//!
//! # The scheme
//!
//! The output is the input with these replaced, and nothing else changed
//! (printable ASCII and printable UTF-8 pass through as they are):
//!
//! | input | shown as |
//! |---|---|
//! | `\` | `\\` (so every escape below is unambiguous) |
//! | TAB, CR, LF, NUL | `\t`, `\r`, `\n`, `\0` |
//! | other C0 controls U+0001–U+001F (ESC, backspace, …) and DEL U+007F | `\u{1b}`, `\u{8}`, `\u{7f}` |
//! | C1 controls U+0080–U+009F (CSI U+009B, NEL U+0085, …) | `\u{9b}` |
//! | bidirectional controls: embeddings and overrides U+202A–U+202E, isolates U+2066–U+2069, marks U+200E, U+200F, U+061C | `\u{202e}` |
//! | line and paragraph separators U+2028, U+2029 | `\u{2028}` |
//! | every other invisible format character (Unicode category Cf: soft hyphen U+00AD, zero-width space/joiners U+200B–U+200D, word joiner U+2060–U+2064, U+206A–U+206F, BOM U+FEFF, U+FFF9–U+FFFB, tag characters U+E0001, U+E0020–U+E007F, …) | `\u{200b}` |
//! | an octet that is not part of valid UTF-8 | `\xff` (two lower-case hex digits) |
//!
//! This is Rust's `escape_debug` form for characters (without escaping
//! quotes), plus `\xHH` for octets that are not characters at all, so
//! `\u{80}` (the C1 control, valid UTF-8 `C2 80`) and `\x80` (a stray octet)
//! stay distinct. The output holds no control character, no
//! bidirectional control and no invisible format character, whatever the
//! input. (Combining marks and look-alike letters are shown as they are:
//! they are visible, and telling scripts apart is the display's job.)
//!
//! ```
//! use starttls::Escaped;
//!
//! let greeting = b"220 \x1b[31;1;4mmx.example\xff \xe2\x80\xae ok\r\n";
//! assert_eq!(
//!     Escaped::new(greeting).to_string(),
//!     r"220 \u{1b}[31;1;4mmx.example\xff \u{202e} ok\r\n"
//! );
//! assert_eq!(Escaped::new("C:\\dir").to_string(), r"C:\\dir");
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// A `Display` adapter that shows peer bytes (or a string) with every
/// control character, bidirectional control and invalid UTF-8 octet as a
/// visible escape. See the [module docs](crate::escape) for the scheme.
///
/// Built from anything that is bytes: `&[u8]`, `&str`, `&Bytes`,
/// `&String`, `&Vec<u8>` ([`Escaped::new`]), or owning its bytes
/// ([`Escaped::owned`]), as [`Received::escaped`](crate::Received::escaped)
/// returns for texts that are not stored contiguously.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escaped<'a>(Cow<'a, [u8]>);

impl<'a> Escaped<'a> {
    /// Escapes `text` when displayed.
    pub fn new<T: AsRef<[u8]> + ?Sized>(text: &'a T) -> Escaped<'a> {
        Escaped(Cow::Borrowed(text.as_ref()))
    }

    /// Escapes `text`, which the adapter owns, when displayed.
    pub fn owned(text: Vec<u8>) -> Escaped<'static> {
        Escaped(Cow::Owned(text))
    }

    /// The bytes as given, unescaped.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// One adapter per CRLF-terminated line: the text split at each CRLF
    /// (the CRLFs themselves dropped; a final CRLF does not start an empty
    /// line). A bare CR or LF stays inside its line, escaped. For printing
    /// a multi-line reply one line at a time.
    ///
    /// ```
    /// use starttls::Escaped;
    ///
    /// let reply = b"250-mx\r\n250-A\rB\r\n250 C\n\r\n";
    /// let lines: Vec<String> = Escaped::new(reply).lines().map(|l| l.to_string()).collect();
    /// assert_eq!(lines, ["250-mx", r"250-A\rB", r"250 C\n"]);
    /// ```
    pub fn lines(&self) -> impl Iterator<Item = Escaped<'_>> + '_ {
        let text: &[u8] = &self.0;
        let text = text.strip_suffix(b"\r\n").unwrap_or(text);
        let mut rest = Some(text);
        std::iter::from_fn(move || {
            let current = rest?;
            if self.0.is_empty() {
                rest = None;
                return None;
            }
            match memchr::memmem::find(current, b"\r\n") {
                Some(at) => {
                    rest = current.get(at + 2..);
                    Some(Escaped::new(current.get(..at).unwrap_or_default()))
                }
                None => {
                    rest = None;
                    Some(Escaped::new(current))
                }
            }
        })
    }
}

impl<'a> From<&'a [u8]> for Escaped<'a> {
    fn from(text: &'a [u8]) -> Self {
        Escaped::new(text)
    }
}

impl<'a> From<&'a str> for Escaped<'a> {
    fn from(text: &'a str) -> Self {
        Escaped::new(text)
    }
}

/// A message from the peer that has a text as written on the wire: what
/// [`Received::escaped`](crate::Received::escaped) shows.
pub trait PeerText {
    /// The message as the peer wrote it (or as it is written back, for a
    /// parsed listing), without its final CRLF; the CRLFs between the lines
    /// of a multi-line reply are kept (see [`Escaped::lines`]).
    fn peer_text(&self) -> Cow<'_, [u8]>;
}

/// Drops one final CRLF.
fn without_crlf(mut text: Vec<u8>) -> Vec<u8> {
    if text.ends_with(b"\r\n") {
        text.truncate(text.len() - 2);
    }
    text
}

impl PeerText for bytes::Bytes {
    fn peer_text(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.strip_suffix(b"\r\n").unwrap_or(self))
    }
}

impl PeerText for crate::smtp::Reply {
    fn peer_text(&self) -> Cow<'_, [u8]> {
        self.raw().peer_text()
    }
}

impl PeerText for crate::smtp::Capabilities {
    /// The EHLO reply, without the greeting text (which is not kept).
    fn peer_text(&self) -> Cow<'_, [u8]> {
        Cow::Owned(without_crlf(self.to_reply(b"").raw().to_vec()))
    }
}

impl PeerText for crate::imap::StatusResponse {
    fn peer_text(&self) -> Cow<'_, [u8]> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Cow::Owned(out)
    }
}

impl PeerText for crate::imap::Response {
    fn peer_text(&self) -> Cow<'_, [u8]> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Cow::Owned(without_crlf(out))
    }
}

impl PeerText for crate::imap::Capabilities {
    fn peer_text(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl PeerText for crate::pop3::StatusLine {
    fn peer_text(&self) -> Cow<'_, [u8]> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Cow::Owned(without_crlf(out))
    }
}

impl PeerText for crate::pop3::Capabilities {
    /// The listing's lines, CRLF between them.
    fn peer_text(&self) -> Cow<'_, [u8]> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Cow::Owned(without_crlf(out))
    }
}

/// The escape for `c`, if it is one the scheme replaces.
fn escape_char(c: char) -> Option<Escape> {
    Some(match c {
        '\\' => Escape::Short('\\'),
        '\t' => Escape::Short('t'),
        '\r' => Escape::Short('r'),
        '\n' => Escape::Short('n'),
        '\0' => Escape::Short('0'),
        '\u{1}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => Escape::Unicode(c),
        // Bidirectional controls, line and paragraph separators, and every
        // other format character (Unicode general category Cf): invisible,
        // so `mx.exa<U+200B>mple.org` would look like `mx.example.org`.
        '\u{ad}'
        | '\u{600}'..='\u{605}'
        | '\u{61c}'
        | '\u{6dd}'
        | '\u{70f}'
        | '\u{890}'..='\u{891}'
        | '\u{8e2}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}'
        | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}' => Escape::Unicode(c),
        _ => return None,
    })
}

enum Escape {
    /// `\` and one character.
    Short(char),
    /// `\u{hex}`.
    Unicode(char),
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut start = 0;
            for (i, c) in valid.char_indices() {
                let Some(escape) = escape_char(c) else {
                    continue;
                };
                f.write_str(valid.get(start..i).unwrap_or_default())?;
                start = i + c.len_utf8();
                match escape {
                    Escape::Short(s) => {
                        f.write_char('\\')?;
                        f.write_char(s)?;
                    }
                    Escape::Unicode(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                }
            }
            f.write_str(valid.get(start..).unwrap_or_default())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(b: &[u8]) -> String {
        Escaped::new(b).to_string()
    }

    /// No character a terminal acts on survives.
    fn inert(s: &str) -> bool {
        s.chars().all(|c| escape_char(c).is_none() || c == '\\')
    }

    #[test]
    fn printable_text_is_unchanged() {
        for s in [
            "",
            "220 mx.example.com ESMTP ready",
            "* OK [CAPABILITY IMAP4rev1] Grüße, 世界 — ünïcode",
            "+OK <1896.697170952@dbc.mtview.ca.us>",
            "quotes \" and ' stay",
        ] {
            assert_eq!(show(s.as_bytes()), s);
        }
    }

    #[test]
    fn backslash_is_doubled() {
        assert_eq!(show(br"a\b"), r"a\\b");
        // An input that looks like an escape cannot pass for one.
        assert_eq!(show(br"\u{1b}\x1b"), r"\\u{1b}\\x1b");
        assert_eq!(show(b"\\\x1b"), r"\\\u{1b}");
    }

    #[test]
    fn escape_and_c0_controls() {
        assert_eq!(show(b"\x1b[31;1;4mred"), r"\u{1b}[31;1;4mred");
        assert_eq!(show(b"\x1b]0;title\x07"), r"\u{1b}]0;title\u{7}");
        assert_eq!(show(b"a\x00b\x01c\x1f"), r"a\0b\u{1}c\u{1f}");
        assert_eq!(show(b"\tx"), r"\tx");
        for b in 0u8..0x20 {
            let s = show(&[b]);
            assert!(s.starts_with('\\') && inert(&s), "{b:#x}: {s}");
        }
    }

    #[test]
    fn bare_cr_lf_and_backspace() {
        assert_eq!(show(b"ok\rEVIL"), r"ok\rEVIL");
        assert_eq!(show(b"ok\nEVIL"), r"ok\nEVIL");
        assert_eq!(show(b"ok\r\n"), r"ok\r\n");
        assert_eq!(
            show(b"secure\x08\x08\x08\x08\x08\x08"),
            r"secure\u{8}\u{8}\u{8}\u{8}\u{8}\u{8}"
        );
    }

    #[test]
    fn del_and_c1_controls() {
        assert_eq!(show(b"\x7f"), r"\u{7f}");
        // U+009B CSI is ESC [ in one character; U+0085 NEL is a line break.
        assert_eq!(show("\u{9b}31m".as_bytes()), r"\u{9b}31m");
        assert_eq!(show("a\u{85}b".as_bytes()), r"a\u{85}b");
        for c in '\u{80}'..='\u{9f}' {
            assert_eq!(
                show(c.to_string().as_bytes()),
                format!("\\u{{{:x}}}", u32::from(c))
            );
        }
        assert_eq!(show("\u{a0}é".as_bytes()), "\u{a0}é");
    }

    #[test]
    fn bidirectional_controls() {
        assert_eq!(
            show("user\u{202e}gpj.exe".as_bytes()),
            r"user\u{202e}gpj.exe"
        );
        for c in ('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200e}', '\u{200f}', '\u{61c}', '\u{2028}', '\u{2029}'])
        {
            let s = show(format!("a{c}b").as_bytes());
            assert_eq!(s, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        // Neighbours that are not format characters stay.
        assert_eq!(
            show("\u{2029}\u{202f}\u{2065}\u{2070}".as_bytes()),
            "\\u{2029}\u{202f}\u{2065}\u{2070}"
        );
    }

    #[test]
    fn invisible_format_characters() {
        // `mx.exa<ZWSP>mple.org` must not look like `mx.example.org`.
        assert_eq!(
            show("mx.exa\u{200b}mple.org".as_bytes()),
            r"mx.exa\u{200b}mple.org"
        );
        for c in [
            '\u{ad}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{2064}',
        ]
        .into_iter()
        .chain('\u{206a}'..='\u{206f}')
        .chain([
            '\u{feff}',
            '\u{fff9}',
            '\u{fffb}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}',
        ])
        .chain(['\u{600}', '\u{180e}', '\u{1d173}'])
        {
            let s = show(format!("a{c}b").as_bytes());
            assert_eq!(s, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
    }

    #[test]
    fn invalid_utf8_octets() {
        assert_eq!(show(b"a\xffb"), r"a\xffb");
        assert_eq!(show(b"\x80"), r"\x80");
        // A truncated sequence, an overlong form, a surrogate.
        assert_eq!(show(b"\xe2\x80"), r"\xe2\x80");
        assert_eq!(show(b"\xc0\xaf"), r"\xc0\xaf");
        assert_eq!(show(b"\xed\xa0\x80"), r"\xed\xa0\x80");
        // U+0080 as a character and 0x80 as a stray octet differ.
        assert_ne!(show("\u{80}".as_bytes()), show(b"\x80"));
        // A C1 control or bidi override split across invalid octets is not
        // rebuilt.
        assert_eq!(show(b"\xe2\x80\xae"), r"\u{202e}");
        assert_eq!(show(b"\xe2\x80\xffq"), r"\xe2\x80\xffq");
    }

    #[test]
    fn any_input_comes_out_inert() {
        // Every single octet, every pair around a multi-byte start, and all
        // code points up to U+3000 in text: nothing a terminal acts on.
        let mut inputs: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for a in [0xc2u8, 0xe2, 0xf0, 0x1b, b'\\'] {
            inputs.extend((0..=255u8).map(|b| vec![a, b]));
        }
        inputs.push(
            (0..0x3000u32)
                .filter_map(char::from_u32)
                .collect::<String>()
                .into_bytes(),
        );
        for input in inputs {
            let s = show(&input);
            assert!(inert(&s), "{input:?}: {s:?}");
        }
    }

    #[test]
    fn lines_split_at_crlf_only() {
        let lines =
            |b: &[u8]| -> Vec<String> { Escaped::new(b).lines().map(|l| l.to_string()).collect() };
        assert_eq!(lines(b""), Vec::<String>::new());
        assert_eq!(lines(b"\r\n"), [""]);
        assert_eq!(lines(b"a"), ["a"]);
        assert_eq!(lines(b"a\r\nb\r\n"), ["a", "b"]);
        assert_eq!(lines(b"a\r\n\r\nb"), ["a", "", "b"]);
        assert_eq!(lines(b"a\rb\nc\x1b"), [r"a\rb\nc\u{1b}"]);
    }

    #[test]
    fn every_received_text_has_an_escaped_display() {
        use crate::{Received, Trust};
        use bytes::Bytes;
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let t = Trust::Cleartext;

        let reply = crate::smtp::Reply::parse(b(b"220-a\x1b[2J\r\n220 b\xe2\x80\xae\r\n")).unwrap();
        let r = Received::new(reply, t);
        assert_eq!(r.escaped().to_string(), r"220-a\u{1b}[2J\r\n220 b\u{202e}");
        let lines: Vec<String> = r.escaped().lines().map(|l| l.to_string()).collect();
        assert_eq!(lines, [r"220-a\u{1b}[2J", r"220 b\u{202e}"]);

        let ehlo = crate::smtp::Reply::parse(b(b"250-mx\r\n250 X P\x08\x08Y\r\n")).unwrap();
        let caps = crate::smtp::Capabilities::from_ehlo_reply(&ehlo).unwrap();
        assert_eq!(
            Received::new(caps, t).escaped().to_string(),
            r"250-mx\r\n250 X P\u{8}\u{8}Y"
        );

        let resp = crate::imap::Response::parse(&b(b"* OK [ALERT] \x1b]0;pwned\x07")).unwrap();
        assert_eq!(
            Received::new(resp, t).escaped().to_string(),
            r"* OK [ALERT] \u{1b}]0;pwned\u{7}"
        );
        let status = crate::imap::StatusResponse {
            status: crate::imap::Status::Ok,
            code: None,
            text: b(b"\xc2\x9b31m"),
        };
        assert_eq!(
            Received::new(status, t).escaped().to_string(),
            r"OK \u{9b}31m"
        );
        let icaps = crate::imap::Capabilities::parse(&b(b"IMAP4rev1 X-Y")).unwrap();
        assert_eq!(
            Received::new(icaps, t).escaped().to_string(),
            "IMAP4rev1 X-Y"
        );

        let line = crate::pop3::StatusLine::parse(&b(b"+OK hi\x1b[1A\x08there\xff")).unwrap();
        assert_eq!(line.to_string(), r"+OK hi\u{1b}[1A\u{8}there\xff");
        assert_eq!(
            Received::new(line, t).escaped().to_string(),
            r"+OK hi\u{1b}[1A\u{8}there\xff"
        );
        let pcaps: crate::pop3::Capabilities =
            [crate::pop3::Capability::parse(&b(b"IMPLEMENTATION \x1b[2JEVIL")).unwrap()]
                .into_iter()
                .collect();
        assert_eq!(
            Received::new(pcaps, t).escaped().to_string(),
            r"IMPLEMENTATION \u{1b}[2JEVIL"
        );

        let body = Received::new(b(b"line\x1b\r\n"), t);
        assert_eq!(body.escaped().to_string(), r"line\u{1b}");
    }

    #[test]
    fn client_names_in_smtp_displays_are_escaped() {
        use crate::smtp::command::Host;
        let host = Host::Domain(bytes::Bytes::from_static(b"mx\x1b[2J\xe2\x80\xae"));
        assert_eq!(host.to_string(), r"mx\u{1b}[2J\u{202e}");
        let general = Host::General {
            tag: bytes::Bytes::from_static(b"X\x07"),
            content: bytes::Bytes::from_static(b"\r\n"),
        };
        assert_eq!(general.to_string(), r"[X\u{7}:\r\n]");
        let mailbox = crate::smtp::command::Mailbox {
            local_part: bytes::Bytes::from_static("\"a\\\"\u{202e}\"".as_bytes()),
            domain: host,
        };
        assert_eq!(mailbox.to_string(), r#""a\\"\u{202e}"@mx\u{1b}[2J\u{202e}"#);
    }

    #[test]
    fn from_str_and_bytes() {
        let s = String::from("x\u{202e}");
        let v = s.clone().into_bytes();
        let b = bytes::Bytes::from(v.clone());
        let want = r"x\u{202e}";
        assert_eq!(Escaped::new(&s).to_string(), want);
        assert_eq!(Escaped::new(&v).to_string(), want);
        assert_eq!(Escaped::new(&b).to_string(), want);
        assert_eq!(Escaped::from(s.as_str()).to_string(), want);
        assert_eq!(Escaped::from(v.as_slice()).to_string(), want);
        assert_eq!(Escaped::owned(v).to_string(), want);
    }
}
