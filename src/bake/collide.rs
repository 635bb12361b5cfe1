//! Who owns what in ROOT and where installs may go: the image's state as planning
//! sees it ([`RootState`]), which old extension image flatbake may remove on a rebake
//! ([`owned`]: only a regular file it installed for that name, directly in that
//! extension's install directory), and install paths that collide with each other,
//! with what flatbake writes besides, with directories systemd or the boot process
//! own, or with what the image holds ([`collisions`]).

use super::place::{Extension, Target, OEM_MOUNT};
use crate::fs::{check_path, Op};

/// A path in ROOT as the image has it, the last component not followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Existing {
    Absent,
    Dir,
    File,
    Symlink(String),
    Other,
}

/// What planning needs to know of the image's ROOT.
pub struct RootState<'a> {
    /// What a path is (intermediate symlinks count as not a directory).
    pub lookup: &'a dyn Fn(&str) -> Existing,
    /// `(NAME, target)` of every symlink `/etc/extensions/NAME.raw`.
    pub links: Vec<(String, String)>,
}

/// Whether `file` is named like an image of extension `name` (`NAME`, `NAME.raw`,
/// `NAME-VERSION...`).
fn named_for(name: &str, file: &str) -> bool {
    file.strip_prefix(name)
        .is_some_and(|r| r.is_empty() || r.starts_with(['-', '_', '.', '@']))
}

/// Where a file at `booted` (a path in the booted system) lives: partition and path.
fn locate(booted: &str) -> (Target, &str) {
    match booted
        .strip_prefix(OEM_MOUNT)
        .filter(|p| p.starts_with('/'))
    {
        Some(p) => (Target::Oem, p),
        None => (Target::Root, booted),
    }
}

/// Whether flatbake owns the file at `booted` for extension `e`: a regular file
/// directly in the directory `e` is installed to (or the default one of its name),
/// named like an image of `e`, that no other extension's link uses. `Ok(None)`: not
/// there. `Err`: why it is not flatbake's.
pub(super) fn owned<'p>(
    e: &Extension,
    booted: &'p str,
    root: &RootState<'_>,
) -> Result<Option<(Target, &'p str)>, String> {
    if check_path("ROOT", booted).is_err() {
        return Err("it is not a plain absolute path".into());
    }
    let (dir, file) = booted.rsplit_once('/').unwrap_or(("", booted));
    if !named_for(&e.name, file) {
        return Err(format!("its name is not that of a {} image", e.name));
    }
    let here = e.link_target.rsplit_once('/').map_or("", |(d, _)| d);
    if dir != here && dir != format!("/opt/extensions/{}", e.name) {
        return Err(format!(
            "it is not directly in {here}/, where {} is installed",
            e.name
        ));
    }
    if let Some((n, _)) = root.links.iter().find(|(n, t)| *n != e.name && t == booted) {
        return Err(format!("/etc/extensions/{n}.raw uses it"));
    }
    let (target, path) = locate(booted);
    if target == Target::Root {
        if crate::fs::parents(path)
            .iter()
            .any(|p| (root.lookup)(p) != Existing::Dir)
        {
            return Err("a directory on its path is not a plain directory".into());
        }
        match (root.lookup)(path) {
            Existing::File => {}
            Existing::Absent => return Ok(None),
            _ => return Err("it is not a regular file".into()),
        }
    }
    Ok(Some((target, path)))
}

/// ROOT directories systemd merges images from by itself, or that are covered by
/// another filesystem at boot: no place for an extension's image.
const NO_INSTALL_DIRS: [&str; 16] = [
    "/etc/extensions",
    "/run/extensions",
    "/var/lib/extensions",
    "/usr/lib/extensions",
    "/usr/local/lib/extensions",
    "/etc/confexts",
    "/run/confexts",
    "/var/lib/confexts",
    "/usr/lib/confexts",
    "/usr",
    "/oem",
    "/boot",
    "/run",
    "/tmp",
    "/proc",
    "/sys",
];

