//! ESMTP capabilities: the lines of a positive `EHLO`/`LHLO` reply, typed.
//!
//! RFC 5321 §4.1.1.1:
//!
//! ```text
//! ehlo-ok-rsp    = ( "250" SP Domain [ SP ehlo-greet ] CRLF )
//!                  / ( "250-" Domain [ SP ehlo-greet ] CRLF
//!                  *( "250-" ehlo-line CRLF )
//!                  "250" SP ehlo-line CRLF )
//! ehlo-line      = ehlo-keyword *( SP ehlo-param )
//! ehlo-keyword   = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//! ehlo-param     = 1*(%d33-126)
//! ```

use std::io::Write as _;

use bytes::Bytes;

use crate::octets::{Octets, Source};
use crate::smtp::reply::{Reply, ReplyRef};
use crate::smtp::syntax::{digits_value, esmtp_keyword, SyntaxError};

/// One `ehlo-line` of an EHLO/LHLO reply (RFC 5321 §4.1.1.1).
///
/// Keywords are case-insensitive. A known keyword whose parameters do not
/// fit its extension (`SIZE abc`, `STARTTLS now`) is kept as
/// [`Capability::Other`] rather than failing the whole reply.
///
/// Generic over the container of its octets ([`crate::octets`]):
/// `Capability` owns them ([`Bytes`]), `Capability<&[u8]>` (from
/// [`Capability::parse_borrowed`]) borrows the line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Capability<B: Octets = Bytes> {
    /// RFC 1870 `SIZE [1*DIGIT]`: the maximum message size, if given
    /// (0 means no fixed limit).
    Size(Option<u64>),
    /// RFC 2920 `PIPELINING`.
    Pipelining,
    /// RFC 6152 `8BITMIME`.
    EightBitMime,
    /// RFC 6531 `SMTPUTF8`.
    SmtpUtf8,
    /// RFC 3030 `CHUNKING` (`BDAT`).
    Chunking,
    /// RFC 3030 `BINARYMIME`.
    BinaryMime,
    /// RFC 3461 `DSN`.
    Dsn,
    /// RFC 2034 `ENHANCEDSTATUSCODES`.
    EnhancedStatusCodes,
    /// RFC 3207 `STARTTLS`.
    StartTls,
    /// RFC 4954 `AUTH mech *(SP mech)`: the raw space-separated mechanism
    /// list. The pre-standard `AUTH=LOGIN PLAIN` form is read as this too.
    Auth(B),
    /// RFC 8689 `REQUIRETLS`.
    RequireTls,
    /// Any other `ehlo-keyword *( SP ehlo-param )`.
    Other {
        /// The keyword as written.
        keyword: B,
        /// Everything after the keyword and its SP, raw (may be empty).
        params: B,
    },
}

/// The keyword of each parameterless capability.
const FLAGS: [&str; 9] = [
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "BINARYMIME",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "STARTTLS",
    "REQUIRETLS",
];

/// The parameterless capability named `FLAGS[i]`.
fn flag<B: Octets>(i: usize) -> Option<Capability<B>> {
    Some(match i {
        0 => Capability::Pipelining,
        1 => Capability::EightBitMime,
        2 => Capability::SmtpUtf8,
        3 => Capability::Chunking,
        4 => Capability::BinaryMime,
        5 => Capability::Dsn,
        6 => Capability::EnhancedStatusCodes,
        7 => Capability::StartTls,
        8 => Capability::RequireTls,
        _ => return None,
    })
}

impl Capability {
    /// Parses one `ehlo-line` (the text after `250-`/`250 `).
    ///
    /// Lenient where servers are known to differ: trailing spaces are
    /// ignored, parameters may be separated by several spaces and may
    /// contain any reply text, and `AUTH=mech ...` is read as
    /// [`Capability::Auth`]. A line that does not start with a valid
    /// `ehlo-keyword` followed by SP or its end is
    /// [`SyntaxError::InvalidReply`].
    pub fn parse(line: &Bytes) -> Result<Capability, SyntaxError> {
        parse_in(line, line)
    }
}

impl<'a> Capability<&'a [u8]> {
    /// [`Capability::parse`] of a borrowed line: the keyword and parameters
    /// are sub-slices of `line`; nothing is allocated. Same rules, same
    /// errors (the same code).
    pub fn parse_borrowed(line: &'a [u8]) -> Result<Self, SyntaxError> {
        parse_in(line, line)
    }

    /// A copy that owns its octets (an allocation per byte string).
    pub fn into_owned(self) -> Capability {
        self.map_octets(crate::octets::copy)
    }
}

