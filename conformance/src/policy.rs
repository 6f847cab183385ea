//! Policy vectors: data-driven checks of the policy layer
//! (`starttls::policy`), one text file per module in `cases/policy/`.
//!
//! Each vector names the RFC rule it checks, gives the inputs, and states
//! the outcome the library must compute. The runner computes the outcome
//! from the library (parsing, matching, deciding, with certificates generated
//! at run time where one is needed) and renders it as a short canonical
//! text; the vector passes only if that text equals its `expect` line
//! exactly. Nothing is assumed: a vector whose inputs the library treats
//! differently fails, and `conformance/tests/policy.rs` checks that every
//! expectation is load-bearing.
//!
//! # Format
//!
//! ```text
//! # comment
//! vector: enforce-refuses-stripped-starttls      a name, unique in its file
//! rule: RFC 8461 §5 — enforce: never deliver without STARTTLS
//! check: sts-decide                              what to run (table below)
//! policy: version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n
//! mx: mx.example.com
//! tls: no-starttls
//! expect: refuse starttls-not-supported
//! ```
//!
//! A vector runs from its `vector:` line to the next. `rule:` (citing an
//! RFC), `check:` and `expect:` are required; the other keys depend on the
//! check, may repeat where noted, and a key the check does not read is an
//! error. Values of `record`, `body`, `policy` and `text` keys take the
//! escapes `\r \n \t \0 \\ \xHH`.
//!
//! | check | keys | outcome |
//! |---|---|---|
//! | `sts-record` | `record`* (TXT strings joined) | `id ID` · `error Variant` |
//! | `sts-policy` | `body`, `limit`? | `mode=M max_age=N mx=P,P` · `error Variant` |
//! | `sts-fetch` | `status`, `content-type` (or `none`), `body` | as `sts-policy`, errors add the TLS-RPT result type |
//! | `mx-pattern` | `pattern`, `host` | `match` · `no-match` · `error Variant` |
//! | `sts-decide` | `policy` (or `none`), `mx` and `tls` (escapes allowed), `show`? (`reason`) | `deliver` · `deliver-but-report TYPE [CODE]` · `refuse TYPE [CODE]`; with `show: reason`, then `: ` and the failure's `Display` text |
//! | `sts-cache` | `cached` (`ID fetched=T max_age=N mode=M` or `none`), `failed-fetch`? (`ID at=T`), `txt` (`found ID` · `not-found` · `failed`), `now` | `use-cached` · `refresh ID` · `fetch ID` · `retry-later ID at=T` · `expired` · `no-policy`, then `in-force=yes\|no` |
//! | `tlsrpt-record` | `record`* | `rua URI,URI` · `error Variant` |
//! | `tlsrpt-report` | `domain`, `policy` (or `none`), `session`* (`MX TLS`) | `TYPE success=N failure=N [TYPE:N,…]`, read back from the JSON |
//! | `tlsa-parse` | `text` | `U S M LEN` · `error Variant` |
//! | `tlsa-usable` | `text` | `usable USAGE SELECTOR MATCHING` · `unusable Variant` |
//! | `dane-lookup` | `mx` (`secure` · `insecure` · `none`: where the host came from), `lookup` (`secure` · `insecure` · `failed`), `text`* | `authenticate usable=N superseded=N` · `tls-without-authentication unusable=N` · `not-applicable` · `do-not-connect` |
//! | `dane-auth` | `chain` (certificate names), `tlsa`* (`U S M CERT`), `names` | `match USAGE position=N\|none name=NAME\|-` · `error Variant` |
//! | `identity` | `refs`, `allow-cn`?, `dns`* `srv`* `uri`* `ip`* `cn`* | `match PRESENTED = REFERENCE` · `mismatch Rule,Rule` · `error Variant` (of the certificate check, or of the reference identifiers) |
//! | `memory` | `policy` (`default` · `strict` · `warn-only`), `session`* (`T cleartext` · `T tls KEY AUTH`), `configured`? | verdicts, `, `-separated; then `next=POLICY` |
//! | `pin` | `pin` (`spki\|certificate CERT for NAME`), `present` (CERT), `connect` (NAME) | `accept` · `error Variant` |
//! | `peer-key` | `host`*, `port` | each key's `Display`, `, `-separated, then `distinct=N` |
//!
//! `tls` values: `no-starttls`, `handshake-failed REASON`,
//! `cert host-mismatch|expired|not-trusted|other [REASON]`, `verified NAME`.
//! Certificates are generated once per run: `ca`, `ica` (an intermediate
//! under `ca`), `mx` (`mx.example.com`, issued by `ca`), `mx-ica` (the
//! same name, issued by `ica`), `mx-rekeyed` (same name, new key),
//! `mx-renewed` (same name and key, new certificate), `wild`
//! (`*.example.com`), `other` (`mx.other.test`), `expired`
//! (`mx.example.com`, expired in 2001), `self` (self-signed
//! `mx.example.com`), `stranger` (a CA no record names), `cn-only` (no
//! subjectAltName, CN `mx.example.com`). In `dane-auth`, `tlsa` data
//! `garbage` is a digest of nothing in the chain. Memory keys `k1`, `k2`,
//! … are fresh keys; `k1/renewed` is a new certificate for key `k1`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, SanType,
};
use starttls::policy::dane::{
    self, DaneDecision, HostSource, ReferenceIds, TlsaLookup, TlsaRecord, UsableTlsa,
};
use starttls::policy::identity::{
    IdentityError, MailService, ReferenceIdentifiers, TargetProvenance,
};
use starttls::policy::memory::{
    self, Authentication, Downgrade, Fingerprint, InMemoryTlsMemory, MemoryError, MemoryPolicy,
    PeerKey, Pin, PinKind, PinnedVerifier, SessionTls, Verdict,
};
use starttls::policy::mta_sts::{
    self, CacheAction, CachedPolicy, CertificateProblem, Decision, MxPattern, Policy, PolicyCache,
    PolicyId, StsRecord, TlsOutcome, TxtLookup,
};
use starttls::policy::tlsrpt::{ReportBuilder, ReportPolicy, TlsRptRecord};
use starttls::rustls;
use starttls::rustls::client::danger::ServerCertVerifier;
use starttls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use starttls::{TlsInfo, TlsPolicy};

