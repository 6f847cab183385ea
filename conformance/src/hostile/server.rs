//! The scripted hostile server: it writes exactly the bytes a case says, in
//! the writes the case says, answers everything else like a plain server,
//! and records what the client sent, in cleartext and over TLS.
//!
//! Templates in a case's bytes: `{tag}` is the tag of the IMAP command being
//! answered, `{next}` the tag the client will most likely use next (the
//! digits at the end of `{tag}` plus one), `{marker}` the case's marker, and
//! `{referral}` a URL of the second listener that records whether the
//! client followed a referral.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starttls::rustls;

use super::certs::CertKind;
use super::judge::printable;

/// The protocol a case speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// SMTP with STARTTLS (RFC 3207).
    Smtp,
    /// IMAP with STARTTLS (RFC 2595, RFC 9051).
    Imap,
    /// POP3 with STLS (RFC 2595).
    Pop3,
}

impl Proto {
    /// `smtp`, `imap` or `pop3` (also the URL scheme).
    pub fn name(self) -> &'static str {
        match self {
            Proto::Smtp => "smtp",
            Proto::Imap => "imap",
            Proto::Pop3 => "pop3",
        }
    }
}

/// How a piece of output is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// One write (a template).
    Bytes(String),
    /// One byte per write, `ms` milliseconds apart.
    Slow(String, u64),
    /// The template, then `x` bytes without a line end until the client
    /// closes, the cap or the deadline.
    Endless(String),
    /// The template, then the same template's last line again and again
    /// (an endless multi-line reply).
    Repeat(String, String),
    /// The template, then close the connection.
    ThenClose(String),
}

impl Out {
    /// One write.
    pub fn b(s: &str) -> Out {
        Out::Bytes(s.to_string())
    }
}

/// What the server does when the client asks to upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// The positive reply (default when `None`), then `inject` in the same
    /// write, then the TLS handshake.
    Accept {
        /// Replaces the positive reply.
        reply: Option<String>,
        /// Written after the reply in the same write.
        inject: String,
    },
    /// This reply; the session goes on in cleartext.
    Refuse(String),
    /// This output; for closes, endless data and other robustness cases.
    Raw(Out),
    /// The positive reply, then raw bytes where the ServerHello belongs.
    Garbage(String),
}

/// A hostile server's script. `None` fields mean "what a plain server says".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Play {
    /// Written on accept.
    pub greeting: Option<Out>,
    /// The cleartext answer to the capability command (EHLO, CAPABILITY, CAPA).
    pub caps: Option<Out>,
    /// The cleartext answer to HELO (SMTP).
    pub helo: Option<Out>,
    /// What STARTTLS/STLS gets.
    pub upgrade: Upgrade,
    /// The certificate presented.
    pub cert: CertKind,
    /// Written right after the handshake, unsolicited.
    pub after_tls: Option<Out>,
    /// The answer to the capability command over TLS.
    pub tls_caps: Option<Out>,
    /// The answer to the login command over TLS (LOGIN/AUTH/PASS).
    pub tls_login: Option<Out>,
    /// Hold the answer to the first command after TLS for a while, to see
    /// whether the client goes on without it (it took an injected answer).
    pub hold_first: bool,
    /// Write every cleartext byte alone, this many milliseconds apart.
    pub slow: Option<u64>,
}

impl Default for Play {
    fn default() -> Play {
        Play {
            greeting: None,
            caps: None,
            helo: None,
            upgrade: Upgrade::Accept {
                reply: None,
                inject: String::new(),
            },
            cert: CertKind::Good,
            after_tls: None,
            tls_caps: None,
            tls_login: None,
            hold_first: false,
            slow: None,
        }
    }
}

