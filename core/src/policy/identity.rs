//! Server identity for mail: which names a mail server's certificate must
//! carry, and a rustls verifier that checks them (RFC 7817 §3, applying
//! RFC 6125 §6).
//!
//! rustls' own verifier checks the certificate against the one name it was
//! asked to connect to, with the Web PKI's rules. Mail clients need more:
//! RFC 7817 lets them look for the *domain of the user's address* as well as
//! the host, for an SRV-ID (`_imap.example.com`, RFC 4985) when the server was
//! found by DNS SRV discovery (RFC 6186), and for a CN-ID in old certificates
//! that carry no subjectAltName. This module supplies those rules:
//!
//! * [`ReferenceIdentifiers`] — what the client expects, built only from what
//!   the user configured or what was learned securely
//!   ([`ReferenceIdentifiers::configured_host`],
//!   [`ReferenceIdentifiers::discovered`]).
//! * [`ReferenceIdentifiers::verify`] — matches them against the identifiers
//!   the end-entity certificate presents and reports either the pair that
//!   matched ([`IdentityMatch`]) or every presented identifier with the rule
//!   that refused it ([`IdentityError`]).
//! * [`MailServerVerifier`] — a rustls [`ServerCertVerifier`] that first
//!   validates the certificate path with rustls' webpki
//!   ([`verify_server_cert_signed_by_trust_anchor`], RFC 5280 §6), and only
//!   then applies these name rules (RFC 7817 §3: "This check is only performed
//!   after the server certificate passes certification path validation").
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use starttls::policy::identity::{IdentityError, MailService, ReferenceIdentifiers, Rule, TargetProvenance};
//!
//! // A certificate for `*.example.com` (made here with rcgen; normally the
//! // end entity rustls hands the verifier).
//! let key = rcgen::KeyPair::generate()?;
//! let cert = rcgen::CertificateParams::new(vec!["*.example.com".to_string()])?.self_signed(&key)?;
//! let cert = cert.der();
//!
//! // The user configured `imap.example.com`: the wildcard covers one label.
//! let refs = ReferenceIdentifiers::configured_host("imap.example.com")?;
//! assert!(refs.verify(cert).is_ok());
//!
//! // Found by RFC 6186 SRV discovery without DNSSEC: the SRV target
//! // (`imap.example.com`) is no reference identifier, the user's domain
//! // `example.com` is, and `*.example.com` does not cover it.
//! let refs = ReferenceIdentifiers::discovered(MailService::Imap, "example.com", "imap.example.com", TargetProvenance::Unverified)?;
//! match refs.verify(cert) {
//!     Err(IdentityError::Mismatch { rejected, .. }) => assert_eq!(rejected[0].rule, Rule::WildcardOneLabel),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The rules
//!
//! | rule | source |
//! |---|---|
//! | DNS-ID (subjectAltName dNSName) is always supported | RFC 7817 §3 rule 1 |
//! | SRV-ID (subjectAltName otherName SRVName, OID 1.3.6.1.5.5.7.8.7) for `_submission`, `_submissions`, `_imap`, `_imaps`, `_pop3`, `_pop3s` | RFC 7817 §3 rule 2, RFC 4985 §2, RFC 6186 §3, RFC 8314 §5.1 |
//! | URI-ID is never used | RFC 7817 §3 rule 3 |
//! | CN-ID only if the certificate presents no DNS-ID, SRV-ID or URI-ID, and only when the caller opted in ([`ReferenceIdentifiers::allow_cn_id`]) | RFC 6125 §6.4.4, RFC 7817 §3 rule 4 ("MAY") |
//! | reference identifiers: the host the user configured, the domain of the user's address, a target learned by DNSSEC-validated lookup; never a name from insecure DNS | RFC 7817 §3, RFC 6125 §6.2.1, RFC 6186 §6 |
//! | with RFC 6186 discovery, the address's domain is also the SRV-ID reference | RFC 7817 §3 |
//! | comparison is ASCII case-insensitive, a trailing dot is ignored, internationalized names are compared as A-labels | RFC 6125 §6.4.1, §6.4.2 |
//! | `*` only as the complete left-most label of a DNS-ID or CN-ID, matching exactly one label | RFC 7817 §3 rule 5, RFC 6125 §6.4.3 |
//! | no partial wildcards (`f*.example.com`, `xn--*`) | RFC 7817 §3 rule 5 (MUST NOT) |
//! | no wildcard over a single remaining label (`*.com`, `*`) | RFC 6125 §7.2 |
//! | no wildcard in an SRV-ID (RFC 7817 grants wildcards to DNS-ID and CN-ID only) | RFC 7817 §3 rule 5 |
//! | under a name-constrained CA, SRV-IDs and CN-IDs are not trusted: webpki applies name constraints to dNSName and iPAddress only | RFC 5280 §4.2.1.10, RFC 4985 §2 |
//!
//! Choices made where the RFCs leave room:
//!
//! * **CN-ID is off by default.** RFC 7817 only says a client MAY use it for
//!   backward compatibility; publicly trusted certificates have carried a
//!   subjectAltName for years. Turn it on with
//!   [`ReferenceIdentifiers::allow_cn_id`]. Even then a certificate with more
//!   than one CN is refused as ambiguous (RFC 6125 §4.1 rule 6: at most one
//!   CN-ID).
//! * **Too-broad wildcards.** Without a public suffix list the library refuses
//!   a wildcard followed by a single label (`*.com`, `*.local`); `*.co.uk` is
//!   not recognised as a public suffix. The certificate authority is expected
//!   to refuse the rest (RFC 6125 §7.2).
//! * **IP addresses.** RFC 6125 does not cover them; a reference that is an IP
//!   address matches a subjectAltName iPAddress with the same octets
//!   (RFC 5280 §4.2.1.6) and nothing else.
//! * **Internationalized names** must be passed as A-labels (`xn--…`); the
//!   library does not convert U-labels (RFC 6125 §6.4.2).
//!
//! Revocation: [`MailServerVerifier`] does no CRL or OCSP checking, like
//! rustls' `verify_server_cert_signed_by_trust_anchor` it builds on.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;

use super::names::ends_in_number;
use super::verifier::{self, verify_signatures_with_algorithms};

/// The mail services whose SRV-IDs the library knows.
///
/// The SRV-ID a certificate presents is the service label followed by the
/// domain the service was discovered for, e.g. `_imaps.example.com`
/// (RFC 4985 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MailService {
    /// Message submission with STARTTLS, `_submission` (RFC 6186 §3.1).
    Submission,
    /// Message submission over implicit TLS, `_submissions` (RFC 8314 §5.1).
    Submissions,
    /// IMAP with STARTTLS, `_imap` (RFC 6186 §3.2).
    Imap,
    /// IMAP over implicit TLS, `_imaps` (RFC 6186 §3.2).
    Imaps,
    /// POP3 with STLS, `_pop3` (RFC 6186 §3.3).
    Pop3,
    /// POP3 over implicit TLS, `_pop3s` (RFC 6186 §3.3).
    Pop3s,
}

impl MailService {
    /// The SRV service label, with its leading underscore (`_imap`).
    pub fn srv_label(self) -> &'static str {
        match self {
            MailService::Submission => "_submission",
            MailService::Submissions => "_submissions",
            MailService::Imap => "_imap",
            MailService::Imaps => "_imaps",
            MailService::Pop3 => "_pop3",
            MailService::Pop3s => "_pop3s",
        }
    }
}

impl fmt::Display for MailService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.srv_label())
    }
}