/// One vector.
#[derive(Clone, Debug)]
pub struct Vector {
    /// File it came from.
    pub path: PathBuf,
    /// Line of its `vector:` key.
    pub line: usize,
    /// Its name.
    pub name: String,
    /// The RFC rule it checks.
    pub rule: String,
    /// What the runner does with it.
    pub check: String,
    /// The outcome the library must compute.
    pub expect: String,
    fields: Vec<(String, String)>,
}

impl Vector {
    /// The module the vector belongs to: its file's stem (`mta-sts`,
    /// `dane`, …).
    pub fn module(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The same vector expecting `expect` instead.
    pub fn expecting(&self, expect: &str) -> Vector {
        Vector {
            expect: expect.to_owned(),
            ..self.clone()
        }
    }
}

/// The checks the runner knows.
pub const CHECKS: &[&str] = &[
    "sts-record",
    "sts-policy",
    "sts-fetch",
    "mx-pattern",
    "sts-decide",
    "sts-cache",
    "tlsrpt-record",
    "tlsrpt-report",
    "tlsa-parse",
    "tlsa-usable",
    "dane-lookup",
    "dane-auth",
    "identity",
    "memory",
    "pin",
    "peer-key",
];

/// Reads every `*.vectors` file in `dir`, sorted by path. A missing
/// directory gives no vectors.
pub fn load(dir: &Path) -> Result<Vec<Vector>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "vectors") {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.extend(parse(&f, &text).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    Ok(out)
}

/// Parses one file of vectors.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Vector>, String> {
    let mut out: Vec<Vector> = Vec::new();
    let mut current: Option<Vector> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end();
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or(format!("line {n}: expected `key: value`"))?;
        let (k, v) = (k.trim(), v.trim());
        if k == "vector" {
            if let Some(done) = current.take() {
                out.push(finish(done)?);
            }
            if v.is_empty() {
                return Err(format!("line {n}: a vector needs a name"));
            }
            if out.iter().any(|o| o.name == v) {
                return Err(format!("line {n}: vector {v} is defined twice"));
            }
            current = Some(Vector {
                path: path.to_owned(),
                line: n,
                name: v.to_owned(),
                rule: String::new(),
                check: String::new(),
                expect: String::new(),
                fields: Vec::new(),
            });
            continue;
        }
        let vec = current
            .as_mut()
            .ok_or(format!("line {n}: `{k}:` before the first `vector:`"))?;
        match k {
            "rule" | "check" | "expect" => {
                let slot = match k {
                    "rule" => &mut vec.rule,
                    "check" => &mut vec.check,
                    _ => &mut vec.expect,
                };
                if !slot.is_empty() {
                    return Err(format!("line {n}: `{k}:` given twice"));
                }
                *slot = v.to_owned();
            }
            _ => vec.fields.push((k.to_owned(), v.to_owned())),
        }
    }
    if let Some(done) = current.take() {
        out.push(finish(done)?);
    }
    Ok(out)
}

fn finish(v: Vector) -> Result<Vector, String> {
    let at = format!("vector {} (line {})", v.name, v.line);
    if !v.rule.contains("RFC ") {
        return Err(format!("{at}: `rule:` must cite an RFC"));
    }
    if !CHECKS.contains(&v.check.as_str()) {
        return Err(format!("{at}: unknown check {:?}", v.check));
    }
    if v.expect.is_empty() {
        return Err(format!("{at}: `expect:` is required"));
    }
    Ok(v)
}

/// Runs a vector: `Ok(())` when the library computes the expected outcome,
/// else what it computed (or why the vector could not run).
pub fn check(v: &Vector) -> Result<(), String> {
    let got = outcome(v)?;
    if got == v.expect {
        Ok(())
    } else {
        Err(format!(
            "expected `{}`, the library gives `{got}`",
            v.expect
        ))
    }
}

