//! Checks for the policy layer's parsers: everything a DNS answer or an
//! HTTPS body can put in front of them (MTA-STS and TLS-RPT TXT records,
//! MTA-STS policy files, TLSA records in wire and presentation form, MX
//! patterns, fingerprints). None may panic; whatever parses must write back
//! and parse again to the same value.

use std::str::FromStr;

use starttls::policy::dane::TlsaRecord;
use starttls::policy::memory::Fingerprint;
use starttls::policy::mta_sts::{self, MxPattern, Policy, StsRecord};
use starttls::policy::tlsrpt::TlsRptRecord;

/// The first octet picks the parser; the rest is its input.
pub fn policy_parsers(data: &[u8]) {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(input).ok();
    match which % 8 {
        0 => {
            if let Ok(r) = StsRecord::parse(input) {
                let id = r.id();
                let id = id.as_str();
                assert!((1..=32).contains(&id.len()), "STS id length {id:?}");
                assert!(
                    id.bytes().all(|c| c.is_ascii_alphanumeric()),
                    "STS id {id:?}"
                );
            }
        }
        1 => {
            if let Ok(p) = Policy::parse(input) {
                assert!(p.max_age() <= mta_sts::MAX_MAX_AGE);
                let again = Policy::parse(p.text().as_bytes()).expect("a policy's text parses");
                assert_eq!(again, p, "policy text does not parse back to itself");
                for mx in p.mx() {
                    let back =
                        MxPattern::parse(&mx.to_string()).expect("an MX pattern prints back");
                    assert_eq!(&back, mx);
                }
            }
        }
        2 => {
            if let Ok(r) = TlsRptRecord::parse(input) {
                assert!(r.uris().len() <= starttls::policy::tlsrpt::MAX_RUA_URIS);
            }
        }
        3 => {
            if let Ok(r) = TlsaRecord::from_rdata(input) {
                assert_eq!(r.to_rdata(), input, "TLSA RDATA does not round-trip");
                let shown = r.to_string();
                let back = TlsaRecord::from_presentation(&shown).expect("TLSA presentation parses");
                assert_eq!(back, r, "TLSA presentation does not round-trip: {shown}");
            }
        }
        4 => {
            if let Some(Ok(r)) = text.map(TlsaRecord::from_presentation) {
                let back = TlsaRecord::from_rdata(&r.to_rdata()).expect("TLSA RDATA parses");
                assert_eq!(
                    back, r,
                    "TLSA RDATA of a presentation record does not round-trip"
                );
                let _ = r.usability();
            }
        }
        5 => {
            if let Some(Ok(p)) = text.map(MxPattern::parse) {
                let back = MxPattern::parse(&p.to_string()).expect("an MX pattern prints back");
                assert_eq!(back, p);
                let _ = p.matches("mx1.example.com");
                if let Some(t) = text {
                    let _ = p.matches(t);
                }
            }
        }
        6 => {
            if let Some(Ok(f)) = text.map(Fingerprint::from_str) {
                let back =
                    Fingerprint::from_str(&f.to_string()).expect("a fingerprint prints back");
                assert!(back == f, "fingerprint does not round-trip");
            }
        }
        _ => {
            let (status, body) = match input.split_first() {
                Some((&s, b)) => (if s % 4 == 0 { 404 } else { 200 }, b),
                None => (200, input),
            };
            let _ = mta_sts::parse_response(status, Some("text/plain; charset=utf-8"), body, 4096);
        }
    }
}
