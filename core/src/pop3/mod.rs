//! POP3 (RFC 1939) with STLS (RFC 2595) and implicit TLS (RFC 8314).

pub mod capability;
pub mod command;
pub mod response;
mod syntax;

pub use syntax::SyntaxError;
