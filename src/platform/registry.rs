//! The vendor definitions: `vendors/*.toml` compiled into the binary (plus any given
//! with `--vendors-dir`), parsed and validated into [`Vendor`] values; the disk layouts
//! of `vendors/layouts.toml` and the pre-4722 `oem-release` table of
//! `vendors/oem-release.toml`, both keyed by Flatcar release. Disk format, config and
//! bundle names are enums here, mapped to what they mean in one place each.

use super::version::{Since, Ver};
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

/// A release-dependent difference: what the vendor was in releases that do not have
/// `release` yet ([`Since`]: a major, a point release, or backports and the main line).
/// Several apply in order, the nearest first.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Before {
    pub release: Since,
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub grub_cfg: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub ovf_template: Option<String>,
    #[serde(default)]
    pub box_template: Option<String>,
    #[serde(default)]
    pub oem_template: Option<String>,
    #[serde(default)]
    pub siblings: Option<Vec<String>>,
    #[serde(default)]
    pub release_files: Option<Vec<String>>,
    #[serde(default)]
    pub oem_sysext: Option<bool>,
    #[serde(default)]
    pub oem_release: Option<bool>,
}

fn yes() -> bool {
    true
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
    /// First release whose `vm_image_util.sh` defines the vendor.
    #[serde(default)]
    pub since: Option<Since>,
    /// Last release (major version) that defines it, when it was dropped.
    #[serde(default)]
    pub until: Option<u32>,
    /// First release that publishes `oem-<oem_id>.raw` for it (before, its OEM content
    /// came from a package that is not published).
    #[serde(default)]
    pub oem_sysext_since: Option<Since>,
    /// Whether the OEM partition holds the release's `oem-<id>.raw` (false: only
    /// `grub.cfg` and, with `oem_release`, `oem-release`, as an OEM package of the
    /// release wrote them; no sysext is installed).
    #[serde(default = "yes")]
    pub oem_sysext: bool,
    /// Whether the OEM partition has an `oem-release` (`vendors/oem-release.toml`
    /// before 4722, else from the OEM sysext).
    #[serde(default = "yes")]
    pub oem_release: bool,
    /// The OVF template (under `vendors/templates/`) of `ovf_virtualbox` and `vagrant`.
    #[serde(default)]
    pub ovf_template: Option<String>,
    /// The Vagrant box template: `vendors/templates/box/NAME/` holds the box's files,
    /// `vendors/templates/box/NAME.json` the box catalogue.
    #[serde(default)]
    pub box_template: Option<String>,
    /// Plain files an OEM package of the release wrote into the OEM partition besides
    /// grub.cfg and oem-release (`vendors/templates/oem/NAME/`, `@@OEM_VERSION_ID@@`
    /// being the package's version from `vendors/oem-release.toml`); with
    /// `oem_sysext = false` only.
    #[serde(default)]
    pub oem_template: Option<String>,
    /// Image types whose launcher and image link this vendor writes too (qemu_uefi:
    /// `qemu` on amd64 and `qemu_uefi_secure`, since Flatcar stopped building them
    /// as image types of their own).
    #[serde(default)]
    pub siblings: Vec<String>,
    /// The releases that no longer define it as an image type (it is written by
    /// `moved_to` there).
    #[serde(default)]
    pub removed: Option<Since>,
    #[serde(default)]
    pub moved_to: Option<String>,
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
    pub release: Since,
    pub root_sectors: Option<u64>,
}

impl Layout {
    /// ROOT size in sectors for release `ver` (None: as released).
    pub fn root_sectors_for(&self, ver: Option<Ver>) -> Option<u64> {
        let mut r = self.root_sectors;
        if let Some(v) = ver {
            let mut bs: Vec<&LayoutBefore> = self.before.iter().collect();
            bs.sort_by_key(|b| std::cmp::Reverse(b.release.main_line()));
            for b in bs {
                if !b.release.has(v) {
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
    /// The releases that have this ebuild version; the last row that applies wins.
    pub since: Since,
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
            // every template the vendor or one of its release ranges names must exist
            let named = |own: &Option<String>, per: fn(&Before) -> Option<&String>| {
                own.iter()
                    .chain(v.before.iter().filter_map(per))
                    .cloned()
                    .collect::<Vec<String>>()
            };
            for t in named(&v.ovf_template, |b| b.ovf_template.as_ref()) {
                if template(&t).is_none() {
                    return Err(bad(format!("no template vendors/templates/{t}")));
                }
            }
            for t in named(&v.oem_template, |b| b.oem_template.as_ref()) {
                if oem_files(&t).is_empty() {
                    return Err(bad(format!("no OEM template vendors/templates/oem/{t}/")));
                }
            }
            for t in named(&v.box_template, |b| b.box_template.as_ref()) {
                if box_files(&t).is_empty() || template(&format!("box/{t}.json")).is_none() {
                    return Err(bad(format!(
                        "no box template vendors/templates/box/{t}/ with box/{t}.json"
                    )));
                }
            }
        }
        self.vendors.insert(name.to_owned(), v);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Vendor> {
        self.vendors.get(name)
    }

    /// The package-era `oem-release` row for `oem_id` in release `ver`: the last row
    /// (rows are listed oldest first) whose releases include it.
    pub fn package_oem_release(&self, oem_id: &str, ver: Ver) -> Option<&PackageOemRelease> {
        self.package_oem_release
            .get(oem_id)?
            .iter()
            .rfind(|r| r.since.has(ver))
    }
}

/// The major version (`4593` of `4593.2.5`) of a Flatcar version string.
pub fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// The template `path` under `vendors/templates/`.
pub fn template(path: &str) -> Option<&'static str> {
    TEMPLATE_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, t)| *t)
}

