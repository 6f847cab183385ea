//! `starttls serve` and `starttls connect`, as processes, on loopback.
//!
//! Every test starts its own `serve` on free 127.0.0.1 ports (found by
//! binding port 0, then released) with `--max-connections`, so it exits by
//! itself once the test's connections are done; a guard kills it (and any
//! other child) if a test fails first. `connect` runs against it with the CA
//! written by `--ca-out`. Raw-socket probes and the library's own client
//! sessions check what `connect` does not exercise (injection, MAIL before
//! AUTH, BDAT, the IMAP mailbox and the POP3 maildrop). One test needs
//! python3 for a server without STARTTLS; it is skipped without python3,
//! except under `CI=true`, where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::{imap, pop3, smtp, ClientTls, Secret, TlsPolicy, Trust};

const BIN: &str = env!("CARGO_BIN_EXE_starttls");

/// How long anything may take before a test gives up.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "starttls-cli-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child on drop unless it has exited.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// `n` distinct free ports on 127.0.0.1 (held together so they differ,
/// then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Collects a pipe's lines in a thread.
fn collect_lines(pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let h = thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            match line {
                Ok(l) => sink.lock().expect("lines").push(l),
                Err(_) => break,
            }
        }
    });
    (lines, h)
}

/// What a finished process did.
struct Ran {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn report(&self) -> String {
        format!(
            "status: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs a command to completion, killed after `LIMIT`.
fn run(cmd: &mut Command) -> Ran {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut guard = Guard(child);
    let mut out = guard.0.stdout.take().expect("stdout");
    let mut err = guard.0.stderr.take().expect("stderr");
    let o = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match guard.0.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < LIMIT => thread::sleep(Duration::from_millis(10)),
            _ => break None,
        }
    };
    drop(guard);
    Ran {
        status,
        stdout: o.join().unwrap_or_default(),
        stderr: e.join().unwrap_or_default(),
    }
}

fn starttls(args: &[&str]) -> Ran {
    run(Command::new(BIN).args(args))
}

/// `starttls serve` for the length of a test.
struct Serve {
    guard: Guard,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<String>>>,
    dir: TempDir,
    ca: PathBuf,
    addrs: Vec<(String, SocketAddr)>,
}

impl Serve {
    /// Starts `kinds` on free ports; `serve` exits after `max` connections.
    fn start(kinds: &[&str], max: usize, extra: &[&str]) -> Serve {
        let dir = TempDir::new("serve");
        let ca = dir.join("ca.pem");
        let ports = free_ports(kinds.len());
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        for (kind, port) in kinds.iter().zip(&ports) {
            cmd.arg(format!("--{kind}"))
                .arg(format!("127.0.0.1:{port}"));
        }
        cmd.arg("--ca-out")
            .arg(&ca)
            .args(["--max-connections", &max.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn starttls serve");
        let out: ChildStdout = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let guard = Guard(child);
        let (lines, reader) = collect_lines(out);
        let (stderr, _) = collect_lines(err);
        let mut serve = Serve {
            guard,
            lines,
            reader: Some(reader),
            stderr,
            dir,
            ca,
            addrs: Vec::new(),
        };
        serve.wait_for("a `listening` line per listener", |lines| {
            kinds.iter().all(|k| listening(lines, k).is_some())
        });
        let lines = serve.lines();
        for (kind, port) in kinds.iter().zip(&ports) {
            let addr = listening(&lines, kind).expect("listening line");
            assert_eq!(addr.port(), *port, "serve listens where it was told");
            serve.addrs.push((kind.to_string(), addr));
        }
        assert!(serve.ca.is_file(), "serve wrote no --ca-out");
        serve
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    fn log(&self) -> String {
        format!(
            "--- serve stdout\n{}\n--- serve stderr\n{}",
            self.lines().join("\n"),
            self.stderr.lock().expect("stderr").join("\n")
        )
    }

    fn wait_for(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        while !done(&self.lines()) {
            if let Ok(Some(status)) = self.guard.0.try_wait() {
                // Let the reader drain the pipe.
                thread::sleep(Duration::from_millis(100));
                if done(&self.lines()) {
                    return;
                }
                panic!("serve exited ({status}) before {what}\n{}", self.log());
            }
            assert!(
                start.elapsed() < LIMIT,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn addr(&self, kind: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| *a)
            .expect("a listener of that kind")
    }

    fn url(&self, kind: &str) -> String {
        format!("{kind}://{}", self.addr(kind))
    }

    fn ca(&self) -> &str {
        self.ca.to_str().expect("utf-8 temp path")
    }

    /// Waits for serve to exit by itself (`--max-connections`); returns its
    /// whole log.
    fn finish(mut self) -> Vec<String> {
        let start = Instant::now();
        let status = loop {
            match self.guard.0.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if start.elapsed() < LIMIT => thread::sleep(Duration::from_millis(10)),
                _ => panic!("serve did not exit after --max-connections\n{}", self.log()),
            }
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        assert!(
            status.success(),
            "serve exited with {status}\n{}",
            self.log()
        );
        let _ = &self.dir;
        self.lines()
    }
}

/// `listening <kind> <addr>` in serve's output.
fn listening(lines: &[String], kind: &str) -> Option<SocketAddr> {
    lines.iter().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("listening") && w.next() == Some(kind))
            .then(|| w.next()?.parse().ok())
            .flatten()
    })
}

fn count(lines: &[String], pred: impl Fn(&str) -> bool) -> usize {
    lines.iter().filter(|l| pred(l)).count()
}

/// The keywords of a `CAPABILITIES [...]: ...` line.
fn capability_words(line: &str) -> Vec<String> {
    let list = line.split_once("]: ").map_or("", |(_, l)| l);
    list.split(|c: char| c.is_whitespace() || c == '|')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

// ------------------------------------------------------------- the tests

/// Every listener, our client against our server: TLS 1.3, capabilities
/// asked again over TLS without the upgrade, login over TLS, and a serve
/// that exits by itself after the seven connections.
#[test]
fn every_listener_upgrades_and_logs_in() {
    let kinds = [
        "smtp",
        "submission",
        "smtps",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
    ];
    let serve = Serve::start(&kinds, kinds.len(), &[]);
    for kind in kinds {
        let implicit = ["smtps", "imaps", "pop3s"].contains(&kind);
        let upgrade = if kind.starts_with("pop3") {
            "STLS"
        } else {
            "STARTTLS"
        };
        let url = serve.url(kind);
        let mut args = vec!["connect", &url, "--ca", serve.ca()];
        // Plain smtp also shows the MTA path without credentials.
        let login = kind != "smtp";
        if login {
            args.extend(["--user", "alice", "--password", "secret"]);
        }
        let ran = starttls(&args);
        let report = || format!("{kind}: {}\n{}", ran.report(), serve.log());
        assert_eq!(ran.code(), Some(0), "{}", report());
        let lines = ran.lines();
        assert!(
            lines.iter().any(|l| l.starts_with("TLS: TLSv1.3 ")),
            "{}",
            report()
        );
        assert_eq!(lines.last(), Some(&"OK"), "{}", report());
        let caps: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("CAPABILITIES ["))
            .collect();
        if implicit {
            assert_eq!(caps.len(), 1, "{}", report());
        } else {
            assert_eq!(caps.len(), 2, "{}", report());
            assert!(
                caps[0].starts_with("CAPABILITIES [cleartext]"),
                "{}",
                report()
            );
            assert!(
                capability_words(caps[0]).iter().any(|w| w == upgrade),
                "{}",
                report()
            );
        }
        let after = caps.last().expect("a capability list");
        assert!(after.starts_with("CAPABILITIES [tls]: "), "{}", report());
        assert!(
            !capability_words(after).iter().any(|w| w == upgrade),
            "{upgrade} offered over TLS\n{}",
            report()
        );
        // Only the negotiation went out in cleartext.
        for l in &lines {
            if let Some(sent) = l.strip_prefix("C: ") {
                if sent.starts_with("[tls] ") {
                    continue;
                }
                assert!(
                    !implicit
                        && [
                            "EHLO client.localhost",
                            "STARTTLS",
                            "A1 STARTTLS",
                            "CAPA",
                            "STLS"
                        ]
                        .contains(&sent),
                    "sent in cleartext: {sent}\n{}",
                    report()
                );
            }
        }
        if login {
            assert!(lines.contains(&"# authenticated"), "{}", report());
            assert!(
                !ran.stdout.contains("secret"),
                "password shown\n{}",
                report()
            );
        }
    }
    let log = serve.finish();
    let all = log.join("\n");
    for kind in kinds {
        let prefix = format!("[{kind} ");
        let of = |pred: &dyn Fn(&str) -> bool| count(&log, |l| l.starts_with(&prefix) && pred(l));
        assert_eq!(of(&|l| l.ends_with("] connected")), 1, "{kind}\n{all}");
        assert_eq!(of(&|l| l.ends_with("] closed")), 1, "{kind}\n{all}");
        assert_eq!(
            of(&|l| l.contains("] TLS TLSv1.3 TLS13_")),
            1,
            "{kind}\n{all}"
        );
        if kind != "smtp" {
            assert_eq!(
                of(&|l| l.ends_with(": alice authenticated")),
                1,
                "{kind}\n{all}"
            );
        }
    }
    assert!(!all.contains("DISCARDED"), "{all}");
    assert!(!all.contains("failed:"), "{all}");
    assert!(!all.contains("secret"), "{all}");
}

/// A wrong password: the server refuses it over TLS, the client says so,
/// exits 1 and never shows the password.
#[test]
fn wrong_password_is_refused() {
    let kinds = ["submission", "imap", "pop3"];
    let serve = Serve::start(&kinds, kinds.len(), &[]);
    for kind in kinds {
        let url = serve.url(kind);
        let ran = starttls(&[
            "connect",
            &url,
            "--ca",
            serve.ca(),
            "--user",
            "alice",
            "--password",
            "wrong-pw",
        ]);
        let report = || format!("{kind}: {}", ran.report());
        assert_eq!(ran.code(), Some(1), "{}", report());
        assert!(
            ran.lines()
                .iter()
                .any(|l| l.starts_with("ERROR: ") && l.contains("refused")),
            "{}",
            report()
        );
        assert!(!ran.stdout.contains("wrong-pw"), "{}", report());
        assert!(
            ran.lines().iter().any(|l| l.starts_with("TLS: TLSv1.3")),
            "{}",
            report()
        );
    }
    let log = serve.finish();
    assert_eq!(
        count(&log, |l| l.contains("authentication failed for \"alice\"")),
        3,
        "{}",
        log.join("\n")
    );
}

/// Without `--ca` nothing is trusted: the handshake fails on the
/// certificate, and the message says why.
#[test]
fn connect_without_ca_refuses_the_certificate() {
    let serve = Serve::start(&["smtp"], 1, &[]);
    let url = serve.url("smtp");
    let ran = starttls(&["connect", &url]);
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    let lines = ran.lines();
    let i = lines
        .iter()
        .position(|l| l.starts_with("ERROR: "))
        .unwrap_or_else(|| panic!("no ERROR line\n{}", ran.report()));
    assert!(
        lines[i].contains("certificate") && lines[i].contains("--ca"),
        "{}",
        ran.report()
    );
    assert!(
        lines
            .get(i + 1)
            .is_some_and(|l| l.starts_with("       Tls(")),
        "{}",
        ran.report()
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("TLS: ")),
        "{}",
        ran.report()
    );
    let log = serve.finish();
    assert!(
        log.iter().any(|l| l.contains("] failed: ")),
        "{}",
        log.join("\n")
    );
}

/// `--server-name` that the certificate does not carry: refused.
#[test]
fn connect_checks_the_server_name() {
    let serve = Serve::start(&["imaps"], 1, &[]);
    let url = serve.url("imaps");
    let ran = starttls(&[
        "connect",
        &url,
        "--ca",
        serve.ca(),
        "--server-name",
        "mail.example.org",
    ]);
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    assert!(
        ran.lines()
            .iter()
            .any(|l| l.starts_with("ERROR: ") && l.contains("certificate rejected")),
        "{}",
        ran.report()
    );
    serve.finish();
}

/// The python fake: an SMTP server that never offers STARTTLS. Prints
/// `PORT <n>`, serves one connection, then prints `HEARD <line>` for every
/// line the client sent.
const PLAIN_SMTP: &str = r#"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print("PORT", s.getsockname()[1], flush=True)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(10)
buf = b""
try:
    c.sendall(b"220 plain.localhost ESMTP no TLS here\r\n")
    while True:
        data = c.recv(4096)
        if not data:
            break
        buf += data
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            print("HEARD", line.decode(errors="replace"), flush=True)
            verb = line[:4].upper()
            if verb == b"EHLO":
                c.sendall(b"250-plain.localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                c.sendall(b"221 bye\r\n")
            else:
                c.sendall(b"250 ok\r\n")
except OSError as e:
    print("ENDED", e, flush=True)
if buf:
    print("HEARD", buf.decode(errors="replace"), "(no CRLF)", flush=True)
"#;

/// Runs `connect` with `args` against the python fake; returns its run and
/// what the fake heard. `None` when python3 is missing (outside CI).
fn against_plain_smtp(args: &[&str]) -> Option<(Ran, Vec<String>)> {
    let mut child = match Command::new("python3")
        .args(["-c", PLAIN_SMTP])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 is needed under CI=true: {e}"
            );
            eprintln!("SKIPPED: python3 not available: {e}");
            return None;
        }
    };
    let out = child.stdout.take().expect("stdout");
    let guard = Guard(child);
    let (lines, reader) = collect_lines(out);
    let start = Instant::now();
    let port = loop {
        let port = lines
            .lock()
            .expect("lines")
            .iter()
            .find_map(|l| l.strip_prefix("PORT ").map(str::to_string));
        if let Some(p) = port {
            break p;
        }
        assert!(start.elapsed() < LIMIT, "the python fake did not start");
        thread::sleep(Duration::from_millis(10));
    };
    let url = format!("smtp://127.0.0.1:{port}");
    let mut full = vec!["connect", url.as_str()];
    full.extend_from_slice(args);
    let ran = starttls(&full);
    let _ = reader.join();
    drop(guard);
    let heard = lines
        .lock()
        .expect("lines")
        .iter()
        .filter_map(|l| l.strip_prefix("HEARD ").map(str::to_string))
        .collect();
    Some((ran, heard))
}

