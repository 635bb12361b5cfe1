//! Configuration files written beside a vendor's disk image, rendered from the
//! templates under `vendors/templates/` the way Flatcar's `vm_image_util.sh` writes
//! them: the qemu launchers and READMEs (`qemu_uefi`, and with it `qemu` and
//! `qemu_uefi_secure`), VMware `.vmx`, OVF descriptors (VMware's with its
//! `guestinfo.*` ProductSection, VirtualBox's), the Vagrant box files, Xen `xl` configs.

use super::registry::{Conf, Vendor};
use crate::arch::Arch;

const QEMU_SH: &str = include_str!("../../vendors/templates/qemu.sh");
const QEMU_README: &str = include_str!("../../vendors/templates/qemu.README");
const VMX: &str = include_str!("../../vendors/templates/vmware.vmx");
const OVF_VMWARE: &str = include_str!("../../vendors/templates/vmware.ovf");
const OVF_VIRTUALBOX: &str = include_str!("../../vendors/templates/virtualbox.ovf");
const VIRTUALBOX_README: &str = include_str!("../../vendors/templates/virtualbox.README");
const VAGRANTFILE: &str = include_str!("../../vendors/templates/Vagrantfile");
const XL: &str = include_str!("../../vendors/templates/xl.cfg");
const XL_README: &str = include_str!("../../vendors/templates/xl.README");

/// Memory and CPUs the configs give the VM (Flatcar's `IMG_DEFAULT_MEM`/`_CPUS`).
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

/// Flatcar's `VM_NAME`: `flatcar_production_<type>-<version>`, dots and pluses made
/// dashes so it is a valid hostname.
pub fn vm_name(vendor_name: &str, version: &str) -> String {
    let n = format!("flatcar_production_{vendor_name}-{version}");
    n.replace(['.', '+'], "-")
}

/// The VMware OVF (`vmx-13`, VirtualSCSI, vmxnet3, `guestinfo.*` properties with the
/// `com.vmware.guestInfo` transport), Flatcar's `template_vmware.ovf`.
pub fn ovf_vmware(vendor: &Vendor, disk: &DiskFacts<'_>) -> String {
    render(
        OVF_VMWARE,
        &[
            ("NAME", vendor.file_name("")),
            ("DISK", disk.file_name.to_owned()),
            ("DISK_FILE_SIZE", disk.file_size.to_string()),
            ("CAPACITY", disk.capacity.to_string()),
            ("CPUS", CPUS.to_string()),
            ("MEMORY", MEMORY_MIB.to_string()),
        ],
    )
}

/// The VirtualBox OVF (IDE disk, E1000).
pub fn ovf_virtualbox(vm: &str, disk: &DiskFacts<'_>) -> String {
    render(
        OVF_VIRTUALBOX,
        &[
            ("NAME", vm.to_owned()),
            ("DISK", disk.file_name.to_owned()),
            ("DISK_FILE_SIZE", disk.file_size.to_string()),
            ("CAPACITY", disk.capacity.to_string()),
            ("CPUS", CPUS.to_string()),
            ("MEMORY", MEMORY_MIB.to_string()),
            ("CONTROLLER", "IDE".to_owned()),
            ("CONTROLLER_SUBTYPE", "PIIX4".to_owned()),
            ("CONTROLLER_TYPE", "5".to_owned()),
            ("NIC", "E1000".to_owned()),
            ("SYSTEM_TYPE", "virtualbox-2.2".to_owned()),
        ],
    )
}

/// One qemu launcher + README: `type_name` is `qemu_uefi`, `qemu` or
/// `qemu_uefi_secure`; the firmware (none for `qemu`) is named after it.
fn qemu_launcher(type_name: &str, arch: Arch, version: &str, pflash: bool) -> Vec<GenFile> {
    let base = format!("flatcar_production_{type_name}");
    let quoted = |f: String| format!("\"${{SCRIPT_DIR}}/{f}\"");
    let (ro, rw) = if pflash {
        (
            quoted(format!("{base}_efi_code.qcow2")),
            quoted(format!("{base}_efi_vars.qcow2")),
        )
    } else {
        (String::new(), String::new())
    };
    let script = format!("{base}.sh");
    let sh = GenFile {
        name: script.clone(),
        content: render(
            QEMU_SH,
            &[
                ("NAME", vm_name(type_name, version)),
                ("IMAGE", quoted(format!("{base}_image.img"))),
                ("PFLASH_RO", ro),
                ("PFLASH_RW", rw),
                ("MEMORY", MEMORY_MIB.to_string()),
                ("BOARD", arch.board().to_owned()),
            ],
        )
        .into_bytes(),
        mode: 0o755,
    };
    vec![
        sh,
        GenFile::text(
            format!("{base}.README"),
            render(QEMU_README, &[("SCRIPT", script)]),
        ),
    ]
}

