//! Shared lexical rules of the IMAP formal syntax (RFC 9051 §9, RFC 3501 §9),
//! with RFC 7888 `LITERAL+`/`LITERAL-` and RFC 3516 `literal8`, as small nom 7
//! parsers over `&[u8]`; the error type every IMAP parser returns; and
//! [`trailing_literal`], which a session's framing uses to find literals.
//!
//! The nom parsers use `()` as their error type: they never allocate, and the
//! callers turn a failure into a [`SyntaxError`] that says which rule failed.
//!
//! A message handed to the parsers is one complete command or response
//! without its final CRLF, literals included: `a1 LOGIN {5}\r\nalice pw`. The
//! `{n}` count alone says where a literal's data ends; the data is never
//! searched or inspected.

use std::borrow::Cow;
use std::fmt;

use nom::bytes::complete::tag_no_case;
use nom::IResult;

/// Why a command or a response could not be parsed.
///
/// A server answers a command that failed with `tag BAD` (RFC 9051 §7.1.3),
/// or `* BAD` when even the tag could not be read ([`SyntaxError::Tag`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// The message does not start with a valid tag followed by SP
    /// (RFC 9051 §9 `tag = 1*<any ASTRING-CHAR except "+">`). A server answers
    /// `* BAD`, since it cannot answer with a tag.
    Tag,
    /// The command name is not an atom starting with a letter (RFC 9051 §9
    /// `command`). Any well-formed name parses, as
    /// [`CommandBody::Other`](crate::imap::command::CommandBody::Other).
    UnknownCommand,
    /// A command whose arguments do not follow its grammar.
    InvalidArguments {
        /// The command name, upper case, e.g. `"LOGIN"`; `"command"` for a
        /// command this crate does not know by name.
        command: &'static str,
        /// The rule that failed, e.g. `"LOGIN takes a user name and a password"`.
        reason: &'static str,
    },
    /// A response that does not follow RFC 9051 §7 / §9 `response`.
    InvalidResponse {
        /// The rule that failed.
        reason: &'static str,
    },
    /// A literal (RFC 9051 §4.3 `literal`, RFC 7888, RFC 3516 `literal8`)
    /// whose header is malformed, is not followed by CRLF, or announces more
    /// octets than the message holds.
    Literal {
        /// The rule that failed.
        reason: &'static str,
    },
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::Tag => f.write_str("missing or invalid tag"),
            SyntaxError::UnknownCommand => f.write_str("command not recognized"),
            SyntaxError::InvalidArguments { command, reason } => {
                write!(f, "invalid arguments to {command}: {reason}")
            }
            SyntaxError::InvalidResponse { reason } => write!(f, "invalid response: {reason}"),
            SyntaxError::Literal { reason } => write!(f, "invalid literal: {reason}"),
        }
    }
}

impl std::error::Error for SyntaxError {}

/// How a literal is announced (RFC 9051 §4.3, RFC 7888).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LiteralMode {
    /// `{n}`: synchronizing. A client waits for a `+` continuation request
    /// before sending the data (RFC 9051 §7.5).
    Sync,
    /// `{n+}`: non-synchronizing (RFC 7888 `LITERAL+`, and RFC 9051
    /// `literal = "{" number64 ["+"] "}" CRLF *CHAR8`). The data follows at
    /// once.
    ///
    /// RFC 7888's `LITERAL-` uses this same `{n+}` form, limited to 4096
    /// octets (the session enforces that). There is no `{n-}` form: it is
    /// refused as a malformed header, because an implementation that read it
    /// as a literal would frame the stream differently from every other
    /// IMAP parser.
    Plus,
}

/// A literal header: `{n}`, `{n+}`, or with a leading `~` an RFC 3516
/// `literal8` (`literal8 = "~{" number64 "}" CRLF *OCTET`, with the RFC 7888
/// `+` form).
///
/// ```
/// use starttls::imap::{trailing_literal, LiteralHeader, LiteralMode};
/// let h = trailing_literal(b"A003 APPEND saved-messages (\\Seen) ~{310+}")
///     .unwrap()
///     .unwrap();
/// assert_eq!(h, LiteralHeader { len: 310, mode: LiteralMode::Plus, binary: true });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LiteralHeader {
    /// The number of octets of data after the header's CRLF
    /// (`number64`, RFC 9051 §9).
    pub len: u64,
    /// Synchronizing or not.
    pub mode: LiteralMode,
    /// True for a `~{n}` RFC 3516 `literal8` (may contain NUL).
    pub binary: bool,
}

impl LiteralHeader {
    /// True for `{n}`/`~{n}`: the sender must wait for a `+` continuation
    /// request before sending the data.
    pub fn is_synchronizing(&self) -> bool {
        self.mode == LiteralMode::Sync
    }

    /// Writes the header, `~{n+}` style, without the CRLF that follows it.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.binary {
            out.push(b'~');
        }
        out.push(b'{');
        write_decimal(self.len, out);
        match self.mode {
            LiteralMode::Sync => {}
            LiteralMode::Plus => out.push(b'+'),
        }
        out.push(b'}');
    }
}

