//! SMTP, ESMTP and LMTP commands: parsing one command line and writing it back.
//!
//! Grammar: RFC 5321 §4.1.1 and §4.1.2, with the extensions RFC 1869/5321
//! ESMTP parameters, RFC 1870 `SIZE`, RFC 6152 `BODY`, RFC 3030
//! `BDAT`/`BINARYMIME`, RFC 3461 DSN (`RET`, `ENVID`, `NOTIFY`, `ORCPT`),
//! RFC 4954 `AUTH`, RFC 6531 `SMTPUTF8` (UTF-8 in addresses), RFC 8689
//! `REQUIRETLS`, RFC 3207 `STARTTLS` and RFC 2033 `LHLO`.
//!
//! Parsing is zero-copy and comes in two forms from one grammar (see
//! [`crate::octets`]): [`Command::parse`] gives a [`Command`] whose byte
//! strings are [`Bytes::slice_ref`] handles of the line, and
//! [`Command::parse_borrowed`] gives a [`CommandRef`] whose byte strings are
//! sub-slices of the caller's buffer (no reference count). Neither
//! allocates.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use nom::bytes::complete::{take_while1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::{opt, recognize};
use nom::multi::{many0_count, many1_count};
use nom::sequence::{delimited, pair, preceded, terminated};

use crate::appvalue::{self, Unsendable};
use crate::escape::Escaped;
use crate::octets::{Octets, Source};
use crate::smtp::syntax::{
    digits_value, domain, esmtp_value, fail, general_literal, ipv4_literal, ipv6_literal, is_atext,
    is_base64, is_ldh, is_let_dig, is_xchar, local_part, utf8_non_ascii, whole, xtext1, PResult,
    SyntaxError,
};
use crate::{Secret, UsageError};

// ---------------------------------------------------------------------------
// Hosts, mailboxes and paths.
// ---------------------------------------------------------------------------

/// The argument of `EHLO`/`HELO`/`LHLO` and the domain part of a mailbox:
/// RFC 5321 §4.1.2 `Domain / address-literal`.
///
/// ```text
/// address-literal  = "[" ( IPv4-address-literal /
///                    IPv6-address-literal /
///                    General-address-literal ) "]"
/// ```
///
/// A domain may contain RFC 6531 U-labels (UTF-8). Values built by hand are
/// written out as they are: they must follow the same grammar to parse again
/// (in particular a [`Host::General`] tag must not be `IPv6`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host<B = Bytes> {
    /// `Domain = sub-domain *("." sub-domain)`, as written (case kept).
    Domain(B),
    /// `IPv4-address-literal`, written `[192.0.2.1]`.
    Ipv4(Ipv4Addr),
    /// `IPv6-address-literal`, written `[IPv6:2001:db8::1]`.
    Ipv6(Ipv6Addr),
    /// `General-address-literal = Standardized-tag ":" 1*dcontent`, written
    /// `[tag:content]`.
    General {
        /// `Standardized-tag = Ldh-str`.
        tag: B,
        /// `1*dcontent`.
        content: B,
    },
}

impl<B: Octets> Host<B> {
    /// Rebuilds the host with another byte container, calling `f` on every
    /// byte string in wire order (see [`crate::octets`]).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Host<C> {
        match self {
            Host::Domain(d) => Host::Domain(f(d)),
            Host::Ipv4(a) => Host::Ipv4(a),
            Host::Ipv6(a) => Host::Ipv6(a),
            Host::General { tag, content } => Host::General {
                tag: f(tag),
                content: f(content),
            },
        }
    }

    /// Writes the host in its wire form (no CRLF: it is part of a line).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Host::Domain(d) => out.extend_from_slice(d.as_ref()),
            // Writing to a Vec cannot fail.
            Host::Ipv4(a) => drop(write!(out, "[{a}]")),
            Host::Ipv6(a) => drop(write!(out, "[IPv6:{a}]")),
            Host::General { tag, content } => {
                out.push(b'[');
                out.extend_from_slice(tag.as_ref());
                out.push(b':');
                out.extend_from_slice(content.as_ref());
                out.push(b']');
            }
        }
    }
}

/// The host as a user should see it, peer bytes [escaped](crate::Escaped).
impl<B: Octets> fmt::Display for Host<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => write!(f, "{}", Escaped::new(d.as_ref())),
            Host::Ipv4(a) => write!(f, "[{a}]"),
            Host::Ipv6(a) => write!(f, "[IPv6:{a}]"),
            Host::General { tag, content } => write!(
                f,
                "[{}:{}]",
                Escaped::new(tag.as_ref()),
                Escaped::new(content.as_ref())
            ),
        }
    }
}

/// RFC 5321 §4.1.2 `Mailbox = Local-part "@" ( Domain / address-literal )`.
///
/// `Local-part = Dot-string / Quoted-string`; RFC 6531 allows UTF-8 in both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox<B = Bytes> {
    /// The local part exactly as on the wire: a `Dot-string`, or a
    /// `Quoted-string` with its double quotes and backslash escapes.
    pub local_part: B,
    /// The part after `@`.
    pub domain: Host<B>,
}

impl<B: Octets> Mailbox<B> {
    /// Rebuilds the mailbox with another byte container, calling `f` on
    /// every byte string in wire order.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Mailbox<C> {
        let local_part = f(self.local_part);
        Mailbox {
            local_part,
            domain: self.domain.map_octets(f),
        }
    }

    /// The local part with the quotes and `quoted-pairSMTP` escapes of a
    /// `Quoted-string` removed (borrowed unless there was an escape).
    pub fn local_part_unquoted(&self) -> Cow<'_, [u8]> {
        let lp: &[u8] = self.local_part.as_ref();
        let inner = match lp.strip_prefix(b"\"").and_then(|s| s.strip_suffix(b"\"")) {
            None => return Cow::Borrowed(lp),
            Some(inner) => inner,
        };
        if !inner.contains(&b'\\') {
            return Cow::Borrowed(inner);
        }
        let mut out = Vec::with_capacity(inner.len());
        let mut escaped = false;
        for &c in inner {
            if escaped || c != b'\\' {
                out.push(c);
                escaped = false;
            } else {
                escaped = true;
            }
        }
        Cow::Owned(out)
    }

    /// Writes `local-part@domain` (no angle brackets, no CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.local_part.as_ref());
        out.push(b'@');
        self.domain.write_to(out);
    }
}

/// The mailbox as a user should see it, peer bytes
/// [escaped](crate::Escaped) (a backslash of a quoted local part shows
/// doubled).
impl<B: Octets> fmt::Display for Mailbox<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}",
            Escaped::new(self.local_part.as_ref()),
            self.domain
        )
    }
}

/// RFC 5321 §4.1.2 `Path = "<" [ A-d-l ":" ] Mailbox ">"`.
///
/// Source routes (`A-d-l = At-domain *( "," At-domain )`) are obsolete; RFC
/// 5321 §4.1.2 and appendix C say servers "MUST accept and ignore" them. They
/// are kept raw here only so that writing the command back gives the same
/// line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Path<B = Bytes> {
    /// The mailbox.
    pub mailbox: Mailbox<B>,
    /// The raw `A-d-l`, e.g. `@a.example,@b.example` (without the `:`).
    pub source_route: Option<B>,
}

impl<B: Octets> Path<B> {
    /// Rebuilds the path with another byte container, calling `f` on every
    /// byte string in wire order (the source route first).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Path<C> {
        let source_route = self.source_route.map(&mut f);
        Path {
            mailbox: self.mailbox.map_octets(f),
            source_route,
        }
    }

    /// Writes `<[A-d-l:]mailbox>` (no CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'<');
        if let Some(route) = &self.source_route {
            out.extend_from_slice(route.as_ref());
            out.push(b':');
        }
        self.mailbox.write_to(out);
        out.push(b'>');
    }
}

/// RFC 5321 §4.1.2 `Reverse-path = Path / "<>"`: the `MAIL FROM` argument.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReversePath<B = Bytes> {
    /// The null reverse-path `<>` (bounces, RFC 5321 §4.5.5).
    Null,
    /// A mailbox.
    Path(Path<B>),
}

impl<B: Octets> ReversePath<B> {
    /// Rebuilds the reverse-path with another byte container, calling `f` on
    /// every byte string in wire order.
    pub fn map_octets<C: Octets>(self, f: impl FnMut(B) -> C) -> ReversePath<C> {
        match self {
            ReversePath::Null => ReversePath::Null,
            ReversePath::Path(p) => ReversePath::Path(p.map_octets(f)),
        }
    }

    /// Writes `<>` or the path (no CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            ReversePath::Null => out.extend_from_slice(b"<>"),
            ReversePath::Path(p) => p.write_to(out),
        }
    }
}

/// The `RCPT TO` argument, RFC 5321 §4.1.1.3:
/// `( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path )`.
///
/// `<Postmaster@domain>` is an ordinary [`ForwardPath::Path`]; only the
/// domain-less form is [`ForwardPath::Postmaster`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardPath<B = Bytes> {
    /// `Forward-path = Path`.
    Path(Path<B>),
    /// `<Postmaster>` (case-insensitive), the local postmaster.
    Postmaster,
}

impl<B: Octets> ForwardPath<B> {
    /// Rebuilds the forward-path with another byte container, calling `f`
    /// on every byte string in wire order.
    pub fn map_octets<C: Octets>(self, f: impl FnMut(B) -> C) -> ForwardPath<C> {
        match self {
            ForwardPath::Path(p) => ForwardPath::Path(p.map_octets(f)),
            ForwardPath::Postmaster => ForwardPath::Postmaster,
        }
    }

    /// Writes the path or `<Postmaster>` (no CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            ForwardPath::Path(p) => p.write_to(out),
            ForwardPath::Postmaster => out.extend_from_slice(b"<Postmaster>"),
        }
    }
}

// ---------------------------------------------------------------------------
// ESMTP parameters.
// ---------------------------------------------------------------------------

/// RFC 6152 / RFC 3030 `BODY=` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BODY=BINARYMIME` (RFC 3030, needs `BDAT`).
    BinaryMime,
}

/// RFC 3461 §4.3 `RET=` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `RET=FULL`: return the whole message in a DSN.
    Full,
    /// `RET=HDRS`: return only the headers.
    Hdrs,
}

/// RFC 3461 §4.1 `NOTIFY=` value:
/// `"NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notify {
    /// `NOTIFY=NEVER` (cannot be combined with the others).
    Never,
    /// A non-empty set of conditions; at least one field must be true,
    /// written in the order `SUCCESS,FAILURE,DELAY`.
    On {
        /// `SUCCESS`.
        success: bool,
        /// `FAILURE`.
        failure: bool,
        /// `DELAY`.
        delay: bool,
    },
}

/// One ESMTP parameter of `MAIL` or `RCPT` (RFC 5321 §4.1.2
/// `esmtp-param = esmtp-keyword ["=" esmtp-value]`), typed where the
/// extension is known. Keywords are case-insensitive on the wire.
///
/// Both commands accept every kind here: whether a parameter is allowed on a
/// command is the session's decision, not the grammar's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Parameter<B = Bytes> {
    /// RFC 1870 `SIZE=1*20DIGIT`.
    Size(u64),
    /// RFC 6152 / RFC 3030 `BODY=7BIT|8BITMIME|BINARYMIME`.
    Body(Body),
    /// RFC 6531 `SMTPUTF8` (no value).
    SmtpUtf8,
    /// RFC 3461 `RET=FULL|HDRS`.
    Ret(Ret),
    /// RFC 3461 `ENVID=xtext`, the xtext as written (not decoded).
    EnvId(B),
    /// RFC 3461 `NOTIFY=`.
    Notify(Notify),
    /// RFC 3461 `ORCPT=addr-type ";" xtext`.
    Orcpt {
        /// `addr-type = atom`, usually `rfc822`.
        addr_type: B,
        /// The xtext as written (not decoded).
        addr: B,
    },
    /// RFC 4954 §5 `AUTH=` mailbox: xtext (not decoded) or `<>`.
    Auth(B),
    /// RFC 8689 `REQUIRETLS` (no value).
    RequireTls,
    /// Any other `esmtp-keyword ["=" esmtp-value]`. The keyword must not be
    /// one of the known ones above for the value to parse back the same.
    Other {
        /// `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
        keyword: B,
        /// `esmtp-value = 1*(%d33-60 / %d62-126)` (RFC 6531: and UTF-8).
        value: Option<B>,
    },
}

impl<B: Octets> Parameter<B> {
    /// Rebuilds the parameter with another byte container, calling `f` on
    /// every byte string in wire order.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Parameter<C> {
        match self {
            Parameter::Size(n) => Parameter::Size(n),
            Parameter::Body(b) => Parameter::Body(b),
            Parameter::SmtpUtf8 => Parameter::SmtpUtf8,
            Parameter::Ret(r) => Parameter::Ret(r),
            Parameter::EnvId(v) => Parameter::EnvId(f(v)),
            Parameter::Notify(n) => Parameter::Notify(n),
            Parameter::Orcpt { addr_type, addr } => {
                let addr_type = f(addr_type);
                Parameter::Orcpt {
                    addr_type,
                    addr: f(addr),
                }
            }
            Parameter::Auth(v) => Parameter::Auth(f(v)),
            Parameter::RequireTls => Parameter::RequireTls,
            Parameter::Other { keyword, value } => {
                let keyword = f(keyword);
                Parameter::Other {
                    keyword,
                    value: value.map(f),
                }
            }
        }
    }

    /// The keyword: upper case for the known kinds, as written for `Other`.
    pub fn keyword(&self) -> &[u8] {
        match self {
            Parameter::Size(_) => b"SIZE",
            Parameter::Body(_) => b"BODY",
            Parameter::SmtpUtf8 => b"SMTPUTF8",
            Parameter::Ret(_) => b"RET",
            Parameter::EnvId(_) => b"ENVID",
            Parameter::Notify(_) => b"NOTIFY",
            Parameter::Orcpt { .. } => b"ORCPT",
            Parameter::Auth(_) => b"AUTH",
            Parameter::RequireTls => b"REQUIRETLS",
            Parameter::Other { keyword, .. } => keyword.as_ref(),
        }
    }

    /// Writes the `esmtp-param` (`KEYWORD[=value]`, no separator, no CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.keyword());
        match self {
            Parameter::Size(n) => drop(write!(out, "={n}")),
            Parameter::Body(b) => out.extend_from_slice(match b {
                Body::SevenBit => b"=7BIT",
                Body::EightBitMime => b"=8BITMIME",
                Body::BinaryMime => b"=BINARYMIME",
            }),
            Parameter::SmtpUtf8 | Parameter::RequireTls => {}
            Parameter::Ret(r) => out.extend_from_slice(match r {
                Ret::Full => b"=FULL",
                Ret::Hdrs => b"=HDRS",
            }),
            Parameter::EnvId(v) | Parameter::Auth(v) => {
                out.push(b'=');
                out.extend_from_slice(v.as_ref());
            }
            Parameter::Notify(Notify::Never) => out.extend_from_slice(b"=NEVER"),
            Parameter::Notify(Notify::On {
                success,
                failure,
                delay,
            }) => {
                let mut sep = b'=';
                for (on, name) in [
                    (success, &b"SUCCESS"[..]),
                    (failure, b"FAILURE"),
                    (delay, b"DELAY"),
                ] {
                    if *on {
                        out.push(sep);
                        out.extend_from_slice(name);
                        sep = b',';
                    }
                }
            }
            Parameter::Orcpt { addr_type, addr } => {
                out.push(b'=');
                out.extend_from_slice(addr_type.as_ref());
                out.push(b';');
                out.extend_from_slice(addr.as_ref());
            }
            Parameter::Other { value, .. } => {
                if let Some(v) = value {
                    out.push(b'=');
                    out.extend_from_slice(v.as_ref());
                }
            }
        }
    }
}

