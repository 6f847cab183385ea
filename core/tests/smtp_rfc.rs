//! The examples of RFC 5321 Appendix D and RFC 3207 §5, replayed against
//! each role, and the line limits that extensions raise.

mod common;

use std::sync::Arc;

use starttls::smtp::{
    ClientConfig, ClientEvent, ClientSession, Command, Reply, ServerConfig, ServerEvent,
    ServerSession,
};
use starttls::{ClientTls, ServerTls, TlsPolicy, UpgradeEvent, UsageError};

fn drain(mut f: impl FnMut() -> Option<bytes::Bytes>) -> String {
    let mut s = String::new();
    while let Some(b) = f() {
        s.push_str(&String::from_utf8_lossy(&b));
    }
    s
}

/// RFC 5321 D.1, server lines.
const D1_SERVER: &[&str] = &[
    "220 foo.com Simple Mail Transfer Service Ready\r\n",
    "250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n",
    "250 OK\r\n",
    "250 OK\r\n",
    "550 No such user here\r\n",
    "250 OK\r\n",
    "354 Start mail input; end with <CRLF>.<CRLF>\r\n",
    "250 OK\r\n",
    "221 foo.com Service closing transmission channel\r\n",
];

#[test]
fn rfc5321_d1_client_role() {
    // D.1 has no STARTTLS: only an opportunistic client may go on.
    let cfg = ClientConfig::new("bar.com", TlsPolicy::Opportunistic, ClientTls::External);
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    let mut sent = Vec::new();
    let mut replies = Vec::new();
    let mut rcpts = vec![
        "RCPT TO:<Brown@foo.com>",
        "RCPT TO:<Green@foo.com>",
        "RCPT TO:<Jones@foo.com>",
    ];
    for server_says in D1_SERVER {
        c.handle_input(server_says.as_bytes());
        while let Some(ev) = c.poll_event().unwrap() {
            match ev {
                ClientEvent::Ready { .. } => c
                    .send(Command::parse(&"MAIL FROM:<Smith@bar.com>".into()).unwrap())
                    .unwrap(),
                ClientEvent::Reply { to, reply } => {
                    replies.push((to, reply.code().get()));
                    match to {
                        "MAIL" | "RCPT" => match rcpts.pop() {
                            Some(r) => c.send(Command::parse(&r.into()).unwrap()).unwrap(),
                            None => c.send(Command::Data).unwrap(),
                        },
                        "DATA" => {
                            c.send_data(b"Blah blah blah...\r\n...etc. etc. etc.\r\n")
                                .unwrap();
                            c.finish_data().unwrap();
                        }
                        "end of data" => c.send(Command::Quit).unwrap(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        sent.push(drain(|| c.poll_transmit()));
    }
    assert_eq!(
        sent.concat(),
        "EHLO bar.com\r\nMAIL FROM:<Smith@bar.com>\r\nRCPT TO:<Jones@foo.com>\r\nRCPT TO:<Green@foo.com>\r\n\
         RCPT TO:<Brown@foo.com>\r\nDATA\r\nBlah blah blah...\r\n....etc. etc. etc.\r\n.\r\nQUIT\r\n"
    );
    assert_eq!(
        replies,
        vec![
            ("MAIL", 250),
            ("RCPT", 250),
            ("RCPT", 550),
            ("RCPT", 250),
            ("DATA", 354),
            ("end of data", 250),
            ("QUIT", 221)
        ]
    );
    assert!(c.is_closed());
}

#[test]
fn rfc5321_d1_server_role() {
    let mut s =
        ServerSession::new(Arc::new(ServerConfig::new("foo.com", ServerTls::None))).unwrap();
    let mut out = drain(|| s.poll_transmit());
    let client = "EHLO bar.com\r\nMAIL FROM:<Smith@bar.com>\r\nRCPT TO:<Jones@foo.com>\r\nRCPT TO:<Green@foo.com>\r\n\
                  RCPT TO:<Brown@foo.com>\r\nDATA\r\nBlah blah blah...\r\n...etc. etc. etc.\r\n.\r\nQUIT\r\n";
    // Delivered in one piece, as a pipelining client would.
    s.handle_input(client.as_bytes());
    let mut body = Vec::new();
    for _ in 0..20 {
        while let Some(ev) = s.poll_event().unwrap() {
            match ev {
                ServerEvent::Command(Command::Rcpt { to, .. })
                    if format!("{to:?}").contains("Green") =>
                {
                    s.reply(Reply::new(550, None, &[b"No such user here"]))
                        .unwrap()
                }
                ServerEvent::Command(_) | ServerEvent::MessageEnd => s.accept().unwrap(),
                ServerEvent::MessageData(p) => body.extend_from_slice(&p),
                _ => {}
            }
        }
    }
    out.push_str(&drain(|| s.poll_transmit()));
    let codes: Vec<&str> = out
        .split_terminator("\r\n")
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["220", "250", "250", "250", "550", "250", "354", "250", "221"]
    );
    assert_eq!(body, b"Blah blah blah...\r\n..etc. etc. etc.\r\n");
    assert!(s.is_closed());
}

#[test]
fn rfc3207_example_client_starts_tls_only_after_220() {
    let cfg = ClientConfig::new(
        "mail.example.com",
        TlsPolicy::StartTlsRequired,
        ClientTls::Rustls {
            config: common::client_tls(),
            server_name: common::localhost(),
        },
    );
    let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"220 mail.imc.org SMTP service ready\r\n");
    while c.poll_event().unwrap().is_some() {}
    assert_eq!(drain(|| c.poll_transmit()), "EHLO mail.example.com\r\n");
    c.handle_input(b"250-mail.imc.org offers a warm hug of welcome\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 DSN\r\n");
    while c.poll_event().unwrap().is_some() {}
    assert_eq!(drain(|| c.poll_transmit()), "STARTTLS\r\n");
    c.handle_input(b"220 Go ahead\r\n");
    assert_eq!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted))
    );
    let hello = c.poll_transmit().unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record follows the 220");
}

