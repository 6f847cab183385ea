//! POP3 commands: parsing one command line and writing it back.
//!
//! Grammar: RFC 1939 §3 ("Commands in the POP3 consist of a case-insensitive
//! keyword, possibly followed by one or more arguments. [...] Keywords and
//! arguments are each separated by a single SPACE character. Keywords are
//! three or four characters long. Each argument may be up to 40 characters
//! long."), with the commands of RFC 1939 §4-§7, RFC 2449 §5 `CAPA`,
//! RFC 5034 §4 `AUTH`, RFC 2595 §4 `STLS` and RFC 6856 §2-§3 `UTF8` and
//! `LANG`.
//!
//! Parsing is zero-copy: every byte string in the result is a
//! [`Bytes::slice_ref`] of the line handed to [`Command::parse`], and parsing
//! a command (or failing to) allocates nothing. [`Command::parse_borrowed`]
//! is the same grammar over a `&[u8]` line ([`CommandRef`]): the byte
//! strings are sub-slices, with no reference count touched (see
//! [`crate::octets`]). The 255-octet command line
//! limit of RFC 2449 §4 is the session's framing's business, not this
//! module's.

use std::io::Write as _;

use bytes::Bytes;

use crate::appvalue;
use crate::octets::{Octets, Source};
use crate::pop3::syntax::{is_base64, is_line_text, is_word_arg, split_sp, SyntaxError, MAX_ARG};
use crate::{Secret, UsageError};

/// One POP3 command.
///
/// `Debug` never shows a `PASS` password, an `APOP` digest or an `AUTH`
/// initial response: they are [`Secret`]s.
///
/// Generic over the container of its byte strings (see [`crate::octets`]):
/// `Command` is the owned form ([`Bytes`]), [`CommandRef`] the form
/// borrowed from the parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<B: Octets = Bytes> {
    /// RFC 1939 §7 `USER name`: a mailbox name of 1 to 40 octets, printable
    /// ASCII or (RFC 6856 §2) UTF-8, without spaces.
    User {
        /// The mailbox name, as written.
        name: B,
    },
    /// RFC 1939 §7 `PASS string`: the password is the rest of the line,
    /// verbatim ("the server may treat spaces in the argument as part of the
    /// password, instead of as argument separators"). It may be any octets
    /// except CR, LF and NUL, and is not limited to 40 octets.
    Pass {
        /// The password (not empty).
        password: Secret<B>,
    },
    /// RFC 1939 §7 `APOP name digest`: `digest` is the MD5 of the greeting's
    /// timestamp followed by the shared secret, as 32 hexadecimal digits.
    Apop {
        /// The mailbox name (as for [`Command::User`]).
        name: B,
        /// 32 hexadecimal digits, as written. RFC 1939 asks for lower case;
        /// upper case is accepted too. A [`Secret`]: the MD5 of the
        /// timestamp and the shared secret can be attacked offline, so it
        /// never shows in `Debug`.
        digest: Secret<B>,
    },
    /// RFC 5034 §4 `"AUTH" SP sasl-mech [SP initial-response]`,
    /// `initial-response = base64 / "="`.
    ///
    /// A bare `AUTH` (no mechanism: the pre-RFC 5034 way to list the
    /// mechanisms, RFC 1734 practice) is accepted too; its positive answer
    /// is multi-line.
    Auth {
        /// RFC 4422 `sasl-mech = 1*20mech-char` (letters, digits, `-`, `_`;
        /// lower case tolerated), as written. `None` for a bare `AUTH`.
        mechanism: Option<B>,
        /// The raw initial response (base64, not decoded; `=` is the empty
        /// response). Never present without a mechanism: when writing a
        /// command that has one but no mechanism, it is left out.
        initial_response: Option<Secret<B>>,
    },
    /// RFC 2449 §5 `CAPA`.
    Capa,
    /// RFC 2595 §4 `STLS`.
    Stls,
    /// RFC 1939 §5 `STAT`.
    Stat,
    /// RFC 1939 §5 `LIST [msg]`.
    List {
        /// The message number (non-zero), or `None` for the whole scan
        /// listing (multi-line).
        msg: Option<u32>,
    },
    /// RFC 1939 §5 `RETR msg`.
    Retr {
        /// The message number (non-zero).
        msg: u32,
    },
    /// RFC 1939 §5 `DELE msg`.
    Dele {
        /// The message number (non-zero).
        msg: u32,
    },
    /// RFC 1939 §5 `NOOP`.
    Noop,
    /// RFC 1939 §5 `RSET`.
    Rset,
    /// RFC 1939 §4 and §6 `QUIT`.
    Quit,
    /// RFC 1939 §7 `TOP msg n`.
    Top {
        /// The message number (non-zero).
        msg: u32,
        /// Lines of the body to send after the header; 0 is allowed.
        lines: u32,
    },
    /// RFC 1939 §7 `UIDL [msg]`.
    Uidl {
        /// The message number (non-zero), or `None` for the whole
        /// unique-id listing (multi-line).
        msg: Option<u32>,
    },
    /// RFC 6856 §2 `UTF8`.
    Utf8,
    /// RFC 6856 §3 `"LANG" [SP lang-or-wild]`,
    /// `lang-or-wild = Language-Tag / "*"`.
    Lang {
        /// The language tag or `*`, as written; `None` to list the
        /// languages (multi-line).
        tag: Option<B>,
    },
}

/// A [`Command`] borrowed from the line it was parsed from
/// ([`Command::parse_borrowed`]).
pub type CommandRef<'a> = Command<&'a [u8]>;

#[derive(Clone, Copy)]
enum Keyword {
    User,
    Pass,
    Apop,
    Auth,
    Capa,
    Stls,
    Stat,
    List,
    Retr,
    Dele,
    Noop,
    Rset,
    Quit,
    Top,
    Uidl,
    Utf8,
    Lang,
}

/// `name` (4 octets, upper case) as a little-endian word, with bit 5
/// (the ASCII case bit) of every octet cleared.
const fn word4(name: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*name) & FOLD
}

/// Clearing bit 5 of an octet folds a letter to upper case. It maps
/// exactly two octets to each letter (its two cases), so a folded word made
/// of letters matches only that word in any case; the digit of `UTF8` is
/// checked apart (`8` folds to `\x18`, as `\x18` does).
const FOLD: u32 = 0xDFDF_DFDF;