/// `--policy required` against a server that does not offer STARTTLS:
/// exit 1 with the typed error, and the server heard only EHLO and QUIT.
#[test]
fn required_policy_fails_closed_without_starttls() {
    let Some((ran, heard)) = against_plain_smtp(&["--policy", "required"]) else {
        return;
    };
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    assert!(
        ran.lines()
            .iter()
            .any(|l| l.starts_with("ERROR: ") && l.contains("STARTTLS")),
        "{}",
        ran.report()
    );
    assert!(
        ran.lines()
            .iter()
            .any(|l| l.starts_with("       TlsRequired {")),
        "{}",
        ran.report()
    );
    assert_eq!(heard, ["EHLO client.localhost", "QUIT"], "{}", ran.report());
    assert!(ran.lines().contains(&"C: QUIT"), "{}", ran.report());
}

/// `--policy opportunistic` against the same server goes on in cleartext,
/// says so, and still never sends credentials there.
#[test]
fn opportunistic_policy_never_sends_credentials_in_cleartext() {
    let Some((ran, heard)) = against_plain_smtp(&["--policy", "opportunistic"]) else {
        return;
    };
    assert_eq!(ran.code(), Some(0), "{}", ran.report());
    assert!(
        ran.stdout.contains("ready in CLEARTEXT"),
        "{}",
        ran.report()
    );
    assert_eq!(heard, ["EHLO client.localhost", "QUIT"], "{}", ran.report());

    let Some((ran, heard)) = against_plain_smtp(&[
        "--policy",
        "opportunistic",
        "--user",
        "alice",
        "--password",
        "secret",
    ]) else {
        return;
    };
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    assert!(
        ran.lines()
            .iter()
            .any(|l| l.starts_with("ERROR: AUTH not sent")),
        "{}",
        ran.report()
    );
    assert_eq!(heard, ["EHLO client.localhost", "QUIT"], "{}", ran.report());
}

