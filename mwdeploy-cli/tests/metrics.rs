//! `metrics_file:` against the real fleet: after each deploy the file holds the last
//! deploy's metrics in the Prometheus text format (its end, duration, exit code, servers
//! by outcome, each server's time out of the pool) and the running count of deploys.

mod support;
use support::*;
use testfleet::{write_stamp, Layout};

/// The value of the sample `name` (with its labels) in `text`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn each_deploy_rewrites_the_metrics_file() {
    let fleet = fleet(2, Layout::Releases, 40);
    let file = fleet.root().join("mwdeploy.prom");
    let c = config(&fleet, Layout::Releases, |y| {
        format!("{y}metrics_file: {}\n", file.display())
    });
    for (n, stamp) in ["m1", "m2"].iter().enumerate() {
        write_stamp(fleet.staging().path(), stamp).unwrap();
        let o = mwdeploy(&c, &["--rsync", "--rollout", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let m = std::fs::read_to_string(&file).unwrap();
        assert_eq!(sample(&m, "mwdeploy_last_deploy_exit_code"), 0.0, "{m}");
        assert_eq!(
            sample(&m, "mwdeploy_last_deploy_servers{outcome=\"succeeded\"}"),
            2.0,
            "{m}"
        );
        assert_eq!(
            sample(&m, "mwdeploy_last_deploy_servers{outcome=\"failed\"}"),
            0.0
        );
        for server in ["mw1", "mw2"] {
            let out = sample(
                &m,
                &format!("mwdeploy_server_out_of_service_seconds{{server=\"{server}\"}}"),
            );
            assert!(out > 0.0, "{server} was out of the pool: {m}");
        }
        assert!(sample(&m, "mwdeploy_last_deploy_duration_seconds") > 0.0);
        assert!(sample(&m, "mwdeploy_last_deploy_timestamp_seconds") > 1.7e9);
        assert_eq!(
            sample(&m, "mwdeploy_deploys_total{exit_code=\"0\"}"),
            (n + 1) as f64,
            "{m}"
        );
        assert!(m.contains("# TYPE mwdeploy_deploys_total counter"), "{m}");
    }
    // No file left behind by the atomic rewrite.
    let stray: Vec<_> = std::fs::read_dir(fleet.root())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
