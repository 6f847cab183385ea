//! The blocking driver over loopback TCP with real rustls.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use common::*;
use starttls::{imap, pop3, smtp, Error as SessionError, UpgradeEvent, Waiting};
use starttls_io::blocking::{Driver, NoTimeouts};
use starttls_io::Error;

fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

fn timed_out(r: Result<Option<impl std::fmt::Debug>, Error>) -> Waiting {
    match r {
        Err(Error::Session(SessionError::Timeout { waiting })) => waiting,
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Both roles, STARTTLS with in-memory rustls, a message, QUIT: each side's
/// `run` ends cleanly and saw TLS.
#[test]
fn smtp_starttls_both_roles() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut log = Vec::new();
        Driver::new(smtp_server(server_tls()), sock)
            .run(|s, e| smtp_serve(s, e, &mut log))
            .expect("server run");
        log
    });
    let mut log = Vec::new();
    Driver::new(
        smtp_client(client_tls()),
        TcpStream::connect(addr).expect("connect"),
    )
    .run(|s, e| smtp_script(s, e, &mut log))
    .expect("client run");
    let server_log = server.join().expect("server thread");
    assert!(saw_tls(&log) && saw_tls(&server_log));
    assert!(log.iter().any(|l| l.contains("end of data")), "{log:#?}");
    assert!(server_log.iter().any(|l| l == "MessageEnd"));
}

/// A server that never greets: the client gets a typed timeout.
#[test]
fn server_never_greets() {
    let (l, addr) = listener();
    let hold = thread::spawn(move || l.accept().map(|(s, _)| s));
    let mut d = Driver::new(
        smtp_client(client_tls()),
        TcpStream::connect(addr).expect("connect"),
    )
    .with_timeouts(short());
    assert_eq!(timed_out(d.next_event()), Waiting::Greeting);
    drop(hold.join());
}

/// A client that stalls in the middle of DATA: the server sends
/// `421 4.4.2` and closes.
#[test]
fn client_stalls_mid_data() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut log = Vec::new();
        Driver::new(smtp_server(starttls::ServerTls::None), sock)
            .with_timeouts(short())
            .run(|s, e| smtp_serve(s, e, &mut log))
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.write_all(b"EHLO c.localhost\r\nMAIL FROM:<a@localhost>\r\nRCPT TO:<b@localhost>\r\nDATA\r\nSubject: half")
        .expect("write");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("354 "), "{text}");
    assert!(
        text.ends_with("421 4.4.2 mx.localhost Timeout, closing connection\r\n"),
        "{text}"
    );
    match server.join().expect("server") {
        Err(Error::Session(SessionError::Timeout { waiting })) => {
            assert_eq!(waiting, Waiting::DataBlock)
        }
        other => panic!("{other:?}"),
    }
}

/// A peer that stalls in the TLS handshake (implicit TLS, nothing sent):
/// one deadline, then the typed timeout.
#[test]
fn handshake_stall() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut d = Driver::new(smtp_server_implicit(), sock).with_timeouts(short());
        let start = std::time::Instant::now();
        let w = timed_out(d.next_event());
        // The configured deadline, not the default five minutes.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        w
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read");
    assert!(got.is_empty());
    assert_eq!(server.join().expect("server"), Waiting::Handshake);
}

/// IMAP autologout: `* BYE`, then close.
#[test]
fn imap_idle_client_gets_bye() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut d = Driver::new(imap_server(server_tls()), sock).with_timeouts(short());
        timed_out(d.next_event())
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("* OK "), "{text}");
    assert!(
        text.ends_with("* BYE Autologout; idle for too long\r\n"),
        "{text}"
    );
    assert_eq!(server.join().expect("server"), Waiting::Command);
}

/// POP3 autologout: `-ERR`, then close.
#[test]
fn pop3_idle_client_gets_err() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut d = Driver::new(pop3_server(server_tls()), sock).with_timeouts(short());
        timed_out(d.next_event())
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("+OK"), "{text}");
    assert!(
        text.ends_with("-ERR autologout: idle for too long\r\n"),
        "{text}"
    );
    assert_eq!(server.join().expect("server"), Waiting::Command);
}

