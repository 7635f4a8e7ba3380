//! `pipeline lineage --html` rendered in headless Chromium: every step's node is in the
//! rendered DOM with its status, and the page's script ran.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`; `scripts/test.sh` installs it). Set
//! `CHROMIUM` to use another binary. Without one the test fails and says how to install it.

mod common;

use std::path::Path;

use common::{cli, failed_store, fresh_dir, history, render, svg_node};

/// Renders the lineage page of `run` and checks each step's node against `show --json`.
fn check(store: &Path, run: &str) -> String {
    let dir = fresh_dir(&format!("browser-{run}"));
    let page = dir.join("lineage.html");
    cli(store, &["lineage", run, "--html", page.to_str().unwrap()]).ok();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let dom = render(&url, 2000, &[]).dom;
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
        let markup = svg_node(&dom, name);
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
