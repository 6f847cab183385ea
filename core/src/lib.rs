//! # starttls
//!
//! Sans-IO state machines for SMTP (with submission and LMTP), IMAP and POP3,
//! client and server, that move from cleartext to TLS — by STARTTLS/STLS
//! (RFC 3207, RFC 9051, RFC 2595) or implicit TLS (RFC 8314) — without the
//! bugs in-band upgrades are known for: command injection (CVE-2011-0411),
//! response injection, STARTTLS stripping, IMAP `PREAUTH`, state kept or
//! planted across the upgrade, and cleartext texts shown as if authentic.
//!
//! | module | server | client |
//! |---|---|---|
//! | [`smtp`] | [`smtp::ServerSession`] | [`smtp::ClientSession`] |
//! | [`imap`] | [`imap::ServerSession`] | [`imap::ClientSession`] |
//! | [`pop3`] | [`pop3::ServerSession`] | [`pop3::ClientSession`] |
//!
//! All six have the same shape and run on the same [upgrade engine](upgrade).
//!
//! The crate owns no socket, thread, clock or runtime. You feed it the bytes
//! you read and write out the bytes it gives you. The `starttls-io` crate
//! does that for you (blocking, tokio, futures-io: `Driver::new(session,
//! stream)`, then `next_event()`, with timeouts and the hand-off); the loop
//! below is what it runs, for an event loop of your own:
//!
//! ```no_run
//! # use std::io::{Read, Write};
//! # fn run(mut sock: std::net::TcpStream, mut session: starttls::smtp::ServerSession) -> Result<(), Box<dyn std::error::Error>> {
//! let mut buf = [0u8; 16 * 1024];
//! loop {
//!     let failed = loop {
//!         match session.poll_event() {
//!             Ok(Some(event)) => { /* act on it; answer commands with session.reply(..) */ }
//!             Ok(None) => break None,
//!             Err(e) => break Some(e), // failed: still send what it queued
//!         }
//!     };
//!     while let Some(out) = session.poll_transmit() {
//!         sock.write_all(&out)?;
//!     }
//!     if let Some(e) = failed { return Err(e.into()); }
//!     if session.is_closed() { break; }
//!     match sock.read(&mut buf)? {
//!         0 => session.handle_eof(),
//!         n => session.handle_input(&buf[..n]),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! That loop does not change at the upgrade: TLS records go in and out of the
//! same calls, because the session drives rustls in memory ([`ServerTls`],
//! [`ClientTls`]). If you prefer your own TLS stack, the session stops at the
//! upgrade point with [`UpgradeEvent::ExternalTlsRequired`], and resumes with
//! `tls_established`.
//!
//! ## The rules it enforces
//!
//! The boundary rules are implemented once, in the [upgrade engine](upgrade),
//! for every protocol and role:
//!
//! 1. **Nothing crosses the boundary.** Input is cut at the exact end of the
//!    `STARTTLS` line (server) or of the positive reply (client). What
//!    follows, and whatever arrives before TLS could have begun, is never
//!    parsed: the server discards it and reports
//!    [`UpgradeEvent::InjectionDiscarded`]; the client fails with
//!    [`Error::ResponseInjection`].
//! 2. **Nothing learned in cleartext survives.** The protocol state is
//!    rebuilt from the configuration alone after the handshake: capabilities,
//!    greeting, envelope and authentication are gone, and the client asks for
//!    capabilities again.
//! 3. **A client that requires TLS never proceeds without it.** Missing
//!    `STARTTLS`/`STLS`, a refusal, an odd reply, a cleartext `PREAUTH` or a
//!    failed handshake each end the session with [`Error::TlsRequired`] or
//!    [`Error::Tls`], naming the [`Step`].
//! 4. **A reply cannot precede its command.** A client rejects any reply that
//!    arrives before the caller took the command it would answer: planted
//!    capability lists, forged tagged replies and unsolicited POP3 listings
//!    are [`Error::UnexpectedReply`].
//!
//! Every text from the peer comes wrapped in [`Received`], carrying its
//! [`Trust`] level, and credentials are wrapped in [`Secret`]. Peer text is
//! shown through [`Escaped`] (or [`Received::escaped`]), which makes control
//! characters, bidirectional controls and invalid UTF-8 visible escapes.
//!
//! ## Policy
//!
//! What a client requires of TLS is a [`TlsPolicy`], chosen once per
//! account or destination. The [`policy`] modules add the rest of the mail
//! community's advice as sans-IO building blocks: TLS memory and setup-only
//! pinning (RFC 3207 §6, RFC 8314 §5.4), mail server identity (RFC 7817),
//! MTA-STS (RFC 8461), TLS-RPT (RFC 8460) and DANE (RFC 7672). The
//! repository's `docs/policy.md` explains each knob with the RFC text it
//! implements.
//!
//! ## The parsers on their own
//!
//! The grammars the sessions use are public: [`smtp::Command`],
//! [`smtp::Reply`], [`imap::Command`], [`imap::Response`],
//! [`pop3::Command`], [`pop3::StatusLine`] and the types inside them. Each is
//! one definition in two [forms](octets): owned (`Command`, byte strings as
//! [`bytes::Bytes`] handles of the line, what the sessions hand out) and
//! borrowed (`CommandRef<'a>`, sub-slices of your buffer: no allocation, no
//! reference count, for acting on a message before the next read). Both come
//! from the same code, so they accept the same inputs and give the same
//! values.
//!
//! ```
//! use starttls::smtp::command::{Command, ForwardPath};
//!
//! let cmd = Command::parse_borrowed(b"RCPT TO:<bob@example.net> NOTIFY=NEVER").unwrap();
//! match &cmd {
//!     Command::Rcpt { to: ForwardPath::Path(p), .. } => {
//!         assert_eq!(p.mailbox.local_part, &b"bob"[..]);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! let kept: Command = cmd.into_owned(); // outlives the buffer
//! assert_eq!(kept.verb(), "RCPT");
//! ```
//!
//! ## Determinism
//!
//! Events depend only on the bytes received and on the order of the caller's
//! calls — never on how the bytes were split into reads. Even the pieces of a
//! message body have content-defined boundaries. The test suite checks this
//! by replaying sessions split at every byte.
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `ring` | yes | rustls with the *ring* provider |
//! | `aws-lc-rs` | no | rustls with the aws-lc-rs provider |
//!
//! ## RFCs
//!
//! RFC 5321 (SMTP), RFC 3207 (SMTP STARTTLS), RFC 8314 (implicit TLS),
//! RFC 6409 (submission), RFC 2033 (LMTP), RFC 2920 (PIPELINING), RFC 3030
//! (CHUNKING), RFC 4954 (AUTH), RFC 3463 (enhanced status codes), RFC 6531
//! (SMTPUTF8), RFC 3461 (DSN), RFC 1870 (SIZE), RFC 8689 (REQUIRETLS); RFC 9051 and RFC 3501 (IMAP),
//! RFC 2595 (IMAP and POP3 STARTTLS/STLS), RFC 7888 (LITERAL+/LITERAL-),
//! RFC 3516 (literal8), RFC 4959 (SASL-IR), RFC 2971 (ID), RFC 5161
//! (ENABLE), RFC 2177 (IDLE); RFC 1939 (POP3), RFC 2449 (CAPA, response
//! codes), RFC 5034 (POP3 SASL), RFC 3206, RFC 6856 (UTF8, LANG); RFC 4422
//! Appendix A (SASL EXTERNAL over TLS client certificates, see [`sasl`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod appvalue;
mod cache;
mod dot;
mod error;
pub mod escape;
pub mod framing;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_oracles;
pub mod imap;
pub mod octets;
pub mod policy;
pub mod pop3;
pub mod sasl;
mod secret;
pub mod session;
pub mod smtp;
pub mod tls;
mod trust;
pub mod upgrade;

pub use error::{ConfigError, Error, Step, TlsRefusal, UsageError};
pub use escape::{Escaped, PeerText};
pub use framing::FramingError;
pub use policy::TlsPolicy;
pub use secret::Secret;
pub use session::{Session, Timeouts, TlsHandoff, Waiting};
pub use tls::ClientIdentity;
pub use tls::{ClientTls, ServerTls, TlsError, TlsErrorKind, TlsInfo, TlsVersion};
pub use trust::{Received, Trust};
pub use upgrade::{InjectionPolicy, UpgradeEvent};

/// rustls, re-exported so callers build configurations with the exact version
/// this crate links.
pub use rustls;

/// The examples of `docs/policy.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/policy.md")]
pub struct PolicyDocExamples;
