//! Session checks.
//!
//! * `session_*`: an arbitrary sequence of operations (peer bytes in
//!   arbitrary chunks, application calls, taking output, the caller's TLS
//!   coming up, end of input) against each protocol and role, with TLS
//!   brought by the caller so every state is reachable. Invariants: no
//!   panic; a failed session stays failed with the same error and is closed;
//!   nothing happens after close; every peer text carries the trust level of
//!   the phase it arrived in; a server hands no command to the application
//!   between the upgrade point and TLS.
//! * `taint_*`: everything the peer sent before the upgrade point is marked;
//!   none of it may reach the application after TLS, and no cleartext
//!   capability survives: after TLS, a fresh capability exchange is the only
//!   thing that happens — checked in both roles (a server must not act on it;
//!   a client must hold no capability until the answer received over TLS).
//! * `split_invariance`: the same input fed whole and in fuzzer-chosen
//!   chunks gives the same events and the same output.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use starttls::{imap, pop3, smtp, ClientTls, Error, ServerTls, TlsInfo, TlsPolicy, Trust};

/// The session under test.
enum Any {
    SmtpServer(smtp::ServerSession),
    SmtpClient(smtp::ClientSession),
    ImapServer(imap::ServerSession),
    ImapClient(imap::ClientSession),
    Pop3Server(pop3::ServerSession),
    Pop3Client(pop3::ClientSession),
}

macro_rules! each {
    ($s:expr, $v:ident => $e:expr) => {
        match $s {
            Any::SmtpServer($v) => $e,
            Any::SmtpClient($v) => $e,
            Any::ImapServer($v) => $e,
            Any::ImapClient($v) => $e,
            Any::Pop3Server($v) => $e,
            Any::Pop3Client($v) => $e,
        }
    };
}

fn new_session(kind: u8, policy: u8) -> Any {
    let tls_policy = match policy % 3 {
        0 => TlsPolicy::StartTlsRequired,
        1 => TlsPolicy::Opportunistic,
        _ => TlsPolicy::Implicit,
    };
    let implicit = tls_policy == TlsPolicy::Implicit;
    match kind % 6 {
        0 => {
            let mut c = smtp::ServerConfig::new("mx.test", ServerTls::External);
            c.implicit_tls = implicit;
            c.require_tls = policy % 2 == 1;
            c.auth_mechanisms = vec!["PLAIN".into()];
            Any::SmtpServer(smtp::ServerSession::new(Arc::new(c)).expect("valid config"))
        }
        1 => Any::SmtpClient(
            smtp::ClientSession::new(Arc::new(smtp::ClientConfig::new(
                "client.test",
                tls_policy,
                ClientTls::External,
            )))
            .expect("valid config"),
        ),
        2 => {
            let mut c = imap::ServerConfig::new(ServerTls::External);
            c.implicit_tls = implicit;
            c.require_tls = policy % 2 == 1;
            c.auth_mechanisms = vec!["PLAIN".into()];
            Any::ImapServer(imap::ServerSession::new(Arc::new(c)).expect("valid config"))
        }
        3 => Any::ImapClient(
            imap::ClientSession::new(Arc::new(imap::ClientConfig::new(
                tls_policy,
                ClientTls::External,
            )))
            .expect("valid config"),
        ),
        4 => {
            let mut c = pop3::ServerConfig::new(ServerTls::External);
            c.implicit_tls = implicit;
            c.require_tls = policy % 2 == 1;
            c.sasl_mechanisms = vec!["PLAIN".into()];
            Any::Pop3Server(pop3::ServerSession::new(Arc::new(c)).expect("valid config"))
        }
        _ => Any::Pop3Client(
            pop3::ClientSession::new(Arc::new(pop3::ClientConfig::new(
                tls_policy,
                ClientTls::External,
            )))
            .expect("valid config"),
        ),
    }
}

