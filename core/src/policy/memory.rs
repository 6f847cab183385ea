//! TLS memory (RFC 3207 §6) and certificate pinning at account setup only.
//!
//! # TLS memory
//!
//! A man in the middle can delete STARTTLS from the capability list. RFC 3207
//! §6 answers with configuration ("both clients and servers MUST be able to
//! be configured to require successful TLS negotiation … for selected
//! hosts") and with memory: "An implementation MAY provide the ability to
//! record that TLS was used in communicating with a given peer and
//! generating a warning if it is not used in a later session." This module
//! keeps that memory without doing any I/O or reading a clock:
//!
//! * the caller implements [`TlsMemory`] over its own storage (or uses
//!   [`InMemoryTlsMemory`]), keyed by [`PeerKey`] (host and port);
//! * after each session reaches the point where it either runs TLS or goes
//!   on in cleartext — and **before** any credentials or mail are sent — the
//!   caller describes it as a [`SessionTls`] (from the session's
//!   [`TlsInfo`](crate::TlsInfo) with [`SessionTls::from_tls_info`]) and
//!   calls [`check_session`] with the current time in seconds;
//! * before the next session, [`required_policy`] turns what the memory
//!   knows into the [`TlsPolicy`](crate::TlsPolicy) to configure: a peer
//!   that spoke TLS before gets `StartTlsRequired`, never a silent
//!   `Opportunistic`;
//! * the library compares with the [`TlsRecord`] on file ([`assess`]) and
//!   applies the [`MemoryPolicy`]: the session goes on ([`Verdict`]) or is
//!   refused with a [`DowngradeRefused`] a UI can show. A refused session
//!   never changes the record, so an attacker cannot overwrite the memory.
//!
//! What counts as a downgrade ([`Downgrade`]):
//!
//! * **cleartext** after TLS was seen — refused by default;
//! * **key changed** — the end-entity key (SPKI SHA-256) differs from the
//!   one on file. Certificates are renewed routinely, often with a new key
//!   (many ACME clients make a new key on every renewal). So by default a key
//!   change is *accepted* (and reported as [`Verdict::Accepted`] for logging)
//!   when this session's certificate was authenticated — PKIX-validated with
//!   the mail identity rules, or matched a setup-time pin — and *refused*
//!   when it was not (opportunistic TLS without validation, where the key is
//!   the only thing the memory can go by). [`MemoryPolicy::strict`] refuses
//!   both, [`MemoryPolicy::warn_only`] never refuses.
//!
//! # Pinning at setup only
//!
//! Some servers present a certificate the client cannot verify (self-signed,
//! private CA, wrong name). RFC 6125 §6.6.4 wants an interactive client to
//! tell the user and end the attempt, and allows pinning only as a careful,
//! explicit decision after the user has seen the certification path; once
//! pinned, the certificate satisfies the identity check (§6.6.2) in the
//! context it was accepted in (§7.1). Here that decision exists only while an
//! account is set up (where RFC 8314 §5.4 places certificate pinning), never
//! as a click-through during normal use:
//!
//! 1. During setup, wrap the normal verifier (e.g.
//!    [`MailServerVerifier`](super::identity::MailServerVerifier)) in a
//!    [`SetupVerifier`] and connect. If verification fails, the handshake
//!    still fails, and [`SetupVerifier::failure`] returns a [`SetupFailure`]:
//!    the whole chain, the reason, and the fingerprints to show the user.
//! 2. If the user decides to trust it, [`Pin::from_failed_setup`] makes a
//!    [`Pin`] (of the key's SPKI SHA-256, or of the whole certificate) bound
//!    to the server name connected to. The caller stores it with the account
//!    ([`Pin::kind`], [`Pin::digest`], [`Pin::server_name`], then
//!    [`Pin::restore`]).
//! 3. Normal sessions for that account use [`PinnedVerifier`]: it accepts a
//!    certificate whose key (or certificate) matches a pin for that server
//!    name and nothing else, and still checks the handshake signature, so
//!    only the holder of the pinned private key gets through. It has no
//!    callback or override.
//!
//! A pinned certificate is accepted without path validation, identity check
//! or validity dates — that is what the user decided. Pin the key
//! ([`PinKind::Spki`]) to survive a renewal that keeps the key; pin the
//! certificate ([`PinKind::Certificate`]) to accept exactly one certificate.
//! A server that later gets a certificate that would verify normally is still
//! refused by the [`PinnedVerifier`] until the account is set up again.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use starttls::policy::identity::{MailServerVerifier, ReferenceIdentifiers};
//! use starttls::policy::memory::*;
//! use starttls::rustls::{self, client::danger::ServerCertVerifier, pki_types::{CertificateDer, ServerName, UnixTime}};
//! use starttls::{TlsInfo, TlsPolicy};
//!
//! let provider = rustls::crypto::ring::default_provider();
//! // A server with a self-signed certificate (here made on the spot).
//! let key = rcgen::KeyPair::generate()?;
//! let cert = rcgen::CertificateParams::new(vec!["mail.example.com".to_string()])?.self_signed(&key)?;
//! let cert: CertificateDer<'static> = cert.der().clone();
//! let name = ServerName::try_from("mail.example.com")?;
//!
//! // Setup: normal verification, capturing the failure for the user.
//! let normal = MailServerVerifier::new(
//!     Arc::new(rustls::RootCertStore::empty()),
//!     ReferenceIdentifiers::configured_host("mail.example.com")?,
//!     &provider,
//! );
//! let setup = SetupVerifier::new(Arc::new(normal));
//! // (rustls calls this during the handshake; the handshake fails.)
//! assert!(setup.verify_server_cert(&cert, &[], &name, &[], UnixTime::now()).is_err());
//! let failure = setup.take_failure().ok_or("no failure captured")?;
//! // Show `failure` (reason, chain, fingerprints); only if the user says yes:
//! let pin = Pin::from_failed_setup(&failure, PinKind::Spki)?;
//! // ... store pin.kind(), pin.digest(), pin.server_name() with the account.
//!
//! // Every later session of that account: only the pinned key gets through.
//! let pinned = PinnedVerifier::new(Pin::restore(pin.kind(), pin.digest(), pin.server_name()), &provider);
//! assert!(pinned.verify_server_cert(&cert, &[], &name, &[], UnixTime::now()).is_ok());
//!
//! // After the handshake, before credentials: the TLS memory.
//! let mut memory = InMemoryTlsMemory::new();
//! let peer = PeerKey::new("mail.example.com", 143);
//! let policy = MemoryPolicy::default();
//! let mut info = TlsInfo::unknown(); // from UpgradeEvent::TlsEstablished(info)
//! info.peer_certificates = vec![cert];
//! let session = SessionTls::from_tls_info(&info, Authentication::Pinned)?;
//! assert_eq!(check_session(&mut memory, &peer, &session, &policy, 1_700_000_000)?, Verdict::FirstContact);
//!
//! // Next time the client must require TLS, and a cleartext session is refused.
//! assert_eq!(required_policy(&memory, &peer, TlsPolicy::Opportunistic, &policy)?, TlsPolicy::StartTlsRequired);
//! let refused = check_session(&mut memory, &peer, &SessionTls::Cleartext, &policy, 1_700_086_400);
//! assert!(matches!(refused, Err(MemoryError::Refused(_))));
//! # Ok(())
//! # }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use super::verifier::{self, verify_signatures_with_algorithms};

