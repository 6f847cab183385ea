//! A mail destination's TLS policy end to end (features `dns` and
//! `mta-sts`): the MX hosts of a domain, each host's DANE records, the
//! domain's MTA-STS policy and TLS-RPT record, and for every host the plan
//! ([`policy::destination`](starttls::policy::destination)) and the rustls
//! verifier to connect with.
//!
//! The DNS answers come from a DNSSEC-validating [`Resolver`]; the MTA-STS
//! policy from an [`StsPolicies`] cache. The decision itself is the core's:
//! DANE where it applies, MTA-STS where it does not, the local policy
//! otherwise (RFC 7672 §2.2, RFC 8461 §2).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use starttls::TlsPolicy;
//! use starttls_io::destination::{DestinationConfig, Destinations};
//! use starttls_io::dns::{Resolver, ResolverConfig, TrustAnchors, Validation};
//! use starttls_io::mta_sts::{FetcherConfig, StsFetcher, StsPolicies};
//!
//! let roots = Arc::new(starttls::rustls::RootCertStore::empty()); // your WebPKI roots
//! let dns = Resolver::new(ResolverConfig::new(
//!     vec!["127.0.0.1:53".parse()?],
//!     Validation::InProcess(TrustAnchors::iana_root()),
//! ))?;
//! let sts = StsPolicies::new(StsFetcher::new(FetcherConfig::new(Arc::clone(&roots)))?);
//! let destinations = Destinations::new(dns, sts, DestinationConfig::new(roots, TlsPolicy::Opportunistic));
//! let now = 1_800_000_000; // your clock, in seconds
//! let destination = destinations.resolve("example.org", now).await?;
//! for route in destination.routes() {
//!     match route.client_config() {
//!         // Connect to one of route.addresses with this rustls
//!         // configuration and route.tls() as the session's TLS policy,
//!         // sending route.server_name() as SNI.
//!         Some(config) => { let _ = (config, route.tls()); }
//!         None => { /* skip this host: route.plan() says why */ }
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use starttls::policy::dane::{DaneDecision, HostSource, TlsaLookup};
use starttls::policy::destination::{self, HostPlan, PlanVerifier, VerifierError, VerifierInputs};
use starttls::policy::tlsrpt::{TlsRptRecord, TlsRptRecordError};
use starttls::rustls;
use starttls::rustls::client::danger::ServerCertVerifier;
use starttls::rustls::crypto::CryptoProvider;
use starttls::rustls::pki_types::ServerName;
use starttls::rustls::{ClientConfig, RootCertStore};
use starttls::TlsPolicy;

use crate::dns::{Answer, DnsError, MxAnswer, MxKind, Resolver, Security, TlsaAnswer};
use crate::mta_sts::{PolicyLookup, StsPolicies};

/// How [`Destinations`] decides.
#[derive(Clone, Debug)]
pub struct DestinationConfig {
    /// WebPKI roots for hosts authenticated by MTA-STS or by a local
    /// requirement.
    pub roots: Arc<RootCertStore>,
    /// The local policy where neither DANE nor MTA-STS applies (usually
    /// [`TlsPolicy::Opportunistic`] for MTA-to-MTA relay).
    pub local: TlsPolicy,
    /// The SMTP port the TLSA records are looked up for (25).
    pub port: u16,
    /// The crypto provider for the verifiers and configurations (ring by
    /// default).
    pub provider: Arc<CryptoProvider>,
}

