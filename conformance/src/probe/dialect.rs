//! What a reply means, per protocol: SMTP replies (`smtp::Reply`), IMAP
//! responses (`imap::Response`, literals found with
//! `imap::trailing_literal`), POP3 status lines (`pop3::StatusLine`), and
//! the capability lists. One command at a time.

use bytes::Bytes;
use starttls::{imap, pop3, smtp};

use super::wire::{Stop, Wire};
use crate::connect::Proto;

/// Largest IMAP literal the probe reads from a server.
const MAX_LITERAL: usize = 1024 * 1024;

/// One complete reply.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resp {
    /// Positive (SMTP 2xx/3xx, IMAP OK / greeting OK or PREAUTH, POP3 +OK).
    pub(crate) ok: bool,
    /// SMTP reply code.
    pub(crate) code: Option<u16>,
    /// Every line (IMAP: every message, literals inline), as received.
    pub(crate) lines: Vec<Vec<u8>>,
    /// IMAP: the tagged line (or the greeting); SMTP/POP3: the first line.
    pub(crate) status: Vec<u8>,
}

impl Resp {
    /// The status text, escaped.
    pub(crate) fn shown(&self) -> String {
        starttls::Escaped::new(&self.status).to_string()
    }
}

/// A probe client: a wire and a protocol.
pub(crate) struct Peer {
    pub(crate) w: Wire,
    pub(crate) proto: Proto,
    tag: u32,
}

impl Peer {
    pub(crate) fn new(w: Wire, proto: Proto) -> Peer {
        Peer { w, proto, tag: 0 }
    }

    /// `STARTTLS` or `STLS`.
    pub(crate) fn upgrade_verb(&self) -> &'static str {
        match self.proto {
            Proto::Pop3 => "STLS",
            _ => "STARTTLS",
        }
    }

    /// A fresh IMAP tag.
    pub(crate) fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("P{}", self.tag)
    }

    /// The greeting, waiting up to `wait` (the banner wait).
    pub(crate) fn greeting(&mut self, wait: std::time::Duration) -> Result<Resp, Stop> {
        let first = self.w.line_within(wait)?;
        match self.proto {
            Proto::Smtp => self.smtp_rest(first),
            Proto::Imap => {
                let msg = self.imap_message(first)?;
                let ok = starts_ci(&msg, b"* OK") || starts_ci(&msg, b"* PREAUTH");
                Ok(Resp {
                    ok,
                    code: None,
                    lines: vec![msg.clone()],
                    status: msg,
                })
            }
            Proto::Pop3 => Ok(pop3_resp(first)),
        }
    }

    /// Sends `line` (with a tag for IMAP) and reads its reply. POP3 `CAPA`
    /// reads the multi-line list after `+OK`.
    pub(crate) fn command(&mut self, line: &str) -> Result<Resp, Stop> {
        match self.proto {
            Proto::Smtp => {
                self.w.send(format!("{line}\r\n").as_bytes())?;
                self.smtp_reply()
            }
            Proto::Imap => {
                let tag = self.next_tag();
                self.w.send(format!("{tag} {line}\r\n").as_bytes())?;
                self.imap_until(&tag)
            }
            Proto::Pop3 => {
                self.w.send(format!("{line}\r\n").as_bytes())?;
                let first = self.w.line()?;
                let mut r = pop3_resp(first);
                if r.ok && line.eq_ignore_ascii_case("CAPA") {
                    loop {
                        let l = self.w.line()?;
                        if l == b"." {
                            break;
                        }
                        r.lines.push(l);
                    }
                }
                Ok(r)
            }
        }
    }

    /// One SMTP reply.
    pub(crate) fn smtp_reply(&mut self) -> Result<Resp, Stop> {
        let first = self.w.line()?;
        self.smtp_rest(first)
    }

    fn smtp_rest(&mut self, first: Vec<u8>) -> Result<Resp, Stop> {
        let mut lines = vec![first];
        while lines
            .last()
            .is_some_and(|l| l.len() >= 4 && l.get(3) == Some(&b'-'))
        {
            if lines.len() > 1000 {
                return Err(Stop::TooLong);
            }
            lines.push(self.w.line()?);
        }
        let mut raw = Vec::new();
        for l in &lines {
            raw.extend_from_slice(l);
            raw.extend_from_slice(b"\r\n");
        }
        let code = match smtp::Reply::parse(Bytes::from(raw)) {
            Ok(r) => Some(u16::from(r.code())),
            Err(_) => lines
                .first()
                .and_then(|l| l.get(..3))
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok()),
        };
        Ok(Resp {
            ok: code.is_some_and(|c| (200..400).contains(&c)),
            code,
            status: lines.first().cloned().unwrap_or_default(),
            lines,
        })
    }

    /// One IMAP message: `first` and, while it ends in a literal header,
    /// the literal and the line after it.
    pub(crate) fn imap_message(&mut self, first: Vec<u8>) -> Result<Vec<u8>, Stop> {
        let mut msg = first;
        let mut total = 0usize;
        while let Ok(Some(h)) = imap::trailing_literal(&msg) {
            let n = usize::try_from(h.len).unwrap_or(usize::MAX);
            total = total.saturating_add(n);
            if total > MAX_LITERAL {
                return Err(Stop::TooLong);
            }
            msg.extend_from_slice(b"\r\n");
            msg.extend_from_slice(&self.w.exact(n)?);
            msg.extend_from_slice(&self.w.line()?);
        }
        Ok(msg)
    }

    /// IMAP messages up to the tagged completion of `tag`.
    pub(crate) fn imap_until(&mut self, tag: &str) -> Result<Resp, Stop> {
        let mut lines = Vec::new();
        loop {
            let first = self.w.line()?;
            let msg = self.imap_message(first)?;
            lines.push(msg.clone());
            if lines.len() > 10_000 {
                return Err(Stop::TooLong);
            }
            if let Ok(imap::Response::Tagged { tag: t, status }) =
                imap::Response::parse(&Bytes::from(msg.clone()))
            {
                if t.as_ref() == tag.as_bytes() {
                    return Ok(Resp {
                        ok: status.status == imap::Status::Ok,
                        code: None,
                        lines,
                        status: msg,
                    });
                }
            }
            if starts_ci(&msg, b"* BYE") {
                return Err(Stop::Closed);
            }
        }
    }

    /// Asks for the capabilities (`EHLO`, `CAPABILITY`, `CAPA`); the reply
    /// and the list, upper case.
    pub(crate) fn capabilities(&mut self) -> Result<(Resp, Vec<String>), Stop> {
        let r = match self.proto {
            Proto::Smtp => self.command("EHLO starttls-probe.invalid")?,
            Proto::Imap => self.command("CAPABILITY")?,
            Proto::Pop3 => self.command("CAPA")?,
        };
        let caps = if r.ok {
            capability_list(self.proto, &r)
        } else {
            Vec::new()
        };
        Ok((r, caps))
    }

    /// Says goodbye (best effort, short wait) and closes.
    pub(crate) fn quit(&mut self) {
        let verb = match self.proto {
            Proto::Imap => "LOGOUT",
            _ => "QUIT",
        };
        let saved = self.w.wait;
        self.w.wait = saved.min(std::time::Duration::from_secs(5));
        let _ = self.command(verb);
        self.w.wait = saved;
        self.w.close();
    }
}

