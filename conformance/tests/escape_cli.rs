//! `starttls connect` never writes a peer's control characters, escape
//! sequences or bidirectional controls to the terminal (issue #14, item 1).
//!
//! A fake server on 127.0.0.1 (a thread of this test) answers each protocol's
//! client with texts full of terminal escapes: greeting, capability listing,
//! replies, an alert. `connect` runs with `--policy opportunistic` (the fake
//! offers no TLS) and its output must hold every peer text escaped and none
//! raw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_starttls");

/// How long anything may take before the test gives up.
const LIMIT: Duration = Duration::from_secs(30);

/// ESC [ 31;1;4 m (red, bold, underlined), a window-title OSC, a cursor-up,
/// backspaces, C1 CSI (U+009B), NEL (U+0085), RLO (U+202E), LRI (U+2066),
/// PDI (U+2069), a line separator (U+2028) and an invalid octet.
const EVIL: &[u8] =
    b"\x1b[31;1;4mred\x1b[0m \x1b]0;pwned\x07 up\x1b[1A ok\x08\x08 \xc2\x9b2J \xc2\x85 \xe2\x80\xaegpj.exe\xe2\x81\xa6x\xe2\x81\xa9 \xe2\x80\xa8 \xff";

/// The escaped form of [`EVIL`], as `connect` must print it.
const EVIL_SHOWN: &str = r"\u{1b}[31;1;4mred\u{1b}[0m \u{1b}]0;pwned\u{7} up\u{1b}[1A ok\u{8}\u{8} \u{9b}2J \u{85} \u{202e}gpj.exe\u{2066}x\u{2069} \u{2028} \xff";

/// Serves one connection: writes `greeting`, then for each line read,
/// writes the answer of the first `(prefix, answer)` whose prefix the line
/// starts with (ASCII case-insensitive); stops after answering a line that
/// starts with `last`.
fn fake(greeting: Vec<u8>, script: Vec<(&'static str, Vec<u8>)>, last: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let Ok((sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(LIMIT));
        let mut out = sock.try_clone().expect("clone");
        let _ = out.write_all(&greeting);
        let mut lines = BufReader::new(sock);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            let upper = line.to_ascii_uppercase();
            // IMAP: answer after the tag.
            let (tag, command) = match upper.split_once(' ') {
                Some((t, c))
                    if t.starts_with('A') && t[1..].chars().all(|c| c.is_ascii_digit()) =>
                {
                    (Some(line[..t.len()].to_string()), c.to_string())
                }
                _ => (None, upper.clone()),
            };
            if let Some((_, answer)) = script.iter().find(|(p, _)| command.starts_with(p)) {
                let mut answer = answer.clone();
                if let Some(tag) = &tag {
                    // `\x01` in the answer stands for the command's tag.
                    let mut with = Vec::new();
                    for (i, part) in answer.split(|&b| b == b'\x01').enumerate() {
                        if i > 0 {
                            with.extend_from_slice(tag.as_bytes());
                        }
                        with.extend_from_slice(part);
                    }
                    answer = with;
                }
                let _ = out.write_all(&answer);
            }
            if command.starts_with(last) {
                break;
            }
            line.clear();
        }
    });
    port
}

/// Runs `connect url --policy opportunistic` to completion.
fn connect(url: &str) -> (Option<i32>, Vec<u8>) {
    let mut child = Command::new(BIN)
        .args(["connect", url, "--policy", "opportunistic"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code(),
            Ok(None) if start.elapsed() < LIMIT => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    (code, reader.join().unwrap_or_default())
}

/// Nothing in `stdout` that a terminal would act on: no C0 control but LF
/// ending a line, no DEL, no C1 control, no bidirectional control, no line
/// separator, and valid UTF-8 throughout.
fn assert_inert(stdout: &[u8]) -> String {
    let text = String::from_utf8(stdout.to_vec())
        .unwrap_or_else(|e| panic!("connect printed invalid UTF-8: {e}: {stdout:?}"));
    for c in text.chars() {
        let bad = matches!(c, '\u{0}'..='\u{9}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
            || matches!(
                c,
                '\u{61c}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{2028}'
                    | '\u{2029}'
            );
        assert!(!bad, "connect printed U+{:04X} raw:\n{text}", u32::from(c));
    }
    text
}

fn evil(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    [prefix, EVIL, suffix].concat()
}

#[test]
fn smtp_peer_text_is_shown_escaped() {
    let port = fake(
        evil(b"220 mx.example ESMTP ", b"\r\n"),
        vec![
            (
                "EHLO",
                [
                    // (The EHLO greeting text is not kept by the session.)
                    &b"250-mx.example "[..],
                    EVIL,
                    b"\r\n250-X-PARAM ",
                    EVIL,
                    b"\r\n250 8BITMIME\r\n",
                ]
                .concat(),
            ),
            ("QUIT", evil(b"221 2.0.0 bye ", b"\r\n")),
        ],
        "QUIT",
    );
    let (code, out) = connect(&format!("smtp://127.0.0.1:{port}"));
    let text = assert_inert(&out);
    assert_eq!(code, Some(0), "{text}");
    let greeting = format!("S: [cleartext] 220 mx.example ESMTP {EVIL_SHOWN}");
    assert!(text.lines().any(|l| l == greeting), "{text}");
    assert!(text.contains(&format!("X-PARAM {EVIL_SHOWN}")), "{text}");
    assert!(
        text.contains(&format!("221 2.0.0 bye {EVIL_SHOWN}")),
        "{text}"
    );
}

#[test]
fn pop3_peer_text_is_shown_escaped() {
    let port = fake(
        evil(b"+OK ", b"\r\n"),
        vec![
            (
                "CAPA",
                [
                    &b"+OK "[..],
                    EVIL,
                    b"\r\nUSER\r\nIMPLEMENTATION ",
                    EVIL,
                    b"\r\n.\r\n",
                ]
                .concat(),
            ),
            ("QUIT", evil(b"+OK bye ", b"\r\n")),
        ],
        "QUIT",
    );
    let (code, out) = connect(&format!("pop3://127.0.0.1:{port}"));
    let text = assert_inert(&out);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("S: [cleartext] +OK {EVIL_SHOWN}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("IMPLEMENTATION {EVIL_SHOWN}")),
        "{text}"
    );
    assert!(text.contains(&format!("+OK bye {EVIL_SHOWN}")), "{text}");
}

#[test]
fn imap_peer_text_is_shown_escaped() {
    let port = fake(
        evil(b"* OK [ALERT] ", b"\r\n"),
        vec![
            (
                "CAPABILITY",
                [
                    &b"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\n\x01 OK "[..],
                    EVIL,
                    b"\r\n",
                ]
                .concat(),
            ),
            (
                "LOGOUT",
                [&b"* BYE "[..], EVIL, b"\r\n\x01 OK ", EVIL, b"\r\n"].concat(),
            ),
        ],
        "LOGOUT",
    );
    let (code, out) = connect(&format!("imap://127.0.0.1:{port}"));
    let text = assert_inert(&out);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("S: [cleartext] * OK [ALERT] {EVIL_SHOWN}")),
        "{text}"
    );
    assert!(text.contains(&format!("* BYE {EVIL_SHOWN}")), "{text}");
}
