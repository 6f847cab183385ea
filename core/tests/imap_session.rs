//! IMAP sessions end to end: in-memory pairs through real rustls, split
//! invariance of a session with literals, IDLE and AUTHENTICATE, every
//! applicable threat class in the role it targets, the RFC 9051 STARTTLS
//! example, and Python's imaplib over TCP.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use common::{client_tls, localhost, pki, pump, server_tls, Peer, Split};
use starttls::imap::{
    ClientConfig, ClientEvent, ClientSession, Code, Command, CommandBody, Response, ServerConfig,
    ServerEvent, ServerSession, Status,
};
use starttls::{
    ClientTls, Error, ServerTls, Step, TlsErrorKind, TlsPolicy, TlsRefusal, Trust, UpgradeEvent,
    UsageError,
};

fn body(text: &str) -> CommandBody {
    Command::parse(&Bytes::copy_from_slice(format!("x {text}").as_bytes()))
        .unwrap()
        .body
}

fn resp(text: &str) -> Response {
    Response::parse(&Bytes::copy_from_slice(text.as_bytes())).unwrap()
}

fn out<F: FnMut() -> Option<Bytes>>(mut f: F) -> String {
    let mut s = String::new();
    while let Some(b) = f() {
        s.push_str(&String::from_utf8_lossy(&b));
    }
    s
}

fn server_config(f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new(ServerTls::Rustls(server_tls()));
    c.auth_mechanisms = vec!["PLAIN".into()];
    f(&mut c);
    Arc::new(c)
}

fn client_config(policy: TlsPolicy) -> Arc<ClientConfig> {
    Arc::new(ClientConfig::new(
        policy,
        ClientTls::Rustls {
            config: client_tls(),
            server_name: localhost(),
        },
    ))
}

const FETCHED: &str = "a literal\r\nA2 STARTTLS\r\n) with a paren";

/// A server application with one mailbox.
struct ServerApp {
    s: ServerSession,
    appended: Vec<u8>,
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
                        ServerEvent::Command(c) => match c.body {
                            CommandBody::Authenticate { .. } => {
                                self.s.continue_request(b"").unwrap()
                            }
                            CommandBody::Idle => {
                                self.s.continue_request(b"idling").unwrap();
                                self.s.send_untagged(&resp("* 2 EXISTS")).unwrap();
                            }
                            CommandBody::Other { name, args } => {
                                match &name.to_ascii_uppercase()[..] {
                                    b"SELECT" => {
                                        self.s.send_untagged(&resp("* 1 EXISTS")).unwrap();
                                        self.s.send_untagged(&resp("* FLAGS (\\Seen)")).unwrap();
                                    }
                                    b"FETCH" => {
                                        let r = format!(
                                            "* 1 FETCH (BODY[] {{{}}}\r\n{FETCHED})",
                                            FETCHED.len()
                                        );
                                        self.s.send_untagged(&resp(&r)).unwrap();
                                    }
                                    b"APPEND" => {
                                        for a in args.iter() {
                                            if let starttls::imap::Arg::Literal { data, .. } = a {
                                                self.appended.extend_from_slice(&data);
                                            }
                                        }
                                    }
                                    _ => {}
                                }
                                self.s.accept().unwrap();
                            }
                            _ => self.s.accept().unwrap(),
                        },
                        ServerEvent::AuthResponse(_) | ServerEvent::IdleDone => {
                            self.s.accept().unwrap()
                        }
                        _ => {}
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }
}

/// A client application running a script step by step.
struct ClientApp {
    c: ClientSession,
    step: usize,
    fetched: Vec<u8>,
}

const APPENDED: &str = "Subject: x\r\n\r\nline with STARTTLS\r\n";

