//! SMTP TLS Reporting, TLS-RPT (RFC 8460), sans-IO: the `_smtp._tls` TXT
//! record that says where a domain wants reports, and the JSON aggregate
//! report built from what MTA-STS decisions saw.
//!
//! Count each delivery attempt into a [`ReportBuilder`] — usually with
//! [`ReportBuilder::record`] and the [`Decision`] from
//! [`mta_sts::decide`] — and render it with
//! [`ReportBuilder::to_json`] at the end of the period (RFC 8460 §4.1
//! suggests one UTC day). Sending it (gzip, `mailto:` with DKIM, or HTTPS
//! `POST`) is up to you; [`TlsRptRecord`] parses the addresses, and
//! [`report_filename`] names the file.
//!
//! ```
//! use starttls::policy::mta_sts::{self, Policy, TlsOutcome};
//! use starttls::policy::tlsrpt::{ReportBuilder, ReportPolicy, TlsRptRecord};
//!
//! let rua = TlsRptRecord::parse(b"v=TLSRPTv1; rua=mailto:tlsrpt@example.com").unwrap();
//! assert_eq!(rua.uris()[0].as_str(), "mailto:tlsrpt@example.com");
//!
//! let policy = Policy::parse(b"version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n").unwrap();
//! let mut report = ReportBuilder::new(
//!     "Sender Inc.",
//!     "tls-reports@sender.example",
//!     "2024-05-01-example.com-1",
//!     "2024-05-01T00:00:00Z",
//!     "2024-05-01T23:59:59Z",
//! )
//! .unwrap();
//! let key = ReportPolicy::for_policy("example.com", Some(&policy)).unwrap();
//! let ok = TlsOutcome::Verified { name: "mx.example.com".into() };
//! let decision = mta_sts::decide(Some(&policy), "mx.example.com", &ok);
//! report.record(&key, &decision, Some("192.0.2.1".parse().unwrap()), None);
//! let stripped = mta_sts::decide(Some(&policy), "mx.example.com", &TlsOutcome::NoStartTls);
//! report.record(&key, &stripped, Some("192.0.2.1".parse().unwrap()), None);
//!
//! let json = report.to_json();
//! assert!(json.contains(r#""total-successful-session-count":1"#));
//! assert!(json.contains(r#""result-type":"starttls-not-supported""#));
//! ```

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use super::mta_sts::{self, Decision, DomainError, Failure, Mode, Policy};
pub use super::result_type::ResultType;
use super::txt::{self, is_ext_value, tag_fields, TagError};

/// Media type of an uncompressed report (RFC 8460 §6.3).
pub const MEDIA_TYPE_JSON: &str = "application/tlsrpt+json";

/// Media type of a gzip-compressed report (RFC 8460 §6.4).
pub const MEDIA_TYPE_GZIP: &str = "application/tlsrpt+gzip";

/// Most `rua` URIs accepted in one record.
pub const MAX_RUA_URIS: usize = 16;

/// Default cap on distinct policies in one report.
pub const DEFAULT_MAX_POLICIES: usize = 10_000;

/// Default cap on distinct failure details per policy in one report.
pub const DEFAULT_MAX_FAILURE_DETAILS: usize = 1_000;

/// Longest text kept in a failure detail field (reason code, HELO name,
/// host name, URI); longer texts are cut at a character boundary.
pub const MAX_DETAIL_TEXT: usize = 512;

/// Largest number written into a report: I-JSON (RFC 7493 §2.2, required by
/// RFC 8460 §4) limits integers to 2^53 - 1.
const MAX_JSON_INT: u64 = (1 << 53) - 1;

// ---------------------------------------------------------------------------
// `_smtp._tls` TXT record (§3)
// ---------------------------------------------------------------------------

/// The DNS name of the TLS-RPT record of a domain: `_smtp._tls.<domain>`
/// (RFC 8460 §3).
///
/// ```
/// # use starttls::policy::tlsrpt::txt_name;
/// assert_eq!(txt_name("example.com").unwrap(), "_smtp._tls.example.com");
/// ```
pub fn txt_name(domain: &str) -> Result<String, DomainError> {
    Ok(format!("_smtp._tls.{}", normalize_domain(domain)?))
}

fn normalize_domain(domain: &str) -> Result<String, DomainError> {
    // Validation shared with MTA-STS: an exact (non-wildcard) pattern is a
    // plain domain name.
    let pattern = mta_sts::MxPattern::parse(domain)?;
    if pattern.is_wildcard() {
        return Err(DomainError::MisplacedWildcard);
    }
    Ok(pattern.domain().to_owned())
}

/// A URI scheme TLS-RPT delivers reports to (RFC 8460 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UriScheme {
    /// `mailto:` — send the report by mail, DKIM-signed (§3, §5.3).
    Mailto,
    /// `https:` — `POST` the report (§3, §5.4).
    Https,
}

/// One `rua` destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReportUri {
    scheme: UriScheme,
    uri: String,
}

impl ReportUri {
    /// The scheme.
    pub fn scheme(&self) -> UriScheme {
        self.scheme
    }

    /// The URI as written in the record.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// For `mailto:`, the address part (before any `?`), still
    /// percent-encoded.
    pub fn mailto_address(&self) -> Option<&str> {
        if self.scheme != UriScheme::Mailto {
            return None;
        }
        let rest = self.uri.get("mailto:".len()..)?;
        Some(rest.split('?').next().unwrap_or(rest))
    }
}

impl fmt::Display for ReportUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Why the `_smtp._tls` TXT record gave no reporting address. Whatever the
/// reason, the domain is treated as not implementing TLS-RPT (§3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRptRecordError {
    /// No TXT record begins with `v=TLSRPTv1;` (or, returned alone, with
    /// `v=TLSRPTv1`).
    NoRecord,
    /// More than one TXT record begins with `v=TLSRPTv1;`.
    MultipleRecords {
        /// How many did.
        count: usize,
    },
    /// The record does not begin with `v=TLSRPTv1` (case-sensitive).
    NotTlsRptV1,
    /// The record breaks the `tlsrpt-record` grammar.
    Malformed {
        /// Byte offset in the record.
        offset: usize,
        /// The rule broken.
        reason: &'static str,
    },
    /// The record has no `rua=` field.
    MissingRua,
    /// A `rua` entry is not a URI (commas and `!` must be percent-encoded).
    InvalidUri {
        /// Byte offset of the `rua` field in the record.
        offset: usize,
    },
    /// More than [`MAX_RUA_URIS`] URIs.
    TooManyUris,
    /// No `rua` URI uses a supported scheme (`mailto`, `https`).
    NoSupportedUri,
}

impl fmt::Display for TlsRptRecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsRptRecordError::NoRecord => {
                f.write_str("no TXT record begins with `v=TLSRPTv1;` (RFC 8460 §3)")
            }
            TlsRptRecordError::MultipleRecords { count } => write!(
                f,
                "{count} TXT records begin with `v=TLSRPTv1;`; exactly one is allowed (RFC 8460 §3)"
            ),
            TlsRptRecordError::NotTlsRptV1 => {
                f.write_str("the TXT record does not begin with `v=TLSRPTv1` (RFC 8460 §3)")
            }
            TlsRptRecordError::Malformed { offset, reason } => write!(
                f,
                "malformed TLS-RPT TXT record at byte {offset}: {reason} (RFC 8460 §3)"
            ),
            TlsRptRecordError::MissingRua => {
                f.write_str("the TLS-RPT record has no `rua=` field (RFC 8460 §3)")
            }
            TlsRptRecordError::InvalidUri { offset } => write!(
                f,
                "the `rua` field at byte {offset} holds an invalid URI; commas and `!` must be percent-encoded (RFC 8460 §3)"
            ),
            TlsRptRecordError::TooManyUris => write!(
                f,
                "the TLS-RPT record lists more than {MAX_RUA_URIS} `rua` URIs"
            ),
            TlsRptRecordError::NoSupportedUri => f.write_str(
                "no `rua` URI uses a supported scheme, `mailto` or `https` (RFC 8460 §3)",
            ),
        }
    }
}