/// RFC 5321 §4.1.2 `Mail-parameters` / `Rcpt-parameters`:
/// `esmtp-param *(SP esmtp-param)`.
///
/// Stored as the raw, fully validated bytes of the parameter part of the
/// line (no `Vec`: parsing a command allocates nothing). Every parameter was
/// checked when the command was parsed, so [`Parameters::iter`] yields each
/// one typed. Duplicate keywords (case-insensitive) are a syntax error.
///
/// Equality compares the raw bytes, so `size=1` and `SIZE=1` differ, and
/// whether [`Parameters::from_params`] found a value that would not read
/// back as itself (such a list is never sent).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Parameters<B = Bytes>(B, Unsendable);

impl<B: std::fmt::Debug> std::fmt::Debug for Parameters<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut t = f.debug_tuple("Parameters");
        t.field(&self.0);
        if let Some(reason) = self.1 .0 {
            t.field(&format_args!("unsendable: {reason}"));
        }
        t.finish()
    }
}

impl Parameters {
    /// No parameters.
    pub fn new() -> Parameters {
        Parameters(Bytes::new(), Unsendable(None))
    }

    /// Serializes `params`, separated by single spaces. Each value is
    /// checked as [`Parameters::try_from_params`] does; a list holding a
    /// value that would not read back as itself (`ENVID=a b`, which reads
    /// back as two parameters) is kept, but marked: a command carrying it
    /// is refused when sent ([`Command::check`], `UsageError::InvalidValue`).
    /// Prefer `try_from_params`, which says so at once.
    pub fn from_params(params: &[Parameter]) -> Parameters {
        let unsendable = Unsendable(Parameters::check_each(params).err());
        Parameters(Parameters::serialize(params), unsendable)
    }

    fn serialize(params: &[Parameter]) -> Bytes {
        let mut out = Vec::new();
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            p.write_to(&mut out);
        }
        Bytes::from(out)
    }

    /// Each parameter written alone must read back as itself.
    fn check_each(params: &[Parameter]) -> Result<(), &'static str> {
        let mut one = Vec::new();
        for p in params {
            one.clear();
            p.write_to(&mut one);
            if one.contains(&b' ') {
                return Err("contains SP");
            }
            let (keyword, value) = split_param(&one)?;
            let back = typed_param(keyword, value, Bytes::copy_from_slice)?;
            if back != *p {
                return Err("would be read back as a different parameter (use the typed kind)");
            }
        }
        Ok(())
    }

    /// Like [`Parameters::from_params`], but checks each parameter first:
    /// it must be written as exactly one `esmtp-param` that reads back as
    /// the same [`Parameter`] (so a value cannot hold SP, CR, LF or `=`
    /// where the grammar forbids it, nor add a parameter), and each keyword
    /// may appear once. Use it for values that come from outside the
    /// program. The error is [`UsageError::InvalidValue`].
    pub fn try_from_params(params: &[Parameter]) -> Result<Parameters, UsageError> {
        const FIELD: &str = "ESMTP parameter";
        Parameters::check_each(params).map_err(|reason| appvalue::invalid(FIELD, reason))?;
        let all = Parameters(Parameters::serialize(params), Unsendable(None));
        if !all.is_empty() {
            Parameters::validate(&all.0).map_err(|reason| appvalue::invalid(FIELD, reason))?;
        }
        Ok(all)
    }
}

impl<B: Octets> Parameters<B> {
    /// Rebuilds the list with another byte container: `f` is called once,
    /// on the raw parameter text. If `f` returns other octets than it was
    /// given (anything but a copy or a view of the same text), the list is
    /// no longer known to follow the grammar: it is marked so, and a command
    /// carrying it is refused when sent ([`Command::check`]).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Parameters<C> {
        let Parameters(raw, unsendable) = self;
        let mapped = f(raw.clone());
        let unsendable = if mapped.as_ref() == raw.as_ref() {
            unsendable
        } else {
            Unsendable(Some("changed by map_octets"))
        };
        Parameters(mapped, unsendable)
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_empty()
    }

    /// The raw parameter text, as on the wire.
    pub fn as_bytes(&self) -> &B {
        &self.0
    }
}

impl<B: Octets> Parameters<B> {
    /// The parameters, typed, in wire order. Each byte string is a piece of
    /// the raw text (a [`Bytes::slice_ref`] handle, or a sub-slice of the
    /// same buffer for the borrowed form).
    pub fn iter(&self) -> impl Iterator<Item = Parameter<B>> + '_ {
        self.0
            .as_ref()
            .split(|&c| c == b' ')
            .filter_map(move |token| {
                let (keyword, value) = split_param(token).ok()?;
                typed_param(keyword, value, |s| self.0.piece_of(s)).ok()
            })
    }

    /// The parameter whose keyword equals `keyword` (ASCII case-insensitive).
    pub fn get(&self, keyword: &str) -> Option<Parameter<B>> {
        self.0.as_ref().split(|&c| c == b' ').find_map(|token| {
            let (kw, value) = split_param(token).ok()?;
            if kw.eq_ignore_ascii_case(keyword.as_bytes()) {
                typed_param(kw, value, |s| self.0.piece_of(s)).ok()
            } else {
                None
            }
        })
    }
}

/// The keywords met so far in a parameter list, for duplicate detection:
/// an exact bit per known keyword, and for the others a cheap fingerprint
/// filter so that the list is rescanned only when a fingerprint repeats.
#[derive(Default)]
struct Seen {
    known: u32,
    other: u64,
}

impl Seen {
    /// Records `keyword` (of kind `kw`, the `i`-th token of `raw`); a
    /// keyword already in `raw`'s first `i` tokens (case-insensitive) is a
    /// duplicate.
    fn note(&mut self, kw: Kw, keyword: &[u8], raw: &[u8], i: usize) -> Result<(), &'static str> {
        if kw != Kw::Other {
            let bit = 1u32 << (kw as u32);
            if self.known & bit != 0 {
                return Err("duplicate ESMTP parameter");
            }
            self.known |= bit;
            return Ok(());
        }
        let first = keyword.first().map_or(0, u8::to_ascii_lowercase);
        let last = keyword.last().map_or(0, u8::to_ascii_lowercase);
        let hash = (keyword.len() as u64)
            .wrapping_mul(7)
            .wrapping_add(u64::from(first) * 3 + u64::from(last));
        let bit = 1u64 << (hash % 64);
        if self.other & bit != 0
            && raw.split(|&c| c == b' ').take(i).any(|t| {
                t.split(|&c| c == b'=')
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
            })
        {
            return Err("duplicate ESMTP parameter");
        }
        self.other |= bit;
        Ok(())
    }
}

impl Parameters {
    /// Checks a parameter list (the part after the path's SP): the one-pass
    /// scan of [`params_known_ok`] when it can tell, else token by token
    /// (which also finds the reason of a refusal).
    fn validate(raw: &[u8]) -> Result<(), &'static str> {
        if params_known_ok(raw) {
            return Ok(());
        }
        Parameters::validate_tokens(raw)
    }

    /// Checks a parameter list token by token.
    fn validate_tokens(raw: &[u8]) -> Result<(), &'static str> {
        let mut seen = Seen::default();
        for (i, token) in raw.split(|&c| c == b' ').enumerate() {
            let (keyword, value) = split_keyword(token)?;
            let kw = known_keyword(keyword);
            // The typed rules of these keywords accept only values inside
            // `esmtp-value` (digits, letters, commas, xtext), so the generic
            // value scan runs only to pick the error when the typed rule
            // fails: the first failing rule is the one reported, as in
            // `split_param` then `typed_kw`.
            let typed_within_value = !matches!(kw, Kw::Other | Kw::Orcpt);
            if !typed_within_value {
                check_value(value)?;
            }
            if let Err(reason) = typed_kw(kw, keyword, value, |_| ()) {
                check_value(value)?;
                return Err(reason);
            }
            seen.note(kw, keyword, raw, i)?;
        }
        Ok(())
    }
}

impl Parameters {
    /// [`Parameters::validate`] by the book (each token split and checked,
    /// then typed), kept to test the fast path against.
    #[cfg(any(test, fuzzing))]
    fn validate_general(raw: &[u8]) -> Result<(), &'static str> {
        let mut seen = Seen::default();
        for (i, token) in raw.split(|&c| c == b' ').enumerate() {
            let (keyword, value) = split_param(token)?;
            let kw = known_keyword(keyword);
            typed_kw(kw, keyword, value, |_| ())?;
            seen.note(kw, keyword, raw, i)?;
        }
        Ok(())
    }
}

/// One pass over a parameter list made only of the keywords typed here
/// whose rules imply `esmtp-value` (SIZE, BODY, RET, NOTIFY, SMTPUTF8,
/// REQUIRETLS, ENVID and AUTH without `+` escapes), each at most once: true
/// when the list is certainly valid. False means "not known": the caller
/// runs the token-by-token check, which decides and gives the reason.
fn params_known_ok(raw: &[u8]) -> bool {
    let mut rest = raw;
    let mut seen = 0u32;
    loop {
        let k = rest.iter().position(|&c| !is_ldh(c)).unwrap_or(rest.len());
        let Some((keyword, after)) = rest.split_at_checked(k) else {
            return false;
        };
        if !keyword.first().copied().is_some_and(is_let_dig) {
            return false;
        }
        let kw = known_keyword(keyword);
        let bit = 1u32 << (kw as u32);
        if seen & bit != 0 {
            return false;
        }
        seen |= bit;
        // The value (after "="), and how many of its octets the rule took.
        let (value, len) = match (kw, after) {
            (Kw::SmtpUtf8 | Kw::RequireTls, _) => (after, 0),
            (_, [b'=', v @ ..]) => {
                let len = match kw {
                    Kw::Size => {
                        let n = v
                            .iter()
                            .position(|c| !c.is_ascii_digit())
                            .unwrap_or(v.len());
                        // 19 digits always fit in 64 bits.
                        if n > 19 {
                            return false;
                        }
                        n
                    }
                    Kw::Body => {
                        if v.get(..4).is_some_and(|h| eq_fold(h, b"7BIT")) {
                            4
                        } else if v.get(..8).is_some_and(|h| eq_fold(h, b"8BITMIME")) {
                            8
                        } else if v.get(..10).is_some_and(|h| eq_fold(h, b"BINARYMIME")) {
                            10
                        } else {
                            return false;
                        }
                    }
                    Kw::Ret
                        if v.get(..4)
                            .is_some_and(|h| eq_fold(h, b"FULL") || eq_fold(h, b"HDRS")) =>
                    {
                        4
                    }
                    Kw::Notify => match notify_prefix(v) {
                        Some((_, n)) => n,
                        None => return false,
                    },
                    Kw::EnvId | Kw::Auth => v.iter().position(|&c| !is_xchar(c)).unwrap_or(v.len()),
                    _ => return false,
                };
                (v, len)
            }
            _ => return false,
        };
        if len == 0 && !matches!(kw, Kw::SmtpUtf8 | Kw::RequireTls) {
            return false;
        }
        match value.get(len..) {
            Some([]) => return true,
            Some([b' ', r @ ..]) => rest = r,
            _ => return false,
        }
    }
}

/// Splits `esmtp-keyword ["=" esmtp-value]` and checks both halves.
fn split_param(token: &[u8]) -> Result<(&[u8], Option<&[u8]>), &'static str> {
    let (keyword, value) = split_keyword(token)?;
    check_value(value)?;
    Ok((keyword, value))
}

/// Splits `esmtp-keyword ["=" value]` and checks the keyword only.
#[inline(always)]
fn split_keyword(token: &[u8]) -> Result<(&[u8], Option<&[u8]>), &'static str> {
    if token.is_empty() {
        return Err("empty ESMTP parameter (extra space)");
    }
    // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), up to the
    // first "=": the scan stops at the first octet outside the keyword
    // class, which must be that "=" or the end.
    let bad_keyword = "invalid ESMTP parameter keyword";
    let mut k = 0;
    while token.get(k).copied().is_some_and(is_ldh) {
        k += 1;
    }
    let (keyword, value) = match token.split_at_checked(k) {
        Some((kw, [])) => (kw, None),
        Some((kw, [b'=', v @ ..])) => (kw, Some(v)),
        _ => return Err(bad_keyword),
    };
    if !keyword.first().copied().is_some_and(is_let_dig) {
        return Err(bad_keyword);
    }
    Ok((keyword, value))
}

/// Checks a parameter's value, if any, against `esmtp-value`.
fn check_value(value: Option<&[u8]>) -> Result<(), &'static str> {
    match value {
        Some(v) if whole(v, esmtp_value).is_none() => Err("invalid ESMTP parameter value"),
        _ => Ok(()),
    }
}

