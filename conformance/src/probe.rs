//! `starttls probe URL`: tells an administrator whether their own server has
//! the STARTTLS bugs the library prevents (docs/probe.md).
//!
//! A client written on raw sockets (`wire`), because it must do what the
//! library's client sessions refuse to do: pipeline bytes after STARTTLS,
//! send half a line, ask for a second upgrade. Replies are read with the
//! library's parsers (`dialect`); the certificate is judged with
//! `policy::identity` (`cert`).
//!
//! Polite by default: one connection at a time, a banner wait of 30 s
//! (postscreen), one command at a time except in the injection checks,
//! `--delay` between connections, a connection cap; never sends a message
//! or logs in; robustness probes only with `--aggressive`.
//!
//! Exit codes: 0 every check passed (or was skipped), 1 a finding at or
//! above `--fail-on`, 2 something was inconclusive, 3 usage or tool error.

mod cert;
mod dialect;
mod domain;
mod report;
mod wire;

use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};

use crate::connect::{parse_url, Proto, Target};
use cert::{Recorder, Seen};
use dialect::{offers_upgrade, starts_ci, Peer, Resp};
use report::{Report, Verdict};
use wire::{Stop, Wire};

/// Arguments of `starttls probe`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// `smtp://`, `submission://`, `smtps://`, `imap://`, `imaps://`, `pop3://` or `pop3s://` URL (host and optional port).
    #[arg(required_unless_present = "domain", conflicts_with = "domain")]
    pub url: Option<String>,
    /// Probe a mail domain end to end instead of one URL: MX with DNSSEC, every MX address, DANE, MTA-STS, TLS-RPT (NDJSON events with --json).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// With --domain: DNS server(s) to ask, IP or IP:PORT (default: /etc/resolv.conf's); DNSSEC is validated in-process.
    #[arg(long, value_name = "ADDR", requires = "domain")]
    pub dns: Vec<String>,
    /// With --domain: DNSKEY records (presentation format) to trust instead of the IANA root keys.
    #[arg(long, value_name = "FILE", requires = "domain")]
    pub trust_anchor: Option<PathBuf>,
    /// With --domain: trust the AD bit of a local validating resolver instead of validating in-process.
    #[arg(long, requires = "domain")]
    pub trust_ad: bool,
    /// With --domain: the port to connect to on every MX host (default 25).
    #[arg(long, default_value_t = 25, value_name = "PORT", requires = "domain")]
    pub smtp_port: u16,
    /// With --domain: the port of the MTA-STS policy host (default 443).
    #[arg(long, value_name = "PORT", requires = "domain")]
    pub mta_sts_port: Option<u16>,
    /// With --domain: also probe the submission, IMAP and POP3 servers found by SRV records (RFC 6186, RFC 8314 §5.1).
    #[arg(long, requires = "domain")]
    pub mail: bool,
    /// Name the certificate must match (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// CA certificate(s) to trust, PEM (default: /etc/ssl/certs/ca-certificates.crt if present).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Connect to ADDR for HOST:PORT, as curl's --resolve (repeatable).
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,
    /// Port of the implicit-TLS counterpart (default 465, 993 or 995).
    #[arg(long, value_name = "PORT")]
    pub implicit_port: Option<u16>,
    /// Seconds to wait for the greeting (postscreen delays it; at least 30 is polite).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub banner_wait: f64,
    /// Seconds to wait for each other reply.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Seconds to wait between connections.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub delay: f64,
    /// Most connections to open in total (default 12; 20 with --aggressive, whose probes take two each; with --domain, for all hosts together: default 120, 200 with --aggressive).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Warn when the certificate expires within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub expiry_warn: i64,
    /// Exit 1 on a finding at or above this level: `warn` or `fail`.
    #[arg(long, default_value = "fail", value_name = "LEVEL")]
    pub fail_on: String,
    /// Print the versioned JSON document (and nothing else) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also run the robustness probes (long lines, NUL, huge literals).
    #[arg(long)]
    pub aggressive: bool,
}

/// Runs the probe.
pub fn run(args: ProbeArgs) -> ExitCode {
    let fail_on = match args.fail_on.to_ascii_lowercase().as_str() {
        "warn" => Verdict::Warn,
        "fail" => Verdict::Fail,
        other => return usage(&format!("--fail-on {other:?}: use warn or fail")),
    };
    if let Some(domain) = args.domain.clone() {
        return domain::run(&args, &domain, fail_on);
    }
    let report = match probe_args(&args) {
        Ok(r) => r,
        Err(e) => return usage(&e),
    };
    if args.json {
        match serde_json::to_string_pretty(&report.json(fail_on)) {
            Ok(s) => out(&format!("{s}\n")),
            Err(e) => {
                eprintln!("starttls probe: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        out(&report.table(fail_on));
    }
    ExitCode::from(report.exit_code(fail_on))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}

/// Probes the URL of `args` (blocking).
pub(crate) fn probe_args(args: &ProbeArgs) -> Result<Report, String> {
    Ok(probe(Ctx::new(args)?))
}

/// The trusted roots: `--ca FILE`, or the system's bundle if present.
pub(crate) fn load_roots(ca: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let path = ca.map(PathBuf::from).or_else(|| {
        let system = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        system.exists().then_some(system)
    });
    if let Some(path) = &path {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--ca {}: {e}", path.display()))?;
        if certs.is_empty() && ca.is_some() {
            return Err(format!("--ca {}: no certificate found", path.display()));
        }
        let (_, bad) = roots.add_parsable_certificates(certs);
        if bad > 0 && ca.is_some() && roots.is_empty() {
            return Err(format!("--ca {}: no usable CA certificate", path.display()));
        }
    }
    Ok(roots)
}

fn usage(e: &str) -> ExitCode {
    eprintln!("starttls probe: {e}");
    ExitCode::from(3)
}

/// Everything a probe run needs.
struct Ctx {
    target: Target,
    addr: SocketAddr,
    implicit_addr: Option<SocketAddr>,
    roots: rustls::RootCertStore,
    name: String,
    server_name: ServerName<'static>,
    banner: Duration,
    wait: Duration,
    delay: Duration,
    cap: usize,
    used: usize,
    expiry_warn: i64,
    aggressive: bool,
    marker: String,
    url: String,
    /// Set by [`injection`] when the injected bytes reached the server only
    /// after it had switched to TLS (it read them as TLS and hung up), so
    /// the attempt said nothing about its cleartext buffer.
    injected_late: bool,
}

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    if s.is_finite() && (0.0..86_400.0).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!("{what} {s}: give seconds between 0 and 86400"))
    }
}