impl std::error::Error for TlsRptRecordError {}

/// A parsed `_smtp._tls` TXT record (RFC 8460 §3): where to send reports.
///
/// ```
/// # use starttls::policy::tlsrpt::{TlsRptRecord, UriScheme};
/// let record = TlsRptRecord::parse(
///     b"v=TLSRPTv1; rua=mailto:tls@example.com , https://reports.example.com/v1/tlsrpt",
/// )
/// .unwrap();
/// assert_eq!(record.uris().len(), 2);
/// assert_eq!(record.uris()[0].mailto_address(), Some("tls@example.com"));
/// assert_eq!(record.uris()[1].scheme(), UriScheme::Https);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsRptRecord {
    uris: Vec<ReportUri>,
}

impl TlsRptRecord {
    /// Parses one record (its strings joined without spaces). The first
    /// `rua` field counts; URIs with schemes other than `mailto` and `https`
    /// are skipped; other fields are checked against the extension grammar
    /// and ignored.
    pub fn parse(record: &[u8]) -> Result<TlsRptRecord, TlsRptRecordError> {
        let fields = tag_fields(record, b"v=TLSRPTv1").map_err(|e| match e {
            TagError::NotVersion => TlsRptRecordError::NotTlsRptV1,
            TagError::Malformed { offset, reason } => {
                TlsRptRecordError::Malformed { offset, reason }
            }
        })?;
        let mut uris = None;
        for field in &fields {
            if field.name == b"rua" && uris.is_none() {
                uris = Some(parse_rua(field.value, field.offset)?);
            } else if !is_ext_value(field.value) {
                return Err(TlsRptRecordError::Malformed {
                    offset: field.offset,
                    reason: "an extension value is printable ASCII without space, `;` or `=`",
                });
            }
        }
        let uris = uris.ok_or(TlsRptRecordError::MissingRua)?;
        if uris.is_empty() {
            return Err(TlsRptRecordError::NoSupportedUri);
        }
        Ok(TlsRptRecord { uris })
    }

    /// Picks the record among all TXT records at `_smtp._tls` and parses it
    /// (§3): when several are returned, those that do not begin with exactly
    /// `v=TLSRPTv1;` are discarded and exactly one must remain; a record
    /// returned alone is parsed as it is.
    ///
    /// ```
    /// # use starttls::policy::tlsrpt::TlsRptRecord;
    /// let found = TlsRptRecord::select(["v=TLSRPTv1", "v=TLSRPTv1; rua=mailto:tls@example.com"]).unwrap();
    /// assert_eq!(found.uris()[0].as_str(), "mailto:tls@example.com");
    /// ```
    pub fn select<I>(records: I) -> Result<TlsRptRecord, TlsRptRecordError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        txt::select(records, b"v=TLSRPTv1", TlsRptRecord::parse).map_err(|e| match e {
            txt::Selection::NoRecord => TlsRptRecordError::NoRecord,
            txt::Selection::Multiple(count) => TlsRptRecordError::MultipleRecords { count },
            txt::Selection::Invalid(e) => e,
        })
    }

    /// The supported destinations, in the order given (a reporter may use
    /// any or all of them, §3).
    pub fn uris(&self) -> &[ReportUri] {
        &self.uris
    }
}

/// `tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)`, keeping supported schemes.
fn parse_rua(value: &[u8], offset: usize) -> Result<Vec<ReportUri>, TlsRptRecordError> {
    let mut uris = Vec::new();
    for (n, part) in value.split(|&b| b == b',').enumerate() {
        if n >= MAX_RUA_URIS {
            return Err(TlsRptRecordError::TooManyUris);
        }
        let part = trim_wsp(part);
        let Some(uri) = std::str::from_utf8(part).ok().filter(|u| is_uri(u)) else {
            return Err(TlsRptRecordError::InvalidUri { offset });
        };
        let (scheme, rest) = uri.split_once(':').unwrap_or_default();
        let scheme = if scheme.eq_ignore_ascii_case("mailto") && rest.contains('@') {
            UriScheme::Mailto
        } else if scheme.eq_ignore_ascii_case("https")
            && rest
                .strip_prefix("//")
                .is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        {
            UriScheme::Https
        } else if scheme.eq_ignore_ascii_case("mailto") || scheme.eq_ignore_ascii_case("https") {
            return Err(TlsRptRecordError::InvalidUri { offset });
        } else {
            continue; // an unsupported scheme
        };
        uris.push(ReportUri {
            scheme,
            uri: uri.to_owned(),
        });
    }
    Ok(uris)
}

fn trim_wsp(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let rest = bytes.get(start..).unwrap_or_default();
    let end = rest.len()
        - rest
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    rest.get(..end).unwrap_or_default()
}

/// An RFC 3986 URI: `scheme ":" rest`, where rest uses only URI characters
/// and well-formed percent-escapes, without `,` and `!` (RFC 8460 §3).
fn is_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .as_bytes()
        .split_first()
        .is_some_and(|(first, tail)| {
            first.is_ascii_alphabetic()
                && tail
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
    if !scheme_ok || rest.is_empty() {
        return false;
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'/'
                    | b'?'
                    | b'#'
                    | b'['
                    | b']'
                    | b'@'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b'='
            );
        if !allowed {
            return false;
        }
        i += 1;
    }
    true
}

// ---------------------------------------------------------------------------
// Report (§4)
// ---------------------------------------------------------------------------

