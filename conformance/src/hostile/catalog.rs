//! The catalog of hostile-server cases, as data: per protocol, an id, the
//! attack class (`../shared/threats.md`), what the server does, the secure
//! outcome, and the server's script.

use super::certs::CertKind;
use super::server::{Out, Play, Proto, Upgrade};

/// Attack classes, numbered as in the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Benign sessions a correct client must complete.
    Control,
    /// 2. Response injection.
    Injection,
    /// 3. STARTTLS stripping and negotiation downgrade.
    Stripping,
    /// 4. IMAP PREAUTH.
    Preauth,
    /// 5. Tampering with state before TLS.
    Tampering,
    /// 6. UI spoofing.
    UiSpoofing,
    /// 7. Referrals and redirects.
    Referral,
    /// 8. Certificate and identity.
    Certificate,
    /// 9. Robustness.
    Robustness,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 9] = [
        Class::Control,
        Class::Stripping,
        Class::Injection,
        Class::Preauth,
        Class::Tampering,
        Class::UiSpoofing,
        Class::Referral,
        Class::Certificate,
        Class::Robustness,
    ];

    /// The class's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::Control => "control",
            Class::Injection => "injection",
            Class::Stripping => "stripping",
            Class::Preauth => "preauth",
            Class::Tampering => "tampering",
            Class::UiSpoofing => "ui-spoofing",
            Class::Referral => "referral",
            Class::Certificate => "certificate",
            Class::Robustness => "robustness",
        }
    }

    /// The section of `threats.md` (0 for controls).
    pub fn threat(self) -> u8 {
        match self {
            Class::Control => 0,
            Class::Injection => 2,
            Class::Stripping => 3,
            Class::Preauth => 4,
            Class::Tampering => 5,
            Class::UiSpoofing => 6,
            Class::Referral => 7,
            Class::Certificate => 8,
            Class::Robustness => 9,
        }
    }

    /// The secure outcome every case of the class shares.
    pub fn secure(self) -> &'static str {
        match self {
            Class::Control => "completes the session over TLS and exits 0",
            Class::Injection => "does not take the injected bytes as TLS responses: fails, or asks for capabilities again over TLS and never uses the injected ones",
            Class::Stripping => "sends nothing beyond the negotiation in cleartext (no credentials, no mail, no mailbox command) and gives up",
            Class::Preauth => "sends no mailbox command in cleartext and gives up (TLS can no longer be negotiated)",
            Class::Tampering => "keeps nothing learned in cleartext: asks for capabilities again over TLS, never uses cleartext-only ones",
            Class::UiSpoofing => "shows no cleartext server text as authentic (marks it or hides it), passes no terminal control bytes",
            Class::Referral => "does not follow the referral by itself",
            Class::Certificate => "rejects the certificate: never finishes the handshake, sends nothing over it",
            Class::Robustness => "ends by itself (no hang, no crash) within the timeout, bounded, sending nothing in cleartext",
        }
    }
}

/// One hostile-server case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Unique id, `<proto>-<class>-<what>`.
    pub id: String,
    /// The protocol.
    pub proto: Proto,
    /// The attack class.
    pub class: Class,
    /// What the hostile server does.
    pub does: String,
    /// A correct client must complete the session (controls, slow bytes).
    pub complete: bool,
    /// The server's script.
    pub play: Play,
}

impl Case {
    /// The string put in the case's hostile texts (`{marker}`).
    pub fn marker(&self) -> String {
        format!("HOSTILE-{}", self.id.to_ascii_uppercase())
    }

    /// The secure outcome.
    pub fn secure(&self) -> &'static str {
        self.class.secure()
    }

    /// Whether the script writes terminal control bytes.
    pub fn escapes(&self) -> bool {
        format!("{:?}", self.play).contains("\\u{1b}")
    }
}

fn c(proto: Proto, class: Class, what: &str, does: &str, play: Play) -> Case {
    Case {
        id: format!("{}-{}-{what}", proto.name(), class.name()),
        proto,
        class,
        does: does.to_string(),
        complete: class == Class::Control,
        play,
    }
}

fn greet(s: &str) -> Play {
    Play {
        greeting: Some(Out::b(s)),
        ..Play::default()
    }
}

fn refuse(s: &str) -> Play {
    Play {
        upgrade: Upgrade::Refuse(s.to_string()),
        ..Play::default()
    }
}

fn inject(s: &str) -> Play {
    Play {
        upgrade: Upgrade::Accept {
            reply: None,
            inject: s.to_string(),
        },
        ..Play::default()
    }
}

