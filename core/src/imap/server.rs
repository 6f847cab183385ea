//! The IMAP server session.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::PerConfig;
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
use super::command::{is_idle_done, Command, CommandBody, CommandRef};
use super::frame::{Frame, FrameError, MessageFramer};
use super::response::{Code, Response, Status, StatusResponse};
use super::syntax::LiteralMode;
use super::Limits;
use crate::appvalue;

/// Server configuration, shared by every session of a listener.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Text of the greeting (`* OK [CAPABILITY ...] <text>`).
    pub greeting: String,
    /// How the session does TLS; [`ServerTls::None`] never offers STARTTLS.
    pub tls: ServerTls,
    /// Implicit TLS (RFC 8314, port 993 style).
    pub implicit_tls: bool,
    /// Refuse everything but `CAPABILITY`, `NOOP`, `LOGOUT`, `STARTTLS` and
    /// `ID` in cleartext (`NO [PRIVACYREQUIRED]`).
    pub require_tls: bool,
    /// SASL mechanisms advertised as `AUTH=...` (over TLS). `EXTERNAL` is
    /// advertised only with a verified TLS client certificate, and the
    /// session runs its exchange (see [`sasl`](crate::sasl)).
    pub auth_mechanisms: Vec<String>,
    /// Accept `LOGIN` and `AUTHENTICATE` in cleartext. Off by default: the
    /// server advertises `LOGINDISABLED` and answers `NO [PRIVACYREQUIRED]`.
    pub insecure_login_in_cleartext: bool,
    /// Further capabilities to advertise, e.g. `IDLE`, `ID`, `ENABLE`,
    /// `SASL-IR`, `UIDPLUS`.
    pub capabilities: Vec<String>,
    /// Advertise `LITERAL+` (true) or `LITERAL-` (false, RFC 7888).
    pub literal_plus: bool,
    /// What to do with bytes after the `STARTTLS` line.
    pub injection: InjectionPolicy,
    /// Size limits.
    pub limits: Limits,
    /// The greeting and `CAPABILITY` response octets, built at the first
    /// session and shared by every session of this configuration.
    replies: PerConfig<CapsReplies>,
}

/// What the greeting and the `CAPABILITY` response depend on in a
/// [`ServerConfig`]: the cache is used only while the configuration still
/// says the same (its fields are public, and a configuration may be changed
/// after sessions used it, through `Arc::get_mut` or a clone).
#[derive(Clone, Debug, PartialEq, Eq)]
struct CapsKey {
    greeting: String,
    auth_mechanisms: Vec<String>,
    capabilities: Vec<String>,
    insecure_login_in_cleartext: bool,
    require_tls: bool,
    literal_plus: bool,
    implicit_tls: bool,
    tls_available: bool,
}

impl CapsKey {
    fn of(c: &ServerConfig) -> CapsKey {
        CapsKey {
            greeting: c.greeting.clone(),
            auth_mechanisms: c.auth_mechanisms.clone(),
            capabilities: c.capabilities.clone(),
            insecure_login_in_cleartext: c.insecure_login_in_cleartext,
            require_tls: c.require_tls,
            literal_plus: c.literal_plus,
            implicit_tls: c.implicit_tls,
            tls_available: c.tls.is_available(),
        }
    }

    fn matches(&self, c: &ServerConfig) -> bool {
        self.greeting == c.greeting
            && self.auth_mechanisms == c.auth_mechanisms
            && self.capabilities == c.capabilities
            && self.insecure_login_in_cleartext == c.insecure_login_in_cleartext
            && self.require_tls == c.require_tls
            && self.literal_plus == c.literal_plus
            && self.implicit_tls == c.implicit_tls
            && self.tls_available == c.tls.is_available()
    }
}

/// The greeting and the `* CAPABILITY` line of a configuration, as sent,
/// before TLS (index 0) and over TLS without a client certificate (index 1).
#[derive(Debug)]
struct CapsReplies {
    key: CapsKey,
    greeting: [Box<[u8]>; 2],
    capability: [Box<[u8]>; 2],
}

/// Which of the two cached variants a session at `trust` uses.
fn variant(trust: Trust) -> usize {
    match trust {
        Trust::Cleartext => 0,
        Trust::Tls => 1,
    }
}

impl ServerConfig {
    /// The cached replies, unless the reply depends on the session
    /// (`EXTERNAL` offered to a verified client certificate) or the
    /// configuration changed since the cache was built.
    fn cached(&self, trust: Trust, tls: Option<&TlsInfo>) -> Option<&CapsReplies> {
        if sasl::server_identity(trust, tls).is_some() {
            return None;
        }
        let built = self.replies.get_or_init(|| CapsReplies {
            key: CapsKey::of(self),
            greeting: [Trust::Cleartext, Trust::Tls].map(|t| self.build_greeting(t, None).into()),
            capability: [Trust::Cleartext, Trust::Tls]
                .map(|t| self.build_capability(t, None).into()),
        });
        built.key.matches(self).then_some(built)
    }

