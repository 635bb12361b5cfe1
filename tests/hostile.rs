//! End-to-end: hostile and broken input. Each case feeds one damaged input (the small
//! corpus under `fixtures/hostile/`, made by `scripts/make-hostile-fixtures.sh`, or a
//! damaged copy of the fixture disk image made here) to the `flatbake` binary and
//! judges the same things: a non-zero exit, exactly one `error:` line naming the input
//! and the problem (a pre-flight report of several problems is the one exception: a
//! count, then one line per problem), no output file, no `.flatbake*` temporary files,
//! the input unchanged.

mod support;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

fn hostile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hostile")
        .join(name)
}

/// Check the shape of a failed run's stderr: one `error:` line, or a pre-flight list
/// ("N problems, nothing was written:" and N lines `  - ...`). Returns stderr.
fn one_error(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "{what}: succeeded\n{err}");
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{what}: want one error line: {err}");
    assert!(
        lines[lines.len() - 1 - count_list(&err)].starts_with("error: "),
        "{what}: {err}"
    );
    if let Some(n) = err
        .split(" problems, nothing was written:")
        .next()
        .and_then(|h| h.strip_prefix("error: "))
    {
        if let Ok(n) = n.parse::<usize>() {
            assert_eq!(count_list(&err), n, "{what}: {err}");
        }
    } else {
        assert_eq!(lines.len(), 1, "{what}: more than one line: {err}");
    }
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

fn count_list(err: &str) -> usize {
    err.lines().filter(|l| l.starts_with("  - ")).count()
}

/// Run a bake of `image` with `args` that must fail on `input`; check everything
/// above and that `input` and `image` are unchanged. Returns stderr.
fn bake_refused(image: &Path, input: &Path, args: &[String]) -> String {
    bake_refused_maybe(image, Some(input), args)
}

/// [`bake_refused`] for an input that is not a regular file (nothing to hash).
fn bake_refused_maybe(image: &Path, input: Option<&Path>, args: &[String]) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let (img_before, in_before) = (stamp(image), input.map(sha256_file));
    let mut all: Vec<String> = vec![
        "--image".into(),
        image.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    all.extend_from_slice(args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let err = one_error(&flatbake(&refs), &format!("{all:?}"));
    assert!(!out.exists(), "output written despite the error");
    assert!(
        leftovers(dir.path()).is_empty(),
        "temporary files left: {:?}",
        leftovers(dir.path())
    );
    assert_eq!(stamp(image), img_before, "image modified");
    assert_eq!(input.map(sha256_file), in_before, "input modified");
    err
}

/// A bake of a damaged disk image: the image is the input.
fn bad_disk(image: &Path) -> String {
    bake_refused(image, image, &[wasm()])
}

/// A sparse copy of the fixture image, in `dir`.
fn copy_image(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(current())
        .arg(&p));
    p
}

fn rd(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).expect("read");
    b
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Edit the primary GPT's entry array of `img` with `f(entries)`, then rewrite both
/// CRCs so the table is consistent and only the edit is wrong.
fn edit_primary_entries(img: &Path, f: impl FnOnce(&mut [u8])) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .expect("open");
    let mut hdr = rd(&file, 512, 512);
    let entries_lba = u64_at(&hdr, 72);
    let n = u32::from_le_bytes(hdr[80..84].try_into().expect("4")) as usize;
    let size = u32::from_le_bytes(hdr[84..88].try_into().expect("4")) as usize;
    let mut entries = rd(&file, entries_lba * 512, n * size);
    f(&mut entries);
    file.write_all_at(&entries, entries_lba * 512)
        .expect("write");
    hdr[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    hdr[16..20].fill(0);
    let hsize = u32::from_le_bytes(hdr[12..16].try_into().expect("4")) as usize;
    let crc = crc32fast::hash(&hdr[..hsize]);
    hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&hdr, 512).expect("write");
}

/// Set the first/last LBA of partition `number` (1-based) in the entry array.
fn set_lbas(entries: &mut [u8], number: usize, first: Option<u64>, last: Option<u64>) {
    let e = &mut entries[(number - 1) * 128..number * 128];
    if let Some(v) = first {
        e[32..40].copy_from_slice(&v.to_le_bytes());
    }
    if let Some(v) = last {
        e[40..48].copy_from_slice(&v.to_le_bytes());
    }
}

