//! Vendor outputs of releases other than the default fixture's, against what the
//! release's own flatcar/scripts writes. VirtualBox and Vagrant: `build_library/virtualbox_ovf.sh` (the OVF and the box's `base_mac.rb`),
//! the box template (`build_library/oem/vagrant/build/box` from 4722 on, the
//! `coreos-base/oem-vagrant-virtualbox` package's `box/` before), `_write_box_bundle`
//! (box layout, `metadata.json`, the box catalogue JSON), for the current layout
//! (4757) and a pre-4487 release (4459), where virtualbox, vagrant_virtualbox and
//! ami_vmdk had no OEM sysext; cloudsigma's package files before 4722. QEMU: the
//! `.fd` firmware before 4152 and qemu/qemu_uefi_secure as image types of their own
//! before 3815.2.2/3913.1.0/3941. Judged by qemu-img check, python3's XML parser, tar,
//! sgdisk, e2fsck and the OEM tree read back with btrfs restore.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const NEWER: &str = "4757.0.0";
const OLDER: &str = "4459.2.0";
const VM_ROOT_SECTORS: u64 = 12943360;
const VAGRANT_ROOT_SECTORS: u64 = 33845248;

struct Run {
    _dir: tempfile::TempDir,
    out: PathBuf,
    o: std::process::Output,
}

/// `flatbake --image current.bin --release-dir REL --vendor VENDORS wasmtime:...`.
fn run(vendors: &str, rel: &Path, env: &[(&str, &str)]) -> Run {
    run_on(&fixtures().join("current.bin"), vendors, rel, env)
}

/// [`run`] on another input image.
fn run_on(image: &Path, vendors: &str, rel: &Path, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let wasm = format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flatbake"));
    cmd.arg("--image")
        .arg(image)
        .arg("--release-dir")
        .arg(rel)
        .arg("--output-dir")
        .arg(&out)
        .args(["--vendor", vendors])
        .arg(&wasm)
        .env_remove("FLATBAKE_BOX_URL")
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run flatbake");
    Run { _dir: dir, out, o }
}

fn ok(vendors: &str, rel: &Path, env: &[(&str, &str)]) -> Run {
    let r = run(vendors, rel, env);
    assert!(r.o.status.success(), "--vendor {vendors}: {}", stderr(&r.o));
    assert!(leftovers(&r.out).is_empty(), "{:?}", leftovers(&r.out));
    r
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn disk_bytes(root_sectors: u64) -> u64 {
    let (start, _) = part(&fixtures().join("current.bin"), 9);
    (start / 512 + root_sectors + 33).div_ceil(258048) * 258048 * 512
}

/// qemu-img's verdict and virtual size of a monolithicSparse VMDK; then the disk as
/// raw, judged by sgdisk and e2fsck; returns the raw copy (removed with `keep`).
fn judge_vmdk(vmdk: &Path, virtual_size: u64, root_sectors: u64, keep: &Path) -> PathBuf {
    sh(Command::new("qemu-img")
        .args(["check", "-f", "vmdk"])
        .arg(vmdk));
    let info = sh(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "vmdk"])
        .arg(vmdk));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(info["virtual-size"].as_u64(), Some(virtual_size), "{info}");
    assert_eq!(
        info["format-specific"]["data"]["create-type"].as_str(),
        Some("monolithicSparse"),
        "{info}"
    );
    let raw = keep.join(format!(
        "{}.raw",
        vmdk.file_name().expect("n").to_string_lossy()
    ));
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(vmdk)
        .arg(&raw));
    sgdisk_verify(&raw);
    e2fsck_root(&raw);
    assert_eq!(part(&raw, 9).1, root_sectors * 512);
    assert_eq!(
        root_file(&raw, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("read")
    );
    raw
}

/// The OEM partition's files (relative paths) and a reader for them.
fn oem_files(raw: &Path) -> (tempfile::TempDir, Vec<String>) {
    let t = oem_tree(raw);
    let root = t.path().join("tree");
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p.strip_prefix(&root).expect("under").display().to_string());
            }
        }
    }
    found.sort();
    (t, found)
}