impl Ctx {
    fn new(args: &ProbeArgs) -> Result<Ctx, String> {
        let url = args.url.clone().unwrap_or_default();
        let target = parse_url(&url).map_err(|e| format!("{url}: {e}"))?;
        if target.user.is_some() {
            return Err(
                "the probe never logs in: leave the user and password out of the URL".into(),
            );
        }
        let resolve = |host: &str, port: u16| -> Result<SocketAddr, String> {
            for r in &args.resolve {
                let mut parts = r.splitn(3, ':');
                let (h, p, a) = (parts.next(), parts.next(), parts.next());
                let (Some(h), Some(p), Some(a)) = (h, p, a) else {
                    return Err(format!("--resolve {r:?}: expected HOST:PORT:ADDR"));
                };
                let p: u16 = p
                    .parse()
                    .map_err(|_| format!("--resolve {r:?}: invalid port"))?;
                if h.eq_ignore_ascii_case(host) && p == port {
                    let a = a.trim_start_matches('[').trim_end_matches(']');
                    let ip: std::net::IpAddr = a
                        .parse()
                        .map_err(|_| format!("--resolve {r:?}: invalid address"))?;
                    return Ok(SocketAddr::new(ip, port));
                }
            }
            (host, port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} has no address"))
        };
        let addr = resolve(&target.host, target.port)?;
        let implicit_addr = if target.implicit || target.scheme == "smtp" {
            None
        } else {
            let port = args.implicit_port.unwrap_or(match target.proto {
                Proto::Smtp => 465,
                Proto::Imap => 993,
                Proto::Pop3 => 995,
            });
            Some(resolve(&target.host, port)?)
        };
        let roots = load_roots(args.ca.as_deref())?;
        let name = args
            .server_name
            .clone()
            .unwrap_or_else(|| target.host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| format!("--server-name {name:?}: {e}"))?;
        let cap = args
            .max_connections
            .unwrap_or(if args.aggressive { 20 } else { 12 });
        if cap == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        Ok(Ctx {
            addr,
            implicit_addr,
            roots,
            name,
            server_name,
            banner: seconds("--banner-wait", args.banner_wait)?,
            wait: seconds("--timeout", args.timeout)?,
            delay: seconds("--delay", args.delay)?,
            cap,
            used: 0,
            expiry_warn: args.expiry_warn,
            aggressive: args.aggressive,
            marker: marker(),
            url,
            injected_late: false,
            target,
        })
    }

    fn proto(&self) -> Proto {
        self.target.proto
    }

    /// A TLS configuration with a fresh recording verifier.
    fn tls(&self) -> (Arc<rustls::ClientConfig>, Arc<std::sync::Mutex<Seen>>) {
        let recorder = Recorder::new(&self.roots, &self.name);
        let seen = Arc::clone(&recorder.seen);
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(recorder))
            .with_no_client_auth();
        (Arc::new(config), seen)
    }

    /// Opens a connection (honouring the cap and the delay) and reads the
    /// greeting; implicit TLS first when asked.
    fn open(&mut self, addr: SocketAddr, implicit: bool) -> Result<Opened, Trouble> {
        if self.used >= self.cap {
            return Err(Trouble::inconclusive(
                format!("connection cap reached (--max-connections {})", self.cap),
                Vec::new(),
            ));
        }
        if self.used > 0 && !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.used += 1;
        let w = Wire::connect(addr, self.wait.max(Duration::from_secs(1)))
            .map_err(|e| Trouble::inconclusive(format!("cannot connect: {e}"), Vec::new()))?;
        let mut peer = Peer::new(w, self.proto());
        let mut tls = None;
        if implicit {
            let (config, seen) = self.tls();
            match peer.w.start_tls(config, self.server_name.clone()) {
                Ok(n) => tls = Some((n, seen)),
                Err(e) => {
                    return Err(Trouble {
                        verdict: Verdict::Fail,
                        detail: format!("implicit TLS handshake failed: {e}"),
                        evidence: peer.w.since(0),
                        handshake: true,
                    })
                }
            }
        }
        match peer.greeting(self.banner) {
            Ok(g) if g.ok => Ok(Opened {
                peer,
                greeting: g,
                tls,
            }),
            Ok(g) => Err(Trouble::inconclusive(
                format!("the server turned the connection away: {}", g.shown()),
                peer.w.since(0),
            )),
            Err(stop) => Err(Trouble::inconclusive(
                format!("no greeting: {stop}"),
                peer.w.since(0),
            )),
        }
    }
}

/// A connection with its greeting read.
struct Opened {
    peer: Peer,
    #[allow(dead_code)]
    greeting: Resp,
    tls: Option<(wire::Negotiated, Arc<std::sync::Mutex<Seen>>)>,
}

/// Why a connection could not be used.
struct Trouble {
    verdict: Verdict,
    detail: String,
    evidence: Vec<String>,
    handshake: bool,
}

impl Trouble {
    fn inconclusive(detail: String, evidence: Vec<String>) -> Trouble {
        Trouble {
            verdict: Verdict::Inconclusive,
            detail,
            evidence,
            handshake: false,
        }
    }
}