/// A SHA-256 digest of a certificate or of its SubjectPublicKeyInfo.
///
/// Displays as colon-separated upper-case hex (`AB:CD:…`), the usual
/// fingerprint notation; [`FromStr`] accepts that or plain hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wraps a digest, e.g. one read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The digest octets.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo of `cert` (the key fingerprint
    /// of RFC 7469 §2.4 and of DANE selector 1, RFC 6698 §2.1.2).
    pub fn spki_of(cert: &CertificateDer<'_>) -> Result<Self, FingerprintError> {
        let parsed = ParsedCertificate::try_from(cert).map_err(FingerprintError::Unparsable)?;
        Ok(Self::digest(parsed.subject_public_key_info().as_ref()))
    }

    /// SHA-256 of the whole DER certificate.
    pub fn certificate_of(cert: &CertificateDer<'_>) -> Self {
        Self::digest(cert.as_ref())
    }

    fn digest(data: &[u8]) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(Sha256::digest(data).as_slice());
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    /// Parses 64 hex digits, optionally separated by colons.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        let mut digits = s.chars().filter(|&c| c != ':');
        for byte in out.iter_mut() {
            let hi = digits.next().and_then(|c| c.to_digit(16));
            let lo = digits.next().and_then(|c| c.to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
                _ => return Err(FingerprintError::BadHex),
            }
        }
        if digits.next().is_some() {
            return Err(FingerprintError::BadHex);
        }
        Ok(Fingerprint(out))
    }
}

/// Why a fingerprint could not be made or read.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The session claims TLS but reports no peer certificate.
    NoCertificate,
    /// The certificate could not be parsed (RFC 5280 §4.1).
    Unparsable(rustls::Error),
    /// Not 64 hex digits (optionally colon-separated).
    BadHex,
}

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FingerprintError::NoCertificate => f.write_str("no peer certificate to fingerprint"),
            FingerprintError::Unparsable(e) => {
                write!(f, "certificate cannot be parsed (RFC 5280 §4.1): {e}")
            }
            FingerprintError::BadHex => {
                f.write_str("a SHA-256 fingerprint is 64 hex digits, optionally colon-separated")
            }
        }
    }
}

impl std::error::Error for FingerprintError {}

// ---------------------------------------------------------------------------
// TLS memory
// ---------------------------------------------------------------------------

/// Which server a memory record is about: host and port.
///
/// The host is compared ASCII case-insensitively, without a trailing dot;
/// an IP literal is kept in its canonical text form, brackets removed
/// (`[2001:DB8:0::1]` and `2001:db8::1` are one peer, shown
/// `[2001:db8::1]:25`). Use the host the user configured (or the MX host
/// for relaying), not an address it resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    host: String,
    port: u16,
}

impl PeerKey {
    /// The key for `host` (name, IP literal, or IPv6 literal in brackets)
    /// and `port`.
    ///
    /// ```
    /// # use starttls::policy::memory::PeerKey;
    /// let a = PeerKey::new("[2001:DB8:0::1]", 25);
    /// assert_eq!(a, PeerKey::new("2001:db8::1", 25));
    /// assert_eq!(a.host(), "2001:db8::1");
    /// assert_eq!(a.to_string(), "[2001:db8::1]:25");
    /// assert_eq!(PeerKey::new("MX.Example.NET.", 25).host(), "mx.example.net");
    /// ```
    pub fn new(host: &str, port: u16) -> Self {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = match bare.parse::<std::net::IpAddr>() {
            // `to_canonical`: an IPv4-mapped IPv6 literal is the IPv4 peer.
            Ok(ip) => ip.to_canonical().to_string(),
            Err(_) => host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase(),
        };
        PeerKey { host, port }
    }

    /// The normalized host (an IPv6 literal without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", crate::Escaped::new(&self.host), self.port)
        } else {
            write!(f, "{}:{}", crate::Escaped::new(&self.host), self.port)
        }
    }
}

/// What the memory holds about a peer that has negotiated TLS. Peers never
/// seen with TLS have no record.
///
/// Times are whatever seconds the caller passes to [`check_session`]
/// (typically Unix time); the library reads no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlsRecord {
    /// SPKI SHA-256 of the end-entity key last accepted from this peer.
    pub spki_sha256: Fingerprint,
    /// When TLS was first seen with this peer.
    pub first_seen: u64,
    /// When TLS was last seen with this peer.
    pub last_seen: u64,
    /// When the current key (`spki_sha256`) was first seen.
    pub key_first_seen: u64,
}

impl TlsRecord {
    /// The record for a first TLS session at `now`.
    pub fn new(spki_sha256: Fingerprint, now: u64) -> Self {
        TlsRecord {
            spki_sha256,
            first_seen: now,
            last_seen: now,
            key_first_seen: now,
        }
    }
}

impl TlsRecord {
    /// The [`TlsPolicy`](crate::TlsPolicy) a client must use for its next
    /// session with a peer that has this record, given the policy configured
    /// for it and the [`MemoryPolicy`]: the peer has negotiated TLS before,
    /// so when the memory refuses cleartext
    /// ([`MemoryPolicy::cleartext`] is [`Reaction::Refuse`], the default), a
    /// configured [`TlsPolicy::Opportunistic`](crate::TlsPolicy::Opportunistic)
    /// becomes [`TlsPolicy::StartTlsRequired`](crate::TlsPolicy::StartTlsRequired).
    /// The session then fails closed on a stripped or refused STARTTLS
    /// instead of going on in cleartext and being refused afterwards.
    /// [`Implicit`](crate::TlsPolicy::Implicit) and `StartTlsRequired` are
    /// kept: a policy is only ever raised, never lowered. With a policy that
    /// warns about or accepts cleartext, the configured policy is kept and
    /// [`check_session`] reports the downgrade. An explicit
    /// [`TlsPolicy::Cleartext`](crate::TlsPolicy::Cleartext) is the user's
    /// choice and is kept too; [`check_session`] then reports (by default,
    /// refuses) the cleartext session.
    pub fn required_policy(
        &self,
        configured: crate::TlsPolicy,
        policy: &MemoryPolicy,
    ) -> crate::TlsPolicy {
        use crate::TlsPolicy;
        match configured {
            TlsPolicy::Opportunistic if policy.cleartext == Reaction::Refuse => {
                TlsPolicy::StartTlsRequired
            }
            other => other,
        }
    }
}

/// The [`TlsPolicy`](crate::TlsPolicy) for the next session with `peer`:
/// `configured`, raised by the record on file if there is one (see
/// [`TlsRecord::required_policy`]). Call it before creating the client
/// session; after the session, call [`check_session`] as usual.
///
/// ```
/// use starttls::policy::memory::{self, InMemoryTlsMemory, MemoryPolicy, PeerKey, TlsMemory, TlsRecord, Fingerprint};
/// use starttls::TlsPolicy;
///
/// let mut memory = InMemoryTlsMemory::new();
/// let peer = PeerKey::new("mx.example.com", 25);
/// let policy = MemoryPolicy::default();
/// // Never seen with TLS: the configured policy stands.
/// assert_eq!(memory::required_policy(&memory, &peer, TlsPolicy::Opportunistic, &policy), Ok(TlsPolicy::Opportunistic));
/// // Once it has spoken TLS, it must do so again: never silently opportunistic.
/// memory.remember(&peer, TlsRecord::new(Fingerprint::from_bytes([7; 32]), 1_700_000_000)).unwrap();
/// assert_eq!(memory::required_policy(&memory, &peer, TlsPolicy::Opportunistic, &policy), Ok(TlsPolicy::StartTlsRequired));
/// assert_eq!(memory::required_policy(&memory, &peer, TlsPolicy::Implicit, &policy), Ok(TlsPolicy::Implicit));
/// ```
pub fn required_policy<M: TlsMemory + ?Sized>(
    memory: &M,
    peer: &PeerKey,
    configured: crate::TlsPolicy,
    policy: &MemoryPolicy,
) -> Result<crate::TlsPolicy, M::Error> {
    Ok(match memory.recall(peer)? {
        Some(record) => record.required_policy(configured, policy),
        None => configured,
    })
}

