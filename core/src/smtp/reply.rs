//! SMTP replies (RFC 5321 §4.2) with RFC 3463 / RFC 2034 enhanced status
//! codes.
//!
//! ```text
//! Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
//!                  Reply-code [ SP textstring ] CRLF
//! Reply-code     = %x32-35 %x30-35 %x30-39
//! ```
//!
//! Reply text is taken as any octets except CR, LF and NUL, so 8-bit and
//! UTF-8 text (RFC 6531) is accepted.

use std::fmt;

use bytes::Bytes;
use nom::bytes::complete::take_while_m_n;
use nom::character::complete::char;
use nom::sequence::tuple;

use crate::smtp::syntax::{digits_value, is_reply_text, PResult, SyntaxError};

/// An RFC 5321 §4.2 reply code: `%x32-35 %x30-35 %x30-39`, i.e. 200 to 559
/// with a second digit of 0 to 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// 220 `<domain> Service ready`.
    pub const SERVICE_READY: ReplyCode = ReplyCode(220);
    /// 221 `<domain> Service closing transmission channel`.
    pub const CLOSING: ReplyCode = ReplyCode(221);
    /// 235 authentication succeeded (RFC 4954).
    pub const AUTH_SUCCEEDED: ReplyCode = ReplyCode(235);
    /// 250 `Requested mail action okay, completed`.
    pub const OK: ReplyCode = ReplyCode(250);
    /// 334 SASL server challenge (RFC 4954).
    pub const AUTH_CONTINUE: ReplyCode = ReplyCode(334);
    /// 354 `Start mail input; end with <CRLF>.<CRLF>`.
    pub const START_MAIL_INPUT: ReplyCode = ReplyCode(354);
    /// 421 `<domain> Service not available, closing transmission channel`.
    pub const SERVICE_NOT_AVAILABLE: ReplyCode = ReplyCode(421);
    /// 454 `TLS not available due to temporary reason` (RFC 3207).
    pub const TLS_NOT_AVAILABLE: ReplyCode = ReplyCode(454);
    /// 500 `Syntax error, command unrecognized`.
    pub const SYNTAX_ERROR: ReplyCode = ReplyCode(500);
    /// 501 `Syntax error in parameters or arguments`.
    pub const PARAMETER_SYNTAX_ERROR: ReplyCode = ReplyCode(501);
    /// 502 `Command not implemented`.
    pub const NOT_IMPLEMENTED: ReplyCode = ReplyCode(502);
    /// 503 `Bad sequence of commands`.
    pub const BAD_SEQUENCE: ReplyCode = ReplyCode(503);
    /// 504 `Command parameter not implemented`.
    pub const PARAMETER_NOT_IMPLEMENTED: ReplyCode = ReplyCode(504);
    /// 530 `Must issue a STARTTLS command first` (RFC 3207) / authentication
    /// required (RFC 4954).
    pub const STARTTLS_REQUIRED: ReplyCode = ReplyCode(530);
    /// 554 `Transaction failed` / no SMTP service here.
    pub const TRANSACTION_FAILED: ReplyCode = ReplyCode(554);

    /// The code, if it follows `%x32-35 %x30-35 %x30-39`.
    pub const fn new(code: u16) -> Option<ReplyCode> {
        let (first, second) = (code / 100, code / 10 % 10);
        if first >= 2 && first <= 5 && second <= 5 {
            Some(ReplyCode(code))
        } else {
            None
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The first digit (2 to 5): positive completion, positive intermediate,
    /// transient negative, permanent negative (RFC 5321 §4.2.1).
    pub const fn class(self) -> u8 {
        (self.0 / 100) as u8
    }

    /// The second digit (0 to 5): syntax, information, connections,
    /// unspecified, unspecified, mail system (RFC 5321 §4.2.1).
    pub const fn category(self) -> u8 {
        (self.0 / 10 % 10) as u8
    }

    /// `2yz`: the action completed.
    pub const fn is_positive_completion(self) -> bool {
        self.class() == 2
    }

    /// `3yz`: more input is expected (354, 334).
    pub const fn is_positive_intermediate(self) -> bool {
        self.class() == 3
    }

    /// `4yz`: a temporary failure; the client may try again.
    pub const fn is_transient_negative(self) -> bool {
        self.class() == 4
    }

    /// `5yz`: a permanent failure.
    pub const fn is_permanent_negative(self) -> bool {
        self.class() == 5
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<ReplyCode> for u16 {
    fn from(code: ReplyCode) -> u16 {
        code.0
    }
}

/// An RFC 3463 enhanced mail system status code,
/// `status-code = class "." subject "." detail`, e.g. `5.7.1`:
/// `class = "2" / "4" / "5"`, `subject = 1*3digit`, `detail = 1*3digit`.
///
/// Replies carry it at the start of their text (RFC 2034 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// 0 to 999, e.g. 7 for security or policy status.
    pub subject: u16,
    /// 0 to 999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds a code; it must follow RFC 3463 (class 2, 4 or 5, subject and
    /// detail at most 999) for a reply carrying it to parse back with it.
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses exactly `class "." subject "." detail`, e.g. `b"5.5.1"`.
    pub fn parse(text: &[u8]) -> Option<EnhancedCode> {
        match enhanced_code(text) {
            Ok(([], code)) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

fn enhanced_code(input: &[u8]) -> PResult<'_, EnhancedCode> {
    let digits = |i| take_while_m_n(1, 3, |c: u8| c.is_ascii_digit())(i);
    let (rest, (class, _, subject, _, detail)) = tuple((
        take_while_m_n(1, 1, |c: u8| matches!(c, b'2' | b'4' | b'5')),
        char('.'),
        digits,
        char('.'),
        digits,
    ))(input)?;
    let num = |d: &[u8]| {
        digits_value(d)
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0)
    };
    let code = EnhancedCode {
        class: class.first().map_or(0, |c| c - b'0'),
        subject: num(subject),
        detail: num(detail),
    };
    Ok((rest, code))
}

/// The enhanced code at the start of a line's text, if its class is the
/// reply's class and it is followed by SP or the end of the text; returns it
/// and the text after the SP.
fn enhanced_prefix(text: &[u8], code: ReplyCode) -> Option<(EnhancedCode, &[u8])> {
    let (rest, enhanced) = enhanced_code(text).ok()?;
    if enhanced.class != code.class() {
        return None;
    }
    match rest {
        [] => Some((enhanced, rest)),
        [b' ', after @ ..] => Some((enhanced, after)),
        _ => None,
    }
}

/// One reply line split up: the session's framing uses it to find where a
/// multi-line reply ends (RFC 5321 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// The reply code.
    pub code: ReplyCode,
    /// True for `250 text` or a bare `250` (the last line of the reply),
    /// false for `250-text`.
    pub last: bool,
    /// The text after the code and its separator.
    pub text: &'a [u8],
}

/// Appends `n` in decimal (no `fmt` machinery: reply codes and enhanced
/// codes are written for every reply a server sends).
fn write_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Splits one reply line, given without its CRLF: `250-text`, `250 text` or
/// a bare `250` (a last line). The text may be any octets except CR, LF and
/// NUL.
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine<'_>, SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidReply { reason };
    let (rest, digits) = take_while_m_n::<_, _, ()>(3, 3, |c: u8| c.is_ascii_digit())(line)
        .map_err(|_| invalid("a reply line must start with a three-digit code"))?;
    let code = digits_value(digits)
        .and_then(|v| u16::try_from(v).ok())
        .and_then(ReplyCode::new)
        .ok_or(invalid("reply code out of range (RFC 5321 §4.2)"))?;
    let (last, text) = match rest {
        [] => (true, rest),
        [b' ', text @ ..] => (true, text),
        [b'-', text @ ..] => (false, text),
        _ => return Err(invalid("reply code must be followed by SP, \"-\" or CRLF")),
    };
    if !is_reply_text(text) {
        return Err(invalid("reply text contains CR, LF or NUL"));
    }
    Ok(ReplyLine { code, last, text })
}

/// One complete SMTP reply, single- or multi-line (RFC 5321 §4.2), kept as
/// its raw bytes, CRLFs included.
///
/// `enhanced` is the RFC 3463 code found at the start of the first line's
/// text, if any (RFC 2034 §4: only when its class equals the reply code's
/// first digit, and followed by SP or the end of the line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: ReplyCode,
    enhanced: Option<EnhancedCode>,
    raw: Bytes,
}

