//! The POP3 server session.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::PerConfig;
use crate::dot::DotStuffer;
use crate::error::{ConfigError, Error, UsageError};
use crate::framing::{after_cr, scan_line, without_crlf, LineSkipper, Scan};
use crate::sasl::{self, ExternalAuth};
use crate::secret::Secret;
use crate::tls::{ServerTls, TlsInfo};
use crate::trust::Trust;
use crate::upgrade::{
    session_io, Engine, EngineConfig, InjectionPolicy, InputBudget, Io, Machine, UpgradeEvent,
};

use super::capability::{Capabilities, Capability};
use super::command::Command;
use super::response::{Code, Status, StatusLine};
use super::Limits;
use crate::appvalue;

/// Server configuration, shared by every session of a listener.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Text of the greeting (`+OK <text>`). For APOP, give each session its
    /// own timestamp with [`ServerSession::with_greeting`].
    pub greeting: String,
    /// How the session does TLS; [`ServerTls::None`] never offers STLS.
    pub tls: ServerTls,
    /// Implicit TLS (RFC 8314, port 995 style).
    pub implicit_tls: bool,
    /// Refuse every command but `CAPA`, `STLS` and `QUIT` in cleartext.
    pub require_tls: bool,
    /// SASL mechanisms advertised in `CAPA` (`SASL PLAIN ...`) over TLS.
    /// `EXTERNAL` is advertised only with a verified TLS client
    /// certificate, and the session runs its exchange (see
    /// [`sasl`](crate::sasl)).
    pub sasl_mechanisms: Vec<String>,
    /// Accept `USER`/`PASS`/`APOP`/`AUTH` in cleartext. Off by default: they
    /// are answered `-ERR [AUTH]` and `USER`/`SASL` are not advertised before
    /// TLS.
    pub insecure_auth_in_cleartext: bool,
    /// Further capabilities to advertise (`TOP`, `UIDL`, `PIPELINING`, ...).
    pub capabilities: Vec<Capability>,
    /// What to do with bytes after the `STLS` line.
    pub injection: InjectionPolicy,
    /// Size limits.
    pub limits: Limits,
    /// The `CAPA` answer octets, built at the first `CAPA` and shared by
    /// every session of this configuration.
    capa: PerConfig<CapaReplies>,
}

/// What the `CAPA` answer depends on in a [`ServerConfig`]: the cache is
/// used only while the configuration still says the same (its fields are
/// public, and a configuration may be changed after sessions used it,
/// through `Arc::get_mut` or a clone).
#[derive(Clone, Debug, PartialEq, Eq)]
struct CapaKey {
    sasl_mechanisms: Vec<String>,
    capabilities: Vec<Capability>,
    insecure_auth_in_cleartext: bool,
    require_tls: bool,
    implicit_tls: bool,
    tls_available: bool,
}

impl CapaKey {
    fn of(c: &ServerConfig) -> CapaKey {
        CapaKey {
            sasl_mechanisms: c.sasl_mechanisms.clone(),
            capabilities: c.capabilities.clone(),
            insecure_auth_in_cleartext: c.insecure_auth_in_cleartext,
            require_tls: c.require_tls,
            implicit_tls: c.implicit_tls,
            tls_available: c.tls.is_available(),
        }
    }

    fn matches(&self, c: &ServerConfig) -> bool {
        self.sasl_mechanisms == c.sasl_mechanisms
            && self.capabilities == c.capabilities
            && self.insecure_auth_in_cleartext == c.insecure_auth_in_cleartext
            && self.require_tls == c.require_tls
            && self.implicit_tls == c.implicit_tls
            && self.tls_available == c.tls.is_available()
    }
}

/// The whole `CAPA` answer of a configuration (status line, listing,
/// terminating `.`), as sent: before TLS and over TLS without a client
/// certificate.
#[derive(Debug)]
struct CapaReplies {
    key: CapaKey,
    cleartext: Box<[u8]>,
    tls: Box<[u8]>,
}

