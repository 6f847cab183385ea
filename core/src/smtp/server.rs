//! The SMTP / submission / LMTP server session.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::error::{ConfigError, Error, UsageError};
use crate::framing::{
    after_cr, scan_lf_line, scan_line, without_line_end, FramingError, LineSkipper, Scan,
};
use crate::octets::attach;
use crate::sasl::{self, ExternalAuth};
use crate::secret::Secret;
use crate::tls::{ServerTls, TlsInfo};
use crate::trust::Trust;
use crate::upgrade::{
    session_io, Engine, EngineConfig, InjectionPolicy, InputBudget, Io, Machine, UpgradeEvent,
};

use super::capability::{Capabilities, Capability};
use super::command::{Command, CommandRef};
use super::policy::{has_require_tls, CleartextDegradation, CleartextMail};
use super::reply::{EnhancedCode, Reply};
use super::Limits;
use crate::dot::{DataReader, DataStep, PIECE};

/// Which service extensions the server advertises in its `EHLO`/`LHLO`
/// reply. `STARTTLS` and `AUTH` are not here: the session decides those from
/// the TLS configuration and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extensions {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `CHUNKING` (RFC 3030): the `BDAT` command.
    pub chunking: bool,
    /// `BINARYMIME` (RFC 3030); only meaningful with `chunking`.
    pub binarymime: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `SIZE` (RFC 1870), with the largest message accepted.
    pub size: Option<u64>,
    /// `REQUIRETLS` (RFC 8689): advertised only over TLS; the `MAIL`
    /// parameter is accepted only there, and reported as
    /// [`ServerEvent::TransactionRequiresTls`]. Off by default: turn it on
    /// only if the application honours it when relaying (see
    /// [`policy`](super::policy)).
    pub requiretls: bool,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            pipelining: true,
            eight_bit_mime: true,
            smtputf8: true,
            chunking: true,
            binarymime: false,
            dsn: false,
            enhanced_status_codes: true,
            size: None,
            requiretls: false,
        }
    }
}

/// Server configuration, shared by every session of a listener.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The name the server gives in its greeting and `EHLO` reply.
    pub hostname: String,
    /// How the session does TLS. [`ServerTls::None`] means `STARTTLS` is never
    /// offered.
    pub tls: ServerTls,
    /// Implicit TLS (RFC 8314, port 465 style): TLS from the first byte, the
    /// greeting sent over TLS, `STARTTLS` never offered.
    pub implicit_tls: bool,
    /// Refuse every command but `EHLO`, `HELO`, `LHLO`, `NOOP`, `RSET`,
    /// `HELP`, `QUIT` and `STARTTLS` in cleartext with `530 5.7.0 Must issue
    /// a STARTTLS command first` (RFC 3207 §4): `AUTH`, `MAIL`, `RCPT`,
    /// `DATA`, `BDAT` (its chunk is read and dropped), `VRFY`, `EXPN`. For
    /// submission (RFC 6409, RFC 8314) and private relays: RFC 3207 §4 says
    /// a publicly-referenced server (an MX) must not require TLS to deliver
    /// mail locally.
    pub require_tls: bool,
    /// SASL mechanisms advertised with `AUTH` (RFC 4954). Empty: no `AUTH`.
    /// `EXTERNAL` is advertised only over TLS with a verified client
    /// certificate, and the session runs its exchange (see [`sasl`]).
    ///
    /// [`sasl`]: crate::sasl
    pub auth_mechanisms: Vec<String>,
    /// Advertise and accept `AUTH` before TLS. Off by default: credentials
    /// are only ever accepted over TLS.
    pub insecure_auth_in_cleartext: bool,
    /// Speak LMTP (RFC 2033): `LHLO` instead of `EHLO`/`HELO`, one reply per
    /// recipient after the data.
    pub lmtp: bool,
    /// Advertised extensions.
    pub extensions: Extensions,
    /// Graduated cleartext degradation: the operator's hook that may answer
    /// a `MAIL` received in cleartext with a temporary reply (see
    /// [`policy`](super::policy)). `None` (the default): never.
    pub degrade_cleartext: Option<Arc<dyn CleartextDegradation>>,
    /// What to do with bytes after the `STARTTLS` line (default: discard and
    /// report).
    pub injection: InjectionPolicy,
    /// Size limits.
    pub limits: Limits,
    /// Let a bare LF end a *command* line (and an `AUTH` response line), as
    /// Postfix does with `smtpd_forbid_bare_newline = no`. Off by default: a
    /// command line ends at CRLF only (RFC 5321 §2.3.8), so
    /// `NOOP<LF>STARTTLS<CR><LF>` is one line, refused whole with `500 5.5.2`
    /// — as a front end or filter that splits on CRLF sees it — and never
    /// starts TLS. Turning this on makes it two commands, so this server and
    /// such a front end disagree on which line carried `STARTTLS` (or where
    /// a pipelined group ends); only for legacy clients that end commands
    /// with LF, behind nothing that parses SMTP. Message bodies are not
    /// affected: in `DATA` a bare LF always rejects the message and only
    /// `CRLF.CRLF` ends it (RFC 5321 §4.1.1.4, the "SMTP smuggling" defence).
    pub insecure_bare_lf_line_ends: bool,
    /// The `EHLO`/`LHLO` reply octets, built at the first `EHLO` and shared
    /// by every session of this configuration.
    ehlo: EhloCache,
}

/// What the `EHLO`/`LHLO` reply depends on in a [`ServerConfig`]: the cache
/// is used only while the configuration still says the same (its fields are
/// public, and a configuration may be changed after sessions used it, through
/// `Arc::get_mut` or a clone).
#[derive(Clone, Debug, PartialEq, Eq)]
struct EhloKey {
    hostname: String,
    extensions: Extensions,
    auth_mechanisms: Vec<String>,
    insecure_auth_in_cleartext: bool,
    implicit_tls: bool,
    tls_available: bool,
}

