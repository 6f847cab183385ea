//! The IMAP client session.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ConfigError, Error, Step, TlsRefusal, UsageError};
use crate::escape::Escaped;
use crate::framing::without_crlf;
use crate::policy::TlsPolicy;
use crate::sasl;
use crate::secret::Secret;
use crate::tls::ClientTls;
use crate::trust::{Received, Trust};
use crate::upgrade::{
    session_io, Engine, EngineConfig, InjectionPolicy, InputBudget, Io, Machine, UpgradeEvent,
};

use super::capability::Capabilities;
use super::command::{Command, CommandBody};
use super::frame::{Frame, FrameError, MessageFramer};
use super::response::{Code, Response, Status, StatusResponse};
use super::syntax::{trailing_literal, LiteralMode};
use super::Limits;
use crate::appvalue;

/// Client configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// What the client requires of TLS.
    pub policy: TlsPolicy,
    /// How TLS is done.
    pub tls: ClientTls,
    /// What to do with bytes after the `OK` to `STARTTLS` and before TLS
    /// (default: fail with [`Error::ResponseInjection`]).
    pub injection: InjectionPolicy,
    /// Allow `LOGIN`/`AUTHENTICATE` in cleartext (only reachable with
    /// [`TlsPolicy::Opportunistic`]). Off by default.
    pub insecure_login_in_cleartext: bool,
    /// Prefix of the tags the session assigns (`A1`, `A2`, ...).
    pub tag_prefix: String,
    /// Size limits.
    pub limits: Limits,
}

impl ClientConfig {
    /// A configuration with safe defaults.
    pub fn new(policy: TlsPolicy, tls: ClientTls) -> Self {
        ClientConfig {
            policy,
            tls,
            injection: InjectionPolicy::Fail,
            insecure_login_in_cleartext: false,
            tag_prefix: "A".into(),
            limits: Limits::default(),
        }
    }
}

/// What an IMAP client session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server greeting (`* OK`, `* PREAUTH`, `* BYE`).
    Greeting(Received<StatusResponse>),
    /// The server's capabilities, from the greeting's code or a
    /// `CAPABILITY` command. After an upgrade they are asked for again over
    /// TLS and replace the cleartext ones entirely.
    Capabilities(Received<Capabilities>),
    /// Negotiation is over: the application may send commands.
    Ready {
        /// [`Trust::Tls`] unless the policy is opportunistic and TLS was not
        /// available.
        trust: Trust,
        /// The server pre-authenticated the session (`PREAUTH`).
        authenticated: bool,
    },
    /// Untagged data or status (`* 3 EXISTS`, `* OK [ALERT] ...`). During
    /// negotiation such responses are reported but never kept: an alert or
    /// referral received in cleartext says so in its trust level.
    Untagged(Received<Response>),
    /// The completion of an application command.
    Tagged {
        /// The tag the session assigned when the command was sent.
        tag: Bytes,
        /// `OK`, `NO` or `BAD`, with code and text.
        status: Received<StatusResponse>,
    },
    /// A continuation request for the application (an `AUTHENTICATE`
    /// challenge, `IDLE` accepted). Continuations for literals are handled
    /// by the session.
    Continuation(Received<Bytes>),
    /// Upgrade and TLS facts.
    Upgrade(UpgradeEvent),
}

impl From<UpgradeEvent> for ClientEvent {
    fn from(e: UpgradeEvent) -> Self {
        ClientEvent::Upgrade(e)
    }
}

/// An IMAP client session: one per connection.
///
/// ```
/// use std::sync::Arc;
/// use starttls::imap::{ClientConfig, ClientSession};
/// use starttls::{ClientTls, Error, Step, TlsPolicy, TlsRefusal};
///
/// let config = ClientConfig::new(TlsPolicy::StartTlsRequired, ClientTls::External);
/// let mut client = ClientSession::new(Arc::new(config)).unwrap();
/// // A man in the middle answers with PREAUTH to keep the session in cleartext:
/// client.handle_input(b"* PREAUTH [CAPABILITY IMAP4rev2] logged in\r\n");
/// let _ = client.poll_event(); // the greeting, marked cleartext
/// assert_eq!(
///     client.poll_event(),
///     Err(Error::TlsRequired { step: Step::Greeting, reason: TlsRefusal::Preauth })
/// );
/// ```
pub struct ClientSession {
    engine: Engine<ClientMachine>,
}

