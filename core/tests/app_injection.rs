//! Application-data injection (issue #12 items 3, 4 and 7a): a value the
//! application hands to a session — a command field, a reply text, a SASL
//! line — can never put more than one protocol element on the wire. Free
//! text is cleaned (CR, LF, NUL become SP); every other value is checked and
//! refused with `UsageError::InvalidValue`, writing nothing. One test per
//! protocol and role.

use std::sync::Arc;

use bytes::Bytes;
use starttls::{ClientTls, Secret, ServerTls, TlsPolicy, UsageError};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn drain<F: FnMut() -> Option<Bytes>>(mut f: F) -> String {
    let mut s = String::new();
    while let Some(x) = f() {
        s.push_str(&String::from_utf8_lossy(&x));
    }
    s
}

fn is_invalid<T: std::fmt::Debug>(r: &Result<T, UsageError>) -> bool {
    matches!(r, Err(UsageError::InvalidValue { .. }))
}

fn no_tls_server() -> ServerTls {
    ServerTls::None
}

// ---------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------

mod smtp {
    use super::*;
    use starttls::smtp::command::{
        ForwardPath, Host, Mailbox, Parameter, Parameters, Path, ReversePath,
    };
    use starttls::smtp::{
        ClientConfig, ClientEvent, ClientSession, Command, ServerConfig, ServerEvent, ServerSession,
    };

    /// A cleartext client past EHLO (no STARTTLS offered, opportunistic).
    fn ready_client() -> ClientSession {
        let mut cfg =
            ClientConfig::new("client.test", TlsPolicy::Opportunistic, ClientTls::External);
        cfg.insecure_auth_in_cleartext = true;
        let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
        c.handle_input(b"220 mx.test ESMTP\r\n");
        assert_eq!(drain(|| c.poll_transmit()), "EHLO client.test\r\n");
        c.handle_input(b"250-mx.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n");
        while let Some(e) = c.poll_event().unwrap() {
            if matches!(e, ClientEvent::Ready { .. }) {
                return c;
            }
        }
        panic!("not ready");
    }

    fn path(local: &str, domain: &str) -> Path {
        Path {
            mailbox: Mailbox {
                local_part: b(local),
                domain: Host::Domain(b(domain)),
            },
            source_route: None,
        }
    }

    #[test]
    fn client_refuses_vrfy_with_crlf_and_writes_nothing() {
        let mut c = ready_client();
        let r = c.send(Command::Vrfy {
            arg: b("bob\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>"),
        });
        assert_eq!(
            r,
            Err(UsageError::InvalidValue {
                field: "VRFY",
                reason: "contains CR, LF or NUL"
            })
        );
        assert_eq!(drain(|| c.poll_transmit()), "");
        // The session is unchanged: a valid command still goes out.
        c.send(Command::Vrfy { arg: b("bob") }).unwrap();
        assert_eq!(drain(|| c.poll_transmit()), "VRFY bob\r\n");
    }