    /// The greeting `* OK [CAPABILITY ...] text` for a session at `trust`.
    fn greeting_reply(&self, trust: Trust, tls: Option<&TlsInfo>) -> Cow<'_, [u8]> {
        match self.cached(trust, tls) {
            Some(r) => Cow::Borrowed(&r.greeting[variant(trust)]),
            None => Cow::Owned(self.build_greeting(trust, tls)),
        }
    }

    /// The `* CAPABILITY ...` line for a session at `trust`.
    fn capability_reply(&self, trust: Trust, tls: Option<&TlsInfo>) -> Cow<'_, [u8]> {
        match self.cached(trust, tls) {
            Some(r) => Cow::Borrowed(&r.capability[variant(trust)]),
            None => Cow::Owned(self.build_capability(trust, tls)),
        }
    }

    fn build_greeting(&self, trust: Trust, tls: Option<&TlsInfo>) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        Response::Status(StatusResponse {
            status: Status::Ok,
            code: Some(Code::Capability(self.capabilities(trust, tls))),
            text: Bytes::copy_from_slice(self.greeting.as_bytes()),
        })
        .write_to(&mut v);
        v
    }

    fn build_capability(&self, trust: Trust, tls: Option<&TlsInfo>) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        Response::Capability(self.capabilities(trust, tls)).write_to(&mut v);
        v
    }

    fn capabilities(&self, trust: Trust, tls: Option<&TlsInfo>) -> Capabilities {
        let mut caps = vec![Capability::Imap4rev2, Capability::Imap4rev1];
        if trust == Trust::Cleartext && !self.implicit_tls && self.tls.is_available() {
            caps.push(Capability::StartTls);
        }
        if self.login_allowed(trust) {
            for m in sasl::advertised(&self.auth_mechanisms, trust, tls) {
                caps.push(Capability::Auth(Bytes::from(m.clone())));
            }
        } else {
            caps.push(Capability::LoginDisabled);
        }
        caps.push(if self.literal_plus {
            Capability::LiteralPlus
        } else {
            Capability::LiteralMinus
        });
        for extra in &self.capabilities {
            caps.push(Capability::Other(Bytes::from(extra.clone())));
        }
        Capabilities::from_caps(&caps)
    }

    fn login_allowed(&self, trust: Trust) -> bool {
        trust == Trust::Tls || (self.insecure_login_in_cleartext && !self.require_tls)
    }
}

impl ServerConfig {
    /// A configuration with safe defaults.
    pub fn new(tls: ServerTls) -> Self {
        ServerConfig {
            greeting: "IMAP server ready".into(),
            tls,
            implicit_tls: false,
            require_tls: false,
            auth_mechanisms: Vec::new(),
            insecure_login_in_cleartext: false,
            capabilities: vec![
                "IDLE".into(),
                "ID".into(),
                "ENABLE".into(),
                "SASL-IR".into(),
            ],
            literal_plus: true,
            injection: InjectionPolicy::Discard,
            limits: Limits::default(),
            replies: PerConfig::default(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if (self.require_tls || self.implicit_tls) && !self.tls.is_available() {
            return Err(ConfigError::TlsRequiredWithoutTls);
        }
        self.limits.validate()?;
        if self.limits.line < 1024 {
            return Err(ConfigError::LimitTooSmall {
                what: "line",
                min: 1024,
            });
        }
        Ok(())
    }
}

/// What an IMAP server session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A command for the application: `LOGIN`, `AUTHENTICATE`, `ID`,
    /// `IDLE`, `ENABLE`, `NOOP` after login, and every other command after
    /// login. Finish it with [`ServerSession::complete`] (after any untagged
    /// data); `AUTHENTICATE` and `IDLE` may first ask for a continuation with
    /// [`ServerSession::continue_request`]. Commands behind it wait.
    Command(Command),
    /// The client's answer to an `AUTHENTICATE` continuation.
    AuthResponse(Secret<Bytes>),
    /// The client cancelled `AUTHENTICATE` with `*`; the session answered
    /// `BAD`.
    AuthCancelled,
    /// The client ended `IDLE` with `DONE`: complete the `IDLE` command.
    IdleDone,
    /// The client asked to authenticate with `AUTHENTICATE EXTERNAL` (RFC
    /// 4422 Appendix A) over TLS with a verified client certificate.
    /// Finish it with [`ServerSession::complete`] (`OK`, or `NO
    /// [AUTHENTICATIONFAILED]`); no continuation follows.
    ExternalAuthRequested(ExternalAuth),
    /// The session refused a command itself and sent this response.
    Refused(Response),
    /// Upgrade and TLS facts.
    Upgrade(UpgradeEvent),
}

impl From<UpgradeEvent> for ServerEvent {
    fn from(e: UpgradeEvent) -> Self {
        ServerEvent::Upgrade(e)
    }
}

/// An IMAP server session: one per accepted connection.
///
/// ```
/// use std::sync::Arc;
/// use starttls::imap::{ServerConfig, ServerSession};
/// use starttls::ServerTls;
///
/// let mut server = ServerSession::new(Arc::new(ServerConfig::new(ServerTls::None))).unwrap();
/// let greeting = server.poll_transmit().unwrap();
/// assert!(greeting.starts_with(b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1"));
/// server.handle_input(b"a1 CAPABILITY\r\n");
/// let out = server.poll_transmit().unwrap();
/// assert!(out.starts_with(b"* CAPABILITY IMAP4rev2") && out.ends_with(b"a1 OK CAPABILITY completed\r\n"));
/// ```
pub struct ServerSession {
    engine: Engine<ServerMachine>,
}

session_io!(ServerSession, ServerEvent);

impl ServerSession {
    /// Starts a session; the greeting is ready in
    /// [`poll_transmit`](Self::poll_transmit) (implicit TLS: after the
    /// handshake).
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, ConfigError> {
        config.validate()?;
        let ec = EngineConfig::server(&config.tls, config.implicit_tls, config.injection);
        let machine = ServerMachine::new(Arc::clone(&config), false);
        Ok(ServerSession {
            engine: Engine::new(config, machine, ec),
        })
    }

