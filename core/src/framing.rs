//! Line framing shared by every protocol.
//!
//! Boundaries are found here, *before* any grammar runs: the grammars only
//! ever see one complete line (or an exact number of octets for literals and
//! `BDAT` chunks). That is also where the upgrade cut is made, so "the end of
//! the line that carried STARTTLS" is a byte offset this module computed, not
//! something a parser guessed.
//!
//! # The line rule
//!
//! SMTP (RFC 5321 §2.3.8), IMAP (RFC 9051 §2.2) and POP3 (RFC 1939 §3) all end
//! lines with CRLF, and this crate applies one explicit rule to all three:
//!
//! 1. A line ends at CRLF and only there.
//! 2. A LF not preceded by CR (*bare LF*), a CR not followed by LF (*bare CR*)
//!    and a NUL octet anywhere in a line are errors. A bare LF does not end
//!    the offending line: it runs on to the next CRLF and is consumed whole,
//!    so the stream stays in step with a peer (or a front end) that splits on
//!    CRLF. Accepting bare LF as a line end is how "SMTP smuggling" (2023) and
//!    several STARTTLS injection variants worked: two parsers that disagree on
//!    where a line ends disagree on where a message ends or where the upgrade
//!    point is.
//! 3. A line longer than its limit (the limit counts the CRLF) is an error as
//!    soon as `limit` octets have arrived with no CRLF among them; the
//!    remainder of that line is then skipped up to its CRLF. The decision depends only on
//!    the bytes, never on how they were split into reads, and memory stays
//!    bounded by the limit.
//!
//! So `NOOP<LF>STARTTLS<CR><LF>` (SMTP), `a NOOP<LF>b STARTTLS<CR><LF>`
//! (IMAP) and `NOOP<LF>STLS<CR><LF>` (POP3) are each one refused line, and
//! `a<LF>.<CR><LF>` inside `DATA` is one broken body line, never the end of
//! the message. Only SMTP's opt-in
//! `ServerConfig::insecure_bare_lf_line_ends` (`scan_lf_line`) lets a bare
//! LF end a command line.
//!
//! 8-bit octets are not a framing matter: SMTPUTF8, UTF8=ACCEPT and POP3 UTF8
//! allow them, so each grammar decides.

use std::fmt;

/// Why a line was refused by the framing rule (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// No CRLF within `limit` octets.
    TooLong {
        /// The limit in force, in octets including CRLF.
        limit: usize,
    },
    /// A LF that is not preceded by CR.
    BareLf,
    /// A CR that is not followed by LF.
    BareCr,
    /// A NUL octet inside a line.
    Nul,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::TooLong { limit } => {
                write!(f, "line longer than {limit} octets")
            }
            FramingError::BareLf => f.write_str("bare LF (line feed without carriage return)"),
            FramingError::BareCr => f.write_str("bare CR (carriage return without line feed)"),
            FramingError::Nul => f.write_str("NUL octet in a line"),
        }
    }
}

impl std::error::Error for FramingError {}

/// What [`scan_line`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A complete, valid line of `len` octets including its CRLF.
    Line(usize),
    /// No LF yet and fewer than `limit` octets: wait for more input.
    Incomplete,
    /// A complete line that breaks the rule; `len` octets (through its LF)
    /// must be consumed.
    Invalid { len: usize, error: FramingError },
    /// `limit` octets without a LF: the caller must report the error, consume
    /// what is buffered and skip to the next LF with [`LineSkipper`].
    TooLong,
}

