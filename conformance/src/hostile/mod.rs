//! `starttls hostile`: a hostile STARTTLS server that plays a catalog of
//! attack cases (stripping, response injection, PREAUTH, tampering, UI
//! spoofing, referrals, bad certificates, robustness, and benign controls)
//! against a mail client, and judges each case from what the server saw and
//! what the client printed. See `docs/hostile.md`.
//!
//! * `starttls hostile --client 'CMD {url} {ca} ...'` runs the command once
//!   per case against a fresh loopback listener and prints a table (and a
//!   JSON report with `--json FILE`); exit status 0 only if every case
//!   passes.
//! * `starttls hostile --smtp ADDR --imap ADDR --pop3 ADDR --case ID` (or
//!   `--cycle`) listens and plays cases for clients that cannot be scripted.

pub mod catalog;
pub mod certs;
pub mod judge;
pub mod server;

/// `println!` that ignores a closed stdout (`starttls hostile | head`): the
/// run goes on and the JSON report is still written.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that ignores a closed stdout, like [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use catalog::{Case, Class};
use certs::Certs;
use judge::{Exit, Observed, Verdict};
use server::{ConnLog, Ctx, Proto};

/// Arguments of `starttls hostile`.
#[derive(clap::Args, Debug)]
pub struct HostileArgs {
    /// The client command, run with `sh -c` once per case; `{url}`, `{ca}`, `{host}`, `{port}`, `{proto}`, `{name}` (the certificate name, localhost) and `{dir}` (a scratch directory for the case) are filled in.
    #[arg(long, value_name = "CMD")]
    pub client: Option<String>,
    /// Only the cases whose id matches one of these comma-separated globs (`*`, `?`).
    #[arg(long, value_name = "GLOB", default_value = "*")]
    pub cases: String,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Cases run at the same time.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Seconds a client may take per case before it counts as hung.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub timeout: u64,
    /// Do not judge the client's output (markers, control bytes).
    #[arg(long)]
    pub ignore_output: bool,
    /// List the catalog (id, class, what the server does, secure outcome) and exit.
    #[arg(long)]
    pub list: bool,
    /// Listen mode: SMTP address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub smtp: Option<String>,
    /// Listen mode: IMAP address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub imap: Option<String>,
    /// Listen mode: POP3 address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub pop3: Option<String>,
    /// Listen mode: play this case on its protocol's listener.
    #[arg(long, value_name = "ID")]
    pub case: Option<String>,
    /// Listen mode: each new connection gets the next case of its protocol.
    #[arg(long)]
    pub cycle: bool,
    /// Listen mode: write the CA certificate to trust here.
    #[arg(long, value_name = "FILE")]
    pub ca_out: Option<PathBuf>,
}