    /// Finishes the pending command with a tagged `OK`, `NO` or `BAD`.
    /// An `OK` to `LOGIN` or `AUTHENTICATE` authenticates the session.
    ///
    /// `text` is free text: CR, LF and NUL in it become SP, so it cannot end
    /// the response early. With no `code`, a text that starts with a valid
    /// `[code]` is written as given, and the client reads that code (RFC
    /// 9051 `resp-text`). The response must otherwise pass
    /// [`Response::check`] (a bad [`Code`], a text ending like a literal
    /// header `{5}`), or it is refused with [`UsageError::InvalidValue`] and
    /// nothing is written.
    pub fn complete(
        &mut self,
        status: Status,
        code: Option<Code>,
        text: &str,
    ) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.complete(status, code, text, io))
    }

    /// Finishes the pending command with `OK <NAME> completed`.
    pub fn accept(&mut self) -> Result<(), UsageError> {
        let name = match &self.engine.machine().state {
            State::AppBusy { name, .. } => name.clone(),
            _ => return Err(UsageError::NoCommandPending),
        };
        let text = format!("{} completed", String::from_utf8_lossy(&name));
        self.complete(Status::Ok, None, &text)
    }

    /// Sends an untagged response (`* ...`) for the pending command, or
    /// unsolicited data after login (`* 3 EXISTS`, `* OK [ALERT] ...`).
    ///
    /// The response must pass [`Response::check`] (it is written as given,
    /// not cleaned); otherwise it is refused with
    /// [`UsageError::InvalidValue`] and nothing is written.
    pub fn send_untagged(&mut self, response: &Response) -> Result<(), UsageError> {
        if matches!(
            response,
            Response::Tagged { .. } | Response::Continuation { .. }
        ) {
            return Err(UsageError::WrongState(
                "send_untagged takes untagged responses; use complete or continue_request",
            ));
        }
        self.engine
            .call(|m, io| m.send_checked(io, response, false))
    }

    /// Sends a continuation request (`+ text`) for a pending `AUTHENTICATE`
    /// (the next line is the client's response) or `IDLE` (the client then
    /// idles until `DONE`).
    ///
    /// `text` is free text: CR, LF and NUL in it become SP; a leading
    /// `[code]` is written as given. A text ending like a literal header
    /// (`{5}`) is refused with [`UsageError::InvalidValue`].
    pub fn continue_request(&mut self, text: &[u8]) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.continue_request(text, io))
    }

    /// `true` while a command waits for [`complete`](Self::complete).
    pub fn is_waiting_for_reply(&self) -> bool {
        matches!(self.engine.machine().state, State::AppBusy { .. })
    }

    /// `true` after an `OK` to `LOGIN` or `AUTHENTICATE` in this phase.
    pub fn is_authenticated(&self) -> bool {
        self.engine.machine().authenticated
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Login,
    Authenticate,
    /// `AUTHENTICATE EXTERNAL`, its authorization identity read.
    External,
    Idle,
    Other,
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// The application has a command; nothing more is read until it is
    /// completed or continued.
    AppBusy { tag: Bytes, name: Bytes, kind: Kind },
    /// After a continuation to `AUTHENTICATE`: the next line is a response.
    SaslLine { tag: Bytes },
    /// After the empty continuation to `AUTHENTICATE EXTERNAL`: the next
    /// line is the authorization identity.
    ExternalLine { tag: Bytes },
    /// After a continuation to `IDLE`: the next line must be `DONE`.
    Idle { tag: Bytes },
}

pub(crate) struct ServerMachine {
    config: Arc<ServerConfig>,
    greeted: bool,
    authenticated: bool,
    state: State,
    framer: MessageFramer,
    scanned: usize,
    skipper: LineSkipper,
    errors: u32,
    /// Set when the session closes itself on a limit: the typed error the
    /// caller gets.
    fatal: Option<Error>,
}

/// The tag at the start of a message, if it looks like one.
fn tag_of(message: &[u8]) -> Option<&[u8]> {
    let end = memchr::memchr2(b' ', b'\r', message).unwrap_or(message.len());
    let tag = message.get(..end)?;
    let ok = !tag.is_empty()
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    ok.then_some(tag)
}

impl ServerMachine {
    fn new(config: Arc<ServerConfig>, greeted: bool) -> Self {
        ServerMachine {
            config,
            greeted,
            authenticated: false,
            state: State::Commands,
            framer: MessageFramer::default(),
            scanned: 0,
            skipper: LineSkipper::default(),
            errors: 0,
            fatal: None,
        }
    }

