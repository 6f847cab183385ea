//! Shared lexical rules of RFC 5321 §4.1.2 / §4.2 (with the RFC 6531 UTF-8
//! additions) as small nom 7 parsers over `&[u8]`, and the error type every
//! SMTP parser returns.
//!
//! The parsers use `()` as their nom error type: they never allocate, and the
//! callers turn a failure into a [`SyntaxError`] that says which rule failed.

use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::{recognize, verify};
use nom::multi::{many0_count, many1_count};
#[cfg(any(test, fuzzing))]
use nom::sequence::delimited;
use nom::sequence::{pair, preceded, tuple};
use nom::IResult;

/// Why a command line or a reply could not be parsed.
///
/// A server answers [`SyntaxError::reply_code`] to a client whose command
/// failed to parse: RFC 5321 §4.2.2 code 500 for an unknown verb and 501 for
/// bad arguments, with the RFC 3463 enhanced codes 5.5.1 ("invalid command")
/// and 5.5.4 ("invalid command arguments").
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// The verb is not one this crate knows (a server answers `500 5.5.1`).
    UnknownCommand,
    /// A known verb with malformed arguments (a server answers `501 5.5.4`).
    InvalidArguments {
        /// The verb, upper case, e.g. `"MAIL"`.
        command: &'static str,
        /// The rule that failed, e.g. `"MAIL requires FROM:<reverse-path>"`.
        reason: &'static str,
    },
    /// A reply (or one of its lines) that does not follow RFC 5321 §4.2.
    InvalidReply {
        /// The rule that failed, e.g. `"code changed inside a multi-line reply"`.
        reason: &'static str,
    },
}

impl SyntaxError {
    /// The reply code and RFC 3463 enhanced status code a server should send
    /// back for this error: `(500, "5.5.1")` for an unknown command,
    /// `(501, "5.5.4")` for invalid arguments.
    ///
    /// [`SyntaxError::InvalidReply`] is a client-side error that a server
    /// never answers; it maps to the generic `(500, "5.5.2")` ("syntax error").
    pub fn reply_code(&self) -> (u16, &'static str) {
        match self {
            SyntaxError::UnknownCommand => (500, "5.5.1"),
            SyntaxError::InvalidArguments { .. } => (501, "5.5.4"),
            SyntaxError::InvalidReply { .. } => (500, "5.5.2"),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::UnknownCommand => f.write_str("command not recognized"),
            SyntaxError::InvalidArguments { command, reason } => {
                write!(f, "invalid arguments to {command}: {reason}")
            }
            SyntaxError::InvalidReply { reason } => write!(f, "invalid reply: {reason}"),
        }
    }
}

impl std::error::Error for SyntaxError {}

/// Result of the internal parsers: no error payload, so no allocation.
pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, ()>;

/// The nom error every internal parser returns.
pub(crate) fn fail<T>() -> Result<T, nom::Err<()>> {
    Err(nom::Err::Error(()))
}

