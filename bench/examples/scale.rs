//! A loopback scale run: N concurrent STARTTLS sessions against the
//! reference server (`starttls serve`), with upgrades per second and the
//! server's resident memory per idle TLS session.
//!
//! ```text
//! cargo build --release -p starttls-conformance          # the `starttls` binary
//! cargo run --release -p starttls-bench --example scale -- --sessions 1000
//! cargo run --release -p starttls-bench --example scale -- \
//!     --sessions 10000 --concurrency 100 --protocol imap --server target/release/starttls
//! ```
//!
//! What it does:
//!
//! 1. starts `starttls serve --<protocol> 127.0.0.1:0 --ca-out <tmp>/ca.pem`
//!    (loopback only; the port is read from its `listening` line) and reads
//!    the server's resident memory (`VmRSS` in `/proc/<pid>/status`);
//! 2. opens N client sessions of this crate (`starttls::{smtp,imap,pop3}::
//!    ClientSession`, policy `StartTlsRequired`, verifying the certificate
//!    against the CA serve wrote) over tokio `TcpStream`s, at most
//!    `--concurrency` of them negotiating at once. Each one does greeting,
//!    capabilities, STARTTLS, a full TLS handshake (client resumption off),
//!    capabilities again over TLS, and reports `Ready`; then it stays idle,
//!    its connection open;
//! 3. once every session is upgraded (or failed), waits `--hold` seconds and
//!    samples the server's and its own resident memory with all of them idle;
//! 4. has every session say `QUIT` (`LOGOUT` for IMAP) and waits for the
//!    server to close them, then samples the server's memory once more;
//! 5. kills the server, whatever happened.
//!
//! Bounds: at most 10,000 sessions, a per-session time limit for each phase
//! (`--session-timeout`, 30 s) and an overall one (`--timeout`, 300 s).
//! Every session needs a file descriptor in this process and one in the
//! server, which inherits this process's limits: the run refuses to start
//! when the soft `ulimit -n` is too low and says what to run.
//!
//! Keep `--concurrency` under serve's listen backlog (128, tokio's default):
//! beyond it the kernel drops connections at the full accept queue, and as
//! the server speaks first the client waits for SYN-ACK retransmissions (up
//! to 31 s); the run reports those drops (`TcpExt ListenOverflows`).
//!
//! `starttls serve` closes a connection after 60 s without input, so a ramp
//! plus `--hold` longer than that loses the first sessions; they are counted
//! as "lost while idle" and left out of the per-session memory figures.
//!
//! Figures are per run and machine; CPU times come from `/proc/<pid>/stat`
//! (assuming 100 clock ticks per second, the Linux default). Linux only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::{ClientTls, TlsPolicy, Trust, UpgradeEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

const USAGE: &str = "usage: scale [--sessions N (<= 10000, default 1000)] \
[--concurrency C (default 100)] [--protocol smtp|imap|pop3 (default smtp)] \
[--server PATH (default: the `starttls` binary next to this example's directory)] \
[--addr LOOPBACK:PORT (default 127.0.0.1:0)] [--session-timeout SECS (30)] \
[--timeout SECS (300)] [--hold SECS (2)]";

/// The most sessions a run may open.
const MAX_SESSIONS: usize = 10_000;
/// File descriptors wanted beyond one per session (runtime, pipes, files).
const FD_MARGIN: u64 = 64;
/// Linux clock ticks per second (`getconf CLK_TCK`), for `/proc/<pid>/stat`.
const CLK_TCK: f64 = 100.0;

// ------------------------------------------------------------------ options

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Smtp,
    Imap,
    Pop3,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Smtp => "smtp",
            Proto::Imap => "imap",
            Proto::Pop3 => "pop3",
        }
    }
}

struct Opts {
    sessions: usize,
    concurrency: usize,
    proto: Proto,
    server: PathBuf,
    addr: SocketAddr,
    session_timeout: Duration,
    timeout: Duration,
    hold: Duration,
}

