//! What the Debian package installs beside the binary: the man pages and completion
//! scripts in `assets/` are the ones the code generates (`MWDEPLOY_BLESS=1 cargo test -p
//! mwdeploy-cli --test packaging` rewrites them after a change of the flags), and the
//! example config is one `mwdeploy check-config` accepts. `scripts/check-deb.sh` builds
//! the package itself and looks inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// `path` holds `want`, or (blessing) is rewritten to; the name of a stale file otherwise.
fn same_or_bless(path: &Path, want: &[u8]) -> Option<String> {
    let bless = std::env::var_os("MWDEPLOY_BLESS").is_some_and(|v| v == "1");
    if std::fs::read(path).ok().as_deref() == Some(want) {
        return None;
    }
    if bless {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, want).unwrap();
        return None;
    }
    Some(path.display().to_string())
}

#[test]
fn the_man_pages_and_completions_in_assets_are_the_generated_ones() {
    let mut stale = Vec::new();
    let pages = mwdeploy_cli::packaging::man_pages();
    for (name, page) in &pages {
        stale.extend(same_or_bless(&assets().join("man").join(name), page));
    }
    for (_, file, script) in mwdeploy_cli::packaging::completion_files() {
        stale.extend(same_or_bless(
            &assets().join("completions").join(file),
            &script,
        ));
    }
    assert!(
        stale.is_empty(),
        "out of date (rewrite with MWDEPLOY_BLESS=1 cargo test -p mwdeploy-cli --test packaging): {stale:?}"
    );
    // No page left behind for a subcommand that went.
    let on_disk: Vec<String> = std::fs::read_dir(assets().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in &on_disk {
        assert!(
            pages.iter().any(|(n, _)| n == f),
            "assets/man/{f} is not generated any more"
        );
    }
    let main = String::from_utf8(pages[0].1.clone()).unwrap();
    assert!(main.contains(".TH mwdeploy 1"), "{main}");
    for sub in ["status", "rollback", "recover", "pool", "check-config"] {
        assert!(
            pages.iter().any(|(n, _)| n == &format!("mwdeploy-{sub}.1")),
            "no page for {sub}"
        );
    }
}

#[test]
fn check_config_accepts_the_example_config() {
    let dir = std::env::temp_dir().join(format!("mwdeploy-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::copy(assets().join("config.yaml"), &file).unwrap();
    // The permissions the config must have (not writable by group or others).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mwdeploy"))
        .args(["-C", file.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    // The file is accepted; its example hosts are then not reached, which is said.
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "config {}: ok (2 servers, 1 proxies",
            file.display()
        )),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert_ne!(o.status.code(), Some(2), "a config error: {err}");
}
