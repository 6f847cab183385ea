//! `starttls connect`: the reference client.
//!
//! Blocking `std::net`, one connection. The library's client session does
//! the negotiation by itself (greeting, capabilities, upgrade, capabilities
//! again, or implicit TLS); this command then logs in with
//! `--user`/`--password` (SMTP `AUTH PLAIN`, IMAP `LOGIN`, POP3 `USER`/`PASS`)
//! or, with `--client-cert`/`--client-key` and `--sasl external`, with the TLS
//! client certificate (SASL `EXTERNAL`, RFC 4422 Appendix A), and says
//! goodbye (`QUIT`/`LOGOUT`), printing a transcript on stdout:
//!
//! * `S: [<trust>] <line>` for every text the peer sent that the session
//!   reports, with the trust level of the channel it came on (peer text is
//!   always shown [escaped](starttls::Escaped), here and below);
//! * `C: <line>` for what we sent in cleartext (the bytes themselves), and
//!   `C: [tls] <line>` for what we sent over TLS (rendered, passwords
//!   masked), including the commands the session sends by itself;
//! * `CAPABILITIES [<trust>]: ...` for each capability list (IMAP's as
//!   the server wrote it; SMTP's and POP3's entries separated by ` | `);
//! * `TLS: <version> <cipher>` when TLS is established;
//! * `# ...` notes, and finally `OK`, or `ERROR: <message>` (with the
//!   error's `Debug` on the next line for a session failure).
//!
//! Exit status: 0 on success, 1 when the session or the login failed, 2 for
//! usage errors and when the connection cannot be made.

mod imap;
mod pop3;
mod smtp;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use starttls::{ClientTls, Error, Escaped, Session, Timeouts, TlsErrorKind, TlsPolicy, Trust};
use starttls_io::blocking::{Driver, Socket};
use starttls_io::Error as DriverError;

/// Arguments of `starttls connect`.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// `smtp://`, `smtps://`, `submission://`, `imap://`, `imaps://`, `pop3://` or `pop3s://` URL, as curl writes them.
    pub url: String,
    /// CA certificate(s) to trust, PEM (default: none, so only with --ca).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name the certificate must match (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// `required` (default) or `opportunistic`; implicit TLS for smtps/imaps/pop3s.
    #[arg(long, default_value = "required", value_name = "POLICY")]
    pub policy: String,
    /// Log in with this user (IMAP LOGIN, POP3 USER/PASS, SMTP AUTH PLAIN) after the upgrade.
    #[arg(long, requires = "password", value_name = "NAME")]
    pub user: Option<String>,
    /// Password for --user.
    #[arg(long, requires = "user", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Client certificate chain to present when the server asks for one, PEM (with --client-key).
    #[arg(long, requires = "client_key", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// Private key of --client-cert, PEM.
    #[arg(long, requires = "client_cert", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Log in with this SASL mechanism instead of a password: `external` (the TLS client certificate, RFC 4422 Appendix A).
    #[arg(long, value_name = "MECH", conflicts_with_all = ["user", "password"])]
    pub sasl: Option<String>,
    /// With --sasl external: the authorization identity to ask for (default: the one the certificate names).
    #[arg(long, requires = "sasl", value_name = "NAME")]
    pub authzid: Option<String>,
    /// Seconds the whole session may take, connecting included; a server
    /// that keeps talking without ever finishing a step is cut off too.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub timeout: u64,
}

/// `--sasl external`: log in with the TLS client certificate, asking to act
/// as `authzid` (`None`: whoever the certificate names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct External {
    pub(crate) authzid: Option<String>,
}

/// Time allowed for the connection to be made, and for each read.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The protocol a URL scheme speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Smtp,
    Imap,
    Pop3,
}

/// What a URL says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) scheme: String,
    pub(crate) proto: Proto,
    pub(crate) implicit: bool,
    /// Without brackets for IPv6.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `user[:password]@` from the URL, percent-decoded.
    pub(crate) user: Option<String>,
    password: Option<String>,
}

