//! Configuration files written beside a vendor's disk image, rendered from the
//! templates under `vendors/templates/` the way Flatcar's `vm_image_util.sh` writes
//! them: the qemu launchers and READMEs (`qemu_uefi`, and with it `qemu` and
//! `qemu_uefi_secure`), VMware `.vmx`, OVF descriptors (VMware's with its
//! `guestinfo.*` ProductSection, VirtualBox's as the release's `virtualbox_ovf.sh`
//! writes it), the Vagrant box files and box catalogue (the release's box template),
//! Xen `xl` configs. VirtualBox's OVF carries random MAC addresses and UUIDs as
//! Flatcar's does; with `SOURCE_DATE_EPOCH` set they are derived from it instead, so
//! the output is reproducible.

use super::registry::{self, Conf, Vendor};
use crate::arch::Arch;
use sha2::{Digest, Sha256};
use std::io::Read;

const QEMU_SH: &str = include_str!("../../vendors/templates/qemu.sh");
const QEMU_README: &str = include_str!("../../vendors/templates/qemu.README");
const VMX: &str = include_str!("../../vendors/templates/vmware.vmx");
const OVF_VMWARE: &str = include_str!("../../vendors/templates/vmware.ovf");
const VIRTUALBOX_README: &str = include_str!("../../vendors/templates/virtualbox.README");
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

/// The OVF template of `ovf_virtualbox` and `vagrant` vendors when the vendor file
/// names none: the one of current releases.
pub const VIRTUALBOX_OVF: &str = "virtualbox.ovf";

/// The identifiers VirtualBox's OVF carries: the disk's and the machine's UUID, eight
/// MAC addresses (VirtualBox's prefix 080027; the first is also the Vagrant box's
/// `base_mac`) and the time stamp.
#[derive(Clone, Debug)]
pub struct VboxIds {
    pub disk_uuid: String,
    pub machine_uuid: String,
    pub macs: Vec<String>,
    pub date: String,
}

/// Seconds since the epoch: SOURCE_DATE_EPOCH when set, else now.
fn epoch() -> (u64, bool) {
    match std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(e) => (e, true),
        None => (
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            false,
        ),
    }
}

/// `date -u +%Y-%m-%dT%H:%M:%SZ` of `secs`.
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl VboxIds {
    /// Random identifiers (from SOURCE_DATE_EPOCH and `seed` when it is set).
    pub fn new(seed: &str) -> VboxIds {
        let (now, fixed) = epoch();
        let mut bytes = vec![0u8; 2 * 16 + 8 * 3];
        let random = !fixed
            && std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .is_ok();
        if !random {
            let mut h = Sha256::new();
            h.update(seed.as_bytes());
            h.update(now.to_le_bytes());
            let a = h.finalize();
            let b = Sha256::digest(a);
            bytes[..32].copy_from_slice(&a);
            bytes[32..].copy_from_slice(&b[..24]);
        }
        let uuid = |b: &[u8]| {
            let mut u = [0u8; 16];
            u.copy_from_slice(&b[..16]);
            u[6] = (u[6] & 0x0f) | 0x40;
            u[8] = (u[8] & 0x3f) | 0x80;
            let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        };
        let macs = bytes[32..]
            .chunks(3)
            .map(|c| format!("080027{:02X}{:02X}{:02X}", c[0], c[1], c[2]))
            .collect();
        VboxIds {
            disk_uuid: uuid(&bytes[..16]),
            machine_uuid: uuid(&bytes[16..32]),
            macs,
            date: utc_date(now),
        }
    }

    fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("DISK_UUID".to_owned(), self.disk_uuid.clone()),
            ("MACHINE_UUID".to_owned(), self.machine_uuid.clone()),
            ("DATE".to_owned(), self.date.clone()),
        ];
        for (i, m) in self.macs.iter().enumerate() {
            v.push((format!("MAC{i}"), m.clone()));
        }
        v
    }
}

fn template_of(path: &str) -> Result<&'static str, String> {
    registry::template(path).ok_or_else(|| format!("no template vendors/templates/{path}"))
}

/// Replace every `@@KEY@@` of owned keys.
fn render_owned(template: &str, vars: &[(String, String)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("@@{k}@@"), v);
    }
    s
}

