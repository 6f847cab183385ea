//! The SMTP smuggling oracle (issue #12): no command may come from bytes
//! inside a message body.
//!
//! * Server, `DATA`: after a real envelope and `354`, the fuzzer's body
//!   bytes, then `CRLF.CRLF`, then fuzzer bytes. An independent reference
//!   says where the body ends: after the first `CRLF.CRLF` counted from the
//!   CRLF of the `DATA` line (RFC 5321 §4.1.1.4), nothing else. Until that
//!   octet the session may only hand out message data; at that octet it must
//!   end the message, accepted exactly when every body line keeps the line
//!   rule (CRLF only, no NUL, at most 1000 octets plus a stuffed dot), and
//!   with the reference's unstuffed content or the reference's first fault.
//! * Server, `BDAT`: the chunk's octets are message data, whatever they hold,
//!   and the message ends exactly at its last octet.
//! * Client: whatever the application gives `send_data`, in whatever pieces,
//!   the wire holds exactly one `CRLF.CRLF` (the one `finish_data` writes),
//!   and every CR and LF on it is part of a CRLF.
//!
//! Each run picks SMTP or LMTP, `PIPELINING` offered or not, and the
//! `insecure_bare_lf_line_ends` setting (which must not change bodies).

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use starttls::smtp::{self, ServerEvent};
use starttls::{ClientTls, FramingError, ServerTls, TlsPolicy};

/// The check.
pub fn smuggling_oracle(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(flags) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(body) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let Ok(cuts) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let tail: Vec<u8> = u.take_rest().to_vec();
    let lmtp = flags & 1 != 0;
    let pipelining = flags & 2 != 0;
    let insecure = flags & 4 != 0;
    match (flags >> 3) % 3 {
        0 => data_oracle(lmtp, pipelining, insecure, &body, &cuts, &tail),
        1 => bdat_oracle(lmtp, pipelining, insecure, &body, &cuts, &tail),
        _ => client_oracle(lmtp, &body, &cuts),
    }
}

struct Server {
    s: smtp::ServerSession,
    events: Vec<ServerEvent>,
}

impl Server {
    fn new(lmtp: bool, pipelining: bool, insecure: bool) -> Server {
        let mut c = smtp::ServerConfig::new("mx.test", ServerTls::None);
        c.lmtp = lmtp;
        c.extensions.pipelining = pipelining;
        c.insecure_bare_lf_line_ends = insecure;
        let mut s = smtp::ServerSession::new(Arc::new(c)).expect("valid config");
        while s.poll_transmit().is_some() {}
        Server {
            s,
            events: Vec::new(),
        }
    }

    /// Feeds `d`, accepting whatever waits for an answer; returns the events
    /// this produced.
    fn feed(&mut self, d: &[u8]) -> Vec<ServerEvent> {
        self.s.handle_input(d);
        let mut new = Vec::new();
        while let Ok(Some(e)) = self.s.poll_event() {
            new.push(e);
            while self.s.is_waiting_for_reply() {
                self.s
                    .accept()
                    .expect("a pending command takes a positive reply");
            }
        }
        while self.s.poll_transmit().is_some() {}
        self.events.extend(new.iter().cloned());
        new
    }
}

fn chunks<'a>(input: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    for &c in cuts {
        if rest.is_empty() {
            break;
        }
        let n = (c as usize % 23 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn hello(lmtp: bool) -> &'static [u8] {
    if lmtp {
        b"LHLO c.test\r\n"
    } else {
        b"EHLO c.test\r\n"
    }
}

const ENVELOPE: &[u8] = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@mx.test>\r\n";

fn only_data(events: &[ServerEvent], what: &str) {
    for e in events {
        assert!(
            matches!(e, ServerEvent::MessageData(_)),
            "{what}: {e:?} came from bytes inside the message body"
        );
    }
}

fn data_of(events: &[ServerEvent]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| match e {
            ServerEvent::MessageData(b) => b.to_vec(),
            _ => Vec::new(),
        })
        .collect()
}

/// The reference reading of a dot-stuffed body: where the data ends, the
/// unstuffed message, and the first line-rule fault.
struct Reference {
    /// Octets of `stream` up to and including the end of data.
    end: usize,
    message: Vec<u8>,
    fault: Option<FramingError>,
}

