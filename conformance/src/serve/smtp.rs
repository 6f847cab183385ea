//! The SMTP application behind `--smtp`, `--submission` and `--smtps`.
//!
//! The session answers `EHLO`, `STARTTLS`, `NOOP`, `RSET`, `QUIT`, the
//! sequence rules and the TLS policy itself; this application answers
//! `MAIL`, `RCPT`, `DATA`/`BDAT` ends, `VRFY`/`EXPN` and SASL (`AUTH PLAIN`,
//! `AUTH LOGIN`). `--smtp` is MTA style (any sender, any recipient, AUTH
//! offered over TLS but not needed); submission and smtps refuse `MAIL`
//! until the client has authenticated. Messages are kept in memory for the
//! life of the connection only.

use std::sync::Arc;

use bytes::Bytes;
use starttls::smtp::{Command, EnhancedCode, Reply, ServerConfig, ServerEvent, ServerSession};
use starttls::{ConfigError, ServerTls, UsageError};

use super::sasl::{self, Plain};
use super::{Account, Kind, Log};

/// Largest message accepted (advertised with `SIZE`).
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// The configuration of one listener.
pub(super) fn config(kind: Kind, tls: ServerTls, require_tls: bool) -> Arc<ServerConfig> {
    let mut c = ServerConfig::new("localhost", tls);
    c.implicit_tls = kind == Kind::Smtps;
    c.require_tls = match kind {
        Kind::Submission => true,
        Kind::Smtps => false,
        _ => require_tls,
    };
    // EXTERNAL: advertised by the session only to a client whose
    // certificate `--client-ca` verified.
    c.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into(), "EXTERNAL".into()];
    c.extensions.size = Some(MAX_MESSAGE as u64);
    Arc::new(c)
}

/// Where a SASL exchange stands.
enum Sasl {
    None,
    /// `AUTH PLAIN` without initial response: the next line is the response.
    Plain,
    /// `AUTH LOGIN`: the next line is the user name.
    LoginUser,
    /// `AUTH LOGIN`: the next line is the password for this user.
    LoginPassword(Vec<u8>),
}

pub(super) struct Conn {
    /// `MAIL` needs authentication first.
    submission: bool,
    account: Arc<Account>,
    sasl: Sasl,
    /// The message being received, and how (`DATA` or `BDAT`).
    message: Vec<u8>,
    message_size: usize,
    via: &'static str,
    /// Messages received on this connection.
    messages: Vec<Vec<u8>>,
}

fn enhanced(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
    Some(EnhancedCode {
        class,
        subject,
        detail,
    })
}

impl Conn {
    pub(super) fn new(
        config: Arc<ServerConfig>,
        submission: bool,
        account: Arc<Account>,
    ) -> Result<(ServerSession, Conn), ConfigError> {
        let session = ServerSession::new(config)?;
        Ok((
            session,
            Conn {
                submission,
                account,
                sasl: Sasl::None,
                message: Vec::new(),
                message_size: 0,
                via: "DATA",
                messages: Vec::new(),
            },
        ))
    }

