//! Live loopback checks for IMAP and POP3: the reference server and client
//! over real TCP and TLS, and attack probes on raw sockets.

use std::io::Write;
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use starttls::rustls::pki_types::ServerName;
use starttls::{imap, pop3};
use starttls::{ClientTls, Error, ServerTls, TlsPolicy, TlsRefusal, Trust, UpgradeEvent};

use crate::live::Check;
use crate::net::{connect, fake_server, listen, read_for, read_until, run};
use crate::pki::Pki;

/// The IMAP and POP3 checks, in the order they run.
pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "STARTTLS session, LOGIN only over TLS",
            protocol: "imap",
            role: "client+server",
            run: imap_starttls,
        },
        Check {
            name: "implicit TLS session (port 993 style)",
            protocol: "imaps",
            role: "client+server",
            run: imap_implicit,
        },
        Check {
            name: "command injected after STARTTLS is discarded",
            protocol: "imap",
            role: "server",
            run: imap_injection,
        },
        Check {
            name: "response injected after OK fails the client",
            protocol: "imap",
            role: "client",
            run: imap_response_injection,
        },
        Check {
            name: "cleartext PREAUTH fails closed",
            protocol: "imap",
            role: "client",
            run: imap_preauth,
        },
        Check {
            name: "stripped STARTTLS fails closed",
            protocol: "imap",
            role: "client",
            run: imap_stripped,
        },
        Check {
            name: "STLS session, USER/PASS only over TLS",
            protocol: "pop3",
            role: "client+server",
            run: pop3_stls,
        },
        Check {
            name: "implicit TLS session (port 995 style)",
            protocol: "pop3s",
            role: "client+server",
            run: pop3_implicit,
        },
        Check {
            name: "command injected after STLS is discarded",
            protocol: "pop3",
            role: "server",
            run: pop3_injection,
        },
        Check {
            name: "response injected after +OK fails the client",
            protocol: "pop3",
            role: "client",
            run: pop3_response_injection,
        },
        Check {
            name: "stripped STLS fails closed",
            protocol: "pop3",
            role: "client",
            run: pop3_stripped,
        },
    ]
}

fn client_tls(pki: &Pki) -> ClientTls {
    ClientTls::Rustls {
        config: pki.client_config(),
        server_name: ServerName::try_from("localhost").expect("a valid name"),
    }
}

