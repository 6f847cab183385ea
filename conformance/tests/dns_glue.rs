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

fn through(unbound: &ValidatingResolver) -> Resolver {
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
    let r = through(&unbound);

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
    // target's NSEC; hickory 0.26 in-process calls these bogus).
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
/// (bogus too: unbound's SERVFAIL carries an extended DNS error). Left
/// out: answers through a CNAME, where hickory 0.26 in-process disagrees
/// with unbound (NODATA after a secure CNAME: bogus; an insecure CNAME into
/// the signed zone: indeterminate); see
/// `trust_ad_through_unbound_secure_insecure_bogus` for unbound's answers.
#[tokio::test]
async fn trust_ad_agrees_with_in_process_validation() {
    let Some(zone) = zone() else { return };
    let Some(unbound) = ValidatingResolver::start(&zone) else {
        return;
    };
    let ad = through(&unbound);
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
    ] {
        let (x, y) = (ad.mx(name).await.unwrap(), own.mx(name).await.unwrap());
        assert_eq!(
            (x.security, &x.kind, x.nxdomain),
            (y.security, &y.kind, y.nxdomain),
            "{name}"
        );
        let (x, y) = (
            ad.addresses(name).await.unwrap(),
            own.addresses(name).await.unwrap(),
        );
        assert_eq!((x.security, &x.records), (y.security, &y.records), "{name}");
    }
}
