//! The adversarial review of the issue #12 fixes, kept as regression tests.
//! `fixed_*`: each failed before its fix (the untaken-answers cap bypassed
//! through an application call, a refused IMAP `EXTERNAL` wedging the client,
//! `DATA` after a non-last `BDAT` chunk, `from_params`/`from_args` values
//! that split into two, IMAP/POP3 lines ending at a bare LF, invisible
//! format characters in escaped peer text). `held_*`: attacks that held.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use starttls::{imap, pop3, smtp, ClientTls, ServerTls, TlsInfo, TlsPolicy, UpgradeEvent};

fn all_out(f: &mut dyn FnMut() -> Option<Bytes>) -> String {
    let mut s = Vec::new();
    while let Some(x) = f() {
        s.extend_from_slice(&x);
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn tls_server() -> ServerTls {
    ServerTls::Rustls(common::server_tls())
}

// ---------------------------------------------------------------------------
// Bare LF on IMAP / POP3 command lines (documented gap, #14 "Not covered")
// ---------------------------------------------------------------------------

#[test]
fn fixed_imap_bare_lf_line_then_starttls_upgrades() {
    let mut s = imap::ServerSession::new(Arc::new(imap::ServerConfig::new(tls_server()))).unwrap();
    let _ = all_out(&mut || s.poll_transmit());
    // A front end splitting on CRLF sees ONE line: `a NOOP<LF>b STARTTLS`.
    s.handle_input(b"a NOOP\nb STARTTLS\r\n");
    let out = all_out(&mut || s.poll_transmit());
    let mut upgraded = false;
    while let Ok(Some(e)) = s.poll_event() {
        if matches!(e, imap::ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted)) {
            upgraded = true;
        }
    }
    assert!(
        !upgraded,
        "IMAP server upgraded on a line a CRLF splitter never saw: {out:?}"
    );
}

#[test]
fn fixed_pop3_bare_lf_line_then_stls_upgrades() {
    let mut s = pop3::ServerSession::new(Arc::new(pop3::ServerConfig::new(tls_server()))).unwrap();
    let _ = all_out(&mut || s.poll_transmit());
    s.handle_input(b"NOOP\nSTLS\r\n");
    let out = all_out(&mut || s.poll_transmit());
    let mut upgraded = false;
    while let Ok(Some(e)) = s.poll_event() {
        if matches!(e, pop3::ServerEvent::Upgrade(UpgradeEvent::UpgradeStarted)) {
            upgraded = true;
        }
    }
    assert!(
        !upgraded,
        "POP3 server upgraded on a line a CRLF splitter never saw: {out:?}"
    );
}

// ---------------------------------------------------------------------------
// IMAP client: EXTERNAL without SASL-IR leaves its response queued forever
// ---------------------------------------------------------------------------

fn imap_client_byo_over_tls(caps: &str) -> imap::ClientSession {
    let cfg = imap::ClientConfig::new(TlsPolicy::StartTlsRequired, ClientTls::External);
    let mut c = imap::ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    let o = all_out(&mut || c.poll_transmit());
    eprintln!("client wrote {o:?}");
    let tag = o.split(' ').next().unwrap().to_string();
    c.handle_input(format!("{tag} OK go\r\n").as_bytes());
    let _ = all_out(&mut || c.poll_transmit());
    c.tls_established(TlsInfo::unknown().with_own_certificate(true))
        .unwrap();
    let o = all_out(&mut || c.poll_transmit());
    eprintln!("client wrote after TLS {o:?}");
    let tag = o.split(' ').next().unwrap().to_string();
    c.handle_input(format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n").as_bytes());
    while let Ok(Some(e)) = c.poll_event() {
        eprintln!("{e:?}");
    }
    assert!(c.is_ready());
    c
}

#[test]
fn fixed_imap_client_external_refused_without_continuation_wedges_session() {
    let mut c = imap_client_byo_over_tls("IMAP4rev1 AUTH=EXTERNAL");
    let tag = c.send_auth_external(Some("admin")).unwrap();
    let o = all_out(&mut || c.poll_transmit());
    assert_eq!(
        o,
        format!(
            "{} AUTHENTICATE EXTERNAL\r\n",
            String::from_utf8_lossy(&tag)
        )
    );
    // The server refuses at once, with no continuation (RFC 9051 allows it).
    c.handle_input(format!("{} NO not for you\r\n", String::from_utf8_lossy(&tag)).as_bytes());
    while let Ok(Some(_)) = c.poll_event() {}
    // The session must be usable again, and the queued authzid line gone.
    let r = c.send(imap::CommandBody::Noop);
    let later = all_out(&mut || c.poll_transmit());
    // An unsolicited continuation must not release the stale authzid.
    c.handle_input(b"+ \r\n");
    let stale = all_out(&mut || c.poll_transmit());
    assert!(
        r.is_ok() && !stale.contains("YWRtaW4="),
        "client wedged after a refused EXTERNAL: {r:?} (wrote {later:?}); \
         after an unsolicited `+` it wrote {stale:?}"
    );
}

// ---------------------------------------------------------------------------
// Application values: raw-bytes containers pass the round-trip check
// ---------------------------------------------------------------------------

fn smtp_ready_client() -> smtp::ClientSession {
    let cfg = smtp::ClientConfig::new("client.test", TlsPolicy::Opportunistic, ClientTls::External);
    let mut c = smtp::ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"220 mx.test ESMTP\r\n");
    let _ = all_out(&mut || c.poll_transmit());
    c.handle_input(b"250-mx.test\r\n250-DSN\r\n250 PIPELINING\r\n");
    while let Ok(Some(e)) = c.poll_event() {
        if matches!(e, smtp::ClientEvent::Ready { .. }) {
            return c;
        }
    }
    panic!("not ready");
}

/// `Parameters::from_params` + `send`: an ENVID taken from outside (with a
/// SP) adds a second parameter; `Command::check` compares raw bytes, so the
/// session writes it. (Documented: only `try_from_params` refuses it.)
#[test]
fn fixed_smtp_send_accepts_envid_that_adds_a_parameter() {
    use smtp::command::{Host, Mailbox, Parameter, Parameters, Path, ReversePath};
    let mut c = smtp_ready_client();
    let r = c.send(smtp::Command::Mail {
        from: ReversePath::Path(Path {
            mailbox: Mailbox {
                local_part: Bytes::from_static(b"a"),
                domain: Host::Domain(Bytes::from_static(b"b.example")),
            },
            source_route: None,
        }),
        params: Parameters::from_params(&[Parameter::EnvId(Bytes::from_static(
            b"id1 RET=FULL AUTH=<>",
        ))]),
    });
    let wire = all_out(&mut || c.poll_transmit());
    assert!(
        r.is_err(),
        "one ENVID value became three parameters on the wire: {wire:?}"
    );
}

/// Same for IMAP `Args::from_args`: one `Atom` becomes two arguments.
#[test]
fn fixed_imap_send_accepts_atom_that_adds_an_argument() {
    use imap::{Arg, Args, CommandBody};
    let cfg = imap::ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    let mut c = imap::ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"* OK [CAPABILITY IMAP4rev2] hi\r\n");
    let _ = all_out(&mut || c.poll_transmit());
    while let Ok(Some(_)) = c.poll_event() {}
    assert!(c.is_ready());
    let r = c.send(CommandBody::Other {
        name: Bytes::from_static(b"DELETE"),
        args: Args::from_args(&[Arg::Atom(Bytes::from_static(b"Drafts Trash"))]),
    });
    let wire = all_out(&mut || c.poll_transmit());
    assert!(
        r.is_err(),
        "one mailbox atom became two arguments: {wire:?}"
    );
}