/// What the harness observed.
#[derive(Default, Debug, PartialEq, Eq)]
struct Observed {
    log: Vec<String>,
    sent: Vec<u8>,
    error: Option<Error>,
    tls_seen: bool,
    /// Between the upgrade point and TLS.
    upgrading: bool,
}

impl Any {
    fn input(&mut self, d: &[u8]) {
        each!(self, s => s.handle_input(d))
    }
    fn eof(&mut self) {
        each!(self, s => s.handle_eof())
    }
    fn closed(&self) -> bool {
        each!(self, s => s.is_closed())
    }
    fn trust(&self) -> Trust {
        each!(self, s => s.trust())
    }
    fn take(&mut self, into: &mut Vec<u8>) {
        while let Some(b) = each!(self, s => s.poll_transmit()) {
            into.extend_from_slice(&b);
        }
    }
    fn tls_established(&mut self) {
        let _ = each!(self, s => s.tls_established(TlsInfo::unknown()));
    }

    /// Polls every event, acting as a simple application would, and checks
    /// the per-event invariants.
    fn events(&mut self, o: &mut Observed, act: bool) {
        loop {
            let next: Result<Option<String>, Error> = match self {
                Any::SmtpServer(s) => s.poll_event().map(|e| {
                    e.map(|e| {
                        if act
                            && matches!(
                                e,
                                smtp::ServerEvent::Command(_)
                                    | smtp::ServerEvent::MessageEnd
                                    | smtp::ServerEvent::ChunkEnd
                                    | smtp::ServerEvent::AuthResponse(_)
                            )
                        {
                            while s.is_waiting_for_reply() && s.accept().is_ok() {}
                        }
                        format!("{e:?}")
                    })
                }),
                Any::ImapServer(s) => s.poll_event().map(|e| {
                    e.map(|e| {
                        if act && s.is_waiting_for_reply() {
                            let _ = s.accept();
                        }
                        format!("{e:?}")
                    })
                }),
                Any::Pop3Server(s) => s.poll_event().map(|e| {
                    e.map(|e| {
                        if act {
                            if let pop3::ServerEvent::Command(c) = &e {
                                let _ = if c.has_multiline_reply() {
                                    s.reply_multiline("ok", b"a\r\n.b\r\n")
                                } else {
                                    s.accept()
                                };
                            } else if s.is_waiting_for_reply() {
                                let _ = s.accept();
                            }
                        }
                        format!("{e:?}")
                    })
                }),
                Any::SmtpClient(s) => s.poll_event().map(|e| e.map(|e| format!("{e:?}"))),
                Any::ImapClient(s) => s.poll_event().map(|e| e.map(|e| format!("{e:?}"))),
                Any::Pop3Client(s) => s.poll_event().map(|e| e.map(|e| format!("{e:?}"))),
            };
            match next {
                Ok(Some(e)) => {
                    check_event(&e, o);
                    o.log.push(e);
                }
                Ok(None) => return,
                Err(e) => {
                    match &o.error {
                        None => {
                            o.log.push(format!("error {e:?}"));
                            o.error = Some(e);
                        }
                        Some(prev) => assert_eq!(prev, &e, "a failed session changed its error"),
                    }
                    assert!(self.closed(), "a failed session is closed");
                    return;
                }
            }
        }
    }