const RETR: u32 = word4(b"RETR");
const LIST: u32 = word4(b"LIST");
const UIDL: u32 = word4(b"UIDL");
const DELE: u32 = word4(b"DELE");
const STAT: u32 = word4(b"STAT");
const NOOP: u32 = word4(b"NOOP");
const USER: u32 = word4(b"USER");
const PASS: u32 = word4(b"PASS");
const APOP: u32 = word4(b"APOP");
const AUTH: u32 = word4(b"AUTH");
const CAPA: u32 = word4(b"CAPA");
const STLS: u32 = word4(b"STLS");
const RSET: u32 = word4(b"RSET");
const QUIT: u32 = word4(b"QUIT");
const UTF8: u32 = word4(b"UTF8");
const LANG: u32 = word4(b"LANG");
/// `TOP` and a zero octet, folded.
const TOP: u32 = word4(b"TOP\0");

/// The keyword whose name is `text` (ASCII case-insensitive), matched as
/// one folded word.
#[inline]
fn keyword_of(text: &[u8]) -> Option<(&'static str, Keyword)> {
    let (word, last) = match *text {
        [a, b, c] => (u32::from_le_bytes([a, b, c, 0]), 0),
        [a, b, c, d] => (u32::from_le_bytes([a, b, c, d]), d),
        _ => return None,
    };
    // Three octets: the zero fourth octet stays zero, only TOP matches.
    Some(match word & FOLD {
        RETR => ("RETR", Keyword::Retr),
        LIST => ("LIST", Keyword::List),
        UIDL => ("UIDL", Keyword::Uidl),
        DELE => ("DELE", Keyword::Dele),
        STAT => ("STAT", Keyword::Stat),
        NOOP => ("NOOP", Keyword::Noop),
        USER => ("USER", Keyword::User),
        PASS => ("PASS", Keyword::Pass),
        APOP => ("APOP", Keyword::Apop),
        AUTH => ("AUTH", Keyword::Auth),
        CAPA => ("CAPA", Keyword::Capa),
        STLS => ("STLS", Keyword::Stls),
        RSET => ("RSET", Keyword::Rset),
        QUIT => ("QUIT", Keyword::Quit),
        UTF8 if last == b'8' => ("UTF8", Keyword::Utf8),
        LANG => ("LANG", Keyword::Lang),
        TOP if text.len() == 3 => ("TOP", Keyword::Top),
        _ => return None,
    })
}

/// Splits a command line into its keyword and, after the first SP, its
/// arguments. Keywords are 3 or 4 octets, so only an SP at offset 3 or 4
/// can end one: a line with an SP before, or a longer first word, has no
/// keyword the lookup knows (an SP folds to a zero octet, never a letter),
/// exactly as if it had been split at its first SP.
#[inline]
fn split_keyword(input: &[u8]) -> (&[u8], Option<&[u8]>) {
    let at = if input.get(3) == Some(&b' ') {
        3
    } else if input.get(4) == Some(&b' ') {
        4
    } else {
        return (input, None);
    };
    match input.split_at_checked(at) {
        Some((keyword, rest)) => (keyword, rest.get(1..)),
        None => (input, None),
    }
}

fn bad(command: &'static str, reason: &'static str) -> SyntaxError {
    SyntaxError::InvalidArguments { command, reason }
}

const BAD_MSG: &str = "message number must be 1*DIGIT, non-zero, at most 4294967295";