/// CVE-2011-0411 against serve: `RSET` pipelined behind `STARTTLS` in one
/// write is discarded unread, reported, and never answered.
#[test]
fn injection_after_starttls_is_discarded() {
    let serve = Serve::start(&["smtp"], 1, &[]);
    let mut sock = TcpStream::connect(serve.addr("smtp")).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |sock: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]| {
        while !got.windows(needle.len()).any(|w| w == needle) {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => panic!("closed before {:?}", String::from_utf8_lossy(got)),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    read_until(&mut sock, &mut got, b"ESMTP\r\n");
    sock.write_all(b"EHLO x\r\nSTARTTLS\r\nRSET\r\n")
        .expect("write");
    read_until(&mut sock, &mut got, b"220 2.0.0 Ready to start TLS\r\n");
    // Give the server time to (wrongly) answer RSET, then look.
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut extra = Vec::new();
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
        extra.extend_from_slice(&buf[..n]);
    }
    drop(sock);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.ends_with("\r\n220 2.0.0 Ready to start TLS\r\n"),
        "{text}"
    );
    assert!(
        extra.is_empty(),
        "answered after 220: {:?}",
        String::from_utf8_lossy(&extra)
    );
    let log = serve.finish();
    let all = log.join("\n");
    assert_eq!(
        count(&log, |l| l
            .ends_with("] DISCARDED 6 bytes injected before TLS")),
        1,
        "{all}"
    );
    assert!(!all.contains("Rset"), "{all}");
}

