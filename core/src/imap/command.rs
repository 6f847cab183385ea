//! IMAP commands: parsing one complete command message and writing it back.
//!
//! Grammar: RFC 9051 §6 and §9 (`command = tag SP (command-any / command-auth
//! / command-nonauth / command-select) CRLF`), with RFC 3501, RFC 7888
//! `LITERAL+`/`LITERAL-`, RFC 3516 `literal8`, RFC 4959 `SASL-IR`, RFC 2971
//! `ID`, RFC 5161 `ENABLE`, RFC 2177 `IDLE` and RFC 9051 §6.2.1 / RFC 2595
//! `STARTTLS`.
//!
//! The commands that matter before and during the TLS upgrade and
//! authentication are typed ([`CommandBody`]); every other command is framed
//! generically as a name and an [`Args`] tree, which is enough to relay or
//! dispatch it.
//!
//! Parsing is zero-copy and allocates nothing: lists are kept as validated
//! raw bytes and parsed again when iterated. Every type holding byte strings
//! is generic over its container (see [`crate::octets`]): [`Command::parse`]
//! gives a [`Command`] whose byte strings are [`Bytes::slice_ref`]s of the
//! message; [`CommandRef::parse_borrowed`] gives a [`CommandRef`] of
//! sub-slices (no reference count touched), from the same grammar, with the
//! same errors; `map_octets`, `into_owned` and [`crate::octets::attach`]
//! convert between them.

use std::borrow::Cow;

use bytes::Bytes;

use crate::appvalue::{self, Unsendable};
use crate::imap::frame::{Frame, FrameLimits, MessageFramer};
use crate::imap::syntax::{
    all_astring_chars, all_atom_chars, atom, atom_word, escape, is_base64, is_quotable,
    lex_astring, lex_item, list, nil, nstring, scan, skip_list, string, tag, unescape, whole, word,
    LexError, Lit, Str,
};
use crate::imap::{LiteralHeader, LiteralMode, SyntaxError};
use crate::octets::{Octets, Source};
use crate::{Secret, UsageError};

// ---------------------------------------------------------------------------
// Strings.
// ---------------------------------------------------------------------------

/// RFC 9051 §9 `astring = 1*ASTRING-CHAR / string`, `string = quoted /
/// literal`: a user name, a password, a mailbox name.
///
/// Kept in its wire form, so that writing it back gives the same octets;
/// [`AString::value`] gives the value. Generic over its byte container (see
/// [`crate::octets`]): `AString` holds [`Bytes`], [`AStringRef`] borrows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AString<B: Octets = Bytes> {
    /// `1*ASTRING-CHAR`.
    Atom(B),
    /// `quoted`: the octets between the double quotes, `\"` and `\\`
    /// escapes kept.
    Quoted(B),
    /// `literal` (RFC 9051 §4.3), any [`LiteralMode`].
    Literal {
        /// The literal's data.
        data: B,
        /// `{n}` or `{n+}`.
        mode: LiteralMode,
        /// A `~{n}` RFC 3516 `literal8`. Never produced by parsing an
        /// `astring` (RFC 3516 allows `literal8` only in `APPEND` and
        /// responses); set it only for values written to a peer that accepts
        /// it.
        binary: bool,
    },
}

/// An [`AString`] borrowing the parsed message.
pub type AStringRef<'a> = AString<&'a [u8]>;

impl<B: Octets> AString<B> {
    /// The value: escapes of a quoted string removed (borrowed unless there
    /// was an escape).
    pub fn value(&self) -> Cow<'_, [u8]> {
        match self {
            AString::Atom(a) => Cow::Borrowed(a.as_ref()),
            AString::Quoted(q) => unescape(q.as_ref()),
            AString::Literal { data, .. } => Cow::Borrowed(data.as_ref()),
        }
    }

    /// Writes the wire form: the atom, `"quoted"`, or the literal header,
    /// CRLF and data.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            AString::Atom(a) => out.extend_from_slice(a.as_ref()),
            AString::Quoted(q) => write_quoted(q.as_ref(), out),
            AString::Literal { data, mode, binary } => {
                write_literal(data.as_ref(), *mode, *binary, out)
            }
        }
    }

    /// The same string with another container: `f` is called on its one
    /// byte string.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> AString<C> {
        match self {
            AString::Atom(a) => AString::Atom(f(a)),
            AString::Quoted(q) => AString::Quoted(f(q)),
            AString::Literal { data, mode, binary } => AString::Literal {
                data: f(data),
                mode,
                binary,
            },
        }
    }

    #[inline]
    fn from_lexed<'a, S: Source<'a, Out = B>>(src: S, s: Str<'a>) -> AString<B> {
        match s {
            Str::Atom(a) => AString::Atom(src.piece(a)),
            Str::Quoted(q) => AString::Quoted(src.piece(q)),
            Str::Literal(Lit { data, header }) => AString::Literal {
                data: src.piece(data),
                mode: header.mode,
                binary: header.binary,
            },
        }
    }
}

impl AString {
    /// The simplest wire form of `value`: an atom if it is one (and not
    /// empty), else a quoted string if it can be one (no CR, LF, NUL; ASCII or
    /// UTF-8), else a synchronizing literal.
    ///
    /// RFC 9051 has no way to send NUL in an `astring` (only `literal8`
    /// carries NUL, and `LOGIN` does not take one): a value with NUL is
    /// written as a literal that a compliant peer refuses.
    pub fn from_value(value: &[u8]) -> AString {
        if !value.is_empty() && all_astring_chars(value) {
            AString::Atom(Bytes::copy_from_slice(value))
        } else if is_quotable(value) {
            let mut out = Vec::with_capacity(value.len() + 2);
            escape(value, &mut out);
            AString::Quoted(Bytes::from(out))
        } else {
            AString::Literal {
                data: Bytes::copy_from_slice(value),
                mode: LiteralMode::Sync,
                binary: false,
            }
        }
    }
}

impl AStringRef<'_> {
    /// The owned string, its bytes copied.
    pub fn into_owned(self) -> AString {
        self.map_octets(crate::octets::copy)
    }
}

fn write_quoted(raw: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(raw);
    out.push(b'"');
}

fn write_literal(data: &[u8], mode: LiteralMode, binary: bool, out: &mut Vec<u8>) {
    LiteralHeader {
        len: data.len() as u64,
        mode,
        binary,
    }
    .write_to(out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
}

// ---------------------------------------------------------------------------
// Generic arguments.
// ---------------------------------------------------------------------------

/// One generic argument of a command or of untagged response data.
///
/// Numbers, sequence sets (`1:*,3`), flags (`\Seen`), and fetch items with
/// their sections (`BODY[HEADER.FIELDS (DATE FROM)]<0.100>`) are all
/// [`Arg::Atom`]: one token each, kept exactly as written. Generic over its
/// byte container (see [`crate::octets`]): `Arg` holds [`Bytes`], [`ArgRef`]
/// borrows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arg<B: Octets = Bytes> {
    /// A bare token: printable ASCII except SP, `(`, `)`, `{` and DQUOTE,
    /// with `[...]` sections that may hold spaces, lists and strings.
    Atom(B),
    /// RFC 9051 `quoted`: the octets between the quotes, escapes kept.
    Quoted(B),
    /// RFC 9051 `literal` or RFC 3516 `literal8`.
    Literal {
        /// The literal's data.
        data: B,
        /// `{n}` or `{n+}`.
        mode: LiteralMode,
        /// `~{n}`: a `literal8`.
        binary: bool,
    },
    /// RFC 9051 `nil = "NIL"` (any case).
    Nil,
    /// A parenthesized list: its inside, iterable in turn.
    List(Args<B>),
}

/// An [`Arg`] borrowing the parsed message.
pub type ArgRef<'a> = Arg<&'a [u8]>;

impl<B: Octets> Arg<B> {
    /// Writes the wire form (`NIL` in upper case, lists in parentheses).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Arg::Atom(a) => out.extend_from_slice(a.as_ref()),
            Arg::Quoted(q) => write_quoted(q.as_ref(), out),
            Arg::Literal { data, mode, binary } => {
                write_literal(data.as_ref(), *mode, *binary, out)
            }
            Arg::Nil => out.extend_from_slice(b"NIL"),
            Arg::List(args) => {
                out.push(b'(');
                out.extend_from_slice(args.as_bytes().as_ref());
                out.push(b')');
            }
        }
    }

    /// The value of an atom, a quoted string (escapes removed) or a literal;
    /// `None` for NIL and lists.
    pub fn string_value(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Arg::Atom(a) => Some(Cow::Borrowed(a.as_ref())),
            Arg::Quoted(q) => Some(unescape(q.as_ref())),
            Arg::Literal { data, .. } => Some(Cow::Borrowed(data.as_ref())),
            Arg::Nil | Arg::List(_) => None,
        }
    }

    /// The same argument with another container: `f` is called on its byte
    /// string (a list's raw inside, for [`Arg::List`]).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Arg<C> {
        match self {
            Arg::Atom(a) => Arg::Atom(f(a)),
            Arg::Quoted(q) => Arg::Quoted(f(q)),
            Arg::Literal { data, mode, binary } => Arg::Literal {
                data: f(data),
                mode,
                binary,
            },
            Arg::Nil => Arg::Nil,
            Arg::List(args) => Arg::List(args.map_octets(f)),
        }
    }
}