impl Reply {
    /// Parses one complete reply: `raw` is all its lines, EACH ending in
    /// CRLF (the final one too).
    ///
    /// Every line must carry the same code, only the last one may have SP
    /// (or nothing) after the code, and nothing may follow the last line.
    /// A valid reply is stored as it is, without allocating.
    pub fn parse(raw: Bytes) -> Result<Reply, SyntaxError> {
        let invalid = |reason| SyntaxError::InvalidReply { reason };
        if raw.is_empty() {
            return Err(invalid("empty reply"));
        }
        let mut rest: &[u8] = &raw;
        let mut first: Option<ReplyLine<'_>> = None;
        loop {
            let nl =
                memchr::memchr(b'\n', rest).ok_or(invalid("reply line does not end in CRLF"))?;
            let (with_cr, after) = rest
                .split_at_checked(nl)
                .ok_or(invalid("reply line does not end in CRLF"))?;
            let line = with_cr
                .strip_suffix(b"\r")
                .ok_or(invalid("reply line ends in a bare LF"))?;
            rest = after.get(1..).unwrap_or_default();
            let parsed = parse_reply_line(line)?;
            match &first {
                None => first = Some(parsed),
                Some(f) if f.code != parsed.code => {
                    return Err(invalid("code changed inside a multi-line reply"))
                }
                Some(_) => {}
            }
            if parsed.last {
                if !rest.is_empty() {
                    return Err(invalid("data after the last line of the reply"));
                }
                break;
            }
            if rest.is_empty() {
                return Err(invalid("multi-line reply has no last line"));
            }
        }
        let first = first.ok_or(invalid("empty reply"))?;
        let code = first.code;
        let enhanced = enhanced_prefix(first.text, code).map(|(e, _)| e);
        Ok(Reply {
            code,
            enhanced,
            raw,
        })
    }

