//! `starttls serve --broken MODE`: a deliberately broken server, for
//! testing `starttls probe` (and any other checker) on loopback.
//!
//! The reference server runs the library's sessions, which cannot be made
//! to misbehave; this is a small hand-written SMTP/IMAP/POP3 server of its
//! own (blocking `std::net`, a thread per connection) that behaves soundly
//! except in the modes asked for:
//!
//! * `inject`: runs commands pipelined after STARTTLS/STLS inside TLS
//!   (CVE-2011-0411): the cleartext buffer survives the upgrade, and it
//!   reads greedily before answering the upgrade;
//! * `keep-state`: keeps state across TLS: the capability list from before
//!   (STARTTLS included), the SMTP envelope, and accepts a second upgrade;
//! * `auth-before-tls`: offers and starts authentication before TLS (SMTP
//!   `AUTH` answered 334, IMAP without `LOGINDISABLED` and `AUTHENTICATE`
//!   continued, POP3 `USER` accepted);
//! * `no-starttls`: never offers the upgrade;
//! * `greeting-421`: turns every connection away (`421`, `* BYE`, `-ERR`);
//! * `silent`: never greets;
//! * `crash-long-line`, `crash-nul`: the whole server exits (as if it had
//!   crashed) on a line over 4096 octets, or on a line with a NUL octet;
//! * `huge-literal`: IMAP invites any synchronizing literal, even 4 GiB
//!   before login (`+`), then hangs up;
//! * certificates: `untrusted-cert` (self-signed leaf, not by the CA written
//!   to `--ca-out`), `wrong-name-cert` (for `wrong.example` only),
//!   `expired-cert`, `expiring-cert` (5 days left).
//!
//! Loopback only, like `serve`. It never stores or relays anything: `DATA`
//! is refused, logins always fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use starttls::rustls;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{say, Kind, ServeArgs};

/// A way to be broken.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Run commands pipelined after STARTTLS inside TLS (CVE-2011-0411).
    Inject,
    /// Keep capabilities, STARTTLS and the SMTP envelope across TLS; accept a second STARTTLS.
    KeepState,
    /// Offer and start authentication before TLS.
    AuthBeforeTls,
    /// Never offer STARTTLS/STLS.
    NoStarttls,
    /// Turn every connection away with 421 / BYE / -ERR.
    #[value(name = "greeting-421")]
    Greeting421,
    /// Never send a greeting.
    Silent,
    /// A self-signed certificate (not from the CA written to --ca-out).
    UntrustedCert,
    /// A certificate for wrong.example only.
    WrongNameCert,
    /// A certificate that expired in 2021.
    ExpiredCert,
    /// A certificate that expires in 5 days.
    ExpiringCert,
    /// Exit (crash) on a line over 4096 octets.
    CrashLongLine,
    /// Exit (crash) on a line with a NUL octet.
    CrashNul,
    /// IMAP: invite any literal, even 4 GiB before login.
    HugeLiteral,
}

#[derive(Clone, Copy, Default)]
struct Modes {
    inject: bool,
    keep_state: bool,
    auth_before_tls: bool,
    no_starttls: bool,
    greeting_421: bool,
    silent: bool,
    crash_long_line: bool,
    crash_nul: bool,
    huge_literal: bool,
}

impl Modes {
    fn from(list: &[Broken]) -> Modes {
        let has = |b| list.contains(&b);
        Modes {
            inject: has(Broken::Inject),
            keep_state: has(Broken::KeepState),
            auth_before_tls: has(Broken::AuthBeforeTls),
            no_starttls: has(Broken::NoStarttls),
            greeting_421: has(Broken::Greeting421),
            silent: has(Broken::Silent),
            crash_long_line: has(Broken::CrashLongLine),
            crash_nul: has(Broken::CrashNul),
            huge_literal: has(Broken::HugeLiteral),
        }
    }
}

