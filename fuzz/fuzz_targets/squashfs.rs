//! The squashfs path of `sysext::image`: our superblock check, then backhand's reader
//! (superblock, tables), our directory depth pre-scan, backhand's tree and reading a small file, on arbitrary bytes.
#![no_main]

use flatbake::sysext::squashfs::Superblock;
use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};

fuzz_target!(|data: &[u8]| {
    if Superblock::parse(data, data.len() as u64).is_err() {
        return;
    }
    // as sysext::image does: the tables, our bounded depth pre-scan, then the tree
    let Ok(tables) = backhand::Squashfs::from_reader(Cursor::new(data)) else {
        return;
    };
    if flatbake::sysext::squashfs::check_depth(&tables).is_err() {
        return;
    }
    let Ok(fs) = tables.into_filesystem_reader() else {
        return;
    };
    for node in fs.files() {
        let _ = node.fullpath.to_string_lossy();
        if let backhand::InnerNode::File(f) = &node.inner {
            if f.file_len() <= 64 * 1024 {
                let mut buf = Vec::new();
                let _ = fs.file(f).reader().read_to_end(&mut buf);
            }
        }
    }
});
