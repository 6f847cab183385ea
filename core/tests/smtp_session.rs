//! SMTP sessions end to end: in-memory client/server pairs through real
//! rustls, split invariance, and every threat class of `shared/threats.md`
//! that applies to SMTP, in the role it targets.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{client_tls, localhost, pump, server_tls, Peer, Split};
use starttls::smtp::{
    ClientConfig, ClientEvent, ClientSession, Command, ServerConfig, ServerEvent, ServerSession,
};
use starttls::{
    ClientTls, Error, FramingError, InjectionPolicy, ServerTls, Step, TlsErrorKind, TlsInfo,
    TlsPolicy, TlsRefusal, Trust, UpgradeEvent, UsageError,
};

// ---------------------------------------------------------------- helpers

fn server_config(f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new("mx.test", ServerTls::Rustls(server_tls()));
    c.auth_mechanisms = vec!["PLAIN".into()];
    f(&mut c);
    Arc::new(c)
}

fn client_config(policy: TlsPolicy, f: impl FnOnce(&mut ClientConfig)) -> Arc<ClientConfig> {
    let mut c = ClientConfig::new(
        "client.test",
        policy,
        ClientTls::Rustls {
            config: client_tls(),
            server_name: localhost(),
        },
    );
    f(&mut c);
    Arc::new(c)
}

fn drain_out(t: &mut dyn FnMut() -> Option<Bytes>) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(b) = t() {
        v.extend_from_slice(&b);
    }
    v
}

fn out_server(s: &mut ServerSession) -> String {
    String::from_utf8_lossy(&drain_out(&mut || s.poll_transmit())).into_owned()
}

fn out_client(s: &mut ClientSession) -> String {
    String::from_utf8_lossy(&drain_out(&mut || s.poll_transmit())).into_owned()
}

fn server_events(s: &mut ServerSession) -> Vec<ServerEvent> {
    let mut v = Vec::new();
    while let Some(e) = s.poll_event().expect("server session failed") {
        v.push(e);
    }
    v
}

/// Events until the error; returns both.
fn client_events(s: &mut ClientSession) -> (Vec<ClientEvent>, Option<Error>) {
    let mut v = Vec::new();
    loop {
        match s.poll_event() {
            Ok(Some(e)) => v.push(e),
            Ok(None) => return (v, None),
            Err(e) => return (v, Some(e)),
        }
    }
}

/// A cleartext server with the greeting already taken.
fn plain_server(f: impl FnOnce(&mut ServerConfig)) -> ServerSession {
    let mut s = ServerSession::new(server_config(f)).unwrap();
    let greeting = out_server(&mut s);
    assert_eq!(greeting, "220 mx.test ESMTP\r\n");
    s
}

/// A client fed a greeting and an EHLO reply; returns it with what it sent.
fn client_after_ehlo(
    policy: TlsPolicy,
    ehlo_reply: &str,
) -> (ClientSession, Vec<ClientEvent>, Option<Error>, String) {
    let mut c = ClientSession::new(client_config(policy, |_| {})).unwrap();
    c.handle_input(b"220 mx.test ESMTP\r\n");
    let mut sent = out_client(&mut c);
    assert_eq!(sent, "EHLO client.test\r\n");
    c.handle_input(ehlo_reply.as_bytes());
    let (ev, err) = client_events(&mut c);
    sent.push_str(&out_client(&mut c));
    (c, ev, err, sent)
}

/// Server-side application used in pairs: accepts everything, records the
/// message.
struct ServerApp {
    s: ServerSession,
    message: Vec<u8>,
}

impl Peer for ServerApp {
    fn input(&mut self, d: &[u8]) {
        self.s.handle_input(d)
    }
    fn transmit(&mut self) -> Option<Bytes> {
        self.s.poll_transmit()
    }
    fn drive(&mut self, log: &mut Vec<String>) -> Option<Error> {
        loop {
            match self.s.poll_event() {
                Ok(Some(e)) => {
                    log.push(format!("{:?} {e:?}", self.s.trust()));
                    match e {
                        ServerEvent::Command(Command::Bdat { .. }) => {}
                        ServerEvent::Command(_)
                        | ServerEvent::MessageEnd
                        | ServerEvent::ChunkEnd
                        | ServerEvent::AuthResponse(_) => self.s.accept().unwrap(),
                        ServerEvent::MessageData(p) => self.message.extend_from_slice(&p),
                        _ => {}
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }
}

/// Client-side application: on Ready sends one message, then QUIT.
struct ClientApp {
    c: ClientSession,
    body: &'static [u8],
    pipelined: bool,
}

impl Peer for ClientApp {
    fn input(&mut self, d: &[u8]) {
        self.c.handle_input(d)
    }
    fn transmit(&mut self) -> Option<Bytes> {
        self.c.poll_transmit()
    }
    fn drive(&mut self, log: &mut Vec<String>) -> Option<Error> {
        loop {
            match self.c.poll_event() {
                Ok(Some(e)) => {
                    log.push(format!("{e:?}"));
                    match e {
                        ClientEvent::Ready { .. } => {
                            let mail =
                                Command::parse(&Bytes::from_static(b"MAIL FROM:<a@client.test>"))
                                    .unwrap();
                            let rcpt = Command::parse(&Bytes::from_static(b"RCPT TO:<b@mx.test>"))
                                .unwrap();
                            self.c.send(mail).unwrap();
                            if self.pipelined {
                                self.c.send(rcpt).unwrap();
                                self.c.send(Command::Data).unwrap();
                            } else {
                                self.pipelined = false;
                            }
                        }
                        ClientEvent::Reply { to: "MAIL", .. } if !self.pipelined => {
                            let rcpt = Command::parse(&Bytes::from_static(b"RCPT TO:<b@mx.test>"))
                                .unwrap();
                            self.c.send(rcpt).unwrap();
                        }
                        ClientEvent::Reply { to: "RCPT", .. } if !self.pipelined => {
                            self.c.send(Command::Data).unwrap();
                        }
                        ClientEvent::Reply { to: "DATA", reply } if reply.code().get() == 354 => {
                            self.c.send_data(self.body).unwrap();
                            self.c.finish_data().unwrap();
                        }
                        ClientEvent::Reply {
                            to: "end of data", ..
                        } => self.c.send(Command::Quit).unwrap(),
                        _ => {}
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }
}

const BODY: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nlast line\r\n";

fn run_pair(
    policy: TlsPolicy,
    implicit_server: bool,
    split: Split,
) -> (Vec<String>, Vec<String>, Vec<u8>) {
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|c| c.implicit_tls = implicit_server)).unwrap(),
        message: Vec::new(),
    };
    let mut client = ClientApp {
        c: ClientSession::new(client_config(policy, |_| {})).unwrap(),
        body: BODY,
        pipelined: true,
    };
    let (lc, ls) = pump(&mut client, &mut server, split);
    (lc, ls, server.message)
}

// ---------------------------------------------------------------- clean sessions

#[test]
fn starttls_session_through_rustls() {
    let (lc, ls, message) = run_pair(TlsPolicy::StartTlsRequired, false, Split::Whole);
    let joined = lc.join("\n");
    assert!(!joined.contains("ERROR"), "{joined}");
    // Cleartext capabilities offered STARTTLS and no AUTH; over TLS the
    // reverse, and the client was told each one's trust level.
    let caps: Vec<&String> = lc
        .iter()
        .filter(|l| l.starts_with("Capabilities"))
        .collect();
    assert_eq!(caps.len(), 2, "{joined}");
    assert!(caps[0].contains("StartTls") && caps[0].contains("trust: Cleartext"));
    assert!(!caps[0].contains("Auth("));
    assert!(!caps[1].contains("StartTls") && caps[1].contains("trust: Tls"));
    assert!(caps[1].contains("Auth("));
    assert!(lc.iter().any(|l| l == "Ready { trust: Tls }"), "{joined}");
    assert!(lc.iter().any(|l| l.contains("TlsEstablished")));
    // The server saw the envelope only over TLS, and got the body unstuffed.
    assert!(
        ls.iter().any(|l| l.starts_with("Tls Command(Mail")),
        "{ls:?}"
    );
    assert!(
        !ls.iter().any(|l| l.starts_with("Cleartext Command(")),
        "{ls:?}"
    );
    assert_eq!(message, BODY, "dot-stuffing must be transparent end to end");
    assert!(lc.last().unwrap().contains("to: \"QUIT\""), "{joined}");
}

#[test]
fn implicit_tls_session() {
    let (lc, ls, message) = run_pair(TlsPolicy::Implicit, true, Split::Whole);
    let joined = lc.join("\n");
    assert!(!joined.contains("ERROR"), "{joined}");
    // The greeting itself came over TLS; STARTTLS was never offered.
    assert!(lc[0].contains("TlsEstablished"), "{joined}");
    assert!(
        lc[1].starts_with("Greeting") && lc[1].contains("trust: Tls"),
        "{joined}"
    );
    assert!(!joined.contains("StartTls"));
    assert!(ls.iter().all(|l| !l.starts_with("Cleartext")), "{ls:?}");
    assert_eq!(message, BODY, "dot-stuffing must be transparent end to end");
}

#[test]
fn same_events_for_every_split() {
    for (policy, implicit) in [
        (TlsPolicy::StartTlsRequired, false),
        (TlsPolicy::Implicit, true),
    ] {
        let reference = run_pair(policy, implicit, Split::Whole);
        for split in Split::all() {
            let got = run_pair(policy, implicit, split);
            assert_eq!(got.0, reference.0, "client events differ for {split:?}");
            assert_eq!(got.1, reference.1, "server events differ for {split:?}");
            assert_eq!(got.2, reference.2, "message differs for {split:?}");
        }
    }
}

// ---------------------------------------------------------------- threat 1: command injection

#[test]
fn injected_command_after_starttls_is_discarded_and_reported() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"EHLO client.test\r\n");
    out_server(&mut s);
    server_events(&mut s);
    // The classic CVE-2011-0411 probe: one segment, STARTTLS and a command.
    s.handle_input(b"STARTTLS\r\nRSET\r\n");
    assert_eq!(out_server(&mut s), "220 2.0.0 Ready to start TLS\r\n");
    let ev = server_events(&mut s);
    assert_eq!(
        ev,
        vec![
            ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted),
            ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes: 6 }),
        ]
    );
    // Complete the handshake with a real TLS client: RSET was never answered
    // and the session wants a fresh EHLO.
    let mut tls = rustls::ClientConnection::new(client_tls(), localhost()).unwrap();
    let replies = tls_exchange(&mut s, &mut tls, b"MAIL FROM:<a@b.test>\r\n");
    assert_eq!(replies, "503 5.5.1 Send HELO/EHLO first\r\n");
}