/// Runs the broken server on `listeners` (already checked to be loopback).
pub(super) fn run(args: &ServeArgs, listeners: Vec<(Kind, SocketAddr)>) -> ExitCode {
    let modes = Modes::from(&args.broken);
    let (ca_pem, config) = match certificate(&args.broken) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("starttls serve: cannot generate certificates: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ca_out {
        if let Err(e) = std::fs::write(path, ca_pem) {
            eprintln!("starttls serve: --ca-out {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    eprintln!(
        "starttls serve: DELIBERATELY BROKEN ({:?}): for testing checkers on loopback only",
        args.broken
    );
    let (closed_tx, closed_rx) = mpsc::channel::<()>();
    for (kind, addr) in listeners {
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("starttls serve: --{kind} {addr}: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        say(format_args!("listening {kind} {local} (broken)"));
        let config = Arc::clone(&config);
        let closed = closed_tx.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                let closed = closed.clone();
                std::thread::spawn(move || {
                    let peer = sock
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "?".into());
                    say(format_args!("[{kind} {peer}] connected (broken)"));
                    let mut c = Conn::new(kind, modes, sock, config);
                    let end = c.serve();
                    say(format_args!("[{kind} {peer}] closed: {end}"));
                    let _ = closed.send(());
                });
            }
        });
    }
    drop(closed_tx);
    let mut served = 0;
    loop {
        if args.max_connections.is_some_and(|m| served >= m) {
            say(format_args!("{served} connection(s) served; exiting"));
            return ExitCode::SUCCESS;
        }
        if closed_rx.recv().is_err() {
            return ExitCode::SUCCESS;
        }
        served += 1;
    }
}

/// The CA's PEM and a server configuration with the (maybe bad) leaf.
fn certificate(list: &[Broken]) -> Result<(String, Arc<rustls::ServerConfig>), String> {
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "starttls serve --broken CA");
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let names = if list.contains(&Broken::WrongNameCert) {
        vec!["wrong.example".to_string()]
    } else {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    };
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(names).map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "starttls serve --broken leaf");
    if list.contains(&Broken::ExpiredCert) {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    } else if list.contains(&Broken::ExpiringCert) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (y, m, d) = civil_from_days(now.div_euclid(86_400) + 5);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let leaf = if list.contains(&Broken::UntrustedCert) {
        params.self_signed(&key).map_err(e)?
    } else {
        params.signed_by(&key, &issuer).map_err(e)?
    };
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, der)
        .map_err(|e| e.to_string())?;
    Ok((ca.pem(), Arc::new(config)))
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    ((y + i64::from(m <= 2)) as i32, m as u8, d as u8)
}

/// One connection of the broken server.
struct Conn {
    kind: Kind,
    modes: Modes,
    sock: TcpStream,
    tls: Option<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>,
    config: Arc<rustls::ServerConfig>,
    buf: Vec<u8>,
    /// Capabilities as listed before TLS (for keep-state).
    cached: Option<Vec<String>>,
    mail: Option<String>,
}

const IDLE: Duration = Duration::from_secs(60);

impl Conn {
    fn new(kind: Kind, modes: Modes, sock: TcpStream, config: Arc<rustls::ServerConfig>) -> Conn {
        let _ = sock.set_read_timeout(Some(IDLE));
        Conn {
            kind,
            modes,
            sock,
            tls: None,
            config,
            buf: Vec::new(),
            cached: None,
            mail: None,
        }
    }

