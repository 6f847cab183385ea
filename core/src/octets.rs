//! One definition per message, two forms: owned and borrowed.
//!
//! Every parsed message type of the crate (SMTP commands and replies, IMAP
//! commands and responses, POP3 commands and responses) is generic over the
//! container that holds its byte strings, `B: Octets`:
//!
//! - **owned**, `B = Bytes` (the default type parameter, so `Command` means
//!   `Command<Bytes>`): what the sessions hand out in their events. Every
//!   byte string is a [`Bytes::slice_ref`] of the line it was parsed from —
//!   no copy, but one reference-count increment (and a decrement when
//!   dropped) per field;
//! - **borrowed**, `B = &'a [u8]`: a view into the caller's buffer. Parsing
//!   allocates nothing and touches no reference count, so it is the fast
//!   path for a caller that reads a message and acts on it at once (a proxy,
//!   a filter, a logger, a benchmark).
//!
//! Both forms come out of the same grammar (one generic parser per message,
//! instantiated twice), so they accept exactly the same inputs and produce
//! the same values; the differential tests and fuzz targets check it.
//!
//! Conversions, available on every message type:
//!
//! - `map_octets(f)` rebuilds a value with another container, calling `f`
//!   on every byte string (in wire order);
//! - `into_owned()` on a borrowed value copies its byte strings into fresh
//!   `Bytes` (an allocation per field: keep the value past the buffer);
//! - [`attach`] turns a borrowed value parsed from `line` into the owned
//!   value [`Bytes::slice_ref`]-ing `line`, with no copy — exactly what the
//!   owned parser would have produced.
//!
//! ```
//! use bytes::Bytes;
//! use starttls::smtp::Command;
//!
//! let line = Bytes::from_static(b"MAIL FROM:<alice@example.org> SIZE=1000");
//! // Borrowed: no allocation, no reference count.
//! let view = Command::parse_borrowed(&line).unwrap();
//! assert_eq!(view.verb(), "MAIL");
//! // The same value the owned parser gives, sharing `line`'s storage.
//! let owned = view.map_octets(starttls::octets::attach(&line));
//! assert_eq!(owned, Command::parse(&line).unwrap());
//! ```

use std::fmt::Debug;
use std::hash::Hash;

use bytes::Bytes;

pub(crate) mod sealed {
    use bytes::Bytes;

    /// Seals [`Octets`](super::Octets), and gives the crate's generic code
    /// (an iterator over a parameter or argument list that yields items in
    /// the list's own container) a way to take a piece of a container as
    /// that container. Not nameable outside the crate.
    pub trait Sealed: Sized {
        /// `sub`, a sub-slice of `self`, in the container of `self`. Never
        /// panics: a slice that is not inside `self` gives a copy (`Bytes`)
        /// or an empty slice (`&[u8]`).
        fn piece_of(&self, sub: &[u8]) -> Self;
    }

    impl Sealed for Bytes {
        #[inline]
        fn piece_of(&self, sub: &[u8]) -> Bytes {
            super::attach(self)(sub)
        }
    }

    impl Sealed for &[u8] {
        #[inline]
        fn piece_of(&self, sub: &[u8]) -> Self {
            let start = (sub.as_ptr() as usize).wrapping_sub(self.as_ptr() as usize);
            start
                .checked_add(sub.len())
                .and_then(|end| self.get(start..end))
                .unwrap_or_default()
        }
    }
}

/// The container of the byte strings in a parsed message: [`Bytes`]
/// (owned) or `&[u8]` (borrowed). Sealed: the parsers rely on both forms
/// being views of the parsed input.
pub trait Octets: AsRef<[u8]> + Clone + Debug + PartialEq + Eq + Hash + sealed::Sealed {}

impl Octets for Bytes {}
impl Octets for &[u8] {}

/// Where a parser takes its input from and how it turns a piece of that
/// input into the container `Out`: a `&Bytes` line gives `Bytes` handles
/// ([`Bytes::slice_ref`]), a `&[u8]` line gives sub-slices.
///
/// Grammar functions are written once over `S: Source<'a>` and call
/// [`Source::piece`] on every sub-slice they keep.
pub(crate) trait Source<'a>: Copy {
    /// The container of the parsed byte strings.
    type Out: Octets;
    /// The whole input.
    fn octets(self) -> &'a [u8];
    /// `sub` (a sub-slice of [`Source::octets`]) as the container.
    fn piece(self, sub: &'a [u8]) -> Self::Out;
}

impl<'a> Source<'a> for &'a Bytes {
    type Out = Bytes;
    #[inline]
    fn octets(self) -> &'a [u8] {
        self
    }
    #[inline]
    fn piece(self, sub: &'a [u8]) -> Bytes {
        if sub.is_empty() {
            // `slice_ref` of an empty slice that does not point into the
            // line (a literal `b""`) would panic; an empty piece needs no
            // storage anyway.
            return Bytes::new();
        }
        self.slice_ref(sub)
    }
}

impl<'a> Source<'a> for &'a [u8] {
    type Out = &'a [u8];
    #[inline]
    fn octets(self) -> &'a [u8] {
        self
    }
    #[inline]
    fn piece(self, sub: &'a [u8]) -> &'a [u8] {
        sub
    }
}

/// Copies a borrowed byte string into a fresh [`Bytes`]: the function
/// `into_owned()` passes to `map_octets`.
pub fn copy(sub: &[u8]) -> Bytes {
    Bytes::copy_from_slice(sub)
}

/// The function that turns the byte strings of a value borrowed from `line`
/// into [`Bytes::slice_ref`] handles of `line` (no copy): pass it to
/// `map_octets`. A byte string that is not inside `line` (a value built by
/// hand) is copied instead, so this never panics.
pub fn attach(line: &Bytes) -> impl FnMut(&[u8]) -> Bytes + '_ {
    move |sub: &[u8]| {
        if sub.is_empty() {
            return Bytes::new();
        }
        let base = line.as_ptr() as usize;
        let start = sub.as_ptr() as usize;
        let inside = start >= base && start.saturating_add(sub.len()) <= base + line.len();
        if inside {
            line.slice_ref(sub)
        } else {
            Bytes::copy_from_slice(sub)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_shares_inside_and_copies_outside() {
        let line = Bytes::from_static(b"hello world");
        let mut f = attach(&line);
        let inner = f(&line[6..]);
        assert_eq!(&inner[..], b"world");
        assert_eq!(inner.as_ptr(), line[6..].as_ptr());
        let other = b"world".to_vec();
        let outside = f(&other);
        assert_eq!(&outside[..], b"world");
        assert_ne!(outside.as_ptr(), other.as_ptr());
        assert!(f(b"").is_empty());
    }

    #[test]
    fn sources_give_the_same_pieces() {
        let line = Bytes::from_static(b"abc def");
        let owned = Source::piece(&line, &line[4..]);
        let slice: &[u8] = &line;
        let borrowed = Source::piece(slice, &slice[4..]);
        assert_eq!(owned.as_ref(), borrowed);
        assert!(Source::piece(&line, b"").is_empty());
    }
}
