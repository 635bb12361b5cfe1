//! Flatwrap: a whole foreign root filesystem (e.g. a container image, see [`super::oci`])
//! shipped in a sysext under the private prefix `/usr/lib/NAME/rootfs`, with entry-point
//! wrappers in `/usr/bin` that run a program of it in a root of its own. Unlike Flix
//! nothing is rewritten: the program sees the image's `/usr`, `/bin`, `/lib`, ... while
//! `/dev`, `/proc`, `/sys`, `/run`, `/tmp`, `/var/tmp` and (unless mapped from the image
//! with `chroot`) `/etc`, `/var` and `/home` come from the host.
//!
//! Each wrapper execs `/usr/lib/NAME/enter PROGRAM ARGS...`, a generated POSIX shell
//! script that builds the root at run time: with `bwrap` when it is installed, otherwise
//! with `unshare --mount` (as root) or `unshare --user --map-root-user --mount` (as
//! anyone else): a tmpfs on the empty directory `/usr/lib/NAME/mnt`, the image's
//! top-level entries bind-mounted (symlinks recreated) and the host's directories
//! rbind-mounted into it, then `unshare --root` (a chroot that keeps the working
//! directory), mapping an unprivileged caller back to their own uid and gid.
//! `FLATWRAP_ROOT=DIR` runs the scripts from a tree or root that is not merged at `/`;
//! `FLATWRAP_NO_BWRAP=1` skips bwrap, `FLATWRAP_USERNS=1` takes the user-namespace path
//! even as root.
//!
//! The copy of the root filesystem is made safe to ship root-owned: devices, fifos and
//! sockets are left out and setuid/setgid bits are cleared.

use super::flix::{resolve_in, BinSpec};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum FlatwrapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FlatwrapError + '_ {
    move |source| FlatwrapError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a directory the program sees comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Map {
    /// The host's directory, bind-mounted.
    Host,
    /// The image's own directory (read-only, as the sysext is).
    Chroot,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub name: String,
    /// Programs of the root filesystem and where their wrappers go.
    pub entries: Vec<BinSpec>,
    pub etc: Map,
    pub var: Map,
    pub home: Map,
}

/// What went into the tree.
#[derive(Clone, Debug, Default)]
pub struct Wrapped {
    /// `/usr/lib/NAME`.
    pub prefix: String,
    /// The wrappers' paths in the sysext.
    pub wrappers: Vec<String>,
    /// Top-level entries of the image the program sees.
    pub from_image: Vec<String>,
    /// Directories the program sees from the host.
    pub from_host: Vec<String>,
    /// Devices, fifos and sockets left out of the copy (paths in the image).
    pub dropped: Vec<String>,
    /// Files whose setuid/setgid bits were cleared (paths in the image).
    pub unprivileged: Vec<String>,
}

/// A top-level entry of the image and how it appears in the private root.
enum Top {
    Dir(String),
    File(String),
    Symlink(String, String),
}

/// Single-quote `s` for the shell.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Host directories the program sees, parents before children.
fn host_dirs(o: &Options) -> Vec<String> {
    let mut v: Vec<String> = ["/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for (m, d) in [(o.etc, "/etc"), (o.var, "/var"), (o.home, "/home")] {
        if m == Map::Host {
            v.push(d.to_owned());
        }
    }
    v.sort();
    v
}