/// Says whether one physical line (given WITHOUT its CRLF) ends with a
/// literal header, so that the framing must read `len` octets of literal data
/// and then the rest of the message (RFC 9051 §4.3: "the literal is followed
/// by CRLF and then the octets").
///
/// Recognizes `{123}`, `{123+}`, `{0-}` and `~{5}`. A line that ends with a
/// brace but plainly is not a literal (`* OK see {note}`) is `Ok(None)`. A
/// trailing header that starts like one but is malformed, such as `{12a}`, or
/// whose number does not fit in 64 bits, is a [`SyntaxError::Literal`]; so is
/// any line ending with more than 20 digits and a `}`. `{4294967295}` and
/// larger lengths are accepted here: size limits are the session's business.
///
/// Scans from the end and looks at no more than the last 25 octets, however
/// long the line.
pub fn trailing_literal(line: &[u8]) -> Result<Option<LiteralHeader>, SyntaxError> {
    let Some(body) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let (digits_end, mode) = match body.last() {
        Some(b'+') => (body.len() - 1, LiteralMode::Plus),
        _ => (body.len(), LiteralMode::Sync),
    };
    let before_mode = body.get(..digits_end).unwrap_or_default();
    // At most 20 digits fit in 64 bits; a 21st is enough to refuse.
    let ndigits = before_mode
        .iter()
        .rev()
        .take(21)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if ndigits > 20 {
        return Err(SyntaxError::Literal {
            reason: "literal length does not fit in 64 bits",
        });
    }
    let (head, digits) = before_mode
        .split_at_checked(before_mode.len() - ndigits)
        .unwrap_or_default();
    if let (false, Some(head)) = (digits.is_empty(), head.strip_suffix(b"{")) {
        let len = digits_value(digits).ok_or(SyntaxError::Literal {
            reason: "literal length does not fit in 64 bits",
        })?;
        return Ok(Some(LiteralHeader {
            len,
            mode,
            binary: head.last() == Some(&b'~'),
        }));
    }
    // Not a well-formed header. It is a malformed one if a `{` followed by a
    // digit, with no space up to the closing brace, sits just before the end.
    let window = body
        .get(body.len().saturating_sub(24)..)
        .unwrap_or_default();
    if let Some(open) = memchr::memrchr(b'{', window) {
        let inner = window.get(open + 1..).unwrap_or_default();
        if inner.first().is_some_and(u8::is_ascii_digit) && !inner.contains(&b' ') {
            return Err(SyntaxError::Literal {
                reason: "malformed literal header",
            });
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// nom plumbing.
// ---------------------------------------------------------------------------

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
// Character classes (RFC 9051 §9).
// ---------------------------------------------------------------------------

// One table lookup per octet: bit flags for every class below, built at
// compile time from the RFC definitions (`const fn` over 0..=255). The
// parsers run over whole spans of one class (`span`) instead of matching
// octet by octet; the tests check every entry against the rules as the RFC
// writes them.

/// `ATOM-CHAR`.
const ATOM: u8 = 1;
/// `ASTRING-CHAR`.
const ASTRING: u8 = 2;
/// The octets of a `tag`.
const TAG: u8 = 4;
/// The octets of a bare generic token outside `[...]`: printable ASCII
/// except SP, parentheses, `{`, DQUOTE and `[`.
const TOKEN: u8 = 8;
/// `DIGIT`.
const DIGIT: u8 = 16;
/// The octets a `[...]` section holds that need no attention: printable
/// ASCII and SP, except brackets, parentheses, DQUOTE, `{` and `~` (which
/// may open a string or a literal).
const SECTION: u8 = 32;
/// The octets of a `quoted` that stand for themselves: anything but CR, LF,
/// NUL and the quoted-specials DQUOTE and `\` (8-bit octets are checked
/// for UTF-8 afterwards, on the whole string).
const QUOTED: u8 = 64;
/// The RFC 4648 base64 alphabet, without the `=` pad.
const BASE64: u8 = 128;

/// The class bits of one octet, from the RFC 9051 §9 definitions.
const fn classes(c: u8) -> u8 {
    let mut f = 0;
    // `ATOM-CHAR = <any CHAR except atom-specials>`, where `atom-specials =
    // "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
    // resp-specials`, `list-wildcards = "%" / "*"`, `quoted-specials =
    // DQUOTE / "\"`, `resp-specials = "]"`.
    let atom = matches!(c, 0x21..=0x7E)
        && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']');
    if atom {
        f |= ATOM;
    }
    // `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
    let astring = atom || c == b']';
    if astring {
        f |= ASTRING;
    }
    // `tag = 1*<any ASTRING-CHAR except "+">`.
    if astring && c != b'+' {
        f |= TAG;
    }
    if matches!(c, 0x21..=0x7E) && !matches!(c, b'(' | b')' | b'{' | b'"' | b'[') {
        f |= TOKEN;
    }
    if c.is_ascii_digit() {
        f |= DIGIT;
    }
    if matches!(c, 0x20..=0x7E) && !matches!(c, b'[' | b']' | b'(' | b')' | b'"' | b'{' | b'~') {
        f |= SECTION;
    }
    if !matches!(c, b'\r' | b'\n' | 0 | b'"' | b'\\') {
        f |= QUOTED;
    }
    if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' {
        f |= BASE64;
    }
    f
}

/// [`classes`] of every octet.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = classes(i as u8);
        i += 1;
    }
    t
};

/// The class bits of `c`.
#[inline(always)]
fn class(c: u8) -> u8 {
    // In bounds for every u8; `get` keeps the rule "no indexing" literal.
    CLASS.get(usize::from(c)).copied().unwrap_or(0)
}

/// The length of the longest prefix of `input` whose octets all have the
/// class bit `bit` (one of the constants above).
#[inline(always)]
fn span(input: &[u8], bit: u8) -> usize {
    input
        .iter()
        .position(|&c| class(c) & bit == 0)
        .unwrap_or(input.len())
}

/// `1*` octets of the class `bit`, as a nom parser.
#[inline(always)]
fn take_class1(input: &[u8], bit: u8) -> PResult<'_, &[u8]> {
    match span(input, bit) {
        0 => fail(),
        n => {
            let (taken, rest) = input.split_at_checked(n).unwrap_or_default();
            Ok((rest, taken))
        }
    }
}

/// `ATOM-CHAR = <any CHAR except atom-specials>`, where
/// `atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
/// quoted-specials / resp-specials`. (The class table's `ATOM` bit, checked
/// against the rule in the tests.)
#[cfg(test)]
pub(crate) fn is_atom_char(c: u8) -> bool {
    class(c) & ATOM != 0
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
pub(crate) fn is_astring_char(c: u8) -> bool {
    class(c) & ASTRING != 0
}

/// True if every octet of `s` is an `ATOM-CHAR` (true for an empty `s`).
pub(crate) fn all_atom_chars(s: &[u8]) -> bool {
    span(s, ATOM) == s.len()
}

/// True if every octet of `s` is an `ASTRING-CHAR` (true for an empty `s`).
pub(crate) fn all_astring_chars(s: &[u8]) -> bool {
    span(s, ASTRING) == s.len()
}

/// `name` as one little-endian word, each octet with bit 5 cleared (upper
/// case for letters), to compare with [`atom_word`]: names of at most 16
/// octets, made of letters, digits and `-`.
pub(crate) const fn word(name: &str) -> u128 {
    let b = name.as_bytes();
    let mut w = 0u128;
    let mut i = 0;
    while i < b.len() && i < 16 {
        w |= ((b[i] & 0xDF) as u128) << (8 * i);
        i += 1;
    }
    w
}

/// An atom (a command, response or code name) folded into one word, to
/// compare it with the [`word`]s of known names in one step; `None` when
/// longer than 16 octets.
///
/// Clearing bit 5 of every octet upper-cases letters. Two octets fold to
/// the same value only if they differ in bit 5 alone: a letter in either
/// case; an `ATOM-CHAR` and a control (`-` and CR, `4` and DC4), which no
/// atom holds; or a pair such as `@` and `` ` ``, which no known name holds.
/// No `ATOM-CHAR` folds to 0 (only NUL and SP would). So for an atom, equal
/// words mean equal lengths, and the atom's word equals the [`word`] of a
/// name of letters, digits and `-` exactly when `eq_ignore_ascii_case` says
/// they are equal.
///
/// Built from at most two overlapping fixed-size loads (no `memcpy` call
/// for a variable length): the octets the loads share are the same, so
/// OR-ing them is exact.
#[inline]
pub(crate) fn atom_word(atom: &[u8]) -> Option<u128> {
    const FOLD: u128 = 0xDFDF_DFDF_DFDF_DFDF_DFDF_DFDF_DFDF_DFDF;
    let n = atom.len();
    let w: u128 = if n >= 8 {
        let lo = u64::from_le_bytes(atom.first_chunk::<8>().copied()?);
        let hi = u64::from_le_bytes(atom.get(n.checked_sub(8)?..)?.first_chunk::<8>().copied()?);
        if n > 16 {
            return None;
        }
        u128::from(lo) | (u128::from(hi) << (8 * (n - 8)))
    } else if n >= 4 {
        let lo = u32::from_le_bytes(atom.first_chunk::<4>().copied()?);
        let hi = u32::from_le_bytes(atom.get(n - 4..)?.first_chunk::<4>().copied()?);
        u128::from(lo) | (u128::from(hi) << (8 * (n - 4)))
    } else {
        atom.iter()
            .rev()
            .fold(0u128, |w, &c| (w << 8) | u128::from(c))
    };
    Some(w & FOLD)
}

/// True if `s` is RFC 9051 `base64 = *(4base64-char) [base64-terminal]`,
/// non-empty.
pub(crate) fn is_base64(s: &[u8]) -> bool {
    if s.is_empty() || s.len() % 4 != 0 {
        return false;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    pad <= 2 && span(s, BASE64) == s.len() - pad
}

/// True if `text` may appear as response `text` (RFC 9051 `text =
/// 1*(TEXT-CHAR / UTF8-2 / UTF8-3 / UTF8-4)`): any octets except CR, LF and
/// NUL (8-bit octets are not checked for UTF-8, to accept old servers).
///
/// Eight octets at a time: response texts are short, where `memchr3` costs
/// more in setting up than in searching.
pub(crate) fn is_text(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Nonzero exactly when some octet of `v` is 0 (a borrow can only make an
    // octet above a zero one look zero too, which does not change "any").
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let chunks = text.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        let Ok(octets) = <[u8; 8]>::try_from(chunk) else {
            return false;
        };
        let v = u64::from_le_bytes(octets);
        if has_zero(v)
            | has_zero(v ^ (ONES * u64::from(b'\r')))
            | has_zero(v ^ (ONES * u64::from(b'\n')))
            != 0
        {
            return false;
        }
    }
    !tail.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0))
}

