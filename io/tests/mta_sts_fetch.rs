//! The MTA-STS policy fetcher and cache driver against HTTPS servers written
//! here, on loopback only: every host name is mapped to 127.0.0.1 with
//! `Connect::Override` (or the caller's address source).
#![cfg(feature = "mta-sts")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use starttls::policy::mta_sts::{
    CacheAction, CertificateProblem, FetchError, Mode, PolicyError, PolicyId, TxtLookup,
    DEFAULT_MAX_POLICY_SIZE,
};
use starttls::policy::tlsrpt::ResultType;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use starttls::rustls::{self, RootCertStore, ServerConfig};
use starttls_io::mta_sts::{
    Connect, ConnectOverrides, FetchStage, FetcherConfig, PolicyEvent, StsFetchError, StsFetcher,
    StsPolicies,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DOMAIN: &str = "example.test";
const HOST: &str = "mta-sts.example.test";

const ENFORCE: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mail.example.test\r\nmax_age: 604800\r\n";

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca cert");
    Ca {
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn make_leaf(ca: &Ca, name: &str, expired: bool) -> Leaf {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("leaf params");
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("leaf cert");
    Leaf {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

struct Pki {
    ca: Ca,
    good: Leaf,
    other_host: Leaf,
    wrong_name: Leaf,
    unknown_ca: Leaf,
    expired: Leaf,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = make_ca("MTA-STS test CA");
        let rogue = make_ca("Unknown CA");
        Pki {
            good: make_leaf(&ca, HOST, false),
            other_host: make_leaf(&ca, "mta-sts.other.test", false),
            wrong_name: make_leaf(&ca, "mta-sts.wrong.test", false),
            unknown_ca: make_leaf(&rogue, HOST, false),
            expired: make_leaf(&ca, HOST, true),
            ca,
        }
    })
}

fn roots() -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(pki().ca.der.clone()).expect("test CA");
    Arc::new(roots)
}

fn server_config(leaf: &Leaf) -> Arc<ServerConfig> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                leaf.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone())),
            )
            .expect("key fits");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

// ---------------------------------------------------------------------------
// Test HTTPS server
// ---------------------------------------------------------------------------

/// What the test server answers.
#[derive(Clone)]
enum Reply {
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// A `200 text/plain` header (with this `Content-Length`, or chunked),
    /// then body bytes for as long as the client takes them (64 MiB at
    /// most).
    Endless { content_length: Option<u64> },
    /// Read the request, then say nothing.
    Hang,
}