impl ClientApp {
    fn next(&mut self) {
        let cmd = match self.step {
            0 => body("AUTHENTICATE PLAIN"),
            1 => body("SELECT INBOX"),
            2 => body("FETCH 1 (BODY[])"),
            3 => body(&format!(
                "APPEND INBOX (\\Seen) {{{}}}\r\n{APPENDED}",
                APPENDED.len()
            )),
            4 => body("IDLE"),
            5 => body("LOGOUT"),
            _ => return,
        };
        self.step += 1;
        self.c.send(cmd).unwrap();
    }
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
                    match &e {
                        ClientEvent::Ready { .. } | ClientEvent::Tagged { .. } => self.next(),
                        ClientEvent::Continuation(_) if self.step == 1 => self
                            .c
                            .send_auth_response(starttls::Secret::new(Bytes::from_static(
                                b"AGFsaWNlAHNlY3JldA==",
                            )))
                            .unwrap(),
                        ClientEvent::Untagged(r) => {
                            if let Response::Data { name, args, .. } = &r.message {
                                if name.as_ref() == b"EXISTS" && self.step == 5 {
                                    self.c.idle_done().unwrap();
                                }
                                if name.as_ref() == b"FETCH" {
                                    for a in args.iter() {
                                        if let starttls::imap::Arg::List(l) = a {
                                            for x in l.iter() {
                                                if let starttls::imap::Arg::Literal {
                                                    data, ..
                                                } = x
                                                {
                                                    self.fetched.extend_from_slice(&data);
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }
}

fn run_pair(
    policy: TlsPolicy,
    implicit: bool,
    split: Split,
) -> (Vec<String>, Vec<String>, Vec<u8>, Vec<u8>) {
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|c| c.implicit_tls = implicit)).unwrap(),
        appended: vec![],
    };
    let mut client = ClientApp {
        c: ClientSession::new(client_config(policy)).unwrap(),
        step: 0,
        fetched: vec![],
    };
    let (lc, ls) = pump(&mut client, &mut server, split);
    (lc, ls, client.fetched, server.appended)
}

// ------------------------------------------------------------------ clean sessions

#[test]
fn starttls_session_with_literals_idle_and_authenticate() {
    let (lc, ls, fetched, appended) = run_pair(TlsPolicy::StartTlsRequired, false, Split::Whole);
    let joined = lc.join("\n");
    assert!(!joined.contains("ERROR"), "{joined}");
    assert_eq!(fetched, FETCHED.as_bytes(), "{joined}");
    assert_eq!(appended, APPENDED.as_bytes());
    let caps: Vec<&String> = lc
        .iter()
        .filter(|l| l.starts_with("Capabilities"))
        .collect();
    assert_eq!(caps.len(), 2, "{joined}");
    assert!(
        caps[0].contains("STARTTLS")
            && caps[0].contains("LOGINDISABLED")
            && caps[0].contains("Cleartext")
    );
    assert!(
        !caps[1].contains("STARTTLS")
            && caps[1].contains("AUTH=PLAIN")
            && caps[1].contains("trust: Tls")
    );
    assert!(lc
        .iter()
        .any(|l| l.contains("Ready { trust: Tls, authenticated: false }")));
    // The literal that says "A2 STARTTLS" never acted as a command.
    assert_eq!(
        ls.iter().filter(|l| l.contains("UpgradeStarted")).count(),
        1
    );
    assert!(
        !ls.iter().any(|l| l.starts_with("Cleartext Command(")),
        "{ls:?}"
    );
    assert!(ls.iter().any(|l| l.contains("IdleDone")), "{ls:?}");
    assert!(lc.iter().any(|l| l.contains("status: Bye")), "{joined}");
}

#[test]
fn implicit_tls_session() {
    let (lc, ls, fetched, _) = run_pair(TlsPolicy::Implicit, true, Split::Whole);
    assert!(!lc.join("\n").contains("ERROR"), "{lc:?}");
    assert_eq!(fetched, FETCHED.as_bytes());
    assert!(
        lc[1].starts_with("Greeting") && lc[1].contains("trust: Tls"),
        "{lc:?}"
    );
    assert!(ls.iter().all(|l| !l.starts_with("Cleartext")));
}

#[test]
fn same_events_for_every_split() {
    for (policy, implicit) in [
        (TlsPolicy::StartTlsRequired, false),
        (TlsPolicy::Implicit, true),
    ] {
        let reference = run_pair(policy, implicit, Split::Whole);
        for split in Split::all() {
            assert_eq!(run_pair(policy, implicit, split), reference, "{split:?}");
        }
    }
}

// ------------------------------------------------------------------ server role

fn plain_server(f: impl FnOnce(&mut ServerConfig)) -> ServerSession {
    let mut s = ServerSession::new(server_config(f)).unwrap();
    let greeting = out(|| s.poll_transmit());
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED"),
        "{greeting}"
    );
    s
}

fn server_events(s: &mut ServerSession) -> Vec<ServerEvent> {
    let mut v = Vec::new();
    while let Some(e) = s.poll_event().unwrap() {
        v.push(e);
    }
    v
}

#[test]
fn injected_command_after_starttls_is_discarded() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"a STARTTLS\r\nb NOOP\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "a OK Begin TLS negotiation now\r\n"
    );
    assert_eq!(
        server_events(&mut s),
        vec![
            ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted),
            ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes: 8 }),
        ]
    );
}

