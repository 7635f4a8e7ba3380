//! The run page follows a run in another process: a step shown `running` turns `executed`,
//! and a step that had not started appears, without a reload.
//!
//! This file has its own `main` (`harness = false`): started with
//! `PIPELINE_UI_LIVE_CHILD=DIR`, it is the slow pipeline (its middle step waits until the
//! file `DIR/release` exists); otherwise it is the test, which starts itself as that
//! pipeline, `pipeline ui` on its store, and headless Chromium on the run page.

mod ui_support;

// The seed example's files are not used here; `ui_support` names them.
#[path = "../../examples/common/digits.rs"]
mod digits;
#[path = "../../examples/common/digits_pipeline.rs"]
mod digits_pipeline;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::prelude::*;
use serde_json::Value;
use ui_support::*;

const CHILD: &str = "PIPELINE_UI_LIVE_CHILD";
const RUN: &str = "live-run";

#[step]
fn prepare(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

/// Waits (up to two minutes) for the test to create `release`, then sums.
#[step]
fn slow_step(xs: &[f64], release: String) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new(&release).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    xs.iter().sum()
}

#[step]
fn finish(total: &f64) -> String {
    format!("total {total}")
}

#[pipeline(name = "live")]
fn live(release: String) -> Artifact<String> {
    let xs = prepare(10);
    let total = slow_step(&xs, release);
    finish(&total)
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = PathBuf::from(dir);
        let release = dir.join("release").to_string_lossy().into_owned();
        live(release)
            .store_path(dir.join("store"))
            .run_name(RUN)
            .run()
            .expect("the live pipeline runs");
        return;
    }
    // What the libtest harness would do with `--list` and a name filter, for one test.
    const NAME: &str = "run_page_follows_a_running_step_to_done";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return;
    }
    run_page_follows_a_running_step_to_done();
    println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed");
}

fn step_status(state: &Value, step: &str) -> Option<String> {
    state["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == step)
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_page_follows_a_running_step_to_done() {
    let dir = fresh_dir("live");
    let store = dir.join("store");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the slow pipeline");
    wait_for("the pipeline's store", Duration::from_secs(60), || {
        store.join("metadata.sqlite").is_file()
    });
    let server = Server::start(&store, &["--access-log"]);
    let mut running = Value::Null;
    wait_for("`slow_step` to run", Duration::from_secs(60), || {
        let reply = server.get(&format!("/runs/{RUN}/state.json"), &[]);
        if reply.status != 200 {
            return false;
        }
        running = serde_json::from_str(&reply.body).unwrap();
        step_status(&running, "slow_step").as_deref() == Some("running")
    });
    assert_eq!(running["run"]["status"], "running");
    assert_eq!(
        step_status(&running, "prepare").as_deref(),
        Some("executed")
    );
    assert_eq!(step_status(&running, "finish"), None, "not started yet");

    // While nothing changes, `?since=VERSION` waits; it answers once the step is done.
    let version = running["version"].as_str().unwrap().to_string();
    let port = server.port;
    let waiter = std::thread::spawn(move || loop {
        // An answer without a change comes only after the server's 20 s wait.
        let asked = Instant::now();
        let reply = http_get(
            port,
            &format!("/runs/{RUN}/state.json?since={version}"),
            &[],
        );
        if !reply.body.contains(&version) {
            return (Instant::now(), reply);
        }
        assert!(
            asked.elapsed() >= Duration::from_secs(15),
            "answered at once without a change"
        );
    });

    // Chromium opens the page while the step runs; virtual time stands still while the
    // page's request is pending, so the page is still open when the step ends.
    let url = format!("{}/runs/{RUN}", server.base);
    let browser = std::thread::spawn(move || render(&url, 60_000, &[]));
    wait_for(
        "the browser to load the run page and its script",
        Duration::from_secs(120),
        || {
            let log = server.log();
            log.contains(&format!("GET /runs/{RUN} 200")) && log.contains("GET /assets/app.js 200")
        },
    );
    let released = Instant::now();
    std::fs::write(dir.join("release"), b"go").unwrap();

    let rendered = browser.join().expect("chromium thread");
    only_local_requests(&rendered, &server);
    let dom = &rendered.dom;
    let row = element(dom, "<tr data-step=\"slow_step\"", "</tr>");
    assert!(
        row.contains("data-seen=\"running executed\""),
        "the page showed `slow_step` running, then executed, without a reload: {row}\n{dom}"
    );
    assert!(row.contains("data-status=\"executed\""), "{row}");
    assert!(
        row.contains("<span class=\"key executed\">executed</span>"),
        "{row}"
    );
    let node = element(dom, "data-step=\"slow_step\" data-status=", "</g>");
    assert!(node.contains("class=\"node executed\""), "{node}");
    assert!(
        node.contains("<tspan class=\"badge\">executed</tspan>"),
        "{node}"
    );
    // `finish` started after the page loaded: the page drew it.
    let finish = element(dom, "<tr data-step=\"finish\"", "</tr>");
    assert!(finish.contains("data-status=\"executed\""), "{finish}");
    assert!(
        dom.contains("data-live=\"done\""),
        "the page saw the run end:\n{dom}"
    );
    assert!(
        dom.contains("id=\"run-status\"><span class=\"key completed\">"),
        "{dom}"
    );
    let log = server.log();
    assert_eq!(
        log.matches(&format!("GET /runs/{RUN} 200")).count(),
        1,
        "the page was loaded once, never reloaded:\n{log}"
    );

    let (answered, reply) = waiter.join().unwrap();
    assert_eq!(reply.status, 200);
    let changed: Value = serde_json::from_str(&reply.body).unwrap();
    assert_ne!(changed["version"], running["version"]);
    assert_eq!(
        step_status(&changed, "slow_step").as_deref(),
        Some("executed")
    );
    assert!(
        answered >= released,
        "the request waited for the change instead of answering at once"
    );
    assert!(
        child.wait().unwrap().success(),
        "the pipeline process failed"
    );
}
