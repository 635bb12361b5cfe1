//! End-to-end: vendor images from a fixture image and a fixture release directory,
//! judged by sgdisk, e2fsck/dumpe2fs, btrfs check/restore, tar, and the files' bytes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const VM_ROOT_SECTORS: u64 = 12943360;

/// A newer release than the default fixture: vendors whose OEM sysext is published
/// from 4722 on (virtualbox, vagrant, exoscale, cloudsigma, cloudstack, ami_vmdk,
/// oraclecloud) are made from it.
const NEWER: &str = "4757.0.0";
/// A release before 4487: base layout for ami and akamai, azure's older ROOT size.
const OLDER: &str = "4459.2.0";

/// `oem-release` as Flatcar `version` writes it for `id` (the fixture's OEM sysexts
/// carry `SYSEXT_NAME='<id> OEM'`; before 4722 the values come from Flatcar's
/// coreos-base/oem-<id> ebuilds, written by common-oem-files).
fn expected_oem_release(id: &str, version: &str) -> String {
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .expect("v");
    if major >= 4722 {
        return format!(
            "ID={id}\nNAME={id} OEM\nVERSION_ID={version}\nBUG_REPORT_URL=https://issues.flatcar.org\n"
        );
    }
    let (ver, name, home) = match (id, major >= 4487) {
        ("qemu", _) => ("0.0.2", "QEMU", "https://www.qemu.org/"),
        ("hetzner", _) => ("0", "Hetzner", "https://hetzner.com"),
        ("gce", _) => (
            "20180823-r7",
            "Google Compute Engine",
            "https://cloud.google.com/products/compute-engine/",
        ),
        ("ami", _) => ("3.3.2299.0", "Amazon EC2", "http://aws.amazon.com/ec2/"),
        ("azure", _) => (
            "2.12.0.4-r2",
            "Microsoft Azure",
            "https://azure.microsoft.com/",
        ),
        ("vmware", true) => ("13.0.5", "VMware", "https://www.vmware.com/"),
        ("vmware", false) => ("13.0.0", "VMware", "https://www.vmware.com/"),
        ("hyperv", _) => ("0.2.0", "Microsoft Hyper-V", ""),
        ("akamai", _) => ("0", "Akamai", "https://www.linode.com"),
        ("digitalocean", _) => ("0.1.1-r2", "DigitalOcean", "https://www.digitalocean.com/"),
        ("openstack", _) => ("0", "Openstack", "https://www.openstack.org/"),
        ("scaleway", _) => ("0", "Scaleway", "https://www.scaleway.com"),
        ("stackit", _) => ("0", "STACKIT", "https://stackit.cloud"),
        ("kubevirt", _) => ("0", "KubeVirt", "https://kubevirt.io/"),
        ("proxmoxve", _) => (
            "0",
            "Proxmox VE",
            "https://www.proxmox.com/en/proxmox-virtual-environment/",
        ),
        ("nutanix", _) => ("0.0.1", "Nutanix", "https://www.nutanix.com/"),
        _ => panic!("no expected oem-release for {id} {version}"),
    };
    let home = if home.is_empty() {
        String::new()
    } else {
        format!("HOME_URL=\"{home}\"\n")
    };
    format!("ID={id}\nVERSION_ID={ver}\nNAME=\"{name}\"\n{home}BUG_REPORT_URL=\"https://issues.flatcar.org\"\n")
}

struct Run {
    _dir: tempfile::TempDir,
    out: PathBuf,
}

fn vendors(vendor: &str, extra: &[&str]) -> (Run, std::process::Output) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let img = fixtures().join("current.bin");
    let rel = fixtures().join("release");
    let rel_arg = extra
        .iter()
        .position(|a| *a == "--release-dir")
        .map(|i| extra[i + 1].to_owned());
    let rel = rel_arg.map(PathBuf::from).unwrap_or(rel);
    let extra: Vec<&str> = match extra.iter().position(|a| *a == "--release-dir") {
        Some(i) => extra
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && *j != i + 1)
            .map(|(_, a)| *a)
            .collect(),
        None => extra.to_vec(),
    };
    let wasm = format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    );
    let mut args = vec![
        "--image",
        img.to_str().expect("p"),
        "--release-dir",
        rel.to_str().expect("p"),
        "--output-dir",
        out.to_str().expect("p"),
        "--vendor",
        vendor,
    ];
    args.extend_from_slice(&extra);
    args.push(&wasm);
    let o = flatbake(&args);
    (Run { _dir: dir, out }, o)
}

fn ok(vendor: &str) -> Run {
    ok_with(vendor, &[])
}

fn ok_with(vendor: &str, extra: &[&str]) -> Run {
    let (r, o) = vendors(vendor, extra);
    assert!(o.status.success(), "--vendor {vendor}: {}", stderr(&o));
    assert!(
        leftovers(&r.out).is_empty(),
        "left behind: {:?}",
        leftovers(&r.out)
    );
    r
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn guid(img: &Path, n: u32) -> String {
    let out = sh(Command::new("sgdisk").arg("-i").arg(n.to_string()).arg(img));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("Partition unique GUID"))
        .expect("guid")
        .to_owned()
}

/// The OEM tree a vendor image of the default fixture release should have.
fn assert_oem(img: &Path, id: &str, grub_id: &str) {
    assert_oem_of(img, id, grub_id, &fixtures().join("release"))
}

/// The OEM tree a vendor image of the fixture release `rel` should have.
fn assert_oem_of(img: &Path, id: &str, grub_id: &str, rel: &Path) {
    let version = std::fs::read_to_string(rel.join("version.txt"))
        .expect("version.txt")
        .lines()
        .find_map(|l| l.strip_prefix("FLATCAR_VERSION=").map(str::to_owned))
        .expect("FLATCAR_VERSION");
    let oem = oem_tree(img);
    let t = oem.path().join("tree");
    let grub = std::fs::read_to_string(t.join("grub.cfg")).expect("grub.cfg");
    assert!(grub.starts_with("# Flatcar GRUB settings\n\n"), "{grub}");
    assert!(
        grub.contains(&format!("set oem_id=\"{grub_id}\"")),
        "{grub}"
    );
    let oem_release = std::fs::read_to_string(t.join("oem-release")).expect("oem-release");
    assert_eq!(oem_release, expected_oem_release(id, &version));
    let raw = t.join(format!("sysext/oem-{id}-{version}.raw"));
    assert_eq!(
        sha256_file(&raw),
        sha256_file(&rel.join(format!("oem-{id}.raw")))
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&raw).expect("raw").mode() & 0o777, 0o644);
    assert!(t.join(format!("sysext/active-oem-{id}")).is_file());
}