impl ServerConfig {
    /// The `CAPA` answer for a session at `trust` with `tls`: from the
    /// cache, unless it depends on the session (`SASL EXTERNAL` offered to a
    /// verified client certificate) or the configuration changed since the
    /// cache was built.
    fn capa_reply(&self, trust: Trust, tls: Option<&TlsInfo>) -> Cow<'_, [u8]> {
        if sasl::server_identity(trust, tls).is_none() {
            let built = self.capa.get_or_init(|| CapaReplies {
                key: CapaKey::of(self),
                cleartext: self.build_capa_reply(Trust::Cleartext, None).into(),
                tls: self.build_capa_reply(Trust::Tls, None).into(),
            });
            if built.key.matches(self) {
                return Cow::Borrowed(match trust {
                    Trust::Cleartext => &built.cleartext,
                    Trust::Tls => &built.tls,
                });
            }
        }
        Cow::Owned(self.build_capa_reply(trust, tls))
    }

    fn build_capa_reply(&self, trust: Trust, tls: Option<&TlsInfo>) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        StatusLine::new(Status::Ok, Bytes::from_static(b"Capability list follows"))
            .write_to(&mut v);
        self.capabilities(trust, tls).write_to(&mut v);
        v.extend_from_slice(b".\r\n");
        v
    }

    fn auth_allowed(&self, trust: Trust) -> bool {
        trust == Trust::Tls || (self.insecure_auth_in_cleartext && !self.require_tls)
    }

    fn capabilities(&self, trust: Trust, tls: Option<&TlsInfo>) -> Capabilities {
        let mut caps = Vec::new();
        if trust == Trust::Cleartext && !self.implicit_tls && self.tls.is_available() {
            caps.push(Capability::Stls);
        }
        if self.auth_allowed(trust) {
            caps.push(Capability::User);
            let mechs: Vec<&str> = sasl::advertised(&self.sasl_mechanisms, trust, tls)
                .map(String::as_str)
                .collect();
            if !mechs.is_empty() {
                caps.push(Capability::Sasl(Bytes::from(mechs.join(" "))));
            }
        }
        caps.extend(self.capabilities.iter().cloned());
        Capabilities::new(caps)
    }
}

impl ServerConfig {
    /// A configuration with safe defaults.
    pub fn new(tls: ServerTls) -> Self {
        ServerConfig {
            greeting: "POP3 server ready".into(),
            tls,
            implicit_tls: false,
            require_tls: false,
            sasl_mechanisms: Vec::new(),
            insecure_auth_in_cleartext: false,
            capabilities: vec![
                Capability::Top,
                Capability::Uidl,
                Capability::RespCodes,
                Capability::AuthRespCode,
                Capability::Pipelining,
            ],
            injection: InjectionPolicy::Discard,
            limits: Limits::default(),
            capa: PerConfig::default(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if (self.require_tls || self.implicit_tls) && !self.tls.is_available() {
            return Err(ConfigError::TlsRequiredWithoutTls);
        }
        if self.limits.command_line < 255 {
            return Err(ConfigError::LimitTooSmall {
                what: "command_line",
                min: 255,
            });
        }
        Ok(())
    }
}

/// What a POP3 server session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A command for the application: `USER`, `PASS`, `APOP`, `AUTH` (with
    /// a mechanism), and in the TRANSACTION state every command but `CAPA`.
    /// Answer it with [`ServerSession::reply`] or, for commands whose
    /// positive answer is multi-line (`RETR`, `TOP`, `LIST`, `UIDL` without
    /// argument), [`ServerSession::reply_multiline`].
    Command(Command),
    /// The client's answer to an `AUTH` challenge.
    AuthResponse(Secret<Bytes>),
    /// The client cancelled `AUTH` with `*`; the session answered `-ERR`.
    AuthCancelled,
    /// The client asked to authenticate with `AUTH EXTERNAL` (RFC 4422
    /// Appendix A, RFC 5034) over TLS with a verified client certificate.
    /// Answer it with [`ServerSession::accept`] or
    /// [`ServerSession::reject`]; no challenge follows.
    ExternalAuthRequested(ExternalAuth),
    /// The session refused a command itself and sent this response.
    Refused(StatusLine),
    /// Upgrade and TLS facts.
    Upgrade(UpgradeEvent),
}

impl From<UpgradeEvent> for ServerEvent {
    fn from(e: UpgradeEvent) -> Self {
        ServerEvent::Upgrade(e)
    }
}

/// A POP3 server session: one per accepted connection.
///
/// ```
/// use std::sync::Arc;
/// use starttls::pop3::{ServerConfig, ServerSession};
/// use starttls::ServerTls;
///
/// let mut server = ServerSession::new(Arc::new(ServerConfig::new(ServerTls::None))).unwrap();
/// assert_eq!(server.poll_transmit().unwrap().as_ref(), b"+OK POP3 server ready\r\n");
/// server.handle_input(b"CAPA\r\n");
/// let capa = server.poll_transmit().unwrap();
/// assert!(capa.starts_with(b"+OK") && capa.ends_with(b"\r\n.\r\n"));
/// ```
pub struct ServerSession {
    engine: Engine<ServerMachine>,
}

session_io!(ServerSession, ServerEvent);

impl ServerSession {
    /// Starts a session with the configured greeting.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, ConfigError> {
        Self::start(config, None)
    }

