//! The SMTP / submission / LMTP client session.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ConfigError, Error, Step, TlsRefusal, UsageError};
use crate::framing::{scan_line_fail_fast, Scan};
use crate::policy::TlsPolicy;
use crate::sasl;
use crate::secret::Secret;
use crate::tls::ClientTls;
use crate::trust::{Received, Trust};
use crate::upgrade::{
    session_io, Engine, EngineConfig, InjectionPolicy, InputBudget, Io, Machine, UpgradeEvent,
};

use super::capability::{Capabilities, Kept};
use super::command::{Command, Host, Parameter, Parameters, ReversePath};
use super::policy::{has_require_tls, RequireTlsRefusal};
use super::reply::{parse_reply_line, Reply};
use super::Limits;
use crate::appvalue;
use crate::dot::DotStuffer;

/// Client configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The name sent with `EHLO`/`HELO`/`LHLO`.
    pub helo_name: String,
    /// What the client requires of TLS.
    pub policy: TlsPolicy,
    /// How TLS is done (rustls in memory, or bring your own).
    pub tls: ClientTls,
    /// Speak LMTP (RFC 2033): `LHLO`, and one reply per accepted recipient
    /// after the data.
    pub lmtp: bool,
    /// What to do with bytes the server sends after `220` to `STARTTLS` and
    /// before TLS. Default: fail ([`Error::ResponseInjection`]).
    pub injection: InjectionPolicy,
    /// Allow `AUTH` over a cleartext session (only reachable with
    /// [`TlsPolicy::Opportunistic`]). Off by default.
    pub insecure_auth_in_cleartext: bool,
    /// Size limits.
    pub limits: Limits,
}

impl ClientConfig {
    /// A configuration with safe defaults.
    pub fn new(helo_name: impl Into<String>, policy: TlsPolicy, tls: ClientTls) -> Self {
        ClientConfig {
            helo_name: helo_name.into(),
            policy,
            tls,
            lmtp: false,
            injection: InjectionPolicy::Fail,
            insecure_auth_in_cleartext: false,
            limits: Limits::default(),
        }
    }
}

/// What a client session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server greeting (with implicit TLS, received over TLS).
    Greeting(Received<Reply>),
    /// The server's `EHLO`/`LHLO` capabilities. After an upgrade they are
    /// reported again, over TLS, and replace the cleartext ones entirely.
    Capabilities(Received<Capabilities>),
    /// Negotiation is over: the application may send commands. `trust` is
    /// [`Trust::Tls`] unless the policy is
    /// [`Opportunistic`](TlsPolicy::Opportunistic) and TLS was not available.
    Ready {
        /// Whether the session is protected by TLS.
        trust: Trust,
    },
    /// The reply to an application command. `to` is the command's verb, or
    /// `"end of data"` for the reply after the message.
    Reply {
        /// What the reply answers.
        to: &'static str,
        /// The reply, with the trust level of the channel.
        reply: Received<Reply>,
    },
    /// Upgrade and TLS facts.
    Upgrade(UpgradeEvent),
}

impl From<UpgradeEvent> for ClientEvent {
    fn from(e: UpgradeEvent) -> Self {
        ClientEvent::Upgrade(e)
    }
}

/// A client session: one per connection.
///
/// It negotiates by itself (greeting, `EHLO`, `STARTTLS`, handshake, `EHLO`
/// again) and reports [`ClientEvent::Ready`]; only then does
/// [`send`](Self::send) accept commands. The upgrade is not a method: under
/// [`TlsPolicy::StartTlsRequired`] there is no way to make the session send
/// anything but the negotiation in cleartext.
///
/// ```
/// use std::sync::Arc;
/// use starttls::smtp::{ClientConfig, ClientSession};
/// use starttls::{ClientTls, Error, Step, TlsPolicy, TlsRefusal};
///
/// let config = Arc::new(ClientConfig::new("client.example", TlsPolicy::StartTlsRequired, ClientTls::External));
/// let mut client = ClientSession::new(config).unwrap();
/// client.handle_input(b"220 mx.example ESMTP\r\n");
/// let _ = client.poll_event(); // greeting
/// assert_eq!(client.poll_transmit().unwrap().as_ref(), b"EHLO client.example\r\n");
///
/// // An attacker strips STARTTLS from the capabilities:
/// client.handle_input(b"250-mx.example\r\n250 AUTH PLAIN\r\n");
/// let _ = client.poll_event(); // capabilities (cleartext)
/// assert_eq!(
///     client.poll_event(),
///     Err(Error::TlsRequired { step: Step::Capabilities, reason: TlsRefusal::NotOffered })
/// );
/// assert_eq!(client.poll_transmit().unwrap().as_ref(), b"QUIT\r\n");
/// ```
pub struct ClientSession {
    engine: Engine<ClientMachine>,
}

