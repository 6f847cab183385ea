//! A blocking SMTP client over `std::net`, on the blocking driver of
//! `starttls-io`, that negotiates TLS with the sans-IO `starttls` session: greeting, EHLO, STARTTLS, handshake, EHLO
//! again, QUIT. Prints the transcript with each text's trust level; exits
//! non-zero with the typed error when the policy cannot be met.
//!
//! ```text
//! cargo run --example smtp_client -- 127.0.0.1:2525 --ca /tmp/ca.pem
//! cargo run --example smtp_client -- 127.0.0.1:4650 --ca /tmp/ca.pem --implicit
//! cargo run --example smtp_client -- 127.0.0.1:2525 --ca /tmp/ca.pem --opportunistic
//! ```

use std::net::TcpStream;
use std::sync::Arc;

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::smtp::{ClientConfig, ClientEvent, ClientSession, Command};
use starttls::{ClientTls, Escaped, TlsPolicy, UpgradeEvent};
use starttls_io::blocking::Driver;

#[path = "common/transcript.rs"]
mod transcript;
use transcript::Transcript;

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("smtp_client: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = None;
    let mut ca = None;
    let mut server_name = "localhost".to_string();
    let mut policy = TlsPolicy::StartTlsRequired;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ca" => ca = it.next(),
            "--server-name" => server_name = it.next().ok_or("--server-name needs a value")?,
            "--implicit" => policy = TlsPolicy::Implicit,
            "--opportunistic" => policy = TlsPolicy::Opportunistic,
            a if addr.is_none() && !a.starts_with("--") => addr = Some(a.to_string()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let addr = addr.ok_or(
        "usage: smtp_client ADDR --ca FILE [--server-name NAME] [--implicit|--opportunistic]",
    )?;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &ca {
        for cert in CertificateDer::pem_file_iter(path)? {
            roots.add(cert?)?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = ClientConfig::new(
        "client.localhost",
        policy,
        ClientTls::Rustls {
            config: Arc::new(tls),
            server_name: ServerName::try_from(server_name)?,
        },
    );
    let session = ClientSession::new(Arc::new(config))?;
    let sock = TcpStream::connect(&addr)?;
    println!("connected to {addr}");
    // The blocking driver (starttls-io) writes what the session queues,
    // reads, feeds, and times out a silent server; we answer events.
    let sock = Transcript::new(sock, policy == TlsPolicy::Implicit);
    let mut driver = Driver::new(session, sock);
    while let Some(event) = driver.next_event()? {
        match event {
            ClientEvent::Greeting(r) => print_reply("greeting", &r.message, r.trust),
            ClientEvent::Capabilities(c) => {
                let caps: Vec<String> = c.iter().map(|c| format!("{c:?}")).collect();
                println!("   capabilities [{}]: {}", c.trust, caps.join(", "));
            }
            ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted) => {
                // Bytes on the wire are TLS records from here on.
                driver.get_ref().tls_on_wire();
                println!("   upgrade started: TLS handshake")
            }
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => println!(
                "   TLS established: {} {}",
                info.version.map(|v| v.to_string()).unwrap_or_default(),
                info.cipher_suite.unwrap_or_default()
            ),
            ClientEvent::Upgrade(u) => println!("   {u:?}"),
            ClientEvent::Ready { trust } => {
                println!("   ready [{trust}]");
                driver.session_mut().send(Command::Quit)?;
                println!("C: QUIT   (encrypted when the channel is)");
            }
            ClientEvent::Reply { to, reply } => print_reply(to, &reply.message, reply.trust),
            _ => {}
        }
    }
    // The session closed; QUIT's reply came. Shut the socket down.
    driver.close()?;
    println!("closed");
    Ok(())
}

fn print_reply(what: &str, reply: &starttls::smtp::Reply, trust: starttls::Trust) {
    for line in reply.lines() {
        println!(
            "S: [{trust}] {} {}   ({what})",
            reply.code(),
            Escaped::new(&line)
        );
    }
}