// ------------------------------------ the library's clients against serve

/// The session on the blocking driver; `app` takes the events. Fails on a
/// session error.
fn drive<S: starttls::Session>(
    addr: SocketAddr,
    session: S,
    mut app: impl FnMut(&mut S, S::Event),
) {
    let sock = TcpStream::connect(addr).expect("connect");
    let mut driver = starttls_io::blocking::Driver::new(session, sock)
        .with_timeouts(starttls::Timeouts::all(Duration::from_secs(10)));
    loop {
        match driver.next_event() {
            Ok(Some(event)) => app(driver.session_mut(), event),
            Ok(None) => break,
            Err(e) => panic!("session failed: {e}"),
        }
    }
    driver.close().expect("close");
}

fn client_tls(ca: &Path) -> ClientTls {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClientTls::Rustls {
        config: Arc::new(config),
        server_name: ServerName::try_from("localhost").expect("name"),
    }
}

fn smtp_command(line: &str) -> smtp::Command {
    smtp::Command::parse(&Bytes::copy_from_slice(line.as_bytes())).expect("a valid command")
}

/// Runs an SMTP script over STARTTLS or implicit TLS: `next` gets the verb
/// and code of each reply and the session, and sends what follows. Returns
/// `(verb, code, text)` of every reply.
fn smtp_script(
    addr: SocketAddr,
    ca: &Path,
    policy: TlsPolicy,
    mut next: impl FnMut(&mut smtp::ClientSession, Option<(&str, u16)>),
) -> Vec<(String, u16, String)> {
    let config = smtp::ClientConfig::new("client.localhost", policy, client_tls(ca));
    let c = smtp::ClientSession::new(Arc::new(config)).expect("session");
    let mut replies = Vec::new();
    drive(addr, c, |c, e| match e {
        smtp::ClientEvent::Ready { trust } => {
            assert_eq!(trust, Trust::Tls);
            next(c, None);
        }
        smtp::ClientEvent::Reply { to, reply } => {
            assert_eq!(reply.trust, Trust::Tls);
            let code = reply.code().get();
            let text = String::from_utf8_lossy(reply.raw()).into_owned();
            replies.push((to.to_string(), code, text));
            next(c, Some((to, code)));
        }
        _ => {}
    });
    replies
}

