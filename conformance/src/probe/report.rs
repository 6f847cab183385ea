//! The probe's results: the check catalogue (stable ids), verdicts, the
//! table for people and the versioned JSON document, and the exit code.

use std::io::IsTerminal;

use serde::Serialize;

use crate::connect::Proto;

/// The JSON schema's name and version (docs/probe.md). A new version is
/// only needed when a field changes meaning or goes away; new checks and
/// new fields do not change it.
pub const SCHEMA: &str = "starttls-probe/1";

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Not run: it does not apply, or something it needs failed first.
    Skipped,
    /// The server behaves as it should.
    Pass,
    /// The server could not be judged (timeout, 421, connection cap).
    Inconclusive,
    /// Weaker than it should be, or a problem on an MTA-to-MTA port.
    Warn,
    /// The server has the problem the check looks for.
    Fail,
}

impl Verdict {
    /// The word used in the table and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Skipped => "skipped",
            Verdict::Pass => "pass",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Verdict::Skipped => "\x1b[2m",
            Verdict::Pass => "\x1b[32m",
            Verdict::Inconclusive => "\x1b[35m",
            Verdict::Warn => "\x1b[33m",
            Verdict::Fail => "\x1b[31;1m",
        }
    }
}

/// One entry of the catalogue.
pub struct Spec {
    /// Stable id.
    pub id: &'static str,
    /// What it checks, in a few words.
    pub title: &'static str,
    /// The RFC or paper behind it.
    pub reference: &'static str,
    /// Informational checks never count toward the exit code.
    pub informational: bool,
}

const fn spec(id: &'static str, title: &'static str, reference: &'static str) -> Spec {
    Spec {
        id,
        title,
        reference,
        informational: false,
    }
}

/// Every check the probe knows, in report order.
pub const CATALOGUE: &[Spec] = &[
    spec("upgrade.offered", "STARTTLS/STLS advertised", "RFC 3207 §4, RFC 2595 §3.1/§4, RFC 9051 §6.2.1"),
    spec("upgrade.works", "upgrade accepted and TLS handshake completed", "RFC 3207 §4, RFC 2595 §3.1/§4, RFC 9051 §6.2.1"),
    spec("tls.version", "negotiated TLS version and cipher", "RFC 9325 §3.1 (BCP 195), RFC 8996"),
    spec("cert.chain", "certificate chains to a trusted CA", "RFC 5280 §6, RFC 8314 §4.1"),
    spec("cert.name", "certificate names the server (RFC 7817 rules)", "RFC 7817 §3, RFC 6125 §6"),
    spec("cert.expiry", "days until the certificate expires", "RFC 5280 §4.1.2.5"),
    spec("injection.same-write", "commands pipelined after STARTTLS in the same write are not executed inside TLS", "CVE-2011-0411; RFC 3207 §4.2; RFC 2595 §3.1; Poddebniak et al., USENIX Security 2021"),
    spec("injection.two-writes", "commands sent right after STARTTLS in a second write are not executed inside TLS", "CVE-2011-0411; Poddebniak et al., USENIX Security 2021"),
    spec("injection.partial-line", "half a command before the upgrade is not joined with bytes after it", "CVE-2011-0411 class; Poddebniak et al., USENIX Security 2021 §5"),
    spec("injection.literal", "an injected IMAP command carrying a literal is not executed inside TLS", "CVE-2011-0411 class; RFC 9051 §4.3, §6.2.1"),
    spec("state.capabilities", "capabilities asked again after TLS are a fresh list", "RFC 3207 §4.2, RFC 2595 §3.1, RFC 9051 §6.2.1"),
    spec("state.no-starttls-after", "STARTTLS/STLS not offered again inside TLS", "RFC 3207 §4.2, RFC 2595 §4"),
    spec("state.second-starttls", "a second STARTTLS/STLS is refused", "RFC 3207 §4.2, RFC 2595 §4, RFC 9051 §6.2.1"),
    spec("state.envelope", "an SMTP envelope begun before TLS is forgotten after it", "RFC 3207 §4.2"),
    spec("auth.before-tls", "no credentials accepted before TLS", "RFC 4954 §4/§6 (530, 538), RFC 9051 §6.2.3/§7.1 (LOGINDISABLED, PRIVACYREQUIRED), RFC 2595 §4, RFC 8314 §5"),
    Spec {
        id: "smtp.requiretls",
        title: "REQUIRETLS advertised after TLS",
        reference: "RFC 8689 §4",
        informational: true,
    },
    spec("implicit.reachable", "implicit-TLS port answers (465/993/995)", "RFC 8314 §3.3"),
    spec("robust.long-line", "a 100 000-octet line is refused and the server keeps serving", "RFC 5321 §4.5.3.1.4, RFC 9051 §4; --aggressive"),
    spec("robust.nul", "a NUL octet in a command is refused and the server keeps serving", "RFC 5321 §4.1.1, RFC 9051 §9; --aggressive"),
    spec("robust.huge-literal", "a 4 GiB literal before login is refused, never invited", "RFC 9051 §4.3, §7.5; RFC 7889; --aggressive"),
];

