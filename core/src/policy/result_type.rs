//! The TLS-RPT result types (RFC 8460 §4.3), in a module of their own so
//! that MTA-STS can say what to report without importing the report
//! builder (which imports MTA-STS decisions). Public as
//! [`tlsrpt::ResultType`](super::tlsrpt::ResultType).

use std::fmt;

/// A TLS-RPT result type (RFC 8460 §4.3, registry in §6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResultType {
    /// `starttls-not-supported`: the MX did not support STARTTLS (§4.3.1).
    StartTlsNotSupported,
    /// `certificate-host-mismatch`: the certificate does not match the MX
    /// host (§4.3.1).
    CertificateHostMismatch,
    /// `certificate-expired` (§4.3.1).
    CertificateExpired,
    /// `certificate-not-trusted`: untrusted or unknown CA, chain errors, …
    /// (§4.3.1).
    CertificateNotTrusted,
    /// `validation-failure`: any other failure; give a reason code (§4.3.1,
    /// §4.3.3).
    ValidationFailure,
    /// `tlsa-invalid`: DANE TLSA records did not validate (§4.3.2.1).
    TlsaInvalid,
    /// `dnssec-invalid`: no valid DNSSEC-signed records (§4.3.2.1).
    DnssecInvalid,
    /// `dane-required`: DANE was required but no TLSA records (§4.3.2.1).
    DaneRequired,
    /// `sts-policy-fetch-error`: the MTA-STS policy could not be fetched
    /// (§4.3.2.2).
    StsPolicyFetchError,
    /// `sts-policy-invalid`: the MTA-STS policy did not validate
    /// (§4.3.2.2).
    StsPolicyInvalid,
    /// `sts-webpki-invalid`: the MTA-STS policy could not be authenticated
    /// with PKIX (§4.3.2.2).
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every result type, in registry order.
    pub const ALL: [ResultType; 11] = [
        ResultType::StartTlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::TlsaInvalid,
        ResultType::DnssecInvalid,
        ResultType::DaneRequired,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StartTlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// The result type with this name, if registered.
    pub fn from_name(name: &str) -> Option<ResultType> {
        ResultType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for ResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