fn parse_args() -> Result<Opts, String> {
    let mut sessions = 1000usize;
    let mut concurrency = 100usize;
    let mut proto = Proto::Smtp;
    let mut server = None;
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let mut session_timeout = 30u64;
    let mut timeout = 300u64;
    let mut hold = 2u64;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        fn num<T: std::str::FromStr>(arg: &str, v: String) -> Result<T, String> {
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{arg}: not a number: {v}"))
        }
        match arg.as_str() {
            "--sessions" | "-n" => sessions = num(&arg, val()?)?,
            "--concurrency" | "-c" => concurrency = num(&arg, val()?)?,
            "--protocol" => {
                proto = match val()?.as_str() {
                    "smtp" => Proto::Smtp,
                    "imap" => Proto::Imap,
                    "pop3" => Proto::Pop3,
                    other => return Err(format!("--protocol: smtp, imap or pop3, not {other}")),
                }
            }
            "--server" => server = Some(PathBuf::from(val()?)),
            "--addr" => {
                let v = val()?;
                addr = v.parse().map_err(|_| format!("--addr: not IP:PORT: {v}"))?;
            }
            "--session-timeout" => session_timeout = num(&arg, val()?)?,
            "--timeout" => timeout = num(&arg, val()?)?,
            "--hold" => hold = num(&arg, val()?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if sessions == 0 || sessions > MAX_SESSIONS {
        return Err(format!(
            "--sessions {sessions}: between 1 and {MAX_SESSIONS}"
        ));
    }
    if concurrency == 0 {
        return Err("--concurrency: at least 1".into());
    }
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--addr {addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
        ));
    }
    if session_timeout == 0 || timeout == 0 {
        return Err("timeouts must be at least 1 s".into());
    }
    if hold >= 55 {
        eprintln!(
            "scale: warning: --hold {hold}: serve closes connections after 60 s without input"
        );
    }
    let server = match server {
        Some(s) => s,
        None => default_server()?,
    };
    Ok(Opts {
        sessions,
        concurrency: concurrency.min(sessions),
        proto,
        server,
        addr,
        session_timeout: Duration::from_secs(session_timeout),
        timeout: Duration::from_secs(timeout),
        hold: Duration::from_secs(hold),
    })
}

/// `target/<profile>/starttls`, next to `target/<profile>/examples/scale`.
fn default_server() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("starttls"))
        .ok_or("cannot locate the target directory; give --server PATH")?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no server at {}: build it (cargo build --release -p starttls-conformance, \
             same CARGO_TARGET_DIR) or give --server PATH",
            path.display()
        ))
    }
}

// ------------------------------------------------------------------ /proc

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLK_TCK)
}

/// `(soft, hard)` of "Max open files" in `/proc/<pid>/limits`; `None` for unlimited.
fn nofile(pid: &str) -> Option<(Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut w = line["Max open files".len()..].split_whitespace();
    let soft = w.next()?;
    let hard = w.next()?;
    Some((soft.parse().ok(), hard.parse().ok()))
}

/// Refuses the run when `pid` cannot hold `need` descriptors.
fn check_fds(pid: &str, who: &str, need: u64) -> Result<(), String> {
    let Some((soft, hard)) = nofile(pid) else {
        eprintln!("scale: cannot read /proc/{pid}/limits; not checking `ulimit -n`");
        return Ok(());
    };
    if soft.is_none_or(|s| s >= need) {
        return Ok(());
    }
    let soft = soft.unwrap_or(u64::MAX);
    Err(match hard {
        Some(h) if h < need => format!(
            "{who}: {need} file descriptors needed, but the hard limit is {h} \
             (soft {soft}); raise the hard limit (as root: /etc/security/limits.conf \
             or `prlimit`) or run fewer --sessions"
        ),
        _ => format!(
            "{who}: {need} file descriptors needed, but the soft limit is {soft}; \
             run `ulimit -n {need}` (the hard limit is {}) in this shell, then retry \
             (the server inherits it)",
            hard.map_or("unlimited".to_string(), |h| h.to_string())
        ),
    })
}

