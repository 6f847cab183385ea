//! A blocking IMAP client over `std::net`, on the blocking driver of
//! `starttls-io`, that negotiates TLS with the sans-IO `starttls` session: greeting, capabilities, STARTTLS, handshake,
//! capabilities again (all done by the session), then `LOGIN`, `SELECT INBOX`
//! and `LOGOUT` with `--user`/`--password`, or just `LOGOUT` without. Prints
//! the transcript with each text's trust level; exits non-zero with the typed
//! error when the policy cannot be met.
//!
//! ```text
//! cargo run --example imap_client -- 127.0.0.1:1143 --ca /tmp/ca.pem
//! cargo run --example imap_client -- 127.0.0.1:1143 --ca /tmp/ca.pem --user alice --password secret
//! cargo run --example imap_client -- 127.0.0.1:9930 --ca /tmp/ca.pem --implicit
//! cargo run --example imap_client -- 127.0.0.1:1143 --ca /tmp/ca.pem --opportunistic
//! ```

use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::Arc;

use bytes::Bytes;
use starttls::imap::{
    AString, Arg, Args, ClientConfig, ClientEvent, ClientSession, CommandBody, Response, Status,
};
use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::{ClientTls, Escaped, Secret, TlsPolicy, Trust, UpgradeEvent};
use starttls_io::blocking::Driver;

#[path = "common/transcript.rs"]
mod transcript;
use transcript::Transcript;

const USAGE: &str = "usage: imap_client ADDR --ca FILE [--server-name NAME] \
[--implicit|--opportunistic] [--user NAME --password PASSWORD]";

struct Opts {
    addr: String,
    ca: String,
    server_name: String,
    policy: TlsPolicy,
    login: Option<(String, String)>,
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
        (Some(u), Some(p)) => Some((u, p)),
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
                eprintln!("imap_client: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    match run(opts) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("imap_client: {e}");
            std::process::exit(1);
        }
    }
}

/// One command of the script, and how to show it once it is encrypted.
struct Step {
    body: CommandBody,
    shown: String,
}

fn step(body: CommandBody, shown: &str) -> Step {
    Step {
        body,
        shown: shown.to_string(),
    }
}

fn logout() -> Step {
    step(CommandBody::Logout, "LOGOUT")
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
    let mut script: VecDeque<Step> = VecDeque::new();
    // The tag and name of the command in flight.
    let mut in_flight: Option<(Bytes, &'static str)> = None;
    // Set when the script could not be carried out; reported at the end.
    let mut failure: Option<String> = None;
    // A session error comes after what it still queued (a LOGOUT) was written.
    while let Some(event) = driver.next_event()? {
        let mut next = false;
        match event {
            ClientEvent::Greeting(r) => {
                print_response(&Response::Status(r.message), r.trust, "greeting")
            }
            ClientEvent::Capabilities(c) => {
                println!("   capabilities [{}]: {}", c.trust, c.escaped())
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
            ClientEvent::Ready {
                trust,
                authenticated,
            } => {
                println!("   ready [{trust}] authenticated: {authenticated}");
                if let Some((user, password)) = &opts.login {
                    let login = CommandBody::Login {
                        username: AString::from_value(user.as_bytes()),
                        password: Secret::new(AString::from_value(password.as_bytes())),
                    };
                    script.push_back(step(login, &format!("LOGIN {user} ****")));
                    let select = CommandBody::Other {
                        name: Bytes::from_static(b"SELECT"),
                        args: Args::from_args(&[Arg::Atom(Bytes::from_static(b"INBOX"))]),
                    };
                    script.push_back(step(select, "SELECT INBOX"));
                }
                script.push_back(logout());
                next = true;
            }
            ClientEvent::Untagged(r) => print_response(&r.message, r.trust, "untagged"),
            ClientEvent::Tagged { tag, status } => {
                let trust = status.trust;
                let ok = status.status == Status::Ok;
                let resp = Response::Tagged {
                    tag: tag.clone(),
                    status: status.message,
                };
                let what = match &in_flight {
                    Some((t, what)) if *t == tag => *what,
                    _ => "reply",
                };
                print_response(&resp, trust, what);
                if in_flight.as_ref().is_some_and(|(t, _)| *t == tag) {
                    in_flight = None;
                    if !ok && what != "LOGOUT" && failure.is_none() {
                        failure = Some(format!("{what} failed: {}", line_of(&resp)));
                        script.clear();
                        script.push_back(logout());
                    }
                    next = true;
                }
            }
            ClientEvent::Continuation(c) => println!(
                "S: [{}] + {}   (continuation, not expected: ignored)",
                c.trust,
                c.escaped()
            ),
            _ => {}
        }
        if next && in_flight.is_none() {
            if let Some(s) = script.pop_front() {
                let name = command_name(&s.body);
                match driver.session_mut().send(s.body) {
                    Ok(tag) => {
                        if driver.session().trust() == Trust::Tls {
                            println!("C: {} {}", String::from_utf8_lossy(&tag), s.shown);
                        }
                        in_flight = Some((tag, name));
                    }
                    // E.g. credentials refused in cleartext under
                    // --opportunistic: say LOGOUT and fail.
                    Err(e) => {
                        failure.get_or_insert_with(|| format!("{name} not sent: {e}"));
                        if name != "LOGOUT" {
                            let tag = driver.session_mut().send(CommandBody::Logout)?;
                            if driver.session().trust() == Trust::Tls {
                                println!("C: {} LOGOUT", String::from_utf8_lossy(&tag));
                            }
                            in_flight = Some((tag, "LOGOUT"));
                        }
                        script.clear();
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

fn command_name(body: &CommandBody) -> &'static str {
    match body {
        CommandBody::Login { .. } => "LOGIN",
        CommandBody::Logout => "LOGOUT",
        CommandBody::Other { .. } => "SELECT",
        _ => "command",
    }
}

/// The response as one line of text (literals inline), escaped: peer text
/// never reaches the terminal raw.
fn line_of(resp: &Response) -> String {
    let wire = resp.to_bytes();
    Escaped::new(wire.trim_ascii_end()).to_string()
}

fn print_response(resp: &Response, trust: Trust, what: &str) {
    let wire = resp.to_bytes();
    let escaped = Escaped::new(&wire);
    let mut lines = escaped.lines();
    if let Some(first) = lines.next() {
        println!("S: [{trust}] {first}   ({what})");
    }
    for line in lines {
        println!("S: [{trust}] {line}");
    }
}
