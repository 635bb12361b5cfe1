//! End-to-end tests of the disk format writers (`flatbake::format`), judged by
//! qemu-img: `check` (qcow2, vhdx, vmdk; vpc has none), `info --output=json` (format
//! and exact virtual size) and `compare` against the raw input. Inputs are small sparse
//! raw images built here: random and compressible data at scattered offsets, a zero
//! block inside a data extent, data across qcow2 L2 / VMDK GT / VHDX block boundaries,
//! and (where the format allows) a last partial cluster.

use flatbake::format::{self, DiskFormat, FormatError, VmdkAdapter, VmdkSubformat, WriteOptions};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A sparse raw image of `size` bytes with data at scattered offsets.
fn make_input(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let f = File::create(&p).unwrap();
    f.set_len(size).unwrap();
    let put = |off: u64, data: &[u8]| {
        if off + data.len() as u64 <= size {
            f.write_all_at(data, off).unwrap();
        }
    };
    put(0, &noise(1, MIB as usize)); // incompressible first MiB (like a GPT + boot code)
    let text: Vec<u8> = b"flatbake sysext "
        .iter()
        .cycle()
        .take(300_000)
        .copied()
        .collect();
    put(5 * MIB + 123, &text); // compressible, unaligned
    put(40 * MIB, &vec![0u8; 2 * MIB as usize]); // written zeros: a data extent of zeros
    put(41 * MIB, &noise(2, 70_000)); // inside the zero extent, partial cluster
    put(32 * MIB - 4096, &noise(3, 8192)); // across a VMDK grain table boundary
    put(512 * MIB - 100_000, &noise(4, 200_000)); // across a qcow2 L2 table boundary
    put(size - 4096, &noise(5, 4096)); // the very end
    drop(f);
    p
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (Debian package qemu-utils) must be installed")
}

fn ok(args: &[&str]) -> String {
    let o = qemu_img(args);
    assert!(
        o.status.success(),
        "qemu-img {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn info(fmt: &DiskFormat, path: &Path) -> serde_json::Value {
    let out = ok(&[
        "info",
        "--output=json",
        "-f",
        fmt.qemu_name(),
        path.to_str().unwrap(),
    ]);
    serde_json::from_str(&out).unwrap()
}

/// Write `input` as `fmt` and judge the output with qemu-img; returns the output path.
fn convert_and_judge(dir: &Path, input: &Path, fmt: DiskFormat, opts: &WriteOptions) -> PathBuf {
    let out = dir.join(format!("{}.{}", fmt, fmt.extension()));
    let stats = format::write(&fmt, input, &out, opts).unwrap_or_else(|e| panic!("{fmt}: {e}"));
    let in_size = std::fs::metadata(input).unwrap().len();
    let want_size = opts.virtual_size.unwrap_or(in_size);
    assert_eq!(stats.virtual_size, want_size, "{fmt}");
    assert_eq!(
        stats.output_bytes,
        std::fs::metadata(&out).unwrap().len(),
        "{fmt}"
    );

    let q = fmt.qemu_name();
    let o = out.to_str().unwrap();
    let i = info(&fmt, &out);
    assert_eq!(i["format"], q, "{fmt}: {i}");
    assert_eq!(i["virtual-size"].as_u64(), Some(want_size), "{fmt}: {i}");
    if matches!(fmt, DiskFormat::Qcow2 { .. }) {
        assert_eq!(
            i["format-specific"]["data"]["compat"], "0.10",
            "{fmt}: not a v2 qcow2: {i}"
        );
    }
    if matches!(
        fmt,
        DiskFormat::Qcow2 { .. } | DiskFormat::Vhdx | DiskFormat::Vmdk { .. }
    ) {
        let c = ok(&["check", "-f", q, o]);
        assert!(c.contains("No errors were found"), "{fmt}: {c}");
        assert!(!c.contains("leaked"), "{fmt}: {c}");
    }
    let cmp = ok(&["compare", "-f", "raw", "-F", q, input.to_str().unwrap(), o]);
    assert!(cmp.contains("Images are identical"), "{fmt}: {cmp}");

    // Sparse in, small out: only the few MiB of data (plus metadata) are allocated.
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        allocated < 16 * MIB,
        "{fmt}: {allocated} bytes allocated for a sparse input"
    );
    assert!(
        stats.data_bytes < 8 * MIB,
        "{fmt}: {} data bytes",
        stats.data_bytes
    );
    out
}

#[test]
fn every_format_round_trips_through_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), "in.raw", 600 * MIB);
    for fmt in DiskFormat::ALL {
        convert_and_judge(dir.path(), &input, fmt, &WriteOptions::default());
    }
}