/// The outcome the library computes for a vector's inputs.
pub fn outcome(v: &Vector) -> Result<String, String> {
    let f = Fields::new(&v.fields);
    let got = match v.check.as_str() {
        "sts-record" => sts_record(&f)?,
        "sts-policy" => sts_policy(&f)?,
        "sts-fetch" => sts_fetch(&f)?,
        "mx-pattern" => mx_pattern(&f)?,
        "sts-decide" => sts_decide(&f)?,
        "sts-cache" => sts_cache(&f)?,
        "tlsrpt-record" => tlsrpt_record(&f)?,
        "tlsrpt-report" => tlsrpt_report(&f)?,
        "tlsa-parse" => tlsa_parse(&f)?,
        "tlsa-usable" => tlsa_usable(&f)?,
        "dane-lookup" => dane_lookup(&f)?,
        "dane-auth" => dane_auth(&f)?,
        "identity" => identity(&f)?,
        "memory" => memory_check(&f)?,
        "pin" => pin(&f)?,
        "peer-key" => peer_key(&f)?,
        other => return Err(format!("unknown check {other:?}")),
    };
    f.all_used()?;
    Ok(got)
}

/// Per-module counts of passing and failing vectors, for the suite's
/// summary line.
pub fn counts(results: &[(Vector, Result<(), String>)]) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (v, r) in results {
        let e = out.entry(v.module()).or_default();
        if r.is_ok() {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    out
}

// ---------------------------------------------------------------- fields

struct Fields<'a> {
    fields: &'a [(String, String)],
    used: RefCell<Vec<bool>>,
}

impl<'a> Fields<'a> {
    fn new(fields: &'a [(String, String)]) -> Self {
        Fields {
            fields,
            used: RefCell::new(vec![false; fields.len()]),
        }
    }

    fn all(&self, key: &str) -> Vec<&'a str> {
        let mut used = self.used.borrow_mut();
        let mut out = Vec::new();
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if k == key {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
                out.push(v.as_str());
            }
        }
        out
    }

    fn opt(&self, key: &str) -> Result<Option<&'a str>, String> {
        let all = self.all(key);
        match all.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(format!("`{key}:` given more than once")),
        }
    }

    fn get(&self, key: &str) -> Result<&'a str, String> {
        self.opt(key)?.ok_or(format!("`{key}:` is required"))
    }

    fn bytes(&self, key: &str) -> Result<Vec<u8>, String> {
        crate::transcript::unescape(self.get(key)?)
    }

    fn num(&self, key: &str) -> Result<u64, String> {
        let v = self.get(key)?;
        v.parse()
            .map_err(|_| format!("`{key}: {v}` is not a number"))
    }

    fn all_used(&self) -> Result<(), String> {
        let used = self.used.borrow();
        for ((k, _), u) in self.fields.iter().zip(used.iter()) {
            if !u {
                return Err(format!("`{k}:` is not read by this check"));
            }
        }
        Ok(())
    }
}

/// The variant name of an error's `Debug` text: what outcomes show.
fn variant<E: std::fmt::Debug>(e: &E) -> String {
    let d = format!("{e:?}");
    d.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn error<E: std::fmt::Debug>(e: &E) -> String {
    format!("error {}", variant(e))
}

// ---------------------------------------------------------------- MTA-STS

fn sts_record(f: &Fields) -> Result<String, String> {
    let records = f
        .all("record")
        .into_iter()
        .map(crate::transcript::unescape)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match StsRecord::select(&records) {
        Ok(r) => format!("id {}", r.id()),
        Err(e) => error(&e),
    })
}

fn describe_policy(p: &Policy) -> String {
    let mx: Vec<String> = p.mx().iter().map(ToString::to_string).collect();
    format!(
        "mode={} max_age={} mx={}",
        p.mode(),
        p.max_age(),
        mx.join(",")
    )
}

fn sts_policy(f: &Fields) -> Result<String, String> {
    let body = f.bytes("body")?;
    let parsed = match f.opt("limit")? {
        Some(_) => Policy::parse_with_limit(&body, f.num("limit")? as usize),
        None => Policy::parse(&body),
    };
    Ok(match parsed {
        Ok(p) => describe_policy(&p),
        Err(e) => error(&e),
    })
}

fn sts_fetch(f: &Fields) -> Result<String, String> {
    let status = f.num("status")?;
    let status = u16::try_from(status).map_err(|_| format!("status {status}"))?;
    let content_type = match f.get("content-type")? {
        "none" => None,
        t => Some(t),
    };
    let body = f.bytes("body")?;
    Ok(
        match mta_sts::parse_response(
            status,
            content_type,
            &body,
            mta_sts::DEFAULT_MAX_POLICY_SIZE,
        ) {
            Ok(p) => describe_policy(&p),
            Err(e) => format!("{} {}", error(&e), e.result_type()),
        },
    )
}

fn mx_pattern(f: &Fields) -> Result<String, String> {
    let host = f.get("host")?;
    Ok(match MxPattern::parse(f.get("pattern")?) {
        Ok(p) if p.matches(host) => "match".to_owned(),
        Ok(_) => "no-match".to_owned(),
        Err(e) => error(&e),
    })
}