/// Why report metadata was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportError {
    /// A required text is empty.
    Empty {
        /// The JSON field name.
        field: &'static str,
    },
    /// A date is not an RFC 3339 `date-time` (RFC 8460 §4.4).
    InvalidDateTime {
        /// The JSON field name.
        field: &'static str,
    },
    /// A domain name is invalid (internationalized names must be A-labels,
    /// RFC 8460 §4.4).
    InvalidDomain {
        /// The JSON field name, or `sender` for [`report_filename`].
        field: &'static str,
        /// What is wrong with it.
        error: DomainError,
    },
    /// The `unique-id` of a file name is not letters and digits (§5.1).
    InvalidUniqueId,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Empty { field } => {
                write!(
                    f,
                    "the TLS-RPT report field `{field}` must not be empty (RFC 8460 §4.4)"
                )
            }
            ReportError::InvalidDateTime { field } => write!(
                f,
                "the TLS-RPT report field `{field}` must be an RFC 3339 date-time (RFC 8460 §4.4)"
            ),
            ReportError::InvalidDomain { field, error } => {
                write!(f, "invalid domain in TLS-RPT `{field}`: {error}")
            }
            ReportError::InvalidUniqueId => f.write_str(
                "a TLS-RPT report file name's unique-id is letters and digits (RFC 8460 §5.1)",
            ),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::InvalidDomain { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The kind of policy a report entry is about (`policy-type`, §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyType {
    /// `sts`: an MTA-STS policy.
    Sts,
    /// `tlsa`: DANE TLSA records.
    Tlsa,
    /// `no-policy-found`: neither.
    NoPolicyFound,
}

impl PolicyType {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

/// The policy a report entry is about (`policy`, §4.4); entries are keyed
/// by it, so build it the same way for every session to the same domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReportPolicy {
    policy_type: PolicyType,
    policy_domain: String,
    policy_string: Vec<String>,
    mx_host: Vec<String>,
}

impl ReportPolicy {
    /// An MTA-STS policy of `policy_domain`: `policy-string` is its lines,
    /// `mx-host` its `mx` patterns.
    pub fn sts(policy_domain: &str, policy: &Policy) -> Result<ReportPolicy, ReportError> {
        Ok(ReportPolicy {
            policy_type: PolicyType::Sts,
            policy_domain: report_domain(policy_domain)?,
            policy_string: policy.lines().map(str::to_owned).collect(),
            mx_host: policy.mx().iter().map(ToString::to_string).collect(),
        })
    }

    /// No policy for `policy_domain`.
    pub fn no_policy_found(policy_domain: &str) -> Result<ReportPolicy, ReportError> {
        Ok(ReportPolicy {
            policy_type: PolicyType::NoPolicyFound,
            policy_domain: report_domain(policy_domain)?,
            policy_string: Vec::new(),
            mx_host: Vec::new(),
        })
    }

    /// The entry for the MTA-STS policy in force, as
    /// [`PolicyCache::policy`](super::mta_sts::PolicyCache::policy) gives it:
    /// `no-policy-found` when there is none or its mode is `none` (treated as
    /// no policy, RFC 8461 §5).
    pub fn for_policy(
        policy_domain: &str,
        policy: Option<&Policy>,
    ) -> Result<ReportPolicy, ReportError> {
        match policy {
            Some(p) if p.mode() != Mode::None => ReportPolicy::sts(policy_domain, p),
            _ => ReportPolicy::no_policy_found(policy_domain),
        }
    }

    /// Any policy, for example DANE: `policy_string` are the TLSA records,
    /// one per string, and `mx_host` the MX host (§4.4).
    pub fn new(
        policy_type: PolicyType,
        policy_domain: &str,
        policy_string: Vec<String>,
        mx_host: Vec<String>,
    ) -> Result<ReportPolicy, ReportError> {
        Ok(ReportPolicy {
            policy_type,
            policy_domain: report_domain(policy_domain)?,
            policy_string,
            mx_host,
        })
    }

    /// The policy type.
    pub fn policy_type(&self) -> PolicyType {
        self.policy_type
    }

    /// The Policy Domain, lowercase A-labels.
    pub fn policy_domain(&self) -> &str {
        &self.policy_domain
    }
}

fn report_domain(domain: &str) -> Result<String, ReportError> {
    normalize_domain(domain).map_err(|error| ReportError::InvalidDomain {
        field: "policy-domain",
        error,
    })
}

/// One kind of failed session (`failure-details`, §4.4). Sessions with equal
/// details are counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FailureDetail {
    /// `result-type`.
    pub result_type: ResultType,
    /// `sending-mta-ip`: the address the session came from.
    pub sending_mta_ip: Option<IpAddr>,
    /// `receiving-mx-hostname`: the MX host name.
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`: the name the MX gave in its greeting or EHLO
    /// reply.
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`: the address connected to.
    pub receiving_ip: Option<IpAddr>,
    /// `additional-information`: a URI with more about the failure.
    pub additional_information: Option<String>,
    /// `failure-reason-code`: a short error code or text.
    pub failure_reason_code: Option<String>,
}

impl FailureDetail {
    /// A detail with only a result type, e.g. for `sts-policy-fetch-error`.
    pub fn new(result_type: ResultType) -> FailureDetail {
        FailureDetail {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            additional_information: None,
            failure_reason_code: None,
        }
    }

    /// The detail of an MTA-STS validation failure: result type, MX host
    /// and reason code.
    pub fn from_failure(failure: &Failure) -> FailureDetail {
        FailureDetail {
            receiving_mx_hostname: Some(failure.mx_host().to_owned()),
            failure_reason_code: failure.reason_code().map(str::to_owned),
            ..FailureDetail::new(failure.result_type())
        }
    }

    /// Sets `sending-mta-ip`.
    pub fn with_sending_mta_ip(mut self, ip: IpAddr) -> FailureDetail {
        self.sending_mta_ip = Some(ip);
        self
    }

    /// Sets `receiving-ip`.
    pub fn with_receiving_ip(mut self, ip: IpAddr) -> FailureDetail {
        self.receiving_ip = Some(ip);
        self
    }

    /// Sets `receiving-mx-hostname`.
    pub fn with_receiving_mx_hostname(mut self, host: &str) -> FailureDetail {
        self.receiving_mx_hostname = Some(host.to_owned());
        self
    }

    /// Sets `receiving-mx-helo`.
    pub fn with_receiving_mx_helo(mut self, helo: &str) -> FailureDetail {
        self.receiving_mx_helo = Some(helo.to_owned());
        self
    }

    /// Sets `additional-information`.
    pub fn with_additional_information(mut self, uri: &str) -> FailureDetail {
        self.additional_information = Some(uri.to_owned());
        self
    }

    /// Sets `failure-reason-code`.
    pub fn with_failure_reason_code(mut self, code: &str) -> FailureDetail {
        self.failure_reason_code = Some(code.to_owned());
        self
    }

    /// Cuts every text to [`MAX_DETAIL_TEXT`] bytes.
    fn bounded(mut self) -> FailureDetail {
        for text in [
            &mut self.receiving_mx_hostname,
            &mut self.receiving_mx_helo,
            &mut self.additional_information,
            &mut self.failure_reason_code,
        ]
        .into_iter()
        .flatten()
        {
            truncate(text, MAX_DETAIL_TEXT);
        }
        self
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[derive(Clone, Debug)]
struct Entry {
    policy: ReportPolicy,
    successes: u64,
    failures: u64,
    details: Vec<(FailureDetail, u64)>,
    detail_index: HashMap<FailureDetail, usize>,
}

/// Accumulates sessions into a TLS-RPT aggregate report and renders its
/// JSON (RFC 8460 §4.4). Entries and details keep the order in which they
/// were first seen, so the output is deterministic.
///
/// Memory is bounded: at most [`DEFAULT_MAX_POLICIES`] policies and
/// [`DEFAULT_MAX_FAILURE_DETAILS`] distinct details per policy (see
/// [`ReportBuilder::with_limits`]), texts cut to [`MAX_DETAIL_TEXT`]. A
/// failure beyond the detail cap still counts in the summary
/// ([`ReportBuilder::omitted_details`]); a session for a policy beyond the
/// policy cap is not counted ([`ReportBuilder::dropped_sessions`]).
#[derive(Clone, Debug)]
pub struct ReportBuilder {
    organization_name: String,
    contact_info: String,
    report_id: String,
    start_datetime: String,
    end_datetime: String,
    entries: Vec<Entry>,
    index: HashMap<ReportPolicy, usize>,
    max_policies: usize,
    max_details: usize,
    omitted_details: u64,
    dropped_sessions: u64,
}

impl ReportBuilder {
    /// Starts a report (§4.4): `organization-name`, `contact-info` (an
    /// address), a unique `report-id`, and the `date-range` as RFC 3339
    /// date-times (§4.1 suggests one whole UTC day).
    pub fn new(
        organization_name: &str,
        contact_info: &str,
        report_id: &str,
        start_datetime: &str,
        end_datetime: &str,
    ) -> Result<ReportBuilder, ReportError> {
        for (field, value) in [
            ("organization-name", organization_name),
            ("contact-info", contact_info),
            ("report-id", report_id),
        ] {
            if value.trim().is_empty() {
                return Err(ReportError::Empty { field });
            }
        }
        for (field, value) in [
            ("start-datetime", start_datetime),
            ("end-datetime", end_datetime),
        ] {
            if !is_rfc3339_date_time(value) {
                return Err(ReportError::InvalidDateTime { field });
            }
        }
        Ok(ReportBuilder {
            organization_name: organization_name.to_owned(),
            contact_info: contact_info.to_owned(),
            report_id: report_id.to_owned(),
            start_datetime: start_datetime.to_owned(),
            end_datetime: end_datetime.to_owned(),
            entries: Vec::new(),
            index: HashMap::new(),
            max_policies: DEFAULT_MAX_POLICIES,
            max_details: DEFAULT_MAX_FAILURE_DETAILS,
            omitted_details: 0,
            dropped_sessions: 0,
        })
    }

    /// Changes the caps on distinct policies and on distinct failure details
    /// per policy.
    pub fn with_limits(mut self, max_policies: usize, max_failure_details: usize) -> ReportBuilder {
        self.max_policies = max_policies;
        self.max_details = max_failure_details;
        self
    }

    fn entry(&mut self, policy: &ReportPolicy) -> Option<&mut Entry> {
        let at = match self.index.get(policy) {
            Some(&at) => at,
            None => {
                if self.entries.len() >= self.max_policies {
                    return None;
                }
                self.entries.push(Entry {
                    policy: policy.clone(),
                    successes: 0,
                    failures: 0,
                    details: Vec::new(),
                    detail_index: HashMap::new(),
                });
                let at = self.entries.len() - 1;
                self.index.insert(policy.clone(), at);
                at
            }
        };
        self.entries.get_mut(at)
    }

    /// Counts `count` sessions that negotiated policy-compliant TLS
    /// (`total-successful-session-count`, §4.2.1).
    pub fn add_success(&mut self, policy: &ReportPolicy, count: u64) {
        match self.entry(policy) {
            Some(entry) => entry.successes = entry.successes.saturating_add(count),
            None => self.dropped_sessions = self.dropped_sessions.saturating_add(count),
        }
    }

    /// Counts one failed session (`total-failure-session-count`, §4.2.2)
    /// with this detail.
    pub fn add_failure(&mut self, policy: &ReportPolicy, detail: FailureDetail) {
        self.add_failures(policy, detail, 1);
    }

    /// Counts `count` failed sessions with this detail.
    pub fn add_failures(&mut self, policy: &ReportPolicy, detail: FailureDetail, count: u64) {
        let max_details = self.max_details;
        let Some(entry) = self.entry(policy) else {
            self.dropped_sessions = self.dropped_sessions.saturating_add(count);
            return;
        };
        entry.failures = entry.failures.saturating_add(count);
        let detail = detail.bounded();
        if let Some(&at) = entry.detail_index.get(&detail) {
            if let Some((_, n)) = entry.details.get_mut(at) {
                *n = n.saturating_add(count);
            }
            return;
        }
        if entry.details.len() >= max_details {
            self.omitted_details = self.omitted_details.saturating_add(count);
            return;
        }
        entry
            .detail_index
            .insert(detail.clone(), entry.details.len());
        entry.details.push((detail, count));
    }

    /// Counts one delivery attempt from its MTA-STS [`Decision`]:
    /// `Deliver` as a success, `DeliverButReport` and `Refuse` as a failure
    /// with [`FailureDetail::from_failure`] and the given addresses.
    pub fn record(
        &mut self,
        policy: &ReportPolicy,
        decision: &Decision,
        sending_mta_ip: Option<IpAddr>,
        receiving_ip: Option<IpAddr>,
    ) {
        match decision.failure() {
            None => self.add_success(policy, 1),
            Some(failure) => {
                let mut detail = FailureDetail::from_failure(failure);
                detail.sending_mta_ip = sending_mta_ip;
                detail.receiving_ip = receiving_ip;
                self.add_failure(policy, detail);
            }
        }
    }

    /// `true` if nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Failed sessions counted in a summary but left out of the details
    /// because of the detail cap.
    pub fn omitted_details(&self) -> u64 {
        self.omitted_details
    }

    /// Sessions not counted at all because of the policy cap.
    pub fn dropped_sessions(&self) -> u64 {
        self.dropped_sessions
    }

    /// The report as JSON (RFC 8460 §4.4), compact, UTF-8. Optional fields
    /// that are absent are left out; counts above 2^53 - 1 are written as
    /// 2^53 - 1 (I-JSON).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256 + 256 * self.entries.len());
        out.push('{');
        json_key(&mut out, "organization-name");
        json_str(&mut out, &self.organization_name);
        out.push(',');
        json_key(&mut out, "date-range");
        out.push('{');
        json_key(&mut out, "start-datetime");
        json_str(&mut out, &self.start_datetime);
        out.push(',');
        json_key(&mut out, "end-datetime");
        json_str(&mut out, &self.end_datetime);
        out.push_str("},");
        json_key(&mut out, "contact-info");
        json_str(&mut out, &self.contact_info);
        out.push(',');
        json_key(&mut out, "report-id");
        json_str(&mut out, &self.report_id);
        out.push(',');
        json_key(&mut out, "policies");
        out.push('[');
        for (n, entry) in self.entries.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write_entry(&mut out, entry);
        }
        out.push_str("]}");
        out
    }
}

fn write_entry(out: &mut String, entry: &Entry) {
    let policy = &entry.policy;
    out.push('{');
    json_key(out, "policy");
    out.push('{');
    json_key(out, "policy-type");
    json_str(out, policy.policy_type.as_str());
    if !policy.policy_string.is_empty() {
        out.push(',');
        json_key(out, "policy-string");
        json_str_array(out, &policy.policy_string);
    }
    out.push(',');
    json_key(out, "policy-domain");
    json_str(out, &policy.policy_domain);
    if !policy.mx_host.is_empty() {
        out.push(',');
        json_key(out, "mx-host");
        json_str_array(out, &policy.mx_host);
    }
    out.push_str("},");
    json_key(out, "summary");
    out.push('{');
    json_key(out, "total-successful-session-count");
    json_int(out, entry.successes);
    out.push(',');
    json_key(out, "total-failure-session-count");
    json_int(out, entry.failures);
    out.push_str("},");
    json_key(out, "failure-details");
    out.push('[');
    for (n, (detail, count)) in entry.details.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('{');
        json_key(out, "result-type");
        json_str(out, detail.result_type.as_str());
        if let Some(ip) = detail.sending_mta_ip {
            out.push(',');
            json_key(out, "sending-mta-ip");
            json_str(out, &ip.to_string());
        }
        let texts = [
            ("receiving-mx-hostname", &detail.receiving_mx_hostname),
            ("receiving-mx-helo", &detail.receiving_mx_helo),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                out.push(',');
                json_key(out, key);
                json_str(out, value);
            }
        }
        if let Some(ip) = detail.receiving_ip {
            out.push(',');
            json_key(out, "receiving-ip");
            json_str(out, &ip.to_string());
        }
        out.push(',');
        json_key(out, "failed-session-count");
        json_int(out, *count);
        let texts = [
            ("additional-information", &detail.additional_information),
            ("failure-reason-code", &detail.failure_reason_code),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                out.push(',');
                json_key(out, key);
                json_str(out, value);
            }
        }
        out.push('}');
    }
    out.push_str("]}");
}

