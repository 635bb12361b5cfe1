//! `flatbake sysext ...`: runs the commands for building and checking sysext images
//! (their clap types are in `cli::sysext`; errors become `anyhow` here).

use crate::arch::Arch;
use crate::cli::sysext::*;
use crate::sysext::butane;
use crate::sysext::check::{self, CheckReport};
use crate::sysext::fetch::{is_sha256, Fetcher};
use crate::sysext::image::Format;
use crate::sysext::pack::{self, PackOptions, PackReport};
use crate::sysext::recipe::{self, CreateOptions};
use crate::sysext::sysupdate::bakery_conf;
use crate::util::human;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

pub fn run(cmd: SysextCommand) -> anyhow::Result<()> {
    match cmd {
        SysextCommand::Pack(a) => run_pack(a),
        SysextCommand::Create(a) => run_create(a),
        SysextCommand::List(a) => run_list(a),
        SysextCommand::Release(a) => run_release(a),
        SysextCommand::Check(a) => run_check(a),
        SysextCommand::Butane(a) => run_butane(a),
        SysextCommand::ConvertTorcx(a) => run_convert_torcx(a),
        SysextCommand::Flix(a) => run_flix(a),
        SysextCommand::Flatwrap(a) => run_flatwrap(a),
    }
}

fn pack_options(
    name: &str,
    version: &str,
    arch: Arch,
    os: String,
    reload: bool,
    a: &ImageArgs,
) -> PackOptions {
    PackOptions {
        name: name.to_owned(),
        version: version.to_owned(),
        arch,
        os,
        format: a.format.into(),
        compression: a
            .compression
            .unwrap_or_else(|| pack::default_compression(a.format.into())),
        level: a.compression_level,
        block_size: a.block_size,
        reload_manager: reload || a.reload_manager,
        epoch: Some(a.source_date_epoch.unwrap_or(pack::DEFAULT_EPOCH)),
    }
}

fn output_for(opts: &PackOptions, a: &ImageArgs) -> PathBuf {
    a.output
        .clone()
        .unwrap_or_else(|| PathBuf::from(opts.file_name()))
}

/// Check what was written, write SHA256SUMS (and NAME.conf), and report.
fn finish(report: &PackReport, opts: &PackOptions, a: &ImageArgs) -> anyhow::Result<()> {
    let checked = check::check_image(&report.output, Some(&opts.name), Some(opts.arch), None)?;
    if !checked.problems.is_empty() {
        bail!(
            "the image written fails its own check:\n  {}",
            checked.problems.join("\n  ")
        );
    }
    let dir = crate::input::parent_dir(&report.output);
    let file = report
        .output
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sums = pack::update_sums(&dir, &file, &report.sha256)?;
    let compression = match opts.format {
        Format::Squashfs => format!(
            "squashfs {}, {} KiB blocks",
            opts.compression,
            opts.block_size / 1024
        ),
        Format::Erofs => format!("erofs {}", opts.compression),
    };
    outln!(
        "wrote {} ({compression}, {}, {} files, sha256 {})",
        report.output.display(),
        human(report.size),
        report.files,
        report.sha256
    );
    outln!("  {}", sums.display());
    if a.sysupdate {
        let conf = dir.join(format!("{}.conf", opts.name));
        std::fs::write(&conf, bakery_conf(&opts.name, &a.bakery_url))
            .with_context(|| conf.display().to_string())?;
        outln!("  {}", conf.display());
    }
    Ok(())
}

fn run_pack(a: PackArgs) -> anyhow::Result<()> {
    let opts = pack_options(&a.name, &a.version, a.arch, a.os.clone(), false, &a.image);
    let out = output_for(&opts, &a.image);
    let report = pack::pack(&a.dir, &out, &opts)?;
    for s in &report.skipped {
        eprintln!(
            "warning: {}: not under usr/ or opt/, left out (systemd-sysext merges only those)",
            a.dir.join(s).display()
        );
    }
    finish(&report, &opts, &a.image)
}

