//! A destination's TLS policy per MX host: DANE, then MTA-STS, then the
//! local configuration (RFC 7672, RFC 8461 §2, §4, §5).
//!
//! The other modules each answer one question ("what do the TLSA records
//! say?", "what does the MTA-STS policy say?"); an MTA needs one answer per
//! MX host before it connects: must it use TLS, how is the certificate
//! authenticated, or must it not connect at all? [`plan_host`] gives it,
//! sans-IO: the caller (or `starttls-io`'s `dns`/`mta-sts` glue) brings the
//! DNSSEC-validated lookups and the policy in force.
//!
//! The order of precedence:
//!
//! 1. **DANE** (RFC 7672 §2.2) when the host came from a secure MX RRset (or
//!    is the domain itself) and its TLSA lookup validated: usable records
//!    mean TLS with DANE authentication; records that are all unusable
//!    mean TLS without authentication; a failed TLSA lookup means *do not
//!    connect* to this host. An MTA-STS policy can neither override a
//!    failing DANE validation nor relax it (RFC 8461 §2): where DANE
//!    applies, MTA-STS is not consulted.
//! 2. **MTA-STS** (RFC 8461 §4, §5) when DANE does not apply and a policy in
//!    mode `enforce` or `testing` is in force: with `enforce`, an MX host
//!    that matches no `mx` pattern is not a candidate, and the others need TLS
//!    with a WebPKI certificate for the MX host name; with `testing`, TLS is
//!    attempted and checked the same way but a failure is only reported.
//! 3. **The local configuration** ([`TlsPolicy`]) otherwise.
//!
//! ```
//! use starttls::policy::dane::{DaneDecision, HostSource, TlsaLookup};
//! use starttls::policy::destination::{plan_host, Authentication, HostPlan};
//! use starttls::policy::mta_sts::Policy;
//! use starttls::TlsPolicy;
//!
//! let sts = Policy::parse(b"version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n").unwrap();
//! // No DNSSEC for this domain: DANE does not apply, MTA-STS does.
//! let dane = DaneDecision::from_lookup(HostSource::InsecureMx, TlsaLookup::Insecure);
//! let plan = plan_host("mx1.example.com", dane.clone(), Some(&sts), TlsPolicy::Opportunistic);
//! assert!(plan.requires_tls());
//! assert!(matches!(plan, HostPlan::Connect { authentication: Authentication::WebPki { .. }, .. }));
//! // A host the enforce policy does not list is not a candidate (RFC 8461 §4.1).
//! let other = plan_host("mx9.example.com", dane, Some(&sts), TlsPolicy::Opportunistic);
//! assert!(matches!(other, HostPlan::DoNotConnect { .. }));
//! ```

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;

use super::dane::{DaneDecision, DaneVerifier, ReferenceIds, UnusableRecord, UsableTlsa};
use super::identity::{MailServerVerifier, ReferenceIdentifiers};
use super::mta_sts::{Mode, Policy};
use super::verifier::verify_signatures_with_algorithms;
use super::TlsPolicy;

/// Which rule set decided a host's plan (for logs and reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// DANE (RFC 7672).
    Dane,
    /// MTA-STS in mode `enforce` (RFC 8461).
    MtaStsEnforce,
    /// MTA-STS in mode `testing` (RFC 8461 §5: failures reported, delivery
    /// not blocked).
    MtaStsTesting,
    /// The local configuration.
    Local,
}

