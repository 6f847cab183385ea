//! Parser checks: no panic on any input, and for every input that parses,
//! serialize-then-parse gives the same value (parse-serialize-parse is
//! stable). The `roundtrip_*` checks go the other way: values built from
//! fuzzer choices serialize and parse back equal.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use starttls::{imap, pop3, smtp};

/// Strips one trailing CRLF from serialized output.
fn line(mut v: Vec<u8>) -> Bytes {
    if v.ends_with(b"\r\n") {
        v.truncate(v.len() - 2);
    }
    Bytes::from(v)
}

/// Raw bytes into the SMTP command parser, both forms: the borrowed view
/// (`parse_borrowed`) must agree with the owned parse (same error, or the
/// same value once attached to the line or copied out).
pub fn smtp_command(data: &[u8]) {
    // Under cargo-fuzz: every fast path against the rule it replaced.
    #[cfg(fuzzing)]
    starttls::fuzz_oracles::smtp_command(data);
    let owned_line = Bytes::copy_from_slice(data);
    let owned = smtp::Command::parse(&owned_line);
    let borrowed = smtp::command::CommandRef::parse_borrowed(&owned_line[..]);
    let c = match (borrowed, owned) {
        (Ok(view), Ok(c)) => {
            let attached = view
                .clone()
                .map_octets(starttls::octets::attach(&owned_line));
            assert_eq!(
                attached, c,
                "borrowed view attached differs from the owned parse"
            );
            assert_eq!(
                view.into_owned(),
                c,
                "into_owned differs from the owned parse"
            );
            c
        }
        (Err(b), Err(o)) => {
            assert_eq!(b, o, "borrowed and owned parsers fail differently");
            return;
        }
        (b, o) => panic!("borrowed {b:?} but owned {o:?}"),
    };
    let mut v = Vec::new();
    c.write_to(&mut v);
    let again = smtp::Command::parse(&line(v)).expect("a serialized command parses");
    assert_eq!(again, c, "parse-serialize-parse changed the command");
    let _ = format!("{c:?}");
}

/// Raw bytes into the SMTP reply line and reply parsers, and the EHLO
/// capability parser.
pub fn smtp_reply(data: &[u8]) {
    let _ = smtp::reply::parse_reply_line(data);
    // Differential (#18): the borrowed form is the owned one, verdict,
    // error and value; the stream reader reads the same first reply.
    let owned_in = Bytes::copy_from_slice(data);
    let owned = smtp::Reply::parse(owned_in.clone());
    let borrowed = smtp::ReplyRef::parse_borrowed(&owned_in);
    match (&borrowed, &owned) {
        (Ok(b), Ok(o)) => {
            let attached = b.clone().map_octets(starttls::octets::attach(&owned_in));
            assert_eq!(&attached, o, "attach(borrowed) differs from owned");
            assert_eq!(&b.clone().into_owned(), o, "into_owned differs from owned");
            assert!(b.text().eq(o.text().map(|t| t.to_vec())));
            if let Ok(bc) = smtp::Capabilities::from_ehlo_reply_borrowed(b) {
                let oc = smtp::Capabilities::from_ehlo_reply(o).expect("owned EHLO list too");
                let attached = bc.clone().map_octets(starttls::octets::attach(&owned_in));
                assert_eq!(attached, oc, "borrowed EHLO list differs from owned");
                assert_eq!(bc.into_owned(), oc);
            } else {
                assert!(smtp::Capabilities::from_ehlo_reply(o).is_err());
            }
        }
        (Err(b), Err(o)) => assert_eq!(b, o, "forms fail differently"),
        _ => panic!("forms disagree: {borrowed:?} vs {owned:?}"),
    }
    match smtp::ReplyRef::parse_next(data) {
        Ok((first, rest)) => {
            let n = data.len() - rest.len();
            assert_eq!(smtp::ReplyRef::parse_borrowed(&data[..n]), Ok(first));
            assert_eq!(rest.is_empty(), owned.is_ok());
        }
        Err(e) => assert_eq!(owned.as_ref().err(), Some(&e)),
    }
    if let Ok(c) = smtp::Capability::parse_borrowed(data) {
        assert_eq!(
            c.map_octets(starttls::octets::attach(&owned_in)),
            smtp::Capability::parse(&owned_in).expect("owned EHLO line too")
        );
    } else {
        assert!(smtp::Capability::parse(&owned_in).is_err());
    }
    let Ok(r) = owned else {
        return;
    };
    let again = smtp::Reply::parse(r.to_bytes()).expect("a serialized reply parses");
    assert_eq!(again, r);
    let _ = r.lines().count() + r.text().count();
    if let Ok(caps) = smtp::Capabilities::from_ehlo_reply(&r) {
        let _ = caps.has_starttls();
        let rebuilt = caps.to_reply(b"");
        if let Ok(caps2) = smtp::Capabilities::from_ehlo_reply(&rebuilt) {
            assert_eq!(caps2.iter().count(), caps.iter().count());
        }
    }
}