/// Storage for TLS memory, implemented by the caller (a file, a database,
/// the account settings). Errors are the caller's own; [`check_session`]
/// passes them through as [`MemoryError::Storage`] and does not decide for
/// you whether a storage failure should stop the session.
pub trait TlsMemory {
    /// The storage's error type.
    type Error: std::error::Error;

    /// The record for `peer`, if TLS was ever seen with it.
    fn recall(&self, peer: &PeerKey) -> Result<Option<TlsRecord>, Self::Error>;

    /// Stores `record` for `peer`, replacing any previous one.
    fn remember(&mut self, peer: &PeerKey, record: TlsRecord) -> Result<(), Self::Error>;

    /// Deletes what is known about `peer` (for example after the user
    /// confirmed that the server really stopped offering TLS).
    fn forget(&mut self, peer: &PeerKey) -> Result<(), Self::Error>;
}

/// A [`TlsMemory`] in a `HashMap`, for tests and for callers that persist it
/// themselves ([`records`](Self::records)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InMemoryTlsMemory {
    records: HashMap<PeerKey, TlsRecord>,
}

impl InMemoryTlsMemory {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// All records.
    pub fn records(&self) -> &HashMap<PeerKey, TlsRecord> {
        &self.records
    }
}

impl TlsMemory for InMemoryTlsMemory {
    type Error = Infallible;

    fn recall(&self, peer: &PeerKey) -> Result<Option<TlsRecord>, Infallible> {
        Ok(self.records.get(peer).copied())
    }

    fn remember(&mut self, peer: &PeerKey, record: TlsRecord) -> Result<(), Infallible> {
        self.records.insert(peer.clone(), record);
        Ok(())
    }

    fn forget(&mut self, peer: &PeerKey) -> Result<(), Infallible> {
        self.records.remove(peer);
        Ok(())
    }
}

/// How this session's server certificate was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Authentication {
    /// Certification path validation and the mail identity rules passed
    /// (RFC 5280 §6, RFC 7817 §3), e.g. with
    /// [`MailServerVerifier`](super::identity::MailServerVerifier).
    Pkix,
    /// The certificate matched a setup-time [`Pin`] ([`PinnedVerifier`]).
    Pinned,
    /// Not authenticated: opportunistic TLS that accepts any certificate.
    None,
}

impl Authentication {
    /// `true` for [`Pkix`](Self::Pkix) and [`Pinned`](Self::Pinned).
    pub fn is_authenticated(self) -> bool {
        !matches!(self, Authentication::None)
    }
}

/// What this session did, as the memory sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionTls {
    /// The session goes on without TLS.
    Cleartext,
    /// TLS was established with this end-entity key.
    Tls {
        /// SPKI SHA-256 of the server's end-entity certificate.
        spki_sha256: Fingerprint,
        /// How the certificate was checked.
        authentication: Authentication,
    },
}

impl SessionTls {
    /// A TLS session as the crate's sessions report it: the
    /// [`TlsInfo`](crate::TlsInfo) of the `UpgradeEvent::TlsEstablished`
    /// event (or the one you passed to `tls_established` with your own TLS
    /// stack), whose [`peer_certificates`](crate::TlsInfo::peer_certificates)
    /// hold the server's chain. `authentication` says how your verifier
    /// checked it. A session that went on without TLS is
    /// [`SessionTls::Cleartext`].
    ///
    /// Fails with [`FingerprintError::NoCertificate`] when the info carries
    /// no certificate (a bring-your-own-TLS caller that did not fill it in):
    /// the memory cannot tell keys apart without one.
    pub fn from_tls_info(
        info: &crate::TlsInfo,
        authentication: Authentication,
    ) -> Result<Self, FingerprintError> {
        Self::tls(&info.peer_certificates, authentication)
    }

    /// A TLS session from the peer's certificate chain, end entity first (as
    /// rustls' `peer_certificates()` and `TlsInfo::peer_certificates` give it).
    pub fn tls(
        peer_certificates: &[CertificateDer<'_>],
        authentication: Authentication,
    ) -> Result<Self, FingerprintError> {
        let end_entity = peer_certificates
            .first()
            .ok_or(FingerprintError::NoCertificate)?;
        Ok(SessionTls::Tls {
            spki_sha256: Fingerprint::spki_of(end_entity)?,
            authentication,
        })
    }
}

/// A session that falls short of what the memory knows about the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Downgrade {
    /// The peer negotiated TLS before and this session has none
    /// (RFC 3207 §6).
    Cleartext {
        /// When TLS was first seen with this peer.
        tls_first_seen: u64,
        /// When TLS was last seen with this peer.
        tls_last_seen: u64,
    },
    /// The end-entity key differs from the one on file.
    KeyChanged {
        /// The key on file.
        old: Fingerprint,
        /// This session's key.
        new: Fingerprint,
        /// When the old key was first seen.
        old_first_seen: u64,
        /// How this session's certificate was checked.
        authentication: Authentication,
    },
}

impl fmt::Display for Downgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Downgrade::Cleartext { tls_last_seen, .. } => write!(
                f,
                "the server did not use TLS, although it did before (last at {tls_last_seen}) (RFC 3207 §6)"
            ),
            Downgrade::KeyChanged {
                old,
                new,
                authentication,
                ..
            } => {
                write!(
                    f,
                    "the server's key changed from SHA-256 {old} to {new}"
                )?;
                match authentication {
                    Authentication::Pkix => f.write_str(" (the new certificate is valid)"),
                    Authentication::Pinned => f.write_str(" (the new certificate matches a pin)"),
                    Authentication::None => f.write_str(" (the new certificate was not verified)"),
                }
            }
        }
    }
}

/// What the memory finds when comparing a session with the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Assessment {
    /// Nothing on file for this peer.
    FirstContact,
    /// TLS with the key on file.
    Consistent,
    /// Less than what is on file.
    Downgrade(Downgrade),
}

/// Compares a session with the record on file. Pure; see [`check_session`]
/// for the whole step.
pub fn assess(record: Option<&TlsRecord>, session: &SessionTls) -> Assessment {
    match (record, session) {
        (None, _) => Assessment::FirstContact,
        (Some(r), SessionTls::Cleartext) => Assessment::Downgrade(Downgrade::Cleartext {
            tls_first_seen: r.first_seen,
            tls_last_seen: r.last_seen,
        }),
        (
            Some(r),
            SessionTls::Tls {
                spki_sha256,
                authentication,
            },
        ) => {
            if *spki_sha256 == r.spki_sha256 {
                Assessment::Consistent
            } else {
                Assessment::Downgrade(Downgrade::KeyChanged {
                    old: r.spki_sha256,
                    new: *spki_sha256,
                    old_first_seen: r.key_first_seen,
                    authentication: *authentication,
                })
            }
        }
    }
}

/// What to do about one kind of downgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reaction {
    /// Go on and update the memory; reported as [`Verdict::Accepted`] for
    /// logs.
    Accept,
    /// Go on and update the memory; reported as [`Verdict::Warning`] for the
    /// user.
    Warn,
    /// Stop: [`MemoryError::Refused`]. The memory is left unchanged.
    Refuse,
}

/// How the client reacts to each kind of [`Downgrade`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryPolicy {
    /// Cleartext after TLS was seen (RFC 3207 §6).
    pub cleartext: Reaction,
    /// A new key whose certificate was authenticated (PKIX or pin).
    pub key_change_authenticated: Reaction,
    /// A new key whose certificate was not authenticated.
    pub key_change_unauthenticated: Reaction,
}

impl MemoryPolicy {
    /// Refuses every downgrade, including routine key rotation of a valid
    /// certificate.
    pub fn strict() -> Self {
        MemoryPolicy {
            cleartext: Reaction::Refuse,
            key_change_authenticated: Reaction::Refuse,
            key_change_unauthenticated: Reaction::Refuse,
        }
    }

