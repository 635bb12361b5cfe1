//! Decompresses a bzip2 file to a sparse raw file with flatbake's parallel decoder.
//! Used by `scripts/bench-decompress.sh`.
//!
//! Usage: `decompress IN.bz2 OUT [THREADS]`

use std::process::ExitCode;
use std::time::Instant;

use flatbake::release::decompress::{decompress_file, DecompressOptions};
use flatbake::release::progress::ProgressMode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: decompress IN.bz2 OUT [THREADS]");
        return ExitCode::from(2);
    }
    let threads = match args.get(3).map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("bad THREADS {:?}: {e}", args[3]);
            return ExitCode::from(2);
        }
    };
    let opts = DecompressOptions {
        threads,
        progress: ProgressMode::Quiet,
    };
    let start = Instant::now();
    match decompress_file(args[1].as_ref(), args[2].as_ref(), &opts) {
        Ok(s) => {
            println!(
                "compressed={} decompressed={} written={} blocks={} reused={} streams={} seconds={:.2}",
                s.compressed_bytes,
                s.decompressed_bytes,
                s.data_bytes_written,
                s.blocks,
                s.blocks_reused,
                s.streams,
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("decompress: {e}");
            ExitCode::FAILURE
        }
    }
}