fn contains_all(err: &str, wants: &[&str]) {
    for w in wants {
        assert!(err.contains(w), "missing {w:?} in: {err}");
    }
}

#[test]
fn truncated_image() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_image(dir.path(), "trunc.bin");
    let (root_off, root_size) = part(&img, ROOT);
    let len = root_off + (1 << 20);
    File::options()
        .write(true)
        .open(&img)
        .expect("open")
        .set_len(len)
        .expect("truncate");
    let err = bad_disk(&img);
    let end = root_off + root_size;
    contains_all(
        &err,
        &[&format!(
            "{}: truncated: partition 9 (ROOT) ends at byte {end} but the file has {len}",
            img.display()
        )],
    );
}

#[test]
fn corrupt_primary_gpt_with_good_backup() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_image(dir.path(), "primary.bin");
    let file = OpenOptions::new().write(true).open(&img).expect("open");
    file.write_all_at(b"X", 600).expect("write");
    drop(file);
    let last = std::fs::metadata(&img).expect("meta").len() / 512 - 1;
    let err = bad_disk(&img);
    let p = img.display().to_string();
    contains_all(
        &err,
        &[
            &format!("{p}: corrupt GPT: primary header CRC32"),
            &format!("the backup GPT at LBA {last} is intact"),
            &format!("sgdisk -e {p}"),
        ],
    );
    // The advice works: after `sgdisk -e` the image is read again.
    sh(Command::new("sgdisk").arg("-e").arg(&img));
    let o = flatbake(&["inspect", &p]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn corrupt_primary_gpt_and_backup() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_image(dir.path(), "both.bin");
    let len = std::fs::metadata(&img).expect("meta").len();
    let file = OpenOptions::new().write(true).open(&img).expect("open");
    file.write_all_at(b"X", 600).expect("write");
    file.write_all_at(b"X", len - 512 + 88).expect("write");
    drop(file);
    let err = bad_disk(&img);
    contains_all(
        &err,
        &[
            &format!("{}: corrupt GPT: primary header CRC32", img.display()),
            "no usable backup either (backup header CRC32",
        ],
    );
    assert!(!err.contains("sgdisk"), "{err}");
}

#[test]
fn overlapping_partitions() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_image(dir.path(), "overlap.bin");
    let (oem_off, _) = part(&img, OEM);
    edit_primary_entries(&img, |e| {
        set_lbas(e, ROOT as usize, Some(oem_off / 512 + 8), None)
    });
    let err = bad_disk(&img);
    contains_all(
        &err,
        &[
            &format!("{}: corrupt GPT: partitions", img.display()),
            "(OEM)",
            "(ROOT)",
            "overlap",
        ],
    );
}

#[test]
fn partition_outside_the_usable_area() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_image(dir.path(), "range.bin");
    // the ESP starting on the partition table itself
    edit_primary_entries(&img, |e| set_lbas(e, ESP as usize, Some(1), None));
    let err = bad_disk(&img);
    contains_all(
        &err,
        &[
            &format!(
                "{}: corrupt GPT: partition 1 (EFI-SYSTEM) at LBA 1..=",
                img.display()
            ),
            "lies outside the usable area",
        ],
    );
    assert!(!err.contains("past the end of the file"), "{err}");
}

#[test]
fn partition_past_the_end_of_the_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_image(dir.path(), "past.bin");
    let sectors = std::fs::metadata(&img).expect("meta").len() / 512;
    edit_primary_entries(&img, |e| {
        set_lbas(e, ROOT as usize, None, Some(sectors + 100))
    });
    let err = bad_disk(&img);
    contains_all(
        &err,
        &[
            &format!("{}: corrupt GPT: partition 9 (ROOT)", img.display()),
            &format!("..={} lies outside the usable area", sectors + 100),
            &format!("past the end of the file ({sectors} sectors)"),
        ],
    );
}

