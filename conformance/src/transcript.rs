//! Transcript cases: a small text format that says what each side sends,
//! the role and policy under test, and the events or error expected, and a
//! runner that plays each case against the library in memory — whole, byte
//! by byte, and split at every position — requiring identical events.
//!
//! # Format
//!
//! ```text
//! # comment
//! summary: STARTTLS and RSET in one segment: RSET is never processed
//! protocol: smtp            smtp | lmtp | submission | imap | pop3
//! role: server              the library's role under test: server | client
//! policy: default           comma-separated flags (see below)
//! class: command-injection  the threat class (also the folder name)
//! ---
//! sent 220 mx.test ESMTP\r\n
//! peer EHLO client.test\r\nSTARTTLS\r\nRSET\r\n
//! event Hello(
//! sent 250-mx.test\r\n ...
//! ```
//!
//! Steps (bytes use the escapes `\r \n \t \0 \\ \xHH`; nothing is added):
//!
//! | step | meaning |
//! |---|---|
//! | `peer BYTES` | the other side sends these bytes (inside TLS after `tls`) |
//! | `sent BYTES` | the library sent exactly these bytes since the last check (decrypted after `tls`) |
//! | `take` | the caller takes whatever is queued without checking it |
//! | `event PREFIX` | the next event's `Debug` starts with `PREFIX` |
//! | `error PREFIX` | the session failed with an error whose `Debug` starts with `PREFIX` |
//! | `app ACTION` | the application calls the session (actions below) |
//! | `refused ACTION -> PREFIX` | the call is refused with a `UsageError` whose `Debug` starts with `PREFIX`, and changes nothing |
//! | `tls [good\|wrong-name\|untrusted\|expired]` | a TLS handshake with the runner as the peer, presenting that certificate (client role) |
//! | `eof` | the peer closes its side |
//! | `closed` | the session is closed |
//!
//! Every event must be matched, in order: an event left unmatched when the
//! next `peer`, `app`, `tls` or the end comes fails the case.
//!
//! Application actions — SMTP server: `accept`, `reply LINE`; SMTP client:
//! `send COMMAND`, `send-require-tls MAIL FROM:<path> [PARAMS]` (the `MAIL` of
//! a message that requires TLS, RFC 8689), `data BYTES`, `finish`,
//! `auth BASE64`; IMAP server:
//! `accept`, `complete OK|NO|BAD TEXT`, `continue TEXT`, `untagged LINE`;
//! IMAP client: `send COMMAND` (without tag), `auth BASE64`, `idle-done`;
//! POP3 server: `accept`, `reject TEXT`, `multiline TEXT|BYTES`,
//! `continue TEXT`; POP3 client: `send COMMAND`, `auth BASE64`.
//!
//! Policy flags — server: `no-tls`, `implicit`, `require-tls`,
//! `insecure-auth`, `injection-fail`, `external-tls`, and for SMTP
//! `requiretls` (offer RFC 8689 `REQUIRETLS`) and `degrade=D/N` (graduated
//! cleartext degradation: defer `D` of every `N` cleartext `MAIL` commands
//! with the default `450 4.7.0` reply, first one deferred), `no-pipelining`
//! (do not offer RFC 2920 `PIPELINING`) and `insecure-bare-lf` (a bare LF
//! ends a command line, `ServerConfig::insecure_bare_lf_line_ends`); client:
//! `required` (default), `opportunistic`, `implicit`, `cleartext`, `insecure-auth`,
//! `injection-discard`.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use starttls::rustls;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use starttls::{imap, pop3, smtp};
use starttls::{ClientTls, InjectionPolicy, ServerTls, TlsPolicy};

/// A parsed case.
#[derive(Clone, Debug)]
pub struct Case {
    /// File it came from.
    pub path: PathBuf,
    /// One-line description.
    pub summary: String,
    /// `smtp`, `lmtp`, `submission`, `imap`, `pop3`.
    pub protocol: String,
    /// `server` or `client`.
    pub role: Role,
    /// Policy flags.
    pub policy: Vec<String>,
    /// Threat class or `clean` / `rfc-examples`.
    pub class: String,
    steps: Vec<(usize, Step)>,
}

/// The library's role in a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The library is the server; the runner plays the client.
    Server,
    /// The library is the client; the runner plays the server.
    Client,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Client => "client",
        })
    }
}

