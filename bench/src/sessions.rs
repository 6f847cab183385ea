//! The session driver shared by the `session` bench and the idle-heap
//! test (`tests/idle_heap.rs`): one throwaway PKI and one pair of rustls
//! configurations, the six session types driven by one pump, the bare
//! rustls baseline, and the heap held per idle session.
//!
//! A session is: SMTP greeting, EHLO, STARTTLS, handshake, EHLO, QUIT; IMAP
//! greeting (with its `[CAPABILITY ...]`, so our client asks no CAPABILITY in
//! cleartext), STARTTLS, handshake, CAPABILITY, LOGOUT; POP3 greeting, CAPA,
//! STLS, handshake, CAPA, QUIT. Every run checks that both sides reached TLS
//! and that the last reply came over TLS.
//!
//! One throwaway PKI (rcgen, ECDSA P-256) and one pair of rustls
//! configurations (default *ring* provider, TLS 1.3) serve every run. The
//! client does not resume (`Resumption::disabled()`), so every run is a
//! full handshake; the server keeps its defaults, so it sends its two TLS
//! 1.3 tickets after each handshake, in both the bare and the session runs.

use std::hint::black_box;
use std::mem::size_of;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use starttls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use starttls::rustls::{self, ClientConnection, ServerConnection};
use starttls::{imap, pop3, smtp};
use starttls::{ClientTls, ServerTls, TlsPolicy, Trust, UpgradeEvent};

use crate::alloc::live_bytes;

/// Built once, outside every timed loop.
pub struct Setup {
    pub client: Arc<rustls::ClientConfig>,
    pub server: Arc<rustls::ServerConfig>,
    pub name: ServerName<'static>,
    pub smtp: (Arc<smtp::ClientConfig>, Arc<smtp::ServerConfig>),
    pub imap: (Arc<imap::ClientConfig>, Arc<imap::ServerConfig>),
    pub pop3: (Arc<pop3::ClientConfig>, Arc<pop3::ServerConfig>),
}

pub fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(build)
}

pub fn build() -> Setup {
    // A CA and a leaf for `localhost`, both ECDSA P-256 (rcgen's default).
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server config"),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let mut client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let name = ServerName::try_from("localhost").expect("name");
    let ctls = ClientTls::Rustls {
        config: Arc::clone(&client),
        server_name: name.clone(),
    };
    let stls = ServerTls::Rustls(Arc::clone(&server));
    let policy = TlsPolicy::StartTlsRequired;

    let mut s = smtp::ServerConfig::new("mx.localhost", stls.clone());
    s.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into()];
    let smtp_c = smtp::ClientConfig::new("client.localhost", policy, ctls.clone());
    let mut i = imap::ServerConfig::new(stls.clone());
    i.auth_mechanisms = vec!["PLAIN".into()];
    let mut p = pop3::ServerConfig::new(stls);
    p.sasl_mechanisms = vec!["PLAIN".into()];
    Setup {
        smtp: (Arc::new(smtp_c), Arc::new(s)),
        imap: (
            Arc::new(imap::ClientConfig::new(policy, ctls.clone())),
            Arc::new(i),
        ),
        pop3: (Arc::new(pop3::ClientConfig::new(policy, ctls)), Arc::new(p)),
        client,
        server,
        name,
    }
}

// ---------------------------------------------------------------------------
// The driver: one trait over our six session types, one pump.

/// What a run must show: both sides reached TLS, the client was ready over
/// TLS, and the final reply (`221`, `OK` to `LOGOUT`, `+OK` to `QUIT`)
/// arrived over TLS.
#[derive(Default, Debug)]
pub struct Seen {
    pub tls_up: u8,
    pub ready: bool,
    pub bye: bool,
}

pub trait Session {
    fn input(&mut self, data: &[u8]);
    fn transmit(&mut self) -> Option<Bytes>;
    fn closed(&self) -> bool;
    /// Takes every event and acts on it like an application: a client that
    /// is ready over TLS quits when `quit` is set. Anything unexpected panics.
    fn events(&mut self, quit: bool, seen: &mut Seen);
}