/// Submission refuses MAIL until AUTH succeeded, then takes a message by
/// DATA; AUTH LOGIN works as well as AUTH PLAIN.
#[test]
fn submission_requires_auth_before_mail() {
    let serve = Serve::start(&["submission", "smtps"], 2, &[]);
    let ca = serve.ca.clone();
    const MESSAGE: &[u8] = b"Subject: cli\r\n\r\n.leading dot\r\n";
    let replies = smtp_script(
        serve.addr("submission"),
        &ca,
        TlsPolicy::StartTlsRequired,
        |c, reply| {
            let r = match reply {
                None => c.send(smtp_command("MAIL FROM:<alice@localhost>")),
                Some(("MAIL", 530)) => c.send(smtp_command("AUTH PLAIN AGFsaWNlAHNlY3JldA==")),
                Some(("AUTH", 235)) => c.send(smtp_command("MAIL FROM:<alice@localhost>")),
                Some(("MAIL", 250)) => c.send(smtp_command("RCPT TO:<bob@example.org>")),
                Some(("RCPT", 250)) => c.send(smtp::Command::Data),
                Some(("DATA", 354)) => c.send_data(MESSAGE).and_then(|()| c.finish_data()),
                Some(("QUIT", _)) => Ok(()),
                Some(_) => c.send(smtp::Command::Quit),
            };
            r.expect("send");
        },
    );
    let codes: Vec<u16> = replies.iter().map(|r| r.1).collect();
    assert_eq!(codes, [530, 235, 250, 250, 354, 250, 221], "{replies:?}");
    assert!(
        replies[0]
            .2
            .starts_with("530 5.7.0 Authentication required"),
        "{replies:?}"
    );

    // AUTH LOGIN over implicit TLS, challenge by challenge.
    let mut challenges = 0;
    let replies = smtp_script(serve.addr("smtps"), &ca, TlsPolicy::Implicit, |c, reply| {
        let r = match reply {
            None => c.send(smtp_command("AUTH LOGIN")),
            Some(("AUTH", 334)) => {
                // Username, then password: answer in turn.
                challenges += 1;
                let answer = if challenges == 1 {
                    "YWxpY2U=" // alice
                } else {
                    "c2VjcmV0" // secret
                };
                c.send_auth_response(Secret::new(Bytes::from_static(answer.as_bytes())))
            }
            Some(("QUIT", _)) => Ok(()),
            Some(_) => c.send(smtp::Command::Quit),
        };
        r.expect("send");
    });
    let codes: Vec<u16> = replies.iter().map(|r| r.1).collect();
    assert_eq!(codes, [334, 334, 235, 221], "{replies:?}");
    assert!(replies[0].2.starts_with("334 VXNlcm5hbWU6"), "{replies:?}");
    let log = serve.finish();
    let all = log.join("\n");
    let accepted = format!("message of {} bytes accepted (DATA", MESSAGE.len());
    assert_eq!(count(&log, |l| l.contains(&accepted)), 1, "{all}");
    assert_eq!(
        count(&log, |l| l.contains("AUTH LOGIN: alice authenticated")),
        1,
        "{all}"
    );
}

