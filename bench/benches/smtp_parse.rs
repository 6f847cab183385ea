//! SMTP command and reply parsing: our grammar against the physical floor (a
//! memchr CRLF split of the same bytes), smtp-proto and mailin, in the same
//! run. Before criterion starts, one pass per parser under a counting
//! allocator prints the allocations per parsed item. `bench/report.py` turns
//! criterion's estimates into the ratios that `docs/performance.md` records.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use starttls::smtp::reply::{parse_reply_line, Reply, ReplyRef};
use starttls_bench::{alloc, bytes_split, lines, memchr_split, slices};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn smtp_commands(c: &mut Criterion) {
    let (raw, count) = starttls_bench::smtp_commands();
    let buf = Bytes::from(raw.clone());
    let mut g = c.benchmark_group("smtp_commands");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("memchr_split", |b| b.iter(|| black_box(memchr_split(&raw))));
    g.bench_function("bytes_split", |b| b.iter(|| black_box(bytes_split(&buf))));
    g.bench_function("starttls", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for l in lines(&buf) {
                ok += starttls::smtp::Command::parse(&l).is_ok() as usize;
            }
            assert_eq!(ok, count);
            black_box(ok)
        })
    });
    g.bench_function("starttls_borrowed", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for l in slices(&raw) {
                ok += starttls::smtp::command::CommandRef::parse_borrowed(l).is_ok() as usize;
            }
            assert_eq!(ok, count);
            black_box(ok)
        })
    });
    g.bench_function("smtp_proto", |b| {
        b.iter(|| {
            let mut r = smtp_proto::request::receiver::RequestReceiver::default();
            let mut it = raw.iter();
            let mut seen = 0usize;
            // Every command counts, parsed or refused: stop only when the
            // input is used up.
            while !it.as_slice().is_empty() {
                match r.ingest(&mut it) {
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                    _ => seen += 1,
                }
            }
            assert_eq!(seen, count);
            black_box(seen)
        })
    });
    g.bench_function("mailin", |b| {
        b.iter(|| {
            let mut s = mailin::SessionBuilder::new("mx.test")
                .build(std::net::IpAddr::from([127, 0, 0, 1]), Accept);
            let mut ok = 0usize;
            for l in raw.split_inclusive(|&b| b == b'\n') {
                let _ = s.process(l);
                ok += 1;
            }
            black_box(ok)
        })
    });
    g.finish();
}

/// Cuts the stream into replies the way the client session does (each line
/// checked with `parse_reply_line` until the last line of a reply, then
/// `Reply::parse` of the whole reply) and returns how many it parsed.
fn our_replies(buf: &Bytes) -> usize {
    let mut replies = 0;
    let mut start = 0;
    let mut pos = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[pos..]) {
        let line = &buf[pos..pos + i.saturating_sub(1)];
        pos += i + 1;
        if parse_reply_line(line).map(|l| l.last).unwrap_or(true) {
            replies += Reply::parse(buf.slice(start..pos)).is_ok() as usize;
            start = pos;
        }
    }
    replies
}

/// The borrowed path over the same stream: each reply read once, line by
/// line, every line checked as `parse_reply_line` checks it
/// (`ReplyRef::parse_next`), no handle, no reference count. A reply that
/// fails is skipped a line at a time, as `our_replies` counts it out.
fn our_replies_borrowed(raw: &[u8]) -> usize {
    let mut replies = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        match ReplyRef::parse_next(rest) {
            Ok((reply, after)) => {
                black_box(&reply);
                replies += 1;
                rest = after;
            }
            Err(_) => match memchr::memchr(b'\n', rest) {
                Some(i) => rest = &rest[i + 1..],
                None => break,
            },
        }
    }
    replies
}

/// smtp-proto's `ResponseReceiver` over the same stream.
fn proto_replies(raw: &[u8]) -> usize {
    let mut r = smtp_proto::response::parser::ResponseReceiver::default();
    let mut it = raw.iter();
    let mut seen = 0;
    while !it.as_slice().is_empty() {
        match r.parse(&mut it) {
            Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
            Ok(_) => {
                seen += 1;
                r.reset();
            }
            Err(_) => r.reset(),
        }
    }
    seen
}

