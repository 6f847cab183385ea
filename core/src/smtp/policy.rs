//! SMTP TLS policy beyond the upgrade itself: `REQUIRETLS` (RFC 8689) in
//! both roles, and graduated cleartext degradation for servers. Like the
//! rest of the crate these are sans-IO values: no clock, no randomness, no
//! storage of their own.
//!
//! # `REQUIRETLS` (RFC 8689)
//!
//! A sender can ask that a message travel only over TLS, on every hop, by
//! adding the `REQUIRETLS` parameter to `MAIL FROM`.
//!
//! **Server.** Set [`Extensions::requiretls`](super::Extensions::requiretls).
//! The session then
//!
//! * lists `REQUIRETLS` in its `EHLO`/`LHLO` reply only over TLS (a client
//!   looks for it in the reply to the `EHLO` after the upgrade, RFC 8689
//!   §4.2.1 step 5, and may only use it in a TLS session, §2);
//! * refuses `MAIL FROM:<...> REQUIRETLS` in cleartext with
//!   `530 5.7.10 REQUIRETLS needs TLS: issue STARTTLS first`, and where the
//!   extension was not advertised (not configured, or the client said `HELO`)
//!   with `555 5.5.4` (RFC 5321 §4.1.1.11: a parameter not offered);
//! * otherwise reports [`ServerEvent::TransactionRequiresTls`](super::ServerEvent::TransactionRequiresTls)
//!   just before the `MAIL` command, and
//!   [`ServerSession::transaction_requires_tls`](super::ServerSession::transaction_requires_tls)
//!   says `true` until the transaction ends.
//!
//! What the caller must do with such a message (the session cannot):
//! tag it as requiring TLS when storing it (RFC 8689 §4.1); relay it only
//! with `REQUIRETLS` (below); and if it bounces, send the non-delivery report
//! with `REQUIRETLS` too and only the headers of the original, as if
//! `RET=HDRS` had been given, even when `RET=FULL` was (§5).
//!
//! **Client (relay or submission).** Send the `MAIL` of such a message with
//! [`ClientSession::send_mail_require_tls`](super::ClientSession::send_mail_require_tls)
//! (or `send` a `MAIL` that carries [`Parameter::RequireTls`]). The session
//! adds the parameter and refuses, with
//! [`UsageError::RequireTls`](crate::UsageError::RequireTls), to send it over
//! a session without TLS ([`RequireTlsRefusal::NoTls`]) or to a server whose
//! `EHLO` reply over TLS lacks `REQUIRETLS`
//! ([`RequireTlsRefusal::NotAdvertised`]). Nothing is sent then and the
//! session stays usable. RFC 8689 §4.2.1 says what follows: the client may
//! still send other messages that do not require TLS on this session, then
//! `QUIT`s, tries the next MX host, and when there is none, never sends the
//! message in cleartext but returns a non-delivery report to the
//! reverse-path with the status code [`RequireTlsRefusal::status`] gives
//! (`5.7.30`, `5.7.10`). Choose [`TlsPolicy::StartTlsRequired`](crate::TlsPolicy::StartTlsRequired)
//! (or implicit TLS) for such a delivery, so that the session fails closed
//! even before `MAIL`. Step 2 (MX names validated by DNSSEC or MTA-STS) is
//! the caller's, with [`crate::policy::mta_sts`] and [`crate::policy::dane`];
//! step 4 (a verified certificate) is what the rustls configuration does.
//!
//! A bounce (null reverse-path) of a `REQUIRETLS` message is the exception of
//! §5: it SHOULD NOT be discarded only because the next hop lacks
//! `REQUIRETLS`; send it with plain `send`, without the parameter.
//!
//! # The `TLS-Required: No` header field (RFC 8689 §3, §4.2.2)
//!
//! The opposite request: a message whose header has `TLS-Required: No` asks
//! relays to ignore the recipient's TLS policy (MTA-STS, DANE), so that it
//! is delivered even where that policy would stop it, for example to report
//! a broken certificate. The library never parses message headers, so the
//! caller must:
//!
//! * on receipt, when the `MAIL` had no `REQUIRETLS`, look for the field in
//!   the header and keep its value with the message (§4.1); when the `MAIL`
//!   had `REQUIRETLS`, ignore the field (it may still be relayed as is);
//! * on relay of a message with `TLS-Required: No`, still attempt TLS (use
//!   [`TlsPolicy::Opportunistic`](crate::TlsPolicy::Opportunistic), which
//!   upgrades whenever `STARTTLS` is offered) but may skip the MTA-STS and
//!   DANE checks that would otherwise refuse the delivery (§4.2.2). A server
//!   that itself requires TLS still refuses it, and the message bounces.
//!
//! # Graduated cleartext degradation
//!
//! A listener that still accepts mail in cleartext can push senders towards
//! `STARTTLS` before requiring it: with
//! [`ServerConfig::degrade_cleartext`](super::ServerConfig::degrade_cleartext)
//! set, each `MAIL` received in cleartext (and otherwise fit for the
//! application) is first shown to a [`CleartextDegradation`] hook, which may
//! answer it with a temporary [`Deferral`] (`450 4.7.0 ...` by default, the
//! text the operator sets). A sender retries later, and a sender that can
//! do TLS will usually do it by then. The session sends the reply itself and
//! reports [`ServerEvent::CleartextDeferred`](super::ServerEvent::CleartextDeferred);
//! the command never reaches the application. Over TLS the hook is never
//! asked.
//!
//! The hook decides at the rate the operator chooses: [`DeferSchedule`] is a
//! deterministic built-in ("defer 1 cleartext `MAIL` in 4, evenly spread"),
//! and an implementation of the trait can use the operator's own random
//! numbers, time of day or sender list. The library owns no clock and no
//! random number generator, so tests stay deterministic.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ConfigError;
pub use crate::error::RequireTlsRefusal;

