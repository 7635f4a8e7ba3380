//! What every test binary of the CLI shares: scratch folders, and headless Chromium that
//! may reach no host but 127.0.0.1.
//!
//! Needs Debian's `chromium` (`scripts/test.sh` installs it) or `$CHROMIUM`.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An empty directory under the target directory, named after this test binary and
/// `what`, so that test binaries running at the same time do not share it.
pub fn fresh_dir(what: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{binary}-{what}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "these tests drive headless Chromium, but no `chromium` is on PATH. Install Debian's \
         package with `apt-get update && apt-get install -y chromium` (scripts/test.sh does \
         this), or set CHROMIUM to a Chromium binary."
    );
}

/// What Chromium saw of a page: the DOM after its scripts ran, and every URL it
/// requested (from its network log).
pub struct Rendered {
    pub dom: String,
    pub requested: Vec<Request>,
}

/// Loads `url` in headless Chromium, which resolves no host name (every name maps to
/// nothing, except 127.0.0.1), and returns the DOM after `virtual_ms` of virtual time
/// (timers run fast, and time stands still while a request is pending), and the URLs of
/// the requests it made. Extra flags (`--screenshot=..`) may be given.
pub fn render(url: &str, virtual_ms: u32, extra: &[String]) -> Rendered {
    let dir = fresh_dir(&format!("chromium-{}", unique()));
    let netlog = dir.join("netlog.json");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--dump-dom",
        ])
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(extra)
        .arg(url)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not render {url} within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = reader.join().unwrap().expect("read chromium output");
    let stderr = err_reader.join().unwrap_or_default();
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed on {url} ({status}):\n{stderr}\n{dom}"
    );
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    // A Chromium profile takes megabytes; nothing in it is needed after the render.
    let _ = std::fs::remove_dir_all(&dir);
    Rendered {
        dom,
        requested: urls_in_netlog(&log),
    }
}

/// The URL requests in a Chromium network log: URL, initiator and network isolation key
/// (`"http://127.0.0.1 http://127.0.0.1"` for what a page on the server asked for;
/// Chromium's own background requests, which the host resolver rules stop, have others).
fn urls_in_netlog(log: &str) -> Vec<Request> {
    let Ok(log) = serde_json::from_str::<serde_json::Value>(log) else {
        return Vec::new();
    };
    let mut out: Vec<Request> = log["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let p = &e["params"];
            Some(Request {
                url: p["url"].as_str()?.to_string(),
                initiator: p["initiator"].as_str().unwrap_or_default().to_string(),
                isolation: p["network_isolation_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .filter(|_| p.get("method").is_some())
        })
        .collect();
    out.sort_by(|a, b| a.url.cmp(&b.url));
    out.dedup_by(|a, b| a.url == b.url && a.isolation == b.isolation);
    out
}

/// One request in Chromium's network log.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub initiator: String,
    pub isolation: String,
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The opening tag and content of the first element with this attribute text, up to the
/// next closing tag named `until`.
pub fn element<'d>(dom: &'d str, marker: &str, until: &str) -> &'d str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in the page:\n{dom}"));
    let start = dom[..=at].rfind('<').unwrap();
    let end = dom[start..]
        .find(until)
        .map(|e| start + e + until.len())
        .unwrap_or(dom.len());
    &dom[start..end]
}

/// The SVG node (`<g data-step="name" ...>` up to its `</g>`) of step `name` in a rendered
/// lineage graph.
pub fn svg_node<'d>(dom: &'d str, name: &str) -> &'d str {
    let marker = format!("data-step=\"{name}\" data-status=");
    let at = dom
        .match_indices(&marker)
        .map(|(i, _)| i)
        .find(|&i| {
            dom[..i]
                .rfind('<')
                .is_some_and(|s| dom[s..].starts_with("<g "))
        })
        .unwrap_or_else(|| panic!("no node for step `{name}` in the rendered page:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = dom[start..].find("</g>").map(|e| start + e).unwrap();
    &dom[start..end]
}

/// The dashboard's page at `path` for `store` (`pipeline ui --port 0`, one request).
pub fn dashboard_page(store: &Path, path: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--store")
        .arg(store)
        .args(["ui", "--port", "0"])
        .env_remove("PIPELINE_HOME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|t| t.trim().trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    page
}