/// `1*DIGIT` of at most 40 octets (RFC 2449 §4) whose value fits in a
/// `u32` (leading zeros allowed).
#[inline]
fn number_arg(arg: &[u8]) -> Option<u32> {
    if arg.is_empty() || arg.len() > MAX_ARG {
        return None;
    }
    let mut value = 0u64;
    for &c in arg {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        // At most u32::MAX * 10 + 9: no overflow of the u64.
        value = value * 10 + u64::from(digit);
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    u32::try_from(value).ok()
}

/// A message-number argument (RFC 1939 §5 `msg`: `1*DIGIT`, non-zero,
/// fitting in a `u32`), at most 40 octets.
#[inline]
fn msg_arg(arg: &[u8]) -> Option<u32> {
    number_arg(arg).filter(|&n| n != 0)
}

/// RFC 4422 §3.1 `sasl-mech = 1*20mech-char`,
/// `mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE` (lower case
/// tolerated, as most servers do).
fn is_sasl_mech(s: &[u8]) -> bool {
    (1..=20).contains(&s.len())
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// RFC 6856 §3 `lang-or-wild`: `*`, or a tag shaped like an RFC 5646
/// `Language-Tag`: subtags of 1 to 8 letters or digits separated by single
/// hyphens, the first one letters only; at most 40 octets.
fn is_lang_or_wild(s: &[u8]) -> bool {
    if s == b"*" {
        return true;
    }
    if s.is_empty() || s.len() > MAX_ARG {
        return false;
    }
    s.split(|&c| c == b'-').enumerate().all(|(i, sub)| {
        (1..=8).contains(&sub.len())
            && sub.iter().all(|&c| {
                if i == 0 {
                    c.is_ascii_alphabetic()
                } else {
                    c.is_ascii_alphanumeric()
                }
            })
    })
}

impl Command {
    /// Parses one command line, given without its CRLF.
    ///
    /// The keyword is case-insensitive (RFC 1939 §3). The parser is strict:
    /// single SP separators, no leading or trailing spaces, no arguments to
    /// commands that take none (`STLS foo` is an error), every argument at
    /// most 40 octets (RFC 2449 §4) except the `PASS` password (the rest of
    /// the line) and the `AUTH` initial response.
    ///
    /// An unknown keyword (including any keyword that is not 3 or 4
    /// characters, or that has 8-bit octets) is
    /// [`SyntaxError::UnknownCommand`]; a known one with bad arguments is
    /// [`SyntaxError::InvalidArguments`].
    pub fn parse(line: &Bytes) -> Result<Command, SyntaxError> {
        parse_in(line)
    }
}

impl<'a> Command<&'a [u8]> {
    /// [`Command::parse`] of a borrowed line: the same grammar and errors,
    /// the byte strings are sub-slices of `line` (no allocation, no
    /// reference count).
    pub fn parse_borrowed(line: &'a [u8]) -> Result<Self, SyntaxError> {
        parse_in(line)
    }

    /// The owned command, its byte strings copied into fresh [`Bytes`]
    /// (use `map_octets(`[`attach`](crate::octets::attach)`(&line))` to
    /// share `line` instead).
    pub fn into_owned(self) -> Command {
        self.map_octets(crate::octets::copy)
    }
}

impl<B: Octets> Command<B> {
    /// The same command with every byte string turned by `f`, in wire
    /// order (name, then password, digest, mechanism, initial response or
    /// tag).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Command<C> {
        let mut secret = |s: Secret<B>| Secret::new(f(s.into_inner()));
        match self {
            Command::User { name } => Command::User { name: f(name) },
            Command::Pass { password } => Command::Pass {
                password: secret(password),
            },
            Command::Apop { name, digest } => {
                let name = f(name);
                Command::Apop {
                    name,
                    digest: Secret::new(f(digest.into_inner())),
                }
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                let mechanism = mechanism.map(&mut f);
                Command::Auth {
                    mechanism,
                    initial_response: initial_response.map(|r| Secret::new(f(r.into_inner()))),
                }
            }
            Command::Capa => Command::Capa,
            Command::Stls => Command::Stls,
            Command::Stat => Command::Stat,
            Command::List { msg } => Command::List { msg },
            Command::Retr { msg } => Command::Retr { msg },
            Command::Dele { msg } => Command::Dele { msg },
            Command::Noop => Command::Noop,
            Command::Rset => Command::Rset,
            Command::Quit => Command::Quit,
            Command::Top { msg, lines } => Command::Top { msg, lines },
            Command::Uidl { msg } => Command::Uidl { msg },
            Command::Utf8 => Command::Utf8,
            Command::Lang { tag } => Command::Lang { tag: tag.map(f) },
        }
    }

    /// A view of this command borrowing its byte strings.
    fn view(&self) -> CommandRef<'_> {
        fn v<B: Octets>(b: &B) -> &[u8] {
            b.as_ref()
        }
        fn sv<B: Octets>(s: &Secret<B>) -> Secret<&[u8]> {
            Secret::new(s.expose().as_ref())
        }
        match self {
            Command::User { name } => Command::User { name: v(name) },
            Command::Pass { password } => Command::Pass {
                password: sv(password),
            },
            Command::Apop { name, digest } => Command::Apop {
                name: v(name),
                digest: sv(digest),
            },
            Command::Auth {
                mechanism,
                initial_response,
            } => Command::Auth {
                mechanism: mechanism.as_ref().map(v),
                initial_response: initial_response.as_ref().map(sv),
            },
            Command::Capa => Command::Capa,
            Command::Stls => Command::Stls,
            Command::Stat => Command::Stat,
            Command::List { msg } => Command::List { msg: *msg },
            Command::Retr { msg } => Command::Retr { msg: *msg },
            Command::Dele { msg } => Command::Dele { msg: *msg },
            Command::Noop => Command::Noop,
            Command::Rset => Command::Rset,
            Command::Quit => Command::Quit,
            Command::Top { msg, lines } => Command::Top {
                msg: *msg,
                lines: *lines,
            },
            Command::Uidl { msg } => Command::Uidl { msg: *msg },
            Command::Utf8 => Command::Utf8,
            Command::Lang { tag } => Command::Lang {
                tag: tag.as_ref().map(v),
            },
        }
    }

    /// The keyword, upper case: `"USER"`, `"RETR"`, `"TOP"`, …
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User { .. } => "USER",
            Command::Pass { .. } => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Stat => "STAT",
            Command::List { .. } => "LIST",
            Command::Retr { .. } => "RETR",
            Command::Dele { .. } => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl { .. } => "UIDL",
            Command::Utf8 => "UTF8",
            Command::Lang { .. } => "LANG",
        }
    }

    /// Whether a positive (`+OK`) reply to this command is multi-line, i.e.
    /// followed by lines ending with a lone `.` (RFC 1939 §3):
    ///
    /// - `LIST` and `UIDL` without argument (RFC 1939 §5, §7),
    /// - `RETR` (RFC 1939 §5) and `TOP` (RFC 1939 §7),
    /// - `CAPA` (RFC 2449 §5),
    /// - `LANG` without argument (RFC 6856 §3),
    /// - `AUTH` without mechanism (the mechanism list; RFC 1734 practice).
    pub fn has_multiline_reply(&self) -> bool {
        matches!(
            self,
            Command::List { msg: None }
                | Command::Uidl { msg: None }
                | Command::Retr { .. }
                | Command::Top { .. }
                | Command::Capa
                | Command::Lang { tag: None }
                | Command::Auth {
                    mechanism: None,
                    ..
                }
        )
    }

    /// Appends the command line, final CRLF included. Values are written as
    /// they are: build them following the grammar of [`Command::parse`] for
    /// the line to parse back to the same command.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.keyword().as_bytes());
        let mut arg = |a: &[u8]| {
            out.push(b' ');
            out.extend_from_slice(a);
        };
        match self {
            Command::User { name } => arg(name.as_ref()),
            Command::Pass { password } => arg(password.expose().as_ref()),
            Command::Apop { name, digest } => {
                arg(name.as_ref());
                arg(digest.expose().as_ref());
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                if let Some(mech) = mechanism {
                    arg(mech.as_ref());
                    if let Some(resp) = initial_response {
                        arg(resp.expose().as_ref());
                    }
                }
            }
            Command::Lang { tag } => {
                if let Some(tag) = tag {
                    arg(tag.as_ref());
                }
            }
            Command::List { msg: Some(n) }
            | Command::Uidl { msg: Some(n) }
            | Command::Retr { msg: n }
            | Command::Dele { msg: n } => {
                // Writing to a Vec cannot fail.
                drop(write!(out, " {n}"));
            }
            Command::Top { msg, lines } => drop(write!(out, " {msg} {lines}")),
            Command::List { msg: None }
            | Command::Uidl { msg: None }
            | Command::Capa
            | Command::Stls
            | Command::Stat
            | Command::Noop
            | Command::Rset
            | Command::Quit
            | Command::Utf8 => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The command line, final CRLF included.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(32);
        self.write_to(&mut out);
        Bytes::from(out)
    }

    /// Checks that the command can be sent: its line holds no CR, LF or NUL
    /// and parses back ([`Command::parse`]) to exactly this command. Every
    /// public field is covered: `USER`/`APOP` names (1 to 40 octets, no SP),
    /// the `PASS` password, the `APOP` digest (32 hex digits), message
    /// numbers (non-zero), the `AUTH` mechanism and base64 initial response
    /// (none without a mechanism), the `LANG` tag.
    ///
    /// [`ClientSession::send`](super::ClientSession::send) calls it and
    /// writes nothing on error. The error is [`UsageError::InvalidValue`]
    /// with the keyword as the field.
    pub fn check(&self) -> Result<(), UsageError> {
        let wire = self.to_bytes();
        let keyword = self.keyword();
        let line = appvalue::one_line(keyword, &wire)?;
        let reason = match Command::parse_borrowed(line) {
            Ok(back) if back == self.view() => return Ok(()),
            Ok(_) => "would be read back as a different command",
            Err(SyntaxError::InvalidArguments { reason, .. }) => reason,
            Err(_) => "does not follow the command grammar",
        };
        Err(appvalue::invalid(keyword, reason))
    }
}