fn only(sent: &str, allowed: &[&str]) -> Result<(), String> {
    for line in sent.split_terminator("\r\n") {
        if !allowed.contains(&line) {
            return Err(format!("the client sent {line:?} in cleartext"));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ IMAP

/// What the IMAP server saw.
#[derive(Default)]
struct ImapLog {
    cleartext_commands: usize,
    tls_commands: usize,
    discarded: Option<usize>,
}

fn imap_serve(pki: &Pki, implicit: bool) -> Result<(u16, thread::JoinHandle<ImapLog>), String> {
    let (l, port) = listen()?;
    let mut c = imap::ServerConfig::new(ServerTls::Rustls(pki.server_config()));
    c.implicit_tls = implicit;
    c.require_tls = !implicit;
    let config = Arc::new(c);
    let h = thread::spawn(move || {
        let mut log = ImapLog::default();
        let Ok((sock, _)) = l.accept() else {
            return log;
        };
        let Ok(s) = imap::ServerSession::new(config) else {
            return log;
        };
        let _ = run(sock, s, |s, e| match e {
            imap::ServerEvent::Command(c) => {
                match s.trust() {
                    Trust::Cleartext => log.cleartext_commands += 1,
                    Trust::Tls => log.tls_commands += 1,
                }
                if let imap::CommandBody::Other { name, .. } = &c.body {
                    if name.eq_ignore_ascii_case(b"SELECT") {
                        let exists = imap::Response::parse(&Bytes::from_static(b"* 1 EXISTS"));
                        if let Ok(r) = exists {
                            let _ = s.send_untagged(&r);
                        }
                    }
                }
                let _ = s.accept();
            }
            imap::ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes }) => {
                log.discarded = Some(bytes)
            }
            _ => {}
        });
        log
    });
    Ok((port, h))
}

fn command(text: &str) -> Result<imap::CommandBody, String> {
    imap::Command::parse(&Bytes::copy_from_slice(format!("x {text}").as_bytes()))
        .map(|c| c.body)
        .map_err(|e| e.to_string())
}

/// Runs our IMAP client: LOGIN, SELECT INBOX, LOGOUT once ready.
fn imap_client(
    pki: &Pki,
    port: u16,
    policy: TlsPolicy,
) -> Result<(Vec<imap::ClientEvent>, Option<Error>), String> {
    let config = Arc::new(imap::ClientConfig::new(policy, client_tls(pki)));
    let c = imap::ClientSession::new(config).map_err(|e| e.to_string())?;
    let sock = connect(port)?;
    let mut events = Vec::new();
    let script = [
        command("LOGIN alice secret")?,
        command("SELECT INBOX")?,
        command("LOGOUT")?,
    ];
    let mut next = 0;
    let err = run(sock, c, |c, e| {
        if matches!(
            e,
            imap::ClientEvent::Ready { .. } | imap::ClientEvent::Tagged { .. }
        ) {
            if let Some(cmd) = script.get(next) {
                next += 1;
                let _ = c.send(cmd.clone());
            }
        }
        events.push(e);
    })?;
    Ok((events, err))
}

fn imap_session(pki: &Pki, implicit: bool) -> Result<String, String> {
    let (port, server) = imap_serve(pki, implicit)?;
    let policy = if implicit {
        TlsPolicy::Implicit
    } else {
        TlsPolicy::StartTlsRequired
    };
    let (events, err) = imap_client(pki, port, policy)?;
    let log = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    if let Some(e) = err {
        return Err(format!("client failed: {e}"));
    }
    if !events.contains(&imap::ClientEvent::Ready {
        trust: Trust::Tls,
        authenticated: false,
    }) {
        return Err("client never became ready over TLS".into());
    }
    let tagged_ok = events
        .iter()
        .filter(|e| matches!(e, imap::ClientEvent::Tagged { status, .. } if status.status == imap::Status::Ok && status.trust == Trust::Tls))
        .count();
    if tagged_ok != 3 || log.cleartext_commands > 0 || log.tls_commands != 2 {
        return Err(format!(
            "{tagged_ok} commands completed; server saw {} in cleartext",
            log.cleartext_commands
        ));
    }
    let mut cleartext_caps = String::new();
    for e in &events {
        if let imap::ClientEvent::Capabilities(c) = e {
            if c.trust == Trust::Cleartext {
                cleartext_caps = String::from_utf8_lossy(c.as_bytes()).into_owned();
            }
        }
    }
    if !implicit && !cleartext_caps.contains("LOGINDISABLED") {
        return Err(format!(
            "cleartext capabilities lack LOGINDISABLED: {cleartext_caps}"
        ));
    }
    Ok("LOGIN, SELECT, LOGOUT over TLS".into())
}

fn imap_starttls(pki: &Pki) -> Result<String, String> {
    imap_session(pki, false)
}

fn imap_implicit(pki: &Pki) -> Result<String, String> {
    imap_session(pki, true)
}

fn imap_injection(pki: &Pki) -> Result<String, String> {
    let (port, server) = imap_serve(pki, false)?;
    let mut sock = connect(port)?;
    read_until(&mut sock, b"\r\n")?;
    sock.write_all(b"a STARTTLS\r\nb NOOP\r\n")
        .map_err(|e| e.to_string())?;
    let got = read_until(&mut sock, b"\r\n")?;
    let extra = read_for(&mut sock, 300);
    drop(sock);
    let log = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    if got != b"a OK Begin TLS negotiation now\r\n" || !extra.is_empty() {
        return Err(format!(
            "server answered {:?}",
            String::from_utf8_lossy(&[got, extra].concat())
        ));
    }
    match log.discarded {
        Some(8) => Ok("b NOOP unanswered; InjectionDiscarded { bytes: 8 }".into()),
        other => Err(format!("discard reported as {other:?}")),
    }
}

fn imap_client_against(
    pki: &Pki,
    greeting: &'static [u8],
    script: Vec<(&'static str, &'static [u8])>,
) -> Result<(Option<Error>, String), String> {
    let (port, fake) = fake_server(greeting, script)?;
    let (_, err) = imap_client(pki, port, TlsPolicy::StartTlsRequired)?;
    let heard = fake
        .join()
        .map_err(|_| "fake server panicked".to_string())?;
    Ok((err, heard))
}

fn imap_response_injection(pki: &Pki) -> Result<String, String> {
    const ANSWER: &[u8] = b"A1 OK go\r\n* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n";
    let (err, heard) = imap_client_against(
        pki,
        b"* OK [CAPABILITY IMAP4rev2 STARTTLS] hi\r\n",
        vec![("A1 STARTTLS", ANSWER)],
    )?;
    only(&heard, &["A1 STARTTLS"])?;
    match err {
        Some(Error::ResponseInjection) => Ok("ResponseInjection; no ClientHello sent".into()),
        other => Err(format!("client ended with {other:?}")),
    }
}

fn imap_preauth(pki: &Pki) -> Result<String, String> {
    let (err, heard) = imap_client_against(
        pki,
        b"* PREAUTH [CAPABILITY IMAP4rev2] logged in as you\r\n",
        vec![],
    )?;
    only(&heard, &[])?;
    match err {
        Some(Error::TlsRequired {
            reason: TlsRefusal::Preauth,
            ..
        }) => Ok("TlsRequired { Preauth }; sent nothing".into()),
        other => Err(format!("client ended with {other:?}")),
    }
}

fn imap_stripped(pki: &Pki) -> Result<String, String> {
    let (err, heard) = imap_client_against(
        pki,
        b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] hi\r\n",
        vec![],
    )?;
    only(&heard, &["A1 LOGOUT"])?;
    match err {
        Some(Error::TlsRequired {
            reason: TlsRefusal::NotOffered,
            ..
        }) => Ok("TlsRequired { NotOffered }; sent LOGOUT".into()),
        other => Err(format!("client ended with {other:?}")),
    }
}