/// Whether a check applies to a protocol at all (if not, it is left out of
/// the report rather than skipped).
pub fn applies(id: &str, proto: Proto) -> bool {
    match id {
        "injection.literal" | "robust.huge-literal" => proto == Proto::Imap,
        "state.envelope" | "smtp.requiretls" => proto == Proto::Smtp,
        _ => true,
    }
}

/// One check's result.
#[derive(Clone, Debug)]
pub struct Check {
    /// Stable id (from [`CATALOGUE`]).
    pub id: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// One sentence.
    pub detail: String,
    /// The exchange behind it: `C:` what the probe sent, `S:` what the
    /// server sent (escaped), `--` notes.
    pub evidence: Vec<String>,
}

/// The whole report.
pub struct Report {
    /// The URL as given.
    pub url: String,
    /// The protocol.
    pub proto: Proto,
    /// Address probed.
    pub address: String,
    /// Name the certificate must match.
    pub server_name: String,
    /// Results, in catalogue order once finished.
    pub checks: Vec<Check>,
    /// Connections opened.
    pub connections: usize,
    /// The certificate chain of the main upgrade (leaf first), if TLS came up.
    pub chain: Vec<starttls::rustls::pki_types::CertificateDer<'static>>,
    /// How long stages of the main upgrade took (`greeting`, `tls`).
    pub timings: Vec<(&'static str, std::time::Duration)>,
    /// The random marker used in injected commands.
    pub marker: String,
}

impl Report {
    /// Sets (or replaces) a result.
    pub fn set(
        &mut self,
        id: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        evidence: Vec<String>,
    ) {
        if !applies(id, self.proto) {
            return;
        }
        let check = Check {
            id,
            verdict,
            detail: detail.into(),
            evidence,
        };
        match self.checks.iter_mut().find(|c| c.id == id) {
            Some(c) => *c = check,
            None => self.checks.push(check),
        }
    }

    /// Whether a result was recorded.
    pub fn has(&self, id: &str) -> bool {
        self.checks.iter().any(|c| c.id == id)
    }

    /// Sets every not-yet-recorded check to `verdict` with `detail`.
    pub fn rest(&mut self, verdict: Verdict, detail: &str, evidence: &[String]) {
        for s in CATALOGUE {
            if applies(s.id, self.proto) && !self.has(s.id) {
                self.set(s.id, verdict, detail, evidence.to_vec());
            }
        }
    }

    /// Puts the results in catalogue order.
    pub fn finish(&mut self) {
        self.checks.sort_by_key(|c| {
            CATALOGUE
                .iter()
                .position(|s| s.id == c.id)
                .unwrap_or(usize::MAX)
        });
    }

    fn count(&self, v: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == v).count()
    }

    /// The exit code: 1 if a non-informational check is at or above
    /// `fail_on`, else 2 if any is inconclusive, else 0.
    pub fn exit_code(&self, fail_on: Verdict) -> u8 {
        let counted = |c: &&Check| !spec_of(c.id).is_some_and(|s| s.informational);
        if self
            .checks
            .iter()
            .filter(counted)
            .any(|c| matches!(c.verdict, Verdict::Warn | Verdict::Fail) && c.verdict >= fail_on)
        {
            1
        } else if self
            .checks
            .iter()
            .filter(counted)
            .any(|c| c.verdict == Verdict::Inconclusive)
        {
            2
        } else {
            0
        }
    }

    /// The JSON document, its fields in the documented order
    /// (docs/probe.md, schema `starttls-probe/1`).
    pub fn json(&self, fail_on: Verdict) -> JsonDoc<'_> {
        JsonDoc {
            schema: SCHEMA,
            tool: format!("starttls {}", env!("CARGO_PKG_VERSION")),
            target: JsonTarget {
                url: &self.url,
                protocol: match self.proto {
                    Proto::Smtp => "smtp",
                    Proto::Imap => "imap",
                    Proto::Pop3 => "pop3",
                },
                address: &self.address,
                server_name: &self.server_name,
            },
            connections: self.connections,
            marker: &self.marker,
            fail_on: fail_on.as_str(),
            summary: JsonSummary {
                pass: self.count(Verdict::Pass),
                warn: self.count(Verdict::Warn),
                fail: self.count(Verdict::Fail),
                inconclusive: self.count(Verdict::Inconclusive),
                skipped: self.count(Verdict::Skipped),
            },
            exit_code: self.exit_code(fail_on),
            checks: self
                .checks
                .iter()
                .map(|c| {
                    let s = spec_of(c.id);
                    JsonCheck {
                        id: c.id,
                        title: s.map(|s| s.title).unwrap_or_default(),
                        verdict: c.verdict.as_str(),
                        informational: s.is_some_and(|s| s.informational),
                        detail: &c.detail,
                        evidence: &c.evidence,
                        reference: s.map(|s| s.reference).unwrap_or_default(),
                    }
                })
                .collect(),
        }
    }

    /// The table for people; colour only on a terminal.
    pub fn table(&self, fail_on: Verdict) -> String {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut out = String::new();
        out.push_str(&format!(
            "starttls probe {} ({}; certificate name {}; {} connection(s))\n",
            self.url, self.address, self.server_name, self.connections
        ));
        for c in &self.checks {
            let v = c.verdict.as_str();
            let shown = if colour {
                format!("{}{v:<12}\x1b[0m", c.verdict.colour())
            } else {
                format!("{v:<12}")
            };
            out.push_str(&format!("{shown} {:<24} {}\n", c.id, c.detail));
            if !matches!(c.verdict, Verdict::Pass | Verdict::Skipped) {
                for e in c.evidence.iter().take(40) {
                    out.push_str(&format!("             | {e}\n"));
                }
            }
        }
        out.push_str(&format!(
            "{} pass, {} warn, {} fail, {} inconclusive, {} skipped; exit {} (--fail-on {})\n",
            self.count(Verdict::Pass),
            self.count(Verdict::Warn),
            self.count(Verdict::Fail),
            self.count(Verdict::Inconclusive),
            self.count(Verdict::Skipped),
            self.exit_code(fail_on),
            fail_on.as_str()
        ));
        out
    }
}

