//! IMAP (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1) with STARTTLS (RFC 9051
//! §6.2.1, RFC 2595) and implicit TLS (RFC 8314).
//!
//! * [`command`], [`response`] and [`capability`]: the grammar, parse and
//!   serialize, zero-copy over [`bytes::Bytes`]; literals are bytes, never
//!   lines.
//! * [`ServerSession`]: a server that answers `CAPABILITY`, `STARTTLS`,
//!   `LOGOUT` and the policy itself and hands every other command to the
//!   application.
//! * [`ClientSession`]: a client that reads the greeting, learns the
//!   capabilities, upgrades under a [`TlsPolicy`](crate::TlsPolicy), asks for
//!   the capabilities again over TLS, and then carries the application's
//!   commands with tags it assigns.
//!
//! Both run on the crate's shared [upgrade engine](crate::upgrade).

pub mod capability;
mod client;
pub mod command;
mod frame;
pub mod response;
mod server;
mod syntax;

pub use capability::{Capabilities, CapabilitiesRef, Capability, CapabilityRef};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use command::{AString, Arg, Args, Command, CommandBody};
pub use command::{AStringRef, ArgRef, ArgsRef, CommandBodyRef, CommandRef};
pub use response::{Code, Response, Status, StatusResponse};
pub use response::{CodeRef, ResponseRef, StatusResponseRef};
pub use server::{ServerConfig, ServerEvent, ServerSession};
pub use syntax::{trailing_literal, LiteralHeader, LiteralMode, SyntaxError};

use frame::FrameLimits;

/// Size limits for IMAP sessions. Every line limit counts the CRLF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// One physical line (RFC 9051 sets none; RFC 7162 §4 asks for at
    /// least 8192).
    pub line: usize,
    /// One literal. A literal announced as larger is refused before any of
    /// it is buffered: `{4294967295}` allocates nothing.
    pub literal: u64,
    /// A whole command or response, lines and literals together.
    pub message: usize,
    /// Before authentication: a whole command or response. A `LOGIN` with
    /// two 8 KiB literals, an `ID` (RFC 2971: 30 pairs of at most 1024
    /// octets) or an `AUTHENTICATE` line fit; an unauthenticated client
    /// chaining thousands of small literals into one command does not.
    pub unauthenticated_message: usize,
    /// Memory budget after authentication: all unprocessed input held at
    /// once, the message being assembled (at most `message` plus one `line`)
    /// plus everything pipelined behind a command the application has not
    /// answered. One octet more fails the session with
    /// [`Error::InputBudgetExceeded`](crate::Error::InputBudgetExceeded);
    /// `input_room()` tells a caller how much it may read. At least
    /// `message + line`.
    pub buffered_input: usize,
    /// The same budget before authentication. At least
    /// `unauthenticated_message + line`.
    pub unauthenticated_buffered_input: usize,
    /// Before authentication: one literal. Only a user name, password or
    /// SASL response can need one then, so a small limit stops an
    /// unauthenticated client from making a server buffer `literal` octets per
    /// connection (and a server from doing the same to a client before login).
    pub unauthenticated_literal: u64,
    /// Refused commands before the server says `BYE`.
    pub max_errors: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            line: 64 * 1024,
            literal: 32 * 1024 * 1024,
            message: 33 * 1024 * 1024,
            unauthenticated_message: 64 * 1024,
            buffered_input: 34 * 1024 * 1024,
            unauthenticated_buffered_input: 192 * 1024,
            unauthenticated_literal: 8 * 1024,
            max_errors: 20,
        }
    }
}

impl Limits {
    fn frame(&self) -> FrameLimits {
        FrameLimits {
            line: self.line,
            literal: self.literal,
            message: self.message,
        }
    }

    /// The framing limits before authentication.
    fn frame_unauthenticated(&self) -> FrameLimits {
        FrameLimits {
            literal: self.literal.min(self.unauthenticated_literal),
            message: self.message.min(self.unauthenticated_message),
            ..self.frame()
        }
    }

    /// The input budget in force.
    fn input_budget(&self, authenticated: bool) -> crate::upgrade::InputBudget {
        crate::upgrade::InputBudget {
            limit: if authenticated {
                self.buffered_input
            } else {
                self.unauthenticated_buffered_input
            },
            authenticated,
        }
    }

    /// Each budget holds a largest message and the line after it, so the
    /// framer's own limits (`NO [TOOBIG]`, a refused literal) always speak
    /// before the budget does.
    fn validate(&self) -> Result<(), crate::ConfigError> {
        let checks = [
            (
                "buffered_input",
                self.buffered_input,
                self.message.saturating_add(self.line),
            ),
            (
                "unauthenticated_buffered_input",
                self.unauthenticated_buffered_input,
                self.message
                    .min(self.unauthenticated_message)
                    .saturating_add(self.line),
            ),
        ];
        for (what, value, min) in checks {
            if value < min {
                return Err(crate::ConfigError::LimitTooSmall { what, min });
            }
        }
        Ok(())
    }
}

/// The argument walk's list end against the validating rule (for
/// `crate::fuzz_oracles`).
#[cfg(fuzzing)]
pub(crate) fn check_skip_list(input: &[u8]) {
    syntax::check_skip_list(input);
}
