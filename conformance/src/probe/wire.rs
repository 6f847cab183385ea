//! One probe connection on the wire: blocking `std::net`, a cleartext phase
//! and, after an upgrade (or from the start for implicit TLS), a rustls
//! client stream. Everything sent and received is kept as an escaped
//! transcript, from which the checks take their evidence.
//!
//! Unlike the library's client sessions, this writes exactly the bytes a
//! check asks for, in the writes it asks for: pipelined bytes after
//! STARTTLS, half a line, a second STARTTLS. That is the point of a probe.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starttls::rustls;
use starttls::rustls::pki_types::ServerName;
use starttls::Escaped;

/// Longest line read before giving up (a robustness bound, far above any
/// real reply line).
const MAX_LINE: usize = 64 * 1024;

/// Why an exchange stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Nothing (complete) arrived in time.
    Timeout(Duration),
    /// The server closed the connection.
    Closed,
    /// A socket or TLS error.
    Io(String),
    /// A line longer than [`MAX_LINE`].
    TooLong,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Timeout(d) => write!(f, "no complete reply within {} s", d.as_secs_f32()),
            Stop::Closed => f.write_str("the server closed the connection"),
            Stop::Io(e) => write!(f, "connection error: {e}"),
            Stop::TooLong => write!(f, "a reply line longer than {MAX_LINE} octets"),
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

/// What the handshake negotiated.
pub(crate) struct Negotiated {
    pub(crate) version: String,
    pub(crate) cipher: String,
}

/// A probe connection.
pub(crate) struct Wire {
    stream: Stream,
    buf: Vec<u8>,
    log: Vec<String>,
    /// Time allowed for each reply.
    pub(crate) wait: Duration,
    eof: bool,
}

impl Wire {
    /// Connects (TCP only).
    pub(crate) fn connect(addr: SocketAddr, wait: Duration) -> Result<Wire, String> {
        let sock = TcpStream::connect_timeout(&addr, wait).map_err(|e| format!("{addr}: {e}"))?;
        let _ = sock.set_nodelay(true);
        Ok(Wire {
            stream: Stream::Plain(sock),
            buf: Vec::new(),
            log: vec![format!("-- connected to {addr}")],
            wait,
            eof: false,
        })
    }

    /// Whether TLS is on.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// A position in the transcript, for [`since`](Self::since).
    pub(crate) fn mark(&self) -> usize {
        self.log.len()
    }

    /// The transcript from `mark` on.
    pub(crate) fn since(&self, mark: usize) -> Vec<String> {
        self.log.get(mark..).unwrap_or_default().to_vec()
    }

