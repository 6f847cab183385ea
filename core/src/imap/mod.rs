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

pub use capability::{Capabilities, Capability};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use command::{AString, Arg, Args, Command, CommandBody};
pub use response::{Code, Response, Status, StatusResponse};
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

    /// The framing limits for a server that has not authenticated the client.
    fn frame_unauthenticated(&self) -> FrameLimits {
        FrameLimits {
            literal: self.literal.min(self.unauthenticated_literal),
            ..self.frame()
        }
    }
}