impl ArgRef<'_> {
    /// The owned argument, its bytes copied.
    pub fn into_owned(self) -> Arg {
        self.map_octets(crate::octets::copy)
    }
}

/// A sequence of generic arguments separated by single spaces, with nested
/// parenthesized lists (at most 64 deep): the arguments of
/// [`CommandBody::Other`], the inside of an [`Arg::List`], the data of
/// untagged responses.
///
/// Stored as the raw, validated wire bytes (no `Vec`: parsing allocates
/// nothing); [`Args::iter`] tokenizes them on demand. Literals inside are
/// framed by their `{n}` count only. Equality compares the raw bytes.
/// Generic over its byte container (see [`crate::octets`]): `Args` holds
/// [`Bytes`], [`ArgsRef`] borrows, and its iterator yields items of the
/// same form.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Args<B: Octets = Bytes>(B, Unsendable);

/// [`Args`] borrowing the parsed message.
pub type ArgsRef<'a> = Args<&'a [u8]>;

impl<B: Octets> std::fmt::Debug for Args<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut t = f.debug_tuple("Args");
        t.field(&self.0);
        if let Some(reason) = self.1 .0 {
            t.field(&format_args!("unsendable: {reason}"));
        }
        t.finish()
    }
}

impl<B: Octets> Args<B> {
    /// True when there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_empty()
    }

    /// The raw argument text, as on the wire.
    pub fn as_bytes(&self) -> &B {
        &self.0
    }

    /// The arguments, in wire order.
    pub fn iter(&self) -> ArgIter<'_, B> {
        ArgIter {
            args: &self.0,
            rest: self.0.as_ref(),
            checked: self.1 .0.is_none(),
        }
    }

    /// The same arguments with another container: `f` is called once, on
    /// the raw argument text. If `f` returns other octets than it was given
    /// (anything but a copy or a view of the same text), the result is no
    /// longer known to follow the grammar: it is marked so, and a command
    /// carrying it is refused when sent ([`Command::check`]).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Args<C> {
        let Args(raw, unsendable) = self;
        let mapped = f(raw.clone());
        let unsendable = if mapped.as_ref() == raw.as_ref() {
            unsendable
        } else {
            Unsendable(Some("changed by map_octets"))
        };
        Args(mapped, unsendable)
    }

    /// Wraps already validated bytes.
    pub(crate) fn from_validated(raw: B) -> Args<B> {
        Args(raw, Unsendable(None))
    }
}

impl<'a> ArgsRef<'a> {
    /// [`Args::parse`] without the [`Bytes`]: validates `raw` and borrows it.
    pub fn parse_borrowed(raw: &'a [u8]) -> Result<ArgsRef<'a>, SyntaxError> {
        scan(raw, false).map_err(|e| e.for_command("command"))?;
        Ok(Args(raw, Unsendable(None)))
    }

    /// The owned arguments, their bytes copied.
    pub fn into_owned(self) -> Args {
        self.map_octets(crate::octets::copy)
    }
}

impl Args {
    /// No arguments.
    pub fn new() -> Args {
        Args(Bytes::new(), Unsendable(None))
    }

    /// Validates `raw` (the text after a command name's SP, or the inside of
    /// a list) and keeps it.
    pub fn parse(raw: &Bytes) -> Result<Args, SyntaxError> {
        scan(raw, false).map_err(|e| e.for_command("command"))?;
        Ok(Args(raw.clone(), Unsendable(None)))
    }

    /// Serializes `args`, separated by single spaces. Values are written as
    /// they are: an [`Arg::Atom`] must be a valid token and an
    /// [`Arg::Quoted`] validly escaped, or the result will not parse. A
    /// result that does not parse is refused when the command or response is
    /// sent ([`Command::check`]); [`Args::try_from_args`] also refuses an
    /// argument that would read back as several (`Atom("a b")`).
    pub fn from_args(args: &[Arg]) -> Args {
        let unsendable = Unsendable(Args::check_each(args).err());
        Args(Args::serialize(args), unsendable)
    }

    fn serialize(args: &[Arg]) -> Bytes {
        let mut out = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            arg.write_to(&mut out);
        }
        Bytes::from(out)
    }

    /// Each argument written alone must read back as itself.
    fn check_each(args: &[Arg]) -> Result<(), &'static str> {
        for arg in args {
            let mut one = Vec::new();
            arg.write_to(&mut one);
            let one = Bytes::from(one);
            return Err(match Args::parse(&one) {
                Ok(parsed) => {
                    let mut it = parsed.iter();
                    match (it.next(), it.next()) {
                        (Some(back), None) if back == *arg => continue,
                        _ => "would be read back as other arguments",
                    }
                }
                Err(SyntaxError::InvalidArguments { reason, .. })
                | Err(SyntaxError::Literal { reason }) => reason,
                Err(_) => "does not follow the argument grammar",
            });
        }
        Ok(())
    }

    /// Like [`Args::from_args`], but checks each argument first: it must be
    /// written as exactly one argument that reads back as the same [`Arg`]
    /// (an [`Arg::Atom`] holds no SP, CR, LF, `(`, `)`, `{` or DQUOTE and is
    /// not `NIL`; an [`Arg::Quoted`] is validly escaped; a list is valid).
    /// Use it for values that come from outside the program. The error is
    /// [`UsageError::InvalidValue`].
    pub fn try_from_args(args: &[Arg]) -> Result<Args, UsageError> {
        const FIELD: &str = "IMAP argument";
        Args::check_each(args).map_err(|reason| appvalue::invalid(FIELD, reason))?;
        Ok(Args(Args::serialize(args), Unsendable(None)))
    }
}

impl<'a, B: Octets> IntoIterator for &'a Args<B> {
    type Item = Arg<B>;
    type IntoIter = ArgIter<'a, B>;

    fn into_iter(self) -> ArgIter<'a, B> {
        self.iter()
    }
}

/// Iterator over [`Args`], from [`Args::iter`]: yields [`Arg`]s of the same
/// container as the [`Args`] (sub-slices of a borrowed [`ArgsRef`],
/// [`Bytes::slice_ref`] handles of an owned [`Args`]). It stops early
/// (rather than panicking) on bytes that do not tokenize, which only happens
/// with hand-made [`Args`].
#[derive(Clone, Debug)]
pub struct ArgIter<'a, B: Octets = Bytes> {
    args: &'a B,
    rest: &'a [u8],
    /// The text is known to follow the grammar (parsed, or built from
    /// arguments that each read back as themselves): lists end where their
    /// parentheses balance. Otherwise every list is validated again and the
    /// iteration stops at the first that does not follow the grammar.
    checked: bool,
}

