//! What the tokio driver (`starttls-io`) costs: the same complete STARTTLS
//! session over loopback TCP, both sides in one tokio runtime, once through
//! `starttls_io::tokio::Driver` and once through the hand loop it replaces
//! (write what `poll_transmit` gives, act on every `poll_event`, wait for
//! `readable()`, `try_read` into a stack buffer, feed it), in the same run.
//!
//! ```text
//! cargo bench -p starttls-bench --bench driver
//! ```
//!
//! Before criterion runs (`--bench` only), it prints `ratio <protocol>`:
//! the driver's rate over the hand loop's, from interleaved, individually
//! timed sessions, at the 10th, 25th and 50th percentile (target >= 0.98).
//!
//! A session is a fresh loopback connection, then SMTP greeting, EHLO,
//! STARTTLS, handshake, EHLO, QUIT (IMAP: greeting, STARTTLS, handshake,
//! CAPABILITY, LOGOUT; POP3: greeting, CAPA, STLS, handshake, CAPA, QUIT).
//! Each run checks that both sides reached TLS and the goodbye came over
//! TLS. The client does not resume TLS sessions: every handshake is full.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use starttls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use starttls::rustls::{self};
use starttls::{imap, pop3, smtp};
use starttls::{ClientTls, ServerTls, Session, TlsPolicy, Trust, UpgradeEvent};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

struct Setup {
    smtp: (Arc<smtp::ClientConfig>, Arc<smtp::ServerConfig>),
    imap: (Arc<imap::ClientConfig>, Arc<imap::ServerConfig>),
    pop3: (Arc<pop3::ClientConfig>, Arc<pop3::ServerConfig>),
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
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
        let ctls = ClientTls::Rustls {
            config: Arc::new(client),
            server_name: ServerName::try_from("localhost").expect("name"),
        };
        let stls = ServerTls::Rustls(server);
        let policy = TlsPolicy::StartTlsRequired;
        Setup {
            smtp: (
                Arc::new(smtp::ClientConfig::new(
                    "client.localhost",
                    policy,
                    ctls.clone(),
                )),
                Arc::new(smtp::ServerConfig::new("mx.localhost", stls.clone())),
            ),
            imap: (
                Arc::new(imap::ClientConfig::new(policy, ctls.clone())),
                Arc::new(imap::ServerConfig::new(stls.clone())),
            ),
            pop3: (
                Arc::new(pop3::ClientConfig::new(policy, ctls)),
                Arc::new(pop3::ServerConfig::new(stls)),
            ),
        }
    })
}

/// What a session must show.
#[derive(Default, Debug)]
struct Seen {
    tls_up: bool,
    bye: bool,
}

/// The application on each side: a client quits once ready over TLS.
trait App: Session + Send + 'static {
    fn on(&mut self, e: Self::Event, seen: &mut Seen);
}

fn upgrade(e: UpgradeEvent, seen: &mut Seen) {
    match e {
        UpgradeEvent::UpgradeStarted => {}
        UpgradeEvent::TlsEstablished(_) => seen.tls_up = true,
        other => panic!("unexpected {other:?}"),
    }
}

impl App for smtp::ServerSession {
    fn on(&mut self, e: smtp::ServerEvent, seen: &mut Seen) {
        match e {
            smtp::ServerEvent::Hello(_) | smtp::ServerEvent::TransactionReset => {}
            smtp::ServerEvent::Upgrade(u) => upgrade(u, seen),
            other => panic!("smtp server: unexpected {other:?}"),
        }
    }
}

impl App for smtp::ClientSession {
    fn on(&mut self, e: smtp::ClientEvent, seen: &mut Seen) {
        match e {
            smtp::ClientEvent::Greeting(_) | smtp::ClientEvent::Capabilities(_) => {}
            smtp::ClientEvent::Upgrade(u) => upgrade(u, seen),
            smtp::ClientEvent::Ready { trust } => {
                assert_eq!(trust, Trust::Tls);
                self.send(smtp::Command::Quit).expect("QUIT");
            }
            smtp::ClientEvent::Reply { to: "QUIT", reply } => {
                assert!(u16::from(reply.code()) == 221 && reply.trust == Trust::Tls);
                seen.bye = true;
            }
            other => panic!("smtp client: unexpected {other:?}"),
        }
    }
}

impl App for imap::ServerSession {
    fn on(&mut self, e: imap::ServerEvent, seen: &mut Seen) {
        match e {
            imap::ServerEvent::Upgrade(u) => upgrade(u, seen),
            other => panic!("imap server: unexpected {other:?}"),
        }
    }
}

impl App for imap::ClientSession {
    fn on(&mut self, e: imap::ClientEvent, seen: &mut Seen) {
        match e {
            imap::ClientEvent::Greeting(_)
            | imap::ClientEvent::Capabilities(_)
            | imap::ClientEvent::Untagged(_) => {}
            imap::ClientEvent::Upgrade(u) => upgrade(u, seen),
            imap::ClientEvent::Ready { trust, .. } => {
                assert_eq!(trust, Trust::Tls);
                self.send(imap::CommandBody::Logout).expect("LOGOUT");
            }
            imap::ClientEvent::Tagged { status, .. } => {
                assert!(status.status == imap::Status::Ok && status.trust == Trust::Tls);
                seen.bye = true;
            }
            other => panic!("imap client: unexpected {other:?}"),
        }
    }
}

impl App for pop3::ServerSession {
    fn on(&mut self, e: pop3::ServerEvent, seen: &mut Seen) {
        match e {
            pop3::ServerEvent::Upgrade(u) => upgrade(u, seen),
            other => panic!("pop3 server: unexpected {other:?}"),
        }
    }
}