fn parse_sums(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|s| {
            let (f, h) = s.split_once('=').unwrap_or(("", s));
            if !is_sha256(h) {
                bail!("--sha256 '{s}': expected [FILE=]HEX with 64 hex digits");
            }
            Ok((f.to_owned(), h.to_ascii_lowercase()))
        })
        .collect()
}

/// `--arch`, or this machine's architecture.
pub fn arch_or_host(a: Option<Arch>) -> anyhow::Result<Arch> {
    match a.or_else(Arch::host) {
        Some(a) => Ok(a),
        None => bail!(
            "this machine's architecture ({}) is not one Flatcar runs on: pass --arch x86-64 or --arch arm64",
            std::env::consts::ARCH
        ),
    }
}

pub fn parse_set(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--set '{s}': expected KEY=VALUE"),
        })
        .collect()
}

fn run_create(a: CreateArgs) -> anyhow::Result<()> {
    let variant = match (a.only_docker, a.only_containerd) {
        (true, _) => Some("only-docker"),
        (_, true) => Some("only-containerd"),
        _ => a.variant.as_deref(),
    };
    let arch = arch_or_host(a.arch)?;
    let r = recipe::load(&a.recipe, a.source.recipes.as_deref())?.select(variant)?;
    let version = r.spell(&a.version);
    let os = a.os.clone().unwrap_or_else(|| r.os.clone());
    let opts = pack_options(&r.name, &version, arch, os, r.reload_manager, &a.image);
    let out = output_for(&opts, &a.image);
    let fetcher = Fetcher::new(a.source.mirror.as_deref())?;
    let sums = parse_sums(&a.sha256)?;
    let set = parse_set(&a.inputs.set)?;
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(|| crate::input::parent_dir(&out));
    let log = |m: &str| eprintln!("{m}");
    let report = recipe::create(
        &r,
        &CreateOptions {
            version: &version,
            arch,
            fetcher: &fetcher,
            user_sums: &sums,
            pack: opts.clone(),
            output: &out,
            work_dir: &work,
            log: &log,
            set: &set,
            rootfs: a.inputs.rootfs.as_deref().map(|p| (p, a.inputs.from_dir)),
        },
    )?;
    finish(&report, &opts, &a.image)
}

fn run_release(a: ReleaseArgs) -> anyhow::Result<()> {
    let fetcher = Fetcher::new(a.source.mirror.as_deref())?;
    let sums = parse_sums(&a.sha256)?;
    let set = parse_set(&a.inputs.set)?;
    let log = |m: &str| eprintln!("{m}");
    let plan = recipe::release::Plan {
        out_dir: &a.output_dir,
        arches: &a.arches,
        bakery_url: &a.bakery_url,
        fetcher: &fetcher,
        recipes_dir: a.source.recipes.as_deref(),
        user_sums: &sums,
        set: &set,
        rootfs: a.inputs.rootfs.as_deref().map(|p| (p, a.inputs.from_dir)),
        compression: a.compression.unwrap_or(pack::DEFAULT_COMPRESSION),
        epoch: a.source_date_epoch,
        force: a.force,
        log: &log,
    };
    let done = recipe::release::release(&plan, &a.extensions)?;
    for f in &done {
        outln!("{}", f.display());
    }
    Ok(())
}

fn run_list_bakery(url: &str) -> anyhow::Result<()> {
    let base = if url.is_empty() {
        crate::release::channel::ReleaseUrls::from_env().bakery
    } else {
        url.trim_end_matches('/').to_owned()
    };
    let fetcher = Fetcher::new(None)?;
    let sums_url = format!("{base}/extensions/SHA256SUMS");
    let text = fetcher.text(&sums_url)?;
    let listing = recipe::release::parse_released(&text);
    if listing.is_empty() {
        bail!("{sums_url}: lists no NAME-VERSION-ARCH.raw image");
    }
    for (name, versions) in listing {
        let v: Vec<String> = versions
            .iter()
            .map(|(v, arches)| format!("{v} ({})", arches.join(", ")))
            .collect();
        outln!("{name:<16} {}", v.join(", "));
    }
    Ok(())
}