    /// Never refuses; warns about cleartext and unauthenticated key changes
    /// (RFC 3207 §6's "warn the user"), accepts authenticated key changes.
    pub fn warn_only() -> Self {
        MemoryPolicy {
            cleartext: Reaction::Warn,
            key_change_authenticated: Reaction::Accept,
            key_change_unauthenticated: Reaction::Warn,
        }
    }

    /// The reaction this policy has to `downgrade`.
    pub fn reaction(&self, downgrade: &Downgrade) -> Reaction {
        match downgrade {
            Downgrade::Cleartext { .. } => self.cleartext,
            Downgrade::KeyChanged { authentication, .. } if authentication.is_authenticated() => {
                self.key_change_authenticated
            }
            Downgrade::KeyChanged { .. } => self.key_change_unauthenticated,
        }
    }
}

impl Default for MemoryPolicy {
    /// Refuses cleartext after TLS and unauthenticated key changes; accepts
    /// (and reports) key changes of authenticated certificates.
    fn default() -> Self {
        MemoryPolicy {
            cleartext: Reaction::Refuse,
            key_change_authenticated: Reaction::Accept,
            key_change_unauthenticated: Reaction::Refuse,
        }
    }
}

/// The session may go on; this is what the memory found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Nothing was on file. A TLS session was remembered; a cleartext one
    /// leaves nothing to remember.
    FirstContact,
    /// TLS with the known key.
    Consistent,
    /// A downgrade the policy lets through but that the user should see.
    Warning(Downgrade),
    /// A downgrade the policy accepts silently (worth a log line).
    Accepted(Downgrade),
}

/// A session refused because it falls short of what the memory knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DowngradeRefused {
    /// The server.
    pub peer: PeerKey,
    /// What fell short.
    pub downgrade: Downgrade,
}

impl fmt::Display for DowngradeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection to {} refused by the TLS memory policy: {}",
            self.peer, self.downgrade
        )
    }
}

impl std::error::Error for DowngradeRefused {}

/// Why [`check_session`] stopped the session.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryError<E> {
    /// The policy refused a downgrade.
    Refused(DowngradeRefused),
    /// The caller's storage failed.
    Storage(E),
}

impl<E: fmt::Display> fmt::Display for MemoryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Refused(r) => write!(f, "{r}"),
            MemoryError::Storage(e) => write!(f, "TLS memory storage failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for MemoryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MemoryError::Refused(r) => Some(r),
            MemoryError::Storage(e) => Some(e),
        }
    }
}

/// The record to store after a session the policy let through, or `None` to
/// leave the memory as it is. A cleartext session never erases the memory of
/// TLS.
pub fn updated_record(
    record: Option<&TlsRecord>,
    session: &SessionTls,
    now: u64,
) -> Option<TlsRecord> {
    let SessionTls::Tls { spki_sha256, .. } = session else {
        return None;
    };
    Some(match record {
        None => TlsRecord::new(*spki_sha256, now),
        Some(r) if r.spki_sha256 == *spki_sha256 => TlsRecord {
            last_seen: r.last_seen.max(now),
            ..*r
        },
        Some(r) => TlsRecord {
            spki_sha256: *spki_sha256,
            first_seen: r.first_seen,
            last_seen: r.last_seen.max(now),
            key_first_seen: now,
        },
    })
}

/// The whole TLS-memory step for one session: recall the record for `peer`,
/// [`assess`] `session` against it, apply `policy`, and — unless refused —
/// store the [`updated_record`]. `now` is the caller's time in seconds.
///
/// Call it once per session, after TLS is established (or the session has
/// decided to go on in cleartext) and before credentials or mail are sent.
pub fn check_session<M: TlsMemory + ?Sized>(
    memory: &mut M,
    peer: &PeerKey,
    session: &SessionTls,
    policy: &MemoryPolicy,
    now: u64,
) -> Result<Verdict, MemoryError<M::Error>> {
    let record = memory.recall(peer).map_err(MemoryError::Storage)?;
    let verdict = match assess(record.as_ref(), session) {
        Assessment::FirstContact => Verdict::FirstContact,
        Assessment::Consistent => Verdict::Consistent,
        Assessment::Downgrade(d) => match policy.reaction(&d) {
            Reaction::Accept => Verdict::Accepted(d),
            Reaction::Warn => Verdict::Warning(d),
            Reaction::Refuse => {
                return Err(MemoryError::Refused(DowngradeRefused {
                    peer: peer.clone(),
                    downgrade: d,
                }))
            }
        },
    };
    if let Some(updated) = updated_record(record.as_ref(), session, now) {
        if record != Some(updated) {
            memory
                .remember(peer, updated)
                .map_err(MemoryError::Storage)?;
        }
    }
    Ok(verdict)
}

// ---------------------------------------------------------------------------
// Pinning at setup only
// ---------------------------------------------------------------------------

/// What a setup-time verification failure captured, for the user to decide
/// on: the chain the server presented, why it failed, and its fingerprints.
///
/// Note that the server has not yet proved it holds the key when the
/// certificate is checked; that does not matter, because [`PinnedVerifier`]
/// checks the handshake signature on every later connection.
#[derive(Clone, Debug)]
pub struct SetupFailure {
    chain: Vec<CertificateDer<'static>>,
    server_name: String,
    error: rustls::Error,
    spki_sha256: Option<Fingerprint>,
    certificate_sha256: Fingerprint,
}

impl SetupFailure {
    /// The chain the server presented, end entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The end-entity certificate.
    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }

    /// The name the client connected to (as given to rustls).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Why verification failed: rustls' error; for a name mismatch it wraps an
    /// [`IdentityError`](super::identity::IdentityError) (see
    /// [`identity_error`](Self::identity_error)).
    pub fn error(&self) -> &rustls::Error {
        &self.error
    }

    /// The mail identity error, if the failure was a name mismatch.
    pub fn identity_error(&self) -> Option<&super::identity::IdentityError> {
        super::identity::IdentityError::from_rustls(&self.error)
    }

    /// SPKI SHA-256 of the end-entity key, if the certificate could be parsed.
    pub fn spki_sha256(&self) -> Option<Fingerprint> {
        self.spki_sha256
    }

    /// SHA-256 of the end-entity certificate.
    pub fn certificate_sha256(&self) -> Fingerprint {
        self.certificate_sha256
    }
}

impl fmt::Display for SetupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the certificate of {} could not be verified: ",
            crate::Escaped::new(&self.server_name)
        )?;
        match self.identity_error() {
            Some(e) => write!(f, "{e}")?,
            None => write!(f, "{}", self.error)?,
        }
        write!(f, "; certificate SHA-256 {}", self.certificate_sha256)?;
        if let Some(spki) = &self.spki_sha256 {
            write!(f, ", key SHA-256 {spki}")?;
        }
        Ok(())
    }
}

/// A verifier for account setup: runs `inner` unchanged and, when it
/// refuses the certificate, keeps a [`SetupFailure`] before failing the
/// handshake as usual. It never accepts what `inner` refuses.
pub struct SetupVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    failure: Mutex<Option<SetupFailure>>,
}

impl SetupVerifier {
    /// Wraps the verifier normal sessions would use.
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        SetupVerifier {
            inner,
            failure: Mutex::new(None),
        }
    }

    /// The last failure captured, if any.
    pub fn failure(&self) -> Option<SetupFailure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the last failure captured, leaving none.
    pub fn take_failure(&self) -> Option<SetupFailure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl fmt::Debug for SetupVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SetupVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Err(error) = &result {
            let mut chain = Vec::with_capacity(intermediates.len() + 1);
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
            let captured = SetupFailure {
                chain,
                server_name: server_name.to_str().into_owned(),
                error: error.clone(),
                spki_sha256: Fingerprint::spki_of(end_entity).ok(),
                certificate_sha256: Fingerprint::certificate_of(end_entity),
            };
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(captured);
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// What a [`Pin`] is a digest of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// SHA-256 of the end-entity SubjectPublicKeyInfo: survives renewals that
    /// keep the key.
    Spki,
    /// SHA-256 of the whole end-entity certificate: exactly one certificate.
    Certificate,
}

