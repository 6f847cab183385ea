//! Server and relay policy, end to end: SMTP `REQUIRETLS` (RFC 8689) in
//! both roles, graduated cleartext degradation, and listeners that require
//! TLS before credentials or mail (SMTP, IMAP, POP3) — each rule on its own
//! and with our client against our server through real rustls in memory.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{client_tls, localhost, server_tls};
use starttls::smtp::command::{Parameter, Parameters, ReversePath};
use starttls::smtp::{
    self, CleartextDegradation, CleartextMail, DeferSchedule, Deferral, EnhancedCode,
    RequireTlsRefusal,
};
use starttls::{imap, pop3};
use starttls::{ClientTls, ConfigError, ServerTls, TlsInfo, TlsPolicy, Trust, UsageError};

// ---------------------------------------------------------------- helpers

/// Moves bytes both ways until neither side has anything to send.
macro_rules! flush {
    ($c:expr, $s:expr) => {
        loop {
            let mut moved = false;
            while let Some(b) = $c.poll_transmit() {
                $s.handle_input(&b);
                moved = true;
            }
            while let Some(b) = $s.poll_transmit() {
                $c.handle_input(&b);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    };
}

/// Every pending event; panics if the session failed.
macro_rules! events {
    ($s:expr) => {{
        let mut v = Vec::new();
        while let Some(e) = $s.poll_event().expect("session failed") {
            v.push(e);
        }
        v
    }};
}

fn out<F: FnMut() -> Option<Bytes>>(mut f: F) -> String {
    let mut s = String::new();
    while let Some(b) = f() {
        s.push_str(&String::from_utf8_lossy(&b));
    }
    s
}

fn rustls_client() -> ClientTls {
    ClientTls::Rustls {
        config: client_tls(),
        server_name: localhost(),
    }
}

fn smtp_server_config(f: impl FnOnce(&mut smtp::ServerConfig)) -> Arc<smtp::ServerConfig> {
    let mut c = smtp::ServerConfig::new("mx.test", ServerTls::Rustls(server_tls()));
    c.auth_mechanisms = vec!["PLAIN".into()];
    f(&mut c);
    Arc::new(c)
}

fn smtp_client(policy: TlsPolicy) -> smtp::ClientSession {
    let c = smtp::ClientConfig::new("client.test", policy, rustls_client());
    smtp::ClientSession::new(Arc::new(c)).unwrap()
}

fn smtp_cmd(line: &str) -> smtp::Command {
    smtp::Command::parse(&Bytes::copy_from_slice(line.as_bytes())).unwrap()
}

/// The reverse-path and parameters of a `MAIL` line.
fn mail(line: &str) -> (ReversePath, Parameters) {
    match smtp_cmd(line) {
        smtp::Command::Mail { from, params } => (from, params),
        other => panic!("not MAIL: {other:?}"),
    }
}

/// An SMTP server already in TLS through `ServerTls::External` (the caller's
/// own TLS, here nothing: the bytes fed afterwards stand for decrypted ones).
fn smtp_server_in_tls(f: impl FnOnce(&mut smtp::ServerConfig)) -> smtp::ServerSession {
    let mut c = smtp::ServerConfig::new("mx.test", ServerTls::External);
    f(&mut c);
    let mut s = smtp::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(b"EHLO c.test\r\nSTARTTLS\r\n");
    out(|| s.poll_transmit());
    s.tls_established(TlsInfo::unknown()).unwrap();
    events!(s);
    assert_eq!(s.trust(), Trust::Tls);
    s
}

fn smtp_plain_server(f: impl FnOnce(&mut smtp::ServerConfig)) -> smtp::ServerSession {
    let mut s = smtp::ServerSession::new(smtp_server_config(f)).unwrap();
    assert_eq!(out(|| s.poll_transmit()), "220 mx.test ESMTP\r\n");
    s
}

fn client_capabilities(ev: &[smtp::ClientEvent]) -> Vec<(Trust, bool)> {
    ev.iter()
        .filter_map(|e| match e {
            smtp::ClientEvent::Capabilities(c) => Some((c.trust, c.message.has_require_tls())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- REQUIRETLS, both roles

#[test]
fn requiretls_message_relayed_end_to_end_through_rustls() {
    let mut s =
        smtp::ServerSession::new(smtp_server_config(|c| c.extensions.requiretls = true)).unwrap();
    let mut c = smtp_client(TlsPolicy::StartTlsRequired);
    flush!(c, s);
    let cev = events!(c);
    // Listed only in the EHLO reply over TLS (RFC 8689 §4.2.1 step 5).
    assert_eq!(
        client_capabilities(&cev),
        vec![(Trust::Cleartext, false), (Trust::Tls, true)]
    );
    assert!(cev.contains(&smtp::ClientEvent::Ready { trust: Trust::Tls }));
    assert_eq!(c.check_require_tls(), Ok(()));
    events!(s);

    let (from, params) = mail("MAIL FROM:<a@client.test> SIZE=10");
    c.send_mail_require_tls(from, &params).unwrap();
    flush!(c, s);
    let sev = events!(s);
    assert_eq!(sev.len(), 2, "{sev:?}");
    assert_eq!(sev[0], smtp::ServerEvent::TransactionRequiresTls);
    match &sev[1] {
        smtp::ServerEvent::Command(smtp::Command::Mail { params, .. }) => {
            assert_eq!(params.as_bytes().as_ref(), b"SIZE=10 REQUIRETLS");
            assert_eq!(params.get("REQUIRETLS"), Some(Parameter::RequireTls));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.transaction_requires_tls());
    s.accept().unwrap();
    c.send(smtp_cmd("RCPT TO:<b@mx.test>")).unwrap();
    c.send(smtp::Command::Data).unwrap();
    flush!(c, s);
    for _ in 0..2 {
        events!(s);
        s.accept().unwrap();
    }
    flush!(c, s);
    c.send_data(b"Subject: secret\r\n\r\nhi\r\n").unwrap();
    c.finish_data().unwrap();
    flush!(c, s);
    let sev = events!(s);
    assert_eq!(sev.last(), Some(&smtp::ServerEvent::MessageEnd));
    // The caller asks at the end of the message, to tag what it stores.
    assert!(s.transaction_requires_tls());
    s.accept().unwrap();
    assert!(!s.transaction_requires_tls());
    flush!(c, s);
    let replies: Vec<u16> = events!(c)
        .iter()
        .filter_map(|e| match e {
            smtp::ClientEvent::Reply { reply, .. } => Some(reply.message.code().get()),
            _ => None,
        })
        .collect();
    assert_eq!(replies, vec![250, 250, 354, 250]);
}

#[test]
fn client_refuses_requiretls_to_a_server_without_it_and_sends_nothing() {
    let mut s = smtp::ServerSession::new(smtp_server_config(|_| {})).unwrap();
    let mut c = smtp_client(TlsPolicy::StartTlsRequired);
    flush!(c, s);
    events!(s);
    let cev = events!(c);
    assert_eq!(
        client_capabilities(&cev),
        vec![(Trust::Cleartext, false), (Trust::Tls, false)]
    );
    assert_eq!(c.check_require_tls(), Err(RequireTlsRefusal::NotAdvertised));
    let (from, params) = mail("MAIL FROM:<a@client.test>");
    let refusal = UsageError::RequireTls(RequireTlsRefusal::NotAdvertised);
    assert_eq!(
        c.send_mail_require_tls(from.clone(), &params),
        Err(refusal.clone())
    );
    // The same rule whichever way the parameter is given.
    assert_eq!(
        c.send(smtp_cmd("MAIL FROM:<a@client.test> REQUIRETLS")),
        Err(refusal.clone())
    );
    assert!(c.poll_transmit().is_none(), "nothing may leave");
    assert!(refusal.to_string().contains("REQUIRETLS"));
    // RFC 8689 §4.2.1: the bounce says 5.7.30.
    assert_eq!(
        RequireTlsRefusal::NotAdvertised.status(),
        EnhancedCode::new(5, 7, 30)
    );
    // The session stays usable for mail that does not require TLS.
    c.send(smtp::Command::Mail { from, params }).unwrap();
    flush!(c, s);
    match events!(s).as_slice() {
        [smtp::ServerEvent::Command(smtp::Command::Mail { params, .. })] => {
            assert!(params.is_empty())
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.transaction_requires_tls());
}

#[test]
fn client_refuses_requiretls_in_cleartext() {
    // An opportunistic delivery to a server without TLS goes on in cleartext;
    // a message that requires TLS must not (RFC 8689 §2, §4.2.1 step 4).
    let server = smtp::ServerConfig::new("mx.test", ServerTls::None);
    let mut s = smtp::ServerSession::new(Arc::new(server)).unwrap();
    let mut c = smtp_client(TlsPolicy::Opportunistic);
    flush!(c, s);
    assert!(events!(c).contains(&smtp::ClientEvent::Ready {
        trust: Trust::Cleartext
    }));
    assert_eq!(c.check_require_tls(), Err(RequireTlsRefusal::NoTls));
    let (from, params) = mail("MAIL FROM:<a@client.test>");
    assert_eq!(
        c.send_mail_require_tls(from, &params),
        Err(UsageError::RequireTls(RequireTlsRefusal::NoTls))
    );
    assert!(c.poll_transmit().is_none());
    assert_eq!(
        RequireTlsRefusal::NoTls.status(),
        EnhancedCode::new(5, 7, 10)
    );

    // A REQUIRETLS listed in a cleartext EHLO reply (forged, or from a
    // server that ignores the RFC) counts for nothing.
    let mut c = smtp_client(TlsPolicy::Opportunistic);
    c.handle_input(b"220 mx.test ESMTP\r\n");
    out(|| c.poll_transmit());
    c.handle_input(b"250-mx.test\r\n250 REQUIRETLS\r\n");
    events!(c);
    assert!(c.capabilities().is_some_and(|k| k.has_require_tls()));
    assert_eq!(c.check_require_tls(), Err(RequireTlsRefusal::NoTls));
}

#[test]
fn server_accepts_requiretls_only_where_rfc_8689_allows_it() {
    // Cleartext: never listed, and the parameter is 530 5.7.10.
    let mut s = smtp_plain_server(|c| c.extensions.requiretls = true);
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@c.test> REQUIRETLS\r\n");
    let o = out(|| s.poll_transmit());
    assert!(!o.contains("REQUIRETLS\r\n"), "{o}");
    assert!(
        o.ends_with("530 5.7.10 REQUIRETLS needs TLS: issue STARTTLS first\r\n"),
        "{o}"
    );
    assert!(!s.transaction_requires_tls());
    assert!(events!(s)
        .iter()
        .all(|e| !matches!(e, smtp::ServerEvent::Command(_))));

    // Not configured: 555 5.5.4, even over TLS.
    let mut s = smtp_server_in_tls(|_| {});
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@c.test> REQUIRETLS\r\n");
    let o = out(|| s.poll_transmit());
    assert!(!o.contains("REQUIRETLS\r\n"), "{o}");
    assert!(o.ends_with("555 5.5.4 REQUIRETLS not supported\r\n"), "{o}");

    // Configured, over TLS, but HELO advertised nothing.
    let mut s = smtp_server_in_tls(|c| c.extensions.requiretls = true);
    s.handle_input(b"HELO c.test\r\nMAIL FROM:<a@c.test> REQUIRETLS\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "250 mx.test\r\n555 5.5.4 REQUIRETLS not advertised: send EHLO first\r\n"
    );

    // Configured, over TLS, after EHLO: reported, and the flag lasts as
    // long as the transaction.
    s.handle_input(b"EHLO c.test\r\n");
    let o = out(|| s.poll_transmit());
    assert!(o.contains("250 REQUIRETLS\r\n"), "{o}");
    events!(s);
    s.handle_input(b"MAIL FROM:<a@c.test> REQUIRETLS\r\n");
    assert!(matches!(
        events!(s).as_slice(),
        [
            smtp::ServerEvent::TransactionRequiresTls,
            smtp::ServerEvent::Command(smtp::Command::Mail { .. })
        ]
    ));
    assert!(s.transaction_requires_tls());
    s.reject(550, None, "no").unwrap();
    assert!(
        !s.transaction_requires_tls(),
        "a refused MAIL starts nothing"
    );
    s.handle_input(b"MAIL FROM:<a@c.test> REQUIRETLS\r\n");
    events!(s);
    s.accept().unwrap();
    assert!(s.transaction_requires_tls());
    s.handle_input(b"RSET\r\n");
    assert!(!s.transaction_requires_tls(), "RSET ends the transaction");
    s.handle_input(b"MAIL FROM:<a@c.test>\r\n");
    assert_eq!(events!(s).len(), 2); // reset, then MAIL without the event
    assert!(!s.transaction_requires_tls());
}

#[test]
fn requiretls_raises_the_mail_line_limit_by_eleven() {
    let local = "a".repeat(512 - "MAIL FROM:<@c.test>\r\n".len());
    let line = format!("MAIL FROM:<{local}@c.test> REQUIRETLS\r\n");
    assert_eq!(line.len(), 512 + 11);
    let mut s = smtp_server_in_tls(|c| c.extensions.requiretls = true);
    s.handle_input(b"EHLO c.test\r\n");
    out(|| s.poll_transmit());
    events!(s);
    s.handle_input(line.as_bytes());
    assert!(matches!(
        events!(s).as_slice(),
        [
            smtp::ServerEvent::TransactionRequiresTls,
            smtp::ServerEvent::Command(_)
        ]
    ));
    let mut s = smtp_server_in_tls(|_| {});
    s.handle_input(line.as_bytes());
    assert!(out(|| s.poll_transmit()).starts_with("500 5.5.2 Line too long"));
}

#[test]
fn lmtp_offers_requiretls_over_tls_too() {
    let mut s = smtp_server_in_tls(|c| {
        c.lmtp = true;
        c.extensions.requiretls = true;
    });
    s.handle_input(b"LHLO c.test\r\n");
    assert!(out(|| s.poll_transmit()).contains("REQUIRETLS\r\n"));
}

#[test]
fn tls_only_features_without_tls_are_configuration_errors() {
    let mut c = smtp::ServerConfig::new("mx.test", ServerTls::None);
    c.extensions.requiretls = true;
    assert_eq!(
        smtp::ServerSession::new(Arc::new(c)).err(),
        Some(ConfigError::TlsRequiredWithoutTls)
    );
    let mut c = smtp::ServerConfig::new("mx.test", ServerTls::None);
    c.degrade_cleartext = Some(Arc::new(DeferSchedule::new(1, 1, Deferral::default())));
    assert_eq!(
        smtp::ServerSession::new(Arc::new(c)).err(),
        Some(ConfigError::TlsRequiredWithoutTls)
    );
}

// ---------------------------------------------------------------- cleartext degradation

/// A hook with the operator's own "random" numbers (a fixed sequence here)
/// and a record of what it was asked.
#[derive(Debug)]
struct Recorded {
    rolls: Mutex<Vec<u8>>,
    seen: Mutex<Vec<(String, u32)>>,
}

impl CleartextDegradation for Recorded {
    fn decide(&self, mail: &CleartextMail<'_>) -> Option<Deferral> {
        let mut from = Vec::new();
        mail.from.write_to(&mut from);
        self.seen
            .lock()
            .unwrap()
            .push((String::from_utf8_lossy(&from).into_owned(), mail.earlier));
        let roll = self.rolls.lock().unwrap().pop()?;
        (roll < 30).then(|| {
            Deferral::new(
                451,
                Some(EnhancedCode::new(4, 7, 0)),
                "Try again over TLS, or later",
            )
            .unwrap()
        })
    }
}

#[test]
fn degradation_defers_cleartext_mail_as_the_hook_decides() {
    let hook = Arc::new(Recorded {
        // popped from the end: 10 (defer), 90 (pass), 20 (defer)
        rolls: Mutex::new(vec![20, 90, 10]),
        seen: Mutex::new(Vec::new()),
    });
    let dyn_hook: Arc<dyn CleartextDegradation> = hook.clone();
    let mut s = smtp_plain_server(|c| c.degrade_cleartext = Some(dyn_hook));
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nMAIL FROM:<b@c.test>\r\n");
    let o = out(|| s.poll_transmit());
    assert!(
        o.ends_with("451 4.7.0 Try again over TLS, or later\r\n"),
        "{o}"
    );
    let ev = events!(s);
    let deferred = smtp::ServerEvent::CleartextDeferred(
        Deferral::new(
            451,
            Some(EnhancedCode::new(4, 7, 0)),
            "Try again over TLS, or later",
        )
        .unwrap()
        .reply()
        .clone(),
    );
    assert!(
        matches!(ev.as_slice(), [smtp::ServerEvent::Hello(_), d, smtp::ServerEvent::Command(smtp::Command::Mail { .. })] if *d == deferred),
        "{ev:?}"
    );
    s.accept().unwrap();
    s.handle_input(b"RSET\r\nMAIL FROM:<c@c.test>\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n451 4.7.0 Try again over TLS, or later\r\n"
    );
    assert_eq!(
        events!(s),
        vec![smtp::ServerEvent::TransactionReset, deferred]
    );
    assert_eq!(
        *hook.seen.lock().unwrap(),
        vec![
            ("<a@c.test>".to_string(), 0),
            ("<b@c.test>".to_string(), 1),
            ("<c@c.test>".to_string(), 2)
        ]
    );
}

#[test]
fn deferrals_do_not_count_as_client_errors() {
    let mut s = smtp_plain_server(|c| {
        c.degrade_cleartext = Some(Arc::new(DeferSchedule::new(1, 1, Deferral::default())))
    });
    s.handle_input(b"EHLO c.test\r\n");
    out(|| s.poll_transmit());
    for _ in 0..30 {
        s.handle_input(b"MAIL FROM:<a@c.test>\r\n");
        assert_eq!(
            out(|| s.poll_transmit()),
            "450 4.7.0 Delivery without TLS is being phased out: use STARTTLS\r\n"
        );
    }
    assert!(!s.is_closed());
    assert_eq!(events!(s).len(), 31);
}

#[derive(Debug, Default)]
struct Counting(Mutex<u32>);

impl CleartextDegradation for Counting {
    fn decide(&self, _: &CleartextMail<'_>) -> Option<Deferral> {
        *self.0.lock().unwrap() += 1;
        Some(Deferral::default())
    }
}

#[test]
fn degradation_never_touches_a_client_that_upgrades() {
    // Our client upgrades whenever STARTTLS is offered (even when
    // opportunistic), so a degrading listener never asks its hook about it.
    let hook = Arc::new(Counting::default());
    let dyn_hook: Arc<dyn CleartextDegradation> = hook.clone();
    let mut s =
        smtp::ServerSession::new(smtp_server_config(|c| c.degrade_cleartext = Some(dyn_hook)))
            .unwrap();
    let mut c = smtp_client(TlsPolicy::Opportunistic);
    flush!(c, s);
    assert!(events!(c).contains(&smtp::ClientEvent::Ready { trust: Trust::Tls }));
    c.send(smtp_cmd("MAIL FROM:<a@client.test>")).unwrap();
    flush!(c, s);
    assert!(matches!(
        events!(s).last(),
        Some(smtp::ServerEvent::Command(smtp::Command::Mail { .. }))
    ));
    assert_eq!(*hook.0.lock().unwrap(), 0);
}

#[test]
fn a_foreign_cleartext_client_sees_the_deferral_as_a_cleartext_reply() {
    // Client role: what a sender that does not upgrade gets, here our
    // opportunistic client fed by hand with the server's answers.
    let mut s = smtp_plain_server(|c| {
        c.degrade_cleartext = Some(Arc::new(DeferSchedule::new(1, 2, Deferral::default())))
    });
    let mut c = smtp_client(TlsPolicy::Opportunistic);
    c.handle_input(b"220 mx.test ESMTP\r\n");
    s.handle_input(out(|| c.poll_transmit()).as_bytes());
    // Strip STARTTLS from the server's answer, as a client that ignores it would.
    let ehlo = out(|| s.poll_transmit()).replace("250-PIPELINING", "250-X-IGNORED");
    let ehlo = ehlo.replace(
        "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS",
        "250 ENHANCEDSTATUSCODES",
    );
    c.handle_input(ehlo.as_bytes());
    events!(s);
    assert!(events!(c).contains(&smtp::ClientEvent::Ready {
        trust: Trust::Cleartext
    }));
    for want in [450, 250] {
        c.send(smtp_cmd("MAIL FROM:<a@client.test>")).unwrap();
        flush!(c, s);
        let ev = events!(s);
        if want == 250 {
            s.accept().unwrap();
            flush!(c, s);
        } else {
            assert!(matches!(
                ev.as_slice(),
                [smtp::ServerEvent::CleartextDeferred(_)]
            ));
        }
        match events!(c).as_slice() {
            [smtp::ClientEvent::Reply { to: "MAIL", reply }] => {
                assert_eq!(reply.message.code().get(), want);
                assert_eq!(reply.trust, Trust::Cleartext);
            }
            other => panic!("{other:?}"),
        }
        if want == 250 {
            c.send(smtp::Command::Rset).unwrap();
            flush!(c, s);
            events!(c);
            events!(s);
        }
    }
}

// ---------------------------------------------------------------- listeners that require TLS

#[test]
fn smtp_require_tls_listener_with_our_client() {
    // Server role in cleartext: AUTH and MAIL are 530 5.7.0 (RFC 3207 §4).
    let mut s = smtp_plain_server(|c| c.require_tls = true);
    s.handle_input(b"EHLO c.test\r\nAUTH PLAIN AGFAYg==\r\nMAIL FROM:<a@c.test>\r\n");
    let o = out(|| s.poll_transmit());
    assert!(o.ends_with(
        "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
    ), "{o}");
    // Both roles over rustls: the client upgrades, then authenticates and
    // sends mail, all of it over TLS.
    let mut s = smtp::ServerSession::new(smtp_server_config(|c| c.require_tls = true)).unwrap();
    let mut c = smtp_client(TlsPolicy::StartTlsRequired);
    flush!(c, s);
    assert!(events!(c).contains(&smtp::ClientEvent::Ready { trust: Trust::Tls }));
    events!(s);
    c.send(smtp_cmd("AUTH PLAIN AGFAYg==")).unwrap();
    flush!(c, s);
    assert!(matches!(
        events!(s).as_slice(),
        [smtp::ServerEvent::Command(smtp::Command::Auth { .. })]
    ));
    assert_eq!(s.trust(), Trust::Tls);
    s.accept().unwrap();
    c.send(smtp_cmd("MAIL FROM:<a@client.test>")).unwrap();
    flush!(c, s);
    assert!(matches!(
        events!(s).as_slice(),
        [smtp::ServerEvent::Command(smtp::Command::Mail { .. })]
    ));
    s.accept().unwrap();
    flush!(c, s);
    let codes: Vec<u16> = events!(c)
        .iter()
        .filter_map(|e| match e {
            smtp::ClientEvent::Reply { reply, .. } => Some(reply.message.code().get()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![235, 250]);
}

fn imap_body(text: &str) -> imap::CommandBody {
    imap::Command::parse(&Bytes::copy_from_slice(format!("x {text}").as_bytes()))
        .unwrap()
        .body
}

#[test]
fn imap_require_tls_listener_with_our_client() {
    let config = |require_tls| {
        let mut c = imap::ServerConfig::new(ServerTls::Rustls(server_tls()));
        c.require_tls = require_tls;
        c.auth_mechanisms = vec!["PLAIN".into()];
        Arc::new(c)
    };
    // Server role in cleartext, with and without require_tls: LOGINDISABLED,
    // and LOGIN/AUTHENTICATE are NO [PRIVACYREQUIRED] (RFC 9051 §6.2.3, §7.1).
    for require_tls in [false, true] {
        let mut s = imap::ServerSession::new(config(require_tls)).unwrap();
        let greeting = out(|| s.poll_transmit());
        assert!(greeting.contains(" LOGINDISABLED "), "{greeting}");
        assert!(!greeting.contains("AUTH="), "{greeting}");
        s.handle_input(b"a LOGIN alice secret\r\nb AUTHENTICATE PLAIN\r\nc SELECT INBOX\r\n");
        let o = out(|| s.poll_transmit());
        let want_c = if require_tls {
            "c NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
        } else {
            "c BAD Command not valid before authentication\r\n"
        };
        assert_eq!(
            o,
            format!(
                "a NO [PRIVACYREQUIRED] Authentication requires TLS; use STARTTLS first\r\n\
                 b NO [PRIVACYREQUIRED] Authentication requires TLS; use STARTTLS first\r\n{want_c}"
            )
        );
        assert!(events!(s)
            .iter()
            .all(|e| matches!(e, imap::ServerEvent::Refused(_))));
    }
    // Both roles over rustls.
    let mut s = imap::ServerSession::new(config(true)).unwrap();
    let c = imap::ClientConfig::new(TlsPolicy::StartTlsRequired, rustls_client());
    let mut c = imap::ClientSession::new(Arc::new(c)).unwrap();
    flush!(c, s);
    assert!(events!(c).iter().any(|e| matches!(
        e,
        imap::ClientEvent::Ready {
            trust: Trust::Tls,
            ..
        }
    )));
    assert!(c
        .capabilities()
        .is_some_and(|k| !k.login_disabled() && k.contains("AUTH=PLAIN")));
    events!(s);
    c.send(imap_body("LOGIN alice secret")).unwrap();
    flush!(c, s);
    assert!(matches!(
        events!(s).as_slice(),
        [imap::ServerEvent::Command(imap::Command {
            body: imap::CommandBody::Login { .. },
            ..
        })]
    ));
    assert_eq!(s.trust(), Trust::Tls);
    s.accept().unwrap();
    assert!(s.is_authenticated());
}

fn pop3_cmd(s: &str) -> pop3::Command {
    pop3::Command::parse(&Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

#[test]
fn pop3_require_tls_listener_with_our_client() {
    let config = |require_tls| {
        let mut c = pop3::ServerConfig::new(ServerTls::Rustls(server_tls()));
        c.require_tls = require_tls;
        c.sasl_mechanisms = vec!["PLAIN".into()];
        Arc::new(c)
    };
    // Server role in cleartext: USER, PASS, APOP and AUTH are -ERR [AUTH]
    // (RFC 3206 §4: authentication in violation of policy) by default;
    // with require_tls everything but CAPA, STLS and QUIT is.
    for require_tls in [false, true] {
        let mut s = pop3::ServerSession::new(config(require_tls)).unwrap();
        out(|| s.poll_transmit());
        let want = if require_tls {
            "-ERR [AUTH] Use STLS first\r\n"
        } else {
            "-ERR [AUTH] Authentication requires TLS; use STLS first\r\n"
        };
        for cmd in [
            "USER alice",
            "PASS secret",
            "APOP alice c4c9334bac560ecc979e58001b3e22fb",
            "AUTH PLAIN",
        ] {
            s.handle_input(format!("{cmd}\r\n").as_bytes());
            assert_eq!(out(|| s.poll_transmit()), want, "{cmd}");
        }
        s.handle_input(b"CAPA\r\n");
        let capa = out(|| s.poll_transmit());
        assert!(
            !capa.contains("\r\nUSER\r\n") && !capa.contains("SASL"),
            "{capa}"
        );
        assert!(events!(s)
            .iter()
            .all(|e| matches!(e, pop3::ServerEvent::Refused(_))));
    }
    // Both roles over rustls.
    let mut s = pop3::ServerSession::new(config(true)).unwrap();
    let c = pop3::ClientConfig::new(TlsPolicy::StartTlsRequired, rustls_client());
    let mut c = pop3::ClientSession::new(Arc::new(c)).unwrap();
    flush!(c, s);
    assert!(events!(c).iter().any(|e| matches!(
        e,
        pop3::ClientEvent::Ready {
            trust: Trust::Tls,
            ..
        }
    )));
    events!(s);
    c.send(pop3_cmd("USER alice")).unwrap();
    flush!(c, s);
    assert!(matches!(
        events!(s).as_slice(),
        [pop3::ServerEvent::Command(pop3::Command::User { .. })]
    ));
    assert_eq!(s.trust(), Trust::Tls);
    s.accept().unwrap();
    flush!(c, s);
    c.send(pop3_cmd("PASS secret")).unwrap();
    flush!(c, s);
    events!(s);
    s.accept().unwrap();
    assert!(s.is_authenticated());
}
