//! `starttls probe` against `starttls serve` (sound) and `starttls serve
//! --broken MODE` (deliberately broken), as processes, on 127.0.0.1 only:
//! every check's verdicts, the JSON document and the exit codes.
//!
//! Every test starts its own server on free ports and kills it on drop.
//! Probes run with a short banner wait and timeout (`--banner-wait 2
//! --timeout 3`): loopback answers at once.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_starttls");

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "starttls-probe-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `serve` (killed on drop) and what the probe needs of it.
struct Server {
    child: Child,
    ports: BTreeMap<&'static str, u16>,
    ca: PathBuf,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KINDS: [&str; 7] = [
    "smtp",
    "submission",
    "imap",
    "pop3",
    "smtps",
    "imaps",
    "pop3s",
];

/// `starttls serve` on every kind, with `extra` arguments (`--broken ...`).
fn serve(extra: &[&str]) -> Server {
    let dir = TempDir::new("serve");
    let ca = dir.0.join("ca.pem");
    let held: Vec<TcpListener> = KINDS
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut ports = BTreeMap::new();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--ca-out").arg(&ca);
    for (kind, l) in KINDS.iter().zip(&held) {
        let port = l.local_addr().expect("addr").port();
        ports.insert(*kind, port);
        cmd.arg(format!("--{kind}"))
            .arg(format!("127.0.0.1:{port}"));
    }
    drop(held);
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn serve");
    let server = Server {
        child,
        ports,
        ca,
        _dir: dir,
    };
    // Up when every port answers and the CA is written.
    let start = Instant::now();
    loop {
        let up = server.ca.exists()
            && server
                .ports
                .values()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
        if up {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// What a probe run gave.
struct Probe {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Probe {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// id -> verdict.
    fn verdicts(&self) -> BTreeMap<String, String> {
        self.json()["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().expect("id").to_string(),
                    c["verdict"].as_str().expect("verdict").to_string(),
                )
            })
            .collect()
    }

    fn check(&self, id: &str) -> Value {
        self.json()["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no check {id} in\n{}", self.stdout))
    }
}

fn run(args: &[&str]) -> Probe {
    let out: Output = Command::new(BIN)
        .arg("probe")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run probe");
    let p = Probe {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // With --json, stdout is exactly one JSON document (serde_json refuses
    // anything after it) whose exit_code is the process's.
    if args.contains(&"--json") && p.code != 3 {
        assert_eq!(p.json()["exit_code"], p.code, "{}", p.stdout);
    }
    p
}

/// Probes `kind` on `server` (JSON), with the implicit counterpart's port.
fn probe(server: &Server, kind: &str, extra: &[&str]) -> Probe {
    let url = format!("{kind}://127.0.0.1:{}", server.ports[kind]);
    let implicit = match kind {
        "submission" => Some(server.ports["smtps"]),
        "imap" => Some(server.ports["imaps"]),
        "pop3" => Some(server.ports["pop3s"]),
        _ => None,
    };
    let ca = server.ca.to_string_lossy().into_owned();
    let mut args = vec![
        url.as_str(),
        "--ca",
        ca.as_str(),
        "--banner-wait",
        "2",
        "--timeout",
        "3",
        "--json",
    ];
    let port;
    if let Some(p) = implicit {
        port = p.to_string();
        args.push("--implicit-port");
        args.push(&port);
    }
    args.extend_from_slice(extra);
    run(&args)
}

fn assert_verdict(p: &Probe, id: &str, want: &str) {
    let v = p.verdicts();
    assert_eq!(
        v.get(id).map(String::as_str),
        Some(want),
        "{id}: expected {want}\n{}",
        p.stdout
    );
}

// ------------------------------------------------------------------ tests

#[test]
fn sound_server_passes_every_check_in_every_protocol() {
    let s = serve(&[]);
    for kind in KINDS {
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 0, "{kind}: exit code\n{}\n{}", p.stdout, p.stderr);
        let doc = p.json();
        assert_eq!(doc["schema"], "starttls-probe/1");
        assert_eq!(doc["exit_code"], 0);
        for (id, v) in p.verdicts() {
            assert!(
                v == "pass"
                    || (v == "skipped"
                        && (id.starts_with("robust.")
                            || kind.ends_with('s')
                            || id == "implicit.reachable")),
                "{kind}: {id} is {v}\n{}",
                p.stdout
            );
        }
        if !kind.ends_with('s') {
            for id in [
                "upgrade.offered",
                "upgrade.works",
                "cert.chain",
                "cert.name",
                "cert.expiry",
                "injection.same-write",
                "injection.two-writes",
                "injection.partial-line",
                "state.capabilities",
                "state.no-starttls-after",
                "state.second-starttls",
                "auth.before-tls",
            ] {
                assert_verdict(&p, id, "pass");
            }
        }
        if kind == "imap" {
            assert_verdict(&p, "injection.literal", "pass");
        }
        if kind == "smtp" {
            assert_verdict(&p, "state.envelope", "pass");
        }
        if ["submission", "imap", "pop3"].contains(&kind) {
            assert_verdict(&p, "implicit.reachable", "pass");
        }
    }
}

#[test]
fn injection_is_flagged_in_every_style_and_protocol() {
    let s = serve(&["--broken", "inject"]);
    for kind in ["smtp", "imap", "pop3"] {
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 1, "{kind}\n{}", p.stdout);
        for id in [
            "injection.same-write",
            "injection.two-writes",
            "injection.partial-line",
        ] {
            assert_verdict(&p, id, "fail");
        }
        if kind == "imap" {
            assert_verdict(&p, "injection.literal", "fail");
        }
        // The evidence shows the server's own line, answering the random
        // marker inside TLS.
        let marker = p.json()["marker"].as_str().expect("marker").to_string();
        let same = p.check("injection.same-write");
        let ev = same["evidence"].to_string();
        assert!(ev.contains(&marker), "{kind}: marker not in evidence {ev}");
        assert!(
            ev.contains("S[tls]:"),
            "{kind}: no TLS reply in evidence {ev}"
        );
        // Everything else still passes: the finding is precise.
        assert_verdict(&p, "state.no-starttls-after", "pass");
        assert_verdict(&p, "auth.before-tls", "pass");
    }
}

#[test]
fn kept_state_is_flagged() {
    let s = serve(&["--broken", "keep-state"]);
    for kind in ["smtp", "imap", "pop3"] {
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 1, "{kind}\n{}", p.stdout);
        assert_verdict(&p, "state.capabilities", "warn");
        assert_verdict(&p, "state.no-starttls-after", "fail");
        assert_verdict(&p, "state.second-starttls", "fail");
        assert_verdict(&p, "injection.same-write", "pass");
        if kind == "smtp" {
            assert_verdict(&p, "state.envelope", "fail");
        }
    }
}