fn json_key(out: &mut String, key: &str) {
    json_str(out, key);
    out.push(':');
}

fn json_int(out: &mut String, n: u64) {
    let _ = write!(out, "{}", n.min(MAX_JSON_INT));
}

fn json_str_array(out: &mut String, items: &[String]) {
    out.push('[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_str(out, item);
    }
    out.push(']');
}

/// A JSON string (RFC 8259 §7): `"` and `\` escaped, control characters as
/// `\uXXXX` (or their short forms), U+2028/U+2029 escaped too so the output
/// is also safe as JavaScript; everything else as UTF-8.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 §5.6 `date-time`, checking field ranges (not month lengths).
fn is_rfc3339_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i).is_some_and(|x| x.eq_ignore_ascii_case(&c));
    let date_ok = num(0, 4).is_some()
        && at(4, b'-')
        && num(5, 2).is_some_and(|m| (1..=12).contains(&m))
        && at(7, b'-')
        && num(8, 2).is_some_and(|d| (1..=31).contains(&d))
        && at(10, b'T')
        && num(11, 2).is_some_and(|h| h <= 23)
        && at(13, b':')
        && num(14, 2).is_some_and(|m| m <= 59)
        && at(16, b':')
        && num(17, 2).is_some_and(|s| s <= 60);
    if !date_ok {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let digits = b
            .get(i + 1..)
            .unwrap_or_default()
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if digits == 0 {
            return false;
        }
        i += 1 + digits;
    }
    if at(i, b'Z') {
        return b.len() == i + 1;
    }
    (at(i, b'+') || at(i, b'-'))
        && num(i + 1, 2).is_some_and(|h| h <= 23)
        && at(i + 3, b':')
        && num(i + 4, 2).is_some_and(|m| m <= 59)
        && b.len() == i + 6
}

