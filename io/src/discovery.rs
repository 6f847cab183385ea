//! Mail server discovery from the user's address (feature `dns`): the SRV
//! records of RFC 6186 and RFC 8314 §5.1 for submission, IMAP and POP3, in
//! the order to try them, each with the TLS policy to use and the reference
//! identifiers to check the certificate against (RFC 7817 §3).
//!
//! * Implicit TLS (`_submissions`, `_imaps`, `_pop3s`) and STARTTLS
//!   (`_submission`, `_imap`, `_pop3`) targets are merged by SRV priority
//!   (RFC 6186 §3.4: priority orders across the services of one kind);
//!   among equal priorities implicit TLS comes first (RFC 8314 §5.1 prefers
//!   it). STARTTLS targets get [`TlsPolicy::StartTlsRequired`]: discovery
//!   never yields a cleartext route.
//! * A target is a reference identifier only if its SRV answer validated
//!   with DNSSEC (RFC 7817 §3 (c), RFC 6186 §6); otherwise the certificate
//!   must name the user's domain (DNS-ID) or carry the SRV-ID
//!   (`_imaps.example.org`), and an attacker who forges the SRV answer
//!   cannot choose a host whose certificate passes.
//! * A `.` target means the service is decidedly not offered (RFC 2782);
//!   a failed lookup (bogus or indeterminate) is reported, never read as
//!   "no record".

use starttls::policy::identity::{
    DnsName, MailService, NameError, ReferenceIdentifiers, TargetProvenance,
};
use starttls::TlsPolicy;

use crate::dns::{DnsError, Resolver, Security, SrvAnswer};

/// What the user wants to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Access {
    /// Message submission (`_submissions`, `_submission`).
    Submission,
    /// IMAP (`_imaps`, `_imap`).
    Imap,
    /// POP3 (`_pop3s`, `_pop3`).
    Pop3,
}

impl Access {
    /// The implicit-TLS and STARTTLS services, in that order.
    pub fn services(self) -> [MailService; 2] {
        match self {
            Access::Submission => [MailService::Submissions, MailService::Submission],
            Access::Imap => [MailService::Imaps, MailService::Imap],
            Access::Pop3 => [MailService::Pop3s, MailService::Pop3],
        }
    }
}

/// One discovered server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRoute {
    /// The SRV service it came from.
    pub service: MailService,
    /// The target host, lower-case.
    pub target: String,
    /// The port.
    pub port: u16,
    /// SRV priority (lower first).
    pub priority: u16,
    /// SRV weight.
    pub weight: u16,
    /// [`TlsPolicy::Implicit`] or [`TlsPolicy::StartTlsRequired`].
    pub tls: TlsPolicy,
    /// The DNSSEC status of the SRV answer.
    pub security: Security,
    /// What the certificate must match (RFC 7817 §3).
    pub references: ReferenceIdentifiers,
}

/// The SRV lookups of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLookup {
    /// The service.
    pub service: MailService,
    /// The answer.
    pub answer: SrvAnswer,
}

/// Discovery's result: the routes in order, and each lookup as made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The routes to try, in order.
    pub routes: Vec<ServiceRoute>,
    /// The two lookups (implicit TLS first).
    pub lookups: Vec<ServiceLookup>,
}

impl Discovered {
    /// Lookups that failed (bogus or indeterminate): the result may be
    /// incomplete, and should not be taken as "not offered".
    pub fn failed(&self) -> impl Iterator<Item = &ServiceLookup> {
        self.lookups
            .iter()
            .filter(|l| l.answer.security.is_failure())
    }
}

/// Why discovery could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The resolver refused the name or could not run.
    Dns(DnsError),
    /// The email domain or a target is not a usable host name.
    Name(NameError),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Dns(e) => write!(f, "SRV discovery: {e}"),
            DiscoveryError::Name(e) => write!(f, "SRV discovery: {e}"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// Discovers the servers for `access` from the domain of the user's
/// address (RFC 6186 §3, RFC 8314 §5.1). Targets whose names are not usable
/// host names are left out.
///
/// # Errors
///
/// When the domain is not a usable name, or the resolver cannot run.
pub async fn discover(
    resolver: &Resolver,
    email_domain: &str,
    access: Access,
) -> Result<Discovered, DiscoveryError> {
    let domain = email_domain.trim_end_matches('.').to_ascii_lowercase();
    DnsName::new(&domain).map_err(DiscoveryError::Name)?;
    let [implicit, starttls] = access.services();
    let (a, b) = tokio::join!(
        resolver.srv(implicit.srv_label(), &domain),
        resolver.srv(starttls.srv_label(), &domain)
    );
    let lookups = vec![
        ServiceLookup {
            service: implicit,
            answer: a.map_err(DiscoveryError::Dns)?,
        },
        ServiceLookup {
            service: starttls,
            answer: b.map_err(DiscoveryError::Dns)?,
        },
    ];
    let mut routes = Vec::new();
    for lookup in &lookups {
        let answer = &lookup.answer;
        if answer.security.is_failure() || answer.not_offered {
            continue;
        }
        let provenance = if answer.security == Security::Secure {
            TargetProvenance::DnssecValidated
        } else {
            TargetProvenance::Unverified
        };
        let tls = if lookup.service == implicit {
            TlsPolicy::Implicit
        } else {
            TlsPolicy::StartTlsRequired
        };
        for srv in &answer.targets {
            let Ok(references) =
                ReferenceIdentifiers::discovered(lookup.service, &domain, &srv.target, provenance)
            else {
                continue;
            };
            routes.push(ServiceRoute {
                service: lookup.service,
                target: srv.target.clone(),
                port: srv.port,
                priority: srv.priority,
                weight: srv.weight,
                tls,
                security: answer.security,
                references,
            });
        }
    }
    // Stable: within one priority, implicit TLS (pushed first) stays first.
    routes.sort_by_key(|r| r.priority);
    Ok(Discovered { routes, lookups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_put_implicit_tls_first() {
        assert_eq!(
            Access::Imap.services(),
            [MailService::Imaps, MailService::Imap]
        );
        assert_eq!(
            Access::Submission.services(),
            [MailService::Submissions, MailService::Submission]
        );
        assert_eq!(
            Access::Pop3.services(),
            [MailService::Pop3s, MailService::Pop3]
        );
    }
}