#[test]
fn injected_bytes_in_a_later_read_before_the_220_is_sent_are_discarded() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"EHLO client.test\r\n");
    out_server(&mut s);
    s.handle_input(b"STARTTLS\r\n");
    // The 220 has not been taken for sending: nothing that arrives now can
    // be a ClientHello.
    s.handle_input(b"MAIL FROM:<x@y.test>\r\n");
    s.handle_input(b"RCPT TO:<z@y.test>\r\n");
    assert_eq!(out_server(&mut s), "220 2.0.0 Ready to start TLS\r\n");
    let ev = server_events(&mut s);
    assert!(
        ev.contains(&ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded {
            bytes: 42
        })),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, ServerEvent::Command(_))));
}

#[test]
fn injection_with_close_policy_fails_and_withholds_the_220() {
    let mut s = plain_server(|c| c.injection = InjectionPolicy::Fail);
    s.handle_input(b"EHLO client.test\r\n");
    out_server(&mut s);
    server_events(&mut s);
    s.handle_input(b"STARTTLS\r\nRSET\r\n");
    assert_eq!(out_server(&mut s), "");
    let mut got = None;
    while got.is_none() {
        match s.poll_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error"),
            Err(e) => got = Some(e),
        }
    }
    assert_eq!(got, Some(Error::CommandInjection));
    assert!(s.is_closed());
}

#[test]
fn partial_line_before_the_cut_is_not_completed_by_tls_bytes() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"EHLO client.test\r\nSTARTTLS\r\nMAIL FROM:<a@b.t");
    assert!(out_server(&mut s).ends_with("220 2.0.0 Ready to start TLS\r\n"));
    let ev = server_events(&mut s);
    assert!(
        ev.contains(&ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded {
            bytes: 16
        })),
        "{ev:?}"
    );
    let mut tls = rustls::ClientConnection::new(client_tls(), localhost()).unwrap();
    // Over TLS the client "completes" the line: it is a line of its own, and
    // not a command.
    let replies = tls_exchange(&mut s, &mut tls, b"est>\r\n");
    assert!(replies.starts_with("500 5.5.1"), "{replies}");
    assert!(!server_events(&mut s)
        .iter()
        .any(|e| matches!(e, ServerEvent::Command(_))));
}

