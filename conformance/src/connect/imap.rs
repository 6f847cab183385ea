//! `connect` for `imap://` and `imaps://`: once ready, `LOGIN` (with
//! `--user`) or `AUTHENTICATE EXTERNAL` (with `--sasl external`), then
//! `LOGOUT`.

use std::sync::Arc;

use bytes::Bytes;
use starttls::imap::{
    AString, ClientConfig, ClientEvent, ClientSession, Code, CommandBody, Response, Status,
};
use starttls::{ClientTls, Escaped, Secret, TlsPolicy, Trust, UpgradeEvent};

use super::{print_ready, print_received, print_tls, print_tls_command, External};

/// The session's tag prefix (the library default) and so the tag of its
/// first own command, the capability query.
const FIRST_TAG: &str = "A1";

pub(super) struct Imap {
    implicit: bool,
    tls_on_wire: bool,
    login: Option<(String, String)>,
    external: Option<External>,
    failure: Option<String>,
    /// The greeting carried the capabilities (no `* CAPABILITY` line).
    caps_in_greeting: bool,
    /// The application command in flight: its tag and name.
    in_flight: Option<(Bytes, &'static str)>,
    logout_sent: bool,
}

impl Imap {
    pub(super) fn new(
        policy: TlsPolicy,
        tls: ClientTls,
        login: Option<(String, String)>,
        external: Option<External>,
    ) -> Result<(ClientSession, Imap), String> {
        let config = ClientConfig::new(policy, tls);
        let session = ClientSession::new(Arc::new(config)).map_err(|e| e.to_string())?;
        let implicit = policy == TlsPolicy::Implicit;
        Ok((
            session,
            Imap {
                implicit,
                tls_on_wire: implicit,
                login,
                external,
                failure: None,
                caps_in_greeting: false,
                in_flight: None,
                logout_sent: false,
            },
        ))
    }

    fn send(
        &mut self,
        session: &mut ClientSession,
        body: CommandBody,
        name: &'static str,
        shown: &str,
    ) -> bool {
        match session.send(body) {
            Ok(tag) => {
                if self.tls_on_wire {
                    print_tls_command(&format!("{} {shown}", String::from_utf8_lossy(&tag)));
                }
                self.in_flight = Some((tag, name));
                true
            }
            Err(e) => {
                self.failure
                    .get_or_insert_with(|| format!("{name} not sent: {e}"));
                false
            }
        }
    }

    fn logout(&mut self, session: &mut ClientSession) {
        if !self.logout_sent {
            self.logout_sent = self.send(session, CommandBody::Logout, "LOGOUT", "LOGOUT");
        }
    }

    fn ready(&mut self, session: &mut ClientSession, trust: Trust, authenticated: bool) {
        print_ready(trust);
        if authenticated {
            println!("# the server pre-authenticated the session (PREAUTH)");
        }
        if let Some(external) = self.external.clone().filter(|_| !authenticated) {
            let authzid = external.authzid.as_deref();
            match session.send_auth_external(authzid) {
                Ok(tag) => {
                    if self.tls_on_wire {
                        print_tls_command(&format!(
                            "{} AUTHENTICATE EXTERNAL   (authorization identity: {})",
                            String::from_utf8_lossy(&tag),
                            authzid.unwrap_or("the certificate's")
                        ));
                    }
                    self.in_flight = Some((tag, "AUTHENTICATE"));
                }
                Err(e) => {
                    self.failure
                        .get_or_insert_with(|| format!("AUTHENTICATE not sent: {e}"));
                    self.logout(session);
                }
            }
            return;
        }
        match self.login.clone() {
            Some((user, password)) if !authenticated => {
                let username = AString::from_value(user.as_bytes());
                let mut shown = b"LOGIN ".to_vec();
                username.write_to(&mut shown);
                shown.extend_from_slice(b" ****");
                let body = CommandBody::Login {
                    username,
                    password: Secret::new(AString::from_value(password.as_bytes())),
                };
                if !self.send(session, body, "LOGIN", &String::from_utf8_lossy(&shown)) {
                    self.logout(session);
                }
            }
            _ => self.logout(session),
        }
    }
}

impl super::Client for Imap {
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
                self.caps_in_greeting = matches!(r.code, Some(Code::Capability(_)));
                let status = r.status;
                print_received(r.trust, &Response::Status(r.message).to_bytes());
                // Without capabilities in an implicit-TLS greeting, the
                // session asks for them, encrypted.
                if self.tls_on_wire && status == Status::Ok && !self.caps_in_greeting {
                    print_tls_command(&format!("{FIRST_TAG} CAPABILITY"));
                }
            }
            ClientEvent::Capabilities(c) => {
                if !std::mem::take(&mut self.caps_in_greeting) {
                    print_received(c.trust, &Response::Capability(c.message.clone()).to_bytes());
                }
                println!("CAPABILITIES [{}]: {}", c.trust, c.escaped());
            }
            ClientEvent::Upgrade(UpgradeEvent::UpgradeStarted) => {
                self.tls_on_wire = true;
                println!("# the server agreed to STARTTLS: TLS handshake");
            }
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => {
                print_tls(&info);
                if !self.implicit {
                    // RFC 9051 §6.2.1: the session asks again, with
                    // fresh tags.
                    print_tls_command(&format!("{FIRST_TAG} CAPABILITY"));
                }
            }
            ClientEvent::Upgrade(u) => println!("# {u:?}"),
            ClientEvent::Ready {
                trust,
                authenticated,
            } => self.ready(session, trust, authenticated),
            ClientEvent::Untagged(r) => print_received(r.trust, &r.message.to_bytes()),
            ClientEvent::Tagged { tag, status } => {
                let ok = status.status == Status::Ok;
                let resp = Response::Tagged {
                    tag: tag.clone(),
                    status: status.message,
                };
                print_received(status.trust, &resp.to_bytes());
                let name = match &self.in_flight {
                    Some((t, name)) if *t == tag => *name,
                    _ => return,
                };
                self.in_flight = None;
                match name {
                    "LOGIN" | "AUTHENTICATE" if ok => {
                        println!("# authenticated");
                        self.logout(session);
                    }
                    "LOGIN" | "AUTHENTICATE" => {
                        let text = Escaped::new(resp.to_bytes().trim_ascii_end()).to_string();
                        self.failure
                            .get_or_insert_with(|| format!("{name} refused: {text}"));
                        self.logout(session);
                    }
                    _ => {}
                }
            }
            ClientEvent::Continuation(c) => {
                let mut line = b"+ ".to_vec();
                line.extend_from_slice(&c.message);
                print_received(c.trust, &line);
            }
            other => println!("# {other:?}"),
        }
    }
}
