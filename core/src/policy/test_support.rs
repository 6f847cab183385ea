//! Certificates and in-memory handshakes shared by the tests of every
//! policy module: CAs (constrained or not, intermediates), leaves with any
//! mix of identifiers, self-signed certificates, rustls configurations and a
//! complete handshake in memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    GeneralSubtree, IsCa, Issuer, KeyPair, NameConstraints, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};

/// The crate's crypto provider (ring by default, as in `starttls`).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "ring")]
    let provider = rustls::crypto::ring::default_provider();
    #[cfg(not(feature = "ring"))]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(provider)
}

/// A test CA.
pub(crate) struct Ca {
    pub(crate) der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        Ca::build(name, &[], None)
    }

    /// A root CA permitted to issue only under the DNS names `permitted`.
    pub(crate) fn constrained(name: &str, permitted: &[&str]) -> Ca {
        Ca::build(name, permitted, None)
    }

    /// An intermediate CA under this one, constrained if `permitted` is
    /// not empty.
    pub(crate) fn intermediate(&self, name: &str, permitted: &[&str]) -> Ca {
        Ca::build(name, permitted, Some(self))
    }

    fn build(name: &str, permitted: &[&str], parent: Option<&Ca>) -> Ca {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        if !permitted.is_empty() {
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: permitted
                    .iter()
                    .map(|p| GeneralSubtree::DnsName((*p).to_owned()))
                    .collect(),
                excluded_subtrees: Vec::new(),
            });
        }
        let key = KeyPair::generate().unwrap();
        let cert = match parent {
            None => params.self_signed(&key).unwrap(),
            Some(parent) => params.signed_by(&key, &parent.issuer).unwrap(),
        };
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub(crate) fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        Arc::new(roots)
    }

    /// A leaf with `spec` (see [`Leaf`]) signed by this CA.
    pub(crate) fn issue(&self, spec: &Leaf) -> Issued {
        let key = spec.key.as_ref().map_or_else(
            || KeyPair::generate().unwrap(),
            |pem| KeyPair::from_pem(pem).unwrap(),
        );
        let cert = spec.params().signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain: vec![cert.der().clone(), self.der.clone()],
            key: key.serialize_pem(),
        }
    }
}

/// What to put into a leaf certificate.
#[derive(Default)]
pub(crate) struct Leaf {
    pub(crate) dns: Vec<&'static str>,
    pub(crate) srv: Vec<&'static str>,
    pub(crate) uri: Vec<&'static str>,
    pub(crate) cn: Vec<&'static str>,
    /// subjectAltName iPAddress entries.
    pub(crate) ip: Vec<std::net::IpAddr>,
    /// Valid in 2000 only, expired since.
    pub(crate) expired: bool,
    /// PEM of the key to reuse, if any.
    pub(crate) key: Option<String>,
}

impl Leaf {
    pub(crate) fn dns(names: &[&'static str]) -> Leaf {
        Leaf {
            dns: names.to_vec(),
            ..Leaf::default()
        }
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for cn in &self.cn {
            params.distinguished_name.push(DnType::CommonName, *cn);
        }
        if self.expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        if self.srv.is_empty() {
            for d in &self.dns {
                params
                    .subject_alt_names
                    .push(SanType::DnsName((*d).try_into().unwrap()));
            }
            for u in &self.uri {
                params
                    .subject_alt_names
                    .push(SanType::URI((*u).try_into().unwrap()));
            }
            for ip in &self.ip {
                params.subject_alt_names.push(SanType::IpAddress(*ip));
            }
        } else {
            // rcgen writes otherName values as UTF8String only; SRVName is
            // an IA5String (RFC 4985), so encode the extension by hand.
            assert!(self.uri.is_empty() && self.ip.is_empty());
            let mut names = Vec::new();
            for d in &self.dns {
                names.extend(tlv(0x82, d.as_bytes()));
            }
            for s in &self.srv {
                let mut other = tlv(0x06, super::identity::SRV_NAME_OID);
                other.extend(tlv(0xa0, &tlv(0x16, s.as_bytes())));
                names.extend(tlv(0xa0, &other));
            }
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[2, 5, 29, 17],
                    tlv(0x30, &names),
                ));
        }
        params
    }
}

/// DER TLV with a short or two-octet length.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// A leaf for these DNS names with this CN, signed by `ca`.
pub(crate) fn leaf(ca: &Ca, dns: &[&'static str], cn: &'static str) -> Issued {
    ca.issue(&Leaf {
        dns: dns.to_vec(),
        cn: vec![cn],
        ..Leaf::default()
    })
}

/// The SubjectPublicKeyInfo of a certificate, DER.
pub(crate) fn spki(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.public_key().raw.to_vec()
}

/// SHA2-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// SHA2-512 of `data`.
pub(crate) fn sha512(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha512::digest(data).to_vec()
}

/// A certificate chain (end entity first) and its key in PEM.
pub(crate) struct Issued {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: String,
}

impl Issued {
    pub(crate) fn end_entity(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The end-entity certificate (the same as [`Issued::end_entity`]).
    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        self.end_entity()
    }

    /// A self-signed certificate for `names`.
    pub(crate) fn self_signed(names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        Issued {
            chain: vec![cert.der().clone()],
            key: key.serialize_pem(),
        }
    }

    pub(crate) fn server_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        let key = KeyPair::from_pem(&self.key).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), key)
                .unwrap(),
        )
    }
}

pub(crate) fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

/// Runs a complete handshake in memory; the client's error wins.
pub(crate) fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    name: &str,
) -> Result<ClientConnection, rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    for _ in 0..20 {
        let mut moved = false;
        while c.wants_write() {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            moved |= !buf.is_empty();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                if s.process_new_packets().is_err() {
                    break;
                }
            }
        }
        while s.wants_write() {
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            moved |= !buf.is_empty();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()?;
            }
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(c);
        }
        if !moved {
            break;
        }
    }
    Err(rustls::Error::General("handshake stalled".into()))
}
