//! A small IMAP server on tokio, with STARTTLS (or implicit TLS) driven by the
//! sans-IO `starttls` session. It serves one in-memory test account (user
//! `alice`, password `secret`, one message in INBOX) and prints what happens,
//! including discarded injection attempts.
//!
//! ```text
//! cargo run --example imap_server -- --listen 127.0.0.1:1143 --ca-out /tmp/ca.pem
//! cargo run --example imap_server -- --listen 127.0.0.1:1143 --cert cert.pem --key key.pem
//! cargo run --example imap_server -- --listen 127.0.0.1:9930 --implicit --ca-out /tmp/ca.pem
//! ```
//!
//! Without `--cert`/`--key` it makes a throwaway CA and a certificate for
//! `localhost`, 127.0.0.1 and ::1 (rcgen), and writes the CA to `--ca-out`.
//! Listens on loopback addresses only.
//!
//! The session answers `CAPABILITY`, `STARTTLS`, `LOGOUT` and the TLS policy
//! itself; this application answers `LOGIN`, `AUTHENTICATE PLAIN`, `ID`,
//! `SELECT`/`EXAMINE INBOX`, `FETCH 1 (BODY[])`, `NOOP` and `IDLE`, and
//! refuses everything else.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use starttls::imap::{
    Arg, Args, Code, Command, CommandBody, LiteralMode, Response, ServerConfig, ServerEvent,
    ServerSession, Status,
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
/// The one message in INBOX.
const MESSAGE: &[u8] = b"From: Bob <bob@example.org>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: Hello from the IMAP example\r\n\
\r\n\
Hi Alice,\r\n\
this message came to you over IMAP.\r\n\
A2 STARTTLS\r\n\
(the line above is message data in a literal, never a command)\r\n";

