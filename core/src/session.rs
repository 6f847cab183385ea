//! What every session has in common, for code that drives any of them: the
//! sealed [`Session`] trait, what a session is waiting for ([`Waiting`]) and
//! how long it may wait ([`Timeouts`]).
//!
//! The crate stays clock-free: a session says *what* it waits for and which
//! timeout applies; the caller owns the timer and calls
//! [`Session::handle_timeout`] when it fires. The session then queues the
//! protocol's goodbye (server role: SMTP `421 4.4.2`, IMAP `* BYE`, POP3
//! `-ERR`; with TLS up, followed by a `close_notify`), closes, and fails with
//! [`Error::Timeout`] naming what it was waiting for.
//!
//! A driver restarts its timer whenever [`Session::waiting_for`] changes, or
//! when the session made progress (an event or transmit bytes) while waiting
//! for anything but the handshake. Bytes that do not complete a line, a
//! reply or a record do not restart it: a peer trickling one octet a minute
//! still times out. The handshake has one deadline from its start.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, UsageError};
use crate::tls::TlsInfo;
use crate::trust::Trust;

/// What a session waits for right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Waiting {
    /// Client role: the server's greeting.
    Greeting,
    /// Client role: the reply to this command (its verb: `"EHLO"`,
    /// `"STARTTLS"`, `"MAIL"`, `"DATA"`, `"end of data"`, `"CAPABILITY"`,
    /// `"IDLE"`, `"STLS"`, ...).
    Reply {
        /// The command the reply answers.
        to: &'static str,
    },
    /// Server role: the client's next command (an idle client).
    Command,
    /// Server role: more message data (after `354`, inside a `BDAT` chunk).
    DataBlock,
    /// The in-memory TLS handshake.
    Handshake,
    /// Bring-your-own TLS: the caller's own handshake and `tls_established`.
    ExternalTls,
    /// The local application: a reply to give, a command to send, bytes to
    /// take. No timeout applies.
    Application,
    /// The session is closed.
    Closed,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Greeting => f.write_str("the server greeting"),
            Waiting::Reply { to } => write!(f, "the reply to {to}"),
            Waiting::Command => f.write_str("the next command"),
            Waiting::DataBlock => f.write_str("message data"),
            Waiting::Handshake => f.write_str("the TLS handshake"),
            Waiting::ExternalTls => f.write_str("the caller's TLS handshake"),
            Waiting::Application => f.write_str("the application"),
            Waiting::Closed => f.write_str("nothing (closed)"),
        }
    }
}

/// How long a session may wait for each thing; `None` waits forever.
///
/// The defaults follow the RFCs: SMTP per step (RFC 5321 §4.5.3.2), IMAP's
/// autologout timer of at least 30 minutes (RFC 9051 §5.4), POP3's of at
/// least 10 minutes (RFC 1939 §3). Where no RFC gives a number (IMAP and POP3
/// client replies, the TLS handshake) the SMTP values are used: 5 minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Timeouts {
    /// [`Waiting::Greeting`]. SMTP: 5 minutes ("Initial 220 Message").
    pub greeting: Option<Duration>,
    /// [`Waiting::Reply`] to any command not named below. SMTP: 5 minutes
    /// ("MAIL Command", "RCPT Command").
    pub reply: Option<Duration>,
    /// The reply to SMTP `DATA`: 2 minutes ("DATA Initiation").
    pub data_start: Option<Duration>,
    /// The reply after the message data: 10 minutes ("DATA Termination").
    pub data_end: Option<Duration>,
    /// [`Waiting::DataBlock`]: 3 minutes ("Data Block").
    pub data_block: Option<Duration>,
    /// [`Waiting::Command`], and an IMAP client's `IDLE`. SMTP: 5 minutes
    /// ("Server Timeout"); IMAP: 30 minutes (autologout, RFC 9051 §5.4);
    /// POP3: 10 minutes (autologout, RFC 1939 §3).
    pub command: Option<Duration>,
    /// [`Waiting::Handshake`] and [`Waiting::ExternalTls`]: one deadline for
    /// the whole handshake, 5 minutes (Postfix's `smtpd_starttls_timeout`).
    pub handshake: Option<Duration>,
    /// A write that makes no progress (the peer stopped reading): 3 minutes,
    /// the RFC 5321 "Data Block" time for one send. Used by drivers.
    pub write: Option<Duration>,
}

