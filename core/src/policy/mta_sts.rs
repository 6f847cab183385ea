//! MTA-STS: SMTP MTA Strict Transport Security (RFC 8461), sans-IO.
//!
//! A recipient domain publishes a TXT record at `_mta-sts.<domain>` naming
//! the current version (`id`) of its policy, and the policy itself at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`: which MX hosts may
//! receive its mail, and whether a sender must refuse to deliver when TLS to
//! them cannot be authenticated. This module parses both, says what to do
//! with a cached policy, and decides per MX host and TLS result whether a
//! message may be delivered.
//!
//! It does no DNS, no HTTPS, has no clock and stores nothing: you look the
//! record up, fetch the policy, keep the [`PolicyCache`] for each domain, and
//! pass the current time as seconds (any epoch, as long as it is the same
//! one every time).
//!
//! | step | you | this module |
//! |---|---|---|
//! | 1 | look up TXT [`txt_name`] | [`TxtLookup::from_records`] (or [`TxtLookup::Failed`]) |
//! | 2 | load the domain's [`PolicyCache`] | [`PolicyCache::plan`] → [`CacheAction`] |
//! | 3 | when told to, `GET` [`policy_url`]: no redirects, no HTTP cache, PKIX-valid certificate for [`policy_host`] | [`parse_response`], then [`PolicyCache::store`] or [`PolicyCache::fetch_failed`] |
//! | 4 | per MX, in MX order: connect, STARTTLS, verify the certificate for the MX name | [`decide`] with [`PolicyCache::policy`] → [`Decision`] |
//! | 5 | deliver or try the next MX; count what happened | [`ReportBuilder::record`](super::tlsrpt::ReportBuilder::record) |
//!
//! ```
//! use starttls::policy::mta_sts::{self, CacheAction, Decision, PolicyCache, TlsOutcome, TxtLookup};
//!
//! let now = 1_700_000_000; // seconds, from your clock
//! let mut cache = PolicyCache::new(); // or the one you stored for this domain
//!
//! // 1. The TXT records you found at `_mta-sts.example.com`.
//! let txt = TxtLookup::from_records(["v=STSv1; id=20240101T000000;"]);
//! // 2-3. Nothing cached yet: fetch.
//! if let CacheAction::Fetch { id } = cache.plan(&txt, now) {
//!     let body = b"version: STSv1\r\nmode: enforce\r\nmx: *.mail.example.com\r\nmax_age: 604800\r\n";
//!     match mta_sts::parse_response(200, Some("text/plain"), body, mta_sts::DEFAULT_MAX_POLICY_SIZE) {
//!         Ok(policy) => cache.store(id, policy, now),
//!         Err(e) => {
//!             let _report = cache.fetch_failed(id, &e, now);
//!         }
//!     }
//! }
//! // 4. Per MX host, after STARTTLS and certificate verification.
//! let policy = cache.policy(now);
//! let ok = TlsOutcome::Verified { name: "mx1.mail.example.com".into() };
//! assert_eq!(mta_sts::decide(policy, "mx1.mail.example.com", &ok), Decision::Deliver);
//! // STARTTLS stripped by an attacker: refused under `mode: enforce`.
//! let stripped = TlsOutcome::NoStartTls;
//! assert!(matches!(
//!     mta_sts::decide(policy, "mx1.mail.example.com", &stripped),
//!     Decision::Refuse(_)
//! ));
//! // An MX the policy does not list is refused whatever its certificate.
//! let evil = TlsOutcome::Verified { name: "mx.attacker.example".into() };
//! assert!(!mta_sts::decide(policy, "mx.attacker.example", &evil).may_deliver());
//! ```
//!
//! What the caller still owns: the HTTPS client (it must verify the policy
//! host's certificate, send SNI, and not follow redirects, RFC 8461 §3.3), the
//! SMTP client's certificate verification against the MX host name (§4.2,
//! e.g. rustls with the MX name as server name), the order of MX candidates
//! (§5.1, §8.4: treat a refused MX like an unreachable one and go on), and
//! never letting MTA-STS override a failing DANE validation (§2).

use std::fmt;

use super::names::ends_in_number;
use super::result_type::ResultType;
use super::txt::{self, is_ext_name, is_ext_value, tag_fields, TagError};

/// Longest `id` in the TXT record (RFC 8461 §3.1: 1 to 32 letters and digits).
pub const MAX_ID_LEN: usize = 32;

/// Largest `max_age` a policy may give, in seconds: about one year
/// (RFC 8461 §3.2).
pub const MAX_MAX_AGE: u64 = 31_557_600;

/// Default limit on the size of a policy file: 64 KiB, the maximum size
/// RFC 8461 §3.3 suggests.
pub const DEFAULT_MAX_POLICY_SIZE: usize = 64 * 1024;

/// How long to wait before fetching a policy again after a fetch for the
/// same `id` failed: five minutes (RFC 8461 §3.3, "five minutes or longer
/// per version ID").
pub const FETCH_RETRY_INTERVAL: u64 = 5 * 60;

/// Age after which a still-valid cached policy should be refreshed in the
/// background: one day, the frequency RFC 8461 §3.3 suggests.
pub const REFRESH_INTERVAL: u64 = 24 * 60 * 60;

/// Longest domain name accepted, without the trailing dot (RFC 1035 §2.3.4).
const MAX_DOMAIN_LEN: usize = 253;

/// Longest label of a domain name (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// Why a domain name, MX host name or MX pattern was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DomainError {
    /// The name is empty.
    Empty,
    /// The name contains a non-ASCII character: internationalized names must
    /// be given as A-labels (`xn--…`), not U-labels (RFC 8461 §3.2).
    NotAscii,
    /// `*` appears other than as the whole leftmost label of a pattern
    /// (RFC 8461 §4.1), or in a name that is not a pattern.
    MisplacedWildcard,
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// A character other than a letter, digit or `-` in a label (RFC 5321
    /// §4.1.2 `Domain`).
    InvalidCharacter,
    /// A label starts or ends with `-` (RFC 5321 §4.1.2 `Domain`).
    EdgeHyphen,
    /// A label is longer than 63 octets (RFC 1035 §2.3.4).
    LabelTooLong,
    /// The name is longer than 253 octets (RFC 1035 §2.3.4).
    TooLong,
    /// The last label is a number (`192.0.2.1`, `1.2.3`, `0x7f000001`):
    /// resolvers read the name as an IPv4 address, and no host name ends
    /// so (RFC 1123 §2.1, RFC 3696 §2).
    NumericTld,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainError::Empty => "the name is empty",
            DomainError::NotAscii => {
                "the name is not ASCII: internationalized names must be A-labels (xn--…) (RFC 8461 §3.2)"
            }
            DomainError::MisplacedWildcard => {
                "`*` may only be the whole leftmost label of an mx pattern (RFC 8461 §4.1)"
            }
            DomainError::EmptyLabel => "the name has an empty label (RFC 5321 §4.1.2)",
            DomainError::InvalidCharacter => {
                "a label holds a character other than a letter, digit or `-` (RFC 5321 §4.1.2)"
            }
            DomainError::EdgeHyphen => "a label starts or ends with `-` (RFC 5321 §4.1.2)",
            DomainError::LabelTooLong => "a label is longer than 63 octets (RFC 1035 §2.3.4)",
            DomainError::TooLong => "the name is longer than 253 octets (RFC 1035 §2.3.4)",
            DomainError::NumericTld => {
                "the last label is a number, so the name reads as an IPv4 address, not a host name (RFC 1123 §2.1)"
            }
        })
    }
}

impl std::error::Error for DomainError {}

/// Removes one trailing dot (`mx.example.com.` as DNS returns it).
fn strip_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Checks a domain name (without trailing dot) against RFC 5321 `Domain`
/// and the DNS length limits.
fn check_domain(name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    if !name.is_ascii() {
        return Err(DomainError::NotAscii);
    }
    if name.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong);
    }
    for label in name.split('.') {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                if bytes.len() > MAX_LABEL_LEN {
                    return Err(DomainError::LabelTooLong);
                }
                if bytes.contains(&b'*') {
                    return Err(DomainError::MisplacedWildcard);
                }
                if !bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(DomainError::InvalidCharacter);
                }
                if *first == b'-' || *last == b'-' {
                    return Err(DomainError::EdgeHyphen);
                }
            }
            _ => return Err(DomainError::EmptyLabel),
        }
    }
    if ends_in_number(name) {
        return Err(DomainError::NumericTld);
    }
    Ok(())
}

/// Validates a domain and returns it lowercased, without trailing dot.
fn normalize_domain(domain: &str) -> Result<String, DomainError> {
    let name = strip_root(domain);
    check_domain(name)?;
    Ok(name.to_ascii_lowercase())
}

/// The DNS name of the MTA-STS TXT record of a Policy Domain:
/// `_mta-sts.<domain>` (RFC 8461 §3.1).
///
/// ```
/// # use starttls::policy::mta_sts::txt_name;
/// assert_eq!(txt_name("Example.COM.").unwrap(), "_mta-sts.example.com");
/// ```
pub fn txt_name(domain: &str) -> Result<String, DomainError> {
    Ok(format!("_mta-sts.{}", normalize_domain(domain)?))
}

/// The Policy Host of a Policy Domain: `mta-sts.<domain>` (RFC 8461 §3.2).
/// The HTTPS server must present a certificate valid for this name, and the
/// client must send it as SNI (§3.3, §7.1).
pub fn policy_host(domain: &str) -> Result<String, DomainError> {
    Ok(format!("mta-sts.{}", normalize_domain(domain)?))
}

/// The URL of the policy of a Policy Domain:
/// `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 §3.2).
///
/// ```
/// # use starttls::policy::mta_sts::policy_url;
/// assert_eq!(
///     policy_url("example.com").unwrap(),
///     "https://mta-sts.example.com/.well-known/mta-sts.txt"
/// );
/// ```
pub fn policy_url(domain: &str) -> Result<String, DomainError> {
    Ok(format!(
        "https://mta-sts.{}/.well-known/mta-sts.txt",
        normalize_domain(domain)?
    ))
}

// ---------------------------------------------------------------------------
// TXT record (§3.1)
// ---------------------------------------------------------------------------

/// A policy version, the `id` of the TXT record: 1 to 32 ASCII letters and
/// digits (RFC 8461 §3.1). Compared exactly (case-sensitive); there is no
/// order between ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyId {
    bytes: [u8; MAX_ID_LEN],
    len: u8,
}

impl PolicyId {
    /// Checks and wraps an id, for example one read back from your storage.
    ///
    /// ```
    /// # use starttls::policy::mta_sts::PolicyId;
    /// assert_eq!(PolicyId::new("20160831085700Z").unwrap().as_str(), "20160831085700Z");
    /// assert!(PolicyId::new("2016-08-31").is_err());
    /// ```
    pub fn new(id: &str) -> Result<PolicyId, RecordError> {
        Self::from_bytes(id.as_bytes()).ok_or(RecordError::InvalidId)
    }

