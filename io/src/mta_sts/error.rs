//! Why a policy fetch failed, in more detail than the core's
//! [`FetchError`], which it maps to.

use std::fmt;
use std::time::Duration;

use starttls::policy::mta_sts::{CertificateProblem, DomainError, FetchError, PolicyError};
use starttls::policy::tlsrpt::ResultType;
use starttls::rustls;
use starttls::Escaped;

/// Where a fetch was when its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FetchStage {
    /// Looking up the Policy Host's addresses.
    Resolve,
    /// Opening the TCP connection.
    Connect,
    /// The TLS handshake.
    Tls,
    /// Sending the request and waiting for the response header.
    Response,
    /// Reading the body.
    Body,
}

impl FetchStage {
    pub(super) fn from_u8(v: u8) -> FetchStage {
        match v {
            0 => FetchStage::Resolve,
            1 => FetchStage::Connect,
            2 => FetchStage::Tls,
            3 => FetchStage::Response,
            _ => FetchStage::Body,
        }
    }

    pub(super) fn as_u8(self) -> u8 {
        match self {
            FetchStage::Resolve => 0,
            FetchStage::Connect => 1,
            FetchStage::Tls => 2,
            FetchStage::Response => 3,
            FetchStage::Body => 4,
        }
    }
}

impl fmt::Display for FetchStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FetchStage::Resolve => "the address lookup",
            FetchStage::Connect => "the TCP connection",
            FetchStage::Tls => "the TLS handshake",
            FetchStage::Response => "the HTTP response header",
            FetchStage::Body => "the policy body",
        })
    }
}

/// Why [`StsFetcher::fetch`](super::StsFetcher::fetch) gave no policy. Each
/// case maps to the core's [`FetchError`] ([`StsFetchError::fetch_error`])
/// and so to a TLS-RPT result type ([`StsFetchError::result_type`]), which a
/// [`PolicyCache`](starttls::policy::mta_sts::PolicyCache) takes.
///
/// The `reason` texts come from the resolver, the TLS and HTTP stacks and
/// may quote the server; `Display` escapes them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StsFetchError {
    /// The domain is not a valid Policy Domain name.
    InvalidDomain(DomainError),
    /// The address lookup of the Policy Host failed.
    Resolve {
        /// The Policy Host, `mta-sts.<domain>`.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The Policy Host has no address (or no override for it).
    NoAddress {
        /// The Policy Host.
        host: String,
    },
    /// No TCP connection could be opened to any address.
    Connect {
        /// Each address tried, with its error, in order.
        attempts: Vec<(std::net::SocketAddr, String)>,
    },
    /// The certificate is not PKIX-valid for the Policy Host (RFC 8461
    /// §3.3): TLS-RPT `sts-webpki-invalid`.
    Certificate {
        /// What is wrong with it.
        problem: CertificateProblem,
        /// The TLS library's error.
        reason: String,
    },
    /// The TLS handshake failed for another reason (no common version or
    /// cipher suite, not TLS at all, connection closed).
    Tls {
        /// The TLS library's error.
        reason: String,
    },
    /// The server's HTTP response was malformed or cut short.
    Http {
        /// The HTTP library's error.
        reason: String,
    },
    /// The core rejected the response ([`parse_response`]): not `200`
    /// (redirects included, never followed), not `text/plain`, or not a
    /// valid policy.
    ///
    /// [`parse_response`]: starttls::policy::mta_sts::parse_response
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header, if any (lossy if not ASCII).
        content_type: Option<String>,
        /// The core's verdict.
        error: FetchError,
    },
    /// The body is larger than the limit: reading stopped at the limit, or
    /// before reading when `Content-Length` announced more.
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
        /// The `Content-Length` header, if any.
        content_length: Option<u64>,
        /// Body bytes taken in before stopping (at most the limit plus one
        /// HTTP read buffer).
        received: usize,
    },
    /// The whole fetch took longer than the configured timeout.
    Timeout {
        /// The timeout.
        after: Duration,
        /// What it was waiting for.
        stage: FetchStage,
    },
}

impl StsFetchError {
    /// The core's classification, for
    /// [`PolicyCache::fetch_failed`](starttls::policy::mta_sts::PolicyCache::fetch_failed).
    pub fn fetch_error(&self) -> FetchError {
        match self {
            StsFetchError::Certificate { reason, .. } => FetchError::WebPki {
                reason: reason.clone(),
            },
            StsFetchError::Rejected { error, .. } => error.clone(),
            StsFetchError::TooLarge {
                limit,
                content_length,
                received,
            } => FetchError::Invalid(PolicyError::TooLarge {
                size: content_length
                    .and_then(|l| usize::try_from(l).ok())
                    .unwrap_or(*received),
                limit: *limit,
            }),
            _ => FetchError::Unreachable {
                reason: self.transport_detail(),
            },
        }
    }