/// Typed fields hold: a SP in a POP3 name, an IMAP LOGIN atom, an SMTP
/// local part, is refused.
#[test]
fn held_typed_values_with_sp_are_refused() {
    use imap::{AString, CommandBody};
    use starttls::{Secret, UsageError};
    let cfg = imap::ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    let mut cfg = cfg;
    cfg.insecure_login_in_cleartext = true;
    let mut c = imap::ClientSession::new(Arc::new(cfg)).unwrap();
    c.handle_input(b"* OK [CAPABILITY IMAP4rev2] hi\r\n");
    let _ = all_out(&mut || c.poll_transmit());
    while let Ok(Some(_)) = c.poll_event() {}
    for (u, p) in [
        (
            AString::Atom(Bytes::from_static(b"a b")),
            AString::Atom(Bytes::from_static(b"x")),
        ),
        (
            AString::Quoted(Bytes::from_static(b"a\" \"b")),
            AString::Atom(Bytes::from_static(b"x")),
        ),
        (
            AString::Quoted(Bytes::from_static(b"a\\")),
            AString::Atom(Bytes::from_static(b"x")),
        ),
        (
            AString::Atom(Bytes::from_static(b"a")),
            AString::Quoted(Bytes::from_static(b"x\" y")),
        ),
    ] {
        let r = c.send(CommandBody::Login {
            username: u.clone(),
            password: Secret::new(p),
        });
        assert!(
            matches!(r, Err(UsageError::InvalidValue { .. })),
            "{u:?}: {r:?}"
        );
    }
    assert_eq!(all_out(&mut || c.poll_transmit()), "");
}

