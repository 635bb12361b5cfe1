//! End-to-end tests of bzip2 → sparse image decompression against the reference tools.
//! Needs: bzip2 (bunzip2), lbzip2, pbzip2.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use flatbake::release::decompress::{decompress_file, part_path, DecompressOptions};
use flatbake::release::{DecompressError, ProgressMode};

fn opts(threads: usize) -> DecompressOptions {
    DecompressOptions {
        threads,
        progress: ProgressMode::Quiet,
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// An image mostly of zeros: 64 MiB with some noise islands.
fn zero_heavy() -> Vec<u8> {
    let mut v = vec![0u8; 64 << 20];
    for (i, off) in [0usize, 5 << 20, 17 << 20, 40 << 20, (64 << 20) - 300_000]
        .iter()
        .enumerate()
    {
        let n = support::noise(250_000, i as u64);
        v[*off..*off + n.len()].copy_from_slice(&n);
    }
    v
}

#[test]
fn identical_to_bunzip2_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let image = zero_heavy();
    let bz2 = write(
        dir.path(),
        "img.bz2",
        &support::compress_with("lbzip2", &["-9", "-n", "2"], &image),
    );
    let reference = support::bunzip2(&bz2);
    for threads in [1, 2, 4] {
        let out = dir.path().join(format!("img-{threads}.bin"));
        let stats = decompress_file(&bz2, &out, &opts(threads)).unwrap();
        let got = std::fs::read(&out).unwrap();
        assert_eq!(support::sha256(&got), support::sha256(&reference));
        assert_eq!(stats.decompressed_bytes, reference.len() as u64);
        assert_eq!(
            stats.compressed_bytes,
            std::fs::metadata(&bz2).unwrap().len()
        );
        assert_eq!(stats.streams, 1);
        assert!(stats.blocks >= 1);
        // Sparse: far fewer allocated bytes than the size.
        let meta = std::fs::metadata(&out).unwrap();
        let allocated = meta.blocks() * 512;
        assert!(
            allocated < meta.len() / 8,
            "allocated {allocated} of {} bytes",
            meta.len()
        );
        assert!(stats.data_bytes_written < (4 << 20), "{stats:?}");
        assert!(!part_path(&out).exists());
    }
}

#[test]
fn many_blocks_from_bzip2_1() {
    let dir = tempfile::tempdir().unwrap();
    let image = support::sample_image(99);
    let bz2 = write(
        dir.path(),
        "s.bz2",
        &support::compress_with("bzip2", &["-1"], &image),
    );
    let out = dir.path().join("s.bin");
    let stats = decompress_file(&bz2, &out, &opts(0)).unwrap();
    assert!(stats.blocks > 10, "{stats:?}");
    assert_eq!(std::fs::read(&out).unwrap(), image);
}

#[test]
fn multi_stream_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = support::sample_image(1);
    let b = zero_heavy();
    let c = support::noise(3 << 20, 5);
    let mut cat = support::compress_with("bzip2", &["-1"], &a);
    cat.extend(support::compress_with("lbzip2", &["-n", "2"], &b));
    cat.extend(support::compress_with("pbzip2", &["-p2", "-b1"], &c));
    let bz2 = write(dir.path(), "cat.bz2", &cat);
    let reference = support::bunzip2(&bz2);
    assert_eq!(reference.len(), a.len() + b.len() + c.len());
    let out = dir.path().join("cat.bin");
    let stats = decompress_file(&bz2, &out, &opts(2)).unwrap();
    assert!(stats.streams >= 3, "{stats:?}");
    assert_eq!(
        support::sha256(&std::fs::read(&out).unwrap()),
        support::sha256(&reference)
    );
}

#[test]
fn trailing_garbage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = support::compress_with("lbzip2", &["-1"], &support::sample_image(3));
    let len = data.len();
    data.extend(b"this is not bzip2");
    let bz2 = write(dir.path(), "junk.bz2", &data);
    let out = dir.path().join("junk.bin");
    let e = decompress_file(&bz2, &out, &opts(2)).unwrap_err();
    assert!(matches!(e, DecompressError::Input { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: trailing garbage after the last bzip2 stream, at byte {len}",
            bz2.display()
        )
    );
    assert!(!out.exists() && !part_path(&out).exists());
}

#[test]
fn truncated_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = support::compress_with("lbzip2", &["-1"], &support::sample_image(4));
    for cut in [data.len() - 3, data.len() / 2, 4, 11] {
        let bz2 = write(dir.path(), "cut.bz2", &data[..cut]);
        let out = dir.path().join("cut.bin");
        let e = decompress_file(&bz2, &out, &opts(2)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: ", bz2.display())), "{msg}");
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
        assert!(!out.exists() && !part_path(&out).exists());
    }
}

