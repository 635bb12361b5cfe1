//! Raw output: a sparse copy of the input, extended to the virtual size. A reflink
//! (`FICLONE`) where the filesystem can share extents; otherwise only the non-zero
//! 64 KiB chunks of the input's data extents are written, so the output is at least
//! as sparse as the input.

use super::source::Source;
use super::{FormatError, Output};

const CHUNK: u64 = 64 << 10;
/// Reading unit: 16 chunks at once keeps syscalls few.
const BATCH: u64 = 16 * CHUNK;

/// Returns the number of data bytes copied (the input size for a reflink).
pub(crate) fn write(src: &Source, out: &Output, virtual_size: u64) -> Result<u64, FormatError> {
    if rustix::fs::ioctl_ficlone(&out.file, src.file()).is_ok() {
        out.set_len(virtual_size)?;
        return Ok(src.size());
    }
    out.set_len(virtual_size)?;
    let mut buf = vec![0u8; BATCH as usize];
    let mut copied = 0;
    for batch in src.chunks(BATCH) {
        if !src.read_chunk(batch, &mut buf)? {
            continue;
        }
        let base = batch * BATCH;
        let valid = src.size().saturating_sub(base).min(BATCH) as usize;
        for (i, c) in buf[..valid].chunks(CHUNK as usize).enumerate() {
            if !super::source::is_zero(c) {
                out.write_at(c, base + i as u64 * CHUNK)?;
                copied += c.len() as u64;
            }
        }
    }
    Ok(copied)
}
