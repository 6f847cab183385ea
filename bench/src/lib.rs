//! Inputs shared by the benchmarks (realistic, deterministic, about 1 MiB)
//! and a counting allocator ([`alloc`]).

pub mod alloc;
pub mod sessions;

use bytes::Bytes;

/// The floor every line parser is measured against: every CRLF-ended line
/// found with memchr, its length summed.
pub fn memchr_split(raw: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while let Some(i) = memchr::memchr(b'\n', raw.get(pos..).unwrap_or_default()) {
        n += i;
        pos += i + 1;
    }
    n
}

/// The floor plus what the crate's API adds before any parsing: each line as
/// a zero-copy `Bytes` (a reference-count increment and, when dropped, a
/// decrement). Reported to show how much of a parser's time that is.
pub fn bytes_split(buf: &Bytes) -> usize {
    lines(buf).map(|l| l.len()).sum()
}

/// Each line as a zero-copy `Bytes` (CRLF removed), as the sessions hand
/// lines to the grammars.
pub fn lines(buf: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let i = memchr::memchr(b'\n', buf.get(pos..)?)?;
        let line = buf.slice(pos..pos + i.saturating_sub(1));
        pos += i + 1;
        Some(line)
    })
}

/// Each line as a sub-slice of `raw` (CRLF removed): the input of the
/// borrowed parse path (`parse_borrowed`), no handle, no reference count.
pub fn slices(raw: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let rest = raw.get(pos..)?;
        let i = memchr::memchr(b'\n', rest)?;
        let line = rest.get(..i.saturating_sub(1))?;
        pos += i + 1;
        Some(line)
    })
}

/// A pipelined SMTP client stream: complete transactions of EHLO, MAIL with
/// parameters, a few RCPTs, DATA-less RSET/NOOP, about 32 octets a command on
/// average, repeated to about 1 MiB. Returns the bytes and the command count.
pub fn smtp_commands() -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(1 << 20);
    let mut n = 0;
    let mut i = 0u32;
    while out.len() < (1 << 20) {
        let lines = [
            format!("EHLO client{}.example.org\r\n", i % 97),
            format!(
                "MAIL FROM:<sender{}@example.org> SIZE={} BODY=8BITMIME\r\n",
                i % 13,
                1000 + i
            ),
            format!("RCPT TO:<user{}@example.net>\r\n", i % 31),
            format!(
                "RCPT TO:<\"quoted.local\"@[192.0.2.{}]> NOTIFY=SUCCESS,FAILURE\r\n",
                i % 250
            ),
            "RSET\r\n".to_string(),
            "NOOP\r\n".to_string(),
        ];
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            n += 1;
        }
        i += 1;
    }
    (out, n)
}

/// A stream of SMTP server replies as a client sees them: per session a
/// greeting, a 12-line EHLO reply, two transactions (MAIL, two RCPTs, DATA's
/// 354, the queued reply) and QUIT's 221, repeated to about 1 MiB. Returns
/// the bytes and the reply count.
pub fn smtp_replies() -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(1 << 20);
    let mut n = 0;
    let mut i = 0u32;
    while out.len() < (1 << 20) {
        let mut replies = vec![
            format!("220 mx{}.example.net ESMTP ready\r\n", i % 7),
            format!(
                "250-mx{}.example.net Hello client.example.org [192.0.2.{}]\r\n\
                 250-PIPELINING\r\n250-SIZE 52428800\r\n250-ETRN\r\n250-STARTTLS\r\n\
                 250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
                 250-DSN\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 REQUIRETLS\r\n",
                i % 7,
                i % 250
            ),
        ];
        for t in 0..2 {
            replies.push("250 2.1.0 Ok\r\n".to_string());
            replies.push("250 2.1.5 Ok\r\n".to_string());
            replies.push("250 2.1.5 Ok\r\n".to_string());
            replies.push("354 End data with <CR><LF>.<CR><LF>\r\n".to_string());
            replies.push(format!("250 2.0.0 Ok: queued as 4Z{i:06X}{t}\r\n"));
        }
        replies.push("221 2.0.0 Bye\r\n".to_string());
        for r in replies {
            out.extend_from_slice(r.as_bytes());
            n += 1;
        }
        i += 1;
    }
    (out, n)
}