/// Runs `parser` on the whole of `input`; `None` unless it consumed everything.
pub(crate) fn whole<'a, T>(
    input: &'a [u8],
    mut parser: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> Option<T> {
    match parser(input) {
        Ok(([], value)) => Some(value),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Character classes (RFC 5234 core rules, RFC 5321 §4.1.2, RFC 5322 atext).
// ---------------------------------------------------------------------------

// One table lookup per octet: bit flags for every class below, built at
// compile time from the RFC definitions (`const fn` over 0..=255).
const LET_DIG: u8 = 1;
const LDH: u8 = 2;
const ATEXT: u8 = 4;
const QTEXT: u8 = 8;
const DCONTENT: u8 = 16;
const ESMTP_VALUE: u8 = 32;
const XCHAR: u8 = 64;

const fn classes(c: u8) -> u8 {
    let alnum = c.is_ascii_alphanumeric();
    let mut f = 0;
    if alnum {
        f |= LET_DIG | LDH | ATEXT;
    }
    if c == b'-' {
        f |= LDH;
    }
    if matches!(
        c,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'/'
            | b'='
            | b'?'
            | b'^'
            | b'_'
            | b'`'
            | b'{'
            | b'|'
            | b'}'
            | b'~'
    ) {
        f |= ATEXT;
    }
    if matches!(c, 32..=33 | 35..=91 | 93..=126) {
        f |= QTEXT;
    }
    if matches!(c, 33..=90 | 94..=126) {
        f |= DCONTENT;
    }
    if matches!(c, 33..=60 | 62..=126) {
        f |= ESMTP_VALUE;
    }
    if matches!(c, 33..=42 | 44..=60 | 62..=126) {
        f |= XCHAR;
    }
    f
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = classes(i as u8);
        i += 1;
    }
    t
};

#[inline(always)]
fn class(c: u8) -> u8 {
    // In bounds for every u8; `get` keeps the rule "no indexing" literal.
    CLASS.get(usize::from(c)).copied().unwrap_or(0)
}

/// `Let-dig = ALPHA / DIGIT`.
pub(crate) fn is_let_dig(c: u8) -> bool {
    class(c) & LET_DIG != 0
}

/// `ALPHA / DIGIT / "-"` (the body of `Ldh-str` and `esmtp-keyword`).
pub(crate) fn is_ldh(c: u8) -> bool {
    class(c) & LDH != 0
}

/// RFC 5322 `atext` (ASCII part).
pub(crate) fn is_atext(c: u8) -> bool {
    class(c) & ATEXT != 0
}

/// RFC 5321 `qtextSMTP = %d32-33 / %d35-91 / %d93-126` (ASCII part).
#[cfg(any(test, fuzzing))]
pub(crate) fn is_qtext(c: u8) -> bool {
    class(c) & QTEXT != 0
}

/// RFC 5321 `dcontent = %d33-90 / %d94-126`.
pub(crate) fn is_dcontent(c: u8) -> bool {
    class(c) & DCONTENT != 0
}

/// RFC 5321 `esmtp-value` octets (ASCII part): `%d33-60 / %d62-126`.
pub(crate) fn is_esmtp_value_char(c: u8) -> bool {
    class(c) & ESMTP_VALUE != 0
}

/// RFC 3461 `xchar`: `%d33-42 / %d44-60 / %d62-126` (printable ASCII except
/// `+` and `=`).
pub(crate) fn is_xchar(c: u8) -> bool {
    class(c) & XCHAR != 0
}

/// RFC 4648 base64 alphabet (without the `=` pad).
pub(crate) fn is_base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

// ---------------------------------------------------------------------------
// Small parsers.
// ---------------------------------------------------------------------------

/// RFC 6531 `UTF8-non-ascii`: one well-formed multi-octet UTF-8 character.
pub(crate) fn utf8_non_ascii(input: &[u8]) -> PResult<'_, &[u8]> {
    let len = match input.first() {
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return fail(),
    };
    match (input.get(..len), input.get(len..)) {
        (Some(ch), Some(rest)) if std::str::from_utf8(ch).is_ok() => Ok((rest, ch)),
        _ => fail(),
    }
}

/// `Atom = 1*atext` (RFC 5321 §4.1.2, RFC 6531 `atext =/ UTF8-non-ascii`).
pub(crate) fn atom(input: &[u8]) -> PResult<'_, &[u8]> {
    recognize(many1_count(alt((take_while1(is_atext), utf8_non_ascii))))(input)
}

/// `Dot-string = Atom *("." Atom)`.
pub(crate) fn dot_string(input: &[u8]) -> PResult<'_, &[u8]> {
    match dotted_ascii(input, ATEXT, |_| true) {
        Fast::Done(len) => split_ok(input, len),
        Fast::Fail => fail(),
        Fast::NonAscii => dot_string_general(input),
    }
}

/// [`dot_string`] by the book, for input with UTF-8.
fn dot_string_general(input: &[u8]) -> PResult<'_, &[u8]> {
    recognize(pair(atom, many0_count(pair(char('.'), atom))))(input)
}

/// What a single-pass ASCII scan found.
enum Fast {
    /// The rule matched this many octets.
    Done(usize),
    /// The rule does not match.
    Fail,
    /// A non-ASCII octet was reached: use the general (UTF-8) parser.
    NonAscii,
}

/// `input` split after `len` octets, as a nom success.
fn split_ok(input: &[u8], len: usize) -> PResult<'_, &[u8]> {
    match input.split_at_checked(len) {
        Some((head, rest)) => Ok((rest, head)),
        None => fail(),
    }
}

