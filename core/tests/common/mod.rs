//! Test support: throwaway PKI, rustls configurations, and an in-memory
//! client/server pump that can split every transmission any way it likes.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use starttls::rustls;
use starttls::rustls::pki_types::ServerName;

mod pki;
#[allow(unused_imports)]
pub use pki::{make_pki, pki, Pki};

pub fn server_tls() -> Arc<rustls::ServerConfig> {
    let p = pki();
    let key = p.key();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![p.leaf_der.clone(), p.ca_der.clone()], key)
            .expect("server config"),
    )
}

pub fn client_tls() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki().ca_der.clone()).expect("root");
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn client_tls_trusting_nothing() -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

/// How a transmission is split before delivery.
#[derive(Clone, Copy, Debug)]
pub enum Split {
    Whole,
    Bytewise,
    Random(u64),
}

impl Split {
    pub fn chunks(self, data: &[u8], rng: &mut u64) -> Vec<Vec<u8>> {
        match self {
            Split::Whole => vec![data.to_vec()],
            Split::Bytewise => data.iter().map(|b| vec![*b]).collect(),
            Split::Random(_) => {
                let mut out = Vec::new();
                let mut rest = data;
                while !rest.is_empty() {
                    let n = 1 + (xorshift(rng) as usize % 40).min(rest.len() - 1);
                    let (a, b) = rest.split_at(n.min(rest.len()));
                    out.push(a.to_vec());
                    rest = b;
                }
                out
            }
        }
    }

    pub fn seed(self) -> u64 {
        match self {
            Split::Random(s) => s.max(1),
            _ => 1,
        }
    }

    pub fn all() -> Vec<Split> {
        let mut v = vec![Split::Whole, Split::Bytewise];
        v.extend((1..=8).map(|s| Split::Random(s * 7919)));
        v
    }
}

pub fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

/// One side of an in-memory connection, with its application logic.
pub trait Peer {
    fn input(&mut self, data: &[u8]);
    fn transmit(&mut self) -> Option<Bytes>;
    /// Polls events, acts on them like an application would, and logs them.
    /// Returns the session error, if it failed.
    fn drive(&mut self, log: &mut Vec<String>) -> Option<starttls::Error>;
}

/// Runs two peers against each other until neither has anything to send.
/// Every transmission is split by `split` and each chunk delivered (and the
/// receiver driven) separately. Returns both logs.
pub fn pump(a: &mut dyn Peer, b: &mut dyn Peer, split: Split) -> (Vec<String>, Vec<String>) {
    let mut la = Vec::new();
    let mut lb = Vec::new();
    let mut rng = split.seed();
    let mut ea = a.drive(&mut la);
    let mut eb = b.drive(&mut lb);
    for _ in 0..10_000 {
        let mut progress = false;
        while let Some(out) = a.transmit() {
            progress = true;
            for c in split.chunks(&out, &mut rng) {
                b.input(&c);
                eb = eb.or(b.drive(&mut lb));
            }
        }
        ea = ea.or(a.drive(&mut la));
        while let Some(out) = b.transmit() {
            progress = true;
            for c in split.chunks(&out, &mut rng) {
                a.input(&c);
                ea = ea.or(a.drive(&mut la));
            }
        }
        eb = eb.or(b.drive(&mut lb));
        if !progress {
            break;
        }
    }
    if let Some(e) = ea {
        la.push(format!("ERROR {e:?}"));
    }
    if let Some(e) = eb {
        lb.push(format!("ERROR {e:?}"));
    }
    (la, lb)
}