impl EhloKey {
    fn of(c: &ServerConfig) -> EhloKey {
        EhloKey {
            hostname: c.hostname.clone(),
            extensions: c.extensions,
            auth_mechanisms: c.auth_mechanisms.clone(),
            insecure_auth_in_cleartext: c.insecure_auth_in_cleartext,
            implicit_tls: c.implicit_tls,
            tls_available: c.tls.is_available(),
        }
    }

    fn matches(&self, c: &ServerConfig) -> bool {
        self.hostname == c.hostname
            && self.extensions == c.extensions
            && self.auth_mechanisms == c.auth_mechanisms
            && self.insecure_auth_in_cleartext == c.insecure_auth_in_cleartext
            && self.implicit_tls == c.implicit_tls
            && self.tls_available == c.tls.is_available()
    }
}

/// The two `EHLO`/`LHLO` replies of a configuration, as sent: before TLS
/// and over TLS (without a client certificate).
#[derive(Debug)]
struct EhloReplies {
    key: EhloKey,
    cleartext: Box<[u8]>,
    tls: Box<[u8]>,
}

/// Built once per configuration, at the first `EHLO`: a session sends the
/// octets from here instead of building the capability list, its lines and
/// the reply (some 30 allocations) each time.
#[derive(Default)]
struct EhloCache(OnceLock<EhloReplies>);

impl Clone for EhloCache {
    /// Empty: a clone is a new configuration, maybe changed before use.
    fn clone(&self) -> Self {
        EhloCache::default()
    }
}

impl fmt::Debug for EhloCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "EhloCache(built)"
        } else {
            "EhloCache(empty)"
        })
    }
}

impl ServerConfig {
    /// The `EHLO`/`LHLO` reply for a session at `trust` with `tls`: from the
    /// cache, unless the reply depends on the session (`EXTERNAL` offered to
    /// a verified client certificate) or the configuration changed since
    /// the cache was built.
    fn ehlo_reply(&self, trust: Trust, tls: Option<&TlsInfo>) -> Cow<'_, [u8]> {
        if sasl::server_identity(trust, tls).is_none() {
            let built = self.ehlo.0.get_or_init(|| EhloReplies {
                key: EhloKey::of(self),
                cleartext: self.build_ehlo_reply(Trust::Cleartext, None).into(),
                tls: self.build_ehlo_reply(Trust::Tls, None).into(),
            });
            if built.key.matches(self) {
                return Cow::Borrowed(match trust {
                    Trust::Cleartext => &built.cleartext,
                    Trust::Tls => &built.tls,
                });
            }
        }
        Cow::Owned(self.build_ehlo_reply(trust, tls))
    }

    fn build_ehlo_reply(&self, trust: Trust, tls: Option<&TlsInfo>) -> Vec<u8> {
        let mut v = Vec::new();
        self.capabilities(trust, tls).to_reply(b"").write_to(&mut v);
        v
    }

    fn capabilities(&self, trust: Trust, tls: Option<&TlsInfo>) -> Capabilities {
        let x = &self.extensions;
        let mut caps = Vec::new();
        if let Some(size) = x.size {
            caps.push(Capability::Size(Some(size)));
        }
        if x.pipelining {
            caps.push(Capability::Pipelining);
        }
        if x.eight_bit_mime {
            caps.push(Capability::EightBitMime);
        }
        if x.smtputf8 {
            caps.push(Capability::SmtpUtf8);
        }
        if x.chunking {
            caps.push(Capability::Chunking);
            if x.binarymime {
                caps.push(Capability::BinaryMime);
            }
        }
        if x.dsn {
            caps.push(Capability::Dsn);
        }
        if x.enhanced_status_codes {
            caps.push(Capability::EnhancedStatusCodes);
        }
        // RFC 8689 §4.2.1 step 5: looked for after the upgrade, used only over TLS.
        if x.requiretls && trust == Trust::Tls {
            caps.push(Capability::RequireTls);
        }
        if self.offers_starttls(trust) {
            caps.push(Capability::StartTls);
        }
        if self.offers_auth(trust) {
            let mechs: Vec<&str> = sasl::advertised(&self.auth_mechanisms, trust, tls)
                .map(String::as_str)
                .collect();
            if !mechs.is_empty() {
                caps.push(Capability::Auth(Bytes::from(mechs.join(" "))));
            }
        }
        Capabilities::new(Bytes::from(self.hostname.clone()), caps)
    }

    fn offers_starttls(&self, trust: Trust) -> bool {
        trust == Trust::Cleartext && !self.implicit_tls && self.tls.is_available()
    }

    fn offers_auth(&self, trust: Trust) -> bool {
        !self.auth_mechanisms.is_empty() && (trust == Trust::Tls || self.insecure_auth_in_cleartext)
    }
}

