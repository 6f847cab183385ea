//! The certificate checks: a rustls verifier that records what it finds
//! (path to a trusted CA, RFC 7817 name, days to expiry) and lets the
//! handshake go on, so that a bad certificate is reported as a bad
//! certificate and the other checks still run. Signatures in the handshake
//! are still verified.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use starttls::policy::identity::ReferenceIdentifiers;
use starttls::rustls;
use starttls::rustls::client::danger::ServerCertVerifier;
use starttls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified};
use starttls::rustls::client::WebPkiServerVerifier;
use starttls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use starttls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// What the verifier saw, once per connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    /// `Ok(())`: a path to a trusted CA; `Err`: why not.
    pub(crate) chain: Option<Result<(), String>>,
    /// `Ok`: what matched; `Err`: the RFC 7817 / 6125 refusal.
    pub(crate) name: Option<Result<String, String>>,
    /// Seconds from now to notAfter (negative: expired), and notAfter.
    pub(crate) expiry: Option<Result<(i64, String), String>>,
    /// The leaf's subject, for the evidence.
    pub(crate) subject: Option<String>,
    /// Certificates presented (leaf + intermediates).
    pub(crate) presented: usize,
    /// The chain as presented (leaf first), for the DANE checks of
    /// `probe --domain`.
    pub(crate) chain_der: Vec<CertificateDer<'static>>,
}

/// The recording verifier.
#[derive(Debug)]
pub(crate) struct Recorder {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    no_roots: String,
    references: Option<ReferenceIdentifiers>,
    reference_error: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    pub(crate) seen: Arc<Mutex<Seen>>,
}

impl Recorder {
    /// `roots` empty: the chain check reports that no CA was configured.
    pub(crate) fn new(roots: &rustls::RootCertStore, name: &str) -> Recorder {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (webpki, no_roots) = if roots.is_empty() {
            (
                None,
                "no trusted CA certificates (give --ca FILE)".to_string(),
            )
        } else {
            match WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.clone()),
                Arc::clone(&provider),
            )
            .build()
            {
                Ok(v) => (Some(v), String::new()),
                Err(e) => (None, e.to_string()),
            }
        };
        let (references, reference_error) = match ReferenceIdentifiers::configured_host(name) {
            Ok(r) => (Some(r), String::new()),
            Err(e) => (None, format!("{name:?} is not a usable server name: {e}")),
        };
        Recorder {
            webpki,
            no_roots,
            references,
            reference_error,
            provider,
            seen: Arc::new(Mutex::new(Seen::default())),
        }
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = match &self.webpki {
            None => Err(self.no_roots.clone()),
            Some(v) => {
                match v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                    Ok(_) => Ok(()),
                    // webpki checks the path first: a name error means the path
                    // was fine. The name itself is judged below, per RFC 7817.
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    )) => Ok(()),
                    Err(e) => Err(describe(&e)),
                }
            }
        };
        let name = match &self.references {
            None => Err(self.reference_error.clone()),
            Some(r) => match r.verify(end_entity) {
                Ok(m) => Ok(format!("{} matched {}", m.presented, m.reference)),
                Err(e) => Err(e.to_string()),
            },
        };
        let (expiry, subject) = leaf_facts(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Seen {
                chain: Some(chain),
                name: Some(name),
                expiry: Some(expiry),
                subject,
                presented: 1 + intermediates.len(),
                chain_der: std::iter::once(end_entity)
                    .chain(intermediates)
                    .map(|c| c.clone().into_owned())
                    .collect(),
            };
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A readable reason for a certificate error.
fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "no path to a trusted CA (unknown issuer, or a self-signed certificate)".into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the certificate has expired".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the certificate is not valid yet".into(),
        other => other.to_string(),
    }
}

/// Seconds to notAfter and its date, and the subject, from the leaf.
fn leaf_facts(der: &CertificateDer<'_>) -> (Result<(i64, String), String>, Option<String>) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der.as_ref()) {
        Ok((_, cert)) => {
            let not_after = cert.validity().not_after;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let left = not_after.timestamp() - now;
            let date = not_after
                .to_rfc2822()
                .unwrap_or_else(|_| not_after.timestamp().to_string());
            (
                Ok((left, date)),
                Some(starttls::Escaped::new(&cert.subject().to_string()).to_string()),
            )
        }
        Err(e) => (Err(format!("the certificate cannot be parsed: {e}")), None),
    }
}
