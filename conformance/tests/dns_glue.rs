//! `starttls_io::dns` against a real `knotd` serving a DNSSEC-signed zone on
//! loopback (`starttls_conformance::zone`). Without Knot installed each test
//! prints `SKIPPED` and passes, except under `CI=true`, where it fails.
//!
//! The zone `example.test.` (signed; its apex keys are the trust anchors)
//! has an insecure child `insecure.example.test.` (unsigned, no DS) and a
//! bogus child `bogus.example.test.` (signed, but the parent's DS digest
//! does not match its key), plus a secure signed child
//! `signed.example.test.` (matching DS).
//!
//! `Validation::TrustAd` is tested through a real `unbound` validating in
//! front of the zone (`zone::ValidatingResolver`); without unbound those
//! tests skip the same way.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starttls::policy::dane::{HostSource, TlsaLookup, TlsaRecord};
use starttls::policy::mta_sts::TxtLookup;
use starttls_conformance::zone::{
    ChildKind, DeadServer, TestZone, ValidatingResolver, ZoneBuilder,
};
use starttls_io::dns::{MxKind, Resolver, ResolverConfig, Security, TrustAnchors, Validation};

const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const H3: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const H4: &str = "4444444444444444444444444444444444444444444444444444444444444444";

fn tlsa(hex: &str) -> TlsaRecord {
    let data: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    TlsaRecord::new(3, 1, 1, data)
}

fn zone() -> Option<TestZone> {
    ZoneBuilder::new("example.test.")
        .record("@ MX 10 mx1")
        .record("@ MX 5 mx2")
        .record("mx1 A 127.0.0.1")
        .record("mx1 AAAA ::1")
        .record("mx2 A 127.0.0.2")
        .record(&format!("_25._tcp.mx1 TLSA 3 1 1 {H1}"))
        // A secure CNAME whose target has TLSA: the expanded name wins.
        .record("alias CNAME mx1")
        .record(&format!("_25._tcp.alias TLSA 3 1 1 {H2}"))
        // A secure CNAME whose target has none: back to the original name.
        .record("alias2 CNAME target2")
        .record("target2 A 127.0.0.9")
        .record(&format!("_25._tcp.alias2 TLSA 3 1 1 {H3}"))
        // A CNAME into the insecure child: the original name only.
        .record("insalias CNAME host.insecure.example.test.")
        .record(&format!("_25._tcp.insalias TLSA 3 1 1 {H4}"))
        // A TLSA RRset that is a CNAME (RFC 7671 §7: a hosted MX's
        // records kept by its provider).
        .record("mxc A 127.0.0.8")
        .record("_25._tcp.mxc CNAME _25._tcp.mx1")
        // A secure CNAME into the bogus child.
        .record("bogusalias CNAME mx.bogus.example.test.")
        // A CNAME loop.
        .record("loop1 CNAME loop2")
        .record("loop2 CNAME loop1")
        // chain0 -> chain1 -> ... -> chain9 (A only): 9 links from chain0,
        // 8 from chain1.
        .record("chain0 CNAME chain1")
        .record("chain1 CNAME chain2")
        .record("chain2 CNAME chain3")
        .record("chain3 CNAME chain4")
        .record("chain4 CNAME chain5")
        .record("chain5 CNAME chain6")
        .record("chain6 CNAME chain7")
        .record("chain7 CNAME chain8")
        .record("chain8 CNAME chain9")
        .record("chain9 A 127.0.0.10")
        .record("nomx A 127.0.0.7")
        .record("nomx AAAA ::7")
        .record("nullmx MX 0 .")
        .record("_imap._tcp SRV 10 5 143 imap2")
        .record("_imap._tcp SRV 20 0 993 imap3")
        .record("_imap._tcp SRV 10 50 143 IMAP1")
        .record("_submission._tcp SRV 0 0 0 .")
        .record("txt TXT \"v=STSv1; \" \"id=2026\"")
        .record("txt TXT \"second\"")
        .record("_mta-sts TXT \"v=STSv1; id=20261207\"")
        .child(
            "insecure",
            ChildKind::Insecure,
            &[
                "@ MX 10 mx",
                "mx A 127.0.0.3",
                "host A 127.0.0.5",
                // An insecure CNAME link into the secure parent.
                "alias CNAME mx1.example.test.",
                &format!("_25._tcp.host TLSA 3 1 1 {H1}"),
                &format!("_25._tcp.mx TLSA 3 1 1 {H1}"),
            ],
        )
        .child(
            "bogus",
            ChildKind::BogusDs,
            &[
                "@ MX 10 mx",
                "mx A 127.0.0.4",
                &format!("_25._tcp.mx TLSA 3 1 1 {H1}"),
            ],
        )
        .child(
            "signed",
            ChildKind::Secure,
            &["@ MX 10 mx", "mx A 127.0.0.6"],
        )
        .start()
}

fn resolver(zone: &TestZone, validation: Validation) -> Resolver {
    Resolver::new(
        ResolverConfig::new(vec![zone.addr()], validation)
            .with_timeout(Duration::from_secs(2))
            .with_attempts(1),
    )
    .unwrap()
}