/// An 8-hex-digit marker that differs on every run.
fn marker() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// Whether `bytes` start like a TLS record (alert or handshake, TLS 1.x).
fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// An exchange that stopped: inconclusive, with what was seen.
fn stopped(r: &mut Report, id: &'static str, what: &str, stop: &Stop, w: &Wire, mark: usize) {
    r.set(
        id,
        Verdict::Inconclusive,
        format!("{what}: {stop}"),
        w.since(mark),
    );
}

fn probe(mut ctx: Ctx) -> Report {
    let mut r = Report {
        url: ctx.url.clone(),
        proto: ctx.proto(),
        address: ctx.addr.to_string(),
        server_name: ctx.name.clone(),
        checks: Vec::new(),
        connections: 0,
        marker: ctx.marker.clone(),
        chain: Vec::new(),
        timings: Vec::new(),
    };
    if ctx.target.implicit {
        implicit_main(&mut ctx, &mut r);
    } else if let Some(upgraded) = starttls_main(&mut ctx, &mut r) {
        credentials(&mut ctx, &mut r);
        if upgraded {
            if ctx.proto() == Proto::Smtp {
                envelope(&mut ctx, &mut r);
            }
            let mut styles = vec![Style::SameWrite, Style::TwoWrites, Style::Partial];
            if ctx.proto() == Proto::Imap {
                styles.push(Style::Literal);
            }
            for s in styles {
                // Two writes race the server's switch to TLS: when the
                // second write arrived after it, try again (a vulnerable
                // server must not pass on a scheduling accident).
                let tries = if s == Style::TwoWrites {
                    TWO_WRITES_TRIES
                } else {
                    1
                };
                for attempt in 1..=tries {
                    ctx.injected_late = false;
                    injection(&mut ctx, &mut r, s);
                    if !ctx.injected_late {
                        break;
                    }
                    if attempt > 1 {
                        if let Some(c) = r.checks.iter_mut().find(|c| c.id == s.id()) {
                            c.detail.push_str(&format!(
                                " (in each of {attempt} attempts the second write reached the server after it had switched to TLS)"
                            ));
                        }
                    }
                }
            }
        }
        implicit_counterpart(&mut ctx, &mut r);
    }
    if r.has("robust.long-line") {
        // Unreachable: already recorded.
    } else if ctx.aggressive {
        robustness(&mut ctx, &mut r);
    } else {
        for id in ["robust.long-line", "robust.nul", "robust.huge-literal"] {
            r.set(id, Verdict::Skipped, "only with --aggressive", Vec::new());
        }
    }
    r.rest(Verdict::Skipped, "not run", &[]);
    r.connections = ctx.used;
    r.finish();
    r
}

/// Records the certificate and TLS checks from a handshake.
fn tls_checks(
    ctx: &Ctx,
    r: &mut Report,
    negotiated: &wire::Negotiated,
    seen: &std::sync::Mutex<Seen>,
    evidence: &[String],
) {
    r.set(
        "tls.version",
        Verdict::Pass,
        format!("{} {}", negotiated.version, negotiated.cipher),
        evidence.to_vec(),
    );
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    if r.chain.is_empty() {
        r.chain = seen.chain_der.clone();
    }
    let subject = seen.subject.clone().unwrap_or_else(|| "?".into());
    let about = vec![format!(
        "-- leaf subject {subject}; {} certificate(s) presented; expected name {}",
        seen.presented, ctx.name
    )];
    match seen.chain {
        Some(Ok(())) => r.set(
            "cert.chain",
            Verdict::Pass,
            "chains to a trusted CA",
            about.clone(),
        ),
        Some(Err(e)) if e.starts_with("no trusted CA") => {
            r.set("cert.chain", Verdict::Inconclusive, e, about.clone())
        }
        Some(Err(e)) => r.set("cert.chain", Verdict::Fail, e, about.clone()),
        None => r.set(
            "cert.chain",
            Verdict::Inconclusive,
            "no certificate was seen",
            about.clone(),
        ),
    }
    match seen.name {
        Some(Ok(m)) => r.set("cert.name", Verdict::Pass, m, about.clone()),
        Some(Err(e)) => r.set("cert.name", Verdict::Fail, e, about.clone()),
        None => r.set(
            "cert.name",
            Verdict::Inconclusive,
            "no certificate was seen",
            about.clone(),
        ),
    }
    match seen.expiry {
        Some(Ok((left, date))) => {
            let days = left.div_euclid(86_400);
            if left < 0 {
                r.set(
                    "cert.expiry",
                    Verdict::Fail,
                    format!("expired {} day(s) ago ({date})", -days),
                    about,
                )
            } else if days < ctx.expiry_warn {
                r.set(
                    "cert.expiry",
                    Verdict::Warn,
                    format!(
                        "expires in {days} day(s) ({date}), within --expiry-warn {}",
                        ctx.expiry_warn
                    ),
                    about,
                )
            } else {
                r.set(
                    "cert.expiry",
                    Verdict::Pass,
                    format!("expires in {days} day(s) ({date})"),
                    about,
                )
            }
        }
        Some(Err(e)) => r.set("cert.expiry", Verdict::Fail, e, about),
        None => r.set(
            "cert.expiry",
            Verdict::Inconclusive,
            "no certificate was seen",
            about,
        ),
    }
}

/// Sends the upgrade command and reads its reply.
fn upgrade_command(p: &mut Peer) -> Result<Resp, Stop> {
    let verb = p.upgrade_verb();
    p.command(verb)
}