session_io!(ClientSession, ClientEvent);

impl ClientSession {
    /// Starts a session.
    pub fn new(config: Arc<ClientConfig>) -> Result<Self, ConfigError> {
        config.limits.validate()?;
        // RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">. The prefix is
        // written into every command line, the client's own too.
        let tag_char = |b: u8| (0x21..=0x7e).contains(&b) && !b"(){%*\"\\+".contains(&b);
        if !config.tag_prefix.bytes().all(tag_char) {
            return Err(ConfigError::InvalidTagPrefix);
        }
        let ec = EngineConfig::client(&config.tls, config.policy, config.injection);
        let machine = ClientMachine::new(Arc::clone(&config), false);
        Ok(ClientSession {
            engine: Engine::new(config, machine, ec),
        })
    }

    /// Sends a command (after [`ClientEvent::Ready`]) and returns the tag it
    /// was given. Synchronizing literals are sent when the server asks for
    /// them.
    ///
    /// Refused: `STARTTLS` (the session upgrades by itself); `LOGIN` and
    /// `AUTHENTICATE` in cleartext, or `LOGIN` when the server said
    /// `LOGINDISABLED`; anything while a literal or `IDLE` is in progress;
    /// a command that would not be read back as exactly this command
    /// ([`Command::check`]: a CR or LF in an atom or quoted string, an
    /// `Other` command named like a typed one), with
    /// [`UsageError::InvalidValue`] and nothing written.
    pub fn send(&mut self, body: CommandBody) -> Result<Bytes, UsageError> {
        self.engine.call(|m, io| m.send(body, io))
    }

    /// Authenticates with SASL `EXTERNAL` (RFC 4422 Appendix A): the TLS
    /// client certificate is the credential, `authzid` the identity to act
    /// as (`None`: the one the certificate names). Sends `AUTHENTICATE
    /// EXTERNAL`, with the response as initial response when the server
    /// offers `SASL-IR` (RFC 4959), else on its continuation, and returns the
    /// tag; the outcome comes as [`ClientEvent::Tagged`].
    ///
    /// Refused with [`UsageError::External`], sending nothing, unless the
    /// session is over TLS, a client certificate was configured
    /// ([`TlsInfo::own_certificate`](crate::TlsInfo::own_certificate)) and
    /// the server advertised `AUTH=EXTERNAL` over TLS. An `AUTHENTICATE
    /// EXTERNAL` given to [`send`](Self::send) is checked the same way.
    pub fn send_auth_external(&mut self, authzid: Option<&str>) -> Result<Bytes, UsageError> {
        let response = sasl::response(authzid)?;
        self.engine.call(|m, io| {
            let sasl_ir = m.caps.as_ref().is_some_and(|c| c.contains("SASL-IR"));
            let body = CommandBody::Authenticate {
                mechanism: Bytes::from_static(sasl::EXTERNAL.as_bytes()),
                initial_response: sasl_ir.then(|| Secret::new(response.clone())),
            };
            let tag = m.send(body, io)?;
            if !sasl_ir {
                let n = m.outstanding.last().map(|o| o.tag);
                // Sent on the server's (empty) continuation, like a literal.
                let mut line = Vec::with_capacity(response.len() + 2);
                line.extend_from_slice(&response);
                line.extend_from_slice(b"\r\n");
                m.literal_parts.push_back(Bytes::from(line));
                // Dropped when its own command completes, like a literal:
                // a server may refuse without ever asking for it.
                m.literal_tag = n;
            }
            Ok(tag)
        })
    }

    /// Answers an `AUTHENTICATE` continuation with a base64 line (`*`
    /// cancels). Anything else is refused with [`UsageError::InvalidValue`],
    /// writing nothing.
    pub fn send_auth_response(&mut self, response: Secret<Bytes>) -> Result<(), UsageError> {
        self.engine.call(|m, io| {
            let Some(tag) = m.sasl else {
                return Err(UsageError::WrongState("no AUTHENTICATE is in progress"));
            };
            appvalue::check_sasl_response(response.expose())?;
            io.send(response.expose());
            io.send(b"\r\n");
            // The next challenge, and the completion, answer this line.
            let sent_at = io.written();
            m.continuation_after = sent_at;
            if let Some(o) = m.outstanding.iter_mut().find(|o| o.tag == tag) {
                o.sent_at = sent_at;
            }
            Ok(())
        })
    }

