//! Pins the heap an idle session holds on top of its rustls connection
//! (`docs/performance.md`, "Heap per idle session"): at most 1 KiB for every
//! role, measured the way the `session` bench reports it.
//!
//! One test in this binary, so that nothing else allocates while it counts.

use starttls_bench::sessions::{heap_table, setup};

#[global_allocator]
static A: starttls_bench::alloc::Counting = starttls_bench::alloc::Counting;

#[test]
fn idle_sessions_hold_at_most_1_kib_on_top_of_rustls() {
    let rows = heap_table(setup());
    let mut over = Vec::new();
    for r in &rows {
        println!(
            "{}: cleartext idle {} B, TLS idle {} B + {} B inline; rustls {} {} B + {} B; on top: {:+} B",
            r.name,
            r.ours.cleartext,
            r.ours.tls,
            r.ours.inline,
            r.rustls_name(),
            r.rustls.tls,
            r.rustls.inline,
            r.on_top_of_rustls()
        );
        if r.on_top_of_rustls() > 1024 {
            over.push((r.name, r.on_top_of_rustls()));
        }
    }
    assert_eq!(rows.len(), 6);
    assert!(over.is_empty(), "over 1 KiB on top of rustls: {over:?}");
}
