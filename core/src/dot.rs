//! Dot-stuffed bodies, shared by SMTP `DATA` (RFC 5321 §4.5.2) and POP3
//! multi-line responses (RFC 1939 §3): streamed unstuffing on the receiving
//! side, stuffing on the sending side.
//!
//! The receiver never buffers a whole message. It hands out pieces whose
//! boundaries depend only on the content, so the same bytes give the same
//! pieces however they were split into reads: a piece ends before a line that
//! starts with a (stuffed) dot, at the end of the data, or at the first line
//! end after [`PIECE`] octets. Pieces are zero-copy slices of
//! the input.
//!
//! The body obeys the crate's line rule (see [`crate::framing`]): a bare CR,
//! bare LF, NUL or over-long line makes the message *rejected*. Reading goes
//! on to the real end of data (`CRLF.CRLF`), so the stream stays in step, and
//! no further pieces are handed out.
//!
//! Only `CRLF.CRLF` ends the data (RFC 5321 §4.1.1.4), the "SMTP smuggling"
//! defence: body lines end at CRLF and only there
//! ([`scan_line`]), also while a rejected message is skipped and while
//! the rest of an over-long line is skipped. `LF.LF`, `LF.CRLF`, `CR.CRLF`,
//! `CRLF.CR` and `CRLF.LF` are octets inside a (broken) body line, so nothing
//! after them can be read as a command until the real `CRLF.CRLF`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::framing::{after_cr, scan_line, FramingError, LineSkipper, Scan};
use crate::upgrade::Io;

/// Message bytes are handed out in pieces of at most this size (bodies at
/// line ends; SMTP `BDAT` chunks exactly).
pub(crate) const PIECE: usize = 16 * 1024;

/// What the reader found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataStep {
    /// Message bytes (unstuffed, CRLF line ends kept).
    Piece(Bytes),
    /// The `.` line was read: the message is complete. `rejected` names the
    /// first framing rule the body broke, if any.
    End { rejected: Option<FramingError> },
    /// Nothing more until more input arrives.
    NeedInput,
}

/// Incremental reader for one dot-stuffed body.
#[derive(Debug, Default)]
pub(crate) struct DataReader {
    /// Octets at the start of the input that form the current run of
    /// complete, unstuffed lines not yet handed out.
    run: usize,
    scanned: usize,
    skipper: LineSkipper,
    rejected: Option<FramingError>,
}

impl DataReader {
    /// Reads as far as the next piece or the end of data. `limit` is the text
    /// line limit including CRLF.
    pub(crate) fn step<E>(&mut self, io: &mut Io<'_, E>, limit: usize) -> DataStep {
        loop {
            if self.skipper.is_active() {
                let n = self.skipper.skip(io.input());
                io.skip(n);
                if self.skipper.is_active() {
                    return DataStep::NeedInput;
                }
                continue;
            }
            let rest = io.input().get(self.run..).unwrap_or_default();
            // One more octet for a stuffed dot (RFC 5321 §4.5.3.1.6), and only
            // for a line that starts with one.
            let line_limit = if rest.first() == Some(&b'.') {
                limit.saturating_add(1)
            } else {
                limit
            };
            match scan_line(rest, &mut self.scanned, line_limit) {
                Scan::Incomplete => return DataStep::NeedInput,
                Scan::Line(len) => {
                    let end = rest.get(..len) == Some(b".\r\n".as_slice());
                    let dotted = rest.first() == Some(&b'.');
                    if (end || dotted) && self.run > 0 {
                        // Hand out the run before this line; the line itself
                        // is looked at again on the next call.
                        if let Some(piece) = self.flush(io) {
                            return DataStep::Piece(piece);
                        }
                        continue;
                    }
                    if end {
                        io.skip(len);
                        return DataStep::End {
                            rejected: self.rejected.take(),
                        };
                    }
                    if self.rejected.is_some() {
                        io.skip(len);
                        continue;
                    }
                    if dotted {
                        // Unstuff: the rest of this line starts the next run.
                        io.skip(1);
                        self.run = len - 1;
                    } else {
                        self.run += len;
                    }
                    if self.run >= PIECE {
                        if let Some(piece) = self.flush(io) {
                            return DataStep::Piece(piece);
                        }
                    }
                }
                Scan::Invalid { len, error } => {
                    self.rejected.get_or_insert(error);
                    io.skip(self.run + len);
                    self.run = 0;
                }
                Scan::TooLong => {
                    self.rejected.get_or_insert(FramingError::TooLong { limit });
                    // The run and the first `line_limit` octets of the line
                    // (which hold no CRLF) go; the skipper finds its end,
                    // the next CRLF (a bare LF does not end it).
                    let cut = self.run + line_limit;
                    let after_cr = after_cr(io.input(), cut);
                    io.skip(cut);
                    self.run = 0;
                    self.skipper.start_crlf(after_cr);
                }
            }
        }
    }