/// `%XX` escapes decoded; `None` if the result is not UTF-8 or an escape is
/// broken.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `scheme://[user[:password]@]host[:port][/path][?query][#fragment]`;
/// the path, query and fragment are ignored.
pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected SCHEME://HOST[:PORT], e.g. imap://127.0.0.1:1143")?;
    let scheme = scheme.to_ascii_lowercase();
    let (proto, implicit, default_port) = match scheme.as_str() {
        "smtp" => (Proto::Smtp, false, 25),
        "submission" => (Proto::Smtp, false, 587),
        "smtps" => (Proto::Smtp, true, 465),
        "imap" => (Proto::Imap, false, 143),
        "imaps" => (Proto::Imap, true, 993),
        "pop3" => (Proto::Pop3, false, 110),
        "pop3s" => (Proto::Pop3, true, 995),
        other => {
            return Err(format!(
                "unknown scheme {other:?}: use smtp, submission, smtps, imap, imaps, pop3 or pop3s"
            ))
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or("unclosed [ in the host: write IPv6 addresses as [::1]")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("invalid IPv6 address [{v6}]"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(format!("unexpected {p:?} after [{v6}]"))?,
            ),
        };
        (v6.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h.to_string(), Some(p)),
            Some(_) => {
                return Err("write IPv6 addresses in brackets, e.g. imap://[::1]:1143".into())
            }
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("invalid port {p:?}")),
        },
    };
    let (mut user, mut password) = (None, None);
    if let Some(info) = userinfo {
        let (u, p) = match info.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (info, None),
        };
        // curl's `user;AUTH=PLAIN` login options are not ours to follow.
        let u = u.split(';').next().unwrap_or_default();
        if !u.is_empty() {
            user = Some(percent_decode(u).ok_or("invalid %-escape in the URL's user")?);
        }
        if let Some(p) = p {
            password = Some(percent_decode(p).ok_or("invalid %-escape in the URL's password")?);
        }
    }
    Ok(Target {
        scheme,
        proto,
        implicit,
        host,
        port,
        user,
        password,
    })
}

/// A protocol client: the script on top of the session, which the driver
/// hands every event.
trait Client {
    /// The protocol's client session.
    type Session: Session;
    /// Prints one event and acts on it (sending the next command of the
    /// script).
    fn event(&mut self, session: &mut Self::Session, event: <Self::Session as Session>::Event);
    /// Whether what we send now are TLS records (not printable).
    fn tls_on_wire(&self) -> bool;
    /// Why the script failed (a refused login), if it did.
    fn failure(&self) -> Option<&str>;
}

/// The socket, printing what we send in cleartext (`C:` lines, whole lines
/// only) and counting the encrypted bytes since the last read.
struct Wire {
    sock: TcpStream,
    /// Set from the client after each event.
    tls: Cell<bool>,
    /// Cleartext written and not printed yet (an unfinished line).
    pending: Vec<u8>,
    encrypted: usize,
    /// `--timeout`: the whole session ends by then, however the server
    /// keeps it going (an endless listing resets no per-read timer here).
    deadline: Instant,
}

impl Wire {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "the session did not finish within --timeout; the server keeps it going",
            ));
        }
        Ok(left)
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.encrypted = 0;
        let left = self.left()?;
        // Never wait past the session deadline, whatever the driver asked.
        let asked = self.sock.read_timeout()?;
        if asked.is_none_or(|t| t > left) {
            self.sock.set_read_timeout(Some(left))?;
        }
        self.sock.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.sock.write(buf)?;
        let sent = buf.get(..n).unwrap_or(buf);
        if self.tls.get() {
            self.encrypted += n;
        } else {
            self.pending.extend_from_slice(sent);
            if let Some(end) = self.pending.windows(2).rposition(|w| w == b"\r\n") {
                let lines: Vec<u8> = self.pending.drain(..end + 2).collect();
                print_sent(&lines);
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

impl Socket for Wire {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        let left = self.left()?;
        self.sock
            .set_read_timeout(Some(timeout.map_or(left, |t| t.min(left))))
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }
    fn shutdown_write(&mut self) -> std::io::Result<()> {
        Socket::shutdown_write(&mut self.sock)
    }
}

/// Prints what we send in cleartext, one `C:` line per line.
fn print_sent(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for line in text.split_inclusive("\r\n") {
        println!("C: {}", line.trim_end_matches("\r\n"));
    }
}

/// Prints a peer text, one `S: [<trust>]` line per CRLF-terminated line,
/// [escaped](Escaped): control characters (a bare CR or LF too),
/// bidirectional controls and invalid UTF-8 show as visible escapes, so the
/// peer cannot write to the terminal.
fn print_received(trust: Trust, text: &[u8]) {
    for line in Escaped::new(text).lines() {
        println!("S: [{trust}] {line}");
    }
}

/// Prints a command we sent over TLS, as rendered by the caller.
fn print_tls_command(shown: &str) {
    println!("C: [tls] {shown}");
}

/// Prints `TLS: <version> <cipher>`.
fn print_tls(info: &starttls::TlsInfo) {
    println!(
        "TLS: {} {}",
        info.version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "unknown-version".into()),
        info.cipher_suite.as_deref().unwrap_or("unknown-cipher")
    );
}

