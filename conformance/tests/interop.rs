//! Interop with real mail software, on loopback.
//!
//! * our client (`starttls connect`) against Postfix 3.7 (smtp, submission),
//!   Dovecot 2.3 (imap, imaps, pop3, pop3s) and aiosmtpd 1.4.6 (smtp);
//! * real clients against our server (`starttls serve`): Python's smtplib,
//!   imaplib and poplib, curl, `openssl s_client`, swaks and msmtp;
//! * `starttls probe` calibrated against Postfix, Dovecot, aiosmtpd 1.4.6 and
//!   aiosmtpd 1.4.5 (CVE-2024-34083, its own venv): the verdict of every
//!   check asserted (docs/probe.md's calibration table).
//!
//! The peers are installed by `conformance/peers/install.sh` (run as root);
//! their configuration templates live beside it. A test whose peer is missing
//! prints `SKIPPED: ...` and passes, except under `CI=true`, where it fails and
//! says to run the install script. Every server is started in the foreground
//! on 127.0.0.1 (Dovecot also on 127.0.0.2) with free ports and a throwaway
//! CA and leaf certificate made with the openssl CLI in a temp dir; every
//! external process is killed after 30 s at most; temp dirs are removed
//! (set `STARTTLS_INTEROP_KEEP=1` to keep them for a look).
//!
//! Run: `cargo test -p starttls-conformance --test interop -- --test-threads=1`.
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Any external process is killed after this long.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Servers started by a test are killed by `timeout(1)` after this long even
/// if the test process itself dies without running its destructors.
const DAEMON_LIFETIME_SECS: u32 = 240;

const STARTTLS: &str = env!("CARGO_BIN_EXE_starttls");
const INSTALL_HINT: &str = "run `bash conformance/peers/install.sh` as root to install the peers";

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

// ---------------------------------------------------------------------------
// Requirements: skip locally, fail in CI.

