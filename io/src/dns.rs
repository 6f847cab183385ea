//! DNS glue (feature `dns`): MX, A/AAAA, TLSA, SRV and TXT lookups with
//! their DNSSEC status, mapped to the policy types of [`starttls::policy`].
//!
//! Built on [`hickory-resolver`](https://docs.rs/hickory-resolver) 0.26 with
//! DNSSEC validated in-process. Three [`Validation`] modes:
//!
//! | mode | who validates | `Secure` means |
//! |---|---|---|
//! | [`Validation::InProcess`] | this resolver, from the [`TrustAnchors`] | a chain of signatures from an anchor |
//! | [`Validation::TrustAd`] | a local validating resolver (unbound, ...) | its answer had the AD bit (RFC 4035 §3.2.3, RFC 6840 §5.7); as Postfix's `smtp_dns_support_level = dnssec` |
//! | [`Validation::Off`] | nobody | never: everything is `Insecure` |
//!
//! With `TrustAd`, only trust a resolver on the same host (or over a path
//! you trust): anyone on the path can set the AD bit. An authoritative
//! server (such as `knotd` for its own zones) never sets it, so against
//! one every answer is `Insecure`.
//!
//! ## Failures are never "insecure"
//!
//! A lookup that timed out, got `SERVFAIL`/`REFUSED`, or could not be
//! proven either way is [`Security::Indeterminate`]; one whose signatures
//! failed is [`Security::Bogus`]. Neither is ever reported as `Insecure`,
//! which would let an attacker who blocks DNS switch DANE off
//! (RFC 7672 §2.1.1). hickory reports a DS/DNSKEY fetch that timed out
//! during validation as bogus (hickory issue #3932): on a bogus result this
//! module re-asks the DNSKEY and DS of the name and of each ancestor
//! without validation, and reports `Indeterminate` when one of them gets no
//! answer at all.
//!
//! A denial (NODATA, NXDOMAIN) that is not proven by NSEC/NSEC3 is
//! `Insecure` only when its authority records belong to the name's own
//! zone (the name or an ancestor); hickory also accepts one carrying, say,
//! the SOA of an unrelated unsigned zone, which a spoofer can add: that is
//! reported [`Security::Bogus`] (RFC 4035 §5.4).
//!
//! With [`Validation::TrustAd`], a validating resolver answers `SERVFAIL`
//! both for a bogus answer and for one it could not get. It is
//! `Indeterminate`, unless the answer carries an extended DNS error
//! (RFC 8914) saying validation failed (DNSSEC Bogus, Signature Expired,
//! DNSKEY Missing, ...): then `Bogus`. unbound sends them with `ede: yes`;
//! the text goes into the answer's `detail`.
//!
//! Each lookup gives up after `4 × timeout × attempts` (validation makes
//! more queries than the one asked); a CNAME re-walk (below) gets as long
//! again.
//!
//! ## CNAMEs
//!
//! An answer may come through a CNAME chain of at most 8 links; a longer
//! one is `Indeterminate`. Its security is the weakest of every link and
//! the final answer; [`Answer::names`] lists the chain.
//!
//! hickory 0.26 validating in-process gets two CNAME cases wrong: NODATA
//! at the end of a secure CNAME comes back bogus (it checks the target's
//! NSEC against the name asked), and an insecure CNAME into a signed zone
//! comes back indeterminate with no records; its denial also drops the
//! chain, so NODATA behind an insecure CNAME could read as secure. So for
//! A, AAAA, MX, TXT and SRV, when an in-process answer failed or denied,
//! this module asks CNAME at the name (validated): when that shows an
//! alias, it follows the chain link by link and asks the type at the final
//! target, with the security as above. It never upgrades a failure it
//! cannot explain: when the CNAME query fails, a failed answer stays as it
//! was (and a denial becomes that failure); a bogus or failed link or
//! final answer keeps the result bogus or failed; a loop is
//! `Indeterminate`. unbound's answers (`TrustAd`) are the reference; the
//! conformance tests compare the two.
//!
//! ## Example
//!
//! ```no_run
//! # async fn f() -> Result<(), starttls_io::dns::DnsError> {
//! use starttls_io::dns::{MxKind, Resolver, ResolverConfig, TrustAnchors, Validation};
//!
//! let anchors = TrustAnchors::from_file("anchors.txt")?;
//! let config = ResolverConfig::new(
//!     vec!["127.0.0.1:5353".parse().unwrap()],
//!     Validation::InProcess(anchors),
//! );
//! let resolver = Resolver::new(config)?;
//! let mx = resolver.mx("example.test").await?;
//! match mx.host_source() {
//!     Some(source) => { /* connect to each host, DANE per `source` */ }
//!     None if mx.kind == MxKind::NullMx => { /* the domain takes no mail */ }
//!     None => { /* lookup failed: defer */ }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig as HickoryConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors as HickoryAnchors};
use hickory_resolver::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use starttls::policy::dane::{HostSource, TlsaLookup, TlsaRecord};
use starttls::policy::mta_sts::TxtLookup;

/// Why a resolver could not be built, or a name could not be asked.
/// Lookup failures are not errors: they are an answer's [`Security`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsError {
    /// [`ResolverConfig::nameservers`] is empty.
    NoNameservers,
    /// A name given to a lookup is not a valid domain name.
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The trust-anchor file could not be read.
    TrustAnchorFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The trust-anchor text holds no DNSKEY record, or one that does not
    /// parse.
    TrustAnchors {
        /// What is wrong.
        reason: String,
    },
    /// hickory refused the configuration.
    Config {
        /// hickory's error.
        reason: String,
    },
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NoNameservers => f.write_str("DNS resolver: no nameserver configured"),
            DnsError::InvalidName { name, reason } => {
                write!(f, "DNS: `{name}` is not a valid domain name: {reason}")
            }
            DnsError::TrustAnchorFile { path, reason } => write!(
                f,
                "DNSSEC trust anchors: cannot read {}: {reason}",
                path.display()
            ),
            DnsError::TrustAnchors { reason } => write!(f, "DNSSEC trust anchors: {reason}"),
            DnsError::Config { reason } => write!(f, "DNS resolver configuration: {reason}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// The keys DNSSEC validation starts from.
#[derive(Clone)]
pub struct TrustAnchors {
    inner: Arc<HickoryAnchors>,
    count: usize,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("keys", &self.count)
            .finish()
    }
}

impl TrustAnchors {
    /// The IANA root zone's key-signing keys built into hickory (KSK-2017,
    /// tag 20326, and KSK-2024, tag 38696).
    pub fn iana_root() -> TrustAnchors {
        TrustAnchors {
            inner: Arc::new(HickoryAnchors::default()),
            count: 2,
        }
    }