#[test]
fn credentials_before_tls_fail_on_submission_imap_pop3_and_warn_on_port_25() {
    let s = serve(&["--broken", "auth-before-tls"]);
    for kind in ["submission", "imap", "pop3"] {
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 1, "{kind}\n{}", p.stdout);
        assert_verdict(&p, "auth.before-tls", "fail");
    }
    let p = probe(&s, "smtp", &[]);
    assert_verdict(&p, "auth.before-tls", "warn");
    assert_eq!(
        p.code, 0,
        "a warn is below the default --fail-on fail\n{}",
        p.stdout
    );
    let p = probe(&s, "smtp", &["--fail-on", "warn"]);
    assert_eq!(p.code, 1, "--fail-on warn\n{}", p.stdout);
    assert!(p.check("auth.before-tls")["evidence"]
        .to_string()
        .contains("334"));
}

#[test]
fn certificate_failures_are_certificate_failures() {
    for (mode, id, want) in [
        ("untrusted-cert", "cert.chain", "fail"),
        ("wrong-name-cert", "cert.name", "fail"),
        ("expired-cert", "cert.expiry", "fail"),
        ("expiring-cert", "cert.expiry", "warn"),
    ] {
        let s = serve(&["--broken", mode]);
        for kind in ["imap", "submission", "pop3s"] {
            let p = probe(&s, kind, &[]);
            assert_verdict(&p, id, want);
            if !kind.ends_with('s') {
                // Never "no STARTTLS": the upgrade itself worked.
                assert_verdict(&p, "upgrade.offered", "pass");
                assert_verdict(&p, "upgrade.works", "pass");
            }
            assert_eq!(
                p.code,
                if want == "fail" { 1 } else { 0 },
                "{mode} {kind}\n{}",
                p.stdout
            );
        }
    }
    let s = serve(&["--broken", "expiring-cert"]);
    let p = probe(&s, "imap", &["--fail-on", "warn"]);
    assert_eq!(p.code, 1);
    let p = probe(&s, "imap", &["--expiry-warn", "2"]);
    assert_verdict(&p, "cert.expiry", "pass");
}