#[derive(Clone, Debug)]
enum Step {
    Peer(Vec<u8>),
    Sent(Vec<u8>),
    Take,
    Event(String),
    Error(String),
    App(String),
    Refused(String, String),
    Tls(String),
    Eof,
    Closed,
}

impl Case {
    /// Line numbers of the steps that assert something: `event`, `error`,
    /// and `sent` with bytes.
    pub fn assertions(&self) -> Vec<usize> {
        self.steps
            .iter()
            .filter(|(_, s)| match s {
                Step::Event(_) | Step::Error(_) => true,
                Step::Sent(b) => !b.is_empty(),
                _ => false,
            })
            .map(|(n, _)| *n)
            .collect()
    }

    /// The same case without the step on `line`.
    pub fn without(&self, line: usize) -> Case {
        let mut c = self.clone();
        c.steps.retain(|(n, _)| *n != line);
        c
    }
}

/// Reads every `*.case` file below `dir`, sorted by path.
pub fn load(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| format!("{}: {e}", dir.display()))?;
    files.sort();
    files.iter().map(|f| parse_file(f)).collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "case") {
            out.push(path);
        }
    }
    Ok(())
}

fn parse_file(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(path, &text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses one case.
pub fn parse(path: &Path, text: &str) -> Result<Case, String> {
    let mut summary = None;
    let mut protocol = None;
    let mut role = None;
    let mut policy = Vec::new();
    let mut class = None;
    let mut steps = Vec::new();
    let mut in_body = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end();
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !in_body {
            if line == "---" {
                in_body = true;
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or(format!("line {n}: expected `key: value` or `---`"))?;
            let v = v.trim().to_string();
            match k.trim() {
                "summary" => summary = Some(v),
                "protocol" => protocol = Some(v),
                "role" => {
                    role = Some(match v.as_str() {
                        "server" => Role::Server,
                        "client" => Role::Client,
                        _ => return Err(format!("line {n}: role is server or client")),
                    })
                }
                "policy" => {
                    policy = v
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty() && p != "default")
                        .collect()
                }
                "class" => class = Some(v),
                "rfc" | "guards" | "see" => {}
                other => return Err(format!("line {n}: unknown header {other:?}")),
            }
            continue;
        }
        let (word, rest) = match line.split_once(' ') {
            Some((w, r)) => (w, r),
            None => (line, ""),
        };
        let step = match word {
            "peer" => Step::Peer(unescape(rest).map_err(|e| format!("line {n}: {e}"))?),
            "sent" => Step::Sent(unescape(rest).map_err(|e| format!("line {n}: {e}"))?),
            "take" => Step::Take,
            "event" => Step::Event(rest.to_string()),
            "error" => Step::Error(rest.to_string()),
            "app" => Step::App(rest.to_string()),
            "refused" => {
                let (action, prefix) = rest
                    .split_once(" -> ")
                    .ok_or(format!("line {n}: refused ACTION -> PREFIX"))?;
                Step::Refused(action.to_string(), prefix.to_string())
            }
            "tls" => Step::Tls(if rest.is_empty() {
                "good".into()
            } else {
                rest.to_string()
            }),
            "eof" => Step::Eof,
            "closed" => Step::Closed,
            other => return Err(format!("line {n}: unknown step {other:?}")),
        };
        steps.push((n, step));
    }
    let case = Case {
        path: path.to_path_buf(),
        summary: summary.ok_or("missing summary")?,
        protocol: protocol.ok_or("missing protocol")?,
        role: role.ok_or("missing role")?,
        policy,
        class: class.ok_or("missing class")?,
        steps,
    };
    if !["smtp", "lmtp", "submission", "imap", "pop3"].contains(&case.protocol.as_str()) {
        return Err(format!("unknown protocol {:?}", case.protocol));
    }
    if let Some(dir) = path.parent().and_then(|p| p.file_name()) {
        if dir.to_string_lossy() != case.class {
            return Err(format!(
                "class {:?} does not match its folder {:?}",
                case.class, dir
            ));
        }
    }
    Ok(case)
}

/// Unescapes `\r \n \t \0 \\ \xHH`.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let h = [it.next(), it.next()];
                let hex = match h {
                    [Some(a), Some(b)] => [a, b],
                    _ => return Err("\\x needs two hex digits".into()),
                };
                let v = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .ok_or("\\x needs two hex digits")?;
                out.push(v);
            }
            other => {
                return Err(format!(
                    "unknown escape \\{}",
                    other.map(char::from).unwrap_or(' ')
                ))
            }
        }
    }
    Ok(out)
}

fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

// ---------------------------------------------------------------- certificates

struct CasePki {
    ca: CertificateDer<'static>,
    good: (Vec<CertificateDer<'static>>, Vec<u8>),
    wrong_name: (Vec<CertificateDer<'static>>, Vec<u8>),
    untrusted: (Vec<CertificateDer<'static>>, Vec<u8>),
    expired: (Vec<CertificateDer<'static>>, Vec<u8>),
}

fn case_pki() -> &'static CasePki {
    static PKI: OnceLock<CasePki> = OnceLock::new();
    PKI.get_or_init(|| make_pki().expect("generating test certificates cannot fail"))
}

fn make_pki() -> Result<CasePki, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    fn ca(
        name: &str,
    ) -> Result<(CertificateDer<'static>, CertificateParams, KeyPair), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key)?;
        Ok((cert.der().clone(), p, key))
    }
    fn leaf(
        names: &[&str],
        issuer: &Issuer<'_, &KeyPair>,
        expired: bool,
    ) -> Result<(Vec<CertificateDer<'static>>, Vec<u8>), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut p =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        if expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = p.signed_by(&key, issuer)?;
        Ok((vec![cert.der().clone()], key.serialize_der()))
    }
    let (ca_der, ca_params, ca_key) = ca("transcript CA")?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let (_, evil_params, evil_key) = ca("someone else's CA")?;
    let evil = Issuer::new(evil_params, &evil_key);
    Ok(CasePki {
        ca: ca_der,
        good: leaf(&["localhost"], &issuer, false)?,
        wrong_name: leaf(&["mail.example.org"], &issuer, false)?,
        untrusted: leaf(&["localhost"], &evil, false)?,
        expired: leaf(&["localhost"], &issuer, true)?,
    })
}

fn server_tls_config(which: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let p = case_pki();
    let (chain, key) = match which {
        "good" => &p.good,
        "wrong-name" => &p.wrong_name,
        "untrusted" => &p.untrusted,
        "expired" => &p.expired,
        other => return Err(format!("unknown certificate {other:?}")),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn client_tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let _ = roots.add(case_pki().ca.clone());
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("valid name")
}

// ---------------------------------------------------------------- sessions under test

/// The session under test, whatever its protocol and role.
enum Session {
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
            Session::SmtpServer($v) => $e,
            Session::SmtpClient($v) => $e,
            Session::ImapServer($v) => $e,
            Session::ImapClient($v) => $e,
            Session::Pop3Server($v) => $e,
            Session::Pop3Client($v) => $e,
        }
    };
}

impl Session {
    fn new(case: &Case) -> Result<Session, String> {
        let has = |f: &str| case.policy.iter().any(|p| p == f);
        let server_tls = if has("no-tls") {
            ServerTls::None
        } else if has("external-tls") {
            ServerTls::External
        } else {
            ServerTls::Rustls(server_tls_config("good")?)
        };
        let injection = if has("injection-fail") {
            InjectionPolicy::Fail
        } else {
            InjectionPolicy::Discard
        };
        let client_tls = if has("external-tls") {
            ClientTls::External
        } else {
            ClientTls::Rustls {
                config: client_tls_config(),
                server_name: localhost(),
            }
        };
        let policy = if has("implicit") {
            TlsPolicy::Implicit
        } else if has("opportunistic") {
            TlsPolicy::Opportunistic
        } else if has("cleartext") {
            TlsPolicy::Cleartext
        } else {
            TlsPolicy::StartTlsRequired
        };
        let client_injection = if has("injection-discard") {
            InjectionPolicy::Discard
        } else {
            InjectionPolicy::Fail
        };
        let e = |e: starttls::ConfigError| e.to_string();
        Ok(match (case.protocol.as_str(), case.role) {
            ("smtp" | "lmtp" | "submission", Role::Server) => {
                let mut c = smtp::ServerConfig::new("mx.test", server_tls);
                c.implicit_tls = has("implicit");
                c.require_tls = has("require-tls") || case.protocol == "submission";
                c.insecure_auth_in_cleartext = has("insecure-auth");
                c.lmtp = case.protocol == "lmtp";
                c.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into()];
                c.injection = injection;
                c.extensions.requiretls = has("requiretls");
                c.extensions.pipelining = !has("no-pipelining");
                c.insecure_bare_lf_line_ends = has("insecure-bare-lf");
                if let Some(rate) = case.policy.iter().find_map(|p| p.strip_prefix("degrade=")) {
                    let (d, n) = rate
                        .split_once('/')
                        .and_then(|(d, n)| Some((d.parse().ok()?, n.parse().ok()?)))
                        .ok_or(format!("degrade=D/N expected, got {rate:?}"))?;
                    c.degrade_cleartext = Some(Arc::new(smtp::DeferSchedule::new(
                        d,
                        n,
                        smtp::Deferral::default(),
                    )));
                }
                Session::SmtpServer(smtp::ServerSession::new(Arc::new(c)).map_err(e)?)
            }
            ("smtp" | "lmtp" | "submission", Role::Client) => {
                let mut c = smtp::ClientConfig::new("client.test", policy, client_tls);
                c.lmtp = case.protocol == "lmtp";
                c.insecure_auth_in_cleartext = has("insecure-auth");
                c.injection = client_injection;
                Session::SmtpClient(smtp::ClientSession::new(Arc::new(c)).map_err(e)?)
            }
            ("imap", Role::Server) => {
                let mut c = imap::ServerConfig::new(server_tls);
                c.implicit_tls = has("implicit");
                c.require_tls = has("require-tls");
                c.insecure_login_in_cleartext = has("insecure-auth");
                c.auth_mechanisms = vec!["PLAIN".into()];
                c.injection = injection;
                Session::ImapServer(imap::ServerSession::new(Arc::new(c)).map_err(e)?)
            }
            ("imap", Role::Client) => {
                let mut c = imap::ClientConfig::new(policy, client_tls);
                c.insecure_login_in_cleartext = has("insecure-auth");
                c.injection = client_injection;
                Session::ImapClient(imap::ClientSession::new(Arc::new(c)).map_err(e)?)
            }
            ("pop3", Role::Server) => {
                let mut c = pop3::ServerConfig::new(server_tls);
                c.implicit_tls = has("implicit");
                c.require_tls = has("require-tls");
                c.insecure_auth_in_cleartext = has("insecure-auth");
                c.sasl_mechanisms = vec!["PLAIN".into()];
                c.injection = injection;
                Session::Pop3Server(pop3::ServerSession::new(Arc::new(c)).map_err(e)?)
            }
            ("pop3", Role::Client) => {
                let mut c = pop3::ClientConfig::new(policy, client_tls);
                c.insecure_auth_in_cleartext = has("insecure-auth");
                c.injection = client_injection;
                Session::Pop3Client(pop3::ClientSession::new(Arc::new(c)).map_err(e)?)
            }
            (p, _) => return Err(format!("unknown protocol {p}")),
        })
    }

