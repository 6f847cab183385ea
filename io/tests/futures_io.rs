//! The futures-io driver on smol over loopback TCP with real rustls.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use starttls::{pop3, smtp, Error as SessionError, Session, Waiting};
use starttls_io::futures::Driver;
use starttls_io::Error;

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// `Pending` on every other poll, at most 5 bytes at a time.
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
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.pause(cx) {
            return Poll::Pending;
        }
        let n = buf.len().min(5);
        Pin::new(&mut self.inner).poll_read(cx, &mut buf[..n])
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
        let n = buf.len().min(5);
        Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Polls `next_event()` once per round and drops it when it is pending
/// (what `select!` against an always-ready branch does).
async fn next_interrupted<S: Session, T: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Driver<S, T>,
    drops: &mut usize,
) -> Result<Option<S::Event>, Error> {
    loop {
        let once = {
            let fut = d.next_event();
            let mut fut = std::pin::pin!(fut);
            futures_lite::future::poll_once(&mut fut).await
        };
        match once {
            Some(r) => return r,
            None => *drops += 1,
        }
        futures_lite::future::yield_now().await;
    }
}

/// A POP3 session, both roles, STARTTLS (STLS) with in-memory rustls.
async fn pop3_session(interrupt: bool) -> (Vec<String>, Vec<String>, usize) {
    let (l, addr) = listener().await;
    let server = smol::spawn(async move {
        let (sock, _) = l.accept().await.expect("accept");
        let mut d = Driver::new(
            pop3_server(server_tls()),
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
                Some(e) => {
                    log.push(format!("{e:?}"));
                    if let pop3::ServerEvent::Command(_) = e {
                        d.session_mut().accept().expect("accept");
                    }
                }
                None => break,
            }
        }
        d.close().await.expect("close");
        (log, drops)
    });
    let sock = TcpStream::connect(addr).await.expect("connect");
    let mut d = Driver::new(
        pop3_client(),
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
            Some(e) => {
                log.push(format!("{e:?}"));
                if let pop3::ClientEvent::Ready { .. } = e {
                    d.session_mut().send(pop3::Command::Quit).expect("QUIT");
                }
            }
            None => break,
        }
    }
    d.close().await.expect("close");
    let (server_log, server_drops) = server.await;
    (log, server_log, drops + server_drops)
}

/// Cancel safety on futures-io: the same events whether or not every
/// `next_event()` is dropped at every await point.
#[test]
fn next_event_is_cancel_safe() {
    smol::block_on(async {
        let (client, server, none) = pop3_session(false).await;
        assert_eq!(none, 0);
        assert!(saw_tls(&client) && saw_tls(&server), "{client:#?}");
        let (client2, server2, drops) = pop3_session(true).await;
        assert!(drops > 50, "only {drops} interruptions");
        assert_eq!(client, client2);
        assert_eq!(server, server2);
    });
}

/// A server that never greets: the client gets a typed timeout
/// (futures-timer, no runtime of its own).
#[test]
fn server_never_greets() {
    smol::block_on(async {
        let (l, addr) = listener().await;
        let _hold = smol::spawn(async move { l.accept().await });
        let sock = TcpStream::connect(addr).await.expect("connect");
        let mut d = Driver::new(smtp_client(client_tls()), sock).with_timeouts(short());
        match d.next_event().await {
            Err(Error::Session(SessionError::Timeout { waiting })) => {
                assert_eq!(waiting, Waiting::Greeting)
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A client that stalls in mid-DATA: `421 4.4.2`, then close.
#[test]
fn client_stalls_mid_data() {
    smol::block_on(async {
        let (l, addr) = listener().await;
        let server = smol::spawn(async move {
            let (sock, _) = l.accept().await.expect("accept");
            let mut log = Vec::new();
            Driver::new(smtp_server(starttls::ServerTls::None), sock)
                .with_timeouts(short())
                .run(|s, e| smtp_serve(s, e, &mut log))
                .await
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"EHLO c\r\nMAIL FROM:<a@localhost>\r\nRCPT TO:<b@localhost>\r\nDATA\r\nhalf")
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
            server.await,
            Err(Error::Session(SessionError::Timeout {
                waiting: Waiting::DataBlock
            }))
        ));
    });
}

/// SMTP both roles with `run`, then the hand-off over futures-io.
#[test]
fn smtp_run_and_into_parts() {
    smol::block_on(async {
        let (l, addr) = listener().await;
        let server = smol::spawn(async move {
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
        assert!(saw_tls(&log) && saw_tls(&server.await));

        let (l, addr) = listener().await;
        let server = smol::spawn(async move {
            let (sock, _) = l.accept().await.expect("accept");
            let mut d = Driver::new(smtp_server(server_tls()), sock);
            let mut hellos = 0;
            while hellos < 2 {
                if let smtp::ServerEvent::Hello(_) =
                    d.next_event().await.expect("event").expect("open")
                {
                    hellos += 1;
                }
            }
            let h = d.into_parts().await.map_err(|(_, e)| e).expect("hand-off");
            let (r, mut w) = futures_lite::io::split(h);
            futures_lite::io::copy(r, &mut w).await.expect("echo");
            w.close().await.expect("close");
        });
        let sock = TcpStream::connect(addr).await.expect("connect");
        let mut d = Driver::new(smtp_client(client_tls()), sock);
        loop {
            if let smtp::ClientEvent::Ready { .. } =
                d.next_event().await.expect("event").expect("open")
            {
                break;
            }
        }
        let mut h = d.into_parts().await.map_err(|(_, e)| e).expect("hand-off");
        h.write_all(b"echo me\n").await.expect("write");
        h.flush().await.expect("flush");
        let mut back = [0u8; 8];
        h.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"echo me\n");
        h.close().await.expect("close");
        server.await;
    });
}

/// Bring-your-own TLS on futures-io: the driver stops at the upgrade point
/// and hands the stream to the caller's handshake; when that fails, the
/// stream comes back inside the driver and the session still waits there.
#[test]
fn start_tls_failure_gives_the_stream_back() {
    smol::block_on(async {
        let (l, addr) = listener().await;
        let server = smol::spawn(async move {
            let (sock, _) = l.accept().await.expect("accept");
            let mut d = Driver::new(pop3_server(starttls::ServerTls::External), sock);
            loop {
                let e = d.next_event().await.expect("event").expect("open");
                if matches!(
                    e,
                    pop3::ServerEvent::Upgrade(starttls::UpgradeEvent::ExternalTlsRequired)
                ) {
                    break;
                }
            }
            assert!(matches!(
                d.next_event().await,
                Err(Error::ExternalTlsPending)
            ));
            let peer = d.get_ref().peer_addr().expect("peer");
            match d
                .start_tls(|io: TcpStream| async move { Err::<(TcpStream, _), _>(("refused", io)) })
                .await
            {
                Ok(_) => panic!("the handshake refused"),
                Err(starttls_io::StartTlsError::Handshake { driver, error }) => {
                    assert_eq!(error, "refused");
                    assert_eq!(driver.session().waiting_for(), Waiting::ExternalTls);
                    assert_eq!(driver.get_ref().peer_addr().expect("peer"), peer);
                }
                Err(e) => panic!("{e:?}"),
            }
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf).await.expect("greeting");
        c.write_all(b"STLS\r\n").await.expect("stls");
        let n = c.read(&mut buf).await.expect("+OK");
        assert!(buf[..n].starts_with(b"+OK"), "{:?}", &buf[..n]);
        server.await;
    });
}
