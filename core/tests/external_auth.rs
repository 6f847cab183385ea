//! SASL EXTERNAL over TLS client certificates (RFC 4422 Appendix A) in the
//! three protocols, both roles, through real rustls in memory: offered and
//! accepted with a verified certificate, never offered without one or in
//! cleartext, refused by the client when it cannot work, and a certificate
//! from another CA refused at the handshake.

mod common;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use common::{localhost, pki};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use starttls::rustls;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use starttls::rustls::server::WebPkiClientVerifier;
use starttls::sasl::{ExternalAuth, ExternalRefusal};
use starttls::{
    imap, pop3, smtp, ClientIdentity, ClientTls, Error, ServerTls, TlsErrorKind, TlsInfo,
    TlsPolicy, Trust, UpgradeEvent, UsageError,
};

/// A client certificate and its key.
struct Leaf {
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

struct Certs {
    /// The CA the servers trust for client certificates.
    client_ca: CertificateDer<'static>,
    /// `CN=alice`, alice@example.org, client.example.org; signed by it.
    alice: Leaf,
    /// The same names, signed by a CA nobody trusts.
    stranger: Leaf,
}

fn client_leaf(issuer: &Issuer<'_, KeyPair>) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["client.example.org".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "alice");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params
        .subject_alt_names
        .push(SanType::Rfc822Name("alice@example.org".try_into().unwrap()));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        der: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn ca(name: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), Issuer::new(params, key))
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let (client_ca, issuer) = ca("client CA");
        let (_, other) = ca("another CA");
        Certs {
            client_ca,
            alice: client_leaf(&issuer),
            stranger: client_leaf(&other),
        }
    })
}

/// The server's certificate, and (with `client_ca`) a request for a client
/// certificate from that CA, optional as for a submission server.
fn server_config(client_ca: bool) -> Arc<rustls::ServerConfig> {
    let p = pki();
    let builder = rustls::ServerConfig::builder();
    let builder = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs().client_ca.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(
        builder
            .with_single_cert(vec![p.leaf_der.clone(), p.ca_der.clone()], p.key())
            .unwrap(),
    )
}

fn client_tls(cert: Option<&Leaf>) -> ClientTls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki().ca_der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match cert {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    ClientTls::Rustls {
        config: Arc::new(config),
        server_name: localhost(),
    }
}

/// What the in-memory pump needs from a session.
trait Wire {
    fn input(&mut self, data: &[u8]);
    fn transmit(&mut self) -> Option<Bytes>;
}

macro_rules! wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn input(&mut self, data: &[u8]) {
                self.handle_input(data)
            }
            fn transmit(&mut self) -> Option<Bytes> {
                self.poll_transmit()
            }
        }
    )*};
}
wire!(
    smtp::ClientSession,
    smtp::ServerSession,
    imap::ClientSession,
    imap::ServerSession,
    pop3::ClientSession,
    pop3::ServerSession
);

/// Moves bytes both ways until neither side has any, whole or one octet
/// at a time.
fn exchange(a: &mut dyn Wire, b: &mut dyn Wire, bytewise: bool) {
    fn one_way(from: &mut dyn Wire, to: &mut dyn Wire, bytewise: bool) -> bool {
        let mut moved = false;
        while let Some(out) = from.transmit() {
            moved = true;
            if bytewise {
                out.iter().for_each(|o| to.input(&[*o]));
            } else {
                to.input(&out);
            }
        }
        moved
    }
    loop {
        let there = one_way(a, b, bytewise);
        let back = one_way(b, a, bytewise);
        if !there && !back {
            return;
        }
    }
}

