//! Checks the performance target: parsing a command (and a reply) allocates
//! nothing. Needs a counting global allocator, hence its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use starttls::smtp::{Command, Reply};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    (ALLOCATIONS.with(Cell::get) - before, value)
}

#[test]
fn parsing_commands_does_not_allocate() {
    let lines: [&'static [u8]; 14] = [
        b"EHLO client.example.org",
        b"HELO [192.0.2.1]",
        b"LHLO [IPv6:2001:db8::1]",
        b"MAIL FROM:<\"quoted\\\"local\"@example.com> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2B AUTH=<> REQUIRETLS X-FOO=bar",
        b"RCPT TO:<@a.example,@b.example:user@c.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40c.example",
        "MAIL FROM:<用户@例子.广告> SMTPUTF8".as_bytes(),
        b"RCPT TO:<Postmaster>",
        b"BDAT 1000 LAST",
        b"AUTH PLAIN AGZvbwBiYXI=",
        b"VRFY <user@example.com>",
        b"NOOP hello",
        b"HELP",
        b"QUIT",
        b"STARTTLS",
    ];
    for line in lines {
        // A shared (not Vec-backed) Bytes: slicing it never allocates.
        let line = Bytes::from_static(line);
        let (n, parsed) = allocations(|| Command::parse(&line));
        let cmd = parsed.unwrap();
        assert_eq!(
            n,
            0,
            "{:?} allocated {n} times",
            String::from_utf8_lossy(&line)
        );
        if let Command::Mail { params, .. } | Command::Rcpt { params, .. } = &cmd {
            let (n, count) = allocations(|| params.iter().count());
            assert_eq!(count == 0, params.is_empty());
            assert_eq!(n, 0, "iterating parameters allocated");
        }
        // Errors do not allocate either.
        let bad = Bytes::from_static(b"MAIL FROM:<a@b> SIZE=1 SIZE=2");
        let (n, _) = allocations(|| Command::parse(&bad));
        assert_eq!(n, 0);
    }
}

#[test]
fn parsing_replies_does_not_allocate() {
    for raw in [
        &b"250 2.1.0 Ok\r\n"[..],
        b"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
    ] {
        let raw = Bytes::from_static(raw);
        let (n, reply) = allocations(|| Reply::parse(raw.clone()));
        let reply = reply.unwrap();
        assert_eq!(n, 0);
        let (n, _) = allocations(|| reply.text().count() + reply.lines().count());
        assert_eq!(n, 0);
    }
}

#[test]
fn lines_split_from_a_bytes_mut_do_not_allocate_either() {
    // What a framing codec does: read into a BytesMut, split a line off, freeze.
    let mut buf = bytes::BytesMut::with_capacity(256);
    buf.extend_from_slice(b"MAIL FROM:<a@b.example> SIZE=10\r\nQUIT\r\n");
    let line = buf.split_to(31).freeze();
    assert_eq!(&line[..], b"MAIL FROM:<a@b.example> SIZE=10");
    let (n, parsed) = allocations(|| Command::parse(&line));
    parsed.unwrap();
    assert_eq!(n, 0);
}
