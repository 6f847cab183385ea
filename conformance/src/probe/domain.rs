//! `starttls probe --domain DOMAIN`: a mail domain's TLS end to end
//! (docs/probe.md): its MX hosts with DNSSEC, every address probed as
//! `probe URL` does, DANE (which TLSA record matched, at which depth),
//! MTA-STS (record, policy, mode, every MX matched, the certificate against
//! the MX name), TLS-RPT, and with `--mail` the SRV-discovered submission,
//! IMAP and POP3 servers.
//!
//! The lookups and the decision are the library's (`starttls_io::dns`,
//! `starttls_io::mta_sts`, `starttls_io::destination`,
//! `starttls::policy`); this module runs them, probes, and reports.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use starttls::policy::dane::{dane_check, DaneMatch, ReferenceIds, TlsaLookup};
use starttls::policy::destination::{Authentication, HostPlan, Source};
use starttls::policy::identity::MailService;
use starttls::policy::mta_sts::Mode;
use starttls::rustls;
use starttls::rustls::pki_types::UnixTime;
use starttls::{Escaped, TlsPolicy};
use starttls_io::destination::{
    Destination, DestinationConfig, DestinationError, Destinations, Route,
};
use starttls_io::discovery::{self, Access};
use starttls_io::dns::{MxKind, Resolver, ResolverConfig, Security, TrustAnchors, Validation};
use starttls_io::mta_sts::{
    AddressSource, Connect, FetcherConfig, PolicyEvent, StsFetcher, StsPolicies,
};

use super::report::{Check, Report, Verdict};
use super::ProbeArgs;

/// A domain-level or host-level check of `--domain`.
pub struct DomainSpec {
    /// Stable id.
    pub id: &'static str,
    /// What it checks.
    pub title: &'static str,
    /// The RFC behind it.
    pub reference: &'static str,
    /// Informational checks never count toward the exit code.
    pub informational: bool,
}

const fn d(id: &'static str, title: &'static str, reference: &'static str) -> DomainSpec {
    DomainSpec {
        id,
        title,
        reference,
        informational: false,
    }
}

const fn info(id: &'static str, title: &'static str, reference: &'static str) -> DomainSpec {
    DomainSpec {
        id,
        title,
        reference,
        informational: true,
    }
}

/// The checks `--domain` adds to those of `probe URL`, in report order.
pub const DOMAIN_CATALOGUE: &[DomainSpec] = &[
    d(
        "dns.mx",
        "MX records found and validated",
        "RFC 5321 §5.1, RFC 7505, RFC 7672 §2.2.1",
    ),
    info(
        "dns.dnssec",
        "the MX RRset is DNSSEC-signed (DANE needs it)",
        "RFC 7672 §2.2.1, RFC 4033",
    ),
    d("mta-sts.record", "_mta-sts TXT record", "RFC 8461 §3.1"),
    d(
        "mta-sts.policy",
        "MTA-STS policy fetched over HTTPS and in force",
        "RFC 8461 §3.2, §3.3, §5",
    ),
    info("tlsrpt.record", "_smtp._tls TLS-RPT record", "RFC 8460 §3"),
    d("mx.addresses", "the MX host has addresses", "RFC 5321 §5.1"),
    d(
        "dane.tlsa",
        "TLSA records of the MX host (DNSSEC-validated)",
        "RFC 7672 §2.2, §3.1, RFC 6698",
    ),
    info(
        "dane.rollover",
        "a second TLSA record for key rollover",
        "RFC 7671 §8.1, RFC 7672 §8.1",
    ),
    d(
        "dane.match",
        "the certificate matches a TLSA record",
        "RFC 7672 §3, RFC 7671 §5",
    ),
    d(
        "mta-sts.mx",
        "the MX host matches the MTA-STS policy",
        "RFC 8461 §4.1",
    ),
    d(
        "mta-sts.cert",
        "the certificate is WebPKI-valid for the MX host name",
        "RFC 8461 §4.2",
    ),
    d(
        "srv.discovery",
        "SRV records for submission, IMAP and POP3",
        "RFC 6186, RFC 8314 §5.1",
    ),
];

fn domain_spec(id: &str) -> Option<&'static DomainSpec> {
    DOMAIN_CATALOGUE.iter().find(|s| s.id == id)
}

fn informational(id: &str) -> bool {
    domain_spec(id)
        .map(|s| s.informational)
        .unwrap_or_else(|| super::report::spec_of(id).is_some_and(|s| s.informational))
}

fn title(id: &str) -> &'static str {
    domain_spec(id).map(|s| s.title).unwrap_or_else(|| {
        super::report::spec_of(id)
            .map(|s| s.title)
            .unwrap_or_default()
    })
}

fn reference(id: &str) -> &'static str {
    domain_spec(id).map(|s| s.reference).unwrap_or_else(|| {
        super::report::spec_of(id)
            .map(|s| s.reference)
            .unwrap_or_default()
    })
}

/// One result with where it applies.
struct Scoped {
    mx: Option<String>,
    address: Option<String>,
    check: Check,
}

/// A row of the MX × stage matrix.
struct Row {
    service: String,
    host: String,
    address: String,
    plan: String,
    stages: Vec<(&'static str, Verdict, Option<Duration>)>,
}

/// Everything the run found.
struct Run {
    domain: String,
    json: bool,
    results: Vec<Scoped>,
    rows: Vec<Row>,
    connections: usize,
    /// `--max-connections` for the whole run (docs/probe.md), every MX
    /// host, address and SRV target together: a domain with many hosts ×
    /// addresses must not make the probe open connections without bound.
    cap: usize,
}

impl Run {
    fn emit(&self, event: Value) {
        if self.json {
            super::out(&format!("{event}\n"));
        }
    }