/// Looks for one line at the start of `buf` that ends at CRLF and only
/// there: a LF not preceded by CR does *not* end the line. It is an octet
/// inside the line, and the line, once its CRLF arrives, is
/// [`Scan::Invalid`] with the first fault found in it (bare LF, bare CR or
/// NUL), `len` reaching through that CRLF.
///
/// This is the scan for every protocol and role: two parsers that disagree
/// on where a line ends disagree on where a message ends ("SMTP smuggling",
/// 2023) or on which line carried `STARTTLS`. Were a bare LF a line end,
/// `a<LF>.<CR><LF>` would be two lines, the second one the end of data, and
/// `a NOOP<LF>b STARTTLS<CR><LF>` two commands; here each is one broken line,
/// as a front end that splits on CRLF sees it (RFC 5321 §2.3.8, RFC 9051
/// §2.2, RFC 1939 §3).
///
/// `scanned` is how many leading octets of `buf` are already known to hold
/// no line end (from an earlier call on the same, grown buffer); it keeps
/// byte-by-byte delivery linear. It is updated on `Incomplete`. After [`Scan::TooLong`]
/// the caller consumes `limit` octets and skips the rest with
/// [`LineSkipper::start_crlf`], telling it whether the last consumed octet
/// was a CR.
#[inline]
pub(crate) fn scan_line(buf: &[u8], scanned: &mut usize, limit: usize) -> Scan {
    scan_line_as(buf, scanned, limit, false)
}

/// [`scan_line`] for a client, for which every framing fault is fatal: a
/// bare LF is reported as soon as it arrives ([`Scan::Invalid`] with the
/// first fault of the line up to it; `len` reaches only that LF), rather
/// than once the line's CRLF comes, so a client does not wait on a broken
/// line (a hostile server could send it and nothing more). The verdict
/// still depends only on the bytes: the first fault up to the first bare LF
/// is the line's first fault.
#[inline]
pub(crate) fn scan_line_fail_fast(buf: &[u8], scanned: &mut usize, limit: usize) -> Scan {
    scan_line_as(buf, scanned, limit, true)
}

#[inline]
fn scan_line_as(buf: &[u8], scanned: &mut usize, limit: usize, fail_fast: bool) -> Scan {
    let window = buf.len().min(limit);
    let mut from = (*scanned).min(window);
    while let Some(i) = buf.get(from..window).and_then(|w| memchr::memchr(b'\n', w)) {
        let lf = from + i;
        match lf
            .checked_sub(1)
            .and_then(|cr| buf.get(..cr).zip(buf.get(cr)))
        {
            Some((body, b'\r')) => {
                *scanned = 0;
                let len = lf + 1;
                return match first_fault(body) {
                    None => Scan::Line(len),
                    Some(error) => Scan::Invalid { len, error },
                };
            }
            _ if fail_fast => {
                *scanned = 0;
                let len = lf + 1;
                let error = buf
                    .get(..len)
                    .and_then(first_fault)
                    .unwrap_or(FramingError::BareLf);
                return Scan::Invalid { len, error };
            }
            // A bare LF: part of the line, which goes on.
            _ => from = lf + 1,
        }
    }
    if buf.len() >= limit {
        *scanned = 0;
        Scan::TooLong
    } else {
        *scanned = window;
        Scan::Incomplete
    }
}

/// Looks for one line at the start of `buf` that ends at CRLF *or at a bare
/// LF*: the lenient scan behind
/// [`ServerConfig::insecure_bare_lf_line_ends`](crate::smtp::ServerConfig::insecure_bare_lf_line_ends).
/// A bare CR or NUL inside the line is still [`Scan::Invalid`]. Strip the
/// line end with [`without_line_end`].
#[inline]
pub(crate) fn scan_lf_line(buf: &[u8], scanned: &mut usize, limit: usize) -> Scan {
    let window = buf.len().min(limit);
    let from = (*scanned).min(window);
    match buf.get(from..window).and_then(|w| memchr::memchr(b'\n', w)) {
        Some(i) => {
            let lf = from + i;
            *scanned = 0;
            let len = lf + 1;
            let body = buf.get(..lf).unwrap_or_default();
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            match first_fault(body) {
                None => Scan::Line(len),
                Some(error) => Scan::Invalid { len, error },
            }
        }
        None if buf.len() >= limit => {
            *scanned = 0;
            Scan::TooLong
        }
        None => {
            *scanned = window;
            Scan::Incomplete
        }
    }
}

