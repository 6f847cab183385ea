//! `connect` for `smtp://`, `submission://` and `smtps://`: once ready,
//! `AUTH PLAIN` (with `--user`) or `AUTH EXTERNAL` (with `--sasl external`),
//! then `QUIT`.

use std::sync::Arc;

use bytes::Bytes;
use starttls::smtp::{ClientConfig, ClientEvent, ClientSession, Command};
use starttls::{ClientTls, Escaped, Secret, TlsPolicy, Trust, UpgradeEvent};

use super::{print_ready, print_received, print_tls, print_tls_command, External};
use crate::serve::sasl;

/// The name we give with `EHLO`.
const HELO_NAME: &str = "client.localhost";

pub(super) struct Smtp {
    implicit: bool,
    tls_on_wire: bool,
    login: Option<(String, String)>,
    external: Option<External>,
    failure: Option<String>,
    quit_sent: bool,
}

impl Smtp {
    pub(super) fn new(
        policy: TlsPolicy,
        tls: ClientTls,
        login: Option<(String, String)>,
        external: Option<External>,
    ) -> Result<(ClientSession, Smtp), String> {
        let config = ClientConfig::new(HELO_NAME, policy, tls);
        let session = ClientSession::new(Arc::new(config)).map_err(|e| e.to_string())?;
        let implicit = policy == TlsPolicy::Implicit;
        Ok((
            session,
            Smtp {
                implicit,
                tls_on_wire: implicit,
                login,
                external,
                failure: None,
                quit_sent: false,
            },
        ))
    }

    /// Prints a command we are about to send over TLS (cleartext bytes are
    /// printed as they are written).
    fn shown(&self, text: &str) {
        if self.tls_on_wire {
            print_tls_command(text);
        }
    }

    fn quit(&mut self, session: &mut ClientSession) {
        if self.quit_sent {
            return;
        }
        match session.send(Command::Quit) {
            Ok(()) => {
                self.quit_sent = true;
                self.shown("QUIT");
            }
            Err(e) => {
                self.failure
                    .get_or_insert_with(|| format!("QUIT not sent: {e}"));
            }
        }
    }

    fn fail_and_quit(&mut self, session: &mut ClientSession, why: String) {
        self.failure.get_or_insert(why);
        self.quit(session);
    }

    fn plain(&self) -> Option<Bytes> {
        let (user, password) = self.login.as_ref()?;
        Some(Bytes::from(sasl::plain_response(
            user.as_bytes(),
            password.as_bytes(),
        )))
    }

    fn ready(&mut self, session: &mut ClientSession, trust: Trust) {
        print_ready(trust);
        if let Some(external) = self.external.clone() {
            let authzid = external.authzid.as_deref();
            match session.send_auth_external(authzid) {
                Ok(()) => self.shown(&format!(
                    "AUTH EXTERNAL {}   (authorization identity: {})",
                    authzid
                        .map(|a| sasl::encode(a.as_bytes()))
                        .unwrap_or("=".into()),
                    authzid.unwrap_or("the certificate's")
                )),
                Err(e) => self.fail_and_quit(session, format!("AUTH not sent: {e}")),
            }
            return;
        }
        match self.plain() {
            Some(response) => {
                let user = self
                    .login
                    .as_ref()
                    .map(|(u, _)| u.clone())
                    .unwrap_or_default();
                let auth = Command::Auth {
                    mechanism: Bytes::from_static(b"PLAIN"),
                    initial_response: Some(Secret::new(response)),
                };
                match session.send(auth) {
                    Ok(()) => self.shown(&format!("AUTH PLAIN ****   (PLAIN response for {user})")),
                    Err(e) => self.fail_and_quit(session, format!("AUTH not sent: {e}")),
                }
            }
            None => self.quit(session),
        }
    }
}

impl super::Client for Smtp {
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
                print_received(r.trust, r.raw());
                // With implicit TLS the session answers the greeting
                // with EHLO, encrypted.
                if self.tls_on_wire && r.code().get() == 220 {
                    self.shown(&format!("EHLO {HELO_NAME}"));
                }
            }
            ClientEvent::Capabilities(c) => {
                print_received(c.trust, c.to_reply(b"").raw());
                let caps: Vec<String> = c
                    .iter()
                    .map(|cap| {
                        let mut v = Vec::new();
                        cap.write_to(&mut v);
                        Escaped::owned(v).to_string()
                    })
                    .collect();
                println!("CAPABILITIES [{}]: {}", c.trust, caps.join(" | "));
            }
            ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted) => {
                self.tls_on_wire = true;
                println!("# the server agreed to STARTTLS: TLS handshake");
            }
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => {
                print_tls(&info);
                if !self.implicit {
                    // RFC 3207 §4.2: the session starts over with EHLO.
                    self.shown(&format!("EHLO {HELO_NAME}"));
                }
            }
            ClientEvent::Upgrade(u) => println!("# {u:?}"),
            ClientEvent::Ready { trust } => self.ready(session, trust),
            ClientEvent::Reply { to, reply } => {
                print_received(reply.trust, reply.raw());
                let code = reply.code().get();
                match to {
                    "AUTH" if code == 235 => {
                        println!("# authenticated");
                        self.quit(session);
                    }
                    // We sent the response with the command; answer a
                    // server that asks for it anyway.
                    "AUTH" if code == 334 => match self.plain() {
                        Some(r) => match session.send_auth_response(Secret::new(r)) {
                            Ok(()) => self.shown("****   (PLAIN response)"),
                            Err(e) => {
                                self.fail_and_quit(session, format!("AUTH response not sent: {e}"))
                            }
                        },
                        None => self.fail_and_quit(session, "unexpected 334".into()),
                    },
                    "AUTH" => {
                        let text = reply.escaped();
                        self.fail_and_quit(session, format!("AUTH refused: {text}"));
                    }
                    _ => {}
                }
            }
            other => println!("# {other:?}"),
        }
    }
}