    fn from_bytes(id: &[u8]) -> Option<PolicyId> {
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut bytes = [0u8; MAX_ID_LEN];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(PolicyId {
            bytes,
            len: u8::try_from(id.len()).ok()?,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl fmt::Debug for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PolicyId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the `_mta-sts` TXT record gave no policy version. Whatever the
/// reason, RFC 8461 §3.1 says to proceed as if the domain had no MTA-STS
/// policy available — but not to drop a still-valid cached one (§5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT record begins with `v=STSv1;` (or, returned alone, with
    /// `v=STSv1`).
    NoRecord,
    /// More than one TXT record begins with `v=STSv1;`.
    MultipleRecords {
        /// How many did.
        count: usize,
    },
    /// The record does not begin with `v=STSv1` (case-sensitive).
    NotStsV1,
    /// The record breaks the `sts-text-record` grammar.
    Malformed {
        /// Byte offset in the record.
        offset: usize,
        /// The rule broken.
        reason: &'static str,
    },
    /// The record has no `id=` field.
    MissingId,
    /// The `id` is not 1 to 32 ASCII letters and digits.
    InvalidId,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NoRecord => {
                f.write_str("no TXT record begins with `v=STSv1;` (RFC 8461 §3.1)")
            }
            RecordError::MultipleRecords { count } => write!(
                f,
                "{count} TXT records begin with `v=STSv1;`; exactly one is allowed (RFC 8461 §3.1)"
            ),
            RecordError::NotStsV1 => {
                f.write_str("the TXT record does not begin with `v=STSv1` (RFC 8461 §3.1)")
            }
            RecordError::Malformed { offset, reason } => write!(
                f,
                "malformed MTA-STS TXT record at byte {offset}: {reason} (RFC 8461 §3.1)"
            ),
            RecordError::MissingId => {
                f.write_str("the MTA-STS TXT record has no `id=` field (RFC 8461 §3.1)")
            }
            RecordError::InvalidId => f.write_str(
                "the MTA-STS `id` must be 1 to 32 ASCII letters and digits (RFC 8461 §3.1)",
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// A parsed `_mta-sts` TXT record (RFC 8461 §3.1).
///
/// ```
/// # use starttls::policy::mta_sts::StsRecord;
/// let record = StsRecord::parse(b"v=STSv1; id=20160831085700Z;").unwrap();
/// assert_eq!(record.id().as_str(), "20160831085700Z");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StsRecord {
    id: PolicyId,
}

impl StsRecord {
    /// Parses one record. If the DNS answer split it into several strings,
    /// join them without spaces first (§3.1).
    ///
    /// Fields other than `v` and `id` are checked against the extension
    /// grammar and ignored; if `id` appears more than once, the first counts
    /// (§3.2: "all entries except for the first SHALL be ignored").
    pub fn parse(record: &[u8]) -> Result<StsRecord, RecordError> {
        let fields = tag_fields(record, b"v=STSv1").map_err(|e| match e {
            TagError::NotVersion => RecordError::NotStsV1,
            TagError::Malformed { offset, reason } => RecordError::Malformed { offset, reason },
        })?;
        let mut id = None;
        for field in &fields {
            if field.name == b"id" && id.is_none() {
                id = Some(PolicyId::from_bytes(field.value).ok_or(RecordError::InvalidId)?);
            } else if !is_ext_value(field.value) {
                return Err(RecordError::Malformed {
                    offset: field.offset,
                    reason: "an extension value is printable ASCII without space, `;` or `=`",
                });
            }
        }
        id.map(|id| StsRecord { id }).ok_or(RecordError::MissingId)
    }

    /// Picks the record among all the TXT records found at `_mta-sts` and
    /// parses it (§3.1): when several are returned, those that do not begin
    /// with exactly `v=STSv1;` are discarded and exactly one must remain; a
    /// record returned alone is parsed as it is.
    ///
    /// ```
    /// # use starttls::policy::mta_sts::{RecordError, StsRecord};
    /// let found = StsRecord::select(["google-site-verification=xyz", "v=STSv1; id=1"]).unwrap();
    /// assert_eq!(found.id().as_str(), "1");
    /// // `v=STSv1` alone does not begin with `v=STSv1;`: discarded, not counted.
    /// let found = StsRecord::select(["v=STSv1", "v=STSv1; id=1"]).unwrap();
    /// assert_eq!(found.id().as_str(), "1");
    /// assert_eq!(
    ///     StsRecord::select(["v=STSv1; id=1", "v=STSv1; id=2"]),
    ///     Err(RecordError::MultipleRecords { count: 2 })
    /// );
    /// ```
    pub fn select<I>(records: I) -> Result<StsRecord, RecordError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        txt::select(records, b"v=STSv1", StsRecord::parse).map_err(|e| match e {
            txt::Selection::NoRecord => RecordError::NoRecord,
            txt::Selection::Multiple(count) => RecordError::MultipleRecords { count },
            txt::Selection::Invalid(e) => e,
        })
    }

    /// The policy version.
    pub fn id(&self) -> PolicyId {
        self.id
    }
}

// ---------------------------------------------------------------------------
// Policy file (§3.2)
// ---------------------------------------------------------------------------

/// What a sender does when a policy fails to validate (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `enforce`: do not deliver to an MX that fails MX matching or
    /// certificate validation, or does not support STARTTLS.
    Enforce,
    /// `testing`: deliver anyway, and report the failure (TLS-RPT).
    Testing,
    /// `none`: as if the domain had no policy (used to remove MTA-STS, §8.3).
    None,
}

impl Mode {
    /// The keyword used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `mx` pattern of a policy: a host name, or `*.` and a domain, where `*`
/// stands for exactly one leftmost label (RFC 8461 §4.1).
///
/// ```
/// # use starttls::policy::mta_sts::MxPattern;
/// let pattern: MxPattern = "*.Example.com".parse().unwrap();
/// assert!(pattern.matches("mail.example.com"));
/// assert!(pattern.matches("MAIL.EXAMPLE.COM.")); // case and trailing dot do not matter
/// assert!(!pattern.matches("example.com")); // `*` is one whole label...
/// assert!(!pattern.matches("a.b.example.com")); // ...and only one
/// assert_eq!(pattern.to_string(), "*.example.com");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MxPattern {
    wildcard: bool,
    /// Lowercased, without `*.` and without trailing dot.
    domain: String,
}

impl MxPattern {
    /// Parses a pattern: `["*."] Domain` (RFC 8461 §3.2), ASCII only
    /// (internationalized names as A-labels). One trailing dot is accepted
    /// and dropped.
    pub fn parse(pattern: &str) -> Result<MxPattern, DomainError> {
        let (wildcard, domain) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        Ok(MxPattern {
            wildcard,
            domain: normalize_domain(domain)?,
        })
    }

    /// `true` for `*.` patterns.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The domain part: the whole name, or what follows `*.`; lowercase.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether the MX host name matches (§4.1): ASCII case-insensitive, one
    /// trailing dot ignored; `*.d` matches `x.d` for any single label `x`,
    /// but neither `d` nor `y.x.d`. A host name that is not a valid domain
    /// name (or not ASCII) matches nothing.
    pub fn matches(&self, mx_host: &str) -> bool {
        let host = strip_root(mx_host);
        if check_domain(host).is_err() {
            return false;
        }
        if !self.wildcard {
            return host.eq_ignore_ascii_case(&self.domain);
        }
        match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(&self.domain),
            None => false,
        }
    }
}

impl std::str::FromStr for MxPattern {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<MxPattern, DomainError> {
        MxPattern::parse(s)
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.domain)
    }
}

/// Why a policy file was rejected. A rejected policy is no policy: RFC 8461
/// §3.3 says to go on as if the domain had none (unless a valid one is
/// cached), and to report it as `sts-policy-invalid` (RFC 8460 §4.3.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The body is larger than the configured limit (§3.3 suggests 64 KiB).
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not UTF-8 (§3.2: values are UTF-8).
    NotUtf8 {
        /// Line number, from 1.
        line: usize,
    },
    /// A line breaks the `sts-policy-record` grammar.
    Malformed {
        /// Line number, from 1.
        line: usize,
        /// The rule broken.
        reason: &'static str,
    },
    /// The first `version` field is not `STSv1`.
    InvalidVersion {
        /// Line number, from 1.
        line: usize,
    },
    /// The first `mode` field is not `enforce`, `testing` or `none`.
    InvalidMode {
        /// Line number, from 1.
        line: usize,
    },
    /// The first `max_age` field is not 1 to 10 digits.
    InvalidMaxAge {
        /// Line number, from 1.
        line: usize,
    },
    /// The first `max_age` field is above 31557600.
    MaxAgeTooLarge {
        /// Line number, from 1.
        line: usize,
        /// The value given.
        value: u64,
    },
    /// An `mx` field is not a valid pattern.
    InvalidMx {
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        error: DomainError,
    },
    /// A required field is absent: `version`, `mode` or `max_age`.
    MissingField {
        /// The field name.
        field: &'static str,
    },
    /// No `mx` field, and the mode is not `none`.
    MissingMx,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::TooLarge { size, limit } => write!(
                f,
                "the MTA-STS policy is {size} bytes, over the {limit}-byte limit (RFC 8461 §3.3)"
            ),
            PolicyError::NotUtf8 { line } => {
                write!(f, "MTA-STS policy line {line} is not UTF-8 (RFC 8461 §3.2)")
            }
            PolicyError::Malformed { line, reason } => {
                write!(f, "MTA-STS policy line {line}: {reason} (RFC 8461 §3.2)")
            }
            PolicyError::InvalidVersion { line } => write!(
                f,
                "MTA-STS policy line {line}: `version` must be `STSv1` (RFC 8461 §3.2)"
            ),
            PolicyError::InvalidMode { line } => write!(
                f,
                "MTA-STS policy line {line}: `mode` must be `enforce`, `testing` or `none` (RFC 8461 §3.2)"
            ),
            PolicyError::InvalidMaxAge { line } => write!(
                f,
                "MTA-STS policy line {line}: `max_age` must be 1 to 10 digits (RFC 8461 §3.2)"
            ),
            PolicyError::MaxAgeTooLarge { line, value } => write!(
                f,
                "MTA-STS policy line {line}: `max_age` {value} is over the maximum of {MAX_MAX_AGE} (RFC 8461 §3.2)"
            ),
            PolicyError::InvalidMx { line, error } => write!(
                f,
                "MTA-STS policy line {line}: invalid `mx` pattern: {error}"
            ),
            PolicyError::MissingField { field } => write!(
                f,
                "the MTA-STS policy has no `{field}` field, which is required (RFC 8461 §3.2)"
            ),
            PolicyError::MissingMx => f.write_str(
                "the MTA-STS policy has no `mx` field, required unless the mode is `none` (RFC 8461 §3.2)",
            ),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::InvalidMx { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A parsed MTA-STS policy (RFC 8461 §3.2).
///
/// ```
/// # use starttls::policy::mta_sts::{Mode, Policy};
/// let policy = Policy::parse(b"version: STSv1\nmode: testing\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n").unwrap();
/// assert_eq!(policy.mode(), Mode::Testing);
/// assert_eq!(policy.max_age(), 86400);
/// assert!(policy.matches_mx("backup.example.net"));
/// assert!(!policy.matches_mx("mail.example.org"));
/// ```
///
/// To keep a policy in your storage, keep [`Policy::text`] and parse it
/// again when you load it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    mode: Mode,
    max_age: u64,
    mx: Vec<MxPattern>,
    text: String,
}

impl Policy {
    /// Parses a policy body with the default size limit
    /// ([`DEFAULT_MAX_POLICY_SIZE`]).
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        Policy::parse_with_limit(body, DEFAULT_MAX_POLICY_SIZE)
    }

    /// Parses a policy body no larger than `max_size` bytes.
    ///
    /// The grammar is RFC 8461 §3.2: `name: value` lines ending in LF or
    /// CRLF (a bare CR is an error), no whitespace before the name,
    /// whitespace after the colon and at the end of the line ignored. Field
    /// names are case-sensitive. `version`, `mode` and `max_age` are
    /// required, and only their first occurrence counts; `mx` may repeat and
    /// is required unless the mode is `none`; other fields are checked
    /// against the extension grammar and ignored. One leniency beyond the
    /// ABNF: blank lines are skipped.
    pub fn parse_with_limit(body: &[u8], max_size: usize) -> Result<Policy, PolicyError> {
        if body.len() > max_size {
            return Err(PolicyError::TooLarge {
                size: body.len(),
                limit: max_size,
            });
        }
        let text = std::str::from_utf8(body).map_err(|e| {
            let before = body.get(..e.valid_up_to()).unwrap_or_default();
            PolicyError::NotUtf8 {
                line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            }
        })?;

        let mut version = false;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.contains('\r') {
                return Err(PolicyError::Malformed {
                    line,
                    reason: "a bare CR: lines end in LF or CRLF",
                });
            }
            let content = raw.trim_end_matches([' ', '\t']);
            if content.is_empty() {
                continue;
            }
            if content.starts_with([' ', '\t']) {
                return Err(PolicyError::Malformed {
                    line,
                    reason: "a field must start at the beginning of its line",
                });
            }
            let Some((name, value)) = content.split_once(':') else {
                return Err(PolicyError::Malformed {
                    line,
                    reason: "a field must be `name: value`",
                });
            };
            if !is_ext_name(name.as_bytes()) {
                return Err(PolicyError::Malformed {
                    line,
                    reason: "a field name is 1 to 32 letters, digits, `_`, `-` or `.`, starting with a letter or digit",
                });
            }
            let value = value.trim_start_matches([' ', '\t']);
            if value.is_empty() {
                return Err(PolicyError::Malformed {
                    line,
                    reason: "a field value must not be empty",
                });
            }
            if !value.chars().all(|c| c == ' ' || !(c.is_ascii_control())) {
                return Err(PolicyError::Malformed {
                    line,
                    reason: "a field value must not contain control characters or tabs",
                });
            }
            match name {
                "version" if !version => {
                    if value != "STSv1" {
                        return Err(PolicyError::InvalidVersion { line });
                    }
                    version = true;
                }
                "mode" if mode.is_none() => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        _ => return Err(PolicyError::InvalidMode { line }),
                    });
                }
                "max_age" if max_age.is_none() => {
                    let value = parse_max_age(value).ok_or(PolicyError::InvalidMaxAge { line })?;
                    if value > MAX_MAX_AGE {
                        return Err(PolicyError::MaxAgeTooLarge { line, value });
                    }
                    max_age = Some(value);
                }
                "mx" => {
                    let pattern = MxPattern::parse(value)
                        .map_err(|error| PolicyError::InvalidMx { line, error })?;
                    mx.push(pattern);
                }
                _ => {} // a repeated field or an extension: ignored
            }
        }
        if !version {
            return Err(PolicyError::MissingField { field: "version" });
        }
        let mode = mode.ok_or(PolicyError::MissingField { field: "mode" })?;
        let max_age = max_age.ok_or(PolicyError::MissingField { field: "max_age" })?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::MissingMx);
        }
        Ok(Policy {
            mode,
            max_age,
            mx,
            text: text.to_owned(),
        })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How long, in seconds after it was fetched, the policy may be used
    /// (at most [`MAX_MAX_AGE`]).
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    /// The `mx` patterns, in the order given.
    pub fn mx(&self) -> &[MxPattern] {
        &self.mx
    }

    /// Whether an MX host name matches at least one `mx` pattern (§4.1).
    pub fn matches_mx(&self, mx_host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(mx_host))
    }

    /// The policy body as received.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The non-blank lines of the policy, without line ends or trailing
    /// whitespace: the TLS-RPT `policy-string` (RFC 8460 §4.4).
    pub fn lines(&self) -> impl Iterator<Item = &str> + '_ {
        self.text
            .split('\n')
            .map(|l| l.trim_end_matches(['\r', ' ', '\t']))
            .filter(|l| !l.is_empty())
    }
}