#[test]
fn no_starttls_is_a_failure_and_injection_is_not_tested() {
    let s = serve(&["--broken", "no-starttls"]);
    for kind in ["smtp", "imap", "pop3"] {
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 1);
        assert_verdict(&p, "upgrade.offered", "fail");
        for id in [
            "injection.same-write",
            "injection.two-writes",
            "injection.partial-line",
        ] {
            assert_verdict(&p, id, "skipped");
        }
    }
}

#[test]
fn turned_away_or_silent_is_inconclusive_with_the_reply_text() {
    let s = serve(&["--broken", "greeting-421"]);
    for kind in ["smtp", "imap", "pop3"] {
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 2, "{kind}\n{}", p.stdout);
        let doc = p.json();
        assert_eq!(doc["connections"], 1, "no more connections after a 421");
        for (id, v) in p.verdicts() {
            assert!(v == "inconclusive" || id.starts_with("robust."), "{id} {v}");
        }
        let ev = p.check("upgrade.offered");
        let shown = ev.to_string();
        assert!(
            shown.contains("421") || shown.contains("BYE") || shown.contains("-ERR"),
            "{shown}"
        );
    }
    let s = serve(&["--broken", "silent"]);
    let start = Instant::now();
    let p = probe(&s, "smtp", &[]);
    assert_eq!(p.code, 2);
    assert!(p.check("upgrade.offered")["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("no greeting"));
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn usage_errors_exit_3_with_nothing_on_stdout() {
    for args in [
        vec!["foo://127.0.0.1"],
        vec!["--no-such-flag", "smtp://127.0.0.1"],
        vec!["smtp://127.0.0.1:1", "--fail-on", "sometimes"],
        vec!["imap://alice:secret@127.0.0.1:1"],
        vec!["smtp://127.0.0.1:1", "--ca", "/nonexistent/ca.pem"],
        vec!["smtp://127.0.0.1:1", "--resolve", "nonsense"],
    ] {
        let p = run(&args);
        assert_eq!(p.code, 3, "{args:?}\n{}", p.stderr);
        assert!(p.stdout.is_empty(), "{args:?}: {}", p.stdout);
    }
    // Nothing listening: not a usage error, inconclusive.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let p = run(&[
        &format!("smtp://127.0.0.1:{port}"),
        "--json",
        "--timeout",
        "2",
    ]);
    assert_eq!(p.code, 2, "{}", p.stdout);
}

#[test]
fn resolve_and_table_output() {
    let s = serve(&[]);
    let ca = s.ca.to_string_lossy().into_owned();
    let port = s.ports["imap"];
    let resolve = format!("localhost:{port}:127.0.0.1");
    let p = run(&[
        &format!("imap://localhost:{port}"),
        "--resolve",
        &resolve,
        "--ca",
        &ca,
        "--banner-wait",
        "2",
        "--timeout",
        "3",
        "--implicit-port",
        &s.ports["imaps"].to_string(),
    ]);
    assert_eq!(p.code, 0, "{}\n{}", p.stdout, p.stderr);
    assert!(!p.stdout.contains('\x1b'), "colour only on a terminal");
    assert!(p.stdout.contains("cert.name"));
    assert!(p.stdout.contains("DNS-ID localhost"), "{}", p.stdout);
    assert!(p
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .contains("exit 0"));
}

#[test]
fn robustness_probes_pass_on_the_sound_server_with_short_evidence() {
    let s = serve(&[]);
    for kind in ["smtp", "imap", "pop3", "imaps"] {
        let p = probe(&s, kind, &["--aggressive"]);
        assert_eq!(p.code, 0, "{kind}\n{}\n{}", p.stdout, p.stderr);
        assert_verdict(&p, "robust.long-line", "pass");
        assert_verdict(&p, "robust.nul", "pass");
        if kind.starts_with("imap") {
            assert_verdict(&p, "robust.huge-literal", "pass");
        }
        // The 100 000-octet line is clipped in the evidence, saying so.
        let ev = p.check("robust.long-line")["evidence"].clone();
        let lines: Vec<&str> = ev
            .as_array()
            .expect("evidence")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(lines.iter().all(|l| l.len() < 400), "{kind}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("more characters)")),
            "{kind}: {lines:?}"
        );
    }
}