impl App for pop3::ClientSession {
    fn on(&mut self, e: pop3::ClientEvent, seen: &mut Seen) {
        match e {
            pop3::ClientEvent::Greeting(_) | pop3::ClientEvent::Capabilities(_) => {}
            pop3::ClientEvent::Upgrade(u) => upgrade(u, seen),
            pop3::ClientEvent::Ready { trust } => {
                assert_eq!(trust, Trust::Tls);
                self.send(pop3::Command::Quit).expect("QUIT");
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

/// The hand loop `starttls serve` ran before the drivers.
async fn hand<S: App>(mut s: S, mut sock: TcpStream) -> Seen {
    let mut seen = Seen::default();
    loop {
        while let Some(e) = s.poll_event().expect("session") {
            s.on(e, &mut seen);
        }
        while let Some(out) = s.poll_transmit() {
            sock.write_all(&out).await.expect("write");
        }
        if s.is_closed() {
            break;
        }
        sock.readable().await.expect("readable");
        let mut buf = [0u8; 16 * 1024];
        match sock.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("read: {e}"),
            Ok(0) => s.handle_eof(),
            Ok(n) => s.handle_input(&buf[..n]),
        }
    }
    let _ = sock.shutdown().await;
    seen
}

/// The same through the tokio driver.
async fn driven<S: App>(s: S, sock: TcpStream) -> Seen {
    let mut seen = Seen::default();
    let mut d = starttls_io::tokio::Driver::new(s, sock);
    while let Some(e) = d.next_event().await.expect("session") {
        d.session_mut().on(e, &mut seen);
    }
    d.close().await.expect("close");
    seen
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Loop {
    Hand,
    Driver,
}

async fn run_one<C: App, S: App>(l: &TcpListener, c: C, s: S, how: Loop) {
    let addr = l.local_addr().expect("addr");
    let (client, server) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (client, (server, _)) = (client.expect("connect"), server.expect("accept"));
    let (cs, ss) = match how {
        Loop::Hand => tokio::join!(hand(c, client), hand(s, server)),
        Loop::Driver => tokio::join!(driven(c, client), driven(s, server)),
    };
    assert!(
        cs.tls_up && cs.bye && ss.tls_up,
        "incomplete session: {cs:?} {ss:?}"
    );
}

type Run = fn(&Runtime, &TcpListener, Loop);

const PROTOCOLS: [(&str, Run); 3] = [
    ("smtp", |rt, l, how| {
        let t = setup();
        let c = smtp::ClientSession::new(Arc::clone(&t.smtp.0)).expect("client");
        let s = smtp::ServerSession::new(Arc::clone(&t.smtp.1)).expect("server");
        rt.block_on(run_one(l, c, s, how))
    }),
    ("imap", |rt, l, how| {
        let t = setup();
        let c = imap::ClientSession::new(Arc::clone(&t.imap.0)).expect("client");
        let s = imap::ServerSession::new(Arc::clone(&t.imap.1)).expect("server");
        rt.block_on(run_one(l, c, s, how))
    }),
    ("pop3", |rt, l, how| {
        let t = setup();
        let c = pop3::ClientSession::new(Arc::clone(&t.pop3.0)).expect("client");
        let s = pop3::ServerSession::new(Arc::clone(&t.pop3.1)).expect("server");
        rt.block_on(run_one(l, c, s, how))
    }),
];

fn runtime() -> (Runtime, TcpListener) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    (rt, l)
}

/// Driver rate over hand-loop rate, from interleaved, individually timed
/// sessions: the ratio between low quantiles resists other processes' load
/// (a preempted session only ever looks slower).
fn paired_ratios() {
    const ROUNDS: usize = 60;
    const BATCH: usize = 4;
    let (rt, l) = runtime();
    println!(
        "driver rate / hand-loop rate, {} interleaved loopback sessions each, at the 10th, 25th \
         and 50th percentile of the time per session (target >= 0.98):",
        ROUNDS * BATCH
    );
    for (name, run) in PROTOCOLS {
        let mut hand = Vec::with_capacity(ROUNDS * BATCH);
        let mut driver = Vec::with_capacity(ROUNDS * BATCH);
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 {
                [Loop::Hand, Loop::Driver]
            } else {
                [Loop::Driver, Loop::Hand]
            };
            for how in order {
                for _ in 0..BATCH {
                    let start = Instant::now();
                    run(&rt, &l, how);
                    let t = start.elapsed().as_secs_f64();
                    match how {
                        Loop::Hand => hand.push(t),
                        Loop::Driver => driver.push(t),
                    }
                }
            }
        }
        hand.sort_by(f64::total_cmp);
        driver.sort_by(f64::total_cmp);
        let q = |v: &[f64], q: usize| v[v.len() * q / 100];
        let r = |p| q(&hand, p) / q(&driver, p);
        println!(
            "ratio {name} {:.3} {:.3} {:.3} ({:.0} us driver vs {:.0} us hand loop at the 10th)",
            r(10),
            r(25),
            r(50),
            q(&driver, 10) * 1e6,
            q(&hand, 10) * 1e6
        );
    }
}

fn sessions(c: &mut Criterion) {
    let (rt, l) = runtime();
    let mut g = c.benchmark_group("loopback_session");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    for (name, run) in PROTOCOLS {
        for (how, label) in [(Loop::Hand, "hand_loop"), (Loop::Driver, "tokio_driver")] {
            g.bench_function(format!("{name}_{label}"), |b| b.iter(|| run(&rt, &l, how)));
        }
    }
    g.finish();
}

criterion_group!(benches, sessions);

fn main() {
    // Not in `cargo test --benches` runs, which only check that each runs.
    if std::env::args().any(|a| a == "--bench") {
        paired_ratios();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
