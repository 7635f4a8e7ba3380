//! Issue 17, acceptance 7: a `secret` parameter never appears in the store's files, in the
//! output of any command (text and `--json`, the lineage files), or in the dashboard's
//! pages, while each of them shows that it is there (`<secret>`, `<secret, changed>`).

#[path = "../../examples/common/digits.rs"]
mod digits;
#[path = "../../examples/common/digits_pipeline.rs"]
mod digits_pipeline;
mod ui_support;

use std::path::Path;
use std::process::Command;

use pipeline::prelude::*;
use ui_support::Server;

/// Two values no output may hold: the first run's token and the second's.
const TOKENS: [&str; 2] = [
    "tok-81d2a6-first-never-shown",
    "tok-c04e97-second-never-shown",
];

#[step(secret = [token])]
fn fetch(url: String, token: String) -> usize {
    url.len() + token.len()
}

#[step]
fn double(n: &usize) -> usize {
    n * 2
}

#[pipeline(name = "fetching")]
fn fetching(url: &str, token: &str) -> Artifact<usize> {
    let n = fetch(url.to_string(), token.to_string());
    double(&n)
}

/// `pipeline --store STORE ARGS..`'s standard output, asserting success.
fn cli(store: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("PIPELINE_HOME")
        .output()
        .expect("run the pipeline binary");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "pipeline {}:\n{stdout}\n{stderr}",
        args.join(" ")
    );
    assert_no_token(&args.join(" "), &stderr);
    stdout
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

fn assert_no_token(what: &str, text: &str) {
    for token in TOKENS {
        assert!(!text.contains(token), "{what} shows the secret:\n{text}");
    }
}

#[test]
fn a_secret_never_appears_in_the_store_the_commands_or_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let first = fetching("https://example.org", TOKENS[0])
        .store_path(&store)
        .run_name("secret-first")
        .run()
        .unwrap();
    let second = fetching("https://example.org", TOKENS[1])
        .store_path(&store)
        .run_name("secret-second")
        .run()
        .unwrap();
    assert_eq!(
        second.step("fetch").unwrap().reason().to_string(),
        "parameter `token` changed (<secret, changed>)"
    );
    let (a, b) = (first.id().to_string(), second.id().to_string());

    // The store: database, journal, blobs and sidecars. The URL is there (the probe finds
    // what is stored), the tokens are not.
    assert!(!files_containing(&store, "https://example.org").is_empty());
    for token in TOKENS {
        assert_eq!(files_containing(&store, token), Vec::<String>::new());
    }

    // Every command that shows runs, steps or parameters, as text and as JSON.
    let html = dir.path().join("lineage.html");
    let dot = dir.path().join("lineage.dot");
    let html_arg = html.display().to_string();
    let dot_arg = dot.display().to_string();
    let mut everything = String::new();
    for args in [
        vec!["runs"],
        vec!["show", &a],
        vec!["show", &b],
        vec!["explain", &b, "fetch"],
        vec!["explain", &b, "double"],
        vec!["diff", &a, &b],
        vec!["lineage", &b],
        vec!["lineage", &b, "--html", &html_arg, "--dot", &dot_arg],
        vec!["verify"],
    ] {
        for json in [false, true] {
            let mut args = args.clone();
            if json {
                args.push("--json");
            }
            let out = cli(&store, &args);
            assert_no_token(&args.join(" "), &out);
            everything.push_str(&out);
        }
    }
    for file in [&html, &dot] {
        let text = std::fs::read_to_string(file).unwrap();
        assert_no_token(&file.display().to_string(), &text);
        everything.push_str(&text);
    }
    // They say a secret is there, and that it changed.
    assert!(everything.contains("<secret, changed>"), "{everything}");
    assert!(everything.contains("<secret>"), "{everything}");

    // The dashboard: the runs list, each run, each step, the comparison, the live state,
    // and each output's artifact page.
    let server = Server::start(&store, &[]);
    let mut pages = vec![
        "/".to_string(),
        format!("/compare?a={a}&b={b}"),
        "/pipelines/fetching/metrics".to_string(),
    ];
    let reader = Store::open(&store).unwrap();
    for run in [&a, &b] {
        pages.push(format!("/runs/{run}"));
        pages.push(format!("/runs/{run}/state.json"));
        for step in reader.run_steps(run).unwrap() {
            pages.push(format!("/runs/{run}/steps/{}", step.name));
            for output in &step.outputs {
                pages.push(format!("/artifacts/{}", output.content_hash));
            }
        }
    }
    let mut shown = String::new();
    for path in &pages {
        let page = server.page(path);
        assert_no_token(path, &page);
        shown.push_str(&page);
    }
    assert!(
        shown.contains("&lt;secret&gt;"),
        "the step page marks the secret"
    );
}
