//! The commands behind the CLI: each takes parsed arguments, runs the library, and
//! prints what a user or pipeline needs. Errors are `anyhow` with context here, at the
//! edge; the library below uses `thiserror`.

mod bake;
mod build;
mod docs;
mod fastpath;
mod fetch;
mod local;
mod report;
pub mod sysext;

use crate::cli::{Cli, Command};

/// Run the command `cli` names (`bake` when none).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::out::set_level(cli.quiet, cli.verbose);
    match cli.command {
        Some(Command::Bake(args)) => bake::run(*args),
        Some(Command::Build(args)) => build::run(args),
        Some(Command::Fetch {
            release,
            vendor,
            vendors_dir,
            extensions,
        }) => fetch::run(&release, &vendor, vendors_dir.as_deref(), &extensions),
        Some(Command::Completions { shell }) => docs::completions(shell),
        Some(Command::Man { dir }) => docs::man_pages(&dir),
        Some(Command::Vendors { vendors_dir }) => report::list_vendors(vendors_dir.as_deref()),
        Some(Command::Inspect { image, json }) => report::inspect(&image, json),
        // the worker's error is in its job's error file, for the parent to report once
        Some(Command::MountApply { job }) => {
            crate::fs::mount::run_job(&job).map_err(|_| anyhow::Error::new(Reported))
        }
        Some(Command::OemRebuild { job }) => Ok(crate::fs::btrfs::run_job(&job)?),
        Some(Command::Sysext { cmd }) => sysext::run(cmd),
        None => bake::run(cli.bake),
    }
}

/// An error already reported elsewhere (a worker's, through its error file): the
/// binary exits non-zero without printing it again.
#[derive(Debug, thiserror::Error)]
#[error("error already reported")]
pub struct Reported;

/// The error chain on one line, without repeating causes a message already quotes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    msg
}
