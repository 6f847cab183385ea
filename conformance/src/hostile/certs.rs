//! Certificates made at run time: the CA a client is told to trust (`{ca}`),
//! a good leaf it signed, and the bad certificates of the `certificate`
//! cases.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use starttls::rustls;
use starttls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Which certificate the hostile server presents after the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// A leaf for `localhost`, 127.0.0.1 and ::1 signed by the trusted CA.
    Good,
    /// A self-signed leaf with the right names.
    SelfSigned,
    /// The right names, signed by a CA the client was not told to trust.
    UnknownCa,
    /// Signed by the trusted CA, for `wrong.example` only.
    WrongName,
    /// Signed by the trusted CA, expired in 2020.
    Expired,
    /// Signed by the trusted CA, valid from 2090.
    NotYetValid,
}

impl CertKind {
    /// Every kind, in the catalog's order.
    pub const ALL: [CertKind; 6] = [
        CertKind::Good,
        CertKind::SelfSigned,
        CertKind::UnknownCa,
        CertKind::WrongName,
        CertKind::Expired,
        CertKind::NotYetValid,
    ];

    fn index(self) -> usize {
        CertKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// The trusted CA (PEM) and one server configuration per [`CertKind`].
pub struct Certs {
    /// The CA certificate the client is told to trust.
    pub ca_pem: String,
    configs: Vec<Arc<rustls::ServerConfig>>,
}

const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn ca(name: &str) -> Result<(rcgen::Certificate, Issuer<'static, KeyPair>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok((cert, Issuer::new(params, key)))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

impl Certs {
    /// A fresh CA and every kind of leaf.
    pub fn generate() -> Result<Certs, String> {
        let e = |e: rcgen::Error| e.to_string();
        let (ca_cert, issuer) = ca("starttls hostile CA").map_err(e)?;
        let (_, other) = ca("starttls hostile UNTRUSTED CA").map_err(e)?;
        let mut configs = Vec::new();
        for kind in CertKind::ALL {
            let key = KeyPair::generate().map_err(e)?;
            let names: Vec<String> = match kind {
                CertKind::WrongName => vec!["wrong.example".into()],
                _ => NAMES.iter().map(|s| s.to_string()).collect(),
            };
            let mut params = CertificateParams::new(names).map_err(e)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("hostile {kind:?}"));
            match kind {
                CertKind::Expired => {
                    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
                    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
                }
                CertKind::NotYetValid => {
                    params.not_before = rcgen::date_time_ymd(2090, 1, 1);
                    params.not_after = rcgen::date_time_ymd(2091, 1, 1);
                }
                _ => {}
            }
            let cert = match kind {
                CertKind::SelfSigned => params.self_signed(&key),
                CertKind::UnknownCa => params.signed_by(&key, &other),
                _ => params.signed_by(&key, &issuer),
            }
            .map_err(e)?;
            configs.push(server_config(vec![cert.der().clone()], &key)?);
        }
        Ok(Certs {
            ca_pem: ca_cert.pem(),
            configs,
        })
    }

    /// The server configuration presenting `kind`.
    pub fn config(&self, kind: CertKind) -> Arc<rustls::ServerConfig> {
        self.configs[kind.index()].clone()
    }
}