const USAGE: &str = "usage: imap_server [--listen ADDR] [--cert FILE --key FILE] [--ca-out FILE] \
[--implicit] [--require-tls] [--max-connections N]";

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
        listen: SocketAddr::from(([127, 0, 0, 1], 1143)),
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
                eprintln!("imap_server: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let tls = match tls_config(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("imap_server: {e}");
            std::process::exit(2);
        }
    };
    let mut config = ServerConfig::new(ServerTls::Rustls(tls));
    config.greeting = "IMAP example server ready (test account alice/secret)".into();
    config.implicit_tls = args.implicit;
    config.require_tls = args.require_tls;
    config.auth_mechanisms = vec!["PLAIN".into()];
    // Only what this application implements.
    config.capabilities = vec!["IDLE".into(), "ID".into(), "SASL-IR".into()];
    let config = Arc::new(config);
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("imap_server: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "listening on {} ({})",
        args.listen,
        if args.implicit {
            "implicit TLS"
        } else {
            "STARTTLS"
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
struct Mailbox {
    peer: SocketAddr,
    /// `Some(read_only)` once INBOX is selected.
    selected: Option<bool>,
}

async fn serve(
    sock: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
) -> Result<(), starttls_io::Error> {
    let session = match ServerSession::new(config) {
        Ok(s) => s,
        Err(e) => {
            println!("[{peer}] configuration error: {e}");
            return Ok(());
        }
    };
    println!("[{peer}] connected");
    let mut mailbox = Mailbox {
        peer,
        selected: None,
    };
    // The tokio driver (starttls-io) writes what the session queues, reads,
    // feeds, and times out a silent client; we answer events.
    let mut driver = Driver::new(session, sock);
    loop {
        let event = match driver.next_event().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(starttls_io::Error::Session(e)) => {
                // Its `* BYE` or alert has been written.
                println!(
                    "[{peer}] ({}) session failed: {e}",
                    driver.session().trust()
                );
                break;
            }
            Err(e) => return Err(e),
        };
        log(peer, driver.session(), &event);
        let session = driver.session_mut();
        let r = match event {
            ServerEvent::Command(cmd) => mailbox.command(session, cmd),
            ServerEvent::AuthResponse(r) => mailbox.check_plain(session, r.expose()),
            ServerEvent::IdleDone => session.complete(Status::Ok, None, "IDLE terminated"),
            _ => Ok(()),
        };
        if let Err(e) = r {
            // A bug in this application, never the peer's doing.
            println!("[{peer}] usage error: {e}");
        }
    }
    let _ = driver.close().await;
    println!("[{peer}] closed");
    Ok(())
}

fn untagged(session: &mut ServerSession, number: Option<u32>, name: &'static str, args: &[Arg]) {
    let r = Response::Data {
        number,
        name: Bytes::from_static(name.as_bytes()),
        args: Args::from_args(args),
    };
    // Only fails for tagged or continuation responses, which this is not.
    let _ = session.send_untagged(&r);
}

fn atom(s: &'static str) -> Arg {
    Arg::Atom(Bytes::from_static(s.as_bytes()))
}

fn no_code(name: &'static str) -> Option<Code> {
    Some(Code::Other {
        name: Bytes::from_static(name.as_bytes()),
        args: None,
    })
}

impl Mailbox {
    fn command(&mut self, s: &mut ServerSession, cmd: Command) -> Result<(), UsageError> {
        match cmd.body {
            CommandBody::Login { username, password } => {
                let ok = username.value().as_ref() == USER
                    && password.expose().value().as_ref() == PASSWORD;
                self.login_result(s, ok, "LOGIN")
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                // The session only passes on advertised mechanisms (PLAIN).
                if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    return s.complete(Status::No, None, "Unsupported mechanism");
                }
                match initial_response {
                    // SASL-IR (RFC 4959): the response came with the command.
                    Some(ir) => self.check_plain(s, ir.expose()),
                    None => s.continue_request(b""),
                }
            }
            CommandBody::Id { .. } => {
                untagged(
                    s,
                    None,
                    "ID",
                    &[Arg::List(Args::from_args(&[
                        Arg::Quoted(Bytes::from_static(b"name")),
                        Arg::Quoted(Bytes::from_static(b"starttls imap_server example")),
                    ]))],
                );
                s.accept()
            }
            CommandBody::Noop => s.accept(),
            CommandBody::Idle => s.continue_request(b"idling"),
            CommandBody::Other { name, args } => {
                let upper = name.to_ascii_uppercase();
                match &upper[..] {
                    b"SELECT" | b"EXAMINE" => self.select(s, &args, upper == b"EXAMINE"),
                    b"FETCH" => self.fetch(s, &args),
                    _ => s.complete(
                        Status::Bad,
                        None,
                        "Command not supported by this example server",
                    ),
                }
            }
            _ => s.complete(
                Status::Bad,
                None,
                "Command not supported by this example server",
            ),
        }
    }

    fn login_result(
        &mut self,
        s: &mut ServerSession,
        ok: bool,
        what: &str,
    ) -> Result<(), UsageError> {
        if ok {
            println!("[{}] {what}: alice authenticated", self.peer);
            s.complete(Status::Ok, None, &format!("{what} completed"))
        } else {
            println!("[{}] {what}: authentication failed", self.peer);
            s.complete(
                Status::No,
                no_code("AUTHENTICATIONFAILED"),
                "Invalid credentials",
            )
        }
    }

    /// RFC 4616 PLAIN: `[authzid] NUL authcid NUL passwd`, base64.
    fn check_plain(&mut self, s: &mut ServerSession, b64: &[u8]) -> Result<(), UsageError> {
        let ok = match base64_decode(b64) {
            Some(raw) => {
                let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
                matches!(
                    &parts[..],
                    [authz, user, pass]
                        if (authz.is_empty() || *authz == USER) && *user == USER && *pass == PASSWORD
                )
            }
            None => {
                return s.complete(Status::Bad, None, "Invalid base64 in SASL response");
            }
        };
        self.login_result(s, ok, "AUTHENTICATE")
    }

    fn select(
        &mut self,
        s: &mut ServerSession,
        args: &Args,
        read_only: bool,
    ) -> Result<(), UsageError> {
        let mut it = args.iter();
        let mailbox = it
            .next()
            .and_then(|a| a.string_value().map(|v| v.into_owned()));
        self.selected = None;
        match mailbox {
            Some(m) if it.next().is_none() && m.eq_ignore_ascii_case(b"INBOX") => {
                untagged(s, Some(1), "EXISTS", &[]);
                untagged(
                    s,
                    None,
                    "FLAGS",
                    &[Arg::List(Args::from_args(&[atom("\\Seen")]))],
                );
                self.selected = Some(read_only);
                let (code, text) = if read_only {
                    (Code::ReadOnly, "EXAMINE completed")
                } else {
                    (Code::ReadWrite, "SELECT completed")
                };
                s.complete(Status::Ok, Some(code), text)
            }
            Some(_) if it.next().is_none() => s.complete(
                Status::No,
                no_code("NONEXISTENT"),
                "This example has only INBOX",
            ),
            _ => s.complete(Status::Bad, None, "Expected one mailbox name"),
        }
    }

    /// `FETCH 1 (BODY[])`, `FETCH 1 BODY[]` or the `BODY.PEEK[]` forms.
    fn fetch(&mut self, s: &mut ServerSession, args: &Args) -> Result<(), UsageError> {
        if self.selected.is_none() {
            return s.complete(Status::Bad, None, "No mailbox selected");
        }
        let is_body = |a: &Arg| {
            a.string_value().is_some_and(|v| {
                v.eq_ignore_ascii_case(b"BODY[]") || v.eq_ignore_ascii_case(b"BODY.PEEK[]")
            })
        };
        let is_one = |a: &Arg| a.string_value().is_some_and(|v| v.as_ref() == b"1");
        let items: Vec<Arg> = args.iter().collect();
        let wanted = match &items[..] {
            [set, Arg::List(list)] if is_one(set) => {
                let l: Vec<Arg> = list.iter().collect();
                matches!(&l[..], [one] if is_body(one))
            }
            [set, item] if is_one(set) => is_body(item),
            [Arg::Atom(_), _] => {
                return s.complete(Status::No, None, "No such message (INBOX holds message 1)");
            }
            _ => false,
        };
        if !wanted {
            return s.complete(
                Status::Bad,
                None,
                "This example supports only FETCH 1 (BODY[])",
            );
        }
        let literal = Arg::Literal {
            data: Bytes::from_static(MESSAGE),
            mode: LiteralMode::Sync,
            binary: false,
        };
        untagged(
            s,
            Some(1),
            "FETCH",
            &[Arg::List(Args::from_args(&[atom("BODY[]"), literal]))],
        );
        s.complete(Status::Ok, None, "FETCH completed")
    }
}

/// Standard base64 (RFC 4648 §4) with padding; `=` alone is the empty
/// SASL response. `None` for anything else.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    if input == b"=" {
        return Some(Vec::new());
    }
    if input.len() % 4 != 0 {
        return None;
    }
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let chunks = input.len() / 4;
    for (i, chunk) in input.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
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
            println!("[{peer}] ({trust}) DISCARDED {bytes} bytes injected after STARTTLS")
        }
        // Debug of commands and SASL responses hides credentials.
        other => println!("[{peer}] ({trust}) {other:?}"),
    }
}
