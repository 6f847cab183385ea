//! Real TCP on loopback: the sans-IO sessions behind blocking `std::net`
//! sockets, against each other and against Python's smtplib.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command as Process;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::{client_tls, localhost, pki, server_tls};
use starttls::smtp::{
    ClientConfig, ClientEvent, ClientSession, Command, ServerConfig, ServerEvent, ServerSession,
};
use starttls::{ClientTls, ServerTls, TlsPolicy, Trust, UpgradeEvent};

/// What the server saw on one connection.
#[derive(Debug, Default)]
struct Served {
    message: Vec<u8>,
    commands_over_tls: usize,
    commands_in_cleartext: usize,
    tls: bool,
}

/// Serves one connection with blocking I/O; accepts everything.
fn serve_one(listener: TcpListener, config: Arc<ServerConfig>) -> thread::JoinHandle<Served> {
    thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut s = ServerSession::new(config).expect("config");
        let mut served = Served::default();
        let mut buf = vec![0u8; 8192];
        loop {
            while let Some(out) = s.poll_transmit() {
                if sock.write_all(&out).is_err() {
                    return served;
                }
            }
            loop {
                match s.poll_event() {
                    Ok(Some(ev)) => match ev {
                        ServerEvent::Command(Command::Bdat { .. }) => {}
                        ServerEvent::Command(_) => {
                            if s.trust() == Trust::Tls {
                                served.commands_over_tls += 1;
                            } else {
                                served.commands_in_cleartext += 1;
                            }
                            s.accept().unwrap();
                        }
                        ServerEvent::MessageData(p) => served.message.extend_from_slice(&p),
                        ServerEvent::MessageEnd
                        | ServerEvent::ChunkEnd
                        | ServerEvent::AuthResponse(_) => s.accept().unwrap(),
                        ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(_)) => served.tls = true,
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            while let Some(out) = s.poll_transmit() {
                if sock.write_all(&out).is_err() {
                    return served;
                }
            }
            if s.is_closed() {
                return served;
            }
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => {
                    s.handle_eof();
                }
                Ok(n) => s.handle_input(&buf[..n]),
            }
        }
    })
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn server_config(implicit: bool) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new("localhost", ServerTls::Rustls(server_tls()));
    c.implicit_tls = implicit;
    c.require_tls = !implicit;
    Arc::new(c)
}

fn run_client(port: u16, policy: TlsPolicy) -> Vec<String> {
    let cfg = ClientConfig::new(
        "client.localhost",
        policy,
        ClientTls::Rustls {
            config: client_tls(),
            server_name: localhost(),
        },
    );
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut log = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(out) = c.poll_transmit() {
            sock.write_all(&out).unwrap();
        }
        loop {
            match c.poll_event() {
                Ok(Some(ev)) => {
                    log.push(format!("{ev:?}"));
                    match ev {
                        ClientEvent::Ready { .. } => {
                            c.send(
                                Command::parse(&Bytes::from_static(
                                    b"MAIL FROM:<a@client.localhost>",
                                ))
                                .unwrap(),
                            )
                            .unwrap();
                            c.send(
                                Command::parse(&Bytes::from_static(b"RCPT TO:<b@localhost>"))
                                    .unwrap(),
                            )
                            .unwrap();
                            c.send(Command::Data).unwrap();
                        }
                        ClientEvent::Reply { to: "DATA", reply } if reply.code().get() == 354 => {
                            c.send_data(b"Subject: over tcp\r\n\r\nhello\r\n.dot\r\n")
                                .unwrap();
                            c.finish_data().unwrap();
                        }
                        ClientEvent::Reply {
                            to: "end of data", ..
                        } => c.send(Command::Quit).unwrap(),
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log.push(format!("ERROR {e}"));
                    return log;
                }
            }
        }
        while let Some(out) = c.poll_transmit() {
            sock.write_all(&out).unwrap();
        }
        if c.is_closed() {
            return log;
        }
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => c.handle_eof(),
            Ok(n) => c.handle_input(&buf[..n]),
        }
    }
}

#[test]
fn our_client_and_server_over_loopback_tcp() {
    for (implicit, policy) in [
        (false, TlsPolicy::StartTlsRequired),
        (true, TlsPolicy::Implicit),
    ] {
        let (l, port) = listener();
        let server = serve_one(l, server_config(implicit));
        let log = run_client(port, policy);
        let served = server.join().unwrap();
        assert!(log.iter().any(|l| l == "Ready { trust: Tls }"), "{log:#?}");
        assert!(!log.iter().any(|l| l.starts_with("ERROR")), "{log:#?}");
        assert!(served.tls);
        assert_eq!(served.commands_in_cleartext, 0);
        assert_eq!(served.commands_over_tls, 3);
        assert_eq!(
            served.message,
            b"Subject: over tcp\r\n\r\nhello\r\n.dot\r\n"
        );
    }
}

/// Python's smtplib as an independent client, with STARTTLS and with
/// implicit TLS. Skipped when python3 is missing, except in CI.
#[test]
fn python_smtplib_against_our_server() {
    if Process::new("python3").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "python3 is required in CI");
        eprintln!("SKIPPED: python3 not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("starttls-smtplib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    for implicit in [false, true] {
        let (l, port) = listener();
        let server = serve_one(l, server_config(implicit));
        let script = format!(
            r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
if {implicit}:
    s = smtplib.SMTP_SSL("localhost", {port}, context=ctx, timeout=20)
else:
    s = smtplib.SMTP("localhost", {port}, timeout=20)
    s.ehlo()
    assert s.has_extn("starttls"), "STARTTLS not offered"
    s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn("starttls"), "STARTTLS offered over TLS"
s.sendmail("py@localhost", ["rcpt@localhost"], "Subject: from python\r\n\r\n.dot first\r\nbye\r\n")
s.quit()
print("ok")
"#,
            ca = ca.display().to_string(),
            implicit = if implicit { "True" } else { "False" },
        );
        let out = Process::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let served = server.join().unwrap();
        assert!(
            out.status.success(),
            "python failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(served.tls);
        assert_eq!(served.commands_in_cleartext, 0);
        assert_eq!(
            served.message,
            b"Subject: from python\r\n\r\n.dot first\r\nbye\r\n"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
