//! What the `ui_*` tests share: a store holding the seed example's runs (an executed run,
//! a cached run, a failed run, a sweep of five gamma values) and a showcase pipeline for
//! the artifact previews; `pipeline ui` started on it; plain HTTP requests; headless
//! Chromium that may reach no host but the server.
//!
//! Needs Debian's `chromium` (`scripts/test.sh` installs it) or `$CHROMIUM`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pipeline::prelude::*;
use serde::{Deserialize, Serialize};

#[path = "../support/mod.rs"]
mod support;
pub use support::*;

use crate::digits::DEFAULT_C;
use crate::digits_pipeline::digits_pipeline;

/// Training rows of the seed pipeline here (of 1437), as in `tests/seed_example.rs`.
pub const TRAIN_LIMIT: usize = 300;
/// The gammas of the sweep (the seed runs use 0.256).
pub const SWEEP: [f64; 5] = [0.032, 0.064, 0.128, 0.512, 1.024];

/// A row of the showcase's table artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub id: u32,
    pub label: String,
    pub score: f64,
}

#[step(cacher = Json)]
fn leaderboard(n: u32) -> Vec<Row> {
    (0..n)
        .map(|id| Row {
            id,
            label: format!("model-{id}"),
            score: 1.0 - f64::from(id) / 10.0,
        })
        .collect()
}

/// 1, 2, .. n: mean (n + 1) / 2, min 1, max n.
#[step]
fn samples(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

#[step]
fn shift(xs: &[f64], k: u32) -> Vec<f64> {
    xs.iter().map(|x| x + f64::from(k)).collect()
}

/// A 24x16 checkerboard PNG.
pub const PNG: [u8; 96] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 24, 0, 0, 0, 16, 8, 2,
    0, 0, 0, 131, 70, 40, 194, 0, 0, 0, 39, 73, 68, 65, 84, 120, 218, 99, 184, 99, 99, 3, 71, 26,
    81, 39, 224, 136, 84, 113, 134, 97, 108, 16, 37, 154, 145, 197, 135, 179, 65, 163, 233, 104,
    52, 29, 81, 193, 32, 0, 155, 182, 246, 144, 49, 152, 7, 201, 0, 0, 0, 0, 73, 69, 78, 68, 174,
    66, 96, 130,
];

#[step]
fn thumbnail_png() -> Vec<u8> {
    PNG.to_vec()
}

#[step]
fn curve_svg(points: &[f64]) -> String {
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, y)| format!("{},{}", i * 10, 100.0 - y))
        .collect();
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100"><polyline fill="none" stroke="green" points="{}"/></svg>"#,
        path.join(" ")
    )
}

/// The showcase's outputs: a table, a PNG, an SVG and the fan-out's vectors.
type Showcase = (
    Artifact<Vec<Row>>,
    Artifact<Vec<u8>>,
    Artifact<String>,
    Vec<Artifact<Vec<f64>>>,
);

/// Tables, numbers, images, and a fan-out of three `shift` calls.
#[pipeline(name = "showcase")]
fn showcase() -> Showcase {
    let table = leaderboard(30);
    let xs = samples(20);
    let png = thumbnail_png();
    let svg = curve_svg(&xs);
    let shifted = (1..=3).map(|k| shift(&xs, k)).collect();
    (table, png, svg, shifted)
}

/// Run names of the store, in the order they ran.
pub const SEED_FIRST: &str = "seed-first";
pub const SEED_CACHED: &str = "seed-cached";
pub const SEED_FAILED: &str = "seed-failed";
pub const SHOWCASE: &str = "showcase-run";

pub fn sweep_run(gamma: f64) -> String {
    format!("sweep-gamma-{gamma}")
}

/// The store (made once per test binary): the seed example twice (executed, then
/// cached), once with gamma = -1 (the trainer fails, the evaluator is skipped), a sweep
/// of [`SWEEP`] (loader and normalizer cached, trainer and evaluator executed), and one
/// run of `showcase`.
pub fn store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let path = fresh_dir("store").join("store");
        let store = Store::open(&path).expect("open store");
        let seed = |gamma: f64| digits_pipeline(gamma, DEFAULT_C, Some(TRAIN_LIMIT), true);
        seed(0.256)
            .store(store.clone())
            .run_name(SEED_FIRST)
            .run()
            .expect("seed run");
        seed(0.256)
            .store(store.clone())
            .run_name(SEED_CACHED)
            .run()
            .expect("cached seed run");
        let failed = seed(-1.0).store(store.clone()).run_name(SEED_FAILED).run();
        assert!(failed.is_err(), "gamma = -1 fails the trainer");
        for gamma in SWEEP {
            seed(gamma)
                .store(store.clone())
                .run_name(sweep_run(gamma))
                .run()
                .expect("sweep run");
        }
        showcase()
            .store(store)
            .run_name(SHOWCASE)
            .run()
            .expect("showcase run");
        path
    })
}

/// `pipeline ui` running on a store; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub port: u16,
    /// The token printed with the address, if any.
    pub token: Option<String>,
    /// What the server printed: its first lines on standard output.
    pub banner: String,
    /// Its standard error so far (the access log with `--access-log`).
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `pipeline --store STORE ui --port 0 ARGS..` and waits for its address.
    pub fn start(store: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .arg("--store")
            .arg(store)
            .args(["ui", "--port", "0"])
            .args(args)
            .env_remove("PIPELINE_HOME")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pipeline ui");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            banner.push_str(&line);
            if line.contains("Ctrl-C") {
                break;
            }
            line.clear();
        }
        // Keep reading (and dropping) standard output so the server never blocks on it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "pipeline ui printed no address:\n{banner}\nstderr:\n{}",
                    log.lock().unwrap()
                )
            })
            .to_string();
        let (base, token) = match url.split_once("/?token=") {
            Some((base, token)) => (base.to_string(), Some(token.to_string())),
            None => (url.trim_end_matches('/').to_string(), None),
        };
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the address");
        Server {
            child,
            base: base.replace("0.0.0.0", "127.0.0.1"),
            port,
            token,
            banner,
            log,
        }
    }

    /// `GET path` with these extra header lines.
    pub fn get(&self, path: &str, headers: &[&str]) -> Reply {
        http_get(self.port, path, headers)
    }

    /// `GET path`, asserting 200, returning the body.
    pub fn page(&self, path: &str) -> String {
        let reply = self.get(path, &[]);
        assert_eq!(reply.status, 200, "GET {path}:\n{}", reply.body);
        reply.body
    }

    /// The access log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers (lowercase names) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a plain TCP connection, the path sent exactly as given (no client
/// normalizes `..` away), HTTP/1.1 with `Connection: close`.
pub fn http_get(port: u16, path: &str, headers: &[&str]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to pipeline ui");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    }
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

/// Asserts that every request made for the page (everything whose network isolation
/// key is the server's site, or that the server's origin initiated) went to the server,
/// and that there were some, the page itself among them.
pub fn only_local_requests(rendered: &Rendered, server: &Server) {
    let origin = server.base.clone();
    let page: Vec<&Request> = rendered
        .requested
        .iter()
        .filter(|r| r.isolation.starts_with("http://127.0.0.1 ") || r.initiator == origin)
        .collect();
    assert!(
        page.iter()
            .any(|r| r.url.starts_with(&format!("{origin}/"))),
        "chromium's network log shows no request for the page: {:?}",
        rendered.requested
    );
    let elsewhere: Vec<&&Request> = page
        .iter()
        .filter(|r| !r.url.starts_with(&format!("{origin}/")))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the page requested other hosts: {elsewhere:?}"
    );
}
