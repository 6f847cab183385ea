//! Verdicts from what the server saw (and, when captured, what the client
//! printed). Each rule is stated in `docs/hostile.md`.

use super::catalog::{Case, Class};
use super::server::{split, ConnLog, Proto};

/// How the client process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal (not by us).
    Signal(i32),
    /// Still running at the timeout; killed.
    Timeout,
    /// Not observed (listen mode: a client we did not start).
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Timeout => f.write_str("timeout"),
            Exit::Unknown => f.write_str("-"),
        }
    }
}

/// Everything observed in one run of a case.
#[derive(Clone, Debug)]
pub struct Observed {
    /// One log per connection the client made to the case's listener.
    pub conns: Vec<ConnLog>,
    /// Connections made to the referral listener.
    pub referrals: usize,
    /// How the client ended.
    pub exit: Exit,
    /// The client's stdout and stderr, when captured.
    pub output: Option<Vec<u8>>,
}

/// A case's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// No finding.
    pub pass: bool,
    /// What the client did wrong, one sentence each.
    pub findings: Vec<String>,
    /// What was seen that is not a finding.
    pub notes: Vec<String>,
}

/// Commands a client may send in cleartext while TLS is required: the
/// negotiation itself, and giving up.
pub fn negotiation(proto: Proto, verb: &str) -> bool {
    match proto {
        Proto::Smtp => matches!(
            verb,
            "EHLO" | "HELO" | "LHLO" | "STARTTLS" | "QUIT" | "RSET" | "NOOP"
        ),
        Proto::Imap => matches!(verb, "CAPABILITY" | "STARTTLS" | "LOGOUT" | "NOOP"),
        Proto::Pop3 => matches!(verb, "CAPA" | "STLS" | "QUIT"),
    }
}

/// Commands that carry credentials.
pub fn credential(proto: Proto, verb: &str) -> bool {
    match proto {
        Proto::Smtp => verb == "AUTH",
        Proto::Imap => matches!(verb, "LOGIN" | "AUTHENTICATE"),
        Proto::Pop3 => matches!(verb, "USER" | "PASS" | "APOP" | "AUTH"),
    }
}

/// The command that asks for capabilities.
pub fn capability_query(proto: Proto, verb: &str) -> bool {
    match proto {
        Proto::Smtp => matches!(verb, "EHLO" | "HELO" | "LHLO"),
        Proto::Imap => verb == "CAPABILITY",
        Proto::Pop3 => verb == "CAPA",
    }
}

/// Words in an output line that say the text came in cleartext.
const LABELS: [&str; 5] = [
    "cleartext",
    "plaintext",
    "unencrypted",
    "insecure",
    "untrusted",
];

/// Whether an output line is labelled as cleartext.
pub fn labelled(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    LABELS.iter().any(|l| lower.contains(l))
}

/// The name of a capability offered only in cleartext or in injected bytes:
/// a client that uses it believed them.
pub const BAIT: &str = "XHOSTILE";

/// Signals that mean a crash (through a shell they show as 128 + n).
const CRASH_SIGNALS: [i32; 5] = [4, 6, 7, 8, 11];