    /// Reads DNSKEY records in presentation format from a file; see
    /// [`from_dnskeys`](Self::from_dnskeys).
    pub fn from_file(path: impl AsRef<Path>) -> Result<TrustAnchors, DnsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DnsError::TrustAnchorFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        TrustAnchors::from_dnskeys(&text)
    }

    /// Parses DNSKEY records in presentation format, one per line, as
    /// `kdig DNSKEY <zone>` prints them (`example.test. 300 IN DNSKEY 257 3
    /// 13 <base64>`); `;` comments are ignored. Each key is trusted for its
    /// owner name. For a private zone, give every DNSKEY at its apex (the
    /// zone-signing keys too): a name's signatures are checked against the
    /// anchor set directly, and without its keys there the resolver looks
    /// for a DS in the parent.
    pub fn from_dnskeys(text: &str) -> Result<TrustAnchors, DnsError> {
        let count = text
            .lines()
            .map(|l| l.split(';').next().unwrap_or(""))
            .filter(|l| {
                l.split_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("DNSKEY"))
            })
            .count();
        if count == 0 {
            return Err(DnsError::TrustAnchors {
                reason: "no DNSKEY record".into(),
            });
        }
        let inner = HickoryAnchors::from_str(text).map_err(|e| DnsError::TrustAnchors {
            reason: e.to_string(),
        })?;
        Ok(TrustAnchors {
            inner: Arc::new(inner),
            count,
        })
    }

    /// How many keys (for the root anchors, 2).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Never true for a value that was built (kept for clippy's sake).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Who decides whether an answer is DNSSEC-secure.
#[derive(Clone, Debug)]
pub enum Validation {
    /// Validate in-process from these anchors.
    InProcess(TrustAnchors),
    /// Trust the AD bit of the configured resolver, which must be a local
    /// validating resolver (see the [module docs](self)).
    TrustAd,
    /// No DNSSEC: every answer is [`Security::Insecure`] (DANE never
    /// applies).
    Off,
}

/// Where and how to ask.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// Nameservers, asked in order (UDP, then TCP for truncated answers).
    /// For `InProcess` these may be recursive resolvers or, for a test zone,
    /// the authoritative server itself.
    pub nameservers: Vec<SocketAddr>,
    /// Who validates.
    pub validation: Validation,
    /// Per query and attempt. Default 5 s.
    pub timeout: Duration,
    /// Attempts per nameserver. Default 2.
    pub attempts: usize,
}

impl ResolverConfig {
    /// `nameservers` with `validation`, timeout 5 s, 2 attempts.
    pub fn new(nameservers: Vec<SocketAddr>, validation: Validation) -> ResolverConfig {
        ResolverConfig {
            nameservers,
            validation,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }

    /// Sets the per-query timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ResolverConfig {
        self.timeout = timeout;
        self
    }

    /// Sets the attempts per nameserver (at least 1).
    pub fn with_attempts(mut self, attempts: usize) -> ResolverConfig {
        self.attempts = attempts.max(1);
        self
    }

    fn deadline(&self) -> Duration {
        self.timeout
            .saturating_mul(u32::try_from(self.attempts.max(1)).unwrap_or(u32::MAX))
            .saturating_mul(4)
    }
}

/// The DNSSEC status of an answer (RFC 4033 §5, RFC 4035 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// Validated from a trust anchor (or, with `TrustAd`, the AD bit was
    /// set). A negative answer is secure when its denial of existence is.
    Secure,
    /// Provably unsigned (no DS on the way down), or validation is off.
    Insecure,
    /// Signed, but the signatures or the chain do not validate: could be
    /// an attack. Records, if any, must not be used.
    Bogus,
    /// No answer, `SERVFAIL`/`REFUSED`, or no proof either way: the result
    /// is unknown. Never to be read as `Insecure`.
    Indeterminate,
}

impl Security {
    fn rank(self) -> u8 {
        match self {
            Security::Secure => 0,
            Security::Insecure => 1,
            Security::Indeterminate => 2,
            Security::Bogus => 3,
        }
    }

    /// The weaker of two: `Bogus` over `Indeterminate` over `Insecure` over
    /// `Secure`.
    pub fn and(self, other: Security) -> Security {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// `Bogus` or `Indeterminate`: the lookup failed, defer.
    pub fn is_failure(self) -> bool {
        matches!(self, Security::Bogus | Security::Indeterminate)
    }

    fn from_proof(proof: Proof) -> Security {
        match proof {
            Proof::Secure => Security::Secure,
            Proof::Insecure => Security::Insecure,
            Proof::Bogus => Security::Bogus,
            Proof::Indeterminate => Security::Indeterminate,
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
            Security::Bogus => "bogus",
            Security::Indeterminate => "indeterminate",
        })
    }
}

/// An answer: the records (empty for NXDOMAIN, NODATA or a failure) and
/// their security.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    /// The records, in the server's order. Do not use them when
    /// `security.is_failure()`.
    pub records: Vec<T>,
    /// The DNSSEC status of the answer (of the CNAME chain too).
    pub security: Security,
    /// The name does not exist (NXDOMAIN).
    pub nxdomain: bool,
    /// The name asked, then each CNAME target followed, lower-case without
    /// the trailing dot.
    pub names: Vec<String>,
    /// Why the lookup failed (timeout, SERVFAIL, bogus signature, ...).
    pub detail: Option<String>,
}

/// One MX record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mx {
    /// Preference: lower first.
    pub preference: u16,
    /// The host, lower-case, no trailing dot.
    pub host: String,
}

/// What the MX RRset says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxKind {
    /// The hosts, sorted by preference (stable: equal preferences keep the
    /// server's order; RFC 5321 §5.1 asks to randomize them, the caller may).
    /// `.` targets mixed with real ones are dropped (RFC 7505 §3 forbids
    /// the mix).
    Hosts(Vec<Mx>),
    /// A null MX (RFC 7505: one `0 .` record): the domain accepts no mail.
    NullMx,
    /// No MX records (NODATA or NXDOMAIN): the domain itself is the host
    /// (RFC 5321 §5.1), unless it does not exist.
    NoMx,
    /// The lookup failed (`Bogus` or `Indeterminate`): defer.
    Failed,
}

/// The MX lookup of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxAnswer {
    /// The domain asked, lower-case, no trailing dot.
    pub domain: String,
    /// What was found.
    pub kind: MxKind,
    /// The DNSSEC status of the MX RRset (or of its denial).
    pub security: Security,
    /// The domain does not exist (NXDOMAIN).
    pub nxdomain: bool,
    /// Why the lookup failed.
    pub detail: Option<String>,
}

