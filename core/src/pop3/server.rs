//! The POP3 server session.

use std::sync::Arc;

use bytes::Bytes;

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
        let greeting = config.greeting.clone();
        Self::with_greeting(config, &greeting)
    }

    /// Starts a session with its own greeting text, e.g. one carrying a
    /// fresh APOP timestamp `<pid.clock@host>` (RFC 1939 §7).
    pub fn with_greeting(config: Arc<ServerConfig>, greeting: &str) -> Result<Self, ConfigError> {
        config.validate()?;
        let ec = EngineConfig::server(&config.tls, config.implicit_tls, config.injection);
        let mut machine = ServerMachine::new(Arc::clone(&config), false);
        machine.greeting = Some(Bytes::copy_from_slice(greeting.as_bytes()));
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
    greeting: Option<Bytes>,
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
            greeting: (!greeted).then(|| Bytes::copy_from_slice(config.greeting.as_bytes())),
            config,
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
        trust == Trust::Tls || (self.config.insecure_auth_in_cleartext && !self.config.require_tls)
    }

    fn capabilities(&self, trust: Trust, tls: Option<&TlsInfo>) -> Capabilities {
        let c = &self.config;
        let mut caps = Vec::new();
        if trust == Trust::Cleartext && !c.implicit_tls && c.tls.is_available() {
            caps.push(Capability::Stls);
        }
        if self.auth_allowed(trust) {
            caps.push(Capability::User);
            let mechs: Vec<&str> = sasl::advertised(&c.sasl_mechanisms, trust, tls)
                .map(String::as_str)
                .collect();
            if !mechs.is_empty() {
                caps.push(Capability::Sasl(Bytes::from(mechs.join(" "))));
            }
        }
        caps.extend(c.capabilities.iter().cloned());
        Capabilities::new(caps)
    }

    fn send_status(&self, io: &mut Io<'_, ServerEvent>, s: &StatusLine) {
        let mut v = Vec::with_capacity(32 + s.text.len());
        s.write_to(&mut v);
        io.send(&v);
    }

    fn ok(&self, io: &mut Io<'_, ServerEvent>, text: &'static str) {
        self.send_status(
            io,
            &StatusLine::new(Status::Ok, Bytes::from_static(text.as_bytes())),
        );
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
                self.ok(io, "Capability list follows");
                let mut v = Vec::new();
                self.capabilities(trust, io.tls_info()).write_to(&mut v);
                v.extend_from_slice(b".\r\n");
                io.send(&v);
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
        if let Some(text) = self.greeting.take() {
            self.send_status(io, &StatusLine::new(Status::Ok, text));
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
