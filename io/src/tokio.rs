//! The tokio driver, over `tokio::io::AsyncRead + AsyncWrite`; deadlines
//! are `tokio::time` sleeps (the runtime needs its time driver).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::async_io::{async_driver, NewTimer, PollIo, Timer};
use crate::handoff::Handoff;

/// A tokio stream as the drivers poll it.
pub(crate) struct TokioIo<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin> PollIo for TokioIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `tokio::time::Sleep`, boxed so the driver stays `Unpin`.
pub(crate) struct TokioTimer(Pin<Box<::tokio::time::Sleep>>);

impl Timer for TokioTimer {
    fn reset(&mut self, at: Instant) {
        self.0.as_mut().reset(::tokio::time::Instant::from_std(at));
    }
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl NewTimer for TokioTimer {
    fn at(at: Instant) -> Self {
        TokioTimer(Box::pin(::tokio::time::sleep_until(
            ::tokio::time::Instant::from_std(at),
        )))
    }
}

use std::future::Future;

async_driver!(TokioIo, TokioTimer, "tokio", AsyncRead + AsyncWrite + Unpin);

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Handoff<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (mut state, io) = self.get_mut().split_mut();
        let n = ready!(state.poll_read(cx, buf.initialize_unfilled(), TokioIo(io)))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
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
            state.poll_write(cx, buf, TokioIo(io))
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let (mut state, io) = self.get_mut().split_mut();
            state.poll_flush(cx, TokioIo(io))
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let (mut state, io) = self.get_mut().split_mut();
            state.poll_shutdown(cx, TokioIo(io))
        }
    }
}
