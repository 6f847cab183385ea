//! Live loopback checks: the reference server and client sessions over real
//! TCP and real TLS, and attack probes written on raw sockets.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use starttls::rustls::pki_types::ServerName;
use starttls::smtp::{
    ClientConfig, ClientEvent, ClientSession, Command, ServerConfig, ServerEvent, ServerSession,
};
use starttls::{
    ClientTls, Error, ServerTls, Timeouts, TlsErrorKind, TlsPolicy, TlsRefusal, Trust, UpgradeEvent,
};

use crate::net::{connect, fake_server, listen, read_for, read_until, run, TIMEOUT};
use crate::pki::Pki;
use starttls_io::blocking::{Driver, Socket};

/// One live check.
pub struct Check {
    /// What it shows.
    pub name: &'static str,
    /// Protocol and flavour.
    pub protocol: &'static str,
    /// The role(s) of this library under test.
    pub role: &'static str,
    /// Runs it; `Ok` carries a short detail for the table.
    pub run: fn(&Pki) -> Result<String, String>,
}

/// Every live check, in the order they run.
pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "STARTTLS session, message delivered",
            protocol: "smtp",
            role: "client+server",
            run: smtp_starttls,
        },
        Check {
            name: "implicit TLS session (port 465 style)",
            protocol: "smtps",
            role: "client+server",
            run: smtp_implicit,
        },
        Check {
            name: "AUTH offered and accepted only over TLS",
            protocol: "submission",
            role: "client+server",
            run: submission_auth,
        },
        Check {
            name: "one reply per recipient after DATA",
            protocol: "lmtp",
            role: "client+server",
            run: lmtp_session,
        },
        Check {
            name: "command injected after STARTTLS is discarded",
            protocol: "smtp",
            role: "server",
            run: injection_probe,
        },
        Check {
            name: "response injected after 220 fails the client",
            protocol: "smtp",
            role: "client",
            run: response_injection,
        },
        Check {
            name: "stripped STARTTLS fails closed",
            protocol: "smtp",
            role: "client",
            run: stripped,
        },
        Check {
            name: "STARTTLS refused with 454 fails closed",
            protocol: "smtp",
            role: "client",
            run: refused,
        },
        Check {
            name: "certificate for another name is refused",
            protocol: "smtp",
            role: "client",
            run: wrong_name,
        },
    ]
}

// ----------------------------------------------------------------- drivers

/// What a server session did on one connection.
#[derive(Default)]
struct ServerLog {
    events: Vec<String>,
    message: Vec<u8>,
    error: Option<Error>,
    cleartext_commands: usize,
}

/// Serves one connection; the application accepts everything.
fn serve(listener: TcpListener, config: Arc<ServerConfig>) -> thread::JoinHandle<ServerLog> {
    thread::spawn(move || {
        let mut log = ServerLog::default();
        let Ok((sock, _)) = listener.accept() else {
            return log;
        };
        let s = match ServerSession::new(config) {
            Ok(s) => s,
            Err(e) => {
                log.events.push(format!("config error: {e}"));
                return log;
            }
        };
        let failed = run(sock, s, |s, ev| {
            log.events.push(format!("{ev:?}"));
            match ev {
                ServerEvent::Command(Command::Bdat { .. }) => {}
                ServerEvent::Command(_) | ServerEvent::AuthResponse(_) => {
                    if s.trust() == Trust::Cleartext {
                        log.cleartext_commands += 1;
                    }
                    let _ = s.accept();
                }
                ServerEvent::MessageData(p) => log.message.extend_from_slice(&p),
                ServerEvent::MessageEnd | ServerEvent::ChunkEnd => {
                    while s.is_waiting_for_reply() {
                        let _ = s.accept();
                    }
                }
                _ => {}
            }
        });
        // A broken connection just ends the log, as a peer's EOF would.
        log.error = failed.ok().flatten();
        log
    })
}

/// What the client application does once the session is ready.
#[derive(Clone, Copy)]
enum Script {
    Message { recipients: usize },
    AuthPlain,
}

#[derive(Default)]
struct ClientLog {
    events: Vec<ClientEvent>,
    error: Option<Error>,
    /// Everything written before TLS began.
    cleartext_sent: Vec<u8>,
}

