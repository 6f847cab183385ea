//! The policy vectors under `cargo test`: every vector passes, every
//! expectation is load-bearing (a wrong outcome fails), and the format
//! refuses mistakes.

use std::collections::BTreeMap;
use std::path::Path;

use starttls_conformance::policy::{self, Vector};

fn vectors() -> Vec<Vector> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/policy");
    policy::load(&dir).expect("vectors parse")
}

#[test]
fn every_vector_passes() {
    let vectors = vectors();
    assert!(!vectors.is_empty());
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|v| {
            policy::check(v)
                .err()
                .map(|e| format!("{}:{} {}: {e}", v.path.display(), v.line, v.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn every_module_and_check_has_vectors() {
    let vectors = vectors();
    let mut modules: BTreeMap<String, usize> = BTreeMap::new();
    for v in &vectors {
        *modules.entry(v.module()).or_default() += 1;
    }
    for module in ["mta-sts", "tlsrpt", "dane", "identity", "memory"] {
        assert!(
            modules.get(module).copied().unwrap_or(0) >= 5,
            "too few {module} vectors: {modules:?}"
        );
    }
    for check in policy::CHECKS {
        assert!(
            vectors.iter().any(|v| v.check == *check),
            "no vector runs check {check}"
        );
    }
}

/// A wrong expectation must fail: the runner compares with what the library
/// computes, it does not pass vectors by themselves.
#[test]
fn a_wrong_outcome_fails_every_vector() {
    let mut slack = Vec::new();
    for v in vectors() {
        let wrong = if v.expect.starts_with("error ") {
            "accept".to_owned()
        } else {
            format!("error {}", v.expect)
        };
        if policy::check(&v.expecting(&wrong)).is_ok() {
            slack.push(format!("{}: {}", v.name, wrong));
        }
        // A one-character change of the expectation fails too.
        let mut near = v.expect.clone();
        near.push('x');
        if policy::check(&v.expecting(&near)).is_ok() {
            slack.push(format!("{}: {}", v.name, near));
        }
    }
    assert!(
        slack.is_empty(),
        "wrong outcomes passed:\n{}",
        slack.join("\n")
    );
}

/// Outcomes depend on the inputs: swapping the expectations of two vectors
/// of the same check that expect different outcomes fails both.
#[test]
fn outcomes_follow_the_inputs() {
    let vectors = vectors();
    let mut by_check: BTreeMap<&str, Vec<&Vector>> = BTreeMap::new();
    for v in &vectors {
        by_check.entry(v.check.as_str()).or_default().push(v);
    }
    let mut swapped = 0;
    let mut slack = Vec::new();
    for group in by_check.values() {
        for pair in group.windows(2) {
            let [a, b] = pair else { continue };
            if a.expect == b.expect {
                continue;
            }
            swapped += 1;
            if policy::check(&a.expecting(&b.expect)).is_ok() {
                slack.push(format!("{} passes with {}'s outcome", a.name, b.name));
            }
            if policy::check(&b.expecting(&a.expect)).is_ok() {
                slack.push(format!("{} passes with {}'s outcome", b.name, a.name));
            }
        }
    }
    assert!(swapped > 50, "only {swapped} pairs swapped");
    assert!(slack.is_empty(), "{}", slack.join("\n"));
}

#[test]
fn the_format_rejects_mistakes() {
    let p = Path::new("x/mta-sts.vectors");
    let ok = "vector: a\nrule: RFC 8461 §4.1 — x\ncheck: mx-pattern\npattern: a.example\nhost: a.example\nexpect: match\n";
    let parsed = policy::parse(p, ok).expect("a valid vector");
    assert_eq!(parsed.len(), 1);
    assert_eq!(policy::check(&parsed[0]), Ok(()));
    assert!(
        policy::parse(p, &ok.replace("rule: RFC 8461 §4.1 — x\n", "")).is_err(),
        "rule is required"
    );
    assert!(
        policy::parse(p, &ok.replace("RFC 8461", "the spec")).is_err(),
        "rule cites an RFC"
    );
    assert!(
        policy::parse(p, &ok.replace("mx-pattern", "frobnicate")).is_err(),
        "unknown check"
    );
    assert!(
        policy::parse(p, &ok.replace("expect: match\n", "")).is_err(),
        "expect is required"
    );
    assert!(
        policy::parse(p, &format!("{ok}{ok}")).is_err(),
        "names are unique"
    );
    assert!(
        policy::parse(p, "pattern: a\n").is_err(),
        "keys before a vector"
    );
    let typo = policy::parse(p, &ok.replace("host:", "hots:")).expect("parses");
    assert!(
        policy::check(&typo[0]).is_err(),
        "a key the check does not read"
    );
    let twice =
        policy::parse(p, &ok.replace("host: a.example\n", "host: a\nhost: b\n")).expect("parses");
    assert!(
        policy::check(&twice[0]).is_err(),
        "a single key given twice"
    );
}

/// `starttls suite` lists the vectors with per-module counts and exits
/// non-zero when one of them computes another outcome.
#[test]
fn the_suite_fails_on_a_wrong_outcome() {
    let dir = std::env::temp_dir().join(format!("starttls-policy-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy")).expect("temp dir");
    let good = "vector: listed\nrule: RFC 8461 §4.1 — exact match\ncheck: mx-pattern\npattern: mx.example.com\nhost: mx.example.com\nexpect: match\n";
    let run = |vectors: &str| {
        std::fs::write(dir.join("policy/mta-sts.vectors"), vectors).expect("write");
        std::process::Command::new(env!("CARGO_BIN_EXE_starttls"))
            .args(["suite", "--no-live", "--cases"])
            .arg(&dir)
            .output()
            .expect("run starttls suite")
    };
    let ok = run(good);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("policy vectors by module: mta-sts 1"),
        "{text}"
    );
    let wrong = format!(
        "{good}\n{}",
        good.replace("listed", "unlisted")
            .replace("host: mx.example.com", "host: mx.attacker.test")
    );
    let bad = run(&wrong);
    let text = String::from_utf8_lossy(&bad.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!bad.status.success(), "{text}");
    assert!(text.contains("FAIL   mta-sts"), "{text}");
    assert!(text.contains("mta-sts 1 passed/1 failed"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}