#[test]
fn starttls_inside_a_literal_is_data() {
    let mut s = plain_server(|_| {});
    // A synchronizing literal: the server asks for it, then counts it.
    s.handle_input(b"b ID ({12}\r\n");
    assert_eq!(out(|| s.poll_transmit()), "+ Ready for literal data\r\n");
    s.handle_input(b"a STARTTLS\r\n NIL)\r\n");
    let ev = server_events(&mut s);
    assert!(
        matches!(
            &ev[..],
            [ServerEvent::Command(Command {
                body: CommandBody::Id { .. },
                ..
            })]
        ),
        "{ev:?}"
    );
    assert_eq!(out(|| s.poll_transmit()), "");
    assert_eq!(s.trust(), Trust::Cleartext);
    // And a non-synchronizing one, in the same read as a real command.
    s.accept().unwrap();
    out(|| s.poll_transmit());
    s.handle_input(b"c ID ({12+}\r\na STARTTLS\r\n NIL)\r\n");
    assert!(matches!(
        &server_events(&mut s)[..],
        [ServerEvent::Command(_)]
    ));
    assert_eq!(s.trust(), Trust::Cleartext);
}

#[test]
fn half_a_command_before_the_cut_is_discarded() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"a STARTTLS\r\nb APPEND INBOX {5+}\r\nhel");
    out(|| s.poll_transmit());
    let ev = server_events(&mut s);
    assert!(
        ev.contains(&ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded {
            bytes: 24
        })),
        "{ev:?}"
    );
}

#[test]
fn login_is_refused_in_cleartext_and_capabilities_change_over_tls() {
    let mut s = plain_server(|c| c.tls = ServerTls::External);
    s.handle_input(b"a1 LOGIN alice secret\r\na2 AUTHENTICATE PLAIN\r\na3 SELECT INBOX\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "a1 NO [PRIVACYREQUIRED] Authentication requires TLS; use STARTTLS first\r\n\
         a2 NO [PRIVACYREQUIRED] Authentication requires TLS; use STARTTLS first\r\n\
         a3 BAD Command not valid before authentication\r\n"
    );
    assert!(!server_events(&mut s)
        .iter()
        .any(|e| matches!(e, ServerEvent::Command(_))));
    s.handle_input(b"a4 STARTTLS\r\n");
    out(|| s.poll_transmit());
    s.tls_established(starttls::TlsInfo::unknown()).unwrap();
    s.handle_input(b"a5 CAPABILITY\r\na6 STARTTLS\r\n");
    let o = out(|| s.poll_transmit());
    assert!(
        o.starts_with("* CAPABILITY IMAP4rev2 IMAP4rev1 AUTH=PLAIN LITERAL+"),
        "{o}"
    );
    assert!(
        !o.contains("STARTTLS LOGINDISABLED") && o.ends_with("a6 BAD TLS already active\r\n"),
        "{o}"
    );
    server_events(&mut s);
    s.handle_input(b"a7 LOGIN alice secret\r\n");
    let ev = server_events(&mut s);
    assert!(matches!(&ev[..], [ServerEvent::Command(_)]));
    assert!(
        !format!("{ev:?}").contains("secret"),
        "credentials in Debug output"
    );
    s.accept().unwrap();
    assert!(s.is_authenticated());
}

#[test]
fn require_tls_refuses_everything_but_negotiation() {
    let mut s = plain_server(|c| c.require_tls = true);
    s.handle_input(b"a ENABLE UTF8=ACCEPT\r\nb NOOP\r\nc LOGOUT\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "a NO [PRIVACYREQUIRED] Use STARTTLS first\r\nb OK NOOP completed\r\n* BYE Logging out\r\nc OK LOGOUT completed\r\n"
    );
}