    /// Starts a session with its own greeting text, e.g. one carrying a
    /// fresh APOP timestamp `<pid.clock@host>` (RFC 1939 §7).
    pub fn with_greeting(config: Arc<ServerConfig>, greeting: &str) -> Result<Self, ConfigError> {
        Self::start(config, Some(Bytes::copy_from_slice(greeting.as_bytes())))
    }

    /// `greeting`: the session's own text, `None` for the configured one.
    fn start(config: Arc<ServerConfig>, greeting: Option<Bytes>) -> Result<Self, ConfigError> {
        config.validate()?;
        let ec = EngineConfig::server(&config.tls, config.implicit_tls, config.injection);
        let mut machine = ServerMachine::new(Arc::clone(&config), false);
        machine.own_greeting = greeting;
        Ok(ServerSession {
            engine: Engine::new(config, machine, ec),
        })
    }

    /// Answers the pending command with a single line. A positive answer to
    /// a command whose positive answer is multi-line must use
    /// [`reply_multiline`](Self::reply_multiline).
    ///
    /// The line is written as given, so it must pass [`StatusLine::check`];
    /// otherwise it is refused with [`UsageError::InvalidValue`] and nothing
    /// is written.
    pub fn reply(&mut self, status: StatusLine) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.reply(status, None, false, io))
    }

    /// `+OK`.
    pub fn accept(&mut self) -> Result<(), UsageError> {
        self.reply(StatusLine::new(Status::Ok, Bytes::new()))
    }

    /// `-ERR [code] text`.
    ///
    /// `text` is free text: CR, LF and NUL in it become SP, so it cannot end
    /// the line. With no `code`, a text that starts with a valid `[code]`
    /// is written as given and the client reads that code (RFC 2449 §8);
    /// a bad [`Code::Other`] is refused with [`UsageError::InvalidValue`].
    pub fn reject(&mut self, code: Option<Code>, text: &str) -> Result<(), UsageError> {
        let mut s = StatusLine::new(Status::Err, appvalue::clean_text(text.as_bytes()));
        let free_text = code.is_none();
        s.code = code;
        self.engine.call(|m, io| m.reply(s, None, free_text, io))
    }

    /// Answers the pending command with `+OK text`, then `body` dot-stuffed,
    /// then the terminating `.` line.
    ///
    /// `text` is cleaned as in [`reject`](Self::reject); `body` may hold
    /// anything: its lines are dot-stuffed and its line ends made CRLF, so
    /// it always ends exactly at the terminating `.`.
    pub fn reply_multiline(&mut self, text: &str, body: &[u8]) -> Result<(), UsageError> {
        let status = StatusLine::new(Status::Ok, appvalue::clean_text(text.as_bytes()));
        self.engine
            .call(|m, io| m.reply(status, Some(body), true, io))
    }

    /// Sends a SASL challenge (`+ base64`) for a pending `AUTH`; the next
    /// line from the client comes as [`ServerEvent::AuthResponse`].
    ///
    /// `challenge` is the base64 text (RFC 5034 §4 `continue-req = "+" SP
    /// [base64] CRLF`); anything else is refused with
    /// [`UsageError::InvalidValue`] and nothing is written.
    pub fn continue_request(&mut self, challenge: &[u8]) -> Result<(), UsageError> {
        self.engine.call(|m, io| {
            match m.pending {
                Some(Command::Auth { .. }) if !m.external => {}
                _ => return Err(UsageError::WrongState("a challenge needs a pending AUTH")),
            }
            if challenge == b"*" || appvalue::check_sasl_response(challenge).is_err() {
                return Err(appvalue::invalid(
                    "SASL challenge",
                    "must be base64 (RFC 4648 §4, padded)",
                ));
            }
            io.send(b"+ ");
            io.send(challenge);
            io.send(b"\r\n");
            m.sasl_line = true;
            Ok(())
        })
    }

    /// `true` while a command waits for an answer.
    pub fn is_waiting_for_reply(&self) -> bool {
        self.engine.machine().pending.is_some()
    }

    /// `true` in the TRANSACTION state (after a successful login).
    pub fn is_authenticated(&self) -> bool {
        self.engine.machine().transaction
    }
}