/// Runs the handshake between a server session and a rustls client, sends
/// `plaintext` over TLS and returns the server's decrypted answer.
fn tls_exchange(
    s: &mut ServerSession,
    tls: &mut rustls::ClientConnection,
    plaintext: &[u8],
) -> String {
    use std::io::{Read, Write};
    tls.writer().write_all(plaintext).unwrap();
    let mut answer = Vec::new();
    for _ in 0..20 {
        let mut buf = Vec::new();
        tls.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            s.handle_input(&buf);
        }
        let out = drain_out(&mut || s.poll_transmit());
        if !out.is_empty() {
            tls.read_tls(&mut &out[..]).unwrap();
            tls.process_new_packets().unwrap();
            let _ = tls.reader().read_to_end(&mut answer);
        }
        if buf.is_empty() && out.is_empty() {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

// ---------------------------------------------------------------- threat 2: response injection

#[test]
fn response_injection_in_the_same_read_fails_the_client() {
    let (mut c, _, err, sent) = client_after_ehlo(
        TlsPolicy::StartTlsRequired,
        "250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
    );
    assert_eq!(err, None);
    assert_eq!(sent, "EHLO client.test\r\nSTARTTLS\r\n");
    c.handle_input(b"220 Ready\r\n250-mx.test\r\n250 AUTH LOGIN\r\n");
    let (_, err) = client_events(&mut c);
    assert_eq!(err, Some(Error::ResponseInjection));
    // No ClientHello was produced for a session under attack.
    assert_eq!(out_client(&mut c), "");
    assert!(c.is_closed());
}

#[test]
fn response_injection_before_the_client_hello_leaves_fails_the_client() {
    let (mut c, _, _, _) = client_after_ehlo(
        TlsPolicy::StartTlsRequired,
        "250-mx.test\r\n250 STARTTLS\r\n",
    );
    c.handle_input(b"220 Ready\r\n");
    // The ClientHello is queued but not yet taken: the server cannot have
    // answered it.
    c.handle_input(b"250 AUTH LOGIN\r\n");
    let (_, err) = client_events(&mut c);
    assert_eq!(err, Some(Error::ResponseInjection));
}

#[test]
fn injection_gives_the_same_events_however_it_is_split() {
    // Found by the transcript suite: whether the injected bytes arrive in
    // the same read as the positive reply or later must not matter.
    let injected = b"220 Ready\r\n250-mx.test\r\n250 AUTH LOGIN\r\n";
    let mut seen = Vec::new();
    for split in Split::all() {
        let (mut c, _, _, _) = client_after_ehlo(
            TlsPolicy::StartTlsRequired,
            "250-mx.test\r\n250 STARTTLS\r\n",
        );
        let mut rng = split.seed();
        for chunk in split.chunks(injected, &mut rng) {
            c.handle_input(&chunk);
        }
        let (ev, err) = client_events(&mut c);
        assert_eq!(
            out_client(&mut c),
            "",
            "the ClientHello is withdrawn ({split:?})"
        );
        seen.push((ev, err));
    }
    assert_eq!(
        seen[0],
        (
            vec![ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted)],
            Some(Error::ResponseInjection)
        )
    );
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:#?}");

    let mut seen = Vec::new();
    for split in Split::all() {
        let mut s = plain_server(|c| c.injection = InjectionPolicy::Fail);
        let mut rng = split.seed();
        for chunk in split.chunks(b"EHLO c.test\r\nSTARTTLS\r\nRSET\r\n", &mut rng) {
            s.handle_input(&chunk);
        }
        let out = out_server(&mut s);
        let mut ev = Vec::new();
        let err = loop {
            match s.poll_event() {
                Ok(Some(e)) => ev.push(e),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        seen.push((out, ev, err));
    }
    assert_eq!(seen[0].2, Some(Error::CommandInjection));
    assert!(!seen[0].0.contains("220 2.0.0"), "the 220 is withdrawn");
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:#?}");
}

#[test]
fn plaintext_after_the_client_hello_is_a_tls_error() {
    let (mut c, _, _, _) = client_after_ehlo(
        TlsPolicy::StartTlsRequired,
        "250-mx.test\r\n250 STARTTLS\r\n",
    );
    c.handle_input(b"220 Ready\r\n");
    assert!(!out_client(&mut c).is_empty()); // ClientHello
    c.handle_input(b"250-mx.test\r\n250 AUTH LOGIN\r\n");
    let (ev, err) = client_events(&mut c);
    assert!(
        matches!(err, Some(Error::Tls(ref e)) if e.kind == TlsErrorKind::PeerMisbehaved),
        "{err:?}"
    );
    assert!(!ev
        .iter()
        .any(|e| matches!(e, ClientEvent::Capabilities(_) | ClientEvent::Ready { .. })));
}

// ---------------------------------------------------------------- threat 3: stripping and downgrade

fn assert_only_negotiation_sent(sent: &str) {
    for line in sent.split_terminator("\r\n") {
        assert!(
            ["EHLO client.test", "STARTTLS", "QUIT"].contains(&line),
            "sent {line:?} in cleartext"
        );
    }
}

#[test]
fn required_policy_fails_when_starttls_is_not_offered() {
    let (c, ev, err, sent) = client_after_ehlo(
        TlsPolicy::StartTlsRequired,
        "250-mx.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
    );
    assert_eq!(
        err,
        Some(Error::TlsRequired {
            step: Step::Capabilities,
            reason: TlsRefusal::NotOffered
        })
    );
    assert!(
        matches!(&ev[..], [ClientEvent::Greeting(_), ClientEvent::Capabilities(c)] if c.trust == Trust::Cleartext)
    );
    assert_eq!(sent, "EHLO client.test\r\nQUIT\r\n");
    assert!(!c.is_ready());
}

#[test]
fn required_policy_fails_on_every_kind_of_refusal() {
    for (reply, reason) in [
        (
            "454 4.7.0 TLS not available\r\n",
            TlsRefusal::Refused {
                status: "454".into(),
            },
        ),
        (
            "502 5.5.1 Not implemented\r\n",
            TlsRefusal::Refused {
                status: "502".into(),
            },
        ),
        (
            "554 5.7.0 No\r\n",
            TlsRefusal::Refused {
                status: "554".into(),
            },
        ),
        (
            "501 5.5.4 Syntax\r\n",
            TlsRefusal::Refused {
                status: "501".into(),
            },
        ),
        (
            "354 Go ahead\r\n",
            TlsRefusal::OddReply {
                status: "354".into(),
            },
        ),
        (
            "221 Bye\r\n",
            TlsRefusal::OddReply {
                status: "221".into(),
            },
        ),
        (
            "250 Ok\r\n",
            TlsRefusal::OddReply {
                status: "250".into(),
            },
        ),
    ] {
        let (mut c, _, _, mut sent) = client_after_ehlo(
            TlsPolicy::StartTlsRequired,
            "250-mx.test\r\n250 STARTTLS\r\n",
        );
        c.handle_input(reply.as_bytes());
        let (_, err) = client_events(&mut c);
        sent.push_str(&out_client(&mut c));
        assert_eq!(
            err,
            Some(Error::TlsRequired {
                step: Step::StartTls,
                reason
            }),
            "for {reply:?}"
        );
        assert_only_negotiation_sent(&sent);
        assert!(c.is_closed());
    }
}

#[test]
fn required_policy_fails_when_ehlo_is_refused() {
    let (_, _, err, sent) = client_after_ehlo(
        TlsPolicy::StartTlsRequired,
        "502 5.5.1 EHLO not implemented\r\n",
    );
    assert_eq!(
        err,
        Some(Error::TlsRequired {
            step: Step::Capabilities,
            reason: TlsRefusal::NotExtended
        })
    );
    assert_eq!(sent, "EHLO client.test\r\nQUIT\r\n");
}

#[test]
fn refused_greeting_fails_closed() {
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    c.handle_input(b"554 5.3.2 go away\r\n");
    let (ev, err) = client_events(&mut c);
    assert_eq!(
        err,
        Some(Error::Refused {
            step: Step::Greeting,
            status: "554".into()
        })
    );
    assert!(matches!(&ev[..], [ClientEvent::Greeting(g)] if g.trust == Trust::Cleartext));
    assert_eq!(out_client(&mut c), "QUIT\r\n");
}

#[test]
fn untrusted_certificate_fails_the_handshake() {
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|_| {})).unwrap(),
        message: Vec::new(),
    };
    let mut cfg = ClientConfig::new(
        "client.test",
        TlsPolicy::StartTlsRequired,
        ClientTls::Rustls {
            config: common::client_tls_trusting_nothing(),
            server_name: localhost(),
        },
    );
    cfg.limits = Default::default();
    let mut client = ClientApp {
        c: ClientSession::new(Arc::new(cfg)).unwrap(),
        body: BODY,
        pipelined: true,
    };
    let (lc, ls) = pump(&mut client, &mut server, Split::Whole);
    let last = lc.last().unwrap();
    assert!(
        last.starts_with("ERROR Tls(TlsError { kind: Certificate"),
        "{lc:?}"
    );
    assert!(!lc.iter().any(|l| l.starts_with("Ready")));
    assert!(!ls.iter().any(|l| l.contains("Command(")), "{ls:?}");
}

#[test]
fn wrong_server_name_fails_the_handshake() {
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|_| {})).unwrap(),
        message: Vec::new(),
    };
    let cfg = ClientConfig::new(
        "client.test",
        TlsPolicy::StartTlsRequired,
        ClientTls::Rustls {
            config: client_tls(),
            server_name: rustls::pki_types::ServerName::try_from("mail.example.org").unwrap(),
        },
    );
    let mut client = ClientApp {
        c: ClientSession::new(Arc::new(cfg)).unwrap(),
        body: BODY,
        pipelined: true,
    };
    let (lc, _) = pump(&mut client, &mut server, Split::Whole);
    assert!(
        lc.last()
            .unwrap()
            .starts_with("ERROR Tls(TlsError { kind: Certificate"),
        "{lc:?}"
    );
}

#[test]
fn opportunistic_policy_goes_on_in_cleartext_and_says_so() {
    let (mut c, ev, err, _) = client_after_ehlo(
        TlsPolicy::Opportunistic,
        "250-mx.test\r\n250 PIPELINING\r\n",
    );
    assert_eq!(err, None);
    assert_eq!(
        ev.last(),
        Some(&ClientEvent::Ready {
            trust: Trust::Cleartext
        })
    );
    // Credentials still never go out in cleartext.
    let auth = Command::parse(&Bytes::from_static(b"AUTH PLAIN AGFAYg==")).unwrap();
    assert_eq!(c.send(auth), Err(UsageError::CleartextCredentials));
    c.send(Command::Noop { arg: None }).unwrap();
    assert_eq!(out_client(&mut c), "NOOP\r\n");
    c.handle_input(b"250 2.0.0 Ok\r\n");
    let (ev, _) = client_events(&mut c);
    assert!(
        matches!(&ev[..], [ClientEvent::Reply { to: "NOOP", reply }] if reply.trust == Trust::Cleartext)
    );
}