    fn input(&mut self, d: &[u8]) {
        each!(self, s => s.handle_input(d))
    }

    fn eof(&mut self) {
        each!(self, s => s.handle_eof())
    }

    fn transmit(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = each!(self, s => s.poll_transmit()) {
            v.extend_from_slice(&b);
        }
        v
    }

    fn closed(&self) -> bool {
        each!(self, s => s.is_closed())
    }

    /// Every pending event as `Debug`, then the error, if any.
    fn events(&mut self, into: &mut Vec<String>) -> Option<String> {
        loop {
            let r = match self {
                Session::SmtpServer(s) => s.poll_event().map(|o| o.map(|e| format!("{e:?}"))),
                Session::SmtpClient(s) => s.poll_event().map(|o| o.map(|e| format!("{e:?}"))),
                Session::ImapServer(s) => s.poll_event().map(|o| o.map(|e| format!("{e:?}"))),
                Session::ImapClient(s) => s.poll_event().map(|o| o.map(|e| format!("{e:?}"))),
                Session::Pop3Server(s) => s.poll_event().map(|o| o.map(|e| format!("{e:?}"))),
                Session::Pop3Client(s) => s.poll_event().map(|o| o.map(|e| format!("{e:?}"))),
            };
            match r {
                Ok(Some(e)) => into.push(e),
                Ok(None) => return None,
                Err(e) => return Some(format!("{e:?}")),
            }
        }
    }

