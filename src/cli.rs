//! Command-line interface (clap). `bake` is the default command: `flatbake [bake]
//! [OPTIONS] NAME:FILE...`.

use crate::arch::Arch;
use crate::bake::place::InstallRule;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub mod sysext;

#[derive(Debug, Parser)]
#[command(
    name = "flatbake",
    version,
    about = "Bake systemd-sysext images into Flatcar Container Linux OS images, rootless.",
    long_about = "Bake systemd-sysext images into Flatcar Container Linux OS images, rootless.\n\n\
        Each NAME:FILE puts the sysext FILE at /opt/extensions/NAME/FILE on the ROOT \
        partition, links /etc/extensions/NAME.raw to it, and installs NAME.conf found beside \
        FILE as /etc/sysupdate.NAME.d/NAME.conf. No root, loop devices or mounts are needed.",
    after_help = "`flatbake --help` shows every option and examples; \
        `flatbake COMMAND --help` a command's.",
    after_long_help = "Examples:\n\
        \x20 # bake sysexts into a local image\n\
        \x20 flatbake --image flatcar_production_image.bin -o baked.bin \\\n\
        \x20     wasmtime:wasmtime-v24.0.0-x86-64.raw\n\
        \x20 # fetch and verify stable, bake a bakery sysext, write a QEMU image\n\
        \x20 flatbake --fetch --vendor qemu_uefi wasmtime:wasmtime-v24.0.0-x86-64.raw\n\
        \x20 # the plain image and an Azure one, with a serial console\n\
        \x20 flatbake --image flatcar_production_image.bin --vendor generic,azure \\\n\
        \x20     --output-dir out --kernel-arg console=ttyS0 myext:myext-1.0-x86-64.raw\n\
        \x20 # every image a spec file describes; one CI variant of it\n\
        \x20 flatbake build images.toml --dry-run\n\
        \x20 flatbake build images.toml --variant x86-64-qemu_uefi-wasm --json result.json\n\
        \x20 flatbake inspect flatcar_production_qemu_uefi_image.img\n\n\
        Exit codes: 0 done, 1 refused or failed (nothing written), 2 usage error.",
    max_term_width = 80,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print only errors and the final result.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Also print every outside command run.
    ///
    /// Also print every outside command flatbake runs (debugfs, mkfs.btrfs, ...).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    #[command(flatten)]
    pub bake: BakeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bake sysexts into a Flatcar image (the default command).
    Bake(Box<BakeArgs>),
    /// Build the images a spec file describes.
    ///
    /// Build the variants a spec file describes (input, extensions, vendors, settings,
    /// output): one, all of them, or list them for a CI matrix.
    #[command(
        after_help = "Examples:\n  flatbake build images.toml --dry-run\n  flatbake build images.toml --list-variants --json\n  flatbake build images.toml --variant x86-64-qemu_uefi\n  JOB_COMPLETION_INDEX=2 flatbake build images.toml"
    )]
    Build(BuildArgs),
    /// Show what a Flatcar image (raw or qcow2) holds.
    ///
    /// Show what a Flatcar image (raw or qcow2) holds: partitions, filesystems, version,
    /// extensions, OEM content, Ignition config. Rootless.
    Inspect {
        /// The image to inspect.
        #[arg(value_name = "IMAGE")]
        image: PathBuf,
        /// Print a stable machine-readable JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download a release and what a bake needs into the cache.
    ///
    /// Only download and verify a Flatcar release into the cache (for CI caching), and
    /// with --vendor the release files those vendor images need (OEM sysexts, firmware),
    /// with NAME:FILE arguments bakery extensions and their sysupdate configs too. A bake
    /// with the same arguments and --release X.Y.Z then runs offline from the cache.
    Fetch {
        #[command(flatten)]
        release: ReleaseArgs,
        /// Also fetch what these vendor images need (comma-separated or repeated).
        #[arg(long, value_name = "VENDOR", value_delimiter = ',')]
        vendor: Vec<String>,
        /// Also load vendor definitions (*.toml) from DIR.
        #[arg(long, value_name = "DIR")]
        vendors_dir: Option<PathBuf>,
        /// Bakery extensions to fetch as well, each NAME:FILE.
        #[arg(value_name = "NAME:FILE")]
        extensions: Vec<String>,
    },
    /// Build and check sysext images (pack, create, check, ...).
    ///
    /// Build and check sysext images: pack, create (from a recipe), release (the bakery's
    /// way), list, check, butane, convert-torcx, flix, flatwrap.
    Sysext {
        #[command(subcommand)]
        cmd: sysext::SysextCommand,
    },
    /// Internal: the mount backend's worker, run in a private mount namespace.
    #[command(name = "__mount-apply", hide = true)]
    MountApply { job: PathBuf },
    /// Print a shell completion script.
    ///
    /// Print a shell completion script: `flatbake completions bash >
    /// /etc/bash_completion.d/flatbake` (zsh: into a directory on $fpath as _flatbake;
    /// fish: ~/.config/fish/completions/flatbake.fish).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write man pages for every command into DIR.
    ///
    /// Write man pages for flatbake and every subcommand (flatbake.1, flatbake-bake.1,
    /// flatbake-sysext-pack.1, ...) into DIR, e.g. /usr/local/share/man/man1.
    Man {
        /// Directory for the pages (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Internal: the rootless OEM rebuild's worker, run inside fakeroot.
    #[command(name = "__oem-rebuild", hide = true)]
    OemRebuild { job: PathBuf },
    /// List the vendor images --vendor can write.
    ///
    /// List the vendor image types --vendor accepts, with layout and disk format.
    Vendors {
        /// Also load vendor definitions (*.toml) from DIR.
        #[arg(long, value_name = "DIR")]
        vendors_dir: Option<PathBuf>,
    },
}

/// `flatbake build SPEC.toml`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// The spec file (TOML; see README.md, "Build specs").
    ///
    /// Paths in it are relative to its directory.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,

    /// Print the variants (names, one per line; with --json, a GitHub Actions
    /// strategy.matrix: {"include": [{"variant": NAME, "index": N, ...}]}) and exit.
    #[arg(long)]
    pub list_variants: bool,

    /// Print each variant's plan (input, extensions, settings, files it would write) and
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Build only the variant NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "variant_index")]
    pub variant: Option<String>,

    /// Build only the variant at INDEX (0-based, in --list-variants order).
    ///
    /// Default: $JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) when set; else every
    /// variant.
    #[arg(long, value_name = "INDEX")]
    pub variant_index: Option<usize>,

    /// Write under DIR instead of the spec's [output] dir.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Replace outputs that already exist.
    #[arg(long)]
    pub force: bool,

    /// Scratch directory for temporary files (default: beside each output).
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub work_dir: Option<PathBuf>,

    /// Write the machine-readable result (see docs/json-schema.md) to FILE, or to standard
    /// output without FILE (then the human report goes to standard error).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
}