/// The fast path of `label *("." label)` where a label is a run of octets of
/// class `flag` accepted by `label_ok`: one pass, one table lookup per octet.
/// Same result as the nom rule: a `.` not followed by a good label ends the
/// match before the `.`, and a bad first label fails. Any octet >= 0x80
/// inside the run hands over to the general parser.
#[inline(always)]
fn dotted_ascii(input: &[u8], flag: u8, label_ok: impl Fn(&[u8]) -> bool) -> Fast {
    let mut good = None; // end of the last good label
    let mut rest = input; // from the start of the current label
    let mut start = 0;
    loop {
        // The label: a tight scan (no per-octet bounds check or branch on
        // what stopped it), then one look at the octet after it.
        let n = rest
            .iter()
            .position(|&c| class(c) & flag == 0)
            .unwrap_or(rest.len());
        let (label, after) = rest.split_at_checked(n).unwrap_or((rest, &[]));
        let end = start + n;
        match after.first() {
            Some(&c) if c >= 0x80 => return Fast::NonAscii,
            next => {
                if label.is_empty() || !label_ok(label) {
                    return match good {
                        Some(end) => Fast::Done(end),
                        None => Fast::Fail,
                    };
                }
                good = Some(end);
                if next == Some(&b'.') {
                    rest = after.get(1..).unwrap_or_default();
                    start = end + 1;
                } else {
                    return Fast::Done(end);
                }
            }
        }
    }
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`, returned with its quotes.
/// `QcontentSMTP = qtextSMTP / quoted-pairSMTP`, `quoted-pairSMTP = %d92
/// %d32-126`, and RFC 6531 `qtextSMTP =/ UTF8-non-ascii`.
pub(crate) fn quoted_string(input: &[u8]) -> PResult<'_, &[u8]> {
    // One pass: the three alternatives start with different octets (qtext
    // excludes `"` and `\\`, a UTF-8 lead octet is >= 0xC2), so taking the
    // one the octet selects is the nom rule's greedy choice.
    if input.first() != Some(&b'"') {
        return fail();
    }
    let mut i = 1;
    loop {
        match input.get(i).copied() {
            Some(c) if class(c) & QTEXT != 0 => i += 1,
            Some(b'\\') => match input.get(i + 1) {
                Some(&n) if (32..=126).contains(&n) => i += 2,
                _ => break,
            },
            Some(c) if c >= 0x80 => match utf8_non_ascii(input.get(i..).unwrap_or_default()) {
                Ok((_, ch)) => i += ch.len(),
                Err(_) => break,
            },
            _ => break,
        }
    }
    if input.get(i) == Some(&b'"') {
        split_ok(input, i + 1)
    } else {
        fail()
    }
}

/// [`quoted_string`] by the book (nom), kept to test the fast path against.
#[cfg(any(test, fuzzing))]
fn quoted_string_general(input: &[u8]) -> PResult<'_, &[u8]> {
    let quoted_pair = preceded(
        char('\\'),
        take_while_m_n(1, 1, |c: u8| (32..=126).contains(&c)),
    );
    recognize(delimited(
        char('"'),
        many0_count(alt((take_while1(is_qtext), quoted_pair, utf8_non_ascii))),
        char('"'),
    ))(input)
}

/// `Local-part = Dot-string / Quoted-string`.
pub(crate) fn local_part(input: &[u8]) -> PResult<'_, &[u8]> {
    if input.first() == Some(&b'"') {
        quoted_string(input)
    } else {
        dot_string(input)
    }
}

/// `sub-domain = Let-dig [Ldh-str]`, or an RFC 6531 U-label (any mix of
/// letters, digits, hyphens and UTF-8 characters that neither starts nor ends
/// with a hyphen).
pub(crate) fn sub_domain(input: &[u8]) -> PResult<'_, &[u8]> {
    verify(
        recognize(many1_count(alt((take_while1(is_ldh), utf8_non_ascii)))),
        |s: &[u8]| s.first() != Some(&b'-') && s.last() != Some(&b'-'),
    )(input)
}