    fn tls_established(&mut self) -> Result<(), String> {
        each!(self, s => s.tls_established(starttls::TlsInfo::unknown()))
            .map_err(|e| format!("{e:?}"))
    }

    /// Carries out an `app` step.
    fn app(&mut self, action: &str) -> Result<(), String> {
        let (verb, arg) = action.split_once(' ').unwrap_or((action, ""));
        let line = |a: &str| -> Result<Bytes, String> { Ok(Bytes::from(unescape(a)?)) };
        let usage = |e: starttls::UsageError| format!("{e:?}");
        match self {
            Session::SmtpServer(s) => match verb {
                "accept" => s.accept().map_err(usage),
                "reply" => {
                    let mut raw = unescape(arg)?;
                    raw.extend_from_slice(b"\r\n");
                    let r = smtp::Reply::parse(Bytes::from(raw)).map_err(|e| e.to_string())?;
                    s.reply(r).map_err(usage)
                }
                _ => Err(format!("unknown smtp server action {verb:?}")),
            },
            Session::SmtpClient(s) => match verb {
                "send" => s
                    .send(smtp::Command::parse(&line(arg)?).map_err(|e| e.to_string())?)
                    .map_err(usage),
                "send-require-tls" => match smtp::Command::parse(&line(arg)?) {
                    Ok(smtp::Command::Mail { from, params }) => {
                        s.send_mail_require_tls(from, &params).map_err(usage)
                    }
                    _ => Err(format!(
                        "send-require-tls takes a MAIL command, got {arg:?}"
                    )),
                },
                "data" => s.send_data(&unescape(arg)?).map_err(usage),
                "finish" => s.finish_data().map_err(usage),
                "auth" => s
                    .send_auth_response(starttls::Secret::new(line(arg)?))
                    .map_err(usage),
                _ => Err(format!("unknown smtp client action {verb:?}")),
            },
            Session::ImapServer(s) => match verb {
                "accept" => s.accept().map_err(usage),
                "complete" => {
                    let (status, text) = arg.split_once(' ').unwrap_or((arg, ""));
                    let status = match status {
                        "OK" => imap::Status::Ok,
                        "NO" => imap::Status::No,
                        "BAD" => imap::Status::Bad,
                        _ => return Err(format!("unknown status {status:?}")),
                    };
                    s.complete(status, None, text).map_err(usage)
                }
                "continue" => s.continue_request(&unescape(arg)?).map_err(usage),
                "untagged" => {
                    let r = imap::Response::parse(&line(arg)?).map_err(|e| e.to_string())?;
                    s.send_untagged(&r).map_err(usage)
                }
                _ => Err(format!("unknown imap server action {verb:?}")),
            },
            Session::ImapClient(s) => match verb {
                "send" => {
                    let mut full = b"x ".to_vec();
                    full.extend_from_slice(&unescape(arg)?);
                    let c = imap::Command::parse(&Bytes::from(full)).map_err(|e| e.to_string())?;
                    s.send(c.body).map(|_| ()).map_err(usage)
                }
                "auth" => s
                    .send_auth_response(starttls::Secret::new(line(arg)?))
                    .map_err(usage),
                "idle-done" => s.idle_done().map_err(usage),
                _ => Err(format!("unknown imap client action {verb:?}")),
            },
            Session::Pop3Server(s) => match verb {
                "accept" => s.accept().map_err(usage),
                "reject" => s.reject(None, arg).map_err(usage),
                "multiline" => {
                    let (text, body) = arg.split_once('|').unwrap_or((arg, ""));
                    s.reply_multiline(text, &unescape(body)?).map_err(usage)
                }
                "continue" => s.continue_request(&unescape(arg)?).map_err(usage),
                _ => Err(format!("unknown pop3 server action {verb:?}")),
            },
            Session::Pop3Client(s) => match verb {
                "send" => s
                    .send(pop3::Command::parse(&line(arg)?).map_err(|e| e.to_string())?)
                    .map_err(usage),
                "auth" => s
                    .send_auth_response(starttls::Secret::new(line(arg)?))
                    .map_err(usage),
                _ => Err(format!("unknown pop3 client action {verb:?}")),
            },
        }
    }
}

// ---------------------------------------------------------------- the runner