    fn set(
        &mut self,
        mx: Option<&str>,
        address: Option<&str>,
        id: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        evidence: Vec<String>,
    ) {
        let check = Check {
            id,
            verdict,
            detail: detail.into(),
            evidence,
        };
        self.emit(json!({
            "event": "check",
            "mx": mx,
            "address": address,
            "id": id,
            "title": title(id),
            "verdict": verdict.as_str(),
            "informational": informational(id),
            "detail": check.detail,
            "evidence": check.evidence,
            "reference": reference(id),
        }));
        self.results.push(Scoped {
            mx: mx.map(str::to_owned),
            address: address.map(str::to_owned),
            check,
        });
    }

    /// The connections left for the next probe, `None` when the cap is
    /// reached.
    fn budget(&self) -> Option<usize> {
        Some(self.cap.saturating_sub(self.connections)).filter(|n| *n > 0)
    }

    /// Records that `address` was not probed because the cap is reached.
    fn capped(&mut self, mx: &str, address: &str) {
        let detail = format!(
            "connection cap reached (--max-connections {}): not probed",
            self.cap
        );
        self.set(
            Some(mx),
            Some(address),
            "upgrade.works",
            Verdict::Inconclusive,
            detail,
            Vec::new(),
        );
    }

    fn count(&self, v: Verdict) -> usize {
        self.results.iter().filter(|s| s.check.verdict == v).count()
    }

    fn exit_code(&self, fail_on: Verdict) -> u8 {
        let counted = self.results.iter().filter(|s| !informational(s.check.id));
        let mut inconclusive = false;
        for s in counted {
            let v = s.check.verdict;
            if matches!(v, Verdict::Warn | Verdict::Fail) && v >= fail_on {
                return 1;
            }
            inconclusive |= v == Verdict::Inconclusive;
        }
        if inconclusive {
            2
        } else {
            0
        }
    }
}

/// Runs `probe --domain`.
pub(super) fn run(args: &ProbeArgs, domain: &str, fail_on: Verdict) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::usage(&format!("cannot start the runtime: {e}")),
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let setup = match Setup::new(args, &domain) {
        Ok(s) => s,
        Err(e) => return super::usage(&e),
    };
    let mut run = Run {
        domain: domain.clone(),
        json: args.json,
        results: Vec::new(),
        rows: Vec::new(),
        connections: 0,
        cap: args.max_connections.unwrap_or(if args.aggressive {
            DOMAIN_CAP_AGGRESSIVE
        } else {
            DOMAIN_CAP
        }),
    };
    if run.cap == 0 {
        return super::usage("--max-connections must be at least 1");
    }
    run.emit(json!({
        "event": "start",
        "schema": DOMAIN_SCHEMA,
        "tool": format!("starttls {}", env!("CARGO_PKG_VERSION")),
        "domain": domain,
        "validation": setup.validation_name,
        "fail_on": fail_on.as_str(),
    }));
    runtime.block_on(probe_domain(args, &setup, &mut run));
    let code = run.exit_code(fail_on);
    run.emit(json!({
        "event": "summary",
        "domain": run.domain,
        "connections": run.connections,
        "pass": run.count(Verdict::Pass),
        "warn": run.count(Verdict::Warn),
        "fail": run.count(Verdict::Fail),
        "inconclusive": run.count(Verdict::Inconclusive),
        "skipped": run.count(Verdict::Skipped),
        "exit_code": code,
    }));
    if !args.json {
        super::out(&table(&run, fail_on, code));
    }
    ExitCode::from(code)
}

/// The default `--max-connections` of a `--domain` run, all hosts together
/// (ten addresses probed as `probe URL` would; 12 connections each).
pub const DOMAIN_CAP: usize = 120;

/// The same with `--aggressive` (20 connections per address).
pub const DOMAIN_CAP_AGGRESSIVE: usize = 200;

/// The NDJSON stream's schema name (docs/probe.md).
pub const DOMAIN_SCHEMA: &str = "starttls-probe-domain/1";

/// The resolver, the fetcher and the roots, from the arguments.
struct Setup {
    destinations: Destinations,
    validation_name: &'static str,
    smtp_port: u16,
}

impl Setup {
    fn new(args: &ProbeArgs, domain: &str) -> Result<Setup, String> {
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(format!(
                "--domain {:?}: not a domain name (use A-labels for IDNs)",
                Escaped::new(domain).to_string()
            ));
        }
        let nameservers = if args.dns.is_empty() {
            system_nameservers()?
        } else {
            args.dns
                .iter()
                .map(|s| parse_nameserver(s))
                .collect::<Result<Vec<_>, _>>()?
        };
        let (validation, validation_name) = match (&args.trust_anchor, args.trust_ad) {
            (Some(_), true) => {
                return Err("--trust-anchor and --trust-ad exclude each other".into())
            }
            (Some(path), false) => (
                Validation::InProcess(
                    TrustAnchors::from_file(path)
                        .map_err(|e| format!("--trust-anchor {}: {e}", path.display()))?,
                ),
                "in-process (--trust-anchor)",
            ),
            (None, true) => (Validation::TrustAd, "AD bit of the resolver (--trust-ad)"),
            (None, false) => (
                Validation::InProcess(TrustAnchors::iana_root()),
                "in-process (IANA root)",
            ),
        };
        let timeout = super::seconds("--timeout", args.timeout)?;
        let dns = Resolver::new(
            ResolverConfig::new(nameservers, validation).with_timeout(
                timeout
                    .min(Duration::from_secs(30))
                    .max(Duration::from_millis(200)),
            ),
        )
        .map_err(|e| format!("DNS resolver: {e}"))?;
        let roots = Arc::new(super::load_roots(args.ca.as_deref())?);
        // The policy host is resolved with the same validating resolver;
        // `--mta-sts-port` only moves the port (tests on loopback).
        let resolver_for_sts =
            Resolver::new(dns.config().clone()).map_err(|e| format!("DNS resolver: {e}"))?;
        let resolver_for_sts = Arc::new(resolver_for_sts);
        let sts_port = args.mta_sts_port;
        let connect = match sts_port {
            None => Connect::Source(resolver_for_sts),
            Some(port) => Connect::from_fn(move |host: String, _: u16| {
                let r = Arc::clone(&resolver_for_sts);
                async move { AddressSource::addresses(&*r, &host, port).await }
            }),
        };
        let fetcher = StsFetcher::new(
            FetcherConfig::new(Arc::clone(&roots))
                .timeout(timeout)
                .connect(connect),
        )
        .map_err(|e| format!("MTA-STS fetcher: {e}"))?;
        let config = DestinationConfig::new(Arc::clone(&roots), TlsPolicy::Opportunistic);
        Ok(Setup {
            destinations: Destinations::new(dns, StsPolicies::new(fetcher), config),
            validation_name,
            smtp_port: args.smtp_port,
        })
    }
}

fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("--dns {s:?}: expected IP or IP:PORT ([::1]:53 for IPv6)"))
}

fn system_nameservers() -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("no --dns given and /etc/resolv.conf unreadable: {e}"))?;
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        return Err("no --dns given and no nameserver in /etc/resolv.conf".into());
    }
    Ok(servers)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn probe_domain(args: &ProbeArgs, setup: &Setup, run: &mut Run) {
    let domain = run.domain.clone();
    let started = Instant::now();
    let resolved = setup.destinations.resolve(&domain, now()).await;
    let dns_time = started.elapsed();
    let destination = match resolved {
        Ok(d) => d,
        Err(e) => {
            let verdict = match &e {
                DestinationError::MxLookupFailed {
                    security: Security::Bogus,
                    ..
                } => Verdict::Fail,
                DestinationError::NullMx => Verdict::Pass,
                DestinationError::NoSuchDomain => Verdict::Fail,
                _ => Verdict::Inconclusive,
            };
            run.set(None, None, "dns.mx", verdict, e.to_string(), Vec::new());
            if args.mail {
                mail(args, setup, run).await;
            }
            return;
        }
    };
    domain_checks(run, &destination, dns_time);
    for route in destination.routes() {
        host_checks(args, setup, run, &destination, route).await;
    }
    if args.mail {
        mail(args, setup, run).await;
    }
}

fn domain_checks(run: &mut Run, dest: &Destination, dns_time: Duration) {
    let mx = &dest.mx;
    let hosts: Vec<String> = match &mx.kind {
        MxKind::Hosts(h) => h
            .iter()
            .map(|m| format!("{} {}", m.preference, m.host))
            .collect(),
        _ => Vec::new(),
    };
    run.emit(json!({
        "event": "dns",
        "name": dest.domain,
        "type": "MX",
        "security": mx.security.to_string(),
        "records": hosts,
        "millis": dns_time.as_millis() as u64,
    }));
    let detail = match &mx.kind {
        MxKind::Hosts(h) => format!("{} MX host(s), {}", h.len(), mx.security),
        MxKind::NoMx => format!(
            "no MX records: the domain itself receives mail (RFC 5321 §5.1), {}",
            mx.security
        ),
        MxKind::NullMx => "null MX: the domain accepts no mail (RFC 7505)".into(),
        MxKind::Failed => format!("lookup failed ({})", mx.security),
    };
    run.set(
        None,
        None,
        "dns.mx",
        Verdict::Pass,
        detail,
        hosts.iter().map(|h| format!("-- MX {h}")).collect(),
    );
    let (v, detail) = match mx.security {
        Security::Secure => (
            Verdict::Pass,
            "the MX RRset validated with DNSSEC".to_string(),
        ),
        other => (
            Verdict::Warn,
            format!("the MX RRset is {other}: DANE cannot apply to its hosts (RFC 7672 §2.2.1)"),
        ),
    };
    run.set(None, None, "dns.dnssec", v, detail, Vec::new());

    // MTA-STS.
    let txt = &dest.mta_sts_txt;
    let shown: Vec<String> = txt
        .records
        .iter()
        .map(|r| format!("-- TXT {}", Escaped::new(r)))
        .collect();
    let has_sts_record = txt.records.iter().any(|r| r.starts_with(b"v=STSv1"));
    if txt.security.is_failure() {
        run.set(
            None,
            None,
            "mta-sts.record",
            Verdict::Inconclusive,
            format!("the _mta-sts TXT lookup failed ({})", txt.security),
            shown,
        );
    } else if !has_sts_record {
        run.set(
            None,
            None,
            "mta-sts.record",
            Verdict::Skipped,
            "no _mta-sts TXT record: the domain has no MTA-STS policy",
            shown,
        );
    } else {
        match starttls::policy::mta_sts::StsRecord::select(&txt.records) {
            Ok(r) => run.set(
                None,
                None,
                "mta-sts.record",
                Verdict::Pass,
                format!("id {}", r.id()),
                shown,
            ),
            Err(e) => run.set(
                None,
                None,
                "mta-sts.record",
                Verdict::Fail,
                e.to_string(),
                shown,
            ),
        }
    }
    let lookup = &dest.mta_sts;
    match (&lookup.event, &lookup.policy) {
        (PolicyEvent::Fetched(f), Some(policy)) => {
            let evidence: Vec<String> = std::iter::once(fetch_evidence(
                &f.host,
                f.peer,
                f.timings.total.as_millis(),
                f.status,
                f.content_type.as_deref(),
            ))
            .chain(policy.lines().map(|l| format!("S: {}", Escaped::new(l))))
            .collect();
            let (v, detail) = match policy.mode() {
                Mode::Enforce => (Verdict::Pass, format!("mode enforce, max_age {}", policy.max_age())),
                Mode::Testing => (Verdict::Warn, format!("mode testing, max_age {}: failures are only reported, senders deliver anyway (RFC 8461 §5)", policy.max_age())),
                Mode::None => (Verdict::Warn, "mode none: the domain withdrew its policy (RFC 8461 §8.3)".to_string()),
            };
            run.set(None, None, "mta-sts.policy", v, detail, evidence);
        }
        (PolicyEvent::FetchFailed { error, .. }, _) => {
            run.set(
                None,
                None,
                "mta-sts.policy",
                Verdict::Fail,
                format!(
                    "the policy could not be fetched: {error} (TLS-RPT result type {})",
                    error.result_type().as_str()
                ),
                Vec::new(),
            );
        }
        (PolicyEvent::NoPolicy, _) | (PolicyEvent::Expired, _) => {
            run.set(
                None,
                None,
                "mta-sts.policy",
                Verdict::Skipped,
                "no policy",
                Vec::new(),
            );
        }
        (_, Some(policy)) => {
            run.set(
                None,
                None,
                "mta-sts.policy",
                Verdict::Pass,
                format!("mode {} (cached)", policy.mode()),
                Vec::new(),
            );
        }
        (_, None) => run.set(
            None,
            None,
            "mta-sts.policy",
            Verdict::Skipped,
            "no policy",
            Vec::new(),
        ),
    }

    // TLS-RPT.
    let rpt_shown: Vec<String> = dest
        .tlsrpt_txt
        .records
        .iter()
        .map(|r| format!("-- TXT {}", Escaped::new(r)))
        .collect();
    match dest.tlsrpt() {
        Some(Ok(record)) => {
            let uris: Vec<&str> = record.uris().iter().map(|u| u.as_str()).collect();
            run.set(
                None,
                None,
                "tlsrpt.record",
                Verdict::Pass,
                format!("reports go to {}", Escaped::new(&uris.join(", "))),
                rpt_shown,
            )
        }
        Some(Err(e)) => run.set(
            None,
            None,
            "tlsrpt.record",
            Verdict::Fail,
            e.to_string(),
            rpt_shown,
        ),
        None if dest.tlsrpt_txt.security.is_failure() => run.set(
            None,
            None,
            "tlsrpt.record",
            Verdict::Inconclusive,
            format!(
                "the _smtp._tls TXT lookup failed ({})",
                dest.tlsrpt_txt.security
            ),
            rpt_shown,
        ),
        None => run.set(
            None,
            None,
            "tlsrpt.record",
            Verdict::Warn,
            "no _smtp._tls TXT record: failures are not reported to the domain (RFC 8460)",
            rpt_shown,
        ),
    }
}