impl<B: Octets> Iterator for ArgIter<'_, B> {
    type Item = Arg<B>;

    fn next(&mut self) -> Option<Arg<B>> {
        let rest = self.rest.strip_prefix(b" ").unwrap_or(self.rest);
        if rest.is_empty() {
            self.rest = rest;
            return None;
        }
        if rest.first() == Some(&b'(') {
            // Validated bytes: the list's end is found by counting, not by
            // validating again. Anything else (an unsendable hand-made or
            // remapped `Args`) is validated as it is walked.
            let found = if self.checked {
                skip_list(rest).ok_or(())
            } else {
                list(rest).map_err(|_| ())
            };
            match found {
                Ok((after, inner)) => {
                    self.rest = after;
                    return Some(Arg::List(Args(self.args.piece_of(inner), Unsendable(None))));
                }
                Err(_) => {
                    self.rest = &[];
                    return None;
                }
            }
        }
        match lex_item(rest) {
            Ok((after, item)) => {
                self.rest = after;
                Some(match item {
                    Str::Atom(a) if a.eq_ignore_ascii_case(b"NIL") => Arg::Nil,
                    Str::Atom(a) => Arg::Atom(self.args.piece_of(a)),
                    Str::Quoted(q) => Arg::Quoted(self.args.piece_of(q)),
                    Str::Literal(Lit { data, header }) => Arg::Literal {
                        data: self.args.piece_of(data),
                        mode: header.mode,
                        binary: header.binary,
                    },
                })
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Commands.
// ---------------------------------------------------------------------------

/// One IMAP command: RFC 9051 §9 `command = tag SP (...) CRLF`.
///
/// Generic over its byte container (see [`crate::octets`]): `Command` holds
/// [`Bytes`] ([`Command::parse`]), [`CommandRef`] borrows the message
/// ([`CommandRef::parse_borrowed`]); both come out of the same parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command<B: Octets = Bytes> {
    /// `tag = 1*<any ASTRING-CHAR except "+">`, as written.
    pub tag: B,
    /// The command and its arguments.
    pub body: CommandBody<B>,
}

/// A [`Command`] borrowing the parsed message.
pub type CommandRef<'a> = Command<&'a [u8]>;

/// A [`CommandBody`] borrowing the parsed message.
pub type CommandBodyRef<'a> = CommandBody<&'a [u8]>;

/// The command after the tag.
///
/// The `Debug` form of [`CommandBody::Login`] and
/// [`CommandBody::Authenticate`] hides the credentials (see [`Secret`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandBody<B: Octets = Bytes> {
    /// `CAPABILITY` (RFC 9051 §6.1.1).
    Capability,
    /// `NOOP` (RFC 9051 §6.1.2).
    Noop,
    /// `LOGOUT` (RFC 9051 §6.1.3).
    Logout,
    /// `STARTTLS` (RFC 9051 §6.2.1, RFC 2595 §3.1).
    StartTls,
    /// `IDLE` (RFC 2177, RFC 9051 §6.3.13); ended by a `DONE` line, see
    /// [`is_idle_done`].
    Idle,
    /// `LOGIN SP userid SP password` (RFC 9051 §6.2.3), both `astring`.
    Login {
        /// `userid = astring`.
        username: AString<B>,
        /// `password = astring`.
        password: Secret<AString<B>>,
    },
    /// `AUTHENTICATE SP auth-type [SP initial-resp]` (RFC 9051 §6.2.2, RFC
    /// 4959 `SASL-IR`).
    Authenticate {
        /// `auth-type = atom`, as written (SASL mechanism names are
        /// case-insensitive).
        mechanism: B,
        /// `initial-resp = (base64 / "=")`, raw: `=` stands for an empty
        /// initial response.
        initial_response: Option<Secret<B>>,
    },
    /// `ID SP id_params_list` (RFC 2971 §3.1): `None` for `NIL`, else the
    /// inside of `"(" string SP nstring *(SP string SP nstring) ")"` (possibly
    /// empty), iterable as alternating field and value.
    Id {
        /// The field/value pairs, raw.
        params: Option<Args<B>>,
    },
    /// `ENABLE 1*(SP capability)` (RFC 5161 §3.1): one atom per capability.
    Enable {
        /// The capability names.
        capabilities: Args<B>,
    },
    /// Any other command: its name (an atom, as written) and arguments as a
    /// generic tree. `UID FETCH ...` is name `UID` with arguments starting
    /// with `FETCH`.
    Other {
        /// The command name, as written (starts with a letter).
        name: B,
        /// The arguments (empty when the name is the whole command).
        args: Args<B>,
    },
}

/// Commands typed by this module that take no arguments.
#[cfg(test)]
const BARE: [(&str, CommandBody); 5] = [
    ("CAPABILITY", CommandBody::Capability),
    ("NOOP", CommandBody::Noop),
    ("LOGOUT", CommandBody::Logout),
    ("STARTTLS", CommandBody::StartTls),
    ("IDLE", CommandBody::Idle),
];

/// Command names known by name, for error messages about [`CommandBody::Other`]
/// (looked up only when there is an error to report).
const KNOWN: [&str; 36] = [
    "APPEND",
    "CHECK",
    "CLOSE",
    "COMPRESS",
    "COPY",
    "CREATE",
    "DELETE",
    "EXAMINE",
    "EXPUNGE",
    "FETCH",
    "GETACL",
    "GETMETADATA",
    "GETQUOTA",
    "GETQUOTAROOT",
    "LIST",
    "LSUB",
    "MOVE",
    "NAMESPACE",
    "RENAME",
    "SEARCH",
    "SELECT",
    "SETACL",
    "SETMETADATA",
    "SETQUOTA",
    "SORT",
    "STATUS",
    "STORE",
    "SUBSCRIBE",
    "THREAD",
    "UID",
    "UNAUTHENTICATE",
    "UNSELECT",
    "UNSUBSCRIBE",
    "XLIST",
    "ESEARCH",
    "REPLACE",
];

// The folded words of the typed command names, for `parse_body`.
const CAPABILITY: u128 = word("CAPABILITY");
const NOOP: u128 = word("NOOP");
const LOGOUT: u128 = word("LOGOUT");
const STARTTLS: u128 = word("STARTTLS");
const IDLE: u128 = word("IDLE");
const LOGIN: u128 = word("LOGIN");
const AUTHENTICATE: u128 = word("AUTHENTICATE");
const ID: u128 = word("ID");
const ENABLE: u128 = word("ENABLE");

fn bad(command: &'static str, reason: &'static str) -> SyntaxError {
    SyntaxError::InvalidArguments { command, reason }
}

impl<B: Octets> CommandBody<B> {
    /// The command name: upper case for the typed commands (`"LOGIN"`), as
    /// written for [`CommandBody::Other`].
    pub fn name(&self) -> &[u8] {
        match self {
            CommandBody::Capability => b"CAPABILITY",
            CommandBody::Noop => b"NOOP",
            CommandBody::Logout => b"LOGOUT",
            CommandBody::StartTls => b"STARTTLS",
            CommandBody::Idle => b"IDLE",
            CommandBody::Login { .. } => b"LOGIN",
            CommandBody::Authenticate { .. } => b"AUTHENTICATE",
            CommandBody::Id { .. } => b"ID",
            CommandBody::Enable { .. } => b"ENABLE",
            CommandBody::Other { name, .. } => name.as_ref(),
        }
    }

    /// The same body with another container: `f` is called on every byte
    /// string, in wire order.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> CommandBody<C> {
        match self {
            CommandBody::Capability => CommandBody::Capability,
            CommandBody::Noop => CommandBody::Noop,
            CommandBody::Logout => CommandBody::Logout,
            CommandBody::StartTls => CommandBody::StartTls,
            CommandBody::Idle => CommandBody::Idle,
            CommandBody::Login { username, password } => CommandBody::Login {
                username: username.map_octets(&mut f),
                password: Secret::new(password.into_inner().map_octets(&mut f)),
            },
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => CommandBody::Authenticate {
                mechanism: f(mechanism),
                initial_response: initial_response.map(|ir| Secret::new(f(ir.into_inner()))),
            },
            CommandBody::Id { params } => CommandBody::Id {
                params: params.map(|p| p.map_octets(&mut f)),
            },
            CommandBody::Enable { capabilities } => CommandBody::Enable {
                capabilities: capabilities.map_octets(&mut f),
            },
            CommandBody::Other { name, args } => CommandBody::Other {
                name: f(name),
                args: args.map_octets(&mut f),
            },
        }
    }
}

impl Command {
    /// Parses one complete command message, given without its final CRLF but
    /// with its literals (`a1 LOGIN {5}\r\nalice secret`).
    ///
    /// Command names are case-insensitive. The syntax is RFC 9051's: single
    /// spaces between arguments, none after `(` or before `)`, no trailing
    /// space.
    ///
    /// Errors: [`SyntaxError::Tag`] when the message does not start with
    /// `tag SP` and a command name; [`SyntaxError::UnknownCommand`] when the
    /// name is not an atom starting with a letter;
    /// [`SyntaxError::InvalidArguments`] for a typed command with the wrong
    /// arguments or generic arguments that do not tokenize;
    /// [`SyntaxError::Literal`] for a malformed or truncated literal.
    pub fn parse(message: &Bytes) -> Result<Command, SyntaxError> {
        parse_in(message)
    }

    /// Checks that the command can be sent: its bytes frame as exactly one
    /// message (every CRLF ends a literal header; the last line does not look
    /// like one) and parse back ([`Command::parse`]) to exactly this command.
    /// Every public field is covered: the tag, a [`CommandBody::Other`] name
    /// (which must not be a typed command's, so `Other { name: "LOGIN" }`
    /// cannot slip past the cleartext check), each [`Arg::Atom`],
    /// [`Arg::Quoted`] and literal, the `LOGIN` strings, the `AUTHENTICATE`
    /// mechanism and base64 initial response, the `ID` and `ENABLE` lists.
    ///
    /// [`ClientSession::send`](super::ClientSession::send) calls it and
    /// writes nothing on error. The error is [`UsageError::InvalidValue`].
    pub fn check(&self) -> Result<(), UsageError> {
        self.check_written(self.to_bytes())
    }

    /// [`Command::check`] on `wire`, the output of [`Command::write_to`].
    pub(crate) fn check_written(&self, wire: Bytes) -> Result<(), UsageError> {
        const FIELD: &str = "IMAP command";
        if !frames_as_one(&wire) {
            return Err(appvalue::invalid(
                FIELD,
                "CR or LF outside a literal, or a text that ends like a literal header",
            ));
        }
        let message = wire.slice(..wire.len().saturating_sub(2));
        let reason = match Command::parse(&message) {
            Ok(back) if back == *self => return Ok(()),
            Ok(_) => "would be read back as a different command",
            Err(SyntaxError::InvalidArguments { reason, .. }) => reason,
            Err(SyntaxError::Literal { reason }) => reason,
            Err(SyntaxError::Tag) => "invalid tag",
            Err(_) => "does not follow the command grammar",
        };
        Err(appvalue::invalid(FIELD, reason))
    }
}

impl<'a> CommandRef<'a> {
    /// [`Command::parse`] without the [`Bytes`]: the same grammar, the same
    /// errors, every byte string a sub-slice of `message`. Allocates nothing
    /// and touches no reference count.
    pub fn parse_borrowed(message: &'a [u8]) -> Result<CommandRef<'a>, SyntaxError> {
        parse_in(message)
    }

    /// The owned command, its byte strings copied into fresh [`Bytes`] (to
    /// keep it past the buffer; [`crate::octets::attach`] shares the buffer
    /// instead when it is a [`Bytes`]).
    pub fn into_owned(self) -> Command {
        self.map_octets(crate::octets::copy)
    }
}

impl<B: Octets> Command<B> {
    /// The command name: upper case for the typed commands, as written for
    /// [`CommandBody::Other`].
    pub fn name(&self) -> &[u8] {
        self.body.name()
    }

