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

use crate::octets::Octets;
use crate::smtp::syntax::{is_reply_text, SyntaxError};

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
            Some((code, [])) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// `1*3digit` at the start of `input`, as many digits as there are (up to
/// three), and the rest.
#[inline]
fn digits_1_3(input: &[u8]) -> Option<(u16, &[u8])> {
    let mut value = 0u16;
    let mut n = 0;
    for &c in input.iter().take(3) {
        if !c.is_ascii_digit() {
            break;
        }
        value = value * 10 + u16::from(c - b'0');
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some((value, input.get(n..).unwrap_or_default()))
}

/// `class "." subject "." detail` at the start of `input` (RFC 3463), and
/// the rest.
#[inline]
fn enhanced_code(input: &[u8]) -> Option<(EnhancedCode, &[u8])> {
    let (&class, rest) = input.split_first()?;
    if !matches!(class, b'2' | b'4' | b'5') {
        return None;
    }
    let (subject, rest) = digits_1_3(rest.strip_prefix(b".")?)?;
    let (detail, rest) = digits_1_3(rest.strip_prefix(b".")?)?;
    let code = EnhancedCode {
        class: class - b'0',
        subject,
        detail,
    };
    Some((code, rest))
}

/// The enhanced code at the start of a line's text, if its class is the
/// reply's class and it is followed by SP or the end of the text; returns it
/// and the text after the SP.
#[inline]
fn enhanced_prefix(text: &[u8], code: ReplyCode) -> Option<(EnhancedCode, &[u8])> {
    let (enhanced, rest) = enhanced_code(text)?;
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
    let (code, rest) = reply_code(line)?;
    let (last, text) = match rest {
        [] => (true, rest),
        [b' ', text @ ..] => (true, text),
        [b'-', text @ ..] => (false, text),
        _ => return Err(invalid("reply code must be followed by SP, \"-\" or CRLF")),
    };
    // One vector scan; the rule is `is_reply_text`.
    let clean = memchr::memchr3(b'\r', b'\n', 0, text).is_none();
    debug_assert_eq!(clean, is_reply_text(text));
    if !clean {
        return Err(invalid("reply text contains CR, LF or NUL"));
    }
    Ok(ReplyLine { code, last, text })
}

/// The three-digit reply code at the start of a line, and the rest.
#[inline]
fn reply_code(line: &[u8]) -> Result<(ReplyCode, &[u8]), SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidReply { reason };
    let Some((&[a, b, c], rest)) = line.split_first_chunk::<3>() else {
        return Err(invalid("a reply line must start with a three-digit code"));
    };
    if !(a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit()) {
        return Err(invalid("a reply line must start with a three-digit code"));
    }
    let value = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    let code = ReplyCode::new(value).ok_or(invalid("reply code out of range (RFC 5321 §4.2)"))?;
    Ok((code, rest))
}

/// One line of a reply at the start of `input` (a reply or a stream of
/// them), checked as [`parse_reply_line`] checks it: the line (CRLF
/// excluded), what it says, and the rest of the input after its CRLF.
///
/// The usual line (valid code, `-` or SP, text, CRLF) takes one scan for the
/// first CR, LF or NUL; anything else goes the long way, which finds the
/// exact error.
#[inline]
fn next_line(input: &[u8]) -> Result<(&[u8], ReplyLine<'_>, &[u8]), SyntaxError> {
    if let Some((&[a, b, c, sep], text)) = input.split_first_chunk::<4>() {
        let code_ok = matches!(a, b'2'..=b'5') && matches!(b, b'0'..=b'5') && c.is_ascii_digit();
        if code_ok && (sep == b'-' || sep == b' ') {
            if let Some(end) = memchr::memchr3(b'\r', b'\n', 0, text) {
                if let (Some(b'\r'), Some(b'\n')) = (text.get(end), text.get(end + 1)) {
                    if let (Some(line), Some(rest)) = (input.get(..end + 4), text.get(end + 2..)) {
                        let value = u16::from(a - b'0') * 100
                            + u16::from(b - b'0') * 10
                            + u16::from(c - b'0');
                        let parsed = ReplyLine {
                            code: ReplyCode(value),
                            last: sep == b' ',
                            text: text.get(..end).unwrap_or_default(),
                        };
                        return Ok((line, parsed, rest));
                    }
                }
            }
        }
    }
    next_line_slow(input)
}

