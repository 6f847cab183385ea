//! IMAP parsing: our framer and grammars against the physical floor (a memchr
//! CRLF split of the same bytes), imap-codec 1.0 (commands and responses) and
//! imap-proto 0.17 (responses), in the same run, on the same bytes.
//!
//! Two inputs of about 1 MiB each, built here deterministically:
//!
//! * `imap_commands`: a post-login client stream (≈33 octets a command):
//!   `UID FETCH` with sequence sets and attribute lists, `UID STORE`,
//!   `SEARCH`/`UID SEARCH`, `SELECT`, `EXAMINE`, `LIST`, `STATUS`, `NOOP`,
//!   `CAPABILITY`, `EXPUNGE`, and now and then an `APPEND` with a literal
//!   (synchronizing or `LITERAL+`; the stream holds its data as if the
//!   server had already sent the continuation request).
//! * `imap_responses`: a server stream (≈128 octets a response): `* n FETCH`
//!   with flags, sizes, dates and `BODY[] {len}` literals holding whole
//!   messages (with CRLFs and IMAP-looking lines inside), `EXISTS`, `RECENT`,
//!   `EXPUNGE`, `* OK [UIDNEXT n]`, `* FLAGS`, `* SEARCH`, `* LIST`,
//!   `* STATUS`, tagged `OK`/`NO`.
//!
//! Every parser goes from the byte stream to typed messages, literals
//! included, and every iteration asserts it parsed exactly the expected
//! number of messages. Ours: the message framer's rule (CRLF-only lines,
//! no bare CR or NUL, `trailing_literal` to join literals, literal data
//! counted not scanned) then `Command::parse` / `Response::parse` on a
//! zero-copy `Bytes` slice, as a session does. `starttls_walk` also iterates
//! every generic argument, recursively (our `Args` are validated at parse
//! time and tokenized on demand; the peers build their whole typed tree).
//! `starttls_borrowed` / `starttls_borrowed_walk` (commands) frame the raw
//! stream in place with the same rule and parse each message with
//! `CommandRef::parse_borrowed`: no `Bytes`, no reference counts.
//! imap-codec and imap-proto decode straight from the buffer and return the
//! remainder, which is how they are meant to be driven.
//!
//! Before criterion runs, one full pass per parser is made under the
//! counting allocator and `alloc <group>/<parser> <x> allocs/item` is
//! printed, with `items <group> <n> bytes <b>` to turn criterion's times into
//! ns/item. `docs/performance.md` records the ratios.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use imap_codec::decode::Decoder;
use imap_codec::{CommandCodec, ResponseCodec};
use starttls::imap::command::{ArgsRef, CommandRef};
use starttls::imap::ResponseRef;
use starttls::imap::{trailing_literal, Arg, Args, Command, CommandBody, Response};

#[global_allocator]
static A: starttls_bench::alloc::Counting = starttls_bench::alloc::Counting;

/// Target size of each input.
const SIZE: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------

/// A deterministic pseudo-random sequence (xorshift32), so the inputs vary
/// without depending on anything outside this file.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// An input stream: the bytes, its message count and its line count.
struct Input {
    raw: Vec<u8>,
    /// Zero-copy view of `raw` for our parser, already shared (slicing it
    /// never allocates).
    buf: Bytes,
    messages: usize,
    lines: usize,
}

impl Input {
    fn new(raw: Vec<u8>, messages: usize) -> Input {
        let lines = memchr::memchr_iter(b'\n', &raw).count();
        let buf = Bytes::from(raw.clone());
        // The first clone turns the Vec-backed `Bytes` into a shared one (one
        // allocation, once); after that slicing only bumps a counter, as for
        // the session's input buffer.
        drop(buf.clone());
        Input {
            raw,
            buf,
            messages,
            lines,
        }
    }
}

/// The text of a small RFC 5322 message, `len`-ish octets, with CRLF lines and
/// lines that look like IMAP (which a literal must not care about).
fn message_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut m = if len < 200 {
        format!("Subject: note {}\r\n\r\n", rng.below(1000)).into_bytes()
    } else {
        format!(
            "From: Alice Example <alice{}@example.org>\r\n\
         To: bob@example.net\r\n\
         Subject: Re: quarterly report #{}\r\n\
         Date: Wed, 17 Jul 2024 02:44:25 -0700\r\n\
         Message-ID: <{}.{}@mx.example.org>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
            rng.below(50),
            rng.below(1000),
            rng.next(),
            rng.below(100_000)
        )
        .into_bytes()
    };
    let body: [&[u8]; 6] = [
        b"Hi Bob,\r\n",
        b"the numbers are attached; see the second table.\r\n",
        b"a1 OK LOGIN completed\r\n",
        b"* 3 FETCH (BODY[] {12}\r\n",
        b"Gr\xc3\xbc\xc3\x9fe aus M\xc3\xbcnchen.\r\n",
        b"> quoted text from the previous message, wrapped at 72 columns\r\n",
    ];
    while m.len() < len {
        m.extend_from_slice(body[rng.below(body.len() as u32) as usize]);
    }
    m
}