/// The clean session: greeting, capabilities, upgrade, handshake,
/// capabilities again, a second upgrade. Returns whether the upgrade
/// worked; when the server could not be reached or turned the probe away,
/// every check is already recorded (inconclusive) and `None` says: no more
/// connections.
fn starttls_main(ctx: &mut Ctx, r: &mut Report) -> Option<bool> {
    let started = std::time::Instant::now();
    let opened = ctx.open(ctx.addr, false);
    r.timings.push(("greeting", started.elapsed()));
    let mut o = match opened {
        Ok(o) => o,
        Err(t) => {
            r.rest(t.verdict, &t.detail, &t.evidence);
            return None;
        }
    };
    Some(starttls_session(ctx, r, &mut o))
}

fn starttls_session(ctx: &mut Ctx, r: &mut Report, o: &mut Opened) -> bool {
    let proto = ctx.proto();
    let p = &mut o.peer;
    let verb = p.upgrade_verb();
    let (caps_r, before) = match p.capabilities() {
        Ok(x) => x,
        Err(stop) => {
            let ev = p.w.since(0);
            r.rest(
                Verdict::Inconclusive,
                &format!("asking for the capabilities: {stop}"),
                &ev,
            );
            return false;
        }
    };
    if !caps_r.ok {
        let ev = p.w.since(0);
        r.set(
            "upgrade.offered",
            Verdict::Fail,
            format!(
                "the server refused to list its capabilities: {}",
                caps_r.shown()
            ),
            ev,
        );
        p.quit();
        return false;
    }
    if !offers_upgrade(proto, &before) {
        r.set(
            "upgrade.offered",
            Verdict::Fail,
            format!("{verb} is not advertised: the connection stays in cleartext"),
            p.w.since(0),
        );
        let why = format!("{verb} not advertised");
        for id in [
            "upgrade.works",
            "tls.version",
            "cert.chain",
            "cert.name",
            "cert.expiry",
            "injection.same-write",
            "injection.two-writes",
            "injection.partial-line",
            "injection.literal",
            "state.capabilities",
            "state.no-starttls-after",
            "state.second-starttls",
            "state.envelope",
            "smtp.requiretls",
        ] {
            r.set(id, Verdict::Skipped, why.clone(), Vec::new());
        }
        p.quit();
        return false;
    }
    r.set(
        "upgrade.offered",
        Verdict::Pass,
        format!("{verb} advertised"),
        p.w.since(0),
    );
    let mark = p.w.mark();
    let reply = match upgrade_command(p) {
        Ok(x) => x,
        Err(stop) => {
            stopped(r, "upgrade.works", verb, &stop, &p.w, 0);
            return false;
        }
    };
    if !reply.ok {
        r.set(
            "upgrade.works",
            Verdict::Fail,
            format!("{verb} advertised but refused: {}", reply.shown()),
            p.w.since(0),
        );
        p.quit();
        return false;
    }
    if !p.w.buffered().is_empty() || p.w.more_within(Duration::from_millis(200)) {
        let extra = starttls::Escaped::new(p.w.buffered()).to_string();
        p.w.note(format!("bytes after the {verb} reply, before TLS: {extra}"));
        r.set(
            "upgrade.works",
            Verdict::Fail,
            format!(
                "the server sent more after its {verb} reply, before TLS (response injection risk)"
            ),
            p.w.since(mark),
        );
        p.w.close();
        return false;
    }
    let (config, seen) = ctx.tls();
    let started = std::time::Instant::now();
    let handshake = p.w.start_tls(config, ctx.server_name.clone());
    r.timings.push(("tls", started.elapsed()));
    let negotiated = match handshake {
        Ok(n) => n,
        Err(e) => {
            let ev = p.w.since(mark);
            if e.contains("PeerIncompatible") || e.contains("ProtocolVersion") {
                r.set(
                    "tls.version",
                    Verdict::Fail,
                    format!("no common TLS version: {e}"),
                    ev.clone(),
                );
            }
            r.set(
                "upgrade.works",
                Verdict::Fail,
                format!("{verb} accepted, then the TLS handshake failed: {e}"),
                ev,
            );
            return false;
        }
    };
    let ev = p.w.since(mark);
    r.set(
        "upgrade.works",
        Verdict::Pass,
        format!("{verb} accepted, TLS established"),
        ev.clone(),
    );
    tls_checks(ctx, r, &negotiated, &seen, &ev);
    // Capabilities again, inside TLS.
    let mark = p.w.mark();
    match p.capabilities() {
        Err(stop) => {
            stopped(
                r,
                "state.capabilities",
                "capabilities after TLS",
                &stop,
                &p.w,
                mark,
            );
            stopped(
                r,
                "state.no-starttls-after",
                "capabilities after TLS",
                &stop,
                &p.w,
                mark,
            );
        }
        Ok((after_r, after)) => {
            let ev = p.w.since(mark);
            if !after_r.ok {
                r.set(
                    "state.capabilities",
                    Verdict::Fail,
                    format!(
                        "the server refused to list its capabilities after TLS: {}",
                        after_r.shown()
                    ),
                    ev.clone(),
                );
            } else if after == before {
                r.set(
                    "state.capabilities",
                    Verdict::Warn,
                    "the list after TLS is exactly the list before it: it looks cached from cleartext",
                    ev.clone(),
                );
            } else {
                let added: Vec<&str> = after
                    .iter()
                    .filter(|c| !before.contains(c))
                    .map(String::as_str)
                    .collect();
                let gone: Vec<&str> = before
                    .iter()
                    .filter(|c| !after.contains(c))
                    .map(String::as_str)
                    .collect();
                r.set(
                    "state.capabilities",
                    Verdict::Pass,
                    format!(
                        "a fresh list after TLS (added: {}; removed: {})",
                        if added.is_empty() {
                            "none".into()
                        } else {
                            added.join(", ")
                        },
                        if gone.is_empty() {
                            "none".into()
                        } else {
                            gone.join(", ")
                        }
                    ),
                    ev.clone(),
                );
            }
            if after_r.ok {
                if offers_upgrade(proto, &after) {
                    r.set(
                        "state.no-starttls-after",
                        Verdict::Fail,
                        format!("{verb} is still offered inside TLS"),
                        ev.clone(),
                    );
                } else {
                    r.set(
                        "state.no-starttls-after",
                        Verdict::Pass,
                        format!("{verb} not offered inside TLS"),
                        ev.clone(),
                    );
                }
            }
            if proto == Proto::Smtp && after_r.ok {
                let has = after.iter().any(|c| c == "REQUIRETLS");
                r.set(
                    "smtp.requiretls",
                    Verdict::Pass,
                    if has {
                        "REQUIRETLS advertised after TLS"
                    } else {
                        "REQUIRETLS not advertised (informational: RFC 8689 is optional)"
                    },
                    ev,
                );
            }
        }
    }
    // A second upgrade inside TLS.
    let mark = p.w.mark();
    match upgrade_command(p) {
        Ok(again) if again.ok => {
            r.set(
                "state.second-starttls",
                Verdict::Fail,
                format!("a second {verb} inside TLS was accepted: {}", again.shown()),
                p.w.since(mark),
            );
            p.w.close();
            return true;
        }
        Ok(again) => r.set(
            "state.second-starttls",
            Verdict::Pass,
            format!("refused: {}", again.shown()),
            p.w.since(mark),
        ),
        Err(Stop::Closed) => r.set(
            "state.second-starttls",
            Verdict::Pass,
            "the server closed the connection",
            p.w.since(mark),
        ),
        Err(stop) => stopped(r, "state.second-starttls", verb, &stop, &p.w, mark),
    }
    p.quit();
    true
}