/// The grammar of [`Command::parse`], once for both forms.
fn parse_in<'a, S: Source<'a>>(line: S) -> Result<Command<S::Out>, SyntaxError> {
    let input: &'a [u8] = line.octets();
    let (keyword, args) = split_keyword(input);
    let (name, kw) = keyword_of(keyword).ok_or(SyntaxError::UnknownCommand)?;
    let no_args = |cmd: Command<S::Out>| match args {
        None => Ok(cmd),
        Some(_) => Err(bad(name, "this command takes no arguments")),
    };
    let optional_msg = || match args {
        None => Ok(None),
        Some(a) => msg_arg(a).map(Some).ok_or(bad(name, BAD_MSG)),
    };
    let required_msg = || {
        args.and_then(msg_arg).ok_or(bad(
            name,
            "expected one message number (1*DIGIT, non-zero, at most 4294967295)",
        ))
    };
    match kw {
        Keyword::Capa => no_args(Command::Capa),
        Keyword::Stls => no_args(Command::Stls),
        Keyword::Stat => no_args(Command::Stat),
        Keyword::Noop => no_args(Command::Noop),
        Keyword::Rset => no_args(Command::Rset),
        Keyword::Quit => no_args(Command::Quit),
        Keyword::Utf8 => no_args(Command::Utf8),
        Keyword::List => Ok(Command::List {
            msg: optional_msg()?,
        }),
        Keyword::Uidl => Ok(Command::Uidl {
            msg: optional_msg()?,
        }),
        Keyword::Retr => Ok(Command::Retr {
            msg: required_msg()?,
        }),
        Keyword::Dele => Ok(Command::Dele {
            msg: required_msg()?,
        }),
        Keyword::Top => {
            let invalid = bad(
                name,
                "TOP requires a non-zero message number and a line count",
            );
            let args = args.ok_or(invalid.clone())?;
            let (msg_text, lines_text) = split_sp(args);
            if msg_text.len() > MAX_ARG || lines_text.is_some_and(|l| l.len() > MAX_ARG) {
                return Err(bad(name, "an argument is longer than 40 octets"));
            }
            let msg = msg_arg(msg_text).ok_or(invalid.clone())?;
            let lines = lines_text.and_then(number_arg).ok_or(invalid)?;
            Ok(Command::Top { msg, lines })
        }
        Keyword::User => {
            let arg = args
                .filter(|a| is_word_arg(a))
                .ok_or(bad(name, "USER requires one name of 1 to 40 octets"))?;
            Ok(Command::User {
                name: line.piece(arg),
            })
        }
        Keyword::Pass => {
            let arg = args
                .filter(|a| !a.is_empty())
                .ok_or(bad(name, "PASS requires a password"))?;
            if !is_line_text(arg) {
                return Err(bad(name, "password contains CR, LF or NUL"));
            }
            Ok(Command::Pass {
                password: Secret::new(line.piece(arg)),
            })
        }
        Keyword::Apop => {
            let invalid = bad(name, "APOP requires a name and a 32-digit hex digest");
            let (user, digest) = split_sp(args.ok_or(invalid.clone())?);
            let digest = digest.ok_or(invalid.clone())?;
            if !is_word_arg(user) || digest.len() != 32 || !digest.iter().all(u8::is_ascii_hexdigit)
            {
                return Err(invalid);
            }
            Ok(Command::Apop {
                name: line.piece(user),
                digest: Secret::new(line.piece(digest)),
            })
        }
        Keyword::Auth => {
            let Some(args) = args else {
                return Ok(Command::Auth {
                    mechanism: None,
                    initial_response: None,
                });
            };
            let (mech, resp) = split_sp(args);
            if !is_sasl_mech(mech) {
                return Err(bad(name, "invalid SASL mechanism name (1*20mech-char)"));
            }
            let initial_response = match resp {
                None => None,
                Some(r) if r == b"=" || is_base64(r) => Some(Secret::new(line.piece(r))),
                Some(_) => return Err(bad(name, "AUTH initial response must be base64 or \"=\"")),
            };
            Ok(Command::Auth {
                mechanism: Some(line.piece(mech)),
                initial_response,
            })
        }
        Keyword::Lang => match args {
            None => Ok(Command::Lang { tag: None }),
            Some(t) if is_lang_or_wild(t) => Ok(Command::Lang {
                tag: Some(line.piece(t)),
            }),
            Some(_) => Err(bad(name, "LANG takes a language tag or \"*\"")),
        },
    }
}

/// Parses one client line of an `AUTH` exchange (RFC 5034 §4), given
/// without its CRLF: `[base64]` (an empty line is the empty response) or
/// `"*"` to cancel the exchange (`cancel-response`).
///
/// The result is the line itself, as a [`Secret`]: a cancel is a secret
/// holding exactly `*`. The base64 is checked (alphabet, length a multiple
/// of 4, at most two `=` at the end), not decoded. Anything else is
/// [`SyntaxError::InvalidArguments`] for `"AUTH"` (the server answers
/// `-ERR` and ends the exchange).
pub fn parse_sasl_response(line: &Bytes) -> Result<Secret<Bytes>, SyntaxError> {
    sasl_response_in(line)
}

/// [`parse_sasl_response`] of a borrowed line: the same rules, the secret
/// is `line` itself.
pub fn parse_sasl_response_borrowed(line: &[u8]) -> Result<Secret<&[u8]>, SyntaxError> {
    sasl_response_in(line)
}