fn tls_outcome(spec: &str) -> Result<TlsOutcome, String> {
    let mut words = spec.splitn(3, ' ');
    let kind = words.next().unwrap_or_default();
    let a = words.next();
    let b = words.next().unwrap_or_default();
    Ok(match (kind, a) {
        ("no-starttls", None) => TlsOutcome::NoStartTls,
        ("handshake-failed", Some(reason)) => TlsOutcome::StartTlsFailed {
            reason: format!("{reason} {b}").trim().to_owned(),
        },
        ("cert", Some(problem)) => TlsOutcome::CertificateInvalid {
            problem: match problem {
                "host-mismatch" => CertificateProblem::HostMismatch,
                "expired" => CertificateProblem::Expired,
                "not-trusted" => CertificateProblem::NotTrusted,
                "other" => CertificateProblem::Other,
                other => return Err(format!("unknown certificate problem {other:?}")),
            },
            reason: b.to_owned(),
        },
        ("verified", Some(name)) => TlsOutcome::Verified {
            name: name.to_owned(),
        },
        _ => return Err(format!("unknown `tls: {spec}`")),
    })
}

fn policy_field(f: &Fields) -> Result<Option<Policy>, String> {
    match f.get("policy")? {
        "none" => Ok(None),
        text => {
            let body = crate::transcript::unescape(text)?;
            Policy::parse(&body)
                .map(Some)
                .map_err(|e| format!("the vector's policy does not parse: {e}"))
        }
    }
}

fn describe_decision(d: &Decision) -> String {
    let (word, failure) = match d {
        Decision::Deliver => return "deliver".to_owned(),
        Decision::DeliverButReport(f) => ("deliver-but-report", f),
        Decision::Refuse(f) => ("refuse", f),
    };
    match failure.reason_code() {
        // The code is the caller's (or the peer's) text: shown escaped, as
        // the `Display` of the failure shows it.
        Some(code) => format!("{word} {} {}", failure.result_type(), code.escape_debug()),
        None => format!("{word} {}", failure.result_type()),
    }
}

fn sts_decide(f: &Fields) -> Result<String, String> {
    let policy = policy_field(f)?;
    let tls = String::from_utf8(f.bytes("tls")?).map_err(|_| "`tls:` is not UTF-8".to_owned())?;
    let tls = tls_outcome(&tls)?;
    let mx = String::from_utf8(f.bytes("mx")?).map_err(|_| "`mx:` is not UTF-8".to_owned())?;
    let decision = mta_sts::decide(policy.as_ref(), &mx, &tls);
    let mut out = describe_decision(&decision);
    match f.opt("show")? {
        None => {}
        Some("reason") => {
            if let Some(failure) = decision.failure() {
                let _ = write!(out, ": {failure}");
            }
        }
        Some(other) => return Err(format!("unknown `show: {other}`")),
    }
    Ok(out)
}

/// `key=value` words after a leading value.
fn kv<'s>(words: impl Iterator<Item = &'s str>) -> Result<HashMap<&'s str, &'s str>, String> {
    words
        .map(|w| {
            w.split_once('=')
                .ok_or(format!("expected key=value, got {w:?}"))
        })
        .collect()
}

fn num_of(map: &HashMap<&str, &str>, key: &str) -> Result<u64, String> {
    map.get(key)
        .ok_or(format!("missing {key}="))?
        .parse()
        .map_err(|_| format!("{key}= is not a number"))
}

fn policy_id(s: &str) -> Result<PolicyId, String> {
    PolicyId::new(s).map_err(|e| format!("bad id {s:?}: {e}"))
}

fn sts_cache(f: &Fields) -> Result<String, String> {
    let entry = match f.get("cached")? {
        "none" => None,
        spec => {
            let mut words = spec.split_ascii_whitespace();
            let id = policy_id(words.next().unwrap_or_default())?;
            let map = kv(words)?;
            let body = format!(
                "version: STSv1\nmode: {}\nmx: mx.example.com\nmax_age: {}\n",
                map.get("mode").ok_or("missing mode=")?,
                num_of(&map, "max_age")?
            );
            let policy = Policy::parse(body.as_bytes()).map_err(|e| e.to_string())?;
            Some(CachedPolicy::new(policy, id, num_of(&map, "fetched")?))
        }
    };
    let failed = match f.opt("failed-fetch")? {
        None => None,
        Some(spec) => {
            let mut words = spec.split_ascii_whitespace();
            let id = policy_id(words.next().unwrap_or_default())?;
            Some((id, num_of(&kv(words)?, "at")?))
        }
    };
    let txt = match f.get("txt")?.split_once(' ') {
        Some(("found", id)) => TxtLookup::Found(policy_id(id)?),
        None if f.get("txt")? == "not-found" => TxtLookup::NotFound,
        None if f.get("txt")? == "failed" => TxtLookup::Failed,
        _ => return Err(format!("unknown `txt: {}`", f.get("txt")?)),
    };
    let now = f.num("now")?;
    let cache = PolicyCache::from_parts(entry, failed);
    let action = match cache.plan(&txt, now) {
        CacheAction::UseCached => "use-cached".to_owned(),
        CacheAction::Refresh { id } => format!("refresh {id}"),
        CacheAction::Fetch { id } => format!("fetch {id}"),
        CacheAction::RetryLater { id, retry_at } => format!("retry-later {id} at={retry_at}"),
        CacheAction::Expired => "expired".to_owned(),
        CacheAction::NoPolicy => "no-policy".to_owned(),
        other => format!("{other:?}"),
    };
    let in_force = if cache.policy(now).is_some() {
        "yes"
    } else {
        "no"
    };
    Ok(format!("{action} in-force={in_force}"))
}