#[test]
fn opportunistic_policy_accepts_a_refusal_but_not_an_odd_reply() {
    let (mut c, _, _, _) =
        client_after_ehlo(TlsPolicy::Opportunistic, "250-mx.test\r\n250 STARTTLS\r\n");
    c.handle_input(b"454 4.7.0 TLS not available\r\n");
    let (ev, err) = client_events(&mut c);
    assert_eq!(err, None);
    // The refusal is reported, with its trust level, before going on.
    assert!(
        matches!(&ev[..], [ClientEvent::Reply { to: "STARTTLS", reply }, ClientEvent::Ready { trust: Trust::Cleartext }] if reply.code().get() == 454 && reply.trust == Trust::Cleartext),
        "{ev:?}"
    );

    let (mut c, _, _, _) =
        client_after_ehlo(TlsPolicy::Opportunistic, "250-mx.test\r\n250 STARTTLS\r\n");
    c.handle_input(b"354 go ahead\r\n");
    let (_, err) = client_events(&mut c);
    assert!(
        matches!(
            err,
            Some(Error::UnexpectedReply {
                step: Step::StartTls,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn opportunistic_policy_falls_back_to_helo_for_non_esmtp_servers() {
    let (mut c, _, err, sent) = client_after_ehlo(TlsPolicy::Opportunistic, "500 5.5.1 what?\r\n");
    assert_eq!(err, None);
    assert_eq!(sent, "EHLO client.test\r\nHELO client.test\r\n");
    c.handle_input(b"250 mx.test\r\n");
    let (ev, _) = client_events(&mut c);
    assert_eq!(
        ev,
        vec![ClientEvent::Ready {
            trust: Trust::Cleartext
        }]
    );
}

#[test]
fn the_client_cannot_send_before_ready_nor_upgrade_by_hand() {
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    assert_eq!(c.send(Command::Rset), Err(UsageError::NotReady));
    let (mut c, _, _, _) = client_after_ehlo(
        TlsPolicy::Opportunistic,
        "250-mx.test\r\n250 PIPELINING\r\n",
    );
    assert_eq!(
        c.send(Command::StartTls),
        Err(UsageError::ReservedCommand("STARTTLS"))
    );
}

// ---------------------------------------------------------------- threat 5: state across the upgrade

#[test]
fn nothing_from_cleartext_survives_on_the_server() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n");
    let ev = server_events(&mut s);
    assert!(matches!(ev[1], ServerEvent::Command(Command::Mail { .. })));
    s.accept().unwrap();
    s.handle_input(b"STARTTLS\r\n");
    let out = out_server(&mut s);
    assert!(
        out.ends_with("250 2.1.0 Ok\r\n220 2.0.0 Ready to start TLS\r\n"),
        "{out}"
    );
    let ev = server_events(&mut s);
    assert_eq!(ev[0], ServerEvent::TransactionReset);
    let mut tls = rustls::ClientConnection::new(client_tls(), localhost()).unwrap();
    // No EHLO over TLS yet, and the cleartext MAIL is forgotten.
    let r = tls_exchange(&mut s, &mut tls, b"RCPT TO:<c@d.test>\r\n");
    assert_eq!(r, "503 5.5.1 Need MAIL command\r\n");
    let r = tls_exchange(&mut s, &mut tls, b"MAIL FROM:<a@b.test>\r\n");
    assert_eq!(r, "503 5.5.1 Send HELO/EHLO first\r\n");
    let r = tls_exchange(&mut s, &mut tls, b"EHLO client.test\r\n");
    assert!(
        r.contains("AUTH PLAIN\r\n") && !r.contains("STARTTLS"),
        "{r}"
    );
    let r = tls_exchange(&mut s, &mut tls, b"STARTTLS\r\n");
    assert_eq!(r, "503 5.5.1 TLS already active\r\n");
    assert_eq!(s.trust(), Trust::Tls);
}

#[test]
fn client_capabilities_are_replaced_after_tls() {
    let (_, ls, _) = run_pair(TlsPolicy::StartTlsRequired, false, Split::Whole);
    assert!(!ls.is_empty());
    let mut client =
        ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|_| {})).unwrap(),
        message: Vec::new(),
    };
    struct Idle<'a>(&'a mut ClientSession);
    impl Peer for Idle<'_> {
        fn input(&mut self, d: &[u8]) {
            self.0.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.0.poll_transmit()
        }
        fn drive(&mut self, log: &mut Vec<String>) -> Option<Error> {
            loop {
                match self.0.poll_event() {
                    Ok(Some(e)) => log.push(format!("{e:?}")),
                    Ok(None) => return None,
                    Err(e) => return Some(e),
                }
            }
        }
    }
    pump(&mut Idle(&mut client), &mut server, Split::Whole);
    let caps = client.capabilities().unwrap();
    assert!(!caps.has_starttls(), "cleartext capabilities survived");
    assert!(caps.auth_mechanisms().any(|m| m.as_ref() == b"PLAIN"));
}

// ---------------------------------------------------------------- threat 6: trust levels

#[test]
fn every_peer_text_carries_its_trust_level() {
    let (lc, _, _) = run_pair(TlsPolicy::StartTlsRequired, false, Split::Whole);
    let tls_at = lc
        .iter()
        .position(|l| l.contains("TlsEstablished"))
        .unwrap();
    for (i, l) in lc.iter().enumerate() {
        if l.starts_with("Greeting") || l.starts_with("Capabilities") || l.starts_with("Reply") {
            let want = if i < tls_at {
                "trust: Cleartext"
            } else {
                "trust: Tls"
            };
            assert!(l.contains(want), "line {i}: {l}");
        }
    }
}

// ---------------------------------------------------------------- server policy

#[test]
fn require_tls_refuses_everything_but_negotiation_in_cleartext() {
    let mut s = plain_server(|c| c.require_tls = true);
    s.handle_input(b"EHLO c.test\r\n");
    let ehlo = out_server(&mut s);
    assert!(
        ehlo.contains("250-STARTTLS\r\n") || ehlo.contains("250 STARTTLS\r\n"),
        "{ehlo}"
    );
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    for cmd in [
        "MAIL FROM:<a@b.test>",
        "RCPT TO:<a@b.test>",
        "DATA",
        "AUTH PLAIN",
        "VRFY a",
        "EXPN a",
        // RFC 3030 §2: a refused chunk is still read; the STARTTLS in it is data.
        "BDAT 10 LAST\r\nSTARTTLS",
    ] {
        s.handle_input(format!("{cmd}\r\n").as_bytes());
        assert_eq!(
            out_server(&mut s),
            "530 5.7.0 Must issue a STARTTLS command first\r\n",
            "{cmd}"
        );
    }
    for (cmd, want) in [
        ("NOOP", "250 2.0.0 Ok\r\n"),
        ("RSET", "250 2.0.0 Ok\r\n"),
        ("QUIT", "221 2.0.0 Bye\r\n"),
    ] {
        s.handle_input(format!("{cmd}\r\n").as_bytes());
        assert_eq!(out_server(&mut s), want, "{cmd}");
    }
    assert!(s.is_closed());
    let ev = server_events(&mut s);
    assert!(
        !ev.iter()
            .any(|e| matches!(e, ServerEvent::Command(_) | ServerEvent::Upgrade(_))),
        "{ev:?}"
    );
}

#[test]
fn auth_is_refused_in_cleartext_by_default() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"EHLO c.test\r\nAUTH PLAIN AGFAYg==\r\n");
    let out = out_server(&mut s);
    assert!(
        out.ends_with("538 5.7.11 Encryption required for requested authentication mechanism\r\n"),
        "{out}"
    );
}

#[test]
fn require_tls_without_tls_is_a_configuration_error() {
    let mut c = ServerConfig::new("mx.test", ServerTls::None);
    c.require_tls = true;
    assert_eq!(
        ServerSession::new(Arc::new(c)).err(),
        Some(starttls::ConfigError::TlsRequiredWithoutTls)
    );
}