/// `TcpExt: ListenOverflows` from `/proc/net/netstat`: connections the
/// kernel could not queue for `accept` (system-wide).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = tcp_ext.next()?;
    let values = tcp_ext.next()?;
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn kib(k: u64) -> String {
    if k >= 10 * 1024 {
        format!("{:.1} MiB", k as f64 / 1024.0)
    } else {
        format!("{k} KiB")
    }
}

fn opt_kib(k: Option<u64>) -> String {
    k.map_or("?".into(), kib)
}

fn per_session(before: Option<u64>, after: Option<u64>, n: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => {
            format!("{:+.1} KiB per session", (a as f64 - b as f64) / n as f64)
        }
        _ => "? per session".into(),
    }
}

// ------------------------------------------------------------------ the server

/// Counts from the server's log: one line per event, `[<kind> <peer>] ...`.
#[derive(Default)]
struct ServerLog {
    lines: AtomicUsize,
    connected: AtomicUsize,
    tls: AtomicUsize,
    closed: AtomicUsize,
    failed: AtomicUsize,
    /// The first few `failed:` lines, and the last lines of stderr.
    failures: Mutex<Vec<String>>,
    stderr: Mutex<Vec<String>>,
}

/// The server process; killed when dropped.
struct Server {
    child: Child,
    pid: String,
    addr: SocketAddr,
    log: Arc<ServerLog>,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn start(opts: &Opts) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!("starttls-scale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ca = dir.join("ca.pem");
        let mut child = Command::new(&opts.server)
            .arg("serve")
            .arg(format!("--{}", opts.proto.name()))
            .arg(opts.addr.to_string())
            .arg("--ca-out")
            .arg(&ca)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.server.display()))?;
        let pid = child.id().to_string();
        let log = Arc::new(ServerLog::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (addr_tx, addr_rx) = std_mpsc::channel::<SocketAddr>();
        // Drain stdout at once, always: serve writes a line per event and
        // blocks its workers when the pipe is full.
        let l = Arc::clone(&log);
        let kind = opts.proto.name();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                l.lines.fetch_add(1, Ordering::Relaxed);
                if line.ends_with("] connected") {
                    l.connected.fetch_add(1, Ordering::Relaxed);
                } else if line.ends_with("] closed") {
                    l.closed.fetch_add(1, Ordering::Relaxed);
                } else if line.contains("] TLS ") {
                    l.tls.fetch_add(1, Ordering::Relaxed);
                } else if line.contains("] failed: ") {
                    l.failed.fetch_add(1, Ordering::Relaxed);
                    let mut f = l.failures.lock().expect("lock");
                    if f.len() < 5 {
                        f.push(line);
                    }
                } else if let Some(rest) = line.strip_prefix("listening ") {
                    let mut w = rest.split_whitespace();
                    if w.next() == Some(kind) {
                        if let Some(a) = w.next().and_then(|a| a.parse().ok()) {
                            let _ = addr_tx.send(a);
                        }
                    }
                }
            }
        });
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut e = l.stderr.lock().expect("lock");
                if e.len() >= 20 {
                    e.remove(0);
                }
                e.push(line);
            }
        });
        let mut server = Server {
            child,
            pid,
            addr: opts.addr,
            log,
            dir,
        };
        let start = Instant::now();
        loop {
            match addr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(a) => {
                    server.addr = a;
                    break;
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(format!(
                        "the server exited before listening{}",
                        server.stderr()
                    ));
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("the server exited ({status}){}", server.stderr()));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "the server did not listen within 20 s{}",
                    server.stderr()
                ));
            }
        }
        if !server.addr.ip().is_loopback() {
            return Err(format!(
                "the server listens on {}: not loopback",
                server.addr
            ));
        }
        if !ca.is_file() {
            return Err(format!("the server wrote no CA to {}", ca.display()));
        }
        Ok(server)
    }

    fn stderr(&self) -> String {
        let e = self.log.stderr.lock().expect("lock");
        if e.is_empty() {
            String::new()
        } else {
            format!("\n--- server stderr\n{}", e.join("\n"))
        }
    }

    fn rss(&self) -> Option<u64> {
        status_kib(&self.pid, "VmRSS")
    }

    fn threads(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into())
    }

    fn cpu(&self) -> Option<f64> {
        cpu_secs(&self.pid)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

// ------------------------------------------------------------------ clients

/// What a session reports, reduced to what the run needs.
enum Ev {
    TlsEstablished,
    Ready(Trust),
    Other,
}

/// The three client sessions behind one face.
trait Client: Send {
    fn input(&mut self, data: &[u8]);
    fn eof(&mut self);
    fn event(&mut self) -> Result<Option<Ev>, starttls::Error>;
    fn transmit(&mut self) -> Option<Bytes>;
    fn closed(&self) -> bool;
    /// `QUIT` or `LOGOUT`.
    fn quit(&mut self) -> Result<(), starttls::UsageError>;
}

macro_rules! client {
    ($module:ident, |$ev:ident| $map:expr, |$s:ident| $quit:expr) => {
        impl Client for starttls::$module::ClientSession {
            fn input(&mut self, data: &[u8]) {
                self.handle_input(data)
            }
            fn eof(&mut self) {
                self.handle_eof()
            }
            fn event(&mut self) -> Result<Option<Ev>, starttls::Error> {
                use starttls::$module::ClientEvent;
                Ok(self.poll_event()?.map(|$ev: ClientEvent| $map))
            }
            fn transmit(&mut self) -> Option<Bytes> {
                self.poll_transmit()
            }
            fn closed(&self) -> bool {
                self.is_closed()
            }
            fn quit(&mut self) -> Result<(), starttls::UsageError> {
                let $s = self;
                $quit
            }
        }
    };
}

client!(
    smtp,
    |e| match e {
        ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(_)) => Ev::TlsEstablished,
        ClientEvent::Ready { trust } => Ev::Ready(trust),
        _ => Ev::Other,
    },
    |s| s.send(starttls::smtp::Command::Quit)
);
client!(
    imap,
    |e| match e {
        ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(_)) => Ev::TlsEstablished,
        ClientEvent::Ready { trust, .. } => Ev::Ready(trust),
        _ => Ev::Other,
    },
    |s| s.send(starttls::imap::CommandBody::Logout).map(|_| ())
);
client!(
    pop3,
    |e| match e {
        ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(_)) => Ev::TlsEstablished,
        ClientEvent::Ready { trust } => Ev::Ready(trust),
        _ => Ev::Other,
    },
    |s| s.send(starttls::pop3::Command::Quit)
);