/// The VirtualBox OVF of `vendor` (its release's `ovf_template`): the disk's file
/// name and virtual size, `vm` as the machine's name, Flatcar's memory size.
pub fn ovf_virtualbox(
    vendor: &Vendor,
    vm: &str,
    disk: &DiskFacts<'_>,
    ids: &VboxIds,
) -> Result<String, String> {
    let t = template_of(vendor.ovf_template.as_deref().unwrap_or(VIRTUALBOX_OVF))?;
    let mut vars = vec![
        ("NAME".to_owned(), xml_escape(vm)),
        ("DISK".to_owned(), xml_escape(disk.file_name)),
        ("CAPACITY".to_owned(), disk.capacity.to_string()),
        ("MEMORY".to_owned(), MEMORY_MIB.to_string()),
    ];
    vars.extend(ids.vars());
    Ok(render_owned(t, &vars))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON string's content (no quotes).
fn json_inner(s: &str) -> String {
    let q = serde_json::Value::String(s.to_owned()).to_string();
    q[1..q.len() - 1].to_owned()
}

/// Vagrant's provider name and Flatcar's architecture name of a box.
fn box_vars(arch: Arch) -> Vec<(String, String)> {
    vec![
        ("PROVIDER".to_owned(), "virtualbox".to_owned()),
        (
            "ARCH".to_owned(),
            arch.board().trim_end_matches("-usr").to_owned(),
        ),
    ]
}

/// The files inside `vendor`'s Vagrant box, in box order (the disk comes last, from
/// the bundle): the release's box template (Vagrantfile, the Ruby helpers, `base_mac.rb`
/// with the OVF's first MAC address, `metadata.json`) and `box.ovf`.
pub fn box_files(
    vendor: &Vendor,
    arch: Arch,
    vm: &str,
    disk: &DiskFacts<'_>,
    ids: &VboxIds,
) -> Result<Vec<GenFile>, String> {
    let name = vendor
        .box_template
        .as_deref()
        .ok_or_else(|| format!("vendor {}: no box_template", vendor.name))?;
    let mut vars = box_vars(arch);
    vars.extend(ids.vars());
    let mut out = Vec::new();
    let mut metadata = None;
    for (file, text) in registry::box_files(name) {
        let f = GenFile::text(file.to_owned(), render_owned(text, &vars));
        if file == "metadata.json" {
            metadata = Some(f);
        } else {
            out.push(f);
        }
    }
    out.push(GenFile::text(
        "box.ovf".into(),
        ovf_virtualbox(vendor, vm, disk, ids)?,
    ));
    out.extend(metadata);
    Ok(out)
}

/// What the box catalogue (`flatcar_production_vagrant.json`) says of a box.
pub struct Catalogue<'a> {
    /// the image's update group (`GROUP=` of its update.conf): `stable`, ...
    pub group: &'a str,
    pub version: &'a str,
    pub url: &'a str,
    pub sha256: &'a str,
}

/// The box catalogue Flatcar's SDK writes beside the box (`vagrant box add FILE.json`).
pub fn catalogue(vendor: &Vendor, arch: Arch, c: &Catalogue<'_>) -> Result<String, String> {
    let name = vendor
        .box_template
        .as_deref()
        .ok_or_else(|| format!("vendor {}: no box_template", vendor.name))?;
    let t = template_of(&format!("box/{name}.json"))?;
    let version_id = c.version.split('+').next().unwrap_or(c.version);
    let mut vars: Vec<(String, String)> = box_vars(arch)
        .into_iter()
        .map(|(k, v)| (k, json_inner(&v)))
        .collect();
    vars.extend([
        ("GROUP".to_owned(), json_inner(c.group)),
        ("VERSION_ID".to_owned(), json_inner(version_id)),
        ("URL".to_owned(), json_inner(c.url)),
        ("CHECKSUM".to_owned(), json_inner(c.sha256)),
    ]);
    Ok(render_owned(t, &vars))
}