#[test]
fn no_starttls_without_tls_configured() {
    let mut s =
        ServerSession::new(Arc::new(ServerConfig::new("mx.test", ServerTls::None))).unwrap();
    out_server(&mut s);
    s.handle_input(b"EHLO c.test\r\n");
    let ehlo = out_server(&mut s);
    assert!(
        ehlo.starts_with("250-mx.test\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    s.handle_input(b"STARTTLS\r\n");
    assert_eq!(out_server(&mut s), "502 5.5.1 STARTTLS not available\r\n");
}

// ---------------------------------------------------------------- pipelining, data, chunking

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut s = plain_server(|c| c.tls = ServerTls::None);
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\nDATA\r\n");
    assert!(matches!(s.poll_event(), Ok(Some(ServerEvent::Hello(_)))));
    assert!(matches!(
        s.poll_event(),
        Ok(Some(ServerEvent::Command(Command::Mail { .. })))
    ));
    // The next command waits for the application's answer.
    assert_eq!(s.poll_event(), Ok(None));
    assert!(s.is_waiting_for_reply());
    s.accept().unwrap();
    assert!(matches!(
        s.poll_event(),
        Ok(Some(ServerEvent::Command(Command::Rcpt { .. })))
    ));
    s.reject(550, None, "no such user").unwrap();
    assert!(matches!(
        s.poll_event(),
        Ok(Some(ServerEvent::Command(Command::Rcpt { .. })))
    ));
    s.accept().unwrap();
    assert_eq!(
        s.poll_event(),
        Ok(Some(ServerEvent::Command(Command::Data)))
    );
    assert_eq!(
        s.reply(starttls::smtp::Reply::new(250, None, &[b"no"])),
        Err(UsageError::ReplyDoesNotFit {
            command: "DATA",
            code: 250
        })
    );
    s.accept().unwrap();
    let out = out_server(&mut s);
    assert!(out.ends_with("250 2.1.0 Ok\r\n550 no such user\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"), "{out}");
}

fn server_in_data(extra: &str) -> ServerSession {
    let mut s = plain_server(|c| c.tls = ServerTls::None);
    s.handle_input(
        format!("EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n{extra}")
            .as_bytes(),
    );
    for _ in 0..3 {
        while let Ok(Some(e)) = s.poll_event() {
            if matches!(e, ServerEvent::Command(_)) {
                s.accept().unwrap();
            }
        }
    }
    out_server(&mut s);
    s
}

#[test]
fn data_is_unstuffed_and_ends_only_at_crlf_dot_crlf() {
    let mut s = server_in_data("");
    s.handle_input(b"a\r\n..b\r\n.\r\n");
    let ev = server_events(&mut s);
    assert_eq!(
        ev,
        vec![
            ServerEvent::MessageData(Bytes::from_static(b"a\r\n")),
            ServerEvent::MessageData(Bytes::from_static(b".b\r\n")),
            ServerEvent::MessageEnd,
        ]
    );
    s.accept().unwrap();
    assert_eq!(out_server(&mut s), "250 2.0.0 Ok: queued\r\n");
}

#[test]
fn smtp_smuggling_end_of_data_variants_are_refused() {
    for body in [
        "a\n.\nMAIL FROM:<evil@x.test>\r\n",
        "a\r\n.\nRCPT TO:<e@x.test>\r\n",
        "a\r.\r\nb\r\n",
    ] {
        let mut s = server_in_data("");
        s.handle_input(body.as_bytes());
        s.handle_input(b".\r\n");
        let ev = server_events(&mut s);
        assert!(
            matches!(
                ev.last(),
                Some(ServerEvent::MessageRejected(
                    FramingError::BareLf | FramingError::BareCr
                ))
            ),
            "{body:?}: {ev:?}"
        );
        assert!(!ev
            .iter()
            .any(|e| matches!(e, ServerEvent::Command(_) | ServerEvent::MessageEnd)));
        assert!(
            out_server(&mut s).starts_with("550 5.6.0 Message refused"),
            "{body:?}"
        );
    }
}

#[test]
fn overlong_data_line_rejects_the_message_but_keeps_the_stream_in_step() {
    let mut s = server_in_data("");
    let long = "x".repeat(5000);
    s.handle_input(format!("ok\r\n{long}\r\nmore\r\n.\r\nNOOP\r\n").as_bytes());
    let ev = server_events(&mut s);
    assert!(
        matches!(
            ev.last(),
            Some(ServerEvent::MessageRejected(FramingError::TooLong {
                limit: 1000
            }))
        ),
        "{ev:?}"
    );
    let out = out_server(&mut s);
    assert!(out.ends_with("\r\n250 2.0.0 Ok\r\n"), "{out}");
}

#[test]
fn data_pieces_do_not_depend_on_the_split() {
    let mut body = String::new();
    for i in 0..3000 {
        body.push_str(&format!(
            "{}line {i}\r\n",
            if i % 7 == 0 { "." } else { "" }
        ));
    }
    body.push_str(".\r\n");
    let reference = {
        let mut s = server_in_data("");
        s.handle_input(body.as_bytes());
        server_events(&mut s)
    };
    assert!(reference.len() > 400);
    let mut rng = 12345u64;
    for split in Split::all() {
        let mut s = server_in_data("");
        for c in split.chunks(body.as_bytes(), &mut rng) {
            s.handle_input(&c);
        }
        assert_eq!(server_events(&mut s), reference, "{split:?}");
    }
}

#[test]
fn bdat_chunks_are_counted_not_parsed() {
    let mut s = plain_server(|c| c.tls = ServerTls::None);
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n");
    server_events(&mut s);
    s.accept().unwrap();
    s.handle_input(b"RCPT TO:<x@mx.test>\r\n");
    server_events(&mut s);
    s.accept().unwrap();
    s.handle_input(b"BDAT 10\r\nQUIT\r\nRSETBDAT 3 LAST\r\nabc");
    let ev = server_events(&mut s);
    assert_eq!(
        ev,
        vec![
            ServerEvent::Command(Command::Bdat {
                size: 10,
                last: false
            }),
            ServerEvent::MessageData(Bytes::from_static(b"QUIT\r\nRSET")),
            ServerEvent::ChunkEnd,
        ]
    );
    s.accept().unwrap();
    let ev = server_events(&mut s);
    assert_eq!(
        ev,
        vec![
            ServerEvent::Command(Command::Bdat {
                size: 3,
                last: true
            }),
            ServerEvent::MessageData(Bytes::from_static(b"abc")),
            ServerEvent::MessageEnd,
        ]
    );
    assert!(!s.is_closed());
}

#[test]
fn bdat_without_a_transaction_is_read_then_refused() {
    let mut s = plain_server(|c| c.tls = ServerTls::None);
    s.handle_input(b"EHLO c.test\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    let out = out_server(&mut s);
    assert!(
        out.ends_with("503 5.5.1 Need MAIL and RCPT before BDAT\r\n250 2.0.0 Ok\r\n"),
        "{out}"
    );
    assert!(!s.is_closed());
}

// ---------------------------------------------------------------- threat 9: robustness of framing

#[test]
fn broken_command_lines_are_refused_and_the_stream_stays_in_step() {
    let mut s = plain_server(|_| {});
    let long = "A".repeat(600);
    s.handle_input(format!("NOOP\nNOOP\r\nNO\rOP\r\nNO\0OP\r\n{long}\r\nNOOP\r\n").as_bytes());
    let out = out_server(&mut s);
    let lines: Vec<&str> = out.split_terminator("\r\n").collect();
    assert_eq!(
        lines,
        vec![
            // "NOOP\nNOOP\r\n" is one line: a bare LF does not end it.
            "500 5.5.2 Syntax error: bare LF (line feed without carriage return)",
            "500 5.5.2 Syntax error: bare CR (carriage return without line feed)",
            "500 5.5.2 Syntax error: NUL octet in a line",
            "500 5.5.2 Line too long",
            "250 2.0.0 Ok",
        ]
    );
}

#[test]
fn too_many_errors_close_the_connection() {
    let mut s = plain_server(|_| {});
    s.handle_input("FOO\r\n".repeat(25).as_bytes());
    let out = out_server(&mut s);
    assert!(
        out.ends_with("421 4.7.0 Too many errors, closing connection\r\n"),
        "{out}"
    );
    assert!(s.is_closed());
}

#[test]
fn gigabytes_without_crlf_use_bounded_memory() {
    let mut s = plain_server(|_| {});
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        s.handle_input(&chunk);
    }
    s.handle_input(b"\r\nNOOP\r\n");
    let out = out_server(&mut s);
    assert_eq!(out, "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
}

#[test]
fn unanswered_pipelining_is_bounded() {
    let mut s = plain_server(|c| c.limits.unauthenticated_buffered_input = 4096);
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n");
    let _ = server_events(&mut s);
    s.handle_input("NOOP\r\n".repeat(1000).as_bytes());
    let mut err = None;
    while let Ok(Some(_)) | Err(_) = s.poll_event().map_err(|e| err = Some(e)) {
        if err.is_some() {
            break;
        }
    }
    assert_eq!(
        err,
        Some(Error::InputBudgetExceeded {
            limit: 4096,
            authenticated: false
        })
    );
}

#[test]
fn client_refuses_broken_replies() {
    for (input, want) in [
        ("220 a\nb\r\n", Error::Framing(FramingError::BareLf)),
        // A client fails at the bare LF itself: it never waits on a broken line.
        ("220 a\n", Error::Framing(FramingError::BareLf)),
        ("220 a\rb\n", Error::Framing(FramingError::BareCr)),
        (
            &*format!("220 {}\r\n", "a".repeat(2000)),
            Error::Framing(FramingError::TooLong { limit: 1000 }),
        ),
    ] {
        let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
        c.handle_input(input.as_bytes());
        assert_eq!(client_events(&mut c).1, Some(want));
    }
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    c.handle_input(b"220-a\r\n250 b\r\n");
    assert!(matches!(
        client_events(&mut c).1,
        Some(Error::Malformed {
            step: Step::Greeting,
            ..
        })
    ));
    // A second reply nobody asked for (threat 5: tampering).
    let mut c = ClientSession::new(client_config(TlsPolicy::Opportunistic, |_| {})).unwrap();
    c.handle_input(b"220 a\r\n250 b\r\n250 c\r\n");
    assert!(matches!(
        client_events(&mut c).1,
        Some(Error::UnexpectedReply { .. })
    ));
}

#[test]
fn a_reply_before_its_command_was_sent_is_forged() {
    // Greeting and an EHLO reply in one read: the EHLO had not even been
    // handed to the caller yet, so no honest server can have answered it
    // (an attacker planting capabilities, threat class 5).
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    c.handle_input(b"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n");
    let (ev, err) = client_events(&mut c);
    assert!(matches!(&ev[..], [ClientEvent::Greeting(_)]), "{ev:?}");
    assert!(
        matches!(&err, Some(Error::UnexpectedReply { step: Step::Capabilities, detail }) if detail.contains("before its command was sent")),
        "{err:?}"
    );
    // The same bytes after the EHLO was taken are a normal conversation.
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    c.handle_input(b"220 mx ESMTP\r\n");
    assert_eq!(out_client(&mut c), "EHLO client.test\r\n");
    c.handle_input(b"250-mx\r\n250 STARTTLS\r\n");
    assert_eq!(client_events(&mut c).1, None);
    assert_eq!(out_client(&mut c), "STARTTLS\r\n");
}

#[test]
fn peer_closing_mid_negotiation_is_an_error() {
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    c.handle_input(b"220 mx ESMTP\r\n250-mx");
    c.handle_eof();
    assert_eq!(
        client_events(&mut c).1,
        Some(Error::PeerClosed {
            step: Step::Capabilities
        })
    );
}

// ---------------------------------------------------------------- secrets

#[test]
fn credentials_never_show_in_debug_output() {
    let mut s = plain_server(|c| c.insecure_auth_in_cleartext = true);
    s.handle_input(b"EHLO c.test\r\nAUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\n");
    let ev = server_events(&mut s);
    let dbg = format!("{ev:?}");
    assert!(
        dbg.contains("Auth") && !dbg.contains("AGFsaWNlAGh1bnRlcjI="),
        "{dbg}"
    );
    s.reply(starttls::smtp::Reply::new(334, None, &[b""]))
        .unwrap();
    s.handle_input(b"c2VjcmV0\r\n");
    let ev = server_events(&mut s);
    assert!(
        matches!(&ev[..], [ServerEvent::AuthResponse(r)] if r.expose().as_ref() == b"c2VjcmV0")
    );
    assert!(!format!("{ev:?}").contains("c2VjcmV0"));
    s.accept().unwrap();
    assert!(s.is_authenticated());
}

// ---------------------------------------------------------------- LMTP

#[test]
fn lmtp_answers_once_per_recipient() {
    let mut s = ServerSession::new(server_config(|c| {
        c.lmtp = true;
        c.tls = ServerTls::None;
    }))
    .unwrap();
    assert_eq!(out_server(&mut s), "220 mx.test LMTP\r\n");
    s.handle_input(b"EHLO c.test\r\n");
    assert_eq!(out_server(&mut s), "500 5.5.1 LMTP requires LHLO\r\n");
    s.handle_input(b"LHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\nRCPT TO:<y@mx.test>\r\nDATA\r\nhi\r\n.\r\n");
    let mut ends = 0;
    for _ in 0..10 {
        while let Ok(Some(e)) = s.poll_event() {
            match e {
                ServerEvent::Command(_) => s.accept().unwrap(),
                ServerEvent::MessageEnd => ends += 1,
                _ => {}
            }
        }
    }
    assert_eq!(ends, 1);
    s.accept().unwrap();
    assert!(s.is_waiting_for_reply());
    s.reject(452, None, "mailbox full").unwrap();
    assert!(!s.is_waiting_for_reply());
    let out = out_server(&mut s);
    assert!(
        out.ends_with("250 2.0.0 Ok: queued\r\n452 mailbox full\r\n"),
        "{out}"
    );
}

// ---------------------------------------------------------------- bring your own TLS

#[test]
fn external_tls_pauses_at_the_boundary() {
    let mut s = ServerSession::new(server_config(|c| c.tls = ServerTls::External)).unwrap();
    out_server(&mut s);
    s.handle_input(b"EHLO c.test\r\nSTARTTLS\r\nNOOP\r\n");
    let ev = server_events(&mut s);
    assert!(
        ev.contains(&ServerEvent::Upgrade(UpgradeEvent::ExternalTlsRequired)),
        "{ev:?}"
    );
    // The 220 is not written out yet: TLS cannot have started.
    assert_eq!(
        s.tls_established(TlsInfo::unknown()),
        Err(UsageError::NotAtUpgradePoint)
    );
    assert!(out_server(&mut s).ends_with("220 2.0.0 Ready to start TLS\r\n"));
    s.handle_input(b"RSET\r\n"); // cleartext before the caller's handshake completed
    s.tls_established(TlsInfo::unknown()).unwrap();
    let ev = server_events(&mut s);
    assert_eq!(
        ev,
        vec![
            ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes: 12 }),
            ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(TlsInfo::unknown())),
        ]
    );
    assert_eq!(s.trust(), Trust::Tls);
    // Decrypted bytes from here on.
    s.handle_input(b"EHLO c.test\r\n");
    let out = out_server(&mut s);
    assert!(
        out.contains("AUTH PLAIN") && !out.contains("STARTTLS"),
        "{out}"
    );
}

