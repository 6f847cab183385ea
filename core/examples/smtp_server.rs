//! A small SMTP server on tokio, with STARTTLS (or implicit TLS) driven by the
//! sans-IO `starttls` session on the tokio driver of `starttls-io`. It accepts every message and prints what
//! happens, including discarded injection attempts.
//!
//! ```text
//! cargo run --example smtp_server -- --listen 127.0.0.1:2525 --ca-out /tmp/ca.pem
//! cargo run --example smtp_server -- --listen 127.0.0.1:2525 --cert cert.pem --key key.pem
//! cargo run --example smtp_server -- --listen 127.0.0.1:4650 --implicit --ca-out /tmp/ca.pem
//! ```
//!
//! Without `--cert`/`--key` it makes a throwaway CA and a certificate for
//! `localhost`, 127.0.0.1 and ::1 (rcgen), and writes the CA to `--ca-out`.
//! Listens on loopback addresses only.

use std::net::SocketAddr;
use std::sync::Arc;

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use starttls::smtp::{ServerConfig, ServerEvent, ServerSession};
use starttls::{ServerTls, UpgradeEvent};
use starttls_io::tokio::Driver;
use tokio::net::{TcpListener, TcpStream};

#[path = "../tests/common/pki.rs"]
mod pki;

struct Args {
    listen: SocketAddr,
    cert: Option<String>,
    key: Option<String>,
    ca_out: Option<String>,
    implicit: bool,
    require_tls: bool,
    max_connections: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:2525".parse().map_err(|e| format!("{e}"))?,
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
                a.max_connections = Some(val()?.parse().map_err(|e| format!("{e}"))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !a.listen.ip().is_loopback() {
        return Err("this example listens on loopback addresses only".into());
    }
    Ok(a)
}

fn tls_config(a: &Args) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
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
            eprintln!("smtp_server: {e}");
            std::process::exit(2);
        }
    };
    let tls = match tls_config(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("smtp_server: {e}");
            std::process::exit(2);
        }
    };
    let mut config = ServerConfig::new("localhost", ServerTls::Rustls(tls));
    config.implicit_tls = args.implicit;
    config.require_tls = args.require_tls;
    config.auth_mechanisms = vec!["PLAIN".into()];
    let config = Arc::new(config);
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("smtp_server: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!("listening on {}", args.listen);
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
    // The tokio driver (starttls-io) writes what the session queues, reads,
    // feeds, and times out a silent client; we answer events.
    let mut driver = Driver::new(session, sock);
    let mut message_bytes = 0usize;
    loop {
        let event = match driver.next_event().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(starttls_io::Error::Session(e)) => {
                // Its 421 or alert has been written.
                println!("[{peer}] session failed: {e}");
                break;
            }
            Err(e) => return Err(e),
        };
        let session = driver.session_mut();
        log(peer, session, &event);
        match event {
            ServerEvent::Command(starttls::smtp::Command::Bdat { .. }) => {}
            ServerEvent::Command(_) | ServerEvent::AuthResponse(_) | ServerEvent::ChunkEnd => {
                let _ = session.accept();
            }
            ServerEvent::MessageData(piece) => message_bytes += piece.len(),
            ServerEvent::MessageEnd => {
                println!("[{peer}] message of {message_bytes} bytes accepted");
                message_bytes = 0;
                let _ = session.accept();
            }
            _ => {}
        }
    }
    let _ = driver.close().await;
    println!("[{peer}] closed");
    Ok(())
}

fn log(peer: SocketAddr, session: &ServerSession, event: &ServerEvent) {
    match event {
        ServerEvent::MessageData(_) => {}
        ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => println!(
            "[{peer}] TLS established: {} {}",
            info.version.map(|v| v.to_string()).unwrap_or_default(),
            info.cipher_suite.clone().unwrap_or_default()
        ),
        ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes }) => {
            println!("[{peer}] DISCARDED {bytes} bytes injected after STARTTLS")
        }
        other => println!("[{peer}] ({}) {other:?}", session.trust()),
    }
}
