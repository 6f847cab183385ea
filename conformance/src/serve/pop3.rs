//! The POP3 application behind `--pop3` and `--pop3s`.
//!
//! The session answers `CAPA`, `STLS`, `QUIT` before login and the TLS
//! policy itself (`USER`/`PASS` only over TLS), and dot-stuffs multi-line
//! answers; this application answers `USER`/`PASS`, `STAT`, `LIST`,
//! `UIDL`, `RETR`, `TOP`, `DELE`, `RSET`, `NOOP` and `QUIT`. Each
//! connection gets a fresh maildrop: `DELE` lasts until the connection ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use starttls::pop3::response::{write_scan_listing, write_uidl_listing};
use starttls::pop3::{
    Capability, Code, Command, ServerConfig, ServerEvent, ServerSession, Status, StatusLine,
};
use starttls::{ConfigError, ServerTls, UsageError};

use super::{Account, Log};

/// The one message. Two of its lines start with a dot: on the wire the
/// session sends them as `..` (RFC 1939 §3).
const MESSAGE: &[u8] = b"From: Bob <bob@example.org>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: Hello from starttls serve\r\n\
\r\n\
Hi Alice,\r\n\
.this line starts with a dot, and the next line is a single dot:\r\n\
.\r\n\
The message goes on after it.\r\n";
const UID: &[u8] = b"starttls-serve-0001";

/// Per-process connection counter, shown in the greeting.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The configuration of one listener.
pub(super) fn config(implicit: bool, tls: ServerTls, require_tls: bool) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new(tls);
    c.implicit_tls = implicit;
    c.require_tls = require_tls && !implicit;
    // EXTERNAL: advertised by the session only to a client whose
    // certificate `--client-ca` verified.
    c.sasl_mechanisms = vec!["EXTERNAL".into()];
    c.capabilities = vec![
        Capability::Top,
        Capability::Uidl,
        Capability::RespCodes,
        Capability::AuthRespCode,
        Capability::Pipelining,
        Capability::Implementation(Bytes::from_static(b"starttls-serve")),
    ];
    Arc::new(c)
}

pub(super) struct Conn {
    account: Arc<Account>,
    /// The name from the last `USER`.
    user: Option<Bytes>,
    deleted: bool,
}

fn ok(s: &mut ServerSession, text: String) -> Result<(), UsageError> {
    s.reply(StatusLine::new(Status::Ok, Bytes::from(text)))
}

/// The header, the empty line and the first `lines` lines of the body.
fn top(lines: u32) -> Vec<u8> {
    let split = MESSAGE
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(MESSAGE.len(), |i| i + 4);
    let (header, body) = MESSAGE.split_at(split);
    let mut out = header.to_vec();
    for line in body.split_inclusive(|&b| b == b'\n').take(lines as usize) {
        out.extend_from_slice(line);
    }
    out
}

impl Conn {
    pub(super) fn new(
        config: Arc<ServerConfig>,
        account: Arc<Account>,
    ) -> Result<(ServerSession, Conn), ConfigError> {
        // No APOP timestamp (RFC 1939 §7) in the greeting: APOP is not
        // supported here, and clients such as curl prefer it when they see
        // one. A counter tells the connections apart.
        let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
        let greeting = format!("starttls serve POP3 ready (connection {n})");
        Ok((
            ServerSession::with_greeting(config, &greeting)?,
            Conn {
                account,
                user: None,
                deleted: false,
            },
        ))
    }

