//! The transcript suite under `cargo test`: every case passes with every
//! split, and every assertion in every case is load-bearing.

use std::path::Path;

use starttls_conformance::transcript::{self, Split};

fn cases() -> Vec<transcript::Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    transcript::load(&dir).expect("cases parse")
}

#[test]
fn every_case_passes_with_every_split() {
    let cases = cases();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for c in &cases {
        let v = transcript::check(c);
        if let Some((split, f)) = v.failure {
            failures.push(format!("{}: {split:?}: {f}", c.path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_assertion_is_load_bearing() {
    let mut slack = Vec::new();
    for c in cases() {
        for line in c.assertions() {
            if transcript::play(&c.without(line), Split::Whole).is_ok() {
                slack.push(format!("{}: line {line}", c.path.display()));
            }
        }
    }
    assert!(
        slack.is_empty(),
        "removing these steps does not fail their case:\n{}",
        slack.join("\n")
    );
}

#[test]
fn the_format_rejects_mistakes() {
    let p = Path::new("x/clean/a.case");
    assert!(
        transcript::parse(p, "protocol: smtp\nrole: server\nclass: clean\n---\n").is_err(),
        "missing summary"
    );
    assert!(transcript::parse(
        p,
        "summary: s\nprotocol: ftp\nrole: server\nclass: clean\n---\n"
    )
    .is_err());
    assert!(
        transcript::parse(
            p,
            "summary: s\nprotocol: smtp\nrole: server\nclass: other\n---\n"
        )
        .is_err(),
        "class must match the folder"
    );
    assert!(transcript::parse(
        p,
        "summary: s\nprotocol: smtp\nrole: server\nclass: clean\n---\nfrobnicate\n"
    )
    .is_err());
    assert!(transcript::parse(
        p,
        "summary: s\nprotocol: smtp\nrole: server\nclass: clean\n---\npeer \\q\n"
    )
    .is_err());
    assert_eq!(
        transcript::unescape("a\\r\\n\\x41\\\\").unwrap(),
        b"a\r\nA\\"
    );
}