const MIN: u64 = 60;

impl Timeouts {
    /// The SMTP defaults (RFC 5321 §4.5.3.2).
    pub const fn smtp() -> Self {
        Timeouts {
            greeting: Some(Duration::from_secs(5 * MIN)),
            reply: Some(Duration::from_secs(5 * MIN)),
            data_start: Some(Duration::from_secs(2 * MIN)),
            data_end: Some(Duration::from_secs(10 * MIN)),
            data_block: Some(Duration::from_secs(3 * MIN)),
            command: Some(Duration::from_secs(5 * MIN)),
            handshake: Some(Duration::from_secs(5 * MIN)),
            write: Some(Duration::from_secs(3 * MIN)),
        }
    }

    /// The IMAP defaults: the SMTP ones, with a 30-minute autologout for an
    /// idle client or `IDLE` (RFC 9051 §5.4).
    pub const fn imap() -> Self {
        Timeouts {
            command: Some(Duration::from_secs(30 * MIN)),
            ..Timeouts::smtp()
        }
    }

    /// The POP3 defaults: the SMTP ones, with a 10-minute autologout for an
    /// idle client (RFC 1939 §3).
    pub const fn pop3() -> Self {
        Timeouts {
            command: Some(Duration::from_secs(10 * MIN)),
            ..Timeouts::smtp()
        }
    }

    /// No timeout at all.
    pub const fn none() -> Self {
        Timeouts {
            greeting: None,
            reply: None,
            data_start: None,
            data_end: None,
            data_block: None,
            command: None,
            handshake: None,
            write: None,
        }
    }

    /// Every timeout set to `d` (tests, or a single global timeout).
    pub const fn all(d: Duration) -> Self {
        Timeouts {
            greeting: Some(d),
            reply: Some(d),
            data_start: Some(d),
            data_end: Some(d),
            data_block: Some(d),
            command: Some(d),
            handshake: Some(d),
            write: Some(d),
        }
    }

    /// The timeout that applies while waiting for `w`.
    pub fn for_waiting(&self, w: Waiting) -> Option<Duration> {
        match w {
            Waiting::Greeting => self.greeting,
            Waiting::Reply { to: "DATA" } => self.data_start,
            Waiting::Reply { to: "end of data" } => self.data_end,
            Waiting::Reply { to: "IDLE" } => self.command,
            Waiting::Reply { .. } => self.reply,
            Waiting::Command => self.command,
            Waiting::DataBlock => self.data_block,
            Waiting::Handshake | Waiting::ExternalTls => self.handshake,
            Waiting::Application | Waiting::Closed => None,
        }
    }
}

/// What [`Session::take_tls`] hands over: the session's in-memory TLS
/// connection (`None` with bring-your-own TLS, where the caller's stream is
/// the TLS) and the decrypted bytes the session received but did not consume.
#[non_exhaustive]
pub struct TlsHandoff {
    /// The rustls connection, handshake done, nothing left to write.
    pub connection: Option<rustls::Connection>,
    /// Decrypted bytes received and not consumed, to be read first.
    pub unconsumed: Bytes,
}