// ------------------------------------------------------------------ POP3

const MESSAGE: &[u8] = b"Subject: live\r\n\r\n.a line with a dot\r\n";

#[derive(Default)]
struct Pop3Log {
    cleartext_commands: usize,
    tls_commands: usize,
    discarded: Option<usize>,
}

fn pop3_serve(pki: &Pki, implicit: bool) -> Result<(u16, thread::JoinHandle<Pop3Log>), String> {
    let (l, port) = listen()?;
    let mut c = pop3::ServerConfig::new(ServerTls::Rustls(pki.server_config()));
    c.implicit_tls = implicit;
    c.require_tls = !implicit;
    let config = Arc::new(c);
    let h = thread::spawn(move || {
        let mut log = Pop3Log::default();
        let Ok((sock, _)) = l.accept() else {
            return log;
        };
        let Ok(s) = pop3::ServerSession::new(config) else {
            return log;
        };
        let _ = run(sock, s, |s, e| match e {
            pop3::ServerEvent::Command(c) => {
                match s.trust() {
                    Trust::Cleartext => log.cleartext_commands += 1,
                    Trust::Tls => log.tls_commands += 1,
                }
                let _ = match c {
                    pop3::Command::Stat => s.reply(pop3::StatusLine::new(
                        pop3::Status::Ok,
                        Bytes::from(format!("1 {}", MESSAGE.len())),
                    )),
                    pop3::Command::Retr { .. } => s.reply_multiline("message follows", MESSAGE),
                    _ => s.accept(),
                };
            }
            pop3::ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes }) => {
                log.discarded = Some(bytes)
            }
            _ => {}
        });
        log
    });
    Ok((port, h))
}

/// Events, the session's error, and the retrieved body.
type Pop3Run = (Vec<pop3::ClientEvent>, Option<Error>, Vec<u8>);

/// Runs our POP3 client: USER, PASS, STAT, RETR 1, QUIT once ready.
fn pop3_client(pki: &Pki, port: u16, policy: TlsPolicy) -> Result<Pop3Run, String> {
    let config = Arc::new(pop3::ClientConfig::new(policy, client_tls(pki)));
    let c = pop3::ClientSession::new(config).map_err(|e| e.to_string())?;
    let sock = connect(port)?;
    let mut events = Vec::new();
    let mut body = Vec::new();
    let mut script = ["USER alice", "PASS secret", "STAT", "RETR 1", "QUIT"].into_iter();
    let err = run(sock, c, |c, e| {
        let next = match &e {
            pop3::ClientEvent::Ready { .. } | pop3::ClientEvent::BodyEnd => true,
            pop3::ClientEvent::Reply { multiline, .. } => !multiline,
            pop3::ClientEvent::Body(p) => {
                body.extend_from_slice(p);
                false
            }
            _ => false,
        };
        if next {
            if let Some(line) = script.next() {
                if let Ok(cmd) = pop3::Command::parse(&Bytes::from_static(line.as_bytes())) {
                    let _ = c.send(cmd);
                }
            }
        }
        events.push(e);
    })?;
    Ok((events, err, body))
}

