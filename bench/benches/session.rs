//! A complete STARTTLS session in memory, both roles being our sessions
//! (SMTP, IMAP, POP3), against a bare rustls handshake in memory with the
//! very same `ClientConfig`/`ServerConfig`, in the same run.
//!
//! ```text
//! cargo bench -p starttls-bench --bench session
//! ```
//!
//! Before criterion runs, it prints:
//! * `heap ...`: heap bytes held per idle session (cleartext, after TLS) and
//!   `size_of` the session, beside a bare rustls connection after its
//!   handshake, and what we hold on top of rustls;
//! * `allocations per complete session`;
//! * `ratio ...`: each session's rate over the bare handshake rate, from
//!   interleaved, individually timed sessions, which other processes' load
//!   disturbs much less than criterion's consecutive runs (`--bench` only).
//!
//! A session is: SMTP greeting, EHLO, STARTTLS, handshake, EHLO, QUIT; IMAP
//! greeting (with its `[CAPABILITY ...]`, so our client asks no CAPABILITY in
//! cleartext), STARTTLS, handshake, CAPABILITY, LOGOUT; POP3 greeting, CAPA,
//! STLS, handshake, CAPA, QUIT. Every iteration checks that both sides
//! reached TLS and that the last reply came over TLS.
//!
//! One throwaway PKI (rcgen, ECDSA P-256) and one pair of rustls
//! configurations (default *ring* provider, TLS 1.3) serve every benchmark.
//! The client does not resume (`Resumption::disabled()`), so every iteration
//! is a full handshake; the server keeps its defaults, so it sends its two
//! TLS 1.3 tickets after each handshake, in both the bare and the session
//! runs.

use std::hint::black_box;
use std::mem::size_of;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use starttls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use starttls::rustls::{self, ClientConnection, ServerConnection};
use starttls::{imap, pop3, smtp};
use starttls::{ClientTls, ServerTls, TlsPolicy, Trust, UpgradeEvent};
use starttls_bench::alloc::{live_bytes, measure};

#[global_allocator]
static A: starttls_bench::alloc::Counting = starttls_bench::alloc::Counting;

/// Built once, outside every timed loop.
struct Setup {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    name: ServerName<'static>,
    smtp: (Arc<smtp::ClientConfig>, Arc<smtp::ServerConfig>),
    imap: (Arc<imap::ClientConfig>, Arc<imap::ServerConfig>),
    pop3: (Arc<pop3::ClientConfig>, Arc<pop3::ServerConfig>),
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(build)
}

