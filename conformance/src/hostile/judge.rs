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
            findings.push(format!(
                "accepted a bad certificate ({:?}): finished the TLS handshake{}",
                case.play.cert,
                if conn.tls.is_empty() {
                    String::new()
                } else {
                    format!(" and sent {} command(s) over it", conn.tls.len())
                }
            ));
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
            if conn.went_on_without_answer {
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
    notes.push(obs.exit.to_string());
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
