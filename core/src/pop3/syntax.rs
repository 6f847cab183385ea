//! Shared lexical rules of POP3 (RFC 1939 §3, RFC 2449 §3, §4 and §9) as
//! small nom 7 parsers over `&[u8]`, and the error type every POP3 parser
//! returns.
//!
//! The parsers use `()` as their nom error type: they never allocate, and the
//! callers turn a failure into a [`SyntaxError`] that says which rule failed.

use std::fmt;

use nom::bytes::complete::take_while1;
use nom::IResult;

/// Why a command line or a response line could not be parsed.
///
/// A POP3 server answers every error with `-ERR` (RFC 1939 §3); the variant
/// only tells the application what went wrong.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// The keyword is not one this crate knows (RFC 1939 §3: "keywords are
    /// three or four characters long").
    UnknownCommand,
    /// A known keyword with malformed arguments.
    InvalidArguments {
        /// The keyword, upper case, e.g. `"RETR"`.
        command: &'static str,
        /// The rule that failed, e.g. `"RETR requires a message number"`.
        reason: &'static str,
    },
    /// A response line (status line, continuation, listing or capability)
    /// that does not follow RFC 1939 / RFC 2449 §9.
    InvalidResponse {
        /// The rule that failed, e.g. `"status must be +OK or -ERR"`.
        reason: &'static str,
    },
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::UnknownCommand => f.write_str("command not recognized"),
            SyntaxError::InvalidArguments { command, reason } => {
                write!(f, "invalid arguments to {command}: {reason}")
            }
            SyntaxError::InvalidResponse { reason } => write!(f, "invalid response: {reason}"),
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

/// RFC 1939 §3 / RFC 2449 §4: "Each argument may be up to 40 characters
/// long" (counted in octets here).
pub(crate) const MAX_ARG: usize = 40;

/// Splits `input` at its first SP: `(before, Some(after))`, or
/// `(input, None)` when there is no SP.
pub(crate) fn split_sp(input: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b' ', input).and_then(|p| input.split_at_checked(p)) {
        Some((head, rest)) => (head, rest.get(1..)),
        None => (input, None),
    }
}

/// RFC 5234 `VCHAR = %x21-7E`.
pub(crate) fn is_vchar(c: u8) -> bool {
    (0x21..=0x7E).contains(&c)
}

/// `1*DIGIT`.
pub(crate) fn digits(input: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(|c: u8| c.is_ascii_digit())(input)
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

/// `1*DIGIT` that fits in a `u32` (no sign, leading zeros allowed).
pub(crate) fn number_u32(input: &[u8]) -> PResult<'_, u32> {
    let (rest, d) = digits(input)?;
    match digits_value(d).and_then(|v| u32::try_from(v).ok()) {
        Some(v) => Ok((rest, v)),
        None => fail(),
    }
}

/// `1*DIGIT` that fits in a `u64`.
#[cfg(test)]
pub(crate) fn number_u64(input: &[u8]) -> PResult<'_, u64> {
    let (rest, d) = digits(input)?;
    match digits_value(d) {
        Some(v) => Ok((rest, v)),
        None => fail(),
    }
}

/// RFC 1939 §3 / RFC 1939 §5 `msg`: a message number, `1*DIGIT`, non-zero
/// ("message numbers start at 1"), fitting in a `u32`.
#[cfg(test)]
pub(crate) fn msg_number(input: &[u8]) -> PResult<'_, u32> {
    let (rest, n) = number_u32(input)?;
    if n == 0 {
        return fail();
    }
    Ok((rest, n))
}

/// A word argument (RFC 1939 §3 "printable ASCII characters", RFC 6856 §2
/// UTF-8 user names): 1 to 40 octets, each a VCHAR or part of well-formed
/// UTF-8 beyond ASCII. No SP, no control characters.
pub(crate) fn is_word_arg(s: &[u8]) -> bool {
    if s.is_empty() || s.len() > MAX_ARG {
        return false;
    }
    let mut ascii = true;
    for &c in s {
        if c >= 0x80 {
            ascii = false;
        } else if !is_vchar(c) {
            return false;
        }
    }
    // All-ASCII words (the usual case) need no UTF-8 check.
    ascii || std::str::from_utf8(s).is_ok()
}

