//! Base64 (RFC 4648 §4) and SASL PLAIN (RFC 4616), written out by hand so
//! the tool needs no further crates, and the test account's rule for SASL
//! EXTERNAL (RFC 4422 Appendix A). Shared by `serve` (decoding) and
//! `connect` (encoding).

use starttls::sasl::ExternalAuth;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let v = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[v as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding; `=` alone is the empty SASL response.
/// `None` for anything else.
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    if input == b"=" {
        return Some(Vec::new());
    }
    if input.len() % 4 != 0 {
        return None;
    }
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let chunks = input.len() / 4;
    let mut out = Vec::with_capacity(chunks * 3);
    for (i, chunk) in input.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// The base64 PLAIN response for `user` and `password` (no authorization
/// identity): `base64(NUL user NUL password)`.
pub(crate) fn plain_response(user: &[u8], password: &[u8]) -> String {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user);
    raw.push(0);
    raw.extend_from_slice(password);
    encode(&raw)
}

/// What a decoded PLAIN response says.
pub(crate) enum Plain {
    /// `authzid NUL authcid NUL passwd`, checked against the account.
    Checked { user: String, ok: bool },
    /// Not base64, or not three NUL-separated fields.
    Malformed,
}

/// Checks a base64 PLAIN response against the test account. The
/// authorization identity must be empty or the user itself.
pub(crate) fn check_plain(b64: &[u8], user: &[u8], password: &[u8]) -> Plain {
    let Some(raw) = decode(b64) else {
        return Plain::Malformed;
    };
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    match &parts[..] {
        [authz, authc, pass] => Plain::Checked {
            user: String::from_utf8_lossy(authc).into_owned(),
            ok: (authz.is_empty() || *authz == *authc) && *authc == user && *pass == password,
        },
        _ => Plain::Malformed,
    }
}

/// The test account's rule for SASL `EXTERNAL`: the verified certificate
/// stands for the account when one of its names (a subject CN, an email
/// address or its local part, a DNS name) is the account's user name; the
/// client may ask for no authorization identity, the user name, or any name
/// the certificate carries. Returns what to log and whether to accept.
pub(crate) fn check_external(auth: &ExternalAuth, user: &[u8]) -> (String, bool) {
    let id = &auth.identity;
    let names: Vec<&str> = id
        .common_names
        .iter()
        .chain(&id.emails)
        .chain(&id.dns_names)
        .map(String::as_str)
        .collect();
    let user = String::from_utf8_lossy(user);
    let mapped = names
        .iter()
        .any(|n| *n == user || n.split_once('@').is_some_and(|(local, _)| local == user));
    let allowed = match auth.authzid.as_deref() {
        None => true,
        Some(a) => a == user || names.contains(&a),
    };
    let asked = auth.authzid.as_deref().unwrap_or("(none)");
    if mapped && allowed {
        (
            format!(
                "certificate {:?} authenticated as {user} (authzid {asked})",
                id.subject
            ),
            true,
        )
    } else {
        (
            format!(
                "certificate {:?} refused for authzid {asked}: it does not name the account {user:?}",
                id.subject
            ),
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            b"\0alice\0secret",
        ] {
            let e = encode(s);
            assert_eq!(decode(e.as_bytes()).as_deref(), Some(s), "{e}");
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(plain_response(b"alice", b"secret"), "AGFsaWNlAHNlY3JldA==");
        assert_eq!(decode(b"Zm8"), None);
        assert_eq!(decode(b"Z=8="), None);
        assert_eq!(decode(b"Zm=="), Some(b"f".to_vec()));
    }
}
