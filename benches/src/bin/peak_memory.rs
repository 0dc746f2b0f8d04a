//! Runs one simulated rollout (100,000 servers unless given) and reports its wall time
//! and the process's peak resident memory (`VmHWM` from `/proc/self/status`).
//!
//! ```text
//! cargo run --release -p mwdeploy-benches --bin peak_memory [-- SERVERS]
//! ```
//!
//! The plan is the one `benches/rollout.rs` measures.

use std::process::ExitCode;
use std::time::Instant;

use mwdeploy_benches::rollout;

/// `VmHWM` (peak resident set) in KiB, on Linux.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    let servers: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 100_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: peak_memory [SERVERS]  (a whole number, at least 1)");
            return ExitCode::from(2);
        }
    };
    let before = peak_rss_kib();
    let start = Instant::now();
    let report = rollout(servers).run().expect("the plan is valid");
    let wall = start.elapsed();
    let after = peak_rss_kib();

    let s = report.summary;
    println!("servers           {servers}");
    println!("wall time         {:.3} s", wall.as_secs_f64());
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "peak RSS          {:.1} MiB (VmHWM; {:.1} MiB before the run)",
            a as f64 / 1024.0,
            b as f64 / 1024.0
        ),
        _ => println!("peak RSS          unknown (no /proc/self/status)"),
    }
    println!(
        "summary           {} succeeded, {} rolled back, {} failed, {} skipped",
        s.succeeded, s.rolled_back, s.failed, s.skipped
    );
    println!(
        "engine            {} steps, {} events, {:.1} h virtual",
        report.steps,
        report.events,
        report.virtual_duration.as_secs_f64() / 3600.0
    );
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("violations        {:?}", report.violations);
        ExitCode::FAILURE
    }
}
