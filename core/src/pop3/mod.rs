//! POP3 (RFC 1939) with CAPA (RFC 2449), SASL (RFC 5034), STLS (RFC 2595)
//! and implicit TLS (RFC 8314).
//!
//! * [`command`], [`response`] and [`capability`]: the grammar, parse and
//!   serialize, zero-copy over [`bytes::Bytes`].
//! * [`ServerSession`]: answers `CAPA`, `STLS`, `QUIT` and the policy itself
//!   and hands the rest to the application; multi-line answers are
//!   dot-stuffed by the session.
//! * [`ClientSession`]: reads the greeting, asks `CAPA`, upgrades with `STLS`
//!   under a [`TlsPolicy`](crate::TlsPolicy), asks `CAPA` again over TLS, and
//!   pairs each reply with the command it answers (POP3 has no tags), knowing
//!   which answers are multi-line.
//!
//! Both run on the crate's shared [upgrade engine](crate::upgrade).

pub mod capability;
mod client;
pub mod command;
pub mod response;
mod server;
mod syntax;

pub use capability::{Capabilities, Capability, CapabilityRef};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use command::{Command, CommandRef};
pub use response::{Code, Status, StatusLine, StatusLineRef};
pub use server::{ServerConfig, ServerEvent, ServerSession};
pub use syntax::SyntaxError;

/// Size limits for POP3 sessions. Every limit counts the CRLF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// A command line (RFC 2449 §4: 255 octets).
    pub command_line: usize,
    /// A SASL line or an `AUTH` command with initial response (RFC 5034 §4
    /// lifts the 255-octet limit for these).
    pub auth_line: usize,
    /// A status line (RFC 2449 §4: 512 octets; real servers send longer
    /// texts, so the default is 1024).
    pub response_line: usize,
    /// A line of a multi-line body (messages have lines of up to 998 octets
    /// by RFC 5322, longer in the wild).
    pub body_line: usize,
    /// The whole `CAPA` listing.
    pub capa: usize,
    /// Memory budget after login (the TRANSACTION state; client: after its
    /// own `PASS`, `APOP` or `AUTH` succeeded): all unprocessed input held at
    /// once, the line being assembled plus everything pipelined behind a
    /// command the application has not answered. One octet more fails the
    /// session with [`Error::InputBudgetExceeded`](crate::Error::InputBudgetExceeded);
    /// `input_room()` tells a caller how much it may read. Multi-line bodies
    /// are handed out in pieces and do not accumulate.
    pub buffered_input: usize,
    /// The same budget before login. 64 KiB holds a SASL line (12288) or a
    /// `CAPA` listing.
    pub unauthenticated_buffered_input: usize,
    /// Refused commands before the server closes.
    pub max_errors: u32,
}

impl Limits {
    /// The input budget in force.
    pub(crate) fn input_budget(&self, authenticated: bool) -> crate::upgrade::InputBudget {
        crate::upgrade::InputBudget {
            limit: if authenticated {
                self.buffered_input
            } else {
                self.unauthenticated_buffered_input
            },
            authenticated,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            command_line: 255,
            auth_line: 12288,
            response_line: 1024,
            body_line: 64 * 1024,
            capa: 64 * 1024,
            buffered_input: 256 * 1024,
            unauthenticated_buffered_input: 64 * 1024,
            max_errors: 20,
        }
    }
}