/// Build the flatwrap tree for `o.name` from `rootfs` into `out` (a sysext source
/// directory: `usr/...`). With `take`, `rootfs` is a scratch extraction and is moved
/// into the tree instead of copied.
pub fn flatwrap(
    rootfs: &Path,
    take: bool,
    o: &Options,
    out: &Path,
) -> Result<Wrapped, FlatwrapError> {
    if let Some(p) = super::name_problem(&o.name) {
        return Err(FlatwrapError::Invalid(p));
    }
    if o.entries.is_empty() {
        return Err(FlatwrapError::Invalid("no programs to wrap".into()));
    }
    if !rootfs.is_dir() {
        return Err(FlatwrapError::Invalid(format!(
            "{}: not a directory",
            rootfs.display()
        )));
    }
    for e in &o.entries {
        let host = resolve_in(rootfs, &e.src)
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                FlatwrapError::Invalid(format!("{}: not a file in {}", e.src, rootfs.display()))
            })?;
        let m = std::fs::metadata(&host).map_err(io(&host))?;
        if m.permissions().mode() & 0o111 == 0 {
            return Err(FlatwrapError::Invalid(format!(
                "{}: not executable in {}",
                e.src,
                rootfs.display()
            )));
        }
        if e.dst.starts_with(&format!("/usr/lib/{}/", o.name))
            || e.dst == format!("/usr/lib/{}", o.name)
        {
            return Err(FlatwrapError::Invalid(format!(
                "{}: lies inside the private prefix /usr/lib/{}",
                e.dst, o.name
            )));
        }
    }
    let prefix = format!("/usr/lib/{}", o.name);
    let pdir = out.join(prefix.trim_start_matches('/'));
    std::fs::create_dir_all(&pdir).map_err(io(&pdir))?;
    let root = pdir.join("rootfs");
    if take {
        std::fs::rename(rootfs, &root).map_err(io(&root))?;
    } else {
        crate::tools::run(
            Command::new("cp")
                .arg("-a")
                .arg("--no-preserve=ownership")
                .arg("-T")
                .arg(rootfs)
                .arg(&root),
            "copying the root filesystem",
        )?;
    }
    let mut w = Wrapped {
        prefix: prefix.clone(),
        ..Wrapped::default()
    };
    sanitize(&root, &root, &mut w)?;
    let mnt = pdir.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(io(&mnt))?;

    let host = host_dirs(o);
    let mut tops = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let abs = format!("/{n}");
        if host.contains(&abs) {
            continue;
        }
        let p = root.join(&n);
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).map_err(io(&p))?;
            tops.push(Top::Symlink(abs.clone(), t.to_string_lossy().into_owned()));
        } else if m.is_dir() {
            tops.push(Top::Dir(abs.clone()));
        } else {
            tops.push(Top::File(abs.clone()));
        }
        w.from_image.push(abs);
    }
    w.from_host = host.clone();

    let enter = pdir.join("enter");
    std::fs::write(&enter, enter_script(o, &tops, &host)).map_err(io(&enter))?;
    std::fs::set_permissions(&enter, std::fs::Permissions::from_mode(0o755)).map_err(io(&enter))?;
    for e in &o.entries {
        let dst = out.join(e.dst.trim_start_matches('/'));
        if std::fs::symlink_metadata(&dst).is_ok() {
            return Err(FlatwrapError::Invalid(format!("two wrappers at {}", e.dst)));
        }
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        std::fs::write(&dst, wrapper_script(&o.name, &e.src)).map_err(io(&dst))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).map_err(io(&dst))?;
        w.wrappers.push(e.dst.clone());
    }
    Ok(w)
}