/// The evidence line of a policy fetch. The `Content-Type` is the policy
/// host's text (only its media type was checked): escaped, as everything
/// shown from a peer (`starttls::Escaped`).
fn fetch_evidence(
    host: &str,
    peer: SocketAddr,
    millis: u128,
    status: u16,
    content_type: Option<&str>,
) -> String {
    format!(
        "-- GET https://{host}/.well-known/mta-sts.txt from {peer} in {millis} ms: {status} {}",
        content_type
            .map(|t| Escaped::new(t).to_string())
            .unwrap_or_else(|| "(no content type)".into())
    )
}

fn plan_text(plan: &HostPlan) -> String {
    match plan {
        HostPlan::Connect {
            tls,
            authentication,
            source,
            ..
        } => {
            let auth = match authentication {
                Authentication::Dane(_) => "DANE",
                Authentication::WebPki { report_only: false } => "WebPKI",
                Authentication::WebPki { report_only: true } => "WebPKI (report only)",
                Authentication::None => "unauthenticated",
                _ => "other",
            };
            let tls = if tls.requires_tls() {
                "TLS required"
            } else {
                "TLS opportunistic"
            };
            format!("{source}: {tls}, {auth}")
        }
        HostPlan::DoNotConnect { reason, source } => format!("{source}: do not connect ({reason})"),
        _ => "?".into(),
    }
}

