//! POP3 parsing: our command grammar and our response grammar (status lines,
//! scan and unique-id listings) against the physical floor, a memchr CRLF
//! split of the same bytes, in the same run. No Rust POP3 parser exists to
//! compare with (see `../shared/perf-baselines.md`).
//!
//! The response stream also carries dot-stuffed RETR bodies. The sessions
//! unstuff them inside the engine (not a public API), so here every body
//! line gets the same treatment by hand: the terminator check and the
//! removal of a stuffed dot, which is all the engine does per line.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use starttls::pop3::command::Command;
use starttls::pop3::response::{
    parse_scan_listing, parse_scan_listing_borrowed, parse_uidl_listing,
    parse_uidl_listing_borrowed, StatusLine,
};
use starttls_bench::{alloc, bytes_split, lines, memchr_split, slices};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[inline(never)]
fn parse_commands(buf: &Bytes) -> usize {
    lines(buf).filter(|l| Command::parse(l).is_ok()).count()
}

/// The borrowed path: each line a sub-slice, each command a `CommandRef`.
#[inline(never)]
fn parse_commands_borrowed(raw: &[u8]) -> usize {
    slices(raw)
        .filter(|l| Command::parse_borrowed(l).is_ok())
        .count()
}

/// What the next lines are, in the order `pop3_responses` writes them.
#[derive(Clone, Copy)]
enum Next {
    Status,
    Scan,
    Uidl,
    Body,
}

/// Per session: greeting, LIST (+OK then a scan listing), UIDL, two RETRs,
/// QUIT: after each status line, what follows it.
const SCRIPT: [Option<Next>; 6] = [
    None,
    Some(Next::Scan),
    Some(Next::Uidl),
    Some(Next::Body),
    Some(Next::Body),
    None,
];

/// Counts of what was parsed: status, scan, uidl, body lines.
#[inline(never)]
fn parse_responses(buf: &Bytes) -> [usize; 4] {
    let mut counts = [0usize; 4];
    let mut next = Next::Status;
    let mut step = 0;
    for line in lines(buf) {
        match next {
            Next::Status => {
                if StatusLine::parse(&line).is_ok() {
                    counts[0] += 1;
                }
                next = SCRIPT[step % SCRIPT.len()].unwrap_or(Next::Status);
                step += 1;
            }
            multi => {
                if &line[..] == b"." {
                    next = Next::Status;
                    continue;
                }
                match multi {
                    Next::Scan => counts[1] += parse_scan_listing(&line).is_ok() as usize,
                    Next::Uidl => counts[2] += parse_uidl_listing(&line).is_ok() as usize,
                    _ => {
                        let body = line.strip_prefix(b".").unwrap_or(&line);
                        counts[3] += 1;
                        black_box(body);
                    }
                }
            }
        }
    }
    counts
}

/// [`parse_responses`] on the borrowed path: the same script over
/// sub-slices, with the `_borrowed` parsers.
#[inline(never)]
fn parse_responses_borrowed(raw: &[u8]) -> [usize; 4] {
    let mut counts = [0usize; 4];
    let mut next = Next::Status;
    let mut step = 0;
    for line in slices(raw) {
        match next {
            Next::Status => {
                if StatusLine::parse_borrowed(line).is_ok() {
                    counts[0] += 1;
                }
                next = SCRIPT[step % SCRIPT.len()].unwrap_or(Next::Status);
                step += 1;
            }
            multi => {
                if line == b"." {
                    next = Next::Status;
                    continue;
                }
                match multi {
                    Next::Scan => counts[1] += parse_scan_listing_borrowed(line).is_ok() as usize,
                    Next::Uidl => counts[2] += parse_uidl_listing_borrowed(line).is_ok() as usize,
                    _ => {
                        let body = line.strip_prefix(b".").unwrap_or(line);
                        counts[3] += 1;
                        black_box(body);
                    }
                }
            }
        }
    }
    counts
}

fn pop3(c: &mut Criterion) {
    let (raw, count) = starttls_bench::pop3_commands();
    let buf = Bytes::from(raw.clone());
    let mut g = c.benchmark_group("pop3_commands");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("memchr_split", |b| b.iter(|| black_box(memchr_split(&raw))));
    g.bench_function("bytes_split", |b| b.iter(|| black_box(bytes_split(&buf))));
    g.bench_function("starttls", |b| {
        b.iter(|| {
            let n = parse_commands(&buf);
            assert_eq!(n, count);
            black_box(n)
        })
    });
    g.bench_function("starttls_borrowed", |b| {
        b.iter(|| {
            let n = parse_commands_borrowed(&raw);
            assert_eq!(n, count);
            black_box(n)
        })
    });
    g.finish();

    let r = starttls_bench::pop3_responses();
    let expect = [r.status_lines, r.scan_lines, r.uidl_lines, r.body_lines];
    let buf = Bytes::from(r.bytes.clone());
    let mut g = c.benchmark_group("pop3_responses");
    g.throughput(Throughput::Bytes(r.bytes.len() as u64));
    g.bench_function("memchr_split", |b| {
        b.iter(|| black_box(memchr_split(&r.bytes)))
    });
    g.bench_function("bytes_split", |b| b.iter(|| black_box(bytes_split(&buf))));
    g.bench_function("starttls", |b| {
        b.iter(|| {
            let got = parse_responses(&buf);
            assert_eq!(got, expect);
            black_box(got)
        })
    });
    g.bench_function("starttls_borrowed", |b| {
        b.iter(|| {
            let got = parse_responses_borrowed(&r.bytes);
            assert_eq!(got, expect);
            black_box(got)
        })
    });
    g.finish();
}

/// Items, bytes and allocations per parsed item, printed before the timings.
fn allocation_report() {
    let (raw, count) = starttls_bench::pop3_commands();
    let buf = Bytes::from(raw.clone());
    println!("items pop3_commands {count} bytes {}", raw.len());
    let (n, got) = alloc::measure(|| parse_commands(&buf));
    assert_eq!(got, count);
    println!(
        "alloc pop3_commands/starttls {:.2} allocs/item",
        n as f64 / count as f64
    );
    let (n, got) = alloc::measure(|| parse_commands_borrowed(&raw));
    assert_eq!(got, count);
    println!(
        "alloc pop3_commands/starttls_borrowed {:.2} allocs/item",
        n as f64 / count as f64
    );
    let r = starttls_bench::pop3_responses();
    let lines = r.status_lines + r.scan_lines + r.uidl_lines + r.body_lines;
    let buf = Bytes::from(r.bytes.clone());
    println!(
        "items pop3_responses {lines} lines ({} status, {} scan, {} uidl, {} body) bytes {}",
        r.status_lines,
        r.scan_lines,
        r.uidl_lines,
        r.body_lines,
        r.bytes.len()
    );
    let (n, _) = alloc::measure(|| parse_responses(&buf));
    println!(
        "alloc pop3_responses/starttls {:.2} allocs/item",
        n as f64 / lines as f64
    );
    let expect = [r.status_lines, r.scan_lines, r.uidl_lines, r.body_lines];
    let (n, got) = alloc::measure(|| parse_responses_borrowed(&r.bytes));
    assert_eq!(got, expect);
    println!(
        "alloc pop3_responses/starttls_borrowed {:.2} allocs/item",
        n as f64 / lines as f64
    );
}

criterion_group!(benches, pop3);

fn main() {
    allocation_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