impl MxAnswer {
    /// How the hosts were found, for DANE (RFC 7672 §2.2.1):
    /// `SecureMx`/`InsecureMx` for MX hosts, `NoMx` when the domain is its
    /// own host. `None` for a null MX (no mail) and for a failed lookup
    /// (defer: [`MxKind::Failed`]).
    pub fn host_source(&self) -> Option<HostSource> {
        match (&self.kind, self.security) {
            (MxKind::Hosts(_), Security::Secure) => Some(HostSource::SecureMx),
            (MxKind::Hosts(_), Security::Insecure) => Some(HostSource::InsecureMx),
            (MxKind::NoMx, Security::Secure | Security::Insecure) => Some(HostSource::NoMx),
            _ => None,
        }
    }

    /// The hosts to try, in order: the MX hosts, or the domain itself for
    /// `NoMx` (empty for a null MX or a failure).
    pub fn hosts(&self) -> Vec<String> {
        match &self.kind {
            MxKind::Hosts(hosts) => hosts.iter().map(|m| m.host.clone()).collect(),
            MxKind::NoMx if !self.nxdomain => vec![self.domain.clone()],
            _ => Vec::new(),
        }
    }
}

/// The TLSA lookup for a host and port (RFC 6698, RFC 7672 §2.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaAnswer {
    /// What the DANE policy needs.
    pub lookup: TlsaLookup,
    /// The TLSA base domain the answer came from (the CNAME-expanded host,
    /// or the host itself), lower-case, no trailing dot.
    pub base_domain: String,
    /// The host, then each CNAME target of it.
    pub names: Vec<String>,
    /// Whether every CNAME link of the host was secure (vacuously true with
    /// no CNAME; false when a link was not, or its lookup failed).
    pub chain_secure: bool,
    /// The DNSSEC status of the TLSA answer used (failures of the CNAME
    /// walk included).
    pub security: Security,
    /// Why the lookup failed.
    pub detail: Option<String>,
}

/// One SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Among equal priorities, higher first here.
    pub weight: u16,
    /// The port.
    pub port: u16,
    /// The target host, lower-case, no trailing dot.
    pub target: String,
}

/// The SRV lookup of `_service._tcp.<domain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvAnswer {
    /// The targets, priority ascending, then weight descending, then name
    /// (RFC 2782's weighted random choice made deterministic).
    pub targets: Vec<Srv>,
    /// A single `.` target: the service is decidedly not offered
    /// (RFC 2782).
    pub not_offered: bool,
    /// The DNSSEC status; a secure SRV answer lets the targets be reference
    /// identifiers (RFC 7817 §3, RFC 6186 §4).
    pub security: Security,
    /// NXDOMAIN.
    pub nxdomain: bool,
    /// Why the lookup failed.
    pub detail: Option<String>,
}

impl Answer<Vec<u8>> {
    /// The `_mta-sts` TXT classification (RFC 8461 §3.1): a failed lookup
    /// is [`TxtLookup::Failed`]; otherwise the records decide. DNSSEC does
    /// not matter to MTA-STS.
    pub fn sts_lookup(&self) -> TxtLookup {
        if self.security.is_failure() {
            TxtLookup::Failed
        } else {
            TxtLookup::from_records(&self.records)
        }
    }
}

/// The resolver: cheap to share by reference; lookups run on the caller's
/// tokio runtime.
pub struct Resolver {
    backend: Backend,
    config: ResolverConfig,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Backend {
    Hickory {
        main: Box<TokioResolver>,
        validating: bool,
        /// Non-validating, for telling a bogus answer from an unreachable
        /// DS/DNSKEY (hickory #3932).
        plain: Option<Box<TokioResolver>>,
    },
    TrustAd,
}

/// One RRset as asked: records of the asked type at the end of the CNAME
/// chain.
#[derive(Debug)]
struct Rrset {
    records: Vec<Record>,
    security: Security,
    nxdomain: bool,
    names: Vec<String>,
    detail: Option<String>,
}

impl Rrset {
    fn failed(name: &Name, security: Security, detail: String) -> Rrset {
        Rrset {
            records: Vec::new(),
            security,
            nxdomain: false,
            names: vec![show(name)],
            detail: Some(detail),
        }
    }