fn pop3_session(pki: &Pki, implicit: bool) -> Result<String, String> {
    let (port, server) = pop3_serve(pki, implicit)?;
    let policy = if implicit {
        TlsPolicy::Implicit
    } else {
        TlsPolicy::StartTlsRequired
    };
    let (events, err, body) = pop3_client(pki, port, policy)?;
    let log = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    if let Some(e) = err {
        return Err(format!("client failed: {e}"));
    }
    if !events.contains(&pop3::ClientEvent::Ready { trust: Trust::Tls }) {
        return Err("client never became ready over TLS".into());
    }
    if log.cleartext_commands > 0 || log.tls_commands != 5 {
        return Err(format!(
            "server saw {} commands in cleartext, {} over TLS",
            log.cleartext_commands, log.tls_commands
        ));
    }
    if body != MESSAGE {
        return Err(format!(
            "message arrived as {:?}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok("USER, PASS, STAT, RETR (dot-stuffed), QUIT over TLS".into())
}

fn pop3_stls(pki: &Pki) -> Result<String, String> {
    pop3_session(pki, false)
}

fn pop3_implicit(pki: &Pki) -> Result<String, String> {
    pop3_session(pki, true)
}

fn pop3_injection(pki: &Pki) -> Result<String, String> {
    let (port, server) = pop3_serve(pki, false)?;
    let mut sock = connect(port)?;
    read_until(&mut sock, b"\r\n")?;
    sock.write_all(b"STLS\r\nCAPA\r\n")
        .map_err(|e| e.to_string())?;
    let got = read_until(&mut sock, b"\r\n")?;
    let extra = read_for(&mut sock, 300);
    drop(sock);
    let log = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    if got != b"+OK Begin TLS negotiation\r\n" || !extra.is_empty() {
        return Err(format!(
            "server answered {:?}",
            String::from_utf8_lossy(&[got, extra].concat())
        ));
    }
    match log.discarded {
        Some(6) => Ok("CAPA unanswered; InjectionDiscarded { bytes: 6 }".into()),
        other => Err(format!("discard reported as {other:?}")),
    }
}

fn pop3_response_injection(pki: &Pki) -> Result<String, String> {
    const ANSWER: &[u8] = b"+OK go\r\n+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n";
    let (port, fake) = fake_server(
        b"+OK hi\r\n",
        vec![("CAPA", b"+OK\r\nSTLS\r\n.\r\n"), ("STLS", ANSWER)],
    )?;
    let (_, err, _) = pop3_client(pki, port, TlsPolicy::StartTlsRequired)?;
    let heard = fake
        .join()
        .map_err(|_| "fake server panicked".to_string())?;
    only(&heard, &["CAPA", "STLS"])?;
    match err {
        Some(Error::ResponseInjection) => Ok("ResponseInjection; no ClientHello sent".into()),
        other => Err(format!("client ended with {other:?}")),
    }
}

fn pop3_stripped(pki: &Pki) -> Result<String, String> {
    let (port, fake) = fake_server(
        b"+OK hi\r\n",
        vec![("CAPA", b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")],
    )?;
    let (_, err, _) = pop3_client(pki, port, TlsPolicy::StartTlsRequired)?;
    let heard = fake
        .join()
        .map_err(|_| "fake server panicked".to_string())?;
    only(&heard, &["CAPA", "QUIT"])?;
    match err {
        Some(Error::TlsRequired {
            reason: TlsRefusal::NotOffered,
            ..
        }) if heard.ends_with("QUIT\r\n") => {
            Ok("TlsRequired { NotOffered }; sent CAPA, QUIT".into())
        }
        other => Err(format!("client ended with {other:?}")),
    }
}