#[test]
fn robustness_failures_are_found_on_a_crashing_or_inviting_server() {
    // Crashes on the long line: no later connection is served.
    let s = serve(&["--broken", "crash-long-line"]);
    let p = probe(&s, "imap", &["--aggressive"]);
    assert_eq!(p.code, 1, "{}", p.stdout);
    assert_verdict(&p, "robust.long-line", "fail");
    let detail = p.check("robust.long-line")["detail"].to_string();
    assert!(detail.contains("a new connection failed"), "{detail}");
    // What comes after cannot be judged: the server is gone.
    assert_verdict(&p, "robust.nul", "inconclusive");
    assert_verdict(&p, "robust.huge-literal", "inconclusive");
    // Everything before it passed.
    assert_verdict(&p, "injection.same-write", "pass");

    // Crashes on NUL, survives the long line.
    for kind in ["smtp", "pop3"] {
        let s = serve(&["--broken", "crash-nul"]);
        // Without --aggressive the server passes: nothing crashes it.
        let p = probe(&s, kind, &[]);
        assert_eq!(p.code, 0, "{kind}\n{}", p.stdout);
        assert_verdict(&p, "robust.nul", "skipped");
        let p = probe(&s, kind, &["--aggressive"]);
        assert_eq!(p.code, 1, "{kind}\n{}", p.stdout);
        assert_verdict(&p, "robust.long-line", "pass");
        assert_verdict(&p, "robust.nul", "fail");
    }

    // Invites a 4 GiB literal before login.
    let s = serve(&["--broken", "huge-literal"]);
    let p = probe(&s, "imap", &["--aggressive"]);
    assert_eq!(p.code, 1, "{}", p.stdout);
    assert_verdict(&p, "robust.huge-literal", "fail");
    assert_verdict(&p, "robust.long-line", "pass");
    assert_verdict(&p, "robust.nul", "pass");
    assert!(p.check("robust.huge-literal")["evidence"]
        .to_string()
        .contains("S: + go ahead"));
}

/// The object keys of a JSON text in the order they appear (a key is a
/// string followed by `:`), nested objects included.
fn keys_in_order(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        s.push(e);
                    }
                }
                '"' => break,
                _ => s.push(c),
            }
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_some_and(|(_, c)| *c == ':') {
            keys.push(s);
        }
    }
    keys
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn json_matches_the_documented_schema_keys_order_and_types() {
    let doc_md = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/probe.md"),
    )
    .expect("read docs/probe.md");
    let section = doc_md
        .split("## JSON (schema `starttls-probe/1`)")
        .nth(1)
        .expect("docs/probe.md has the JSON section");
    let example = section
        .split("```json\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a ```json example");
    let documented: Value = serde_json::from_str(example).expect("the documented example parses");
    let doc_keys = keys_in_order(example);

    let s = serve(&[]);
    let p = probe(&s, "imap", &[]);
    let real = p.json();
    let real_keys = keys_in_order(&p.stdout);

    // The document up to the end of the first check has exactly the
    // documented keys in the documented order...
    assert_eq!(
        real_keys.get(..doc_keys.len()),
        Some(&doc_keys[..]),
        "key order differs from docs/probe.md\n{}",
        p.stdout
    );
    // ... and every further check repeats the documented check keys.
    let first_check = doc_keys
        .iter()
        .position(|k| k == "id")
        .expect("the example has a check");
    let check_keys = &doc_keys[first_check..];
    for (i, chunk) in real_keys[doc_keys.len()..]
        .chunks(check_keys.len())
        .enumerate()
    {
        assert_eq!(chunk, check_keys, "check {} keys", i + 1);
    }
    // Same types, field by field.
    for (k, v) in documented.as_object().expect("object") {
        assert_eq!(kind_of(&real[k]), kind_of(v), "{k}");
        if let Some(o) = v.as_object() {
            for (k2, v2) in o {
                assert_eq!(kind_of(&real[k][k2]), kind_of(v2), "{k}.{k2}");
            }
        }
    }
    let doc_check = &documented["checks"][0];
    for c in real["checks"].as_array().expect("checks") {
        for (k, v) in doc_check.as_object().expect("check object") {
            assert_eq!(kind_of(&c[k]), kind_of(v), "checks[].{k}");
        }
    }
    // `--json` prints that one document and nothing else on stdout.
    assert!(p.stdout.trim_start().starts_with('{') && p.stdout.trim_end().ends_with('}'));
    assert_eq!(p.stdout.matches("\"schema\"").count(), 1);
}