    /// An application call chosen by the fuzzer; usage errors are fine.
    fn app(&mut self, choice: u8) {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        match self {
            Any::SmtpServer(s) => {
                let _ = match choice % 4 {
                    0 => s.accept(),
                    1 => s.reject(550, None, "no"),
                    2 => s.reply(smtp::Reply::new(354, None, &[b"go"])),
                    _ => s.reply(smtp::Reply::new(334, None, &[b""])),
                };
            }
            Any::SmtpClient(s) => {
                let _ = match choice % 8 {
                    0 => s.send(smtp::Command::parse(&b(b"MAIL FROM:<a@b.test>")).expect("valid")),
                    1 => s.send(smtp::Command::parse(&b(b"RCPT TO:<c@d.test>")).expect("valid")),
                    2 => s.send(smtp::Command::Data),
                    3 => s.send_data(b"line\r\n.dot\r\n"),
                    4 => s.finish_data(),
                    5 => s.send(smtp::Command::parse(&b(b"AUTH PLAIN AGFAYg==")).expect("valid")),
                    6 => s.send_auth_response(starttls::Secret::new(b(b"AGFAYg=="))),
                    _ => s.send(smtp::Command::Quit),
                };
            }
            Any::ImapServer(s) => {
                let _ = match choice % 4 {
                    0 => s.accept(),
                    1 => s.complete(imap::Status::No, None, "no"),
                    2 => s.continue_request(b"go"),
                    _ => s.send_untagged(&imap::Response::parse(&b(b"* 3 EXISTS")).expect("valid")),
                };
            }
            Any::ImapClient(s) => {
                let body = |t: &'static [u8]| imap::Command::parse(&b(t)).expect("valid").body;
                let _ = match choice % 7 {
                    0 => s.send(body(b"x LOGIN alice secret")).map(|_| ()),
                    1 => s.send(body(b"x SELECT INBOX")).map(|_| ()),
                    2 => s.send(body(b"x APPEND INBOX {3}\r\nabc")).map(|_| ()),
                    3 => s.send(body(b"x IDLE")).map(|_| ()),
                    4 => s.idle_done(),
                    5 => s.send_auth_response(starttls::Secret::new(b(b"AGFAYg=="))),
                    _ => s.send(body(b"x LOGOUT")).map(|_| ()),
                };
            }
            Any::Pop3Server(s) => {
                let _ = match choice % 4 {
                    0 => s.accept(),
                    1 => s.reject(None, "no"),
                    2 => s.reply_multiline("list", b"1 10\r\n"),
                    _ => s.continue_request(b""),
                };
            }
            Any::Pop3Client(s) => {
                let _ = match choice % 5 {
                    0 => s.send(pop3::Command::parse(&b(b"USER alice")).expect("valid")),
                    1 => s.send(pop3::Command::Stat),
                    2 => s.send(pop3::Command::Retr { msg: 1 }),
                    3 => s.send_auth_response(starttls::Secret::new(b(b"AGFAYg=="))),
                    _ => s.send(pop3::Command::Quit),
                };
            }
        }
    }
}

