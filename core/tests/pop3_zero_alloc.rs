//! Checks the performance target: parsing a POP3 command, a single-line
//! response, a continuation, a listing or a capability line allocates
//! nothing, on success and on error. Needs a counting global allocator,
//! hence its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use starttls::pop3::capability::Capability;
use starttls::pop3::command::{parse_sasl_response, Command};
use starttls::pop3::response::{
    parse_continuation, parse_scan_listing, parse_stat, parse_uidl_listing, StatusLine,
};

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
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
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

fn assert_no_alloc<T>(what: &str, line: &Bytes, f: impl FnOnce(&Bytes) -> T) -> T {
    let (n, value) = allocations(|| f(line));
    assert_eq!(
        n,
        0,
        "{what} of {:?} allocated {n} times",
        String::from_utf8_lossy(line)
    );
    value
}

#[test]
fn parsing_every_command_does_not_allocate() {
    let lines: [&'static [u8]; 24] = [
        b"USER mrose",
        "USER jörg".as_bytes(),
        b"PASS my secret pass",
        b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
        b"AUTH",
        b"AUTH GSSAPI",
        b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
        b"AUTH EXTERNAL =",
        b"CAPA",
        b"STLS",
        b"STAT",
        b"LIST",
        b"LIST 2",
        b"RETR 1",
        b"DELE 1",
        b"NOOP",
        b"RSET",
        b"QUIT",
        b"TOP 1 10",
        b"UIDL",
        b"UIDL 4294967295",
        b"UTF8",
        b"LANG",
        b"lang fr",
    ];
    for line in lines {
        // A shared (not Vec-backed) Bytes: slicing it never allocates.
        let line = Bytes::from_static(line);
        let cmd = assert_no_alloc("Command::parse", &line, Command::parse);
        let cmd = cmd.unwrap();
        let (n, _) = allocations(|| (cmd.keyword(), cmd.has_multiline_reply()));
        assert_eq!(n, 0);
    }
}

#[test]
fn command_errors_do_not_allocate() {
    let lines: [&'static [u8]; 14] = [
        b"",
        b"XYZZY",
        b"ST\xc1T",
        b"STLS foo",
        b"RETR 0",
        b"RETR +1",
        b"RETR 4294967296",
        b"RETR",
        b"TOP 1",
        b"USER aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        b"APOP mrose xyz",
        b"AUTH PLAIN abc",
        b"PASS",
        b"LANG -x",
    ];
    for line in lines {
        let line = Bytes::from_static(line);
        let result = assert_no_alloc("Command::parse", &line, Command::parse);
        assert!(result.is_err());
    }
}

#[test]
fn sasl_lines_do_not_allocate() {
    for (line, valid) in [
        (&b"dGVzdAB0ZXN0AHRlc3Q="[..], true),
        (b"*", true),
        (b"", true),
        (b"not base64!", false),
    ] {
        let line = Bytes::from_static(line);
        let r = assert_no_alloc("parse_sasl_response", &line, parse_sasl_response);
        assert_eq!(r.is_ok(), valid);
    }
    for (line, valid) in [
        (&b"+ "[..], true),
        (b"+", true),
        (b"+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+i", true),
        (b"+OK", false),
        (b"+ ???", false),
    ] {
        let line = Bytes::from_static(line);
        let r = assert_no_alloc("parse_continuation", &line, parse_continuation);
        assert_eq!(r.is_ok(), valid);
    }
}

#[test]
fn parsing_single_line_responses_does_not_allocate() {
    for (line, valid) in [
        (
            &b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>"[..],
            true,
        ),
        (b"+OK", true),
        (b"+OK 2 320", true),
        (
            b"-ERR [IN-USE] Do you have another POP session running?",
            true,
        ),
        (b"-ERR [SYS/TEMP/QUOTA] over quota", true),
        (b"-ERR [AUTH] Invalid password", true),
        (b"+OK dewey POP3 server signing off (maildrop empty)", true),
        (b"-err lower case", true),
        (b"OK", false),
        (b"+OKAY", false),
        (b"-ERR a\0b", false),
    ] {
        let line = Bytes::from_static(line);
        let r = assert_no_alloc("StatusLine::parse", &line, StatusLine::parse);
        assert_eq!(r.is_ok(), valid);
        if let Ok(status) = r {
            let (n, _) = allocations(|| status.apop_timestamp());
            assert_eq!(n, 0, "apop_timestamp allocated");
        }
    }
    let text = Bytes::from_static(b"2 320");
    assert_eq!(
        assert_no_alloc("parse_stat", &text, parse_stat),
        Ok((2, 320))
    );
}

#[test]
fn listings_and_capabilities_do_not_allocate() {
    for line in [&b"1 120"[..], b"2 200 extra", b"0 1", b"x"] {
        let line = Bytes::from_static(line);
        let _ = assert_no_alloc("parse_scan_listing", &line, parse_scan_listing);
    }
    for line in [&b"1 whqtswO00WBw418f9t5JxYwZ"[..], b"1", b"1 a b"] {
        let line = Bytes::from_static(line);
        let _ = assert_no_alloc("parse_uidl_listing", &line, parse_uidl_listing);
    }
    for line in [
        &b"TOP"[..],
        b"SASL CRAM-MD5 KERBEROS_V4",
        b"LOGIN-DELAY 900 USER",
        b"EXPIRE NEVER",
        b"IMPLEMENTATION Shlemazle-Plotz-v302",
        b"UTF8 USER",
        b"X-UNKNOWN a b",
        b"",
        b"X.Y",
    ] {
        let line = Bytes::from_static(line);
        let _ = assert_no_alloc("Capability::parse", &line, Capability::parse);
    }
}

#[test]
fn lines_split_from_a_bytes_mut_do_not_allocate_either() {
    // What a framing codec does: read into a BytesMut, split a line off, freeze.
    let mut buf = bytes::BytesMut::with_capacity(256);
    buf.extend_from_slice(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nQUIT\r\n");
    let line = buf.split_to(43).freeze();
    assert_eq!(&line[..], b"APOP mrose c4c9334bac560ecc979e58001b3e22fb");
    let cmd = assert_no_alloc("Command::parse", &line, Command::parse);
    assert!(matches!(cmd, Ok(Command::Apop { .. })));
}
