//! A small POP3 server on tokio, with STLS (or implicit TLS) driven by the
//! sans-IO `starttls` session. It serves one in-memory test account (user
//! `alice`, password `secret`, one message) and prints what happens,
//! including discarded injection attempts.
//!
//! ```text
//! cargo run --example pop3_server -- --listen 127.0.0.1:1110 --ca-out /tmp/ca.pem
//! cargo run --example pop3_server -- --listen 127.0.0.1:1110 --cert cert.pem --key key.pem
//! cargo run --example pop3_server -- --listen 127.0.0.1:9950 --implicit --ca-out /tmp/ca.pem
//! ```
//!
//! Without `--cert`/`--key` it makes a throwaway CA and a certificate for
//! `localhost`, 127.0.0.1 and ::1 (rcgen), and writes the CA to `--ca-out`.
//! Listens on loopback addresses only.
//!
//! The session answers `CAPA`, `STLS`, `QUIT` before login and the TLS
//! policy itself, and dot-stuffs multi-line answers; this application answers
//! `USER`/`PASS`, `STAT`, `LIST`, `RETR`, `UIDL`, `DELE`, `NOOP`, `RSET` and
//! `QUIT`, and refuses everything else. Each connection gets a fresh copy of
//! the maildrop: `DELE` lasts until the end of the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use starttls::pop3::response::{write_scan_listing, write_uidl_listing};
use starttls::pop3::{
    Capability, Code, Command, ServerConfig, ServerEvent, ServerSession, Status, StatusLine,
};
use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use starttls::{ServerTls, UpgradeEvent, UsageError};
use starttls_io::tokio::Driver;
use tokio::net::{TcpListener, TcpStream};

#[path = "../tests/common/pki.rs"]
mod pki;

/// The test account.
const USER: &[u8] = b"alice";
const PASSWORD: &[u8] = b"secret";
/// The one message. Two of its lines start with a dot: on the wire the
/// session sends them as `..` (RFC 1939 §3), and the lone `.` line does not
/// end the answer.
const MESSAGE: &[u8] = b"From: Bob <bob@example.org>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: Hello from the POP3 example\r\n\
\r\n\
Hi Alice,\r\n\
.this line starts with a dot, and the next line is a single dot:\r\n\
.\r\n\
The message goes on after it.\r\n";
const UID: &[u8] = b"starttls-example-0001";

const USAGE: &str = "usage: pop3_server [--listen ADDR] [--cert FILE --key FILE] [--ca-out FILE] \
[--implicit] [--require-tls] [--max-connections N]";

/// Per-process counter for the APOP-style greeting timestamps.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

struct Opts {
    listen: SocketAddr,
    cert: Option<String>,
    key: Option<String>,
    ca_out: Option<String>,
    implicit: bool,
    require_tls: bool,
    max_connections: Option<usize>,
}

fn parse_args() -> Result<Opts, String> {
    let mut a = Opts {
        listen: SocketAddr::from(([127, 0, 0, 1], 1110)),
        cert: None,
        key: None,
        ca_out: None,
        implicit: false,
        require_tls: false,
        max_connections: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => a.listen = val()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--cert" => a.cert = Some(val()?),
            "--key" => a.key = Some(val()?),
            "--ca-out" => a.ca_out = Some(val()?),
            "--implicit" => a.implicit = true,
            "--require-tls" => a.require_tls = true,
            "--max-connections" => {
                a.max_connections = Some(
                    val()?
                        .parse()
                        .map_err(|e| format!("--max-connections: {e}"))?,
                )
            }
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !a.listen.ip().is_loopback() {
        return Err("this example listens on loopback addresses only".into());
    }
    if a.cert.is_some() != a.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(a)
}

fn tls_config(a: &Opts) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    let (chain, key) = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_file_iter(c)?.collect::<Result<Vec<_>, _>>()?;
            (chain, PrivateKeyDer::from_pem_file(k)?)
        }
        (None, None) => {
            let p = pki::make_pki();
            if let Some(path) = &a.ca_out {
                std::fs::write(path, &p.ca_pem)?;
                eprintln!("wrote CA certificate to {path}");
            }
            (vec![p.leaf_der.clone()], p.key())
        }
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?,
    ))
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if e != "help" {
                eprintln!("pop3_server: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let tls = match tls_config(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pop3_server: {e}");
            std::process::exit(2);
        }
    };
    let mut config = ServerConfig::new(ServerTls::Rustls(tls));
    config.implicit_tls = args.implicit;
    config.require_tls = args.require_tls;
    // Only what this application implements (no TOP, no SASL).
    config.capabilities = vec![
        Capability::Uidl,
        Capability::RespCodes,
        Capability::AuthRespCode,
        Capability::Pipelining,
        Capability::Implementation(Bytes::from_static(b"starttls-pop3-example")),
    ];
    let config = Arc::new(config);
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pop3_server: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "listening on {} ({})",
        args.listen,
        if args.implicit {
            "implicit TLS"
        } else {
            "STLS"
        }
    );
    let mut served = 0usize;
    loop {
        let Ok((sock, peer)) = listener.accept().await else {
            continue;
        };
        let config = Arc::clone(&config);
        let task = tokio::spawn(async move {
            if let Err(e) = serve(sock, peer, config).await {
                println!("[{peer}] i/o error: {e}");
            }
        });
        served += 1;
        if args.max_connections.is_some_and(|m| served >= m) {
            let _ = task.await;
            return;
        }
    }
}

/// What the application knows about one connection.
struct Maildrop {
    peer: SocketAddr,
    /// The name from the last `USER`.
    user: Option<Bytes>,
    deleted: bool,
}