pub(crate) struct ServerMachine {
    config: Arc<ServerConfig>,
    /// The greeting was sent.
    greeted: bool,
    /// The session's own greeting text ([`ServerSession::with_greeting`]);
    /// `None`: the configured one.
    own_greeting: Option<Bytes>,
    /// Authorization state: the `USER` was accepted.
    user_ok: bool,
    transaction: bool,
    pending: Option<Command>,
    /// After a challenge: the next line is a SASL response.
    sasl_line: bool,
    /// After the empty challenge to `AUTH EXTERNAL`: the next line is the
    /// authorization identity.
    external_line: bool,
    /// The pending `AUTH` is `EXTERNAL`, its identity read: no challenge.
    external: bool,
    scanned: usize,
    skipper: LineSkipper,
    errors: u32,
    /// Set when the session closes itself on a limit.
    fatal: Option<Error>,
}

impl ServerMachine {
    fn new(config: Arc<ServerConfig>, greeted: bool) -> Self {
        ServerMachine {
            config,
            greeted,
            own_greeting: None,
            user_ok: false,
            transaction: false,
            pending: None,
            sasl_line: false,
            external_line: false,
            external: false,
            scanned: 0,
            skipper: LineSkipper::default(),
            errors: 0,
            fatal: None,
        }
    }

    fn auth_allowed(&self, trust: Trust) -> bool {
        self.config.auth_allowed(trust)
    }

    fn send_status(&self, io: &mut Io<'_, ServerEvent>, s: &StatusLine) {
        let mut v = Vec::with_capacity(32 + s.text.len());
        s.write_to(&mut v);
        io.send(&v);
    }

    /// `+OK text`, written straight into the output.
    fn ok(&self, io: &mut Io<'_, ServerEvent>, text: &'static str) {
        io.send_parts(&[b"+OK ", text.as_bytes(), b"\r\n"]);
    }

