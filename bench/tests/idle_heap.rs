//! Pins the memory figures of `docs/performance.md`: the heap an idle
//! session holds on top of its rustls connection (at most 1 KiB for every
//! role, measured the way the `session` bench reports it), and the
//! allocations an SMTP server makes to answer `EHLO` once its configuration
//! has built the reply.
//!
//! The counting allocator's counters are process-wide: the tests take turns.

use std::sync::{Arc, Mutex};

use starttls::{smtp, ServerTls};
use starttls_bench::alloc::measure;
use starttls_bench::sessions::{heap_table, setup};

#[global_allocator]
static A: starttls_bench::alloc::Counting = starttls_bench::alloc::Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn idle_sessions_hold_at_most_1_kib_on_top_of_rustls() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// Once a configuration has answered one `EHLO`, the next session's answer
/// is a copy of the cached octets into its output: no capability list, no
/// reply lines built again (that took some 30 allocations).
#[test]
fn ehlo_reply_is_built_once_per_configuration() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = smtp::ServerConfig::new("mx.localhost", ServerTls::External);
    c.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into()];
    c.insecure_auth_in_cleartext = true;
    c.extensions.size = Some(10 << 20);
    c.extensions.dsn = true;
    let config = Arc::new(c);
    let answer = |config: &Arc<smtp::ServerConfig>| {
        let mut s = smtp::ServerSession::new(Arc::clone(config)).expect("session");
        while s.poll_transmit().is_some() {}
        let (n, reply) = measure(|| {
            s.handle_input(b"EHLO client.localhost\r\n");
            let reply = s.poll_transmit().expect("EHLO reply");
            while s.poll_event().expect("events").is_some() {}
            reply
        });
        assert!(reply.starts_with(b"250-mx.localhost\r\n"));
        assert!(reply.ends_with(b"250 AUTH PLAIN LOGIN\r\n"));
        (n, reply)
    };
    let (first, reply) = answer(&config);
    let (later, again) = answer(&config);
    println!("allocations to answer EHLO: first session {first}, later sessions {later}");
    assert_eq!(reply, again);
    assert!(later <= 6, "{later} allocations to answer EHLO");
    assert!(
        first > later + 10,
        "the first EHLO builds: {first} vs {later}"
    );
}