async fn serve(
    sock: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
) -> Result<(), starttls_io::Error> {
    // RFC 1939 §7: a timestamp unique to this greeting, `<pid.clock@host>`;
    // a counter stands in for the clock.
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    let greeting = format!(
        "POP3 example server ready <{}.{n}@localhost>",
        std::process::id()
    );
    let session = match ServerSession::with_greeting(config, &greeting) {
        Ok(s) => s,
        Err(e) => {
            println!("[{peer}] configuration error: {e}");
            return Ok(());
        }
    };
    println!("[{peer}] connected");
    let mut maildrop = Maildrop {
        peer,
        user: None,
        deleted: false,
    };
    // The tokio driver (starttls-io) writes what the session queues, reads,
    // feeds, and times out a silent client; we answer events.
    let mut driver = Driver::new(session, sock);
    loop {
        let event = match driver.next_event().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(starttls_io::Error::Session(e)) => {
                // Its `-ERR` or alert has been written.
                println!(
                    "[{peer}] ({}) session failed: {e}",
                    driver.session().trust()
                );
                break;
            }
            Err(e) => return Err(e),
        };
        log(peer, driver.session(), &event);
        if let ServerEvent::Command(cmd) = event {
            if let Err(e) = maildrop.command(driver.session_mut(), cmd) {
                // A bug in this application, never the peer's doing.
                println!("[{peer}] usage error: {e}");
            }
        }
    }
    let _ = driver.close().await;
    println!("[{peer}] closed");
    Ok(())
}

fn ok(s: &mut ServerSession, text: String) -> Result<(), UsageError> {
    s.reply(StatusLine::new(Status::Ok, Bytes::from(text)))
}

impl Maildrop {
    /// `(messages, octets)` not marked deleted.
    fn stat(&self) -> (u32, usize) {
        if self.deleted {
            (0, 0)
        } else {
            (1, MESSAGE.len())
        }
    }

    fn exists(&self, msg: u32) -> bool {
        msg == 1 && !self.deleted
    }

    fn command(&mut self, s: &mut ServerSession, cmd: Command) -> Result<(), UsageError> {
        const NO_SUCH: &str = "no such message";
        match cmd {
            Command::User { name } => {
                // Whether the name exists is only told after PASS.
                self.user = Some(name);
                ok(s, "send PASS".into())
            }
            Command::Pass { password } => {
                let good = self.user.take().is_some_and(|u| u.as_ref() == USER)
                    && password.expose().as_ref() == PASSWORD;
                if good {
                    println!("[{}] PASS: alice authenticated", self.peer);
                    let (n, size) = self.stat();
                    ok(
                        s,
                        format!("maildrop locked and ready, {n} message ({size} octets)"),
                    )
                } else {
                    println!("[{}] PASS: authentication failed", self.peer);
                    s.reject(Some(Code::Auth), "invalid user name or password")
                }
            }
            Command::Apop { .. } => s.reject(None, "APOP is not supported by this example"),
            Command::Stat => {
                let (n, size) = self.stat();
                ok(s, format!("{n} {size}"))
            }
            Command::List { msg: None } => {
                let (n, size) = self.stat();
                let mut listing = Vec::new();
                if n == 1 {
                    write_scan_listing(1, size as u64, &mut listing);
                }
                s.reply_multiline(&format!("{n} message(s) ({size} octets)"), &listing)
            }
            Command::List { msg: Some(m) } if self.exists(m) => {
                ok(s, format!("{m} {}", MESSAGE.len()))
            }
            Command::Retr { msg } if self.exists(msg) => {
                s.reply_multiline(&format!("{} octets", MESSAGE.len()), MESSAGE)
            }
            Command::Uidl { msg: None } => {
                let mut listing = Vec::new();
                if !self.deleted {
                    write_uidl_listing(1, UID, &mut listing);
                }
                s.reply_multiline("unique-id listing follows", &listing)
            }
            Command::Uidl { msg: Some(m) } if self.exists(m) => {
                ok(s, format!("{m} {}", String::from_utf8_lossy(UID)))
            }
            Command::Dele { msg } if self.exists(msg) => {
                self.deleted = true;
                ok(s, format!("message {msg} deleted"))
            }
            Command::List { .. } | Command::Retr { .. } | Command::Uidl { .. } => {
                s.reject(None, NO_SUCH)
            }
            Command::Dele { msg: 1 } => s.reject(None, "message 1 already deleted"),
            Command::Dele { .. } => s.reject(None, NO_SUCH),
            Command::Noop => s.accept(),
            Command::Rset => {
                self.deleted = false;
                ok(
                    s,
                    format!("maildrop has 1 message ({} octets)", MESSAGE.len()),
                )
            }
            Command::Quit => {
                // The UPDATE state (RFC 1939 §6); this in-memory maildrop is
                // per connection, so nothing outlives it.
                let removed = u32::from(self.deleted);
                println!("[{}] QUIT: {removed} message(s) removed", self.peer);
                ok(s, format!("bye ({removed} message(s) removed)"))
            }
            _ => s.reject(None, "command not supported by this example server"),
        }
    }
}

fn log(peer: SocketAddr, session: &ServerSession, event: &ServerEvent) {
    let trust = session.trust();
    match event {
        ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => println!(
            "[{peer}] ({trust}) TLS established: {} {}",
            info.version.map(|v| v.to_string()).unwrap_or_default(),
            info.cipher_suite.clone().unwrap_or_default()
        ),
        ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes }) => {
            println!("[{peer}] ({trust}) DISCARDED {bytes} bytes injected after STLS")
        }
        // Debug of commands and SASL responses hides credentials.
        other => println!("[{peer}] ({trust}) {other:?}"),
    }
}
