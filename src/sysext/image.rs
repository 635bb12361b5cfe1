//! Opening an existing sysext image (squashfs via backhand, EROFS via our reader) and
//! pulling out what systemd-sysext looks at: the `extension-release.NAME` file.

use super::erofs::{Erofs, ErofsError};
use super::release::{ReleaseFile, MAX_RELEASE_BYTES};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const RELEASE_DIR: &str = "/usr/lib/extension-release.d";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Squashfs,
    Erofs,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
        })
    }
}

/// What a sysext image holds, as far as systemd-sysext cares.
#[derive(Clone, Debug)]
pub struct SysextImage {
    pub path: PathBuf,
    pub format: Format,
    pub size: u64,
    /// Names `X` of every `extension-release.X` file found.
    pub release_names: Vec<String>,
    /// The parsed `extension-release.NAME` for the name asked for, if present.
    pub release: Option<ReleaseFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a squashfs or erofs image")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: unreadable squashfs: {what}")]
    Squashfs { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Erofs { path: PathBuf, source: ErofsError },
    #[error("{path}: {RELEASE_DIR}/extension-release.{name}: {what}")]
    BadRelease {
        path: PathBuf,
        name: String,
        what: String,
    },
}

/// Sniff the format from the magic numbers.
pub fn detect(path: &Path) -> Result<Format, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = crate::input::open_regular(path).map_err(io)?;
    let mut head = vec![0u8; 1028];
    let n = read_up_to(&mut f, &mut head).map_err(io)?;
    if n >= 4 && &head[..4] == b"hsqs" {
        return Ok(Format::Squashfs);
    }
    if n >= 1028
        && u32::from_le_bytes([head[1024], head[1025], head[1026], head[1027]])
            == super::erofs::MAGIC
    {
        return Ok(Format::Erofs);
    }
    Err(ImageError::UnknownFormat {
        path: path.to_owned(),
    })
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Open `path` and read its extension-release for `name`.
pub fn open(path: &Path, name: &str) -> Result<SysextImage, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_owned(),
        source,
    };
    let format = detect(path)?;
    let size = std::fs::metadata(path).map_err(io)?.len();
    let (release_names, raw) = match format {
        Format::Squashfs => read_squashfs(path, name)?,
        Format::Erofs => read_erofs(path, name)?,
    };
    let release = match raw {
        None => None,
        Some(bytes) => {
            Some(
                super::compat::parse_env(&bytes).map_err(|e| ImageError::BadRelease {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    what: e.to_string(),
                })?,
            )
        }
    };
    Ok(SysextImage {
        path: path.to_owned(),
        format,
        size,
        release_names,
        release,
    })
}