session_io!(ClientSession, ClientEvent);

impl ClientSession {
    /// Starts a session. With [`TlsPolicy::Implicit`] the ClientHello is ready
    /// in [`poll_transmit`](Self::poll_transmit) at once.
    pub fn new(config: Arc<ClientConfig>) -> Result<Self, ConfigError> {
        let domain = helo_host(&config.helo_name).ok_or(ConfigError::InvalidHostname)?;
        let ec = EngineConfig::client(&config.tls, config.policy, config.injection);
        let mut machine = ClientMachine::new(Arc::clone(&config), false);
        machine.hello_line = hello_line(domain, config.lmtp);
        Ok(ClientSession {
            engine: Engine::new(config, machine, ec),
        })
    }

    /// Sends an application command (after [`ClientEvent::Ready`]). Its reply
    /// comes as [`ClientEvent::Reply`].
    ///
    /// Refused: `STARTTLS`, `EHLO`, `HELO`, `LHLO` (the session issues those
    /// itself); `AUTH` in cleartext; a `MAIL` with `REQUIRETLS` where RFC
    /// 8689 forbids it (see [`send_mail_require_tls`](Self::send_mail_require_tls));
    /// a second command while one is outstanding if the server lacks
    /// `PIPELINING`; anything while message data is being sent; a command
    /// whose line would not parse back to the same command
    /// ([`Command::check`]: a CR or LF in a field, a bad domain, path or
    /// parameter), with [`UsageError::InvalidValue`] and nothing written.
    pub fn send(&mut self, command: Command) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.send(command, io))
    }

    /// Sends `MAIL FROM:<from> params REQUIRETLS` for a message that
    /// requires TLS (RFC 8689): one received with `REQUIRETLS`, or submitted
    /// by a user who asked for it. The parameter is added unless `params`
    /// has it already.
    ///
    /// Refused with [`UsageError::RequireTls`], sending nothing, when the
    /// session is not protected by TLS or the server's `EHLO` reply over TLS
    /// does not advertise `REQUIRETLS` (RFC 8689 §4.2.1 steps 4 and 5). Then
    /// do not send the message here, nor in cleartext anywhere: try the next
    /// MX host, and bounce with [`RequireTlsRefusal::status`] when none is
    /// left (see [`policy`](super::policy)).
    pub fn send_mail_require_tls(
        &mut self,
        from: ReversePath,
        params: &Parameters,
    ) -> Result<(), UsageError> {
        let params = if has_require_tls(params) {
            params.clone()
        } else {
            let mut all: Vec<Parameter> = params.iter().collect();
            all.push(Parameter::RequireTls);
            Parameters::from_params(&all)
        };
        self.send(Command::Mail { from, params })
    }

    /// Whether a message that requires TLS (RFC 8689 `REQUIRETLS`) may be
    /// sent on this session now: `Err` names the rule that forbids it.
    /// Useful to decide before starting the transaction.
    pub fn check_require_tls(&self) -> Result<(), RequireTlsRefusal> {
        require_tls_allowed(self.engine.trust(), self.engine.machine().caps.as_ref())
    }

    /// Sends message data after the `354` reply to `DATA`. Dot-stuffing and
    /// CRLF normalization are done here; call as often as needed.
    pub fn send_data(&mut self, body: &[u8]) -> Result<(), UsageError> {
        self.engine.call(|m, io| {
            let stuffer = m.data.as_mut().ok_or(UsageError::WrongState(
                "send_data needs a 354 reply to DATA first",
            ))?;
            stuffer.encode(body, io.out());
            Ok(())
        })
    }

    /// Ends the message (`CRLF.CRLF`). The reply comes as
    /// [`ClientEvent::Reply`] with `to == "end of data"` (LMTP: one per
    /// accepted recipient).
    pub fn finish_data(&mut self) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.finish_data(io))
    }

    /// Sends one `BDAT` chunk (RFC 3030; the server must offer `CHUNKING`).
    pub fn send_chunk(&mut self, chunk: &[u8], last: bool) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.send_chunk(chunk, last, io))
    }

    /// Authenticates with SASL `EXTERNAL` (RFC 4422 Appendix A): the TLS
    /// client certificate is the credential, `authzid` the identity to act
    /// as (`None`: the one the certificate names). Sends `AUTH EXTERNAL`
    /// with the initial response; the outcome comes as
    /// [`ClientEvent::Reply`] to `"AUTH"`.
    ///
    /// Refused with [`UsageError::External`], sending nothing, unless the
    /// session is over TLS, a client certificate was configured
    /// ([`TlsInfo::own_certificate`](crate::TlsInfo::own_certificate)) and
    /// the server advertised `AUTH EXTERNAL` over TLS. An `AUTH EXTERNAL`
    /// given to [`send`](Self::send) is checked the same way.
    pub fn send_auth_external(&mut self, authzid: Option<&str>) -> Result<(), UsageError> {
        let response = sasl::response(authzid)?;
        self.send(Command::Auth {
            mechanism: Bytes::from_static(sasl::EXTERNAL.as_bytes()),
            initial_response: Some(Secret::new(response)),
        })
    }

    /// Answers a `334` challenge during `AUTH` with a base64 line (`*`
    /// cancels). Anything else (a CR or LF in it) is refused with
    /// [`UsageError::InvalidValue`], writing nothing.
    pub fn send_auth_response(&mut self, response: Secret<Bytes>) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.send_auth_response(response, io))
    }

    /// The capabilities in force: after an upgrade, only those received over
    /// TLS. Read again at each call from the reply the session keeps (an
    /// idle session holds the reply's octets, not the parsed list).
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.engine.machine().caps.as_ref().map(Kept::expand)
    }

    /// `true` after [`ClientEvent::Ready`].
    pub fn is_ready(&self) -> bool {
        self.engine.machine().ready
    }
}

