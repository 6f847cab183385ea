//! The IMAP application behind `--imap` and `--imaps`.
//!
//! The session answers `CAPABILITY`, `STARTTLS`, `LOGOUT`, `NOOP` before
//! login and the TLS policy itself (`LOGINDISABLED`, `NO [PRIVACYREQUIRED]`
//! in cleartext); this application answers `LOGIN`, `AUTHENTICATE PLAIN`
//! (with `SASL-IR`), `ID`, `IDLE`, `NOOP`, `LIST`, `SELECT`/`EXAMINE INBOX`,
//! `FETCH`/`UID FETCH` of the one message (`BODY[]`, `BODY.PEEK[]`,
//! `RFC822`, `RFC822.SIZE`, `FLAGS`, `UID`), `CHECK`, `CLOSE`/`UNSELECT`,
//! and refuses everything else with `BAD`.

use std::sync::Arc;

use bytes::Bytes;
use starttls::imap::{
    Arg, Args, Code, Command, CommandBody, LiteralMode, Response, ServerConfig, ServerEvent,
    ServerSession, Status, StatusResponse,
};
use starttls::{ConfigError, ServerTls, UsageError};

use super::sasl::{self, Plain};
use super::{Account, Log};

/// The one message in INBOX (UID 1). The `STARTTLS` line is message data
/// inside a literal, never a command.
const MESSAGE: &[u8] = b"From: Bob <bob@example.org>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: Hello from starttls serve\r\n\
Message-ID: <1@starttls.localhost>\r\n\
\r\n\
Hi Alice,\r\n\
this message came to you over IMAP.\r\n\
A2 STARTTLS\r\n\
(the line above is message data in a literal, never a command)\r\n";

/// The configuration of one listener.
pub(super) fn config(implicit: bool, tls: ServerTls, require_tls: bool) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new(tls);
    c.greeting = "starttls serve IMAP ready".into();
    c.implicit_tls = implicit;
    c.require_tls = require_tls && !implicit;
    // EXTERNAL: advertised by the session only to a client whose
    // certificate `--client-ca` verified.
    c.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    // Only what this application implements.
    c.capabilities = vec![
        "IDLE".into(),
        "ID".into(),
        "SASL-IR".into(),
        "UNSELECT".into(),
    ];
    Arc::new(c)
}

pub(super) struct Conn {
    account: Arc<Account>,
    /// `Some(read_only)` while INBOX is selected.
    selected: Option<bool>,
}

fn atom(s: &str) -> Arg {
    Arg::Atom(Bytes::copy_from_slice(s.as_bytes()))
}

fn other_code(name: &'static str) -> Option<Code> {
    Some(Code::Other {
        name: Bytes::from_static(name.as_bytes()),
        args: None,
    })
}

