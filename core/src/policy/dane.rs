//! DANE for SMTP (RFC 7672, on RFC 6698 and RFC 7671).
//!
//! Sans-IO: the caller looks up the TLSA RRset of the MX host
//! (`_25._tcp.<TLSA base domain>`) with DNSSEC validation and hands the
//! records and the validation status in; this module decides what they mean
//! and authenticates the server's certificate chain against them.
//!
//! 1. Parse each record with [`TlsaRecord::from_rdata`] (wire form) or
//!    [`TlsaRecord::from_presentation`] (zone-file form, `"3 1 1 ab12…"`).
//! 2. Turn the lookup into a [`DaneDecision`] with
//!    [`DaneDecision::from_lookup`], saying where the host came from
//!    ([`HostSource`]: a secure MX RRset, an insecure one, or no MX):
//!    authenticate with DANE, require TLS without authentication (TLSA
//!    records published, none usable), not applicable (an insecure MX RRset,
//!    or no secure TLSA records), or do not connect to this host (the lookup
//!    failed).
//! 3. To authenticate, either install a [`DaneVerifier`] as the rustls
//!    certificate verifier of the connection, or call [`dane_check`] on the
//!    chain your own TLS stack received.
//!
//! Only usages DANE-TA(2) and DANE-EE(3) are used (RFC 7672 §3.1); selectors
//! Cert(0) and SPKI(1); matching types Full(0), SHA2-256(1) and SHA2-512(2).
//! The client should send SNI with the TLSA base domain (RFC 7672 §8.1): pass
//! it as the `ServerName` of the rustls connection.
//!
//! ```
//! use starttls::policy::dane::{DaneDecision, HostSource, TlsaLookup, TlsaRecord};
//!
//! let record: TlsaRecord = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
//!     .parse()
//!     .unwrap();
//! match DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Secure(vec![record])) {
//!     DaneDecision::Authenticate(tlsa) => assert_eq!(tlsa.records().count(), 1),
//!     other => panic!("{other:?}"),
//! }
//! ```
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, Der, ServerName, TrustAnchor, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, OtherError, RootCertStore};
use sha2::{Digest, Sha256, Sha512};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::names::ends_in_number;
use super::verifier::{self, verify_signatures_with_algorithms};

// ---------------------------------------------------------------------------
// TLSA records
// ---------------------------------------------------------------------------

/// One TLSA record (RFC 6698 §2.1), as published: the three parameter
/// octets are kept raw so that records this module cannot use can still be
/// represented, reported and classified (see [`TlsaRecord::usability`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    /// Certificate usage (RFC 6698 §2.1.1): 2 is DANE-TA, 3 is DANE-EE.
    pub usage: u8,
    /// Selector (RFC 6698 §2.1.2): 0 is the full certificate, 1 its
    /// SubjectPublicKeyInfo.
    pub selector: u8,
    /// Matching type (RFC 6698 §2.1.3): 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching_type: u8,
    /// Certificate association data (RFC 6698 §2.1.4).
    pub data: Vec<u8>,
}

/// Certificate usages this module implements (RFC 7672 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    /// DANE-TA(2): the record names a trust anchor the server's chain must
    /// lead to; the server certificate's names are checked (RFC 7672 §3.1.2).
    DaneTa,
    /// DANE-EE(3): the record names the server certificate or key itself; no
    /// name or validity checks (RFC 7672 §3.1.1).
    DaneEe,
}

/// Selectors (RFC 6698 §2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Cert(0): the full DER certificate.
    Cert,
    /// SPKI(1): the DER SubjectPublicKeyInfo of the certificate.
    Spki,
}

/// Matching types (RFC 6698 §2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchingType {
    /// Full(0): the selected content itself.
    Full,
    /// SHA2-256(1): its SHA-256 digest (32 octets).
    Sha256,
    /// SHA2-512(2): its SHA-512 digest (64 octets).
    Sha512,
}

impl MatchingType {
    fn digest_len(self) -> Option<usize> {
        match self {
            MatchingType::Full => None,
            MatchingType::Sha256 => Some(32),
            MatchingType::Sha512 => Some(64),
        }
    }
}

/// Why a well-formed TLSA record cannot be used for SMTP. Unusable records
/// are not errors: they are set aside, and if none is left the RRset does
/// not authenticate anything (RFC 7672 §2.2, see [`DaneDecision`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnusableReason {
    /// Usage PKIX-TA(0) or PKIX-EE(1): not used with SMTP (RFC 7672 §3.1.3).
    PkixUsage(u8),
    /// A certificate usage other than 0–3 (RFC 6698 §2.1.1).
    UnknownUsage(u8),
    /// A selector other than Cert(0) or SPKI(1) (RFC 6698 §2.1.2).
    UnknownSelector(u8),
    /// A matching type other than Full(0), SHA2-256(1), SHA2-512(2)
    /// (RFC 6698 §2.1.3).
    UnknownMatchingType(u8),
    /// The data length does not fit the digest of the matching type
    /// (RFC 6698 §2.1.3, RFC 7671 §5).
    DigestLength {
        /// The record's matching type.
        matching_type: u8,
        /// Length of that digest.
        expected: usize,
        /// Length of the record's data.
        actual: usize,
    },
    /// Matching type Full(0) with no data (RFC 6698 §2.1.4).
    EmptyData,
}

impl fmt::Display for UnusableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnusableReason::PkixUsage(u) => write!(
                f,
                "certificate usage {u} (PKIX-{}) is not used with SMTP (RFC 7672 §3.1.3)",
                if *u == 0 { "TA" } else { "EE" }
            ),
            UnusableReason::UnknownUsage(u) => {
                write!(f, "unknown certificate usage {u} (RFC 6698 §2.1.1)")
            }
            UnusableReason::UnknownSelector(s) => {
                write!(f, "unknown selector {s} (RFC 6698 §2.1.2)")
            }
            UnusableReason::UnknownMatchingType(m) => {
                write!(f, "unknown matching type {m} (RFC 6698 §2.1.3)")
            }
            UnusableReason::DigestLength {
                matching_type,
                expected,
                actual,
            } => write!(
                f,
                "matching type {matching_type} needs {expected} octets of data, the record has {actual} (RFC 6698 §2.1.3)"
            ),
            UnusableReason::EmptyData => {
                write!(f, "matching type Full(0) with empty data (RFC 6698 §2.1.4)")
            }
        }
    }
}

/// A record set aside as unusable, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnusableRecord {
    /// The record as published.
    pub record: TlsaRecord,
    /// Why it cannot be used.
    pub reason: UnusableReason,
}

impl fmt::Display for UnusableRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLSA {}: {}", ParamsOnly(&self.record), self.reason)
    }
}

/// The three parameter fields of a TLSA record, as named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsaField {
    /// The certificate usage field.
    Usage,
    /// The selector field.
    Selector,
    /// The matching type field.
    MatchingType,
}

impl fmt::Display for TlsaField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsaField::Usage => "certificate usage",
            TlsaField::Selector => "selector",
            TlsaField::MatchingType => "matching type",
        })
    }
}

/// A TLSA record that could not be parsed at all (as opposed to a
/// well-formed record that is merely unusable, see [`UnusableReason`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsaParseError {
    /// The RDATA is shorter than the three parameter octets (RFC 6698 §2.1).
    RdataTooShort {
        /// Length of the RDATA received.
        len: usize,
    },
    /// The presentation form lacks a field (RFC 6698 §2.2).
    MissingField(TlsaField),
    /// A parameter is neither a decimal 0–255 nor an RFC 7218 mnemonic
    /// (RFC 6698 §2.2).
    BadField {
        /// Which field.
        field: TlsaField,
        /// The text found.
        text: String,
    },
    /// The presentation form has no certificate association data
    /// (RFC 6698 §2.2).
    MissingData,
    /// The certificate association data is not hexadecimal (RFC 6698 §2.2).
    BadHex {
        /// Offset of the bad character within the hex data (whitespace
        /// removed).
        offset: usize,
    },
    /// The certificate association data has an odd number of hex digits.
    OddHexDigits,
    /// In the RFC 3597 generic form (`\# <len> <hex>`), the declared length
    /// is missing, not a number, or differs from the data.
    GenericLength {
        /// The declared length, if it parsed.
        declared: Option<usize>,
        /// The number of octets of data found.
        actual: usize,
    },
}

impl fmt::Display for TlsaParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsaParseError::RdataTooShort { len } => write!(
                f,
                "TLSA RDATA of {len} octets is shorter than its 3 parameter octets (RFC 6698 §2.1)"
            ),
            TlsaParseError::MissingField(field) => {
                write!(f, "TLSA record lacks its {field} field (RFC 6698 §2.2)")
            }
            TlsaParseError::BadField { field, text } => write!(
                f,
                "TLSA {field} {text:?} is not a number 0-255 (RFC 6698 §2.2)"
            ),
            TlsaParseError::MissingData => write!(
                f,
                "TLSA record lacks its certificate association data (RFC 6698 §2.2)"
            ),
            TlsaParseError::BadHex { offset } => write!(
                f,
                "TLSA certificate association data is not hexadecimal at digit {offset} (RFC 6698 §2.2)"
            ),
            TlsaParseError::OddHexDigits => write!(
                f,
                "TLSA certificate association data has an odd number of hex digits (RFC 6698 §2.2)"
            ),
            TlsaParseError::GenericLength { declared, actual } => match declared {
                Some(d) => write!(
                    f,
                    "generic RDATA declares {d} octets but carries {actual} (RFC 3597 §5)"
                ),
                None => write!(f, "generic RDATA lacks a valid length (RFC 3597 §5)"),
            },
        }
    }
}

