//! IMAP responses: parsing one complete response message and writing it
//! back.
//!
//! Grammar: RFC 9051 §7 and §9 (`response`, `greeting`, `resp-cond-state`,
//! `resp-cond-bye`, `resp-text-code`, `continue-req`), with RFC 3501, RFC
//! 2221 `REFERRAL` and RFC 4959 SASL continuations.
//!
//! Status responses, `CAPABILITY` data and continuation requests are typed;
//! every other untagged response (`* 23 EXISTS`, `* 1 FETCH (...)`,
//! `* LIST ...`) is framed generically as an optional number, a name and an
//! [`Args`] tree.
//!
//! Parsing is zero-copy: every byte string in the result is a
//! [`Bytes::slice_ref`] of the message handed to [`Response::parse`], and
//! parsing a status response allocates nothing.
//!
//! Every type here is generic over the container of its byte strings
//! ([`Octets`], see [`crate::octets`]): `Response` is the owned form (`Bytes`
//! handles), [`ResponseRef`] the borrowed one ([`Response::parse_borrowed`]:
//! sub-slices of the caller's buffer, no reference count, no allocation).
//! Both come out of the same grammar.

use bytes::Bytes;

use crate::appvalue;
use crate::imap::capability::{self, Capabilities};
use crate::imap::command::{frames_as_one, Args};
use crate::imap::syntax::{
    all_atom_chars, atom, atom_word, is_text, list, number, nz_number, scan, tag, whole, word,
    write_decimal,
};
use crate::imap::SyntaxError;
use crate::octets::{Octets, Source};
use crate::UsageError;

/// The condition of a status response (RFC 9051 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `OK` (§7.1.1): success, or an informational untagged message.
    Ok,
    /// `NO` (§7.1.2): operational error.
    No,
    /// `BAD` (§7.1.3): protocol error.
    Bad,
    /// `BYE` (§7.1.5): the server is closing the connection. Untagged only.
    Bye,
    /// `PREAUTH` (§7.1.4): greeting of an already authenticated connection.
    /// Untagged only.
    Preauth,
}

/// The status keywords, as RFC 9051 spells them.
#[cfg(test)]
const STATUSES: [(&str, Status); 5] = [
    ("OK", Status::Ok),
    ("NO", Status::No),
    ("BAD", Status::Bad),
    ("BYE", Status::Bye),
    ("PREAUTH", Status::Preauth),
];

impl Status {
    /// The keyword, upper case: `"OK"`, `"NO"`, `"BAD"`, `"BYE"`, `"PREAUTH"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::Preauth => "PREAUTH",
        }
    }

    /// The status whose keyword is the atom `keyword` (ASCII
    /// case-insensitive), compared as one folded word ([`atom_word`]).
    fn from_keyword(keyword: &[u8]) -> Option<Status> {
        const OK: u128 = word("OK");
        const NO: u128 = word("NO");
        const BAD: u128 = word("BAD");
        const BYE: u128 = word("BYE");
        const PREAUTH: u128 = word("PREAUTH");
        match atom_word(keyword)? {
            OK => Some(Status::Ok),
            NO => Some(Status::No),
            BAD => Some(Status::Bad),
            BYE => Some(Status::Bye),
            PREAUTH => Some(Status::Preauth),
            _ => None,
        }
    }
}

/// RFC 9051 §9 `resp-cond-state` / `resp-cond-auth` / `resp-cond-bye`: a
/// status keyword and `resp-text = ["[" resp-text-code "]" SP] [text]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusResponse<B: Octets = Bytes> {
    /// The condition.
    pub status: Status,
    /// The response code in brackets, if any.
    pub code: Option<Code<B>>,
    /// The human-readable text (may be empty), as written: any octets but
    /// CR, LF and NUL.
    pub text: B,
}

/// A borrowed [`StatusResponse`]: a view into the parsed message.
pub type StatusResponseRef<'a> = StatusResponse<&'a [u8]>;

impl<B: Octets> StatusResponse<B> {
    /// Writes `status SP ["[" code "]" SP] text`, the RFC 9051 form (no CRLF,
    /// no tag). An empty text still gets its SP, as RFC 9051's optional
    /// `[text]` allows: `a1 OK `.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        write_resp_text(self.code.as_ref(), self.text.as_ref(), out);
    }

    /// Rebuilds the status response with another container, calling `f` on
    /// every byte string in wire order (the code's, then the text).
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> StatusResponse<C> {
        StatusResponse {
            status: self.status,
            code: self.code.map(|code| code.map_octets(&mut f)),
            text: f(self.text),
        }
    }
}

impl StatusResponseRef<'_> {
    /// The same status response with its byte strings copied into fresh
    /// [`Bytes`].
    pub fn into_owned(self) -> StatusResponse {
        self.map_octets(crate::octets::copy)
    }
}

/// A response code: RFC 9051 §7.1 `resp-text-code`, the bracketed part of a
/// status response or continuation request.
///
/// The codes below are typed when their arguments fit their grammar; a code
/// with unexpected arguments (`[ALERT now]`, `[UIDNEXT 0]`) is kept as
/// [`Code::Other`] rather than failing the response. Names are
/// case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Code<B: Octets = Bytes> {
    /// `ALERT`: the text must be shown to the user.
    Alert,
    /// `CAPABILITY` followed by the capability list (RFC 9051
    /// `capability-data`), e.g. in the greeting or after `LOGIN`.
    Capability(Capabilities<B>),
    /// `REFERRAL` (RFC 2221 §3): the raw URL text (RFC 2221 allows several
    /// URLs separated by SP).
    Referral(B),
    /// `PRIVACYREQUIRED` (RFC 9051 §7.1, RFC 5530): the operation needs TLS.
    PrivacyRequired,
    /// `PARSE`: a message could not be parsed.
    Parse,
    /// `READ-ONLY`.
    ReadOnly,
    /// `READ-WRITE`.
    ReadWrite,
    /// `TRYCREATE`: the target mailbox does not exist.
    TryCreate,
    /// `UIDNEXT SP nz-number`.
    UidNext(u32),
    /// `UIDVALIDITY SP nz-number`.
    UidValidity(u32),
    /// `UNSEEN SP nz-number` (RFC 3501 only).
    Unseen(u32),
    /// `PERMANENTFLAGS SP "(" [flag-perm *(SP flag-perm)] ")"`: the inside of
    /// the list.
    PermanentFlags(Args<B>),
    /// Any other code, e.g. `[AUTHENTICATIONFAILED]`, `[UNAVAILABLE]`,
    /// `[CLOSED]`, `[APPENDUID 1 2]`, kept as name + raw args.
    Other {
        /// `atom`, as written.
        name: B,
        /// `1*<any TEXT-CHAR except "]">` after the name's SP, raw.
        args: Option<B>,
    },
}

