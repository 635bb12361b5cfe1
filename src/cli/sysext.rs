//! The command line of `flatbake sysext ...`: its clap types (the runners are in
//! `app::sysext`).

use crate::arch::Arch;
use crate::release::channel::DEFAULT_BAKERY_URL;
use crate::sysext::image::Format;
use crate::sysext::pack::Compression;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum SysextCommand {
    /// Pack a directory's usr/ and opt/ into NAME-VERSION-ARCH.raw, with its
    /// extension-release, a SHA256SUMS entry and (--sysupdate) NAME.conf beside it.
    Pack(PackArgs),
    /// Download an upstream release with a recipe, verify it, and pack it.
    Create(CreateArgs),
    /// List the recipes, the upstream versions of one, or (--bakery) what a bakery has
    /// released.
    List(ListArgs),
    /// Build extensions the bakery's way: each NAME[:VERSION] (VERSION defaults to
    /// `latest`) for every architecture its recipe builds, into DIR/extensions/ as a
    /// self-hosted bakery serves them: the images, SHA256SUMS (global and per extension),
    /// NAME/NAME.conf and, for recipes that pin a minor, NAME/NAME-vMAJOR.MINOR.conf.
    Release(ReleaseArgs),
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
    /// Version of the sysext (in its file name and extension-release).
    #[arg(long, default_value = "1")]
    pub version: String,
    /// Architecture: x86-64 or arm64.
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
    /// Architecture: x86-64 or arm64.
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

    /// Compressor [default: gzip for squashfs, as the bakery's mksquashfs; lz4hc for
    /// EROFS, as the bakery's mkfs.erofs]. squashfs: gzip, xz, zstd, lz4; EROFS: lz4hc,
    /// lz4, none (xz, gzip, zstd where mkfs.erofs has them).
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,

    /// Compression level (gzip 1-9, xz 0-9, zstd 1-22, lz4hc 0-12) [default: the
    /// writer's default].
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
    #[arg(long, value_name = "URL", default_value = DEFAULT_BAKERY_URL)]
    pub bakery_url: String,

    /// Timestamp (seconds since 1970) for every file and the image, so the same tree
    /// gives the same bytes whatever the files' mtimes [default: 0, the bakery's
    /// --epoch 0].
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

/// Inputs of a recipe besides its name and version.
#[derive(Debug, Args, Clone)]
pub struct RecipeInputs {
    /// Give a recipe variable (e.g. cni_version=v1.6.0) instead of its default or its
    /// upstream look-up; see `flatbake sysext list` for each recipe's. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// For recipes built from an OCI image (keepalived, haproxy, ...): the image, as an OCI
    /// layout directory or a docker save / OCI archive tarball.
    #[arg(long, value_name = "IMAGE")]
    pub rootfs: Option<PathBuf>,
    /// --rootfs is an already extracted directory tree.
    #[arg(long, requires = "rootfs")]
    pub from_dir: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// Recipe name (see `flatbake sysext list`) or a recipe file (*.toml).
    pub recipe: String,
    /// Upstream version as the bakery spells it, e.g. v24.0.0 (the recipe's `v` is added
    /// when missing).
    pub version: String,
    /// Architecture [default: this machine's].
    #[arg(long)]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub inputs: RecipeInputs,
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
    #[arg(conflicts_with = "bakery")]
    pub recipe: Option<String>,
    /// List what a bakery has released (from its extensions/SHA256SUMS) [default URL:
    /// FLATBAKE_BAKERY_URL, else the Flatcar bakery].
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub bakery: Option<String>,
    #[command(flatten)]
    pub source: RecipeSource,
}

#[derive(Debug, Args, Clone)]
pub struct ReleaseArgs {
    /// Extensions to build, as NAME or NAME:VERSION (VERSION may be `latest`).
    #[arg(value_name = "NAME[:VERSION]", required = true)]
    pub extensions: Vec<String>,
    /// The served directory: files go to DIR/extensions/ (existing SHA256SUMS are updated).
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Build only these architectures [default: every one the recipe builds].
    #[arg(long = "arch", value_name = "ARCH")]
    pub arches: Vec<Arch>,
    /// Base URL the bakery will be served from, written into the sysupdate confs.
    #[arg(long, value_name = "URL", default_value = DEFAULT_BAKERY_URL)]
    pub bakery_url: String,
    /// Expected sha256 of a download, as FILE=HEX (see `create`). Repeatable.
    #[arg(long, value_name = "FILE=HEX")]
    pub sha256: Vec<String>,
    /// Replace images already in DIR/extensions (else a second build of one is refused).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub inputs: RecipeInputs,
    #[command(flatten)]
    pub source: RecipeSource,
    /// Squashfs compressor [default: gzip, as the bakery's mksquashfs].
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    /// Timestamp (seconds since 1970) for every file and the image.
    #[arg(long, value_name = "SECONDS", env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<u32>,
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
    /// /usr/lib/os-release (ID, VERSION_ID, SYSEXT_LEVEL) and architecture, and the
    /// programs, libraries and units the extension relies on are looked up in its /usr
    /// [default: any current Flatcar, ID=flatcar SYSEXT_LEVEL=1.0; what only the base
    /// can settle is a warning].
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
    #[arg(long, value_name = "URL", default_value = DEFAULT_BAKERY_URL)]
    pub bakery_url: String,
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
