//! The hand-off: the stream after the upgrade, for the application's own
//! protocol.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes};
use starttls::rustls;
use starttls::TlsInfo;

/// The connection after the hand-off: the stream, the session's in-memory
/// TLS (if it drove rustls) and the decrypted bytes it had not consumed,
/// which are read first.
///
/// It implements `Read + Write` for a blocking stream, and tokio's and
/// futures-io's `AsyncRead + AsyncWrite` for an async one (with the
/// matching feature), so `tokio::io::split` and `copy_bidirectional` work
/// on it.
pub struct Handoff<T> {
    pub(crate) io: T,
    pub(crate) tls: Option<rustls::Connection>,
    pub(crate) unread: Bytes,
    pub(crate) info: Option<TlsInfo>,
    pub(crate) closing: bool,
}

impl<T> Handoff<T> {
    pub(crate) fn new(io: T, handoff: starttls::TlsHandoff, info: Option<TlsInfo>) -> Self {
        Handoff {
            io,
            tls: handoff.connection,
            unread: handoff.unconsumed,
            info,
            closing: false,
        }
    }

    /// What TLS negotiated.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.info.as_ref()
    }

    /// The decrypted bytes received before the hand-off and not read yet.
    pub fn unread(&self) -> &[u8] {
        &self.unread
    }

    /// `true` when the TLS is the session's in-memory rustls connection
    /// (rather than the caller's own TLS stream).
    pub fn is_in_memory_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Copies unread bytes into `buf`, if any.
    pub(crate) fn read_unread(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.unread.is_empty() {
            return None;
        }
        let n = buf.len().min(self.unread.len());
        buf[..n].copy_from_slice(&self.unread[..n]);
        self.unread.advance(n);
        Some(n)
    }
}

impl<T: Read + Write> Read for Handoff<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = self.read_unread(buf) {
            return Ok(n);
        }
        match &mut self.tls {
            None => self.io.read(buf),
            Some(rustls::Connection::Client(c)) => rustls::Stream::new(c, &mut self.io).read(buf),
            Some(rustls::Connection::Server(c)) => rustls::Stream::new(c, &mut self.io).read(buf),
        }
    }
}

impl<T: Read + Write> Write for Handoff<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.io.write(buf),
            Some(rustls::Connection::Client(c)) => rustls::Stream::new(c, &mut self.io).write(buf),
            Some(rustls::Connection::Server(c)) => rustls::Stream::new(c, &mut self.io).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => self.io.flush(),
            Some(rustls::Connection::Client(c)) => rustls::Stream::new(c, &mut self.io).flush(),
            Some(rustls::Connection::Server(c)) => rustls::Stream::new(c, &mut self.io).flush(),
        }
    }
}

impl<T: Read + Write> Handoff<T> {
    /// Blocking: sends `close_notify` (in-memory TLS) and flushes.
    pub fn send_close_notify(&mut self) -> io::Result<()> {
        if let Some(c) = &mut self.tls {
            c.send_close_notify();
        }
        self.flush()
    }
}
