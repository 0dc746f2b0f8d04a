//! `benches/haproxy-check-phase.sh`, the measurement behind BENCHMARKS.md's repool
//! figures, run small (2 samples a variant) against the real HAProxy: it must finish and
//! print a row with a number of milliseconds for every variant. No threshold on those
//! numbers is checked: they are a benchmark's.

use std::process::{Command, Stdio};

#[test]
fn the_check_phase_script_measures_every_variant() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/haproxy-check-phase.sh");
    let o = Command::new("bash")
        .args([script, "2", "0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "haproxy-check-phase.sh failed ({}; a missing tool is installed by \
         scripts/install-deps.sh):\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| variant") && !l.starts_with("| ---"))
        .collect();
    assert_eq!(rows.len(), 6, "one row a variant:\n{out}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // "", variant, samples, median, ""
        let samples: Vec<u64> = cells[2]
            .split_whitespace()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("not a number in {row:?}"))
            })
            .collect();
        assert_eq!(samples.len(), 2, "{row}");
        let median = cells[3].trim_end_matches(" ms");
        assert!(median.parse::<u64>().is_ok(), "{row}");
    }
}