/// The MTA listener takes any sender and recipient without AUTH, and BDAT.
#[test]
fn smtp_accepts_mail_without_auth_and_bdat() {
    let serve = Serve::start(&["smtp"], 1, &[]);
    let ca = serve.ca.clone();
    let replies = smtp_script(
        serve.addr("smtp"),
        &ca,
        TlsPolicy::StartTlsRequired,
        |c, reply| {
            let r = match reply {
                None => c.send(smtp_command("MAIL FROM:<sender@example.net>")),
                Some(("MAIL", 250)) => c.send(smtp_command("RCPT TO:<anyone@localhost>")),
                Some(("RCPT", 250)) => c.send_chunk(b"Subject: bdat\r\n\r\nhi\r\n", true),
                Some(("QUIT", _)) => Ok(()),
                Some(_) => c.send(smtp::Command::Quit),
            };
            r.expect("send");
        },
    );
    let codes: Vec<u16> = replies.iter().map(|r| r.1).collect();
    assert_eq!(codes, [250, 250, 250, 221], "{replies:?}");
    let log = serve.finish();
    assert_eq!(
        count(&log, |l| l.contains("message of 21 bytes accepted (BDAT")),
        1,
        "{}",
        log.join("\n")
    );
}

fn imap_body(text: &str) -> imap::CommandBody {
    imap::Command::parse(&Bytes::from(format!("x {text}")))
        .expect("a valid command")
        .body
}

/// The IMAP mailbox: LOGIN, SELECT, FETCH and UID FETCH of the one message
/// as a literal, LIST, LOGOUT — all over TLS.
#[test]
fn imap_mailbox_over_tls() {
    let serve = Serve::start(&["imap"], 1, &[]);
    let config = imap::ClientConfig::new(TlsPolicy::StartTlsRequired, client_tls(&serve.ca));
    let c = imap::ClientSession::new(Arc::new(config)).expect("session");
    let script = [
        "LOGIN alice secret",
        "SELECT INBOX",
        "FETCH 1 (BODY[])",
        "UID FETCH 1 (RFC822 FLAGS)",
        "FETCH 1 BODY.PEEK[]",
        "LIST \"\" *",
        "FETCH 2 (BODY[])",
        "LOGOUT",
    ];
    let mut next = 0;
    let mut seen: Vec<String> = Vec::new();
    drive(serve.addr("imap"), c, |c, e| {
        let go = match &e {
            imap::ClientEvent::Ready { .. } => true,
            imap::ClientEvent::Untagged(r) => {
                assert_eq!(r.trust, Trust::Tls);
                seen.push(String::from_utf8_lossy(&r.message.to_bytes()).into_owned());
                false
            }
            imap::ClientEvent::Tagged { status, .. } => {
                assert_eq!(status.trust, Trust::Tls);
                let mut v = Vec::new();
                status.message.write_to(&mut v);
                seen.push(format!("TAGGED {}", String::from_utf8_lossy(&v)));
                true
            }
            _ => false,
        };
        if go {
            if let Some(cmd) = script.get(next) {
                next += 1;
                c.send(imap_body(cmd)).expect("send");
            }
        }
    });
    let all = seen.join("\n");
    let has = |s: &str| seen.iter().any(|l| l.contains(s));
    assert!(has("* 1 EXISTS"), "{all}");
    assert!(has("* FLAGS (\\Seen)"), "{all}");
    assert!(has("TAGGED OK [READ-WRITE]"), "{all}");
    assert!(has("* 1 FETCH (BODY[] {"), "{all}");
    assert!(has("* 1 FETCH (UID 1 RFC822 {"), "{all}");
    assert!(has("A2 STARTTLS\r\n(the line above"), "{all}");
    assert!(has("* LIST (\\HasNoChildren) \"/\" INBOX"), "{all}");
    assert!(has("TAGGED NO No such message"), "{all}");
    assert_eq!(count(&seen, |l| l.starts_with("TAGGED OK")), 7, "{all}");
    serve.finish();
}

