//! IMAP capabilities: the list of a `* CAPABILITY` response or of a
//! `[CAPABILITY ...]` response code, typed.
//!
//! RFC 9051 §9:
//!
//! ```text
//! capability-data  = "CAPABILITY" *(SP capability) SP "IMAP4rev2"
//!                    *(SP capability)
//! capability       = ("AUTH=" auth-type) / atom
//! ```
//!
//! Capability names are case-insensitive (`AUTH=PLAIN`, `auth=plain`); the
//! original spelling is kept in the raw bytes.

use bytes::Bytes;

use crate::imap::SyntaxError;
use crate::octets::{Octets, Source};

/// One capability name (RFC 9051 §9 `capability`).
///
/// Generic over the container of its byte strings ([`Octets`]): `Capability`
/// is the owned form (`Bytes`), `Capability<&[u8]>` the borrowed one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Capability<B = Bytes> {
    /// `IMAP4rev1` (RFC 3501).
    Imap4rev1,
    /// `IMAP4rev2` (RFC 9051).
    Imap4rev2,
    /// `STARTTLS` (RFC 9051 §6.2.1, RFC 2595 §3.1).
    StartTls,
    /// `LOGINDISABLED` (RFC 9051 §6.2.3): `LOGIN` must not be used (on this
    /// connection, typically until TLS is active).
    LoginDisabled,
    /// `AUTH=mechanism` (RFC 9051 §6.2.2): the SASL mechanism, as written.
    Auth(B),
    /// `SASL-IR` (RFC 4959): initial response in `AUTHENTICATE`.
    SaslIr,
    /// `LITERAL+` (RFC 7888): non-synchronizing literals of any size.
    LiteralPlus,
    /// `LITERAL-` (RFC 7888): non-synchronizing literals up to 4096 octets.
    LiteralMinus,
    /// `BINARY` (RFC 3516): `literal8` and `BINARY[...]`.
    Binary,
    /// `ID` (RFC 2971).
    Id,
    /// `ENABLE` (RFC 5161).
    Enable,
    /// `IDLE` (RFC 2177).
    Idle,
    /// `LOGIN-REFERRALS` (RFC 2221).
    LoginReferrals,
    /// `MAILBOX-REFERRALS` (RFC 2193).
    MailboxReferrals,
    /// `UTF8=ACCEPT` (RFC 6855).
    Utf8Accept,
    /// Any other capability atom, as written.
    Other(B),
}

/// A borrowed [`Capability`]: a view into the parsed input.
pub type CapabilityRef<'a> = Capability<&'a [u8]>;

/// The names of the parameterless capabilities.
const NAMES: [(&str, Capability<()>); 14] = [
    ("IMAP4rev1", Capability::Imap4rev1),
    ("IMAP4rev2", Capability::Imap4rev2),
    ("STARTTLS", Capability::StartTls),
    ("LOGINDISABLED", Capability::LoginDisabled),
    ("SASL-IR", Capability::SaslIr),
    ("LITERAL+", Capability::LiteralPlus),
    ("LITERAL-", Capability::LiteralMinus),
    ("BINARY", Capability::Binary),
    ("ID", Capability::Id),
    ("ENABLE", Capability::Enable),
    ("IDLE", Capability::Idle),
    ("LOGIN-REFERRALS", Capability::LoginReferrals),
    ("MAILBOX-REFERRALS", Capability::MailboxReferrals),
    ("UTF8=ACCEPT", Capability::Utf8Accept),
];

/// Types one capability atom (ASCII case-insensitive), `piece` turning the
/// kept sub-slices into the container.
fn from_atom_in<'a, S: Source<'a>>(src: S, atom: &'a [u8]) -> Capability<S::Out> {
    if let Some((_, cap)) = NAMES
        .iter()
        .find(|(name, _)| atom.eq_ignore_ascii_case(name.as_bytes()))
    {
        return cap.clone().map_octets(|()| src.piece(b""));
    }
    match atom.split_at_checked(5) {
        Some((prefix, mech)) if prefix.eq_ignore_ascii_case(b"AUTH=") && !mech.is_empty() => {
            Capability::Auth(src.piece(mech))
        }
        _ => Capability::Other(src.piece(atom)),
    }
}

impl Capability {
    /// Types one capability atom (ASCII case-insensitive). `AUTH=` with an
    /// empty mechanism is [`Capability::Other`].
    pub fn from_atom(atom: &Bytes) -> Capability {
        from_atom_in(atom, atom)
    }
}

impl CapabilityRef<'_> {
    /// The same capability with its byte strings copied into fresh
    /// [`Bytes`].
    pub fn into_owned(self) -> Capability {
        self.map_octets(crate::octets::copy)
    }
}