    /// Appends the whole command, literals inline and final CRLF included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.tag.as_ref());
        out.push(b' ');
        out.extend_from_slice(self.name());
        match &self.body {
            CommandBody::Capability
            | CommandBody::Noop
            | CommandBody::Logout
            | CommandBody::StartTls
            | CommandBody::Idle => {}
            CommandBody::Login { username, password } => {
                out.push(b' ');
                username.write_to(out);
                out.push(b' ');
                password.expose().write_to(out);
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                out.push(b' ');
                out.extend_from_slice(mechanism.as_ref());
                if let Some(ir) = initial_response {
                    out.push(b' ');
                    out.extend_from_slice(ir.expose().as_ref());
                }
            }
            CommandBody::Id { params } => match params {
                None => out.extend_from_slice(b" NIL"),
                Some(p) => {
                    out.extend_from_slice(b" (");
                    out.extend_from_slice(p.as_bytes().as_ref());
                    out.push(b')');
                }
            },
            CommandBody::Enable { capabilities: args } | CommandBody::Other { args, .. } => {
                if !args.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(args.as_bytes().as_ref());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The whole command, final CRLF included.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        Bytes::from(out)
    }

    /// The same command with another container: `f` is called on every byte
    /// string, in wire order (the tag first).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Command<C> {
        Command {
            tag: f(self.tag),
            body: self.body.map_octets(f),
        }
    }
}

/// `wire` is exactly one IMAP message as the peer's framer sees it: lines
/// ending in CRLF, literals after their headers, and nothing after the last
/// line.
pub(crate) fn frames_as_one(wire: &[u8]) -> bool {
    let limits = FrameLimits {
        line: usize::MAX,
        literal: u64::MAX,
        message: usize::MAX,
    };
    let mut framer = MessageFramer::default();
    // Each step takes a line or a literal, so this ends.
    loop {
        match framer.next(wire, limits) {
            Frame::Literal(_) => {}
            Frame::Complete(n) => return n == wire.len(),
            _ => return false,
        }
    }
}

/// The grammar of [`Command::parse`], once for both containers.
#[inline]
fn parse_in<'a, S: Source<'a>>(src: S) -> Result<Command<S::Out>, SyntaxError> {
    let input: &'a [u8] = src.octets();
    let (rest, tag_text) = tag(input).map_err(|_| SyntaxError::Tag)?;
    let rest = match rest.strip_prefix(b" ") {
        Some(r) if !r.is_empty() => r,
        _ => return Err(SyntaxError::Tag),
    };
    let (rest, name) = atom(rest).map_err(|_| SyntaxError::UnknownCommand)?;
    if !name.first().is_some_and(u8::is_ascii_alphabetic) {
        return Err(SyntaxError::UnknownCommand);
    }
    let args: Option<&'a [u8]> = match rest {
        [] => None,
        [b' ', args @ ..] => Some(args),
        _ => return Err(SyntaxError::UnknownCommand),
    };
    let body = parse_body(src, name, args)?;
    Ok(Command {
        tag: src.piece(tag_text),
        body,
    })
}

/// Parses what follows the tag and command name: the name is looked up by
/// its folded word ([`atom_word`]), and a generic command's arguments are
/// validated in one pass.
fn parse_body<'a, S: Source<'a>>(
    message: S,
    name: &'a [u8],
    args: Option<&'a [u8]>,
) -> Result<CommandBody<S::Out>, SyntaxError> {
    let bare = |n: &'static str, body: CommandBody<S::Out>| match args {
        None => Ok(body),
        Some(_) => Err(bad(n, "this command takes no arguments")),
    };
    match atom_word(name) {
        Some(CAPABILITY) => bare("CAPABILITY", CommandBody::Capability),
        Some(NOOP) => bare("NOOP", CommandBody::Noop),
        Some(LOGOUT) => bare("LOGOUT", CommandBody::Logout),
        Some(STARTTLS) => bare("STARTTLS", CommandBody::StartTls),
        Some(IDLE) => bare("IDLE", CommandBody::Idle),
        Some(LOGIN) => login(message, args),
        Some(AUTHENTICATE) => authenticate(message, args),
        Some(ID) => id(message, args),
        Some(ENABLE) => enable(message, args),
        _ => other(message, name, args),
    }
}

/// `LOGIN SP userid SP password`.
fn login<'a, S: Source<'a>>(
    message: S,
    args: Option<&'a [u8]>,
) -> Result<CommandBody<S::Out>, SyntaxError> {
    let missing = bad("LOGIN", "LOGIN takes a user name and a password");
    let args = args.ok_or(missing.clone())?;
    let (rest, user) = lex_astring(args).map_err(|e| e.for_command("LOGIN"))?;
    let rest = rest.strip_prefix(b" ").ok_or(missing.clone())?;
    let (rest, pass) = lex_astring(rest).map_err(|e| e.for_command("LOGIN"))?;
    if !rest.is_empty() {
        return Err(missing);
    }
    Ok(CommandBody::Login {
        username: AString::from_lexed(message, user),
        password: Secret::new(AString::from_lexed(message, pass)),
    })
}

/// `AUTHENTICATE SP auth-type [SP initial-resp]`.
fn authenticate<'a, S: Source<'a>>(
    message: S,
    args: Option<&'a [u8]>,
) -> Result<CommandBody<S::Out>, SyntaxError> {
    let invalid = bad(
        "AUTHENTICATE",
        "AUTHENTICATE requires a SASL mechanism name",
    );
    let (rest, mech) = atom(args.ok_or(invalid.clone())?).map_err(|_| invalid.clone())?;
    let initial_response = match rest {
        [] => None,
        [b' ', ir @ ..] if ir == b"=" || is_base64(ir) => Some(Secret::new(message.piece(ir))),
        [b' ', ..] => {
            return Err(bad(
                "AUTHENTICATE",
                "the initial response must be base64 or \"=\"",
            ))
        }
        _ => return Err(invalid),
    };
    Ok(CommandBody::Authenticate {
        mechanism: message.piece(mech),
        initial_response,
    })
}

/// `ID SP id_params_list`.
fn id<'a, S: Source<'a>>(
    message: S,
    args: Option<&'a [u8]>,
) -> Result<CommandBody<S::Out>, SyntaxError> {
    let invalid = bad("ID", "ID takes NIL or a list of field/value string pairs");
    let args = args.ok_or(invalid.clone())?;
    if whole(args, nil).is_some() {
        return Ok(CommandBody::Id { params: None });
    }
    // Literals get their precise error first.
    scan(args, false).map_err(|e| e.for_command("ID"))?;
    let inner = whole(args, list).ok_or(invalid.clone())?;
    if !is_id_params(inner) {
        return Err(invalid);
    }
    Ok(CommandBody::Id {
        params: Some(Args(message.piece(inner), Unsendable(None))),
    })
}

/// `ENABLE 1*(SP capability)`.
fn enable<'a, S: Source<'a>>(
    message: S,
    args: Option<&'a [u8]>,
) -> Result<CommandBody<S::Out>, SyntaxError> {
    let invalid = bad("ENABLE", "ENABLE takes one or more capability names");
    let args = args.ok_or(invalid.clone())?;
    let ok = !args.is_empty()
        && args
            .split(|&c| c == b' ')
            .all(|cap| !cap.is_empty() && all_atom_chars(cap));
    if !ok {
        return Err(invalid);
    }
    Ok(CommandBody::Enable {
        capabilities: Args(message.piece(args), Unsendable(None)),
    })
}

