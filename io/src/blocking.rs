//! The blocking driver, over `std::io::Read + Write`.
//!
//! Timeouts are socket timeouts: before each read the driver sets the
//! stream's read timeout to what is left of the session's deadline (so a
//! peer trickling bytes that complete nothing still times out), and the
//! write timeout to [`Timeouts::write`]. A stream says how through
//! [`Socket`], implemented for `TcpStream`, `UnixStream`, boxes, rustls's
//! `StreamOwned` and [`Handoff`]; wrap anything else in [`NoTimeouts`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use starttls::{rustls, Session, Timeouts, TlsInfo};

use crate::handoff::Handoff;
use crate::pump::{Pump, ReadOutcome, Transport};
use crate::{Error, StartTlsError};

/// A blocking stream with socket timeouts.
pub trait Socket: Read + Write {
    /// Like [`TcpStream::set_read_timeout`]; never called with zero.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Like [`TcpStream::set_write_timeout`]; never called with zero.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Shuts the sending side down (after the last byte was flushed).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        }
    }
}

#[cfg(unix)]
impl Socket for std::os::unix::net::UnixStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_write_timeout(self, timeout)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl<T: Socket + ?Sized> Socket for Box<T> {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(timeout)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        (**self).shutdown_write()
    }
}

impl<T: Socket> Socket for Handoff<T> {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_read_timeout(timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_write_timeout(timeout)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.send_close_notify()?;
        self.io.shutdown_write()
    }
}

/// A rustls stream (bring-your-own TLS with rustls's blocking API): the
/// timeouts are the socket's; shutting down sends `close_notify` first.
impl<C, S, T> Socket for rustls::StreamOwned<C, T>
where
    C: 'static + std::ops::DerefMut + std::ops::Deref<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
    T: Socket,
{
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        self.sock.shutdown_write()
    }
}

/// A stream without timeouts (an in-memory pipe, a test double): the
/// driver's deadlines are not enforced on it.
#[derive(Debug)]
pub struct NoTimeouts<T>(pub T);

impl<T: Read> Read for NoTimeouts<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Write> Write for NoTimeouts<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<T: Read + Write> Socket for NoTimeouts<T> {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Blocking<T> {
    io: T,
    write_timeout: Option<Option<Duration>>,
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl<T: Socket> Transport for Blocking<T> {
    fn poll_read(
        &mut self,
        _: &mut Context<'_>,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Poll<io::Result<ReadOutcome>> {
        loop {
            let left = match deadline {
                None => None,
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(d) if !d.is_zero() => Some(d),
                    _ => return Poll::Ready(Ok(ReadOutcome::TimedOut)),
                },
            };
            self.io.set_read_timeout(left)?;
            return Poll::Ready(match self.io.read(buf) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) && deadline.is_some() => continue,
                Err(e) => Err(e),
            });
        }
    }

    fn poll_write(
        &mut self,
        _: &mut Context<'_>,
        buf: &[u8],
        stall: Option<Duration>,
    ) -> Poll<io::Result<Option<usize>>> {
        let stall = stall.filter(|d| !d.is_zero());
        if self.write_timeout != Some(stall) {
            self.io.set_write_timeout(stall)?;
            self.write_timeout = Some(stall);
        }
        loop {
            return Poll::Ready(match self.io.write(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => Ok(None),
                Err(e) => Err(e),
            });
        }
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.flush())
    }

    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.shutdown_write())
    }
}

/// Runs a poll function whose transport blocks instead of returning
/// `Pending`.
fn block<R>(mut f: impl FnMut(&mut Context<'_>) -> Poll<R>) -> R {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(r) = f(&mut cx) {
            return r;
        }
    }
}

/// A session and its blocking stream.
///
/// ```no_run
/// # use std::sync::Arc;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use starttls::smtp::{ServerConfig, ServerEvent, ServerSession};
/// use starttls_io::blocking::Driver;
/// # let config: Arc<ServerConfig> = todo!();
/// let listener = std::net::TcpListener::bind("127.0.0.1:2525")?;
/// let (stream, _) = listener.accept()?;
/// let driver = Driver::new(ServerSession::new(config)?, stream);
/// driver.run(|session, event| {
///     if let ServerEvent::Command(_) | ServerEvent::MessageEnd = event {
///         session.accept()?;
///     }
///     Ok(())
/// })?;
/// # Ok(()) }
/// ```
pub struct Driver<S: Session, T> {
    pump: Pump<S>,
    io: Blocking<T>,
}

impl<S: Session, T: Socket> Driver<S, T> {
    /// A driver for `session` over `stream`, with the protocol's default
    /// [`Timeouts`].
    pub fn new(session: S, stream: T) -> Self {
        Driver {
            pump: Pump::new(session),
            io: Blocking {
                io: stream,
                write_timeout: None,
            },
        }
    }