    fn login_allowed(&self, trust: Trust) -> bool {
        self.config.login_allowed(trust)
    }

    /// A tagged response the session writes itself, with a fixed text:
    /// straight into the output (the tag is the one of a parsed command).
    fn send_tagged(
        &self,
        io: &mut Io<'_, ServerEvent>,
        tag: &[u8],
        status: Status,
        text: &'static str,
    ) {
        io.send_parts(&[
            tag,
            b" ",
            status.as_str().as_bytes(),
            b" ",
            text.as_bytes(),
            b"\r\n",
        ]);
    }

    fn send(&self, io: &mut Io<'_, ServerEvent>, r: &Response) {
        let mut v = Vec::with_capacity(64);
        r.write_to(&mut v);
        io.send(&v);
    }

    /// Writes a response built from application values, if it passes
    /// [`Response::check`]; nothing otherwise.
    /// With `free_text`, the text may start with a `[code]` (see
    /// [`Response::check_written`]).
    fn send_checked(
        &self,
        io: &mut Io<'_, ServerEvent>,
        r: &Response,
        free_text: bool,
    ) -> Result<(), UsageError> {
        let mut v = Vec::with_capacity(64);
        r.write_to(&mut v);
        let wire = Bytes::from(v);
        r.check_written(wire.clone(), free_text)?;
        io.send(&wire);
        Ok(())
    }

    fn tagged(tag: &[u8], status: Status, code: Option<Code>, text: &str) -> Response {
        Response::Tagged {
            tag: Bytes::copy_from_slice(tag),
            status: StatusResponse {
                status,
                code,
                text: Bytes::copy_from_slice(text.as_bytes()),
            },
        }
    }

    fn untagged(status: Status, code: Option<Code>, text: &str) -> Response {
        Response::Status(StatusResponse {
            status,
            code,
            text: Bytes::copy_from_slice(text.as_bytes()),
        })
    }