impl<B> Capability<B> {
    /// Rebuilds the capability with another container, calling `f` on its
    /// byte string (the mechanism or the atom), if any.
    pub fn map_octets<C>(self, mut f: impl FnMut(B) -> C) -> Capability<C> {
        match self {
            Capability::Imap4rev1 => Capability::Imap4rev1,
            Capability::Imap4rev2 => Capability::Imap4rev2,
            Capability::StartTls => Capability::StartTls,
            Capability::LoginDisabled => Capability::LoginDisabled,
            Capability::Auth(mech) => Capability::Auth(f(mech)),
            Capability::SaslIr => Capability::SaslIr,
            Capability::LiteralPlus => Capability::LiteralPlus,
            Capability::LiteralMinus => Capability::LiteralMinus,
            Capability::Binary => Capability::Binary,
            Capability::Id => Capability::Id,
            Capability::Enable => Capability::Enable,
            Capability::Idle => Capability::Idle,
            Capability::LoginReferrals => Capability::LoginReferrals,
            Capability::MailboxReferrals => Capability::MailboxReferrals,
            Capability::Utf8Accept => Capability::Utf8Accept,
            Capability::Other(atom) => Capability::Other(f(atom)),
        }
    }
}

impl<B: Octets> Capability<B> {
    /// Writes the capability atom: the canonical spelling for the known
    /// kinds (`IMAP4rev2`, `AUTH=` + mechanism), as written for `Other`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Auth(mech) => {
                out.extend_from_slice(b"AUTH=");
                out.extend_from_slice(mech.as_ref());
            }
            Capability::Other(atom) => out.extend_from_slice(atom.as_ref()),
            known => {
                let known = known.clone().map_octets(|_| ());
                out.extend_from_slice(
                    NAMES
                        .iter()
                        .find(|(_, cap)| *cap == known)
                        .map_or(&b""[..], |(name, _)| name.as_bytes()),
                )
            }
        }
    }
}

/// A capability list: raw, validated, space-separated capability atoms.
///
/// Kept as the bytes received (no `Vec`, so parsing allocates nothing);
/// [`Capabilities::iter`] types each atom on demand. Equality compares the
/// raw bytes. Generic over the container ([`Octets`]): `Capabilities` is the
/// owned form, [`CapabilitiesRef`] the borrowed one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities<B = Bytes>(B);

/// A borrowed [`Capabilities`]: a view into the parsed input.
pub type CapabilitiesRef<'a> = Capabilities<&'a [u8]>;

/// The list rule of [`Capabilities::parse`], on both forms.
fn parse_in<'a, S: Source<'a>>(src: S) -> Result<Capabilities<S::Out>, SyntaxError> {
    parse_piece(src, src.octets())
}

/// [`Capabilities::parse`] on `list`, a sub-slice of `src` (the arguments of
/// a `CAPABILITY` response or response code).
pub(crate) fn parse_piece<'a, S: Source<'a>>(
    src: S,
    list: &'a [u8],
) -> Result<Capabilities<S::Out>, SyntaxError> {
    if memchr::memchr3(b'\r', b'\n', 0, list).is_some() {
        return Err(SyntaxError::InvalidResponse {
            reason: "CR, LF or NUL in a capability list",
        });
    }
    Ok(Capabilities(src.piece(list)))
}

/// The atoms of a list: words separated by runs of spaces or tabs.
fn atoms(list: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    list.split(|&c| c == b' ' || c == b'\t')
        .filter(|a| !a.is_empty())
}

impl Capabilities {
    /// Reads a capability list: words separated by spaces (RFC 9051
    /// `capability-data` has one or more `atom`s). The list is
    /// informational, so it is read tolerantly (`docs/design.md`, "Tolerant
    /// listings, strict boundary"): runs of spaces or tabs, leading or
    /// trailing ones, an empty list, and words that are not atoms (`X-A*`,
    /// `caf\u{e9}`, `a"b`) are accepted and kept as they are; a word that is
    /// not a known capability atom is [`Capability::Other`]. Only CR, LF and
    /// NUL, which the framing never lets through, are refused. `STARTTLS` is
    /// still recognised only as that exact word (any case).
    pub fn parse(list: &Bytes) -> Result<Self, SyntaxError> {
        parse_in(list)
    }

    /// The capabilities, typed, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        atoms(&self.0).map(|atom| from_atom_in(&self.0, atom))
    }

    /// The SASL mechanisms of the `AUTH=` capabilities, as written.
    pub fn auth_mechanisms(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.iter().filter_map(|cap| match cap {
            Capability::Auth(mech) => Some(mech),
            _ => None,
        })
    }

    /// Serializes `caps`, separated by single spaces. An empty slice gives an
    /// empty list.
    pub fn from_caps(caps: &[Capability]) -> Self {
        let mut out = Vec::new();
        for (i, cap) in caps.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            cap.write_to(&mut out);
        }
        Capabilities(Bytes::from(out))
    }

    /// The same list in an allocation of its own size, sharing nothing with
    /// the buffer it was read from.
    pub(crate) fn detached(&self) -> Capabilities {
        Capabilities(Bytes::copy_from_slice(&self.0))
    }
}