    #[test]
    fn client_refuses_every_field_that_does_not_parse_back() {
        let bad: Vec<Command> = vec![
            Command::Expn {
                arg: b("list\r\nQUIT"),
            },
            Command::Help {
                topic: Some(b("x\nQUIT")),
            },
            Command::Noop {
                arg: Some(b(" leading space")),
            },
            Command::Mail {
                from: ReversePath::Path(path("a", "b.example>\r\nRCPT TO:<c@d")),
                params: Parameters::new(),
            },
            Command::Mail {
                from: ReversePath::Path(path("a b", "example.com")),
                params: Parameters::new(),
            },
            Command::Mail {
                from: ReversePath::Path(Path {
                    mailbox: path("a", "b.example").mailbox,
                    source_route: Some(b("@x\r\nRSET")),
                }),
                params: Parameters::new(),
            },
            Command::Mail {
                from: ReversePath::Null,
                params: Parameters::from_params(&[Parameter::Other {
                    keyword: b("X-FOO"),
                    value: Some(b("1\r\nRSET")),
                }]),
            },
            Command::Mail {
                from: ReversePath::Null,
                params: Parameters::from_params(&[Parameter::Size(1), Parameter::Size(2)]),
            },
            Command::Rcpt {
                to: ForwardPath::Path(path("z", "w")),
                params: Parameters::from_params(&[Parameter::Orcpt {
                    addr_type: b("rfc822"),
                    addr: b("x\r\nDATA"),
                }]),
            },
            Command::Rcpt {
                to: ForwardPath::Path(Path {
                    mailbox: Mailbox {
                        local_part: b("z"),
                        domain: Host::General {
                            tag: b("IPv6"),
                            content: b("::1"),
                        },
                    },
                    source_route: None,
                }),
                params: Parameters::new(),
            },
            Command::Auth {
                mechanism: b("PLAIN AGFsaWNl\r\nQUIT"),
                initial_response: None,
            },
            Command::Auth {
                mechanism: b("PLAIN"),
                initial_response: Some(Secret::new(b("AGFs\r\nQUIT"))),
            },
        ];
        let mut c = ready_client();
        for cmd in bad {
            let r = c.send(cmd.clone());
            assert!(is_invalid(&r), "{cmd:?}: {r:?}");
            assert!(cmd.check().is_err(), "{cmd:?}");
            assert_eq!(drain(|| c.poll_transmit()), "", "{cmd:?}");
        }
    }

    #[test]
    fn checked_parameters_refuse_values_that_read_back_as_others() {
        for bad in [
            vec![Parameter::EnvId(b("a b"))],
            vec![Parameter::EnvId(b("a\r\nRSET"))],
            vec![Parameter::Auth(b("<a@b>\r\nDATA"))],
            vec![Parameter::Other {
                keyword: b("SIZE"),
                value: Some(b("10")),
            }],
            vec![Parameter::Other {
                keyword: b("X"),
                value: Some(b("1 Y=2")),
            }],
            vec![Parameter::Size(1), Parameter::Size(1)],
        ] {
            let r = Parameters::try_from_params(&bad);
            assert!(is_invalid(&r), "{bad:?}: {r:?}");
        }
        let good = [Parameter::Size(10), Parameter::EnvId(b("abc+2B"))];
        let p = Parameters::try_from_params(&good).unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), good);
    }

    #[test]
    fn client_refuses_an_auth_response_with_crlf() {
        let mut c = ready_client();
        c.send(Command::Auth {
            mechanism: b("PLAIN"),
            initial_response: None,
        })
        .unwrap();
        assert_eq!(drain(|| c.poll_transmit()), "AUTH PLAIN\r\n");
        c.handle_input(b"334 \r\n");
        while c.poll_event().unwrap().is_some() {}
        let r = c.send_auth_response(Secret::new(b("AGFsaWNl\r\nMAIL FROM:<x@y>")));
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!(drain(|| c.poll_transmit()), "");
        c.send_auth_response(Secret::new(b("AGFsaWNlAHB3")))
            .unwrap();
        assert_eq!(drain(|| c.poll_transmit()), "AGFsaWNlAHB3\r\n");
    }

    #[test]
    fn server_reply_text_cannot_add_a_reply() {
        let cfg = ServerConfig::new("mx.test", no_tls_server());
        let mut s = ServerSession::new(Arc::new(cfg)).unwrap();
        assert_eq!(drain(|| s.poll_transmit()), "220 mx.test ESMTP\r\n");
        s.handle_input(b"EHLO c\r\n");
        while let Some(e) = s.poll_event().unwrap() {
            if matches!(e, ServerEvent::Command(_)) {
                s.accept().unwrap();
            }
        }
        drain(|| s.poll_transmit());
        s.handle_input(b"VRFY bob\r\n");
        while s.poll_event().unwrap().is_some() {}
        s.reject(550, None, "no\r\n250 forged\n250 forged\0")
            .unwrap();
        assert_eq!(
            drain(|| s.poll_transmit()),
            "550 no  250 forged 250 forged \r\n"
        );
    }
}