/// A scripted stream: each read returns the next chunk, writes are kept.
struct Script {
    reads: std::collections::VecDeque<Vec<u8>>,
    written: Vec<u8>,
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(chunk) = self.reads.pop_front() else {
            return Ok(0);
        };
        assert!(chunk.len() <= buf.len());
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One read returns the STARTTLS line and injected commands: the server
/// discards them and reports their count.
#[test]
fn starttls_and_injection_in_one_read() {
    let injected = b"MAIL FROM:<evil@localhost>\r\n";
    let mut one_read = b"STARTTLS\r\n".to_vec();
    one_read.extend_from_slice(injected);
    let script = Script {
        reads: vec![b"EHLO c.localhost\r\n".to_vec(), one_read].into(),
        written: Vec::new(),
    };
    let mut d = Driver::new(smtp_server(server_tls()), NoTimeouts(script));
    let mut events = Vec::new();
    while let Ok(Some(e)) = d.next_event() {
        events.push(e);
    }
    assert!(
        events.contains(&smtp::ServerEvent::Upgrade(
            UpgradeEvent::InjectionDiscarded {
                bytes: injected.len()
            }
        )),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, smtp::ServerEvent::Command(_))));
    let written = String::from_utf8_lossy(&d.get_ref().0.written).into_owned();
    assert!(
        written.ends_with("220 2.0.0 Ready to start TLS\r\n"),
        "{written}"
    );
}

/// Bytes the caller read first (`feed`) reach the session before the stream's.
#[test]
fn fed_prefix_comes_first() {
    let script = Script {
        reads: vec![b"NOOP\r\n".to_vec()].into(),
        written: Vec::new(),
    };
    let mut d = Driver::new(smtp_server(starttls::ServerTls::None), NoTimeouts(script));
    d.feed(b"EHLO c.localhost\r\n");
    let first = d.next_event().expect("event").expect("some");
    assert!(matches!(first, smtp::ServerEvent::Hello(_)), "{first:?}");
    while let Ok(Some(_)) = d.next_event() {}
    let written = String::from_utf8_lossy(&d.get_ref().0.written).into_owned();
    assert!(written.ends_with("250 2.0.0 Ok\r\n"), "{written}");
}

/// After the hand-off both sides speak their own protocol over the
/// session's TLS, and bytes the server received but did not consume are
/// read first.
#[test]
fn into_parts_hands_the_tls_stream_over() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut d = Driver::new(pop3_server(server_tls()), sock);
        loop {
            if let pop3::ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(_)) =
                d.next_event().expect("server event").expect("open")
            {
                break;
            }
        }
        let mut h = d.into_parts().map_err(|(_, e)| e).expect("hand-off");
        assert!(h.is_in_memory_tls());
        let mut line = [0u8; 5];
        h.read_exact(&mut line).expect("read");
        h.write_all(&line).expect("echo");
        h.flush().expect("flush");
        line
    });
    let mut d = Driver::new(pop3_client(), TcpStream::connect(addr).expect("connect"));
    loop {
        if let pop3::ClientEvent::Ready { trust } =
            d.next_event().expect("client event").expect("open")
        {
            assert_eq!(trust, starttls::Trust::Tls);
            break;
        }
    }
    let mut h = d.into_parts().map_err(|(_, e)| e).expect("hand-off");
    h.write_all(b"ping!").expect("write");
    h.flush().expect("flush");
    let mut back = [0u8; 5];
    h.read_exact(&mut back).expect("read");
    assert_eq!(&back, b"ping!");
    assert_eq!(&server.join().expect("server"), b"ping!");
}

/// `into_parts` before TLS is refused, and the driver comes back.
#[test]
fn into_parts_needs_tls() {
    let script = Script {
        reads: Default::default(),
        written: Vec::new(),
    };
    let d = Driver::new(imap_server(server_tls()), NoTimeouts(script));
    match d.into_parts() {
        Err((d, Error::Usage(_))) => assert!(!d.session().is_closed()),
        Err((_, e)) => panic!("{e:?}"),
        Ok(_) => panic!("handed off a cleartext session"),
    }
    let _ = imap::ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted);
}

/// A TLS stream made by the caller's own TLS (here rustls's `StreamOwned`,
/// driven by hand), for `start_tls`.
struct CallerTls(starttls::rustls::StreamOwned<starttls::rustls::ServerConnection, TcpStream>);

