//! Root filesystems from container images, rootless and without a container engine: an
//! OCI image layout directory (`index.json`, `blobs/sha256/...`), a `docker save`
//! directory or tarball (`manifest.json` naming `Layers`), or an OCI archive tarball.
//! Layers (plain or gzip tar) are applied in order with the OCI whiteouts: `.wh.NAME`
//! removes NAME from the layers below, `.wh..wh..opq` empties its directory of them.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Extract the image at `src` (directory or tarball) into `dest`; `scratch` holds an
/// unpacked tarball while it is read.
pub fn extract(src: &Path, dest: &Path, scratch: &Path) -> Result<(), OciError> {
    let m = std::fs::metadata(src).map_err(io(src))?;
    let unpacked;
    let dir = if m.is_dir() {
        src
    } else {
        unpacked = scratch.join("archive");
        std::fs::create_dir_all(&unpacked).map_err(io(&unpacked))?;
        let f = crate::input::open_regular(src).map_err(io(src))?;
        let mut t = tar::Archive::new(decompressed(std::io::BufReader::new(f), src)?);
        t.unpack(&unpacked).map_err(|e| OciError::Invalid {
            path: src.to_owned(),
            what: format!("not a tar archive: {e}"),
        })?;
        &unpacked
    };
    let layers = layers(dir)?;
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    for l in &layers {
        apply_layer(l, dest)?;
    }
    Ok(())
}

fn read_json(p: &Path) -> Result<serde_json::Value, OciError> {
    let text = crate::input::read_text(p, crate::input::JSON_CAP).map_err(io(p))?;
    serde_json::from_str(&text).map_err(|e| OciError::Invalid {
        path: p.to_owned(),
        what: e.to_string(),
    })
}

fn blob(dir: &Path, digest: &str) -> Result<PathBuf, OciError> {
    let bad = |what: String| OciError::Invalid {
        path: dir.join("index.json"),
        what,
    };
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad(format!("digest '{digest}' has no algorithm")))?;
    if alg.is_empty()
        || hex.is_empty()
        || !hex.chars().all(|c| c.is_ascii_alphanumeric())
        || !alg.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(bad(format!("bad digest '{digest}'")));
    }
    Ok(dir.join("blobs").join(alg).join(hex))
}

/// The layer files of the image in `dir`, lowest first.
pub fn layers(dir: &Path) -> Result<Vec<PathBuf>, OciError> {
    let index = dir.join("index.json");
    if index.is_file() {
        let mut v = read_json(&index)?;
        // follow nested indexes to the first image manifest
        for _ in 0..8 {
            let first = v
                .get("manifests")
                .and_then(|m| m.as_array())
                .and_then(|a| {
                    a.iter().find(|m| {
                        m.pointer("/platform/architecture")
                            .and_then(|x| x.as_str())
                            .is_none_or(|a| a == std::env::consts::ARCH || a == host_oci_arch())
                    })
                })
                .and_then(|m| m.get("digest"))
                .and_then(|d| d.as_str());
            match first {
                Some(d) => v = read_json(&blob(dir, d)?)?,
                None => break,
            }
        }
        let layers =
            v.get("layers")
                .and_then(|l| l.as_array())
                .ok_or_else(|| OciError::Invalid {
                    path: index.clone(),
                    what: "no image manifest with layers".into(),
                })?;
        return layers
            .iter()
            .map(|l| {
                let d =
                    l.get("digest")
                        .and_then(|d| d.as_str())
                        .ok_or_else(|| OciError::Invalid {
                            path: index.clone(),
                            what: "a layer has no digest".into(),
                        })?;
                blob(dir, d)
            })
            .collect();
    }
    let manifest = dir.join("manifest.json");
    if manifest.is_file() {
        let v = read_json(&manifest)?;
        let layers = v
            .pointer("/0/Layers")
            .and_then(|l| l.as_array())
            .ok_or_else(|| OciError::Invalid {
                path: manifest.clone(),
                what: "no Layers in the first image".into(),
            })?;
        return layers
            .iter()
            .map(|l| {
                let p = l.as_str().unwrap_or_default();
                if p.is_empty()
                    || Path::new(p)
                        .components()
                        .any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(OciError::Invalid {
                        path: manifest.clone(),
                        what: format!("bad layer path '{p}'"),
                    });
                }
                Ok(dir.join(p))
            })
            .collect();
    }
    Err(OciError::Invalid {
        path: dir.to_owned(),
        what: "neither an OCI image layout (index.json) nor a docker save image (manifest.json)"
            .into(),
    })
}

