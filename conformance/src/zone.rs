//! A DNSSEC-signed test zone on loopback, served by a real `knotd`.
//!
//! [`ZoneBuilder`] writes a Knot DNS configuration and zone files into a
//! temp dir, pre-generates every signing key with `keymgr` (so that DS
//! records for signed children are known before the server starts), starts
//! `knotd -c FILE` in the foreground on `127.0.0.1@<free port>` with
//! `dnssec-signing: on`, waits until it answers a signed SOA and the apex
//! DNSKEY RRset, and exports that RRset (every apex key) as the trust-anchor
//! text. Dropping the [`TestZone`] kills `knotd` and removes the dir.
//!
//! Children of the zone, all served by the same `knotd` (which answers each
//! query from the most specific zone it holds, and a DS query from the
//! parent):
//!
//! | [`ChildKind`] | parent holds | child zone | a validator says |
//! |---|---|---|---|
//! | `Secure` | NS + DS of the child's key | signed | secure |
//! | `Insecure` | NS, no DS (the parent's NSEC proves there is none) | unsigned | insecure |
//! | `BogusDs` | NS + a DS whose digest is the real one with its last byte flipped | signed | bogus (no DNSKEY matches the DS) |
//!
//! Knot signs everything it serves with a DS that does not match: it does
//! not check a parent's DS against the child's keys, so the mismatched DS
//! is the way to plant a bogus zone (a broken signature would need editing
//! the signed zone behind knot's back).
//!
//! The "indeterminate" case is [`DeadServer`]: a UDP socket on loopback that
//! reads nothing and answers nothing, and no TCP listener.
//!
//! Keys: ECDSA P-256 (algorithm 13), one combined signing key per zone
//! (`single-type-signing`), manual policy (no rollover), NSEC.
//!
//! Without `knotd`/`keymgr`/`kdig`, [`ZoneBuilder::start`] prints why and
//! returns `None`; under `CI=true` it panics (`.ci/run` installs them
//! through `conformance/peers/install.sh`).
//!
//! [`ValidatingResolver`] puts a real `unbound` in front of a [`TestZone`]:
//! a local validating resolver whose AD bit `Validation::TrustAd` of
//! `starttls_io::dns` can trust (it never sets AD for an answer it did not
//! validate, and answers `SERVFAIL` for a bogus one).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a child zone is delegated and signed. See the [module](self) table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    /// Signed, with the matching DS in the parent: the chain of trust
    /// continues.
    Secure,
    /// Unsigned, with no DS in the parent: provably insecure.
    Insecure,
    /// Signed, but the parent's DS does not match any of its keys: bogus.
    BogusDs,
}

#[derive(Clone, Debug)]
struct ChildSpec {
    name: String,
    kind: ChildKind,
    records: Vec<String>,
}

/// Builds a [`TestZone`]: the apex, its records and its child zones.
#[derive(Clone, Debug)]
pub struct ZoneBuilder {
    apex: String,
    records: Vec<String>,
    children: Vec<ChildSpec>,
}

/// A running `knotd` serving the zone and its children; killed on drop.
#[derive(Debug)]
pub struct TestZone {
    apex: String,
    addr: SocketAddr,
    anchors: String,
    anchors_file: PathBuf,
    dir: PathBuf,
    knotd: Option<Child>,
}

/// A nameserver address that never answers: a bound UDP socket nobody
/// reads, and nothing listening on TCP at the same port (a TCP connect is
/// refused at once). Queries to it time out.
#[derive(Debug)]
pub struct DeadServer {
    socket: UdpSocket,
}

impl DeadServer {
    /// Binds the silent socket on `127.0.0.1`.
    pub fn bind() -> std::io::Result<DeadServer> {
        Ok(DeadServer {
            socket: UdpSocket::bind("127.0.0.1:0")?,
        })
    }

    /// The address to configure as a nameserver.
    pub fn addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn program_exists(name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()),
        )
        .any(|dir| dir.join(name).is_file())
}

