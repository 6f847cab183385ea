//! TLS: how a session gets from the upgrade point to an encrypted channel.
//!
//! Two ways, chosen per session:
//!
//! * **In memory with rustls** ([`ServerTls::Rustls`], [`ClientTls::Rustls`]):
//!   the session drives a rustls 0.23 connection itself. The caller keeps
//!   moving socket bytes in and out exactly as before the upgrade; records are
//!   decrypted and encrypted inside the session.
//! * **Bring your own TLS** ([`ServerTls::External`], [`ClientTls::External`]):
//!   at the upgrade point the session pauses with
//!   `ExternalTlsRequired`. It guarantees that no plaintext is pending (every
//!   byte that followed the upgrade line was discarded and is reported). The
//!   caller writes out the pending transmit bytes, runs its own handshake on the
//!   socket, then calls `tls_established` and from then on feeds *decrypted*
//!   bytes in and encrypts what the session transmits.
//!
//! In memory, a write of any size goes through: the session encrypts it 64
//! KiB at a time as `poll_transmit` takes the records, so it never holds a
//! second, encrypted copy of a large body or literal.
//!
//! rustls is kept behind the crate-private `TlsLink` trait so that the rest
//! of the crate never names a rustls connection type; only the configuration
//! types ([`rustls::ServerConfig`], [`rustls::ClientConfig`]) appear in the
//! public API.

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, ServerName};

/// How a server session does TLS.
#[derive(Clone)]
#[non_exhaustive]
pub enum ServerTls {
    /// No TLS: STARTTLS is never offered. Only sensible behind a TLS-terminating
    /// proxy or for tests; a `require_tls` policy cannot be combined with it.
    None,
    /// The session drives rustls in memory with this configuration.
    Rustls(Arc<rustls::ServerConfig>),
    /// The caller runs its own TLS stack (see the [module docs](self)).
    External,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerTls::None => "ServerTls::None",
            ServerTls::Rustls(_) => "ServerTls::Rustls(..)",
            ServerTls::External => "ServerTls::External",
        })
    }
}

impl ServerTls {
    pub(crate) fn is_available(&self) -> bool {
        !matches!(self, ServerTls::None)
    }
}

/// How a client session does TLS.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientTls {
    /// The session drives rustls in memory, verifying the server's certificate
    /// for `server_name` with `config`'s verifier.
    Rustls {
        /// rustls client configuration (roots, versions, ALPN).
        config: Arc<rustls::ClientConfig>,
        /// The name the certificate must match (RFC 7817: the name the user
        /// configured, never one learned from DNS MX or SRV without DNSSEC).
        server_name: ServerName<'static>,
    },
    /// The caller runs its own TLS stack.
    External,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientTls::Rustls { server_name, .. } => f
                .debug_struct("ClientTls::Rustls")
                .field("server_name", server_name)
                .finish_non_exhaustive(),
            ClientTls::External => f.write_str("ClientTls::External"),
        }
    }
}

/// The TLS protocol version negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
    /// Any other version, by its wire number.
    Other(u16),
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsVersion::Tls12 => f.write_str("TLSv1.2"),
            TlsVersion::Tls13 => f.write_str("TLSv1.3"),
            TlsVersion::Other(v) => write!(f, "TLS(0x{v:04x})"),
        }
    }
}

/// What was negotiated, reported in `TlsEstablished` events.
///
/// With bring-your-own TLS the caller fills it in for `tls_established`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// Negotiated protocol version, if known.
    pub version: Option<TlsVersion>,
    /// IANA name of the cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// Server role: the SNI name the client sent.
    pub sni: Option<String>,
    /// The peer's certificate chain, end entity first (client role: always
    /// present after a verified handshake; server role: client certificates).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// Server role: who the client is, by the certificate it presented and
    /// the server configuration's client verifier accepted (with rustls, a
    /// `WebPkiClientVerifier` built from the client CAs). `None` when the
    /// client presented none, or nobody asked for one. This is what SASL
    /// `EXTERNAL` authenticates (RFC 4422 Appendix A): the sessions offer
    /// it only when this is `Some`.
    pub client_identity: Option<Box<ClientIdentity>>,
    /// Client role: this side had a certificate to present if the server
    /// asked for one (with rustls: the configuration's client certificate
    /// resolver holds one). The client sessions refuse SASL `EXTERNAL`
    /// without it.
    pub own_certificate: bool,
}

impl TlsInfo {
    /// An empty description, for bring-your-own TLS callers that know nothing
    /// about what their stack negotiated.
    pub fn unknown() -> Self {
        TlsInfo {
            version: None,
            cipher_suite: None,
            alpn: None,
            sni: None,
            peer_certificates: Vec::new(),
            client_identity: None,
            own_certificate: false,
        }
    }