/// The first octet of a line (without its line end) that breaks the line
/// rule, as an error.
fn first_fault(body: &[u8]) -> Option<FramingError> {
    match memchr::memchr3(b'\r', b'\n', 0, body).and_then(|j| body.get(j)) {
        None => None,
        Some(b'\r') => Some(FramingError::BareCr),
        Some(b'\n') => Some(FramingError::BareLf),
        Some(_) => Some(FramingError::Nul),
    }
}

/// Whether the last of the first `limit` octets of `buf` (the ones consumed
/// after [`Scan::TooLong`]) is a CR, for [`LineSkipper::start_crlf`].
pub(crate) fn after_cr(buf: &[u8], limit: usize) -> bool {
    limit
        .checked_sub(1)
        .and_then(|i| buf.get(i))
        .is_some_and(|&b| b == b'\r')
}

/// Skips the remainder of an over-long line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LineSkipper {
    active: bool,
    /// The line ends at CRLF only ([`scan_line`]), not at any LF.
    crlf: bool,
    /// The last octet skipped was a CR (CRLF mode).
    cr: bool,
}

impl LineSkipper {
    /// Starts skipping (after [`Scan::TooLong`] from [`scan_lf_line`]): the
    /// line ends at the next LF.
    pub(crate) fn start_lf(&mut self) {
        *self = LineSkipper {
            active: true,
            crlf: false,
            cr: false,
        };
    }

    /// Starts skipping after [`Scan::TooLong`] from [`scan_line`]: the
    /// line ends at the next CRLF, and a bare LF does not end it. `after_cr`:
    /// the last octet consumed before skipping was a CR, so a LF first ends
    /// the line.
    pub(crate) fn start_crlf(&mut self, after_cr: bool) {
        *self = LineSkipper {
            active: true,
            crlf: true,
            cr: after_cr,
        };
    }

    /// `true` while the rest of an over-long line is being skipped.
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// How many octets at the start of `buf` belong to the skipped line. When
    /// the LF is among them, skipping ends.
    pub(crate) fn skip(&mut self, buf: &[u8]) -> usize {
        if !self.active {
            return 0;
        }
        if !self.crlf {
            return match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    self.active = false;
                    i + 1
                }
                None => buf.len(),
            };
        }
        let mut from = 0;
        while let Some(i) = buf.get(from..).and_then(|w| memchr::memchr(b'\n', w)) {
            let lf = from + i;
            let cr = match lf.checked_sub(1) {
                Some(p) => buf.get(p) == Some(&b'\r'),
                None => self.cr,
            };
            if cr {
                self.active = false;
                self.cr = false;
                return lf + 1;
            }
            from = lf + 1;
        }
        if let Some(&last) = buf.last() {
            self.cr = last == b'\r';
        }
        buf.len()
    }
}

/// Strips the CRLF from a line returned by [`scan_line`].
#[inline]
pub(crate) fn without_crlf(line: &bytes::Bytes) -> bytes::Bytes {
    line.slice(..line.len().saturating_sub(2))
}

