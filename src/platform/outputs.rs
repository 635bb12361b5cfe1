//! The exact files a vendor writes into the output directory, as Flatcar's
//! `vm_image_util.sh` names them (its `VM_GENERATED_FILES`), plus the compressed
//! copies `--compress` asks for (Flatcar's `compress_disk_images`). The writer stages
//! exactly these names, and the `--force` pre-check looks for exactly these.

use super::compress::Compression;
use super::registry::{Bundle, Conf, Vendor};
use crate::arch::Arch;

/// How one output file comes to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// the disk image in the vendor's format
    Disk,
    /// a file from `conf::files`
    Conf,
    /// the bundle (`.tar.gz`, `.ova`, `.box`)
    Bundle,
    /// the Vagrant box catalogue beside the box (`flatcar_production_vagrant.json`)
    Catalogue,
    /// a file of the release directory, copied
    Release,
    /// a relative symlink to another output (qemu and qemu_uefi_secure images)
    Link(String),
    /// a compressed copy of another output
    Compressed(String, Compression),
}

/// One output: its file name in the output directory and how it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFile {
    pub name: String,
    pub source: Source,
}

/// Whether Flatcar compresses a file of this name (`compress_disk_images`).
pub fn is_disk_like(name: &str) -> bool {
    [
        ".img", ".bin", ".vdi", ".vhd", ".vhdx", ".vmdk", ".qcow", ".qcow2",
    ]
    .iter()
    .any(|e| name.ends_with(e))
}

/// Every file `v` (as its release defines it) writes on `arch`, in writing order.
pub fn outputs(v: &Vendor, arch: Arch, compress: &[Compression]) -> Vec<OutFile> {
    let mut out = Vec::new();
    let mut add = |name: String, source: Source| out.push(OutFile { name, source });
    let disk = v.disk_name();
    match v.bundle {
        None => add(disk.clone(), Source::Disk),
        // vmware_ova also publishes its vmdk and ovf beside the ova
        Some(Bundle::Ova) => add(disk.clone(), Source::Disk),
        Some(_) => {}
    }
    match v.conf {
        Some(Conf::QemuUefi) => {
            let types = v.launcher_types(arch);
            for t in &types {
                let base = format!("flatcar_production_{t}");
                if *t != v.name {
                    add(format!("{base}_image.img"), Source::Link(disk.clone()));
                }
                add(format!("{base}.sh"), Source::Conf);
                add(format!("{base}.README"), Source::Conf);
            }
        }
        Some(Conf::Vmx) => add(v.file_name(".vmx"), Source::Conf),
        Some(Conf::OvfVmware) => add(v.file_name(".ovf"), Source::Conf),
        Some(Conf::OvfVirtualbox) => {
            add(v.file_name(".ovf"), Source::Conf);
            add(v.file_name(".README"), Source::Conf);
        }
        Some(Conf::Xl) => {
            for s in ["_pygrub.cfg", "_pvgrub.cfg", ".README"] {
                add(v.file_name(s), Source::Conf);
            }
        }
        // the Vagrant files go into the box
        Some(Conf::Vagrant) | None => {}
    }
    match v.bundle {
        Some(Bundle::GceTar) => add(v.file_name(".tar.gz"), Source::Bundle),
        Some(Bundle::Ova) => add(v.file_name(".ova"), Source::Bundle),
        Some(Bundle::Box) => {
            add(v.file_name(".box"), Source::Bundle);
            add(v.file_name(".json"), Source::Catalogue);
        }
        None => {}
    }
    for f in &v.release_files {
        add(f.clone(), Source::Release);
    }
    if compress.is_empty() {
        return out;
    }
    let keep = compress.contains(&Compression::None);
    let mut all = Vec::new();
    for o in out {
        if !is_disk_like(&o.name) {
            all.push(o);
            continue;
        }
        for c in compress.iter().filter(|c| **c != Compression::None) {
            let name = format!("{}.{}", o.name, c.suffix());
            let source = match &o.source {
                Source::Link(t) => Source::Link(format!("{t}.{}", c.suffix())),
                _ => Source::Compressed(o.name.clone(), *c),
            };
            all.push(OutFile { name, source });
        }
        if keep {
            all.push(o);
        }
    }
    all
}

