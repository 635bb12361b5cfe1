//! HTTP downloads into a cache directory: resumable `.part` files (Range requests, with a
//! clean restart when the server ignores the range or the file changed), retries with
//! exponential backoff on 408/429/5xx and dropped or truncated transfers, a clear error on
//! 404, and an atomic rename onto the final path only when the file is complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER};
use reqwest::StatusCode;

use super::progress::{Progress, ProgressMode};

/// Download errors; each names the URL or file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("{url}: more than {limit} bytes, too large for this document (a wrong URL or a misbehaving server)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {what} (check the URL)")]
    Redirect { url: String, what: String },
}

/// Largest document [`Downloader::get_bytes`] holds in memory (version.txt, signatures,
/// SHA256SUMS, releases.json, sysupdate configs are far smaller); a body without a
/// Content-Length that never ends stops here.
pub const MAX_DOCUMENT: u64 = 64 << 20;

/// The attempt's verdict on a failed request: a redirect loop (or one past reqwest's
/// limit of 10) is not transient, anything else may be.
fn send_failed(url: &str, e: &reqwest::Error) -> Attempt {
    if e.is_redirect() {
        Attempt::Fatal(DownloadError::Redirect {
            url: url.to_string(),
            what: describe(e),
        })
    } else {
        Attempt::Retry(describe(e), None)
    }
}

/// When and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Downloader settings.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    pub retry: RetryPolicy,
    pub progress: ProgressMode,
    /// Connection set-up limit.
    pub connect_timeout: Duration,
    /// Longest wait for the server to send anything (per read, not per transfer).
    pub idle_timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            retry: RetryPolicy::default(),
            progress: ProgressMode::Auto,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// What one attempt ended with.
enum Attempt {
    /// Worth another try (after a delay); keeps the `.part`.
    Retry(String, Option<Duration>),
    /// Throw the `.part` away and start over at once.
    Restart(String),
    /// No retry helps.
    Fatal(DownloadError),
}

/// An HTTP client with the retry policy.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: Client,
    opts: DownloadOptions,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |err| DownloadError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// `<path><suffix>`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Downloader {
    pub fn new(opts: DownloadOptions) -> Result<Downloader, DownloadError> {
        let client = Client::builder()
            .user_agent(concat!("flatbake/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.idle_timeout)
            .build()
            .map_err(|e| DownloadError::Client(e.to_string()))?;
        Ok(Downloader { client, opts })
    }

    pub fn options(&self) -> &DownloadOptions {
        &self.opts
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are used up.
    fn with_retries<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> Result<T, Attempt>,
        mut on_restart: impl FnMut(),
    ) -> Result<T, DownloadError> {
        let max = self.opts.retry.attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let (last, wait) = match attempt() {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(msg, after)) => {
                    let d = self.opts.retry.delay(n);
                    (
                        msg,
                        after.map_or(d, |a| a.max(d).min(self.opts.retry.max_delay)),
                    )
                }
                Err(Attempt::Restart(msg)) => {
                    on_restart();
                    (msg, Duration::ZERO)
                }
            };
            if n >= max {
                return Err(DownloadError::GaveUp {
                    url: url.to_string(),
                    attempts: n,
                    last,
                });
            }
            if self.opts.progress != ProgressMode::Quiet {
                eprintln!("flatbake: {url}: {last}; retrying ({n}/{max})");
            }
            std::thread::sleep(wait);
        }
    }

    /// Checks a response status: `Ok` for success, the retry decision otherwise.
    fn judge(url: &str, resp: &Response) -> Result<(), Attempt> {
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let code = status.as_u16();
        match status {
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                Err(Attempt::Fatal(DownloadError::NotFound {
                    url: url.to_string(),
                    status: code,
                }))
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                Err(Attempt::Retry(format!("HTTP {code}"), retry_after(resp)))
            }
            s if s.is_server_error() => {
                Err(Attempt::Retry(format!("HTTP {code}"), retry_after(resp)))
            }
            _ => Err(Attempt::Fatal(DownloadError::Http {
                url: url.to_string(),
                status: code,
            })),
        }
    }

    /// GETs a small document into memory (with retries).
    pub fn get_bytes(&self, url: &str) -> Result<Vec<u8>, DownloadError> {
        self.with_retries(
            url,
            || {
                let resp = self
                    .client
                    .get(url)
                    .send()
                    .map_err(|e| send_failed(url, &e))?;
                Self::judge(url, &resp)?;
                let expected = resp.content_length();
                let too_large = || {
                    Attempt::Fatal(DownloadError::TooLarge {
                        url: url.to_string(),
                        limit: MAX_DOCUMENT,
                    })
                };
                if expected.is_some_and(|n| n > MAX_DOCUMENT) {
                    return Err(too_large());
                }
                let mut body = Vec::new();
                resp.take(MAX_DOCUMENT + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| Attempt::Retry(format!("transfer failed: {e}"), None))?;
                if body.len() as u64 > MAX_DOCUMENT {
                    return Err(too_large());
                }
                if let Some(n) = expected {
                    if body.len() as u64 != n {
                        return Err(Attempt::Retry(
                            format!("truncated: got {} of {n} bytes", body.len()),
                            None,
                        ));
                    }
                }
                Ok(body)
            },
            || {},
        )
    }

    /// GETs a small text document.
    pub fn get_text(&self, url: &str) -> Result<String, DownloadError> {
        let b = self.get_bytes(url)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Downloads `url` to `dest` through `<dest>.part` (resumed if present), renaming it
    /// into place when complete. Returns the file size. On failure `dest` is untouched;
    /// a `.part` is kept only after transient failures, so a later run can resume it.
    pub fn download(&self, url: &str, dest: &Path) -> Result<u64, DownloadError> {
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let part = with_suffix(dest, ".part");
        let meta = with_suffix(dest, ".part.validator");
        let clean = || {
            let _ = fs::remove_file(&part);
            let _ = fs::remove_file(&meta);
        };
        let r = self.with_retries(url, || self.attempt(url, dest, &part, &meta), clean);
        match &r {
            Err(DownloadError::GaveUp { .. }) | Ok(_) => {}
            Err(_) => clean(),
        }
        r
    }

    fn attempt(&self, url: &str, dest: &Path, part: &Path, meta: &Path) -> Result<u64, Attempt> {
        let fatal_io = |p: &Path| {
            let p = p.to_path_buf();
            move |err| Attempt::Fatal(DownloadError::Io { path: p, err })
        };
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let validator = if have > 0 {
            fs::read_to_string(meta).ok().filter(|v| !v.is_empty())
        } else {
            None
        };
        let mut req = self.client.get(url);
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
            if let Some(v) = &validator {
                req = req.header(IF_RANGE, v.as_str());
            }
        }
        let resp = req.send().map_err(|e| send_failed(url, &e))?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            let total = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes */"))
                .and_then(|v| v.trim().parse::<u64>().ok());
            if total == Some(have) {
                return finish(part, meta, dest, have);
            }
            return Err(Attempt::Restart("server refused the resume range".into()));
        }
        Self::judge(url, &resp)?;
        let new_validator = resp_validator(&resp);
        let (start, total, file) = if resp.status() == StatusCode::PARTIAL_CONTENT {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            let Some((first, total)) = range else {
                return Err(Attempt::Restart("bad Content-Range in a 206 answer".into()));
            };
            if have == 0 || first != have {
                return Err(Attempt::Restart(format!(
                    "server resumed at byte {first}, not {have}"
                )));
            }
            if let (Some(old), Some(new)) = (&validator, &new_validator) {
                if old != new {
                    return Err(Attempt::Restart("file changed on the server".into()));
                }
            }
            let f = OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(fatal_io(part))?;
            (have, total, f)
        } else {
            // A full answer (first request, or the server ignored the range): start over.
            let f = File::create(part).map_err(fatal_io(part))?;
            fs::write(meta, new_validator.as_deref().unwrap_or("")).map_err(fatal_io(meta))?;
            (0, resp.content_length(), f)
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let progress = Progress::new(self.opts.progress, &name, total.map(|t| t.max(start)));
        let done = copy_body(resp, file, part, start, &progress)?;
        if let Some(t) = total {
            if done < t {
                return Err(Attempt::Retry(
                    format!("truncated: got {done} of {t} bytes"),
                    None,
                ));
            }
            if done > t {
                return Err(Attempt::Restart(format!("got {done} bytes, more than {t}")));
            }
        }
        progress.finish(done);
        finish(part, meta, dest, done)
    }
}

