//! A policy cache per domain, driven by the core's plan.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use starttls::policy::mta_sts::{
    self, CacheAction, DomainError, FetchFailure, Policy, PolicyCache, TxtLookup,
};

use super::{FetchedPolicy, StsFetchError, StsFetcher};

/// What [`StsPolicies::policy`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PolicyEvent {
    /// The cached policy is current and was used without fetching.
    Cached,
    /// The policy was fetched and stored (a first fetch, a new `id`, or the
    /// daily refresh).
    Fetched(Box<FetchedPolicy>),
    /// The fetch failed. [`FetchFailure::keep_cached`] says whether a cached
    /// policy stays in force (RFC 8461 §3.3); [`FetchFailure::report`] what
    /// to report over TLS-RPT.
    FetchFailed {
        /// Why.
        error: StsFetchError,
        /// What follows, from [`PolicyCache::fetch_failed`].
        failure: FetchFailure,
    },
    /// A fetch for this `id` failed recently; no new attempt before
    /// `retry_at` (RFC 8461 §3.3). The cached policy, if any, stays.
    RetryLater {
        /// When a fetch may be tried again.
        retry_at: u64,
    },
    /// The cached policy expired and no TXT record names a new one: the
    /// entry was dropped; no policy.
    Expired,
    /// No cached policy and no usable TXT record: no policy (RFC 8461 §3.1).
    NoPolicy,
}

/// The answer of [`StsPolicies::policy`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PolicyLookup {
    /// The Policy Domain, lowercase without trailing dot.
    pub domain: String,
    /// The core's plan ([`PolicyCache::plan`]).
    pub action: CacheAction,
    /// What was done about it.
    pub event: PolicyEvent,
    /// The policy in force now, to give to
    /// [`mta_sts::decide`](starttls::policy::mta_sts::decide); `None`: deliver
    /// as if the domain had no MTA-STS policy.
    pub policy: Option<Policy>,
}

/// MTA-STS policies of many domains: a [`PolicyCache`] each, kept in
/// memory, fetched with a [`StsFetcher`] when the cache's plan says so.
///
/// Fetches happen inline, the daily refresh
/// ([`CacheAction::Refresh`]) too, so the caller learns what happened; the
/// cached policy stays in force whatever the refresh gives. The lock is not
/// held during a fetch: two concurrent calls for one domain may both fetch.
#[derive(Debug)]
pub struct StsPolicies {
    fetcher: StsFetcher,
    caches: Mutex<HashMap<String, PolicyCache>>,
}

impl StsPolicies {
    /// An empty cache fetching with `fetcher`.
    pub fn new(fetcher: StsFetcher) -> StsPolicies {
        StsPolicies {
            fetcher,
            caches: Mutex::new(HashMap::new()),
        }
    }

    /// The fetcher.
    pub fn fetcher(&self) -> &StsFetcher {
        &self.fetcher
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, PolicyCache>> {
        // A panic elsewhere while holding the lock leaves the map usable:
        // every update is a single assignment.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy of `domain` to apply now, given what its `_mta-sts` TXT
    /// lookup found and the time (seconds, same epoch every call): runs
    /// [`PolicyCache::plan`], fetches on `Fetch` and `Refresh` (not on
    /// `RetryLater`), and stores the policy or records the failure.
    ///
    /// # Errors
    ///
    /// If `domain` is not a valid domain name.
    pub async fn policy(
        &self,
        domain: &str,
        txt: TxtLookup,
        now: u64,
    ) -> Result<PolicyLookup, DomainError> {
        let domain = domain_key(domain)?;
        let action = self
            .lock()
            .get(&domain)
            .map(|c| c.plan(&txt, now))
            .unwrap_or_else(|| PolicyCache::new().plan(&txt, now));
        let id = match action {
            CacheAction::Fetch { id } | CacheAction::Refresh { id } => id,
            _ => {
                let mut caches = self.lock();
                let event = match action {
                    CacheAction::RetryLater { retry_at, .. } => {
                        PolicyEvent::RetryLater { retry_at }
                    }
                    CacheAction::Expired => {
                        caches.remove(&domain);
                        PolicyEvent::Expired
                    }
                    CacheAction::NoPolicy => PolicyEvent::NoPolicy,
                    _ => PolicyEvent::Cached,
                };
                let policy = caches.get(&domain).and_then(|c| c.policy(now)).cloned();
                return Ok(PolicyLookup {
                    domain,
                    action,
                    event,
                    policy,
                });
            }
        };

        let fetched = self.fetcher.fetch(&domain).await;
        let mut caches = self.lock();
        let cache = caches.entry(domain.clone()).or_default();
        let event = match fetched {
            Ok(fetched) => {
                cache.store(id, fetched.policy.clone(), now);
                PolicyEvent::Fetched(Box::new(fetched))
            }
            Err(error) => {
                let failure = cache.fetch_failed(id, &error.fetch_error(), now);
                PolicyEvent::FetchFailed { error, failure }
            }
        };
        let policy = cache.policy(now).cloned();
        Ok(PolicyLookup {
            domain,
            action,
            event,
            policy,
        })
    }

    /// A copy of the cache of `domain` (to persist it), if any.
    pub fn cache(&self, domain: &str) -> Option<PolicyCache> {
        let key = domain_key(domain).ok()?;
        self.lock().get(&key).cloned()
    }

    /// Puts back a cache of `domain` (e.g. loaded from storage), replacing
    /// what was known.
    ///
    /// # Errors
    ///
    /// If `domain` is not a valid domain name.
    pub fn set_cache(&self, domain: &str, cache: PolicyCache) -> Result<(), DomainError> {
        self.lock().insert(domain_key(domain)?, cache);
        Ok(())
    }

    /// Forgets `domain`; returns its cache, if any.
    pub fn remove(&self, domain: &str) -> Option<PolicyCache> {
        let key = domain_key(domain).ok()?;
        self.lock().remove(&key)
    }
}

/// The domain, checked, lowercase, without trailing dot.
fn domain_key(domain: &str) -> Result<String, DomainError> {
    let host = mta_sts::policy_host(domain)?;
    Ok(host.strip_prefix("mta-sts.").unwrap_or(&host).to_owned())
}