/// The value of a string of ASCII digits; `None` if empty, not all digits, or
/// more than `u64::MAX`.
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

/// Appends the decimal form of `n`, without allocating.
pub(crate) fn write_decimal(n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

// ---------------------------------------------------------------------------
// Small parsers (RFC 9051 §9).
// ---------------------------------------------------------------------------

/// `tag = 1*<any ASTRING-CHAR except "+">`.
pub(crate) fn tag(input: &[u8]) -> PResult<'_, &[u8]> {
    take_class1(input, TAG)
}

/// `atom = 1*ATOM-CHAR`.
pub(crate) fn atom(input: &[u8]) -> PResult<'_, &[u8]> {
    take_class1(input, ATOM)
}

/// `number = 1*DIGIT`, an unsigned 32-bit integer.
pub(crate) fn number(input: &[u8]) -> PResult<'_, u32> {
    let (rest, digits) = take_class1(input, DIGIT)?;
    // Nine digits or fewer always fit in 32 bits: no overflow checks.
    if digits.len() <= 9 {
        let n = digits
            .iter()
            .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
        return Ok((rest, n));
    }
    match digits_value(digits).and_then(|n| u32::try_from(n).ok()) {
        Some(n) => Ok((rest, n)),
        None => fail(),
    }
}

/// `nz-number = digit-nz *DIGIT`, non-zero, 32 bits.
pub(crate) fn nz_number(input: &[u8]) -> PResult<'_, u32> {
    match number(input)? {
        (rest, n) if n != 0 && input.first() != Some(&b'0') => Ok((rest, n)),
        _ => fail(),
    }
}

/// `nil = "NIL"` (case-insensitive), not followed by another atom octet.
pub(crate) fn nil(input: &[u8]) -> PResult<'_, ()> {
    let (rest, _) = tag_no_case("NIL")(input)?;
    match rest.first() {
        Some(&c) if is_astring_char(c) => fail(),
        _ => Ok((rest, ())),
    }
}

/// `quoted = DQUOTE *QUOTED-CHAR DQUOTE`, returning the text between the
/// quotes, escapes kept. `QUOTED-CHAR = <any TEXT-CHAR except quoted-specials>
/// / "\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4`: CR, LF and NUL are
/// refused, and so is 8-bit text that is not well-formed UTF-8.
pub(crate) fn quoted(input: &[u8]) -> PResult<'_, &[u8]> {
    let Some(body) = input.strip_prefix(b"\"") else {
        return fail();
    };
    let mut i = 0;
    loop {
        // Runs of ordinary octets at once; then one of the five that matter.
        i += span(body.get(i..).unwrap_or_default(), QUOTED);
        match body.get(i) {
            None | Some(b'\r' | b'\n' | 0) => return fail(),
            Some(b'"') => break,
            Some(b'\\') => match body.get(i + 1) {
                Some(b'"' | b'\\') => i += 2,
                _ => return fail(),
            },
            Some(_) => i += 1,
        }
    }
    let (inner, rest) = body.split_at_checked(i).unwrap_or_default();
    if !inner.is_ascii() && std::str::from_utf8(inner).is_err() {
        return fail();
    }
    Ok((rest.get(1..).unwrap_or_default(), inner))
}

/// The header of a literal or `literal8`: `["~"] "{" number64 ["+" / "-"]
/// "}"`, without the CRLF.
pub(crate) fn literal_header(input: &[u8]) -> PResult<'_, LiteralHeader> {
    let (input, binary) = match input.strip_prefix(b"~") {
        Some(rest) => (rest, true),
        None => (input, false),
    };
    let Some(input) = input.strip_prefix(b"{") else {
        return fail();
    };
    let (rest, digits) = take_class1(input, DIGIT)?;
    let Some(len) = digits_value(digits) else {
        return fail();
    };
    let (rest, mode) = match rest {
        [b'+', rest @ ..] => (rest, LiteralMode::Plus),
        _ => (rest, LiteralMode::Sync),
    };
    match rest.strip_prefix(b"}") {
        Some(rest) => Ok((rest, LiteralHeader { len, mode, binary })),
        None => fail(),
    }
}

/// A literal with its data: a slice of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lit<'a> {
    /// Exactly `header.len` octets.
    pub(crate) data: &'a [u8],
    /// How it was announced.
    pub(crate) header: LiteralHeader,
}

/// `literal` / `literal8`: header, CRLF, then exactly as many octets as the
/// header says, whatever they are. The reason is for [`SyntaxError::Literal`].
pub(crate) fn lex_literal(input: &[u8]) -> Result<(&[u8], Lit<'_>), &'static str> {
    let (rest, header) = literal_header(input).map_err(|_| "malformed literal header")?;
    let rest = rest
        .strip_prefix(b"\r\n")
        .ok_or("literal header not followed by CRLF")?;
    let (data, rest) = usize::try_from(header.len)
        .ok()
        .and_then(|n| rest.split_at_checked(n))
        .ok_or("message ends before the literal's announced length")?;
    // RFC 9051: `literal` is `*CHAR8` (no NUL); only `literal8` carries NUL.
    if !header.binary && memchr::memchr(0, data).is_some() {
        return Err("NUL in a literal (only literal8 may carry NUL)");
    }
    Ok((rest, Lit { data, header }))
}

/// `literal` / `literal8` as a nom parser.
pub(crate) fn literal(input: &[u8]) -> PResult<'_, Lit<'_>> {
    lex_literal(input).map_err(|_| nom::Err::Error(()))
}

/// An IMAP string in any of its forms, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Str<'a> {
    /// `1*ASTRING-CHAR` (in an `astring`) or a bare token.
    Atom(&'a [u8]),
    /// The inside of a `quoted`, escapes kept.
    Quoted(&'a [u8]),
    /// A `literal` or `literal8`.
    Literal(Lit<'a>),
}

/// `string = quoted / literal` (and `literal8`), with the reason of a
/// literal failure for [`SyntaxError::Literal`].
pub(crate) fn lex_string(input: &[u8]) -> Result<(&[u8], Str<'_>), LexError> {
    match input.first() {
        Some(b'"') => quoted(input)
            .map(|(rest, q)| (rest, Str::Quoted(q)))
            .map_err(|_| LexError::Syntax("malformed quoted string")),
        Some(b'{' | b'~') => lex_literal(input)
            .map(|(rest, l)| (rest, Str::Literal(l)))
            .map_err(LexError::Literal),
        _ => Err(LexError::Syntax("expected a quoted string or a literal")),
    }
}

/// `astring = 1*ASTRING-CHAR / string`, with the reason of a literal
/// failure for [`SyntaxError::Literal`]. A `literal8` is not an `astring`.
pub(crate) fn lex_astring(input: &[u8]) -> Result<(&[u8], Str<'_>), LexError> {
    if input.first() == Some(&b'{') {
        return lex_literal(input)
            .map(|(rest, l)| (rest, Str::Literal(l)))
            .map_err(LexError::Literal);
    }
    astring(input).map_err(|_| LexError::Syntax("expected an atom or a string"))
}

/// `astring` as a nom parser.
pub(crate) fn astring(input: &[u8]) -> PResult<'_, Str<'_>> {
    match take_class1(input, ASTRING) {
        Ok((rest, a)) => Ok((rest, Str::Atom(a))),
        Err(_) => string(input),
    }
}

/// `string = quoted / literal` (or `literal8`) as a nom parser.
pub(crate) fn string(input: &[u8]) -> PResult<'_, Str<'_>> {
    match quoted(input) {
        Ok((rest, q)) => Ok((rest, Str::Quoted(q))),
        Err(_) => literal(input).map(|(rest, l)| (rest, Str::Literal(l))),
    }
}

/// `nstring = string / nil`; `None` for NIL.
pub(crate) fn nstring(input: &[u8]) -> PResult<'_, Option<Str<'_>>> {
    match nil(input) {
        Ok((rest, ())) => Ok((rest, None)),
        Err(_) => string(input).map(|(rest, s)| (rest, Some(s))),
    }
}

/// `"(" ... ")"`: a parenthesized list of generic items, returning its
/// inside. Nested lists, strings and literals are skipped as units.
pub(crate) fn list(input: &[u8]) -> PResult<'_, &[u8]> {
    let Some(inner) = input.strip_prefix(b"(") else {
        return fail();
    };
    match scan(inner, true) {
        Ok(end) => match (inner.get(..end), inner.get(end + 1..)) {
            (Some(body), Some(rest)) => Ok((rest, body)),
            _ => fail(),
        },
        Err(_) => fail(),
    }
}

/// The octets [`skip_list`] stops at.
static LIST_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'(' as usize] = true;
    t[b')' as usize] = true;
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t
};

