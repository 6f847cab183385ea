//! Sessions, configurations and handlers shared by the driver tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use starttls::rustls::pki_types::ServerName;
use starttls::{imap, pop3, smtp, ClientTls, ServerTls, Timeouts, TlsPolicy};

#[path = "../../../core/tests/common/pki.rs"]
pub mod pki;

/// Short timeouts for the stall tests.
pub const SHORT: Duration = Duration::from_millis(300);

pub fn short() -> Timeouts {
    Timeouts::all(SHORT)
}

pub fn server_tls() -> ServerTls {
    let p = pki::pki();
    ServerTls::Rustls(Arc::new(
        starttls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![p.leaf_der.clone()], p.key())
            .expect("the test key fits the test certificate"),
    ))
}

pub fn client_rustls() -> Arc<starttls::rustls::ClientConfig> {
    let mut roots = starttls::rustls::RootCertStore::empty();
    roots.add(pki::pki().ca_der.clone()).expect("test CA");
    Arc::new(
        starttls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn client_tls() -> ClientTls {
    ClientTls::Rustls {
        config: client_rustls(),
        server_name: ServerName::try_from("localhost").expect("name"),
    }
}

pub fn smtp_server(tls: ServerTls) -> smtp::ServerSession {
    smtp::ServerSession::new(Arc::new(smtp::ServerConfig::new("mx.localhost", tls)))
        .expect("config")
}

pub fn smtp_server_implicit() -> smtp::ServerSession {
    let mut c = smtp::ServerConfig::new("mx.localhost", server_tls());
    c.implicit_tls = true;
    smtp::ServerSession::new(Arc::new(c)).expect("config")
}

pub fn smtp_client(tls: ClientTls) -> smtp::ClientSession {
    smtp::ClientSession::new(Arc::new(smtp::ClientConfig::new(
        "client.localhost",
        TlsPolicy::StartTlsRequired,
        tls,
    )))
    .expect("config")
}

pub fn imap_server(tls: ServerTls) -> imap::ServerSession {
    imap::ServerSession::new(Arc::new(imap::ServerConfig::new(tls))).expect("config")
}

pub fn imap_client() -> imap::ClientSession {
    imap::ClientSession::new(Arc::new(imap::ClientConfig::new(
        TlsPolicy::StartTlsRequired,
        client_tls(),
    )))
    .expect("config")
}

pub fn pop3_server(tls: ServerTls) -> pop3::ServerSession {
    pop3::ServerSession::new(Arc::new(pop3::ServerConfig::new(tls))).expect("config")
}

pub fn pop3_client() -> pop3::ClientSession {
    pop3::ClientSession::new(Arc::new(pop3::ClientConfig::new(
        TlsPolicy::StartTlsRequired,
        client_tls(),
    )))
    .expect("config")
}

/// An SMTP server application: accepts every command and message.
pub fn smtp_serve(
    s: &mut smtp::ServerSession,
    e: smtp::ServerEvent,
    log: &mut Vec<String>,
) -> Result<(), starttls_io::Error> {
    log.push(format!("{e:?}"));
    match e {
        smtp::ServerEvent::Command(_) | smtp::ServerEvent::MessageEnd => s.accept()?,
        _ => {}
    }
    Ok(())
}

/// An SMTP client application: one message, then QUIT.
pub fn smtp_script(
    s: &mut smtp::ClientSession,
    e: smtp::ClientEvent,
    log: &mut Vec<String>,
) -> Result<(), starttls_io::Error> {
    log.push(format!("{e:?}"));
    match e {
        smtp::ClientEvent::Ready { .. } => s.send(cmd("MAIL FROM:<a@localhost>"))?,
        smtp::ClientEvent::Reply { to: "MAIL", .. } => s.send(cmd("RCPT TO:<b@localhost>"))?,
        smtp::ClientEvent::Reply { to: "RCPT", .. } => s.send(cmd("DATA"))?,
        smtp::ClientEvent::Reply { to: "DATA", .. } => {
            s.send_data(b"Subject: hi\r\n\r\nSTARTTLS\r\n.line\r\n")?;
            s.finish_data()?;
        }
        smtp::ClientEvent::Reply {
            to: "end of data", ..
        } => s.send(smtp::Command::Quit)?,
        _ => {}
    }
    Ok(())
}

/// `true` when the log shows TLS established.
pub fn saw_tls(log: &[String]) -> bool {
    log.iter().any(|l| l.contains("TlsEstablished"))
}

pub fn cmd(line: &'static str) -> smtp::Command {
    smtp::Command::parse(&bytes::Bytes::from_static(line.as_bytes())).expect("a valid command")
}