/// Raw bytes into the IMAP command parser (a whole message, literals
/// included).
///
/// Differential (#18): the borrowed parser agrees with the owned one (same
/// result or same error; attached and copied borrowed values equal the owned
/// one; both forms walk to the same arguments).
pub fn imap_command(data: &[u8]) {
    // Under cargo-fuzz: the walk's list end against the validating rule.
    #[cfg(fuzzing)]
    starttls::fuzz_oracles::imap_arguments(data);
    let _ = imap::trailing_literal(data);
    let message = Bytes::copy_from_slice(data);
    let owned = imap::Command::parse(&message);
    let borrowed = imap::command::CommandRef::parse_borrowed(&message);
    match (&borrowed, &owned) {
        (Ok(view), Ok(own)) => {
            let attached = view.clone().map_octets(starttls::octets::attach(&message));
            assert_eq!(&attached, own, "borrowed and owned commands differ");
            assert_eq!(&view.clone().into_owned(), own);
            if let (
                imap::CommandBody::Other { args: v, .. },
                imap::CommandBody::Other { args: o, .. },
            ) = (&view.body, &own.body)
            {
                imap_walks_agree(&message, v, o, 0);
            }
        }
        (Err(v), Err(o)) => assert_eq!(v, o, "borrowed and owned errors differ"),
        _ => panic!("borrowed {borrowed:?} but owned {owned:?}"),
    }
    let Ok(c) = owned else {
        return;
    };
    let mut v = Vec::new();
    c.write_to(&mut v);
    let again = imap::Command::parse(&line(v)).expect("a serialized command parses");
    assert_eq!(again, c);
    if let imap::CommandBody::Other { args, .. } = &c.body {
        walk(args, 0);
    }
}

/// Both forms of the same arguments iterate to the same items at every depth.
fn imap_walks_agree(
    message: &Bytes,
    view: &imap::command::ArgsRef<'_>,
    own: &imap::Args,
    depth: usize,
) {
    assert!(depth <= 64, "lists nest deeper than the parser allows");
    let mut o = own.iter();
    for v in view.iter() {
        let o = o.next().expect("as many owned arguments as borrowed ones");
        if let (imap::Arg::List(vl), imap::Arg::List(ol)) = (&v, &o) {
            imap_walks_agree(message, vl, ol, depth + 1);
        }
        assert_eq!(v.map_octets(starttls::octets::attach(message)), o);
    }
    assert!(
        o.next().is_none(),
        "more owned arguments than borrowed ones"
    );
}

fn walk(args: &imap::Args, depth: usize) {
    assert!(depth <= 64, "lists nest deeper than the parser allows");
    for a in args.iter() {
        if let imap::Arg::List(l) = a {
            walk(&l, depth + 1);
        }
    }
}

/// Raw bytes into the IMAP response parser and the capability parser.
/// The borrowed parse (`parse_borrowed`) is checked against the owned one on
/// every input: both accept or both refuse with the same error, and the
/// borrowed value attached to the line (or copied) is the owned value.
pub fn imap_response(data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    let caps = imap::Capabilities::parse(&b);
    match (imap::Capabilities::parse_borrowed(data), &caps) {
        (Ok(view), Ok(owned)) => {
            assert_eq!(
                &view.clone().map_octets(starttls::octets::attach(&b)),
                owned
            );
            assert_eq!(&view.into_owned(), owned);
        }
        (Err(e), Err(e2)) => assert_eq!(&e, e2),
        (view, owned) => panic!("capabilities: borrowed {view:?}, owned {owned:?}"),
    }
    let owned = imap::Response::parse(&b);
    match (imap::Response::parse_borrowed(data), &owned) {
        (Ok(view), Ok(o)) => {
            assert_eq!(&view.clone().map_octets(starttls::octets::attach(&b)), o);
            assert_eq!(view.to_bytes(), o.to_bytes());
            assert_eq!(&view.into_owned(), o);
        }
        (Err(e), Err(e2)) => assert_eq!(&e, e2),
        (view, o) => panic!("response: borrowed {view:?}, owned {o:?}"),
    }
    let Ok(r) = owned else {
        return;
    };
    let again =
        imap::Response::parse(&line(r.to_bytes().to_vec())).expect("a serialized response parses");
    assert_eq!(again, r);
    if let imap::Response::Data { args, .. } = &r {
        walk(args, 0);
    }
}

