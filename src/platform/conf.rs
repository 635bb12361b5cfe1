//! Configuration files written beside a vendor's disk image, rendered from the
//! templates under `vendors/templates/`: the qemu launcher script and README, VMware
//! `.vmx`, OVF descriptors (VMware and VirtualBox), the Vagrantfile, Xen `xl` configs.

use super::registry::Vendor;
use crate::arch::Arch;

const QEMU_SH: &str = include_str!("../../vendors/templates/qemu_uefi.sh");
const QEMU_README: &str = include_str!("../../vendors/templates/qemu_uefi.README");
const VMX: &str = include_str!("../../vendors/templates/vmware.vmx");
const OVF: &str = include_str!("../../vendors/templates/ovf.ovf");
const VAGRANTFILE: &str = include_str!("../../vendors/templates/Vagrantfile");
const XL: &str = include_str!("../../vendors/templates/xl.cfg");
const XL_README: &str = include_str!("../../vendors/templates/xl.README");

/// Memory and CPUs the configs give the VM (Flatcar's defaults).
pub const MEMORY_MIB: u32 = 2048;
pub const CPUS: u32 = 2;

/// Replace every `@@KEY@@` in `template`.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("@@{k}@@"), v);
    }
    s
}

/// A generated file: name (in the output directory or bundle), content, mode.
#[derive(Clone, Debug)]
pub struct GenFile {
    pub name: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

impl GenFile {
    fn text(name: String, content: String) -> GenFile {
        GenFile {
            name,
            content: content.into_bytes(),
            mode: 0o644,
        }
    }
}

/// Facts about the written disk that configs mention.
pub struct DiskFacts<'a> {
    pub file_name: &'a str,
    pub file_size: u64,
    pub capacity: u64,
}

/// OVF descriptor for a VMware (`lsilogic`, vmxnet3) or VirtualBox (IDE) VM.
pub fn ovf(vendor: &Vendor, disk: &DiskFacts<'_>, virtualbox: bool) -> String {
    let (ctl, sub, ty, nic, sys) = if virtualbox {
        ("IDE", "PIIX4", "5", "E1000", "virtualbox-2.2")
    } else {
        ("SCSI", "lsilogic", "6", "VmxNet3", "vmx-11")
    };
    render(
        OVF,
        &[
            ("NAME", vendor.file_name("")),
            ("DISK", disk.file_name.to_owned()),
            ("DISK_FILE_SIZE", disk.file_size.to_string()),
            ("CAPACITY", disk.capacity.to_string()),
            ("CPUS", CPUS.to_string()),
            ("MEMORY", MEMORY_MIB.to_string()),
            ("CONTROLLER", ctl.to_owned()),
            ("CONTROLLER_SUBTYPE", sub.to_owned()),
            ("CONTROLLER_TYPE", ty.to_owned()),
            ("NIC", nic.to_owned()),
            ("SYSTEM_TYPE", sys.to_owned()),
        ],
    )
}

/// The files `vendor.conf` asks for.
pub fn files(vendor: &Vendor, arch: Arch, disk: &DiskFacts<'_>) -> Vec<GenFile> {
    let name = vendor.file_name("");
    match vendor.conf.as_deref() {
        Some("qemu_uefi") => {
            let script = vendor.file_name(".sh");
            let mut sh = GenFile::text(
                script.clone(),
                render(
                    QEMU_SH,
                    &[
                        ("NAME", name.clone()),
                        ("IMAGE", disk.file_name.to_owned()),
                        ("EFI_CODE", vendor.file_name("_efi_code.qcow2")),
                        ("EFI_VARS", vendor.file_name("_efi_vars.qcow2")),
                        ("MEMORY", MEMORY_MIB.to_string()),
                        ("BOARD", arch.board().to_owned()),
                    ],
                ),
            );
            sh.mode = 0o755;
            vec![
                sh,
                GenFile::text(
                    vendor.file_name(".README"),
                    render(QEMU_README, &[("SCRIPT", script)]),
                ),
            ]
        }
        Some("vmx") => vec![GenFile::text(
            vendor.file_name(".vmx"),
            render(
                VMX,
                &[
                    ("NAME", name),
                    ("DISK", disk.file_name.to_owned()),
                    ("MEMORY", MEMORY_MIB.to_string()),
                    ("CPUS", CPUS.to_string()),
                ],
            ),
        )],
        Some("ovf_vmware") => vec![GenFile::text(
            vendor.file_name(".ovf"),
            ovf(vendor, disk, false),
        )],
        Some("ovf_virtualbox") => vec![GenFile::text(
            vendor.file_name(".ovf"),
            ovf(vendor, disk, true),
        )],
        Some("vagrant") => vec![
            GenFile::text(
                "Vagrantfile".into(),
                render(
                    VAGRANTFILE,
                    &[("NAME", name), ("MEMORY", MEMORY_MIB.to_string())],
                ),
            ),
            GenFile::text("box.ovf".into(), ovf(vendor, disk, true)),
            GenFile::text(
                "metadata.json".into(),
                "{\"provider\": \"virtualbox\"}\n".into(),
            ),
        ],
        Some("xl") => {
            let pygrub = vendor.file_name("_pygrub.cfg");
            let pvgrub = vendor.file_name("_pvgrub.cfg");
            let cfg = |boot: &str| {
                render(
                    XL,
                    &[
                        ("BOOT", boot.to_owned()),
                        ("NAME", name.clone()),
                        ("MEMORY", MEMORY_MIB.to_string()),
                        ("DISK", disk.file_name.to_owned()),
                    ],
                )
            };
            vec![
                GenFile::text(pygrub.clone(), cfg("# Xen PV config using pygrub\nbootloader = \"pygrub\"")),
                GenFile::text(
                    pvgrub.clone(),
                    cfg("# Xen PV config using pvgrub\nkernel = \"/usr/lib/xen/boot/pv-grub-x86_64.gz\"\nextra = \"(hd0,0)/boot/grub/menu.lst\""),
                ),
                GenFile::text(vendor.file_name(".README"), render(XL_README, &[("PYGRUB", pygrub), ("PVGRUB", pvgrub), ("NAME", name.clone())])),
            ]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::registry::Registry;

    #[test]
    fn templates_fill_every_placeholder() {
        let reg = Registry::load(None).unwrap();
        let disk = DiskFacts {
            file_name: "d.vmdk",
            file_size: 123,
            capacity: 456,
        };
        for v in reg.vendors.values().filter(|v| v.conf.is_some()) {
            let fs = files(v, Arch::X86_64, &disk);
            assert!(!fs.is_empty(), "{}", v.name);
            for f in fs {
                let text = String::from_utf8(f.content).unwrap();
                assert!(
                    !text.contains("@@"),
                    "{} {}: unfilled placeholder",
                    v.name,
                    f.name
                );
            }
        }
        let ovf = ovf(reg.get("vmware_ova").unwrap(), &disk, false);
        assert!(ovf.contains("ovf:capacity=\"456\"") && ovf.contains("ovf:size=\"123\""));
    }
}
