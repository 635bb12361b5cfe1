//! `completions` and `man`: the shell completion scripts and man pages, generated from
//! the same clap definitions the parser uses, so they never fall behind the flags.

use crate::cli::Cli;
use anyhow::Context;
use clap::CommandFactory;
use std::path::Path;

/// Write the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "flatbake", &mut buf);
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

/// Write one man page per command (hidden ones left out) into `dir`.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    for p in &written {
        outln!("{}", p.display());
    }
    Ok(())
}

/// `cmd`'s page and its subcommands'; a built command's display name is already
/// `flatbake-sysext-pack` style.
fn write_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .context("cannot render a man page")?;
    let path = dir.join(format!("{name}.1"));
    let tmp = dir.join(format!(".{name}.1.partial"));
    // an interrupted run leaves no half-written page behind
    let _tmp_guard = crate::cleanup::register(&tmp);
    std::fs::write(&tmp, &buf).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}", path.display()))?;
    written.push(path);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