// ---------------------------------------------------------------- TLS-RPT

fn tlsrpt_record(f: &Fields) -> Result<String, String> {
    let records = f
        .all("record")
        .into_iter()
        .map(crate::transcript::unescape)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match TlsRptRecord::select(&records) {
        Ok(r) => {
            let uris: Vec<&str> = r.uris().iter().map(|u| u.as_str()).collect();
            format!("rua {}", uris.join(","))
        }
        Err(e) => error(&e),
    })
}

fn tlsrpt_report(f: &Fields) -> Result<String, String> {
    let domain = f.get("domain")?;
    let policy = policy_field(f)?;
    let key = ReportPolicy::for_policy(domain, policy.as_ref()).map_err(|e| e.to_string())?;
    let mut report = ReportBuilder::new(
        "Conformance",
        "mailto:tlsrpt@conformance.test",
        "2024-05-01T00:00:00Z-conformance",
        "2024-05-01T00:00:00Z",
        "2024-05-01T23:59:59Z",
    )
    .map_err(|e| e.to_string())?;
    for session in f.all("session") {
        let (mx, tls) = session
            .split_once(' ')
            .ok_or(format!("`session: {session}` is `MX TLS`"))?;
        let decision = mta_sts::decide(policy.as_ref(), mx, &tls_outcome(tls)?);
        report.record(&key, &decision, None, None);
    }
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json()).map_err(|e| format!("invalid JSON: {e}"))?;
    let entries = json
        .get("policies")
        .and_then(|p| p.as_array())
        .ok_or("the report has no `policies` array")?;
    let mut out = Vec::new();
    for entry in entries {
        let kind = entry
            .pointer("/policy/policy-type")
            .and_then(|t| t.as_str())
            .unwrap_or("?");
        let ok = entry
            .pointer("/summary/total-successful-session-count")
            .and_then(|n| n.as_u64())
            .ok_or("an entry lacks total-successful-session-count")?;
        let failed = entry
            .pointer("/summary/total-failure-session-count")
            .and_then(|n| n.as_u64())
            .ok_or("an entry lacks total-failure-session-count")?;
        let mut line = format!("{kind} success={ok} failure={failed}");
        let details: Vec<String> = entry
            .get("failure-details")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .map(|x| {
                        format!(
                            "{}:{}",
                            x.get("result-type").and_then(|t| t.as_str()).unwrap_or("?"),
                            x.get("failed-session-count")
                                .and_then(|n| n.as_u64())
                                .unwrap_or(0)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !details.is_empty() {
            let _ = write!(line, " {}", details.join(","));
        }
        out.push(line);
    }
    Ok(out.join("; "))
}

// ---------------------------------------------------------------- DANE

fn tlsa(text: &str) -> Result<Result<TlsaRecord, String>, String> {
    let text = String::from_utf8(crate::transcript::unescape(text)?)
        .map_err(|_| "TLSA text is not UTF-8".to_owned())?;
    Ok(TlsaRecord::from_presentation(&text).map_err(|e| error(&e)))
}

fn tlsa_parse(f: &Fields) -> Result<String, String> {
    Ok(match tlsa(f.get("text")?)? {
        Ok(r) => format!(
            "{} {} {} {}",
            r.usage,
            r.selector,
            r.matching_type,
            r.data.len()
        ),
        Err(e) => e,
    })
}

fn tlsa_usable(f: &Fields) -> Result<String, String> {
    let record = tlsa(f.get("text")?)??;
    Ok(match record.usability() {
        Ok((u, s, m)) => format!("usable {u:?} {s:?} {m:?}"),
        Err(reason) => format!("unusable {}", variant(&reason)),
    })
}

fn dane_lookup(f: &Fields) -> Result<String, String> {
    let records = f
        .all("text")
        .into_iter()
        .map(|t| tlsa(t).and_then(|r| r))
        .collect::<Result<Vec<_>, _>>()?;
    let source = match f.get("mx")? {
        "secure" => HostSource::SecureMx,
        "insecure" => HostSource::InsecureMx,
        "none" => HostSource::NoMx,
        other => return Err(format!("unknown `mx: {other}`")),
    };
    let lookup = match f.get("lookup")? {
        "secure" => TlsaLookup::Secure(records),
        "insecure" if records.is_empty() => TlsaLookup::Insecure,
        "failed" if records.is_empty() => TlsaLookup::Failed,
        other => return Err(format!("`lookup: {other}` (records only with `secure`)")),
    };
    Ok(match DaneDecision::from_lookup(source, lookup) {
        DaneDecision::Authenticate(t) => format!(
            "authenticate usable={} superseded={}",
            t.records().count(),
            t.superseded().len()
        ),
        DaneDecision::TlsWithoutAuthentication { unusable } => {
            format!("tls-without-authentication unusable={}", unusable.len())
        }
        DaneDecision::NotApplicable => "not-applicable".to_owned(),
        DaneDecision::DoNotConnect => "do-not-connect".to_owned(),
    })
}

fn digest(matching: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    use sha2::Digest;
    Ok(match matching {
        0 => data.to_vec(),
        1 => sha2::Sha256::digest(data).to_vec(),
        2 => sha2::Sha512::digest(data).to_vec(),
        m => return Err(format!("matching type {m} in a dane-auth vector")),
    })
}

fn dane_auth(f: &Fields) -> Result<String, String> {
    let pki = pki()?;
    let chain = f
        .get("chain")?
        .split_ascii_whitespace()
        .map(|n| pki.cert(n).cloned())
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::new();
    for spec in f.all("tlsa") {
        let words: Vec<&str> = spec.split_ascii_whitespace().collect();
        let [u, s, m, what] = words.as_slice() else {
            return Err(format!("`tlsa: {spec}` is `U S M CERT`"));
        };
        let num = |w: &str| w.parse::<u8>().map_err(|_| format!("{w:?} is not 0-255"));
        let (u, s, m) = (num(u)?, num(s)?, num(m)?);
        let selected = if *what == "garbage" {
            b"nothing in the chain".to_vec()
        } else {
            let cert = pki.cert(what)?;
            match s {
                0 => cert.as_ref().to_vec(),
                1 => spki(cert)?,
                other => return Err(format!("selector {other} in a dane-auth vector")),
            }
        };
        records.push(TlsaRecord::new(u, s, m, digest(m, &selected)?));
    }
    let tlsa = UsableTlsa::new(records).map_err(|e| format!("no usable record: {e}"))?;
    let names =
        ReferenceIds::new(f.get("names")?.split_ascii_whitespace()).map_err(|e| e.to_string())?;
    let algorithms = provider().signature_verification_algorithms;
    Ok(
        match dane::dane_check(&tlsa, &chain, &names, UnixTime::now(), &algorithms) {
            Ok(m) => format!(
                "match {:?} position={} name={}",
                m.usage,
                m.chain_position
                    .map_or_else(|| "none".to_owned(), |p| p.to_string()),
                m.matched_name.as_deref().unwrap_or("-")
            ),
            Err(e) => error(&e),
        },
    )
}

fn spki(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert).map_err(|e| e.to_string())?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

// ---------------------------------------------------------------- identity

fn identity(f: &Fields) -> Result<String, String> {
    let spec = f.get("refs")?;
    let words: Vec<&str> = spec.split_ascii_whitespace().collect();
    let refs = match words.as_slice() {
        ["host", h] => ReferenceIdentifiers::configured_host(h),
        ["discovered", service, domain, target, provenance] => {
            let service = match *service {
                "submission" => MailService::Submission,
                "submissions" => MailService::Submissions,
                "imap" => MailService::Imap,
                "imaps" => MailService::Imaps,
                "pop3" => MailService::Pop3,
                "pop3s" => MailService::Pop3s,
                other => return Err(format!("unknown service {other:?}")),
            };
            let provenance = match *provenance {
                "dnssec" => TargetProvenance::DnssecValidated,
                "insecure" => TargetProvenance::Unverified,
                other => return Err(format!("unknown provenance {other:?}")),
            };
            ReferenceIdentifiers::discovered(service, domain, target, provenance)
        }
        ["none"] => Ok(ReferenceIdentifiers::empty()),
        _ => return Err(format!("unknown `refs: {spec}`")),
    };
    let allow_cn = f.opt("allow-cn")?;
    let cert = identity_cert(
        &f.all("dns"),
        &f.all("srv"),
        &f.all("uri"),
        &f.all("ip"),
        &f.all("cn"),
    )?;
    // A reference the library refuses is an outcome too.
    let mut refs = match refs {
        Ok(refs) => refs,
        Err(e) => return Ok(error(&e)),
    };
    if let Some(allow) = allow_cn {
        refs = refs.allow_cn_id(allow == "yes");
    }
    Ok(match refs.verify(&cert) {
        Ok(m) => format!("match {} = {}", m.presented, m.reference),
        Err(IdentityError::Mismatch { rejected, .. }) => {
            let rules: Vec<String> = rejected.iter().map(|r| variant(&r.rule)).collect();
            if rules.is_empty() {
                "mismatch none".to_owned()
            } else {
                format!("mismatch {}", rules.join(","))
            }
        }
        Err(e) => error(&e),
    })
}

/// A self-signed certificate with exactly these identifiers, made here.
fn identity_cert(
    dns: &[&str],
    srv: &[&str],
    uri: &[&str],
    ip: &[&str],
    cn: &[&str],
) -> Result<CertificateDer<'static>, String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for c in cn {
        params.distinguished_name.push(DnType::CommonName, *c);
    }
    // rcgen writes otherName values as UTF8String; SRVName is an IA5String
    // (RFC 4985 §2), and `*` is not a valid rcgen DNS name in every
    // position, so the subjectAltName extension is encoded here.
    let mut names = Vec::new();
    for d in dns {
        names.extend(tlv(0x82, d.as_bytes()));
    }
    for s in srv {
        // SRVName OID 1.3.6.1.5.5.7.8.7
        let mut other = tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07]);
        other.extend(tlv(0xa0, &tlv(0x16, s.as_bytes())));
        names.extend(tlv(0xa0, &other));
    }
    for u in uri {
        names.extend(tlv(0x86, u.as_bytes()));
    }
    for i in ip {
        let octets = match i.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => a.octets().to_vec(),
            Ok(IpAddr::V6(a)) => a.octets().to_vec(),
            Err(_) => return Err(format!("{i:?} is not an IP address")),
        };
        names.extend(tlv(0x87, &octets));
    }
    if !names.is_empty() {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[2, 5, 29, 17],
                tlv(0x30, &names),
            ));
    }
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(cert.der().clone())
}