    fn act(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
        log: &Log,
    ) -> Result<(), UsageError> {
        match event {
            ServerEvent::Command(cmd) => self.command(session, cmd, log),
            ServerEvent::MessageData(piece) => {
                self.message_size += piece.len();
                if self.message_size <= MAX_MESSAGE {
                    self.message.extend_from_slice(&piece);
                }
                Ok(())
            }
            ServerEvent::ChunkEnd => session.accept(),
            ServerEvent::MessageEnd => {
                let size = self.message_size;
                let message = std::mem::take(&mut self.message);
                self.message_size = 0;
                if size > MAX_MESSAGE {
                    log.line(format_args!(
                        "message of {size} bytes refused: larger than {MAX_MESSAGE}"
                    ));
                    return session.reject(
                        552,
                        enhanced(5, 3, 4),
                        "Message size exceeds fixed maximum message size",
                    );
                }
                self.messages.push(message);
                log.line(format_args!(
                    "message of {size} bytes accepted ({}; {} on this connection)",
                    self.via,
                    self.messages.len()
                ));
                session.accept()
            }
            ServerEvent::MessageRejected(_) | ServerEvent::TransactionReset => {
                self.message.clear();
                self.message_size = 0;
                Ok(())
            }
            ServerEvent::AuthResponse(response) => self.sasl_step(session, response.expose(), log),
            ServerEvent::AuthCancelled => {
                self.sasl = Sasl::None;
                Ok(())
            }
            ServerEvent::ExternalAuthRequested(auth) => {
                let (text, ok) = sasl::check_external(&auth, &self.account.user);
                log.line(format_args!("AUTH EXTERNAL: {text}"));
                if ok {
                    session.accept()
                } else {
                    session.reject(535, enhanced(5, 7, 8), "Authentication credentials invalid")
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
        match cmd {
            Command::Mail { .. } => {
                if self.submission && !session.is_authenticated() {
                    return session.reject(530, enhanced(5, 7, 0), "Authentication required");
                }
                self.message.clear();
                self.message_size = 0;
                session.accept()
            }
            // MTA style: every recipient is welcome.
            Command::Rcpt { .. } => session.accept(),
            Command::Data => {
                self.via = "DATA";
                session.accept()
            }
            // Answered at ChunkEnd / MessageEnd.
            Command::Bdat { .. } => {
                self.via = "BDAT";
                Ok(())
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(
                session,
                &mechanism,
                initial_response.as_ref().map(|r| r.expose()),
                log,
            ),
            Command::Vrfy { .. } => session.reply(Reply::new(
                252,
                enhanced(2, 5, 0),
                &[b"Cannot VRFY user, but will accept message"],
            )),
            _ => session.reject(502, enhanced(5, 5, 1), "Command not implemented"),
        }
    }

    fn auth(
        &mut self,
        session: &mut ServerSession,
        mechanism: &[u8],
        initial: Option<&Bytes>,
        log: &Log,
    ) -> Result<(), UsageError> {
        if mechanism.eq_ignore_ascii_case(b"PLAIN") {
            match initial {
                Some(ir) => self.check_plain(session, ir, log),
                None => {
                    self.sasl = Sasl::Plain;
                    self.challenge(session, b"")
                }
            }
        } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
            match initial {
                Some(ir) => match sasl::decode(ir) {
                    Some(user) => {
                        self.sasl = Sasl::LoginPassword(user);
                        self.challenge(session, b"UGFzc3dvcmQ6")
                    }
                    None => self.undecodable(session),
                },
                None => {
                    self.sasl = Sasl::LoginUser;
                    self.challenge(session, b"VXNlcm5hbWU6")
                }
            }
        } else {
            session.reject(504, enhanced(5, 5, 4), "Unrecognized authentication type")
        }
    }

    /// `334 <base64>`; `334 ` with an empty challenge.
    fn challenge(&mut self, session: &mut ServerSession, b64: &[u8]) -> Result<(), UsageError> {
        let mut raw = b"334 ".to_vec();
        raw.extend_from_slice(b64);
        raw.extend_from_slice(b"\r\n");
        let reply =
            Reply::parse(Bytes::from(raw)).unwrap_or_else(|_| Reply::new(334, None, &[b64]));
        session.reply(reply)
    }

    fn undecodable(&mut self, session: &mut ServerSession) -> Result<(), UsageError> {
        self.sasl = Sasl::None;
        session.reject(501, enhanced(5, 5, 2), "Cannot decode the SASL response")
    }

    fn sasl_step(
        &mut self,
        session: &mut ServerSession,
        response: &Bytes,
        log: &Log,
    ) -> Result<(), UsageError> {
        match std::mem::replace(&mut self.sasl, Sasl::None) {
            Sasl::Plain => self.check_plain(session, response, log),
            Sasl::LoginUser => match sasl::decode(response) {
                Some(user) => {
                    self.sasl = Sasl::LoginPassword(user);
                    self.challenge(session, b"UGFzc3dvcmQ6")
                }
                None => self.undecodable(session),
            },
            Sasl::LoginPassword(user) => match sasl::decode(response) {
                Some(password) => {
                    let ok = user == self.account.user && password == self.account.password;
                    self.login_result(
                        session,
                        &String::from_utf8_lossy(&user),
                        ok,
                        "AUTH LOGIN",
                        log,
                    )
                }
                None => self.undecodable(session),
            },
            Sasl::None => session.reject(503, enhanced(5, 5, 1), "No SASL exchange in progress"),
        }
    }

    fn check_plain(
        &mut self,
        session: &mut ServerSession,
        b64: &[u8],
        log: &Log,
    ) -> Result<(), UsageError> {
        match sasl::check_plain(b64, &self.account.user, &self.account.password) {
            Plain::Checked { user, ok } => self.login_result(session, &user, ok, "AUTH PLAIN", log),
            Plain::Malformed => self.undecodable(session),
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
            session.accept()
        } else {
            log.line(format_args!("{how}: authentication failed for {user:?}"));
            session.reject(535, enhanced(5, 7, 8), "Authentication credentials invalid")
        }
    }
}

impl super::App for Conn {
    type Session = ServerSession;

    fn event(&mut self, session: &mut ServerSession, event: ServerEvent, log: &Log) {
        let trust = session.trust();
        match &event {
            // Message content stays out of the log; its size goes in.
            ServerEvent::MessageData(piece) => {
                log.line(format_args!("({trust}) MessageData({} bytes)", piece.len()))
            }
            ServerEvent::Upgrade(u) => log.event(trust, &event, Some(u)),
            other => log.event(trust, other, None),
        }
        if let Err(e) = self.act(session, event, log) {
            // A bug in this application, never the peer's doing.
            log.line(format_args!("usage error: {e}"));
        }
    }
}