impl ServerConfig {
    /// A configuration with safe defaults: `STARTTLS` offered when `tls` is
    /// not [`ServerTls::None`], `AUTH` only over TLS, injected bytes discarded
    /// and reported.
    pub fn new(hostname: impl Into<String>, tls: ServerTls) -> Self {
        ServerConfig {
            hostname: hostname.into(),
            tls,
            implicit_tls: false,
            require_tls: false,
            auth_mechanisms: Vec::new(),
            insecure_auth_in_cleartext: false,
            lmtp: false,
            extensions: Extensions::default(),
            degrade_cleartext: None,
            injection: InjectionPolicy::Discard,
            limits: Limits::default(),
            insecure_bare_lf_line_ends: false,
            ehlo: EhloCache::default(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let tls_only = self.require_tls
            || self.implicit_tls
            || self.extensions.requiretls
            || self.degrade_cleartext.is_some();
        if tls_only && !self.tls.is_available() {
            return Err(ConfigError::TlsRequiredWithoutTls);
        }
        if self.hostname.is_empty()
            || self
                .hostname
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(ConfigError::InvalidHostname);
        }
        let l = &self.limits;
        for (what, v, min) in [
            ("command_line", l.command_line, 512),
            ("reply_line", l.reply_line, 512),
            ("text_line", l.text_line, 1000),
            ("auth_line", l.auth_line, 12288),
        ] {
            if v < min {
                return Err(ConfigError::LimitTooSmall { what, min });
            }
        }
        Ok(())
    }
}

/// What a server session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The client introduced itself (`EHLO`, `HELO` or `LHLO`); the session
    /// answered it. Any transaction in progress was reset.
    Hello(Command),
    /// A command for the application: `MAIL`, `RCPT`, `DATA`, `BDAT`,
    /// `AUTH`, `VRFY`, `EXPN`. Answer it with [`ServerSession::reply`] (or
    /// [`accept`](ServerSession::accept) / [`reject`](ServerSession::reject))
    /// — except `BDAT`, which is answered at [`ServerEvent::ChunkEnd`] or
    /// [`ServerEvent::MessageEnd`]. Commands behind it wait, in order.
    Command(Command),
    /// A piece of the message, unstuffed, CRLF line ends kept.
    MessageData(Bytes),
    /// A non-final `BDAT` chunk has been received in full: answer it.
    ChunkEnd,
    /// The message is complete (`.` after `DATA`, or the `BDAT ... LAST`
    /// chunk): answer it (LMTP: once per accepted recipient, in order).
    MessageEnd,
    /// The message broke the line rule and was refused by the session (it
    /// answered `550`); drop the pieces received for it.
    MessageRejected(FramingError),
    /// The client's answer to a `334` challenge. Answer it.
    AuthResponse(Secret<Bytes>),
    /// The client cancelled `AUTH` with `*`; the session answered `501`.
    AuthCancelled,
    /// The client asked to authenticate with `AUTH EXTERNAL` (RFC 4422
    /// Appendix A) over TLS with a verified client certificate. Answer it:
    /// [`accept`](ServerSession::accept) (`235`) or
    /// [`reject`](ServerSession::reject) (`535 5.7.8`, say); no challenge
    /// follows.
    ExternalAuthRequested(ExternalAuth),
    /// The mail transaction was reset (`RSET`, a new `EHLO`, `STARTTLS`,
    /// end of message). Drop envelope state.
    TransactionReset,
    /// The session refused a command itself (syntax, sequence, policy) and
    /// sent this reply.
    Refused(Reply),
    /// The next event is a `MAIL` command with the `REQUIRETLS` parameter
    /// (RFC 8689), received over TLS after the extension was advertised. If
    /// you accept it, the message requires TLS: store that with it and relay
    /// it only with `REQUIRETLS` (RFC 8689 §4.1; see
    /// [`policy`](super::policy)). [`ServerSession::transaction_requires_tls`]
    /// says the same until the transaction ends.
    TransactionRequiresTls,
    /// Graduated cleartext degradation: the hook in
    /// [`ServerConfig::degrade_cleartext`] deferred a `MAIL` received in
    /// cleartext, and the session sent this temporary reply. The command did
    /// not reach the application.
    CleartextDeferred(Reply),
    /// Upgrade and TLS facts.
    Upgrade(UpgradeEvent),
}

impl From<UpgradeEvent> for ServerEvent {
    fn from(e: UpgradeEvent) -> Self {
        ServerEvent::Upgrade(e)
    }
}

/// A server session: one per accepted connection.
///
/// ```
/// use std::sync::Arc;
/// use starttls::smtp::{ServerConfig, ServerEvent, ServerSession, Command};
/// use starttls::ServerTls;
///
/// let config = Arc::new(ServerConfig::new("mx.example.org", ServerTls::None));
/// let mut server = ServerSession::new(config).unwrap();
/// assert!(server.poll_transmit().unwrap().starts_with(b"220 mx.example.org"));
///
/// server.handle_input(b"EHLO client.example\r\nMAIL FROM:<a@example.net>\r\n");
/// assert!(matches!(server.poll_event(), Ok(Some(ServerEvent::Hello(_)))));
/// assert!(matches!(server.poll_event(), Ok(Some(ServerEvent::Command(Command::Mail { .. })))));
/// server.accept().unwrap();
/// let out = server.poll_transmit().unwrap();
/// assert!(out.ends_with(b"250 2.1.0 Ok\r\n"));
/// ```
pub struct ServerSession {
    engine: Engine<ServerMachine>,
}

session_io!(ServerSession, ServerEvent);

impl ServerSession {
    /// Starts a session; the greeting is ready in
    /// [`poll_transmit`](Self::poll_transmit) (with implicit TLS, after the
    /// handshake).
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, ConfigError> {
        config.validate()?;
        let ec = EngineConfig::server(&config.tls, config.implicit_tls, config.injection);
        let machine = ServerMachine::new(Arc::clone(&config), false);
        Ok(ServerSession {
            engine: Engine::new(config, machine, ec),
        })
    }

    /// Answers the pending command (or message end, chunk end, SASL step).
    ///
    /// The code must fit: `MAIL`/`RCPT`/`VRFY`/`EXPN` take `2xx`/`4xx`/`5xx`;
    /// `DATA` takes `354` (then the message follows) or `4xx`/`5xx`; `AUTH`
    /// and SASL responses take `235`, `334` (a challenge) or `4xx`/`5xx`.
    pub fn reply(&mut self, reply: Reply) -> Result<(), UsageError> {
        self.engine.call(|m, io| m.reply(reply, io))
    }

