//! The rustls glue the policy verifiers share: carrying a policy error
//! through `rustls::Error` and back, and the handshake-signature checks that
//! are the same for every verifier.

use std::sync::Arc;

use rustls::{CertificateError, OtherError};

/// `error` as the certificate error a verifier returns to rustls: a
/// `CertificateError::Other` holding it, so that [`from_rustls`] can give
/// it back with its own `Display`.
pub(super) fn to_rustls<E>(error: E) -> rustls::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// The `E` inside a rustls error made by [`to_rustls`], if that is what it
/// is (rustls shows such errors with `Debug`).
pub(super) fn from_rustls<E>(error: &rustls::Error) -> Option<&E>
where
    E: std::error::Error + 'static,
{
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref()
        }
        _ => None,
    }
}

/// The three `ServerCertVerifier` methods that check handshake signatures
/// with the provider's algorithms, for a verifier whose
/// `WebPkiSupportedAlgorithms` is the field `algorithms`.
macro_rules! verify_signatures_with_algorithms {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

pub(super) use verify_signatures_with_algorithms;
