//! POP3 responses: status lines with RFC 2449 §8 extended response codes,
//! SASL continuations, and the typed lines of multi-line bodies.
//!
//! RFC 2449 §9:
//!
//! ```text
//! single-line    = status [SP text] CRLF       ;512 octets maximum
//! status         = "+OK" / "-ERR"
//! text           = *schar / resp-code *CHAR
//! resp-code      = "[" resp-level *("/" resp-level) "]"
//! resp-level     = 1*rchar
//! rchar          = %x21-2E / %x30-5C / %x5E-7F
//!                      ;printable ASCII, excluding "/" and "]"
//! ```
//!
//! Text is taken as any octets except CR, LF and NUL, so 8-bit and UTF-8
//! text (RFC 6856) is accepted, and so is a `[` that does not start a
//! response code.
//!
//! Parsing is zero-copy: every byte string in a result is a
//! [`Bytes::slice_ref`] of the line handed in, and parsing allocates nothing.
//! Every parser has a borrowed twin over a `&[u8]` line
//! ([`StatusLine::parse_borrowed`], [`parse_continuation_borrowed`], …): the
//! same grammar, the byte strings are sub-slices (see [`crate::octets`]).

use std::fmt;
use std::io::Write as _;

use bytes::Bytes;
use nom::bytes::complete::take_while1;
use nom::character::complete::char;
use nom::combinator::recognize;
use nom::multi::many0_count;
use nom::sequence::{delimited, pair, preceded};

use crate::escape::Escaped;
use crate::octets::{Octets, Source};
use crate::pop3::syntax::{is_base64, is_line_text, is_vchar, PResult, SyntaxError};
use crate::{appvalue, UsageError};

/// The status indicator of a response (RFC 1939 §3): positive `+OK` or
/// negative `-ERR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
}

impl Status {
    /// `"+OK"` or `"-ERR"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 2449 §8 extended response code, the `[...]` at the start of a
/// response's text.
///
/// The codes this crate knows are matched ASCII case-insensitively and
/// written upper case; any other code (including deeper levels of a known
/// one, e.g. `SYS/TEMP/QUOTA`) is kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Code<B: Octets = Bytes> {
    /// RFC 2449 §8 `[IN-USE]`: the maildrop is locked by another session.
    InUse,
    /// RFC 2449 §8 `[LOGIN-DELAY]`: logged in too soon after the last
    /// login.
    LoginDelay,
    /// RFC 3206 `[SYS/TEMP]`: a temporary system failure.
    SysTemp,
    /// RFC 3206 `[SYS/PERM]`: a permanent system failure.
    SysPerm,
    /// RFC 3206 `[AUTH]`: the credentials were wrong (as opposed to a
    /// system problem).
    Auth,
    /// RFC 6856 `[UTF8]`: the mailbox needs UTF-8 mode.
    Utf8,
    /// Any other `resp-level *("/" resp-level)`, without its brackets, as
    /// written. For the code to parse back the same it must follow that
    /// grammar and not be one of the codes above.
    Other(B),
}

/// The spelling of each known code, upper case.
const IN_USE: &str = "IN-USE";
const LOGIN_DELAY: &str = "LOGIN-DELAY";
const SYS_TEMP: &str = "SYS/TEMP";
const SYS_PERM: &str = "SYS/PERM";
const AUTH: &str = "AUTH";
const UTF8: &str = "UTF8";

impl<B: Octets> Code<B> {
    /// The code without its brackets: upper case for the known ones, as
    /// written for [`Code::Other`].
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Code::InUse => IN_USE.as_bytes(),
            Code::LoginDelay => LOGIN_DELAY.as_bytes(),
            Code::SysTemp => SYS_TEMP.as_bytes(),
            Code::SysPerm => SYS_PERM.as_bytes(),
            Code::Auth => AUTH.as_bytes(),
            Code::Utf8 => UTF8.as_bytes(),
            Code::Other(raw) => raw.as_ref(),
        }
    }

    /// The same code with its byte string (for [`Code::Other`]) turned by
    /// `f`.
    pub fn map_octets<C: Octets>(self, f: impl FnOnce(B) -> C) -> Code<C> {
        match self {
            Code::InUse => Code::InUse,
            Code::LoginDelay => Code::LoginDelay,
            Code::SysTemp => Code::SysTemp,
            Code::SysPerm => Code::SysPerm,
            Code::Auth => Code::Auth,
            Code::Utf8 => Code::Utf8,
            Code::Other(raw) => Code::Other(f(raw)),
        }
    }

    /// A view of this code borrowing its byte string.
    fn view(&self) -> Code<&[u8]> {
        match self {
            Code::Other(raw) => Code::Other(raw.as_ref()),
            Code::InUse => Code::InUse,
            Code::LoginDelay => Code::LoginDelay,
            Code::SysTemp => Code::SysTemp,
            Code::SysPerm => Code::SysPerm,
            Code::Auth => Code::Auth,
            Code::Utf8 => Code::Utf8,
        }
    }

    /// Types the contents of a code (between the brackets), already checked
    /// against the grammar; `mk` turns it into `B` for [`Code::Other`].
    fn from_raw<'a>(raw: &'a [u8], mk: impl FnOnce(&'a [u8]) -> B) -> Code<B> {
        let is = |name: &str| raw.eq_ignore_ascii_case(name.as_bytes());
        match raw.len() {
            4 if is(AUTH) => Code::Auth,
            4 if is(UTF8) => Code::Utf8,
            6 if is(IN_USE) => Code::InUse,
            8 if is(SYS_TEMP) => Code::SysTemp,
            8 if is(SYS_PERM) => Code::SysPerm,
            11 if is(LOGIN_DELAY) => Code::LoginDelay,
            _ => Code::Other(mk(raw)),
        }
    }
}