    fn answer<T>(self, f: impl FnMut(&Record) -> Option<T>) -> Answer<T> {
        let records = if self.security.is_failure() {
            Vec::new()
        } else {
            self.records.iter().filter_map(f).collect()
        };
        Answer {
            records,
            security: self.security,
            nxdomain: self.nxdomain,
            names: self.names,
            detail: self.detail,
        }
    }
}

/// A name for output: lower-case ASCII, no trailing dot.
fn show(name: &Name) -> String {
    name.to_lowercase()
        .to_ascii()
        .trim_end_matches('.')
        .to_owned()
}

/// Parses a name given by the caller as fully qualified. Underscore labels
/// (`_25._tcp`) are allowed; non-ASCII goes through IDNA.
fn parse_name(name: &str) -> Result<Name, DnsError> {
    let trimmed = name.trim().trim_end_matches('.');
    let invalid = |reason: String| DnsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(invalid("empty".into()));
    }
    let mut parsed = if trimmed.is_ascii() {
        Name::from_ascii(trimmed)
    } else {
        Name::from_utf8(trimmed)
    }
    .map_err(|e| invalid(e.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// Sorts MX records and recognises the null MX.
fn classify_mx(mut records: Vec<(u16, Option<String>)>) -> MxKind {
    if records.is_empty() {
        return MxKind::NoMx;
    }
    if records.len() == 1 && records.iter().all(|(_, host)| host.is_none()) {
        return MxKind::NullMx;
    }
    records.sort_by_key(|(preference, _)| *preference);
    let hosts: Vec<Mx> = records
        .into_iter()
        .filter_map(|(preference, host)| host.map(|host| Mx { preference, host }))
        .collect();
    if hosts.is_empty() {
        // Several `.` records: still nothing to deliver to.
        MxKind::NullMx
    } else {
        MxKind::Hosts(hosts)
    }
}

/// Orders SRV targets and recognises the "not offered" `.` target.
fn order_srv(mut records: Vec<(u16, u16, u16, Option<String>)>) -> (Vec<Srv>, bool) {
    let not_offered = records.len() == 1 && records.iter().all(|r| r.3.is_none());
    records.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(b.1.cmp(&a.1))
            .then_with(|| a.3.cmp(&b.3))
            .then(a.2.cmp(&b.2))
    });
    let targets = records
        .into_iter()
        .filter_map(|(priority, weight, port, target)| {
            target.map(|target| Srv {
                priority,
                weight,
                port,
                target,
            })
        })
        .collect();
    (targets, not_offered)
}

/// A target name for output, or `None` for the root (`.`).
fn target(name: &Name) -> Option<String> {
    if name.is_root() {
        None
    } else {
        Some(show(name))
    }
}

fn tlsa_from(record: &Record) -> Option<TlsaRecord> {
    match &record.data {
        RData::TLSA(t) => Some(TlsaRecord::new(
            u8::from(t.cert_usage),
            u8::from(t.selector),
            u8::from(t.matching),
            t.cert_data.clone(),
        )),
        _ => None,
    }
}

impl Resolver {
    /// Builds the resolver (no I/O yet). Needs a tokio runtime only when
    /// the lookups run.
    pub fn new(config: ResolverConfig) -> Result<Resolver, DnsError> {
        if config.nameservers.is_empty() {
            return Err(DnsError::NoNameservers);
        }
        let backend = match &config.validation {
            Validation::InProcess(anchors) => Backend::Hickory {
                main: Box::new(build_hickory(&config, Some(anchors.inner.clone()))?),
                validating: true,
                plain: Some(Box::new(build_hickory(&config, None)?)),
            },
            Validation::Off => Backend::Hickory {
                main: Box::new(build_hickory(&config, None)?),
                validating: false,
                plain: None,
            },
            Validation::TrustAd => Backend::TrustAd,
        };
        Ok(Resolver { backend, config })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// The MX hosts of `domain` (RFC 5321 §5.1, RFC 7505).
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let name = parse_name(domain)?;
        let rrset = self.query(&name, RecordType::MX).await;
        let kind = if rrset.security.is_failure() {
            MxKind::Failed
        } else {
            classify_mx(
                rrset
                    .records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, target(&mx.exchange))),
                        _ => None,
                    })
                    .collect(),
            )
        };
        Ok(MxAnswer {
            domain: show(&name),
            kind,
            security: rrset.security,
            nxdomain: rrset.nxdomain,
            detail: rrset.detail,
        })
    }

    /// The A and AAAA addresses of `host` (IPv4 first). The security is the
    /// weaker of the two lookups; records of a lookup that failed are left
    /// out, those of the other kept. `nxdomain` only when both say so.
    pub async fn addresses(&self, host: &str) -> Result<Answer<IpAddr>, DnsError> {
        let name = parse_name(host)?;
        let (a, aaaa) = tokio::join!(
            self.query(&name, RecordType::A),
            self.query(&name, RecordType::AAAA)
        );
        let a = a.answer(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        });
        let aaaa = aaaa.answer(|r| match &r.data {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        });
        let mut names = a.names;
        for n in aaaa.names {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let detail = match (a.detail, aaaa.detail) {
            (Some(x), Some(y)) => Some(format!("A: {x}; AAAA: {y}")),
            (Some(x), None) => Some(format!("A: {x}")),
            (None, Some(y)) => Some(format!("AAAA: {y}")),
            (None, None) => None,
        };
        Ok(Answer {
            records: a.records.into_iter().chain(aaaa.records).collect(),
            security: a.security.and(aaaa.security),
            nxdomain: a.nxdomain && aaaa.nxdomain,
            names,
            detail,
        })
    }

    /// The TLSA records for `host` and TCP `port` (RFC 6698 §3,
    /// RFC 7672 §2.2.2, RFC 7671 §7). The CNAME chain of `host` is walked
    /// first; when it has links and every one is secure, TLSA is asked at
    /// `_port._tcp.<expanded name>`, and when that gives no secure records
    /// (and did not fail), at `_port._tcp.<host>`. With an insecure link,
    /// only `_port._tcp.<host>`. A failed CNAME walk or TLSA lookup is
    /// [`TlsaLookup::Failed`] (never a fallback).
    pub async fn tlsa(&self, host: &str, port: u16) -> Result<TlsaAnswer, DnsError> {
        let name = parse_name(host)?;
        let original = show(&name);
        let mut names = vec![original.clone()];
        let mut chain_security = Security::Secure;
        let mut current = name.clone();
        // RFC 1034 has no limit; resolvers use 8 to 16.
        for _ in 0..16 {
            let step = self.query(&current, RecordType::CNAME).await;
            if step.security.is_failure() {
                return Ok(TlsaAnswer {
                    lookup: TlsaLookup::Failed,
                    base_domain: original,
                    names,
                    chain_secure: false,
                    security: step.security,
                    detail: step
                        .detail
                        .map(|d| format!("CNAME lookup of {}: {d}", show(&current))),
                });
            }
            let next = step.records.iter().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(c.0.clone()),
                _ => None,
            });
            match next {
                Some(next) => {
                    chain_security = chain_security.and(step.security);
                    let shown = show(&next);
                    if names.contains(&shown) {
                        break; // a loop: stop where we are
                    }
                    names.push(shown);
                    current = next;
                }
                None => break,
            }
        }
        let chain_secure = chain_security == Security::Secure;
        let label = |base: &Name| parse_name(&format!("_{port}._tcp.{}", base.to_ascii()));

        if chain_secure && names.len() > 1 {
            let expanded = label(&current)?;
            let first = self.query(&expanded, RecordType::TLSA).await;
            let lookup = tlsa_lookup(&first);
            let has_records = matches!(&lookup, TlsaLookup::Secure(r) if !r.is_empty());
            if has_records || matches!(lookup, TlsaLookup::Failed) {
                return Ok(TlsaAnswer {
                    lookup,
                    base_domain: show(&current),
                    names,
                    chain_secure,
                    security: first.security,
                    detail: first.detail,
                });
            }
        }
        let at_host = self.query(&label(&name)?, RecordType::TLSA).await;
        Ok(TlsaAnswer {
            lookup: tlsa_lookup(&at_host),
            base_domain: original,
            names,
            chain_secure,
            security: at_host.security,
            detail: at_host.detail,
        })
    }

    /// The SRV records of `_<service>._tcp.<domain>`; `service` is the
    /// label with or without its underscore (`"_imap"`, `"submission"`;
    /// see `starttls::policy::identity::MailService::srv_label`).
    pub async fn srv(&self, service: &str, domain: &str) -> Result<SrvAnswer, DnsError> {
        let service = service.trim_start_matches('_');
        let domain = parse_name(domain)?;
        let name = parse_name(&format!("_{service}._tcp.{}", domain.to_ascii()))?;
        let rrset = self.query(&name, RecordType::SRV).await;
        let (targets, not_offered) = if rrset.security.is_failure() {
            (Vec::new(), false)
        } else {
            order_srv(
                rrset
                    .records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(s) => Some((s.priority, s.weight, s.port, target(&s.target))),
                        _ => None,
                    })
                    .collect(),
            )
        };
        Ok(SrvAnswer {
            targets,
            not_offered,
            security: rrset.security,
            nxdomain: rrset.nxdomain,
            detail: rrset.detail,
        })
    }

    /// The TXT records at `name`, each record's character-strings joined
    /// without separator (RFC 7208 §3.3, RFC 8461 §3.1). For
    /// `_mta-sts.<domain>` see [`Answer::sts_lookup`]; for TLS-RPT,
    /// `_smtp._tls.<domain>`.
    pub async fn txt(&self, name: &str) -> Result<Answer<Vec<u8>>, DnsError> {
        let name = parse_name(name)?;
        Ok(self
            .query(&name, RecordType::TXT)
            .await
            .answer(|r| match &r.data {
                RData::TXT(t) => Some(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
                _ => None,
            }))
    }

    /// `_mta-sts.<domain>` TXT, classified (RFC 8461 §3.1).
    pub async fn mta_sts_txt(&self, domain: &str) -> Result<TxtLookup, DnsError> {
        let domain = parse_name(domain)?;
        Ok(self
            .txt(&format!("_mta-sts.{}", domain.to_ascii()))
            .await?
            .sts_lookup())
    }

    /// One lookup, with the CNAME re-walk of [`walk_cnames`](Self::walk_cnames)
    /// when in-process validation failed or denied and the name is an
    /// alias.
    async fn query(&self, name: &Name, rtype: RecordType) -> Rrset {
        let rrset = self.query_once(name, rtype).await;
        if rrset.names.len() > MAX_CNAME_LINKS + 1 {
            // Whoever followed it: the same limit as the re-walk's.
            return Rrset {
                records: Vec::new(),
                security: rrset.security.and(Security::Indeterminate),
                nxdomain: false,
                names: rrset.names,
                detail: Some(format!(
                    "{rtype} {}: CNAME chain longer than {MAX_CNAME_LINKS} links",
                    show(name)
                )),
            };
        }
        let validating = matches!(
            self.backend,
            Backend::Hickory {
                validating: true,
                ..
            }
        );
        let gap = rrset.security.is_failure() || rrset.records.is_empty();
        if !(validating && gap && REWALKED.contains(&rtype)) {
            return rrset;
        }
        let deadline = self.config.deadline();
        match tokio::time::timeout(deadline, self.walk_cnames(name, rtype, &rrset)).await {
            Ok(Some(walked)) => walked,
            Ok(None) => rrset,
            // Never better than what hickory said, and never a denial.
            Err(_) => Rrset::failed(
                name,
                rrset.security.and(Security::Indeterminate),
                format!(
                    "{rtype} {}: CNAME chain not walked within {deadline:?}",
                    show(name)
                ),
            ),
        }
    }

    /// Works around two gaps of hickory 0.26's in-process validation with
    /// CNAMEs: NODATA at the end of a secure CNAME comes back bogus (the
    /// target's NSEC is checked against the name asked), and an insecure
    /// CNAME into a signed zone comes back indeterminate with no records;
    /// its denial error also drops the chain, so NODATA through an insecure
    /// CNAME could read as secure.
    ///
    /// Asks CNAME at `name` (validated). `None` when that says `name` is no
    /// alias: hickory's answer stands. Otherwise follows the chain link by
    /// link (at most [`MAX_CNAME_LINKS`], no loop), then asks `rtype` at the
    /// final target. The security is the weakest of every link and the
    /// final answer, so a bogus link or answer stays bogus and a failed one
    /// stays a failure.
    ///
    /// When the CNAME query at `name` fails, `None` for a failed answer
    /// (nothing better is known); a denial becomes that failure, since
    /// whether `name` is an insecure alias could not be told.
    async fn walk_cnames(&self, name: &Name, rtype: RecordType, asked: &Rrset) -> Option<Rrset> {
        let first = self.query_once(name, RecordType::CNAME).await;
        if first.security.is_failure() {
            if asked.security.is_failure() {
                return None;
            }
            return Some(Rrset::failed(
                name,
                first.security,
                format!(
                    "{rtype} {}: denied, but its CNAME lookup failed: {}",
                    show(name),
                    first.detail.as_deref().unwrap_or("no detail")
                ),
            ));
        }
        let mut current = cname_target(&first)?;
        let mut security = first.security;
        let mut names = vec![name.clone()];
        let failed = |names: &[Name], security: Security, detail: String| Rrset {
            records: Vec::new(),
            security,
            nxdomain: false,
            names: names.iter().map(show).collect(),
            detail: Some(detail),
        };
        loop {
            if names.contains(&current) {
                return Some(failed(
                    &names,
                    security.and(Security::Indeterminate),
                    format!("{rtype} {}: CNAME loop at {}", show(name), show(&current)),
                ));
            }
            names.push(current.clone());
            if names.len() > MAX_CNAME_LINKS + 1 {
                return Some(failed(
                    &names,
                    security.and(Security::Indeterminate),
                    format!(
                        "{rtype} {}: CNAME chain longer than {MAX_CNAME_LINKS} links",
                        show(name)
                    ),
                ));
            }
            let step = self.query_once(&current, RecordType::CNAME).await;
            if step.security.is_failure() {
                return Some(failed(
                    &names,
                    security.and(step.security),
                    format!(
                        "{rtype} {}: CNAME link {}: {}",
                        show(name),
                        show(&current),
                        step.detail.as_deref().unwrap_or("failed")
                    ),
                ));
            }
            match cname_target(&step) {
                Some(next) => {
                    security = security.and(step.security);
                    current = next;
                }
                None => break,
            }
        }
        let last = self.query_once(&current, rtype).await;
        if last.names.len() > 1 {
            // The target became an alias between the two queries.
            return Some(failed(
                &names,
                security.and(last.security).and(Security::Indeterminate),
                format!(
                    "{rtype} {}: the CNAME chain changed while it was walked",
                    show(name)
                ),
            ));
        }
        let security = security.and(last.security);
        Some(Rrset {
            records: if security.is_failure() {
                Vec::new()
            } else {
                last.records
            },
            security,
            nxdomain: last.nxdomain && !security.is_failure(),
            names: names.iter().map(show).collect(),
            detail: last
                .detail
                .map(|d| format!("{rtype} {} through its CNAME chain: {d}", show(name))),
        })
    }

    async fn query_once(&self, name: &Name, rtype: RecordType) -> Rrset {
        let work = async {
            match &self.backend {
                Backend::Hickory {
                    main,
                    validating,
                    plain,
                } => {
                    let mut rrset = query_hickory(main, *validating, name, rtype).await;
                    if rrset.security == Security::Bogus {
                        if let Some(plain) = plain {
                            if let Some(why) = unreachable_keys(plain, name).await {
                                rrset.security = Security::Indeterminate;
                                rrset.detail = Some(format!(
                                    "validation failed, and {why}: cannot tell bogus from unreachable"
                                ));
                            }
                        }
                    }
                    rrset
                }
                Backend::TrustAd => query_ad(&self.config, name, rtype).await,
            }
        };
        match tokio::time::timeout(self.config.deadline(), work).await {
            Ok(rrset) => rrset,
            Err(_) => Rrset::failed(
                name,
                Security::Indeterminate,
                format!(
                    "{rtype} {}: no result within {:?}",
                    show(name),
                    self.config.deadline()
                ),
            ),
        }
    }
}