/// The `ehlo-line` grammar, once for both forms: `text` is a part of
/// `src`'s input and the byte strings kept are [`Source::piece`]s of it.
fn parse_in<'a, S: Source<'a>>(src: S, text: &'a [u8]) -> Result<Capability<S::Out>, SyntaxError> {
    let invalid = SyntaxError::InvalidReply {
        reason: "malformed EHLO line (expected keyword [SP params])",
    };
    let end = text.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    let text = text.get(..end).unwrap_or_default();
    let (rest, keyword) = esmtp_keyword(text).map_err(|_| invalid.clone())?;
    let params = match rest {
        [] => rest,
        [b' ', ..] => rest.trim_ascii_start(),
        [b'=', mechs @ ..]
            if keyword.eq_ignore_ascii_case(b"AUTH") && !mechs.trim_ascii_start().is_empty() =>
        {
            return Ok(Capability::Auth(src.piece(mechs.trim_ascii_start())));
        }
        _ => return Err(invalid),
    };
    let is = |name: &str| keyword.eq_ignore_ascii_case(name.as_bytes());
    if params.is_empty() {
        if let Some(cap) = FLAGS.iter().position(|name| is(name)).and_then(flag) {
            return Ok(cap);
        }
        if is("SIZE") {
            return Ok(Capability::Size(None));
        }
    } else if is("SIZE") {
        if let Some(n) = digits_value(params) {
            return Ok(Capability::Size(Some(n)));
        }
    } else if is("AUTH") {
        return Ok(Capability::Auth(src.piece(params)));
    }
    Ok(Capability::Other {
        keyword: src.piece(keyword),
        params: src.piece(params),
    })
}

impl<B: Octets> Capability<B> {
    /// The same capability with its byte strings in another container: `f`
    /// is called on each (the keyword, then the parameters), in wire order.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Capability<C> {
        match self {
            Capability::Size(n) => Capability::Size(n),
            Capability::Pipelining => Capability::Pipelining,
            Capability::EightBitMime => Capability::EightBitMime,
            Capability::SmtpUtf8 => Capability::SmtpUtf8,
            Capability::Chunking => Capability::Chunking,
            Capability::BinaryMime => Capability::BinaryMime,
            Capability::Dsn => Capability::Dsn,
            Capability::EnhancedStatusCodes => Capability::EnhancedStatusCodes,
            Capability::StartTls => Capability::StartTls,
            Capability::Auth(mechs) => Capability::Auth(f(mechs)),
            Capability::RequireTls => Capability::RequireTls,
            Capability::Other { keyword, params } => {
                let keyword = f(keyword);
                Capability::Other {
                    keyword,
                    params: f(params),
                }
            }
        }
    }

    /// The keyword: upper case for the known kinds, as written for `Other`.
    pub fn keyword(&self) -> &[u8] {
        let name = match self {
            Capability::Size(_) => "SIZE",
            Capability::Auth(_) => "AUTH",
            Capability::Other { keyword, .. } => return keyword.as_ref(),
            Capability::Pipelining => "PIPELINING",
            Capability::EightBitMime => "8BITMIME",
            Capability::SmtpUtf8 => "SMTPUTF8",
            Capability::Chunking => "CHUNKING",
            Capability::BinaryMime => "BINARYMIME",
            Capability::Dsn => "DSN",
            Capability::EnhancedStatusCodes => "ENHANCEDSTATUSCODES",
            Capability::StartTls => "STARTTLS",
            Capability::RequireTls => "REQUIRETLS",
        };
        name.as_bytes()
    }

    /// Writes the `ehlo-line` (no reply code, no CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.keyword());
        let params: &[u8] = match self {
            Capability::Size(Some(n)) => {
                // Writing to a Vec cannot fail.
                drop(write!(out, " {n}"));
                return;
            }
            Capability::Auth(mechs) => mechs.as_ref(),
            Capability::Other { params, .. } => params.as_ref(),
            _ => return,
        };
        if !params.is_empty() {
            out.push(b' ');
            out.extend_from_slice(params);
        }
    }
}

/// What a server announced in its positive EHLO/LHLO reply: its domain and
/// its capabilities, in order (RFC 5321 §4.1.1.1 `ehlo-ok-rsp`).
///
/// Generic over the container of its octets ([`crate::octets`]):
/// `Capabilities` owns them, `Capabilities<&[u8]>` (from
/// [`Capabilities::from_ehlo_reply_borrowed`]) borrows the reply's buffer
/// (the list itself is still one `Vec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities<B: Octets = Bytes> {
    domain: B,
    caps: Vec<Capability<B>>,
}

