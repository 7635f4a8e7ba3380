//! `pipeline lineage --html` rendered in headless Chromium: every step's node is in the
//! rendered DOM with its status, and the page's script ran.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`; `scripts/test.sh` installs it). Set
//! `CHROMIUM` to use another binary. Without one the test fails and says how to install it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, failed_store, fresh_dir, history};

/// The Chromium binary: `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
fn chromium() -> PathBuf {
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
        "this test renders the lineage page in headless Chromium, but no `chromium` is on PATH. \
         Install Debian's package with `apt-get update && apt-get install -y chromium` \
         (scripts/test.sh does this), or set CHROMIUM to a Chromium binary."
    );
}

/// Renders `page` headless and returns the DOM after its scripts ran.
fn render(page: &Path, profile: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not render {url} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = reader.join().unwrap().expect("read chromium output");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed on {url} ({status}):\n{stderr}\n{dom}"
    );
    dom
}

/// The markup of the SVG node of step `name` in the rendered DOM.
fn node<'a>(dom: &'a str, name: &str) -> &'a str {
    let marker = format!("data-step=\"{name}\"");
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

/// Renders the lineage page of `run` and checks each step's node against `show --json`.
fn check(store: &Path, run: &str) -> String {
    let dir = fresh_dir(&format!("browser-{run}"));
    let page = dir.join("lineage.html");
    cli(store, &["lineage", run, "--html", page.to_str().unwrap()]).ok();
    let dom = render(&page, &dir.join("profile"));
    let shown = cli(store, &["show", run, "--json"]).json();
    let steps = shown["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    // The page's script ran to its end and saw every step.
    assert!(
        dom.contains(&format!("data-rendered=\"{}\"", steps.len())),
        "the page's script did not finish:\n{dom}"
    );
    for s in steps {
        let name = s["name"].as_str().unwrap();
        let status = s["status"].as_str().unwrap();
        let markup = node(&dom, name);
        assert!(
            markup.contains(&format!("data-status=\"{status}\"")),
            "step `{name}` should be {status}:\n{markup}"
        );
        assert!(
            markup.contains(&format!("class=\"node {status}\"")),
            "{markup}"
        );
        assert!(
            markup.contains(&format!("<tspan class=\"badge\">{status}</tspan>")),
            "the node of `{name}` should show its status:\n{markup}"
        );
        assert!(markup.contains(&format!(">{name}</text>")), "{markup}");
        for o in s["outputs"].as_array().unwrap() {
            let output = o["name"].as_str().unwrap();
            assert!(markup.contains(&format!(">{output}</text>")), "{markup}");
        }
    }
    dom
}

#[test]
fn lineage_page_renders_every_step_with_its_status() {
    let dom = check(history(), "run-beta");
    // Two edges: source -> scale -> total.
    assert_eq!(dom.matches("class=\"edge\"").count(), 2, "{dom}");
    assert!(
        dom.contains("data-from=\"scale\" data-to=\"total\""),
        "{dom}"
    );
}

#[test]
fn lineage_page_of_a_failed_run_shows_failed_and_skipped_steps() {
    let dom = check(failed_store(), "broken-run");
    assert!(dom.contains("class=\"node failed\""), "{dom}");
    assert!(dom.contains("class=\"node skipped\""), "{dom}");
    assert!(dom.contains("the measurement failed"), "{dom}");
}