impl Source {
    /// A short lower-case name (`dane`, `mta-sts enforce`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dane => "dane",
            Source::MtaStsEnforce => "mta-sts enforce",
            Source::MtaStsTesting => "mta-sts testing",
            Source::Local => "local",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the server certificate is authenticated on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authentication {
    /// With the TLSA records (a
    /// [`DaneVerifier`]); the WebPKI plays no
    /// part, and a PKIX failure does not matter (RFC 7672 §3).
    Dane(UsableTlsa),
    /// With the WebPKI, for the MX host name (RFC 8461 §4.2).
    WebPki {
        /// `true` under MTA-STS `testing`: a failure is reported, and
        /// delivery goes on as the local configuration allows.
        report_only: bool,
    },
    /// Not authenticated: TLS only protects against passive attackers
    /// (opportunistic TLS, RFC 7435; or DANE records that are all unusable,
    /// RFC 7672 §2.2).
    None,
}

/// Why a host must not be connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The TLSA lookup failed or did not validate (bogus, SERVFAIL,
    /// timeout): the answer could be an attacker's, so the host is skipped
    /// (RFC 7672 §2.1, §2.2); try the next MX host or defer.
    TlsaLookupFailed,
    /// An MTA-STS policy in mode `enforce` lists no `mx` pattern matching
    /// this host (RFC 8461 §4.1).
    NotInMtaStsPolicy {
        /// The host, lower-case, without a trailing dot.
        mx_host: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::TlsaLookupFailed => f.write_str(
                "the TLSA lookup failed or did not validate: the host is skipped (RFC 7672 §2.2)",
            ),
            SkipReason::NotInMtaStsPolicy { mx_host } => write!(
                f,
                "{} matches no mx pattern of the domain's MTA-STS policy in mode enforce (RFC 8461 §4.1)",
                crate::Escaped::new(mx_host)
            ),
        }
    }
}

/// What to do with one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostPlan {
    /// Connect.
    Connect {
        /// The session's TLS policy: [`TlsPolicy::StartTlsRequired`] when
        /// TLS is mandatory, otherwise the local one.
        tls: TlsPolicy,
        /// How to authenticate the server once TLS is up.
        authentication: Authentication,
        /// The rule set that decided.
        source: Source,
        /// DANE records that were published but are unusable (only for
        /// [`Authentication::None`] from DANE), for reports.
        unusable: Vec<UnusableRecord>,
    },
    /// Do not connect to this host; try the next or defer the message.
    DoNotConnect {
        /// Why.
        reason: SkipReason,
        /// The rule set that decided.
        source: Source,
    },
}

impl HostPlan {
    /// `true` when a connection must use TLS (or not happen at all).
    pub fn requires_tls(&self) -> bool {
        match self {
            HostPlan::Connect { tls, .. } => tls.requires_tls(),
            HostPlan::DoNotConnect { .. } => true,
        }
    }

    /// The rule set that decided.
    pub fn source(&self) -> Source {
        match self {
            HostPlan::Connect { source, .. } | HostPlan::DoNotConnect { source, .. } => *source,
        }
    }
}

/// Decides one MX host's plan from its DANE decision (from
/// [`DaneDecision::from_lookup`], which already applies the MX RRset's
/// DNSSEC status, RFC 7672 §2.2.1), the MTA-STS policy in force for the
/// destination domain (from
/// [`PolicyCache::policy`](super::mta_sts::PolicyCache::policy), `None` if
/// none) and the local TLS policy. See the module documentation for the
/// order.
///
/// The local policy can only raise what DANE or MTA-STS ask: a local
/// [`TlsPolicy::StartTlsRequired`] stays required under MTA-STS `testing`.
/// A local [`TlsPolicy::Cleartext`] or [`TlsPolicy::Implicit`] is kept where
/// DANE and MTA-STS say nothing, and replaced by `StartTlsRequired` where
/// they require TLS (SMTP relay uses STARTTLS on port 25, RFC 7672 §2).
pub fn plan_host(
    mx_host: &str,
    dane: DaneDecision,
    sts: Option<&Policy>,
    local: TlsPolicy,
) -> HostPlan {
    let required = TlsPolicy::StartTlsRequired;
    let raised = |local: TlsPolicy| {
        if local.requires_tls() {
            local
        } else {
            required
        }
    };
    match dane {
        DaneDecision::Authenticate(tlsa) => {
            return HostPlan::Connect {
                tls: raised(local),
                authentication: Authentication::Dane(tlsa),
                source: Source::Dane,
                unusable: Vec::new(),
            }
        }
        DaneDecision::TlsWithoutAuthentication { unusable } => {
            return HostPlan::Connect {
                tls: raised(local),
                authentication: Authentication::None,
                source: Source::Dane,
                unusable,
            }
        }
        DaneDecision::DoNotConnect => {
            return HostPlan::DoNotConnect {
                reason: SkipReason::TlsaLookupFailed,
                source: Source::Dane,
            }
        }
        DaneDecision::NotApplicable => {}
    }
    let host = mx_host.trim_end_matches('.').to_ascii_lowercase();
    match sts.map(|p| (p.mode(), p.matches_mx(&host))) {
        Some((Mode::Enforce, true)) => HostPlan::Connect {
            tls: raised(local),
            authentication: Authentication::WebPki { report_only: false },
            source: Source::MtaStsEnforce,
            unusable: Vec::new(),
        },
        Some((Mode::Enforce, false)) => HostPlan::DoNotConnect {
            reason: SkipReason::NotInMtaStsPolicy { mx_host: host },
            source: Source::MtaStsEnforce,
        },
        Some((Mode::Testing, _)) => HostPlan::Connect {
            tls: if local == TlsPolicy::Cleartext {
                TlsPolicy::Opportunistic
            } else {
                local
            },
            authentication: Authentication::WebPki { report_only: true },
            source: Source::MtaStsTesting,
            unusable: Vec::new(),
        },
        _ => HostPlan::Connect {
            tls: local,
            authentication: if local.requires_tls() {
                Authentication::WebPki { report_only: false }
            } else {
                Authentication::None
            },
            source: Source::Local,
            unusable: Vec::new(),
        },
    }
}