impl Capabilities {
    /// From a positive EHLO/LHLO reply: first line is the greeting domain,
    /// each following line one ehlo-line.
    ///
    /// The reply code must be 250 (the reply's meaning, kept strict). The
    /// listing itself is informational and read tolerantly
    /// (`docs/design.md`, "Tolerant listings, strict boundary"):
    ///
    /// * the domain is the first word of the first line, taken as it is
    ///   (servers do not all send a valid `Domain`), after any leading
    ///   spaces; it may be empty. The greeting text after it is dropped;
    /// * each other line goes through [`Capability::parse`] with leading and
    ///   trailing white space removed; a line that still does not parse (an
    ///   empty line, a keyword with `_` or other octets outside
    ///   `ehlo-keyword`) is skipped, not an error: it cannot be an offer this
    ///   crate acts on. `STARTTLS` is still recognised only as that exact
    ///   keyword (any case) without parameters.
    ///
    /// The `Result` is kept for the reply code.
    pub fn from_ehlo_reply(reply: &Reply) -> Result<Capabilities, SyntaxError> {
        from_ehlo_in(reply.raw(), reply)
    }

    /// Every SASL mechanism of every `AUTH` line, in order, as written. A
    /// server that sends both `AUTH` and `AUTH=` lines lists its mechanisms
    /// twice.
    pub fn auth_mechanisms(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.auth_lists()
            .flat_map(|mechs| split_mechanisms(mechs).map(move |m| mechs.slice_ref(m)))
    }
}

impl<'a> Capabilities<&'a [u8]> {
    /// [`Capabilities::from_ehlo_reply`] of a borrowed reply: the domain,
    /// keywords and parameters are sub-slices of the reply's buffer. Same
    /// rules, same errors (the same code). The list itself is a `Vec` (one
    /// allocation, two for a long reply); to look at the extensions of a
    /// reply without allocating, read [`Capability::parse_borrowed`] line
    /// by line from the borrowed reply's `lines()`.
    pub fn from_ehlo_reply_borrowed(reply: &ReplyRef<'a>) -> Result<Self, SyntaxError> {
        let raw: &'a [u8] = reply.raw();
        from_ehlo_in(raw, reply)
    }

    /// A copy that owns its octets (an allocation per byte string).
    pub fn into_owned(self) -> Capabilities {
        self.map_octets(crate::octets::copy)
    }

    /// [`Capabilities::auth_mechanisms`] of a borrowed list: sub-slices of
    /// the reply's buffer.
    pub fn auth_mechanisms(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.auth_lists()
            .flat_map(|mechs: &&'a [u8]| split_mechanisms(mechs))
    }
}

/// The mechanisms of one `AUTH` line.
fn split_mechanisms(mechs: &[u8]) -> impl Iterator<Item = &[u8]> {
    mechs.split(|&c| c == b' ').filter(|m| !m.is_empty())
}

/// The EHLO listing grammar, once for both forms: `src` is the reply's raw
/// octets.
fn from_ehlo_in<'a, S: Source<'a>, B: Octets>(
    src: S,
    reply: &Reply<B>,
) -> Result<Capabilities<S::Out>, SyntaxError> {
    if reply.code().get() != 250 {
        return Err(SyntaxError::InvalidReply {
            reason: "a positive EHLO reply has code 250",
        });
    }
    let mut lines = crate::smtp::reply::line_texts(src.octets());
    let first = lines.next().unwrap_or_default().trim_ascii_start();
    let domain_len = memchr::memchr(b' ', first).unwrap_or(first.len());
    let caps = lines
        .filter_map(|line| parse_in(src, line.trim_ascii()).ok())
        .collect();
    Ok(Capabilities {
        domain: src.piece(first.get(..domain_len).unwrap_or_default()),
        caps,
    })
}

impl<B: Octets> Capabilities<B> {
    /// An announcement of `domain` with `caps`.
    pub fn new(domain: B, caps: Vec<Capability<B>>) -> Capabilities<B> {
        Capabilities { domain, caps }
    }

    /// The same list with its byte strings in another container: `f` is
    /// called on each (the domain, then each capability's), in wire order.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Capabilities<C> {
        let domain = f(self.domain);
        let caps = self
            .caps
            .into_iter()
            .map(|cap| cap.map_octets(&mut f))
            .collect();
        Capabilities { domain, caps }
    }

    /// Builds the EHLO reply a server sends: code 250, first line `domain`
    /// and, if not empty, SP and `greeting`; then one line per capability.
    pub fn to_reply(&self, greeting: &[u8]) -> Reply {
        let mut first = self.domain.as_ref().to_vec();
        if !greeting.is_empty() {
            first.push(b' ');
            first.extend_from_slice(greeting);
        }
        let mut lines = Vec::with_capacity(self.caps.len() + 1);
        lines.push(first);
        for cap in &self.caps {
            let mut line = Vec::new();
            cap.write_to(&mut line);
            lines.push(line);
        }
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        Reply::new(250, None, &refs)
    }

