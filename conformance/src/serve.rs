//! `starttls serve`: the reference server.
//!
//! One tokio runtime, one accept loop per listener, one task per connection.
//! Every connection runs a sans-IO session from the `starttls` library on
//! the tokio driver of `starttls-io` (docs/design.md, Drivers), which does
//! the caller's contract: the application only answers events. The protocol applications
//! (the test account, the one message, SASL) live in `serve/{smtp,imap,pop3}.rs`.
//!
//! Everything is logged to stdout, one flushed line per event, so tests can
//! follow along: `listening <kind> <addr>` once per listener at start, then
//! `[<kind> <peer>] ...` per connection.

pub mod broken;
mod imap;
mod pop3;
pub(crate) mod sasl;
mod smtp;

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use starttls::rustls::server::WebPkiClientVerifier;
use starttls::{ConfigError, ServerTls, Session, Timeouts, Trust, UpgradeEvent};
use starttls_io::tokio::Driver;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Arguments of `starttls serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// SMTP with STARTTLS (port 25 style).
    #[arg(long, value_name = "ADDR")]
    pub smtp: Option<SocketAddr>,
    /// Message submission with STARTTLS and AUTH (port 587 style).
    #[arg(long, value_name = "ADDR")]
    pub submission: Option<SocketAddr>,
    /// IMAP with STARTTLS (port 143 style).
    #[arg(long, value_name = "ADDR")]
    pub imap: Option<SocketAddr>,
    /// POP3 with STLS (port 110 style).
    #[arg(long, value_name = "ADDR")]
    pub pop3: Option<SocketAddr>,
    /// Submission over implicit TLS (port 465 style).
    #[arg(long, value_name = "ADDR")]
    pub smtps: Option<SocketAddr>,
    /// IMAP over implicit TLS (port 993 style).
    #[arg(long, value_name = "ADDR")]
    pub imaps: Option<SocketAddr>,
    /// POP3 over implicit TLS (port 995 style).
    #[arg(long, value_name = "ADDR")]
    pub pop3s: Option<SocketAddr>,
    /// Certificate chain, PEM (with --key).
    #[arg(long, requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key, PEM (with --cert).
    #[arg(long, requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Without --cert: write the generated CA certificate here.
    #[arg(long, value_name = "FILE")]
    pub ca_out: Option<PathBuf>,
    /// Ask every client for a certificate and verify it against these CA certificates, PEM. Optional for the client; one that presents a verified certificate is offered SASL EXTERNAL (RFC 4422 Appendix A), mapped to the test account when the certificate names --user.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Refuse everything but the negotiation before TLS.
    #[arg(long)]
    pub require_tls: bool,
    /// Test account user name.
    #[arg(long, default_value = "alice", value_name = "NAME")]
    pub user: String,
    /// Test account password.
    #[arg(long, default_value = "secret", value_name = "PASSWORD")]
    pub password: String,
    /// Exit after this many connections in total (for tests).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// DELIBERATELY BROKEN server for testing checkers such as `starttls probe` (repeatable; see serve/broken.rs). Loopback only.
    #[arg(long, value_enum, value_name = "MODE")]
    pub broken: Vec<broken::Broken>,
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Smtp,
    Submission,
    Imap,
    Pop3,
    Smtps,
    Imaps,
    Pop3s,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Smtp => "smtp",
            Kind::Submission => "submission",
            Kind::Imap => "imap",
            Kind::Pop3 => "pop3",
            Kind::Smtps => "smtps",
            Kind::Imaps => "imaps",
            Kind::Pop3s => "pop3s",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The in-memory test account.
pub(crate) struct Account {
    pub(crate) user: Vec<u8>,
    pub(crate) password: Vec<u8>,
}

/// Time allowed between two reads on a connection.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes one line to stdout and flushes it. Lines from concurrent
/// connections never interleave within a line.
fn say(line: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The log of one connection: every line starts with `[<kind> <peer>]`.
pub(crate) struct Log {
    prefix: String,
}

impl Log {
    fn new(kind: Kind, peer: SocketAddr) -> Log {
        Log {
            prefix: format!("[{kind} {peer}]"),
        }
    }

    /// One line about this connection.
    pub(crate) fn line(&self, text: impl fmt::Display) {
        say(format_args!("{} {text}", self.prefix));
    }

    /// A session event, with the trust level of the session when it was
    /// reported. Upgrade facts get their own wording; everything else is the
    /// event's `Debug`, which never shows credentials (they are `Secret`s).
    pub(crate) fn event(
        &self,
        trust: Trust,
        event: &dyn fmt::Debug,
        upgrade: Option<&UpgradeEvent>,
    ) {
        match upgrade {
            Some(UpgradeEvent::TlsEstablished(info)) => self.line(format_args!(
                "TLS {} {}",
                info.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "unknown-version".into()),
                info.cipher_suite.as_deref().unwrap_or("unknown-cipher")
            )),
            Some(UpgradeEvent::InjectionDiscarded { bytes }) => {
                self.line(format_args!("DISCARDED {bytes} bytes injected before TLS"))
            }
            _ => self.line(format_args!("({trust}) {event:?}")),
        }
    }
}

/// One connection's application: the driver hands it every event with the
/// session to answer on.
pub(crate) trait App: Send + 'static {
    /// The protocol's server session.
    type Session: Session + Send + 'static;
    /// Logs one event and acts on it.
    fn event(
        &mut self,
        session: &mut Self::Session,
        event: <Self::Session as Session>::Event,
        log: &Log,
    );
}

/// A fresh session and its application, ready to run on a connection.
pub(crate) trait Conn: Send {
    /// Runs the connection to its end.
    fn run(self: Box<Self>, sock: TcpStream, log: Log) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct Connection<A: App> {
    session: A::Session,
    app: A,
}

impl<A: App> Conn for Connection<A> {
    fn run(self: Box<Self>, sock: TcpStream, log: Log) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Connection { session, app } = *self;
        // The driver (and the session in it) lives on the heap once; the
        // task's future holds a pointer to it.
        let driver =
            Box::new(Driver::new(session, sock).with_timeouts(Timeouts::all(READ_TIMEOUT)));
        Box::pin(connection(driver, log, app))
    }
}

/// Boxes a session and its application for a listener.
fn conn<A: App>((session, app): (A::Session, A)) -> Box<dyn Conn> {
    Box::new(Connection { session, app })
}

/// Makes a fresh connection state for a listener.
type Factory = Arc<dyn Fn() -> Result<Box<dyn Conn>, ConfigError> + Send + Sync>;

impl ServeArgs {
    fn listeners(&self) -> Vec<(Kind, SocketAddr)> {
        [
            (Kind::Smtp, self.smtp),
            (Kind::Submission, self.submission),
            (Kind::Imap, self.imap),
            (Kind::Pop3, self.pop3),
            (Kind::Smtps, self.smtps),
            (Kind::Imaps, self.imaps),
            (Kind::Pop3s, self.pop3s),
        ]
        .into_iter()
        .filter_map(|(k, a)| a.map(|a| (k, a)))
        .collect()
    }
}

/// Runs the server.
pub fn run(args: ServeArgs) -> ExitCode {
    let listeners = args.listeners();
    if listeners.is_empty() {
        eprintln!(
            "starttls serve: no listener given; use one or more of --smtp, --submission, \
             --imap, --pop3, --smtps, --imaps, --pop3s ADDR (e.g. --imap 127.0.0.1:1143)"
        );
        return ExitCode::from(2);
    }
    for (kind, addr) in &listeners {
        if !addr.ip().is_loopback() {
            eprintln!(
                "starttls serve: --{kind} {addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
            );
            return ExitCode::from(2);
        }
    }
    if !args.broken.is_empty() {
        return broken::run(&args, listeners);
    }
    let tls = match tls_config(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("starttls serve: {e}");
            return ExitCode::from(2);
        }
    };
    let account = Arc::new(Account {
        user: args.user.clone().into_bytes(),
        password: args.password.clone().into_bytes(),
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starttls serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(listeners, &args, tls, account));
    // Connections still open (beyond --max-connections) are dropped here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn serve(
    listeners: Vec<(Kind, SocketAddr)>,
    args: &ServeArgs,
    tls: Arc<rustls::ServerConfig>,
    account: Arc<Account>,
) -> ExitCode {
    let mut bound = Vec::new();
    for (kind, addr) in listeners {
        match listen(addr) {
            Ok(l) => bound.push((kind, l)),
            Err(e) => {
                eprintln!("starttls serve: --{kind} {addr}: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<()>();
    let accepted = Arc::new(AtomicUsize::new(0));
    for (kind, listener) in bound {
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let factory = match factory(kind, args, &tls, &account) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("starttls serve: --{kind}: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        };
        say(format_args!("listening {kind} {local}"));
        tokio::spawn(accept_loop(
            kind,
            listener,
            factory,
            args.max_connections,
            Arc::clone(&accepted),
            closed_tx.clone(),
        ));
    }
    drop(closed_tx);
    match args.max_connections {
        Some(max) => {
            let mut closed = 0;
            while closed < max {
                if closed_rx.recv().await.is_none() {
                    break;
                }
                closed += 1;
            }
            say(format_args!("{closed} connection(s) served; exiting"));
            ExitCode::SUCCESS
        }
        None => {
            // Accept loops run until the process is killed.
            std::future::pending::<()>().await;
            ExitCode::SUCCESS
        }
    }
}

async fn accept_loop(
    kind: Kind,
    listener: TcpListener,
    factory: Factory,
    max: Option<usize>,
    accepted: Arc<AtomicUsize>,
    closed: mpsc::UnboundedSender<()>,
) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                say(format_args!("[{kind}] accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if max.is_some_and(|m| accepted.fetch_add(1, Ordering::SeqCst) >= m) {
            // Over the limit: the process is about to exit.
            drop(sock);
            return;
        }
        let log = Log::new(kind, peer);
        let closed = closed.clone();
        let factory = Arc::clone(&factory);
        tokio::spawn(async move {
            match factory() {
                Ok(conn) => conn.run(sock, log).await,
                Err(e) => log.line(format_args!("failed: configuration: {e}")),
            }
            let _ = closed.send(());
        });
    }
}

/// A listening socket with a deep accept queue: the server speaks first, so
/// a client whose connection the kernel dropped from a full queue just waits
/// (tokio's default backlog of 128 loses connections in bursts of a few
/// hundred; the kernel caps this at `net.core.somaxconn`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// One connection on the tokio driver: it writes what the session queued,
/// reads, feeds, turns EOF and silence into the session's own calls; the
/// application answers the events. An idle connection holds its session and
/// nothing else (no read buffer: the driver reads into the stack).
async fn connection<A: App>(mut driver: Box<Driver<A::Session, TcpStream>>, log: Log, mut app: A) {
    log.line("connected");
    loop {
        match driver.next_event().await {
            Ok(Some(event)) => app.event(driver.session_mut(), event, &log),
            Ok(None) => break,
            Err(e) => {
                log.line(format_args!("failed: {}", failure(&e)));
                break;
            }
        }
    }
    let _ = driver.shutdown().await;
    log.line("closed");
}

/// How a connection failed, in the words the log has always used.
fn failure(e: &starttls_io::Error) -> String {
    match e {
        starttls_io::Error::Session(starttls::Error::Timeout { .. }) => {
            format!("no input for {} s", READ_TIMEOUT.as_secs())
        }
        starttls_io::Error::Session(e) => e.to_string(),
        starttls_io::Error::Io(e) => format!("I/O: {e}"),
        starttls_io::Error::WriteTimeout => {
            format!("write: no progress for {} s", READ_TIMEOUT.as_secs())
        }
        other => other.to_string(),
    }
}

fn factory(
    kind: Kind,
    args: &ServeArgs,
    tls: &Arc<rustls::ServerConfig>,
    account: &Arc<Account>,
) -> Result<Factory, ConfigError> {
    let tls = ServerTls::Rustls(Arc::clone(tls));
    let account = Arc::clone(account);
    Ok(match kind {
        Kind::Smtp | Kind::Submission | Kind::Smtps => {
            let config = smtp::config(kind, tls, args.require_tls);
            // Fail at start, not at the first connection.
            starttls::smtp::ServerSession::new(Arc::clone(&config))?;
            let submission = kind != Kind::Smtp;
            Arc::new(move || {
                smtp::Conn::new(Arc::clone(&config), submission, Arc::clone(&account)).map(conn)
            })
        }
        Kind::Imap | Kind::Imaps => {
            let config = imap::config(kind == Kind::Imaps, tls, args.require_tls);
            starttls::imap::ServerSession::new(Arc::clone(&config))?;
            Arc::new(move || imap::Conn::new(Arc::clone(&config), Arc::clone(&account)).map(conn))
        }
        Kind::Pop3 | Kind::Pop3s => {
            let config = pop3::config(kind == Kind::Pop3s, tls, args.require_tls);
            starttls::pop3::ServerSession::new(Arc::clone(&config))?;
            Arc::new(move || pop3::Conn::new(Arc::clone(&config), Arc::clone(&account)).map(conn))
        }
    })
}

/// The server's rustls configuration: `--cert`/`--key`, or a fresh CA and a
/// leaf for `localhost`, 127.0.0.1 and ::1 (the CA written to `--ca-out`).
fn tls_config(args: &ServeArgs) -> Result<Arc<rustls::ServerConfig>, String> {
    let (chain, key) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            if args.ca_out.is_some() {
                eprintln!("starttls serve: --ca-out ignored: --cert and --key were given");
            }
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("--cert {}: no certificate found", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--key {}: {e}", key.display()))?;
            (chain, key)
        }
        (None, None) => {
            let (ca_pem, leaf, key) =
                generate().map_err(|e| format!("cannot generate certificates: {e}"))?;
            if let Some(path) = &args.ca_out {
                std::fs::write(path, ca_pem)
                    .map_err(|e| format!("--ca-out {}: {e}", path.display()))?;
                eprintln!(
                    "starttls serve: wrote the CA certificate to {}",
                    path.display()
                );
            }
            (vec![leaf], key)
        }
        _ => return Err("--cert and --key go together".into()),
    };
    let builder = rustls::ServerConfig::builder();
    let builder = match &args.client_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--client-ca {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--client-ca {}: no certificate found",
                    path.display()
                ));
            }
            let n = certs.len();
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--client-ca {}: {e}", path.display()))?;
            }
            // Requested and verified, but optional: password logins keep
            // working without one; only EXTERNAL needs it.
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("--client-ca {}: {e}", path.display()))?;
            eprintln!(
                "starttls serve: client certificates requested, verified against {n} CA(s) from {}",
                path.display()
            );
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map(Arc::new)
        .map_err(|e| format!("certificate and key: {e}"))
}

/// A throwaway CA (its PEM) and a leaf it signed for `localhost`,
/// 127.0.0.1 and ::1, with the leaf's key. rustls refuses a CA certificate
/// used directly as a server certificate, hence two.
fn generate() -> Result<(String, CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "starttls serve throwaway CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((ca.pem(), leaf.der().clone(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task holds a pointer to its boxed driver, not the
    /// session (3.6 KiB per SMTP connection when the future held the
    /// driver and the session by value, several times over).
    #[test]
    fn a_connection_task_holds_no_session() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = l.local_addr().expect("addr");
            let args = ServeArgs {
                smtp: None,
                submission: None,
                imap: None,
                pop3: None,
                smtps: None,
                imaps: None,
                pop3s: None,
                cert: None,
                key: None,
                ca_out: None,
                client_ca: None,
                require_tls: false,
                user: "alice".into(),
                password: "secret".into(),
                max_connections: None,
                broken: Vec::new(),
            };
            let tls = tls_config(&args).expect("tls");
            let account = Arc::new(Account {
                user: b"alice".to_vec(),
                password: b"secret".to_vec(),
            });
            let sizes = [
                (Kind::Smtp, size_of::<starttls::smtp::ServerSession>()),
                (Kind::Imap, size_of::<starttls::imap::ServerSession>()),
                (Kind::Pop3, size_of::<starttls::pop3::ServerSession>()),
            ];
            for (kind, session) in sizes {
                let make = factory(kind, &args, &tls, &account).expect("factory");
                let sock = TcpStream::connect(addr).await.expect("connect");
                let task = make().expect("conn").run(sock, Log::new(kind, addr));
                let task = size_of_val(&*task);
                assert!(
                    task < session,
                    "{kind}: the task's future is {task} bytes, the session {session}"
                );
            }
        });
    }
}