#[test]
fn external_tls_on_the_client() {
    let mut c = ClientSession::new(Arc::new(ClientConfig::new(
        "client.test",
        TlsPolicy::StartTlsRequired,
        ClientTls::External,
    )))
    .unwrap();
    c.handle_input(b"220 mx ESMTP\r\n");
    let _ = client_events(&mut c);
    assert_eq!(out_client(&mut c), "EHLO client.test\r\n");
    c.handle_input(b"250-mx\r\n250 STARTTLS\r\n");
    let _ = client_events(&mut c);
    assert_eq!(out_client(&mut c), "STARTTLS\r\n");
    c.handle_input(b"220 go\r\n");
    let (ev, err) = client_events(&mut c);
    assert_eq!(err, None);
    assert_eq!(
        ev,
        vec![ClientEvent::Upgrade(UpgradeEvent::ExternalTlsRequired)]
    );
    c.tls_established(TlsInfo::unknown()).unwrap();
    assert_eq!(out_client(&mut c), "EHLO client.test\r\n");
    c.handle_input(b"250-mx\r\n250 AUTH PLAIN\r\n");
    let (ev, _) = client_events(&mut c);
    assert_eq!(ev.last(), Some(&ClientEvent::Ready { trust: Trust::Tls }));
}

#[test]
fn a_planted_first_reply_line_fails_at_once() {
    // Issue #12 item 7c: the first line of a multi-line reply arrives before
    // the caller took the EHLO it would answer. It is rejected as it
    // arrives, not when (or whether) the reply completes: the session must
    // not sit on a planted half-reply waiting for the rest.
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired, |_| {})).unwrap();
    c.handle_input(b"220 mx ESMTP\r\n250-mx\r\n");
    let (ev, err) = client_events(&mut c);
    assert!(matches!(&ev[..], [ClientEvent::Greeting(_)]), "{ev:?}");
    assert_eq!(
        err,
        Some(Error::UnexpectedReply {
            step: Step::Capabilities,
            detail: "reply 250 arrived before its command was sent".into()
        })
    );
    assert!(c.is_closed());
    // The first line of a reply with no command outstanding: also at once.
    let mut c = ClientSession::new(client_config(TlsPolicy::Opportunistic, |_| {})).unwrap();
    c.handle_input(b"220 mx ESMTP\r\n");
    assert_eq!(out_client(&mut c), "EHLO client.test\r\n");
    c.handle_input(b"250 mx\r\n");
    assert_eq!(client_events(&mut c).1, None);
    c.handle_input(b"250-planted\r\n");
    assert_eq!(
        client_events(&mut c).1,
        Some(Error::UnexpectedReply {
            step: Step::Ready,
            detail: "reply 250 with no command outstanding".into()
        })
    );
}