impl std::error::Error for TlsaParseError {}

impl TlsaRecord {
    /// A record from its four fields.
    pub fn new(usage: u8, selector: u8, matching_type: u8, data: impl Into<Vec<u8>>) -> Self {
        TlsaRecord {
            usage,
            selector,
            matching_type,
            data: data.into(),
        }
    }

    /// Parses the RDATA wire form (RFC 6698 §2.1): usage, selector and
    /// matching type octets, then the data.
    pub fn from_rdata(rdata: &[u8]) -> Result<Self, TlsaParseError> {
        match rdata {
            [usage, selector, matching_type, data @ ..] => {
                Ok(TlsaRecord::new(*usage, *selector, *matching_type, data))
            }
            _ => Err(TlsaParseError::RdataTooShort { len: rdata.len() }),
        }
    }

    /// The RDATA wire form (RFC 6698 §2.1).
    pub fn to_rdata(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.data.len());
        out.extend_from_slice(&[self.usage, self.selector, self.matching_type]);
        out.extend_from_slice(&self.data);
        out
    }

    /// Parses the presentation form of the RDATA (RFC 6698 §2.2): three
    /// decimal fields and the data in hex, which may contain whitespace, as
    /// in `"3 1 1 ab12…"`. The RFC 7218 mnemonics (`DANE-EE SPKI SHA2-256`)
    /// and the RFC 3597 generic form (`\# 35 030101…`) are accepted too.
    pub fn from_presentation(text: &str) -> Result<Self, TlsaParseError> {
        let mut tokens = text.split_ascii_whitespace();
        let first = tokens
            .next()
            .ok_or(TlsaParseError::MissingField(TlsaField::Usage))?;
        if first == "\\#" {
            let declared = tokens.next().and_then(parse_decimal::<usize>);
            let data = decode_hex(tokens)?;
            if declared != Some(data.len()) {
                return Err(TlsaParseError::GenericLength {
                    declared,
                    actual: data.len(),
                });
            }
            return TlsaRecord::from_rdata(&data);
        }
        let usage = parse_field(first, TlsaField::Usage)?;
        let selector = parse_field(
            tokens
                .next()
                .ok_or(TlsaParseError::MissingField(TlsaField::Selector))?,
            TlsaField::Selector,
        )?;
        let matching_type = parse_field(
            tokens
                .next()
                .ok_or(TlsaParseError::MissingField(TlsaField::MatchingType))?,
            TlsaField::MatchingType,
        )?;
        let data = decode_hex(tokens)?;
        if data.is_empty() {
            return Err(TlsaParseError::MissingData);
        }
        Ok(TlsaRecord::new(usage, selector, matching_type, data))
    }

    /// Whether this record can be used for SMTP, and as what
    /// (RFC 7672 §3.1, RFC 6698 §2.1).
    pub fn usability(&self) -> Result<(Usage, Selector, MatchingType), UnusableReason> {
        let usage = match self.usage {
            2 => Usage::DaneTa,
            3 => Usage::DaneEe,
            u @ (0 | 1) => return Err(UnusableReason::PkixUsage(u)),
            u => return Err(UnusableReason::UnknownUsage(u)),
        };
        let selector = match self.selector {
            0 => Selector::Cert,
            1 => Selector::Spki,
            s => return Err(UnusableReason::UnknownSelector(s)),
        };
        let matching = match self.matching_type {
            0 => MatchingType::Full,
            1 => MatchingType::Sha256,
            2 => MatchingType::Sha512,
            m => return Err(UnusableReason::UnknownMatchingType(m)),
        };
        match matching.digest_len() {
            Some(expected) if expected != self.data.len() => {
                return Err(UnusableReason::DigestLength {
                    matching_type: self.matching_type,
                    expected,
                    actual: self.data.len(),
                })
            }
            None if self.data.is_empty() => return Err(UnusableReason::EmptyData),
            _ => {}
        }
        Ok((usage, selector, matching))
    }
}

impl FromStr for TlsaRecord {
    type Err = TlsaParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlsaRecord::from_presentation(s)
    }
}

/// The presentation form, `usage selector matching-type HEX` (RFC 6698
/// §2.2), or the RFC 3597 generic form when the data is empty.
impl fmt::Display for TlsaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.data.is_empty() {
            return write!(
                f,
                "\\# 3 {:02X}{:02X}{:02X}",
                self.usage, self.selector, self.matching_type
            );
        }
        write!(f, "{} ", ParamsOnly(self))?;
        for b in &self.data {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Shows a record's parameters with the start of its data, for messages.
struct ParamsOnly<'a>(&'a TlsaRecord);

impl fmt::Display for ParamsOnly<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.0.usage, self.0.selector, self.0.matching_type
        )
    }
}

fn parse_decimal<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_field(text: &str, field: TlsaField) -> Result<u8, TlsaParseError> {
    if let Some(n) = parse_decimal::<u8>(text) {
        return Ok(n);
    }
    // RFC 7218 acronyms.
    let upper = text.to_ascii_uppercase();
    let value = match (field, upper.as_str()) {
        (TlsaField::Usage, "PKIX-TA") => Some(0),
        (TlsaField::Usage, "PKIX-EE") => Some(1),
        (TlsaField::Usage, "DANE-TA") => Some(2),
        (TlsaField::Usage, "DANE-EE") => Some(3),
        (TlsaField::Usage, "PRIVCERT") => Some(255),
        (TlsaField::Selector, "CERT") => Some(0),
        (TlsaField::Selector, "SPKI") => Some(1),
        (TlsaField::Selector, "PRIVSEL") => Some(255),
        (TlsaField::MatchingType, "FULL") => Some(0),
        (TlsaField::MatchingType, "SHA2-256") => Some(1),
        (TlsaField::MatchingType, "SHA2-512") => Some(2),
        (TlsaField::MatchingType, "PRIVMATCH") => Some(255),
        _ => None,
    };
    value.ok_or_else(|| TlsaParseError::BadField {
        field,
        text: text.to_owned(),
    })
}

fn decode_hex<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Vec<u8>, TlsaParseError> {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    let mut offset = 0usize;
    for token in tokens {
        for c in token.chars() {
            let nibble = c
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
                .ok_or(TlsaParseError::BadHex { offset })?;
            high = match high {
                None => Some(nibble),
                Some(h) => {
                    out.push((h << 4) | nibble);
                    None
                }
            };
            offset += 1;
        }
    }
    if high.is_some() {
        return Err(TlsaParseError::OddHexDigits);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The usable set and the decision
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct UsableRecord {
    record: TlsaRecord,
    usage: Usage,
    selector: Selector,
    matching: MatchingType,
}

impl UsableRecord {
    /// Whether this record matches a certificate (`cert` is its DER, `spki`
    /// its SubjectPublicKeyInfo DER when it could be parsed).
    fn matches(&self, cert: &[u8], spki: Option<&[u8]>) -> bool {
        let selected = match self.selector {
            Selector::Cert => cert,
            Selector::Spki => match spki {
                Some(spki) => spki,
                None => return false,
            },
        };
        match self.matching {
            MatchingType::Full => selected == self.record.data.as_slice(),
            MatchingType::Sha256 => Sha256::digest(selected).as_slice() == self.record.data,
            MatchingType::Sha512 => Sha512::digest(selected).as_slice() == self.record.data,
        }
    }
}

/// A TLSA RRset with at least one usable record: what DANE authentication
/// works from. Built by [`UsableTlsa::new`] or [`DaneDecision::from_lookup`].
///
/// Digest algorithm agility (RFC 7671 §9, RFC 7672 §5) is applied: for each
/// usage and selector, when SHA2-512 records are present the SHA2-256 ones
/// are set aside (see [`UsableTlsa::superseded`]), so a weaker digest cannot
/// be used to downgrade. Full(0) records are never set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsableTlsa {
    usable: Vec<UsableRecord>,
    unusable: Vec<UnusableRecord>,
    superseded: Vec<TlsaRecord>,
}

/// No record of the RRset is usable (RFC 7672 §2.2): DANE cannot
/// authenticate the server. See [`DaneDecision::TlsWithoutAuthentication`]
/// for what the client does then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoUsableTlsa {
    /// Every record of the RRset, with why it is unusable (empty when the
    /// RRset was empty).
    pub unusable: Vec<UnusableRecord>,
}