/// The record types whose in-process answers get the CNAME re-walk of
/// `Resolver::walk_cnames`. Not CNAME (the walk's own query), not TLSA
/// (`Resolver::tlsa` walks the host's chain itself).
const REWALKED: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
];

/// The longest CNAME chain an answer may come through (hickory's own
/// limit is 8 queries); a longer one is a failure, `Indeterminate`.
const MAX_CNAME_LINKS: usize = 8;

/// The target of the CNAME record at the name asked, if any.
fn cname_target(rrset: &Rrset) -> Option<Name> {
    rrset.records.iter().find_map(|r| match &r.data {
        RData::CNAME(c) => Some(c.0.clone()),
        _ => None,
    })
}

fn tlsa_lookup(rrset: &Rrset) -> TlsaLookup {
    match rrset.security {
        Security::Secure => {
            TlsaLookup::Secure(rrset.records.iter().filter_map(tlsa_from).collect())
        }
        Security::Insecure => TlsaLookup::Insecure,
        Security::Bogus | Security::Indeterminate => TlsaLookup::Failed,
    }
}

fn build_hickory(
    config: &ResolverConfig,
    anchors: Option<Arc<HickoryAnchors>>,
) -> Result<TokioResolver, DnsError> {
    let servers = config
        .nameservers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(
        HickoryConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    );
    {
        let opts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts.max(1);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.preserve_intermediates = true;
        opts.ndots = 0;
        opts.edns0 = true;
        opts.try_tcp_on_error = true;
        opts.validate = anchors.is_some();
    }
    if let Some(anchors) = anchors {
        builder = builder.with_trust_anchor(anchors);
    }
    builder.build().map_err(|e| DnsError::Config {
        reason: e.to_string(),
    })
}