impl DestinationConfig {
    /// Port 25 and the ring provider.
    pub fn new(roots: Arc<RootCertStore>, local: TlsPolicy) -> DestinationConfig {
        DestinationConfig {
            roots,
            local,
            port: 25,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Another port for the TLSA lookups (`_PORT._tcp.<host>`).
    pub fn with_port(mut self, port: u16) -> DestinationConfig {
        self.port = port;
        self
    }
}

/// Why a destination has no route at all.
#[derive(Debug)]
#[non_exhaustive]
pub enum DestinationError {
    /// The resolver could not be used (configuration, invalid name).
    Dns(DnsError),
    /// The MX lookup failed (bogus or indeterminate): defer the message;
    /// never read it as "no MX" (RFC 7672 §2.2.1, RFC 5321 §5.1).
    MxLookupFailed {
        /// Bogus or indeterminate.
        security: Security,
        /// What went wrong.
        detail: Option<String>,
    },
    /// A null MX (RFC 7505): the domain accepts no mail; bounce.
    NullMx,
    /// The domain does not exist (NXDOMAIN).
    NoSuchDomain,
    /// The MTA-STS cache refused the domain name.
    InvalidDomain(starttls::policy::mta_sts::DomainError),
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationError::Dns(e) => write!(f, "DNS: {e}"),
            DestinationError::MxLookupFailed { security, detail } => {
                write!(f, "the MX lookup failed ({security})")?;
                if let Some(d) = detail {
                    write!(f, ": {}", starttls::Escaped::new(d))?;
                }
                f.write_str("; defer the message (RFC 7672 §2.2.1)")
            }
            DestinationError::NullMx => {
                f.write_str("the domain publishes a null MX: it accepts no mail (RFC 7505)")
            }
            DestinationError::NoSuchDomain => f.write_str("the domain does not exist (NXDOMAIN)"),
            DestinationError::InvalidDomain(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DestinationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DestinationError::Dns(e) => Some(e),
            DestinationError::InvalidDomain(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DnsError> for DestinationError {
    fn from(e: DnsError) -> Self {
        DestinationError::Dns(e)
    }
}

/// One MX host: where it came from, what DNS said, and how to connect.
#[derive(Clone)]
pub struct Route {
    host: String,
    preference: Option<u16>,
    addresses: Answer<IpAddr>,
    tlsa: Option<TlsaAnswer>,
    plan: HostPlan,
    verifier: Result<PlanVerifier, VerifierError>,
    server_name: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("host", &self.host)
            .field("preference", &self.preference)
            .field("addresses", &self.addresses)
            .field("tlsa", &self.tlsa)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// The MX host (or the domain itself without MX records), lower-case.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The MX preference (`None` for the implicit MX).
    pub fn preference(&self) -> Option<u16> {
        self.preference
    }

    /// The host's A and AAAA records, with their DNSSEC status.
    pub fn addresses(&self) -> &Answer<IpAddr> {
        &self.addresses
    }

    /// The TLSA lookup (`None` when DANE could not apply: the host came
    /// from an insecure MX RRset, so it was not looked up).
    pub fn tlsa(&self) -> Option<&TlsaAnswer> {
        self.tlsa.as_ref()
    }

    /// The plan: connect with which TLS policy and authentication, or not.
    pub fn plan(&self) -> &HostPlan {
        &self.plan
    }

    /// The session's TLS policy, `None` when the host must be skipped.
    pub fn tls(&self) -> Option<TlsPolicy> {
        match &self.plan {
            HostPlan::Connect { tls, .. } => Some(*tls),
            _ => None,
        }
    }

    /// The rustls verifier for this host, or why there is none.
    pub fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, VerifierError> {
        self.verifier
            .as_ref()
            .map(PlanVerifier::verifier)
            .map_err(Clone::clone)
    }

    /// Under MTA-STS `testing`: why the last connection's certificate would
    /// have failed under `enforce` (to report over TLS-RPT, RFC 8461 §5);
    /// the handshake itself went on. `None` otherwise, or when it passed.
    pub fn report_only_failure(&self) -> Option<rustls::Error> {
        self.verifier
            .as_ref()
            .ok()
            .and_then(PlanVerifier::report_only)
            .and_then(|r| r.last_failure())
    }

    /// The name to send as SNI: the TLSA base domain under DANE (RFC 7672
    /// §8.1), the MX host otherwise.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// A rustls client configuration with this host's verifier (no client
    /// certificate), `None` when the host must be skipped.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        let verifier = self.verifier().ok()?;
        let config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Some(Arc::new(config))
    }
}

/// A destination domain resolved: the MX answer, the MTA-STS and TLS-RPT
/// findings, and one [`Route`] per host in preference order.
#[derive(Debug)]
pub struct Destination {
    /// The domain, lower-case.
    pub domain: String,
    /// The MX lookup.
    pub mx: MxAnswer,
    /// The `_mta-sts` TXT lookup.
    pub mta_sts_txt: Answer<Vec<u8>>,
    /// What the MTA-STS cache did and the policy in force.
    pub mta_sts: PolicyLookup,
    /// The `_smtp._tls` TXT lookup.
    pub tlsrpt_txt: Answer<Vec<u8>>,
    routes: Vec<Route>,
}

impl Destination {
    /// The hosts in the order to try them.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The TLS-RPT record (RFC 8460 §3), if one valid record was found.
    pub fn tlsrpt(&self) -> Option<Result<TlsRptRecord, TlsRptRecordError>> {
        if self.tlsrpt_txt.security.is_failure() || self.tlsrpt_txt.records.is_empty() {
            return None;
        }
        Some(TlsRptRecord::select(&self.tlsrpt_txt.records))
    }
}

/// Resolves destinations: DNS with DNSSEC, MTA-STS with its cache, the
/// core's decision.
#[derive(Debug)]
pub struct Destinations {
    dns: Resolver,
    sts: StsPolicies,
    config: DestinationConfig,
}

impl Destinations {
    /// With this resolver, policy cache and configuration.
    pub fn new(dns: Resolver, sts: StsPolicies, config: DestinationConfig) -> Destinations {
        Destinations { dns, sts, config }
    }

    /// The resolver.
    pub fn dns(&self) -> &Resolver {
        &self.dns
    }

    /// The MTA-STS cache.
    pub fn mta_sts(&self) -> &StsPolicies {
        &self.sts
    }

    /// Looks up `domain` and plans every host. `now` is your clock in
    /// seconds (for the MTA-STS cache).
    ///
    /// # Errors
    ///
    /// When the domain has no usable route at all: the MX lookup failed
    /// (defer), a null MX (bounce), NXDOMAIN.
    pub async fn resolve(&self, domain: &str, now: u64) -> Result<Destination, DestinationError> {
        let domain_key = domain.trim_end_matches('.').to_ascii_lowercase();
        let (sts_name, rpt_name) = (
            format!("_mta-sts.{domain_key}"),
            format!("_smtp._tls.{domain_key}"),
        );
        let (mx, txt, rpt) = tokio::join!(
            self.dns.mx(&domain_key),
            self.dns.txt(&sts_name),
            self.dns.txt(&rpt_name),
        );
        let (mx, mta_sts_txt, tlsrpt_txt) = (mx?, txt?, rpt?);
        match mx.kind {
            MxKind::Failed => {
                return Err(DestinationError::MxLookupFailed {
                    security: mx.security,
                    detail: mx.detail.clone(),
                })
            }
            MxKind::NullMx => return Err(DestinationError::NullMx),
            MxKind::NoMx if mx.nxdomain => return Err(DestinationError::NoSuchDomain),
            _ => {}
        }
        let mta_sts = self
            .sts
            .policy(&domain_key, mta_sts_txt.sts_lookup(), now)
            .await
            .map_err(DestinationError::InvalidDomain)?;
        let Some(source) = mx.host_source() else {
            return Err(DestinationError::MxLookupFailed {
                security: mx.security,
                detail: mx.detail.clone(),
            });
        };
        let preferences: Vec<(String, Option<u16>)> = match &mx.kind {
            MxKind::Hosts(hosts) => hosts
                .iter()
                .map(|m| (m.host.clone(), Some(m.preference)))
                .collect(),
            _ => mx.hosts().into_iter().map(|h| (h, None)).collect(),
        };
        let mut routes = Vec::with_capacity(preferences.len());
        for (host, preference) in preferences {
            let route = self
                .route(
                    &domain_key,
                    &host,
                    preference,
                    source,
                    mta_sts.policy.as_ref(),
                )
                .await?;
            routes.push(route);
        }
        Ok(Destination {
            domain: domain_key,
            mx,
            mta_sts_txt,
            mta_sts,
            tlsrpt_txt,
            routes,
        })
    }

    async fn route(
        &self,
        domain: &str,
        host: &str,
        preference: Option<u16>,
        source: HostSource,
        sts: Option<&starttls::policy::mta_sts::Policy>,
    ) -> Result<Route, DestinationError> {
        let (addresses, tlsa) = if source == HostSource::InsecureMx {
            (self.dns.addresses(host).await?, None)
        } else {
            let (a, t) = tokio::join!(
                self.dns.addresses(host),
                self.dns.tlsa(host, self.config.port)
            );
            (a?, Some(t?))
        };
        // RFC 7672 §2.2.2: DANE applies only to a host whose address
        // records are secure; insecure addresses mean no secure TLSA, and a
        // failed address lookup leaves nothing to connect to.
        let lookup = match (&tlsa, addresses.security) {
            (_, Security::Insecure) | (None, _) => TlsaLookup::Insecure,
            (_, Security::Bogus | Security::Indeterminate) => TlsaLookup::Failed,
            (Some(t), Security::Secure) => t.lookup.clone(),
        };
        let dane = DaneDecision::from_lookup(source, lookup);
        let plan = destination::plan_host(host, dane, sts, self.config.local);
        let base = tlsa
            .as_ref()
            .map(|t| t.base_domain.clone())
            .filter(|b| b != host);
        let inputs = VerifierInputs {
            mx_host: host,
            tlsa_base: base.as_deref(),
            next_hop: domain,
            mx_secure: source == HostSource::SecureMx,
            roots: Arc::clone(&self.config.roots),
        };
        let verifier = destination::verifier(&plan, &inputs, &self.config.provider);
        let sni = match &plan {
            HostPlan::Connect {
                authentication: destination::Authentication::Dane(_),
                ..
            } => base.as_deref().unwrap_or(host),
            _ => host,
        };
        Ok(Route {
            host: host.to_owned(),
            preference,
            addresses,
            tlsa,
            plan,
            verifier,
            server_name: ServerName::try_from(sni.to_owned()).ok(),
            provider: Arc::clone(&self.config.provider),
        })
    }
}

/// The DNSSEC-validating resolver as the MTA-STS fetcher's address source:
/// `Connect::Source(Arc::new(resolver))` looks the policy host up with the
/// same resolver as the rest of the destination. A failed lookup (bogus or
/// indeterminate) is an error, never "no address" read as something else.
impl crate::mta_sts::AddressSource for Resolver {
    fn addresses<'a>(&'a self, host: &'a str, port: u16) -> crate::mta_sts::AddressFuture<'a> {
        Box::pin(async move {
            let answer = Resolver::addresses(self, host).await?;
            if answer.security.is_failure() {
                return Err(format!(
                    "the address lookup of {} failed ({})",
                    starttls::Escaped::new(host),
                    answer.security
                )
                .into());
            }
            Ok(answer
                .records
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, port))
                .collect())
        })
    }
}