fn reference(stream: &[u8]) -> Reference {
    // The CRLF of the DATA line makes the first line start a line.
    let mut with = b"\r\n".to_vec();
    with.extend_from_slice(stream);
    let p = with
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .expect("the stream holds an end of data");
    let mut message = Vec::new();
    let mut fault = None;
    // The body lines are `stream[..p]`, each ending at CRLF.
    let mut rest = &stream[..p];
    while !rest.is_empty() {
        let len = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| i + 2)
            .expect("every body line ends at CRLF");
        let (line, next) = rest.split_at(len);
        rest = next;
        let limit = 1000 + usize::from(line.first() == Some(&b'.'));
        let content = &line[..len - 2];
        let this = if len > limit {
            Some(FramingError::TooLong { limit: 1000 })
        } else {
            content.iter().find_map(|b| match b {
                b'\r' => Some(FramingError::BareCr),
                b'\n' => Some(FramingError::BareLf),
                0 => Some(FramingError::Nul),
                _ => None,
            })
        };
        if fault.is_none() {
            fault = this;
        }
        message.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    Reference {
        end: p + 3,
        message,
        fault,
    }
}

fn data_oracle(
    lmtp: bool,
    pipelining: bool,
    insecure: bool,
    body: &[u8],
    cuts: &[u8],
    tail: &[u8],
) {
    let mut s = Server::new(lmtp, pipelining, insecure);
    let mut head = hello(lmtp).to_vec();
    head.extend_from_slice(ENVELOPE);
    head.extend_from_slice(b"DATA\r\n");
    s.feed(&head);
    let commands = s
        .events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Command(_) | ServerEvent::Hello(_)))
        .count();
    assert_eq!(commands, 4, "the envelope: {:?}", s.events);
    let mut stream = body.to_vec();
    stream.extend_from_slice(b"\r\n.\r\n");
    stream.extend_from_slice(tail);
    let r = reference(&stream);
    let Some((last, inside)) = stream[..r.end].split_last() else {
        unreachable!("the end of data is at least `.CRLF`")
    };
    let mut pieces = Vec::new();
    for c in chunks(inside, cuts) {
        let ev = s.feed(c);
        only_data(&ev, "before the end of data");
        pieces.extend(ev);
    }
    let ev = s.feed(std::slice::from_ref(last));
    let (end, before) = ev
        .split_last()
        .expect("the last octet of the end of data ends the message");
    only_data(
        before
            .strip_suffix(&[ServerEvent::TransactionReset])
            .unwrap_or(before),
        "at the end of data",
    );
    pieces.extend(before.iter().cloned());
    match (end, r.fault) {
        (ServerEvent::MessageEnd, None) => {
            assert_eq!(data_of(&pieces), r.message, "the message, unstuffed");
        }
        (ServerEvent::MessageRejected(got), Some(want)) => {
            assert_eq!(*got, want, "the first fault of the body");
            assert_eq!(before.last(), Some(&ServerEvent::TransactionReset));
        }
        (e, want) => panic!("the message ended with {e:?}; the reference's fault is {want:?}"),
    }
    // What follows is commands again; it must not panic.
    for c in chunks(&stream[r.end..], cuts) {
        s.feed(c);
    }
}

