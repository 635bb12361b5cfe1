//! The `flatbake` binary: parse the command line, run, and turn any error into one
//! `error: ...` message and a non-zero exit.

use anyhow::Context;
use clap::Parser;
use flatbake::bake::{self, BakeRequest};
use flatbake::cli::{BakeArgs, Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bake(args)) => run_bake(args),
        Some(Command::Sysext { cmd }) => flatbake::sysext::cli::run(cmd),
        None => run_bake(cli.bake),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_bake(args: BakeArgs) -> anyhow::Result<()> {
    let image = args.image.context("no input image: pass --image FILE")?;
    let req = BakeRequest {
        image,
        output: args.output,
        extensions: args.extensions,
        install_to: args.install_to,
        sysupdate_confs: args.sysupdate_conf,
        arch: args.arch,
        work_dir: args.work_dir,
    };
    let report = bake::bake(&req)?;
    for e in &report.extensions {
        println!("{}: {}:{} ({}, sha256 {})", e.name, e.target, e.path, bake::human(e.size), e.sha256);
        println!("  {} -> {}", e.symlink, e.link_target);
        if let Some(c) = &e.conf {
            println!("  {c}");
        }
    }
    println!("wrote {}", report.output.display());
    Ok(())
}