    /// Adds a capability at the end.
    pub fn push(&mut self, cap: Capability<B>) {
        self.caps.push(cap);
    }

    /// The server's domain, from the first line of the reply.
    pub fn domain(&self) -> &B {
        &self.domain
    }

    /// The capabilities, in the order announced.
    pub fn iter(&self) -> impl Iterator<Item = &Capability<B>> {
        self.caps.iter()
    }

    /// The first capability whose keyword is `keyword` (ASCII
    /// case-insensitive).
    pub fn get(&self, keyword: &str) -> Option<&Capability<B>> {
        self.caps
            .iter()
            .find(|c| c.keyword().eq_ignore_ascii_case(keyword.as_bytes()))
    }

    /// True if a capability has this keyword (ASCII case-insensitive),
    /// typed or not.
    pub fn contains(&self, keyword: &str) -> bool {
        self.get(keyword).is_some()
    }

    fn has(&self, cap: &Capability<B>) -> bool {
        self.caps.contains(cap)
    }

    /// `STARTTLS` was announced (RFC 3207).
    pub fn has_starttls(&self) -> bool {
        self.has(&Capability::StartTls)
    }

    /// `SIZE` was announced: `Some(None)` without a limit, `Some(Some(n))`
    /// with one (RFC 1870).
    pub fn size(&self) -> Option<Option<u64>> {
        self.caps.iter().find_map(|c| match c {
            Capability::Size(n) => Some(*n),
            _ => None,
        })
    }

    /// `SIZE` was announced (RFC 1870).
    pub fn has_size(&self) -> bool {
        self.size().is_some()
    }

    /// `PIPELINING` was announced (RFC 2920).
    pub fn pipelining(&self) -> bool {
        self.has(&Capability::Pipelining)
    }

    /// `PIPELINING` was announced (RFC 2920); same as [`Self::pipelining`].
    pub fn has_pipelining(&self) -> bool {
        self.pipelining()
    }

    /// `8BITMIME` was announced (RFC 6152).
    pub fn has_eight_bit_mime(&self) -> bool {
        self.has(&Capability::EightBitMime)
    }

    /// `SMTPUTF8` was announced (RFC 6531).
    pub fn has_smtp_utf8(&self) -> bool {
        self.has(&Capability::SmtpUtf8)
    }

    /// `CHUNKING` was announced (RFC 3030).
    pub fn has_chunking(&self) -> bool {
        self.has(&Capability::Chunking)
    }

    /// `BINARYMIME` was announced (RFC 3030).
    pub fn has_binary_mime(&self) -> bool {
        self.has(&Capability::BinaryMime)
    }

    /// `DSN` was announced (RFC 3461).
    pub fn has_dsn(&self) -> bool {
        self.has(&Capability::Dsn)
    }

    /// `ENHANCEDSTATUSCODES` was announced (RFC 2034).
    pub fn has_enhanced_status_codes(&self) -> bool {
        self.has(&Capability::EnhancedStatusCodes)
    }

    /// `REQUIRETLS` was announced (RFC 8689).
    pub fn has_require_tls(&self) -> bool {
        self.has(&Capability::RequireTls)
    }

    /// `AUTH` (or the old `AUTH=`) was announced (RFC 4954).
    pub fn has_auth(&self) -> bool {
        self.caps.iter().any(|c| matches!(c, Capability::Auth(_)))
    }

    /// The raw mechanism list of each `AUTH` line.
    fn auth_lists(&self) -> impl Iterator<Item = &B> {
        self.caps.iter().filter_map(|c| match c {
            Capability::Auth(mechs) => Some(mechs),
            _ => None,
        })
    }
}

/// A capability list as a client session keeps it between commands: the
/// EHLO reply as received, in one allocation of its own size, and the three
/// offers the session checks on every command. [`Capabilities`] holds a
/// 72-octet [`Capability`] per line plus, through its `Bytes`, the whole
/// input buffer the reply arrived in; an idle session holds this instead
/// and [expands](Kept::expand) it when asked.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    /// The reply's octets, as [`Reply::raw`] gave them.
    raw: Box<[u8]>,
    pipelining: bool,
    chunking: bool,
    require_tls: bool,
}

impl Kept {
    /// Keeps `caps`, read from `reply`.
    pub(crate) fn new(reply: &Reply, caps: &Capabilities) -> Kept {
        Kept {
            raw: reply.raw().as_ref().into(),
            pipelining: caps.pipelining(),
            chunking: caps.contains("CHUNKING"),
            require_tls: caps.has_require_tls(),
        }
    }

    /// The list again, as [`Capabilities::from_ehlo_reply`] read it.
    pub(crate) fn expand(&self) -> Capabilities {
        // The same octets parsed the same way as when they were kept.
        Reply::parse(Bytes::copy_from_slice(&self.raw))
            .and_then(|reply| Capabilities::from_ehlo_reply(&reply))
            .unwrap_or_else(|_| Capabilities::new(Bytes::new(), Vec::new()))
    }