/// RFC 8689 §4.2.1 steps 4 and 5: TLS, and `REQUIRETLS` in the capabilities
/// (which, over TLS, are only those received over TLS).
fn require_tls_allowed(trust: Trust, caps: Option<&Kept>) -> Result<(), RequireTlsRefusal> {
    if trust != Trust::Tls {
        return Err(RequireTlsRefusal::NoTls);
    }
    if !caps.is_some_and(Kept::require_tls) {
        return Err(RequireTlsRefusal::NotAdvertised);
    }
    Ok(())
}

/// Parses the configured `EHLO` name (a domain or an address literal).
fn helo_host(name: &str) -> Option<Host> {
    let line = Bytes::from(format!("EHLO {name}"));
    match Command::parse(&line) {
        Ok(Command::Ehlo { domain }) => Some(domain),
        _ => None,
    }
}

/// The `EHLO`/`LHLO` line for the configured name, CRLF included, written
/// once per session (it is sent in cleartext and again over TLS).
fn hello_line(domain: Host, lmtp: bool) -> Box<[u8]> {
    let cmd = if lmtp {
        Command::Lhlo { domain }
    } else {
        Command::Ehlo { domain }
    };
    let mut v = Vec::with_capacity(64);
    cmd.write_to(&mut v);
    v.into_boxed_slice()
}

/// What the next reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Hello,
    Helo,
    StartTls,
    App(&'static str),
    MessageEnd,
}

pub(crate) struct ClientMachine {
    config: Arc<ClientConfig>,
    /// Built after STARTTLS: begins by sending `EHLO` over TLS.
    after_tls: bool,
    /// The `EHLO`/`LHLO` line ([`hello_line`]), built from the configuration
    /// when the session starts; empty once the last one (over TLS) is sent.
    hello_line: Box<[u8]>,
    started: bool,
    /// Replies we wait for, each with the write position of its command.
    expect: VecDeque<(Expect, u64)>,
    /// The capabilities in force, kept compact.
    caps: Option<Kept>,
    ready: bool,
    quitting: bool,
    /// Multi-line reply framing: offset of the next line, lines so far, the
    /// code of the first line.
    rpos: usize,
    rlines: usize,
    rcode: Option<u16>,
    /// Length of the first line of the reply being framed, CRLF excluded.
    rfirst: usize,
    scanned: usize,
    /// `Some` between `354` and `finish_data`.
    data: Option<DotStuffer>,
    data_sent: bool,
    accepted_rcpts: u32,
    challenged: bool,
    /// Our `AUTH` succeeded: the larger input budget applies.
    authenticated: bool,
}