fn validating(zone: &TestZone) -> Resolver {
    let anchors = TrustAnchors::from_file(zone.trust_anchor_file()).unwrap();
    resolver(zone, Validation::InProcess(anchors))
}

#[tokio::test]
async fn mx_secure_insecure_bogus_null_none() {
    let Some(zone) = zone() else { return };
    let r = validating(&zone);

    let mx = r.mx("example.test").await.unwrap();
    assert_eq!(mx.security, Security::Secure, "{mx:?}");
    assert_eq!(mx.hosts(), ["mx2.example.test", "mx1.example.test"]);
    assert_eq!(mx.host_source(), Some(HostSource::SecureMx));

    let mx = r.mx("signed.example.test.").await.unwrap();
    assert_eq!(
        mx.security,
        Security::Secure,
        "chained through a DS: {mx:?}"
    );
    assert_eq!(mx.hosts(), ["mx.signed.example.test"]);

    let mx = r.mx("insecure.example.test").await.unwrap();
    assert_eq!(mx.security, Security::Insecure, "{mx:?}");
    assert_eq!(mx.hosts(), ["mx.insecure.example.test"]);
    assert_eq!(mx.host_source(), Some(HostSource::InsecureMx));

    let mx = r.mx("bogus.example.test").await.unwrap();
    assert_eq!(mx.security, Security::Bogus, "{mx:?}");
    assert_eq!(mx.kind, MxKind::Failed);
    assert_eq!(mx.host_source(), None);
    assert!(mx.detail.is_some());

    let mx = r.mx("nullmx.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NullMx, Security::Secure)
    );
    assert_eq!(mx.host_source(), None);
    assert!(mx.hosts().is_empty());

    // NODATA, proven by NSEC: the domain is its own host.
    let mx = r.mx("nomx.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NoMx, Security::Secure),
        "{mx:?}"
    );
    assert!(!mx.nxdomain);
    assert_eq!(mx.host_source(), Some(HostSource::NoMx));
    assert_eq!(mx.hosts(), ["nomx.example.test"]);

    // NXDOMAIN, proven.
    let mx = r.mx("absent.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NoMx, Security::Secure),
        "{mx:?}"
    );
    assert!(mx.nxdomain);
    assert!(mx.hosts().is_empty());
}

#[tokio::test]
async fn dead_server_is_indeterminate_within_the_timeout() {
    let Some(zone) = zone() else { return };
    let dead = DeadServer::bind().unwrap();
    let anchors = TrustAnchors::from_dnskeys(zone.trust_anchors()).unwrap();
    for validation in [
        Validation::InProcess(anchors),
        Validation::TrustAd,
        Validation::Off,
    ] {
        let r = Resolver::new(
            ResolverConfig::new(vec![dead.addr()], validation.clone())
                .with_timeout(Duration::from_millis(300))
                .with_attempts(1),
        )
        .unwrap();
        let start = Instant::now();
        let mx = r.mx("example.test").await.unwrap();
        let took = start.elapsed();
        assert_eq!(
            mx.security,
            Security::Indeterminate,
            "{validation:?}: {mx:?}"
        );
        assert_eq!(mx.kind, MxKind::Failed);
        assert_eq!(mx.host_source(), None);
        assert!(mx.detail.is_some());
        eprintln!("dead server, {validation:?}: Indeterminate after {took:?}");
        // Per query 300 ms; the backstop is 4 × timeout × attempts.
        assert!(
            took < Duration::from_millis(1500),
            "{validation:?} took {took:?}"
        );

        let t = r.tlsa("mx1.example.test", 25).await.unwrap();
        assert_eq!(t.lookup, TlsaLookup::Failed, "{validation:?}");
        assert_eq!(
            r.mta_sts_txt("example.test").await.unwrap(),
            TxtLookup::Failed
        );
    }
}