// ---------------------------------------------------------------- SMTP smuggling (issue #12)

/// The end-of-data look-alikes of the 2023 SMTP smuggling research, each
/// followed by a whole second transaction. Only `CRLF.CRLF` ends `DATA`.
const SMUGGLING_ENDS: [&str; 8] = [
    "\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", "\r\n.\n", "\r.\r", "\n.\r", "\r.\n",
];

const SMUGGLED: &str =
    "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\nsmuggled\r\n.\r\n";

/// Runs a cleartext server that accepts every command, feeding `chunks`
/// one after the other; returns its events and everything it sent.
fn accepting_server(
    f: impl FnOnce(&mut ServerConfig),
    chunks: &[Vec<u8>],
) -> (Vec<ServerEvent>, String) {
    let mut s = ServerSession::new(server_config(|c| {
        c.tls = ServerTls::None;
        f(c);
    }))
    .unwrap();
    out_server(&mut s);
    let mut ev = Vec::new();
    for c in chunks {
        s.handle_input(c);
        while let Some(e) = s.poll_event().expect("server session failed") {
            ev.push(e);
            // LMTP: one reply per recipient at the end of data.
            while s.is_waiting_for_reply() {
                s.accept().unwrap();
            }
        }
    }
    (ev, out_server(&mut s))
}

fn is_command(e: &ServerEvent) -> bool {
    matches!(e, ServerEvent::Command(_) | ServerEvent::Hello(_))
}

#[test]
fn smuggled_transaction_after_every_end_of_data_variant_is_message_content() {
    let envelope = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n";
    for lmtp in [false, true] {
        let envelope = if lmtp {
            envelope.replace("EHLO", "LHLO")
        } else {
            envelope.to_string()
        };
        for pipelining in [true, false] {
            for end in SMUGGLING_ENDS {
                let body = format!("a{end}{SMUGGLED}");
                // With PIPELINING the whole exchange is one write; without,
                // each command and the body are written on their own.
                let mut script: Vec<Vec<u8>> = if pipelining {
                    vec![format!("{envelope}{body}NOOP\r\n").into_bytes()]
                } else {
                    envelope
                        .split_inclusive("\r\n")
                        .map(|l| l.as_bytes().to_vec())
                        .collect()
                };
                if !pipelining {
                    script.push(body.clone().into_bytes());
                    script.push(b"NOOP\r\n".to_vec());
                }
                let config = |c: &mut ServerConfig| {
                    c.lmtp = lmtp;
                    c.extensions.pipelining = pipelining;
                };
                let (ev, out) = accepting_server(config, &script);
                let what = format!("lmtp {lmtp} pipelining {pipelining} end {end:?}");
                // Exactly the real envelope as commands, then one rejected
                // message, then the NOOP.
                assert_eq!(
                    ev.iter().filter(|e| is_command(e)).count(),
                    4,
                    "{what}: {ev:?}"
                );
                let rejected = ev
                    .iter()
                    .position(|e| matches!(e, ServerEvent::MessageRejected(_)))
                    .unwrap_or_else(|| panic!("{what}: not rejected: {ev:?}"));
                assert!(!ev[rejected..].iter().any(is_command), "{what}: {ev:?}");
                assert!(
                    !ev.iter().any(|e| matches!(e, ServerEvent::MessageEnd)),
                    "{what}: {ev:?}"
                );
                assert_eq!(
                    out.matches("550 5.6.0 Message refused").count(),
                    1,
                    "{what}: {out}"
                );
                assert!(out.ends_with("\r\n250 2.0.0 Ok\r\n"), "{what}: {out}");
                assert!(!out.contains("354 End data") || out.matches("354").count() == 1);
                // Every split gives the same events.
                let whole: Vec<u8> = script.concat();
                let mut rng = 99u64;
                for split in Split::all() {
                    let (ev2, out2) = accepting_server(config, &split.chunks(&whole, &mut rng));
                    assert_eq!((&ev2, &out2), (&ev, &out), "{what} {split:?}");
                }
            }
        }
    }
}

#[test]
fn smuggled_transaction_after_an_overlong_line_is_message_content() {
    // The rest of an over-long line is skipped to its CRLF, not to a bare LF.
    for end in SMUGGLING_ENDS {
        let body = format!("{}{end}{SMUGGLED}", "x".repeat(1500));
        let (ev, out) = accepting_server(
            |_| {},
            &[
                b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n".to_vec(),
                body.into_bytes(),
            ],
        );
        assert_eq!(
            ev.iter().filter(|e| is_command(e)).count(),
            4,
            "{end:?}: {ev:?}"
        );
        assert!(
            matches!(
                ev.last(),
                Some(ServerEvent::MessageRejected(FramingError::TooLong {
                    limit: 1000
                }))
            ),
            "{end:?}: {ev:?}"
        );
        assert_eq!(out.matches("550 5.6.0").count(), 1, "{end:?}: {out}");
    }
    // The CR of the CRLF as the last octet before the cut still counts.
    for n in 995..1003 {
        let body = format!("{}\r\n.\r\nNOOP\r\n", "x".repeat(n));
        let (ev, out) = accepting_server(
            |_| {},
            &[
                b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\nDATA\r\n".to_vec(),
                body.into_bytes(),
            ],
        );
        assert!(out.ends_with("250 2.0.0 Ok\r\n"), "{n}: {out}");
        assert!(
            ev.iter()
                .any(|e| matches!(e, ServerEvent::MessageRejected(_) | ServerEvent::MessageEnd)),
            "{n}: {ev:?}"
        );
    }
}