// ---------------------------------------------------------------------------
// Panics from any input at any chunking (randomized, token dictionary)
// ---------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        common::xorshift(&mut self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b".",
    b"..",
    b"\r\n.\r\n",
    b"\n.\n",
    b"EHLO x",
    b"HELO x",
    b"LHLO x",
    b"STARTTLS",
    b"STLS",
    b"a STARTTLS",
    b"MAIL FROM:<a@b>",
    b"RCPT TO:<c@d>",
    b"DATA",
    b"BDAT 5",
    b"BDAT 0 LAST",
    b"BDAT 3 LAST",
    b"BDAT 18446744073709551615",
    b"AUTH PLAIN",
    b"AUTH EXTERNAL",
    b"AUTH EXTERNAL =",
    b"AUTHENTICATE EXTERNAL",
    b"AUTH",
    b"*",
    b"=",
    b"dGVzdA==",
    b"a LOGIN {5}",
    b"a LOGIN {5+}",
    b"{0}",
    b"{4294967295}",
    b"~{3}",
    b"a IDLE",
    b"DONE",
    b"a ID NIL",
    b"a ID (\"x\" {3+}",
    b"USER u",
    b"PASS p",
    b"APOP u 0123456789abcdef0123456789abcdef",
    b"CAPA",
    b"RETR 1",
    b"LIST",
    b"QUIT",
    b"a LOGOUT",
    b"NOOP",
    b"a NOOP",
    b"RSET",
    b"250 ok",
    b"250-x",
    b"220 mx",
    b"334 ",
    b"354 go",
    b"235 ok",
    b"+OK",
    b"-ERR",
    b"+ ",
    b"* OK",
    b"* BYE",
    b"A1 OK",
    b"A2 OK",
    b"A3 NO",
    b"A1 BAD",
    b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=EXTERNAL SASL-IR",
    b"* OK [CAPABILITY IMAP4rev1 STARTTLS]",
    b"* 1 FETCH (BODY[] {3}",
    b"\xff",
    b"\xc0\xaf",
    b"\xe2\x80\xae",
    b"250 STARTTLS",
    b"250-STARTTLS",
    b"250-AUTH EXTERNAL PLAIN",
    b"SASL EXTERNAL",
    b"STLS\r\n.",
    b"a AUTHENTICATE PLAIN",
    b"a AUTHENTICATE EXTERNAL =",
    b"[",
    b"]",
    b"(",
    b")",
    b"\"",
    b"\\",
];

