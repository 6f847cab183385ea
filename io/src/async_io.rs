//! What the tokio and futures-io drivers share: the poll-based stream
//! adapter, the timer, and rustls over an async stream for the hand-off.

use std::io::{self, Read, Write};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use starttls::rustls;

use crate::handoff::Handoff;
use crate::pump::{ReadOutcome, Transport};

/// An async stream, whatever its runtime.
pub(crate) trait PollIo {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// A resettable timer, whatever its runtime.
pub(crate) trait Timer {
    fn reset(&mut self, at: Instant);
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A stream and its timer as the loop's transport.
pub(crate) struct AsyncTransport<I, Tm> {
    pub(crate) io: I,
    timer: Option<Tm>,
    armed: Option<Instant>,
    stalled_since: Option<Instant>,
}

impl<I: PollIo, Tm: Timer> AsyncTransport<I, Tm> {
    pub(crate) fn new(io: I) -> Self {
        AsyncTransport {
            io,
            timer: None,
            armed: None,
            stalled_since: None,
        }
    }

    /// `Ready` once `at` has passed; registers the waker otherwise.
    fn poll_until(
        &mut self,
        cx: &mut Context<'_>,
        at: Instant,
        new: impl FnOnce(Instant) -> Tm,
    ) -> Poll<()> {
        if Instant::now() >= at {
            return Poll::Ready(());
        }
        let Some(t) = &mut self.timer else {
            self.armed = Some(at);
            return self.timer.insert(new(at)).poll_fired(cx);
        };
        // A deadline that moved later (progress restarts it) leaves the
        // timer where it is: when it fires early it is re-armed, so a busy
        // connection does not update the runtime's timer on every read.
        if self.armed.is_none_or(|armed| armed > at) {
            t.reset(at);
            self.armed = Some(at);
        }
        loop {
            ready!(t.poll_fired(cx));
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            t.reset(at);
            self.armed = Some(at);
        }
    }
}

/// How each runtime makes a timer.
pub(crate) trait NewTimer: Timer + Sized {
    fn at(at: Instant) -> Self;
}

impl<I: PollIo, Tm: NewTimer> Transport for AsyncTransport<I, Tm> {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Poll<io::Result<ReadOutcome>> {
        loop {
            match self.io.poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(ReadOutcome::Eof)),
                Poll::Ready(Ok(n)) => return Poll::Ready(Ok(ReadOutcome::Data(n))),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let Some(at) = deadline else {
                        return Poll::Pending;
                    };
                    ready!(self.poll_until(cx, at, Tm::at));
                    return Poll::Ready(Ok(ReadOutcome::TimedOut));
                }
            }
        }
    }

    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        stall: Option<Duration>,
    ) -> Poll<io::Result<Option<usize>>> {
        match self.io.poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.stalled_since = None;
                Poll::Ready(Ok(Some(n)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(limit) = stall else {
                    return Poll::Pending;
                };
                let since = *self.stalled_since.get_or_insert_with(Instant::now);
                ready!(self.poll_until(cx, since + limit, Tm::at));
                Poll::Ready(Ok(None))
            }
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_shutdown(cx)
    }
}

/// `std::io` views of a poll-based stream for rustls's `read_tls` and
/// `write_tls`: `Pending` becomes `WouldBlock`.
struct SyncIo<'a, 'b, I> {
    io: &'a mut I,
    cx: &'a mut Context<'b>,
}

impl<I: PollIo> Read for SyncIo<'_, '_, I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<I: PollIo> Write for SyncIo<'_, '_, I> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.io.poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.io.poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn would_block<T>(r: io::Result<T>) -> Poll<io::Result<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

/// Writes every pending TLS record.
fn poll_write_records<I: PollIo>(
    conn: &mut rustls::Connection,
    io: &mut I,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while conn.wants_write() {
        let n = ready!(would_block(conn.write_tls(&mut SyncIo {
            io: &mut *io,
            cx: &mut *cx
        })))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
    }
    Poll::Ready(Ok(()))
}

/// The hand-off's TLS state, borrowed apart from its stream.
pub(crate) struct HandoffState<'a> {
    unread: &'a mut bytes::Bytes,
    tls: &'a mut Option<rustls::Connection>,
    closing: &'a mut bool,
}

impl<T> Handoff<T> {
    pub(crate) fn split_mut(&mut self) -> (HandoffState<'_>, &mut T) {
        (
            HandoffState {
                unread: &mut self.unread,
                tls: &mut self.tls,
                closing: &mut self.closing,
            },
            &mut self.io,
        )
    }
}

