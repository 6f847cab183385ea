//! A throwaway PKI: a CA and a leaf for `localhost`, 127.0.0.1 and ::1;
//! and, for SASL EXTERNAL, a CA for client certificates and a client
//! certificate it signed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use starttls::rustls;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Generated certificates and the rustls configurations built on them.
pub struct Pki {
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pki {
    /// Makes a fresh CA and leaf.
    pub fn generate() -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "starttls conformance CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?
        .signed_by(&leaf_key, &issuer)?;
        Ok(Pki {
            ca_der: ca.der().clone(),
            leaf_der: leaf.der().clone(),
            key_der: leaf_key.serialize_der(),
        })
    }

    /// A server configuration presenting the leaf.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![self.leaf_der.clone()], key)
                .expect("a freshly generated key and certificate always match"),
        )
    }

    /// A client configuration trusting only the CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("a freshly generated CA certificate always parses");
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// A CA for client certificates and a client certificate it signed, PEM:
/// for `serve --client-ca` and `connect --client-cert`/`--client-key` (or
/// curl's `--cert`/`--key`).
pub struct ClientPki {
    /// The client CA's certificate (what `serve --client-ca` trusts).
    pub ca_pem: String,
    /// The client certificate.
    pub cert_pem: String,
    /// Its private key (PKCS #8).
    pub key_pem: String,
}

impl ClientPki {
    /// A fresh CA and a client certificate for `user`: subject `CN=user,
    /// O=starttls test`, subjectAltName email `user@example.org`, extended
    /// key usage clientAuth.
    pub fn generate(user: &str) -> Result<ClientPki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "starttls client CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "starttls test");
        params.subject_alt_names.push(SanType::Rfc822Name(
            format!("{user}@example.org").try_into()?,
        ));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ClientPki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `<prefix>-ca.pem`, `<prefix>-cert.pem` and `<prefix>-key.pem`
    /// into `dir`; returns their paths in that order.
    pub fn write(&self, dir: &Path, prefix: &str) -> std::io::Result<[PathBuf; 3]> {
        let paths = [
            dir.join(format!("{prefix}-ca.pem")),
            dir.join(format!("{prefix}-cert.pem")),
            dir.join(format!("{prefix}-key.pem")),
        ];
        for (path, pem) in paths
            .iter()
            .zip([&self.ca_pem, &self.cert_pem, &self.key_pem])
        {
            std::fs::write(path, pem)?;
        }
        Ok(paths)
    }
}