/// The capability entries of a positive reply, upper case.
pub(crate) fn capability_list(proto: Proto, r: &Resp) -> Vec<String> {
    let text = |l: &[u8]| String::from_utf8_lossy(l).trim().to_ascii_uppercase();
    match proto {
        Proto::Smtp => r
            .lines
            .iter()
            .skip(1)
            .map(|l| text(l.get(4..).unwrap_or_default()))
            .filter(|s| !s.is_empty())
            .collect(),
        Proto::Pop3 => r
            .lines
            .iter()
            .skip(1)
            .map(|l| text(l))
            .filter(|s| !s.is_empty())
            .collect(),
        Proto::Imap => {
            let mut out = Vec::new();
            for l in &r.lines {
                let up = text(l);
                let words: Vec<&str> = if let Some(rest) = up.strip_prefix("* CAPABILITY ") {
                    rest.split_whitespace().collect()
                } else if let Some(at) = up.find("[CAPABILITY ") {
                    let rest = up.get(at + 12..).unwrap_or_default();
                    rest.split(']')
                        .next()
                        .unwrap_or_default()
                        .split_whitespace()
                        .collect()
                } else {
                    Vec::new()
                };
                for w in words {
                    if !out.iter().any(|o: &String| o == w) {
                        out.push(w.to_string());
                    }
                }
            }
            out
        }
    }
}

/// Whether `caps` offers the upgrade.
pub(crate) fn offers_upgrade(proto: Proto, caps: &[String]) -> bool {
    let verb = if proto == Proto::Pop3 {
        "STLS"
    } else {
        "STARTTLS"
    };
    caps.iter().any(|c| c == verb)
}

fn pop3_resp(first: Vec<u8>) -> Resp {
    let ok = pop3::StatusLine::parse(&Bytes::from(first.clone()))
        .map(|s| s.is_ok())
        .unwrap_or(false);
    Resp {
        ok,
        code: None,
        lines: vec![first.clone()],
        status: first,
    }
}

/// Case-insensitive prefix test.
pub(crate) fn starts_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len()
        && line
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}