    /// Sets the version (builder style).
    pub fn with_version(mut self, version: TlsVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the cipher suite name (builder style).
    pub fn with_cipher_suite(mut self, name: impl Into<String>) -> Self {
        self.cipher_suite = Some(name.into());
        self
    }

    /// Sets the peer's certificate chain, end entity first (builder style):
    /// what the TLS memory ([`SessionTls::from_tls_info`]) fingerprints.
    ///
    /// [`SessionTls::from_tls_info`]: crate::policy::memory::SessionTls::from_tls_info
    pub fn with_peer_certificates(mut self, chain: Vec<CertificateDer<'static>>) -> Self {
        self.peer_certificates = chain;
        self
    }

    /// Server role, bring-your-own TLS: your stack verified the client's
    /// certificate, and this is who it names (builder style). Only then do
    /// the sessions offer SASL `EXTERNAL`.
    pub fn with_client_identity(mut self, identity: ClientIdentity) -> Self {
        self.client_identity = Some(Box::new(identity));
        self
    }

    /// Client role, bring-your-own TLS: your stack had a client certificate
    /// to present (builder style), so SASL `EXTERNAL` may be tried.
    pub fn with_own_certificate(mut self, own: bool) -> Self {
        self.own_certificate = own;
        self
    }

    /// What a session keeps while rustls runs in memory: the fields the
    /// protocols act on (version, the client identity, the own-certificate
    /// flag). The rest, the peer's chain above all, rustls holds already;
    /// `tls_info()` reads it from there (see `Engine::tls_info`).
    pub(crate) fn slim(&self) -> TlsInfo {
        TlsInfo {
            version: self.version,
            client_identity: self.client_identity.clone(),
            own_certificate: self.own_certificate,
            ..TlsInfo::unknown()
        }
    }
}

/// The identity a verified TLS client certificate names: what a server
/// application maps to an account when a client authenticates with SASL
/// `EXTERNAL` (RFC 4422 Appendix A).
///
/// It is only ever built from a certificate that the server's verifier
/// accepted (see [`TlsInfo::client_identity`]); the session does not judge
/// it, the application does.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIdentity {
    /// The subject distinguished name, attributes in certificate order
    /// (`CN=alice, O=Example`), as x509-parser writes it.
    pub subject: String,
    /// The subject's common names (`CN`).
    pub common_names: Vec<String>,
    /// subjectAltName `dNSName` entries.
    pub dns_names: Vec<String>,
    /// subjectAltName `rfc822Name` entries, then any `emailAddress`
    /// attributes of the subject not already listed.
    pub emails: Vec<String>,
    /// The end-entity certificate itself, DER.
    pub certificate: CertificateDer<'static>,
}

impl ClientIdentity {
    /// Reads the names in an end-entity certificate. `None` if it does not
    /// parse as X.509. It says nothing about trust: call it only for a
    /// certificate your TLS stack verified.
    pub fn from_certificate(certificate: CertificateDer<'static>) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        use x509_parser::prelude::{FromDer, X509Certificate};

        let (_, cert) = X509Certificate::from_der(certificate.as_ref()).ok()?;
        let subject = cert.subject().to_string();
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect();
        let mut dns_names = Vec::new();
        let mut emails: Vec<String> = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) => dns_names.push((*s).to_owned()),
                    GeneralName::RFC822Name(s) => emails.push((*s).to_owned()),
                    _ => {}
                }
            }
        }
        for e in cert.subject().iter_email() {
            if let Ok(e) = e.as_str() {
                if !emails.iter().any(|k| k == e) {
                    emails.push(e.to_owned());
                }
            }
        }
        Some(ClientIdentity {
            subject,
            common_names,
            dns_names,
            emails,
            certificate,
        })
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.subject)
            .field("common_names", &self.common_names)
            .field("dns_names", &self.dns_names)
            .field("emails", &self.emails)
            .finish_non_exhaustive()
    }
}

/// Which part of TLS failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The peer's certificate was rejected (expired, untrusted, wrong name).
    Certificate,
    /// The peer sent an alert.
    AlertReceived,
    /// The peer sent something that is not valid TLS (for example plaintext
    /// where a handshake record was due), or broke the protocol.
    PeerMisbehaved,
    /// The peers share no protocol version, cipher suite or other parameter.
    Incompatible,
    /// Anything else rustls reported.
    Other,
}

