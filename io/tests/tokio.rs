//! The tokio driver over loopback TCP with real rustls.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use common::*;
use starttls::{imap, smtp, Error as SessionError, Session, TlsInfo, UpgradeEvent, Waiting};
use starttls_io::tokio::Driver;
use starttls_io::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// A stream that returns `Pending` on every other poll and moves at most
/// 7 bytes at a time: many await points inside `next_event()`.
struct Choppy<T> {
    inner: T,
    flip: bool,
}

impl<T> Choppy<T> {
    fn pause(&mut self, cx: &mut Context<'_>) -> bool {
        self.flip = !self.flip;
        if self.flip {
            cx.waker().wake_by_ref();
        }
        self.flip
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Choppy<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pause(cx) {
            return Poll::Pending;
        }
        let mut tmp = [0u8; 7];
        let n = tmp.len().min(buf.remaining());
        let mut small = ReadBuf::new(&mut tmp[..n]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut small) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(small.filled());
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Choppy<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.pause(cx) {
            return Poll::Pending;
        }
        let n = buf.len().min(7);
        Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.pause(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `next_event()` inside `select!` against an always-ready branch: dropped
/// at every await point, then called again. Counts the drops.
async fn next_interrupted<S: Session, T: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Driver<S, T>,
    drops: &mut usize,
) -> Result<Option<S::Event>, Error> {
    loop {
        tokio::select! {
            biased;
            r = d.next_event() => return r,
            _ = std::future::ready(()) => *drops += 1,
        }
        tokio::task::yield_now().await;
    }
}

/// One SMTP session over loopback, both roles; `interrupt` chops the
/// streams and drops `next_event()` at every poll. Returns both logs.
async fn smtp_session(interrupt: bool) -> (Vec<String>, Vec<String>, usize) {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut d = Driver::new(
            smtp_server(server_tls()),
            Choppy {
                inner: sock,
                flip: !interrupt,
            },
        );
        let (mut log, mut drops) = (Vec::new(), 0);
        loop {
            let e = if interrupt {
                next_interrupted(&mut d, &mut drops).await
            } else {
                d.next_event().await
            };
            match e.expect("server event") {
                Some(e) => smtp_serve(d.session_mut(), e, &mut log).expect("serve"),
                None => break,
            }
        }
        d.close().await.expect("close");
        (log, drops)
    });
    let sock = TcpStream::connect(addr).await.expect("connect");
    let mut d = Driver::new(
        smtp_client(client_tls()),
        Choppy {
            inner: sock,
            flip: !interrupt,
        },
    );
    let (mut log, mut drops) = (Vec::new(), 0);
    loop {
        let e = if interrupt {
            next_interrupted(&mut d, &mut drops).await
        } else {
            d.next_event().await
        };
        match e.expect("client event") {
            Some(e) => smtp_script(d.session_mut(), e, &mut log).expect("script"),
            None => break,
        }
    }
    d.close().await.expect("close");
    let (server_log, server_drops) = server.await.expect("server task");
    (log, server_log, drops + server_drops)
}

/// Cancel safety: the same events on both sides whether or not every
/// `next_event()` is dropped at every await point.
#[tokio::test]
async fn next_event_is_cancel_safe() {
    let (client, server, none) = smtp_session(false).await;
    assert_eq!(none, 0);
    let (client2, server2, drops) = smtp_session(true).await;
    assert!(drops > 100, "only {drops} interruptions");
    assert!(saw_tls(&client) && client.iter().any(|l| l.contains("end of data")));
    assert_eq!(client, client2);
    assert_eq!(server, server2);
}

/// `run` is the whole loop; both roles.
#[tokio::test]
async fn smtp_run_both_roles() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut log = Vec::new();
        Driver::new(smtp_server(server_tls()), sock)
            .run(|s, e| smtp_serve(s, e, &mut log))
            .await
            .expect("server run");
        log
    });
    let mut log = Vec::new();
    let sock = TcpStream::connect(addr).await.expect("connect");
    Driver::new(smtp_client(client_tls()), sock)
        .run(|s, e| smtp_script(s, e, &mut log))
        .await
        .expect("client run");
    let server_log = server.await.expect("server");
    assert!(saw_tls(&log) && saw_tls(&server_log));
    assert!(server_log.iter().any(|l| l == "MessageEnd"));
}

/// A server that never greets: the client gets a typed timeout.
#[tokio::test]
async fn server_never_greets() {
    let (l, addr) = listener().await;
    let _hold = tokio::spawn(async move { l.accept().await });
    let sock = TcpStream::connect(addr).await.expect("connect");
    let mut d = Driver::new(smtp_client(client_tls()), sock).with_timeouts(short());
    match d.next_event().await {
        Err(Error::Session(SessionError::Timeout { waiting })) => {
            assert_eq!(waiting, Waiting::Greeting)
        }
        other => panic!("{other:?}"),
    }
}

/// A client that stalls in mid-DATA: `421 4.4.2`, then close.
#[tokio::test]
async fn client_stalls_mid_data() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut log = Vec::new();
        Driver::new(smtp_server(starttls::ServerTls::None), sock)
            .with_timeouts(short())
            .run(|s, e| smtp_serve(s, e, &mut log))
            .await
    });
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"EHLO c.localhost\r\nMAIL FROM:<a@localhost>\r\nRCPT TO:<b@localhost>\r\nDATA\r\nSubject: half")
        .await
        .expect("write");
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("421 4.4.2 mx.localhost Timeout, closing connection\r\n"),
        "{text}"
    );
    assert!(matches!(
        server.await.expect("server"),
        Err(Error::Session(SessionError::Timeout {
            waiting: Waiting::DataBlock
        }))
    ));
}