fn client_config(
    pki: &Pki,
    policy: TlsPolicy,
    name: &str,
    lmtp: bool,
) -> Result<Arc<ClientConfig>, String> {
    let mut c = ClientConfig::new(
        "client.localhost",
        policy,
        ClientTls::Rustls {
            config: pki.client_config(),
            server_name: ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?,
        },
    );
    c.lmtp = lmtp;
    Ok(Arc::new(c))
}

/// The client's socket: what is written before TLS is kept.
struct Capture {
    sock: TcpStream,
    tls: Cell<bool>,
    cleartext: Vec<u8>,
}

impl Read for Capture {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.sock.write(buf)?;
        if !self.tls.get() {
            self.cleartext
                .extend_from_slice(buf.get(..n).unwrap_or(buf));
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

impl Socket for Capture {
    fn set_read_timeout(&mut self, t: Option<Duration>) -> std::io::Result<()> {
        self.sock.set_read_timeout(t)
    }
    fn set_write_timeout(&mut self, t: Option<Duration>) -> std::io::Result<()> {
        self.sock.set_write_timeout(t)
    }
    fn shutdown_write(&mut self) -> std::io::Result<()> {
        Socket::shutdown_write(&mut self.sock)
    }
}

/// The client application: the script's next command for each event.
fn act(
    c: &mut ClientSession,
    ev: &ClientEvent,
    script: Script,
    pending_rcpts: &mut usize,
) -> Result<(), String> {
    let command =
        |line: &'static [u8]| Command::parse(&Bytes::from_static(line)).map_err(|e| e.to_string());
    match ev {
        ClientEvent::Ready { .. } => match script {
            Script::Message { recipients } => {
                *pending_rcpts = recipients;
                c.send(command(b"MAIL FROM:<a@client.localhost>")?)
                    .map_err(|e| e.to_string())?;
            }
            Script::AuthPlain => {
                // "\0user\0pass" in base64.
                c.send(command(b"AUTH PLAIN AHVzZXIAcGFzcw==")?)
                    .map_err(|e| e.to_string())?;
            }
        },
        ClientEvent::Reply { to, reply } => {
            let code = reply.code().get();
            match *to {
                "MAIL" | "RCPT" if *pending_rcpts > 0 => {
                    let line = format!("RCPT TO:<r{pending_rcpts}@localhost>");
                    *pending_rcpts -= 1;
                    c.send(Command::parse(&Bytes::from(line)).map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                }
                "RCPT" => c.send(Command::Data).map_err(|e| e.to_string())?,
                "DATA" if code == 354 => {
                    c.send_data(b"Subject: conformance\r\n\r\n.leading dot\r\n")
                        .map_err(|e| e.to_string())?;
                    c.finish_data().map_err(|e| e.to_string())?;
                }
                "end of data" | "AUTH" if c.send(Command::Quit).is_err() => {}
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs the client on the blocking driver.
fn run_client(port: u16, config: Arc<ClientConfig>, script: Script) -> Result<ClientLog, String> {
    let implicit = config.policy == TlsPolicy::Implicit;
    let c = ClientSession::new(config).map_err(|e| e.to_string())?;
    let sock = Capture {
        sock: connect(port)?,
        tls: Cell::new(implicit),
        cleartext: Vec::new(),
    };
    let mut driver = Driver::new(c, sock).with_timeouts(Timeouts::all(TIMEOUT));
    let mut log = ClientLog::default();
    let mut pending_rcpts = 0usize;
    loop {
        match driver.next_event() {
            Ok(Some(ev)) => {
                if let ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted) = ev {
                    driver.get_ref().tls.set(true);
                }
                act(driver.session_mut(), &ev, script, &mut pending_rcpts)?;
                log.events.push(ev);
            }
            Ok(None) => break,
            Err(starttls_io::Error::Session(e)) => {
                log.error = Some(e);
                break;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    log.cleartext_sent = driver.get_ref().cleartext.clone();
    let _ = driver.close();
    Ok(log)
}

fn server_config(pki: &Pki, f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new("localhost", ServerTls::Rustls(pki.server_config()));
    f(&mut c);
    Arc::new(c)
}

fn ready_over_tls(log: &ClientLog) -> Result<(), String> {
    if let Some(e) = &log.error {
        return Err(format!("client failed: {e}"));
    }
    if !log
        .events
        .contains(&ClientEvent::Ready { trust: Trust::Tls })
    {
        return Err("client never became ready over TLS".into());
    }
    Ok(())
}

fn tls_details(log: &ClientLog) -> String {
    log.events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(i)) => Some(format!(
                "{} {}",
                i.version.map(|v| v.to_string()).unwrap_or_default(),
                i.cipher_suite.clone().unwrap_or_default()
            )),
            _ => None,
        })
        .unwrap_or_default()
}

// ----------------------------------------------------------------- clean sessions

fn message_session(
    pki: &Pki,
    implicit: bool,
    lmtp: bool,
    recipients: usize,
) -> Result<(ClientLog, ServerLog), String> {
    let (l, port) = listen()?;
    let server = serve(
        l,
        server_config(pki, |c| {
            c.implicit_tls = implicit;
            c.require_tls = !implicit;
            c.lmtp = lmtp;
        }),
    );
    let policy = if implicit {
        TlsPolicy::Implicit
    } else {
        TlsPolicy::StartTlsRequired
    };
    let log = run_client(
        port,
        client_config(pki, policy, "localhost", lmtp)?,
        Script::Message { recipients },
    )?;
    let slog = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    ready_over_tls(&log)?;
    if slog.cleartext_commands > 0 {
        return Err(format!(
            "server saw {} commands in cleartext",
            slog.cleartext_commands
        ));
    }
    if slog.message != b"Subject: conformance\r\n\r\n.leading dot\r\n" {
        return Err(format!(
            "message arrived as {:?}",
            String::from_utf8_lossy(&slog.message)
        ));
    }
    Ok((log, slog))
}

fn smtp_starttls(pki: &Pki) -> Result<String, String> {
    let (log, _) = message_session(pki, false, false, 1)?;
    let sent = String::from_utf8_lossy(&log.cleartext_sent);
    if sent != "EHLO client.localhost\r\nSTARTTLS\r\n" {
        return Err(format!("sent in cleartext: {sent:?}"));
    }
    Ok(tls_details(&log))
}

fn smtp_implicit(pki: &Pki) -> Result<String, String> {
    let (log, _) = message_session(pki, true, false, 1)?;
    if !log.cleartext_sent.is_empty() {
        return Err("bytes sent before TLS".into());
    }
    match log
        .events
        .iter()
        .find(|e| matches!(e, ClientEvent::Greeting(_)))
    {
        Some(ClientEvent::Greeting(g)) if g.trust == Trust::Tls => Ok(tls_details(&log)),
        _ => Err("greeting not received over TLS".into()),
    }
}

fn lmtp_session(pki: &Pki) -> Result<String, String> {
    let (log, _) = message_session(pki, false, true, 2)?;
    let ends = log
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Reply {
                    to: "end of data",
                    ..
                }
            )
        })
        .count();
    if ends != 2 {
        return Err(format!("{ends} replies after the data, want 2"));
    }
    Ok("2 recipients, 2 replies".into())
}

fn submission_auth(pki: &Pki) -> Result<String, String> {
    let (l, port) = listen()?;
    let server = serve(
        l,
        server_config(pki, |c| {
            c.require_tls = true;
            c.auth_mechanisms = vec!["PLAIN".into()];
        }),
    );
    let log = run_client(
        port,
        client_config(pki, TlsPolicy::StartTlsRequired, "localhost", false)?,
        Script::AuthPlain,
    )?;
    let slog = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    ready_over_tls(&log)?;
    let mut auth_in_cleartext = false;
    let mut auth_over_tls = false;
    for e in &log.events {
        if let ClientEvent::Capabilities(c) = e {
            let has = c.auth_mechanisms().any(|m| m.as_ref() == b"PLAIN");
            match c.trust {
                Trust::Cleartext => auth_in_cleartext |= has,
                Trust::Tls => auth_over_tls |= has,
            }
        }
    }
    if auth_in_cleartext || !auth_over_tls {
        return Err("AUTH must be offered over TLS only".into());
    }
    let accepted = log.events.iter().any(|e| {
        matches!(e, ClientEvent::Reply { to: "AUTH", reply } if reply.code().get() == 235 && reply.trust == Trust::Tls)
    });
    if !accepted || slog.cleartext_commands > 0 {
        return Err("AUTH was not accepted over TLS".into());
    }
    Ok("235 over TLS; AUTH absent from cleartext EHLO".into())
}

// ----------------------------------------------------------------- attack probes

fn injection_probe(pki: &Pki) -> Result<String, String> {
    let (l, port) = listen()?;
    let server = serve(l, server_config(pki, |_| {}));
    let mut sock = connect(port)?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    read_until(&mut sock, b"ESMTP\r\n")?;
    sock.write_all(b"EHLO probe\r\n")
        .map_err(|e| e.to_string())?;
    read_until(&mut sock, b"250 ")?;
    // CVE-2011-0411: STARTTLS and a command in one segment.
    sock.write_all(b"STARTTLS\r\nRSET\r\n")
        .map_err(|e| e.to_string())?;
    let got = read_until(&mut sock, b"\r\n")?;
    // Give the server time to (wrongly) answer RSET, then look.
    let extra = read_for(&mut sock, 300).len();
    drop(sock);
    let slog = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    if got != b"220 2.0.0 Ready to start TLS\r\n" || extra > 0 {
        return Err(format!(
            "server answered {:?}",
            String::from_utf8_lossy(&got)
        ));
    }
    let want = format!(
        "{:?}",
        ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes: 6 })
    );
    if !slog.events.contains(&want) {
        return Err(format!("no discard reported: {:?}", slog.events));
    }
    Ok("RSET unanswered; InjectionDiscarded { bytes: 6 }".into())
}

fn client_against_fake(
    pki: &Pki,
    ehlo: &'static [u8],
    after: &'static [u8],
    name: &str,
) -> Result<(ClientLog, String), String> {
    let mut script = vec![("EHLO client.localhost", ehlo)];
    if !after.is_empty() {
        script.push(("STARTTLS", after));
    }
    let (port, fake) = fake_server(b"220 fake ESMTP\r\n", script)?;
    let log = run_client(
        port,
        client_config(pki, TlsPolicy::StartTlsRequired, name, false)?,
        Script::Message { recipients: 1 },
    )?;
    let heard = fake
        .join()
        .map_err(|_| "fake server panicked".to_string())?;
    Ok((log, heard))
}

fn only_negotiation(heard: &str) -> Result<(), String> {
    for line in heard.split_terminator("\r\n") {
        if !["EHLO client.localhost", "STARTTLS", "QUIT"].contains(&line) {
            return Err(format!("client sent {line:?} in cleartext"));
        }
    }
    Ok(())
}

fn response_injection(pki: &Pki) -> Result<String, String> {
    let (log, heard) = client_against_fake(
        pki,
        b"250-fake\r\n250 STARTTLS\r\n",
        b"220 go ahead\r\n250-fake\r\n250 AUTH PLAIN\r\n",
        "localhost",
    )?;
    only_negotiation(&heard)?;
    match log.error {
        Some(Error::ResponseInjection) => Ok("ResponseInjection; no ClientHello sent".into()),
        other => Err(format!("client ended with {other:?}")),
    }
}

fn stripped(pki: &Pki) -> Result<String, String> {
    let (log, heard) = client_against_fake(
        pki,
        b"250-fake\r\n250 AUTH PLAIN LOGIN\r\n",
        b"",
        "localhost",
    )?;
    only_negotiation(&heard)?;
    match log.error {
        Some(Error::TlsRequired {
            reason: TlsRefusal::NotOffered,
            ..
        }) if heard.ends_with("QUIT\r\n") => {
            Ok("TlsRequired { NotOffered }; sent EHLO, QUIT".into())
        }
        other => Err(format!("client ended with {other:?}")),
    }
}

fn refused(pki: &Pki) -> Result<String, String> {
    let (log, heard) = client_against_fake(
        pki,
        b"250-fake\r\n250 STARTTLS\r\n",
        b"454 4.7.0 TLS not available\r\n",
        "localhost",
    )?;
    only_negotiation(&heard)?;
    match log.error {
        Some(Error::TlsRequired {
            reason: TlsRefusal::Refused { status },
            ..
        }) if status == "454" => Ok("TlsRequired { Refused 454 }".into()),
        other => Err(format!("client ended with {other:?}")),
    }
}

fn wrong_name(pki: &Pki) -> Result<String, String> {
    let (l, port) = listen()?;
    let server = serve(l, server_config(pki, |_| {}));
    let log = run_client(
        port,
        client_config(pki, TlsPolicy::StartTlsRequired, "mail.example.org", false)?,
        Script::Message { recipients: 1 },
    )?;
    let slog = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    if slog.cleartext_commands > 0 || slog.events.iter().any(|e| e.starts_with("Command")) {
        return Err("the server received commands".into());
    }
    match log.error {
        Some(Error::Tls(e)) if e.kind == TlsErrorKind::Certificate => Ok(e.detail),
        other => Err(format!("client ended with {other:?}")),
    }
}