/// Follows the CNAME chain from `name` through `answers`; returns the names
/// (the first is `name`) and the final owner.
fn chain_in(answers: &[Record], name: &Name) -> (Vec<Name>, Name) {
    let mut names = vec![name.clone()];
    let mut current = name.clone();
    for _ in 0..16 {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == current => Some(c.0.clone()),
            _ => None,
        });
        match next {
            Some(next) if !names.contains(&next) => {
                names.push(next.clone());
                current = next;
            }
            _ => break,
        }
    }
    (names, current)
}

async fn query_hickory(
    resolver: &TokioResolver,
    validating: bool,
    name: &Name,
    rtype: RecordType,
) -> Rrset {
    let label = |s: &str| format!("{rtype} {}: {s}", show(name));
    match resolver.lookup(name.clone(), rtype).await {
        Ok(lookup) => {
            let answers = lookup.answers();
            let (chain, last) = if rtype == RecordType::CNAME {
                (vec![name.clone()], name.clone())
            } else {
                chain_in(answers, name)
            };
            let records: Vec<Record> = answers
                .iter()
                .filter(|r| r.record_type() == rtype && r.name == last)
                .cloned()
                .collect();
            let mut security = Security::Secure;
            let used = answers.iter().filter(|r| {
                (r.record_type() == rtype && r.name == last)
                    || (r.record_type() == RecordType::CNAME && chain.contains(&r.name))
            });
            let mut any = false;
            for r in used {
                any = true;
                security = security.and(Security::from_proof(r.proof));
            }
            if !validating {
                security = Security::Insecure;
            } else if !any {
                security = Security::Indeterminate;
            }
            Rrset {
                records,
                security,
                nxdomain: false,
                names: chain.iter().map(show).collect(),
                detail: match security {
                    Security::Bogus => Some(label("bogus signatures")),
                    Security::Indeterminate => Some(label("no proof either way")),
                    _ => None,
                },
            }
        }
        Err(err) => {
            let (security, nxdomain, detail) = match &err {
                NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => {
                    let nxdomain = nr.response_code == ResponseCode::NXDomain;
                    let mut authorities = nr.authorities.iter().flat_map(|a| a.iter());
                    let secure = authorities.clone().any(|r| {
                        matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3)
                            && r.proof == Proof::Secure
                    });
                    // hickory accepts a denial whose authority records are
                    // all insecure, wherever they are from. Only a denial
                    // from the name's own zone (the name or an ancestor)
                    // can prove the name insecure (RFC 4035 §5.4): a spoofer
                    // adding the SOA of some unsigned zone must not switch
                    // DANE off or turn an MX lookup into "no MX"
                    // (RFC 7672 §2.1.1).
                    let foreign = authorities.find(|r| !r.name.zone_of(name));
                    match (validating, secure, foreign) {
                        (true, true, _) => (Security::Secure, nxdomain, None),
                        (true, false, Some(r)) => (
                            Security::Bogus,
                            false,
                            Some(label(&format!(
                                "unproven denial: its {} record belongs to {}, not to the name's zone",
                                r.record_type(),
                                show(&r.name)
                            ))),
                        ),
                        _ => (Security::Insecure, nxdomain, None),
                    }
                }
                NetError::Dns(HickoryDnsError::Nsec {
                    proof, response, ..
                }) => {
                    let security = Security::from_proof(*proof);
                    let nxdomain = response.metadata.response_code == ResponseCode::NXDomain;
                    let detail = security
                        .is_failure()
                        .then(|| label(&format!("denial of existence {security}")));
                    (security, nxdomain, detail)
                }
                NetError::Dns(HickoryDnsError::DnssecBogus) => (
                    Security::Bogus,
                    false,
                    Some(label("DNSSEC validation failed (bogus)")),
                ),
                NetError::Dns(HickoryDnsError::ResponseCode(code)) => (
                    Security::Indeterminate,
                    false,
                    Some(label(&format!("server answered {code}"))),
                ),
                NetError::Timeout => (Security::Indeterminate, false, Some(label("timed out"))),
                other => (
                    Security::Indeterminate,
                    false,
                    Some(label(&other.to_string())),
                ),
            };
            Rrset {
                records: Vec::new(),
                security,
                nxdomain,
                names: vec![show(name)],
                detail,
            }
        }
    }
}

fn is_network_failure(err: &NetError) -> bool {
    matches!(
        err,
        NetError::Timeout | NetError::Io(_) | NetError::NoConnections | NetError::Busy
    )
}