/// The ESMTP keywords this module types.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kw {
    Size,
    Body,
    SmtpUtf8,
    RequireTls,
    Ret,
    EnvId,
    Auth,
    Notify,
    Orcpt,
    Other,
}

/// `text` equals `name` (upper case) ignoring ASCII case. The length is
/// fixed at compile time, so the comparison unrolls: a letter of `name`
/// matches its two cases (bit 5 masked), any other octet only itself.
#[inline(always)]
fn eq_fold<const N: usize>(text: &[u8], name: &[u8; N]) -> bool {
    match <&[u8; N]>::try_from(text) {
        Ok(t) => t.iter().zip(name).fold(true, |ok, (&c, &n)| {
            let mask = if n.is_ascii_uppercase() { 0xDF } else { 0xFF };
            ok & (c & mask == n)
        }),
        Err(_) => false,
    }
}

/// Which known keyword `keyword` is (ASCII case-insensitive): one length
/// switch and at most one comparison.
fn known_keyword(keyword: &[u8]) -> Kw {
    let first = keyword.first().map_or(0, |c| c & 0xDF);
    match (keyword.len(), first) {
        (3, b'R') if eq_fold(keyword, b"RET") => Kw::Ret,
        (4, b'S') if eq_fold(keyword, b"SIZE") => Kw::Size,
        (4, b'B') if eq_fold(keyword, b"BODY") => Kw::Body,
        (4, b'A') if eq_fold(keyword, b"AUTH") => Kw::Auth,
        (5, b'E') if eq_fold(keyword, b"ENVID") => Kw::EnvId,
        (5, b'O') if eq_fold(keyword, b"ORCPT") => Kw::Orcpt,
        (6, b'N') if eq_fold(keyword, b"NOTIFY") => Kw::Notify,
        (8, b'S') if eq_fold(keyword, b"SMTPUTF8") => Kw::SmtpUtf8,
        (10, b'R') if eq_fold(keyword, b"REQUIRETLS") => Kw::RequireTls,
        _ => Kw::Other,
    }
}

/// Types one checked `esmtp-param`; `mk` turns a sub-slice into the
/// container (`()` when only the check matters).
fn typed_param<'a, C>(
    keyword: &'a [u8],
    value: Option<&'a [u8]>,
    mk: impl FnMut(&'a [u8]) -> C,
) -> Result<Parameter<C>, &'static str> {
    typed_kw(known_keyword(keyword), keyword, value, mk)
}

/// [`typed_param`] once the keyword is known to be `kw`.
fn typed_kw<'a, C>(
    kw: Kw,
    keyword: &'a [u8],
    value: Option<&'a [u8]>,
    mut mk: impl FnMut(&'a [u8]) -> C,
) -> Result<Parameter<C>, &'static str> {
    let param = if kw == Kw::Size {
        let v = value.ok_or("SIZE requires a decimal value")?;
        Parameter::Size(digits_value(v).ok_or("SIZE requires a decimal value")?)
    } else if kw == Kw::Body {
        let bad = "BODY must be 7BIT, 8BITMIME or BINARYMIME";
        Parameter::Body(match value.ok_or(bad)? {
            v if eq_fold(v, b"7BIT") => Body::SevenBit,
            v if eq_fold(v, b"8BITMIME") => Body::EightBitMime,
            v if eq_fold(v, b"BINARYMIME") => Body::BinaryMime,
            _ => return Err(bad),
        })
    } else if kw == Kw::SmtpUtf8 {
        if value.is_some() {
            return Err("SMTPUTF8 takes no value");
        }
        Parameter::SmtpUtf8
    } else if kw == Kw::RequireTls {
        if value.is_some() {
            return Err("REQUIRETLS takes no value");
        }
        Parameter::RequireTls
    } else if kw == Kw::Ret {
        let bad = "RET must be FULL or HDRS";
        Parameter::Ret(match value.ok_or(bad)? {
            v if eq_fold(v, b"FULL") => Ret::Full,
            v if eq_fold(v, b"HDRS") => Ret::Hdrs,
            _ => return Err(bad),
        })
    } else if kw == Kw::EnvId {
        let bad = "ENVID must be xtext";
        let v = value.ok_or(bad)?;
        whole(v, xtext1).ok_or(bad)?;
        Parameter::EnvId(mk(v))
    } else if kw == Kw::Auth {
        let bad = "AUTH= must be an xtext mailbox or <>";
        let v = value.ok_or(bad)?;
        whole(v, xtext1).ok_or(bad)?;
        Parameter::Auth(mk(v))
    } else if kw == Kw::Notify {
        Parameter::Notify(notify(value).ok_or("NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY")?)
    } else if kw == Kw::Orcpt {
        let bad = "ORCPT must be addr-type;xtext";
        let v = value.ok_or(bad)?;
        let (addr_type, addr) = whole(v, |i| {
            let (i, t) = take_while1(is_atext)(i)?;
            let (i, _) = char(';')(i)?;
            let (i, a) = xtext1(i)?;
            Ok((i, (t, a)))
        })
        .ok_or(bad)?;
        let addr_type = mk(addr_type);
        Parameter::Orcpt {
            addr_type,
            addr: mk(addr),
        }
    } else {
        let keyword = mk(keyword);
        Parameter::Other {
            keyword,
            value: value.map(mk),
        }
    };
    Ok(param)
}

/// `NOTIFY = "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )` (RFC 3461
/// §4.1, each at most once, ASCII case-insensitive): one pass, the first
/// letter picks the only name that can match there.
fn notify(value: Option<&[u8]>) -> Option<Notify> {
    let value = value?;
    match notify_prefix(value) {
        Some((n, len)) if len == value.len() => Some(n),
        _ => None,
    }
}

/// [`notify`] of the longest prefix of `value` that ends at its end or at a
/// SP, with that prefix's length.
#[inline(always)]
fn notify_prefix(value: &[u8]) -> Option<(Notify, usize)> {
    if value.get(..5).is_some_and(|h| eq_fold(h, b"NEVER"))
        && matches!(value.get(5), None | Some(b' '))
    {
        return Some((Notify::Never, 5));
    }
    let mut seen = 0u8;
    let mut rest = value;
    let consumed = loop {
        let (bit, len) = match rest.first().map(|c| c & 0xDF) {
            Some(b'S') if rest.get(..7).is_some_and(|h| eq_fold(h, b"SUCCESS")) => (1u8, 7),
            Some(b'F') if rest.get(..7).is_some_and(|h| eq_fold(h, b"FAILURE")) => (2, 7),
            Some(b'D') if rest.get(..5).is_some_and(|h| eq_fold(h, b"DELAY")) => (4, 5),
            _ => return None, // includes NEVER in a list, and empty items
        };
        if seen & bit != 0 {
            return None; // listed twice
        }
        seen |= bit;
        match rest.get(len..) {
            Some([b',', r @ ..]) => rest = r,
            Some([] | [b' ', ..]) => break value.len() - rest.len() + len,
            _ => return None,
        }
    };
    let on = Notify::On {
        success: seen & 1 != 0,
        failure: seen & 2 != 0,
        delay: seen & 4 != 0,
    };
    Some((on, consumed))
}

/// [`notify`] by the book (split at commas), kept to test it against.
#[cfg(any(test, fuzzing))]
fn notify_general(value: Option<&[u8]>) -> Option<Notify> {
    let value = value?;
    if eq_fold(value, b"NEVER") {
        return Some(Notify::Never);
    }
    let (mut success, mut failure, mut delay) = (false, false, false);
    for item in value.split(|&c| c == b',') {
        // One comparison per item: length and first letter pick the name.
        let flag = if eq_fold(item, b"SUCCESS") {
            &mut success
        } else if eq_fold(item, b"FAILURE") {
            &mut failure
        } else if eq_fold(item, b"DELAY") {
            &mut delay
        } else {
            return None; // includes NEVER in a list, and empty items
        };
        if *flag {
            return None; // listed twice
        }
        *flag = true;
    }
    Some(Notify::On {
        success,
        failure,
        delay,
    })
}

// ---------------------------------------------------------------------------
// Commands.
// ---------------------------------------------------------------------------

/// One SMTP/ESMTP/LMTP command (RFC 5321 §4.1.1 and the extensions above).
///
/// `Debug` never shows an `AUTH` initial response: it is a [`Secret`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<B = Bytes> {
    /// RFC 5321 §4.1.1.1 `"EHLO" SP ( Domain / address-literal )`.
    Ehlo {
        /// The client's name.
        domain: Host<B>,
    },
    /// RFC 5321 §4.1.1.1 `"HELO" SP Domain`. Address literals are accepted
    /// too, as most servers do.
    Helo {
        /// The client's name.
        domain: Host<B>,
    },
    /// RFC 2033 §4.1 `"LHLO" SP Domain` (same argument as `EHLO`).
    Lhlo {
        /// The client's name.
        domain: Host<B>,
    },
    /// RFC 5321 §4.1.1.2 `"MAIL FROM:" Reverse-path [SP Mail-parameters]`.
    Mail {
        /// The reverse-path.
        from: ReversePath<B>,
        /// ESMTP parameters.
        params: Parameters<B>,
    },
    /// RFC 5321 §4.1.1.3 `"RCPT TO:" ( "<Postmaster@" Domain ">" /
    /// "<Postmaster>" / Forward-path ) [SP Rcpt-parameters]`.
    Rcpt {
        /// The forward-path.
        to: ForwardPath<B>,
        /// ESMTP parameters.
        params: Parameters<B>,
    },
    /// RFC 5321 §4.1.1.4 `"DATA"`.
    Data,
    /// RFC 3030 §2 `"BDAT" SP chunk-size [ SP end-marker ]`,
    /// `chunk-size = 1*DIGIT`, `end-marker = "LAST"`.
    Bdat {
        /// Octets in the chunk that follows the line.
        size: u64,
        /// `LAST` was given.
        last: bool,
    },
    /// RFC 5321 §4.1.1.5 `"RSET"`.
    Rset,
    /// RFC 5321 §4.1.1.6 `"VRFY" SP String`.
    Vrfy {
        /// The argument as written (see [`Command::parse`]).
        arg: B,
    },
    /// RFC 5321 §4.1.1.7 `"EXPN" SP String`.
    Expn {
        /// The argument as written (see [`Command::parse`]).
        arg: B,
    },
    /// RFC 5321 §4.1.1.8 `"HELP" [ SP String ]`.
    Help {
        /// The topic, if any.
        topic: Option<B>,
    },
    /// RFC 5321 §4.1.1.9 `"NOOP" [ SP String ]`.
    Noop {
        /// The (ignored) argument, if any.
        arg: Option<B>,
    },
    /// RFC 5321 §4.1.1.10 `"QUIT"`.
    Quit,
    /// RFC 3207 §4 `"STARTTLS"` (no parameters).
    StartTls,
    /// RFC 4954 §4 `"AUTH" SP sasl-mech [SP initial-response]`.
    Auth {
        /// `sasl-mech = 1*20mech-char`, as written (case kept).
        mechanism: B,
        /// `initial-response = base64 / "="`, raw (not decoded; `=` is the
        /// empty response).
        initial_response: Option<Secret<B>>,
    },
}

/// A command borrowing the line it was parsed from
/// ([`Command::parse_borrowed`]): every byte string is a sub-slice of it.
pub type CommandRef<'a> = Command<&'a [u8]>;

#[derive(Clone, Copy)]
enum Verb {
    Ehlo,
    Helo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Vrfy,
    Expn,
    Help,
    Noop,
    Quit,
    StartTls,
    Auth,
}

/// The verb whose name is `text` (ASCII case-insensitive). Every verb is
/// four letters but `STARTTLS`; a letter `L` is the only octet besides its
/// lower-case twin whose value with bit 5 cleared is `L`, so one masked
/// word comparison per candidate is an exact case-insensitive match.
fn verb(text: &[u8]) -> Option<(&'static str, Verb)> {
    const fn w4(name: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*name)
    }
    match *text {
        [a, b, c, d] => {
            let v = match u32::from_le_bytes([a, b, c, d]) & 0xDFDF_DFDF {
                x if x == w4(b"MAIL") => ("MAIL", Verb::Mail),
                x if x == w4(b"RCPT") => ("RCPT", Verb::Rcpt),
                x if x == w4(b"EHLO") => ("EHLO", Verb::Ehlo),
                x if x == w4(b"DATA") => ("DATA", Verb::Data),
                x if x == w4(b"RSET") => ("RSET", Verb::Rset),
                x if x == w4(b"NOOP") => ("NOOP", Verb::Noop),
                x if x == w4(b"QUIT") => ("QUIT", Verb::Quit),
                x if x == w4(b"BDAT") => ("BDAT", Verb::Bdat),
                x if x == w4(b"HELO") => ("HELO", Verb::Helo),
                x if x == w4(b"LHLO") => ("LHLO", Verb::Lhlo),
                x if x == w4(b"AUTH") => ("AUTH", Verb::Auth),
                x if x == w4(b"VRFY") => ("VRFY", Verb::Vrfy),
                x if x == w4(b"EXPN") => ("EXPN", Verb::Expn),
                x if x == w4(b"HELP") => ("HELP", Verb::Help),
                _ => return None,
            };
            Some(v)
        }
        [a, b, c, d, e, f, g, h] => {
            let x = u64::from_le_bytes([a, b, c, d, e, f, g, h]) & 0xDFDF_DFDF_DFDF_DFDF;
            (x == u64::from_le_bytes(*b"STARTTLS")).then_some(("STARTTLS", Verb::StartTls))
        }
        _ => None,
    }
}

/// Splits a line into the verb and what follows its SP. Every verb is four
/// or eight letters, so only those two places are looked at: the line ends
/// there or has its SP there. Otherwise the whole line is returned as the
/// "verb", which [`verb`] refuses like any name that is not a verb (a verb
/// text holding a SP is refused by [`verb`] too: SP matches no letter).
#[inline(always)]
fn split_verb(input: &[u8]) -> (&[u8], Option<&[u8]>) {
    for n in [4, 8] {
        match input.split_at_checked(n) {
            Some((v, [])) => return (v, None),
            Some((v, [b' ', rest @ ..])) => return (v, Some(rest)),
            _ => {}
        }
    }
    (input, None)
}