/// Implicit TLS URL: handshake first, then the greeting.
fn implicit_main(ctx: &mut Ctx, r: &mut Report) {
    let proto = ctx.proto();
    for id in [
        "upgrade.offered",
        "upgrade.works",
        "injection.same-write",
        "injection.two-writes",
        "injection.partial-line",
        "injection.literal",
        "state.capabilities",
        "state.envelope",
        "auth.before-tls",
    ] {
        r.set(
            id,
            Verdict::Skipped,
            "implicit TLS: nothing is sent before TLS",
            Vec::new(),
        );
    }
    let mut o = match ctx.open(ctx.addr, true) {
        Ok(o) => o,
        Err(t) => {
            r.set(
                "implicit.reachable",
                t.verdict,
                t.detail.clone(),
                t.evidence.clone(),
            );
            if t.handshake {
                r.rest(Verdict::Skipped, "the TLS handshake failed", &[]);
            } else {
                r.rest(t.verdict, &t.detail, &t.evidence);
            }
            return;
        }
    };
    let ev = o.peer.w.since(0);
    if let Some((n, seen)) = &o.tls {
        tls_checks(ctx, r, n, seen, &ev);
    }
    r.set(
        "implicit.reachable",
        Verdict::Pass,
        "TLS from the first octet, then the greeting",
        ev,
    );
    let p = &mut o.peer;
    let verb = p.upgrade_verb();
    let mark = p.w.mark();
    match p.capabilities() {
        Ok((cr, caps)) if cr.ok => {
            let ev = p.w.since(mark);
            if offers_upgrade(proto, &caps) {
                r.set(
                    "state.no-starttls-after",
                    Verdict::Fail,
                    format!("{verb} offered on implicit TLS"),
                    ev.clone(),
                );
            } else {
                r.set(
                    "state.no-starttls-after",
                    Verdict::Pass,
                    format!("{verb} not offered on implicit TLS"),
                    ev.clone(),
                );
            }
            if proto == Proto::Smtp {
                let has = caps.iter().any(|c| c == "REQUIRETLS");
                r.set(
                    "smtp.requiretls",
                    Verdict::Pass,
                    if has {
                        "REQUIRETLS advertised"
                    } else {
                        "REQUIRETLS not advertised (informational: RFC 8689 is optional)"
                    },
                    ev,
                );
            }
        }
        Ok((cr, _)) => r.set(
            "state.no-starttls-after",
            Verdict::Inconclusive,
            format!("capabilities refused: {}", cr.shown()),
            p.w.since(mark),
        ),
        Err(stop) => stopped(
            r,
            "state.no-starttls-after",
            "capabilities",
            &stop,
            &p.w,
            mark,
        ),
    }
    let mark = p.w.mark();
    match upgrade_command(p) {
        Ok(a) if a.ok => {
            r.set(
                "state.second-starttls",
                Verdict::Fail,
                format!("{verb} accepted on implicit TLS: {}", a.shown()),
                p.w.since(mark),
            );
            p.w.close();
            return;
        }
        Ok(a) => r.set(
            "state.second-starttls",
            Verdict::Pass,
            format!("refused: {}", a.shown()),
            p.w.since(mark),
        ),
        Err(Stop::Closed) => r.set(
            "state.second-starttls",
            Verdict::Pass,
            "the server closed the connection",
            p.w.since(mark),
        ),
        Err(stop) => stopped(r, "state.second-starttls", verb, &stop, &p.w, mark),
    }
    p.quit();
}

/// How bad a credential finding is on this port.
fn credential_severity(ctx: &Ctx) -> Verdict {
    if ctx.target.scheme == "smtp" {
        Verdict::Warn
    } else {
        Verdict::Fail
    }
}

