//! Progress reporting for long transfers: an indicatif bar when stderr is a terminal,
//! otherwise a plain log line every few seconds and one on completion.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, log lines otherwise.
    #[default]
    Auto,
    /// Log lines on stderr every `interval`, and on completion.
    Log { interval: Duration },
    /// Nothing.
    Quiet,
}

/// Log line interval used by [`ProgressMode::Auto`] off a terminal.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One running progress report (thread-safe).
pub struct Progress {
    label: String,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    log: Option<Mutex<(Instant, Duration)>>,
    start: Instant,
}

impl Progress {
    /// Starts reporting `label` (e.g. a file name) out of `total` bytes, if known.
    pub fn new(mode: ProgressMode, label: &str, total: Option<u64>) -> Progress {
        // the name a user knows, not a staging name
        let label = label.trim_end_matches(".unverified");
        let (bar, log) = match mode {
            ProgressMode::Quiet => (None, None),
            _ if crate::out::quiet() => (None, None),
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                let bar = match total {
                    Some(t) => ProgressBar::new(t),
                    None => ProgressBar::new_spinner(),
                };
                let style = ProgressStyle::with_template(
                    "flatbake: {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_message(label.to_string());
                (Some(bar), None)
            }
            ProgressMode::Auto => (
                None,
                Some(Mutex::new((Instant::now(), DEFAULT_LOG_INTERVAL))),
            ),
            ProgressMode::Log { interval } => (None, Some(Mutex::new((Instant::now(), interval)))),
        };
        Progress {
            label: label.to_string(),
            total,
            bar,
            log,
            start: Instant::now(),
        }
    }

    /// Reports `pos` bytes done.
    pub fn set(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
        }
        if let Some(log) = &self.log {
            if let Ok(mut g) = log.lock() {
                if g.0.elapsed() >= g.1 {
                    g.0 = Instant::now();
                    eprintln!("flatbake: {}", self.line(pos));
                }
            }
        }
    }

    fn line(&self, pos: u64) -> String {
        let mib = pos as f64 / (1u64 << 20) as f64;
        match self.total {
            Some(t) if t > 0 => format!(
                "{}: {:.1} MiB of {:.1} MiB ({:.0}%)",
                self.label,
                mib,
                t as f64 / (1u64 << 20) as f64,
                pos as f64 * 100.0 / t as f64
            ),
            _ => format!("{}: {:.1} MiB", self.label, mib),
        }
    }

    /// Reports completion at `pos` bytes.
    pub fn finish(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.finish_and_clear();
        }
        if self.log.is_some() {
            eprintln!(
                "flatbake: {}: done, {:.1} MiB in {:.1}s",
                self.label,
                pos as f64 / (1u64 << 20) as f64,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}