/// A post-login IMAP client stream of about 1 MiB.
fn commands() -> Input {
    let mut rng = Rng(0x1234_5678);
    let mut out = Vec::with_capacity(SIZE + 1024);
    let mut n = 0usize;
    let mut uid = 4100u32;
    while out.len() < SIZE {
        let tag = format!("A{:04}", n % 10_000);
        uid += rng.below(3);
        let u = uid;
        let cmd = match n % 24 {
            0 | 12 => format!("UID FETCH {}:{} (UID FLAGS)", u, u + 40),
            1 | 7 | 15 | 19 => "NOOP".to_string(),
            23 => format!("UID FETCH {u}:* (FLAGS)"),
            2 => format!("UID STORE {u} +FLAGS.SILENT (\\Seen)"),
            3 => "SELECT INBOX".to_string(),
            4 => format!("UID FETCH {u} (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"),
            5 => "SEARCH UNSEEN".to_string(),
            17 => "UID SEARCH UNSEEN UNDELETED".to_string(),
            6 => "CAPABILITY".to_string(),
            8 => "LIST \"\" \"*\"".to_string(),
            9 => "STATUS \"Sent Items\" (MESSAGES UNSEEN UIDNEXT)".to_string(),
            10 => "EXAMINE Archive/2023".to_string(),
            11 => format!("UID SEARCH SINCE 1-Feb-2024 FROM \"alice{}\"", u % 50),
            13 => format!(
                "UID FETCH {},{}:{} (UID RFC822.SIZE FLAGS)",
                u,
                u + 2,
                u + 5
            ),
            14 => "EXPUNGE".to_string(),
            16 => format!("UID STORE {}:{} -FLAGS (\\Flagged)", u, u + 3),
            18 => format!("FETCH {} FLAGS", u % 900 + 1),
            20 => "CLOSE".to_string(),
            21 => "SELECT Drafts".to_string(),
            22 if n % 48 == 22 => {
                // An APPEND with a small literal, synchronizing or LITERAL+.
                let len = 80 + rng.below(80) as usize;
                let text = message_text(&mut rng, len);
                let plus = if n % 96 == 22 { "" } else { "+" };
                out.extend_from_slice(
                    format!("{tag} APPEND Sent (\\Seen) {{{}{plus}}}\r\n", text.len()).as_bytes(),
                );
                out.extend_from_slice(&text);
                out.extend_from_slice(b"\r\n");
                n += 1;
                continue;
            }
            _ => "CHECK".to_string(),
        };
        out.extend_from_slice(format!("{tag} {cmd}\r\n").as_bytes());
        n += 1;
    }
    Input::new(out, n)
}