#[test]
fn rfc3207_example_server_role() {
    let cfg = ServerConfig::new("mail.imc.org", ServerTls::Rustls(common::server_tls()));
    let mut s = ServerSession::new(Arc::new(cfg)).unwrap();
    drain(|| s.poll_transmit());
    s.handle_input(b"EHLO mail.example.com\r\n");
    assert!(drain(|| s.poll_transmit()).contains("250 STARTTLS\r\n"));
    s.handle_input(b"STARTTLS\r\n");
    assert_eq!(
        drain(|| s.poll_transmit()),
        "220 2.0.0 Ready to start TLS\r\n"
    );
}

#[test]
fn extensions_raise_the_command_line_limit() {
    let mut cfg = ServerConfig::new("mx.test", ServerTls::None);
    cfg.extensions.size = Some(10_000_000);
    cfg.extensions.dsn = true;
    let mut s = ServerSession::new(Arc::new(cfg)).unwrap();
    drain(|| s.poll_transmit());
    // 512 + 26 (SIZE) + 600 (DSN) = 1138 octets allowed.
    let orcpt = "x".repeat(1138 - "RCPT TO:<a@b.test> ORCPT=rfc822;\r\n".len());
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n");
    while let Some(ev) = s.poll_event().unwrap() {
        if matches!(ev, ServerEvent::Command(_)) {
            s.accept().unwrap();
        }
    }
    s.handle_input(format!("RCPT TO:<a@b.test> ORCPT=rfc822;{orcpt}\r\n").as_bytes());
    assert!(matches!(
        s.poll_event().unwrap(),
        Some(ServerEvent::Command(Command::Rcpt { .. }))
    ));
    s.accept().unwrap();
    drain(|| s.poll_transmit());
    s.handle_input(format!("RCPT TO:<a@b.test> ORCPT=rfc822;{orcpt}x\r\n").as_bytes());
    assert_eq!(drain(|| s.poll_transmit()), "500 5.5.2 Line too long\r\n");
}

#[test]
fn auth_initial_response_may_be_long_over_tls() {
    let mut cfg = ServerConfig::new("mx.test", ServerTls::External);
    cfg.auth_mechanisms = vec!["PLAIN".into()];
    let mut s = ServerSession::new(Arc::new(cfg)).unwrap();
    drain(|| s.poll_transmit());
    s.handle_input(b"STARTTLS\r\n");
    drain(|| s.poll_transmit());
    s.tls_established(starttls::TlsInfo::unknown()).unwrap();
    let ir = "QUFB".repeat(1000);
    s.handle_input(format!("EHLO c.test\r\nAUTH PLAIN {ir}\r\n").as_bytes());
    let mut got = false;
    while let Some(ev) = s.poll_event().unwrap() {
        got |= matches!(ev, ServerEvent::Command(Command::Auth { .. }));
    }
    assert!(got, "{}", drain(|| s.poll_transmit()));
}

#[test]
fn invalid_reply_codes_are_a_usage_error_not_a_panic() {
    let mut s =
        ServerSession::new(Arc::new(ServerConfig::new("mx.test", ServerTls::None))).unwrap();
    s.handle_input(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n");
    while s.poll_event().unwrap().is_some() {}
    assert_eq!(
        s.reject(999, None, "x"),
        Err(UsageError::InvalidReplyCode(999))
    );
    assert_eq!(
        s.reject(170, None, "x"),
        Err(UsageError::InvalidReplyCode(170))
    );
    assert!(s.is_waiting_for_reply());
}