/// `Domain = sub-domain *("." sub-domain)`.
pub(crate) fn domain(input: &[u8]) -> PResult<'_, &[u8]> {
    let hyphen_free_ends = |l: &[u8]| l.first() != Some(&b'-') && l.last() != Some(&b'-');
    match dotted_ascii(input, LDH, hyphen_free_ends) {
        Fast::Done(len) => split_ok(input, len),
        Fast::Fail => fail(),
        Fast::NonAscii => domain_general(input),
    }
}

/// [`domain`] by the book, for input with UTF-8 (U-labels).
fn domain_general(input: &[u8]) -> PResult<'_, &[u8]> {
    recognize(pair(sub_domain, many0_count(pair(char('.'), sub_domain))))(input)
}

/// `Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig`.
pub(crate) fn ldh_str(input: &[u8]) -> PResult<'_, &[u8]> {
    verify(take_while1(is_ldh), |s: &[u8]| {
        s.last().copied().is_some_and(is_let_dig)
    })(input)
}

/// `Snum = 1*3DIGIT` with a value of at most 255.
#[cfg(any(test, fuzzing))]
pub(crate) fn snum(input: &[u8]) -> PResult<'_, u8> {
    let (rest, digits) = take_while_m_n(1, 3, |c: u8| c.is_ascii_digit())(input)?;
    match u8::try_from(digits_value(digits).unwrap_or(u64::MAX)) {
        Ok(v) => Ok((rest, v)),
        Err(_) => fail(),
    }
}

/// `IPv4-address-literal = Snum 3("." Snum)`.
pub(crate) fn ipv4_literal(input: &[u8]) -> PResult<'_, std::net::Ipv4Addr> {
    // Snum by hand: up to three digits (greedy, like `take_while_m_n(1, 3)`),
    // at most 255, then "." between the four.
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, slot) in octets.iter_mut().enumerate() {
        if n > 0 {
            if input.get(i) != Some(&b'.') {
                return fail();
            }
            i += 1;
        }
        let mut value = 0u32;
        let start = i;
        while i - start < 3 {
            match input.get(i) {
                Some(&c) if c.is_ascii_digit() => {
                    value = value * 10 + u32::from(c - b'0');
                    i += 1;
                }
                _ => break,
            }
        }
        if i == start {
            return fail();
        }
        *slot = u8::try_from(value).or_else(|_| fail())?;
    }
    let [a, b, c, d] = octets;
    match input.get(i..) {
        Some(rest) => Ok((rest, std::net::Ipv4Addr::new(a, b, c, d))),
        None => fail(),
    }
}

/// [`ipv4_literal`] by the book (nom), kept to test the fast path against.
#[cfg(any(test, fuzzing))]
fn ipv4_literal_general(input: &[u8]) -> PResult<'_, std::net::Ipv4Addr> {
    let (rest, (a, _, b, _, c, _, d)) =
        tuple((snum, char('.'), snum, char('.'), snum, char('.'), snum))(input)?;
    Ok((rest, std::net::Ipv4Addr::new(a, b, c, d)))
}

/// `IPv6-address-literal = "IPv6:" IPv6-addr` (the tag is case-insensitive,
/// like every ABNF string literal).
pub(crate) fn ipv6_literal(input: &[u8]) -> PResult<'_, std::net::Ipv6Addr> {
    let (rest, text) = preceded(
        nom::bytes::complete::tag_no_case("IPv6:"),
        take_while1(|c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
    )(input)?;
    match std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()) {
        Some(addr) => Ok((rest, addr)),
        None => fail(),
    }
}

/// `General-address-literal = Standardized-tag ":" 1*dcontent`, returning
/// `(tag, content)`. The tag `IPv6` is refused here: such a literal is either
/// a valid [`ipv6_literal`] or invalid.
pub(crate) fn general_literal(input: &[u8]) -> PResult<'_, (&[u8], &[u8])> {
    let (rest, (tag_, _, content)) = tuple((
        verify(ldh_str, |t: &[u8]| !t.eq_ignore_ascii_case(b"IPv6")),
        char(':'),
        take_while1(is_dcontent),
    ))(input)?;
    Ok((rest, (tag_, content)))
}

/// `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")` (also RFC 5321
/// `ehlo-keyword`).
pub(crate) fn esmtp_keyword(input: &[u8]) -> PResult<'_, &[u8]> {
    verify(take_while1(is_ldh), |s: &[u8]| {
        s.first().copied().is_some_and(is_let_dig)
    })(input)
}

