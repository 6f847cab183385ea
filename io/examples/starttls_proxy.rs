//! A STARTTLS-terminating proxy: IMAP (or POP3) with STARTTLS (STLS) in
//! front, plain TCP to a backend behind.
//!
//! ```text
//! cargo run -p starttls-io --features tokio --example starttls_proxy -- \
//!     --listen 127.0.0.1:1143 --backend 127.0.0.1:143 --cert leaf.pem --key leaf.key
//! cargo run -p starttls-io --features tokio --example starttls_proxy -- \
//!     --protocol pop3 --listen 127.0.0.1:1110 --backend 127.0.0.1:110 --cert leaf.pem --key leaf.key
//! ```
//!
//! Per client connection, on the tokio driver:
//!
//! 1. the front session (`starttls::imap::ServerSession`, `require_tls`)
//!    greets the client and answers `CAPABILITY`, `NOOP`, `LOGOUT` and
//!    `STARTTLS` itself, refusing everything else in cleartext: nothing the
//!    client says before TLS reaches the backend;
//! 2. once TLS is up (`UpgradeEvent::TlsEstablished`), `into_parts()` hands
//!    over the TLS stream with whatever the client already sent over TLS;
//! 3. the proxy connects to the backend, reads its greeting (one line, which
//!    the client must not see twice: it had the front's), and from then on
//!    copies both ways (`copy_bidirectional`). The client's first command
//!    over TLS (`CAPABILITY`, `CAPA`) is the backend's to answer.
//!
//! The backend sees every connection come from the proxy, in cleartext: run
//! it on loopback or a private network, with plaintext login allowed
//! (Dovecot: `ssl = no`, `disable_plaintext_auth = no`). Loopback only here.

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use starttls::{imap, pop3, ServerTls, UpgradeEvent};
use starttls_io::tokio::Driver;
use starttls_io::Handoff;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn Error + Send + Sync>;

/// The protocol in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// IMAP with `STARTTLS`.
    Imap,
    /// POP3 with `STLS`.
    Pop3,
}

/// What the proxy needs: the front's configuration and where the backend is.
#[derive(Clone)]
pub struct Proxy {
    front: Front,
    backend: SocketAddr,
}

#[derive(Clone)]
enum Front {
    Imap(Arc<imap::ServerConfig>),
    Pop3(Arc<pop3::ServerConfig>),
}

impl Proxy {
    /// A proxy for `protocol` with this certificate, to `backend`.
    pub fn new(
        protocol: Protocol,
        tls: Arc<rustls::ServerConfig>,
        backend: SocketAddr,
    ) -> Result<Proxy, BoxError> {
        let tls = ServerTls::Rustls(tls);
        let front = match protocol {
            Protocol::Imap => {
                let mut c = imap::ServerConfig::new(tls);
                c.require_tls = true;
                c.greeting = "STARTTLS proxy ready".into();
                // The backend advertises its own after TLS.
                c.capabilities.clear();
                imap::ServerSession::new(Arc::new(c.clone()))?;
                Front::Imap(Arc::new(c))
            }
            Protocol::Pop3 => {
                let mut c = pop3::ServerConfig::new(tls);
                c.require_tls = true;
                pop3::ServerSession::new(Arc::new(c.clone()))?;
                Front::Pop3(Arc::new(c))
            }
        };
        Ok(Proxy { front, backend })
    }

    /// Accepts connections until the listener fails, one task each.
    pub async fn serve(self, listener: TcpListener) -> Result<(), BoxError> {
        loop {
            let (sock, peer) = listener.accept().await?;
            let proxy = self.clone();
            tokio::spawn(async move {
                match proxy.connection(sock).await {
                    Ok(Some((up, down))) => {
                        println!("[{peer}] closed: {up} bytes to the backend, {down} back")
                    }
                    Ok(None) => println!("[{peer}] closed before TLS"),
                    Err(e) => println!("[{peer}] failed: {e}"),
                }
            });
        }
    }

