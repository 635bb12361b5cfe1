//! The GPT reader on arbitrary bytes taken as a whole disk image (primary table,
//! backup table in the last sector, partition checks).
#![no_main]

use flatbake::disk::gpt::Gpt;
use libfuzzer_sys::fuzz_target;
use std::io;

fuzz_target!(|data: &[u8]| {
    let mut read = |off: u64, buf: &mut [u8]| -> io::Result<()> {
        let start = usize::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(data.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?);
        Ok(())
    };
    if let Ok(g) = Gpt::parse(&mut read, data.len() as u64, std::path::Path::new("fuzz.img")) {
        for p in &g.partitions {
            // what callers do with a partition: offsets and sizes inside the file
            assert!(p.offset() + p.size() <= data.len() as u64);
        }
    }
});
