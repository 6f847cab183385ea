//! SMTP (RFC 5321), message submission (RFC 6409) and LMTP (RFC 2033), with
//! STARTTLS (RFC 3207) and implicit TLS (RFC 8314).
//!
//! * [`command`], [`reply`] and [`capability`]: the grammar, parse and
//!   serialize, zero-copy over [`bytes::Bytes`].
//! * [`ServerSession`]: a server (MTA, submission or LMTP) that answers the
//!   protocol itself and hands envelope, data and authentication to the
//!   application.
//! * [`ClientSession`]: a client that negotiates (greeting, `EHLO`,
//!   `STARTTLS`, handshake, `EHLO` again) under a [`TlsPolicy`](crate::TlsPolicy)
//!   and then carries the application's commands.
//!
//! * [`policy`]: `REQUIRETLS` (RFC 8689) in both roles, the `TLS-Required`
//!   header field, and graduated cleartext degradation for servers.
//!
//! Both run on the crate's shared [upgrade engine](crate::upgrade).

pub mod capability;
mod client;
pub mod command;
pub mod policy;
pub mod reply;
mod server;
mod syntax;

pub use capability::{Capabilities, Capability};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use command::Command;
pub use policy::{CleartextDegradation, CleartextMail, DeferSchedule, Deferral, RequireTlsRefusal};
pub use reply::{EnhancedCode, Reply, ReplyCode, ReplyRef};
pub use server::{Extensions, ServerConfig, ServerEvent, ServerSession};
pub use syntax::SyntaxError;

/// Size limits for SMTP sessions (RFC 5321 §4.5.3.1). Every limit counts the
/// CRLF. Raise them only where an extension allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Command line (RFC 5321 §4.5.3.1.4: 512 octets).
    pub command_line: usize,
    /// Reply line. RFC 5321 §4.5.3.1.5 says 512; real servers send longer
    /// texts, so the default is the text-line size, 1000.
    pub reply_line: usize,
    /// Text line in `DATA` (RFC 5321 §4.5.3.1.6: 1000 octets, not counting a
    /// stuffed dot).
    pub text_line: usize,
    /// A SASL response line (RFC 4954 §4: at least 12288 octets).
    pub auth_line: usize,
    /// Lines in one multi-line reply.
    pub reply_lines: usize,
    /// Memory budget after authentication (client: after its own `AUTH`
    /// succeeded): all unprocessed input held at once, the line or reply
    /// being assembled plus everything pipelined behind a command the
    /// application has not answered. One octet more fails the session with
    /// [`Error::InputBudgetExceeded`](crate::Error::InputBudgetExceeded);
    /// `input_room()` tells a caller how much it may read.
    pub buffered_input: usize,
    /// The same budget before authentication, which is all an MX ever sees.
    /// 64 KiB holds a pipelined `MAIL`, 100 `RCPT` (RFC 5321 §4.5.3.1.8) and
    /// `DATA` at 512 octets each, a SASL line or a 16 KiB `BDAT` piece.
    pub unauthenticated_buffered_input: usize,
    /// Refused commands before the server closes with `421`.
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
            command_line: 512,
            reply_line: 1000,
            text_line: 1000,
            auth_line: 12288,
            reply_lines: 256,
            buffered_input: 256 * 1024,
            unauthenticated_buffered_input: 64 * 1024,
            max_errors: 20,
        }
    }
}

/// The fast paths of the SMTP grammar against the rules they replaced (for
/// `crate::fuzz_oracles`).
#[cfg(fuzzing)]
pub(crate) fn check_fast_paths(input: &[u8]) {
    syntax::check_fast_paths(input);
    command::check_fast_paths(input);
}