    /// `PIPELINING` was announced.
    pub(crate) fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// A `CHUNKING` line was announced.
    pub(crate) fn chunking(&self) -> bool {
        self.chunking
    }

    /// `REQUIRETLS` was announced.
    pub(crate) fn require_tls(&self) -> bool {
        self.require_tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::octets::attach;

    fn reply(s: &str) -> Reply {
        Reply::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn caps(s: &str) -> Capabilities {
        Capabilities::from_ehlo_reply(&reply(s)).unwrap()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn cap(s: &str) -> Result<Capability, SyntaxError> {
        Capability::parse(&b(s))
    }

    fn other(k: &str, p: &str) -> Capability {
        Capability::Other {
            keyword: b(k),
            params: b(p),
        }
    }

    fn round_trip(c: &Capabilities) {
        for greeting in [&b""[..], b"greets you", "ünïcode".as_bytes()] {
            let r = c.to_reply(greeting);
            assert_eq!(r.code().get(), 250);
            let back = Capabilities::from_ehlo_reply(&Reply::parse(r.to_bytes()).unwrap());
            assert_eq!(back.as_ref(), Ok(c));
        }
    }

    #[test]
    fn rfc5321_appendix_d() {
        let c = caps(
            "250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n",
        );
        assert_eq!(&c.domain()[..], b"foo.com");
        assert_eq!(
            c.iter().cloned().collect::<Vec<_>>(),
            [
                Capability::EightBitMime,
                Capability::Size(None),
                Capability::Dsn,
                other("HELP", "")
            ]
        );
        assert_eq!(c.size(), Some(None));
        assert!(c.has_size());
        assert!(c.has_eight_bit_mime() && c.has_dsn());
        assert!(!c.has_starttls() && !c.pipelining() && !c.has_auth());
        assert!(c.contains("help") && c.contains("HELP") && c.contains("dsn"));
        assert!(!c.contains("STARTTLS"));
        assert_eq!(c.auth_mechanisms().count(), 0);
        round_trip(&c);
        assert_eq!(
            &c.to_reply(b"greets bar.com").raw()[..],
            b"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n"
        );
    }

    #[test]
    fn typical_server() {
        let c = caps(concat!(
            "250-mx.example.com\r\n",
            "250-PIPELINING\r\n",
            "250-SIZE 10240000\r\n",
            "250-VRFY\r\n",
            "250-ETRN\r\n",
            "250-STARTTLS\r\n",
            "250-AUTH PLAIN LOGIN\r\n",
            "250-AUTH=PLAIN LOGIN\r\n",
            "250-ENHANCEDSTATUSCODES\r\n",
            "250-8BITMIME\r\n",
            "250-DSN\r\n",
            "250-SMTPUTF8\r\n",
            "250-BINARYMIME\r\n",
            "250-REQUIRETLS\r\n",
            "250-XCLIENT NAME ADDR PROTO HELO\r\n",
            "250 CHUNKING\r\n"
        ));
        assert_eq!(&c.domain()[..], b"mx.example.com");
        assert!(c.has_starttls());
        assert!(c.pipelining() && c.has_pipelining());
        assert_eq!(c.size(), Some(Some(10_240_000)));
        assert!(c.has_enhanced_status_codes());
        assert!(c.has_eight_bit_mime());
        assert!(c.has_dsn());
        assert!(c.has_smtp_utf8());
        assert!(c.has_binary_mime());
        assert!(c.has_require_tls());
        assert!(c.has_chunking());
        assert!(c.has_auth());
        assert_eq!(
            c.auth_mechanisms().collect::<Vec<_>>(),
            [b("PLAIN"), b("LOGIN"), b("PLAIN"), b("LOGIN")]
        );
        assert_eq!(
            c.get("xclient"),
            Some(&other("XCLIENT", "NAME ADDR PROTO HELO"))
        );
        assert_eq!(c.get("vrfy"), Some(&other("VRFY", "")));
        assert_eq!(c.get("auth"), Some(&Capability::Auth(b("PLAIN LOGIN"))));
        assert_eq!(c.iter().count(), 15);
        round_trip(&c);
    }

    #[test]
    fn single_line_and_lhlo() {
        let c = caps("250 mx.example.com ESMTP ready\r\n");
        assert_eq!(&c.domain()[..], b"mx.example.com");
        assert_eq!(c.iter().count(), 0);
        round_trip(&c);
        let c = caps("250 [192.0.2.1]\r\n");
        assert_eq!(&c.domain()[..], b"[192.0.2.1]");
        // LHLO replies have the same shape.
        let c = caps("250-lmtp.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
        assert!(c.pipelining() && c.has_enhanced_status_codes());
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let c = caps("250-mx\r\n250-starttls\r\n250-Size 100\r\n250-auth plain\r\n250-auth=login\r\n250 8bitmime\r\n");
        assert!(c.has_starttls());
        assert_eq!(c.size(), Some(Some(100)));
        assert_eq!(
            c.auth_mechanisms().collect::<Vec<_>>(),
            [b("plain"), b("login")]
        );
        assert!(c.has_eight_bit_mime());
        assert!(c.contains("StartTLS"));
        round_trip(&c);
    }

    #[test]
    fn lenient_lines() {
        assert_eq!(cap("PIPELINING "), Ok(Capability::Pipelining));
        assert_eq!(cap("SIZE  100  "), Ok(Capability::Size(Some(100))));
        assert_eq!(cap("SIZE 0"), Ok(Capability::Size(Some(0))));
        assert_eq!(cap("SIZE abc"), Ok(other("SIZE", "abc")));
        assert_eq!(cap("SIZE 1 2"), Ok(other("SIZE", "1 2")));
        assert_eq!(
            cap("SIZE 99999999999999999999999"),
            Ok(other("SIZE", "99999999999999999999999"))
        );
        assert_eq!(cap("STARTTLS now"), Ok(other("STARTTLS", "now")));
        assert_eq!(cap("AUTH"), Ok(other("AUTH", "")));
        assert_eq!(
            cap("AUTH  CRAM-MD5   PLAIN"),
            Ok(Capability::Auth(b("CRAM-MD5   PLAIN")))
        );
        assert_eq!(
            cap("AUTH=LOGIN PLAIN"),
            Ok(Capability::Auth(b("LOGIN PLAIN")))
        );
        assert_eq!(
            cap("X-ÜTF8 é"),
            Err(SyntaxError::InvalidReply {
                reason: "malformed EHLO line (expected keyword [SP params])"
            })
        );
        assert_eq!(cap("X-PARAM é"), Ok(other("X-PARAM", "é")));
        let c = Capabilities::new(b("mx"), vec![Capability::Auth(b(" CRAM-MD5  PLAIN "))]);
        assert_eq!(
            c.auth_mechanisms().collect::<Vec<_>>(),
            [b("CRAM-MD5"), b("PLAIN")]
        );
    }

    #[test]
    fn malformed() {
        for line in [
            "",
            " ",
            " PIPELINING",
            "-X",
            "PIPE_LINING",
            "=x",
            "AUTH=",
            "SIZE=10",
            "X:Y",
            "\u{e9}",
        ] {
            assert!(
                matches!(cap(line), Err(SyntaxError::InvalidReply { .. })),
                "{line:?}"
            );
        }
        // In a listing, an odd line is skipped and white space around a
        // keyword ignored; it never fails the reply.
        for (raw, want) in [
            ("250-mx\r\n250-\r\n250 DSN\r\n", vec![Capability::Dsn]),
            (
                "250-mx\r\n250- DSN\r\n250 HELP\r\n",
                vec![Capability::Dsn, other("HELP", "")],
            ),
            ("250-mx\r\n250 FOO_BAR\r\n", vec![]),
            (
                "250-mx\r\n250-\t STARTTLS \t\r\n250-=x\r\n250 AUTH=\r\n",
                vec![Capability::StartTls],
            ),
        ] {
            let c = Capabilities::from_ehlo_reply(&reply(raw)).unwrap();
            assert_eq!(&c.domain()[..], b"mx", "{raw:?}");
            assert_eq!(c.iter().cloned().collect::<Vec<_>>(), want, "{raw:?}");
        }
        // A missing domain is tolerated too (the domain is informational).
        for (raw, domain) in [
            ("250\r\n", ""),
            ("250 \r\n", ""),
            ("250  mx\r\n", "mx"),
            ("250-\r\n250 DSN\r\n", ""),
        ] {
            let c = Capabilities::from_ehlo_reply(&reply(raw)).unwrap();
            assert_eq!(&c.domain()[..], domain.as_bytes(), "{raw:?}");
        }
        // STARTTLS is still only that keyword.
        for raw in [
            "250-mx\r\n250 STARTTLSX\r\n",
            "250-mx\r\n250 X-STARTTLS\r\n",
            "250-mx\r\n250 START TLS\r\n",
            "250-mx\r\n250 STARTTLS_\r\n",
        ] {
            assert!(
                !Capabilities::from_ehlo_reply(&reply(raw))
                    .unwrap()
                    .has_starttls(),
                "{raw:?}"
            );
        }
        for raw in ["251 mx\r\n", "220 mx\r\n", "502 5.5.1 no EHLO\r\n"] {
            assert_eq!(
                Capabilities::from_ehlo_reply(&reply(raw)),
                Err(SyntaxError::InvalidReply {
                    reason: "a positive EHLO reply has code 250"
                })
            );
        }
    }

    /// What a client keeps is the same list, read again on demand.
    #[test]
    fn kept_expands_to_the_same_list() {
        for raw in [
            "250-mx.example.com greets you\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-CHUNKING\r\n250-AUTH PLAIN LOGIN\r\n250-X-ODD  a  b\r\n250-FOO_BAR\r\n250 REQUIRETLS\r\n",
            "250 mx\r\n",
            "250-\r\n250 DSN\r\n",
        ] {
            let r = reply(raw);
            let c = Capabilities::from_ehlo_reply(&r).unwrap();
            let kept = Kept::new(&r, &c);
            assert_eq!(kept.expand(), c, "{raw:?}");
            assert_eq!(kept.pipelining(), c.pipelining());
            assert_eq!(kept.chunking(), c.contains("CHUNKING"));
            assert_eq!(kept.require_tls(), c.has_require_tls());
            // One allocation of the reply's size, nothing shared with the
            // buffer it came in.
            assert_eq!(kept.raw.len(), raw.len());
        }
        let r = reply("250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
        let kept = Kept::new(&r, &Capabilities::from_ehlo_reply(&r).unwrap());
        assert!(kept.pipelining() && kept.chunking() && !kept.require_tls());
    }

    #[test]
    fn building() {
        let mut c = Capabilities::new(b("mx.example"), vec![Capability::Pipelining]);
        c.push(Capability::Size(Some(35_882_577)));
        c.push(Capability::StartTls);
        c.push(Capability::Auth(b("PLAIN LOGIN")));
        c.push(other("X-FOO", ""));
        c.push(other("X-BAR", "a b"));
        assert_eq!(
            &c.to_reply(b"ESMTP").raw()[..],
            &b"250-mx.example ESMTP\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-X-FOO\r\n250 X-BAR a b\r\n"[..]
        );
        round_trip(&c);
        for (cap, kw) in [
            (Capability::Size(None), "SIZE"),
            (Capability::Pipelining, "PIPELINING"),
            (Capability::EightBitMime, "8BITMIME"),
            (Capability::SmtpUtf8, "SMTPUTF8"),
            (Capability::Chunking, "CHUNKING"),
            (Capability::BinaryMime, "BINARYMIME"),
            (Capability::Dsn, "DSN"),
            (Capability::EnhancedStatusCodes, "ENHANCEDSTATUSCODES"),
            (Capability::StartTls, "STARTTLS"),
            (Capability::Auth(b("X")), "AUTH"),
            (Capability::RequireTls, "REQUIRETLS"),
            (other("x-y", ""), "x-y"),
        ] {
            assert_eq!(cap.keyword(), kw.as_bytes());
            let mut line = Vec::new();
            cap.write_to(&mut line);
            assert_eq!(Capability::parse(&Bytes::from(line)), Ok(cap));
        }
    }

    #[test]
    fn random_lines_never_panic() {
        let mut state = 0xFEED_FACE_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "AUTH",
            "=",
            " ",
            "SIZE",
            "1",
            "x",
            "-",
            "_",
            "é",
            "PIPELINING",
            "STARTTLS",
            "9",
        ];
        for _ in 0..20_000 {
            let line: String = (0..next() % 6)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            if let Ok(c) = cap(&line) {
                let mut out = Vec::new();
                c.write_to(&mut out);
                assert_eq!(Capability::parse(&Bytes::from(out)), Ok(c), "{line:?}");
            }
        }
    }

    #[test]
    fn random_round_trips() {
        let mut state = 0xDEAD_BEEF_CAFE_F00Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pool = [
            Capability::Size(None),
            Capability::Size(Some(0)),
            Capability::Size(Some(u64::MAX)),
            Capability::Pipelining,
            Capability::EightBitMime,
            Capability::SmtpUtf8,
            Capability::Chunking,
            Capability::BinaryMime,
            Capability::Dsn,
            Capability::EnhancedStatusCodes,
            Capability::StartTls,
            Capability::Auth(b("PLAIN")),
            Capability::Auth(b("SCRAM-SHA-256 PLAIN XOAUTH2")),
            Capability::RequireTls,
            other("HELP", ""),
            other("X-EXPS", "GSSAPI NTLM"),
            other("SIZE", "big"),
            other("etrn", ""),
        ];
        for _ in 0..500 {
            let n = next() % 12;
            let list = (0..n)
                .map(|_| pool[(next() % pool.len() as u64) as usize].clone())
                .collect();
            let c = Capabilities::new(b("host.example"), list);
            round_trip(&c);
        }
    }

    /// The borrowed and owned forms of one EHLO line agree.
    fn differential_line(x: &[u8]) {
        let line = Bytes::copy_from_slice(x);
        let owned = Capability::parse(&line);
        let borrowed = Capability::parse_borrowed(&line);
        match (&borrowed, &owned) {
            (Ok(b), Ok(o)) => {
                assert_eq!(&b.clone().map_octets(attach(&line)), o, "{x:?}");
                assert_eq!(&b.clone().into_owned(), o, "{x:?}");
                assert_eq!(b.keyword(), o.keyword());
                let (mut wb, mut wo) = (Vec::new(), Vec::new());
                b.write_to(&mut wb);
                o.write_to(&mut wo);
                assert_eq!(wb, wo);
            }
            (Err(b), Err(o)) => assert_eq!(b, o, "{x:?}"),
            _ => panic!("forms disagree on {x:?}: {borrowed:?} vs {owned:?}"),
        }
    }

    /// The borrowed and owned forms of one EHLO reply agree.
    fn differential_reply(x: &[u8]) {
        let raw = Bytes::copy_from_slice(x);
        let (Ok(owned_reply), Ok(borrowed_reply)) =
            (Reply::parse(raw.clone()), ReplyRef::parse_borrowed(&raw))
        else {
            return;
        };
        let owned = Capabilities::from_ehlo_reply(&owned_reply);
        let borrowed = Capabilities::from_ehlo_reply_borrowed(&borrowed_reply);
        match (&borrowed, &owned) {
            (Ok(b), Ok(o)) => {
                assert_eq!(&b.clone().map_octets(attach(&raw)), o, "{x:?}");
                assert_eq!(&b.clone().into_owned(), o, "{x:?}");
                assert_eq!(
                    b.auth_mechanisms().collect::<Vec<_>>(),
                    o.auth_mechanisms().collect::<Vec<_>>()
                );
                assert_eq!(b.to_reply(b"x"), o.to_reply(b"x"));
                assert_eq!(b.has_starttls(), o.has_starttls());
                assert_eq!(b.size(), o.size());
            }
            (Err(b), Err(o)) => assert_eq!(b, o, "{x:?}"),
            _ => panic!("forms disagree on {x:?}: {borrowed:?} vs {owned:?}"),
        }
    }

    #[test]
    fn borrowed_and_owned_agree() {
        let lines = [
            "PIPELINING ",
            "SIZE  100  ",
            "SIZE 0",
            "SIZE abc",
            "SIZE 1 2",
            "SIZE 99999999999999999999999",
            "STARTTLS now",
            "AUTH",
            "AUTH  CRAM-MD5   PLAIN",
            "AUTH=LOGIN PLAIN",
            "X-\u{dc}TF8 \u{e9}",
            "X-PARAM \u{e9}",
            "",
            " ",
            " PIPELINING",
            "-X",
            "PIPE_LINING",
            "=x",
            "AUTH=",
            "SIZE=10",
            "X:Y",
            "\u{e9}",
            "HELP",
            "8BITMIME",
            "starttls",
            "Size 100",
            "auth plain",
            "auth=login",
            "XCLIENT NAME ADDR PROTO HELO",
            "REQUIRETLS",
            "CHUNKING",
            "DSN",
            "SMTPUTF8",
            "BINARYMIME",
            "ENHANCEDSTATUSCODES",
        ];
        for l in lines {
            differential_line(l.as_bytes());
        }
        let mut state = 0xFEED_FACE_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "AUTH",
            "=",
            " ",
            "SIZE",
            "1",
            "x",
            "-",
            "_",
            "\u{e9}",
            "PIPELINING",
            "STARTTLS",
            "9",
        ];
        let mut ok = 0;
        for _ in 0..5_000 {
            let line: String = (0..next() % 6)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            differential_line(line.as_bytes());
            ok += cap(&line).is_ok() as usize;
            // The same line inside an EHLO reply, after a domain line.
            let code = if next() % 8 == 0 { "251" } else { "250" };
            let reply = format!("{code}-mx.example hi\r\n{code}-{line}\r\n{code} {line}\r\n");
            differential_reply(reply.as_bytes());
        }
        assert!(ok > 1000, "{ok}");
        for raw in [
            "250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n",
            "250 mx.example.com ESMTP ready\r\n",
            "250\r\n",
            "250 \r\n",
            "250  mx\r\n",
            "250-\r\n250 DSN\r\n",
            "250-mx\r\n250-\t STARTTLS \t\r\n250-=x\r\n250 AUTH=\r\n",
            "502 5.5.1 no EHLO\r\n",
            "250-mx\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 SIZE 10\r\n",
        ] {
            differential_reply(raw.as_bytes());
        }
    }
}
