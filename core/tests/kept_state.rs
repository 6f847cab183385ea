//! What an idle client keeps and what it still answers: the session holds
//! no second copy of the peer's certificate chain (rustls has it) and keeps
//! the capabilities compact, yet `tls_info()` and `capabilities()` give the
//! same values as the events did, before and after the TLS hand-off. The
//! memory figures themselves are pinned by `bench/tests/idle_heap.rs`.

mod common;

use std::sync::Arc;

use common::{client_tls, localhost, pki, server_tls};
use starttls::{imap, pop3, smtp};
use starttls::{ClientTls, ServerTls, Session, TlsInfo, TlsPolicy, TlsVersion, UpgradeEvent};

/// Moves bytes both ways until neither side has anything to send; each
/// event goes to `on_client` / `on_server`.
fn pump<C: Session, S: Session>(
    c: &mut C,
    s: &mut S,
    mut on_client: impl FnMut(C::Event),
    mut on_server: impl FnMut(S::Event),
) {
    loop {
        let mut moved = false;
        while let Some(b) = s.poll_transmit() {
            c.handle_input(&b);
            moved = true;
        }
        while let Some(e) = c.poll_event().expect("client") {
            on_client(e);
        }
        while let Some(b) = c.poll_transmit() {
            s.handle_input(&b);
            moved = true;
        }
        while let Some(e) = s.poll_event().expect("server") {
            on_server(e);
        }
        if !moved {
            break;
        }
    }
}

fn client_rustls() -> ClientTls {
    ClientTls::Rustls {
        config: client_tls(),
        server_name: localhost(),
    }
}

/// The full description: the chain the server sent (leaf and CA), read from
/// rustls, equal to what the `TlsEstablished` event carried.
fn check_full(info: &TlsInfo, from_event: &TlsInfo) {
    let p = pki();
    assert_eq!(
        info.peer_certificates,
        [p.leaf_der.clone(), p.ca_der.clone()]
    );
    assert_eq!(info.version, Some(TlsVersion::Tls13));
    assert!(info.cipher_suite.is_some());
    assert_eq!(info, from_event);
}

/// `tls_info()` before and after the hand-off, and the handed-over
/// connection still has the chain.
fn check_tls_info<C: Session>(c: &mut C, from_event: &TlsInfo) {
    check_full(&c.tls_info().expect("tls_info"), from_event);
    let handoff = c.take_tls().expect("take_tls");
    check_full(&c.tls_info().expect("tls_info after take_tls"), from_event);
    let conn = handoff.connection.expect("rustls connection");
    assert_eq!(
        conn.peer_certificates().map(<[_]>::to_vec),
        Some(from_event.peer_certificates.clone())
    );
}

#[test]
fn smtp_client_answers_from_what_it_keeps() {
    let config = smtp::ClientConfig::new("c.test", TlsPolicy::StartTlsRequired, client_rustls());
    let mut c = smtp::ClientSession::new(Arc::new(config)).unwrap();
    let mut sc = smtp::ServerConfig::new("mx.test", ServerTls::Rustls(server_tls()));
    sc.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into()];
    let mut s = smtp::ServerSession::new(Arc::new(sc)).unwrap();
    let mut caps = Vec::new();
    let mut info = None;
    let mut server_info = None;
    pump(
        &mut c,
        &mut s,
        |e| match e {
            smtp::ClientEvent::Capabilities(k) => caps.push(k.message),
            smtp::ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(i)) => info = Some(i),
            _ => {}
        },
        |e| {
            if let smtp::ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(i)) = e {
                server_info = Some(i);
            }
        },
    );
    assert!(c.is_ready());
    assert_eq!(caps.len(), 2);
    // Only the list received over TLS, the same as its event.
    let now = c.capabilities().expect("capabilities");
    assert_eq!(now, caps[1]);
    assert!(!now.has_starttls() && now.has_auth());
    assert_eq!(now.auth_mechanisms().count(), 2);
    // The server reads its description from rustls too (SNI included).
    let server_info = server_info.expect("server TlsEstablished");
    assert_eq!(s.tls_info(), Some(server_info.clone()));
    assert_eq!(server_info.sni.as_deref(), Some("localhost"));
    check_tls_info(&mut c, &info.expect("client TlsEstablished"));
}

#[test]
fn imap_client_answers_from_what_it_keeps() {
    let config = imap::ClientConfig::new(TlsPolicy::StartTlsRequired, client_rustls());
    let mut c = imap::ClientSession::new(Arc::new(config)).unwrap();
    let mut sc = imap::ServerConfig::new(ServerTls::Rustls(server_tls()));
    sc.auth_mechanisms = vec!["PLAIN".into()];
    let mut s = imap::ServerSession::new(Arc::new(sc)).unwrap();
    let mut caps = Vec::new();
    let mut info = None;
    pump(
        &mut c,
        &mut s,
        |e| match e {
            imap::ClientEvent::Capabilities(k) => caps.push(k.message),
            imap::ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(i)) => info = Some(i),
            _ => {}
        },
        |_| {},
    );
    assert!(c.is_ready());
    let last = caps.last().expect("capabilities over TLS");
    let now = c.capabilities().expect("capabilities");
    assert_eq!(now, last);
    assert!(!now.has_starttls() && now.contains("AUTH=PLAIN"));
    check_tls_info(&mut c, &info.expect("client TlsEstablished"));
}

#[test]
fn pop3_client_answers_from_what_it_keeps() {
    let config = pop3::ClientConfig::new(TlsPolicy::StartTlsRequired, client_rustls());
    let mut c = pop3::ClientSession::new(Arc::new(config)).unwrap();
    let mut sc = pop3::ServerConfig::new(ServerTls::Rustls(server_tls()));
    sc.sasl_mechanisms = vec!["PLAIN".into()];
    let mut s = pop3::ServerSession::new(Arc::new(sc)).unwrap();
    let mut caps = Vec::new();
    let mut info = None;
    pump(
        &mut c,
        &mut s,
        |e| match e {
            pop3::ClientEvent::Capabilities(k) => caps.push(k.message),
            pop3::ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(i)) => info = Some(i),
            _ => {}
        },
        |_| {},
    );
    assert!(c.is_ready());
    assert_eq!(caps.len(), 2);
    let now = c.capabilities().expect("capabilities");
    assert_eq!(now, caps[1]);
    assert!(!now.has_stls());
    assert_eq!(
        now.sasl_mechanisms().collect::<Vec<_>>(),
        [bytes::Bytes::from_static(b"PLAIN")]
    );
    check_tls_info(&mut c, &info.expect("client TlsEstablished"));
}
