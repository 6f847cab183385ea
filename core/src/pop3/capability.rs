//! POP3 capabilities: the lines of a positive `CAPA` response, typed.
//!
//! RFC 2449 §5 and §9:
//!
//! ```text
//! capa-resp      = "+OK" [SP text] CRLF *capability "." CRLF
//! capability     = capa-tag *(SP param) CRLF   ;512 octets maximum
//! capa-tag       = 1*cchar
//! param          = 1*pchar
//! cchar          = %x21-2D / %x2F-7F  ;printable ASCII, excluding "."
//! pchar          = %x21-7F            ;printable ASCII only
//! ```
//!
//! with the capabilities of RFC 2449 §6 (`TOP`, `USER`, `SASL`,
//! `RESP-CODES`, `LOGIN-DELAY`, `PIPELINING`, `EXPIRE`, `UIDL`,
//! `IMPLEMENTATION`), RFC 2595 §4 `STLS`, RFC 3206 `AUTH-RESP-CODE` and
//! RFC 6856 §2-§3 `UTF8` and `LANG`.
//!
//! Parsing one line is zero-copy and allocates nothing
//! ([`Capability::parse_borrowed`] is the same grammar over a `&[u8]` line,
//! see [`crate::octets`]); [`Capabilities`] holds a `Vec` of owned
//! capabilities, built once per session.

use std::io::Write as _;

use bytes::Bytes;

use crate::octets::{Octets, Source};
use crate::pop3::syntax::{is_line_text, is_vchar, number_u32, split_sp, whole, SyntaxError};

/// One capability line of a `CAPA` response (RFC 2449 §5).
///
/// Names (`capa-tag`) and the keywords `USER` and `NEVER` are
/// case-insensitive. A known name whose arguments do not fit its definition
/// (`TOP now`, `LOGIN-DELAY soon`) is kept as [`Capability::Other`] rather
/// than failing the whole response.
///
/// Generic over the container of its byte strings (see [`crate::octets`]):
/// `Capability` is the owned form ([`Bytes`]), [`CapabilityRef`] the form
/// borrowed from the parsed line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Capability<B: Octets = Bytes> {
    /// RFC 2449 §6.1 `TOP`: the `TOP` command is available.
    Top,
    /// RFC 2449 §6.2 `USER`: `USER`/`PASS` login is available.
    User,
    /// RFC 2449 §6.3 / RFC 5034 §3 `SASL *(SP mechanism)`: the raw
    /// space-separated mechanism list (may be empty).
    Sasl(B),
    /// RFC 2449 §6.4 `RESP-CODES`: `-ERR` replies carry §8 response codes.
    RespCodes,
    /// RFC 2449 §6.5 `LOGIN-DELAY delay [USER]`: minimum seconds between
    /// logins.
    LoginDelay {
        /// Seconds.
        delay: u32,
        /// `USER`: the delay may vary per user (announced before login).
        per_user: bool,
    },
    /// RFC 2449 §6.6 `PIPELINING`: the client may send commands without
    /// waiting for each reply.
    Pipelining,
    /// RFC 2449 §6.7 `EXPIRE policy [USER]`,
    /// `policy = 1*DIGIT / "NEVER"`: days a retrieved message may stay on
    /// the server.
    Expire {
        /// Days, or `None` for `NEVER`.
        days: Option<u32>,
        /// `USER`: the policy may vary per user (announced before login).
        per_user: bool,
    },
    /// RFC 2449 §6.8 `UIDL`: the `UIDL` command is available.
    Uidl,
    /// RFC 2449 §6.9 `IMPLEMENTATION impl-text`: free text naming the
    /// server software (not empty).
    Implementation(B),
    /// RFC 2595 §4 `STLS`: the server can switch to TLS.
    Stls,
    /// RFC 6856 §2 `UTF8 [USER]`: the `UTF8` command is available.
    Utf8 {
        /// `USER`: UTF-8 user names and passwords are accepted too.
        user: bool,
    },
    /// RFC 6856 §3 `LANG`: the `LANG` command is available.
    Lang,
    /// RFC 3206 `AUTH-RESP-CODE`: the `[AUTH]` response code is used.
    AuthRespCode,
    /// Any other capability, or a known name with unexpected arguments.
    Other {
        /// The `capa-tag`, as written.
        name: B,
        /// Everything after the name and its SP, raw (may be empty).
        args: B,
    },
}

/// A [`Capability`] borrowed from the line it was parsed from
/// ([`Capability::parse_borrowed`]).
pub type CapabilityRef<'a> = Capability<&'a [u8]>;

/// The argumentless capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    Top,
    User,
    RespCodes,
    Pipelining,
    Uidl,
    Stls,
    Lang,
    AuthRespCode,
}

