//! Octets a server sends the same way to every session of a configuration
//! (the IMAP greeting and `CAPABILITY` response, the POP3 `CAPA` listing),
//! built once per configuration instead of once per session.
//!
//! The configurations' fields are public and may change after sessions used
//! them (through `Arc::get_mut` or a clone), so a cache keeps the values it
//! was built from (its key) and is used only while the configuration still
//! says the same; a clone starts empty. A reply that depends on the session
//! (SASL `EXTERNAL` offered to a verified client certificate) never comes
//! from a cache.

use std::fmt;
use std::sync::OnceLock;

/// A value built at its first use and shared by every session of one
/// configuration.
pub(crate) struct PerConfig<T>(OnceLock<T>);

impl<T> PerConfig<T> {
    /// The value, built by `build` at the first call.
    pub(crate) fn get_or_init(&self, build: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(build)
    }

    /// The value, if built.
    #[cfg(test)]
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.get()
    }
}

impl<T> Default for PerConfig<T> {
    fn default() -> Self {
        PerConfig(OnceLock::new())
    }
}

impl<T> Clone for PerConfig<T> {
    /// Empty: a clone is a new configuration, maybe changed before use.
    fn clone(&self) -> Self {
        PerConfig::default()
    }
}

impl<T> fmt::Debug for PerConfig<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "PerConfig(built)"
        } else {
            "PerConfig(empty)"
        })
    }
}
