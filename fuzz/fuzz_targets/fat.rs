//! The ESP's FAT reader (`fs::fat`): the architecture probe and the first-boot lookup on
//! an arbitrary filesystem image; both must end (fatfs follows cluster chains without
//! bound; our read budget stops it) and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let _ = flatbake::fs::fat::arch_of(Cursor::new(data.to_vec()));
    let _ = flatbake::fs::fat::first_boot_in(Cursor::new(data.to_vec()));
});