/// A certificate or key the user chose to trust, at setup, for the server
/// name the account connects to.
///
/// The pin is bound to that name (the `ServerName` rustls connected with) as
/// part of the context it was accepted in (RFC 6125 §7.1); store it with the
/// rest of the account (service, port) so that it is only used there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pin {
    kind: PinKind,
    digest: Fingerprint,
    server_name: String,
}

/// Lower case, no trailing dot.
fn normalize_server_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Pin {
    /// The user's decision, at account setup, to trust the certificate that
    /// failed verification in `failure`, for the server name connected to.
    pub fn from_failed_setup(failure: &SetupFailure, kind: PinKind) -> Result<Pin, PinError> {
        let digest = match kind {
            PinKind::Spki => failure.spki_sha256.ok_or(PinError::NoKey)?,
            PinKind::Certificate => failure.certificate_sha256,
        };
        Ok(Pin {
            kind,
            digest,
            server_name: normalize_server_name(&failure.server_name),
        })
    }

    /// A pin read back from storage, as saved from [`kind`](Self::kind),
    /// [`digest`](Self::digest) and [`server_name`](Self::server_name).
    pub fn restore(kind: PinKind, digest: Fingerprint, server_name: &str) -> Pin {
        Pin {
            kind,
            digest,
            server_name: normalize_server_name(server_name),
        }
    }

    /// The server name the pin is for (lower case, no trailing dot).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// What the digest is of.
    pub fn kind(&self) -> PinKind {
        self.kind
    }

    /// The pinned digest.
    pub fn digest(&self) -> Fingerprint {
        self.digest
    }

    /// Whether `end_entity` matches this pin's digest (whatever the name).
    pub fn matches(&self, end_entity: &CertificateDer<'_>) -> bool {
        match self.kind {
            PinKind::Spki => Fingerprint::spki_of(end_entity).is_ok_and(|f| f == self.digest),
            PinKind::Certificate => Fingerprint::certificate_of(end_entity) == self.digest,
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PinKind::Spki => write!(f, "key SHA-256 {}", self.digest)?,
            PinKind::Certificate => write!(f, "certificate SHA-256 {}", self.digest)?,
        }
        write!(f, " for {}", crate::Escaped::new(&self.server_name))
    }
}

/// Why a pin could not be made, or why a pinned session was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The failed certificate's key could not be read, so only a
    /// [`PinKind::Certificate`] pin can be made.
    NoKey,
    /// The certificate matches a pin made for another server name: a pin
    /// holds only in the context it was accepted in (RFC 6125 §7.1).
    OtherServer {
        /// The name the pin was made for.
        pinned_for: String,
        /// The name this connection is for.
        connected_to: String,
    },
    /// The server presented a certificate that matches none of the account's
    /// pins. The user pinned a certificate at setup; anything else is refused
    /// until the account is set up again (RFC 6125 §6.6.2, §6.6.4).
    Mismatch {
        /// SPKI SHA-256 of the presented key, if it could be read.
        spki_sha256: Option<Fingerprint>,
        /// SHA-256 of the presented certificate.
        certificate_sha256: Fingerprint,
    },
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::NoKey => f.write_str(
                "the certificate's key cannot be read; only the whole certificate can be pinned",
            ),
            PinError::Mismatch {
                spki_sha256,
                certificate_sha256,
            } => {
                write!(
                    f,
                    "the server's certificate is not the one pinned at account setup (certificate SHA-256 {certificate_sha256}"
                )?;
                if let Some(spki) = spki_sha256 {
                    write!(f, ", key SHA-256 {spki}")?;
                }
                f.write_str(
                    "; RFC 6125 §6.6.2); set the account up again to trust a new certificate",
                )
            }
            PinError::OtherServer {
                pinned_for,
                connected_to,
            } => write!(
                f,
                "the certificate was pinned for {} but this connection is to {} (RFC 6125 §7.1)",
                crate::Escaped::new(&pinned_for),
                crate::Escaped::new(&connected_to)
            ),
        }
    }
}

impl std::error::Error for PinError {}

impl PinError {
    /// The pin error inside a rustls error produced by [`PinnedVerifier`], if
    /// that is what it is (rustls displays it with `Debug`).
    pub fn from_rustls(error: &rustls::Error) -> Option<&PinError> {
        verifier::from_rustls(error)
    }
}

impl From<PinError> for rustls::Error {
    /// A certificate error carrying the [`PinError`].
    fn from(e: PinError) -> Self {
        verifier::to_rustls(e)
    }
}

