//! The vendor definitions: `vendors/*.toml` compiled into the binary (plus any given
//! with `--vendors-dir`), parsed and validated into [`Vendor`] values; the disk layouts
//! of `vendors/layouts.toml` and the pre-4722 `oem-release` table of
//! `vendors/oem-release.toml`, both keyed by Flatcar release. Disk format, config and
//! bundle names are enums here, mapped to what they mean in one place each.

use crate::arch::Arch;
use crate::format::{DiskFormat, VmdkAdapter, VmdkSubformat};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/vendor_files.rs"));

/// Flatcar's `DISK_FORMAT` names (`vm_image_util.sh`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormatName {
    Raw,
    /// `qemu-img convert -c -O qcow2 -o compat=0.10`
    Qcow2,
    /// dynamic VHD, force_size
    Vhd,
    VhdFixed,
    Vhdx,
    VmdkIde,
    VmdkScsi,
    VmdkStream,
}

impl DiskFormatName {
    /// What flatbake writes for this name.
    pub fn format(self) -> DiskFormat {
        let vmdk = |subformat, adapter| DiskFormat::Vmdk { subformat, adapter };
        match self {
            DiskFormatName::Raw => DiskFormat::Raw,
            // Flatcar always compresses its qcow2 images (qemu-img convert -c)
            DiskFormatName::Qcow2 => DiskFormat::Qcow2 { compressed: true },
            DiskFormatName::Vhd => DiskFormat::VhdDynamic,
            DiskFormatName::VhdFixed => DiskFormat::VhdFixed,
            DiskFormatName::Vhdx => DiskFormat::Vhdx,
            DiskFormatName::VmdkIde => vmdk(VmdkSubformat::MonolithicSparse, VmdkAdapter::Ide),
            DiskFormatName::VmdkScsi => {
                vmdk(VmdkSubformat::MonolithicSparse, VmdkAdapter::LsiLogic)
            }
            DiskFormatName::VmdkStream => {
                vmdk(VmdkSubformat::StreamOptimized, VmdkAdapter::LsiLogic)
            }
        }
    }

    /// Flatcar's file extension for it (`_disk_ext`).
    pub fn extension(self) -> &'static str {
        match self {
            DiskFormatName::Raw => "bin",
            DiskFormatName::Qcow2 => "img",
            DiskFormatName::Vhd | DiskFormatName::VhdFixed => "vhd",
            DiskFormatName::Vhdx => "vhdx",
            DiskFormatName::VmdkIde | DiskFormatName::VmdkScsi | DiskFormatName::VmdkStream => {
                "vmdk"
            }
        }
    }

    /// The name as written in the vendor files and by Flatcar.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormatName::Raw => "raw",
            DiskFormatName::Qcow2 => "qcow2",
            DiskFormatName::Vhd => "vhd",
            DiskFormatName::VhdFixed => "vhd_fixed",
            DiskFormatName::Vhdx => "vhdx",
            DiskFormatName::VmdkIde => "vmdk_ide",
            DiskFormatName::VmdkScsi => "vmdk_scsi",
            DiskFormatName::VmdkStream => "vmdk_stream",
        }
    }
}

/// Flatcar's `CONF_FORMAT` names: configuration written beside the disk.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Conf {
    /// launcher + README + UEFI firmware, plus the `qemu` and `qemu_uefi_secure` siblings
    QemuUefi,
    Vmx,
    OvfVmware,
    OvfVirtualbox,
    Vagrant,
    Xl,
}

/// Flatcar's `BUNDLE_FORMAT` names (`gce_tar` is its `gce` conf, which tars the disk).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bundle {
    GceTar,
    Ova,
    Box,
}

/// A release-dependent difference: what the vendor was in releases before `release`
/// (major version). Several apply in order, the nearest first.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Before {
    pub release: u32,
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub grub_cfg: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
}

