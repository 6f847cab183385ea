//! Live checks with the reference binaries themselves: this very program is
//! started as `starttls serve` and `starttls connect`, one process each, over
//! real TCP and real TLS, for every scheme.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::live::Check;

/// One check per scheme.
pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "serve <-> connect, STARTTLS",
            protocol: "smtp",
            role: "binaries",
            run: |_| pair("smtp", false),
        },
        Check {
            name: "serve <-> connect, STARTTLS + AUTH",
            protocol: "submission",
            role: "binaries",
            run: |_| pair("submission", true),
        },
        Check {
            name: "serve <-> connect, implicit TLS + AUTH",
            protocol: "smtps",
            role: "binaries",
            run: |_| pair("smtps", true),
        },
        Check {
            name: "serve <-> connect, STARTTLS + LOGIN",
            protocol: "imap",
            role: "binaries",
            run: |_| pair("imap", true),
        },
        Check {
            name: "serve <-> connect, implicit TLS + LOGIN",
            protocol: "imaps",
            role: "binaries",
            run: |_| pair("imaps", true),
        },
        Check {
            name: "serve <-> connect, STLS + USER/PASS",
            protocol: "pop3",
            role: "binaries",
            run: |_| pair("pop3", true),
        },
        Check {
            name: "serve <-> connect, implicit TLS + USER/PASS",
            protocol: "pop3s",
            role: "binaries",
            run: |_| pair("pop3s", true),
        },
    ]
}

/// Kills the server if a check returns early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn pair(scheme: &str, login: bool) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let port = free_port()?;
    let ca = temp_file(&format!("ca-{scheme}-{port}.pem"));
    let addr = format!("127.0.0.1:{port}");
    let mut server = Guard(
        Command::new(&exe)
            .args([
                "serve",
                &format!("--{scheme}"),
                &addr,
                "--max-connections",
                "1",
                "--ca-out",
            ])
            .arg(&ca)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting serve: {e}"))?,
    );
    let stdout = server.0.stdout.take().ok_or("serve has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening ") => break,
            Some(Ok(_)) => {}
            _ => return Err("serve did not start".into()),
        }
        if Instant::now() > deadline {
            return Err("serve did not start in time".into());
        }
    }
    let mut connect = Command::new(&exe);
    connect
        .args([
            "connect",
            &format!("{scheme}://{addr}"),
            "--server-name",
            "localhost",
            "--ca",
        ])
        .arg(&ca);
    if login {
        connect.args(["--user", "alice", "--password", "secret"]);
    }
    let out = connect
        .output()
        .map_err(|e| format!("running connect: {e}"))?;
    let _ = std::fs::remove_file(&ca);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "connect exited {:?}: {}",
            out.status.code(),
            last_lines(&text)
        ));
    }
    let tls = text
        .lines()
        .find_map(|l| l.strip_prefix("TLS: "))
        .ok_or_else(|| format!("no TLS line: {}", last_lines(&text)))?
        .to_string();
    if !text.lines().any(|l| l == "OK") {
        return Err(format!("no final OK: {}", last_lines(&text)));
    }
    // After the upgrade, every peer text is marked as received over TLS.
    let after = text.split("TLS: ").nth(1).unwrap_or_default();
    if after.lines().any(|l| l.starts_with("S: [cleartext]")) {
        return Err("a cleartext text after TLS".into());
    }
    if login && !text.contains("# authenticated") {
        return Err(format!("login did not succeed: {}", last_lines(&text)));
    }
    // The server logged the session and exited by itself.
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    if !log.iter().any(|l| l.contains("TLS TLSv1.")) {
        return Err("serve did not log TLS".into());
    }
    Ok(tls)
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("starttls-suite-{}-{name}", std::process::id()))
}

fn last_lines(text: &str) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(3)..].join(" | ")
}
