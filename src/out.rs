//! Standard output for reports and summaries. A reader that stops early
//! (`flatbake inspect IMAGE | head`) ends printing quietly instead of panicking; the run
//! itself goes on and cleans up as usual. Any other write error (a full disk behind a
//! redirect) is kept and turned into a failure at exit by `main`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Print `args` to standard output (what `out!`/`outln!` expand to).
pub fn print(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            if let Ok(mut f) = FAILED.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A write error other than a closed pipe, if one happened.
pub fn failure() -> Option<String> {
    FAILED.lock().ok().and_then(|f| f.clone())
}

/// `print!` to standard output, quiet on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::print(format_args!($($arg)*)) };
}

/// `println!` to standard output, quiet on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::print(format_args!("{}\n", format_args!($($arg)*))) };
}