/// POP3 differential: both Ok and equal, or both Err with the same error.
fn pop3_same<T: PartialEq + std::fmt::Debug, E: PartialEq + std::fmt::Debug>(
    borrowed: Result<T, E>,
    owned: Result<T, E>,
) {
    assert_eq!(borrowed, owned, "borrowed and owned parses differ");
}

/// Raw bytes into the POP3 command parser.
pub fn pop3_command(data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    // Differential (#18): the borrowed parse of the same line gives the
    // same result; attached or copied, the owned value.
    match (
        pop3::command::parse_sasl_response_borrowed(&b),
        pop3::command::parse_sasl_response(&b),
    ) {
        (Ok(view), Ok(owned)) => assert_eq!(*view.expose(), &owned.expose()[..]),
        (Err(e1), Err(e2)) => assert_eq!(e1, e2),
        (view, owned) => panic!("borrowed {view:?}, owned {owned:?}"),
    }
    let owned = pop3::Command::parse(&b);
    match (pop3::Command::parse_borrowed(&b), &owned) {
        (Ok(view), Ok(owned)) => {
            assert_eq!(
                &view.clone().map_octets(starttls::octets::attach(&b)),
                owned
            );
            assert_eq!(&view.into_owned(), owned);
        }
        (Err(e1), Err(e2)) => assert_eq!(&e1, e2),
        (view, owned) => panic!("borrowed {view:?}, owned {owned:?}"),
    }
    let Ok(c) = owned else {
        return;
    };
    let mut v = Vec::new();
    c.write_to(&mut v);
    let again = pop3::Command::parse(&line(v)).expect("a serialized command parses");
    assert_eq!(again, c);
    let _ = c.has_multiline_reply();
}

/// Raw bytes into the POP3 status, continuation, listing and capability
/// parsers.
pub fn pop3_response(data: &[u8]) {
    use pop3::response as r;
    let b = Bytes::copy_from_slice(data);
    // Differential (#18): every borrowed parser gives the owned parser's
    // result on the same line; attached or copied, the owned value.
    pop3_same(
        r::parse_continuation_borrowed(&b).map(starttls::octets::attach(&b)),
        r::parse_continuation(&b),
    );
    pop3_same(
        r::parse_scan_listing_borrowed(&b),
        r::parse_scan_listing(&b),
    );
    pop3_same(
        r::parse_uidl_listing_borrowed(&b).map(|(n, uid)| (n, starttls::octets::attach(&b)(uid))),
        r::parse_uidl_listing(&b),
    );
    pop3_same(r::parse_stat_borrowed(&b), r::parse_stat(&b));
    let cap = pop3::Capability::parse(&b);
    if let Ok(view) = pop3::Capability::parse_borrowed(&b) {
        assert_eq!(Ok(view.clone().into_owned()), cap);
    }
    pop3_same(
        pop3::Capability::parse_borrowed(&b).map(|v| v.map_octets(starttls::octets::attach(&b))),
        cap.clone(),
    );
    let status = pop3::StatusLine::parse(&b);
    if let Ok(view) = pop3::StatusLine::parse_borrowed(&b) {
        assert_eq!(Ok(view.clone().into_owned()), status);
        let ts = view.apop_timestamp().map(starttls::octets::attach(&b));
        assert_eq!(status.as_ref().ok().and_then(|s| s.apop_timestamp()), ts);
    }
    pop3_same(
        pop3::StatusLine::parse_borrowed(&b).map(|v| v.map_octets(starttls::octets::attach(&b))),
        status,
    );
    if let Ok(cap) = cap {
        let again = pop3::Capability::parse(&line(cap.to_bytes().to_vec()))
            .expect("a serialized capability parses");
        assert_eq!(again, cap);
    }
    let Ok(s) = pop3::StatusLine::parse(&b) else {
        return;
    };
    let again =
        pop3::StatusLine::parse(&line(s.to_bytes().to_vec())).expect("a serialized status parses");
    assert_eq!(again, s);
    let _ = s.apop_timestamp();
}

