//! # starttls-io
//!
//! Drivers for the sans-IO [`starttls`] sessions: the I/O loop every caller
//! would otherwise write by hand, with its subtle points done once —
//! send what a failed session still queued, turn a 0-byte read into
//! `handle_eof`, never read ahead across the upgrade, time out a peer that
//! stalls, drop a future in `select!` without losing a byte.
//!
//! | feature | default | driver | stream | timer |
//! |---|---|---|---|---|
//! | `std` | yes | [`blocking::Driver`] | `Read + Write` + [`blocking::Socket`] | socket read/write timeouts |
//! | `tokio` | no | `tokio::Driver` | tokio `AsyncRead + AsyncWrite` | `tokio::time` |
//! | `futures-io` | no | `futures::Driver` | futures-io `AsyncRead + AsyncWrite` (smol, async-io, tokio via compat) | `futures-timer` |
//!
//! | feature | default | what |
//! |---|---|---|
//! | `mta-sts` | no | `mta_sts`: the MTA-STS policy fetcher (HTTPS with rustls and hyper, on tokio) and a per-domain policy cache; implies `tokio` |
//! | `webpki-roots` | no | `mta_sts::FetcherConfig::with_webpki_roots` (Mozilla's roots); implies `mta-sts` |
//! | `dns` | no | `dns`: MX, A/AAAA, TLSA, SRV and TXT lookups with DNSSEC validated in-process (hickory-resolver), mapped to the DANE and MTA-STS inputs of `starttls::policy`; `discovery`: SRV discovery of submission, IMAP and POP3 (RFC 6186, RFC 8314 §5.1); implies `tokio` |
//! | `dns` + `mta-sts` | no | `destination`: a destination domain's plan per MX host (DANE, then MTA-STS, then the local policy) with the rustls verifier for each |
//!
//! Features are additive, and there is no TLS-backend feature: the session
//! drives rustls in memory, or, with bring-your-own TLS, `start_tls` hands
//! the stream to your closure (tokio-rustls, native-tls, openssl) and takes
//! the TLS stream back.
//!
//! The same surface in each driver:
//!
//! ```text
//! Driver::new(session, stream)      // .feed(bytes already read), .with_timeouts(..)
//! driver.next_event()               // flush, read, EOF, timeouts; None once closed
//! driver.session_mut().reply(..)    // answer on the session
//! driver.start_tls(|stream| ..)     // at ExternalTlsRequired: your TLS
//! driver.into_parts()               // TLS up: the stream for your own protocol
//! driver.close()                    // flush QUIT/alerts/close_notify, shut down
//! driver.run(|session, event| ..)   // all of the above loop in one call
//! ```
//!
//! ## Guarantees
//!
//! * Everything the session queued is written before the driver reads, so
//!   the upgrade boundary (defined by what the session handed out for
//!   sending) is where the peer can see it; a failed session's `QUIT`,
//!   `421` or alert is written before its error is returned.
//! * Nothing is read ahead: each read is fed to the session at once; at
//!   the bring-your-own TLS upgrade point the driver stops reading
//!   ([`Error::ExternalTlsPending`]) so the TLS library gets the stream
//!   at the exact byte.
//! * Timeouts per step: the session says what it waits for
//!   ([`starttls::Waiting`]); the driver arms the matching
//!   [`starttls::Timeouts`] entry, restarts it on progress (not on bytes
//!   that complete nothing), and on expiry calls `handle_timeout`, which
//!   sends the protocol's goodbye and fails with
//!   [`starttls::Error::Timeout`]. The handshake has one deadline.
//! * The async `next_event()` is cancel-safe.
//!
//! Reads wait until every queued byte is written: a peer that pipelines
//! more than the socket buffers hold while never reading our replies can
//! stall both sides until [`Timeouts::write`](starttls::Timeouts) fires.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]
// Failed hand-offs and handshakes give the whole driver back, by value.
#![allow(clippy::result_large_err)]
#![cfg_attr(
    not(any(feature = "std", feature = "tokio", feature = "futures-io")),
    allow(dead_code)
)]

mod error;
mod handoff;
mod pump;

#[cfg(any(feature = "tokio", feature = "futures-io"))]
mod async_io;
#[cfg(feature = "std")]
pub mod blocking;
#[cfg(all(feature = "dns", feature = "mta-sts"))]
pub mod destination;
#[cfg(feature = "dns")]
pub mod discovery;
#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "futures-io")]
pub mod futures;
#[cfg(feature = "mta-sts")]
pub mod mta_sts;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use error::{Error, StartTlsError};
pub use handoff::Handoff;
pub use starttls::{Session, Timeouts, Waiting};