/// RFC 2449 §9 `rchar` (DEL, %x7F, is left out: it is not printable).
fn is_rchar(c: u8) -> bool {
    is_vchar(c) && c != b'/' && c != b']'
}

/// `resp-code = "[" resp-level *("/" resp-level) "]"`, returning the part
/// between the brackets.
fn resp_code(input: &[u8]) -> PResult<'_, &[u8]> {
    let level = |i| take_while1(is_rchar)(i);
    delimited(
        char('['),
        recognize(pair(level, many0_count(preceded(char('/'), level)))),
        char(']'),
    )(input)
}

/// One single-line response, or the first line of a multi-line one
/// (RFC 1939 §3, RFC 2449 §8): `+OK`/`-ERR`, an optional extended response
/// code and the text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusLine<B: Octets = Bytes> {
    /// `+OK` or `-ERR`.
    pub status: Status,
    /// The RFC 2449 §8 code at the start of the text, if any.
    pub code: Option<Code<B>>,
    /// The text after the status (and after the code and the SP that
    /// follows it), possibly empty. Any octets but CR, LF and NUL. Without a
    /// code, it must not itself start with a valid `[code]` for the line to
    /// parse back the same.
    pub text: B,
}

/// A [`StatusLine`] borrowed from the line it was parsed from
/// ([`StatusLine::parse_borrowed`]).
pub type StatusLineRef<'a> = StatusLine<&'a [u8]>;

impl StatusLine {
    /// Parses one status line, given without its CRLF: `+OK`, `+OK text`,
    /// `-ERR [SYS/PERM] text`, …
    ///
    /// RFC 1939 §3 spells the indicators `+OK` and `-ERR` in upper case;
    /// this parser tolerates any case (`+ok`, `-Err`), as some servers send
    /// them so. The status must be followed by SP or the end of the line. A
    /// `[` starting the text begins a response code only if a valid
    /// `resp-code` follows; otherwise it is plain text. After a code, one SP
    /// (if present) separates it from the text.
    pub fn parse(line: &Bytes) -> Result<StatusLine, SyntaxError> {
        status_line_in(line)
    }

    /// RFC 1939 §7 `APOP`: the timestamp of a greeting, e.g.
    /// `<1896.697170952@dbc.mtview.ca.us>`, with its angle brackets, exactly
    /// as written (it is what the client hashes).
    ///
    /// It is the first `<` … `>` span of the text that contains `@` and no
    /// SP, CR, LF or other `<` (RFC 1939 uses the RFC 822 `msg-id` syntax).
    /// `None` if there is none: the server does not offer `APOP`.
    pub fn apop_timestamp(&self) -> Option<Bytes> {
        apop_span(&self.text).map(|t| self.text.slice_ref(t))
    }
}

impl<'a> StatusLine<&'a [u8]> {
    /// [`StatusLine::parse`] of a borrowed line: the same grammar and
    /// errors, the code and text are sub-slices of `line` (no allocation,
    /// no reference count).
    pub fn parse_borrowed(line: &'a [u8]) -> Result<Self, SyntaxError> {
        status_line_in(line)
    }

    /// The owned line, its byte strings copied into fresh [`Bytes`] (use
    /// `map_octets(`[`attach`](crate::octets::attach)`(&line))` to share
    /// `line` instead).
    pub fn into_owned(self) -> StatusLine {
        self.map_octets(crate::octets::copy)
    }

    /// [`StatusLine::apop_timestamp`] of a borrowed line: a sub-slice of
    /// the text.
    pub fn apop_timestamp(&self) -> Option<&'a [u8]> {
        apop_span(self.text)
    }
}

impl<B: Octets> StatusLine<B> {
    /// A line with this status and text and no response code.
    pub fn new(status: Status, text: B) -> StatusLine<B> {
        StatusLine {
            status,
            code: None,
            text,
        }
    }