/// `esmtp-value = 1*(%d33-60 / %d62-126)`, RFC 6531 `esmtp-value =/
/// UTF8-non-ascii`.
pub(crate) fn esmtp_value(input: &[u8]) -> PResult<'_, &[u8]> {
    let ascii = input
        .iter()
        .position(|&c| class(c) & ESMTP_VALUE == 0)
        .unwrap_or(input.len());
    match input.get(ascii) {
        Some(&c) if c >= 0x80 => esmtp_value_general(input),
        _ if ascii == 0 => fail(),
        _ => split_ok(input, ascii),
    }
}

/// [`esmtp_value`] by the book, for input with UTF-8.
fn esmtp_value_general(input: &[u8]) -> PResult<'_, &[u8]> {
    recognize(many1_count(alt((
        take_while1(is_esmtp_value_char),
        utf8_non_ascii,
    ))))(input)
}

/// `xtext = *( xchar / hexchar )`, `hexchar = "+" 2(%x30-39 / %x41-46)`
/// (RFC 3461 §4; upper-case hex digits only). At least one element here.
pub(crate) fn xtext1(input: &[u8]) -> PResult<'_, &[u8]> {
    let hexchar = preceded(
        tag("+"),
        take_while_m_n(2, 2, |c: u8| {
            c.is_ascii_digit() || (b'A'..=b'F').contains(&c)
        }),
    );
    recognize(many1_count(alt((take_while1(is_xchar), hexchar))))(input)
}

/// True if `s` is an RFC 4954 initial response / SASL response:
/// `base64 = base64-terminal / ( 1*(4base64-char) [base64-terminal] )`,
/// `base64-terminal = (2base64-char "==") / (3base64-char "=")`.
pub(crate) fn is_base64(s: &[u8]) -> bool {
    if s.is_empty() || s.len() % 4 != 0 {
        return false;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    pad <= 2 && s.iter().take(s.len() - pad).all(|&c| is_base64_char(c))
}

/// The value of a string of ASCII digits, `None` if empty, not all digits,
/// or more than `u64::MAX`.
pub(crate) fn digits_value(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// True if `text` may appear in a reply line: any octets except CR, LF, NUL.
pub(crate) fn is_reply_text(text: &[u8]) -> bool {
    !text.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0))
}