#[test]
fn huge_literals_are_refused_without_allocating() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"a APPEND INBOX {4294967295}\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "a NO [TOOBIG] Literal too large\r\n"
    );
    s.handle_input(b"b NOOP\r\n");
    assert_eq!(out(|| s.poll_transmit()), "b OK NOOP completed\r\n");
    // A non-synchronizing literal comes regardless: the only safe answer is BYE.
    s.handle_input(b"c APPEND INBOX {4294967295+}\r\n");
    assert_eq!(out(|| s.poll_transmit()), "* BYE Literal too large\r\n");
    assert!(s.is_closed());
}

#[test]
fn broken_lines_are_refused_and_the_stream_stays_in_step() {
    let mut s = plain_server(|_| {});
    let long = "x".repeat(70_000);
    s.handle_input(format!("a NOOP\nb NOOP\r\nc NO\0OP\r\nd {long}\r\ne NOOP\r\n").as_bytes());
    let o = out(|| s.poll_transmit());
    let lines: Vec<&str> = o.split_terminator("\r\n").collect();
    assert_eq!(
        lines,
        [
            // A bare LF does not end a line: "a NOOP<LF>b NOOP" is one
            // broken line, as a front end that splits on CRLF sees it.
            "a BAD Syntax error: bare LF (line feed without carriage return)",
            "c BAD Syntax error: NUL octet in a line",
            "d BAD Syntax error: line longer than 65536 octets",
            "e OK NOOP completed",
        ]
    );
}

// ------------------------------------------------------------------ client role

fn client_after(
    policy: TlsPolicy,
    greeting: &str,
) -> (ClientSession, Vec<ClientEvent>, Option<Error>, String) {
    let mut c = ClientSession::new(client_config(policy)).unwrap();
    c.handle_input(greeting.as_bytes());
    let (ev, err) = events(&mut c);
    let sent = out(|| c.poll_transmit());
    (c, ev, err, sent)
}

fn events(c: &mut ClientSession) -> (Vec<ClientEvent>, Option<Error>) {
    let mut v = Vec::new();
    loop {
        match c.poll_event() {
            Ok(Some(e)) => v.push(e),
            Ok(None) => return (v, None),
            Err(e) => return (v, Some(e)),
        }
    }
}

const GREETING_STARTTLS: &str = "* OK [CAPABILITY IMAP4rev2 STARTTLS LOGINDISABLED] ready\r\n";

