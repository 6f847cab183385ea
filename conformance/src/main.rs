//! `starttls`: shows the `starttls` library upgrading real connections and
//! refusing known attacks.
//!
//! `starttls suite` (the default) runs live checks on loopback for SMTP,
//! submission, LMTP, IMAP and POP3, STARTTLS and implicit TLS: the reference
//! server and client over real TCP and real TLS, and attack probes written on
//! raw sockets. It prints one line per check and a total, and exits
//! non-zero if any check fails.

mod drive;
mod live;
mod mailbox;
mod pki;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "starttls",
    version,
    about = "STARTTLS conformance suite for the starttls library"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite (the default).
    Suite {
        /// Print results as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

struct Outcome {
    protocol: &'static str,
    role: &'static str,
    name: &'static str,
    pass: bool,
    detail: String,
    millis: u128,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match cli.command {
        None => false,
        Some(Cmd::Suite { json }) => json,
    };
    let pki = match pki::Pki::generate() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("starttls: cannot generate test certificates: {e}");
            return ExitCode::from(2);
        }
    };
    let mut checks = live::checks();
    checks.extend(mailbox::checks());
    if !json {
        println!(
            "live loopback checks (real TCP, real TLS): {}",
            checks.len()
        );
        println!("{:<6} {:<11} {:<14} case", "", "protocol", "role");
    }
    let mut outcomes = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let progress = !json && std::io::stderr().is_terminal();
        if progress {
            eprint!("[{}/{}] {} ...", i + 1, checks.len(), check.name);
            let _ = std::io::stderr().flush();
        }
        let start = Instant::now();
        let (pass, detail) = match (check.run)(&pki) {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        let o = Outcome {
            protocol: check.protocol,
            role: check.role,
            name: check.name,
            pass,
            detail,
            millis: start.elapsed().as_millis(),
        };
        if progress {
            eprint!("\r\x1b[K");
        }
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
                    "{{\"protocol\":{},\"role\":{},\"case\":{},\"verdict\":{},\"detail\":{},\"ms\":{}}}",
                    js(o.protocol),
                    js(o.role),
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