    fn refuse(&mut self, io: &mut Io<'_, ServerEvent>, code: Option<Code>, text: &'static str) {
        let mut s = StatusLine::new(Status::Err, Bytes::from_static(text.as_bytes()));
        s.code = code;
        self.send_status(io, &s);
        io.emit(ServerEvent::Refused(s));
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            self.send_status(
                io,
                &StatusLine::new(Status::Err, Bytes::from_static(b"Too many errors")),
            );
            io.close();
            self.fatal = Some(Error::LimitExceeded {
                what: "refused commands",
                limit: self.config.limits.max_errors as usize,
            });
        }
    }

    fn command(&mut self, line: Bytes, io: &mut Io<'_, ServerEvent>) {
        let cmd = match Command::parse(&line) {
            Ok(c) => c,
            Err(_) => return self.refuse(io, None, "Unknown command or invalid arguments"),
        };
        let trust = io.trust();
        match &cmd {
            Command::Capa => {
                let reply = self.config.capa_reply(trust, io.tls_info());
                io.send(&reply);
                return;
            }
            Command::Stls => {
                if trust == Trust::Tls {
                    return self.refuse(io, None, "TLS already active");
                }
                if self.transaction || self.config.implicit_tls || !self.config.tls.is_available() {
                    return self.refuse(io, None, "STLS not available");
                }
                self.ok(io, "Begin TLS negotiation");
                // The cut: nothing after this line is ever read in cleartext.
                io.start_upgrade();
                return;
            }
            Command::Quit if !self.transaction => {
                self.ok(io, "Bye");
                io.close();
                return;
            }
            Command::Quit => {}
            _ if self.config.require_tls && trust == Trust::Cleartext => {
                return self.refuse(io, Some(Code::Auth), "Use STLS first");
            }
            Command::User { .. }
            | Command::Pass { .. }
            | Command::Apop { .. }
            | Command::Auth { .. } => {
                if self.transaction {
                    return self.refuse(io, None, "Already authenticated");
                }
                if !self.auth_allowed(trust) {
                    let text = if self.config.tls.is_available() {
                        "Authentication requires TLS; use STLS first"
                    } else {
                        "Authentication requires TLS, which this server does not offer"
                    };
                    return self.refuse(io, Some(Code::Auth), text);
                }
                match &cmd {
                    Command::Pass { .. } if !self.user_ok => {
                        return self.refuse(io, None, "USER first");
                    }
                    Command::Auth {
                        mechanism: None, ..
                    } => {
                        self.ok(io, "SASL mechanisms follow");
                        let mut v = Vec::new();
                        let mechs =
                            sasl::advertised(&self.config.sasl_mechanisms, trust, io.tls_info());
                        for m in mechs {
                            v.extend_from_slice(m.as_bytes());
                            v.extend_from_slice(b"\r\n");
                        }
                        v.extend_from_slice(b".\r\n");
                        io.send(&v);
                        return;
                    }
                    Command::Auth {
                        mechanism: Some(m),
                        initial_response,
                    } if sasl::is_external(m) => {
                        let response = initial_response.as_ref().map(|r| r.expose().clone());
                        return self.external(response, io);
                    }
                    Command::Auth {
                        mechanism: Some(m), ..
                    } => {
                        let known = self
                            .config
                            .sasl_mechanisms
                            .iter()
                            .any(|k| k.as_bytes().eq_ignore_ascii_case(m));
                        if !known {
                            return self.refuse(io, None, "Unsupported SASL mechanism");
                        }
                    }
                    _ => {}
                }
            }
            // RFC 6856: UTF8 and LANG are valid in the AUTHORIZATION state.
            Command::Utf8 | Command::Lang { .. } => {}
            _ if !self.transaction => {
                return self.refuse(io, None, "Not in the TRANSACTION state");
            }
            _ => {}
        }
        self.pending = Some(cmd.clone());
        io.emit(ServerEvent::Command(cmd));
    }

    fn reply(
        &mut self,
        status: StatusLine,
        body: Option<&[u8]>,
        free_text: bool,
        io: &mut Io<'_, ServerEvent>,
    ) -> Result<(), UsageError> {
        let cmd = self.pending.as_ref().ok_or(UsageError::NoCommandPending)?;
        let ok = status.status == Status::Ok;
        let multiline = cmd.has_multiline_reply();
        if ok && multiline != body.is_some() {
            return Err(UsageError::WrongState(if multiline {
                "a positive answer to this command is multi-line: use reply_multiline"
            } else {
                "this command is answered with a single line: use reply"
            }));
        }
        if !ok && body.is_some() {
            return Err(UsageError::WrongState("a negative answer is a single line"));
        }
        status.check_as(free_text)?;
        self.send_status(io, &status);
        if let Some(body) = body {
            let mut stuffer = DotStuffer::default();
            stuffer.encode(body, io.out());
            stuffer.finish(io.out());
        }
        let cmd = self.pending.take();
        self.sasl_line = false;
        self.external = false;
        match cmd {
            Some(Command::User { .. }) => self.user_ok = ok,
            Some(Command::Pass { .. } | Command::Apop { .. } | Command::Auth { .. }) => {
                self.transaction = ok;
                self.user_ok = false;
            }
            Some(Command::Quit) => io.close(),
            _ => {}
        }
        Ok(())
    }
}