    /// Ends `IDLE` (`DONE`).
    pub fn idle_done(&mut self) -> Result<(), UsageError> {
        self.engine.call(|m, io| {
            if m.idle.take().is_none() {
                return Err(UsageError::WrongState("not idling"));
            }
            io.send(b"DONE\r\n");
            Ok(())
        })
    }

    /// The capabilities in force: after an upgrade, only those received over
    /// TLS.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.engine.machine().caps.as_ref()
    }

    /// `true` after [`ClientEvent::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self.engine.machine().phase, Phase::Ready)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Greeting,
    /// Waiting for the completion of our `CAPABILITY` (tag number `tag`),
    /// which ends at `sent_at` in our output.
    Capability {
        tag: u32,
        sent_at: u64,
    },
    /// Waiting for the completion of our `STARTTLS`, which ends at `sent_at`.
    StartTls {
        tag: u32,
        sent_at: u64,
    },
    Ready,
}

/// A command the application sent and the server has not completed.
#[derive(Debug)]
struct Outstanding {
    /// The number of its tag (see [`ClientMachine::our_tag`]).
    tag: u32,
    kind: Kind,
    /// Where the command (its first part) ends in our output.
    sent_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Login,
    Authenticate,
    Idle,
    Logout,
    Other,
}

/// The list as the session keeps it: its octets copied into an allocation
/// of their own size. The received list is a slice of the input buffer the
/// response arrived in, which it would otherwise keep alive whole for as long
/// as the session keeps the list.
fn detached(caps: &Capabilities) -> Capabilities {
    caps.detached()
}

pub(crate) struct ClientMachine {
    config: Arc<ClientConfig>,
    after_tls: bool,
    started: bool,
    phase: Phase,
    caps: Option<Capabilities>,
    authenticated: bool,
    next_tag: u32,
    outstanding: Vec<Outstanding>,
    /// Parts of a command still to send, each after a continuation request.
    literal_parts: VecDeque<Bytes>,
    /// The tag of the command those parts belong to. When that command
    /// completes (RFC 9051 §7.5: a server may refuse a literal with a tagged
    /// `NO` instead of `+`), its parts are dropped: a later continuation,
    /// whatever it answers, never releases them.
    literal_tag: Option<u32>,
    /// Where the part that a continuation request answers ends.
    continuation_after: u64,
    /// Tag (number) of an `AUTHENTICATE` in progress.
    sasl: Option<u32>,
    /// Tag (number) of an `IDLE` in progress (after its continuation).
    idle: Option<u32>,
    framer: MessageFramer,
}

impl ClientMachine {
    fn new(config: Arc<ClientConfig>, after_tls: bool) -> Self {
        ClientMachine {
            config,
            after_tls,
            started: false,
            phase: Phase::Greeting,
            caps: None,
            authenticated: false,
            next_tag: 1,
            outstanding: Vec::new(),
            literal_parts: VecDeque::new(),
            literal_tag: None,
            continuation_after: 0,
            sasl: None,
            idle: None,
            framer: MessageFramer::for_client(),
        }
    }

    /// The number of the next tag: tag `n` is the prefix followed by `n` in
    /// decimal (`A1`, `A2`, ...). The session keeps numbers, and writes a tag
    /// only into a command and for the application.
    fn next_tag(&mut self) -> u32 {
        let n = self.next_tag;
        self.next_tag += 1;
        n
    }

    /// Tag `n`, as written.
    fn tag_bytes(&self, n: u32) -> Bytes {
        let mut digits = [0; 10];
        let digits = decimal(n, &mut digits);
        let mut t = Vec::with_capacity(self.config.tag_prefix.len() + digits.len());
        t.extend_from_slice(self.config.tag_prefix.as_bytes());
        t.extend_from_slice(digits);
        Bytes::from(t)
    }