#[test]
fn response_injection_after_ok_fails_the_client() {
    let (mut c, _, err, sent) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
    assert_eq!(err, None);
    assert_eq!(sent, "A1 STARTTLS\r\n");
    c.handle_input(b"A1 OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
    assert_eq!(events(&mut c).1, Some(Error::ResponseInjection));
    assert_eq!(out(|| c.poll_transmit()), "");
}

#[test]
fn preauth_in_cleartext_fails_closed() {
    let (c, ev, err, sent) = client_after(
        TlsPolicy::StartTlsRequired,
        "* PREAUTH IMAP4rev2 server logged in as Smith\r\n",
    );
    assert_eq!(
        err,
        Some(Error::TlsRequired {
            step: Step::Greeting,
            reason: TlsRefusal::Preauth
        })
    );
    assert!(matches!(&ev[..], [ClientEvent::Greeting(g)] if g.trust == Trust::Cleartext));
    assert_eq!(sent, "");
    assert!(c.is_closed());
    let (_, ev, err, _) = client_after(
        TlsPolicy::Opportunistic,
        "* PREAUTH IMAP4rev2 server logged in as Smith\r\n",
    );
    assert_eq!(err, None);
    assert_eq!(
        ev.last(),
        Some(&ClientEvent::Ready {
            trust: Trust::Cleartext,
            authenticated: true
        })
    );
}

#[test]
fn bye_greeting_is_a_refusal() {
    let (_, _, err, _) = client_after(TlsPolicy::StartTlsRequired, "* BYE go away\r\n");
    assert_eq!(
        err,
        Some(Error::Refused {
            step: Step::Greeting,
            status: "BYE".into()
        })
    );
}

#[test]
fn stripping_fails_closed_and_sends_only_logout() {
    let (_, _, err, sent) = client_after(
        TlsPolicy::StartTlsRequired,
        "* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] ready\r\n",
    );
    assert_eq!(
        err,
        Some(Error::TlsRequired {
            step: Step::Capabilities,
            reason: TlsRefusal::NotOffered
        })
    );
    assert_eq!(sent, "A1 LOGOUT\r\n");
    for (reply, reason) in [
        (
            "A1 NO not now\r\n",
            TlsRefusal::Refused {
                status: "NO".into(),
            },
        ),
        (
            "A1 BAD what\r\n",
            TlsRefusal::Refused {
                status: "BAD".into(),
            },
        ),
        (
            "+ go ahead\r\n",
            TlsRefusal::OddReply { status: "+".into() },
        ),
    ] {
        let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
        c.handle_input(reply.as_bytes());
        assert_eq!(
            events(&mut c).1,
            Some(Error::TlsRequired {
                step: Step::StartTls,
                reason
            }),
            "{reply:?}"
        );
        let sent = out(|| c.poll_transmit());
        assert!(sent.is_empty() || sent == "A2 LOGOUT\r\n", "{sent:?}");
    }
}

#[test]
fn capability_refused_fails_closed() {
    let (mut c, _, _, sent) = client_after(TlsPolicy::StartTlsRequired, "* OK ready\r\n");
    assert_eq!(sent, "A1 CAPABILITY\r\n");
    c.handle_input(b"A1 BAD no\r\n");
    assert_eq!(
        events(&mut c).1,
        Some(Error::TlsRequired {
            step: Step::Capabilities,
            reason: TlsRefusal::CapabilitiesRefused
        })
    );
}

#[test]
fn a_reply_for_another_tag_is_never_the_starttls_answer() {
    for forged in [
        "A2 OK begin TLS\r\n",
        "A9 OK begin TLS\r\n",
        "* OK begin TLS\r\n",
    ] {
        let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
        c.handle_input(forged.as_bytes());
        let (ev, err) = events(&mut c);
        assert!(
            !ev.iter().any(|e| matches!(e, ClientEvent::Upgrade(_))),
            "{forged:?}: {ev:?}"
        );
        if forged.starts_with('*') {
            // An untagged OK is reported with its trust level, and that is all.
            assert_eq!(err, None);
            assert!(matches!(&ev[..], [ClientEvent::Untagged(r)] if r.trust == Trust::Cleartext));
        } else {
            assert!(
                matches!(
                    err,
                    Some(Error::UnexpectedReply {
                        step: Step::StartTls,
                        ..
                    })
                ),
                "{forged:?}: {err:?}"
            );
        }
    }
}

#[test]
fn mailbox_data_before_login_is_a_violation() {
    for data in [
        "* 54321 EXISTS\r\n",
        "* LIST () \"/\" evil\r\n",
        "* 1 FETCH (FLAGS (\\Seen))\r\n",
    ] {
        let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
        c.handle_input(data.as_bytes());
        assert!(
            matches!(events(&mut c).1, Some(Error::UnexpectedReply { .. })),
            "{data:?}"
        );
    }
}

#[test]
fn alerts_referrals_and_capabilities_in_cleartext_are_reported_not_kept() {
    let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
    c.handle_input(
        b"* OK [ALERT] Your account expires; call +1 555 0100\r\n* OK [REFERRAL imap://evil.example/] go there\r\n* CAPABILITY IMAP4rev2 IDLE AUTH=PLAIN\r\n",
    );
    let (ev, err) = events(&mut c);
    assert_eq!(err, None);
    assert_eq!(ev.len(), 3);
    for e in &ev {
        assert!(
            matches!(e, ClientEvent::Untagged(r) if r.trust == Trust::Cleartext),
            "{e:?}"
        );
    }
    assert!(
        matches!(&ev[0], ClientEvent::Untagged(r) if matches!(&r.message, Response::Status(s) if s.code == Some(Code::Alert)))
    );
    // The capability list the session keeps is the greeting's, until TLS
    // replaces it.
    assert!(!c.capabilities().unwrap().contains("IDLE"));
}

#[test]
fn capabilities_are_replaced_after_tls() {
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|_| {})).unwrap(),
        appended: vec![],
    };
    let mut client = ClientApp {
        c: ClientSession::new(client_config(TlsPolicy::StartTlsRequired)).unwrap(),
        step: 99,
        fetched: vec![],
    };
    pump(&mut client, &mut server, Split::Whole);
    let caps = client.c.capabilities().unwrap();
    assert!(!caps.has_starttls() && !caps.login_disabled());
    assert!(caps.auth_mechanisms().any(|m| m.as_ref() == b"PLAIN"));
}

