//! Values the application hands to a session for writing: the one rule for
//! all three protocols (see `docs/threat-model.md`, "application-data
//! injection").
//!
//! - **Free text** — the human-readable text of a reply, a status line or a
//!   continuation request given as `&str`/`&[u8]` to a convenience call
//!   (`reject`, `complete`, `continue_request`, SMTP `Reply::new`) — is
//!   *cleaned*: CR, LF and NUL become SP, so it can never end its line.
//!   Without a typed code it may start with one (`[IN-USE] busy`), written
//!   as given.
//! - **Everything else** — commands, typed responses and status lines, tags,
//!   codes, names, arguments, domains, paths, ESMTP parameters, SASL lines —
//!   is *checked*: the session writes the element, reads it back with the
//!   crate's own framer and parser, and refuses with
//!   [`UsageError::InvalidValue`] unless it is exactly one element equal to
//!   the value given. Nothing is written then.

use bytes::Bytes;

use crate::UsageError;

/// Free text with CR, LF and NUL replaced by SP (what SMTP's `Reply::new`
/// has always done).
pub(crate) fn clean_text(text: &[u8]) -> Bytes {
    if !text.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0)) {
        return Bytes::copy_from_slice(text);
    }
    text.iter()
        .map(|&c| match c {
            b'\r' | b'\n' | 0 => b' ',
            c => c,
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The refusal for `field`.
pub(crate) fn invalid(field: &'static str, reason: &'static str) -> UsageError {
    UsageError::InvalidValue { field, reason }
}

/// `wire` is one line: it ends in CRLF and holds no other CR, LF or NUL.
/// Returns the line without its CRLF.
pub(crate) fn one_line<'a>(field: &'static str, wire: &'a [u8]) -> Result<&'a [u8], UsageError> {
    let line = wire
        .strip_suffix(b"\r\n")
        .ok_or(invalid(field, "not a line"))?;
    if line.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0)) {
        return Err(invalid(field, "contains CR, LF or NUL"));
    }
    Ok(line)
}

/// A client's line in a SASL exchange (RFC 4954 §4, RFC 9051 §6.2.2, RFC
/// 5034 §4): base64 (possibly empty) or `*` to cancel.
pub(crate) fn check_sasl_response(line: &[u8]) -> Result<(), UsageError> {
    if line == b"*" || is_base64(line) {
        Ok(())
    } else {
        Err(invalid(
            "SASL response",
            "must be base64 (RFC 4648 §4, padded) or \"*\"",
        ))
    }
}

/// RFC 4648 §4 base64 with padding; the empty string is valid.
fn is_base64(s: &[u8]) -> bool {
    if s.len() % 4 != 0 {
        return false;
    }
    let body = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    body.iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_and_checks() {
        assert_eq!(&clean_text(b"a\r\nb\0c")[..], b"a  b c");
        assert_eq!(&clean_text(b"plain")[..], b"plain");
        assert_eq!(one_line("x", b"EHLO a\r\n"), Ok(&b"EHLO a"[..]));
        assert!(one_line("x", b"EHLO a\r\nQUIT\r\n").is_err());
        assert!(one_line("x", b"EHLO a").is_err());
        assert!(one_line("x", b"EHLO a\n\r\n").is_err());
        for ok in [&b""[..], b"*", b"AGFsaWNlAHNlY3JldA==", b"YWJj"] {
            assert_eq!(check_sasl_response(ok), Ok(()), "{ok:?}");
        }
        for bad in [&b"YWJj\r\nQUIT"[..], b"abc", b"=YWJ", b"YW=j", b"**"] {
            assert!(check_sasl_response(bad).is_err(), "{bad:?}");
        }
    }
}

/// Why a list built by `smtp::Parameters::from_params` or
/// `imap::Args::from_args` may not be sent: the first value that would not
/// read back as itself. It takes part in equality, so a command holding
/// it never equals what its wire form parses back to, and the session's
/// check refuses it with [`UsageError::InvalidValue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Unsendable(pub(crate) Option<&'static str>);
