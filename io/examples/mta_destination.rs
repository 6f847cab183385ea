//! An MTA choosing how to reach a destination domain (features `dns` and
//! `mta-sts`): it resolves the domain through `starttls_io::destination`
//! (MX with DNSSEC, each host's TLSA records, the MTA-STS policy), then tries
//! the hosts in order, each with the TLS policy and the rustls verifier its
//! plan names (DANE, then MTA-STS, then opportunistic TLS), and stops at the
//! first that reaches `Ready` over TLS (a real MTA would send its message
//! there; this one says QUIT). A host the plan says to skip is skipped.
//!
//! ```text
//! cargo run -p starttls-io --features dns,mta-sts --example mta_destination -- \
//!     example.org --dns 127.0.0.1:53 [--trust-anchor KEYS] [--ca CA.pem] [--port 25] [--mta-sts-port 443]
//! ```
//!
//! Prints one line per step; exits 0 when a host was reached, 1 otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use starttls::rustls;
use starttls::rustls::pki_types::pem::PemObject;
use starttls::rustls::pki_types::CertificateDer;
use starttls::smtp::{ClientConfig, ClientEvent, ClientSession, Command};
use starttls::{ClientTls, Escaped, TlsPolicy, UpgradeEvent};
use starttls_io::destination::{DestinationConfig, Destinations, Route};
use starttls_io::dns::{Resolver, ResolverConfig, TrustAnchors, Validation};
use starttls_io::mta_sts::{Connect, FetcherConfig, StsFetcher, StsPolicies};
use starttls_io::tokio::Driver;

struct Args {
    domain: String,
    dns: SocketAddr,
    anchors: Option<String>,
    ca: Option<String>,
    port: u16,
    sts_port: Option<u16>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        domain: String::new(),
        dns: "127.0.0.1:53".parse().map_err(|e| format!("{e}"))?,
        anchors: None,
        ca: None,
        port: 25,
        sts_port: None,
    };
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--dns" => a.dns = value()?.parse().map_err(|e| format!("--dns: {e}"))?,
            "--trust-anchor" => a.anchors = Some(value()?),
            "--ca" => a.ca = Some(value()?),
            "--port" => a.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--mta-sts-port" => {
                a.sts_port = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--mta-sts-port: {e}"))?,
                )
            }
            d if a.domain.is_empty() && !d.starts_with("--") => a.domain = d.to_string(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.domain.is_empty() {
        return Err("usage: mta_destination DOMAIN --dns ADDR [--trust-anchor FILE] [--ca FILE] [--port N] [--mta-sts-port N]".into());
    }
    Ok(a)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("mta_destination: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let a = args()?;
    let anchors = match &a.anchors {
        Some(path) => TrustAnchors::from_file(path)?,
        None => TrustAnchors::iana_root(),
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &a.ca {
        for cert in CertificateDer::pem_file_iter(path)? {
            roots.add(cert?)?;
        }
    }
    let roots = Arc::new(roots);
    let config = ResolverConfig::new(vec![a.dns], Validation::InProcess(anchors));
    // The MTA-STS policy host is looked up with the same validating resolver
    // (on port 443, or --mta-sts-port for a test server).
    let for_sts = Arc::new(Resolver::new(config.clone())?);
    let connect = match a.sts_port {
        None => Connect::Source(for_sts),
        Some(port) => Connect::from_fn(move |host: String, _: u16| {
            let r = Arc::clone(&for_sts);
            async move { starttls_io::mta_sts::AddressSource::addresses(&*r, &host, port).await }
        }),
    };
    let fetcher = StsFetcher::new(FetcherConfig::new(Arc::clone(&roots)).connect(connect))?;
    let destinations = Destinations::new(
        Resolver::new(config)?,
        StsPolicies::new(fetcher),
        DestinationConfig::new(roots, TlsPolicy::Opportunistic),
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let destination = destinations.resolve(&a.domain, now).await?;
    println!(
        "{}: MX {} ({}), MTA-STS {}",
        destination.domain,
        destination.routes().len(),
        destination.mx.security,
        destination
            .mta_sts
            .policy
            .as_ref()
            .map(|p| format!("mode {}", p.mode()))
            .unwrap_or_else(|| "none".into())
    );
    for route in destination.routes() {
        println!("route {}: {:?}", route.host(), route.plan());
        match try_route(route, a.port).await {
            Ok(()) => return Ok(true),
            Err(e) => println!("  {}: {e}; next host", route.host()),
        }
    }
    println!("no host could be reached as the policy requires: defer the message");
    Ok(false)
}

async fn try_route(route: &Route, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let (Some(tls), Some(tls_config), Some(name)) =
        (route.tls(), route.client_config(), route.server_name())
    else {
        return Err("the plan says not to connect to this host".into());
    };
    let addresses = &route.addresses().records;
    let Some(ip) = addresses.first() else {
        return Err("no address".into());
    };
    let config = ClientConfig::new(
        "mta.example.invalid",
        tls,
        ClientTls::Rustls {
            config: tls_config,
            server_name: name.clone(),
        },
    );
    let session = ClientSession::new(Arc::new(config))?;
    let stream = tokio::net::TcpStream::connect(SocketAddr::new(*ip, port)).await?;
    let mut driver = Driver::new(session, stream);
    let mut secured = false;
    while let Some(event) = driver.next_event().await? {
        match event {
            ClientEvent::Upgrade(UpgradeEvent::TlsEstablished(info)) => {
                secured = true;
                println!(
                    "  TLS {} with {}",
                    info.version.map(|v| v.to_string()).unwrap_or_default(),
                    route.host()
                );
            }
            ClientEvent::Ready { trust } => {
                println!("  ready [{trust}]: a message would be sent here");
                driver.session_mut().send(Command::Quit)?;
            }
            ClientEvent::Reply { reply, .. } => {
                for line in reply.message.lines() {
                    println!("  S: {} {}", reply.message.code(), Escaped::new(&line));
                }
            }
            _ => {}
        }
    }
    driver.close().await?;
    if tls.requires_tls() && !secured {
        return Err("TLS was required and did not come up".into());
    }
    Ok(())
}