/// Whether an IMAP sequence set (`1`, `*`, `1:*`, `1,3:5`) includes message
/// (or UID) 1 of a mailbox holding one message. `None`: not a sequence set.
fn includes_one(set: &[u8]) -> Option<bool> {
    let number = |s: &[u8]| -> Option<u32> {
        if s == b"*" {
            return Some(1); // the highest number in use
        }
        std::str::from_utf8(s)
            .ok()?
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
    };
    let mut any = false;
    for part in set.split(|&b| b == b',') {
        let (lo, hi) = match part.iter().position(|&b| b == b':') {
            Some(i) => (number(&part[..i])?, number(&part[i + 1..])?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        any |= lo.min(hi) <= 1 && lo.max(hi) >= 1;
    }
    Some(any)
}

impl Conn {
    pub(super) fn new(
        config: Arc<ServerConfig>,
        account: Arc<Account>,
    ) -> Result<(ServerSession, Conn), ConfigError> {
        let session = ServerSession::new(config)?;
        Ok((
            session,
            Conn {
                account,
                selected: None,
            },
        ))
    }

    fn untagged(
        &mut self,
        session: &mut ServerSession,
        number: Option<u32>,
        name: &str,
        args: &[Arg],
    ) {
        let r = Response::Data {
            number,
            name: Bytes::copy_from_slice(name.as_bytes()),
            args: Args::from_args(args),
        };
        // Only fails for tagged or continuation responses, which this is not.
        let _ = session.send_untagged(&r);
    }

    fn untagged_ok(&mut self, session: &mut ServerSession, code: Code, text: &str) {
        let r = Response::Status(StatusResponse {
            status: Status::Ok,
            code: Some(code),
            text: Bytes::copy_from_slice(text.as_bytes()),
        });
        let _ = session.send_untagged(&r);
    }

    fn bad(&mut self, session: &mut ServerSession, text: &str) -> Result<(), UsageError> {
        session.complete(Status::Bad, None, text)
    }

    fn act(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
        log: &Log,
    ) -> Result<(), UsageError> {
        match event {
            ServerEvent::Command(cmd) => self.command(session, cmd, log),
            ServerEvent::AuthResponse(r) => self.check_plain(session, r.expose(), log),
            ServerEvent::IdleDone => session.complete(Status::Ok, None, "IDLE terminated"),
            ServerEvent::ExternalAuthRequested(auth) => {
                let (text, ok) = sasl::check_external(&auth, &self.account.user);
                log.line(format_args!("AUTHENTICATE EXTERNAL: {text}"));
                if ok {
                    session.complete(Status::Ok, None, "AUTHENTICATE completed")
                } else {
                    session.complete(
                        Status::No,
                        other_code("AUTHENTICATIONFAILED"),
                        "Authentication failed",
                    )
                }
            }
            _ => Ok(()),
        }
    }

    fn command(
        &mut self,
        session: &mut ServerSession,
        cmd: Command,
        log: &Log,
    ) -> Result<(), UsageError> {
        match cmd.body {
            CommandBody::Login { username, password } => {
                let user = username.value();
                let ok = user.as_ref() == self.account.user
                    && password.expose().value().as_ref() == self.account.password;
                let user = String::from_utf8_lossy(&user).into_owned();
                self.login_result(session, &user, ok, "LOGIN", log)
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                // The session passes on advertised mechanisms only (PLAIN).
                if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    return session.complete(Status::No, None, "Unsupported mechanism");
                }
                match initial_response {
                    // SASL-IR (RFC 4959): the response came with the command.
                    Some(ir) => self.check_plain(session, ir.expose(), log),
                    None => session.continue_request(b""),
                }
            }
            CommandBody::Id { .. } => {
                self.untagged(
                    session,
                    None,
                    "ID",
                    &[Arg::List(Args::from_args(&[
                        Arg::Quoted(Bytes::from_static(b"name")),
                        Arg::Quoted(Bytes::from_static(b"starttls serve")),
                    ]))],
                );
                session.accept()
            }
            CommandBody::Noop => session.accept(),
            CommandBody::Idle => session.continue_request(b"idling"),
            CommandBody::Other { name, args } => {
                let upper = name.to_ascii_uppercase();
                let args: Vec<Arg> = args.iter().collect();
                match &upper[..] {
                    b"SELECT" => self.select(session, &args, false),
                    b"EXAMINE" => self.select(session, &args, true),
                    b"LIST" => self.list(session, &args),
                    b"FETCH" => self.fetch(session, &args, false),
                    b"UID" => match args.split_first() {
                        Some((sub, rest))
                            if sub
                                .string_value()
                                .is_some_and(|s| s.eq_ignore_ascii_case(b"FETCH")) =>
                        {
                            self.fetch(session, rest, true)
                        }
                        _ => self.bad(session, "Only UID FETCH is supported"),
                    },
                    b"CHECK" => session.accept(),
                    b"CLOSE" | b"UNSELECT" => {
                        if self.selected.take().is_none() {
                            return self.bad(session, "No mailbox selected");
                        }
                        session.accept()
                    }
                    _ => self.bad(session, "Command not supported by starttls serve"),
                }
            }
            _ => self.bad(session, "Command not supported by starttls serve"),
        }
    }

    fn login_result(
        &mut self,
        session: &mut ServerSession,
        user: &str,
        ok: bool,
        how: &str,
        log: &Log,
    ) -> Result<(), UsageError> {
        if ok {
            log.line(format_args!("{how}: {user} authenticated"));
            session.complete(Status::Ok, None, &format!("{how} completed"))
        } else {
            log.line(format_args!("{how}: authentication failed for {user:?}"));
            session.complete(
                Status::No,
                other_code("AUTHENTICATIONFAILED"),
                "Invalid credentials",
            )
        }
    }

    /// RFC 4616 PLAIN, base64.
    fn check_plain(
        &mut self,
        session: &mut ServerSession,
        b64: &[u8],
        log: &Log,
    ) -> Result<(), UsageError> {
        match sasl::check_plain(b64, &self.account.user, &self.account.password) {
            Plain::Checked { user, ok } => {
                self.login_result(session, &user, ok, "AUTHENTICATE PLAIN", log)
            }
            Plain::Malformed => {
                session.complete(Status::Bad, None, "Invalid base64 or PLAIN response")
            }
        }
    }

    fn select(
        &mut self,
        session: &mut ServerSession,
        args: &[Arg],
        read_only: bool,
    ) -> Result<(), UsageError> {
        self.selected = None;
        let mailbox = match args {
            [m] => m.string_value().map(|v| v.into_owned()),
            _ => None,
        };
        let Some(mailbox) = mailbox else {
            return self.bad(session, "Expected one mailbox name");
        };
        if !mailbox.eq_ignore_ascii_case(b"INBOX") {
            return session.complete(
                Status::No,
                other_code("NONEXISTENT"),
                "Only INBOX exists here",
            );
        }
        self.untagged(session, Some(1), "EXISTS", &[]);
        self.untagged(
            session,
            None,
            "FLAGS",
            &[Arg::List(Args::from_args(&[atom("\\Seen")]))],
        );
        self.untagged_ok(session, Code::UidValidity(1), "UIDs valid");
        self.untagged_ok(session, Code::UidNext(2), "Predicted next UID");
        self.selected = Some(read_only);
        let (code, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        session.complete(Status::Ok, Some(code), text)
    }

    /// `LIST reference pattern`: INBOX for `*`, `%` or `INBOX`.
    fn list(&mut self, session: &mut ServerSession, args: &[Arg]) -> Result<(), UsageError> {
        let pattern = match args {
            [_, p] => p.string_value().map(|v| v.into_owned()),
            _ => None,
        };
        let Some(pattern) = pattern else {
            return self.bad(session, "Expected LIST reference pattern");
        };
        if pattern == b"*" || pattern == b"%" || pattern.eq_ignore_ascii_case(b"INBOX") {
            self.untagged(
                session,
                None,
                "LIST",
                &[
                    Arg::List(Args::from_args(&[atom("\\HasNoChildren")])),
                    Arg::Quoted(Bytes::from_static(b"/")),
                    atom("INBOX"),
                ],
            );
        }
        session.accept()
    }

    /// `FETCH set items` and `UID FETCH set items` for the one message.
    fn fetch(
        &mut self,
        session: &mut ServerSession,
        args: &[Arg],
        uid: bool,
    ) -> Result<(), UsageError> {
        if self.selected.is_none() {
            return self.bad(session, "No mailbox selected");
        }
        let (set, items) = match args {
            [set, Arg::List(list)] => (set, list.iter().collect::<Vec<Arg>>()),
            [set, item] => (set, vec![item.clone()]),
            _ => return self.bad(session, "Expected FETCH sequence-set items"),
        };
        let Some(includes) = set.string_value().and_then(|s| includes_one(&s)) else {
            return self.bad(session, "Invalid sequence set");
        };
        let mut out = Vec::new();
        let mut has_uid = false;
        for item in &items {
            let name = item
                .string_value()
                .map(|v| String::from_utf8_lossy(&v).to_ascii_uppercase())
                .unwrap_or_default();
            let literal = || Arg::Literal {
                data: Bytes::from_static(MESSAGE),
                mode: LiteralMode::Sync,
                binary: false,
            };
            match name.as_str() {
                "BODY[]" | "BODY.PEEK[]" => out.extend([atom("BODY[]"), literal()]),
                "RFC822" => out.extend([atom("RFC822"), literal()]),
                "RFC822.SIZE" => {
                    out.extend([atom("RFC822.SIZE"), atom(&MESSAGE.len().to_string())])
                }
                "FLAGS" => {
                    out.extend([atom("FLAGS"), Arg::List(Args::from_args(&[atom("\\Seen")]))])
                }
                "UID" => {
                    has_uid = true;
                    out.extend([atom("UID"), atom("1")]);
                }
                _ => {
                    return self.bad(
                        session,
                        "Supported: BODY[], BODY.PEEK[], RFC822, RFC822.SIZE, FLAGS, UID",
                    )
                }
            }
        }
        if !includes {
            // UID FETCH of UIDs that do not exist is not an error.
            return if uid {
                session.accept()
            } else {
                session.complete(Status::No, None, "No such message (INBOX holds message 1)")
            };
        }
        if uid && !has_uid {
            out.splice(0..0, [atom("UID"), atom("1")]);
        }
        self.untagged(
            session,
            Some(1),
            "FETCH",
            &[Arg::List(Args::from_args(&out))],
        );
        session.accept()
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
        if let Err(e) = self.act(session, event, log) {
            // A bug in this application, never the peer's doing.
            log.line(format_args!("usage error: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::includes_one;

    #[test]
    fn sequence_sets() {
        assert_eq!(includes_one(b"1"), Some(true));
        assert_eq!(includes_one(b"*"), Some(true));
        assert_eq!(includes_one(b"1:*"), Some(true));
        assert_eq!(includes_one(b"2:4,1"), Some(true));
        assert_eq!(includes_one(b"2"), Some(false));
        assert_eq!(includes_one(b"0"), None);
        assert_eq!(includes_one(b"x"), None);
    }
}
