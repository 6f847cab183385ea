//! Checks the performance target: parsing typed IMAP commands, generic
//! commands and status responses allocates nothing. Needs a counting global
//! allocator, hence its own test binary (the only place with `unsafe`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use starttls::imap::command::{Command, CommandBody};
use starttls::imap::response::Response;
use starttls::imap::SyntaxError;

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
    let messages: [&'static [u8]; 16] = [
        b"a001 CAPABILITY",
        b"a002 STARTTLS",
        b"a003 NOOP",
        b"a004 LOGOUT",
        b"a005 IDLE",
        b"A001 LOGIN SMITH SESAME",
        b"A002 LOGIN \"fred \\\"the\\\" smith\" {6+}\r\nse)\r\nt",
        b"a AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjI=",
        b"a ID (\"name\" \"sodr\" \"vendor\" NIL)",
        b"a ENABLE CONDSTORE UTF8=ACCEPT",
        b"a1 FETCH 1:* (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
        b"A142 SELECT INBOX",
        b"a UID STORE 1:5 +FLAGS.SILENT (\\Seen \\Deleted)",
        b"A282 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX",
        b"A003 APPEND saved-messages (\\Seen) ~{9}\r\nSTARTTLS\n",
        b"a LIST \"\" *",
    ];
    for message in messages {
        // A static (not Vec-backed) Bytes: slicing it never allocates.
        let message = Bytes::from_static(message);
        let (n, parsed) = allocations(|| Command::parse(&message));
        let cmd = parsed.unwrap();
        assert_eq!(
            n,
            0,
            "{:?} allocated {n} times",
            String::from_utf8_lossy(&message)
        );
        if let CommandBody::Other { args, .. } = &cmd.body {
            let (n, count) = allocations(|| args.iter().count());
            assert!(count > 0);
            assert_eq!(n, 0, "iterating arguments allocated");
        }
    }
    // Errors do not allocate either, including a literal that claims more
    // octets than the message holds.
    for bad in [
        &b"a APPEND INBOX {4294967295}\r\nabc"[..],
        b"a LOGIN {10}\r\nabc",
        b"a FETCH 1 (FLAGS",
        b"a NOOP x",
        b"+ NOOP",
    ] {
        let bad = Bytes::from_static(bad);
        let (n, parsed) = allocations(|| Command::parse(&bad));
        assert!(parsed.is_err());
        assert_eq!(n, 0, "{:?} allocated", String::from_utf8_lossy(&bad));
    }
    let claim = Bytes::from_static(b"a APPEND INBOX {4294967295}\r\nabc");
    assert!(matches!(
        Command::parse(&claim),
        Err(SyntaxError::Literal { .. })
    ));
}

#[test]
fn parsing_status_responses_does_not_allocate() {
    let messages: [&'static [u8]; 12] = [
        b"* OK [CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED] Server ready",
        b"* PREAUTH IMAP4rev2 server logged in as Smith",
        b"* BYE Autologout; idle for too long",
        b"a001 OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] done",
        b"a002 NO [AUTHENTICATIONFAILED] Authentication failed",
        b"a003 BAD command unknown",
        b"* OK [UIDNEXT 4392] Predicted next UID",
        b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited",
        b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED",
        b"+ Ready for additional command text",
        b"* 12 FETCH (FLAGS (\\Seen) BODY[] {5}\r\nhello)",
        b"* LIST () \"/\" INBOX",
    ];
    for message in messages {
        let message = Bytes::from_static(message);
        let (n, parsed) = allocations(|| Response::parse(&message));
        parsed.unwrap();
        assert_eq!(
            n,
            0,
            "{:?} allocated {n} times",
            String::from_utf8_lossy(&message)
        );
    }
    let bad = Bytes::from_static(b"* 12 FETCH (BODY[] {50}\r\nhello)");
    let (n, parsed) = allocations(|| Response::parse(&bad));
    assert!(matches!(parsed, Err(SyntaxError::Literal { .. })));
    assert_eq!(n, 0);
}