    /// The same line with every byte string turned by `f`, in wire order
    /// (the code, then the text).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> StatusLine<C> {
        let code = self.code.map(|c| c.map_octets(&mut f));
        StatusLine {
            status: self.status,
            code,
            text: f(self.text),
        }
    }

    /// A view of this line borrowing its byte strings.
    fn view(&self) -> StatusLineRef<'_> {
        StatusLine {
            status: self.status,
            code: self.code.as_ref().map(Code::view),
            text: self.text.as_ref(),
        }
    }

    /// True for `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Appends the line, final CRLF included: the status, then SP and
    /// `[code]` if there is a code, then SP and the text if it is not empty.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.status.as_str().as_bytes());
        if let Some(code) = &self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.push(b']');
        }
        let text = self.text.as_ref();
        if !text.is_empty() {
            out.push(b' ');
            out.extend_from_slice(text);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The line, final CRLF included.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.text.as_ref().len() + 24);
        self.write_to(&mut out);
        Bytes::from(out)
    }

    /// Checks that the line can be sent: it holds no CR, LF or NUL and
    /// parses back ([`StatusLine::parse`]) to exactly this line. So the text
    /// has no CR, LF or NUL and, without a code, does not start with a valid
    /// `[code]`; a [`Code::Other`] follows `resp-level *("/" resp-level)` and
    /// is not spelled like a known code.
    ///
    /// [`ServerSession::reply`](super::ServerSession::reply) calls it and
    /// writes nothing on error. The error is [`UsageError::InvalidValue`].
    pub fn check(&self) -> Result<(), UsageError> {
        self.check_as(false)
    }

    /// [`StatusLine::check`]; with `text_may_hold_code` (free text given to
    /// `reject` or `reply_multiline`), a text that starts with a valid
    /// `[code]` is accepted as written (the client reads the code).
    pub(crate) fn check_as(&self, text_may_hold_code: bool) -> Result<(), UsageError> {
        const FIELD: &str = "POP3 status line";
        let wire = self.to_bytes();
        let line = appvalue::one_line(FIELD, &wire)?;
        let reason = match StatusLine::parse_borrowed(line) {
            Ok(back) if back == self.view() => return Ok(()),
            Ok(back) if text_may_hold_code && back.to_bytes() == wire => return Ok(()),
            Ok(_) => "would be read back as a different line (a text starting with a [code]?)",
            Err(SyntaxError::InvalidResponse { reason }) => reason,
            Err(_) => "does not follow the status line grammar",
        };
        Err(appvalue::invalid(FIELD, reason))
    }
}

/// The grammar of [`StatusLine::parse`], once for both forms.
fn status_line_in<'a, S: Source<'a>>(line: S) -> Result<StatusLine<S::Out>, SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidResponse { reason };
    let input = line.octets();
    let (status, rest) = if input
        .get(..3)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"+OK"))
    {
        (Status::Ok, input.get(3..).unwrap_or_default())
    } else if input
        .get(..4)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"-ERR"))
    {
        (Status::Err, input.get(4..).unwrap_or_default())
    } else {
        return Err(invalid("status must be +OK or -ERR (RFC 1939 §3)"));
    };
    let text = match rest {
        [] => rest,
        [b' ', text @ ..] => text,
        _ => return Err(invalid("status must be followed by SP or the end of line")),
    };
    if !is_line_text(text) {
        return Err(invalid("response text contains CR, LF or NUL"));
    }
    let (code, text) = match text.first() {
        Some(b'[') => match resp_code(text) {
            Ok((after, raw)) => (
                Some(Code::from_raw(raw, |s| line.piece(s))),
                after.strip_prefix(b" ").unwrap_or(after),
            ),
            Err(_) => (None, text),
        },
        _ => (None, text),
    };
    Ok(StatusLine {
        status,
        code,
        text: line.piece(text),
    })
}

/// The span of [`StatusLine::apop_timestamp`] in `text`.
fn apop_span(text: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(open) = text
        .get(from..)
        .and_then(|t| memchr::memchr(b'<', t))
        .map(|p| p + from)
    {
        let after = text.get(open + 1..).unwrap_or_default();
        let close = memchr::memchr(b'>', after)?;
        let inner = after.get(..close).unwrap_or_default();
        match memchr::memchr(b'<', inner) {
            // Another `<` inside: restart from it.
            Some(p) => from = open + 1 + p,
            None => {
                if inner.contains(&b'@') && !inner.iter().any(|&c| c == b' ' || c < 0x21) {
                    return text.get(open..open + close + 2);
                }
                from = open + close + 2;
            }
        }
    }
    None
}

/// The line as a user should see it: the code and the text
/// [escaped](crate::Escaped), so that control characters and bidirectional
/// controls from the peer show as visible escapes.
impl<B: Octets> fmt::Display for StatusLine<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.status.as_str())?;
        if let Some(code) = &self.code {
            write!(f, " [{}]", Escaped::new(code.as_bytes()))?;
        }
        let text = self.text.as_ref();
        if !text.is_empty() {
            write!(f, " {}", Escaped::new(text))?;
        }
        Ok(())
    }
}

/// Parses a SASL server challenge (RFC 5034 §4
/// `continue-req = "+" SP [base64] CRLF`), given without its CRLF, and
/// returns the base64 text (not decoded, possibly empty).
///
/// A line that is `+ ` followed by base64, `+ ` alone, or (tolerated, as
/// some servers send it) a bare `+`. `+OK…` and anything else is
/// [`SyntaxError::InvalidResponse`], as is a challenge that is not base64.
pub fn parse_continuation(line: &Bytes) -> Result<Bytes, SyntaxError> {
    continuation_in(line)
}

/// [`parse_continuation`] of a borrowed line: the challenge is a sub-slice
/// of `line`.
pub fn parse_continuation_borrowed(line: &[u8]) -> Result<&[u8], SyntaxError> {
    continuation_in(line)
}

fn continuation_in<'a, S: Source<'a>>(line: S) -> Result<S::Out, SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidResponse { reason };
    let challenge: &[u8] = match line.octets() {
        [b'+'] => &[],
        [b'+', b' ', rest @ ..] => rest,
        _ => return Err(invalid("a SASL continuation starts with \"+ \"")),
    };
    if !challenge.is_empty() && !is_base64(challenge) {
        return Err(invalid("SASL challenge is not base64"));
    }
    Ok(line.piece(challenge))
}