fn bad(command: &'static str, reason: &'static str) -> SyntaxError {
    SyntaxError::InvalidArguments { command, reason }
}

fn host<'a, S: Source<'a>>(line: S, input: &'a [u8]) -> PResult<'a, Host<S::Out>> {
    if input.first() != Some(&b'[') {
        let (rest, d) = domain(input)?;
        return Ok((rest, Host::Domain(line.piece(d))));
    }
    if let Ok((rest, a)) = delimited(char('['), ipv4_literal, char(']'))(input) {
        return Ok((rest, Host::Ipv4(a)));
    }
    if let Ok((rest, a)) = delimited(char('['), ipv6_literal, char(']'))(input) {
        return Ok((rest, Host::Ipv6(a)));
    }
    if let Ok((rest, (t, c))) = delimited(char('['), general_literal, char(']'))(input) {
        let host = Host::General {
            tag: line.piece(t),
            content: line.piece(c),
        };
        return Ok((rest, host));
    }
    let (rest, d) = domain(input)?;
    Ok((rest, Host::Domain(line.piece(d))))
}

fn mailbox<'a, S: Source<'a>>(line: S, input: &'a [u8]) -> PResult<'a, Mailbox<S::Out>> {
    let (rest, lp) = local_part(input)?;
    let (rest, _) = char('@')(rest)?;
    let (rest, h) = host(line, rest)?;
    let mailbox = Mailbox {
        local_part: line.piece(lp),
        domain: h,
    };
    Ok((rest, mailbox))
}

/// `Path = "<" [ A-d-l ":" ] Mailbox ">"`.
fn path<'a, S: Source<'a>>(line: S, input: &'a [u8]) -> PResult<'a, Path<S::Out>> {
    let at_domain = |i| preceded(char('@'), domain)(i);
    let adl = recognize(pair(at_domain, many0_count(pair(char(','), at_domain))));
    let (rest, _) = char('<')(input)?;
    let (rest, route) = if rest.first() == Some(&b'@') {
        opt(terminated(adl, char(':')))(rest)?
    } else {
        (rest, None)
    };
    let (rest, mb) = mailbox(line, rest)?;
    let (rest, _) = char('>')(rest)?;
    let path = Path {
        mailbox: mb,
        source_route: route.map(|r| line.piece(r)),
    };
    Ok((rest, path))
}

/// The argument of VRFY/EXPN/HELP/NOOP. RFC 5321 says `String = Atom /
/// Quoted-string`, but real clients send mailboxes (`<a@b>`) and names with
/// spaces, so this accepts printable ASCII, SP and UTF-8, neither starting nor
/// ending with SP.
fn string_arg(input: &[u8]) -> PResult<'_, &[u8]> {
    let (rest, s) = recognize(many1_count(nom::branch::alt((
        take_while1(|c: u8| (32..=126).contains(&c)),
        utf8_non_ascii,
    ))))(input)?;
    if s.first() == Some(&b' ') || s.last() == Some(&b' ') {
        return fail();
    }
    Ok((rest, s))
}

/// Whatever follows a path: nothing, or SP and a parameter list.
fn params_after<'a, S: Source<'a>>(
    line: S,
    rest: &'a [u8],
    cmd: &'static str,
) -> Result<Parameters<S::Out>, SyntaxError> {
    if rest.is_empty() {
        return Ok(Parameters(line.piece(rest), Unsendable(None)));
    }
    let list = rest
        .strip_prefix(b" ")
        .ok_or(bad(cmd, "unexpected text after the path"))?;
    Parameters::validate(list).map_err(|reason| bad(cmd, reason))?;
    Ok(Parameters(line.piece(list), Unsendable(None)))
}

impl Command {
    /// Parses one command line, given without its CRLF.
    ///
    /// Verbs and keywords are case-insensitive. The parser is strict (no
    /// trailing spaces, single SP separators) with three documented leniencies
    /// that most servers share:
    ///
    /// - `MAIL FROM: <path>` and `RCPT TO: <path>`: one space between the
    ///   colon and the path is tolerated;
    /// - `VRFY`, `EXPN`, `HELP` and `NOOP` take any printable text (ASCII or
    ///   UTF-8, inner spaces allowed) rather than only RFC 5321 `String`;
    /// - `HELO` accepts an address literal like `EHLO`.
    ///
    /// An unknown verb is [`SyntaxError::UnknownCommand`]; a known one with
    /// bad arguments is [`SyntaxError::InvalidArguments`].
    pub fn parse(line: &Bytes) -> Result<Command, SyntaxError> {
        parse_in(line)
    }

    /// Checks that the command can be sent: its line holds no CR, LF or NUL
    /// and parses back ([`Command::parse`]) to exactly this command. Every
    /// public field is covered this way: the host (no `IPv6` general tag),
    /// the local part and source route, the ESMTP parameters (valid, each
    /// keyword once), the `VRFY`/`EXPN`/`HELP`/`NOOP` text, the `AUTH`
    /// mechanism and base64 initial response.
    ///
    /// [`ClientSession::send`](super::ClientSession::send) calls it and
    /// writes nothing on error, so application data (`VRFY` of
    /// `"bob\r\nMAIL FROM:<x@y>"`) can never add a command.
    ///
    /// The error is [`UsageError::InvalidValue`] with the verb as the field
    /// and the grammar rule that failed as the reason.
    pub fn check(&self) -> Result<(), UsageError> {
        let verb = self.verb();
        if let Command::Data | Command::Rset | Command::Quit | Command::StartTls = self {
            // No field: the line is the verb, which parses back to itself.
            return Ok(());
        }
        if let Command::Mail { params, .. } | Command::Rcpt { params, .. } = self {
            if let Some(reason) = params.1 .0 {
                return Err(appvalue::invalid(verb, reason));
            }
        }
        let wire = self.to_bytes();
        let line = appvalue::one_line(verb, &wire)?;
        let reason = match Command::parse(&wire.slice_ref(line)) {
            Ok(back) if back == *self => return Ok(()),
            Ok(_) => "would be read back as a different command",
            Err(SyntaxError::InvalidArguments { reason, .. }) => reason,
            Err(_) => "does not follow the command grammar",
        };
        Err(appvalue::invalid(verb, reason))
    }
}

impl<'a> Command<&'a [u8]> {
    /// Parses one command line, given without its CRLF, into a view
    /// borrowing `line`: the same grammar, the same errors and the same
    /// values as [`Command::parse`] (turn the result into exactly that
    /// value with `map_octets(`[`attach`](crate::octets::attach)`(&line))`),
    /// with no allocation and no reference count.
    pub fn parse_borrowed(line: &'a [u8]) -> Result<Self, SyntaxError> {
        parse_in(line)
    }

    /// Copies every byte string into a fresh [`Bytes`] (an allocation per
    /// field): a command that outlives the buffer it was parsed from.
    pub fn into_owned(self) -> Command {
        self.map_octets(crate::octets::copy)
    }
}

/// The grammar, once for both forms (see [`Command::parse`]).
fn parse_in<'a, S: Source<'a>>(line: S) -> Result<Command<S::Out>, SyntaxError> {
    {
        let input: &'a [u8] = line.octets();
        let (verb_text, args) = split_verb(input);
        let (name, verb) = verb(verb_text).ok_or(SyntaxError::UnknownCommand)?;
        let no_args = |cmd: Command<S::Out>| match args {
            None => Ok(cmd),
            Some(_) => Err(bad(name, "this command takes no arguments")),
        };
        match verb {
            Verb::Data => no_args(Command::Data),
            Verb::Rset => no_args(Command::Rset),
            Verb::Quit => no_args(Command::Quit),
            Verb::StartTls => no_args(Command::StartTls),
            Verb::Ehlo | Verb::Helo | Verb::Lhlo => {
                let reason = "expected a domain or an address literal";
                let domain = whole(args.ok_or(bad(name, reason))?, |i| host(line, i))
                    .ok_or(bad(name, reason))?;
                Ok(match verb {
                    Verb::Ehlo => Command::Ehlo { domain },
                    Verb::Helo => Command::Helo { domain },
                    _ => Command::Lhlo { domain },
                })
            }
            Verb::Mail => {
                let missing = bad(name, "MAIL requires FROM:<reverse-path>");
                let args = args.ok_or(missing.clone())?;
                let rest = match args.split_at_checked(5) {
                    Some((head, r)) if eq_fold(head, b"FROM:") => r.strip_prefix(b" ").unwrap_or(r),
                    _ => return Err(missing),
                };
                let (rest, from) = if let Some(r) = rest.strip_prefix(b"<>") {
                    (r, ReversePath::Null)
                } else {
                    let (r, p) = path(line, rest).map_err(|_| bad(name, "invalid reverse-path"))?;
                    (r, ReversePath::Path(p))
                };
                let params = params_after(line, rest, name)?;
                Ok(Command::Mail { from, params })
            }
            Verb::Rcpt => {
                let missing = bad(name, "RCPT requires TO:<forward-path>");
                let args = args.ok_or(missing.clone())?;
                let rest = match args.split_at_checked(3) {
                    Some((head, r)) if eq_fold(head, b"TO:") => r.strip_prefix(b" ").unwrap_or(r),
                    _ => return Err(missing),
                };
                let postmaster = rest
                    .split_at_checked(12)
                    .filter(|(head, _)| eq_fold(head, b"<POSTMASTER>"));
                let (rest, to) = if let Some((_, r)) = postmaster {
                    (r, ForwardPath::Postmaster)
                } else {
                    let (r, p) = path(line, rest).map_err(|_| bad(name, "invalid forward-path"))?;
                    (r, ForwardPath::Path(p))
                };
                let params = params_after(line, rest, name)?;
                Ok(Command::Rcpt { to, params })
            }
            Verb::Bdat => {
                let args = args.ok_or(bad(name, "BDAT requires a chunk size"))?;
                let (rest, digits) = take_while1::<_, _, ()>(|c: u8| c.is_ascii_digit())(args)
                    .map_err(|_| bad(name, "BDAT chunk size must be decimal digits"))?;
                let size = digits_value(digits)
                    .ok_or(bad(name, "BDAT chunk size does not fit in 64 bits"))?;
                let last = match rest {
                    b"" => false,
                    r if r.eq_ignore_ascii_case(b" LAST") => true,
                    _ => return Err(bad(name, "BDAT takes a size and an optional LAST")),
                };
                Ok(Command::Bdat { size, last })
            }
            Verb::Auth => {
                let invalid = bad(name, "AUTH requires a SASL mechanism name");
                let args = args.ok_or(invalid.clone())?;
                let (rest, mech) = take_while_m_n::<_, _, ()>(1, 20, |c: u8| {
                    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
                })(args)
                .map_err(|_| invalid.clone())?;
                let initial_response = match rest {
                    b"" => None,
                    r => {
                        let resp = r.strip_prefix(b" ").ok_or(invalid)?;
                        if resp != b"=" && !is_base64(resp) {
                            return Err(bad(name, "AUTH initial response is not base64"));
                        }
                        Some(Secret::new(line.piece(resp)))
                    }
                };
                Ok(Command::Auth {
                    mechanism: line.piece(mech),
                    initial_response,
                })
            }
            Verb::Vrfy | Verb::Expn => {
                let reason = "expected a user name or mailbox";
                let arg =
                    whole(args.ok_or(bad(name, reason))?, string_arg).ok_or(bad(name, reason))?;
                let arg = line.piece(arg);
                Ok(match verb {
                    Verb::Vrfy => Command::Vrfy { arg },
                    _ => Command::Expn { arg },
                })
            }
            Verb::Help | Verb::Noop => {
                let arg = match args {
                    None => None,
                    Some(a) => Some(
                        line.piece(whole(a, string_arg).ok_or(bad(name, "invalid argument text"))?),
                    ),
                };
                Ok(match verb {
                    Verb::Help => Command::Help { topic: arg },
                    _ => Command::Noop { arg },
                })
            }
        }
    }
}

impl<B: Octets> Command<B> {
    /// Rebuilds the command with another byte container, calling `f` on
    /// every byte string in wire order (see [`crate::octets`]):
    /// `map_octets(`[`attach`](crate::octets::attach)`(&line))` turns a
    /// [`CommandRef`] parsed from `line` into the [`Command`] that
    /// [`Command::parse`] gives, without a copy.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Command<C> {
        match self {
            Command::Ehlo { domain } => Command::Ehlo {
                domain: domain.map_octets(f),
            },
            Command::Helo { domain } => Command::Helo {
                domain: domain.map_octets(f),
            },
            Command::Lhlo { domain } => Command::Lhlo {
                domain: domain.map_octets(f),
            },
            Command::Mail { from, params } => {
                let from = from.map_octets(&mut f);
                Command::Mail {
                    from,
                    params: params.map_octets(f),
                }
            }
            Command::Rcpt { to, params } => {
                let to = to.map_octets(&mut f);
                Command::Rcpt {
                    to,
                    params: params.map_octets(f),
                }
            }
            Command::Data => Command::Data,
            Command::Bdat { size, last } => Command::Bdat { size, last },
            Command::Rset => Command::Rset,
            Command::Vrfy { arg } => Command::Vrfy { arg: f(arg) },
            Command::Expn { arg } => Command::Expn { arg: f(arg) },
            Command::Help { topic } => Command::Help {
                topic: topic.map(f),
            },
            Command::Noop { arg } => Command::Noop { arg: arg.map(f) },
            Command::Quit => Command::Quit,
            Command::StartTls => Command::StartTls,
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                let mechanism = f(mechanism);
                Command::Auth {
                    mechanism,
                    initial_response: initial_response.map(|r| Secret::new(f(r.into_inner()))),
                }
            }
        }
    }

    /// The verb, upper case: `"EHLO"`, `"MAIL"`, `"STARTTLS"`, …
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo { .. } => "EHLO",
            Command::Helo { .. } => "HELO",
            Command::Lhlo { .. } => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Vrfy { .. } => "VRFY",
            Command::Expn { .. } => "EXPN",
            Command::Help { .. } => "HELP",
            Command::Noop { .. } => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// Appends the command line, final CRLF included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.verb().as_bytes());
        match self {
            Command::Ehlo { domain } | Command::Helo { domain } | Command::Lhlo { domain } => {
                out.push(b' ');
                domain.write_to(out);
            }
            Command::Mail { from, params } => {
                out.extend_from_slice(b" FROM:");
                from.write_to(out);
                write_params(params, out);
            }
            Command::Rcpt { to, params } => {
                out.extend_from_slice(b" TO:");
                to.write_to(out);
                write_params(params, out);
            }
            Command::Data | Command::Rset | Command::Quit | Command::StartTls => {}
            Command::Bdat { size, last } => {
                drop(write!(out, " {size}"));
                if *last {
                    out.extend_from_slice(b" LAST");
                }
            }
            Command::Vrfy { arg } | Command::Expn { arg } => {
                out.push(b' ');
                out.extend_from_slice(arg.as_ref());
            }
            Command::Help { topic: arg } | Command::Noop { arg } => {
                if let Some(arg) = arg {
                    out.push(b' ');
                    out.extend_from_slice(arg.as_ref());
                }
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                out.push(b' ');
                out.extend_from_slice(mechanism.as_ref());
                if let Some(resp) = initial_response {
                    out.push(b' ');
                    out.extend_from_slice(resp.expose().as_ref());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The command line, final CRLF included.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

fn write_params<B: Octets>(params: &Parameters<B>, out: &mut Vec<u8>) {
    if !params.is_empty() {
        out.push(b' ');
        out.extend_from_slice(params.0.as_ref());
    }
}

/// Panics unless the fast paths of this module agree with the rules they
/// replaced (kept as the reference) on `input`: the parameter-list check,
/// the NOTIFY value and the verb split. Run by the fuzz targets
/// (`cfg(fuzzing)`, through `crate::fuzz_oracles`) and the unit tests.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_fast_paths(input: &[u8]) {
    assert_eq!(
        Parameters::validate(input),
        Parameters::validate_general(input),
        "parameters {input:?}"
    );
    assert_eq!(
        notify(Some(input)),
        notify_general(Some(input)),
        "notify {input:?}"
    );
    let by_the_book = match memchr::memchr(b' ', input) {
        None => (input, None),
        Some(p) => (input.get(..p).unwrap_or(input), input.get(p + 1..)),
    };
    let by_the_book = verb(by_the_book.0).map(|(name, _)| (name, by_the_book.1));
    let (v, args) = split_verb(input);
    let fast = verb(v).map(|(name, _)| (name, args));
    assert_eq!(fast, by_the_book, "verb split {input:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every test vector goes through both forms: the owned result is
    /// returned, after [`differential`] checked the borrowed one against it.
    fn parse(s: &str) -> Result<Command, SyntaxError> {
        differential(s.as_bytes())
    }

    /// `parse_borrowed` and `parse` agree on `input`: both Ok or both the
    /// same error; when Ok, the view attached to the line is the owned
    /// value (sharing its storage), `into_owned` is the owned value, both
    /// write the same line and give the same typed parameters.
    fn differential(input: &[u8]) -> Result<Command, SyntaxError> {
        let line = Bytes::copy_from_slice(input);
        let owned = Command::parse(&line);
        let borrowed = CommandRef::parse_borrowed(&line[..]);
        match (&borrowed, &owned) {
            (Ok(view), Ok(o)) => {
                let attached = view.clone().map_octets(crate::octets::attach(&line));
                assert_eq!(&attached, o, "attach {input:?}");
                assert_eq!(&view.clone().into_owned(), o, "into_owned {input:?}");
                assert_eq!(view.to_bytes(), o.to_bytes(), "write_to {input:?}");
                assert_eq!(view.verb(), o.verb());
                // Every byte string of the view lies inside the line.
                let range = line.as_ptr() as usize..=line.as_ptr() as usize + line.len();
                view.clone().map_octets(|b: &[u8]| {
                    assert!(b.is_empty() || range.contains(&(b.as_ptr() as usize)));
                    b
                });
                if let (
                    Command::Mail { params: bp, .. } | Command::Rcpt { params: bp, .. },
                    Command::Mail { params: op, .. } | Command::Rcpt { params: op, .. },
                ) = (view, o)
                {
                    let typed: Vec<Parameter> = bp
                        .iter()
                        .map(|p| p.map_octets(crate::octets::attach(&line)))
                        .collect();
                    assert_eq!(typed, op.iter().collect::<Vec<_>>(), "iter {input:?}");
                    for p in op.iter() {
                        let kw = std::str::from_utf8(p.keyword()).unwrap_or("");
                        assert_eq!(
                            bp.get(kw).map(|p| p.map_octets(crate::octets::copy)),
                            op.get(kw),
                        );
                    }
                }
            }
            (Err(b), Err(o)) => assert_eq!(b, o, "errors differ on {input:?}"),
            (b, o) => panic!("{input:?}: borrowed {b:?}, owned {o:?}"),
        }
        owned
    }

    fn ok(s: &str) -> Command {
        match parse(s) {
            Ok(c) => c,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    /// `check` passes the commands without fields at once: their line is
    /// their verb, which parses back to the same command.
    #[test]
    fn commands_without_fields_pass_check_and_round_trip() {
        for c in [
            Command::Data,
            Command::Rset,
            Command::Quit,
            Command::StartTls,
        ] {
            assert_eq!(c.check(), Ok(()));
            let wire = c.to_bytes();
            assert_eq!(&wire[..], format!("{}\r\n", c.verb()).as_bytes());
            assert_eq!(Command::parse(&wire.slice(..wire.len() - 2)), Ok(c));
        }
    }

    /// Parses, checks that writing it back gives `expect` (or `s`), and that
    /// the written form parses to the same value.
    fn round(s: &str, expect: Option<&str>) -> Command {
        let c = ok(s);
        let wire = c.to_bytes();
        let want = format!("{}\r\n", expect.unwrap_or(s));
        assert_eq!(
            String::from_utf8_lossy(&wire),
            want,
            "serialization of {s:?}"
        );
        let again = Command::parse(&wire.slice(..wire.len() - 2)).unwrap();
        assert_eq!(again, c, "round trip of {s:?}");
        c
    }

    fn invalid(s: &str) -> (&'static str, &'static str) {
        match parse(s) {
            Err(SyntaxError::InvalidArguments { command, reason }) => (command, reason),
            other => panic!("{s:?} should be invalid arguments, got {other:?}"),
        }
    }

    fn unknown(s: &str) {
        assert_eq!(parse(s), Err(SyntaxError::UnknownCommand), "{s:?}");
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn dom(s: &str) -> Host {
        Host::Domain(b(s))
    }

    fn mb(local: &str, domain: Host) -> Mailbox {
        Mailbox {
            local_part: b(local),
            domain,
        }
    }

    fn p(local: &str, domain: &str) -> Path {
        Path {
            mailbox: mb(local, dom(domain)),
            source_route: None,
        }
    }

    fn params_of(c: &Command) -> Vec<Parameter> {
        match c {
            Command::Mail { params, .. } | Command::Rcpt { params, .. } => params.iter().collect(),
            _ => panic!("no params"),
        }
    }

    #[test]
    fn rfc5321_appendix_d() {
        assert_eq!(
            round("EHLO bar.com", None),
            Command::Ehlo {
                domain: dom("bar.com")
            }
        );
        assert_eq!(
            round("HELO bar.com", None),
            Command::Helo {
                domain: dom("bar.com")
            }
        );
        assert_eq!(
            round("MAIL FROM:<Smith@bar.com>", None),
            Command::Mail {
                from: ReversePath::Path(p("Smith", "bar.com")),
                params: Parameters::new()
            }
        );
        for to in ["Jones@foo.com", "Green@foo.com", "Brown@foo.com"] {
            let (l, d) = to.split_once('@').unwrap();
            assert_eq!(
                round(&format!("RCPT TO:<{to}>"), None),
                Command::Rcpt {
                    to: ForwardPath::Path(p(l, d)),
                    params: Parameters::new()
                }
            );
        }
        assert_eq!(round("DATA", None), Command::Data);
        assert_eq!(round("QUIT", None), Command::Quit);
        assert_eq!(round("RSET", None), Command::Rset);
        assert_eq!(round("NOOP", None), Command::Noop { arg: None });
        assert_eq!(
            round("VRFY Crispin", None),
            Command::Vrfy { arg: b("Crispin") }
        );
        assert_eq!(
            round("EXPN Example-People", None),
            Command::Expn {
                arg: b("Example-People")
            }
        );
        // D.3 relayed mail
        let c = round("MAIL FROM:<JQP@bar.com>", None);
        assert_eq!(c.verb(), "MAIL");
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(round("ehlo bar.com", Some("EHLO bar.com")).verb(), "EHLO");
        assert_eq!(round("Quit", Some("QUIT")), Command::Quit);
        assert_eq!(round("starttls", Some("STARTTLS")), Command::StartTls);
        assert_eq!(round("StartTLS", Some("STARTTLS")), Command::StartTls);
        assert_eq!(
            round("mail from:<a@b>", Some("MAIL FROM:<a@b>")),
            ok("MAIL FROM:<a@b>")
        );
        assert_eq!(
            round("rcpt To:<a@b>", Some("RCPT TO:<a@b>")),
            ok("RCPT TO:<a@b>")
        );
        assert_eq!(
            round("lhlo x", Some("LHLO x")),
            Command::Lhlo { domain: dom("x") }
        );
        assert_eq!(
            round("bdat 5 last", Some("BDAT 5 LAST")),
            Command::Bdat {
                size: 5,
                last: true
            }
        );
        assert_eq!(round("rset", Some("RSET")), Command::Rset);
        assert_eq!(round("data", Some("DATA")), Command::Data);
        assert_eq!(round("help", Some("HELP")), Command::Help { topic: None });
    }

    #[test]
    fn verbs() {
        let all = [
            "EHLO a",
            "HELO a",
            "LHLO a",
            "MAIL FROM:<>",
            "RCPT TO:<Postmaster>",
            "DATA",
            "BDAT 1",
            "RSET",
            "VRFY a",
            "EXPN a",
            "HELP",
            "NOOP",
            "QUIT",
            "STARTTLS",
            "AUTH PLAIN",
        ];
        for line in all {
            let c = round(line, None);
            assert!(line.starts_with(c.verb()), "{line}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            round("EHLO [192.0.2.1]", None),
            Command::Ehlo {
                domain: Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
            }
        );
        assert_eq!(
            round("EHLO [010.000.002.001]", Some("EHLO [10.0.2.1]")),
            Command::Ehlo {
                domain: Host::Ipv4(Ipv4Addr::new(10, 0, 2, 1))
            }
        );
        assert_eq!(
            round("EHLO [IPv6:2001:db8::1]", None),
            Command::Ehlo {
                domain: Host::Ipv6("2001:db8::1".parse().unwrap())
            }
        );
        round(
            "EHLO [ipv6:2001:DB8:0:0:0:0:0:1]",
            Some("EHLO [IPv6:2001:db8::1]"),
        );
        round("EHLO [IPv6:::ffff:192.0.2.1]", None);
        assert_eq!(
            round("HELO [x-tag:some.content]", None),
            Command::Helo {
                domain: Host::General {
                    tag: b("x-tag"),
                    content: b("some.content")
                }
            }
        );
        assert_eq!(
            round("EHLO bücher.example", None),
            Command::Ehlo {
                domain: dom("bücher.example")
            }
        );
        round("EHLO 例え.テスト", None);
        round("EHLO localhost", None);
        round("EHLO 1.2.3.4", None); // digits are Let-dig: a domain
        round("EHLO a-b.c--d.e9", None);
        for bad_host in [
            "EHLO",
            "EHLO ",
            "EHLO -a.b",
            "EHLO a-.b",
            "EHLO a..b",
            "EHLO a.b.",
            "EHLO .a",
            "EHLO a_b",
            "EHLO a b",
            "EHLO a.b ",
            "EHLO  a.b",
            "EHLO [256.0.0.1]",
            "EHLO [1.2.3]",
            "EHLO [1.2.3.4",
            "EHLO 1.2.3.4]",
            "EHLO [IPv6:2001:db8:::1]",
            "EHLO [IPv6:1.2.3.4]",
            "EHLO [IPv6:fe80::1%eth0]",
            "EHLO [tag:]",
            "EHLO [tag:a[b]",
            "EHLO [tag-:x]",
            "EHLO []",
            "EHLO bad\u{7f}",
            "HELO",
            "LHLO",
        ] {
            let (cmd, reason) = invalid(bad_host);
            assert!(["EHLO", "HELO", "LHLO"].contains(&cmd));
            assert_eq!(reason, "expected a domain or an address literal");
        }
        assert!(parse("EHLO a\u{e9}").is_ok()); // é as UTF-8
        assert!(Command::parse(&Bytes::from_static(b"EHLO a\xe9")).is_err()); // Latin-1
        assert_eq!(
            Host::<Bytes>::Ipv4(Ipv4Addr::LOCALHOST).to_string(),
            "[127.0.0.1]"
        );
        assert_eq!(
            Host::<Bytes>::Ipv6(Ipv6Addr::LOCALHOST).to_string(),
            "[IPv6:::1]"
        );
        assert_eq!(dom("example.com").to_string(), "example.com");
        assert_eq!(
            Host::General {
                tag: b("t"),
                content: b("c")
            }
            .to_string(),
            "[t:c]"
        );
    }

    #[test]
    fn mail_from() {
        let c = round("MAIL FROM:<>", None);
        assert_eq!(
            c,
            Command::Mail {
                from: ReversePath::Null,
                params: Parameters::new()
            }
        );
        // One space after the colon is tolerated and dropped.
        assert_eq!(
            round("MAIL FROM: <a@b.c>", Some("MAIL FROM:<a@b.c>")),
            ok("MAIL FROM:<a@b.c>")
        );
        assert_eq!(round("MAIL FROM: <>", Some("MAIL FROM:<>")), c);
        round("MAIL FROM:<a@[192.0.2.1]>", None);
        round("MAIL FROM:<a@[IPv6:::1]>", None);
        round("MAIL FROM:<a@[tag:x]>", None);
        round("MAIL FROM:<> SIZE=0", None);
        assert_eq!(
            invalid("MAIL"),
            ("MAIL", "MAIL requires FROM:<reverse-path>")
        );
        assert_eq!(
            invalid("MAIL TO:<a@b>").1,
            "MAIL requires FROM:<reverse-path>"
        );
        assert_eq!(
            invalid("MAIL FROM<a@b>").1,
            "MAIL requires FROM:<reverse-path>"
        );
        assert_eq!(invalid("MAIL FROM:").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:  <a@b>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:a@b").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<a@b").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<a>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<@b>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<a@>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<a@b@c>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<a b@c>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<a.@c>").1, "invalid reverse-path");
        assert_eq!(invalid("MAIL FROM:<Postmaster>").1, "invalid reverse-path");
        assert_eq!(
            invalid("MAIL FROM:<a@b>x").1,
            "unexpected text after the path"
        );
        assert_eq!(
            invalid("MAIL FROM:<a@b> ").1,
            "empty ESMTP parameter (extra space)"
        );
        assert_eq!(
            invalid("MAIL FROM:<a@b> SIZE=1 ").1,
            "empty ESMTP parameter (extra space)"
        );
        assert_eq!(
            invalid("MAIL FROM:<a@b>  SIZE=1").1,
            "empty ESMTP parameter (extra space)"
        );
        assert_eq!(
            invalid("MAIL  FROM:<a@b>").1,
            "MAIL requires FROM:<reverse-path>"
        );
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            round("RCPT TO:<Postmaster>", None),
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: Parameters::new()
            }
        );
        round("RCPT TO:<postMASTER>", Some("RCPT TO:<Postmaster>"));
        assert_eq!(
            round("RCPT TO:<Postmaster@example.com>", None),
            Command::Rcpt {
                to: ForwardPath::Path(p("Postmaster", "example.com")),
                params: Parameters::new()
            }
        );
        round("RCPT TO: <a@b>", Some("RCPT TO:<a@b>"));
        round("RCPT TO:<Postmaster> NOTIFY=NEVER", None);
        assert_eq!(invalid("RCPT").1, "RCPT requires TO:<forward-path>");
        assert_eq!(
            invalid("RCPT FROM:<a@b>").1,
            "RCPT requires TO:<forward-path>"
        );
        assert_eq!(invalid("RCPT TO:<>").1, "invalid forward-path");
        assert_eq!(invalid("RCPT TO:<Postmaster").1, "invalid forward-path");
        assert_eq!(
            invalid("RCPT TO:<a@b>>").1,
            "unexpected text after the path"
        );
    }

    #[test]
    fn local_parts() {
        let c = round(r#"MAIL FROM:<"John \"Q.\" Public"@example.com>"#, None);
        let Command::Mail {
            from: ReversePath::Path(path),
            ..
        } = &c
        else {
            panic!()
        };
        assert_eq!(&path.mailbox.local_part[..], br#""John \"Q.\" Public""#);
        assert_eq!(&*path.mailbox.local_part_unquoted(), br#"John "Q." Public"#);
        assert!(matches!(path.mailbox.local_part_unquoted(), Cow::Owned(_)));
        // Display escapes the peer's bytes, backslashes included.
        assert_eq!(
            path.mailbox.to_string(),
            r#""John \\"Q.\\" Public"@example.com"#
        );

        let c = round(r#"RCPT TO:<"a b"@c>"#, None);
        let Command::Rcpt {
            to: ForwardPath::Path(path),
            ..
        } = &c
        else {
            panic!()
        };
        assert!(matches!(
            path.mailbox.local_part_unquoted(),
            Cow::Borrowed(b"a b")
        ));

        let plain = mb("a.b", dom("c"));
        assert!(matches!(plain.local_part_unquoted(), Cow::Borrowed(b"a.b")));
        let esc = mb(r#""a\\b\@""#, dom("c"));
        assert_eq!(&*esc.local_part_unquoted(), br"a\b@");

        round(r#"MAIL FROM:<""@example.com>"#, None);
        round(r#"MAIL FROM:<"@"@example.com>"#, None);
        round(r#"MAIL FROM:<"a\ b"@example.com>"#, None);
        round("MAIL FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", None);
        round("MAIL FROM:<a.b.c@example.com>", None);
        for bad_lp in [
            r#"MAIL FROM:<"a"b"@c>"#,
            r#"MAIL FROM:<"a@c>"#,
            r#"MAIL FROM:<"a\"@c>"#,
            "MAIL FROM:<\"a\tb\"@c>",
            "MAIL FROM:<a..b@c>",
            "MAIL FROM:<.a@c>",
            "MAIL FROM:<a(b)@c>",
            "MAIL FROM:<a,b@c>",
            "MAIL FROM:<a\\b@c>",
        ] {
            assert_eq!(invalid(bad_lp).1, "invalid reverse-path", "{bad_lp}");
        }
        assert!(Command::parse(&Bytes::from_static(b"MAIL FROM:<\"a\\\x01\"@c>")).is_err());
    }

    #[test]
    fn smtputf8_addresses() {
        let c = round("MAIL FROM:<用户@例子.广告> SMTPUTF8", None);
        let Command::Mail {
            from: ReversePath::Path(path),
            params,
        } = &c
        else {
            panic!()
        };
        assert_eq!(&path.mailbox.local_part[..], "用户".as_bytes());
        assert_eq!(path.mailbox.domain, dom("例子.广告"));
        assert_eq!(params.iter().collect::<Vec<_>>(), [Parameter::SmtpUtf8]);
        round("RCPT TO:<θσερ@παράδειγμα.δοκιμή>", None);
        round("RCPT TO:<\"квоты и пробелы\"@пример.рф>", None);
        round("RCPT TO:<δοκιμή@[192.0.2.1]>", None);
        // Malformed UTF-8 anywhere in an address.
        for raw in [
            &b"MAIL FROM:<\xff@b>"[..],
            b"MAIL FROM:<a@\xc3>",
            b"MAIL FROM:<a\xc3@b>",
            b"MAIL FROM:<\"\xc3\"@b>",
            b"MAIL FROM:<a@b\xed\xa0\x80>",
        ] {
            assert!(
                matches!(
                    Command::parse(&Bytes::from_static(raw)),
                    Err(SyntaxError::InvalidArguments { .. })
                ),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn source_routes() {
        let c = round("MAIL FROM:<@a.example,@b.example:user@c.example>", None);
        let Command::Mail {
            from: ReversePath::Path(path),
            ..
        } = &c
        else {
            panic!()
        };
        assert_eq!(
            path.source_route.as_deref(),
            Some(&b"@a.example,@b.example"[..])
        );
        assert_eq!(path.mailbox, mb("user", dom("c.example")));
        round("RCPT TO:<@hosta.int:jones@hostb.int>", None);
        for bad_route in [
            "RCPT TO:<@a:@b:c@d>",
            "RCPT TO:<@a,b:c@d>",
            "RCPT TO:<@:c@d>",
            "RCPT TO:<@a;@b:c@d>",
            "RCPT TO:<@a,:c@d>",
        ] {
            assert_eq!(invalid(bad_route).1, "invalid forward-path", "{bad_route}");
        }
    }

    #[test]
    fn each_parameter_kind() {
        let c = round(
            "MAIL FROM:<a@b> SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159+2B AUTH=<> REQUIRETLS",
            None,
        );
        assert_eq!(
            params_of(&c),
            [
                Parameter::Size(12345),
                Parameter::Body(Body::EightBitMime),
                Parameter::SmtpUtf8,
                Parameter::Ret(Ret::Hdrs),
                Parameter::EnvId(b("QQ314159+2B")),
                Parameter::Auth(b("<>")),
                Parameter::RequireTls,
            ]
        );
        let c = round(
            "RCPT TO:<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Jones+40foo.com X-EXT=val-1 XFLAG",
            None,
        );
        assert_eq!(
            params_of(&c),
            [
                Parameter::Notify(Notify::On {
                    success: true,
                    failure: false,
                    delay: true
                }),
                Parameter::Orcpt {
                    addr_type: b("rfc822"),
                    addr: b("Jones+40foo.com")
                },
                Parameter::Other {
                    keyword: b("X-EXT"),
                    value: Some(b("val-1"))
                },
                Parameter::Other {
                    keyword: b("XFLAG"),
                    value: None
                },
            ]
        );
        let c = ok("MAIL FROM:<a@b> size=1 body=7bit ret=full Body2=x");
        assert_eq!(
            params_of(&c),
            [
                Parameter::Size(1),
                Parameter::Body(Body::SevenBit),
                Parameter::Ret(Ret::Full),
                Parameter::Other {
                    keyword: b("Body2"),
                    value: Some(b("x"))
                }
            ]
        );
        let Command::Mail { params, .. } = &c else {
            panic!()
        };
        assert_eq!(params.get("SIZE"), Some(Parameter::Size(1)));
        assert_eq!(params.get("Size"), Some(Parameter::Size(1)));
        assert_eq!(params.get("BODY2"), params.iter().nth(3));
        assert_eq!(params.get("ENVID"), None);
        assert!(!params.is_empty());
        assert_eq!(&params.as_bytes()[..], b"size=1 body=7bit ret=full Body2=x");

        let c = ok("MAIL FROM:<a@b> BODY=BINARYMIME");
        assert_eq!(params_of(&c), [Parameter::Body(Body::BinaryMime)]);
        let c = ok("RCPT TO:<a@b> NOTIFY=failure,success,delay");
        assert_eq!(
            params_of(&c),
            [Parameter::Notify(Notify::On {
                success: true,
                failure: true,
                delay: true
            })]
        );
        let c = ok("RCPT TO:<a@b> NOTIFY=never");
        assert_eq!(params_of(&c), [Parameter::Notify(Notify::Never)]);
        let c = ok("MAIL FROM:<a@b> X-UTF8=é SIZE=18446744073709551615");
        assert_eq!(
            params_of(&c),
            [
                Parameter::Other {
                    keyword: b("X-UTF8"),
                    value: Some(b("é"))
                },
                Parameter::Size(u64::MAX)
            ]
        );
        let c = ok("MAIL FROM:<a@b> AUTH=e+3Dmc2@example.com");
        assert_eq!(params_of(&c), [Parameter::Auth(b("e+3Dmc2@example.com"))]);
    }

    #[test]
    fn bad_parameters() {
        let cases = [
            ("MAIL FROM:<a@b> SIZE", "SIZE requires a decimal value"),
            ("MAIL FROM:<a@b> SIZE=", "invalid ESMTP parameter value"),
            ("MAIL FROM:<a@b> SIZE=1k", "SIZE requires a decimal value"),
            (
                "MAIL FROM:<a@b> SIZE=18446744073709551616",
                "SIZE requires a decimal value",
            ),
            (
                "MAIL FROM:<a@b> BODY=9BIT",
                "BODY must be 7BIT, 8BITMIME or BINARYMIME",
            ),
            (
                "MAIL FROM:<a@b> BODY",
                "BODY must be 7BIT, 8BITMIME or BINARYMIME",
            ),
            ("MAIL FROM:<a@b> SMTPUTF8=yes", "SMTPUTF8 takes no value"),
            ("MAIL FROM:<a@b> REQUIRETLS=1", "REQUIRETLS takes no value"),
            ("MAIL FROM:<a@b> RET=ALL", "RET must be FULL or HDRS"),
            ("MAIL FROM:<a@b> RET", "RET must be FULL or HDRS"),
            ("MAIL FROM:<a@b> ENVID", "ENVID must be xtext"),
            ("MAIL FROM:<a@b> ENVID=a+zz", "ENVID must be xtext"),
            ("MAIL FROM:<a@b> ENVID=a+2b", "ENVID must be xtext"),
            ("MAIL FROM:<a@b> ENVID=é", "ENVID must be xtext"),
            (
                "MAIL FROM:<a@b> AUTH=a+",
                "AUTH= must be an xtext mailbox or <>",
            ),
            (
                "MAIL FROM:<a@b> AUTH",
                "AUTH= must be an xtext mailbox or <>",
            ),
            (
                "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
                "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY",
            ),
            (
                "RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS",
                "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY",
            ),
            (
                "RCPT TO:<a@b> NOTIFY=SUCCESS,",
                "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY",
            ),
            (
                "RCPT TO:<a@b> NOTIFY=SOMETIMES",
                "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY",
            ),
            (
                "RCPT TO:<a@b> NOTIFY",
                "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY",
            ),
            (
                "RCPT TO:<a@b> ORCPT=rfc822",
                "ORCPT must be addr-type;xtext",
            ),
            (
                "RCPT TO:<a@b> ORCPT=rfc822;",
                "ORCPT must be addr-type;xtext",
            ),
            ("RCPT TO:<a@b> ORCPT=;a@b", "ORCPT must be addr-type;xtext"),
            (
                "RCPT TO:<a@b> ORCPT=rfc822;a+4",
                "ORCPT must be addr-type;xtext",
            ),
            ("MAIL FROM:<a@b> -X=1", "invalid ESMTP parameter keyword"),
            ("MAIL FROM:<a@b> X_Y=1", "invalid ESMTP parameter keyword"),
            ("MAIL FROM:<a@b> =1", "invalid ESMTP parameter keyword"),
            ("MAIL FROM:<a@b> X=a=b", "invalid ESMTP parameter value"),
            ("MAIL FROM:<a@b> X=", "invalid ESMTP parameter value"),
            ("MAIL FROM:<a@b> SIZE=1 size=2", "duplicate ESMTP parameter"),
            ("MAIL FROM:<a@b> X-A X-B x-a=1", "duplicate ESMTP parameter"),
            (
                "MAIL FROM:<a@b> SMTPUTF8 BODY=8BITMIME SMTPUTF8",
                "duplicate ESMTP parameter",
            ),
            (
                "RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER",
                "duplicate ESMTP parameter",
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(invalid(line).1, reason, "{line}");
        }
        assert!(Command::parse(&Bytes::from_static(b"MAIL FROM:<a@b> X=\xff")).is_err());
        assert!(Command::parse(&Bytes::from_static(b"MAIL FROM:<a@b> X=a\tb")).is_err());
        // Many distinct parameters are fine (and the duplicate filter copes).
        let many: Vec<String> = (0..200).map(|i| format!("X{i}=v")).collect();
        let c = ok(&format!("MAIL FROM:<a@b> {}", many.join(" ")));
        assert_eq!(params_of(&c).len(), 200);
        let dup = format!("MAIL FROM:<a@b> {} x150=w", many.join(" "));
        assert_eq!(invalid(&dup).1, "duplicate ESMTP parameter");
    }

    #[test]
    fn parameters_from_params() {
        let list = [
            Parameter::Size(7),
            Parameter::Body(Body::BinaryMime),
            Parameter::Notify(Notify::On {
                success: false,
                failure: true,
                delay: false,
            }),
            Parameter::Orcpt {
                addr_type: b("rfc822"),
                addr: b("x+2By@z"),
            },
            Parameter::Other {
                keyword: b("XYZ"),
                value: Some(b("1")),
            },
        ];
        let params = Parameters::from_params(&list);
        assert_eq!(
            &params.as_bytes()[..],
            b"SIZE=7 BODY=BINARYMIME NOTIFY=FAILURE ORCPT=rfc822;x+2By@z XYZ=1"
        );
        assert_eq!(params.iter().collect::<Vec<_>>(), list);
        assert!(Parameters::from_params(&[]).is_empty());
        assert_eq!(Parameters::from_params(&[]), Parameters::new());
        assert_eq!(Parameters::new().iter().count(), 0);
        let c = Command::Rcpt {
            to: ForwardPath::Postmaster,
            params,
        };
        let wire = c.to_bytes();
        assert_eq!(Command::parse(&wire.slice(..wire.len() - 2)), Ok(c));
        assert_eq!(Parameter::<Bytes>::Size(1).keyword(), b"SIZE");
    }

    #[test]
    fn bdat() {
        assert_eq!(
            round("BDAT 0", None),
            Command::Bdat {
                size: 0,
                last: false
            }
        );
        assert_eq!(
            round("BDAT 86 LAST", None),
            Command::Bdat {
                size: 86,
                last: true
            }
        );
        assert_eq!(
            round("BDAT 18446744073709551615 LAST", None),
            Command::Bdat {
                size: u64::MAX,
                last: true
            }
        );
        round("BDAT 007", Some("BDAT 7"));
        assert_eq!(
            invalid("BDAT 18446744073709551616"),
            ("BDAT", "BDAT chunk size does not fit in 64 bits")
        );
        assert_eq!(
            invalid("BDAT 99999999999999999999999999999 LAST").1,
            "BDAT chunk size does not fit in 64 bits"
        );
        assert_eq!(invalid("BDAT").1, "BDAT requires a chunk size");
        assert_eq!(invalid("BDAT ").1, "BDAT chunk size must be decimal digits");
        assert_eq!(
            invalid("BDAT -1").1,
            "BDAT chunk size must be decimal digits"
        );
        assert_eq!(
            invalid("BDAT LAST").1,
            "BDAT chunk size must be decimal digits"
        );
        for l in [
            "BDAT 1 LAST ",
            "BDAT 1  LAST",
            "BDAT 1 FIRST",
            "BDAT 1x",
            "BDAT 1 ",
            "BDAT 1 LAST x",
        ] {
            assert_eq!(
                invalid(l).1,
                "BDAT takes a size and an optional LAST",
                "{l}"
            );
        }
    }

    #[test]
    fn auth() {
        let c = round("AUTH PLAIN AGZvbwBiYXI=", None);
        assert_eq!(
            c,
            Command::Auth {
                mechanism: b("PLAIN"),
                initial_response: Some(Secret::new(b("AGZvbwBiYXI=")))
            }
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("AGZvbwBiYXI"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(debug.contains("PLAIN"));
        round("AUTH LOGIN", None);
        round("AUTH EXTERNAL =", None);
        round(
            "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=",
            None,
        );
        round("AUTH scram-sha-1-plus", None); // case kept
        round("AUTH X_OAUTH2 dGVzdA==", None);
        round("AUTH ABCDEFGHIJKLMNOPQRST", None); // 20 chars
        assert_eq!(
            invalid("AUTH"),
            ("AUTH", "AUTH requires a SASL mechanism name")
        );
        assert_eq!(invalid("AUTH ").1, "AUTH requires a SASL mechanism name");
        assert_eq!(
            invalid("AUTH ABCDEFGHIJKLMNOPQRSTU").1,
            "AUTH requires a SASL mechanism name"
        );
        assert_eq!(
            invalid("AUTH PL.AIN").1,
            "AUTH requires a SASL mechanism name"
        );
        assert_eq!(
            invalid("AUTH PLAIN ").1,
            "AUTH initial response is not base64"
        );
        assert_eq!(
            invalid("AUTH PLAIN  dGVzdA==").1,
            "AUTH initial response is not base64"
        );
        assert_eq!(
            invalid("AUTH PLAIN dGVzdA").1,
            "AUTH initial response is not base64"
        );
        assert_eq!(
            invalid("AUTH PLAIN dGVz!A==").1,
            "AUTH initial response is not base64"
        );
        assert_eq!(
            invalid("AUTH PLAIN dGVzdA== x").1,
            "AUTH initial response is not base64"
        );
        assert_eq!(
            invalid("AUTH PLAIN ==").1,
            "AUTH initial response is not base64"
        );
        assert_eq!(
            invalid("AUTH PLAIN d===").1,
            "AUTH initial response is not base64"
        );
        // Errors never carry the response either.
        let e = parse("AUTH PLAIN c2VjcmV0!!").unwrap_err();
        assert!(!format!("{e:?}{e}").contains("c2VjcmV0"));
    }

    #[test]
    fn informational_commands() {
        round("VRFY <Smith@example.com>", None);
        round("VRFY John Smith", None);
        round("EXPN \"list name\"", None);
        round("HELP MAIL", None);
        round("NOOP anything goes here, even: <>@", None);
        round("NOOP ünïcödé", None);
        assert_eq!(
            round("HELP mail", None),
            Command::Help {
                topic: Some(b("mail"))
            }
        );
        assert_eq!(invalid("VRFY").1, "expected a user name or mailbox");
        assert_eq!(invalid("VRFY ").1, "expected a user name or mailbox");
        assert_eq!(invalid("EXPN").1, "expected a user name or mailbox");
        assert_eq!(invalid("VRFY a ").1, "expected a user name or mailbox");
        assert_eq!(invalid("VRFY a\tb").1, "expected a user name or mailbox");
        assert_eq!(invalid("HELP ").1, "invalid argument text");
        assert_eq!(invalid("NOOP  x").1, "invalid argument text");
        assert_eq!(invalid("NOOP x\u{0}").1, "invalid argument text");
        assert!(Command::parse(&Bytes::from_static(b"NOOP \xff")).is_err());
    }

    #[test]
    fn commands_without_arguments() {
        for l in [
            "QUIT foo",
            "QUIT ",
            "DATA x",
            "RSET now",
            "STARTTLS foo",
            "STARTTLS ",
        ] {
            let (_, reason) = invalid(l);
            assert_eq!(reason, "this command takes no arguments", "{l}");
        }
        let e = parse("STARTTLS foo").unwrap_err();
        assert_eq!(e.reply_code(), (501, "5.5.4"));
    }

    #[test]
    fn unknown_and_garbage() {
        for l in [
            "",
            " ",
            " QUIT",
            "QUITX",
            "QUI",
            "HELLO there",
            "STARTTLSX",
            "MAIL:FROM:<a@b>",
            "XYZZY",
            "GET / HTTP/1.1",
            "QUIT\t",
            "\u{0}",
            "QÜIT",
        ] {
            unknown(l);
        }
        for raw in [&b"QU\xc9T"[..], b"\xff\xfe", b"EHLO\xa0x", b"\x80"] {
            assert_eq!(
                Command::parse(&Bytes::from_static(raw)),
                Err(SyntaxError::UnknownCommand),
                "{raw:?}"
            );
        }
        assert_eq!(parse("FOO").unwrap_err().reply_code(), (500, "5.5.1"));
    }

    #[test]
    fn zero_copy() {
        let line = Bytes::from_static(b"MAIL FROM:<a@b.example> SIZE=10");
        let c = Command::parse(&line).unwrap();
        let Command::Mail {
            from: ReversePath::Path(path),
            params,
        } = c
        else {
            panic!()
        };
        let range = line.as_ptr() as usize..line.as_ptr() as usize + line.len();
        assert!(range.contains(&(path.mailbox.local_part.as_ptr() as usize)));
        let Host::Domain(d) = &path.mailbox.domain else {
            panic!()
        };
        assert!(range.contains(&(d.as_ptr() as usize)));
        assert!(range.contains(&(params.as_bytes().as_ptr() as usize)));
    }

    // -----------------------------------------------------------------------
    // Pseudo-random round trips.
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
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
        fn string_from(&mut self, alphabet: &[&str], min: usize, max: usize) -> String {
            let n = min + self.below(max - min + 1);
            (0..n).map(|_| self.pick(alphabet)).collect()
        }
    }

    const ALNUM: &[&str] = &["a", "b", "z", "A", "Q", "Z", "0", "5", "9", "m", "x", "K"];
    const UTF8: &[&str] = &["é", "ü", "例", "テ", "δ", "😀"];

    fn gen_label(r: &mut Rng) -> String {
        let mut s = r.string_from(ALNUM, 1, 1);
        if r.chance(10) {
            s.push_str(r.pick(UTF8));
        }
        let mut alphabet: Vec<&str> = ALNUM.to_vec();
        alphabet.push("-");
        s.push_str(&r.string_from(&alphabet, 0, 8));
        s.push_str(&r.string_from(ALNUM, 1, 1));
        s
    }

    fn gen_domain(r: &mut Rng) -> String {
        let n = 1 + r.below(4);
        (0..n).map(|_| gen_label(r)).collect::<Vec<_>>().join(".")
    }

    fn gen_host(r: &mut Rng) -> Host {
        match r.below(10) {
            0 => Host::Ipv4(Ipv4Addr::from(r.next() as u32)),
            1 => Host::Ipv6(Ipv6Addr::from(
                u128::from(r.next()) << 64 | u128::from(r.next()),
            )),
            2 => Host::Ipv6(Ipv6Addr::from(u128::from(r.next() % 1000))),
            3 => Host::General {
                tag: b(&format!("x-{}", r.string_from(ALNUM, 1, 6))),
                content: b(&r.string_from(&["a", "!", "Z", ".", "^", "~", ":", "@"], 1, 10)),
            },
            _ => dom(&gen_domain(r)),
        }
    }

    fn gen_local(r: &mut Rng) -> String {
        if r.chance(25) {
            let inner = r.string_from(
                &[
                    "a", " ", "\\\"", "\\\\", "@", ",", "é", "(", "\\x", "!", "]",
                ],
                0,
                12,
            );
            format!("\"{inner}\"")
        } else {
            let atext = &[
                "a", "Z", "0", "!", "#", "$", "%", "&", "'", "*", "+", "-", "/", "=", "?", "^",
                "_", "`", "{", "|", "}", "~", "ü", "用",
            ];
            let n = 1 + r.below(3);
            (0..n)
                .map(|_| r.string_from(atext, 1, 6))
                .collect::<Vec<_>>()
                .join(".")
        }
    }

    fn gen_path(r: &mut Rng) -> Path {
        let source_route = if r.chance(10) {
            let n = 1 + r.below(3);
            let route: Vec<String> = (0..n).map(|_| format!("@{}", gen_domain(r))).collect();
            Some(b(&route.join(",")))
        } else {
            None
        };
        Path {
            mailbox: mb(&gen_local(r), gen_host(r)),
            source_route,
        }
    }

    fn gen_xtext(r: &mut Rng) -> Bytes {
        b(&r.string_from(
            &["a", "Z", "9", "+2B", "+3D", "<", ">", "@", ".", "\\"],
            1,
            12,
        ))
    }

    fn gen_params(r: &mut Rng) -> Parameters {
        let mut list = Vec::new();
        for kind in 0..11 {
            if !r.chance(30) {
                continue;
            }
            list.push(match kind {
                0 => Parameter::Size(if r.chance(10) {
                    u64::MAX
                } else {
                    r.next() % 100_000_000
                }),
                1 => {
                    Parameter::Body(r.pick(&[Body::SevenBit, Body::EightBitMime, Body::BinaryMime]))
                }
                2 => Parameter::SmtpUtf8,
                3 => Parameter::Ret(r.pick(&[Ret::Full, Ret::Hdrs])),
                4 => Parameter::EnvId(gen_xtext(r)),
                5 => Parameter::Notify(if r.chance(25) {
                    Notify::Never
                } else {
                    let bits = 1 + r.below(7);
                    Notify::On {
                        success: bits & 1 != 0,
                        failure: bits & 2 != 0,
                        delay: bits & 4 != 0,
                    }
                }),
                6 => Parameter::Orcpt {
                    addr_type: b(r.pick(&["rfc822", "utf-8", "X-TYPE"])),
                    addr: gen_xtext(r),
                },
                7 => Parameter::Auth(gen_xtext(r)),
                8 => Parameter::RequireTls,
                9 => Parameter::Other {
                    keyword: b(&format!("X{}", r.string_from(&["A", "-", "1", "b"], 0, 6))),
                    value: if r.chance(50) {
                        Some(b(&r.string_from(
                            &["v", "<", ">", "é", "~", ":", ";", "+"],
                            1,
                            8,
                        )))
                    } else {
                        None
                    },
                },
                _ => Parameter::Other {
                    keyword: b("9LIVES"),
                    value: None,
                },
            });
        }
        // Shuffle.
        for i in (1..list.len()).rev() {
            let j = r.below(i + 1);
            list.swap(i, j);
        }
        Parameters::from_params(&list)
    }

    fn gen_base64(r: &mut Rng) -> Bytes {
        if r.chance(10) {
            return b("=");
        }
        let alphabet = &["A", "z", "0", "+", "/", "Q"];
        let mut s = String::new();
        for _ in 0..1 + r.below(5) {
            s.push_str(&r.string_from(alphabet, 4, 4));
        }
        match r.below(3) {
            0 => {}
            1 => s.replace_range(s.len() - 1.., "="),
            _ => s.replace_range(s.len() - 2.., "=="),
        }
        b(&s)
    }

    fn gen_text(r: &mut Rng) -> Bytes {
        let mut s = r.string_from(&["a", " ", "<", "@", "\"", "é", "~", ":", "Z"], 1, 12);
        if s.starts_with(' ') {
            s.insert(0, 'x');
        }
        if s.ends_with(' ') {
            s.push('y');
        }
        b(&s)
    }

    fn gen_command(r: &mut Rng) -> Command {
        match r.below(15) {
            0 => Command::Ehlo {
                domain: gen_host(r),
            },
            1 => Command::Helo {
                domain: gen_host(r),
            },
            2 => Command::Lhlo {
                domain: gen_host(r),
            },
            3 => Command::Mail {
                from: if r.chance(15) {
                    ReversePath::Null
                } else {
                    ReversePath::Path(gen_path(r))
                },
                params: gen_params(r),
            },
            4 => Command::Rcpt {
                to: if r.chance(10) {
                    ForwardPath::Postmaster
                } else {
                    ForwardPath::Path(gen_path(r))
                },
                params: gen_params(r),
            },
            5 => Command::Data,
            6 => Command::Bdat {
                size: if r.chance(10) {
                    u64::MAX
                } else {
                    r.next() % 1_000_000
                },
                last: r.chance(50),
            },
            7 => Command::Rset,
            8 => Command::Vrfy { arg: gen_text(r) },
            9 => Command::Expn { arg: gen_text(r) },
            10 => Command::Help {
                topic: r.chance(50).then(|| gen_text(r)),
            },
            11 => Command::Noop {
                arg: r.chance(50).then(|| gen_text(r)),
            },
            12 => Command::Quit,
            13 => Command::StartTls,
            _ => Command::Auth {
                mechanism: b(r.pick(&["PLAIN", "LOGIN", "XOAUTH2", "SCRAM-SHA-256", "cram-md5"])),
                initial_response: r.chance(60).then(|| Secret::new(gen_base64(r))),
            },
        }
    }

    #[test]
    fn random_round_trips() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..5000 {
            let cmd = gen_command(&mut r);
            let wire = cmd.to_bytes();
            assert!(wire.ends_with(b"\r\n"));
            let line = wire.slice(..wire.len() - 2);
            let parsed = Command::parse(&line).unwrap_or_else(|e| {
                panic!(
                    "#{i}: {:?} did not parse: {e}",
                    String::from_utf8_lossy(&line)
                )
            });
            assert_eq!(parsed, cmd, "#{i}: {:?}", String::from_utf8_lossy(&line));
            assert_eq!(parsed.to_bytes(), wire);
            let mut out = Vec::new();
            parsed.write_to(&mut out);
            assert_eq!(out, wire);
        }
    }

    /// One to three random edits of `line`: an octet removed, one of
    /// `interesting` inserted, or one replaced by it.
    fn mutate(r: &mut Rng, line: &mut Vec<u8>, interesting: &[u8]) {
        for _ in 0..1 + r.below(3) {
            match r.below(3) {
                0 if !line.is_empty() => {
                    let i = r.below(line.len());
                    line.remove(i);
                }
                1 => {
                    let i = r.below(line.len() + 1);
                    line.insert(i, interesting[r.below(interesting.len())]);
                }
                _ if !line.is_empty() => {
                    let i = r.below(line.len());
                    line[i] = interesting[r.below(interesting.len())];
                }
                _ => {}
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut r = Rng(42);
        let mut accepted = 0;
        for _ in 0..5000 {
            let wire = gen_command(&mut r).to_bytes();
            let mut line = wire[..wire.len() - 2].to_vec();
            mutate(&mut r, &mut line, b" <>@:=\"\\.,[]\x00\xc3\xff-+");
            let line = Bytes::from(line);
            if let Ok(c) = Command::parse(&line) {
                accepted += 1;
                let wire = c.to_bytes();
                let again = Command::parse(&wire.slice(..wire.len() - 2));
                assert_eq!(
                    again.as_ref(),
                    Ok(&c),
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    /// The borrowed path against the owned one over a generated corpus: the
    /// generators' commands, and random mutations of them (most refused).
    #[test]
    fn borrowed_matches_owned() {
        let mut r = Rng(0xB0AA_0ED5_EED5);
        let (mut ok, mut err) = (0, 0);
        for _ in 0..6000 {
            let wire = gen_command(&mut r).to_bytes();
            let mut line = wire[..wire.len() - 2].to_vec();
            match differential(&line) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
            mutate(&mut r, &mut line, b" <>@:=\"\\.,[]\x00\xc3\xff-+;");
            match differential(&line) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        assert!(ok > 6000 && err > 1000, "ok {ok} err {err}");
    }

    /// `parse_borrowed` holds no handle: the line can be a plain slice of a
    /// stack buffer, and the view's fields point into it.
    #[test]
    fn borrowed_view_points_into_the_buffer() {
        let buf = *b"MAIL FROM:<a@b.example> SIZE=10 ENVID=x";
        let c = Command::parse_borrowed(&buf).unwrap();
        let Command::Mail {
            from: ReversePath::Path(path),
            params,
        } = &c
        else {
            panic!("{c:?}")
        };
        assert_eq!(path.mailbox.local_part, b"a");
        assert_eq!(path.mailbox.local_part.as_ptr(), buf[11..].as_ptr());
        assert_eq!(*params.as_bytes(), &buf[24..]);
        let envid = params.get("envid").unwrap();
        assert_eq!(envid, Parameter::EnvId(&b"x"[..]));
        let Parameter::EnvId(x) = envid else { panic!() };
        assert_eq!(x.as_ptr(), buf[38..].as_ptr());
        assert_eq!(params.iter().count(), 2);
        assert_eq!(
            c.into_owned().to_bytes(),
            Bytes::from_static(b"MAIL FROM:<a@b.example> SIZE=10 ENVID=x\r\n")
        );
    }

    /// The masked-word verb lookup is exactly an ASCII case-insensitive
    /// match: every verb, every octet of it replaced by each of the 256
    /// values, matches only when the result equals the verb ignoring case.
    #[test]
    fn verb_lookup_is_exact() {
        let names = [
            "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "VRFY", "EXPN", "HELP",
            "NOOP", "QUIT", "STARTTLS", "AUTH",
        ];
        for name in names {
            assert_eq!(verb(name.as_bytes()).map(|v| v.0), Some(name));
            let lower = name.to_ascii_lowercase();
            assert_eq!(verb(lower.as_bytes()).map(|v| v.0), Some(name));
            for i in 0..name.len() {
                for c in 0..=255u8 {
                    let mut t = name.as_bytes().to_vec();
                    t[i] = c;
                    let want = names
                        .iter()
                        .find(|n| n.as_bytes().eq_ignore_ascii_case(&t))
                        .copied();
                    assert_eq!(verb(&t).map(|v| v.0), want, "{t:?}");
                }
            }
        }
        for t in [
            &b""[..],
            b"MAI",
            b"MAILX",
            b"STARTTL",
            b"STARTTLSX",
            b"MAIL\0\0\0\0",
        ] {
            assert_eq!(verb(t).map(|v| v.0), None, "{t:?}");
        }
    }

    /// The one-pass parameter check and NOTIFY scan against the rules by the
    /// book (`validate_general`, `notify_general`): the same verdict and the
    /// same reason over generated parameter lists and random mutations of
    /// them, and over every NOTIFY list of up to four items.
    #[test]
    fn parameter_fast_paths_agree_with_the_general_rules() {
        let mut r = Rng(0x9A7A_3E7E_45CA);
        let (mut ok, mut err, mut known) = (0, 0, 0);
        for _ in 0..20_000 {
            let params = gen_params(&mut r);
            let mut raw = params.as_bytes().to_vec();
            if raw.is_empty() {
                continue;
            }
            for round in 0..3 {
                if round > 0 {
                    let interesting = b" =,+;<>0aAS-\"\x00\x7f\xc3\xa9\xff";
                    let i = r.below(raw.len() + 1);
                    let c = interesting[r.below(interesting.len())];
                    match r.below(3) {
                        0 if i < raw.len() => raw[i] = c,
                        1 if i < raw.len() => {
                            raw.remove(i);
                        }
                        _ => raw.insert(i, c),
                    }
                }
                check_fast_paths(&raw);
                let fast = Parameters::validate(&raw);
                if params_known_ok(&raw) {
                    known += 1;
                }
                assert_eq!(
                    fast,
                    Parameters::validate_general(&raw),
                    "{:?}",
                    String::from_utf8_lossy(&raw)
                );
                if fast.is_ok() {
                    ok += 1;
                } else {
                    err += 1;
                }
            }
        }
        assert!(
            ok > 10_000 && err > 5_000 && known > 2_000,
            "ok {ok} err {err} known {known}"
        );
        let items = [
            "SUCCESS", "failure", "Delay", "NEVER", "", "SUCCES", "DELAYS", "x",
        ];
        let mut lists = vec![Vec::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for l in &lists {
                for it in items {
                    let mut l2: Vec<&str> = l.clone();
                    l2.push(it);
                    next.push(l2);
                }
            }
            lists.extend(next.iter().cloned());
            lists.dedup();
            lists.retain(|l| l.len() <= 4);
            lists.sort();
            lists.dedup();
        }
        for l in &lists {
            for sep in [",", ";", ", "] {
                let v = l.join(sep);
                assert_eq!(
                    notify(Some(v.as_bytes())),
                    notify_general(Some(v.as_bytes())),
                    "{v:?}"
                );
                let trailing = format!("{v},");
                assert_eq!(
                    notify(Some(trailing.as_bytes())),
                    notify_general(Some(trailing.as_bytes())),
                    "{trailing:?}"
                );
            }
        }
        assert_eq!(notify(None), notify_general(None));
        assert!(lists.len() > 4000, "{}", lists.len());
    }

    /// `split_verb` then `verb` finds the same verb and arguments as a split
    /// at the first SP (the rule by the book), over every line of up to ten
    /// octets from an alphabet of verb letters, SP and others.
    #[test]
    fn split_verb_agrees_with_the_first_space() {
        fn by_the_book(line: &[u8]) -> Option<(&'static str, Option<&[u8]>)> {
            let (v, args) = match line.iter().position(|&c| c == b' ') {
                None => (line, None),
                Some(p) => (&line[..p], Some(&line[p + 1..])),
            };
            verb(v).map(|(name, _)| (name, args))
        }
        fn fast(line: &[u8]) -> Option<(&'static str, Option<&[u8]>)> {
            let (v, args) = split_verb(line);
            verb(v).map(|(name, _)| (name, args))
        }
        let alphabet = b"Ms TDAIL";
        let mut checked = 0;
        for len in 0..=6u32 {
            for n in 0..(alphabet.len() as u64).pow(len) {
                let mut line = Vec::new();
                let mut k = n;
                for _ in 0..len {
                    line.push(alphabet[(k % alphabet.len() as u64) as usize]);
                    k /= alphabet.len() as u64;
                }
                for tail in [&b""[..], b" ", b"x y", b"  "] {
                    let mut l = line.clone();
                    l.extend_from_slice(tail);
                    assert_eq!(fast(&l), by_the_book(&l), "{l:?}");
                    checked += 1;
                }
            }
        }
        for l in [
            &b"STARTTLS"[..],
            b"starttls x",
            b"STARTTLS ",
            b"DATA",
            b"DATA ",
            b"MAIL FROM:<>",
            b"MAIL  FROM:<>",
            b"STARTTLSX",
            b"STARTTLSX y",
            b"STAR TLS",
            b"MAILMAIL x",
            b"RSET\0",
        ] {
            assert_eq!(fast(l), by_the_book(l), "{l:?}");
        }
        assert!(checked > 100_000, "{checked}");
    }

    /// `eq_fold` is `eq_ignore_ascii_case` for upper-case names with digits
    /// and hyphens: every octet value at every position of the names.
    #[test]
    fn eq_fold_is_exact() {
        fn check<const N: usize>(name: &[u8; N]) {
            for i in 0..N {
                for c in 0..=255u8 {
                    let mut t = *name;
                    t[i] = c;
                    assert_eq!(eq_fold(&t, name), t.eq_ignore_ascii_case(name), "{t:?}");
                }
            }
            assert!(!eq_fold(&name[1..], name));
        }
        check(b"SMTPUTF8");
        check(b"8BITMIME");
        check(b"X-Y9");
        check(b"REQUIRETLS");
    }

    /// Duplicate keywords are refused, known or not, whatever the case.
    /// Review finding (#18): `map_octets` may return other octets than it
    /// was given; such a parameter list is unsendable, so a remapped
    /// command cannot smuggle a second line past `check`.
    #[test]
    fn remapped_parameters_are_unsendable_unless_the_octets_are_the_same() {
        let cmd = parse("MAIL FROM:<a@b.example> SIZE=10").unwrap();
        let same = cmd
            .clone()
            .map_octets(|o: Bytes| Bytes::copy_from_slice(&o));
        assert_eq!(same, cmd);
        assert!(same.check().is_ok());
        let evil = cmd.map_octets(|o: Bytes| {
            if o.starts_with(b"SIZE") {
                b("SIZE=10\r\nRCPT TO:<x@evil.example>")
            } else {
                o
            }
        });
        let Command::Mail { params, .. } = &evil else {
            panic!("{evil:?}")
        };
        assert_eq!(params.1 .0, Some("changed by map_octets"));
        assert!(evil.check().is_err());
    }

    #[test]
    fn duplicate_parameters() {
        for line in [
            "MAIL FROM:<a@b> SIZE=1 size=2",
            "MAIL FROM:<a@b> BODY=7BIT SMTPUTF8 body=8BITMIME",
            "RCPT TO:<a@b> NOTIFY=NEVER ORCPT=rfc822;a Notify=DELAY",
            "MAIL FROM:<a@b> X-A=1 X-B X-a",
            "MAIL FROM:<a@b> REQUIRETLS RequireTLS",
        ] {
            assert_eq!(invalid(line).1, "duplicate ESMTP parameter", "{line}");
        }
        ok("MAIL FROM:<a@b> X-A=1 X-B X-AB SIZE=1 AUTH=<> RET=FULL ENVID=x");
    }
}