    /// Which of our tag numbers `tag` is, if it is one of ours: the prefix
    /// followed by a decimal number as we write it (no sign, no leading
    /// zero), so that exactly the octets of tag `n` give `n`.
    fn our_tag(&self, tag: &[u8]) -> Option<u32> {
        let digits = tag.strip_prefix(self.config.tag_prefix.as_bytes())?;
        if digits.is_empty()
            || digits.len() > 10
            || digits.first() == Some(&b'0')
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        u32::try_from(n).ok()
    }

    fn step(&self, trust: Trust) -> Step {
        match self.phase {
            Phase::Greeting => Step::Greeting,
            Phase::Capability { .. } if trust == Trust::Tls && self.after_tls => {
                Step::CapabilitiesAfterTls
            }
            Phase::Capability { .. } => Step::Capabilities,
            Phase::StartTls { .. } => Step::StartTls,
            Phase::Ready => Step::Ready,
        }
    }

    /// Sends one of the session's own commands (`CAPABILITY`, `STARTTLS`,
    /// `LOGOUT`: a tag and a name), and returns its tag number and where it
    /// ends in our output.
    fn own(&mut self, name: &'static str, io: &mut Io<'_, ClientEvent>) -> (u32, u64) {
        let n = self.next_tag();
        let mut digits = [0; 10];
        let digits = decimal(n, &mut digits);
        io.send_parts(&[
            self.config.tag_prefix.as_bytes(),
            digits,
            b" ",
            name.as_bytes(),
            b"\r\n",
        ]);
        (n, io.written())
    }

    /// No honest server answers a command it has not received: a reply that
    /// arrives before the caller took the command is planted.
    fn check_sent(&self, io: &Io<'_, ClientEvent>, sent_at: u64) -> Result<(), Error> {
        if io.sent() < sent_at {
            return Err(self.unexpected(
                io.trust(),
                "a reply arrived before its command was sent".into(),
            ));
        }
        Ok(())
    }

    /// A failing client says only LOGOUT.
    fn logout_and(&mut self, io: &mut Io<'_, ClientEvent>, e: Error) -> Result<(), Error> {
        let _ = self.own("LOGOUT", io);
        Err(e)
    }

    fn ready(&mut self, io: &mut Io<'_, ClientEvent>) {
        self.phase = Phase::Ready;
        let trust = io.trust();
        io.emit(ClientEvent::Ready {
            trust,
            authenticated: self.authenticated,
        });
    }

    /// With the capabilities known: upgrade, fail, or be ready.
    fn decide(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        if io.trust() == Trust::Tls {
            self.ready(io);
            return Ok(());
        }
        let starttls = self.caps.as_ref().is_some_and(|c| c.has_starttls());
        if starttls && self.config.policy.attempts_tls() {
            let (tag, sent_at) = self.own("STARTTLS", io);
            self.phase = Phase::StartTls { tag, sent_at };
        } else if self.config.policy.requires_tls() {
            let e = Error::TlsRequired {
                step: Step::Capabilities,
                reason: TlsRefusal::NotOffered,
            };
            return self.logout_and(io, e);
        } else {
            self.ready(io);
        }
        Ok(())
    }

    fn unexpected(&self, trust: Trust, detail: String) -> Error {
        Error::UnexpectedReply {
            step: self.step(trust),
            detail,
        }
    }

