//! A blocking POP3 client over `std::net`, on the blocking driver of
//! `starttls-io`, that negotiates TLS with the sans-IO `starttls` session:
//! greeting, `CAPA`, `STLS`, handshake, `CAPA` again (all done by the session), then `USER`, `PASS`, `STAT`, `RETR 1`
//! and `QUIT` with `--user`/`--password`, or just `QUIT` without. Prints the
//! transcript with each text's trust level; exits non-zero with the typed
//! error when the policy cannot be met.
//!
//! ```text
//! cargo run --example pop3_client -- 127.0.0.1:1110 --ca /tmp/ca.pem
//! cargo run --example pop3_client -- 127.0.0.1:1110 --ca /tmp/ca.pem --user alice --password secret
//! cargo run --example pop3_client -- 127.0.0.1:9950 --ca /tmp/ca.pem --implicit
//! cargo run --example pop3_client -- 127.0.0.1:1110 --ca /tmp/ca.pem --opportunistic
//! ```

use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::Arc;

use bytes::Bytes;
use starttls::pop3::{ClientConfig, ClientEvent, ClientSession, Command, StatusLine};
use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::{ClientTls, Escaped, TlsPolicy, Trust, UpgradeEvent};
use starttls_io::blocking::Driver;

#[path = "common/transcript.rs"]
mod transcript;
use transcript::Transcript;

const USAGE: &str = "usage: pop3_client ADDR --ca FILE [--server-name NAME] \
[--implicit|--opportunistic] [--user NAME --password PASSWORD]";

struct Opts {
    addr: String,
    ca: String,
    server_name: String,
    policy: TlsPolicy,
    /// `USER` and `PASS`, checked against the POP3 grammar (no CR, LF, ...).
    login: Option<(Command, Command)>,
}

/// Parses `line` as a command of the expected keyword, so that what the user
/// typed cannot smuggle a second command.
fn checked(line: String, keyword: &str) -> Result<Command, String> {
    match Command::parse(&Bytes::from(line)) {
        Ok(c) if c.keyword() == keyword => Ok(c),
        _ => Err(format!("invalid value for {keyword}")),
    }
}