/// Why a string is not usable as a reference identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty (or only a dot).
    Empty,
    /// The name contains non-ASCII characters: internationalized names must be
    /// given as A-labels (`xn--…`) (RFC 6125 §6.4.2, RFC 5890).
    NotAscii,
    /// The name is longer than 253 characters (255 octets in DNS form,
    /// RFC 1035 §2.3.4).
    TooLong,
    /// A label is empty (`a..b`) or longer than 63 octets (RFC 1035 §2.3.4).
    BadLabel,
    /// The name contains a character that no host name contains.
    InvalidCharacter(char),
    /// Reference identifiers never contain wildcards; only presented ones may
    /// (RFC 6125 §6.4.3).
    Wildcard,
    /// An IP address was given where a DNS domain name is required, or a
    /// name whose last label is a number (`192.0.2.1.`, `1.2.3`,
    /// `0x7f000001`), which resolvers read as an IPv4 address and no host
    /// name has (RFC 1123 §2.1, RFC 3696 §2).
    IpAddress,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty domain name"),
            NameError::NotAscii => f.write_str(
                "domain name is not ASCII: give internationalized names as A-labels (RFC 6125 §6.4.2)",
            ),
            NameError::TooLong => f.write_str("domain name longer than 253 characters (255 octets in DNS form, RFC 1035 §2.3.4)"),
            NameError::BadLabel => {
                f.write_str("domain name has an empty label or one longer than 63 octets (RFC 1035 §2.3.4)")
            }
            NameError::InvalidCharacter(c) => {
                write!(f, "domain name contains the character {:?}", c)
            }
            NameError::Wildcard => {
                f.write_str("a reference identifier cannot contain a wildcard (RFC 6125 §6.4.3)")
            }
            NameError::IpAddress => f.write_str(
                "an IP address (or a name ending in a number, which resolvers read as one) is not a DNS domain name (RFC 1123 §2.1)",
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// A DNS domain name used as a reference identifier: ASCII, lower-cased,
/// without a trailing dot, no wildcard, not an IP address, and not ending in
/// a numeric label (see [`NameError::IpAddress`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsName(String);

impl DnsName {
    /// Checks and normalizes `name` (case folded to lower case, one trailing
    /// dot removed). An IP literal, with or without a trailing dot, is
    /// refused, as is any name whose last label is a number.
    ///
    /// ```
    /// # use starttls::policy::identity::{DnsName, NameError};
    /// assert_eq!(DnsName::new("Mail.Example.COM.").unwrap().as_str(), "mail.example.com");
    /// assert_eq!(DnsName::new("192.0.2.1."), Err(NameError::IpAddress));
    /// assert_eq!(DnsName::new("0x7f000001"), Err(NameError::IpAddress));
    /// ```
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.parse::<IpAddr>().is_ok() || ends_in_number(name) {
            return Err(NameError::IpAddress);
        }
        if name.contains('*') {
            return Err(NameError::Wildcard);
        }
        normalize_name(name).map(DnsName)
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-cases, strips one trailing dot and checks the syntax of a name,
/// reference or presented: a name whose last label is a number is an
/// address, not a name, on either side. `*` is allowed as a character here;
/// wildcard placement is checked by the matcher.
fn normalize_name(name: &str) -> Result<String, NameError> {
    if !name.is_ascii() {
        return Err(NameError::NotAscii);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if ends_in_number(name) {
        return Err(NameError::IpAddress);
    }
    if name.len() > 253 {
        return Err(NameError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(NameError::BadLabel);
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*'))
        {
            return Err(NameError::InvalidCharacter(c));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// One identity the client expects the server to have (a *reference
/// identifier*, RFC 6125 §1.8).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReferenceId {
    /// A DNS domain name, matched against DNS-IDs (and CN-IDs where allowed).
    Dns(DnsName),
    /// An SRV-ID: a service and the *source domain* it was discovered for
    /// (RFC 6125 §6.5.1), e.g. `_imap` and `example.com`.
    Srv {
        /// The mail service.
        service: MailService,
        /// The domain of the user's address the SRV lookup started from.
        domain: DnsName,
    },
    /// An IP address, matched against subjectAltName iPAddress entries.
    Ip(IpAddr),
}

impl ReferenceId {
    /// A DNS-ID reference, or an IP reference if `host` is an IP literal
    /// (brackets around an IPv6 literal are accepted).
    pub fn host(host: &str) -> Result<Self, NameError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Ok(ReferenceId::Ip(ip)),
            Err(_) => DnsName::new(host).map(ReferenceId::Dns),
        }
    }
}

impl fmt::Display for ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceId::Dns(name) => write!(f, "DNS-ID {name}"),
            ReferenceId::Srv { service, domain } => write!(f, "SRV-ID {service}.{domain}"),
            ReferenceId::Ip(ip) => write!(f, "IP address {ip}"),
        }
    }
}

/// How the client learned the target host of an SRV record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetProvenance {
    /// The SRV answer was validated with DNSSEC: the target host may be used
    /// as a reference identifier (RFC 7817 §3 (c), RFC 6186 §6).
    DnssecValidated,
    /// Plain DNS: an attacker could have chosen the target, so it is not a
    /// reference identifier (RFC 6125 §6.2.1). If the user confirms the
    /// target, add it with [`ReferenceIdentifiers::with_id`].
    Unverified,
}

/// Everything the client accepts as the server's identity, and whether a
/// CN-ID may be consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceIdentifiers {
    ids: Vec<ReferenceId>,
    use_connection_name: bool,
    allow_cn_id: bool,
}

impl ReferenceIdentifiers {
    /// The user configured this host (name or IP literal) for the account:
    /// RFC 7817 §3 (b), "the hostname it used to open the connection".
    pub fn configured_host(host: &str) -> Result<Self, NameError> {
        Ok(Self::empty().with_id(ReferenceId::host(host)?))
    }

    /// The server was found by RFC 6186 SRV discovery for `service`, starting
    /// from the domain of the user's address `email_domain`, and the SRV
    /// record named `target`.
    ///
    /// References: the SRV-ID `service.email_domain` (RFC 7817 §3: "MUST also
    /// use the domain portion of the user's email address … to compare against
    /// an SRV-ID"), the DNS-ID `email_domain` (RFC 7817 §3 (a)), and the
    /// DNS-ID `target` only if it was learned with DNSSEC (RFC 7817 §3 (c),
    /// RFC 6186 §6).
    pub fn discovered(
        service: MailService,
        email_domain: &str,
        target: &str,
        provenance: TargetProvenance,
    ) -> Result<Self, NameError> {
        let domain = DnsName::new(email_domain)?;
        let mut refs = Self::empty()
            .with_id(ReferenceId::Srv {
                service,
                domain: domain.clone(),
            })
            .with_id(ReferenceId::Dns(domain));
        if provenance == TargetProvenance::DnssecValidated {
            refs = refs.with_id(ReferenceId::Dns(DnsName::new(target)?));
        }
        Ok(refs)
    }

    /// Use the name rustls was asked to connect to (the `ServerName` given to
    /// the `ClientConnection`, which is also sent as SNI) as a reference, in
    /// addition to any others. Only correct when that name came from the user
    /// or from a secure source, never from MX or SRV answers without DNSSEC
    /// (RFC 7817 §3, RFC 6125 §6.2.1).
    pub fn connection_name() -> Self {
        ReferenceIdentifiers {
            use_connection_name: true,
            ..Self::empty()
        }
    }

    /// No reference identifiers at all; add some with
    /// [`with_id`](Self::with_id). Verification fails until one is added.
    pub fn empty() -> Self {
        ReferenceIdentifiers {
            ids: Vec::new(),
            use_connection_name: false,
            allow_cn_id: false,
        }
    }

    /// Adds a reference identifier (builder style).
    pub fn with_id(mut self, id: ReferenceId) -> Self {
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
        self
    }

    /// Adds the domain of the user's email address as a DNS-ID reference
    /// (RFC 7817 §3 (a)).
    pub fn with_email_domain(self, domain: &str) -> Result<Self, NameError> {
        Ok(self.with_id(ReferenceId::Dns(DnsName::new(domain)?)))
    }

    /// Lets a certificate that presents no DNS-ID, SRV-ID, URI-ID or
    /// iPAddress be matched by its subject CN (RFC 7817 §3 rule 4 "MAY",
    /// RFC 6125 §6.4.4). Off by default.
    pub fn allow_cn_id(mut self, allow: bool) -> Self {
        self.allow_cn_id = allow;
        self
    }

