//! Application-data injection (`app_values`): commands and responses built
//! from arbitrary application values, in all three protocols and both roles.
//!
//! Oracle: every value is either refused with
//! `UsageError::InvalidValue` — and then the session wrote nothing — or the
//! bytes written frame as exactly one protocol element (one line; for IMAP,
//! lines joined only by literals) that the crate's own parser reads back
//! equal to the value given (free text compared after its documented
//! cleaning: CR, LF and NUL become SP).

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use starttls::smtp::command::{
    Body, ForwardPath, Host, Mailbox, Notify, Parameter, Parameters, Path, Ret, ReversePath,
};
use starttls::{imap, pop3, smtp, ClientTls, Secret, ServerTls, TlsPolicy, UsageError};

type R<T> = arbitrary::Result<T>;

/// Octets that matter to the grammars, picked more often than the rest.
const SPICY: &[u8] = b"\r\n\0 \"\\()[]{}<>@:;,=+*~/.-_%aZ09";

fn bytes(u: &mut Unstructured<'_>) -> R<Bytes> {
    let len = u.int_in_range(0..=14)?;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        let c = if u.ratio(2, 3)? {
            *u.choose(SPICY)?
        } else {
            u8::arbitrary(u)?
        };
        v.push(c);
    }
    Ok(Bytes::from(v))
}

fn opt_bytes(u: &mut Unstructured<'_>) -> R<Option<Bytes>> {
    Ok(if bool::arbitrary(u)? {
        Some(bytes(u)?)
    } else {
        None
    })
}

fn secret(u: &mut Unstructured<'_>) -> R<Secret<Bytes>> {
    Ok(Secret::new(bytes(u)?))
}

fn cleaned(text: &[u8]) -> Vec<u8> {
    text.iter()
        .map(|&c| {
            if matches!(c, b'\r' | b'\n' | 0) {
                b' '
            } else {
                c
            }
        })
        .collect()
}

fn drain(mut f: impl FnMut() -> Option<Bytes>) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(b) = f() {
        v.extend_from_slice(&b);
    }
    v
}

/// The line of `wire` if it is exactly one CRLF-terminated line without
/// other CR, LF or NUL.
fn one_line(wire: &[u8]) -> &[u8] {
    let line = wire.strip_suffix(b"\r\n").expect("ends in CRLF");
    assert!(
        !line.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0)),
        "more than one line written: {:?}",
        String::from_utf8_lossy(wire)
    );
    line
}

/// Panics unless `r` is Ok or a typed `InvalidValue`; true for Ok.
fn accepted<T>(r: &Result<T, UsageError>, what: &dyn std::fmt::Debug) -> bool {
    match r {
        Ok(_) => true,
        Err(UsageError::InvalidValue { .. }) => false,
        Err(e) => panic!("{what:?}: unexpected refusal {e:?}"),
    }
}

/// Entry point.
pub fn app_values(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = match u.int_in_range(0..=8u8) {
        Ok(0) => smtp_client(&mut u),
        Ok(1) => smtp_params(&mut u),
        Ok(2) => smtp_server(&mut u),
        Ok(3) => imap_client(&mut u),
        Ok(4) => imap_args(&mut u),
        Ok(5) => imap_server(&mut u),
        Ok(6) => pop3_client(&mut u),
        Ok(7) => pop3_server(&mut u),
        _ => sasl_lines(&mut u),
    };
}

// ---------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------

fn host(u: &mut Unstructured<'_>) -> R<Host> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Host::Ipv4(u32::arbitrary(u)?.into()),
        1 => Host::Ipv6(u128::arbitrary(u)?.into()),
        2 => Host::General {
            tag: bytes(u)?,
            content: bytes(u)?,
        },
        _ => Host::Domain(bytes(u)?),
    })
}

fn smtp_path(u: &mut Unstructured<'_>) -> R<Path> {
    Ok(Path {
        mailbox: Mailbox {
            local_part: bytes(u)?,
            domain: host(u)?,
        },
        source_route: opt_bytes(u)?,
    })
}