fn raw(out: Out) -> Play {
    Play {
        upgrade: Upgrade::Raw(out),
        ..Play::default()
    }
}

fn cert(kind: CertKind) -> Play {
    Play {
        cert: kind,
        ..Play::default()
    }
}

const ESC: &str = "\x1b]0;{marker}\x07\x1b[2J\x1b[31m";

/// The whole catalog.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(smtp());
    v.extend(imap());
    v.extend(pop3());
    v.extend(shared());
    for case in &mut v {
        // Where the upgrade is hidden or PREAUTH was sent, a client that
        // asks anyway is refused, as by the man in the middle who hid it.
        let default = case.play.upgrade == Play::default().upgrade;
        if default && matches!(case.class, Class::Stripping | Class::Preauth) {
            case.play.upgrade = Upgrade::Refuse(
                match case.proto {
                    Proto::Smtp => "502 5.5.1 command not implemented\r\n",
                    Proto::Imap => "{tag} BAD command unknown or not allowed now\r\n",
                    Proto::Pop3 => "-ERR unknown command\r\n",
                }
                .into(),
            );
        }
    }
    v
}

/// Cases written the same way for the three protocols.
fn shared() -> Vec<Case> {
    use Class::*;
    let mut v = Vec::new();
    for p in [Proto::Smtp, Proto::Imap, Proto::Pop3] {
        for kind in CertKind::ALL.into_iter().filter(|k| *k != CertKind::Good) {
            let name = format!("{kind:?}").to_ascii_lowercase();
            v.push(c(
                p,
                Certificate,
                &name,
                &format!("presents a {kind:?} certificate after the upgrade (made at run time)"),
                cert(kind),
            ));
        }
        let (greeting, upgrade_ok): (&str, &str) = match p {
            Proto::Smtp => (
                "220 hostile.localhost ESMTP ready\r\n",
                "220 2.0.0 Ready to start TLS\r\n",
            ),
            Proto::Imap => (
                "* OK hostile IMAP4rev1 server ready\r\n",
                "{tag} OK begin TLS now\r\n",
            ),
            Proto::Pop3 => ("+OK hostile POP3 server ready\r\n", "+OK begin TLS\r\n"),
        };
        v.push(c(
            p,
            Control,
            "plain",
            "a plain, correct server",
            Play::default(),
        ));
        v.push(c(
            p,
            Control,
            "slow-greeting",
            "writes the greeting one byte at a time, 20 ms apart",
            Play {
                greeting: Some(Out::Slow(greeting.into(), 20)),
                ..Play::default()
            },
        ));
        v.push(c(
            p,
            Control,
            "slow-replies",
            "writes every cleartext reply one byte at a time, 2 ms apart",
            Play {
                slow: Some(2),
                ..Play::default()
            },
        ));
        let robust: Vec<(&str, &str, Play)> = vec![
            (
                "endless-greeting",
                "sends a greeting line that never ends (256 MiB cap)",
                Play {
                    greeting: Some(Out::Endless(String::new())),
                    ..Play::default()
                },
            ),
            (
                "close-after-greeting",
                "closes right after the greeting",
                Play {
                    greeting: Some(Out::ThenClose(greeting.into())),
                    ..Play::default()
                },
            ),
            (
                "close-mid-greeting",
                "closes in the middle of the greeting line",
                Play {
                    greeting: Some(Out::ThenClose(greeting[..8].into())),
                    ..Play::default()
                },
            ),
            (
                "close-after-upgrade",
                "closes right after the positive upgrade reply",
                raw(Out::ThenClose(upgrade_ok.into())),
            ),
            (
                "close-mid-upgrade-reply",
                "closes in the middle of the upgrade reply",
                raw(Out::ThenClose(upgrade_ok[..3].into())),
            ),
            (
                "garbage-instead-of-tls",
                "answers the upgrade positively, then sends text where the ServerHello belongs",
                Play {
                    upgrade: Upgrade::Garbage("HTTP/1.1 400 Bad Request\r\n\r\n".into()),
                    ..Play::default()
                },
            ),
            (
                "nul-greeting",
                "puts NUL bytes in the greeting",
                greet(&greeting.replace("ready", "re\0\0dy")),
            ),
            (
                "bare-lf-greeting",
                "ends the greeting with a bare LF",
                greet(&greeting.replace("\r\n", "\n")),
            ),
            (
                "8bit-greeting",
                "puts 8-bit bytes in the greeting",
                greet(&greeting.replace("ready", "r\u{e9}ady \u{fffd}")),
            ),
            (
                "endless-after-tls",
                "after the handshake, sends a line that never ends",
                Play {
                    after_tls: Some(Out::Endless(String::new())),
                    ..Play::default()
                },
            ),
            (
                "close-after-tls",
                "closes the connection right after the handshake",
                Play {
                    after_tls: Some(Out::ThenClose(String::new())),
                    ..Play::default()
                },
            ),
        ];
        for (what, does, play) in robust {
            v.push(c(p, Robustness, what, does, play));
        }
        let mut slow = c(p, Robustness, "slow-session", "writes every cleartext reply one byte at a time, 15 ms apart (a correct client completes)", Play {
            slow: Some(15),
            ..Play::default()
        });
        slow.complete = true;
        v.push(slow);
    }
    v
}

