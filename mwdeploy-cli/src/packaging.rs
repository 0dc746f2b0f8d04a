//! What a package installs beside the binary, generated from the clap description that
//! parses the command line, so that they never drift from it: the man pages
//! (`mwdeploy.1`, one per subcommand: `mwdeploy-status.1`) and the completion scripts.
//! Written into `mwdeploy-cli/assets/` (a test fails when they differ from what the code
//! generates; `MWDEPLOY_BLESS=1` rewrites them), where `cargo deb` picks them up.
//!
//! ```
//! let pages = mwdeploy_cli::packaging::man_pages();
//! assert!(pages.iter().any(|(name, _)| name == "mwdeploy.1"));
//! assert!(pages.iter().any(|(name, _)| name == "mwdeploy-status.1"));
//! ```

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Invocation;

/// Every man page: `(file name, roff text)`, the command's first.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let command = Invocation::command().name("mwdeploy");
    let mut pages = vec![("mwdeploy.1".to_string(), render(command.clone()))];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("mwdeploy-{}", sub.get_name());
        // The page's title names the full command, as `man mwdeploy-status` shows it.
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("mwdeploy {}", sub.get_name()));
        pages.push((format!("{name}.1"), render(page)));
    }
    pages
}

fn render(command: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .expect("a man page renders into memory");
    out
}

/// The completion scripts a package installs: `(shell, file name, script)` for bash
/// (`/usr/share/bash-completion/completions/mwdeploy`), zsh (`_mwdeploy`) and fish
/// (`mwdeploy.fish`).
pub fn completion_files() -> Vec<(Shell, &'static str, Vec<u8>)> {
    [
        (Shell::Bash, "mwdeploy"),
        (Shell::Zsh, "_mwdeploy"),
        (Shell::Fish, "mwdeploy.fish"),
    ]
    .into_iter()
    .map(|(shell, file)| (shell, file, crate::ops::completions::script(shell)))
    .collect()
}
