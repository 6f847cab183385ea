//! MTA-STS policy fetching (RFC 8461 §3.3) and a per-domain policy cache,
//! on tokio. Feature `mta-sts`.
//!
//! The core's [`starttls::policy::mta_sts`] module decides (record,
//! policy grammar, cache plan, delivery decision); this one does the I/O it
//! leaves to the caller:
//!
//! * [`StsFetcher::fetch`]: `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`
//!   over HTTPS only, the certificate checked with WebPKI for
//!   `mta-sts.<domain>` against the roots you give, SNI sent; redirects never
//!   followed (a 3xx is a failure); only `200` with `text/plain`; the body
//!   capped while it is read; one timeout for the whole fetch; no cookies,
//!   no credentials, no HTTP cache. The response is judged by the core's
//!   [`parse_response`](starttls::policy::mta_sts::parse_response).
//! * [`StsPolicies::policy`]: keeps a
//!   [`PolicyCache`](starttls::policy::mta_sts::PolicyCache) per domain, runs
//!   its plan, fetches when told, and says what happened.
//!
//! You choose where it connects ([`Connect`]): the system resolver, fixed
//! addresses ([`ConnectOverrides`], like curl's `--connect-to`), or your own
//! [`AddressSource`].
//!
//! ```no_run
//! # async fn demo(roots: starttls::rustls::RootCertStore) {
//! use std::sync::Arc;
//! use starttls::policy::mta_sts::TxtLookup;
//! use starttls_io::mta_sts::{FetcherConfig, PolicyEvent, StsFetcher, StsPolicies};
//!
//! let fetcher = StsFetcher::new(FetcherConfig::new(Arc::new(roots))).unwrap();
//! let policies = StsPolicies::new(fetcher);
//! // The `_mta-sts.example.com` TXT records, from your resolver.
//! let txt = TxtLookup::from_records(["v=STSv1; id=20240101;"]);
//! let now = 1_700_000_000; // seconds, from your clock
//! let lookup = policies.policy("example.com", txt, now).await.unwrap();
//! match &lookup.event {
//!     PolicyEvent::Fetched(f) => println!("fetched from {}: {:?}", f.peer, f.policy.mode()),
//!     PolicyEvent::FetchFailed { error, .. } => println!("{error}"),
//!     other => println!("{other:?}"),
//! }
//! let _in_force = lookup.policy; // give it to `mta_sts::decide` per MX
//! # }
//! ```

mod cache;
mod connect;
mod error;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use starttls::policy::mta_sts::{self, FetchError, Policy};
use starttls::rustls::crypto::CryptoProvider;
use starttls::rustls::pki_types::{CertificateDer, ServerName};
use starttls::rustls::{self, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use cache::{PolicyEvent, PolicyLookup, StsPolicies};
pub use connect::{AddressError, AddressFuture, AddressSource, Connect, ConnectOverrides};
pub use error::{FetchStage, StsFetchError};

/// The path of the policy on the Policy Host (RFC 8461 §3.2).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// The default timeout for a whole fetch: 60 seconds (RFC 8461 §3.3 asks for
/// "a reasonable" one).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The `User-Agent` sent unless configured otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("starttls-io/", env!("CARGO_PKG_VERSION"));

/// The largest HTTP read buffer: bounds the response header, and how far
/// past the size limit the body can be read before the fetch stops.
const HTTP_READ_BUFFER: usize = 16 * 1024;

/// How a [`StsFetcher`] fetches.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FetcherConfig {
    /// The trust anchors the Policy Host's certificate must chain to
    /// (WebPKI).
    pub roots: Arc<RootCertStore>,
    /// The time allowed for the whole fetch: lookup, connection, handshake,
    /// request and body. Default [`DEFAULT_FETCH_TIMEOUT`].
    pub timeout: Duration,
    /// The largest policy accepted, in bytes; reading stops there. Default
    /// [`DEFAULT_MAX_POLICY_SIZE`](mta_sts::DEFAULT_MAX_POLICY_SIZE).
    pub max_size: usize,
    /// Where to connect. Default [`Connect::System`].
    pub connect: Connect,
    /// The `User-Agent` header, or none. Default [`DEFAULT_USER_AGENT`].
    pub user_agent: Option<String>,
    /// The rustls crypto provider; `None` uses the process default if one
    /// is installed, or else *ring*.
    pub provider: Option<Arc<CryptoProvider>>,
}