/// The fields of a VirtualBox OVF that VirtualBox imports, read by python3's XML
/// parser (which also proves the file well-formed).
fn ovf_fields(ovf: &Path) -> serde_json::Value {
    const PY: &str = r#"
import json, sys, xml.etree.ElementTree as ET
ns = {"o": "http://schemas.dmtf.org/ovf/envelope/1",
      "r": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
      "s": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
      "v": "http://www.virtualbox.org/ovf/machine"}
O = "{http://schemas.dmtf.org/ovf/envelope/1}"
V = "{http://www.virtualbox.org/ovf/machine}"
e = ET.parse(sys.argv[1]).getroot()
f = e.find("o:References/o:File", ns)
d = e.find("o:DiskSection/o:Disk", ns)
vs = e.find("o:VirtualSystem", ns)
def t(x, p):
    y = x.find(p, ns)
    return None if y is None else y.text
items = []
for it in vs.findall("o:VirtualHardwareSection/o:Item", ns):
    items.append({k: t(it, "r:" + k) for k in ["InstanceID", "ResourceType", "ResourceSubType", "VirtualQuantity", "Parent", "HostResource"]})
m = vs.find("v:Machine", ns)
hw = m.find("o:Hardware", ns)
sc = m.find(".//o:StorageController", ns)
print(json.dumps({
  "href": f.get(O + "href"), "file_size": f.get(O + "size"),
  "capacity": d.get(O + "capacity"), "format": d.get(O + "format"), "disk_uuid": d.get(V + "uuid"),
  "id": vs.get(O + "id"), "system_type": t(vs, "o:VirtualHardwareSection/o:System/s:VirtualSystemType"),
  "system_id": t(vs, "o:VirtualHardwareSection/o:System/s:VirtualSystemIdentifier"),
  "os": t(vs, "o:OperatingSystemSection/v:OSType"),
  "network": e.find("o:NetworkSection/o:Network", ns).get(O + "name"),
  "items": items,
  "machine": {k: m.get(k) for k in ["version", "uuid", "name", "OSType", "lastStateChange"]},
  "ram": hw.find("o:Memory", ns).get("RAMSize"),
  "cpus": hw.find("o:CPU", ns).get("count"),
  "firmware": None if hw.find("o:Firmware", ns) is None else hw.find("o:Firmware", ns).get("type"),
  "chipset": hw.find("o:Chipset", ns).get("type"),
  "macs": [a.get("MACAddress") for a in hw.findall("o:Network/o:Adapter", ns)],
  "adapters_enabled": [a.get("enabled") for a in hw.findall("o:Network/o:Adapter", ns)],
  "controller": [sc.get("name"), sc.get("type")],
  "image_uuid": sc.find("o:AttachedDevice/o:Image", ns).get("uuid"),
}))
"#;
    let o = sh(Command::new("python3").arg("-c").arg(PY).arg(ovf));
    serde_json::from_slice(&o.stdout).expect("ovf json")
}

fn item(f: &serde_json::Value, id: &str) -> serde_json::Value {
    f["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["InstanceID"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no item {id}: {f}"))
}

