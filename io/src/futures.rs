//! The futures-io driver, over `futures_io::AsyncRead + AsyncWrite`: smol,
//! async-io, or tokio through `tokio_util::compat`. Deadlines are
//! `futures_timer::Delay`s, which run on their own timer thread and so need
//! no particular runtime.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use ::futures_io::{AsyncRead, AsyncWrite};

use crate::async_io::{async_driver, NewTimer, PollIo, Timer};
use crate::handoff::Handoff;

/// A futures-io stream as the drivers poll it.
pub(crate) struct FuturesIo<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin> PollIo for FuturesIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// `futures_timer::Delay`.
pub(crate) struct FuturesTimer(::futures_timer::Delay);

impl Timer for FuturesTimer {
    fn reset(&mut self, at: Instant) {
        self.0.reset(at.saturating_duration_since(Instant::now()));
    }
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl NewTimer for FuturesTimer {
    fn at(at: Instant) -> Self {
        FuturesTimer(::futures_timer::Delay::new(
            at.saturating_duration_since(Instant::now()),
        ))
    }
}

use std::future::Future;

async_driver!(
    FuturesIo,
    FuturesTimer,
    "futures-io",
    AsyncRead + AsyncWrite + Unpin
);

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Handoff<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        {
            let (mut state, io) = self.get_mut().split_mut();
            state.poll_read(cx, buf, FuturesIo(io))
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Handoff<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        {
            let (mut state, io) = self.get_mut().split_mut();
            state.poll_write(cx, buf, FuturesIo(io))
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let (mut state, io) = self.get_mut().split_mut();
            state.poll_flush(cx, FuturesIo(io))
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let (mut state, io) = self.get_mut().split_mut();
            state.poll_shutdown(cx, FuturesIo(io))
        }
    }
}
