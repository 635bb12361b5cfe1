//! Hostile disk images at the command line, beyond tests/hostile.rs: the fixture
//! image truncated at every structure boundary (protective MBR, GPT header, entry
//! array, each partition, the backup table), a backup GPT that is intact but
//! disagrees with the primary, and partitions with the right type GUID holding the
//! wrong filesystem (or none). (A damaged backup GPT was carried into the output
//! with a warning, which sgdisk -v then flagged: the output's backup is now rebuilt
//! from the sound primary.) Each bake must either refuse (exit 1, one line naming
//! the image, nothing written, no temporary, the input unchanged) or write an image
//! that the outside judges accept: `sgdisk -v` for the table, `e2fsck -fn` for ROOT,
//! `btrfs check` for OEM.

mod support;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::refusal::{refused_cleanly, Before};
use support::*;

fn wasm() -> String {
    format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    )
}

fn copy_image(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&p));
    p
}

/// Bake `img`; return `Err(stderr)` when it was refused (judged cleanly) or
/// `Ok(output)` when it succeeded (the caller judges the output).
fn bake(img: &Path, what: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let out = img.with_extension("out");
    let before = Before::take(&[img]);
    let mut args = vec!["--image", s(img), "-o", s(&out)];
    args.extend_from_slice(extra);
    let w = wasm();
    args.push(&w);
    let o = flatbake(&args);
    if o.status.success() {
        before.unchanged(what);
        return Ok(out);
    }
    let err = refused_cleanly(&o, what, &out, &before);
    // it names the file at fault: the image, or the sysext that cannot be judged on it
    let ext = sysext("wasmtime-v24.0.0-x86-64.raw");
    assert!(
        err.contains(s(img)) || err.contains(s(&ext)),
        "{what}: the error names neither the image nor the sysext: {err}"
    );
    Err(err)
}

/// An accepted output must satisfy the outside judges.
fn judged(out: &Path, what: &str) {
    let o = sh(Command::new("sgdisk").arg("-v").arg(out));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("No problems found"),
        "{what}: sgdisk -v on the output: {text}"
    );
    e2fsck_root(out);
    let (off, size) = part(out, OEM);
    let oem = out.with_extension("oem");
    sh(Command::new("dd")
        .arg(format!("if={}", s(out)))
        .arg(format!("of={}", s(&oem)))
        .args([
            "bs=1M",
            "conv=sparse",
            "status=none",
            "iflag=skip_bytes,count_bytes",
        ])
        .arg(format!("skip={off}"))
        .arg(format!("count={size}")));
    sh(Command::new("btrfs")
        .args(["check", "--readonly"])
        .arg(&oem));
    std::fs::remove_file(&oem).expect("rm");
}

fn truncate(img: &Path, len: u64) {
    File::options()
        .write(true)
        .open(img)
        .expect("open")
        .set_len(len)
        .expect("truncate");
}

#[test]
fn truncated_at_every_structure_boundary_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let full = fixtures().join("current.bin");
    let end = std::fs::metadata(&full).expect("meta").len();
    let (esp, esp_len) = part(&full, ESP);
    let (usr, _) = part(&full, USR_A);
    let (oem, oem_len) = part(&full, OEM);
    let (root, root_len) = part(&full, ROOT);
    let cuts: Vec<(&str, u64)> = vec![
        ("empty file", 0),
        ("inside the protective MBR", 100),
        ("after the protective MBR", 512),
        ("inside the GPT header", 600),
        ("after the GPT header", 1024),
        ("inside the entry array", 1024 + 64 * 128 + 7),
        ("after the entry array", 34 * 512),
        ("at the ESP", esp),
        ("inside the ESP", esp + esp_len / 2),
        ("at USR-A", usr),
        ("at OEM", oem),
        ("inside OEM's superblock", oem + 64 * 1024 + 100),
        ("inside OEM", oem + oem_len / 2),
        ("at ROOT", root),
        ("inside ROOT's superblock", root + 1024 + 100),
        ("one sector short of ROOT's end", root + root_len - 512),
    ];
    for (what, len) in cuts {
        let img = copy_image(dir.path(), "t.bin");
        truncate(&img, len);
        let r = bake(&img, what, &[]);
        assert!(
            r.is_err(),
            "{what}: a disk truncated at byte {len} was baked"
        );
        std::fs::remove_file(&img).expect("rm");
    }
    // only the backup table missing: refused, or an output that sgdisk -v accepts
    for (what, len) in [
        ("without the backup header", end - 512),
        ("without the backup table", end - 33 * 512),
        ("one byte short", end - 1),
    ] {
        let img = copy_image(dir.path(), "b.bin");
        truncate(&img, len);
        if let Ok(out) = bake(&img, what, &[]) {
            judged(&out, what);
            std::fs::remove_file(&out).expect("rm");
        }
        std::fs::remove_file(&img).expect("rm");
    }
}