fn host_oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn decompressed<R: Read + 'static>(
    mut r: std::io::BufReader<R>,
    path: &Path,
) -> Result<Box<dyn Read>, OciError> {
    use std::io::BufRead;
    let head = r.fill_buf().map_err(io(path))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(OciError::Invalid {
            path: path.to_owned(),
            what: "zstd-compressed layers are not supported".into(),
        })
    } else {
        Ok(Box::new(r))
    }
}

/// Apply one layer tarball onto `dest`.
pub fn apply_layer(layer: &Path, dest: &Path) -> Result<(), OciError> {
    let bad = |what: String| OciError::Invalid {
        path: layer.to_owned(),
        what,
    };
    let f = crate::input::open_regular(layer).map_err(io(layer))?;
    let mut t = tar::Archive::new(decompressed(std::io::BufReader::new(f), layer)?);
    t.set_preserve_permissions(true);
    t.set_unpack_xattrs(false);
    t.set_overwrite(true);
    // paths this layer wrote: an opaque whiteout removes only what lies below
    let mut ours: HashSet<PathBuf> = HashSet::new();
    for entry in t.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let rel: PathBuf = raw
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!(
                "entry {} points outside the image",
                raw.display()
            )));
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if name == ".wh..wh..opq" {
            let d = dest.join(&parent);
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if !ours.contains(&parent.join(e.file_name())) {
                        remove(&e.path())?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove(&dest.join(&parent).join(hidden))?;
            continue;
        }
        let t = entry.header().entry_type();
        if !(t.is_file() || t.is_dir() || t.is_symlink() || t.is_hard_link()) {
            continue;
        }
        let target = dest.join(&rel);
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if m.is_dir() != t.is_dir() || m.file_type().is_symlink() {
                remove(&target)?;
            }
        }
        entry
            .unpack_in(dest)
            .map_err(|e| bad(format!("{}: {e}", rel.display())))?;
        ours.insert(rel);
    }
    Ok(())
}

fn remove(p: &Path) -> Result<(), OciError> {
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map_err(io(p)),
        Ok(_) => std::fs::remove_file(p).map_err(io(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            if p.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            } else {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_apply_to_lower_layers() {
        let d = tempfile::tempdir().unwrap();
        let l1 = d.path().join("l1.tar");
        let l2 = d.path().join("l2.tar");
        std::fs::write(
            &l1,
            layer(&[
                ("a/", b""),
                ("a/x", b"1"),
                ("a/y", b"2"),
                ("b", b"b"),
                ("c/", b""),
                ("c/k", b"k"),
            ]),
        )
        .unwrap();
        std::fs::write(
            &l2,
            layer(&[
                ("./a/z", b"3"),
                ("a/.wh..wh..opq", b""),
                ("./.wh.b", b""),
                ("c/new", b"n"),
            ]),
        )
        .unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        apply_layer(&l1, &root).unwrap();
        apply_layer(&l2, &root).unwrap();
        assert!(
            root.join("a/z").is_file(),
            "written by the opaque layer itself"
        );
        assert!(!root.join("a/x").exists() && !root.join("a/y").exists());
        assert!(!root.join("b").exists());
        assert!(root.join("c/k").is_file() && root.join("c/new").is_file());
        let evil = d.path().join("evil.tar");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..6].copy_from_slice(b"../esc");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
        let e = apply_layer(&evil, &root).unwrap_err().to_string();
        assert!(e.contains("points outside the image"), "{e}");
        assert!(!d.path().join("esc").exists());
        assert!(apply_layer(&evil, &root).is_err());
    }
}
