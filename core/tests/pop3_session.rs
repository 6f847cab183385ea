//! POP3 sessions end to end: in-memory pairs through real rustls, split
//! invariance with a dot-stuffed RETR, every applicable threat class in the
//! role it targets, RFC 1939 examples, and Python's poplib over TCP.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use common::{client_tls, localhost, pki, pump, server_tls, Peer, Split};
use starttls::pop3::{
    ClientConfig, ClientEvent, ClientSession, Code, Command, ServerConfig, ServerEvent,
    ServerSession, Status, StatusLine,
};
use starttls::{
    ClientTls, Error, ServerTls, Step, TlsErrorKind, TlsPolicy, TlsRefusal, Trust, UpgradeEvent,
    UsageError,
};

const MESSAGE: &[u8] = b"Subject: pop\r\n\r\n.hidden dot\r\n.\r\n..\r\nend\r\n";

fn server_config(f: impl FnOnce(&mut ServerConfig)) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new(ServerTls::Rustls(server_tls()));
    c.sasl_mechanisms = vec!["PLAIN".into()];
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

fn out<F: FnMut() -> Option<Bytes>>(mut f: F) -> String {
    let mut s = String::new();
    while let Some(b) = f() {
        s.push_str(&String::from_utf8_lossy(&b));
    }
    s
}

