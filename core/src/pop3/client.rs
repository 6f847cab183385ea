//! The POP3 client session.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::dot::{DataReader, DataStep};
use crate::error::{ConfigError, Error, Step, TlsRefusal, UsageError};
use crate::framing::{scan_line_fail_fast, without_crlf, FramingError, Scan};
use crate::policy::TlsPolicy;
use crate::sasl;
use crate::secret::Secret;
use crate::tls::ClientTls;
use crate::trust::{Received, Trust};
use crate::upgrade::{
    session_io, Engine, EngineConfig, InjectionPolicy, InputBudget, Io, Machine, UpgradeEvent,
};

use super::capability::Capabilities;
#[cfg(test)]
use super::capability::Capability;
use super::command::Command;
use super::response::{parse_continuation, Status, StatusLine};
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
    /// What to do with bytes after the `+OK` to `STLS` and before TLS
    /// (default: fail with [`Error::ResponseInjection`]).
    pub injection: InjectionPolicy,
    /// Allow `USER`/`PASS`/`APOP`/`AUTH` in cleartext (only reachable with
    /// [`TlsPolicy::Opportunistic`]). Off by default.
    pub insecure_auth_in_cleartext: bool,
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
            insecure_auth_in_cleartext: false,
            limits: Limits::default(),
        }
    }
}

/// What a POP3 client session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server greeting. [`StatusLine::apop_timestamp`] gives the APOP
    /// timestamp, if any.
    Greeting(Received<StatusLine>),
    /// The capabilities from `CAPA`. After an upgrade they are asked for
    /// again over TLS and replace the cleartext ones entirely.
    Capabilities(Received<Capabilities>),
    /// Negotiation is over: the application may send commands.
    Ready {
        /// [`Trust::Tls`] unless the policy is opportunistic and TLS was not
        /// available.
        trust: Trust,
    },
    /// The status line answering an application command. With
    /// `multiline`, [`ClientEvent::Body`] pieces and [`ClientEvent::BodyEnd`]
    /// follow.
    Reply {
        /// The command's keyword.
        to: &'static str,
        /// `+OK` or `-ERR`, with code and text.
        status: Received<StatusLine>,
        /// A multi-line body follows.
        multiline: bool,
    },
    /// A piece of a multi-line body, unstuffed, CRLF line ends kept, with the
    /// trust level of the channel.
    Body(Received<Bytes>),
    /// The multi-line body ended.
    BodyEnd,
    /// A SASL challenge during `AUTH`, base64 as the server sent it.
    Continuation(Received<Bytes>),
    /// Upgrade and TLS facts.
    Upgrade(UpgradeEvent),
}

impl From<UpgradeEvent> for ClientEvent {
    fn from(e: UpgradeEvent) -> Self {
        ClientEvent::Upgrade(e)
    }
}

