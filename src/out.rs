//! Standard output for reports and summaries. A reader that stops early
//! (`flatbake inspect IMAGE | head`) ends printing quietly instead of panicking; the run
//! itself goes on and cleans up as usual. Any other write error (a full disk behind a
//! redirect) is kept and turned into a failure at exit by `main`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static RESERVED: AtomicBool = AtomicBool::new(false);

/// Standard output carries a JSON document (`--json` without FILE): from now on the
/// human report goes to standard error, so stdout parses as one document.
pub fn reserve_for_json() {
    RESERVED.store(true, Ordering::Relaxed);
}

/// Print a JSON document (or anything machine-read) to standard output.
pub fn print_machine(args: std::fmt::Arguments<'_>) {
    write_stdout(args)
}
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Print `args` to standard output (what `out!`/`outln!` expand to).
pub fn print(args: std::fmt::Arguments<'_>) {
    if RESERVED.load(Ordering::Relaxed) {
        let _ = std::io::stderr().lock().write_fmt(args);
        return;
    }
    write_stdout(args)
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
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

// ---- verbosity and progress ----------------------------------------------------------

static LEVEL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

/// `--quiet` (errors and the final result only) or `--verbose` (also every outside
/// command flatbake runs).
pub fn set_level(quiet: bool, verbose: bool) {
    let l = if quiet {
        0
    } else if verbose {
        2
    } else {
        1
    };
    LEVEL.store(l, Ordering::Relaxed);
}

/// `--quiet` is in effect.
pub fn quiet() -> bool {
    LEVEL.load(Ordering::Relaxed) == 0
}

/// `--verbose` is in effect.
pub fn verbose() -> bool {
    LEVEL.load(Ordering::Relaxed) >= 2
}

/// A progress note on stderr, `flatbake: ...` (nothing with `--quiet`).
pub fn note(args: std::fmt::Arguments<'_>) {
    if !quiet() {
        eprintln!("flatbake: {args}");
    }
}

/// `note!("...")`: a `flatbake: ` line on stderr unless `--quiet`.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::out::note(format_args!($($arg)*)) };
}

/// Seconds between plain progress lines when stderr is not a terminal
/// (`FLATBAKE_PROGRESS_INTERVAL` overrides the default 10).
fn plain_interval() -> std::time::Duration {
    std::env::var("FLATBAKE_PROGRESS_INTERVAL")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(std::time::Duration::from_secs_f64)
        .unwrap_or(std::time::Duration::from_secs(10))
}

/// One phase of a run (copy, edit, rebuild, write a format, verify): a spinner with the
/// whole label and elapsed time on a terminal; off a terminal a `flatbake: LABEL` line,
/// one `... still running` line per interval, and `LABEL: done in Ns` when it took
/// longer than a second. Nothing with `--quiet`. Ends when dropped.
pub struct Phase {
    label: String,
    start: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    ok: bool,
    ticker: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Phase {
    pub fn start(label: impl Into<String>) -> Phase {
        use std::io::IsTerminal;
        let label = label.into();
        let mut p = Phase {
            label: label.clone(),
            start: std::time::Instant::now(),
            bar: None,
            ok: false,
            ticker: None,
        };
        if quiet() {
            return p;
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} flatbake: {msg} [{elapsed}]")
            {
                bar.set_style(style);
            }
            bar.set_message(label);
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar.tick();
            p.bar = Some(bar);
        } else {
            eprintln!("flatbake: {label}");
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let every = plain_interval();
            let start = p.start;
            let h = std::thread::spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    eprintln!(
                        "flatbake: {label}: still running, {}s",
                        start.elapsed().as_secs()
                    );
                }
            });
            p.ticker = Some((tx, h));
        }
        p
    }
}

impl Phase {
    /// The phase succeeded (a phase dropped without this failed: no "done" line).
    pub fn done(mut self) {
        self.ok = true;
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if self.ok {
                eprintln!(
                    "flatbake: {}: done in {:.1}s",
                    self.label,
                    self.start.elapsed().as_secs_f64()
                );
            }
        }
        if let Some((tx, h)) = self.ticker.take() {
            drop(tx);
            let _ = h.join();
            let took = self.start.elapsed();
            if self.ok && took >= std::time::Duration::from_secs(1) {
                eprintln!(
                    "flatbake: {}: done in {:.1}s",
                    self.label,
                    took.as_secs_f64()
                );
            }
        }
    }
}