/// The names alone.
pub fn output_names(v: &Vendor, arch: Arch, compress: &[Compression]) -> Vec<String> {
    outputs(v, arch, compress)
        .into_iter()
        .map(|o| o.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::registry::Registry;

    #[test]
    fn names_as_flatcar_publishes_them() {
        let r = Registry::load(None).unwrap();
        let n = |v: &str, a, c: &[Compression]| output_names(r.get(v).unwrap(), a, c);
        assert_eq!(
            n("qemu_uefi", Arch::X86_64, &[]),
            [
                "flatcar_production_qemu_uefi_image.img",
                "flatcar_production_qemu_uefi.sh",
                "flatcar_production_qemu_uefi.README",
                "flatcar_production_qemu_image.img",
                "flatcar_production_qemu.sh",
                "flatcar_production_qemu.README",
                "flatcar_production_qemu_uefi_secure_image.img",
                "flatcar_production_qemu_uefi_secure.sh",
                "flatcar_production_qemu_uefi_secure.README",
                "flatcar_production_qemu_uefi_efi_code.qcow2",
                "flatcar_production_qemu_uefi_efi_vars.qcow2",
                "flatcar_production_qemu_uefi_secure_efi_code.qcow2",
                "flatcar_production_qemu_uefi_secure_efi_vars.qcow2",
            ]
        );
        // no BIOS qemu on arm64
        assert!(!n("qemu_uefi", Arch::Arm64, &[])
            .iter()
            .any(|x| x.starts_with("flatcar_production_qemu_image")));
        assert_eq!(
            n("vmware_ova", Arch::X86_64, &[]),
            [
                "flatcar_production_vmware_ova_image.vmdk",
                "flatcar_production_vmware_ova.ovf",
                "flatcar_production_vmware_ova.ova",
            ]
        );
        assert_eq!(
            n("gce", Arch::X86_64, &[]),
            ["flatcar_production_gce.tar.gz"]
        );
        // ci-automation/vms.sh: hyperv is published as .zip only
        assert_eq!(
            n("hyperv", Arch::X86_64, &[Compression::Zip]),
            ["flatcar_production_hyperv_image.vhd.zip"]
        );
        // "bz2,none" keeps the uncompressed file too; links get linked compressed names
        let q = outputs(
            r.get("qemu_uefi").unwrap(),
            Arch::X86_64,
            &[Compression::Bz2, Compression::None],
        );
        let link = q
            .iter()
            .find(|o| o.name == "flatcar_production_qemu_image.img.bz2")
            .unwrap();
        assert_eq!(
            link.source,
            Source::Link("flatcar_production_qemu_uefi_image.img.bz2".into())
        );
        assert!(q
            .iter()
            .any(|o| o.name == "flatcar_production_qemu_uefi_image.img"));
        assert!(q
            .iter()
            .any(|o| o.name == "flatcar_production_qemu_uefi.sh"));
        assert!(!q
            .iter()
            .any(|o| o.name == "flatcar_production_qemu_uefi.sh.bz2"));
    }

    #[test]
    fn qemu_files_per_release() {
        let r = Registry::load(None).unwrap();
        let n = |v: &str, ver: &str| {
            output_names(&r.get(v).unwrap().for_release(Some(ver)), Arch::X86_64, &[])
        };
        // LTS 4081: siblings written by qemu_uefi, firmware still .fd
        let lts = n("qemu_uefi", "4081.3.10");
        assert!(
            lts.contains(&"flatcar_production_qemu.sh".to_owned()),
            "{lts:?}"
        );
        assert!(lts.contains(&"flatcar_production_qemu_uefi_secure_efi_vars.fd".to_owned()));
        assert!(!lts.iter().any(|f| f.ends_with(".qcow2")), "{lts:?}");
        // 3815.2.1: qemu and qemu_uefi_secure were image types of their own
        assert_eq!(
            n("qemu_uefi", "3815.2.1"),
            [
                "flatcar_production_qemu_uefi_image.img",
                "flatcar_production_qemu_uefi.sh",
                "flatcar_production_qemu_uefi.README",
                "flatcar_production_qemu_uefi_efi_code.fd",
                "flatcar_production_qemu_uefi_efi_vars.fd",
            ]
        );
        assert_eq!(
            n("qemu", "3815.2.1"),
            [
                "flatcar_production_qemu_image.img",
                "flatcar_production_qemu.sh",
                "flatcar_production_qemu.README",
            ]
        );
        assert_eq!(
            n("qemu_uefi_secure", "3815.2.1")[3..],
            [
                "flatcar_production_qemu_uefi_secure_efi_code.fd",
                "flatcar_production_qemu_uefi_secure_efi_vars.fd",
            ]
        );
        let q = r.get("qemu").unwrap();
        assert!(q.release_problem("3815.2.1").is_none());
        let e = q.release_problem("3815.2.2").unwrap();
        assert!(e.contains("pass --vendor qemu_uefi"), "{e}");
        assert!(q.release_problem("3850.0.0").is_none());
        assert!(q.release_problem("4593.2.5").is_some());
    }
}