/// A POP3 client session: one per connection.
///
/// ```
/// use std::sync::Arc;
/// use starttls::pop3::{ClientConfig, ClientSession};
/// use starttls::{ClientTls, Error, Step, TlsPolicy, TlsRefusal};
///
/// let config = ClientConfig::new(TlsPolicy::StartTlsRequired, ClientTls::External);
/// let mut client = ClientSession::new(Arc::new(config)).unwrap();
/// client.handle_input(b"+OK ready\r\n");
/// let _ = client.poll_event(); // greeting
/// assert_eq!(client.poll_transmit().unwrap().as_ref(), b"CAPA\r\n");
/// // STLS stripped from the list:
/// client.handle_input(b"+OK\r\nUSER\r\nTOP\r\n.\r\n");
/// let _ = client.poll_event(); // capabilities
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
    /// Starts a session.
    pub fn new(config: Arc<ClientConfig>) -> Result<Self, ConfigError> {
        let ec = EngineConfig::client(&config.tls, config.policy, config.injection);
        let machine = ClientMachine::new(Arc::clone(&config), false);
        Ok(ClientSession {
            engine: Engine::new(config, machine, ec),
        })
    }

    /// Sends a command (after [`ClientEvent::Ready`]); its answer comes as
    /// [`ClientEvent::Reply`].
    ///
    /// Refused: `STLS` (the session upgrades by itself); `USER`, `PASS`,
    /// `APOP` and `AUTH` in cleartext; a second command while one is
    /// outstanding unless the server offers `PIPELINING`; a command whose
    /// line would not parse back to the same command ([`Command::check`]: a
    /// CR or LF in a name or password, a message number 0), with
    /// [`UsageError::InvalidValue`] and nothing written.
    pub fn send(&mut self, command: Command) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.send(command, io))
    }

    /// Authenticates with SASL `EXTERNAL` (RFC 4422 Appendix A, RFC 5034):
    /// the TLS client certificate is the credential, `authzid` the identity
    /// to act as (`None`: the one the certificate names). Sends `AUTH
    /// EXTERNAL` with the initial response; the outcome comes as
    /// [`ClientEvent::Reply`].
    ///
    /// Refused with [`UsageError::External`], sending nothing, unless the
    /// session is over TLS, a client certificate was configured
    /// ([`TlsInfo::own_certificate`](crate::TlsInfo::own_certificate)) and
    /// the server advertised `SASL EXTERNAL` over TLS. An `AUTH EXTERNAL`
    /// given to [`send`](Self::send) is checked the same way.
    pub fn send_auth_external(&mut self, authzid: Option<&str>) -> Result<(), UsageError> {
        let response = sasl::response(authzid)?;
        self.send(Command::Auth {
            mechanism: Some(Bytes::from_static(sasl::EXTERNAL.as_bytes())),
            initial_response: Some(Secret::new(response)),
        })
    }

    /// Answers a SASL challenge with a base64 line (`*` cancels). Anything
    /// else is refused with [`UsageError::InvalidValue`], writing nothing.
    pub fn send_auth_response(&mut self, response: Secret<Bytes>) -> Result<(), UsageError> {
        self.engine.call(|m, io| {
            if !m.challenged {
                return Err(UsageError::WrongState(
                    "no SASL challenge is waiting for an answer",
                ));
            }
            appvalue::check_sasl_response(response.expose())?;
            m.challenged = false;
            io.send(response.expose());
            io.send(b"\r\n");
            // What comes next answers this line.
            let sent_at = io.written();
            if let Some(front) = m.expect.front_mut() {
                front.1 = sent_at;
            }
            Ok(())
        })
    }

    /// The capabilities in force: after an upgrade, only those received over
    /// TLS. Read again at each call from the listing the session keeps (an
    /// idle session holds the listing's octets, not the parsed list).
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.engine.machine().caps.as_ref().map(Kept::expand)
    }

    /// `true` after [`ClientEvent::Ready`].
    pub fn is_ready(&self) -> bool {
        self.engine.machine().ready
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Capa,
    Stls,
    App {
        keyword: &'static str,
        multiline: bool,
    },
}

enum Mode {
    /// Reading a status line.
    Status,
    /// Reading a multi-line body; `capa` collects our own CAPA listing.
    Body {
        reader: DataReader,
        capa: Option<Listing>,
    },
}

/// A `CAPA` listing as the session keeps it between commands: its octets in
/// one allocation of their own size and the two offers checked on every
/// command, rather than the parsed [`Capabilities`] (a [`Capability`] per
/// line); [expanded](Kept::expand) when asked.
///
/// [`Capability`]: super::capability::Capability
#[derive(Clone, Debug)]
struct Kept {
    /// The listing as [`Capabilities::from_listing`] read it.
    listing: Box<[u8]>,
    stls: bool,
    pipelining: bool,
}

impl Kept {
    /// The list again: the same octets read the same way.
    fn expand(&self) -> Capabilities {
        Capabilities::from_listing(&Bytes::copy_from_slice(&self.listing))
    }
}