/// The file name of a report (RFC 8460 §5.1):
/// `sender!policy-domain!begin!end[!unique-id].json[.gz]`, where `sender` is
/// the domain of the report's contact address and `begin`/`end` are the
/// report range in seconds since the Unix epoch.
///
/// ```
/// # use starttls::policy::tlsrpt::report_filename;
/// assert_eq!(
///     report_filename("mail.sender.example", "example.com", 1470013207, 1470186007, Some("001"), true).unwrap(),
///     "mail.sender.example!example.com!1470013207!1470186007!001.json.gz"
/// );
/// ```
pub fn report_filename(
    sender: &str,
    policy_domain: &str,
    begin: u64,
    end: u64,
    unique_id: Option<&str>,
    gzip: bool,
) -> Result<String, ReportError> {
    let sender = normalize_domain(sender).map_err(|error| ReportError::InvalidDomain {
        field: "sender",
        error,
    })?;
    let policy_domain = report_domain(policy_domain)?;
    let mut name = format!("{sender}!{policy_domain}!{begin}!{end}");
    if let Some(unique) = unique_id {
        if unique.is_empty() || !unique.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ReportError::InvalidUniqueId);
        }
        name.push('!');
        name.push_str(unique);
    }
    name.push_str(if gzip { ".json.gz" } else { ".json" });
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::mta_sts::{self, CertificateProblem, Policy, TlsOutcome};
    use serde_json::Value;

    fn meta() -> ReportBuilder {
        ReportBuilder::new(
            "Company-X",
            "sts-reporting@company-x.example",
            "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
            "2016-04-01T00:00:00Z",
            "2016-04-01T23:59:59Z",
        )
        .unwrap()
    }

    fn sts_policy() -> Policy {
        Policy::parse(b"version: STSv1\r\nmode: testing\r\nmx: *.mail.company-y.example\r\nmax_age: 86400\r\n")
            .unwrap()
    }

    fn parse(json: &str) -> Value {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("invalid JSON {e}: {json}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // --- §4.3 result types -------------------------------------------------

    #[test]
    fn result_type_names() {
        let names: Vec<&str> = ResultType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "starttls-not-supported",
                "certificate-host-mismatch",
                "certificate-expired",
                "certificate-not-trusted",
                "validation-failure",
                "tlsa-invalid",
                "dnssec-invalid",
                "dane-required",
                "sts-policy-fetch-error",
                "sts-policy-invalid",
                "sts-webpki-invalid",
            ]
        );
        for t in ResultType::ALL {
            assert_eq!(ResultType::from_name(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(ResultType::from_name("STARTTLS-NOT-SUPPORTED"), None);
        assert_eq!(
            CertificateProblem::NotTrusted.result_type(),
            ResultType::CertificateNotTrusted
        );
    }

    // --- §3 TXT record -----------------------------------------------------

    #[test]
    fn record_rfc_examples() {
        let r = TlsRptRecord::parse(b"v=TLSRPTv1;rua=mailto:reports@example.com").unwrap();
        assert_eq!(r.uris().len(), 1);
        assert_eq!(r.uris()[0].scheme(), UriScheme::Mailto);
        assert_eq!(r.uris()[0].mailto_address(), Some("reports@example.com"));
        let r = TlsRptRecord::parse(b"v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt")
            .unwrap();
        assert_eq!(r.uris()[0].scheme(), UriScheme::Https);
        assert_eq!(
            r.uris()[0].to_string(),
            "https://reporting.example.com/v1/tlsrpt"
        );
        assert_eq!(r.uris()[0].mailto_address(), None);
    }

    #[test]
    fn record_uri_lists() {
        for txt in [
            "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example/x",
            "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example/x ;",
            "v=TLSRPTv1;rua=mailto:a@example.com\t,\thttps://r.example/x",
            "v=TLSRPTv1; rua=mailto:a@example.com, ftp://skip.example/, https://r.example/x",
            "v=TLSRPTv1; ext=1; rua=mailto:a@example.com,https://r.example/x; rua=mailto:ignored@x.example",
        ] {
            let r = TlsRptRecord::parse(txt.as_bytes()).unwrap();
            let uris: Vec<&str> = r.uris().iter().map(ReportUri::as_str).collect();
            assert_eq!(uris, ["mailto:a@example.com", "https://r.example/x"], "{txt:?}");
        }
        let r = TlsRptRecord::parse(
            b"v=TLSRPTv1; rua=MAILTO:a%2Cb@example.com?subject=TLS%20report,HTTPS://r.example/?a=b&c=d",
        )
        .unwrap();
        assert_eq!(r.uris()[0].mailto_address(), Some("a%2Cb@example.com"));
        assert_eq!(r.uris()[1].scheme(), UriScheme::Https);
    }

    #[test]
    fn record_errors() {
        let cases: &[(&str, TlsRptRecordError)] = &[
            ("v=TLSRPTv1", TlsRptRecordError::MissingRua),
            ("v=TLSRPTv1;", TlsRptRecordError::MissingRua),
            (
                "v=TLSRPTv1; ruf=mailto:a@b.example",
                TlsRptRecordError::MissingRua,
            ),
            (
                "v=TLSRPTv1; RUA=mailto:a@b.example",
                TlsRptRecordError::MissingRua,
            ),
            (
                "v=TLSRPTv1; rua=ftp://a.example/",
                TlsRptRecordError::NoSupportedUri,
            ),
            (
                "v=TLSRPTv1; rua=mailto:a!b@c.example",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=mailto:a b@c.example",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=mailto:nobody",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=https://",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=https:/x",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=mailto:a%2@c.example",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@c.example,",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=reports@example.com",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=1http://x",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=TLSRPTv1; rua=mailto:\u{e9}@c.example",
                TlsRptRecordError::InvalidUri { offset: 12 },
            ),
            (
                "v=tlsrptv1; rua=mailto:a@b.example",
                TlsRptRecordError::NotTlsRptV1,
            ),
            (
                "v=TLSRPTv10; rua=mailto:a@b.example",
                TlsRptRecordError::NotTlsRptV1,
            ),
            ("v=STSv1; id=1", TlsRptRecordError::NotTlsRptV1),
        ];
        for (txt, error) in cases {
            assert_eq!(
                TlsRptRecord::parse(txt.as_bytes()).as_ref(),
                Err(error),
                "{txt:?}"
            );
            assert!(error.to_string().contains("RFC 8460 §3"), "{error}");
        }
        for txt in [
            "v=TLSRPTv1 rua=mailto:a@b.example",
            "v=TLSRPTv1;; rua=mailto:a@b.example",
            "v=TLSRPTv1; rua=mailto:a@b.example; ext=a b",
            "v=TLSRPTv1; rua=mailto:a@b.example; ext",
            "v=TLSRPTv1; rua =mailto:a@b.example",
        ] {
            assert!(
                matches!(
                    TlsRptRecord::parse(txt.as_bytes()),
                    Err(TlsRptRecordError::Malformed { .. })
                ),
                "{txt:?}"
            );
        }
    }

    #[test]
    fn record_uri_cap() {
        let uris = |n: usize| {
            (0..n)
                .map(|i| format!("mailto:r{i}@example.com"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let ok = format!("v=TLSRPTv1; rua={}", uris(MAX_RUA_URIS));
        assert_eq!(
            TlsRptRecord::parse(ok.as_bytes()).unwrap().uris().len(),
            MAX_RUA_URIS
        );
        let over = format!("v=TLSRPTv1; rua={}", uris(MAX_RUA_URIS + 1));
        assert_eq!(
            TlsRptRecord::parse(over.as_bytes()),
            Err(TlsRptRecordError::TooManyUris)
        );
    }

    #[test]
    fn record_select() {
        assert_eq!(
            TlsRptRecord::select(Vec::<&str>::new()),
            Err(TlsRptRecordError::NoRecord)
        );
        assert_eq!(
            TlsRptRecord::select(["v=spf1 -all", "v=TLSRPTv10; rua=mailto:a@b.example"]),
            Err(TlsRptRecordError::NoRecord)
        );
        assert_eq!(
            TlsRptRecord::select(["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@b.example"])
                .unwrap()
                .uris()
                .len(),
            1
        );
        assert_eq!(
            TlsRptRecord::select([
                "v=TLSRPTv1; rua=mailto:a@b.example",
                "v=TLSRPTv1; rua=mailto:c@d.example"
            ]),
            Err(TlsRptRecordError::MultipleRecords { count: 2 })
        );
        assert_eq!(
            TlsRptRecord::select(["v=TLSRPTv1"]),
            Err(TlsRptRecordError::MissingRua)
        );
        // Among several records, those not beginning with `v=TLSRPTv1;` are
        // discarded before counting (RFC 8460 §3); before, they were counted
        // and the domain lost its reporting address.
        let good = "v=TLSRPTv1; rua=mailto:a@b.example";
        for discarded in [
            "v=TLSRPTv1",
            "v=TLSRPTv1 rua=x",
            "v=TLSRPTv1\trua=x",
            "v=TLSRPTv1 ; rua=mailto:c@d.example",
        ] {
            for records in [[discarded, good], [good, discarded]] {
                let found = TlsRptRecord::select(records).unwrap();
                assert_eq!(
                    found.uris()[0].as_str(),
                    "mailto:a@b.example",
                    "{records:?}"
                );
            }
        }
        // Alone, a record is parsed as it is.
        assert_eq!(
            TlsRptRecord::select(["v=TLSRPTv1 ; rua=mailto:c@d.example"])
                .unwrap()
                .uris()[0]
                .as_str(),
            "mailto:c@d.example"
        );
    }

    #[test]
    fn txt_names() {
        assert_eq!(txt_name("Example.COM.").unwrap(), "_smtp._tls.example.com");
        assert_eq!(
            txt_name("*.example.com"),
            Err(DomainError::MisplacedWildcard)
        );
        assert_eq!(txt_name(""), Err(DomainError::Empty));
    }

    // --- §4 report ---------------------------------------------------------

    #[test]
    fn report_like_rfc_example() {
        let policy = sts_policy();
        let key = ReportPolicy::sts("company-y.example", &policy).unwrap();
        let mut report = meta();
        report.add_success(&key, 5326);
        report.add_failures(
            &key,
            FailureDetail::new(ResultType::CertificateExpired)
                .with_sending_mta_ip(ip("2001:db8:abcd:0012::1"))
                .with_receiving_mx_hostname("mx1.mail.company-y.example"),
            100,
        );
        report.add_failures(
            &key,
            FailureDetail::new(ResultType::StartTlsNotSupported)
                .with_sending_mta_ip(ip("2001:db8:abcd:0013::1"))
                .with_receiving_mx_hostname("mx2.mail.company-y.example")
                .with_receiving_ip(ip("203.0.113.56"))
                .with_additional_information("https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"),
            200,
        );
        report.add_failures(
            &key,
            FailureDetail::new(ResultType::ValidationFailure)
                .with_sending_mta_ip(ip("198.51.100.62"))
                .with_receiving_ip(ip("203.0.113.58"))
                .with_receiving_mx_hostname("mx-backup.mail.company-y.example")
                .with_receiving_mx_helo("mx-backup.mail.company-y.example")
                .with_failure_reason_code("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"),
            3,
        );
        let v = parse(&report.to_json());
        assert_eq!(v["organization-name"], "Company-X");
        assert_eq!(v["date-range"]["start-datetime"], "2016-04-01T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "2016-04-01T23:59:59Z");
        assert_eq!(v["contact-info"], "sts-reporting@company-x.example");
        assert_eq!(v["report-id"], "5065427c-23d3-47ca-b6e0-946ea0e8c4be");
        let policies = v["policies"].as_array().unwrap();
        assert_eq!(policies.len(), 1);
        let p = &policies[0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(
            p["policy"]["policy-string"],
            serde_json::json!([
                "version: STSv1",
                "mode: testing",
                "mx: *.mail.company-y.example",
                "max_age: 86400"
            ])
        );
        assert_eq!(p["policy"]["policy-domain"], "company-y.example");
        assert_eq!(
            p["policy"]["mx-host"],
            serde_json::json!(["*.mail.company-y.example"])
        );
        assert_eq!(p["summary"]["total-successful-session-count"], 5326);
        assert_eq!(p["summary"]["total-failure-session-count"], 303);
        let details = p["failure-details"].as_array().unwrap();
        assert_eq!(details.len(), 3);
        assert_eq!(details[0]["result-type"], "certificate-expired");
        assert_eq!(details[0]["sending-mta-ip"], "2001:db8:abcd:12::1"); // RFC 5952 form
        assert_eq!(
            details[0]["receiving-mx-hostname"],
            "mx1.mail.company-y.example"
        );
        assert_eq!(details[0]["failed-session-count"], 100);
        assert!(details[0].get("receiving-ip").is_none());
        assert!(details[0].get("failure-reason-code").is_none());
        assert_eq!(details[1]["receiving-ip"], "203.0.113.56");
        assert_eq!(details[1]["failed-session-count"], 200);
        assert!(details[1]["additional-information"]
            .as_str()
            .unwrap()
            .starts_with("https://"));
        assert_eq!(
            details[2]["failure-reason-code"],
            "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
        );
        assert_eq!(
            details[2]["receiving-mx-helo"],
            "mx-backup.mail.company-y.example"
        );
        // Key order follows the RFC's schema.
        let json = report.to_json();
        let order = [
            "\"organization-name\"",
            "\"date-range\"",
            "\"contact-info\"",
            "\"report-id\"",
            "\"policies\"",
        ];
        let at: Vec<usize> = order.iter().map(|k| json.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn report_from_decisions() {
        let policy = sts_policy();
        let key = ReportPolicy::for_policy("Company-Y.Example.", Some(&policy)).unwrap();
        assert_eq!(key.policy_domain(), "company-y.example");
        assert_eq!(key.policy_type(), PolicyType::Sts);
        let mut report = meta();
        let host = "mx1.mail.company-y.example";
        let ok = mta_sts::decide(
            Some(&policy),
            host,
            &TlsOutcome::Verified { name: host.into() },
        );
        let expired = mta_sts::decide(
            Some(&policy),
            host,
            &TlsOutcome::CertificateInvalid {
                problem: CertificateProblem::Expired,
                reason: "CertExpired".into(),
            },
        );
        let unlisted = mta_sts::decide(
            Some(&policy),
            "MX.Evil.example.",
            &TlsOutcome::Verified {
                name: "mx.evil.example".into(),
            },
        );
        let sender = Some(ip("192.0.2.1"));
        for _ in 0..3 {
            report.record(&key, &ok, sender, Some(ip("203.0.113.1")));
        }
        report.record(&key, &expired, sender, Some(ip("203.0.113.1")));
        report.record(&key, &expired, sender, Some(ip("203.0.113.1")));
        report.record(&key, &expired, sender, Some(ip("203.0.113.2")));
        report.record(&key, &unlisted, sender, None);
        let v = parse(&report.to_json());
        let p = &v["policies"][0];
        assert_eq!(p["summary"]["total-successful-session-count"], 3);
        assert_eq!(p["summary"]["total-failure-session-count"], 4);
        let d = p["failure-details"].as_array().unwrap();
        assert_eq!(d.len(), 3, "equal details are aggregated");
        assert_eq!(d[0]["result-type"], "certificate-expired");
        assert_eq!(d[0]["failed-session-count"], 2);
        assert_eq!(d[0]["failure-reason-code"], "CertExpired");
        assert_eq!(d[0]["receiving-mx-hostname"], host);
        assert_eq!(d[0]["sending-mta-ip"], "192.0.2.1");
        assert_eq!(d[1]["receiving-ip"], "203.0.113.2");
        assert_eq!(d[2]["result-type"], "validation-failure");
        assert_eq!(d[2]["failure-reason-code"], "mx-not-in-policy");
        assert_eq!(d[2]["receiving-mx-hostname"], "mx.evil.example");
    }

    #[test]
    fn report_no_policy_and_fetch_errors() {
        let none = Policy::parse(b"version: STSv1\nmode: none\nmax_age: 1\n").unwrap();
        let a = ReportPolicy::for_policy("a.example", None).unwrap();
        let b = ReportPolicy::for_policy("b.example", Some(&none)).unwrap();
        assert_eq!(a.policy_type(), PolicyType::NoPolicyFound);
        assert_eq!(b.policy_type(), PolicyType::NoPolicyFound);
        let mut report = meta();
        report.add_success(&a, 1);
        report.add_failure(&b, FailureDetail::new(ResultType::StsPolicyFetchError));
        let v = parse(&report.to_json());
        let policies = v["policies"].as_array().unwrap();
        assert_eq!(policies.len(), 2);
        for p in policies {
            assert_eq!(p["policy"]["policy-type"], "no-policy-found");
            assert!(p["policy"].get("policy-string").is_none());
            assert!(p["policy"].get("mx-host").is_none());
        }
        assert_eq!(
            policies[1]["failure-details"][0],
            serde_json::json!({
                "result-type": "sts-policy-fetch-error",
                "failed-session-count": 1
            })
        );
        assert_eq!(policies[0]["failure-details"], serde_json::json!([]));
    }

    #[test]
    fn report_generic_policy_for_dane() {
        let key = ReportPolicy::new(
            PolicyType::Tlsa,
            "example.com",
            vec!["3 1 1 0123abcd".into(), "2 1 1 4567ef01".into()],
            vec!["mx.example.com".into()],
        )
        .unwrap();
        let mut report = meta();
        report.add_failure(&key, FailureDetail::new(ResultType::TlsaInvalid));
        let v = parse(&report.to_json());
        assert_eq!(v["policies"][0]["policy"]["policy-type"], "tlsa");
        assert_eq!(
            v["policies"][0]["policy"]["policy-string"][1],
            "2 1 1 4567ef01"
        );
    }

    #[test]
    fn report_empty() {
        let report = meta();
        assert!(report.is_empty());
        let v = parse(&report.to_json());
        assert_eq!(v["policies"], serde_json::json!([]));
    }

    #[test]
    fn report_escaping() {
        let nasty = "Org \"quoted\" \\ back\nslash\r\t\u{1}\u{1f}\u{7f} caf\u{e9} \u{1f600} \u{2028}\u{2029} </script>";
        let mut report = ReportBuilder::new(
            nasty,
            "a@b.example",
            nasty,
            "2024-01-01T00:00:00Z",
            "2024-01-02T00:00:00Z",
        )
        .unwrap();
        let key = ReportPolicy::no_policy_found("example.com").unwrap();
        report.add_failure(
            &key,
            FailureDetail::new(ResultType::ValidationFailure).with_failure_reason_code(nasty),
        );
        let json = report.to_json();
        assert!(
            !json.bytes().any(|b| b < 0x20),
            "raw control characters in {json:?}"
        );
        assert!(!json.contains('\u{2028}') && !json.contains('\u{2029}'));
        let v = parse(&json);
        assert_eq!(v["organization-name"], nasty);
        assert_eq!(v["report-id"], nasty);
        assert_eq!(
            v["policies"][0]["failure-details"][0]["failure-reason-code"],
            nasty
        );
    }

    #[test]
    fn report_escaping_property() {
        let pool = [
            'a',
            'Z',
            ' ',
            '"',
            '\\',
            '/',
            '\n',
            '\r',
            '\t',
            '\u{0}',
            '\u{8}',
            '\u{c}',
            '\u{1b}',
            '\u{7f}',
            '\u{80}',
            '\u{e9}',
            '\u{2028}',
            '\u{2029}',
            '\u{fffd}',
            '\u{10ffff}',
            '\u{1f4a9}',
            '{',
            '}',
            ':',
            ',',
        ];
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..1_000 {
            let mut s = String::from("x");
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(pool[(state % pool.len() as u64) as usize]);
            }
            let mut out = String::new();
            json_str(&mut out, &s);
            let back: String =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
            assert_eq!(back, s);
        }
    }

    #[test]
    fn report_counts_are_ijson_safe() {
        let key = ReportPolicy::no_policy_found("example.com").unwrap();
        let mut report = meta();
        report.add_success(&key, u64::MAX);
        report.add_success(&key, 5);
        report.add_failures(
            &key,
            FailureDetail::new(ResultType::ValidationFailure),
            1 << 60,
        );
        let v = parse(&report.to_json());
        let summary = &v["policies"][0]["summary"];
        assert_eq!(
            summary["total-successful-session-count"].as_u64(),
            Some((1 << 53) - 1)
        );
        assert_eq!(
            summary["total-failure-session-count"].as_u64(),
            Some((1 << 53) - 1)
        );
    }

    #[test]
    fn report_limits() {
        let mut report = meta().with_limits(1, 2);
        let a = ReportPolicy::no_policy_found("a.example").unwrap();
        let b = ReportPolicy::no_policy_found("b.example").unwrap();
        report.add_success(&a, 1);
        report.add_success(&b, 7);
        report.add_failure(&b, FailureDetail::new(ResultType::ValidationFailure));
        assert_eq!(report.dropped_sessions(), 8);
        for code in ["1", "2", "3", "3", "1"] {
            report.add_failure(
                &a,
                FailureDetail::new(ResultType::ValidationFailure).with_failure_reason_code(code),
            );
        }
        assert_eq!(report.omitted_details(), 2);
        let v = parse(&report.to_json());
        let p = &v["policies"][0];
        assert_eq!(v["policies"].as_array().unwrap().len(), 1);
        assert_eq!(p["summary"]["total-failure-session-count"], 5);
        let d = p["failure-details"].as_array().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["failed-session-count"], 2);
        assert_eq!(d[1]["failed-session-count"], 1);
    }

    #[test]
    fn report_texts_are_bounded() {
        let long = "\u{e9}".repeat(MAX_DETAIL_TEXT); // 2 bytes each
        let key = ReportPolicy::no_policy_found("example.com").unwrap();
        let mut report = meta();
        report.add_failure(
            &key,
            FailureDetail::new(ResultType::ValidationFailure)
                .with_failure_reason_code(&long)
                .with_receiving_mx_helo(&format!("a{long}")),
        );
        let v = parse(&report.to_json());
        let d = &v["policies"][0]["failure-details"][0];
        let code = d["failure-reason-code"].as_str().unwrap();
        assert_eq!(code.len(), MAX_DETAIL_TEXT);
        let helo = d["receiving-mx-helo"].as_str().unwrap();
        assert_eq!(helo.len(), MAX_DETAIL_TEXT - 1); // cut at a character boundary
                                                     // Texts that only differ after the cut are aggregated.
        report.add_failure(
            &key,
            FailureDetail::new(ResultType::ValidationFailure)
                .with_failure_reason_code(&format!("{long}more"))
                .with_receiving_mx_helo(&format!("a{long}other")),
        );
        let v = parse(&report.to_json());
        assert_eq!(
            v["policies"][0]["failure-details"][0]["failed-session-count"],
            2
        );
    }

    #[test]
    fn report_metadata_checks() {
        let new = |org: &str, start: &str, end: &str| {
            ReportBuilder::new(org, "a@b.example", "id", start, end)
        };
        assert_eq!(
            new(" ", "2016-04-01T00:00:00Z", "2016-04-01T23:59:59Z").unwrap_err(),
            ReportError::Empty {
                field: "organization-name"
            }
        );
        assert!(ReportBuilder::new(
            "o",
            "",
            "id",
            "2016-04-01T00:00:00Z",
            "2016-04-01T00:00:00Z"
        )
        .is_err());
        for ok in [
            "2016-04-01T00:00:00Z",
            "2016-04-01t23:59:60z",
            "2016-12-31T23:59:59.123456+14:00",
            "2016-04-01T00:00:00-08:00",
            "0000-01-01T00:00:00.0Z",
        ] {
            assert!(new("o", ok, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2016-04-01",
            "2016-04-01 00:00:00Z",
            "2016-13-01T00:00:00Z",
            "2016-00-01T00:00:00Z",
            "2016-04-32T00:00:00Z",
            "2016-04-01T24:00:00Z",
            "2016-04-01T00:60:00Z",
            "2016-04-01T00:00:61Z",
            "2016-04-01T00:00:00",
            "2016-04-01T00:00:00.Z",
            "2016-04-01T00:00:00+0200",
            "2016-04-01T00:00:00+24:00",
            "2016-04-01T00:00:00ZZ",
            "16-04-01T00:00:00Z",
            "2016-4-01T00:00:00Z",
            "2016-04-01T00:00:00Z\n",
            "\u{661}016-04-01T00:00:00Z",
        ] {
            assert_eq!(
                new("o", bad, "2016-04-01T00:00:00Z").unwrap_err(),
                ReportError::InvalidDateTime {
                    field: "start-datetime"
                },
                "{bad:?}"
            );
            assert_eq!(
                new("o", "2016-04-01T00:00:00Z", bad).unwrap_err(),
                ReportError::InvalidDateTime {
                    field: "end-datetime"
                },
                "{bad:?}"
            );
        }
        assert!(ReportError::InvalidDateTime { field: "x" }
            .to_string()
            .contains("RFC 3339"));
    }

    #[test]
    fn report_policy_domain_checks() {
        assert!(matches!(
            ReportPolicy::no_policy_found("b\u{fc}cher.example"),
            Err(ReportError::InvalidDomain {
                error: DomainError::NotAscii,
                ..
            })
        ));
        assert!(ReportPolicy::sts("*.example.com", &sts_policy()).is_err());
        assert_eq!(
            ReportPolicy::no_policy_found("xn--bcher-kva.example")
                .unwrap()
                .policy_domain(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn filenames() {
        assert_eq!(
            report_filename(
                "mail.sender.example",
                "example.com",
                1470013207,
                1470186007,
                None,
                false
            )
            .unwrap(),
            "mail.sender.example!example.com!1470013207!1470186007.json"
        );
        assert_eq!(
            report_filename("Sender.Example.", "EXAMPLE.com", 1, 2, Some("abc9"), true).unwrap(),
            "sender.example!example.com!1!2!abc9.json.gz"
        );
        assert_eq!(
            report_filename("s.example", "example.com", 1, 2, Some("a-b"), true),
            Err(ReportError::InvalidUniqueId)
        );
        assert_eq!(
            report_filename("s.example", "example.com", 1, 2, Some(""), true),
            Err(ReportError::InvalidUniqueId)
        );
        assert!(matches!(
            report_filename("s!example", "example.com", 1, 2, None, true),
            Err(ReportError::InvalidDomain {
                field: "sender",
                ..
            })
        ));
        assert!(matches!(
            report_filename("s.example", "example.com/", 1, 2, None, true),
            Err(ReportError::InvalidDomain {
                field: "policy-domain",
                ..
            })
        ));
    }

    #[test]
    fn record_parse_never_panics() {
        let pieces: &[&[u8]] = &[
            b"v=TLSRPTv1",
            b";",
            b" ",
            b",",
            b"rua=",
            b"mailto:",
            b"https://",
            b"a@b.example",
            b"%",
            b"2C",
            b"!",
            b"=",
            b"x",
            b"\xff",
            b"\t",
        ];
        let mut state = 77u64;
        for _ in 0..20_000 {
            let mut rec = Vec::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                rec.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            if let Ok(r) = TlsRptRecord::parse(&rec) {
                assert!(!r.uris().is_empty() && r.uris().len() <= MAX_RUA_URIS);
                assert!(r.uris().iter().all(|u| is_uri(u.as_str())));
            }
        }
    }
}