/// Any other command: generic arguments. The name for an error message is
/// looked up in [`KNOWN`] only when there is an error.
fn other<'a, S: Source<'a>>(
    message: S,
    name: &'a [u8],
    args: Option<&'a [u8]>,
) -> Result<CommandBody<S::Out>, SyntaxError> {
    let command = || {
        KNOWN
            .iter()
            .find(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            .copied()
            .unwrap_or("command")
    };
    let args = match args {
        None => Args(message.piece(&[]), Unsendable(None)),
        Some([]) => return Err(bad(command(), "trailing space")),
        Some(a) => {
            scan(a, false).map_err(|e: LexError| e.for_command(command()))?;
            Args(message.piece(a), Unsendable(None))
        }
    };
    Ok(CommandBody::Other {
        name: message.piece(name),
        args,
    })
}

/// RFC 2971: `string SP nstring *(SP string SP nstring)`, or nothing.
fn is_id_params(mut input: &[u8]) -> bool {
    let mut first = true;
    while !input.is_empty() {
        if !first {
            match input.strip_prefix(b" ") {
                Some(r) => input = r,
                None => return false,
            }
        }
        first = false;
        let Ok((rest, _)) = string(input) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(b" ") else {
            return false;
        };
        let Ok((rest, _)) = nstring(rest) else {
            return false;
        };
        input = rest;
    }
    true
}

/// True if `line` (one line without its CRLF) is the `DONE` that ends an
/// `IDLE` (RFC 2177 §3, RFC 9051 §6.3.13 `idle = "IDLE" CRLF "DONE"`); ABNF
/// strings are case-insensitive.
pub fn is_idle_done(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"DONE")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Parses with [`Command::parse`], checking on the way that
    /// [`CommandRef::parse_borrowed`] agrees ([`assert_both_forms_agree`]):
    /// every test vector of the module goes through both parsers.
    fn parse(s: &[u8]) -> Result<Command, SyntaxError> {
        assert_both_forms_agree(s)
    }

    /// The differential check of #18: on `line`, the borrowed and the owned
    /// parsers both succeed or both fail with the same error; when they
    /// succeed, the borrowed value attached to the line and the borrowed
    /// value copied both equal the owned value, and walking the arguments
    /// of both forms (lists included) gives the same items. Returns the
    /// owned result.
    pub(crate) fn assert_both_forms_agree(line: &[u8]) -> Result<Command, SyntaxError> {
        let message = Bytes::copy_from_slice(line);
        let owned = Command::parse(&message);
        let borrowed = CommandRef::parse_borrowed(&message);
        match (&borrowed, &owned) {
            (Ok(view), Ok(own)) => {
                let attached = view.clone().map_octets(crate::octets::attach(&message));
                assert_eq!(&attached, own, "{:?}", String::from_utf8_lossy(line));
                assert_eq!(&view.clone().into_owned(), own);
                assert_eq!(view.name(), own.name());
                let mut wire = Vec::new();
                view.write_to(&mut wire);
                assert_eq!(wire, own.to_bytes());
                match (&view.body, &own.body) {
                    (
                        CommandBody::Other { args: v, .. }
                        | CommandBody::Enable { capabilities: v },
                        CommandBody::Other { args: o, .. }
                        | CommandBody::Enable { capabilities: o },
                    )
                    | (CommandBody::Id { params: Some(v) }, CommandBody::Id { params: Some(o) }) => {
                        assert_walks_agree(&message, v, o)
                    }
                    _ => {}
                }
            }
            (Err(v), Err(o)) => assert_eq!(v, o, "{:?}", String::from_utf8_lossy(line)),
            _ => panic!(
                "{:?}: borrowed {borrowed:?}, owned {owned:?}",
                String::from_utf8_lossy(line)
            ),
        }
        owned
    }

    /// Both forms of the same arguments iterate to the same items, at every
    /// depth.
    fn assert_walks_agree(message: &Bytes, view: &ArgsRef<'_>, own: &Args) {
        let mut o = own.iter();
        for v in view.iter() {
            let o = o.next().expect("as many owned items as borrowed ones");
            if let (Arg::List(vl), Arg::List(ol)) = (&v, &o) {
                assert_walks_agree(message, vl, ol);
            }
            assert_eq!(v.map_octets(crate::octets::attach(message)), o);
        }
        assert_eq!(o.next(), None);
    }

    fn ok(s: &[u8]) -> Command {
        let c = parse(s).unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(s)));
        assert_round_trip(&c);
        c
    }

    /// parse(serialize(c)) == c, and serializing is stable.
    fn assert_round_trip(c: &Command) {
        let wire = c.to_bytes();
        let body = wire.slice(..wire.len() - 2);
        assert!(wire.ends_with(b"\r\n"));
        let again = Command::parse(&body)
            .unwrap_or_else(|e| panic!("{:?} did not parse again: {e:?}", body));
        assert_eq!(&again, c);
        assert_eq!(again.to_bytes(), wire);
    }

    fn args_of(c: &Command) -> Vec<Arg> {
        match &c.body {
            CommandBody::Other { args, .. } => args.iter().collect(),
            other => panic!("not Other: {other:?}"),
        }
    }

    fn atom_arg(s: &str) -> Arg {
        Arg::Atom(b(s))
    }

    fn list_of(args: &[Arg]) -> Arg {
        Arg::List(Args::from_args(args))
    }

    /// `parse_body` as it was written before the folded-word dispatch: one
    /// case-insensitive comparison after the other.
    fn parse_body_general(
        message: &Bytes,
        name: &[u8],
        args: Option<&[u8]>,
    ) -> Result<CommandBody, SyntaxError> {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if let Some((n, body)) = BARE.iter().find(|(n, _)| is(n)) {
            return match args {
                None => Ok(body.clone()),
                Some(_) => Err(bad(n, "this command takes no arguments")),
            };
        }
        if is("LOGIN") {
            return super::login(message, args);
        }
        if is("AUTHENTICATE") {
            return super::authenticate(message, args);
        }
        if is("ID") {
            return super::id(message, args);
        }
        if is("ENABLE") {
            return super::enable(message, args);
        }
        let command = KNOWN.iter().find(|n| is(n)).copied().unwrap_or("command");
        let args = match args {
            None => Args::new(),
            Some([]) => return Err(bad(command, "trailing space")),
            Some(a) => {
                crate::imap::syntax::tests::scan_general(a, false)
                    .map_err(|e: LexError| e.for_command(command))?;
                Args(message.slice_ref(a), Unsendable(None))
            }
        };
        Ok(CommandBody::Other {
            name: message.slice_ref(name),
            args,
        })
    }

    /// The folded-word dispatch and the one-pass argument scan give what the
    /// comparisons one by one and the octet-by-octet scan give: every typed
    /// and known name in random case, with octets changed, added and removed
    /// (including those one bit away from a letter: `@`, `` ` ``, `^`, `~`),
    /// with and without arguments.
    #[test]
    fn name_dispatch_agrees_with_the_general_rule() {
        let mut names: Vec<&str> = BARE.iter().map(|(n, _)| *n).collect();
        names.extend(["LOGIN", "AUTHENTICATE", "ID", "ENABLE", "X", "IDLEX"]);
        names.extend(KNOWN);
        let octets = b"aZz@`^~_-.0123456789[]{}!#$&'+,/;<=>?|\x7f\xc3\xff ";
        let argss: [&[u8]; 8] = [
            b"",
            b" ",
            b" INBOX",
            b" user pass",
            b" PLAIN dGVzdA==",
            b" NIL",
            b" (\"name\" \"x\")",
            b" 1:* (FLAGS BODY[HEADER.FIELDS (DATE)])",
        ];
        let mut r = Rng(0x0bad_cafe_1234_5678);
        for _ in 0..100_000 {
            let mut name: Vec<u8> = r.pick(&names).bytes().collect();
            for c in name.iter_mut() {
                if r.below(2) == 0 {
                    c.make_ascii_lowercase();
                }
            }
            match r.below(6) {
                0 => {
                    let at = r.below(name.len());
                    name[at] = r.pick(octets);
                }
                1 => {
                    let at = r.below(name.len() + 1);
                    name.insert(at, r.pick(octets));
                }
                2 if name.len() > 1 => {
                    name.remove(r.below(name.len()));
                }
                _ => {}
            }
            let mut line = b"t ".to_vec();
            line.extend_from_slice(&name);
            line.extend_from_slice(r.pick(&argss));
            let message = Bytes::from(line);
            let fast = assert_both_forms_agree(&message);
            // The reference, on the same tag and name split.
            let general = (|| {
                let rest = message.get(2..).unwrap_or_default();
                let (rest, name) = atom(rest).map_err(|_| SyntaxError::UnknownCommand)?;
                if !name.first().is_some_and(u8::is_ascii_alphabetic) {
                    return Err(SyntaxError::UnknownCommand);
                }
                let args: Option<&[u8]> = match rest {
                    [] => None,
                    [b' ', args @ ..] => Some(args),
                    _ => return Err(SyntaxError::UnknownCommand),
                };
                Ok(Command {
                    tag: message.slice(..1),
                    body: parse_body_general(&message, name, args)?,
                })
            })();
            assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(&message));
        }
    }

    #[test]
    fn rfc_bare_commands() {
        for (line, body) in [
            ("a001 CAPABILITY", CommandBody::Capability),
            ("a002 STARTTLS", CommandBody::StartTls),
            ("a002 NOOP", CommandBody::Noop),
            ("A023 LOGOUT", CommandBody::Logout),
            ("a002 IDLE", CommandBody::Idle),
            ("x capability", CommandBody::Capability),
            ("x StartTLS", CommandBody::StartTls),
        ] {
            let c = ok(line.as_bytes());
            assert_eq!(c.body, body);
            assert_eq!(c.tag, line.split(' ').next().unwrap().as_bytes());
        }
        assert_eq!(ok(b"x starttls").name(), b"STARTTLS");
        assert_eq!(ok(b"x starttls").to_bytes(), &b"x STARTTLS\r\n"[..]);
        for line in [
            &b"a NOOP x"[..],
            b"a STARTTLS ",
            b"a CAPABILITY IMAP4rev2",
            b"a IDLE now",
        ] {
            assert!(
                matches!(parse(line), Err(SyntaxError::InvalidArguments { .. })),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse(b"a LOGOUT x"),
            Err(bad("LOGOUT", "this command takes no arguments"))
        );
    }

    #[test]
    fn login() {
        let c = ok(b"A001 LOGIN SMITH SESAME");
        let CommandBody::Login { username, password } = &c.body else {
            panic!()
        };
        assert_eq!(username, &AString::Atom(b("SMITH")));
        assert_eq!(password.expose().value().as_ref(), b"SESAME");
        let c = ok(br#"a login "fred \"the\" smith" "p\\w d""#);
        let CommandBody::Login { username, password } = &c.body else {
            panic!()
        };
        assert_eq!(username.value().as_ref(), br#"fred "the" smith"#);
        assert_eq!(password.expose().value().as_ref(), br"p\w d");
        let c = ok(b"a LOGIN {5}\r\nalice {11+}\r\nsecret\r\n) x");
        let CommandBody::Login { username, password } = &c.body else {
            panic!()
        };
        assert_eq!(
            username,
            &AString::Literal {
                data: b("alice"),
                mode: LiteralMode::Sync,
                binary: false
            }
        );
        assert_eq!(password.expose().value().as_ref(), b"secret\r\n) x");
        assert!(matches!(
            password.expose(),
            AString::Literal {
                mode: LiteralMode::Plus,
                ..
            }
        ));
        // RFC 7888 has no `{n-}` form; reading one as a literal would frame
        // the stream differently from other parsers.
        assert!(Command::parse(&Bytes::from_static(b"a LOGIN user] {0-}\r\n")).is_err());
        // And `literal` excludes NUL (RFC 9051 CHAR8); only `literal8` has it.
        assert!(Command::parse(&Bytes::from_static(b"a LOGIN {3+}\r\na\0b x")).is_err());
        ok("a LOGIN \"jürgen\" x".as_bytes());
        for line in [
            &b"a LOGIN"[..],
            b"a LOGIN ",
            b"a LOGIN smith",
            b"a LOGIN smith ",
            b"a LOGIN smith sesame extra",
            b"a LOGIN smith  sesame",
            b"a LOGIN (smith) sesame",
            b"a LOGIN smith \"sesame",
            b"a LOGIN smith ~{3}\r\nabc",
            b"a LOGIN smi*th sesame",
        ] {
            assert!(
                matches!(
                    parse(line),
                    Err(SyntaxError::InvalidArguments {
                        command: "LOGIN",
                        ..
                    })
                ),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(
            parse(b"a LOGIN {10}\r\nshort"),
            Err(SyntaxError::Literal { .. })
        ));
        assert!(matches!(
            parse(b"a LOGIN {5x}\r\nshort"),
            Err(SyntaxError::Literal { .. })
        ));
    }

    #[test]
    fn credentials_are_redacted() {
        let c = ok(b"a LOGIN smith hunter2");
        let debug = format!("{c:?}");
        assert!(debug.contains("smith"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("[redacted]"));
        let c = ok(b"a AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjI=");
        let debug = format!("{c:?}");
        assert!(!debug.contains("AGFsaWNlAGh1bnRlcjI="), "{debug}");
        assert!(debug.contains("PLAIN"));
    }

    #[test]
    fn authenticate() {
        let c = ok(b"A001 AUTHENTICATE GSSAPI");
        assert_eq!(
            c.body,
            CommandBody::Authenticate {
                mechanism: b("GSSAPI"),
                initial_response: None
            }
        );
        let c = ok(b"a authenticate plain dGVzdAB0ZXN0AHRlc3Q=");
        let CommandBody::Authenticate {
            mechanism,
            initial_response,
        } = &c.body
        else {
            panic!()
        };
        assert_eq!(mechanism, "plain");
        assert_eq!(
            initial_response.as_ref().unwrap().expose(),
            "dGVzdAB0ZXN0AHRlc3Q="
        );
        let c = ok(b"a AUTHENTICATE EXTERNAL =");
        assert!(
            matches!(&c.body, CommandBody::Authenticate { initial_response: Some(ir), .. } if ir.expose() == "=")
        );
        ok(b"a AUTHENTICATE SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=");
        for line in [
            &b"a AUTHENTICATE"[..],
            b"a AUTHENTICATE ",
            b"a AUTHENTICATE PLAIN ",
            b"a AUTHENTICATE PLAIN abc",
            b"a AUTHENTICATE PLAIN ab!=",
            b"a AUTHENTICATE PLAIN dGVz dA==",
            b"a AUTHENTICATE PL(AIN",
            b"a AUTHENTICATE \"PLAIN\"",
        ] {
            assert!(
                matches!(
                    parse(line),
                    Err(SyntaxError::InvalidArguments {
                        command: "AUTHENTICATE",
                        ..
                    })
                ),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn id_and_enable() {
        let c = ok(b"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)");
        let CommandBody::Id { params: Some(p) } = &c.body else {
            panic!()
        };
        let items: Vec<Arg> = p.iter().collect();
        assert_eq!(items.len(), 6);
        assert_eq!(items[0], Arg::Quoted(b("name")));
        assert_eq!(items[5], Arg::Nil);
        assert_eq!(ok(b"a ID NIL").body, CommandBody::Id { params: None });
        assert_eq!(ok(b"a id nil").body, CommandBody::Id { params: None });
        let c = ok(b"a ID ()");
        assert_eq!(
            c.body,
            CommandBody::Id {
                params: Some(Args::new())
            }
        );
        ok(b"a ID ({4}\r\nname {3+}\r\nx)y)");
        for line in [
            &b"a ID"[..],
            b"a ID (\"name\")",
            b"a ID (name \"x\")",
            b"a ID (\"name\" x)",
            b"a ID (\"a\" \"b\") NIL",
            b"a ID (\"a\" \"b\" )",
            b"a ID NILL",
            b"a ID (\"a\" (\"b\"))",
        ] {
            assert!(
                matches!(
                    parse(line),
                    Err(SyntaxError::InvalidArguments { command: "ID", .. })
                ),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(
            parse(b"a ID (\"a\" {9}\r\nb)"),
            Err(SyntaxError::Literal { .. })
        ));

        let c = ok(b"t2 ENABLE CONDSTORE X-GOOD-IDEA UTF8=ACCEPT");
        let CommandBody::Enable { capabilities } = &c.body else {
            panic!()
        };
        let caps: Vec<Arg> = capabilities.iter().collect();
        assert_eq!(
            caps,
            vec![
                atom_arg("CONDSTORE"),
                atom_arg("X-GOOD-IDEA"),
                atom_arg("UTF8=ACCEPT")
            ]
        );
        for line in [
            &b"a ENABLE"[..],
            b"a ENABLE ",
            b"a ENABLE A  B",
            b"a ENABLE (A)",
            b"a ENABLE \"A\"",
            b"a ENABLE A]",
        ] {
            assert!(
                matches!(
                    parse(line),
                    Err(SyntaxError::InvalidArguments {
                        command: "ENABLE",
                        ..
                    })
                ),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn generic_commands() {
        let c = ok(b"A142 SELECT INBOX");
        assert_eq!(c.name(), b"SELECT");
        assert_eq!(args_of(&c), vec![atom_arg("INBOX")]);

        let c = ok(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])");
        assert_eq!(
            args_of(&c),
            vec![
                atom_arg("2:4"),
                list_of(&[
                    atom_arg("FLAGS"),
                    atom_arg("BODY[HEADER.FIELDS (DATE FROM)]")
                ])
            ]
        );
        let c = ok(b"a1 FETCH 1:* (FLAGS BODY.PEEK[1.2.MIME]<0.100> BINARY[1]<5.10>)");
        let Arg::List(items) = &args_of(&c)[1] else {
            panic!()
        };
        assert_eq!(
            items.iter().nth(1),
            Some(atom_arg("BODY.PEEK[1.2.MIME]<0.100>"))
        );

        let c = ok(b"A003 STORE 2:4 +FLAGS.SILENT (\\Deleted \\Seen $Forwarded)");
        assert_eq!(
            args_of(&c),
            vec![
                atom_arg("2:4"),
                atom_arg("+FLAGS.SILENT"),
                list_of(&[
                    atom_arg("\\Deleted"),
                    atom_arg("\\Seen"),
                    atom_arg("$Forwarded")
                ])
            ]
        );

        let c = ok(b"a UID FETCH 1:* (FLAGS)");
        assert_eq!(c.name(), b"UID");
        assert_eq!(
            args_of(&c),
            vec![
                atom_arg("FETCH"),
                atom_arg("1:*"),
                list_of(&[atom_arg("FLAGS")])
            ]
        );
        ok(b"a uid store 1,3:5 -FLAGS (\\Seen)");

        let c = ok(b"A282 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX FLAGGED");
        let args = args_of(&c);
        assert_eq!(args.len(), 5);
        assert_eq!(
            args[3],
            Arg::Literal {
                data: b("XXXXXX"),
                mode: LiteralMode::Sync,
                binary: false
            }
        );
        ok(b"A283 SEARCH RETURN () CHARSET UTF-8 OR (FROM \"x\") NOT SEEN 1:5,*");

        let mut append = b"A003 APPEND saved-messages (\\Seen) {310}\r\n".to_vec();
        let msg: Vec<u8> = (0..310u32)
            .map(|i| match i % 40 {
                38 => b'\r',
                39 => b'\n',
                7 => b')',
                _ => b'a' + (i % 26) as u8,
            })
            .collect();
        append.extend_from_slice(&msg);
        let c = ok(&append);
        let args = args_of(&c);
        assert_eq!(args.len(), 3);
        assert_eq!(args[2].string_value().unwrap().as_ref(), &msg[..]);

        let c =
            ok(b"A004 APPEND INBOX (\\Seen) \"7-Feb-1994 21:52:25 -0800\" ~{5+}\r\n\0\x01)\r\n");
        assert_eq!(
            args_of(&c)[3],
            Arg::Literal {
                data: Bytes::from_static(b"\0\x01)\r\n"),
                mode: LiteralMode::Plus,
                binary: true
            }
        );
        assert!(
            Command::parse(&Bytes::from_static(b"A005 APPEND INBOX {9-}\r\nSTARTTLS\r")).is_err()
        );
        let c = ok(b"A682 LIST \"\" *");
        assert_eq!(args_of(&c), vec![Arg::Quoted(b("")), atom_arg("*")]);
        ok(b"A683 LIST \"~/Mail/\" \"%\"");
        ok(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES UNSEEN)");
        ok(b"A683 RENAME blurdybloop sarasoop");
        ok(b"a CREATE \"Sent Items\"");
        ok(b"a EXPUNGE");
        ok(b"a NAMESPACE");
        ok(b"a X-CUSTOM.cmd_2 foo [bar] (baz)");
        ok(b"a FETCH 1 (BODY[HEADER.FIELDS.NOT (\"X-A\" {3}\r\nX-B)])");
        let c = ok(b"a EXAMINE nil");
        assert_eq!(args_of(&c), vec![Arg::Nil]);
        assert_eq!(args_of(&c)[0].string_value(), None);
    }

    #[test]
    fn literal_data_is_never_searched() {
        // The literal holds what would otherwise be a command, a closing
        // parenthesis and a CRLF: only the count frames it.
        let c = ok(b"a APPEND INBOX {14}\r\nb STARTTLS\r\n)(");
        let args = args_of(&c);
        assert_eq!(args.len(), 2);
        assert_eq!(
            args[1].string_value().unwrap().as_ref(),
            b"b STARTTLS\r\n)("
        );
        // A claim longer than the message is an error, not a read past it.
        assert_eq!(
            parse(b"a APPEND INBOX {4294967295}\r\nabc"),
            Err(SyntaxError::Literal {
                reason: "message ends before the literal's announced length"
            })
        );
        assert_eq!(
            parse(b"a APPEND INBOX {3}abc"),
            Err(SyntaxError::Literal {
                reason: "literal header not followed by CRLF"
            })
        );
        assert!(matches!(
            parse(b"a APPEND INBOX {3a}\r\nabc"),
            Err(SyntaxError::Literal { .. })
        ));
        assert!(matches!(
            parse(b"a APPEND INBOX {2}\r\nabc"),
            Err(SyntaxError::InvalidArguments {
                command: "APPEND",
                ..
            })
        ));
    }

    #[test]
    fn malformed_commands() {
        for line in [
            &b""[..],
            b" a NOOP",
            b"NOOP",
            b"a",
            b"a ",
            b"+ NOOP",
            b"a+b NOOP",
            b"a*1 NOOP",
            b"a\"b NOOP",
            b"a(b NOOP",
            b"a{1} NOOP",
            b"\xC3\xA9 NOOP",
        ] {
            assert_eq!(
                parse(line),
                Err(SyntaxError::Tag),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"a  NOOP"[..],
            b"a 1FOO",
            b"a (x)",
            b"a \"NOOP\"",
            b"a NOOP(x)",
            b"a -x",
        ] {
            assert_eq!(
                parse(line),
                Err(SyntaxError::UnknownCommand),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"a SELECT "[..],
            b"a SELECT  INBOX",
            b"a FETCH 1 (FLAGS",
            b"a FETCH 1 FLAGS)",
            b"a FETCH 1 ((FLAGS)",
            b"a FETCH 1 ( FLAGS)",
            b"a FETCH 1 (FLAGS )",
            b"a FETCH 1 BODY[HEADER",
            b"a FETCH 1 BODY[(HEADER]",
            b"a SELECT \"INBOX",
            b"a SELECT \"IN\rBOX\"",
            b"a SELECT IN\x7fBOX",
            b"a SELECT INBOX ",
        ] {
            assert!(
                matches!(parse(line), Err(SyntaxError::InvalidArguments { .. })),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let deep = |n: usize| {
            let mut v = b"a FETCH 1 ".to_vec();
            v.extend(std::iter::repeat_n(b'(', n));
            v.extend(std::iter::repeat_n(b')', n));
            v
        };
        ok(&deep(64));
        assert_eq!(
            parse(&deep(65)),
            Err(bad("FETCH", "lists nested too deeply"))
        );
    }

    #[test]
    fn idle_done() {
        assert!(is_idle_done(b"DONE"));
        assert!(is_idle_done(b"done"));
        assert!(!is_idle_done(b"DONE "));
        assert!(!is_idle_done(b"a DONE"));
        assert!(matches!(ok(b"a DONE").body, CommandBody::Other { .. }));
    }

    #[test]
    fn astring_from_value() {
        assert_eq!(AString::from_value(b"smith"), AString::Atom(b("smith")));
        assert_eq!(
            AString::from_value(b"a b\"c"),
            AString::Quoted(b("a b\\\"c"))
        );
        assert_eq!(AString::from_value(b""), AString::Quoted(b("")));
        assert!(matches!(
            AString::from_value(b"a\r\nb"),
            AString::Literal { .. }
        ));
        for v in [
            &b"x"[..],
            b"",
            b"\\",
            b"a\"b",
            b"\xFF\x01",
            "é".as_bytes(),
            b"{5}",
        ] {
            let a = AString::from_value(v);
            assert_eq!(a.value().as_ref(), v);
            let c = Command {
                tag: b("t"),
                body: CommandBody::Login {
                    username: a.clone(),
                    password: Secret::new(a),
                },
            };
            assert_round_trip(&c);
        }
    }

    #[test]
    fn args_api() {
        let args = Args::parse(&b("a (b \"c\") {1}\r\nd NIL")).unwrap();
        assert!(!args.is_empty());
        assert_eq!((&args).into_iter().count(), 4);
        assert!(Args::parse(&b("a (b")).is_err());
        assert!(Args::new().is_empty());
        assert_eq!(Args::new().iter().next(), None);
        // Hand-made invalid bytes: the iterator stops, it does not panic.
        let broken = Args::from_args(&[atom_arg("a"), Arg::Quoted(b("x\"y"))]);
        assert!(broken.iter().count() <= 2);
        let nested = Args::from_args(&[list_of(&[list_of(&[]), Arg::Nil])]);
        assert_eq!(nested.as_bytes(), "(() NIL)");
    }

    // -----------------------------------------------------------------------
    // Pseudo-random round trips and mutations.
    // -----------------------------------------------------------------------

    /// xorshift64*: deterministic, no extra crates.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
        pub(crate) fn bytes_from(&mut self, alphabet: &[u8], min: usize, max: usize) -> Vec<u8> {
            let n = min + self.below(max - min + 1);
            (0..n).map(|_| self.pick(alphabet)).collect()
        }
    }

    const TOKENS: &[&str] = &[
        "FLAGS",
        "1:*",
        "\\Seen",
        "\\*",
        "2,4:7",
        "BODY[]",
        "BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>",
        "BINARY[1.2]",
        "%",
        "*",
        "+FLAGS.SILENT",
        "$Junk",
        "INBOX",
        "a]b",
        "~x",
        "UTF-8",
        "12",
    ];

    fn gen_literal(r: &mut Rng) -> (Bytes, LiteralMode, bool) {
        // NUL only in literal8 (RFC 9051: `literal` is `*CHAR8`).
        let binary = r.below(4) == 0;
        let alphabet: &[u8] = if binary {
            b"ab )(\r\n{}\"\\~*\0"
        } else {
            b"ab )(\r\n{}\"\\~*"
        };
        let data = r.bytes_from(alphabet, 0, 12);
        let mode = r.pick(&[LiteralMode::Sync, LiteralMode::Plus]);
        (Bytes::from(data), mode, binary)
    }

    pub(crate) fn gen_arg(r: &mut Rng, depth: usize) -> Arg {
        match r.below(if depth > 3 { 5 } else { 7 }) {
            0 | 1 => Arg::Atom(b(r.pick(TOKENS))),
            2 => {
                let v = r.bytes_from("ab \"\\é(){}".as_bytes(), 0, 8);
                let v = if is_quotable(&v) { v } else { b"q".to_vec() };
                let mut out = Vec::new();
                escape(&v, &mut out);
                Arg::Quoted(Bytes::from(out))
            }
            3 => {
                let (data, mode, binary) = gen_literal(r);
                Arg::Literal { data, mode, binary }
            }
            4 => Arg::Nil,
            _ => {
                let n = r.below(4);
                let items: Vec<Arg> = (0..n).map(|_| gen_arg(r, depth + 1)).collect();
                Arg::List(Args::from_args(&items))
            }
        }
    }

    fn gen_astring(r: &mut Rng) -> AString {
        match r.below(3) {
            0 => AString::from_value(&r.bytes_from(b"abcXYZ09.-_]", 1, 8)),
            1 => AString::from_value(&r.bytes_from(b"ab \"\\x", 0, 8)),
            _ => {
                // An astring is never a literal8, so it carries no NUL.
                let (data, mode, _) = gen_literal(r);
                let data = Bytes::from(
                    data.iter()
                        .copied()
                        .filter(|&b| b != 0)
                        .collect::<Vec<u8>>(),
                );
                AString::Literal {
                    data,
                    mode,
                    binary: false,
                }
            }
        }
    }

    fn gen_command(r: &mut Rng) -> Command {
        let tag = Bytes::from(r.bytes_from(b"aA019.-_]", 1, 6));
        let body = match r.below(10) {
            0 => BARE[r.below(BARE.len())].1.clone(),
            1 => CommandBody::Login {
                username: gen_astring(r),
                password: Secret::new(gen_astring(r)),
            },
            2 => CommandBody::Authenticate {
                mechanism: b(r.pick(&["PLAIN", "XOAUTH2", "SCRAM-SHA-1"])),
                initial_response: match r.below(3) {
                    0 => None,
                    1 => Some(Secret::new(b("="))),
                    _ => Some(Secret::new(b("dGVzdA=="))),
                },
            },
            3 => CommandBody::Id {
                params: match r.below(3) {
                    0 => None,
                    1 => Some(Args::new()),
                    _ => Some(Args::from_args(&[
                        Arg::Quoted(b("name")),
                        Arg::Literal {
                            data: b("x)"),
                            mode: LiteralMode::Plus,
                            binary: false,
                        },
                        Arg::Quoted(b("os")),
                        Arg::Nil,
                    ])),
                },
            },
            4 => CommandBody::Enable {
                capabilities: Args::from_args(&[
                    Arg::Atom(b("CONDSTORE")),
                    Arg::Atom(b("UTF8=ACCEPT")),
                ]),
            },
            _ => {
                let n = r.below(5);
                let items: Vec<Arg> = (0..n).map(|_| gen_arg(r, 0)).collect();
                CommandBody::Other {
                    name: b(r.pick(&["FETCH", "uid", "APPEND", "X-Foo", "SEARCH"])),
                    args: Args::from_args(&items),
                }
            }
        };
        Command { tag, body }
    }

    /// Splits a serialized message into physical lines the way a session's
    /// framing does, with [`crate::imap::trailing_literal`], and checks that
    /// it finds exactly the message.
    pub(crate) fn check_framing(wire: &[u8]) {
        let mut pos = 0;
        loop {
            let rest = &wire[pos..];
            let eol = memchr::memmem::find(rest, b"\r\n").expect("a CRLF");
            let line = &rest[..eol];
            pos += eol + 2;
            match crate::imap::trailing_literal(line).unwrap() {
                None => break,
                Some(h) => pos += h.len as usize,
            }
        }
        assert_eq!(pos, wire.len(), "{:?}", String::from_utf8_lossy(wire));
    }

    #[test]
    fn random_round_trips() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        for _ in 0..3000 {
            let c = gen_command(&mut r);
            assert_round_trip(&c);
            let wire = c.to_bytes();
            check_framing(&wire);
            assert_eq!(
                assert_both_forms_agree(&wire[..wire.len() - 2]).as_ref(),
                Ok(&c)
            );
            if let CommandBody::Other { args, .. } = &c.body {
                // Iterating the parsed arguments and writing them back gives
                // the same bytes.
                let items: Vec<Arg> = args.iter().collect();
                assert_eq!(&Args::from_args(&items), args);
            }
        }
    }

    const SEEDS: &[&[u8]] = &[
        b"a001 CAPABILITY",
        b"A001 LOGIN SMITH SESAME",
        b"a LOGIN {5}\r\nalice \"p\\\"w\"",
        b"a AUTHENTICATE PLAIN dGVzdA==",
        b"a ID (\"name\" \"x\" \"v\" NIL)",
        b"t ENABLE CONDSTORE",
        b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)]<0.10>)",
        b"A003 APPEND saved (\\Seen) \"7-Feb-1994 21:52:25 -0800\" ~{5+}\r\nab)\r\n",
        b"a SEARCH CHARSET UTF-8 TEXT {3}\r\nx y ((a b)(c))",
    ];

    #[test]
    fn random_mutations_never_panic() {
        let mut r = Rng(0xdead_beef_cafe_f00d);
        let specials = b" ()[]{}<>\"\\~+-*%:0123456789\r\n\0\xC3\xFFaZ";
        let mut parsed = 0;
        for _ in 0..20000 {
            let mut m = r.pick(SEEDS).to_vec();
            for _ in 0..1 + r.below(3) {
                let at = r.below(m.len() + 1);
                match r.below(4) {
                    0 if at < m.len() => {
                        m.remove(at);
                    }
                    1 if at < m.len() => m[at] = r.pick(specials),
                    2 => m.insert(at, r.pick(specials)),
                    _ => m.truncate(at),
                }
            }
            if let Ok(c) = parse(&m) {
                parsed += 1;
                assert_round_trip(&c);
                if let CommandBody::Other { args, .. } = &c.body {
                    let _ = args.iter().map(|a| format!("{a:?}")).count();
                }
            }
        }
        // Enough mutants stay valid for the round trip to mean something.
        assert!(parsed > 2000, "{parsed}");
    }

    /// #18: the borrowed parser agrees with the owned one on the seeds, on
    /// commands from the generator, and on random mutations of both (the
    /// other tests of the module also check every vector through `parse`).
    #[test]
    fn borrowed_and_owned_parsers_agree() {
        let mut r = Rng(0x5eed_0018_b0a1_7ed5);
        let mut corpus: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.to_vec()).collect();
        for _ in 0..500 {
            let wire = gen_command(&mut r).to_bytes();
            corpus.push(wire[..wire.len() - 2].to_vec());
        }
        let specials = b" ()[]{}<>\"\\~+-*%:0123456789\r\n\0\xC3\xFFaZ";
        let (mut oks, mut errs) = (0, 0);
        for i in 0..20000 {
            let mut m = corpus[i % corpus.len()].clone();
            if i >= corpus.len() {
                for _ in 0..1 + r.below(3) {
                    let at = r.below(m.len() + 1);
                    match r.below(4) {
                        0 if at < m.len() => {
                            m.remove(at);
                        }
                        1 if at < m.len() => m[at] = r.pick(specials),
                        2 => m.insert(at, r.pick(specials)),
                        _ => m.truncate(at),
                    }
                }
            }
            match assert_both_forms_agree(&m) {
                Ok(_) => oks += 1,
                Err(_) => errs += 1,
            }
        }
        // Both outcomes are well represented.
        assert!(oks > 2000 && errs > 2000, "{oks} {errs}");
    }

    /// Review finding (#18): an unsendable hand-made `Args` iterates as
    /// before the counting fast path (each list validated as it is walked,
    /// the walk stopping at the first list that does not follow the
    /// grammar); a parsed one counts parentheses.
    #[test]
    fn hand_made_unsendable_args_validate_their_lists_when_walked() {
        for inner in [&b"a\r\nb"[..], b"a  b", b"a b ", b"a\0b", b"a[", b"a\xff"] {
            let list = Args::from_args(&[Arg::Atom(Bytes::copy_from_slice(inner))]);
            let outer = Args::from_args(&[Arg::List(list), Arg::Atom(b("z"))]);
            assert!(outer.1 .0.is_some(), "{outer:?} should be unsendable");
            assert_eq!(outer.iter().count(), 0, "{outer:?} walked past a bad list");
        }
        let parsed = Args::parse(&b("(a b) z")).unwrap();
        let items: Vec<Arg> = parsed.iter().collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Arg::Atom(b("z")));
    }

    /// Review finding (#18): `map_octets` may return other octets than it
    /// was given; the result is then unsendable and walked with validation,
    /// so it cannot smuggle a second command line past `check`.
    #[test]
    fn remapped_args_are_unsendable_unless_the_octets_are_the_same() {
        let args = Args::parse(&b("INBOX")).unwrap();
        let same = args.clone().map_octets(|raw| Bytes::copy_from_slice(&raw));
        assert_eq!(same.1 .0, None);
        let evil = args.map_octets(|_| b("INBOX\r\nA2 DELETE Important"));
        assert_eq!(evil.1 .0, Some("changed by map_octets"));
        let cmd = Command {
            tag: b("A1"),
            body: CommandBody::Other {
                name: b("SELECT"),
                args: evil,
            },
        };
        assert!(cmd.check().is_err());
        let bad_list = Args::parse(&b("(a) z"))
            .unwrap()
            .map_octets(|_| b("(a\r\nb) z"));
        assert_eq!(bad_list.iter().count(), 0);
    }

    /// The iterator's `skip_list` finds the end of every list `list` accepts
    /// exactly where `list` finds it: generated lists, lists from the seeds,
    /// and random mutations of both.
    #[test]
    fn skip_list_agrees_with_list_on_valid_lists() {
        let mut r = Rng(0x0018_5c1b_4a11_57ed);
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        for _ in 0..2000 {
            let n = r.below(4);
            let items: Vec<Arg> = (0..n).map(|_| gen_arg(&mut r, 1)).collect();
            let mut wire = b"(".to_vec();
            wire.extend_from_slice(Args::from_args(&items).as_bytes());
            wire.extend_from_slice(b") x");
            corpus.push(wire);
        }
        for seed in SEEDS {
            if let Some(at) = seed.iter().position(|&c| c == b'(') {
                corpus.push(seed[at..].to_vec());
            }
        }
        let specials = b" ()[]{}\"\\~+0123456789\r\na";
        let mut valid = 0;
        for i in 0..40000 {
            let mut m = corpus[i % corpus.len()].clone();
            if i >= corpus.len() {
                let at = 1 + r.below(m.len());
                match r.below(3) {
                    0 if at < m.len() => {
                        m.remove(at);
                    }
                    1 if at < m.len() => m[at] = r.pick(specials),
                    _ => m.insert(at, r.pick(specials)),
                }
            }
            if list(&m).is_ok() {
                valid += 1;
                crate::imap::syntax::check_skip_list(&m);
            } else {
                // Never a panic, whatever it returns.
                let _ = skip_list(&m);
            }
        }
        assert!(valid > 5000, "{valid}");
    }
}