pub(crate) struct ClientMachine {
    config: Arc<ClientConfig>,
    after_tls: bool,
    started: bool,
    /// Replies we wait for, with the write position of their command.
    expect: VecDeque<(Expect, u64)>,
    mode: Mode,
    /// The capabilities in force, kept compact.
    caps: Option<Kept>,
    ready: bool,
    quitting: bool,
    challenged: bool,
    /// Our `PASS`, `APOP` or `AUTH` succeeded: the larger input budget applies.
    authenticated: bool,
    scanned: usize,
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
            started: false,
            expect,
            mode: Mode::Status,
            caps: None,
            ready: false,
            quitting: false,
            challenged: false,
            authenticated: false,
            scanned: 0,
        }
    }

    fn step(&self, trust: Trust) -> Step {
        match self.expect.front().map(|(e, _)| e) {
            _ if self.ready => Step::Ready,
            Some(Expect::Greeting) => Step::Greeting,
            Some(Expect::Stls) => Step::StartTls,
            _ if trust == Trust::Tls => Step::CapabilitiesAfterTls,
            _ => Step::Capabilities,
        }
    }

    fn write(&mut self, cmd: &Command, expect: Expect, io: &mut Io<'_, ClientEvent>) {
        if is_fieldless(cmd) {
            io.send_parts(&[cmd.keyword().as_bytes(), b"\r\n"]);
        } else {
            let mut v = Vec::with_capacity(16);
            cmd.write_to(&mut v);
            io.send(&v);
        }
        self.expect.push_back((expect, io.written()));
    }

    /// A failing client says only QUIT.
    fn quit_and(&mut self, io: &mut Io<'_, ClientEvent>, e: Error) -> Result<(), Error> {
        io.send(b"QUIT\r\n");
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

    /// With the capabilities known (or refused): upgrade, fail, or be ready.
    fn decide(&mut self, io: &mut Io<'_, ClientEvent>, refused: bool) -> Result<(), Error> {
        if io.trust() == Trust::Tls {
            self.ready(io);
            return Ok(());
        }
        if self.caps.as_ref().is_some_and(|c| c.stls) && self.config.policy.attempts_tls() {
            self.write(&Command::Stls, Expect::Stls, io);
            return Ok(());
        }
        if self.config.policy.requires_tls() {
            let reason = if refused {
                TlsRefusal::CapabilitiesRefused
            } else {
                TlsRefusal::NotOffered
            };
            return self.quit_and(
                io,
                Error::TlsRequired {
                    step: Step::Capabilities,
                    reason,
                },
            );
        }
        self.ready(io);
        Ok(())
    }

    fn status_line(&mut self, line: Bytes, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        let trust = io.trust();
        let step = self.step(trust);
        let Some((exp, sent_at)) = self.expect.pop_front() else {
            return Err(Error::UnexpectedReply {
                step,
                detail: "a response with no command outstanding".into(),
            });
        };
        if self.expect.is_empty() && self.ready {
            // Nothing outstanding: an idle session keeps no slots (a
            // negotiating one keeps them for its next command).
            self.expect = VecDeque::new();
        }
        if io.sent() < sent_at {
            // No honest server answers a command it has not received: this
            // is a planted response (threat class 5).
            return Err(Error::UnexpectedReply {
                step,
                detail: "a response arrived before its command was sent".into(),
            });
        }
        let is_continuation = line.first() == Some(&b'+')
            && !line
                .get(..3)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"+OK"));
        if is_continuation {
            if let Expect::App {
                keyword: "AUTH", ..
            } = exp
            {
                let challenge = parse_continuation(&line).map_err(|e| Error::Malformed {
                    step,
                    reason: e.to_string(),
                })?;
                self.expect.push_front((exp, sent_at));
                self.challenged = true;
                io.emit(ClientEvent::Continuation(Received::new(challenge, trust)));
                return Ok(());
            }
            if exp == Expect::Stls && self.config.policy.requires_tls() {
                return Err(Error::TlsRequired {
                    step,
                    reason: TlsRefusal::OddReply { status: "+".into() },
                });
            }
        }
        let status = StatusLine::parse(&line).map_err(|e| Error::Malformed {
            step,
            reason: e.to_string(),
        })?;
        let ok = status.status == Status::Ok;
        match exp {
            Expect::Greeting => {
                io.emit(ClientEvent::Greeting(Received::new(status, trust)));
                if !ok {
                    return Err(Error::Refused {
                        step: Step::Greeting,
                        status: "-ERR".into(),
                    });
                }
                self.write(&Command::Capa, Expect::Capa, io);
            }
            Expect::Capa => {
                if ok {
                    self.mode = Mode::Body {
                        reader: DataReader::default(),
                        capa: Some(Listing::Empty),
                    };
                } else {
                    self.caps = None;
                    if !self.config.policy.requires_tls() {
                        io.emit(ClientEvent::Reply {
                            to: "CAPA",
                            status: Received::new(status, trust),
                            multiline: false,
                        });
                    }
                    self.decide(io, true)?;
                }
            }
            Expect::Stls => {
                if ok {
                    // The cut: the engine takes over from the end of this line.
                    io.start_upgrade();
                    return Ok(());
                }
                if self.config.policy.requires_tls() {
                    let e = Error::TlsRequired {
                        step: Step::StartTls,
                        reason: TlsRefusal::Refused {
                            status: "-ERR".into(),
                        },
                    };
                    return self.quit_and(io, e);
                }
                // Opportunistic: go on in cleartext, but say why.
                io.emit(ClientEvent::Reply {
                    to: "STLS",
                    status: Received::new(status, trust),
                    multiline: false,
                });
                self.ready(io);
            }
            Expect::App { keyword, multiline } => {
                let body = ok && multiline;
                self.challenged = false;
                self.authenticated |= ok && matches!(keyword, "PASS" | "APOP" | "AUTH");
                if keyword == "QUIT" {
                    io.close();
                }
                io.emit(ClientEvent::Reply {
                    to: keyword,
                    status: Received::new(status, trust),
                    multiline: body,
                });
                if body {
                    self.mode = Mode::Body {
                        reader: DataReader::default(),
                        capa: None,
                    };
                }
            }
        }
        Ok(())
    }

    fn capa_done(&mut self, listing: Listing, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        // Informational: an odd line (empty, a bad name) is skipped, never
        // fatal (docs/design.md, "Tolerant listings, strict boundary").
        let listing = listing.into_bytes();
        let caps = Capabilities::from_listing(&listing);
        self.caps = Some(Kept {
            listing: listing.as_ref().into(),
            stls: caps.has_stls(),
            pipelining: caps.pipelining(),
        });
        let trust = io.trust();
        io.emit(ClientEvent::Capabilities(Received::new(caps, trust)));
        self.decide(io, false)
    }

    fn send(&mut self, cmd: Command, io: &mut Io<'_, ClientEvent>) -> Result<(), UsageError> {
        if !self.ready {
            return Err(UsageError::NotReady);
        }
        if self.quitting {
            return Err(UsageError::Closed);
        }
        if !is_fieldless(&cmd) {
            // A command without fields is its keyword: it always reads back.
            cmd.check()?;
        }
        match cmd {
            Command::Stls => return Err(UsageError::ReservedCommand("STLS")),
            Command::Auth {
                mechanism: Some(ref m),
                ..
            } if sasl::is_external(m) => {
                let advertised = self
                    .caps
                    .as_ref()
                    .is_some_and(|c| c.expand().sasl_mechanisms().any(|m| sasl::is_external(&m)));
                sasl::client_check(io.trust(), io.tls_info(), advertised)?;
            }
            Command::User { .. }
            | Command::Pass { .. }
            | Command::Apop { .. }
            | Command::Auth { .. }
                if io.trust() == Trust::Cleartext && !self.config.insecure_auth_in_cleartext =>
            {
                return Err(UsageError::CleartextCredentials)
            }
            Command::Quit => self.quitting = true,
            _ => {}
        }
        if !self.expect.is_empty() && !self.caps.as_ref().is_some_and(|c| c.pipelining) {
            return Err(UsageError::WouldPipeline);
        }
        let expect = Expect::App {
            keyword: cmd.keyword(),
            multiline: cmd.has_multiline_reply(),
        };
        self.write(&cmd, expect, io);
        Ok(())
    }
}

