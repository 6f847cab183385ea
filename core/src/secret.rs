//! Credentials that never show up in logs.

use std::fmt;

/// A value that must not appear in `Debug` output or logs: passwords, SASL
/// responses, `AUTH` initial responses, POP3 `PASS` arguments.
///
/// `Debug` prints `[redacted]`. Getting at the value is an explicit call to
/// [`Secret::expose`], so every place that reads a credential is greppable.
///
/// ```
/// use starttls::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "[redacted]");
/// assert_eq!(*s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a credential.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Reads the credential. Call this only where the value is really needed.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the credential.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}