    fn flush<E>(&mut self, io: &mut Io<'_, E>) -> Option<Bytes> {
        let run = std::mem::take(&mut self.run);
        if self.rejected.is_some() {
            io.skip(run);
            None
        } else {
            Some(io.take(run))
        }
    }
}

/// Dot-stuffs a body, normalizing every line end to CRLF
/// (a lone CR or LF becomes CRLF, so the body cannot smuggle an end of data).
#[derive(Debug, Clone)]
pub(crate) struct DotStuffer {
    at_line_start: bool,
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            pending_cr: false,
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `body` to `out`.
    pub(crate) fn encode(&mut self, body: &[u8], out: &mut BytesMut) {
        out.reserve(body.len() + body.len() / 64 + 4);
        for &b in body {
            if self.pending_cr {
                self.pending_cr = false;
                out.put_slice(b"\r\n");
                self.at_line_start = true;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    out.put_slice(b"\r\n");
                    self.at_line_start = true;
                }
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.put_u8(b'.');
                    }
                    out.put_u8(b);
                    self.at_line_start = false;
                }
            }
        }
    }

    /// Ends the body: a final CRLF if the body did not end with one, then
    /// `.CRLF`.
    pub(crate) fn finish(&mut self, out: &mut BytesMut) {
        if self.pending_cr || !self.at_line_start {
            out.put_slice(b"\r\n");
        }
        out.put_slice(b".\r\n");
        *self = DotStuffer::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(parts: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = BytesMut::new();
        for p in parts {
            s.encode(p, &mut out);
        }
        s.finish(&mut out);
        out.to_vec()
    }

    #[test]
    fn stuffs_leading_dots_and_terminates() {
        assert_eq!(stuff(&[b"a\r\n.b\r\n..\r\n"]), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(stuff(&[b".x"]), b"..x\r\n.\r\n");
        assert_eq!(stuff(&[b""]), b".\r\n");
    }

    #[test]
    fn normalizes_bare_cr_and_lf_across_calls() {
        assert_eq!(stuff(&[b"a\n.\nb"]), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(stuff(&[b"a\r", b"\n.b\r"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(&[b"a\rb"]), b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn no_body_can_end_the_data_early_on_the_wire() {
        // Every body over {CR, LF, '.', 'a'} up to 7 octets, given whole and
        // split in two at every point: on the wire (after the CRLF of the
        // DATA line) the only CRLF.CRLF is the final one, and every CR and
        // LF is part of a CRLF.
        let alphabet = [b'\r', b'\n', b'.', b'a'];
        let mut frontier: Vec<Vec<u8>> = vec![Vec::new()];
        let mut all = frontier.clone();
        for _ in 0..7 {
            frontier = frontier
                .iter()
                .flat_map(|b| {
                    alphabet.iter().map(move |&c| {
                        let mut v = b.clone();
                        v.push(c);
                        v
                    })
                })
                .collect();
            all.extend(frontier.iter().cloned());
        }
        for body in &all {
            for cut in 0..=body.len() {
                let (x, y) = body.split_at(cut);
                let mut wire = b"\r\n".to_vec();
                wire.extend(stuff(&[x, y]));
                let first = wire.windows(5).position(|w| w == b"\r\n.\r\n");
                assert_eq!(first, Some(wire.len() - 5), "{body:?} cut {cut}: {wire:?}");
                let mut rest = wire.as_slice();
                while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                    assert!(rest[i..].starts_with(b"\r\n"), "{body:?}: {wire:?}");
                    rest = &rest[i + 2..];
                }
            }
        }
    }
}
