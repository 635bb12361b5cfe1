//! A loopback HTTP/1.1 file server for tests: serves a directory (GET only; a directory's
//! `index.html` for its own path; for `PATH?QUERY` the file named so, when there is one,
//! else PATH), answers 404 for anything else, and records every requested path. Nothing
//! reaches the internet.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct Server {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serve `root` on 127.0.0.1 (a free port) until the test process exits.
    pub fn serve(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (root, log) = (root.to_owned(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, log) = (root.clone(), log.clone());
                std::thread::spawn(move || handle(stream, &root, &log));
            }
        });
        Server { url, requests }
    }

    pub fn requested(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn handle(mut stream: TcpStream, root: &Path, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // drain the headers
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/").to_owned();
    log.lock().expect("lock").push(path.clone());
    let mut file = root.join(path.trim_start_matches('/'));
    let with_query = root.join(target.trim_start_matches('/'));
    if target.contains('?') && !target.contains("..") && with_query.is_file() {
        file = with_query;
    }
    if file.is_dir() {
        file = file.join("index.html");
    }
    let ok = method == "GET" && !path.contains("..") && file.is_file();
    let (status, body) = if ok {
        ("200 OK", std::fs::read(&file).unwrap_or_default())
    } else {
        ("404 Not Found", b"not found\n".to_vec())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}