/// Every event queued, then the failure if the session failed.
fn drain<E>(mut poll: impl FnMut() -> Result<Option<E>, Error>) -> (Vec<E>, Option<Error>) {
    let mut events = Vec::new();
    loop {
        match poll() {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

fn check_alice(auth: &ExternalAuth) {
    let id = &auth.identity;
    assert_eq!(id.common_names, ["alice"]);
    assert_eq!(id.emails, ["alice@example.org"]);
    assert_eq!(id.dns_names, ["client.example.org"]);
    assert!(id.subject.contains("CN=alice"), "{}", id.subject);
    assert_eq!(id.certificate, certs().alice.der);
}

fn alice_identity() -> ClientIdentity {
    ClientIdentity::from_certificate(certs().alice.der.clone()).unwrap()
}

// ---------------------------------------------------------------- SMTP

fn smtp_pair(
    client_cert: Option<&Leaf>,
    client_ca: bool,
) -> (smtp::ClientSession, smtp::ServerSession) {
    let mut sc = smtp::ServerConfig::new("mx.example", ServerTls::Rustls(server_config(client_ca)));
    sc.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    let server = smtp::ServerSession::new(Arc::new(sc)).unwrap();
    let cc = smtp::ClientConfig::new(
        "client.example",
        TlsPolicy::StartTlsRequired,
        client_tls(client_cert),
    );
    (smtp::ClientSession::new(Arc::new(cc)).unwrap(), server)
}

fn smtp_ready(c: &mut smtp::ClientSession, s: &mut smtp::ServerSession, bytewise: bool) {
    exchange(c, s, bytewise);
    let (events, err) = drain(|| c.poll_event());
    assert!(err.is_none(), "{err:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, smtp::ClientEvent::Ready { trust: Trust::Tls })));
    let _ = drain(|| s.poll_event());
}

fn smtp_advertised(c: &smtp::ClientSession) -> Vec<String> {
    c.capabilities()
        .unwrap()
        .auth_mechanisms()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .collect()
}

fn smtp_server_external(s: &mut smtp::ServerSession) -> ExternalAuth {
    let (events, err) = drain(|| s.poll_event());
    assert!(err.is_none(), "{err:?}");
    events
        .into_iter()
        .find_map(|e| match e {
            smtp::ServerEvent::ExternalAuthRequested(a) => Some(a),
            _ => None,
        })
        .expect("ExternalAuthRequested")
}

fn smtp_auth_reply(c: &mut smtp::ClientSession) -> u16 {
    let (events, err) = drain(|| c.poll_event());
    assert!(err.is_none(), "{err:?}");
    events
        .iter()
        .find_map(|e| match e {
            smtp::ClientEvent::Reply { to: "AUTH", reply } => Some(reply.code().get()),
            _ => None,
        })
        .expect("reply to AUTH")
}

#[test]
fn smtp_external_with_a_verified_certificate() {
    for bytewise in [false, true] {
        let (mut c, mut s) = smtp_pair(Some(&certs().alice), true);
        smtp_ready(&mut c, &mut s, bytewise);
        assert_eq!(smtp_advertised(&c), ["PLAIN", "EXTERNAL"]);
        let info = s.tls_info().unwrap();
        assert_eq!(info.client_identity.as_deref(), Some(&alice_identity()));
        assert!(c.tls_info().unwrap().own_certificate);

        c.send_auth_external(None).unwrap();
        exchange(&mut c, &mut s, bytewise);
        let auth = smtp_server_external(&mut s);
        check_alice(&auth);
        assert_eq!(auth.authzid, None);
        assert!(!s.is_authenticated(), "the session never decides by itself");
        s.accept().unwrap();
        exchange(&mut c, &mut s, bytewise);
        assert_eq!(smtp_auth_reply(&mut c), 235);
        assert!(s.is_authenticated());
    }
}

#[test]
fn smtp_external_authzid_and_refusal_by_the_application() {
    let (mut c, mut s) = smtp_pair(Some(&certs().alice), true);
    smtp_ready(&mut c, &mut s, false);
    c.send_auth_external(Some("bob@example.org")).unwrap();
    exchange(&mut c, &mut s, false);
    let auth = smtp_server_external(&mut s);
    assert_eq!(auth.authzid.as_deref(), Some("bob@example.org"));
    // No challenge may follow the identity.
    assert!(matches!(
        s.reply(smtp::Reply::new(334, None, &[b""])),
        Err(UsageError::ReplyDoesNotFit { .. })
    ));
    let e = smtp::EnhancedCode {
        class: 5,
        subject: 7,
        detail: 8,
    };
    s.reject(535, Some(e), "Not authorized").unwrap();
    exchange(&mut c, &mut s, false);
    assert_eq!(smtp_auth_reply(&mut c), 535);
    assert!(!s.is_authenticated());
}

#[test]
fn smtp_external_not_offered_without_a_client_certificate() {
    // The server asks, the client has none.
    let (mut c, mut s) = smtp_pair(None, true);
    smtp_ready(&mut c, &mut s, false);
    assert_eq!(smtp_advertised(&c), ["PLAIN"]);
    assert_eq!(s.tls_info().unwrap().client_identity, None);
    assert_eq!(
        c.send_auth_external(None),
        Err(UsageError::External(ExternalRefusal::NoClientCertificate))
    );
    assert!(c.poll_transmit().is_none(), "nothing sent");

    // The client has one, the server never asked.
    let (mut c, mut s) = smtp_pair(Some(&certs().alice), false);
    smtp_ready(&mut c, &mut s, false);
    assert_eq!(smtp_advertised(&c), ["PLAIN"]);
    assert_eq!(
        c.send_auth_external(None),
        Err(UsageError::External(ExternalRefusal::NotAdvertised))
    );
    // The generic path is checked the same way.
    assert_eq!(
        c.send(smtp::Command::Auth {
            mechanism: Bytes::from_static(b"external"),
            initial_response: None,
        }),
        Err(UsageError::External(ExternalRefusal::NotAdvertised))
    );
    assert!(c.poll_transmit().is_none(), "nothing sent");
}

/// A server with bring-your-own TLS, past STARTTLS, with what the caller's
/// stack says about the client certificate.
fn smtp_byo(identity: Option<ClientIdentity>) -> smtp::ServerSession {
    let mut sc = smtp::ServerConfig::new("mx.example", ServerTls::External);
    sc.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    let mut s = smtp::ServerSession::new(Arc::new(sc)).unwrap();
    s.handle_input(b"EHLO c.example\r\nSTARTTLS\r\n");
    while s.poll_transmit().is_some() {}
    let mut info = TlsInfo::unknown();
    if let Some(id) = identity {
        info = info.with_client_identity(id);
    }
    s.tls_established(info).unwrap();
    let _ = drain(|| s.poll_event());
    s
}

fn output(s: &mut dyn Wire) -> String {
    let mut all = Vec::new();
    while let Some(out) = s.transmit() {
        all.extend_from_slice(&out);
    }
    String::from_utf8(all).unwrap()
}

#[test]
fn smtp_server_refuses_external_it_did_not_offer() {
    // Over TLS, no verified certificate: asked anyway, refused by the session.
    let mut s = smtp_byo(None);
    s.handle_input(b"EHLO c.example\r\n");
    let ehlo = output(&mut s);
    assert!(ehlo.contains("AUTH PLAIN\r\n"), "{ehlo}");
    s.handle_input(b"AUTH EXTERNAL =\r\nAUTH EXTERNAL\r\n");
    let out = output(&mut s);
    assert_eq!(
        out,
        "504 5.5.4 EXTERNAL needs a verified TLS client certificate\r\n\
         504 5.5.4 EXTERNAL needs a verified TLS client certificate\r\n"
    );
    let (events, _) = drain(|| s.poll_event());
    let refused = events
        .iter()
        .filter(|e| matches!(e, smtp::ServerEvent::Refused(_)))
        .count();
    assert_eq!(refused, 2, "{events:?}");
    assert!(!events.iter().any(|e| matches!(
        e,
        smtp::ServerEvent::ExternalAuthRequested(_) | smtp::ServerEvent::Command(_)
    )));

    // In cleartext, even where AUTH is allowed in cleartext.
    let mut sc = smtp::ServerConfig::new("mx.example", ServerTls::Rustls(server_config(true)));
    sc.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    sc.insecure_auth_in_cleartext = true;
    let mut s = smtp::ServerSession::new(Arc::new(sc)).unwrap();
    let _ = output(&mut s);
    s.handle_input(b"EHLO c.example\r\n");
    let ehlo = output(&mut s);
    assert!(ehlo.contains("AUTH PLAIN\r\n"), "{ehlo}");
    s.handle_input(b"AUTH EXTERNAL =\r\n");
    assert!(output(&mut s).starts_with("504 5.5.4 EXTERNAL"));
}

#[test]
fn smtp_server_external_with_byo_tls_and_no_initial_response() {
    let mut s = smtp_byo(Some(alice_identity()));
    s.handle_input(b"EHLO c.example\r\n");
    assert!(output(&mut s).contains("AUTH PLAIN EXTERNAL\r\n"));
    // Without an initial response: an empty challenge, then the identity.
    s.handle_input(b"AUTH EXTERNAL\r\n");
    assert_eq!(output(&mut s), "334 \r\n");
    s.handle_input(b"Ym9i\r\n");
    let auth = smtp_server_external(&mut s);
    check_alice(&auth);
    assert_eq!(auth.authzid.as_deref(), Some("bob"));
    s.accept().unwrap();
    assert_eq!(output(&mut s), "235 2.7.0 Authentication successful\r\n");
    assert!(s.is_authenticated());

    // `*` cancels; a bad identity is refused by the session.
    let mut s = smtp_byo(Some(alice_identity()));
    s.handle_input(b"EHLO c.example\r\nAUTH EXTERNAL\r\n*\r\n");
    assert!(output(&mut s).ends_with("334 \r\n501 5.0.0 Authentication cancelled\r\n"));
    s.handle_input(b"AUTH EXTERNAL YQBi\r\nAUTH EXTERNAL !!\r\n");
    assert_eq!(
        output(&mut s),
        "501 5.5.2 EXTERNAL authorization identity contains NUL\r\n\
         501 5.5.4 invalid arguments to AUTH: AUTH initial response is not base64\r\n"
    );
}

#[test]
fn smtp_client_refuses_external_in_cleartext() {
    let server = smtp::ServerConfig::new("mx.example", ServerTls::None);
    let mut s = smtp::ServerSession::new(Arc::new(server)).unwrap();
    let cc = smtp::ClientConfig::new(
        "client.example",
        TlsPolicy::Opportunistic,
        client_tls(Some(&certs().alice)),
    );
    let mut c = smtp::ClientSession::new(Arc::new(cc)).unwrap();
    exchange(&mut c, &mut s, false);
    let (events, _) = drain(|| c.poll_event());
    assert!(events.iter().any(|e| matches!(
        e,
        smtp::ClientEvent::Ready {
            trust: Trust::Cleartext
        }
    )));
    assert_eq!(
        c.send_auth_external(None),
        Err(UsageError::External(ExternalRefusal::NoTls))
    );
}

#[test]
fn smtp_certificate_from_another_ca_is_refused_at_the_handshake() {
    let (mut c, mut s) = smtp_pair(Some(&certs().stranger), true);
    exchange(&mut c, &mut s, false);
    let (sev, serr) = drain(|| s.poll_event());
    let (_, cerr) = drain(|| c.poll_event());
    assert!(
        matches!(&serr, Some(Error::Tls(t)) if t.kind == TlsErrorKind::Certificate),
        "{serr:?}"
    );
    assert!(matches!(cerr, Some(Error::Tls(_))), "{cerr:?}");
    assert!(!sev.iter().any(|e| matches!(
        e,
        smtp::ServerEvent::Upgrade(UpgradeEvent::TlsEstablished(_))
    )));
}

// ---------------------------------------------------------------- IMAP

fn imap_pair(
    client_cert: Option<&Leaf>,
    client_ca: bool,
    sasl_ir: bool,
) -> (imap::ClientSession, imap::ServerSession) {
    let mut sc = imap::ServerConfig::new(ServerTls::Rustls(server_config(client_ca)));
    sc.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    if !sasl_ir {
        sc.capabilities.retain(|c| c != "SASL-IR");
    }
    let server = imap::ServerSession::new(Arc::new(sc)).unwrap();
    let cc = imap::ClientConfig::new(TlsPolicy::StartTlsRequired, client_tls(client_cert));
    (imap::ClientSession::new(Arc::new(cc)).unwrap(), server)
}

fn imap_ready(c: &mut imap::ClientSession, s: &mut imap::ServerSession, bytewise: bool) {
    exchange(c, s, bytewise);
    let (events, err) = drain(|| c.poll_event());
    assert!(err.is_none(), "{err:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        imap::ClientEvent::Ready {
            trust: Trust::Tls,
            ..
        }
    )));
    let _ = drain(|| s.poll_event());
}

fn imap_advertised(c: &imap::ClientSession) -> Vec<String> {
    c.capabilities()
        .unwrap()
        .auth_mechanisms()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .collect()
}

fn imap_server_external(s: &mut imap::ServerSession) -> ExternalAuth {
    let (events, err) = drain(|| s.poll_event());
    assert!(err.is_none(), "{err:?}");
    events
        .into_iter()
        .find_map(|e| match e {
            imap::ServerEvent::ExternalAuthRequested(a) => Some(a),
            _ => None,
        })
        .expect("ExternalAuthRequested")
}

#[test]
fn imap_external_with_a_verified_certificate() {
    for (sasl_ir, bytewise) in [(true, false), (true, true), (false, false), (false, true)] {
        let (mut c, mut s) = imap_pair(Some(&certs().alice), true, sasl_ir);
        imap_ready(&mut c, &mut s, bytewise);
        assert_eq!(imap_advertised(&c), ["PLAIN", "EXTERNAL"]);
        let tag = c.send_auth_external(Some("shared@example.org")).unwrap();
        exchange(&mut c, &mut s, bytewise);
        let auth = imap_server_external(&mut s);
        check_alice(&auth);
        assert_eq!(auth.authzid.as_deref(), Some("shared@example.org"));
        assert!(!s.is_authenticated());
        assert!(s.continue_request(b"").is_err(), "no challenge follows");
        s.accept().unwrap();
        exchange(&mut c, &mut s, bytewise);
        let (events, err) = drain(|| c.poll_event());
        assert!(err.is_none(), "{err:?}");
        assert!(
            events.iter().any(|e| matches!(e,
                imap::ClientEvent::Tagged { tag: t, status }
                    if *t == tag && status.status == imap::Status::Ok)),
            "{events:?}"
        );
        assert!(s.is_authenticated());
    }
}

#[test]
fn imap_external_not_offered_without_a_client_certificate() {
    let (mut c, mut s) = imap_pair(None, true, true);
    imap_ready(&mut c, &mut s, false);
    assert_eq!(imap_advertised(&c), ["PLAIN"]);
    assert_eq!(
        c.send_auth_external(None),
        Err(UsageError::External(ExternalRefusal::NoClientCertificate))
    );
    let (mut c, mut s) = imap_pair(Some(&certs().alice), false, true);
    imap_ready(&mut c, &mut s, false);
    assert_eq!(
        c.send(imap::CommandBody::Authenticate {
            mechanism: Bytes::from_static(b"EXTERNAL"),
            initial_response: None,
        }),
        Err(UsageError::External(ExternalRefusal::NotAdvertised))
    );
    assert!(c.poll_transmit().is_none(), "nothing sent");
}

fn imap_byo(identity: Option<ClientIdentity>) -> imap::ServerSession {
    let mut sc = imap::ServerConfig::new(ServerTls::External);
    sc.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    let mut s = imap::ServerSession::new(Arc::new(sc)).unwrap();
    s.handle_input(b"a STARTTLS\r\n");
    while s.poll_transmit().is_some() {}
    let mut info = TlsInfo::unknown();
    if let Some(id) = identity {
        info = info.with_client_identity(id);
    }
    s.tls_established(info).unwrap();
    let _ = drain(|| s.poll_event());
    s
}

#[test]
fn imap_server_external_offered_only_with_a_verified_certificate() {
    let mut s = imap_byo(None);
    s.handle_input(b"b CAPABILITY\r\nc AUTHENTICATE EXTERNAL =\r\n");
    let out = output(&mut s);
    assert!(
        out.contains("AUTH=PLAIN") && !out.contains("AUTH=EXTERNAL"),
        "{out}"
    );
    assert!(out.ends_with("c NO EXTERNAL needs a verified TLS client certificate\r\n"));

    // Cleartext, even with LOGIN allowed there.
    let mut sc = imap::ServerConfig::new(ServerTls::Rustls(server_config(true)));
    sc.auth_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    sc.insecure_login_in_cleartext = true;
    let mut s = imap::ServerSession::new(Arc::new(sc)).unwrap();
    s.handle_input(b"b CAPABILITY\r\nc AUTHENTICATE EXTERNAL\r\n");
    let out = output(&mut s);
    assert!(
        out.contains("AUTH=PLAIN") && !out.contains("AUTH=EXTERNAL"),
        "{out}"
    );
    assert!(out.ends_with("c NO EXTERNAL needs a verified TLS client certificate\r\n"));

    // With one: the empty continuation, then the identity; `*` cancels.
    let mut s = imap_byo(Some(alice_identity()));
    s.handle_input(b"b CAPABILITY\r\nc AUTHENTICATE EXTERNAL\r\n");
    let out = output(&mut s);
    assert!(
        out.contains("AUTH=EXTERNAL") && out.ends_with("+ \r\n"),
        "{out}"
    );
    s.handle_input(b"=\r\n");
    assert_eq!(imap_server_external(&mut s).authzid, None);
    s.complete(imap::Status::No, None, "no account for you")
        .unwrap();
    s.handle_input(b"d AUTHENTICATE EXTERNAL\r\n*\r\ne AUTHENTICATE EXTERNAL AA==\r\n");
    let out = output(&mut s);
    assert!(
        out.ends_with(
            "+ \r\nd BAD AUTHENTICATE cancelled\r\n\
             e BAD EXTERNAL authorization identity contains NUL\r\n"
        ),
        "{out}"
    );
}

#[test]
fn imap_certificate_from_another_ca_is_refused_at_the_handshake() {
    let (mut c, mut s) = imap_pair(Some(&certs().stranger), true, true);
    exchange(&mut c, &mut s, false);
    let (_, serr) = drain(|| s.poll_event());
    let (_, cerr) = drain(|| c.poll_event());
    assert!(
        matches!(&serr, Some(Error::Tls(t)) if t.kind == TlsErrorKind::Certificate),
        "{serr:?}"
    );
    assert!(matches!(cerr, Some(Error::Tls(_))), "{cerr:?}");
}

// ---------------------------------------------------------------- POP3

fn pop3_pair(
    client_cert: Option<&Leaf>,
    client_ca: bool,
) -> (pop3::ClientSession, pop3::ServerSession) {
    let mut sc = pop3::ServerConfig::new(ServerTls::Rustls(server_config(client_ca)));
    sc.sasl_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    let server = pop3::ServerSession::new(Arc::new(sc)).unwrap();
    let cc = pop3::ClientConfig::new(TlsPolicy::StartTlsRequired, client_tls(client_cert));
    (pop3::ClientSession::new(Arc::new(cc)).unwrap(), server)
}

fn pop3_ready(c: &mut pop3::ClientSession, s: &mut pop3::ServerSession, bytewise: bool) {
    exchange(c, s, bytewise);
    let (events, err) = drain(|| c.poll_event());
    assert!(err.is_none(), "{err:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        pop3::ClientEvent::Ready {
            trust: Trust::Tls,
            ..
        }
    )));
    let _ = drain(|| s.poll_event());
}

