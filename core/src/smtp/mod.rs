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
pub use reply::{EnhancedCode, Reply, ReplyCode};
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
    /// Unprocessed input kept while a command waits for the application.
    pub buffered_input: usize,
    /// Refused commands before the server closes with `421`.
    pub max_errors: u32,
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
            max_errors: 20,
        }
    }
}