    /// The configured reference identifiers.
    pub fn ids(&self) -> &[ReferenceId] {
        &self.ids
    }

    /// Whether CN-ID fallback is enabled.
    pub fn cn_id_allowed(&self) -> bool {
        self.allow_cn_id
    }

    /// Whether the connection name is used as a reference too.
    pub fn uses_connection_name(&self) -> bool {
        self.use_connection_name
    }

    /// Matches the end-entity certificate against these references.
    ///
    /// Does **not** validate the certificate path: use [`MailServerVerifier`]
    /// for that, or call this only on a certificate that passed it.
    pub fn verify(&self, end_entity: &CertificateDer<'_>) -> Result<IdentityMatch, IdentityError> {
        self.verify_with(end_entity, &[], false)
    }

    /// Like [`verify`](Self::verify), and if
    /// [`connection_name`](Self::connection_name) was used, also against
    /// `server_name`.
    pub fn verify_for_connection(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
    ) -> Result<IdentityMatch, IdentityError> {
        self.verify_connection(end_entity, server_name, false)
    }

    fn verify_connection(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        name_constrained: bool,
    ) -> Result<IdentityMatch, IdentityError> {
        if !self.use_connection_name {
            return self.verify_with(end_entity, &[], name_constrained);
        }
        let extra = match server_name {
            ServerName::DnsName(name) => DnsName::new(name.as_ref()).ok().map(ReferenceId::Dns),
            ServerName::IpAddress(ip) => Some(ReferenceId::Ip(IpAddr::from(*ip))),
            _ => None,
        };
        match extra {
            Some(id) => self.verify_with(end_entity, std::slice::from_ref(&id), name_constrained),
            None => self.verify_with(end_entity, &[], name_constrained),
        }
    }

    fn verify_with(
        &self,
        end_entity: &CertificateDer<'_>,
        extra: &[ReferenceId],
        name_constrained: bool,
    ) -> Result<IdentityMatch, IdentityError> {
        let mut refs: Vec<&ReferenceId> = self.ids.iter().collect();
        refs.extend(extra.iter().filter(|id| !self.ids.contains(id)));
        if refs.is_empty() {
            return Err(IdentityError::NoReferenceIdentifiers);
        }
        let presented = presented_identifiers(end_entity)?;
        match_presented(&presented, &refs, self.allow_cn_id, name_constrained)
    }
}

/// Matches presented identifiers against references (RFC 6125 §6, RFC 7817 §3).
///
/// `name_constrained`: the certification path may carry name constraints,
/// which webpki applies to dNSName and iPAddress entries but not to SRVName
/// or to a CN, so SRV-IDs and CN-IDs are not trusted then.
fn match_presented(
    presented: &[PresentedId],
    refs: &[&ReferenceId],
    allow_cn_id: bool,
    name_constrained: bool,
) -> Result<IdentityMatch, IdentityError> {
    // RFC 6125 §6.4.4: the CN is not consulted when the certificate presents
    // a DNS-ID, SRV-ID, URI-ID "or any application-specific identifier types
    // supported by the client" — here every subjectAltName entry that
    // `presented_identifiers` lists, iPAddress included, even malformed.
    let has_san_name = presented.iter().any(|p| {
        !matches!(
            p,
            PresentedId::CnId(_) | PresentedId::Malformed(MALFORMED_CN)
        )
    });
    let cn_count = presented
        .iter()
        .filter(|p| {
            matches!(
                p,
                PresentedId::CnId(_) | PresentedId::Malformed(MALFORMED_CN)
            )
        })
        .count();

    let mut rejected = Vec::new();
    for p in presented {
        let verdict = match p {
            PresentedId::DnsId(name) => match_against_dns(name, refs),
            PresentedId::CnId(name) => {
                if has_san_name {
                    Err(Rule::CnIdWithSubjectAltName)
                } else if !allow_cn_id {
                    Err(Rule::CnIdNotEnabled)
                } else if cn_count > 1 {
                    Err(Rule::MultipleCnIds)
                } else if name_constrained {
                    Err(Rule::NameConstrainedPath)
                } else {
                    match_against_dns(name, refs)
                }
            }
            PresentedId::SrvId(_) if name_constrained => Err(Rule::NameConstrainedPath),
            PresentedId::SrvId(srv) => match_against_srv(srv, refs),
            PresentedId::UriId(_) => Err(Rule::UriIdNotUsed),
            PresentedId::Ip(ip) => refs
                .iter()
                .find(|r| matches!(r, ReferenceId::Ip(want) if want == ip))
                .map(|r| (*r).clone())
                .ok_or(Rule::NoMatch),
            PresentedId::Malformed(_) => Err(Rule::Malformed),
        };
        match verdict {
            Ok(reference) => {
                return Ok(IdentityMatch {
                    reference,
                    presented: p.clone(),
                })
            }
            Err(rule) => rejected.push(Rejected {
                presented: p.clone(),
                rule,
            }),
        }
    }
    Err(IdentityError::Mismatch {
        references: refs.iter().map(|r| (*r).clone()).collect(),
        rejected,
    })
}

/// An identifier found in the server's certificate (a *presented
/// identifier*, RFC 6125 §1.8). Strings are as found in the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PresentedId {
    /// subjectAltName dNSName.
    DnsId(String),
    /// subjectAltName otherName SRVName (RFC 4985), e.g. `_imap.example.com`.
    SrvId(String),
    /// A CN attribute of the subject name.
    CnId(String),
    /// subjectAltName uniformResourceIdentifier (never used for mail).
    UriId(String),
    /// subjectAltName iPAddress.
    Ip(IpAddr),
    /// A subjectAltName entry of a type used here (SRVName, iPAddress, CN)
    /// that could not be decoded; the text says which.
    Malformed(&'static str),
}

impl fmt::Display for PresentedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Certificate strings come from the peer: escape control characters
        // so that they cannot disturb a UI or a log.
        match self {
            PresentedId::DnsId(s) => write!(f, "DNS-ID {}", crate::Escaped::new(&s)),
            PresentedId::SrvId(s) => write!(f, "SRV-ID {}", crate::Escaped::new(&s)),
            PresentedId::CnId(s) => write!(f, "CN-ID {}", crate::Escaped::new(&s)),
            PresentedId::UriId(s) => write!(f, "URI-ID {}", crate::Escaped::new(&s)),
            PresentedId::Ip(ip) => write!(f, "IP address {ip}"),
            PresentedId::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

/// The reference identifier that matched, and the presented identifier it
/// matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityMatch {
    /// What the client expected.
    pub reference: ReferenceId,
    /// What the certificate presented.
    pub presented: PresentedId,
}

/// The rule that refused a presented identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// Well-formed, but equal to no reference identifier of its type
    /// (RFC 6125 §6.4.1, §6.5.1).
    NoMatch,
    /// `*` as part of a label (`f*.example.com`) (RFC 7817 §3 rule 5: MUST
    /// NOT).
    PartialWildcard,
    /// `*` in a label other than the left-most (RFC 6125 §6.4.3).
    WildcardNotLeftMost,
    /// A wildcard matches exactly one label: `*.example.com` does not match
    /// `example.com` or `a.b.example.com` (RFC 6125 §6.4.3, RFC 7817 §3
    /// rule 5).
    WildcardOneLabel,
    /// A wildcard followed by a single label (`*.com`) or alone (RFC 6125
    /// §7.2).
    WildcardTooBroad,
    /// Wildcards are allowed in DNS-IDs and CN-IDs only, not in SRV-IDs
    /// (RFC 7817 §3 rule 5).
    WildcardInSrvId,
    /// The SRV-ID names the right domain but another service (RFC 6125
    /// §6.5.1).
    WrongService,
    /// The certificate presents a DNS-ID, SRV-ID, URI-ID or iPAddress
    /// (any subjectAltName entry of a type this module reads, even a
    /// malformed one), so its CN is not consulted (RFC 6125 §6.4.4).
    CnIdWithSubjectAltName,
    /// CN-ID fallback is permitted (RFC 7817 §3 rule 4, "MAY") but not
    /// enabled for this account.
    CnIdNotEnabled,
    /// More than one CN: ambiguous, refused (RFC 6125 §4.1 rule 6).
    MultipleCnIds,
    /// URI-IDs are not used for mail (RFC 7817 §3 rule 3).
    UriIdNotUsed,
    /// Not a syntactically valid DNS name or SRVName (RFC 5280 §4.2.1.6,
    /// RFC 4985 §2).
    Malformed,
    /// The certification path may carry name constraints, which are not
    /// applied to SRV-IDs or CN-IDs, so those are not trusted
    /// (RFC 5280 §4.2.1.10, RFC 4985 §2).
    NameConstrainedPath,
}