/// An IMAP server response stream of about 1 MiB.
fn responses() -> Input {
    let mut rng = Rng(0x9e37_79b9);
    let mut out = Vec::with_capacity(SIZE + 4096);
    let mut n = 0usize;
    let mut seq = 1u32;
    let mut uid = 4100u32;
    let mut tag = 0u32;
    let flags = [
        "\\Seen",
        "\\Seen \\Answered",
        "",
        "\\Flagged",
        "\\Seen $Forwarded",
    ];
    while out.len() < SIZE {
        seq = seq % 5000 + 1;
        uid += 1 + rng.below(2);
        let f = flags[rng.below(flags.len() as u32) as usize];
        let line = match n % 32 {
            0 | 4 | 9 | 13 | 18 | 22 | 27 => format!("* {seq} FETCH (UID {uid} FLAGS ({f}))"),
            1 | 10 | 19 | 28 => format!(
                "* {seq} FETCH (UID {uid} RFC822.SIZE {} FLAGS ({f}) INTERNALDATE \"17-Jul-2024 02:44:25 -0700\")",
                1000 + rng.below(90_000)
            ),
            2 | 16 => {
                let len = 400 + rng.below(1800) as usize;
                let text = message_text(&mut rng, len);
                out.extend_from_slice(
                    format!("* {seq} FETCH (UID {uid} FLAGS ({f}) BODY[] {{{}}}\r\n", text.len())
                        .as_bytes(),
                );
                out.extend_from_slice(&text);
                out.extend_from_slice(b")\r\n");
                n += 1;
                continue;
            }
            3 | 20 => format!("* {} EXISTS", 1000 + seq),
            5 => format!("* {} RECENT", rng.below(5)),
            6 => format!("* OK [UIDNEXT {}] Predicted next UID", uid + 1),
            7 => "* OK [UIDVALIDITY 3857529045] UIDs valid".to_string(),
            8 => "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string(),
            11 => {
                tag += 1;
                format!("A{:04} OK [READ-WRITE] SELECT completed", tag % 10_000)
            }
            12 => format!(
                "* SEARCH {} {} {} {}",
                seq,
                seq + 7,
                seq + 82,
                seq + 1203
            ),
            14 => "* LIST (\\HasNoChildren) \"/\" INBOX".to_string(),
            15 => "* LIST (\\HasChildren \\Noselect) \"/\" \"Archive\"".to_string(),
            17 => format!(
                "* STATUS \"Sent Items\" (MESSAGES {} UIDNEXT {} UNSEEN {})",
                200 + rng.below(100),
                uid,
                rng.below(10)
            ),
            21 | 29 => format!("* {seq} EXPUNGE"),
            23 => {
                tag += 1;
                format!("A{:04} NO [TRYCREATE] Mailbox does not exist", tag % 10_000)
            }
            24 => "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited".to_string(),
            _ => {
                tag += 1;
                format!("A{:04} OK UID FETCH completed", tag % 10_000)
            }
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        n += 1;
    }
    Input::new(out, n)
}

// ---------------------------------------------------------------------------
// The parsers, one full pass each, returning the messages parsed.
// ---------------------------------------------------------------------------

/// The floor: CRLF lines of the same bytes (returns the line count).
fn memchr_split(input: &Input) -> usize {
    let raw = &input.raw[..];
    let mut pos = 0;
    let mut n = 0usize;
    let mut octets = 0usize;
    while let Some(i) = memchr::memchr(b'\n', &raw[pos..]) {
        octets += i.saturating_sub(1);
        pos += i + 1;
        n += 1;
    }
    black_box(octets);
    n
}

/// The length of the complete message at the start of `buf`, final CRLF
/// included: the rule of `starttls::imap`'s message framer (which is
/// crate-private) through the public `trailing_literal`. Lines end at CRLF
/// only, with no bare CR or NUL; a line ending in a literal header is joined
/// with exactly that many octets of data (counted, not scanned) and the next
/// line.
#[inline]
fn frame(buf: &[u8]) -> Result<Option<usize>, ()> {
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(lf) = memchr::memchr(b'\n', rest) else {
            return Ok(None);
        };
        let line = match lf.checked_sub(1).and_then(|cr| rest.get(..=cr)) {
            Some(l) if l.last() == Some(&b'\r') => &l[..l.len() - 1],
            _ => return Err(()),
        };
        if memchr::memchr2(b'\r', 0, line).is_some() {
            return Err(());
        }
        pos += lf + 1;
        match trailing_literal(line) {
            Ok(None) => return Ok(Some(pos)),
            Ok(Some(h)) => {
                let len = usize::try_from(h.len).map_err(|_| ())?;
                if buf.len() - pos < len {
                    return Ok(None);
                }
                pos += len;
            }
            Err(_) => return Err(()),
        }
    }
}

/// Calls `f` on each message of `buf` (without its final CRLF), as a zero-copy
/// slice; returns how many there were. Panics on a framing error.
#[inline]
fn each_message(buf: &Bytes, mut f: impl FnMut(&Bytes)) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos < buf.len() {
        let len = match frame(&buf[pos..]) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(()) => panic!("framing error at octet {pos}"),
        };
        f(&buf.slice(pos..pos + len - 2));
        pos += len;
        n += 1;
    }
    n
}

/// Every generic argument, recursively: the tokens a consumer would read.
fn walk(args: &Args) -> usize {
    let mut n = 0;
    for arg in args {
        n += 1;
        match &arg {
            Arg::List(inner) => n += walk(inner),
            Arg::Literal { data, .. } => {
                black_box(data.len());
            }
            _ => {}
        }
        black_box(&arg);
    }
    n
}

