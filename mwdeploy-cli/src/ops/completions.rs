//! `mwdeploy completions SHELL`: the shell's completion script for every subcommand and
//! flag, generated from the same clap description that parses them.
//!
//! It needs no config: packages generate the scripts at build time, where there is none.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{CompletionsArgs, Invocation};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;

/// Writes the completion script of `args.shell` on stdout.
pub(crate) fn run<W: Write>(args: &CompletionsArgs, out: &mut Output<W>) -> Result<i32, CliError> {
    out.bytes(&script(args.shell));
    Ok(exit::OK)
}

/// The script for `shell`.
pub(crate) fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = Invocation::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "mwdeploy", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let s = String::from_utf8(script(shell)).unwrap();
            assert!(s.contains("mwdeploy"), "{shell}");
            for sub in ["status", "releases", "completions", "simulate"] {
                assert!(s.contains(sub), "{shell}: {sub}");
            }
        }
    }
}
