//! `flatbake sysext ...`: the command line for building and checking sysext images
//! (clap definitions and the glue that runs them; errors become `anyhow` here).

use crate::arch::Arch;
use crate::bake::human;
use crate::sysext::butane;
use crate::sysext::check::{self, CheckReport};
use crate::sysext::fetch::{is_sha256, Fetcher};
use crate::sysext::image::Format;
use crate::sysext::pack::{self, Compression, PackOptions, PackReport};
use crate::sysext::recipe::{self, CreateOptions};
use crate::sysext::sysupdate::bakery_conf;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// Where the bakery serves extensions (its sysupdate `Path=` base).
pub const DEFAULT_BAKERY: &str = "https://extensions.flatcar.org";

#[derive(Debug, Subcommand)]
pub enum SysextCommand {
    /// Pack a directory's usr/ and opt/ into NAME-VERSION-ARCH.raw, with its
    /// extension-release, a SHA256SUMS entry and (--sysupdate) NAME.conf beside it.
    Pack(PackArgs),
    /// Download an upstream release with a recipe, verify it, and pack it.
    Create(CreateArgs),
    /// List the recipes, or the upstream versions of one.
    List(ListArgs),
    /// Check sysext images as systemd-sysext would; exits non-zero on any problem.
    Check(CheckArgs),
    /// Print a Butane snippet that installs a sysext image on first boot.
    Butane(ButaneArgs),
    /// Convert a Torcx image (NAME:VERSION.torcx.tgz) into a sysext: binaries under
    /// usr/bin, units under usr/lib/systemd/system with Torcx paths rewritten. Best
    /// effort; what it cannot convert is reported on stderr.
    ConvertTorcx(ConvertTorcxArgs),
    /// Bundle dynamically linked binaries from a container image (OCI layout directory,
    /// docker save or OCI archive tarball; --from-dir for an extracted tree) with their
    /// shared libraries in /usr/lib/NAME, interpreter and run path rewritten, exposed in
    /// /usr/bin. Needs patchelf.
    Flix(FlixArgs),
    /// Ship a whole root filesystem from a container image (as for flix) under
    /// /usr/lib/NAME/rootfs, with wrappers in /usr/bin that run its programs in a root of
    /// their own (bwrap, or unshare and chroot), /etc, /var, /home, /dev, /proc, /sys,
    /// /run and /tmp mapped from the host.
    Flatwrap(FlatwrapArgs),
}

#[derive(Debug, Args, Clone)]
pub struct FlatwrapArgs {
    #[command(flatten)]
    pub src: RootfsArgs,
    /// Programs of ROOTFS as SRC[:DST]: a wrapper at DST (default /usr/bin/BASENAME)
    /// runs SRC in the private root, e.g. /usr/bin/htop or /bin/busybox:/usr/bin/busybox.
    #[arg(value_name = "SRC[:DST]", required = true)]
    pub programs: Vec<crate::sysext::flix::BinSpec>,
    /// /etc from the host, or the image's own (e.g. for alpine's /etc/terminfo).
    #[arg(long, value_enum, default_value = "host")]
    pub etc_map: crate::sysext::flatwrap::Map,
    /// /var from the host, or the image's own (read-only).
    #[arg(long, value_enum, default_value = "host")]
    pub var_map: crate::sysext::flatwrap::Map,
    /// /home from the host, or the image's own (read-only).
    #[arg(long, value_enum, default_value = "host")]
    pub home_map: crate::sysext::flatwrap::Map,
}

/// What Flix and Flatwrap share: where the root filesystem comes from, the extension's
/// name, and how the result is packed.
#[derive(Debug, Args, Clone)]
pub struct RootfsArgs {
    /// The root filesystem: an OCI image layout directory or a docker save / OCI archive
    /// tarball (or, with --from-dir, an extracted tree).
    #[arg(value_name = "ROOTFS")]
    pub rootfs: PathBuf,
    /// Extension name; the private prefix is /usr/lib/NAME.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// ROOTFS is an already extracted directory tree.
    #[arg(long)]
    pub from_dir: bool,
    /// systemd unit file to ship in /usr/lib/systemd/system (repeatable).
    #[arg(long, value_name = "FILE")]
    pub unit: Vec<PathBuf>,
    #[arg(long, default_value = "1")]
    pub version: String,
    #[arg(long)]
    pub arch: Arch,
    /// ID= of the extension-release (the bundle brings its own root or libraries).
    #[arg(long, default_value = "_any")]
    pub os: String,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Args, Clone)]