use super::command::{Parameter, Parameters, ReversePath};
use super::reply::{EnhancedCode, Reply};

impl RequireTlsRefusal {
    /// The enhanced status code RFC 8689 §4.2.1 recommends for the
    /// non-delivery report when no MX host is left: `5.7.10` (unable to
    /// establish a TLS-protected session) for [`NoTls`](Self::NoTls),
    /// `5.7.30` (REQUIRETLS support required) for
    /// [`NotAdvertised`](Self::NotAdvertised).
    pub fn status(self) -> EnhancedCode {
        match self {
            RequireTlsRefusal::NoTls => EnhancedCode::new(5, 7, 10),
            RequireTlsRefusal::NotAdvertised => EnhancedCode::new(5, 7, 30),
        }
    }
}

/// `true` if the parameters carry `REQUIRETLS`.
pub(crate) fn has_require_tls(params: &Parameters) -> bool {
    params.get("REQUIRETLS") == Some(Parameter::RequireTls)
}

/// A temporary reply a [`CleartextDegradation`] hook answers a cleartext
/// `MAIL` with: a `4yz` code other than `421` (which would close the
/// connection), an optional `4.x.x` enhanced status code, one line of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    reply: Reply,
}

impl Deferral {
    /// A deferral with the operator's code and text. Fails with
    /// [`ConfigError::DeferralNotTransient`] unless `code` is `4yz` but not
    /// `421` (RFC 5321 §4.2.1: transient negative completion) and
    /// `enhanced`, if given, has class 4 (RFC 3463). Line breaks in `text`
    /// become spaces.
    pub fn new(
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: &str,
    ) -> Result<Deferral, ConfigError> {
        let valid = super::ReplyCode::new(code).is_some()
            && code / 100 == 4
            && code != 421
            && enhanced.is_none_or(|e| e.class == 4 && e.subject <= 999 && e.detail <= 999);
        if !valid {
            return Err(ConfigError::DeferralNotTransient(code));
        }
        Ok(Deferral {
            reply: Reply::new(code, enhanced, &[text.as_bytes()]),
        })
    }

    /// The reply the session sends.
    pub fn reply(&self) -> &Reply {
        &self.reply
    }
}

impl Default for Deferral {
    /// `450 4.7.0 Delivery without TLS is being phased out: use STARTTLS`.
    fn default() -> Self {
        Deferral {
            reply: Reply::new(
                450,
                Some(EnhancedCode::new(4, 7, 0)),
                &[b"Delivery without TLS is being phased out: use STARTTLS"],
            ),
        }
    }
}

/// What the session tells a [`CleartextDegradation`] hook about a `MAIL`
/// received in cleartext.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct CleartextMail<'a> {
    /// The reverse-path.
    pub from: &'a ReversePath,
    /// The `MAIL` parameters.
    pub params: &'a Parameters,
    /// How many `MAIL` commands this session showed the hook before this
    /// one (0 for the first).
    pub earlier: u32,
    /// Whether the client authenticated (only possible in cleartext with
    /// `insecure_auth_in_cleartext`).
    pub authenticated: bool,
}