    /// A response the session chose itself to refuse something.
    fn refuse(&mut self, io: &mut Io<'_, ServerEvent>, r: Response) {
        self.send(io, &r);
        io.emit(ServerEvent::Refused(r));
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            self.send(io, &Self::untagged(Status::Bye, None, "Too many errors"));
            io.close();
            self.fatal = Some(Error::LimitExceeded {
                what: "refused commands",
                limit: self.config.limits.max_errors as usize,
            });
        }
    }

    fn bad(&mut self, io: &mut Io<'_, ServerEvent>, tag: Option<&[u8]>, text: &str) {
        let r = match tag {
            Some(t) => Self::tagged(t, Status::Bad, None, text),
            None => Self::untagged(Status::Bad, None, text),
        };
        self.refuse(io, r);
    }

    /// Parses a command borrowed from `message` (no reference counts): the
    /// commands the session answers itself, and those it refuses, never
    /// touch `message`'s storage; a command handed to the application is
    /// attached to `message` ([`crate::octets::attach`]), exactly the value
    /// [`Command::parse`] would give.
    fn command(&mut self, message: Bytes, io: &mut Io<'_, ServerEvent>) {
        let cmd = match CommandRef::parse_borrowed(&message) {
            Ok(c) => c,
            Err(e) => {
                let text = format!("Syntax error: {e}");
                return self.bad(io, tag_of(&message), &text);
            }
        };
        let trust = io.trust();
        let tag: &[u8] = cmd.tag;
        let kind = match &cmd.body {
            CommandBody::Capability => {
                let caps = self.config.capability_reply(trust, io.tls_info());
                io.send(&caps);
                self.send_tagged(io, tag, Status::Ok, "CAPABILITY completed");
                return;
            }
            CommandBody::Logout => {
                io.send(b"* BYE Logging out\r\n");
                self.send_tagged(io, tag, Status::Ok, "LOGOUT completed");
                io.close();
                return;
            }
            CommandBody::StartTls => {
                if trust == Trust::Tls {
                    return self.bad(io, Some(tag), "TLS already active");
                }
                if self.authenticated {
                    return self.bad(
                        io,
                        Some(tag),
                        "STARTTLS is not allowed after authentication",
                    );
                }
                if self.config.implicit_tls || !self.config.tls.is_available() {
                    return self.bad(io, Some(tag), "STARTTLS not available");
                }
                self.send_tagged(io, tag, Status::Ok, "Begin TLS negotiation now");
                // The cut: nothing after this line is ever read in cleartext.
                io.start_upgrade();
                return;
            }
            CommandBody::Noop if !self.authenticated => {
                self.send_tagged(io, tag, Status::Ok, "NOOP completed");
                return;
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                if self.authenticated {
                    return self.bad(io, Some(tag), "Already authenticated");
                }
                if !self.login_allowed(trust) {
                    let r = Self::tagged(
                        tag,
                        Status::No,
                        Some(Code::PrivacyRequired),
                        "Authentication requires TLS; use STARTTLS first",
                    );
                    return self.refuse(io, r);
                }
                if let CommandBody::Authenticate {
                    mechanism,
                    initial_response,
                } = &cmd.body
                {
                    if sasl::is_external(mechanism) {
                        let mut attach = crate::octets::attach(&message);
                        let response = initial_response.as_ref().map(|r| attach(r.expose()));
                        return self.external(attach(tag), response, io);
                    }
                    let known = self
                        .config
                        .auth_mechanisms
                        .iter()
                        .any(|m| m.as_bytes().eq_ignore_ascii_case(mechanism));
                    if !known {
                        let r = Self::tagged(
                            tag,
                            Status::No,
                            None,
                            "Unsupported authentication mechanism",
                        );
                        return self.refuse(io, r);
                    }
                    Kind::Authenticate
                } else {
                    Kind::Login
                }
            }
            CommandBody::Id { .. } => Kind::Other,
            _ if self.config.require_tls && trust == Trust::Cleartext => {
                let r = Self::tagged(
                    tag,
                    Status::No,
                    Some(Code::PrivacyRequired),
                    "Use STARTTLS first",
                );
                return self.refuse(io, r);
            }
            _ if !self.authenticated => {
                return self.bad(io, Some(tag), "Command not valid before authentication");
            }
            CommandBody::Idle => Kind::Idle,
            _ => Kind::Other,
        };
        let cmd: Command = cmd.map_octets(crate::octets::attach(&message));
        self.state = State::AppBusy {
            tag: cmd.tag.clone(),
            name: Bytes::copy_from_slice(cmd.name()),
            kind,
        };
        io.emit(ServerEvent::Command(cmd));
    }

    /// What a command would be refused with, judged from its tag and name
    /// alone: used at a synchronizing literal's header, so that the client
    /// is not invited to send data (a password, in cleartext) for a command
    /// that will be refused anyway (RFC 9051 §7.5 lets the server answer a
    /// literal header with a tagged response instead of `+`).
    fn refusal_before_literal(&self, head: &[u8], trust: Trust) -> Option<Response> {
        let tag = tag_of(head)?;
        let rest = head.get(tag.len() + 1..)?;
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\r')
            .unwrap_or(rest.len());
        let name = rest.get(..end)?;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if (is("LOGIN") || is("AUTHENTICATE")) && !self.login_allowed(trust) {
            return Some(Self::tagged(
                tag,
                Status::No,
                Some(Code::PrivacyRequired),
                "Authentication requires TLS; use STARTTLS first",
            ));
        }
        if is("LOGIN") || is("AUTHENTICATE") || is("ID") {
            return None;
        }
        if self.config.require_tls && trust == Trust::Cleartext {
            return Some(Self::tagged(
                tag,
                Status::No,
                Some(Code::PrivacyRequired),
                "Use STARTTLS first",
            ));
        }
        if !self.authenticated {
            return Some(Self::tagged(
                tag,
                Status::Bad,
                None,
                "Command not valid before authentication",
            ));
        }
        None
    }

    fn complete(
        &mut self,
        status: Status,
        code: Option<Code>,
        text: &str,
        io: &mut Io<'_, ServerEvent>,
    ) -> Result<(), UsageError> {
        let (tag, kind) = match &self.state {
            State::AppBusy { tag, kind, .. } => (tag.clone(), *kind),
            State::SaslLine { tag } => (tag.clone(), Kind::Authenticate),
            _ => return Err(UsageError::NoCommandPending),
        };
        if !matches!(status, Status::Ok | Status::No | Status::Bad) {
            return Err(UsageError::WrongState("a tagged response is OK, NO or BAD"));
        }
        let ok = status == Status::Ok;
        let text = appvalue::clean_text(text.as_bytes());
        let code_is_none = code.is_none();
        let response = Response::Tagged {
            tag,
            status: StatusResponse { status, code, text },
        };
        self.send_checked(io, &response, code_is_none)?;
        if ok && matches!(kind, Kind::Login | Kind::Authenticate | Kind::External) {
            self.authenticated = true;
        }
        self.state = State::Commands;
        Ok(())
    }

    fn continue_request(
        &mut self,
        text: &[u8],
        io: &mut Io<'_, ServerEvent>,
    ) -> Result<(), UsageError> {
        let next = match &self.state {
            State::AppBusy {
                tag,
                kind: Kind::Authenticate,
                ..
            } => State::SaslLine { tag: tag.clone() },
            State::AppBusy {
                tag,
                kind: Kind::Idle,
                ..
            } => State::Idle { tag: tag.clone() },
            _ => {
                return Err(UsageError::WrongState(
                    "continuation requests are for a pending AUTHENTICATE or IDLE",
                ))
            }
        };
        let r = Response::Continuation {
            code: None,
            text: appvalue::clean_text(text),
        };
        self.send_checked(io, &r, true)?;
        self.state = next;
        Ok(())
    }

    /// `AUTHENTICATE EXTERNAL` (RFC 4422 Appendix A), with or without its
    /// initial response (RFC 4959). The session owns the mechanism whatever
    /// the configuration says: it is offered only with a verified client
    /// certificate.
    fn external(&mut self, tag: Bytes, response: Option<Bytes>, io: &mut Io<'_, ServerEvent>) {
        let offered =
            sasl::external_offered(&self.config.auth_mechanisms, io.trust(), io.tls_info());
        if !offered {
            let r = Self::tagged(
                &tag,
                Status::No,
                None,
                "EXTERNAL needs a verified TLS client certificate",
            );
            return self.refuse(io, r);
        }
        match response {
            None => {
                // RFC 9051 §7.5: an empty challenge is `+` SP.
                self.send(
                    io,
                    &Response::Continuation {
                        code: None,
                        text: Bytes::new(),
                    },
                );
                self.state = State::ExternalLine { tag };
            }
            Some(r) => self.external_response(tag, &r, io),
        }
    }

    /// The client's `EXTERNAL` response: reported with the verified
    /// identity, or refused when it is not a valid authorization identity.
    fn external_response(&mut self, tag: Bytes, response: &[u8], io: &mut Io<'_, ServerEvent>) {
        let identity = sasl::server_identity(io.trust(), io.tls_info()).cloned();
        let decoded = sasl::decode_authzid(response);
        match (identity, decoded) {
            (Some(identity), Ok(authzid)) => {
                self.state = State::AppBusy {
                    tag,
                    name: Bytes::from_static(b"AUTHENTICATE"),
                    kind: Kind::External,
                };
                io.emit(ServerEvent::ExternalAuthRequested(ExternalAuth {
                    identity,
                    authzid,
                }));
            }
            (None, _) => {
                let text = "EXTERNAL needs a verified TLS client certificate";
                self.refuse(io, Self::tagged(&tag, Status::No, None, text));
            }
            (_, Err(e)) => self.bad(io, Some(&tag), e.text()),
        }
    }

    /// One line in `SaslLine` or `Idle` state; `Err` for a line that broke
    /// the line rule.
    fn line(&mut self, io: &mut Io<'_, ServerEvent>) -> Option<Result<Bytes, ()>> {
        if self.skipper.is_active() {
            let n = self.skipper.skip(io.input());
            io.skip(n);
            if self.skipper.is_active() {
                return None;
            }
        }
        match scan_line(io.input(), &mut self.scanned, self.config.limits.line) {
            Scan::Incomplete => None,
            Scan::Line(len) => Some(Ok(without_crlf(&io.take(len)))),
            Scan::Invalid { len, .. } => {
                io.skip(len);
                Some(Err(()))
            }
            Scan::TooLong => {
                let limit = self.config.limits.line;
                let after_cr = after_cr(io.input(), limit);
                io.skip(limit);
                self.skipper.start_crlf(after_cr);
                Some(Err(()))
            }
        }
    }
}