fn run_list(a: ListArgs) -> anyhow::Result<()> {
    if let Some(url) = &a.bakery {
        return run_list_bakery(url);
    }
    match &a.recipe {
        None => {
            for n in recipe::names(a.source.recipes.as_deref()) {
                match recipe::load(&n, a.source.recipes.as_deref()) {
                    Ok(r) => {
                        let mut extra = Vec::new();
                        if !r.variants.is_empty() {
                            extra.push(format!(
                                "variants: {}",
                                r.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                            ));
                        }
                        let settable = r.settable();
                        if !settable.is_empty() {
                            extra.push(format!("--set {}", settable.join(", ")));
                        }
                        if let Some(b) = &r.build {
                            extra.push(format!("--rootfs: {}", b.image));
                        }
                        if extra.is_empty() {
                            outln!("{:<16} {}", r.name, r.description);
                        } else {
                            outln!("{:<16} {} ({})", r.name, r.description, extra.join("; "));
                        }
                    }
                    Err(e) => outln!("{n:<16} (broken: {e})"),
                }
            }
        }
        Some(name) => {
            let r = recipe::load(name, a.source.recipes.as_deref())?;
            let fetcher = Fetcher::new(a.source.mirror.as_deref())?;
            let v = recipe::versions(&r, &fetcher)?;
            if v.is_empty() {
                bail!("no usable versions of {} found upstream", r.name);
            }
            for x in v {
                outln!("{x}");
            }
        }
    }
    Ok(())
}

fn print_report(r: &CheckReport) {
    let img = &r.image;
    outln!("{}", img.path.display());
    outln!("  format: {}", img.format);
    outln!("  name: {}", r.name);
    outln!("  size: {} ({} bytes)", human(img.size), img.size);
    match (&img.release, r.arch) {
        (_, Some((a, from))) => outln!("  arch: {a} (from {from})"),
        (Some(rel), None) => outln!(
            "  arch: {} (from extension-release)",
            rel.get("ARCHITECTURE").unwrap_or("any")
        ),
        (None, None) => outln!("  arch: unknown"),
    }
    outln!("  target: {}", r.target.describe());
    match &img.release {
        Some(rel) => {
            outln!("  extension-release.{}:", r.name);
            for (k, v) in &rel.fields {
                outln!("    {k}={v}");
            }
        }
        None => outln!("  extension-release.{}: missing", r.name),
    }
    if r.problems.is_empty() {
        outln!("  ok: systemd-sysext would merge it as {}", r.name);
    } else {
        outln!("  problems:");
        for p in &r.problems {
            outln!("    - {p}");
        }
    }
}