/// The operator's hook for graduated cleartext degradation: asked about each
/// `MAIL` a server session receives in cleartext; `Some` answers it with
/// that temporary reply instead of passing it to the application.
///
/// The hook is shared by every session of a listener (it sits in the
/// [`ServerConfig`](super::ServerConfig)), so it may keep counters across
/// sessions; it must bring its own randomness or schedule — the library has
/// none.
///
/// ```
/// use std::sync::Mutex;
/// use starttls::smtp::{CleartextDegradation, CleartextMail, Deferral};
///
/// /// Defers a cleartext MAIL with probability `percent`, from the
/// /// operator's own random numbers (here a tiny xorshift).
/// #[derive(Debug)]
/// struct Random { percent: u64, state: Mutex<u64> }
///
/// impl CleartextDegradation for Random {
///     fn decide(&self, _mail: &CleartextMail<'_>) -> Option<Deferral> {
///         let mut s = self.state.lock().ok()?;
///         *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
///         (*s % 100 < self.percent).then(Deferral::default)
///     }
/// }
/// ```
pub trait CleartextDegradation: fmt::Debug + Send + Sync {
    /// `Some(deferral)` to answer this cleartext `MAIL` with a temporary
    /// reply; `None` to pass it to the application.
    fn decide(&self, mail: &CleartextMail<'_>) -> Option<Deferral>;
}

/// A deterministic [`CleartextDegradation`]: defers `defer` out of every
/// `out_of` cleartext `MAIL` commands the listener receives, evenly spread
/// and starting with a deferral (1 in 3: defer, pass, pass, defer, ...).
/// The count is shared by every session using the same configuration.
#[derive(Debug)]
pub struct DeferSchedule {
    defer: u64,
    out_of: u64,
    deferral: Deferral,
    seen: AtomicU64,
}

impl DeferSchedule {
    /// Defers `defer` out of every `out_of` cleartext `MAIL` commands with
    /// `deferral`. `0` out of anything never defers; `defer >= out_of`
    /// always does.
    pub fn new(defer: u32, out_of: u32, deferral: Deferral) -> DeferSchedule {
        let out_of = u64::from(out_of.max(1));
        DeferSchedule {
            defer: u64::from(defer).min(out_of),
            out_of,
            deferral,
            seen: AtomicU64::new(0),
        }
    }
}

impl CleartextDegradation for DeferSchedule {
    fn decide(&self, _mail: &CleartextMail<'_>) -> Option<Deferral> {
        let i = self.seen.fetch_add(1, Ordering::Relaxed) % self.out_of;
        // Position i defers when the running share ceil(i * defer / out_of)
        // steps up: evenly spread, first one deferred.
        let share = |k: u64| (k * self.defer).div_ceil(self.out_of);
        (share(i + 1) > share(i)).then(|| self.deferral.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decisions(s: &DeferSchedule, n: usize) -> String {
        let from = ReversePath::Null;
        let params = Parameters::new();
        (0..n)
            .map(|i| {
                let m = CleartextMail {
                    from: &from,
                    params: &params,
                    earlier: i as u32,
                    authenticated: false,
                };
                if s.decide(&m).is_some() {
                    'D'
                } else {
                    '.'
                }
            })
            .collect()
    }

    #[test]
    fn schedules_are_evenly_spread_and_start_with_a_deferral() {
        let d = Deferral::default;
        assert_eq!(decisions(&DeferSchedule::new(1, 3, d()), 7), "D..D..D");
        assert_eq!(decisions(&DeferSchedule::new(2, 4, d()), 6), "D.D.D.");
        assert_eq!(decisions(&DeferSchedule::new(3, 4, d()), 8), "DDD.DDD.");
        assert_eq!(decisions(&DeferSchedule::new(0, 5, d()), 5), ".....");
        assert_eq!(decisions(&DeferSchedule::new(9, 5, d()), 5), "DDDDD");
        assert_eq!(decisions(&DeferSchedule::new(1, 0, d()), 3), "DDD");
    }

    #[test]
    fn deferrals_are_transient_and_never_421() {
        let e = |c, x| Deferral::new(c, x, "t");
        assert!(e(450, Some(EnhancedCode::new(4, 7, 0))).is_ok());
        assert!(e(451, None).is_ok());
        for code in [250, 354, 421, 499 + 1, 550, 460, 99] {
            assert_eq!(e(code, None), Err(ConfigError::DeferralNotTransient(code)));
        }
        assert_eq!(
            e(450, Some(EnhancedCode::new(5, 7, 0))),
            Err(ConfigError::DeferralNotTransient(450))
        );
        let d = Deferral::new(451, Some(EnhancedCode::new(4, 7, 0)), "a\r\nb").unwrap();
        assert_eq!(d.reply().raw(), &Bytes::from_static(b"451 4.7.0 a  b\r\n"));
        assert_eq!(
            Deferral::default().reply().raw(),
            &Bytes::from_static(
                b"450 4.7.0 Delivery without TLS is being phased out: use STARTTLS\r\n"
            )
        );
    }

    #[test]
    fn refusals_name_their_status_codes() {
        assert_eq!(RequireTlsRefusal::NoTls.status().to_string(), "5.7.10");
        assert_eq!(
            RequireTlsRefusal::NotAdvertised.status().to_string(),
            "5.7.30"
        );
    }
}