#[test]
fn vm_layout_raw_vendor() {
    let r = ok("hetzner");
    assert_eq!(files(&r.out), vec!["flatcar_production_hetzner_image.bin"]);
    let img = r.out.join("flatcar_production_hetzner_image.bin");
    let input = fixtures().join("current.bin");
    sgdisk_verify(&img);
    // ROOT grown to the vm layout, disk sized to a multiple of 258048 sectors
    let (root_off, root_size) = part(&img, ROOT);
    assert_eq!(root_off, part(&input, ROOT).0);
    assert_eq!(root_size, VM_ROOT_SECTORS * 512);
    let len = std::fs::metadata(&img).expect("meta").len();
    assert_eq!(len % (258048 * 512), 0);
    assert!(len >= root_off + root_size + 33 * 512);
    // the ext4 fills the partition and is clean
    e2fsck_root(&img);
    let d = sh(Command::new("dumpe2fs")
        .arg("-h")
        .arg(format!("{}?offset={root_off}", img.display())));
    let text = String::from_utf8_lossy(&d.stdout);
    let blocks: u64 = text
        .lines()
        .find(|l| l.starts_with("Block count:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("block count");
    assert_eq!(blocks * 4096, root_size);
    // GUIDs, other partitions and boot code kept
    for n in [ESP, BIOS, USR_A, USR_B, OEM_CONFIG, ROOT] {
        assert_eq!(guid(&img, n), guid(&input, n));
    }
    for n in [ESP, BIOS, USR_A, USR_B, OEM_CONFIG] {
        let (o, s) = part(&input, n);
        assert_eq!(
            sha256_range(&input, o, s),
            sha256_range(&img, o, s),
            "partition {n} changed"
        );
    }
    assert_eq!(
        sha256_range(&input, 0, 440),
        sha256_range(&img, 0, 440),
        "MBR boot code changed"
    );
    let disk_guid = |p: &Path| {
        let o = sh(Command::new("sgdisk").arg("-p").arg(p));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.contains("Disk identifier"))
            .expect("id")
            .to_owned()
    };
    assert_eq!(disk_guid(&img), disk_guid(&input));
    // the baked sysext is there, the OEM holds the vendor's content
    assert_eq!(
        root_file(&img, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("read")
    );
    assert_oem(&img, "hetzner", "hetzner");
    // sparse: a few MiB allocated for a 6 GiB disk
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&img).expect("m").blocks() * 512 < 64 << 20);
}

#[test]
fn gce_sparse_tar() {
    let r = ok("gce");
    assert_eq!(files(&r.out), vec!["flatcar_production_gce.tar.gz"]);
    let list = sh(Command::new("tar")
        .arg("-tvzf")
        .arg(r.out.join("flatcar_production_gce.tar.gz")));
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(" disk.raw"), "{text}");
    let x = r.out.join("x");
    std::fs::create_dir(&x).expect("mkdir");
    sh(Command::new("tar")
        .arg("-xSzf")
        .arg(r.out.join("flatcar_production_gce.tar.gz"))
        .arg("-C")
        .arg(&x));
    let disk = x.join("disk.raw");
    sgdisk_verify(&disk);
    e2fsck_root(&disk);
    assert_eq!(part(&disk, ROOT).1, VM_ROOT_SECTORS * 512);
    assert_oem(&disk, "gce", "gce");
    let grub = std::fs::read_to_string(oem_tree(&disk).path().join("tree/grub.cfg")).expect("grub");
    assert!(grub.contains("serial com0 --speed=115200"), "{grub}");
}

#[test]
fn several_vendors_in_one_run_and_vendor_without_oem() {
    let r = ok("xen,ami");
    assert_eq!(
        files(&r.out),
        vec![
            "flatcar_production_ami_image.bin",
            "flatcar_production_xen.README",
            "flatcar_production_xen_image.bin",
            "flatcar_production_xen_pvgrub.cfg",
            "flatcar_production_xen_pygrub.cfg",
        ]
    );
    // ami: OEM id ec2 in grub.cfg, sysext oem-ami
    assert_oem(
        &r.out.join("flatcar_production_ami_image.bin"),
        "ami",
        "ec2",
    );
    // xen: base layout, no OEM content: OEM byte-identical to the input
    let img = r.out.join("flatcar_production_xen_image.bin");
    let input = fixtures().join("current.bin");
    assert_eq!(
        std::fs::metadata(&img).expect("m").len(),
        std::fs::metadata(&input).expect("m").len()
    );
    let (o, s) = part(&input, OEM);
    assert_eq!(sha256_range(&input, o, s), sha256_range(&img, o, s));
    let cfg =
        std::fs::read_to_string(r.out.join("flatcar_production_xen_pygrub.cfg")).expect("cfg");
    assert!(
        cfg.contains("bootloader = \"pygrub\"")
            && cfg.contains("flatcar_production_xen_image.bin,raw,xvda"),
        "{cfg}"
    );
}

fn refused(vendor: &str, extra: &[&str], want: &str) {
    let (r, o) = vendors(vendor, extra);
    assert!(!o.status.success(), "--vendor {vendor} succeeded");
    let err = stderr(&o);
    assert!(err.contains(want), "--vendor {vendor}: {err}");
    assert!(
        files(&r.out).is_empty(),
        "outputs left: {:?}",
        files(&r.out)
    );
}

#[test]
fn vendor_errors() {
    refused("nosuchcloud", &[], "unknown vendor 'nosuchcloud'");
    refused("pxe", &[], "vendor 'pxe' cannot be made by flatbake");
    // an OEM sysext of another release would be refused at boot
    refused(
        "hetzner",
        &["--flatcar-version", "4000.0.0"],
        "OEM sysext is for Flatcar 4593.2.5 but the image is 4000.0.0",
    );
    // a release directory without the OEM sysext
    let empty = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        fixtures().join("release/version.txt"),
        empty.path().join("version.txt"),
    )
    .expect("cp");
    refused(
        "hetzner",
        &["--release-dir", empty.path().to_str().expect("p")],
        "oem-hetzner.raw: missing",
    );
}

#[test]
fn vendors_are_listed() {
    let o = flatbake(&["vendors"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for v in [
        "qemu_uefi",
        "azure",
        "gce",
        "vmware_ova",
        "vagrant",
        "hyperv_vhdx",
        "exoscale",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(v)),
            "{v} missing: {text}"
        );
    }
    assert!(text
        .lines()
        .any(|l| l.starts_with("pxe") && l.contains("not supported")));
}