impl fmt::Display for NoUsableTlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "none of the {} TLSA records is usable for SMTP, so DANE cannot authenticate the server (RFC 7672 §2.2)",
            self.unusable.len()
        )?;
        for u in &self.unusable {
            write!(f, "; {u}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoUsableTlsa {}

impl UsableTlsa {
    /// Classifies the records of a DNSSEC-validated TLSA RRset. Fails with
    /// [`NoUsableTlsa`] when no record is usable (or the RRset is empty).
    pub fn new(records: impl IntoIterator<Item = TlsaRecord>) -> Result<Self, NoUsableTlsa> {
        let mut usable = Vec::new();
        let mut unusable = Vec::new();
        for record in records {
            match record.usability() {
                Ok((usage, selector, matching)) => usable.push(UsableRecord {
                    record,
                    usage,
                    selector,
                    matching,
                }),
                Err(reason) => unusable.push(UnusableRecord { record, reason }),
            }
        }
        if usable.is_empty() {
            return Err(NoUsableTlsa { unusable });
        }
        // Digest algorithm agility: SHA2-512 supersedes SHA2-256 for the same
        // usage and selector (RFC 7671 §9).
        let strong: Vec<(Usage, Selector)> = usable
            .iter()
            .filter(|r| r.matching == MatchingType::Sha512)
            .map(|r| (r.usage, r.selector))
            .collect();
        let (kept, dropped): (Vec<_>, Vec<_>) = usable.into_iter().partition(|r| {
            r.matching != MatchingType::Sha256 || !strong.contains(&(r.usage, r.selector))
        });
        Ok(UsableTlsa {
            usable: kept,
            unusable,
            superseded: dropped.into_iter().map(|r| r.record).collect(),
        })
    }

    /// The records authentication uses.
    pub fn records(&self) -> impl Iterator<Item = &TlsaRecord> {
        self.usable.iter().map(|r| &r.record)
    }

    /// The records of the RRset that were unusable, with the reasons.
    pub fn unusable(&self) -> &[UnusableRecord] {
        &self.unusable
    }

    /// Usable SHA2-256 records set aside because SHA2-512 records with the
    /// same usage and selector are present (RFC 7671 §9).
    pub fn superseded(&self) -> &[TlsaRecord] {
        &self.superseded
    }

    /// Whether any DANE-TA(2) record is in use, so that name checks apply
    /// when one matches (RFC 7672 §3.2.2).
    pub fn has_dane_ta(&self) -> bool {
        self.usable.iter().any(|r| r.usage == Usage::DaneTa)
    }

    fn of_usage(&self, usage: Usage) -> impl Iterator<Item = &UsableRecord> {
        self.usable.iter().filter(move |r| r.usage == usage)
    }
}

/// The outcome of the caller's DNSSEC-validating TLSA lookup for one MX host
/// (RFC 7672 §2.1, §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsaLookup {
    /// The answer validated as secure: the records, possibly none (a
    /// validated NODATA or NXDOMAIN).
    Secure(Vec<TlsaRecord>),
    /// The answer is provably insecure (unsigned zone): DANE does not apply.
    Insecure,
    /// The lookup failed or validated as bogus (SERVFAIL, timeout, bad
    /// signatures): the result is unknown, and could be an attack.
    Failed,
}

/// How the client came to the host it is about to connect to, which decides
/// whether DANE applies to it at all (RFC 7672 §2.2.1, §2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostSource {
    /// The host is named by an MX RRset that validated as secure (DNSSEC),
    /// as was any CNAME leading to it: DANE applies (RFC 7672 §2.2.1).
    SecureMx,
    /// The host is named by an MX RRset that is insecure (unsigned, or
    /// reached through an insecure CNAME): an attacker could have chosen the
    /// host, so DANE does not apply to it, whatever its TLSA records say
    /// (RFC 7672 §2.2.1); use the non-DANE policy. (A bogus or failed MX
    /// lookup gives no host at all: the message is deferred.)
    InsecureMx,
    /// The next-hop domain has no MX records and is itself the host
    /// (RFC 7672 §2.2.2), or the host was configured by the administrator:
    /// DANE applies, with the TLSA base domain chosen as §2.2.2 says.
    NoMx,
}

/// What the SMTP client does with one MX host, given its TLSA lookup
/// (RFC 7672 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaneDecision {
    /// At least one usable record: TLS is mandatory and the server must
    /// authenticate against the records (use a [`DaneVerifier`] or
    /// [`dane_check`]); on failure, do not deliver to this host
    /// (RFC 7672 §2.2, §3).
    Authenticate(UsableTlsa),
    /// Secure TLSA records were published but none is usable: the server has
    /// committed to STARTTLS, so TLS is still mandatory, but the certificate
    /// cannot be authenticated (RFC 7672 §2.2; Postfix's "encrypt" level).
    /// Never fall back to cleartext for this host.
    TlsWithoutAuthentication {
        /// The records, with why each is unusable.
        unusable: Vec<UnusableRecord>,
    },
    /// No secure TLSA records (the RRset is empty or insecure), or the host
    /// came from an insecure MX RRset: DANE does not apply; use the client's
    /// non-DANE policy (opportunistic TLS, or MTA-STS) for this host.
    NotApplicable,
    /// The lookup failed: do not connect to this host; try the next MX host
    /// or defer the message (RFC 7672 §2.1, §2.2). Falling back to
    /// unauthenticated TLS or cleartext would let an attacker downgrade by
    /// blocking DNS.
    DoNotConnect,
}

impl DaneDecision {
    /// Decides from where the host came from and the caller's TLSA lookup
    /// result: a host from an insecure MX RRset is
    /// [`NotApplicable`](DaneDecision::NotApplicable) whatever the lookup
    /// gave (RFC 7672 §2.2.1); otherwise the TLSA answer decides (§2.2).
    ///
    /// ```
    /// use starttls::policy::dane::{DaneDecision, HostSource, TlsaLookup, TlsaRecord};
    /// let record: TlsaRecord = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".parse().unwrap();
    /// let secure = DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Secure(vec![record.clone()]));
    /// assert!(secure.requires_tls());
    /// // The same TLSA records for a host an insecure MX RRset named: DANE does not apply.
    /// let insecure = DaneDecision::from_lookup(HostSource::InsecureMx, TlsaLookup::Secure(vec![record]));
    /// assert_eq!(insecure, DaneDecision::NotApplicable);
    /// ```
    pub fn from_lookup(source: HostSource, lookup: TlsaLookup) -> Self {
        if source == HostSource::InsecureMx {
            return DaneDecision::NotApplicable;
        }
        match lookup {
            TlsaLookup::Secure(records) if records.is_empty() => DaneDecision::NotApplicable,
            TlsaLookup::Secure(records) => match UsableTlsa::new(records) {
                Ok(tlsa) => DaneDecision::Authenticate(tlsa),
                Err(NoUsableTlsa { unusable }) => {
                    DaneDecision::TlsWithoutAuthentication { unusable }
                }
            },
            TlsaLookup::Insecure => DaneDecision::NotApplicable,
            TlsaLookup::Failed => DaneDecision::DoNotConnect,
        }
    }

    /// Whether the client must use TLS with this host.
    pub fn requires_tls(&self) -> bool {
        matches!(
            self,
            DaneDecision::Authenticate(_) | DaneDecision::TlsWithoutAuthentication { .. }
        )
    }
}

// ---------------------------------------------------------------------------
// Reference identifiers
// ---------------------------------------------------------------------------

/// The DNS names a DANE-TA(2) authenticated server certificate must carry
/// one of (RFC 7672 §3.2.2): the TLSA base domain (the MX host name, or its
/// DNSSEC-secure CNAME expansion), the original MX host name if it differs,
/// and, when the MX RRset was DNSSEC-secure, the next-hop domain. Names are
/// kept in A-label form, lower-cased, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceIds(Vec<String>);

/// A reference identifier that is not a usable DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReferenceIdError {
    /// No reference identifier was given (RFC 7672 §3.2.2 needs at least
    /// the TLSA base domain).
    Empty,
    /// A name is not a DNS host name in A-label form.
    Invalid {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for ReferenceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceIdError::Empty => write!(
                f,
                "no reference identifier: at least the TLSA base domain is needed (RFC 7672 §3.2.2)"
            ),
            ReferenceIdError::Invalid { name, reason } => write!(
                f,
                "reference identifier {name:?} is not a DNS host name: {reason} (RFC 7672 §3.2.2)"
            ),
        }
    }
}

impl std::error::Error for ReferenceIdError {}

impl ReferenceIds {
    /// Validates and normalizes the names. Internationalized names must be
    /// given as A-labels (`xn--…`).
    pub fn new<I, S>(names: I) -> Result<Self, ReferenceIdError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let name = name.as_ref();
            let normalized =
                normalize_reference(name).map_err(|reason| ReferenceIdError::Invalid {
                    name: name.to_owned(),
                    reason,
                })?;
            if !out.contains(&normalized) {
                out.push(normalized);
            }
        }
        if out.is_empty() {
            return Err(ReferenceIdError::Empty);
        }
        Ok(ReferenceIds(out))
    }

    /// The names, normalized.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

fn normalize_reference(name: &str) -> Result<String, &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 253 {
        return Err("longer than 253 octets");
    }
    if ends_in_number(name) {
        return Err(
            "the last label is a number, which resolvers read as an IPv4 address (RFC 1123 §2.1)",
        );
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label longer than 63 octets");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a label has a character other than a letter, digit, '-' or '_'");
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// Whether a presented identifier matches a (normalized) reference
/// identifier (RFC 7672 §3.2.3): equal ignoring ASCII case and a trailing
/// dot, or a wildcard `*` forming the whole left-most label, which matches
/// exactly one label. Partial-label wildcards (`f*.example.com`) match
/// nothing.
fn name_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    if let Some(rest) = presented.strip_prefix("*.") {
        if rest.is_empty() || rest.contains('*') {
            return false;
        }
        match reference.split_once('.') {
            Some((label, ref_rest)) => !label.is_empty() && ref_rest.eq_ignore_ascii_case(rest),
            None => false,
        }
    } else {
        !presented.contains('*') && presented.eq_ignore_ascii_case(reference)
    }
}