impl ServerMachine {
    /// `AUTH EXTERNAL` (RFC 4422 Appendix A, RFC 5034), with or without
    /// its initial response. The session owns the mechanism whatever the
    /// configuration says: it is offered only with a verified client
    /// certificate.
    fn external(&mut self, response: Option<Bytes>, io: &mut Io<'_, ServerEvent>) {
        let offered =
            sasl::external_offered(&self.config.sasl_mechanisms, io.trust(), io.tls_info());
        if !offered {
            return self.refuse(io, None, "EXTERNAL needs a verified TLS client certificate");
        }
        match response {
            // RFC 5034 §4: an empty challenge is `+` SP.
            None => {
                io.send(b"+ \r\n");
                self.external_line = true;
            }
            Some(r) => self.external_response(&r, io),
        }
    }

    /// The client's `EXTERNAL` response: reported with the verified
    /// identity, or refused when it is not a valid authorization identity.
    fn external_response(&mut self, response: &[u8], io: &mut Io<'_, ServerEvent>) {
        let identity = sasl::server_identity(io.trust(), io.tls_info()).cloned();
        let Some(identity) = identity else {
            return self.refuse(io, None, "EXTERNAL needs a verified TLS client certificate");
        };
        match sasl::decode_authzid(response) {
            Ok(authzid) => {
                self.pending = Some(Command::Auth {
                    mechanism: Some(Bytes::from_static(sasl::EXTERNAL.as_bytes())),
                    initial_response: None,
                });
                self.external = true;
                io.emit(ServerEvent::ExternalAuthRequested(ExternalAuth {
                    identity,
                    authzid,
                }));
            }
            Err(e) => self.refuse(io, None, e.text()),
        }
    }
}

impl Machine for ServerMachine {
    type Config = ServerConfig;
    type Event = ServerEvent;

    fn after_tls(config: &Arc<ServerConfig>) -> Self {
        // RFC 2595 §4: no new greeting; the client issues CAPA again.
        ServerMachine::new(Arc::clone(config), true)
    }

    fn process(&mut self, io: &mut Io<'_, ServerEvent>) -> Result<(), Error> {
        let r = self.read(io);
        match self.fatal.take() {
            Some(e) => Err(e),
            None => r,
        }
    }

    fn on_eof(&mut self, _io: &mut Io<'_, ServerEvent>) -> Result<(), Error> {
        Ok(())
    }

    fn input_budget(&self) -> InputBudget {
        self.config.limits.input_budget(self.transaction)
    }
}