/// A borrowed [`Code`]: a view into the parsed message.
pub type CodeRef<'a> = Code<&'a [u8]>;

/// The codes that take no arguments.
#[cfg(test)]
const FLAG_CODES: [(&str, Code); 6] = [
    ("ALERT", Code::Alert),
    ("PRIVACYREQUIRED", Code::PrivacyRequired),
    ("PARSE", Code::Parse),
    ("READ-ONLY", Code::ReadOnly),
    ("READ-WRITE", Code::ReadWrite),
    ("TRYCREATE", Code::TryCreate),
];

impl CodeRef<'_> {
    /// The same code with its byte strings copied into fresh [`Bytes`].
    pub fn into_owned(self) -> Code {
        self.map_octets(crate::octets::copy)
    }
}

impl<B: Octets> Code<B> {
    /// Rebuilds the code with another container, calling `f` on every byte
    /// string in wire order.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Code<C> {
        match self {
            Code::Alert => Code::Alert,
            Code::Capability(caps) => Code::Capability(caps.map_octets(f)),
            Code::Referral(url) => Code::Referral(f(url)),
            Code::PrivacyRequired => Code::PrivacyRequired,
            Code::Parse => Code::Parse,
            Code::ReadOnly => Code::ReadOnly,
            Code::ReadWrite => Code::ReadWrite,
            Code::TryCreate => Code::TryCreate,
            Code::UidNext(n) => Code::UidNext(n),
            Code::UidValidity(n) => Code::UidValidity(n),
            Code::Unseen(n) => Code::Unseen(n),
            Code::PermanentFlags(flags) => Code::PermanentFlags(flags.map_octets(f)),
            Code::Other { name, args } => {
                let name = f(name);
                Code::Other {
                    name,
                    args: args.map(f),
                }
            }
        }
    }

    /// The code's name: upper case for the typed codes, as written for
    /// [`Code::Other`].
    pub fn name(&self) -> &[u8] {
        match self {
            Code::Alert => b"ALERT",
            Code::Capability(_) => b"CAPABILITY",
            Code::Referral(_) => b"REFERRAL",
            Code::PrivacyRequired => b"PRIVACYREQUIRED",
            Code::Parse => b"PARSE",
            Code::ReadOnly => b"READ-ONLY",
            Code::ReadWrite => b"READ-WRITE",
            Code::TryCreate => b"TRYCREATE",
            Code::UidNext(_) => b"UIDNEXT",
            Code::UidValidity(_) => b"UIDVALIDITY",
            Code::Unseen(_) => b"UNSEEN",
            Code::PermanentFlags(_) => b"PERMANENTFLAGS",
            Code::Other { name, .. } => name.as_ref(),
        }
    }

    /// Parses the inside of the brackets (`UIDNEXT 4392`); `None` if it is not
    /// `atom [SP 1*<any TEXT-CHAR except "]">]`.
    ///
    /// `inner` is what [`resp_text`] found between `[` and the first `]` of
    /// a valid text: it holds no `]`, CR, LF or NUL, so the arguments need no
    /// further check.
    fn parse_in<'a, S: Source<'a>>(src: S, inner: &'a [u8]) -> Option<Code<S::Out>> {
        let (rest, name) = atom(inner).ok()?;
        let args = match rest {
            [] => None,
            [b' ', args @ ..] if !args.is_empty() => Some(args),
            _ => return None,
        };
        // The folded words of the typed codes' names ([`atom_word`]).
        const ALERT: u128 = word("ALERT");
        const PRIVACYREQUIRED: u128 = word("PRIVACYREQUIRED");
        const PARSE: u128 = word("PARSE");
        const READ_ONLY: u128 = word("READ-ONLY");
        const READ_WRITE: u128 = word("READ-WRITE");
        const TRYCREATE: u128 = word("TRYCREATE");
        const UIDNEXT: u128 = word("UIDNEXT");
        const UIDVALIDITY: u128 = word("UIDVALIDITY");
        const UNSEEN: u128 = word("UNSEEN");
        const REFERRAL: u128 = word("REFERRAL");
        const CAPABILITY: u128 = word("CAPABILITY");
        const PERMANENTFLAGS: u128 = word("PERMANENTFLAGS");
        let typed = match (atom_word(name), args) {
            (Some(ALERT), None) => Some(Code::Alert),
            (Some(PRIVACYREQUIRED), None) => Some(Code::PrivacyRequired),
            (Some(PARSE), None) => Some(Code::Parse),
            (Some(READ_ONLY), None) => Some(Code::ReadOnly),
            (Some(READ_WRITE), None) => Some(Code::ReadWrite),
            (Some(TRYCREATE), None) => Some(Code::TryCreate),
            (Some(UIDNEXT), Some(args)) => whole(args, nz_number).map(Code::UidNext),
            (Some(UIDVALIDITY), Some(args)) => whole(args, nz_number).map(Code::UidValidity),
            (Some(UNSEEN), Some(args)) => whole(args, nz_number).map(Code::Unseen),
            (Some(REFERRAL), Some(args)) => Some(Code::Referral(src.piece(args))),
            (Some(CAPABILITY), Some(args)) => capability::parse_piece(src, args)
                .ok()
                .map(Code::Capability),
            (Some(PERMANENTFLAGS), Some(args)) => whole(args, list)
                .filter(|flags| is_flag_list(flags))
                .map(|flags| Code::PermanentFlags(Args::from_validated(src.piece(flags)))),
            _ => None,
        };
        Some(typed.unwrap_or_else(|| Code::Other {
            name: src.piece(name),
            args: args.map(|a| src.piece(a)),
        }))
    }

    /// Writes the code without its brackets: `UIDNEXT 4392`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name());
        match self {
            Code::Capability(caps) => {
                out.push(b' ');
                out.extend_from_slice(caps.as_bytes().as_ref());
            }
            Code::Referral(url) => {
                out.push(b' ');
                out.extend_from_slice(url.as_ref());
            }
            Code::UidNext(n) | Code::UidValidity(n) | Code::Unseen(n) => {
                out.push(b' ');
                write_decimal(u64::from(*n), out);
            }
            Code::PermanentFlags(flags) => {
                out.extend_from_slice(b" (");
                out.extend_from_slice(flags.as_bytes().as_ref());
                out.push(b')');
            }
            Code::Other {
                args: Some(args), ..
            } => {
                out.push(b' ');
                out.extend_from_slice(args.as_ref());
            }
            _ => {}
        }
    }
}

