//! Driver for instruction counts (callgrind/cachegrind) of the SMTP command
//! parsers over the `smtp_commands` bench stream: `smtp_cmd_count <mode>
//! [rounds]` with mode `none` (stream only: the baseline to subtract),
//! `owned`, `borrowed` or `proto`.

use std::hint::black_box;

use bytes::Bytes;
use starttls_bench::{lines, slices};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let (raw, count) = starttls_bench::smtp_commands();
    let buf = Bytes::from(raw.clone());
    let mut total = 0usize;
    for _ in 0..rounds {
        total += match mode.as_str() {
            "owned" => lines(&buf)
                .filter(|l| starttls::smtp::Command::parse(l).is_ok())
                .count(),
            "borrowed" => slices(&raw)
                .filter(|l| starttls::smtp::command::CommandRef::parse_borrowed(l).is_ok())
                .count(),
            "proto" => {
                let mut r = smtp_proto::request::receiver::RequestReceiver::default();
                let mut it = raw.iter();
                let mut seen = 0usize;
                while !it.as_slice().is_empty() {
                    match r.ingest(&mut it) {
                        Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                        _ => seen += 1,
                    }
                }
                seen
            }
            _ => count,
        };
    }
    assert_eq!(black_box(total), count * rounds);
    println!("{mode}: {count} commands x {rounds}");
}