#[tokio::test]
async fn addresses_a_and_aaaa() {
    let Some(zone) = zone() else { return };
    let r = validating(&zone);
    let a = r.addresses("mx1.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure, "{a:?}");
    assert_eq!(
        a.records,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    // Only A: the AAAA NODATA is secure too.
    let a = r.addresses("mx2.example.test").await.unwrap();
    assert_eq!(
        (a.records.len(), a.security),
        (1, Security::Secure),
        "{a:?}"
    );
    // Through a CNAME.
    let a = r.addresses("alias.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure);
    assert_eq!(a.names, ["alias.example.test", "mx1.example.test"]);
    assert_eq!(a.records.len(), 2);
    let a = r.addresses("mx.insecure.example.test").await.unwrap();
    assert_eq!(a.security, Security::Insecure);
    assert_eq!(a.records, ["127.0.0.3".parse::<IpAddr>().unwrap()]);
    let a = r.addresses("mx.bogus.example.test").await.unwrap();
    assert_eq!(a.security, Security::Bogus);
    assert!(a.records.is_empty(), "bogus records are not handed out");
}

#[tokio::test]
async fn tlsa_direct_cname_nodata_bogus() {
    let Some(zone) = zone() else { return };
    let r = validating(&zone);

    let t = r.tlsa("mx1.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H1)]), "{t:?}");
    assert_eq!(t.base_domain, "mx1.example.test");

    // Secure CNAME: the expanded name first.
    let t = r.tlsa("alias.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H1)]), "{t:?}");
    assert_eq!(t.base_domain, "mx1.example.test");
    assert_eq!(t.names, ["alias.example.test", "mx1.example.test"]);
    assert!(t.chain_secure);

    // Secure CNAME, nothing at the expanded name: then the original.
    let t = r.tlsa("alias2.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H3)]), "{t:?}");
    assert_eq!(t.base_domain, "alias2.example.test");

    // An insecure CNAME link: the original name only, although the target
    // has secure TLSA records.
    let t = r.tlsa("alias.insecure.example.test", 25).await.unwrap();
    assert_eq!(t.names, ["alias.insecure.example.test", "mx1.example.test"]);
    assert!(!t.chain_secure);
    assert_eq!(t.base_domain, "alias.insecure.example.test", "{t:?}");
    assert_eq!(t.lookup, TlsaLookup::Insecure);

    // A secure link (signed by the parent) to a name in the insecure child:
    // the expanded name's TLSA is insecure, so the original name's is used.
    let t = r.tlsa("insalias.example.test", 25).await.unwrap();
    assert!(t.chain_secure);
    assert_eq!(
        t.names,
        ["insalias.example.test", "host.insecure.example.test"]
    );
    assert_eq!(t.base_domain, "insalias.example.test", "{t:?}");
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H4)]));

    // NODATA: secure and empty.
    let t = r.tlsa("mx2.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![]), "{t:?}");
    let t = r.tlsa("mx1.example.test", 587).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![]), "{t:?}");

    let t = r.tlsa("mx.insecure.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Insecure, "{t:?}");

    let t = r.tlsa("mx.bogus.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Failed, "{t:?}");
    assert_eq!(t.security, Security::Bogus);
}

#[tokio::test]
async fn srv_and_txt() {
    let Some(zone) = zone() else { return };
    let r = validating(&zone);

    let s = r.srv("_imap", "example.test").await.unwrap();
    assert_eq!(s.security, Security::Secure, "{s:?}");
    assert!(!s.not_offered);
    let order: Vec<(u16, u16, u16, &str)> = s
        .targets
        .iter()
        .map(|t| (t.priority, t.weight, t.port, t.target.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (10, 50, 143, "imap1.example.test"),
            (10, 5, 143, "imap2.example.test"),
            (20, 0, 993, "imap3.example.test"),
        ]
    );
    let s = r.srv("submission", "example.test").await.unwrap();
    assert!(s.not_offered && s.targets.is_empty(), "{s:?}");
    let s = r.srv("_pop3", "example.test").await.unwrap();
    assert!(s.targets.is_empty() && !s.not_offered && s.nxdomain);
    assert_eq!(s.security, Security::Secure);

    let t = r.txt("txt.example.test").await.unwrap();
    assert_eq!(t.security, Security::Secure);
    let mut records = t.records.clone();
    records.sort();
    assert_eq!(records, [b"second".to_vec(), b"v=STSv1; id=2026".to_vec()]);

    assert!(matches!(
        r.mta_sts_txt("example.test").await.unwrap(),
        TxtLookup::Found(_)
    ));
    assert_eq!(
        r.mta_sts_txt("insecure.example.test").await.unwrap(),
        TxtLookup::NotFound
    );
    assert_eq!(
        r.mta_sts_txt("bogus.example.test").await.unwrap(),
        TxtLookup::Failed
    );
}

/// knotd is authoritative: it never sets AD, so with `TrustAd` nothing is
/// secure (and nothing fails); with `Off`, everything is insecure, the
/// bogus zone included (no one checks).
#[tokio::test]
async fn trust_ad_and_off_modes() {
    let Some(zone) = zone() else { return };
    for validation in [Validation::TrustAd, Validation::Off] {
        let r = resolver(&zone, validation.clone());
        let mx = r.mx("example.test").await.unwrap();
        assert_eq!(mx.security, Security::Insecure, "{validation:?}: {mx:?}");
        assert_eq!(mx.hosts(), ["mx2.example.test", "mx1.example.test"]);
        assert_eq!(mx.host_source(), Some(HostSource::InsecureMx));
        let mx = r.mx("bogus.example.test").await.unwrap();
        assert_eq!(mx.security, Security::Insecure, "{validation:?}");
        assert_eq!(mx.hosts(), ["mx.bogus.example.test"]);
        let t = r.tlsa("alias.example.test", 25).await.unwrap();
        assert_eq!(t.lookup, TlsaLookup::Insecure, "{validation:?}: {t:?}");
        assert!(!t.chain_secure);
        assert_eq!(t.base_domain, "alias.example.test");
        let a = r.addresses("alias.example.test").await.unwrap();
        assert_eq!(a.records.len(), 2, "{validation:?}: {a:?}");
        let mx = r.mx("absent.example.test").await.unwrap();
        assert!(
            mx.nxdomain && mx.kind == MxKind::NoMx,
            "{validation:?}: {mx:?}"
        );
    }
}

#[tokio::test]
async fn anchors_are_the_apex_keys() {
    let Some(zone) = zone() else { return };
    let anchors = TrustAnchors::from_dnskeys(zone.trust_anchors()).unwrap();
    assert!(!anchors.is_empty());
    // Anchors for another zone: nothing chains to them, so nothing is secure.
    let other = ZoneBuilder::new("other.test.").start().unwrap();
    let r = resolver(
        &zone,
        Validation::InProcess(TrustAnchors::from_dnskeys(other.trust_anchors()).unwrap()),
    );
    let mx = r.mx("example.test").await.unwrap();
    assert_ne!(mx.security, Security::Secure, "{mx:?}");
    assert!(mx.security.is_failure(), "{mx:?}");
}

// ---------------------------------------------------------------------------
// Adversarial review (#17): an on-path attacker between the resolver and
// the signed zone. `Forger` forwards every query to knotd and answers the
// ones its rule picks itself: a bare NOERROR/NODATA or NXDOMAIN with no
// NSEC proof, the way a spoofer who cannot sign answers.

/// What the forger answers for a picked query.
#[derive(Clone, Copy, Debug)]
enum Forge {
    /// NOERROR, no records, no authority (a stripped answer).
    NoData,
    /// NXDOMAIN, no authority.
    NxDomain,
    /// NOERROR, no records, and in the authority section the (unsigned,
    /// genuine-looking) SOA of another zone that is provably insecure.
    NoDataForeignSoa(&'static str),
    /// The same with NXDOMAIN.
    NxDomainForeignSoa(&'static str),
    /// The genuine answer cut after the (signed) CNAME of the name asked:
    /// the target's records, their signatures and any authority dropped.
    CnameOnly,
}

/// The end of the name at `i` (a pointer ends it).
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)?;
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + usize::from(len);
        if len == 0 {
            return Some(i);
        }
    }
}

/// Keeps the first answer records owned by the name asked (its CNAME and
/// that CNAME's RRSIG); drops everything after them.
fn cname_only(reply: &[u8]) -> Option<Vec<u8>> {
    let (_, _, q) = question(reply)?;
    let mut i = 12 + q.len();
    let ancount = u16::from_be_bytes([*reply.get(6)?, *reply.get(7)?]);
    let mut kept = 0u16;
    for _ in 0..ancount {
        // The records owned by the name asked are written as a pointer to
        // the question (0xc00c) by knotd.
        if reply.get(i..i + 2)? != [0xc0, 0x0c] {
            break;
        }
        let end = skip_name(reply, i)?;
        let rdlen = usize::from(u16::from_be_bytes([
            *reply.get(end + 8)?,
            *reply.get(end + 9)?,
        ]));
        i = end + 10 + rdlen;
        kept += 1;
    }
    let mut out = reply.get(..i)?.to_vec();
    out[6..8].copy_from_slice(&kept.to_be_bytes());
    out[8..12].copy_from_slice(&[0, 0, 0, 0]);
    Some(out)
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn soa(owner: &str) -> Vec<u8> {
    let mut rdata = wire_name(&format!("ns.{owner}"));
    rdata.extend(wire_name(&format!("hostmaster.{owner}")));
    for v in [1u32, 3600, 600, 86400, 300] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    let mut rr = wire_name(owner);
    rr.extend_from_slice(&[0, 6, 0, 1, 0, 0, 1, 44]);
    rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    rr.extend(rdata);
    rr
}

struct Forger {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (qname lower-case without the trailing dot, qtype, the question bytes).
fn question(query: &[u8]) -> Option<(String, u16, Vec<u8>)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    Some((labels.join("."), qtype, query.get(12..i + 4)?.to_vec()))
}

fn forge(query: &[u8], how: Forge) -> Option<Vec<u8>> {
    let (_, _, q) = question(query)?;
    let rd = query.get(2)? & 0x01;
    let (rcode, authority) = match how {
        Forge::NoData => (0, None),
        Forge::NxDomain => (3, None),
        Forge::NoDataForeignSoa(owner) => (0, Some(soa(owner))),
        Forge::NxDomainForeignSoa(owner) => (3, Some(soa(owner))),
        Forge::CnameOnly => return None,
    };
    let nscount = u8::from(authority.is_some());
    let mut out = vec![
        query[0],
        query[1],
        0x84 | rd,
        0x80 | rcode,
        0,
        1,
        0,
        0,
        0,
        nscount,
        0,
        0,
    ];
    out.extend_from_slice(&q);
    out.extend(authority.unwrap_or_default());
    Some(out)
}

impl Forger {
    /// Forwards to `upstream`; `rule(qname, qtype)` picks the queries to
    /// forge.
    fn start(
        upstream: std::net::SocketAddr,
        rule: impl Fn(&str, u16) -> Option<Forge> + Send + 'static,
    ) -> Forger {
        use std::net::UdpSocket;
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let query = buf[..n].to_vec();
                let picked = question(&query).and_then(|(name, qtype, _)| rule(&name, qtype));
                let upstream_reply = |query: &[u8]| {
                    let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                    up.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    up.send_to(query, upstream).unwrap();
                    let mut b = vec![0u8; 65535];
                    up.recv(&mut b).ok().map(|m| b[..m].to_vec())
                };
                let reply = match picked {
                    Some(Forge::CnameOnly) => upstream_reply(&query).and_then(|r| cname_only(&r)),
                    Some(how) => forge(&query, how),
                    None => {
                        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                        up.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        up.send_to(&query, upstream).unwrap();
                        let mut b = vec![0u8; 65535];
                        up.recv(&mut b).ok().map(|m| b[..m].to_vec())
                    }
                };
                if let Some(reply) = reply {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Forger {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn through(zone: &TestZone, forger: &Forger) -> Resolver {
    let anchors = TrustAnchors::from_file(zone.trust_anchor_file()).unwrap();
    Resolver::new(
        ResolverConfig::new(vec![forger.addr], Validation::InProcess(anchors))
            .with_timeout(Duration::from_secs(2))
            .with_attempts(1),
    )
    .unwrap()
}

const MX: u16 = 15;
const TLSA: u16 = 52;
const A: u16 = 1;

/// A stripped MX answer in a signed zone must not read as "no MX" (which
/// would send the mail to the domain's own address, RFC 5321 §5.1): the
/// denial is unproven (RFC 4035 §5.4), so the lookup failed.
#[tokio::test]
async fn held_forged_nodata_mx_is_a_failure_not_no_mx() {
    let Some(zone) = zone() else { return };
    for how in [Forge::NoData, Forge::NxDomain] {
        let forger = Forger::start(zone.addr(), move |name, qtype| {
            (name == "example.test" && qtype == MX).then_some(how)
        });
        let r = through(&zone, &forger);
        let mx = r.mx("example.test").await.unwrap();
        assert!(mx.security.is_failure(), "{how:?}: {mx:?}");
        assert_eq!(mx.kind, MxKind::Failed, "{how:?}");
        assert!(mx.hosts().is_empty());
    }
}

/// A stripped TLSA answer for a host in a signed zone must not switch DANE
/// off (RFC 7672 §2.1.1: only a validated denial means "no TLSA").
#[tokio::test]
async fn held_forged_nodata_tlsa_is_a_failure_not_insecure() {
    let Some(zone) = zone() else { return };
    for how in [Forge::NoData, Forge::NxDomain] {
        let forger = Forger::start(zone.addr(), move |name, qtype| {
            (name == "_25._tcp.mx1.example.test" && qtype == TLSA).then_some(how)
        });
        let r = through(&zone, &forger);
        let t = r.tlsa("mx1.example.test", 25).await.unwrap();
        assert_eq!(t.lookup, TlsaLookup::Failed, "{how:?}: {t:?}");
        // The unmodified names still validate through the forger.
        let mx = r.mx("example.test").await.unwrap();
        assert_eq!(mx.security, Security::Secure, "{mx:?}");
    }
}

/// A stripped A answer for a host of a secure MX: not "insecure".
#[tokio::test]
async fn held_forged_nodata_address_is_a_failure() {
    let Some(zone) = zone() else { return };
    let forger = Forger::start(zone.addr(), |name, qtype| {
        (name == "mx1.example.test" && qtype == A).then_some(Forge::NoData)
    });
    let r = through(&zone, &forger);
    let a = r.addresses("mx1.example.test").await.unwrap();
    assert!(a.security.is_failure(), "{a:?}");
}

const INSECURE: &str = "insecure.example.test";

/// The forged negative answer carries the unsigned SOA of an unrelated,
/// provably insecure zone. hickory then accepts the denial as "insecure"
/// (its authority records are all insecure); the glue must not: a denial
/// only says something about the name when it comes from the name's own
/// zone (RFC 4035 §5.4, RFC 7672 §2.1.1). Otherwise an attacker switches
/// DANE off (TLSA), sends mail to the domain's A record (MX), or bounces it
/// (NXDOMAIN).
#[tokio::test]
async fn forged_denial_with_a_foreign_insecure_soa_is_a_failure() {
    let Some(zone) = zone() else { return };
    for how in [
        Forge::NoDataForeignSoa(INSECURE),
        Forge::NxDomainForeignSoa(INSECURE),
    ] {
        let forger = Forger::start(zone.addr(), move |name, qtype| {
            ((name == "_25._tcp.mx1.example.test" && qtype == TLSA)
                || (name == "example.test" && qtype == MX)
                || (name == "mx1.example.test" && qtype == A))
                .then_some(how)
        });
        let r = through(&zone, &forger);
        let t = r.tlsa("mx1.example.test", 25).await.unwrap();
        assert_eq!(t.lookup, TlsaLookup::Failed, "{how:?}: {t:?}");
        let mx = r.mx("example.test").await.unwrap();
        assert!(mx.security.is_failure(), "{how:?}: {mx:?}");
        assert_eq!(mx.kind, MxKind::Failed, "{how:?}: {mx:?}");
        let a = r.addresses("mx1.example.test").await.unwrap();
        assert!(a.security.is_failure(), "{how:?}: {a:?}");
    }
    // A genuine denial from the insecure zone itself stays insecure.
    let forger = Forger::start(zone.addr(), |_, _| None);
    let r = through(&zone, &forger);
    let t = r.tlsa("mx.insecure.example.test", 587).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Insecure, "{t:?}");
    let mx = r.mx("mx.insecure.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NoMx, Security::Insecure),
        "{mx:?}"
    );
}

/// A TLSA RRset published as a CNAME (RFC 7671 §7): the spoofer keeps the
/// genuine signed CNAME and drops the target's TLSA records. With no
/// denial for the target, nothing says it has no TLSA records: the lookup
/// failed, it is not a secure "no records" that switches DANE off
/// (RFC 7672 §2.1.1, RFC 4035 §5.4).
#[tokio::test]
async fn held_a_cname_without_its_target_records_is_not_a_secure_denial() {
    let Some(zone) = zone() else { return };
    // The genuine answer first.
    let r = validating(&zone);
    let t = r.tlsa("mxc.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H1)]), "{t:?}");

    // Only the CNAME: hickory refuses the answer (bogus); never an empty
    // secure RRset.
    let forger = Forger::start(zone.addr(), |name, qtype| {
        (name == "_25._tcp.mxc.example.test" && qtype == TLSA).then_some(Forge::CnameOnly)
    });
    let r = through(&zone, &forger);
    let t = r.tlsa("mxc.example.test", 25).await.unwrap();
    assert!(
        matches!(&t.lookup, TlsaLookup::Failed) || t.lookup == TlsaLookup::Secure(vec![tlsa(H1)]),
        "{t:?}"
    );

    // The target's own answer stripped as well: the lookup failed.
    let forger = Forger::start(zone.addr(), |name, qtype| match (name, qtype) {
        ("_25._tcp.mxc.example.test", TLSA) => Some(Forge::CnameOnly),
        ("_25._tcp.mx1.example.test", TLSA) => Some(Forge::NoData),
        _ => None,
    });
    let r = through(&zone, &forger);
    let t = r.tlsa("mxc.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Failed, "{t:?}");
}

fn through_unbound(unbound: &ValidatingResolver) -> Resolver {
    Resolver::new(
        ResolverConfig::new(vec![unbound.addr()], Validation::TrustAd)
            .with_timeout(Duration::from_secs(3))
            .with_attempts(1),
    )
    .unwrap()
}

/// `TrustAd` through a real validating resolver: unbound's AD bit makes
/// the signed zone (and its signed child) `Secure`, the insecure child
/// `Insecure`; the bogus child gets SERVFAIL from unbound with an extended
/// DNS error, `Bogus`, never `Insecure`.
#[tokio::test]
async fn trust_ad_through_unbound_secure_insecure_bogus() {
    let Some(zone) = zone() else { return };
    let Some(unbound) = ValidatingResolver::start(&zone) else {
        return;
    };
    let r = through_unbound(&unbound);

    let mx = r.mx("example.test").await.unwrap();
    assert_eq!(mx.security, Security::Secure, "{mx:?}");
    assert_eq!(mx.hosts(), ["mx2.example.test", "mx1.example.test"]);
    assert_eq!(mx.host_source(), Some(HostSource::SecureMx));

    let mx = r.mx("signed.example.test").await.unwrap();
    assert_eq!(mx.security, Security::Secure, "through the DS: {mx:?}");
    assert_eq!(mx.hosts(), ["mx.signed.example.test"]);

    let mx = r.mx("insecure.example.test").await.unwrap();
    assert_eq!(mx.security, Security::Insecure, "{mx:?}");
    assert_eq!(mx.hosts(), ["mx.insecure.example.test"]);
    assert_eq!(mx.host_source(), Some(HostSource::InsecureMx));

    // unbound answers SERVFAIL with an extended DNS error (`ede: yes`):
    // "DNSKEY Missing", the DS matches no key. Bogus, not merely failed.
    let mx = r.mx("bogus.example.test").await.unwrap();
    assert_eq!(mx.security, Security::Bogus, "{mx:?}");
    assert_eq!(mx.kind, MxKind::Failed);
    assert_eq!(mx.host_source(), None);
    assert!(mx.hosts().is_empty());
    assert!(
        mx.detail
            .as_deref()
            .is_some_and(|d| d.contains("Server Failure")
                && d.contains("extended error 9")
                && d.contains("DS hash mismatches key")),
        "{mx:?}"
    );

    // NODATA at the end of an insecure CNAME (into the secure parent): the
    // answer rests on the unsigned link, so no AD.
    let mx = r.mx("alias.insecure.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NoMx, Security::Insecure),
        "{mx:?}"
    );

    // NODATA at the end of a secure CNAME: secure (unbound checks the
    // target's NSEC; hickory 0.26 alone calls these bogus, the glue
    // re-walks the chain: `cname_chains_in_process`).
    let mx = r.mx("alias.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NoMx, Security::Secure),
        "{mx:?}"
    );
    let a = r.addresses("alias2.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure, "A, and AAAA NODATA: {a:?}");
    assert_eq!(a.records, ["127.0.0.9".parse::<IpAddr>().unwrap()]);

    // Null MX, NODATA and NXDOMAIN, all with a validated denial.
    let mx = r.mx("nullmx.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NullMx, Security::Secure),
        "{mx:?}"
    );
    let mx = r.mx("nomx.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security, mx.nxdomain),
        (MxKind::NoMx, Security::Secure, false),
        "{mx:?}"
    );
    assert_eq!(mx.host_source(), Some(HostSource::NoMx));
    let mx = r.mx("absent.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security, mx.nxdomain),
        (MxKind::NoMx, Security::Secure, true),
        "{mx:?}"
    );

    // Addresses.
    let a = r.addresses("mx1.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure, "{a:?}");
    assert_eq!(
        a.records,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    let a = r.addresses("alias.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure, "{a:?}");
    assert_eq!(a.names, ["alias.example.test", "mx1.example.test"]);
    let a = r.addresses("mx.insecure.example.test").await.unwrap();
    assert_eq!(a.security, Security::Insecure, "{a:?}");
    assert_eq!(a.records, ["127.0.0.3".parse::<IpAddr>().unwrap()]);
    // An insecure CNAME into the signed zone: insecure, with the records.
    let a = r.addresses("alias.insecure.example.test").await.unwrap();
    assert_eq!(a.security, Security::Insecure, "{a:?}");
    assert_eq!(a.names, ["alias.insecure.example.test", "mx1.example.test"]);
    assert_eq!(a.records.len(), 2, "{a:?}");
    let a = r.addresses("mx.bogus.example.test").await.unwrap();
    assert_eq!(a.security, Security::Bogus, "{a:?}");
    assert!(a.records.is_empty(), "bogus records are not handed out");

    // TLSA.
    let t = r.tlsa("mx1.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H1)]), "{t:?}");
    let t = r.tlsa("alias.example.test", 25).await.unwrap();
    assert!(t.chain_secure, "{t:?}");
    assert_eq!(t.base_domain, "mx1.example.test");
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![tlsa(H1)]));
    let t = r.tlsa("mx2.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Secure(vec![]), "NODATA: {t:?}");
    let t = r.tlsa("mx.insecure.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Insecure, "{t:?}");
    let t = r.tlsa("alias.insecure.example.test", 25).await.unwrap();
    assert!(!t.chain_secure, "{t:?}");
    assert_eq!(t.lookup, TlsaLookup::Insecure);
    let t = r.tlsa("mx.bogus.example.test", 25).await.unwrap();
    assert_eq!(t.lookup, TlsaLookup::Failed, "{t:?}");
    assert_eq!(t.security, Security::Bogus);

    // SRV and TXT.
    let s = r.srv("_imap", "example.test").await.unwrap();
    assert_eq!(
        (s.security, s.targets.len()),
        (Security::Secure, 3),
        "{s:?}"
    );
    assert!(matches!(
        r.mta_sts_txt("example.test").await.unwrap(),
        TxtLookup::Found(_)
    ));
    assert_eq!(
        r.mta_sts_txt("insecure.example.test").await.unwrap(),
        TxtLookup::NotFound
    );
    assert_eq!(
        r.mta_sts_txt("bogus.example.test").await.unwrap(),
        TxtLookup::Failed
    );
}

/// unbound's verdict and the in-process validator's agree name by name
/// (bogus too: unbound's SERVFAIL carries an extended DNS error), answers
/// through a CNAME included: hickory 0.26 alone disagrees there (NODATA
/// after a secure CNAME: bogus; an insecure CNAME into the signed zone:
/// indeterminate), and the glue re-walks the chain itself.
#[tokio::test]
async fn trust_ad_agrees_with_in_process_validation() {
    let Some(zone) = zone() else { return };
    let Some(unbound) = ValidatingResolver::start(&zone) else {
        return;
    };
    let ad = through_unbound(&unbound);
    let own = validating(&zone);
    for name in [
        "example.test",
        "signed.example.test",
        "insecure.example.test",
        "bogus.example.test",
        "nullmx.example.test",
        "nomx.example.test",
        "absent.example.test",
        "mx1.example.test",
        "mx.bogus.example.test",
        // Through CNAMEs.
        "alias.example.test",
        "alias2.example.test",
        "alias.insecure.example.test",
        "insalias.example.test",
        "bogusalias.example.test",
        "loop1.example.test",
        "chain1.example.test",
    ] {
        let (x, y) = (ad.mx(name).await.unwrap(), own.mx(name).await.unwrap());
        assert_eq!(
            (x.security, &x.kind, x.nxdomain),
            (y.security, &y.kind, y.nxdomain),
            "MX {name}: {x:?} / {y:?}"
        );
        let (x, y) = (
            ad.addresses(name).await.unwrap(),
            own.addresses(name).await.unwrap(),
        );
        assert_eq!(
            (x.security, &x.records),
            (y.security, &y.records),
            "addresses {name}: {x:?} / {y:?}"
        );
        if !x.security.is_failure() {
            assert_eq!(x.names, y.names, "{name}");
        }
        let (x, y) = (ad.txt(name).await.unwrap(), own.txt(name).await.unwrap());
        assert_eq!(
            (x.security, &x.records, x.nxdomain),
            (y.security, &y.records, y.nxdomain),
            "TXT {name}: {x:?} / {y:?}"
        );
    }
}

/// The CNAME re-walk (hickory 0.26 in-process gets NODATA after a secure
/// CNAME and an insecure CNAME into the signed zone wrong) gives unbound's
/// answers, and never turns a failure into an answer: a CNAME into the
/// bogus child stays bogus, a loop and a chain of more than 8 links fail.
#[tokio::test]
async fn cname_chains_in_process() {
    let Some(zone) = zone() else { return };
    let r = validating(&zone);

    // A secure CNAME to an IPv4-only host: A, and a secure AAAA NODATA.
    let a = r.addresses("alias2.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure, "{a:?}");
    assert_eq!(a.records, ["127.0.0.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(a.names, ["alias2.example.test", "target2.example.test"]);
    let mx = r.mx("alias.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security, mx.nxdomain),
        (MxKind::NoMx, Security::Secure, false),
        "{mx:?}"
    );
    let t = r.txt("alias2.example.test").await.unwrap();
    assert_eq!(
        (t.security, t.records.len()),
        (Security::Secure, 0),
        "{t:?}"
    );

    // An insecure CNAME into the signed zone: insecure, with the records;
    // NODATA behind it is insecure too, not secure.
    let a = r.addresses("alias.insecure.example.test").await.unwrap();
    assert_eq!(a.security, Security::Insecure, "{a:?}");
    assert_eq!(a.names, ["alias.insecure.example.test", "mx1.example.test"]);
    assert_eq!(
        a.records,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    let mx = r.mx("alias.insecure.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::NoMx, Security::Insecure),
        "{mx:?}"
    );
    assert_eq!(mx.host_source(), Some(HostSource::NoMx));

    // Into the bogus child: bogus, whatever the secure link says.
    let a = r.addresses("bogusalias.example.test").await.unwrap();
    assert_eq!(a.security, Security::Bogus, "{a:?}");
    assert!(a.records.is_empty());
    let mx = r.mx("bogusalias.example.test").await.unwrap();
    assert_eq!(
        (mx.kind.clone(), mx.security),
        (MxKind::Failed, Security::Bogus)
    );

    // A loop: a failure.
    let a = r.addresses("loop1.example.test").await.unwrap();
    assert!(a.security.is_failure(), "{a:?}");
    assert!(a.records.is_empty() && !a.nxdomain, "{a:?}");
    let mx = r.mx("loop1.example.test").await.unwrap();
    assert_eq!(mx.kind, MxKind::Failed, "{mx:?}");

    // 8 links: followed; 9: a failure.
    let a = r.addresses("chain1.example.test").await.unwrap();
    assert_eq!(a.security, Security::Secure, "{a:?}");
    assert_eq!(a.records, ["127.0.0.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(a.names.len(), 9, "{a:?}");
    assert_eq!(
        a.names.last().map(String::as_str),
        Some("chain9.example.test")
    );
    let a = r.addresses("chain0.example.test").await.unwrap();
    assert!(a.security.is_failure(), "{a:?}");
    assert!(a.records.is_empty(), "{a:?}");
    let mx = r.mx("chain0.example.test").await.unwrap();
    assert_eq!(mx.kind, MxKind::Failed, "{mx:?}");
}

const AAAA: u16 = 28;
const TXT: u16 = 16;

/// An on-path forger keeps the genuine signed CNAME and strips the target's
/// records (or denies them without proof, or with a foreign unsigned SOA):
/// the re-walk asks the target again, gets the same unproven denial, and
/// the lookup fails. Never an empty secure or insecure answer.
#[tokio::test]
async fn held_a_genuine_cname_then_a_stripped_target_is_a_failure() {
    let Some(zone) = zone() else { return };
    for how in [
        Forge::NoData,
        Forge::NxDomain,
        Forge::NoDataForeignSoa(INSECURE),
    ] {
        let forger = Forger::start(zone.addr(), move |name, qtype| match (name, qtype) {
            ("alias2.example.test" | "alias.example.test", A | AAAA | MX | TXT) => {
                Some(Forge::CnameOnly)
            }
            ("target2.example.test" | "mx1.example.test", A | AAAA | MX | TXT) => Some(how),
            _ => None,
        });
        let r = through(&zone, &forger);
        for host in ["alias2.example.test", "alias.example.test"] {
            let a = r.addresses(host).await.unwrap();
            assert!(a.security.is_failure(), "{how:?} {host}: {a:?}");
            assert!(a.records.is_empty() && !a.nxdomain, "{how:?} {host}: {a:?}");
            let mx = r.mx(host).await.unwrap();
            assert_eq!(mx.kind, MxKind::Failed, "{how:?} {host}: {mx:?}");
            assert!(mx.security.is_failure() && !mx.nxdomain);
            let t = r.txt(host).await.unwrap();
            assert!(t.security.is_failure(), "{how:?} {host}: {t:?}");
        }
        // The genuine names still resolve through the forger.
        let mx = r.mx("example.test").await.unwrap();
        assert_eq!(mx.security, Security::Secure, "{mx:?}");
    }
}