/// Where a Flatcar release comes from and how it is trusted.
#[derive(Debug, Args, Clone, Default)]
pub struct ReleaseArgs {
    /// Flatcar release to fetch (default stable).
    ///
    /// Flatcar release to fetch: alpha, beta, stable, lts, current (= stable), an LTS
    /// stream lts-YYYY (its current release), or a version X.Y.Z (its channel follows from
    /// Y: 0 alpha, 1 beta, 2 stable, 3 lts).
    ///
    /// Without --image, a bake fetches this release (default stable).
    #[arg(long, value_name = "RELEASE")]
    pub release: Option<String>,

    /// Architecture: x86-64 or arm64.
    ///
    /// For a local --image it is detected from the image's UEFI boot loader and checked
    /// against each sysext's ARCHITECTURE=; for a fetched release it picks the board
    /// (default x86-64).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,

    /// Cache for verified downloads; a re-run with a good cache downloads nothing.
    ///
    /// Default: $XDG_CACHE_HOME/flatbake or ~/.cache/flatbake.
    #[arg(
        long,
        value_name = "DIR",
        env = "FLATBAKE_CACHE",
        hide_short_help = true
    )]
    pub image_cache: Option<PathBuf>,

    /// Release server; `{channel}` is replaced by the channel name.
    #[arg(
        long,
        value_name = "URL",
        env = "FLATBAKE_RELEASE_URL",
        default_value = "https://{channel}.release.flatcar-linux.net",
        hide_short_help = true
    )]
    pub release_url: String,

    /// releases.json location (used with --head-from-releases-json).
    #[arg(
        long,
        value_name = "URL",
        env = "FLATBAKE_RELEASES_JSON_URL",
        default_value = "https://www.flatcar.org/releases-json/releases.json",
        hide_short_help = true
    )]
    pub releases_json_url: String,

    /// Resolve a channel's newest release from releases.json instead of the channel's
    /// current/version.txt.
    #[arg(long, hide_short_help = true)]
    pub head_from_releases_json: bool,

    /// Sysext bakery base URL.
    #[arg(
        long,
        value_name = "URL",
        env = "FLATBAKE_BAKERY_URL",
        default_value = "https://extensions.flatcar.org",
        hide_short_help = true
    )]
    pub bakery_url: String,

    /// Trust this OpenPGP public key (armored) instead of the embedded Flatcar image
    /// signing key.
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub signing_key: Option<PathBuf>,

    /// DANGEROUS: accept release files whose signature (and extensions whose checksum) is
    /// missing or bad.
    ///
    /// Never use it for images you will run.
    #[arg(long, hide_short_help = true)]
    pub insecure_skip_signature_verification: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BakeArgs {
    /// Flatcar disk image to start from.
    ///
    /// Flatcar disk image to start from (flatcar_production_image.bin, or its .bin.bz2).
    /// It is only read. Environment: FLATBAKE_IMAGE.
    #[arg(long, value_name = "FILE", env = "FLATBAKE_IMAGE", hide_env = true)]
    pub image: Option<PathBuf>,

    /// Where to write the baked image.
    ///
    /// Where to write the baked image (default flatcar_production_image_baked.bin).
    ///
    /// Written under a temporary name beside it and renamed into place only when everything
    /// succeeded. Not with --vendor (vendor images go to --output-dir).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace outputs that already exist.
    ///
    /// Replace outputs that already exist (by default an existing output is an error).
    #[arg(long)]
    pub force: bool,

    /// Sysext location: root:DIR or oem:DIR.
    ///
    /// Partition and directory the sysext files go to: root:DIR or oem:DIR, for every
    /// extension, or NAME=root:DIR / NAME=oem:DIR for one.
    ///
    /// `{name}` in DIR stands for the extension name. On OEM, /etc/extensions/NAME.raw
    /// points at /oem/DIR/FILE. Repeatable. [default: root:/opt/extensions/{name}]
    #[arg(long, value_name = "[NAME=]PART:DIR")]
    pub install_to: Vec<InstallRule>,

    /// systemd-sysupdate transfer file for extension NAME, installed as
    /// /etc/sysupdate.NAME.d/NAME.conf (default: NAME.conf beside FILE, if present).
    ///
    /// Repeatable.
    #[arg(
        long = "sysupdate-conf",
        value_name = "NAME=PATH",
        hide_short_help = true
    )]
    pub sysupdate_conf: Vec<String>,

    #[command(flatten)]
    pub release: ReleaseArgs,

    /// Download each NAME:FILE from the bakery.
    ///
    /// Download each NAME:FILE from the sysext bakery (<bakery>/extensions/FILE, with
    /// NAME.conf when the bakery has one), checked against the bakery's SHA256SUMS.
    ///
    /// Without --image, the Flatcar release (--release, default stable) is fetched too.
    #[arg(long)]
    pub fetch: bool,

    /// How ROOT and OEM are edited: rootless (debugfs for ext4, btrfs-progs rebuild for
    /// btrfs; no privileges), mount (loop devices and kernel mounts in a private mount
    /// namespace; needs root; keeps OEM's btrfs properties), or auto (mount when running as
    /// root with /dev/loop-control, else rootless).
    #[arg(long, value_enum, default_value = "rootless", hide_short_help = true)]
    pub backend: crate::fs::Backend,

    /// Scratch directory for temporary files (default: beside the output).
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub work_dir: Option<PathBuf>,

    /// Enable systemd-sysupdate for the sysexts.
    ///
    /// Keep baked extensions up to date with systemd-sysupdate: for each one with a
    /// sysupdate config, enable systemd-sysupdate.timer and add a systemd-sysupdate.service
    /// drop-in running `systemd-sysupdate -C NAME update`, plus /etc/sysupdate.d/noop.conf
    /// and a drop-in restarting systemd-sysext.
    #[arg(long)]
    pub sysupdate: bool,

    /// With --sysupdate, what a staged update triggers: restart-sysext (merge it at once,
    /// as the Flatcar docs do) or reboot-required (touch /run/reboot-required when an
    /// extension changed, for kured/FLUO; the bakery's advice for e.g. Kubernetes).
    #[arg(
        long,
        value_enum,
        default_value = "restart-sysext",
        value_name = "ACTION",
        hide_short_help = true
    )]
    pub sysupdate_action: crate::bake::autoupdate::Action,

    /// Ignition config (JSON) for the first boot.
    ///
    /// Ignition config (JSON) installed as /oem/config.ign.
    ///
    /// Ignition reads it on first boot and it OVERRIDES any user-data the cloud provides.
    /// Butane YAML must be converted with `butane` first. The image must still have its
    /// first-boot flag.
    #[arg(long, value_name = "FILE")]
    pub ignition: Option<PathBuf>,

    /// Append a kernel argument (repeatable).
    ///
    /// Kernel argument appended to linux_append in the OEM grub.cfg, after the vendor's own
    /// (repeatable), e.g. --kernel-arg console=ttyS0,115200n8.
    #[arg(long = "kernel-arg", value_name = "ARG", hide_short_help = true)]
    pub kernel_args: Vec<String>,

    /// Mask Flatcar's built-in extensions (docker, containerd; comma-separated or
    /// repeated): /etc/extensions/docker-flatcar.raw and containerd-flatcar.raw become
    /// symlinks to /dev/null so a custom Docker/containerd replaces them.
    ///
    /// Baking an extension named docker (masks both) or containerd does this by default.
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        hide_short_help = true
    )]
    pub replace_builtin: Vec<String>,

    /// Keep Flatcar's built-in docker and containerd even when baking extensions named
    /// docker or containerd.
    #[arg(long, hide_short_help = true)]
    pub keep_builtin: bool,

    /// The image is an old release that still runs Torcx (Flatcar 3760 and older): when
    /// masking built-ins also mask torcx-generator with an empty
    /// /etc/systemd/system-generators/torcx-generator.
    ///
    /// Implied when the image's version (--flatcar-version or version.txt beside the image)
    /// is that old.
    #[arg(long, hide_short_help = true)]
    pub torcx_era: bool,

    /// Activate Flatcar's own optional extensions (e.g. zfs,podman; comma-separated or
    /// repeated) by listing them in /etc/flatcar/enabled-sysext.conf.
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        hide_short_help = true
    )]
    pub enable_official: Vec<String>,

    /// Check all, print the plan, write nothing
    ///
    /// Check everything and print the plan (every file, link and config each filesystem
    /// would get) without writing any output; with --json the plan is also written as
    /// JSON, with the sha256 of every file.
    #[arg(long)]
    pub dry_run: bool,

    /// Write a JSON summary (to stdout: no FILE).
    ///
    /// Write a JSON summary of the run to FILE: every output with its sha256 and size, and
    /// the inspect report of every output image flatbake can read (raw, qcow2).
    ///
    /// Without FILE (or with -), to standard output (the human report then goes to standard
    /// error). Schema: docs/json-schema.md.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,

    /// Vendor images, e.g. qemu_uefi,azure.
    ///
    /// Emit vendor images (comma-separated or repeated; see `flatbake vendors`), e.g.
    /// qemu_uefi,azure,vmware_ova, into --output-dir with Flatcar's file names.
    ///
    /// The base image is baked once, then each vendor gets its layout, OEM partition
    /// (grub.cfg, OEM sysext, oem-release), disk format and configuration files.
    #[arg(long, value_name = "VENDOR", value_delimiter = ',')]
    pub vendor: Vec<String>,

    /// Directory for vendor outputs.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output_dir: PathBuf,

    /// Compressed copies: bz2,gz,zip[,none]
    ///
    /// Also write compressed copies of the vendor disk images under Flatcar's names
    /// (NAME.bz2, NAME.gz, NAME.zip), as its release server publishes them: a
    /// comma-separated list of bz2, gz, zip and none; without none only the compressed
    /// copies are kept (Flatcar's --image_compression_formats).
    #[arg(long, value_name = "FORMATS", hide_short_help = true)]
    pub compress: Option<String>,

    /// Directory with the release's other files for vendor images: version.txt,
    /// oem-<id>.raw OEM sysexts, qemu UEFI firmware qcow2s (default: the --image's
    /// directory).
    #[arg(
        long,
        value_name = "DIR",
        alias = "oem-sysext-dir",
        hide_short_help = true
    )]
    pub release_dir: Option<PathBuf>,

    /// Flatcar version of the image (default: FLATCAR_VERSION from version.txt in the
    /// release directory); names the installed OEM sysext.
    #[arg(long, value_name = "X.Y.Z", hide_short_help = true)]
    pub flatcar_version: Option<String>,

    /// Also load vendor definitions (*.toml) from DIR; they override built-in ones.
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub vendors_dir: Option<PathBuf>,

    /// Threads for compression (default: all cores).
    #[arg(long, value_name = "N", hide_short_help = true)]
    pub threads: Option<usize>,

    /// Sysexts to bake, each as NAME:FILE.
    ///
    /// NAME must match the image's usr/lib/extension-release.d/extension-release.NAME.
    #[arg(value_name = "NAME:FILE")]
    pub extensions: Vec<String>,
}