// ---------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------

mod imap {
    use super::*;
    use starttls::imap::{
        AString, Arg, Args, ClientConfig, ClientEvent, ClientSession, Code, CommandBody, Response,
        ServerConfig, ServerEvent, ServerSession, Status, StatusResponse,
    };

    fn ready_client() -> ClientSession {
        let mut cfg = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
        cfg.insecure_login_in_cleartext = true;
        let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
        c.handle_input(b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] hi\r\n");
        for _ in 0..4 {
            while let Some(e) = c.poll_event().unwrap() {
                if matches!(e, ClientEvent::Ready { .. }) {
                    drain(|| c.poll_transmit());
                    return c;
                }
            }
            let sent = drain(|| c.poll_transmit());
            if let Some(tag) = sent.split(' ').next().filter(|t| !t.is_empty()) {
                c.handle_input(
                    format!("* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n{tag} OK done\r\n").as_bytes(),
                );
            }
        }
        panic!("not ready");
    }

    fn other(name: &str, args: &[Arg]) -> CommandBody {
        CommandBody::Other {
            name: b(name),
            args: Args::from_args(args),
        }
    }

    #[test]
    fn client_refuses_an_atom_with_crlf_and_writes_nothing() {
        let mut c = ready_client();
        let r = c.send(other(
            "SELECT",
            &[Arg::Atom(b("INBOX\r\nA99 DELETE INBOX"))],
        ));
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!(drain(|| c.poll_transmit()), "");
        let tag = c.send(other("SELECT", &[Arg::Atom(b("INBOX"))])).unwrap();
        assert_eq!(
            drain(|| c.poll_transmit()),
            format!("{} SELECT INBOX\r\n", String::from_utf8_lossy(&tag))
        );
    }

    #[test]
    fn client_refuses_every_field_that_does_not_parse_back() {
        let bad = vec![
            other("SELECT", &[Arg::Quoted(b("a\"\r\nA9 LOGOUT"))]),
            other("SELECT", &[Arg::Quoted(b("ends in \\"))]),
            other("FETCH", &[Arg::Atom(b("1 (BODY[]"))]),
            other("SEARCH", &[Arg::Atom(b("TEXT")), Arg::Atom(b("{5}"))]),
            other("X\r\nA9 LOGOUT", &[]),
            // Typed commands hidden as `Other` would bypass the checks on
            // the typed ones (cleartext credentials, STARTTLS).
            other("LOGIN", &[Arg::Atom(b("u")), Arg::Atom(b("p"))]),
            other("starttls", &[]),
            CommandBody::Login {
                username: AString::Atom(b("bob\r\nA9 LOGOUT")),
                password: Secret::new(AString::Atom(b("x"))),
            },
            CommandBody::Login {
                username: AString::Quoted(b("bob\"")),
                password: Secret::new(AString::Atom(b("x"))),
            },
            CommandBody::Authenticate {
                mechanism: b("PLAIN dGVzdA==\r\nA9 LOGOUT"),
                initial_response: None,
            },
            CommandBody::Authenticate {
                mechanism: b("PLAIN"),
                initial_response: Some(Secret::new(b("x y"))),
            },
            CommandBody::Enable {
                capabilities: Args::from_args(&[Arg::Quoted(b("X"))]),
            },
        ];
        let mut c = ready_client();
        for body in bad {
            let r = c.send(body.clone());
            assert!(is_invalid(&r), "{body:?}: {r:?}");
            assert_eq!(drain(|| c.poll_transmit()), "", "{body:?}");
        }
    }