/// The files of OEM template `name` (`vendors/templates/oem/NAME/`), as `(path under
/// the OEM partition, text)`.
pub fn oem_files(name: &str) -> Vec<(&'static str, &'static str)> {
    let dir = format!("oem/{name}/");
    TEMPLATE_FILES
        .iter()
        .filter_map(|(p, t)| p.strip_prefix(dir.as_str()).map(|n| (n, *t)))
        .collect()
}

/// The files of box template `name` (`vendors/templates/box/NAME/`), as
/// `(file name, text)`, in Flatcar's box order: Vagrantfile first.
pub fn box_files(name: &str) -> Vec<(&'static str, &'static str)> {
    let dir = format!("box/{name}/");
    let mut v: Vec<(&str, &str)> = TEMPLATE_FILES
        .iter()
        .filter_map(|(p, t)| p.strip_prefix(dir.as_str()).map(|n| (n, *t)))
        .collect();
    v.sort_by_key(|(n, _)| (*n != "Vagrantfile", *n));
    v
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
        let v = Ver::parse(version)?;
        let m = v.0;
        let n = &self.name;
        if let Some(s) = self.since.as_ref().filter(|s| !s.has(v)) {
            return Some(format!(
                "vendor '{n}': Flatcar {version} does not define it (its vm_image_util.sh has it from release {} on); pick a newer release",
                s.describe()
            ));
        }
        if let Some(r) = self.removed.as_ref().filter(|r| r.has(v)) {
            let instead = self
                .moved_to
                .as_ref()
                .map(|t| format!("pass --vendor {t}, which writes its files there"))
                .unwrap_or_else(|| "pick an older release".to_owned());
            return Some(format!(
                "vendor '{n}': Flatcar {version} no longer defines it as an image type (gone from releases {}); {instead}",
                r.describe()
            ));
        }
        if let Some(u) = self.until.filter(|u| m > *u) {
            return Some(format!(
                "vendor '{n}': Flatcar {version} no longer defines it (releases {}-{u} did); pick one of those releases",
                self.since
                    .as_ref()
                    .map(Since::describe)
                    .unwrap_or_default()
            ));
        }
        let then = self.for_release(Some(version));
        if let (Some(s), Some(id), true) = (
            self.oem_sysext_since.as_ref().filter(|s| !s.has(v)),
            &self.oem_id,
            then.oem_sysext,
        ) {
            let upto = self
                .until
                .map(|u| format!("releases {}-{u}", s.describe()))
                .unwrap_or_else(|| format!("releases {} and later", s.describe()));
            let main = s.main_line().map(|x| x.to_string()).unwrap_or_default();
            return Some(format!(
                "vendor '{n}': Flatcar {version} built its OEM partition from the oem-{id} package (programs and configs no release file carries), not from an oem-{id}.raw; {upto} ship oem-{id}.raw: use --release {main} or later, or Flatcar's own {} of {version}",
                then.published_name()
            ));
        }
        None
    }

    /// The vendor as release `version` defines it: layout, grub.cfg and extension of
    /// the nearest `[[before]]` entries that apply.
    pub fn for_release(&self, version: Option<&str>) -> Vendor {
        let mut v = self.clone();
        let Some(ver) = version.and_then(Ver::parse) else {
            return v;
        };
        let mut bs: Vec<&Before> = self.before.iter().filter(|b| !b.release.has(ver)).collect();
        // the nearest boundary last, so it wins
        bs.sort_by_key(|b| std::cmp::Reverse(b.release.main_line()));
        for b in bs {
            if let Some(t) = &b.ovf_template {
                v.ovf_template = Some(t.clone());
            }
            if let Some(t) = &b.box_template {
                v.box_template = Some(t.clone());
            }
            if let Some(t) = &b.oem_template {
                v.oem_template = Some(t.clone());
            }
            if let Some(x) = &b.siblings {
                v.siblings = x.clone();
            }
            if let Some(x) = &b.release_files {
                v.release_files = x.clone();
            }
            if let Some(x) = b.oem_sysext {
                v.oem_sysext = x;
            }
            if let Some(x) = b.oem_release {
                v.oem_release = x;
            }
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

    /// The image types whose launchers this vendor writes on `arch`: its own, then its
    /// siblings (`qemu`, BIOS, on amd64 only).
    pub fn launcher_types(&self, arch: Arch) -> Vec<String> {
        std::iter::once(self.name.clone())
            .chain(
                self.siblings
                    .iter()
                    .filter(|s| *s != "qemu" || arch == Arch::X86_64)
                    .cloned(),
            )
            .collect()
    }

    /// The UEFI firmware (code, variables) the `type_name` launcher uses: release files
    /// named `flatcar_production_<type>_efi_code.*` / `_efi_vars.*` (`.fd` before
    /// 4152, `.qcow2` since).
    pub fn firmware(&self, type_name: &str) -> Option<(String, String)> {
        let find = |what: &str| {
            let prefix = format!("flatcar_production_{type_name}_efi_{what}.");
            self.release_files
                .iter()
                .find(|f| f.starts_with(&prefix))
                .cloned()
        };
        Some((find("code")?, find("vars")?))
    }

    /// The file Flatcar publishes for this vendor: its bundle, else its disk image.
    pub fn published_name(&self) -> String {
        match self.bundle {
            Some(Bundle::Box) => self.file_name(".box"),
            Some(Bundle::Ova) => self.file_name(".ova"),
            Some(Bundle::GceTar) => self.file_name(".tar.gz"),
            None => self.disk_name(),
        }
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
            r.layouts["azure"].root_sectors_for(Some(Ver(4459, 2, 0))),
            Some(58875904)
        );
        assert_eq!(
            r.layouts["azure"].root_sectors_for(Some(Ver(4515, 0, 0))),
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
        // azure's shrink already in alpha 4487.0.1, not 4487.0.0
        assert_eq!(
            r.layouts["azure"].root_sectors_for(Some(Ver(4487, 0, 0))),
            Some(58875904)
        );
        assert_eq!(
            r.layouts["azure"].root_sectors_for(Some(Ver(4487, 0, 1))),
            Some(50876416)
        );
        // vendors whose OEM came from a package of programs before 4722
        let e = r
            .get("exoscale")
            .unwrap()
            .release_problem("4593.2.5")
            .unwrap();
        assert!(
            e.contains("oem-exoscale.raw")
                && e.contains("4722 and later")
                && e.contains("--release 4722")
                && e.contains("flatcar_production_exoscale_image.img of 4593.2.5"),
            "{e}"
        );
        // virtualbox's came from plain files flatbake knows: made, without a sysext
        let vb = r.get("virtualbox").unwrap();
        assert!(vb.release_problem("4593.2.5").is_none());
        assert!(!vb.for_release(Some("4593.2.5")).oem_sysext);
        assert!(vb.for_release(Some("4722.0.0")).oem_sysext);
        assert_eq!(
            vb.for_release(Some("4593.2.5")).ovf_template.as_deref(),
            Some("virtualbox-2512.ovf")
        );
        assert!(
            !r.get("ami_vmdk")
                .unwrap()
                .for_release(Some("4459.2.0"))
                .oem_sysext
        );
        // point releases: stackit backported, nutanix not in 4487
        let st = r.get("stackit").unwrap();
        assert!(st.release_problem("4230.2.1").is_none());
        assert!(st.release_problem("4344.0.0").is_some());
        assert!(r
            .get("nutanix")
            .unwrap()
            .release_problem("4487.0.1")
            .is_some());
        assert!(r
            .get("nutanix")
            .unwrap()
            .release_problem("4459.2.0")
            .is_none());
        assert_eq!(
            r.get("scaleway")
                .unwrap()
                .for_release(Some("3941.0.0"))
                .disk_extension(),
            "img"
        );
        assert_eq!(
            r.package_oem_release("azure", Ver(4081, 0, 0))
                .unwrap()
                .version,
            "2.9.1.1-r2"
        );
        assert_eq!(
            r.package_oem_release("azure", Ver(4081, 3, 5))
                .unwrap()
                .version,
            "2.9.1.1-r3"
        );
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
        let q = r.package_oem_release("qemu", Ver(4459, 2, 0)).unwrap();
        assert_eq!(q.version, "0.0.2");
        assert_eq!(
            r.package_oem_release("vmware", Ver(4593, 2, 5))
                .unwrap()
                .version,
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