fn smtp_replies(c: &mut Criterion) {
    let (raw, count) = starttls_bench::smtp_replies();
    let buf = Bytes::from(raw.clone());
    let mut g = c.benchmark_group("smtp_replies");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("memchr_split", |b| b.iter(|| black_box(memchr_split(&raw))));
    g.bench_function("bytes_split", |b| b.iter(|| black_box(bytes_split(&buf))));
    g.bench_function("starttls", |b| {
        b.iter(|| {
            let n = our_replies(&buf);
            assert_eq!(n, count);
            black_box(n)
        })
    });
    g.bench_function("starttls_borrowed", |b| {
        b.iter(|| {
            let n = our_replies_borrowed(&raw);
            assert_eq!(n, count);
            black_box(n)
        })
    });
    g.bench_function("smtp_proto", |b| {
        b.iter(|| {
            let n = proto_replies(&raw);
            assert_eq!(n, count);
            black_box(n)
        })
    });
    g.finish();
}

/// One pass of every parser under the counting allocator: allocations per
/// parsed item, printed before the timings.
fn allocation_report() {
    let (raw, count) = starttls_bench::smtp_commands();
    let buf = Bytes::from(raw.clone());
    println!("items smtp_commands {count} bytes {}", raw.len());
    let per = |n: usize| n as f64 / count as f64;
    let (n, _) = alloc::measure(|| {
        lines(&buf)
            .filter(|l| starttls::smtp::Command::parse(l).is_ok())
            .count()
    });
    println!("alloc smtp_commands/starttls {:.2} allocs/item", per(n));
    let (n, got) = alloc::measure(|| {
        slices(&raw)
            .filter(|l| starttls::smtp::command::CommandRef::parse_borrowed(l).is_ok())
            .count()
    });
    assert_eq!(got, count);
    println!(
        "alloc smtp_commands/starttls_borrowed {:.2} allocs/item",
        per(n)
    );
    let (n, _) = alloc::measure(|| {
        let mut r = smtp_proto::request::receiver::RequestReceiver::default();
        let mut it = raw.iter();
        while !it.as_slice().is_empty() {
            if let Err(smtp_proto::Error::NeedsMoreData { .. }) = r.ingest(&mut it) {
                break;
            }
        }
    });
    println!("alloc smtp_commands/smtp_proto {:.2} allocs/item", per(n));
    let (n, _) = alloc::measure(|| {
        let mut s = mailin::SessionBuilder::new("mx.test")
            .build(std::net::IpAddr::from([127, 0, 0, 1]), Accept);
        for l in raw.split_inclusive(|&b| b == b'\n') {
            let _ = s.process(l);
        }
    });
    println!("alloc smtp_commands/mailin {:.2} allocs/item", per(n));

    let (raw, count) = starttls_bench::smtp_replies();
    let buf = Bytes::from(raw.clone());
    println!("items smtp_replies {count} bytes {}", raw.len());
    let per = |n: usize| n as f64 / count as f64;
    let (n, got) = alloc::measure(|| our_replies(&buf));
    assert_eq!(got, count);
    println!("alloc smtp_replies/starttls {:.2} allocs/item", per(n));
    let (n, got) = alloc::measure(|| our_replies_borrowed(&raw));
    assert_eq!(got, count);
    println!(
        "alloc smtp_replies/starttls_borrowed {:.2} allocs/item",
        per(n)
    );
    let (n, got) = alloc::measure(|| proto_replies(&raw));
    assert_eq!(got, count);
    println!("alloc smtp_replies/smtp_proto {:.2} allocs/item", per(n));
}

#[derive(Clone)]
struct Accept;
impl mailin::Handler for Accept {}

criterion_group!(benches, smtp_commands, smtp_replies);

fn main() {
    allocation_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