/// One vendor image type, as its data file describes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub oem_id: Option<String>,
    #[serde(default)]
    pub grub_cfg: Option<String>,
    #[serde(default)]
    pub disk_format: Option<DiskFormatName>,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    #[serde(default)]
    pub conf: Option<Conf>,
    #[serde(default)]
    pub bundle: Option<Bundle>,
    #[serde(default)]
    pub release_files: Vec<String>,
    #[serde(default)]
    pub unsupported: Option<String>,
    /// Architectures Flatcar builds this vendor for (systemd names); empty: all.
    #[serde(default)]
    pub arches: Vec<String>,
    /// First release (major version) whose `vm_image_util.sh` defines the vendor.
    #[serde(default)]
    pub since: Option<u32>,
    /// Last release (major version) that defines it, when it was dropped.
    #[serde(default)]
    pub until: Option<u32>,
    /// First release that publishes `oem-<oem_id>.raw` for it (before, its OEM content
    /// came from a package that is not published).
    #[serde(default)]
    pub oem_sysext_since: Option<u32>,
    #[serde(default)]
    pub before: Vec<Before>,
}

/// A disk layout: how large ROOT becomes, by release.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default)]
    pub root_sectors: Option<u64>,
    /// ROOT sizes of releases before `release`, nearest first.
    #[serde(default)]
    pub before: Vec<LayoutBefore>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LayoutBefore {
    pub release: u32,
    pub root_sectors: Option<u64>,
}

impl Layout {
    /// ROOT size in sectors for release `major` (None: as released).
    pub fn root_sectors_for(&self, major: Option<u32>) -> Option<u64> {
        let mut r = self.root_sectors;
        if let Some(m) = major {
            let mut bs: Vec<&LayoutBefore> = self.before.iter().collect();
            bs.sort_by_key(|b| std::cmp::Reverse(b.release));
            for b in bs {
                if m < b.release {
                    r = b.root_sectors;
                }
            }
        }
        r
    }
}

/// `oem-release` of one OEM as Flatcar's common-oem-files package wrote it before the
/// OEM sysexts carried their own metadata (releases before
/// [`SYSEXT_OEM_RELEASE_SINCE`]), from the `oem-<id>` ebuild of that release.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackageOemRelease {
    pub since: u32,
    pub version: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub home_url: Option<String>,
}

/// From this release on, `oem-release` is derived from the OEM sysext's
/// extension-release (`SYSEXT_*` fields); before, a package wrote it.
pub const SYSEXT_OEM_RELEASE_SINCE: u32 = 4722;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("vendor file {file}: {what}")]
    Bad { file: String, what: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// All known vendors and layouts.
#[derive(Clone, Debug)]
pub struct Registry {
    pub vendors: BTreeMap<String, Vendor>,
    pub layouts: BTreeMap<String, Layout>,
    /// OEM id -> rows, for releases before [`SYSEXT_OEM_RELEASE_SINCE`].
    pub package_oem_release: BTreeMap<String, Vec<PackageOemRelease>>,
}

impl Registry {
    /// The built-in vendors, plus `*.toml` in `extra` (which override built-ins).
    pub fn load(extra: Option<&Path>) -> Result<Registry, RegistryError> {
        let layouts: BTreeMap<String, Layout> =
            toml::from_str(LAYOUTS).map_err(|e| RegistryError::Bad {
                file: "layouts.toml".into(),
                what: e.to_string(),
            })?;
        let package_oem_release = toml::from_str(OEM_RELEASE).map_err(|e| RegistryError::Bad {
            file: "oem-release.toml".into(),
            what: e.to_string(),
        })?;
        let mut reg = Registry {
            vendors: BTreeMap::new(),
            layouts,
            package_oem_release,
        };
        for (name, text) in VENDOR_FILES {
            reg.add(name, text, &format!("vendors/{name}.toml"))?;
        }
        if let Some(dir) = extra {
            let rd = std::fs::read_dir(dir)
                .map_err(|e| RegistryError::Io(dir.display().to_string(), e))?;
            for entry in rd.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = crate::input::read_text(&path, crate::input::TEXT_CAP)
                    .map_err(|e| RegistryError::Io(path.display().to_string(), e))?;
                reg.add(&name, &text, &path.display().to_string())?;
            }
        }
        Ok(reg)
    }

    fn add(&mut self, name: &str, text: &str, file: &str) -> Result<(), RegistryError> {
        let bad = |what: String| RegistryError::Bad {
            file: file.to_owned(),
            what,
        };
        let mut v: Vendor =
            toml::from_str(text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))?;
        v.name = name.to_owned();
        if v.unsupported.is_none() {
            let layout = v.layout.as_deref().ok_or_else(|| bad("no layout".into()))?;
            for l in
                std::iter::once(layout).chain(v.before.iter().filter_map(|b| b.layout.as_deref()))
            {
                if !self.layouts.contains_key(l) {
                    return Err(bad(format!("unknown layout {l}")));
                }
            }
            if v.disk_format.is_none() {
                return Err(bad("no disk_format".into()));
            }
            if v.oem_id.is_some() != v.grub_cfg.is_some() {
                return Err(bad("oem_id and grub_cfg go together".into()));
            }
            for a in &v.arches {
                a.parse::<Arch>().map_err(bad)?;
            }
        }
        self.vendors.insert(name.to_owned(), v);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Vendor> {
        self.vendors.get(name)
    }

    /// The package-era `oem-release` row for `oem_id` in release `major`.
    pub fn package_oem_release(&self, oem_id: &str, major: u32) -> Option<&PackageOemRelease> {
        self.package_oem_release
            .get(oem_id)?
            .iter()
            .filter(|r| r.since <= major)
            .max_by_key(|r| r.since)
    }
}