/// The identifiers a certificate presents for name checks (RFC 7672
/// §3.2.3): its subjectAltName DNS-IDs when it has any, else the subject's
/// CN-IDs. `None` when the certificate cannot be parsed.
fn presented_ids(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    let san = cert.subject_alternative_name().ok()?;
    let dns_ids: Vec<String> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !dns_ids.is_empty() {
        return Some(dns_ids);
    }
    Some(
        cert.subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

/// How a chain was authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaneMatch {
    /// Which usage authenticated it.
    pub usage: Usage,
    /// The record that matched.
    pub record: TlsaRecord,
    /// Position in the presented chain of the certificate the record
    /// matched: 0 (the server certificate) for DANE-EE, 1 or more for a
    /// DANE-TA trust anchor the server sent; `None` when a DANE-TA trust
    /// anchor came from the record itself (`2 0 0`, `2 1 0`) and is not in
    /// the chain. A DANE-TA match is never at 0.
    pub chain_position: Option<usize>,
    /// For DANE-TA, the reference identifier the certificate matched.
    pub matched_name: Option<String>,
}

/// Why DANE authentication failed. Each variant names the rule.
///
/// Inside a rustls handshake the [`DaneVerifier`] reports this as
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`;
/// [`DaneError::from_rustls`] gets it back.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DaneError {
    /// The server sent no certificate.
    EmptyChain,
    /// A certificate needed for matching could not be parsed.
    MalformedCertificate {
        /// Its position in the chain (0 is the server certificate).
        position: usize,
    },
    /// No usable record matches the server certificate (DANE-EE,
    /// RFC 7672 §3.1.1) or any certificate or key of the chain (DANE-TA,
    /// RFC 7672 §3.1.2).
    NoMatch {
        /// DANE-EE(3) records tried.
        ee_records: usize,
        /// DANE-TA(2) records tried.
        ta_records: usize,
    },
    /// A DANE-TA(2) record matched a trust anchor, but the server
    /// certificate does not chain to it validly (signatures, validity dates,
    /// basic constraints, key purpose; RFC 7672 §3.1.2, RFC 5280 §6).
    TrustAnchorChain {
        /// The record that matched the trust anchor.
        record: TlsaRecord,
        /// Where the trust anchor is in the chain, if it is.
        position: Option<usize>,
        /// What path validation reported.
        error: CertificateError,
    },
    /// The chain leads to a DANE-TA(2) trust anchor, but the server
    /// certificate carries none of the reference identifiers (RFC 7672
    /// §3.2.2, §3.2.3).
    NameMismatch {
        /// The record that matched the trust anchor.
        record: TlsaRecord,
        /// The DNS-IDs (or, without any, the CN-IDs) of the certificate.
        presented: Vec<String>,
        /// The reference identifiers.
        reference_ids: Vec<String>,
    },
    /// A DANE-TA(2) record designates the server certificate itself (its
    /// certificate or its key), as for a self-signed server certificate. A
    /// DANE-TA record names a trust anchor that *issued* the server
    /// certificate (RFC 7672 §3.1.2, RFC 7671 §5.2); a server certificate
    /// is authenticated by itself only with DANE-EE(3) (RFC 7672 §3.1.1), so
    /// this is refused whatever the record's selector and matching type.
    TrustAnchorIsServerCertificate {
        /// The record that designates the server certificate.
        record: TlsaRecord,
    },
}

impl fmt::Display for DaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaneError::EmptyChain => write!(f, "DANE: the server sent no certificate"),
            DaneError::MalformedCertificate { position } => write!(
                f,
                "DANE: certificate {position} of the server's chain cannot be parsed (RFC 5280 §4)"
            ),
            DaneError::NoMatch {
                ee_records,
                ta_records,
            } => write!(
                f,
                "DANE: no TLSA record matches the server's chain ({ee_records} DANE-EE records for the server certificate, RFC 7672 §3.1.1; {ta_records} DANE-TA records for a trust anchor, RFC 7672 §3.1.2)"
            ),
            DaneError::TrustAnchorChain {
                record,
                position,
                error,
            } => {
                write!(f, "DANE-TA: TLSA {} matched the trust anchor", ParamsOnly(record))?;
                if let Some(p) = position {
                    write!(f, " (chain certificate {p})")?;
                }
                write!(
                    f,
                    " but the server certificate does not chain to it: {error} (RFC 7672 §3.1.2)"
                )
            }
            DaneError::NameMismatch {
                record,
                presented,
                reference_ids,
            } => write!(
                f,
                "DANE-TA: TLSA {} matched, but the server certificate names {presented:?} match none of {reference_ids:?} (RFC 7672 §3.2.3)",
                ParamsOnly(record)
            ),
            DaneError::TrustAnchorIsServerCertificate { record } => write!(
                f,
                "DANE-TA: TLSA {} designates the server certificate itself, not a trust anchor that issued it; a self-signed server certificate needs a DANE-EE(3) record (RFC 7672 §3.1.1, §3.1.2)",
                ParamsOnly(record)
            ),
        }
    }
}

impl std::error::Error for DaneError {}

impl DaneError {
    /// The [`DaneError`] inside an error a [`DaneVerifier`] returned through
    /// rustls, if it is one.
    pub fn from_rustls(error: &rustls::Error) -> Option<&DaneError> {
        verifier::from_rustls(error)
    }

    fn rank(&self) -> u8 {
        match self {
            DaneError::EmptyChain
            | DaneError::NoMatch { .. }
            | DaneError::TrustAnchorIsServerCertificate { .. } => 0,
            DaneError::TrustAnchorChain { .. } => 1,
            DaneError::MalformedCertificate { .. } => 2,
            DaneError::NameMismatch { .. } => 3,
        }
    }
}

impl From<DaneError> for rustls::Error {
    fn from(e: DaneError) -> Self {
        verifier::to_rustls(e)
    }
}

/// Authenticates a certificate chain against usable TLSA records, for
/// callers that bring their own TLS stack (RFC 7672 §3).
///
/// `chain` is as the server sent it, server certificate first. `now` is the
/// time for DANE-TA(2) path validation; DANE-EE(3) ignores it, as it ignores
/// names (RFC 7672 §3.1.1). `algorithms` verify certificate signatures,
/// e.g. `&provider.signature_verification_algorithms` of a rustls
/// [`CryptoProvider`].
///
/// DANE-EE(3) records are tried first, then DANE-TA(2): a record matching a
/// certificate of the chain (after the server certificate) or its key makes
/// that certificate the trust anchor; `2 0 0` and `2 1 0` records also work
/// when the anchor is not in the chain (RFC 7671 §5.2). A DANE-TA record
/// never designates the server certificate itself: one that matches it (a
/// self-signed server certificate published as `2 x x`) is refused with
/// [`DaneError::TrustAnchorIsServerCertificate`], in all its forms. The server
/// certificate must then chain to the anchor (RFC 5280 path validation at
/// `now`; the anchor's own dates are not checked) and carry a reference
/// identifier (RFC 7672 §3.2.3). Any one matching record suffices.
pub fn dane_check(
    tlsa: &UsableTlsa,
    chain: &[CertificateDer<'_>],
    reference_ids: &ReferenceIds,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<DaneMatch, DaneError> {
    let (end_entity, intermediates) = chain.split_first().ok_or(DaneError::EmptyChain)?;
    check_chain(
        tlsa,
        end_entity,
        intermediates,
        reference_ids,
        now,
        algorithms,
    )
}

fn check_chain(
    tlsa: &UsableTlsa,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    reference_ids: &ReferenceIds,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<DaneMatch, DaneError> {
    let ee = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .ok()
        .map(|(_, c)| c);
    let ee_spki = ee.as_ref().map(|c| c.public_key().raw);

    // DANE-EE(3): the server certificate or its key; no name or date checks
    // (RFC 7672 §3.1.1).
    for r in tlsa.of_usage(Usage::DaneEe) {
        if r.matches(end_entity.as_ref(), ee_spki) {
            return Ok(DaneMatch {
                usage: Usage::DaneEe,
                record: r.record.clone(),
                chain_position: Some(0),
                matched_name: None,
            });
        }
    }
    let ee_records = tlsa.of_usage(Usage::DaneEe).count();
    let ta_records = tlsa.of_usage(Usage::DaneTa).count();
    let no_match = DaneError::NoMatch {
        ee_records,
        ta_records,
    };
    let Some(ee) = ee else {
        // Neither SPKI matching nor name checks are possible.
        return Err(if ta_records > 0 || ee_records > 0 {
            DaneError::MalformedCertificate { position: 0 }
        } else {
            no_match
        });
    };
    if ta_records == 0 {
        return Err(no_match);
    }

    // DANE-TA(2) (RFC 7672 §3.1.2): the record designates a trust anchor
    // that issued the server certificate, never the server certificate
    // itself (that is DANE-EE's job, §3.1.1). A record matching the server
    // certificate or its key, and an anchor with the server's own key (a
    // `2 0 0` / `2 1 0` copy of a self-signed server certificate, or the
    // server certificate sent again in the chain), authenticate nothing,
    // whatever the selector and matching type.
    let own_spki = ee.public_key().raw;
    let own_key = der_contents(own_spki, 0x30);
    let designates_server = tlsa
        .of_usage(Usage::DaneTa)
        .find(|r| r.matches(end_entity.as_ref(), Some(own_spki)))
        .map(|r| &r.record);
    let (anchors, own): (Vec<_>, Vec<_>) = ta_candidates(tlsa, &ee, intermediates)
        .into_iter()
        .partition(|(_, _, anchor)| Some(anchor.subject_public_key_info.as_ref()) != own_key);
    let mut best: Option<DaneError> = designates_server
        .or_else(|| own.first().map(|(record, _, _)| *record))
        .map(|record| DaneError::TrustAnchorIsServerCertificate {
            record: record.clone(),
        });
    let mut names: Option<Option<Result<String, Vec<String>>>> = None;
    for (record, position, anchor) in anchors {
        let error = match verify_to_anchor(end_entity, intermediates, anchor, now, algorithms) {
            Ok(()) => {
                let names = names.get_or_insert_with(|| match_names(&ee, reference_ids));
                match names {
                    Some(Ok(name)) => {
                        return Ok(DaneMatch {
                            usage: Usage::DaneTa,
                            record: record.clone(),
                            chain_position: position,
                            matched_name: Some(name.clone()),
                        })
                    }
                    Some(Err(presented)) => DaneError::NameMismatch {
                        record: record.clone(),
                        presented: presented.clone(),
                        reference_ids: reference_ids.as_slice().to_vec(),
                    },
                    // The subjectAltName extension is malformed or repeated.
                    None => DaneError::MalformedCertificate { position: 0 },
                }
            }
            Err(error) => DaneError::TrustAnchorChain {
                record: record.clone(),
                position,
                error,
            },
        };
        if best.as_ref().is_none_or(|b| error.rank() > b.rank()) {
            best = Some(error);
        }
    }
    Err(best.unwrap_or(no_match))
}

/// The trust anchors the DANE-TA(2) records designate: certificates of the
/// chain (after the server certificate) whose certificate or key matches a
/// record, and anchors carried whole by `2 0 0` / `2 1 0` records.
fn ta_candidates<'r>(
    tlsa: &'r UsableTlsa,
    ee: &X509Certificate<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Vec<(&'r TlsaRecord, Option<usize>, TrustAnchor<'static>)> {
    let mut out = Vec::new();
    let parsed: Vec<Option<X509Certificate<'_>>> = intermediates
        .iter()
        .map(|c| {
            x509_parser::parse_x509_certificate(c.as_ref())
                .ok()
                .map(|(_, c)| c)
        })
        .collect();
    for r in tlsa.of_usage(Usage::DaneTa) {
        let mut in_chain = false;
        for (i, (der, cert)) in intermediates.iter().zip(&parsed).enumerate() {
            let spki = cert.as_ref().map(|c| c.public_key().raw);
            if !r.matches(der.as_ref(), spki) {
                continue;
            }
            in_chain = true;
            let mut store = RootCertStore::empty();
            if store.add(der.clone().into_owned()).is_ok() {
                out.extend(
                    store
                        .roots
                        .into_iter()
                        .map(|anchor| (&r.record, Some(i + 1), anchor)),
                );
            }
        }
        if in_chain || r.matching != MatchingType::Full {
            continue;
        }
        match r.selector {
            // `2 0 0`: the record is the trust anchor certificate.
            Selector::Cert => {
                let mut store = RootCertStore::empty();
                if store
                    .add(CertificateDer::from(r.record.data.clone()))
                    .is_ok()
                {
                    out.extend(store.roots.into_iter().map(|a| (&r.record, None, a)));
                }
            }
            // `2 1 0`: the record is the trust anchor's key; its name is
            // whatever issuer name in the chain it signed for.
            Selector::Spki => {
                let Some(spki) = der_contents(&r.record.data, 0x30) else {
                    continue;
                };
                let mut issuers: Vec<&[u8]> = Vec::new();
                let chain_certs =
                    std::iter::once(Some(ee)).chain(parsed.iter().map(Option::as_ref));
                for cert in chain_certs.flatten() {
                    if let Some(issuer) = der_contents(cert.issuer().as_raw(), 0x30) {
                        if !issuers.contains(&issuer) {
                            issuers.push(issuer);
                        }
                    }
                }
                for issuer in issuers {
                    out.push((
                        &r.record,
                        None,
                        TrustAnchor {
                            subject: Der::from(issuer.to_vec()),
                            subject_public_key_info: Der::from(spki.to_vec()),
                            name_constraints: None,
                        },
                    ));
                }
            }
        }
    }
    out
}

/// RFC 5280 path validation of the server certificate up to one trust
/// anchor, with rustls's webpki (server-auth key purpose, validity at `now`).
fn verify_to_anchor(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchor: TrustAnchor<'static>,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), CertificateError> {
    let roots = RootCertStore {
        roots: vec![anchor],
    };
    let result = ParsedCertificate::try_from(end_entity).and_then(|parsed| {
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            intermediates,
            now,
            algorithms.all,
        )
    });
    match result {
        Ok(()) => Ok(()),
        Err(rustls::Error::InvalidCertificate(e)) => Err(e),
        Err(other) => Err(CertificateError::Other(OtherError(Arc::new(other)))),
    }
}

/// The reference identifier the certificate matches, or its presented
/// identifiers if none matches (RFC 7672 §3.2.3); `None` when its names
/// cannot be read.
fn match_names(
    ee: &X509Certificate<'_>,
    reference_ids: &ReferenceIds,
) -> Option<Result<String, Vec<String>>> {
    let presented = presented_ids(ee)?;
    for reference in reference_ids.as_slice() {
        if presented.iter().any(|p| name_matches(p, reference)) {
            return Some(Ok(reference.clone()));
        }
    }
    Some(Err(presented))
}

/// The contents of a single DER element with `tag` spanning all of `input`.
fn der_contents(input: &[u8], tag: u8) -> Option<&[u8]> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() == len).then_some(rest)
}

// ---------------------------------------------------------------------------
// The rustls verifier
// ---------------------------------------------------------------------------

/// A rustls server certificate verifier that authenticates with DANE
/// (RFC 7672 §3) instead of the WebPKI: install it with
/// `ClientConfig::builder().dangerous().with_custom_certificate_verifier(..)`
/// on the connection to the one MX host whose TLSA records it holds.
///
/// The `ServerName` rustls passes is not used for name checks: the
/// configured [`ReferenceIds`] are (RFC 7672 §3.2.2). Set it to the TLSA
/// base domain so that it is sent as SNI (RFC 7672 §8.1). Handshake
/// signatures are verified with the provider's algorithms. A failure is
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` holding
/// a [`DaneError`]; see [`DaneError::from_rustls`].
#[derive(Debug)]
pub struct DaneVerifier {
    tlsa: UsableTlsa,
    reference_ids: ReferenceIds,
    algorithms: WebPkiSupportedAlgorithms,
    last_match: Mutex<Option<DaneMatch>>,
}

impl DaneVerifier {
    /// A verifier for one MX host, with the signature algorithms of
    /// `provider`.
    pub fn new(tlsa: UsableTlsa, reference_ids: ReferenceIds, provider: &CryptoProvider) -> Self {
        DaneVerifier {
            tlsa,
            reference_ids,
            algorithms: provider.signature_verification_algorithms,
            last_match: Mutex::new(None),
        }
    }

    /// The records it authenticates with.
    pub fn tlsa(&self) -> &UsableTlsa {
        &self.tlsa
    }

    /// The reference identifiers for DANE-TA(2) name checks.
    pub fn reference_ids(&self) -> &ReferenceIds {
        &self.reference_ids
    }

    /// How the last successfully verified chain was authenticated (for
    /// logging or a TLS-RPT report).
    pub fn last_match(&self) -> Option<DaneMatch> {
        self.last_match.lock().ok().and_then(|m| m.clone())
    }

    /// [`dane_check`] with this verifier's records, names and algorithms.
    pub fn check(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<DaneMatch, DaneError> {
        dane_check(
            &self.tlsa,
            chain,
            &self.reference_ids,
            now,
            &self.algorithms,
        )
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = check_chain(
            &self.tlsa,
            end_entity,
            intermediates,
            &self.reference_ids,
            now,
            &self.algorithms,
        )?;
        if let Ok(mut last) = self.last_match.lock() {
            *last = Some(found);
        }
        Ok(ServerCertVerified::assertion())
    }

    verify_signatures_with_algorithms!();
}

#[cfg(all(test, feature = "ring"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::super::test_support::{
        self, client_config, handshake, sha256, sha512, spki, Ca, Issued,
    };
    use super::*;

    const MX: &str = "mx.example.com";

    fn ca(name: &str) -> Ca {
        Ca::new(name)
    }

    fn leaf_with(sans: &[&'static str], cn: &'static str, expired: bool, ca: &Ca) -> Issued {
        ca.issue(&test_support::Leaf {
            dns: sans.to_vec(),
            cn: vec![cn],
            expired,
            ..test_support::Leaf::default()
        })
    }

    fn leaf(sans: &[&'static str], ca: &Ca) -> Issued {
        test_support::leaf(ca, sans, "server")
    }

    fn tlsa(records: Vec<TlsaRecord>) -> UsableTlsa {
        UsableTlsa::new(records).unwrap()
    }

    fn refs(names: &[&str]) -> ReferenceIds {
        ReferenceIds::new(names).unwrap()
    }

    fn algs() -> WebPkiSupportedAlgorithms {
        rustls::crypto::ring::default_provider().signature_verification_algorithms
    }

    fn check(
        records: Vec<TlsaRecord>,
        chain: &[CertificateDer<'_>],
        names: &[&str],
    ) -> Result<DaneMatch, DaneError> {
        dane_check(
            &tlsa(records),
            chain,
            &refs(names),
            UnixTime::now(),
            &algs(),
        )
    }

    // --- parsing -----------------------------------------------------------

    #[test]
    fn presentation_and_rdata_round_trip() {
        let r: TlsaRecord =
            "3 1 1 0123456789ABCDEF 0123456789abcdef0123456789abcdef0123456789abcdef"
                .parse()
                .unwrap();
        assert_eq!((r.usage, r.selector, r.matching_type), (3, 1, 1));
        assert_eq!(r.data.len(), 32);
        assert_eq!(TlsaRecord::from_rdata(&r.to_rdata()).unwrap(), r);
        assert_eq!(r.to_string().parse::<TlsaRecord>().unwrap(), r);
        assert!(r.to_string().starts_with("3 1 1 0123456789ABCDEF01"));

        let m: TlsaRecord = "DANE-TA spki sha2-512 00ff".parse().unwrap();
        assert_eq!(
            (m.usage, m.selector, m.matching_type, m.data),
            (2, 1, 2, vec![0, 255])
        );

        let g = TlsaRecord::from_presentation("\\# 5 030101 abcd").unwrap();
        assert_eq!(g, TlsaRecord::new(3, 1, 1, vec![0xab, 0xcd]));

        let empty = TlsaRecord::from_rdata(&[3, 1, 1]).unwrap();
        assert!(empty.data.is_empty());
        assert_eq!(empty.to_string(), "\\# 3 030101");
        assert_eq!(empty.to_string().parse::<TlsaRecord>().unwrap(), empty);
    }

    #[test]
    fn malformed_records_are_errors() {
        use TlsaParseError as E;
        assert_eq!(
            TlsaRecord::from_rdata(&[3, 1]),
            Err(E::RdataTooShort { len: 2 })
        );
        assert_eq!(
            "".parse::<TlsaRecord>(),
            Err(E::MissingField(TlsaField::Usage))
        );
        assert_eq!(
            "3".parse::<TlsaRecord>(),
            Err(E::MissingField(TlsaField::Selector))
        );
        assert_eq!(
            "3 1".parse::<TlsaRecord>(),
            Err(E::MissingField(TlsaField::MatchingType))
        );
        assert_eq!("3 1 1".parse::<TlsaRecord>(), Err(E::MissingData));
        assert!(matches!(
            "256 1 1 00".parse::<TlsaRecord>(),
            Err(E::BadField {
                field: TlsaField::Usage,
                ..
            })
        ));
        assert!(matches!(
            "3 +1 1 00".parse::<TlsaRecord>(),
            Err(E::BadField {
                field: TlsaField::Selector,
                ..
            })
        ));
        assert!(matches!(
            "3 1 x 00".parse::<TlsaRecord>(),
            Err(E::BadField {
                field: TlsaField::MatchingType,
                ..
            })
        ));
        assert_eq!(
            "3 1 1 0g".parse::<TlsaRecord>(),
            Err(E::BadHex { offset: 1 })
        );
        assert_eq!("3 1 1 abc".parse::<TlsaRecord>(), Err(E::OddHexDigits));
        assert_eq!(
            TlsaRecord::from_presentation("\\# 4 030101"),
            Err(E::GenericLength {
                declared: Some(4),
                actual: 3
            })
        );
        assert_eq!(
            TlsaRecord::from_presentation("\\# 2 03"),
            Err(E::GenericLength {
                declared: Some(2),
                actual: 1
            })
        );
        assert!(E::MissingData.to_string().contains("RFC 6698 §2.2"));
    }

    #[test]
    fn usability_classification() {
        use UnusableReason as R;
        let d32 = vec![0u8; 32];
        assert_eq!(
            TlsaRecord::new(0, 1, 1, d32.clone()).usability(),
            Err(R::PkixUsage(0))
        );
        assert_eq!(
            TlsaRecord::new(1, 1, 1, d32.clone()).usability(),
            Err(R::PkixUsage(1))
        );
        assert_eq!(
            TlsaRecord::new(4, 1, 1, d32.clone()).usability(),
            Err(R::UnknownUsage(4))
        );
        assert_eq!(
            TlsaRecord::new(3, 2, 1, d32.clone()).usability(),
            Err(R::UnknownSelector(2))
        );
        assert_eq!(
            TlsaRecord::new(3, 1, 255, d32.clone()).usability(),
            Err(R::UnknownMatchingType(255))
        );
        assert_eq!(
            TlsaRecord::new(3, 1, 2, d32.clone()).usability(),
            Err(R::DigestLength {
                matching_type: 2,
                expected: 64,
                actual: 32
            })
        );
        assert_eq!(
            TlsaRecord::new(3, 0, 0, vec![]).usability(),
            Err(R::EmptyData)
        );
        assert_eq!(
            TlsaRecord::new(2, 0, 1, d32).usability(),
            Ok((Usage::DaneTa, Selector::Cert, MatchingType::Sha256))
        );
        assert!(R::PkixUsage(1).to_string().contains("RFC 7672 §3.1.3"));
    }

    #[test]
    fn all_unusable_records_give_the_fallback_result() {
        let records = vec![
            TlsaRecord::new(1, 1, 1, vec![0; 32]),
            TlsaRecord::new(3, 1, 1, vec![0; 20]),
            TlsaRecord::new(3, 7, 1, vec![0; 32]),
        ];
        let err = UsableTlsa::new(records.clone()).unwrap_err();
        assert_eq!(err.unusable.len(), 3);
        assert!(err.to_string().contains("RFC 7672 §2.2"));
        let decision = DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Secure(records));
        match &decision {
            DaneDecision::TlsWithoutAuthentication { unusable } => {
                assert_eq!(unusable[0].reason, UnusableReason::PkixUsage(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(decision.requires_tls());

        assert_eq!(
            DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Secure(vec![])),
            DaneDecision::NotApplicable
        );
        assert_eq!(
            DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Insecure),
            DaneDecision::NotApplicable
        );
        assert!(!DaneDecision::NotApplicable.requires_tls());
        assert_eq!(
            DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Failed),
            DaneDecision::DoNotConnect
        );

        let mixed = vec![
            TlsaRecord::new(0, 0, 1, vec![0; 32]),
            TlsaRecord::new(3, 1, 1, vec![0; 32]),
        ];
        match DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Secure(mixed)) {
            DaneDecision::Authenticate(t) => {
                assert_eq!(t.records().count(), 1);
                assert_eq!(t.unusable().len(), 1);
                assert!(!t.has_dane_ta());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_insecure_mx_rrset_means_dane_does_not_apply() {
        // RFC 7672 §2.2.1: whatever the TLSA lookup of a host named by an
        // insecure MX RRset gave, DANE does not apply to it.
        let usable = vec![TlsaRecord::new(3, 1, 1, vec![0; 32])];
        let unusable = vec![TlsaRecord::new(1, 1, 1, vec![0; 32])];
        for lookup in [
            TlsaLookup::Secure(usable.clone()),
            TlsaLookup::Secure(unusable.clone()),
            TlsaLookup::Secure(vec![]),
            TlsaLookup::Insecure,
            TlsaLookup::Failed,
        ] {
            assert_eq!(
                DaneDecision::from_lookup(HostSource::InsecureMx, lookup.clone()),
                DaneDecision::NotApplicable,
                "{lookup:?}"
            );
            // A secure MX RRset and a next hop without MX records decide
            // alike, from the TLSA answer.
            assert_eq!(
                DaneDecision::from_lookup(HostSource::SecureMx, lookup.clone()),
                DaneDecision::from_lookup(HostSource::NoMx, lookup.clone()),
            );
        }
        assert!(
            DaneDecision::from_lookup(HostSource::SecureMx, TlsaLookup::Secure(usable))
                .requires_tls()
        );
    }

    #[test]
    fn dane_ta_never_designates_the_server_certificate() {
        // RFC 7672 §3.1.2, RFC 7671 §5.2: a DANE-TA record names a trust
        // anchor that issued the server certificate. A self-signed server
        // certificate published as `2 x x` is refused in every form alike
        // (before: `2 0 0` authenticated it at position `None`, `2 0 1` gave
        // NoMatch); DANE-EE is the usage for it.
        let own = Issued::self_signed(&[MX]);
        let der = own.der();
        let key = spki(der.as_ref());
        let forms = [
            TlsaRecord::new(2, 0, 0, der.to_vec()),
            TlsaRecord::new(2, 0, 1, sha256(der.as_ref())),
            TlsaRecord::new(2, 0, 2, sha512(der.as_ref())),
            TlsaRecord::new(2, 1, 0, key.clone()),
            TlsaRecord::new(2, 1, 1, sha256(&key)),
        ];
        for record in forms {
            for chain in [vec![der.clone()], vec![der.clone(), der.clone()]] {
                assert_eq!(
                    check(vec![record.clone()], &chain, &[MX]),
                    Err(DaneError::TrustAnchorIsServerCertificate {
                        record: record.clone()
                    }),
                    "{record} with {} certificates",
                    chain.len()
                );
            }
        }
        let ee = TlsaRecord::new(3, 0, 1, sha256(der.as_ref()));
        let m = check(vec![ee], std::slice::from_ref(der), &[MX]).unwrap();
        assert_eq!((m.usage, m.chain_position), (Usage::DaneEe, Some(0)));

        // A `2 0 0` copy of another certificate with the server's own key
        // (an earlier self-signed certificate) designates that key: refused.
        let key_pem = own.key.clone();
        let renewed = {
            let kp = rcgen::KeyPair::from_pem(&key_pem).unwrap();
            rcgen::CertificateParams::new(vec![MX.to_owned()])
                .unwrap()
                .self_signed(&kp)
                .unwrap()
                .der()
                .clone()
        };
        let earlier = TlsaRecord::new(2, 0, 0, der.to_vec());
        assert_eq!(
            check(vec![earlier.clone()], &[renewed], &[MX]),
            Err(DaneError::TrustAnchorIsServerCertificate { record: earlier })
        );
        let err = DaneError::TrustAnchorIsServerCertificate {
            record: TlsaRecord::new(2, 0, 1, vec![0; 32]),
        };
        assert!(err.to_string().contains("DANE-EE(3)"), "{err}");
    }

    #[test]
    fn reference_ids_are_validated_and_normalized() {
        let r = ReferenceIds::new(["MX.Example.COM.", "mx.example.com", "example.com"]).unwrap();
        assert_eq!(r.as_slice(), ["mx.example.com", "example.com"]);
        assert_eq!(
            ReferenceIds::new(Vec::<String>::new()),
            Err(ReferenceIdError::Empty)
        );
        for bad in [
            "",
            ".",
            "a..b",
            "*.example.com",
            "bad name",
            "é.example",
            "192.0.2.1",
            "192.0.2.1.",
            "1.2.3",
            "0x7f000001",
        ] {
            assert!(
                matches!(
                    ReferenceIds::new([bad]),
                    Err(ReferenceIdError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(ReferenceIds::new([&"a".repeat(64)]).is_err());
    }

    #[test]
    fn wildcard_rules() {
        assert!(name_matches("*.example.com", "mx.example.com"));
        assert!(name_matches("*.EXAMPLE.com.", "mx.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.mx.example.com"));
        assert!(!name_matches("m*.example.com", "mx.example.com"));
        assert!(!name_matches("*x.example.com", "mx.example.com"));
        assert!(!name_matches("mx.*.com", "mx.example.com"));
        assert!(!name_matches("*.*.com", "mx.example.com"));
        assert!(!name_matches("*", "mx"));
        assert!(name_matches("MX.example.com", "mx.example.com"));
    }

    // --- DANE-EE -----------------------------------------------------------

    #[test]
    fn dane_ee_matches_every_selector_and_matching_type() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let chain = [leaf.der().clone(), ca.der.clone()];
        let cert = leaf.der().as_ref();
        let key = spki(cert);
        for record in [
            TlsaRecord::new(3, 1, 1, sha256(&key)),
            TlsaRecord::new(3, 0, 1, sha256(cert)),
            TlsaRecord::new(3, 1, 2, sha512(&key)),
            TlsaRecord::new(3, 0, 0, cert.to_vec()),
            TlsaRecord::new(3, 1, 0, key.clone()),
            TlsaRecord::new(3, 0, 2, sha512(cert)),
        ] {
            let m = check(vec![record.clone()], &chain, &[MX]).unwrap();
            assert_eq!(m.usage, Usage::DaneEe);
            assert_eq!(m.record, record);
            assert_eq!(m.chain_position, Some(0));
            assert_eq!(m.matched_name, None);
        }
        // The server certificate alone is enough.
        check(
            vec![TlsaRecord::new(3, 1, 1, sha256(&key))],
            &chain[..1],
            &[MX],
        )
        .unwrap();
    }

    #[test]
    fn dane_ee_with_a_wrong_digest_fails() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let mut wrong = sha256(&spki(leaf.der().as_ref()));
        wrong[0] ^= 1;
        let err = check(
            vec![TlsaRecord::new(3, 1, 1, wrong)],
            std::slice::from_ref(leaf.der()),
            &[MX],
        )
        .unwrap_err();
        assert_eq!(
            err,
            DaneError::NoMatch {
                ee_records: 1,
                ta_records: 0
            }
        );
        assert!(err.to_string().contains("RFC 7672 §3.1.1"));
        // A DANE-EE record for the CA does not authenticate the leaf.
        let err = check(
            vec![TlsaRecord::new(3, 0, 1, sha256(ca.der.as_ref()))],
            &[leaf.der().clone(), ca.der.clone()],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::NoMatch { .. }));
    }

    #[test]
    fn dane_ee_ignores_names_and_expiry() {
        let ca = ca("Test CA");
        let leaf = leaf_with(&["other.example.org"], "other", true, &ca);
        let record = TlsaRecord::new(3, 1, 1, sha256(&spki(leaf.der().as_ref())));
        let m = check(vec![record], std::slice::from_ref(leaf.der()), &[MX]).unwrap();
        assert_eq!(m.usage, Usage::DaneEe);
    }

    #[test]
    fn digest_agility_prefers_sha512() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let key = spki(leaf.der().as_ref());
        let good256 = TlsaRecord::new(3, 1, 1, sha256(&key));
        let stale512 = TlsaRecord::new(3, 1, 2, vec![0; 64]);
        let set = tlsa(vec![good256.clone(), stale512]);
        assert_eq!(set.superseded(), std::slice::from_ref(&good256));
        let err = dane_check(
            &set,
            std::slice::from_ref(leaf.der()),
            &refs(&[MX]),
            UnixTime::now(),
            &algs(),
        );
        assert!(matches!(err, Err(DaneError::NoMatch { .. })));
        // A SHA2-512 record for another selector does not supersede it.
        let other = TlsaRecord::new(3, 0, 2, vec![0; 64]);
        let set = tlsa(vec![good256, other]);
        assert!(set.superseded().is_empty());
        dane_check(
            &set,
            std::slice::from_ref(leaf.der()),
            &refs(&[MX]),
            UnixTime::now(),
            &algs(),
        )
        .unwrap();
    }

    // --- DANE-TA -----------------------------------------------------------

    #[test]
    fn dane_ta_on_the_ca_checks_the_name() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let chain = [leaf.der().clone(), ca.der.clone()];
        let record = TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()));

        let m = check(vec![record.clone()], &chain, &[MX, "example.com"]).unwrap();
        assert_eq!(m.usage, Usage::DaneTa);
        assert_eq!(m.chain_position, Some(1));
        assert_eq!(m.matched_name.as_deref(), Some(MX));

        let err = check(vec![record.clone()], &chain, &["mx.example.net"]).unwrap_err();
        match &err {
            DaneError::NameMismatch {
                presented,
                reference_ids,
                ..
            } => {
                assert_eq!(presented, &[MX.to_string()]);
                assert_eq!(reference_ids, &["mx.example.net".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("RFC 7672 §3.2.3"));

        // Other selectors and matching types of the same anchor.
        let key = spki(ca.der.as_ref());
        for r in [
            TlsaRecord::new(2, 1, 1, sha256(&key)),
            TlsaRecord::new(2, 1, 2, sha512(&key)),
            TlsaRecord::new(2, 0, 0, ca.der.to_vec()),
        ] {
            assert_eq!(
                check(vec![r], &chain, &[MX]).unwrap().chain_position,
                Some(1)
            );
        }
    }

    #[test]
    fn dane_ta_on_an_intermediate_or_the_root() {
        let root = ca("Root CA");
        let inter = root.intermediate("Intermediate CA", &[]);
        let leaf = leaf(&[MX], &inter);
        let chain = [leaf.der().clone(), inter.der.clone(), root.der.clone()];
        let on_inter = TlsaRecord::new(2, 1, 1, sha256(&spki(inter.der.as_ref())));
        let m = check(vec![on_inter.clone()], &chain, &[MX]).unwrap();
        assert_eq!(m.chain_position, Some(1));
        // The intermediate is a trust anchor: the root need not be sent.
        check(vec![on_inter], &chain[..2], &[MX]).unwrap();
        let on_root = TlsaRecord::new(2, 0, 1, sha256(root.der.as_ref()));
        assert_eq!(
            check(vec![on_root.clone()], &chain, &[MX])
                .unwrap()
                .chain_position,
            Some(2)
        );
        // Without the intermediate the leaf does not chain to the root.
        let err = check(
            vec![on_root],
            &[leaf.der().clone(), root.der.clone()],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::TrustAnchorChain { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_matches_the_next_hop_domain() {
        let ca = ca("Test CA");
        let leaf = leaf(&["example.com"], &ca);
        let chain = [leaf.der().clone(), ca.der.clone()];
        let record = TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()));
        let m = check(vec![record.clone()], &chain, &[MX, "example.com"]).unwrap();
        assert_eq!(m.matched_name.as_deref(), Some("example.com"));
        assert!(check(vec![record], &chain, &[MX]).is_err());
    }

    #[test]
    fn dane_ta_wildcards() {
        let ca = ca("Test CA");
        let record = TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()));
        let wild = leaf(&["*.example.com"], &ca);
        let chain = [wild.der().clone(), ca.der.clone()];
        assert!(check(vec![record.clone()], &chain, &[MX]).is_ok());
        for name in ["example.com", "a.mx.example.com"] {
            let err = check(vec![record.clone()], &chain, &[name]).unwrap_err();
            assert!(matches!(err, DaneError::NameMismatch { .. }), "{name}");
        }
        let partial = leaf(&["m*.example.com"], &ca);
        let err = check(
            vec![record],
            &[partial.der().clone(), ca.der.clone()],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }));
    }

    #[test]
    fn dane_ta_uses_the_cn_only_without_dns_ids() {
        let ca = ca("Test CA");
        let record = TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()));
        let cn_only = leaf_with(&[], MX, false, &ca);
        let m = check(
            vec![record.clone()],
            &[cn_only.der().clone(), ca.der.clone()],
            &[MX],
        )
        .unwrap();
        assert_eq!(m.matched_name.as_deref(), Some(MX));
        let both = leaf_with(&["other.example.com"], MX, false, &ca);
        let err = check(vec![record], &[both.der().clone(), ca.der.clone()], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }));
    }

    #[test]
    fn dane_ta_not_in_the_chain_fails() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        for record in [
            TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref())),
            TlsaRecord::new(2, 1, 1, sha256(&spki(ca.der.as_ref()))),
        ] {
            let err = check(vec![record], std::slice::from_ref(leaf.der()), &[MX]).unwrap_err();
            assert_eq!(
                err,
                DaneError::NoMatch {
                    ee_records: 0,
                    ta_records: 1
                }
            );
        }
        // A record for the server certificate itself is not a trust anchor,
        // and says so.
        let err = check(
            vec![TlsaRecord::new(2, 0, 1, sha256(leaf.der().as_ref()))],
            &[leaf.der().clone(), ca.der.clone()],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DaneError::TrustAnchorIsServerCertificate { .. }
        ));
    }

    #[test]
    fn dane_ta_full_records_work_without_the_anchor_in_the_chain() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let chain = [leaf.der().clone()];
        let m = check(
            vec![TlsaRecord::new(2, 0, 0, ca.der.to_vec())],
            &chain,
            &[MX],
        )
        .unwrap();
        assert_eq!((m.usage, m.chain_position), (Usage::DaneTa, None));
        let m = check(
            vec![TlsaRecord::new(2, 1, 0, spki(ca.der.as_ref()))],
            &chain,
            &[MX],
        )
        .unwrap();
        assert_eq!((m.usage, m.chain_position), (Usage::DaneTa, None));
        // The wrong key does not verify.
        let other = self::ca("Other CA");
        let err = check(
            vec![TlsaRecord::new(2, 1, 0, spki(other.der.as_ref()))],
            &chain,
            &[MX],
        )
        .unwrap_err();
        assert!(
            matches!(err, DaneError::TrustAnchorChain { position: None, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn dane_ta_checks_the_chain() {
        let ca = ca("Test CA");
        let record = TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()));
        // Expired server certificate.
        let expired = leaf_with(&[MX], "server", true, &ca);
        let err = check(
            vec![record.clone()],
            &[expired.der().clone(), ca.der.clone()],
            &[MX],
        )
        .unwrap_err();
        match &err {
            DaneError::TrustAnchorChain {
                error, position, ..
            } => {
                assert_eq!(*position, Some(1));
                assert!(
                    matches!(
                        error,
                        CertificateError::Expired | CertificateError::ExpiredContext { .. }
                    ),
                    "{error:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("RFC 7672 §3.1.2"));
        // The matched CA did not issue the server certificate.
        let other = self::ca("Other CA");
        let stranger = leaf(&[MX], &other);
        let err = check(
            vec![record],
            &[stranger.der().clone(), ca.der.clone()],
            &[MX],
        )
        .unwrap_err();
        match err {
            DaneError::TrustAnchorChain { error, .. } => {
                assert_eq!(error, CertificateError::UnknownIssuer)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn either_usage_may_authenticate() {
        let ca = ca("Test CA");
        let leaf = leaf(&["other.example.org"], &ca);
        let chain = [leaf.der().clone(), ca.der.clone()];
        let ta = TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()));
        let ee = TlsaRecord::new(3, 1, 1, sha256(&spki(leaf.der().as_ref())));
        let bad_ee = TlsaRecord::new(3, 1, 1, vec![0; 32]);
        // The TA name check fails but the EE record matches.
        assert_eq!(
            check(vec![ta.clone(), ee], &chain, &[MX]).unwrap().usage,
            Usage::DaneEe
        );
        // Neither: the most specific failure is reported.
        let err = check(vec![bad_ee, ta], &chain, &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }));
    }

    #[test]
    fn malformed_and_empty_chains() {
        let record = TlsaRecord::new(2, 0, 1, vec![0; 32]);
        assert_eq!(
            check(vec![record.clone()], &[], &[MX]),
            Err(DaneError::EmptyChain)
        );
        let junk = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
        assert_eq!(
            check(vec![record], std::slice::from_ref(&junk), &[MX]),
            Err(DaneError::MalformedCertificate { position: 0 })
        );
        // A full-certificate DANE-EE record still matches unparsable DER.
        let m = check(
            vec![TlsaRecord::new(3, 0, 0, junk.to_vec())],
            &[junk],
            &[MX],
        )
        .unwrap();
        assert_eq!(m.usage, Usage::DaneEe);
    }

    #[test]
    fn der_contents_parses_lengths() {
        assert_eq!(der_contents(&[0x30, 0x01, 0xaa], 0x30), Some(&[0xaa][..]));
        assert_eq!(
            der_contents(&[0x30, 0x81, 0x01, 0xaa], 0x30),
            Some(&[0xaa][..])
        );
        assert_eq!(der_contents(&[0x30, 0x02, 0xaa], 0x30), None);
        assert_eq!(der_contents(&[0x31, 0x01, 0xaa], 0x30), None);
        assert_eq!(der_contents(&[0x30, 0x80], 0x30), None);
        assert_eq!(der_contents(&[0x30, 0x85, 0, 0, 0, 0, 1, 0], 0x30), None);
        assert_eq!(der_contents(&[], 0x30), None);
    }

    // --- in a rustls handshake ---------------------------------------------

    fn dane_handshake(
        chain: Vec<CertificateDer<'static>>,
        leaf: &Issued,
        verifier: Arc<DaneVerifier>,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Result<(), rustls::Error> {
        let server = Issued {
            chain,
            key: leaf.key.clone(),
        }
        .server_config(&[version]);
        handshake(client_config(verifier), server, MX).map(|_| ())
    }

    fn verifier(records: Vec<TlsaRecord>, names: &[&str]) -> Arc<DaneVerifier> {
        Arc::new(DaneVerifier::new(
            tlsa(records),
            refs(names),
            &rustls::crypto::ring::default_provider(),
        ))
    }

    #[test]
    fn handshake_with_dane_ee_succeeds() {
        let ca = ca("Test CA");
        let leaf = leaf_with(&["unrelated.example.org"], "x", true, &ca);
        let record = TlsaRecord::new(3, 1, 1, sha256(&spki(leaf.der().as_ref())));
        let v = verifier(vec![record.clone()], &[MX]);
        dane_handshake(
            vec![leaf.der().clone()],
            &leaf,
            v.clone(),
            &rustls::version::TLS13,
        )
        .unwrap();
        let m = v.last_match().unwrap();
        assert_eq!((m.usage, m.record), (Usage::DaneEe, record));
    }

    #[test]
    fn handshake_with_dane_ta_succeeds_over_tls12() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let v = verifier(
            vec![TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()))],
            &[MX],
        );
        let chain = vec![leaf.der().clone(), ca.der.clone()];
        dane_handshake(chain, &leaf, v.clone(), &rustls::version::TLS12).unwrap();
        assert_eq!(v.last_match().unwrap().matched_name.as_deref(), Some(MX));
    }

    #[test]
    fn handshake_fails_with_a_typed_error() {
        let ca = ca("Test CA");
        let leaf = leaf(&[MX], &ca);
        let chain = vec![leaf.der().clone(), ca.der.clone()];

        let v = verifier(vec![TlsaRecord::new(3, 1, 1, vec![0; 32])], &[MX]);
        let err =
            dane_handshake(chain.clone(), &leaf, v.clone(), &rustls::version::TLS13).unwrap_err();
        assert_eq!(
            DaneError::from_rustls(&err),
            Some(&DaneError::NoMatch {
                ee_records: 1,
                ta_records: 0
            })
        );
        assert!(v.last_match().is_none());

        let v = verifier(
            vec![TlsaRecord::new(2, 0, 1, sha256(ca.der.as_ref()))],
            &["mx.example.net"],
        );
        let err = dane_handshake(chain, &leaf, v, &rustls::version::TLS13).unwrap_err();
        assert!(matches!(
            DaneError::from_rustls(&err),
            Some(DaneError::NameMismatch { .. })
        ));
        assert!(DaneError::from_rustls(&rustls::Error::HandshakeNotComplete).is_none());
    }
}