#[test]
fn plaintext_after_the_client_hello_is_a_tls_error() {
    let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
    c.handle_input(b"A1 OK go\r\n");
    assert!(!out(|| c.poll_transmit()).is_empty());
    c.handle_input(b"* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n");
    assert!(
        matches!(events(&mut c).1, Some(Error::Tls(e)) if e.kind == TlsErrorKind::PeerMisbehaved)
    );
}

#[test]
fn opportunistic_client_never_logs_in_in_cleartext() {
    let (mut c, ev, err, _) = client_after(
        TlsPolicy::Opportunistic,
        "* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] hi\r\n",
    );
    assert_eq!(err, None);
    assert_eq!(
        ev.last(),
        Some(&ClientEvent::Ready {
            trust: Trust::Cleartext,
            authenticated: false
        })
    );
    assert_eq!(
        c.send(body("LOGIN alice secret")),
        Err(UsageError::CleartextCredentials)
    );
    assert_eq!(
        c.send(body("AUTHENTICATE PLAIN")),
        Err(UsageError::CleartextCredentials)
    );
    assert_eq!(
        c.send(body("STARTTLS")),
        Err(UsageError::ReservedCommand("STARTTLS"))
    );
}

#[test]
fn rfc9051_starttls_example_client_role() {
    // RFC 9051 §6.2.1, with a greeting that carries no capabilities.
    let (mut c, _, _, sent) = client_after(
        TlsPolicy::StartTlsRequired,
        "* OK IMAP4rev2 Service Ready\r\n",
    );
    assert_eq!(sent, "A1 CAPABILITY\r\n");
    c.handle_input(
        b"* CAPABILITY IMAP4rev2 STARTTLS LOGINDISABLED\r\nA1 OK CAPABILITY completed\r\n",
    );
    let (_, err) = events(&mut c);
    assert_eq!(err, None);
    assert_eq!(out(|| c.poll_transmit()), "A2 STARTTLS\r\n");
    c.handle_input(b"A2 OK Begin TLS negotiation now\r\n");
    assert_eq!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted))
    );
    assert_eq!(c.poll_transmit().unwrap()[0], 0x16);
}