pub struct FlixArgs {
    #[command(flatten)]
    pub src: RootfsArgs,
    /// Binaries as SRC[:DST], e.g. /usr/bin/b3sum or /bin/busybox:/usr/bin/busybox.
    #[arg(value_name = "SRC[:DST]", required = true)]
    pub binaries: Vec<crate::sysext::flix::BinSpec>,
    /// Also copy this directory or file of ROOTFS (under /usr or /opt) to the same path
    /// in the sysext (repeatable), e.g. /usr/share/terminfo.
    #[arg(long, value_name = "PATH")]
    pub resource: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ConvertTorcxArgs {
    /// The Torcx image (a tar.gz with .torcx/manifest.json).
    #[arg(value_name = "TORCX.tgz")]
    pub archive: PathBuf,
    /// Extension name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Version [default: from a NAME:VERSION.torcx.tgz file name].
    #[arg(long)]
    pub version: Option<String>,
    #[arg(long)]
    pub arch: Arch,
    /// ID= of the extension-release: Torcx images were built against Flatcar's libraries.
    #[arg(long, default_value = "flatcar")]
    pub os: String,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Squashfs,
    Erofs,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Squashfs => Format::Squashfs,
            FormatArg::Erofs => Format::Erofs,
        }
    }
}

/// How the image is written; shared by `pack` and `create`.
#[derive(Debug, Args, Clone)]
pub struct ImageArgs {
    /// Output file [default: NAME-VERSION-ARCH.raw in the current directory].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Filesystem of the image.
    #[arg(long, value_enum, default_value = "squashfs")]
    pub format: FormatArg,

    /// Squashfs compressor [default: gzip, as the bakery's mksquashfs].
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,

    /// Compression level (gzip 1-9, xz 0-9, zstd 1-22) [default: mksquashfs' default].
    #[arg(long, value_name = "N")]
    pub compression_level: Option<u32>,

    /// Squashfs block size in bytes, or with a K/M suffix.
    #[arg(long, value_name = "SIZE", default_value = "128K", value_parser = parse_size)]
    pub block_size: u32,

    /// Set EXTENSION_RELOAD_MANAGER=1: systemd reloads units when the image is merged.
    #[arg(long)]
    pub reload_manager: bool,

    /// Also write NAME.conf, a systemd-sysupdate transfer file in the bakery's format.
    #[arg(long)]
    pub sysupdate: bool,

    /// Base URL of the bakery that serves NAME-VERSION-ARCH.raw, for --sysupdate.
    #[arg(long, value_name = "URL", default_value = DEFAULT_BAKERY)]
    pub bakery_url: String,

    /// Timestamp (seconds since 1970) for every file and the image: same tree and same
    /// epoch give the same bytes. Without it files keep their mtimes.
    #[arg(long, value_name = "SECONDS", env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<u32>,
}

fn parse_size(s: &str) -> Result<u32, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1024),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("'{s}': expected a size such as 131072, 128K or 1M"))
}

#[derive(Debug, Args, Clone)]
pub struct PackArgs {
    /// Directory whose usr/ and opt/ go into the image.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Extension name (the NAME of /etc/extensions/NAME.raw).
    #[arg(long)]
    pub name: String,
    /// Version, without '-'.
    #[arg(long)]
    pub version: String,
    /// Architecture: x86-64 or arm64.
    #[arg(long)]
    pub arch: Arch,
    /// ID= of the extension-release: _any, or flatcar (adds SYSEXT_LEVEL=1.0).
    #[arg(long, default_value = "_any")]
    pub os: String,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Args, Clone)]
