//! Writes seed corpora for the fuzz targets from the conformance transcript
//! cases: the peer bytes of each case (whole, and line by line) go to the
//! parser targets of their protocol, and the whole transcript to the session
//! and taint targets.
//!
//! `cargo run -p starttls-fuzz-logic --bin export-seeds` (from the workspace
//! root) writes into `fuzz/seeds/<target>/`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cases = root.join("conformance/cases");
    let out = root.join("fuzz/seeds");
    let mut files = Vec::new();
    walk(&cases, &mut files);
    files.sort();
    let mut written = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let proto = text
            .lines()
            .find_map(|l| l.strip_prefix("protocol:"))
            .map(|p| p.trim().to_string())
            .unwrap_or_default();
        let role = text
            .lines()
            .find_map(|l| l.strip_prefix("role:"))
            .map(|p| p.trim().to_string())
            .unwrap_or_default();
        let mut peer = Vec::new();
        for l in text.lines() {
            if let Some(b) = l.strip_prefix("peer ") {
                peer.push(unescape(b));
            }
        }
        if peer.is_empty() {
            continue;
        }
        let family = match proto.as_str() {
            "smtp" | "lmtp" | "submission" => "smtp",
            other => other,
        };
        // What the peer sends is commands when we are the server.
        let parser = match (family, role.as_str()) {
            ("smtp", "server") => "smtp_command",
            ("smtp", _) => "smtp_reply",
            ("imap", "server") => "imap_command",
            ("imap", _) => "imap_response",
            ("pop3", "server") => "pop3_command",
            (_, _) => "pop3_response",
        };
        for p in &peer {
            for line in p.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                written += save(&out.join(parser), line);
            }
        }
        let whole: Vec<u8> = peer.concat();
        let session = format!("session_{family}_{role}");
        // Session targets read a policy byte and an operation list; a raw
        // transcript is still a useful seed for the mutator.
        written += save(&out.join(&session), &whole);
        written += save(&out.join("split_invariance"), &whole);
        written += save(&out.join(format!("taint_{family}")), &whole);
    }
    println!(
        "wrote {written} seed files from {} cases into {}",
        files.len(),
        out.display()
    );
}

fn save(dir: &PathBuf, data: &[u8]) -> usize {
    if data.is_empty() {
        return 0;
    }
    let _ = std::fs::create_dir_all(dir);
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    let path = dir.join(format!("{:016x}", h.finish()));
    if path.exists() {
        return 0;
    }
    std::fs::write(path, data).map(|_| 1).unwrap_or(0)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "case") {
            out.push(p);
        }
    }
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() => {
                    if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                        out.push(v);
                    }
                    i += 2;
                }
                other => out.push(other),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}