fn program_path(name: &str) -> String {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// `name` with exactly one trailing dot, lower-cased.
fn fqdn(name: &str) -> String {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{name}.")
}

impl ZoneBuilder {
    /// A zone at `apex` (e.g. `example.test.`; use the reserved `test.`
    /// TLD). It starts with a SOA, `NS ns.<apex>` and `ns.<apex> A
    /// 127.0.0.1`; add the rest with [`record`](Self::record).
    pub fn new(apex: &str) -> ZoneBuilder {
        ZoneBuilder {
            apex: fqdn(apex),
            records: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds one presentation-format line to the apex zone file, e.g.
    /// `"@ MX 10 mx1"`, `"mx1 A 127.0.0.1"`,
    /// `"_25._tcp.mx1 TLSA 3 1 1 <hex>"`, `"txt TXT \"a\" \"b\""`. `$ORIGIN`
    /// is the apex and `$TTL` 300, so relative names work.
    pub fn record(mut self, line: &str) -> ZoneBuilder {
        self.records.push(line.to_owned());
        self
    }

    /// Adds a child zone `name` (a label relative to the apex, like
    /// `"insecure"`, or a name under the apex ending in a dot) of `kind`,
    /// with its own records (relative to the child's apex).
    pub fn child(mut self, name: &str, kind: ChildKind, records: &[&str]) -> ZoneBuilder {
        let name = if name.ends_with('.') {
            fqdn(name)
        } else {
            format!("{}.{}", name.to_ascii_lowercase(), self.apex)
        };
        self.children.push(ChildSpec {
            name,
            kind,
            records: records.iter().map(|r| (*r).to_owned()).collect(),
        });
        self
    }

    /// Writes the files, starts `knotd` and waits until it serves the
    /// signed zone. `None` (after printing why) when Knot is not installed;
    /// panics when it is missing under `CI=true`, or when it fails to start.
    pub fn start(self) -> Option<TestZone> {
        let missing: Vec<&str> = ["knotd", "keymgr", "kdig"]
            .into_iter()
            .filter(|p| !program_exists(p))
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "test zone: missing {} (Debian packages knot, knot-dnsutils; \
                 conformance/peers/install.sh installs them)",
                missing.join(", ")
            );
            if in_ci() {
                panic!("{why} (CI=true: a missing peer is a failure, not a skip)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let mut last = String::new();
        // A free port can be taken between probing and knotd's bind: retry.
        for _ in 0..3 {
            match self.try_start() {
                Ok(zone) => return Some(zone),
                Err(e) => last = e,
            }
        }
        panic!("test zone: knotd did not start: {last}");
    }

    fn try_start(&self) -> Result<TestZone, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "starttls-zone-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["zones", "db", "run"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("mkdir: {e}"))?;
        }
        // The zone owns the dir from here: a failure below removes it.
        let mut zone = TestZone {
            apex: self.apex.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            anchors: String::new(),
            anchors_file: dir.join("anchors.txt"),
            dir: dir.clone(),
            knotd: None,
        };
        let conf = dir.join("knot.conf");
        std::fs::write(&conf, self.config(&dir, zone.addr))
            .map_err(|e| format!("write config: {e}"))?;

        // Keys first, so the parent's DS records can be written.
        let mut signed = vec![self.apex.clone()];
        signed.extend(
            self.children
                .iter()
                .filter(|c| c.kind != ChildKind::Insecure)
                .map(|c| c.name.clone()),
        );
        for name in &signed {
            keymgr(
                &conf,
                &[
                    name,
                    "generate",
                    "algorithm=ecdsap256sha256",
                    "ksk=yes",
                    "zsk=yes",
                ],
            )?;
        }
        let mut ds_lines = Vec::new();
        for child in &self.children {
            if child.kind == ChildKind::Insecure {
                continue;
            }
            let out = keymgr(&conf, &[&child.name, "ds"])?;
            // "name DS tag alg digest-type hex": keep SHA-256 (type 2).
            for line in out.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 6 && f[1] == "DS" && f[4] == "2" {
                    let digest = if child.kind == ChildKind::BogusDs {
                        flip_last_hex(f[5])
                    } else {
                        f[5].to_owned()
                    };
                    ds_lines.push(format!("{} DS {} {} 2 {digest}", f[0], f[2], f[3]));
                }
            }
        }

        // The zone files.
        let mut apex_file = header(&self.apex, &self.apex);
        for child in &self.children {
            let _ = writeln!(apex_file, "{} NS ns.{}", child.name, self.apex);
        }
        for line in &ds_lines {
            let _ = writeln!(apex_file, "{line}");
        }
        for line in &self.records {
            let _ = writeln!(apex_file, "{line}");
        }
        write_zone(&dir, &self.apex, &apex_file)?;
        for child in &self.children {
            let mut text = header(&child.name, &self.apex);
            for line in &child.records {
                let _ = writeln!(text, "{line}");
            }
            write_zone(&dir, &child.name, &text)?;
        }

        let log = std::fs::File::create(dir.join("knotd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(program_path("knotd"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn knotd: {e}"))?;
        zone.knotd = Some(child);

        // Ready = the apex SOA comes back signed and the DNSKEY RRset too.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(knotd) = zone.knotd.as_mut() {
                if let Ok(Some(status)) = knotd.try_wait() {
                    return Err(format!("knotd exited ({status}): {}", zone.log_tail()));
                }
            }
            let soa = zone
                .kdig(&["+dnssec", "SOA", &self.apex])
                .unwrap_or_default();
            let has_sig = soa
                .lines()
                .any(|l| l.split_whitespace().nth(3) == Some("RRSIG"));
            if has_sig {
                let keys = zone.kdig(&["+dnssec", "DNSKEY", &self.apex])?;
                let anchors: Vec<&str> = keys
                    .lines()
                    .filter(|l| l.split_whitespace().nth(3) == Some("DNSKEY"))
                    .collect();
                if !anchors.is_empty() {
                    zone.anchors = anchors.join("\n") + "\n";
                    std::fs::write(&zone.anchors_file, &zone.anchors)
                        .map_err(|e| format!("write anchors: {e}"))?;
                    return Ok(zone);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no signed SOA within 15 s: {}", zone.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn config(&self, dir: &Path, addr: SocketAddr) -> String {
        let d = dir.display();
        let mut c = format!(
            "server:\n    rundir: \"{d}/run\"\n    listen: {}@{}\n\
             database:\n    storage: \"{d}/db\"\n\
             log:\n  - target: stderr\n    any: info\n\
             policy:\n  - id: test\n    algorithm: ecdsap256sha256\n    manual: on\n\
             \x20   single-type-signing: on\n    nsec3: off\n    rrsig-lifetime: 30d\n    rrsig-refresh: 7d\n\
             template:\n  - id: default\n    storage: \"{d}/zones\"\n    zonefile-sync: -1\n\
             \x20   zonefile-load: whole\n    journal-content: none\n    semantic-checks: off\n\
             zone:\n",
            addr.ip(),
            addr.port()
        );
        let mut zones = vec![(self.apex.clone(), true)];
        zones.extend(
            self.children
                .iter()
                .map(|ch| (ch.name.clone(), ch.kind != ChildKind::Insecure)),
        );
        for (name, signed) in zones {
            let _ = write!(c, "  - domain: {name}\n    file: \"{name}zone\"\n");
            if signed {
                c.push_str("    dnssec-signing: on\n    dnssec-policy: test\n");
            }
        }
        c
    }
}

/// `$ORIGIN`, `$TTL`, SOA and NS; the nameserver `ns.<apex>` (address
/// 127.0.0.1) serves the apex and every child.
fn header(origin: &str, apex: &str) -> String {
    let mut h = format!(
        "$ORIGIN {origin}\n$TTL 300\n@ SOA ns.{apex} hostmaster.{apex} 1 3600 600 86400 60\n\
         @ NS ns.{apex}\n"
    );
    if origin == apex {
        h.push_str("ns A 127.0.0.1\n");
    }
    h
}

fn write_zone(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::write(dir.join("zones").join(format!("{name}zone")), text)
        .map_err(|e| format!("write zone {name}: {e}"))
}

fn flip_last_hex(hex: &str) -> String {
    let mut s = hex.to_ascii_lowercase();
    let last = s.pop().unwrap_or('0');
    s.push(if last == '0' { '1' } else { '0' });
    s
}

fn keymgr(conf: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program_path("keymgr"))
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .map_err(|e| format!("keymgr: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "keymgr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port free on 127.0.0.1 for both UDP and TCP (released again: knotd
/// binds it).
fn free_port() -> Result<u16, String> {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = udp.local_addr().map_err(|e| e.to_string())?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both UDP and TCP".into())
}

impl TestZone {
    /// The zone's apex, with its trailing dot (`example.test.`).
    pub fn apex(&self) -> &str {
        &self.apex
    }

    /// Where `knotd` answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every DNSKEY at the apex, one presentation-format line each (as
    /// `kdig DNSKEY <apex>` prints them): the trust anchors for the zone.
    pub fn trust_anchors(&self) -> &str {
        &self.anchors
    }

    /// The same, in a file.
    pub fn trust_anchor_file(&self) -> &Path {
        &self.anchors_file
    }

    /// The temp dir holding the config, the zone files and `knotd.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `kdig @addr -p port +noall +answer ARGS...` against the zone and
    /// returns its output (for tests that want to see the raw answer).
    pub fn kdig(&self, args: &[&str]) -> Result<String, String> {
        kdig(self.addr, &["+noall", "+answer"], args)
    }

    fn log_tail(&self) -> String {
        log_tail(&self.dir.join("knotd.log"))
    }
}

impl Drop for TestZone {
    fn drop(&mut self) {
        if let Some(mut child) = self.knotd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("STARTTLS_ZONE_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A real `unbound` on `127.0.0.1@<free port>`, validating the answers of a
/// [`TestZone`] from its apex keys; killed on drop.
///
/// Started as `unbound -d -c FILE` in the foreground with a config of its
/// own in a temp dir: `local-zone: "test." nodefault` (the reserved TLD is
/// otherwise answered locally with NXDOMAIN), a `forward-zone` for the apex
/// to the zone's `knotd` (a forwarder rather than a stub: the zone's NS
/// `ns.<apex>` is at 127.0.0.1 port 53, where nobody listens, and `knotd`
/// answers for the children itself), the zone's DNSKEYs as
/// `trust-anchor-file`, `module-config: "validator iterator"`, caches of at
/// most 5 s, and `outgoing-interface: 127.0.0.1` so that it cannot reach
/// anything but loopback.
#[derive(Debug)]
pub struct ValidatingResolver {
    addr: SocketAddr,
    dir: PathBuf,
    unbound: Option<Child>,
}

impl ValidatingResolver {
    /// Starts `unbound` in front of `zone` and waits until it answers the
    /// apex SOA with the AD bit (so validation works). `None` (after
    /// printing why) when `unbound` is not installed; panics when it is
    /// missing under `CI=true`, or when it fails to start.
    pub fn start(zone: &TestZone) -> Option<ValidatingResolver> {
        if !program_exists("unbound") {
            let why = "validating resolver: missing unbound (Debian package unbound; \
                       conformance/peers/install.sh installs it)";
            if in_ci() {
                panic!("{why} (CI=true: a missing peer is a failure, not a skip)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let mut last = String::new();
        for _ in 0..3 {
            match ValidatingResolver::try_start(zone) {
                Ok(r) => return Some(r),
                Err(e) => last = e,
            }
        }
        panic!("validating resolver: unbound did not start: {last}");
    }

    fn try_start(zone: &TestZone) -> Result<ValidatingResolver, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "starttls-unbound-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
        let mut resolver = ValidatingResolver {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            dir: dir.clone(),
            unbound: None,
        };
        let anchors = dir.join("anchors.txt");
        std::fs::write(&anchors, zone.trust_anchors())
            .map_err(|e| format!("write anchors: {e}"))?;
        let conf = dir.join("unbound.conf");
        std::fs::write(&conf, unbound_config(&dir, resolver.addr, zone))
            .map_err(|e| format!("write config: {e}"))?;
        let check = Command::new(program_path("unbound-checkconf"))
            .arg(&conf)
            .output();
        if let Ok(out) = check {
            if !out.status.success() {
                return Err(format!(
                    "unbound-checkconf: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let log = std::fs::File::create(dir.join("unbound.log")).map_err(|e| e.to_string())?;
        let child = Command::new(program_path("unbound"))
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn unbound: {e}"))?;
        resolver.unbound = Some(child);

        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(unbound) = resolver.unbound.as_mut() {
                if let Ok(Some(status)) = unbound.try_wait() {
                    return Err(format!(
                        "unbound exited ({status}): {}",
                        resolver.log_tail()
                    ));
                }
            }
            let out = resolver
                .kdig(&["+dnssec", "+adflag", "SOA", zone.apex()])
                .unwrap_or_default();
            if out.contains("status: NOERROR") && flags_have_ad(&out) {
                return Ok(resolver);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no validated SOA of {} within 15 s (last answer: {out}): {}",
                    zone.apex(),
                    resolver.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where `unbound` answers (UDP and TCP): the nameserver to configure.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temp dir holding `unbound.conf`, the anchors and `unbound.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `kdig @addr -p port +time=1 +retry=0 ARGS...` against the
    /// resolver and returns its whole output (header and flags included).
    pub fn kdig(&self, args: &[&str]) -> Result<String, String> {
        kdig(self.addr, &[], args)
    }

    fn log_tail(&self) -> String {
        log_tail(&self.dir.join("unbound.log"))
    }
}

/// Whether kdig's `;; Flags: qr rd ra ad; QUERY: ...` line has `ad`.
fn flags_have_ad(kdig: &str) -> bool {
    kdig.lines()
        .filter_map(|l| l.strip_prefix(";; Flags:"))
        .any(|f| {
            f.split(';')
                .next()
                .is_some_and(|flags| flags.split_whitespace().any(|x| x == "ad"))
        })
}

fn unbound_config(dir: &Path, addr: SocketAddr, zone: &TestZone) -> String {
    let d = dir.display();
    let apex = zone.apex();
    let knot = zone.addr();
    format!(
        "server:\n\
         \x20   interface: {ip}\n\
         \x20   port: {port}\n\
         \x20   do-ip4: yes\n\
         \x20   do-ip6: no\n\
         \x20   do-udp: yes\n\
         \x20   do-tcp: yes\n\
         \x20   outgoing-interface: 127.0.0.1\n\
         \x20   access-control: 127.0.0.0/8 allow\n\
         \x20   do-not-query-localhost: no\n\
         \x20   do-daemonize: no\n\
         \x20   chroot: \"\"\n\
         \x20   username: \"\"\n\
         \x20   directory: \"{d}\"\n\
         \x20   pidfile: \"{d}/unbound.pid\"\n\
         \x20   logfile: \"\"\n\
         \x20   use-syslog: no\n\
         \x20   verbosity: 1\n\
         \x20   val-log-level: 2\n\
         \x20   ede: yes\n\
         \x20   num-threads: 1\n\
         \x20   so-reuseport: no\n\
         \x20   module-config: \"validator iterator\"\n\
         \x20   trust-anchor-file: \"{d}/anchors.txt\"\n\
         \x20   local-zone: \"test.\" nodefault\n\
         \x20   cache-min-ttl: 0\n\
         \x20   cache-max-ttl: 5\n\
         \x20   cache-max-negative-ttl: 5\n\
         \x20   infra-host-ttl: 5\n\
         \x20   prefetch: no\n\
         \x20   qname-minimisation: no\n\
         \x20   msg-cache-size: 1m\n\
         \x20   rrset-cache-size: 1m\n\
         \x20   key-cache-size: 1m\n\
         \x20   neg-cache-size: 1m\n\
         remote-control:\n\
         \x20   control-enable: no\n\
         forward-zone:\n\
         \x20   name: \"{apex}\"\n\
         \x20   forward-addr: {kip}@{kport}\n",
        ip = addr.ip(),
        port = addr.port(),
        kip = knot.ip(),
        kport = knot.port(),
    )
}

impl Drop for ValidatingResolver {
    fn drop(&mut self) {
        if let Some(mut child) = self.unbound.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("STARTTLS_ZONE_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `kdig @ADDR -p PORT +time=1 +retry=0 FLAGS ARGS`: its output, or why not.
fn kdig(addr: SocketAddr, flags: &[&str], args: &[&str]) -> Result<String, String> {
    let out = Command::new(program_path("kdig"))
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(flags)
        .args(["+time=1", "+retry=0"])
        .args(args)
        .output()
        .map_err(|e| format!("kdig: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kdig {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last ten lines of a daemon's log, for a failure message.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