/// `flag-perm *(SP flag-perm)` or nothing: `\*`, `\Seen`, `$Keyword`.
fn is_flag_list(flags: &[u8]) -> bool {
    flags.is_empty()
        || flags.split(|&c| c == b' ').all(|flag| {
            let name = flag.strip_prefix(b"\\").unwrap_or(flag);
            name == b"*" || (!name.is_empty() && all_atom_chars(name))
        })
}

/// One IMAP response message (RFC 9051 §9 `response`, `greeting`,
/// `continue-req`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Response<B: Octets = Bytes> {
    /// Tagged completion: `a1 OK [code] text` (status is Ok/No/Bad only).
    Tagged {
        /// The tag of the command it completes.
        tag: B,
        /// `OK`, `NO` or `BAD`, code and text.
        status: StatusResponse<B>,
    },
    /// Untagged status: `* OK/NO/BAD/BYE/PREAUTH [code] text` (also used for
    /// the greeting).
    Status(StatusResponse<B>),
    /// `* CAPABILITY ...` (RFC 9051 §7.2.2).
    Capability(Capabilities<B>),
    /// Any other untagged data: `* 23 EXISTS`, `* 1 FETCH (FLAGS (\Seen)
    /// BODY[] {28}\r\n...)`, `* LIST () "/" INBOX`, `* ENABLED ...`,
    /// `* ID (...)`.
    Data {
        /// The leading `number` of message data (`* 23 EXISTS`).
        number: Option<u32>,
        /// The response name, an atom as written.
        name: B,
        /// The rest, as generic arguments (empty when there is none).
        args: Args<B>,
    },
    /// `+ text` or `+ base64` (continuation request, RFC 9051 §7.5).
    Continuation {
        /// A response code, if the text starts with one.
        code: Option<Code<B>>,
        /// The text or base64 SASL challenge (may be empty).
        text: B,
    },
}

/// A borrowed [`Response`]: a view into the parsed message
/// ([`Response::parse_borrowed`]).
pub type ResponseRef<'a> = Response<&'a [u8]>;

/// The response grammar, once for both forms: every kept sub-slice goes
/// through [`Source::piece`].
fn parse_in<'a, S: Source<'a>>(src: S) -> Result<Response<S::Out>, SyntaxError> {
    let input = src.octets();
    let invalid = |reason| SyntaxError::InvalidResponse { reason };
    if let Some(rest) = input.strip_prefix(b"+") {
        let text = match rest {
            [] => rest,
            [b' ', text @ ..] => text,
            _ => return Err(invalid("continuation request: expected SP after '+'")),
        };
        let (code, text) = resp_text(src, text)?;
        return Ok(Response::Continuation { code, text });
    }
    if let Some(rest) = input.strip_prefix(b"*") {
        let rest = rest
            .strip_prefix(b" ")
            .ok_or(invalid("expected SP after '*'"))?;
        return untagged(src, rest);
    }
    let (rest, tag_text) = tag(input).map_err(|_| SyntaxError::Tag)?;
    let rest = rest.strip_prefix(b" ").ok_or(SyntaxError::Tag)?;
    let (after, keyword) = atom(rest).map_err(|_| invalid("expected OK, NO or BAD"))?;
    let status = match Status::from_keyword(keyword) {
        Some(s @ (Status::Ok | Status::No | Status::Bad)) => s,
        Some(_) => return Err(invalid("BYE and PREAUTH are never tagged")),
        None => return Err(invalid("expected OK, NO or BAD")),
    };
    let status = status_tail(src, status, after)?;
    Ok(Response::Tagged {
        tag: src.piece(tag_text),
        status,
    })
}

impl<'a> Response<&'a [u8]> {
    /// [`Response::parse`] without `Bytes` handles: every byte string of the
    /// result is a sub-slice of `message`. Same grammar, same errors;
    /// allocates nothing.
    pub fn parse_borrowed(message: &'a [u8]) -> Result<Self, SyntaxError> {
        parse_in(message)
    }

    /// The same response with its byte strings copied into fresh [`Bytes`]
    /// (to keep it past the buffer). [`crate::octets::attach`] given to
    /// [`Response::map_octets`] shares the buffer instead.
    pub fn into_owned(self) -> Response {
        self.map_octets(crate::octets::copy)
    }
}

impl Response {
    /// Parses one complete response message, given without its final CRLF
    /// but with its literals.
    ///
    /// Keywords are case-insensitive. Leniencies, all normalized away by
    /// [`Response::write_to`]: a status keyword or a bare `+` without the SP
    /// and text RFC 3501 requires; a missing SP after a response code;
    /// a trailing SP after an untagged data name (`* SEARCH `).
    ///
    /// A tagged `BYE` or `PREAUTH`, or a tagged response with any other
    /// keyword, is [`SyntaxError::InvalidResponse`]; a bad tag is
    /// [`SyntaxError::Tag`].
    pub fn parse(message: &Bytes) -> Result<Response, SyntaxError> {
        parse_in(message)
    }

    /// Checks that the response can be sent: its bytes frame as exactly one
    /// message (a CRLF only after a literal header; a text must not end like
    /// one, `{5}`) and parse back ([`Response::parse`]) to exactly this
    /// response. Every public field is covered: the tag, the status text (no
    /// CR, LF or NUL; without a code it must not start with a valid
    /// `[code]`), each [`Code`] (a [`Code::Other`] must not be spelled like a
    /// typed one), data names and arguments, capability names.
    ///
    /// The server session calls it for every response the application
    /// gives and writes nothing on error. The error is
    /// [`UsageError::InvalidValue`].
    pub fn check(&self) -> Result<(), UsageError> {
        self.check_written(self.to_bytes(), false)
    }