#[test]
fn smuggling_sequences_inside_bdat_chunks_are_counted_data() {
    for end in SMUGGLING_ENDS.iter().chain(&["\r\n.\r\n"]) {
        let chunk = format!("a{end}{SMUGGLED}");
        for pipelining in [true, false] {
            let (ev, out) = accepting_server(
                |c| c.extensions.pipelining = pipelining,
                &[
                    b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\n".to_vec(),
                    format!("BDAT {} LAST\r\n{chunk}NOOP\r\n", chunk.len()).into_bytes(),
                ],
            );
            let data: Vec<u8> = ev
                .iter()
                .flat_map(|e| match e {
                    ServerEvent::MessageData(b) => b.to_vec(),
                    _ => Vec::new(),
                })
                .collect();
            assert_eq!(data, chunk.as_bytes(), "{end:?}");
            assert_eq!(
                ev.iter().filter(|e| is_command(e)).count(),
                4,
                "{end:?}: {ev:?}"
            );
            assert!(
                out.ends_with("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n"),
                "{out}"
            );
        }
    }
}

#[test]
fn only_crlf_dot_crlf_ends_data_for_every_short_body() {
    // Every body over {CR, LF, '.', 'a'} up to 6 octets, followed by the real
    // end and a NOOP: the message ends exactly after the first CRLF.CRLF of
    // "CRLF" + body + "CRLF.CRLF", and not one octet earlier.
    let alphabet = [b'\r', b'\n', b'.', b'a'];
    let mut bodies = vec![Vec::new()];
    let mut frontier = vec![Vec::new()];
    for _ in 0..6 {
        let mut next = Vec::new();
        for b in &frontier {
            for &c in &alphabet {
                let mut v: Vec<u8> = b.clone();
                v.push(c);
                next.push(v);
            }
        }
        bodies.extend(next.iter().cloned());
        frontier = next;
    }
    let mut ended_early = 0;
    for body in bodies {
        let mut stream = body.clone();
        stream.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let mut with_crlf = b"\r\n".to_vec();
        with_crlf.extend_from_slice(&stream);
        // `p`: where the CRLF before the dot starts in `with_crlf`, which
        // is where the message's lines end in `stream`; `end`: the octet
        // after the end of data in `stream`.
        let p = with_crlf
            .windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .expect("the real end is there");
        let end = p + 3;
        if end < body.len() + 5 {
            ended_early += 1;
        }
        let mut s = server_in_data("");
        s.handle_input(&stream[..end - 1]);
        let before = server_events(&mut s);
        assert!(
            before
                .iter()
                .all(|e| matches!(e, ServerEvent::MessageData(_))),
            "{body:?}: {before:?}"
        );
        s.handle_input(&stream[end - 1..end]);
        let at = server_events(&mut s);
        assert!(
            matches!(
                at.last(),
                Some(ServerEvent::MessageEnd | ServerEvent::MessageRejected(_))
            ),
            "{body:?}: {at:?}"
        );
        // A body that breaks the line rule is refused; one that keeps it is
        // delivered unstuffed.
        let valid = {
            let mut rest = &stream[..p];
            let mut ok = true;
            while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                ok &= rest[i..].starts_with(b"\r\n");
                rest = &rest[(i + 2).min(rest.len())..];
            }
            ok
        };
        assert_eq!(
            matches!(at.last(), Some(ServerEvent::MessageEnd)),
            valid,
            "{body:?}: {at:?}"
        );
    }
    assert!(ended_early > 0);
}

#[test]
fn bare_cr_in_a_body_rejects_the_message_but_never_ends_it() {
    for body in ["a\rb\r\n", "a\r", "\r\r\n", "a\r\r\n.\r\r\n"] {
        let mut s = server_in_data("");
        s.handle_input(body.as_bytes());
        s.handle_input(b"NOOP\r\n");
        assert!(server_events(&mut s).is_empty(), "{body:?}");
        s.handle_input(b".\r\n");
        assert_eq!(
            server_events(&mut s),
            vec![
                ServerEvent::TransactionReset,
                ServerEvent::MessageRejected(FramingError::BareCr)
            ],
            "{body:?}"
        );
    }
    // A CR and its LF in different reads are one CRLF.
    let mut s = server_in_data("");
    s.handle_input(b"a\r");
    s.handle_input(b"\n.\r");
    s.handle_input(b"\n");
    assert_eq!(
        server_events(&mut s),
        vec![
            ServerEvent::MessageData(Bytes::from_static(b"a\r\n")),
            ServerEvent::MessageEnd
        ]
    );
}

// ---------------------------------------------------------------- bare LF in command lines

#[test]
fn bare_lf_does_not_end_a_command_line() {
    // A front end that splits on CRLF sees one line here; so does the server.
    let s = ServerSession::new(server_config(|_| {})).unwrap();
    let mut s = s;
    out_server(&mut s);
    s.handle_input(b"EHLO c.test\r\nNOOP\nSTARTTLS\r\nNOOP\r\n");
    let ev = server_events(&mut s);
    assert!(
        !ev.iter()
            .any(|e| matches!(e, ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted))),
        "{ev:?}"
    );
    let out = out_server(&mut s);
    assert!(
        out.ends_with(
            "500 5.5.2 Syntax error: bare LF (line feed without carriage return)\r\n250 2.0.0 Ok\r\n"
        ),
        "{out}"
    );
    assert_eq!(s.trust(), Trust::Cleartext);
    // Nor does it end an over-long line being skipped, or an AUTH response.
    let mut s = plain_server(|_| {});
    s.handle_input(format!("{}\nSTARTTLS\r\nNOOP\r\n", "A".repeat(600)).as_bytes());
    let ev = server_events(&mut s);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted))));
    assert_eq!(
        out_server(&mut s),
        "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"
    );
    // Split anywhere, including between the CR and the LF of the long line's end.
    let input = format!("{}\r\nNOOP\r\n", "A".repeat(511));
    let mut rng = 5u64;
    for split in Split::all() {
        let mut s = plain_server(|_| {});
        for c in split.chunks(input.as_bytes(), &mut rng) {
            s.handle_input(&c);
        }
        server_events(&mut s);
        assert_eq!(
            out_server(&mut s),
            "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n",
            "{split:?}"
        );
    }
}

#[test]
fn insecure_bare_lf_line_ends_lets_a_bare_lf_end_commands_but_not_data() {
    let mut s = ServerSession::new(server_config(|c| c.insecure_bare_lf_line_ends = true)).unwrap();
    out_server(&mut s);
    s.handle_input(b"EHLO c.test\nNOOP\nSTARTTLS\r\n");
    let ev = server_events(&mut s);
    assert!(
        ev.iter()
            .any(|e| matches!(e, ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted))),
        "{ev:?}"
    );
    let out = out_server(&mut s);
    assert!(
        out.ends_with("250 2.0.0 Ok\r\n220 2.0.0 Ready to start TLS\r\n"),
        "{out}"
    );
    // A bare CR or NUL is still refused.
    let (_, out) = accepting_server(
        |c| c.insecure_bare_lf_line_ends = true,
        &[b"NO\rOP\nNO\0OP\nNOOP\n".to_vec()],
    );
    assert_eq!(
        out,
        "500 5.5.2 Syntax error: bare CR (carriage return without line feed)\r\n\
         500 5.5.2 Syntax error: NUL octet in a line\r\n250 2.0.0 Ok\r\n"
    );
    // The body is still held to CRLF: the smuggled transaction is content.
    let (ev, out) = accepting_server(
        |c| c.insecure_bare_lf_line_ends = true,
        &[format!(
            "EHLO c.test\nMAIL FROM:<a@b.test>\nRCPT TO:<x@mx.test>\nDATA\na\n.\n{SMUGGLED}"
        )
        .into_bytes()],
    );
    assert_eq!(ev.iter().filter(|e| is_command(e)).count(), 4, "{ev:?}");
    assert!(
        matches!(
            ev.last(),
            Some(ServerEvent::MessageRejected(FramingError::BareLf))
        ),
        "{ev:?}"
    );
    assert!(
        out.ends_with("550 5.6.0 Message refused: bare LF (line feed without carriage return)\r\n")
    );
}