/// [`next_line`] by the book: find the LF, require the CR before it, then
/// [`parse_reply_line`].
#[cold]
fn next_line_slow(input: &[u8]) -> Result<(&[u8], ReplyLine<'_>, &[u8]), SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidReply { reason };
    let nl = memchr::memchr(b'\n', input).ok_or(invalid("reply line does not end in CRLF"))?;
    let (with_cr, after) = input
        .split_at_checked(nl)
        .ok_or(invalid("reply line does not end in CRLF"))?;
    let line = with_cr
        .strip_suffix(b"\r")
        .ok_or(invalid("reply line ends in a bare LF"))?;
    let parsed = parse_reply_line(line)?;
    Ok((line, parsed, after.get(1..).unwrap_or_default()))
}

/// The reply grammar, once for every form: reads the reply at the start of
/// `input` line by line (each line as [`parse_reply_line`] reads it; every
/// line carries the first line's code; only the last line is a last line)
/// and returns its code, its enhanced code and the input after its last
/// line. What follows the reply is not looked at.
fn scan_reply(input: &[u8]) -> Result<(ReplyCode, Option<EnhancedCode>, &[u8]), SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidReply { reason };
    if input.is_empty() {
        return Err(invalid("empty reply"));
    }
    let (_, first, mut rest) = next_line(input)?;
    let code = first.code;
    let enhanced = enhanced_prefix(first.text, code).map(|(e, _)| e);
    let mut last = first.last;
    while !last {
        if rest.is_empty() {
            return Err(invalid("multi-line reply has no last line"));
        }
        let (_, line, after) = next_line(rest)?;
        if line.code != code {
            return Err(invalid("code changed inside a multi-line reply"));
        }
        last = line.last;
        rest = after;
    }
    Ok((code, enhanced, rest))
}

/// [`scan_reply`] of a whole reply: nothing may follow its last line.
fn check_reply(raw: &[u8]) -> Result<(ReplyCode, Option<EnhancedCode>), SyntaxError> {
    let (code, enhanced, rest) = scan_reply(raw)?;
    if !rest.is_empty() {
        return Err(SyntaxError::InvalidReply {
            reason: "data after the last line of the reply",
        });
    }
    Ok((code, enhanced))
}

/// One complete SMTP reply, single- or multi-line (RFC 5321 §4.2), kept as
/// its raw bytes, CRLFs included.
///
/// `enhanced` is the RFC 3463 code found at the start of the first line's
/// text, if any (RFC 2034 §4: only when its class equals the reply code's
/// first digit, and followed by SP or the end of the line).
///
/// Generic over the container of its octets ([`crate::octets`]): `Reply`
/// (`Reply<Bytes>`) owns them and is what the sessions hand out;
/// [`ReplyRef`] (`Reply<&[u8]>`) borrows the caller's buffer, from
/// [`Reply::parse_borrowed`] or [`Reply::parse_next`], and allocates
/// nothing. Both come out of the same grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<B: Octets = Bytes> {
    code: ReplyCode,
    enhanced: Option<EnhancedCode>,
    raw: B,
}

/// A reply borrowing the buffer it was parsed from: see [`Reply`].
pub type ReplyRef<'a> = Reply<&'a [u8]>;