    /// [`Response::check`] on `wire`, the output of [`Response::write_to`].
    /// With `text_may_hold_code` (free text given to `complete` or
    /// `continue_request`), a text that starts with a valid `[code]` is
    /// accepted as written: the peer reads the code, as RFC 9051
    /// `resp-text` says, and the message is still exactly one.
    pub(crate) fn check_written(
        &self,
        wire: Bytes,
        text_may_hold_code: bool,
    ) -> Result<(), UsageError> {
        const FIELD: &str = "IMAP response";
        if !frames_as_one(&wire) {
            return Err(appvalue::invalid(
                FIELD,
                "CR or LF outside a literal, or a text that ends like a literal header",
            ));
        }
        let message = wire.slice(..wire.len().saturating_sub(2));
        let reason = match Response::parse(&message) {
            Ok(back) if back == *self => return Ok(()),
            Ok(back) if text_may_hold_code && back.to_bytes() == wire => return Ok(()),
            Ok(_) => "would be read back as a different response (a text starting with a [code]?)",
            Err(SyntaxError::InvalidResponse { reason } | SyntaxError::Literal { reason }) => {
                reason
            }
            Err(SyntaxError::Tag) => "invalid tag",
            Err(_) => "does not follow the response grammar",
        };
        Err(appvalue::invalid(FIELD, reason))
    }
}

impl<B: Octets> Response<B> {
    /// Rebuilds the response with another container, calling `f` on every
    /// byte string in wire order. With [`crate::octets::attach`] a borrowed
    /// response becomes exactly the owned one [`Response::parse`] gives.
    pub fn map_octets<C: Octets>(self, mut f: impl FnMut(B) -> C) -> Response<C> {
        match self {
            Response::Tagged { tag, status } => {
                let tag = f(tag);
                Response::Tagged {
                    tag,
                    status: status.map_octets(f),
                }
            }
            Response::Status(status) => Response::Status(status.map_octets(f)),
            Response::Capability(caps) => Response::Capability(caps.map_octets(f)),
            Response::Data { number, name, args } => {
                let name = f(name);
                Response::Data {
                    number,
                    name,
                    args: args.map_octets(f),
                }
            }
            Response::Continuation { code, text } => Response::Continuation {
                code: code.map(|code| code.map_octets(&mut f)),
                text: f(text),
            },
        }
    }

    /// True for a greeting (RFC 9051 §7.1: `greeting = "*" SP (resp-cond-auth
    /// / resp-cond-bye) CRLF`): an untagged `OK`, `PREAUTH` or `BYE`.
    pub fn is_greeting(&self) -> bool {
        matches!(
            self,
            Response::Status(StatusResponse {
                status: Status::Ok | Status::Preauth | Status::Bye,
                ..
            })
        )
    }