async fn host_checks(
    args: &ProbeArgs,
    setup: &Setup,
    run: &mut Run,
    dest: &Destination,
    route: &Route,
) {
    let mx = route.host().to_owned();
    let plan = route.plan().clone();
    run.emit(json!({
        "event": "mx",
        "mx": mx,
        "preference": route.preference(),
        "addresses": route.addresses().records.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "address_security": route.addresses().security.to_string(),
        "tlsa_security": route.tlsa().map(|t| t.security.to_string()),
        "tlsa_base_domain": route.tlsa().map(|t| t.base_domain.clone()),
        "plan": plan_text(&plan),
    }));
    // Addresses.
    let addrs = route.addresses();
    let addr_list: Vec<IpAddr> = addrs.records.clone();
    if addrs.security.is_failure() {
        let v = if addrs.security == Security::Bogus {
            Verdict::Fail
        } else {
            Verdict::Inconclusive
        };
        run.set(
            Some(&mx),
            None,
            "mx.addresses",
            v,
            format!(
                "the address lookup failed ({}): {}",
                addrs.security,
                Escaped::new(addrs.detail.as_deref().unwrap_or_default())
            ),
            Vec::new(),
        );
    } else if addr_list.is_empty() {
        run.set(
            Some(&mx),
            None,
            "mx.addresses",
            Verdict::Fail,
            "no A or AAAA record",
            Vec::new(),
        );
    } else {
        run.set(
            Some(&mx),
            None,
            "mx.addresses",
            Verdict::Pass,
            format!("{} address(es), {}", addr_list.len(), addrs.security),
            addr_list.iter().map(|a| format!("-- {a}")).collect(),
        );
    }
    // TLSA.
    let mut dane_records = None;
    match route.tlsa() {
        None => run.set(Some(&mx), None, "dane.tlsa", Verdict::Skipped, "not looked up: the MX RRset is not DNSSEC-secure, so DANE cannot apply (RFC 7672 §2.2.1)", Vec::new()),
        Some(t) => {
            let mut evidence: Vec<String> = t.names.iter().skip(1).map(|n| format!("-- CNAME -> {n}")).collect();
            match &t.lookup {
                TlsaLookup::Secure(records) if records.is_empty() => run.set(Some(&mx), None, "dane.tlsa", Verdict::Skipped, format!("no TLSA records at _{}._tcp.{} (secure denial): DANE does not apply", setup_port(setup), t.base_domain), evidence),
                TlsaLookup::Secure(records) => {
                    evidence.extend(records.iter().map(|r| format!("-- TLSA {r}")));
                    let weak: Vec<String> = records
                        .iter()
                        .filter(|r| r.usability().is_err())
                        .map(|r| r.to_string())
                        .collect();
                    let usable = records.len() - weak.len();
                    if usable == 0 {
                        run.set(Some(&mx), None, "dane.tlsa", Verdict::Fail, format!("{} TLSA record(s), none usable for SMTP (only DANE-TA(2) and DANE-EE(3) are, RFC 7672 §3.1.3): senders require TLS but cannot authenticate", records.len()), evidence);
                    } else if !weak.is_empty() {
                        run.set(Some(&mx), None, "dane.tlsa", Verdict::Warn, format!("{usable} usable record(s); unusable for SMTP and ignored: {}", weak.join("; ")), evidence);
                    } else {
                        run.set(Some(&mx), None, "dane.tlsa", Verdict::Pass, format!("{usable} usable TLSA record(s) at _{}._tcp.{}", setup_port(setup), t.base_domain), evidence);
                    }
                    let rollover = if usable >= 2 {
                        (Verdict::Pass, format!("{usable} usable records: a rollover can publish the next key first (RFC 7671 §8.1)"))
                    } else {
                        (Verdict::Warn, "one usable record: publish the next key's record (or a DANE-TA(2) record) before changing the key (RFC 7671 §8.1)".to_string())
                    };
                    if usable > 0 {
                        run.set(Some(&mx), None, "dane.rollover", rollover.0, rollover.1, Vec::new());
                    }
                    dane_records = Some(t.clone());
                }
                TlsaLookup::Insecure => run.set(Some(&mx), None, "dane.tlsa", Verdict::Skipped, format!("the TLSA answer for {} is insecure: DANE does not apply", t.base_domain), evidence),
                TlsaLookup::Failed => {
                    let v = if t.security == Security::Bogus { Verdict::Fail } else { Verdict::Inconclusive };
                    run.set(Some(&mx), None, "dane.tlsa", v, format!("the TLSA lookup failed ({}): DANE senders skip this host (RFC 7672 §2.2){}", t.security, t.detail.as_deref().map(|d| format!(": {}", Escaped::new(d))).unwrap_or_default()), evidence);
                }
            }
        }
    }
    // MTA-STS MX matching.
    let sts = dest
        .mta_sts
        .policy
        .as_ref()
        .filter(|p| p.mode() != Mode::None);
    if let Some(policy) = sts {
        let matched = policy.matches_mx(&mx);
        let patterns: Vec<String> = policy.mx().iter().map(|p| p.to_string()).collect();
        let v = match (matched, policy.mode()) {
            (true, _) => Verdict::Pass,
            (false, Mode::Enforce) => Verdict::Fail,
            (false, _) => Verdict::Warn,
        };
        let detail = if matched {
            format!("{mx} matches the policy's mx patterns")
        } else {
            format!(
                "{mx} matches none of the policy's mx patterns: senders {} it (RFC 8461 §4.1)",
                if policy.mode() == Mode::Enforce {
                    "refuse"
                } else {
                    "report"
                }
            )
        };
        run.set(
            Some(&mx),
            None,
            "mta-sts.mx",
            v,
            detail,
            vec![format!("-- mx: {}", patterns.join(", "))],
        );
    }
    // Every address.
    for ip in addr_list {
        let address = ip.to_string();
        let Some(budget) = run.budget() else {
            run.capped(&mx, &address);
            continue;
        };
        let url = format!("smtp://{mx}:{}", setup.smtp_port);
        let resolve = vec![format!("{mx}:{}:{}", setup.smtp_port, bracket(ip))];
        let (report, elapsed) = probe_address(args, budget, url, mx.clone(), resolve, None).await;
        let mut report = match report {
            Ok(r) => r,
            Err(e) => {
                run.set(
                    Some(&mx),
                    Some(&address),
                    "upgrade.works",
                    Verdict::Inconclusive,
                    e,
                    Vec::new(),
                );
                continue;
            }
        };
        run.connections += report.connections;
        let dane_result = dane_records.as_ref().map(|t| {
            dane_match(
                t,
                &report,
                &mx,
                &dest.domain,
                dest.mx.security == Security::Secure,
            )
        });
        let stage = |r: &Report, id: &str| {
            r.checks
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.verdict)
                .unwrap_or(Verdict::Skipped)
        };
        let mut stages: Vec<(&'static str, Verdict, Option<Duration>)> = vec![
            ("starttls", stage(&report, "upgrade.offered"), None),
            (
                "tls",
                stage(&report, "upgrade.works"),
                report
                    .timings
                    .iter()
                    .find(|(n, _)| *n == "tls")
                    .map(|(_, d)| *d),
            ),
            (
                "pkix",
                worst(stage(&report, "cert.chain"), stage(&report, "cert.name")),
                None,
            ),
            (
                "injection",
                worst(
                    stage(&report, "injection.same-write"),
                    stage(&report, "injection.two-writes"),
                ),
                None,
            ),
        ];
        let (pkix_ok, pkix_detail) = adjust_cert_checks(&mut report, &plan, dane_result.as_ref());
        for c in std::mem::take(&mut report.checks) {
            run.set(
                Some(&mx),
                Some(&address),
                c.id,
                c.verdict,
                c.detail,
                c.evidence,
            );
        }
        if let Some(result) = dane_result {
            let (v, detail, ev) = result;
            stages.push(("dane", v, None));
            run.set(Some(&mx), Some(&address), "dane.match", v, detail, ev);
        }
        if let Some(policy) = sts {
            let pkix = worst(
                stage_of(run, &mx, &address, "cert.chain"),
                stage_of(run, &mx, &address, "cert.name"),
            );
            let raw = report.chain.is_empty();
            let (v, detail) = if raw {
                (
                    if policy.mode() == Mode::Enforce {
                        Verdict::Fail
                    } else {
                        Verdict::Warn
                    },
                    "no certificate was seen (no TLS)".to_string(),
                )
            } else if pkix == Verdict::Pass || pkix_ok {
                (Verdict::Pass, format!("valid for {mx}"))
            } else if policy.mode() == Mode::Enforce {
                (
                    Verdict::Fail,
                    format!("not WebPKI-valid for {mx}: {}", pkix_detail),
                )
            } else {
                (
                    Verdict::Warn,
                    format!(
                        "not WebPKI-valid for {mx} (mode testing: reported only): {}",
                        pkix_detail
                    ),
                )
            };
            stages.push(("mta-sts", v, None));
            run.set(
                Some(&mx),
                Some(&address),
                "mta-sts.cert",
                v,
                detail,
                Vec::new(),
            );
        }
        stages.push(("total", Verdict::Skipped, Some(elapsed)));
        run.emit(json!({
            "event": "host",
            "mx": mx,
            "address": address,
            "plan": plan_text(&plan),
            "stages": stages.iter().map(|(n, v, d)| json!({"stage": n, "verdict": v.as_str(), "millis": d.map(|d| d.as_millis() as u64)})).collect::<Vec<_>>(),
        }));
        run.rows.push(Row {
            service: "smtp".into(),
            host: mx.clone(),
            address,
            plan: plan_text(&plan),
            stages,
        });
    }
}

