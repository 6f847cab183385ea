//! An idle connection costs its session and little else: the driver holds
//! no read buffer between reads (a server with 10,000 idle connections
//! would otherwise hold 10,000 of them).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use common::*;
use starttls_io::tokio::Driver;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method defers to `System` with the caller's arguments; the
// counter does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// What the driver adds to an idle session: its state and the timer, never
/// a 16 KiB read buffer.
#[test]
fn an_idle_driver_holds_no_read_buffer() {
    const N: usize = 64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut pairs = Vec::new();
        for _ in 0..N {
            let client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            pairs.push((client, server, imap_server(server_tls())));
        }
        let before = LIVE.load(Relaxed);
        let mut drivers = Vec::new();
        for (client, server, session) in pairs {
            let mut d = Driver::new(session, server);
            // The greeting goes out, then the driver waits for a command
            // (`next_event` is cancel-safe: the timeout drops it there).
            let waited = tokio::time::timeout(Duration::from_millis(20), d.next_event()).await;
            assert!(waited.is_err(), "an idle client sends nothing");
            drivers.push((client, d));
        }
        let per = (LIVE.load(Relaxed) - before) / N as isize;
        assert!(
            per < 1024,
            "each idle driver holds {per} heap bytes beyond its session"
        );
        // The greetings did go out.
        for (client, _) in &mut drivers {
            let mut b = [0u8; 4];
            client.read_exact(&mut b).await.expect("greeting");
            assert_eq!(&b, b"* OK");
        }
    });
}
