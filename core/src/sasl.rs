//! SASL `EXTERNAL` over TLS client certificates (RFC 4422 Appendix A).
//!
//! With `EXTERNAL` the client is authenticated by something outside SASL:
//! here, the certificate it presented in the TLS handshake, which the
//! server's verifier accepted. The SASL exchange only carries the
//! *authorization identity* the client asks to act as, possibly empty
//! ("whoever my certificate says I am").
//!
//! **Server role.** List `"EXTERNAL"` among the configured mechanisms
//! (SMTP `auth_mechanisms`, IMAP `auth_mechanisms`, POP3
//! `sasl_mechanisms`). The session advertises it (SMTP `AUTH EXTERNAL`,
//! IMAP `AUTH=EXTERNAL`, POP3 `SASL EXTERNAL`) only over TLS and only when
//! the client presented a verified certificate
//! ([`TlsInfo::client_identity`](crate::TlsInfo::client_identity)); in any
//! other case it refuses the mechanism itself. The session handles the
//! whole exchange (the empty challenge when there was no initial response,
//! decoding, `*` to cancel) and reports one `ExternalAuthRequested` event
//! with an [`ExternalAuth`]: the verified identity and the requested
//! authorization identity. The session never decides: the application
//! accepts or refuses, with the usual calls (SMTP `accept`/`reject`, IMAP
//! `complete`, POP3 `reply`).
//!
//! **Client role.** Give rustls a client certificate
//! (`with_client_auth_cert`), then call `send_auth_external` on the
//! session once it is ready. The session refuses, sending nothing, when
//! the channel is not TLS, when no client certificate was configured, or
//! when the server did not advertise `EXTERNAL` over TLS
//! ([`ExternalRefusal`]). The same checks apply to an `EXTERNAL` command
//! sent with `send`.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;

use crate::error::UsageError;
use crate::tls::{ClientIdentity, TlsInfo};
use crate::trust::Trust;

/// The mechanism name (RFC 4422 Appendix A).
pub(crate) const EXTERNAL: &str = "EXTERNAL";

/// A client asked to authenticate with SASL `EXTERNAL`: who its
/// certificate says it is, and who it asks to act as. Accept or refuse it
/// with the session's usual answer for authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExternalAuth {
    /// The identity in the client certificate the TLS verifier accepted.
    pub identity: ClientIdentity,
    /// The authorization identity the client asked for (RFC 4422 Appendix
    /// A `extern-resp`, UTF-8 without NUL). `None` for the empty response:
    /// the identity is to be derived from the certificate.
    pub authzid: Option<String>,
}

/// Why a client session will not start SASL `EXTERNAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExternalRefusal {
    /// The session is not protected by TLS: there is no certificate to
    /// authenticate with.
    NoTls,
    /// No client certificate was configured for the TLS handshake
    /// ([`TlsInfo::own_certificate`] is false).
    NoClientCertificate,
    /// The server did not advertise `EXTERNAL` in its capabilities over TLS
    /// (a server does so only when it verified our certificate).
    NotAdvertised,
    /// The authorization identity contains NUL, which RFC 4422 Appendix A
    /// forbids.
    InvalidAuthzid,
}

impl fmt::Display for ExternalRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExternalRefusal::NoTls => "the session is not protected by TLS",
            ExternalRefusal::NoClientCertificate => "no TLS client certificate was configured",
            ExternalRefusal::NotAdvertised => "the server did not advertise EXTERNAL over TLS",
            ExternalRefusal::InvalidAuthzid => "the authorization identity contains NUL",
        })
    }
}

/// `true` if `mechanism` names `EXTERNAL` (SASL names are case-insensitive).
pub(crate) fn is_external(mechanism: &[u8]) -> bool {
    mechanism.eq_ignore_ascii_case(EXTERNAL.as_bytes())
}

/// `true` if the configured list holds `EXTERNAL`.
pub(crate) fn configured(mechanisms: &[String]) -> bool {
    mechanisms.iter().any(|m| is_external(m.as_bytes()))
}

/// Server role: the verified client identity that `EXTERNAL` would
/// authenticate, when it may be offered at all: over TLS, with a
/// certificate the verifier accepted.
pub(crate) fn server_identity(trust: Trust, tls: Option<&TlsInfo>) -> Option<&ClientIdentity> {
    if trust != Trust::Tls {
        return None;
    }
    tls?.client_identity.as_deref()
}