/// hickory #3932: a DS or DNSKEY fetch that timed out during validation
/// comes back as bogus. Asks them again without validation, for `name` and
/// each ancestor; `Some(why)` when one gets no answer.
async fn unreachable_keys(plain: &TokioResolver, name: &Name) -> Option<String> {
    let mut current = name.clone();
    loop {
        for rtype in [RecordType::DNSKEY, RecordType::DS] {
            if current.is_root() && rtype == RecordType::DS {
                continue;
            }
            if let Err(err) = plain.lookup(current.clone(), rtype).await {
                if is_network_failure(&err) {
                    return Some(format!("{rtype} {} got no answer ({err})", show(&current)));
                }
            }
        }
        if current.is_root() {
            return None;
        }
        current = current.base_name();
    }
}

// ---------------------------------------------------------------------------
// TrustAd: one query with RD and AD set, the AD bit of the answer read.

async fn query_ad(config: &ResolverConfig, name: &Name, rtype: RecordType) -> Rrset {
    let mut last = String::from("no nameserver answered");
    for _ in 0..config.attempts.max(1) {
        for server in &config.nameservers {
            match exchange(*server, name, rtype, config.timeout).await {
                Ok(message) => return rrset_from_ad(&message, name, rtype),
                Err(e) => last = format!("{server}: {e}"),
            }
        }
    }
    Rrset::failed(
        name,
        Security::Indeterminate,
        format!("{rtype} {}: {last}", show(name)),
    )
}

/// RFC 8914 extended DNS error codes that say the answer failed DNSSEC
/// validation: DNSSEC Bogus (6), Signature Expired (7), Signature Not Yet
/// Valid (8), DNSKEY Missing (9: a DS with no matching DNSKEY), RRSIGs
/// Missing (10), No Zone Key Bit Set (11), NSEC Missing (12).
const EDE_BOGUS: [u16; 7] = [6, 7, 8, 9, 10, 11, 12];

/// The extended DNS errors (RFC 8914, EDNS option 15) of an answer: info
/// code and extra text (made printable, at most 200 characters).
fn extended_errors(message: &Message) -> Vec<(u16, String)> {
    let Some(edns) = message.edns.as_ref() else {
        return Vec::new();
    };
    edns.options()
        .get_all(EdnsCode::Unknown(15))
        .into_iter()
        .filter_map(|option| match option {
            EdnsOption::Unknown(15, data) => {
                let code = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
                let text: String = String::from_utf8_lossy(data.get(2..).unwrap_or_default())
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(200)
                    .collect();
                Some((code, text))
            }
            _ => None,
        })
        .collect()
}

fn rrset_from_ad(message: &Message, name: &Name, rtype: RecordType) -> Rrset {
    let code = message.metadata.response_code;
    if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
        // A validating resolver answers SERVFAIL for a bogus answer and for
        // one it could not get: only an extended DNS error tells them apart.
        let errors = extended_errors(message);
        let bogus =
            code == ResponseCode::ServFail && errors.iter().any(|(ede, _)| EDE_BOGUS.contains(ede));
        let mut detail = format!("{rtype} {}: server answered {code}", show(name));
        for (ede, text) in &errors {
            let _ = write!(detail, ", extended error {ede}");
            if !text.is_empty() {
                let _ = write!(detail, " ({text})");
            }
        }
        let security = if bogus {
            Security::Bogus
        } else {
            Security::Indeterminate
        };
        return Rrset::failed(name, security, detail);
    }
    let (chain, last) = if rtype == RecordType::CNAME {
        (vec![name.clone()], name.clone())
    } else {
        chain_in(&message.answers, name)
    };
    let records: Vec<Record> = message
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && r.name == last)
        .cloned()
        .collect();
    Rrset {
        nxdomain: code == ResponseCode::NXDomain && records.is_empty(),
        records,
        security: if message.metadata.authentic_data {
            Security::Secure
        } else {
            Security::Insecure
        },
        names: chain.iter().map(show).collect(),
        detail: None,
    }
}

async fn exchange(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Message, String> {
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), rtype));
    query.metadata.recursion_desired = true;
    // RFC 6840 §5.7: AD in a query asks for the AD bit in the answer.
    query.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    query.edns = Some(edns);
    let id = query.metadata.id;
    let bytes = query.to_vec().map_err(|e| e.to_string())?;

    let udp = tokio::time::timeout(timeout, udp_exchange(server, &bytes, id))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    let message = check_reply(&udp, id, name, rtype)?;
    if !message.metadata.truncation {
        return Ok(message);
    }
    let tcp = tokio::time::timeout(timeout, tcp_exchange(server, &bytes))
        .await
        .map_err(|_| format!("no TCP answer within {timeout:?}"))??;
    check_reply(&tcp, id, name, rtype)
}

fn check_reply(bytes: &[u8], id: u16, name: &Name, rtype: RecordType) -> Result<Message, String> {
    let message = Message::from_vec(bytes).map_err(|e| format!("undecodable answer: {e}"))?;
    let matches = message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && message
            .queries
            .first()
            .is_some_and(|q| q.query_type() == rtype && q.name() == name);
    if matches {
        Ok(message)
    } else {
        Err("answer does not match the query".into())
    }
}

