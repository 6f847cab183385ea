//! `starttls`: shows the `starttls` library upgrading real connections and
//! refusing known attacks.
//!
//! `starttls suite` (the default) replays the transcript cases in memory,
//! runs the policy vectors (`cases/policy/*.vectors`: MTA-STS, TLS-RPT, DANE,
//! RFC 7817 identity, TLS memory and pins, each computed by the library), and
//! runs live checks on loopback for SMTP, submission, LMTP, IMAP and POP3,
//! STARTTLS and implicit TLS: the reference server and client over real TCP
//! and real TLS, and attack probes written on raw sockets. It prints one line
//! per check and a total, and exits non-zero if any check fails.

use starttls_conformance::{
    connect, hostile, live, mailbox, pki, policy, probe, reference, serve, transcript,
};

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "starttls",
    version,
    about = "STARTTLS conformance suite, reference server and client for the starttls library"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite: the transcript cases in memory, then live loopback checks (the default).
    Suite {
        /// Print results as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Skip the live loopback checks.
        #[arg(long)]
        no_live: bool,
        /// Directory of transcript cases.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/cases"))]
        cases: std::path::PathBuf,
    },
    /// Run the reference server (SMTP, submission, IMAP, POP3; STARTTLS and implicit TLS).
    Serve(Box<serve::ServeArgs>),
    /// Connect to a server as the reference client and show the upgrade.
    Connect(Box<connect::ConnectArgs>),
    /// Probe a server for STARTTLS bugs: upgrade, certificate, command injection, state reset, credentials before TLS (exit 0 pass, 1 finding, 2 inconclusive, 3 usage error).
    Probe(Box<probe::ProbeArgs>),
    /// Play a catalog of hostile-server cases against a mail client and judge it.
    Hostile(Box<hostile::HostileArgs>),
}
struct Outcome {
    protocol: &'static str,
    role: &'static str,
    class: &'static str,
    name: &'static str,
    pass: bool,
    detail: String,
    millis: u128,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // `probe` keeps 2 for "inconclusive": its usage errors are 3.
            let probe = std::env::args().nth(1).as_deref() == Some("probe");
            let code = if probe && e.use_stderr() {
                3
            } else {
                e.exit_code()
            };
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let (json, no_live, cases) = match cli.command {
        None => (
            false,
            false,
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/cases")),
        ),
        Some(Cmd::Suite {
            json,
            no_live,
            cases,
        }) => (json, no_live, cases),
        Some(Cmd::Serve(args)) => return serve::run(*args),
        Some(Cmd::Connect(args)) => return connect::run(*args),
        Some(Cmd::Probe(args)) => return probe::run(*args),
        Some(Cmd::Hostile(args)) => return hostile::run(*args),
    };
    let pki = match pki::Pki::generate() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("starttls: cannot generate test certificates: {e}");
            return ExitCode::from(2);
        }
    };
    let policy_dir = cases.join("policy");
    let cases = match transcript::load(&cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starttls: {e}");
            return ExitCode::from(2);
        }
    };
    let vectors = match policy::load(&policy_dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("starttls: {e}");
            return ExitCode::from(2);
        }
    };
    let mut checks = if no_live { Vec::new() } else { live::checks() };
    if !no_live {
        checks.extend(mailbox::checks());
        checks.extend(reference::checks());
    }
    let progress = !json && std::io::stderr().is_terminal();
    let mut outcomes = Vec::new();
    if !json {
        println!("transcript cases (in memory, every split): {}", cases.len());
        println!(
            "{:<6} {:<11} {:<7} {:<20} case",
            "", "protocol", "role", "class"
        );
    }
    for (i, case) in cases.iter().enumerate() {
        let name = case
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if progress {
            eprint!("[{}/{}] {name} ...", i + 1, cases.len());
            let _ = std::io::stderr().flush();
        }
        let start = Instant::now();
        let verdict = transcript::check(case);
        if progress {
            eprint!("\r\x1b[K");
        }
        let (pass, detail) = match &verdict.failure {
            None => (true, format!("{} splits", verdict.splits)),
            Some((split, f)) => (false, format!("{split:?}: {f}")),
        };
        let o = Outcome {
            protocol: leak(&case.protocol),
            role: if case.role == transcript::Role::Server {
                "server"
            } else {
                "client"
            },
            class: leak(&case.class),
            name: leak(&name),
            pass,
            detail,
            millis: start.elapsed().as_millis(),
        };
        if !json {
            println!(
                "{:<6} {:<11} {:<7} {:<20} {}  ({}; {} ms)",
                if o.pass { "PASS" } else { "FAIL" },
                o.protocol,
                o.role,
                o.class,
                o.name,
                o.detail,
                o.millis
            );
            if !o.pass {
                println!("       {}: {}", case.path.display(), case.summary);
            }
        }
        outcomes.push(o);
    }
    if !json && !vectors.is_empty() {
        println!();
        println!(
            "policy vectors (each outcome computed by the library): {}",
            vectors.len()
        );
        println!("{:<6} {:<11} {:<14} vector", "", "module", "check");
    }
    let mut vector_results = Vec::new();
    for v in &vectors {
        let start = Instant::now();
        let result = policy::check(v);
        let (pass, detail) = match &result {
            Ok(()) => (true, v.rule.clone()),
            Err(e) => (false, e.clone()),
        };
        let o = Outcome {
            protocol: "policy",
            role: leak(&v.module()),
            class: leak(&v.check),
            name: leak(&v.name),
            pass,
            detail,
            millis: start.elapsed().as_millis(),
        };
        if !json {
            println!(
                "{:<6} {:<11} {:<14} {}  ({}; {} ms)",
                if o.pass { "PASS" } else { "FAIL" },
                o.role,
                o.class,
                o.name,
                o.detail,
                o.millis
            );
            if !o.pass {
                println!("       {}:{}: {}", v.path.display(), v.line, v.rule);
            }
        }
        outcomes.push(o);
        vector_results.push((v.clone(), result));
    }
    if !json && !vectors.is_empty() {
        let counts: Vec<String> = policy::counts(&vector_results)
            .iter()
            .map(|(module, (pass, fail))| {
                if *fail == 0 {
                    format!("{module} {pass}")
                } else {
                    format!("{module} {pass} passed/{fail} failed")
                }
            })
            .collect();
        println!("policy vectors by module: {}", counts.join(", "));
    }
    if !json && !checks.is_empty() {
        println!();
        println!(
            "live loopback checks (real TCP, real TLS): {}",
            checks.len()
        );
        println!("{:<6} {:<11} {:<14} case", "", "protocol", "role");
    }
    for (i, check) in checks.iter().enumerate() {
        if progress {
            eprint!("[{}/{}] {} ...", i + 1, checks.len(), check.name);
            let _ = std::io::stderr().flush();
        }
        let start = Instant::now();
        let (pass, detail) = match (check.run)(&pki) {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        if progress {
            eprint!("\r\x1b[K");
        }
        let o = Outcome {
            protocol: check.protocol,
            role: check.role,
            class: "live",
            name: check.name,
            pass,
            detail,
            millis: start.elapsed().as_millis(),
        };
        if !json {
            println!(
                "{:<6} {:<11} {:<14} {}  ({}; {} ms)",
                if o.pass { "PASS" } else { "FAIL" },
                o.protocol,
                o.role,
                o.name,
                o.detail,
                o.millis
            );
        }
        outcomes.push(o);
    }
    let passed = outcomes.iter().filter(|o| o.pass).count();
    let failed = outcomes.len() - passed;
    if json {
        let items: Vec<String> = outcomes
            .iter()
            .map(|o| {
                format!(
                    "{{\"protocol\":{},\"role\":{},\"class\":{},\"case\":{},\"verdict\":{},\"detail\":{},\"ms\":{}}}",
                    js(o.protocol),
                    js(o.role),
                    js(o.class),
                    js(o.name),
                    js(if o.pass { "pass" } else { "fail" }),
                    js(&o.detail),
                    o.millis
                )
            })
            .collect();
        println!(
            "{{\"passed\":{passed},\"failed\":{failed},\"cases\":[{}]}}",
            items.join(",")
        );
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Case names live for the whole run.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