impl FetcherConfig {
    /// The defaults, with these roots.
    pub fn new(roots: Arc<RootCertStore>) -> FetcherConfig {
        FetcherConfig {
            roots,
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_size: mta_sts::DEFAULT_MAX_POLICY_SIZE,
            connect: Connect::System,
            user_agent: Some(DEFAULT_USER_AGENT.to_owned()),
            provider: None,
        }
    }

    /// The defaults, with the Mozilla roots of the `webpki-roots` crate.
    #[cfg(feature = "webpki-roots")]
    pub fn with_webpki_roots() -> FetcherConfig {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        FetcherConfig::new(Arc::new(roots))
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> FetcherConfig {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_size`](Self::max_size).
    pub fn max_size(mut self, max_size: usize) -> FetcherConfig {
        self.max_size = max_size;
        self
    }

    /// Sets [`connect`](Self::connect).
    pub fn connect(mut self, connect: Connect) -> FetcherConfig {
        self.connect = connect;
        self
    }

    /// Sets [`user_agent`](Self::user_agent).
    pub fn user_agent(mut self, user_agent: Option<String>) -> FetcherConfig {
        self.user_agent = user_agent;
        self
    }

    /// Sets [`provider`](Self::provider).
    pub fn provider(mut self, provider: Arc<CryptoProvider>) -> FetcherConfig {
        self.provider = Some(provider);
        self
    }
}

/// How long each step of a successful fetch took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchTimings {
    /// The address lookup.
    pub resolve: Duration,
    /// The TCP connection (all attempts).
    pub connect: Duration,
    /// The TLS handshake.
    pub tls: Duration,
    /// From the request to the response header.
    pub response: Duration,
    /// Reading the body.
    pub body: Duration,
    /// The whole fetch.
    pub total: Duration,
}

/// A policy fetched and accepted, with what a report or a probe may want to
/// show about how.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FetchedPolicy {
    /// The policy.
    pub policy: Policy,
    /// The Policy Host, `mta-sts.<domain>` (lowercase).
    pub host: String,
    /// The address connected to.
    pub peer: SocketAddr,
    /// The HTTP status (always 200 here).
    pub status: u16,
    /// The `Content-Type` header as sent.
    pub content_type: Option<String>,
    /// The server's certificate chain, leaf first, as presented.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The TLS version negotiated.
    pub tls_version: Option<rustls::ProtocolVersion>,
    /// Bytes received on the TCP connection (TLS records included).
    pub bytes_received: u64,
    /// How long it took.
    pub timings: FetchTimings,
}

/// Fetches MTA-STS policies over HTTPS (RFC 8461 §3.3). Cheap to clone;
/// one fetcher serves any number of concurrent fetches.
#[derive(Clone, Debug)]
pub struct StsFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    config: FetcherConfig,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsFetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StsFetcher {
    /// A fetcher with this configuration.
    ///
    /// # Errors
    ///
    /// Only if the crypto provider supports neither TLS 1.2 nor 1.3 (a
    /// provider you configured yourself); the default ones never fail.
    pub fn new(config: FetcherConfig) -> Result<StsFetcher, rustls::Error> {
        let provider = config
            .provider
            .clone()
            .or_else(|| CryptoProvider::get_default().cloned())
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(&config.roots))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(StsFetcher {
            inner: Arc::new(Inner {
                config,
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.inner.config
    }

    /// Fetches and checks the policy of `domain` (the Policy Domain, not
    /// the Policy Host): `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    ///
    /// Dropping the future abandons the fetch and closes the connection.
    pub async fn fetch(&self, domain: &str) -> Result<FetchedPolicy, StsFetchError> {
        let host = mta_sts::policy_host(domain).map_err(StsFetchError::InvalidDomain)?;
        let timeout = self.inner.config.timeout;
        let stage = AtomicU8::new(FetchStage::Resolve.as_u8());
        match tokio::time::timeout(timeout, self.fetch_host(host, &stage)).await {
            Ok(result) => result,
            Err(_) => Err(StsFetchError::Timeout {
                after: timeout,
                stage: FetchStage::from_u8(stage.load(Ordering::Relaxed)),
            }),
        }
    }

    async fn fetch_host(
        &self,
        host: String,
        stage: &AtomicU8,
    ) -> Result<FetchedPolicy, StsFetchError> {
        let config = &self.inner.config;
        let start = Instant::now();
        let mut timings = FetchTimings::default();

        // Addresses.
        let addrs =
            config
                .connect
                .resolve(&host, 443)
                .await
                .map_err(|e| StsFetchError::Resolve {
                    host: host.clone(),
                    reason: e.to_string(),
                })?;
        if addrs.is_empty() {
            return Err(StsFetchError::NoAddress { host });
        }
        let mark = Instant::now();
        timings.resolve = mark - start;

        // TCP, each address in turn.
        stage.store(FetchStage::Connect.as_u8(), Ordering::Relaxed);
        let mut attempts = Vec::new();
        let mut connected = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    connected = Some((tcp, addr));
                    break;
                }
                Err(e) => attempts.push((addr, e.to_string())),
            }
        }
        let (tcp, peer) = connected.ok_or(StsFetchError::Connect { attempts })?;
        // Small requests: no Nagle delay (best effort).
        let _ = tcp.set_nodelay(true);
        let received = Arc::new(AtomicU64::new(0));
        let tcp = Counted {
            inner: tcp,
            received: Arc::clone(&received),
        };
        let mark2 = Instant::now();
        timings.connect = mark2 - mark;

