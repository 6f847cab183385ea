//! The fuzz targets' checks as ordinary tests: every file in the committed
//! seed corpus (`fuzz/seeds/<target>/`) and every saved crash
//! (`fuzz/regressions/<target>/`) goes through its target's check, plus a
//! deterministic pseudo-random run so the checks are exercised on stable
//! without libFuzzer.

use std::path::Path;

use starttls_fuzz_logic::TARGETS;

fn replay(dir: &Path, check: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).expect("readable corpus file");
        let path = e.path();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{} fails its check", path.display());
        n += 1;
    }
    n
}

#[test]
fn seed_corpus_and_regressions_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut total = 0;
    for (name, check) in TARGETS {
        total += replay(&root.join("seeds").join(name), *check);
        total += replay(&root.join("regressions").join(name), *check);
    }
    assert!(
        total > 0,
        "no corpus: run `cargo run -p starttls-fuzz-logic --bin export-seeds`"
    );
}

#[test]
fn pseudo_random_inputs_pass_every_check() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet: &[u8] = b"EHLO MAIL FROM:<a@b> RCPT STARTTLS STLS CAPA a1 LOGIN {5}\r\n+OK -ERR * OK [ ] ( ) . \r\n\0\xff";
    for (_, check) in TARGETS {
        for _ in 0..300 {
            let len = (next() % 200) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % 3 == 0 {
                        next() as u8
                    } else {
                        alphabet[(next() % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            check(&data);
        }
    }
}

#[test]
fn client_taint_checks_reach_the_upgrade() {
    // Empty noise and nothing after the positive answer: a clean negotiation.
    // The client-role taint runs must upgrade on it, or they check nothing.
    assert_eq!(
        starttls_fuzz_logic::sessions::client_taint_reaches_upgrade(&[]),
        [true; 3]
    );
    // (That a client never upgrades when bytes follow the positive answer is
    // asserted inside the check itself, on every fuzzer input.)
}