macro_rules! session_io {
    ($t:ty) => {
        fn input(&mut self, data: &[u8]) {
            self.handle_input(data)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.poll_transmit()
        }
        fn closed(&self) -> bool {
            self.is_closed()
        }
    };
}

pub fn upgrade(e: UpgradeEvent, seen: &mut Seen) {
    match e {
        UpgradeEvent::UpgradeStarted => {}
        UpgradeEvent::TlsEstablished(_) => seen.tls_up += 1,
        other => panic!("unexpected {other:?}"),
    }
}

impl Session for smtp::ServerSession {
    session_io!(smtp::ServerSession);
    fn events(&mut self, _: bool, seen: &mut Seen) {
        while let Some(e) = self.poll_event().expect("smtp server") {
            match e {
                smtp::ServerEvent::Hello(_) | smtp::ServerEvent::TransactionReset => {}
                smtp::ServerEvent::Upgrade(u) => upgrade(u, seen),
                other => panic!("smtp server: unexpected {other:?}"),
            }
        }
    }
}

impl Session for smtp::ClientSession {
    session_io!(smtp::ClientSession);
    fn events(&mut self, quit: bool, seen: &mut Seen) {
        while let Some(e) = self.poll_event().expect("smtp client") {
            match e {
                smtp::ClientEvent::Greeting(_) | smtp::ClientEvent::Capabilities(_) => {}
                smtp::ClientEvent::Upgrade(u) => upgrade(u, seen),
                smtp::ClientEvent::Ready { trust } => {
                    assert_eq!(trust, Trust::Tls);
                    seen.ready = true;
                    if quit {
                        self.send(smtp::Command::Quit).expect("QUIT");
                    }
                }
                smtp::ClientEvent::Reply { to: "QUIT", reply } => {
                    assert!(u16::from(reply.code()) == 221 && reply.trust == Trust::Tls);
                    seen.bye = true;
                }
                other => panic!("smtp client: unexpected {other:?}"),
            }
        }
    }
}

impl Session for imap::ServerSession {
    session_io!(imap::ServerSession);
    fn events(&mut self, _: bool, seen: &mut Seen) {
        while let Some(e) = self.poll_event().expect("imap server") {
            match e {
                imap::ServerEvent::Upgrade(u) => upgrade(u, seen),
                other => panic!("imap server: unexpected {other:?}"),
            }
        }
    }
}

impl Session for imap::ClientSession {
    session_io!(imap::ClientSession);
    fn events(&mut self, quit: bool, seen: &mut Seen) {
        while let Some(e) = self.poll_event().expect("imap client") {
            match e {
                imap::ClientEvent::Greeting(_)
                | imap::ClientEvent::Capabilities(_)
                | imap::ClientEvent::Untagged(_) => {}
                imap::ClientEvent::Upgrade(u) => upgrade(u, seen),
                imap::ClientEvent::Ready { trust, .. } => {
                    assert_eq!(trust, Trust::Tls);
                    seen.ready = true;
                    if quit {
                        self.send(imap::CommandBody::Logout).expect("LOGOUT");
                    }
                }
                imap::ClientEvent::Tagged { status, .. } => {
                    assert!(status.status == imap::Status::Ok && status.trust == Trust::Tls);
                    seen.bye = true;
                }
                other => panic!("imap client: unexpected {other:?}"),
            }
        }
    }
}

impl Session for pop3::ServerSession {
    session_io!(pop3::ServerSession);
    fn events(&mut self, _: bool, seen: &mut Seen) {
        while let Some(e) = self.poll_event().expect("pop3 server") {
            match e {
                pop3::ServerEvent::Upgrade(u) => upgrade(u, seen),
                other => panic!("pop3 server: unexpected {other:?}"),
            }
        }
    }
}

impl Session for pop3::ClientSession {
    session_io!(pop3::ClientSession);
    fn events(&mut self, quit: bool, seen: &mut Seen) {
        while let Some(e) = self.poll_event().expect("pop3 client") {
            match e {
                pop3::ClientEvent::Greeting(_) | pop3::ClientEvent::Capabilities(_) => {}
                pop3::ClientEvent::Upgrade(u) => upgrade(u, seen),
                pop3::ClientEvent::Ready { trust } => {
                    assert_eq!(trust, Trust::Tls);
                    seen.ready = true;
                    if quit {
                        self.send(pop3::Command::Quit).expect("QUIT");
                    }
                }
                pop3::ClientEvent::Reply {
                    to: "QUIT", status, ..
                } => {
                    assert!(status.status == pop3::Status::Ok && status.trust == Trust::Tls);
                    seen.bye = true;
                }
                other => panic!("pop3 client: unexpected {other:?}"),
            }
        }
    }
}