/// The POP3 maildrop: STAT, LIST, UIDL, TOP, RETR (unstuffed), DELE, RSET,
/// NOOP, QUIT — all over TLS.
#[test]
fn pop3_maildrop_over_tls() {
    let serve = Serve::start(&["pop3s"], 1, &[]);
    let config = pop3::ClientConfig::new(TlsPolicy::Implicit, client_tls(&serve.ca));
    let c = pop3::ClientSession::new(Arc::new(config)).expect("session");
    let mut script = [
        "USER alice",
        "PASS secret",
        "STAT",
        "LIST",
        "UIDL",
        "TOP 1 1",
        "RETR 1",
        "DELE 1",
        "STAT",
        "RSET",
        "STAT",
        "NOOP",
        "QUIT",
    ]
    .into_iter();
    let mut seen: Vec<String> = Vec::new();
    let mut body = Vec::new();
    drive(serve.addr("pop3s"), c, |c, e| {
        let go = match &e {
            pop3::ClientEvent::Ready { .. } => true,
            pop3::ClientEvent::Reply {
                to,
                status,
                multiline,
            } => {
                assert_eq!(status.trust, Trust::Tls);
                seen.push(format!("{to} {}", status.message));
                !multiline
            }
            pop3::ClientEvent::Body(p) => {
                body.extend_from_slice(p);
                false
            }
            pop3::ClientEvent::BodyEnd => {
                seen.push(format!("BODY {}", String::from_utf8_lossy(&body)));
                body.clear();
                true
            }
            _ => false,
        };
        if go {
            if let Some(line) = script.next() {
                let cmd = pop3::Command::parse(&Bytes::from_static(line.as_bytes()))
                    .expect("a valid command");
                c.send(cmd).expect("send");
            }
        }
    });
    let all = seen.join("\n");
    let stats: Vec<&String> = seen.iter().filter(|l| l.starts_with("STAT ")).collect();
    assert_eq!(stats.len(), 3, "{all}");
    assert!(stats[0].starts_with("STAT +OK 1 "), "{all}");
    assert_eq!(stats[1], "STAT +OK 0 0", "{all}");
    assert!(stats[2].starts_with("STAT +OK 1 "), "{all}");
    assert!(
        seen.iter().any(|l| l == "BODY 1 starttls-serve-0001\r\n"),
        "{all}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("BODY From: Bob") && l.ends_with("\r\n\r\nHi Alice,\r\n")),
        "{all}"
    );
    assert!(
        seen.iter().any(|l| l.contains(
            "\r\n.this line starts with a dot, and the next line is a single dot:\r\n.\r\n"
        )),
        "{all}"
    );
    assert!(seen.iter().all(|l| !l.contains("-ERR")), "{all}");
    serve.finish();
}

// ------------------------------------------------------------- usage

#[test]
fn serve_usage_errors_exit_2() {
    for args in [
        vec!["serve"],
        vec!["serve", "--smtp", "0.0.0.0:2525"],
        vec![
            "serve",
            "--imap",
            "127.0.0.1:1143",
            "--pop3",
            "192.0.2.1:1110",
        ],
        vec!["serve", "--imap", "[::]:1143"],
        vec![
            "serve",
            "--imap",
            "127.0.0.1:1143",
            "--cert",
            "/nonexistent.pem",
        ],
        vec![
            "serve",
            "--imap",
            "127.0.0.1:1143",
            "--cert",
            "/nonexistent.pem",
            "--key",
            "/nonexistent.pem",
        ],
    ] {
        let ran = starttls(&args);
        assert_eq!(ran.code(), Some(2), "{args:?}\n{}", ran.report());
        assert!(
            !ran.stdout.contains("listening"),
            "{args:?}\n{}",
            ran.report()
        );
    }
}

#[test]
fn connect_usage_errors_exit_2() {
    // A port nobody listens on.
    let port = free_ports(1)[0];
    let refused = format!("smtp://127.0.0.1:{port}");
    for args in [
        vec!["connect", "http://127.0.0.1:25"],
        vec!["connect", "imap://127.0.0.1:99999"],
        vec!["connect", "imap://::1:143"],
        vec!["connect", "127.0.0.1:143"],
        vec!["connect", "imap://127.0.0.1:143", "--policy", "sometimes"],
        vec![
            "connect",
            "imap://127.0.0.1:143",
            "--ca",
            "/nonexistent.pem",
        ],
        vec!["connect", "imap://127.0.0.1:143", "--user", "alice"],
        vec!["connect", &refused],
    ] {
        let ran = starttls(&args);
        assert_eq!(ran.code(), Some(2), "{args:?}\n{}", ran.report());
    }
    let ran = starttls(&["connect", &refused]);
    assert!(
        ran.stdout.contains("ERROR: cannot connect"),
        "{}",
        ran.report()
    );
}

