//! Disk image formats flatbake writes from a raw image. For now: raw (a sparse copy);
//! vendors in other formats are refused before anything is written.

use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
}

impl DiskFormat {
    /// Flatcar's `DISK_FORMAT` name, when flatbake writes that format.
    pub fn from_flatcar_name(s: &str) -> Option<DiskFormat> {
        match s {
            "raw" => Some(DiskFormat::Raw),
            _ => None,
        }
    }
}

pub struct WriteOptions {
    pub virtual_size: Option<u64>,
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FormatError {
    path: String,
    source: std::io::Error,
}

/// Write `input` (raw) to `output` in `format`.
pub fn write(format: &DiskFormat, input: &Path, output: &Path, _opts: &WriteOptions) -> Result<(), FormatError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| FormatError { path, source }
    };
    match format {
        DiskFormat::Raw => {
            let s = std::fs::File::open(input).map_err(err(input))?;
            let d = std::fs::File::create(output).map_err(err(output))?;
            crate::disk::sparse::clone_file(&s, &d).map_err(err(output))
        }
    }
}