/// Credentials before TLS: AUTH / AUTHENTICATE / USER, never a password.
fn credentials(ctx: &mut Ctx, r: &mut Report) {
    const ID: &str = "auth.before-tls";
    let bad = credential_severity(ctx);
    let mut o = match ctx.open(ctx.addr, false) {
        Ok(o) => o,
        Err(t) => return r.set(ID, t.verdict, t.detail, t.evidence),
    };
    let p = &mut o.peer;
    let caps = match p.capabilities() {
        Ok((_, c)) => c,
        Err(stop) => return stopped(r, ID, "capabilities", &stop, &p.w, 0),
    };
    match ctx.proto() {
        Proto::Smtp => {
            let advertised = caps.iter().any(|c| c.starts_with("AUTH"));
            let reply = match p.command("AUTH PLAIN") {
                Ok(x) => x,
                Err(stop) => return stopped(r, ID, "AUTH PLAIN", &stop, &p.w, 0),
            };
            match reply.code {
                Some(334) => {
                    let _ = p.command("*");
                    r.set(ID, bad, "AUTH PLAIN before TLS was answered 334: the server invites a password in cleartext", p.w.since(0));
                }
                Some(c @ (530 | 538)) => r.set(
                    ID,
                    Verdict::Pass,
                    format!(
                        "AUTH refused with {c} before TLS{}",
                        if advertised {
                            " (although advertised)"
                        } else {
                            ""
                        }
                    ),
                    p.w.since(0),
                ),
                Some(c) if (500..600).contains(&c) => r.set(
                    ID,
                    Verdict::Pass,
                    format!(
                        "AUTH {} before TLS and refused: {}",
                        if advertised {
                            "advertised"
                        } else {
                            "not advertised"
                        },
                        reply.shown()
                    ),
                    p.w.since(0),
                ),
                _ => r.set(
                    ID,
                    Verdict::Inconclusive,
                    format!("unexpected reply to AUTH PLAIN: {}", reply.shown()),
                    p.w.since(0),
                ),
            }
        }
        Proto::Imap => {
            let disabled = caps.iter().any(|c| c == "LOGINDISABLED");
            let tag = p.next_tag();
            if let Err(stop) = p.w.send(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes()) {
                return stopped(r, ID, "AUTHENTICATE", &stop, &p.w, 0);
            }
            let mut invited = false;
            let mut refusal = String::new();
            loop {
                let msg = match p.w.line().and_then(|l| p.imap_message(l)) {
                    Ok(m) => m,
                    Err(stop) => return stopped(r, ID, "AUTHENTICATE", &stop, &p.w, 0),
                };
                if msg.starts_with(b"+") {
                    invited = true;
                    let _ = p.w.send(b"*\r\n");
                    let _ = p.imap_until(&tag);
                    break;
                }
                if starts_ci(&msg, format!("{tag} ").as_bytes()) {
                    refusal = starttls::Escaped::new(&msg).to_string();
                    break;
                }
            }
            let ev = p.w.since(0);
            if invited {
                r.set(ID, bad, "AUTHENTICATE PLAIN before TLS got a continuation: the server invites credentials in cleartext", ev);
            } else if !disabled {
                r.set(ID, bad, format!("LOGINDISABLED is not advertised before TLS, so LOGIN is allowed in cleartext (AUTHENTICATE: {refusal})"), ev);
            } else {
                let privacy = refusal.to_ascii_uppercase().contains("[PRIVACYREQUIRED]");
                r.set(
                    ID,
                    Verdict::Pass,
                    format!(
                        "LOGINDISABLED advertised and AUTHENTICATE refused{}: {refusal}",
                        if privacy { " with PRIVACYREQUIRED" } else { "" }
                    ),
                    ev,
                );
            }
        }
        Proto::Pop3 => {
            let reply = match p.command("USER starttls-probe") {
                Ok(x) => x,
                Err(stop) => return stopped(r, ID, "USER", &stop, &p.w, 0),
            };
            let ev = p.w.since(0);
            if reply.ok {
                r.set(
                    ID,
                    bad,
                    format!("USER accepted before TLS: {}", reply.shown()),
                    ev,
                );
            } else {
                r.set(
                    ID,
                    Verdict::Pass,
                    format!("USER refused before TLS: {}", reply.shown()),
                    ev,
                );
            }
        }
    }
    p.quit();
}

/// SMTP: an envelope begun before TLS must be forgotten after it.
fn envelope(ctx: &mut Ctx, r: &mut Report) {
    const ID: &str = "state.envelope";
    let mut o = match ctx.open(ctx.addr, false) {
        Ok(o) => o,
        Err(t) => return r.set(ID, t.verdict, t.detail, t.evidence),
    };
    let p = &mut o.peer;
    if let Err(stop) = p.capabilities() {
        return stopped(r, ID, "EHLO", &stop, &p.w, 0);
    }
    let mail = match p.command(&format!("MAIL FROM:<probe-{}@example.invalid>", ctx.marker)) {
        Ok(x) => x,
        Err(stop) => return stopped(r, ID, "MAIL", &stop, &p.w, 0),
    };
    if !mail.ok {
        r.set(
            ID,
            Verdict::Pass,
            format!(
                "MAIL before TLS refused, nothing to carry over: {}",
                mail.shown()
            ),
            p.w.since(0),
        );
        return p.quit();
    }
    let up = match upgrade_command(p) {
        Ok(x) => x,
        Err(stop) => return stopped(r, ID, "STARTTLS", &stop, &p.w, 0),
    };
    if !up.ok {
        r.set(
            ID,
            Verdict::Pass,
            format!("STARTTLS refused inside a transaction: {}", up.shown()),
            p.w.since(0),
        );
        return p.quit();
    }
    let (config, _) = ctx.tls();
    if let Err(e) = p.w.start_tls(config, ctx.server_name.clone()) {
        return r.set(
            ID,
            Verdict::Inconclusive,
            format!("TLS handshake failed: {e}"),
            p.w.since(0),
        );
    }
    if let Err(stop) = p.capabilities() {
        return stopped(r, ID, "EHLO after TLS", &stop, &p.w, 0);
    }
    let rcpt = match p.command("RCPT TO:<postmaster>") {
        Ok(x) => x,
        Err(stop) => return stopped(r, ID, "RCPT", &stop, &p.w, 0),
    };
    let ev = p.w.since(0);
    match rcpt.code {
        Some(c) if (200..300).contains(&c) => r.set(ID, Verdict::Fail, format!("RCPT after TLS was accepted without a MAIL inside TLS: the envelope from cleartext was kept ({})", rcpt.shown()), ev),
        Some(503) => r.set(ID, Verdict::Pass, format!("RCPT after TLS needs a new MAIL: {}", rcpt.shown()), ev),
        _ => r.set(ID, Verdict::Inconclusive, format!("RCPT after TLS answered neither 2xx nor 503: {}", rcpt.shown()), ev),
    }
    let _ = p.command("RSET");
    p.quit();
}

