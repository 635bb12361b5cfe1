//! End-to-end: vendor images from a fixture image and a fixture release directory,
//! judged by sgdisk, e2fsck/dumpe2fs, btrfs check/restore, tar, and the files' bytes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const VM_ROOT_SECTORS: u64 = 12943360;

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
        sysext("wasmtime-24.0.0-x86-64.raw").display()
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
    let (r, o) = vendors(vendor, &[]);
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

/// The OEM tree a vendor image should have.
fn assert_oem(img: &Path, id: &str, grub_id: &str) {
    let oem = oem_tree(img);
    let t = oem.path().join("tree");
    let grub = std::fs::read_to_string(t.join("grub.cfg")).expect("grub.cfg");
    assert!(grub.starts_with("# Flatcar GRUB settings\n\n"), "{grub}");
    assert!(
        grub.contains(&format!("set oem_id=\"{grub_id}\"")),
        "{grub}"
    );
    let rel = std::fs::read_to_string(t.join("oem-release")).expect("oem-release");
    assert!(rel.starts_with(&format!("ID={id}\n")), "{rel}");
    assert!(rel.contains("VERSION_ID=4593.2.5\n"), "{rel}");
    let raw = t.join(format!("sysext/oem-{id}-4593.2.5.raw"));
    assert_eq!(
        sha256_file(&raw),
        sha256_file(&fixtures().join(format!("release/oem-{id}.raw")))
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
        root_file(&img, "/opt/extensions/wasmtime/wasmtime-24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-24.0.0-x86-64.raw")).expect("read")
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
    assert_oem(&raw, oem.0, oem.1);
    assert_eq!(
        root_file(&raw, "/opt/extensions/wasmtime/wasmtime-24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-24.0.0-x86-64.raw")).expect("read")
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
    let r = ok("qemu_uefi,exoscale,hyperv,hyperv_vhdx,vmware,virtualbox");
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
    judge_disk(
        &q,
        "qcow2",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("qemu", "qemu"),
    );
    judge_disk(
        &r.out.join("flatcar_production_exoscale_image.qcow2"),
        "qcow2",
        true,
        10 << 30,
        base_root,
        ("exoscale", "exoscale"),
    );
    judge_disk(
        &r.out.join("flatcar_production_hyperv_image.vhd"),
        "vpc",
        false,
        base,
        base_root,
        ("hyperv", "hyperv"),
    );
    judge_disk(
        &r.out.join("flatcar_production_hyperv_vhdx_image.vhdx"),
        "vhdx",
        true,
        base,
        base_root,
        ("hyperv", "hyperv"),
    );
    let vmdk = r.out.join("flatcar_production_vmware_image.vmdk");
    judge_disk(
        &vmdk,
        "vmdk",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("vmware", "vmware"),
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
    sh(Command::new("sh")
        .arg("-n")
        .arg(r.out.join("flatcar_production_qemu_uefi.sh")));
}

#[test]
fn azure_fixed_vhd_and_bundles() {
    let r = ok("azure,vmware_ova,vagrant");
    assert_eq!(
        files(&r.out),
        vec![
            "flatcar_production_azure_image.vhd",
            "flatcar_production_vagrant.box",
            "flatcar_production_vmware_ova.ova"
        ]
    );
    let (start, _) = part(&fixtures().join("current.bin"), ROOT);
    let azure_disk = (start / 512 + 50876416 + 33).div_ceil(258048) * 258048 * 512;
    let vhd = r.out.join("flatcar_production_azure_image.vhd");
    judge_disk(&vhd, "vpc", false, azure_disk, 50876416, ("azure", "azure"));
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
        "cd {} && sha1sum flatcar_production_vmware_ova.ovf flatcar_production_vmware_ova_image.vmdk | awk '{{print \"SHA1(\" $2 \")= \" $1}}' > expected.mf",
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
    judge_disk(
        &vmdk,
        "vmdk",
        true,
        vm_disk_bytes(),
        VM_ROOT_SECTORS,
        ("vmware", "vmware"),
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
        "Vagrantfile",
        "box.ovf",
        "metadata.json",
        "flatcar_production_vagrant_image.vmdk",
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
    let r = ok(&names.join(","));
    assert_eq!(files(&r.out).len(), cases.len(), "{:?}", files(&r.out));
    for (vendor, file, fmt, checkable, vm, oem, grub) in cases {
        let (size, root) = if vm {
            (vm_disk_bytes(), VM_ROOT_SECTORS)
        } else {
            (base, base_root)
        };
        judge_disk(&r.out.join(file), fmt, checkable, size, root, (oem, grub));
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
            sysext("wasmtime-24.0.0-x86-64.raw").display()
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
        root_owner_mode(&raw, "/opt/extensions/wasmtime/wasmtime-24.0.0-x86-64.raw"),
        ("0644".to_owned(), 0, 0)
    );
    assert!(dir.path().join("flatcar_production_gce.tar.gz").is_file());
}