/// DER TLV with a short or two-octet length.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(value);
    out
}

// ---------------------------------------------------------------- memory and pins

fn describe_downgrade(d: &Downgrade) -> &'static str {
    match d {
        Downgrade::Cleartext { .. } => "cleartext",
        Downgrade::KeyChanged { .. } => "key-changed",
        _ => "other",
    }
}

fn memory_check(f: &Fields) -> Result<String, String> {
    let policy = match f.get("policy")? {
        "default" => MemoryPolicy::default(),
        "strict" => MemoryPolicy::strict(),
        "warn-only" => MemoryPolicy::warn_only(),
        other => return Err(format!("unknown memory policy {other:?}")),
    };
    let mut store = InMemoryTlsMemory::new();
    let peer = PeerKey::new("mail.example.com", 587);
    let mut keys: HashMap<String, KeyPair> = HashMap::new();
    let mut out = Vec::new();
    for spec in f.all("session") {
        let words: Vec<&str> = spec.split_ascii_whitespace().collect();
        let (now, session) = match words.as_slice() {
            [t, "cleartext"] => (*t, SessionTls::Cleartext),
            [t, "tls", key, auth] => {
                let authentication = match *auth {
                    "pkix" => Authentication::Pkix,
                    "pinned" => Authentication::Pinned,
                    "none" => Authentication::None,
                    other => return Err(format!("unknown authentication {other:?}")),
                };
                let name = key.split('/').next().unwrap_or(key);
                if !keys.contains_key(name) {
                    keys.insert(
                        name.to_owned(),
                        KeyPair::generate().map_err(|e| e.to_string())?,
                    );
                }
                let pair = keys.get(name).ok_or("key")?;
                // A fresh certificate every time: only the key may count.
                let cert = CertificateParams::new(vec!["mail.example.com".to_owned()])
                    .and_then(|p| p.self_signed(pair))
                    .map_err(|e| e.to_string())?;
                let info = TlsInfo::unknown().with_peer_certificates(vec![cert.der().clone()]);
                let session =
                    SessionTls::from_tls_info(&info, authentication).map_err(|e| e.to_string())?;
                (*t, session)
            }
            _ => return Err(format!("unknown `session: {spec}`")),
        };
        let now: u64 = now.parse().map_err(|_| format!("bad time {now:?}"))?;
        out.push(
            match memory::check_session(&mut store, &peer, &session, &policy, now) {
                Ok(Verdict::FirstContact) => "first-contact".to_owned(),
                Ok(Verdict::Consistent) => "consistent".to_owned(),
                Ok(Verdict::Warning(d)) => format!("warning {}", describe_downgrade(&d)),
                Ok(Verdict::Accepted(d)) => format!("accepted {}", describe_downgrade(&d)),
                Ok(other) => format!("{other:?}"),
                Err(MemoryError::Refused(r)) => {
                    format!("refused {}", describe_downgrade(&r.downgrade))
                }
                Err(e) => format!("storage {e}"),
            },
        );
    }
    let mut text = out.join(", ");
    if let Some(configured) = f.opt("configured")? {
        let configured = match configured {
            "opportunistic" => TlsPolicy::Opportunistic,
            "starttls-required" => TlsPolicy::StartTlsRequired,
            "implicit" => TlsPolicy::Implicit,
            "cleartext" => TlsPolicy::Cleartext,
            other => return Err(format!("unknown policy {other:?}")),
        };
        let next = memory::required_policy(&store, &peer, configured, &policy)
            .map_err(|e| e.to_string())?;
        let _ = write!(text, "; next={next:?}");
    }
    Ok(text)
}