/// The injection styles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    SameWrite,
    TwoWrites,
    Partial,
    Literal,
}

impl Style {
    fn id(self) -> &'static str {
        match self {
            Style::SameWrite => "injection.same-write",
            Style::TwoWrites => "injection.two-writes",
            Style::Partial => "injection.partial-line",
            Style::Literal => "injection.literal",
        }
    }
}

/// How often `injection.two-writes` is tried while the second write keeps
/// arriving after the server's switch to TLS.
const TWO_WRITES_TRIES: usize = 3;

/// Command injection after the upgrade (CVE-2011-0411 class).
fn injection(ctx: &mut Ctx, r: &mut Report, style: Style) {
    let id = style.id();
    let proto = ctx.proto();
    let m = format!("X{}", ctx.marker);
    let mut o = match ctx.open(ctx.addr, false) {
        Ok(o) => o,
        Err(t) => return r.set(id, t.verdict, t.detail, t.evidence),
    };
    let p = &mut o.peer;
    match p.capabilities() {
        Ok((c, caps)) if c.ok && offers_upgrade(proto, &caps) => {}
        Ok(_) => {
            return r.set(
                id,
                Verdict::Inconclusive,
                "the upgrade was not advertised on this connection",
                p.w.since(0),
            )
        }
        Err(stop) => return stopped(r, id, "capabilities", &stop, &p.w, 0),
    }
    let mark = p.w.mark();
    let verb = p.upgrade_verb();
    // The upgrade command, and what follows it before TLS.
    let mut up_tag = String::new();
    let (up, injected): (String, String) = match proto {
        Proto::Smtp => (
            format!("{verb}\r\n"),
            if style == Style::Partial {
                "NO".into()
            } else {
                format!("XPROBE-{m}\r\n")
            },
        ),
        Proto::Pop3 => (
            format!("{verb}\r\n"),
            if style == Style::Partial {
                "CA".into()
            } else {
                format!("XPROBE-{m}\r\n")
            },
        ),
        Proto::Imap => {
            let tag = p.next_tag();
            up_tag = tag.clone();
            (
                format!("{tag} {verb}\r\n"),
                match style {
                    Style::Partial => format!("{m} NO"),
                    Style::Literal => format!("{m} EXAMINE {{5}}\r\nINBOX\r\n"),
                    _ => format!("{m} NOOP\r\n"),
                },
            )
        }
    };
    let sent = if style == Style::TwoWrites {
        p.w.send(up.as_bytes())
            .and_then(|_| p.w.send(injected.as_bytes()))
    } else {
        p.w.send(format!("{up}{injected}").as_bytes())
    };
    if let Err(stop) = sent {
        return stopped(r, id, "sending", &stop, &p.w, mark);
    }
    let reply = match proto {
        Proto::Imap => p.imap_until(&up_tag),
        Proto::Smtp => p.smtp_reply(),
        Proto::Pop3 => p.w.line().map(|l| {
            let ok = starts_ci(&l, b"+OK");
            Resp {
                ok,
                code: None,
                lines: vec![l.clone()],
                status: l,
            }
        }),
    };
    let reply = match reply {
        Ok(x) => x,
        Err(Stop::Closed) => {
            return r.set(
                id,
                Verdict::Pass,
                format!("the server closed the connection when commands followed {verb}"),
                p.w.since(mark),
            )
        }
        Err(stop) => return stopped(r, id, verb, &stop, &p.w, mark),
    };
    if !reply.ok {
        r.set(
            id,
            Verdict::Pass,
            format!("{verb} with pipelined bytes was refused: {}", reply.shown()),
            p.w.since(mark),
        );
        return p.quit();
    }
    if !p.w.buffered().is_empty() || p.w.more_within(Duration::from_millis(300)) {
        if is_tls_record(p.w.buffered()) {
            ctx.injected_late = true;
            p.w.note(format!(
                "{} octets of TLS record (type {}) from the server before our handshake",
                p.w.buffered().len(),
                p.w.buffered().first().copied().unwrap_or_default()
            ));
            r.set(
                id,
                Verdict::Pass,
                "the server read the injected bytes as TLS and answered with a TLS alert: they were not run as commands",
                p.w.since(mark),
            );
            return p.w.close();
        }
        r.set(
            id,
            Verdict::Warn,
            format!("the server answered the pipelined bytes in cleartext after its {verb} reply, before TLS"),
            p.w.since(mark),
        );
        return p.w.close();
    }
    if p.w.closed() {
        ctx.injected_late = true;
        return r.set(
            id,
            Verdict::Pass,
            format!("the server closed the connection after its {verb} reply: the injected bytes were not run"),
            p.w.since(mark),
        );
    }
    let (config, _) = ctx.tls();
    if let Err(e) = p.w.start_tls(config, ctx.server_name.clone()) {
        ctx.injected_late = true;
        return r.set(
            id,
            Verdict::Pass,
            format!("the handshake failed after the injected bytes ({e}): the server read them as TLS or dropped them, and did not run them as commands"),
            p.w.since(mark),
        );
    }
    // Inside TLS: one command whose answer tells whether the injected
    // bytes were run.
    let executed: Result<(bool, String), Stop> = match (proto, style) {
        (Proto::Smtp, Style::Partial) => {
            p.w.send(b"OP\r\n")
                .and_then(|_| p.smtp_reply())
                .map(|x| (x.code.is_some_and(|c| (200..300).contains(&c)), x.shown()))
        }
        (Proto::Smtp, _) => p
            .command("NOOP")
            .map(|x| (x.code.is_some_and(|c| c >= 500), x.shown())),
        (Proto::Pop3, Style::Partial) => p.w.send(b"PA\r\n").and_then(|_| p.w.line()).map(|l| {
            (
                starts_ci(&l, b"+OK"),
                starttls::Escaped::new(&l).to_string(),
            )
        }),
        (Proto::Pop3, _) => p.command("CAPA").map(|x| (!x.ok, x.shown())),
        (Proto::Imap, _) => {
            let tag = p.next_tag();
            let prefix = if style == Style::Partial {
                "OP\r\n"
            } else {
                ""
            };
            p.w.send(format!("{prefix}{tag} NOOP\r\n").as_bytes())
                .and_then(|_| p.imap_until(&tag))
                .map(|x| {
                    let hit = x.lines.iter().find(|l| {
                        starts_ci(l, format!("{m} ").as_bytes())
                            || (style == Style::Literal && l.starts_with(b"+"))
                    });
                    match hit {
                        Some(l) => (true, starttls::Escaped::new(l).to_string()),
                        None => (false, x.shown()),
                    }
                })
        }
    };
    match executed {
        Ok((true, line)) => r.set(
            id,
            Verdict::Fail,
            format!(
                "the bytes sent with {verb} in cleartext were run as a command inside TLS: {line}"
            ),
            p.w.since(mark),
        ),
        Ok((false, _)) => r.set(
            id,
            Verdict::Pass,
            "the injected bytes were discarded at the upgrade",
            p.w.since(mark),
        ),
        Err(Stop::Closed) => r.set(
            id,
            Verdict::Pass,
            "the server closed the connection inside TLS without running the injected bytes",
            p.w.since(mark),
        ),
        Err(stop) => return stopped(r, id, "after TLS", &stop, &p.w, mark),
    }
    p.quit();
}