    /// Builds a reply. An empty `lines` means one line with empty text. If
    /// `enhanced` is `Some`, it is written at the start of every line, as
    /// servers do (RFC 2034); it is recorded as the reply's enhanced code
    /// only if its class equals `code`'s first digit, as [`Reply::parse`]
    /// would. CR, LF and NUL in `lines` are replaced by spaces so that the
    /// reply can never be split or extended by its text.
    ///
    /// # Panics
    ///
    /// If `code` is not a valid reply code (see [`ReplyCode::new`]): that is a
    /// programming error, never caused by input.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, lines: &[&[u8]]) -> Reply {
        let code = match ReplyCode::new(code) {
            Some(c) => c,
            None => panic!("invalid SMTP reply code {code}"),
        };
        let count = lines.len().max(1);
        let mut raw = Vec::with_capacity(lines.iter().map(|l| l.len() + 16).sum::<usize>() + 16);
        // Where the first line's text (after `250 `/`250-`) ends.
        let mut first_text_end = 0;
        for i in 0..count {
            let text = lines.get(i).copied().unwrap_or_default();
            let last = i + 1 == count;
            write_decimal(&mut raw, code.get());
            if let Some(e) = enhanced {
                raw.push(if last { b' ' } else { b'-' });
                write_decimal(&mut raw, u16::from(e.class));
                raw.push(b'.');
                write_decimal(&mut raw, e.subject);
                raw.push(b'.');
                write_decimal(&mut raw, e.detail);
                if !text.is_empty() {
                    raw.push(b' ');
                }
            } else if !last || !text.is_empty() {
                raw.push(if last { b' ' } else { b'-' });
            }
            raw.extend(text.iter().map(|&c| match c {
                b'\r' | b'\n' | 0 => b' ',
                c => c,
            }));
            if i == 0 {
                first_text_end = raw.len();
            }
            raw.extend_from_slice(b"\r\n");
        }
        // Every line written above is valid (three digits, one separator,
        // text without CR, LF or NUL), so the reply is what `Reply::parse`
        // reads it as; its enhanced code is read back from the first line
        // the same way (only a well-formed one of the code's class counts).
        let enhanced = raw
            .get(4..first_text_end)
            .and_then(|text| enhanced_prefix(text, code))
            .map(|(e, _)| e);
        let raw = Bytes::from(raw);
        debug_assert_eq!(
            Reply::parse(raw.clone()).ok(),
            Some(Reply {
                code,
                enhanced,
                raw: raw.clone()
            })
        );
        Reply {
            code,
            enhanced,
            raw,
        }
    }

    /// A reply whose lines the caller has already checked one by one, as
    /// [`Reply::parse`] would: each ends in CRLF and passes
    /// [`parse_reply_line`], all carry `code`, only the last one is a last
    /// line, and nothing follows it. `first_line` is the length of the first
    /// line, CRLF excluded. (The client session frames replies line by line
    /// and builds them here instead of reading every line a second time.)
    pub(crate) fn from_checked_lines(raw: Bytes, code: ReplyCode, first_line: usize) -> Reply {
        let enhanced = raw
            .get(4..first_line)
            .and_then(|text| enhanced_prefix(text, code))
            .map(|(e, _)| e);
        debug_assert_eq!(
            Reply::parse(raw.clone()).ok(),
            Some(Reply {
                code,
                enhanced,
                raw: raw.clone()
            })
        );
        Reply {
            code,
            enhanced,
            raw,
        }
    }

    /// The reply code.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The enhanced status code of the first line, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text of each line after `250-`/`250 ` (zero-copy slices of the
    /// raw reply; a bare `250` line yields empty text).
    pub fn lines(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.raw_lines().map(|text| self.raw.slice_ref(text))
    }

    /// Like [`Reply::lines`], with the enhanced code (and the SP after it)
    /// removed from each line that starts with one of the reply's class.
    pub fn text(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.raw_lines().map(|text| {
            let text = enhanced_prefix(text, self.code).map_or(text, |(_, rest)| rest);
            self.raw.slice_ref(text)
        })
    }

    pub(crate) fn raw_lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.raw
            .split(|&c| c == b'\n')
            .filter(|segment| !segment.is_empty())
            .map(|segment| {
                let line = segment.strip_suffix(b"\r").unwrap_or(segment);
                line.get(4..).unwrap_or_default()
            })
    }

    /// The number of lines.
    pub fn line_count(&self) -> usize {
        memchr::memchr_iter(b'\n', &self.raw).count()
    }

    /// The whole reply as on the wire, CRLFs included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Appends the reply, final CRLF included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.raw);
    }

    /// The reply, final CRLF included (a cheap clone of the raw bytes).
    pub fn to_bytes(&self) -> Bytes {
        self.raw.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Reply, SyntaxError> {
        Reply::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn ok(s: &str) -> Reply {
        match parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn bad(s: &str) -> &'static str {
        match parse(s) {
            Err(SyntaxError::InvalidReply { reason }) => reason,
            other => panic!("{s:?} should be invalid, got {other:?}"),
        }
    }

    fn strings(it: impl Iterator<Item = Bytes>) -> Vec<String> {
        it.map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
    }

    #[test]
    fn rfc5321_appendix_d() {
        let r = ok("220 foo.com Simple Mail Transfer Service Ready\r\n");
        assert_eq!(r.code(), ReplyCode::SERVICE_READY);
        assert_eq!(r.code().get(), 220);
        assert_eq!(r.enhanced(), None);
        assert_eq!(r.line_count(), 1);
        assert_eq!(
            strings(r.lines()),
            ["foo.com Simple Mail Transfer Service Ready"]
        );

        let raw =
            "250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n";
        let r = ok(raw);
        assert_eq!(r.code(), ReplyCode::OK);
        assert_eq!(r.line_count(), 5);
        assert_eq!(
            strings(r.lines()),
            ["foo.com greets bar.com", "8BITMIME", "SIZE", "DSN", "HELP"]
        );
        assert_eq!(strings(r.text()), strings(r.lines()));
        assert_eq!(&r.to_bytes()[..], raw.as_bytes());
        let mut out = b"x".to_vec();
        r.write_to(&mut out);
        assert_eq!(&out[1..], raw.as_bytes());
        assert_eq!(&r.raw()[..], raw.as_bytes());

        for (s, code) in [
            ("250 OK\r\n", 250),
            ("354 Start mail input; end with <CRLF>.<CRLF>\r\n", 354),
            ("221 foo.com Service closing transmission channel\r\n", 221),
            ("550 No such user here\r\n", 550),
            ("553 User ambiguous\r\n", 553),
            (
                "251 User not local; will forward to <Brown@foo.com>\r\n",
                251,
            ),
        ] {
            assert_eq!(ok(s).code().get(), code);
        }
    }

    #[test]
    fn enhanced_codes() {
        let r = ok("250 2.1.0 Ok\r\n");
        assert_eq!(r.enhanced(), Some(EnhancedCode::new(2, 1, 0)));
        assert_eq!(strings(r.lines()), ["2.1.0 Ok"]);
        assert_eq!(strings(r.text()), ["Ok"]);

        let r = ok("550-5.7.1 Relaying denied\r\n550-5.7.1 see policy\r\n550 5.7.1\r\n");
        assert_eq!(r.enhanced().map(|e| e.to_string()), Some("5.7.1".into()));
        assert_eq!(strings(r.text()), ["Relaying denied", "see policy", ""]);

        let r = ok("451 4.123.999 try later\r\n");
        assert_eq!(r.enhanced(), Some(EnhancedCode::new(4, 123, 999)));
        let r = ok("250 2.01.001 leading zeros\r\n");
        assert_eq!(r.enhanced(), Some(EnhancedCode::new(2, 1, 1)));

        for not_enhanced in [
            "250 5.0.0 class differs\r\n",
            "354 3.0.0 class 3 has none\r\n",
            "250 2.0.0x\r\n",
            "250 2.0\r\n",
            "250 2.1000.0 x\r\n",
            "250 2.0.1000 x\r\n",
            "250 2..0 x\r\n",
            "250  2.0.0 x\r\n",
            "250 x 2.0.0\r\n",
            "250\r\n",
        ] {
            let r = ok(not_enhanced);
            assert_eq!(r.enhanced(), None, "{not_enhanced:?}");
            assert_eq!(strings(r.text()), strings(r.lines()), "{not_enhanced:?}");
        }
        // Per line: only lines that have one are stripped.
        let r = ok("250-2.0.0 a\r\n250-b\r\n250 2.0.0 c\r\n");
        assert_eq!(strings(r.text()), ["a", "b", "c"]);
        let r = ok("250-a\r\n250 2.0.0 c\r\n");
        assert_eq!(r.enhanced(), None);
        assert_eq!(strings(r.text()), ["a", "c"]);

        assert_eq!(
            EnhancedCode::parse(b"5.5.1"),
            Some(EnhancedCode::new(5, 5, 1))
        );
        assert_eq!(EnhancedCode::parse(b"5.5.1 "), None);
        assert_eq!(EnhancedCode::parse(b"3.5.1"), None);
        assert_eq!(EnhancedCode::parse(b""), None);
        assert_eq!(EnhancedCode::new(4, 7, 0).to_string(), "4.7.0");
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line(b"250-text"),
            Ok(ReplyLine {
                code: ReplyCode::OK,
                last: false,
                text: b"text"
            })
        );
        assert_eq!(
            parse_reply_line(b"250 text here"),
            Ok(ReplyLine {
                code: ReplyCode::OK,
                last: true,
                text: b"text here"
            })
        );
        let bare = parse_reply_line(b"250").unwrap();
        assert!(bare.last);
        assert_eq!(bare.text, b"");
        assert!(!parse_reply_line(b"250-").unwrap().last);
        assert_eq!(parse_reply_line(b"250 ").unwrap().text, b"");
        assert_eq!(
            parse_reply_line("220 héllo wörld".as_bytes()).unwrap().text,
            "héllo wörld".as_bytes()
        );
        assert!(parse_reply_line(b"220 \xff\xfe latin-1 \xe9").is_ok());
        assert!(parse_reply_line(b"220 tab\there").is_ok());
        for bad_line in [
            &b""[..],
            b"25",
            b"25 x",
            b"abc x",
            b"2x0 x",
            b"2500 x",
            b"250x",
            b"250\tx",
            b"199 x",
            b"100 x",
            b"600 x",
            b"260 x",
            b"999 x",
            b"000",
            b"250 a\rb",
            b"250 a\nb",
            b"250 a\0b",
            b" 250 x",
        ] {
            assert!(
                matches!(
                    parse_reply_line(bad_line),
                    Err(SyntaxError::InvalidReply { .. })
                ),
                "{bad_line:?}"
            );
        }
    }

    #[test]
    fn malformed_replies() {
        assert_eq!(bad(""), "empty reply");
        assert_eq!(bad("250 OK"), "reply line does not end in CRLF");
        assert_eq!(bad("250 OK\n"), "reply line ends in a bare LF");
        assert_eq!(bad("250-a\n250 b\r\n"), "reply line ends in a bare LF");
        assert_eq!(bad("250 OK\r"), "reply line does not end in CRLF");
        assert_eq!(bad("250 O\rK\r\n"), "reply text contains CR, LF or NUL");
        assert_eq!(
            bad("250-a\r\n251 b\r\n"),
            "code changed inside a multi-line reply"
        );
        assert_eq!(
            bad("250-a\r\n550 b\r\n"),
            "code changed inside a multi-line reply"
        );
        assert_eq!(bad("250-a\r\n"), "multi-line reply has no last line");
        assert_eq!(
            bad("250-a\r\n250-b\r\n"),
            "multi-line reply has no last line"
        );
        assert_eq!(
            bad("250 a\r\n250 b\r\n"),
            "data after the last line of the reply"
        );
        assert_eq!(bad("250 a\r\nx"), "data after the last line of the reply");
        assert_eq!(
            bad("250 a\r\n\r\n"),
            "data after the last line of the reply"
        );
        assert_eq!(
            bad("\r\n"),
            "a reply line must start with a three-digit code"
        );
        assert_eq!(bad("600 x\r\n"), "reply code out of range (RFC 5321 §4.2)");
        assert_eq!(
            bad("250_x\r\n"),
            "reply code must be followed by SP, \"-\" or CRLF"
        );
        assert_eq!(bad("250 a\0\r\n"), "reply text contains CR, LF or NUL");
        assert_eq!(
            Reply::parse(Bytes::from_static(b"250-a\r\n250-\r\n250\r\n"))
                .unwrap()
                .line_count(),
            3
        );
    }

    #[test]
    fn reply_codes() {
        assert_eq!(ReplyCode::new(250), Some(ReplyCode::OK));
        assert_eq!(ReplyCode::new(559).map(ReplyCode::get), Some(559));
        for badc in [0, 199, 260, 360, 560, 600, 1000, 65535] {
            assert_eq!(ReplyCode::new(badc), None, "{badc}");
        }
        let c = ReplyCode::new(421).unwrap();
        assert_eq!(c.class(), 4);
        assert_eq!(c.category(), 2);
        assert!(c.is_transient_negative());
        assert!(!c.is_permanent_negative());
        assert!(ReplyCode::OK.is_positive_completion());
        assert!(ReplyCode::START_MAIL_INPUT.is_positive_intermediate());
        assert!(ReplyCode::SYNTAX_ERROR.is_permanent_negative());
        assert_eq!(ReplyCode::OK.to_string(), "250");
        assert_eq!(u16::from(ReplyCode::TLS_NOT_AVAILABLE), 454);
    }

    #[test]
    fn building_replies() {
        let r = Reply::new(250, None, &[b"mx.example", b"PIPELINING", b"STARTTLS"]);
        assert_eq!(
            &r.raw()[..],
            b"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
        );
        assert_eq!(r.line_count(), 3);

        let r = Reply::new(250, Some(EnhancedCode::new(2, 0, 0)), &[b"a", b"", b"c"]);
        assert_eq!(&r.raw()[..], b"250-2.0.0 a\r\n250-2.0.0\r\n250 2.0.0 c\r\n");
        assert_eq!(r.enhanced(), Some(EnhancedCode::new(2, 0, 0)));
        assert_eq!(strings(r.text()), ["a", "", "c"]);

        let r = Reply::new(221, None, &[]);
        assert_eq!(&r.raw()[..], b"221\r\n");
        assert_eq!(strings(r.lines()), [""]);
        let r = Reply::new(250, None, &[b"", b""]);
        assert_eq!(&r.raw()[..], b"250-\r\n250\r\n");
        let r = Reply::new(550, Some(EnhancedCode::new(5, 1, 1)), &[]);
        assert_eq!(&r.raw()[..], b"550 5.1.1\r\n");

        // Text cannot inject lines.
        let r = Reply::new(250, None, &[b"ok\r\n250 injected\0"]);
        assert_eq!(&r.raw()[..], b"250 ok  250 injected \r\n");
        assert_eq!(r.line_count(), 1);

        // A mismatched enhanced class is written but not recognized, as parse.
        let r = Reply::new(250, Some(EnhancedCode::new(5, 0, 0)), &[b"x"]);
        assert_eq!(r.enhanced(), None);
        assert_eq!(Reply::parse(r.to_bytes()), Ok(r));
        // Text that starts with a code is recognized, as parse.
        let r = Reply::new(451, None, &[b"4.4.1 timeout"]);
        assert_eq!(r.enhanced(), Some(EnhancedCode::new(4, 4, 1)));
    }

    /// `Reply::new` writes its digits itself and reads the enhanced code
    /// back from the first line only: the result is what `Reply::parse`
    /// makes of the same octets, for every shape of reply.
    #[test]
    fn built_replies_read_back_as_parse_reads_them() {
        let codes = [
            None,
            Some(EnhancedCode::new(2, 0, 0)),
            Some(EnhancedCode::new(5, 7, 1)),
            Some(EnhancedCode::new(4, 999, 999)),
            // Out of range: written as given, never recognized.
            Some(EnhancedCode {
                class: 2,
                subject: 1000,
                detail: 0,
            }),
            Some(EnhancedCode {
                class: 9,
                subject: 0,
                detail: 0,
            }),
        ];
        let texts: [&[&[u8]]; 5] = [
            &[],
            &[b""],
            &[b"2.1.0 Ok", b"x"],
            &[b"mx.example ESMTP", b"PIPELINING", b""],
            &[b"5.0.0"],
        ];
        for code in [200, 221, 250, 354, 421, 451, 550, 559] {
            for enhanced in codes {
                for lines in texts {
                    let r = Reply::new(code, enhanced, lines);
                    assert_eq!(Reply::parse(r.to_bytes()), Ok(r.clone()), "{r:?}");
                    assert_eq!(r.code().get(), code);
                }
            }
        }
        let r = Reply::new(
            250,
            Some(EnhancedCode {
                class: 2,
                subject: 1000,
                detail: 0,
            }),
            &[b"x"],
        );
        assert_eq!(&r.raw()[..], b"250 2.1000.0 x\r\n");
        assert_eq!(r.enhanced(), None);
    }

    #[test]
    #[should_panic(expected = "invalid SMTP reply code")]
    fn building_with_bad_code_panics() {
        let _ = Reply::new(600, None, &[]);
    }

    #[test]
    fn zero_copy_lines() {
        let raw = Bytes::from_static(b"250-a\r\n250 b\r\n");
        let r = Reply::parse(raw.clone()).unwrap();
        assert_eq!(r.raw().as_ptr(), raw.as_ptr());
        let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
        for line in r.lines() {
            assert!(range.contains(&(line.as_ptr() as usize)));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x0BAD_5EED_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let codes: &[&[u8]] = &[b"250", b"250", b"250", b"550", b"25", b"600"];
        let seps: &[&[u8]] = &[b"-", b"-", b" ", b"", b"_"];
        let pieces: &[&[u8]] = &[
            b" ",
            b"2.0.0",
            b"5.7.1",
            b"x",
            b"\0",
            b"\r",
            b"\xc3\xa9",
            b"4",
            b".",
            b"\xff",
        ];
        let ends: &[&[u8]] = &[b"\r\n", b"\r\n", b"\r\n", b"\n", b""];
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut raw = Vec::new();
            for _ in 0..1 + next() % 4 {
                for items in [codes, seps] {
                    raw.extend_from_slice(items[(next() % items.len() as u64) as usize]);
                }
                for _ in 0..next() % 4 {
                    raw.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
                }
                raw.extend_from_slice(ends[(next() % ends.len() as u64) as usize]);
            }
            for line in raw.split(|&c| c == b'\n') {
                let _ = parse_reply_line(line);
            }
            if let Ok(r) = Reply::parse(Bytes::from(raw)) {
                accepted += 1;
                assert_eq!(r.lines().count(), r.line_count());
                assert_eq!(r.text().count(), r.line_count());
                assert_eq!(Reply::parse(r.to_bytes()), Ok(r.clone()));
                let lines: Vec<Bytes> = r.lines().collect();
                let refs: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
                // Rebuilding from the lines gives the same reply, except that
                // a last line "250 " (SP, no text) is written as a bare "250".
                let rebuilt = Reply::new(r.code().get(), None, &refs);
                assert_eq!(rebuilt.code(), r.code());
                assert_eq!(rebuilt.enhanced(), r.enhanced());
                assert_eq!(rebuilt.lines().collect::<Vec<_>>(), lines);
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    #[test]
    fn random_round_trips() {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: &[&[u8]] = &[
            b"a",
            b" ",
            b"Z",
            b"-",
            b"\xc3\xa9",
            b"\xff",
            b"2.0.0",
            b".",
            b"\t",
        ];
        for _ in 0..2000 {
            let code = loop {
                let c = 200 + (next() % 400) as u16;
                if ReplyCode::new(c).is_some() {
                    break c;
                }
            };
            let class = (code / 100) as u8;
            let enhanced = match next() % 3 {
                0 => None,
                1 => Some(EnhancedCode::new(
                    class,
                    (next() % 1000) as u16,
                    (next() % 1000) as u16,
                )),
                _ => Some(EnhancedCode::new(class, (next() % 10) as u16, 0)),
            };
            let lines: Vec<Vec<u8>> = (0..next() % 5)
                .map(|_| {
                    (0..next() % 8)
                        .flat_map(|_| alphabet[(next() % alphabet.len() as u64) as usize].to_vec())
                        .collect()
                })
                .collect();
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            let r = Reply::new(code, enhanced, &refs);
            assert_eq!(r.code().get(), code);
            assert_eq!(r.line_count(), refs.len().max(1));
            let reparsed = Reply::parse(r.to_bytes()).unwrap();
            assert_eq!(reparsed, r);
            if let Some(e) = enhanced.filter(|e| matches!(e.class, 2 | 4 | 5)) {
                assert_eq!(r.enhanced(), Some(e));
                let texts: Vec<Bytes> = r.text().collect();
                let want: Vec<&[u8]> = if refs.is_empty() {
                    vec![b""]
                } else {
                    refs.clone()
                };
                assert_eq!(texts.len(), want.len());
                for (t, w) in texts.iter().zip(want) {
                    assert_eq!(&t[..], w);
                }
            } else if enhanced.is_none() && !refs.is_empty() {
                let lines: Vec<Bytes> = r.lines().collect();
                assert_eq!(lines.iter().map(|b| &b[..]).collect::<Vec<_>>(), refs);
            }
        }
    }
}