impl Flag {
    /// The capability it is.
    fn capability<B: Octets>(self) -> Capability<B> {
        match self {
            Flag::Top => Capability::Top,
            Flag::User => Capability::User,
            Flag::RespCodes => Capability::RespCodes,
            Flag::Pipelining => Capability::Pipelining,
            Flag::Uidl => Capability::Uidl,
            Flag::Stls => Capability::Stls,
            Flag::Lang => Capability::Lang,
            Flag::AuthRespCode => Capability::AuthRespCode,
        }
    }
}

/// A known capability name, read ASCII case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    /// The capability it is without arguments.
    Flag(Flag),
    Sasl,
    Implementation,
    LoginDelay,
    Expire,
    Utf8,
}

impl Name {
    /// The known name `name` is, by its length and then its upper-case
    /// octets (one comparison, not one per table entry).
    fn of(name: &[u8]) -> Option<Name> {
        let mut upper = [0u8; 16];
        let folded = upper.get_mut(..name.len())?;
        for (u, c) in folded.iter_mut().zip(name) {
            *u = c.to_ascii_uppercase();
        }
        Some(match &*folded {
            b"TOP" => Name::Flag(Flag::Top),
            b"USER" => Name::Flag(Flag::User),
            b"RESP-CODES" => Name::Flag(Flag::RespCodes),
            b"PIPELINING" => Name::Flag(Flag::Pipelining),
            b"UIDL" => Name::Flag(Flag::Uidl),
            b"STLS" => Name::Flag(Flag::Stls),
            b"LANG" => Name::Flag(Flag::Lang),
            b"AUTH-RESP-CODE" => Name::Flag(Flag::AuthRespCode),
            b"SASL" => Name::Sasl,
            b"IMPLEMENTATION" => Name::Implementation,
            b"LOGIN-DELAY" => Name::LoginDelay,
            b"EXPIRE" => Name::Expire,
            b"UTF8" => Name::Utf8,
            _ => return None,
        })
    }
}

/// RFC 2449 §9 `cchar`: printable ASCII except `.` (DEL is left out).
fn is_cchar(c: u8) -> bool {
    is_vchar(c) && c != b'.'
}

/// Splits `args` into at most two space-separated words; `None` if there
/// are more.
fn one_or_two(args: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let mut words = args.split(|&c| c == b' ').filter(|w| !w.is_empty());
    let first = words.next()?;
    let second = words.next();
    match words.next() {
        None => Some((first, second)),
        Some(_) => None,
    }
}

/// The optional `USER` word: `Some(false)` when absent, `Some(true)` for
/// `USER` (any case), `None` for any other word.
fn user_flag(word: Option<&[u8]>) -> Option<bool> {
    match word {
        None => Some(false),
        Some(w) if w.eq_ignore_ascii_case(b"USER") => Some(true),
        Some(_) => None,
    }
}

impl Capability {
    /// Parses one capability line of a `CAPA` response, given without its
    /// CRLF (and after the session removed dot-stuffing).
    ///
    /// Lenient where servers are known to differ: trailing spaces are
    /// ignored and arguments may be separated by several spaces and contain
    /// any octets but CR, LF and NUL. An empty line, a name that is not
    /// `1*cchar`, or a line starting with SP is
    /// [`SyntaxError::InvalidResponse`] (the session decides whether to skip
    /// it).
    pub fn parse(line: &Bytes) -> Result<Capability, SyntaxError> {
        capability_in(line, line)
    }
}

impl<'a> Capability<&'a [u8]> {
    /// [`Capability::parse`] of a borrowed line: the same grammar and
    /// errors, the byte strings are sub-slices of `line`.
    pub fn parse_borrowed(line: &'a [u8]) -> Result<Self, SyntaxError> {
        capability_in(line, line)
    }

    /// The owned capability, its byte strings copied into fresh [`Bytes`]
    /// (use `map_octets(`[`attach`](crate::octets::attach)`(&line))` to
    /// share `line` instead).
    pub fn into_owned(self) -> Capability {
        self.map_octets(crate::octets::copy)
    }
}

