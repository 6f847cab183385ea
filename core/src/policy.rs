//! Client TLS policy (RFC 8314 §5, RFC 3207 §6).

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
}

impl TlsPolicy {
    /// `true` unless the policy tolerates cleartext.
    pub fn requires_tls(self) -> bool {
        !matches!(self, TlsPolicy::Opportunistic)
    }
}