    #[test]
    fn checked_args_refuse_values_that_read_back_as_others() {
        for bad in [
            Arg::Atom(b("a b")),
            Arg::Atom(b("NIL")),
            Arg::Atom(b("x\r\nA1 LOGOUT")),
            Arg::Quoted(b("a\"b")),
            Arg::Atom(b("")),
        ] {
            let r = Args::try_from_args(std::slice::from_ref(&bad));
            assert!(is_invalid(&r), "{bad:?}: {r:?}");
        }
        let good = [Arg::Atom(b("1:*")), Arg::Quoted(b("a\\\"b")), Arg::Nil];
        let a = Args::try_from_args(&good).unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), good);
    }

    #[test]
    fn client_refuses_an_auth_response_with_crlf() {
        let mut c = ready_client();
        c.send(CommandBody::Authenticate {
            mechanism: b("PLAIN"),
            initial_response: None,
        })
        .unwrap();
        drain(|| c.poll_transmit());
        c.handle_input(b"+ \r\n");
        while c.poll_event().unwrap().is_some() {}
        let r = c.send_auth_response(Secret::new(b("dGVzdA==\r\nA9 LOGOUT")));
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!(drain(|| c.poll_transmit()), "");
        c.send_auth_response(Secret::new(b("*"))).unwrap();
        assert_eq!(drain(|| c.poll_transmit()), "*\r\n");
    }

    fn busy_server(command: &str) -> ServerSession {
        let mut cfg = ServerConfig::new(no_tls_server());
        cfg.insecure_login_in_cleartext = true;
        cfg.auth_mechanisms = vec!["PLAIN".into()];
        let mut s = ServerSession::new(Arc::new(cfg)).unwrap();
        drain(|| s.poll_transmit());
        s.handle_input(command.as_bytes());
        while let Some(e) = s.poll_event().unwrap() {
            if matches!(e, ServerEvent::Command(_)) {
                return s;
            }
        }
        panic!("no command");
    }

    #[test]
    fn server_completion_text_cannot_add_a_response() {
        let mut s = busy_server("a1 ID NIL\r\n");
        s.complete(
            Status::Ok,
            None,
            "ID done\r\n* BYE [ALERT] forged\r\na2 OK forged",
        )
        .unwrap();
        assert_eq!(
            drain(|| s.poll_transmit()),
            "a1 OK ID done  * BYE [ALERT] forged  a2 OK forged\r\n"
        );
    }

    #[test]
    fn server_refuses_texts_and_codes_that_read_back_differently() {
        let mut s = busy_server("a1 ID NIL\r\n");
        // A trailing literal header would swallow the next response.
        assert!(is_invalid(&s.complete(Status::Ok, None, "done {40}")));
        // A typed response whose text starts like a code is not what it
        // says it is.
        let typed = Response::Status(StatusResponse {
            status: Status::Ok,
            code: None,
            text: b("[ALERT] not a code"),
        });
        assert!(is_invalid(&s.send_untagged(&typed)));
        let bad_code = Code::Other {
            name: b("X] forged [Y"),
            args: None,
        };
        assert!(is_invalid(&s.complete(Status::Ok, Some(bad_code), "t")));
        let bad_args = Code::Other {
            name: b("X"),
            args: Some(b("a]")),
        };
        assert!(is_invalid(&s.complete(Status::No, Some(bad_args), "t")));
        let untagged = Response::Status(StatusResponse {
            status: Status::Ok,
            code: None,
            text: b("x\r\n* BYE forged"),
        });
        assert!(is_invalid(&s.send_untagged(&untagged)));
        let data = Response::Data {
            number: None,
            name: b("LIST"),
            args: Args::from_args(&[Arg::Atom(b("()")), Arg::Quoted(b("/\r\n* BYE"))]),
        };
        assert!(is_invalid(&s.send_untagged(&data)));
        assert_eq!(drain(|| s.poll_transmit()), "");
        // Still pending and usable; free text may carry a code, as written.
        s.complete(Status::Ok, None, "[READ-WRITE] done").unwrap();
        assert_eq!(drain(|| s.poll_transmit()), "a1 OK [READ-WRITE] done\r\n");
    }

    #[test]
    fn server_continuation_text_cannot_add_a_response() {
        let mut s = busy_server("a1 AUTHENTICATE PLAIN\r\n");
        s.continue_request(b"go on\r\n* BYE forged").unwrap();
        assert_eq!(drain(|| s.poll_transmit()), "+ go on  * BYE forged\r\n");
    }
}