impl Rule {
    /// The RFC section that states the rule.
    pub fn citation(self) -> &'static str {
        match self {
            Rule::NoMatch => "RFC 6125 §6.4.1",
            Rule::PartialWildcard => "RFC 7817 §3 rule 5",
            Rule::WildcardNotLeftMost => "RFC 6125 §6.4.3",
            Rule::WildcardOneLabel => "RFC 6125 §6.4.3",
            Rule::WildcardTooBroad => "RFC 6125 §7.2",
            Rule::WildcardInSrvId => "RFC 7817 §3 rule 5",
            Rule::WrongService => "RFC 6125 §6.5.1",
            Rule::CnIdWithSubjectAltName => "RFC 6125 §6.4.4",
            Rule::CnIdNotEnabled => "RFC 7817 §3 rule 4",
            Rule::MultipleCnIds => "RFC 6125 §4.1",
            Rule::UriIdNotUsed => "RFC 7817 §3 rule 3",
            Rule::Malformed => "RFC 5280 §4.2.1.6",
            Rule::NameConstrainedPath => "RFC 5280 §4.2.1.10",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Rule::NoMatch => "matches no expected name",
            Rule::PartialWildcard => "partial-label wildcard not allowed",
            Rule::WildcardNotLeftMost => "wildcard only allowed as the left-most label",
            Rule::WildcardOneLabel => "wildcard matches exactly one label",
            Rule::WildcardTooBroad => "wildcard over a top-level domain refused",
            Rule::WildcardInSrvId => "wildcard not allowed in an SRV-ID",
            Rule::WrongService => "SRV-ID is for another service",
            Rule::CnIdWithSubjectAltName => {
                "CN ignored because the certificate has subjectAltName names"
            }
            Rule::CnIdNotEnabled => "CN-ID fallback not enabled",
            Rule::MultipleCnIds => "more than one CN",
            Rule::UriIdNotUsed => "URI-IDs are not used for mail",
            Rule::Malformed => "not a valid name",
            Rule::NameConstrainedPath => {
                "not trusted under a name-constrained CA, whose constraints do not cover this name form"
            }
        };
        write!(f, "{what} ({})", self.citation())
    }
}

/// A presented identifier and the rule that refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The identifier from the certificate.
    pub presented: PresentedId,
    /// Why it did not match.
    pub rule: Rule,
}

/// Why the server's certificate does not identify the expected server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate could not be parsed as X.509 (RFC 5280 §4.1).
    BadCertificate(String),
    /// No reference identifier was configured, so nothing can match
    /// (RFC 6125 §6.2).
    NoReferenceIdentifiers,
    /// No presented identifier matched any reference identifier; the
    /// connection must not go on (RFC 6125 §6.6, RFC 7817 §3).
    Mismatch {
        /// What the client expected.
        references: Vec<ReferenceId>,
        /// Every identifier the certificate presented, with the rule that
        /// refused it (empty if it presented none).
        rejected: Vec<Rejected>,
    },
}

/// How many entries a [`IdentityError::Mismatch`] message lists.
const DISPLAY_LIMIT: usize = 8;

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::BadCertificate(detail) => {
                write!(
                    f,
                    "server certificate cannot be parsed (RFC 5280 §4.1): {detail}"
                )
            }
            IdentityError::NoReferenceIdentifiers => f.write_str(
                "no server identity configured to check the certificate against (RFC 6125 §6.2)",
            ),
            IdentityError::Mismatch {
                references,
                rejected,
            } => {
                f.write_str("server certificate does not match the server's identity (RFC 7817 §3, RFC 6125 §6.6): expected ")
                    ?;
                for (i, r) in references.iter().take(DISPLAY_LIMIT).enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "{r}")?;
                }
                if references.len() > DISPLAY_LIMIT {
                    write!(f, " (and {} more)", references.len() - DISPLAY_LIMIT)?;
                }
                if rejected.is_empty() {
                    return f.write_str("; the certificate presents no identity");
                }
                f.write_str("; the certificate presents ")?;
                for (i, r) in rejected.iter().take(DISPLAY_LIMIT).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", r.presented, r.rule)?;
                }
                if rejected.len() > DISPLAY_LIMIT {
                    write!(f, " (and {} more)", rejected.len() - DISPLAY_LIMIT)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for IdentityError {}

impl IdentityError {
    /// The identity error inside a rustls error produced by
    /// [`MailServerVerifier`], if that is what it is. (rustls displays such
    /// wrapped errors with `Debug`; use this to show the
    /// [`Display`](fmt::Display) text instead.)
    pub fn from_rustls(error: &rustls::Error) -> Option<&IdentityError> {
        verifier::from_rustls(error)
    }
}

impl From<IdentityError> for rustls::Error {
    /// A certificate error carrying the [`IdentityError`]; retrieve it by
    /// downcasting the [`OtherError`](rustls::OtherError).
    fn from(e: IdentityError) -> Self {
        verifier::to_rustls(e)
    }
}

/// What [`PresentedId::Malformed`] says for an undecodable SRVName.
const MALFORMED_SRV_NAME: &str = "SRVName";

/// What [`PresentedId::Malformed`] says for an iPAddress of neither 4 nor
/// 16 octets.
const MALFORMED_IP: &str = "iPAddress";

/// What [`PresentedId::Malformed`] says for an undecodable subject CN.
const MALFORMED_CN: &str = "subject CN";

/// DER of the SRVName OID 1.3.6.1.5.5.7.8.7 (RFC 4985 §2), content octets.
pub(super) const SRV_NAME_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07];

/// Lists the identifiers the end-entity certificate presents: every
/// subjectAltName dNSName, SRVName, URI and iPAddress, then every subject
/// CN. Other name types are not identifiers for mail and are left out.
pub fn presented_identifiers(
    end_entity: &CertificateDer<'_>,
) -> Result<Vec<PresentedId>, IdentityError> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let (rest, cert) = X509Certificate::from_der(end_entity.as_ref())
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(IdentityError::BadCertificate(
            "trailing data after the certificate".into(),
        ));
    }
    let mut out = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) => out.push(PresentedId::DnsId((*s).to_owned())),
                GeneralName::URI(s) => out.push(PresentedId::UriId((*s).to_owned())),
                GeneralName::IPAddress(bytes) => out.push(match ip_from_octets(bytes) {
                    Some(ip) => PresentedId::Ip(ip),
                    None => PresentedId::Malformed(MALFORMED_IP),
                }),
                GeneralName::OtherName(oid, value) if oid.as_bytes() == SRV_NAME_OID => {
                    out.push(match srv_name(value) {
                        Some(s) => PresentedId::SrvId(s),
                        None => PresentedId::Malformed(MALFORMED_SRV_NAME),
                    })
                }
                _ => {}
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        out.push(match cn.as_str() {
            Ok(s) => PresentedId::CnId(s.to_owned()),
            Err(_) => PresentedId::Malformed(MALFORMED_CN),
        });
    }
    Ok(out)
}

fn ip_from_octets(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// Reads one DER TLV (definite length, at most two length octets).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 {
            return None;
        }
        let (octets, rest) = rest.split_at_checked(n)?;
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return None; // not the shortest form (X.690 §10.1)
        }
        (len, rest)
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