/// `qemu-img info --output=json` of `img` read as `fmt`.
fn qemu_info(img: &Path, fmt: &str) -> serde_json::Value {
    let o = sh(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", fmt])
        .arg(img));
    serde_json::from_slice(&o.stdout).expect("json")
}

/// Judge a vendor disk in `fmt` with qemu-img, then its raw conversion with our judges.
fn judge_disk(
    img: &Path,
    fmt: &str,
    checkable: bool,
    virtual_size: u64,
    root_sectors: u64,
    oem: (&str, &str),
) {
    judge_disk_of(
        img,
        fmt,
        checkable,
        virtual_size,
        root_sectors,
        oem,
        &fixtures().join("release"),
    )
}

/// [`judge_disk`] for an image of the fixture release `rel`.
fn judge_disk_of(
    img: &Path,
    fmt: &str,
    checkable: bool,
    virtual_size: u64,
    root_sectors: u64,
    oem: (&str, &str),
    rel: &Path,
) {
    let info = qemu_info(img, fmt);
    assert_eq!(
        info["virtual-size"].as_u64(),
        Some(virtual_size),
        "{}: {info}",
        img.display()
    );
    if checkable {
        sh(Command::new("qemu-img").args(["check", "-f", fmt]).arg(img));
    }
    let raw = img.with_extension("converted.raw");
    sh(Command::new("qemu-img")
        .args(["convert", "-f", fmt, "-O", "raw"])
        .arg(img)
        .arg(&raw));
    sh(Command::new("qemu-img")
        .args(["compare", "-f", fmt, "-F", "raw"])
        .arg(img)
        .arg(&raw));
    sgdisk_verify(&raw);
    e2fsck_root(&raw);
    assert_eq!(part(&raw, ROOT).1, root_sectors * 512, "{}", img.display());
    assert_oem_of(&raw, oem.0, oem.1, rel);
    assert_eq!(
        root_file(&raw, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("read")
    );
    std::fs::remove_file(&raw).expect("rm");
}

fn tar_list(t: &Path, gz: bool) -> Vec<String> {
    let o = sh(Command::new("tar")
        .arg(if gz { "-tzf" } else { "-tf" })
        .arg(t));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn vm_disk_bytes() -> u64 {
    let (start, _) = part(&fixtures().join("current.bin"), ROOT);
    (start / 512 + VM_ROOT_SECTORS + 33).div_ceil(258048) * 258048 * 512
}

#[test]
fn qcow2_vmdk_vhd_vhdx_vendors_in_one_run() {
    let rel = release(NEWER);
    let r = ok_with(
        "qemu_uefi,exoscale,hyperv,hyperv_vhdx,vmware,virtualbox",
        &["--release-dir", rel.to_str().expect("p")],
    );
    let f = files(&r.out);
    for want in [
        "flatcar_production_qemu_uefi_image.img",
        "flatcar_production_qemu_uefi.sh",
        "flatcar_production_qemu_uefi.README",
        "flatcar_production_qemu_uefi_efi_code.qcow2",
        "flatcar_production_qemu_uefi_efi_vars.qcow2",
        "flatcar_production_exoscale_image.qcow2",
        "flatcar_production_hyperv_image.vhd",
        "flatcar_production_hyperv_vhdx_image.vhdx",
        "flatcar_production_vmware_image.vmdk",
        "flatcar_production_vmware.vmx",
        "flatcar_production_virtualbox_image.vmdk",
        "flatcar_production_virtualbox.ovf",
    ] {
        assert!(f.contains(&want.to_owned()), "{want} missing: {f:?}");
    }
    let base = std::fs::metadata(fixtures().join("current.bin"))
        .expect("m")
        .len();
    let base_root = part(&fixtures().join("current.bin"), ROOT).1 / 512;
    let q = r.out.join("flatcar_production_qemu_uefi_image.img");
    assert_eq!(
        qemu_info(&q, "qcow2")["format-specific"]["data"]["compat"].as_str(),
        Some("0.10")
    );
    judge_disk_of(
        &q,
        "qcow2",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("qemu", "qemu"),
        &rel,
    );
    judge_disk_of(
        &r.out.join("flatcar_production_exoscale_image.qcow2"),
        "qcow2",
        true,
        10 << 30,
        base_root,
        ("exoscale", "exoscale"),
        &rel,
    );
    judge_disk_of(
        &r.out.join("flatcar_production_hyperv_image.vhd"),
        "vpc",
        false,
        base,
        base_root,
        ("hyperv", "hyperv"),
        &rel,
    );
    judge_disk_of(
        &r.out.join("flatcar_production_hyperv_vhdx_image.vhdx"),
        "vhdx",
        true,
        base,
        base_root,
        ("hyperv", "hyperv"),
        &rel,
    );
    let vmdk = r.out.join("flatcar_production_vmware_image.vmdk");
    judge_disk_of(
        &vmdk,
        "vmdk",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("vmware", "vmware"),
        &rel,
    );
    assert_eq!(
        qemu_info(&vmdk, "vmdk")["format-specific"]["data"]["create-type"].as_str(),
        Some("monolithicSparse")
    );
    let vmx = std::fs::read_to_string(r.out.join("flatcar_production_vmware.vmx")).expect("vmx");
    assert!(
        vmx.contains("scsi0:0.fileName = \"flatcar_production_vmware_image.vmdk\""),
        "{vmx}"
    );
    let script =
        std::fs::read_to_string(r.out.join("flatcar_production_qemu_uefi.sh")).expect("sh");
    assert!(
        script.contains("flatcar_production_qemu_uefi_image.img")
            && script.contains("_efi_code.qcow2")
    );
    sh(Command::new("bash")
        .arg("-n")
        .arg(r.out.join("flatcar_production_qemu_uefi.sh")));
}

#[test]
fn azure_fixed_vhd_and_bundles() {
    let rel = release(NEWER);
    let r = ok_with(
        "azure,vmware_ova,vagrant",
        &["--release-dir", rel.to_str().expect("p")],
    );
    assert_eq!(
        files(&r.out),
        vec![
            "flatcar_production_azure_image.vhd",
            "flatcar_production_vagrant.box",
            "flatcar_production_vagrant.json",
            "flatcar_production_vmware_ova.ova",
            "flatcar_production_vmware_ova.ovf",
            "flatcar_production_vmware_ova_image.vmdk",
        ]
    );
    let (start, _) = part(&fixtures().join("current.bin"), ROOT);
    let azure_disk = (start / 512 + 50876416 + 33).div_ceil(258048) * 258048 * 512;
    let vhd = r.out.join("flatcar_production_azure_image.vhd");
    judge_disk_of(
        &vhd,
        "vpc",
        false,
        azure_disk,
        50876416,
        ("azure", "azure"),
        &rel,
    );
    // fixed VHD: the raw disk followed by a 512-byte footer
    assert_eq!(std::fs::metadata(&vhd).expect("m").len(), azure_disk + 512);
    assert_eq!(
        qemu_info(&vhd, "vpc")["format-specific"]["data"]["subformat"]
            .as_str()
            .unwrap_or("fixed"),
        "fixed"
    );

    let ova = r.out.join("flatcar_production_vmware_ova.ova");
    assert_eq!(
        tar_list(&ova, false),
        vec![
            "flatcar_production_vmware_ova.ovf",
            "flatcar_production_vmware_ova.mf",
            "flatcar_production_vmware_ova_image.vmdk"
        ]
    );
    let x = r.out.join("ova");
    std::fs::create_dir(&x).expect("mkdir");
    sh(Command::new("tar").arg("-xf").arg(&ova).arg("-C").arg(&x));
    let mf = std::fs::read_to_string(x.join("flatcar_production_vmware_ova.mf")).expect("mf");
    sh(Command::new("sh").arg("-c").arg(format!(
        "cd {} && sha1sum flatcar_production_vmware_ova_image.vmdk flatcar_production_vmware_ova.ovf | awk '{{print \"SHA1(\" $2 \")= \" $1}}' > expected.mf",
        x.display()
    )));
    assert_eq!(
        mf,
        std::fs::read_to_string(x.join("expected.mf")).expect("mf")
    );
    let vmdk = x.join("flatcar_production_vmware_ova_image.vmdk");
    assert_eq!(
        qemu_info(&vmdk, "vmdk")["format-specific"]["data"]["create-type"].as_str(),
        Some("streamOptimized")
    );
    judge_disk_of(
        &vmdk,
        "vmdk",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("vmware", "vmware"),
        &rel,
    );
    let ovf = std::fs::read_to_string(x.join("flatcar_production_vmware_ova.ovf")).expect("ovf");
    assert!(
        ovf.contains(&format!("ovf:capacity=\"{}\"", vm_disk_bytes())),
        "{ovf}"
    );
    assert!(
        ovf.contains(&format!(
            "ovf:size=\"{}\"",
            std::fs::metadata(&vmdk).expect("m").len()
        )),
        "{ovf}"
    );

    let boxf = r.out.join("flatcar_production_vagrant.box");
    let list = tar_list(&boxf, true);
    for m in [
        "./Vagrantfile",
        "./box.ovf",
        "./metadata.json",
        "./flatcar_production_vagrant_image.vmdk",
    ] {
        assert!(list.contains(&m.to_owned()), "{m} not in the box: {list:?}");
    }
}

#[test]
fn every_other_vendor_builds_and_carries_its_oem() {
    let base_root = part(&fixtures().join("current.bin"), ROOT).1 / 512;
    let base = std::fs::metadata(fixtures().join("current.bin"))
        .expect("m")
        .len();
    // (vendor, disk file, qemu-img format, checkable, vm layout?, oem id, grub oem id)
    let cases = [
        (
            "openstack",
            "flatcar_production_openstack_image.img",
            "qcow2",
            true,
            true,
            "openstack",
            "openstack",
        ),
        (
            "openstack_mini",
            "flatcar_production_openstack_mini_image.img",
            "qcow2",
            true,
            false,
            "openstack",
            "openstack",
        ),
        (
            "oraclecloud",
            "flatcar_production_oraclecloud_image.img",
            "qcow2",
            true,
            true,
            "oraclecloud",
            "oraclecloud",
        ),
        (
            "scaleway",
            "flatcar_production_scaleway_image.qcow2",
            "qcow2",
            true,
            true,
            "scaleway",
            "scaleway",
        ),
        (
            "stackit",
            "flatcar_production_stackit_image.img",
            "qcow2",
            true,
            true,
            "stackit",
            "openstack",
        ),
        (
            "kubevirt",
            "flatcar_production_kubevirt_image.qcow2",
            "qcow2",
            true,
            true,
            "kubevirt",
            "kubevirt",
        ),
        (
            "proxmoxve",
            "flatcar_production_proxmoxve_image.img",
            "qcow2",
            true,
            true,
            "proxmoxve",
            "proxmoxve",
        ),
        (
            "nutanix",
            "flatcar_production_nutanix_image.img",
            "qcow2",
            true,
            true,
            "nutanix",
            "nutanix",
        ),
        (
            "cloudsigma",
            "flatcar_production_cloudsigma_image.img",
            "qcow2",
            true,
            false,
            "cloudsigma",
            "cloudsigma",
        ),
        (
            "cloudstack",
            "flatcar_production_cloudstack_image.bin",
            "raw",
            false,
            false,
            "cloudstack",
            "cloudstack",
        ),
        (
            "cloudstack_vhd",
            "flatcar_production_cloudstack_vhd_image.vhd",
            "vpc",
            false,
            false,
            "cloudstack",
            "cloudstack",
        ),
        (
            "digitalocean",
            "flatcar_production_digitalocean_image.bin",
            "raw",
            false,
            false,
            "digitalocean",
            "digitalocean",
        ),
        (
            "vmware_raw",
            "flatcar_production_vmware_raw_image.bin",
            "raw",
            false,
            false,
            "vmware",
            "vmware",
        ),
        (
            "ami_vmdk",
            "flatcar_production_ami_vmdk_image.vmdk",
            "vmdk",
            true,
            true,
            "ami",
            "ec2",
        ),
        (
            "akamai",
            "flatcar_production_akamai_image.bin",
            "raw",
            false,
            true,
            "akamai",
            "akamai",
        ),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let rel = release(NEWER);
    let r = ok_with(
        &names.join(","),
        &["--release-dir", rel.to_str().expect("p")],
    );
    assert_eq!(files(&r.out).len(), cases.len(), "{:?}", files(&r.out));
    for (vendor, file, fmt, checkable, vm, oem, grub) in cases {
        let (size, root) = if vm {
            (vm_disk_bytes(), VM_ROOT_SECTORS)
        } else {
            (base, base_root)
        };
        judge_disk_of(
            &r.out.join(file),
            fmt,
            checkable,
            size,
            root,
            (oem, grub),
            &rel,
        );
        let _ = vendor;
    }
}

/// The default path is rootless for vendor images too: layout growth, OEM rebuild
/// (under fakeroot), disk formats and bundles as `nobody`.
#[test]
fn vendor_images_as_nobody() {
    let dir = tempfile::tempdir().expect("tmp");
    sh(Command::new("chmod").arg("0777").arg(dir.path()));
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .arg("--image")
        .arg(fixtures().join("current.bin"))
        .arg("--release-dir")
        .arg(fixtures().join("release"))
        .arg("--output-dir")
        .arg(dir.path())
        .args(["--vendor", "qemu_uefi,gce"])
        .arg(format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ))
        .env("HOME", dir.path())
        .env("TMPDIR", dir.path())
        .output()
        .expect("setpriv");
    assert!(
        o.status.success(),
        "rootless vendor run failed: {}",
        stderr(&o)
    );
    use std::os::unix::fs::MetadataExt;
    let img = dir.path().join("flatcar_production_qemu_uefi_image.img");
    assert_eq!(
        std::fs::metadata(&img).expect("m").uid(),
        65534,
        "did not run unprivileged"
    );
    judge_disk(
        &img,
        "qcow2",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("qemu", "qemu"),
    );
    // files written into OEM by an unprivileged run are still owned by root
    let raw = dir.path().join("q.raw");
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&img)
        .arg(&raw));
    let oem = oem_tree(&raw);
    let m = std::fs::metadata(oem.path().join("tree/sysext/oem-qemu-4593.2.5.raw"))
        .expect("oem sysext");
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_eq!(
        root_owner_mode(&raw, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"),
        ("0644".to_owned(), 0, 0)
    );
    assert!(dir.path().join("flatcar_production_gce.tar.gz").is_file());
}

/// Stub `qemu-system-*` (records its arguments, one per line, and the config drive's
/// user_data), `uname`, `getconf` and `swtpm` on PATH for the launcher tests.
fn launcher_stubs(dir: &Path) -> PathBuf {
    let stub = dir.join("stub");
    std::fs::create_dir_all(&stub).expect("mkdir");
    let qemu = "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$STUB_OUT\"\nfor a in \"$@\"; do case \"$a\" in local,*path=*) p=${a##*path=}; cp \"$p/openstack/latest/user_data\" \"$STUB_OUT.user_data\";; esac; done\n";
    for (name, text) in [
        ("qemu-system-x86_64", qemu),
        ("qemu-system-aarch64", qemu),
        ("uname", "#!/bin/sh\necho \"$STUB_UNAME\"\n"),
        ("getconf", "#!/bin/sh\necho 8\n"),
        ("swtpm", "#!/bin/sh\nexit 0\n"),
    ] {
        let p = stub.join(name);
        std::fs::write(&p, text).expect("stub");
        sh(Command::new("chmod").arg("0755").arg(&p));
    }
    stub
}

/// Run `script` with the stubs as if on a `uname` host; the qemu arguments (or the
/// exit code and output when qemu was not started).
fn launch(script: &Path, uname: &str, args: &[&str]) -> Result<(Vec<String>, String), String> {
    let dir = script.parent().expect("dir");
    let stub = launcher_stubs(dir);
    let out = dir.join("qemu.args");
    let _ = std::fs::remove_file(&out);
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    // output to files, not pipes: the launcher's swtpm watchdog outlives it until
    // its /proc entry is reaped, so reading pipes to their end would wait forever
    let log = dir.join("launcher.log");
    let logf = std::fs::File::create(&log).expect("log");
    let status = Command::new("bash")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", stub.display()))
        .env("HOME", &home)
        .env("STUB_UNAME", uname)
        .env("STUB_OUT", &out)
        .stdin(std::process::Stdio::null())
        .stdout(logf.try_clone().expect("log"))
        .stderr(logf)
        .status()
        .expect("run launcher");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    match std::fs::read_to_string(&out) {
        Ok(a) if status.success() => {
            let user_data =
                std::fs::read_to_string(dir.join("qemu.args.user_data")).unwrap_or_default();
            let _ = std::fs::remove_file(dir.join("qemu.args.user_data"));
            // the config drive is a fresh temporary directory
            let args = a
                .lines()
                .map(|l| match l.find("path=/tmp/") {
                    Some(i) if l.starts_with("local,") => format!("{}path=TMP", &l[..i]),
                    _ => l.to_owned(),
                })
                .collect();
            Ok((args, user_data))
        }
        _ => Err(format!("{:?}: {text}", status.code())),
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The qemu_uefi vendor writes Flatcar's qemu, qemu_uefi and qemu_uefi_secure files,
/// and its launchers pass qemu what Flatcar's `flatcar_production_qemu*.sh` pass for
/// the same options (argument lists taken from running Flatcar's
/// build_library/qemu_template.sh against the same stubs).
#[test]
fn qemu_launchers_take_flatcar_options() {
    let r = ok("qemu_uefi");
    assert_eq!(
        files(&r.out),
        vec![
            "flatcar_production_qemu.README",
            "flatcar_production_qemu.sh",
            "flatcar_production_qemu_image.img",
            "flatcar_production_qemu_uefi.README",
            "flatcar_production_qemu_uefi.sh",
            "flatcar_production_qemu_uefi_efi_code.qcow2",
            "flatcar_production_qemu_uefi_efi_vars.qcow2",
            "flatcar_production_qemu_uefi_image.img",
            "flatcar_production_qemu_uefi_secure.README",
            "flatcar_production_qemu_uefi_secure.sh",
            "flatcar_production_qemu_uefi_secure_efi_code.qcow2",
            "flatcar_production_qemu_uefi_secure_efi_vars.qcow2",
            "flatcar_production_qemu_uefi_secure_image.img",
        ]
    );
    for l in [
        "flatcar_production_qemu_image.img",
        "flatcar_production_qemu_uefi_secure_image.img",
    ] {
        assert_eq!(
            std::fs::read_link(r.out.join(l)).expect("symlink"),
            PathBuf::from("flatcar_production_qemu_uefi_image.img")
        );
    }
    for f in ["efi_code", "efi_vars"] {
        let name = format!("flatcar_production_qemu_uefi_secure_{f}.qcow2");
        assert_eq!(
            sha256_file(&r.out.join(&name)),
            sha256_file(&fixtures().join("release").join(&name))
        );
    }
    let d = r.out.display().to_string();
    let sh = r.out.join("flatcar_production_qemu_uefi.sh");
    let name = "flatcar_production_qemu_uefi-4593-2-5";
    let head = |mem: &str, fwd: &str, port: &str, n: &str| {
        words(&format!(
            "-name {n} -m {mem} -netdev user,id=eth0{fwd},hostfwd=tcp::{port}-:22,hostname={n} -device virtio-net-pci,netdev=eth0 -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0"
        ))
    };
    let kvm = words("-machine q35,accel=kvm:hvf:tcg,smm=on -cpu host -smp 8 -global ICH9-LPC.disable_s3=1 -global driver=cfi.pflash01,property=secure,value=on");
    let pflash = |t: &str| {
        words(&format!("-drive if=pflash,unit=0,file={d}/flatcar_production_{t}_efi_code.qcow2,format=qcow2,readonly=on -drive if=pflash,unit=1,file={d}/flatcar_production_{t}_efi_vars.qcow2,format=qcow2"))
    };
    let fsdev = words("-fsdev local,id=conf,security_model=none,readonly=on,path=TMP -device virtio-9p-pci,fsdev=conf,mount_tag=config-2");
    let keys = r.out.join("keys.pub");
    std::fs::write(&keys, "ssh-ed25519 AAAAC3 me@host\n").expect("keys");
    let k = keys.to_str().expect("p");

    // -a -p -f -M -d -D -i and qemu options after --
    let (args, user_data) = launch(
        &sh,
        "x86_64",
        &[
            "-a",
            k,
            "-p",
            "2223",
            "-f",
            "8080:80",
            "-f",
            "9090:90",
            "-M",
            "4096",
            "-d",
            "/tmp/d1",
            "-d",
            "/tmp/d2,serial=x",
            "-D",
            "serial=primary",
            "-i",
            "ign.json",
            "--",
            "-display",
            "none",
        ],
    )
    .expect("launch");
    let mut want = head(
        "4096",
        ",hostfwd=tcp::8080-:80,hostfwd=tcp::9090-:90",
        "2223",
        name,
    );
    want.extend(words(
        "-fw_cfg name=opt/org.flatcar-linux/config,file=ign.json",
    ));
    want.extend(pflash("qemu_uefi"));
    want.extend(words("-drive if=none,id=flatcar-extra-disk-2,file=/tmp/d2 -device virtio-blk-pci,drive=flatcar-extra-disk-2,serial=x -drive if=none,id=flatcar-extra-disk-1,file=/tmp/d1 -device virtio-blk-pci,drive=flatcar-extra-disk-1"));
    want.extend(words(&format!("-drive if=none,id=blk,file={d}/flatcar_production_qemu_uefi_image.img -device virtio-blk-pci,drive=blk,bootindex=1,serial=primary")));
    want.extend(fsdev.clone());
    want.extend(kvm.clone());
    want.extend(words("-display none"));
    assert_eq!(args, want);
    assert_eq!(
        user_data,
        "#cloud-config\nssh_authorized_keys:\n - ssh-ed25519 AAAAC3 me@host\n"
    );

    // -s -c -I -K -r -R -W -T
    let tpm = r.out.join("tpm");
    let (args, _) = launch(
        &sh,
        "x86_64",
        &[
            "-s",
            "-c",
            "config.img",
            "-I",
            "other.img",
            "-K",
            "kern",
            "-r",
            "initrd",
            "-R",
            "ro.fd",
            "-W",
            "rw.fd",
            "-T",
            tpm.to_str().expect("p"),
        ],
    )
    .expect("launch");
    let mut want = head("2048", "", "2222", name);
    want.extend(words(&format!("-drive if=pflash,unit=0,file=ro.fd,format=qcow2,readonly=on -drive if=pflash,unit=1,file=rw.fd,format=qcow2 -initrd initrd -kernel kern -drive if=none,id=blk,file=other.img -device virtio-blk-pci,drive=blk,bootindex=1 -drive if=virtio,file=config.img -machine accel=tcg -chardev socket,id=chrtpm,path={}/socket -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0", tpm.display())));
    assert_eq!(args, want);

    // -u user-data; an amd64 image on another host is emulated
    let ud = r.out.join("user-data");
    std::fs::write(&ud, "#!/bin/sh\necho hi\n").expect("ud");
    let (args, user_data) =
        launch(&sh, "ppc64le", &["-u", ud.to_str().expect("p")]).expect("launch");
    let mut want = head("2048", "", "2222", name);
    want.extend(pflash("qemu_uefi"));
    want.extend(words(&format!("-drive if=none,id=blk,file={d}/flatcar_production_qemu_uefi_image.img -device virtio-blk-pci,drive=blk,bootindex=1")));
    want.extend(fsdev.clone());
    want.extend(words("-machine q35 -cpu kvm64 -smp 1 -nographic"));
    assert_eq!(args, want);
    assert_eq!(user_data, "#!/bin/sh\necho hi\n");

    // refusals, as Flatcar's script refuses
    let e = launch(&sh, "x86_64", &["-u", "x", "-a", "y"]).unwrap_err();
    assert!(e.contains("cannot be combined"), "{e}");
    let e = launch(&sh, "x86_64", &["-D", "bootindex=2"]).unwrap_err();
    assert!(e.contains("Can't override drive or bootindex"), "{e}");

    // the BIOS launcher: no firmware; the Secure Boot one: its own firmware and image
    let (args, _) = launch(&r.out.join("flatcar_production_qemu.sh"), "x86_64", &[]).expect("q");
    let mut want = head("2048", "", "2222", "flatcar_production_qemu-4593-2-5");
    want.extend(words(&format!("-drive if=none,id=blk,file={d}/flatcar_production_qemu_image.img -device virtio-blk-pci,drive=blk,bootindex=1")));
    want.extend(fsdev.clone());
    want.extend(kvm.clone());
    assert_eq!(args, want);
    let (args, _) = launch(
        &r.out.join("flatcar_production_qemu_uefi_secure.sh"),
        "x86_64",
        &[],
    )
    .expect("q");
    let mut want = head(
        "2048",
        "",
        "2222",
        "flatcar_production_qemu_uefi_secure-4593-2-5",
    );
    want.extend(pflash("qemu_uefi_secure"));
    want.extend(words(&format!("-drive if=none,id=blk,file={d}/flatcar_production_qemu_uefi_secure_image.img -device virtio-blk-pci,drive=blk,bootindex=1")));
    want.extend(fsdev.clone());
    want.extend(kvm);
    assert_eq!(args, want);

    // arm64 boards: the same script with VM_BOARD='arm64-usr' runs qemu-system-aarch64
    let text = std::fs::read_to_string(&sh).expect("sh");
    assert!(text.contains("\nVM_BOARD='amd64-usr'\n"));
    let arm = r.out.join("arm64.sh");
    std::fs::write(
        &arm,
        text.replace("VM_BOARD='amd64-usr'", "VM_BOARD='arm64-usr'"),
    )
    .expect("w");
    for (host, machine) in [
        (
            "aarch64",
            "-machine virt,accel=kvm:hvf:tcg,gic-version=3 -cpu host -smp 8 -nographic",
        ),
        ("x86_64", "-machine virt -cpu cortex-a57 -smp 4 -nographic"),
    ] {
        let (args, _) = launch(&arm, host, &["-T", tpm.to_str().expect("p")]).expect("arm");
        let mut want = head("2048", "", "2222", name);
        want.extend(pflash("qemu_uefi"));
        want.extend(words(&format!("-drive if=none,id=blk,file={d}/flatcar_production_qemu_uefi_image.img -device virtio-blk-pci,drive=blk,bootindex=1")));
        want.extend(fsdev.clone());
        want.extend(words(machine));
        want.extend(words(&format!("-chardev socket,id=chrtpm,path={}/socket -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis-device,tpmdev=tpm0", tpm.display())));
        assert_eq!(args, want, "arm64 on {host}");
    }
}

/// VMware: the vmx and the OVA's OVF as Flatcar's templates have them.
#[test]
fn vmware_configs_like_flatcar() {
    let r = ok("vmware,vmware_ova");
    let vmx = std::fs::read_to_string(r.out.join("flatcar_production_vmware.vmx")).expect("vmx");
    for line in [
        "#!/usr/bin/vmware",
        "virtualHW.version = \"11\"",
        "displayName = \"flatcar_production_vmware-4593-2-5\"",
        "memsize = \"2048\"",
        "scsi0.virtualDev = \"pvscsi\"",
        "scsi0:0.fileName = \"flatcar_production_vmware_image.vmdk\"",
        "pciBridge7.functions = \"8\"",
        "guestOS = \"other26xlinux-64\"",
    ] {
        assert!(vmx.lines().any(|l| l == line), "{line} not in:\n{vmx}");
    }
    let ovf = std::fs::read_to_string(r.out.join("flatcar_production_vmware_ova.ovf")).expect("o");
    for s in [
        "<VirtualHardwareSection ovf:transport=\"com.vmware.guestInfo\">",
        "<vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>",
        "<rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>",
        "<rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>",
        "vmw:osType=\"other3xLinux64Guest\"",
        "<Info>Flatcar Container Linux Virtual Appliance</Info>",
        "ovf:populatedSize=\"0\"",
    ] {
        assert!(ovf.contains(s), "{s} not in the OVF");
    }
    // every guestinfo property of Flatcar's template, with its default
    let props: Vec<(String, String)> = ovf
        .split("<Property ")
        .skip(1)
        .map(|p| {
            let attr = |k: &str| {
                let i = p.find(&format!("{k}=\"")).expect("attr") + k.len() + 2;
                p[i..].split('"').next().expect("v").to_owned()
            };
            (attr("ovf:key"), attr("ovf:value"))
        })
        .collect();
    let mut want: Vec<(String, String)> = [
        "hostname",
        "ignition.config.data",
        "ignition.config.data.encoding",
        "ignition.config.url",
        "dns.server.0",
        "dns.server.1",
        "interface.0.name",
        "interface.0.mac",
        "interface.0.dhcp=no",
        "interface.0.role=public",
        "interface.0.ip.0.address",
        "interface.0.ip.1.address",
        "interface.0.route.0.gateway",
        "interface.0.route.0.destination",
        "interface.0.route.1.gateway",
        "interface.0.route.1.destination",
        "interface.1.name",
        "interface.1.mac",
        "interface.1.dhcp=no",
        "interface.1.role=private",
        "interface.1.ip.0.address",
        "interface.1.route.0.gateway",
        "interface.1.route.0.destination",
    ]
    .iter()
    .map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (format!("guestinfo.{k}"), v.to_owned())
    })
    .collect();
    let mut have = props;
    want.sort();
    have.sort();
    assert_eq!(have, want);
    // the published vmdk is the one inside the ova
    let x = r.out.join("x");
    std::fs::create_dir(&x).expect("mkdir");
    sh(Command::new("tar")
        .arg("-xf")
        .arg(r.out.join("flatcar_production_vmware_ova.ova"))
        .arg("-C")
        .arg(&x));
    for f in [
        "flatcar_production_vmware_ova_image.vmdk",
        "flatcar_production_vmware_ova.ovf",
    ] {
        assert_eq!(sha256_file(&x.join(f)), sha256_file(&r.out.join(f)), "{f}");
    }
}

/// A release before 4487: ami and akamai used the base layout, azure's ROOT was
/// 58875904 sectors, oem-release came from the OEM package, ami's and gce's grub.cfg
/// were written by common-oem-files.
#[test]
fn pre_4487_release_facts() {
    let rel = release(OLDER);
    let input = fixtures().join("current.bin");
    let base = std::fs::metadata(&input).expect("m").len();
    let base_root = part(&input, ROOT).1 / 512;
    let r = ok_with(
        "ami,azure,qemu_uefi,gce",
        &["--release-dir", rel.to_str().expect("p")],
    );
    let ami = r.out.join("flatcar_production_ami_image.bin");
    sgdisk_verify(&ami);
    e2fsck_root(&ami);
    assert_eq!(std::fs::metadata(&ami).expect("m").len(), base);
    assert_eq!(part(&ami, ROOT).1 / 512, base_root);
    assert_oem_of(&ami, "ami", "ec2", &rel);
    let grub = std::fs::read_to_string(oem_tree(&ami).path().join("tree/grub.cfg")).expect("g");
    assert!(
        grub.starts_with("# Flatcar GRUB settings\n\nset oem_id=\"ec2\"\n# Flatcar GRUB settings for AMI\n\n# Blacklist"),
        "{grub}"
    );
    let (start, _) = part(&input, ROOT);
    let azure_disk = (start / 512 + 58875904 + 33).div_ceil(258048) * 258048 * 512;
    judge_disk_of(
        &r.out.join("flatcar_production_azure_image.vhd"),
        "vpc",
        false,
        azure_disk,
        58875904,
        ("azure", "azure"),
        &rel,
    );
    judge_disk_of(
        &r.out.join("flatcar_production_qemu_uefi_image.img"),
        "qcow2",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("qemu", "qemu"),
        &rel,
    );
    let x = r.out.join("x");
    std::fs::create_dir(&x).expect("mkdir");
    sh(Command::new("tar")
        .arg("-xSzf")
        .arg(r.out.join("flatcar_production_gce.tar.gz"))
        .arg("-C")
        .arg(&x));
    let grub = std::fs::read_to_string(oem_tree(&x.join("disk.raw")).path().join("tree/grub.cfg"))
        .expect("g");
    assert_eq!(
        grub,
        "# Flatcar GRUB settings\n\nset oem_id=\"gce\"\n# GCE only has a serial console.\nset linux_console=\"console=ttyS0,115200n8\"\nserial com0 --speed=115200 --word=8 --parity=no\nterminal_input serial_com0\nterminal_output serial_com0\n"
    );
}

/// Release-dependent refusals name the releases that have what is asked for; arm64
/// refusals come before anything is downloaded.
#[test]
fn release_and_architecture_refusals() {
    // 4593 publishes no oem-exoscale.raw (its OEM came from a package of programs)
    refused(
        "exoscale",
        &[],
        "4722 and later ship oem-exoscale.raw: use --release 4722 or later",
    );
    // packet is gone from 4722 on
    let newer = release(NEWER);
    refused(
        "packet",
        &["--release-dir", newer.to_str().expect("p")],
        "releases 2512-4694 did",
    );
    refused("rackspace", &[], "2512-4694");
    refused("parallels", &[], "cannot be made by flatbake");
    refused("qemu", &[], "pass --vendor qemu_uefi");
    // oraclecloud is new in 4722
    refused("oraclecloud", &[], "from release 4722 on");
    // amd64-only vendors, refused by architecture up front: no request reaches the
    // (closed) release server
    let dir = tempfile::tempdir().expect("tmp");
    let o = Command::new(BIN)
        .args([
            "--release",
            "4593.2.5",
            "--arch",
            "arm64",
            "--vendor",
            "azure,gce,vmware_ova",
        ])
        .arg("--output-dir")
        .arg(dir.path())
        .args(["--image-cache"])
        .arg(dir.path().join("cache"))
        .env(
            "FLATBAKE_RELEASE_URL",
            "http://127.0.0.1:9/{board}/{version}/",
        )
        .env(
            "FLATBAKE_RELEASES_JSON_URL",
            "http://127.0.0.1:9/releases.json",
        )
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("vendor 'gce': Flatcar builds it for x86-64 only, not arm64")
            && err.contains("vendor 'vmware_ova'")
            && !err.contains("vendor 'azure'")
            && !err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(!dir.path().join("cache").exists());
}

/// --compress writes Flatcar's compressed names; --force looks only at the names the
/// vendors write.
#[test]
fn compressed_copies_and_exact_force_check() {
    let r = ok_with("hyperv,qemu_uefi", &["--compress", "zip,bz2"]);
    let f = files(&r.out);
    assert!(
        f.contains(&"flatcar_production_hyperv_image.vhd.zip".to_owned()),
        "{f:?}"
    );
    assert!(
        !f.contains(&"flatcar_production_hyperv_image.vhd".to_owned()),
        "{f:?}"
    );
    assert!(
        f.contains(&"flatcar_production_qemu_uefi_image.img.bz2".to_owned()),
        "{f:?}"
    );
    assert!(
        f.contains(&"flatcar_production_qemu_uefi_efi_code.qcow2.zip".to_owned()),
        "{f:?}"
    );
    assert!(
        f.contains(&"flatcar_production_qemu_uefi.sh".to_owned()),
        "{f:?}"
    );
    assert_eq!(
        std::fs::read_link(r.out.join("flatcar_production_qemu_image.img.bz2")).expect("l"),
        PathBuf::from("flatcar_production_qemu_uefi_image.img.bz2")
    );
    sh(Command::new("unzip")
        .arg("-tq")
        .arg(r.out.join("flatcar_production_hyperv_image.vhd.zip")));
    let x = r.out.join("x");
    std::fs::create_dir(&x).expect("mkdir");
    sh(Command::new("unzip")
        .arg("-q")
        .arg(r.out.join("flatcar_production_hyperv_image.vhd.zip"))
        .arg("-d")
        .arg(&x));
    judge_disk(
        &x.join("flatcar_production_hyperv_image.vhd"),
        "vpc",
        false,
        std::fs::metadata(fixtures().join("current.bin"))
            .expect("m")
            .len(),
        part(&fixtures().join("current.bin"), ROOT).1 / 512,
        ("hyperv", "hyperv"),
    );
    let img = x.join("q.img");
    let o = sh(Command::new("bzip2")
        .arg("-dc")
        .arg(r.out.join("flatcar_production_qemu_uefi_image.img.bz2")));
    std::fs::write(&img, &o.stdout).expect("w");
    judge_disk(
        &img,
        "qcow2",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("qemu", "qemu"),
    );

    // a stale file hetzner never writes does not block; one it writes does
    let (r, o) = vendors("hetzner", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(r.out.join("flatcar_production_hetzner.ova"), "x").expect("w");
    let out = r.out.to_str().expect("p").to_owned();
    let img = fixtures().join("current.bin");
    let rel = fixtures().join("release");
    let again = |force: bool| {
        let mut a = vec![
            "--image",
            img.to_str().expect("p"),
            "--release-dir",
            rel.to_str().expect("p"),
            "--output-dir",
            &out,
            "--vendor",
            "hetzner",
        ];
        if force {
            a.push("--force");
        }
        flatbake(&a)
    };
    let o = again(false);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("flatcar_production_hetzner_image.bin: already exists"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(r.out.join("flatcar_production_hetzner_image.bin")).expect("rm");
    let o = again(false);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--force` in an output directory that holds the input: the plain image
/// (`--vendor generic,...`) or a vendor's disk would be written over the file being
/// baked. Refused in one line naming it; the input is left as it was.
#[test]
fn vendor_outputs_never_replace_an_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path();
    let img = out.join("flatcar_production_image.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    let ext = out.join("flatcar_production_hetzner_image.bin");
    std::fs::copy(sysext("wasmtime-v24.0.0-x86-64.raw"), &ext).expect("copy");
    let rel = fixtures().join("release");
    let elsewhere = format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    );
    let inside = format!("wasmtime:{}", ext.display());
    for (vendors, wasm, victim, what) in [
        ("generic,hetzner", &elsewhere, &img, "the input image"),
        ("hetzner", &inside, &ext, "the sysext of wasmtime"),
    ] {
        let before = std::fs::read(victim).expect("read");
        let o = flatbake(&[
            "--image",
            img.to_str().expect("p"),
            "--release-dir",
            rel.to_str().expect("p"),
            "--output-dir",
            out.to_str().expect("p"),
            "--force",
            "--vendor",
            vendors,
            wasm,
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{vendors}: {err}");
        assert!(
            err.contains(&format!(
                "{}: this vendor output is {what}",
                victim.display()
            )),
            "{vendors}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            std::fs::read(victim).expect("read") == before,
            "{} changed",
            victim.display()
        );
        assert!(leftovers(out).is_empty(), "{:?}", leftovers(out));
    }
}