/// Probes one address as `probe URL` does (the blocking probe, on the
/// blocking pool), within what is left of the run's connection budget.
async fn probe_address(
    args: &ProbeArgs,
    budget: usize,
    url: String,
    server_name: String,
    resolve: Vec<String>,
    implicit_port: Option<u16>,
) -> (Result<Report, String>, Duration) {
    let mut one = args.clone();
    one.max_connections = Some(budget);
    one.domain = None;
    one.mail = false;
    one.url = Some(url);
    one.server_name = Some(server_name);
    one.resolve = resolve;
    if implicit_port.is_some() {
        one.implicit_port = implicit_port;
    }
    let started = Instant::now();
    let report = match tokio::task::spawn_blocking(move || super::probe_args(&one)).await {
        Ok(r) => r,
        Err(e) => Err(format!("the probe stopped: {e}")),
    };
    (report, started.elapsed())
}

/// TLSA records are published for port 25 whatever port the probe
/// connects to (`--smtp-port` is for tests and port-forwarded servers).
fn setup_port(_setup: &Setup) -> u16 {
    25
}

fn bracket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn worst(a: Verdict, b: Verdict) -> Verdict {
    a.max(b)
}

fn stage_of(run: &Run, mx: &str, address: &str, id: &str) -> Verdict {
    run.results
        .iter()
        .rev()
        .find(|s| {
            s.check.id == id && s.mx.as_deref() == Some(mx) && s.address.as_deref() == Some(address)
        })
        .map(|s| s.check.verdict)
        .unwrap_or(Verdict::Skipped)
}

/// DANE against the chain the probe saw: which record matched, at which
/// depth; or why none did.
fn dane_match(
    t: &starttls_io::dns::TlsaAnswer,
    report: &Report,
    mx: &str,
    domain: &str,
    mx_secure: bool,
) -> (Verdict, String, Vec<String>) {
    let TlsaLookup::Secure(records) = &t.lookup else {
        return (
            Verdict::Skipped,
            "no usable TLSA records".into(),
            Vec::new(),
        );
    };
    let Ok(usable) = starttls::policy::dane::UsableTlsa::new(records.clone()) else {
        return (
            Verdict::Fail,
            "no usable TLSA record: TLS without authentication at best".into(),
            Vec::new(),
        );
    };
    if report.chain.is_empty() {
        return (
            Verdict::Fail,
            "no certificate was seen (no TLS), so DANE could not authenticate the server".into(),
            Vec::new(),
        );
    }
    let mut names = vec![t.base_domain.as_str()];
    if t.base_domain != mx {
        names.push(mx);
    }
    if mx_secure {
        names.push(domain);
    }
    let ids = match ReferenceIds::new(names) {
        Ok(ids) => ids,
        Err(e) => return (Verdict::Fail, e.to_string(), Vec::new()),
    };
    let provider = rustls::crypto::ring::default_provider();
    let now = UnixTime::now();
    match dane_check(
        &usable,
        &report.chain,
        &ids,
        now,
        &provider.signature_verification_algorithms,
    ) {
        Ok(m) => (
            Verdict::Pass,
            describe_match(&m),
            vec![format!(
                "-- reference identifiers: {}",
                ids.as_slice().join(", ")
            )],
        ),
        Err(e) => (
            Verdict::Fail,
            format!("{e}"),
            usable.records().map(|r| format!("-- TLSA {r}")).collect(),
        ),
    }
}