/// Decodes the value of an SRVName otherName: `[0] EXPLICIT IA5String`
/// (RFC 4985 §2, RFC 5280 §4.2.1.6).
fn srv_name(value: &[u8]) -> Option<String> {
    let (tag, explicit, rest) = der_tlv(value)?;
    if tag != 0xa0 || !rest.is_empty() {
        return None;
    }
    let (tag, ia5, rest) = der_tlv(explicit)?;
    if tag != 0x16 || !rest.is_empty() || ia5.is_empty() || !ia5.is_ascii() {
        return None;
    }
    String::from_utf8(ia5.to_vec()).ok()
}

/// Matches a presented DNS-ID or CN-ID against the DNS references.
fn match_against_dns(presented: &str, refs: &[&ReferenceId]) -> Result<ReferenceId, Rule> {
    let mut rule = Rule::NoMatch;
    for r in refs {
        if let ReferenceId::Dns(reference) = r {
            match match_dns_id(presented, reference) {
                Ok(()) => return Ok((*r).clone()),
                Err(Rule::NoMatch) => {}
                Err(other) => rule = other,
            }
        }
    }
    if rule == Rule::NoMatch {
        // Syntax faults do not depend on the reference: report them even if
        // the client had no DNS reference to compare with.
        check_presented_syntax(presented)?;
    }
    Err(rule)
}

/// Syntax of a presented DNS name, wildcard placement included.
/// Returns the normalized name.
fn check_presented_syntax(presented: &str) -> Result<String, Rule> {
    let name = normalize_name(presented).map_err(|_| Rule::Malformed)?;
    let mut labels = name.split('.');
    let first = labels.next().unwrap_or_default();
    if labels.clone().any(|l| l.contains('*')) {
        return Err(Rule::WildcardNotLeftMost);
    }
    if first.contains('*') {
        if first != "*" {
            return Err(Rule::PartialWildcard);
        }
        if labels.count() < 2 {
            return Err(Rule::WildcardTooBroad);
        }
    }
    Ok(name)
}

/// RFC 6125 §6.4.1–§6.4.3 with RFC 7817 §3 rule 5: case-insensitive exact
/// match, or `*` as the whole left-most label standing for exactly one label.
fn match_dns_id(presented: &str, reference: &DnsName) -> Result<(), Rule> {
    let name = check_presented_syntax(presented)?;
    match name.strip_prefix("*.") {
        None if name == reference.as_str() => Ok(()),
        None => Err(Rule::NoMatch),
        Some(suffix) => {
            let reference = reference.as_str();
            match reference.split_once('.') {
                Some((_, rest)) if rest == suffix => Ok(()),
                _ if reference == suffix || reference.ends_with(&format!(".{suffix}")) => {
                    Err(Rule::WildcardOneLabel)
                }
                _ => Err(Rule::NoMatch),
            }
        }
    }
}

/// RFC 6125 §6.5.1 with RFC 4985: the service label compared
/// case-insensitively, the domain compared as a DNS-ID without wildcards.
fn match_against_srv(presented: &str, refs: &[&ReferenceId]) -> Result<ReferenceId, Rule> {
    let name = normalize_name(presented).map_err(|_| Rule::Malformed)?;
    let (service, domain) = name.split_once('.').ok_or(Rule::Malformed)?;
    if !service.starts_with('_') || service.len() < 2 {
        return Err(Rule::Malformed);
    }
    if name.contains('*') {
        return Err(Rule::WildcardInSrvId);
    }
    let mut rule = Rule::NoMatch;
    for r in refs {
        if let ReferenceId::Srv {
            service: want,
            domain: want_domain,
        } = r
        {
            if want_domain.as_str() == domain {
                if want.srv_label() == service {
                    return Ok((*r).clone());
                }
                rule = Rule::WrongService;
            }
        }
    }
    Err(rule)
}

/// Whether name constraints may apply to the path webpki built: a presented
/// intermediate has a nameConstraints extension (or cannot be read), or a
/// trust anchor with name constraints issued one of the presented
/// certificates. webpki enforces constraints on dNSName, iPAddress and
/// directoryName, not on SRVName otherNames or a CN used as a host name, so
/// those must not be trusted under constraints.
fn path_may_be_name_constrained(
    roots: &RootCertStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};

    let mut issuers: Vec<Vec<u8>> = Vec::new();
    for (i, der) in std::iter::once(end_entity).chain(intermediates).enumerate() {
        let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
            return true;
        };
        if i > 0 && !matches!(cert.name_constraints(), Ok(None)) {
            return true;
        }
        // webpki keeps a Name's contents, without the SEQUENCE header.
        match der_tlv(cert.issuer().as_raw()) {
            Some((0x30, contents, [])) => issuers.push(contents.to_vec()),
            _ => return true,
        }
    }
    roots.roots.iter().any(|anchor| {
        anchor.name_constraints.is_some()
            && issuers
                .iter()
                .any(|i| i.as_slice() == anchor.subject.as_ref())
    })
}

