//! `connect` for `pop3://` and `pop3s://`: once ready, `USER` and `PASS`
//! (with `--user`) or `AUTH EXTERNAL` (with `--sasl external`), then `QUIT`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use starttls::pop3::{ClientConfig, ClientEvent, ClientSession, Command};
use starttls::{ClientTls, Escaped, Secret, TlsPolicy, Trust, UpgradeEvent};

use super::{print_ready, print_received, print_tls, print_tls_command, External};
use crate::serve::sasl;

pub(super) struct Pop3 {
    implicit: bool,
    tls_on_wire: bool,
    /// `USER` and `PASS`, checked against the POP3 grammar.
    login: Option<(Command, Command)>,
    /// `AUTH EXTERNAL` with its initial response (the library checks it
    /// can work before sending it).
    external: Option<Command>,
    script: VecDeque<Command>,
    failure: Option<String>,
    quit_sent: bool,
    /// The trust of the status line whose multi-line body is coming.
    body_trust: Trust,
}

/// Parses `line` as a command of the expected keyword, so that what the user
/// typed cannot smuggle a second command.
fn checked(line: String, keyword: &str) -> Result<Command, String> {
    match Command::parse(&Bytes::from(line)) {
        Ok(c) if c.keyword() == keyword => Ok(c),
        _ => Err(format!(
            "--user/--password: not a valid POP3 {keyword} argument"
        )),
    }
}

/// How a command is shown once it is encrypted (never the password).
fn shown(cmd: &Command) -> String {
    match cmd {
        Command::Pass { .. } => "PASS ****".into(),
        other => String::from_utf8_lossy(&other.to_bytes())
            .trim_end()
            .to_string(),
    }
}

impl Pop3 {
    pub(super) fn new(
        policy: TlsPolicy,
        tls: ClientTls,
        login: Option<(String, String)>,
        external: Option<External>,
    ) -> Result<(ClientSession, Pop3), String> {
        let external = external.map(|e| Command::Auth {
            mechanism: Some(Bytes::from_static(b"EXTERNAL")),
            initial_response: Some(Secret::new(Bytes::from(match e.authzid {
                Some(a) if !a.is_empty() => sasl::encode(a.as_bytes()),
                _ => "=".to_string(),
            }))),
        });
        let login = match login {
            Some((u, p)) => Some((
                checked(format!("USER {u}"), "USER")?,
                checked(format!("PASS {p}"), "PASS")?,
            )),
            None => None,
        };
        let config = ClientConfig::new(policy, tls);
        let session = ClientSession::new(Arc::new(config)).map_err(|e| e.to_string())?;
        let implicit = policy == TlsPolicy::Implicit;
        Ok((
            session,
            Pop3 {
                implicit,
                tls_on_wire: implicit,
                login,
                external,
                script: VecDeque::new(),
                failure: None,
                quit_sent: false,
                body_trust: Trust::Cleartext,
            },
        ))
    }

    /// Sends the next command of the script.
    fn next(&mut self, session: &mut ClientSession) {
        let Some(cmd) = self.script.pop_front() else {
            return;
        };
        let keyword = cmd.keyword();
        let text = shown(&cmd);
        match session.send(cmd) {
            Ok(()) => {
                self.quit_sent |= keyword == "QUIT";
                if self.tls_on_wire {
                    print_tls_command(&text);
                }
            }
            Err(e) => {
                self.failure
                    .get_or_insert_with(|| format!("{keyword} not sent: {e}"));
                self.quit_now(session);
            }
        }
    }

    fn quit_now(&mut self, session: &mut ClientSession) {
        self.script.clear();
        if !self.quit_sent {
            self.script.push_back(Command::Quit);
            self.next(session);
        }
    }
}

impl super::Client for Pop3 {
    type Session = ClientSession;

    fn tls_on_wire(&self) -> bool {
        self.tls_on_wire
    }

    fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn event(&mut self, session: &mut ClientSession, event: ClientEvent) {
        match event {
            ClientEvent::Greeting(r) => {
                print_received(r.trust, &r.message.to_bytes());
                // With implicit TLS the session answers the greeting
                // with CAPA, encrypted.
                if self.tls_on_wire && r.is_ok() {
                    print_tls_command("CAPA");
                }
            }
            ClientEvent::Capabilities(c) => {
                let caps: Vec<String> = c
                    .iter()
                    .map(|cap| {
                        let line = cap.to_bytes();
                        let line = line.strip_suffix(b"\r\n").unwrap_or(&line);
                        Escaped::new(line).to_string()
                    })
                    .collect();
                println!("CAPABILITIES [{}]: {}", c.trust, caps.join(" | "));
            }
            ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted) => {
                self.tls_on_wire = true;
                println!("# the server agreed to STLS: TLS handshake");
            }
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => {
                print_tls(&info);
                if !self.implicit {
                    // RFC 2595 §4: the session asks again.
                    print_tls_command("CAPA");
                }
            }
            ClientEvent::Upgrade(u) => println!("# {u:?}"),
            ClientEvent::Ready { trust } => {
                print_ready(trust);
                if let Some((user, pass)) = self.login.clone() {
                    self.script.extend([user, pass]);
                }
                self.script.extend(self.external.clone());
                self.script.push_back(Command::Quit);
                self.next(session);
            }
            ClientEvent::Reply {
                to,
                status,
                multiline,
            } => {
                print_received(status.trust, &status.message.to_bytes());
                if !status.is_ok() && to != "QUIT" && self.failure.is_none() {
                    self.failure = Some(format!("{to} refused: {}", status.message));
                    self.quit_now(session);
                } else if to == "PASS" || to == "AUTH" {
                    println!("# authenticated");
                }
                if multiline {
                    self.body_trust = status.trust;
                } else {
                    self.next(session);
                }
            }
            ClientEvent::Body(piece) => {
                for line in Escaped::new(&piece.message).lines() {
                    println!("S: [{}] | {line}", self.body_trust);
                }
            }
            ClientEvent::BodyEnd => self.next(session),
            ClientEvent::Continuation(c) => {
                let mut line = b"+ ".to_vec();
                line.extend_from_slice(&c.message);
                print_received(c.trust, &line);
            }
            other => println!("# {other:?}"),
        }
    }
}
