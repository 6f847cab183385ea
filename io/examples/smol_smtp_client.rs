//! An SMTP client on smol, through the futures-io driver: greeting, EHLO,
//! STARTTLS, handshake, EHLO again (all done by the session), then QUIT.
//!
//! ```text
//! cargo run --example smtp_server -- --listen 127.0.0.1:2525 --ca-out /tmp/ca.pem
//! cargo run -p starttls-io --features futures-io --example smol_smtp_client -- 127.0.0.1:2525 --ca /tmp/ca.pem
//! ```

use std::error::Error;
use std::sync::Arc;

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::smtp::{ClientConfig, ClientEvent, ClientSession, Command};
use starttls::{ClientTls, Escaped, TlsPolicy, UpgradeEvent};
use starttls_io::futures::Driver;

const USAGE: &str = "usage: smol_smtp_client ADDR --ca FILE [--server-name NAME]";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut ca, mut name) = (None, None, "localhost".to_string());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => ca = Some(args.next().ok_or(USAGE)?),
            "--server-name" => name = args.next().ok_or(USAGE)?,
            a if addr.is_none() && !a.starts_with("--") => addr = Some(a.to_string()),
            _ => return Err(USAGE.into()),
        }
    }
    let (Some(addr), Some(ca)) = (addr, ca) else {
        return Err(USAGE.into());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca)? {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = ClientConfig::new(
        "client.localhost",
        TlsPolicy::StartTlsRequired,
        ClientTls::Rustls {
            config: Arc::new(tls),
            server_name: ServerName::try_from(name)?,
        },
    );
    let session = ClientSession::new(Arc::new(config))?;
    smol::block_on(async {
        let sock = smol::net::TcpStream::connect(&addr).await?;
        println!("connected to {addr}");
        let mut driver = Driver::new(session, sock);
        while let Some(event) = driver.next_event().await? {
            match event {
                ClientEvent::Greeting(r) | ClientEvent::Reply { reply: r, .. } => {
                    for line in r.message.lines() {
                        let text = Escaped::new(&line);
                        println!("S: [{}] {} {text}", r.trust, r.message.code());
                    }
                }
                ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => println!(
                    "   TLS established: {}",
                    info.version.map(|v| v.to_string()).unwrap_or_default()
                ),
                ClientEvent::Ready { trust } => {
                    println!("   ready [{trust}]: QUIT");
                    driver.session_mut().send(Command::Quit)?;
                }
                other => println!("   {other:?}"),
            }
        }
        driver.close().await?;
        println!("closed");
        Ok(())
    })
}
