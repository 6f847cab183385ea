//! The reference rules the fast paths replaced, for the fuzz targets.
//!
//! Built only under `cfg(fuzzing)` (cargo-fuzz sets it), hidden from the
//! documentation and not part of the API. Each function panics when a fast
//! path and the rule it replaced (kept, test-only otherwise) disagree on
//! `input`, so the fuzzers pin the speed work to the rules, not only the
//! borrowed form to the owned one.

/// SMTP: the domain, dot-string, quoted-string, IPv4-literal and
/// esmtp-value scans, the parameter-list check, NOTIFY and the verb split.
pub fn smtp_command(input: &[u8]) {
    crate::smtp::check_fast_paths(input);
}

/// IMAP: the argument walk's list end (`skip_list`) against the validating
/// `list` rule.
pub fn imap_arguments(input: &[u8]) {
    crate::imap::check_skip_list(input);
}