    /// Appends the whole response, literals inline and final CRLF included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Response::Tagged { tag, status } => {
                out.extend_from_slice(tag.as_ref());
                out.push(b' ');
                status.write_to(out);
            }
            Response::Status(status) => {
                out.extend_from_slice(b"* ");
                status.write_to(out);
            }
            Response::Capability(caps) => {
                out.extend_from_slice(b"* CAPABILITY ");
                out.extend_from_slice(caps.as_bytes().as_ref());
            }
            Response::Data { number, name, args } => {
                out.extend_from_slice(b"* ");
                if let Some(n) = number {
                    write_decimal(u64::from(*n), out);
                    out.push(b' ');
                }
                out.extend_from_slice(name.as_ref());
                if !args.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(args.as_bytes().as_ref());
                }
            }
            Response::Continuation { code, text } => {
                out.extend_from_slice(b"+ ");
                write_resp_text(code.as_ref(), text.as_ref(), out);
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The whole response, final CRLF included.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// Everything after `* `.
fn untagged<'a, S: Source<'a>>(src: S, rest: &'a [u8]) -> Result<Response<S::Out>, SyntaxError> {
    let invalid = |reason| SyntaxError::InvalidResponse { reason };
    let (rest, number) = match number(rest) {
        Ok((r, n)) => (
            r.strip_prefix(b" ")
                .ok_or(invalid("expected SP after the message number"))?,
            Some(n),
        ),
        Err(_) if rest.first().is_some_and(u8::is_ascii_digit) => {
            return Err(invalid("message number does not fit in 32 bits"))
        }
        Err(_) => (rest, None),
    };
    let (after, name) = atom(rest).map_err(|_| invalid("expected a response name"))?;
    if number.is_none() {
        if let Some(status) = Status::from_keyword(name) {
            return Ok(Response::Status(status_tail(src, status, after)?));
        }
        if name.eq_ignore_ascii_case(b"CAPABILITY") {
            // Informational: an empty list is read as one (docs/design.md,
            // "Tolerant listings, strict boundary").
            let list = match after {
                [] => after,
                [b' ', list @ ..] => list,
                _ => return Err(invalid("expected SP after CAPABILITY")),
            };
            return Ok(Response::Capability(capability::parse_piece(src, list)?));
        }
    }
    let args = match after {
        [] | [b' '] => Args::from_validated(src.piece(&after[..0])),
        [b' ', args @ ..] => {
            scan(args, false).map_err(|e| e.for_response())?;
            Args::from_validated(src.piece(args))
        }
        _ => return Err(invalid("unexpected octet after the response name")),
    };
    Ok(Response::Data {
        number,
        name: src.piece(name),
        args,
    })
}

/// What follows a status keyword: `[SP resp-text]`.
#[inline]
fn status_tail<'a, S: Source<'a>>(
    src: S,
    status: Status,
    after: &'a [u8],
) -> Result<StatusResponse<S::Out>, SyntaxError> {
    let text = match after {
        [] => after,
        [b' ', text @ ..] => text,
        _ => {
            return Err(SyntaxError::InvalidResponse {
                reason: "expected SP after the status keyword",
            })
        }
    };
    let (code, text) = resp_text(src, text)?;
    Ok(StatusResponse { status, code, text })
}

/// `resp-text = ["[" resp-text-code "]" SP] [text]`. Text that starts with
/// `[` but is not a valid code followed by SP or the end is all text.
#[inline]
#[allow(clippy::type_complexity)]
fn resp_text<'a, S: Source<'a>>(
    src: S,
    input: &'a [u8],
) -> Result<(Option<Code<S::Out>>, S::Out), SyntaxError> {
    if !is_text(input) {
        return Err(SyntaxError::InvalidResponse {
            reason: "CR, LF or NUL in response text",
        });
    }
    if let Some(after_open) = input.strip_prefix(b"[") {
        // Codes are short: a plain search beats setting up memchr.
        if let Some(close) = after_open.iter().position(|&c| c == b']') {
            let (inner, after) = after_open.split_at_checked(close).unwrap_or_default();
            let after = after.get(1..).unwrap_or_default();
            let text = match after {
                [] => Some(after),
                [b' ', text @ ..] => Some(text),
                _ => None,
            };
            if let (Some(text), Some(code)) = (text, Code::<S::Out>::parse_in(src, inner)) {
                return Ok((Some(code), src.piece(text)));
            }
        }
    }
    Ok((None, src.piece(input)))
}

fn write_resp_text<B: Octets>(code: Option<&Code<B>>, text: &[u8], out: &mut Vec<u8>) {
    if let Some(code) = code {
        out.push(b'[');
        code.write_to(out);
        out.extend_from_slice(b"] ");
    }
    out.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::capability::Capability;
    use crate::imap::command::Arg;
    use crate::imap::LiteralMode;
    use crate::octets::attach;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// The owned parse, checked against the borrowed one: every test vector
    /// of this module goes through [`differential`].
    fn parse(s: &[u8]) -> Result<Response, SyntaxError> {
        differential(s)
    }

    /// `parse_borrowed` and `parse` agree on `s`: both Ok or both the same
    /// error; when Ok, the borrowed value attached to the line, and copied,
    /// is the owned value, and writes the same octets.
    fn differential(s: &[u8]) -> Result<Response, SyntaxError> {
        let line = Bytes::copy_from_slice(s);
        let owned = Response::parse(&line);
        let borrowed = Response::parse_borrowed(&line);
        match (&borrowed, &owned) {
            (Ok(view), Ok(o)) => {
                let attached = view.clone().map_octets(attach(&line));
                assert_eq!(&attached, o, "{:?}", String::from_utf8_lossy(s));
                assert_eq!(view.to_bytes(), o.to_bytes());
                assert_eq!(&view.clone().into_owned(), o);
                assert_eq!(view.is_greeting(), o.is_greeting());
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", String::from_utf8_lossy(s)),
            _ => panic!(
                "{:?}: borrowed {borrowed:?}, owned {owned:?}",
                String::from_utf8_lossy(s)
            ),
        }
        owned
    }

    fn ok(s: &[u8]) -> Response {
        let r = parse(s).unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(s)));
        assert_round_trip(&r);
        r
    }

    fn assert_round_trip(r: &Response) {
        let wire = r.to_bytes();
        assert!(wire.ends_with(b"\r\n"));
        let body = wire.slice(..wire.len() - 2);
        let again =
            differential(&body).unwrap_or_else(|e| panic!("{:?} did not parse again: {e:?}", body));
        assert_eq!(&again, r);
        assert_eq!(again.to_bytes(), wire);
    }

    fn status(s: Status, code: Option<Code>, text: &str) -> StatusResponse {
        StatusResponse {
            status: s,
            code,
            text: b(text),
        }
    }

    #[test]
    fn greetings() {
        let r = ok(b"* OK [CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED] Server ready");
        assert!(r.is_greeting());
        let Response::Status(StatusResponse {
            status: Status::Ok,
            code: Some(Code::Capability(caps)),
            text,
        }) = &r
        else {
            panic!("{r:?}")
        };
        assert_eq!(text, "Server ready");
        assert!(caps.has_starttls());
        assert!(caps.login_disabled());
        assert_eq!(
            caps.auth_mechanisms().collect::<Vec<_>>(),
            vec![b("GSSAPI")]
        );
        assert_eq!(caps.iter().next(), Some(Capability::Imap4rev2));

        let r = ok(b"* PREAUTH IMAP4rev2 server logged in as Smith");
        assert!(r.is_greeting());
        assert_eq!(
            r,
            Response::Status(status(
                Status::Preauth,
                None,
                "IMAP4rev2 server logged in as Smith"
            ))
        );
        let r = ok(b"* BYE Autologout; idle for too long");
        assert!(r.is_greeting());
        assert_eq!(
            r,
            Response::Status(status(Status::Bye, None, "Autologout; idle for too long"))
        );
        assert!(!ok(b"* NO go away").is_greeting());
        assert!(!ok(b"a OK fine").is_greeting());
        assert!(!ok(b"* 1 EXISTS").is_greeting());
    }

    #[test]
    fn tagged() {
        let r = ok(b"a001 OK [CAPABILITY IMAP4rev2 AUTH=PLAIN SASL-IR] done");
        let Response::Tagged { tag, status: st } = &r else {
            panic!()
        };
        assert_eq!(tag, "a001");
        assert_eq!(st.text, "done");
        assert!(matches!(&st.code, Some(Code::Capability(c)) if c.contains("sasl-ir")));
        assert_eq!(
            ok(b"A142 OK [READ-WRITE] SELECT completed"),
            Response::Tagged {
                tag: b("A142"),
                status: status(Status::Ok, Some(Code::ReadWrite), "SELECT completed")
            }
        );
        assert_eq!(
            ok(b"a2 no [AUTHENTICATIONFAILED] Authentication failed"),
            Response::Tagged {
                tag: b("a2"),
                status: status(
                    Status::No,
                    Some(Code::Other {
                        name: b("AUTHENTICATIONFAILED"),
                        args: None
                    }),
                    "Authentication failed"
                )
            }
        );
        ok(b"a3 BAD command unknown or arguments invalid");
        ok(b"A003 OK [APPENDUID 38505 3955] APPEND completed");
        for line in [
            &b"a BYE later"[..],
            b"a PREAUTH hi",
            b"a FOO x",
            b"a OKAY",
            b"a OK\tx",
            b"a (OK)",
        ] {
            assert!(
                matches!(parse(line), Err(SyntaxError::InvalidResponse { .. })),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [&b""[..], b"a", b"a+ OK", b" OK x", b"a\"b OK x", b"% OK"] {
            assert_eq!(
                parse(line),
                Err(SyntaxError::Tag),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn lenient_text() {
        // Missing text: accepted, written back with RFC 9051's SP.
        let r = ok(b"a1 OK");
        assert_eq!(
            r,
            Response::Tagged {
                tag: b("a1"),
                status: status(Status::Ok, None, "")
            }
        );
        assert_eq!(r.to_bytes(), &b"a1 OK \r\n"[..]);
        let r = ok(b"* OK [READ-ONLY]");
        assert_eq!(
            r,
            Response::Status(status(Status::Ok, Some(Code::ReadOnly), ""))
        );
        assert_eq!(r.to_bytes(), &b"* OK [READ-ONLY] \r\n"[..]);
        // Brackets that are not a code are text.
        for text in ["[not a code", "[ALERT]x", "[] x", "[(x)] y", "x [ALERT] y"] {
            let line = format!("* NO {text}");
            assert_eq!(
                ok(line.as_bytes()),
                Response::Status(status(Status::No, None, text)),
                "{line}"
            );
        }
        assert_eq!(
            ok("* OK [ALERT]  grüße".as_bytes()),
            Response::Status(status(Status::Ok, Some(Code::Alert), " grüße"))
        );
        for line in [&b"* OK a\rb"[..], b"* OK a\nb", b"a OK \0", b"* OKx"] {
            assert!(parse(line).is_err() || matches!(parse(line), Ok(Response::Data { .. })));
        }
        assert!(matches!(
            parse(b"* OK a\rb"),
            Err(SyntaxError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn codes() {
        let code = |line: &str| match ok(line.as_bytes()) {
            Response::Status(s) | Response::Tagged { status: s, .. } => s.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code("* OK [ALERT] System shutdown in 10 minutes"),
            Some(Code::Alert)
        );
        assert_eq!(code("* OK [alert] x"), Some(Code::Alert));
        assert_eq!(
            code("* NO [REFERRAL imap://user;AUTH=*@SERVER2/SHARED/FOO] Remote mailbox"),
            Some(Code::Referral(b("imap://user;AUTH=*@SERVER2/SHARED/FOO")))
        );
        assert_eq!(
            code("a NO [PRIVACYREQUIRED] Connection is not private"),
            Some(Code::PrivacyRequired)
        );
        assert_eq!(code("* NO [PARSE] bad header"), Some(Code::Parse));
        assert_eq!(
            code("a NO [TRYCREATE] no such mailbox"),
            Some(Code::TryCreate)
        );
        assert_eq!(
            code("* OK [UIDNEXT 4392] Predicted next UID"),
            Some(Code::UidNext(4392))
        );
        assert_eq!(
            code("* OK [UIDVALIDITY 3857529045] UIDs valid"),
            Some(Code::UidValidity(3857529045))
        );
        assert_eq!(
            code("* OK [UNSEEN 12] first unseen"),
            Some(Code::Unseen(12))
        );
        let Some(Code::PermanentFlags(flags)) =
            code("* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited")
        else {
            panic!()
        };
        assert_eq!(
            flags.iter().collect::<Vec<_>>(),
            vec![
                Arg::Atom(b("\\Deleted")),
                Arg::Atom(b("\\Seen")),
                Arg::Atom(b("\\*"))
            ]
        );
        assert_eq!(
            code("* OK [PERMANENTFLAGS ()] No permanent flags permitted"),
            Some(Code::PermanentFlags(Args::new()))
        );
        // Typed names with unexpected arguments stay `Other`.
        for (line, name, args) in [
            ("* OK [UIDNEXT 0] x", "UIDNEXT", Some("0")),
            (
                "* OK [UIDNEXT 99999999999] x",
                "UIDNEXT",
                Some("99999999999"),
            ),
            ("* OK [UIDNEXT abc] x", "UIDNEXT", Some("abc")),
            ("* OK [ALERT now] x", "ALERT", Some("now")),
            ("* OK [UIDNEXT] x", "UIDNEXT", None),
            (
                "* OK [PERMANENTFLAGS (a b] x",
                "PERMANENTFLAGS",
                Some("(a b"),
            ),
            (
                "* OK [PERMANENTFLAGS (\"a\")] x",
                "PERMANENTFLAGS",
                Some("(\"a\")"),
            ),
            ("* OK [CLOSED] x", "CLOSED", None),
            (
                "* NO [BADCHARSET (UTF-8 US-ASCII)] x",
                "BADCHARSET",
                Some("(UTF-8 US-ASCII)"),
            ),
        ] {
            assert_eq!(
                code(line),
                Some(Code::Other {
                    name: b(name),
                    args: args.map(b)
                }),
                "{line}"
            );
        }
        assert_eq!(Code::<Bytes>::UidNext(1).name(), b"UIDNEXT");
        // A capability list is read tolerantly: a word that is not an atom
        // is kept, not a reason to drop the list.
        let Some(Code::Capability(c)) = code("* OK [CAPABILITY IMAP4rev1 a\\b STARTTLS] x") else {
            panic!("not a capability code");
        };
        assert!(c.has_starttls() && c.contains("a\\b"));
    }

    #[test]
    fn untagged_data() {
        assert_eq!(
            ok(b"* 23 EXISTS"),
            Response::Data {
                number: Some(23),
                name: b("EXISTS"),
                args: Args::new()
            }
        );
        let r = ok(b"* 12 FETCH (FLAGS (\\Seen) BODY[] {5}\r\nhello)");
        let Response::Data {
            number: Some(12),
            name,
            args,
        } = &r
        else {
            panic!()
        };
        assert_eq!(name, "FETCH");
        let items: Vec<Arg> = args.iter().collect();
        let [Arg::List(inner)] = &items[..] else {
            panic!()
        };
        let inner: Vec<Arg> = inner.iter().collect();
        assert_eq!(inner.len(), 4);
        assert_eq!(inner[2], Arg::Atom(b("BODY[]")));
        assert_eq!(
            inner[3],
            Arg::Literal {
                data: b("hello"),
                mode: LiteralMode::Sync,
                binary: false
            }
        );
        let r = ok(b"* LIST () \"/\" INBOX");
        let Response::Data {
            number: None,
            name,
            args,
        } = &r
        else {
            panic!()
        };
        assert_eq!(name, "LIST");
        assert_eq!(
            args.iter().collect::<Vec<_>>(),
            vec![
                Arg::List(Args::new()),
                Arg::Quoted(b("/")),
                Arg::Atom(b("INBOX"))
            ]
        );
        ok(b"* LIST (\\Noselect) \"/\" ~/Mail/foo");
        ok(b"* ENABLED CONDSTORE QRESYNC");
        ok(b"* ID (\"name\" \"Cyrus\" \"version\" \"1.5\" \"os\" NIL)");
        ok(b"* ID NIL");
        ok(b"* SEARCH 2 84 882");
        ok(b"* SEARCH");
        ok(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
        ok(b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)");
        ok(b"* NAMESPACE ((\"\" \"/\")) NIL NIL");
        ok(b"* 3 EXPUNGE");
        ok(b"* 0 RECENT");
        ok(b"* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800");
        ok(b"* 1 FETCH (BINARY[1]<0> ~{4}\r\n\0)\r\n UID 7)");
        ok(b"* 2 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)(\"TEXT\" \"PLAIN\" NIL NIL NIL \"BASE64\" 4554 73) \"MIXED\"))");
        ok(b"* 5 FETCH (BODY[HEADER.FIELDS (\"X-A\" {3}\r\nX-B)] {10}\r\nSTARTTLS\r\n)");
        // `* SEARCH ` with a trailing space (seen in the wild) is read as no
        // arguments.
        assert_eq!(
            ok(b"* SEARCH "),
            Response::Data {
                number: None,
                name: b("SEARCH"),
                args: Args::new()
            }
        );
        // A data response named like a status keyword, but with a number.
        assert!(matches!(ok(b"* 3 OK"), Response::Data { .. }));
        for line in [
            &b"*"[..],
            b"* ",
            b"*  OK",
            b"*OK",
            b"* 12",
            b"* 12 ",
            b"* 4294967296 EXISTS",
            b"* 12EXISTS",
            b"* 1 FETCH (FLAGS",
            b"* 1 FETCH FLAGS)",
            b"* LIST  ()",
            b"* LIST (",
            b"* \"x\"",
            b"* FOO(bar)",
        ] {
            assert!(
                matches!(parse(line), Err(SyntaxError::InvalidResponse { .. })),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // A capability listing is informational: empty or with odd words,
        // it is read, not refused.
        for (line, words) in [
            (&b"* CAPABILITY"[..], 0),
            (b"* CAPABILITY ", 0),
            (b"* CAPABILITY (x)", 1),
            (b"* capability IMAP4rev1  STARTTLS x*y", 3),
        ] {
            let Ok(Response::Capability(c)) = parse(line) else {
                panic!("{:?}", String::from_utf8_lossy(line));
            };
            assert_eq!(c.iter().count(), words);
        }
        assert_eq!(
            parse(b"* 12 FETCH (BODY[] {50}\r\nhello)"),
            Err(SyntaxError::Literal {
                reason: "message ends before the literal's announced length"
            })
        );
    }

    #[test]
    fn capability_data() {
        let r = ok(b"* CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS AUTH=GSSAPI AUTH=PLAIN XPIG-LATIN");
        let Response::Capability(caps) = &r else {
            panic!()
        };
        assert!(caps.has_starttls());
        assert!(!caps.login_disabled());
        assert_eq!(caps.auth_mechanisms().count(), 2);
        assert!(matches!(
            ok(b"* capability imap4rev1"),
            Response::Capability(_)
        ));
    }

    #[test]
    fn continuations() {
        assert_eq!(
            ok(b"+ Ready for additional command text"),
            Response::Continuation {
                code: None,
                text: b("Ready for additional command text")
            }
        );
        let challenge = "YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRAtHTEuOP2BXb9sBYFR4SJlDZxmg39IxmRBOhXRKdDA0uHTCOT9Bq3OsUTXUlk0CaaLI0ywBXtvR6uYcnuIq==";
        assert_eq!(
            ok(format!("+ {challenge}").as_bytes()),
            Response::Continuation {
                code: None,
                text: b(challenge)
            }
        );
        let bare = ok(b"+");
        assert_eq!(
            bare,
            Response::Continuation {
                code: None,
                text: Bytes::new()
            }
        );
        assert_eq!(bare.to_bytes(), &b"+ \r\n"[..]);
        assert_eq!(ok(b"+ "), bare);
        assert_eq!(
            ok(b"+ [ALERT] go on"),
            Response::Continuation {
                code: Some(Code::Alert),
                text: b("go on")
            }
        );
        assert!(matches!(
            parse(b"+x"),
            Err(SyntaxError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse(b"+ a\nb"),
            Err(SyntaxError::InvalidResponse { .. })
        ));
    }

    // -----------------------------------------------------------------------
    // Pseudo-random round trips and mutations.
    // -----------------------------------------------------------------------

    use crate::imap::command::tests::{check_framing, gen_arg, Rng};

    fn gen_text(r: &mut Rng) -> Bytes {
        Bytes::from(r.bytes_from("ab [](){}\"\\é".as_bytes(), 0, 12))
    }

    fn gen_code(r: &mut Rng) -> Option<Code> {
        Some(match r.below(12) {
            0 => return None,
            1 => Code::Alert,
            2 => Code::Capability(Capabilities::from_caps(&[
                Capability::Imap4rev2,
                Capability::Auth(b("PLAIN")),
                Capability::StartTls,
            ])),
            3 => Code::Referral(b("imap://a/b")),
            4 => Code::UidNext(1 + r.below(1000) as u32),
            5 => Code::UidValidity(u32::MAX),
            6 => Code::Unseen(7),
            7 => Code::PermanentFlags(Args::from_validated(b("\\Seen \\*"))),
            8 => Code::Other {
                name: b("APPENDUID"),
                args: Some(b("1 2")),
            },
            9 => Code::Other {
                name: b("CLOSED"),
                args: None,
            },
            10 => Code::ReadOnly,
            _ => Code::TryCreate,
        })
    }

    fn gen_response(r: &mut Rng) -> Response {
        let text = gen_text(r);
        // Text that starts with '[' could read as a code: keep it plain.
        let start = text.iter().take_while(|&&c| c == b'[').count();
        let text = text.slice(start..);
        match r.below(6) {
            0 => Response::Tagged {
                tag: Bytes::from(r.bytes_from(b"aA09.]", 1, 5)),
                status: StatusResponse {
                    status: r.pick(&[Status::Ok, Status::No, Status::Bad]),
                    code: gen_code(r),
                    text,
                },
            },
            1 => Response::Status(StatusResponse {
                status: r.pick(&[
                    Status::Ok,
                    Status::No,
                    Status::Bad,
                    Status::Bye,
                    Status::Preauth,
                ]),
                code: gen_code(r),
                text,
            }),
            2 => Response::Capability(Capabilities::from_caps(&[
                Capability::Imap4rev1,
                Capability::LiteralPlus,
                Capability::Other(b("X-FOO")),
            ])),
            3 => Response::Continuation {
                code: gen_code(r),
                text,
            },
            _ => {
                let n = r.below(4);
                let items: Vec<Arg> = (0..n).map(|_| gen_arg(r, 0)).collect();
                Response::Data {
                    number: if r.below(2) == 0 {
                        None
                    } else {
                        Some(r.next() as u32)
                    },
                    name: b(r.pick(&["FETCH", "LIST", "SEARCH", "X-DATA"])),
                    args: crate::imap::command::Args::from_args(&items),
                }
            }
        }
    }

    #[test]
    fn random_round_trips() {
        let mut r = Rng(0x0bad_cafe_1234_5678);
        for _ in 0..3000 {
            let resp = gen_response(&mut r);
            assert_round_trip(&resp);
            if !matches!(
                resp,
                Response::Status(_) | Response::Tagged { .. } | Response::Continuation { .. }
            ) {
                check_framing(&resp.to_bytes());
            }
        }
    }

    const SEEDS: &[&[u8]] = &[
        b"* OK [CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED] Server ready",
        b"a001 OK [READ-WRITE] done",
        b"* OK [PERMANENTFLAGS (\\Seen \\*)] x",
        b"* 12 FETCH (FLAGS (\\Seen) BODY[] {5}\r\nhello)",
        b"* LIST () \"/\" INBOX",
        b"+ dGVzdA==",
        b"* BYE bye",
        b"* 1 FETCH (BODY[HEADER.FIELDS (DATE)] ~{3+}\r\nx)y)",
    ];

    #[test]
    fn random_mutations_never_panic() {
        let mut r = Rng(0x5eed_5eed_5eed_5eed);
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
            if let Ok(resp) = parse(&m) {
                parsed += 1;
                assert_round_trip(&resp);
            }
        }
        // Enough mutants stay valid for the round trip to mean something.
        assert!(parsed > 2000, "{parsed}");
    }

    /// `Status::from_keyword` as written before the folded words.
    fn from_keyword_general(keyword: &[u8]) -> Option<Status> {
        STATUSES
            .iter()
            .find(|(name, _)| keyword.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, s)| s)
    }

    /// `Code::parse` as written before the folded words.
    fn code_parse_general(message: &Bytes, inner: &[u8]) -> Option<Code> {
        let (rest, name) = atom(inner).ok()?;
        let args = match rest {
            [] => None,
            [b' ', args @ ..] if !args.is_empty() && !args.contains(&b']') && is_text(args) => {
                Some(args)
            }
            _ => return None,
        };
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let typed = match args {
            None => FLAG_CODES
                .iter()
                .find(|(n, _)| is(n))
                .map(|(_, c)| c.clone()),
            Some(args) if is("UIDNEXT") => whole(args, nz_number).map(Code::UidNext),
            Some(args) if is("UIDVALIDITY") => whole(args, nz_number).map(Code::UidValidity),
            Some(args) if is("UNSEEN") => whole(args, nz_number).map(Code::Unseen),
            Some(args) if is("REFERRAL") => Some(Code::Referral(message.slice_ref(args))),
            Some(args) if is("CAPABILITY") => Capabilities::parse(&message.slice_ref(args))
                .ok()
                .map(Code::Capability),
            Some(args) if is("PERMANENTFLAGS") => whole(args, list)
                .filter(|flags| is_flag_list(flags))
                .map(|flags| Code::PermanentFlags(Args::from_validated(message.slice_ref(flags)))),
            Some(_) => None,
        };
        Some(typed.unwrap_or_else(|| Code::Other {
            name: message.slice_ref(name),
            args: args.map(|a| message.slice_ref(a)),
        }))
    }

    /// Status keywords and response codes looked up by folded word give what
    /// the comparisons one by one give: every known name in random case,
    /// with octets changed, added and removed (including those one bit away
    /// from a letter or `-`), with and without arguments.
    #[test]
    fn keyword_lookup_agrees_with_the_general_rule() {
        let names = [
            "OK",
            "NO",
            "BAD",
            "BYE",
            "PREAUTH",
            "ALERT",
            "PRIVACYREQUIRED",
            "PARSE",
            "READ-ONLY",
            "READ-WRITE",
            "TRYCREATE",
            "UIDNEXT",
            "UIDVALIDITY",
            "UNSEEN",
            "REFERRAL",
            "CAPABILITY",
            "PERMANENTFLAGS",
            "X",
            "CAPABILITYX",
        ];
        let octets = b"aZz@`^~_-\r.0123456789[]{}!#$&'+,/;<=>?|\x7f\x0d\xc3\xff ";
        let argss: [&[u8]; 9] = [
            b"",
            b" ",
            b" 4392",
            b" 0",
            b" 4294967296",
            b" IMAP4rev2 STARTTLS",
            b" (\\Seen \\*)",
            b" imap://x/",
            b" a]b",
        ];
        let mut r = Rng(0x7777_1234_abcd_ef01);
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
            let show = String::from_utf8_lossy(&name).into_owned();
            if let Ok(([], _)) = atom(&name) {
                assert_eq!(
                    Status::from_keyword(&name),
                    from_keyword_general(&name),
                    "{show:?}"
                );
            }
            name.extend_from_slice(r.pick(&argss));
            let message = Bytes::from(name);
            // What `resp_text` hands to `Code::parse`.
            if is_text(&message) && !message.contains(&b']') {
                assert_eq!(
                    Code::<Bytes>::parse_in(&message, &message),
                    code_parse_general(&message, &message),
                    "{show:?}"
                );
            }
        }
    }

    /// The borrowed and the owned parse agree on the seeds, on generated
    /// responses and on mutations of both (including truncations that cut
    /// literals and codes), and the attached borrowed value shares the
    /// line's storage.
    #[test]
    fn borrowed_and_owned_agree() {
        let mut r = Rng(0xd1ff_0000_2026_1207);
        let mut corpus: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.to_vec()).collect();
        for _ in 0..2000 {
            let wire = gen_response(&mut r).to_bytes();
            corpus.push(wire[..wire.len() - 2].to_vec());
        }
        let specials = b" ()[]{}<>\"\\~+-*%:0123456789\r\n\0\xC3\xFFaZ";
        let mut agreed_ok = 0;
        for i in 0..corpus.len() * 4 {
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
            if differential(&m).is_ok() {
                agreed_ok += 1;
            }
        }
        assert!(agreed_ok > 2000, "{agreed_ok}");
        // Attached pieces point into the line: no copy.
        let line = Bytes::from_static(b"* OK [REFERRAL imap://x/] see there");
        let view = Response::parse_borrowed(&line).unwrap();
        let Response::Status(StatusResponse {
            code: Some(Code::Referral(url)),
            text,
            ..
        }) = view.map_octets(attach(&line))
        else {
            panic!()
        };
        assert_eq!(url.as_ptr(), line[15..].as_ptr());
        assert_eq!(text.as_ptr(), line[26..].as_ptr());
        assert_eq!(text, "see there");
    }
}