impl ClientMachine {
    fn new(config: Arc<ClientConfig>, after_tls: bool) -> Self {
        let mut expect = VecDeque::new();
        if !after_tls {
            expect.push_back((Expect::Greeting, 0));
        }
        ClientMachine {
            config,
            after_tls,
            hello_line: Box::default(),
            started: false,
            expect,
            caps: None,
            ready: false,
            quitting: false,
            rpos: 0,
            rlines: 0,
            rcode: None,
            rfirst: 0,
            scanned: 0,
            data: None,
            data_sent: false,
            accepted_rcpts: 0,
            challenged: false,
            authenticated: false,
        }
    }

    fn expect_reply(&mut self, e: Expect, io: &Io<'_, ClientEvent>) {
        self.expect.push_back((e, io.written()));
    }

    fn step(&self, trust: Trust) -> Step {
        match self.expect.front().map(|(e, _)| e) {
            _ if self.ready => Step::Ready,
            Some(Expect::Greeting) => Step::Greeting,
            Some(Expect::Helo) => Step::Helo,
            Some(Expect::StartTls) => Step::StartTls,
            _ if trust == Trust::Tls => Step::CapabilitiesAfterTls,
            _ => Step::Capabilities,
        }
    }

    fn write(&mut self, cmd: &Command, io: &mut Io<'_, ClientEvent>) {
        match cmd {
            // The commands without fields: their line is the verb.
            Command::Quit => io.send(b"QUIT\r\n"),
            Command::StartTls => io.send(b"STARTTLS\r\n"),
            Command::Data => io.send(b"DATA\r\n"),
            Command::Rset => io.send(b"RSET\r\n"),
            _ => {
                let mut v = Vec::with_capacity(64);
                cmd.write_to(&mut v);
                io.send(&v);
            }
        }
    }

    fn hello(&mut self, io: &mut Io<'_, ClientEvent>) {
        io.send(&self.hello_line);
        if io.trust() == Trust::Tls {
            // No other EHLO follows on this connection.
            self.hello_line = Box::default();
        }
        self.expect_reply(Expect::Hello, io);
    }

    /// A polite goodbye before failing closed; only ever `QUIT`.
    fn quit_and(&mut self, io: &mut Io<'_, ClientEvent>, e: Error) -> Result<(), Error> {
        self.write(&Command::Quit, io);
        self.quitting = true;
        Err(e)
    }

    fn ready(&mut self, io: &mut Io<'_, ClientEvent>) {
        self.ready = true;
        if self.expect.is_empty() {
            // Kept while negotiating; an idle session keeps no slots.
            self.expect = VecDeque::new();
        }
        let trust = io.trust();
        io.emit(ClientEvent::Ready { trust });
    }