/// One configuration per protocol, shared by every session.
#[derive(Clone)]
enum Configs {
    Smtp(Arc<starttls::smtp::ClientConfig>),
    Imap(Arc<starttls::imap::ClientConfig>),
    Pop3(Arc<starttls::pop3::ClientConfig>),
}

impl Configs {
    fn new(proto: Proto, ca: &Path) -> Result<Configs, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // N distinct clients: a full handshake each, no resumption.
        tls.resumption = rustls::client::Resumption::disabled();
        let tls = ClientTls::Rustls {
            config: Arc::new(tls),
            server_name: ServerName::try_from("localhost").expect("a valid name"),
        };
        let policy = TlsPolicy::StartTlsRequired;
        Ok(match proto {
            Proto::Smtp => Configs::Smtp(Arc::new(starttls::smtp::ClientConfig::new(
                "scale.localhost",
                policy,
                tls,
            ))),
            Proto::Imap => Configs::Imap(Arc::new(starttls::imap::ClientConfig::new(policy, tls))),
            Proto::Pop3 => Configs::Pop3(Arc::new(starttls::pop3::ClientConfig::new(policy, tls))),
        })
    }

    fn session(&self) -> Result<Box<dyn Client>, starttls::ConfigError> {
        Ok(match self {
            Configs::Smtp(c) => Box::new(starttls::smtp::ClientSession::new(Arc::clone(c))?),
            Configs::Imap(c) => Box::new(starttls::imap::ClientSession::new(Arc::clone(c))?),
            Configs::Pop3(c) => Box::new(starttls::pop3::ClientSession::new(Arc::clone(c))?),
        })
    }
}

