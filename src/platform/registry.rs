//! The vendor definitions: `vendors/*.toml` compiled into the binary (plus any given
//! with `--vendors-dir`), parsed and validated into [`Vendor`] values, and the disk
//! layouts of `vendors/layouts.toml`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/vendor_files.rs"));

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
    pub disk_format: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    #[serde(default)]
    pub conf: Option<String>,
    #[serde(default)]
    pub bundle: Option<String>,
    #[serde(default)]
    pub release_files: Vec<String>,
    #[serde(default)]
    pub unsupported: Option<String>,
}

/// A disk layout: how large ROOT becomes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default)]
    pub root_sectors: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("vendor file {file}: {what}")]
    Bad { file: String, what: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

pub const DISK_FORMATS: &[&str] = &[
    "raw",
    "qcow2",
    "vhd",
    "vhd_fixed",
    "vhdx",
    "vmdk_ide",
    "vmdk_scsi",
    "vmdk_stream",
];
pub const CONFS: &[&str] = &[
    "qemu_uefi",
    "vmx",
    "ovf_vmware",
    "ovf_virtualbox",
    "vagrant",
    "xl",
];
pub const BUNDLES: &[&str] = &["gce_tar", "ova", "box"];

/// All known vendors and layouts.
#[derive(Clone, Debug)]
pub struct Registry {
    pub vendors: BTreeMap<String, Vendor>,
    pub layouts: BTreeMap<String, Layout>,
}

impl Registry {
    /// The built-in vendors, plus `*.toml` in `extra` (which override built-ins).
    pub fn load(extra: Option<&Path>) -> Result<Registry, RegistryError> {
        let layouts: BTreeMap<String, Layout> =
            toml::from_str(LAYOUTS).map_err(|e| RegistryError::Bad {
                file: "layouts.toml".into(),
                what: e.to_string(),
            })?;
        let mut reg = Registry {
            vendors: BTreeMap::new(),
            layouts,
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
            if !self.layouts.contains_key(layout) {
                return Err(bad(format!("unknown layout {layout}")));
            }
            let fmt = v
                .disk_format
                .as_deref()
                .ok_or_else(|| bad("no disk_format".into()))?;
            if !DISK_FORMATS.contains(&fmt) {
                return Err(bad(format!(
                    "unknown disk_format {fmt} (known: {})",
                    DISK_FORMATS.join(", ")
                )));
            }
            if let Some(c) = &v.conf {
                if !CONFS.contains(&c.as_str()) {
                    return Err(bad(format!("unknown conf {c}")));
                }
            }
            if let Some(b) = &v.bundle {
                if !BUNDLES.contains(&b.as_str()) {
                    return Err(bad(format!("unknown bundle {b}")));
                }
            }
            if v.oem_id.is_some() != v.grub_cfg.is_some() {
                return Err(bad("oem_id and grub_cfg go together".into()));
            }
        }
        self.vendors.insert(name.to_owned(), v);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Vendor> {
        self.vendors.get(name)
    }
}

impl Vendor {
    /// File extension of the disk image.
    pub fn disk_extension(&self) -> &str {
        if let Some(e) = &self.extension {
            return e;
        }
        match self.disk_format.as_deref() {
            Some("raw") => "bin",
            Some("qcow2") => "img",
            Some("vhd" | "vhd_fixed") => "vhd",
            Some("vhdx") => "vhdx",
            Some("vmdk_ide" | "vmdk_scsi" | "vmdk_stream") => "vmdk",
            _ => "bin",
        }
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
        assert!(
            e.contains("bad.toml") && e.contains("unknown disk_format floppy"),
            "{e}"
        );
    }
}