    /// Answers the pending command positively with the usual text
    /// (`250 2.1.0 Ok`, `250 2.1.5 Ok`, `354 End data with <CR><LF>.<CR><LF>`,
    /// `250 2.0.0 Ok: queued`, `235 2.7.0 Authentication successful`, ...).
    pub fn accept(&mut self) -> Result<(), UsageError> {
        let pending = self
            .engine
            .machine()
            .pending
            .ok_or(UsageError::NoCommandPending)?;
        self.reply(pending.positive())
    }

    /// Answers the pending command with `code`, an optional enhanced status
    /// code (`"5.1.1"`) and one line of text.
    pub fn reject(
        &mut self,
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: &str,
    ) -> Result<(), UsageError> {
        if super::ReplyCode::new(code).is_none() {
            return Err(UsageError::InvalidReplyCode(code));
        }
        self.reply(Reply::new(code, enhanced, &[text.as_bytes()]))
    }

    /// `true` while a command, message end or SASL step waits for
    /// [`reply`](Self::reply); further input is buffered meanwhile.
    pub fn is_waiting_for_reply(&self) -> bool {
        self.engine.machine().pending.is_some()
    }

    /// `true` once a SASL exchange ended with `235` in this TLS (or cleartext)
    /// phase.
    pub fn is_authenticated(&self) -> bool {
        self.engine.machine().authenticated
    }

    /// `true` from a `MAIL` with `REQUIRETLS` that the session passed on
    /// ([`ServerEvent::TransactionRequiresTls`]) until the transaction ends:
    /// the `MAIL` refused by the application, `RSET`, a new `EHLO`, or the
    /// (last) reply to the end of the message. Ask it at
    /// [`ServerEvent::MessageEnd`] to tag the stored message (RFC 8689 §4.1).
    pub fn transaction_requires_tls(&self) -> bool {
        self.engine.machine().require_tls
    }
}

/// What the application must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Mail,
    Rcpt,
    Data,
    Chunk,
    /// End of message; LMTP wants one reply per accepted recipient.
    MessageEnd {
        replies: u32,
    },
    Auth,
    /// `AUTH EXTERNAL`, its authorization identity read: success or failure.
    External,
    Other(&'static str),
}

impl Pending {
    fn name(self) -> &'static str {
        match self {
            Pending::Mail => "MAIL",
            Pending::Rcpt => "RCPT",
            Pending::Data => "DATA",
            Pending::Chunk => "BDAT",
            Pending::MessageEnd { .. } => "end of message",
            Pending::Auth => "AUTH",
            Pending::External => "AUTH EXTERNAL",
            Pending::Other(v) => v,
        }
    }

    fn fits(self, code: u16) -> bool {
        let class = code / 100;
        let negative = class == 4 || class == 5;
        match self {
            Pending::Data => code == 354 || negative,
            Pending::Auth => class == 2 || code == 334 || negative,
            // RFC 4422 Appendix A: no challenge follows the identity.
            Pending::External => class == 2 || negative,
            _ => class == 2 || negative,
        }
    }

    fn positive(self) -> Reply {
        let (code, e, text): (u16, (u8, u16, u16), &str) = match self {
            Pending::Mail => (250, (2, 1, 0), "Ok"),
            Pending::Rcpt => (250, (2, 1, 5), "Ok"),
            Pending::Data => {
                return Reply::new(354, None, &[b"End data with <CR><LF>.<CR><LF>"]);
            }
            Pending::Chunk => (250, (2, 0, 0), "Ok: chunk received"),
            Pending::MessageEnd { .. } => (250, (2, 0, 0), "Ok: queued"),
            Pending::Auth | Pending::External => (235, (2, 7, 0), "Authentication successful"),
            Pending::Other(_) => (250, (2, 0, 0), "Ok"),
        };
        reply(code, e, text)
    }
}

fn reply(code: u16, (class, subject, detail): (u8, u16, u16), text: &str) -> Reply {
    Reply::new(
        code,
        Some(EnhancedCode {
            class,
            subject,
            detail,
        }),
        &[text.as_bytes()],
    )
}