/// Strips the line end (CRLF or a bare LF) from a line returned by
/// [`scan_lf_line`].
#[inline]
pub(crate) fn without_line_end(line: &bytes::Bytes) -> bytes::Bytes {
    let n = match line.as_ref() {
        [.., b'\r', b'\n'] => 2,
        [.., b'\n'] => 1,
        _ => 0,
    };
    line.slice(..line.len().saturating_sub(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(buf: &[u8], limit: usize) -> Scan {
        let mut s = 0;
        scan_line(buf, &mut s, limit)
    }

    #[test]
    fn complete_line() {
        assert_eq!(scan(b"EHLO x\r\nRSET\r\n", 512), Scan::Line(8));
        assert_eq!(scan(b"\r\n", 512), Scan::Line(2));
    }

    #[test]
    fn incomplete_and_cr_at_end() {
        assert_eq!(scan(b"EHLO x", 512), Scan::Incomplete);
        assert_eq!(scan(b"EHLO x\r", 512), Scan::Incomplete);
    }

    #[test]
    fn bare_lf_bare_cr_nul() {
        assert_eq!(
            scan(b"EHLO x\nRSET\r\n", 512),
            Scan::Invalid {
                len: 13,
                error: FramingError::BareLf
            }
        );
        assert_eq!(scan(b"\n", 512), Scan::Incomplete);
        assert_eq!(
            scan(b"\n\r\n", 512),
            Scan::Invalid {
                len: 3,
                error: FramingError::BareLf
            }
        );
        assert_eq!(
            scan(b"EH\rLO\r\n", 512),
            Scan::Invalid {
                len: 7,
                error: FramingError::BareCr
            }
        );
        assert_eq!(
            scan(b"EH\0LO\r\n", 512),
            Scan::Invalid {
                len: 7,
                error: FramingError::Nul
            }
        );
    }

    #[test]
    fn limit_counts_crlf() {
        // 4 octets + CRLF = 6: fits a limit of 6, not of 5.
        assert_eq!(scan(b"abcd\r\n", 6), Scan::Line(6));
        assert_eq!(scan(b"abcd\r\n", 5), Scan::TooLong);
        assert_eq!(scan(b"abcd", 5), Scan::Incomplete);
        assert_eq!(scan(b"abcde", 5), Scan::TooLong);
    }

    #[test]
    fn resumes_scanning() {
        let mut s = 0;
        assert_eq!(scan_line(b"abc", &mut s, 100), Scan::Incomplete);
        assert_eq!(s, 3);
        assert_eq!(scan_line(b"abc\r\n", &mut s, 100), Scan::Line(5));
        assert_eq!(s, 0);
    }

    #[test]
    fn skipper_finds_the_end_of_the_long_line() {
        let mut k = LineSkipper::default();
        k.start_lf();
        assert_eq!(k.skip(b"xxxx"), 4);
        assert!(k.is_active());
        assert_eq!(k.skip(b"yy\r\nNOOP\r\n"), 4);
        assert!(!k.is_active());
        assert_eq!(k.skip(b"NOOP\r\n"), 0);
    }

    #[test]
    fn same_verdict_for_every_split() {
        // Feeding a growing prefix never changes the verdict once it is known.
        let input = b"MAIL FROM:<a@b>\r\nxx\ny\r\n";
        let mut s = 0;
        let mut first = None;
        for end in 0..=input.len() {
            match scan_line(&input[..end], &mut s, 512) {
                Scan::Incomplete => assert!(first.is_none()),
                v => {
                    first.get_or_insert(v);
                    assert_eq!(Some(v), first);
                }
            }
        }
        assert_eq!(first, Some(Scan::Line(17)));
    }

    #[test]
    fn fail_fast_reports_the_first_fault_at_the_bare_lf() {
        let fast = |buf: &[u8]| {
            let mut s = 0;
            scan_line_fail_fast(buf, &mut s, 512)
        };
        let bare_lf = Scan::Invalid {
            len: 6,
            error: FramingError::BareLf,
        };
        assert_eq!(fast(b"220 a\n"), bare_lf);
        assert_eq!(fast(b"220 a\nb\r\n"), bare_lf);
        assert_eq!(
            fast(b"2\r0 a\n"),
            Scan::Invalid {
                len: 6,
                error: FramingError::BareCr
            }
        );
        assert_eq!(fast(b"220 a\r\n"), Scan::Line(7));
        assert_eq!(fast(b"220 a\r"), Scan::Incomplete);
        // Byte by byte: the same verdict, at the LF.
        let mut s = 0;
        let input = b"220 a\nb\r\n";
        let first = (1..=input.len())
            .map(|end| scan_line_fail_fast(&input[..end], &mut s, 512))
            .find(|v| *v != Scan::Incomplete);
        assert_eq!(first, Some(bare_lf));
    }

    #[test]
    fn crlf_scan_runs_past_bare_lf_to_the_crlf() {
        assert_eq!(scan(b"NOOP\r\nX", 512), Scan::Line(6));
        assert_eq!(
            scan(b"NOOP\nSTARTTLS\r\nNOOP\r\n", 512),
            Scan::Invalid {
                len: 15,
                error: FramingError::BareLf
            }
        );
        assert_eq!(scan(b"a\n.\n", 512), Scan::Incomplete);
        assert_eq!(
            scan(b"a\n.\r\n", 512),
            Scan::Invalid {
                len: 5,
                error: FramingError::BareLf
            }
        );
        // The first fault names the line.
        assert_eq!(
            scan(b"a\rb\nc\0\r\n", 512),
            Scan::Invalid {
                len: 8,
                error: FramingError::BareCr
            }
        );
        assert_eq!(
            scan(b"\0\n\r\n", 512),
            Scan::Invalid {
                len: 4,
                error: FramingError::Nul
            }
        );
        // Bare LFs count towards the limit.
        assert_eq!(scan(b"\n\n\n\n\n", 5), Scan::TooLong);
        assert_eq!(scan(b"abc\r\n", 5), Scan::Line(5));
        assert_eq!(scan(b"abcd\r\n", 5), Scan::TooLong);
    }

    #[test]
    fn crlf_scan_same_verdict_for_every_split() {
        let input = b"x\n.\r\nMAIL FROM:<e@x>\r\n.\r\n";
        let mut s = 0;
        let mut first = None;
        for end in 0..=input.len() {
            match scan_line(&input[..end], &mut s, 512) {
                Scan::Incomplete => assert!(first.is_none()),
                v => {
                    first.get_or_insert(v);
                    assert_eq!(Some(v), first);
                }
            }
        }
        assert_eq!(
            first,
            Some(Scan::Invalid {
                len: 5,
                error: FramingError::BareLf
            })
        );
    }

    #[test]
    fn lf_scan_lets_a_bare_lf_end_the_line() {
        let mut s = 0;
        assert_eq!(scan_lf_line(b"NOOP\nX", &mut s, 512), Scan::Line(5));
        assert_eq!(scan_lf_line(b"NOOP\r\nX", &mut s, 512), Scan::Line(6));
        assert_eq!(
            scan_lf_line(b"NO\rOP\n", &mut s, 512),
            Scan::Invalid {
                len: 6,
                error: FramingError::BareCr
            }
        );
        let line = bytes::Bytes::from_static(b"NOOP\n");
        assert_eq!(without_line_end(&line).as_ref(), b"NOOP");
        let line = bytes::Bytes::from_static(b"NOOP\r\n");
        assert_eq!(without_line_end(&line).as_ref(), b"NOOP");
    }

    #[test]
    fn crlf_skipper_ignores_bare_lf_and_sees_a_cr_across_calls() {
        let mut k = LineSkipper::default();
        k.start_crlf(false);
        assert_eq!(k.skip(b"xx\n.\n"), 5);
        assert!(k.is_active());
        assert_eq!(k.skip(b"\n.\r\nMAIL\r\n"), 4);
        assert!(!k.is_active());
        k.start_crlf(false);
        assert_eq!(k.skip(b"x\r"), 2);
        assert_eq!(k.skip(b""), 0);
        assert_eq!(k.skip(b"\nNOOP\r\n"), 1);
        assert!(!k.is_active());
        // The CR was the last octet consumed before skipping started.
        k.start_crlf(true);
        assert_eq!(k.skip(b"\nNOOP\r\n"), 1);
        k.start_crlf(false);
        assert_eq!(k.skip(b"\nNOOP\r\n"), 7);
    }
}