/// A command whose line is its keyword alone.
fn is_fieldless(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Capa
            | Command::Stls
            | Command::Stat
            | Command::Noop
            | Command::Rset
            | Command::Quit
            | Command::Utf8
    )
}

/// Our own `CAPA` listing as it arrives, dot-stuffing removed: usually in
/// one piece, kept as it is; further pieces are appended to a copy.
enum Listing {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Listing {
    fn len(&self) -> usize {
        match self {
            Listing::Empty => 0,
            Listing::One(b) => b.len(),
            Listing::Many(b) => b.len(),
        }
    }

    fn push(&mut self, piece: Bytes) {
        *self = match std::mem::replace(self, Listing::Empty) {
            Listing::Empty => Listing::One(piece),
            Listing::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + piece.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&piece);
                Listing::Many(all)
            }
            Listing::Many(mut all) => {
                all.extend_from_slice(&piece);
                Listing::Many(all)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Listing::Empty => Bytes::new(),
            Listing::One(b) => b,
            Listing::Many(b) => b.freeze(),
        }
    }
}

impl Machine for ClientMachine {
    type Config = ClientConfig;
    type Event = ClientEvent;

    fn after_tls(config: &Arc<ClientConfig>) -> Self {
        ClientMachine::new(Arc::clone(config), true)
    }