fn random_input(r: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..r.below(40) {
        if r.below(8) == 0 {
            let n = r.below(300);
            v.extend((0..n).map(|_| r.next() as u8));
        } else {
            v.extend_from_slice(TOKENS[r.below(TOKENS.len())]);
            if r.below(2) == 0 {
                v.extend_from_slice(b"\r\n");
            }
        }
    }
    v
}

fn chunks(r: &mut Rng, v: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let n = 1 + r.below(rest.len().min(17));
        let (a, b) = rest.split_at(n);
        out.push(a.to_vec());
        rest = b;
    }
    out
}

macro_rules! hammer {
    ($name:ident, $mk:expr, $answer:expr) => {
        #[test]
        fn $name() {
            let mut r = Rng(0x9e3779b97f4a7c15 ^ line!() as u64);
            for _ in 0..3000 {
                let input = random_input(&mut r);
                let mut s = ($mk)(&mut r);
                for c in chunks(&mut r, &input) {
                    s.handle_input(&c);
                    while let Ok(Some(_e)) = s.poll_event() {}
                    if r.below(2) == 0 {
                        let f: &dyn Fn(&mut _, &mut Rng) = &$answer;
                        f(&mut s, &mut r);
                    }
                    if r.below(2) == 0 {
                        while s.poll_transmit().is_some() {}
                    }
                }
                s.handle_eof();
                while let Ok(Some(_)) = s.poll_event() {}
                while s.poll_transmit().is_some() {}
            }
        }
    };
}

fn smtp_server_cfg(r: u64) -> smtp::ServerSession {
    let mut c = smtp::ServerConfig::new("mx.test", tls_server());
    c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    c.insecure_auth_in_cleartext = r % 2 == 0;
    c.lmtp = r % 3 == 0;
    c.insecure_bare_lf_line_ends = r % 5 == 0;
    smtp::ServerSession::new(Arc::new(c)).unwrap()
}

hammer!(
    held_no_panic_smtp_server,
    |r: &mut Rng| smtp_server_cfg(r.next()),
    |s: &mut smtp::ServerSession, r: &mut Rng| {
        let _ = match r.below(3) {
            0 => s.accept(),
            1 => s.reject(550, None, "no\r\n"),
            _ => s.reply(smtp::Reply::new(334, None, &[b""])),
        };
    }
);

hammer!(
    held_no_panic_imap_server,
    |r: &mut Rng| {
        let mut c = imap::ServerConfig::new(tls_server());
        c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
        c.insecure_login_in_cleartext = r.next() % 2 == 0;
        c.literal_plus = r.next() % 2 == 0;
        imap::ServerSession::new(Arc::new(c)).unwrap()
    },
    |s: &mut imap::ServerSession, r: &mut Rng| {
        let _ = match r.below(3) {
            0 => s.accept(),
            1 => s.complete(imap::Status::No, None, "no {5}"),
            _ => s.continue_request(b""),
        };
    }
);

hammer!(
    held_no_panic_pop3_server,
    |_: &mut Rng| {
        let mut c = pop3::ServerConfig::new(tls_server());
        c.sasl_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
        pop3::ServerSession::new(Arc::new(c)).unwrap()
    },
    |s: &mut pop3::ServerSession, r: &mut Rng| {
        let _ = match r.below(4) {
            0 => s.accept(),
            1 => s.reject(None, "no"),
            2 => s.reply_multiline("x", b".\r\n.\n\r."),
            _ => s.continue_request(b""),
        };
    }
);

hammer!(
    held_no_panic_smtp_client,
    |_: &mut Rng| smtp::ClientSession::new(Arc::new(smtp::ClientConfig::new(
        "c.test",
        TlsPolicy::Opportunistic,
        ClientTls::Rustls {
            config: common::client_tls(),
            server_name: common::localhost()
        }
    )))
    .unwrap(),
    |s: &mut smtp::ClientSession, r: &mut Rng| {
        let _ = match r.below(3) {
            0 => s.send(smtp::Command::Noop { arg: None }),
            1 => s.send_data(b"a\n.\nb"),
            _ => s.finish_data(),
        };
    }
);