#[test]
fn squashfs_with_a_corrupt_superblock() {
    for (file, why) in [
        ("sqfs-bad-magic-version.raw", "unreadable squashfs: squashfs version 9.0; only 4.0 is supported"),
        ("sqfs-bad-block-size.raw", "unreadable squashfs: corrupt superblock: block size 12345 and block_log 17 are inconsistent"),
        ("sqfs-bad-compressor.raw", "unreadable squashfs: corrupt superblock: unknown compressor id 99"),
        ("sqfs-tables-past-end.raw", "unreadable squashfs: corrupt superblock: inode table at byte 1099511627776 is outside the filesystem"),
        ("sqfs-short.raw", "unreadable squashfs: truncated: the superblock says the filesystem is 427 bytes, the file has 200"),
    ] {
        let input = hostile(file);
        let err = bake_refused(&current(), &input, &[format!("x:{}", input.display())]);
        contains_all(&err, &[&format!("{}: {why}", input.display())]);
    }
}

#[test]
fn extension_release_with_odd_contents() {
    let rel = "/usr/lib/extension-release.d/extension-release.";
    for (name, why) in [
        ("release-huge", "too large"),
        (
            "release-binary",
            "contains a NUL byte, which systemd refuses",
        ),
        ("release-noid", "extension-release has no ID="),
        ("release-dir", "not a regular file"),
    ] {
        let input = hostile(&format!("{name}-1.0-x86-64.raw"));
        let err = bake_refused(&current(), &input, &[format!("{name}:{}", input.display())]);
        let named = if name == "release-noid" {
            format!("{}: ", input.display())
        } else {
            format!("{}: {rel}{name}: ", input.display())
        };
        contains_all(&err, &[&named, why]);
    }
    // a line without '=' is ignored by systemd's env-file parser, which merges the rest
    // (tests/sysext_compat.rs checks that against systemd-sysext): not refused
    let input = hostile("release-garbage-1.0-x86-64.raw");
    let o = flatbake(&["sysext", "check", "--name", "release-garbage", s(&input)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn name_file_with_path_tricks() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = sysext("wasmtime-v24.0.0-x86-64.raw");
    // a good sysext under names that cannot be installed
    let newline = dir.path().join("wasm\ntime.raw");
    let space = dir.path().join("wasm time.raw");
    let quote = dir.path().join("wasm'time.raw");
    for p in [&newline, &space, &quote] {
        std::fs::copy(&good, p).expect("copy");
    }
    let fifo = dir.path().join("fifo.raw");
    sh(Command::new("mkfifo").arg(&fifo));
    let d = dir.path().display().to_string();
    let none = || None::<PathBuf>;
    let cases: Vec<(String, Option<PathBuf>, String)> = vec![
        ("x:".into(), none(), "'x:': no FILE after NAME:".into()),
        (
            format!("x:{d}"),
            none(),
            format!("{d}: a directory, not a regular file"),
        ),
        (
            format!("x:{d}/.."),
            none(),
            format!("{d}/..: a directory, not a regular file"),
        ),
        (
            "x:/dev/zero".into(),
            none(),
            "/dev/zero: a character device, not a regular file".into(),
        ),
        (
            format!("x:{}", fifo.display()),
            none(),
            format!("{}: a FIFO, not a regular file", fifo.display()),
        ),
        (
            format!("wasmtime:{}", space.display()),
            Some(space.clone()),
            format!("{}: cannot be installed under that name", space.display()),
        ),
        (
            format!("wasmtime:{}", quote.display()),
            Some(quote.clone()),
            format!("{}: cannot be installed under that name", quote.display()),
        ),
        (
            format!("wasmtime:{}", newline.display()),
            Some(newline.clone()),
            format!(
                "{:?}: contains a control character",
                newline.display().to_string()
            ),
        ),
        (
            format!("{}:{}", "a".to_owned() + &"é".repeat(120), good.display()),
            Some(good.clone()),
            "is too long".into(),
        ),
        (
            format!("../../etc:{}", good.display()),
            Some(good.clone()),
            "'../../etc".into(),
        ),
        (
            format!("wasmtime:{}", hostile("sysupdate-not-unit.conf").display()),
            Some(hostile("sysupdate-not-unit.conf")),
            "sysupdate-not-unit.conf: not a squashfs or erofs image".into(),
        ),
    ];
    for (arg, input, why) in cases {
        let err = bake_refused_maybe(&current(), input.as_deref(), std::slice::from_ref(&arg));
        contains_all(&err, &[&why]);
    }
}

#[test]
fn sysupdate_conf_not_a_unit_file() {
    for (file, why) in [
        (
            "sysupdate-not-unit.conf",
            "sysupdate-not-unit.conf: not a sysupdate transfer file: line 1: not KEY=value",
        ),
        (
            "sysupdate-binary.conf",
            "sysupdate-binary.conf: not a text file",
        ),
    ] {
        let conf = hostile(file);
        let err = bake_refused(
            &current(),
            &conf,
            &[
                "--sysupdate-conf".into(),
                format!("wasmtime={}", conf.display()),
                wasm(),
            ],
        );
        contains_all(&err, &[&format!("{}", conf.display()), why]);
    }
}

/// `flatbake inspect` of a bad input: the one-error checks, the input unchanged, and
/// nothing left in TMPDIR.
fn inspect_refused(input: &Path) -> String {
    let tmp = tempfile::tempdir().expect("tmp");
    let before = sha256_file(input);
    let o = Command::new(BIN)
        .arg("inspect")
        .arg(input)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run");
    let err = one_error(&o, &input.display().to_string());
    assert_eq!(sha256_file(input), before, "input modified");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("ls").collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    err
}

#[test]
fn qcow2_with_a_bad_header() {
    for (file, why) in [
        ("qcow2-bad-cluster-bits.qcow2", "qcow2 cluster_bits 40 out of range"),
        ("qcow2-l1-past-end.qcow2", "qcow2 L1 table at byte 0x100000 lies past the end of the file (4096 bytes; truncated?)"),
        ("qcow2-version-7.qcow2", "qcow2 version 7 is not supported"),
    ] {
        let input = hostile(file);
        let err = inspect_refused(&input);
        contains_all(&err, &[&format!("{}: {why}", input.display())]);
        // bake takes raw images only, and says so
        let err = bake_refused(&input, &input, &[wasm()]);
        contains_all(&err, &[&format!("{}: a qcow2 image", input.display())]);
    }
}

#[test]
fn truncated_qcow2() {
    let dir = tempfile::tempdir().expect("tmp");
    let q = dir.path().join("flatcar.qcow2");
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(current())
        .arg(&q));
    let len = std::fs::metadata(&q).expect("meta").len();
    for cut in [len / 2, 300_000, 70_000] {
        let t = dir.path().join(format!("cut-{cut}.qcow2"));
        std::fs::copy(&q, &t).expect("copy");
        File::options()
            .write(true)
            .open(&t)
            .expect("open")
            .set_len(cut)
            .expect("truncate");
        let err = inspect_refused(&t);
        contains_all(
            &err,
            &[&format!("{}: ", t.display()), "past the end of the file"],
        );
    }
}

/// bzip2 input (what `--fetch` decompresses) through the library: the error names the
/// input, and neither the output nor its `.part` file is left.
fn decompress_refused(input: &Path) -> String {
    use flatbake::release::decompress::{decompress_file, part_path, DecompressOptions};
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("image.bin");
    let before = sha256_file(input);
    let opts = DecompressOptions {
        threads: 2,
        progress: flatbake::release::ProgressMode::Quiet,
    };
    let err = decompress_file(input, &out, &opts)
        .expect_err("decompressed a broken bzip2 file")
        .to_string();
    assert!(
        !out.exists() && !part_path(&out).exists(),
        "output left behind"
    );
    assert!(
        std::fs::read_dir(dir.path()).expect("ls").next().is_none(),
        "files left behind"
    );
    assert_eq!(sha256_file(input), before);
    assert!(!err.contains('\n'), "{err}");
    err
}

#[test]
fn truncated_bz2() {
    let input = hostile("truncated.bin.bz2");
    let err = decompress_refused(&input);
    contains_all(&err, &[&format!("{}: ", input.display()), "truncated"]);
}

#[test]
fn bz2_with_trailing_garbage() {
    let input = hostile("trailing-garbage.bin.bz2");
    let err = decompress_refused(&input);
    contains_all(
        &err,
        &[&format!(
            "{}: trailing garbage after the last bzip2 stream",
            input.display()
        )],
    );
}
