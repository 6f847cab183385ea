//! Errors: what went wrong, which rule or step failed, and who is likely at
//! fault. `Display` gives a message fit for a user.

use std::fmt;

use crate::framing::FramingError;
use crate::tls::TlsError;

/// A step of the client's negotiation, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Waiting for the server greeting.
    Greeting,
    /// Asking for capabilities in cleartext (`EHLO`/`LHLO`, `CAPABILITY`, `CAPA`).
    Capabilities,
    /// The `HELO` fallback after `EHLO` was refused.
    Helo,
    /// `STARTTLS` / `STLS` and its reply.
    StartTls,
    /// The TLS handshake.
    Handshake,
    /// Asking for capabilities again over TLS.
    CapabilitiesAfterTls,
    /// After negotiation, while the application uses the session.
    Ready,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Greeting => "greeting",
            Step::Capabilities => "capability query",
            Step::Helo => "HELO fallback",
            Step::StartTls => "STARTTLS/STLS",
            Step::Handshake => "TLS handshake",
            Step::CapabilitiesAfterTls => "capability query over TLS",
            Step::Ready => "session",
        })
    }
}

/// Why a client whose policy requires TLS refused to go on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRefusal {
    /// The server did not offer STARTTLS/STLS.
    NotOffered,
    /// The server answered the upgrade command negatively (`454`, `5xx`,
    /// `-ERR`, `NO`, `BAD`), with this code or status word.
    Refused {
        /// Reply code (SMTP) or status (`NO`, `BAD`, `-ERR`).
        status: String,
    },
    /// The server answered the upgrade command with something that is neither
    /// a yes nor a no (SMTP `354`, `221`, `250`, an IMAP continuation): a
    /// broken server, or a tampered reply.
    OddReply {
        /// The code or status word received.
        status: String,
    },
    /// The server does not speak the extended protocol at all (SMTP: `EHLO`
    /// refused), so STARTTLS cannot exist.
    NotExtended,
    /// The capability query itself was refused.
    CapabilitiesRefused,
    /// IMAP `PREAUTH` greeting on a cleartext connection: the session is
    /// already authenticated, where STARTTLS is no longer allowed.
    Preauth,
}

impl fmt::Display for TlsRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsRefusal::NotOffered => {
                f.write_str("the server does not offer to upgrade to TLS (STARTTLS/STLS)")
            }
            TlsRefusal::Refused { status } => {
                write!(f, "the server refused to upgrade to TLS ({status})")
            }
            TlsRefusal::OddReply { status } => {
                write!(
                    f,
                    "the server gave an invalid answer to STARTTLS ({status})"
                )
            }
            TlsRefusal::NotExtended => f.write_str(
                "the server does not support extensions (EHLO), so it cannot offer STARTTLS",
            ),
            TlsRefusal::CapabilitiesRefused => {
                f.write_str("the server refused to list its capabilities")
            }
            TlsRefusal::Preauth => f.write_str(
                "the server pre-authenticated the cleartext connection, which rules out STARTTLS",
            ),
        }
    }
}