/// [`Capability::parse`] of `text`, a part of `owner`: the values are
/// pieces of `owner` (a listing is read without a handle per line).
fn capability_in<'a, S: Source<'a>>(
    owner: S,
    text: &'a [u8],
) -> Result<Capability<S::Out>, SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidResponse { reason };
    let end = text.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    let text = text.get(..end).unwrap_or_default();
    let (name, args) = split_sp(text);
    if name.is_empty() || !name.iter().all(|&c| is_cchar(c)) {
        return Err(invalid(
            "capability name must be printable ASCII without \".\" (RFC 2449 §9)",
        ));
    }
    let args = args.map_or(&[][..], <[u8]>::trim_ascii_start);
    if !is_line_text(args) {
        return Err(invalid("capability arguments contain CR, LF or NUL"));
    }
    let known = Name::of(name);
    let typed = match known {
        Some(Name::Flag(flag)) if args.is_empty() => Some(flag.capability()),
        _ => None,
    };
    let is = |n: Name| known == Some(n);
    let typed = typed.or_else(|| {
        if is(Name::Sasl) {
            Some(Capability::Sasl(owner.piece(args)))
        } else if is(Name::Implementation) && !args.is_empty() {
            Some(Capability::Implementation(owner.piece(args)))
        } else if is(Name::LoginDelay) {
            let (delay, user) = one_or_two(args)?;
            Some(Capability::LoginDelay {
                delay: whole(delay, number_u32)?,
                per_user: user_flag(user)?,
            })
        } else if is(Name::Expire) {
            let (policy, user) = one_or_two(args)?;
            let days = if policy.eq_ignore_ascii_case(b"NEVER") {
                None
            } else {
                Some(whole(policy, number_u32)?)
            };
            Some(Capability::Expire {
                days,
                per_user: user_flag(user)?,
            })
        } else if is(Name::Utf8) {
            let user = match one_or_two(args) {
                None if args.is_empty() => false,
                Some((w, None)) if w.eq_ignore_ascii_case(b"USER") => true,
                _ => return None,
            };
            Some(Capability::Utf8 { user })
        } else {
            None
        }
    });
    Ok(typed.unwrap_or_else(|| Capability::Other {
        name: owner.piece(name),
        args: owner.piece(args),
    }))
}

impl<B: Octets> Capability<B> {
    /// The same capability with every byte string turned by `f`, in wire
    /// order (name, then arguments).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Capability<C> {
        match self {
            Capability::Top => Capability::Top,
            Capability::User => Capability::User,
            Capability::Sasl(args) => Capability::Sasl(f(args)),
            Capability::RespCodes => Capability::RespCodes,
            Capability::LoginDelay { delay, per_user } => {
                Capability::LoginDelay { delay, per_user }
            }
            Capability::Pipelining => Capability::Pipelining,
            Capability::Expire { days, per_user } => Capability::Expire { days, per_user },
            Capability::Uidl => Capability::Uidl,
            Capability::Implementation(text) => Capability::Implementation(f(text)),
            Capability::Stls => Capability::Stls,
            Capability::Utf8 { user } => Capability::Utf8 { user },
            Capability::Lang => Capability::Lang,
            Capability::AuthRespCode => Capability::AuthRespCode,
            Capability::Other { name, args } => {
                let name = f(name);
                Capability::Other {
                    name,
                    args: f(args),
                }
            }
        }
    }

    /// The name (`capa-tag`): upper case for the known kinds, as written for
    /// [`Capability::Other`].
    pub fn name(&self) -> &[u8] {
        match self {
            Capability::Sasl(_) => b"SASL",
            Capability::LoginDelay { .. } => b"LOGIN-DELAY",
            Capability::Expire { .. } => b"EXPIRE",
            Capability::Implementation(_) => b"IMPLEMENTATION",
            Capability::Utf8 { .. } => b"UTF8",
            Capability::Other { name, .. } => name.as_ref(),
            Capability::Top => b"TOP",
            Capability::User => b"USER",
            Capability::RespCodes => b"RESP-CODES",
            Capability::Pipelining => b"PIPELINING",
            Capability::Uidl => b"UIDL",
            Capability::Stls => b"STLS",
            Capability::Lang => b"LANG",
            Capability::AuthRespCode => b"AUTH-RESP-CODE",
        }
    }

    /// Appends the capability line, final CRLF included. Values built by
    /// hand are written as they are: an [`Capability::Other`] whose name is
    /// a known one parses back typed.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name());
        let user = |out: &mut Vec<u8>, per_user: bool| {
            if per_user {
                out.extend_from_slice(b" USER");
            }
        };
        match self {
            // Writing to a Vec cannot fail.
            Capability::LoginDelay { delay, per_user } => {
                drop(write!(out, " {delay}"));
                user(out, *per_user);
            }
            Capability::Expire { days, per_user } => {
                match days {
                    Some(d) => drop(write!(out, " {d}")),
                    None => out.extend_from_slice(b" NEVER"),
                }
                user(out, *per_user);
            }
            Capability::Utf8 { user: u } => user(out, *u),
            Capability::Sasl(args)
            | Capability::Implementation(args)
            | Capability::Other { args, .. }
                if !args.as_ref().is_empty() =>
            {
                out.push(b' ');
                out.extend_from_slice(args.as_ref());
            }
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The capability line, final CRLF included.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(32);
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// What a server announced in its `CAPA` response (RFC 2449 §5): its
/// capabilities, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    caps: Vec<Capability>,
}