/// Where the pump stops.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Before the client's `STARTTLS`/`STLS` line reaches the server: both
    /// idle in cleartext after greeting and capabilities.
    Cleartext,
    /// Nothing left to move, the client ready over TLS (no `QUIT`).
    TlsIdle,
    /// The whole session, `QUIT`/`LOGOUT` included.
    End,
}

/// Moves bytes between a client and a server session until `until`.
pub fn pump(c: &mut impl Session, s: &mut impl Session, until: Until) -> Seen {
    let quit = until == Until::End;
    let mut seen = Seen::default();
    loop {
        let mut moved = false;
        while let Some(b) = s.transmit() {
            c.input(&b);
            moved = true;
        }
        c.events(quit, &mut seen);
        while let Some(b) = c.transmit() {
            if until == Until::Cleartext
                && (b.ends_with(b"STARTTLS\r\n") || b.as_ref() == b"STLS\r\n")
            {
                return seen;
            }
            s.input(&b);
            moved = true;
        }
        s.events(quit, &mut seen);
        if !moved {
            break;
        }
    }
    assert!(until != Until::Cleartext, "no STARTTLS was sent");
    seen
}

/// A whole session; panics unless it went all the way.
pub fn session<C: Session, S: Session>((mut c, mut s): (C, S)) {
    let seen = pump(&mut c, &mut s, Until::End);
    assert!(
        seen.tls_up == 2 && seen.ready && seen.bye && c.closed() && s.closed(),
        "incomplete session: {seen:?}"
    );
    black_box((c, s));
}

pub fn smtp_pair(t: &Setup) -> (smtp::ClientSession, smtp::ServerSession) {
    (
        smtp::ClientSession::new(Arc::clone(&t.smtp.0)).expect("client"),
        smtp::ServerSession::new(Arc::clone(&t.smtp.1)).expect("server"),
    )
}

pub fn imap_pair(t: &Setup) -> (imap::ClientSession, imap::ServerSession) {
    (
        imap::ClientSession::new(Arc::clone(&t.imap.0)).expect("client"),
        imap::ServerSession::new(Arc::clone(&t.imap.1)).expect("server"),
    )
}

pub fn pop3_pair(t: &Setup) -> (pop3::ClientSession, pop3::ServerSession) {
    (
        pop3::ClientSession::new(Arc::clone(&t.pop3.0)).expect("client"),
        pop3::ServerSession::new(Arc::clone(&t.pop3.1)).expect("server"),
    )
}

// ---------------------------------------------------------------------------
// The baseline: bare rustls, same configurations.

/// Moves every pending record from one connection to the other.
pub fn transfer<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
    buf: &mut Vec<u8>,
) -> bool {
    let mut moved = false;
    while from.wants_write() {
        buf.clear();
        from.write_tls(buf).expect("write_tls");
        let mut rest = &buf[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).expect("read_tls");
            to.process_new_packets().expect("process_new_packets");
        }
        moved = true;
    }
    moved
}