/// A rustls [`ServerCertVerifier`] for SMTP submission, IMAP and POP3
/// clients: certification path validation by rustls' webpki, then the mail
/// identity rules of this module with the configured
/// [`ReferenceIdentifiers`].
///
/// The `server_name` rustls passes in (the name given to the connection, sent
/// as SNI) is used only if the references were built with
/// [`ReferenceIdentifiers::connection_name`].
///
/// A name mismatch is reported as
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` wrapping
/// an [`IdentityError`]; path validation failures keep rustls' own
/// `CertificateError` (`UnknownIssuer`, `Expired`, …). There is no callback
/// to accept a failed certificate: see the setup-time pinning API for that.
#[derive(Debug, Clone)]
pub struct MailServerVerifier {
    roots: Arc<RootCertStore>,
    references: ReferenceIdentifiers,
    algorithms: WebPkiSupportedAlgorithms,
}

impl MailServerVerifier {
    /// A verifier trusting `roots`, expecting `references`, using the
    /// signature algorithms of `provider`.
    pub fn new(
        roots: Arc<RootCertStore>,
        references: ReferenceIdentifiers,
        provider: &CryptoProvider,
    ) -> Self {
        MailServerVerifier {
            roots,
            references,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The reference identifiers this verifier expects.
    pub fn references(&self) -> &ReferenceIdentifiers {
        &self.references
    }
}

impl ServerCertVerifier for MailServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // RFC 7817 §3: the identity check comes only after certification path
        // validation (RFC 5280 §6) succeeded.
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let constrained = path_may_be_name_constrained(&self.roots, end_entity, intermediates);
        self.references
            .verify_connection(end_entity, server_name, constrained)?;
        Ok(ServerCertVerified::assertion())
    }

    verify_signatures_with_algorithms!();
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{self, client_config, handshake, provider, Ca, Issued, Leaf};
    use super::*;
    use rustls::{CertificateError, OtherError};

    fn dns(name: &str) -> DnsName {
        DnsName::new(name).unwrap()
    }

    fn identity_error(e: &rustls::Error) -> &IdentityError {
        match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => inner
                .downcast_ref::<IdentityError>()
                .expect("an IdentityError"),
            other => panic!("not an identity error: {other:?}"),
        }
    }

    fn rule_for(err: &IdentityError, presented: &str) -> Rule {
        match err {
            IdentityError::Mismatch { rejected, .. } => {
                rejected
                    .iter()
                    .find(|r| r.presented.to_string() == presented)
                    .unwrap_or_else(|| panic!("{presented} not in {rejected:?}"))
                    .rule
            }
            other => panic!("not a mismatch: {other:?}"),
        }
    }

    #[test]
    fn reference_names_are_normalized_and_checked() {
        assert_eq!(dns("Mail.Example.COM.").as_str(), "mail.example.com");
        assert_eq!(DnsName::new(""), Err(NameError::Empty));
        assert_eq!(DnsName::new("."), Err(NameError::Empty));
        assert_eq!(DnsName::new("a..b"), Err(NameError::BadLabel));
        assert_eq!(DnsName::new("*.example.com"), Err(NameError::Wildcard));
        assert_eq!(DnsName::new("bücher.example"), Err(NameError::NotAscii));
        assert_eq!(
            DnsName::new("a b.example"),
            Err(NameError::InvalidCharacter(' '))
        );
        assert_eq!(
            DnsName::new("a\0.example"),
            Err(NameError::InvalidCharacter('\0'))
        );
        assert_eq!(DnsName::new("192.0.2.1"), Err(NameError::IpAddress));
        // The IP check comes after the trailing dot is removed, and covers
        // the names resolvers read as addresses (RFC 1123 §2.1): before,
        // `192.0.2.1.` became the DNS reference `192.0.2.1`, which a DNS-ID
        // `*.0.2.1` matched.
        for address in [
            "192.0.2.1.",
            "1.2.3",
            "127.1",
            "0x7f000001",
            "2130706433",
            "a.0X1f",
        ] {
            assert_eq!(
                DnsName::new(address),
                Err(NameError::IpAddress),
                "{address}"
            );
            assert_eq!(
                ReferenceId::host(address),
                Err(NameError::IpAddress),
                "{address}"
            );
            assert_eq!(
                ReferenceIdentifiers::configured_host(address),
                Err(NameError::IpAddress),
                "{address}"
            );
        }
        assert_eq!(dns("1.2.3.example").as_str(), "1.2.3.example");
        // A presented name ending in a number is no name either.
        assert_eq!(check_presented_syntax("*.0.2.1"), Err(Rule::Malformed));
        assert_eq!(DnsName::new(&"a".repeat(64)), Err(NameError::BadLabel));
        assert_eq!(
            DnsName::new(&["abc"; 64].join(".")),
            Err(NameError::TooLong)
        );
        assert_eq!(
            ReferenceId::host("[2001:db8::1]").unwrap(),
            ReferenceId::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            dns("xn--bcher-kva.example").as_str(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn dns_id_exact_match_ignores_case_and_trailing_dot() {
        let r = dns("mail.example.com");
        assert_eq!(match_dns_id("mail.example.com", &r), Ok(()));
        assert_eq!(match_dns_id("MAIL.Example.Com", &r), Ok(()));
        assert_eq!(match_dns_id("mail.example.com.", &r), Ok(()));
        assert_eq!(match_dns_id("mail.example.org", &r), Err(Rule::NoMatch));
        assert_eq!(match_dns_id("example.com", &r), Err(Rule::NoMatch));
        assert_eq!(
            match_dns_id("mail.example.com\0.evil.org", &r),
            Err(Rule::Malformed)
        );
        assert_eq!(match_dns_id("mail.exämple.com", &r), Err(Rule::Malformed));
        let idn = dns("xn--bcher-kva.example");
        assert_eq!(match_dns_id("XN--BCHER-KVA.example", &idn), Ok(()));
    }

    #[test]
    fn wildcard_rules() {
        let r = dns("mail.example.com");
        assert_eq!(match_dns_id("*.example.com", &r), Ok(()));
        assert_eq!(match_dns_id("*.EXAMPLE.com.", &r), Ok(()));
        assert_eq!(
            match_dns_id("*.example.com", &dns("example.com")),
            Err(Rule::WildcardOneLabel)
        );
        assert_eq!(
            match_dns_id("*.example.com", &dns("a.mail.example.com")),
            Err(Rule::WildcardOneLabel)
        );
        assert_eq!(match_dns_id("*.example.org", &r), Err(Rule::NoMatch));
        assert_eq!(
            match_dns_id("*.com", &dns("example.com")),
            Err(Rule::WildcardTooBroad)
        );
        assert_eq!(match_dns_id("*", &dns("com")), Err(Rule::WildcardTooBroad));
        assert_eq!(
            match_dns_id("m*.example.com", &r),
            Err(Rule::PartialWildcard)
        );
        assert_eq!(
            match_dns_id("*l.example.com", &r),
            Err(Rule::PartialWildcard)
        );
        assert_eq!(
            match_dns_id("**.example.com", &r),
            Err(Rule::PartialWildcard)
        );
        assert_eq!(
            match_dns_id("xn--*.example.com", &dns("xn--bcher-kva.example.com")),
            Err(Rule::PartialWildcard)
        );
        assert_eq!(
            match_dns_id("mail.*.com", &r),
            Err(Rule::WildcardNotLeftMost)
        );
        assert_eq!(match_dns_id("*.*.com", &r), Err(Rule::WildcardNotLeftMost));
        // An A-label reference is matched by a whole-label wildcard.
        assert_eq!(
            match_dns_id("*.example.com", &dns("xn--bcher-kva.example.com")),
            Ok(())
        );
    }

    #[test]
    fn srv_id_rules() {
        let imap = ReferenceId::Srv {
            service: MailService::Imap,
            domain: dns("example.com"),
        };
        let refs = [&imap];
        assert_eq!(
            match_against_srv("_imap.example.com", &refs),
            Ok(imap.clone())
        );
        assert_eq!(
            match_against_srv("_IMAP.Example.com.", &refs),
            Ok(imap.clone())
        );
        assert_eq!(
            match_against_srv("_imaps.example.com", &refs),
            Err(Rule::WrongService)
        );
        assert_eq!(
            match_against_srv("_imap.example.org", &refs),
            Err(Rule::NoMatch)
        );
        assert_eq!(
            match_against_srv("_imap.*.com", &refs),
            Err(Rule::WildcardInSrvId)
        );
        assert_eq!(
            match_against_srv("_imap.*", &refs),
            Err(Rule::WildcardInSrvId)
        );
        assert_eq!(
            match_against_srv("imap.example.com", &refs),
            Err(Rule::Malformed)
        );
        assert_eq!(match_against_srv("_imap", &refs), Err(Rule::Malformed));
        let labels: Vec<_> = [
            MailService::Submission,
            MailService::Submissions,
            MailService::Imap,
            MailService::Imaps,
            MailService::Pop3,
            MailService::Pop3s,
        ]
        .iter()
        .map(|s| s.srv_label())
        .collect();
        assert_eq!(
            labels,
            [
                "_submission",
                "_submissions",
                "_imap",
                "_imaps",
                "_pop3",
                "_pop3s"
            ]
        );
    }

    #[test]
    fn srv_name_decoding_is_strict() {
        use test_support::tlv;
        let good = tlv(0xa0, &tlv(0x16, b"_imap.example.com"));
        assert_eq!(srv_name(&good).as_deref(), Some("_imap.example.com"));
        // UTF8String instead of IA5String, trailing bytes, truncation, empty.
        assert_eq!(srv_name(&tlv(0xa0, &tlv(0x0c, b"_imap.example.com"))), None);
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(srv_name(&trailing), None);
        assert_eq!(srv_name(&good[..good.len() - 1]), None);
        assert_eq!(srv_name(&tlv(0xa0, &tlv(0x16, b""))), None);
        assert_eq!(srv_name(&[0xa0, 0x81, 0x05]), None); // non-minimal length
        assert_eq!(srv_name(&[0xa0, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(srv_name(&[]), None);
    }

    #[test]
    fn certificate_dns_id_and_wildcard() {
        let ca = Ca::new("Test CA");
        let cert = ca.issue(&Leaf::dns(&["*.example.com", "example.com"]));
        let refs = ReferenceIdentifiers::configured_host("imap.example.com").unwrap();
        let m = refs.verify(cert.end_entity()).unwrap();
        assert_eq!(m.presented, PresentedId::DnsId("*.example.com".into()));
        assert_eq!(m.reference, ReferenceId::Dns(dns("imap.example.com")));

        let refs = ReferenceIdentifiers::configured_host("a.imap.example.com").unwrap();
        let err = refs.verify(cert.end_entity()).unwrap_err();
        assert_eq!(
            rule_for(&err, "DNS-ID *.example.com"),
            Rule::WildcardOneLabel
        );
        assert_eq!(rule_for(&err, "DNS-ID example.com"), Rule::NoMatch);
        let text = err.to_string();
        assert!(text.contains("RFC 7817 §3"), "{text}");
        assert!(
            text.contains("expected DNS-ID a.imap.example.com"),
            "{text}"
        );
        assert!(
            text.contains("wildcard matches exactly one label (RFC 6125 §6.4.3)"),
            "{text}"
        );
    }

    #[test]
    fn certificate_bad_wildcards_are_refused_with_their_rule() {
        let ca = Ca::new("Test CA");
        let cert = ca.issue(&Leaf::dns(&[
            "*.com",
            "m*.example.com",
            "mail.*.example.com",
        ]));
        let refs = ReferenceIdentifiers::configured_host("mail.example.com").unwrap();
        let err = refs.verify(cert.end_entity()).unwrap_err();
        assert_eq!(rule_for(&err, "DNS-ID *.com"), Rule::WildcardTooBroad);
        assert_eq!(
            rule_for(&err, "DNS-ID m*.example.com"),
            Rule::PartialWildcard
        );
        assert_eq!(
            rule_for(&err, "DNS-ID mail.*.example.com"),
            Rule::WildcardNotLeftMost
        );
        let text = err.to_string();
        assert!(
            text.contains("RFC 6125 §7.2") && text.contains("RFC 7817 §3 rule 5"),
            "{text}"
        );
    }

    #[test]
    fn certificate_srv_id() {
        let ca = Ca::new("Test CA");
        let cert = ca.issue(&Leaf {
            srv: vec!["_imaps.example.com", "_submissions.example.com"],
            dns: vec!["mx.provider.net"],
            cn: vec!["example.com"],
            ..Leaf::default()
        });
        let presented = presented_identifiers(cert.end_entity()).unwrap();
        assert_eq!(
            presented,
            [
                PresentedId::DnsId("mx.provider.net".into()),
                PresentedId::SrvId("_imaps.example.com".into()),
                PresentedId::SrvId("_submissions.example.com".into()),
                PresentedId::CnId("example.com".into()),
            ]
        );
        // Discovered by SRV without DNSSEC: the target is not a reference,
        // the SRV-ID is.
        let refs = ReferenceIdentifiers::discovered(
            MailService::Imaps,
            "Example.com",
            "mx.provider.net",
            TargetProvenance::Unverified,
        )
        .unwrap();
        let m = refs.verify(cert.end_entity()).unwrap();
        assert_eq!(m.presented, PresentedId::SrvId("_imaps.example.com".into()));

        // Another service is refused, naming the rule; the CN is ignored.
        let refs = ReferenceIdentifiers::discovered(
            MailService::Pop3s,
            "example.com",
            "mx.provider.net",
            TargetProvenance::Unverified,
        )
        .unwrap()
        .allow_cn_id(true);
        let err = refs.verify(cert.end_entity()).unwrap_err();
        assert_eq!(
            rule_for(&err, "SRV-ID _imaps.example.com"),
            Rule::WrongService
        );
        assert_eq!(rule_for(&err, "DNS-ID mx.provider.net"), Rule::NoMatch);
        assert_eq!(
            rule_for(&err, "CN-ID example.com"),
            Rule::CnIdWithSubjectAltName
        );

        // With DNSSEC the target host is a DNS-ID reference.
        let refs = ReferenceIdentifiers::discovered(
            MailService::Pop3s,
            "example.com",
            "mx.provider.net",
            TargetProvenance::DnssecValidated,
        )
        .unwrap();
        let m = refs.verify(cert.end_entity()).unwrap();
        assert_eq!(m.reference, ReferenceId::Dns(dns("mx.provider.net")));
    }

    #[test]
    fn cn_id_only_without_subject_alt_names_and_only_when_enabled() {
        let ca = Ca::new("Test CA");
        let cn_only = ca.issue(&Leaf {
            cn: vec!["mail.example.com"],
            ..Leaf::default()
        });
        let refs = ReferenceIdentifiers::configured_host("mail.example.com").unwrap();
        let err = refs.verify(cn_only.end_entity()).unwrap_err();
        assert_eq!(
            rule_for(&err, "CN-ID mail.example.com"),
            Rule::CnIdNotEnabled
        );
        assert!(err.to_string().contains("RFC 7817 §3 rule 4"));
        let m = refs
            .clone()
            .allow_cn_id(true)
            .verify(cn_only.end_entity())
            .unwrap();
        assert_eq!(m.presented, PresentedId::CnId("mail.example.com".into()));

        // Wildcards are allowed in a CN-ID too (RFC 7817 §3 rule 5).
        let cn_wild = ca.issue(&Leaf {
            cn: vec!["*.example.com"],
            ..Leaf::default()
        });
        assert!(refs
            .clone()
            .allow_cn_id(true)
            .verify(cn_wild.end_entity())
            .is_ok());

        // A DNS-ID present: the CN is never consulted, even if it would match.
        let both = ca.issue(&Leaf {
            dns: vec!["other.example.com"],
            cn: vec!["mail.example.com"],
            ..Leaf::default()
        });
        let err = refs
            .clone()
            .allow_cn_id(true)
            .verify(both.end_entity())
            .unwrap_err();
        assert_eq!(
            rule_for(&err, "CN-ID mail.example.com"),
            Rule::CnIdWithSubjectAltName
        );
        assert!(err.to_string().contains("RFC 6125 §6.4.4"));

        // A URI-ID also suppresses the CN, and is itself never used.
        let uri = ca.issue(&Leaf {
            uri: vec!["imap://mail.example.com"],
            cn: vec!["mail.example.com"],
            ..Leaf::default()
        });
        let err = refs
            .clone()
            .allow_cn_id(true)
            .verify(uri.end_entity())
            .unwrap_err();
        assert_eq!(
            rule_for(&err, "URI-ID imap://mail.example.com"),
            Rule::UriIdNotUsed
        );
        assert_eq!(
            rule_for(&err, "CN-ID mail.example.com"),
            Rule::CnIdWithSubjectAltName
        );

        // Two CNs are ambiguous (rcgen cannot write two, so match directly).
        let two = [
            PresentedId::CnId("mail.example.com".into()),
            PresentedId::CnId("evil.example.org".into()),
        ];
        let reference = ReferenceId::Dns(dns("mail.example.com"));
        let err = match_presented(&two, &[&reference], true, false).unwrap_err();
        assert_eq!(
            rule_for(&err, "CN-ID mail.example.com"),
            Rule::MultipleCnIds
        );
        assert!(match_presented(&two[..1], &[&reference], true, false).is_ok());
    }

    #[test]
    fn cn_id_is_not_consulted_beside_an_ip_address_san() {
        // RFC 6125 §6.4.4: an iPAddress SAN is an identifier type this
        // client supports, so the CN is ignored even with CN-ID allowed
        // (before, the CN matched).
        let ca = Ca::new("Test CA");
        let cert = ca.issue(&Leaf {
            ip: vec!["192.0.2.1".parse().unwrap()],
            cn: vec!["mail.example.com"],
            ..Leaf::default()
        });
        let refs = ReferenceIdentifiers::configured_host("mail.example.com")
            .unwrap()
            .allow_cn_id(true);
        let err = refs.verify(cert.end_entity()).unwrap_err();
        assert_eq!(rule_for(&err, "IP address 192.0.2.1"), Rule::NoMatch);
        assert_eq!(
            rule_for(&err, "CN-ID mail.example.com"),
            Rule::CnIdWithSubjectAltName
        );
        // The address itself still matches an IP reference.
        let by_ip = ReferenceIdentifiers::configured_host("192.0.2.1").unwrap();
        assert!(by_ip.allow_cn_id(true).verify(cert.end_entity()).is_ok());

        // A malformed iPAddress is an iPAddress entry too.
        let presented = [
            PresentedId::Malformed(MALFORMED_IP),
            PresentedId::CnId("mail.example.com".into()),
        ];
        let reference = ReferenceId::host("mail.example.com").unwrap();
        let err = match_presented(&presented, &[&reference], true, false).unwrap_err();
        assert_eq!(
            rule_for(&err, "CN-ID mail.example.com"),
            Rule::CnIdWithSubjectAltName
        );
    }

    #[test]
    fn ip_references_match_ip_addresses_only() {
        let cert = Issued::self_signed(&["192.0.2.7", "mail.example.com"]);
        let refs = ReferenceIdentifiers::configured_host("192.0.2.7").unwrap();
        let m = refs.verify(cert.end_entity()).unwrap();
        assert_eq!(m.presented, PresentedId::Ip("192.0.2.7".parse().unwrap()));
        let refs = ReferenceIdentifiers::configured_host("192.0.2.8").unwrap();
        assert!(refs.verify(cert.end_entity()).is_err());
    }

    #[test]
    fn no_references_no_match() {
        let cert = Issued::self_signed(&["mail.example.com"]);
        assert_eq!(
            ReferenceIdentifiers::empty().verify(cert.end_entity()),
            Err(IdentityError::NoReferenceIdentifiers)
        );
        assert!(matches!(
            ReferenceIdentifiers::configured_host("x.example")
                .unwrap()
                .verify(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])),
            Err(IdentityError::BadCertificate(_))
        ));
    }

    fn verifier(ca: &Ca, refs: ReferenceIdentifiers) -> Arc<MailServerVerifier> {
        Arc::new(MailServerVerifier::new(ca.roots(), refs, &provider()))
    }

    #[test]
    fn handshake_with_matching_dns_id() {
        let ca = Ca::new("Test CA");
        let server = ca.issue(&Leaf::dns(&["*.example.com"]));
        let refs = ReferenceIdentifiers::configured_host("imap.example.com").unwrap();
        let client = client_config(verifier(&ca, refs));
        let conn = handshake(
            client,
            server.server_config(rustls::ALL_VERSIONS),
            "imap.example.com",
        )
        .unwrap();
        assert_eq!(conn.peer_certificates().unwrap().len(), 2);
    }

    #[test]
    fn handshake_with_srv_id_tls12() {
        let ca = Ca::new("Test CA");
        let server = ca.issue(&Leaf {
            srv: vec!["_submission.example.com"],
            ..Leaf::default()
        });
        let refs = ReferenceIdentifiers::discovered(
            MailService::Submission,
            "example.com",
            "smtp.host.net",
            TargetProvenance::Unverified,
        )
        .unwrap();
        let client = client_config(verifier(&ca, refs));
        handshake(
            client,
            server.server_config(&[&rustls::version::TLS12]),
            "smtp.host.net",
        )
        .unwrap();
    }

    #[test]
    fn handshake_name_mismatch_is_an_identity_error() {
        let ca = Ca::new("Test CA");
        let server = ca.issue(&Leaf::dns(&["mail.example.org"]));
        let refs = ReferenceIdentifiers::configured_host("mail.example.com").unwrap();
        let client = client_config(verifier(&ca, refs));
        let err = handshake(
            client,
            server.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap_err();
        let err = identity_error(&err);
        assert_eq!(rule_for(err, "DNS-ID mail.example.org"), Rule::NoMatch);
    }

    #[test]
    fn handshake_connection_name_reference() {
        let ca = Ca::new("Test CA");
        let server = ca.issue(&Leaf::dns(&["mail.example.com"]));
        let client = client_config(verifier(&ca, ReferenceIdentifiers::connection_name()));
        handshake(
            client.clone(),
            server.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap();
        let err = handshake(
            client,
            server.server_config(rustls::ALL_VERSIONS),
            "other.example.com",
        )
        .unwrap_err();
        assert!(matches!(
            identity_error(&err),
            IdentityError::Mismatch { .. }
        ));
    }

    #[test]
    fn handshake_untrusted_chain_fails_before_the_name_check() {
        let ca = Ca::new("Test CA");
        let other_ca = Ca::new("Other CA");
        let server = other_ca.issue(&Leaf::dns(&["mail.example.com"]));
        let refs = ReferenceIdentifiers::configured_host("mail.example.com").unwrap();
        let client = client_config(verifier(&ca, refs.clone()));
        let err = handshake(
            client,
            server.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        // Self-signed: same.
        let selfsigned = Issued::self_signed(&["mail.example.com"]);
        let client = client_config(verifier(&ca, refs));
        let err = handshake(
            client,
            selfsigned.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    fn srv_leaf() -> Leaf {
        Leaf {
            dns: vec!["mail.example.org"],
            srv: vec!["_imap.example.com"],
            ..Leaf::default()
        }
    }

    fn imap_srv_refs() -> ReferenceIdentifiers {
        ReferenceIdentifiers::discovered(
            MailService::Imap,
            "example.com",
            "mail.example.org",
            TargetProvenance::Unverified,
        )
        .unwrap()
    }

    #[test]
    fn srv_id_through_an_intermediate() {
        let root = Ca::new("Root");
        let sub = root.intermediate("Sub", &[]);
        let server = sub.issue(&srv_leaf());
        let client = client_config(verifier(&root, imap_srv_refs()));
        handshake(
            client,
            server.server_config(rustls::ALL_VERSIONS),
            "mail.example.org",
        )
        .unwrap();
    }

    #[test]
    fn srv_id_and_cn_id_not_trusted_under_name_constraints() {
        // webpki checks the dNSName against the constraint but cannot check
        // the SRVName or the CN: a CA constrained to example.org must not
        // vouch for _imap.example.com.
        let constrained_root = Ca::constrained("Root", &["example.org"]);
        let root = Ca::new("Root 2");
        let constrained_sub = root.intermediate("Sub", &["example.org"]);
        for (anchor, issuer) in [
            (&constrained_root, &constrained_root),
            (&root, &constrained_sub),
        ] {
            let server = issuer.issue(&srv_leaf());
            let client = client_config(verifier(anchor, imap_srv_refs()));
            let err = handshake(
                client,
                server.server_config(rustls::ALL_VERSIONS),
                "mail.example.org",
            )
            .unwrap_err();
            let err = identity_error(&err);
            assert_eq!(
                rule_for(err, "SRV-ID _imap.example.com"),
                Rule::NameConstrainedPath
            );
            assert!(err.to_string().contains("RFC 5280 §4.2.1.10"));

            // The DNS-ID, which webpki did check, still works.
            let refs = ReferenceIdentifiers::configured_host("mail.example.org").unwrap();
            let client = client_config(verifier(anchor, refs));
            handshake(
                client,
                server.server_config(rustls::ALL_VERSIONS),
                "mail.example.org",
            )
            .unwrap();

            // A CN-only certificate is not trusted under constraints either.
            let cn_only = issuer.issue(&Leaf {
                cn: vec!["mail.example.com"],
                ..Leaf::default()
            });
            let refs = ReferenceIdentifiers::configured_host("mail.example.com")
                .unwrap()
                .allow_cn_id(true);
            let client = client_config(verifier(anchor, refs));
            let err = handshake(
                client,
                cn_only.server_config(rustls::ALL_VERSIONS),
                "mail.example.com",
            )
            .unwrap_err();
            assert_eq!(
                rule_for(identity_error(&err), "CN-ID mail.example.com"),
                Rule::NameConstrainedPath
            );
        }
    }

    #[test]
    fn cn_id_handshake_without_constraints() {
        let ca = Ca::new("Test CA");
        let cn_only = ca.issue(&Leaf {
            cn: vec!["mail.example.com"],
            ..Leaf::default()
        });
        let refs = ReferenceIdentifiers::configured_host("mail.example.com")
            .unwrap()
            .allow_cn_id(true);
        let client = client_config(verifier(&ca, refs));
        handshake(
            client,
            cn_only.server_config(rustls::ALL_VERSIONS),
            "mail.example.com",
        )
        .unwrap();
    }
}