/// Prints the `Ready` note.
fn print_ready(trust: Trust) {
    match trust {
        Trust::Tls => println!("# ready over TLS"),
        Trust::Cleartext => println!(
            "# ready in CLEARTEXT: the server offered no TLS and the policy is opportunistic; \
             anyone on the path can read and change this session"
        ),
    }
}

/// Runs the client.
pub fn run(args: ConnectArgs) -> ExitCode {
    match prepare(args) {
        Ok((target, setup)) => connect_and_drive(target, setup),
        Err(e) => {
            eprintln!("starttls connect: {e}");
            ExitCode::from(2)
        }
    }
}

/// Everything decided before connecting.
struct Setup {
    policy: TlsPolicy,
    tls: ClientTls,
    server_name: String,
    ca: Option<(PathBuf, usize)>,
    login: Option<(String, String)>,
    client_cert: Option<PathBuf>,
    external: Option<External>,
    timeout: Duration,
}

fn prepare(args: ConnectArgs) -> Result<(Target, Setup), String> {
    let target = parse_url(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    let policy = match args.policy.to_ascii_lowercase().as_str() {
        _ if target.implicit => TlsPolicy::Implicit,
        "required" => TlsPolicy::StartTlsRequired,
        "opportunistic" => TlsPolicy::Opportunistic,
        "cleartext" => TlsPolicy::Cleartext,
        other => {
            return Err(format!(
                "--policy {other:?}: use required, opportunistic or cleartext"
            ))
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut ca = None;
    if let Some(path) = &args.ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--ca {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("--ca {}: no certificate found", path.display()));
        }
        let n = certs.len();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("--ca {}: {e}", path.display()))?;
        }
        ca = Some((path.clone(), n));
    }
    let server_name = args.server_name.unwrap_or_else(|| target.host.clone());
    let name = ServerName::try_from(server_name.clone())
        .map_err(|e| format!("--server-name {server_name:?}: {e}"))?;
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--client-cert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "--client-cert {}: no certificate found",
                    cert.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--client-key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--client-cert and --client-key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    let external = match args.sasl.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("external") => Some(External {
            authzid: args.authzid.clone(),
        }),
        Some(other) => return Err(format!("--sasl {other:?}: only external is supported")),
    };
    let tls = ClientTls::Rustls {
        config: Arc::new(config),
        server_name: name,
    };
    let login = match (args.user, args.password) {
        _ if external.is_some() => None,
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => match (&target.user, &target.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        },
        _ => return Err("--user and --password go together".into()),
    };
    Ok((
        target,
        Setup {
            policy,
            tls,
            server_name,
            ca,
            login,
            client_cert: args.client_cert,
            external,
            timeout: Duration::from_secs(args.timeout.max(1)),
        },
    ))
}

fn connect_and_drive(target: Target, setup: Setup) -> ExitCode {
    let upgrade = if target.proto == Proto::Pop3 {
        "STLS"
    } else {
        "STARTTLS"
    };
    let mode = match setup.policy {
        TlsPolicy::Implicit => "implicit TLS".to_string(),
        TlsPolicy::Opportunistic => format!("{upgrade} if offered (opportunistic)"),
        _ => format!("{upgrade} required"),
    };
    let display = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    println!(
        "# {} {display}: {mode}; certificate name {}; trusted CAs: {}",
        target.scheme,
        setup.server_name,
        match &setup.ca {
            Some((path, n)) => format!("{n} from {}", path.display()),
            None => "none (no --ca given)".into(),
        }
    );
    if let Some(path) = &setup.client_cert {
        println!(
            "# client certificate from {}, presented if the server asks",
            path.display()
        );
    }
    let no_ca = setup.ca.is_none();
    let (policy, tls, login, external) = (setup.policy, setup.tls, setup.login, setup.external);
    match target.proto {
        Proto::Smtp => start(
            smtp::Smtp::new(policy, tls, login, external),
            &target,
            &display,
            no_ca,
            setup.timeout,
        ),
        Proto::Imap => start(
            imap::Imap::new(policy, tls, login, external),
            &target,
            &display,
            no_ca,
            setup.timeout,
        ),
        Proto::Pop3 => start(
            pop3::Pop3::new(policy, tls, login, external),
            &target,
            &display,
            no_ca,
            setup.timeout,
        ),
    }
}