/// Per-event invariants.
fn check_event(e: &str, o: &mut Observed) {
    if e.contains("ExternalTlsRequired") || e.contains("UpgradeStarted") {
        o.upgrading = true;
    }
    if e.contains("TlsEstablished") {
        o.tls_seen = true;
        o.upgrading = false;
    }
    // Trust travels with text: before TLS everything says cleartext, after
    // it everything says TLS.
    if e.contains("trust: Tls") {
        assert!(o.tls_seen, "text marked TLS before TLS: {e}");
    }
    if e.contains("trust: Cleartext") {
        assert!(!o.tls_seen, "text marked cleartext after TLS: {e}");
    }
    // Nothing is handed to the application between the upgrade point and TLS.
    if o.upgrading && !e.contains("Upgrade(") {
        panic!("event between the upgrade point and TLS: {e}");
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Input(Vec<u8>),
    Take,
    Events,
    App(u8),
    TlsEstablished,
    Eof,
}

fn session(kind: u8, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(policy) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    let mut s = new_session(kind, policy);
    let mut o = Observed::default();
    for op in ops.into_iter().take(64) {
        let closed_before = s.closed();
        let logged = o.log.len();
        match op {
            Op::Input(d) => s.input(&d),
            Op::Take => s.take(&mut o.sent),
            Op::Events => s.events(&mut o, true),
            Op::App(c) => s.app(c),
            Op::TlsEstablished => {
                s.tls_established();
            }
            Op::Eof => s.eof(),
        }
        s.events(&mut o, false);
        if closed_before {
            // A closed session produces nothing new but its error.
            let new: Vec<&String> = o.log[logged..]
                .iter()
                .filter(|l| !l.starts_with("error "))
                .collect();
            assert!(new.is_empty(), "events after close: {new:?}");
        }
        if s.trust() == Trust::Tls {
            assert!(o.tls_seen, "TLS trust without a TlsEstablished event");
        }
    }
}

/// SMTP server sessions.
pub fn session_smtp_server(d: &[u8]) {
    session(0, d)
}
/// SMTP client sessions.
pub fn session_smtp_client(d: &[u8]) {
    session(1, d)
}
/// IMAP server sessions.
pub fn session_imap_server(d: &[u8]) {
    session(2, d)
}
/// IMAP client sessions.
pub fn session_imap_client(d: &[u8]) {
    session(3, d)
}
/// POP3 server sessions.
pub fn session_pop3_server(d: &[u8]) {
    session(4, d)
}
/// POP3 client sessions.
pub fn session_pop3_client(d: &[u8]) {
    session(5, d)
}

// ------------------------------------------------------------------ boundary taint

/// A server-role taint run: `before` is arbitrary cleartext the client sends
/// ahead of the upgrade command, `after` is arbitrary cleartext behind it.
/// If the session upgraded, nothing of either may reach the application once
/// TLS is up, and the first exchange over TLS must be a fresh one.
fn taint_server(
    kind: u8,
    upgrade: &[u8],
    post: &[u8],
    data: &[u8],
    fresh: impl Fn(&[u8], &[String]),
) {
    let mut u = Unstructured::new(data);
    let Ok(before) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let Ok(after) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let Ok(cuts) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let mut s = new_session(kind, 0);
    let mut o = Observed::default();
    let mut input = before.clone();
    // Make sure the upgrade command starts a line of its own.
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(upgrade);
    input.extend_from_slice(&after);
    for chunk in chunks(&input, &cuts) {
        s.input(chunk);
        s.events(&mut o, true);
    }
    s.take(&mut o.sent);
    s.events(&mut o, true);
    if !o.upgrading || o.error.is_some() {
        return; // no upgrade happened (the prefix swallowed the command), nothing to check
    }
    s.tls_established();
    s.events(&mut o, true);
    let at_tls = o.log.len();
    let mut sent = Vec::new();
    s.take(&mut sent);
    // Nothing pre-TLS reaches the application or is answered over TLS.
    let leaked: Vec<&String> = o.log[at_tls..].iter().collect();
    assert!(
        leaked.is_empty(),
        "cleartext input acted on after TLS: {leaked:?}"
    );
    assert!(
        sent.is_empty(),
        "the server answered cleartext input over TLS: {:?}",
        String::from_utf8_lossy(&sent)
    );
    s.input(post);
    s.events(&mut o, true);
    s.take(&mut sent);
    fresh(&sent, &o.log[at_tls..]);
}

fn chunks<'a>(input: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    for &c in cuts {
        if rest.is_empty() {
            break;
        }
        let n = (c as usize % 17 + 1).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// A client-role taint run: the server's cleartext is a legitimate
/// negotiation with fuzzer bytes mixed in (`noise` among the capabilities,
/// `after` behind the positive answer). If the client upgraded, it must hold
/// no capability until the answer received over TLS, and then only what that
/// answer said; if anything followed the positive answer, it must have failed
/// instead.
fn taint_client(
    kind: u8,
    script: &[&[u8]],
    positive: &[u8],
    post: &[u8],
    data: &[u8],
    check: impl Fn(&Any),
) -> bool {
    let mut u = Unstructured::new(data);
    let Ok(noise) = Vec::<u8>::arbitrary(&mut u) else {
        return false;
    };
    let Ok(after) = Vec::<u8>::arbitrary(&mut u) else {
        return false;
    };
    let mut s = new_session(kind, 0);
    let mut o = Observed::default();
    // The negotiation up to the upgrade answer, each step after the client's
    // previous command was taken (so no reply precedes its command).
    for (i, step) in script.iter().enumerate() {
        let mut bytes = step.to_vec();
        if i == 1 {
            // Fuzzer noise inside the capability answer: extra lines the
            // client may learn in cleartext.
            let cut = bytes.len().saturating_sub(2);
            let clean: Vec<u8> = noise
                .iter()
                .copied()
                .filter(|b| *b != b'\r' && *b != b'\n')
                .collect();
            let mut with = bytes[..cut].to_vec();
            with.extend_from_slice(&clean);
            with.extend_from_slice(&bytes[cut..]);
            bytes = with;
        }
        s.take(&mut o.sent);
        s.input(&bytes);
        s.events(&mut o, false);
    }
    s.take(&mut o.sent);
    let mut last = positive.to_vec();
    last.extend_from_slice(&after);
    s.input(&last);
    s.events(&mut o, false);
    if o.error.is_some() || !o.upgrading {
        return false; // refused or failed: nothing to check beyond the invariants
    }
    assert!(
        after.is_empty(),
        "the client upgraded although bytes followed the positive answer"
    );
    s.take(&mut o.sent);
    s.tls_established();
    s.events(&mut o, false);
    let caps_after_tls = match &s {
        Any::SmtpClient(c) => c.capabilities().is_some(),
        Any::ImapClient(c) => c.capabilities().is_some(),
        Any::Pop3Client(c) => c.capabilities().is_some(),
        _ => false,
    };
    assert!(
        !caps_after_tls,
        "capabilities learned in cleartext survived the upgrade"
    );
    s.take(&mut o.sent);
    s.input(post);
    s.events(&mut o, false);
    check(&s);
    true
}

/// SMTP: after TLS, `EHLO post.test` is the first and only thing handled,
/// and the capabilities no longer offer STARTTLS.
pub fn taint_smtp(d: &[u8]) {
    let _ = taint_client(
        1,
        &[b"220 mx ESMTP\r\n", b"250-mx\r\n250 STARTTLS\r\n"],
        b"220 go\r\n",
        b"250-mx\r\n250 POSTONLY\r\n",
        d,
        |s| {
            if let Any::SmtpClient(c) = s {
                if let Some(caps) = c.capabilities() {
                    assert!(
                        caps.iter().all(|c| format!("{c:?}").contains("POSTONLY")),
                        "{caps:?}"
                    );
                }
            }
        },
    );
    taint_server(0, b"STARTTLS\r\n", b"EHLO post.test\r\n", d, |sent, log| {
        assert_eq!(log.len(), 1, "after TLS: {log:?}");
        assert!(
            log[0].starts_with("Hello(Ehlo { domain: Domain(b\"post.test\")"),
            "{log:?}"
        );
        assert!(
            sent.starts_with(b"250-mx.test\r\n"),
            "{:?}",
            String::from_utf8_lossy(sent)
        );
        assert!(
            !sent.windows(8).any(|w| w == b"STARTTLS"),
            "STARTTLS offered over TLS"
        );
    });
}

/// IMAP: after TLS, `p CAPABILITY` is answered by itself, without STARTTLS
/// or LOGINDISABLED.
pub fn taint_imap(d: &[u8]) {
    let _ = taint_client(
        3,
        &[
            b"* OK ready\r\n",
            b"* CAPABILITY IMAP4rev2 STARTTLS\r\nA1 OK done\r\n",
        ],
        b"A2 OK go\r\n",
        b"* CAPABILITY IMAP4rev2 POSTONLY\r\nA1 OK done\r\n",
        d,
        |s| {
            if let Any::ImapClient(c) = s {
                if let Some(caps) = c.capabilities() {
                    assert_eq!(caps.as_bytes().as_ref(), b"IMAP4rev2 POSTONLY");
                }
            }
        },
    );
    taint_server(2, b"u STARTTLS\r\n", b"p CAPABILITY\r\n", d, |sent, log| {
        assert!(log.is_empty(), "after TLS: {log:?}");
        assert!(
            sent.starts_with(b"* CAPABILITY IMAP4rev2"),
            "{:?}",
            String::from_utf8_lossy(sent)
        );
        assert!(
            sent.ends_with(b"p OK CAPABILITY completed\r\n"),
            "{:?}",
            String::from_utf8_lossy(sent)
        );
        assert!(!sent
            .windows(8)
            .any(|w| w == b"STARTTLS" || w == b"LOGINDIS"));
    });
}

/// POP3: after TLS, `CAPA` is answered by itself, with USER and without STLS.
pub fn taint_pop3(d: &[u8]) {
    let _ = taint_client(
        5,
        &[b"+OK ready\r\n", b"+OK\r\nSTLS\r\n.\r\n"],
        b"+OK go\r\n",
        b"+OK\r\nPOSTONLY\r\n.\r\n",
        d,
        |s| {
            if let Any::Pop3Client(c) = s {
                if let Some(caps) = c.capabilities() {
                    assert!(
                        caps.iter().all(|c| format!("{c:?}").contains("POSTONLY")),
                        "{caps:?}"
                    );
                }
            }
        },
    );
    taint_server(4, b"STLS\r\n", b"CAPA\r\n", d, |sent, log| {
        assert!(log.is_empty(), "after TLS: {log:?}");
        assert!(
            sent.starts_with(b"+OK Capability list follows\r\n"),
            "{:?}",
            String::from_utf8_lossy(sent)
        );
        assert!(sent.windows(6).any(|w| w == b"\r\nUSER"));
        assert!(!sent.windows(4).any(|w| w == b"STLS"));
    });
}

// ------------------------------------------------------------------ split invariance

/// The same input (a sequence of peer steps) fed whole and in
/// fuzzer-chosen chunks gives the same events and the same output.
pub fn split_invariance(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(kind) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(policy) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(steps) = Vec::<(Vec<u8>, bool)>::arbitrary(&mut u) else {
        return;
    };
    let Ok(cuts) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let run = |split: bool| {
        let mut s = new_session(kind, policy);
        let mut o = Observed::default();
        s.events(&mut o, true);
        for (bytes, tls) in steps.iter().take(16) {
            if split {
                // Events are read between chunks, but the application acts
                // only at the end of the step, as in the unsplit run: the
                // order of calls is the same, only the chunking differs.
                for chunk in chunks(bytes, &cuts) {
                    s.input(chunk);
                    s.events(&mut o, false);
                }
                s.events(&mut o, true);
            } else {
                s.input(bytes);
                s.events(&mut o, true);
            }
            s.take(&mut o.sent);
            s.events(&mut o, true);
            if *tls {
                s.tls_established();
                s.events(&mut o, true);
                s.take(&mut o.sent);
            }
        }
        o
    };
    let whole = run(false);
    let split = run(true);
    assert_eq!(whole.log, split.log, "events depend on the split");
    assert_eq!(whole.sent, split.sent, "output depends on the split");
}

/// For tests: whether the client-role taint check of each protocol reaches
/// the upgrade on `data` (it must on a clean negotiation, or it checks
/// nothing).
#[doc(hidden)]
pub fn client_taint_reaches_upgrade(data: &[u8]) -> [bool; 3] {
    let any = |_: &Any| {};
    [
        taint_client(
            1,
            &[b"220 mx ESMTP\r\n", b"250-mx\r\n250 STARTTLS\r\n"],
            b"220 go\r\n",
            b"250 mx\r\n",
            data,
            any,
        ),
        taint_client(
            3,
            &[
                b"* OK ready\r\n",
                b"* CAPABILITY IMAP4rev2 STARTTLS\r\nA1 OK done\r\n",
            ],
            b"A2 OK go\r\n",
            b"A1 OK done\r\n",
            data,
            any,
        ),
        taint_client(
            5,
            &[b"+OK ready\r\n", b"+OK\r\nSTLS\r\n.\r\n"],
            b"+OK go\r\n",
            b"+OK\r\n.\r\n",
            data,
            any,
        ),
    ]
}