/// How `peer` bytes are split into `handle_input` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Each `peer` step in one call.
    Whole,
    /// One byte per call.
    Bytewise,
    /// Peer step number `step` (counting from 0) split in two at `at`.
    At {
        /// Which `peer` step.
        step: usize,
        /// Where.
        at: usize,
    },
    /// Pseudo-random chunk sizes from this seed.
    Random(u64),
}

/// The runner's side of TLS.
enum PeerTls {
    Client(rustls::ClientConnection),
    Server(rustls::ServerConnection),
}

impl PeerTls {
    fn conn(&mut self) -> &mut dyn ConnLike {
        match self {
            PeerTls::Client(c) => c,
            PeerTls::Server(c) => c,
        }
    }
}

trait ConnLike {
    fn read_tls_all(&mut self, data: &[u8]) -> Result<(), String>;
    fn write_tls_all(&mut self) -> Vec<u8>;
    fn plaintext(&mut self) -> Vec<u8>;
    fn send(&mut self, data: &[u8]);
}

macro_rules! conn_like {
    ($t:ty) => {
        impl ConnLike for $t {
            fn read_tls_all(&mut self, mut data: &[u8]) -> Result<(), String> {
                while !data.is_empty() {
                    self.read_tls(&mut data).map_err(|e| e.to_string())?;
                    self.process_new_packets().map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            fn write_tls_all(&mut self) -> Vec<u8> {
                let mut v = Vec::new();
                while self.wants_write() {
                    if self.write_tls(&mut v).is_err() {
                        break;
                    }
                }
                v
            }
            fn plaintext(&mut self) -> Vec<u8> {
                let mut v = Vec::new();
                let _ = self.reader().read_to_end(&mut v);
                v
            }
            fn send(&mut self, data: &[u8]) {
                let _ = self.writer().write_all(data);
            }
        }
    };
}
conn_like!(rustls::ClientConnection);
conn_like!(rustls::ServerConnection);

/// A case failure: which line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Line of the case file (0: the case as a whole).
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

struct Run<'a> {
    case: &'a Case,
    session: Session,
    split: Split,
    peer_step: usize,
    rng: u64,
    /// Events not yet matched.
    pending: std::collections::VecDeque<String>,
    /// Every event, for comparing runs.
    log: Vec<String>,
    error: Option<String>,
    error_seen: bool,
    /// Bytes the session sent that a `sent` step has not checked yet.
    unchecked: Vec<u8>,
    tls: Option<PeerTls>,
}

impl Run<'_> {
    fn collect(&mut self) {
        let mut new = Vec::new();
        let err = self.session.events(&mut new);
        self.log.extend(new.iter().cloned());
        self.pending.extend(new);
        if self.error.is_none() {
            if let Some(e) = err {
                self.log.push(format!("error {e}"));
                self.error = Some(e);
            }
        }
    }

    /// Takes what the session transmitted; after TLS, through the runner's TLS.
    fn pull(&mut self) -> Result<(), String> {
        let out = self.session.transmit();
        match &mut self.tls {
            None => self.unchecked.extend_from_slice(&out),
            Some(t) => {
                let c = t.conn();
                if !out.is_empty() {
                    c.read_tls_all(&out)?;
                }
                let p = c.plaintext();
                self.unchecked.extend_from_slice(&p);
            }
        }
        Ok(())
    }

    fn chunks(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let step = self.peer_step;
        self.peer_step += 1;
        match self.split {
            Split::Whole => vec![data.to_vec()],
            Split::Bytewise => data.iter().map(|b| vec![*b]).collect(),
            Split::At { step: s, at } if s == step && at > 0 && at < data.len() => {
                vec![data[..at].to_vec(), data[at..].to_vec()]
            }
            Split::At { .. } => vec![data.to_vec()],
            Split::Random(_) => {
                let mut out = Vec::new();
                let mut rest = data;
                while !rest.is_empty() {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let n = 1 + (self.rng as usize % 23).min(rest.len() - 1);
                    out.push(rest[..n].to_vec());
                    rest = &rest[n..];
                }
                out
            }
        }
    }

    /// Delivers bytes to the session (encrypted after TLS), chunk by chunk,
    /// collecting events after each chunk.
    fn deliver(&mut self, plaintext: &[u8]) -> Result<(), String> {
        let wire = match &mut self.tls {
            None => plaintext.to_vec(),
            Some(t) => {
                let c = t.conn();
                c.send(plaintext);
                c.write_tls_all()
            }
        };
        for chunk in self.chunks(&wire) {
            self.session.input(&chunk);
            self.collect();
        }
        Ok(())
    }

    fn handshake(&mut self, which: &str) -> Result<(), String> {
        if self.case.policy.iter().any(|p| p == "external-tls") {
            // Bring-your-own TLS: the caller's stack is the runner's business.
            self.pull()?;
            return self.session.tls_established();
        }
        let mut t = match self.case.role {
            Role::Server => PeerTls::Client(
                rustls::ClientConnection::new(client_tls_config(), localhost())
                    .map_err(|e| e.to_string())?,
            ),
            Role::Client => PeerTls::Server(
                rustls::ServerConnection::new(server_tls_config(which)?)
                    .map_err(|e| e.to_string())?,
            ),
        };
        if !self.unchecked.is_empty() {
            return Err("cleartext sent before `tls` was not checked with `sent`".into());
        }
        // From here on everything the session transmits is TLS: in the
        // client role the ClientHello is already queued.
        for _ in 0..32 {
            let from_session = self.session.transmit();
            let c = t.conn();
            let mut progressed = false;
            if !from_session.is_empty() {
                progressed = true;
                if let Err(e) = c.read_tls_all(&from_session) {
                    // The runner's TLS refused the session's bytes; the
                    // session's own error (if any) is what the case checks.
                    self.collect();
                    self.tls = Some(t);
                    return Err(format!("runner TLS: {e}"));
                }
            }
            let to_session = c.write_tls_all();
            if !to_session.is_empty() {
                progressed = true;
                for chunk in self.chunks_raw(&to_session) {
                    self.session.input(&chunk);
                    self.collect();
                }
            }
            if !progressed {
                break;
            }
        }
        self.tls = Some(t);
        Ok(())
    }

    /// Handshake records are split like peer bytes in byte-wise and random
    /// modes, without counting as a `peer` step.
    fn chunks_raw(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        match self.split {
            Split::Bytewise => data.iter().map(|b| vec![*b]).collect(),
            Split::Random(_) => {
                let saved = self.peer_step;
                let v = self.chunks(data);
                self.peer_step = saved;
                v
            }
            _ => vec![data.to_vec()],
        }
    }

    fn no_pending(&self, line: usize) -> Result<(), Failure> {
        match self.pending.front() {
            None => Ok(()),
            Some(e) => Err(Failure {
                line,
                message: format!("unmatched event: {e}"),
            }),
        }
    }

    fn step(&mut self, line: usize, step: &Step) -> Result<(), Failure> {
        let fail = |message: String| Failure { line, message };
        match step {
            Step::Peer(bytes) => {
                self.no_pending(line)?;
                self.deliver(bytes).map_err(fail)?;
            }
            Step::Sent(want) => {
                self.pull().map_err(fail)?;
                let n = want.len().min(self.unchecked.len());
                if self.unchecked[..n] != want[..] || n < want.len() {
                    return Err(fail(format!(
                        "sent {:?}, want {:?}",
                        escape(&self.unchecked),
                        escape(want)
                    )));
                }
                self.unchecked.drain(..n);
                if !self.unchecked.is_empty() {
                    return Err(fail(format!("also sent {:?}", escape(&self.unchecked))));
                }
            }
            Step::Take => {
                let _ = self.session.transmit();
                self.unchecked.clear();
                self.collect();
            }
            Step::Event(prefix) => {
                self.collect();
                match self.pending.pop_front() {
                    Some(e) if e.starts_with(prefix.as_str()) => {}
                    Some(e) => return Err(fail(format!("event {e}, want {prefix}..."))),
                    None => {
                        return Err(fail(match &self.error {
                            Some(err) => {
                                format!("no more events (failed with {err}), want {prefix}...")
                            }
                            None => format!("no event, want {prefix}..."),
                        }))
                    }
                }
            }
            Step::Error(prefix) => {
                self.collect();
                self.no_pending(line)?;
                match &self.error {
                    Some(e) if e.starts_with(prefix.as_str()) => self.error_seen = true,
                    Some(e) => return Err(fail(format!("error {e}, want {prefix}..."))),
                    None => return Err(fail(format!("no error, want {prefix}..."))),
                }
            }
            Step::App(action) => {
                self.no_pending(line)?;
                self.session
                    .app(action)
                    .map_err(|e| fail(format!("app {action}: {e}")))?;
                self.collect();
            }
            Step::Refused(action, prefix) => {
                self.no_pending(line)?;
                match self.session.app(action) {
                    Ok(()) => {
                        return Err(fail(format!(
                            "app {action} was accepted, want a refusal {prefix}..."
                        )))
                    }
                    Err(e) if e.starts_with(prefix.as_str()) => {}
                    Err(e) => {
                        return Err(fail(format!(
                            "app {action} refused with {e}, want {prefix}..."
                        )))
                    }
                }
                self.collect();
            }
            Step::Tls(which) => {
                self.no_pending(line)?;
                if let Err(e) = self.handshake(which) {
                    // A refused handshake is a case outcome when an `error`
                    // step follows; otherwise it is a failure.
                    if self.error.is_none() {
                        return Err(fail(e));
                    }
                }
            }
            Step::Eof => {
                self.no_pending(line)?;
                self.session.eof();
                self.collect();
            }
            Step::Closed => {
                if !self.session.closed() {
                    return Err(fail("session not closed".into()));
                }
            }
        }
        Ok(())
    }
}