/// A full handshake, the server's tickets delivered, both sides idle.
pub fn rustls_pair(t: &Setup) -> (ClientConnection, ServerConnection) {
    let mut c = ClientConnection::new(Arc::clone(&t.client), t.name.clone()).expect("client");
    let mut s = ServerConnection::new(Arc::clone(&t.server)).expect("server");
    let mut buf = Vec::new();
    while transfer(&mut *c, &mut *s, &mut buf) | transfer(&mut *s, &mut *c, &mut buf) {}
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

/// The handshake, then both sides close (close_notify delivered both ways).
pub fn rustls_session(t: &Setup) {
    let (mut c, mut s) = rustls_pair(t);
    let mut buf = Vec::new();
    c.send_close_notify();
    s.send_close_notify();
    transfer(&mut *c, &mut *s, &mut buf);
    transfer(&mut *s, &mut *c, &mut buf);
    let closed = |io: rustls::IoState| io.peer_has_closed();
    assert!(closed(c.process_new_packets().expect("client")));
    assert!(closed(s.process_new_packets().expect("server")));
    black_box((c, s));
}

// ---------------------------------------------------------------------------
// Heap per idle session.

pub const N: usize = 100;

/// Heap bytes held per value that `make` returns, averaged over `N`. `make`
/// builds both sides, takes them to the idle point and returns one side; the
/// other is dropped inside it, so its memory is not counted.
pub fn per_session<T>(mut make: impl FnMut() -> T) -> isize {
    let mut keep: Vec<T> = Vec::with_capacity(N);
    let before = live_bytes();
    for _ in 0..N {
        keep.push(make());
    }
    let held = live_bytes() - before;
    drop(keep);
    held / N as isize
}

#[derive(Debug)]
pub struct Row {
    pub cleartext: isize,
    pub tls: isize,
    pub inline: usize,
}

pub fn row<C: Session, S: Session>(pair: impl Fn() -> (C, S), server: bool) -> Row {
    let idle = |until| {
        if server {
            per_session(|| {
                let (mut c, mut s) = pair();
                pump(&mut c, &mut s, until);
                s
            })
        } else {
            per_session(|| {
                let (mut c, mut s) = pair();
                pump(&mut c, &mut s, until);
                c
            })
        }
    };
    Row {
        cleartext: idle(Until::Cleartext),
        tls: idle(Until::TlsIdle),
        inline: if server {
            size_of::<S>()
        } else {
            size_of::<C>()
        },
    }
}

/// One line of the heap table: a session role beside the bare rustls
/// connection of the same side.
#[derive(Debug)]
pub struct HeapRow {
    /// `smtp/server`, `imap/client`, ...
    pub name: &'static str,
    /// Our session.
    pub ours: Row,
    /// The bare rustls connection of the same side after its handshake.
    pub rustls: Row,
}

impl HeapRow {
    /// Heap and inline bytes we hold per idle TLS session on top of rustls's
    /// (the design target is at most 1,024).
    pub fn on_top_of_rustls(&self) -> isize {
        let ours = self.ours.tls + self.ours.inline as isize;
        let theirs = self.rustls.tls + self.rustls.inline as isize;
        ours - theirs
    }

    /// `ServerConnection` or `ClientConnection`.
    pub fn rustls_name(&self) -> &'static str {
        if self.name.ends_with("server") {
            "ServerConnection"
        } else {
            "ClientConnection"
        }
    }
}

/// Heap per idle session for the six roles, each beside the bare rustls
/// connection of its side, means of [`N`]. Measure on one thread: the
/// counting allocator's counters are process-wide.
pub fn heap_table(t: &Setup) -> Vec<HeapRow> {
    // Fill the server's session cache (256 entries, two TLS 1.3 tickets per
    // handshake) first, so that later handshakes only replace entries and
    // the cache does not count as session memory.
    for _ in 0..160 {
        drop(rustls_pair(t));
    }
    let bare_server = || Row {
        cleartext: 0,
        tls: per_session(|| rustls_pair(t).1),
        inline: size_of::<ServerConnection>(),
    };
    let bare_client = || Row {
        cleartext: 0,
        tls: per_session(|| rustls_pair(t).0),
        inline: size_of::<ClientConnection>(),
    };
    let (server, client) = (bare_server(), bare_client());
    let rows = [
        ("smtp/server", row(|| smtp_pair(t), true)),
        ("smtp/client", row(|| smtp_pair(t), false)),
        ("imap/server", row(|| imap_pair(t), true)),
        ("imap/client", row(|| imap_pair(t), false)),
        ("pop3/server", row(|| pop3_pair(t), true)),
        ("pop3/client", row(|| pop3_pair(t), false)),
    ];
    rows.into_iter()
        .map(|(name, ours)| {
            let bare = if name.ends_with("server") {
                &server
            } else {
                &client
            };
            HeapRow {
                name,
                ours,
                rustls: Row {
                    cleartext: bare.cleartext,
                    tls: bare.tls,
                    inline: bare.inline,
                },
            }
        })
        .collect()
}