fn cmd(s: &str) -> Command {
    Command::parse(&Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

/// Server application: one mailbox with one message.
struct ServerApp(ServerSession);

impl Peer for ServerApp {
    fn input(&mut self, d: &[u8]) {
        self.0.handle_input(d)
    }
    fn transmit(&mut self) -> Option<Bytes> {
        self.0.poll_transmit()
    }
    fn drive(&mut self, log: &mut Vec<String>) -> Option<Error> {
        loop {
            match self.0.poll_event() {
                Ok(Some(e)) => {
                    log.push(format!("{:?} {e:?}", self.0.trust()));
                    if let ServerEvent::Command(c) = e {
                        let r = match c {
                            Command::Stat => self.0.reply(StatusLine::new(
                                Status::Ok,
                                Bytes::from(format!("1 {}", MESSAGE.len())),
                            )),
                            Command::Retr { msg: 1 } => {
                                self.0.reply_multiline("message follows", MESSAGE)
                            }
                            Command::Retr { .. } => self.0.reject(None, "no such message"),
                            _ => self.0.accept(),
                        };
                        r.unwrap();
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }
}

/// Client application: USER, PASS, STAT, RETR 1, QUIT; records the body.
struct ClientApp {
    c: ClientSession,
    script: Vec<&'static str>,
    body: Vec<u8>,
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
                    let next = match &e {
                        ClientEvent::Ready { .. } => true,
                        ClientEvent::Reply {
                            multiline: false, ..
                        }
                        | ClientEvent::BodyEnd => true,
                        ClientEvent::Body(p) => {
                            assert_eq!(p.trust, self.c.trust());
                            self.body.extend_from_slice(p);
                            false
                        }
                        _ => false,
                    };
                    if next && !self.script.is_empty() {
                        let c = self.script.remove(0);
                        self.c.send(cmd(c)).unwrap();
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
) -> (Vec<String>, Vec<String>, Vec<u8>) {
    let mut server =
        ServerApp(ServerSession::new(server_config(|c| c.implicit_tls = implicit)).unwrap());
    let mut client = ClientApp {
        c: ClientSession::new(client_config(policy)).unwrap(),
        script: vec![
            "USER alice",
            "PASS hunter2 with spaces",
            "STAT",
            "RETR 1",
            "QUIT",
        ],
        body: Vec::new(),
    };
    let (lc, ls) = pump(&mut client, &mut server, split);
    (lc, ls, client.body)
}

// ------------------------------------------------------------------ clean sessions

#[test]
fn stls_session_through_rustls() {
    let (lc, ls, body) = run_pair(TlsPolicy::StartTlsRequired, false, Split::Whole);
    let joined = lc.join("\n");
    assert!(!joined.contains("ERROR"), "{joined}");
    assert_eq!(body, MESSAGE, "dot-stuffing must be transparent");
    let caps: Vec<&String> = lc
        .iter()
        .filter(|l| l.starts_with("Capabilities"))
        .collect();
    assert_eq!(caps.len(), 2);
    assert!(
        caps[0].contains("Stls") && !caps[0].contains("User") && caps[0].contains("Cleartext"),
        "{}",
        caps[0]
    );
    assert!(
        !caps[1].contains("Stls") && caps[1].contains("User") && caps[1].contains("trust: Tls"),
        "{}",
        caps[1]
    );
    assert!(lc.iter().any(|l| l == "Ready { trust: Tls }"));
    // Credentials went only over TLS, and never show in logs.
    assert!(
        ls.iter().any(|l| l.starts_with("Tls Command(Pass")),
        "{ls:?}"
    );
    assert!(
        !ls.iter().any(|l| l.starts_with("Cleartext Command(")),
        "{ls:?}"
    );
    assert!(!ls.join("\n").contains("hunter2"));
    assert!(lc.last().unwrap().contains("to: \"QUIT\""), "{joined}");
}

#[test]
fn implicit_tls_session() {
    let (lc, ls, body) = run_pair(TlsPolicy::Implicit, true, Split::Whole);
    assert!(!lc.join("\n").contains("ERROR"), "{lc:?}");
    assert_eq!(body, MESSAGE);
    assert!(
        lc[1].starts_with("Greeting") && lc[1].contains("trust: Tls"),
        "{lc:?}"
    );
    assert!(ls.iter().all(|l| !l.starts_with("Cleartext")), "{ls:?}");
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

// ------------------------------------------------------------------ threat 1: command injection

fn plain_server(f: impl FnOnce(&mut ServerConfig)) -> ServerSession {
    let mut s = ServerSession::new(server_config(f)).unwrap();
    assert_eq!(out(|| s.poll_transmit()), "+OK POP3 server ready\r\n");
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
fn injected_command_after_stls_is_discarded() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"STLS\r\nCAPA\r\n");
    assert_eq!(out(|| s.poll_transmit()), "+OK Begin TLS negotiation\r\n");
    assert_eq!(
        server_events(&mut s),
        vec![
            ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted),
            ServerEvent::Upgrade(UpgradeEvent::InjectionDiscarded { bytes: 6 }),
        ]
    );
}

// ------------------------------------------------------------------ client negotiation helpers

fn client_after_capa(policy: TlsPolicy, capa: &str) -> (ClientSession, Option<Error>, String) {
    let mut c = ClientSession::new(client_config(policy)).unwrap();
    c.handle_input(b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n");
    while c.poll_event().unwrap().is_some() {}
    let mut sent = out(|| c.poll_transmit());
    assert_eq!(sent, "CAPA\r\n");
    c.handle_input(capa.as_bytes());
    let mut err = None;
    loop {
        match c.poll_event() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    sent.push_str(&out(|| c.poll_transmit()));
    (c, err, sent)
}

fn error_of(c: &mut ClientSession) -> Option<Error> {
    loop {
        match c.poll_event() {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

// ------------------------------------------------------------------ threat 2: response injection

#[test]
fn response_injection_after_ok_fails_the_client() {
    let (mut c, err, sent) =
        client_after_capa(TlsPolicy::StartTlsRequired, "+OK\r\nSTLS\r\nTOP\r\n.\r\n");
    assert_eq!(err, None);
    assert_eq!(sent, "CAPA\r\nSTLS\r\n");
    c.handle_input(b"+OK Begin TLS\r\n+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
    assert_eq!(error_of(&mut c), Some(Error::ResponseInjection));
    assert_eq!(out(|| c.poll_transmit()), "");
}

// ------------------------------------------------------------------ threat 3: stripping

fn only_negotiation(sent: &str) {
    for line in sent.split_terminator("\r\n") {
        assert!(
            ["CAPA", "STLS", "QUIT"].contains(&line),
            "sent {line:?} in cleartext"
        );
    }
}

#[test]
fn required_policy_fails_without_stls() {
    let (_, err, sent) = client_after_capa(
        TlsPolicy::StartTlsRequired,
        "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
    );
    assert_eq!(
        err,
        Some(Error::TlsRequired {
            step: Step::Capabilities,
            reason: TlsRefusal::NotOffered
        })
    );
    assert_eq!(sent, "CAPA\r\nQUIT\r\n");
}

#[test]
fn required_policy_fails_when_capa_is_refused() {
    let (_, err, sent) = client_after_capa(TlsPolicy::StartTlsRequired, "-ERR unknown command\r\n");
    assert_eq!(
        err,
        Some(Error::TlsRequired {
            step: Step::Capabilities,
            reason: TlsRefusal::CapabilitiesRefused
        })
    );
    only_negotiation(&sent);
}

#[test]
fn required_policy_fails_when_stls_is_refused() {
    for (reply, want) in [
        (
            "-ERR [SYS/TEMP] not now\r\n",
            TlsRefusal::Refused {
                status: "-ERR".into(),
            },
        ),
        ("+ go on\r\n", TlsRefusal::OddReply { status: "+".into() }),
    ] {
        let (mut c, _, mut sent) =
            client_after_capa(TlsPolicy::StartTlsRequired, "+OK\r\nSTLS\r\n.\r\n");
        c.handle_input(reply.as_bytes());
        assert_eq!(
            error_of(&mut c),
            Some(Error::TlsRequired {
                step: Step::StartTls,
                reason: want
            }),
            "{reply:?}"
        );
        sent.push_str(&out(|| c.poll_transmit()));
        only_negotiation(&sent);
    }
}

#[test]
fn ok_without_tls_following_is_a_tls_error() {
    let (mut c, _, _) = client_after_capa(TlsPolicy::StartTlsRequired, "+OK\r\nSTLS\r\n.\r\n");
    c.handle_input(b"+OK go\r\n");
    assert!(!out(|| c.poll_transmit()).is_empty()); // ClientHello
    c.handle_input(b"+OK\r\nUSER\r\n.\r\n");
    assert!(
        matches!(error_of(&mut c), Some(Error::Tls(e)) if e.kind == TlsErrorKind::PeerMisbehaved)
    );
}

#[test]
fn opportunistic_goes_on_in_cleartext_but_never_sends_credentials() {
    let (mut c, err, _) = client_after_capa(TlsPolicy::Opportunistic, "+OK\r\nUSER\r\n.\r\n");
    assert_eq!(err, None);
    assert!(c.is_ready());
    assert_eq!(
        c.send(cmd("USER alice")),
        Err(UsageError::CleartextCredentials)
    );
    assert_eq!(
        c.send(cmd("APOP mrose c4c9334bac560ecc979e58001b3e22fb")),
        Err(UsageError::CleartextCredentials)
    );
    assert_eq!(
        c.send(Command::Stls),
        Err(UsageError::ReservedCommand("STLS"))
    );
    c.send(Command::Stat).unwrap();
    assert_eq!(out(|| c.poll_transmit()), "STAT\r\n");
}

// ------------------------------------------------------------------ threat 5: pairing and state

#[test]
fn unsolicited_multiline_listing_after_the_greeting_is_rejected() {
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired)).unwrap();
    // Greeting plus a listing nobody asked for, in one read: CAPA has not
    // even been handed to the caller, so this cannot be its answer.
    c.handle_input(b"+OK ready\r\n+OK\r\nSTLS\r\n.\r\n");
    let err = error_of(&mut c);
    assert!(
        matches!(&err, Some(Error::UnexpectedReply { step: Step::Capabilities, detail }) if detail.contains("before its command was sent")),
        "{err:?}"
    );
}

#[test]
fn a_response_with_nothing_outstanding_is_rejected() {
    let (mut c, _, _) = client_after_capa(TlsPolicy::Opportunistic, "+OK\r\nTOP\r\n.\r\n");
    c.handle_input(b"+OK 1 120\r\n");
    assert!(matches!(
        error_of(&mut c),
        Some(Error::UnexpectedReply { .. })
    ));
}

#[test]
fn capabilities_are_replaced_after_tls() {
    let mut server = ServerApp(ServerSession::new(server_config(|_| {})).unwrap());
    let mut client = ClientApp {
        c: ClientSession::new(client_config(TlsPolicy::StartTlsRequired)).unwrap(),
        script: vec![],
        body: vec![],
    };
    pump(&mut client, &mut server, Split::Whole);
    let caps = client.c.capabilities().unwrap();
    assert!(!caps.has_stls() && caps.has_user());
}

#[test]
fn server_forgets_user_across_the_upgrade() {
    let mut s = plain_server(|c| c.insecure_auth_in_cleartext = true);
    s.handle_input(b"USER alice\r\n");
    assert!(matches!(
        &server_events(&mut s)[..],
        [ServerEvent::Command(Command::User { .. })]
    ));
    s.accept().unwrap();
    s.handle_input(b"STLS\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "+OK\r\n+OK Begin TLS negotiation\r\n"
    );
    // Over TLS (bring-your-own would do; use a real handshake here).
    let mut tls = rustls::ClientConnection::new(client_tls(), localhost()).unwrap();
    let answer = tls_exchange(&mut s, &mut tls, b"PASS secret\r\n");
    assert_eq!(answer, "-ERR USER first\r\n");
}

fn tls_exchange(
    s: &mut ServerSession,
    tls: &mut rustls::ClientConnection,
    plaintext: &[u8],
) -> String {
    tls.writer().write_all(plaintext).unwrap();
    let mut answer = Vec::new();
    for _ in 0..20 {
        let mut buf = Vec::new();
        tls.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            s.handle_input(&buf);
        }
        let o = {
            let mut v = Vec::new();
            while let Some(b) = s.poll_transmit() {
                v.extend_from_slice(&b);
            }
            v
        };
        if !o.is_empty() {
            tls.read_tls(&mut &o[..]).unwrap();
            tls.process_new_packets().unwrap();
            let _ = tls.reader().read_to_end(&mut answer);
        }
        if buf.is_empty() && o.is_empty() {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

// ------------------------------------------------------------------ server policy

#[test]
fn credentials_are_refused_in_cleartext_with_an_extended_code() {
    let mut s = plain_server(|_| {});
    s.handle_input(b"CAPA\r\n");
    let capa = out(|| s.poll_transmit());
    assert!(
        capa.contains("\r\nSTLS\r\n") && !capa.contains("USER") && !capa.contains("SASL"),
        "{capa}"
    );
    for c in [
        "USER alice",
        "PASS x",
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
        "AUTH PLAIN",
    ] {
        s.handle_input(format!("{c}\r\n").as_bytes());
        assert_eq!(
            out(|| s.poll_transmit()),
            "-ERR [AUTH] Authentication requires TLS; use STLS first\r\n",
            "{c}"
        );
    }
    assert!(!server_events(&mut s)
        .iter()
        .any(|e| matches!(e, ServerEvent::Command(_))));
}

#[test]
fn require_tls_refuses_everything_else_in_cleartext() {
    let mut s = plain_server(|c| c.require_tls = true);
    for c in ["STAT", "UTF8", "LIST", "NOOP"] {
        s.handle_input(format!("{c}\r\n").as_bytes());
        assert_eq!(
            out(|| s.poll_transmit()),
            "-ERR [AUTH] Use STLS first\r\n",
            "{c}"
        );
    }
    s.handle_input(b"QUIT\r\n");
    assert_eq!(out(|| s.poll_transmit()), "+OK Bye\r\n");
    assert!(s.is_closed());
}

#[test]
fn transaction_commands_need_login_and_multiline_answers_are_checked() {
    let mut s = ServerSession::new(Arc::new(ServerConfig::new(ServerTls::External))).unwrap();
    out(|| s.poll_transmit());
    s.handle_input(b"STAT\r\n");
    assert_eq!(
        out(|| s.poll_transmit()),
        "-ERR [AUTH] Authentication requires TLS; use STLS first\r\n".replace(
            "[AUTH] Authentication requires TLS; use STLS first",
            "Not in the TRANSACTION state"
        )
    );
    s.handle_input(b"STLS\r\n");
    out(|| s.poll_transmit());
    s.tls_established(starttls::TlsInfo::unknown()).unwrap();
    s.handle_input(b"STLS\r\nUSER a\r\n");
    assert_eq!(out(|| s.poll_transmit()), "-ERR TLS already active\r\n");
    server_events(&mut s);
    s.accept().unwrap();
    s.handle_input(b"PASS b\r\n");
    server_events(&mut s);
    s.accept().unwrap();
    assert!(s.is_authenticated());
    s.handle_input(b"RETR 1\r\n");
    server_events(&mut s);
    assert!(matches!(s.accept(), Err(UsageError::WrongState(_))));
    s.reply_multiline("here", b"a\r\n.b\r\n").unwrap();
    assert!(out(|| s.poll_transmit()).ends_with("+OK here\r\na\r\n..b\r\n.\r\n"));
    s.handle_input(b"DELE 1\r\n");
    server_events(&mut s);
    assert!(matches!(
        s.reply_multiline("x", b""),
        Err(UsageError::WrongState(_))
    ));
    s.reject(Some(Code::SysPerm), "no").unwrap();
    assert_eq!(
        out(|| s.poll_transmit()),
        "+OK\r\n+OK\r\n-ERR [SYS/PERM] no\r\n"
            .split("+OK\r\n")
            .last()
            .unwrap()
    );
}

#[test]
fn sasl_exchange_with_cancel_and_success() {
    let mut s = ServerSession::new(server_config(|c| c.tls = ServerTls::External)).unwrap();
    out(|| s.poll_transmit());
    s.handle_input(b"STLS\r\n");
    out(|| s.poll_transmit());
    s.tls_established(starttls::TlsInfo::unknown()).unwrap();
    server_events(&mut s);
    s.handle_input(b"AUTH PLAIN\r\n");
    let ev = server_events(&mut s);
    assert!(
        matches!(&ev[..], [ServerEvent::Command(Command::Auth { .. })]),
        "{ev:?}"
    );
    s.continue_request(b"").unwrap();
    s.handle_input(b"*\r\n");
    assert_eq!(server_events(&mut s), vec![ServerEvent::AuthCancelled]);
    assert!(out(|| s.poll_transmit()).ends_with("-ERR Authentication cancelled\r\n"));
    s.handle_input(b"AUTH PLAIN\r\n");
    server_events(&mut s);
    s.continue_request(b"").unwrap();
    s.handle_input(b"AGFsaWNlAHNlY3JldA==\r\n");
    let ev = server_events(&mut s);
    assert!(
        matches!(&ev[..], [ServerEvent::AuthResponse(r)] if r.expose().as_ref() == b"AGFsaWNlAHNlY3JldA==")
    );
    assert!(!format!("{ev:?}").contains("AGFsaWNl"));
    s.accept().unwrap();
    assert!(s.is_authenticated());
}

// ------------------------------------------------------------------ RFC 1939 §10 example

#[test]
fn rfc1939_example_session_client_role() {
    let mut cfg = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_auth_in_cleartext = true;
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
    let greeting = c.poll_event().unwrap();
    match greeting {
        Some(ClientEvent::Greeting(g)) => {
            assert_eq!(g.trust, Trust::Cleartext);
            assert_eq!(
                g.apop_timestamp().unwrap().as_ref(),
                b"<1896.697170952@dbc.mtview.ca.us>"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out(|| c.poll_transmit()), "CAPA\r\n");
    c.handle_input(b"-ERR unknown\r\n"); // an RFC 1939-only server
                                         // Opportunistic: the refusal is reported, then the session goes on.
    assert!(matches!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Reply { to: "CAPA", .. })
    ));
    assert_eq!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Ready {
            trust: Trust::Cleartext
        })
    );
    let mut sent = String::new();
    let mut listing = Vec::new();
    let steps: &[(&str, &[u8])] = &[
        (
            "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
            b"+OK mrose's maildrop has 2 messages (320 octets)\r\n",
        ),
        ("STAT", b"+OK 2 320\r\n"),
        (
            "LIST",
            b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
        ),
        (
            "RETR 1",
            b"+OK 120 octets\r\n<the POP3 server sends message 1>\r\n.\r\n",
        ),
        ("DELE 1", b"+OK message 1 deleted\r\n"),
        (
            "QUIT",
            b"+OK dewey POP3 server signing off (maildrop empty)\r\n",
        ),
    ];
    for (command, answer) in steps {
        c.send(cmd(command)).unwrap();
        sent.push_str(&out(|| c.poll_transmit()));
        c.handle_input(answer);
        while let Some(e) = c.poll_event().unwrap() {
            if let ClientEvent::Body(p) = e {
                assert_eq!(p.trust, Trust::Cleartext);
                listing.extend_from_slice(&p);
            }
        }
    }
    assert_eq!(sent, "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n");
    assert_eq!(
        listing,
        b"1 120\r\n2 200\r\n<the POP3 server sends message 1>\r\n"
    );
    assert!(c.is_closed());
}

// ------------------------------------------------------------------ Python's poplib over TCP

fn serve_one(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> std::thread::JoinHandle<(bool, usize)> {
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut app = ServerApp(ServerSession::new(config).unwrap());
        let mut log = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let failed = app.drive(&mut log).is_some();
            while let Some(o) = app.0.poll_transmit() {
                if sock.write_all(&o).is_err() {
                    break;
                }
            }
            if failed || app.0.is_closed() {
                break;
            }
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => app.0.handle_eof(),
                Ok(n) => app.0.handle_input(&buf[..n]),
            }
        }
        let tls_commands = log.iter().filter(|l| l.starts_with("Tls Command(")).count();
        let cleartext_commands = log
            .iter()
            .filter(|l| l.starts_with("Cleartext Command("))
            .count();
        (cleartext_commands == 0, tls_commands)
    })
}

#[test]
fn python_poplib_against_our_server() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var("CI").is_err(), "python3 is required in CI");
        eprintln!("SKIPPED: python3 not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("starttls-poplib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    for implicit in [false, true] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = serve_one(
            l,
            server_config(|c| {
                c.implicit_tls = implicit;
                c.require_tls = !implicit;
            }),
        );
        let script = format!(
            r#"
import poplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
if {implicit}:
    p = poplib.POP3_SSL("localhost", {port}, context=ctx, timeout=20)
else:
    p = poplib.POP3("localhost", {port}, timeout=20)
    assert "STLS" in p.capa(), p.capa()
    p.stls(context=ctx)
assert "STLS" not in p.capa()
p.user("alice"); p.pass_("secret")
assert p.stat()[0] == 1
resp, lines, octets = p.retr(1)
assert lines == [b"Subject: pop", b"", b".hidden dot", b".", b"..", b"end"], lines
p.quit()
print("ok")
"#,
            ca = ca.display().to_string(),
            implicit = if implicit { "True" } else { "False" },
        );
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let (no_cleartext, tls_commands) = server.join().unwrap();
        assert!(
            out.status.success(),
            "python failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(no_cleartext);
        assert_eq!(tls_commands, 5); // USER, PASS, STAT, RETR, QUIT
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ threat 8 and 9

#[test]
fn untrusted_certificate_fails_the_handshake() {
    let mut server = ServerApp(ServerSession::new(server_config(|_| {})).unwrap());
    let cfg = ClientConfig::new(
        TlsPolicy::StartTlsRequired,
        ClientTls::Rustls {
            config: common::client_tls_trusting_nothing(),
            server_name: localhost(),
        },
    );
    let mut client = ClientApp {
        c: ClientSession::new(Arc::new(cfg)).unwrap(),
        script: vec!["USER alice"],
        body: vec![],
    };
    let (lc, ls) = pump(&mut client, &mut server, Split::Whole);
    assert!(
        lc.last()
            .unwrap()
            .starts_with("ERROR Tls(TlsError { kind: Certificate"),
        "{lc:?}"
    );
    assert!(!ls.iter().any(|l| l.contains("Command(")), "{ls:?}");
}

#[test]
fn broken_command_lines_are_refused_and_the_stream_stays_in_step() {
    let mut s = plain_server(|_| {});
    let long = "x".repeat(300);
    s.handle_input(format!("NOOP\nCAPA\r\nST\0AT\r\nUSER {long}\r\nQUIT\r\n").as_bytes());
    let o = out(|| s.poll_transmit());
    let lines: Vec<&str> = o
        .split_terminator("\r\n")
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
        .collect();
    assert_eq!(
        lines,
        [
            // "NOOP<LF>CAPA" is one broken line: a bare LF ends nothing.
            "-ERR Invalid line",
            "-ERR Invalid line",
            "-ERR Line too long",
            "+OK Bye"
        ]
    );
    assert!(s.is_closed());
}

#[test]
fn client_refuses_broken_responses() {
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired)).unwrap();
    c.handle_input(b"+OK hi\nthere\r\n");
    assert_eq!(
        error_of(&mut c),
        Some(Error::Framing(starttls::FramingError::BareLf))
    );
    // At the bare LF itself: a client never waits on a broken line.
    let mut c = ClientSession::new(client_config(TlsPolicy::StartTlsRequired)).unwrap();
    c.handle_input(b"+OK hi\n");
    assert_eq!(
        error_of(&mut c),
        Some(Error::Framing(starttls::FramingError::BareLf))
    );
    // A body with a bare LF could hide a forged terminator: fatal.
    let (mut c, _, _) = client_after_capa(TlsPolicy::Opportunistic, "+OK\r\nTOP\r\n.\r\n");
    c.send(Command::Retr { msg: 1 }).unwrap();
    out(|| c.poll_transmit());
    c.handle_input(b"+OK\r\nline\n.\nsmuggled\r\n.\r\n");
    assert_eq!(
        error_of(&mut c),
        Some(Error::Framing(starttls::FramingError::BareLf))
    );
}

#[test]
fn an_answer_before_the_sasl_response_was_sent_is_forged() {
    let mut cfg = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_auth_in_cleartext = true;
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"+OK hi\r\n");
    let _ = error_of(&mut c);
    assert_eq!(out(|| c.poll_transmit()), "CAPA\r\n");
    c.handle_input(b"+OK\r\nSASL PLAIN\r\n.\r\n");
    let _ = error_of(&mut c);
    c.send(cmd("AUTH PLAIN")).unwrap();
    assert_eq!(out(|| c.poll_transmit()), "AUTH PLAIN\r\n");
    c.handle_input(b"+ \r\n");
    let _ = error_of(&mut c);
    c.send_auth_response(starttls::Secret::new(Bytes::from_static(b"AGFAYg==")))
        .unwrap();
    // The response line has not been taken for sending: +OK now is forged.
    c.handle_input(b"+OK logged in\r\n");
    assert!(matches!(
        error_of(&mut c),
        Some(Error::UnexpectedReply { .. })
    ));
}