/// A session failure. After it, the session is closed: the caller should
/// write out any pending transmit bytes and close the connection.
///
/// Each variant's documentation says what happened and who is likely at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Client role: the server sent data after its positive answer to
    /// STARTTLS and before our ClientHello could have reached it. A
    /// legitimate server sends nothing there; this is a response injection by
    /// a man in the middle (threat class 2) or a badly broken server. The
    /// session fails on the first such octet and withdraws its ClientHello.
    /// (No count: how many octets had arrived by then depends on how the
    /// network split them.)
    ResponseInjection,
    /// Server role with `InjectionPolicy::Fail`: the client sent data after
    /// the STARTTLS line and before our positive reply could have reached it
    /// (threat class 1, CVE-2011-0411). A legitimate client waits for the
    /// reply. The session fails on the first such octet and withdraws the
    /// reply.
    CommandInjection,
    /// Client role: the policy requires TLS and the server did not provide it
    /// at `step`. Nothing but the negotiation was sent in cleartext. Likely an
    /// attacker stripping STARTTLS, or a server without TLS.
    TlsRequired {
        /// The negotiation step that failed.
        step: Step,
        /// What the server did instead.
        reason: TlsRefusal,
    },
    /// The TLS handshake or a TLS record failed.
    Tls(TlsError),
    /// The peer's input broke the line rule (client role, where a broken reply
    /// cannot be answered; servers answer `500` instead and go on).
    Framing(FramingError),
    /// The peer sent a message that does not parse, at a point where the
    /// session cannot recover (a reply, a greeting). A broken peer or an
    /// attack.
    Malformed {
        /// Which step was going on.
        step: Step,
        /// The grammar rule that failed.
        reason: String,
    },
    /// The server answered a negotiation step negatively (a `554` greeting,
    /// a refused `EHLO` and `HELO`, an IMAP `BYE` greeting).
    Refused {
        /// Which step was refused.
        step: Step,
        /// The reply code or status word.
        status: String,
    },
    /// The peer sent a reply that does not fit the conversation: a reply with
    /// no command outstanding, a reply for a tag never sent, an impossible
    /// code. A broken peer, or tampering (threat class 5).
    UnexpectedReply {
        /// Which step was going on.
        step: Step,
        /// What was received.
        detail: String,
    },
    /// The peer closed the connection before the session ended.
    PeerClosed {
        /// Which step was going on.
        step: Step,
    },
    /// The peer sent more than `limit` octets that could not be processed yet
    /// (server: pipelined commands behind one the application has not
    /// answered; client: a reply longer than allowed).
    LimitExceeded {
        /// What the limit is about.
        what: &'static str,
        /// The limit, in octets or lines.
        limit: usize,
    },
    /// The peer did not answer in time: the caller's timer for `waiting`
    /// fired (see [`crate::session`]). A stalled or dead peer, a broken
    /// network, or a slow-loris attack. A server sent its goodbye (`421`,
    /// `* BYE`, `-ERR`) first.
    Timeout {
        /// What the session was waiting for.
        waiting: crate::session::Waiting,
    },
    /// The peer made the session hold more unprocessed input than its memory
    /// budget allows: the message being assembled plus everything queued
    /// behind a command the application has not answered yet (a pipelining
    /// flood while the application is slow, or one endless message). `limit`
    /// is the budget in force: the protocol's `unauthenticated_buffered_input`
    /// before authentication, `buffered_input` after. The session failed at
    /// the first octet over it, however the input was split. A hostile or
    /// broken peer, or a caller that reads more than
    /// `input_room()` while the application is busy.
    InputBudgetExceeded {
        /// The budget, in octets of (plaintext) input.
        limit: usize,
        /// Whether the session was authenticated (the larger budget applied).
        authenticated: bool,
    },
}

