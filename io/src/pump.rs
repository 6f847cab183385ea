//! The loop every driver runs, written once over a small poll-based
//! transport. The blocking driver runs it with a transport that never
//! returns `Pending`.
//!
//! Cancel safety: everything that must survive a dropped future lives here
//! (the chunk being written and its progress, bytes to feed, the deadline),
//! and a read is fed to the session in the same poll that completed it.

use std::io;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use starttls::{Session, Timeouts, Waiting};

use crate::Error;

/// What a read gave.
pub(crate) enum ReadOutcome {
    Data(usize),
    Eof,
    TimedOut,
}

/// A stream as the loop sees it.
pub(crate) trait Transport {
    /// Reads; `TimedOut` once `deadline` has passed with nothing read.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Poll<io::Result<ReadOutcome>>;
    /// Writes; `None` once a write made no progress for `stall`.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        stall: Option<Duration>,
    ) -> Poll<io::Result<Option<usize>>>;
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// One read: a TLS record's worth.
const READ_BUF: usize = 16 * 1024;

std::thread_local! {
    /// The read buffer, one per thread rather than one per connection: an
    /// idle connection holds none, and a poll that finds nothing to read
    /// costs no 16 KiB memset. Bytes never outlive the poll that read them
    /// (they are fed to the session at once).
    static READ: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_BUF].into_boxed_slice());
}

/// The session and the loop's state.
pub(crate) struct Pump<S: Session> {
    pub(crate) session: S,
    pub(crate) timeouts: Timeouts,
    /// The transmit chunk being written; what is left of it.
    out: Bytes,
    /// Something was written and not flushed yet.
    dirty: bool,
    /// Bytes the caller read before handing the stream over.
    prefix: Vec<u8>,
    waiting: Waiting,
    deadline: Option<Instant>,
}

impl<S: Session> Pump<S> {
    pub(crate) fn new(session: S) -> Self {
        let mut p = Pump {
            session,
            timeouts: S::default_timeouts(),
            out: Bytes::new(),
            dirty: false,
            prefix: Vec::new(),
            waiting: Waiting::Closed,
            deadline: None,
        };
        p.rearm();
        p
    }

    pub(crate) fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
        self.rearm();
    }

    /// Starts the deadline for what the session waits for now, afresh.
    fn rearm(&mut self) {
        self.waiting = self.session.waiting_for();
        self.deadline = self
            .timeouts
            .for_waiting(self.waiting)
            .map(|d| Instant::now() + d);
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.prefix.extend_from_slice(bytes);
    }

    /// Restarts the deadline when the session waits for something else, or
    /// made progress while waiting for anything but a handshake (which has
    /// one deadline from its start).
    fn refresh(&mut self, progress: bool) {
        let w = self.session.waiting_for();
        let handshake = matches!(w, Waiting::Handshake | Waiting::ExternalTls);
        if w != self.waiting || (progress && !handshake) {
            self.waiting = w;
            self.deadline = self.timeouts.for_waiting(w).map(|d| Instant::now() + d);
        }
    }

    /// Writes everything queued, then flushes the stream.
    pub(crate) fn poll_flush<T: Transport>(
        &mut self,
        t: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        loop {
            if self.out.is_empty() {
                match self.session.poll_transmit() {
                    Some(b) => {
                        self.out = b;
                        self.refresh(true);
                    }
                    None => break,
                }
            }
            match ready!(t.poll_write(cx, &self.out, self.timeouts.write))? {
                Some(0) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()))
                }
                Some(n) => {
                    self.out.advance(n.min(self.out.len()));
                    if self.out.is_empty() {
                        // An empty `Bytes` still holds its allocation (the
                        // session's whole transmit buffer): let it go, or an
                        // idle connection keeps its last answer.
                        self.out = Bytes::new();
                    }
                    self.dirty = true;
                }
                None => return Poll::Ready(Err(Error::WriteTimeout)),
            }
        }
        if self.dirty {
            ready!(t.poll_flush(cx))?;
            self.dirty = false;
        }
        Poll::Ready(Ok(()))
    }

    /// The next event: `None` once the session closed and everything it
    /// queued is written.
    pub(crate) fn poll_next<T: Transport>(
        &mut self,
        t: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<S::Event>, Error>> {
        loop {
            match self.session.poll_event() {
                Ok(Some(e)) => {
                    self.refresh(true);
                    return Poll::Ready(Ok(Some(e)));
                }
                Ok(None) => {}
                Err(e) => {
                    // Send what the failed session still queued (a QUIT, a
                    // 421, an alert); the session's error comes first.
                    let _ = ready!(self.poll_flush(t, cx));
                    return Poll::Ready(Err(Error::Session(e)));
                }
            }
            // Never read before everything queued is written: the session's
            // upgrade boundary is defined by what was taken for sending.
            let closed = self.session.is_closed();
            match ready!(self.poll_flush(t, cx)) {
                Ok(()) => {}
                // A session that ended normally: its last bytes (a
                // `close_notify`) may meet a peer that has already gone.
                Err(Error::Io(e)) if closed && peer_gone(&e) => self.out.clear(),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if closed {
                return Poll::Ready(Ok(None));
            }
            if self.session.waiting_for() == Waiting::ExternalTls {
                return Poll::Ready(Err(Error::ExternalTlsPending));
            }
            if !self.prefix.is_empty() {
                let prefix = std::mem::take(&mut self.prefix);
                self.session.handle_input(&prefix);
                self.refresh(false);
                continue;
            }
            let outcome = READ.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => self.read_into(t, cx, &mut buf),
                // A stream that runs another driver inside its own read.
                Err(_) => self.read_into(t, cx, &mut [0u8; READ_BUF]),
            });
            ready!(outcome)?;
            self.refresh(false);
        }
    }

    /// One read, fed to the session in the same poll (so `buf` need not
    /// outlive this call, and a dropped future loses nothing).
    fn read_into<T: Transport>(
        &mut self,
        t: &mut T,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<()>> {
        match ready!(t.poll_read(cx, buf, self.deadline))? {
            ReadOutcome::Data(n) => self.session.handle_input(buf.get(..n).unwrap_or(buf)),
            ReadOutcome::Eof => self.session.handle_eof(),
            ReadOutcome::TimedOut => self.session.handle_timeout(),
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes, then shuts the stream's sending side down.
    pub(crate) fn poll_close<T: Transport>(
        &mut self,
        t: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        let closed = self.session.is_closed();
        match ready!(self.poll_flush(t, cx)) {
            Err(Error::Io(e)) if closed && peer_gone(&e) => self.out.clear(),
            r => r?,
        }
        match ready!(t.poll_shutdown(cx)) {
            Err(e) if peer_gone(&e) || e.kind() == io::ErrorKind::NotConnected => {}
            r => r?,
        }
        Poll::Ready(Ok(()))
    }

    /// The deadline for the handshake of a bring-your-own TLS upgrade.
    pub(crate) fn handshake_timeout(&self) -> Option<Duration> {
        self.timeouts.handshake
    }

    /// Bring-your-own TLS is up.
    pub(crate) fn tls_up(&mut self, info: starttls::TlsInfo) -> Result<(), Error> {
        self.session.tls_established(info)?;
        self.refresh(true);
        Ok(())
    }
}

/// The peer closed the connection under us.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}