fn sasl_response_in<'a, S: Source<'a>>(line: S) -> Result<Secret<S::Out>, SyntaxError> {
    let text = line.octets();
    if text.is_empty() || text == b"*" || is_base64(text) {
        Ok(Secret::new(line.piece(text)))
    } else {
        Err(bad("AUTH", "SASL response must be base64 or \"*\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn parse(s: &str) -> Result<Command, SyntaxError> {
        let line = b(s);
        same_both_ways(&line);
        Command::parse(&line)
    }

    /// The differential check (issue #18): the borrowed parse of `line`
    /// succeeds or fails exactly as the owned one, and when it succeeds,
    /// attaching it to `line` or copying it gives the owned value.
    fn same_both_ways(line: &Bytes) {
        match (Command::parse_borrowed(line), Command::parse(line)) {
            (Ok(view), Ok(owned)) => {
                let attached = view.clone().map_octets(crate::octets::attach(line));
                assert_eq!(attached, owned, "{line:?}");
                assert_eq!(view.clone().into_owned(), owned, "{line:?}");
                assert_eq!(view.keyword(), owned.keyword());
                assert_eq!(view.has_multiline_reply(), owned.has_multiline_reply());
                assert_eq!(view.to_bytes(), owned.to_bytes());
            }
            (Err(e1), Err(e2)) => assert_eq!(e1, e2, "{line:?}"),
            (view, owned) => panic!("{line:?}: borrowed {view:?}, owned {owned:?}"),
        }
        match (
            parse_sasl_response_borrowed(line),
            parse_sasl_response(line),
        ) {
            (Ok(view), Ok(owned)) => assert_eq!(&view.expose()[..], &owned.expose()[..]),
            (Err(e1), Err(e2)) => assert_eq!(e1, e2, "{line:?}"),
            (view, owned) => panic!("{line:?}: borrowed {view:?}, owned {owned:?}"),
        }
    }

    #[test]
    fn keyword_lookup_matches_the_plain_definition() {
        const NAMES: [&str; 17] = [
            "USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "STAT", "LIST", "RETR", "DELE", "NOOP",
            "RSET", "QUIT", "TOP", "UIDL", "UTF8", "LANG",
        ];
        let plain = |text: &[u8]| {
            NAMES
                .iter()
                .find(|n| n.as_bytes().eq_ignore_ascii_case(text))
                .copied()
        };
        // Every keyword octet in both cases, and the octets that fold onto
        // them when bit 5 is cleared (`8` and `\x18`, `@` and `` ` ``, …).
        let mut alphabet: Vec<u8> = b"USERPAOTHCLIDNQF8LG".to_vec();
        alphabet.extend(b"userpaothclidnqf8lg");
        alphabet.extend([0x18, 0x38, 0x00, 0x20, b'@', b'`', 0xD5, 0xF5, 0x7F, 0x9F]);
        let mut r = Rng(3);
        for _ in 0..200_000 {
            let len = 3 + r.below(2);
            let text: Vec<u8> = (0..len).map(|_| r.pick(&alphabet)).collect();
            assert_eq!(keyword_of(&text).map(|(n, _)| n), plain(&text), "{text:?}");
        }
        for name in NAMES {
            assert_eq!(keyword_of(name.as_bytes()).map(|(n, _)| n), Some(name));
            let lower = name.to_ascii_lowercase();
            assert_eq!(keyword_of(lower.as_bytes()).map(|(n, _)| n), Some(name));
        }
        assert!(keyword_of(b"TOP\0").is_none());
        assert!(keyword_of(b"UTF\x18").is_none());
        assert!(keyword_of(b"TO").is_none());
        assert!(keyword_of(b"QUITS").is_none());
    }

    #[test]
    fn borrowed_parse_matches_owned_parse() {
        let line = b("APOP mrose c4c9334bac560ecc979e58001b3e22fb");
        let view = CommandRef::parse_borrowed(&line).unwrap();
        let Command::Apop { name, digest } = &view else {
            panic!("{view:?}")
        };
        // Sub-slices of the line, no copy.
        assert_eq!(name.as_ptr(), line[5..].as_ptr());
        assert_eq!(digest.expose().as_ptr(), line[11..].as_ptr());
        // Attached, the owned value shares the line's storage.
        let Command::Apop { name, .. } = view.map_octets(crate::octets::attach(&line)) else {
            panic!()
        };
        assert_eq!(name.as_ptr(), line[5..].as_ptr());
        assert!(Command::parse_borrowed(b"AUTH PLAIN dGVzdA==")
            .unwrap()
            .check()
            .is_ok());
        let bad = Command::Retr { msg: 0 };
        assert!(CommandRef::check(&bad).is_err());
    }

    fn ok(s: &str) -> Command {
        match parse(s) {
            Ok(c) => c,
            Err(e) => panic!("{s:?} should parse: {e}"),
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

    #[test]
    fn rfc1939_section10_example_session() {
        assert_eq!(
            round("APOP mrose c4c9334bac560ecc979e58001b3e22fb", None),
            Command::Apop {
                name: b("mrose"),
                digest: Secret::new(b("c4c9334bac560ecc979e58001b3e22fb")),
            }
        );
        assert_eq!(round("STAT", None), Command::Stat);
        assert_eq!(round("LIST", None), Command::List { msg: None });
        assert_eq!(round("RETR 1", None), Command::Retr { msg: 1 });
        assert_eq!(round("DELE 1", None), Command::Dele { msg: 1 });
        assert_eq!(round("RETR 2", None), Command::Retr { msg: 2 });
        assert_eq!(round("DELE 2", None), Command::Dele { msg: 2 });
        assert_eq!(round("QUIT", None), Command::Quit);
    }

    #[test]
    fn rfc1939_command_examples() {
        // §5, §7 examples.
        assert_eq!(round("LIST 2", None), Command::List { msg: Some(2) });
        assert_eq!(round("LIST 3", None), Command::List { msg: Some(3) });
        assert_eq!(round("NOOP", None), Command::Noop);
        assert_eq!(round("RSET", None), Command::Rset);
        assert_eq!(round("TOP 1 10", None), Command::Top { msg: 1, lines: 10 });
        assert_eq!(
            round("TOP 100 3", None),
            Command::Top { msg: 100, lines: 3 }
        );
        assert_eq!(round("UIDL", None), Command::Uidl { msg: None });
        assert_eq!(round("UIDL 2", None), Command::Uidl { msg: Some(2) });
        assert_eq!(
            round("USER frated", None),
            Command::User { name: b("frated") }
        );
        assert_eq!(
            round("USER mrose", None),
            Command::User { name: b("mrose") }
        );
        assert_eq!(
            round("PASS secret", None),
            Command::Pass {
                password: Secret::new(b("secret"))
            }
        );
    }

    #[test]
    fn extensions() {
        // RFC 2449 §5, RFC 2595 §4, RFC 6856 §2-§3.
        assert_eq!(round("CAPA", None), Command::Capa);
        assert_eq!(round("STLS", None), Command::Stls);
        assert_eq!(round("UTF8", None), Command::Utf8);
        assert_eq!(round("LANG", None), Command::Lang { tag: None });
        assert_eq!(round("LANG fr", None), Command::Lang { tag: Some(b("fr")) });
        assert_eq!(round("LANG *", None), Command::Lang { tag: Some(b("*")) });
        assert_eq!(
            round("LANG zh-Hant-TW", None),
            Command::Lang {
                tag: Some(b("zh-Hant-TW"))
            }
        );
        assert_eq!(
            round("LANG x-private1", None),
            Command::Lang {
                tag: Some(b("x-private1"))
            }
        );
        // RFC 5034 §4 examples.
        assert_eq!(
            round("AUTH GSSAPI", None),
            Command::Auth {
                mechanism: Some(b("GSSAPI")),
                initial_response: None
            }
        );
        assert_eq!(
            round("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", None),
            Command::Auth {
                mechanism: Some(b("PLAIN")),
                initial_response: Some(Secret::new(b("dGVzdAB0ZXN0AHRlc3Q=")))
            }
        );
        assert_eq!(
            round("AUTH EXTERNAL =", None),
            Command::Auth {
                mechanism: Some(b("EXTERNAL")),
                initial_response: Some(Secret::new(b("=")))
            }
        );
        assert_eq!(
            round("AUTH SCRAM-SHA-256", None).keyword(),
            "AUTH",
            "hyphenated mechanism"
        );
        assert_eq!(
            round("AUTH", None),
            Command::Auth {
                mechanism: None,
                initial_response: None
            }
        );
        // Long initial responses are not limited to 40 octets.
        let long = "QUFB".repeat(50);
        let c = round(&format!("AUTH PLAIN {long}"), None);
        let Command::Auth {
            initial_response: Some(r),
            ..
        } = c
        else {
            panic!()
        };
        assert_eq!(r.expose().len(), 200);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(round("stat", Some("STAT")), Command::Stat);
        assert_eq!(round("Quit", Some("QUIT")), Command::Quit);
        assert_eq!(round("sTlS", Some("STLS")), Command::Stls);
        assert_eq!(round("retr 7", Some("RETR 7")), Command::Retr { msg: 7 });
        assert_eq!(
            round("top 7 0", Some("TOP 7 0")),
            Command::Top { msg: 7, lines: 0 }
        );
        assert_eq!(
            round("user Bob", Some("USER Bob")),
            Command::User { name: b("Bob") }
        );
        assert_eq!(round("utf8", Some("UTF8")), Command::Utf8);
        assert_eq!(
            round("auth plain", Some("AUTH plain")),
            Command::Auth {
                mechanism: Some(b("plain")),
                initial_response: None
            }
        );
        assert_eq!(
            round(
                "apop a 0123456789ABCDEF0123456789abcdef",
                Some("APOP a 0123456789ABCDEF0123456789abcdef")
            )
            .keyword(),
            "APOP"
        );
    }

    #[test]
    fn every_keyword() {
        let all = [
            "USER a",
            "PASS a",
            "APOP a 00000000000000000000000000000000",
            "AUTH",
            "CAPA",
            "STLS",
            "STAT",
            "LIST",
            "RETR 1",
            "DELE 1",
            "NOOP",
            "RSET",
            "QUIT",
            "TOP 1 0",
            "UIDL",
            "UTF8",
            "LANG",
        ];
        for line in all {
            let c = round(line, None);
            assert!(line.starts_with(c.keyword()), "{line}");
        }
    }

    #[test]
    fn multiline_replies() {
        let multi = ["LIST", "UIDL", "RETR 1", "TOP 1 0", "CAPA", "LANG", "AUTH"];
        let single = [
            "LIST 1",
            "UIDL 1",
            "STAT",
            "DELE 1",
            "NOOP",
            "RSET",
            "QUIT",
            "USER a",
            "PASS a",
            "APOP a 00000000000000000000000000000000",
            "AUTH PLAIN",
            "AUTH PLAIN =",
            "STLS",
            "UTF8",
            "LANG fr",
            "LANG *",
        ];
        for line in multi {
            assert!(ok(line).has_multiline_reply(), "{line}");
        }
        for line in single {
            assert!(!ok(line).has_multiline_reply(), "{line}");
        }
    }

    #[test]
    fn pass_takes_the_rest_of_the_line() {
        assert_eq!(
            round("PASS my secret  pass ", None),
            Command::Pass {
                password: Secret::new(b("my secret  pass "))
            }
        );
        assert_eq!(
            round("PASS  leading", None),
            Command::Pass {
                password: Secret::new(b(" leading"))
            }
        );
        let long = "p".repeat(200);
        assert!(matches!(ok(&format!("PASS {long}")), Command::Pass { .. }));
        assert!(matches!(ok("PASS pässwörd"), Command::Pass { .. }));
        assert!(matches!(
            Command::parse(&Bytes::from_static(b"PASS \xff\xfe")),
            Ok(Command::Pass { .. })
        ));
        assert_eq!(invalid("PASS").1, "PASS requires a password");
        assert_eq!(invalid("PASS ").1, "PASS requires a password");
        assert_eq!(invalid("PASS a\0b").0, "PASS");
        assert_eq!(invalid("PASS a\rb").0, "PASS");
        assert_eq!(invalid("PASS a\nb").0, "PASS");
    }

    #[test]
    fn debug_redacts_secrets() {
        let pass = ok("PASS hunter2");
        let text = format!("{pass:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        let auth = ok("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=");
        let text = format!("{auth:?}");
        assert!(!text.contains("dGVzdAB0ZXN0AHRlc3Q="), "{text}");
        assert!(text.contains("PLAIN"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        let resp = parse_sasl_response(&b("c2VjcmV0")).unwrap();
        assert_eq!(format!("{resp:?}"), "[redacted]");
        let text = format!("{:#?}", ok("PASS hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn unknown_keywords() {
        unknown("");
        unknown(" ");
        unknown(" STAT");
        unknown("XYZZ");
        unknown("FOO 1");
        unknown("HELO example.com");
        unknown("STATS");
        unknown("RETRE 1");
        unknown("STLSX");
        unknown("STA");
        unknown("TO 1 2");
        unknown("ST");
        unknown("STARTTLS");
        unknown("ST\u{e4}T");
        unknown("\u{df}TAT");
        assert_eq!(
            Command::parse(&Bytes::from_static(b"ST\xc1T")),
            Err(SyntaxError::UnknownCommand)
        );
        assert_eq!(
            Command::parse(&Bytes::from_static(b"\xff\xff\xff\xff")),
            Err(SyntaxError::UnknownCommand)
        );
        unknown("STAT\t");
        unknown("STAT\r");
        unknown("RETR\t1");
        unknown("QUIT\0");
    }

    #[test]
    fn message_numbers() {
        assert_eq!(
            round("RETR 4294967295", None),
            Command::Retr { msg: u32::MAX }
        );
        assert_eq!(round("RETR 007", Some("RETR 7")), Command::Retr { msg: 7 });
        for cmd in ["RETR", "DELE", "LIST", "UIDL"] {
            for arg in [
                "0",
                "00",
                "4294967296",
                "99999999999999999999999",
                "+1",
                "-1",
                "1.0",
                "1a",
                "a",
                "",
                " 1",
                "1 ",
                "1 2",
                "１",
                "0x1",
            ] {
                let (c, _) = invalid(&format!("{cmd} {arg}"));
                assert_eq!(c, cmd);
            }
            // 40 octets with leading zeros is still one argument, 41 is not.
            let forty = format!("{cmd} {}1", "0".repeat(39));
            assert!(parse(&forty).is_ok(), "{forty}");
            let forty_one = format!("{cmd} {}1", "0".repeat(40));
            assert_eq!(invalid(&forty_one).0, cmd);
        }
        assert_eq!(
            invalid("RETR").1,
            "expected one message number (1*DIGIT, non-zero, at most 4294967295)"
        );
        invalid("DELE");
        invalid("TOP");
        invalid("TOP 1");
        invalid("TOP 1 ");
        invalid("TOP 0 1");
        invalid("TOP 1 -1");
        invalid("TOP 1 +1");
        invalid("TOP 1 4294967296");
        invalid("TOP 1  2");
        invalid("TOP  1 2");
        invalid("TOP 1 2 3");
        invalid("TOP 1 2 ");
        assert_eq!(
            round("TOP 4294967295 4294967295", None),
            Command::Top {
                msg: u32::MAX,
                lines: u32::MAX
            }
        );
        let long = format!("TOP 1 {}5", "0".repeat(40));
        assert_eq!(invalid(&long).1, "an argument is longer than 40 octets");
    }

    #[test]
    fn no_argument_commands() {
        for cmd in ["CAPA", "STLS", "STAT", "NOOP", "RSET", "QUIT", "UTF8"] {
            for suffix in [" ", " foo", "  ", " 1"] {
                let (c, reason) = invalid(&format!("{cmd}{suffix}"));
                assert_eq!(c, cmd);
                assert_eq!(reason, "this command takes no arguments");
            }
        }
        invalid("LIST ");
        invalid("UIDL ");
        invalid("LANG ");
    }

    #[test]
    fn user_and_apop_arguments() {
        let forty = "a".repeat(40);
        assert!(parse(&format!("USER {forty}")).is_ok());
        invalid(&format!("USER {forty}a"));
        invalid("USER");
        invalid("USER ");
        invalid("USER a b");
        invalid("USER  a");
        invalid("USER a ");
        invalid("USER a\tb");
        invalid("USER a\x7f");
        assert_eq!(
            Command::parse(&Bytes::from_static(b"USER \xff")).map_err(|_| ()),
            Err(())
        );
        // RFC 6856: UTF-8 user names.
        assert_eq!(round("USER jörg", None), Command::User { name: b("jörg") });
        assert!(parse(&format!("APOP {forty} c4c9334bac560ecc979e58001b3e22fb")).is_ok());
        invalid(&format!("APOP {forty}a c4c9334bac560ecc979e58001b3e22fb"));
        invalid("APOP");
        invalid("APOP mrose");
        invalid("APOP mrose ");
        invalid("APOP mrose c4c9334bac560ecc979e58001b3e22f");
        invalid("APOP mrose c4c9334bac560ecc979e58001b3e22fbb");
        invalid("APOP mrose c4c9334bac560ecc979e58001b3e22fg");
        invalid("APOP mrose c4c9334bac560ecc979e58001b3e22fb ");
        invalid("APOP mrose  c4c9334bac560ecc979e58001b3e22fb");
        invalid("APOP mrose c4c9334bac560ecc979e58001b3e22fb x");
        invalid("APOP  c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn auth_arguments() {
        invalid("AUTH ");
        invalid("AUTH  PLAIN");
        invalid("AUTH PLAIN ");
        invalid("AUTH PL@IN");
        invalid("AUTH ABCDEFGHIJKLMNOPQRSTU"); // 21 characters
        assert!(parse("AUTH ABCDEFGHIJKLMNOPQRST").is_ok()); // 20
        invalid("AUTH PLAIN abc");
        invalid("AUTH PLAIN ab=c");
        invalid("AUTH PLAIN a===");
        invalid("AUTH PLAIN ====");
        invalid("AUTH PLAIN ==");
        invalid("AUTH PLAIN *");
        invalid("AUTH PLAIN dGVz dA==");
        invalid("AUTH PLAIN dGVzdA== ");
        invalid("AUTH PLAIN d!Vz");
        invalid("AUTH PLAIN é");
    }

    #[test]
    fn lang_arguments() {
        invalid("LANG fr fr");
        invalid("LANG -fr");
        invalid("LANG fr-");
        invalid("LANG fr--CA");
        invalid("LANG 12");
        invalid("LANG **");
        invalid("LANG abcdefghi");
        invalid("LANG fr_CA");
        invalid(&format!("LANG {}", ["abcdefgh"; 5].join("-")));
        assert!(parse(&format!("LANG en-{}", ["abcdefgh"; 4].join("-"))).is_ok());
    }

    #[test]
    fn sasl_responses() {
        let r = parse_sasl_response(&b("dGVzdAB0ZXN0AHRlc3Q=")).unwrap();
        assert_eq!(r.expose(), &b("dGVzdAB0ZXN0AHRlc3Q="));
        assert_eq!(parse_sasl_response(&b("*")).unwrap().expose(), &b("*"));
        assert_eq!(parse_sasl_response(&b("")).unwrap().expose(), &b(""));
        for bad_line in [
            "abc",
            "* ",
            " *",
            "**",
            "ab=c",
            "dGVz dA==",
            "=",
            "dGVzdA== ",
            "é",
        ] {
            assert_eq!(
                parse_sasl_response(&b(bad_line)),
                Err(SyntaxError::InvalidArguments {
                    command: "AUTH",
                    reason: "SASL response must be base64 or \"*\""
                }),
                "{bad_line:?}"
            );
        }
    }

    #[test]
    fn zero_copy() {
        let line = b("APOP mrose c4c9334bac560ecc979e58001b3e22fb");
        let Command::Apop { name, digest } = Command::parse(&line).unwrap() else {
            panic!()
        };
        let range = line.as_ptr() as usize..line.as_ptr() as usize + line.len();
        assert!(range.contains(&(name.as_ptr() as usize)));
        assert!(range.contains(&(digest.expose().as_ptr() as usize)));
        let line = b("PASS x y");
        let Command::Pass { password } = Command::parse(&line).unwrap() else {
            panic!()
        };
        assert_eq!(password.expose().as_ptr(), line[5..].as_ptr());
    }

    #[test]
    fn hand_built_auth_without_mechanism_drops_the_response() {
        let c = Command::Auth {
            mechanism: None,
            initial_response: Some(Secret::new(b("AAAA"))),
        };
        assert_eq!(&c.to_bytes()[..], b"AUTH\r\n");
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
        fn u32(&mut self) -> u32 {
            match self.below(4) {
                0 => u32::MAX - self.below(3) as u32,
                1 => 1 + self.below(10) as u32,
                _ => self.next() as u32,
            }
        }
        fn msg(&mut self) -> u32 {
            self.u32().max(1)
        }
    }

    const WORD: &[&str] = &[
        "a", "Z", "0", "9", "!", "~", "@", ".", "-", "_", "[", "\"", "é", "用",
    ];
    const B64: &[&str] = &["A", "z", "0", "+", "/", "Q", "w"];

    fn gen_word(r: &mut Rng) -> Bytes {
        let mut s = r.string_from(WORD, 1, 40);
        while s.len() > 40 {
            s.pop();
        }
        b(&s)
    }

    fn gen_base64(r: &mut Rng) -> String {
        let mut s = r.string_from(B64, 0, 10).repeat(4);
        if s.is_empty() || r.chance(30) {
            s.push_str(&r.string_from(B64, 2, 2));
            s.push_str("==");
        }
        s
    }

    fn gen_command(r: &mut Rng) -> Command {
        match r.below(17) {
            0 => Command::User { name: gen_word(r) },
            1 => Command::Pass {
                password: Secret::new(b(&r.string_from(
                    &["a", " ", "é", "!", "\t", "\u{7f}", "P"],
                    1,
                    60,
                ))),
            },
            2 => Command::Apop {
                name: gen_word(r),
                digest: Secret::new(b(&r.string_from(
                    &["0", "9", "a", "f", "A", "F", "7"],
                    32,
                    32,
                ))),
            },
            3 => {
                let mechanism = r
                    .chance(85)
                    .then(|| b(&r.string_from(&["A", "Z", "0", "-", "_", "m"], 1, 20)));
                let initial_response = match (&mechanism, r.below(3)) {
                    (None, _) | (_, 0) => None,
                    (_, 1) => Some(Secret::new(b("="))),
                    _ => Some(Secret::new(b(&gen_base64(r)))),
                };
                Command::Auth {
                    mechanism,
                    initial_response,
                }
            }
            4 => Command::Capa,
            5 => Command::Stls,
            6 => Command::Stat,
            7 => Command::List {
                msg: r.chance(50).then(|| r.msg()),
            },
            8 => Command::Retr { msg: r.msg() },
            9 => Command::Dele { msg: r.msg() },
            10 => Command::Noop,
            11 => Command::Rset,
            12 => Command::Quit,
            13 => Command::Top {
                msg: r.msg(),
                lines: if r.chance(20) { 0 } else { r.u32() },
            },
            14 => Command::Uidl {
                msg: r.chance(50).then(|| r.msg()),
            },
            15 => Command::Utf8,
            _ => Command::Lang {
                tag: match r.below(3) {
                    0 => None,
                    1 => Some(b("*")),
                    _ => {
                        let mut t = r.string_from(&["a", "Z", "q"], 1, 8);
                        for _ in 0..r.below(3) {
                            t.push('-');
                            t.push_str(&r.string_from(&["a", "Z", "0", "9"], 1, 8));
                        }
                        Some(b(&t))
                    }
                },
            },
        }
    }

    #[test]
    fn generated_round_trips() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let c = gen_command(&mut r);
            let wire = c.to_bytes();
            assert!(wire.ends_with(b"\r\n"));
            let line = wire.slice(..wire.len() - 2);
            same_both_ways(&line);
            let parsed = Command::parse(&line).unwrap_or_else(|e| {
                panic!("{:?} did not parse: {e}", String::from_utf8_lossy(&line))
            });
            assert_eq!(parsed, c, "{:?}", String::from_utf8_lossy(&line));
            assert_eq!(parsed.to_bytes(), wire);
        }
    }

    #[test]
    fn mutations_never_panic() {
        let seeds = [
            "USER mrose",
            "PASS a b c",
            "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
            "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
            "AUTH",
            "CAPA",
            "STLS",
            "STAT",
            "LIST 1",
            "RETR 1",
            "DELE 4294967295",
            "TOP 1 10",
            "UIDL 2",
            "UTF8",
            "LANG en-US",
        ];
        let noise: &[u8] = b" 0129aZ*=+/-\r\n\0\t\x7f\x80\xc3\xa9\xff";
        let mut r = Rng(42);
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
            if let Ok(c) = Command::parse(&line) {
                let wire = c.to_bytes();
                let again = Command::parse(&wire.slice(..wire.len() - 2));
                assert_eq!(again.as_ref(), Ok(&c), "{line:?}");
            }
            let _ = parse_sasl_response(&line);
        }
    }
}