fn smtp() -> Vec<Case> {
    use Class::*;
    let p = Proto::Smtp;
    let ehlo = |lines: &str| Out::Bytes(format!("250-hostile.localhost\r\n{lines}"));
    let mut v = vec![
        c(
            p,
            Control,
            "auth-only-after-tls",
            "offers AUTH only after TLS (as Postfix with smtpd_tls_auth_only)",
            Play {
                caps: Some(ehlo("250-PIPELINING\r\n250 STARTTLS\r\n")),
                ..Play::default()
            },
        ),
        // Stripping.
        c(
            p,
            Stripping,
            "not-offered",
            "EHLO answer without STARTTLS",
            Play {
                caps: Some(ehlo("250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "in-domain-text",
            "STARTTLS only as the EHLO answer's domain text",
            Play {
                caps: Some(Out::b("250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "as-parameter",
            "STARTTLS only as a parameter of another keyword (250-AUTH PLAIN STARTTLS)",
            Play {
                caps: Some(ehlo("250-AUTH PLAIN STARTTLS\r\n250 8BITMIME\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "lookalike",
            "X-STARTTLS and STARTTLSX instead of STARTTLS",
            Play {
                caps: Some(ehlo(
                    "250-X-STARTTLS\r\n250-STARTTLSX\r\n250 AUTH PLAIN LOGIN\r\n",
                )),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "ehlo-refused",
            "refuses EHLO (500), accepts HELO: a non-ESMTP server",
            Play {
                caps: Some(Out::b("500 5.5.1 command unrecognized\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "ehlo-and-helo-refused",
            "refuses EHLO and HELO",
            Play {
                caps: Some(Out::b("502 5.5.1 no\r\n")),
                helo: Some(Out::b("502 5.5.1 no\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "in-last-line-only",
            "STARTTLS on a line after the last one (after the final 250 SP line)",
            Play {
                caps: Some(ehlo("250 AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n")),
                ..Play::default()
            },
        ),
    ];
    for (code, text) in [
        (
            "454",
            "454 4.7.0 TLS not available due to temporary reason\r\n",
        ),
        ("502", "502 5.5.1 command not implemented\r\n"),
        ("500", "500 5.5.2 syntax error\r\n"),
        ("501", "501 5.5.4 syntax error in parameters\r\n"),
        ("554", "554 5.7.0 transaction failed\r\n"),
        ("530", "530 5.7.0 must issue a STARTTLS command first\r\n"),
        ("421", "421 4.3.2 service not available, closing\r\n"),
        ("354", "354 start mail input\r\n"),
        ("221", "221 2.0.0 bye\r\n"),
        ("250", "250 2.0.0 OK\r\n"),
        ("220-then-454", "220-ready\r\n454 4.7.0 not really\r\n"),
        ("2200", "2200 ready to start TLS\r\n"),
        ("220-no-space", "220Ready\r\n"),
        ("bare-220", "220\r\n"),
        ("empty-line", "\r\n"),
        ("220-no-tls", "220 2.0.0 Ready to start TLS\r\n"),
    ] {
        let does = if code == "220-no-tls" {
            "answers 220 but never starts TLS: the session goes on in cleartext".to_string()
        } else {
            format!(
                "answers STARTTLS with {:?}, then goes on in cleartext",
                text.trim_end()
            )
        };
        v.push(c(
            p,
            Stripping,
            &format!("reply-{code}"),
            &does,
            refuse(text),
        ));
    }
    v.extend([
        // Injection.
        c(p, Injection, "ehlo-answer", "appends a whole EHLO answer offering AUTH XHOSTILE after 220, in the same write", inject("250-hostile.localhost\r\n250 AUTH XHOSTILE\r\n")),
        c(p, Injection, "ehlo-answer-held", "appends an EHLO answer (AUTH XHOSTILE) after 220 and holds the real answer to the first command over TLS for 1.5 s", Play { hold_first: true, ..inject("250-hostile.localhost\r\n250-PIPELINING\r\n250 AUTH XHOSTILE\r\n") }),
        c(p, Injection, "auth-success-held", "appends 250 and 235 answers after 220 and holds the first answer over TLS", Play { hold_first: true, ..inject("250 hostile.localhost\r\n235 2.7.0 accepted\r\n") }),
        c(p, Injection, "partial-line", "appends a partial line (no CRLF) after 220", inject("250-hostile.local")),
        c(p, Injection, "empty-line", "appends a lone CRLF after 220", inject("\r\n")),
        c(p, Injection, "spoofed-text", "appends 554 {marker} after 220", inject("554 5.7.1 {marker} your account is blocked\r\n")),
        // Tampering.
        c(p, Tampering, "cleartext-only-auth", "offers AUTH XHOSTILE in cleartext only", Play { caps: Some(ehlo("250-STARTTLS\r\n250 AUTH XHOSTILE\r\n")), ..Play::default() }),
        c(p, Tampering, "extra-reply-after-greeting", "sends an extra 250 reply offering XHOSTILE after the greeting", greet("220 hostile.localhost ESMTP\r\n250 AUTH XHOSTILE\r\n")),
        c(p, Tampering, "extra-reply-after-ehlo", "sends an extra 250 reply after the EHLO answer", Play { caps: Some(ehlo("250-STARTTLS\r\n250 AUTH PLAIN\r\n250 AUTH XHOSTILE\r\n")), ..Play::default() }),
        c(p, Tampering, "unsolicited-after-tls", "sends an unsolicited 250 reply right after the handshake", Play { after_tls: Some(Out::b("250 AUTH XHOSTILE\r\n")), ..Play::default() }),
        // UI spoofing.
        c(p, UiSpoofing, "greeting-text", "puts a message for the user in the greeting ({marker})", greet("220 hostile.localhost {marker} your password expired, call +1-555-0100\r\n")),
        c(p, UiSpoofing, "ehlo-text", "puts a message in the EHLO answer's text", Play { caps: Some(Out::b("250-hostile.localhost {marker} greets you\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")), ..Play::default() }),
        c(p, UiSpoofing, "refusal-text", "refuses STARTTLS with a message for the user", refuse("454 4.7.0 {marker} TLS disabled by your administrator\r\n")),
        c(p, UiSpoofing, "escapes-greeting", "puts terminal escape sequences in the greeting", greet(&format!("220 hostile.localhost {ESC} ready\r\n"))),
        c(p, UiSpoofing, "escapes-refusal", "refuses STARTTLS with terminal escape sequences", refuse(&format!("454 4.7.0 {ESC} no TLS\r\n"))),
        c(p, UiSpoofing, "bidi-greeting", "puts right-to-left override characters in the greeting", greet("220 hostile.localhost \u{202e}{marker}\u{202c} ready\r\n")),
        // Referrals.
        c(p, Referral, "refusal-points-elsewhere", "refuses STARTTLS with 551 pointing to another server", refuse("551 5.7.1 TLS is at <{referral}>\r\n")),
        c(p, Referral, "greeting-points-elsewhere", "greets with 554 pointing to another server, then goes on", greet("554-hostile.localhost moved to <{referral}>\r\n554 try there\r\n")),
        // Robustness.
        c(p, Robustness, "endless-ehlo", "answers EHLO with continuation lines that never end", Play { caps: Some(Out::Repeat("250-hostile.localhost\r\n".into(), "250-X-FILLER\r\n".into())), ..Play::default() }),
        c(p, Robustness, "many-capabilities", "answers EHLO with 5000 capability lines (and STARTTLS)", Play { caps: Some(Out::Bytes(format!("250-hostile.localhost\r\n{}250 STARTTLS\r\n", "250-X-FILLER\r\n".repeat(5000)))), ..Play::default() }),
        c(p, Robustness, "bad-reply-code", "answers EHLO with a non-numeric code", Play { caps: Some(Out::b("2x0 hostile\r\n")), ..Play::default() }),
    ]);
    v
}

fn imap() -> Vec<Case> {
    use Class::*;
    let p = Proto::Imap;
    let capa = |caps: &str| Out::Bytes(format!("* CAPABILITY {caps}\r\n{{tag}} OK done\r\n"));
    let mut v = vec![
        c(
            p,
            Control,
            "logindisabled",
            "advertises LOGINDISABLED until TLS (as a careful server does)",
            Play {
                caps: Some(capa("IMAP4rev1 STARTTLS LOGINDISABLED")),
                ..Play::default()
            },
        ),
        c(
            p,
            Control,
            "caps-in-greeting",
            "puts STARTTLS in a CAPABILITY code in the greeting",
            greet("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hostile ready\r\n"),
        ),
        // Stripping.
        c(
            p,
            Stripping,
            "not-offered",
            "CAPABILITY without STARTTLS",
            Play {
                caps: Some(capa("IMAP4rev1 AUTH=PLAIN")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "greeting-caps-without",
            "greets with a CAPABILITY code without STARTTLS",
            greet("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile ready\r\n"),
        )
        .stripping_caps(capa("IMAP4rev1 AUTH=PLAIN")),
        c(
            p,
            Stripping,
            "in-greeting-text",
            "STARTTLS only in the greeting text; not in CAPABILITY",
            greet("* OK STARTTLS ready\r\n"),
        )
        .stripping_caps(capa("IMAP4rev1 AUTH=PLAIN")),
        c(
            p,
            Stripping,
            "lookalike",
            "X-STARTTLS and STARTTLSX instead of STARTTLS",
            Play {
                caps: Some(capa("IMAP4rev1 X-STARTTLS STARTTLSX AUTH=PLAIN")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "capability-refused",
            "answers CAPABILITY with BAD",
            Play {
                caps: Some(Out::b("{tag} BAD unknown command\r\n")),
                ..Play::default()
            },
        ),
    ];
    for (what, text) in [
        ("no", "{tag} NO TLS not available\r\n"),
        ("bad", "{tag} BAD command unknown\r\n"),
        ("privacy-required", "{tag} NO [PRIVACYREQUIRED] not now\r\n"),
        ("bye", "* BYE going away\r\n"),
        (
            "untagged-ok",
            "* OK begin TLS now\r\n{tag} NO not really\r\n",
        ),
        (
            "wrong-tag",
            "X999 OK begin TLS now\r\n{tag} NO not really\r\n",
        ),
        ("continuation", "+ begin TLS now\r\n{tag} NO not really\r\n"),
        (
            "no-space",
            "{tag}OK begin TLS now\r\n{tag} NO not really\r\n",
        ),
        ("ok-no-tls", "{tag} OK begin TLS now\r\n"),
        ("empty-line", "\r\n"),
    ] {
        let does = if what == "ok-no-tls" {
            "answers OK but never starts TLS: the session goes on in cleartext".to_string()
        } else {
            format!(
                "answers STARTTLS with {:?}, then goes on in cleartext",
                text.trim_end()
            )
        };
        v.push(c(
            p,
            Stripping,
            &format!("reply-{what}"),
            &does,
            refuse(text),
        ));
    }
    v.extend([
        // PREAUTH.
        c(p, Preauth, "plain", "greets with PREAUTH (already logged in): STARTTLS is no longer allowed", greet("* PREAUTH hostile welcome\r\n")),
        c(p, Preauth, "with-starttls-code", "greets with PREAUTH and a CAPABILITY code offering STARTTLS; refuses STARTTLS with BAD", Play { upgrade: Upgrade::Refuse("{tag} BAD already authenticated\r\n".into()), ..greet("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hostile\r\n") }),
        c(p, Preauth, "starttls-no", "greets with PREAUTH; answers STARTTLS with NO", Play { upgrade: Upgrade::Refuse("{tag} NO not in authenticated state\r\n".into()), ..greet("* PREAUTH hostile\r\n") }),
        c(p, Preauth, "alert", "greets with PREAUTH and an ALERT for the user", greet("* PREAUTH [ALERT] {marker} you are logged in\r\n")),
        c(p, Preauth, "lowercase", "greets with `* preauth` in lower case", greet("* preauth hostile\r\n")),
        c(p, Preauth, "after-untagged", "greets with OK, then sends an untagged PREAUTH", greet("* OK hostile\r\n* PREAUTH now you are in\r\n")),
        // Injection.
        c(p, Injection, "capability", "appends * CAPABILITY ... AUTH=XHOSTILE after the OK, in the same write", inject("* CAPABILITY IMAP4rev1 AUTH=XHOSTILE\r\n")),
        c(p, Injection, "next-tag-held", "appends a CAPABILITY answer (AUTH=XHOSTILE LOGINDISABLED) tagged with the client's next tag and holds the real answer to the first command over TLS", Play { hold_first: true, ..inject("* CAPABILITY IMAP4rev1 AUTH=XHOSTILE LOGINDISABLED\r\n{next} OK done\r\n") }),
        c(p, Injection, "ok-code-held", "appends a tagged OK with a CAPABILITY code (AUTH=XHOSTILE LOGINDISABLED) for the next tag and holds the first answer over TLS", Play { hold_first: true, ..inject("{next} OK [CAPABILITY IMAP4rev1 AUTH=XHOSTILE LOGINDISABLED] done\r\n") }),
        c(p, Injection, "alert", "appends * OK [ALERT] {marker} after the OK", inject("* OK [ALERT] {marker} mailbox will be deleted\r\n")),
        c(p, Injection, "bye", "appends * BYE after the OK", inject("* BYE {marker}\r\n")),
        c(p, Injection, "partial-line", "appends a partial line (no CRLF) after the OK", inject("* CAPABILITY IMAP4re")),
        c(p, Injection, "empty-line", "appends a lone CRLF after the OK", inject("\r\n")),
        // Tampering.
        c(p, Tampering, "exists", "sends * 54321 EXISTS after the greeting", greet("* OK hostile ready\r\n* 54321 EXISTS\r\n")),
        c(p, Tampering, "list", "sends * LIST () \"/\" evil after the greeting", greet("* OK hostile ready\r\n* LIST () \"/\" {marker}\r\n")),
        c(p, Tampering, "capability-unsolicited", "sends an unsolicited * CAPABILITY with AUTH=XHOSTILE after the greeting", greet("* OK hostile ready\r\n* CAPABILITY IMAP4rev1 STARTTLS AUTH=XHOSTILE\r\n")),
        c(p, Tampering, "capability-code", "puts AUTH=XHOSTILE in the greeting's CAPABILITY code", greet("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=XHOSTILE] hostile\r\n")),
        c(p, Tampering, "cleartext-only-auth", "offers AUTH=XHOSTILE in cleartext CAPABILITY only", Play { caps: Some(capa("IMAP4rev1 STARTTLS AUTH=XHOSTILE")), ..Play::default() }),
        c(p, Tampering, "unknown-tag", "sends a tagged OK for a tag not yet sent after the greeting", greet("* OK hostile ready\r\n{next}Z OK done\r\nA0001 OK done\r\n")),
        c(p, Tampering, "flags-enabled", "sends * FLAGS and * ENABLED after the greeting", greet("* OK hostile ready\r\n* FLAGS (\\Seen {marker})\r\n* ENABLED UTF8=ACCEPT\r\n")),
        c(p, Tampering, "bye-greeting", "greets with * BYE", greet("* BYE {marker} server shutting down\r\n")),
        c(p, Tampering, "bye-after-capability", "answers CAPABILITY with * BYE and closes", Play { caps: Some(Out::ThenClose("* BYE {marker}\r\n".into())), ..Play::default() }),
        c(p, Tampering, "exists-after-tls", "sends * 3 EXISTS right after the handshake", Play { after_tls: Some(Out::b("* 3 EXISTS\r\n")), ..Play::default() }),
        // UI spoofing.
        c(p, UiSpoofing, "alert-greeting", "greets with [ALERT] {marker}", greet("* OK [ALERT] {marker} your mailbox is full, log in at http://evil.example\r\n")),
        c(p, UiSpoofing, "alert-refusal", "refuses STARTTLS with NO [ALERT]", refuse("{tag} NO [ALERT] {marker} TLS disabled\r\n")),
        c(p, UiSpoofing, "greeting-text", "puts a message in the greeting text", greet("* OK {marker} call +1-555-0100\r\n")),
        c(p, UiSpoofing, "escapes-greeting", "puts terminal escape sequences in the greeting", greet(&format!("* OK {ESC} ready\r\n"))),
        c(p, UiSpoofing, "escapes-alert", "puts terminal escape sequences in an ALERT", greet(&format!("* OK [ALERT] {ESC} hi\r\n"))),
        // Referrals.
        c(p, Referral, "greeting", "greets with * OK [REFERRAL url]", greet("* OK [REFERRAL {referral}] try there\r\n")),
        c(p, Referral, "starttls-no", "refuses STARTTLS with NO [REFERRAL url]", refuse("{tag} NO [REFERRAL {referral}] TLS is there\r\n")),
        c(p, Referral, "bye-greeting", "greets with * BYE [REFERRAL url]", greet("* BYE [REFERRAL {referral}] moved\r\n")),
        c(p, Referral, "login-after-tls", "answers LOGIN over TLS with NO [REFERRAL url] (LOGIN-REFERRALS)", Play { tls_login: Some(Out::b("{tag} NO [REFERRAL {referral}] log in there\r\n")), ..Play::default() }),
        // Robustness.
        c(p, Robustness, "endless-untagged", "sends untagged lines that never end after the greeting", Play { greeting: Some(Out::Repeat("* OK hostile\r\n".into(), "* OK filler\r\n".into())), ..Play::default() }),
        c(p, Robustness, "literal-4g", "puts a {4294967295} literal in the greeting", greet("* OK {4294967295}\r\nabc\r\n")),
        c(p, Robustness, "literal-huge", "puts a {99999999999999999999} literal in the greeting", greet("* OK {99999999999999999999}\r\n")),
        c(p, Robustness, "literal-negative", "puts a {-1} literal in the greeting", greet("* OK {-1}\r\n")),
        c(p, Robustness, "literal-cut", "announces a 10-byte literal, sends 3 bytes and closes", Play { greeting: Some(Out::ThenClose("* OK {10}\r\nabc".into())), ..Play::default() }),
        c(p, Robustness, "literal-in-capability", "answers CAPABILITY with a literal", Play { caps: Some(Out::b("* CAPABILITY {8}\r\nSTARTTLS\r\n{tag} OK done\r\n")), ..Play::default() }),
        c(p, Robustness, "many-capabilities", "answers CAPABILITY with 20000 capabilities (and STARTTLS)", Play { caps: Some(Out::Bytes(format!("* CAPABILITY IMAP4rev1 {}STARTTLS\r\n{{tag}} OK done\r\n", "X-FILLER ".repeat(20000)))), ..Play::default() }),
    ]);
    v
}

fn pop3() -> Vec<Case> {
    use Class::*;
    let p = Proto::Pop3;
    let capa = |lines: &str| Out::Bytes(format!("+OK\r\n{lines}.\r\n"));
    let mut v = vec![
        c(
            p,
            Control,
            "user-only-after-tls",
            "offers USER and SASL only after TLS",
            Play {
                caps: Some(capa("TOP\r\nUIDL\r\nSTLS\r\n")),
                ..Play::default()
            },
        ),
        // Stripping.
        c(
            p,
            Stripping,
            "not-offered",
            "CAPA without STLS",
            Play {
                caps: Some(capa("TOP\r\nUSER\r\nSASL PLAIN\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "capa-refused",
            "answers CAPA with -ERR",
            Play {
                caps: Some(Out::b("-ERR unknown command\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "in-greeting-text",
            "STLS only in the greeting text; not in CAPA",
            greet("+OK STLS ready\r\n"),
        )
        .stripping_caps(capa("USER\r\n")),
        c(
            p,
            Stripping,
            "as-parameter",
            "STLS only as a SASL mechanism name",
            Play {
                caps: Some(capa("USER\r\nSASL PLAIN STLS\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Stripping,
            "lookalike",
            "X-STLS and STLSX instead of STLS",
            Play {
                caps: Some(capa("X-STLS\r\nSTLSX\r\nUSER\r\n")),
                ..Play::default()
            },
        ),
    ];
    for (what, text) in [
        ("err", "-ERR not available\r\n"),
        ("err-sys-temp", "-ERR [SYS/TEMP] try later\r\n"),
        ("err-in-use", "-ERR [IN-USE] busy\r\n"),
        ("continuation", "+ begin TLS\r\n"),
        ("okay", "+OKay\r\n"),
        ("empty-line", "\r\n"),
        ("ok-no-tls", "+OK begin TLS\r\n"),
    ] {
        let does = if what == "ok-no-tls" {
            "answers +OK but never starts TLS: the session goes on in cleartext".to_string()
        } else {
            format!(
                "answers STLS with {:?}, then goes on in cleartext",
                text.trim_end()
            )
        };
        v.push(c(
            p,
            Stripping,
            &format!("reply-{what}"),
            &does,
            refuse(text),
        ));
    }
    v.extend([
        // Injection.
        c(
            p,
            Injection,
            "capa-answer",
            "appends a CAPA answer offering SASL XHOSTILE after +OK, in the same write",
            inject("+OK\r\nSASL XHOSTILE\r\nUSER\r\n.\r\n"),
        ),
        c(
            p,
            Injection,
            "ok-held",
            "appends +OK lines after +OK and holds the real answer to the first command over TLS",
            Play {
                hold_first: true,
                ..inject("+OK\r\nUSER\r\n.\r\n+OK\r\n")
            },
        ),
        c(
            p,
            Injection,
            "err-text",
            "appends -ERR [SYS/PERM] {marker} after +OK",
            inject("-ERR [SYS/PERM] {marker} account locked\r\n"),
        ),
        c(
            p,
            Injection,
            "partial-line",
            "appends a partial line (no CRLF) after +OK",
            inject("+OK\r\nUS"),
        ),
        c(
            p,
            Injection,
            "empty-line",
            "appends a lone CRLF after +OK",
            inject("\r\n"),
        ),
        // Tampering.
        c(
            p,
            Tampering,
            "listing-after-greeting",
            "sends an unsolicited multi-line listing after the greeting",
            greet("+OK hostile ready\r\n1 100\r\n2 {marker}\r\n.\r\n"),
        ),
        c(
            p,
            Tampering,
            "cleartext-only-sasl",
            "offers SASL XHOSTILE in cleartext CAPA only",
            Play {
                caps: Some(capa("STLS\r\nSASL XHOSTILE\r\n")),
                ..Play::default()
            },
        ),
        c(
            p,
            Tampering,
            "extra-ok-after-greeting",
            "sends an extra +OK after the greeting",
            greet("+OK hostile ready\r\n+OK XHOSTILE\r\n"),
        ),
        c(
            p,
            Tampering,
            "unsolicited-after-tls",
            "sends an unsolicited +OK right after the handshake",
            Play {
                after_tls: Some(Out::b("+OK XHOSTILE\r\n")),
                ..Play::default()
            },
        ),
        // UI spoofing.
        c(
            p,
            UiSpoofing,
            "greeting-text",
            "puts a message for the user in the greeting",
            greet("+OK {marker} your password expired, call +1-555-0100\r\n"),
        ),
        c(
            p,
            UiSpoofing,
            "refusal-text",
            "refuses STLS with -ERR [SYS/PERM] and a message",
            refuse("-ERR [SYS/PERM] {marker} TLS disabled\r\n"),
        ),
        c(
            p,
            UiSpoofing,
            "escapes-greeting",
            "puts terminal escape sequences in the greeting",
            greet(&format!("+OK {ESC} ready\r\n")),
        ),
        c(
            p,
            UiSpoofing,
            "escapes-refusal",
            "refuses STLS with terminal escape sequences",
            refuse(&format!("-ERR {ESC} no TLS\r\n")),
        ),
        // Referrals.
        c(
            p,
            Referral,
            "greeting-err",
            "greets with -ERR pointing to another server",
            Play {
                greeting: Some(Out::ThenClose(
                    "-ERR [SYS/TEMP] moved to {referral}\r\n".into(),
                )),
                ..Play::default()
            },
        ),
        c(
            p,
            Referral,
            "refusal",
            "refuses STLS pointing to another server",
            refuse("-ERR [SYS/TEMP] TLS is at {referral}\r\n"),
        ),
        // Robustness.
        c(
            p,
            Robustness,
            "endless-capa",
            "answers CAPA with a listing that never ends",
            Play {
                caps: Some(Out::Repeat("+OK\r\n".into(), "X-FILLER\r\n".into())),
                ..Play::default()
            },
        ),
        c(
            p,
            Robustness,
            "many-capabilities",
            "answers CAPA with 5000 lines (and STLS)",
            Play {
                caps: Some(Out::Bytes(format!(
                    "+OK\r\n{}STLS\r\n.\r\n",
                    "X-FILLER\r\n".repeat(5000)
                ))),
                ..Play::default()
            },
        ),
        c(
            p,
            Robustness,
            "capa-no-end",
            "answers CAPA with a listing without its final dot and closes",
            Play {
                caps: Some(Out::ThenClose("+OK\r\nSTLS\r\nUSER\r\n".into())),
                ..Play::default()
            },
        ),
    ]);
    v
}

impl Case {
    fn stripping_caps(mut self, caps: Out) -> Case {
        self.play.caps = Some(caps);
        self
    }
}