fn pop3_advertised(c: &pop3::ClientSession) -> Vec<String> {
    c.capabilities()
        .unwrap()
        .sasl_mechanisms()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .collect()
}

fn pop3_server_external(s: &mut pop3::ServerSession) -> ExternalAuth {
    let (events, err) = drain(|| s.poll_event());
    assert!(err.is_none(), "{err:?}");
    events
        .into_iter()
        .find_map(|e| match e {
            pop3::ServerEvent::ExternalAuthRequested(a) => Some(a),
            _ => None,
        })
        .expect("ExternalAuthRequested")
}

#[test]
fn pop3_external_with_a_verified_certificate() {
    for bytewise in [false, true] {
        let (mut c, mut s) = pop3_pair(Some(&certs().alice), true);
        pop3_ready(&mut c, &mut s, bytewise);
        assert_eq!(pop3_advertised(&c), ["PLAIN", "EXTERNAL"]);
        c.send_auth_external(None).unwrap();
        exchange(&mut c, &mut s, bytewise);
        let auth = pop3_server_external(&mut s);
        check_alice(&auth);
        assert_eq!(auth.authzid, None);
        assert!(s.continue_request(b"").is_err(), "no challenge follows");
        s.accept().unwrap();
        exchange(&mut c, &mut s, bytewise);
        let (events, err) = drain(|| c.poll_event());
        assert!(err.is_none(), "{err:?}");
        assert!(
            events.iter().any(|e| matches!(e,
                pop3::ClientEvent::Reply { to: "AUTH", status, .. }
                    if status.status == pop3::Status::Ok)),
            "{events:?}"
        );
        assert!(s.is_authenticated());
    }
}

