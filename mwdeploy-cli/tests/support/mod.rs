//! What the process-level deploy tests share: the binary, a small fleet, its config,
//! and reading what a deploy printed and journaled.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mwdeploy_runtime::journal;
use serde_json::Value;
use testfleet::{Fleet, Layout};

/// The `mwdeploy` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mwdeploy");

/// A fleet of `servers` servers behind one HAProxy, with a `files`-file tree.
pub(crate) fn fleet(servers: usize, layout: Layout, files: usize) -> Fleet {
    Fleet::builder()
        .servers(servers)
        .proxies(1)
        .tree(files, 1)
        .layout(layout)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"))
}

/// The fleet's config in `layout`, with `edit` applied to its text (mode 0600).
pub(crate) fn config(
    fleet: &Fleet,
    layout: Layout,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = fleet.root().join("mwdeploy-test.yaml");
    std::fs::write(&path, edit(fleet.config_yaml(layout))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Runs `mwdeploy -C <config> <args>` with no stdin and no `$MWDEPLOY_CONFIG`.
pub(crate) fn mwdeploy(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-C")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("MWDEPLOY_CONFIG")
        .output()
        .expect("mwdeploy runs")
}

/// Bytes as text.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One JSON line.
pub(crate) fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// The final state of `server` in `server_state` records.
pub(crate) fn final_state(lines: &[Value], server: &str) -> Option<String> {
    lines
        .iter()
        .rev()
        .filter(|l| l["event"] == "server_state" && l["server"] == server)
        .find_map(|l| l["state"].as_str().map(str::to_string))
}

/// Every journal of the fleet's state dir, one after another.
pub(crate) fn journals(fleet: &Fleet) -> String {
    let dir = journal::dir(&fleet.state_dir());
    let mut all = String::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(e.path()).unwrap());
    }
    all
}

/// The one journal of the fleet's state dir, parsed line by line.
pub(crate) fn journal_of(fleet: &Fleet) -> Vec<Value> {
    let dir = journal::dir(&fleet.state_dir());
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "one journal: {files:?}");
    std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(parse)
        .collect()
}

/// A fleet of `servers` servers behind `proxies` HAProxies, with a `files`-file tree.
pub(crate) fn fleet_behind(servers: usize, proxies: usize, layout: Layout, files: usize) -> Fleet {
    Fleet::builder()
        .servers(servers)
        .proxies(proxies)
        .tree(files, 1)
        .layout(layout)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"))
}

/// Sends `command` to proxy `i`'s admin socket (`disable server mediawiki/mw2`) and
/// asserts HAProxy answered nothing but success.
pub(crate) fn proxy_command(fleet: &Fleet, i: usize, command: &str) {
    let answer = fleet.proxies()[i]
        .command(command)
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    assert!(answer.trim().is_empty(), "{command}: {answer}");
}

/// The release stamp each server serves, mw1 first; a server that does not serve one whole
/// release (a page from two releases, or no page) fails the test.
pub(crate) fn stamps(fleet: &Fleet) -> Vec<String> {
    fleet
        .served_stamps()
        .into_iter()
        .map(|(s, stamp)| stamp.unwrap_or_else(|e| panic!("{s}: not one whole release: {e}")))
        .collect()
}

/// A config edit: mw2's `post_activate` hook makes its page answer 500 while the release it
/// serves holds `stamp` (the fleet's page fault file) and takes the fault away otherwise,
/// so its canary fails after the switch and passes again after a rollback.
pub(crate) fn mw2_fails_on(fleet: &Fleet, stamp: &str) -> impl FnOnce(String) -> String {
    let fault = fleet.servers()[1].dir().join("fault");
    let script = format!(
        "if grep -qs {stamp} \"$1\"/versions/*/includes/Stamp.php; \
         then echo 500 > \"$2\"; else rm -f \"$2\"; fi"
    );
    let hook = serde_json::json!(["sh", "-c", script, "sh", "{prod_path}", fault]);
    move |y: String| {
        let mw2 = y.find("name: \"mw2\"").expect("mw2 in the config");
        let hooks = mw2 + y[mw2..].find("post_activate:\n").unwrap();
        let reload_end = hooks + y[hooks..].find("]\n").unwrap() + 2;
        format!("{}        - {hook}\n{}", &y[..reload_end], &y[reload_end..])
    }
}
