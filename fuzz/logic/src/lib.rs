//! The checks behind the cargo-fuzz targets in `fuzz/`.
//!
//! Each check takes raw fuzzer input and panics if an invariant breaks. The
//! fuzz targets are one-line wrappers; the tests in this crate replay the
//! committed seeds (`fuzz/seeds/<target>/`) and every saved crash
//! (`fuzz/regressions/<target>/`) through the same functions, so stable
//! toolchains run the checks too.

#![forbid(unsafe_code)]

pub mod appvalues;
pub mod parsers;
pub mod policy;
pub mod sessions;
pub mod smuggling;

/// A check: panics if the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every check, by target name.
pub const TARGETS: &[(&str, Check)] = &[
    ("smtp_command", parsers::smtp_command),
    ("smtp_reply", parsers::smtp_reply),
    ("imap_command", parsers::imap_command),
    ("imap_response", parsers::imap_response),
    ("pop3_command", parsers::pop3_command),
    ("pop3_response", parsers::pop3_response),
    ("roundtrip_smtp", parsers::roundtrip_smtp),
    ("roundtrip_imap", parsers::roundtrip_imap),
    ("roundtrip_pop3", parsers::roundtrip_pop3),
    ("session_smtp_server", sessions::session_smtp_server),
    ("session_smtp_client", sessions::session_smtp_client),
    ("session_imap_server", sessions::session_imap_server),
    ("session_imap_client", sessions::session_imap_client),
    ("session_pop3_server", sessions::session_pop3_server),
    ("session_pop3_client", sessions::session_pop3_client),
    ("taint_smtp", sessions::taint_smtp),
    ("taint_imap", sessions::taint_imap),
    ("taint_pop3", sessions::taint_pop3),
    ("split_invariance", sessions::split_invariance),
    ("policy_parsers", policy::policy_parsers),
    ("app_values", appvalues::app_values),
    ("smuggling_oracle", smuggling::smuggling_oracle),
];
