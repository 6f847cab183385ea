//! TLS policy: what a client requires of TLS ([`TlsPolicy`], RFC 8314 §5),
//! and sans-IO building blocks for the rest of the mail community's advice.
//! The caller does DNS, HTTPS and storage; these modules decide.
//!
//! - [`identity`]: server identity for mail (RFC 7817, RFC 6125): reference
//!   identifiers, DNS-ID/SRV-ID/CN-ID rules, and a rustls verifier.
//! - [`memory`]: TLS memory (RFC 3207 §6: remember that a peer spoke TLS,
//!   report a downgrade) and pinning at setup only.
//! - [`mta_sts`]: MTA-STS (RFC 8461): records, policies, cache, the delivery
//!   decision.
//! - [`tlsrpt`]: TLS-RPT (RFC 8460) failure reports.
//! - [`dane`]: DANE for SMTP (RFC 7672, RFC 6698, RFC 7671): TLSA records and
//!   a rustls verifier.
//! - [`destination`]: one plan per MX host — DANE, then MTA-STS, then the
//!   local policy (RFC 8461 §2).
//!
//! `docs/policy.md` explains each knob with the RFC text it implements.
//!
//! The client connection policy is chosen once per account or destination
//! and given to the session's configuration; what the TLS memory knows can
//! only raise it:
//!
//! ```
//! use starttls::policy::memory::{self, Fingerprint, InMemoryTlsMemory, MemoryPolicy, PeerKey, TlsMemory, TlsRecord};
//! use starttls::TlsPolicy;
//!
//! // Submission and mail access: implicit TLS (RFC 8314 §3), or STARTTLS
//! // required; cleartext only when named.
//! let configured = TlsPolicy::Opportunistic; // e.g. MTA-to-MTA without MTA-STS or DANE
//! assert!(!configured.requires_tls());
//!
//! let mut store = InMemoryTlsMemory::new();
//! let peer = PeerKey::new("mx.example.net", 25);
//! store.remember(&peer, TlsRecord::new(Fingerprint::from_bytes([1; 32]), 1_700_000_000)).unwrap();
//! // The peer spoke TLS before: this session must too (RFC 3207 §6).
//! let policy = memory::required_policy(&store, &peer, configured, &MemoryPolicy::default()).unwrap();
//! assert_eq!(policy, TlsPolicy::StartTlsRequired);
//! assert!(policy.requires_tls());
//! ```

pub mod dane;
pub mod destination;
pub mod identity;
pub mod memory;
pub mod mta_sts;
pub mod tlsrpt;

mod names;
mod result_type;
#[cfg(test)]
mod test_support;
mod txt;
mod verifier;

/// What a client requires of TLS. Chosen once per account or destination;
/// the sessions enforce it and never fall back to another mode by themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// TLS from the first byte (RFC 8314: ports 465, 993, 995). The preferred
    /// choice for submission and mail access.
    Implicit,
    /// Upgrade with STARTTLS/STLS, and fail closed if the server does not
    /// offer it, refuses it, or the handshake fails. Only the negotiation
    /// itself (greeting, capability query, the upgrade command, and a final
    /// `QUIT`/`LOGOUT`) is ever sent in cleartext.
    StartTlsRequired,
    /// Upgrade with STARTTLS/STLS when offered, and go on in cleartext when
    /// it is not offered or is refused with a negative reply. This is how
    /// MTA-to-MTA SMTP works without MTA-STS or DANE; it gives no protection
    /// against an active attacker, and every text it hands out says
    /// [`Trust::Cleartext`](crate::Trust::Cleartext). A handshake failure
    /// after the upgrade began is still fatal.
    Opportunistic,
    /// No TLS, by the user's explicit choice: the session never sends
    /// STARTTLS/STLS, even when the server offers it. Only for a peer the
    /// user configured as cleartext (a local relay, a test server); nothing
    /// ever selects it by itself. Credentials are still refused in cleartext
    /// unless the client configuration's `insecure_*_in_cleartext` flag says
    /// otherwise, and every text it hands out says
    /// [`Trust::Cleartext`](crate::Trust::Cleartext).
    Cleartext,
}

impl TlsPolicy {
    /// `true` unless the policy tolerates cleartext.
    pub fn requires_tls(self) -> bool {
        !matches!(self, TlsPolicy::Opportunistic | TlsPolicy::Cleartext)
    }

    /// `true` unless the policy is [`TlsPolicy::Cleartext`]: whether the
    /// session upgrades when the server offers to.
    pub fn attempts_tls(self) -> bool {
        !matches!(self, TlsPolicy::Cleartext)
    }
}

#[cfg(test)]
mod tests {
    use super::TlsPolicy;

    #[test]
    fn each_mode_says_what_it_requires_and_attempts() {
        use TlsPolicy::*;
        let table = [
            (Implicit, true, true),
            (StartTlsRequired, true, true),
            (Opportunistic, false, true),
            (Cleartext, false, false),
        ];
        for (policy, requires, attempts) in table {
            assert_eq!(policy.requires_tls(), requires, "{policy:?}");
            assert_eq!(policy.attempts_tls(), attempts, "{policy:?}");
        }
    }
}