/// The files `vendor.conf` asks for, for Flatcar `version` on `arch`.
pub fn files(vendor: &Vendor, arch: Arch, version: &str, disk: &DiskFacts<'_>) -> Vec<GenFile> {
    let name = vendor.file_name("");
    let vm = vm_name(&vendor.name, version);
    match vendor.conf {
        Some(Conf::QemuUefi) => {
            let mut out = qemu_launcher(&vendor.name, arch, version, true);
            if vendor.name == "qemu_uefi" {
                if arch == Arch::X86_64 {
                    out.extend(qemu_launcher("qemu", arch, version, false));
                }
                out.extend(qemu_launcher("qemu_uefi_secure", arch, version, true));
            }
            out
        }
        Some(Conf::Vmx) => vec![GenFile::text(
            vendor.file_name(".vmx"),
            render(
                VMX,
                &[
                    ("NAME", vm),
                    ("DISK", disk.file_name.to_owned()),
                    ("MEMORY", MEMORY_MIB.to_string()),
                ],
            ),
        )],
        Some(Conf::OvfVmware) => vec![GenFile::text(
            vendor.file_name(".ovf"),
            ovf_vmware(vendor, disk),
        )],
        Some(Conf::OvfVirtualbox) => {
            let ovf = vendor.file_name(".ovf");
            vec![
                GenFile::text(ovf.clone(), ovf_virtualbox(&vm, disk)),
                GenFile::text(
                    vendor.file_name(".README"),
                    render(
                        VIRTUALBOX_README,
                        &[("DISK", disk.file_name.to_owned()), ("OVF", ovf)],
                    ),
                ),
            ]
        }
        Some(Conf::Vagrant) => vec![
            GenFile::text(
                "Vagrantfile".into(),
                render(
                    VAGRANTFILE,
                    &[("NAME", name), ("MEMORY", MEMORY_MIB.to_string())],
                ),
            ),
            GenFile::text("box.ovf".into(), ovf_virtualbox(&vm, disk)),
            GenFile::text(
                "metadata.json".into(),
                format!(
                    "{{\n  \"provider\": \"virtualbox\",\n  \"architecture\": \"{}\"\n}}\n",
                    arch.board().trim_end_matches("-usr")
                ),
            ),
        ],
        Some(Conf::Xl) => {
            let pygrub = vendor.file_name("_pygrub.cfg");
            let pvgrub = vendor.file_name("_pvgrub.cfg");
            let cfg = |boot: &str| {
                render(
                    XL,
                    &[
                        ("BOOT", boot.to_owned()),
                        ("NAME", vm.clone()),
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
                GenFile::text(vendor.file_name(".README"), render(XL_README, &[("PYGRUB", pygrub), ("PVGRUB", pvgrub), ("NAME", vm.clone())])),
            ]
        }
        None => Vec::new(),
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
            let fs = files(v, Arch::X86_64, "4593.2.5", &disk);
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
        let ovf = ovf_vmware(reg.get("vmware_ova").unwrap(), &disk);
        assert!(ovf.contains("ovf:capacity=\"456\"") && ovf.contains("ovf:size=\"123\""));
    }

    #[test]
    fn qemu_launchers_per_board() {
        let reg = Registry::load(None).unwrap();
        let disk = DiskFacts {
            file_name: "flatcar_production_qemu_uefi_image.img",
            file_size: 1,
            capacity: 1,
        };
        let q = reg.get("qemu_uefi").unwrap();
        let names = |a| {
            files(q, a, "4593.2.5+x", &disk)
                .into_iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
        };
        assert!(names(Arch::X86_64).contains(&"flatcar_production_qemu.sh".to_owned()));
        assert!(!names(Arch::Arm64).contains(&"flatcar_production_qemu.sh".to_owned()));
        let arm = files(q, Arch::Arm64, "4593.2.5+x", &disk);
        let sh = String::from_utf8(arm[0].content.clone()).unwrap();
        assert!(sh.contains("\nVM_BOARD='arm64-usr'\n"), "{sh}");
        assert!(sh.contains("\nVM_NAME='flatcar_production_qemu_uefi-4593-2-5-x'\n"));
        assert!(sh.contains(
            "\nVM_PFLASH_RO=\"${SCRIPT_DIR}/flatcar_production_qemu_uefi_efi_code.qcow2\"\n"
        ));
        assert_eq!(arm[0].mode, 0o755);
    }
}