fn finish(part: &Path, meta: &Path, dest: &Path, size: u64) -> Result<u64, Attempt> {
    let fatal = |p: &Path, err| {
        Attempt::Fatal(DownloadError::Io {
            path: p.to_path_buf(),
            err,
        })
    };
    File::open(part)
        .and_then(|f| f.sync_all())
        .map_err(|e| fatal(part, e))?;
    fs::rename(part, dest).map_err(|e| fatal(dest, e))?;
    let _ = fs::remove_file(meta);
    Ok(size)
}

/// Appends the body to `file`; returns the total size of the `.part`.
fn copy_body(
    mut resp: Response,
    mut file: File,
    part: &Path,
    start: u64,
    progress: &Progress,
) -> Result<u64, Attempt> {
    let mut buf = vec![0u8; 256 << 10];
    let mut done = start;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                return Err(Attempt::Retry(
                    format!("transfer broke off after {done} bytes: {e}"),
                    None,
                ));
            }
        };
        file.write_all(&buf[..n]).map_err(|err| {
            Attempt::Fatal(DownloadError::Io {
                path: part.to_path_buf(),
                err,
            })
        })?;
        done += n as u64;
        progress.set(done);
    }
    Ok(done)
}

fn resp_validator(resp: &Response) -> Option<String> {
    let h = resp.headers();
    h.get(ETAG)
        .filter(|v| !v.as_bytes().starts_with(b"W/"))
        .or_else(|| h.get(LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Parses `bytes FIRST-LAST/TOTAL` into (FIRST, Some(TOTAL)) (`*` total gives `None`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if last < first {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, total))
}

/// One line for a transport error, with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(4), Duration::from_millis(800));
        assert_eq!(p.delay(5), Duration::from_secs(1));
        assert_eq!(p.delay(100), Duration::from_secs(1));
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("bytes 5-1/10"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn suffix() {
        assert_eq!(
            with_suffix(Path::new("/a/b.bz2"), ".part"),
            PathBuf::from("/a/b.bz2.part")
        );
    }
}