/// [`list`] for octets already validated by [`scan`] (the arguments of a
/// parsed message): returns what follows the list at the start of `input`
/// and its inside, counting parentheses and skipping quoted strings and
/// literals as units, with no other check. In validated arguments a DQUOTE
/// always opens a quoted string and a `{` a literal (neither is a token or
/// section octet), so the result is [`list`]'s. On octets that do not
/// balance (only hand-made arguments hold them) it returns `None`; it never
/// panics.
pub(crate) fn skip_list(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let inner = input.strip_prefix(b"(")?;
    let mut depth = 1usize;
    let mut i = 0;
    loop {
        i += inner
            .get(i..)?
            .iter()
            .position(|&c| LIST_SPECIAL.get(usize::from(c)).copied().unwrap_or(false))?;
        match inner.get(i)? {
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((inner.get(i + 1..)?, inner.get(..i)?));
                }
                i += 1;
            }
            b'"' => {
                let (after, _) = quoted(inner.get(i..)?).ok()?;
                i = inner.len() - after.len();
            }
            _ => {
                // `{`, or the `{` of a `~{` literal8 (in validated arguments
                // a `~` before `{` is never the end of a token).
                let start = match i.checked_sub(1) {
                    Some(t) if inner.get(t) == Some(&b'~') => t,
                    _ => i,
                };
                let (after, _) = lex_literal(inner.get(start..)?).ok()?;
                i = inner.len() - after.len();
            }
        }
    }
}

/// Panics unless [`skip_list`] ends a list where [`list`], the validating
/// rule, does, on every input `list` accepts (the walk trusts validated
/// text). Run by the unit tests and the fuzz targets (`cfg(fuzzing)`,
/// through `crate::fuzz_oracles`).
#[cfg(any(test, fuzzing))]
pub(crate) fn check_skip_list(input: &[u8]) {
    if let Ok((after, inner)) = list(input) {
        assert_eq!(
            skip_list(input),
            Some((after, inner)),
            "skip_list {input:?}"
        );
    }
}

/// Removes the `\` escapes of the inside of a `quoted` (borrowed unless
/// there was one).
pub(crate) fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut escaped = false;
    for &c in raw {
        if escaped || c != b'\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    Cow::Owned(out)
}