fn pin(f: &Fields) -> Result<String, String> {
    let pki = pki()?;
    let spec = f.get("pin")?;
    let words: Vec<&str> = spec.split_ascii_whitespace().collect();
    let [kind, cert, "for", name] = words.as_slice() else {
        return Err(format!("`pin: {spec}` is `spki|certificate CERT for NAME`"));
    };
    let cert = pki.cert(cert)?;
    let (kind, digest) = match *kind {
        "spki" => (
            PinKind::Spki,
            Fingerprint::spki_of(cert).map_err(|e| e.to_string())?,
        ),
        "certificate" => (PinKind::Certificate, Fingerprint::certificate_of(cert)),
        other => return Err(format!("unknown pin kind {other:?}")),
    };
    let verifier = PinnedVerifier::new(Pin::restore(kind, digest, name), &provider());
    let presented = pki.cert(f.get("present")?)?;
    let connect = ServerName::try_from(f.get("connect")?.to_owned()).map_err(|e| e.to_string())?;
    Ok(
        match verifier.verify_server_cert(presented, &[], &connect, &[], UnixTime::now()) {
            Ok(_) => "accept".to_owned(),
            Err(e) => match memory::PinError::from_rustls(&e) {
                Some(p) => error(p),
                None => format!("error {e}"),
            },
        },
    )
}