fn build() -> Setup {
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
struct Seen {
    tls_up: u8,
    ready: bool,
    bye: bool,
}

trait Session {
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

fn upgrade(e: UpgradeEvent, seen: &mut Seen) {
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
enum Until {
    /// Before the client's `STARTTLS`/`STLS` line reaches the server: both
    /// idle in cleartext after greeting and capabilities.
    Cleartext,
    /// Nothing left to move, the client ready over TLS (no `QUIT`).
    TlsIdle,
    /// The whole session, `QUIT`/`LOGOUT` included.
    End,
}

/// Moves bytes between a client and a server session until `until`.
fn pump(c: &mut impl Session, s: &mut impl Session, until: Until) -> Seen {
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
fn session<C: Session, S: Session>((mut c, mut s): (C, S)) {
    let seen = pump(&mut c, &mut s, Until::End);
    assert!(
        seen.tls_up == 2 && seen.ready && seen.bye && c.closed() && s.closed(),
        "incomplete session: {seen:?}"
    );
    black_box((c, s));
}

fn smtp_pair(t: &Setup) -> (smtp::ClientSession, smtp::ServerSession) {
    (
        smtp::ClientSession::new(Arc::clone(&t.smtp.0)).expect("client"),
        smtp::ServerSession::new(Arc::clone(&t.smtp.1)).expect("server"),
    )
}

fn imap_pair(t: &Setup) -> (imap::ClientSession, imap::ServerSession) {
    (
        imap::ClientSession::new(Arc::clone(&t.imap.0)).expect("client"),
        imap::ServerSession::new(Arc::clone(&t.imap.1)).expect("server"),
    )
}

fn pop3_pair(t: &Setup) -> (pop3::ClientSession, pop3::ServerSession) {
    (
        pop3::ClientSession::new(Arc::clone(&t.pop3.0)).expect("client"),
        pop3::ServerSession::new(Arc::clone(&t.pop3.1)).expect("server"),
    )
}

// ---------------------------------------------------------------------------
// The baseline: bare rustls, same configurations.

/// Moves every pending record from one connection to the other.
fn transfer<A, B>(
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
fn rustls_pair(t: &Setup) -> (ClientConnection, ServerConnection) {
    let mut c = ClientConnection::new(Arc::clone(&t.client), t.name.clone()).expect("client");
    let mut s = ServerConnection::new(Arc::clone(&t.server)).expect("server");
    let mut buf = Vec::new();
    while transfer(&mut *c, &mut *s, &mut buf) | transfer(&mut *s, &mut *c, &mut buf) {}
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

/// The handshake, then both sides close (close_notify delivered both ways).
fn rustls_session(t: &Setup) {
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

const N: usize = 100;

/// Heap bytes held per value that `make` returns, averaged over `N`. `make`
/// builds both sides, takes them to the idle point and returns one side; the
/// other is dropped inside it, so its memory is not counted.
fn per_session<T>(mut make: impl FnMut() -> T) -> isize {
    let mut keep: Vec<T> = Vec::with_capacity(N);
    let before = live_bytes();
    for _ in 0..N {
        keep.push(make());
    }
    let held = live_bytes() - before;
    drop(keep);
    held / N as isize
}

struct Row {
    cleartext: isize,
    tls: isize,
    inline: usize,
}

fn row<C: Session, S: Session>(pair: impl Fn() -> (C, S), server: bool) -> Row {
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

fn heap_report(t: &Setup) {
    // Fill the server's session cache (256 entries, two TLS 1.3 tickets per
    // handshake) first, so that later handshakes only replace entries and
    // the cache does not count as session memory.
    for _ in 0..160 {
        drop(rustls_pair(t));
    }
    let bare_server = Row {
        cleartext: 0,
        tls: per_session(|| rustls_pair(t).1),
        inline: size_of::<ServerConnection>(),
    };
    let bare_client = Row {
        cleartext: 0,
        tls: per_session(|| rustls_pair(t).0),
        inline: size_of::<ClientConnection>(),
    };
    println!("heap per idle session, bytes, mean of {N} (inline = size_of the struct):");
    let rows = [
        ("smtp/server", row(|| smtp_pair(t), true)),
        ("smtp/client", row(|| smtp_pair(t), false)),
        ("imap/server", row(|| imap_pair(t), true)),
        ("imap/client", row(|| imap_pair(t), false)),
        ("pop3/server", row(|| pop3_pair(t), true)),
        ("pop3/client", row(|| pop3_pair(t), false)),
    ];
    for (name, r) in rows {
        let (bare, bare_name) = if name.ends_with("server") {
            (&bare_server, "ServerConnection")
        } else {
            (&bare_client, "ClientConnection")
        };
        let ours = r.tls + r.inline as isize;
        let theirs = bare.tls + bare.inline as isize;
        println!(
            "heap {name} cleartext_idle={} tls_idle={} inline={} | rustls {bare_name} tls_idle={} inline={} | on top of rustls: {:+} (target <= 1024)",
            r.cleartext, r.tls, r.inline, bare.tls, bare.inline, ours - theirs
        );
    }
    let allocs: Vec<String> = KINDS
        .iter()
        .map(|(name, run)| {
            let (n, ()) = measure(|| (0..N).for_each(|_| run(t)));
            format!("{name}={}", n / N)
        })
        .collect();
    println!(
        "allocations per complete session, both sides: {}",
        allocs.join(" ")
    );
}

// ---------------------------------------------------------------------------

type Run = fn(&Setup);

/// What is timed, by criterion name: the baseline first.
const KINDS: [(&str, Run); 4] = [
    ("rustls_handshake", rustls_session),
    ("smtp_starttls", |t| session(smtp_pair(t))),
    ("imap_starttls", |t| session(imap_pair(t))),
    ("pop3_starttls", |t| session(pop3_pair(t))),
];

/// The ratios criterion's figures give, measured to resist load from other
/// processes: the kinds alternate in short rounds, every session is timed on
/// its own, and the ratio is taken between low quantiles (a session that was
/// preempted only ever looks slower).
fn paired_ratios(t: &Setup) {
    const ROUNDS: usize = 50;
    const BATCH: usize = 4;
    let mut times = vec![Vec::with_capacity(ROUNDS * BATCH); KINDS.len()];
    for round in 0..ROUNDS {
        for k in (0..KINDS.len()).map(|i| (i + round) % KINDS.len()) {
            for _ in 0..BATCH {
                let start = Instant::now();
                (KINDS[k].1)(t);
                times[k].push(start.elapsed().as_secs_f64());
            }
        }
    }
    let quantile = |v: &[f64], q: usize| v[v.len() * q / 100];
    for v in &mut times {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "rate / rustls_handshake rate, {} interleaved sessions each, at the 10th, 25th and 50th \
         percentile of the time per session (target >= 0.95):",
        ROUNDS * BATCH
    );
    for ((name, _), v) in KINDS.iter().zip(&times).skip(1) {
        let r = |q| quantile(&times[0], q) / quantile(v, q);
        println!(
            "ratio {name} {:.3} {:.3} {:.3} ({:.0} us vs {:.0} us at the 10th)",
            r(10),
            r(25),
            r(50),
            quantile(v, 10) * 1e6,
            quantile(&times[0], 10) * 1e6
        );
    }
}

fn sessions(c: &mut Criterion) {
    let t = setup();
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    for (name, run) in KINDS {
        g.bench_function(name, |b| b.iter(|| run(t)));
    }
    g.finish();
}

criterion_group!(benches, sessions);

fn main() {
    heap_report(setup());
    // Not in `cargo test --benches` runs, which only check that each runs.
    if std::env::args().any(|a| a == "--bench") {
        paired_ratios(setup());
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
