//! `mwdeploy simulate`, run as a process: output formats, determinism, exit codes.

use std::io::Read;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mwdeploy");

/// `mwdeploy simulate ARGS`, without a seed from the caller's environment.
fn simulate(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("simulate")
        .args(args)
        .env_remove("MWDEPLOY_SIM_SEED")
        .output()
        .expect("the mwdeploy binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Each server counted once: the summary's fields add up to the fleet.
fn summary_total(report: &Value) -> u64 {
    let s = &report["summary"];
    ["succeeded", "warned", "failed", "rolled_back", "skipped"]
        .iter()
        .map(|k| {
            s[k].as_u64()
                .unwrap_or_else(|| panic!("summary.{k} missing: {report}"))
        })
        .sum()
}

const FAULTY: &[&str] = &[
    "--servers",
    "40",
    "--canary-fail-rate",
    "0.2",
    "--transfer-fail-rate",
    "0.1",
    "--layout",
    "releases",
    "--parallel",
    "3",
    "--max-unavailable",
    "2",
    "--stages",
    "1,10%,100%",
    "--on-failure",
    "continue",
    "--json",
];

fn faulty(seed: &str) -> Output {
    let mut args = FAULTY.to_vec();
    args.extend(["--seed", seed]);
    simulate(&args)
}

#[test]
fn json_lines_all_parse_and_end_with_the_simulation_report() {
    let o = faulty("3");
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let lines = json_lines(&o);
    assert!(lines.len() > 40 * 5, "only {} lines", lines.len());

    let mut finals = 0;
    let mut last_ts = String::new();
    for (i, v) in lines.iter().enumerate() {
        let obj = v.as_object().expect("each line is an object");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        for k in ["ts", "deploy", "event"] {
            assert!(keys.contains(&k), "line {i} lacks {k}: {v}");
        }
        let ts = v["ts"].as_str().expect("ts is a string");
        assert!(ts.ends_with('Z'), "ts not UTC: {ts}");
        humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("ts {ts}: {e}"));
        assert!(
            ts >= last_ts.as_str(),
            "time went back at line {i}: {ts} < {last_ts}"
        );
        last_ts = ts.to_string();
        assert_eq!(v["deploy"], lines[0]["deploy"], "one deploy id throughout");
        if v["event"] == "server_state"
            && ["done", "warned", "failed", "rolled_back", "skipped"]
                .contains(&v["state"].as_str().unwrap())
        {
            finals += 1;
        }
    }
    assert_eq!(lines[0]["event"], "deploy_started");
    assert_eq!(finals, 40, "each server reaches one final state");

    let report = lines.last().unwrap();
    assert_eq!(report["event"], "simulation_report");
    assert_eq!(report["servers"], 40);
    assert_eq!(report["seed"], 3);
    assert_eq!(summary_total(report), 40);
    assert_eq!(report["violations"], Value::Array(vec![]));
    assert!(report["max_out_of_pool"].as_u64().unwrap() <= 2);
    assert!(report["virtual_duration_s"].as_f64().unwrap() > 0.0);
    assert!(
        lines
            .iter()
            .filter(|v| v["event"] == "simulation_report")
            .count()
            == 1,
        "one report line"
    );
}

/// The output without `ts` and `deploy`: what the contract promises is repeatable.
fn without_ts_and_deploy(o: &Output) -> Vec<Value> {
    json_lines(o)
        .into_iter()
        .map(|mut v| {
            let obj = v.as_object_mut().unwrap();
            obj.remove("ts");
            obj.remove("deploy");
            v
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_output() {
    let a = without_ts_and_deploy(&faulty("11"));
    let b = without_ts_and_deploy(&faulty("11"));
    assert!(a.len() > 100);
    assert_eq!(a, b);
}

#[test]
fn another_seed_gives_another_run_when_faults_are_drawn() {
    let a = without_ts_and_deploy(&faulty("11"));
    let b = without_ts_and_deploy(&faulty("12"));
    assert_ne!(a, b);
}

#[test]
fn without_a_seed_one_is_chosen_printed_and_repeatable() {
    let o = simulate(&[
        "--servers",
        "10",
        "--canary-fail-rate",
        "0.3",
        "--json",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let first = json_lines(&o).pop().unwrap();
    let seed = first["seed"]
        .as_u64()
        .expect("the report names the seed")
        .to_string();
    let again = simulate(&[
        "--servers",
        "10",
        "--canary-fail-rate",
        "0.3",
        "--json",
        "-q",
        "--seed",
        &seed,
    ]);
    assert_eq!(json_lines(&again).pop().unwrap(), first);
}

#[test]
fn the_seed_comes_from_the_environment() {
    let o = Command::new(BIN)
        .args(["simulate", "--servers", "4", "-q"])
        .env("MWDEPLOY_SIM_SEED", "4242")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("seed              4242"),
        "{}",
        stdout(&o)
    );

    let bad = Command::new(BIN)
        .args(["simulate", "--servers", "4", "-q"])
        .env("MWDEPLOY_SIM_SEED", "soon")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("MWDEPLOY_SIM_SEED"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn quiet_prints_only_the_report() {
    let o = simulate(&["--servers", "30", "--seed", "5", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("simulation report\n"), "{text}");
    assert!(
        !text.contains("mw00001 "),
        "per-server lines in quiet mode: {text}"
    );
    for line in [
        "servers           30",
        "seed              5",
        "virtual duration",
        "max out of pool   1",
        "summary           30 succeeded, 0 warned, 0 failed, 0 rolled back, 0 skipped",
        "violations        none",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }

    let o = simulate(&["--servers", "30", "--seed", "5", "--quiet", "--json"]);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "{}", stdout(&o));
    assert_eq!(lines[0]["event"], "simulation_report");
    assert_eq!(summary_total(&lines[0]), 30);
}

#[test]
fn plain_output_shows_servers_then_the_report() {
    let o = simulate(&[
        "--servers",
        "8",
        "--seed",
        "2",
        "--canary-fail-rate",
        "0.5",
        "--failure-budget",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("simulating a deploy to 8 servers (seed 2; rerun: "),
        "{text}"
    );
    assert!(text.contains("  mw00001   depooling"), "{text}");
    assert!(
        text.contains("attempt 1 failed"),
        "canary failures are shown: {text}"
    );
    // In place, the failed server stays out and takes the only room: the deploy stops.
    assert!(
        text.contains("stopping (no room under max_unavailable)"),
        "{text}"
    );
    assert!(text.contains("left out of pool  1 server"), "{text}");
    assert!(text.contains("deploy finished: "), "{text}");
    assert!(text.contains("\nsimulation report\n"), "{text}");
    assert!(!text.contains("\"event\""), "no JSON in plain mode");
    assert!(text.lines().all(|l| l == l.trim_end()), "trailing blanks");
}

#[test]
fn a_broken_release_is_rolled_back_everywhere_without_breaking_a_rule() {
    let o = simulate(&[
        "--servers",
        "25",
        "--seed",
        "9",
        "--canary-fail-rate",
        "1",
        "--layout",
        "releases",
        "--on-failure",
        "continue",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let lines = json_lines(&o);
    let report = lines.last().unwrap();
    assert_eq!(report["summary"]["rolled_back"], 25, "{report}");
    assert_eq!(summary_total(report), 25);
    assert_eq!(report["violations"], Value::Array(vec![]));
    let rolled_back = lines
        .iter()
        .filter(|v| v["event"] == "server_state" && v["state"] == "rolled_back")
        .count();
    assert_eq!(rolled_back, 25);
}

fn assert_usage_error(args: &[&str], names: &str) {
    let o = simulate(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: stderr {}", stderr(&o));
    assert!(o.stdout.is_empty(), "{args:?} printed {}", stdout(&o));
    assert!(stderr(&o).contains(names), "{args:?}: {}", stderr(&o));
}

#[test]
fn bad_flags_are_usage_errors_that_name_the_flag() {
    assert_usage_error(
        &["--servers", "5", "--canary-fail-rate", "1.5"],
        "--canary-fail-rate",
    );
    assert_usage_error(
        &["--servers", "5", "--canary-fail-rate", "-0.1"],
        "--canary-fail-rate",
    );
    assert_usage_error(
        &["--servers", "5", "--transfer-fail-rate", "lots"],
        "--transfer-fail-rate",
    );
    assert_usage_error(&["--servers", "0"], "--servers");
    assert_usage_error(&["--servers", "5", "--parallel", "0"], "--parallel");
    assert_usage_error(
        &["--servers", "5", "--max-unavailable", "0"],
        "--max-unavailable",
    );
    assert_usage_error(&["--servers", "5", "--stages", "1,ten%"], "--stages");
    assert_usage_error(
        &["--servers", "5", "--failure-budget", "some"],
        "--failure-budget",
    );
    assert_usage_error(
        &["--servers", "5", "--on-failure", "prompt"],
        "--on-failure",
    );
    assert_usage_error(&["--servers", "5", "--layout", "symlinks"], "--layout");
    assert_usage_error(&["--seed", "1"], "--servers");
}

#[test]
fn a_plan_the_engine_refuses_is_a_usage_error() {
    assert_usage_error(
        &["--servers", "5", "--stages", "1,0"],
        "stage 2 has 0 servers",
    );
    assert_usage_error(&["--servers", "5", "--stages", "150%"], "150%");
    assert_usage_error(&["--servers", "5", "--failure-budget", "101%"], "101%");
}

#[test]
fn help_shows_an_example() {
    let o = simulate(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("mwdeploy simulate --servers 50 --seed 7"),
        "{}",
        stdout(&o)
    );
    // No subcommand and no deploy flag: the latest deploy of the config's state dir,
    // which needs a config (none here).
    let none = Command::new(BIN)
        .env("MWDEPLOY_CONFIG", "/nonexistent/mwdeploy.yaml")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("/nonexistent/mwdeploy.yaml: cannot read the config"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    let mut child = Command::new(BIN)
        .args(["simulate", "--servers", "20000", "--seed", "1", "--json"])
        .env_remove("MWDEPLOY_SIM_SEED")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 4096];
    out.read_exact(&mut first).unwrap();
    drop(out); // like `| head -c 4096`
    let o = child.wait_with_output().unwrap();
    assert!(first.starts_with(b"{\"ts\":"));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "stderr: {}", stderr(&o));
}
