//! A complete STARTTLS session in memory, both roles being our sessions
//! (SMTP, IMAP, POP3), against a bare rustls handshake in memory with the
//! very same `ClientConfig`/`ServerConfig`, in the same run.
//!
//! ```text
//! cargo bench -p starttls-bench --bench session
//! ```
//!
//! Instruction counts of one kind, which a loaded machine does not distort
//! (compare a kind with `rustls_handshake`, each run the same number of times):
//!
//! ```text
//! cargo bench -p starttls-bench --bench session --no-run   # prints the binary
//! SESSION_RUN=smtp_starttls:200 valgrind --tool=callgrind target/release/deps/session-<hash>
//! ```
//!
//! Before criterion runs, it prints:
//! * `heap ...`: heap bytes held per idle session (cleartext, after TLS) and
//!   `size_of` the session, beside a bare rustls connection after its
//!   handshake, and what we hold on top of rustls;
//! * `allocations per complete session`;
//! * `ratio ...`: each session's rate over the bare handshake rate, from
//!   interleaved, individually timed sessions, which other processes' load
//!   disturbs much less than criterion's consecutive runs (`--bench` only).
//!
//! The driver (PKI, configurations, the pump, the heap table) is
//! `starttls_bench::sessions`, shared with `tests/idle_heap.rs`.
//!
//! A session is: SMTP greeting, EHLO, STARTTLS, handshake, EHLO, QUIT; IMAP
//! greeting (with its `[CAPABILITY ...]`, so our client asks no CAPABILITY in
//! cleartext), STARTTLS, handshake, CAPABILITY, LOGOUT; POP3 greeting, CAPA,
//! STLS, handshake, CAPA, QUIT. Every iteration checks that both sides
//! reached TLS and that the last reply came over TLS.
//!
//! One throwaway PKI (rcgen, ECDSA P-256) and one pair of rustls
//! configurations (default *ring* provider, TLS 1.3) serve every benchmark.
//! The client does not resume (`Resumption::disabled()`), so every iteration
//! is a full handshake; the server keeps its defaults, so it sends its two
//! TLS 1.3 tickets after each handshake, in both the bare and the session
//! runs.

use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use starttls_bench::alloc::measure;
use starttls_bench::sessions::{
    heap_table, imap_pair, pop3_pair, rustls_session, session, setup, smtp_pair, Setup, N,
};

#[global_allocator]
static A: starttls_bench::alloc::Counting = starttls_bench::alloc::Counting;

fn heap_report(t: &Setup) {
    println!("heap per idle session, bytes, mean of {N} (inline = size_of the struct):");
    for r in heap_table(t) {
        println!(
            "heap {} cleartext_idle={} tls_idle={} inline={} | rustls {} tls_idle={} inline={} | on top of rustls: {:+} (target <= 1024)",
            r.name,
            r.ours.cleartext,
            r.ours.tls,
            r.ours.inline,
            r.rustls_name(),
            r.rustls.tls,
            r.rustls.inline,
            r.on_top_of_rustls()
        );
    }
    let allocs: Vec<String> = KINDS
        .iter()
        .map(|(name, run)| {
            let (n, ()) = measure(|| (0..N).for_each(|_| run(t)));
            format!("{name}={}", n / N)
        })
        .collect();
    println!(
        "allocations per complete session, both sides: {}",
        allocs.join(" ")
    );
}

// ---------------------------------------------------------------------------

type Run = fn(&Setup);

/// What is timed, by criterion name: the baseline first.
const KINDS: [(&str, Run); 4] = [
    ("rustls_handshake", rustls_session),
    ("smtp_starttls", |t| session(smtp_pair(t))),
    ("imap_starttls", |t| session(imap_pair(t))),
    ("pop3_starttls", |t| session(pop3_pair(t))),
];

/// The ratios criterion's figures give, measured to resist load from other
/// processes: the kinds alternate in short rounds, every session is timed on
/// its own, and the ratio is taken between low quantiles (a session that was
/// preempted only ever looks slower).
fn paired_ratios(t: &Setup) {
    const ROUNDS: usize = 50;
    const BATCH: usize = 4;
    let mut times = vec![Vec::with_capacity(ROUNDS * BATCH); KINDS.len()];
    for round in 0..ROUNDS {
        for k in (0..KINDS.len()).map(|i| (i + round) % KINDS.len()) {
            for _ in 0..BATCH {
                let start = Instant::now();
                (KINDS[k].1)(t);
                times[k].push(start.elapsed().as_secs_f64());
            }
        }
    }
    let quantile = |v: &[f64], q: usize| v[v.len() * q / 100];
    for v in &mut times {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "rate / rustls_handshake rate, {} interleaved sessions each, at the 10th, 25th and 50th \
         percentile of the time per session (target >= 0.97, issue #14):",
        ROUNDS * BATCH
    );
    for ((name, _), v) in KINDS.iter().zip(&times).skip(1) {
        let r = |q| quantile(&times[0], q) / quantile(v, q);
        println!(
            "ratio {name} {:.3} {:.3} {:.3} ({:.0} us vs {:.0} us at the 10th)",
            r(10),
            r(25),
            r(50),
            quantile(v, 10) * 1e6,
            quantile(&times[0], 10) * 1e6
        );
    }
}

fn sessions(c: &mut Criterion) {
    let t = setup();
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    for (name, run) in KINDS {
        g.bench_function(name, |b| b.iter(|| run(t)));
    }
    g.finish();
}

criterion_group!(benches, sessions);

fn main() {
    // `SESSION_RUN=smtp_starttls:200`: only run that kind that many times,
    // nothing else (for `valgrind --tool=callgrind`, whose instruction
    // counts a loaded machine does not distort).
    if let Ok(run) = std::env::var("SESSION_RUN") {
        let (name, n) = run.split_once(':').unwrap_or((&run, "100"));
        let n: usize = n.parse().expect("SESSION_RUN=kind:count");
        let (_, kind) = KINDS.iter().find(|(k, _)| *k == name).expect(
            "SESSION_RUN kind: rustls_handshake, smtp_starttls, imap_starttls, pop3_starttls",
        );
        let t = setup();
        (0..n).for_each(|_| kind(t));
        return;
    }
    heap_report(setup());
    // Not in `cargo test --benches` runs, which only check that each runs.
    if std::env::args().any(|a| a == "--bench") {
        paired_ratios(setup());
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