#[test]
fn pop3_external_not_offered_without_a_client_certificate() {
    let (mut c, mut s) = pop3_pair(None, true);
    pop3_ready(&mut c, &mut s, false);
    assert_eq!(pop3_advertised(&c), ["PLAIN"]);
    assert_eq!(
        c.send_auth_external(None),
        Err(UsageError::External(ExternalRefusal::NoClientCertificate))
    );
    let (mut c, mut s) = pop3_pair(Some(&certs().alice), false);
    pop3_ready(&mut c, &mut s, false);
    assert_eq!(
        c.send_auth_external(Some("x")),
        Err(UsageError::External(ExternalRefusal::NotAdvertised))
    );
    assert!(c.poll_transmit().is_none(), "nothing sent");
}

fn pop3_byo(identity: Option<ClientIdentity>) -> pop3::ServerSession {
    let mut sc = pop3::ServerConfig::new(ServerTls::External);
    sc.sasl_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    let mut s = pop3::ServerSession::new(Arc::new(sc)).unwrap();
    s.handle_input(b"STLS\r\n");
    while s.poll_transmit().is_some() {}
    let mut info = TlsInfo::unknown();
    if let Some(id) = identity {
        info = info.with_client_identity(id);
    }
    s.tls_established(info).unwrap();
    let _ = drain(|| s.poll_event());
    s
}