/// What [`verifier`] needs besides the plan.
#[derive(Clone, Debug)]
pub struct VerifierInputs<'a> {
    /// The MX host name as the MX record gave it (the name an MTA-STS
    /// certificate must carry, RFC 8461 §4.2).
    pub mx_host: &'a str,
    /// The TLSA base domain (the MX host, or its DNSSEC-secure CNAME
    /// expansion; RFC 7672 §2.2.3), when it differs from `mx_host`.
    pub tlsa_base: Option<&'a str>,
    /// The next-hop (destination) domain.
    pub next_hop: &'a str,
    /// Whether the MX RRset validated as secure: only then is the next-hop
    /// domain a DANE-TA reference identifier (RFC 7672 §3.2.2).
    pub mx_secure: bool,
    /// The WebPKI roots for MTA-STS and local verification.
    pub roots: Arc<RootCertStore>,
}

/// Why no verifier could be built for a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifierError {
    /// The plan says not to connect.
    DoNotConnect(SkipReason),
    /// A name is not a usable DNS host name.
    Name {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifierError::DoNotConnect(reason) => write!(f, "no connection: {reason}"),
            VerifierError::Name { name, reason } => write!(
                f,
                "{} cannot be checked against a certificate: {reason}",
                crate::Escaped::new(name)
            ),
        }
    }
}

impl std::error::Error for VerifierError {}

