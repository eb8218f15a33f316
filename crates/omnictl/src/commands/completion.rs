//! `omnictl completion SHELL` and `omnictl man DIR`, generated from the
//! same clap definitions that parse the command line.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::args::Cli;

pub fn completion(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "omnictl", out);
    Ok(())
}

pub fn man(dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
    writeln!(out, "wrote man pages to {}", dir.display())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_scripts_name_every_subcommand() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            completion(shell, &mut buf).unwrap();
            let text = String::from_utf8(buf).unwrap();
            for sub in [
                "get",
                "apply",
                "delete",
                "etcd-backup",
                "use-context",
                "completion",
            ] {
                assert!(text.contains(sub), "{shell:?} lacks {sub}");
            }
        }
    }

    #[test]
    fn man_pages_for_the_tool_and_its_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        man(dir.path(), &mut Vec::new()).unwrap();
        let top = std::fs::read_to_string(dir.path().join("omnictl.1")).unwrap();
        assert!(
            top.starts_with(".ie") || top.contains(".TH omnictl"),
            "{top}"
        );
        let delete = std::fs::read_to_string(dir.path().join("omnictl-delete.1")).unwrap();
        assert!(delete.contains("selector"), "{delete}");
    }
}