/// Leave out what a sysext cannot or should not hold: devices, fifos, sockets, and
/// setuid/setgid bits on files that will be owned by the host's root.
fn sanitize(root: &Path, dir: &Path, w: &mut Wrapped) -> Result<(), FlatwrapError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        let ft = m.file_type();
        let rel = || format!("/{}", p.strip_prefix(root).unwrap_or(&p).display());
        if ft.is_dir() {
            sanitize(root, &p, w)?;
        } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            w.dropped.push(rel());
            std::fs::remove_file(&p).map_err(io(&p))?;
        } else if ft.is_file() && m.permissions().mode() & 0o6000 != 0 {
            w.unprivileged.push(rel());
            let mode = m.permissions().mode() & !0o6000 & 0o7777;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// `/usr/bin/X`: hand the program and its arguments to `enter`.
pub fn wrapper_script(name: &str, src: &str) -> String {
    format!(
        "#!/bin/sh\n# flatwrap {name}: runs {src} of the image in a root of its own (see /usr/lib/{name}/enter)\n\
         exec \"${{FLATWRAP_ROOT-}}\"{} {} \"$@\"\n",
        q(&format!("/usr/lib/{name}/enter")),
        q(src)
    )
}

/// `/usr/lib/NAME/enter PROGRAM ARGS...`: set up the private root and run PROGRAM in it.
fn enter_script(o: &Options, tops: &[Top], host: &[String]) -> String {
    let name = &o.name;
    let mut setup = String::new();
    let mut bw = String::new();
    for t in tops {
        match t {
            Top::Dir(p) => {
                setup += &format!(
                    "  mkdir \"$M\"{0} && mount --rbind \"$R\"{0} \"$M\"{0}\n",
                    q(p)
                );
                bw += &format!(" --ro-bind \"$R\"{0} {0}", q(p));
            }
            Top::File(p) => {
                setup += &format!(
                    "  : > \"$M\"{0} && mount --bind \"$R\"{0} \"$M\"{0}\n",
                    q(p)
                );
                bw += &format!(" --ro-bind \"$R\"{0} {0}", q(p));
            }
            Top::Symlink(p, t) => {
                setup += &format!("  ln -s {} \"$M\"{}\n", q(t), q(p));
                bw += &format!(" --symlink {} {}", q(t), q(p));
            }
        }
    }
    for h in host {
        bw += &format!(
            " --{}bind-try {1} {1}",
            if h == "/dev" { "dev-" } else { "" },
            q(h)
        );
    }
    let hosts: Vec<String> = host.iter().map(|h| q(h)).collect();
    let from_image: Vec<&str> = tops
        .iter()
        .map(|t| match t {
            Top::Dir(p) | Top::File(p) | Top::Symlink(p, _) => p.as_str(),
        })
        .collect();
    format!(
        r#"#!/bin/sh
# flatwrap {name}: runs a program of the root filesystem in /usr/lib/{name}/rootfs in a root
# of its own. Generated by flatbake. From the image: {img}. From the host: {hst}.
# bwrap when installed (FLATWRAP_NO_BWRAP=1 skips it); otherwise unshare --mount as root,
# unshare --user --map-root-user --mount for anyone else (FLATWRAP_USERNS=1: also for root).
# FLATWRAP_ROOT=DIR: the extension is merged (or unpacked) at DIR instead of /.
set -eu
P="${{FLATWRAP_ROOT-}}"{prefix}
R="$P/rootfs"
M="$P/mnt"
if [ $# -eq 0 ]; then
  echo "usage: $0 PROGRAM [ARG...]" >&2
  exit 2
fi
if [ "$1" = --setup ]; then
  # in a new mount namespace: a tmpfs root with the image's and the host's parts
  U=$2
  G=$3
  shift 3
  mount -t tmpfs -o mode=0755 flatwrap-{name} "$M"
{setup}  for d in {hosts}; do
    if [ -d "$d" ] && {{ [ -d "$M$d" ] || mkdir -p "$M$d" 2>/dev/null; }}; then
      mount --rbind "$d" "$M$d"
    fi
  done
  wd=/
  if [ -d "$M${{PWD:-/}}" ]; then
    wd=${{PWD:-/}}
  fi
  if [ "$U" = 0 ]; then
    exec unshare --root="$M" --wd="$wd" -- "$@"
  fi
  exec unshare --user --map-user="$U" --map-group="$G" --root="$M" --wd="$wd" -- "$@"
fi
if [ -z "${{FLATWRAP_NO_BWRAP-}}" ] && command -v bwrap >/dev/null 2>&1; then
  exec bwrap{bw} -- "$@"
fi
if [ "$(id -u)" = 0 ] && [ -z "${{FLATWRAP_USERNS-}}" ]; then
  exec unshare --mount --propagation private -- "$P/enter" --setup 0 0 "$@"
fi
exec unshare --user --map-root-user --mount --propagation private -- "$P/enter" --setup "$(id -u)" "$(id -g)" "$@"
"#,
        img = if from_image.is_empty() {
            "nothing".to_owned()
        } else {
            from_image.join(" ")
        },
        hst = host.join(" "),
        prefix = q(&format!("/usr/lib/{name}")),
        hosts = hosts.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(etc: Map) -> Options {
        Options {
            name: "demo".into(),
            entries: vec!["/usr/bin/tool".parse().unwrap()],
            etc,
            var: Map::Host,
            home: Map::Chroot,
        }
    }

    #[test]
    fn builds_the_tree_and_maps_etc_as_asked() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::write(r.join("usr/bin/data"), "x").unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        std::fs::write(r.join("it's"), "quote").unwrap();
        let out = d.path().join("tree");
        let w = flatwrap(&r, false, &opts(Map::Host), &out).unwrap();
        assert_eq!(w.wrappers, vec!["/usr/bin/tool"]);
        assert_eq!(w.unprivileged, vec!["/usr/bin/tool"]);
        assert_eq!(
            std::fs::metadata(out.join("usr/lib/demo/rootfs/usr/bin/tool"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o755
        );
        assert_eq!(
            w.from_image,
            vec!["/bin", "/it's", "/usr"],
            "etc comes from the host"
        );
        assert!(
            w.from_host.contains(&"/etc".to_owned()) && !w.from_host.contains(&"/home".to_owned())
        );
        assert!(out.join("usr/lib/demo/mnt").is_dir());
        let wrapper = std::fs::read_to_string(out.join("usr/bin/tool")).unwrap();
        assert!(
            wrapper
                .contains(r#"exec "${FLATWRAP_ROOT-}"'/usr/lib/demo/enter' '/usr/bin/tool' "$@""#),
            "{wrapper}"
        );
        let enter = std::fs::read_to_string(out.join("usr/lib/demo/enter")).unwrap();
        assert!(enter.contains(r#"ln -s 'usr/bin' "$M"'/bin'"#), "{enter}");
        assert!(
            enter.contains(r#": > "$M"'/it'\''s' && mount --bind"#),
            "{enter}"
        );
        assert!(
            enter.contains(" --symlink 'usr/bin' '/bin'")
                && enter.contains(" --dev-bind-try '/dev' '/dev'"),
            "{enter}"
        );
        assert!(!enter.contains(r#""$R"'/etc'"#), "{enter}");
        // the source is untouched; with chroot the image's /etc is mounted instead
        assert!(r.join("usr/bin/tool").is_file());
        let out2 = d.path().join("tree2");
        let w = flatwrap(&r, true, &opts(Map::Chroot), &out2).unwrap();
        assert!(
            w.from_image.contains(&"/etc".to_owned()) && !w.from_host.contains(&"/etc".to_owned())
        );
        assert!(!r.exists(), "taken, not copied");
        let enter = std::fs::read_to_string(out2.join("usr/lib/demo/enter")).unwrap();
        assert!(
            enter.contains(r#"mkdir "$M"'/etc' && mount --rbind "$R"'/etc' "$M"'/etc'"#),
            "{enter}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_wrap() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/data"), "x").unwrap();
        let mut o = opts(Map::Host);
        let e = flatwrap(&r, false, &o, &d.path().join("a"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/usr/bin/tool: not a file"), "{e}");
        o.entries = vec!["/usr/bin/data".parse().unwrap()];
        let e = flatwrap(&r, false, &o, &d.path().join("b"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not executable"), "{e}");
        o.entries = vec!["/usr/bin/data:/usr/lib/demo/rootfs/x".parse().unwrap()];
        std::fs::set_permissions(
            r.join("usr/bin/data"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let e = flatwrap(&r, false, &o, &d.path().join("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the private prefix"), "{e}");
    }
}