/// The rustls verifier for a host's plan: a
/// [`DaneVerifier`] for DANE (reference
/// identifiers per RFC 7672 §3.2.2), a
/// [`MailServerVerifier`] for the MX
/// host name under MTA-STS or a local requirement (RFC 8461 §4.2), and
/// [`NoAuthentication`] where TLS is opportunistic or DANE's records are all
/// unusable. Install it with
/// `ClientConfig::builder().dangerous().with_custom_certificate_verifier(..)`;
/// send the TLSA base domain (or the MX host) as SNI.
///
/// Under MTA-STS `testing` the WebPKI check is [`ReportOnly`]: a failure does
/// not stop the handshake, and [`PlanVerifier::report_only`] tells what to
/// report (RFC 8461 §5).
pub fn verifier(
    plan: &HostPlan,
    inputs: &VerifierInputs<'_>,
    provider: &CryptoProvider,
) -> Result<PlanVerifier, VerifierError> {
    let name_error = |name: &str, reason: String| VerifierError::Name {
        name: name.to_owned(),
        reason,
    };
    let authentication = match plan {
        HostPlan::DoNotConnect { reason, .. } => {
            return Err(VerifierError::DoNotConnect(reason.clone()))
        }
        HostPlan::Connect { authentication, .. } => authentication,
    };
    Ok(match authentication {
        Authentication::Dane(tlsa) => {
            let mut names = Vec::with_capacity(3);
            if let Some(base) = inputs.tlsa_base {
                names.push(base);
            }
            names.push(inputs.mx_host);
            if inputs.mx_secure {
                names.push(inputs.next_hop);
            }
            let ids = ReferenceIds::new(names.iter().map(|n| n.trim_end_matches('.')))
                .map_err(|e| name_error(inputs.mx_host, e.to_string()))?;
            PlanVerifier::plain(Arc::new(DaneVerifier::new(tlsa.clone(), ids, provider)))
        }
        Authentication::WebPki { report_only } => {
            let host = inputs.mx_host.trim_end_matches('.');
            let references = ReferenceIdentifiers::configured_host(host)
                .map_err(|e| name_error(host, e.to_string()))?;
            let webpki = MailServerVerifier::new(Arc::clone(&inputs.roots), references, provider);
            if *report_only {
                let report = Arc::new(ReportOnly::new(webpki));
                PlanVerifier {
                    verifier: Arc::clone(&report) as Arc<dyn ServerCertVerifier>,
                    report_only: Some(report),
                }
            } else {
                PlanVerifier::plain(Arc::new(webpki))
            }
        }
        Authentication::None => PlanVerifier::plain(Arc::new(NoAuthentication::new(provider))),
    })
}

/// The verifier [`verifier`] chose for a plan, and under MTA-STS `testing`
/// the handle that tells what failed.
#[derive(Clone, Debug)]
pub struct PlanVerifier {
    verifier: Arc<dyn ServerCertVerifier>,
    report_only: Option<Arc<ReportOnly>>,
}

impl PlanVerifier {
    fn plain(verifier: Arc<dyn ServerCertVerifier>) -> PlanVerifier {
        PlanVerifier {
            verifier,
            report_only: None,
        }
    }

    /// The rustls verifier to install.
    pub fn verifier(&self) -> Arc<dyn ServerCertVerifier> {
        Arc::clone(&self.verifier)
    }

    /// Under MTA-STS `testing`: the report-only verifier, whose
    /// [`ReportOnly::last_failure`] says what a TLS-RPT report should say
    /// after a handshake. `None` for every other plan.
    pub fn report_only(&self) -> Option<&ReportOnly> {
        self.report_only.as_deref()
    }
}

/// MTA-STS `testing` (RFC 8461 §5): the certificate is checked as under
/// `enforce` (WebPKI, the MX host name), but a failure does not stop the
/// handshake: it is kept for the caller to report (TLS-RPT), and delivery
/// goes on as the local policy allows. Handshake signatures are still
/// verified. It remembers the last handshake's outcome: use one
/// configuration per connection, or read [`ReportOnly::last_failure`]
/// before the next handshake.
#[derive(Debug)]
pub struct ReportOnly {
    inner: MailServerVerifier,
    last: std::sync::Mutex<Option<rustls::Error>>,
}