impl Machine for ServerMachine {
    type Config = ServerConfig;
    type Event = ServerEvent;

    fn after_tls(config: &Arc<ServerConfig>) -> Self {
        // RFC 9051 §6.2.1: no new greeting; capabilities may differ now.
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
        self.config.limits.input_budget(self.authenticated)
    }
}

impl ServerMachine {
    fn read(&mut self, io: &mut Io<'_, ServerEvent>) -> Result<(), Error> {
        if !self.greeted {
            self.greeted = true;
            let greeting = self.config.greeting_reply(io.trust(), io.tls_info());
            io.send(&greeting);
        }
        loop {
            match &self.state {
                State::AppBusy { .. } => return Ok(()),
                State::SaslLine { tag } => {
                    let tag = tag.clone();
                    let Some(line) = self.line(io) else {
                        return Ok(());
                    };
                    let Ok(line) = line else {
                        // A broken SASL line ends the exchange (RFC 9051
                        // §6.2.2: the server answers BAD).
                        self.state = State::Commands;
                        let r =
                            Self::tagged(&tag, Status::Bad, None, "Invalid AUTHENTICATE response");
                        self.refuse(io, r);
                        io.emit(ServerEvent::AuthCancelled);
                        continue;
                    };
                    if line.as_ref() == b"*" {
                        self.state = State::Commands;
                        self.send(
                            io,
                            &Self::tagged(&tag, Status::Bad, None, "AUTHENTICATE cancelled"),
                        );
                        io.emit(ServerEvent::AuthCancelled);
                    } else {
                        self.state = State::AppBusy {
                            tag,
                            name: Bytes::from_static(b"AUTHENTICATE"),
                            kind: Kind::Authenticate,
                        };
                        io.emit(ServerEvent::AuthResponse(Secret::new(line)));
                    }
                }
                State::ExternalLine { tag } => {
                    let tag = tag.clone();
                    let Some(line) = self.line(io) else {
                        return Ok(());
                    };
                    self.state = State::Commands;
                    match line {
                        Ok(l) if l.as_ref() == b"*" => {
                            self.send(
                                io,
                                &Self::tagged(&tag, Status::Bad, None, "AUTHENTICATE cancelled"),
                            );
                            io.emit(ServerEvent::AuthCancelled);
                        }
                        Ok(l) => self.external_response(tag, &l, io),
                        Err(()) => {
                            let r = Self::tagged(
                                &tag,
                                Status::Bad,
                                None,
                                "Invalid AUTHENTICATE response",
                            );
                            self.refuse(io, r);
                            io.emit(ServerEvent::AuthCancelled);
                        }
                    }
                }
                State::Idle { tag } => {
                    let tag = tag.clone();
                    let Some(line) = self.line(io) else {
                        return Ok(());
                    };
                    if line.as_ref().is_ok_and(|l| is_idle_done(l)) {
                        self.state = State::AppBusy {
                            tag,
                            name: Bytes::from_static(b"IDLE"),
                            kind: Kind::Idle,
                        };
                        io.emit(ServerEvent::IdleDone);
                    } else {
                        self.state = State::Commands;
                        self.bad(io, Some(&tag), "Expected DONE");
                    }
                }
                State::Commands => {
                    let limits = if self.authenticated {
                        self.config.limits.frame()
                    } else {
                        self.config.limits.frame_unauthenticated()
                    };
                    match self.framer.next(io.input(), limits) {
                        Frame::NeedInput => return Ok(()),
                        Frame::Skip(n) => io.skip(n),
                        Frame::Complete(n) => {
                            let message = without_crlf(&io.take(n));
                            self.command(message, io);
                        }
                        Frame::Literal(h) => {
                            let sync = h.mode == LiteralMode::Sync;
                            // RFC 7888 §5: under LITERAL- a non-synchronizing
                            // literal holds at most 4096 octets. Its data comes
                            // regardless, so the stream cannot be kept in step.
                            if !sync && !self.config.literal_plus && h.len > 4096 {
                                self.send(
                                    io,
                                    &Self::untagged(
                                        Status::Bye,
                                        None,
                                        "Non-synchronizing literal too large",
                                    ),
                                );
                                io.close();
                                return Err(Error::LimitExceeded {
                                    what: "non-synchronizing literal (LITERAL-)",
                                    limit: 4096,
                                });
                            }
                            if sync {
                                let head =
                                    io.input().get(..self.framer.framed()).unwrap_or_default();
                                if let Some(r) = self.refusal_before_literal(head, io.trust()) {
                                    let n = self.framer.abandon();
                                    io.skip(n);
                                    self.refuse(io, r);
                                    continue;
                                }
                                let r = Response::Continuation {
                                    code: None,
                                    text: Bytes::from_static(b"Ready for literal data"),
                                };
                                self.send(io, &r);
                            }
                        }
                        Frame::Invalid { error, consumed } => {
                            let tag = io
                                .input()
                                .get(..consumed)
                                .and_then(tag_of)
                                .map(Bytes::copy_from_slice);
                            io.skip(consumed);
                            match error {
                                FrameError::LiteralTooLarge { header, limit }
                                    if header.mode != LiteralMode::Sync =>
                                {
                                    // Its data is coming regardless: no way to
                                    // stay in step with the client.
                                    self.send(
                                        io,
                                        &Self::untagged(Status::Bye, None, "Literal too large"),
                                    );
                                    io.close();
                                    return Err(Error::LimitExceeded {
                                        what: "non-synchronizing literal",
                                        limit: usize::try_from(limit).unwrap_or(usize::MAX),
                                    });
                                }
                                FrameError::LiteralTooLarge { .. }
                                | FrameError::MessageTooLarge { .. } => {
                                    // A synchronizing literal is simply refused;
                                    // the client will not send its data.
                                    let r = match &tag {
                                        Some(t) => Self::tagged(
                                            t,
                                            Status::No,
                                            Some(Code::Other {
                                                name: Bytes::from_static(b"TOOBIG"),
                                                args: None,
                                            }),
                                            "Literal too large",
                                        ),
                                        None => {
                                            Self::untagged(Status::Bad, None, "Literal too large")
                                        }
                                    };
                                    self.refuse(io, r);
                                }
                                FrameError::BadLiteral => {
                                    self.bad(io, tag.as_deref(), "Invalid literal")
                                }
                                FrameError::Line(e) => {
                                    let text = format!("Syntax error: {e}");
                                    self.bad(io, tag.as_deref(), &text);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl crate::session::Timed for ServerMachine {
    fn waiting(&self) -> crate::session::Waiting {
        use crate::session::Waiting;
        match self.state {
            State::AppBusy { .. } => Waiting::Application,
            State::Commands
            | State::SaslLine { .. }
            | State::ExternalLine { .. }
            | State::Idle { .. } => Waiting::Command,
        }
    }

    /// RFC 9051 §5.4 (autologout) and §7.1.5 (`BYE`).
    fn goodbye(&self) -> Option<Vec<u8>> {
        Some(b"* BYE Autologout; idle for too long\r\n".to_vec())
    }
}

#[cfg(test)]
mod reply_cache_tests {
    use super::*;
    use crate::tls::ClientIdentity;

    fn config(f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
        let mut c = ServerConfig::new(ServerTls::External);
        c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
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

    /// The greeting, then the answer to `CAPABILITY` in cleartext or
    /// (bring-your-own TLS) after STARTTLS with `info`.
    fn session(config: &Arc<ServerConfig>, tls: Option<TlsInfo>) -> (String, String) {
        let mut s = ServerSession::new(Arc::clone(config)).unwrap();
        let greeting = out(&mut s);
        if let Some(info) = tls {
            s.handle_input(b"a STARTTLS\r\n");
            assert_eq!(out(&mut s), "a OK Begin TLS negotiation now\r\n");
            s.tls_established(info).unwrap();
            while let Some(e) = s.poll_event().unwrap() {
                assert!(matches!(e, ServerEvent::Upgrade(_)), "{e:?}");
            }
            assert_eq!(s.trust(), Trust::Tls);
        }
        s.handle_input(b"b7 CAPABILITY\r\n");
        (greeting, out(&mut s))
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
        assert!(c.replies.get().is_none(), "built only at the first session");
        let first = session(&c, None);
        let at = |c: &ServerConfig| {
            let r = c.replies.get().expect("built at the first greeting");
            [
                &r.greeting[0],
                &r.greeting[1],
                &r.capability[0],
                &r.capability[1],
            ]
            .map(|b| b.as_ptr())
        };
        let before = at(&c);
        let second = session(&c, None);
        let tls = session(&c, Some(TlsInfo::unknown()));
        assert_eq!(at(&c), before);
        assert_eq!(first, second);
        // The cached octets are the responses built from the configuration,
        // followed by the tagged completion written for this command.
        assert_eq!(
            first.0.as_bytes(),
            &c.build_greeting(Trust::Cleartext, None)[..]
        );
        let capability = c.build_capability(Trust::Cleartext, None);
        assert_eq!(
            first.1,
            format!(
                "{}b7 OK CAPABILITY completed\r\n",
                String::from_utf8(capability).unwrap()
            )
        );
        let capability = c.build_capability(Trust::Tls, Some(&TlsInfo::unknown()));
        assert!(tls.1.starts_with(std::str::from_utf8(&capability).unwrap()));
    }

    #[test]
    fn cleartext_and_tls_variants() {
        let c = config(|c| c.greeting = "hi".into());
        let (greeting, clear) = session(&c, None);
        assert_eq!(
            greeting,
            "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ IDLE ID \
             ENABLE SASL-IR] hi\r\n"
        );
        assert_eq!(
            clear,
            "* CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ IDLE ID ENABLE \
             SASL-IR\r\nb7 OK CAPABILITY completed\r\n"
        );
        // Over TLS: AUTH=, no STARTTLS; EXTERNAL only with a verified client
        // certificate, never from the cache.
        let (_, tls) = session(&c, Some(TlsInfo::unknown()));
        assert_eq!(
            tls,
            "* CAPABILITY IMAP4rev2 IMAP4rev1 AUTH=PLAIN LITERAL+ IDLE ID ENABLE SASL-IR\r\n\
             b7 OK CAPABILITY completed\r\n"
        );
        let (_, with_cert) = session(
            &c,
            Some(TlsInfo::unknown().with_client_identity(identity())),
        );
        assert!(
            with_cert
                .starts_with("* CAPABILITY IMAP4rev2 IMAP4rev1 AUTH=PLAIN AUTH=EXTERNAL LITERAL+"),
            "{with_cert}"
        );
        // ... and that response did not go into the cache.
        assert_eq!(session(&c, Some(TlsInfo::unknown())).1, tls);
        assert_eq!(session(&c, None).1, clear);
    }

    #[test]
    fn implicit_tls_greets_with_the_tls_capabilities() {
        let c = config(|c| c.implicit_tls = true);
        let mut s = ServerSession::new(Arc::clone(&c)).unwrap();
        assert_eq!(out(&mut s), "");
        s.tls_established(TlsInfo::unknown()).unwrap();
        assert_eq!(
            out(&mut s),
            "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 AUTH=PLAIN LITERAL+ IDLE ID ENABLE SASL-IR] \
             IMAP server ready\r\n"
        );
    }

    #[test]
    fn a_changed_configuration_gets_its_own_replies() {
        let c = config(|_| {});
        let before = session(&c, None);
        // A clone changed after the original was used.
        let mut clone = (*c).clone();
        clone.literal_plus = false;
        clone.greeting = "other".into();
        let clone = Arc::new(clone);
        let (greeting, caps) = session(&clone, None);
        assert!(greeting.contains(" LITERAL- ") && greeting.ends_with("] other\r\n"));
        assert!(caps.contains(" LITERAL- "), "{caps}");
        assert_eq!(session(&c, None), before);
        // The same configuration changed in place once its sessions are gone.
        let mut c = c;
        let m = Arc::get_mut(&mut c).expect("no session left");
        m.insecure_login_in_cleartext = true;
        m.capabilities = vec!["UIDPLUS".into()];
        let (greeting, caps) = session(&c, None);
        assert_eq!(
            greeting,
            "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS AUTH=PLAIN LITERAL+ UIDPLUS] \
             IMAP server ready\r\n"
        );
        assert!(caps.starts_with("* CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS AUTH=PLAIN"));
        let m = Arc::get_mut(&mut c).unwrap();
        m.require_tls = true;
        assert!(session(&c, None).1.contains(" LOGINDISABLED "));
        let m = Arc::get_mut(&mut c).unwrap();
        m.require_tls = false;
        m.tls = ServerTls::None;
        assert!(!session(&c, None).0.contains("STARTTLS"));
        let m = Arc::get_mut(&mut c).unwrap();
        m.auth_mechanisms = vec!["LOGIN".into()];
        assert!(session(&c, None).1.contains(" AUTH=LOGIN "));
    }
}