impl fmt::Debug for TlsHandoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsHandoff")
            .field("connection", &self.connection.as_ref().map(|_| ".."))
            .field("unconsumed", &self.unconsumed.len())
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The six session types ([`smtp`](crate::smtp), [`imap`](crate::imap),
/// [`pop3`](crate::pop3), server and client) as one interface, for drivers
/// that move their bytes. Sealed: only this crate implements it.
///
/// Each method is the session's inherent method of the same name.
pub trait Session: sealed::Sealed {
    /// What the session reports.
    type Event: fmt::Debug;

    /// The protocol's default [`Timeouts`].
    fn default_timeouts() -> Timeouts;
    /// Feeds bytes read from the socket.
    fn handle_input(&mut self, data: &[u8]);
    /// The peer closed its side.
    fn handle_eof(&mut self);
    /// The next event, or the error the session failed with.
    fn poll_event(&mut self) -> Result<Option<Self::Event>, Error>;
    /// Bytes to write to the socket.
    fn poll_transmit(&mut self) -> Option<Bytes>;
    /// Bring-your-own TLS: the caller's handshake completed.
    fn tls_established(&mut self, info: TlsInfo) -> Result<(), UsageError>;
    /// The trust level of the channel now.
    fn trust(&self) -> Trust;
    /// `true` once the session has ended.
    fn is_closed(&self) -> bool;
    /// What TLS negotiated, once established.
    fn tls_info(&self) -> Option<TlsInfo>;
    /// What the session waits for now.
    fn waiting_for(&self) -> Waiting;
    /// The default timeout for what it waits for now.
    fn timeout(&self) -> Option<Duration> {
        Self::default_timeouts().for_waiting(self.waiting_for())
    }
    /// The timeout for [`waiting_for`](Self::waiting_for) expired: queue the
    /// goodbye, close, fail with [`Error::Timeout`].
    fn handle_timeout(&mut self);
    /// Hands the TLS channel over and closes the session.
    fn take_tls(&mut self) -> Result<TlsHandoff, UsageError>;
}

/// Waiting-for and goodbye, as each protocol machine answers them.
pub(crate) trait Timed {
    /// What the machine waits for (the engine answers for the phases
    /// outside cleartext and TLS).
    fn waiting(&self) -> Waiting;
    /// The line to send when the peer timed out, if the role has one.
    fn goodbye(&self) -> Option<Vec<u8>>;
}

macro_rules! impl_session {
    ($module:ident, $session:ident, $event:ident, $timeouts:ident) => {
        impl sealed::Sealed for crate::$module::$session {}
        impl Session for crate::$module::$session {
            type Event = crate::$module::$event;
            fn default_timeouts() -> Timeouts {
                Timeouts::$timeouts()
            }
            fn handle_input(&mut self, data: &[u8]) {
                Self::handle_input(self, data)
            }
            fn handle_eof(&mut self) {
                Self::handle_eof(self)
            }
            fn poll_event(&mut self) -> Result<Option<Self::Event>, Error> {
                Self::poll_event(self)
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                Self::poll_transmit(self)
            }
            fn tls_established(&mut self, info: TlsInfo) -> Result<(), UsageError> {
                Self::tls_established(self, info)
            }
            fn trust(&self) -> Trust {
                Self::trust(self)
            }
            fn is_closed(&self) -> bool {
                Self::is_closed(self)
            }
            fn tls_info(&self) -> Option<TlsInfo> {
                Self::tls_info(self)
            }
            fn waiting_for(&self) -> Waiting {
                Self::waiting_for(self)
            }
            fn handle_timeout(&mut self) {
                Self::handle_timeout(self)
            }
            fn take_tls(&mut self) -> Result<TlsHandoff, UsageError> {
                Self::take_tls(self)
            }
        }
    };
}

impl_session!(smtp, ServerSession, ServerEvent, smtp);
impl_session!(smtp, ClientSession, ClientEvent, smtp);
impl_session!(imap, ServerSession, ServerEvent, imap);
impl_session!(imap, ClientSession, ClientEvent, imap);
impl_session!(pop3, ServerSession, ServerEvent, pop3);
impl_session!(pop3, ClientSession, ClientEvent, pop3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_defaults() {
        let s = Timeouts::smtp();
        let m = |n: u64| Some(Duration::from_secs(n * 60));
        assert_eq!(s.for_waiting(Waiting::Greeting), m(5));
        assert_eq!(s.for_waiting(Waiting::Reply { to: "MAIL" }), m(5));
        assert_eq!(s.for_waiting(Waiting::Reply { to: "DATA" }), m(2));
        assert_eq!(s.for_waiting(Waiting::Reply { to: "end of data" }), m(10));
        assert_eq!(s.for_waiting(Waiting::DataBlock), m(3));
        assert_eq!(s.for_waiting(Waiting::Command), m(5));
        assert_eq!(Timeouts::imap().for_waiting(Waiting::Command), m(30));
        assert_eq!(
            Timeouts::imap().for_waiting(Waiting::Reply { to: "IDLE" }),
            m(30)
        );
        assert_eq!(Timeouts::pop3().for_waiting(Waiting::Command), m(10));
        assert_eq!(s.for_waiting(Waiting::Application), None);
        assert_eq!(Timeouts::none().for_waiting(Waiting::Greeting), None);
    }

    use std::sync::Arc;

    use crate::{imap, pop3, smtp, ClientTls, ServerTls, TlsPolicy};

    /// Drains a session after `handle_timeout`: what it sent, how it ended.
    fn timed_out<S: Session>(mut s: S) -> (Vec<u8>, Result<(), Error>) {
        while s.poll_transmit().is_some() {}
        while let Ok(Some(_)) = s.poll_event() {}
        s.handle_timeout();
        let mut out = Vec::new();
        while let Some(b) = s.poll_transmit() {
            out.extend_from_slice(&b);
        }
        assert!(s.is_closed());
        assert_eq!(s.waiting_for(), Waiting::Closed);
        let end = loop {
            match s.poll_event() {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        (out, end)
    }

    #[test]
    fn servers_say_goodbye_on_timeout() {
        let smtp = smtp::ServerSession::new(Arc::new(smtp::ServerConfig::new(
            "mx.example",
            ServerTls::None,
        )))
        .unwrap();
        assert_eq!(smtp.waiting_for(), Waiting::Command);
        let (out, end) = timed_out(smtp);
        assert_eq!(out, b"421 4.4.2 mx.example Timeout, closing connection\r\n");
        assert_eq!(
            end,
            Err(Error::Timeout {
                waiting: Waiting::Command
            })
        );

        let imap =
            imap::ServerSession::new(Arc::new(imap::ServerConfig::new(ServerTls::None))).unwrap();
        let (out, end) = timed_out(imap);
        assert_eq!(out, b"* BYE Autologout; idle for too long\r\n");
        assert!(matches!(end, Err(Error::Timeout { .. })));

        let pop3 =
            pop3::ServerSession::new(Arc::new(pop3::ServerConfig::new(ServerTls::None))).unwrap();
        let (out, end) = timed_out(pop3);
        assert_eq!(out, b"-ERR autologout: idle for too long\r\n");
        assert!(matches!(end, Err(Error::Timeout { .. })));
    }

    #[test]
    fn smtp_server_in_data_waits_for_a_data_block() {
        let mut s = smtp::ServerSession::new(Arc::new(smtp::ServerConfig::new(
            "mx.example",
            ServerTls::None,
        )))
        .unwrap();
        s.handle_input(b"HELO a.example\r\nMAIL FROM:<a@b.example>\r\n");
        while let Ok(Some(_)) = s.poll_event() {}
        assert_eq!(s.waiting_for(), Waiting::Application);
        s.accept().unwrap();
        s.handle_input(b"RCPT TO:<c@d.example>\r\n");
        while let Ok(Some(_)) = s.poll_event() {}
        s.accept().unwrap();
        s.handle_input(b"DATA\r\n");
        while let Ok(Some(_)) = s.poll_event() {}
        s.accept().unwrap();
        s.handle_input(b"Subject: half a mess");
        assert_eq!(s.waiting_for(), Waiting::DataBlock);
    }

    #[test]
    fn clients_time_out_without_a_goodbye() {
        let smtp = smtp::ClientSession::new(Arc::new(smtp::ClientConfig::new(
            "client.example",
            TlsPolicy::StartTlsRequired,
            ClientTls::External,
        )))
        .unwrap();
        assert_eq!(smtp.waiting_for(), Waiting::Greeting);
        let (out, end) = timed_out(smtp);
        assert!(out.is_empty());
        assert_eq!(
            end,
            Err(Error::Timeout {
                waiting: Waiting::Greeting
            })
        );
        let mut imap = imap::ClientSession::new(Arc::new(imap::ClientConfig::new(
            TlsPolicy::StartTlsRequired,
            ClientTls::External,
        )))
        .unwrap();
        imap.handle_input(b"* OK hi\r\n");
        assert_eq!(imap.waiting_for(), Waiting::Reply { to: "CAPABILITY" });
        let mut pop3 = pop3::ClientSession::new(Arc::new(pop3::ClientConfig::new(
            TlsPolicy::StartTlsRequired,
            ClientTls::External,
        )))
        .unwrap();
        pop3.handle_input(b"+OK hi\r\n");
        assert_eq!(pop3.waiting_for(), Waiting::Reply { to: "CAPA" });
    }
}
