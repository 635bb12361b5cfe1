//! Small helpers every layer shares: streamed file digests, sizes for people, and a
//! list of problems as one message. No error type of its own: callers wrap the
//! `io::Error` into theirs, naming the file.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Digest and length of a file, streamed in 1 MiB reads (never the whole file in memory).
pub fn digest_file<D: Digest>(path: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    digest_reader::<D>(File::open(path)?)
}

/// Digest and length of everything `r` reads, streamed in 1 MiB reads.
pub fn digest_reader<D: Digest>(mut r: impl Read) -> std::io::Result<(Vec<u8>, u64)> {
    let mut h = D::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        len += k as u64;
    }
    Ok((h.finalize().to_vec(), len))
}

/// Lower-case hex sha256 and length of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let (d, len) = digest_file::<Sha256>(path)?;
    Ok((hex(&d), len))
}

/// Lower-case hex sha256 of everything `r` reads, streamed.
pub fn sha256_reader(r: impl Read) -> std::io::Result<String> {
    Ok(hex(&digest_reader::<Sha256>(r)?.0))
}

/// Lower-case hex sha256 of bytes in memory.
pub fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Sizes for people: `1.5 MiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Problems as one message: a single line, or a count and one line each.
pub fn problem_list(ps: &[String]) -> String {
    if ps.len() == 1 {
        return ps[0].clone();
    }
    let mut s = format!("{} problems, nothing was written:", ps.len());
    for p in ps {
        s.push_str("\n  - ");
        s.push_str(p);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_file_matches_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data = vec![7u8; (1 << 20) + 3];
        std::fs::write(&p, &data).unwrap();
        let (sha, len) = sha256_file(&p).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(sha, sha256_bytes(&data));
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(8 << 30), "8.0 GiB");
    }

    #[test]
    fn problems_one_or_many() {
        assert_eq!(problem_list(&["a".into()]), "a");
        assert_eq!(
            problem_list(&["a".into(), "b".into()]),
            "2 problems, nothing was written:\n  - a\n  - b"
        );
    }
}