#[test]
fn corrupt_block_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = support::compress_with("lbzip2", &["-1"], &support::sample_image(5));
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    let bz2 = write(dir.path(), "bad.bz2", &data);
    let out = dir.path().join("bad.bin");
    let e = decompress_file(&bz2, &out, &opts(2)).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}: ", bz2.display())),
        "{e}"
    );
    assert!(!out.exists() && !part_path(&out).exists());
}

/// The block pieces of a single-block bzip2 stream.
fn block_of(data: &[u8]) -> flatbake::release::bz2blocks::Piece {
    let c = support::compress_with("bzip2", &["-1"], data);
    let mut pieces: Vec<_> = flatbake::release::bz2blocks::Scanner::new(&c[..])
        .map(|p| p.unwrap())
        .collect();
    assert_eq!(pieces.len(), 1);
    pieces.remove(0)
}

/// One bzip2 stream (level 1) made of these blocks, with the stream CRC they combine to
/// (or `stream_crc` when given).
fn stream_of(blocks: &[&flatbake::release::bz2blocks::Piece], stream_crc: Option<u32>) -> Vec<u8> {
    use flatbake::release::bz2blocks::{BitBuf, EOS_MAGIC};
    let mut out = BitBuf {
        bytes: b"BZh1".to_vec(),
        nbits: 32,
    };
    let mut crc = 0u32;
    for b in blocks {
        out.append(&b.bits);
        crc = crc.rotate_left(1) ^ b.block_crc();
    }
    out.put(EOS_MAGIC, 48);
    out.put(u64::from(stream_crc.unwrap_or(crc)), 32);
    out.bytes
}

fn bunzip2_accepts(path: &Path) -> bool {
    std::process::Command::new("bunzip2")
        .arg("-t")
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

/// A zero block and a data block whose bit length is not a multiple of 8, so a zero block
/// after the data block sits at another bit alignment than the first one.
fn zero_and_data_blocks() -> (
    flatbake::release::bz2blocks::Piece,
    flatbake::release::bz2blocks::Piece,
    usize,
) {
    let zeros = block_of(&vec![0u8; 3 << 20]);
    for extra in 0..64 {
        let data = block_of(&support::noise(40_000 + extra, 77));
        if (zeros.bits.nbits + data.bits.nbits) % 8 != 0 {
            return (zeros, data, 40_000 + extra);
        }
    }
    panic!("no data block with an odd bit length");
}

#[test]
fn repeated_blocks_decode_once_and_match_bunzip2() {
    let dir = tempfile::tempdir().unwrap();
    let (z, d, dlen) = zero_and_data_blocks();
    // Z D Z Z D Z: the later Z's at other bit alignments than the first.
    let bz2 = write(
        dir.path(),
        "rep.bz2",
        &stream_of(&[&z, &d, &z, &z, &d, &z], None),
    );
    let reference = support::bunzip2(&bz2);
    assert_eq!(reference.len(), 4 * (3 << 20) + 2 * dlen);
    for threads in [1, 2] {
        let out = dir.path().join(format!("rep-{threads}.bin"));
        let stats = decompress_file(&bz2, &out, &opts(threads)).unwrap();
        assert_eq!(
            support::sha256(&std::fs::read(&out).unwrap()),
            support::sha256(&reference)
        );
        assert_eq!(stats.blocks, 6);
        if threads == 1 {
            // one worker: every repeat finds the first decode in the cache
            assert_eq!(stats.blocks_reused, 4, "{stats:?}");
        }
        // the zeros are holes, not written
        assert!(stats.data_bytes_written < 1 << 20, "{stats:?}");
        let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
        assert!(allocated < 1 << 20, "allocated {allocated}");
    }
}

#[test]
fn repeated_blocks_still_catch_bad_crcs() {
    let dir = tempfile::tempdir().unwrap();
    let (z, d, _) = zero_and_data_blocks();
    // A copy of Z with one bit of its content flipped: it is no repeat, and its block
    // CRC does not match what it decodes to.
    let mut bad = z.clone();
    let last = bad.bits.bytes.len() - 2;
    bad.bits.bytes[last] ^= 0x04;
    let cases = [
        ("badblock.bz2", stream_of(&[&z, &d, &z, &bad, &z], None)),
        // every block fine (and repeated) but the stream CRC wrong
        ("badstream.bz2", stream_of(&[&z, &z, &z], Some(0x1234_5678))),
    ];
    for (name, data) in cases {
        let bz2 = write(dir.path(), name, &data);
        assert!(!bunzip2_accepts(&bz2), "{name}: bunzip2 accepted it");
        for threads in [1, 2] {
            let out = dir.path().join("bad.bin");
            let e = decompress_file(&bz2, &out, &opts(threads)).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{}: ", bz2.display())),
                "{e}"
            );
            if name == "badstream.bz2" {
                assert!(matches!(e, DecompressError::StreamCrc { .. }), "{e:?}");
            }
            assert!(!out.exists() && !part_path(&out).exists());
        }
    }
}