fn read_squashfs(path: &Path, name: &str) -> Result<(Vec<String>, Option<Vec<u8>>), ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_owned(),
        source,
    };
    let sq = |e: backhand::BackhandError| ImageError::Squashfs {
        path: path.to_owned(),
        what: e.to_string(),
    };
    let mut file = crate::input::open_regular(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; super::squashfs::SUPERBLOCK_BYTES];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    super::squashfs::Superblock::parse(&head[..n], len).map_err(|e| ImageError::Squashfs {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let tables = backhand::Squashfs::from_reader(BufReader::new(file)).map_err(sq)?;
    super::squashfs::check_depth(&tables).map_err(|what| ImageError::Squashfs {
        path: path.to_owned(),
        what,
    })?;
    let fs = tables.into_filesystem_reader().map_err(sq)?;
    // the release directory as systemd finds it: symlinks followed inside the image
    let by_path: std::collections::HashMap<String, &backhand::InnerNode<_>> = fs
        .files()
        .map(|n| (n.fullpath.to_string_lossy().into_owned(), &n.inner))
        .collect();
    let look = |p: &str| {
        Ok(match by_path.get(p) {
            None => Found::Missing,
            Some(backhand::InnerNode::Dir(_)) => Found::Dir,
            Some(backhand::InnerNode::Symlink(l)) => {
                Found::Symlink(l.link.to_string_lossy().into_owned())
            }
            Some(_) => Found::Other,
        })
    };
    let resolved = chase(RELEASE_DIR, look).map_err(|what| bad_release(path, name, what))?;
    let Some(dir) = resolved else {
        return Ok((Vec::new(), None));
    };
    let want = chase(&format!("{RELEASE_DIR}/extension-release.{name}"), look)
        .map_err(|what| bad_release(path, name, what))?;
    let mut names = Vec::new();
    let mut content = None;
    for node in fs.files() {
        let full = node.fullpath.to_string_lossy();
        let Some(rest) = full
            .strip_prefix(dir.as_str())
            .and_then(|r| r.strip_prefix("/extension-release."))
        else {
            continue;
        };
        if rest.contains('/') {
            continue;
        }
        names.push(rest.to_owned());
    }
    for node in fs.files() {
        if want.as_deref() == Some(&*node.fullpath.to_string_lossy()) {
            match &node.inner {
                backhand::InnerNode::File(f) => {
                    if f.file_len() > MAX_RELEASE_BYTES {
                        return Err(ImageError::BadRelease {
                            path: path.to_owned(),
                            name: name.to_owned(),
                            what: format!("{} bytes, too large for a release file", f.file_len()),
                        });
                    }
                    let mut buf = Vec::new();
                    fs.file(f).reader().read_to_end(&mut buf).map_err(io)?;
                    content = Some(buf);
                }
                _ => {
                    return Err(ImageError::BadRelease {
                        path: path.to_owned(),
                        name: name.to_owned(),
                        what: "not a regular file".into(),
                    })
                }
            }
        }
    }
    Ok((names, content))
}

fn read_erofs(path: &Path, name: &str) -> Result<(Vec<String>, Option<Vec<u8>>), ImageError> {
    let er = |source| ImageError::Erofs {
        path: path.to_owned(),
        source,
    };
    let file =
        BufReader::new(
            crate::input::open_regular(path).map_err(|source| ImageError::Io {
                path: path.to_owned(),
                source,
            })?,
        );
    let mut fs = Erofs::open(file).map_err(er)?;
    // the release directory as systemd finds it: symlinks followed inside the image
    let mut failed = None;
    let resolved = chase(RELEASE_DIR, |p| Ok(erofs_found(&mut fs, p, &mut failed)));
    if let Some(e) = failed {
        return Err(er(e));
    }
    let Some(dir_path) = resolved.map_err(|what| bad_release(path, name, what))? else {
        return Ok((Vec::new(), None));
    };
    let Some(dir) = fs.lookup(&dir_path).map_err(er)? else {
        return Ok((Vec::new(), None));
    };
    let names: Vec<String> = fs
        .read_dir(&dir, &dir_path)
        .map_err(er)?
        .into_iter()
        .filter_map(|d| d.name.strip_prefix("extension-release.").map(str::to_owned))
        .collect();
    let file = format!("{RELEASE_DIR}/extension-release.{name}");
    let resolved = chase(&file, |p| Ok(erofs_found(&mut fs, p, &mut failed)));
    if let Some(e) = failed {
        return Err(er(e));
    }
    let Some(want) = resolved.map_err(|what| bad_release(path, name, what))? else {
        return Ok((names, None));
    };
    let content = match fs.lookup(&want).map_err(er)? {
        Some(ino) if ino.is_file() => {
            Some(fs.read(&ino, &want, MAX_RELEASE_BYTES as u64).map_err(er)?)
        }
        Some(_) => {
            return Err(ImageError::BadRelease {
                path: path.to_owned(),
                name: name.to_owned(),
                what: "not a regular file".into(),
            })
        }
        None => None,
    };
    Ok((names, content))
}

/// What `p` is in an EROFS image; a read error is kept in `failed` (and `p` reported
/// missing, which ends the chase).
fn erofs_found<R: Read + Seek>(
    fs: &mut Erofs<R>,
    p: &str,
    failed: &mut Option<ErofsError>,
) -> Found {
    match fs.lookup(p) {
        Ok(None) => Found::Missing,
        Ok(Some(ino)) if ino.is_dir() => Found::Dir,
        Ok(Some(ino)) if ino.is_symlink() => match fs.read(&ino, p, 4096) {
            Ok(t) => Found::Symlink(String::from_utf8_lossy(&t).into_owned()),
            Err(e) => {
                *failed = Some(e);
                Found::Missing
            }
        },
        Ok(Some(_)) => Found::Other,
        Err(e) => {
            *failed = Some(e);
            Found::Missing
        }
    }
}

fn bad_release(path: &Path, name: &str, what: String) -> ImageError {
    ImageError::BadRelease {
        path: path.to_owned(),
        name: name.to_owned(),
        what,
    }
}

/// What a path names inside an image (a final symlink not followed).
enum Found {
    Dir,
    Symlink(String),
    Other,
    Missing,
}

/// Symlinks [`chase`] follows at most (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Resolve the absolute `path` inside an image as systemd-sysext does (chase with the
/// image as root): every symlink followed, the last one too, an absolute target from
/// the image's root, `..` never above it, at most [`MAX_LINKS`] links. `look` says what
/// an absolute path without symlinks is. Returns the resolved path (`/a/b`), `None`
/// when a component is missing or one before the last is not a directory, or an error
/// for a symlink loop.
fn chase(
    path: &str,
    mut look: impl FnMut(&str) -> Result<Found, ImageError>,
) -> Result<Option<String>, String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0usize;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                at.pop();
                continue;
            }
            _ => {}
        }
        let here = if at.is_empty() {
            format!("/{c}")
        } else {
            format!("/{}/{c}", at.join("/"))
        };
        match look(&here).map_err(|e| e.to_string())? {
            Found::Dir => at.push(c),
            // the final component may be anything but a symlink
            Found::Other if todo.is_empty() => at.push(c),
            Found::Missing | Found::Other => return Ok(None),
            Found::Symlink(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!(
                        "{path}: more than {MAX_LINKS} symbolic links (a symlink loop)"
                    ));
                }
                if target.starts_with('/') {
                    at.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(str::to_owned),
                );
            }
        }
    }
    Ok(Some(format!("/{}", at.join("/"))))
}