impl ServerMachine {
    fn read(&mut self, io: &mut Io<'_, ServerEvent>) -> Result<(), Error> {
        if !self.greeted {
            // `+OK text`, as `StatusLine::write_to` writes it, straight into
            // the output.
            self.greeted = true;
            let own = self.own_greeting.take();
            let text = own.as_deref().unwrap_or(self.config.greeting.as_bytes());
            let sp: &[u8] = if text.is_empty() { b"" } else { b" " };
            io.send_parts(&[b"+OK", sp, text, b"\r\n"]);
        }
        loop {
            if self.pending.is_some() && !self.sasl_line {
                return Ok(());
            }
            if self.skipper.is_active() {
                let n = self.skipper.skip(io.input());
                io.skip(n);
                if self.skipper.is_active() {
                    return Ok(());
                }
            }
            let input = io.input();
            let limits = &self.config.limits;
            let sasl = self.sasl_line || self.external_line;
            let external = self.external_line;
            // RFC 5034 §4: SASL lines, and AUTH with an initial response, may
            // be longer than the 255 octets of RFC 2449 §4.
            let limit = if sasl
                || input
                    .get(..5)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "))
            {
                limits.auth_line.max(limits.command_line)
            } else {
                limits.command_line
            };
            match scan_line(input, &mut self.scanned, limit) {
                Scan::Incomplete => return Ok(()),
                Scan::TooLong => {
                    let after_cr = after_cr(input, limit);
                    io.skip(limit);
                    self.skipper.start_crlf(after_cr);
                    self.sasl_line = false;
                    self.external_line = false;
                    if sasl {
                        self.pending = None;
                    }
                    self.refuse(io, None, "Line too long");
                }
                Scan::Invalid { len, .. } => {
                    io.skip(len);
                    self.sasl_line = false;
                    self.external_line = false;
                    if sasl {
                        self.pending = None;
                    }
                    self.refuse(io, None, "Invalid line");
                }
                Scan::Line(len) => {
                    let line = without_crlf(&io.take(len));
                    if sasl {
                        self.sasl_line = false;
                        self.external_line = false;
                        if line.as_ref() == b"*" {
                            self.pending = None;
                            self.send_status(
                                io,
                                &StatusLine::new(
                                    Status::Err,
                                    Bytes::from_static(b"Authentication cancelled"),
                                ),
                            );
                            io.emit(ServerEvent::AuthCancelled);
                        } else if external {
                            self.external_response(&line, io);
                        } else {
                            io.emit(ServerEvent::AuthResponse(Secret::new(line)));
                        }
                    } else {
                        self.command(line, io);
                    }
                }
            }
        }
    }
}

impl crate::session::Timed for ServerMachine {
    fn waiting(&self) -> crate::session::Waiting {
        use crate::session::Waiting;
        if self.pending.is_some() {
            Waiting::Application
        } else {
            Waiting::Command
        }
    }

    /// RFC 1939 §3: the autologout timer. The session is not in UPDATE:
    /// nothing is deleted.
    fn goodbye(&self) -> Option<Vec<u8>> {
        Some(b"-ERR autologout: idle for too long\r\n".to_vec())
    }
}

#[cfg(test)]
mod capa_cache_tests {
    use super::*;
    use crate::tls::ClientIdentity;

    fn config(f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
        let mut c = ServerConfig::new(ServerTls::External);
        c.sasl_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
        f(&mut c);
        Arc::new(c)
    }

    fn out(s: &mut ServerSession) -> String {
        let mut v = Vec::new();
        while let Some(b) = s.poll_transmit() {
            v.extend_from_slice(&b);
        }
        String::from_utf8(v).unwrap()
    }

    /// The answer to `CAPA` in cleartext or (bring-your-own TLS) after
    /// STLS with `info`.
    fn capa(config: &Arc<ServerConfig>, tls: Option<TlsInfo>) -> String {
        let mut s = ServerSession::new(Arc::clone(config)).unwrap();
        assert_eq!(out(&mut s), "+OK POP3 server ready\r\n");
        if let Some(info) = tls {
            s.handle_input(b"STLS\r\n");
            assert_eq!(out(&mut s), "+OK Begin TLS negotiation\r\n");
            s.tls_established(info).unwrap();
            while let Some(e) = s.poll_event().unwrap() {
                assert!(matches!(e, ServerEvent::Upgrade(_)), "{e:?}");
            }
            assert_eq!(s.trust(), Trust::Tls);
        }
        s.handle_input(b"CAPA\r\n");
        out(&mut s)
    }