/// `1*10(DIGIT)`, as a number.
fn parse_max_age(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 10 {
        return None;
    }
    value.bytes().try_fold(0u64, |acc, b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

// ---------------------------------------------------------------------------
// Fetching (§3.3)
// ---------------------------------------------------------------------------

/// Why no policy came back from the Policy Host. Each maps to a TLS-RPT
/// result type ([`FetchError::result_type`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// DNS, connection, TLS (other than the certificate), timeout, or any
    /// other transport failure.
    Unreachable {
        /// What went wrong, for logs and reports.
        reason: String,
    },
    /// The Policy Host's certificate is not PKIX-valid for
    /// `mta-sts.<domain>` (§3.3).
    WebPki {
        /// What went wrong, for logs and reports.
        reason: String,
    },
    /// The HTTP status was not 200. Redirects (3xx) land here too: they
    /// must not be followed (§3.3).
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// The media type was not `text/plain` (§3.2).
    NotTextPlain,
    /// The body is not a valid policy.
    Invalid(PolicyError),
}

impl FetchError {
    /// The TLS-RPT result type for this failure (RFC 8460 §4.3.2.2):
    /// `sts-webpki-invalid` for a certificate problem, `sts-policy-invalid`
    /// for a bad body or media type, `sts-policy-fetch-error` otherwise.
    pub fn result_type(&self) -> ResultType {
        match self {
            FetchError::Unreachable { .. } | FetchError::HttpStatus { .. } => {
                ResultType::StsPolicyFetchError
            }
            FetchError::WebPki { .. } => ResultType::StsWebpkiInvalid,
            FetchError::NotTextPlain | FetchError::Invalid(_) => ResultType::StsPolicyInvalid,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The reasons come from the caller's HTTPS and TLS stacks and
            // may quote the server: escaped like every peer-controlled text.
            FetchError::Unreachable { reason } => write!(
                f,
                "the MTA-STS policy could not be fetched: {} (RFC 8461 §3.3)",
                crate::Escaped::new(&reason)
            ),
            FetchError::WebPki { reason } => write!(
                f,
                "the MTA-STS policy host's certificate is not valid: {} (RFC 8461 §3.3)",
                crate::Escaped::new(&reason)
            ),
            FetchError::HttpStatus { status } => write!(
                f,
                "the MTA-STS policy host answered HTTP {status}, not 200; redirects are not followed (RFC 8461 §3.3)"
            ),
            FetchError::NotTextPlain => {
                f.write_str("the MTA-STS policy is not served as text/plain (RFC 8461 §3.2)")
            }
            FetchError::Invalid(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PolicyError> for FetchError {
    fn from(e: PolicyError) -> FetchError {
        FetchError::Invalid(e)
    }
}

/// Checks an HTTPS response from the Policy Host and parses its body: the
/// status must be 200 (no redirects, §3.3), the media type `text/plain`
/// (parameters ignored, §3.2; `None` if there was no `Content-Type`), and
/// the body a valid policy of at most `max_size` bytes.
///
/// ```
/// # use starttls::policy::mta_sts::{parse_response, FetchError, DEFAULT_MAX_POLICY_SIZE};
/// let body = b"version: STSv1\nmode: none\nmax_age: 86400\n";
/// assert!(parse_response(200, Some("text/plain; charset=utf-8"), body, DEFAULT_MAX_POLICY_SIZE).is_ok());
/// assert_eq!(
///     parse_response(301, Some("text/plain"), body, DEFAULT_MAX_POLICY_SIZE),
///     Err(FetchError::HttpStatus { status: 301 })
/// );
/// assert_eq!(
///     parse_response(200, Some("text/html"), body, DEFAULT_MAX_POLICY_SIZE),
///     Err(FetchError::NotTextPlain)
/// );
/// ```
pub fn parse_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    max_size: usize,
) -> Result<Policy, FetchError> {
    if status != 200 {
        return Err(FetchError::HttpStatus { status });
    }
    let media_type = content_type
        .map(|ct| ct.split(';').next().unwrap_or_default().trim())
        .unwrap_or_default();
    if !media_type.eq_ignore_ascii_case("text/plain") {
        return Err(FetchError::NotTextPlain);
    }
    Ok(Policy::parse_with_limit(body, max_size)?)
}

// ---------------------------------------------------------------------------
// Cache (§3.3, §5.1)
// ---------------------------------------------------------------------------

/// A policy as fetched: the policy, the `id` of the TXT record it was
/// fetched for, and when (your clock, in seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPolicy {
    policy: Policy,
    id: PolicyId,
    fetched_at: u64,
}

impl CachedPolicy {
    /// A cache entry, for example one rebuilt from your storage.
    pub fn new(policy: Policy, id: PolicyId, fetched_at: u64) -> CachedPolicy {
        CachedPolicy {
            policy,
            id,
            fetched_at,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The id of the TXT record the policy was fetched for.
    pub fn id(&self) -> PolicyId {
        self.id
    }

    /// When the policy was fetched.
    pub fn fetched_at(&self) -> u64 {
        self.fetched_at
    }

    /// The policy's `max_age`.
    pub fn max_age(&self) -> u64 {
        self.policy.max_age
    }

    /// Seconds since the policy was fetched (0 if `now` is earlier).
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.fetched_at)
    }

    /// The last moment the policy may be used: `fetched_at + max_age`.
    pub fn expires_at(&self) -> u64 {
        self.fetched_at.saturating_add(self.policy.max_age)
    }

    /// Whether the time since the fetch exceeds `max_age` (§5.1 step 1).
    pub fn is_expired(&self, now: u64) -> bool {
        now > self.expires_at()
    }
}

/// What the `_mta-sts` TXT lookup gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxtLookup {
    /// One valid record with this policy version.
    Found(PolicyId),
    /// No usable record: none, several, or an invalid one (§3.1).
    NotFound,
    /// The lookup itself failed (timeout, `SERVFAIL`).
    Failed,
}

impl TxtLookup {
    /// Classifies the TXT records found at `_mta-sts.<domain>` (each one's
    /// strings already joined); pass an empty list for `NXDOMAIN` or no TXT
    /// records. See [`StsRecord::select`].
    pub fn from_records<I>(records: I) -> TxtLookup
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        match StsRecord::select(records) {
            Ok(record) => TxtLookup::Found(record.id),
            Err(_) => TxtLookup::NotFound,
        }
    }
}

/// What to do about a domain's policy before delivering, from
/// [`PolicyCache::plan`]. In every case, the policy to apply to deliveries
/// right now is [`PolicyCache::policy`] — a cached policy stays in force until
/// it expires or is replaced, whatever DNS or HTTPS say meanwhile (§3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheAction {
    /// The cached policy is current: apply it.
    UseCached,
    /// The cached policy is current but more than a day old: apply it, and
    /// fetch the policy again in the background for this id (§3.3 "refresh
    /// cached policies before they expire", §10.2).
    Refresh {
        /// The id to fetch and store the policy under.
        id: PolicyId,
    },
    /// Fetch the policy for this id: there is none cached, it expired, or
    /// the TXT record names a new id. Until it arrives, apply the still-valid
    /// cached policy if any, or else deliver as if the domain had no policy —
    /// or wait for the fetch (§5.1 step 1).
    Fetch {
        /// The id to fetch and store the policy under.
        id: PolicyId,
    },
    /// A fetch for this id failed less than [`FETCH_RETRY_INTERVAL`] ago; do
    /// not try again before `retry_at` (§3.3). Meanwhile, as for `Fetch`.
    RetryLater {
        /// The id whose fetch failed.
        id: PolicyId,
        /// When to try again.
        retry_at: u64,
    },
    /// The cached policy expired and no TXT record names a policy: deliver
    /// as if the domain had no MTA-STS; the entry may be dropped.
    Expired,
    /// No cached policy and no usable TXT record: deliver as if the domain
    /// had no MTA-STS (§3.1).
    NoPolicy,
}

/// What a failed fetch means, from [`PolicyCache::fetch_failed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchFailure {
    /// `true` if a still-valid cached policy stays in force (§3.3); `false`
    /// if deliveries go on as if the domain had no policy.
    pub keep_cached: bool,
    /// The TLS-RPT result type to report, or `None` when the cached policy's
    /// mode is `none` (RFC 8461 §6).
    pub report: Option<ResultType>,
}

/// Everything to remember about one Policy Domain between deliveries: the
/// cached policy, and the last failed fetch (to pace retries). A plain
/// value: keep one per domain wherever you like, and rebuild it with
/// [`PolicyCache::from_parts`].
///
/// ```
/// # use starttls::policy::mta_sts::*;
/// let id = PolicyId::new("v1").unwrap();
/// let policy = Policy::parse(b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 604800\n").unwrap();
/// let mut cache = PolicyCache::new();
/// cache.store(id, policy, 1000);
///
/// // Same id in DNS: keep using it.
/// assert_eq!(cache.plan(&TxtLookup::Found(id), 2000), CacheAction::UseCached);
/// // DNS blocked by an attacker: the cached policy still applies (§3.3).
/// assert_eq!(cache.plan(&TxtLookup::Failed, 2000), CacheAction::UseCached);
/// assert!(cache.policy(2000).is_some());
/// // A new id: fetch, and apply the cached one meanwhile.
/// let new = PolicyId::new("v2").unwrap();
/// assert_eq!(cache.plan(&TxtLookup::Found(new), 2000), CacheAction::Fetch { id: new });
/// // The fetch fails: the cached policy stays, and the failure is reported.
/// let failure = cache.fetch_failed(new, &FetchError::HttpStatus { status: 404 }, 2000);
/// assert!(failure.keep_cached);
/// // A week later, with the record gone, the policy has expired.
/// assert_eq!(cache.plan(&TxtLookup::NotFound, 1000 + 604_801), CacheAction::Expired);
/// assert!(cache.policy(1000 + 604_801).is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyCache {
    entry: Option<CachedPolicy>,
    failed_fetch: Option<(PolicyId, u64)>,
}

impl PolicyCache {
    /// Nothing known about the domain.
    pub fn new() -> PolicyCache {
        PolicyCache::default()
    }

    /// Rebuilds a cache from what you stored: the entry, and optionally the
    /// id and time of the last failed fetch.
    pub fn from_parts(
        entry: Option<CachedPolicy>,
        failed_fetch: Option<(PolicyId, u64)>,
    ) -> PolicyCache {
        PolicyCache {
            entry,
            failed_fetch,
        }
    }

