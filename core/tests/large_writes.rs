//! Large writes through in-memory TLS (issue #12): a single application
//! write of any size — SMTP `DATA` and `BDAT`, a POP3 `RETR` body, IMAP
//! untagged data and `APPEND` literals — reaches the peer intact, in implicit
//! TLS and after STARTTLS, while the session encrypts it one window at a time
//! as the caller takes it: every `poll_transmit` returns at most one window of
//! records, and the memory the session holds on top of the plaintext it was
//! handed is one window, not a second (encrypted) copy of the whole write.
//!
//! 1 MiB on every path and mode; 100 MiB on one path per protocol (SMTP
//! `DATA` streamed, SMTP `BDAT` in one call, POP3 `RETR`, IMAP `APPEND`) to
//! keep the binary within seconds in debug builds. A counting allocator
//! measures the peak, hence a binary of its own.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use common::{client_tls, localhost, server_tls};
use sha2::{Digest, Sha256};
use starttls::{ClientTls, ServerTls, TlsPolicy, Trust};

// ------------------------------------------------------------ allocation meter

struct Counting;

thread_local! {
    /// Live heap octets allocated by this thread, and their peak.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: defers to the system allocator; only counts octets.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts a measurement: returns the live octets now, and resets the peak.
fn meter_start() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

/// Octets above `base` at the peak since [`meter_start`].
fn meter_peak(base: isize) -> usize {
    (PEAK.with(Cell::get) - base).max(0) as usize
}

// ------------------------------------------------------------ payloads

const MIB: usize = 1024 * 1024;
/// Every payload line is 80 octets with its CRLF; some start with one or two
/// dots, so dot-stuffing is exercised.
const LINE: usize = 80;

/// Line `i` of every payload.
fn push_line(out: &mut Vec<u8>, i: u64) {
    const TEMPLATES: [&[u8; 78]; 4] = [
        b"..two dots then 0000000000 and some more text to fill the line up to its end..",
        b"plain line number 0000000000 with text that is long enough to make eighty octs",
        b".one dot then 0000000000 . and a dot in the middle and at the end of the line.",
        b"STARTTLS 0000000000 \xc3\xa9\xc3\xa9 eight-bit text, not a command: it is inside the data!",
    ];
    let start = out.len();
    let template = TEMPLATES
        .get((i % 4) as usize)
        .copied()
        .unwrap_or(TEMPLATES[0]);
    out.extend_from_slice(template);
    out.extend_from_slice(b"\r\n");
    // Stamp the line number over the ten zeros.
    let at = start + template.iter().position(|&b| b == b'0').unwrap_or(0);
    let mut n = i;
    for k in (0..10).rev() {
        out[at + k] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Lines `first..first + n`.
fn lines(first: u64, n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n as usize * LINE);
    for i in first..first + n {
        push_line(&mut v, i);
    }
    v
}

/// A payload of `len` octets (a multiple of [`LINE`]).
fn payload(len: usize) -> Vec<u8> {
    assert_eq!(len % LINE, 0);
    lines(0, (len / LINE) as u64)
}

/// Received data, hashed as it arrives (never kept).
#[derive(Default)]
struct Sink {
    hash: Sha256,
    len: usize,
}

impl Sink {
    fn take(&mut self, d: &[u8]) {
        self.hash.update(d);
        self.len += d.len();
    }
    fn digest(self) -> (usize, Vec<u8>) {
        (self.len, self.hash.finalize().to_vec())
    }
}

fn digest(d: &[u8]) -> (usize, Vec<u8>) {
    (d.len(), Sha256::digest(d).to_vec())
}

// ------------------------------------------------------------ the wire

/// One side of a connection with its application.
trait End {
    fn input(&mut self, d: &[u8]);
    fn transmit(&mut self) -> Option<Bytes>;
    /// Polls events and acts on them like an application; panics on a
    /// session failure.
    fn drive(&mut self);
    /// Streaming senders: the session's transmit queue is empty; hand it the
    /// next piece. `true` if something was handed over.
    fn refill(&mut self) -> bool {
        false
    }
}

/// What the wire saw.
#[derive(Debug, Default)]
struct Wire {
    /// The largest single `poll_transmit` result.
    max_chunk: usize,
    /// Octets moved, both ways.
    moved: usize,
}

/// Most octets one `poll_transmit` may return: the engine's window (64 KiB
/// of records) plus the record overhead of the window's 5 records at most
/// and slack for a handshake flight or alert.
const MAX_CHUNK: usize = 64 * 1024 + 4096;

/// Runs both ends until neither has anything more to do. Every transmission
/// is delivered as it was taken.
fn run(a: &mut dyn End, b: &mut dyn End) -> Wire {
    let mut wire = Wire::default();
    a.drive();
    b.drive();
    loop {
        let progress = flow(a, b, &mut wire) | flow(b, a, &mut wire);
        if !progress {
            return wire;
        }
    }
}

/// Moves everything `from` has to send to `to`, refilling `from` as its
/// queue empties. `true` if anything moved.
fn flow(from: &mut dyn End, to: &mut dyn End, wire: &mut Wire) -> bool {
    let mut progress = false;
    loop {
        while let Some(out) = from.transmit() {
            progress = true;
            wire.max_chunk = wire.max_chunk.max(out.len());
            wire.moved += out.len();
            to.input(&out);
            drop(out);
            to.drive();
        }
        from.drive();
        if !from.refill() {
            return progress;
        }
        progress = true;
    }
}

/// The two ways into TLS.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Implicit,
    StartTls,
    /// No TLS at all (the server offers none; the client is opportunistic):
    /// the same engine path as bring-your-own TLS after the handshake.
    Cleartext,
}

impl Mode {
    fn policy(self) -> TlsPolicy {
        match self {
            Mode::Implicit => TlsPolicy::Implicit,
            Mode::StartTls => TlsPolicy::StartTlsRequired,
            Mode::Cleartext => TlsPolicy::Opportunistic,
        }
    }
    fn trust(self) -> Trust {
        match self {
            Mode::Cleartext => Trust::Cleartext,
            _ => Trust::Tls,
        }
    }
    fn server_tls(self) -> ServerTls {
        match self {
            Mode::Cleartext => ServerTls::None,
            _ => ServerTls::Rustls(server_tls()),
        }
    }
    fn implicit(self) -> bool {
        matches!(self, Mode::Implicit)
    }
}

fn client_rustls() -> ClientTls {
    ClientTls::Rustls {
        config: client_tls(),
        server_name: localhost(),
    }
}

/// The checks every large-write test makes: the data arrived whole, no
/// `poll_transmit` returned more than one window, and the peak memory above
/// the caller's own buffers stayed under `bound` (see [`copies`]).
fn check(
    what: &str,
    sent: (usize, Vec<u8>),
    got: (usize, Vec<u8>),
    wire: &Wire,
    peak: usize,
    bound: usize,
) {
    let len = sent.0;
    assert_eq!(got.0, len, "{what}: octets received");
    assert!(got.1 == sent.1, "{what}: the received data differs");
    assert!(wire.moved >= len, "{what}: {wire:?}");
    assert!(
        wire.max_chunk <= MAX_CHUNK,
        "{what}: one poll_transmit returned {} octets (at most {MAX_CHUNK})",
        wire.max_chunk
    );
    assert!(
        peak <= bound,
        "{what}: peak {peak} octets above the caller's buffers (bound {bound})"
    );
}

/// `copies` plaintext copies of a `len`-octet payload (what the API copies
/// on the way in, on both ends) plus 1 MiB: an encrypted copy of the whole
/// payload queued at once would exceed it.
fn copies(len: usize, copies: f64) -> usize {
    (len as f64 * copies) as usize + MIB
}

// ------------------------------------------------------------ SMTP

mod smtp_apps {
    use super::*;
    use starttls::smtp::{
        ClientConfig, ClientEvent, ClientSession, Command, ServerConfig, ServerEvent, ServerSession,
    };

    pub struct Server {
        pub s: ServerSession,
        pub got: Sink,
        pub ended: bool,
        pub trust: Trust,
    }

    impl Server {
        pub fn new(mode: Mode, buffered_input: usize) -> Self {
            let mut c = ServerConfig::new("mx.test", mode.server_tls());
            c.implicit_tls = mode.implicit();
            c.extensions.chunking = true;
            c.limits.buffered_input = buffered_input;
            Server {
                s: ServerSession::new(Arc::new(c)).unwrap(),
                got: Sink::default(),
                ended: false,
                trust: mode.trust(),
            }
        }
    }

    impl End for Server {
        fn input(&mut self, d: &[u8]) {
            self.s.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.s.poll_transmit()
        }
        fn drive(&mut self) {
            while let Some(e) = self.s.poll_event().expect("server failed") {
                match e {
                    ServerEvent::Command(Command::Bdat { .. }) => {}
                    ServerEvent::Command(_) | ServerEvent::ChunkEnd => self.s.accept().unwrap(),
                    ServerEvent::MessageEnd => {
                        assert_eq!(self.s.trust(), self.trust);
                        self.ended = true;
                        self.s.accept().unwrap()
                    }
                    ServerEvent::MessageData(p) => self.got.take(&p),
                    ServerEvent::MessageRejected(e) => panic!("message rejected: {e}"),
                    _ => {}
                }
            }
        }
    }

    /// How the client hands the message over.
    pub enum Send {
        /// One `send_data` call with the whole body.
        Data(Vec<u8>),
        /// `send_data` calls of `piece` lines each, the next one only once
        /// the previous one was taken, until `lines` lines were sent.
        DataStream { lines: u64, piece: u64, next: u64 },
        /// One `BDAT ... LAST` chunk.
        Bdat(Vec<u8>),
    }

    pub struct Client {
        pub c: ClientSession,
        pub send: Send,
        pub sent: Sink,
        pub streaming: bool,
        pub done: bool,
        pub trust: Trust,
    }

    impl Client {
        pub fn new(mode: Mode, send: Send) -> Self {
            let c = ClientConfig::new("client.test", mode.policy(), client_rustls());
            Client {
                c: ClientSession::new(Arc::new(c)).unwrap(),
                send,
                sent: Sink::default(),
                streaming: false,
                done: false,
                trust: mode.trust(),
            }
        }
    }

    fn cmd(s: &'static str) -> Command {
        Command::parse(&Bytes::from_static(s.as_bytes())).unwrap()
    }

    impl End for Client {
        fn input(&mut self, d: &[u8]) {
            self.c.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.c.poll_transmit()
        }
        fn drive(&mut self) {
            while let Some(e) = self.c.poll_event().expect("client failed") {
                match e {
                    ClientEvent::Ready { trust } => {
                        assert_eq!(trust, self.trust);
                        self.c.send(cmd("MAIL FROM:<a@client.test>")).unwrap();
                    }
                    ClientEvent::Reply { to: "MAIL", .. } => {
                        self.c.send(cmd("RCPT TO:<b@mx.test>")).unwrap()
                    }
                    ClientEvent::Reply { to: "RCPT", .. } => match &self.send {
                        Send::Bdat(body) => {
                            self.sent.take(body);
                            self.c.send_chunk(body, true).unwrap();
                        }
                        _ => self.c.send(Command::Data).unwrap(),
                    },
                    ClientEvent::Reply { to: "DATA", reply } => {
                        assert_eq!(reply.code().get(), 354);
                        match &self.send {
                            Send::Data(body) => {
                                self.sent.take(body);
                                self.c.send_data(body).unwrap();
                                self.c.finish_data().unwrap();
                            }
                            Send::DataStream { .. } => self.streaming = true,
                            Send::Bdat(_) => unreachable!(),
                        }
                    }
                    ClientEvent::Reply {
                        to: "end of data" | "BDAT",
                        reply,
                    } => {
                        assert_eq!(reply.code().get(), 250);
                        self.done = true;
                        self.c.send(Command::Quit).unwrap();
                    }
                    _ => {}
                }
            }
        }
        fn refill(&mut self) -> bool {
            let Send::DataStream { lines, piece, next } = &mut self.send else {
                return false;
            };
            if !self.streaming {
                return false;
            }
            if *next >= *lines {
                self.streaming = false;
                self.c.finish_data().unwrap();
                return true;
            }
            let n = (*lines - *next).min(*piece);
            let data = super::lines(*next, n);
            *next += n;
            self.sent.take(&data);
            self.c.send_data(&data).unwrap();
            true
        }
    }
}

/// The case: implicit TLS, `MAIL`, `RCPT`, `DATA`, one `send_data`
/// of 70,000 octets. rustls takes 64 KiB at a time; the session used to hand
/// it everything with `write_all` and fail with "failed to write whole
/// buffer" after 49,248 octets had reached the server.
#[test]
fn smtp_data_of_70000_octets_in_one_call() {
    for mode in [Mode::Implicit, Mode::StartTls] {
        smtp_data(mode, 70_000);
    }
}

fn smtp_data(mode: Mode, len: usize) {
    use smtp_apps::*;
    let body = payload(len);
    let sent = digest(&body);
    let base = meter_start();
    let mut server = Server::new(mode, 256 * 1024);
    let mut client = Client::new(mode, Send::Data(body));
    let wire = run(&mut client, &mut server);
    let peak = meter_peak(base);
    assert!(
        client.done && server.ended,
        "{mode:?}: the message did not end"
    );
    assert!(client.c.is_closed() && server.s.is_closed());
    // Copies: the stuffed body staged in the client (dots add under 1%).
    check(
        &format!("SMTP DATA {len} {mode:?}"),
        sent,
        server.got.digest(),
        &wire,
        peak,
        copies(len, 1.1),
    );
}

fn smtp_bdat(mode: Mode, len: usize) {
    use smtp_apps::*;
    let body = payload(len);
    let sent = digest(&body);
    let base = meter_start();
    let mut server = Server::new(mode, 256 * 1024);
    let mut client = Client::new(mode, Send::Bdat(body));
    let wire = run(&mut client, &mut server);
    let peak = meter_peak(base);
    assert!(
        client.done && server.ended,
        "{mode:?}: the message did not end"
    );
    assert_eq!(client.sent.len, len);
    // Copies: the chunk staged in the client.
    check(
        &format!("SMTP BDAT {len} {mode:?}"),
        sent,
        server.got.digest(),
        &wire,
        peak,
        copies(len, 1.05),
    );
}

#[test]
fn smtp_data_of_1_mib_in_one_call() {
    for mode in [Mode::Implicit, Mode::StartTls] {
        smtp_data(mode, 13_108 * LINE);
    }
}

/// Without in-memory TLS (cleartext here; bring-your-own TLS after its
/// handshake takes the same path) the staged buffer is handed over whole:
/// one result, no copy beyond the one made when the body was handed in.
#[test]
fn smtp_data_of_1_mib_in_cleartext_is_handed_over_without_a_copy() {
    use smtp_apps::*;
    let len = 13_108 * LINE;
    let body = payload(len);
    let sent = digest(&body);
    let base = meter_start();
    let mut server = Server::new(Mode::Cleartext, 256 * 1024);
    let mut client = Client::new(Mode::Cleartext, Send::Data(body));
    let wire = run(&mut client, &mut server);
    let peak = meter_peak(base);
    assert!(client.done && server.ended);
    let got = server.got.digest();
    assert_eq!(got, sent);
    // The stuffed body and the terminating line in one result.
    assert!(wire.max_chunk > len, "{wire:?}");
    // The stuffed copy (its buffer grows by doubling, so up to twice the
    // body) and the server's copy of the 1 MiB read it was handed.
    assert!(peak <= copies(len, 3.5), "peak {peak}");
}

#[test]
fn smtp_bdat_chunk_of_1_mib() {
    for mode in [Mode::Implicit, Mode::StartTls] {
        smtp_bdat(mode, 13_108 * LINE);
    }
}

#[test]
fn smtp_bdat_chunk_of_100_mib_after_starttls() {
    smtp_bdat(Mode::StartTls, 100 * MIB);
}

/// 100 MiB of `DATA` handed over in 1 MiB calls as the wire takes them: the
/// memory of both sessions together stays a few windows, whatever the
/// message size.
#[test]
fn smtp_data_stream_of_100_mib_in_bounded_memory() {
    use smtp_apps::*;
    let lines = (100 * MIB / LINE) as u64;
    let piece = (MIB / LINE) as u64;
    let base = meter_start();
    let mut server = Server::new(Mode::Implicit, 256 * 1024);
    let mut client = Client::new(
        Mode::Implicit,
        Send::DataStream {
            lines,
            piece,
            next: 0,
        },
    );
    let wire = run(&mut client, &mut server);
    let peak = meter_peak(base);
    assert!(client.done && server.ended);
    let sent = std::mem::take(&mut client.sent).digest();
    assert_eq!(sent.0, 100 * MIB);
    // The piece being sent, its stuffed copy, one window each side: no
    // share of the 100 MiB itself.
    check(
        "SMTP DATA stream 100 MiB",
        sent,
        server.got.digest(),
        &wire,
        peak,
        3 * MIB,
    );
}

// ------------------------------------------------------------ POP3

mod pop3_apps {
    use super::*;
    use starttls::pop3::{
        ClientConfig, ClientEvent, ClientSession, Command, ServerConfig, ServerEvent, ServerSession,
    };

    pub struct Server {
        pub s: ServerSession,
        pub message: Vec<u8>,
    }

    impl End for Server {
        fn input(&mut self, d: &[u8]) {
            self.s.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.s.poll_transmit()
        }
        fn drive(&mut self) {
            while let Some(e) = self.s.poll_event().expect("server failed") {
                if let ServerEvent::Command(c) = e {
                    match c {
                        Command::Retr { .. } => {
                            assert_eq!(self.s.trust(), Trust::Tls);
                            self.s.reply_multiline("message follows", &self.message)
                        }
                        _ => self.s.accept(),
                    }
                    .unwrap();
                }
            }
        }
    }

    pub struct Client {
        pub c: ClientSession,
        pub script: Vec<&'static str>,
        pub got: Sink,
        pub ended: bool,
    }

    impl End for Client {
        fn input(&mut self, d: &[u8]) {
            self.c.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.c.poll_transmit()
        }
        fn drive(&mut self) {
            while let Some(e) = self.c.poll_event().expect("client failed") {
                let next = match &e {
                    ClientEvent::Ready { .. } => true,
                    ClientEvent::Reply {
                        multiline: false, ..
                    } => true,
                    ClientEvent::BodyEnd => {
                        self.ended = true;
                        true
                    }
                    ClientEvent::Body(p) => {
                        assert_eq!(p.trust, Trust::Tls);
                        self.got.take(p);
                        false
                    }
                    _ => false,
                };
                if next && !self.script.is_empty() {
                    let c = self.script.remove(0);
                    let c = Command::parse(&Bytes::from_static(c.as_bytes())).unwrap();
                    self.c.send(c).unwrap();
                }
            }
        }
    }

    pub fn retr(mode: Mode, len: usize) {
        let message = payload(len);
        let sent = digest(&message);
        let base = meter_start();
        let mut c = ServerConfig::new(ServerTls::Rustls(server_tls()));
        c.implicit_tls = mode.implicit();
        let mut server = Server {
            s: ServerSession::new(Arc::new(c)).unwrap(),
            message,
        };
        let mut client = Client {
            c: ClientSession::new(Arc::new(ClientConfig::new(mode.policy(), client_rustls())))
                .unwrap(),
            script: vec!["USER alice", "PASS secret", "RETR 1", "QUIT"],
            got: Sink::default(),
            ended: false,
        };
        let wire = run(&mut client, &mut server);
        let peak = meter_peak(base);
        assert!(client.ended && client.script.is_empty());
        assert!(client.c.is_closed() && server.s.is_closed());
        // Copies: the stuffed body staged in the server.
        check(
            &format!("POP3 RETR {len} {mode:?}"),
            sent,
            client.got.digest(),
            &wire,
            peak,
            copies(len, 1.1),
        );
    }
}

#[test]
fn pop3_retr_of_1_mib() {
    for mode in [Mode::Implicit, Mode::StartTls] {
        pop3_apps::retr(mode, 13_108 * LINE);
    }
}

#[test]
fn pop3_retr_of_100_mib_implicit_tls() {
    pop3_apps::retr(Mode::Implicit, 100 * MIB);
}

// ------------------------------------------------------------ IMAP

mod imap_apps {
    use super::*;
    use starttls::imap::{
        Arg, ClientConfig, ClientEvent, ClientSession, Command, CommandBody, Limits, Response,
        ServerConfig, ServerEvent, ServerSession,
    };

    fn limits(len: usize) -> Limits {
        let mut l = Limits::default();
        l.literal = l.literal.max(len as u64 + 1024);
        l.message = l.message.max(len + 2048);
        // The input budget must hold a whole message plus a line.
        l.buffered_input = l.buffered_input.max(l.message + l.line + 1);
        l
    }

    pub struct Server {
        pub s: ServerSession,
        pub fetch: Option<Response>,
        pub appended: Sink,
    }

    impl End for Server {
        fn input(&mut self, d: &[u8]) {
            self.s.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.s.poll_transmit()
        }
        fn drive(&mut self) {
            while let Some(e) = self.s.poll_event().expect("server failed") {
                if let ServerEvent::Command(c) = e {
                    if let CommandBody::Other { name, args } = &c.body {
                        match &name.to_ascii_uppercase()[..] {
                            b"FETCH" => {
                                let r = self.fetch.take().expect("one FETCH");
                                self.s.send_untagged(&r).unwrap();
                            }
                            b"APPEND" => {
                                assert_eq!(self.s.trust(), Trust::Tls);
                                for a in args.iter() {
                                    if let Arg::Literal { data, .. } = a {
                                        self.appended.take(&data[..]);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    self.s.accept().unwrap();
                }
            }
        }
    }

    pub struct Client {
        pub c: ClientSession,
        pub script: Vec<CommandBody>,
        pub fetched: Sink,
        pub completed: usize,
    }

    impl End for Client {
        fn input(&mut self, d: &[u8]) {
            self.c.handle_input(d)
        }
        fn transmit(&mut self) -> Option<Bytes> {
            self.c.poll_transmit()
        }
        fn drive(&mut self) {
            while let Some(e) = self.c.poll_event().expect("client failed") {
                match &e {
                    ClientEvent::Ready { .. } => {}
                    ClientEvent::Tagged { status, .. } => {
                        assert_eq!(status.trust, Trust::Tls);
                        self.completed += 1;
                    }
                    ClientEvent::Untagged(r) => {
                        if let Response::Data { args, .. } = &r.message {
                            for a in args.iter() {
                                if let Arg::List(l) = a {
                                    for x in l.iter() {
                                        if let Arg::Literal { data, .. } = x {
                                            assert_eq!(r.trust, Trust::Tls);
                                            self.fetched.take(&data);
                                        }
                                    }
                                }
                            }
                        }
                        continue;
                    }
                    _ => continue,
                }
                if !self.script.is_empty() {
                    let body = self.script.remove(0);
                    self.c.send(body).unwrap();
                }
            }
        }
    }

    fn body(text: &'static str) -> CommandBody {
        Command::parse(&Bytes::from_static(text.as_bytes()))
            .unwrap()
            .body
    }

    fn with_literal(head: &str, data: &[u8], tail: &str) -> Bytes {
        let mut v = Vec::with_capacity(head.len() + data.len() + tail.len() + 16);
        v.extend_from_slice(format!("{head}{{{}}}\r\n", data.len()).as_bytes());
        v.extend_from_slice(data);
        v.extend_from_slice(tail.as_bytes());
        Bytes::from(v)
    }

    /// `APPEND` from the client (`append`) or an untagged `FETCH` from the
    /// server, with a literal of `len` octets.
    pub fn literal(mode: Mode, len: usize, append: bool) {
        let data = payload(len);
        let sent = digest(&data);
        let (fetch, append_cmd) = if append {
            let cmd = with_literal("x APPEND INBOX (\\Seen) ", &data, "");
            (None, Some(Command::parse(&cmd).unwrap().body))
        } else {
            let r = with_literal("* 1 FETCH (BODY[] ", &data, ")");
            (Some(Response::parse(&r).unwrap()), None)
        };
        drop(data);
        let base = meter_start();
        let mut sc = ServerConfig::new(ServerTls::Rustls(server_tls()));
        sc.implicit_tls = mode.implicit();
        sc.limits = limits(len);
        let mut cc = ClientConfig::new(mode.policy(), client_rustls());
        cc.limits = limits(len);
        let mut script = vec![body("x LOGIN alice secret")];
        script.extend(append_cmd);
        if !append {
            script.push(body("x FETCH 1 (BODY[])"));
        }
        script.push(body("x LOGOUT"));
        let steps = script.len();
        let mut server = Server {
            s: ServerSession::new(Arc::new(sc)).unwrap(),
            fetch,
            appended: Sink::default(),
        };
        let mut client = Client {
            c: ClientSession::new(Arc::new(cc)).unwrap(),
            script,
            fetched: Sink::default(),
            completed: 0,
        };
        // Ready starts the script.
        client.script.insert(0, body("x NOOP"));
        let wire = run(&mut client, &mut server);
        let peak = meter_peak(base);
        assert_eq!(client.completed, steps + 1);
        assert!(client.c.is_closed() && server.s.is_closed());
        let got = if append {
            server.appended.digest()
        } else {
            client.fetched.digest()
        };
        // Copies: the serialized command or response, the staged copy of it,
        // and the whole command or response the receiver buffers before
        // parsing it (IMAP has no streamed literals).
        check(
            &format!(
                "IMAP {} {len} {mode:?}",
                if append { "APPEND" } else { "FETCH" }
            ),
            sent,
            got,
            &wire,
            peak,
            copies(len, 3.1),
        );
    }
}

#[test]
fn imap_fetch_literal_of_1_mib() {
    for mode in [Mode::Implicit, Mode::StartTls] {
        imap_apps::literal(mode, 13_108 * LINE, false);
    }
}

#[test]
fn imap_append_literal_of_1_mib() {
    for mode in [Mode::Implicit, Mode::StartTls] {
        imap_apps::literal(mode, 13_108 * LINE, true);
    }
}

#[test]
fn imap_append_literal_of_100_mib_after_starttls() {
    imap_apps::literal(Mode::StartTls, 100 * MIB, true);
}

// ------------------------------------------------------------ untaken answers

/// Feeds `line`, which the session answers itself, in reads of about 8 KiB
/// until `total` octets were fed, taking the output after each read only if
/// `drain`. Returns the octets fed, the octets of output produced, and the
/// error the session failed with, if it did.
fn flood(
    input: &mut dyn FnMut(&[u8]) -> Result<(), starttls::Error>,
    transmit: &mut dyn FnMut() -> Option<Bytes>,
    line: &[u8],
    total: usize,
    drain: bool,
) -> (usize, usize, Option<starttls::Error>) {
    let read: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * (8192 / line.len()))
        .collect();
    let (mut fed, mut out) = (0, 0);
    while fed < total {
        fed += read.len();
        if let Err(e) = input(&read) {
            while let Some(b) = transmit() {
                out += b.len();
            }
            return (fed, out, Some(e));
        }
        if drain {
            while let Some(b) = transmit() {
                out += b.len();
            }
        }
    }
    (fed, out, None)
}

/// A peer that pipelines requests the session answers itself and never
/// reads the answers, against a caller that keeps feeding input without
/// taking output: the queue of answers stops at `MAX_UNTAKEN_ANSWERS`
/// (1 MiB) with a typed error instead of growing with the input. The same
/// input with the output taken after every read goes through.
#[test]
fn answers_the_caller_does_not_take_are_bounded() {
    use starttls::smtp::{ServerConfig, ServerSession};
    use starttls::Error;
    let limit = 1024 * 1024;
    for drain in [false, true] {
        let config = Arc::new(ServerConfig::new("mx.test", ServerTls::None));
        let mut s = ServerSession::new(config).unwrap();
        let base = meter_start();
        let (fed, out, error) = {
            let s = std::cell::RefCell::new(&mut s);
            flood(
                &mut |d| {
                    let mut s = s.borrow_mut();
                    s.handle_input(d);
                    loop {
                        match s.poll_event() {
                            Ok(Some(_)) => {}
                            Ok(None) => return Ok(()),
                            Err(e) => return Err(e),
                        }
                    }
                },
                &mut || s.borrow_mut().poll_transmit(),
                b"EHLO flood.test\r\n",
                // Three times as much input as it takes to exceed the limit.
                3 * 1024 * 1024 / 8,
                drain,
            )
        };
        let peak = meter_peak(base);
        if drain {
            assert_eq!(error, None);
            assert!(out > 2 * limit, "{out} octets of answers");
            assert!(peak < 256 * 1024, "peak {peak} with the output taken");
        } else {
            assert_eq!(
                error,
                Some(Error::LimitExceeded {
                    what: "answers not taken for sending",
                    limit
                })
            );
            assert!(s.is_closed());
            // It stopped at the limit, not at the end of the input.
            assert!(fed < 3 * 1024 * 1024 / 8, "{fed} octets fed");
            assert!(out > limit && out < limit + 64 * 1024, "{out}");
            assert!(peak < 2 * limit, "peak {peak} without the output taken");
        }
    }
}