/// The verifier for normal sessions of an account with setup-time pins: it
/// accepts an end-entity certificate that matches one of the pins made for
/// the server name connected to (RFC 6125 §6.6.2, §7.1), refuses everything
/// else ([`PinError::Mismatch`], [`PinError::OtherServer`]), and verifies
/// handshake signatures against the presented (pinned) key.
#[derive(Debug, Clone)]
pub struct PinnedVerifier {
    pins: Vec<Pin>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    /// A verifier accepting `pin`, with the signature algorithms of
    /// `provider`.
    pub fn new(pin: Pin, provider: &CryptoProvider) -> Self {
        PinnedVerifier {
            pins: vec![pin],
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Also accepts `pin` (builder style), e.g. to carry an old and a new pin
    /// across a planned key rollover.
    pub fn also(mut self, pin: Pin) -> Self {
        if !self.pins.contains(&pin) {
            self.pins.push(pin);
        }
        self
    }

    /// The accepted pins.
    pub fn pins(&self) -> &[Pin] {
        &self.pins
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Parse first so that a certificate webpki cannot read (and so cannot
        // check signatures with) is refused here.
        ParsedCertificate::try_from(end_entity)?;
        let connected_to = normalize_server_name(&server_name.to_str());
        let mut matching = self
            .pins
            .iter()
            .filter(|p| p.matches(end_entity))
            .peekable();
        if let Some(first) = matching.peek() {
            let pinned_for = first.server_name.clone();
            if matching.any(|p| p.server_name == connected_to) {
                return Ok(ServerCertVerified::assertion());
            }
            return Err(PinError::OtherServer {
                pinned_for,
                connected_to,
            }
            .into());
        }
        Err(PinError::Mismatch {
            spki_sha256: Fingerprint::spki_of(end_entity).ok(),
            certificate_sha256: Fingerprint::certificate_of(end_entity),
        }
        .into())
    }

    verify_signatures_with_algorithms!();
}

#[cfg(test)]
mod tests {
    use super::super::identity::{IdentityError, MailServerVerifier, ReferenceIdentifiers};
    use super::super::test_support::{client_config, handshake, provider, Ca, Issued, Leaf};
    use super::*;
    use rustls::CertificateError;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::from_bytes([n; 32])
    }

    fn tls(n: u8, authentication: Authentication) -> SessionTls {
        SessionTls::Tls {
            spki_sha256: fp(n),
            authentication,
        }
    }

    #[test]
    fn fingerprint_text_round_trip() {
        let f = Fingerprint::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        let text = f.to_string();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert!(text.starts_with("00:07:0E:15"));
        assert_eq!(text.parse::<Fingerprint>(), Ok(f));
        assert_eq!(
            text.replace(':', "").to_lowercase().parse::<Fingerprint>(),
            Ok(f)
        );
        assert_eq!("00".parse::<Fingerprint>(), Err(FingerprintError::BadHex));
        assert_eq!(
            format!("{text}:00").parse::<Fingerprint>(),
            Err(FingerprintError::BadHex)
        );
        assert_eq!(
            "zz".repeat(32).parse::<Fingerprint>(),
            Err(FingerprintError::BadHex)
        );
        assert_eq!(
            "é".repeat(64).parse::<Fingerprint>(),
            Err(FingerprintError::BadHex)
        );
    }

    #[test]
    fn session_from_tls_info_fingerprints_the_end_entity_key() {
        let a = Issued::self_signed(&["mail.example.com"]);
        let info = crate::TlsInfo::unknown().with_peer_certificates(a.chain.clone());
        assert_eq!(
            SessionTls::from_tls_info(&info, Authentication::Pinned),
            Ok(SessionTls::Tls {
                spki_sha256: Fingerprint::spki_of(a.end_entity()).unwrap(),
                authentication: Authentication::Pinned,
            })
        );
        assert_eq!(
            SessionTls::from_tls_info(&crate::TlsInfo::unknown(), Authentication::Pkix),
            Err(FingerprintError::NoCertificate)
        );
    }

    #[test]
    fn a_remembered_peer_raises_the_next_policy_never_lowers_it() {
        use crate::TlsPolicy::{Implicit, Opportunistic, StartTlsRequired};
        let mut memory = InMemoryTlsMemory::new();
        let peer = PeerKey::new("mx.example.net", 25);
        let default = MemoryPolicy::default();
        for configured in [Implicit, StartTlsRequired, Opportunistic] {
            assert_eq!(
                required_policy(&memory, &peer, configured, &default),
                Ok(configured),
                "nothing on file"
            );
        }
        check_session(
            &mut memory,
            &peer,
            &tls(1, Authentication::None),
            &default,
            10,
        )
        .unwrap();
        assert_eq!(
            required_policy(&memory, &peer, Opportunistic, &default),
            Ok(StartTlsRequired)
        );
        assert_eq!(
            required_policy(&memory, &peer, Implicit, &default),
            Ok(Implicit)
        );
        assert_eq!(
            required_policy(&memory, &peer, StartTlsRequired, &MemoryPolicy::strict()),
            Ok(StartTlsRequired)
        );
        // A policy that only warns about cleartext keeps the configured one:
        // the session goes on and check_session reports the downgrade.
        assert_eq!(
            required_policy(&memory, &peer, Opportunistic, &MemoryPolicy::warn_only()),
            Ok(Opportunistic)
        );
        // Another port of the same host is another peer.
        assert_eq!(
            required_policy(
                &memory,
                &PeerKey::new("mx.example.net", 587),
                Opportunistic,
                &default
            ),
            Ok(Opportunistic)
        );
    }

    #[test]
    fn spki_fingerprint_follows_the_key_not_the_certificate() {
        let a = Issued::self_signed(&["mail.example.com"]);
        let ca = Ca::new("Test CA");
        let b = ca.issue(&Leaf {
            dns: vec!["other.example.com"],
            key: Some(a.key.clone()),
            ..Leaf::default()
        });
        assert_eq!(
            Fingerprint::spki_of(a.end_entity()).unwrap(),
            Fingerprint::spki_of(b.end_entity()).unwrap()
        );
        assert_ne!(
            Fingerprint::certificate_of(a.end_entity()),
            Fingerprint::certificate_of(b.end_entity())
        );
        assert_eq!(
            SessionTls::tls(&[], Authentication::Pkix),
            Err(FingerprintError::NoCertificate)
        );
        assert!(matches!(
            SessionTls::tls(&[CertificateDer::from(vec![1, 2, 3])], Authentication::Pkix),
            Err(FingerprintError::Unparsable(_))
        ));
    }

    #[test]
    fn peer_keys_are_normalized() {
        assert_eq!(
            PeerKey::new("Mail.Example.COM.", 993),
            PeerKey::new("mail.example.com", 993)
        );
        assert_ne!(
            PeerKey::new("mail.example.com", 993),
            PeerKey::new("mail.example.com", 143)
        );
        assert_eq!(
            PeerKey::new("2001:db8::1", 25).to_string(),
            "[2001:db8::1]:25"
        );
        // One peer, however its IP literal is written: with brackets (as in
        // a URL) or without, in any case, with or without zero compression,
        // IPv4-mapped or not. Before, these were distinct records and the
        // bracketed one displayed as `[[2001:db8::1]]:25`.
        let v6 = PeerKey::new("2001:db8::1", 25);
        for same in ["[2001:db8::1]", "2001:DB8:0:0::1", "[2001:0db8::0001]"] {
            let key = PeerKey::new(same, 25);
            assert_eq!(key, v6, "{same}");
            assert_eq!(key.to_string(), "[2001:db8::1]:25", "{same}");
        }
        assert_eq!(
            PeerKey::new("[::ffff:192.0.2.1]", 25),
            PeerKey::new("192.0.2.1", 25)
        );
        assert_eq!(PeerKey::new("192.0.2.1", 25).to_string(), "192.0.2.1:25");
        let mut store = InMemoryTlsMemory::new();
        let record = TlsRecord::new(Fingerprint::from_bytes([7; 32]), 1);
        store
            .remember(&PeerKey::new("[2001:db8::1]", 25), record)
            .unwrap();
        assert_eq!(store.recall(&v6).unwrap(), Some(record));
        assert_eq!(store.records().len(), 1);
    }

    #[test]
    fn assessment() {
        let r = TlsRecord::new(fp(1), 100);
        assert_eq!(
            assess(None, &SessionTls::Cleartext),
            Assessment::FirstContact
        );
        assert_eq!(
            assess(None, &tls(1, Authentication::None)),
            Assessment::FirstContact
        );
        assert_eq!(
            assess(Some(&r), &tls(1, Authentication::None)),
            Assessment::Consistent
        );
        assert_eq!(
            assess(Some(&r), &SessionTls::Cleartext),
            Assessment::Downgrade(Downgrade::Cleartext {
                tls_first_seen: 100,
                tls_last_seen: 100
            })
        );
        assert_eq!(
            assess(Some(&r), &tls(2, Authentication::Pkix)),
            Assessment::Downgrade(Downgrade::KeyChanged {
                old: fp(1),
                new: fp(2),
                old_first_seen: 100,
                authentication: Authentication::Pkix
            })
        );
    }

    #[test]
    fn first_contact_consistent_and_cleartext_refused() {
        let mut memory = InMemoryTlsMemory::new();
        let peer = PeerKey::new("mail.example.com", 587);
        let policy = MemoryPolicy::default();

        // Cleartext first: nothing to remember.
        assert_eq!(
            check_session(&mut memory, &peer, &SessionTls::Cleartext, &policy, 10).unwrap(),
            Verdict::FirstContact
        );
        assert!(memory.records().is_empty());

        assert_eq!(
            check_session(
                &mut memory,
                &peer,
                &tls(1, Authentication::Pkix),
                &policy,
                100
            )
            .unwrap(),
            Verdict::FirstContact
        );
        assert_eq!(
            check_session(
                &mut memory,
                &peer,
                &tls(1, Authentication::Pkix),
                &policy,
                200
            )
            .unwrap(),
            Verdict::Consistent
        );
        assert_eq!(
            memory.recall(&peer).unwrap(),
            Some(TlsRecord {
                spki_sha256: fp(1),
                first_seen: 100,
                last_seen: 200,
                key_first_seen: 100
            })
        );

        let before = memory.clone();
        let err =
            check_session(&mut memory, &peer, &SessionTls::Cleartext, &policy, 300).unwrap_err();
        let MemoryError::Refused(refused) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(refused.peer, peer);
        assert!(matches!(
            refused.downgrade,
            Downgrade::Cleartext {
                tls_last_seen: 200,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.contains("mail.example.com:587") && text.contains("RFC 3207 §6"),
            "{text}"
        );
        assert_eq!(memory, before, "a refusal changes nothing");
    }

    #[test]
    fn cleartext_warning_keeps_the_memory() {
        let mut memory = InMemoryTlsMemory::new();
        let peer = PeerKey::new("mx.example.net", 25);
        let policy = MemoryPolicy::warn_only();
        check_session(
            &mut memory,
            &peer,
            &tls(1, Authentication::None),
            &policy,
            1,
        )
        .unwrap();
        for now in [2, 3] {
            assert!(matches!(
                check_session(&mut memory, &peer, &SessionTls::Cleartext, &policy, now).unwrap(),
                Verdict::Warning(Downgrade::Cleartext { .. })
            ));
        }
        assert_eq!(
            memory.recall(&peer).unwrap(),
            Some(TlsRecord::new(fp(1), 1))
        );
        memory.forget(&peer).unwrap();
        assert_eq!(memory.recall(&peer).unwrap(), None);
    }

    #[test]
    fn key_change_by_authentication() {
        let peer = PeerKey::new("imap.example.com", 993);
        let mut memory = InMemoryTlsMemory::new();
        let policy = MemoryPolicy::default();
        check_session(
            &mut memory,
            &peer,
            &tls(1, Authentication::None),
            &policy,
            10,
        )
        .unwrap();

        // Unauthenticated new key: refused, memory unchanged.
        let err = check_session(
            &mut memory,
            &peer,
            &tls(2, Authentication::None),
            &policy,
            20,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            MemoryError::Refused(DowngradeRefused {
                downgrade: Downgrade::KeyChanged {
                    authentication: Authentication::None,
                    ..
                },
                ..
            })
        ));
        assert!(err.to_string().contains("not verified"));
        assert_eq!(memory.recall(&peer).unwrap().unwrap().spki_sha256, fp(1));

        // A valid certificate with a new key: accepted and remembered.
        let v = check_session(
            &mut memory,
            &peer,
            &tls(2, Authentication::Pkix),
            &policy,
            30,
        )
        .unwrap();
        assert_eq!(
            v,
            Verdict::Accepted(Downgrade::KeyChanged {
                old: fp(1),
                new: fp(2),
                old_first_seen: 10,
                authentication: Authentication::Pkix
            })
        );
        assert_eq!(
            memory.recall(&peer).unwrap(),
            Some(TlsRecord {
                spki_sha256: fp(2),
                first_seen: 10,
                last_seen: 30,
                key_first_seen: 30
            })
        );

        // Strict refuses even that.
        let err = check_session(
            &mut memory,
            &peer,
            &tls(3, Authentication::Pinned),
            &MemoryPolicy::strict(),
            40,
        )
        .unwrap_err();
        assert!(matches!(err, MemoryError::Refused(_)));

        // A custom policy that warns.
        let warn = MemoryPolicy {
            key_change_authenticated: Reaction::Warn,
            ..MemoryPolicy::default()
        };
        assert!(matches!(
            check_session(
                &mut memory,
                &peer,
                &tls(3, Authentication::Pinned),
                &warn,
                50
            )
            .unwrap(),
            Verdict::Warning(Downgrade::KeyChanged { .. })
        ));
    }

    #[test]
    fn storage_errors_are_passed_through() {
        #[derive(Debug)]
        struct Broken;
        impl fmt::Display for Broken {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("disk on fire")
            }
        }
        impl std::error::Error for Broken {}
        struct BrokenMemory;
        impl TlsMemory for BrokenMemory {
            type Error = Broken;
            fn recall(&self, _: &PeerKey) -> Result<Option<TlsRecord>, Broken> {
                Err(Broken)
            }
            fn remember(&mut self, _: &PeerKey, _: TlsRecord) -> Result<(), Broken> {
                Err(Broken)
            }
            fn forget(&mut self, _: &PeerKey) -> Result<(), Broken> {
                Err(Broken)
            }
        }
        let err = check_session(
            &mut BrokenMemory,
            &PeerKey::new("a.example", 25),
            &SessionTls::Cleartext,
            &MemoryPolicy::default(),
            0,
        )
        .unwrap_err();
        assert!(matches!(err, MemoryError::Storage(Broken)));
        assert_eq!(err.to_string(), "TLS memory storage failed: disk on fire");
    }

    #[test]
    fn memory_from_a_real_handshake() {
        let ca = Ca::new("Test CA");
        let server = ca.issue(&Leaf::dns(&["mail.example.com"]));
        let refs = ReferenceIdentifiers::configured_host("mail.example.com").unwrap();
        let client = client_config(Arc::new(MailServerVerifier::new(
            ca.roots(),
            refs,
            &provider(),
        )));
        let conn = handshake(
            client,
            server.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap();
        let session =
            SessionTls::tls(conn.peer_certificates().unwrap(), Authentication::Pkix).unwrap();
        assert_eq!(session, tls_of(server.end_entity(), Authentication::Pkix),);
        let mut memory = InMemoryTlsMemory::new();
        let peer = PeerKey::new("mail.example.com", 465);
        let policy = MemoryPolicy::default();
        assert_eq!(
            check_session(&mut memory, &peer, &session, &policy, 1).unwrap(),
            Verdict::FirstContact
        );
        assert_eq!(
            check_session(&mut memory, &peer, &session, &policy, 2).unwrap(),
            Verdict::Consistent
        );
    }

    fn tls_of(cert: &CertificateDer<'_>, authentication: Authentication) -> SessionTls {
        SessionTls::Tls {
            spki_sha256: Fingerprint::spki_of(cert).unwrap(),
            authentication,
        }
    }

    // --- pinning ---

    fn normal_verifier(ca: &Ca, host: &str) -> Arc<dyn ServerCertVerifier> {
        let refs = ReferenceIdentifiers::configured_host(host).unwrap();
        Arc::new(MailServerVerifier::new(ca.roots(), refs, &provider()))
    }

    /// Runs the setup handshake and returns the captured failure.
    fn failed_setup(ca: &Ca, server: &Issued, host: &str) -> SetupFailure {
        let setup = Arc::new(SetupVerifier::new(normal_verifier(ca, host)));
        let err = handshake(
            client_config(setup.clone()),
            server.server_config(rustls::ALL_VERSIONS),
            host,
        )
        .unwrap_err();
        let failure = setup.failure().expect("captured");
        // OtherError never compares equal: compare the text.
        assert_eq!(failure.error().to_string(), err.to_string());
        failure
    }

    #[test]
    fn setup_captures_the_failure_and_still_fails() {
        let ca = Ca::new("Test CA");
        let selfsigned = Issued::self_signed(&["mail.example.com"]);
        let failure = failed_setup(&ca, &selfsigned, "mail.example.com");
        assert_eq!(
            failure.error(),
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert_eq!(failure.chain(), &selfsigned.chain[..]);
        assert_eq!(failure.server_name(), "mail.example.com");
        assert_eq!(
            failure.certificate_sha256(),
            Fingerprint::certificate_of(selfsigned.end_entity())
        );
        assert_eq!(
            failure.spki_sha256(),
            Fingerprint::spki_of(selfsigned.end_entity()).ok()
        );
        assert!(failure.identity_error().is_none());
        let text = failure.to_string();
        assert!(
            text.contains("mail.example.com") && text.contains("key SHA-256"),
            "{text}"
        );

        // A name mismatch from a trusted CA is captured with its rule.
        let wrong = ca.issue(&Leaf::dns(&["other.example.com"]));
        let failure = failed_setup(&ca, &wrong, "mail.example.com");
        assert!(matches!(
            failure.identity_error(),
            Some(IdentityError::Mismatch { .. })
        ));
        assert!(failure.to_string().contains("RFC 7817 §3"));

        // A certificate that verifies leaves nothing to pin.
        let good = ca.issue(&Leaf::dns(&["mail.example.com"]));
        let setup = Arc::new(SetupVerifier::new(normal_verifier(&ca, "mail.example.com")));
        handshake(
            client_config(setup.clone()),
            good.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap();
        assert!(setup.take_failure().is_none());
    }

    #[test]
    fn pin_from_setup_lets_later_sessions_through_tls13_and_tls12() {
        let ca = Ca::new("Test CA");
        let server = Issued::self_signed(&["mail.example.com"]);
        let failure = failed_setup(&ca, &server, "mail.example.com");
        for kind in [PinKind::Spki, PinKind::Certificate] {
            let pin = Pin::from_failed_setup(&failure, kind).unwrap();
            let restored = Pin::restore(
                pin.kind(),
                pin.digest().to_string().parse().unwrap(),
                "Mail.Example.com.",
            );
            assert_eq!(restored, pin);
            assert_eq!(pin.server_name(), "mail.example.com");
            assert!(pin.to_string().ends_with(" for mail.example.com"));
            let verifier = Arc::new(PinnedVerifier::new(restored, &provider()));
            for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
                let conn = handshake(
                    client_config(verifier.clone()),
                    server.server_config(&[version]),
                    "mail.example.com",
                )
                .unwrap();
                let session =
                    SessionTls::tls(conn.peer_certificates().unwrap(), Authentication::Pinned)
                        .unwrap();
                assert_eq!(session, tls_of(server.end_entity(), Authentication::Pinned));
            }
            // The pin holds for the name it was made for, not another one
            // (RFC 6125 §7.1), even though the certificate never named it.
            let err = handshake(
                client_config(verifier),
                server.server_config(rustls::ALL_VERSIONS),
                "other.example.org",
            )
            .unwrap_err();
            let pin_err = PinError::from_rustls(&err).unwrap();
            assert_eq!(
                pin_err,
                &PinError::OtherServer {
                    pinned_for: "mail.example.com".into(),
                    connected_to: "other.example.org".into()
                }
            );
            assert!(pin_err.to_string().contains("RFC 6125 §7.1"));
        }
    }

    #[test]
    fn pinned_verifier_refuses_other_keys() {
        let ca = Ca::new("Test CA");
        let server = Issued::self_signed(&["mail.example.com"]);
        let failure = failed_setup(&ca, &server, "mail.example.com");
        let spki_pin = Pin::from_failed_setup(&failure, PinKind::Spki).unwrap();
        let cert_pin = Pin::from_failed_setup(&failure, PinKind::Certificate).unwrap();

        // Another key, even with a certificate from a trusted CA: refused.
        let other = ca.issue(&Leaf::dns(&["mail.example.com"]));
        for pin in [spki_pin.clone(), cert_pin.clone()] {
            let v = Arc::new(PinnedVerifier::new(pin, &provider()));
            let err = handshake(
                client_config(v),
                other.server_config(rustls::ALL_VERSIONS),
                "mail.example.com",
            )
            .unwrap_err();
            let pin_err = PinError::from_rustls(&err).unwrap();
            assert!(matches!(pin_err, PinError::Mismatch { .. }));
            assert!(pin_err.to_string().contains("pinned at account setup"));
        }

        // Same key, new certificate: the key pin accepts, the certificate pin
        // does not.
        let reissued = ca.issue(&Leaf {
            dns: vec!["mail.example.com"],
            key: Some(server.key.clone()),
            ..Leaf::default()
        });
        let v = Arc::new(PinnedVerifier::new(spki_pin.clone(), &provider()));
        handshake(
            client_config(v),
            reissued.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap();
        let v = Arc::new(PinnedVerifier::new(cert_pin, &provider()));
        assert!(handshake(
            client_config(v),
            reissued.server_config(rustls::ALL_VERSIONS),
            "mail.example.com"
        )
        .is_err());

        // Several pins: any matches.
        let other_pin = Pin::restore(
            PinKind::Spki,
            Fingerprint::spki_of(other.end_entity()).unwrap(),
            "mail.example.com",
        );
        let v = Arc::new(
            PinnedVerifier::new(spki_pin, &provider())
                .also(other_pin.clone())
                .also(other_pin),
        );
        assert_eq!(v.pins().len(), 2);
        handshake(
            client_config(v),
            other.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap();
    }

    #[test]
    fn pinned_verifier_checks_the_handshake_signature() {
        // A server that presents the pinned certificate but signs with another
        // key (it does not hold the pinned private key) is refused.
        let ca = Ca::new("Test CA");
        let pinned = Issued::self_signed(&["mail.example.com"]);
        let failure = failed_setup(&ca, &pinned, "mail.example.com");
        let pin = Pin::from_failed_setup(&failure, PinKind::Spki).unwrap();
        let impostor = Issued {
            chain: pinned.chain.clone(),
            key: Issued::self_signed(&["x.example"]).key,
        };
        let server = impostor_server_config(&impostor);
        let v = Arc::new(PinnedVerifier::new(pin, &provider()));
        let err = handshake(client_config(v), server, "mail.example.com").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::BadSignature)
            ),
            "{err:?}"
        );
    }

    /// A server config whose certificate and key do not belong together
    /// (rustls' `with_single_cert` would refuse it).
    fn impostor_server_config(issued: &Issued) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use rustls::server::ResolvesServerCert;
        use rustls::sign::CertifiedKey;

        #[derive(Debug)]
        struct Fixed(Arc<CertifiedKey>);
        impl ResolvesServerCert for Fixed {
            fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let key = rcgen::KeyPair::from_pem(&issued.key).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = provider();
        let signing = provider.key_provider.load_private_key(key).unwrap();
        let certified = CertifiedKey::new(issued.chain.clone(), signing);
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Fixed(Arc::new(certified)))),
        )
    }

