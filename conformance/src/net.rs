//! Loopback helpers for the live checks: listeners, connections, a fake
//! server on a raw socket, and sessions run on the blocking driver.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use starttls::{Error, Session, Timeouts};
use starttls_io::blocking::Driver;

/// Time allowed for any single read.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `session` on `sock` on the blocking driver until it closes; `app`
/// acts on every event. Returns the session's error, if it failed (what it
/// still queued, a `QUIT`, was written first); a broken connection is an
/// `Err`.
pub fn run<S: Session>(
    sock: TcpStream,
    session: S,
    mut app: impl FnMut(&mut S, S::Event),
) -> Result<Option<Error>, String> {
    let mut driver = Driver::new(session, sock).with_timeouts(Timeouts::all(TIMEOUT));
    let failed = loop {
        match driver.next_event() {
            Ok(Some(event)) => app(driver.session_mut(), event),
            Ok(None) => break None,
            Err(starttls_io::Error::Session(e)) => break Some(e),
            Err(e) => return Err(e.to_string()),
        }
    };
    let _ = driver.close();
    Ok(failed)
}

/// A loopback listener on a free port.
pub fn listen() -> Result<(TcpListener, u16), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok((l, port))
}

/// Connects to a loopback port.
pub fn connect(port: u16) -> Result<TcpStream, String> {
    TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))
}

/// Reads until `needle` has been seen.
pub fn read_until(sock: &mut TcpStream, needle: &[u8]) -> Result<Vec<u8>, String> {
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        match sock.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "closed before {:?}",
                    String::from_utf8_lossy(needle)
                ))
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(got)
}

/// Reads whatever arrives within `ms` milliseconds.
pub fn read_for(sock: &mut TcpStream, ms: u64) -> Vec<u8> {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(ms)));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A fake server on a raw socket: sends `greeting`, then for every
/// `(expect, answer)` waits until the client has sent a line ending with
/// `expect` and writes `answer`. Returns everything the client sent.
pub fn fake_server(
    greeting: &'static [u8],
    script: Vec<(&'static str, &'static [u8])>,
) -> Result<(u16, std::thread::JoinHandle<String>), String> {
    let (l, port) = listen()?;
    let h = std::thread::spawn(move || {
        let mut heard = Vec::new();
        let Ok((mut s, _)) = l.accept() else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.write_all(greeting);
        let mut script = script.into_iter();
        let mut next = script.next();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            heard.extend_from_slice(&buf[..n]);
            if let Some((expect, answer)) = next {
                if String::from_utf8_lossy(&heard).ends_with(&format!("{expect}\r\n")) {
                    let _ = s.write_all(answer);
                    next = script.next();
                }
            }
        }
        String::from_utf8_lossy(&heard).into_owned()
    });
    Ok((port, h))
}