// ------------------------------------------------------------------ values from choices

/// Picks a non-empty string from `alphabet`.
fn word(u: &mut Unstructured<'_>, alphabet: &[u8], max: usize) -> arbitrary::Result<Vec<u8>> {
    let n = u.int_in_range(1..=max)?;
    (0..n).map(|_| u.choose(alphabet).copied()).collect()
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn domain(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let labels = u.int_in_range(1..=4)?;
    let mut d = Vec::new();
    for i in 0..labels {
        if i > 0 {
            d.push(b'.');
        }
        d.extend(word(u, ALNUM, 12)?);
    }
    Ok(d)
}

/// An SMTP command built from fuzzer choices serializes and parses back to
/// the same command.
pub fn roundtrip_smtp(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(wire) = smtp_wire(&mut u) else { return };
    let c = smtp::Command::parse(&Bytes::from(wire.clone())).unwrap_or_else(|e| {
        panic!(
            "generated {:?} does not parse: {e}",
            String::from_utf8_lossy(&wire)
        )
    });
    let mut v = Vec::new();
    c.write_to(&mut v);
    assert_eq!(smtp::Command::parse(&line(v)).expect("reparses"), c);
    if let Ok(code) = u.int_in_range(200u16..=559) {
        if smtp::ReplyCode::new(code).is_some() {
            let lines: Vec<Vec<u8>> = (0..u.int_in_range(1..=4).unwrap_or(1))
                .map(|_| word(&mut u, b"abc XYZ 123-.", 20).unwrap_or_default())
                .collect();
            let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
            let r = smtp::Reply::new(code, None, &refs);
            assert_eq!(
                smtp::Reply::parse(r.to_bytes()).expect("a built reply parses"),
                r
            );
        }
    }
}

fn smtp_wire(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mailbox = |u: &mut Unstructured<'_>| -> arbitrary::Result<Vec<u8>> {
        let mut m = word(u, ALNUM, 10)?;
        m.push(b'@');
        m.extend(domain(u)?);
        Ok(m)
    };
    let mut w = Vec::new();
    match u.int_in_range(0..=9)? {
        0 => {
            w.extend_from_slice(b"EHLO ");
            w.extend(domain(u)?);
        }
        1 => {
            w.extend_from_slice(b"MAIL FROM:<");
            if bool::arbitrary(u)? {
                w.extend(mailbox(u)?);
            }
            w.push(b'>');
            if bool::arbitrary(u)? {
                w.extend_from_slice(format!(" SIZE={}", u32::arbitrary(u)?).as_bytes());
            }
            if bool::arbitrary(u)? {
                w.extend_from_slice(b" BODY=8BITMIME");
            }
        }
        2 => {
            w.extend_from_slice(b"RCPT TO:<");
            w.extend(mailbox(u)?);
            w.push(b'>');
            if bool::arbitrary(u)? {
                w.extend_from_slice(b" NOTIFY=SUCCESS,FAILURE");
            }
        }
        3 => w.extend_from_slice(
            format!(
                "BDAT {}{}",
                u64::arbitrary(u)? >> 1,
                if bool::arbitrary(u)? { " LAST" } else { "" }
            )
            .as_bytes(),
        ),
        4 => {
            w.extend_from_slice(b"AUTH ");
            w.extend(word(u, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-_0123456789", 20)?);
            if bool::arbitrary(u)? {
                // Base64: whole groups of four.
                w.push(b' ');
                for _ in 0..u.int_in_range(1..=4)? {
                    w.extend(
                        (0..4)
                            .map(|_| u.choose(b"ABCDabcd0123+/").copied())
                            .collect::<arbitrary::Result<Vec<u8>>>()?,
                    );
                }
            }
        }
        5 => {
            w.extend_from_slice(b"VRFY ");
            w.extend(word(u, ALNUM, 16)?);
        }
        6 => w.extend_from_slice(b"STARTTLS"),
        7 => w.extend_from_slice(b"DATA"),
        8 => w.extend_from_slice(b"RSET"),
        _ => {
            w.extend_from_slice(b"HELO ");
            w.extend(domain(u)?);
        }
    }
    Ok(w)
}

/// An IMAP command or response built from fuzzer choices (atoms, quoted
/// strings with escapes, literals of every kind, nested lists) serializes and
/// parses back equal.
pub fn roundtrip_imap(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(args) = imap_args(&mut u, 0) else {
        return;
    };
    let mut wire = b"t1 SEARCH".to_vec();
    for a in &args {
        wire.push(b' ');
        wire.extend_from_slice(a);
    }
    let msg = Bytes::from(wire);
    let c = imap::Command::parse(&msg).unwrap_or_else(|e| {
        panic!(
            "generated {:?} does not parse: {e}",
            String::from_utf8_lossy(&msg)
        )
    });
    let mut v = Vec::new();
    c.write_to(&mut v);
    assert_eq!(imap::Command::parse(&line(v)).expect("reparses"), c);
    let mut resp = b"* 1 FETCH (".to_vec();
    resp.extend_from_slice(&args.join(&b' '));
    resp.push(b')');
    let resp = Bytes::from(resp);
    let r = imap::Response::parse(&resp).unwrap_or_else(|e| {
        panic!(
            "generated {:?} does not parse: {e}",
            String::from_utf8_lossy(&resp)
        )
    });
    assert_eq!(
        imap::Response::parse(&line(r.to_bytes().to_vec())).expect("reparses"),
        r
    );
}

fn imap_args(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<Vec<Vec<u8>>> {
    let n = u.int_in_range(1..=4)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let a = match u.int_in_range(0..=4)? {
            0 => word(u, ALNUM, 8)?,
            1 => {
                let body = word(u, b"ab c\"\\", 8)?;
                let mut q = vec![b'"'];
                for b in body {
                    if b == b'"' || b == b'\\' {
                        q.push(b'\\');
                    }
                    q.push(b);
                }
                q.push(b'"');
                q
            }
            2 => {
                let data: Vec<u8> = Vec::<u8>::arbitrary(u)?.into_iter().take(40).collect();
                // RFC 7888 has `{n+}` only; NUL needs a literal8 (`~{n}`).
                let marker: &[u8] = u.choose(&[b"".as_slice(), b"+"])?;
                let mut l = if data.contains(&0) {
                    b"~".to_vec()
                } else {
                    Vec::new()
                };
                l.extend_from_slice(format!("{{{}", data.len()).as_bytes());
                l.extend_from_slice(marker);
                l.extend_from_slice(b"}\r\n");
                l.extend_from_slice(&data);
                l
            }
            3 if depth < 4 => {
                let inner = imap_args(u, depth + 1)?;
                let mut l = vec![b'('];
                l.extend_from_slice(&inner.join(&b' '));
                l.push(b')');
                l
            }
            _ => b"NIL".to_vec(),
        };
        out.push(a);
    }
    Ok(out)
}

/// A POP3 command or status line built from fuzzer choices serializes and
/// parses back equal.
pub fn roundtrip_pop3(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(choice) = u.int_in_range(0..=7u8) else {
        return;
    };
    let n = u32::arbitrary(&mut u).unwrap_or(1).max(1);
    let wire: Vec<u8> = match choice {
        0 => format!("RETR {n}").into_bytes(),
        1 => format!("TOP {n} {}", n % 100).into_bytes(),
        2 => format!("LIST {n}").into_bytes(),
        3 => [
            b"USER ".as_slice(),
            &word(&mut u, ALNUM, 20).unwrap_or_else(|_| b"a".to_vec()),
        ]
        .concat(),
        4 => [
            b"PASS ".as_slice(),
            &word(&mut u, b"ab c!#", 30).unwrap_or_else(|_| b"p".to_vec()),
        ]
        .concat(),
        5 => b"STLS".to_vec(),
        6 => [b"AUTH PLAIN ".as_slice(), b"QUFBQQ=="].concat(),
        _ => b"CAPA".to_vec(),
    };
    let c = pop3::Command::parse(&Bytes::from(wire.clone())).unwrap_or_else(|e| {
        panic!(
            "generated {:?} does not parse: {e}",
            String::from_utf8_lossy(&wire)
        )
    });
    let mut v = Vec::new();
    c.write_to(&mut v);
    assert_eq!(pop3::Command::parse(&line(v)).expect("reparses"), c);
    let text = word(&mut u, b"abc XYZ<>@.", 30).unwrap_or_default();
    let s = pop3::StatusLine::new(
        if bool::arbitrary(&mut u).unwrap_or(true) {
            pop3::Status::Ok
        } else {
            pop3::Status::Err
        },
        Bytes::from(text),
    );
    assert_eq!(
        pop3::StatusLine::parse(&line(s.to_bytes().to_vec())).expect("reparses"),
        s
    );
}