/// The hand-off's stream operations, once for both runtimes.
impl HandoffState<'_> {
    pub(crate) fn poll_read<I: PollIo>(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        mut io: I,
    ) -> Poll<io::Result<usize>> {
        if !self.unread.is_empty() {
            let n = buf.len().min(self.unread.len());
            buf[..n].copy_from_slice(&self.unread[..n]);
            bytes::Buf::advance(self.unread, n);
            return Poll::Ready(Ok(n));
        }
        let Some(conn) = self.tls.as_mut() else {
            return io.poll_read(cx, buf);
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Alerts or key updates rustls wants out; ignore a full socket
            // here, the write side will push them.
            if let Poll::Ready(Err(e)) = poll_write_records(conn, &mut io, cx) {
                return Poll::Ready(Err(e));
            }
            ready!(would_block(conn.read_tls(&mut SyncIo {
                io: &mut io,
                cx: &mut *cx
            })))?;
            if let Err(e) = conn.process_new_packets() {
                let _ = poll_write_records(conn, &mut io, cx);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }

    pub(crate) fn poll_write<I: PollIo>(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        mut io: I,
    ) -> Poll<io::Result<usize>> {
        let Some(conn) = self.tls.as_mut() else {
            return io.poll_write(cx, buf);
        };
        ready!(poll_write_records(conn, &mut io, cx))?;
        let n = conn.writer().write(buf)?;
        if let Poll::Ready(Err(e)) = poll_write_records(conn, &mut io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    pub(crate) fn poll_flush<I: PollIo>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: I,
    ) -> Poll<io::Result<()>> {
        if let Some(conn) = self.tls.as_mut() {
            conn.writer().flush()?;
            ready!(poll_write_records(conn, &mut io, cx))?;
        }
        io.poll_flush(cx)
    }

    pub(crate) fn poll_shutdown<I: PollIo>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: I,
    ) -> Poll<io::Result<()>> {
        if let Some(conn) = self.tls.as_mut() {
            if !*self.closing {
                conn.send_close_notify();
                *self.closing = true;
            }
            ready!(poll_write_records(conn, &mut io, cx))?;
        }
        ready!(io.poll_flush(cx))?;
        io.poll_shutdown(cx)
    }
}

/// Races `fut` against a timer; `None` when the timer fired first.
pub(crate) async fn with_deadline<F: std::future::Future, Tm: NewTimer + Unpin>(
    fut: F,
    limit: Option<Duration>,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut timer = limit.map(|d| Tm::at(Instant::now() + d));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if let Some(t) = &mut timer {
            ready!(t.poll_fired(cx));
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// The async driver, once for both runtimes: `$adapter` makes a `PollIo`
/// of the stream, `$timer` is the runtime's timer.
macro_rules! async_driver {
    ($adapter:ident, $timer:ty, $runtime:literal, $($bound:tt)+) => {
        /// A session and its async stream.
        ///
        /// `next_event()` is cancel-safe: drop it at any await point (in a
        /// `select!`) and call it again, and no byte is lost or repeated —
        /// the chunk being written, the bytes to feed and the deadline live
        /// in the driver, and each read is fed to the session in the poll
        /// that completed it.
        pub struct Driver<S: starttls::Session, T> {
            pump: crate::pump::Pump<S>,
            io: crate::async_io::AsyncTransport<$adapter<T>, $timer>,
        }

        impl<S: starttls::Session, T: $($bound)+> Driver<S, T> {
            #[doc = concat!("A driver for `session` over `stream` (", $runtime, "), with the protocol's default [`Timeouts`](starttls::Timeouts).")]
            pub fn new(session: S, stream: T) -> Self {
                Driver {
                    pump: crate::pump::Pump::new(session),
                    io: crate::async_io::AsyncTransport::new($adapter(stream)),
                }
            }

            /// Replaces the timeouts (builder style).
            pub fn with_timeouts(mut self, timeouts: starttls::Timeouts) -> Self {
                self.pump.set_timeouts(timeouts);
                self
            }

            /// Replaces the timeouts.
            pub fn set_timeouts(&mut self, timeouts: starttls::Timeouts) {
                self.pump.set_timeouts(timeouts);
            }

            /// Bytes the caller already read from the stream (what followed
            /// a PROXY header, a peeked prefix): the session gets them
            /// before anything read from the stream.
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
                &self.io.io.0
            }

            /// The next event. Writes everything the session queued before
            /// it reads (also after the session failed: its `QUIT` or `421`
            /// goes out before the error is returned), turns a 0-byte read
            /// into `handle_eof` and an expired deadline into
            /// `handle_timeout`. `Ok(None)`: the session closed and
            /// everything it queued was written. Cancel-safe.
            pub async fn next_event(&mut self) -> Result<Option<S::Event>, crate::Error> {
                std::future::poll_fn(|cx| self.pump.poll_next(&mut self.io, cx)).await
            }

            /// Writes everything the session queued. Cancel-safe.
            pub async fn flush(&mut self) -> Result<(), crate::Error> {
                std::future::poll_fn(|cx| self.pump.poll_flush(&mut self.io, cx)).await
            }

            /// Writes everything queued (the session's `QUIT` reply, a TLS
            /// `close_notify`), shuts the sending side down and returns the
            /// stream.
            pub async fn close(mut self) -> Result<T, crate::Error> {
                self.shutdown().await?;
                Ok(self.io.io.0)
            }

            /// [`close`](Self::close) in place: writes everything queued and
            /// shuts the sending side down, keeping the driver. Its future
            /// holds a reference, not the driver, so a connection task that
            /// keeps its driver boxed stays small. Cancel-safe.
            pub async fn shutdown(&mut self) -> Result<(), crate::Error> {
                std::future::poll_fn(|cx| self.pump.poll_close(&mut self.io, cx)).await
            }

            /// The whole loop: every event goes to `handler` (which answers
            /// it on the session) until the session closes; then the stream
            /// is shut down and returned.
            pub async fn run<F>(mut self, mut handler: F) -> Result<T, crate::Error>
            where
                F: FnMut(&mut S, S::Event) -> Result<(), crate::Error>,
            {
                while let Some(event) = self.next_event().await? {
                    handler(&mut self.pump.session, event)?;
                }
                self.close().await
            }

            /// Bring-your-own TLS, at
            /// [`UpgradeEvent::ExternalTlsRequired`](starttls::UpgradeEvent):
            /// writes the last cleartext bytes and hands the stream to
            /// `handshake` (tokio-rustls, native-tls, openssl...), which
            /// returns the TLS stream and what it negotiated, or its error
            /// and the stream. The handshake gets
            /// [`Timeouts::handshake`](starttls::Timeouts); on expiry the
            /// session times out and the stream is dropped with the future.
            pub async fn start_tls<U, E, F, Fut>(
                mut self,
                handshake: F,
            ) -> Result<Driver<S, U>, crate::StartTlsError<Self, E>>
            where
                U: $($bound)+,
                F: FnOnce(T) -> Fut,
                Fut: std::future::Future<Output = Result<(U, starttls::TlsInfo), (E, T)>>,
            {
                if let Err(error) = self.flush().await {
                    return Err(crate::StartTlsError::Driver { driver: self, error });
                }
                if self.pump.session.waiting_for() != starttls::Waiting::ExternalTls {
                    return Err(crate::StartTlsError::Driver {
                        driver: self,
                        error: crate::Error::Usage(starttls::UsageError::NotAtUpgradePoint),
                    });
                }
                let limit = self.pump.handshake_timeout();
                let Driver { mut pump, io } = self;
                let run = handshake(io.io.0);
                match crate::async_io::with_deadline::<_, $timer>(run, limit).await {
                    Some(Ok((stream, info))) => {
                        // `tls_established` cannot fail: the session waits for it.
                        let _ = pump.tls_up(info);
                        Ok(Driver {
                            pump,
                            io: crate::async_io::AsyncTransport::new($adapter(stream)),
                        })
                    }
                    Some(Err((error, stream))) => Err(crate::StartTlsError::Handshake {
                        driver: Driver {
                            pump,
                            io: crate::async_io::AsyncTransport::new($adapter(stream)),
                        },
                        error,
                    }),
                    None => {
                        pump.session.handle_timeout();
                        Err(crate::StartTlsError::Timeout)
                    }
                }
            }

            /// The hand-off, once TLS is up: writes everything queued, then
            /// gives the stream, the session's in-memory TLS and the
            /// decrypted bytes it had not consumed, as one
            /// `AsyncRead + AsyncWrite` stream. The session is closed
            /// afterwards. On error the driver comes back unchanged.
            pub async fn into_parts(mut self) -> Result<crate::Handoff<T>, (Self, crate::Error)> {
                if let Err(e) = self.flush().await {
                    return Err((self, e));
                }
                let info = self.pump.session.tls_info();
                match self.pump.session.take_tls() {
                    Ok(h) => Ok(crate::Handoff::new(self.io.io.0, h, info)),
                    Err(e) => Err((self, crate::Error::Usage(e))),
                }
            }
        }
    };
}
pub(crate) use async_driver;
