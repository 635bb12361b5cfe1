//! The `flatbake` binary: parse the command line, run, and turn any error into one
//! `error: ...` line and a non-zero exit.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    flatbake::cleanup::install_signal_handlers();
    let mut notes = Vec::new();
    let argv = flatbake::legacy::rewrite(std::env::args_os().collect(), &mut notes);
    for n in &notes {
        eprintln!("flatbake: note: {n}");
    }
    let result = {
        // this run's lock files go when it ends, also by a panic
        let _locks = flatbake::cleanup::LocksGuard;
        flatbake::app::run(flatbake::cli::Cli::parse_from(argv))
    };
    match result {
        Ok(()) => match flatbake::out::failure() {
            None => ExitCode::SUCCESS,
            Some(e) => {
                eprintln!("error: cannot write to standard output: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) if e.is::<flatbake::app::Reported>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", flatbake::app::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