/// Runs `starttls hostile`.
pub fn run(args: HostileArgs) -> ExitCode {
    let all = catalog::all();
    let selected: Vec<Case> = all
        .iter()
        .filter(|c| args.cases.split(',').any(|g| glob(g.trim(), &c.id)))
        .cloned()
        .collect();
    if args.list {
        for c in &selected {
            outln!(
                "{:<44} {:<12} {}\n{:<57} secure: {}",
                c.id,
                c.class.name(),
                c.does,
                "",
                c.secure()
            );
        }
        outln!("{} cases", selected.len());
        return ExitCode::SUCCESS;
    }
    let certs = match Certs::generate() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("starttls hostile: cannot make certificates: {e}");
            return ExitCode::from(2);
        }
    };
    if args.smtp.is_some() || args.imap.is_some() || args.pop3.is_some() {
        return listen(&args, &all, certs);
    }
    let Some(client) = args.client.clone() else {
        eprintln!("starttls hostile: give --client 'CMD ...' (or --smtp/--imap/--pop3 to listen, or --list)");
        return ExitCode::from(2);
    };
    if selected.is_empty() {
        eprintln!("starttls hostile: no case matches --cases {:?}", args.cases);
        return ExitCode::from(2);
    }
    let dir = std::env::temp_dir().join(format!("starttls-hostile-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("ca.pem"), &certs.ca_pem))
    {
        eprintln!("starttls hostile: {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let opts = RunOpts {
        client,
        timeout: Duration::from_secs(args.timeout.max(1)),
        capture: !args.ignore_output,
        dir: dir.clone(),
    };
    let results = run_all(&selected, &certs, &opts, args.jobs.max(1), true);
    let failed = results.iter().filter(|r| !r.verdict.pass).count();
    summary(&results);
    if let Some(path) = &args.json {
        let report = report_json(&opts, &results);
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        let written = if path.as_os_str() == "-" {
            writeln!(std::io::stdout(), "{text}")
        } else {
            std::fs::write(path, text + "\n")
        };
        if let Err(e) = written {
            eprintln!("starttls hostile: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How cases are run.
pub struct RunOpts {
    /// The command template.
    pub client: String,
    /// Per case.
    pub timeout: Duration,
    /// Capture and judge the client's output.
    pub capture: bool,
    /// Holds `ca.pem` and one scratch directory per case.
    pub dir: PathBuf,
}

/// One case's result.
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// What was seen.
    pub observed: Observed,
    /// The verdict.
    pub verdict: Verdict,
    /// How long it took.
    pub elapsed: Duration,
}

/// Runs `cases` with `jobs` at a time; prints a line per case if `print`.
pub fn run_all(
    cases: &[Case],
    certs: &Arc<Certs>,
    opts: &RunOpts,
    jobs: usize,
    print: bool,
) -> Vec<CaseResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaseResult>>> =
        Mutex::new((0..cases.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(cases.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let r = run_case(case, certs, opts);
                if print {
                    outln!(
                        "{:<4} {:<46} {:<12} {}",
                        if r.verdict.pass { "PASS" } else { "FAIL" },
                        r.case.id,
                        r.case.class.name(),
                        if r.verdict.pass {
                            r.verdict.notes.join("; ")
                        } else {
                            r.verdict.findings.join("; ")
                        }
                    );
                }
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Shell-quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs one case: a fresh listener, the client command, the judge.
pub fn run_case(case: &Case, certs: &Certs, opts: &RunOpts) -> CaseResult {
    let start = Instant::now();
    let fail = |why: String| CaseResult {
        case: case.clone(),
        observed: Observed {
            conns: vec![],
            referrals: 0,
            exit: Exit::Unknown,
            output: None,
        },
        verdict: Verdict {
            pass: false,
            findings: vec![why],
            notes: vec![],
        },
        elapsed: start.elapsed(),
    };
    let (listener, referral) = match (
        TcpListener::bind("127.0.0.1:0"),
        TcpListener::bind("127.0.0.1:0"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(format!("runner: cannot listen: {e}")),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let rport = referral.local_addr().map(|a| a.port()).unwrap_or(0);
    let _ = listener.set_nonblocking(true);
    let _ = referral.set_nonblocking(true);
    let case_dir = opts.dir.join(&case.id);
    let _ = std::fs::create_dir_all(&case_dir);
    let out_path = case_dir.join("output");
    let ca = opts.dir.join("ca.pem");
    let url = format!("{}://127.0.0.1:{port}", case.proto.name());
    let cmd = opts
        .client
        .replace("{url}", &sh_quote(&url))
        .replace("{ca}", &sh_quote(&ca.to_string_lossy()))
        .replace("{host}", "127.0.0.1")
        .replace("{port}", &port.to_string())
        .replace("{proto}", case.proto.name())
        .replace("{name}", "localhost")
        .replace("{dir}", &sh_quote(&case_dir.to_string_lossy()));
    let ctx = Arc::new(Ctx {
        marker: case.marker(),
        referral: format!("{}://127.0.0.1:{rport}/", case.proto.name()),
        tls: certs.config(case.play.cert),
        deadline: start + opts.timeout + Duration::from_secs(2),
        stop: Arc::new(AtomicBool::new(false)),
    });
    let out_file = match std::fs::File::create(&out_path) {
        Ok(f) => f,
        Err(e) => return fail(format!("runner: {}: {e}", out_path.display())),
    };
    let err_file = match out_file.try_clone() {
        Ok(f) => f,
        Err(e) => return fail(format!("runner: {e}")),
    };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&cmd)
        .current_dir(&case_dir)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("runner: cannot start the client: {e}")),
    };
    let logs: Arc<Mutex<Vec<(usize, ConnLog)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    let mut referrals = 0;
    let mut accepted = 0;
    let deadline = start + opts.timeout;
    let exit = loop {
        accept_all(&listener, case, &ctx, &logs, &mut handles, &mut accepted);
        while let Ok((s, _)) = referral.accept() {
            referrals += 1;
            drop(s);
        }
        match child.try_wait() {
            Ok(Some(status)) => break exit_of(status),
            Ok(None) => {}
            Err(_) => break Exit::Unknown,
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            break Exit::Timeout;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Give the server threads a moment to read what the client sent last.
    let grace = Instant::now() + Duration::from_millis(500);
    while Instant::now() < grace
        && handles
            .iter()
            .any(|h: &std::thread::JoinHandle<()>| !h.is_finished())
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    ctx.stop.store(true, Ordering::Relaxed);
    kill_group(child.id());
    for h in handles {
        let _ = h.join();
    }
    let mut conns: Vec<(usize, ConnLog)> = logs.lock().map(|l| l.clone()).unwrap_or_default();
    conns.sort_by_key(|(i, _)| *i);
    let output = if opts.capture {
        std::fs::read(&out_path).ok().map(|mut o| {
            o.truncate(4 << 20);
            o
        })
    } else {
        None
    };
    let observed = Observed {
        conns: conns.into_iter().map(|(_, l)| l).collect(),
        referrals,
        exit,
        output,
    };
    let verdict = judge::judge(case, &observed);
    CaseResult {
        case: case.clone(),
        observed,
        verdict,
        elapsed: start.elapsed(),
    }
}

fn accept_all(
    listener: &TcpListener,
    case: &Case,
    ctx: &Arc<Ctx>,
    logs: &Arc<Mutex<Vec<(usize, ConnLog)>>>,
    handles: &mut Vec<std::thread::JoinHandle<()>>,
    accepted: &mut usize,
) {
    while let Ok((sock, _)) = listener.accept() {
        let _ = sock.set_nonblocking(false);
        let (case, ctx, logs, n) = (case.clone(), ctx.clone(), logs.clone(), *accepted);
        *accepted += 1;
        handles.push(std::thread::spawn(move || {
            let log = server::play(case.proto, &case.play, sock, &ctx);
            if let Ok(mut l) = logs.lock() {
                l.push((n, log));
            }
        }));
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return Exit::Signal(sig);
        }
    }
    status.code().map(Exit::Code).unwrap_or(Exit::Unknown)
}

/// Kills the client's process group (it may have started children).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `*` and `?` globbing.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn summary(results: &[CaseResult]) {
    let mut by: BTreeMap<(Proto, Class), (usize, usize)> = BTreeMap::new();
    for r in results {
        let e = by.entry((r.case.proto, r.case.class)).or_default();
        if r.verdict.pass {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    outln!();
    out!("{:<13}", "class");
    for p in [Proto::Smtp, Proto::Imap, Proto::Pop3] {
        out!(" {:>10}", p.name());
    }
    outln!();
    for class in Class::ALL {
        out!("{:<13}", class.name());
        for p in [Proto::Smtp, Proto::Imap, Proto::Pop3] {
            match by.get(&(p, class)) {
                Some((pass, fail)) => out!(" {:>10}", format!("{pass}/{}", pass + fail)),
                None => out!(" {:>10}", "-"),
            }
        }
        outln!();
    }
    let passed = results.iter().filter(|r| r.verdict.pass).count();
    outln!("{passed} passed, {} failed", results.len() - passed);
}

/// The lines of one direction, credentials masked.
fn lines_json(proto: Proto, conn: &ConnLog, tls: bool) -> Vec<String> {
    let lines = if tls { &conn.tls } else { &conn.clear };
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (tag, verb, _) = server::split(proto, l);
            if conn.sasl_lines.contains(&(tls, i)) {
                "****".to_string()
            } else if judge::credential(proto, &verb) {
                let tag = if tag.is_empty() { tag } else { tag + " " };
                format!(
                    "{}{} ****",
                    judge::printable(&tag, 20),
                    judge::printable(&verb, 20)
                )
            } else {
                judge::printable(&String::from_utf8_lossy(l), 200)
            }
        })
        .collect()
}

/// The JSON report.
pub fn report_json(opts: &RunOpts, results: &[CaseResult]) -> serde_json::Value {
    let passed = results.iter().filter(|r| r.verdict.pass).count();
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            json!({
                "id": r.case.id,
                "proto": r.case.proto.name(),
                "class": r.case.class.name(),
                "threat": r.case.class.threat(),
                "does": r.case.does,
                "secure": r.case.secure(),
                "verdict": if r.verdict.pass { "pass" } else { "fail" },
                "findings": r.verdict.findings,
                "notes": r.verdict.notes,
                "exit": r.observed.exit.to_string(),
                "referrals": r.observed.referrals,
                "output": r.observed.output.as_ref().map(|o| {
                    judge::printable(&String::from_utf8_lossy(o), 3000)
                }),
                "ms": r.elapsed.as_millis() as u64,
                "connections": r.observed.conns.iter().map(|c| json!({
                    "cleartext": lines_json(r.case.proto, c, false),
                    "tls": lines_json(r.case.proto, c, true),
                    "handshake": match &c.handshake {
                        None => serde_json::Value::Null,
                        Some(Ok(())) => json!("ok"),
                        Some(Err(e)) => json!(e),
                    },
                    "notes": c.notes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "client": opts.client,
        "timeout_s": opts.timeout.as_secs(),
        "passed": passed,
        "failed": results.len() - passed,
        "cases": cases,
    })
}

/// Listen mode: play cases to whoever connects.
fn listen(args: &HostileArgs, all: &[Case], certs: Arc<Certs>) -> ExitCode {
    let ca_path = args
        .ca_out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("starttls-hostile-ca.pem"));
    if let Err(e) = std::fs::write(&ca_path, &certs.ca_pem) {
        eprintln!("starttls hostile: {}: {e}", ca_path.display());
        return ExitCode::from(2);
    }
    outln!("# trust this CA: {}", ca_path.display());
    let fixed = match &args.case {
        Some(id) => match all.iter().find(|c| &c.id == id) {
            Some(c) => Some(c.clone()),
            None => {
                eprintln!("starttls hostile: no case {id:?} (see --list)");
                return ExitCode::from(2);
            }
        },
        None if args.cycle => None,
        None => {
            eprintln!("starttls hostile: listen mode needs --case ID or --cycle");
            return ExitCode::from(2);
        }
    };
    let mut threads = Vec::new();
    for (proto, addr) in [
        (Proto::Smtp, &args.smtp),
        (Proto::Imap, &args.imap),
        (Proto::Pop3, &args.pop3),
    ] {
        let Some(addr) = addr else { continue };
        let listener = match TcpListener::bind(addr.as_str()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("starttls hostile: listen on {addr}: {e}");
                return ExitCode::from(2);
            }
        };
        let cases: Vec<Case> = match &fixed {
            Some(c) if c.proto == proto => vec![c.clone()],
            Some(_) => all
                .iter()
                .filter(|c| c.proto == proto && c.id.ends_with("control-plain"))
                .cloned()
                .collect(),
            None => all
                .iter()
                .filter(|c| {
                    c.proto == proto && args.cases.split(',').any(|g| glob(g.trim(), &c.id))
                })
                .cloned()
                .collect(),
        };
        if cases.is_empty() {
            continue;
        }
        outln!(
            "# {} on {addr}: {}",
            proto.name(),
            if cases.len() == 1 {
                cases[0].id.clone()
            } else {
                format!("{} cases in turn", cases.len())
            }
        );
        let certs = certs.clone();
        let timeout = Duration::from_secs(args.timeout.max(1));
        threads.push(std::thread::spawn(move || {
            let (rl, rport) = match TcpListener::bind("127.0.0.1:0").and_then(|l| {
                let p = l.local_addr()?.port();
                Ok((l, p))
            }) {
                Ok(x) => x,
                Err(_) => return,
            };
            let _ = rl.set_nonblocking(true);
            let rl = Arc::new(rl);
            // Desktop clients open several connections at once.
            for (n, sock) in listener.incoming().enumerate() {
                let Ok(sock) = sock else { continue };
                let case = cases[n % cases.len()].clone();
                let (certs, rl) = (certs.clone(), rl.clone());
                std::thread::spawn(move || serve_one(&case, &certs, sock, timeout, &rl, rport));
            }
        }));
    }
    let _ = std::io::stdout().flush();
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

fn serve_one(
    case: &Case,
    certs: &Certs,
    sock: TcpStream,
    timeout: Duration,
    rl: &TcpListener,
    rport: u16,
) {
    let ctx = Ctx {
        marker: case.marker(),
        referral: format!("{}://127.0.0.1:{rport}/", case.proto.name()),
        tls: certs.config(case.play.cert),
        deadline: Instant::now() + timeout,
        stop: Arc::new(AtomicBool::new(false)),
    };
    outln!("{} connection: playing {}", case.proto.name(), case.id);
    let log = server::play(case.proto, &case.play, sock, &ctx);
    let mut referrals = 0;
    while rl.accept().is_ok() {
        referrals += 1;
    }
    let obs = Observed {
        conns: vec![log],
        referrals,
        exit: Exit::Unknown,
        output: None,
    };
    let v = judge::judge(case, &obs);
    let c = &obs.conns[0];
    // One print per connection: connections run at the same time.
    outln!(
        "{} {}: {}\n  cleartext: {}\n  tls:       {}\n  {} {}  (secure: {}; the client's screen is yours to judge)",
        case.proto.name(),
        case.id,
        case.does,
        lines_json(case.proto, c, false).join(" | "),
        lines_json(case.proto, c, true).join(" | "),
        if v.pass { "PASS" } else { "FAIL" },
        if v.pass {
            v.notes.join("; ")
        } else {
            v.findings.join("; ")
        },
        case.secure()
    );
    let _ = std::io::stdout().flush();
}

/// Writes the CA to `dir/ca.pem` (for tests).
pub fn write_ca(certs: &Certs, dir: &Path) -> std::io::Result<PathBuf> {
    let p = dir.join("ca.pem");
    std::fs::write(&p, &certs.ca_pem)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "smtp-control-plain"));
        assert!(glob("smtp-*", "smtp-control-plain"));
        assert!(glob("*-control-*", "imap-control-plain"));
        assert!(glob("imap-?ontrol-plain", "imap-control-plain"));
        assert!(!glob("smtp-*", "imap-control-plain"));
        assert!(!glob("*-plain-x", "imap-control-plain"));
    }

    #[test]
    fn credentials_are_masked_in_reports() {
        let conn = ConnLog {
            clear: vec![
                b"EHLO x".to_vec(),
                b"AUTH LOGIN".to_vec(),
                b"YWxpY2U=".to_vec(),
            ],
            tls: vec![b"A4 LOGIN alice s3cret".to_vec(), b"QUIT".to_vec()],
            sasl_lines: vec![(false, 2)],
            ..ConnLog::default()
        };
        assert_eq!(
            lines_json(Proto::Smtp, &conn, false),
            ["EHLO x", "AUTH ****", "****"]
        );
        assert_eq!(
            lines_json(Proto::Imap, &conn, true),
            ["A4 LOGIN ****", "QUIT"]
        );
    }
}