impl ReportOnly {
    /// Reports what `inner` refuses, instead of refusing.
    pub fn new(inner: MailServerVerifier) -> ReportOnly {
        ReportOnly {
            inner,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Why the last certificate would have been refused under `enforce`
    /// (`None`: it passed, or no handshake yet). See
    /// [`IdentityError::from_rustls`](super::identity::IdentityError::from_rustls)
    /// for the name failures.
    pub fn last_failure(&self) -> Option<rustls::Error> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

impl ServerCertVerifier for ReportOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let outcome = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Ok(mut last) = self.last.lock() {
            *last = outcome.err();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A verifier that accepts any certificate but still checks the handshake
/// signatures: opportunistic TLS (RFC 7435), which protects against
/// passive attackers only. It is what SMTP relay without DANE or MTA-STS
/// does (RFC 3207 §4.1 allows a client to go on with an unverified
/// certificate), and what DANE asks when the published records are all
/// unusable (RFC 7672 §2.2). Never use it where a plan asks for
/// authentication: [`verifier`] chooses.
#[derive(Debug)]
pub struct NoAuthentication {
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoAuthentication {
    /// With the signature algorithms of `provider`.
    pub fn new(provider: &CryptoProvider) -> NoAuthentication {
        NoAuthentication {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoAuthentication {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    verify_signatures_with_algorithms!();
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::policy::dane::{HostSource, TlsaLookup, TlsaRecord};
    use crate::policy::test_support::{self, client_config, handshake, Ca, Issued};

    fn record(usage: u8) -> TlsaRecord {
        TlsaRecord::new(usage, 1, 1, vec![0xab; 32])
    }

    fn policy(mode: &str) -> Policy {
        Policy::parse(
            format!("version: STSv1\nmode: {mode}\nmx: mx1.example.com\nmx: *.mx.example.net\nmax_age: 86400\n")
                .as_bytes(),
        )
        .expect("valid policy")
    }

    fn dane(source: HostSource, lookup: TlsaLookup) -> DaneDecision {
        DaneDecision::from_lookup(source, lookup)
    }

    #[test]
    fn dane_wins_over_every_mta_sts_mode_and_the_local_policy() {
        for sts in [
            None,
            Some(policy("enforce")),
            Some(policy("testing")),
            Some(policy("none")),
        ] {
            for local in [
                TlsPolicy::Opportunistic,
                TlsPolicy::Cleartext,
                TlsPolicy::StartTlsRequired,
            ] {
                // Even a host the STS policy does not list: DANE decides.
                for host in ["mx1.example.com", "elsewhere.example.org"] {
                    let plan = plan_host(
                        host,
                        dane(HostSource::SecureMx, TlsaLookup::Secure(vec![record(3)])),
                        sts.as_ref(),
                        local,
                    );
                    let HostPlan::Connect {
                        tls,
                        authentication,
                        source,
                        ..
                    } = plan
                    else {
                        panic!("DANE with usable records connects: {plan:?}");
                    };
                    assert_eq!(tls, TlsPolicy::StartTlsRequired, "{local:?}");
                    assert!(matches!(authentication, Authentication::Dane(_)));
                    assert_eq!(source, Source::Dane);
                }
            }
        }
    }

    #[test]
    fn a_failed_tlsa_lookup_is_never_rescued_by_mta_sts() {
        for sts in [None, Some(policy("enforce")), Some(policy("testing"))] {
            let plan = plan_host(
                "mx1.example.com",
                dane(HostSource::SecureMx, TlsaLookup::Failed),
                sts.as_ref(),
                TlsPolicy::Opportunistic,
            );
            assert_eq!(
                plan,
                HostPlan::DoNotConnect {
                    reason: SkipReason::TlsaLookupFailed,
                    source: Source::Dane
                }
            );
            assert!(plan.requires_tls());
        }
    }

    #[test]
    fn unusable_records_mean_tls_without_authentication() {
        let plan = plan_host(
            "mx1.example.com",
            dane(
                HostSource::SecureMx,
                TlsaLookup::Secure(vec![TlsaRecord::new(4, 1, 1, vec![1; 32])]),
            ),
            Some(&policy("enforce")),
            TlsPolicy::Opportunistic,
        );
        let HostPlan::Connect {
            tls,
            authentication,
            source,
            unusable,
        } = plan
        else {
            panic!("connects");
        };
        assert_eq!(
            (tls, authentication, source),
            (
                TlsPolicy::StartTlsRequired,
                Authentication::None,
                Source::Dane
            )
        );
        assert_eq!(unusable.len(), 1);
    }

    #[test]
    fn insecure_mx_hands_over_to_mta_sts() {
        // Usable TLSA records, but the MX RRset was insecure: DANE does not
        // apply (RFC 7672 §2.2.1), so MTA-STS decides.
        let d = || dane(HostSource::InsecureMx, TlsaLookup::Secure(vec![record(3)]));
        let enforce = policy("enforce");
        let plan = plan_host(
            "MX1.example.com.",
            d(),
            Some(&enforce),
            TlsPolicy::Opportunistic,
        );
        assert_eq!(plan.source(), Source::MtaStsEnforce);
        assert!(plan.requires_tls());
        assert!(matches!(
            plan,
            HostPlan::Connect {
                authentication: Authentication::WebPki { report_only: false },
                ..
            }
        ));
        let plan = plan_host(
            "a.mx.example.net",
            d(),
            Some(&enforce),
            TlsPolicy::Opportunistic,
        );
        assert_eq!(plan.source(), Source::MtaStsEnforce);
        let plan = plan_host(
            "b.a.mx.example.net",
            d(),
            Some(&enforce),
            TlsPolicy::Opportunistic,
        );
        assert_eq!(
            plan,
            HostPlan::DoNotConnect {
                reason: SkipReason::NotInMtaStsPolicy {
                    mx_host: "b.a.mx.example.net".into()
                },
                source: Source::MtaStsEnforce
            }
        );
    }

    #[test]
    fn testing_reports_but_never_requires() {
        let testing = policy("testing");
        for host in ["mx1.example.com", "unlisted.example.org"] {
            let plan = plan_host(
                host,
                dane(HostSource::SecureMx, TlsaLookup::Secure(vec![])),
                Some(&testing),
                TlsPolicy::Opportunistic,
            );
            assert_eq!(
                plan,
                HostPlan::Connect {
                    tls: TlsPolicy::Opportunistic,
                    authentication: Authentication::WebPki { report_only: true },
                    source: Source::MtaStsTesting,
                    unusable: vec![],
                }
            );
            assert!(!plan.requires_tls());
        }
        // A local requirement stays.
        let plan = plan_host(
            "mx1.example.com",
            DaneDecision::NotApplicable,
            Some(&testing),
            TlsPolicy::StartTlsRequired,
        );
        assert!(plan.requires_tls());
    }

    #[test]
    fn no_dane_no_sts_is_the_local_policy() {
        for sts in [None, Some(policy("none"))] {
            let plan = plan_host(
                "mx1.example.com",
                DaneDecision::NotApplicable,
                sts.as_ref(),
                TlsPolicy::Opportunistic,
            );
            assert_eq!(
                plan,
                HostPlan::Connect {
                    tls: TlsPolicy::Opportunistic,
                    authentication: Authentication::None,
                    source: Source::Local,
                    unusable: vec![],
                }
            );
            let plan = plan_host(
                "mx1.example.com",
                DaneDecision::NotApplicable,
                sts.as_ref(),
                TlsPolicy::StartTlsRequired,
            );
            assert!(matches!(
                plan,
                HostPlan::Connect {
                    tls: TlsPolicy::StartTlsRequired,
                    authentication: Authentication::WebPki { report_only: false },
                    source: Source::Local,
                    ..
                }
            ));
        }
    }

    #[test]
    fn skip_reason_escapes_the_host() {
        let reason = SkipReason::NotInMtaStsPolicy {
            mx_host: "a\u{1b}[31m.example".into(),
        };
        let text = reason.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("RFC 8461 §4.1"));
    }

    fn inputs<'a>(mx: &'a str, roots: Arc<RootCertStore>) -> VerifierInputs<'a> {
        VerifierInputs {
            mx_host: mx,
            tlsa_base: None,
            next_hop: "example.com",
            mx_secure: true,
            roots,
        }
    }

    fn connect(
        plan: &HostPlan,
        server: &Issued,
        roots: Arc<RootCertStore>,
    ) -> Result<(), rustls::Error> {
        let provider = test_support::provider();
        let v = verifier(plan, &inputs("mx1.example.com", roots), &provider)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let versions = [&rustls::version::TLS13];
        handshake(
            client_config(v.verifier()),
            server.server_config(&versions),
            "mx1.example.com",
        )
        .map(|_| ())
    }

    #[test]
    fn each_plan_gets_the_verifier_it_names_over_a_real_handshake() {
        let ca = Ca::new("Test CA");
        let good = test_support::leaf(&ca, &["mx1.example.com"], "mx1");
        let wrong_name = test_support::leaf(&ca, &["other.example.org"], "other");
        let self_signed = Issued::self_signed(&["mx1.example.com"]);
        let roots = ca.roots();
        let enforce = policy("enforce");
        let sts_plan = plan_host(
            "mx1.example.com",
            DaneDecision::NotApplicable,
            Some(&enforce),
            TlsPolicy::Opportunistic,
        );
        assert!(connect(&sts_plan, &good, Arc::clone(&roots)).is_ok());
        assert!(
            connect(&sts_plan, &wrong_name, Arc::clone(&roots)).is_err(),
            "MTA-STS: the MX name must match"
        );
        assert!(
            connect(&sts_plan, &self_signed, Arc::clone(&roots)).is_err(),
            "MTA-STS: WebPKI"
        );

        // DANE-EE(3) SPKI SHA-256 of the self-signed certificate: no WebPKI
        // needed, and a PKIX failure does not matter.
        let digest = test_support::sha256(&test_support::spki(self_signed.der()));
        let dane_plan = plan_host(
            "mx1.example.com",
            DaneDecision::from_lookup(
                HostSource::SecureMx,
                TlsaLookup::Secure(vec![TlsaRecord::new(3, 1, 1, digest)]),
            ),
            Some(&enforce),
            TlsPolicy::Opportunistic,
        );
        assert!(connect(&dane_plan, &self_signed, Arc::clone(&roots)).is_ok());
        assert!(
            connect(&dane_plan, &good, Arc::clone(&roots)).is_err(),
            "DANE: a WebPKI-valid but unlisted key fails"
        );

        // Opportunistic: anything goes (signatures still checked by rustls).
        let local = plan_host(
            "mx1.example.com",
            DaneDecision::NotApplicable,
            None,
            TlsPolicy::Opportunistic,
        );
        assert!(connect(&local, &self_signed, Arc::clone(&roots)).is_ok());
        assert!(connect(&local, &wrong_name, Arc::clone(&roots)).is_ok());

        // Skipped hosts get no verifier at all.
        let skip = plan_host(
            "mx1.example.com",
            DaneDecision::DoNotConnect,
            None,
            TlsPolicy::Opportunistic,
        );
        let provider = test_support::provider();
        assert!(matches!(
            verifier(&skip, &inputs("mx1.example.com", roots), &provider),
            Err(VerifierError::DoNotConnect(SkipReason::TlsaLookupFailed))
        ));
    }

    #[test]
    fn testing_reports_a_bad_certificate_and_lets_the_handshake_finish() {
        let ca = Ca::new("Test CA");
        let good = test_support::leaf(&ca, &["mx1.example.com"], "mx1");
        let wrong_name = test_support::leaf(&ca, &["other.example.org"], "other");
        let roots = ca.roots();
        let testing = policy("testing");
        let plan = plan_host(
            "mx1.example.com",
            DaneDecision::NotApplicable,
            Some(&testing),
            TlsPolicy::Opportunistic,
        );
        let provider = test_support::provider();
        let v = verifier(
            &plan,
            &inputs("mx1.example.com", Arc::clone(&roots)),
            &provider,
        )
        .unwrap();
        let report = v.report_only().expect("testing is report-only");
        let versions = [&rustls::version::TLS13];
        // The wrong name: the handshake completes (RFC 8461 §5), the failure is kept.
        assert!(handshake(
            client_config(v.verifier()),
            wrong_name.server_config(&versions),
            "mx1.example.com"
        )
        .is_ok());
        let failure = report.last_failure().expect("a failure to report");
        assert!(
            crate::policy::identity::IdentityError::from_rustls(&failure).is_some(),
            "{failure:?}"
        );
        // The right name: nothing to report.
        assert!(handshake(
            client_config(v.verifier()),
            good.server_config(&versions),
            "mx1.example.com"
        )
        .is_ok());
        assert!(report.last_failure().is_none());
        // enforce has no report-only handle.
        let enforce = policy("enforce");
        let plan = plan_host(
            "mx1.example.com",
            DaneDecision::NotApplicable,
            Some(&enforce),
            TlsPolicy::Opportunistic,
        );
        assert!(
            verifier(&plan, &inputs("mx1.example.com", roots), &provider)
                .unwrap()
                .report_only()
                .is_none()
        );
    }
}