/// What one connection showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnLog {
    /// Lines the client sent in cleartext (without CRLF).
    pub clear: Vec<Vec<u8>>,
    /// Lines the client sent over TLS.
    pub tls: Vec<Vec<u8>>,
    /// The server agreed to upgrade and started the handshake.
    pub handshake_started: bool,
    /// `Some(Ok)`: the client finished the handshake (so it accepted the
    /// certificate); `Some(Err)`: it failed, with the server's view of why.
    pub handshake: Option<Result<(), String>>,
    /// With `hold_first`: the client sent another command before the
    /// held answer.
    pub went_on_without_answer: bool,
    /// With `hold_first`: the next command came in the same TLS record as
    /// the first (written together: pipelining).
    pub pipelined: bool,
    /// The client started a TLS handshake the server never agreed to.
    pub hello_in_clear: bool,
    /// Indexes in `clear` and `tls` of SASL continuation lines (secrets).
    pub sasl_lines: Vec<(bool, usize)>,
    /// Notes (how the connection ended, limits hit).
    pub notes: Vec<String>,
}

/// Limits and context of one played connection.
pub struct Ctx {
    /// The case's marker.
    pub marker: String,
    /// The referral URL.
    pub referral: String,
    /// The server configuration for the case's certificate.
    pub tls: Arc<rustls::ServerConfig>,
    /// When to give up.
    pub deadline: Instant,
    /// Set when the client has ended: stop now.
    pub stop: Arc<AtomicBool>,
}

/// The longest client line recorded; longer is cut and the connection closed.
const MAX_LINE: usize = 64 * 1024;
/// How much an endless output writes at most.
const ENDLESS_CAP: usize = 256 << 20;
/// How long a held answer is held.
const HOLD: Duration = Duration::from_millis(1500);

enum Chan {
    Clear,
    Tls(Box<rustls::ServerConnection>),
}

struct Conn<'a> {
    sock: TcpStream,
    chan: Chan,
    buf: Vec<u8>,
    /// For each byte of `buf`, the TLS record it came in (0 in cleartext).
    rec: Vec<u32>,
    /// TLS bytes not yet a whole record.
    raw: Vec<u8>,
    rec_no: u32,
    /// The record of the end of the last line taken.
    line_rec: u32,
    ctx: &'a Ctx,
    eof: bool,
    slow: Option<u64>,
}

#[derive(Debug)]
enum Stop {
    Eof,
    Io(String),
    Deadline,
    TooLong,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Eof => f.write_str("the client closed the connection"),
            Stop::Io(e) => write!(f, "i/o error: {e}"),
            Stop::Deadline => f.write_str("the case's time ran out"),
            Stop::TooLong => write!(f, "the client sent a line over {MAX_LINE} bytes"),
        }
    }
}

impl<'a> Conn<'a> {
    fn done(&self) -> bool {
        Instant::now() >= self.ctx.deadline || self.ctx.stop.load(Ordering::Relaxed)
    }