/// Adds `\` before `"` and `\` (the inverse of [`unescape`]).
pub(crate) fn escape(value: &[u8], out: &mut Vec<u8>) {
    for &c in value {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// True if `value` can be sent as a `quoted` once escaped: no CR, LF or NUL,
/// and ASCII or well-formed UTF-8.
pub(crate) fn is_quotable(value: &[u8]) -> bool {
    is_text(value) && (value.is_ascii() || std::str::from_utf8(value).is_ok())
}

// ---------------------------------------------------------------------------
// The generic argument tokenizer.
// ---------------------------------------------------------------------------

/// The deepest nesting of parenthesized lists (and of `[...]` sections)
/// accepted in a message.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why the tokenizer stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LexError {
    /// A literal failed: becomes [`SyntaxError::Literal`].
    Literal(&'static str),
    /// Anything else: becomes `InvalidArguments` or `InvalidResponse`.
    Syntax(&'static str),
}

impl LexError {
    /// The error of a command: literal failures stay literal failures.
    pub(crate) fn for_command(self, command: &'static str) -> SyntaxError {
        match self {
            LexError::Literal(reason) => SyntaxError::Literal { reason },
            LexError::Syntax(reason) => SyntaxError::InvalidArguments { command, reason },
        }
    }

    /// The error of a response.
    pub(crate) fn for_response(self) -> SyntaxError {
        match self {
            LexError::Literal(reason) => SyntaxError::Literal { reason },
            LexError::Syntax(reason) => SyntaxError::InvalidResponse { reason },
        }
    }
}

/// The octets that may appear in a bare token outside `[...]`: printable
/// ASCII except SP, parentheses, `{`, DQUOTE and `[` (which opens a section).
/// This is `ASTRING-CHAR` plus `list-wildcards` and `\` (flags, `\*`, mailbox
/// patterns, sequence sets `1:*`).
#[cfg(test)]
fn is_token_char(c: u8) -> bool {
    class(c) & TOKEN != 0
}

/// One non-list item at the start of `input`: a quoted string, a literal, or
/// a bare token (atom, number, flag, sequence set, `BODY[...]<...>`, NIL).
pub(crate) fn lex_item(input: &[u8]) -> Result<(&[u8], Str<'_>), LexError> {
    match input {
        [b'"', ..] | [b'{', ..] | [b'~', b'{', ..] => lex_string(input),
        _ => {
            // Most tokens are one run of token octets; [`token_end`] handles
            // sections and errors.
            let n = span(input, TOKEN);
            let end = match input.get(n) {
                None | Some(b' ' | b'(' | b')') if n > 0 => n,
                _ => token_end(input)?,
            };
            let (token, rest) = input.split_at_checked(end).unwrap_or_default();
            Ok((rest, Str::Atom(token)))
        }
    }
}

/// The length of the quoted string, literal or `literal8` at the start of
/// `input`.
#[inline]
fn string_len(input: &[u8]) -> Result<usize, LexError> {
    let (after, _) = lex_string(input)?;
    Ok(input.len() - after.len())
}

/// The length of the bare token at the start of `input`: it runs until SP,
/// `(`, `)` or the end; `[...]` sections inside it may hold SP, balanced
/// parentheses, strings and literals.
///
/// One pass over runs of token octets ([`TOKEN`]); the octet that ends a run
/// decides. `tests::token_end_general` is the rule octet by octet.
fn token_end(input: &[u8]) -> Result<usize, LexError> {
    let mut i = 0;
    loop {
        i += span(input.get(i..).unwrap_or_default(), TOKEN);
        match input.get(i) {
            None | Some(b' ' | b'(' | b')') => break,
            Some(b'[') => i += section_len(input.get(i..).unwrap_or_default())?,
            Some(_) => return Err(LexError::Syntax("invalid octet in an atom")),
        }
    }
    if i == 0 {
        return Err(LexError::Syntax("expected an argument"));
    }
    Ok(i)
}

/// The length of the `[...]` group at the start of `input`, brackets
/// included (RFC 9051 `section`, `section-binary`, and response codes).
#[inline(never)]
fn section_len(input: &[u8]) -> Result<usize, LexError> {
    let mut brackets = 0usize;
    let mut parens = 0usize;
    let mut i = 0;
    loop {
        // Runs of octets that need no attention at once.
        i += span(input.get(i..).unwrap_or_default(), SECTION);
        let rest = input.get(i..).unwrap_or_default();
        match rest.first() {
            None => return Err(LexError::Syntax("unclosed '['")),
            Some(b'[') => {
                brackets += 1;
                if brackets > MAX_DEPTH {
                    return Err(LexError::Syntax("sections nested too deeply"));
                }
                i += 1;
            }
            Some(b']') => {
                brackets = brackets.saturating_sub(1);
                i += 1;
                if brackets == 0 {
                    return if parens == 0 {
                        Ok(i)
                    } else {
                        Err(LexError::Syntax("unbalanced parentheses in a section"))
                    };
                }
            }
            Some(b'(') => {
                parens += 1;
                if parens > MAX_DEPTH {
                    return Err(LexError::Syntax("lists nested too deeply"));
                }
                i += 1;
            }
            Some(b')') => {
                parens = parens
                    .checked_sub(1)
                    .ok_or(LexError::Syntax("unbalanced parentheses in a section"))?;
                i += 1;
            }
            Some(b'"') | Some(b'{') => {
                let (after, _) = lex_string(rest)?;
                i += rest.len() - after.len();
            }
            Some(b'~') if rest.get(1) == Some(&b'{') => {
                let (after, _) = lex_string(rest)?;
                i += rest.len() - after.len();
            }
            Some(0x20..=0x7E) => i += 1,
            Some(_) => return Err(LexError::Syntax("invalid octet in a section")),
        }
    }
}

/// Validates a sequence of generic items separated by single spaces, with
/// nested parenthesized lists (RFC 9051 §9 lists: no space after `(` or
/// before `)`; a list may directly follow another list's `)`, as in
/// `BODYSTRUCTURE ((...)(...) "mixed")`).
///
/// With `in_list`, `input` starts just after a `(` and the result is the
/// position of the matching `)`; otherwise the whole input must be a valid
/// sequence (possibly empty) and the result is its length.
///
/// One pass, in two alternating states: expecting an item or a list (at the
/// start, after `(`, after SP), and after one (where only SP, `)`, the end,
/// and after a list `(`, may follow). The errors, and which one comes first,
/// are those of `tests::scan_general`, the rule written octet by octet.
pub(crate) fn scan(input: &[u8], in_list: bool) -> Result<usize, LexError> {
    let mut depth = usize::from(in_list);
    let mut i = 0;
    // In the expecting state: whether it was entered by SP.
    let mut after_space = false;
    loop {
        // Expecting an item or a list.
        match input.get(i) {
            None if depth > 0 => {
                return Err(LexError::Syntax("unbalanced parentheses: missing ')'"))
            }
            None if after_space => return Err(LexError::Syntax("trailing space")),
            None => return Ok(i),
            Some(b' ') => return Err(LexError::Syntax("unexpected space")),
            Some(b'(') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(LexError::Syntax("lists nested too deeply"));
                }
                i += 1;
                after_space = false;
                continue;
            }
            Some(b')') => {
                // `()`, or a `)` that has no place here.
                if depth == 0 {
                    return Err(LexError::Syntax("unbalanced parentheses: extra ')'"));
                }
                if after_space {
                    return Err(LexError::Syntax("space before ')'"));
                }
                depth -= 1;
                if depth == 0 && in_list {
                    return Ok(i);
                }
                i += 1;
            }
            Some(b'"' | b'{') => {
                i += string_len(input.get(i..).unwrap_or_default())?;
                if input.get(i) == Some(&b'(') {
                    return Err(LexError::Syntax("missing space before '('"));
                }
            }
            Some(b'~') if input.get(i + 1) == Some(&b'{') => {
                i += string_len(input.get(i..).unwrap_or_default())?;
                if input.get(i) == Some(&b'(') {
                    return Err(LexError::Syntax("missing space before '('"));
                }
            }
            Some(_) => {
                // A bare token: most are one run of token octets and SP.
                let rest = input.get(i..).unwrap_or_default();
                let n = span(rest, TOKEN);
                match rest.get(n) {
                    Some(b' ') if n > 0 => {
                        i += n + 1;
                        after_space = true;
                        continue;
                    }
                    None | Some(b')') if n > 0 => i += n,
                    Some(b'(') if n > 0 => {
                        return Err(LexError::Syntax("missing space before '('"))
                    }
                    // Sections, and octets a token may not hold.
                    _ => {
                        i += token_end(rest)?;
                        if input.get(i) == Some(&b'(') {
                            return Err(LexError::Syntax("missing space before '('"));
                        }
                    }
                }
            }
        }
        // After an item or a list.
        loop {
            match input.get(i) {
                None if depth > 0 => {
                    return Err(LexError::Syntax("unbalanced parentheses: missing ')'"))
                }
                None => return Ok(i),
                Some(b' ') => {
                    i += 1;
                    after_space = true;
                    break;
                }
                Some(b')') => {
                    if depth == 0 {
                        return Err(LexError::Syntax("unbalanced parentheses: extra ')'"));
                    }
                    depth -= 1;
                    if depth == 0 && in_list {
                        return Ok(i);
                    }
                    i += 1;
                }
                // Only after a list: `((a)(b))`.
                Some(b'(') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(LexError::Syntax("lists nested too deeply"));
                    }
                    i += 1;
                    after_space = false;
                    break;
                }
                Some(_) => return Err(LexError::Syntax("missing space between arguments")),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nom::bytes::complete::take_while1;

    // -----------------------------------------------------------------------
    // The rules as written before the table-driven fast paths: the reference
    // the fast paths are checked against.
    // -----------------------------------------------------------------------

    /// `ATOM-CHAR`, from RFC 9051 §9 directly.
    fn is_atom_char_rule(c: u8) -> bool {
        matches!(c, 0x21..=0x7E)
            && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
    }

    /// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
    fn is_astring_char_rule(c: u8) -> bool {
        is_atom_char_rule(c) || c == b']'
    }

    /// `<any ASTRING-CHAR except "+">`.
    fn is_tag_char_rule(c: u8) -> bool {
        is_astring_char_rule(c) && c != b'+'
    }

    /// Printable ASCII except SP, `(`, `)`, `{`, DQUOTE and `[`.
    fn is_token_char_rule(c: u8) -> bool {
        matches!(c, 0x21..=0x7E) && !matches!(c, b'(' | b')' | b'{' | b'"' | b'[')
    }

    /// RFC 4648 base64 alphabet (without the `=` pad).
    fn is_base64_char_rule(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
    }

    fn is_base64_general(s: &[u8]) -> bool {
        if s.is_empty() || s.len() % 4 != 0 {
            return false;
        }
        let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
        pad <= 2
            && s.iter()
                .take(s.len() - pad)
                .all(|&c| is_base64_char_rule(c))
    }

    fn is_text_general(text: &[u8]) -> bool {
        !text.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0))
    }

    fn tag_general(input: &[u8]) -> PResult<'_, &[u8]> {
        take_while1(is_tag_char_rule)(input)
    }

    fn atom_general(input: &[u8]) -> PResult<'_, &[u8]> {
        take_while1(is_atom_char_rule)(input)
    }

    fn number_general(input: &[u8]) -> PResult<'_, u32> {
        let (rest, digits) = take_while1(|c: u8| c.is_ascii_digit())(input)?;
        match digits_value(digits).and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Ok((rest, n)),
            None => fail(),
        }
    }

    fn astring_general(input: &[u8]) -> PResult<'_, Str<'_>> {
        match take_while1::<_, _, ()>(is_astring_char_rule)(input) {
            Ok((rest, a)) => Ok((rest, Str::Atom(a))),
            Err(_) => string(input),
        }
    }

    fn quoted_general(input: &[u8]) -> PResult<'_, &[u8]> {
        let Some(body) = input.strip_prefix(b"\"") else {
            return fail();
        };
        let mut i = 0;
        loop {
            match body.get(i) {
                None | Some(b'\r' | b'\n' | 0) => return fail(),
                Some(b'"') => break,
                Some(b'\\') => match body.get(i + 1) {
                    Some(b'"' | b'\\') => i += 2,
                    _ => return fail(),
                },
                Some(_) => i += 1,
            }
        }
        let (inner, rest) = body.split_at_checked(i).unwrap_or_default();
        if !inner.is_ascii() && std::str::from_utf8(inner).is_err() {
            return fail();
        }
        Ok((rest.get(1..).unwrap_or_default(), inner))
    }

    /// `token_end`, octet by octet.
    pub(crate) fn token_end_general(input: &[u8]) -> Result<usize, LexError> {
        let mut i = 0;
        while let Some(&c) = input.get(i) {
            match c {
                b'[' => i += section_len_general(input.get(i..).unwrap_or_default())?,
                b' ' | b'(' | b')' => break,
                c if is_token_char_rule(c) => i += 1,
                _ => return Err(LexError::Syntax("invalid octet in an atom")),
            }
        }
        if i == 0 {
            return Err(LexError::Syntax("expected an argument"));
        }
        Ok(i)
    }

    /// `section_len`, octet by octet.
    fn section_len_general(input: &[u8]) -> Result<usize, LexError> {
        let mut brackets = 0usize;
        let mut parens = 0usize;
        let mut i = 0;
        loop {
            let rest = input.get(i..).unwrap_or_default();
            match rest.first() {
                None => return Err(LexError::Syntax("unclosed '['")),
                Some(b'[') => {
                    brackets += 1;
                    if brackets > MAX_DEPTH {
                        return Err(LexError::Syntax("sections nested too deeply"));
                    }
                    i += 1;
                }
                Some(b']') => {
                    brackets = brackets.saturating_sub(1);
                    i += 1;
                    if brackets == 0 {
                        return if parens == 0 {
                            Ok(i)
                        } else {
                            Err(LexError::Syntax("unbalanced parentheses in a section"))
                        };
                    }
                }
                Some(b'(') => {
                    parens += 1;
                    if parens > MAX_DEPTH {
                        return Err(LexError::Syntax("lists nested too deeply"));
                    }
                    i += 1;
                }
                Some(b')') => {
                    parens = parens
                        .checked_sub(1)
                        .ok_or(LexError::Syntax("unbalanced parentheses in a section"))?;
                    i += 1;
                }
                Some(b'"') | Some(b'{') => {
                    let (after, _) = lex_string_general(rest)?;
                    i += rest.len() - after.len();
                }
                Some(b'~') if rest.get(1) == Some(&b'{') => {
                    let (after, _) = lex_string_general(rest)?;
                    i += rest.len() - after.len();
                }
                Some(0x20..=0x7E) => i += 1,
                Some(_) => return Err(LexError::Syntax("invalid octet in a section")),
            }
        }
    }

    /// `lex_string` over `quoted_general`.
    fn lex_string_general(input: &[u8]) -> Result<(&[u8], Str<'_>), LexError> {
        match input.first() {
            Some(b'"') => quoted_general(input)
                .map(|(rest, q)| (rest, Str::Quoted(q)))
                .map_err(|_| LexError::Syntax("malformed quoted string")),
            Some(b'{' | b'~') => lex_literal(input)
                .map(|(rest, l)| (rest, Str::Literal(l)))
                .map_err(LexError::Literal),
            _ => Err(LexError::Syntax("expected a quoted string or a literal")),
        }
    }

    /// `lex_item` over the general rules.
    fn lex_item_general(input: &[u8]) -> Result<(&[u8], Str<'_>), LexError> {
        match input {
            [b'"', ..] | [b'{', ..] | [b'~', b'{', ..] => lex_string_general(input),
            _ => {
                let end = token_end_general(input)?;
                let (token, rest) = input.split_at_checked(end).unwrap_or_default();
                Ok((rest, Str::Atom(token)))
            }
        }
    }

    /// `scan` as a state machine, octet by octet.
    pub(crate) fn scan_general(input: &[u8], in_list: bool) -> Result<usize, LexError> {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Prev {
            Start,
            Open,
            Space,
            Item,
            List,
        }
        let mut depth = usize::from(in_list);
        let mut prev = if in_list { Prev::Open } else { Prev::Start };
        let mut i = 0;
        loop {
            let rest = input.get(i..).unwrap_or_default();
            match rest.first() {
                None => {
                    return match prev {
                        _ if depth > 0 => {
                            Err(LexError::Syntax("unbalanced parentheses: missing ')'"))
                        }
                        Prev::Start | Prev::Item | Prev::List => Ok(i),
                        _ => Err(LexError::Syntax("trailing space")),
                    };
                }
                Some(b' ') => {
                    if !matches!(prev, Prev::Item | Prev::List) {
                        return Err(LexError::Syntax("unexpected space"));
                    }
                    prev = Prev::Space;
                    i += 1;
                }
                Some(b')') => {
                    if depth == 0 {
                        return Err(LexError::Syntax("unbalanced parentheses: extra ')'"));
                    }
                    if prev == Prev::Space {
                        return Err(LexError::Syntax("space before ')'"));
                    }
                    depth -= 1;
                    if depth == 0 && in_list {
                        return Ok(i);
                    }
                    prev = Prev::List;
                    i += 1;
                }
                Some(b'(') => {
                    if !matches!(prev, Prev::Start | Prev::Open | Prev::Space | Prev::List) {
                        return Err(LexError::Syntax("missing space before '('"));
                    }
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(LexError::Syntax("lists nested too deeply"));
                    }
                    prev = Prev::Open;
                    i += 1;
                }
                Some(_) => {
                    if !matches!(prev, Prev::Start | Prev::Open | Prev::Space) {
                        return Err(LexError::Syntax("missing space between arguments"));
                    }
                    let (after, _) = lex_item_general(rest)?;
                    i += rest.len() - after.len();
                    prev = Prev::Item;
                }
            }
        }
    }

    /// Every entry of the class table against the rules as RFC 9051 writes
    /// them.
    #[test]
    fn class_table_matches_the_rules() {
        for c in 0..=255u8 {
            assert_eq!(is_atom_char(c), is_atom_char_rule(c), "{c:#x}");
            assert_eq!(is_astring_char(c), is_astring_char_rule(c), "{c:#x}");
            assert_eq!(class(c) & TAG != 0, is_tag_char_rule(c), "{c:#x}");
            assert_eq!(is_token_char(c), is_token_char_rule(c), "{c:#x}");
            assert_eq!(class(c) & DIGIT != 0, c.is_ascii_digit(), "{c:#x}");
            assert_eq!(class(c) & BASE64 != 0, is_base64_char_rule(c), "{c:#x}");
            assert_eq!(
                class(c) & SECTION != 0,
                matches!(c, 0x20..=0x7E)
                    && !matches!(c, b'[' | b']' | b'(' | b')' | b'"' | b'{' | b'~'),
                "{c:#x}"
            );
            assert_eq!(
                class(c) & QUOTED != 0,
                !matches!(c, b'\r' | b'\n' | 0 | b'"' | b'\\'),
                "{c:#x}"
            );
        }
    }

    /// A folded atom equals the [`word`] of a known name exactly when the
    /// two are equal but for ASCII case: every one-octet change, in either
    /// case, of every name the parsers look up, and the names one octet
    /// shorter or longer.
    #[test]
    fn folded_words_compare_like_eq_ignore_ascii_case() {
        let names = [
            "CAPABILITY",
            "NOOP",
            "LOGOUT",
            "STARTTLS",
            "IDLE",
            "LOGIN",
            "AUTHENTICATE",
            "ID",
            "ENABLE",
            "OK",
            "NO",
            "BAD",
            "BYE",
            "PREAUTH",
            "ALERT",
            "PRIVACYREQUIRED",
            "PARSE",
            "READ-ONLY",
            "READ-WRITE",
            "TRYCREATE",
            "UIDNEXT",
            "UIDVALIDITY",
            "UNSEEN",
            "REFERRAL",
            "PERMANENTFLAGS",
            "IMAP4rev2",
        ];
        let check = |atom: &[u8]| {
            if atom.is_empty() || !all_atom_chars(atom) {
                return;
            }
            for name in names {
                assert_eq!(
                    atom_word(atom) == Some(word(name)),
                    atom.eq_ignore_ascii_case(name.as_bytes()),
                    "{:?} {name}",
                    String::from_utf8_lossy(atom)
                );
            }
        };
        for name in names {
            for lower in [false, true] {
                let mut base = name.as_bytes().to_vec();
                if lower {
                    base.make_ascii_lowercase();
                }
                check(&base);
                for at in 0..=base.len() {
                    for c in 0..=255u8 {
                        let mut a = base.clone();
                        if let Some(slot) = a.get_mut(at) {
                            *slot = c;
                            check(&a);
                        }
                        let mut a = base.clone();
                        a.insert(at, c);
                        check(&a);
                    }
                    let mut a = base.clone();
                    if at < a.len() {
                        a.remove(at);
                        check(&a);
                    }
                }
            }
        }
        assert_eq!(atom_word(&[b'A'; 17]), None);
    }

    /// xorshift64: deterministic pseudo-random numbers, no extra crates.
    pub(crate) struct Xorshift(pub(crate) u64);

    impl Xorshift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A string of `0..max` pieces picked from `pieces`.
        pub(crate) fn string(&mut self, pieces: &[&[u8]], max: u64) -> Vec<u8> {
            let mut out = Vec::new();
            for _ in 0..self.next() % max {
                let piece = pieces
                    .get((self.next() % pieces.len() as u64) as usize)
                    .copied()
                    .unwrap_or_default();
                out.extend_from_slice(piece);
            }
            out
        }
    }

    /// The octets and fragments that matter to the IMAP lexical rules:
    /// every class boundary, delimiters, strings, literals (good, short,
    /// malformed), sections, UTF-8 and broken UTF-8, CTLs.
    pub(crate) const PIECES: &[&[u8]] = &[
        b"a",
        b"Z",
        b"7",
        b"0",
        b" ",
        b" ",
        b"(",
        b")",
        b"()",
        b"[",
        b"]",
        b"{",
        b"}",
        b"\"",
        b"\\",
        b"%",
        b"*",
        b"+",
        b"~",
        b"<",
        b".",
        b":",
        b"NIL",
        b"{1}\r\nx",
        b"{2+}\r\n)(",
        b"~{1}\r\n\0",
        b"{3}\r\n",
        b"{1}x",
        b"\"a b\"",
        b"\"\\\"\"",
        b"BODY[",
        b"\r",
        b"\n",
        b"\0",
        b"\x01",
        b"\x7f",
        b"\xc3\xa9",
        b"\xc3",
        b"\xff",
    ];

    /// The table-driven fast paths give exactly what the rules written octet
    /// by octet give (values, remainders and errors), on pseudo-random
    /// strings built from [`PIECES`].
    #[test]
    fn fast_paths_agree_with_the_general_rules() {
        let mut r = Xorshift(0x2545_F491_4F6C_DD1D);
        for _ in 0..200_000 {
            let input = r.string(PIECES, 14);
            let input = input.as_slice();
            let show = String::from_utf8_lossy(input);
            assert_eq!(tag(input), tag_general(input), "tag {show:?}");
            assert_eq!(atom(input), atom_general(input), "atom {show:?}");
            assert_eq!(number(input), number_general(input), "number {show:?}");
            assert_eq!(
                nz_number(input),
                match number_general(input) {
                    Ok((rest, n)) if n != 0 && input.first() != Some(&b'0') => Ok((rest, n)),
                    _ => fail(),
                },
                "nz-number {show:?}"
            );
            assert_eq!(quoted(input), quoted_general(input), "quoted {show:?}");
            assert_eq!(astring(input), astring_general(input), "astring {show:?}");
            assert_eq!(is_text(input), is_text_general(input), "text {show:?}");
            assert_eq!(is_base64(input), is_base64_general(input), "b64 {show:?}");
            assert_eq!(token_end(input), token_end_general(input), "token {show:?}");
            assert_eq!(
                section_len(input),
                section_len_general(input),
                "section {show:?}"
            );
            assert_eq!(lex_item(input), lex_item_general(input), "item {show:?}");
            assert_eq!(scan(input, false), scan_general(input, false), "{show:?}");
            assert_eq!(scan(input, true), scan_general(input, true), "{show:?}");
        }
    }

    fn header(len: u64, mode: LiteralMode, binary: bool) -> Option<LiteralHeader> {
        Some(LiteralHeader { len, mode, binary })
    }

    #[test]
    fn errors_display() {
        assert_eq!(SyntaxError::Tag.to_string(), "missing or invalid tag");
        assert_eq!(
            SyntaxError::UnknownCommand.to_string(),
            "command not recognized"
        );
        let e = SyntaxError::InvalidArguments {
            command: "LOGIN",
            reason: "x",
        };
        assert_eq!(e.to_string(), "invalid arguments to LOGIN: x");
        let e = SyntaxError::InvalidResponse { reason: "y" };
        assert_eq!(e.to_string(), "invalid response: y");
        let e = SyntaxError::Literal { reason: "z" };
        assert_eq!(e.to_string(), "invalid literal: z");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn trailing_literal_headers() {
        use LiteralMode::*;
        assert_eq!(trailing_literal(b"a LOGIN {5}"), Ok(header(5, Sync, false)));
        assert_eq!(trailing_literal(b"{123}"), Ok(header(123, Sync, false)));
        assert_eq!(trailing_literal(b"x {123+}"), Ok(header(123, Plus, false)));
        assert!(
            trailing_literal(b"x {0-}").is_err(),
            "no {{n-}} form in RFC 7888"
        );
        assert_eq!(trailing_literal(b"x ~{5}"), Ok(header(5, Sync, true)));
        assert_eq!(trailing_literal(b"~{7+}"), Ok(header(7, Plus, true)));
        assert_eq!(trailing_literal(b"x {007}"), Ok(header(7, Sync, false)));
        assert_eq!(
            trailing_literal(b"A003 APPEND box {4294967295}"),
            Ok(header(4294967295, Sync, false))
        );
        assert_eq!(
            trailing_literal(b"x {18446744073709551615}"),
            Ok(header(u64::MAX, Sync, false))
        );
        assert!(matches!(
            trailing_literal(b"x {18446744073709551616}"),
            Err(SyntaxError::Literal { .. })
        ));
        assert!(matches!(
            trailing_literal(b"x {99999999999999999999999999999999999}"),
            Err(SyntaxError::Literal { .. })
        ));
        for bad in [
            &b"x {12a}"[..],
            b"{1 2}x{3a}",
            b"x {5++}",
            b"x {5+-}",
            b"{1-2}",
        ] {
            assert!(
                matches!(trailing_literal(bad), Err(SyntaxError::Literal { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for none in [
            &b""[..],
            b"a NOOP",
            b"}",
            b"{}",
            b"{+}",
            b"* OK see {note}",
            b"* OK {5} and more}",
            b"x {5}y",
            b"x {5} ",
            b"x 5}",
            b"x \"{5\"",
        ] {
            assert_eq!(
                trailing_literal(none),
                Ok(None),
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
    }

    #[test]
    fn literal_header_round_trip() {
        for (text, h) in [
            ("{5}", header(5, LiteralMode::Sync, false)),
            ("{5+}", header(5, LiteralMode::Plus, false)),
            ("~{0+}", header(0, LiteralMode::Plus, true)),
            (
                "{18446744073709551615}",
                header(u64::MAX, LiteralMode::Sync, false),
            ),
        ] {
            let h = h.unwrap();
            let mut out = Vec::new();
            h.write_to(&mut out);
            assert_eq!(out, text.as_bytes());
            assert_eq!(whole(text.as_bytes(), literal_header), Some(h));
            assert_eq!(h.is_synchronizing(), h.mode == LiteralMode::Sync);
        }
        let mut out = Vec::new();
        write_decimal(0, &mut out);
        write_decimal(10, &mut out);
        assert_eq!(out, b"010");
    }

    #[test]
    fn char_classes_and_small_parsers() {
        assert!(whole(b"a1", tag).is_some());
        assert!(whole(b"A.1-x]", tag).is_some());
        assert!(whole(b"a+1", tag).is_none());
        assert!(whole(b"*", tag).is_none());
        assert!(whole(b"a%", tag).is_none());
        assert!(whole(b"FETCH", atom).is_some());
        assert!(whole(b"FE]", atom).is_none());
        assert!(whole(b"\\Seen", atom).is_none());
        assert_eq!(whole(b"4294967295", number), Some(u32::MAX));
        assert_eq!(whole(b"4294967296", number), None);
        assert_eq!(whole(b"0", nz_number), None);
        assert_eq!(whole(b"01", nz_number), None);
        assert_eq!(whole(b"17", nz_number), Some(17));
        assert_eq!(whole(b"nil", nil), Some(()));
        assert!(nil(b"NILS").is_err());
        assert_eq!(nil(b"NIL)"), Ok((&b")"[..], ())));
        assert!(is_base64(b"dGVzdA=="));
        assert!(!is_base64(b"dGVzdA"));
        assert!(!is_base64(b"===="));
        assert!(is_text("héllo".as_bytes()));
        assert!(!is_text(b"a\nb"));
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(whole(br#""""#, quoted), Some(&b""[..]));
        assert_eq!(whole(br#""a\"b\\c""#, quoted), Some(&br#"a\"b\\c"#[..]));
        assert_eq!(unescape(br#"a\"b\\c"#).as_ref(), br#"a"b\c"#);
        assert!(matches!(unescape(b"abc"), Cow::Borrowed(_)));
        assert_eq!(
            whole("\"grüße\"".as_bytes(), quoted),
            Some("grüße".as_bytes())
        );
        for bad in [
            &b"\"a"[..],
            b"\"a\\x\"",
            b"\"a\rb\"",
            b"\"a\nb\"",
            b"\"a\0b\"",
            b"\"\xC3\"",
            b"\"\\\"",
            b"a\"",
        ] {
            assert!(quoted(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut out = Vec::new();
        escape(br#"a"b\c"#, &mut out);
        assert_eq!(out, br#"a\"b\\c"#);
        assert!(is_quotable("é \"x\"".as_bytes()));
        assert!(!is_quotable(b"\xFF"));
        assert!(!is_quotable(b"a\r\n"));
    }

    #[test]
    fn literals() {
        let (rest, lit) = lex_literal(b"{5}\r\nhe)lo rest").unwrap();
        assert_eq!(lit.data, b"he)lo");
        assert_eq!(rest, b" rest");
        let (rest, lit) = lex_literal(b"~{3+}\r\n\0\r\n").unwrap();
        assert_eq!((lit.data, rest), (&b"\0\r\n"[..], &b""[..]));
        assert!(lit.header.binary);
        let (_, lit) = lex_literal(b"{0}\r\n").unwrap();
        assert_eq!(lit.data, b"");
        assert_eq!(
            lex_literal(b"{6}\r\nhello"),
            Err("message ends before the literal's announced length")
        );
        assert_eq!(
            lex_literal(b"{18446744073709551615}\r\nhello"),
            Err("message ends before the literal's announced length")
        );
        assert_eq!(
            lex_literal(b"{5}hello"),
            Err("literal header not followed by CRLF")
        );
        assert_eq!(
            lex_literal(b"{5}\nhello"),
            Err("literal header not followed by CRLF")
        );
        assert_eq!(
            lex_literal(b"{5a}\r\nhello"),
            Err("malformed literal header")
        );
        assert_eq!(lex_literal(b"{}\r\n"), Err("malformed literal header"));
        assert_eq!(
            lex_literal(b"{99999999999999999999}\r\n"),
            Err("malformed literal header")
        );
        assert!(literal(b"{1}\r\n").is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(whole(b"abc]", astring), Some(Str::Atom(b"abc]")));
        assert_eq!(whole(b"\"a b\"", astring), Some(Str::Quoted(b"a b")));
        assert!(matches!(whole(b"{1}\r\nx", astring), Some(Str::Literal(_))));
        assert!(whole(b"a(b", astring).is_none());
        assert!(whole(b"abc", string).is_none());
        assert_eq!(whole(b"NIL", nstring), Some(None));
        assert_eq!(whole(b"\"x\"", nstring), Some(Some(Str::Quoted(b"x"))));
        assert!(whole(b"NILL", nstring).is_none());
        assert!(matches!(
            lex_astring(b"{9}\r\nx"),
            Err(LexError::Literal(_))
        ));
    }

    #[test]
    fn generic_items() {
        let ok = |s: &[u8]| scan(s, false) == Ok(s.len());
        assert!(ok(b""));
        assert!(ok(b"1:* (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"));
        assert!(ok(b"(BODY[HEADER.FIELDS (\"X-A\" {3}\r\nX-B)]<0.100>)"));
        assert!(ok(b"((a b)(c d) \"mixed\") NIL"));
        assert!(ok(b"+FLAGS.SILENT (\\Seen \\*) % * ~x"));
        assert!(ok(b"()"));
        assert!(ok(b"BINARY.PEEK[1.2]<0.10> ~{3}\r\n\0\0\0"));
        for bad in [
            &b" "[..],
            b"a ",
            b" a",
            b"a  b",
            b"(a",
            b"a)",
            b"( a)",
            b"(a )",
            b"a(b)",
            b"\"a\"b",
            b"{1}\r\nab",
            b"BODY[",
            b"BODY[(]",
            b"BODY[)]",
            b"a{5}",
            b"a\x01",
            b"caf\xC3\xA9",
        ] {
            assert!(
                scan(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            scan(b"{9}\r\nab", false),
            Err(LexError::Literal(
                "message ends before the literal's announced length"
            ))
        );
        let deep = |n: usize| [vec![b'('; n], vec![b')'; n]].concat();
        assert!(ok(&deep(MAX_DEPTH)));
        assert_eq!(
            scan(&deep(MAX_DEPTH + 1), false),
            Err(LexError::Syntax("lists nested too deeply"))
        );
        assert_eq!(list(b"(a (b) c) d"), Ok((&b" d"[..], &b"a (b) c"[..])));
        assert_eq!(list(b"() d"), Ok((&b" d"[..], &b""[..])));
        assert!(list(b"(a").is_err());
        assert!(list(b"a)").is_err());
    }
}