/// Server role: whether `EXTERNAL` is offered on this session: configured,
/// over TLS, and backed by a verified client certificate. The one rule the
/// three servers apply before running the exchange.
pub(crate) fn external_offered(mechanisms: &[String], trust: Trust, tls: Option<&TlsInfo>) -> bool {
    configured(mechanisms) && server_identity(trust, tls).is_some()
}

/// The mechanisms to advertise: the configured ones, without `EXTERNAL`
/// unless a verified client certificate backs it.
pub(crate) fn advertised<'a>(
    mechanisms: &'a [String],
    trust: Trust,
    tls: Option<&TlsInfo>,
) -> impl Iterator<Item = &'a String> {
    let external = server_identity(trust, tls).is_some();
    mechanisms
        .iter()
        .filter(move |m| external || !is_external(m.as_bytes()))
}

/// Why a client's `EXTERNAL` response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthzidError {
    NotBase64,
    NotUtf8,
    ContainsNul,
}

impl AuthzidError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            AuthzidError::NotBase64 => "EXTERNAL response is not base64",
            AuthzidError::NotUtf8 => "EXTERNAL authorization identity is not UTF-8",
            AuthzidError::ContainsNul => "EXTERNAL authorization identity contains NUL",
        }
    }
}

/// Decodes the client's response (`=` or empty: the empty response).
pub(crate) fn decode_authzid(response: &[u8]) -> Result<Option<String>, AuthzidError> {
    if response.is_empty() || response == b"=" {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(response)
        .map_err(|_| AuthzidError::NotBase64)?;
    if raw.contains(&0) {
        return Err(AuthzidError::ContainsNul);
    }
    let s = String::from_utf8(raw).map_err(|_| AuthzidError::NotUtf8)?;
    Ok((!s.is_empty()).then_some(s))
}

/// Client role: checks that `EXTERNAL` can work on this channel.
pub(crate) fn client_check(
    trust: Trust,
    tls: Option<&TlsInfo>,
    advertised: bool,
) -> Result<(), UsageError> {
    let refuse = |r| Err(UsageError::External(r));
    if trust != Trust::Tls {
        return refuse(ExternalRefusal::NoTls);
    }
    if !tls.is_some_and(|t| t.own_certificate) {
        return refuse(ExternalRefusal::NoClientCertificate);
    }
    if !advertised {
        return refuse(ExternalRefusal::NotAdvertised);
    }
    Ok(())
}

/// Client role: the base64 response carrying `authzid` (`=` when empty).
pub(crate) fn response(authzid: Option<&str>) -> Result<Bytes, UsageError> {
    match authzid {
        None | Some("") => Ok(Bytes::from_static(b"=")),
        Some(a) if a.contains('\0') => Err(UsageError::External(ExternalRefusal::InvalidAuthzid)),
        Some(a) => Ok(Bytes::from(
            base64::engine::general_purpose::STANDARD.encode(a.as_bytes()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authzid_round_trip_and_refusals() {
        assert_eq!(decode_authzid(b"="), Ok(None));
        assert_eq!(decode_authzid(b""), Ok(None));
        let r = response(Some("alice@example.org")).unwrap();
        assert_eq!(
            decode_authzid(&r),
            Ok(Some("alice@example.org".to_string()))
        );
        assert_eq!(response(None).unwrap().as_ref(), b"=");
        assert_eq!(response(Some("")).unwrap().as_ref(), b"=");
        assert_eq!(
            response(Some("a\0b")),
            Err(UsageError::External(ExternalRefusal::InvalidAuthzid))
        );
        assert_eq!(decode_authzid(b"YQBi"), Err(AuthzidError::ContainsNul));
        assert_eq!(decode_authzid(b"/w=="), Err(AuthzidError::NotUtf8));
        assert_eq!(decode_authzid(b"YWxpY2U"), Err(AuthzidError::NotBase64));
        assert_eq!(decode_authzid(b"*"), Err(AuthzidError::NotBase64));
    }

    #[test]
    fn offered_only_over_tls_with_a_verified_identity() {
        let mechs = vec!["PLAIN".to_string(), "external".to_string()];
        let none: Vec<_> = advertised(&mechs, Trust::Tls, Some(&TlsInfo::unknown())).collect();
        assert_eq!(none, ["PLAIN"]);
        let no_tls: Vec<_> = advertised(&mechs, Trust::Cleartext, None).collect();
        assert_eq!(no_tls, ["PLAIN"]);
        assert!(configured(&mechs));
        assert!(!configured(&mechs[..1]));
    }
}