impl Read for CallerTls {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}
impl Write for CallerTls {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
impl starttls_io::blocking::Socket for CallerTls {
    fn set_read_timeout(&mut self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        self.0.sock.set_read_timeout(t)
    }
    fn set_write_timeout(&mut self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        self.0.sock.set_write_timeout(t)
    }
    fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.0.conn.send_close_notify();
        self.0.flush()?;
        starttls_io::blocking::Socket::shutdown_write(&mut self.0.sock)
    }
}

/// The caller's handshake on the plain stream: `Ok` with the TLS stream, or
/// the error and the stream given back.
fn caller_handshake(
    mut sock: TcpStream,
) -> Result<(CallerTls, starttls::TlsInfo), (std::io::Error, TcpStream)> {
    let starttls::ServerTls::Rustls(config) = server_tls() else {
        unreachable!()
    };
    let mut conn = match starttls::rustls::ServerConnection::new(config) {
        Ok(c) => c,
        Err(e) => return Err((std::io::Error::other(e), sock)),
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err((e, sock));
        }
    }
    let tls = starttls::rustls::StreamOwned::new(conn, sock);
    Ok((CallerTls(tls), starttls::TlsInfo::unknown()))
}

/// Bring-your-own TLS on the blocking driver: the driver stops at
/// `ExternalTlsRequired`, refuses to read past it, hands the stream to the
/// caller's handshake, and the session goes on over the caller's TLS.
#[test]
fn external_tls_with_the_callers_rustls_stream() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut d = Driver::new(imap_server(starttls::ServerTls::External), sock);
        let mut events = Vec::new();
        loop {
            let e = d.next_event().expect("event before TLS").expect("open");
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
        assert!(matches!(d.next_event(), Err(Error::ExternalTlsPending)));
        let mut d = match d.start_tls(caller_handshake) {
            Ok(d) => d,
            Err(e) => panic!("{e:?}"),
        };
        while let Some(e) = d.next_event().expect("event over TLS") {
            events.push(format!("{e:?}"));
        }
        events
    });
    let mut d = Driver::new(imap_client(), TcpStream::connect(addr).expect("connect"));
    let mut ready = None;
    while let Some(e) = d.next_event().expect("client event") {
        if let imap::ClientEvent::Ready { trust, .. } = e {
            ready = Some(trust);
            d.session_mut()
                .send(imap::CommandBody::Logout)
                .expect("logout");
        }
    }
    assert_eq!(ready, Some(starttls::Trust::Tls));
    let events = server.join().expect("server thread");
    assert!(
        events.iter().any(|e| e.contains("TlsEstablished")),
        "{events:#?}"
    );
}

/// A failed caller handshake gives the stream back inside the driver, and
/// the session still waits at the upgrade point.
#[test]
fn external_tls_failure_gives_the_stream_back() {
    let (l, addr) = listener();
    let server = thread::spawn(move || {
        let (sock, _) = l.accept().expect("accept");
        let mut d = Driver::new(imap_server(starttls::ServerTls::External), sock);
        loop {
            let e = d.next_event().expect("event before TLS").expect("open");
            if matches!(
                e,
                imap::ServerEvent::Upgrade(UpgradeEvent::ExternalTlsRequired)
            ) {
                break;
            }
        }
        match d.start_tls(caller_handshake) {
            Ok(_) => panic!("a handshake with garbage cannot succeed"),
            Err(starttls_io::StartTlsError::Handshake { driver, .. }) => {
                assert_eq!(driver.session().waiting_for(), Waiting::ExternalTls);
                // The stream came back: it is still the TCP stream.
                let _: &TcpStream = driver.get_ref();
            }
            Err(e) => panic!("{e:?}"),
        }
    });
    // A raw client: STARTTLS, then bytes that are no ClientHello.
    let mut c = TcpStream::connect(addr).expect("connect");
    let mut buf = [0u8; 4096];
    let _ = c.read(&mut buf).expect("greeting");
    c.write_all(b"a STARTTLS\r\n").expect("starttls");
    let n = c.read(&mut buf).expect("OK");
    assert!(buf[..n].starts_with(b"a OK"), "{:?}", &buf[..n]);
    c.write_all(b"this is no TLS record\r\n").expect("garbage");
    server.join().expect("server thread");
}