/// `1*DIGIT` at the start of `text` that fits in a `u64`, and the rest.
#[inline]
fn leading_number(text: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    let mut n = 0;
    for &c in text {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some((value, text.get(n..)?))
}

/// Parses `1*DIGIT SP 1*DIGIT` at the start of `text`, then either the end
/// or SP and anything (RFC 1939 §5 lets servers add information after the
/// size). Returns the two numbers.
fn number_pair(text: &[u8], first_nonzero: bool) -> Option<(u32, u64)> {
    let (n, rest) = leading_number(text)?;
    let n = u32::try_from(n)
        .ok()
        .filter(|&n| n != 0 || !first_nonzero)?;
    let (size, rest) = leading_number(rest.strip_prefix(b" ")?)?;
    match rest {
        [] | [b' ', ..] => Some((n, size)),
        _ => None,
    }
}

/// Parses one line of a `LIST` scan listing, or the text of a positive
/// `LIST msg` reply (RFC 1939 §5): `msg SP size`, e.g. `1 120`. Returns the
/// message number (non-zero) and the size in octets.
///
/// RFC 1939 §5: "This memo makes no requirement on what follows the message
/// size in the scan listing", so SP and anything after the size is
/// ignored.
pub fn parse_scan_listing(line: &Bytes) -> Result<(u32, u64), SyntaxError> {
    parse_scan_listing_borrowed(line)
}

/// [`parse_scan_listing`] of a borrowed line.
pub fn parse_scan_listing_borrowed(line: &[u8]) -> Result<(u32, u64), SyntaxError> {
    number_pair(line, true).ok_or(SyntaxError::InvalidResponse {
        reason: "scan listing must be a message number, SP and a size",
    })
}

/// Parses one line of a `UIDL` unique-id listing, or the text of a positive
/// `UIDL msg` reply (RFC 1939 §7): `msg SP unique-id`, e.g.
/// `1 whqtswO00WBw418f9t5JxYwZ`. The unique-id is 1 to 70 octets in
/// `%x21-7E`; nothing may follow it.
pub fn parse_uidl_listing(line: &Bytes) -> Result<(u32, Bytes), SyntaxError> {
    uidl_listing_in(line)
}

/// [`parse_uidl_listing`] of a borrowed line: the unique-id is a sub-slice
/// of `line`.
pub fn parse_uidl_listing_borrowed(line: &[u8]) -> Result<(u32, &[u8]), SyntaxError> {
    uidl_listing_in(line)
}

fn uidl_listing_in<'a, S: Source<'a>>(line: S) -> Result<(u32, S::Out), SyntaxError> {
    let invalid = SyntaxError::InvalidResponse {
        reason: "unique-id listing must be a message number, SP and 1 to 70 printable octets",
    };
    let parsed = leading_number(line.octets()).and_then(|(n, rest)| {
        let n = u32::try_from(n).ok().filter(|&n| n != 0)?;
        let uid = rest.strip_prefix(b" ")?;
        ((1..=70).contains(&uid.len()) && uid.iter().all(|&c| is_vchar(c))).then_some((n, uid))
    });
    match parsed {
        Some((n, uid)) => Ok((n, line.piece(uid))),
        None => Err(invalid),
    }
}

/// Parses the text of a positive `STAT` reply (RFC 1939 §5 drop listing),
/// e.g. `2 320` from `+OK 2 320`: the number of messages (may be 0) and the
/// size of the maildrop in octets. As for scan listings, SP and anything
/// after the size is ignored.
pub fn parse_stat(text: &Bytes) -> Result<(u32, u64), SyntaxError> {
    parse_stat_borrowed(text)
}

/// [`parse_stat`] of a borrowed text.
pub fn parse_stat_borrowed(text: &[u8]) -> Result<(u32, u64), SyntaxError> {
    number_pair(text, false).ok_or(SyntaxError::InvalidResponse {
        reason: "drop listing must be a message count, SP and a size",
    })
}

/// Writes `msg SP size CRLF`, one line of a scan listing (RFC 1939 §5).
pub fn write_scan_listing(msg: u32, size: u64, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    drop(write!(out, "{msg} {size}\r\n"));
}

/// Writes `msg SP unique-id CRLF`, one line of a unique-id listing
/// (RFC 1939 §7).
pub fn write_uidl_listing(msg: u32, uid: &[u8], out: &mut Vec<u8>) {
    drop(write!(out, "{msg} "));
    out.extend_from_slice(uid);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn parse(s: &str) -> Result<StatusLine, SyntaxError> {
        let line = b(s);
        same_both_ways(&line);
        StatusLine::parse(&line)
    }

    /// Both results are Ok and equal, or both Err with the same error.
    fn same_result<T: PartialEq + fmt::Debug, U: fmt::Debug>(
        line: &Bytes,
        borrowed: Result<U, SyntaxError>,
        owned: Result<T, SyntaxError>,
        to_owned: impl FnOnce(U) -> T,
    ) {
        match (borrowed, owned) {
            (Ok(view), Ok(owned)) => assert_eq!(to_owned(view), owned, "{line:?}"),
            (Err(e1), Err(e2)) => assert_eq!(e1, e2, "{line:?}"),
            (view, owned) => panic!("{line:?}: borrowed {view:?}, owned {owned:?}"),
        }
    }

    /// The differential check (issue #18) of every parser of the module:
    /// the borrowed parse of `line` succeeds or fails exactly as the owned
    /// one, and when it succeeds, attaching it to `line` or copying it gives
    /// the owned value.
    fn same_both_ways(line: &Bytes) {
        let attach = || crate::octets::attach(line);
        match (StatusLine::parse_borrowed(line), StatusLine::parse(line)) {
            (Ok(view), Ok(owned)) => {
                assert_eq!(view.clone().map_octets(attach()), owned, "{line:?}");
                assert_eq!(view.clone().into_owned(), owned, "{line:?}");
                assert_eq!(view.to_bytes(), owned.to_bytes());
                assert_eq!(view.to_string(), owned.to_string());
                assert_eq!(view.apop_timestamp().map(attach()), owned.apop_timestamp());
            }
            (Err(e1), Err(e2)) => assert_eq!(e1, e2, "{line:?}"),
            (view, owned) => panic!("{line:?}: borrowed {view:?}, owned {owned:?}"),
        }
        same_result(
            line,
            parse_continuation_borrowed(line),
            parse_continuation(line),
            attach(),
        );
        same_result(
            line,
            parse_scan_listing_borrowed(line),
            parse_scan_listing(line),
            |v| v,
        );
        same_result(line, parse_stat_borrowed(line), parse_stat(line), |v| v);
        same_result(
            line,
            parse_uidl_listing_borrowed(line),
            parse_uidl_listing(line),
            |(n, uid)| (n, attach()(uid)),
        );
    }

    #[test]
    fn borrowed_parse_matches_owned_parse() {
        let line = b("-ERR [SYS/TEMP/QUOTA] over quota");
        let view = StatusLineRef::parse_borrowed(&line).unwrap();
        assert_eq!(view.code, Some(Code::Other(&line[6..20])));
        assert_eq!(view.text.as_ptr(), line[22..].as_ptr());
        let owned = view.clone().map_octets(crate::octets::attach(&line));
        assert_eq!(owned.text.as_ptr(), line[22..].as_ptr());
        assert!(view.check().is_ok());
        assert_eq!(
            owned.code.map(|c| c.as_bytes().to_vec()),
            Some(b"SYS/TEMP/QUOTA".to_vec())
        );
        let bad = StatusLine::new(Status::Ok, &b"a\r\nb"[..]);
        assert!(bad.check().is_err());
        assert_eq!(parse_uidl_listing_borrowed(b"3 abc"), Ok((3, &b"abc"[..])));
        assert_eq!(
            parse_continuation_borrowed(b"+ dGVzdA=="),
            Ok(&b"dGVzdA=="[..])
        );
        for s in [
            "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            "-ERR [IN-USE] x",
            "+ ",
            "1 120",
            "2 320 more",
            "1 whqtswO00WBw418f9t5JxYwZ",
            "-ERR [AUTH]bad",
            "+OK x\0y",
        ] {
            same_both_ways(&b(s));
        }
    }

    fn ok(s: &str) -> StatusLine {
        match parse(s) {
            Ok(l) => l,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn round(s: &str, expect: Option<&str>) -> StatusLine {
        let l = ok(s);
        let wire = l.to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            format!("{}\r\n", expect.unwrap_or(s)),
            "serialization of {s:?}"
        );
        let again = StatusLine::parse(&wire.slice(..wire.len() - 2)).unwrap();
        assert_eq!(again, l, "round trip of {s:?}");
        l
    }

    fn line(status: Status, code: Option<Code>, text: &str) -> StatusLine {
        StatusLine {
            status,
            code,
            text: b(text),
        }
    }

    #[test]
    fn rfc1939_section10_example_session() {
        let greeting = round(
            "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            None,
        );
        assert_eq!(
            greeting,
            line(
                Status::Ok,
                None,
                "POP3 server ready <1896.697170952@dbc.mtview.ca.us>"
            )
        );
        assert_eq!(
            greeting.apop_timestamp(),
            Some(b("<1896.697170952@dbc.mtview.ca.us>"))
        );
        let l = round("+OK mrose's maildrop has 2 messages (320 octets)", None);
        assert!(l.is_ok());
        assert_eq!(l.apop_timestamp(), None);
        let stat = round("+OK 2 320", None);
        assert_eq!(parse_stat(&stat.text), Ok((2, 320)));
        let l = round("+OK 2 messages (320 octets)", None);
        assert_eq!(l.text, b("2 messages (320 octets)"));
        assert_eq!(parse_scan_listing(&b("1 120")), Ok((1, 120)));
        assert_eq!(parse_scan_listing(&b("2 200")), Ok((2, 200)));
        round("+OK 120 octets", None);
        round("+OK message 1 deleted", None);
        round("+OK dewey POP3 server signing off (maildrop empty)", None);
    }

    #[test]
    fn rfc1939_reply_examples() {
        assert_eq!(round("+OK", None), line(Status::Ok, None, ""));
        assert_eq!(round("-ERR", None), line(Status::Err, None, ""));
        assert_eq!(
            round("-ERR no such message, only 2 messages in maildrop", None).status,
            Status::Err
        );
        assert_eq!(
            round("-ERR permission denied", None),
            line(Status::Err, None, "permission denied")
        );
        // §7 UIDL and LIST n.
        let l = round("+OK 2 whqtswO00WBw418f9t5JxYwZ", None);
        assert_eq!(
            parse_uidl_listing(&l.text),
            Ok((2, b("whqtswO00WBw418f9t5JxYwZ")))
        );
        assert_eq!(
            parse_uidl_listing(&b("1 whqtswO00WBw418f9t5JxYwZ")),
            Ok((1, b("whqtswO00WBw418f9t5JxYwZ")))
        );
        assert_eq!(
            parse_uidl_listing(&b("2 QhdPYR:00WBw1Ph7x7")),
            Ok((2, b("QhdPYR:00WBw1Ph7x7")))
        );
        let l = round("+OK 2 200", None);
        assert_eq!(parse_scan_listing(&l.text), Ok((2, 200)));
        // §4: an empty text after SP.
        assert_eq!(round("+OK ", Some("+OK")), line(Status::Ok, None, ""));
    }

    #[test]
    fn rfc2449_response_codes() {
        assert_eq!(
            round(
                "-ERR [IN-USE] Do you have another POP session running?",
                None
            ),
            line(
                Status::Err,
                Some(Code::InUse),
                "Do you have another POP session running?"
            )
        );
        assert_eq!(
            round(
                "-ERR [LOGIN-DELAY] minimum time between mail checks is 15 minutes",
                None
            )
            .code,
            Some(Code::LoginDelay)
        );
        assert_eq!(
            round("-ERR [SYS/TEMP] Server busy, try later", None).code,
            Some(Code::SysTemp)
        );
        assert_eq!(
            round("-ERR [SYS/PERM] Your account is locked", None).code,
            Some(Code::SysPerm)
        );
        assert_eq!(
            round("-ERR [AUTH] Invalid password", None).code,
            Some(Code::Auth)
        );
        assert_eq!(
            round("-ERR [UTF8] UTF8 command required", None).code,
            Some(Code::Utf8)
        );
        assert_eq!(
            round("-ERR [SYS/TEMP/QUOTA] over quota", None),
            line(
                Status::Err,
                Some(Code::Other(b("SYS/TEMP/QUOTA"))),
                "over quota"
            )
        );
        assert_eq!(
            round("-ERR [X-VENDOR] x", None).code,
            Some(Code::Other(b("X-VENDOR")))
        );
        // Known codes are case-insensitive and written upper case.
        assert_eq!(
            round("-ERR [in-use] locked", Some("-ERR [IN-USE] locked")).code,
            Some(Code::InUse)
        );
        assert_eq!(
            round("-ERR [Sys/Perm] x", Some("-ERR [SYS/PERM] x")).code,
            Some(Code::SysPerm)
        );
        // A code alone, and a code glued to its text.
        assert_eq!(
            round("-ERR [AUTH]", None),
            line(Status::Err, Some(Code::Auth), "")
        );
        assert_eq!(
            round("-ERR [AUTH] ", Some("-ERR [AUTH]")),
            line(Status::Err, Some(Code::Auth), "")
        );
        assert_eq!(
            round("-ERR [AUTH]bad", Some("-ERR [AUTH] bad")),
            line(Status::Err, Some(Code::Auth), "bad")
        );
        assert_eq!(
            round("-ERR [AUTH]  two", None),
            line(Status::Err, Some(Code::Auth), " two")
        );
        // Also on +OK (RFC 2449 §8 allows codes on either).
        assert_eq!(round("+OK [X] fine", None).code, Some(Code::Other(b("X"))));
        for (code, text) in [
            (Code::InUse, "IN-USE"),
            (Code::LoginDelay, "LOGIN-DELAY"),
            (Code::SysTemp, "SYS/TEMP"),
            (Code::SysPerm, "SYS/PERM"),
            (Code::Auth, "AUTH"),
            (Code::Utf8, "UTF8"),
            (Code::Other(b("A/B")), "A/B"),
        ] {
            assert_eq!(code.as_bytes(), text.as_bytes());
        }
    }

    #[test]
    fn extension_replies() {
        // RFC 2595 §4 STLS.
        assert_eq!(
            round("+OK Begin TLS negotiation", None),
            line(Status::Ok, None, "Begin TLS negotiation")
        );
        assert_eq!(
            round("-ERR Command not permitted when TLS active", None).status,
            Status::Err
        );
        // RFC 6856 §2-§3 UTF8 and LANG.
        assert!(round("+OK I only speak UTF-8 now", None).is_ok());
        assert_eq!(
            round("+OK es Idioma cambiado", None).text,
            b("es Idioma cambiado")
        );
        assert_eq!(round("-ERR invalid language MUL", None).status, Status::Err);
        assert_eq!(round("+OK Gruß Gott", None).text, b("Gruß Gott"));
        // RFC 5034 §4: AUTH outcomes.
        assert!(round("+OK Maildrop locked and ready", None).is_ok());
        assert_eq!(
            round("-ERR [AUTH] Authentication failed", None).code,
            Some(Code::Auth)
        );
        assert_eq!(round("-ERR [SYS/PERM] no", None).code, Some(Code::SysPerm));
    }

    #[test]
    fn brackets_that_are_not_codes() {
        for s in [
            "-ERR [",
            "-ERR []",
            "-ERR [ ] x",
            "-ERR [A/] x",
            "-ERR [/A] x",
            "-ERR [A//B] x",
            "-ERR [A B] x",
            "-ERR [unclosed",
            "-ERR x [IN-USE]",
            "+OK [é]",
        ] {
            let l = round(s, None);
            assert_eq!(l.code, None, "{s:?}");
            assert_eq!(l.text, b(s.split_once(' ').unwrap().1), "{s:?}");
        }
        // `[` is an rchar, so nested brackets are one level.
        assert_eq!(round("-ERR [[x] y", None).code, Some(Code::Other(b("[x"))));
    }

    #[test]
    fn status_keyword_case_is_tolerated() {
        assert_eq!(round("+ok", Some("+OK")).status, Status::Ok);
        assert_eq!(round("-err nope", Some("-ERR nope")).status, Status::Err);
        assert_eq!(round("+Ok x", Some("+OK x")).status, Status::Ok);
        assert_eq!(round("-Err x", Some("-ERR x")).status, Status::Err);
    }

    #[test]
    fn malformed_status_lines() {
        for s in [
            "",
            "+",
            "-",
            "+O",
            "-ER",
            "OK",
            "ERR",
            "+OKAY",
            "-ERROR",
            "+OK\tx",
            " +OK",
            "+ OK",
            "+ ",
            "+ dGVzdA==",
            "*OK",
            "+OK x\ry",
            "+OK x\ny",
            "+OK x\0y",
            "-ERR [AUTH] \0",
        ] {
            assert!(
                matches!(parse(s), Err(SyntaxError::InvalidResponse { .. })),
                "{s:?}"
            );
        }
        // 8-bit and UTF-8 text is fine (RFC 6856).
        assert_eq!(round("+OK héllo", None).text, b("héllo"));
        assert!(StatusLine::parse(&Bytes::from_static(b"-ERR \xff\xfe")).is_ok());
    }

    #[test]
    fn apop_timestamps() {
        let ts = |s: &str| ok(s).apop_timestamp();
        assert_eq!(ts("+OK <a@b>"), Some(b("<a@b>")));
        assert_eq!(ts("+OK hello <1.2@x> <3.4@y>"), Some(b("<1.2@x>")));
        assert_eq!(ts("+OK <no-at> then <1.2@x>"), Some(b("<1.2@x>")));
        assert_eq!(ts("+OK <<1.2@x>"), Some(b("<1.2@x>")));
        assert_eq!(ts("+OK <a b@c> <d@e>"), Some(b("<d@e>")));
        assert_eq!(ts("+OK [SYS/TEMP] <1@x>"), Some(b("<1@x>")));
        assert_eq!(ts("+OK <>"), None);
        assert_eq!(ts("+OK <1.2@x"), None);
        assert_eq!(ts("+OK 1.2@x>"), None);
        assert_eq!(ts("+OK > <"), None);
        assert_eq!(ts("+OK <a> <b>"), None);
        assert_eq!(ts("+OK"), None);
        assert_eq!(ts("+OK <a@b\t>"), None);
        // As written, a slice of the line.
        let greeting = b("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>");
        let ts = StatusLine::parse(&greeting)
            .unwrap()
            .apop_timestamp()
            .unwrap();
        let range = greeting.as_ptr() as usize..greeting.as_ptr() as usize + greeting.len();
        assert!(range.contains(&(ts.as_ptr() as usize)));
    }

    #[test]
    fn continuations() {
        // RFC 5034 §4: the empty challenge, then base64 ones.
        assert_eq!(parse_continuation(&b("+ ")), Ok(b("")));
        assert_eq!(parse_continuation(&b("+")), Ok(b("")));
        assert_eq!(
            parse_continuation(&b("+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRAtHTEuOP2BXb9sBYFR4SJlDZxmg==")),
            Ok(b("YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRAtHTEuOP2BXb9sBYFR4SJlDZxmg=="))
        );
        assert_eq!(parse_continuation(&b("+ dGVzdA==")), Ok(b("dGVzdA==")));
        for s in [
            "+OK",
            "+OK ",
            "+ok",
            "-ERR",
            "",
            "++",
            "+  ",
            "+ abc",
            "+ dGVzdA== ",
            "+x",
            " + ",
        ] {
            assert!(
                matches!(
                    parse_continuation(&b(s)),
                    Err(SyntaxError::InvalidResponse { .. })
                ),
                "{s:?}"
            );
        }
    }

    #[test]
    fn listings() {
        assert_eq!(parse_scan_listing(&b("1 120")), Ok((1, 120)));
        assert_eq!(
            parse_scan_listing(&b("4294967295 18446744073709551615")),
            Ok((u32::MAX, u64::MAX))
        );
        assert_eq!(parse_scan_listing(&b("3 40 extra info")), Ok((3, 40)));
        for s in [
            "",
            "1",
            "1 ",
            " 1 2",
            "0 120",
            "1  120",
            "1 120x",
            "+1 120",
            "1 -120",
            "4294967296 1",
            "1 18446744073709551616",
            "a b",
            "1\t120",
        ] {
            assert!(parse_scan_listing(&b(s)).is_err(), "{s:?}");
        }
        assert_eq!(parse_stat(&b("0 0")), Ok((0, 0)));
        assert_eq!(parse_stat(&b("2 320")), Ok((2, 320)));
        assert_eq!(parse_stat(&b("2 320 more")), Ok((2, 320)));
        for s in ["", "2", "2 ", "2  320", "x 320", "-2 320", "2 320x"] {
            assert!(parse_stat(&b(s)).is_err(), "{s:?}");
        }
        let seventy = "x".repeat(70);
        assert_eq!(
            parse_uidl_listing(&b(&format!("9 {seventy}"))),
            Ok((9, b(&seventy)))
        );
        assert_eq!(parse_uidl_listing(&b("1 ~!")), Ok((1, b("~!"))));
        for s in [
            "",
            "1",
            "1 ",
            "0 abc",
            "1  abc",
            "1 abc ",
            "1 a b",
            "1 a\x7f",
            "1 é",
            "x abc",
            &format!("1 {seventy}x"),
        ] {
            assert!(parse_uidl_listing(&b(s)).is_err(), "{s:?}");
        }
        let mut out = Vec::new();
        write_scan_listing(1, 120, &mut out);
        write_uidl_listing(1, b"whqtswO00WBw418f9t5JxYwZ", &mut out);
        assert_eq!(&out[..], b"1 120\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n");
    }

    #[test]
    fn display() {
        assert_eq!(ok("-ERR [IN-USE] busy").to_string(), "-ERR [IN-USE] busy");
        assert_eq!(ok("+OK").to_string(), "+OK");
        assert_eq!(Status::Err.to_string(), "-ERR");
        assert_eq!(
            StatusLine::new(Status::Ok, b("hi")).to_bytes(),
            b("+OK hi\r\n")
        );
    }

    // -----------------------------------------------------------------------
    // Pseudo-random round trips and mutations.
    // -----------------------------------------------------------------------

    /// xorshift64*: deterministic, no extra crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
        fn string_from(&mut self, alphabet: &[&str], min: usize, max: usize) -> String {
            let n = min + self.below(max - min + 1);
            (0..n).map(|_| self.pick(alphabet)).collect()
        }
    }

    fn gen_status_line(r: &mut Rng) -> StatusLine {
        let status = if r.below(2) == 0 {
            Status::Ok
        } else {
            Status::Err
        };
        let code = match r.below(9) {
            0 => Some(Code::InUse),
            1 => Some(Code::LoginDelay),
            2 => Some(Code::SysTemp),
            3 => Some(Code::SysPerm),
            4 => Some(Code::Auth),
            5 => Some(Code::Utf8),
            6 => {
                let level = |r: &mut Rng| r.string_from(&["X", "a", "-", "[", "9", "."], 1, 6);
                let mut raw = level(r);
                for _ in 0..r.below(3) {
                    raw.push('/');
                    raw.push_str(&level(r));
                }
                Some(Code::from_raw(raw.as_bytes(), |s| {
                    Bytes::copy_from_slice(s)
                }))
            }
            _ => None,
        };
        let mut text = r.string_from(&["a", " ", "[", "]", "<", "@", ">", "é", "\t", "Z"], 0, 30);
        if code.is_none() && text.starts_with('[') {
            text.insert(0, 'x');
        }
        StatusLine {
            status,
            code,
            text: b(&text),
        }
    }

    #[test]
    fn generated_round_trips() {
        let mut r = Rng(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..5000 {
            let l = gen_status_line(&mut r);
            let wire = l.to_bytes();
            same_both_ways(&wire.slice(..wire.len() - 2));
            let parsed = StatusLine::parse(&wire.slice(..wire.len() - 2)).unwrap();
            // A code with an empty text followed by a text starting with SP
            // keeps that SP; everything else is the same value.
            assert_eq!(parsed, l, "{:?}", String::from_utf8_lossy(&wire));
            assert_eq!(parsed.to_bytes(), wire);

            let msg = (r.next() as u32).max(1);
            let size = r.next();
            let mut out = Vec::new();
            write_scan_listing(msg, size, &mut out);
            let listing = Bytes::from(out);
            assert_eq!(
                parse_scan_listing(&listing.slice(..listing.len() - 2)),
                Ok((msg, size))
            );
            let uid = r.string_from(&["!", "~", "a", "Z", "0", ":"], 1, 70);
            let mut out = Vec::new();
            write_uidl_listing(msg, uid.as_bytes(), &mut out);
            let listing = Bytes::from(out);
            assert_eq!(
                parse_uidl_listing(&listing.slice(..listing.len() - 2)),
                Ok((msg, b(&uid)))
            );
        }
    }

    #[test]
    fn mutations_never_panic() {
        let seeds = [
            "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            "-ERR [IN-USE] Do you have another POP session running?",
            "-ERR [SYS/TEMP/X] y",
            "+OK 2 320",
            "+ dGVzdA==",
            "1 120",
            "1 whqtswO00WBw418f9t5JxYwZ",
        ];
        let noise: &[u8] = b" 09aZ[]/<>@+-\r\n\0\x7f\x80\xc3\xa9\xff";
        let mut r = Rng(7);
        for _ in 0..20_000 {
            let mut line = r.pick(&seeds).as_bytes().to_vec();
            for _ in 0..1 + r.below(4) {
                let at = r.below(line.len() + 1);
                match r.below(4) {
                    0 => line.insert(at, r.pick(noise)),
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    2 if at < line.len() => line[at] = r.pick(noise),
                    _ => line.truncate(at),
                }
            }
            let line = Bytes::from(line);
            same_both_ways(&line);
            if let Ok(l) = StatusLine::parse(&line) {
                let _ = l.apop_timestamp();
                let wire = l.to_bytes();
                let again = StatusLine::parse(&wire.slice(..wire.len() - 2));
                assert_eq!(again.as_ref(), Ok(&l), "{line:?}");
            }
            let _ = parse_continuation(&line);
            let _ = parse_scan_listing(&line);
            let _ = parse_uidl_listing(&line);
            let _ = parse_stat(&line);
        }
    }
}