impl<'a> Capabilities<&'a [u8]> {
    /// [`Capabilities::parse`] without a `Bytes` handle: the list borrows
    /// `list`. Same rule, same errors.
    pub fn parse_borrowed(list: &'a [u8]) -> Result<Self, SyntaxError> {
        parse_in(list)
    }

    /// The capabilities, typed, in wire order, borrowing the input.
    pub fn iter(&self) -> impl Iterator<Item = Capability<&'a [u8]>> + 'a {
        let list: &'a [u8] = self.0;
        atoms(list).map(move |atom| from_atom_in(list, atom))
    }

    /// The SASL mechanisms of the `AUTH=` capabilities, as written.
    pub fn auth_mechanisms(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter_map(|cap| match cap {
            Capability::Auth(mech) => Some(mech),
            _ => None,
        })
    }

    /// The same list copied into a fresh [`Bytes`].
    pub fn into_owned(self) -> Capabilities {
        self.map_octets(crate::octets::copy)
    }
}

impl<B: Octets> Capabilities<B> {
    /// Rebuilds the list with another container.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Capabilities<C> {
        Capabilities(f(self.0))
    }

    /// True if `STARTTLS` is listed.
    pub fn has_starttls(&self) -> bool {
        self.contains("STARTTLS")
    }

    /// True if `LOGINDISABLED` is listed.
    pub fn login_disabled(&self) -> bool {
        self.contains("LOGINDISABLED")
    }

    /// True if the capability atom `cap` (e.g. `"AUTH=PLAIN"`, `"IDLE"`) is
    /// listed, ASCII case-insensitively.
    pub fn contains(&self, cap: &str) -> bool {
        atoms(self.0.as_ref()).any(|atom| atom.eq_ignore_ascii_case(cap.as_bytes()))
    }

    /// The raw list, as on the wire.
    pub fn as_bytes(&self) -> &B {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn caps(s: &str) -> Capabilities {
        Capabilities::parse(&b(s)).unwrap()
    }

    #[test]
    fn rfc_examples() {
        let c = caps("IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED");
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![
                Capability::Imap4rev2,
                Capability::StartTls,
                Capability::Auth(b("GSSAPI")),
                Capability::LoginDisabled
            ]
        );
        assert!(c.has_starttls());
        assert!(c.login_disabled());
        let c = caps("IMAP4rev1 IMAP4rev2 STARTTLS AUTH=GSSAPI AUTH=PLAIN XPIG-LATIN");
        assert_eq!(
            c.auth_mechanisms().collect::<Vec<_>>(),
            vec![b("GSSAPI"), b("PLAIN")]
        );
        assert_eq!(c.iter().last(), Some(Capability::Other(b("XPIG-LATIN"))));
        assert!(!c.login_disabled());
    }

    #[test]
    fn every_known_name() {
        let all = "imap4REV1 IMAP4rev2 starttls LoginDisabled auth=plain Sasl-IR literal+ LITERAL- \
                   binary id enable idle login-referrals MAILBOX-REFERRALS utf8=accept UTF8=ONLY AUTH= X";
        let c = caps(all);
        let got: Vec<Capability> = c.iter().collect();
        assert_eq!(
            got,
            vec![
                Capability::Imap4rev1,
                Capability::Imap4rev2,
                Capability::StartTls,
                Capability::LoginDisabled,
                Capability::Auth(b("plain")),
                Capability::SaslIr,
                Capability::LiteralPlus,
                Capability::LiteralMinus,
                Capability::Binary,
                Capability::Id,
                Capability::Enable,
                Capability::Idle,
                Capability::LoginReferrals,
                Capability::MailboxReferrals,
                Capability::Utf8Accept,
                Capability::Other(b("UTF8=ONLY")),
                Capability::Other(b("AUTH=")),
                Capability::Other(b("X")),
            ]
        );
        // The raw bytes keep the original spelling.
        assert_eq!(c.as_bytes(), all);
        assert!(c.contains("AUTH=PLAIN"));
        assert!(c.contains("Literal+"));
        assert!(!c.contains("LITERAL"));
        assert!(!c.contains("AUTH=GSSAPI"));
        // Writing the typed list back and parsing it gives the same types.
        let again = Capabilities::from_caps(&got);
        assert_eq!(again.iter().collect::<Vec<_>>(), got);
        assert_eq!(
            Capabilities::from_caps(&got[..3]).as_bytes(),
            "IMAP4rev1 IMAP4rev2 STARTTLS"
        );
    }

    #[test]
    fn lenient_spacing_and_errors() {
        let c = caps(" IMAP4rev1  STARTTLS ");
        assert_eq!(c.iter().count(), 2);
        assert!(c.has_starttls());
        // Informational: odd words are kept (as `Other`), never an error.
        for (odd, words) in [
            ("", 0),
            (" ", 0),
            ("IMAP4rev1 (x)", 2),
            ("a\"b", 1),
            ("a]b", 1),
            ("a*b", 1),
            ("a%", 1),
            ("caf\u{e9}", 1),
            ("a\tb", 2),
            ("{5}", 1),
            ("STARTTLS\tIMAP4rev1  x\u{1b}", 3),
        ] {
            let c = Capabilities::parse(&b(odd)).unwrap();
            assert_eq!(c.iter().count(), words, "{odd:?}");
            assert_eq!(c.as_bytes(), odd);
        }
        assert!(caps("a\tSTARTTLS").has_starttls());
        // STARTTLS is still only that exact word.
        for not in [
            "STARTTLSX",
            "X-STARTTLS",
            "START TLS",
            "STARTTLS=1",
            "\"STARTTLS\"",
        ] {
            assert!(!caps(not).has_starttls(), "{not:?}");
        }
        // CR, LF and NUL never pass (the framing stops them before).
        for bad in ["a\rb", "a\nb", "a\0b"] {
            assert!(
                matches!(
                    Capabilities::parse(&b(bad)),
                    Err(SyntaxError::InvalidResponse { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(Capabilities::from_caps(&[]).as_bytes().is_empty());
        assert_eq!(Capabilities::<Bytes>::default().iter().count(), 0);
    }

    #[test]
    fn from_atom() {
        assert_eq!(
            Capability::from_atom(&b("AUTH=XOAUTH2")),
            Capability::Auth(b("XOAUTH2"))
        );
        assert_eq!(
            Capability::from_atom(&b("Auth=x")),
            Capability::Auth(b("x"))
        );
        assert_eq!(
            Capability::from_atom(&b("AUTH")),
            Capability::Other(b("AUTH"))
        );
        let mut out = Vec::new();
        Capability::<Bytes>::LiteralMinus.write_to(&mut out);
        out.push(b' ');
        Capability::Auth(b("PLAIN")).write_to(&mut out);
        assert_eq!(out, b"LITERAL- AUTH=PLAIN");
    }

    /// `parse_borrowed` and `parse` agree on every list of this module's
    /// tests and on mutations of them; the borrowed iterator types each atom
    /// as the owned one does.
    #[test]
    fn borrowed_and_owned_agree() {
        let lists: [&[u8]; 8] = [
            b"IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED",
            b"imap4REV1 IMAP4rev2 starttls LoginDisabled auth=plain Sasl-IR literal+ LITERAL- \
              binary id enable idle login-referrals MAILBOX-REFERRALS utf8=accept UTF8=ONLY AUTH= X",
            b" IMAP4rev1  STARTTLS ",
            b"",
            b"a\tSTARTTLS",
            b"STARTTLS\tIMAP4rev1  x\x1b",
            b"a\rb",
            b"caf\xc3\xa9 {5} a\"b",
        ];
        let specials = b" \t\r\n\0=+-AUTHSTARTLSauth\xff";
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        for i in 0..4000 {
            let mut m = lists[i % lists.len()].to_vec();
            if i >= lists.len() {
                let at = next() % (m.len() + 1);
                match next() % 3 {
                    0 if at < m.len() => m[at] = specials[next() % specials.len()],
                    1 => m.insert(at, specials[next() % specials.len()]),
                    _ => m.truncate(at),
                }
            }
            let line = Bytes::from(m);
            let owned = Capabilities::parse(&line);
            match (Capabilities::parse_borrowed(&line), &owned) {
                (Ok(view), Ok(o)) => {
                    let types: Vec<Capability> = view.iter().map(|c| c.into_owned()).collect();
                    assert_eq!(types, o.iter().collect::<Vec<_>>());
                    assert_eq!(
                        view.auth_mechanisms().collect::<Vec<_>>(),
                        o.auth_mechanisms().collect::<Vec<_>>()
                    );
                    assert_eq!(view.has_starttls(), o.has_starttls());
                    assert_eq!(view.login_disabled(), o.login_disabled());
                    assert_eq!(&view.clone().map_octets(crate::octets::attach(&line)), o);
                    assert_eq!(&view.into_owned(), o);
                }
                (Err(a), Err(b)) => assert_eq!(&a, b),
                (a, b) => panic!("{line:?}: borrowed {a:?}, owned {b:?}"),
            }
        }
    }
}