/// Plays a case with one way of splitting. Returns the event log.
pub fn play(case: &Case, split: Split) -> Result<Vec<String>, Failure> {
    let session = Session::new(case).map_err(|m| Failure {
        line: 0,
        message: m,
    })?;
    let mut run = Run {
        case,
        session,
        split,
        peer_step: 0,
        rng: match split {
            Split::Random(s) => s | 1,
            _ => 1,
        },
        pending: Default::default(),
        log: Vec::new(),
        error: None,
        error_seen: false,
        unchecked: Vec::new(),
        tls: None,
    };
    run.collect();
    for (line, step) in &case.steps {
        run.step(*line, step)?;
    }
    run.collect();
    let last = case.steps.last().map(|(n, _)| *n).unwrap_or(0);
    run.no_pending(last)?;
    // Every byte the library sent must have been checked.
    run.pull().map_err(|m| Failure {
        line: last,
        message: m,
    })?;
    if !run.unchecked.is_empty() {
        return Err(Failure {
            line: last,
            message: format!(
                "sent {:?}, which no `sent` step checks",
                escape(&run.unchecked)
            ),
        });
    }
    if let (Some(e), false) = (&run.error, run.error_seen) {
        return Err(Failure {
            line: last,
            message: format!("the session failed with {e}, and no `error` step expects it"),
        });
    }
    Ok(run.log)
}