/// A TLS failure, with a readable description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError {
    /// The class of failure, to match on.
    pub kind: TlsErrorKind,
    /// What went wrong: rustls' description, or, when one of the policy
    /// verifiers refused the certificate, that verifier's own message (which
    /// names the rule that failed; see [`TlsError::from`]).
    /// Names and other peer strings in it are [escaped](crate::Escaped).
    pub detail: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TlsErrorKind::Certificate => "certificate rejected",
            TlsErrorKind::AlertReceived => "peer sent a TLS alert",
            TlsErrorKind::PeerMisbehaved => "peer sent invalid TLS data",
            TlsErrorKind::Incompatible => "no common TLS parameters",
            TlsErrorKind::Other => "TLS failure",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    /// Classifies a rustls error. A certificate refused by one of the policy
    /// verifiers ([`MailServerVerifier`], [`PinnedVerifier`],
    /// [`DaneVerifier`]) reaches rustls wrapped in
    /// `CertificateError::Other`, which rustls would display as a `Debug`
    /// dump; the detail is the verifier error's `Display` text instead
    /// ([`IdentityError`], [`PinError`], [`DaneError`]).
    ///
    /// ```
    /// use starttls::policy::identity::IdentityError;
    /// use starttls::{rustls, TlsError, TlsErrorKind};
    ///
    /// let e = TlsError::from(rustls::Error::from(IdentityError::NoReferenceIdentifiers));
    /// assert_eq!(e.kind, TlsErrorKind::Certificate);
    /// assert_eq!(e.detail, IdentityError::NoReferenceIdentifiers.to_string());
    /// ```
    ///
    /// [`MailServerVerifier`]: crate::policy::identity::MailServerVerifier
    /// [`PinnedVerifier`]: crate::policy::memory::PinnedVerifier
    /// [`DaneVerifier`]: crate::policy::dane::DaneVerifier
    /// [`IdentityError`]: crate::policy::identity::IdentityError
    /// [`PinError`]: crate::policy::memory::PinError
    /// [`DaneError`]: crate::policy::dane::DaneError
    fn from(e: rustls::Error) -> Self {
        use rustls::Error as E;
        let kind = match &e {
            E::InvalidCertificate(_) | E::NoCertificatesPresented | E::UnsupportedNameType => {
                TlsErrorKind::Certificate
            }
            E::AlertReceived(_) => TlsErrorKind::AlertReceived,
            E::InvalidMessage(_)
            | E::PeerMisbehaved(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::DecryptError => TlsErrorKind::PeerMisbehaved,
            E::PeerIncompatible(_) => TlsErrorKind::Incompatible,
            _ => TlsErrorKind::Other,
        };
        TlsError {
            kind,
            // rustls quotes the certificate's names as they are: escape them.
            // (The policy verifiers' texts escape peer strings already.)
            detail: policy_detail(&e)
                .unwrap_or_else(|| crate::Escaped::new(&e.to_string()).to_string()),
        }
    }
}

/// The readable text of a policy verifier's error wrapped in `e`, if it is
/// one.
fn policy_detail(e: &rustls::Error) -> Option<String> {
    use crate::policy::{dane::DaneError, identity::IdentityError, memory::PinError};
    use rustls::CertificateError as C;
    // rustls's texts for these name the verification time, so the same
    // failure would read differently from one second to the next: give the
    // certificate's own bound only, so that a session's events depend on its
    // input alone.
    match e {
        rustls::Error::InvalidCertificate(C::ExpiredContext { not_after, .. }) => {
            return Some(format!(
                "invalid peer certificate: certificate expired (not valid after {} UNIX time)",
                not_after.as_secs()
            ))
        }
        rustls::Error::InvalidCertificate(C::NotValidYetContext { not_before, .. }) => {
            return Some(format!(
                "invalid peer certificate: certificate not valid yet (not valid before {} UNIX time)",
                not_before.as_secs()
            ))
        }
        _ => {}
    }
    IdentityError::from_rustls(e)
        .map(ToString::to_string)
        .or_else(|| PinError::from_rustls(e).map(ToString::to_string))
        .or_else(|| DaneError::from_rustls(e).map(ToString::to_string))
}