impl Reply {
    /// Parses one complete reply: `raw` is all its lines, EACH ending in
    /// CRLF (the final one too).
    ///
    /// Every line must carry the same code, only the last one may have SP
    /// (or nothing) after the code, and nothing may follow the last line.
    /// A valid reply is stored as it is, without allocating.
    pub fn parse(raw: Bytes) -> Result<Reply, SyntaxError> {
        let (code, enhanced) = check_reply(&raw)?;
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

    /// The text of each line after `250-`/`250 ` (zero-copy slices of the
    /// raw reply; a bare `250` line yields empty text).
    pub fn lines(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.raw_lines().map(|text| self.raw.slice_ref(text))
    }

    /// Like [`Reply::lines`], with the enhanced code (and the SP after it)
    /// removed from each line that starts with one of the reply's class.
    pub fn text(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.raw_lines()
            .map(|text| self.raw.slice_ref(strip_enhanced(text, self.code)))
    }

    /// The reply, final CRLF included (a cheap clone of the raw bytes).
    pub fn to_bytes(&self) -> Bytes {
        self.raw.clone()
    }
}

impl<'a> Reply<&'a [u8]> {
    /// [`Reply::parse`] without taking ownership: `raw` is one complete
    /// reply, every line ending in CRLF, nothing after the last line. The
    /// reply borrows `raw`; nothing is allocated. Same rules, same errors
    /// as [`Reply::parse`] (the same code).
    pub fn parse_borrowed(raw: &'a [u8]) -> Result<Self, SyntaxError> {
        let (code, enhanced) = check_reply(raw)?;
        Ok(Reply {
            code,
            enhanced,
            raw,
        })
    }

    /// The first reply of `stream` (replies back to back, as a server
    /// sends them), read line by line, each line checked once, and the rest
    /// of the stream after it. The reply is what [`Reply::parse_borrowed`]
    /// makes of its own octets; what follows it is not looked at.
    ///
    /// `stream` must hold the whole reply: a reply cut short fails as
    /// [`Reply::parse`] fails on it ("reply line does not end in CRLF",
    /// "multi-line reply has no last line"). An empty `stream` is "empty
    /// reply".
    ///
    /// ```
    /// use starttls::smtp::reply::ReplyRef;
    ///
    /// let mut stream = &b"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n"[..];
    /// let mut codes = Vec::new();
    /// while !stream.is_empty() {
    ///     let (reply, rest) = ReplyRef::parse_next(stream).unwrap();
    ///     codes.push(reply.code().get());
    ///     stream = rest;
    /// }
    /// assert_eq!(codes, [220, 250]);
    /// ```
    pub fn parse_next(stream: &'a [u8]) -> Result<(Self, &'a [u8]), SyntaxError> {
        let (code, enhanced, rest) = scan_reply(stream)?;
        let raw = stream.get(..stream.len() - rest.len()).unwrap_or_default();
        Ok((
            Reply {
                code,
                enhanced,
                raw,
            },
            rest,
        ))
    }

    /// A copy that owns its octets (one allocation), to keep past the
    /// buffer. To share an existing [`Bytes`] instead of copying, use
    /// [`Reply::map_octets`] with [`crate::octets::attach`].
    pub fn into_owned(self) -> Reply {
        self.map_octets(crate::octets::copy)
    }

    /// [`Reply::lines`] of a borrowed reply: sub-slices of its buffer.
    pub fn lines(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        line_texts(self.raw)
    }

    /// [`Reply::text`] of a borrowed reply: sub-slices of its buffer.
    pub fn text(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let code = self.code;
        line_texts(self.raw).map(move |text| strip_enhanced(text, code))
    }
}

impl<B: Octets> Reply<B> {
    /// The same reply with its octets in another container: `f` is called
    /// once, on the whole raw reply.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Reply<C> {
        Reply {
            code: self.code,
            enhanced: self.enhanced,
            raw: f(self.raw),
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

    /// The text of each line, as slices of [`Reply::raw`] (what
    /// [`Reply::lines`] gives, in any form).
    pub(crate) fn raw_lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        line_texts(self.raw.as_ref())
    }