    fn write(&mut self, text: &str) -> Result<(), String> {
        let r = match &mut self.tls {
            Some(t) => t.write_all(text.as_bytes()).and_then(|_| t.flush()),
            None => self.sock.write_all(text.as_bytes()),
        };
        r.map_err(|e| format!("write: {e}"))
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        let r = match &mut self.tls {
            Some(t) => t.read(&mut chunk),
            None => self.sock.read(&mut chunk),
        };
        match r {
            Ok(0) => Err("end of stream".into()),
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                if self.buf.len() > 1 << 20 {
                    return Err("too much input".into());
                }
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=nl).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                self.crash_on(&l);
                return Ok(String::from_utf8_lossy(&l).into_owned());
            }
            self.fill()?;
        }
    }

    /// `crash-long-line` / `crash-nul`: the whole process goes away, as a
    /// server that crashed would, so no later connection is served.
    fn crash_on(&self, line: &[u8]) {
        let why = if self.modes.crash_long_line && line.len() > 4096 {
            Some(format!("a {}-octet line", line.len()))
        } else if self.modes.crash_nul && line.contains(&0) {
            Some("a NUL octet".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            say(format_args!(
                "[{}] crashing (deliberately) on {why}",
                self.kind
            ));
            std::process::exit(70);
        }
    }

    fn exact(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            self.fill()?;
        }
        self.buf.drain(..n);
        Ok(())
    }

    fn implicit(&self) -> bool {
        matches!(self.kind, Kind::Smtps | Kind::Imaps | Kind::Pop3s)
    }

    /// After a positive upgrade reply: the handshake. A sound server drops
    /// what was buffered in cleartext; `inject` keeps it.
    fn handshake(&mut self) -> Result<(), String> {
        if !self.modes.inject {
            self.buf.clear();
        }
        let conn =
            rustls::ServerConnection::new(Arc::clone(&self.config)).map_err(|e| e.to_string())?;
        let sock = self.sock.try_clone().map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        self.tls = Some(tls);
        Ok(())
    }

    /// `inject`: read what is already on its way before answering the
    /// upgrade, as a busy server would.
    fn greedy(&mut self) {
        if self.modes.inject && self.tls.is_none() {
            std::thread::sleep(Duration::from_millis(150));
            let _ = self.sock.set_nonblocking(true);
            let mut chunk = [0u8; 8192];
            while let Ok(n) = self.sock.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
            let _ = self.sock.set_nonblocking(false);
        }
    }

    fn serve(&mut self) -> String {
        if self.modes.silent {
            let mut sink = [0u8; 1024];
            while matches!(self.sock.read(&mut sink), Ok(n) if n > 0) {}
            return "silent".into();
        }
        if self.implicit() {
            if let Err(e) = self.handshake() {
                return e;
            }
        }
        let r = match self.kind {
            Kind::Smtp | Kind::Submission | Kind::Smtps => self.smtp(),
            Kind::Imap | Kind::Imaps => self.imap(),
            Kind::Pop3 | Kind::Pop3s => self.pop3(),
        };
        match r {
            Ok(()) => "done".into(),
            Err(e) => e,
        }
    }

    /// Whether the upgrade is offered now.
    fn offer_upgrade(&self) -> bool {
        !self.modes.no_starttls && !self.implicit() && self.tls.is_none()
    }

    /// Whether credentials are welcome now.
    fn auth_open(&self) -> bool {
        self.tls.is_some() || self.modes.auth_before_tls
    }

    /// The list to show: with keep-state, the cleartext one again.
    fn caps(&mut self, fresh: Vec<String>) -> Vec<String> {
        if self.tls.is_none() {
            self.cached = Some(fresh.clone());
            fresh
        } else if self.modes.keep_state {
            self.cached.clone().unwrap_or(fresh)
        } else {
            fresh
        }
    }

    fn upgrade_allowed(&self) -> bool {
        !self.modes.no_starttls && !self.implicit() && (self.tls.is_none() || self.modes.keep_state)
    }

    fn smtp(&mut self) -> Result<(), String> {
        if self.modes.greeting_421 {
            return self.write("421 4.3.2 localhost Too busy, try again later\r\n");
        }
        self.write("220 localhost ESMTP starttls serve --broken\r\n")?;
        let submission = self.kind != Kind::Smtp;
        let mut sasl = false;
        loop {
            let line = self.line()?;
            if sasl {
                sasl = false;
                self.write(if line == "*" {
                    "501 5.0.0 Authentication cancelled\r\n"
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n"
                })?;
                continue;
            }
            let upper = line.to_ascii_uppercase();
            let verb = upper.split(' ').next().unwrap_or_default().to_string();
            match verb.as_str() {
                "EHLO" | "HELO" => {
                    let mut fresh = vec!["PIPELINING".to_string(), "SIZE 10240000".into()];
                    if self.offer_upgrade() {
                        fresh.push("STARTTLS".into());
                    }
                    if self.auth_open() {
                        fresh.push("AUTH PLAIN LOGIN".into());
                    }
                    let caps = self.caps(fresh);
                    let mut out = String::from("250-localhost greets you\r\n");
                    for (i, c) in caps.iter().enumerate() {
                        let sep = if i + 1 == caps.len() { ' ' } else { '-' };
                        out.push_str(&format!("250{sep}{c}\r\n"));
                    }
                    self.write(&out)?;
                }
                "STARTTLS" => {
                    if !self.upgrade_allowed() {
                        self.write(if self.tls.is_some() {
                            "503 5.5.1 TLS already active\r\n"
                        } else {
                            "502 5.5.1 STARTTLS not available\r\n"
                        })?;
                        continue;
                    }
                    self.greedy();
                    self.write("220 2.0.0 Ready to start TLS\r\n")?;
                    if self.tls.is_some() {
                        // keep-state said yes to a second upgrade; a nested
                        // handshake is beyond this toy: stop here.
                        return Ok(());
                    }
                    if !self.modes.keep_state {
                        self.mail = None;
                    }
                    self.handshake()?;
                }
                "AUTH" => {
                    if !self.auth_open() {
                        self.write("530 5.7.0 Must issue a STARTTLS command first\r\n")?;
                    } else {
                        sasl = true;
                        self.write("334 \r\n")?;
                    }
                }
                "MAIL" => {
                    if submission && self.tls.is_none() {
                        self.write("530 5.7.0 Must issue a STARTTLS command first\r\n")?;
                    } else if self.mail.is_some() {
                        self.write("503 5.5.1 Nested MAIL command\r\n")?;
                    } else {
                        self.mail = Some(line.clone());
                        self.write("250 2.1.0 Ok\r\n")?;
                    }
                }
                "RCPT" => {
                    if self.mail.is_some() {
                        self.write("250 2.1.5 Ok\r\n")?;
                    } else {
                        self.write("503 5.5.1 Need MAIL command\r\n")?;
                    }
                }
                "DATA" | "BDAT" => self.write("554 5.3.2 This server never takes messages\r\n")?,
                "RSET" => {
                    self.mail = None;
                    self.write("250 2.0.0 Ok\r\n")?;
                }
                "NOOP" => self.write("250 2.0.0 Ok\r\n")?,
                "QUIT" => return self.write("221 2.0.0 Bye\r\n"),
                _ => {
                    let shown = starttls::Escaped::new(&line).to_string();
                    self.write(&format!(
                        "500 5.5.2 Error: command not recognized: {shown}\r\n"
                    ))?
                }
            }
        }
    }

    /// One IMAP command, literals read in (sync literals continued).
    fn imap_command(&mut self) -> Result<String, String> {
        let mut whole = self.line()?;
        let mut guard = 0;
        loop {
            let Ok(Some(h)) = starttls::imap::trailing_literal(whole.as_bytes()) else {
                return Ok(whole);
            };
            guard += 1;
            let n = usize::try_from(h.len).unwrap_or(usize::MAX);
            if self.modes.huge_literal && guard <= 16 && h.mode == starttls::imap::LiteralMode::Sync
            {
                // Invites it, then gives up rather than read 4 GiB.
                self.write("+ go ahead\r\n")?;
                if n > 64 * 1024 {
                    return Err("literal invited, too large to read".into());
                }
                self.exact(n)?;
                whole.push_str(" <literal> ");
                let rest = self.line()?;
                whole.push_str(&rest);
                continue;
            }
            if n > 64 * 1024 || guard > 16 {
                return Err("literal too large".into());
            }
            if h.mode == starttls::imap::LiteralMode::Sync {
                self.write("+ go ahead\r\n")?;
            }
            self.exact(n)?;
            whole.push_str(" <literal> ");
            let rest = self.line()?;
            whole.push_str(&rest);
        }
    }

    fn imap(&mut self) -> Result<(), String> {
        if self.modes.greeting_421 {
            return self.write("* BYE [UNAVAILABLE] Too busy, try again later\r\n");
        }
        self.write("* OK starttls serve --broken IMAP ready\r\n")?;
        let mut sasl: Option<String> = None;
        loop {
            let line = self.imap_command()?;
            if let Some(tag) = sasl.take() {
                self.write(&if line == "*" {
                    format!("{tag} BAD Authentication cancelled\r\n")
                } else {
                    format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
                })?;
                continue;
            }
            let mut words = line.splitn(3, ' ');
            let tag = words.next().unwrap_or("*").to_string();
            let cmd = words.next().unwrap_or_default().to_ascii_uppercase();
            match cmd.as_str() {
                "CAPABILITY" => {
                    let mut fresh = vec!["IMAP4rev1".to_string()];
                    if self.offer_upgrade() {
                        fresh.push("STARTTLS".into());
                    }
                    if self.auth_open() {
                        fresh.push("AUTH=PLAIN".into());
                    } else {
                        fresh.push("LOGINDISABLED".into());
                    }
                    let caps = self.caps(fresh);
                    self.write(&format!(
                        "* CAPABILITY {}\r\n{tag} OK CAPABILITY completed\r\n",
                        caps.join(" ")
                    ))?;
                }
                "STARTTLS" => {
                    if !self.upgrade_allowed() {
                        self.write(&format!("{tag} BAD STARTTLS not available now\r\n"))?;
                        continue;
                    }
                    self.greedy();
                    self.write(&format!("{tag} OK Begin TLS negotiation now\r\n"))?;
                    if self.tls.is_some() {
                        return Ok(());
                    }
                    self.handshake()?;
                }
                "AUTHENTICATE" | "LOGIN" => {
                    if !self.auth_open() {
                        self.write(&format!(
                            "{tag} NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
                        ))?;
                    } else if cmd == "AUTHENTICATE" {
                        sasl = Some(tag);
                        self.write("+ \r\n")?;
                    } else {
                        self.write(&format!(
                            "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
                        ))?;
                    }
                }
                "NOOP" => self.write(&format!("{tag} OK NOOP completed\r\n"))?,
                "LOGOUT" => {
                    return self.write(&format!(
                        "* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"
                    ))
                }
                "" => self.write("* BAD Missing command\r\n")?,
                _ => self.write(&format!("{tag} BAD Unknown command or not logged in\r\n"))?,
            }
        }
    }

    fn pop3(&mut self) -> Result<(), String> {
        if self.modes.greeting_421 {
            return self.write("-ERR [IN-USE] Too busy, try again later\r\n");
        }
        self.write("+OK starttls serve --broken POP3 ready\r\n")?;
        loop {
            let line = self.line()?;
            let upper = line.to_ascii_uppercase();
            let verb = upper.split(' ').next().unwrap_or_default().to_string();
            match verb.as_str() {
                "CAPA" => {
                    let mut fresh = vec!["TOP".to_string(), "UIDL".into()];
                    if self.offer_upgrade() {
                        fresh.push("STLS".into());
                    }
                    if self.auth_open() {
                        fresh.push("USER".into());
                    }
                    let caps = self.caps(fresh);
                    let mut out = String::from("+OK Capability list follows\r\n");
                    for c in caps {
                        out.push_str(&c);
                        out.push_str("\r\n");
                    }
                    out.push_str(".\r\n");
                    self.write(&out)?;
                }
                "STLS" => {
                    if !self.upgrade_allowed() {
                        self.write("-ERR STLS not available now\r\n")?;
                        continue;
                    }
                    self.greedy();
                    self.write("+OK Begin TLS negotiation\r\n")?;
                    if self.tls.is_some() {
                        return Ok(());
                    }
                    self.handshake()?;
                }
                "USER" => {
                    if self.auth_open() {
                        self.write("+OK Send your password\r\n")?;
                    } else {
                        self.write("-ERR [AUTH] Use STLS first\r\n")?;
                    }
                }
                "PASS" => self.write("-ERR [AUTH] Invalid credentials\r\n")?,
                "QUIT" => return self.write("+OK Bye\r\n"),
                _ => self.write("-ERR Unknown command\r\n")?,
            }
        }
    }
}