    /// The cached entry, expired or not.
    pub fn entry(&self) -> Option<&CachedPolicy> {
        self.entry.as_ref()
    }

    /// The id and time of the last failed fetch, cleared by a successful one.
    pub fn failed_fetch(&self) -> Option<(PolicyId, u64)> {
        self.failed_fetch
    }

    /// The policy to apply now: the cached one, unless it has expired.
    pub fn policy(&self, now: u64) -> Option<&Policy> {
        self.valid(now).map(|e| &e.policy)
    }

    fn valid(&self, now: u64) -> Option<&CachedPolicy> {
        self.entry.as_ref().filter(|e| !e.is_expired(now))
    }

    /// Decides what to do given what the TXT lookup found (§3.1, §3.3,
    /// §5.1):
    ///
    /// | cached policy | TXT record | action |
    /// |---|---|---|
    /// | valid, same id | found | [`UseCached`](CacheAction::UseCached), or [`Refresh`](CacheAction::Refresh) once a day old |
    /// | valid | not found / lookup failed | the same: absence of a record does not remove a cached policy |
    /// | valid, other id | found | [`Fetch`](CacheAction::Fetch) the new id, apply the cached one meanwhile |
    /// | none or expired | found | [`Fetch`](CacheAction::Fetch) |
    /// | expired | not found / failed | [`Expired`](CacheAction::Expired) |
    /// | none | not found / failed | [`NoPolicy`](CacheAction::NoPolicy) |
    ///
    /// A `Fetch` for an id whose fetch failed less than
    /// [`FETCH_RETRY_INTERVAL`] ago becomes
    /// [`RetryLater`](CacheAction::RetryLater); a `Refresh`, `UseCached`.
    pub fn plan(&self, txt: &TxtLookup, now: u64) -> CacheAction {
        match (self.valid(now), txt) {
            (Some(entry), TxtLookup::Found(id)) if entry.id == *id => self.refresh(entry, now),
            (_, TxtLookup::Found(id)) => self.paced(*id, now),
            (Some(entry), TxtLookup::NotFound | TxtLookup::Failed) => self.refresh(entry, now),
            (None, TxtLookup::NotFound | TxtLookup::Failed) => {
                if self.entry.is_some() {
                    CacheAction::Expired
                } else {
                    CacheAction::NoPolicy
                }
            }
        }
    }

    /// A valid entry: refresh it once it is a day old, unless a fetch of
    /// its id failed recently (then there is nothing to do yet).
    fn refresh(&self, entry: &CachedPolicy, now: u64) -> CacheAction {
        if entry.age(now) < REFRESH_INTERVAL {
            return CacheAction::UseCached;
        }
        match self.paced(entry.id, now) {
            CacheAction::Fetch { id } => CacheAction::Refresh { id },
            _ => CacheAction::UseCached,
        }
    }

    /// `Fetch`, or `RetryLater` when the last fetch of the same id failed
    /// less than [`FETCH_RETRY_INTERVAL`] ago.
    fn paced(&self, id: PolicyId, now: u64) -> CacheAction {
        match self.failed_fetch {
            Some((failed, at)) if failed == id => {
                let retry_at = at.saturating_add(FETCH_RETRY_INTERVAL);
                if now < retry_at {
                    return CacheAction::RetryLater { id, retry_at };
                }
                CacheAction::Fetch { id }
            }
            _ => CacheAction::Fetch { id },
        }
    }

    /// Records a successfully fetched policy, fetched for `id` at `now`. It
    /// replaces any cached one.
    pub fn store(&mut self, id: PolicyId, policy: Policy, now: u64) {
        self.entry = Some(CachedPolicy::new(policy, id, now));
        self.failed_fetch = None;
    }

    /// Records a failed fetch for `id` at `now` and says what follows: a
    /// still-valid cached policy stays in force (§3.3), otherwise deliveries
    /// go on as if the domain had no policy; the failure is reportable
    /// unless the cached policy's mode is `none` (§6).
    pub fn fetch_failed(&mut self, id: PolicyId, error: &FetchError, now: u64) -> FetchFailure {
        self.failed_fetch = Some((id, now));
        let cached_mode = self.valid(now).map(|e| e.policy.mode);
        FetchFailure {
            keep_cached: cached_mode.is_some(),
            report: match cached_mode {
                Some(Mode::None) => None,
                _ => Some(error.result_type()),
            },
        }
    }

    /// Forgets everything about the domain.
    pub fn clear(&mut self) {
        *self = PolicyCache::default();
    }
}

// ---------------------------------------------------------------------------
// Validation (§4) and application (§5)
// ---------------------------------------------------------------------------

/// What was wrong with a certificate, as your TLS verifier reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Not valid for the MX host name (no matching DNS-ID).
    HostMismatch,
    /// Expired (or not yet valid).
    Expired,
    /// Does not chain to a trusted root: unknown CA, bad chain, name
    /// constraints, revoked.
    NotTrusted,
    /// Any other validation failure.
    Other,
}

impl CertificateProblem {
    /// The TLS-RPT result type (RFC 8460 §4.3.1).
    pub fn result_type(self) -> ResultType {
        match self {
            CertificateProblem::HostMismatch => ResultType::CertificateHostMismatch,
            CertificateProblem::Expired => ResultType::CertificateExpired,
            CertificateProblem::NotTrusted => ResultType::CertificateNotTrusted,
            CertificateProblem::Other => ResultType::ValidationFailure,
        }
    }
}

/// How TLS went with one MX host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsOutcome {
    /// The MX host did not offer STARTTLS, or refused it.
    NoStartTls,
    /// STARTTLS was offered but the TLS handshake failed for a reason other
    /// than the certificate.
    StartTlsFailed {
        /// What went wrong (becomes the TLS-RPT `failure-reason-code`).
        reason: String,
    },
    /// The certificate failed PKIX validation.
    CertificateInvalid {
        /// The kind of failure.
        problem: CertificateProblem,
        /// What went wrong, e.g. the verifier's error code (becomes the
        /// TLS-RPT `failure-reason-code`; may be empty).
        reason: String,
    },
    /// TLS is up with a certificate that chains to a trusted root, is not
    /// expired, and was verified for the DNS name `name`. The decision checks
    /// that `name` is the MX host name (§4.2).
    Verified {
        /// The name the certificate was verified against.
        name: String,
    },
}

/// Why an MX host fails the policy (RFC 8461 §4). `Display` gives a message
/// naming the rule, with the host name, names and reasons escaped (control
/// characters as `\r`, `\n`, `\u{1b}`, …: they come from DNS and the peer);
/// [`Failure::result_type`] the TLS-RPT result type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The MX host matches no `mx` pattern (§4.1).
    MxNotListed {
        /// The MX host name.
        mx_host: String,
    },
    /// The MX host does not support STARTTLS (§4 item 2).
    NoStartTls {
        /// The MX host name.
        mx_host: String,
    },
    /// The TLS handshake failed (§4.2).
    StartTlsFailed {
        /// The MX host name.
        mx_host: String,
        /// What went wrong.
        reason: String,
    },
    /// The certificate is not PKIX-valid for the MX host (§4.2).
    Certificate {
        /// The MX host name.
        mx_host: String,
        /// The kind of failure.
        problem: CertificateProblem,
        /// What went wrong (may be empty).
        reason: String,
    },
    /// The certificate was verified, but for another name than the MX host
    /// (§4.2: it must be valid for that host).
    NameNotVerified {
        /// The MX host name.
        mx_host: String,
        /// The name it was verified for.
        verified: String,
    },
}

impl Failure {
    /// The MX host name (lowercase, without trailing dot).
    pub fn mx_host(&self) -> &str {
        match self {
            Failure::MxNotListed { mx_host }
            | Failure::NoStartTls { mx_host }
            | Failure::StartTlsFailed { mx_host, .. }
            | Failure::Certificate { mx_host, .. }
            | Failure::NameNotVerified { mx_host, .. } => mx_host,
        }
    }

    /// The TLS-RPT result type (RFC 8460 §4.3). An MX host that matches no
    /// pattern has no result type of its own and is reported as
    /// `validation-failure` with reason code `mx-not-in-policy`.
    pub fn result_type(&self) -> ResultType {
        match self {
            Failure::MxNotListed { .. } | Failure::StartTlsFailed { .. } => {
                ResultType::ValidationFailure
            }
            Failure::NoStartTls { .. } => ResultType::StartTlsNotSupported,
            Failure::Certificate { problem, .. } => problem.result_type(),
            Failure::NameNotVerified { .. } => ResultType::CertificateHostMismatch,
        }
    }

    /// The TLS-RPT `failure-reason-code`, if there is one.
    pub fn reason_code(&self) -> Option<&str> {
        match self {
            Failure::MxNotListed { .. } => Some("mx-not-in-policy"),
            Failure::NoStartTls { .. } => None,
            Failure::StartTlsFailed { reason, .. } | Failure::Certificate { reason, .. } => {
                Some(reason.as_str()).filter(|r| !r.is_empty())
            }
            Failure::NameNotVerified { .. } => Some("verified-for-another-name"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The MX host name came from DNS, the names and reasons from the
        // peer's certificate or the TLS stack: escape control characters so
        // that a refusal reason shown in a log, a UI or an SMTP reply cannot
        // carry a line break or a terminal escape.
        match self {
            Failure::MxNotListed { mx_host } => write!(
                f,
                "MX host {} matches no `mx` pattern of the MTA-STS policy (RFC 8461 §4.1)",
                crate::Escaped::new(&mx_host)
            ),
            Failure::NoStartTls { mx_host } => write!(
                f,
                "MX host {} does not support STARTTLS, which the MTA-STS policy requires (RFC 8461 §4)",
                crate::Escaped::new(&mx_host)
            ),
            Failure::StartTlsFailed { mx_host, reason } => write!(
                f,
                "TLS with MX host {} failed: {} (RFC 8461 §4.2)",
                crate::Escaped::new(&mx_host),
                crate::Escaped::new(&reason)
            ),
            Failure::Certificate {
                mx_host,
                problem,
                reason,
            } => {
                let what = match problem {
                    CertificateProblem::HostMismatch => "is not valid for that name",
                    CertificateProblem::Expired => "has expired",
                    CertificateProblem::NotTrusted => "does not chain to a trusted root",
                    CertificateProblem::Other => "failed validation",
                };
                write!(f, "the certificate of MX host {} {what}", crate::Escaped::new(&mx_host))?;
                if !reason.is_empty() {
                    write!(f, ": {}", crate::Escaped::new(&reason))?;
                }
                f.write_str(" (RFC 8461 §4.2)")
            }
            Failure::NameNotVerified { mx_host, verified } => write!(
                f,
                "the certificate was verified for {}, not for MX host {} (RFC 8461 §4.2)",
                crate::Escaped::new(&verified),
                crate::Escaped::new(&mx_host)
            ),
        }
    }
}

impl std::error::Error for Failure {}

/// Lowercase, without trailing dot: how MX host names appear in failures.
fn display_host(mx_host: &str) -> String {
    strip_root(mx_host).to_ascii_lowercase()
}

/// The TLS half of policy validation (§4 item 2, §4.2), without MX
/// matching: STARTTLS supported, and a certificate PKIX-valid for the MX
/// host. Useful on its own to report on deliveries without a policy.
pub fn check_tls(mx_host: &str, tls: &TlsOutcome) -> Result<(), Failure> {
    let host = display_host(mx_host);
    match tls {
        TlsOutcome::NoStartTls => Err(Failure::NoStartTls { mx_host: host }),
        TlsOutcome::StartTlsFailed { reason } => Err(Failure::StartTlsFailed {
            mx_host: host,
            reason: reason.clone(),
        }),
        TlsOutcome::CertificateInvalid { problem, reason } => Err(Failure::Certificate {
            mx_host: host,
            problem: *problem,
            reason: reason.clone(),
        }),
        TlsOutcome::Verified { name } => {
            if strip_root(name).eq_ignore_ascii_case(&host) && check_domain(&host).is_ok() {
                Ok(())
            } else {
                Err(Failure::NameNotVerified {
                    mx_host: host,
                    verified: name.clone(),
                })
            }
        }
    }
}

/// Policy validation (§4), whatever the mode: the MX host matches an `mx`
/// pattern (§4.1), and TLS passes [`check_tls`] (§4.2). The MX check comes
/// first, so you may call this (or [`Policy::matches_mx`]) before even
/// connecting.
pub fn validate(policy: &Policy, mx_host: &str, tls: &TlsOutcome) -> Result<(), Failure> {
    if !policy.matches_mx(mx_host) {
        return Err(Failure::MxNotListed {
            mx_host: display_host(mx_host),
        });
    }
    check_tls(mx_host, tls)
}

/// May a message be delivered to this MX host, given this TLS outcome?
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Yes: the policy validated, or there is no policy in force.
    Deliver,
    /// Yes, but the policy failed to validate and its mode is `testing`:
    /// report the failure (§5).
    DeliverButReport(Failure),
    /// No: the policy failed to validate and its mode is `enforce` (§5).
    /// Treat the MX host as unreachable and try the next one (§8.4); this
    /// is a temporary failure, and a message must not bounce before the TXT
    /// record was checked for a new policy (§5, §5.1 step 3:
    /// [`PolicyCache::plan`]). The failure's `Display` is the reason.
    Refuse(Failure),
}

impl Decision {
    /// `true` for `Deliver` and `DeliverButReport`.
    pub fn may_deliver(&self) -> bool {
        !matches!(self, Decision::Refuse(_))
    }