    /// Adds a note to the transcript.
    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.log.push(format!("-- {}", text.into()));
    }

    /// Writes `bytes` in one write; the transcript gets one `C:` line per line.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let tls = if self.is_tls() { "C[tls]: " } else { "C: " };
        for line in Escaped::new(bytes).lines() {
            self.log.push(clip(format!("{tls}{line}")));
        }
        if !bytes.ends_with(b"\n") {
            self.log
                .push("-- (no line end: the line continues in a later write)".into());
        }
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
        };
        r.map_err(|e| Stop::Io(e.to_string()))
    }

    /// Reads more bytes into the buffer, waiting until `deadline`.
    fn fill(&mut self, deadline: Instant, waited: Duration) -> Result<(), Stop> {
        if self.eof {
            return Err(Stop::Closed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout(waited));
        }
        let _ = self.stream.sock().set_read_timeout(Some(left));
        let mut chunk = [0u8; 8192];
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut chunk),
            Stream::Tls(s) => s.read(&mut chunk),
        };
        match r {
            Ok(0) => {
                self.eof = true;
                Err(Stop::Closed)
            }
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Stop::Timeout(waited))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                self.eof = true;
                Err(Stop::Closed)
            }
            Err(e) => Err(Stop::Io(e.to_string())),
        }
    }

    /// One line, without its line end (CRLF, or a bare LF as some servers
    /// send), waiting at most `wait` for it.
    pub(crate) fn line_within(&mut self, wait: Duration) -> Result<Vec<u8>, Stop> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(nl) = memchr_nl(&self.buf) {
                let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let tls = if self.is_tls() { "S[tls]: " } else { "S: " };
                self.log.push(clip(format!("{tls}{}", Escaped::new(&line))));
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(Stop::TooLong);
            }
            if let Err(stop) = self.fill(deadline, wait) {
                if !self.buf.is_empty() {
                    let tls = if self.is_tls() { "S[tls]: " } else { "S: " };
                    self.log.push(clip(format!(
                        "{tls}{} (incomplete: no line end)",
                        Escaped::new(&self.buf)
                    )));
                }
                return Err(stop);
            }
        }
    }

    /// One line within the default wait.
    pub(crate) fn line(&mut self) -> Result<Vec<u8>, Stop> {
        self.line_within(self.wait)
    }

    /// Exactly `n` octets (an IMAP literal), shown in the transcript as a
    /// count and its escaped text.
    pub(crate) fn exact(&mut self, n: usize) -> Result<Vec<u8>, Stop> {
        let deadline = Instant::now() + self.wait;
        while self.buf.len() < n {
            self.fill(deadline, self.wait)?;
        }
        let data: Vec<u8> = self.buf.drain(..n).collect();
        self.log
            .push(clip(format!("S: {{{n} octets}} {}", Escaped::new(&data))));
        Ok(data)
    }

    /// Bytes received but not yet read as a line.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Waits up to `wait` for more bytes; `true` if some arrived (the end
    /// of the stream is not bytes: see [`closed`](Self::closed)).
    pub(crate) fn more_within(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let deadline = Instant::now() + wait;
        let _ = self.fill(deadline, wait);
        !self.buf.is_empty()
    }

    /// Whether the server closed the connection.
    pub(crate) fn closed(&self) -> bool {
        self.eof
    }

    /// Upgrades to TLS: the bytes buffered so far stay behind (the caller
    /// looks at [`buffered`](Self::buffered) first).
    pub(crate) fn start_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Negotiated, String> {
        let sock = match &self.stream {
            Stream::Plain(s) => s.try_clone().map_err(|e| e.to_string())?,
            Stream::Tls(_) => return Err("already in TLS".into()),
        };
        self.buf.clear();
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let _ = tls.sock.set_read_timeout(Some(self.wait));
        let _ = tls.sock.set_write_timeout(Some(self.wait));
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                let text = match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                        format!("no handshake reply within {} s", self.wait.as_secs_f32())
                    }
                    ErrorKind::UnexpectedEof => {
                        "the server closed the connection during the handshake".into()
                    }
                    _ => e.to_string(),
                };
                self.log.push(format!("-- TLS handshake failed: {text}"));
                self.stream = Stream::Tls(Box::new(tls));
                self.eof = true;
                return Err(text);
            }
        }
        let version = tls
            .conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|| "unknown".into());
        let cipher = tls
            .conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_else(|| "unknown".into());
        self.log
            .push(format!("-- TLS established: {version} {cipher}"));
        self.stream = Stream::Tls(Box::new(tls));
        Ok(Negotiated { version, cipher })
    }

    /// Closes both directions (best effort).
    pub(crate) fn close(&mut self) {
        if let Stream::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = self.stream.sock().shutdown(std::net::Shutdown::Both);
    }
}

fn memchr_nl(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Longest transcript line kept whole; longer ones (the 100 000-octet line
/// of `robust.long-line`, a flood from the server) are cut.
const SHOWN: usize = 240;

/// Cuts a transcript line to [`SHOWN`] characters, saying how much was left
/// out, so that the table and the JSON stay readable.
fn clip(line: String) -> String {
    let total = line.chars().count();
    if total <= SHOWN {
        return line;
    }
    let kept: String = line.chars().take(SHOWN).collect();
    format!("{kept}... ({} more characters)", total - SHOWN)
}