fn parse_args() -> Result<Opts, String> {
    let mut addr = None;
    let mut ca = None;
    let mut server_name = "localhost".to_string();
    let mut policy = TlsPolicy::StartTlsRequired;
    let mut user = None;
    let mut password = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--ca" => ca = Some(val()?),
            "--server-name" => server_name = val()?,
            "--implicit" => policy = TlsPolicy::Implicit,
            "--opportunistic" => policy = TlsPolicy::Opportunistic,
            "--user" => user = Some(val()?),
            "--password" => password = Some(val()?),
            "-h" | "--help" => return Err("help".into()),
            a if addr.is_none() && !a.starts_with("--") => addr = Some(a.to_string()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let login = match (user, password) {
        (Some(u), Some(p)) => Some((
            checked(format!("USER {u}"), "USER")?,
            checked(format!("PASS {p}"), "PASS")?,
        )),
        (None, None) => None,
        _ => return Err("--user and --password go together".into()),
    };
    Ok(Opts {
        addr: addr.ok_or("missing ADDR")?,
        ca: ca.ok_or("missing --ca FILE")?,
        server_name,
        policy,
        login,
    })
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if e != "help" {
                eprintln!("pop3_client: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    match run(opts) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("pop3_client: {e}");
            std::process::exit(1);
        }
    }
}

/// How a command is shown once it is encrypted (never the password).
fn shown(cmd: &Command) -> String {
    match cmd {
        Command::Pass { .. } => "PASS ****".into(),
        other => {
            let wire = other.to_bytes();
            String::from_utf8_lossy(&wire).trim_end().to_string()
        }
    }
}

fn run(opts: Opts) -> Result<(), Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&opts.ca)? {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = ClientConfig::new(
        opts.policy,
        ClientTls::Rustls {
            config: Arc::new(tls),
            server_name: ServerName::try_from(opts.server_name)?,
        },
    );
    let session = ClientSession::new(Arc::new(config))?;
    let sock = TcpStream::connect(&opts.addr)?;
    println!("connected to {}", opts.addr);
    // The blocking driver (starttls-io) writes what the session queues,
    // reads, feeds, and times out a silent server; we answer events.
    let sock = Transcript::new(sock, opts.policy == TlsPolicy::Implicit);
    let mut driver = Driver::new(session, sock);
    // What is left to send once the session is ready, one command at a time.
    let mut script: VecDeque<Command> = VecDeque::new();
    // The body of a multi-line answer, and the trust of its status line.
    let mut body: Vec<u8> = Vec::new();
    let mut body_trust = Trust::Cleartext;
    // Set when the script could not be carried out; reported at the end.
    let mut failure: Option<String> = None;
    let mut quit_sent = false;
    // A session error comes after what it still queued (a QUIT) was written.
    while let Some(event) = driver.next_event()? {
        let mut next = false;
        match event {
            ClientEvent::Greeting(r) => {
                print_status(&r.message, r.trust, "greeting");
                if let Some(ts) = r.message.apop_timestamp() {
                    println!("   APOP timestamp: {}", Escaped::new(&ts));
                }
            }
            ClientEvent::Capabilities(c) => {
                let caps: Vec<String> = c
                    .iter()
                    .map(|c| Escaped::new(c.to_bytes().trim_ascii_end()).to_string())
                    .collect();
                println!("   capabilities [{}]: {}", c.trust, caps.join(", "));
            }
            ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted) => {
                driver.get_ref().tls_on_wire();
                println!("   upgrade started: TLS handshake");
            }
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => println!(
                "   TLS established: {} {}",
                info.version.map(|v| v.to_string()).unwrap_or_default(),
                info.cipher_suite.unwrap_or_default()
            ),
            ClientEvent::Upgrade(u) => println!("   {u:?}"),
            ClientEvent::Ready { trust } => {
                println!("   ready [{trust}]");
                if let Some((user, pass)) = opts.login.clone() {
                    script.extend([user, pass, Command::Stat, Command::Retr { msg: 1 }]);
                }
                script.push_back(Command::Quit);
                next = true;
            }
            ClientEvent::Reply {
                to,
                status,
                multiline,
            } => {
                print_status(&status.message, status.trust, to);
                if !status.is_ok() && to != "QUIT" && failure.is_none() {
                    failure = Some(format!("{to} failed: {}", status.message));
                    script.clear();
                    script.push_back(Command::Quit);
                }
                if multiline {
                    body.clear();
                    body_trust = status.trust;
                } else {
                    next = true;
                }
            }
            ClientEvent::Body(piece) => body.extend_from_slice(&piece),
            ClientEvent::BodyEnd => {
                for line in Escaped::new(&body).lines() {
                    println!("S: [{body_trust}] | {line}");
                }
                println!("   (end of body: {} octets, unstuffed)", body.len());
                next = true;
            }
            ClientEvent::Continuation(c) => println!(
                "S: [{}] + {}   (continuation, not expected: ignored)",
                c.trust,
                c.escaped()
            ),
            _ => {}
        }
        if next {
            if let Some(cmd) = script.pop_front() {
                let keyword = cmd.keyword();
                let text = shown(&cmd);
                match driver.session_mut().send(cmd) {
                    Ok(()) => {
                        quit_sent |= keyword == "QUIT";
                        if driver.session().trust() == Trust::Tls {
                            println!("C: {text}");
                        }
                    }
                    // E.g. credentials refused in cleartext under
                    // --opportunistic: say QUIT and fail.
                    Err(e) => {
                        failure.get_or_insert_with(|| format!("{keyword} not sent: {e}"));
                        script.clear();
                        if !quit_sent {
                            driver.session_mut().send(Command::Quit)?;
                            quit_sent = true;
                            if driver.session().trust() == Trust::Tls {
                                println!("C: QUIT");
                            }
                        }
                    }
                }
            }
        }
    }
    driver.close()?;
    println!("closed");
    match failure {
        None => Ok(()),
        Some(f) => Err(f.into()),
    }
}

/// `StatusLine`'s `Display` escapes the peer's text.
fn print_status(status: &StatusLine, trust: Trust, what: &str) {
    println!("S: [{trust}] {status}   ({what})");
}
