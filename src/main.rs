//! The `flatbake` binary: parse the command line, run, and turn any error into one
//! `error: ...` message and a non-zero exit.

use anyhow::Context;
use clap::Parser;
use flatbake::bake::{self, BakeRequest};
use flatbake::cli::{BakeArgs, Cli, Command};
use flatbake::vendor::{self, registry::Registry, VendorInput};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bake(args)) => run_bake(args),
        Some(Command::Vendors { vendors_dir }) => list_vendors(vendors_dir.as_deref()),
        Some(Command::Inspect { image, json }) => run_inspect(&image, json),
        None => run_bake(cli.bake),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain on one line, without repeating causes a message already quotes.
fn one_line(e: &anyhow::Error) -> String {
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

fn run_inspect(image: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("cannot create a scratch directory")?;
    let report = flatbake::inspect::inspect(image, work.path())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", flatbake::inspect::render(&report));
    }
    Ok(())
}

/// Summarise what a run produced: inspect each readable output image (printed), and
/// with `json`, write every output's sha256 and size plus the reports to that file.
fn summarize(outputs: &[PathBuf], json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("cannot create a scratch directory")?;
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for o in outputs {
        let name = o.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let readable = name.ends_with(".bin") || name.ends_with(".img") || name.ends_with(".qcow2") && !name.contains("_efi_");
        if readable {
            if let Ok(r) = flatbake::inspect::inspect(o, work.path()) {
                if r.flatcar {
                    print!("{}", flatbake::inspect::render(&r));
                    reports.push(r);
                }
            }
        }
        if json.is_some() {
            let (sha256, size) = bake::sha256_file(o)?;
            files.push(serde_json::json!({"path": o.display().to_string(), "sha256": sha256, "size": size}));
        }
    }
    if let Some(path) = json {
        let doc = serde_json::json!({"outputs": files, "images": reports});
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("{}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

fn list_vendors(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let reg = Registry::load(dir)?;
    println!("{:<16} {:<8} {:<12} {:<8} description", "vendor", "layout", "format", "oem");
    for v in reg.vendors.values() {
        match &v.unsupported {
            Some(why) => println!("{:<16} {:<8} {:<12} {:<8} {} (not supported: {why})", v.name, "-", "-", "-", v.description),
            None => println!(
                "{:<16} {:<8} {:<12} {:<8} {}",
                v.name,
                v.layout.as_deref().unwrap_or("-"),
                v.disk_format.as_deref().unwrap_or("-"),
                v.oem_id.as_deref().unwrap_or("-"),
                v.description
            ),
        }
    }
    Ok(())
}

fn run_bake(args: BakeArgs) -> anyhow::Result<()> {
    let image = args.image.clone().context("no input image: pass --image FILE")?;
    if args.vendor.is_empty() && args.extensions.is_empty() && args.ignition.is_none() && args.kernel_args.is_empty() {
        anyhow::bail!("nothing to do: name sysexts as NAME:FILE and/or vendor images with --vendor");
    }
    if !args.vendor.is_empty() {
        return run_vendors(args, image);
    }
    let req = BakeRequest {
        image,
        output: args.output,
        extensions: args.extensions,
        install_to: args.install_to,
        sysupdate_confs: args.sysupdate_conf,
        arch: args.arch,
        work_dir: args.work_dir,
        sysupdate: args.sysupdate,
        ignition: args.ignition,
        kernel_args: args.kernel_args,
    };
    let report = bake::bake(&req)?;
    print_report(&report);
    println!("wrote {}", report.output.display());
    summarize(std::slice::from_ref(&report.output), args.json.as_deref())
}

fn print_report(report: &bake::BakeReport) {
    for e in &report.extensions {
        println!("{}: {}:{} ({}, sha256 {})", e.name, e.target, e.path, bake::human(e.size), e.sha256);
        println!("  {} -> {}", e.symlink, e.link_target);
        if let Some(c) = &e.conf {
            println!("  {c}");
        }
    }
}

/// Bake once into a scratch base image, then emit every vendor from it.
fn run_vendors(args: BakeArgs, image: PathBuf) -> anyhow::Result<()> {
    let reg = Registry::load(args.vendors_dir.as_deref())?;
    let release_dir = match &args.release_dir {
        Some(d) => d.clone(),
        None => image.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")),
    };
    let arch = match args.arch {
        Some(a) => Some(a),
        None => flatbake::disk::detect_arch(&image).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let plan = vendor::plan(&VendorInput {
        names: &args.vendor,
        registry: &reg,
        release_dir: &release_dir,
        version: args.flatcar_version.clone(),
        arch,
        kernel_args: &args.kernel_args,
    })?;
    let out_dir = args.output_dir.clone();
    if !out_dir.is_dir() {
        anyhow::bail!("{}: output directory does not exist", out_dir.display());
    }
    let work = tempfile::Builder::new()
        .prefix(".flatbake-work-")
        .tempdir_in(args.work_dir.as_deref().unwrap_or(&out_dir))
        .with_context(|| format!("{}: cannot create a work directory", out_dir.display()))?;
    let base = work.path().join("base.bin");
    let req = BakeRequest {
        image,
        output: base.clone(),
        extensions: args.extensions,
        install_to: args.install_to,
        sysupdate_confs: args.sysupdate_conf,
        arch: Some(plan.arch),
        work_dir: Some(work.path().to_owned()),
        sysupdate: args.sysupdate,
        ignition: args.ignition,
        // vendor grub.cfgs are written per vendor, with the kernel arguments in them
        kernel_args: Vec::new(),
    };
    let report = bake::bake(&req)?;
    print_report(&report);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let outputs = vendor::emit(&plan, &base, &out_dir, work.path(), threads)?;
    for path in &outputs {
        println!("wrote {}", path.display());
    }
    drop(work);
    summarize(&outputs, args.json.as_deref())
}