/// OEM files Flatcar and flatbake own.
const OEM_OWN: [(&str, &str); 3] = [
    ("/grub.cfg", "OEM's GRUB settings"),
    ("/config.ign", "the Ignition config"),
    ("/oem-release", "OEM's oem-release"),
];

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Install paths that collide: with each other, with what flatbake writes besides
/// (`later`: the ROOT files written besides), with directories systemd or the boot process owns,
/// or with what the image already holds and flatbake does not own.
pub fn collisions(exts: &[Extension], later: &[Op], root: &RootState<'_>) -> Vec<String> {
    let reserved = later.iter().filter_map(|op| match op {
        Op::Write { path, .. } | Op::Symlink { path, .. } => Some(path),
        _ => None,
    });
    let mut all: Vec<(Target, String, String)> = Vec::new();
    for e in exts {
        all.push((e.target, e.path.clone(), format!("the image of {}", e.name)));
        all.push((
            Target::Root,
            e.symlink(),
            format!("the link for {}", e.name),
        ));
        if e.conf.is_some() {
            all.push((
                Target::Root,
                e.conf_path(),
                format!("the sysupdate config of {}", e.name),
            ));
        }
    }
    all.extend(reserved.map(|p| (Target::Root, p.clone(), "a file flatbake writes".to_owned())));
    all.extend(
        OEM_OWN
            .iter()
            .map(|(p, w)| (Target::Oem, (*p).to_owned(), (*w).to_owned())),
    );
    let mut ps = Vec::new();
    for (i, (ta, a, wa)) in all.iter().enumerate() {
        for (tb, b, wb) in &all[i + 1..] {
            if ta != tb {
                continue;
            }
            if a == b {
                ps.push(format!("{wa} and {wb} would both be {ta} {a}; give them different --install-to directories"));
            } else if under(b, a) || under(a, b) {
                let (f, wf, d, wd) = if under(b, a) {
                    (a, wa, b, wb)
                } else {
                    (b, wb, a, wa)
                };
                ps.push(format!("{wf} would be the file {ta} {f}, where {wd} ({d}) needs a directory; choose another --install-to"));
            }
        }
    }
    for e in exts {
        let dir = e.path.rsplit_once('/').map_or("", |(d, _)| d);
        if e.target == Target::Root {
            if let Some(d) = NO_INSTALL_DIRS.iter().find(|d| under(dir, d)) {
                ps.push(format!(
                    "--install-to for {}: ROOT {dir}/ is under {d}, {}",
                    e.name,
                    why_not(d)
                ));
                continue;
            }
        }
        ps.extend(existing_problem(e, root));
    }
    ps
}

fn why_not(dir: &str) -> &'static str {
    if dir.ends_with("extensions") || dir.ends_with("confexts") {
        "where systemd merges every image by itself; use a directory of its own such as /opt/extensions/{name}"
    } else {
        "which another filesystem covers at boot; use a directory such as /opt/extensions/{name}"
    }
}

/// What ROOT already holds where `e` and its link go, if that is in the way.
fn existing_problem(e: &Extension, root: &RootState<'_>) -> Option<String> {
    let lookup = root.lookup;
    let conf = e.conf.as_ref().map(|_| e.conf_path());
    for p in std::iter::once(e.symlink()).chain(conf) {
        if lookup(&p) == Existing::Dir {
            return Some(format!(
                "ROOT {p} is a directory in the image; flatbake would replace it for {}",
                e.name
            ));
        }
    }
    if e.target != Target::Root {
        return None;
    }
    for p in crate::fs::parents(&e.path) {
        let what = match lookup(&p) {
            Existing::Dir | Existing::Absent => continue,
            Existing::Symlink(t) => format!("a symlink to {t}"),
            Existing::File => "a file".to_owned(),
            Existing::Other => "not a directory (or lies under a symlink)".to_owned(),
        };
        return Some(format!(
            "ROOT {p} is {what} in the image, and flatbake never writes through a symlink, so {} cannot go to {}; choose another --install-to",
            e.name, e.path
        ));
    }
    match lookup(&e.path) {
        Existing::Absent => None,
        Existing::Dir => Some(format!("ROOT {} is a directory in the image; choose another --install-to for {}", e.path, e.name)),
        _ if root.links.iter().any(|(n, t)| *n == e.name && *t == e.link_target) => None,
        _ => match owned(e, &e.link_target, root) {
            Ok(_) => None,
            Err(why) => Some(format!(
                "ROOT {} already exists and is not flatbake's to replace ({why}); choose another --install-to for {}",
                e.path, e.name
            )),
        },
    }
}

/// What `path` is in ROOT; a symlink anywhere before its last component makes it
/// [`Existing::Other`] (nothing is planned through a symlink).
pub fn root_lookup(fs: &ext4_view::Ext4, path: &str) -> Existing {
    for p in crate::fs::parents(path) {
        match fs.symlink_metadata(p.as_str()) {
            Ok(m) if m.is_dir() => {}
            Err(ext4_view::Ext4Error::NotFound) => return Existing::Absent,
            _ => return Existing::Other,
        }
    }
    match fs.symlink_metadata(path) {
        Ok(m) if m.is_dir() => Existing::Dir,
        Ok(m) if m.is_symlink() => match fs
            .read_link(path)
            .ok()
            .and_then(|t| t.to_str().ok().map(str::to_owned))
        {
            Some(t) => Existing::Symlink(t),
            None => Existing::Other,
        },
        Ok(m) if m.file_type().is_regular_file() => Existing::File,
        Err(ext4_view::Ext4Error::NotFound) => Existing::Absent,
        _ => Existing::Other,
    }
}

/// `(NAME, target)` of the symlinks `/etc/extensions/NAME.raw` in ROOT (at most 4096).
pub fn extension_links(fs: &ext4_view::Ext4) -> Vec<(String, String)> {
    let Ok(dir) = fs.read_dir("/etc/extensions") else {
        return Vec::new();
    };
    dir.take(4096)
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e
                .file_name()
                .as_str()
                .ok()?
                .strip_suffix(".raw")?
                .to_owned();
            match root_lookup(fs, &format!("/etc/extensions/{name}.raw")) {
                Existing::Symlink(t) => Some((name, t)),
                _ => None,
            }
        })
        .collect()
}