hammer!(
    held_no_panic_imap_client,
    |_: &mut Rng| imap::ClientSession::new(Arc::new(imap::ClientConfig::new(
        TlsPolicy::Opportunistic,
        ClientTls::Rustls {
            config: common::client_tls(),
            server_name: common::localhost()
        }
    )))
    .unwrap(),
    |s: &mut imap::ClientSession, r: &mut Rng| {
        let _ = match r.below(3) {
            0 => s.send(imap::CommandBody::Noop).map(|_| ()),
            1 => s.idle_done(),
            _ => s.send(imap::CommandBody::Idle).map(|_| ()),
        };
    }
);

hammer!(
    held_no_panic_pop3_client,
    |_: &mut Rng| pop3::ClientSession::new(Arc::new(pop3::ClientConfig::new(
        TlsPolicy::Opportunistic,
        ClientTls::Rustls {
            config: common::client_tls(),
            server_name: common::localhost()
        }
    )))
    .unwrap(),
    |s: &mut pop3::ClientSession, r: &mut Rng| {
        let _ = match r.below(2) {
            0 => s.send(pop3::Command::Capa),
            _ => s.send(pop3::Command::Retr { msg: 1 }),
        };
    }
);

// ---------------------------------------------------------------------------
// The upgrade boundary after the #12 changes (bring-your-own TLS)
// ---------------------------------------------------------------------------

fn tls_up_with_cert() -> TlsInfo {
    let id = starttls::ClientIdentity::from_certificate(common::pki().leaf_der.clone()).unwrap();
    TlsInfo::unknown().with_client_identity(id)
}