/// Connects, then drives the session made beforehand.
fn start<C: Client>(
    made: Result<(C::Session, C), String>,
    target: &Target,
    display: &str,
    no_ca: bool,
    timeout: Duration,
) -> ExitCode {
    let (session, client) = match made {
        Ok(x) => x,
        Err(e) => {
            eprintln!("starttls connect: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = Instant::now() + timeout;
    let sock = match connect(&target.host, target.port, timeout) {
        Ok(s) => s,
        Err(e) => {
            println!("ERROR: cannot connect to {display}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("# connected to {display}");
    drive(sock, session, client, no_ca, deadline)
}

/// Connects to the first address of `host` that accepts.
fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout.min(TIMEOUT)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address found")))
}

/// The session on the blocking driver (docs/design.md, Drivers), with the
/// transcript.
fn drive<C: Client>(
    sock: TcpStream,
    session: C::Session,
    mut client: C,
    no_ca: bool,
    deadline: Instant,
) -> ExitCode {
    let wire = Wire {
        sock,
        tls: Cell::new(client.tls_on_wire()),
        pending: Vec::new(),
        encrypted: 0,
        deadline,
    };
    let mut driver = Driver::new(session, wire).with_timeouts(Timeouts::all(TIMEOUT));
    let failed = loop {
        match driver.next_event() {
            Ok(Some(event)) => {
                client.event(driver.session_mut(), event);
                driver.get_ref().tls.set(client.tls_on_wire());
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let encrypted = driver.get_ref().encrypted;
    let _ = driver.close();
    match failed {
        None => match client.failure() {
            Some(f) => {
                println!("ERROR: {f}");
                ExitCode::FAILURE
            }
            None => {
                println!("OK");
                ExitCode::SUCCESS
            }
        },
        Some(e) => {
            // The driver wrote what the session still queued (a QUIT or
            // LOGOUT, a TLS alert) before it returned the error.
            if encrypted > 0 {
                println!("# sent the {encrypted} bytes the session still had queued (encrypted)");
            }
            match e {
                DriverError::Session(Error::Timeout { .. }) => println!(
                    "ERROR: no answer from the server within {} s",
                    TIMEOUT.as_secs()
                ),
                DriverError::Session(e) => {
                    let hint = match &e {
                        Error::Tls(t) if no_ca && t.kind == TlsErrorKind::Certificate => {
                            " (no --ca was given, so no certificate authority is trusted: pass --ca FILE)"
                        }
                        _ => "",
                    };
                    println!("ERROR: {e}{hint}");
                    println!("       {e:?}");
                }
                e => println!("ERROR: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("imap://127.0.0.1:1143").unwrap();
        assert_eq!(
            (t.proto, t.implicit, t.host.as_str(), t.port),
            (Proto::Imap, false, "127.0.0.1", 1143)
        );
        let t = parse_url("SMTPS://[::1]/ignored?x#y").unwrap();
        assert_eq!(
            (t.proto, t.implicit, t.host.as_str(), t.port),
            (Proto::Smtp, true, "::1", 465)
        );
        let t = parse_url("submission://al%40ice:p%3Ass@mail.example.org").unwrap();
        assert_eq!(t.port, 587);
        assert_eq!(t.user.as_deref(), Some("al@ice"));
        assert_eq!(t.password.as_deref(), Some("p:ss"));
        assert_eq!(parse_url("pop3s://[::1]:9950").unwrap().port, 9950);
        assert_eq!(parse_url("pop3://h").unwrap().port, 110);
        for bad in [
            "http://x",
            "imap:/x",
            "imap://",
            "imap://::1",
            "imap://[::1",
            "imap://[zz]",
            "imap://h:0",
            "imap://h:99999",
            "imap://h:x",
            "imap://a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