    /// One client: STARTTLS in front, then the bytes both ways. `None`: the
    /// client left before TLS.
    pub async fn connection(&self, sock: TcpStream) -> Result<Option<(u64, u64)>, BoxError> {
        let client = match &self.front {
            Front::Imap(c) => upgrade_imap(imap::ServerSession::new(Arc::clone(c))?, sock).await?,
            Front::Pop3(c) => upgrade_pop3(pop3::ServerSession::new(Arc::clone(c))?, sock).await?,
        };
        let Some(mut client) = client else {
            return Ok(None);
        };
        let mut backend = TcpStream::connect(self.backend).await?;
        let greeting = read_line(&mut backend).await?;
        let ok = match self.front {
            Front::Imap(_) => greeting.starts_with(b"* OK"),
            Front::Pop3(_) => greeting.starts_with(b"+OK"),
        };
        if !ok {
            let bye: &[u8] = match self.front {
                Front::Imap(_) => b"* BYE backend unavailable\r\n",
                Front::Pop3(_) => b"-ERR backend unavailable\r\n",
            };
            client.write_all(bye).await?;
            client.shutdown().await?;
            return Err(format!(
                "backend greeted with {:?}",
                starttls::Escaped::new(&greeting).to_string()
            )
            .into());
        }
        let copied = tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
        Ok(Some(copied))
    }
}

/// The IMAP front until TLS is up: the session answers the negotiation and
/// refuses the rest; the application has only `ID` to answer.
async fn upgrade_imap(
    session: imap::ServerSession,
    sock: TcpStream,
) -> Result<Option<Handoff<TcpStream>>, BoxError> {
    let mut driver = Driver::new(session, sock);
    loop {
        match driver.next_event().await? {
            None => return Ok(None),
            Some(imap::ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(_))) => break,
            Some(imap::ServerEvent::Command(_)) => driver.session_mut().complete(
                imap::Status::No,
                Some(imap::Code::PrivacyRequired),
                "STARTTLS first",
            )?,
            Some(_) => {}
        }
    }
    Ok(Some(driver.into_parts().await.map_err(|(_, e)| e)?))
}

/// The POP3 front until TLS is up.
async fn upgrade_pop3(
    session: pop3::ServerSession,
    sock: TcpStream,
) -> Result<Option<Handoff<TcpStream>>, BoxError> {
    let mut driver = Driver::new(session, sock);
    loop {
        match driver.next_event().await? {
            None => return Ok(None),
            Some(pop3::ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(_))) => break,
            Some(pop3::ServerEvent::Command(_)) => {
                driver.session_mut().reject(None, "STLS first")?
            }
            Some(_) => {}
        }
    }
    Ok(Some(driver.into_parts().await.map_err(|(_, e)| e)?))
}

/// The backend's greeting: one line, read byte by byte so that nothing after
/// it is taken from the stream.
async fn read_line(sock: &mut TcpStream) -> Result<Vec<u8>, BoxError> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        if line.len() >= 4096 {
            return Err("backend greeting longer than 4096 bytes".into());
        }
        line.push(sock.read_u8().await?);
    }
    Ok(line)
}

/// The certificate chain and key from PEM files.
pub fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    Ok(Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?,
    ))
}

const USAGE: &str = "usage: starttls_proxy [--protocol imap|pop3] --listen ADDR --backend ADDR \
                     --cert FILE --key FILE (loopback addresses only)";

#[allow(dead_code)] // The proxy test takes the module without `main`.
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (mut protocol, mut listen, mut backend, mut cert, mut key) =
        (Protocol::Imap, None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--protocol" => {
                protocol = match value.as_str() {
                    "imap" => Protocol::Imap,
                    "pop3" => Protocol::Pop3,
                    _ => return Err(USAGE.into()),
                }
            }
            "--listen" => listen = Some(value.parse::<SocketAddr>()?),
            "--backend" => backend = Some(value.parse::<SocketAddr>()?),
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            _ => return Err(USAGE.into()),
        }
    }
    let (Some(listen), Some(backend), Some(cert), Some(key)) = (listen, backend, cert, key) else {
        return Err(USAGE.into());
    };
    if !listen.ip().is_loopback() || !backend.ip().is_loopback() {
        return Err(USAGE.into());
    }
    let proxy = Proxy::new(protocol, tls_config(&cert, &key)?, backend)?;
    let listener = TcpListener::bind(listen).await?;
    println!("listening {} -> {backend}", listener.local_addr()?);
    proxy.serve(listener).await
}
