//! Our EROFS reader: open, look up the extension-release directory, list it, read a
//! file, and walk the whole tree, on arbitrary bytes.
#![no_main]

use flatbake::sysext::erofs::Erofs;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(mut fs) = Erofs::open(Cursor::new(data)) else {
        return;
    };
    let dir = "/usr/lib/extension-release.d";
    if let Ok(Some(d)) = fs.lookup(dir) {
        if let Ok(entries) = fs.read_dir(&d, dir) {
            for e in entries.iter().take(16) {
                if let Ok(ino) = fs.inode(e.nid) {
                    let _ = fs.read(&ino, &e.name, 64 * 1024);
                }
            }
        }
    }
    let _ = fs.lookup("/usr/lib/extension-release.d/extension-release.x");
    // the bounded walk of the whole tree (sysext checks every path and owner)
    let mut n = 0usize;
    let _ = fs.walk(|p, _| n += p.len());
});