/// An in-memory TLS connection as the engine sees it.
pub(crate) trait TlsLink: Send {
    /// Feeds ciphertext from the socket; appends decrypted plaintext to
    /// `plaintext`, making room with `reserve(plaintext, additional)` only
    /// when there is plaintext to append (a handshake flight allocates
    /// nothing).
    fn receive(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut BytesMut,
        reserve: &mut dyn FnMut(&mut BytesMut, usize),
    ) -> Result<(), TlsError>;
    /// Encrypts the start of `plaintext` for sending, as much as the
    /// connection's send window takes, and returns how many octets that was.
    /// `Ok(0)` means the window is full: [`drain`](TlsLink::drain) first.
    /// Never buffers more than the window, whatever `plaintext.len()` is.
    fn send(&mut self, plaintext: &[u8]) -> Result<usize, TlsError>;
    /// Moves pending ciphertext into `out`.
    fn drain(&mut self, out: &mut BytesMut);
    /// `true` until the handshake has completed.
    fn is_handshaking(&self) -> bool;
    /// What was negotiated.
    fn info(&self) -> TlsInfo;
    /// Queues a close_notify alert.
    fn close(&mut self);
    /// The rustls connection itself, for a hand-off (`None` for other links).
    fn into_rustls(self: Box<Self>) -> Option<rustls::Connection> {
        None
    }
}

/// The rustls implementation of [`TlsLink`], one type per role: a
/// `rustls::Connection` would be as large as the larger of the two
/// connections (the server's) on both sides.
pub(crate) struct RustlsLink<C> {
    conn: C,
    /// Client role: the configuration holds a client certificate.
    own_certificate: bool,
}

impl RustlsLink<rustls::ServerConnection> {
    pub(crate) fn server(config: &Arc<rustls::ServerConfig>) -> Result<Self, TlsError> {
        Ok(RustlsLink {
            conn: rustls::ServerConnection::new(Arc::clone(config))?,
            own_certificate: false,
        })
    }
}

impl RustlsLink<rustls::ClientConnection> {
    pub(crate) fn client(
        config: &Arc<rustls::ClientConfig>,
        name: &ServerName<'static>,
    ) -> Result<Self, TlsError> {
        Ok(RustlsLink {
            conn: rustls::ClientConnection::new(Arc::clone(config), name.clone())?,
            own_certificate: config.client_auth_cert_resolver.has_certs(),
        })
    }
}

/// What [`RustlsLink`] needs of a rustls connection beyond its common part.
pub(crate) trait RustlsRole:
    std::ops::DerefMut<Target = rustls::ConnectionCommon<Self::Data>>
    + Into<rustls::Connection>
    + Send
    + 'static
{
    /// The role's connection data.
    type Data;
    /// Server role: the SNI name the client sent.
    fn sni(&self) -> Option<String>;
    /// Server role: who the verified client certificate names.
    fn client_identity(&self) -> Option<Box<ClientIdentity>>;
}

impl RustlsRole for rustls::ServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn sni(&self) -> Option<String> {
        self.server_name().map(str::to_owned)
    }
    fn client_identity(&self) -> Option<Box<ClientIdentity>> {
        // rustls keeps a client's certificates only once the configuration's
        // client verifier accepted them.
        self.peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|ee| ClientIdentity::from_certificate(ee.clone()))
            .map(Box::new)
    }
}

impl RustlsRole for rustls::ClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn sni(&self) -> Option<String> {
        None
    }
    fn client_identity(&self) -> Option<Box<ClientIdentity>> {
        None
    }
}