fn bdat_oracle(
    lmtp: bool,
    pipelining: bool,
    insecure: bool,
    chunk: &[u8],
    cuts: &[u8],
    tail: &[u8],
) {
    let mut s = Server::new(lmtp, pipelining, insecure);
    let mut head = hello(lmtp).to_vec();
    head.extend_from_slice(ENVELOPE);
    head.extend_from_slice(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
    let ev = s.feed(&head);
    let Some((last, inside)) = chunk.split_last() else {
        assert_eq!(
            ev.last(),
            Some(&ServerEvent::MessageEnd),
            "BDAT 0 LAST: {ev:?}"
        );
        return;
    };
    assert!(
        matches!(
            ev.last(),
            Some(ServerEvent::Command(smtp::Command::Bdat { last: true, .. }))
        ),
        "{ev:?}"
    );
    let mut pieces = Vec::new();
    for c in chunks(inside, cuts) {
        let ev = s.feed(c);
        only_data(&ev, "inside a BDAT chunk");
        pieces.extend(ev);
    }
    let ev = s.feed(std::slice::from_ref(last));
    let (end, before) = ev
        .split_last()
        .expect("the chunk's last octet ends the message");
    assert_eq!(end, &ServerEvent::MessageEnd);
    only_data(before, "inside a BDAT chunk");
    pieces.extend(before.iter().cloned());
    assert_eq!(data_of(&pieces), chunk, "a chunk is delivered as sent");
    for c in chunks(tail, cuts) {
        s.feed(c);
    }
}

fn client_oracle(lmtp: bool, body: &[u8], cuts: &[u8]) {
    let mut config =
        smtp::ClientConfig::new("client.test", TlsPolicy::Cleartext, ClientTls::External);
    config.lmtp = lmtp;
    let mut c = smtp::ClientSession::new(Arc::new(config)).expect("valid config");
    let mut wire = Vec::new();
    let take = |c: &mut smtp::ClientSession, wire: &mut Vec<u8>| {
        while let Some(b) = c.poll_transmit() {
            wire.extend_from_slice(&b);
        }
        while let Ok(Some(_)) = c.poll_event() {}
    };
    c.handle_input(b"220 mx.test ESMTP\r\n");
    take(&mut c, &mut wire);
    c.handle_input(b"250 mx.test\r\n");
    take(&mut c, &mut wire);
    assert!(c.is_ready(), "cleartext client after EHLO");
    for (cmd, answer) in [
        (&b"MAIL FROM:<a@b.test>"[..], &b"250 ok\r\n"[..]),
        (b"RCPT TO:<x@mx.test>", b"250 ok\r\n"),
        (b"DATA", b"354 go\r\n"),
    ] {
        let cmd = smtp::Command::parse(&Bytes::from_static(cmd)).expect("a valid command");
        c.send(cmd).expect("the command is allowed");
        take(&mut c, &mut wire);
        c.handle_input(answer);
        take(&mut c, &mut wire);
    }
    let at = wire.len();
    assert!(wire.ends_with(b"DATA\r\n"));
    for piece in chunks(body, cuts) {
        c.send_data(piece).expect("in DATA");
        take(&mut c, &mut wire);
    }
    c.finish_data().expect("in DATA");
    take(&mut c, &mut wire);
    // From the CRLF of the DATA line on.
    let sent = &wire[at - 2..];
    let first = sent.windows(5).position(|w| w == b"\r\n.\r\n");
    assert_eq!(
        first,
        Some(sent.len() - 5),
        "the application's body ended the data early on the wire: {:?}",
        String::from_utf8_lossy(sent)
    );
    let mut rest = sent;
    while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        assert!(
            rest[i..].starts_with(b"\r\n"),
            "a bare CR or LF on the wire: {:?}",
            String::from_utf8_lossy(sent)
        );
        rest = &rest[i + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2023_variants_pass_every_mode() {
        let smuggled =
            b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\nsmuggled\r\n.\r\n";
        for end in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n.\n",
            b"\r\n.\r\n",
        ] {
            let mut body = b"a".to_vec();
            body.extend_from_slice(end);
            body.extend_from_slice(smuggled);
            for lmtp in [false, true] {
                for pipelining in [false, true] {
                    for insecure in [false, true] {
                        for cuts in [&[][..], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9][..]] {
                            data_oracle(lmtp, pipelining, insecure, &body, cuts, b"NOOP\r\n");
                            bdat_oracle(lmtp, pipelining, insecure, &body, cuts, b"NOOP\r\n");
                        }
                    }
                }
                client_oracle(lmtp, &body, &[3, 1, 4, 1, 5]);
            }
        }
    }

    #[test]
    fn reference_finds_the_first_crlf_dot_crlf() {
        let r = reference(b"a\n.\r\nb\r\n.\r\nNOOP\r\n");
        assert_eq!(r.end, 11);
        assert_eq!(r.fault, Some(FramingError::BareLf));
        let r = reference(b".\r\nNOOP");
        assert_eq!((r.end, r.message.len()), (3, 0));
        let r = reference(b"..x\r\n.\r\n");
        assert_eq!((r.end, r.message, r.fault), (8, b".x\r\n".to_vec(), None));
    }
}