/// A peer that stalls in the TLS handshake after STARTTLS.
#[tokio::test]
async fn handshake_stall_after_starttls() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut d = Driver::new(imap_server(server_tls()), sock).with_timeouts(short());
        loop {
            match d.next_event().await {
                Ok(Some(_)) => {}
                other => return other.map(|_| ()),
            }
        }
    });
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"a STARTTLS\r\n").await.expect("write");
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.expect("read");
    assert!(String::from_utf8_lossy(&got).contains("a OK"));
    assert!(matches!(
        server.await.expect("server"),
        Err(Error::Session(SessionError::Timeout {
            waiting: Waiting::Handshake
        }))
    ));
}

/// Bring-your-own TLS: the server hands the stream to tokio-rustls at
/// `ExternalTlsRequired`; the client drives rustls in memory.
#[tokio::test]
async fn external_tls_with_tokio_rustls() {
    let (l, addr) = listener().await;
    let starttls::ServerTls::Rustls(config) = server_tls() else {
        unreachable!()
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config));
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut d = Driver::new(imap_server(starttls::ServerTls::External), sock);
        let mut events = Vec::new();
        loop {
            let e = d
                .next_event()
                .await
                .expect("event before TLS")
                .expect("open");
            let external = matches!(
                e,
                imap::ServerEvent::Upgrade(UpgradeEvent::ExternalTlsRequired)
            );
            events.push(format!("{e:?}"));
            if external {
                break;
            }
        }
        // Reading now would take the ClientHello from the TLS library.
        assert!(matches!(
            d.next_event().await,
            Err(Error::ExternalTlsPending)
        ));
        let acceptor = acceptor.clone();
        let mut d = match d
            .start_tls(|io| async move {
                match acceptor.accept(io).into_fallible().await {
                    Ok(tls) => Ok((tls, TlsInfo::unknown())),
                    Err((e, io)) => Err((e, io)),
                }
            })
            .await
        {
            Ok(d) => d,
            Err(e) => panic!("{e:?}"),
        };
        while let Some(e) = d.next_event().await.expect("event over TLS") {
            events.push(format!("{e:?}"));
        }
        events
    });
    let sock = TcpStream::connect(addr).await.expect("connect");
    let mut d = Driver::new(imap_client(), sock);
    let mut ready = None;
    while let Some(e) = d.next_event().await.expect("client event") {
        if let imap::ClientEvent::Ready { trust, .. } = e {
            ready = Some(trust);
            d.session_mut()
                .send(imap::CommandBody::Logout)
                .expect("logout");
        }
    }
    assert_eq!(ready, Some(starttls::Trust::Tls));
    let events = server.await.expect("server");
    assert!(
        events.iter().any(|e| e.contains("TlsEstablished")),
        "{events:#?}"
    );
}

/// The hand-off: `copy_bidirectional` between the handed-off TLS stream and
/// an echo pipe.
#[tokio::test]
async fn into_parts_copy_bidirectional() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut d = Driver::new(smtp_server(server_tls()), sock);
        let mut hellos = 0;
        while hellos < 2 {
            if let smtp::ServerEvent::Hello(_) = d.next_event().await.expect("event").expect("open")
            {
                hellos += 1;
            }
        }
        let mut h = d.into_parts().await.map_err(|(_, e)| e).expect("hand-off");
        let (mut near, mut far) = tokio::io::duplex(64);
        let echo = tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(&mut far);
            tokio::io::copy(&mut r, &mut w).await
        });
        let copied = tokio::io::copy_bidirectional(&mut h, &mut near)
            .await
            .expect("copy");
        drop(near);
        let _ = echo.await;
        copied
    });
    let sock = TcpStream::connect(addr).await.expect("connect");
    let mut d = Driver::new(smtp_client(client_tls()), sock);
    loop {
        if let smtp::ClientEvent::Ready { .. } = d.next_event().await.expect("event").expect("open")
        {
            break;
        }
    }
    let h = d.into_parts().await.map_err(|(_, e)| e).expect("hand-off");
    let (mut r, mut w) = tokio::io::split(h);
    let message = b"over the session's TLS, in two halves\n";
    w.write_all(message).await.expect("write");
    let mut back = vec![0u8; message.len()];
    r.read_exact(&mut back).await.expect("read");
    assert_eq!(back, message);
    w.shutdown().await.expect("shutdown");
    let (to_pipe, from_pipe) = server.await.expect("server");
    assert_eq!(to_pipe, message.len() as u64);
    assert_eq!(from_pipe, message.len() as u64);
}

/// Progress restarts the deadline (the timer is re-armed lazily, when it
/// fires early): a client that sends a command every half timeout for four
/// timeouts is served, and once it stops, the timeout still comes, a full
/// timeout after its last command.
#[tokio::test]
async fn progress_restarts_the_deadline() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut log = Vec::new();
        let r = Driver::new(smtp_server(starttls::ServerTls::None), sock)
            .with_timeouts(short())
            .run(|s, e| smtp_serve(s, e, &mut log))
            .await;
        (r, log.len())
    });
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"EHLO c.localhost\r\n").await.expect("write");
    for _ in 0..8 {
        tokio::time::sleep(SHORT / 2).await;
        c.write_all(b"NOOP\r\n").await.expect("write");
    }
    let last = std::time::Instant::now();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.expect("read");
    let quiet = last.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("250 2.0.0").count(), 8, "{text}");
    assert!(text.ends_with("421 4.4.2 mx.localhost Timeout, closing connection\r\n"));
    assert!(quiet >= SHORT, "timed out {quiet:?} after the last command");
    let (r, _) = server.await.expect("server");
    assert!(
        matches!(
            r,
            Err(Error::Session(SessionError::Timeout {
                waiting: Waiting::Command
            }))
        ),
        "{r:?}"
    );
}
