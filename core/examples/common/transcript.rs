//! The client examples' socket: a `TcpStream` for the blocking driver that
//! prints what goes out, `C: <line>` for cleartext and a byte count for TLS
//! records, once the example says the upgrade started.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use starttls_io::blocking::Socket;

pub struct Transcript {
    sock: TcpStream,
    tls: Cell<bool>,
    /// Cleartext written, its last line not finished yet.
    line: Vec<u8>,
}

impl Transcript {
    pub fn new(sock: TcpStream, tls_on_wire: bool) -> Transcript {
        Transcript {
            sock,
            tls: Cell::new(tls_on_wire),
            line: Vec::new(),
        }
    }

    /// From now on the bytes on the wire are TLS records.
    pub fn tls_on_wire(&self) {
        self.tls.set(true);
    }
}

impl Read for Transcript {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for Transcript {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sock.write(buf)?;
        if self.tls.get() {
            println!("   ({n} bytes of TLS records)");
            return Ok(n);
        }
        self.line.extend_from_slice(&buf[..n]);
        while let Some(end) = self.line.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.line.drain(..end + 2).collect();
            println!("C: {}", String::from_utf8_lossy(&line[..end]));
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

impl Socket for Transcript {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Socket::shutdown_write(&mut self.sock)
    }
}