/// The major version (`4593` of `4593.2.5`) of a Flatcar version string.
pub fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

impl Vendor {
    /// Whether Flatcar builds this vendor for `arch`.
    pub fn builds_for(&self, arch: Arch) -> bool {
        self.arches.is_empty()
            || self
                .arches
                .iter()
                .any(|a| a.parse::<Arch>().ok() == Some(arch))
    }

    /// Why this vendor cannot be made for release `version`, if it cannot.
    pub fn release_problem(&self, version: &str) -> Option<String> {
        let m = major(version)?;
        let n = &self.name;
        if let Some(s) = self.since.filter(|s| m < *s) {
            return Some(format!(
                "vendor '{n}': Flatcar {version} does not define it (its vm_image_util.sh has it from release {s} on); pick a newer release"
            ));
        }
        if let Some(u) = self.until.filter(|u| m > *u) {
            return Some(format!(
                "vendor '{n}': Flatcar {version} no longer defines it (releases {}-{u} did); pick one of those releases",
                self.since.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        if let (Some(s), Some(id)) = (self.oem_sysext_since.filter(|s| m < *s), &self.oem_id) {
            let upto = self
                .until
                .map(|u| format!("releases {s}-{u}"))
                .unwrap_or_else(|| format!("releases {s} and later"));
            return Some(format!(
                "vendor '{n}': Flatcar {version} publishes no oem-{id}.raw (its OEM content came from a package that is not published); {upto} ship oem-{id}.raw"
            ));
        }
        None
    }

    /// The vendor as release `version` defines it: layout, grub.cfg and extension of
    /// the nearest `[[before]]` entries that apply.
    pub fn for_release(&self, version: Option<&str>) -> Vendor {
        let mut v = self.clone();
        let Some(m) = version.and_then(major) else {
            return v;
        };
        let mut bs: Vec<&Before> = self.before.iter().filter(|b| m < b.release).collect();
        // the nearest boundary last, so it wins
        bs.sort_by_key(|b| std::cmp::Reverse(b.release));
        for b in bs {
            if let Some(l) = &b.layout {
                v.layout = Some(l.clone());
            }
            if let Some(g) = &b.grub_cfg {
                v.grub_cfg = Some(g.clone());
            }
            if let Some(e) = &b.extension {
                v.extension = Some(e.clone());
            }
        }
        v
    }

    /// File extension of the disk image.
    pub fn disk_extension(&self) -> &str {
        if let Some(e) = &self.extension {
            return e;
        }
        self.disk_format.map(|f| f.extension()).unwrap_or("bin")
    }

    /// Flatcar's name for the disk image: `flatcar_production_<vendor>_image.<ext>`.
    pub fn disk_name(&self) -> String {
        format!(
            "flatcar_production_{}_image.{}",
            self.name,
            self.disk_extension()
        )
    }

    /// `flatcar_production_<vendor><suffix>` for the other outputs.
    pub fn file_name(&self, suffix: &str) -> String {
        format!("flatcar_production_{}{suffix}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_vendor_parses() {
        let r = Registry::load(None).unwrap();
        for name in [
            "qemu_uefi",
            "azure",
            "gce",
            "vmware",
            "vmware_ova",
            "vagrant",
            "exoscale",
            "xen",
            "hyperv_vhdx",
            "packet",
        ] {
            assert!(r.get(name).is_some(), "{name}");
        }
        assert!(r.get("pxe").unwrap().unsupported.is_some());
        let q = r.get("qemu_uefi").unwrap();
        assert_eq!(q.disk_name(), "flatcar_production_qemu_uefi_image.img");
        assert!(q
            .grub_cfg
            .as_deref()
            .unwrap()
            .starts_with("set oem_id=\"qemu\"\n"));
        assert_eq!(
            r.get("ami")
                .unwrap()
                .grub_cfg
                .as_deref()
                .unwrap()
                .lines()
                .next(),
            Some("set oem_id=\"ec2\"")
        );
        assert_eq!(r.layouts["vm"].root_sectors, Some(12943360));
        assert_eq!(r.get("exoscale").unwrap().virtual_size, Some(10 << 30));
    }

    #[test]
    fn release_dependent_facts() {
        let r = Registry::load(None).unwrap();
        // azure kept its 30 GB disk from 4515 on by shrinking ROOT
        assert_eq!(
            r.layouts["azure"].root_sectors_for(Some(4459)),
            Some(58875904)
        );
        assert_eq!(
            r.layouts["azure"].root_sectors_for(Some(4515)),
            Some(50876416)
        );
        assert_eq!(r.layouts["azure"].root_sectors_for(None), Some(50876416));
        // ami and akamai used the base layout before 4487
        for n in ["ami", "akamai"] {
            let v = r.get(n).unwrap();
            assert_eq!(
                v.for_release(Some("4459.2.0")).layout.as_deref(),
                Some("base")
            );
            assert_eq!(
                v.for_release(Some("4487.0.0")).layout.as_deref(),
                Some("vm")
            );
        }
        // vendors whose OEM came from a package before 4722
        let vb = r.get("virtualbox").unwrap();
        let e = vb.release_problem("4593.2.5").unwrap();
        assert!(
            e.contains("oem-virtualbox.raw") && e.contains("4722 and later"),
            "{e}"
        );
        assert!(vb.release_problem("4722.0.0").is_none());
        // dropped vendors name the range that had them
        let p = r.get("packet").unwrap();
        assert!(p.release_problem("4593.2.5").is_none());
        let e = p.release_problem("4722.0.0").unwrap();
        assert!(e.contains("2512-4694"), "{e}");
        // oraclecloud is new in 4722
        assert!(r
            .get("oraclecloud")
            .unwrap()
            .release_problem("4593.2.5")
            .is_some());
        assert_eq!(major("4593.2.5"), Some(4593));
        let q = r.package_oem_release("qemu", 4459).unwrap();
        assert_eq!(q.version, "0.0.2");
        assert_eq!(
            r.package_oem_release("vmware", 4593).unwrap().version,
            "13.0.5"
        );
        assert!(!r.get("gce").unwrap().builds_for(Arch::Arm64));
        assert!(r.get("azure").unwrap().builds_for(Arch::Arm64));
    }

    #[test]
    fn extra_dir_and_bad_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("mycloud.toml"),
            "description = \"x\"\nlayout = \"vm\"\ndisk_format = \"qcow2\"\n",
        )
        .unwrap();
        let r = Registry::load(Some(d.path())).unwrap();
        assert_eq!(
            r.get("mycloud").unwrap().disk_name(),
            "flatcar_production_mycloud_image.img"
        );
        std::fs::write(
            d.path().join("bad.toml"),
            "description = \"x\"\nlayout = \"vm\"\ndisk_format = \"floppy\"\n",
        )
        .unwrap();
        let e = Registry::load(Some(d.path())).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("floppy"), "{e}");
    }
}