fn describe_match(m: &DaneMatch) -> String {
    let depth = match m.chain_position {
        Some(0) => "the server certificate (depth 0)".to_string(),
        Some(n) => format!("the certificate at depth {n} of the chain"),
        None => "a trust anchor carried in the record".to_string(),
    };
    let name = m
        .matched_name
        .as_deref()
        .map(|n| format!("; name {n} matched"))
        .unwrap_or_default();
    format!("TLSA {} matched {depth}{name}", m.record)
}

/// Under DANE, PKIX does not matter (RFC 7672 §3): a PKIX failure must not
/// hide a DANE pass, so the certificate checks are shown but not counted.
/// Without DANE or MTA-STS (opportunistic TLS on port 25) they are warnings.
fn adjust_cert_checks(
    report: &mut Report,
    plan: &HostPlan,
    dane: Option<&(Verdict, String, Vec<String>)>,
) -> (bool, String) {
    let pkix_ok = report
        .checks
        .iter()
        .filter(|c| c.id == "cert.chain" || c.id == "cert.name")
        .all(|c| c.verdict == Verdict::Pass);
    let pkix_detail = report
        .checks
        .iter()
        .filter(|c| (c.id == "cert.chain" || c.id == "cert.name") && c.verdict != Verdict::Pass)
        .map(|c| c.detail.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let dane_passed = matches!(dane, Some((Verdict::Pass, _, _)));
    let source = plan.source();
    for c in report.checks.iter_mut() {
        if c.id != "cert.chain" && c.id != "cert.name" || c.verdict == Verdict::Pass {
            continue;
        }
        if dane_passed
            || matches!(
                plan,
                HostPlan::Connect {
                    authentication: Authentication::Dane(_),
                    ..
                }
            )
        {
            c.detail = format!(
                "{} — not needed: DANE authenticates this host (RFC 7672 §3)",
                c.detail
            );
            c.verdict = Verdict::Skipped;
        } else if source == Source::Local && c.verdict == Verdict::Fail {
            c.detail = format!("{} — opportunistic TLS on port 25 does not authenticate (RFC 7435); DANE or MTA-STS would", c.detail);
            c.verdict = Verdict::Warn;
        }
    }
    (pkix_ok, pkix_detail)
}

async fn mail(args: &ProbeArgs, setup: &Setup, run: &mut Run) {
    let domain = run.domain.clone();
    for access in [Access::Submission, Access::Imap, Access::Pop3] {
        let found = match discovery::discover(setup.destinations.dns(), &domain, access).await {
            Ok(f) => f,
            Err(e) => {
                run.set(
                    None,
                    None,
                    "srv.discovery",
                    Verdict::Inconclusive,
                    e.to_string(),
                    Vec::new(),
                );
                continue;
            }
        };
        let evidence: Vec<String> = found
            .lookups
            .iter()
            .map(|l| {
                let targets: Vec<String> = l
                    .answer
                    .targets
                    .iter()
                    .map(|t| format!("{} {} {} {}", t.priority, t.weight, t.port, t.target))
                    .collect();
                format!(
                    "-- {}._tcp.{domain} SRV {} ({})",
                    l.service,
                    if l.answer.not_offered {
                        ". (not offered)".to_string()
                    } else if targets.is_empty() {
                        "none".to_string()
                    } else {
                        targets.join(", ")
                    },
                    l.answer.security
                )
            })
            .collect();
        let name = match access {
            Access::Submission => "submission",
            Access::Imap => "IMAP",
            Access::Pop3 => "POP3",
            _ => "?",
        };
        if found.failed().next().is_some() {
            run.set(
                None,
                None,
                "srv.discovery",
                Verdict::Inconclusive,
                format!("{name}: an SRV lookup failed"),
                evidence,
            );
            continue;
        }
        if found.routes.is_empty() {
            let why = if found.lookups.iter().any(|l| l.answer.not_offered) {
                "decidedly not offered (SRV target \".\", RFC 2782)"
            } else {
                "no SRV records"
            };
            run.set(
                None,
                None,
                "srv.discovery",
                Verdict::Skipped,
                format!("{name}: {why}"),
                evidence,
            );
            continue;
        }
        let implicit = found.routes.iter().any(|r| r.tls == TlsPolicy::Implicit);
        let (v, detail) = if implicit {
            (
                Verdict::Pass,
                format!(
                    "{name}: {} server(s); implicit TLS offered (RFC 8314 §5.1)",
                    found.routes.len()
                ),
            )
        } else {
            (
                Verdict::Warn,
                format!(
                    "{name}: {} server(s), STARTTLS only: RFC 8314 §5.1 prefers implicit TLS",
                    found.routes.len()
                ),
            )
        };
        run.set(None, None, "srv.discovery", v, detail, evidence);
        for r in found.routes.clone() {
            let scheme = match r.service {
                MailService::Submissions => "smtps",
                MailService::Submission => "submission",
                MailService::Imaps => "imaps",
                MailService::Imap => "imap",
                MailService::Pop3s => "pop3s",
                MailService::Pop3 => "pop3",
                _ => continue,
            };
            let answer = match setup.destinations.dns().addresses(&r.target).await {
                Ok(a) => a,
                Err(e) => {
                    run.set(
                        Some(&r.target),
                        None,
                        "mx.addresses",
                        Verdict::Inconclusive,
                        e.to_string(),
                        Vec::new(),
                    );
                    continue;
                }
            };
            // With a secure SRV answer the target is a reference identifier;
            // otherwise the certificate must name the mail domain (RFC 7817 §3).
            let server_name = if r.security == Security::Secure {
                r.target.clone()
            } else {
                domain.clone()
            };
            for ip in answer.records.clone() {
                let address = ip.to_string();
                let Some(budget) = run.budget() else {
                    run.capped(&r.target, &address);
                    continue;
                };
                let url = format!("{scheme}://{}:{}", r.target, r.port);
                let mut resolve = vec![format!("{}:{}:{}", r.target, r.port, bracket(ip))];
                let mut implicit_port = None;
                if r.tls != TlsPolicy::Implicit {
                    // The implicit-TLS counterpart `probe URL` also tries:
                    // the one SRV names for this target, or the default port.
                    let default = match r.service {
                        MailService::Submission => 465,
                        MailService::Imap => 993,
                        _ => 995,
                    };
                    let port = found
                        .routes
                        .iter()
                        .find(|x| x.tls == TlsPolicy::Implicit && x.target == r.target)
                        .map_or(default, |x| x.port);
                    implicit_port = Some(port);
                    resolve.push(format!("{}:{}:{}", r.target, port, bracket(ip)));
                }
                let (report, elapsed) = probe_address(
                    args,
                    budget,
                    url,
                    server_name.clone(),
                    resolve,
                    implicit_port,
                )
                .await;
                let report = match report {
                    Ok(rep) => rep,
                    Err(e) => {
                        run.set(
                            Some(&r.target),
                            Some(&address),
                            "upgrade.works",
                            Verdict::Inconclusive,
                            e,
                            Vec::new(),
                        );
                        continue;
                    }
                };
                run.connections += report.connections;
                let stage = |id: &str| {
                    report
                        .checks
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.verdict)
                        .unwrap_or(Verdict::Skipped)
                };
                let stages = vec![
                    ("starttls", stage("upgrade.offered"), None),
                    (
                        "tls",
                        if r.tls == TlsPolicy::Implicit {
                            stage("implicit.reachable")
                        } else {
                            stage("upgrade.works")
                        },
                        report
                            .timings
                            .iter()
                            .find(|(n, _)| *n == "tls")
                            .map(|(_, d)| *d),
                    ),
                    ("pkix", worst(stage("cert.chain"), stage("cert.name")), None),
                    (
                        "injection",
                        worst(stage("injection.same-write"), stage("injection.two-writes")),
                        None,
                    ),
                    ("total", Verdict::Skipped, Some(elapsed)),
                ];
                let plan = format!(
                    "{}: {}",
                    r.service,
                    if r.tls == TlsPolicy::Implicit {
                        "implicit TLS"
                    } else {
                        "STARTTLS required"
                    }
                );
                for c in report.checks {
                    run.set(
                        Some(&r.target),
                        Some(&address),
                        c.id,
                        c.verdict,
                        c.detail,
                        c.evidence,
                    );
                }
                run.rows.push(Row {
                    service: scheme.into(),
                    host: r.target.clone(),
                    address,
                    plan,
                    stages,
                });
            }
        }
    }
}