/// RFC 8314: the implicit-TLS port for the same service.
fn implicit_counterpart(ctx: &mut Ctx, r: &mut Report) {
    const ID: &str = "implicit.reachable";
    let Some(addr) = ctx.implicit_addr else {
        return r.set(
            ID,
            Verdict::Skipped,
            "port 25 relay: RFC 8314 implicit TLS is for submission and access",
            Vec::new(),
        );
    };
    match ctx.open(addr, true) {
        Ok(mut o) => {
            r.set(
                ID,
                Verdict::Pass,
                format!("implicit TLS answers on {addr}"),
                o.peer.w.since(0),
            );
            o.peer.quit();
        }
        Err(t) if t.detail.starts_with("connection cap") => {
            r.set(ID, t.verdict, t.detail, t.evidence)
        }
        Err(t) => r.set(
            ID,
            Verdict::Warn,
            format!(
                "no implicit TLS on {addr} (RFC 8314 §3.3 prefers it): {}",
                t.detail
            ),
            t.evidence,
        ),
    }
}

/// `--aggressive`: long line, NUL, huge literal; each followed by a fresh
/// connection to see that the server still serves.
fn robustness(ctx: &mut Ctx, r: &mut Report) {
    let proto = ctx.proto();
    let implicit = ctx.target.implicit;
    let long = {
        let mut v = match proto {
            Proto::Imap => b"P9 NOOP ".to_vec(),
            _ => b"NOOP ".to_vec(),
        };
        v.resize(100_000, b'a');
        v.extend_from_slice(b"\r\n");
        v
    };
    let nul = match proto {
        Proto::Imap => b"P9 NOOP \0x\r\n".to_vec(),
        _ => b"NOOP \0x\r\n".to_vec(),
    };
    let huge = b"P9 APPEND INBOX {4294967296}\r\n".to_vec();
    let mut probes: Vec<(&'static str, Vec<u8>)> =
        vec![("robust.long-line", long), ("robust.nul", nul)];
    if proto == Proto::Imap {
        probes.push(("robust.huge-literal", huge));
    }
    for (id, bytes) in probes {
        let mut o = match ctx.open(ctx.addr, implicit) {
            Ok(o) => o,
            Err(t) => {
                r.set(id, Verdict::Inconclusive, t.detail, t.evidence);
                continue;
            }
        };
        let p = &mut o.peer;
        // A server may answer and close while the long line is still being
        // sent (Dovecot: `Input buffer full`): the write fails, but what it
        // said may still be read, and whether it keeps serving is judged on
        // a new connection either way.
        let sent = p.w.send(&bytes);
        if let Err(stop) = &sent {
            p.w.note(format!("the write failed: {stop}"));
        }
        let answer = p.w.line();
        let invited =
            id == "robust.huge-literal" && answer.as_ref().is_ok_and(|l| l.starts_with(b"+"));
        p.w.close();
        let ev = p.w.since(0);
        if invited {
            r.set(
                id,
                Verdict::Fail,
                "the server invited a 4 GiB literal before login",
                ev,
            );
            continue;
        }
        let first = match (&answer, &sent) {
            (Ok(l), _) => starttls::Escaped::new(l).to_string(),
            (Err(s), Ok(())) => s.to_string(),
            (Err(s), Err(w)) => format!("nothing ({s}; the write failed: {w})"),
        };
        match ctx.open(ctx.addr, implicit) {
            Ok(mut again) => {
                r.set(
                    id,
                    Verdict::Pass,
                    format!("answered {first}; a new connection is still served"),
                    ev,
                );
                again.peer.quit();
            }
            Err(t) if t.detail.starts_with("connection cap") => {
                r.set(id, Verdict::Inconclusive, t.detail, ev)
            }
            Err(t) => r.set(
                id,
                Verdict::Fail,
                format!(
                    "answered {first}; then a new connection failed: {}",
                    t.detail
                ),
                ev,
            ),
        }
    }
}