    fn on_response(&mut self, resp: Response, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        let trust = io.trust();
        match (&self.phase, resp) {
            (Phase::Greeting, Response::Status(s)) => {
                let status = s.status;
                let caps = match &s.code {
                    Some(Code::Capability(c)) => Some(c.clone()),
                    _ => None,
                };
                io.emit(ClientEvent::Greeting(Received::new(s, trust)));
                match status {
                    Status::Ok => {}
                    Status::Preauth => {
                        if trust == Trust::Cleartext && self.config.policy.requires_tls() {
                            // Authenticated state: STARTTLS is no longer possible.
                            return Err(Error::TlsRequired {
                                step: Step::Greeting,
                                reason: TlsRefusal::Preauth,
                            });
                        }
                        self.authenticated = true;
                        self.caps = caps.as_ref().map(detached);
                        self.ready(io);
                        return Ok(());
                    }
                    Status::Bye => {
                        return Err(Error::Refused {
                            step: Step::Greeting,
                            status: "BYE".into(),
                        })
                    }
                    _ => {
                        return Err(
                            self.unexpected(trust, "greeting is not OK, PREAUTH or BYE".into())
                        )
                    }
                }
                match caps {
                    Some(c) => {
                        self.caps = Some(detached(&c));
                        io.emit(ClientEvent::Capabilities(Received::new(c, trust)));
                        self.decide(io)
                    }
                    None => {
                        let (tag, sent_at) = self.own("CAPABILITY", io);
                        self.phase = Phase::Capability { tag, sent_at };
                        Ok(())
                    }
                }
            }
            (Phase::Greeting, _) => Err(self.unexpected(trust, "expected a greeting".into())),
            (_, Response::Capability(c)) if !matches!(self.phase, Phase::Ready) => {
                // Kept only when it answers our CAPABILITY, which must have
                // been sent: a list planted ahead of it is reported, not kept.
                let asked = match self.phase {
                    Phase::Capability { sent_at, .. } => io.sent() >= sent_at,
                    _ => false,
                };
                if asked {
                    self.caps = Some(detached(&c));
                    io.emit(ClientEvent::Capabilities(Received::new(c, trust)));
                } else {
                    // Not asked for: reported, never kept.
                    io.emit(ClientEvent::Untagged(Received::new(
                        Response::Capability(c),
                        trust,
                    )));
                }
                Ok(())
            }
            (Phase::Capability { tag: ours, sent_at }, Response::Tagged { tag, status })
                if self.our_tag(&tag) == Some(*ours) =>
            {
                self.check_sent(io, *sent_at)?;
                match status.status {
                    Status::Ok => self.decide(io),
                    _ if trust == Trust::Cleartext && self.config.policy.requires_tls() => {
                        let e = Error::TlsRequired {
                            step: Step::Capabilities,
                            reason: TlsRefusal::CapabilitiesRefused,
                        };
                        self.logout_and(io, e)
                    }
                    _ if trust == Trust::Cleartext => {
                        // Opportunistic: go on in cleartext, but say why.
                        self.caps = None;
                        io.emit(ClientEvent::Tagged {
                            tag,
                            status: Received::new(status, trust),
                        });
                        self.ready(io);
                        Ok(())
                    }
                    _ => Err(Error::Refused {
                        step: Step::CapabilitiesAfterTls,
                        status: format!("{:?}", status.status).to_uppercase(),
                    }),
                }
            }
            (Phase::StartTls { tag: ours, sent_at }, Response::Tagged { tag, status })
                if self.our_tag(&tag) == Some(*ours) =>
            {
                self.check_sent(io, *sent_at)?;
                match status.status {
                    Status::Ok => {
                        // The cut: the engine takes over from the end of this line.
                        io.start_upgrade();
                        Ok(())
                    }
                    s if self.config.policy.requires_tls() => {
                        let e = Error::TlsRequired {
                            step: Step::StartTls,
                            reason: TlsRefusal::Refused {
                                status: format!("{s:?}").to_uppercase(),
                            },
                        };
                        self.logout_and(io, e)
                    }
                    _ => {
                        // Opportunistic: go on in cleartext, but say why.
                        io.emit(ClientEvent::Tagged {
                            tag,
                            status: Received::new(status, trust),
                        });
                        self.ready(io);
                        Ok(())
                    }
                }
            }
            (Phase::Capability { .. } | Phase::StartTls { .. }, Response::Tagged { tag, .. }) => {
                // A reply for a tag we did not send (or not yet): never taken
                // as the answer we wait for (threat class 5).
                Err(self.unexpected(
                    trust,
                    format!("tagged reply for unknown tag \"{}\"", Escaped::new(&tag)),
                ))
            }
            (Phase::StartTls { .. }, Response::Continuation { .. })
                if self.config.policy.requires_tls() =>
            {
                Err(Error::TlsRequired {
                    step: Step::StartTls,
                    reason: TlsRefusal::OddReply { status: "+".into() },
                })
            }
            (Phase::Capability { .. } | Phase::StartTls { .. }, Response::Continuation { .. }) => {
                Err(self.unexpected(trust, "continuation request during negotiation".into()))
            }
            (_, Response::Data { name, .. }) if !self.authenticated => {
                // Mailbox data before login is a protocol violation, and
                // before TLS a classic way to plant state (threat class 5).
                Err(self.unexpected(
                    trust,
                    format!("untagged {} before authentication", Escaped::new(&name)),
                ))
            }
            (_, Response::Status(s)) if s.status == Status::Bye => {
                io.emit(ClientEvent::Untagged(Received::new(
                    Response::Status(s),
                    trust,
                )));
                if matches!(self.phase, Phase::Ready) {
                    Ok(())
                } else {
                    Err(Error::Refused {
                        step: self.step(trust),
                        status: "BYE".into(),
                    })
                }
            }
            (Phase::Ready, Response::Tagged { tag, status }) => {
                let ours = self.our_tag(&tag);
                let Some(i) = self.outstanding.iter().position(|o| Some(o.tag) == ours) else {
                    return Err(self.unexpected(
                        trust,
                        format!("tagged reply for unknown tag \"{}\"", Escaped::new(&tag)),
                    ));
                };
                let o = self.outstanding.remove(i);
                self.check_sent(io, o.sent_at)?;
                let ok = status.status == Status::Ok;
                match o.kind {
                    Kind::Login | Kind::Authenticate if ok => self.authenticated = true,
                    Kind::Logout => io.close(),
                    _ => {}
                }
                if self.sasl == Some(o.tag) {
                    self.sasl = None;
                }
                if self.idle == Some(o.tag) {
                    self.idle = None;
                }
                if self.literal_tag == Some(o.tag) {
                    self.literal_parts.clear();
                    self.literal_tag = None;
                }
                io.emit(ClientEvent::Tagged {
                    tag,
                    status: Received::new(status, trust),
                });
                Ok(())
            }
            (Phase::Ready, Response::Continuation { text, .. }) => {
                self.check_sent(io, self.continuation_after)?;
                if let Some(part) = self.literal_parts.pop_front() {
                    io.send_caller_data(&part);
                    self.continuation_after = io.written();
                    return Ok(());
                }
                if let Some(o) = self.outstanding.last() {
                    if o.kind == Kind::Idle {
                        self.idle = Some(o.tag);
                    }
                }
                io.emit(ClientEvent::Continuation(Received::new(text, trust)));
                Ok(())
            }
            (_, other) => {
                io.emit(ClientEvent::Untagged(Received::new(other, trust)));
                Ok(())
            }
        }
    }