#[test]
fn last_partial_cluster_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    // a whole number of sectors, not of 64 KiB clusters nor of MiB
    let input = make_input(dir.path(), "odd.raw", 100 * MIB + 4608);
    for fmt in DiskFormat::ALL {
        if matches!(fmt, DiskFormat::VhdFixed | DiskFormat::VhdDynamic) {
            continue;
        }
        convert_and_judge(dir.path(), &input, fmt, &WriteOptions::default());
    }
}

#[test]
fn vhd_refuses_sizes_that_are_not_whole_mib_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), "odd.raw", 100 * MIB + 4608);
    for fmt in [DiskFormat::VhdFixed, DiskFormat::VhdDynamic] {
        let out = dir.path().join("x.vhd");
        let err = format::write(&fmt, &input, &out, &WriteOptions::default()).unwrap_err();
        assert!(matches!(err, FormatError::Size { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("odd.raw") && msg.contains("1 MiB"), "{msg}");
        assert!(!out.exists(), "{fmt} left {out:?} behind");
    }
}

#[test]
fn larger_virtual_size_for_exoscale() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), "in.raw", 300 * MIB);
    let opts = WriteOptions {
        virtual_size: Some(10 << 30),
        ..WriteOptions::default()
    };
    for fmt in [
        DiskFormat::Qcow2 { compressed: true },
        DiskFormat::VhdFixed,
        DiskFormat::Vhdx,
    ] {
        convert_and_judge(dir.path(), &input, fmt, &opts);
    }
}

#[test]
fn smaller_virtual_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), "in.raw", 64 * MIB);
    let out = dir.path().join("x.qcow2");
    let opts = WriteOptions {
        virtual_size: Some(32 * MIB),
        ..WriteOptions::default()
    };
    let err = format::write(
        &DiskFormat::Qcow2 { compressed: false },
        &input,
        &out,
        &opts,
    )
    .unwrap_err();
    assert!(err.to_string().contains("in.raw"), "{err}");
    assert!(!out.exists());
}

#[test]
fn missing_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = format::write(
        &DiskFormat::Vhdx,
        &dir.path().join("nope.raw"),
        &dir.path().join("o.vhdx"),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope.raw"), "{err}");
    assert!(!dir.path().join("o.vhdx").exists());
}

#[test]
fn compressed_output_does_not_depend_on_thread_count() {
    // The pipeline is in order: one thread or many, the same bytes (qcow2 carries no
    // random identifiers).
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), "in.raw", 600 * MIB);
    let fmt = DiskFormat::Qcow2 { compressed: true };
    let mut outs = Vec::new();
    for threads in [1, 3] {
        let out = dir.path().join(format!("t{threads}.qcow2"));
        format::write(
            &fmt,
            &input,
            &out,
            &WriteOptions {
                threads,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        outs.push(std::fs::read(&out).unwrap());
    }
    assert!(outs[0] == outs[1], "thread count changed the output");
    // and it is actually smaller than the uncompressed qcow2
    let plain = dir.path().join("plain.qcow2");
    format::write(
        &DiskFormat::Qcow2 { compressed: false },
        &input,
        &plain,
        &WriteOptions::default(),
    )
    .unwrap();
    assert!((outs[0].len() as u64) < std::fs::metadata(&plain).unwrap().len());
}

#[test]
fn from_an_open_file_and_vmdk_extent_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path(), "in.raw", 64 * MIB);
    let f = File::open(&input).unwrap();
    let fmt = DiskFormat::Vmdk {
        subformat: VmdkSubformat::StreamOptimized,
        adapter: VmdkAdapter::LsiLogic,
    };
    let out = dir.path().join("tmp.partial");
    let opts = WriteOptions {
        final_name: Some("flatcar_production_vmware_image.vmdk".into()),
        ..WriteOptions::default()
    };
    format::write_file(&fmt, &f, &input, &out, &opts).unwrap();
    let mut head = vec![0u8; 2048];
    File::open(&out)
        .unwrap()
        .read_exact_at(&mut head, 512)
        .unwrap();
    let desc = String::from_utf8_lossy(&head);
    assert!(
        desc.contains("RW 131072 SPARSE \"flatcar_production_vmware_image.vmdk\""),
        "{desc}"
    );
    assert!(desc.contains("createType=\"streamOptimized\""), "{desc}");
    assert!(desc.contains("ddb.adapterType = \"lsilogic\""), "{desc}");
    assert!(desc.contains("ddb.geometry.heads = \"255\""), "{desc}");
    let cmp = ok(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "vmdk",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(cmp.contains("Images are identical"), "{cmp}");
}