/// What both OVF generations share (Flatcar's virtualbox_ovf.sh of any release).
fn common_ovf(f: &serde_json::Value, vm: &str, disk: &str, capacity: u64) {
    assert_eq!(f["href"], disk);
    // Flatcar's OVF gives no file size and calls the disk stream-optimized
    assert!(f["file_size"].is_null(), "{f}");
    assert_eq!(f["capacity"], capacity.to_string());
    assert_eq!(
        f["format"],
        "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
    );
    assert_eq!(f["id"], vm);
    assert_eq!(f["system_id"], vm);
    assert_eq!(f["machine"]["name"], vm);
    assert_eq!(f["system_type"], "virtualbox-2.2");
    assert_eq!(f["os"], "Linux26_64");
    assert_eq!(f["machine"]["OSType"], "Linux26_64");
    assert_eq!(f["network"], "NAT");
    assert_eq!(f["ram"], "2048");
    assert_eq!(item(f, "2")["VirtualQuantity"], "2048");
    assert_eq!(item(f, "2")["ResourceType"], "4");
    let disk_item = item(f, "6");
    assert_eq!(disk_item["ResourceType"], "17");
    assert_eq!(disk_item["Parent"], "3");
    assert_eq!(disk_item["HostResource"], "/disk/vmdisk1");
    // one disk UUID in DiskSection and the machine's storage controller
    let u = f["disk_uuid"].as_str().expect("uuid");
    assert_eq!(u.len(), 36, "{u}");
    assert_eq!(f["image_uuid"], format!("{{{u}}}"));
    let mu = f["machine"]["uuid"].as_str().expect("machine uuid");
    assert!(
        mu.starts_with('{') && mu.ends_with('}') && mu.len() == 38,
        "{mu}"
    );
    let date = f["machine"]["lastStateChange"].as_str().expect("date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && &date[10..11] == "T",
        "{date}"
    );
    for m in f["macs"].as_array().expect("macs") {
        let m = m.as_str().expect("mac");
        assert!(m.len() == 12 && m.starts_with("080027"), "{m}");
        assert!(m[6..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
}

/// The OVF of 4722 and later (flatcar/scripts d4350d70d8): VirtioSCSI, EFI, 2 CPUs,
/// one adapter.
fn current_ovf(f: &serde_json::Value) {
    assert_eq!(item(f, "1")["VirtualQuantity"], "2");
    assert_eq!(item(f, "3")["ResourceType"], "20");
    assert_eq!(item(f, "3")["ResourceSubType"], "VirtioSCSI");
    assert_eq!(item(f, "4")["ResourceType"], "23");
    assert_eq!(item(f, "5")["ResourceType"], "10");
    assert!(item(f, "5")["ResourceSubType"].is_null());
    assert_eq!(f["machine"]["version"], "1.19-linux");
    assert_eq!(f["cpus"], "2");
    assert_eq!(f["firmware"], "EFI");
    assert_eq!(f["chipset"], "ICH9");
    assert_eq!(f["macs"].as_array().expect("m").len(), 1);
    assert_eq!(f["controller"], serde_json::json!(["virtio", "VirtioSCSI"]));
}

/// The OVF of releases before 4722: IDE (PIIX4) controllers, 1 CPU, E1000, eight
/// adapters of which the first is enabled, VirtualBox 1.12 settings, BIOS.
fn older_ovf(f: &serde_json::Value) {
    assert_eq!(item(f, "1")["VirtualQuantity"], "1");
    for id in ["3", "4"] {
        assert_eq!(item(f, id)["ResourceType"], "5");
        assert_eq!(item(f, id)["ResourceSubType"], "PIIX4");
    }
    assert_eq!(item(f, "5")["ResourceSubType"], "E1000");
    assert_eq!(f["machine"]["version"], "1.12-linux");
    assert_eq!(f["cpus"], "1");
    assert!(f["firmware"].is_null());
    assert_eq!(f["chipset"], "PIIX3");
    assert_eq!(f["macs"].as_array().expect("m").len(), 8);
    let en: Vec<&str> = f["adapters_enabled"]
        .as_array()
        .expect("e")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(en[0], "true");
    assert!(en[1..].iter().all(|e| *e == "false"));
    assert_eq!(
        f["controller"],
        serde_json::json!(["IDE Controller", "PIIX4"])
    );
}

fn tar_list(t: &Path) -> Vec<String> {
    let o = sh(Command::new("tar").arg("-tzf").arg(t));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn untar(t: &Path, into: &Path) {
    std::fs::create_dir_all(into).expect("mkdir");
    sh(Command::new("tar").arg("-xzf").arg(t).arg("-C").arg(into));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `base_mac.rb` as virtualbox_ovf.sh --output_vagrant writes it, with the OVF's
/// first adapter's MAC address.
fn assert_base_mac(x: &Path, ovf: &serde_json::Value) {
    let mac = ovf["macs"][0].as_str().expect("mac");
    assert_eq!(
        read(&x.join("base_mac.rb")),
        format!("Vagrant.configure(\"2\") do |config|\n  config.vm.base_mac = \"{mac}\"\nend\n")
    );
}

#[test]
fn virtualbox_and_vagrant_of_the_current_layout() {
    let rel = release(NEWER);
    let r = ok(
        "virtualbox,vagrant",
        &rel,
        &[("FLATBAKE_BOX_URL", "https://boxes.example/flatcar/")],
    );
    assert_eq!(
        names(&r.out),
        [
            "flatcar_production_vagrant.box",
            "flatcar_production_vagrant.json",
            "flatcar_production_virtualbox.README",
            "flatcar_production_virtualbox.ovf",
            "flatcar_production_virtualbox_image.vmdk",
        ]
    );
    let work = tempfile::tempdir().expect("tmp");
    // virtualbox: vm layout, its OEM sysext of 4757
    let vmdk = r.out.join("flatcar_production_virtualbox_image.vmdk");
    let raw = judge_vmdk(
        &vmdk,
        disk_bytes(VM_ROOT_SECTORS),
        VM_ROOT_SECTORS,
        work.path(),
    );
    let (oem, files) = oem_files(&raw);
    assert_eq!(
        files,
        [
            "grub.cfg",
            "oem-release",
            "sysext/active-oem-virtualbox",
            "sysext/oem-virtualbox-4757.0.0.raw"
        ]
    );
    assert_eq!(
        read(&oem.path().join("tree/grub.cfg")),
        "# Flatcar GRUB settings\n\nset oem_id=\"virtualbox\"\n"
    );
    drop(oem);
    std::fs::remove_file(&raw).expect("rm");
    let ovf = ovf_fields(&r.out.join("flatcar_production_virtualbox.ovf"));
    common_ovf(
        &ovf,
        "flatcar_production_virtualbox-4757-0-0",
        "flatcar_production_virtualbox_image.vmdk",
        disk_bytes(VM_ROOT_SECTORS),
    );
    current_ovf(&ovf);
    assert_eq!(
        read(&r.out.join("flatcar_production_virtualbox.README")),
        "Copy flatcar_production_virtualbox_image.vmdk and flatcar_production_virtualbox.ovf to a VirtualBox host and run:\nVBoxManage import flatcar_production_virtualbox.ovf\n"
    );

    // vagrant: the box as `tar -czf BOX -C box .` lays it out
    let boxf = r.out.join("flatcar_production_vagrant.box");
    let mut list = tar_list(&boxf);
    list.sort();
    assert_eq!(
        list,
        [
            "./",
            "./Vagrantfile",
            "./base_mac.rb",
            "./box.ovf",
            "./configure_networks.rb",
            "./flatcar_production_vagrant_image.vmdk",
            "./metadata.json",
        ]
    );
    let x = work.path().join("box");
    untar(&boxf, &x);
    let meta: serde_json::Value =
        serde_json::from_str(&read(&x.join("metadata.json"))).expect("metadata.json");
    assert_eq!(
        meta,
        serde_json::json!({"provider": "virtualbox", "architecture": "amd64"})
    );
    // jq's layout: keys in this order, two-space indent
    assert_eq!(
        read(&x.join("metadata.json")),
        "{\n  \"provider\": \"virtualbox\",\n  \"architecture\": \"amd64\"\n}\n"
    );
    let vf = read(&x.join("Vagrantfile"));
    for want in [
        "Vagrant.require_version \">= 2.2.5\"",
        "require_relative 'configure_networks.rb'",
        "require_relative 'base_mac.rb'",
        "config.ssh.insert_key = false",
        "config.ssh.username = \"core\"",
        "config.vm.synced_folder \".\", \"/vagrant\", disabled: true",
        "vb.check_guest_additions = false",
        "\"--natdnshostresolver1\", \"on\"",
        "vb.customize [\"guestproperty\", \"set\", :id, \"/Ignition/Config\", File.read(\"config.ign\")]",
        "config.vm.provider :vmware_fusion do |vf|",
        "prl.check_guest_tools = false",
        "/var/lib/flatcar-vagrant/",
    ] {
        assert!(vf.contains(want), "{want} not in the Vagrantfile:\n{vf}");
    }
    assert!(!vf.contains("change_host_name"), "{vf}");
    assert!(read(&x.join("configure_networks.rb"))
        .contains("configure_networks_cloud_init(machine, networks)"));
    let bovf = ovf_fields(&x.join("box.ovf"));
    common_ovf(
        &bovf,
        "flatcar_production_vagrant-4757-0-0",
        "flatcar_production_vagrant_image.vmdk",
        disk_bytes(VAGRANT_ROOT_SECTORS),
    );
    current_ovf(&bovf);
    assert_base_mac(&x, &bovf);
    let raw = judge_vmdk(
        &x.join("flatcar_production_vagrant_image.vmdk"),
        disk_bytes(VAGRANT_ROOT_SECTORS),
        VAGRANT_ROOT_SECTORS,
        work.path(),
    );
    let (_oem, files) = oem_files(&raw);
    assert_eq!(
        files,
        [
            "grub.cfg",
            "oem-release",
            "sysext/active-oem-vagrant",
            "sysext/oem-vagrant-4757.0.0.raw"
        ]
    );

    // the catalogue: jq's layout of _write_box_bundle's document, the box's sha256,
    // the URL under FLATBAKE_BOX_URL, the image's update group
    let cat_text = read(&r.out.join("flatcar_production_vagrant.json"));
    let sum = sha256_file(&boxf);
    assert_eq!(
        cat_text,
        format!(
            "{{\n  \"name\": \"flatcar-stable\",\n  \"description\": \"Flatcar stable\",\n  \"versions\": [\n    {{\n      \"version\": \"4757.0.0\",\n      \"providers\": [\n        {{\n          \"name\": \"virtualbox\",\n          \"url\": \"https://boxes.example/flatcar/flatcar_production_vagrant.box\",\n          \"checksum_type\": \"sha256\",\n          \"checksum\": \"{sum}\",\n          \"architecture\": \"amd64\"\n        }}\n      ]\n    }}\n  ]\n}}\n"
        )
    );
    let cat: serde_json::Value = serde_json::from_str(&cat_text).expect("catalogue");
    assert_eq!(cat["versions"][0]["providers"][0]["checksum"], sum);
}

#[test]
fn box_catalogue_points_at_the_box_by_default_and_ids_follow_source_date_epoch() {
    let rel = release(NEWER);
    let env = [("SOURCE_DATE_EPOCH", "1786060799")];
    let a = ok("vagrant", &rel, &env);
    let b = ok("vagrant", &rel, &env);
    let cat: serde_json::Value =
        serde_json::from_str(&read(&a.out.join("flatcar_production_vagrant.json"))).expect("json");
    let boxf = a.out.join("flatcar_production_vagrant.box");
    assert_eq!(
        cat["versions"][0]["providers"][0]["url"],
        format!("file://{}", boxf.display())
    );
    // same epoch: the same identifiers (the disk itself carries the bake's times)
    let x = tempfile::tempdir().expect("tmp");
    untar(&boxf, &x.path().join("a"));
    untar(
        &b.out.join("flatcar_production_vagrant.box"),
        &x.path().join("b"),
    );
    for f in ["box.ovf", "base_mac.rb", "Vagrantfile", "metadata.json"] {
        assert_eq!(
            read(&x.path().join("a").join(f)),
            read(&x.path().join("b").join(f)),
            "{f}"
        );
    }
    let f = ovf_fields(&x.path().join("a/box.ovf"));
    assert_eq!(f["machine"]["lastStateChange"], "2026-08-06T23:59:59Z");
}

#[test]
fn pre_4487_release_without_oem_sysexts() {
    let rel = release(OLDER);
    let r = ok("virtualbox,vagrant_virtualbox,ami_vmdk", &rel, &[]);
    assert_eq!(
        names(&r.out),
        [
            "flatcar_production_ami_vmdk_image.vmdk",
            "flatcar_production_vagrant_virtualbox.box",
            "flatcar_production_vagrant_virtualbox.json",
            "flatcar_production_virtualbox.README",
            "flatcar_production_virtualbox.ovf",
            "flatcar_production_virtualbox_image.vmdk",
        ]
    );
    let work = tempfile::tempdir().expect("tmp");

    // virtualbox: the oem-virtualbox package's grub.cfg and oem-release, no sysext
    let raw = judge_vmdk(
        &r.out.join("flatcar_production_virtualbox_image.vmdk"),
        disk_bytes(VM_ROOT_SECTORS),
        VM_ROOT_SECTORS,
        work.path(),
    );
    let (oem, files) = oem_files(&raw);
    assert_eq!(files, ["grub.cfg", "oem-release"]);
    assert_eq!(
        read(&oem.path().join("tree/oem-release")),
        "ID=virtualbox\nVERSION_ID=0.0.1-r1\nNAME=\"Oracle VirtualBox\"\nBUG_REPORT_URL=\"https://issues.flatcar.org\"\n"
    );
    assert_eq!(
        read(&oem.path().join("tree/grub.cfg")),
        "# Flatcar GRUB settings\n\nset oem_id=\"virtualbox\"\n"
    );
    drop(oem);
    std::fs::remove_file(&raw).expect("rm");
    let ovf = ovf_fields(&r.out.join("flatcar_production_virtualbox.ovf"));
    common_ovf(
        &ovf,
        "flatcar_production_virtualbox-4459-2-0",
        "flatcar_production_virtualbox_image.vmdk",
        disk_bytes(VM_ROOT_SECTORS),
    );
    older_ovf(&ovf);

    // vagrant_virtualbox: oem-vagrant-virtualbox's box files, the old metadata.json
    // and catalogue; its OEM partition keeps only the package's grub.cfg
    let boxf = r.out.join("flatcar_production_vagrant_virtualbox.box");
    let mut list = tar_list(&boxf);
    list.sort();
    assert_eq!(
        list,
        [
            "./",
            "./Vagrantfile",
            "./base_mac.rb",
            "./box.ovf",
            "./change_host_name.rb",
            "./configure_networks.rb",
            "./flatcar_production_vagrant_virtualbox_image.vmdk",
            "./metadata.json",
        ]
    );
    let x = work.path().join("box");
    untar(&boxf, &x);
    assert_eq!(
        read(&x.join("metadata.json")),
        "{\"provider\": \"virtualbox\"}\n"
    );
    let vf = read(&x.join("Vagrantfile"));
    for want in [
        "if Vagrant::VERSION < \"1.6.0\"",
        "require_relative 'change_host_name.rb'",
        "config.ssh.insert_key = false",
        "\"--natdnsproxy1\", \"on\"",
    ] {
        assert!(vf.contains(want), "{want} not in the Vagrantfile:\n{vf}");
    }
    assert!(
        !vf.contains("vmware_fusion") && !vf.contains("Ignition"),
        "{vf}"
    );
    let bovf = ovf_fields(&x.join("box.ovf"));
    common_ovf(
        &bovf,
        "flatcar_production_vagrant_virtualbox-4459-2-0",
        "flatcar_production_vagrant_virtualbox_image.vmdk",
        disk_bytes(VAGRANT_ROOT_SECTORS),
    );
    older_ovf(&bovf);
    assert_base_mac(&x, &bovf);
    let raw = judge_vmdk(
        &x.join("flatcar_production_vagrant_virtualbox_image.vmdk"),
        disk_bytes(VAGRANT_ROOT_SECTORS),
        VAGRANT_ROOT_SECTORS,
        work.path(),
    );
    let (oem, files) = oem_files(&raw);
    assert_eq!(files, ["grub.cfg"]);
    assert_eq!(
        read(&oem.path().join("tree/grub.cfg")),
        "# Flatcar GRUB settings\n\nset oem_id=\"vagrant-virtualbox\"\n"
    );
    drop(oem);
    std::fs::remove_file(&raw).expect("rm");
    let sum = sha256_file(&boxf);
    let url = format!("file://{}", boxf.display());
    assert_eq!(
        read(&r.out.join("flatcar_production_vagrant_virtualbox.json")),
        format!(
            "{{\n  \"name\": \"flatcar-stable\",\n  \"description\": \"Flatcar stable\",\n  \"versions\": [{{\n    \"version\": \"4459.2.0\",\n    \"providers\": [{{\n      \"name\": \"virtualbox\",\n      \"url\": \"{url}\",\n      \"checksum_type\": \"sha256\",\n      \"checksum\": \"{sum}\"\n    }}]\n  }}]\n}}\n"
        )
    );

    // ami_vmdk: stream-optimized, base layout before 4487, common-oem-files' ami
    // grub.cfg and oem-release and no sysext (IMG_ami_vmdk_SYSEXT was never read)
    let vmdk = r.out.join("flatcar_production_ami_vmdk_image.vmdk");
    sh(Command::new("qemu-img")
        .args(["check", "-f", "vmdk"])
        .arg(&vmdk));
    let raw = work.path().join("ami.raw");
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(&vmdk)
        .arg(&raw));
    sgdisk_verify(&raw);
    e2fsck_root(&raw);
    assert_eq!(
        std::fs::metadata(&raw).expect("m").len(),
        std::fs::metadata(fixtures().join("current.bin"))
            .expect("m")
            .len()
    );
    let (oem, files) = oem_files(&raw);
    assert_eq!(files, ["grub.cfg", "oem-release"]);
    assert!(read(&oem.path().join("tree/grub.cfg")).starts_with(
        "# Flatcar GRUB settings\n\nset oem_id=\"ec2\"\n# Flatcar GRUB settings for AMI\n"
    ));
    assert_eq!(
        read(&oem.path().join("tree/oem-release")),
        "ID=ami\nVERSION_ID=3.3.2299.0\nNAME=\"Amazon EC2\"\nHOME_URL=\"http://aws.amazon.com/ec2/\"\nBUG_REPORT_URL=\"https://issues.flatcar.org\"\n"
    );
}

#[test]
fn cloudsigma_before_4722_carries_its_package_files() {
    let rel = release(OLDER);
    let r = ok("cloudsigma", &rel, &[]);
    let img = r.out.join("flatcar_production_cloudsigma_image.img");
    assert_eq!(names(&r.out), ["flatcar_production_cloudsigma_image.img"]);
    sh(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&img));
    let work = tempfile::tempdir().expect("tmp");
    let raw = work.path().join("c.raw");
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&img)
        .arg(&raw));
    sgdisk_verify(&raw);
    e2fsck_root(&raw);
    // the base layout, as released
    assert_eq!(
        std::fs::metadata(&raw).expect("m").len(),
        std::fs::metadata(fixtures().join("current.bin"))
            .expect("m")
            .len()
    );
    let (oem, files) = oem_files(&raw);
    assert_eq!(files, ["cloud-config.yml", "grub.cfg"]);
    assert_eq!(
        read(&oem.path().join("tree/grub.cfg")),
        "# Flatcar GRUB settings\n\nset oem_id=\"cloudsigma\"\n"
    );
    // oem-cloudsigma-0.0.3-r6's cloud-config.yml (no newline at its end, as Flatcar's)
    let cc = read(&oem.path().join("tree/cloud-config.yml"));
    assert!(cc.starts_with("#cloud-config\n\ncoreos:\n  oem:\n    id: cloudsigma\n    name: CloudSigma\n    version-id: 0.0.3-r6\n"), "{cc}");
    assert!(
        cc.contains("    - name: za-dhcp-no-rapid-commit.network\n"),
        "{cc}"
    );
    assert!(cc.ends_with("        RapidCommit=false"), "{cc}");
    assert!(!cc.contains("@@"), "{cc}");
}

#[test]
fn package_era_vendors_with_programs_are_refused_in_one_line() {
    let rel = release(OLDER);
    for (vendor, disk) in [
        ("vagrant", "flatcar_production_vagrant.box"),
        ("exoscale", "flatcar_production_exoscale_image.img"),
        ("cloudstack", "flatcar_production_cloudstack_image.bin"),
    ] {
        let r = run(vendor, &rel, &[]);
        assert!(!r.o.status.success(), "{vendor} made");
        let err = stderr(&r.o);
        let line = err
            .lines()
            .find(|l| l.contains(&format!("vendor '{vendor}'")))
            .unwrap_or_else(|| panic!("{vendor}: {err}"));
        assert!(
            line.contains("4722 and later ship oem-")
                && line.contains("use --release 4722 or later")
                && line.contains(&format!("Flatcar's own {disk} of 4459.2.0")),
            "{line}"
        );
        assert!(names(&r.out).is_empty(), "{:?}", names(&r.out));
    }
    // vagrant_virtualbox is gone from 4722 on (vagrant replaced it)
    let r = run("vagrant_virtualbox", &release(NEWER), &[]);
    assert!(!r.o.status.success());
    assert!(
        stderr(&r.o).contains("releases 2512-4694 did"),
        "{}",
        stderr(&r.o)
    );
}

/// current.bin with `/etc/flatcar/update.conf` on ROOT holding `text`.
fn with_etc_update_conf(dir: &Path, text: &str) -> PathBuf {
    let img = dir.join("in.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    let conf = dir.join("update.conf");
    std::fs::write(&conf, text).expect("write");
    let (off, _) = part(&img, 9);
    let cmds = dir.join("cmds");
    std::fs::write(
        &cmds,
        format!(
            "mkdir /etc\nmkdir /etc/flatcar\nwrite {} /etc/flatcar/update.conf\n",
            conf.display()
        ),
    )
    .expect("write");
    sh(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(format!("{}?offset={off}", img.display())));
    e2fsck_root(&img);
    img
}

/// The catalogue's group is the image's: /etc/flatcar/update.conf over
/// /usr/share/flatcar/update.conf, last GROUP= line, as vm_image_util.sh reads it; an
/// image that names none is refused in one line and nothing is written.
#[test]
fn box_catalogue_group_comes_from_the_image() {
    let rel = release(NEWER);
    let d = tempfile::tempdir().expect("tmp");
    let beta = with_etc_update_conf(d.path(), "GROUP=alpha\nSERVER=x\nGROUP=beta\n");
    let r = run_on(&beta, "vagrant", &rel, &[]);
    assert!(r.o.status.success(), "{}", stderr(&r.o));
    let cat: serde_json::Value =
        serde_json::from_str(&read(&r.out.join("flatcar_production_vagrant.json"))).expect("json");
    assert_eq!(cat["name"], "flatcar-beta");
    assert_eq!(cat["description"], "Flatcar beta");

    let d = tempfile::tempdir().expect("tmp");
    let none = with_etc_update_conf(d.path(), "GROUP=\n");
    let r = run_on(&none, "vagrant", &rel, &[]);
    assert!(!r.o.status.success());
    let err = stderr(&r.o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0]
            .contains("no GROUP= in /usr/share/flatcar/update.conf or /etc/flatcar/update.conf"),
        "{err}"
    );
    assert!(names(&r.out).is_empty(), "{:?}", names(&r.out));
    assert!(leftovers(&r.out).is_empty());
}

/// LTS 4081: qemu_uefi writes the qemu and qemu_uefi_secure launchers and links, and
/// ships the release's `.fd` firmware (qcow2 came with 4152).
#[test]
fn qemu_uefi_of_lts_4081_uses_fd_firmware() {
    let rel = release("4081.3.10");
    let r = ok("qemu_uefi", &rel, &[]);
    let mut want = vec![
        "flatcar_production_qemu.README",
        "flatcar_production_qemu.sh",
        "flatcar_production_qemu_image.img",
        "flatcar_production_qemu_uefi.README",
        "flatcar_production_qemu_uefi.sh",
        "flatcar_production_qemu_uefi_efi_code.fd",
        "flatcar_production_qemu_uefi_efi_vars.fd",
        "flatcar_production_qemu_uefi_image.img",
        "flatcar_production_qemu_uefi_secure.README",
        "flatcar_production_qemu_uefi_secure.sh",
        "flatcar_production_qemu_uefi_secure_efi_code.fd",
        "flatcar_production_qemu_uefi_secure_efi_vars.fd",
        "flatcar_production_qemu_uefi_secure_image.img",
    ];
    want.sort();
    assert_eq!(names(&r.out), want);
    sh(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(r.out.join("flatcar_production_qemu_uefi_image.img")));
    for f in want.iter().filter(|f| f.ends_with(".fd")) {
        assert_eq!(
            sha256_file(&r.out.join(f)),
            sha256_file(&rel.join(f)),
            "{f}"
        );
    }
    let sh_text = read(&r.out.join("flatcar_production_qemu_uefi_secure.sh"));
    assert!(
        sh_text.contains(
            "\nVM_PFLASH_RW=\"${SCRIPT_DIR}/flatcar_production_qemu_uefi_secure_efi_vars.fd\"\n"
        ),
        "{sh_text}"
    );
    assert_eq!(
        std::fs::read_link(r.out.join("flatcar_production_qemu_image.img")).expect("link"),
        Path::new("flatcar_production_qemu_uefi_image.img")
    );
    // the launcher gives qemu the .fd firmware as raw pflash, as that release's
    // qemu_template.sh did (qemu-system-x86_64 is a stub recording its arguments: no
    // real qemu runs here)
    let args = launch_stubbed(&r.out.join("flatcar_production_qemu_uefi_secure.sh"));
    let code = format!(
        "if=pflash,unit=0,file={}/flatcar_production_qemu_uefi_secure_efi_code.fd,format=raw,readonly=on",
        r.out.display()
    );
    let vars = format!(
        "if=pflash,unit=1,file={}/flatcar_production_qemu_uefi_secure_efi_vars.fd,format=raw",
        r.out.display()
    );
    assert!(args.contains(&code) && args.contains(&vars), "{args:?}");
}

/// Run a launcher with `qemu-system-x86_64` replaced by a stub that writes its
/// arguments, one a line; returns them.
fn launch_stubbed(script: &Path) -> Vec<String> {
    let d = tempfile::tempdir().expect("tmp");
    let stub = d.path().join("qemu-system-x86_64");
    std::fs::write(
        &stub,
        "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$STUB_OUT\"\n",
    )
    .expect("stub");
    sh(Command::new("chmod").arg("0755").arg(&stub));
    let out = d.path().join("args");
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let o = Command::new("bash")
        .arg(script)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", d.path().display()))
        .env("HOME", &home)
        .env("STUB_OUT", &out)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run launcher");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read(&out).lines().map(str::to_owned).collect()
}

/// 3815.2.1: qemu and qemu_uefi_secure were image types of their own (qemu_uefi wrote
/// only its files); from 3815.2.2 on --vendor qemu is refused, pointing at qemu_uefi.
#[test]
fn qemu_types_of_their_own_before_3815_2_2() {
    let rel = release("3815.2.1");
    let r = ok("qemu_uefi,qemu,qemu_uefi_secure", &rel, &[]);
    assert_eq!(
        names(&r.out),
        [
            "flatcar_production_qemu.README",
            "flatcar_production_qemu.sh",
            "flatcar_production_qemu_image.img",
            "flatcar_production_qemu_uefi.README",
            "flatcar_production_qemu_uefi.sh",
            "flatcar_production_qemu_uefi_efi_code.fd",
            "flatcar_production_qemu_uefi_efi_vars.fd",
            "flatcar_production_qemu_uefi_image.img",
            "flatcar_production_qemu_uefi_secure.README",
            "flatcar_production_qemu_uefi_secure.sh",
            "flatcar_production_qemu_uefi_secure_efi_code.fd",
            "flatcar_production_qemu_uefi_secure_efi_vars.fd",
            "flatcar_production_qemu_uefi_secure_image.img",
        ]
    );
    // three images, none a link: each its own qcow2 with the qemu OEM
    let work = tempfile::tempdir().expect("tmp");
    for t in ["qemu", "qemu_uefi_secure"] {
        let img = r.out.join(format!("flatcar_production_{t}_image.img"));
        assert!(!std::fs::symlink_metadata(&img).expect("m").is_symlink());
        sh(Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&img));
        let raw = work.path().join(format!("{t}.raw"));
        sh(Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&img)
            .arg(&raw));
        sgdisk_verify(&raw);
        e2fsck_root(&raw);
        assert_eq!(part(&raw, 9).1, VM_ROOT_SECTORS * 512);
        let (oem, files) = oem_files(&raw);
        assert_eq!(
            files,
            [
                "grub.cfg",
                "oem-release",
                "sysext/active-oem-qemu",
                "sysext/oem-qemu-3815.2.1.raw"
            ]
        );
        assert!(
            read(&oem.path().join("tree/oem-release")).starts_with("ID=qemu\nVERSION_ID=0.0.2\n")
        );
        drop(oem);
        std::fs::remove_file(&raw).expect("rm");
    }
    let bios = read(&r.out.join("flatcar_production_qemu.sh"));
    assert!(bios.contains("\nVM_PFLASH_RO=\nVM_PFLASH_RW=\n"), "{bios}");
    assert!(
        bios.contains("\nVM_NAME='flatcar_production_qemu-3815-2-1'\n"),
        "{bios}"
    );

    let r = run("qemu", &release("3815.2.2"), &[]);
    assert!(!r.o.status.success());
    let err = stderr(&r.o);
    assert!(
        err.contains("vendor 'qemu': Flatcar 3815.2.2 no longer defines it as an image type")
            && err.contains("pass --vendor qemu_uefi"),
        "{err}"
    );
    assert!(names(&r.out).is_empty());
}