// ---------------------------------------------------------------------------
// POP3
// ---------------------------------------------------------------------------

mod pop3 {
    use super::*;
    use starttls::pop3::{
        ClientConfig, ClientEvent, ClientSession, Code, Command, ServerConfig, ServerEvent,
        ServerSession, Status, StatusLine,
    };

    fn ready_client() -> ClientSession {
        let mut cfg = ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
        cfg.insecure_auth_in_cleartext = true;
        let mut c = ClientSession::new(Arc::new(cfg)).unwrap();
        c.handle_input(b"+OK POP3 ready <1.2@x>\r\n");
        assert_eq!(drain(|| c.poll_transmit()), "CAPA\r\n");
        c.handle_input(b"+OK\r\nUSER\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n");
        while let Some(e) = c.poll_event().unwrap() {
            if matches!(e, ClientEvent::Ready { .. }) {
                return c;
            }
        }
        panic!("not ready");
    }

    #[test]
    fn client_refuses_user_with_crlf_and_writes_nothing() {
        let mut c = ready_client();
        let r = c.send(Command::User {
            name: b("bob\r\nDELE 1"),
        });
        assert_eq!(
            r,
            Err(UsageError::InvalidValue {
                field: "USER",
                reason: "contains CR, LF or NUL"
            })
        );
        assert_eq!(drain(|| c.poll_transmit()), "");
        c.send(Command::User { name: b("bob") }).unwrap();
        assert_eq!(drain(|| c.poll_transmit()), "USER bob\r\n");
    }

    #[test]
    fn client_refuses_every_field_that_does_not_parse_back() {
        let bad = vec![
            Command::Pass {
                password: Secret::new(b("pw\r\nDELE 1")),
            },
            Command::Pass {
                password: Secret::new(Bytes::new()),
            },
            Command::User { name: b("a b") },
            Command::Apop {
                name: b("bob"),
                digest: Secret::new(b("c4c9334bac560ecc979e58001b3e22fb\r\nDELE 1")),
            },
            Command::Apop {
                name: b("bob"),
                digest: Secret::new(b("not hex")),
            },
            Command::Retr { msg: 0 },
            Command::Top { msg: 0, lines: 1 },
            Command::Lang {
                tag: Some(b("en\r\nDELE 1")),
            },
            Command::Auth {
                mechanism: Some(b("PLAIN x")),
                initial_response: None,
            },
            Command::Auth {
                mechanism: Some(b("PLAIN")),
                initial_response: Some(Secret::new(b("x\r\nDELE 1"))),
            },
            Command::Auth {
                mechanism: None,
                initial_response: Some(Secret::new(b("dGVzdA=="))),
            },
        ];
        let mut c = ready_client();
        for cmd in bad {
            let r = c.send(cmd.clone());
            assert!(is_invalid(&r), "{cmd:?}: {r:?}");
            assert_eq!(drain(|| c.poll_transmit()), "", "{cmd:?}");
        }
    }

    #[test]
    fn client_refuses_an_auth_response_with_crlf() {
        let mut c = ready_client();
        c.send(Command::Auth {
            mechanism: Some(b("PLAIN")),
            initial_response: None,
        })
        .unwrap();
        drain(|| c.poll_transmit());
        c.handle_input(b"+ \r\n");
        while c.poll_event().unwrap().is_some() {}
        let r = c.send_auth_response(Secret::new(b("dGVzdA==\r\nDELE 1")));
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!(drain(|| c.poll_transmit()), "");
        c.send_auth_response(Secret::new(b("dGVzdA=="))).unwrap();
        assert_eq!(drain(|| c.poll_transmit()), "dGVzdA==\r\n");
    }

