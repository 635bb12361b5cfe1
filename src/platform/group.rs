//! The update group (`stable`, `beta`, `alpha`, `lts`, ...) of a Flatcar image, as
//! Flatcar's `vm_image_util.sh` finds it for the Vagrant box catalogue: the last
//! `GROUP=` line of `/usr/share/flatcar/update.conf` (USR-A) and
//! `/etc/flatcar/update.conf` (ROOT), the latter winning. Read in place and bounded.

use crate::disk::gpt::Gpt;
use crate::disk::layout::FlatcarLayout;
use std::path::Path;

const CAP: u64 = 64 * 1024;

/// The last `GROUP=` value of an update.conf text.
pub fn group_of(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("GROUP="))
        .map(str::to_owned)
}

/// The update group of the Flatcar disk image `image`; the error is one line.
pub fn update_group(image: &Path) -> Result<String, String> {
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", image.display());
    let file = crate::input::open_regular(image).map_err(|e| shown(&e))?;
    let len = file.metadata().map_err(|e| shown(&e))?.len();
    let gpt = Gpt::read_from(&file, len, image).map_err(|e| e.to_string())?;
    let layout = FlatcarLayout::find(gpt, image).map_err(|e| e.to_string())?;
    let mut group = None;
    let usr = &layout.usr_a;
    match crate::fs::btrfs_tree::read_file(
        &file,
        usr.offset(),
        usr.size(),
        "/usr",
        "/usr/share/flatcar/update.conf",
        CAP,
    ) {
        Ok(bytes) => group = group_of(&String::from_utf8_lossy(&bytes)),
        // absent (or in a form only btrfs-progs decode): /etc may still name it
        Err(
            crate::fs::btrfs_tree::TreeError::Path(_)
            | crate::fs::btrfs_tree::TreeError::Unsupported(_),
        ) => {}
        Err(e) => {
            return Err(format!(
                "{} (USR-A)/share/flatcar/update.conf: {e}",
                image.display()
            ))
        }
    }
    if let Ok(fs) = crate::fs::ext4::open(image, &layout.root) {
        let etc = "/etc/flatcar/update.conf";
        if let Ok(m) = fs.metadata(etc) {
            if m.file_type().is_regular_file() && m.len() <= CAP {
                if let Ok(bytes) = fs.read(etc) {
                    if let Some(g) = group_of(&String::from_utf8_lossy(&bytes)) {
                        group = Some(g);
                    }
                }
            }
        }
    }
    group.filter(|g| !g.is_empty()).ok_or_else(|| {
        format!(
            "{}: no GROUP= in /usr/share/flatcar/update.conf or /etc/flatcar/update.conf, so the update group the Vagrant box catalogue names is unknown (Flatcar's SDK stops here too)",
            image.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_group_line_wins() {
        assert_eq!(
            group_of("SERVER=https://x/\nGROUP=beta\nGROUP=stable\n").as_deref(),
            Some("stable")
        );
        assert_eq!(group_of("SERVER=x\n"), None);
        assert_eq!(group_of(" GROUP=x\n"), None);
    }
}