fn response(status: &str, content_type: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn policy_reply(body: &str) -> Reply {
    response("200 OK", "text/plain; charset=utf-8", body)
}

fn chunked_reply(body: &str) -> Reply {
    let mut raw =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for piece in body.as_bytes().chunks(7) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    Reply::Raw(raw)
}

/// The SNI and request head of each request.
type RequestLog = Arc<Mutex<Vec<(Option<String>, String)>>>;

struct Server {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    /// HTTP requests read.
    requests: Arc<AtomicUsize>,
    /// The request heads and SNI seen.
    log: RequestLog,
    /// Body bytes written by `Reply::Endless`, and whether it has stopped.
    written: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl Server {
    async fn start(leaf: &Leaf, reply: Reply) -> Server {
        // A small send buffer (no autotuning), so that what the server
        // manages to write tracks what the client reads.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(32 * 1024).expect("SO_SNDBUF");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(16).expect("listen");
        let server = Server {
            addr: listener.local_addr().expect("addr"),
            reply: Arc::new(Mutex::new(reply)),
            connections: Arc::default(),
            requests: Arc::default(),
            log: Arc::default(),
            written: Arc::default(),
            done: Arc::default(),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(leaf));
        let (reply, connections, requests, log, written, done) = (
            server.reply.clone(),
            server.connections.clone(),
            server.requests.clone(),
            server.log.clone(),
            server.written.clone(),
            server.done.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let reply = reply.lock().expect("reply").clone();
                let (requests, log, written, done) =
                    (requests.clone(), log.clone(), written.clone(), done.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    let Some(head) = read_head(&mut tls).await else {
                        return;
                    };
                    requests.fetch_add(1, Ordering::SeqCst);
                    log.lock().expect("log").push((sni, head));
                    match reply {
                        Reply::Raw(bytes) => {
                            let _ = tls.write_all(&bytes).await;
                            let _ = tls.shutdown().await;
                        }
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        Reply::Endless { content_length } => {
                            let head = match content_length {
                                Some(len) => format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n"
                                ),
                                None => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    .to_string(),
                            };
                            if tls.write_all(head.as_bytes()).await.is_ok() {
                                let line = "mx: a.example.test\r\n".repeat(400);
                                let mut chunk = Vec::new();
                                if content_length.is_none() {
                                    chunk.extend_from_slice(
                                        format!("{:x}\r\n", line.len()).as_bytes(),
                                    );
                                }
                                chunk.extend_from_slice(line.as_bytes());
                                if content_length.is_none() {
                                    chunk.extend_from_slice(b"\r\n");
                                }
                                while written.load(Ordering::SeqCst) < 64 << 20 {
                                    if tls.write_all(&chunk).await.is_err() {
                                        break;
                                    }
                                    written.fetch_add(line.len() as u64, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                    done.store(true, Ordering::SeqCst);
                });
            }
        });
        server
    }

    fn set_reply(&self, reply: Reply) {
        *self.reply.lock().expect("reply") = reply;
    }

    /// Waits (5 s at most) for the `Endless` writer to stop.
    async fn wait_done(&self) {
        let start = Instant::now();
        while !self.done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            self.done.load(Ordering::SeqCst),
            "the server never stopped writing"
        );
    }
}

/// Reads a request head (up to the blank line).
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn overrides(addr: SocketAddr) -> ConnectOverrides {
    ConnectOverrides::new().add(HOST, Some(443), addr)
}

fn fetcher_with(
    connect: ConnectOverrides,
    f: impl FnOnce(FetcherConfig) -> FetcherConfig,
) -> StsFetcher {
    let config = FetcherConfig::new(roots())
        .connect(Connect::Override(connect))
        .timeout(Duration::from_secs(10));
    StsFetcher::new(f(config)).expect("fetcher")
}

fn fetcher(addr: SocketAddr) -> StsFetcher {
    fetcher_with(overrides(addr), |c| c)
}

// ---------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------

#[tokio::test]
async fn enforce_policy_is_fetched_over_https_and_parsed() {
    let server = Server::start(&pki().good, policy_reply(ENFORCE)).await;
    let fetched = fetcher(server.addr)
        .fetch("Example.TEST.")
        .await
        .expect("fetched");
    assert_eq!(fetched.policy.mode(), Mode::Enforce);
    assert_eq!(fetched.policy.max_age(), 604_800);
    assert!(fetched.policy.matches_mx("mx1.example.test"));
    assert!(fetched.policy.matches_mx("a.mail.example.test"));
    assert_eq!(fetched.status, 200);
    assert_eq!(
        fetched.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(fetched.host, HOST);
    assert_eq!(fetched.peer, server.addr);
    assert_eq!(fetched.peer_certificates, pki().good.chain);
    assert!(fetched.tls_version.is_some());
    assert!(fetched.bytes_received > ENFORCE.len() as u64);
    assert!(fetched.timings.total >= fetched.timings.tls);
    eprintln!("loopback fetch: {:?}", fetched.timings);

    // The request: one GET of the well-known path for the Policy Host, SNI
    // sent, no cookies, no credentials.
    let log = server.log.lock().expect("log").clone();
    assert_eq!(log.len(), 1);
    let (sni, head) = &log[0];
    assert_eq!(sni.as_deref(), Some(HOST));
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        lower.contains("\r\nhost: mta-sts.example.test\r\n"),
        "{head}"
    );
    assert!(lower.contains("\r\nuser-agent: starttls-io/"), "{head}");
    assert!(
        !lower.contains("cookie") && !lower.contains("authorization"),
        "{head}"
    );
}

#[tokio::test]
async fn testing_mode_and_chunked_body() {
    let body = "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400\n";
    let server = Server::start(&pki().good, chunked_reply(body)).await;
    let fetched = fetcher(server.addr).fetch(DOMAIN).await.expect("fetched");
    assert_eq!(fetched.policy.mode(), Mode::Testing);
    assert_eq!(fetched.policy.max_age(), 86_400);
    assert_eq!(fetched.policy.text(), body);
}

#[tokio::test]
async fn policy_for_other_mx_hosts_parses_and_matching_is_left_to_core() {
    let body = "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n";
    let server = Server::start(&pki().good, policy_reply(body)).await;
    let fetched = fetcher(server.addr).fetch(DOMAIN).await.expect("fetched");
    assert!(fetched.policy.matches_mx("mx.elsewhere.test"));
    assert!(!fetched.policy.matches_mx("mx1.example.test"));
}

#[tokio::test]
async fn invalid_policy_is_sts_policy_invalid() {
    let server = Server::start(&pki().good, policy_reply("version: STSv1\nmode: enforce\n")).await;
    let err = fetcher(server.addr)
        .fetch(DOMAIN)
        .await
        .expect_err("invalid");
    assert!(
        matches!(
            &err,
            StsFetchError::Rejected {
                status: 200,
                error: FetchError::Invalid(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.result_type(), ResultType::StsPolicyInvalid);
}

#[tokio::test]
async fn redirects_are_failures_and_never_followed() {
    for status in ["301 Moved Permanently", "302 Found"] {
        // The target: a valid policy host that must never be contacted.
        let target = Server::start(&pki().other_host, policy_reply(ENFORCE)).await;
        let location = format!(
            "HTTP/1.1 {status}\r\nLocation: https://mta-sts.other.test/.well-known/mta-sts.txt\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        );
        let server = Server::start(&pki().good, Reply::Raw(location.into_bytes())).await;
        let connect = overrides(server.addr).add("mta-sts.other.test", None, target.addr);
        let err = fetcher_with(connect, |c| c)
            .fetch(DOMAIN)
            .await
            .expect_err("redirect");
        let code: u16 = status[..3].parse().expect("code");
        assert_eq!(
            err,
            StsFetchError::Rejected {
                status: code,
                content_type: Some("text/plain".into()),
                error: FetchError::HttpStatus { status: code },
            }
        );
        assert_eq!(err.result_type(), ResultType::StsPolicyFetchError);
        assert!(
            err.to_string().contains("redirects are not followed"),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        assert_eq!(
            target.connections.load(Ordering::SeqCst),
            0,
            "redirect followed"
        );
    }
}

#[tokio::test]
async fn not_found_is_a_fetch_error() {
    let server = Server::start(&pki().good, response("404 Not Found", "text/plain", "no")).await;
    let err = fetcher(server.addr).fetch(DOMAIN).await.expect_err("404");
    assert_eq!(err.fetch_error(), FetchError::HttpStatus { status: 404 });
}

#[tokio::test]
async fn text_html_is_rejected() {
    let server = Server::start(&pki().good, response("200 OK", "text/html", ENFORCE)).await;
    let err = fetcher(server.addr).fetch(DOMAIN).await.expect_err("html");
    assert_eq!(
        err,
        StsFetchError::Rejected {
            status: 200,
            content_type: Some("text/html".into()),
            error: FetchError::NotTextPlain,
        }
    );
    assert_eq!(err.result_type(), ResultType::StsPolicyInvalid);
}

#[tokio::test]
async fn configured_size_limit_applies_to_the_body() {
    // Exactly at the limit passes; one byte over fails, in both framings.
    let body = "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmx: mx2.example.test\nmax_age: 86400\n";
    let len = body.len();
    for reply in [policy_reply(body), chunked_reply(body)] {
        let server = Server::start(&pki().good, reply).await;
        let ok = fetcher_with(overrides(server.addr), |c| c.max_size(len));
        assert!(ok.fetch(DOMAIN).await.is_ok());
        let small = fetcher_with(overrides(server.addr), |c| c.max_size(len - 1));
        let err = small.fetch(DOMAIN).await.expect_err("too large");
        assert!(
            matches!(err, StsFetchError::TooLarge { limit, .. } if limit == len - 1),
            "{err:?}"
        );
        assert_eq!(err.result_type(), ResultType::StsPolicyInvalid);
        assert!(matches!(
            err.fetch_error(),
            FetchError::Invalid(PolicyError::TooLarge { limit, .. }) if limit == len - 1
        ));
    }
}

#[tokio::test]
async fn oversize_with_content_length_is_refused_unread() {
    let server = Server::start(
        &pki().good,
        Reply::Endless {
            content_length: Some(64 << 20),
        },
    )
    .await;
    let err = fetcher(server.addr)
        .fetch(DOMAIN)
        .await
        .expect_err("too large");
    assert_eq!(
        err,
        StsFetchError::TooLarge {
            limit: DEFAULT_MAX_POLICY_SIZE,
            content_length: Some(64 << 20),
            received: 0,
        }
    );
    server.wait_done().await;
    let written = server.written.load(Ordering::SeqCst);
    eprintln!("server wrote {written} body bytes before the client closed");
    assert!(
        written < 2 << 20,
        "the client kept reading: {written} bytes"
    );
}

#[tokio::test]
async fn oversize_chunked_stops_reading_at_the_limit() {
    let server = Server::start(
        &pki().good,
        Reply::Endless {
            content_length: None,
        },
    )
    .await;
    let err = fetcher(server.addr)
        .fetch(DOMAIN)
        .await
        .expect_err("too large");
    let StsFetchError::TooLarge {
        limit,
        content_length: None,
        received,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(limit, DEFAULT_MAX_POLICY_SIZE);
    // At most one HTTP read buffer (16 KiB) past the limit is taken in.
    assert!(
        received > limit && received <= limit + 16 * 1024,
        "{received}"
    );
    server.wait_done().await;
    let written = server.written.load(Ordering::SeqCst);
    eprintln!("server wrote {written} body bytes; the client took {received}");
    assert!(
        written < 2 << 20,
        "the client kept reading: {written} bytes"
    );
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

async fn tls_failure(leaf: &Leaf) -> StsFetchError {
    let server = Server::start(leaf, policy_reply(ENFORCE)).await;
    let err = fetcher(server.addr)
        .fetch(DOMAIN)
        .await
        .expect_err("tls failure");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "a request was sent"
    );
    err
}

#[tokio::test]
async fn certificate_for_another_name_is_rejected() {
    let err = tls_failure(&pki().wrong_name).await;
    assert_eq!(
        err.certificate_problem(),
        Some(CertificateProblem::HostMismatch),
        "{err:?}"
    );
    assert_eq!(err.result_type(), ResultType::StsWebpkiInvalid);
    assert!(matches!(err.fetch_error(), FetchError::WebPki { .. }));
    assert!(
        err.to_string().contains("not valid for the policy host"),
        "{err}"
    );
}

#[tokio::test]
async fn certificate_from_unknown_ca_is_rejected() {
    let err = tls_failure(&pki().unknown_ca).await;
    assert_eq!(
        err.certificate_problem(),
        Some(CertificateProblem::NotTrusted),
        "{err:?}"
    );
    assert_eq!(err.result_type(), ResultType::StsWebpkiInvalid);
}

#[tokio::test]
async fn expired_certificate_is_rejected() {
    let err = tls_failure(&pki().expired).await;
    assert_eq!(
        err.certificate_problem(),
        Some(CertificateProblem::Expired),
        "{err:?}"
    );
    assert_eq!(err.result_type(), ResultType::StsWebpkiInvalid);
}

#[tokio::test]
async fn plain_http_server_is_a_tls_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let err = fetcher(addr).fetch(DOMAIN).await.expect_err("not TLS");
    assert!(matches!(err, StsFetchError::Tls { .. }), "{err:?}");
    assert_eq!(err.certificate_problem(), None);
    assert_eq!(err.result_type(), ResultType::StsPolicyFetchError);
}

// ---------------------------------------------------------------------------
// Time and connections
// ---------------------------------------------------------------------------

#[tokio::test]
async fn silent_server_times_out_during_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            keep.lock().expect("held").push(tcp);
        }
    });
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = fetcher_with(overrides(addr), |c| c.timeout(timeout))
        .fetch(DOMAIN)
        .await
        .expect_err("timeout");
    let elapsed = start.elapsed();
    assert_eq!(
        err,
        StsFetchError::Timeout {
            after: timeout,
            stage: FetchStage::Tls
        }
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert_eq!(err.result_type(), ResultType::StsPolicyFetchError);
}

#[tokio::test]
async fn server_that_never_answers_the_request_times_out() {
    let server = Server::start(&pki().good, Reply::Hang).await;
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = fetcher_with(overrides(server.addr), |c| c.timeout(timeout))
        .fetch(DOMAIN)
        .await
        .expect_err("timeout");
    assert_eq!(
        err,
        StsFetchError::Timeout {
            after: timeout,
            stage: FetchStage::Response
        }
    );
    assert!(start.elapsed() < timeout + Duration::from_secs(1));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_override_for_the_host_means_no_address() {
    let other = ConnectOverrides::new().add(
        "mta-sts.other.test",
        None,
        "127.0.0.1:9".parse().expect("addr"),
    );
    let err = fetcher_with(other, |c| c)
        .fetch(DOMAIN)
        .await
        .expect_err("no address");
    assert_eq!(err, StsFetchError::NoAddress { host: HOST.into() });
}

#[tokio::test]
async fn refused_connections_are_reported_per_address_and_the_next_is_tried() {
    // A port with nothing listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let err = fetcher(closed).fetch(DOMAIN).await.expect_err("refused");
    let StsFetchError::Connect { attempts } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].0, closed);

    // The closed port first, then a live server: the second is used.
    let server = Server::start(&pki().good, policy_reply(ENFORCE)).await;
    let both = overrides(closed).add(HOST, None, server.addr);
    let fetched = fetcher_with(both, |c| c)
        .fetch(DOMAIN)
        .await
        .expect("second address");
    assert_eq!(fetched.peer, server.addr);
}

#[tokio::test]
async fn the_callers_address_source_is_asked() {
    let server = Server::start(&pki().good, policy_reply(ENFORCE)).await;
    let asked: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let (log, addr) = (asked.clone(), server.addr);
    let connect = Connect::from_fn(move |host, port| {
        log.lock().expect("log").push((host, port));
        async move { Ok(vec![addr]) }
    });
    let fetcher = StsFetcher::new(FetcherConfig::new(roots()).connect(connect)).expect("fetcher");
    fetcher.fetch(DOMAIN).await.expect("fetched");
    assert_eq!(*asked.lock().expect("log"), [(HOST.to_string(), 443)]);

    let failing = Connect::from_fn(|_, _| async { Err("SERVFAIL".into()) });
    let fetcher = StsFetcher::new(FetcherConfig::new(roots()).connect(failing)).expect("fetcher");
    let err = fetcher.fetch(DOMAIN).await.expect_err("lookup failed");
    assert_eq!(
        err,
        StsFetchError::Resolve {
            host: HOST.into(),
            reason: "SERVFAIL".into()
        }
    );
}

#[tokio::test]
async fn invalid_domain_is_refused_before_any_io() {
    let fetcher = fetcher("127.0.0.1:9".parse().expect("addr"));
    let err = fetcher.fetch("not a domain").await.expect_err("invalid");
    assert!(matches!(err, StsFetchError::InvalidDomain(_)), "{err:?}");
}

// ---------------------------------------------------------------------------
// Cache driver
// ---------------------------------------------------------------------------

fn txt(id: &str) -> TxtLookup {
    TxtLookup::Found(PolicyId::new(id).expect("id"))
}

#[tokio::test]
async fn cache_is_used_within_max_age_and_refetched_for_a_new_id() {
    let server = Server::start(&pki().good, policy_reply(ENFORCE)).await;
    let policies = StsPolicies::new(fetcher(server.addr));
    let now = 1_000_000;

    let first = policies
        .policy(DOMAIN, txt("v1"), now)
        .await
        .expect("domain");
    assert_eq!(
        first.action,
        CacheAction::Fetch {
            id: PolicyId::new("v1").expect("id")
        }
    );
    assert!(
        matches!(first.event, PolicyEvent::Fetched(_)),
        "{:?}",
        first.event
    );
    assert_eq!(first.policy.as_ref().map(|p| p.mode()), Some(Mode::Enforce));
    assert_eq!(first.domain, DOMAIN);

    // Same id, an hour later: from the cache, no request.
    let second = policies
        .policy("EXAMPLE.test.", txt("v1"), now + 3600)
        .await
        .expect("domain");
    assert!(
        matches!(second.event, PolicyEvent::Cached),
        "{:?}",
        second.event
    );
    assert_eq!(second.policy, first.policy);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // DNS fails: the cached policy stays, still no request.
    let dns_down = policies
        .policy(DOMAIN, TxtLookup::Failed, now + 7200)
        .await
        .expect("domain");
    assert!(matches!(dns_down.event, PolicyEvent::Cached));
    assert!(dns_down.policy.is_some());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // A new id: fetched again, the new policy replaces the old one.
    server.set_reply(policy_reply(
        "version: STSv1\nmode: testing\nmx: mx1.example.test\nmax_age: 86400\n",
    ));
    let third = policies
        .policy(DOMAIN, txt("v2"), now + 7200)
        .await
        .expect("domain");
    assert!(
        matches!(third.event, PolicyEvent::Fetched(_)),
        "{:?}",
        third.event
    );
    assert_eq!(third.policy.as_ref().map(|p| p.mode()), Some(Mode::Testing));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    let cache = policies.cache(DOMAIN).expect("cached");
    assert_eq!(
        cache.entry().map(|e| e.id().as_str().to_owned()).as_deref(),
        Some("v2")
    );

    // A day later: refreshed in line, same id.
    let refresh = policies
        .policy(DOMAIN, txt("v2"), now + 7200 + 86_400)
        .await
        .expect("domain");
    assert_eq!(
        refresh.action,
        CacheAction::Refresh {
            id: PolicyId::new("v2").expect("id")
        }
    );
    assert!(matches!(refresh.event, PolicyEvent::Fetched(_)));
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn failed_fetch_keeps_the_cached_policy_and_paces_retries() {
    let server = Server::start(&pki().good, policy_reply(ENFORCE)).await;
    let policies = StsPolicies::new(fetcher(server.addr));
    let now = 5_000_000;
    policies
        .policy(DOMAIN, txt("v1"), now)
        .await
        .expect("domain");

    server.set_reply(response("500 Internal Server Error", "text/plain", "oops"));
    let failed = policies
        .policy(DOMAIN, txt("v2"), now + 60)
        .await
        .expect("domain");
    let PolicyEvent::FetchFailed { error, failure } = &failed.event else {
        panic!("{:?}", failed.event);
    };
    assert_eq!(error.fetch_error(), FetchError::HttpStatus { status: 500 });
    assert!(failure.keep_cached);
    assert_eq!(failure.report, Some(ResultType::StsPolicyFetchError));
    assert_eq!(
        failed.policy.as_ref().map(|p| p.mode()),
        Some(Mode::Enforce)
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);

    // Within five minutes: no new attempt, the cached policy stays.
    let paced = policies
        .policy(DOMAIN, txt("v2"), now + 120)
        .await
        .expect("domain");
    assert!(
        matches!(paced.event, PolicyEvent::RetryLater { retry_at } if retry_at == now + 60 + 300),
        "{:?}",
        paced.event
    );
    assert!(paced.policy.is_some());
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);

    // After that, tried again and stored.
    server.set_reply(policy_reply(ENFORCE));
    let retried = policies
        .policy(DOMAIN, txt("v2"), now + 400)
        .await
        .expect("domain");
    assert!(matches!(retried.event, PolicyEvent::Fetched(_)));
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn no_record_and_no_cache_means_no_policy_and_no_fetch() {
    let server = Server::start(&pki().good, policy_reply(ENFORCE)).await;
    let policies = StsPolicies::new(fetcher(server.addr));
    let none = policies
        .policy(DOMAIN, TxtLookup::NotFound, 1)
        .await
        .expect("domain");
    assert!(matches!(none.event, PolicyEvent::NoPolicy));
    assert!(none.policy.is_none());

    // A policy that expires: once past max_age with no record, dropped.
    policies
        .policy(DOMAIN, txt("v1"), 10)
        .await
        .expect("domain");
    let expired = policies
        .policy(DOMAIN, TxtLookup::NotFound, 10 + 604_801)
        .await
        .expect("domain");
    assert!(matches!(expired.event, PolicyEvent::Expired));
    assert!(expired.policy.is_none());
    assert!(policies.cache(DOMAIN).is_none());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // A fetch failure with nothing cached: no policy, reported.
    server.set_reply(response("200 OK", "text/html", ENFORCE));
    let failed = policies
        .policy(DOMAIN, txt("v3"), 700_000)
        .await
        .expect("domain");
    let PolicyEvent::FetchFailed { failure, .. } = failed.event else {
        panic!("{:?}", failed.event);
    };
    assert!(!failure.keep_cached);
    assert_eq!(failure.report, Some(ResultType::StsPolicyInvalid));
    assert!(failed.policy.is_none());
}