/// Judges one run.
pub fn judge(case: &Case, obs: &Observed) -> Verdict {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let proto = case.proto;

    // Cleartext beyond the negotiation, credentials in particular.
    for (i, conn) in obs.conns.iter().enumerate() {
        let mut bad = Vec::new();
        let mut creds = false;
        for line in &conn.clear {
            // Empty lines, and a ClientHello after a fake positive reply.
            if line.is_empty() || line.first() == Some(&0x16) {
                continue;
            }
            let (_, verb, _) = split(proto, line);
            if !negotiation(proto, &verb) {
                creds |= credential(proto, &verb);
                if bad.len() < 4 {
                    bad.push(printable(&verb, 20));
                }
            }
        }
        if !bad.is_empty() {
            findings.push(format!(
                "connection {}: sent {} in cleartext{}",
                i + 1,
                bad.join(", "),
                if creds { " (credentials)" } else { "" }
            ));
        }
    }

    // The client's end.
    match obs.exit {
        Exit::Timeout => findings.push("hung: still running at the timeout (killed)".into()),
        Exit::Signal(s) => findings.push(format!("crashed: killed by signal {s}")),
        Exit::Code(c) if c > 128 && CRASH_SIGNALS.contains(&(c - 128)) => findings.push(format!(
            "crashed: exit status {c} (signal {} through a shell)",
            c - 128
        )),
        _ => {}
    }

    if obs.referrals > 0 {
        findings.push(format!(
            "followed the referral: {} connection(s) to the referred address",
            obs.referrals
        ));
    }

    let established: Vec<&ConnLog> = obs
        .conns
        .iter()
        .filter(|c| matches!(c.handshake, Some(Ok(()))))
        .collect();

    if case.class == Class::Certificate {
        for conn in &established {
            if conn.tls.is_empty() {
                notes.push(format!(
                    "finished the TLS handshake over the {:?} certificate but sent nothing over it (checked the certificate after the handshake)",
                    case.play.cert
                ));
            } else {
                findings.push(format!(
                    "accepted a bad certificate ({:?}): sent {} command(s) over it",
                    case.play.cert,
                    conn.tls.len()
                ));
            }
        }
    }

    if matches!(case.class, Class::Injection | Class::Tampering) {
        for conn in &established {
            if let Some(first) = conn.tls.iter().find(|l| !l.is_empty()) {
                let (_, verb, _) = split(proto, first);
                if !capability_query(proto, &verb) {
                    findings.push(format!(
                        "did not ask for capabilities again after TLS (first command: {}), so it kept what it learned in cleartext",
                        printable(&verb, 20)
                    ));
                }
            }
            // IMAP allows pipelining any command (RFC 9051 §5.5), so going on
            // proves nothing there; SMTP and POP3 (without PIPELINING
            // offered) must wait for the answer to EHLO, CAPA or USER.
            if conn.went_on_without_answer && (proto == Proto::Imap || conn.pipelined) {
                notes.push("sent its next command before the held answer, pipelined".into());
            } else if conn.went_on_without_answer {
                findings.push(
                    "took injected cleartext bytes as the answer to its first command over TLS (sent the next command before the server answered)"
                        .into(),
                );
            }
        }
    }
    let bait = obs
        .conns
        .iter()
        .flat_map(|c| c.clear.iter().chain(c.tls.iter()))
        .any(|l| {
            String::from_utf8_lossy(l)
                .to_ascii_uppercase()
                .contains(BAIT)
        });
    if bait {
        findings.push(format!(
            "used {BAIT}, a capability offered only in cleartext or in injected bytes"
        ));
    }

    if let Some(out) = &obs.output {
        let text = String::from_utf8_lossy(out);
        let marker = case.marker();
        if let Some(line) = text.lines().find(|l| l.contains(&marker) && !labelled(l)) {
            findings.push(format!(
                "showed cleartext server text without marking it as such: {}",
                printable(line.trim(), 100)
            ));
        }
        if case.escapes() && out.iter().any(|b| matches!(b, 0x1b | 0x07 | 0x08)) {
            findings.push("passed the server's terminal control bytes to its output".into());
        }
    } else if case.class == Class::UiSpoofing {
        notes.push("output not captured: markers not checked".into());
    }

    if case.complete {
        let done = established.iter().any(|c| !c.tls.is_empty());
        let exit_ok = matches!(obs.exit, Exit::Code(0) | Exit::Unknown);
        if !done || !exit_ok {
            findings.push(format!(
                "did not complete a benign session ({}; {})",
                if done {
                    "TLS and commands over it"
                } else if established.is_empty() {
                    "no TLS session"
                } else {
                    "TLS but no command over it"
                },
                obs.exit
            ));
        }
    }

    if obs.conns.is_empty() {
        notes.push("the client never connected".into());
    }
    if obs.conns.len() > 1 {
        notes.push(format!("{} connections", obs.conns.len()));
    }
    for conn in &obs.conns {
        if let Some(Err(e)) = &conn.handshake {
            notes.push(format!("handshake failed: {}", printable(e, 100)));
        }
    }
    if obs.exit != Exit::Unknown {
        notes.push(obs.exit.to_string());
    }
    Verdict {
        pass: findings.is_empty(),
        findings,
        notes,
    }
}

