//! The STARTTLS-terminating proxy example (`examples/starttls_proxy.rs`)
//! carries real sessions to a real backend: curl (IMAP `STARTTLS`, POP3
//! `STLS`) through the proxy to Dovecot's cleartext listeners, on loopback.
//!
//! Needs `/usr/sbin/dovecot` and `curl` (conformance/peers/install.sh);
//! without them the test prints `SKIPPED: ...` and passes, except under
//! `CI=true`, where a missing peer is a failure.

#[path = "../examples/starttls_proxy.rs"]
mod starttls_proxy;

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starttls_proxy::{Protocol, Proxy};

fn requirements_met() -> bool {
    let missing: Vec<&str> = ["/usr/sbin/dovecot", "curl"]
        .into_iter()
        .filter(|p| {
            Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "missing {}; install with conformance/peers/install.sh",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: a missing peer is a failure, not a skip)");
    }
    println!("SKIPPED: proxy_to_dovecot: {why}");
    false
}

/// A private Dovecot in a temp dir, stopped (SIGTERM, then SIGKILL) and
/// removed on drop.
struct Dovecot {
    dir: PathBuf,
    child: Child,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a helper command");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<StdListener> = (0..n)
        .map(|_| StdListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

impl Dovecot {
    /// Cleartext IMAP and POP3 on 127.0.0.1, plaintext login allowed: the
    /// backend of a TLS-terminating proxy. The user `alice`/`secret` has one
    /// message.
    fn start() -> (Dovecot, u16, u16) {
        let dir = std::env::temp_dir().join(format!(
            "starttls-io-proxy-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = dir.display();
        let root = output(Command::new("id").arg("-u")) == "0";
        let (login_user, internal_user, uid, gid) = if root {
            (
                "dovenull".to_string(),
                "dovecot".to_string(),
                output(Command::new("id").args(["-u", "nobody"])),
                output(Command::new("id").args(["-g", "nobody"])),
            )
        } else {
            let me = output(Command::new("id").arg("-un"));
            (
                me.clone(),
                me,
                output(Command::new("id").arg("-u")),
                output(Command::new("id").arg("-g")),
            )
        };
        let ports = free_ports(2);
        let (imap, pop3) = (ports[0], ports[1]);
        let conf = format!(
            "protocols = imap pop3\n\
             listen = 127.0.0.1\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             instance_name = starttls-io-proxy-{imap}\n\
             log_path = {d}/dovecot.log\n\
             info_log_path = {d}/dovecot.log\n\
             auth_verbose = yes\n\
             shutdown_clients = yes\n\
             default_login_user = {login_user}\n\
             default_internal_user = {internal_user}\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/mail/%u\n}}\n\
             mail_location = maildir:{d}/mail/%u/Maildir\n\
             first_valid_uid = 1\n\
             namespace inbox {{\n  inbox = yes\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  chroot =\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  \
             inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             service auth-worker {{\n  user = {internal_user}\n}}\n"
        );
        std::fs::write(dir.join("dovecot.conf"), conf).expect("write conf");
        std::fs::write(dir.join("users"), "alice:{PLAIN}secret::::::\n").expect("users");
        std::fs::set_permissions(dir.join("users"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod users");
        let maildir = dir.join("mail/alice/Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        std::fs::write(
            maildir.join("new/1700000000.M1P1.localhost"),
            "From: bob@localhost\r\nTo: alice@localhost\r\nSubject: hello through the proxy\r\n\
             Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@localhost>\r\n\r\n\
             Hello Alice.\r\n",
        )
        .expect("message");
        Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}"), &format!("{d}/mail")])
            .status()
            .expect("chown");
        let child = Command::new("/usr/sbin/dovecot")
            .args(["-c", &format!("{d}/dovecot.conf"), "-F"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let dovecot = Dovecot { dir, child };
        for (port, greeting) in [(imap, "* OK"), (pop3, "+OK")] {
            dovecot.wait_greeting(port, greeting);
        }
        (dovecot, imap, pop3)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    fn wait_greeting(&self, port: u16, greeting: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut b = vec![0u8; greeting.len()];
                if s.read_exact(&mut b).is_ok() && b == greeting.as_bytes() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Dovecot did not greet on {port}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The proxies (IMAP and POP3) on a runtime of their own.
fn start_proxies(imap_backend: u16, pop3_backend: u16) -> (tokio::runtime::Runtime, u16, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let p = common::pki::pki();
    let tls = Arc::new(
        starttls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![p.leaf_der.clone()], p.key())
            .expect("server config"),
    );
    let mut ports = Vec::new();
    for (protocol, backend) in [
        (Protocol::Imap, imap_backend),
        (Protocol::Pop3, pop3_backend),
    ] {
        let backend: SocketAddr = ([127, 0, 0, 1], backend).into();
        let proxy = Proxy::new(protocol, Arc::clone(&tls), backend).expect("proxy");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        ports.push(listener.local_addr().expect("addr").port());
        rt.spawn(proxy.serve(listener));
    }
    (rt, ports[0], ports[1])
}

fn curl(ca: &Path, port: u16, url: &str) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--verbose", "--ssl-reqd"])
        .args(["--max-time", "20", "--user", "alice:secret", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), url])
        .output()
        .expect("run curl")
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn proxy_to_dovecot() {
    if !requirements_met() {
        return;
    }
    let (dovecot, imap, pop3) = Dovecot::start();
    let (rt, imap_front, pop3_front) = start_proxies(imap, pop3);
    let ca = dovecot.dir.join("ca.pem");
    std::fs::write(&ca, &common::pki::pki().ca_pem).expect("write ca");

    // IMAP: STARTTLS with the proxy, then LOGIN, SELECT and FETCH with
    // Dovecot, over the proxy's TLS.
    let out = curl(
        &ca,
        imap_front,
        &format!("imap://localhost:{imap_front}/INBOX;UID=1"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = dovecot.log();
    assert!(
        out.status.success() && stdout.contains("Subject: hello through the proxy"),
        "IMAP through the proxy\n{}\n--- dovecot.log\n{log}",
        show(&out)
    );
    for seen in [
        "STARTTLS proxy ready", // the proxy's greeting, in cleartext
        "OK Begin TLS",         // the proxy's answer to STARTTLS
        "Logged in",            // Dovecot's answer to LOGIN, over TLS
    ] {
        assert!(stderr.contains(seen), "{seen:?} in\n{}", show(&out));
    }
    // Dovecot's own greeting never reached the client.
    assert!(!stderr.contains("Dovecot ready"), "{}", show(&out));

    // POP3: STLS with the proxy, then USER, PASS and RETR with Dovecot.
    let out = curl(&ca, pop3_front, &format!("pop3://localhost:{pop3_front}/1"));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Hello Alice."),
        "POP3 through the proxy\n{}\n--- dovecot.log\n{}",
        show(&out),
        dovecot.log()
    );

    // Before TLS nothing reaches the backend: LOGIN is refused by the proxy.
    let mut s = TcpStream::connect(("127.0.0.1", imap_front)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"a LOGIN alice secret\r\nb LOGOUT\r\n")
        .expect("write");
    let mut heard = String::new();
    let _ = s.read_to_string(&mut heard);
    assert!(
        heard.contains("a NO [PRIVACYREQUIRED]") && heard.contains("b OK"),
        "{heard}"
    );

    let logins = dovecot.log().matches("Login: user=<alice>").count();
    assert_eq!(
        logins,
        2,
        "one login per proxied session\n{}",
        dovecot.log()
    );
    drop(rt);
}