    #[test]
    fn the_normal_verifier_never_accepts_an_unpinned_invalid_certificate() {
        let ca = Ca::new("Test CA");
        let server = Issued::self_signed(&["mail.example.com"]);
        // Even after a pin was made for it, the normal verifier (no pin)
        // refuses, and has no way to be told otherwise.
        let failure = failed_setup(&ca, &server, "mail.example.com");
        let _pin = Pin::from_failed_setup(&failure, PinKind::Spki).unwrap();
        for _ in 0..2 {
            let err = handshake(
                client_config(normal_verifier(&ca, "mail.example.com")),
                server.server_config(rustls::ALL_VERSIONS),
                "mail.example.com",
            )
            .unwrap_err();
            assert_eq!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            );
        }
        // Nor does a setup verifier: capturing is not accepting.
        let setup = Arc::new(SetupVerifier::new(normal_verifier(&ca, "mail.example.com")));
        for _ in 0..2 {
            assert!(handshake(
                client_config(setup.clone()),
                server.server_config(rustls::ALL_VERSIONS),
                "mail.example.com"
            )
            .is_err());
        }
    }

    #[test]
    fn pin_needs_a_readable_key() {
        let failure = SetupFailure {
            chain: vec![CertificateDer::from(vec![1, 2, 3])],
            server_name: "x.example".into(),
            error: rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
            spki_sha256: None,
            certificate_sha256: Fingerprint::certificate_of(&CertificateDer::from(vec![1, 2, 3])),
        };
        assert_eq!(
            Pin::from_failed_setup(&failure, PinKind::Spki),
            Err(PinError::NoKey)
        );
        let pin = Pin::from_failed_setup(&failure, PinKind::Certificate).unwrap();
        assert!(pin.to_string().starts_with("certificate SHA-256 "));
        // An unparsable certificate never passes the pinned verifier.
        let v = PinnedVerifier::new(pin, &provider());
        assert!(v
            .verify_server_cert(
                &CertificateDer::from(vec![1, 2, 3]),
                &[],
                &ServerName::try_from("x.example").unwrap(),
                &[],
                UnixTime::now()
            )
            .is_err());
    }
}