#[test]
fn pop3_server_external_offered_only_with_a_verified_certificate() {
    let mut s = pop3_byo(None);
    s.handle_input(b"CAPA\r\nAUTH\r\nAUTH EXTERNAL =\r\n");
    let out = output(&mut s);
    assert!(out.contains("SASL PLAIN\r\n"), "{out}");
    assert!(!out.contains("EXTERNAL\r\n"), "{out}");
    assert!(out.ends_with("-ERR EXTERNAL needs a verified TLS client certificate\r\n"));

    // Cleartext, even with AUTH allowed there.
    let mut sc = pop3::ServerConfig::new(ServerTls::Rustls(server_config(true)));
    sc.sasl_mechanisms = vec!["PLAIN".into(), "EXTERNAL".into()];
    sc.insecure_auth_in_cleartext = true;
    let mut s = pop3::ServerSession::new(Arc::new(sc)).unwrap();
    s.handle_input(b"CAPA\r\nAUTH EXTERNAL\r\n");
    let out = output(&mut s);
    assert!(out.contains("SASL PLAIN\r\n"), "{out}");
    assert!(out.ends_with("-ERR EXTERNAL needs a verified TLS client certificate\r\n"));

    // With one: listed, the empty challenge, then the identity.
    let mut s = pop3_byo(Some(alice_identity()));
    s.handle_input(b"CAPA\r\nAUTH\r\nAUTH EXTERNAL\r\n");
    let out = output(&mut s);
    assert!(out.contains("SASL PLAIN EXTERNAL\r\n"), "{out}");
    assert!(out.ends_with("PLAIN\r\nEXTERNAL\r\n.\r\n+ \r\n"), "{out}");
    s.handle_input(b"Ym9i\r\n");
    assert_eq!(pop3_server_external(&mut s).authzid.as_deref(), Some("bob"));
    s.reject(None, "no").unwrap();
    assert!(!s.is_authenticated());
    s.handle_input(b"AUTH EXTERNAL\r\n*\r\n");
    assert_eq!(
        output(&mut s),
        "-ERR no\r\n+ \r\n-ERR Authentication cancelled\r\n"
    );
}

#[test]
fn pop3_certificate_from_another_ca_is_refused_at_the_handshake() {
    let (mut c, mut s) = pop3_pair(Some(&certs().stranger), true);
    exchange(&mut c, &mut s, false);
    let (_, serr) = drain(|| s.poll_event());
    let (_, cerr) = drain(|| c.poll_event());
    assert!(
        matches!(&serr, Some(Error::Tls(t)) if t.kind == TlsErrorKind::Certificate),
        "{serr:?}"
    );
    assert!(matches!(cerr, Some(Error::Tls(_))), "{cerr:?}");
}