/// One qemu launcher + README: `type_name` is `qemu_uefi`, `qemu` or
/// `qemu_uefi_secure`; `firmware` the release's UEFI code and variables files it
/// boots with (none: BIOS).
fn qemu_launcher(
    type_name: &str,
    arch: Arch,
    version: &str,
    firmware: Option<(String, String)>,
) -> Vec<GenFile> {
    let base = format!("flatcar_production_{type_name}");
    let quoted = |f: String| format!("\"${{SCRIPT_DIR}}/{f}\"");
    // the release's firmware: raw edk2 .fd files before 4152, qcow2 since
    let format = match &firmware {
        Some((code, _)) if code.ends_with(".fd") => "raw",
        _ => "qcow2",
    };
    let (ro, rw) = match firmware {
        Some((code, vars)) => (quoted(code), quoted(vars)),
        None => (String::new(), String::new()),
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
                ("PFLASH_FORMAT", format.to_owned()),
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

/// The files `vendor.conf` asks for, for Flatcar `version` on `arch`; `ids` are the
/// VirtualBox identifiers (OVF and Vagrant box).
pub fn files(
    vendor: &Vendor,
    arch: Arch,
    version: &str,
    disk: &DiskFacts<'_>,
    ids: &VboxIds,
) -> Result<Vec<GenFile>, String> {
    let vm = vm_name(&vendor.name, version);
    Ok(match vendor.conf {
        Some(Conf::QemuUefi) => vendor
            .launcher_types(arch)
            .iter()
            .flat_map(|t| qemu_launcher(t, arch, version, vendor.firmware(t)))
            .collect(),
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
                GenFile::text(ovf.clone(), ovf_virtualbox(vendor, &vm, disk, ids)?),
                GenFile::text(
                    vendor.file_name(".README"),
                    render(
                        VIRTUALBOX_README,
                        &[("DISK", disk.file_name.to_owned()), ("OVF", ovf)],
                    ),
                ),
            ]
        }
        Some(Conf::Vagrant) => box_files(vendor, arch, &vm, disk, ids)?,
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
    })
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
            let ids = VboxIds::new("t");
            let fs = files(v, Arch::X86_64, "4593.2.5", &disk, &ids).unwrap();
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
            files(q, a, "4593.2.5+x", &disk, &VboxIds::new("t"))
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
        };
        assert!(names(Arch::X86_64).contains(&"flatcar_production_qemu.sh".to_owned()));
        assert!(!names(Arch::Arm64).contains(&"flatcar_production_qemu.sh".to_owned()));
        let arm = files(q, Arch::Arm64, "4593.2.5+x", &disk, &VboxIds::new("t")).unwrap();
        let sh = String::from_utf8(arm[0].content.clone()).unwrap();
        assert!(sh.contains("\nVM_BOARD='arm64-usr'\n"), "{sh}");
        assert!(sh.contains("\nVM_NAME='flatcar_production_qemu_uefi-4593-2-5-x'\n"));
        assert!(sh.contains(
            "\nVM_PFLASH_RO=\"${SCRIPT_DIR}/flatcar_production_qemu_uefi_efi_code.qcow2\"\n"
        ));
        assert_eq!(arm[0].mode, 0o755);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951782400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1786060799), "2026-08-06T23:59:59Z");
    }

    #[test]
    fn vbox_ids_look_like_virtualbox_s() {
        let ids = VboxIds::new("x");
        assert_eq!(ids.macs.len(), 8);
        for m in &ids.macs {
            assert!(m.starts_with("080027") && m.len() == 12, "{m}");
            assert!(m
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        }
        let u = &ids.disk_uuid;
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(ids.disk_uuid, ids.machine_uuid);
    }

    #[test]
    fn catalogue_is_json_whatever_the_values() {
        let reg = Registry::load(None).unwrap();
        for (name, ver) in [("vagrant", "4757.0.0"), ("vagrant_virtualbox", "4593.2.5")] {
            let v = reg.get(name).unwrap().for_release(Some(ver));
            let text = catalogue(
                &v,
                Arch::X86_64,
                &Catalogue {
                    group: "we\"ird\\group",
                    version: "4757.0.0+dev",
                    url: "https://h/a \"b\"/x.box",
                    sha256: "00",
                },
            )
            .unwrap();
            let j: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(j["name"], "flatcar-we\"ird\\group");
            assert_eq!(j["versions"][0]["version"], "4757.0.0");
            let p = &j["versions"][0]["providers"][0];
            assert_eq!(p["url"], "https://h/a \"b\"/x.box");
            assert_eq!(p["name"], "virtualbox");
            // the architecture field came with 4722
            assert_eq!(p["architecture"].is_null(), name == "vagrant_virtualbox");
        }
    }

    #[test]
    fn ovf_names_are_xml_escaped() {
        let reg = Registry::load(None).unwrap();
        let v = reg.get("virtualbox").unwrap();
        let disk = DiskFacts {
            file_name: "a&b<c>.vmdk",
            file_size: 1,
            capacity: 2,
        };
        let ovf = ovf_virtualbox(v, "x\"y", &disk, &VboxIds::new("t")).unwrap();
        assert!(ovf.contains("ovf:href=\"a&amp;b&lt;c&gt;.vmdk\""), "{ovf}");
        assert!(ovf.contains("ovf:id=\"x&quot;y\""), "{ovf}");
    }

    #[test]
    fn launchers_boot_the_release_s_firmware() {
        let reg = Registry::load(None).unwrap();
        let disk = DiskFacts {
            file_name: "x.img",
            file_size: 1,
            capacity: 1,
        };
        let sh = |v: &str, ver: &str, name: &str| {
            let vd = reg.get(v).unwrap().for_release(Some(ver));
            let f = files(&vd, Arch::X86_64, ver, &disk, &VboxIds::new("t")).unwrap();
            let g = f.into_iter().find(|g| g.name == name).unwrap();
            String::from_utf8(g.content).unwrap()
        };
        let lts = sh(
            "qemu_uefi",
            "4081.3.10",
            "flatcar_production_qemu_uefi_secure.sh",
        );
        assert!(lts.contains(
            "\nVM_PFLASH_RO=\"${SCRIPT_DIR}/flatcar_production_qemu_uefi_secure_efi_code.fd\"\n"
        ));
        assert!(lts.contains("\nVM_PFLASH_FORMAT='raw'\n"), "{lts}");
        let bios = sh("qemu", "3760.2.0", "flatcar_production_qemu.sh");
        assert!(bios.contains("\nVM_PFLASH_RO=\nVM_PFLASH_RW=\n"), "{bios}");
        let now = sh("qemu_uefi", "4593.2.5", "flatcar_production_qemu_uefi.sh");
        assert!(now.contains("flatcar_production_qemu_uefi_efi_vars.qcow2\"\n"));
        assert!(now.contains("\nVM_PFLASH_FORMAT='qcow2'\n"), "{now}");
    }
}