/// At most `max` characters, control characters escaped.
pub fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::catalog;

    fn lines(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// The negotiation a correct client sends before the upgrade.
    fn negotiation_lines(proto: Proto) -> Vec<Vec<u8>> {
        match proto {
            Proto::Smtp => lines(&["EHLO c", "STARTTLS"]),
            Proto::Imap => lines(&["A1 CAPABILITY", "A2 STARTTLS"]),
            Proto::Pop3 => lines(&["CAPA", "STLS"]),
        }
    }

    /// A correct client's session over TLS: capabilities again, log in, quit.
    fn tls_session(proto: Proto) -> Vec<Vec<u8>> {
        match proto {
            Proto::Smtp => lines(&["EHLO c", "AUTH PLAIN AGFsaWNlAHMzY3JldA==", "QUIT"]),
            Proto::Imap => lines(&["A3 CAPABILITY", "A4 LOGIN alice s3cret", "A5 LOGOUT"]),
            Proto::Pop3 => lines(&["CAPA", "USER alice", "PASS s3cret", "QUIT"]),
        }
    }

    fn login(proto: Proto) -> Vec<Vec<u8>> {
        match proto {
            Proto::Smtp => lines(&["AUTH PLAIN AGFsaWNlAHMzY3JldA=="]),
            Proto::Imap => lines(&["A3 LOGIN alice s3cret"]),
            Proto::Pop3 => lines(&["USER alice", "PASS s3cret"]),
        }
    }

    /// What a secure client leaves behind in `case`.
    fn secure(case: &Case) -> Observed {
        let mut conn = ConnLog {
            clear: negotiation_lines(case.proto),
            ..ConnLog::default()
        };
        let good = matches!(case.class, Class::Control) || case.complete;
        if good {
            conn.handshake_started = true;
            conn.handshake = Some(Ok(()));
            conn.tls = tls_session(case.proto);
        } else if case.class == Class::Certificate {
            conn.handshake_started = true;
            conn.handshake = Some(Err("received fatal alert: BadCertificate".into()));
        }
        Observed {
            conns: vec![conn],
            referrals: 0,
            exit: Exit::Code(if good { 0 } else { 1 }),
            output: Some(
                format!(
                    "S: [cleartext] 220 {} hello\nERROR: refused\n",
                    case.marker()
                )
                .into_bytes(),
            ),
        }
    }

    /// What a client with the class's typical flaw leaves behind.
    fn insecure(case: &Case) -> Observed {
        let mut obs = secure(case);
        let conn = &mut obs.conns[0];
        match case.class {
            Class::Control => {
                obs.exit = Exit::Code(1);
                conn.handshake = None;
                conn.tls.clear();
            }
            Class::Stripping | Class::Preauth => conn.clear.extend(login(case.proto)),
            Class::Injection | Class::Tampering => {
                conn.handshake = Some(Ok(()));
                conn.tls = login(case.proto);
            }
            Class::UiSpoofing => {
                let mut out = format!("220 {} \x1b]0;x\x07 hello\n", case.marker()).into_bytes();
                out.extend_from_slice(b"done\n");
                obs.output = Some(out);
            }
            Class::Referral => obs.referrals = 1,
            Class::Certificate => {
                conn.handshake = Some(Ok(()));
                conn.tls = login(case.proto);
            }
            Class::Robustness => obs.exit = Exit::Timeout,
        }
        obs
    }

    #[test]
    fn every_case_passes_a_secure_client_and_fails_a_flawed_one() {
        let all = catalog::all();
        assert!(all.len() >= 120, "{} cases", all.len());
        for case in &all {
            let v = judge(case, &secure(case));
            assert!(v.pass, "{}: secure client judged {:?}", case.id, v.findings);
            let v = judge(case, &insecure(case));
            assert!(!v.pass, "{}: flawed client passed", case.id);
        }
    }

    #[test]
    fn ids_are_unique_and_every_class_has_cases_in_every_protocol_it_applies_to() {
        let all = catalog::all();
        let mut ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        for class in Class::ALL {
            for proto in [Proto::Smtp, Proto::Imap, Proto::Pop3] {
                if class == Class::Preauth && proto != Proto::Imap {
                    continue;
                }
                assert!(
                    all.iter().any(|c| c.class == class && c.proto == proto),
                    "{class:?} {proto:?}"
                );
            }
        }
    }

    fn case(id: &str) -> Case {
        catalog::all()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no case {id}"))
    }

    #[test]
    fn cleartext_credentials_are_named() {
        let c = case("smtp-stripping-not-offered");
        let mut obs = secure(&c);
        obs.conns[0].clear.push(b"MAIL FROM:<a@b>".to_vec());
        let v = judge(&c, &obs);
        assert!(!v.pass);
        assert!(v.findings[0].contains("MAIL in cleartext"), "{v:?}");
        assert!(!v.findings[0].contains("credentials"), "{v:?}");
        obs.conns[0].clear.push(b"AUTH PLAIN x".to_vec());
        let v = judge(&c, &obs);
        assert!(v.findings[0].contains("(credentials)"), "{v:?}");
        // A second connection (a fallback) is judged too.
        let mut obs = secure(&c);
        obs.conns.push(ConnLog {
            clear: lines(&["EHLO c", "AUTH LOGIN"]),
            ..ConnLog::default()
        });
        let v = judge(&c, &obs);
        assert!(v.findings[0].starts_with("connection 2:"), "{v:?}");
    }

    #[test]
    fn a_client_hello_after_a_fake_positive_reply_is_not_a_command() {
        let c = case("smtp-stripping-reply-220-no-tls");
        let mut obs = secure(&c);
        obs.conns[0].clear.push(vec![0x16, 0x03, 0x01, 0x00, b'\n']);
        assert!(judge(&c, &obs).pass);
    }

    #[test]
    fn hangs_and_crashes() {
        let c = case("imap-robustness-literal-4g");
        for (exit, pass) in [
            (Exit::Code(0), true),
            (Exit::Code(1), true),
            (Exit::Code(139), false),
            (Exit::Code(134), false),
            (Exit::Code(130), true),
            (Exit::Signal(11), false),
            (Exit::Timeout, false),
        ] {
            let mut obs = secure(&c);
            obs.exit = exit;
            assert_eq!(judge(&c, &obs).pass, pass, "{exit:?}");
        }
    }

    #[test]
    fn capabilities_must_be_asked_again_after_tls() {
        let c = case("imap-injection-capability");
        let mut obs = secure(&c);
        obs.conns[0].handshake = Some(Ok(()));
        obs.conns[0].tls = lines(&["A3 CAPABILITY", "A4 LOGIN a b"]);
        assert!(judge(&c, &obs).pass);
        obs.conns[0].tls = lines(&["A3 LOGIN a b"]);
        let v = judge(&c, &obs);
        assert!(v.findings[0].contains("first command: LOGIN"), "{v:?}");
        obs.conns[0].tls = lines(&["A3 CAPABILITY", "A4 AUTHENTICATE XHOSTILE"]);
        let v = judge(&c, &obs);
        assert!(v.findings[0].contains("XHOSTILE"), "{v:?}");
        // Going on before a held answer: pipelining in IMAP, a finding in
        // SMTP.
        obs.conns[0].tls = lines(&["A3 CAPABILITY", "A4 LOGOUT"]);
        obs.conns[0].went_on_without_answer = true;
        assert!(judge(&c, &obs).pass);
        let c = case("smtp-injection-ehlo-answer-held");
        let mut obs = secure(&c);
        obs.conns[0].handshake = Some(Ok(()));
        obs.conns[0].went_on_without_answer = true;
        obs.conns[0].tls = lines(&["EHLO c", "AUTH PLAIN x"]);
        let v = judge(&c, &obs);
        assert!(v.findings[0].contains("injected"), "{v:?}");
        // Written together with the first command: pipelining.
        obs.conns[0].pipelined = true;
        assert!(judge(&c, &obs).pass);
    }

    #[test]
    fn markers_count_only_where_not_labelled_and_escapes_only_where_sent() {
        let c = case("imap-ui-spoofing-alert-greeting");
        let m = c.marker();
        for (out, pass) in [
            (format!("S: [cleartext] * OK [ALERT] {m}\n"), true),
            (format!("warning: untrusted server text: {m}\n"), true),
            (format!("* OK [ALERT] {m}\n"), false),
            (format!("S: [tls] * OK [ALERT] {m}\n"), false),
            ("nothing\n".to_string(), true),
        ] {
            let mut obs = secure(&c);
            obs.output = Some(out.clone().into_bytes());
            assert_eq!(judge(&c, &obs).pass, pass, "{out:?}");
        }
        // A client's own colours are not judged in a case that sent none.
        let mut obs = secure(&c);
        obs.output = Some(b"\x1b[32mOK\x1b[0m\n".to_vec());
        assert!(judge(&c, &obs).pass);
        let c = case("imap-ui-spoofing-escapes-greeting");
        assert!(c.escapes());
        let mut obs = secure(&c);
        obs.output = Some(b"\x1b[32mOK\x1b[0m\n".to_vec());
        assert!(!judge(&c, &obs).pass);
    }

    #[test]
    fn certificates_fail_on_data_sent_not_on_a_finished_handshake() {
        // Many clients check the name after the handshake and then close.
        let c = case("pop3-certificate-wrongname");
        let mut obs = secure(&c);
        obs.conns[0].handshake = Some(Ok(()));
        let v = judge(&c, &obs);
        assert!(v.pass, "{v:?}");
        assert!(v.notes[0].contains("sent nothing"), "{v:?}");
        obs.conns[0].tls = lines(&["CAPA"]);
        let v = judge(&c, &obs);
        assert!(v.findings[0].contains("sent 1 command(s)"), "{v:?}");
    }

    #[test]
    fn controls_need_tls_commands_and_success() {
        let c = case("pop3-control-plain");
        let mut obs = secure(&c);
        assert!(judge(&c, &obs).pass);
        obs.exit = Exit::Code(2);
        assert!(!judge(&c, &obs).pass);
        let mut obs = secure(&c);
        obs.conns[0].tls.clear();
        assert!(!judge(&c, &obs).pass);
        // Listen mode: the exit is not seen.
        let mut obs = secure(&c);
        obs.exit = Exit::Unknown;
        assert!(judge(&c, &obs).pass);
    }

    #[test]
    fn labels() {
        assert!(labelled("S: [cleartext] 220 x"));
        assert!(labelled("WARNING: Insecure connection"));
        assert!(!labelled("S: [tls] 220 x"));
    }
}