fn starttls_commands(input: &Input, deep: bool) -> usize {
    let mut ok = 0usize;
    let mut tokens = 0usize;
    each_message(&input.buf, |m| {
        if let Ok(cmd) = Command::parse(m) {
            ok += 1;
            if deep {
                if let CommandBody::Other { args, .. } = &cmd.body {
                    tokens += walk(args);
                }
            }
            black_box(&cmd);
        }
    });
    black_box(tokens);
    ok
}

/// Calls `f` on each message of the raw stream (without its final CRLF),
/// borrowed in place: the framing rule of [`frame`] over `&[u8]`, no copy,
/// no `Bytes`. Returns how many there were; panics on a framing error.
#[inline]
fn each_command_borrowed(raw: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut rest = raw;
    let mut n = 0;
    while !rest.is_empty() {
        let len = match frame(rest) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(()) => panic!("framing error at octet {}", raw.len() - rest.len()),
        };
        let (message, after) = rest.split_at(len);
        f(&message[..len - 2]);
        rest = after;
        n += 1;
    }
    n
}

/// [`walk`] over borrowed arguments.
fn walk_command_borrowed(args: &ArgsRef<'_>) -> usize {
    let mut n = 0;
    for arg in args {
        n += 1;
        match &arg {
            Arg::List(inner) => n += walk_command_borrowed(inner),
            Arg::Literal { data, .. } => {
                black_box(data.len());
            }
            _ => {}
        }
        black_box(&arg);
    }
    n
}

/// The borrowed path: frame the raw stream in place, parse each message
/// with `CommandRef::parse_borrowed` (no allocation, no reference count).
fn starttls_borrowed_commands(input: &Input, deep: bool) -> usize {
    let mut ok = 0usize;
    let mut tokens = 0usize;
    each_command_borrowed(&input.raw, |m| {
        if let Ok(cmd) = CommandRef::parse_borrowed(m) {
            ok += 1;
            if deep {
                if let CommandBody::Other { args, .. } = &cmd.body {
                    tokens += walk_command_borrowed(args);
                }
            }
            black_box(&cmd);
        }
    });
    black_box(tokens);
    ok
}

fn starttls_responses(input: &Input, deep: bool) -> usize {
    let mut ok = 0usize;
    let mut tokens = 0usize;
    each_message(&input.buf, |m| {
        if let Ok(resp) = Response::parse(m) {
            ok += 1;
            if deep {
                if let Response::Data { args, .. } = &resp {
                    tokens += walk(args);
                }
            }
            black_box(&resp);
        }
    });
    black_box(tokens);
    ok
}

/// Calls `f` on each message of `raw` (without its final CRLF) as a
/// sub-slice, framed in place by [`frame`]: the borrowed path, no handle, no
/// copy, literals included. Panics on a framing error.
#[inline]
fn each_message_borrowed(raw: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while let Some(rest) = raw.get(pos..).filter(|r| !r.is_empty()) {
        let len = match frame(rest) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(()) => panic!("framing error at octet {pos}"),
        };
        f(&rest[..len - 2]);
        pos += len;
        n += 1;
    }
    n
}

/// [`walk`] over borrowed arguments.
fn walk_borrowed(args: &ArgsRef<'_>) -> usize {
    let mut n = 0;
    for arg in args {
        n += 1;
        match &arg {
            Arg::List(inner) => n += walk_borrowed(inner),
            Arg::Literal { data, .. } => {
                black_box(data.len());
            }
            _ => {}
        }
        black_box(&arg);
    }
    n
}

/// `Response::parse_borrowed` on each message framed in place in the raw
/// stream (`deep`: every argument walked, as `starttls_walk`).
fn starttls_responses_borrowed(input: &Input, deep: bool) -> usize {
    let mut ok = 0usize;
    let mut tokens = 0usize;
    each_message_borrowed(&input.raw, |m| {
        if let Ok(resp) = ResponseRef::parse_borrowed(m) {
            ok += 1;
            if deep {
                if let Response::Data { args, .. } = &resp {
                    tokens += walk_borrowed(args);
                }
            }
            black_box(&resp);
        }
    });
    black_box(tokens);
    ok
}