#[derive(Debug)]
enum Mode {
    Command,
    Data(DataReader),
    Bdat {
        remaining: u64,
        last: bool,
        /// The reply that refuses this chunk once its data has been read.
        refuse: Option<(u16, (u8, u16, u16), &'static str)>,
    },
    AuthResponse,
    /// After the empty `334` to `AUTH EXTERNAL`: the next line is the
    /// authorization identity.
    ExternalResponse,
}

pub(crate) struct ServerMachine {
    config: Arc<ServerConfig>,
    greeted: bool,
    hello: bool,
    /// The client said `EHLO`/`LHLO` (extensions advertised), not `HELO`.
    extended: bool,
    mail: bool,
    /// The transaction's `MAIL` carried `REQUIRETLS` (RFC 8689).
    require_tls: bool,
    /// `MAIL` commands shown to the degradation hook in this session.
    cleartext_mails: u32,
    rcpts: u32,
    /// A `BDAT` chunk of this transaction was accepted: the message is
    /// being sent in chunks, and `DATA` may not join it (RFC 3030 §2).
    chunked: bool,
    authenticated: bool,
    mode: Mode,
    pending: Option<Pending>,
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
            hello: false,
            extended: false,
            mail: false,
            require_tls: false,
            cleartext_mails: 0,
            rcpts: 0,
            chunked: false,
            authenticated: false,
            mode: Mode::Command,
            pending: None,
            scanned: 0,
            skipper: LineSkipper::default(),
            errors: 0,
            fatal: None,
        }
    }

    fn send(&self, io: &mut Io<'_, ServerEvent>, r: &Reply) {
        io.send(r.raw());
    }

    /// Sends a reply the session chose itself for a refused command.
    fn refuse(&mut self, io: &mut Io<'_, ServerEvent>, code: u16, e: (u8, u16, u16), text: &str) {
        let r = reply(code, e, text);
        self.send(io, &r);
        io.emit(ServerEvent::Refused(r));
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            self.send(
                io,
                &reply(421, (4, 7, 0), "Too many errors, closing connection"),
            );
            io.close();
            self.fatal = Some(Error::LimitExceeded {
                what: "refused commands",
                limit: self.config.limits.max_errors as usize,
            });
        }
    }

    fn reset_transaction(&mut self, io: &mut Io<'_, ServerEvent>) {
        if self.mail || self.rcpts > 0 {
            io.emit(ServerEvent::TransactionReset);
        }
        self.mail = false;
        self.rcpts = 0;
        self.chunked = false;
        self.require_tls = false;
    }

    /// The line limit for the next line, raised by the extensions offered
    /// as their RFCs allow. The choice depends only on the first octets of
    /// the line, so it is the same however the line was split.
    fn line_limit(&self, input: &[u8], trust: Trust) -> usize {
        let l = &self.config.limits;
        if matches!(self.mode, Mode::AuthResponse | Mode::ExternalResponse) {
            return l.auth_line;
        }
        // RFC 4954 §4: an AUTH initial response may be as long as a SASL line.
        if self.offers_auth(trust)
            && input
                .get(..5)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "))
        {
            return l.auth_line.max(l.command_line);
        }
        let x = &self.config.extensions;
        // RFC 1870 §3: SIZE adds 26 octets; RFC 3461 §5: ENVID adds 100 to
        // MAIL, ORCPT and NOTIFY add 500 to RCPT; RFC 8689 §2: REQUIRETLS
        // adds 11 to MAIL.
        l.command_line
            + if x.size.is_some() { 26 } else { 0 }
            + if x.dsn { 600 } else { 0 }
            + if x.requiretls { 11 } else { 0 }
    }

    fn offers_starttls(&self, trust: Trust) -> bool {
        self.config.offers_starttls(trust)
    }

    fn offers_auth(&self, trust: Trust) -> bool {
        self.config.offers_auth(trust)
    }

    fn command(&mut self, line: Bytes, io: &mut Io<'_, ServerEvent>) {
        // Parsed borrowed: the commands the session answers itself (and every
        // refused line) never take a handle on `line`; a command handed to
        // the application is attached to it (`slice_ref`, no copy).
        let cmd = match CommandRef::parse_borrowed(&line) {
            Ok(c) => c,
            Err(e) => {
                let (code, enhanced) = e.reply_code();
                let (class, subject, detail) = parse_enhanced(enhanced);
                let text = e.to_string();
                return self.refuse(io, code, (class, subject, detail), &text);
            }
        };
        let trust = io.trust();
        let lmtp = self.config.lmtp;
        match &cmd {
            Command::Ehlo { .. } | Command::Helo { .. } if lmtp => {
                return self.refuse(io, 500, (5, 5, 1), "LMTP requires LHLO");
            }
            Command::Lhlo { .. } if !lmtp => {
                return self.refuse(io, 500, (5, 5, 1), "Unrecognized command");
            }
            Command::Ehlo { .. } | Command::Lhlo { .. } => {
                self.reset_transaction(io);
                self.hello = true;
                self.extended = true;
                let reply = self.config.ehlo_reply(trust, io.tls_info());
                io.send(&reply);
                io.emit(ServerEvent::Hello(cmd.map_octets(attach(&line))));
                return;
            }
            Command::Helo { .. } => {
                self.reset_transaction(io);
                self.hello = true;
                self.extended = false;
                let r = Reply::new(250, None, &[self.config.hostname.as_bytes()]);
                self.send(io, &r);
                io.emit(ServerEvent::Hello(cmd.map_octets(attach(&line))));
                return;
            }
            Command::StartTls => {
                if trust == Trust::Tls {
                    return self.refuse(io, 503, (5, 5, 1), "TLS already active");
                }
                if !self.offers_starttls(trust) {
                    return self.refuse(io, 502, (5, 5, 1), "STARTTLS not available");
                }
                self.reset_transaction(io);
                self.send(io, &reply(220, (2, 0, 0), "Ready to start TLS"));
                // The cut: nothing after this line is ever read in cleartext.
                io.start_upgrade();
                return;
            }
            Command::Noop { .. } => {
                return self.send(io, &reply(250, (2, 0, 0), "Ok"));
            }
            Command::Rset => {
                self.reset_transaction(io);
                return self.send(io, &reply(250, (2, 0, 0), "Ok"));
            }
            Command::Quit => {
                self.send(io, &reply(221, (2, 0, 0), "Bye"));
                io.close();
                return;
            }
            Command::Help { .. } => {
                return self.send(io, &reply(214, (2, 0, 0), "See RFC 5321"));
            }
            _ => {}
        }
        let cmd = cmd.map_octets(attach(&line));
        if let Command::Bdat { size, last } = &cmd {
            // RFC 3030 §2: a chunk's data is read (and discarded) even when the
            // chunk is refused, whatever the reason, so that nothing in a
            // message is ever taken for a command — not even a STARTTLS.
            let refuse = if !self.config.extensions.chunking {
                Some((502, (5, 5, 1), "BDAT not available"))
            } else if self.config.require_tls && trust == Trust::Cleartext {
                Some((530, (5, 7, 0), "Must issue a STARTTLS command first"))
            } else if !self.mail || self.rcpts == 0 {
                Some((503, (5, 5, 1), "Need MAIL and RCPT before BDAT"))
            } else {
                None
            };
            self.mode = Mode::Bdat {
                remaining: *size,
                last: *last,
                refuse,
            };
            if refuse.is_none() {
                self.chunked = true;
                io.emit(ServerEvent::Command(cmd));
            }
            return;
        }
        // Everything below is for the application, subject to policy.
        if self.config.require_tls && trust == Trust::Cleartext {
            return self.refuse(io, 530, (5, 7, 0), "Must issue a STARTTLS command first");
        }
        match &cmd {
            Command::Auth { .. } => {
                if !self.offers_auth(trust) {
                    if !self.config.auth_mechanisms.is_empty() {
                        return self.refuse(
                            io,
                            538,
                            (5, 7, 11),
                            "Encryption required for requested authentication mechanism",
                        );
                    }
                    return self.refuse(io, 502, (5, 5, 1), "AUTH not available");
                }
                if !self.hello {
                    return self.refuse(io, 503, (5, 5, 1), "Send EHLO first");
                }
                if self.authenticated {
                    return self.refuse(io, 503, (5, 5, 1), "Already authenticated");
                }
                if self.mail {
                    return self.refuse(
                        io,
                        503,
                        (5, 5, 1),
                        "AUTH not allowed during a mail transaction",
                    );
                }
                if let Command::Auth {
                    mechanism,
                    initial_response,
                } = &cmd
                {
                    if sasl::is_external(mechanism) {
                        let response = initial_response.as_ref().map(|r| r.expose().clone());
                        return self.external(response, io);
                    }
                }
                self.pending = Some(Pending::Auth);
            }
            Command::Mail { from, params } => {
                if !self.hello {
                    return self.refuse(io, 503, (5, 5, 1), "Send HELO/EHLO first");
                }
                if self.mail {
                    return self.refuse(io, 503, (5, 5, 1), "Nested MAIL command");
                }
                let require_tls = has_require_tls(params);
                if require_tls {
                    if !self.config.extensions.requiretls {
                        return self.refuse(io, 555, (5, 5, 4), "REQUIRETLS not supported");
                    }
                    // RFC 8689 §2: only in a TLS session.
                    if trust == Trust::Cleartext {
                        return self.refuse(
                            io,
                            530,
                            (5, 7, 10),
                            "REQUIRETLS needs TLS: issue STARTTLS first",
                        );
                    }
                    if !self.extended {
                        return self.refuse(
                            io,
                            555,
                            (5, 5, 4),
                            "REQUIRETLS not advertised: send EHLO first",
                        );
                    }
                }
                if trust == Trust::Cleartext {
                    if let Some(hook) = &self.config.degrade_cleartext {
                        let mail = CleartextMail {
                            from,
                            params,
                            earlier: self.cleartext_mails,
                            authenticated: self.authenticated,
                        };
                        self.cleartext_mails = self.cleartext_mails.saturating_add(1);
                        if let Some(d) = hook.decide(&mail) {
                            let r = d.reply().clone();
                            self.send(io, &r);
                            io.emit(ServerEvent::CleartextDeferred(r));
                            return;
                        }
                    }
                }
                if require_tls {
                    self.require_tls = true;
                    io.emit(ServerEvent::TransactionRequiresTls);
                }
                self.pending = Some(Pending::Mail);
            }
            Command::Rcpt { .. } => {
                if !self.mail {
                    return self.refuse(io, 503, (5, 5, 1), "Need MAIL command");
                }
                self.pending = Some(Pending::Rcpt);
            }
            Command::Data => {
                if !self.mail {
                    return self.refuse(io, 503, (5, 5, 1), "Need MAIL command");
                }
                if self.rcpts == 0 {
                    return self.refuse(io, 554, (5, 5, 1), "No valid recipients");
                }
                if self.chunked {
                    // RFC 3030 §2: a message begun with BDAT ends with
                    // BDAT LAST; mixing an unstuffed chunk with a
                    // dot-stuffed body is what smuggling feeds on.
                    return self.refuse(io, 503, (5, 5, 1), "DATA not allowed after BDAT");
                }
                self.pending = Some(Pending::Data);
            }

            Command::Vrfy { .. } => self.pending = Some(Pending::Other("VRFY")),
            Command::Expn { .. } => self.pending = Some(Pending::Other("EXPN")),
            // Handled above.
            _ => return self.refuse(io, 500, (5, 5, 1), "Unrecognized command"),
        }
        io.emit(ServerEvent::Command(cmd));
    }

    fn reply(&mut self, r: Reply, io: &mut Io<'_, ServerEvent>) -> Result<(), UsageError> {
        let pending = self.pending.ok_or(UsageError::NoCommandPending)?;
        let code = r.code().get();
        if !pending.fits(code) {
            return Err(UsageError::ReplyDoesNotFit {
                command: pending.name(),
                code,
            });
        }
        self.send(io, &r);
        let positive = code / 100 == 2;
        self.pending = None;
        match pending {
            Pending::Mail => {
                self.mail = positive;
                self.require_tls &= positive;
            }
            Pending::Rcpt => self.rcpts += u32::from(positive),
            Pending::Data if code == 354 => self.mode = Mode::Data(DataReader::default()),
            Pending::Data | Pending::Chunk | Pending::Other(_) => {}
            Pending::MessageEnd { replies } => {
                if replies > 1 {
                    self.pending = Some(Pending::MessageEnd {
                        replies: replies - 1,
                    });
                } else {
                    self.mail = false;
                    self.rcpts = 0;
                    self.chunked = false;
                    self.require_tls = false;
                }
            }
            Pending::External => self.authenticated = positive,
            Pending::Auth => {
                if code == 334 {
                    self.mode = Mode::AuthResponse;
                } else if positive {
                    self.authenticated = true;
                }
            }
        }
        Ok(())
    }

    /// `AUTH EXTERNAL` (RFC 4422 Appendix A), with or without its initial
    /// response. The session owns the mechanism whatever the configuration
    /// says: it is offered only with a verified client certificate.
    fn external(&mut self, response: Option<Bytes>, io: &mut Io<'_, ServerEvent>) {
        let offered =
            sasl::external_offered(&self.config.auth_mechanisms, io.trust(), io.tls_info());
        if !offered {
            return self.refuse(
                io,
                504,
                (5, 5, 4),
                "EXTERNAL needs a verified TLS client certificate",
            );
        }
        match response {
            // RFC 4954 §4: an empty challenge is `334` SP.
            None => {
                io.send(b"334 \r\n");
                self.mode = Mode::ExternalResponse;
            }
            Some(r) => self.external_response(&r, io),
        }
    }

    /// The client's `EXTERNAL` response: reported with the verified
    /// identity, or refused when it is not a valid authorization identity.
    fn external_response(&mut self, response: &[u8], io: &mut Io<'_, ServerEvent>) {
        let identity = sasl::server_identity(io.trust(), io.tls_info()).cloned();
        let Some(identity) = identity else {
            return self.refuse(
                io,
                504,
                (5, 5, 4),
                "EXTERNAL needs a verified TLS client certificate",
            );
        };
        match sasl::decode_authzid(response) {
            Ok(authzid) => {
                self.pending = Some(Pending::External);
                io.emit(ServerEvent::ExternalAuthRequested(ExternalAuth {
                    identity,
                    authzid,
                }));
            }
            Err(e) => self.refuse(io, 501, (5, 5, 2), e.text()),
        }
    }

    fn message_end(&mut self, io: &mut Io<'_, ServerEvent>) {
        let replies = if self.config.lmtp {
            self.rcpts.max(1)
        } else {
            1
        };
        self.pending = Some(Pending::MessageEnd { replies });
        io.emit(ServerEvent::MessageEnd);
    }
}

