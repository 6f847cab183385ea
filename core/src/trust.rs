//! Trust levels for everything the peer says.
//!
//! A cleartext `* OK [ALERT] ...` or `421 your account is suspended, call ...`
//! is exactly as trustworthy as the network path it crossed. Every peer text
//! this crate hands out is wrapped in [`Received`], which says whether it
//! arrived in cleartext or over TLS, so a user interface can refuse or mark
//! cleartext texts (threat class 6, "UI spoofing", in `docs/threat-model.md`).

use std::fmt;
use std::ops::Deref;

use crate::escape::{Escaped, PeerText};

/// How a piece of peer data reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trust {
    /// Received before TLS was established: anyone on the path may have
    /// written or altered it.
    Cleartext,
    /// Received inside an established TLS session.
    Tls,
}

impl Trust {
    /// `true` for [`Trust::Tls`].
    pub fn is_tls(self) -> bool {
        matches!(self, Trust::Tls)
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::Cleartext => "cleartext",
            Trust::Tls => "tls",
        })
    }
}

/// A message from the peer together with the trust level of the channel it
/// arrived on. Dereferences to the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<T> {
    /// The message as parsed.
    pub message: T,
    /// Whether it arrived in cleartext or over TLS.
    pub trust: Trust,
}

impl<T> Received<T> {
    /// Wraps a message with the trust level of the channel it came from.
    pub fn new(message: T, trust: Trust) -> Self {
        Received { message, trust }
    }
}

impl<T: PeerText> Received<T> {
    /// The message as the peer wrote it, for display: control characters,
    /// bidirectional controls and invalid UTF-8 shown as visible escapes
    /// ([`Escaped`]), so that a peer cannot recolour, move or rewrite what
    /// the user reads. Use it (or [`Escaped`] on a part of the message)
    /// wherever peer text is printed or logged.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use starttls::{Received, Trust};
    ///
    /// let text = Received::new(Bytes::from_static(b"\x1b[2Jhi\r\n"), Trust::Cleartext);
    /// assert_eq!(text.escaped().to_string(), r"\u{1b}[2Jhi");
    /// ```
    pub fn escaped(&self) -> Escaped<'_> {
        match self.message.peer_text() {
            std::borrow::Cow::Borrowed(b) => Escaped::new(b),
            std::borrow::Cow::Owned(v) => Escaped::owned(v),
        }
    }
}

impl<T> Deref for Received<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.message
    }
}
