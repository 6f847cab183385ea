//! SMTP command parsing: our grammar against the physical floor (a memchr
//! CRLF split of the same bytes), smtp-proto and mailin, in the same run.
//! Compare the throughputs criterion prints; `docs/performance.md` records
//! the ratios.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn lines(buf: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let i = memchr::memchr(b'\n', &buf[pos..])?;
        let line = buf.slice(pos..pos + i.saturating_sub(1));
        pos += i + 1;
        Some(line)
    })
}

fn smtp_commands(c: &mut Criterion) {
    let (raw, count) = starttls_bench::smtp_commands();
    let buf = Bytes::from(raw.clone());
    let mut g = c.benchmark_group("smtp_commands");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("memchr_split", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in lines(&buf) {
                n += l.len();
            }
            black_box(n)
        })
    });
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

#[derive(Clone)]
struct Accept;
impl mailin::Handler for Accept {}

criterion_group!(benches, smtp_commands);
criterion_main!(benches);