impl<C: RustlsRole> TlsLink for RustlsLink<C> {
    fn receive(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut BytesMut,
        reserve: &mut dyn FnMut(&mut BytesMut, usize),
    ) -> Result<(), TlsError> {
        use std::io::Read;
        while !ciphertext.is_empty() {
            // read_tls refuses more input while its own buffers are full; we
            // empty them on every round, so each round makes progress.
            let n = self.conn.read_tls(&mut ciphertext).map_err(|e| TlsError {
                kind: TlsErrorKind::Other,
                detail: e.to_string(),
            })?;
            let state = self.conn.process_new_packets()?;
            let mut want = state.plaintext_bytes_to_read();
            while want > 0 {
                let start = plaintext.len();
                reserve(plaintext, want);
                plaintext.resize(start + want, 0);
                let got = self
                    .conn
                    .reader()
                    .read(&mut plaintext[start..])
                    .unwrap_or(0);
                plaintext.truncate(start + got);
                if got == 0 {
                    break;
                }
                want -= got.min(want);
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn send(&mut self, plaintext: &[u8]) -> Result<usize, TlsError> {
        use std::io::Write;
        // rustls encrypts at once (the handshake is over: the engine only
        // sends in `Tls`) and takes no more than its buffer limit, 64 KiB of
        // records by default; `write_all` would fail past it ("failed to
        // write whole buffer"), so the engine feeds it piece by piece.
        self.conn.writer().write(plaintext).map_err(|e| TlsError {
            kind: TlsErrorKind::Other,
            detail: e.to_string(),
        })
    }

    fn drain(&mut self, out: &mut BytesMut) {
        let mut w = VecWriter(out);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut w) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn info(&self) -> TlsInfo {
        let version = self.conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => TlsVersion::Tls12,
            rustls::ProtocolVersion::TLSv1_3 => TlsVersion::Tls13,
            other => TlsVersion::Other(u16::from(other)),
        });
        let cipher_suite = self.conn.negotiated_cipher_suite().map(|s| {
            let suite = s.suite();
            suite
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{suite:?}"))
        });
        TlsInfo {
            version,
            cipher_suite,
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            sni: self.conn.sni(),
            peer_certificates: self
                .conn
                .peer_certificates()
                .map(<[CertificateDer<'static>]>::to_vec)
                .unwrap_or_default(),
            client_identity: self.conn.client_identity(),
            own_certificate: self.own_certificate,
        }
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn into_rustls(self: Box<Self>) -> Option<rustls::Connection> {
        Some(self.conn.into())
    }
}

struct VecWriter<'a>(&'a mut BytesMut);

impl std::io::Write for VecWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    /// rustls hands over every pending record at once: one reservation for
    /// all of them, not one reallocation per record.
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        self.0.reserve(total);
        for b in bufs {
            self.0.extend_from_slice(b);
        }
        Ok(total)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::dane::DaneError;
    use crate::policy::identity::IdentityError;
    use crate::policy::memory::{Fingerprint, PinError};

    /// rustls quotes the certificate's names as they are; the detail shows
    /// them escaped, so a certificate cannot write to the user's terminal.
    #[test]
    fn certificate_names_in_rustls_texts_are_escaped() {
        let e = TlsError::from(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("mx.example").unwrap(),
                presented: vec!["evil\u{1b}[2J\u{202e}moc.example\r\n".into()],
            },
        ));
        assert_eq!(e.kind, TlsErrorKind::Certificate);
        let text = e.to_string();
        assert!(
            text.contains(r"evil\u{1b}[2J\u{202e}moc.example\r\n"),
            "{text}"
        );
        assert!(
            !text.contains(['\u{1b}', '\u{202e}', '\r', '\n']),
            "{text:?}"
        );
    }

    /// The same expired certificate gives the same text whatever the clock
    /// says, so a replayed session's events never depend on the time.
    #[test]
    fn validity_errors_do_not_depend_on_the_clock() {
        use rustls::pki_types::UnixTime;
        use std::time::Duration;
        let at = |now: u64| {
            TlsError::from(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredContext {
                    time: UnixTime::since_unix_epoch(Duration::from_secs(now)),
                    not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_000)),
                },
            ))
        };
        assert_eq!(at(2_000), at(3_000));
        assert_eq!(at(2_000).kind, TlsErrorKind::Certificate);
        assert!(at(2_000)
            .detail
            .starts_with("invalid peer certificate: certificate expired"));
        let early = |now: u64| {
            TlsError::from(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidYetContext {
                    time: UnixTime::since_unix_epoch(Duration::from_secs(now)),
                    not_before: UnixTime::since_unix_epoch(Duration::from_secs(9_000)),
                },
            ))
        };
        assert_eq!(early(2_000), early(3_000));
        assert!(early(2_000).detail.contains("not valid yet"));
    }

    #[test]
    fn policy_verifier_errors_keep_their_readable_text() {
        let cases: Vec<(rustls::Error, String)> = vec![
            (
                IdentityError::NoReferenceIdentifiers.into(),
                IdentityError::NoReferenceIdentifiers.to_string(),
            ),
            (
                PinError::Mismatch {
                    spki_sha256: None,
                    certificate_sha256: Fingerprint::from_bytes([1; 32]),
                }
                .into(),
                "the server's certificate is not the one pinned at account setup".into(),
            ),
            (
                DaneError::NoMatch {
                    ee_records: 1,
                    ta_records: 0,
                }
                .into(),
                "DANE: no TLSA record matches".into(),
            ),
        ];
        for (error, text) in cases {
            let debug = error.to_string();
            let tls = TlsError::from(error);
            assert_eq!(tls.kind, TlsErrorKind::Certificate);
            assert!(tls.detail.starts_with(&text), "{}", tls.detail);
            assert_ne!(tls.detail, debug, "not the rustls Debug dump");
            assert!(tls.to_string().starts_with("certificate rejected: "));
        }
    }

    #[test]
    fn other_errors_keep_rustls_text() {
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let text = e.to_string();
        assert_eq!(TlsError::from(e).detail, text);
    }
}