#[test]
fn held_server_injection_after_starttls_is_discarded_in_all_three() {
    // SMTP
    let mut c = smtp::ServerConfig::new("mx.test", ServerTls::External);
    c.auth_mechanisms = vec!["EXTERNAL".into()];
    let mut s = smtp::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(b"EHLO x\r\nSTARTTLS\r\nAUTH EXTERNAL =\r\nMAIL FROM:<a@b>\r\n");
    while s.poll_transmit().is_some() {}
    s.handle_input(b"RCPT TO:<x@y>\r\n");
    s.tls_established(tls_up_with_cert()).unwrap();
    let mut ev = Vec::new();
    while let Ok(Some(e)) = s.poll_event() {
        ev.push(format!("{e:?}"));
    }
    assert!(
        ev.iter().any(|e| e.contains("InjectionDiscarded")),
        "{ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| e.contains("Command(") || e.contains("ExternalAuthRequested")),
        "{ev:?}"
    );
    // IMAP
    let mut c = imap::ServerConfig::new(ServerTls::External);
    c.auth_mechanisms = vec!["EXTERNAL".into()];
    let mut s = imap::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(b"a STARTTLS\r\nb AUTHENTICATE EXTERNAL =\r\n");
    while s.poll_transmit().is_some() {}
    s.tls_established(tls_up_with_cert()).unwrap();
    let mut ev = Vec::new();
    while let Ok(Some(e)) = s.poll_event() {
        ev.push(format!("{e:?}"));
    }
    assert!(
        ev.iter().any(|e| e.contains("InjectionDiscarded")),
        "{ev:?}"
    );
    assert!(
        !ev.iter().any(|e| e.contains("ExternalAuthRequested")),
        "{ev:?}"
    );
    // POP3
    let mut c = pop3::ServerConfig::new(ServerTls::External);
    c.sasl_mechanisms = vec!["EXTERNAL".into()];
    let mut s = pop3::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(b"STLS\r\nAUTH EXTERNAL =\r\n");
    while s.poll_transmit().is_some() {}
    s.tls_established(tls_up_with_cert()).unwrap();
    let mut ev = Vec::new();
    while let Ok(Some(e)) = s.poll_event() {
        ev.push(format!("{e:?}"));
    }
    assert!(
        ev.iter().any(|e| e.contains("InjectionDiscarded")),
        "{ev:?}"
    );
    assert!(
        !ev.iter().any(|e| e.contains("ExternalAuthRequested")),
        "{ev:?}"
    );
}

#[test]
fn held_external_never_accepted_in_cleartext() {
    let mut c = smtp::ServerConfig::new("mx.test", tls_server());
    c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    c.insecure_auth_in_cleartext = true;
    let mut s = smtp::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(b"EHLO x\r\nAUTH EXTERNAL =\r\nAUTH external\r\n=\r\n");
    let out = all_out(&mut || s.poll_transmit());
    assert!(
        !out.lines()
            .any(|l| l.starts_with("250") && l.contains("EXTERNAL")),
        "advertised in cleartext: {out}"
    );
    while let Ok(Some(e)) = s.poll_event() {
        assert!(
            !matches!(
                e,
                smtp::ServerEvent::ExternalAuthRequested(_) | smtp::ServerEvent::AuthResponse(_)
            ),
            "{e:?}"
        );
    }
    let mut c = imap::ServerConfig::new(tls_server());
    c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    c.insecure_login_in_cleartext = true;
    let mut s = imap::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(
        b"a CAPABILITY\r\nb AUTHENTICATE EXTERNAL =\r\nc AUTHENTICATE eXternal\r\n=\r\n",
    );
    let out = all_out(&mut || s.poll_transmit());
    assert!(!out.contains("AUTH=EXTERNAL"), "{out}");
    while let Ok(Some(e)) = s.poll_event() {
        assert!(
            !matches!(
                e,
                imap::ServerEvent::ExternalAuthRequested(_) | imap::ServerEvent::AuthResponse(_)
            ),
            "{e:?}"
        );
    }
    let mut c = pop3::ServerConfig::new(tls_server());
    c.sasl_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    let mut s = pop3::ServerSession::new(Arc::new(c)).unwrap();
    s.handle_input(b"CAPA\r\nAUTH EXTERNAL =\r\nAUTH EXTERNAL\r\n=\r\n");
    let out = all_out(&mut || s.poll_transmit());
    assert!(
        !out.lines()
            .any(|l| l.starts_with("SASL") && l.contains("EXTERNAL")),
        "{out}"
    );
    while let Ok(Some(e)) = s.poll_event() {
        assert!(
            !matches!(
                e,
                pop3::ServerEvent::ExternalAuthRequested(_) | pop3::ServerEvent::AuthResponse(_)
            ),
            "{e:?}"
        );
    }
}

#[test]
fn held_smtp_client_rejects_reply_before_its_command_was_taken() {
    let cfg = smtp::ClientConfig::new("client.test", TlsPolicy::Opportunistic, ClientTls::External);
    let mut c = smtp::ClientSession::new(Arc::new(cfg)).unwrap();
    // Greeting and a premature EHLO reply in one read, EHLO not yet taken.
    c.handle_input(b"220 mx.test ESMTP\r\n250-mx.test\r\n250 AUTH PLAIN\r\n");
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
    assert!(err.is_some(), "reply to an unsent EHLO accepted");
}

// ---------------------------------------------------------------------------
// Escaper misses (threat class 6, UI spoofing)
// ---------------------------------------------------------------------------

#[test]
fn fixed_escaper_passes_invisible_format_characters() {
    use starttls::Escaped;
    for (what, s) in [
        ("ZWSP U+200B", "mx.exa\u{200b}mple.org"),
        ("ZWJ U+200D", "a\u{200d}b"),
        ("word joiner U+2060", "a\u{2060}b"),
        ("BOM U+FEFF", "\u{feff}250 ok"),
        ("soft hyphen U+00AD", "pay\u{ad}pal"),
        ("tag chars U+E0041..", "ok\u{e0049}\u{e0047}\u{e004e}"),
        ("deprecated format U+206B", "a\u{206b}b"),
        ("interlinear U+FFF9", "a\u{fff9}b\u{fffb}"),
    ] {
        let shown = Escaped::new(s).to_string();
        assert!(
            shown.is_ascii(),
            "{what} passes through unescaped (invisible in a terminal): {shown:?}"
        );
    }
}

#[test]
fn held_escaper_overlong_and_surrogates_are_hex() {
    use starttls::Escaped;
    assert_eq!(Escaped::new(&b"\xc0\xaf"[..]).to_string(), r"\xc0\xaf");
    assert_eq!(
        Escaped::new(&b"\xed\xa0\x80"[..]).to_string(),
        r"\xed\xa0\x80"
    );
    assert_eq!(
        Escaped::new(&b"\xe0\x80\x8a"[..]).to_string(),
        r"\xe0\x80\x8a"
    );
}

// ---------------------------------------------------------------------------
// Output growth: answers produced after an application call are not counted
// ---------------------------------------------------------------------------

/// A peer that never reads (so the caller's socket is write-blocked and it
/// takes no output) pipelines `MAIL` + thousands of `EHLO`. The `EHLO`
/// answers are written when the application answers `MAIL` (`Engine::call`
/// -> `run`, not `run_on_input`), so `MAX_UNTAKEN_ANSWERS` (1 MiB) never
/// counts them: 20x amplification per round, unbounded over rounds.
#[test]
fn fixed_untaken_answers_cap_bypassed_via_application_call() {
    let mut s = smtp::ServerSession::new(Arc::new(smtp::ServerConfig::new(
        "mx.test",
        ServerTls::None,
    )))
    .unwrap();
    let mut round = Vec::new();
    round.extend_from_slice(b"RSET\r\nMAIL FROM:<a@b>\r\n");
    for _ in 0..7000 {
        round.extend_from_slice(b"EHLO x\r\n");
    }
    let mut failed = None;
    for _ in 0..40 {
        s.handle_input(&round);
        loop {
            match s.poll_event() {
                Ok(Some(smtp::ServerEvent::Command(_))) => {
                    let _ = s.accept();
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_some() {
            break;
        }
    }
    let queued: usize = std::iter::from_fn(|| s.poll_transmit())
        .map(|b| b.len())
        .sum();
    assert!(
        failed.is_some() || queued <= 2 << 20,
        "{queued} octets of the session's own answers queued untaken, no error"
    );
}

/// RFC 3030 §3: `DATA` inside a `BDAT` transaction (after a non-last
/// chunk) is a sequence error; a body then mixes chunked and dot-stuffed
/// parts, and an end-of-data look-alike in the first chunk is ambiguous to
/// a relay downstream.
#[test]
fn fixed_data_after_non_last_bdat_chunk_reaches_application() {
    let mut s = smtp::ServerSession::new(Arc::new(smtp::ServerConfig::new(
        "mx.test",
        ServerTls::None,
    )))
    .unwrap();
    s.handle_input(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 7\r\nx\r\n.\r\nyDATA\r\n");
    let mut saw_data_cmd = false;
    let mut log = Vec::new();
    for _ in 0..10 {
        while let Ok(Some(e)) = s.poll_event() {
            log.push(format!("{e:?}"));
            match e {
                smtp::ServerEvent::Command(smtp::Command::Data) => {
                    saw_data_cmd = true;
                    let _ = s.accept();
                }
                smtp::ServerEvent::Command(_) | smtp::ServerEvent::ChunkEnd => {
                    let _ = s.accept();
                }
                _ => {}
            }
        }
    }
    let out = all_out(&mut || s.poll_transmit());
    assert!(
        !saw_data_cmd,
        "DATA after a BDAT chunk reached the application: {log:?} {out:?}"
    );
}