    /// The number of lines.
    pub fn line_count(&self) -> usize {
        memchr::memchr_iter(b'\n', self.raw.as_ref()).count()
    }

    /// The whole reply as on the wire, CRLFs included.
    pub fn raw(&self) -> &B {
        &self.raw
    }

    /// Appends the reply, final CRLF included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.raw.as_ref());
    }
}

/// The text of each line of a checked reply, after `250-`/`250 `.
pub(crate) fn line_texts(raw: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    raw.split(|&c| c == b'\n')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let line = segment.strip_suffix(b"\r").unwrap_or(segment);
            line.get(4..).unwrap_or_default()
        })
}

/// A line's text without the enhanced code of the reply's class (and its
/// SP) at its start, if it has one.
fn strip_enhanced(text: &[u8], code: ReplyCode) -> &[u8] {
    enhanced_prefix(text, code).map_or(text, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::octets::attach;

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
    /// The reply grammar as it was written before the borrowed path (nom
    /// line split, byte-at-a-time text check): the fast scan must accept and
    /// refuse exactly what it did, with the same errors.
    fn reference_parse(raw: &[u8]) -> Result<(ReplyCode, Option<EnhancedCode>), SyntaxError> {
        fn line_ref(line: &[u8]) -> Result<ReplyLine<'_>, SyntaxError> {
            let invalid = |reason| SyntaxError::InvalidReply { reason };
            let digits = line
                .get(..3)
                .filter(|d| d.iter().all(u8::is_ascii_digit))
                .ok_or(invalid("a reply line must start with a three-digit code"))?;
            let code = crate::smtp::syntax::digits_value(digits)
                .and_then(|v| u16::try_from(v).ok())
                .and_then(ReplyCode::new)
                .ok_or(invalid("reply code out of range (RFC 5321 §4.2)"))?;
            let rest = &line[3..];
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
        let invalid = |reason| SyntaxError::InvalidReply { reason };
        if raw.is_empty() {
            return Err(invalid("empty reply"));
        }
        let mut rest = raw;
        let mut first: Option<ReplyLine<'_>> = None;
        loop {
            let nl = rest
                .iter()
                .position(|&c| c == b'\n')
                .ok_or(invalid("reply line does not end in CRLF"))?;
            let line = rest[..nl]
                .strip_suffix(b"\r")
                .ok_or(invalid("reply line ends in a bare LF"))?;
            rest = &rest[nl + 1..];
            let parsed = line_ref(line)?;
            assert_eq!(parse_reply_line(line), Ok(parsed));
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
        // The enhanced code by its RFC 3463 grammar, spelled out.
        let t = first.text;
        let class_ok = t.first() == Some(&(b'0' + first.code.class()));
        let enhanced = (|| {
            if !class_ok
                || !matches!(t.first(), Some(b'2' | b'4' | b'5'))
                || t.get(1) != Some(&b'.')
            {
                return None;
            }
            let d1 = t[2..].iter().take_while(|c| c.is_ascii_digit()).count();
            if !(1..=3).contains(&d1) || t.get(2 + d1) != Some(&b'.') {
                return None;
            }
            let s2 = 3 + d1;
            let d2 = t[s2..].iter().take_while(|c| c.is_ascii_digit()).count();
            if !(1..=3).contains(&d2) || !matches!(t.get(s2 + d2), None | Some(b' ')) {
                return None;
            }
            let num = |d: &[u8]| d.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
            Some(EnhancedCode::new(
                t[0] - b'0',
                num(&t[2..2 + d1]),
                num(&t[s2..s2 + d2]),
            ))
        })();
        Ok((first.code, enhanced))
    }

    /// Every check the borrowed path owes the owned one, on one input.
    fn differential(x: &[u8]) {
        let line = Bytes::copy_from_slice(x);
        let owned = Reply::parse(line.clone());
        let borrowed = ReplyRef::parse_borrowed(&line);
        assert_eq!(
            owned
                .as_ref()
                .map(|r| (r.code(), r.enhanced()))
                .map_err(Clone::clone),
            reference_parse(x),
            "{x:?}"
        );
        match (&borrowed, &owned) {
            (Ok(b), Ok(o)) => {
                assert_eq!(&b.clone().map_octets(attach(&line)), o, "{x:?}");
                assert_eq!(&b.clone().into_owned(), o, "{x:?}");
                assert_eq!(b.code(), o.code());
                assert_eq!(b.enhanced(), o.enhanced());
                assert_eq!(b.line_count(), o.line_count());
                let lines: Vec<&[u8]> = b.lines().collect();
                let owned_lines: Vec<Bytes> = o.lines().collect();
                assert_eq!(
                    lines,
                    owned_lines.iter().map(|l| &l[..]).collect::<Vec<_>>()
                );
                let text: Vec<&[u8]> = b.text().collect();
                let owned_text: Vec<Bytes> = o.text().collect();
                assert_eq!(text, owned_text.iter().map(|l| &l[..]).collect::<Vec<_>>());
                let (mut out_b, mut out_o) = (Vec::new(), Vec::new());
                b.write_to(&mut out_b);
                o.write_to(&mut out_o);
                assert_eq!(out_b, out_o);
            }
            (Err(b), Err(o)) => assert_eq!(b, o, "{x:?}"),
            _ => panic!("forms disagree on {x:?}: {borrowed:?} vs {owned:?}"),
        }
        // The stream reader: the first reply, and the same verdict.
        match ReplyRef::parse_next(x) {
            Ok((r, rest)) => {
                let n = x.len() - rest.len();
                assert_eq!(ReplyRef::parse_borrowed(&x[..n]), Ok(r.clone()), "{x:?}");
                assert_eq!(r.raw().as_ptr(), x.as_ptr());
                if rest.is_empty() {
                    assert_eq!(borrowed, Ok(r));
                } else {
                    assert_eq!(
                        owned,
                        Err(SyntaxError::InvalidReply {
                            reason: "data after the last line of the reply"
                        })
                    );
                }
            }
            Err(e) => assert_eq!(owned, Err(e), "{x:?}"),
        }
    }

    /// Every reply the tests above use, valid or not.
    const VECTORS: &[&str] = &[
        "220 foo.com Simple Mail Transfer Service Ready\r\n",
        "250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n",
        "250 OK\r\n",
        "354 Start mail input; end with <CRLF>.<CRLF>\r\n",
        "221 foo.com Service closing transmission channel\r\n",
        "550 No such user here\r\n",
        "251 User not local; will forward to <Brown@foo.com>\r\n",
        "250 2.1.0 Ok\r\n",
        "550-5.7.1 Relaying denied\r\n550-5.7.1 see policy\r\n550 5.7.1\r\n",
        "451 4.123.999 try later\r\n",
        "250 2.01.001 leading zeros\r\n",
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
        "250-2.0.0 a\r\n250-b\r\n250 2.0.0 c\r\n",
        "250-a\r\n250 2.0.0 c\r\n",
        "",
        "250 OK",
        "250 OK\n",
        "250-a\n250 b\r\n",
        "250 OK\r",
        "250 O\rK\r\n",
        "250-a\r\n251 b\r\n",
        "250-a\r\n550 b\r\n",
        "250-a\r\n",
        "250-a\r\n250-b\r\n",
        "250 a\r\n250 b\r\n",
        "250 a\r\nx",
        "250 a\r\n\r\n",
        "\r\n",
        "600 x\r\n",
        "250_x\r\n",
        "250 a\0\r\n",
        "250-a\r\n250-\r\n250\r\n",
        "25\r\n",
        "2500 x\r\n",
        "199 x\r\n",
        "260 x\r\n",
        "2x0 x\r\n",
        " 250 x\r\n",
        "250\tx\r\n",
        "250 a\nb\r\n",
        "220 h\u{e9}llo w\u{f6}rld\r\n",
        "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
        "250-\r\n250 DSN\r\n",
    ];

    /// Random mutations of a valid reply: bytes changed, cut, repeated.
    fn mutations(seed: u64, base: &[u8], out: &mut Vec<Vec<u8>>) {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"\r\n\0 -.0123456789ab\xff";
        for _ in 0..64 {
            let mut m = base.to_vec();
            for _ in 0..1 + next() % 3 {
                if m.is_empty() {
                    break;
                }
                let at = (next() % m.len() as u64) as usize;
                match next() % 4 {
                    0 => m[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                    1 => m.truncate(at),
                    2 => {
                        m.remove(at);
                    }
                    _ => m.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
            }
            out.push(m);
        }
    }

    #[test]
    fn borrowed_and_owned_agree() {
        let mut corpus: Vec<Vec<u8>> = VECTORS.iter().map(|v| v.as_bytes().to_vec()).collect();
        // Streams: every vector followed by another.
        for (i, a) in VECTORS.iter().enumerate() {
            corpus.push(format!("{a}{}", VECTORS[(i * 7 + 3) % VECTORS.len()]).into_bytes());
        }
        // Every reply the round-trip generator builds, and mutations of it.
        let mut state = 0x5EED_0FD1_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..400u64 {
            let code = [220, 221, 250, 354, 451, 550, 559][(next() % 7) as usize];
            let enhanced = match next() % 3 {
                0 => None,
                1 => Some(EnhancedCode::new(
                    (code / 100) as u8,
                    (next() % 1000) as u16,
                    0,
                )),
                _ => Some(EnhancedCode::new(2, 1, (next() % 1000) as u16)),
            };
            let texts: [&[u8]; 4] = [b"mx.example ESMTP", b"PIPELINING", b"", b"2.0.0 ok"];
            let lines: Vec<&[u8]> = (0..next() % 4)
                .map(|_| texts[(next() % 4) as usize])
                .collect();
            let raw = Reply::new(code, enhanced, &lines).to_bytes().to_vec();
            mutations(i, &raw, &mut corpus);
            corpus.push(raw);
        }
        for v in VECTORS {
            mutations(v.len() as u64, v.as_bytes(), &mut corpus);
        }
        let mut accepted = 0;
        for x in &corpus {
            differential(x);
            accepted += Reply::parse(Bytes::copy_from_slice(x)).is_ok() as usize;
        }
        // Both verdicts are well represented.
        assert!(
            accepted > 1000 && corpus.len() - accepted > 1000,
            "{accepted} of {}",
            corpus.len()
        );
    }

    #[test]
    fn parse_next_walks_a_stream() {
        let stream =
            b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n250 2.1.0 Ok\r\n";
        let mut rest = &stream[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let (r, after) = ReplyRef::parse_next(rest).unwrap();
            got.push((r.code().get(), r.line_count(), r.enhanced()));
            rest = after;
        }
        assert_eq!(
            got,
            [
                (220, 1, None),
                (250, 3, None),
                (250, 1, Some(EnhancedCode::new(2, 1, 0)))
            ]
        );
        assert_eq!(
            ReplyRef::parse_next(b"250-a\r\n250-b\r\n"),
            Err(SyntaxError::InvalidReply {
                reason: "multi-line reply has no last line"
            })
        );
        assert_eq!(
            ReplyRef::parse_next(b"250 a\r\n250 b"),
            Ok((
                ReplyRef::parse_borrowed(b"250 a\r\n").unwrap(),
                &b"250 b"[..]
            ))
        );
        assert_eq!(
            ReplyRef::parse_next(b""),
            Err(SyntaxError::InvalidReply {
                reason: "empty reply"
            })
        );
    }
}