/// The outcome of one case over all its splits.
#[derive(Debug)]
pub struct Verdict {
    /// How many ways of splitting were played.
    pub splits: usize,
    /// The first failure, with the split that caused it.
    pub failure: Option<(Split, Failure)>,
}

/// Plays a case whole, byte by byte, split at every position of every
/// `peer` step (or at 64 pseudo-random sets of positions when the case sends
/// more than 512 bytes), and requires identical event logs.
pub fn check(case: &Case) -> Verdict {
    let reference = match play(case, Split::Whole) {
        Ok(log) => log,
        Err(f) => {
            return Verdict {
                splits: 1,
                failure: Some((Split::Whole, f)),
            }
        }
    };
    let peer_sizes: Vec<usize> = case
        .steps
        .iter()
        .filter_map(|(_, s)| match s {
            Step::Peer(b) => Some(b.len()),
            _ => None,
        })
        .collect();
    let total: usize = peer_sizes.iter().sum();
    let mut splits = vec![Split::Bytewise];
    if total <= 512 {
        for (step, &len) in peer_sizes.iter().enumerate() {
            splits.extend((1..len).map(|at| Split::At { step, at }));
        }
    } else {
        splits.extend((1..=64u64).map(|s| Split::Random(s * 0x9e37_79b9)));
    }
    let mut n = 1;
    for split in splits {
        n += 1;
        let r = play(case, split).and_then(|log| {
            if log == reference {
                Ok(())
            } else {
                Err(Failure {
                    line: 0,
                    message: format!(
                        "events differ from the unsplit run:\n  got  {log:?}\n  want {reference:?}"
                    ),
                })
            }
        });
        if let Err(f) = r {
            return Verdict {
                splits: n,
                failure: Some((split, f)),
            };
        }
    }
    Verdict {
        splits: n,
        failure: None,
    }
}