/// The catalogue entry of an id.
pub fn spec_of(id: &str) -> Option<&'static Spec> {
    CATALOGUE.iter().find(|s| s.id == id)
}

// The JSON document. Field order is the order of docs/probe.md's schema
// (serde writes struct fields in declaration order); a test parses the
// documented example and compares both the keys and their order.

/// The whole document.
#[derive(Serialize)]
pub struct JsonDoc<'a> {
    schema: &'static str,
    tool: String,
    target: JsonTarget<'a>,
    connections: usize,
    marker: &'a str,
    fail_on: &'static str,
    summary: JsonSummary,
    exit_code: u8,
    checks: Vec<JsonCheck<'a>>,
}

/// What was probed.
#[derive(Serialize)]
struct JsonTarget<'a> {
    url: &'a str,
    protocol: &'static str,
    address: &'a str,
    server_name: &'a str,
}

/// Verdict counts.
#[derive(Serialize)]
struct JsonSummary {
    pass: usize,
    warn: usize,
    fail: usize,
    inconclusive: usize,
    skipped: usize,
}

/// One check.
#[derive(Serialize)]
struct JsonCheck<'a> {
    id: &'static str,
    title: &'static str,
    verdict: &'static str,
    informational: bool,
    detail: &'a str,
    evidence: &'a [String],
    reference: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdicts: &[(&'static str, Verdict)]) -> Report {
        let mut r = Report {
            url: "smtp://127.0.0.1:25".into(),
            proto: Proto::Smtp,
            address: "127.0.0.1:25".into(),
            server_name: "127.0.0.1".into(),
            checks: Vec::new(),
            connections: 1,
            marker: "00000000".into(),
            chain: Vec::new(),
            timings: Vec::new(),
        };
        for (id, v) in verdicts {
            r.set(id, *v, "", Vec::new());
        }
        r.rest(Verdict::Pass, "", &[]);
        r.finish();
        r
    }

    /// Verdicts, the exit code with `--fail-on fail`, with `--fail-on warn`.
    type Case = (&'static [(&'static str, Verdict)], u8, u8);

    #[test]
    fn exit_codes_for_every_combination_and_fail_on_level() {
        use Verdict::*;
        let cases: &[Case] = &[
            (&[], 0, 0),
            (&[("robust.nul", Skipped)], 0, 0),
            (&[("cert.expiry", Warn)], 0, 1),
            (&[("cert.expiry", Fail)], 1, 1),
            (&[("upgrade.works", Inconclusive)], 2, 2),
            (
                &[("cert.expiry", Warn), ("upgrade.works", Inconclusive)],
                2,
                1,
            ),
            (
                &[("cert.chain", Fail), ("upgrade.works", Inconclusive)],
                1,
                1,
            ),
            // Informational checks never change the exit code.
            (&[("smtp.requiretls", Fail)], 0, 0),
            (&[("smtp.requiretls", Inconclusive)], 0, 0),
        ];
        for (verdicts, on_fail, on_warn) in cases {
            let r = report(verdicts);
            assert_eq!(r.exit_code(Fail), *on_fail, "{verdicts:?} --fail-on fail");
            assert_eq!(r.exit_code(Warn), *on_warn, "{verdicts:?} --fail-on warn");
            // The JSON and the table say the same.
            let doc = serde_json::to_value(r.json(Warn)).expect("json");
            assert_eq!(doc["exit_code"], *on_warn);
            assert_eq!(doc["fail_on"], "warn");
            assert!(r
                .table(Fail)
                .ends_with(&format!("exit {on_fail} (--fail-on fail)\n")));
        }
    }
}