fn table(run: &Run, fail_on: Verdict, code: u8) -> String {
    let mut out = format!(
        "starttls probe --domain {} ({} connection(s))\n",
        run.domain, run.connections
    );
    let mut scope = None;
    for s in &run.results {
        let this = (s.mx.clone(), s.address.clone());
        if scope.as_ref() != Some(&this) {
            let title = match (&s.mx, &s.address) {
                (None, _) => format!("domain {}", run.domain),
                (Some(mx), None) => format!("host {mx}"),
                (Some(mx), Some(a)) => format!("host {mx} at {a}"),
            };
            out.push_str(&format!("\n{title}\n"));
            scope = Some(this);
        }
        let c = &s.check;
        let mark = if informational(c.id) { " (info)" } else { "" };
        out.push_str(&format!(
            "{:<12} {:<24} {}{mark}\n",
            c.verdict.as_str(),
            c.id,
            c.detail
        ));
        if !matches!(c.verdict, Verdict::Pass | Verdict::Skipped) {
            for e in c.evidence.iter().take(20) {
                out.push_str(&format!("             | {e}\n"));
            }
        }
    }
    if !run.rows.is_empty() {
        out.push_str("\nhost × stage\n");
        for row in &run.rows {
            let stages: Vec<String> = row
                .stages
                .iter()
                .map(|(n, v, d)| match d {
                    Some(d) if *n == "total" => format!("{} ms", d.as_millis()),
                    Some(d) => format!("{n} {} ({} ms)", v.as_str(), d.as_millis()),
                    None => format!("{n} {}", v.as_str()),
                })
                .collect();
            out.push_str(&format!(
                "{:<10} {} {:<15} [{}] {}\n",
                row.service,
                row.host,
                row.address,
                row.plan,
                stages.join(", ")
            ));
        }
    }
    out.push_str(&format!(
        "\n{} pass, {} warn, {} fail, {} inconclusive, {} skipped; exit {code} (--fail-on {})\n",
        run.count(Verdict::Pass),
        run.count(Verdict::Warn),
        run.count(Verdict::Fail),
        run.count(Verdict::Inconclusive),
        run.count(Verdict::Skipped),
        fail_on.as_str()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy host's `Content-Type` passes the `text/plain` check with
    /// any parameters, and HTTP allows octets above 0x7f in a header value:
    /// a bidi override or a C1 CSI there must not reach the terminal
    /// (review #17; threat class 6, `docs/threat-model.md`).
    #[test]
    fn the_policy_content_type_is_escaped_in_the_evidence() {
        let line = fetch_evidence(
            "mta-sts.example.test",
            SocketAddr::from(([127, 0, 0, 1], 443)),
            5,
            200,
            Some("text/plain; charset=\u{202e}tfel\u{9b}31m"),
        );
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{9b}'),
            "{line:?}"
        );
        assert!(line.contains(r"\u{202e}"), "{line}");
    }
}