    fn send(
        &mut self,
        body: CommandBody,
        io: &mut Io<'_, ClientEvent>,
    ) -> Result<Bytes, UsageError> {
        if self.phase != Phase::Ready {
            return Err(UsageError::NotReady);
        }
        if !self.literal_parts.is_empty() || self.idle.is_some() || self.sasl.is_some() {
            return Err(UsageError::WrongState(
                "a literal, IDLE or AUTHENTICATE exchange is in progress",
            ));
        }
        let cleartext = io.trust() == Trust::Cleartext;
        let kind = match &body {
            CommandBody::StartTls => return Err(UsageError::ReservedCommand("STARTTLS")),
            CommandBody::Authenticate { mechanism, .. } if sasl::is_external(mechanism) => {
                let advertised = self
                    .caps
                    .as_ref()
                    .is_some_and(|c| c.auth_mechanisms().any(|m| sasl::is_external(&m)));
                sasl::client_check(io.trust(), io.tls_info(), advertised)?;
                Kind::Authenticate
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. }
                if cleartext && !self.config.insecure_login_in_cleartext =>
            {
                return Err(UsageError::CleartextCredentials)
            }
            CommandBody::Login { .. } if self.caps.as_ref().is_some_and(|c| c.login_disabled()) => {
                return Err(UsageError::WrongState(
                    "the server advertised LOGINDISABLED",
                ))
            }
            CommandBody::Login { .. } => Kind::Login,
            CommandBody::Authenticate { .. } => Kind::Authenticate,
            CommandBody::Idle => Kind::Idle,
            CommandBody::Logout => Kind::Logout,
            _ => Kind::Other,
        };
        let n = self.next_tag();
        let cmd = Command {
            tag: self.tag_bytes(n),
            body,
        };
        let mut v = Vec::with_capacity(64);
        cmd.write_to(&mut v);
        let fieldless = matches!(
            cmd.body,
            CommandBody::Capability | CommandBody::Noop | CommandBody::Logout | CommandBody::Idle
        );
        let sent_at = if fieldless && is_tag(&cmd.tag) {
            // The line is the tag and the name, nothing else: with a valid
            // tag it reads back as this command, and holds no literal.
            io.send(&v);
            self.literal_tag = None;
            self.literal_parts.clear();
            io.written()
        } else {
            let wire = Bytes::from(v);
            cmd.check_written(wire.clone())?;
            let mut parts = split_at_sync_literals(wire);
            if let Some(first) = parts.pop_front() {
                io.send(&first);
            }
            self.literal_tag = (!parts.is_empty()).then_some(n);
            self.literal_parts = parts;
            io.written()
        };
        self.continuation_after = sent_at;
        if kind == Kind::Authenticate {
            self.sasl = Some(n);
        }
        self.outstanding.push(Outstanding {
            tag: n,
            kind,
            sent_at,
        });
        Ok(cmd.tag)
    }
}