    /// Replaces the timeouts (builder style).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.pump.set_timeouts(timeouts);
        self
    }

    /// Replaces the timeouts.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.pump.set_timeouts(timeouts);
    }

    /// Bytes the caller already read from the stream (what followed a PROXY
    /// header, a peeked prefix): the session gets them before anything
    /// read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pump.feed(bytes);
    }

    /// The session.
    pub fn session(&self) -> &S {
        &self.pump.session
    }

    /// The session, to answer events (`reply`, `send`, ...).
    pub fn session_mut(&mut self) -> &mut S {
        &mut self.pump.session
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.io.io
    }

    /// The next event. Writes everything the session queued before it reads
    /// (also after the session failed: its `QUIT` or `421` goes out before
    /// the error is returned), turns a 0-byte read into `handle_eof` and an
    /// expired deadline into `handle_timeout`. `Ok(None)`: the session
    /// closed and everything it queued was written.
    pub fn next_event(&mut self) -> Result<Option<S::Event>, Error> {
        block(|cx| self.pump.poll_next(&mut self.io, cx))
    }

    /// Writes everything the session queued.
    pub fn flush(&mut self) -> Result<(), Error> {
        block(|cx| self.pump.poll_flush(&mut self.io, cx))
    }

    /// Writes everything queued (the session's `QUIT` reply, a TLS
    /// `close_notify`), shuts the sending side down and returns the stream.
    pub fn close(mut self) -> Result<T, Error> {
        block(|cx| self.pump.poll_close(&mut self.io, cx))?;
        Ok(self.io.io)
    }

    /// The whole loop: every event goes to `handler` (which answers it on
    /// the session) until the session closes; then the stream is shut down
    /// and returned.
    pub fn run<F>(mut self, mut handler: F) -> Result<T, Error>
    where
        F: FnMut(&mut S, S::Event) -> Result<(), Error>,
    {
        while let Some(event) = self.next_event()? {
            handler(&mut self.pump.session, event)?;
        }
        self.close()
    }

    /// Bring-your-own TLS, at
    /// [`UpgradeEvent::ExternalTlsRequired`](starttls::UpgradeEvent): writes
    /// the last cleartext bytes, sets the stream's timeouts to
    /// [`Timeouts::handshake`], and hands the stream to `handshake`, which
    /// returns the TLS stream and what it negotiated, or its error and the
    /// stream. Bytes the peer sent between the upgrade line and the
    /// handshake were discarded or refused by the session, as always.
    pub fn start_tls<U, E, F>(
        mut self,
        handshake: F,
    ) -> Result<Driver<S, U>, StartTlsError<Self, E>>
    where
        U: Socket,
        F: FnOnce(T) -> Result<(U, TlsInfo), (E, T)>,
    {
        if let Err(error) = self.flush() {
            return Err(StartTlsError::Driver {
                driver: self,
                error,
            });
        }
        if self.pump.session.waiting_for() != starttls::Waiting::ExternalTls {
            return Err(StartTlsError::Driver {
                driver: self,
                error: Error::Usage(starttls::UsageError::NotAtUpgradePoint),
            });
        }
        let limit = self.pump.handshake_timeout();
        let _ = self.io.io.set_read_timeout(limit);
        let _ = self.io.io.set_write_timeout(limit);
        let Driver { mut pump, io } = self;
        match handshake(io.io) {
            Ok((stream, info)) => {
                // `tls_established` cannot fail here: the session waits for it.
                let _ = pump.tls_up(info);
                Ok(Driver {
                    pump,
                    io: Blocking {
                        io: stream,
                        write_timeout: None,
                    },
                })
            }
            Err((error, stream)) => Err(StartTlsError::Handshake {
                driver: Driver {
                    pump,
                    io: Blocking {
                        io: stream,
                        write_timeout: None,
                    },
                },
                error,
            }),
        }
    }

    /// The hand-off, once TLS is up: writes everything queued, then gives
    /// the stream, the session's in-memory TLS and the decrypted bytes it
    /// had not consumed, as one `Read + Write` stream. The session is closed
    /// afterwards. On error the driver comes back unchanged.
    pub fn into_parts(mut self) -> Result<Handoff<T>, (Self, Error)> {
        if let Err(e) = self.flush() {
            return Err((self, e));
        }
        let info = self.pump.session.tls_info();
        match self.pump.session.take_tls() {
            Ok(h) => Ok(Handoff::new(self.io.io, h, info)),
            Err(e) => Err((self, Error::Usage(e))),
        }
    }
}