#[test]
fn rfc9051_starttls_example_server_role() {
    let mut s = ServerSession::new(server_config(|c| c.tls = ServerTls::External)).unwrap();
    out(|| s.poll_transmit());
    s.handle_input(b"a001 CAPABILITY\r\n");
    let o = out(|| s.poll_transmit());
    assert!(
        o.contains(" STARTTLS LOGINDISABLED ") && o.ends_with("a001 OK CAPABILITY completed\r\n"),
        "{o}"
    );
    s.handle_input(b"a002 STARTTLS\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "a002 OK Begin TLS negotiation now\r\n"
    );
    s.tls_established(starttls::TlsInfo::unknown()).unwrap();
    s.handle_input(b"a003 CAPABILITY\r\na004 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
    let o = out(|| s.poll_transmit());
    assert!(o.contains("AUTH=PLAIN") && !o.contains("STARTTLS"), "{o}");
    let ev = server_events(&mut s);
    assert!(
        matches!(
            ev.last(),
            Some(ServerEvent::Command(Command {
                body: CommandBody::Authenticate {
                    initial_response: Some(_),
                    ..
                },
                ..
            }))
        ),
        "{ev:?}"
    );
    s.complete(Status::Ok, None, "Success (tls protection)")
        .unwrap();
    assert_eq!(
        out(|| s.poll_transmit()),
        "a004 OK Success (tls protection)\r\n"
    );
    assert!(s.is_authenticated());
}

// ------------------------------------------------------------------ Python's imaplib over TCP

#[test]
fn python_imaplib_against_our_server() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var("CI").is_err(), "python3 is required in CI");
        eprintln!("SKIPPED: python3 not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("starttls-imaplib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    for implicit in [false, true] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let config = server_config(|c| {
            c.implicit_tls = implicit;
            c.require_tls = !implicit;
        });
        let server = std::thread::spawn(move || {
            let (mut sock, _) = l.accept().unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .unwrap();
            let mut app = ServerApp {
                s: ServerSession::new(config).unwrap(),
                appended: vec![],
            };
            let mut log = Vec::new();
            let mut buf = vec![0u8; 8192];
            loop {
                let failed = app.drive(&mut log).is_some();
                while let Some(o) = app.s.poll_transmit() {
                    let _ = sock.write_all(&o);
                }
                if failed || app.s.is_closed() {
                    return log;
                }
                match sock.read(&mut buf) {
                    Ok(0) | Err(_) => app.s.handle_eof(),
                    Ok(n) => app.s.handle_input(&buf[..n]),
                }
            }
        });
        let script = format!(
            r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
if {implicit}:
    m = imaplib.IMAP4_SSL("localhost", {port}, ssl_context=ctx, timeout=20)
else:
    m = imaplib.IMAP4("localhost", {port}, timeout=20)
    assert "STARTTLS" in m.capabilities, m.capabilities
    m.starttls(ssl_context=ctx)
assert "STARTTLS" not in m.capabilities and "LOGINDISABLED" not in m.capabilities, m.capabilities
m.login("alice", "secret")
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"1"], (typ, data)
m.logout()
print("ok")
"#,
            ca = ca.display().to_string(),
            implicit = if implicit { "True" } else { "False" },
        );
        let o = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let log = server.join().unwrap();
        assert!(
            o.status.success(),
            "python failed: {}\n{}\n{log:#?}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !log.iter().any(|l| l.starts_with("Cleartext Command(")),
            "{log:?}"
        );
        assert!(
            log.iter()
                .any(|l| l.starts_with("Tls Command(") && l.contains("Login")),
            "{log:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ threat 8 and late BYE

#[test]
fn untrusted_certificate_fails_the_handshake() {
    let mut server = ServerApp {
        s: ServerSession::new(server_config(|_| {})).unwrap(),
        appended: vec![],
    };
    let cfg = ClientConfig::new(
        TlsPolicy::StartTlsRequired,
        ClientTls::Rustls {
            config: common::client_tls_trusting_nothing(),
            server_name: localhost(),
        },
    );
    let mut client = ClientApp {
        c: ClientSession::new(Arc::new(cfg)).unwrap(),
        step: 0,
        fetched: vec![],
    };
    let (lc, ls) = pump(&mut client, &mut server, Split::Whole);
    assert!(
        lc.last()
            .unwrap()
            .starts_with("ERROR Tls(TlsError { kind: Certificate"),
        "{lc:?}"
    );
    assert!(!lc.iter().any(|l| l.starts_with("Ready")));
    assert!(!ls.iter().any(|l| l.contains("Command(")), "{ls:?}");
}

#[test]
fn bye_during_negotiation_is_a_refusal() {
    let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
    c.handle_input(b"* BYE shutting down\r\n");
    let (ev, err) = events(&mut c);
    assert_eq!(
        err,
        Some(Error::Refused {
            step: Step::StartTls,
            status: "BYE".into()
        })
    );
    assert!(matches!(&ev[..], [ClientEvent::Untagged(r)] if r.trust == Trust::Cleartext));
}

#[test]
fn unauthenticated_clients_cannot_make_the_server_buffer_big_literals() {
    let mut s = ServerSession::new(server_config(|c| c.tls = ServerTls::External)).unwrap();
    out(|| s.poll_transmit());
    s.handle_input(b"a STARTTLS\r\n");
    out(|| s.poll_transmit());
    s.tls_established(starttls::TlsInfo::unknown()).unwrap();
    // Before login, a literal only ever carries a name or a password.
    s.handle_input(b"b ID ({100000}\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "b NO [TOOBIG] Literal too large\r\n"
    );
    s.handle_input(b"c LOGIN {5}\r\n");
    assert_eq!(out(|| s.poll_transmit()), "+ Ready for literal data\r\n");
    s.handle_input(b"alice secret\r\n");
    assert!(matches!(
        server_events(&mut s).last(),
        Some(ServerEvent::Command(_))
    ));
    s.accept().unwrap();
    out(|| s.poll_transmit());
    // After login the general limit applies.
    s.handle_input(b"d APPEND INBOX {100000}\r\n");
    assert_eq!(out(|| s.poll_transmit()), "+ Ready for literal data\r\n");
}

#[test]
fn a_server_cannot_make_the_client_buffer_big_literals_before_login() {
    let (mut c, _, _, _) = client_after(TlsPolicy::StartTlsRequired, GREETING_STARTTLS);
    c.handle_input(b"* OK {100000}\r\n");
    assert!(matches!(
        events(&mut c).1,
        Some(Error::LimitExceeded {
            what: "literal",
            limit: 8192
        })
    ));
}

#[test]
fn a_completion_before_the_sasl_response_was_sent_is_forged() {
    let mut cfg = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_login_in_cleartext = true;
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] hi\r\n");
    let _ = events(&mut c);
    c.send(body("AUTHENTICATE PLAIN")).unwrap();
    assert_eq!(out(|| c.poll_transmit()), "A1 AUTHENTICATE PLAIN\r\n");
    c.handle_input(b"+ \r\n");
    let _ = events(&mut c);
    c.send_auth_response(starttls::Secret::new(Bytes::from_static(b"AGFAYg==")))
        .unwrap();
    // The response line has not been taken for sending: an OK now is forged.
    c.handle_input(b"A1 OK welcome\r\n");
    assert!(matches!(
        events(&mut c).1,
        Some(Error::UnexpectedReply { .. })
    ));
}

/// A bring-your-own-TLS client taken to `Ready` over TLS by hand.
fn external_client_ready_over_tls() -> ClientSession {
    let cfg = ClientConfig::new(TlsPolicy::StartTlsRequired, ClientTls::External);
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(GREETING_STARTTLS.as_bytes());
    let _ = events(&mut c);
    assert_eq!(out(|| c.poll_transmit()), "A1 STARTTLS\r\n");
    c.handle_input(b"A1 OK begin TLS\r\n");
    let _ = events(&mut c);
    c.tls_established(starttls::TlsInfo::unknown()).unwrap();
    // Issue #12 item 7b: tags go on across the upgrade; A1 is never reused
    // on the connection (RFC 9051 §2.2.1).
    assert_eq!(out(|| c.poll_transmit()), "A2 CAPABILITY\r\n");
    c.handle_input(b"* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\nA2 OK done\r\n");
    let (ev, err) = events(&mut c);
    assert_eq!(err, None);
    assert!(ev.iter().any(|e| matches!(
        e,
        ClientEvent::Ready {
            trust: Trust::Tls,
            ..
        }
    )));
    c
}

#[test]
fn tags_are_never_reused_across_starttls() {
    let mut c = external_client_ready_over_tls();
    let tag = c.send(body("NOOP")).unwrap();
    assert_eq!(tag.as_ref(), b"A3");
    assert_eq!(out(|| c.poll_transmit()), "A3 NOOP\r\n");
}

#[test]
fn a_literal_refused_with_its_own_completion_is_never_sent() {
    // Issue #12 item 6: RFC 9051 §7.5 lets a server answer a literal header
    // with a tagged NO. The literal belongs to that command and dies with
    // it; a later "+" (forged or stray) must not release it, or its octets
    // would reach the server as a command.
    let mut c = external_client_ready_over_tls();
    assert_eq!(c.send(body("NOOP")).unwrap().as_ref(), b"A3");
    let append = c
        .send(body("APPEND INBOX {17}\r\nA9 DELETE INBOX\r\n"))
        .unwrap();
    assert_eq!(append.as_ref(), b"A4");
    assert_eq!(
        out(|| c.poll_transmit()),
        "A3 NOOP\r\nA4 APPEND INBOX {17}\r\n"
    );
    c.handle_input(b"A4 NO [TOOBIG] refused\r\n+ go\r\n");
    let (ev, err) = events(&mut c);
    assert_eq!(err, None);
    assert!(ev.iter().any(|e| matches!(
        e,
        ClientEvent::Tagged { tag, .. } if tag.as_ref() == b"A4"
    )));
    assert_eq!(
        out(|| c.poll_transmit()),
        "",
        "the refused literal was sent"
    );
    // The NOOP completes normally and the session takes new commands.
    c.handle_input(b"A3 OK done\r\n");
    assert_eq!(events(&mut c).1, None);
    assert_eq!(c.send(body("NOOP")).unwrap().as_ref(), b"A5");
}
