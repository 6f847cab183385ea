//! IMAP message framing: lines joined by literals (RFC 9051 §4.3, RFC 7888).
//!
//! A command or response is a line; if the line ends with a literal header
//! (`{n}`, `{n+}`, `~{n}`), exactly `n` octets of data follow and the
//! message continues with the next line. Literal data is counted, never
//! scanned: `STARTTLS\r\n` inside a literal is data, and the line rule of
//! [`crate::framing`] applies only to the lines around it.
//!
//! The framer works on the input buffer in place: a complete message is one
//! contiguous slice (lines, literal data, lines), handed to the grammar
//! without copying.

use crate::framing::{after_cr, scan_line, scan_line_fail_fast, FramingError, LineSkipper, Scan};

use super::syntax::{trailing_literal, LiteralHeader};

/// Size limits the framer enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameLimits {
    /// One physical line, CRLF included.
    pub(crate) line: usize,
    /// One literal.
    pub(crate) literal: u64,
    /// A whole message: lines and literals.
    pub(crate) message: usize,
}

/// What was wrong with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A line broke the line rule.
    Line(FramingError),
    /// A literal header that does not parse (`{12a}`, a count beyond u64).
    BadLiteral,
    /// A literal larger than allowed (or one that would take the message
    /// beyond its limit). Whoever announced a non-synchronizing literal sends
    /// its data anyway, so the stream cannot be resynchronized then.
    LiteralTooLarge { header: LiteralHeader, limit: u64 },
    /// The message grew beyond its limit.
    MessageTooLarge { limit: usize },
}

/// The framer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete message of this many octets, final CRLF included.
    Complete(usize),
    /// Nothing more until more input arrives.
    NeedInput,
    /// A line ended with this literal header; its data comes next. A server
    /// answers a synchronizing literal with a continuation request first.
    Literal(LiteralHeader),
    /// The message is invalid. Drop `consumed` octets; after
    /// `FramingError::TooLong` the rest of that line comes as [`Frame::Skip`].
    Invalid { error: FrameError, consumed: usize },
    /// Drop this many octets silently: the tail of an over-long line whose
    /// error was already reported.
    Skip(usize),
}

/// Incremental framer for one direction of an IMAP connection.
#[derive(Debug, Default)]
pub(crate) struct MessageFramer {
    /// Octets of the current message framed so far.
    pos: usize,
    scanned: usize,
    /// Literal octets still to come.
    literal: u64,
    skipper: LineSkipper,
    /// Client role: a bare LF fails at once ([`scan_line_fail_fast`]).
    fail_fast: bool,
}

impl MessageFramer {
    /// The framer for a client, for which every framing fault is fatal.
    pub(crate) fn for_client() -> Self {
        MessageFramer {
            fail_fast: true,
            ..MessageFramer::default()
        }
    }

    /// Frames the message at the start of `input`.
    pub(crate) fn next(&mut self, input: &[u8], limits: FrameLimits) -> Frame {
        if self.skipper.is_active() {
            // Only ever at the start of a message (pos == 0).
            return match self.skipper.skip(input) {
                0 => Frame::NeedInput,
                n => Frame::Skip(n),
            };
        }
        if self.literal > 0 {
            let avail = input.len().saturating_sub(self.pos) as u64;
            if avail < self.literal {
                return Frame::NeedInput;
            }
            self.pos += self.literal as usize;
            self.literal = 0;
        }
        let rest = input.get(self.pos..).unwrap_or_default();
        let scan = if self.fail_fast {
            scan_line_fail_fast(rest, &mut self.scanned, limits.line)
        } else {
            scan_line(rest, &mut self.scanned, limits.line)
        };
        let len = match scan {
            Scan::Incomplete => return Frame::NeedInput,
            Scan::Line(len) => len,
            Scan::Invalid { len, error } => {
                let consumed = self.pos + len;
                self.reset();
                return Frame::Invalid {
                    error: FrameError::Line(error),
                    consumed,
                };
            }
            Scan::TooLong => {
                let consumed = self.pos + limits.line;
                let after_cr = after_cr(rest, limits.line);
                self.reset();
                self.skipper.start_crlf(after_cr);
                return Frame::Invalid {
                    error: FrameError::Line(FramingError::TooLong { limit: limits.line }),
                    consumed,
                };
            }
        };
        let line = rest.get(..len - 2).unwrap_or_default();
        self.pos += len;
        if self.pos > limits.message {
            let consumed = self.pos;
            self.reset();
            return Frame::Invalid {
                error: FrameError::MessageTooLarge {
                    limit: limits.message,
                },
                consumed,
            };
        }
        match trailing_literal(line) {
            Ok(None) => {
                let n = self.pos;
                self.reset();
                Frame::Complete(n)
            }
            Ok(Some(h)) => {
                let total = (self.pos as u64).saturating_add(h.len);
                let room = (limits.message as u64).saturating_sub(self.pos as u64);
                if h.len > limits.literal || total > limits.message as u64 {
                    let consumed = self.pos;
                    self.reset();
                    return Frame::Invalid {
                        error: FrameError::LiteralTooLarge {
                            header: h,
                            limit: limits.literal.min(room),
                        },
                        consumed,
                    };
                }
                self.literal = h.len;
                Frame::Literal(h)
            }
            Err(_) => {
                let consumed = self.pos;
                self.reset();
                Frame::Invalid {
                    error: FrameError::BadLiteral,
                    consumed,
                }
            }
        }
    }

    /// Octets of the current message framed so far (its lines and literals).
    pub(crate) fn framed(&self) -> usize {
        self.pos
    }

    /// Gives up the current message after a literal header was refused:
    /// returns how many octets it spans so far, and starts afresh.
    pub(crate) fn abandon(&mut self) -> usize {
        let n = self.pos;
        self.reset();
        n
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.scanned = 0;
        self.literal = 0;
    }
}