/// `tag` follows RFC 9051 `tag` (`1*<any ASTRING-CHAR except "+">`).
fn is_tag(tag: &[u8]) -> bool {
    super::syntax::tag(tag).is_ok_and(|(rest, _)| rest.is_empty())
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Splits a serialized command after every line that ends with a
/// synchronizing literal header: each later part is sent only after the
/// server's continuation request (RFC 9051 §4.3).
fn split_at_sync_literals(wire: Bytes) -> VecDeque<Bytes> {
    let mut parts = VecDeque::new();
    let mut start = 0;
    let mut pos = 0;
    while let Some(i) = wire
        .get(pos..)
        .and_then(|r| memchr::memmem::find(r, b"\r\n"))
    {
        let line_end = pos + i;
        let after = line_end + 2;
        match trailing_literal(wire.get(pos..line_end).unwrap_or_default()) {
            Ok(Some(h)) => {
                if h.mode == LiteralMode::Sync {
                    parts.push_back(wire.slice(start..after));
                    start = after;
                }
                pos = after.saturating_add(usize::try_from(h.len).unwrap_or(usize::MAX));
            }
            _ => pos = after,
        }
    }
    if start < wire.len() {
        parts.push_back(wire.slice(start..));
    }
    parts
}

impl Machine for ClientMachine {
    type Config = ClientConfig;
    type Event = ClientEvent;

    fn after_tls(config: &Arc<ClientConfig>) -> Self {
        ClientMachine::new(Arc::clone(config), true)
    }

    fn process(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        if self.after_tls && !self.started {
            // RFC 9051 §6.2.1: discard what was learned before TLS, ask again.
            self.started = true;
            let (tag, sent_at) = self.own("CAPABILITY", io);
            self.phase = Phase::Capability { tag, sent_at };
        }
        loop {
            // Before login no server has a reason to send a big literal.
            let limits = if self.authenticated {
                self.config.limits.frame()
            } else {
                self.config.limits.frame_unauthenticated()
            };
            let n = match self.framer.next(io.input(), limits) {
                Frame::NeedInput => return Ok(()),
                Frame::Complete(n) => n,
                Frame::Literal(_) => continue,
                Frame::Skip(_) => {
                    return Err(Error::LimitExceeded {
                        what: "line",
                        limit: limits.line,
                    })
                }
                Frame::Invalid { error, .. } => {
                    return Err(match error {
                        FrameError::Line(e) => Error::Framing(e),
                        FrameError::BadLiteral => Error::Malformed {
                            step: self.step(io.trust()),
                            reason: "invalid literal header".into(),
                        },
                        FrameError::LiteralTooLarge { limit, .. } => Error::LimitExceeded {
                            what: "literal",
                            limit: usize::try_from(limit).unwrap_or(usize::MAX),
                        },
                        FrameError::MessageTooLarge { limit } => Error::LimitExceeded {
                            what: "response",
                            limit,
                        },
                    })
                }
            };
            let message = without_crlf(&io.take(n));
            let resp = Response::parse(&message).map_err(|e| Error::Malformed {
                step: self.step(io.trust()),
                reason: e.to_string(),
            })?;
            self.on_response(resp, io)?;
        }
    }

    fn on_eof(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        if self.outstanding.iter().any(|o| o.kind == Kind::Logout) {
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
        !matches!(self.phase, Phase::Ready)
    }

    /// Tags continue across STARTTLS: RFC 9051 §2.2.1 wants a tag unique on
    /// the connection, and a reused `A1` over TLS could be matched with a
    /// completion an attacker planted for the cleartext `A1`. The counter is
    /// ours (how many commands *we* sent), never anything the server said,
    /// so carrying it forgets nothing rule (c) requires forgotten.
    fn carry_over(&mut self, next: &mut Self) {
        next.next_tag = self.next_tag;
    }
}

impl crate::session::Timed for ClientMachine {
    fn waiting(&self) -> crate::session::Waiting {
        use crate::session::Waiting;
        match self.phase {
            Phase::Greeting => Waiting::Greeting,
            Phase::Capability { .. } => Waiting::Reply { to: "CAPABILITY" },
            Phase::StartTls { .. } => Waiting::Reply { to: "STARTTLS" },
            Phase::Ready => match self.outstanding.first().map(|o| o.kind) {
                None => Waiting::Application,
                Some(Kind::Login) => Waiting::Reply { to: "LOGIN" },
                Some(Kind::Authenticate) => Waiting::Reply { to: "AUTHENTICATE" },
                Some(Kind::Idle) => Waiting::Reply { to: "IDLE" },
                Some(Kind::Logout) => Waiting::Reply { to: "LOGOUT" },
                Some(Kind::Other) => Waiting::Reply { to: "command" },
            },
        }
    }

    fn goodbye(&self) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    fn machine(prefix: &str) -> ClientMachine {
        let mut c = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
        c.tag_prefix = prefix.into();
        ClientMachine::new(Arc::new(c), false)
    }

    #[test]
    fn tags_are_numbers_written_one_way() {
        let m = machine("A");
        for n in [1, 9, 10, 99, 100, 4_294_967_295] {
            let t = m.tag_bytes(n);
            assert_eq!(t, format!("A{n}").as_bytes());
            assert_eq!(m.our_tag(&t), Some(n));
        }
        // Only the octets we write name one of our tags.
        for other in [
            &b"A01"[..],
            b"A",
            b"a1",
            b"B1",
            b"A1 ",
            b"A+1",
            b"A-1",
            b"A1x",
            b"A4294967296",
            b"A00000000001",
            b"",
        ] {
            assert_eq!(
                m.our_tag(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        // A prefix ending in digits: still one way to read each tag.
        let m = machine("X1");
        assert_eq!(m.tag_bytes(2), "X12".as_bytes());
        assert_eq!(m.our_tag(b"X12"), Some(2));
        assert_eq!(m.our_tag(b"X1"), None);
        assert_eq!(m.our_tag(b"X102"), None);
    }

    #[test]
    fn a_completion_with_a_look_alike_tag_is_not_ours() {
        let config = ClientConfig::new(TlsPolicy::StartTlsRequired, ClientTls::External);
        let mut c = ClientSession::new(Arc::new(config)).unwrap();
        c.handle_input(b"* OK hello\r\n");
        while let Ok(Some(_)) = c.poll_event() {}
        assert_eq!(c.poll_transmit().unwrap().as_ref(), b"A1 CAPABILITY\r\n");
        c.handle_input(b"* CAPABILITY IMAP4rev2 STARTTLS\r\nA01 OK done\r\n");
        let e = loop {
            match c.poll_event() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("A01 taken for A1"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(&e, Error::UnexpectedReply { detail, .. } if detail.contains("unknown tag \"A01\"")),
            "{e:?}"
        );
    }

    #[test]
    fn a_tag_prefix_that_could_split_a_command_is_refused_at_setup() {
        let mut config = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
        config.insecure_login_in_cleartext = true;
        for prefix in ["A B", "A\r\nX", "A+", "(", "a\"", "x*", "\u{e9}"] {
            config.tag_prefix = prefix.into();
            assert_eq!(
                ClientSession::new(Arc::new(config.clone())).err(),
                Some(ConfigError::InvalidTagPrefix),
                "{prefix:?}"
            );
        }
        for prefix in ["", "A", "tag]", "x.y-1_"] {
            config.tag_prefix = prefix.into();
            assert!(
                ClientSession::new(Arc::new(config.clone())).is_ok(),
                "{prefix:?}"
            );
        }
    }
}