enum Need {
    /// A program, by absolute path or looked up in PATH.
    Program(&'static str),
    /// A Python module importable by `python3`.
    PythonModule(&'static str),
    /// The test must run as root (Postfix's master does).
    Root,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Writes straight to the process's stderr, past the test harness's capture,
/// so that SKIPPED lines and the interop matrix show in `cargo test` output.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn program_exists(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

fn python_has(module: &str) -> bool {
    program_exists("python3")
        && run(
            Command::new("python3").args(["-c", &format!("import {module}")]),
            &[],
        )
        .success()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// True when everything `test` needs is here. Otherwise prints `SKIPPED: ..`
/// and returns false, or, under `CI=true`, panics.
fn requirements_met(test: &str, needs: &[Need]) -> bool {
    let mut missing = Vec::new();
    for need in needs {
        match need {
            Need::Program(p) => {
                if !program_exists(p) {
                    missing.push(format!("program `{p}`"));
                }
            }
            Need::PythonModule(m) => {
                if !python_has(m) {
                    missing.push(format!("python3 module `{m}`"));
                }
            }
            Need::Root => {
                if !is_root() {
                    missing.push("root (Postfix's master runs as root)".to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: missing {}", missing.join(", "));
    if in_ci() {
        panic!("{why}; {INSTALL_HINT} (CI=true: a missing peer is a failure, not a skip)");
    }
    say(&format!("SKIPPED: {why}; {INSTALL_HINT}"));
    false
}

// ---------------------------------------------------------------------------
// Processes with timeouts.

/// What a finished (or killed) process left.
struct Ran {
    cmdline: String,
    /// `None` when it was killed at the timeout.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn code(&self) -> String {
        match self.status {
            None => format!("killed after {PROCESS_TIMEOUT:?}"),
            Some(s) => match s.code() {
                Some(c) => format!("exit {c}"),
                None => format!("{s}"),
            },
        }
    }

    fn report(&self) -> String {
        format!(
            "$ {}\n[{}]\n--- stdout\n{}\n--- stderr\n{}",
            self.cmdline,
            self.code(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn spawn_reader<R: Read + Send + 'static>(r: Option<R>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, killing it after [`PROCESS_TIMEOUT`]. `stdin` is
/// written line by line: each item after a pause (items may be empty for a
/// pure pause), then stdin is closed.
fn run_paced(cmd: &mut Command, stdin: &[(&str, Duration)]) -> Ran {
    let cmdline = describe(cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    let mut sin = child.stdin.take();
    let input: Vec<(String, Duration)> = stdin.iter().map(|(s, d)| (s.to_string(), *d)).collect();
    let writer = thread::spawn(move || {
        if let Some(w) = sin.as_mut() {
            for (text, pause) in input {
                thread::sleep(pause);
                if w.write_all(text.as_bytes())
                    .and_then(|()| w.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
        drop(sin);
    });
    let out = spawn_reader(child.stdout.take());
    let err = spawn_reader(child.stderr.take());
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(25)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Ran {
        cmdline,
        status,
        stdout,
        stderr,
    }
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Ran {
    let text = String::from_utf8_lossy(stdin);
    run_paced(cmd, &[(&text, Duration::ZERO)])
}

fn must(cmd: &mut Command) -> Ran {
    let ran = run(cmd, &[]);
    assert!(ran.success(), "setup command failed:\n{}", ran.report());
    ran
}

/// A server running in the foreground for the length of a test. Its stdout
/// and stderr are collected line by line; it is stopped on drop (SIGTERM,
/// then SIGKILL), and `timeout(1)` kills it anyway after
/// [`DAEMON_LIFETIME_SECS`].
struct Daemon {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    fn spawn(name: &str, program: &str, args: &[&str]) -> Daemon {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &DAEMON_LIFETIME_SECS.to_string(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cmdline = describe(&cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (`{cmdline}`): {e}"));
        let lines = Arc::new(Mutex::new(vec![format!("$ {cmdline}")]));
        let mut readers = Vec::new();
        let out: Option<Box<dyn Read + Send>> = child.stdout.take().map(|s| Box::new(s) as _);
        let err: Option<Box<dyn Read + Send>> = child.stderr.take().map(|s| Box::new(s) as _);
        for stream in [out, err].into_iter().flatten() {
            let lines = Arc::clone(&lines);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        Daemon {
            name: name.to_string(),
            child,
            lines,
            readers,
            status: None,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until `ready` holds on the output so far.
    fn wait_for(&mut self, what: &str, ready: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if ready(&self.lines()) {
                return;
            }
            if let Some(s) = self.exited() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} exited ({s}) before {what}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready ({what}) after {STARTUP_TIMEOUT:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `within` for the process to exit by itself, then stops it.
    /// Returns the exit status if it exited by itself.
    fn finish(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                self.join_readers();
                return Some(s);
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        None
    }

    fn stop(&mut self) {
        if self.exited().is_none() {
            // SIGTERM first: timeout(1) passes it on, and Postfix's master
            // and Dovecot take their children down with them.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.exited().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            if self.exited().is_none() {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        // A grandchild may hold the pipes open; don't wait for it forever.
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Temp dirs, ports, certificates, templates.

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "starttls-interop-{tag}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        // Postfix's and Dovecot's unprivileged processes must traverse it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STARTTLS_INTEROP_KEEP").is_some() {
            say(&format!("kept {}", self.0.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `n` distinct free TCP ports on `ip` (held together, then released).
fn free_ports(ip: &str, n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((ip, 0)).expect("bind a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A throwaway CA and a leaf for localhost, 127.0.0.1, 127.0.0.2 and ::1.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &TempDir) -> Pki {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    must(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=starttls interop throwaway CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    must(Command::new("openssl").args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
        "-subj",
        "/CN=localhost",
    ]));
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:::1\n",
    )
    .expect("write leaf.ext");
    must(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &p("leaf.pem"),
        "-extfile",
        &p("leaf.ext"),
    ]));
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    }
}

/// Reads `peers/<template>`, replaces each `@NAME@`, and writes it to `to`.
fn render(template: &str, vars: &[(&str, String)], to: &Path) {
    let src = peers_dir().join(template);
    let mut text =
        std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    for (name, value) in vars {
        text = text.replace(&format!("@{name}@"), value);
    }
    let leftover: Vec<&str> = text
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(leftover.is_empty(), "{template}: unfilled {leftover:?}");
    std::fs::write(to, text).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
}

fn id_of(flag: &str, name: &str) -> String {
    must(Command::new("id").args([flag, name]))
        .stdout
        .trim()
        .to_string()
}

/// Waits until `addr` accepts a connection and (if `greeting` is given) its
/// first line starts with `greeting`.
fn wait_listening(addr: SocketAddr, greeting: Option<&str>, log: impl Fn() -> String) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                let Some(want) = greeting else { return };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                if line.starts_with(want) {
                    return;
                }
                last = format!("greeting {line:?}");
            }
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{addr} not ready after {STARTUP_TIMEOUT:?} ({last}):\n{}",
        log()
    );
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

// ---------------------------------------------------------------------------
// Results: one line per case, then one verdict per test.

struct Matrix {
    peer: &'static str,
    rows: Vec<(String, Result<(), String>)>,
}

impl Matrix {
    fn new(peer: &'static str) -> Matrix {
        Matrix {
            peer,
            rows: Vec::new(),
        }
    }

    fn record(&mut self, case: &str, result: Result<(), String>) {
        say(&format!(
            "interop: {:<10} {:<32} {}",
            self.peer,
            case,
            if result.is_ok() { "pass" } else { "FAIL" }
        ));
        self.rows.push((case.to_string(), result));
    }

    fn finish(self) {
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter_map(|(case, r)| r.as_ref().err().map(|e| format!("=== {case}\n{e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "{}: {} of {} cases failed\n{}",
            self.peer,
            failed.len(),
            self.rows.len(),
            failed.join("\n\n")
        );
    }
}

fn expect(ok: bool, what: &str, ran: &Ran) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected {what}\n{}", ran.report()))
    }
}

// ---------------------------------------------------------------------------
// Our client.

fn starttls_connect(url: &str, ca: &Path, extra: &[&str]) -> Ran {
    run(
        Command::new(STARTTLS)
            .arg("connect")
            .arg(url)
            .arg("--ca")
            .arg(ca)
            .args(["--server-name", "localhost"])
            .args(extra),
        &[],
    )
}

/// What a `starttls connect` run must show.
#[derive(Clone, Copy)]
struct Expect<'a> {
    /// STARTTLS/STLS: the word offered before TLS and gone after it; `None`
    /// for implicit TLS.
    upgrade: Option<&'a str>,
    /// Capabilities that must be in the cleartext list (e.g. LOGINDISABLED).
    cleartext_caps: &'a [&'a str],
    /// Capabilities that must not be in the cleartext list.
    cleartext_lacks: &'a [&'a str],
    /// `--user` was given: the transcript must say `# authenticated`.
    login: bool,
}

/// The capability words of the transcript's `CAPABILITIES [trust]: ...` lines.
fn capabilities<'a>(out: &'a str, trust: &str) -> Option<Vec<&'a str>> {
    let prefix = format!("CAPABILITIES [{trust}]:");
    let lines: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect();
    (!lines.is_empty()).then(|| {
        lines
            .iter()
            .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|w| !w.is_empty())
            .collect()
    })
}

/// The checks on a `starttls connect` transcript: exit 0, a `TLS: TLSv1.x`
/// line, a final `OK`; for STARTTLS the upgrade offered in the cleartext
/// capabilities and absent from those asked for again over TLS; with a
/// login, `# authenticated`.
fn check_connect(ran: &Ran, want: &Expect) -> Result<(), String> {
    expect(ran.success(), "exit status 0", ran)?;
    let out = &ran.stdout;
    expect(
        out.lines()
            .any(|l| l.starts_with("TLS: TLSv1.3") || l.starts_with("TLS: TLSv1.2")),
        "a `TLS: TLSv1.3` (or 1.2) line",
        ran,
    )?;
    expect(
        out.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::trim)
            == Some("OK"),
        "a final `OK` line",
        ran,
    )?;
    let has = |caps: &[&str], w: &str| caps.iter().any(|c| c.eq_ignore_ascii_case(w));
    let tls_caps = capabilities(out, "tls");
    expect(
        tls_caps.is_some(),
        "a `CAPABILITIES [tls]:` line (capabilities received over TLS)",
        ran,
    )?;
    let tls_caps = tls_caps.unwrap_or_default();
    if let Some(word) = want.upgrade {
        let clear = capabilities(out, "cleartext").unwrap_or_default();
        expect(
            has(&clear, word),
            &format!("{word} in the `CAPABILITIES [cleartext]:` line"),
            ran,
        )?;
        for w in want.cleartext_caps {
            expect(
                has(&clear, w),
                &format!("{w} in the `CAPABILITIES [cleartext]:` line"),
                ran,
            )?;
        }
        for w in want.cleartext_lacks {
            expect(
                !has(&clear, w),
                &format!("no {w} in the `CAPABILITIES [cleartext]:` line"),
                ran,
            )?;
        }
        expect(
            !has(&tls_caps, word),
            &format!("no {word} in the `CAPABILITIES [tls]:` line"),
            ran,
        )?;
    } else {
        expect(
            capabilities(out, "cleartext").is_none(),
            "no cleartext capabilities with implicit TLS",
            ran,
        )?;
    }
    if want.login {
        expect(
            out.lines().any(|l| l.trim() == "# authenticated"),
            "`# authenticated` (login succeeded)",
            ran,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Postfix and Dovecot, started for a test.

/// A private Postfix instance (smtp and submission on 127.0.0.1); its
/// master is stopped on drop.
struct PostfixRun {
    _master: Daemon,
    smtp: SocketAddr,
    submission: SocketAddr,
    maillog: PathBuf,
}

/// Starts Postfix with the templates of `peers/postfix` in `dir`, which must
/// already hold `leaf.pem`/`leaf.key` ([`make_pki`]); waits for both greetings.
fn start_postfix(dir: &TempDir) -> PostfixRun {
    let etc = dir.join("etc");
    for d in ["etc", "spool", "data"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let ports = free_ports("127.0.0.1", 2);
    let smtp: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let submission: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    let d = dir.path().to_string_lossy().into_owned();
    render(
        "postfix/main.cf.in",
        &[("DIR", d.clone())],
        &etc.join("main.cf"),
    );
    render(
        "postfix/master.cf.in",
        &[
            ("SMTP_ADDR", smtp.to_string()),
            ("SUBMISSION_ADDR", submission.to_string()),
        ],
        &etc.join("master.cf"),
    );
    // data_directory must belong to mail_owner; `postfix check` makes the queue.
    must(Command::new("chown").args(["postfix:", &dir.join("data").to_string_lossy()]));
    let etc_s = etc.to_string_lossy().into_owned();
    let check = run(
        Command::new("/usr/sbin/postfix").args(["-c", &etc_s, "check"]),
        &[],
    );
    assert!(
        check.success(),
        "postfix check failed:\n{}\n--- maillog\n{}",
        check.report(),
        read_log(&dir.join("maillog"))
    );
    let maillog = dir.join("maillog");
    let master = Daemon::spawn(
        "postfix master",
        "/usr/lib/postfix/sbin/master",
        &["-c", &etc_s, "-s"],
    );
    wait_listening(smtp, Some("220 "), || read_log(&maillog));
    wait_listening(submission, Some("220 "), || read_log(&maillog));

    PostfixRun {
        _master: master,
        smtp,
        submission,
        maillog,
    }
}

/// A private Dovecot (imap, imaps, pop3, pop3s on 127.0.0.1 and 127.0.0.2;
/// user alice, password secret, one message); stopped on drop.
struct DovecotRun {
    _dovecot: Daemon,
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
    log: PathBuf,
}

/// Starts Dovecot with `peers/dovecot/dovecot.conf.in` in `dir`, which must
/// already hold `leaf.pem`/`leaf.key` ([`make_pki`]); waits for every listener.
fn start_dovecot(dir: &TempDir) -> DovecotRun {
    let d = dir.path().to_string_lossy().into_owned();
    let ports = free_ports("127.0.0.1", 4);
    let (imap, imaps, pop3, pop3s) = (ports[0], ports[1], ports[2], ports[3]);
    // As root the login and internal processes use Dovecot's own users and
    // mail is accessed as nobody; otherwise everything runs as us.
    let (login_user, internal_user, mail_uid, mail_gid) = if is_root() {
        (
            "dovenull".to_string(),
            "dovecot".to_string(),
            id_of("-u", "nobody"),
            id_of("-g", "nobody"),
        )
    } else {
        let me = must(Command::new("id").arg("-un"))
            .stdout
            .trim()
            .to_string();
        let uid = must(Command::new("id").arg("-u")).stdout.trim().to_string();
        let gid = must(Command::new("id").arg("-g")).stdout.trim().to_string();
        (me.clone(), me, uid, gid)
    };
    let conf = dir.join("dovecot.conf");
    render(
        "dovecot/dovecot.conf.in",
        &[
            ("DIR", d.clone()),
            ("IMAP_PORT", imap.to_string()),
            ("IMAPS_PORT", imaps.to_string()),
            ("POP3_PORT", pop3.to_string()),
            ("POP3S_PORT", pop3s.to_string()),
            ("LOGIN_USER", login_user),
            ("INTERNAL_USER", internal_user),
            ("MAIL_UID", mail_uid.clone()),
            ("MAIL_GID", mail_gid.clone()),
        ],
        &conf,
    );
    std::fs::write(dir.join("users"), "alice:{PLAIN}secret::::::\n").expect("write users");
    std::fs::set_permissions(dir.join("users"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod users");
    let maildir = dir.join("mail/alice/Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("mkdir maildir");
    }
    std::fs::write(
        maildir.join("new/1700000000.M1P1.localhost"),
        "From: bob@localhost\r\nTo: alice@localhost\r\nSubject: hello\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@localhost>\r\n\r\n\
         Hello Alice.\r\n",
    )
    .expect("write message");
    must(Command::new("chown").args([
        "-R",
        &format!("{mail_uid}:{mail_gid}"),
        &dir.join("mail").to_string_lossy(),
    ]));
    let log = dir.join("dovecot.log");
    let conf_s = conf.to_string_lossy().into_owned();
    let dovecot = Daemon::spawn("dovecot", "/usr/sbin/dovecot", &["-c", &conf_s, "-F"]);
    for (ip, port, greeting) in [
        ([127, 0, 0, 1], imap, Some("* OK")),
        ([127, 0, 0, 2], imap, Some("* OK")),
        ([127, 0, 0, 1], imaps, None),
        ([127, 0, 0, 1], pop3, Some("+OK")),
        ([127, 0, 0, 2], pop3, Some("+OK")),
        ([127, 0, 0, 1], pop3s, None),
    ] {
        wait_listening((ip, port).into(), greeting, || read_log(&log));
    }

    DovecotRun {
        _dovecot: dovecot,
        imap,
        imaps,
        pop3,
        pop3s,
        log,
    }
}

// ---------------------------------------------------------------------------
// Our client against Postfix.

#[test]
fn postfix_with_starttls_connect() {
    if !requirements_met(
        "postfix_with_starttls_connect",
        &[
            Need::Root,
            Need::Program("/usr/sbin/postfix"),
            Need::Program("/usr/lib/postfix/sbin/master"),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("postfix");
    let pki = make_pki(&dir);
    let pf = start_postfix(&dir);
    let (smtp, submission, maillog) = (pf.smtp, pf.submission, pf.maillog.clone());

    let mut m = Matrix::new("postfix");
    let ca = pki.ca.as_path();
    // Control: a real client against the same Postfix, so that a failure of
    // ours is not mistaken for a broken peer.
    let control = s_client_starttls(
        smtp,
        "smtp",
        ca,
        &["EHLO control.localhost\r\n", "QUIT\r\n"],
    );
    m.record(
        "control: s_client smtp STARTTLS",
        expect(control.success(), "exit 0", &control),
    );
    for (case, url) in [
        ("smtp STARTTLS", format!("smtp://{smtp}")),
        ("submission STARTTLS", format!("submission://{submission}")),
    ] {
        let ran = starttls_connect(&url, ca, &[]);
        let want = Expect {
            upgrade: Some("STARTTLS"),
            cleartext_caps: &[],
            cleartext_lacks: &[],
            login: false,
        };
        let result = check_connect(&ran, &want)
            .map_err(|e| format!("{e}\n--- maillog\n{}", read_log(&maillog)));
        m.record(case, result);
    }
    m.finish();
}

// ---------------------------------------------------------------------------
// Our client against Dovecot.

#[test]
fn dovecot_with_starttls_connect() {
    if !requirements_met(
        "dovecot_with_starttls_connect",
        &[
            Need::Program("/usr/sbin/dovecot"),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("dovecot");
    let pki = make_pki(&dir);
    let dv = start_dovecot(&dir);
    let (imap, imaps, pop3, pop3s, log) = (dv.imap, dv.imaps, dv.pop3, dv.pop3s, dv.log.clone());

    let mut m = Matrix::new("dovecot");
    let ca = pki.ca.as_path();
    let control = s_client_starttls(
        ([127, 0, 0, 2], imap).into(),
        "imap",
        ca,
        &["a LOGIN alice secret\r\n", "b LOGOUT\r\n"],
    );
    m.record(
        "control: s_client imap STARTTLS",
        expect(
            control.success() && control.stdout.contains("a OK"),
            "exit 0 and `a OK` to LOGIN",
            &control,
        ),
    );
    let login = ["--user", "alice", "--password", "secret"];
    // 127.0.0.1 -> 127.0.0.1 is "secure" to Dovecot, so it offers login
    // before TLS there; from 127.0.0.1 to 127.0.0.2 it does not: IMAP says
    // LOGINDISABLED and POP3 leaves USER out of CAPA until STLS.
    let starttls = |clear: &'static [&'static str], lacks: &'static [&'static str]| Expect {
        upgrade: Some("STARTTLS"),
        cleartext_caps: clear,
        cleartext_lacks: lacks,
        login: true,
    };
    let stls = |lacks: &'static [&'static str]| Expect {
        upgrade: Some("STLS"),
        cleartext_caps: &[],
        cleartext_lacks: lacks,
        login: true,
    };
    let implicit = Expect {
        upgrade: None,
        cleartext_caps: &[],
        cleartext_lacks: &[],
        login: true,
    };
    let cases = [
        (
            "imap STARTTLS 127.0.0.1",
            format!("imap://127.0.0.1:{imap}"),
            starttls(&[], &[]),
        ),
        (
            "imap STARTTLS 127.0.0.2 (LOGINDISABLED)",
            format!("imap://127.0.0.2:{imap}"),
            starttls(&["LOGINDISABLED"], &["AUTH=PLAIN"]),
        ),
        (
            "imaps implicit",
            format!("imaps://127.0.0.1:{imaps}"),
            implicit,
        ),
        (
            "pop3 STLS 127.0.0.1",
            format!("pop3://127.0.0.1:{pop3}"),
            stls(&[]),
        ),
        (
            "pop3 STLS 127.0.0.2 (no USER)",
            format!("pop3://127.0.0.2:{pop3}"),
            stls(&["USER"]),
        ),
        (
            "pop3s implicit",
            format!("pop3s://127.0.0.1:{pop3s}"),
            implicit,
        ),
    ];
    for (case, url, want) in cases {
        let ran = starttls_connect(&url, ca, &login);
        let result = check_connect(&ran, &want)
            .and_then(|()| {
                expect(
                    ran.stdout.to_ascii_lowercase().contains("logged in"),
                    "Dovecot's `Logged in` reply in the transcript",
                    &ran,
                )
            })
            .map_err(|e| format!("{e}\n--- dovecot.log\n{}", read_log(&log)));
        m.record(case, result);
    }
    m.finish();
}

// ---------------------------------------------------------------------------
// Our client against aiosmtpd 1.4.6.

#[test]
fn aiosmtpd_with_starttls_connect() {
    if !requirements_met(
        "aiosmtpd_with_starttls_connect",
        &[
            Need::Program("python3"),
            Need::PythonModule("aiosmtpd"),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("aiosmtpd");
    let pki = make_pki(&dir);
    let port = free_ports("127.0.0.1", 1)[0];
    let script = peers_dir().join("aiosmtpd_server.py");
    let mut server = Daemon::spawn(
        "aiosmtpd",
        "python3",
        &[
            &script.to_string_lossy(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--cert",
            &pki.cert.to_string_lossy(),
            "--key",
            &pki.key.to_string_lossy(),
            "--lifetime",
            "200",
        ],
    );
    server.wait_for("`listening`", |lines| {
        lines.iter().any(|l| l.starts_with("listening "))
    });
    let version = server
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("aiosmtpd ").map(str::to_string))
        .unwrap_or_default();
    let mut m = Matrix::new("aiosmtpd");
    let ran = starttls_connect(&format!("smtp://127.0.0.1:{port}"), &pki.ca, &[]);
    let want = Expect {
        upgrade: Some("STARTTLS"),
        cleartext_caps: &[],
        cleartext_lacks: &[],
        login: false,
    };
    let result = check_connect(&ran, &want)
        .map_err(|e| format!("{e}\n--- aiosmtpd {version}\n{}", server.lines().join("\n")));
    m.record(&format!("smtp STARTTLS (aiosmtpd {version})"), result);
    m.finish();
}

// ---------------------------------------------------------------------------
// Real clients against our server.

/// The listener kinds of `starttls serve`.
const KINDS: [&str; 7] = [
    "smtp",
    "submission",
    "smtps",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
];

/// `starttls serve` on free loopback ports, with a CA written by `--ca-out`.
struct Serve {
    daemon: Daemon,
    addrs: BTreeMap<&'static str, SocketAddr>,
    ca: PathBuf,
    sessions: usize,
}

impl Serve {
    /// Starts every listener; `sessions` is the number of connections the
    /// test will make (serve exits after that many: `--max-connections`).
    fn start(dir: &TempDir, sessions: usize) -> Serve {
        let ca = dir.join("serve-ca.pem");
        let ports = free_ports("127.0.0.1", KINDS.len());
        let mut args: Vec<String> = vec!["serve".into()];
        for (kind, port) in KINDS.iter().zip(&ports) {
            args.push(format!("--{kind}"));
            args.push(format!("127.0.0.1:{port}"));
        }
        args.extend([
            "--ca-out".into(),
            ca.to_string_lossy().into_owned(),
            "--require-tls".into(),
            "--user".into(),
            "alice".into(),
            "--password".into(),
            "secret".into(),
            "--max-connections".into(),
            sessions.to_string(),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut daemon = Daemon::spawn("starttls serve", STARTTLS, &argv);
        daemon.wait_for("a `listening` line for every listener", |lines| {
            KINDS.iter().all(|k| listening_addr(lines, k).is_some())
        });
        let lines = daemon.lines();
        let addrs = KINDS
            .iter()
            .map(|k| (*k, listening_addr(&lines, k).expect("listening line")))
            .collect();
        assert!(
            ca.is_file(),
            "serve did not write --ca-out {}",
            ca.display()
        );
        Serve {
            daemon,
            addrs,
            ca,
            sessions,
        }
    }

    fn addr(&self, kind: &str) -> SocketAddr {
        self.addrs[kind]
    }

    /// Lets serve finish its `--max-connections` (or stops it) and checks its
    /// log: every session reached TLS, nothing was injected, and no command
    /// but the negotiation was processed in cleartext.
    fn check_log(mut self) -> Result<(), String> {
        let exited = self.daemon.finish(Duration::from_secs(10));
        let lines = self.daemon.lines();
        let mut problems = check_serve_log(&lines, self.sessions);
        if exited.is_none() {
            problems.push(format!(
                "serve did not exit after --max-connections {}",
                self.sessions
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}\n--- serve log\n{}",
                problems.join("\n"),
                lines.join("\n")
            ))
        }
    }
}

/// `listening <kind> <addr>` in serve's output.
fn listening_addr(lines: &[String], kind: &str) -> Option<SocketAddr> {
    lines.iter().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("listening") && w.next() == Some(kind))
            .then(|| w.next()?.parse().ok())
            .flatten()
    })
}

/// What may be handled before TLS: the greeting/EHLO, the upgrade itself,
/// and the negotiation commands.
const NEGOTIATION: [&str; 9] = [
    "EHLO",
    "HELO",
    "STARTTLS",
    "STLS",
    "CAPABILITY",
    "CAPA",
    "NOOP",
    "QUIT",
    "LOGOUT",
];

/// Checks serve's per-connection log lines (`[kind peer] (cleartext|tls)
/// Event`, `[kind peer] TLS <version> <cipher>`, `[kind peer] connected`):
/// `sessions` connections, each one reached TLS, no `DISCARDED` injection,
/// and before TLS no event but the negotiation.
fn check_serve_log(lines: &[String], sessions: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut connected = BTreeSet::new();
    let mut tls = BTreeSet::new();
    for line in lines {
        if line.contains("DISCARDED") {
            problems.push(format!("bytes injected before TLS: {line}"));
        }
        let Some((conn, event)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
            continue;
        };
        if event == "connected" {
            connected.insert(conn.to_string());
        } else if event.starts_with("TLS TLSv1.")
            || event.to_ascii_lowercase().contains("tls established")
        {
            tls.insert(conn.to_string());
        }
        if let Some(ev) = event.strip_prefix("(cleartext) ") {
            if let Some(what) = cleartext_violation(ev) {
                problems.push(format!("{what} processed in cleartext: {line}"));
            }
        }
    }
    if connected.len() != sessions {
        problems.push(format!(
            "{} connections logged, {sessions} expected",
            connected.len()
        ));
    }
    for conn in &connected {
        if !tls.contains(conn) {
            problems.push(format!("[{conn}] never reached TLS"));
        }
    }
    problems
}

/// For an event serve handled before TLS: `None` if it is part of the
/// negotiation, else what it was.
fn cleartext_violation(event: &str) -> Option<String> {
    if event.starts_with("Hello(") || event.starts_with("Upgrade(") {
        return None;
    }
    let Some(cmd) = event.strip_prefix("Command(") else {
        return Some(event.split('(').next().unwrap_or(event).to_string());
    };
    // IMAP: `Command { tag: .., body: Login { .. } }` or
    // `body: Other { name: b"SELECT", .. }`; SMTP/POP3: `Mail { .. }`, `User { .. }`.
    let cmd = cmd.split_once("body: ").map_or(cmd, |(_, b)| b);
    let cmd = match cmd.strip_prefix("Other { name: b\"") {
        Some(rest) => rest.split('"').next().unwrap_or(rest),
        None => cmd,
    };
    let name: String = cmd
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let upper = name.to_ascii_uppercase();
    if NEGOTIATION.contains(&upper.as_str()) {
        None
    } else {
        Some(if upper.is_empty() {
            event.to_string()
        } else {
            upper
        })
    }
}

fn write_message(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        "From: alice@localhost\r\nTo: bob@localhost\r\nSubject: interop\r\n\r\n\
         Hello.\r\n.leading dot\r\n",
    )
    .expect("write message");
    path
}

#[test]
fn python_clients_with_starttls_serve() {
    if !requirements_met(
        "python_clients_with_starttls_serve",
        &[Need::Program("python3"), Need::Program("timeout")],
    ) {
        return;
    }
    let dir = TempDir::new("python");
    let serve = Serve::start(&dir, KINDS.len());
    let script = peers_dir().join("python_clients.py");
    let mut m = Matrix::new("python");
    for (kind, case) in [
        ("smtp", "smtplib smtp STARTTLS"),
        ("submission", "smtplib submission STARTTLS+AUTH"),
        ("smtps", "smtplib smtps implicit+AUTH"),
        ("imap", "imaplib imap STARTTLS"),
        ("imaps", "imaplib imaps implicit"),
        ("pop3", "poplib pop3 STLS"),
        ("pop3s", "poplib pop3s implicit"),
    ] {
        let a = serve.addr(kind);
        let ran = run(
            Command::new("python3")
                .arg(&script)
                .arg(kind)
                .arg(a.ip().to_string())
                .arg(a.port().to_string())
                .arg(&serve.ca),
            &[],
        );
        m.record(
            case,
            expect(
                ran.success() && ran.stdout.contains("\nOK"),
                "exit 0 and OK",
                &ran,
            ),
        );
    }
    m.record("serve log: TLS, no cleartext commands", serve.check_log());
    m.finish();
}

#[test]
fn curl_with_starttls_serve() {
    if !requirements_met(
        "curl_with_starttls_serve",
        &[Need::Program("curl"), Need::Program("timeout")],
    ) {
        return;
    }
    let dir = TempDir::new("curl");
    let msg = write_message(&dir, "message.eml");
    let auth = vec!["-u".to_string(), "alice:secret".to_string()];
    let send = |extra: &[String]| {
        let mut v: Vec<String> = [
            "--mail-from",
            "alice@localhost",
            "--mail-rcpt",
            "bob@localhost",
            "-T",
        ]
        .map(String::from)
        .to_vec();
        v.push(msg.to_string_lossy().into_owned());
        v.extend_from_slice(extra);
        v
    };
    // (case, listener, URL scheme, URL path, curl arguments, expected output)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, Vec<String>, &'a str);
    let fetch = "/INBOX/;MAILINDEX=1";
    let cases: Vec<Case> = vec![
        ("smtp STARTTLS send", "smtp", "smtp", "/", send(&[]), ""),
        (
            "submission STARTTLS+AUTH send",
            "submission",
            "smtp",
            "/",
            send(&auth),
            "",
        ),
        (
            "smtps implicit+AUTH send",
            "smtps",
            "smtps",
            "/",
            send(&auth),
            "",
        ),
        (
            "imap STARTTLS LIST",
            "imap",
            "imap",
            "/",
            auth.clone(),
            "INBOX",
        ),
        (
            "imap STARTTLS FETCH",
            "imap",
            "imap",
            fetch,
            auth.clone(),
            "Subject:",
        ),
        (
            "imaps implicit FETCH",
            "imaps",
            "imaps",
            fetch,
            auth.clone(),
            "Subject:",
        ),
        ("pop3 STLS LIST", "pop3", "pop3", "/", auth.clone(), "1 "),
        (
            "pop3 STLS RETR",
            "pop3",
            "pop3",
            "/1",
            auth.clone(),
            "Subject:",
        ),
        (
            "pop3s implicit RETR",
            "pop3s",
            "pop3s",
            "/1",
            auth.clone(),
            "Subject:",
        ),
    ];
    let serve = Serve::start(&dir, cases.len());
    let mut m = Matrix::new("curl");
    for (case, kind, scheme, path, extra, want) in &cases {
        let url = format!("{scheme}://{}{path}", serve.addr(kind));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
            .arg(&serve.ca)
            .arg(&url)
            .args(extra);
        let ran = run(&mut cmd, &[]);
        m.record(
            case,
            expect(
                ran.success() && ran.stdout.contains(want),
                &format!("exit 0 and `{want}` in the output"),
                &ran,
            ),
        );
    }
    m.record("serve log: TLS, no cleartext commands", serve.check_log());
    m.finish();
}

/// curl with a client certificate (`--cert`/`--key`) and `--login-options
/// AUTH=EXTERNAL` against `starttls serve --client-ca`: SASL EXTERNAL (RFC
/// 4422 Appendix A) over IMAP (SASL-IR), POP3 (empty challenge) and
/// submission; without the certificate curl cannot log in, since EXTERNAL
/// is not offered. The client CA and certificate are made with rcgen.
#[test]
fn curl_with_client_certificate_and_sasl_external() {
    if !requirements_met(
        "curl_with_client_certificate_and_sasl_external",
        &[Need::Program("curl"), Need::Program("timeout")],
    ) {
        return;
    }
    let dir = TempDir::new("curl-external");
    let client = starttls_conformance::pki::ClientPki::generate("alice").expect("client pki");
    let [client_ca, cert, key] = client.write(dir.path(), "alice").expect("write pems");
    let msg = write_message(&dir, "message.eml");
    let ca = dir.join("serve-ca.pem");
    let kinds = ["submission", "imap", "pop3"];
    let ports = free_ports("127.0.0.1", kinds.len());
    let mut args: Vec<String> = vec!["serve".into()];
    for (kind, port) in kinds.iter().zip(&ports) {
        args.push(format!("--{kind}"));
        args.push(format!("127.0.0.1:{port}"));
    }
    // (case, listener, URL, curl arguments, with the certificate, expected output)
    let send: Vec<String> = [
        "--mail-from",
        "alice@localhost",
        "--mail-rcpt",
        "bob@localhost",
        "-T",
    ]
    .map(String::from)
    .into_iter()
    .chain([msg.to_string_lossy().into_owned()])
    .collect();
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<String>, bool, &'a str);
    let cases: Vec<Case> = vec![
        ("imap EXTERNAL LIST", "imap", "imap", vec![], true, "INBOX"),
        ("pop3 EXTERNAL LIST", "pop3", "pop3", vec![], true, "1 "),
        (
            "submission EXTERNAL send",
            "submission",
            "smtp",
            send,
            true,
            "",
        ),
        (
            "imap EXTERNAL without a certificate",
            "imap",
            "imap",
            vec![],
            false,
            "",
        ),
    ];
    args.extend([
        "--ca-out".into(),
        ca.to_string_lossy().into_owned(),
        "--client-ca".into(),
        client_ca.to_string_lossy().into_owned(),
        "--require-tls".into(),
        "--max-connections".into(),
        cases.len().to_string(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemon = Daemon::spawn("starttls serve", STARTTLS, &argv);
    daemon.wait_for("a `listening` line for every listener", |lines| {
        kinds.iter().all(|k| listening_addr(lines, k).is_some())
    });
    let lines = daemon.lines();
    let mut m = Matrix::new("curl EXTERNAL");
    for (case, kind, scheme, extra, with_cert, want) in &cases {
        let addr = listening_addr(&lines, kind).expect("listening line");
        let url = format!("{scheme}://{addr}/");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
            .arg(&ca)
            .args(["--login-options", "AUTH=EXTERNAL", "-u", "alice:"]);
        if *with_cert {
            cmd.arg("--cert").arg(&cert).arg("--key").arg(&key);
        }
        cmd.arg(&url).args(extra);
        let ran = run(&mut cmd, &[]);
        let result = if *with_cert {
            expect(
                ran.success() && ran.stdout.contains(want),
                &format!("exit 0 and `{want}` in the output"),
                &ran,
            )
        } else {
            expect(
                !ran.success(),
                "a failed login (EXTERNAL not offered)",
                &ran,
            )
        };
        m.record(case, result);
    }
    let exited = daemon.finish(Duration::from_secs(10));
    let lines = daemon.lines();
    let mut problems = check_serve_log(&lines, cases.len());
    let accepted = lines
        .iter()
        .filter(|l| {
            l.contains("EXTERNAL: certificate \"CN=alice, O=starttls test\" authenticated as alice")
        })
        .count();
    if accepted != 3 {
        problems.push(format!("{accepted} EXTERNAL logins logged, 3 expected"));
    }
    if exited.is_none() {
        problems.push("serve did not exit after --max-connections".into());
    }
    m.record(
        "serve log: TLS, EXTERNAL logins, no cleartext commands",
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}\n--- serve log\n{}",
                problems.join("\n"),
                lines.join("\n")
            ))
        },
    );
    m.finish();
}

/// `openssl s_client -starttls PROTO` to `addr`, the lines written one by one
/// after the handshake (paced, so nothing is pipelined that should not be).
fn s_client_starttls(addr: SocketAddr, proto: &str, ca: &Path, lines: &[&str]) -> Ran {
    s_client(addr, Some(proto), ca, lines)
}

fn s_client(addr: SocketAddr, starttls: Option<&str>, ca: &Path, lines: &[&str]) -> Ran {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    if let Some(p) = starttls {
        cmd.args(["-starttls", p]);
    }
    cmd.arg("-CAfile").arg(ca).args([
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
        "-brief",
        "-crlf",
        // Without these, a line starting with Q (QUIT) makes s_client hang up
        // itself, and EOF on stdin closes the connection.
        "-nocommands",
        "-ign_eof",
    ]);
    let mut input: Vec<(&str, Duration)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let pause = if i == 0 { 1500 } else { 700 };
        input.push((l.trim_end(), Duration::from_millis(pause)));
        input.push(("\n", Duration::ZERO));
    }
    input.push(("", Duration::from_millis(700)));
    run_paced(&mut cmd, &input)
}

#[test]
fn openssl_s_client_with_starttls_serve() {
    if !requirements_met(
        "openssl_s_client_with_starttls_serve",
        &[Need::Program("openssl"), Need::Program("timeout")],
    ) {
        return;
    }
    let dir = TempDir::new("s_client");
    // AUTH PLAIN \0alice\0secret
    let plain = "AUTH PLAIN AGFsaWNlAHNlY3JldA==";
    let smtp_lines = ["EHLO client.localhost", "QUIT"];
    let sub_lines = ["EHLO client.localhost", plain, "QUIT"];
    let imap_lines = ["a LOGIN alice secret", "b SELECT INBOX", "c LOGOUT"];
    let pop3_lines = ["USER alice", "PASS secret", "STAT", "QUIT"];
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [&'a str], &'a str);
    let cases: [Case; 7] = [
        ("smtp STARTTLS", "smtp", Some("smtp"), &smtp_lines, "221"),
        (
            "submission STARTTLS+AUTH",
            "submission",
            Some("smtp"),
            &sub_lines,
            "235",
        ),
        ("smtps implicit+AUTH", "smtps", None, &sub_lines, "235"),
        ("imap STARTTLS", "imap", Some("imap"), &imap_lines, "b OK"),
        ("imaps implicit", "imaps", None, &imap_lines, "b OK"),
        ("pop3 STLS", "pop3", Some("pop3"), &pop3_lines, "+OK 1 "),
        ("pop3s implicit", "pop3s", None, &pop3_lines, "+OK 1 "),
    ];
    let serve = Serve::start(&dir, cases.len());
    let mut m = Matrix::new("s_client");
    for (case, kind, starttls, lines, want) in cases {
        let ran = s_client(serve.addr(kind), starttls, &serve.ca, lines);
        m.record(
            case,
            expect(
                ran.success()
                    && ran.stderr.contains("Verification: OK")
                    && ran.stdout.contains(want),
                &format!("exit 0, `Verification: OK`, `{want}` in the output"),
                &ran,
            ),
        );
    }
    m.record("serve log: TLS, no cleartext commands", serve.check_log());
    m.finish();
}

#[test]
fn swaks_with_starttls_serve() {
    if !requirements_met(
        "swaks_with_starttls_serve",
        &[Need::Program("swaks"), Need::Program("timeout")],
    ) {
        return;
    }
    let dir = TempDir::new("swaks");
    let auth = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "secret",
    ];
    let cases: [(&str, &str, &str, &[&str]); 3] = [
        ("smtp STARTTLS send", "smtp", "--tls", &[]),
        (
            "submission STARTTLS+AUTH send",
            "submission",
            "--tls",
            &auth,
        ),
        (
            "smtps implicit+AUTH send",
            "smtps",
            "--tls-on-connect",
            &auth,
        ),
    ];
    let serve = Serve::start(&dir, cases.len());
    let mut m = Matrix::new("swaks");
    for (case, kind, tls, extra) in cases {
        let a = serve.addr(kind);
        let ran = run(
            Command::new("swaks")
                .args([
                    "--server",
                    &a.ip().to_string(),
                    "--port",
                    &a.port().to_string(),
                ])
                .args([tls, "--tls-verify", "--tls-ca-path"])
                .arg(&serve.ca)
                .args([
                    "--to",
                    "bob@localhost",
                    "--from",
                    "alice@localhost",
                    "--helo",
                    "client.localhost",
                    "--timeout",
                    "20",
                ])
                .args(extra),
            &[],
        );
        m.record(case, expect(ran.success(), "exit 0", &ran));
    }
    m.record("serve log: TLS, no cleartext commands", serve.check_log());
    m.finish();
}

#[test]
fn msmtp_with_starttls_serve() {
    if !requirements_met(
        "msmtp_with_starttls_serve",
        &[Need::Program("msmtp"), Need::Program("timeout")],
    ) {
        return;
    }
    let dir = TempDir::new("msmtp");
    let cases = [
        ("smtp STARTTLS send", "smtp"),
        ("submission STARTTLS+AUTH send", "submission"),
        ("smtps implicit+AUTH send", "smtps"),
    ];
    let serve = Serve::start(&dir, cases.len());
    let mut conf = String::from(
        "defaults\ntls on\ntls_host_override localhost\nfrom alice@localhost\nlogfile -\n",
    );
    let _ = writeln!(conf, "tls_trust_file {}", serve.ca.display());
    for (_, kind) in cases {
        let a = serve.addr(kind);
        let _ = writeln!(conf, "\naccount {kind}\nhost {}\nport {}", a.ip(), a.port());
        match kind {
            "smtp" => conf.push_str("tls_starttls on\nauth off\n"),
            "submission" => {
                conf.push_str("tls_starttls on\nauth plain\nuser alice\npassword secret\n")
            }
            _ => conf.push_str("tls_starttls off\nauth plain\nuser alice\npassword secret\n"),
        }
    }
    let conf_path = dir.join("msmtprc");
    std::fs::write(&conf_path, conf).expect("write msmtprc");
    // msmtp refuses a config file with a password that others can read.
    std::fs::set_permissions(&conf_path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod msmtprc");
    let msg = std::fs::read(write_message(&dir, "message.eml")).expect("read message");
    let mut m = Matrix::new("msmtp");
    for (case, kind) in cases {
        let ran = run(
            Command::new("msmtp")
                .arg("-C")
                .arg(&conf_path)
                .args(["-a", kind, "bob@localhost"]),
            &msg,
        );
        m.record(case, expect(ran.success(), "exit 0", &ran));
    }
    m.record("serve log: TLS, no cleartext commands", serve.check_log());
    m.finish();
}

// ---------------------------------------------------------------------------
// The log check itself, on made-up lines (no peer needed).

#[test]
fn serve_log_check_catches_cleartext_commands_and_injection() {
    let good: Vec<String> = [
        "listening smtp 127.0.0.1:2525",
        "[smtp 127.0.0.1:5000] connected",
        "[smtp 127.0.0.1:5000] (cleartext) Hello(Ehlo { domain: Domain(b\"x\") })",
        "[smtp 127.0.0.1:5000] (cleartext) Upgrade(UpgradeStarted)",
        "[smtp 127.0.0.1:5000] TLS TLSv1.3 TLS13_AES_256_GCM_SHA384",
        "[smtp 127.0.0.1:5000] (tls) Command(Mail { from: Null, params: Parameters(b\"\") })",
        "[imap 127.0.0.1:5001] connected",
        "[imap 127.0.0.1:5001] (cleartext) Command(Command { tag: b\"a\", body: Capability })",
        "[imap 127.0.0.1:5001] TLS TLSv1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "[imap 127.0.0.1:5001] (tls) Command(Command { tag: b\"b\", body: Login { username: Atom(b\"alice\") } })",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(check_serve_log(&good, 2), Vec::<String>::new());
    assert_eq!(check_serve_log(&good, 3).len(), 1, "connection count");

    for (bad, what) in [
        (
            "[smtp 127.0.0.1:5000] (cleartext) Command(Mail { from: Null })",
            "MAIL",
        ),
        (
            "[pop3 127.0.0.1:5000] (cleartext) Command(User { name: b\"alice\" })",
            "USER",
        ),
        (
            "[imap 127.0.0.1:5000] (cleartext) Command(Command { tag: b\"a\", body: Login { username: Atom(b\"alice\") } })",
            "LOGIN",
        ),
        (
            "[imap 127.0.0.1:5000] (cleartext) Command(Command { tag: b\"a\", body: Other { name: b\"SELECT\", args: Args(b\"INBOX\") } })",
            "SELECT",
        ),
        (
            "[smtp 127.0.0.1:5000] (cleartext) AuthResponse([redacted])",
            "AuthResponse",
        ),
        (
            "[smtp 127.0.0.1:5000] DISCARDED 6 bytes injected before TLS",
            "injected",
        ),
    ] {
        let mut lines = good.clone();
        lines.push(bad.to_string());
        let problems = check_serve_log(&lines, 2);
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "{bad}: {problems:?}"
        );
    }

    let mut no_tls = good.clone();
    no_tls.retain(|l| !l.contains("] TLS TLSv1.3"));
    assert!(check_serve_log(&no_tls, 2)
        .iter()
        .any(|p| p.contains("never reached TLS")));
}

// ---------------------------------------------------------------------------
// `starttls probe` calibrated against real servers (docs/probe.md's table).
//
// Each case runs `starttls probe URL --json --aggressive` and asserts the
// exit code and the verdict of every check: the ones listed as findings
// must have exactly that verdict, every other one must be `pass` (or
// `skipped`/absent where the check does not apply). The evidence of every
// finding is printed, so the transcripts behind the docs are in the log
// (`STARTTLS_PROBE_SHOW=1`: every check's one-line detail as well).

/// aiosmtpd 1.4.5 (CVE-2024-34083), in its own venv made by
/// `conformance/peers/install.sh`.
const AIOSMTPD_145_PYTHON: &str = "/opt/aiosmtpd-1.4.5/bin/python";

/// `starttls probe URL --json --aggressive` with the throwaway CA.
fn starttls_probe(url: &str, ca: &Path, extra: &[&str]) -> Ran {
    run(
        Command::new(STARTTLS)
            .arg("probe")
            .arg(url)
            .arg("--ca")
            .arg(ca)
            .args([
                "--json",
                "--aggressive",
                "--banner-wait",
                "10",
                "--timeout",
                "5",
                "--max-connections",
                "30",
                // The throwaway leaf lives 2 days.
                "--expiry-warn",
                "1",
            ])
            .args(extra),
        &[],
    )
}

/// What one probe run must give: its exit code, and the checks that are
/// not `pass` with their verdicts. `skipped` lists checks that must be
/// skipped (e.g. `implicit.reachable` on `smtp://`).
#[derive(Clone, Copy)]
struct ProbeWant<'a> {
    exit: i32,
    findings: &'a [(&'a str, &'a str)],
    skipped: &'a [&'a str],
}

/// Checks a probe run against `want`; on success returns one line per
/// finding with its evidence, for the log.
fn check_probe(ran: &Ran, want: &ProbeWant) -> Result<String, String> {
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout)
        .map_err(|e| format!("stdout is not one JSON document ({e})\n{}", ran.report()))?;
    let mut problems = Vec::new();
    let code = ran.status.and_then(|s| s.code());
    if code != Some(want.exit) {
        problems.push(format!("exit code {code:?}, expected {}", want.exit));
    }
    if doc["exit_code"] != want.exit {
        problems.push(format!("JSON exit_code {}", doc["exit_code"]));
    }
    let checks = doc["checks"].as_array().cloned().unwrap_or_default();
    let verdict = |id: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id)
            .and_then(|c| c["verdict"].as_str())
            .map(str::to_string)
    };
    let detail = |id: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id)
            .and_then(|c| c["detail"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    for (id, v) in want.findings {
        // `fail-or-late`: a race the probe states (injection.two-writes):
        // the finding, or a pass whose every attempt's second write reached
        // the server after its switch to TLS, so it could not show.
        let ok = if *v == "fail-or-late" {
            verdict(id).as_deref() == Some("fail")
                || (verdict(id).as_deref() == Some("pass")
                    && detail(id).contains("reached the server after it had switched to TLS"))
        } else {
            verdict(id).as_deref() == Some(v)
        };
        if !ok {
            problems.push(format!("{id}: {:?}, expected {v}", verdict(id)));
        }
    }
    for id in want.skipped {
        if verdict(id).as_deref() != Some("skipped") {
            problems.push(format!("{id}: {:?}, expected skipped", verdict(id)));
        }
    }
    let mut shown = String::new();
    for c in &checks {
        let id = c["id"].as_str().unwrap_or_default();
        let v = c["verdict"].as_str().unwrap_or_default();
        let listed = want.findings.iter().any(|(i, _)| *i == id) || want.skipped.contains(&id);
        let informational = c["informational"] == true;
        if !listed && !informational && v != "pass" {
            problems.push(format!(
                "{id}: {v}, expected pass ({})",
                c["detail"].as_str().unwrap_or_default()
            ));
        }
        if std::env::var_os("STARTTLS_PROBE_SHOW").is_some() && (v == "pass" || v == "skipped") {
            let _ = writeln!(
                shown,
                "  {v} {id}: {}",
                c["detail"].as_str().unwrap_or_default()
            );
        }
        if v != "pass" && v != "skipped" {
            let _ = writeln!(
                shown,
                "  {v} {id}: {}",
                c["detail"].as_str().unwrap_or_default()
            );
            for e in c["evidence"].as_array().into_iter().flatten() {
                let _ = writeln!(shown, "      {}", e.as_str().unwrap_or_default());
            }
        }
    }
    if problems.is_empty() {
        Ok(shown)
    } else {
        Err(format!("{}\n{}", problems.join("\n"), ran.report()))
    }
}

/// Runs one calibration case and records it.
fn probe_case(m: &mut Matrix, case: &str, url: &str, ca: &Path, extra: &[&str], want: ProbeWant) {
    let ran = starttls_probe(url, ca, extra);
    let result = check_probe(&ran, &want).map(|shown| {
        if !shown.is_empty() {
            say(&format!(
                "probe {case} ({url}) findings:\n{}",
                shown.trim_end()
            ));
        }
    });
    m.record(case, result);
}

/// The checks skipped on implicit TLS (nothing is sent before TLS).
const UPGRADE_ONLY: [&str; 7] = [
    "upgrade.offered",
    "upgrade.works",
    "injection.same-write",
    "injection.two-writes",
    "injection.partial-line",
    "state.capabilities",
    "auth.before-tls",
];

#[test]
fn probe_calibration_dovecot() {
    if !requirements_met(
        "probe_calibration_dovecot",
        &[
            Need::Program("/usr/sbin/dovecot"),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("probe-dovecot");
    let pki = make_pki(&dir);
    let dv = start_dovecot(&dir);
    let mut m = Matrix::new("probe/dovecot");
    let ca = pki.ca.as_path();
    let (imaps, pop3s) = (dv.imaps.to_string(), dv.pop3s.to_string());
    let clean = ProbeWant {
        exit: 0,
        findings: &[],
        skipped: &[],
    };
    // 127.0.0.1 -> 127.0.0.2: not "secure" to Dovecot; everything passes.
    probe_case(
        &mut m,
        "imap 127.0.0.2",
        &format!("imap://127.0.0.2:{}", dv.imap),
        ca,
        &["--implicit-port", &imaps],
        clean,
    );
    probe_case(
        &mut m,
        "pop3 127.0.0.2",
        &format!("pop3://127.0.0.2:{}", dv.pop3),
        ca,
        &["--implicit-port", &pop3s],
        clean,
    );
    let implicit = ProbeWant {
        exit: 0,
        findings: &[],
        skipped: &UPGRADE_ONLY,
    };
    probe_case(
        &mut m,
        "imaps 127.0.0.2",
        &format!("imaps://127.0.0.2:{imaps}"),
        ca,
        &[],
        ProbeWant {
            skipped: &[&UPGRADE_ONLY[..], &["injection.literal"]].concat(),
            ..implicit
        },
    );
    probe_case(
        &mut m,
        "pop3s 127.0.0.2",
        &format!("pop3s://127.0.0.2:{pop3s}"),
        ca,
        &[],
        implicit,
    );
    // 127.0.0.1 -> 127.0.0.1 is "secure" to Dovecot: it invites credentials
    // before TLS there, with ssl = required. A real finding.
    probe_case(
        &mut m,
        "imap 127.0.0.1 (loopback secure)",
        &format!("imap://127.0.0.1:{}", dv.imap),
        ca,
        &["--implicit-port", &imaps],
        ProbeWant {
            exit: 1,
            findings: &[("auth.before-tls", "fail")],
            skipped: &[],
        },
    );
    probe_case(
        &mut m,
        "pop3 127.0.0.1 (loopback secure)",
        &format!("pop3://127.0.0.1:{}", dv.pop3),
        ca,
        &["--implicit-port", &pop3s],
        ProbeWant {
            exit: 1,
            findings: &[("auth.before-tls", "fail")],
            skipped: &[],
        },
    );
    if m.rows.iter().any(|(_, r)| r.is_err()) {
        say(&format!("--- dovecot.log\n{}", read_log(&dv.log)));
    }
    m.finish();
}

#[test]
fn probe_calibration_postfix() {
    if !requirements_met(
        "probe_calibration_postfix",
        &[
            Need::Root,
            Need::Program("/usr/sbin/postfix"),
            Need::Program("/usr/lib/postfix/sbin/master"),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("probe-postfix");
    let pki = make_pki(&dir);
    let pf = start_postfix(&dir);
    let mut m = Matrix::new("probe/postfix");
    let ca = pki.ca.as_path();
    probe_case(
        &mut m,
        "smtp",
        &format!("smtp://{}", pf.smtp),
        ca,
        &[],
        ProbeWant {
            exit: 0,
            findings: &[],
            skipped: &["implicit.reachable"],
        },
    );
    // The test instance has no smtps listener: the implicit counterpart is
    // probed on a port where nothing listens (a warn, below --fail-on fail).
    let closed = free_ports("127.0.0.1", 1)[0].to_string();
    probe_case(
        &mut m,
        "submission (no smtps)",
        &format!("submission://{}", pf.submission),
        ca,
        &["--implicit-port", &closed],
        ProbeWant {
            exit: 0,
            findings: &[("implicit.reachable", "warn")],
            skipped: &[],
        },
    );
    if m.rows.iter().any(|(_, r)| r.is_err()) {
        say(&format!("--- maillog\n{}", read_log(&pf.maillog)));
    }
    m.finish();
}

/// aiosmtpd (`peers/aiosmtpd_server.py`, `require_starttls=True`) run by
/// `python` on 127.0.0.1; returns the server and its port once it listens.
fn start_aiosmtpd(python: &str, pki: &Pki) -> (Daemon, u16, String) {
    let port = free_ports("127.0.0.1", 1)[0];
    let script = peers_dir().join("aiosmtpd_server.py");
    let mut server = Daemon::spawn(
        "aiosmtpd",
        python,
        &[
            &script.to_string_lossy(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--cert",
            &pki.cert.to_string_lossy(),
            "--key",
            &pki.key.to_string_lossy(),
            "--lifetime",
            "200",
        ],
    );
    server.wait_for("`listening`", |lines| {
        lines.iter().any(|l| l.starts_with("listening "))
    });
    let version = server
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("aiosmtpd ").map(str::to_string))
        .unwrap_or_default();
    (server, port, version)
}

#[test]
fn probe_calibration_aiosmtpd_1_4_6() {
    if !requirements_met(
        "probe_calibration_aiosmtpd_1_4_6",
        &[
            Need::Program("python3"),
            Need::PythonModule("aiosmtpd"),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("probe-aiosmtpd146");
    let pki = make_pki(&dir);
    let (server, port, version) = start_aiosmtpd("python3", &pki);
    assert_eq!(version, "1.4.6", "python3's aiosmtpd; {INSTALL_HINT}");
    let mut m = Matrix::new("probe/aiosmtpd-1.4.6");
    // The injection fix of 1.4.6 holds; a second STARTTLS inside TLS is
    // still accepted (220), a real finding.
    probe_case(
        &mut m,
        "smtp",
        &format!("smtp://127.0.0.1:{port}"),
        &pki.ca,
        &["--server-name", "localhost"],
        ProbeWant {
            exit: 1,
            findings: &[("state.second-starttls", "fail")],
            skipped: &["implicit.reachable"],
        },
    );
    if m.rows.iter().any(|(_, r)| r.is_err()) {
        say(&format!("--- aiosmtpd\n{}", server.lines().join("\n")));
    }
    m.finish();
}

#[test]
fn probe_calibration_aiosmtpd_1_4_5_cve_2024_34083() {
    if !requirements_met(
        "probe_calibration_aiosmtpd_1_4_5_cve_2024_34083",
        &[
            Need::Program(AIOSMTPD_145_PYTHON),
            Need::Program("openssl"),
            Need::Program("timeout"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("probe-aiosmtpd145");
    let pki = make_pki(&dir);
    let (server, port, version) = start_aiosmtpd(AIOSMTPD_145_PYTHON, &pki);
    assert_eq!(version, "1.4.5", "{AIOSMTPD_145_PYTHON}; {INSTALL_HINT}");
    let mut m = Matrix::new("probe/aiosmtpd-1.4.5");
    // CVE-2024-34083: commands pipelined after STARTTLS run inside TLS.
    probe_case(
        &mut m,
        "smtp (CVE-2024-34083)",
        &format!("smtp://127.0.0.1:{port}"),
        &pki.ca,
        &["--server-name", "localhost"],
        ProbeWant {
            exit: 1,
            findings: &[
                ("injection.same-write", "fail"),
                // The second write races the server's switch to TLS: on a
                // quiet, fast machine it can land after it in every attempt
                // (the probe says so); same-write and partial-line are not
                // races and must find the flaw.
                ("injection.two-writes", "fail-or-late"),
                ("injection.partial-line", "fail"),
                ("state.second-starttls", "fail"),
            ],
            skipped: &["implicit.reachable"],
        },
    );
    if m.rows.iter().any(|(_, r)| r.is_err()) {
        say(&format!("--- aiosmtpd\n{}", server.lines().join("\n")));
    }
    m.finish();
}

/// `starttls probe --domain` with a real Postfix as the MX host, named by a
/// DNSSEC-signed test zone served by a real `knotd` (issue #17): a TLSA
/// record for Postfix's key passes DANE (its certificate names `localhost`,
/// not the MX host: the PKIX name failure is shown, not counted), a TLSA
/// record for another key fails it.
#[test]
fn probe_domain_with_postfix_as_the_mx_host() {
    use starttls::rustls::pki_types::pem::PemObject;
    use starttls::rustls::pki_types::CertificateDer;
    if !requirements_met(
        "probe_domain_with_postfix_as_the_mx_host",
        &[
            Need::Root,
            Need::Program("/usr/sbin/postfix"),
            Need::Program("/usr/lib/postfix/sbin/master"),
            Need::Program("openssl"),
            Need::Program("knotd"),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("probe-domain-postfix");
    let pki = make_pki(&dir);
    let pf = start_postfix(&dir);
    let leaf = CertificateDer::from_pem_file(&pki.cert).expect("leaf.pem");
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).expect("leaf parses");
    use sha2::Digest;
    let spki: String = sha2::Sha256::digest(parsed.tbs_certificate.subject_pki.raw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let Some(zone) = starttls_conformance::zone::ZoneBuilder::new("example.test.")
        .record("mail MX 10 mx")
        .record("mx A 127.0.0.1")
        .record(&format!("_25._tcp.mx TLSA 3 1 1 {spki}"))
        .record("other MX 10 mxother")
        .record("mxother A 127.0.0.1")
        .record(&format!("_25._tcp.mxother TLSA 3 1 1 {}", "ab".repeat(32)))
        .start()
    else {
        return;
    };
    let run = |domain: &str| {
        let out = Command::new(STARTTLS)
            .args(["probe", "--domain", domain, "--json"])
            .arg("--dns")
            .arg(zone.addr().to_string())
            .arg("--trust-anchor")
            .arg(zone.trust_anchor_file())
            .args(["--smtp-port", &pf.smtp.port().to_string()])
            .arg("--ca")
            .arg(&pki.ca)
            .args(["--banner-wait", "10", "--timeout", "10"])
            .output()
            .expect("probe --domain");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let verdict = |id: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|e| e["event"] == "check" && e["id"] == id)
                .map(|e| e["verdict"].as_str().unwrap_or("?").to_string())
                .collect()
        };
        (
            out.status.code(),
            verdict("dane.match"),
            verdict("cert.name"),
            verdict("upgrade.works"),
            text,
        )
    };
    let (code, dane, name, works, text) = run("mail.example.test");
    assert_eq!(works, ["pass"], "Postfix upgrades\n{text}");
    assert_eq!(dane, ["pass"], "DANE-EE matches Postfix's key\n{text}");
    assert_eq!(
        name,
        ["skipped"],
        "the PKIX name failure is not counted under DANE\n{text}"
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, dane, _, _, text) = run("other.example.test");
    assert_eq!(dane, ["fail"], "{text}");
    assert_eq!(code, Some(1), "{text}");
}