fn parameter(u: &mut Unstructured<'_>) -> R<Parameter> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => Parameter::Size(u64::arbitrary(u)?),
        1 => Parameter::Body(*u.choose(&[Body::SevenBit, Body::EightBitMime, Body::BinaryMime])?),
        2 => Parameter::SmtpUtf8,
        3 => Parameter::Ret(*u.choose(&[Ret::Full, Ret::Hdrs])?),
        4 => Parameter::EnvId(bytes(u)?),
        5 => Parameter::Notify(if bool::arbitrary(u)? {
            Notify::Never
        } else {
            Notify::On {
                success: bool::arbitrary(u)?,
                failure: bool::arbitrary(u)?,
                delay: bool::arbitrary(u)?,
            }
        }),
        6 => Parameter::Orcpt {
            addr_type: bytes(u)?,
            addr: bytes(u)?,
        },
        7 => Parameter::Auth(bytes(u)?),
        8 => Parameter::RequireTls,
        _ => Parameter::Other {
            keyword: bytes(u)?,
            value: opt_bytes(u)?,
        },
    })
}

fn parameters(u: &mut Unstructured<'_>) -> R<Vec<Parameter>> {
    let n = u.int_in_range(0..=3)?;
    (0..n).map(|_| parameter(u)).collect()
}

fn smtp_command(u: &mut Unstructured<'_>) -> R<smtp::Command> {
    use smtp::Command as C;
    let raw_params = |u: &mut Unstructured<'_>| -> R<Parameters> {
        Ok(Parameters::from_params(&parameters(u)?))
    };
    Ok(match u.int_in_range(0..=10u8)? {
        0 => C::Mail {
            from: if bool::arbitrary(u)? {
                ReversePath::Null
            } else {
                ReversePath::Path(smtp_path(u)?)
            },
            params: raw_params(u)?,
        },
        1 => C::Rcpt {
            to: if bool::arbitrary(u)? {
                ForwardPath::Postmaster
            } else {
                ForwardPath::Path(smtp_path(u)?)
            },
            params: raw_params(u)?,
        },
        2 => C::Vrfy { arg: bytes(u)? },
        3 => C::Expn { arg: bytes(u)? },
        4 => C::Help {
            topic: opt_bytes(u)?,
        },
        5 => C::Noop { arg: opt_bytes(u)? },
        6 => C::Auth {
            mechanism: bytes(u)?,
            initial_response: if bool::arbitrary(u)? {
                Some(secret(u)?)
            } else {
                None
            },
        },
        7 => C::Bdat {
            size: u64::arbitrary(u)?,
            last: bool::arbitrary(u)?,
        },
        8 => C::Rset,
        9 => C::Data,
        _ => C::Quit,
    })
}