impl Error {
    /// The step the failure happened in, where there is one.
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::TlsRequired { step, .. }
            | Error::Malformed { step, .. }
            | Error::Refused { step, .. }
            | Error::UnexpectedReply { step, .. }
            | Error::PeerClosed { step } => Some(*step),
            Error::ResponseInjection => Some(Step::StartTls),
            Error::Tls(_) => Some(Step::Handshake),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ResponseInjection => f.write_str(
                "connection refused: data arrived after the server agreed to start TLS and before \
                 TLS began (possible response injection by an attacker)",
            ),
            Error::CommandInjection => f.write_str(
                "connection closed: data arrived after STARTTLS and before TLS began \
                 (possible command injection)",
            ),
            Error::TlsRequired { step, reason } => write!(
                f,
                "TLS is required but could not be started ({step}): {reason}; nothing else was sent"
            ),
            Error::Tls(e) => write!(f, "TLS failed: {e}"),
            Error::Framing(e) => write!(f, "the peer broke the line rules: {e}"),
            Error::Malformed { step, reason } => {
                write!(
                    f,
                    "the peer sent an invalid message during {step}: {reason}"
                )
            }
            Error::Refused { step, status } => {
                write!(f, "the server refused the {step} ({status})")
            }
            Error::UnexpectedReply { step, detail } => {
                write!(
                    f,
                    "the peer sent an unexpected reply during {step}: {detail}"
                )
            }
            Error::PeerClosed { step } => {
                write!(f, "the peer closed the connection during {step}")
            }
            Error::LimitExceeded { what, limit } => {
                write!(f, "the peer exceeded a limit: {what} (limit {limit})")
            }
            Error::Timeout { waiting } => write!(f, "timed out waiting for {waiting}"),
            Error::InputBudgetExceeded {
                limit,
                authenticated,
            } => {
                let phase = if *authenticated { "after" } else { "before" };
                write!(
                    f,
                    "the peer sent more input than the session holds unprocessed \
                     {phase} authentication (budget {limit} octets)"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Tls(e) => Some(e),
            Error::Framing(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(e)
    }
}

/// A call the caller made at the wrong time or with a wrong argument. The
/// session is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The session is closed or has failed.
    Closed,
    /// Server role: there is no command waiting for a reply.
    NoCommandPending,
    /// The reply code does not fit the command it answers (for example a `354`
    /// to `MAIL`, or a `2xx` to `DATA`).
    ReplyDoesNotFit {
        /// The command being answered.
        command: &'static str,
        /// The code given.
        code: u16,
    },
    /// Not a valid SMTP reply code (RFC 5321 §4.2: 2xx to 5xx, second digit
    /// 0 to 5).
    InvalidReplyCode(u16),
    /// Client role: negotiation is not finished (no `Ready` event yet).
    NotReady,
    /// The command is one the session issues itself (`STARTTLS`, `STLS`,
    /// `EHLO`, `CAPABILITY`): upgrading is never a call on a live session.
    ReservedCommand(&'static str),
    /// The command would send credentials in cleartext, which the
    /// configuration forbids.
    CleartextCredentials,
    /// Client role: the server did not advertise `PIPELINING`, and a command
    /// is still waiting for its reply.
    WouldPipeline,
    /// The call does not fit the session's state; the text says which rule.
    WrongState(&'static str),
    /// Bring-your-own TLS: `tls_established` was called while the session is
    /// not waiting for it, or before the caller took every transmit byte up to
    /// the upgrade point.
    NotAtUpgradePoint,
    /// SMTP client: the `MAIL` of a message that requires TLS (RFC 8689
    /// `REQUIRETLS`) cannot be sent on this session; the refusal names the
    /// rule and the status code for the non-delivery report.
    RequireTls(RequireTlsRefusal),
    /// A value the application gave for writing cannot be sent as exactly
    /// one protocol element: a CR, LF or NUL inside a token, a domain, path,
    /// ESMTP parameter, argument, tag, code or SASL line that does not follow
    /// its grammar, or a typed value that would be read back as another one
    /// (an IMAP `Other` command named `LOGIN`). Nothing was written; the
    /// session is unchanged. A bug in the application, or application data
    /// (a user name, a mailbox, a message) carrying an injection attempt.
    InvalidValue {
        /// Which value: the command or response it belongs to and the
        /// field, e.g. `"VRFY"`, `"IMAP command"`, `"SASL response"`.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Client role: SASL `EXTERNAL` cannot work on this session (no TLS, no
    /// client certificate, not advertised); nothing was sent.
    External(crate::sasl::ExternalRefusal),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Closed => f.write_str("the session is closed"),
            UsageError::NoCommandPending => f.write_str("no command is waiting for a reply"),
            UsageError::ReplyDoesNotFit { command, code } => {
                write!(f, "reply code {code} is not a valid answer to {command}")
            }
            UsageError::InvalidReplyCode(c) => write!(f, "{c} is not a valid reply code"),
            UsageError::NotReady => f.write_str("the session has not finished negotiating"),
            UsageError::ReservedCommand(c) => {
                write!(
                    f,
                    "{c} is issued by the session itself and cannot be sent by the caller"
                )
            }
            UsageError::CleartextCredentials => {
                f.write_str("refusing to send credentials over a cleartext connection")
            }
            UsageError::WouldPipeline => {
                f.write_str("the server does not support pipelining; wait for the pending reply")
            }
            UsageError::WrongState(why) => f.write_str(why),
            UsageError::NotAtUpgradePoint => f.write_str(
                "tls_established called while the session is not waiting at the upgrade point \
                 (or before every transmit byte up to that point was taken)",
            ),
            UsageError::RequireTls(r) => write!(f, "refusing to send MAIL: {r}"),
            UsageError::InvalidValue { field, reason } => {
                write!(f, "refusing to write an invalid {field}: {reason}")
            }
            UsageError::External(r) => write!(f, "refusing SASL EXTERNAL: {r}"),
        }
    }
}

impl std::error::Error for UsageError {}

/// A configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// TLS is required (or implicit), or a TLS-only feature is configured
    /// (SMTP `REQUIRETLS`, cleartext degradation), but no TLS configuration
    /// was given.
    TlsRequiredWithoutTls,
    /// A limit is too small to carry the protocol.
    LimitTooSmall {
        /// Which limit.
        what: &'static str,
        /// The smallest value allowed.
        min: usize,
    },
    /// The host name is not valid for the greeting and EHLO reply.
    InvalidHostname,
    /// An SMTP deferral for cleartext degradation must be a transient
    /// negative reply (RFC 5321 §4.2.1: `4yz`, with a class 4 enhanced code
    /// if any) other than `421`, which closes the connection. The code given.
    DeferralNotTransient(u16),
    /// IMAP: the client's tag prefix has a character a tag may not carry
    /// (RFC 9051 §9: `tag = 1*<any ASTRING-CHAR except "+">`), such as a
    /// space, CR or LF, which would let it split or end a command line.
    InvalidTagPrefix,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::TlsRequiredWithoutTls => f.write_str(
                "TLS is required or implicit, or a TLS-only feature is configured, \
                 but no TLS configuration was given",
            ),
            ConfigError::LimitTooSmall { what, min } => {
                write!(f, "limit {what} must be at least {min}")
            }
            ConfigError::InvalidHostname => f.write_str("invalid host name"),
            ConfigError::DeferralNotTransient(c) => write!(
                f,
                "a cleartext deferral must be a transient 4yz reply other than 421 (got {c})"
            ),
            ConfigError::InvalidTagPrefix => f.write_str(
                "the IMAP tag prefix may only hold tag characters (RFC 9051 §9: no space, \
                 control, ( ) { % * \" \\ or +)",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// SMTP: why a client refused to send the `MAIL` of a message that requires TLS
/// (RFC 8689 §4.2.1). Nothing was sent; the session is still usable for
/// messages that do not require TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequireTlsRefusal {
    /// RFC 8689 §4.2.1 step 4 (and §2: "The session itself MUST employ TLS
    /// transmission"): this session is not protected by TLS — an
    /// opportunistic session that went on in cleartext.
    NoTls,
    /// RFC 8689 §4.2.1 step 5: the server's `EHLO`/`LHLO` reply after the
    /// upgrade does not advertise `REQUIRETLS`.
    NotAdvertised,
}

impl fmt::Display for RequireTlsRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequireTlsRefusal::NoTls => {
                "the message requires TLS (REQUIRETLS) and this session is not protected by TLS"
            }
            RequireTlsRefusal::NotAdvertised => {
                "the message requires TLS (REQUIRETLS) and the server does not advertise REQUIRETLS"
            }
        })
    }
}