    #[test]
    fn apop_digest_is_redacted_in_debug() {
        let cmd = Command::parse(&b("APOP mrose c4c9334bac560ecc979e58001b3e22fb")).unwrap();
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("c4c9334b"), "{shown}");
        assert!(shown.contains("mrose"), "{shown}");
    }

    fn busy_server(config: impl FnOnce(&mut ServerConfig), command: &str) -> ServerSession {
        let mut cfg = ServerConfig::new(no_tls_server());
        cfg.insecure_auth_in_cleartext = true;
        config(&mut cfg);
        let mut s = ServerSession::new(Arc::new(cfg)).unwrap();
        drain(|| s.poll_transmit());
        s.handle_input(command.as_bytes());
        while let Some(e) = s.poll_event().unwrap() {
            if matches!(e, ServerEvent::Command(_)) {
                return s;
            }
        }
        panic!("no command");
    }

    #[test]
    fn server_reject_text_cannot_add_a_response() {
        let mut s = busy_server(|_| {}, "USER bob\r\n");
        s.reject(None, "no\r\n+OK forged").unwrap();
        assert_eq!(drain(|| s.poll_transmit()), "-ERR no  +OK forged\r\n");
    }

    #[test]
    fn server_refuses_status_lines_that_read_back_differently() {
        let mut s = busy_server(|_| {}, "USER bob\r\n");
        let crlf = StatusLine::new(Status::Ok, b("x\r\n+OK forged"));
        assert!(is_invalid(&s.reply(crlf)));
        let mut bad_code = StatusLine::new(Status::Err, b("t"));
        bad_code.code = Some(Code::Other(b("X] [AUTH")));
        assert!(is_invalid(&s.reply(bad_code)));
        let typed = StatusLine::new(Status::Err, b("[AUTH] typed text, no code"));
        assert!(is_invalid(&s.reply(typed)));
        assert_eq!(drain(|| s.poll_transmit()), "");
        // Free text may carry a code, written as given (RFC 2449 §8).
        s.reject(None, "[IN-USE] busy").unwrap();
        assert_eq!(drain(|| s.poll_transmit()), "-ERR [IN-USE] busy\r\n");
    }

    #[test]
    fn server_continuation_must_be_base64() {
        let mut s = busy_server(
            |c| c.sasl_mechanisms = vec!["PLAIN".into()],
            "AUTH PLAIN\r\n",
        );
        let r = s.continue_request(b"\r\n+OK forged");
        assert!(is_invalid(&r), "{r:?}");
        assert_eq!(drain(|| s.poll_transmit()), "");
        s.continue_request(b"").unwrap();
        assert_eq!(drain(|| s.poll_transmit()), "+ \r\n");
    }

    #[test]
    fn server_multiline_body_ends_only_at_its_terminator() {
        // The session hands USER first; PASS and RETR follow.
        let mut s = busy_server(|_| {}, "USER a\r\nPASS b\r\nRETR 1\r\n");
        s.accept().unwrap();
        loop {
            match s.poll_event().unwrap() {
                Some(ServerEvent::Command(Command::Retr { .. })) => break,
                Some(ServerEvent::Command(_)) => s.accept().unwrap(),
                Some(_) => {}
                None => panic!("no RETR"),
            }
        }
        drain(|| s.poll_transmit());
        s.reply_multiline("follows\r\n.", b"a\r\n.\r\n+OK forged\n.")
            .unwrap();
        assert_eq!(
            drain(|| s.poll_transmit()),
            "+OK follows  .\r\na\r\n..\r\n+OK forged\r\n..\r\n.\r\n"
        );
    }
}
