//! A hostile HTTP server against the downloader (`release::download`, what `--fetch`,
//! `flatbake fetch` and the bakery downloads go through): a body that never ends
//! (no Content-Length), a Content-Length of a terabyte, a redirect loop, a body longer
//! or shorter than its Content-Length, a server that stalls mid-body. Each ends with a
//! clear error naming the URL (or exactly the announced bytes), bounded in memory, with
//! no `.part` left for a document that can never be right.

use flatbake::release::download::{DownloadError, DownloadOptions, Downloader, MAX_DOCUMENT};
use flatbake::release::{ProgressMode, RetryPolicy};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Serve `handle(path, stream)` on a loopback port; returns the base URL and a count
/// of requests.
fn serve(handle: fn(&str, &mut TcpStream)) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    match reader.read_line(&mut h) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if h.trim().is_empty() => break,
                        Ok(_) => {}
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                handle(&path, &mut stream);
            });
        }
    });
    (url, count)
}

fn hostile(path: &str, s: &mut TcpStream) {
    match path {
        "/endless" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = vec![b'x'; 1 << 16];
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            while s.write_all(&framed).is_ok() {}
        }
        "/terabyte" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nxx");
        }
        "/loop" => {
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        "/ping" => {
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: /pong\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        "/pong" => {
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: /ping\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        "/longer" => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789EXTRA BYTES",
            );
        }
        "/shorter" => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this",
            );
        }
        "/stall" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome");
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(30));
        }
        _ => {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

fn downloader(attempts: u32) -> Downloader {
    Downloader::new(DownloadOptions {
        retry: RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
        progress: ProgressMode::Quiet,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(1),
    })
    .expect("client")
}

#[test]
fn endless_and_huge_bodies_stop_at_the_document_cap() {
    let (url, count) = serve(hostile);
    for path in ["/endless", "/terabyte"] {
        let u = format!("{url}{path}");
        let before = count.load(Ordering::SeqCst);
        match downloader(3).get_bytes(&u) {
            Err(e @ DownloadError::TooLarge { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&u) && msg.contains(&MAX_DOCUMENT.to_string()),
                    "{msg}"
                );
            }
            other => panic!("{path}: {other:?}"),
        }
        // not retried: the answer will not change
        assert_eq!(count.load(Ordering::SeqCst) - before, 1, "{path}");
    }
}

#[test]
fn redirect_loops_are_refused_at_once() {
    let (url, count) = serve(hostile);
    for path in ["/loop", "/ping"] {
        let u = format!("{url}{path}");
        let before = count.load(Ordering::SeqCst);
        match downloader(4).get_bytes(&u) {
            Err(e @ DownloadError::Redirect { .. }) => {
                assert!(e.to_string().contains(&u), "{e}");
            }
            other => panic!("{path}: {other:?}"),
        }
        let n = count.load(Ordering::SeqCst) - before;
        assert!(
            n <= 11,
            "{path}: {n} requests for one redirect loop (not retried)"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let dest = dir.path().join("x.bin");
        let e = downloader(4)
            .download(&u, &dest)
            .expect_err("a redirect loop downloaded");
        assert!(matches!(e, DownloadError::Redirect { .. }), "{e:?}");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            0,
            "left a .part"
        );
    }
}

#[test]
fn bodies_longer_or_shorter_than_announced() {
    let (url, _) = serve(hostile);
    // longer: exactly the announced bytes, the rest ignored
    let got = downloader(2)
        .get_bytes(&format!("{url}/longer"))
        .expect("longer");
    assert_eq!(got, b"0123456789");
    let dir = tempfile::tempdir().expect("tmp");
    let dest = dir.path().join("l.bin");
    assert_eq!(
        downloader(2)
            .download(&format!("{url}/longer"), &dest)
            .expect("dl"),
        10
    );
    assert_eq!(std::fs::read(&dest).expect("read"), b"0123456789");
    // shorter: a clear error after the retries, naming the URL and the shortfall
    for e in [
        downloader(2)
            .get_bytes(&format!("{url}/shorter"))
            .expect_err("short body accepted"),
        downloader(2)
            .download(&format!("{url}/shorter"), &dir.path().join("s.bin"))
            .expect_err("short body accepted"),
    ] {
        let msg = e.to_string();
        assert!(
            msg.contains("/shorter") && msg.contains("gave up after 2 attempts"),
            "{msg}"
        );
    }
    assert!(!dir.path().join("s.bin").exists());
}

#[test]
fn a_stalled_body_ends_with_an_error() {
    let (url, _) = serve(hostile);
    let u = format!("{url}/stall");
    let e = downloader(2)
        .get_bytes(&u)
        .expect_err("a stalled body was accepted");
    let msg = e.to_string();
    assert!(
        msg.contains(&u) && msg.contains("gave up after 2 attempts"),
        "{msg}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let dest = dir.path().join("x.bin");
    downloader(2)
        .download(&u, &dest)
        .expect_err("a stalled body was accepted");
    assert!(!dest.exists());
}