/// Where one session got to, and when.
#[derive(Clone, Copy, Debug)]
struct Timeline {
    start: Instant,
    connected: Option<Instant>,
    /// The first byte from the server (the greeting).
    greeting: Option<Instant>,
    tls: Option<Instant>,
    ready: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Ready,
    Closed,
}

/// The caller's contract until `Ready` (or until the session closes).
async fn drive(
    sock: &mut TcpStream,
    client: &mut dyn Client,
    until: Until,
    t: &mut Timeline,
) -> Result<(), String> {
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let mut failed = None;
        let mut reached = false;
        loop {
            match client.event() {
                Ok(Some(Ev::TlsEstablished)) => t.tls = Some(Instant::now()),
                Ok(Some(Ev::Ready(trust))) => {
                    if trust != Trust::Tls {
                        failed = Some(format!("ready without TLS ({trust})"));
                        break;
                    }
                    t.ready = Some(Instant::now());
                    reached = until == Until::Ready;
                }
                Ok(Some(Ev::Other)) => {}
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        while let Some(out) = client.transmit() {
            if let Err(e) = sock.write_all(&out).await {
                return Err(failed.unwrap_or_else(|| format!("write: {e}")));
            }
        }
        if let Some(f) = failed {
            return Err(f);
        }
        if reached {
            return Ok(());
        }
        if client.closed() {
            return match until {
                Until::Closed => Ok(()),
                Until::Ready => Err("session closed before it was ready".into()),
            };
        }
        match sock.read(&mut buf).await {
            Ok(0) => client.eof(),
            Ok(n) => {
                t.greeting.get_or_insert_with(Instant::now);
                client.input(&buf[..n])
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// What one session tells the ramp as soon as it is upgraded or has failed.
struct RampReport {
    result: Result<Timeline, String>,
}

/// The end of one session.
#[derive(Default)]
struct Outcome {
    /// Lost while idle (the server closed it or sent something wrong).
    idle_lost: Option<String>,
    /// `None` when it never got to QUIT.
    quit: Option<Result<(), String>>,
}

struct Shared {
    addr: SocketAddr,
    configs: Configs,
    ramp: Semaphore,
    session_timeout: Duration,
    reports: mpsc::UnboundedSender<RampReport>,
    /// Sessions upgraded and idle, their connection open.
    idle: AtomicUsize,
}

async fn session(shared: Arc<Shared>, mut quit: watch::Receiver<bool>) -> Outcome {
    let permit = shared.ramp.acquire().await;
    let mut t = Timeline {
        start: Instant::now(),
        connected: None,
        greeting: None,
        tls: None,
        ready: None,
    };
    let ramp = tokio::time::timeout(shared.session_timeout, async {
        let mut sock = TcpStream::connect(shared.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        t.connected = Some(Instant::now());
        let _ = sock.set_nodelay(true);
        let mut client = shared
            .configs
            .session()
            .map_err(|e| format!("configuration: {e}"))?;
        drive(&mut sock, client.as_mut(), Until::Ready, &mut t).await?;
        Ok::<_, String>((sock, client))
    })
    .await;
    drop(permit);
    let (mut sock, mut client) = match ramp {
        Ok(Ok(x)) => {
            let _ = shared.reports.send(RampReport { result: Ok(t) });
            x
        }
        Ok(Err(e)) => {
            let _ = shared.reports.send(RampReport { result: Err(e) });
            return Outcome::default();
        }
        Err(_) => {
            let step = if t.connected.is_none() {
                "connect"
            } else if t.greeting.is_none() {
                "the greeting (not a byte from the server)"
            } else if t.tls.is_none() {
                "STARTTLS and handshake"
            } else {
                "capabilities over TLS"
            };
            let _ = shared.reports.send(RampReport {
                result: Err(format!(
                    "timed out after {} s at {step}",
                    shared.session_timeout.as_secs()
                )),
            });
            return Outcome::default();
        }
    };
    let ready = Instant::now();
    shared.idle.fetch_add(1, Ordering::SeqCst);
    // Idle, the connection open, until told to quit.
    let idle_lost = loop {
        tokio::select! {
            _ = quit.wait_for(|q| *q) => break None,
            r = sock.readable() => {
                if let Err(e) = r {
                    break Some(format!("idle: {e}"));
                }
                let mut buf = vec![0u8; 4096];
                match sock.try_read(&mut buf) {
                    Ok(0) => {
                        break Some(format!(
                            "the server closed the idle session after {} s",
                            ready.elapsed().as_secs()
                        ))
                    }
                    Ok(n) => {
                        client.input(&buf[..n]);
                        let mut err = None;
                        loop {
                            match client.event() {
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => {
                                    err = Some(format!("idle: {e}"));
                                    break;
                                }
                            }
                        }
                        if err.is_some() {
                            break err;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => break Some(format!("idle: read: {e}")),
                }
            }
        }
    };
    shared.idle.fetch_sub(1, Ordering::SeqCst);
    if idle_lost.is_some() {
        return Outcome {
            idle_lost,
            quit: None,
        };
    }
    let quit = tokio::time::timeout(shared.session_timeout, async {
        client.quit().map_err(|e| format!("QUIT: {e}"))?;
        drive(&mut sock, client.as_mut(), Until::Closed, &mut t).await
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "QUIT: no close within {} s",
            shared.session_timeout.as_secs()
        ))
    });
    Outcome {
        idle_lost: None,
        quit: Some(quit),
    }
}

// ------------------------------------------------------------------ the run

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn top(errors: &BTreeMap<String, usize>) -> String {
    let mut v: Vec<_> = errors.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .take(5)
        .map(|(e, n)| format!("\n    {n} x {e}"))
        .collect()
}

async fn run(opts: &Opts, server: &mut Server) -> Result<bool, String> {
    let n = opts.sessions;
    let me = std::process::id().to_string();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let ca = server.dir.join("ca.pem");
    let configs = Configs::new(opts.proto, &ca)?;
    check_fds(&server.pid, "the server", n as u64 + FD_MARGIN)?;

    // Let the server settle before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_rss0 = server.rss();
    let server_threads0 = server.threads();
    let server_cpu0 = server.cpu();
    let client_rss0 = status_kib(&me, "VmRSS");
    let client_cpu0 = cpu_secs(&me);
    let overflows0 = listen_overflows();
    println!(
        "scale: {} x {n} sessions, concurrency {}, server {} (pid {}) on {}",
        opts.proto.name(),
        opts.concurrency,
        opts.server.display(),
        server.pid,
        server.addr
    );
    println!(
        "before: server RSS {}, {} threads; client RSS {}",
        opt_kib(server_rss0),
        server_threads0,
        opt_kib(client_rss0)
    );

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        addr: server.addr,
        configs,
        ramp: Semaphore::new(opts.concurrency),
        session_timeout: opts.session_timeout,
        reports: reports_tx,
        idle: AtomicUsize::new(0),
    });
    let (quit_tx, quit_rx) = watch::channel(false);
    let ramp_start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| tokio::spawn(session(Arc::clone(&shared), quit_rx.clone())))
        .collect();

    // The ramp: every session upgraded or failed.
    let mut upgraded: Vec<Timeline> = Vec::with_capacity(n);
    let mut ramp_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut ramp_failed = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut timed_out = false;
    while upgraded.len() + ramp_failed < n {
        tokio::select! {
            r = reports.recv() => match r {
                Some(RampReport { result: Ok(t) }) => upgraded.push(t),
                Some(RampReport { result: Err(e) }) => {
                    ramp_failed += 1;
                    *ramp_errors.entry(e).or_default() += 1;
                }
                None => break,
            },
            _ = tick.tick() => eprintln!(
                "  {:>5.1} s: {} upgraded, {ramp_failed} failed, server: {} connected, {} TLS, {} closed",
                ramp_start.elapsed().as_secs_f64(),
                upgraded.len(),
                server.log.connected.load(Ordering::Relaxed),
                server.log.tls.load(Ordering::Relaxed),
                server.log.closed.load(Ordering::Relaxed),
            ),
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    let ramp_end = upgraded
        .iter()
        .filter_map(|t| t.ready)
        .max()
        .unwrap_or(ramp_start);
    let ramp_secs = ramp_end.duration_since(ramp_start).as_secs_f64();
    let server_cpu1 = server.cpu();
    let overflows1 = listen_overflows();
    let client_cpu1 = cpu_secs(&me);
    let mut lat: Vec<Duration> = upgraded
        .iter()
        .filter_map(|t| Some(t.ready?.duration_since(t.start)))
        .collect();
    lat.sort();
    let mut hs: Vec<Duration> = upgraded
        .iter()
        .filter_map(|t| Some(t.tls?.duration_since(t.connected?)))
        .collect();
    hs.sort();
    let ok = upgraded.len();
    println!(
        "ramp: {ok} upgraded, {ramp_failed} failed{} in {ramp_secs:.2} s: {:.0} upgrades/s",
        if timed_out { " (overall timeout)" } else { "" },
        if ramp_secs > 0.0 {
            ok as f64 / ramp_secs
        } else {
            0.0
        },
    );
    if ramp_failed > 0 {
        println!("  ramp failures:{}", top(&ramp_errors));
    }
    if let (Some(a), Some(b)) = (overflows0, overflows1) {
        if b > a {
            println!(
                "  the kernel dropped {} connections at a full accept queue (TcpExt ListenOverflows, \
                 system-wide): a server-speaks-first client then waits for the SYN-ACK \
                 retransmission (1, 3, 7, 15, 31 s); lower --concurrency below serve's listen backlog (128)",
                b - a
            );
        }
    }
    println!(
        "  per session, connect to ready: p50 {}, p99 {}, max {}; connect to TLS established: p50 {}, p99 {}",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        ms(percentile(&hs, 0.5)),
        ms(percentile(&hs, 0.99)),
    );
    if let (Some(a), Some(b)) = (server_cpu0, server_cpu1) {
        let c = match (client_cpu0, client_cpu1) {
            (Some(x), Some(y)) if ok > 0 => format!(
                "; client {:.2} s = {:.2} ms per upgrade",
                y - x,
                (y - x) * 1000.0 / ok as f64
            ),
            _ => String::new(),
        };
        if ok > 0 {
            println!(
                "  CPU during the ramp: server {:.2} s = {:.2} ms per upgrade{c}",
                b - a,
                (b - a) * 1000.0 / ok as f64
            );
        }
    }

    // Held: every upgraded session idle, its connection open.
    if !timed_out {
        tokio::time::sleep(
            opts.hold
                .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
    }
    let server_rss1 = server.rss();
    let server_hwm = status_kib(&server.pid, "VmHWM");
    let server_threads1 = server.threads();
    let client_rss1 = status_kib(&me, "VmRSS");
    let held = shared.idle.load(Ordering::SeqCst);
    drop(shared);
    let server_open = server
        .log
        .connected
        .load(Ordering::Relaxed)
        .saturating_sub(server.log.closed.load(Ordering::Relaxed));
    println!(
        "held: {held} idle TLS sessions open ({} lost since their upgrade); \
         the server has {server_open} connections open, {server_threads1} threads",
        ok - held
    );
    println!(
        "  server RSS: {} before, {} with them (peak {}): {}",
        opt_kib(server_rss0),
        opt_kib(server_rss1),
        opt_kib(server_hwm),
        per_session(server_rss0, server_rss1, held)
    );
    println!(
        "  client RSS: {} before, {} with them: {}",
        opt_kib(client_rss0),
        opt_kib(client_rss1),
        per_session(client_rss0, client_rss1, held)
    );

    // Everyone quits.
    let quit_start = Instant::now();
    let _ = quit_tx.send(true);
    let mut quit_ok = 0usize;
    let mut quit_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut idle_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut unfinished = 0usize;
    for h in handles {
        let abort = h.abort_handle();
        match tokio::time::timeout_at(deadline, h).await {
            Ok(Ok(o)) => {
                if let Some(e) = o.idle_lost {
                    *idle_errors.entry(e).or_default() += 1;
                }
                match o.quit {
                    Some(Ok(())) => quit_ok += 1,
                    Some(Err(e)) => *quit_errors.entry(e).or_default() += 1,
                    None => {}
                }
            }
            Ok(Err(e)) => *quit_errors.entry(format!("task: {e}")).or_default() += 1,
            Err(_) => {
                abort.abort();
                unfinished += 1;
                timed_out = true;
            }
        }
    }
    let quit_failed: usize = quit_errors.values().sum();
    let idle_lost: usize = idle_errors.values().sum();
    println!(
        "quit: {quit_ok} closed cleanly, {quit_failed} failed, {idle_lost} lost while idle, \
         {unfinished} sessions unfinished at the overall timeout, in {:.2} s",
        quit_start.elapsed().as_secs_f64()
    );
    if idle_lost > 0 {
        println!("  lost while idle:{}", top(&idle_errors));
    }
    if quit_failed > 0 {
        println!("  quit failures:{}", top(&quit_errors));
    }

    // The server closes its side; its memory after.
    let wait_closed = Instant::now();
    while server.log.closed.load(Ordering::Relaxed) < server.log.connected.load(Ordering::Relaxed)
        && wait_closed.elapsed() < Duration::from_secs(10)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = &server.log;
    println!(
        "server: {} connected, {} TLS, {} closed, {} failed ({} log lines); RSS after all closed {}",
        log.connected.load(Ordering::Relaxed),
        log.tls.load(Ordering::Relaxed),
        log.closed.load(Ordering::Relaxed),
        log.failed.load(Ordering::Relaxed),
        log.lines.load(Ordering::Relaxed),
        opt_kib(server.rss()),
    );
    for f in log.failures.lock().expect("lock").iter() {
        println!("  server: {f}");
    }
    if !server.alive() {
        return Err(format!(
            "the server exited during the run{}",
            server.stderr()
        ));
    }
    let failures = ramp_failed + quit_failed + idle_lost + unfinished;
    println!("failures: {failures}");
    Ok(failures == 0 && !timed_out)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("scale: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let need = opts.sessions as u64 + FD_MARGIN;
    if let Err(e) = check_fds("self", "this process", need) {
        eprintln!("scale: {e}");
        return ExitCode::from(2);
    }
    let wall = Instant::now();
    let mut server = match Server::start(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scale: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&opts, &mut server));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Killed here, whatever happened.
    drop(server);
    println!("wall time: {:.2} s", wall.elapsed().as_secs_f64());
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}
