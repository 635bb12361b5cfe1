//! Command-line interface (clap). `bake` is the default command: `flatbake [bake]
//! [OPTIONS] NAME:FILE...`.

use crate::arch::Arch;
use crate::bake::plan::InstallRule;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "flatbake",
    version,
    about = "Bake systemd-sysext images into Flatcar Container Linux OS images, rootless.",
    long_about = "Bake systemd-sysext images into Flatcar Container Linux OS images, rootless.\n\n\
        Each NAME:FILE puts the sysext FILE at /opt/extensions/NAME/FILE on the ROOT partition,\n\
        links /etc/extensions/NAME.raw to it, and installs NAME.conf found beside FILE as\n\
        /etc/sysupdate.NAME.d/NAME.conf. No root, loop devices or mounts are needed.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bake: BakeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bake sysexts into a Flatcar image (the default command).
    Bake(BakeArgs),
    /// Build and check sysext images: pack, create (from a recipe), list, check, butane.
    Sysext {
        #[command(subcommand)]
        cmd: crate::sysext::cli::SysextCommand,
    },
}

#[derive(Debug, Args, Clone)]
pub struct BakeArgs {
    /// Flatcar disk image to start from (flatcar_production_image.bin). It is only read.
    #[arg(long, value_name = "FILE", env = "FLATBAKE_IMAGE")]
    pub image: Option<PathBuf>,

    /// Where to write the baked image. Written under a temporary name beside it and
    /// renamed into place only when everything succeeded.
    #[arg(short, long, value_name = "FILE", default_value = "flatcar_production_image_baked.bin")]
    pub output: PathBuf,

    /// Partition and directory the sysext files go to: root:DIR or oem:DIR, for every
    /// extension, or NAME=root:DIR / NAME=oem:DIR for one. `{name}` in DIR stands for the
    /// extension name. On OEM, /etc/extensions/NAME.raw points at /oem/DIR/FILE.
    /// Repeatable. [default: root:/opt/extensions/{name}]
    #[arg(long, value_name = "[NAME=]PART:DIR")]
    pub install_to: Vec<InstallRule>,

    /// systemd-sysupdate transfer file for extension NAME, installed as
    /// /etc/sysupdate.NAME.d/NAME.conf (default: NAME.conf beside FILE, if present).
    /// Repeatable.
    #[arg(long = "sysupdate-conf", value_name = "NAME=PATH")]
    pub sysupdate_conf: Vec<String>,

    /// Architecture of the image (x86-64 or arm64), checked against each sysext's
    /// ARCHITECTURE=. Default: detected from the image's UEFI boot loader.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,

    /// Scratch directory for temporary files (default: beside the output).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Sysexts to bake, each as NAME:FILE. NAME must match the image's
    /// usr/lib/extension-release.d/extension-release.NAME.
    #[arg(value_name = "NAME:FILE")]
    pub extensions: Vec<String>,
}