fn smtp_client(u: &mut Unstructured<'_>) -> R<()> {
    let cmd = smtp_command(u)?;
    let mut cfg = smtp::ClientConfig::new("c.test", TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_auth_in_cleartext = true;
    let mut c = smtp::ClientSession::new(Arc::new(cfg)).expect("config");
    c.handle_input(b"220 s\r\n");
    drain(|| c.poll_transmit());
    c.handle_input(b"250-s\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN\r\n");
    while let Ok(Some(_)) = c.poll_event() {}
    assert!(c.is_ready());
    let r = c.send(cmd.clone());
    let wire = drain(|| c.poll_transmit());
    if let Err(UsageError::RequireTls(_)) = r {
        // RFC 8689: never in cleartext. Checked after the value itself.
        assert_eq!(cmd.check(), Ok(()), "{cmd:?}");
        assert!(wire.is_empty());
        return Ok(());
    }
    assert_eq!(accepted(&r, &cmd), cmd.check().is_ok(), "{cmd:?}");
    if r.is_err() {
        assert!(wire.is_empty(), "{cmd:?}: refused but wrote {wire:?}");
        return Ok(());
    }
    let line = one_line(&wire);
    let back = smtp::Command::parse(&Bytes::copy_from_slice(line)).expect("parses back");
    assert_eq!(back, cmd);
    Ok(())
}

fn smtp_params(u: &mut Unstructured<'_>) -> R<()> {
    let params = parameters(u)?;
    if let Ok(p) = Parameters::try_from_params(&params) {
        assert_eq!(p.iter().collect::<Vec<_>>(), params);
        // And a command carrying them is sendable.
        let cmd = smtp::Command::Mail {
            from: ReversePath::Null,
            params: p,
        };
        assert_eq!(cmd.check(), Ok(()), "{cmd:?}");
    }
    Ok(())
}

fn smtp_server(u: &mut Unstructured<'_>) -> R<()> {
    let code = *u.choose(&[250u16, 251, 450, 550, 553])?;
    let n = u.int_in_range(0..=3)?;
    let lines: Vec<Bytes> = (0..n).map(|_| bytes(u)).collect::<R<_>>()?;
    let refs: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
    let reply = smtp::Reply::new(code, None, &refs);
    let back = smtp::Reply::parse(reply.to_bytes()).expect("a built reply parses");
    assert_eq!(back.line_count(), n.max(1));
    let texts: Vec<Bytes> = back.lines().collect();
    for (i, t) in texts.iter().enumerate() {
        let want = lines.get(i).map(|l| cleaned(l)).unwrap_or_default();
        assert_eq!(&t[..], &want[..]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------

/// Frames `wire` as the peer would: lines joined only by literals. Returns
/// the message without its final CRLF.
fn imap_one_message(wire: &[u8]) -> Bytes {
    let mut pos = 0;
    loop {
        let rest = &wire[pos..];
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("ends in CRLF");
        let line = &rest[..nl];
        assert!(
            !line.iter().any(|&c| matches!(c, b'\r' | b'\n')),
            "bare CR or LF: {:?}",
            String::from_utf8_lossy(wire)
        );
        pos += nl + 2;
        match imap::trailing_literal(line).expect("no malformed literal header") {
            None => {
                assert_eq!(pos, wire.len(), "more than one message written");
                return Bytes::copy_from_slice(&wire[..pos - 2]);
            }
            Some(h) => pos += usize::try_from(h.len).expect("small literal"),
        }
        assert!(pos <= wire.len(), "literal runs past the end");
    }
}

fn imap_arg(u: &mut Unstructured<'_>, depth: u8) -> R<imap::Arg> {
    use imap::Arg;
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Arg::Quoted(bytes(u)?),
        1 => Arg::Literal {
            data: bytes(u)?,
            mode: *u.choose(&[imap::LiteralMode::Sync, imap::LiteralMode::Plus])?,
            binary: bool::arbitrary(u)?,
        },
        2 => Arg::Nil,
        3 if depth < 2 => Arg::List(imap::Args::from_args(&imap_arg_list(u, depth + 1)?)),
        _ => Arg::Atom(bytes(u)?),
    })
}

fn imap_arg_list(u: &mut Unstructured<'_>, depth: u8) -> R<Vec<imap::Arg>> {
    let n = u.int_in_range(0..=3)?;
    (0..n).map(|_| imap_arg(u, depth)).collect()
}

fn astring(u: &mut Unstructured<'_>) -> R<imap::AString> {
    use imap::AString;
    Ok(match u.int_in_range(0..=3u8)? {
        0 => AString::Quoted(bytes(u)?),
        1 => AString::Literal {
            data: bytes(u)?,
            mode: *u.choose(&[imap::LiteralMode::Sync, imap::LiteralMode::Plus])?,
            binary: bool::arbitrary(u)?,
        },
        2 => AString::from_value(&bytes(u)?),
        _ => AString::Atom(bytes(u)?),
    })
}

fn imap_body(u: &mut Unstructured<'_>) -> R<imap::CommandBody> {
    use imap::CommandBody as B;
    Ok(match u.int_in_range(0..=4u8)? {
        0 => B::Login {
            username: astring(u)?,
            password: Secret::new(astring(u)?),
        },
        1 => B::Authenticate {
            mechanism: bytes(u)?,
            initial_response: if bool::arbitrary(u)? {
                Some(secret(u)?)
            } else {
                None
            },
        },
        2 => B::Enable {
            capabilities: imap::Args::from_args(&imap_arg_list(u, 0)?),
        },
        3 => B::Id {
            params: if bool::arbitrary(u)? {
                Some(imap::Args::from_args(&imap_arg_list(u, 0)?))
            } else {
                None
            },
        },
        _ => B::Other {
            name: bytes(u)?,
            args: imap::Args::from_args(&imap_arg_list(u, 0)?),
        },
    })
}

fn imap_client(u: &mut Unstructured<'_>) -> R<()> {
    let tag = bytes(u)?;
    let body = imap_body(u)?;
    let cmd = imap::Command {
        tag,
        body: body.clone(),
    };
    if cmd.check().is_ok() {
        let back = imap::Command::parse(&imap_one_message(&cmd.to_bytes())).expect("parses");
        assert_eq!(back, cmd);
    }
    // Through a session (which picks the tag): refused means nothing sent.
    let mut cfg = imap::ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_login_in_cleartext = true;
    let mut c = imap::ClientSession::new(Arc::new(cfg)).expect("config");
    c.handle_input(b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] hi\r\n");
    while let Ok(Some(_)) = c.poll_event() {}
    if !c.is_ready() {
        return Ok(());
    }
    drain(|| c.poll_transmit());
    let r = c.send(body.clone());
    let wire = drain(|| c.poll_transmit());
    if !accepted(&r, &body) {
        assert!(wire.is_empty(), "{body:?}: refused but wrote {wire:?}");
    }
    Ok(())
}

fn imap_args(u: &mut Unstructured<'_>) -> R<()> {
    let args = imap_arg_list(u, 0)?;
    if let Ok(a) = imap::Args::try_from_args(&args) {
        assert_eq!(a.iter().collect::<Vec<_>>(), args);
    }
    Ok(())
}

fn imap_code(u: &mut Unstructured<'_>) -> R<Option<imap::Code>> {
    use imap::Code;
    Ok(match u.int_in_range(0..=4u8)? {
        0 => None,
        1 => Some(Code::Alert),
        2 => Some(Code::UidNext(u32::arbitrary(u)?)),
        3 => Some(Code::Referral(bytes(u)?)),
        _ => Some(Code::Other {
            name: bytes(u)?,
            args: opt_bytes(u)?,
        }),
    })
}

fn imap_server(u: &mut Unstructured<'_>) -> R<()> {
    let status = *u.choose(&[imap::Status::Ok, imap::Status::No, imap::Status::Bad])?;
    let code = imap_code(u)?;
    let text = bytes(u)?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let cfg = imap::ServerConfig::new(ServerTls::None);
    let mut s = imap::ServerSession::new(Arc::new(cfg)).expect("config");
    drain(|| s.poll_transmit());
    s.handle_input(b"a1 ID NIL\r\n");
    while let Ok(Some(_)) = s.poll_event() {}
    drain(|| s.poll_transmit());
    let r = s.complete(status, code.clone(), &text);
    let wire = drain(|| s.poll_transmit());
    if !accepted(&r, &text) {
        assert!(wire.is_empty(), "refused but wrote {wire:?}");
    } else {
        let back = imap::Response::parse(&imap_one_message(&wire)).expect("parses");
        let no_code = code.is_none();
        let want = imap::Response::Tagged {
            tag: Bytes::from_static(b"a1"),
            status: imap::StatusResponse {
                status,
                code,
                text: Bytes::from(cleaned(text.as_bytes())),
            },
        };
        // Free text without a code may start with one, written as given.
        if back != want {
            assert!(no_code, "{back:?} != {want:?}");
            assert_eq!(back.to_bytes(), want.to_bytes());
        }
    }
    // Untagged data built from arbitrary values.
    let data = imap::Response::Data {
        number: Option::<u32>::arbitrary(u)?,
        name: bytes(u)?,
        args: imap::Args::from_args(&imap_arg_list(u, 0)?),
    };
    let r = s.send_untagged(&data);
    let wire = drain(|| s.poll_transmit());
    if accepted(&r, &data) {
        let back = imap::Response::parse(&imap_one_message(&wire)).expect("parses");
        assert_eq!(back, data);
    } else {
        assert!(wire.is_empty(), "refused but wrote {wire:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// POP3
// ---------------------------------------------------------------------------

fn pop3_command(u: &mut Unstructured<'_>) -> R<pop3::Command> {
    use pop3::Command as C;
    Ok(match u.int_in_range(0..=8u8)? {
        0 => C::User { name: bytes(u)? },
        1 => C::Pass {
            password: secret(u)?,
        },
        2 => C::Apop {
            name: bytes(u)?,
            digest: secret(u)?,
        },
        3 => C::Auth {
            mechanism: opt_bytes(u)?,
            initial_response: if bool::arbitrary(u)? {
                Some(secret(u)?)
            } else {
                None
            },
        },
        4 => C::Retr {
            msg: u32::arbitrary(u)?,
        },
        5 => C::Top {
            msg: u32::arbitrary(u)?,
            lines: u32::arbitrary(u)?,
        },
        6 => C::List {
            msg: Option::<u32>::arbitrary(u)?,
        },
        7 => C::Lang { tag: opt_bytes(u)? },
        _ => C::Uidl {
            msg: Option::<u32>::arbitrary(u)?,
        },
    })
}

fn pop3_client(u: &mut Unstructured<'_>) -> R<()> {
    let cmd = pop3_command(u)?;
    let mut cfg = pop3::ClientConfig::new(TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_auth_in_cleartext = true;
    let mut c = pop3::ClientSession::new(Arc::new(cfg)).expect("config");
    c.handle_input(b"+OK hi\r\n");
    drain(|| c.poll_transmit());
    c.handle_input(b"+OK\r\nUSER\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n");
    while let Ok(Some(_)) = c.poll_event() {}
    assert!(c.is_ready());
    let r = c.send(cmd.clone());
    let wire = drain(|| c.poll_transmit());
    assert_eq!(accepted(&r, &cmd), cmd.check().is_ok(), "{cmd:?}");
    if r.is_err() {
        assert!(wire.is_empty(), "{cmd:?}: refused but wrote {wire:?}");
        return Ok(());
    }
    let back = pop3::Command::parse(&Bytes::copy_from_slice(one_line(&wire))).expect("parses");
    assert_eq!(back, cmd);
    Ok(())
}

fn pop3_server(u: &mut Unstructured<'_>) -> R<()> {
    let code = match u.int_in_range(0..=2u8)? {
        0 => None,
        1 => Some(pop3::Code::SysTemp),
        _ => Some(pop3::Code::Other(bytes(u)?)),
    };
    let text = String::from_utf8_lossy(&bytes(u)?).into_owned();
    let challenge = bytes(u)?;
    let mut cfg = pop3::ServerConfig::new(ServerTls::None);
    cfg.insecure_auth_in_cleartext = true;
    cfg.sasl_mechanisms = vec!["PLAIN".into()];
    let mut s = pop3::ServerSession::new(Arc::new(cfg)).expect("config");
    drain(|| s.poll_transmit());
    s.handle_input(b"AUTH PLAIN\r\n");
    while let Ok(Some(_)) = s.poll_event() {}
    // A challenge: base64 or refused.
    let r = s.continue_request(&challenge);
    let wire = drain(|| s.poll_transmit());
    if accepted(&r, &challenge) {
        let line = Bytes::copy_from_slice(one_line(&wire));
        assert_eq!(
            pop3::response::parse_continuation(&line).expect("parses"),
            challenge
        );
        s.handle_input(b"*\r\n");
        while let Ok(Some(_)) = s.poll_event() {}
        drain(|| s.poll_transmit());
        s.handle_input(b"USER a\r\n");
        while let Ok(Some(_)) = s.poll_event() {}
    } else {
        assert!(wire.is_empty(), "refused but wrote {wire:?}");
    }
    if !s.is_waiting_for_reply() {
        return Ok(());
    }
    let r = s.reject(code.clone(), &text);
    let wire = drain(|| s.poll_transmit());
    if accepted(&r, &text) {
        let back =
            pop3::StatusLine::parse(&Bytes::copy_from_slice(one_line(&wire))).expect("parses");
        let no_code = code.is_none();
        let mut want =
            pop3::StatusLine::new(pop3::Status::Err, Bytes::from(cleaned(text.as_bytes())));
        want.code = code;
        // Free text without a code may start with one, written as given.
        if back != want {
            assert!(no_code, "{back:?} != {want:?}");
            assert_eq!(back.to_bytes(), want.to_bytes());
        }
    } else {
        assert!(wire.is_empty(), "refused but wrote {wire:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// SASL lines from the application, in the three clients.
// ---------------------------------------------------------------------------

fn sasl_lines(u: &mut Unstructured<'_>) -> R<()> {
    let line = bytes(u)?;
    let mut cfg = smtp::ClientConfig::new("c.test", TlsPolicy::Opportunistic, ClientTls::External);
    cfg.insecure_auth_in_cleartext = true;
    let mut c = smtp::ClientSession::new(Arc::new(cfg)).expect("config");
    c.handle_input(b"220 s\r\n");
    drain(|| c.poll_transmit());
    c.handle_input(b"250-s\r\n250 AUTH PLAIN\r\n");
    while let Ok(Some(_)) = c.poll_event() {}
    c.send(smtp::Command::Auth {
        mechanism: Bytes::from_static(b"PLAIN"),
        initial_response: None,
    })
    .expect("AUTH");
    drain(|| c.poll_transmit());
    c.handle_input(b"334 \r\n");
    while let Ok(Some(_)) = c.poll_event() {}
    let r = c.send_auth_response(Secret::new(line.clone()));
    let wire = drain(|| c.poll_transmit());
    if accepted(&r, &line) {
        assert_eq!(one_line(&wire), &line[..]);
    } else {
        assert!(wire.is_empty());
    }
    Ok(())
}