    fn process(&mut self, io: &mut Io<'_, ClientEvent>) -> Result<(), Error> {
        if self.after_tls && !self.started {
            // RFC 2595 §4: forget what was learned before TLS, ask again.
            self.started = true;
            self.write(&Command::Capa, Expect::Capa, io);
        }
        let limits = self.config.limits;
        loop {
            match &mut self.mode {
                Mode::Status => {
                    let line = match scan_line_fail_fast(
                        io.input(),
                        &mut self.scanned,
                        limits.response_line,
                    ) {
                        Scan::Incomplete => return Ok(()),
                        Scan::Line(len) => without_crlf(&io.take(len)),
                        Scan::Invalid { error, .. } => return Err(Error::Framing(error)),
                        Scan::TooLong => {
                            return Err(Error::Framing(FramingError::TooLong {
                                limit: limits.response_line,
                            }))
                        }
                    };
                    self.status_line(line, io)?;
                }
                Mode::Body { reader, capa } => match reader.step(io, limits.body_line) {
                    DataStep::NeedInput => return Ok(()),
                    DataStep::Piece(p) => match capa {
                        Some(buf) => {
                            if buf.len() + p.len() > limits.capa {
                                return Err(Error::LimitExceeded {
                                    what: "CAPA listing",
                                    limit: limits.capa,
                                });
                            }
                            buf.push(p);
                        }
                        None => {
                            let trust = io.trust();
                            io.emit(ClientEvent::Body(Received::new(p, trust)));
                        }
                    },
                    // A body that breaks the line rule could hide a forged
                    // terminator: fail rather than guess where it ends.
                    DataStep::End { rejected: Some(e) } => return Err(Error::Framing(e)),
                    DataStep::End { rejected: None } => {
                        let capa = capa.take();
                        self.mode = Mode::Status;
                        match capa {
                            Some(listing) => self.capa_done(listing, io)?,
                            None => io.emit(ClientEvent::BodyEnd),
                        }
                    }
                },
            }
        }
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
            Some((Expect::Capa, _)) => Waiting::Reply { to: "CAPA" },
            Some((Expect::Stls, _)) => Waiting::Reply { to: "STLS" },
            Some((Expect::App { keyword, .. }, _)) => Waiting::Reply { to: keyword },
        }
    }

    fn goodbye(&self) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;

    fn client() -> ClientSession {
        let config = ClientConfig::new(TlsPolicy::StartTlsRequired, ClientTls::External);
        let mut c = ClientSession::new(Arc::new(config)).unwrap();
        c.handle_input(b"+OK ready\r\n");
        assert!(matches!(c.poll_event(), Ok(Some(ClientEvent::Greeting(_)))));
        assert_eq!(c.poll_transmit().unwrap().as_ref(), b"CAPA\r\n");
        c
    }

    fn listed(c: &mut ClientSession) -> Capabilities {
        match c.poll_event() {
            Ok(Some(ClientEvent::Capabilities(caps))) => caps.message,
            other => panic!("{other:?}"),
        }
    }

    /// A listing in one piece, in pieces cut by a stuffed line, and split
    /// over many inputs reads the same, and the session keeps it the same.
    #[test]
    fn a_listing_in_pieces_reads_as_one() {
        let wire: &[u8] = b"+OK\r\nTOP\r\n..X-DOT\r\nSTLS\r\n..\r\nPIPELINING\r\nSASL A B\r\n.\r\n";
        let expect = Capabilities::from_listing(&Bytes::from_static(
            b"TOP\r\n.X-DOT\r\nSTLS\r\n.\r\nPIPELINING\r\nSASL A B\r\n",
        ));
        assert_eq!(
            expect.iter().cloned().collect::<Vec<_>>(),
            vec![
                Capability::Top,
                Capability::Stls,
                Capability::Pipelining,
                Capability::Sasl(Bytes::from_static(b"A B")),
            ]
        );
        for split in [wire.len(), 1, 3, 7] {
            let mut c = client();
            for chunk in wire.chunks(split) {
                c.handle_input(chunk);
            }
            assert_eq!(listed(&mut c), expect, "split {split}");
            assert_eq!(c.capabilities(), Some(expect.clone()));
            // STLS was listed: the session asks for it.
            assert!(matches!(c.poll_event(), Ok(None)));
            assert_eq!(c.poll_transmit().unwrap().as_ref(), b"STLS\r\n");
        }
    }
}