    /// The next complete reply, if the input holds one.
    fn next_reply(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<Option<Reply>, Error> {
        let limits = self.config.limits;
        loop {
            let rest = io.input().get(self.rpos..).unwrap_or_default();
            let len = match scan_line_fail_fast(rest, &mut self.scanned, limits.reply_line) {
                Scan::Incomplete => return Ok(None),
                Scan::TooLong => {
                    return Err(Error::Framing(crate::FramingError::TooLong {
                        limit: limits.reply_line,
                    }))
                }
                Scan::Invalid { error, .. } => return Err(Error::Framing(error)),
                Scan::Line(len) => len,
            };
            let step = self.step(io.trust());
            let line = rest.get(..len - 2).unwrap_or_default();
            let parsed = parse_reply_line(line).map_err(|e| Error::Malformed {
                step,
                reason: e.to_string(),
            })?;
            let code = parsed.code.get();
            let last = parsed.last;
            self.check_line_order(code, io)?;
            match self.rcode {
                Some(c) if c != code => {
                    return Err(Error::Malformed {
                        step,
                        reason: format!(
                            "reply code changed from {c} to {code} inside a multi-line reply"
                        ),
                    })
                }
                _ => self.rcode = Some(code),
            }
            if self.rlines == 0 {
                self.rfirst = line.len();
            }
            self.rpos += len;
            self.rlines += 1;
            if last {
                let code = parsed.code;
                let raw = io.take(self.rpos);
                // Every line was checked above as `Reply::parse` checks it.
                let reply = Reply::from_checked_lines(raw, code, self.rfirst);
                self.rpos = 0;
                self.rlines = 0;
                self.rcode = None;
                return Ok(Some(reply));
            }
            if self.rlines >= limits.reply_lines {
                return Err(Error::LimitExceeded {
                    what: "lines in one reply",
                    limit: limits.reply_lines,
                });
            }
        }
    }

    /// Every line of a reply, the first of a multi-line one included, must
    /// answer a command the caller has already taken for sending: no honest
    /// server answers what it has not received. Checked per line, so a
    /// planted first line fails the session when it arrives, not when (or
    /// whether) its reply completes.
    fn check_line_order(&self, code: u16, io: &Io<'_, ClientEvent>) -> Result<(), Error> {
        let detail = match self.expect.front() {
            None => format!("reply {code} with no command outstanding"),
            Some((_, sent_at)) if io.sent() < *sent_at => {
                format!("reply {code} arrived before its command was sent")
            }
            Some(_) => return Ok(()),
        };
        Err(Error::UnexpectedReply {
            step: self.step(io.trust()),
            detail,
        })
    }

    fn on_reply(
        &mut self,
        exp: Expect,
        reply: Reply,
        io: &mut Io<'_, ClientEvent>,
    ) -> Result<(), Error> {
        let trust = io.trust();
        let code = reply.code().get();
        let class = code / 100;
        let policy = self.config.policy;
        match exp {
            Expect::Greeting => {
                io.emit(ClientEvent::Greeting(Received::new(reply, trust)));
                if code != 220 {
                    let e = Error::Refused {
                        step: Step::Greeting,
                        status: code.to_string(),
                    };
                    return self.quit_and(io, e);
                }
                self.hello(io);
            }
            Expect::Hello => {
                let step = if trust == Trust::Tls {
                    Step::CapabilitiesAfterTls
                } else {
                    Step::Capabilities
                };
                if class == 2 {
                    let caps =
                        Capabilities::from_ehlo_reply(&reply).map_err(|e| Error::Malformed {
                            step,
                            reason: e.to_string(),
                        })?;
                    let starttls = caps.has_starttls();
                    self.caps = Some(Kept::new(&reply, &caps));
                    io.emit(ClientEvent::Capabilities(Received::new(caps, trust)));
                    if trust == Trust::Tls {
                        self.ready(io);
                    } else if starttls && policy.attempts_tls() {
                        self.write(&Command::StartTls, io);
                        self.expect_reply(Expect::StartTls, io);
                    } else if policy.requires_tls() {
                        let e = Error::TlsRequired {
                            step,
                            reason: TlsRefusal::NotOffered,
                        };
                        return self.quit_and(io, e);
                    } else {
                        self.ready(io);
                    }
                } else if class == 5 && trust == Trust::Cleartext && !self.config.lmtp {
                    if policy.requires_tls() {
                        let e = Error::TlsRequired {
                            step,
                            reason: TlsRefusal::NotExtended,
                        };
                        return self.quit_and(io, e);
                    }
                    let domain = helo_host(&self.config.helo_name)
                        .unwrap_or_else(|| Host::Domain(Bytes::from_static(b"localhost")));
                    self.write(&Command::Helo { domain }, io);
                    self.expect_reply(Expect::Helo, io);
                } else {
                    let e = Error::Refused {
                        step,
                        status: code.to_string(),
                    };
                    return self.quit_and(io, e);
                }
            }
            Expect::Helo => {
                if class != 2 {
                    let e = Error::Refused {
                        step: Step::Helo,
                        status: code.to_string(),
                    };
                    return self.quit_and(io, e);
                }
                self.caps = None;
                self.ready(io);
            }
            Expect::StartTls => {
                if code == 220 {
                    // The cut: the engine takes over from the end of this reply.
                    io.start_upgrade();
                    return Ok(());
                }
                let status = code.to_string();
                let negative = class == 4 || class == 5;
                match (policy.requires_tls(), negative) {
                    (true, true) => {
                        let e = Error::TlsRequired {
                            step: Step::StartTls,
                            reason: TlsRefusal::Refused { status },
                        };
                        return self.quit_and(io, e);
                    }
                    (true, false) => {
                        return Err(Error::TlsRequired {
                            step: Step::StartTls,
                            reason: TlsRefusal::OddReply { status },
                        })
                    }
                    (false, true) => {
                        // Opportunistic: go on in cleartext, but say why.
                        io.emit(ClientEvent::Reply {
                            to: "STARTTLS",
                            reply: Received::new(reply, trust),
                        });
                        self.ready(io);
                    }
                    (false, false) => {
                        return Err(Error::UnexpectedReply {
                            step: Step::StartTls,
                            detail: format!("{code} is not an answer to STARTTLS"),
                        })
                    }
                }
            }
            Expect::App(verb) => {
                match verb {
                    "DATA" if code == 354 => self.data = Some(DotStuffer::default()),
                    "DATA" => self.data_sent = false,
                    "RCPT" if class == 2 => self.accepted_rcpts += 1,
                    "AUTH" => {
                        self.challenged = code == 334;
                        self.authenticated |= class == 2;
                    }
                    "QUIT" => io.close(),
                    _ => {}
                }
                io.emit(ClientEvent::Reply {
                    to: verb,
                    reply: Received::new(reply, trust),
                });
            }
            Expect::MessageEnd => {
                io.emit(ClientEvent::Reply {
                    to: "end of data",
                    reply: Received::new(reply, trust),
                });
            }
        }
        Ok(())
    }

    fn check_can_send(&self) -> Result<(), UsageError> {
        if !self.ready {
            return Err(UsageError::NotReady);
        }
        if self.quitting {
            return Err(UsageError::Closed);
        }
        if self.data.is_some() || self.data_sent {
            return Err(UsageError::WrongState(
                "a message is in progress: wait for the 354 reply, send the data, then finish_data",
            ));
        }
        if !self.expect.is_empty() && !self.caps.as_ref().is_some_and(Kept::pipelining) {
            return Err(UsageError::WouldPipeline);
        }
        Ok(())
    }

    fn send(&mut self, cmd: Command, io: &mut Io<'_, ClientEvent>) -> Result<(), UsageError> {
        self.check_can_send()?;
        cmd.check()?;
        let verb = cmd.verb();
        match cmd {
            Command::StartTls
            | Command::Ehlo { .. }
            | Command::Helo { .. }
            | Command::Lhlo { .. } => return Err(UsageError::ReservedCommand(verb)),
            Command::Auth { ref mechanism, .. } if sasl::is_external(mechanism) => {
                let advertised = self
                    .caps
                    .as_ref()
                    .is_some_and(|c| c.expand().auth_mechanisms().any(|m| sasl::is_external(&m)));
                sasl::client_check(io.trust(), io.tls_info(), advertised)?;
            }
            Command::Auth { .. }
                if io.trust() == Trust::Cleartext && !self.config.insecure_auth_in_cleartext =>
            {
                return Err(UsageError::CleartextCredentials)
            }
            Command::Mail { ref params, .. } => {
                if has_require_tls(params) {
                    require_tls_allowed(io.trust(), self.caps.as_ref())
                        .map_err(UsageError::RequireTls)?;
                }
                self.accepted_rcpts = 0;
            }
            Command::Data => self.data_sent = true,
            Command::Quit => self.quitting = true,
            _ => {}
        }
        self.challenged = false;
        self.write(&cmd, io);
        self.expect_reply(Expect::App(verb), io);
        Ok(())
    }

    fn finish_data(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), UsageError> {
        let mut stuffer = self.data.take().ok_or(UsageError::WrongState(
            "finish_data needs a 354 reply to DATA first",
        ))?;
        stuffer.finish(io.out());
        self.data_sent = false;
        let replies = if self.config.lmtp {
            self.accepted_rcpts.max(1)
        } else {
            1
        };
        for _ in 0..replies {
            self.expect_reply(Expect::MessageEnd, io);
        }
        Ok(())
    }

    fn send_chunk(
        &mut self,
        chunk: &[u8],
        last: bool,
        io: &mut Io<'_, ClientEvent>,
    ) -> Result<(), UsageError> {
        self.check_can_send()?;
        if !self.caps.as_ref().is_some_and(Kept::chunking) {
            return Err(UsageError::WrongState("the server does not offer CHUNKING"));
        }
        let cmd = Command::Bdat {
            size: chunk.len() as u64,
            last,
        };
        self.write(&cmd, io);
        io.send(chunk);
        self.expect_reply(
            if last && self.config.lmtp {
                Expect::MessageEnd
            } else {
                Expect::App("BDAT")
            },
            io,
        );
        if last && self.config.lmtp {
            for _ in 1..self.accepted_rcpts.max(1) {
                self.expect_reply(Expect::MessageEnd, io);
            }
        }
        Ok(())
    }

    fn send_auth_response(
        &mut self,
        response: Secret<Bytes>,
        io: &mut Io<'_, ClientEvent>,
    ) -> Result<(), UsageError> {
        if !self.challenged || !self.expect.is_empty() {
            return Err(UsageError::WrongState(
                "no 334 challenge is waiting for an answer",
            ));
        }
        if io.trust() == Trust::Cleartext && !self.config.insecure_auth_in_cleartext {
            return Err(UsageError::CleartextCredentials);
        }
        appvalue::check_sasl_response(response.expose())?;
        self.challenged = false;
        io.send(response.expose());
        io.send(b"\r\n");
        self.expect_reply(Expect::App("AUTH"), io);
        Ok(())
    }
}

impl Machine for ClientMachine {
    type Config = ClientConfig;
    type Event = ClientEvent;

