//! Convert a raw disk image with flatbake's format writers, for benchmarks and manual
//! checks: `convert FORMAT INPUT OUTPUT [--virtual-size BYTES] [--threads N]`.
//! FORMAT is a `flatbake::format::DiskFormat` name (raw, qcow2, qcow2-compressed,
//! vhd-fixed, vhd-dynamic, vhdx, vmdk-monolithic-sparse[-ide|-lsilogic],
//! vmdk-stream-optimized[-ide|-lsilogic]).

use flatbake::format::{self, DiskFormat, WriteOptions};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: convert FORMAT INPUT OUTPUT [--virtual-size BYTES] [--threads N]");
        return ExitCode::from(2);
    }
    let fmt: DiskFormat = match args[0].parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = WriteOptions::default();
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        let v = rest.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--virtual-size", Some(v)) => opts.virtual_size = Some(v),
            ("--threads", Some(v)) => opts.threads = v as usize,
            _ => {
                eprintln!("bad argument {a:?}");
                return ExitCode::from(2);
            }
        }
    }
    let start = std::time::Instant::now();
    match format::write(&fmt, Path::new(&args[1]), Path::new(&args[2]), &opts) {
        Ok(s) => {
            eprintln!(
                "{fmt}: virtual size {} B, data {} B, output {} B, {:.2} s",
                s.virtual_size,
                s.data_bytes,
                s.output_bytes,
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
