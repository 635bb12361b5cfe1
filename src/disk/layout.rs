//! Flatcar's partitions by role: which GPT entry is the ESP, USR-A, OEM, ROOT...
//!
//! Partitions are found by their GPT name *and* type GUID, never by number or offset:
//! current releases and old LTS releases place them differently.

use super::gpt::{Gpt, Guid, Partition};
use std::path::{Path, PathBuf};

pub const TYPE_ESP: Guid = Guid::from_str_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
pub const TYPE_BIOS_BOOT: Guid = Guid::from_str_const("21686148-6449-6E6F-744E-656564454649");
pub const TYPE_FLATCAR_USR: Guid = Guid::from_str_const("5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6");
pub const TYPE_LINUX_DATA: Guid = Guid::from_str_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
pub const TYPE_FLATCAR_RESERVED: Guid =
    Guid::from_str_const("C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0");
pub const TYPE_FLATCAR_ROOT: Guid = Guid::from_str_const("3884DD41-8582-4404-B9A8-E9B84F2DF50E");

/// A role a partition plays in a Flatcar disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Esp,
    UsrA,
    Oem,
    Root,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Esp => "EFI-SYSTEM",
            Role::UsrA => "USR-A",
            Role::Oem => "OEM",
            Role::Root => "ROOT",
        }
    }
    fn type_guid(self) -> Guid {
        match self {
            Role::Esp => TYPE_ESP,
            Role::UsrA => TYPE_FLATCAR_USR,
            Role::Oem => TYPE_LINUX_DATA,
            Role::Root => TYPE_FLATCAR_ROOT,
        }
    }
}

/// The partitions flatbake works with, located in a GPT.
#[derive(Clone, Debug)]
pub struct FlatcarLayout {
    pub gpt: Gpt,
    pub esp: Partition,
    pub usr_a: Partition,
    pub oem: Partition,
    pub root: Partition,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{path}: not a Flatcar image: {what}")]
pub struct LayoutError {
    pub path: PathBuf,
    pub what: String,
}

impl FlatcarLayout {
    pub fn find(gpt: Gpt, path: &Path) -> Result<FlatcarLayout, LayoutError> {
        let find = |role: Role| -> Result<Partition, LayoutError> {
            let mut hits = gpt.partitions.iter().filter(|p| p.name == role.label());
            let p = hits.next().ok_or_else(|| LayoutError {
                path: path.to_owned(),
                what: format!(
                    "no partition named {} (partitions: {})",
                    role.label(),
                    gpt.partitions
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
            if hits.next().is_some() {
                return Err(LayoutError {
                    path: path.to_owned(),
                    what: format!("more than one partition is named {}", role.label()),
                });
            }
            if p.type_guid != role.type_guid() {
                return Err(LayoutError {
                    path: path.to_owned(),
                    what: format!(
                        "partition {} ({}) has type {}, expected {}",
                        p.number,
                        p.name,
                        p.type_guid,
                        role.type_guid()
                    ),
                });
            }
            Ok(p.clone())
        };
        Ok(FlatcarLayout {
            esp: find(Role::Esp)?,
            usr_a: find(Role::UsrA)?,
            oem: find(Role::Oem)?,
            root: find(Role::Root)?,
            gpt,
        })
    }

    pub fn get(&self, role: Role) -> &Partition {
        match role {
            Role::Esp => &self.esp,
            Role::UsrA => &self.usr_a,
            Role::Oem => &self.oem,
            Role::Root => &self.root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::gpt::tests::make_disk;
    use std::io::Write;

    fn layout_of(parts: &[(Guid, u64, u64, &str)]) -> Result<FlatcarLayout, String> {
        let d = make_disk(4096, parts);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&d).unwrap();
        let gpt = Gpt::read(f.path()).map_err(|e| e.to_string())?;
        FlatcarLayout::find(gpt, f.path()).map_err(|e| e.to_string())
    }

    #[test]
    fn finds_by_name_and_type() {
        let l = layout_of(&[
            (TYPE_ESP, 40, 99, "EFI-SYSTEM"),
            (TYPE_FLATCAR_USR, 100, 199, "USR-A"),
            (TYPE_LINUX_DATA, 300, 399, "OEM"),
            (TYPE_FLATCAR_ROOT, 400, 4000, "ROOT"),
        ])
        .unwrap();
        assert_eq!(l.root.first_lba, 400);
        assert_eq!(l.oem.number, 3);
    }

    #[test]
    fn rejects_foreign_layouts() {
        let e = layout_of(&[(TYPE_LINUX_DATA, 40, 4000, "root")]).unwrap_err();
        assert!(e.contains("no partition named EFI-SYSTEM"), "{e}");
        let e = layout_of(&[
            (TYPE_ESP, 40, 99, "EFI-SYSTEM"),
            (TYPE_FLATCAR_USR, 100, 199, "USR-A"),
            (TYPE_LINUX_DATA, 300, 399, "OEM"),
            (TYPE_LINUX_DATA, 400, 4000, "ROOT"),
        ])
        .unwrap_err();
        assert!(e.contains("has type"), "{e}");
    }
}
