//! Where the fetcher connects: the system resolver, fixed overrides, or the
//! caller's own address source.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The error an [`AddressSource`] returns: anything that can say what went
/// wrong.
pub type AddressError = Box<dyn std::error::Error + Send + Sync>;

/// The future an [`AddressSource`] returns.
pub type AddressFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, AddressError>> + Send + 'a>>;

/// Gives the addresses to connect to for a host and port, in the order to
/// try them. Implement it to plug in your own resolver (a DNSSEC-validating
/// one, a cache), or wrap an async closure with [`Connect::from_fn`].
pub trait AddressSource: Send + Sync {
    /// The addresses of `host` (the Policy Host, `mta-sts.<domain>`) for
    /// `port` (443). An empty list means the host has no address.
    fn addresses<'a>(&'a self, host: &'a str, port: u16) -> AddressFuture<'a>;
}

/// An async closure as an [`AddressSource`]; made by [`Connect::from_fn`].
struct FnSource<F>(F);

impl<F, Fut> AddressSource for FnSource<F>
where
    F: Fn(String, u16) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Vec<SocketAddr>, AddressError>> + Send + 'static,
{
    fn addresses<'a>(&'a self, host: &'a str, port: u16) -> AddressFuture<'a> {
        Box::pin((self.0)(host.to_owned(), port))
    }
}

/// Fixed addresses for some hosts, like curl's `--connect-to`: a request for
/// `host:port` goes to the given socket addresses instead (the TLS server
/// name and the HTTP `Host` stay `host`). Hosts without an entry have no
/// address: the overrides never fall back to the system resolver, so a test
/// or a probe pinned to its targets never leaks a lookup.
///
/// ```
/// # use starttls_io::mta_sts::ConnectOverrides;
/// let overrides = ConnectOverrides::new()
///     .add("mta-sts.example.test", Some(443), "127.0.0.1:8443".parse().unwrap())
///     .add("MTA-STS.other.test.", None, "[::1]:443".parse().unwrap());
/// assert_eq!(overrides.lookup("mta-sts.example.test", 443), ["127.0.0.1:8443".parse().unwrap()]);
/// assert!(overrides.lookup("mta-sts.example.test", 80).is_empty());
/// assert_eq!(overrides.lookup("mta-sts.other.test", 443).len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectOverrides {
    entries: Vec<(String, Option<u16>, SocketAddr)>,
}

impl ConnectOverrides {
    /// No overrides.
    pub fn new() -> ConnectOverrides {
        ConnectOverrides::default()
    }

    /// Sends connections for `host` (case and a trailing dot ignored) on
    /// `port` (any port if `None`) to `addr`. Add several addresses for one
    /// host to have them tried in order.
    pub fn add(mut self, host: &str, port: Option<u16>, addr: SocketAddr) -> ConnectOverrides {
        self.entries.push((normalize_host(host), port, addr));
        self
    }

    /// The addresses for `host` and `port`, in the order added.
    pub fn lookup(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        let host = normalize_host(host);
        self.entries
            .iter()
            .filter(|(h, p, _)| *h == host && p.is_none_or(|p| p == port))
            .map(|(_, _, addr)| *addr)
            .collect()
    }

    /// Whether no override is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// How the fetcher finds the address of the Policy Host.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Connect {
    /// The system resolver (tokio's `lookup_host`, i.e. `getaddrinfo`).
    #[default]
    System,
    /// Fixed addresses only ([`ConnectOverrides`]); other hosts fail with
    /// [`StsFetchError::NoAddress`](super::StsFetchError::NoAddress).
    Override(ConnectOverrides),
    /// Your own resolver.
    Source(Arc<dyn AddressSource>),
}

impl Connect {
    /// Your async closure as the address source: it gets the host and port
    /// and returns the addresses to try.
    ///
    /// ```
    /// # use starttls_io::mta_sts::Connect;
    /// # use std::net::SocketAddr;
    /// let connect = Connect::from_fn(|host: String, port: u16| async move {
    ///     // e.g. a DNSSEC-validating lookup of `host`
    ///     let _ = host;
    ///     Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    /// });
    /// # let _ = connect;
    /// ```
    pub fn from_fn<F, Fut>(f: F) -> Connect
    where
        F: Fn(String, u16) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<SocketAddr>, AddressError>> + Send + 'static,
    {
        Connect::Source(Arc::new(FnSource(f)))
    }

    /// The addresses to try for `host:port`.
    pub(crate) async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, AddressError> {
        match self {
            Connect::System => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
            Connect::Override(overrides) => Ok(overrides.lookup(host, port)),
            Connect::Source(source) => source.addresses(host, port).await,
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connect::System => f.write_str("System"),
            Connect::Override(o) => f.debug_tuple("Override").field(o).finish(),
            Connect::Source(_) => f.write_str("Source(..)"),
        }
    }
}