        // TLS, checked for the Policy Host.
        stage.store(FetchStage::Tls.as_u8(), Ordering::Relaxed);
        let server_name = ServerName::try_from(host.clone()).map_err(|e| StsFetchError::Tls {
            reason: format!("{host} is not a valid TLS server name: {e}"),
        })?;
        let tls = self
            .inner
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| StsFetchError::from_tls(&e))?;
        let (_, session) = tls.get_ref();
        let peer_certificates = session
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let tls_version = session.protocol_version();
        let mark3 = Instant::now();
        timings.tls = mark3 - mark2;

        // HTTP/1.1: one GET, no redirects, no cookies, no credentials.
        stage.store(FetchStage::Response.as_u8(), Ordering::Relaxed);
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(HTTP_READ_BUFFER)
            .handshake::<_, String>(TokioIo::new(tls))
            .await
            .map_err(http_error)?;
        let _connection = AbortOnDrop(tokio::spawn(connection));
        let mut request = hyper::Request::get(POLICY_PATH)
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::CONNECTION, "close");
        if let Some(agent) = &config.user_agent {
            request = request.header(hyper::header::USER_AGENT, agent.as_str());
        }
        let request = request
            .body(String::new())
            .map_err(|e| StsFetchError::Http {
                reason: e.to_string(),
            })?;
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let content_length = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mark4 = Instant::now();
        timings.response = mark4 - mark3;

        // Status and media type first: an error page's body is not read.
        let rejected = |error: FetchError| StsFetchError::Rejected {
            status,
            content_type: content_type.clone(),
            error,
        };
        if let Err(e @ (FetchError::HttpStatus { .. } | FetchError::NotTextPlain)) =
            mta_sts::parse_response(status, content_type.as_deref(), &[], config.max_size)
        {
            return Err(rejected(e));
        }
        let limit = config.max_size;
        if content_length.is_some_and(|len| len > limit as u64) {
            return Err(StsFetchError::TooLarge {
                limit,
                content_length,
                received: 0,
            });
        }

        // The body, never more than the limit.
        stage.store(FetchStage::Body.as_u8(), Ordering::Relaxed);
        let mut body = response.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(http_error)?;
            if let Ok(data) = frame.into_data() {
                let total = buf.len().saturating_add(data.len());
                if total > limit {
                    return Err(StsFetchError::TooLarge {
                        limit,
                        content_length,
                        received: total,
                    });
                }
                buf.extend_from_slice(&data);
            }
        }
        let end = Instant::now();
        timings.body = end - mark4;
        timings.total = end - start;

        let policy = mta_sts::parse_response(status, content_type.as_deref(), &buf, limit)
            .map_err(rejected)?;
        Ok(FetchedPolicy {
            policy,
            host,
            peer,
            status,
            content_type,
            peer_certificates,
            tls_version,
            bytes_received: received.load(Ordering::Relaxed),
            timings,
        })
    }
}

fn http_error(e: hyper::Error) -> StsFetchError {
    StsFetchError::Http {
        reason: e.to_string(),
    }
}

/// Aborts the connection task when the fetch ends or is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stream that counts the bytes read from it.
struct Counted<S> {
    inner: S,
    received: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.received.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