/// True if `text` may appear in a line: any octets except CR, LF, NUL.
///
/// Word at a time: eight octets are checked for a zero octet, for CR and
/// for LF with the usual "has a zero byte" bit trick (exact: no false
/// positive, no false negative), the tail octet by octet.
pub(crate) fn is_line_text(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let bad_octet = |c: &u8| matches!(c, b'\r' | b'\n' | 0);
    let mut words = text.chunks_exact(8);
    for chunk in &mut words {
        let Ok(octets) = <[u8; 8]>::try_from(chunk) else {
            // Not reached: every chunk has eight octets.
            if chunk.iter().any(bad_octet) {
                return false;
            }
            continue;
        };
        let w = u64::from_le_bytes(octets);
        if has_zero(w) || has_zero(w ^ (ONES * 0x0d)) || has_zero(w ^ (ONES * 0x0a)) {
            return false;
        }
    }
    !words.remainder().iter().any(bad_octet)
}

/// RFC 4648 base64 alphabet (without the `=` pad).
pub(crate) fn is_base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// True if `s` is RFC 5034 §4 `base64`:
/// `base64 = base64-terminal / ( 1*(4base64-char) [base64-terminal] )`,
/// `base64-terminal = (2base64-char "==") / (3base64-char "=")`.
pub(crate) fn is_base64(s: &[u8]) -> bool {
    if s.is_empty() || s.len() % 4 != 0 {
        return false;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    pad <= 2 && s.iter().take(s.len() - pad).all(|&c| is_base64_char(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_error() {
        assert_eq!(
            SyntaxError::UnknownCommand.to_string(),
            "command not recognized"
        );
        let e = SyntaxError::InvalidArguments {
            command: "RETR",
            reason: "RETR requires a message number",
        };
        assert_eq!(
            e.to_string(),
            "invalid arguments to RETR: RETR requires a message number"
        );
        let r = SyntaxError::InvalidResponse { reason: "x" };
        assert_eq!(r.to_string(), "invalid response: x");
        let _: &dyn std::error::Error = &r;
    }

    #[test]
    fn numbers() {
        assert_eq!(whole(b"1", msg_number), Some(1));
        assert_eq!(whole(b"007", msg_number), Some(7));
        assert_eq!(whole(b"4294967295", msg_number), Some(u32::MAX));
        assert_eq!(whole(b"4294967296", msg_number), None);
        assert_eq!(whole(b"0", msg_number), None);
        assert_eq!(whole(b"000", msg_number), None);
        assert_eq!(whole(b"+1", msg_number), None);
        assert_eq!(whole(b"-1", msg_number), None);
        assert_eq!(whole(b"", msg_number), None);
        assert_eq!(whole(b"1a", msg_number), None);
        assert_eq!(whole(b"0", number_u32), Some(0));
        assert_eq!(whole(b"18446744073709551615", number_u64), Some(u64::MAX));
        assert_eq!(whole(b"18446744073709551616", number_u64), None);
        assert_eq!(digits_value(b""), None);
        assert_eq!(digits_value(b"1a"), None);
        assert_eq!(digits_value(b"42"), Some(42));
    }

    #[test]
    fn words_and_text() {
        assert!(is_word_arg(b"mrose"));
        assert!(is_word_arg("jörg".as_bytes()));
        assert!(is_word_arg(&[b'a'; 40]));
        assert!(!is_word_arg(&[b'a'; 41]));
        assert!(!is_word_arg(b""));
        assert!(!is_word_arg(b"a b"));
        assert!(!is_word_arg(b"a\tb"));
        assert!(!is_word_arg(b"a\x7f"));
        assert!(!is_word_arg(b"\xff"));
        assert!(!is_word_arg(b"\xC3"));
        assert!(is_line_text("héllo [x]".as_bytes()));
        assert!(!is_line_text(b"a\rb"));
        assert!(!is_line_text(b"a\nb"));
        assert!(!is_line_text(b"a\0b"));
        // The word-at-a-time scan against the plain definition: every octet
        // value at every position of lines of 0 to 24 octets.
        for len in 0..25 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut line = vec![b'x'; len];
                    line[at] = c;
                    let plain = !line.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0));
                    assert_eq!(is_line_text(&line), plain, "{line:?}");
                }
            }
        }
        assert_eq!(split_sp(b"a b c"), (&b"a"[..], Some(&b"b c"[..])));
        assert_eq!(split_sp(b"a "), (&b"a"[..], Some(&b""[..])));
        assert_eq!(split_sp(b"abc"), (&b"abc"[..], None));
    }

    #[test]
    fn base64() {
        assert!(is_base64(b"dGVzdAB0ZXN0AHRlc3Q="));
        assert!(is_base64(b"dGVzdA=="));
        assert!(is_base64(b"abcd"));
        assert!(is_base64(b"a+/9"));
        assert!(!is_base64(b"abc"));
        assert!(!is_base64(b"ab=c"));
        assert!(!is_base64(b"a==="));
        assert!(!is_base64(b"===="));
        assert!(!is_base64(b"ab!d"));
        assert!(!is_base64(b""));
    }
}