    fn command(
        &mut self,
        session: &mut ServerSession,
        cmd: Command,
        log: &Log,
    ) -> Result<(), UsageError> {
        const NO_SUCH: &str = "no such message";
        let deleted = self.deleted;
        // `(messages, octets)` not marked deleted.
        let (n, size) = if deleted { (0, 0) } else { (1, MESSAGE.len()) };
        let exists = |msg: u32| msg == 1 && !deleted;
        let s = session;
        match cmd {
            Command::User { name } => {
                // Whether the name exists is only told after PASS.
                self.user = Some(name);
                ok(s, "send PASS".into())
            }
            Command::Pass { password } => {
                let user = self.user.take().unwrap_or_default();
                let good = user.as_ref() == self.account.user
                    && password.expose().as_ref() == self.account.password;
                let user = String::from_utf8_lossy(&user);
                if good {
                    log.line(format_args!("PASS: {user} authenticated"));
                    ok(
                        s,
                        format!("maildrop locked and ready, {n} message(s) ({size} octets)"),
                    )
                } else {
                    log.line(format_args!("PASS: authentication failed for {user:?}"));
                    s.reject(Some(Code::Auth), "invalid user name or password")
                }
            }
            Command::Stat => ok(s, format!("{n} {size}")),
            Command::List { msg: None } => {
                let mut listing = Vec::new();
                if n == 1 {
                    write_scan_listing(1, size as u64, &mut listing);
                }
                s.reply_multiline(&format!("{n} message(s) ({size} octets)"), &listing)
            }
            Command::List { msg: Some(m) } if exists(m) => ok(s, format!("{m} {}", MESSAGE.len())),
            Command::Uidl { msg: None } => {
                let mut listing = Vec::new();
                if !deleted {
                    write_uidl_listing(1, UID, &mut listing);
                }
                s.reply_multiline("unique-id listing follows", &listing)
            }
            Command::Uidl { msg: Some(m) } if exists(m) => {
                ok(s, format!("{m} {}", String::from_utf8_lossy(UID)))
            }
            Command::Retr { msg } if exists(msg) => {
                s.reply_multiline(&format!("{} octets", MESSAGE.len()), MESSAGE)
            }
            Command::Top { msg, lines } if exists(msg) => {
                s.reply_multiline("top of message follows", &top(lines))
            }
            Command::Dele { msg } if exists(msg) => {
                self.deleted = true;
                ok(s, format!("message {msg} deleted"))
            }
            Command::Dele { msg: 1 } => s.reject(None, "message 1 already deleted"),
            Command::List { .. }
            | Command::Uidl { .. }
            | Command::Retr { .. }
            | Command::Top { .. }
            | Command::Dele { .. } => s.reject(None, NO_SUCH),
            Command::Noop => s.accept(),
            Command::Rset => {
                self.deleted = false;
                ok(
                    s,
                    format!("maildrop has 1 message ({} octets)", MESSAGE.len()),
                )
            }
            Command::Quit => {
                // The UPDATE state (RFC 1939 §6): the maildrop is per
                // connection, so nothing outlives it.
                let removed = u32::from(self.deleted);
                log.line(format_args!("QUIT: {removed} message(s) removed"));
                ok(s, format!("bye ({removed} message(s) removed)"))
            }
            Command::Apop { .. } => s.reject(None, "APOP is not supported here"),
            _ => s.reject(None, "command not supported by starttls serve"),
        }
    }
}

impl super::App for Conn {
    type Session = ServerSession;

    fn event(&mut self, session: &mut ServerSession, event: ServerEvent, log: &Log) {
        let trust = session.trust();
        match &event {
            ServerEvent::Upgrade(u) => log.event(trust, &event, Some(u)),
            other => log.event(trust, other, None),
        }
        let result = match event {
            ServerEvent::Command(cmd) => self.command(session, cmd, log),
            ServerEvent::ExternalAuthRequested(auth) => {
                let (text, good) = super::sasl::check_external(&auth, &self.account.user);
                log.line(format_args!("AUTH EXTERNAL: {text}"));
                if good {
                    ok(session, "maildrop locked and ready".into())
                } else {
                    session.reject(Some(Code::Auth), "Authentication failed")
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            // A bug in this application, never the peer's doing.
            log.line(format_args!("usage error: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn top_lines() {
        let t = super::top(1);
        assert!(t.ends_with(b"\r\n\r\nHi Alice,\r\n"), "{t:?}");
        assert!(super::top(0).ends_with(b"\r\n\r\n"));
    }
}