    /// A short, unescaped text for [`FetchError::Unreachable`] (whose
    /// `Display` escapes it).
    fn transport_detail(&self) -> String {
        match self {
            StsFetchError::InvalidDomain(e) => format!("invalid domain: {e}"),
            StsFetchError::Resolve { host, reason } => format!("lookup of {host}: {reason}"),
            StsFetchError::NoAddress { host } => format!("{host} has no address"),
            StsFetchError::Connect { attempts } => {
                let mut text = String::from("TCP connect");
                for (addr, reason) in attempts {
                    text.push_str(&format!("; {addr}: {reason}"));
                }
                text
            }
            StsFetchError::Tls { reason } => format!("TLS handshake: {reason}"),
            StsFetchError::Http { reason } => format!("HTTP: {reason}"),
            StsFetchError::Timeout { after, stage } => {
                format!("timed out after {after:?} waiting for {stage}")
            }
            StsFetchError::Certificate { reason, .. } => reason.clone(),
            StsFetchError::Rejected { error, .. } => error.to_string(),
            StsFetchError::TooLarge { limit, .. } => format!("over the {limit}-byte limit"),
        }
    }

    /// The TLS-RPT result type (RFC 8460 §4.3.2.2): `sts-webpki-invalid`,
    /// `sts-policy-invalid` or `sts-policy-fetch-error`. A certificate
    /// problem of the Policy Host is always `sts-webpki-invalid` — the
    /// `certificate-*` types are for MX hosts; the detail is in
    /// [`certificate_problem`](Self::certificate_problem).
    pub fn result_type(&self) -> ResultType {
        self.fetch_error().result_type()
    }

    /// What was wrong with the Policy Host's certificate, if that is why.
    pub fn certificate_problem(&self) -> Option<CertificateProblem> {
        match self {
            StsFetchError::Certificate { problem, .. } => Some(*problem),
            _ => None,
        }
    }

    /// Classifies a failed TLS handshake.
    pub(super) fn from_tls(e: &std::io::Error) -> StsFetchError {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(cert)) => StsFetchError::Certificate {
                problem: certificate_problem(cert),
                reason: cert.to_string(),
            },
            Some(other) => StsFetchError::Tls {
                reason: other.to_string(),
            },
            None => StsFetchError::Tls {
                reason: e.to_string(),
            },
        }
    }
}

fn certificate_problem(e: &rustls::CertificateError) -> CertificateProblem {
    use rustls::CertificateError as C;
    match e {
        C::NotValidForName | C::NotValidForNameContext { .. } => CertificateProblem::HostMismatch,
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            CertificateProblem::Expired
        }
        C::UnknownIssuer | C::BadSignature | C::Revoked | C::UnknownRevocationStatus => {
            CertificateProblem::NotTrusted
        }
        _ => CertificateProblem::Other,
    }
}

impl fmt::Display for StsFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StsFetchError::InvalidDomain(e) => {
                write!(f, "not a valid MTA-STS policy domain: {e}")
            }
            StsFetchError::Resolve { host, reason } => write!(
                f,
                "the address lookup of the MTA-STS policy host {} failed: {}",
                Escaped::new(host),
                Escaped::new(reason)
            ),
            StsFetchError::NoAddress { host } => write!(
                f,
                "the MTA-STS policy host {} has no address",
                Escaped::new(host)
            ),
            StsFetchError::Connect { attempts } => {
                f.write_str("no TCP connection to the MTA-STS policy host")?;
                for (addr, reason) in attempts {
                    write!(f, "; {addr}: {}", Escaped::new(reason))?;
                }
                Ok(())
            }
            StsFetchError::Certificate { problem, reason } => {
                let what = match problem {
                    CertificateProblem::HostMismatch => "is not valid for the policy host",
                    CertificateProblem::Expired => "is expired or not yet valid",
                    CertificateProblem::NotTrusted => "does not chain to a trusted root",
                    _ => "is not valid",
                };
                write!(
                    f,
                    "the MTA-STS policy host's certificate {what} (RFC 8461 §3.3): {}",
                    Escaped::new(reason)
                )
            }
            StsFetchError::Tls { reason } => write!(
                f,
                "the TLS handshake with the MTA-STS policy host failed: {}",
                Escaped::new(reason)
            ),
            StsFetchError::Http { reason } => write!(
                f,
                "the MTA-STS policy host's HTTP response is unusable: {}",
                Escaped::new(reason)
            ),
            StsFetchError::Rejected { error, .. } => fmt::Display::fmt(error, f),
            StsFetchError::TooLarge {
                limit,
                content_length: Some(len),
                ..
            } => write!(
                f,
                "the MTA-STS policy is announced as {len} bytes, over the {limit}-byte limit (RFC 8461 §3.3); not read"
            ),
            StsFetchError::TooLarge { limit, .. } => write!(
                f,
                "the MTA-STS policy is over the {limit}-byte limit (RFC 8461 §3.3); reading stopped there"
            ),
            StsFetchError::Timeout { after, stage } => write!(
                f,
                "the MTA-STS policy fetch timed out after {after:?}, waiting for {stage} (RFC 8461 §3.3)"
            ),
        }
    }
}

impl std::error::Error for StsFetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StsFetchError::InvalidDomain(e) => Some(e),
            StsFetchError::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<StsFetchError> for FetchError {
    fn from(e: StsFetchError) -> FetchError {
        e.fetch_error()
    }
}