fn peer_key(f: &Fields) -> Result<String, String> {
    let port = u16::try_from(f.num("port")?).map_err(|_| "`port:` is 0-65535".to_owned())?;
    let keys: Vec<PeerKey> = f
        .all("host")
        .iter()
        .map(|h| PeerKey::new(h, port))
        .collect();
    if keys.is_empty() {
        return Err("`host:` is required".to_owned());
    }
    let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
    let distinct: std::collections::BTreeSet<&PeerKey> = keys.iter().collect();
    Ok(format!("{} distinct={}", shown.join(", "), distinct.len()))
}

// ---------------------------------------------------------------- certificates

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates vectors refer to by name, generated once per run.
struct Pki {
    certs: HashMap<&'static str, CertificateDer<'static>>,
}

impl Pki {
    fn cert(&self, name: &str) -> Result<&CertificateDer<'static>, String> {
        self.certs
            .get(name)
            .ok_or(format!("unknown certificate {name:?}"))
    }
}

fn pki() -> Result<&'static Pki, String> {
    static PKI: OnceLock<Result<Pki, String>> = OnceLock::new();
    PKI.get_or_init(|| make_pki().map_err(|e| format!("generating certificates: {e}")))
        .as_ref()
        .map_err(Clone::clone)
}

fn make_pki() -> Result<Pki, rcgen::Error> {
    fn ca_params(name: &str) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p
    }
    fn leaf_params(dns: &[&str], cn: Option<&str>) -> Result<CertificateParams, rcgen::Error> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        for d in dns {
            p.subject_alt_names
                .push(SanType::DnsName((*d).to_owned().try_into()?));
        }
        Ok(p)
    }
    let mut certs = HashMap::new();
    let ca_key = KeyPair::generate()?;
    let ca_p = ca_params("Conformance policy CA");
    let ca = ca_p.self_signed(&ca_key)?;
    certs.insert("ca", ca.der().clone());
    let ca_issuer = Issuer::new(ca_p, &ca_key);

    let ica_key = KeyPair::generate()?;
    let ica_p = ca_params("Conformance policy intermediate");
    let ica = ica_p.signed_by(&ica_key, &ca_issuer)?;
    certs.insert("ica", ica.der().clone());
    let ica_issuer = Issuer::new(ica_p, &ica_key);

    let stranger_key = KeyPair::generate()?;
    let stranger = ca_params("Someone else's CA").self_signed(&stranger_key)?;
    certs.insert("stranger", stranger.der().clone());

    let mx_key = KeyPair::generate()?;
    let mx = leaf_params(&["mx.example.com"], None)?.signed_by(&mx_key, &ca_issuer)?;
    certs.insert("mx", mx.der().clone());
    let renewed = leaf_params(&["mx.example.com"], None)?.signed_by(&mx_key, &ca_issuer)?;
    certs.insert("mx-renewed", renewed.der().clone());
    let rekey = KeyPair::generate()?;
    let rekeyed = leaf_params(&["mx.example.com"], None)?.signed_by(&rekey, &ca_issuer)?;
    certs.insert("mx-rekeyed", rekeyed.der().clone());
    let k = KeyPair::generate()?;
    let mx_ica = leaf_params(&["mx.example.com"], None)?.signed_by(&k, &ica_issuer)?;
    certs.insert("mx-ica", mx_ica.der().clone());
    let k = KeyPair::generate()?;
    let wild = leaf_params(&["*.example.com"], None)?.signed_by(&k, &ca_issuer)?;
    certs.insert("wild", wild.der().clone());
    let k = KeyPair::generate()?;
    let other = leaf_params(&["mx.other.test"], None)?.signed_by(&k, &ca_issuer)?;
    certs.insert("other", other.der().clone());
    let k = KeyPair::generate()?;
    let mut p = leaf_params(&["mx.example.com"], None)?;
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    certs.insert("expired", p.signed_by(&k, &ca_issuer)?.der().clone());
    let k = KeyPair::generate()?;
    let selfsigned = leaf_params(&["mx.example.com"], None)?.self_signed(&k)?;
    certs.insert("self", selfsigned.der().clone());
    let k = KeyPair::generate()?;
    let cn_only = leaf_params(&[], Some("mx.example.com"))?.signed_by(&k, &ca_issuer)?;
    certs.insert("cn-only", cn_only.der().clone());
    Ok(Pki { certs })
}