    /// The failure to report, if any.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Decision::Deliver => None,
            Decision::DeliverButReport(f) | Decision::Refuse(f) => Some(f),
        }
    }
}

/// Applies the policy in force (§5), from [`PolicyCache::policy`], to a
/// delivery attempt: with no policy or mode `none`, [`Decision::Deliver`];
/// otherwise [`validate`], and on failure `testing` gives
/// [`Decision::DeliverButReport`] and `enforce` [`Decision::Refuse`].
///
/// ```
/// # use starttls::policy::mta_sts::*;
/// let testing = Policy::parse(b"version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n").unwrap();
/// let expired = TlsOutcome::CertificateInvalid {
///     problem: CertificateProblem::Expired,
///     reason: "X509_V_ERR_CERT_HAS_EXPIRED".into(),
/// };
/// let decision = decide(Some(&testing), "mx.example.com", &expired);
/// assert!(decision.may_deliver());
/// assert_eq!(decision.failure().unwrap().result_type().as_str(), "certificate-expired");
/// assert_eq!(decide(None, "mx.example.com", &TlsOutcome::NoStartTls), Decision::Deliver);
/// ```
pub fn decide(policy: Option<&Policy>, mx_host: &str, tls: &TlsOutcome) -> Decision {
    let Some(policy) = policy else {
        return Decision::Deliver;
    };
    if policy.mode == Mode::None {
        return Decision::Deliver;
    }
    match validate(policy, mx_host, tls) {
        Ok(()) => Decision::Deliver,
        Err(failure) => match policy.mode {
            Mode::Enforce => Decision::Refuse(failure),
            Mode::Testing | Mode::None => Decision::DeliverButReport(failure),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &[u8] = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    fn id(s: &str) -> PolicyId {
        PolicyId::new(s).expect("valid id")
    }

    fn policy(body: &str) -> Policy {
        Policy::parse(body.as_bytes()).expect("valid policy")
    }

    fn enforce() -> Policy {
        policy("version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.mx.example.net\nmax_age: 86400\n")
    }

    fn testing() -> Policy {
        policy("version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: *.mx.example.net\nmax_age: 86400\n")
    }

    fn none_mode() -> Policy {
        policy("version: STSv1\nmode: none\nmax_age: 86400\n")
    }

    fn verified(name: &str) -> TlsOutcome {
        TlsOutcome::Verified { name: name.into() }
    }

    /// xorshift64*: a deterministic generator for the property loops.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    // --- §3.1 TXT record ---------------------------------------------------

    #[test]
    fn record_rfc_example() {
        let r = StsRecord::parse(b"v=STSv1; id=20160831085700Z;").unwrap();
        assert_eq!(r.id().as_str(), "20160831085700Z");
    }

    #[test]
    fn record_delimiters_and_whitespace() {
        for txt in [
            "v=STSv1; id=abc",
            "v=STSv1;id=abc",
            "v=STSv1;id=abc;",
            "v=STSv1 ;id=abc",
            "v=STSv1\t;\tid=abc\t;\t",
            "v=STSv1  ;  id=abc  ;  ",
            "v=STSv1; id=abc ", // trailing whitespace: tolerated
        ] {
            assert_eq!(
                StsRecord::parse(txt.as_bytes()).unwrap().id(),
                id("abc"),
                "{txt:?}"
            );
        }
    }

    #[test]
    fn record_field_order_and_extensions() {
        for txt in [
            "v=STSv1; ext=1; id=abc",
            "v=STSv1; id=abc; ext=1",
            "v=STSv1; a.b_c-d=x:y<z>; id=abc; Z9=~",
            "v=STSv1; ID=zzz; id=abc", // `ID` is an extension: names are case-sensitive
        ] {
            assert_eq!(
                StsRecord::parse(txt.as_bytes()).unwrap().id(),
                id("abc"),
                "{txt:?}"
            );
        }
        let name32 = format!("v=STSv1; id=abc; a{}=1", "b".repeat(31));
        assert!(StsRecord::parse(name32.as_bytes()).is_ok());
        let name33 = format!("v=STSv1; id=abc; a{}=1", "b".repeat(32));
        assert!(matches!(
            StsRecord::parse(name33.as_bytes()),
            Err(RecordError::Malformed { .. })
        ));
    }

    #[test]
    fn record_first_id_wins() {
        let r = StsRecord::parse(b"v=STSv1; id=first; id=second").unwrap();
        assert_eq!(r.id().as_str(), "first");
    }

    #[test]
    fn record_id_bounds() {
        let ok32 = format!("v=STSv1; id={}", "A1".repeat(16));
        assert_eq!(
            StsRecord::parse(ok32.as_bytes())
                .unwrap()
                .id()
                .as_str()
                .len(),
            32
        );
        assert!(StsRecord::parse(b"v=STSv1; id=1").is_ok());
        let bad33 = format!("v=STSv1; id={}", "a".repeat(33));
        assert_eq!(
            StsRecord::parse(bad33.as_bytes()),
            Err(RecordError::InvalidId)
        );
        for bad in [
            "id=ab-c",
            "id=ab_c",
            "id=ab.c",
            "id=abc def",
            "id=\u{e9}t\u{e9}",
        ] {
            let txt = format!("v=STSv1; {bad}");
            assert_eq!(
                StsRecord::parse(txt.as_bytes()),
                Err(RecordError::InvalidId),
                "{txt:?}"
            );
        }
    }

    #[test]
    fn record_version_rules() {
        for txt in [
            "V=STSv1; id=1",
            "v=stsv1; id=1",
            "v=STSv10; id=1",
            "v=STSv2; id=1",
            " v=STSv1; id=1",
            "id=1; v=STSv1",
            "",
        ] {
            assert_eq!(
                StsRecord::parse(txt.as_bytes()),
                Err(RecordError::NotStsV1),
                "{txt:?}"
            );
        }
    }

    #[test]
    fn record_missing_id() {
        for txt in [
            "v=STSv1",
            "v=STSv1;",
            "v=STSv1; ",
            "v=STSv1; ext=1",
            "v=STSv1; ID=1",
        ] {
            assert_eq!(
                StsRecord::parse(txt.as_bytes()),
                Err(RecordError::MissingId),
                "{txt:?}"
            );
        }
    }

    #[test]
    fn record_malformed() {
        for txt in [
            "v=STSv1 id=1",
            "v=STSv1;; id=1",
            "v=STSv1; id=1;;",
            "v=STSv1; id=1; ;",
            "v=STSv1; id = 1",
            "v=STSv1; id=1; =x",
            "v=STSv1; id=1; foo",
            "v=STSv1; id=1; foo=",
            "v=STSv1; id=1; ext=a=b",
            "v=STSv1; id=1; ext=a b",
            "v=STSv1; id=1; _ext=1",
            "v=STSv1; id=1; -ext=1",
            "v=STSv1; id=1; ext=\u{e9}",
            "v=STSv1; id=1; ext=a\x7f",
            "v=STSv1; id=; ext=1",
            "v=STSv1; id=1; id=bad value",
        ] {
            assert!(
                matches!(
                    StsRecord::parse(txt.as_bytes()),
                    Err(RecordError::Malformed { .. })
                ),
                "{txt:?}: {:?}",
                StsRecord::parse(txt.as_bytes())
            );
        }
        let e = StsRecord::parse(b"v=STSv1; id=1;; x=1").unwrap_err();
        assert_eq!(
            e,
            RecordError::Malformed {
                offset: 14,
                reason: "an empty field (two `;` in a row)"
            }
        );
        assert!(e.to_string().contains("RFC 8461 §3.1"));
    }

    #[test]
    fn record_select() {
        assert_eq!(
            StsRecord::select(Vec::<&[u8]>::new()),
            Err(RecordError::NoRecord)
        );
        assert_eq!(
            StsRecord::select(["v=spf1 -all", "hello", " v=STSv1; id=1", "v=STSv10; id=2"]),
            Err(RecordError::NoRecord)
        );
        assert_eq!(
            StsRecord::select(["v=spf1 -all", "v=STSv1; id=abc"])
                .unwrap()
                .id(),
            id("abc")
        );
        assert_eq!(
            StsRecord::select(["v=STSv1; id=a", "v=STSv1; id=a"]),
            Err(RecordError::MultipleRecords { count: 2 })
        );
        // Among several records, only those beginning with `v=STSv1;` count
        // (RFC 8461 §3.1): `v=STSv1` alone is discarded.
        assert_eq!(
            StsRecord::select(["v=STSv1; id=a", "v=STSv1;broken", "v=STSv1"]),
            Err(RecordError::MultipleRecords { count: 2 })
        );
        for discarded in ["v=STSv1", "v=STSv1 id=2", "v=STSv1\tid=2", "v=STSv1 ; id=2"] {
            for records in [[discarded, "v=STSv1; id=1"], ["v=STSv1; id=1", discarded]] {
                assert_eq!(
                    StsRecord::select(records).map(|r| r.id()),
                    Ok(id("1")),
                    "{records:?}"
                );
            }
        }
        // A record returned alone is parsed as it is: invalid, its error
        // comes through; `v=STSv1 ;` (space before the semicolon), which the
        // grammar allows, names a policy.
        assert_eq!(StsRecord::select(["v=STSv1"]), Err(RecordError::MissingId));
        assert_eq!(StsRecord::select(["v=STSv1 ; id=x"]).unwrap().id(), id("x"));
        assert_eq!(
            TxtLookup::from_records(["v=STSv1", "v=STSv1; id=1"]),
            TxtLookup::Found(id("1"))
        );
    }

    #[test]
    fn record_strings_are_joined_without_spaces() {
        let strings: [&[u8]; 2] = [b"v=STSv1; id=2016083108", b"5700Z;"];
        let joined = strings.concat();
        assert_eq!(
            StsRecord::parse(&joined).unwrap().id(),
            id("20160831085700Z")
        );
    }

    #[test]
    fn policy_id_value() {
        let a = id("Abc123");
        assert_eq!(a.as_str(), "Abc123");
        assert_eq!(a.to_string(), "Abc123");
        assert_eq!(format!("{a:?}"), "PolicyId(\"Abc123\")");
        assert_ne!(a, id("abc123")); // exact comparison
        assert_eq!(PolicyId::new(""), Err(RecordError::InvalidId));
        assert_eq!(PolicyId::new(&"a".repeat(33)), Err(RecordError::InvalidId));
    }

    #[test]
    fn record_parse_never_panics() {
        let alphabet: &[&[u8]] = &[
            b"v=STSv1", b";", b" ", b"\t", b"=", b"id", b"a", b"9", b"-", b"_", b".", b"\xff",
            b"\0", b"id=", b"v=", b",",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut rec = Vec::new();
            if rng.below(2) == 0 {
                rec.extend_from_slice(b"v=STSv1");
            }
            for _ in 0..rng.below(12) {
                rec.extend_from_slice(rng.pick(alphabet));
            }
            if let Ok(r) = StsRecord::parse(&rec) {
                // Whatever parses has a valid id and began with the version.
                assert!(rec.starts_with(b"v=STSv1"));
                assert!(PolicyId::new(r.id().as_str()).is_ok());
            }
        }
    }

    #[test]
    fn ids_round_trip() {
        let mut rng = Rng(42);
        let chars = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for _ in 0..2_000 {
            let len = 1 + rng.below(MAX_ID_LEN);
            let s: String = (0..len).map(|_| char::from(rng.pick(chars))).collect();
            let txt = format!("v=STSv1; id={s};");
            assert_eq!(StsRecord::parse(txt.as_bytes()).unwrap().id().as_str(), s);
        }
    }

    // --- §3.2 policy file --------------------------------------------------

    #[test]
    fn policy_rfc_example() {
        let p = Policy::parse(RFC_EXAMPLE).unwrap();
        assert_eq!(p.mode(), Mode::Enforce);
        assert_eq!(p.max_age(), 604_800);
        let mx: Vec<String> = p.mx().iter().map(ToString::to_string).collect();
        assert_eq!(
            mx,
            ["mail.example.com", "*.example.net", "backupmx.example.com"]
        );
        assert_eq!(
            p.lines().collect::<Vec<_>>(),
            [
                "version: STSv1",
                "mode: enforce",
                "mx: mail.example.com",
                "mx: *.example.net",
                "mx: backupmx.example.com",
                "max_age: 604800"
            ]
        );
        assert_eq!(p.text().as_bytes(), RFC_EXAMPLE);
        // Stored and parsed again, it is the same policy.
        assert_eq!(Policy::parse(p.text().as_bytes()).unwrap(), p);
    }

    #[test]
    fn policy_line_endings() {
        let lf =
            Policy::parse(b"version: STSv1\nmode: testing\nmx: a.example\nmax_age: 5").unwrap();
        let crlf =
            Policy::parse(b"version: STSv1\r\nmode: testing\r\nmx: a.example\r\nmax_age: 5\r\n")
                .unwrap();
        let mixed =
            Policy::parse(b"version: STSv1\r\nmode: testing\nmx: a.example\r\nmax_age: 5\n")
                .unwrap();
        for p in [&lf, &crlf, &mixed] {
            assert_eq!((p.mode(), p.max_age(), p.mx().len()), (Mode::Testing, 5, 1));
            assert_eq!(p.lines().count(), 4);
        }
        assert_eq!(
            Policy::parse(b"version: STSv1\rmode: testing\nmx: a.example\nmax_age: 5"),
            Err(PolicyError::Malformed {
                line: 1,
                reason: "a bare CR: lines end in LF or CRLF"
            })
        );
    }

    #[test]
    fn policy_whitespace() {
        let p = Policy::parse(
            b"version:STSv1\nmode:\t enforce \t\nmx:   a.example  \n\nmax_age: 60   \n\n\n",
        )
        .unwrap();
        assert_eq!((p.mode(), p.max_age()), (Mode::Enforce, 60));
        assert_eq!(p.mx()[0].to_string(), "a.example");
        assert!(matches!(
            Policy::parse(b"version: STSv1\n mode: enforce\nmx: a.example\nmax_age: 60"),
            Err(PolicyError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            Policy::parse(b"version: STSv1\nmode : enforce\nmx: a.example\nmax_age: 60"),
            Err(PolicyError::Malformed { line: 2, .. })
        ));
    }

    #[test]
    fn policy_mode_none_needs_no_mx() {
        let p = none_mode();
        assert_eq!(p.mode(), Mode::None);
        assert!(p.mx().is_empty());
        for mode in ["enforce", "testing"] {
            let body = format!("version: STSv1\nmode: {mode}\nmax_age: 60\n");
            assert_eq!(Policy::parse(body.as_bytes()), Err(PolicyError::MissingMx));
        }
    }

    #[test]
    fn policy_missing_fields() {
        let cases = [
            ("mode: enforce\nmx: a.example\nmax_age: 1", "version"),
            ("version: STSv1\nmx: a.example\nmax_age: 1", "mode"),
            ("version: STSv1\nmode: enforce\nmx: a.example", "max_age"),
            (
                "Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1",
                "version",
            ),
            ("", "version"),
        ];
        for (body, field) in cases {
            assert_eq!(
                Policy::parse(body.as_bytes()),
                Err(PolicyError::MissingField { field }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn policy_version_and_mode_values() {
        for v in ["STSv2", "stsv1", "STSv1 x", "STSv1;"] {
            let body = format!("version: {v}\nmode: enforce\nmx: a.example\nmax_age: 1");
            assert_eq!(
                Policy::parse(body.as_bytes()),
                Err(PolicyError::InvalidVersion { line: 1 })
            );
        }
        for m in ["Enforce", "report", "enforce,testing", "test"] {
            let body = format!("version: STSv1\nmode: {m}\nmx: a.example\nmax_age: 1");
            assert_eq!(
                Policy::parse(body.as_bytes()),
                Err(PolicyError::InvalidMode { line: 2 })
            );
        }
    }

    #[test]
    fn policy_max_age_bounds() {
        let age = |v: &str| {
            let body = format!("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: {v}\n");
            Policy::parse(body.as_bytes()).map(|p| p.max_age())
        };
        assert_eq!(age("0"), Ok(0));
        assert_eq!(age("1"), Ok(1));
        assert_eq!(age("31557600"), Ok(MAX_MAX_AGE));
        assert_eq!(age("0031557600"), Ok(MAX_MAX_AGE));
        assert_eq!(
            age("31557601"),
            Err(PolicyError::MaxAgeTooLarge {
                line: 4,
                value: 31_557_601
            })
        );
        assert_eq!(
            age("9999999999"),
            Err(PolicyError::MaxAgeTooLarge {
                line: 4,
                value: 9_999_999_999
            })
        );
        for bad in [
            "12345678901",
            "-1",
            "+1",
            "1.5",
            "1e6",
            "0x10",
            "86400s",
            "86 400",
            "١٢",
        ] {
            assert_eq!(
                age(bad),
                Err(PolicyError::InvalidMaxAge { line: 4 }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn policy_duplicates_first_wins() {
        let p = policy(
            "version: STSv1\nmode: testing\nmax_age: 100\nmx: a.example\nversion: STSv9\nmode: enforce\nmax_age: 99999999999999\nmx: b.example\n",
        );
        assert_eq!((p.mode(), p.max_age()), (Mode::Testing, 100));
        assert_eq!(p.mx().len(), 2, "mx repeats");
        // A later duplicate still has to be a syntactically valid field.
        assert!(matches!(
            Policy::parse(
                b"version: STSv1\nmode: testing\nmax_age: 1\nmx: a.example\nmode:\x01x\n"
            ),
            Err(PolicyError::Malformed { line: 5, .. })
        ));
    }

    #[test]
    fn policy_extensions_ignored() {
        let p = policy(
            "version: STSv1\nmode: enforce\nfoo: bar baz\nx_y-z.w: \u{fc}nicode \u{2713}\nmx: a.example\nmax_age: 1\nA: =;:,\n",
        );
        assert_eq!(p.mx().len(), 1);
        assert_eq!(p.lines().count(), 7);
        for (bad, line) in [
            ("foo:\n", 3),
            ("foo: a\tb\n", 3),
            ("foo: a\x00b\n", 3),
            ("_foo: bar\n", 3),
            ("foo bar: x\n", 3),
            ("no colon here\n", 3),
            (": value\n", 3),
        ] {
            let body = format!("version: STSv1\nmode: enforce\n{bad}mx: a.example\nmax_age: 1\n");
            assert!(
                matches!(Policy::parse(body.as_bytes()), Err(PolicyError::Malformed { line: l, .. }) if l == line),
                "{bad:?}: {:?}",
                Policy::parse(body.as_bytes())
            );
        }
    }

    #[test]
    fn policy_invalid_mx() {
        let cases = [
            ("*", DomainError::MisplacedWildcard),
            ("*.", DomainError::Empty),
            ("*.*.example.com", DomainError::MisplacedWildcard),
            ("mail.*.example.com", DomainError::MisplacedWildcard),
            ("mx*.example.com", DomainError::MisplacedWildcard),
            ("**.example.com", DomainError::MisplacedWildcard),
            ("exa_mple.com", DomainError::InvalidCharacter),
            ("-mx.example.com", DomainError::EdgeHyphen),
            ("mx-.example.com", DomainError::EdgeHyphen),
            ("mx..example.com", DomainError::EmptyLabel),
            (".example.com", DomainError::EmptyLabel),
            ("example.com..", DomainError::EmptyLabel),
            ("m\u{fc}nchen.de", DomainError::NotAscii),
            ("mx.example.com:25", DomainError::InvalidCharacter),
        ];
        for (mx, error) in cases {
            let body = format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 1");
            assert_eq!(
                Policy::parse(body.as_bytes()),
                Err(PolicyError::InvalidMx { line: 3, error }),
                "{mx:?}"
            );
        }
        let long_label = format!("{}.example.com", "a".repeat(64));
        assert_eq!(
            MxPattern::parse(&long_label),
            Err(DomainError::LabelTooLong)
        );
        let long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        assert_eq!(long_name.len(), 254);
        assert_eq!(MxPattern::parse(&long_name), Err(DomainError::TooLong));
        assert!(MxPattern::parse(&long_name[1..]).is_ok());
        // A-labels are plain LDH names.
        assert!(MxPattern::parse("xn--mnchen-3ya.de").is_ok());
    }

    #[test]
    fn policy_size_limit() {
        let base = "version: STSv1\nmode: none\nmax_age: 1\n";
        let mut body = base.to_owned();
        while body.len() + 100 < DEFAULT_MAX_POLICY_SIZE {
            body.push_str("x: y\n");
        }
        let pad = DEFAULT_MAX_POLICY_SIZE - body.len() - "z: \n".len();
        body.push_str(&format!("z: {}\n", "a".repeat(pad)));
        assert_eq!(body.len(), DEFAULT_MAX_POLICY_SIZE);
        assert!(Policy::parse(body.as_bytes()).is_ok());
        let over = format!("{body}\n");
        assert_eq!(
            Policy::parse(over.as_bytes()),
            Err(PolicyError::TooLarge {
                size: DEFAULT_MAX_POLICY_SIZE + 1,
                limit: DEFAULT_MAX_POLICY_SIZE
            })
        );
        assert_eq!(
            Policy::parse_with_limit(base.as_bytes(), 10),
            Err(PolicyError::TooLarge {
                size: base.len(),
                limit: 10
            })
        );
        assert!(Policy::parse_with_limit(base.as_bytes(), base.len()).is_ok());
    }

    #[test]
    fn policy_not_utf8() {
        assert_eq!(
            Policy::parse(b"version: STSv1\nmode: none\nfoo: \xff\nmax_age: 1"),
            Err(PolicyError::NotUtf8 { line: 3 })
        );
    }

    #[test]
    fn policy_errors_name_the_rule() {
        let errors = [
            PolicyError::TooLarge { size: 2, limit: 1 },
            PolicyError::NotUtf8 { line: 1 },
            PolicyError::Malformed {
                line: 1,
                reason: "x",
            },
            PolicyError::InvalidVersion { line: 1 },
            PolicyError::InvalidMode { line: 1 },
            PolicyError::InvalidMaxAge { line: 1 },
            PolicyError::MaxAgeTooLarge { line: 1, value: 1 },
            PolicyError::InvalidMx {
                line: 1,
                error: DomainError::NotAscii,
            },
            PolicyError::MissingField { field: "mode" },
            PolicyError::MissingMx,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.contains("RFC "), "{text}");
        }
    }

    #[test]
    fn policy_parse_never_panics() {
        let pieces: &[&str] = &[
            "version",
            "mode",
            "mx",
            "max_age",
            ":",
            " ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "STSv1",
            "enforce",
            "testing",
            "none",
            "*.",
            "a.example",
            "31557600",
            "31557601",
            "9",
            "\u{e9}",
            "x",
        ];
        let mut rng = Rng(7);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut body = String::new();
            for _ in 0..rng.below(24) {
                body.push_str(rng.pick(pieces));
            }
            if let Ok(p) = Policy::parse(body.as_bytes()) {
                parsed += 1;
                assert!(p.max_age() <= MAX_MAX_AGE);
                assert!(p.mode() == Mode::None || !p.mx().is_empty());
                assert_eq!(Policy::parse(p.text().as_bytes()).as_ref(), Ok(&p));
            }
        }
        let _ = parsed;
    }

    // --- §4.1 MX matching --------------------------------------------------

    #[test]
    fn mx_exact() {
        let p = MxPattern::parse("Mail.Example.COM").unwrap();
        assert!(!p.is_wildcard());
        assert_eq!(p.domain(), "mail.example.com");
        for host in ["mail.example.com", "MAIL.EXAMPLE.COM", "mail.example.com."] {
            assert!(p.matches(host), "{host}");
        }
        for host in [
            "x.mail.example.com",
            "example.com",
            "mail.example.co",
            "mail.example.com..",
            "",
        ] {
            assert!(!p.matches(host), "{host}");
        }
        assert!(MxPattern::parse("mail.example.com.")
            .unwrap()
            .matches("mail.example.com"));
    }

    #[test]
    fn mx_wildcard_is_one_whole_label() {
        let p = MxPattern::parse("*.example.com").unwrap();
        assert!(p.is_wildcard());
        assert_eq!(p.domain(), "example.com");
        for host in [
            "mail.example.com",
            "MX1.Example.Com.",
            "a.example.com",
            "xn--mnchen-3ya.example.com",
        ] {
            assert!(p.matches(host), "{host}");
        }
        for host in [
            "example.com",
            "a.b.example.com",
            ".example.com",
            "mailexample.com",
            "evil-example.com",
            "mail.example.com.evil",
            "mail.example.org",
            "*.example.com",
            "m\u{e4}il.example.com",
            "mail..example.com",
            "",
            ".",
        ] {
            assert!(!p.matches(host), "{host}");
        }
        // Patterns on one label are allowed, if weak (§10.4).
        assert!(MxPattern::parse("*.com").unwrap().matches("example.com"));
    }

    #[test]
    fn mx_display_and_from_str() {
        for s in ["*.example.com", "mail.example.com", "a"] {
            assert_eq!(s.parse::<MxPattern>().unwrap().to_string(), s);
        }
        assert_eq!(
            "*.EXAMPLE.com.".parse::<MxPattern>().unwrap().to_string(),
            "*.example.com"
        );
    }

    #[test]
    fn mx_wildcard_property() {
        let labels = ["a", "mx1", "x-y", "9", "xn--abc", "MAIL"];
        let domains = ["example.com", "example.net", "b.example.com", "com"];
        let mut rng = Rng(99);
        for _ in 0..5_000 {
            let domain = rng.pick(&domains);
            let pattern = MxPattern::parse(&format!("*.{domain}")).unwrap();
            let depth = rng.below(4);
            let mut host = String::new();
            for _ in 0..depth {
                host.push_str(rng.pick(&labels));
                host.push('.');
            }
            let host_domain = rng.pick(&domains);
            host.push_str(host_domain);
            // Oracle: what is left after `.domain` is one non-empty label.
            let expected = host
                .strip_suffix(domain)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.'));
            assert_eq!(pattern.matches(&host), expected, "{pattern} vs {host}");
        }
    }

    #[test]
    fn domain_helpers() {
        assert_eq!(txt_name("example.com").unwrap(), "_mta-sts.example.com");
        assert_eq!(policy_host("Example.com.").unwrap(), "mta-sts.example.com");
        assert_eq!(
            policy_url("EXAMPLE.com").unwrap(),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
        assert_eq!(
            policy_url("example.com/evil"),
            Err(DomainError::InvalidCharacter)
        );
        assert_eq!(
            policy_url("b\u{fc}cher.example"),
            Err(DomainError::NotAscii)
        );
        assert_eq!(txt_name(""), Err(DomainError::Empty));
        assert_eq!(
            txt_name("*.example.com"),
            Err(DomainError::MisplacedWildcard)
        );
    }

    // --- §3.3 fetching -----------------------------------------------------

    #[test]
    fn response_checks() {
        let body = b"version: STSv1\nmode: none\nmax_age: 1\n";
        let limit = DEFAULT_MAX_POLICY_SIZE;
        for ct in [
            "text/plain",
            "TEXT/Plain",
            " text/plain ; charset=utf-8",
            "text/plain;charset=us-ascii",
        ] {
            assert!(parse_response(200, Some(ct), body, limit).is_ok(), "{ct}");
        }
        for ct in [
            None,
            Some("text/html"),
            Some("text/plainx"),
            Some(""),
            Some("application/octet-stream"),
        ] {
            assert_eq!(
                parse_response(200, ct, body, limit),
                Err(FetchError::NotTextPlain),
                "{ct:?}"
            );
        }
        for status in [201, 204, 301, 302, 304, 307, 308, 404, 500] {
            assert_eq!(
                parse_response(status, Some("text/plain"), body, limit),
                Err(FetchError::HttpStatus { status })
            );
        }
        assert_eq!(
            parse_response(200, Some("text/plain"), body, 5),
            Err(FetchError::Invalid(PolicyError::TooLarge {
                size: body.len(),
                limit: 5
            }))
        );
        assert!(matches!(
            parse_response(200, Some("text/plain"), b"<html>", limit),
            Err(FetchError::Invalid(_))
        ));
    }

    #[test]
    fn fetch_error_result_types() {
        let cases = [
            (
                FetchError::Unreachable {
                    reason: "timeout".into(),
                },
                "sts-policy-fetch-error",
            ),
            (
                FetchError::HttpStatus { status: 404 },
                "sts-policy-fetch-error",
            ),
            (
                FetchError::WebPki {
                    reason: "expired".into(),
                },
                "sts-webpki-invalid",
            ),
            (FetchError::NotTextPlain, "sts-policy-invalid"),
            (
                FetchError::Invalid(PolicyError::MissingMx),
                "sts-policy-invalid",
            ),
        ];
        for (e, name) in cases {
            assert_eq!(e.result_type().as_str(), name);
            assert!(e.to_string().contains("RFC 8461"), "{e}");
        }
    }

    // --- §3.3, §5.1 cache --------------------------------------------------

    fn cached(p: Policy, id_: &str, at: u64) -> PolicyCache {
        let mut cache = PolicyCache::new();
        cache.store(id(id_), p, at);
        cache
    }

    #[test]
    fn cache_empty() {
        let cache = PolicyCache::new();
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("a")), 0),
            CacheAction::Fetch { id: id("a") }
        );
        assert_eq!(cache.plan(&TxtLookup::NotFound, 0), CacheAction::NoPolicy);
        assert_eq!(cache.plan(&TxtLookup::Failed, 0), CacheAction::NoPolicy);
        assert!(cache.policy(0).is_none());
        assert!(cache.entry().is_none());
    }

    #[test]
    fn cache_current_and_refresh() {
        let cache = cached(enforce(), "a", 1_000); // max_age 86400
        let found = TxtLookup::Found(id("a"));
        assert_eq!(cache.plan(&found, 1_000), CacheAction::UseCached);
        assert_eq!(
            cache.plan(&found, 1_000 + REFRESH_INTERVAL - 1),
            CacheAction::UseCached
        );
        assert_eq!(
            cache.plan(&found, 1_000 + REFRESH_INTERVAL),
            CacheAction::Refresh { id: id("a") }
        );
        // Absence or failure of the record does not remove the policy.
        for txt in [TxtLookup::NotFound, TxtLookup::Failed] {
            assert_eq!(cache.plan(&txt, 2_000), CacheAction::UseCached);
            assert_eq!(
                cache.plan(&txt, 1_000 + 86_400),
                CacheAction::Refresh { id: id("a") }
            );
        }
        assert!(cache.policy(2_000).is_some());
    }

    #[test]
    fn cache_new_id_fetches_and_keeps_old_meanwhile() {
        let cache = cached(enforce(), "a", 1_000);
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("b")), 2_000),
            CacheAction::Fetch { id: id("b") }
        );
        assert_eq!(cache.policy(2_000).map(Policy::mode), Some(Mode::Enforce));
    }

    #[test]
    fn cache_expiry_boundary() {
        let cache = cached(enforce(), "a", 1_000);
        let entry = cache.entry().unwrap();
        assert_eq!(entry.expires_at(), 1_000 + 86_400);
        assert!(!entry.is_expired(1_000 + 86_400));
        assert!(entry.is_expired(1_000 + 86_401));
        assert!(cache.policy(1_000 + 86_400).is_some());
        assert!(cache.policy(1_000 + 86_401).is_none());
        assert_eq!(
            cache.plan(&TxtLookup::NotFound, 1_000 + 86_401),
            CacheAction::Expired
        );
        assert_eq!(
            cache.plan(&TxtLookup::Failed, 1_000 + 86_401),
            CacheAction::Expired
        );
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("a")), 1_000 + 86_401),
            CacheAction::Fetch { id: id("a") }
        );
    }

    #[test]
    fn cache_max_age_zero() {
        let p = policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0\n");
        let cache = cached(p, "a", 50);
        assert!(cache.policy(50).is_some());
        assert!(cache.policy(51).is_none());
    }

    #[test]
    fn cache_clock_and_overflow() {
        let cache = cached(enforce(), "a", 1_000);
        let entry = cache.entry().unwrap();
        assert_eq!(entry.age(10), 0); // clock went back
        assert!(!entry.is_expired(10));
        let late = CachedPolicy::new(enforce(), id("a"), u64::MAX - 5);
        assert_eq!(late.expires_at(), u64::MAX);
        assert!(!late.is_expired(u64::MAX));
        assert_eq!(
            (late.id(), late.fetched_at(), late.max_age()),
            (id("a"), u64::MAX - 5, 86_400)
        );
        assert_eq!(late.policy().mode(), Mode::Enforce);
    }

    #[test]
    fn cache_fetch_failure_without_cache() {
        let mut cache = PolicyCache::new();
        let f = cache.fetch_failed(
            id("a"),
            &FetchError::Unreachable { reason: "x".into() },
            100,
        );
        assert_eq!(
            f,
            FetchFailure {
                keep_cached: false,
                report: Some(ResultType::StsPolicyFetchError)
            }
        );
        assert!(cache.policy(100).is_none());
        // Paced: no new attempt for the same id for five minutes.
        let found = TxtLookup::Found(id("a"));
        assert_eq!(
            cache.plan(&found, 100),
            CacheAction::RetryLater {
                id: id("a"),
                retry_at: 100 + FETCH_RETRY_INTERVAL
            }
        );
        assert_eq!(
            cache.plan(&found, 100 + FETCH_RETRY_INTERVAL - 1),
            CacheAction::RetryLater {
                id: id("a"),
                retry_at: 400
            }
        );
        assert_eq!(
            cache.plan(&found, 100 + FETCH_RETRY_INTERVAL),
            CacheAction::Fetch { id: id("a") }
        );
        // A new id is not held back by the old failure.
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("b")), 101),
            CacheAction::Fetch { id: id("b") }
        );
        assert_eq!(cache.failed_fetch(), Some((id("a"), 100)));
    }

    #[test]
    fn cache_fetch_failure_keeps_valid_cache() {
        let mut cache = cached(testing(), "a", 1_000);
        let f = cache.fetch_failed(id("b"), &FetchError::WebPki { reason: "x".into() }, 2_000);
        assert_eq!(
            f,
            FetchFailure {
                keep_cached: true,
                report: Some(ResultType::StsWebpkiInvalid)
            }
        );
        assert_eq!(cache.policy(2_000).map(Policy::mode), Some(Mode::Testing));
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("b")), 2_100),
            CacheAction::RetryLater {
                id: id("b"),
                retry_at: 2_300
            }
        );
        // The id in DNS went back to the cached one: use it.
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("a")), 2_100),
            CacheAction::UseCached
        );
        // After expiry the failure no longer keeps anything.
        let f = cache.fetch_failed(id("b"), &FetchError::NotTextPlain, 1_000 + 86_401);
        assert_eq!(
            f,
            FetchFailure {
                keep_cached: false,
                report: Some(ResultType::StsPolicyInvalid)
            }
        );
    }

    #[test]
    fn cache_fetch_failure_mode_none_not_reported() {
        let mut cache = cached(none_mode(), "a", 1_000);
        let f = cache.fetch_failed(id("b"), &FetchError::HttpStatus { status: 500 }, 1_500);
        assert_eq!(
            f,
            FetchFailure {
                keep_cached: true,
                report: None
            }
        );
    }

    #[test]
    fn cache_refresh_paced() {
        let week = policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 604800\n");
        let mut cache = cached(week, "a", 0);
        let now = REFRESH_INTERVAL + 10;
        let _ = cache.fetch_failed(id("a"), &FetchError::HttpStatus { status: 503 }, now);
        // The cached policy is current: nothing to do until the pause ends.
        for txt in [TxtLookup::Found(id("a")), TxtLookup::NotFound] {
            assert_eq!(cache.plan(&txt, now + 1), CacheAction::UseCached);
        }
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("a")), now + FETCH_RETRY_INTERVAL),
            CacheAction::Refresh { id: id("a") }
        );
        assert_eq!(
            cache.plan(&TxtLookup::NotFound, now + FETCH_RETRY_INTERVAL),
            CacheAction::Refresh { id: id("a") }
        );
    }

    #[test]
    fn cache_store_replaces_and_clears_failure() {
        let mut cache = cached(enforce(), "a", 0);
        let _ = cache.fetch_failed(id("b"), &FetchError::NotTextPlain, 10);
        cache.store(id("b"), testing(), 20);
        assert_eq!(cache.failed_fetch(), None);
        assert_eq!(cache.entry().map(CachedPolicy::id), Some(id("b")));
        assert_eq!(
            cache.plan(&TxtLookup::Found(id("b")), 30),
            CacheAction::UseCached
        );
        assert_eq!(cache.policy(30).map(Policy::mode), Some(Mode::Testing));
        let restored = PolicyCache::from_parts(cache.entry().cloned(), cache.failed_fetch());
        assert_eq!(restored, cache);
        cache.clear();
        assert_eq!(cache, PolicyCache::new());
    }

    #[test]
    fn txt_lookup_from_records() {
        assert_eq!(
            TxtLookup::from_records(["v=STSv1; id=x"]),
            TxtLookup::Found(id("x"))
        );
        assert_eq!(
            TxtLookup::from_records(Vec::<String>::new()),
            TxtLookup::NotFound
        );
        assert_eq!(
            TxtLookup::from_records(["v=STSv1; id=x", "v=STSv1; id=y"]),
            TxtLookup::NotFound
        );
        assert_eq!(
            TxtLookup::from_records(["v=STSv1; id=x-y"]),
            TxtLookup::NotFound
        );
    }

    #[test]
    fn cache_transitions_property() {
        // Random walks: whatever happens, `policy(now)` is exactly the
        // unexpired entry, a fetch is never planned for an id that failed
        // less than five minutes ago, and nothing valid is ever dropped.
        let mut rng = Rng(2024);
        let ids = [id("a"), id("b"), id("c")];
        let policies = [enforce(), testing(), none_mode()];
        for _ in 0..300 {
            let mut cache = PolicyCache::new();
            let mut now = 0u64;
            for _ in 0..50 {
                now += [0, 1, 60, 299, 300, 3_600, 86_400, 100_000][rng.below(8)];
                let txt = match rng.below(4) {
                    0 => TxtLookup::NotFound,
                    1 => TxtLookup::Failed,
                    _ => TxtLookup::Found(rng.pick(&ids)),
                };
                let action = cache.plan(&txt, now);
                let valid = cache.entry().filter(|e| !e.is_expired(now));
                assert_eq!(cache.policy(now), valid.map(CachedPolicy::policy));
                match action {
                    CacheAction::Fetch { id } | CacheAction::Refresh { id } => {
                        if let Some((failed, at)) = cache.failed_fetch() {
                            assert!(failed != id || now >= at + FETCH_RETRY_INTERVAL);
                        }
                        if rng.below(2) == 0 {
                            cache.store(id, policies[rng.below(policies.len())].clone(), now);
                            assert!(cache.policy(now).is_some());
                        } else {
                            let had = cache.policy(now).cloned();
                            let f = cache.fetch_failed(id, &FetchError::NotTextPlain, now);
                            assert_eq!(f.keep_cached, had.is_some());
                            assert_eq!(cache.policy(now), had.as_ref());
                        }
                    }
                    CacheAction::UseCached => assert!(valid.is_some()),
                    CacheAction::RetryLater { retry_at, .. } => assert!(retry_at > now),
                    CacheAction::Expired => assert!(cache.entry().is_some() && valid.is_none()),
                    CacheAction::NoPolicy => assert!(cache.entry().is_none()),
                }
            }
        }
    }

    // --- §4, §5 decision ---------------------------------------------------

    fn outcomes() -> Vec<TlsOutcome> {
        vec![
            TlsOutcome::NoStartTls,
            TlsOutcome::StartTlsFailed {
                reason: "handshake failure".into(),
            },
            TlsOutcome::CertificateInvalid {
                problem: CertificateProblem::HostMismatch,
                reason: String::new(),
            },
            TlsOutcome::CertificateInvalid {
                problem: CertificateProblem::Expired,
                reason: "X509_V_ERR_CERT_HAS_EXPIRED".into(),
            },
            TlsOutcome::CertificateInvalid {
                problem: CertificateProblem::NotTrusted,
                reason: "UnknownIssuer".into(),
            },
            TlsOutcome::CertificateInvalid {
                problem: CertificateProblem::Other,
                reason: "BadSignature".into(),
            },
            verified("other.example.com"),
        ]
    }

    #[test]
    fn decide_without_policy_or_mode_none_delivers() {
        let none = none_mode();
        for tls in outcomes().iter().chain([&verified("mx1.example.com")]) {
            assert_eq!(decide(None, "mx1.example.com", tls), Decision::Deliver);
            assert_eq!(
                decide(Some(&none), "anything.example", tls),
                Decision::Deliver
            );
        }
    }

    #[test]
    fn decide_enforce() {
        let p = enforce();
        assert_eq!(
            decide(Some(&p), "mx1.example.com", &verified("mx1.example.com")),
            Decision::Deliver
        );
        assert_eq!(
            decide(Some(&p), "MX1.example.com.", &verified("mx1.EXAMPLE.com")),
            Decision::Deliver
        );
        assert_eq!(
            decide(Some(&p), "a.mx.example.net", &verified("a.mx.example.net.")),
            Decision::Deliver
        );
        let expected = [
            "starttls-not-supported",
            "validation-failure",
            "certificate-host-mismatch",
            "certificate-expired",
            "certificate-not-trusted",
            "validation-failure",
            "certificate-host-mismatch",
        ];
        for (tls, name) in outcomes().iter().zip(expected) {
            let d = decide(Some(&p), "mx1.example.com", tls);
            assert!(!d.may_deliver(), "{tls:?}");
            let Decision::Refuse(f) = &d else {
                panic!("{d:?}")
            };
            assert_eq!(f.result_type().as_str(), name, "{tls:?}");
            assert_eq!(f.mx_host(), "mx1.example.com");
        }
    }

    #[test]
    fn decide_enforce_unlisted_mx() {
        let p = enforce();
        for host in [
            "mx.attacker.example",
            "example.com",
            "b.a.mx.example.net",
            "mx.example.net",
        ] {
            let d = decide(Some(&p), host, &verified(host));
            assert_eq!(
                d,
                Decision::Refuse(Failure::MxNotListed {
                    mx_host: host.to_owned()
                }),
                "{host}"
            );
            let f = d.failure().unwrap();
            assert_eq!(f.result_type(), ResultType::ValidationFailure);
            assert_eq!(f.reason_code(), Some("mx-not-in-policy"));
            assert!(f.to_string().contains("§4.1"));
        }
        // The MX check comes first, before TLS.
        assert!(matches!(
            validate(&p, "mx.attacker.example", &TlsOutcome::NoStartTls),
            Err(Failure::MxNotListed { .. })
        ));
    }

    #[test]
    fn decide_testing_delivers_and_reports() {
        let p = testing();
        assert_eq!(
            decide(Some(&p), "mx1.example.com", &verified("mx1.example.com")),
            Decision::Deliver
        );
        for tls in outcomes() {
            let d = decide(Some(&p), "mx1.example.com", &tls);
            assert!(d.may_deliver());
            assert!(matches!(d, Decision::DeliverButReport(_)), "{tls:?}");
        }
        let d = decide(Some(&p), "rogue.example", &verified("rogue.example"));
        assert!(matches!(
            d,
            Decision::DeliverButReport(Failure::MxNotListed { .. })
        ));
    }

    #[test]
    fn verified_name_must_be_the_mx_host() {
        let p = enforce();
        let d = decide(Some(&p), "mx1.example.com", &verified("example.com"));
        let f = d.failure().unwrap();
        assert_eq!(
            *f,
            Failure::NameNotVerified {
                mx_host: "mx1.example.com".into(),
                verified: "example.com".into()
            }
        );
        assert_eq!(f.reason_code(), Some("verified-for-another-name"));
        // A wildcard "name" is not a verified host name.
        assert!(check_tls("mx1.example.com", &verified("*.example.com")).is_err());
        assert!(check_tls("mx1.example.com", &verified("")).is_err());
    }

    #[test]
    fn failure_details() {
        let f = check_tls("MX.Example.com.", &outcomes()[3]).unwrap_err();
        assert_eq!(f.mx_host(), "mx.example.com");
        assert_eq!(f.reason_code(), Some("X509_V_ERR_CERT_HAS_EXPIRED"));
        assert_eq!(
            f.to_string(),
            "the certificate of MX host mx.example.com has expired: X509_V_ERR_CERT_HAS_EXPIRED (RFC 8461 §4.2)"
        );
        let f = check_tls("mx.example.com", &outcomes()[2]).unwrap_err();
        assert_eq!(f.reason_code(), None); // empty reason
        assert_eq!(
            check_tls("mx.example.com", &TlsOutcome::NoStartTls)
                .unwrap_err()
                .reason_code(),
            None
        );
        for tls in outcomes() {
            let f = check_tls("mx.example.com", &tls).unwrap_err();
            assert!(f.to_string().contains("RFC 8461 §4"), "{f}");
        }
        assert_eq!(
            check_tls("mx.example.com", &verified("mx.example.com")),
            Ok(())
        );
    }

    #[test]
    fn refusal_text_escapes_dns_and_peer_strings() {
        // The MX host name comes from DNS, names and reasons from the peer:
        // a refusal reason never carries their raw control characters
        // (before, `decide` under enforce showed the CR/LF as they were).
        let evil = "mx.evil.example\r\n250 OK injected";
        let refused = decide(Some(&enforce()), evil, &TlsOutcome::NoStartTls);
        let text = refused.failure().unwrap().to_string();
        assert!(!refused.may_deliver());
        assert_eq!(
            text,
            "MX host mx.evil.example\\r\\n250 ok injected matches no `mx` pattern of the MTA-STS policy (RFC 8461 §4.1)"
        );
        let outcomes = [
            TlsOutcome::NoStartTls,
            TlsOutcome::StartTlsFailed {
                reason: "alert\r\nQUIT".into(),
            },
            TlsOutcome::CertificateInvalid {
                problem: CertificateProblem::NotTrusted,
                reason: "bad\u{1b}[2J".into(),
            },
            TlsOutcome::Verified {
                name: "other\n.example".into(),
            },
        ];
        for tls in outcomes {
            let f = check_tls(evil, &tls).unwrap_err();
            let text = f.to_string();
            assert!(!text.chars().any(char::is_control), "{tls:?}: {text:?}");
            assert!(
                text.contains("\\r\\n") || text.contains("\\u{1b}") || text.contains("\\n"),
                "{text}"
            );
        }
        for e in [
            FetchError::Unreachable {
                reason: "timeout\r\n".into(),
            },
            FetchError::WebPki {
                reason: "\u{7}".into(),
            },
        ] {
            assert!(!e.to_string().chars().any(char::is_control), "{e}");
        }
    }

    #[test]
    fn decision_property() {
        // For every mode, MX and outcome: delivery is refused exactly when
        // the mode is enforce and validation fails; a failure is carried
        // exactly when validation fails and the mode is not none.
        let policies = [enforce(), testing(), none_mode()];
        let hosts = [
            "mx1.example.com",
            "x.mx.example.net",
            "evil.example",
            "MX1.EXAMPLE.COM.",
        ];
        for p in &policies {
            for host in hosts {
                let mut all = outcomes();
                all.push(verified(host));
                all.push(verified(host.trim_end_matches('.')));
                for tls in &all {
                    let d = decide(Some(p), host, tls);
                    let valid = validate(p, host, tls).is_ok();
                    assert_eq!(d.may_deliver(), p.mode() != Mode::Enforce || valid);
                    assert_eq!(d.failure().is_some(), p.mode() != Mode::None && !valid);
                    if let Some(f) = d.failure() {
                        assert_eq!(Err(f.clone()), validate(p, host, tls));
                    }
                }
            }
        }
    }
}