// ------------------------------------------------ client certificates

/// `serve --client-ca` and `connect --client-cert --client-key --sasl
/// external`: the three protocols log in with the certificate alone (SASL
/// EXTERNAL, RFC 4422 Appendix A), offered only over TLS and only to a
/// client whose certificate was verified; without a certificate the client
/// refuses to try, a certificate from another CA fails the handshake, and
/// an authorization identity the certificate does not name is refused by
/// the server's application.
#[test]
fn client_certificate_logs_in_with_sasl_external() {
    use starttls_conformance::pki::ClientPki;
    let dir = TempDir::new("client-cert");
    let alice = ClientPki::generate("alice").expect("client pki");
    let [client_ca, cert, key] = alice.write(&dir.0, "alice").expect("write pems");
    let stranger = ClientPki::generate("alice").expect("another client pki");
    let [_, other_cert, other_key] = stranger.write(&dir.0, "stranger").expect("write pems");
    let path = |p: &PathBuf| p.to_str().expect("utf-8 temp path").to_string();
    let (client_ca, cert, key) = (path(&client_ca), path(&cert), path(&key));
    let (other_cert, other_key) = (path(&other_cert), path(&other_key));

    let kinds = ["submission", "imap", "pop3"];
    let serve = Serve::start(&kinds, kinds.len() + 3, &["--client-ca", &client_ca]);
    for kind in kinds {
        let url = serve.url(kind);
        let ran = starttls(&[
            "connect",
            &url,
            "--ca",
            serve.ca(),
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            "--sasl",
            "external",
        ]);
        let report = || format!("{kind}: {}", ran.report());
        assert_eq!(ran.code(), Some(0), "{}", report());
        assert!(ran.lines().contains(&"# authenticated"), "{}", report());
        let caps = |trust: &str| {
            ran.lines()
                .into_iter()
                .find(|l| l.starts_with(&format!("CAPABILITIES [{trust}]")))
                .map(str::to_string)
                .unwrap_or_default()
        };
        assert!(caps("tls").contains("EXTERNAL"), "{}", report());
        assert!(!caps("cleartext").contains("EXTERNAL"), "{}", report());
        assert!(
            ran.lines()
                .iter()
                .any(|l| l.contains("EXTERNAL") && l.starts_with("C: [tls] ")),
            "{}",
            report()
        );
    }

    // No certificate: not advertised, and the client does not try.
    let ran = starttls(&[
        "connect",
        &serve.url("submission"),
        "--ca",
        serve.ca(),
        "--sasl",
        "external",
    ]);
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    assert!(
        ran.stdout
            .contains("refusing SASL EXTERNAL: no TLS client certificate was configured"),
        "{}",
        ran.report()
    );
    assert!(!ran.stdout.contains("AUTH EXTERNAL"), "{}", ran.report());

    // A certificate from a CA the server does not trust: no TLS at all.
    let ran = starttls(&[
        "connect",
        &serve.url("imap"),
        "--ca",
        serve.ca(),
        "--client-cert",
        &other_cert,
        "--client-key",
        &other_key,
        "--sasl",
        "external",
    ]);
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    assert!(
        ran.lines().iter().any(|l| l.starts_with("ERROR: ")),
        "{}",
        ran.report()
    );
    assert!(!ran.stdout.contains("# authenticated"), "{}", ran.report());

    // An authorization identity the certificate does not name.
    let ran = starttls(&[
        "connect",
        &serve.url("pop3"),
        "--ca",
        serve.ca(),
        "--client-cert",
        &cert,
        "--client-key",
        &key,
        "--sasl",
        "external",
        "--authzid",
        "bob",
    ]);
    assert_eq!(ran.code(), Some(1), "{}", ran.report());
    assert!(ran.stdout.contains("AUTH refused"), "{}", ran.report());

    let log = serve.finish();
    let all = log.join("\n");
    assert_eq!(
        count(&log, |l| l.contains(
            "EXTERNAL: certificate \"CN=alice, O=starttls test\" authenticated as alice"
        )),
        3,
        "{all}"
    );
    assert_eq!(
        count(&log, |l| l.contains("refused for authzid bob")),
        1,
        "{all}"
    );
    assert_eq!(
        count(&log, |l| l.contains("failed: TLS")
            || l.contains("certificate rejected")),
        1,
        "{all}"
    );
}