/// Panics unless every fast scan agrees with the rule it replaced (kept,
/// test-only, as the reference): the unit tests and the fuzz targets
/// (`cfg(fuzzing)`, through `crate::fuzz_oracles`) both run it.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_fast_paths(input: &[u8]) {
    assert_eq!(domain(input), domain_general(input), "domain {input:?}");
    assert_eq!(
        dot_string(input),
        dot_string_general(input),
        "dot-string {input:?}"
    );
    assert_eq!(
        esmtp_value(input),
        esmtp_value_general(input),
        "esmtp-value {input:?}"
    );
    assert_eq!(
        local_part(input),
        alt((quoted_string_general, dot_string_general))(input),
        "local-part {input:?}"
    );
    assert_eq!(
        quoted_string(input),
        quoted_string_general(input),
        "quoted-string {input:?}"
    );
    assert_eq!(
        ipv4_literal(input),
        ipv4_literal_general(input),
        "ipv4 {input:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_for_errors() {
        assert_eq!(SyntaxError::UnknownCommand.reply_code(), (500, "5.5.1"));
        let e = SyntaxError::InvalidArguments {
            command: "MAIL",
            reason: "MAIL requires FROM:<reverse-path>",
        };
        assert_eq!(e.reply_code(), (501, "5.5.4"));
        assert_eq!(
            e.to_string(),
            "invalid arguments to MAIL: MAIL requires FROM:<reverse-path>"
        );
        let r = SyntaxError::InvalidReply { reason: "x" };
        assert_eq!(r.to_string(), "invalid reply: x");
        let _: &dyn std::error::Error = &r;
    }

    #[test]
    fn utf8() {
        assert!(utf8_non_ascii("é".as_bytes()).is_ok());
        assert!(utf8_non_ascii("😀x".as_bytes()).is_ok());
        assert!(utf8_non_ascii(b"\xC3").is_err());
        assert!(utf8_non_ascii(b"\xC0\x80").is_err());
        assert!(utf8_non_ascii(b"\xED\xA0\x80").is_err()); // surrogate
        assert!(utf8_non_ascii(b"a").is_err());
        assert!(utf8_non_ascii(b"").is_err());
    }

    #[test]
    fn lexical_rules() {
        assert_eq!(whole(b"a.b-c.d", domain), Some(&b"a.b-c.d"[..]));
        assert_eq!(whole(b"a-.b", domain), None);
        assert_eq!(whole(b"-a", domain), None);
        assert_eq!(whole(b"a..b", domain), None);
        assert_eq!(whole(b"a.", domain), None);
        assert!(whole("bücher.de".as_bytes(), domain).is_some());
        assert!(whole(b"John.Doe", dot_string).is_some());
        assert!(whole(b".John", dot_string).is_none());
        assert!(whole(b"John..Doe", dot_string).is_none());
        assert!(whole(br#""a\"b c""#, quoted_string).is_some());
        assert!(whole(br#""a"b""#, quoted_string).is_none());
        assert!(whole(br#""a\""#, quoted_string).is_none());
        assert!(whole(b"\"a\\\x01\"", quoted_string).is_none());
        assert_eq!(whole(b"255", snum), Some(255));
        assert_eq!(whole(b"256", snum), None);
        assert_eq!(whole(b"007", snum), Some(7));
        assert!(whole(b"1.2.3.4", ipv4_literal).is_some());
        assert!(whole(b"1.2.3", ipv4_literal).is_none());
        assert!(whole(b"IPv6:::1", ipv6_literal).is_some());
        assert!(whole(b"ipv6:2001:db8::1", ipv6_literal).is_some());
        assert!(whole(b"IPv6:2001:db8:::1", ipv6_literal).is_none());
        assert!(whole(b"x-tag:stuff", general_literal).is_some());
        assert!(whole(b"IPV6:stuff", general_literal).is_none());
        assert!(whole(b"tag-:stuff", general_literal).is_none());
        assert!(whole(b"SIZE", esmtp_keyword).is_some());
        assert!(whole(b"-SIZE", esmtp_keyword).is_none());
        assert!(whole(b"a=b", esmtp_value).is_none());
        assert!(whole(b"a+2Bb", xtext1).is_some());
        assert!(whole(b"a+2b", xtext1).is_none());
        assert!(whole(b"a=b", xtext1).is_none());
    }

    /// The single-pass fast paths give exactly what the nom rules by the
    /// book give, on pseudo-random strings built from the octets that matter
    /// (label characters, dots, hyphens, delimiters, UTF-8 and broken UTF-8).
    #[test]
    fn fast_paths_agree_with_the_general_rules() {
        let pieces: [&[u8]; 22] = [
            b"\"",
            b"\\",
            b"1",
            b"25",
            b"256",
            b"\x01",
            b"a",
            b"Z",
            b"9",
            b"-",
            b".",
            b"..",
            b"@",
            b">",
            b" ",
            b"=",
            b"+",
            b"!",
            "\u{e9}".as_bytes(),
            "\u{1F600}".as_bytes(),
            b"\xC3",
            b"\xFF",
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 12) {
                let piece = pieces
                    .get((next() % 22) as usize)
                    .copied()
                    .unwrap_or_default();
                input.extend_from_slice(piece);
            }
            check_fast_paths(input.as_slice());
        }
    }

    #[test]
    fn base64_and_digits() {
        assert!(is_base64(b"dGVzdA=="));
        assert!(is_base64(b"AGZvbwBiYXI="));
        assert!(is_base64(b"abcd"));
        assert!(!is_base64(b"abc"));
        assert!(!is_base64(b"ab=c"));
        assert!(!is_base64(b"a==="));
        assert!(!is_base64(b"===="));
        assert!(!is_base64(b"ab!d"));
        assert!(!is_base64(b""));
        assert_eq!(digits_value(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(digits_value(b"18446744073709551616"), None);
        assert_eq!(digits_value(b""), None);
        assert_eq!(digits_value(b"1a"), None);
        assert!(is_reply_text("héllo".as_bytes()));
        assert!(!is_reply_text(b"a\rb"));
        assert!(!is_reply_text(b"a\0b"));
    }
}
