//! The end-to-end benchmark's smoke run (`e2e --smoke`: 2 servers, 1 proxy, a 100-file tree, one
//! round), as CI runs it: it must complete and print the table with every scenario and the
//! targets. No threshold on seconds is checked here: benchmarks are not timed tests. It runs
//! with `--no-check-wait --opcache-reset`, so the config those options write is one mwdeploy
//! accepts and deploys with (the default repool and the php-fpm reload are what every other
//! test of the command runs).

use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn the_smoke_run_completes_and_reports_every_scenario() {
    let began = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["--smoke", "--no-check-wait", "--opcache-reset"])
        .stdin(Stdio::null())
        .output()
        .expect("the e2e binary runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "e2e --smoke failed ({}):\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    for heading in [
        "#### first deploy (whole tree)",
        "#### new version directory",
        "#### small change, full --rsync",
        "#### small change, targeted --config",
        "#### Targets (design.md section 7)",
    ] {
        assert!(out.contains(heading), "no {heading:?} in:\n{out}");
    }
    for metric in [
        "| wall time |",
        "| out of service per server (median) |",
        "| of which in maintenance (median) |",
        "| servers out of the pool at once (max) |",
        "| ssh connections opened |",
        "| failed requests |",
    ] {
        assert_eq!(
            out.matches(metric).count(),
            4,
            "{metric:?} once per scenario in:\n{out}"
        );
    }
    assert!(
        out.contains("For reference: in maintenance only"),
        "no reference line in:\n{out}"
    );
    assert!(
        out.contains(
            "--max-unavailable 1, repool_after_check: false, post_activate: opcache reset: medians"
        ),
        "the table does not say how mwdeploy repooled and reset:\n{out}"
    );
    eprintln!(
        "e2e --smoke took {:.1} s\n{err}",
        began.elapsed().as_secs_f64()
    );
}