async fn udp_exchange(server: SocketAddr, query: &[u8], id: u16) -> Result<Vec<u8>, String> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        let reply = buf.get(..n).unwrap_or_default();
        // Skip stray datagrams (another id): wait for ours.
        if reply.get(..2) == Some(&id.to_be_bytes()[..]) {
            return Ok(reply.to_vec());
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_and_keeps_the_weaker() {
        use Security::*;
        assert_eq!(Secure.and(Secure), Secure);
        assert_eq!(Secure.and(Insecure), Insecure);
        assert_eq!(Insecure.and(Indeterminate), Indeterminate);
        assert_eq!(Indeterminate.and(Bogus), Bogus);
        assert_eq!(Bogus.and(Secure), Bogus);
        assert!(Bogus.is_failure() && Indeterminate.is_failure());
        assert!(!Secure.is_failure() && !Insecure.is_failure());
    }

    #[test]
    fn mx_sorted_null_and_none() {
        let h = |s: &str| Some(s.to_owned());
        assert_eq!(
            classify_mx(vec![(20, h("b")), (10, h("a")), (20, h("c"))]),
            MxKind::Hosts(vec![
                Mx {
                    preference: 10,
                    host: "a".into()
                },
                Mx {
                    preference: 20,
                    host: "b".into()
                },
                Mx {
                    preference: 20,
                    host: "c".into()
                },
            ])
        );
        assert_eq!(classify_mx(vec![(0, None)]), MxKind::NullMx);
        assert_eq!(classify_mx(vec![]), MxKind::NoMx);
        // The forbidden mix: the real host is kept.
        assert_eq!(
            classify_mx(vec![(0, None), (10, h("a"))]),
            MxKind::Hosts(vec![Mx {
                preference: 10,
                host: "a".into()
            }])
        );
    }

    #[test]
    fn mx_host_source() {
        let answer = |kind, security| MxAnswer {
            domain: "example.test".into(),
            kind,
            security,
            nxdomain: false,
            detail: None,
        };
        let hosts = MxKind::Hosts(vec![Mx {
            preference: 1,
            host: "mx".into(),
        }]);
        assert_eq!(
            answer(hosts.clone(), Security::Secure).host_source(),
            Some(HostSource::SecureMx)
        );
        assert_eq!(
            answer(hosts.clone(), Security::Insecure).host_source(),
            Some(HostSource::InsecureMx)
        );
        assert_eq!(
            answer(MxKind::NoMx, Security::Insecure).host_source(),
            Some(HostSource::NoMx)
        );
        assert_eq!(
            answer(MxKind::NoMx, Security::Insecure).hosts(),
            vec!["example.test".to_string()]
        );
        assert_eq!(answer(MxKind::NullMx, Security::Secure).host_source(), None);
        assert_eq!(answer(MxKind::Failed, Security::Bogus).host_source(), None);
        assert_eq!(
            answer(MxKind::Failed, Security::Indeterminate).hosts(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn srv_order_and_dot() {
        let t = |s: &str| Some(s.to_owned());
        let (targets, not_offered) = order_srv(vec![
            (20, 0, 993, t("c")),
            (10, 5, 143, t("b")),
            (10, 50, 143, t("a")),
        ]);
        assert!(!not_offered);
        let order: Vec<&str> = targets.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(order_srv(vec![(0, 0, 0, None)]), (vec![], true));
    }

    #[test]
    fn names_parse_and_show() {
        let n = parse_name("_25._tcp.MX.Example.TEST.").unwrap();
        assert_eq!(show(&n), "_25._tcp.mx.example.test");
        assert!(n.is_fqdn());
        assert!(matches!(parse_name(""), Err(DnsError::InvalidName { .. })));
        assert!(matches!(
            parse_name("a..b"),
            Err(DnsError::InvalidName { .. })
        ));
    }

    #[test]
    fn anchors_from_kdig_output() {
        let text = "example.test.\t300\tIN\tDNSKEY\t257 3 13 e0LR9e4BU2RAMISt9FL7OxzoEu6kRTtxUdB2hkERPv/0w64TQJF7gNhul1A24JEFZ2hmFzNe2sLL12+McCCLCw==\n";
        let anchors = TrustAnchors::from_dnskeys(text).unwrap();
        assert_eq!(anchors.len(), 1);
        assert!(matches!(
            TrustAnchors::from_dnskeys("; nothing\n"),
            Err(DnsError::TrustAnchors { .. })
        ));
        assert!(TrustAnchors::from_dnskeys("x. 300 IN DNSKEY 257 3 13 !!!\n").is_err());
        assert!(matches!(
            TrustAnchors::from_file("/nonexistent/anchors"),
            Err(DnsError::TrustAnchorFile { .. })
        ));
        assert_eq!(TrustAnchors::iana_root().len(), 2);
    }

    /// A resolver's answer, through the wire format and back.
    fn answer(code: ResponseCode, ad: bool, ede: Option<Vec<u8>>) -> (Message, Name) {
        let name = parse_name("mx.example.test").unwrap();
        let mut m = Message::query();
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.metadata.message_type = MessageType::Response;
        m.metadata.response_code = code;
        m.metadata.authentic_data = ad;
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        if let Some(data) = ede {
            edns.options_mut().insert(EdnsOption::Unknown(15, data));
        }
        m.edns = Some(edns);
        (Message::from_vec(&m.to_vec().unwrap()).unwrap(), name)
    }

    fn ede(code: u16, text: &str) -> Option<Vec<u8>> {
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.as_bytes());
        Some(data)
    }

    #[test]
    fn trust_ad_reads_ad_and_extended_errors() {
        let rrset = |(m, n): (Message, Name)| rrset_from_ad(&m, &n, RecordType::A);
        assert_eq!(
            rrset(answer(ResponseCode::NoError, true, None)).security,
            Security::Secure
        );
        assert_eq!(
            rrset(answer(ResponseCode::NoError, false, None)).security,
            Security::Insecure
        );
        let r = rrset(answer(ResponseCode::NXDomain, true, None));
        assert!(r.nxdomain && r.security == Security::Secure);
        // SERVFAIL alone: cannot tell bogus from unreachable.
        let r = rrset(answer(ResponseCode::ServFail, false, None));
        assert_eq!(r.security, Security::Indeterminate);
        // ... unless the resolver says why (unbound's words for a bad DS).
        let r = rrset(answer(
            ResponseCode::ServFail,
            false,
            ede(9, "DS hash mismatches key\nfor key bogus.example.test."),
        ));
        assert_eq!(r.security, Security::Bogus, "{r:?}");
        let detail = r.detail.unwrap();
        assert!(
            detail.contains("extended error 9 (DS hash mismatches key for key"),
            "{detail}"
        );
        for code in EDE_BOGUS {
            let r = rrset(answer(ResponseCode::ServFail, false, ede(code, "")));
            assert_eq!(r.security, Security::Bogus, "EDE {code}");
        }
        // Not a validation failure: No Reachable Authority, Network Error,
        // a truncated option, an AD bit on a SERVFAIL.
        for data in [
            ede(22, "no reachable authority"),
            ede(23, ""),
            Some(vec![0]),
        ] {
            let r = rrset(answer(ResponseCode::ServFail, true, data.clone()));
            assert_eq!(r.security, Security::Indeterminate, "{data:?}");
            assert!(r.records.is_empty());
        }
        // An EDE on REFUSED does not make it bogus either.
        let r = rrset(answer(ResponseCode::Refused, false, ede(6, "")));
        assert_eq!(r.security, Security::Indeterminate);
    }

    #[test]
    fn no_nameserver_is_an_error() {
        let err = Resolver::new(ResolverConfig::new(vec![], Validation::Off)).unwrap_err();
        assert_eq!(err, DnsError::NoNameservers);
    }

    #[test]
    fn txt_sts_lookup_failed_on_failure() {
        let answer = |records: Vec<Vec<u8>>, security| Answer {
            records,
            security,
            nxdomain: false,
            names: vec![],
            detail: None,
        };
        assert_eq!(
            answer(vec![], Security::Indeterminate).sts_lookup(),
            TxtLookup::Failed
        );
        assert_eq!(
            answer(vec![], Security::Bogus).sts_lookup(),
            TxtLookup::Failed
        );
        assert_eq!(
            answer(vec![], Security::Insecure).sts_lookup(),
            TxtLookup::NotFound
        );
        assert!(matches!(
            answer(vec![b"v=STSv1; id=20260101".to_vec()], Security::Insecure).sts_lookup(),
            TxtLookup::Found(_)
        ));
    }
}