pub struct RecipeSource {
    /// Fetch every upstream URL https://HOST/PATH from MIRROR/HOST/PATH instead.
    #[arg(long, value_name = "URL", env = "FLATBAKE_RECIPE_MIRROR")]
    pub mirror: Option<String>,
    /// Directory of extra recipes (NAME.toml), taking precedence over the built-in ones.
    #[arg(long, value_name = "DIR", env = "FLATBAKE_RECIPES")]
    pub recipes: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// Recipe name (see `flatbake sysext list`) or a recipe file (*.toml).
    pub recipe: String,
    /// Upstream version, e.g. 24.0.0.
    pub version: String,
    #[arg(long)]
    pub arch: Arch,
    /// ID= of the extension-release [default: the recipe's, usually _any].
    #[arg(long)]
    pub os: Option<String>,
    /// Expected sha256 of a download, as FILE=HEX (or HEX for a one-download recipe);
    /// needed where upstream publishes no checksums. Repeatable.
    #[arg(long, value_name = "[FILE=]HEX")]
    pub sha256: Vec<String>,
    /// Scratch directory for downloads [default: beside the output].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Build one variant of the recipe (see `flatbake sysext list`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["only_docker", "only_containerd"])]
    pub variant: Option<String>,
    /// docker: the engine and CLI without containerd and runc (--variant only-docker).
    #[arg(long, conflicts_with = "only_containerd")]
    pub only_docker: bool,
    /// docker: containerd and runc only, as the extension "containerd"
    /// (--variant only-containerd).
    #[arg(long)]
    pub only_containerd: bool,
    #[command(flatten)]
    pub source: RecipeSource,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    /// A recipe whose upstream versions to list (newest first).
    pub recipe: Option<String>,
    #[command(flatten)]
    pub source: RecipeSource,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Images to check.
    #[arg(value_name = "FILE.raw", required = true)]
    pub files: Vec<PathBuf>,
    /// Extension name [default: from each file name and its extension-release].
    #[arg(long)]
    pub name: Option<String>,
    /// Architecture of the Flatcar it is for [default: the target image's, else from a
    /// NAME-VERSION-ARCH file name].
    #[arg(long)]
    pub arch: Option<Arch>,
    /// The Flatcar disk image the extensions are for: checked against its own
    /// /usr/lib/os-release (ID, VERSION_ID, SYSEXT_LEVEL) and architecture
    /// [default: any current Flatcar, ID=flatcar SYSEXT_LEVEL=1.0].
    #[arg(long, value_name = "IMAGE", conflicts_with = "target_os_release")]
    pub target: Option<PathBuf>,
    /// The os-release file of the OS the extensions are for, instead of --target.
    #[arg(long, value_name = "FILE")]
    pub target_os_release: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ButaneArgs {
    /// Extension name.
    pub name: String,
    /// The sysext image (checked, and its sha256 taken).
    pub file: PathBuf,
    /// URL Ignition downloads the image from [default: contents.local, for butane --files-dir].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Also install the bakery's sysupdate config and the units that apply updates.
    #[arg(long)]
    pub sysupdate: bool,
    /// Base URL of the bakery for --sysupdate.
    #[arg(long, value_name = "URL", default_value = DEFAULT_BAKERY)]
    pub bakery_url: String,
}

pub fn run(cmd: SysextCommand) -> anyhow::Result<()> {
    match cmd {
        SysextCommand::Pack(a) => run_pack(a),
        SysextCommand::Create(a) => run_create(a),
        SysextCommand::List(a) => run_list(a),
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
        compression: a.compression.unwrap_or(pack::DEFAULT_COMPRESSION),
        level: a.compression_level,
        block_size: a.block_size,
        reload_manager: reload || a.reload_manager,
        epoch: a.source_date_epoch,
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
        Format::Erofs => "erofs".to_owned(),
    };
    println!(
        "wrote {} ({compression}, {}, {} files, sha256 {})",
        report.output.display(),
        human(report.size),
        report.files,
        report.sha256
    );
    println!("  {}", sums.display());
    if a.sysupdate {
        let conf = dir.join(format!("{}.conf", opts.name));
        std::fs::write(&conf, bakery_conf(&opts.name, &a.bakery_url))
            .with_context(|| conf.display().to_string())?;
        println!("  {}", conf.display());
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

fn run_create(a: CreateArgs) -> anyhow::Result<()> {
    let variant = match (a.only_docker, a.only_containerd) {
        (true, _) => Some("only-docker"),
        (_, true) => Some("only-containerd"),
        _ => a.variant.as_deref(),
    };
    let r = recipe::load(&a.recipe, a.source.recipes.as_deref())?.select(variant)?;
    let os = a.os.clone().unwrap_or_else(|| r.os.clone());
    let opts = pack_options(&r.name, &a.version, a.arch, os, r.reload_manager, &a.image);
    let out = output_for(&opts, &a.image);
    let fetcher = Fetcher::new(a.source.mirror.as_deref())?;
    let sums = parse_sums(&a.sha256)?;
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(|| crate::input::parent_dir(&out));
    let log = |m: &str| eprintln!("{m}");
    let report = recipe::create(
        &r,
        &CreateOptions {
            version: &a.version,
            arch: a.arch,
            fetcher: &fetcher,
            user_sums: &sums,
            pack: opts.clone(),
            output: &out,
            work_dir: &work,
            log: &log,
        },
    )?;
    finish(&report, &opts, &a.image)
}

fn run_list(a: ListArgs) -> anyhow::Result<()> {
    match &a.recipe {
        None => {
            for n in recipe::names(a.source.recipes.as_deref()) {
                match recipe::load(&n, a.source.recipes.as_deref()) {
                    Ok(r) if r.variants.is_empty() => println!("{:<12} {}", r.name, r.description),
                    Ok(r) => println!(
                        "{:<12} {} (variants: {})",
                        r.name,
                        r.description,
                        r.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    Err(e) => println!("{n:<12} (broken: {e})"),
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
                println!("{x}");
            }
        }
    }
    Ok(())
}

fn print_report(r: &CheckReport) {
    let img = &r.image;
    println!("{}", img.path.display());
    println!("  format: {}", img.format);
    println!("  name: {}", r.name);
    println!("  size: {} ({} bytes)", human(img.size), img.size);
    match (&img.release, r.arch) {
        (_, Some((a, from))) => println!("  arch: {a} (from {from})"),
        (Some(rel), None) => println!(
            "  arch: {} (from extension-release)",
            rel.get("ARCHITECTURE").unwrap_or("any")
        ),
        (None, None) => println!("  arch: unknown"),
    }
    println!("  target: {}", r.target.describe());
    match &img.release {
        Some(rel) => {
            println!("  extension-release.{}:", r.name);
            for (k, v) in &rel.fields {
                println!("    {k}={v}");
            }
        }
        None => println!("  extension-release.{}: missing", r.name),
    }
    if r.problems.is_empty() {
        println!("  ok: systemd-sysext would merge it as {}", r.name);
    } else {
        println!("  problems:");
        for p in &r.problems {
            println!("    - {p}");
        }
    }
}

fn run_check(a: CheckArgs) -> anyhow::Result<()> {
    if a.name.is_some() && a.files.len() > 1 {
        bail!("--name applies to one image; check several images without it");
    }
    let target = match (&a.target, &a.target_os_release) {
        (Some(img), _) => {
            let work = tempfile::Builder::new()
                .prefix(&format!("{}target-", crate::cleanup::prefix()))
                .tempdir()
                .context("cannot create a scratch directory")?;
            let _guard = crate::cleanup::register(work.path());
            Some(
                crate::sysext::target::from_image(img, work.path(), a.arch)
                    .map_err(anyhow::Error::msg)?,
            )
        }
        (None, Some(f)) => Some(
            crate::sysext::target::from_os_release_file(f, a.arch).map_err(anyhow::Error::msg)?,
        ),
        (None, None) => None,
    };
    let mut bad = 0;
    for f in &a.files {
        match check::check_image(f, a.name.as_deref(), a.arch, target.clone()) {
            Ok(r) => {
                print_report(&r);
                if !r.problems.is_empty() {
                    bad += 1;
                }
            }
            Err(e) => {
                println!("{}", f.display());
                println!("  problems:\n    - {e}");
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
    let work = tempfile::Builder::new()
        .prefix(".flatbake-torcx")
        .tempdir_in(crate::input::parent_dir(&out))
        .with_context(|| {
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
fn scratch(out: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(crate::input::parent_dir(out))
        .with_context(|| {
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
    let work = scratch(&out, &format!(".flatbake-{what}"))?;
    let (rootfs, ours) = rootfs_dir(a, work.path())?;
    let tree = work.path().join("tree");
    build(&rootfs, ours, &tree)?;
    copy_units(&a.unit, &tree)?;
    let report = pack::pack(&tree, &out, &opts)?;
    finish(&report, &opts, &a.image)
}

fn run_flix(a: FlixArgs) -> anyhow::Result<()> {
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
    let sha = pack::sha256_file(&a.file).with_context(|| a.file.display().to_string())?;
    let y = butane::render(&butane::Snippet {
        name: &a.name,
        file: &file,
        url: a.url.as_deref(),
        sha256: &sha,
        sysupdate: a.sysupdate.then_some(a.bakery_url.as_str()),
    });
    print!("{y}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("128K"), Ok(131072));
        assert_eq!(super::parse_size("1M"), Ok(1 << 20));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert!(super::parse_size("x").is_err());
    }
}