    fn after_tls(config: &Arc<ClientConfig>) -> Self {
        ClientMachine::new(Arc::clone(config), true)
    }

    /// The `EHLO` line, which the session wrote from its configuration when
    /// it started (never anything the server sent).
    fn carry_over(&mut self, next: &mut Self) {
        next.hello_line = std::mem::take(&mut self.hello_line);
    }

    fn process(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        if self.after_tls && !self.started {
            // RFC 3207 §4.2: discard all knowledge from before TLS, ask again.
            self.started = true;
            self.hello(io);
        }
        while let Some(reply) = self.next_reply(io)? {
            let step = self.step(io.trust());
            let Some((exp, sent_at)) = self.expect.pop_front() else {
                return Err(Error::UnexpectedReply {
                    step,
                    detail: format!("reply {} with no command outstanding", reply.code().get()),
                });
            };
            if self.expect.is_empty() && self.ready {
                // Nothing outstanding: an idle session keeps no slots (a
                // negotiating one keeps them for its next command).
                self.expect = VecDeque::new();
            }
            if io.sent() < sent_at {
                // No honest server answers a command it has not received.
                return Err(Error::UnexpectedReply {
                    step,
                    detail: format!(
                        "reply {} arrived before its command was sent",
                        reply.code().get()
                    ),
                });
            }
            self.on_reply(exp, reply, io)?;
        }
        Ok(())
    }