/// A POP3 client's commands over many sessions (CAPA, USER/PASS, STAT, LIST,
/// UIDL, RETR/DELE of a few messages, NOOP, QUIT), about 1 MiB. Returns the
/// bytes and the command count.
pub fn pop3_commands() -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(1 << 20);
    let mut n = 0;
    let mut i = 0u32;
    while out.len() < (1 << 20) {
        let mut lines = vec![
            "CAPA\r\n".to_string(),
            format!("USER user{}@example.org\r\n", i % 101),
            format!("PASS s3cret-{i}\r\n"),
            "STAT\r\n".to_string(),
            "LIST\r\n".to_string(),
            "UIDL\r\n".to_string(),
        ];
        for m in 1..=4 {
            lines.push(format!("LIST {m}\r\n"));
            lines.push(format!("RETR {m}\r\n"));
            lines.push(format!("DELE {m}\r\n"));
        }
        lines.push("TOP 5 10\r\n".to_string());
        lines.push("NOOP\r\n".to_string());
        lines.push("QUIT\r\n".to_string());
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            n += 1;
        }
        i += 1;
    }
    (out, n)
}

/// What a POP3 server sends back, in line kinds for the parsers: status
/// lines, scan/unique-id listing lines and message lines (dot-stuffed RETR
/// bodies, each ended by a lone `.`). About 1 MiB.
pub struct Pop3Responses {
    /// The byte stream.
    pub bytes: Vec<u8>,
    /// Status lines (`+OK`/`-ERR`) in it.
    pub status_lines: usize,
    /// LIST listing lines.
    pub scan_lines: usize,
    /// UIDL listing lines.
    pub uidl_lines: usize,
    /// Lines of message bodies (terminators excluded).
    pub body_lines: usize,
}

/// Builds [`Pop3Responses`]: per session a greeting, LIST and UIDL of five
/// messages, then RETR of two messages of about 20 lines each, some of them
/// starting with a dot (stuffed), and QUIT.
pub fn pop3_responses() -> Pop3Responses {
    let mut r = Pop3Responses {
        bytes: Vec::with_capacity(1 << 20),
        status_lines: 0,
        scan_lines: 0,
        uidl_lines: 0,
        body_lines: 0,
    };
    let mut i = 0u32;
    while r.bytes.len() < (1 << 20) {
        let mut push = |s: &str| r.bytes.extend_from_slice(s.as_bytes());
        push(&format!(
            "+OK POP3 server ready <{i}.1700000000@pop.example.net>\r\n"
        ));
        push("+OK 5 messages (12345 octets)\r\n");
        for m in 1..=5 {
            push(&format!("{m} {}\r\n", 1000 + m * 37 + i % 100));
        }
        push(".\r\n");
        push("+OK\r\n");
        for m in 1..=5 {
            push(&format!("{m} uid-{i:08x}-{m}\r\n"));
        }
        push(".\r\n");
        let mut body = 0;
        for m in 0..2 {
            push(&format!("+OK {} octets\r\n", 900 + m));
            push(&format!(
                "Received: from client.example.org by pop.example.net id {i}{m}\r\n"
            ));
            push("From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n");
            push(&format!(
                "Subject: report {i}\r\nMessage-ID: <{i}.{m}@example.org>\r\n\r\n"
            ));
            push("Hello Bob,\r\n\r\nthe figures for this week are below.\r\n");
            push("..a line that starts with a dot, stuffed\r\n");
            push("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do\r\n");
            push("eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n");
            push("Ut enim ad minim veniam, quis nostrud exercitation ullamco\r\n");
            push("...\r\n");
            push("laboris nisi ut aliquip ex ea commodo consequat.\r\n\r\n-- \r\nAlice\r\n");
            push(".\r\n");
            body += 18;
        }
        push("+OK bye\r\n");
        r.status_lines += 6;
        r.scan_lines += 5;
        r.uidl_lines += 5;
        r.body_lines += body;
        i += 1;
    }
    r
}