    fn identity() -> ClientIdentity {
        ClientIdentity {
            subject: "CN=alice".into(),
            common_names: vec!["alice".into()],
            dns_names: Vec::new(),
            emails: Vec::new(),
            certificate: Vec::new().into(),
        }
    }

    #[test]
    fn built_once_per_configuration_and_shared_by_its_sessions() {
        let c = config(|_| {});
        assert!(c.capa.get().is_none(), "built only at the first CAPA");
        let first = capa(&c, None);
        let at = |c: &ServerConfig| {
            let r = c.capa.get().expect("built at the first CAPA");
            (r.cleartext.as_ptr(), r.tls.as_ptr())
        };
        let before = at(&c);
        let second = capa(&c, None);
        let tls = capa(&c, Some(TlsInfo::unknown()));
        assert_eq!(at(&c), before);
        assert_eq!(first, second);
        assert_eq!(
            first.as_bytes(),
            &c.build_capa_reply(Trust::Cleartext, None)[..]
        );
        assert_eq!(
            tls.as_bytes(),
            &c.build_capa_reply(Trust::Tls, Some(&TlsInfo::unknown()))[..]
        );
    }

    #[test]
    fn cleartext_and_tls_variants() {
        let c = config(|_| {});
        let clear = capa(&c, None);
        assert_eq!(
            clear,
            "+OK Capability list follows\r\nSTLS\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
             AUTH-RESP-CODE\r\nPIPELINING\r\n.\r\n"
        );
        // Over TLS: USER and SASL, no STLS; EXTERNAL only with a verified
        // client certificate, never from the cache.
        let tls = capa(&c, Some(TlsInfo::unknown()));
        assert_eq!(
            tls,
            "+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
             AUTH-RESP-CODE\r\nPIPELINING\r\n.\r\n"
        );
        let with_cert = capa(
            &c,
            Some(TlsInfo::unknown().with_client_identity(identity())),
        );
        assert!(
            with_cert.contains("\r\nSASL PLAIN EXTERNAL\r\n"),
            "{with_cert}"
        );
        // ... and that answer did not go into the cache.
        assert_eq!(capa(&c, Some(TlsInfo::unknown())), tls);
        assert_eq!(capa(&c, None), clear);
    }

    #[test]
    fn a_changed_configuration_gets_its_own_reply() {
        let c = config(|_| {});
        let before = capa(&c, None);
        // A clone changed after the original was used.
        let mut clone = (*c).clone();
        clone.capabilities = vec![Capability::Top];
        let clone = Arc::new(clone);
        assert_eq!(
            capa(&clone, None),
            "+OK Capability list follows\r\nSTLS\r\nTOP\r\n.\r\n"
        );
        assert_eq!(capa(&c, None), before);
        // The same configuration changed in place once its sessions are gone.
        let mut c = c;
        let m = Arc::get_mut(&mut c).expect("no session left");
        m.insecure_auth_in_cleartext = true;
        m.sasl_mechanisms = vec!["LOGIN".into()];
        let after = capa(&c, None);
        assert!(
            after.starts_with("+OK Capability list follows\r\nSTLS\r\nUSER\r\nSASL LOGIN\r\n"),
            "{after}"
        );
        assert_eq!(
            after.as_bytes(),
            &c.build_capa_reply(Trust::Cleartext, None)[..]
        );
        let m = Arc::get_mut(&mut c).unwrap();
        m.require_tls = true;
        assert!(!capa(&c, None).contains("USER"));
        let m = Arc::get_mut(&mut c).unwrap();
        m.require_tls = false;
        m.tls = ServerTls::None;
        assert!(!capa(&c, None).contains("STLS"));
    }

    #[test]
    fn own_and_configured_greetings() {
        let c = config(|c| c.greeting = String::new());
        let mut s = ServerSession::new(Arc::clone(&c)).unwrap();
        assert_eq!(out(&mut s), "+OK\r\n");
        let mut s = ServerSession::with_greeting(c, "ready <1.2@h>").unwrap();
        assert_eq!(out(&mut s), "+OK ready <1.2@h>\r\n");
    }
}
