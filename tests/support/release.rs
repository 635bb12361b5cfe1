//! Test support: a loopback HTTP/1.1 file server that can misbehave on request, throwaway
//! GnuPG keys, and generated bzip2 fixtures.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// A way to misbehave for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Send the headers (full Content-Length) and only this many body bytes, then close.
    Cut(usize),
    /// Ignore the Range header (answer 200 with the whole file).
    IgnoreRange,
    /// Send the body in 64 KiB pieces with this pause before each.
    Slow(std::time::Duration),
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    faults: HashMap<String, VecDeque<Fault>>,
    always: HashMap<String, Fault>,
    log: Vec<Request>,
}

/// An HTTP/1.1 server on 127.0.0.1 with Range support (a thread per connection, so
/// concurrent clients are served at once).
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            files,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let st = Arc::clone(&st);
                    std::thread::spawn(move || {
                        let _ = serve(c, &st);
                    });
                }
            }
        });
        Server {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, path: &str, data: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), data);
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(path);
    }

    /// Queues faults for the next requests of `path`, in order.
    pub fn fault(&self, path: &str, faults: &[Fault]) {
        let mut s = self.state.lock().unwrap();
        s.faults
            .entry(path.to_string())
            .or_default()
            .extend(faults.iter().cloned());
    }

    /// Applies `fault` to every request of `path`.
    pub fn always(&self, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .always
            .insert(path.to_string(), fault);
    }

    pub fn log(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.log().into_iter().filter(|r| r.path == path).collect()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn etag(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    format!(
        "\"{:02x}{:02x}{:02x}{:02x}-{}\"",
        h[0],
        h[1],
        h[2],
        h[3],
        data.len()
    )
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    let mut if_range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v),
                "if-range" => if_range = Some(v),
                _ => {}
            }
        }
    }
    let (file, fault) = {
        let mut s = state.lock().unwrap();
        let fault = s
            .faults
            .get_mut(&path)
            .and_then(|q| q.pop_front())
            .or_else(|| s.always.get(&path).cloned());
        (s.files.get(&path).cloned(), fault)
    };
    // Decide the whole response first and log the request before sending it: a client
    // may act on the response (and the test read the log) before this thread goes on.
    let empty = |code: u16, reason: &str, extra: &str| {
        (
            code,
            format!(
                "HTTP/1.1 {code} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            Vec::new(),
        )
    };
    let (status, head, send): (u16, String, Vec<u8>) = match (fault.clone(), file) {
        (Some(Fault::Status(code)), _) => empty(code, "Oops", ""),
        (_, None) => empty(404, "Not Found", ""),
        (_, Some(data)) => {
            let tag = etag(&data);
            let honour =
                fault != Some(Fault::IgnoreRange) && if_range.as_deref().is_none_or(|v| v == tag);
            let wanted = range
                .as_deref()
                .filter(|_| honour)
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            match wanted {
                Some(n) if n >= data.len() => empty(
                    416,
                    "Range Not Satisfiable",
                    &format!("Content-Range: bytes */{}\r\n", data.len()),
                ),
                _ => {
                    let start = wanted.unwrap_or(0);
                    let body = &data[start..];
                    let (code, mut head) = if wanted.is_some() {
                        (206, format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\n", data.len() - 1, data.len()))
                    } else {
                        (200, "HTTP/1.1 200 OK\r\n".to_string())
                    };
                    head.push_str(&format!(
                        "Content-Length: {}\r\nETag: {tag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                        body.len()
                    ));
                    let send = match fault {
                        Some(Fault::Cut(n)) => body[..n.min(body.len())].to_vec(),
                        _ => body.to_vec(),
                    };
                    (code, head, send)
                }
            }
        }
    };
    state.lock().unwrap().log.push(Request {
        path,
        range,
        status,
    });
    let mut out = conn;
    let result = match fault {
        Some(Fault::Slow(pause)) => out.write_all(head.as_bytes()).and_then(|_| {
            for piece in send.chunks(64 << 10) {
                std::thread::sleep(pause);
                out.write_all(piece)?;
            }
            out.flush()
        }),
        _ => out
            .write_all(head.as_bytes())
            .and_then(|_| out.write_all(&send))
            .and_then(|_| out.flush()),
    };
    let _ = out.shutdown(std::net::Shutdown::Both);
    result
}

/// A throwaway GnuPG home with one key.
pub struct Gpg {
    pub home: tempfile::TempDir,
    pub fingerprint: String,
}

impl Gpg {
    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self.gpg().args(args).output().expect("run gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn new_home(uid: &str, algo: &str, usage: &str) -> Gpg {
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        let mut g = Gpg {
            home,
            fingerprint: String::new(),
        };
        g.run(&["--quick-gen-key", uid, algo, usage, "never"]);
        let list = String::from_utf8(g.run(&["--with-colons", "--list-keys", uid])).unwrap();
        g.fingerprint = list
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string();
        g
    }

    /// A key whose primary key signs (RSA, like Flatcar's primary).
    pub fn primary_signer(uid: &str) -> Gpg {
        Gpg::new_home(uid, "rsa2048", "sign")
    }

    /// A certify-only primary key with a signing subkey, which makes the signatures.
    pub fn subkey_signer(uid: &str) -> Gpg {
        let g = Gpg::new_home(uid, "ed25519", "cert");
        let fpr = g.fingerprint.clone();
        g.run(&["--quick-add-key", &fpr, "ed25519", "sign", "never"]);
        g
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.run(&["--armor", "--export", &self.fingerprint])
    }

    /// A binary detached signature of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        std::fs::write(&f, data).unwrap();
        let sig = dir.path().join("data.sig");
        self.run(&[
            "--detach-sign",
            "-o",
            sig.to_str().unwrap(),
            f.to_str().unwrap(),
        ]);
        std::fs::read(sig).unwrap()
    }

    /// Key id (long, hex) of the key that made `sig`.
    pub fn signer_of(&self, sig: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.sig");
        std::fs::write(&f, sig).unwrap();
        let out = self.run(&["--list-packets", f.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out);
        text.split("keyid ")
            .nth(1)
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect()
}

/// A small disk-like image: noise and long zero runs, several MiB.
pub fn sample_image(seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..6u64 {
        v.extend(noise(180_000 + i as usize * 10_000, seed + i));
        v.extend(std::iter::repeat_n(0u8, 600_000 + i as usize * 4096));
    }
    v.extend(b"end of image");
    v
}

/// Compresses with an external tool (`lbzip2 -1`, `bzip2 -1`, `pbzip2 -1`, ...).
pub fn compress_with(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("img");
    std::fs::write(&f, data).unwrap();
    let out = Command::new(tool)
        .args(args)
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap_or_else(|e| panic!("{tool} not installed? {e}"));
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `bunzip2 -c` of a file.
pub fn bunzip2(path: &Path) -> Vec<u8> {
    let out = Command::new("bunzip2")
        .arg("-c")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bunzip2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file name (recursively) under `dir`, relative.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(r) = p.strip_prefix(dir) {
                out.push(r.to_path_buf());
            }
        }
    }
    out.sort();
    out
}