fn imap_codec_commands(input: &Input) -> usize {
    let codec = CommandCodec::default();
    let mut rest = &input.raw[..];
    let mut ok = 0usize;
    while !rest.is_empty() {
        match codec.decode(rest) {
            Ok((r, cmd)) => {
                black_box(&cmd);
                rest = r;
                ok += 1;
            }
            Err(e) => panic!(
                "imap-codec: {e:?} at {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(80)])
            ),
        }
    }
    ok
}

fn imap_codec_responses(input: &Input) -> usize {
    let codec = ResponseCodec::default();
    let mut rest = &input.raw[..];
    let mut ok = 0usize;
    while !rest.is_empty() {
        match codec.decode(rest) {
            Ok((r, resp)) => {
                black_box(&resp);
                rest = r;
                ok += 1;
            }
            Err(e) => panic!(
                "imap-codec: {e:?} at {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(80)])
            ),
        }
    }
    ok
}

fn imap_proto_responses(input: &Input) -> usize {
    let mut rest = &input.raw[..];
    let mut ok = 0usize;
    while !rest.is_empty() {
        match imap_proto::Response::parse(rest) {
            Ok((r, resp)) => {
                black_box(&resp);
                rest = r;
                ok += 1;
            }
            Err(e) => panic!(
                "imap-proto: {e:?} at {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(80)])
            ),
        }
    }
    ok
}

/// Panics with the first message our grammars refuse (the passes only count).
fn check_ours(input: &Input, commands: bool) {
    each_message(&input.buf, |m| {
        let refused = if commands {
            Command::parse(m).err()
        } else {
            Response::parse(m).err()
        };
        if let Some(e) = refused {
            panic!("starttls: {e:?} for {:?}", String::from_utf8_lossy(m));
        }
    });
}

type Pass = fn(&Input) -> usize;

const COMMAND_PARSERS: [(&str, Pass); 5] = [
    ("starttls", |i| starttls_commands(i, false)),
    ("starttls_walk", |i| starttls_commands(i, true)),
    ("starttls_borrowed", |i| {
        starttls_borrowed_commands(i, false)
    }),
    ("starttls_borrowed_walk", |i| {
        starttls_borrowed_commands(i, true)
    }),
    ("imap_codec", imap_codec_commands),
];

const RESPONSE_PARSERS: [(&str, Pass); 6] = [
    ("starttls", |i| starttls_responses(i, false)),
    ("starttls_walk", |i| starttls_responses(i, true)),
    ("starttls_borrowed", |i| {
        starttls_responses_borrowed(i, false)
    }),
    ("starttls_borrowed_walk", |i| {
        starttls_responses_borrowed(i, true)
    }),
    ("imap_codec", imap_codec_responses),
    ("imap_proto", imap_proto_responses),
];

// ---------------------------------------------------------------------------
// Allocations and criterion.
// ---------------------------------------------------------------------------

/// Checks every parser once and prints the input sizes and the allocations
/// per parsed message of one full pass.
fn report(group: &str, input: &Input, parsers: &[(&str, Pass)]) {
    println!(
        "items {group} {} bytes {} (avg {:.1} B/item, {} lines)",
        input.messages,
        input.raw.len(),
        input.raw.len() as f64 / input.messages as f64,
        input.lines
    );
    assert_eq!(memchr_split(input), input.lines);
    check_ours(input, group == "imap_commands");
    for (name, pass) in parsers {
        let (allocs, n) = starttls_bench::alloc::measure(|| pass(input));
        assert_eq!(n, input.messages, "{group}/{name} parsed {n} messages");
        println!(
            "alloc {group}/{name} {:.2} allocs/item ({n} items)",
            allocs as f64 / n as f64
        );
    }
}

fn bench(c: &mut Criterion, group: &str, input: &Input, parsers: &[(&str, Pass)]) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(input.raw.len() as u64));
    g.bench_function("memchr_split", |b| {
        b.iter(|| {
            let n = memchr_split(input);
            assert_eq!(n, input.lines);
            n
        })
    });
    for (name, pass) in parsers {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let n = pass(input);
                assert_eq!(n, input.messages);
                n
            })
        });
    }
    g.finish();
}

fn imap_commands(c: &mut Criterion) {
    bench(c, "imap_commands", &commands(), &COMMAND_PARSERS);
}

fn imap_responses(c: &mut Criterion) {
    bench(c, "imap_responses", &responses(), &RESPONSE_PARSERS);
}

criterion_group!(benches, imap_commands, imap_responses);

fn main() {
    report("imap_commands", &commands(), &COMMAND_PARSERS);
    report("imap_responses", &responses(), &RESPONSE_PARSERS);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