fn run_check(a: CheckArgs) -> anyhow::Result<()> {
    if a.name.is_some() && a.files.len() > 1 {
        bail!("--name applies to one image; check several images without it");
    }
    let mut base = None;
    let target = match (&a.target, &a.target_os_release) {
        (Some(img), _) => {
            let work = crate::cleanup::temp_dir(&std::env::temp_dir(), "target-")
                .context("cannot create a scratch directory")?;
            let facts = crate::facts::Facts::read(img)?;
            let target = crate::sysext::target::from_facts(&facts, work.path(), a.arch)
                .map_err(anyhow::Error::msg)?;
            base = Some(crate::sysext::lint::Base::from_facts(&facts)?);
            Some(target)
        }
        (None, Some(f)) => Some(
            crate::sysext::target::from_os_release_file(f, a.arch).map_err(anyhow::Error::msg)?,
        ),
        (None, None) => None,
    };
    let mut bad = 0;
    for f in &a.files {
        match check::check_image(f, a.name.as_deref(), a.arch, target.clone()) {
            Ok(mut r) => {
                let lints = crate::sysext::lint::lint_image(
                    f,
                    r.image.format,
                    r.image
                        .release
                        .as_ref()
                        .and_then(|rel| rel.get("ARCHITECTURE")),
                    r.arch.map(|(a, _)| a),
                    base.as_ref(),
                )
                .unwrap_or_else(|e| {
                    // systemd's verdict stands; only the extra lints could not run
                    vec![crate::sysext::lint::Lint {
                        severity: crate::sysext::lint::Severity::Warning,
                        path: f.display().to_string(),
                        what: format!("lints skipped: {e}"),
                    }]
                });
                let (errors, warnings): (Vec<_>, Vec<_>) = lints
                    .into_iter()
                    .partition(|l| l.severity == crate::sysext::lint::Severity::Error);
                r.problems.extend(errors.iter().map(|l| l.to_string()));
                print_report(&r);
                for w in &warnings {
                    outln!("  {w}");
                }
                if !r.problems.is_empty() {
                    bad += 1;
                }
            }
            Err(e) => {
                outln!("{}", f.display());
                outln!("  problems:\n    - {e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} image(s) would be refused", a.files.len());
    }
    Ok(())
}

fn run_convert_torcx(a: ConvertTorcxArgs) -> anyhow::Result<()> {
    let file = a
        .archive
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = match a
        .version
        .clone()
        .or_else(|| crate::sysext::torcx::version_from_file_name(&file))
    {
        Some(v) => v,
        None => bail!(
            "{}: no version in the file name (NAME:VERSION.torcx.tgz); pass --version",
            a.archive.display()
        ),
    };
    let opts = pack_options(&a.name, &version, a.arch, a.os.clone(), true, &a.image);
    pack::validate(&opts)?;
    let out = output_for(&opts, &a.image);
    let work =
        crate::cleanup::temp_dir(&crate::input::parent_dir(&out), "torcx-").with_context(|| {
            format!(
                "{}: cannot create a scratch directory",
                crate::input::parent_dir(&out).display()
            )
        })?;
    let root = work.path().join("root");
    let c = crate::sysext::torcx::convert(&a.archive, &a.name, &root, work.path())?;
    for u in &c.rewritten {
        eprintln!("rewrote Torcx paths in {u}");
    }
    for u in &c.upheld {
        eprintln!("upheld by {u}");
    }
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    let report = pack::pack(&root, &out, &opts)?;
    finish(&report, &opts, &a.image)
}

/// A scratch directory beside `out`.
fn scratch(out: &Path, what: &str) -> anyhow::Result<crate::cleanup::Temp<tempfile::TempDir>> {
    crate::cleanup::temp_dir(&crate::input::parent_dir(out), what).with_context(|| {
        format!(
            "{}: cannot create a scratch directory",
            crate::input::parent_dir(out).display()
        )
    })
}

/// The root filesystem as a directory: ROOTFS itself with --from-dir, else the image
/// extracted into `work` (then the second value is true: it is ours to move).
fn rootfs_dir(a: &RootfsArgs, work: &Path) -> anyhow::Result<(PathBuf, bool)> {
    if a.from_dir {
        return Ok((a.rootfs.clone(), false));
    }
    let r = work.join("rootfs");
    eprintln!("extracting {}", a.rootfs.display());
    crate::sysext::oci::extract(&a.rootfs, &r, work)?;
    Ok((r, true))
}

/// Copy unit files into `tree`'s usr/lib/systemd/system.
fn copy_units(units: &[PathBuf], tree: &Path) -> anyhow::Result<()> {
    for u in units {
        let file = u.file_name().context("--unit: no file name")?;
        let dst = tree.join("usr/lib/systemd/system").join(file);
        std::fs::create_dir_all(dst.parent().context("unit dir")?)?;
        std::fs::copy(u, &dst).with_context(|| u.display().to_string())?;
    }
    Ok(())
}

/// Pack a bundle made from a root filesystem: `build(rootfs, ours, tree)` fills `tree`
/// (`ours`: the extracted rootfs may be moved), then units are added and it is packed.
fn bundle(
    a: &RootfsArgs,
    what: &str,
    build: impl FnOnce(&Path, bool, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let opts = pack_options(
        &a.name,
        &a.version,
        a.arch,
        a.os.clone(),
        !a.unit.is_empty(),
        &a.image,
    );
    pack::validate(&opts)?;
    let out = output_for(&opts, &a.image);
    let work = scratch(&out, &format!("{what}-"))?;
    let (rootfs, ours) = rootfs_dir(a, work.path())?;
    let tree = work.path().join("tree");
    build(&rootfs, ours, &tree)?;
    copy_units(&a.unit, &tree)?;
    let report = pack::pack(&tree, &out, &opts)?;
    finish(&report, &opts, &a.image)
}

fn run_flix(a: FlixArgs) -> anyhow::Result<()> {
    // named before the container image is unpacked, not after
    let missing = crate::tools::missing(&["patchelf"]);
    if !missing.is_empty() {
        bail!("{}", missing.join("; "));
    }
    bundle(&a.src, "flix", |rootfs, _, tree| {
        let f = crate::sysext::flix::flix(rootfs, &a.src.name, &a.binaries, tree)?;
        eprintln!(
            "flixed {} with {} libraries into {}",
            f.binaries.join(", "),
            f.libraries.len() + usize::from(f.interpreter.is_some()),
            f.prefix
        );
        for r in &a.resource {
            if !(r.starts_with("/usr/") || r.starts_with("/opt/")) || r.contains("..") {
                bail!("--resource {r}: must lie under /usr or /opt, without '..'");
            }
            let src = crate::sysext::flix::resolve_in(rootfs, r)
                .filter(|p| p.exists())
                .with_context(|| format!("--resource {r}: not in the root filesystem"))?;
            let dst = tree.join(r.trim_start_matches('/'));
            if let Some(p) = dst.parent() {
                std::fs::create_dir_all(p).with_context(|| p.display().to_string())?;
            }
            crate::tools::run(
                std::process::Command::new("cp")
                    .arg("-a")
                    .arg("--no-preserve=ownership")
                    .arg("-T")
                    .arg(&src)
                    .arg(&dst),
                "copying a resource",
            )?;
        }
        Ok(())
    })
}

fn run_flatwrap(a: FlatwrapArgs) -> anyhow::Result<()> {
    bundle(&a.src, "flatwrap", |rootfs, ours, tree| {
        let w = crate::sysext::flatwrap::flatwrap(
            rootfs,
            ours,
            &crate::sysext::flatwrap::Options {
                name: a.src.name.clone(),
                entries: a.programs.clone(),
                etc: a.etc_map,
                var: a.var_map,
                home: a.home_map,
            },
            tree,
        )?;
        eprintln!(
            "wrapped {} around {}/rootfs",
            w.wrappers.join(", "),
            w.prefix
        );
        eprintln!("  from the image: {}", w.from_image.join(" "));
        eprintln!("  from the host: {}", w.from_host.join(" "));
        for p in &w.dropped {
            eprintln!("warning: {p}: device, fifo or socket, left out");
        }
        for p in &w.unprivileged {
            eprintln!(
                "warning: {p}: setuid/setgid bits cleared (the sysext is owned by the host's root)"
            );
        }
        Ok(())
    })
}

fn run_butane(a: ButaneArgs) -> anyhow::Result<()> {
    let r = check::check_image(&a.file, Some(&a.name), None, None)?;
    if !r.problems.is_empty() {
        bail!(
            "{} would be refused as {}:\n  {}",
            a.file.display(),
            a.name,
            r.problems.join("\n  ")
        );
    }
    let file = a
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .context("FILE has no file name")?;
    let (sha, _) =
        crate::util::sha256_file(&a.file).with_context(|| a.file.display().to_string())?;
    let y = butane::render(&butane::Snippet {
        name: &a.name,
        file: &file,
        url: a.url.as_deref(),
        sha256: &sha,
        sysupdate: a.sysupdate.then_some(a.bakery_url.as_str()),
    });
    out!("{y}");
    Ok(())
}