/// Rewrite the backup GPT's entry array with `f`, with both CRCs made consistent.
fn edit_backup_entries(img: &Path, f: impl FnOnce(&mut [u8])) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .expect("open");
    let end = file.metadata().expect("meta").len();
    let mut hdr = vec![0u8; 512];
    file.read_exact_at(&mut hdr, end - 512).expect("read");
    assert_eq!(&hdr[..8], b"EFI PART");
    let lba = u64::from_le_bytes(hdr[72..80].try_into().expect("8"));
    let n = u32::from_le_bytes(hdr[80..84].try_into().expect("4")) as usize;
    let size = u32::from_le_bytes(hdr[84..88].try_into().expect("4")) as usize;
    let mut entries = vec![0u8; n * size];
    file.read_exact_at(&mut entries, lba * 512).expect("read");
    f(&mut entries);
    file.write_all_at(&entries, lba * 512).expect("write");
    hdr[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    hdr[16..20].fill(0);
    let hsize = u32::from_le_bytes(hdr[12..16].try_into().expect("4")) as usize;
    let crc = crc32fast::hash(&hdr[..hsize]);
    hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&hdr, end - 512).expect("write");
}

#[test]
fn a_backup_gpt_that_disagrees_is_refused_or_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    type Edit = fn(&mut [u8]);
    let cases: Vec<(&str, Edit)> = vec![
        ("backup names ROOT differently", |e| {
            let r = (ROOT as usize - 1) * 128;
            e[r + 56..r + 58].copy_from_slice(&u16::from(b'X').to_le_bytes());
        }),
        ("backup moves ROOT", |e| {
            let r = (ROOT as usize - 1) * 128;
            let first = u64::from_le_bytes(e[r + 32..r + 40].try_into().expect("8"));
            e[r + 32..r + 40].copy_from_slice(&(first + 2048).to_le_bytes());
        }),
        ("backup drops OEM", |e| {
            let r = (OEM as usize - 1) * 128;
            e[r..r + 128].fill(0);
        }),
    ];
    for (what, f) in cases {
        let img = copy_image(dir.path(), "g.bin");
        edit_backup_entries(&img, f);
        // the damage is real: sgdisk sees the tables differ
        let o = Command::new("sgdisk")
            .arg("-v")
            .arg(&img)
            .output()
            .expect("sgdisk");
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("No problems found"),
            "{what}: sgdisk -v sees no problem in the input"
        );
        if let Ok(out) = bake(&img, what, &[]) {
            judged(&out, what);
            std::fs::remove_file(&out).expect("rm");
        }
        std::fs::remove_file(&img).expect("rm");
    }
}

/// Overwrite `len` bytes at `off` of `img` with `byte`.
fn fill(img: &Path, off: u64, len: usize, byte: u8) {
    let f = OpenOptions::new().write(true).open(img).expect("open");
    f.write_all_at(&vec![byte; len], off).expect("write");
}

#[test]
fn right_type_guid_wrong_filesystem() {
    let dir = tempfile::tempdir().expect("tmp");
    let full = fixtures().join("current.bin");
    let (esp, _) = part(&full, ESP);
    let (usr, _) = part(&full, USR_A);
    let (oem, _) = part(&full, OEM);
    let (root, root_len) = part(&full, ROOT);
    // an extension installed to OEM, so OEM is edited too
    let to_oem: &[&str] = &["--install-to", "wasmtime=oem:/sysext"];
    type Case<'a> = (&'a str, u64, usize, u8, bool, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        // (what, offset, length, byte, must refuse, extra arguments)
        ("ROOT without an ext4 superblock", root, 8192, 0, true, &[]),
        ("ROOT full of 0xff", root, 1 << 20, 0xff, true, &[]),
        (
            "OEM without a btrfs superblock",
            oem + 65536,
            4096,
            0,
            true,
            to_oem,
        ),
        (
            "OEM's btrfs superblock garbled",
            oem + 65600,
            64,
            0x5a,
            true,
            to_oem,
        ),
        ("ESP without a FAT boot sector", esp, 512, 0, false, &[]),
        (
            "USR-A without a btrfs superblock",
            usr + 65536,
            4096,
            0,
            false,
            &[],
        ),
    ];
    for (what, off, len, byte, must_refuse, extra) in cases {
        let img = copy_image(dir.path(), "w.bin");
        fill(&img, off, len, byte);
        if let Ok(out) = bake(&img, what, extra) {
            assert!(!must_refuse, "{what}: baked");
            judged(&out, what);
            std::fs::remove_file(&out).expect("rm");
        }
        std::fs::remove_file(&img).expect("rm");
    }
    // ROOT holding a FAT filesystem instead of ext4
    let img = copy_image(dir.path(), "b.bin");
    let fsimg = dir.path().join("fat.img");
    sh(Command::new("truncate")
        .arg(format!("-s{root_len}"))
        .arg(&fsimg));
    sh(Command::new("mkfs.fat").arg(&fsimg));
    sh(Command::new("dd")
        .arg(format!("if={}", s(&fsimg)))
        .arg(format!("of={}", s(&img)))
        .args([
            "bs=1M",
            "conv=sparse,notrunc",
            "status=none",
            "oflag=seek_bytes",
        ])
        .arg(format!("seek={root}")));
    assert!(bake(&img, "ROOT holding a FAT", &[]).is_err());
}
