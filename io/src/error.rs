//! What a driver call can fail with.

use std::fmt;
use std::io;

/// A driver failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The session failed (its queued bytes, such as a `QUIT` or a `421`,
    /// were written first). A timeout is
    /// [`starttls::Error::Timeout`], naming what the session waited for.
    Session(starttls::Error),
    /// The stream failed.
    Io(io::Error),
    /// A write made no progress for [`Timeouts::write`](starttls::Timeouts):
    /// the peer stopped reading.
    WriteTimeout,
    /// The session waits for the caller's own TLS handshake
    /// ([`UpgradeEvent::ExternalTlsRequired`](starttls::UpgradeEvent)): call
    /// `start_tls` rather than `next_event`. Nothing was read.
    ExternalTlsPending,
    /// A call at the wrong time (for example `into_parts` before TLS).
    Usage(starttls::UsageError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Session(e) => e.fmt(f),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::WriteTimeout => f.write_str("timed out writing: the peer stopped reading"),
            Error::ExternalTlsPending => {
                f.write_str("the session waits for the caller's TLS handshake: call start_tls")
            }
            Error::Usage(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Session(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Usage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<starttls::Error> for Error {
    fn from(e: starttls::Error) -> Self {
        Error::Session(e)
    }
}

impl From<starttls::UsageError> for Error {
    fn from(e: starttls::UsageError) -> Self {
        Error::Usage(e)
    }
}

/// `start_tls` failed.
#[non_exhaustive]
pub enum StartTlsError<D, E> {
    /// The caller's handshake failed; here is the driver with the stream it
    /// gave back. The session still waits at the upgrade point: close it.
    Handshake {
        /// The driver, with the stream the handshake gave back.
        driver: D,
        /// The handshake's error.
        error: E,
    },
    /// The session is not waiting for a handshake, or the stream failed
    /// while flushing the last cleartext reply.
    Driver {
        /// The driver, unchanged.
        driver: D,
        /// What was wrong.
        error: Error,
    },
    /// Async drivers: the handshake did not finish within
    /// [`Timeouts::handshake`](starttls::Timeouts). The stream was dropped
    /// with the handshake's future.
    Timeout,
}

impl<D, E: fmt::Debug> fmt::Debug for StartTlsError<D, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartTlsError::Handshake { error, .. } => {
                f.debug_struct("Handshake").field("error", error).finish()
            }
            StartTlsError::Driver { error, .. } => {
                f.debug_struct("Driver").field("error", error).finish()
            }
            StartTlsError::Timeout => f.write_str("Timeout"),
        }
    }
}