impl Capabilities {
    /// A list of `caps`.
    pub fn new(caps: Vec<Capability>) -> Capabilities {
        Capabilities { caps }
    }

    /// Parses every line of a `CAPA` body (the lines between the `+OK` line
    /// and the terminating `.`, each without CRLF and dot-stuffing) with
    /// [`Capability::parse`]; the first bad line is the error.
    pub fn from_lines<'a>(
        lines: impl IntoIterator<Item = &'a Bytes>,
    ) -> Result<Capabilities, SyntaxError> {
        let caps = lines
            .into_iter()
            .map(Capability::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Capabilities { caps })
    }

    /// Reads a `CAPA` listing as a client receives it: the lines between
    /// the `+OK` line and the terminating `.`, each ending in CRLF,
    /// dot-stuffing removed. Informational, so read tolerantly
    /// (`docs/design.md`, "Tolerant listings, strict boundary"), as Python's
    /// `poplib` and the usual clients do: leading and trailing white space
    /// of each line is removed, and a line that is then empty or does not
    /// parse with [`Capability::parse`] is skipped. `STLS` is still
    /// recognised only as that exact name (any case) without arguments. Text
    /// after the last CRLF (there is none from the session) is ignored.
    pub fn from_listing(listing: &Bytes) -> Capabilities {
        let mut caps = Vec::with_capacity(memchr::memchr_iter(b'\n', listing).count());
        let text: &[u8] = listing;
        let (mut start, mut from) = (0, 0);
        // Each line ends at the next CRLF (an LF without its CR does not end
        // it).
        while let Some(i) = text.get(from..).and_then(|r| memchr::memchr(b'\n', r)) {
            let lf = from + i;
            from = lf + 1;
            if lf == start || text.get(lf - 1) != Some(&b'\r') {
                continue;
            }
            let line = text.get(start..lf - 1).unwrap_or_default().trim_ascii();
            start = from;
            if let Ok(cap) = capability_in(listing, line) {
                caps.push(cap);
            }
        }
        Capabilities { caps }
    }

    /// Adds a capability at the end.
    pub fn push(&mut self, cap: Capability) {
        self.caps.push(cap);
    }

    /// The capabilities, in the order announced.
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.caps.iter()
    }

    /// The first capability named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Capability> {
        self.caps
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.as_bytes()))
    }

    /// True if a capability is named `name` (ASCII case-insensitive), typed
    /// or not.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// RFC 2595 §4 `STLS` was announced.
    pub fn has_stls(&self) -> bool {
        self.caps.contains(&Capability::Stls)
    }

    /// RFC 2449 §6.2 `USER` was announced (`USER`/`PASS` login).
    pub fn has_user(&self) -> bool {
        self.caps.contains(&Capability::User)
    }

    /// RFC 2449 §6.6 `PIPELINING` was announced.
    pub fn pipelining(&self) -> bool {
        self.caps.contains(&Capability::Pipelining)
    }

    /// The SASL mechanisms of every `SASL` line (RFC 2449 §6.3), in order,
    /// as written. Iterating allocates nothing.
    pub fn sasl_mechanisms(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.caps
            .iter()
            .filter_map(|cap| match cap {
                Capability::Sasl(list) => Some(list),
                _ => None,
            })
            .flat_map(|list| {
                list.split(|&c| c == b' ')
                    .filter(|m| !m.is_empty())
                    .map(move |m| list.slice_ref(m))
            })
    }

    /// Appends every capability line, each with its CRLF, but not the
    /// terminating `.` line (no line needs dot-stuffing: a name never
    /// contains `.`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for cap in &self.caps {
            cap.write_to(out);
        }
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Capabilities {
        Capabilities {
            caps: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// The differential check (issue #18): the borrowed parse of `line`
    /// succeeds or fails exactly as the owned one, and when it succeeds,
    /// attaching it to `line` or copying it gives the owned value.
    fn same_both_ways(line: &Bytes) {
        match (Capability::parse_borrowed(line), Capability::parse(line)) {
            (Ok(view), Ok(owned)) => {
                let attached = view.clone().map_octets(crate::octets::attach(line));
                assert_eq!(attached, owned, "{line:?}");
                assert_eq!(view.name(), owned.name());
                assert_eq!(view.to_bytes(), owned.to_bytes());
                assert_eq!(view.into_owned(), owned, "{line:?}");
            }
            (Err(e1), Err(e2)) => assert_eq!(e1, e2, "{line:?}"),
            (view, owned) => panic!("{line:?}: borrowed {view:?}, owned {owned:?}"),
        }
    }

    #[test]
    fn borrowed_parse_matches_owned_parse() {
        let line = b("SASL PLAIN LOGIN");
        let view = CapabilityRef::parse_borrowed(&line).unwrap();
        assert_eq!(view, Capability::Sasl(&line[5..]));
        let Capability::Sasl(list) = &view else {
            panic!()
        };
        assert_eq!(list.as_ptr(), line[5..].as_ptr());
        let owned = view.map_octets(crate::octets::attach(&line));
        assert_eq!(owned, Capability::Sasl(b("PLAIN LOGIN")));
        for s in [
            "STLS",
            "X-FOO a  b ",
            "LOGIN-DELAY soon",
            " STLS",
            "",
            "A.B",
        ] {
            same_both_ways(&b(s));
        }
    }

    fn ok(s: &str) -> Capability {
        same_both_ways(&b(s));
        match Capability::parse(&b(s)) {
            Ok(c) => c,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn round(s: &str, expect: Option<&str>) -> Capability {
        let c = ok(s);
        let wire = c.to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            format!("{}\r\n", expect.unwrap_or(s)),
            "serialization of {s:?}"
        );
        let again = Capability::parse(&wire.slice(..wire.len() - 2)).unwrap();
        assert_eq!(again, c, "round trip of {s:?}");
        c
    }

    fn other(name: &str, args: &str) -> Capability {
        Capability::Other {
            name: b(name),
            args: b(args),
        }
    }

    #[test]
    fn rfc2449_section5_example() {
        let lines = [
            "TOP",
            "USER",
            "SASL CRAM-MD5 KERBEROS_V4",
            "RESP-CODES",
            "LOGIN-DELAY 900",
            "PIPELINING",
            "EXPIRE 60",
            "UIDL",
            "IMPLEMENTATION Shlemazle-Plotz-v302",
        ];
        let parsed: Vec<Capability> = lines.iter().map(|l| round(l, None)).collect();
        assert_eq!(
            parsed,
            vec![
                Capability::Top,
                Capability::User,
                Capability::Sasl(b("CRAM-MD5 KERBEROS_V4")),
                Capability::RespCodes,
                Capability::LoginDelay {
                    delay: 900,
                    per_user: false
                },
                Capability::Pipelining,
                Capability::Expire {
                    days: Some(60),
                    per_user: false
                },
                Capability::Uidl,
                Capability::Implementation(b("Shlemazle-Plotz-v302")),
            ]
        );
        let bytes: Vec<Bytes> = lines.iter().map(|l| b(l)).collect();
        let caps = Capabilities::from_lines(&bytes).unwrap();
        assert!(caps.has_user());
        assert!(caps.pipelining());
        assert!(!caps.has_stls());
        assert!(caps.contains("top"));
        assert!(caps.contains("Implementation"));
        assert!(!caps.contains("STLS"));
        assert_eq!(
            caps.sasl_mechanisms().collect::<Vec<_>>(),
            vec![b("CRAM-MD5"), b("KERBEROS_V4")]
        );
        assert_eq!(
            caps.get("login-delay"),
            Some(&Capability::LoginDelay {
                delay: 900,
                per_user: false
            })
        );
        let mut out = Vec::new();
        caps.write_to(&mut out);
        let expected: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn rfc2449_section6_arguments() {
        assert_eq!(
            round("LOGIN-DELAY 900 USER", None),
            Capability::LoginDelay {
                delay: 900,
                per_user: true
            }
        );
        assert_eq!(
            round("EXPIRE NEVER", None),
            Capability::Expire {
                days: None,
                per_user: false
            }
        );
        assert_eq!(
            round("EXPIRE 0", None),
            Capability::Expire {
                days: Some(0),
                per_user: false
            }
        );
        assert_eq!(
            round("EXPIRE 31 USER", None),
            Capability::Expire {
                days: Some(31),
                per_user: true
            }
        );
        assert_eq!(
            round("expire never user", Some("EXPIRE NEVER USER")),
            Capability::Expire {
                days: None,
                per_user: true
            }
        );
        assert_eq!(
            round("IMPLEMENTATION Dovecot 2.3 (ready)", None),
            Capability::Implementation(b("Dovecot 2.3 (ready)"))
        );
        assert_eq!(round("SASL", None), Capability::Sasl(b("")));
        assert_eq!(round("SASL PLAIN", None), Capability::Sasl(b("PLAIN")));
    }

    #[test]
    fn extension_capabilities() {
        assert_eq!(round("STLS", None), Capability::Stls);
        assert_eq!(round("UTF8", None), Capability::Utf8 { user: false });
        assert_eq!(round("UTF8 USER", None), Capability::Utf8 { user: true });
        assert_eq!(
            round("utf8 user", Some("UTF8 USER")),
            Capability::Utf8 { user: true }
        );
        assert_eq!(round("LANG", None), Capability::Lang);
        assert_eq!(round("AUTH-RESP-CODE", None), Capability::AuthRespCode);
        let caps: Capabilities = ["CAPA-X", "STLS", "SASL PLAIN LOGIN", "SASL XOAUTH2"]
            .iter()
            .map(|l| ok(l))
            .collect();
        assert!(caps.has_stls());
        assert_eq!(
            caps.sasl_mechanisms().collect::<Vec<_>>(),
            vec![b("PLAIN"), b("LOGIN"), b("XOAUTH2")]
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(round("top", Some("TOP")), Capability::Top);
        assert_eq!(round("Stls", Some("STLS")), Capability::Stls);
        assert_eq!(round("user", Some("USER")), Capability::User);
        assert_eq!(
            round("Pipelining", Some("PIPELINING")),
            Capability::Pipelining
        );
        assert_eq!(
            round("sasl plain", Some("SASL plain")),
            Capability::Sasl(b("plain"))
        );
        assert_eq!(
            round("login-delay 5 User", Some("LOGIN-DELAY 5 USER")),
            Capability::LoginDelay {
                delay: 5,
                per_user: true
            }
        );
        // Unknown names keep their spelling.
        assert_eq!(round("X-Foo bar baz", None), other("X-Foo", "bar baz"));
        assert_eq!(round("XOTHER", None), other("XOTHER", ""));
    }

    #[test]
    fn known_names_with_odd_arguments_are_other() {
        for (s, name, args) in [
            ("TOP now", "TOP", "now"),
            ("STLS 1", "STLS", "1"),
            ("LOGIN-DELAY", "LOGIN-DELAY", ""),
            ("LOGIN-DELAY soon", "LOGIN-DELAY", "soon"),
            ("LOGIN-DELAY 4294967296", "LOGIN-DELAY", "4294967296"),
            ("LOGIN-DELAY 900 USER x", "LOGIN-DELAY", "900 USER x"),
            ("LOGIN-DELAY 900 EVERYONE", "LOGIN-DELAY", "900 EVERYONE"),
            ("LOGIN-DELAY -1", "LOGIN-DELAY", "-1"),
            ("EXPIRE", "EXPIRE", ""),
            ("EXPIRE ALWAYS", "EXPIRE", "ALWAYS"),
            ("EXPIRE 1 2", "EXPIRE", "1 2"),
            ("IMPLEMENTATION", "IMPLEMENTATION", ""),
            ("UTF8 ALL", "UTF8", "ALL"),
            ("UTF8 USER USER", "UTF8", "USER USER"),
            ("LANG fr", "LANG", "fr"),
        ] {
            assert_eq!(round(s, None), other(name, args), "{s:?}");
        }
    }

    #[test]
    fn lenient_spacing() {
        assert_eq!(round("TOP ", Some("TOP")), Capability::Top);
        assert_eq!(round("STLS   ", Some("STLS")), Capability::Stls);
        assert_eq!(
            round("LOGIN-DELAY  900   USER ", Some("LOGIN-DELAY 900 USER")),
            Capability::LoginDelay {
                delay: 900,
                per_user: true
            }
        );
        assert_eq!(
            round("SASL  PLAIN   LOGIN", Some("SASL PLAIN   LOGIN")),
            Capability::Sasl(b("PLAIN   LOGIN"))
        );
        let caps = Capabilities::new(vec![ok("SASL  PLAIN   LOGIN ")]);
        assert_eq!(
            caps.sasl_mechanisms().collect::<Vec<_>>(),
            vec![b("PLAIN"), b("LOGIN")]
        );
    }

    #[test]
    fn malformed_lines() {
        for s in [
            "",
            " ",
            "   ",
            " TOP",
            ".",
            "..",
            "X.Y",
            "TOP\tX",
            "T\x7fP",
            "\u{e9}",
            "TOP\r",
            "SASL a\0b",
            "SASL a\rb",
            "X a\nb",
        ] {
            assert!(
                matches!(
                    Capability::parse(&b(s)),
                    Err(SyntaxError::InvalidResponse { .. })
                ),
                "{s:?}"
            );
        }
        assert!(Capability::parse(&Bytes::from_static(b"\xff")).is_err());
        let lines = [b("TOP"), b("")];
        assert!(Capabilities::from_lines(&lines).is_err());
        // 8-bit arguments are kept.
        assert_eq!(
            round("IMPLEMENTATION Séréna", None),
            Capability::Implementation(b("Séréna"))
        );
    }

    #[test]
    fn capabilities_collection() {
        let mut caps = Capabilities::default();
        assert!(!caps.has_stls() && !caps.has_user() && !caps.pipelining());
        assert_eq!(caps.sasl_mechanisms().count(), 0);
        caps.push(Capability::Stls);
        caps.push(Capability::User);
        caps.push(other("X-THING", "1"));
        assert!(caps.has_stls() && caps.has_user());
        assert!(caps.contains("x-thing"));
        assert!(caps.contains("stls"));
        assert!(!caps.contains("X-THIN"));
        assert_eq!(caps.iter().count(), 3);
        assert_eq!(caps.get("X-Thing"), Some(&other("X-THING", "1")));
        // Names of all kinds.
        for (cap, name) in [
            (Capability::Top, "TOP"),
            (Capability::User, "USER"),
            (Capability::Sasl(b("")), "SASL"),
            (Capability::RespCodes, "RESP-CODES"),
            (
                Capability::LoginDelay {
                    delay: 0,
                    per_user: false,
                },
                "LOGIN-DELAY",
            ),
            (Capability::Pipelining, "PIPELINING"),
            (
                Capability::Expire {
                    days: None,
                    per_user: false,
                },
                "EXPIRE",
            ),
            (Capability::Uidl, "UIDL"),
            (Capability::Implementation(b("x")), "IMPLEMENTATION"),
            (Capability::Stls, "STLS"),
            (Capability::Utf8 { user: false }, "UTF8"),
            (Capability::Lang, "LANG"),
            (Capability::AuthRespCode, "AUTH-RESP-CODE"),
        ] {
            assert_eq!(cap.name(), name.as_bytes());
            let wire = cap.to_bytes();
            assert_eq!(Capability::parse(&wire.slice(..wire.len() - 2)), Ok(cap));
        }
    }

    #[test]
    fn zero_copy() {
        let line = b("SASL PLAIN LOGIN");
        let Capability::Sasl(list) = Capability::parse(&line).unwrap() else {
            panic!()
        };
        assert_eq!(list.as_ptr(), line[5..].as_ptr());
    }

    // -----------------------------------------------------------------------
    // Pseudo-random round trips and mutations.
    // -----------------------------------------------------------------------

    /// xorshift64*: deterministic, no extra crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
        fn string_from(&mut self, alphabet: &[&str], min: usize, max: usize) -> String {
            let n = min + self.below(max - min + 1);
            (0..n).map(|_| self.pick(alphabet)).collect()
        }
    }

    fn gen_capability(r: &mut Rng) -> Capability {
        let words = |r: &mut Rng, min: usize| {
            let n = min + r.below(4);
            let list: Vec<String> = (0..n)
                .map(|_| r.string_from(&["A", "z", "-", "_", "5", "é", "(", "."], 1, 10))
                .collect();
            b(&list.join(" "))
        };
        match r.below(15) {
            0 => Capability::Top,
            1 => Capability::User,
            2 => Capability::Sasl(words(r, 0)),
            3 => Capability::RespCodes,
            4 => Capability::LoginDelay {
                delay: r.next() as u32,
                per_user: r.below(2) == 0,
            },
            5 => Capability::Pipelining,
            6 => Capability::Expire {
                days: (r.below(3) > 0).then(|| r.next() as u32),
                per_user: r.below(2) == 0,
            },
            7 => Capability::Uidl,
            8 => Capability::Implementation(words(r, 1)),
            9 => Capability::Stls,
            10 => Capability::Utf8 {
                user: r.below(2) == 0,
            },
            11 => Capability::Lang,
            12 => Capability::AuthRespCode,
            _ => Capability::Other {
                name: b(&format!(
                    "X-{}",
                    r.string_from(&["A", "z", "-", "_", "5", "!", "~"], 1, 10)
                )),
                args: words(r, 0),
            },
        }
    }

    #[test]
    fn generated_round_trips() {
        let mut r = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..5000 {
            let c = gen_capability(&mut r);
            let wire = c.to_bytes();
            same_both_ways(&wire.slice(..wire.len() - 2));
            let parsed = Capability::parse(&wire.slice(..wire.len() - 2)).unwrap();
            assert_eq!(parsed, c, "{:?}", String::from_utf8_lossy(&wire));
            assert_eq!(parsed.to_bytes(), wire);
        }
    }

    #[test]
    fn listings_are_read_tolerantly() {
        // Empty lines, white space around names, odd case, repeats and lines
        // that do not parse are skipped or accepted, never an error.
        let c = Capabilities::from_listing(&b(concat!(
            "\r\n",
            "  \t\r\n",
            "top\r\n",
            " STLS \t\r\n",
            "Top\r\n",
            "X-ODD  a  b \r\n",
            "bad.name\r\n",
            "UIDL\r\n",
            "unterminated"
        )));
        assert_eq!(
            c.iter().cloned().collect::<Vec<_>>(),
            [
                Capability::Top,
                Capability::Stls,
                Capability::Top,
                Capability::Other {
                    name: b("X-ODD"),
                    args: b("a  b")
                },
                Capability::Uidl,
            ]
        );
        assert!(c.has_stls());
        // STLS is still only that exact name without arguments.
        for not in [
            "STLSX\r\n",
            "X-STLS\r\n",
            "ST LS\r\n",
            "STLS now\r\n",
            "STLS.\r\n",
        ] {
            assert!(!Capabilities::from_listing(&b(not)).has_stls(), "{not:?}");
        }
        assert_eq!(Capabilities::from_listing(&b("")).iter().count(), 0);
    }

    /// The reading `from_listing` had before it looked for LF with
    /// `memchr` and typed names by length: lines at each CRLF found with
    /// `memmem`, names by a search of the table.
    fn from_listing_reference(listing: &Bytes) -> Vec<Capability> {
        let mut caps = Vec::new();
        let mut rest: &[u8] = listing;
        while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
            let line = rest[..i].trim_ascii();
            rest = &rest[i + 2..];
            if let Ok(cap) = Capability::parse(&listing.slice_ref(line)) {
                caps.push(cap);
            }
        }
        caps
    }

    #[test]
    fn only_crlf_ends_a_listing_line() {
        // A bare LF or CR does not end a line: the line it is in runs to the
        // next CRLF. Every listing made of these pieces reads as before.
        let pieces = [
            "\r\n",
            "\n",
            "\r",
            " ",
            "\t",
            "TOP",
            "stls",
            "SASL PLAIN",
            "sasl",
            ".",
            "X-A b",
            "LOGIN-DELAY 5 USER",
            "expire 3",
            "utf8 user",
            "\0",
            "caf\u{e9}",
            "IMPLEMENTATION",
        ];
        let mut n = 0;
        for p1 in pieces {
            for p2 in pieces {
                for p3 in pieces {
                    for end in ["\r\n", "\n", ""] {
                        let listing = b(&format!("{p1}{p2}{p3}{end}"));
                        let got = Capabilities::from_listing(&listing);
                        assert_eq!(
                            got.iter().cloned().collect::<Vec<_>>(),
                            from_listing_reference(&listing),
                            "{listing:?}"
                        );
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, pieces.len().pow(3) * 3);
        assert_eq!(
            Capabilities::from_listing(&b("TOP\nSTLS\r\nUIDL\r\n"))
                .iter()
                .cloned()
                .collect::<Vec<_>>(),
            vec![Capability::Uidl]
        );
        // Names in any case, each known one by its own length.
        let all = "top\r\nUser\r\nresp-codes\r\npipelining\r\nuidl\r\nstls\r\nlang\r\n\
                   auth-resp-code\r\nsasl x\r\nimplementation y\r\nlogin-delay 5\r\n\
                   expire never\r\nutf8\r\nTOPX\r\nAUTH-RESP-CODES\r\nIMPLEMENTATION-X\r\n";
        let c = Capabilities::from_listing(&b(all));
        assert_eq!(
            c.iter().cloned().collect::<Vec<_>>(),
            vec![
                Capability::Top,
                Capability::User,
                Capability::RespCodes,
                Capability::Pipelining,
                Capability::Uidl,
                Capability::Stls,
                Capability::Lang,
                Capability::AuthRespCode,
                Capability::Sasl(b("x")),
                Capability::Implementation(b("y")),
                Capability::LoginDelay {
                    delay: 5,
                    per_user: false
                },
                Capability::Expire {
                    days: None,
                    per_user: false
                },
                Capability::Utf8 { user: false },
                other("TOPX", ""),
                other("AUTH-RESP-CODES", ""),
                other("IMPLEMENTATION-X", ""),
            ]
        );
    }

    #[test]
    fn mutations_never_panic() {
        let seeds = [
            "SASL CRAM-MD5 KERBEROS_V4",
            "LOGIN-DELAY 900 USER",
            "EXPIRE NEVER",
            "IMPLEMENTATION Shlemazle-Plotz-v302",
            "UTF8 USER",
            "STLS",
        ];
        let noise: &[u8] = b" 09aZ.-\r\n\0\x7f\x80\xc3\xa9\xff";
        let mut r = Rng(99);
        for _ in 0..20_000 {
            let mut line = r.pick(&seeds).as_bytes().to_vec();
            for _ in 0..1 + r.below(4) {
                let at = r.below(line.len() + 1);
                match r.below(4) {
                    0 => line.insert(at, r.pick(noise)),
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    2 if at < line.len() => line[at] = r.pick(noise),
                    _ => line.truncate(at),
                }
            }
            let line = Bytes::from(line);
            same_both_ways(&line);
            if let Ok(c) = Capability::parse(&line) {
                let wire = c.to_bytes();
                let again = Capability::parse(&wire.slice(..wire.len() - 2));
                assert_eq!(again.as_ref(), Ok(&c), "{line:?}");
            }
        }
    }
}