fn parse_enhanced(s: &str) -> (u8, u16, u16) {
    let mut it = s.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
    let class = it.next().unwrap_or(5) as u8;
    (class, it.next().unwrap_or(0), it.next().unwrap_or(0))
}

impl Machine for ServerMachine {
    type Config = ServerConfig;
    type Event = ServerEvent;

    fn after_tls(config: &Arc<ServerConfig>) -> Self {
        // RFC 3207 §4.2: no new greeting; the client must start over with EHLO.
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
            let kind = if self.config.lmtp { "LMTP" } else { "ESMTP" };
            let text = format!("{} {kind}", self.config.hostname);
            self.send(io, &Reply::new(220, None, &[text.as_bytes()]));
        }
        loop {
            if self.pending.is_some() {
                return Ok(());
            }
            match &mut self.mode {
                Mode::Command | Mode::AuthResponse | Mode::ExternalResponse => {
                    if self.skipper.is_active() {
                        let n = self.skipper.skip(io.input());
                        io.skip(n);
                        if self.skipper.is_active() {
                            return Ok(());
                        }
                        continue;
                    }
                    let auth = matches!(self.mode, Mode::AuthResponse | Mode::ExternalResponse);
                    let external = matches!(self.mode, Mode::ExternalResponse);
                    let limit = self.line_limit(io.input(), io.trust());
                    let lenient = self.config.insecure_bare_lf_line_ends;
                    let scan = if lenient {
                        scan_lf_line(io.input(), &mut self.scanned, limit)
                    } else {
                        scan_line(io.input(), &mut self.scanned, limit)
                    };
                    match scan {
                        Scan::Incomplete => return Ok(()),
                        Scan::TooLong => {
                            // The first `limit` octets hold no line end; skip
                            // them and the rest of the line up to its end
                            // (CRLF only, unless bare LF is let through).
                            let after_cr = after_cr(io.input(), limit);
                            io.skip(limit);
                            if lenient {
                                self.skipper.start_lf();
                            } else {
                                self.skipper.start_crlf(after_cr);
                            }
                            self.mode = Mode::Command;
                            self.refuse(io, 500, (5, 5, 2), "Line too long");
                            if auth {
                                io.emit(ServerEvent::AuthCancelled);
                            }
                        }
                        Scan::Invalid { len, error } => {
                            io.skip(len);
                            self.mode = Mode::Command;
                            let text = format!("Syntax error: {error}");
                            self.refuse(io, 500, (5, 5, 2), &text);
                            if auth {
                                io.emit(ServerEvent::AuthCancelled);
                            }
                        }
                        Scan::Line(len) => {
                            let line = without_line_end(&io.take(len));
                            if auth {
                                self.mode = Mode::Command;
                                if line.as_ref() == b"*" {
                                    self.send(
                                        io,
                                        &reply(501, (5, 0, 0), "Authentication cancelled"),
                                    );
                                    io.emit(ServerEvent::AuthCancelled);
                                } else if external {
                                    self.external_response(&line, io);
                                } else {
                                    self.pending = Some(Pending::Auth);
                                    io.emit(ServerEvent::AuthResponse(Secret::new(line)));
                                }
                            } else {
                                self.command(line, io);
                            }
                        }
                    }
                }
                Mode::Data(reader) => match reader.step(io, self.config.limits.text_line) {
                    DataStep::NeedInput => return Ok(()),
                    DataStep::Piece(p) => io.emit(ServerEvent::MessageData(p)),
                    DataStep::End { rejected: None } => {
                        self.mode = Mode::Command;
                        self.message_end(io);
                    }
                    DataStep::End {
                        rejected: Some(why),
                    } => {
                        self.mode = Mode::Command;
                        self.reset_transaction(io);
                        let text = format!("Message refused: {why}");
                        self.send(io, &reply(550, (5, 6, 0), &text));
                        io.emit(ServerEvent::MessageRejected(why));
                    }
                },
                Mode::Bdat {
                    remaining,
                    last,
                    refuse,
                } => {
                    let (last, refuse) = (*last, *refuse);
                    if *remaining > 0 {
                        // Fixed piece boundaries keep the events independent
                        // of how the chunk was split into reads.
                        let want = usize::try_from(*remaining).unwrap_or(usize::MAX).min(PIECE);
                        if io.input().len() < want {
                            return Ok(());
                        }
                        *remaining -= want as u64;
                        if refuse.is_some() {
                            io.skip(want);
                        } else {
                            let piece = io.take(want);
                            io.emit(ServerEvent::MessageData(piece));
                        }
                        if *remaining > 0 {
                            continue;
                        }
                    }
                    self.mode = Mode::Command;
                    if let Some((code, e, text)) = refuse {
                        self.refuse(io, code, e, text);
                    } else if last {
                        self.message_end(io);
                    } else {
                        self.pending = Some(Pending::Chunk);
                        io.emit(ServerEvent::ChunkEnd);
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
            return Waiting::Application;
        }
        match self.mode {
            Mode::Data(_) | Mode::Bdat { .. } => Waiting::DataBlock,
            Mode::Command | Mode::AuthResponse | Mode::ExternalResponse => Waiting::Command,
        }
    }

    /// RFC 5321 §4.5.3.2: a server that times out closes with `421`;
    /// RFC 3463 `4.4.2`: bad connection.
    fn goodbye(&self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        reply(
            421,
            (4, 4, 2),
            &format!("{} Timeout, closing connection", self.config.hostname),
        )
        .write_to(&mut v);
        Some(v)
    }
}

#[cfg(test)]
mod ehlo_cache_tests {
    use super::*;
    use crate::tls::ClientIdentity;

    fn config(f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
        let mut c = ServerConfig::new("mx.test", ServerTls::External);
        c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
        c.extensions.requiretls = true;
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

    /// The session's reply to `EHLO`, in cleartext or (bring-your-own TLS)
    /// after STARTTLS with `info`.
    fn ehlo(config: &Arc<ServerConfig>, tls: Option<TlsInfo>) -> String {
        let mut s = ServerSession::new(Arc::clone(config)).unwrap();
        out(&mut s);
        if let Some(info) = tls {
            s.handle_input(b"EHLO c.test\r\nSTARTTLS\r\n");
            assert!(out(&mut s).ends_with("220 2.0.0 Ready to start TLS\r\n"));
            s.tls_established(info).unwrap();
            while let Some(e) = s.poll_event().unwrap() {
                assert!(
                    matches!(e, ServerEvent::Hello(_) | ServerEvent::Upgrade(_)),
                    "{e:?}"
                );
            }
            assert_eq!(s.trust(), Trust::Tls);
        }
        s.handle_input(b"EHLO c.test\r\n");
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
        assert!(c.ehlo.0.get().is_none(), "built only at the first EHLO");
        let first = ehlo(&c, None);
        let built = c.ehlo.0.get().expect("built at the first EHLO");
        let at = (built.cleartext.as_ptr(), built.tls.as_ptr());
        let second = ehlo(&c, None);
        let tls = ehlo(&c, Some(TlsInfo::unknown()));
        let built = c.ehlo.0.get().unwrap();
        assert_eq!((built.cleartext.as_ptr(), built.tls.as_ptr()), at);
        assert_eq!(first, second);
        // The cached octets are the reply built from the configuration.
        assert_eq!(
            first.as_bytes(),
            &c.build_ehlo_reply(Trust::Cleartext, None)[..]
        );
        assert_eq!(
            tls.as_bytes(),
            &c.build_ehlo_reply(Trust::Tls, Some(&TlsInfo::unknown()))[..]
        );
    }

    #[test]
    fn cleartext_and_tls_variants() {
        let c = config(|_| {});
        let clear = ehlo(&c, None);
        assert_eq!(
            clear,
            "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
             250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
        );
        // Over TLS: AUTH and REQUIRETLS, no STARTTLS; EXTERNAL only with a
        // verified client certificate, never from the cache.
        let tls = ehlo(&c, Some(TlsInfo::unknown()));
        assert_eq!(
            tls,
            "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-REQUIRETLS\r\n250 AUTH PLAIN\r\n"
        );
        let with_cert = ehlo(
            &c,
            Some(TlsInfo::unknown().with_client_identity(identity())),
        );
        assert!(
            with_cert.ends_with("250 AUTH PLAIN EXTERNAL\r\n"),
            "{with_cert}"
        );
        // ... and that reply did not go into the cache.
        assert_eq!(ehlo(&c, Some(TlsInfo::unknown())), tls);
        assert_eq!(ehlo(&c, None), clear);
    }

    #[test]
    fn a_changed_configuration_gets_its_own_reply() {
        let c = config(|_| {});
        let before = ehlo(&c, None);
        // Different configurations, different replies.
        let other = config(|c| {
            c.hostname = "other.test".into();
            c.extensions.size = Some(1000);
        });
        let reply = ehlo(&other, None);
        assert!(
            reply.starts_with("250-other.test\r\n250-SIZE 1000\r\n"),
            "{reply}"
        );
        assert_eq!(ehlo(&c, None), before);
        // A clone changed after the original was used.
        let mut clone = (*c).clone();
        clone.extensions.pipelining = false;
        let clone = Arc::new(clone);
        assert!(!ehlo(&clone, None).contains("PIPELINING"));
        // The same configuration changed in place once its sessions are gone.
        let mut c = c;
        let m = Arc::get_mut(&mut c).expect("no session left");
        m.insecure_auth_in_cleartext = true;
        m.auth_mechanisms = vec!["LOGIN".into()];
        m.implicit_tls = false;
        let after = ehlo(&c, None);
        assert!(
            after.ends_with("250-STARTTLS\r\n250 AUTH LOGIN\r\n"),
            "{after}"
        );
        assert_eq!(
            after.as_bytes(),
            &c.build_ehlo_reply(Trust::Cleartext, None)[..]
        );
        let m = Arc::get_mut(&mut c).unwrap();
        m.tls = ServerTls::None;
        m.extensions.requiretls = false;
        assert!(!ehlo(&c, None).contains("STARTTLS"));
    }
}