    fn on_eof(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        if self.quitting {
            return Ok(());
        }
        Err(Error::PeerClosed {
            step: self.step(io.trust()),
        })
    }

    fn input_budget(&self) -> InputBudget {
        self.config.limits.input_budget(self.authenticated)
    }

    /// Between the greeting and `Ready` the client negotiates by itself.
    fn negotiating(&self) -> bool {
        !self.ready && !self.quitting
    }
}

impl crate::session::Timed for ClientMachine {
    fn waiting(&self) -> crate::session::Waiting {
        use crate::session::Waiting;
        match self.expect.front() {
            None => Waiting::Application,
            Some((Expect::Greeting, _)) => Waiting::Greeting,
            Some((Expect::Hello, _)) if self.config.lmtp => Waiting::Reply { to: "LHLO" },
            Some((Expect::Hello, _)) => Waiting::Reply { to: "EHLO" },
            Some((Expect::Helo, _)) => Waiting::Reply { to: "HELO" },
            Some((Expect::StartTls, _)) => Waiting::Reply { to: "STARTTLS" },
            Some((Expect::App(verb), _)) => Waiting::Reply { to: verb },
            Some((Expect::MessageEnd, _)) => Waiting::Reply { to: "end of data" },
        }
    }

    fn goodbye(&self) -> Option<Vec<u8>> {
        None
    }
}