    /// Reads once (up to 200 ms). Ok(false): nothing arrived.
    fn fill(&mut self) -> Result<bool, Stop> {
        if self.eof {
            return Err(Stop::Eof);
        }
        let mut tmp = [0u8; 16 * 1024];
        let n = match self.sock.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                return Err(Stop::Eof);
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(Stop::Io(e.to_string())),
        };
        match &mut self.chan {
            Chan::Clear => {
                self.buf.extend_from_slice(&tmp[..n]);
                self.rec.resize(self.buf.len(), 0);
            }
            Chan::Tls(tls) => {
                // One record at a time, so that each plaintext byte knows
                // the record it came in (pipelining shows as one record).
                self.raw.extend_from_slice(&tmp[..n]);
                while self.raw.len() >= 5 {
                    // Not a record header (mutt sends a cleartext QUIT over a
                    // session whose certificate it rejected): end the
                    // connection as a TLS server does, rather than wait for
                    // a "record" of the length those bytes happen to spell.
                    if !record_header(&self.raw) {
                        let head: Vec<u8> = self.raw.iter().take(24).copied().collect();
                        return Err(Stop::Io(format!(
                            "not a TLS record over the TLS session: {}",
                            printable(&String::from_utf8_lossy(&head), 24)
                        )));
                    }
                    let len = 5 + usize::from(u16::from_be_bytes([self.raw[3], self.raw[4]]));
                    if self.raw.len() < len {
                        break;
                    }
                    let record: Vec<u8> = self.raw.drain(..len).collect();
                    let mut input = &record[..];
                    while !input.is_empty() {
                        tls.read_tls(&mut input)
                            .map_err(|e| Stop::Io(e.to_string()))?;
                    }
                    let state = tls
                        .process_new_packets()
                        .map_err(|e| Stop::Io(format!("TLS: {e}")))?;
                    let want = state.plaintext_bytes_to_read();
                    if want > 0 {
                        let start = self.buf.len();
                        self.buf.resize(start + want, 0);
                        let got = tls
                            .reader()
                            .read(&mut self.buf[start..])
                            .map_err(|e| Stop::Io(e.to_string()))?;
                        self.buf.truncate(start + got);
                        self.rec_no += 1;
                        self.rec.resize(self.buf.len(), self.rec_no);
                    }
                }
                self.flush_tls()?;
            }
        }
        Ok(true)
    }

    fn flush_tls(&mut self) -> Result<(), Stop> {
        if let Chan::Tls(tls) = &mut self.chan {
            while tls.wants_write() {
                tls.write_tls(&mut self.sock)
                    .map_err(|e| Stop::Io(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The next line (without CRLF; a bare LF also ends it), waiting at most
    /// `wait` (`None`: until the deadline).
    fn line(&mut self, wait: Option<Duration>) -> Result<Option<Vec<u8>>, Stop> {
        let start = Instant::now();
        loop {
            if matches!(self.chan, Chan::Clear) && self.buf.first() == Some(&0x16) {
                // Not a line: a TLS record (the caller tells it apart).
                self.rec.clear();
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                self.line_rec = self.rec.drain(..=i).next_back().unwrap_or(0);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                return Err(Stop::TooLong);
            }
            if self.done() {
                return Err(Stop::Deadline);
            }
            if wait.is_some_and(|w| start.elapsed() >= w) {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Exactly `n` bytes (an IMAP literal).
    fn exact(&mut self, n: usize) -> Result<Vec<u8>, Stop> {
        while self.buf.len() < n {
            if self.done() {
                return Err(Stop::Deadline);
            }
            self.fill()?;
        }
        self.rec.drain(..n);
        Ok(self.buf.drain(..n).collect())
    }

    fn write_raw(&mut self, data: &[u8]) -> Result<(), Stop> {
        match &mut self.chan {
            Chan::Clear if self.slow.is_some() && data.len() > 1 => {
                let ms = self.slow.unwrap_or(0);
                for byte in data {
                    self.slow = None;
                    let r = self.write_raw(std::slice::from_ref(byte));
                    self.slow = Some(ms);
                    r?;
                    std::thread::sleep(Duration::from_millis(ms));
                }
                Ok(())
            }
            Chan::Clear => {
                let mut rest = data;
                while !rest.is_empty() {
                    if self.done() {
                        return Err(Stop::Deadline);
                    }
                    match self.sock.write(rest) {
                        Ok(0) => return Err(Stop::Eof),
                        Ok(n) => rest = &rest[n..],
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                                    | ErrorKind::Interrupted
                            ) => {}
                        Err(e) => return Err(Stop::Io(e.to_string())),
                    }
                }
                Ok(())
            }
            Chan::Tls(tls) => {
                tls.writer()
                    .write_all(data)
                    .map_err(|e| Stop::Io(e.to_string()))?;
                self.flush_tls()
            }
        }
    }

    fn expand(&self, template: &str, tag: &str) -> String {
        template
            .replace("{tag}", tag)
            .replace("{next}", &next_tag(tag))
            .replace("{marker}", &self.ctx.marker)
            .replace("{referral}", &self.ctx.referral)
    }

    /// Writes `out`; `Err(Stop::Eof)` after a close it asked for.
    fn emit(&mut self, out: &Out, tag: &str) -> Result<(), Stop> {
        match out {
            Out::Bytes(t) => {
                let b = self.expand(t, tag);
                self.write_raw(b.as_bytes())
            }
            Out::Slow(t, ms) => {
                let b = self.expand(t, tag);
                for byte in b.as_bytes() {
                    self.write_raw(std::slice::from_ref(byte))?;
                    std::thread::sleep(Duration::from_millis(*ms));
                }
                Ok(())
            }
            Out::ThenClose(t) => {
                let b = self.expand(t, tag);
                self.write_raw(b.as_bytes())?;
                if let Chan::Tls(tls) = &mut self.chan {
                    tls.send_close_notify();
                }
                let _ = self.flush_tls();
                let _ = self.sock.shutdown(std::net::Shutdown::Both);
                Err(Stop::Eof)
            }
            Out::Endless(t) => {
                let b = self.expand(t, tag);
                self.write_raw(b.as_bytes())?;
                self.endless(&[b'x'; 64 * 1024])
            }
            Out::Repeat(t, line) => {
                let b = self.expand(t, tag);
                self.write_raw(b.as_bytes())?;
                let one = self.expand(line, tag);
                let chunk = one.repeat((64 * 1024 / one.len().max(1)).max(1));
                self.endless(chunk.as_bytes())
            }
        }
    }

    fn endless(&mut self, chunk: &[u8]) -> Result<(), Stop> {
        let mut sent = 0;
        while sent < ENDLESS_CAP {
            self.write_raw(chunk)?;
            sent += chunk.len();
            // Notice a client that gave up (its RST makes the write fail).
            if matches!(self.chan, Chan::Clear) {
                let _ = self.sock.set_nonblocking(true);
                let mut probe = [0u8; 4096];
                let r = self.sock.read(&mut probe);
                let _ = self.sock.set_nonblocking(false);
                match r {
                    Ok(0) => return Err(Stop::Eof),
                    Ok(n) => {
                        self.buf.extend_from_slice(&probe[..n]);
                        self.rec.resize(self.buf.len(), 0);
                    }
                    Err(_) => {}
                }
            }
        }
        Err(Stop::Io(format!("wrote the {ENDLESS_CAP}-byte cap")))
    }

    /// The TLS handshake as a server.
    fn handshake(&mut self) -> Result<(), String> {
        let mut tls =
            rustls::ServerConnection::new(self.ctx.tls.clone()).map_err(|e| e.to_string())?;
        // Bytes the client sent early (a ClientHello in the same write as
        // STARTTLS) belong to TLS.
        let early = std::mem::take(&mut self.buf);
        self.rec.clear();
        let mut input = &early[..];
        while !input.is_empty() {
            tls.read_tls(&mut input).map_err(|e| e.to_string())?;
        }
        let mut tmp = [0u8; 16 * 1024];
        loop {
            let state = tls.process_new_packets();
            while tls.wants_write() {
                if let Err(e) = tls.write_tls(&mut self.sock) {
                    return Err(format!("write: {e}"));
                }
            }
            if let Err(e) = state {
                return Err(e.to_string());
            }
            if !tls.is_handshaking() {
                break;
            }
            if self.done() {
                return Err("the case's time ran out during the handshake".into());
            }
            match self.sock.read(&mut tmp) {
                Ok(0) => return Err("the client closed the connection during the handshake".into()),
                Ok(n) => {
                    let mut input = &tmp[..n];
                    while !input.is_empty() {
                        tls.read_tls(&mut input).map_err(|e| e.to_string())?;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        // Plaintext that came with the client's Finished.
        let mut rest = Vec::new();
        let _ = tls.reader().read_to_end(&mut rest);
        self.rec = vec![0; rest.len()];
        self.buf = rest;
        self.chan = Chan::Tls(Box::new(tls));
        Ok(())
    }
}

/// `A002` -> `A003`, `a9` -> `a10`, `x` -> `x1`.
pub fn next_tag(tag: &str) -> String {
    let digits = tag.len() - tag.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, num) = tag.split_at(tag.len() - digits);
    match num.parse::<u64>() {
        Ok(n) => format!("{head}{:0width$}", n + 1, width = digits),
        Err(_) => format!("{tag}1"),
    }
}

/// A command line split into IMAP tag, upper-case verb and the rest.
pub fn split(proto: Proto, line: &[u8]) -> (String, String, String) {
    let text = String::from_utf8_lossy(line).into_owned();
    let (tag, rest) = if proto == Proto::Imap {
        match text.split_once(' ') {
            Some((t, r)) => (t.to_string(), r.to_string()),
            None => (text.clone(), String::new()),
        }
    } else {
        (String::new(), text.clone())
    };
    let (verb, args) = match rest.split_once(' ') {
        Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
        None => (rest.to_ascii_uppercase(), String::new()),
    };
    (tag, verb, args)
}

/// Plays `play` on one accepted connection and returns what was seen.
pub fn play(proto: Proto, play: &Play, sock: TcpStream, ctx: &Ctx) -> ConnLog {
    let mut log = ConnLog::default();
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = sock.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = sock.set_nodelay(true);
    let mut conn = Conn {
        sock,
        chan: Chan::Clear,
        buf: Vec::new(),
        rec: Vec::new(),
        raw: Vec::new(),
        rec_no: 0,
        line_rec: 0,
        ctx,
        eof: false,
        slow: play.slow,
    };
    let end = run(proto, play, &mut conn, &mut log);
    if let Err(stop) = end {
        log.notes.push(stop.to_string());
    }
    log
}

fn run(proto: Proto, play: &Play, conn: &mut Conn<'_>, log: &mut ConnLog) -> Result<(), Stop> {
    let greeting = play.greeting.clone().unwrap_or_else(|| {
        Out::b(match proto {
            Proto::Smtp => "220 hostile.localhost ESMTP ready\r\n",
            Proto::Imap => "* OK hostile IMAP4rev1 server ready\r\n",
            Proto::Pop3 => "+OK hostile POP3 server ready\r\n",
        })
    });
    conn.emit(&greeting, "")?;
    let mut held = false;
    loop {
        let tls = matches!(conn.chan, Chan::Tls(_));
        let line = match conn.line(None)? {
            Some(l) => l,
            None => continue,
        };
        if !tls && line.first() == Some(&0x16) {
            // A TLS ClientHello where this script kept cleartext: answer it
            // as the plain server it pretends to be would, once.
            log.notes
                .push("the client sent a TLS ClientHello in cleartext".into());
            log.hello_in_clear = true;
            let reply: &[u8] = match proto {
                Proto::Smtp => b"500 5.5.2 command unrecognized\r\n",
                Proto::Imap => b"* BAD command unrecognized\r\n",
                Proto::Pop3 => b"-ERR command unrecognized\r\n",
            };
            conn.write_raw(reply)?;
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                conn.fill()?;
                conn.buf.clear();
                conn.rec.clear();
            }
            continue;
        }
        let line = read_literals(proto, conn, line)?;
        if tls {
            log.tls.push(line.clone());
        } else {
            log.clear.push(line.clone());
        }
        if tls && play.hold_first && !held {
            held = true;
            // A next line that came with this one was pipelined (written
            // together), not sent in answer to anything.
            log.pipelined = conn.buf.contains(&b'\n') && conn.rec.first() == Some(&conn.line_rec);
            if let Some(next) = conn.line(Some(HOLD))? {
                log.went_on_without_answer = true;
                conn.buf.splice(0..0, next.iter().copied().chain(*b"\r\n"));
                let r = conn.line_rec;
                conn.rec
                    .splice(0..0, std::iter::repeat_n(r, next.len() + 2));
            }
        }
        if line.is_empty() {
            continue;
        }
        respond(proto, play, conn, log, &line)?;
    }
}

/// IMAP: a line ending in `{n}` or `{n+}` goes on after n bytes.
fn read_literals(proto: Proto, conn: &mut Conn<'_>, mut line: Vec<u8>) -> Result<Vec<u8>, Stop> {
    if proto != Proto::Imap {
        return Ok(line);
    }
    for _ in 0..16 {
        let text = String::from_utf8_lossy(&line).into_owned();
        let Some(open) = text.rfind('{') else { break };
        if !text.ends_with('}') {
            break;
        }
        let inner = &text[open + 1..text.len() - 1];
        let (num, sync) = match inner.strip_suffix('+') {
            Some(n) => (n, false),
            None => (inner, true),
        };
        let Ok(n) = num.parse::<usize>() else { break };
        if n > MAX_LINE {
            return Err(Stop::TooLong);
        }
        if sync {
            conn.write_raw(b"+ go ahead\r\n")?;
        }
        let lit = conn.exact(n)?;
        line.extend_from_slice(b"\r\n");
        line.extend_from_slice(&lit);
        match conn.line(None)? {
            Some(more) => line.extend_from_slice(&more),
            None => break,
        }
    }
    Ok(line)
}

/// Reads `n` SASL continuation lines, answering each but the last with
/// `prompt`s.
fn sasl(conn: &mut Conn<'_>, log: &mut ConnLog, prompts: &[&str]) -> Result<(), Stop> {
    for p in prompts {
        conn.write_raw(p.as_bytes())?;
        let l = conn.line(None)?.unwrap_or_default();
        if matches!(conn.chan, Chan::Tls(_)) {
            log.sasl_lines.push((true, log.tls.len()));
            log.tls.push(l);
        } else {
            log.sasl_lines.push((false, log.clear.len()));
            log.clear.push(l);
        }
    }
    Ok(())
}

fn respond(
    proto: Proto,
    play: &Play,
    conn: &mut Conn<'_>,
    log: &mut ConnLog,
    line: &[u8],
) -> Result<(), Stop> {
    let tls = matches!(conn.chan, Chan::Tls(_));
    let (tag, verb, args) = split(proto, line);
    let args_up = args.to_ascii_uppercase();
    let is_caps = match proto {
        Proto::Smtp => verb == "EHLO" || verb == "LHLO",
        Proto::Imap => verb == "CAPABILITY",
        Proto::Pop3 => verb == "CAPA",
    };
    let is_upgrade = matches!(verb.as_str(), "STARTTLS" | "STLS");
    let is_login = match proto {
        Proto::Smtp => verb == "AUTH",
        Proto::Imap => verb == "LOGIN" || verb == "AUTHENTICATE",
        Proto::Pop3 => verb == "PASS" || verb == "AUTH" && !args.is_empty() || verb == "APOP",
    };
    if is_caps {
        let custom = if tls { &play.tls_caps } else { &play.caps };
        if let Some(out) = custom {
            return conn.emit(&out.clone(), &tag);
        }
    }
    if proto == Proto::Smtp && verb == "HELO" && !tls {
        if let Some(out) = &play.helo {
            return conn.emit(&out.clone(), &tag);
        }
    }
    if is_upgrade && !tls {
        return upgrade(proto, play, conn, log, &tag);
    }
    if is_login && tls {
        if let Some(out) = &play.tls_login {
            return conn.emit(&out.clone(), &tag);
        }
    }
    let t = &tag;
    let text: String = match proto {
        Proto::Smtp => match verb.as_str() {
            "EHLO" | "LHLO" if tls => {
                "250-hostile.localhost\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            }
            "EHLO" | "LHLO" => {
                "250-hostile.localhost\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            }
            "HELO" => "250 hostile.localhost\r\n".into(),
            "STARTTLS" => "454 4.5.0 TLS already active\r\n".into(),
            "AUTH" => {
                let mut parts = args.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let ir = parts.next().is_some();
                match (mech.as_str(), ir) {
                    ("PLAIN", true) => {}
                    ("PLAIN", false) => sasl(conn, log, &["334 \r\n"])?,
                    ("LOGIN", true) => sasl(conn, log, &["334 UGFzc3dvcmQ6\r\n"])?,
                    ("LOGIN", false) => {
                        sasl(conn, log, &["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"])?
                    }
                    _ => return conn.write_raw(b"504 5.5.4 mechanism not supported\r\n"),
                }
                "235 2.7.0 Authentication successful\r\n".into()
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" | "VRFY" => "250 2.0.0 OK\r\n".into(),
            "DATA" => {
                conn.write_raw(b"354 go ahead\r\n")?;
                loop {
                    let l = conn.line(None)?.unwrap_or_default();
                    if l == b"." {
                        break;
                    }
                }
                "250 2.0.0 queued\r\n".into()
            }
            "QUIT" => return conn.emit(&Out::ThenClose("221 2.0.0 bye\r\n".into()), ""),
            _ => "500 5.5.2 unknown command\r\n".into(),
        },
        Proto::Imap => match verb.as_str() {
            "CAPABILITY" if tls => format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN ID\r\n{t} OK done\r\n"),
            "CAPABILITY" => {
                format!("* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN ID\r\n{t} OK done\r\n")
            }
            "STARTTLS" => format!("{t} BAD TLS already active\r\n"),
            "LOGIN" => format!("{t} OK [CAPABILITY IMAP4rev1 ID] logged in\r\n"),
            "AUTHENTICATE" => {
                let mut parts = args.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let ir = parts.next().is_some();
                match (mech.as_str(), ir) {
                    ("PLAIN", true) => {}
                    ("PLAIN", false) => sasl(conn, log, &["+ \r\n"])?,
                    ("LOGIN", _) => sasl(conn, log, &["+ VXNlcm5hbWU6\r\n", "+ UGFzc3dvcmQ6\r\n"])?,
                    _ => return conn.write_raw(format!("{t} NO unsupported\r\n").as_bytes()),
                }
                format!("{t} OK [CAPABILITY IMAP4rev1 ID] logged in\r\n")
            }
            "SELECT" | "EXAMINE" => format!(
                "* 0 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT 1] ok\r\n{t} OK [READ-WRITE] selected\r\n"
            ),
            "LIST" | "LSUB" => format!("* {verb} () \"/\" INBOX\r\n{t} OK done\r\n"),
            "NAMESPACE" => format!("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{t} OK done\r\n"),
            "STATUS" => format!(
                "* STATUS INBOX (MESSAGES 0 RECENT 0 UIDNEXT 1 UIDVALIDITY 1 UNSEEN 0)\r\n{t} OK done\r\n"
            ),
            "ID" => format!("* ID NIL\r\n{t} OK done\r\n"),
            "SEARCH" => format!("* SEARCH\r\n{t} OK done\r\n"),
            "UID" if args_up.starts_with("SEARCH") => format!("* SEARCH\r\n{t} OK done\r\n"),
            "LOGOUT" => return conn.emit(&Out::ThenClose(format!("* BYE bye\r\n{t} OK done\r\n")), ""),
            _ => format!("{t} OK done\r\n"),
        },
        Proto::Pop3 => match verb.as_str() {
            "CAPA" if tls => "+OK\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n".into(),
            "CAPA" => "+OK\r\nTOP\r\nUIDL\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n".into(),
            "STLS" => "-ERR TLS already active\r\n".into(),
            "USER" | "PASS" | "NOOP" | "RSET" | "APOP" => "+OK\r\n".into(),
            "AUTH" if args.is_empty() => "+OK\r\nPLAIN\r\n.\r\n".into(),
            "AUTH" => {
                let mut parts = args.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let ir = parts.next().is_some();
                match (mech.as_str(), ir) {
                    ("PLAIN", true) => {}
                    ("PLAIN", false) => sasl(conn, log, &["+ \r\n"])?,
                    _ => return conn.write_raw(b"-ERR unsupported\r\n"),
                }
                "+OK logged in\r\n".into()
            }
            "STAT" => "+OK 0 0\r\n".into(),
            "LIST" | "UIDL" if args.is_empty() => "+OK 0 messages\r\n.\r\n".into(),
            "QUIT" => return conn.emit(&Out::ThenClose("+OK bye\r\n".into()), ""),
            _ => "-ERR no such command or message\r\n".into(),
        },
    };
    conn.write_raw(text.as_bytes())
}

fn upgrade(
    proto: Proto,
    play: &Play,
    conn: &mut Conn<'_>,
    log: &mut ConnLog,
    tag: &str,
) -> Result<(), Stop> {
    let positive = match proto {
        Proto::Smtp => "220 2.0.0 Ready to start TLS\r\n".to_string(),
        Proto::Imap => "{tag} OK begin TLS now\r\n".to_string(),
        Proto::Pop3 => "+OK begin TLS\r\n".to_string(),
    };
    match &play.upgrade {
        Upgrade::Refuse(reply) => conn.emit(&Out::Bytes(reply.clone()), tag),
        Upgrade::Raw(out) => conn.emit(&out.clone(), tag),
        Upgrade::Garbage(g) => conn.emit(&Out::ThenClose(format!("{positive}{g}")), tag),
        Upgrade::Accept { reply, inject } => {
            let text = format!("{}{inject}", reply.as_deref().unwrap_or(&positive));
            conn.emit(&Out::Bytes(text), tag)?;
            log.handshake_started = true;
            match conn.handshake() {
                Ok(()) => log.handshake = Some(Ok(())),
                Err(e) => {
                    log.handshake = Some(Err(e));
                    return Err(Stop::Eof);
                }
            }
            if let Some(out) = &play.after_tls {
                conn.emit(&out.clone(), tag)?;
            }
            Ok(())
        }
    }
}

/// Whether `b` starts like a TLS record: a content type of TLS 1.2/1.3
/// (change_cipher_spec 20, alert 21, handshake 22, application_data 23,
/// heartbeat 24) and a legacy version of 3.x (RFC 8446 §5.1).
fn record_header(b: &[u8]) -> bool {
    matches!(b, [20..=24, 3, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_headers() {
        assert!(record_header(b"\x17\x03\x03\x00\x45"));
        assert!(record_header(b"\x15\x03\x03\x00\x02"));
        assert!(record_header(b"\x16\x03\x01\x01\x7e"));
        // A cleartext command sent over an established session.
        assert!(!record_header(b"QUIT\r\n"));
        assert!(!record_header(b"a5 LOGOUT\r\n"));
        assert!(!record_header(b"\x17\x02\x03\x00\x01"));
        assert!(!record_header(b""));
    }

    #[test]
    fn tags() {
        assert_eq!(next_tag("A002"), "A003");
        assert_eq!(next_tag("a9"), "a10");
        assert_eq!(next_tag("A099"), "A100");
        assert_eq!(next_tag("x"), "x1");
        assert_eq!(next_tag(""), "1");
    }

    #[test]
    fn splits() {
        assert_eq!(
            split(Proto::Imap, b"a1 login alice pw"),
            ("a1".into(), "LOGIN".into(), "alice pw".into())
        );
        assert_eq!(
            split(Proto::Smtp, b"ehlo x"),
            (String::new(), "EHLO".into(), "x".into())
        );
        assert_eq!(split(Proto::Pop3, b"QUIT").1, "QUIT");
    }
}
