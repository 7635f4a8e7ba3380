//! `pipeline logs RUN STEP` and the logs line of `pipeline show`: a pipeline runs its steps
//! in worker processes of this very test binary (`harness = false`, its `main` calls
//! `pipeline::worker::enter()` first), then the CLI prints what they wrote.

use std::path::Path;
use std::process::Command;

use pipeline::config::ExecutorKind;
use pipeline::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::dashboard_page;

#[step]
fn talkative(n: u32) -> Result<u32, String> {
    println!("talkative: line one of {n}");
    println!("talkative: line two of {n}");
    eprintln!("talkative: a warning about {n}");
    if n == 0 {
        return Err("zero is refused".into());
    }
    Ok(n)
}

#[step]
fn doubled(n: &u32) -> u32 {
    n * 2
}

#[pipeline]
fn chat(n: u32) -> Artifact<u32> {
    let x = talkative(n);
    doubled(&x)
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cli(store: &Path, args: &[&str]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("PIPELINE_HOME")
        .env_remove("PIPELINE_METADATA")
        .env_remove("PIPELINE_ARTIFACTS")
        .output()
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn logs_print_each_stream_or_both_and_show_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    chat(3)
        .store_path(&store)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap();

    // The dashboard's step page shows the end of each stream.
    let run = Store::open(&store).unwrap().runs(None).unwrap()[0]
        .id
        .clone();
    let page = dashboard_page(&store, &format!("/runs/{run}/steps/talkative"));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains(
            "<pre class=\"log\" data-stream=\"stdout\">talkative: line one of 3\ntalkative: line two of 3\n</pre>"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "<pre class=\"log\" data-stream=\"stderr\">talkative: a warning about 3\n</pre>"
        ),
        "{page}"
    );

    let show = cli(&store, &["show", "chat"]);
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(
        show.stdout.contains("Logs kept: `talkative` (stdout"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("`doubled` (stdout"), "{}", show.stdout);
    assert!(show.stdout.contains("pipeline logs "), "{}", show.stdout);

    let stdout = cli(&store, &["logs", "chat", "talkative", "--stdout"]);
    assert_eq!(stdout.code, Some(0), "{}", stdout.stderr);
    assert_eq!(
        stdout.stdout,
        "talkative: line one of 3\ntalkative: line two of 3\n"
    );
    let stderr = cli(&store, &["logs", "chat", "talkative", "--stderr"]);
    assert_eq!(stderr.stdout, "talkative: a warning about 3\n");

    let both = cli(&store, &["logs", "chat", "talkative"]);
    assert_eq!(both.code, Some(0), "{}", both.stderr);
    assert_eq!(
        both.stdout,
        "==> stdout of `talkative` (50 bytes) <==\n\
         talkative: line one of 3\ntalkative: line two of 3\n\
         ==> stderr of `talkative` (29 bytes) <==\n\
         talkative: a warning about 3\n"
    );

    // A step that printed nothing: both streams kept, empty (no blob is written for them).
    let quiet = cli(&store, &["logs", "chat", "doubled"]);
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert_eq!(
        quiet.stdout,
        "==> stdout of `doubled` (0 bytes) <==\n==> stderr of `doubled` (0 bytes) <==\n"
    );

    let json = cli(&store, &["--json", "logs", "chat", "talkative", "--stderr"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["step"], "talkative");
    assert_eq!(doc["logs"].as_array().unwrap().len(), 1);
    assert_eq!(doc["logs"][0]["stream"], "stderr");
    assert_eq!(doc["logs"][0]["text"], "talkative: a warning about 3\n");
    assert_eq!(doc["logs"][0]["truncated"], false);
    let json = cli(&store, &["--json", "show", "chat"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["logs"][0]["step"], "talkative");
    assert_eq!(doc["logs"][0]["streams"][1]["stream"], "stderr");

    let both_flags = cli(
        &store,
        &["logs", "chat", "talkative", "--stdout", "--stderr"],
    );
    assert_eq!(both_flags.code, Some(2));
    assert!(
        both_flags.stderr.contains("cannot be used with"),
        "{}",
        both_flags.stderr
    );
    let unknown = cli(&store, &["logs", "chat", "nope"]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown
            .stderr
            .contains("has no step call `nope`; its steps are: talkative, doubled"),
        "{}",
        unknown.stderr
    );
}

fn a_failed_steps_logs_are_kept_and_threads_keep_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    chat(0)
        .store_path(&store)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap_err();
    let failed = cli(&store, &["logs", "chat", "talkative", "--stderr"]);
    assert_eq!(failed.code, Some(0), "{}", failed.stderr);
    // What the step printed, then the worker's own word on the failure.
    assert_eq!(
        failed.stdout,
        "talkative: a warning about 0\npipeline worker: step `talkative` failed: zero is refused\n"
    );
    // The skipped step ran no job.
    let skipped = cli(&store, &["logs", "chat", "doubled"]);
    assert_eq!(skipped.code, Some(2));
    assert!(
        skipped
            .stderr
            .contains("has no logs in the store: it is skipped"),
        "{}",
        skipped.stderr
    );

    let on_threads = chat(4).store_path(&store).run().unwrap();
    let threads = cli(&store, &["logs", on_threads.name(), "talkative"]);
    assert_eq!(threads.code, Some(2));
    assert!(
        threads
            .stderr
            .contains("steps on threads print to the driver's own output"),
        "{}",
        threads.stderr
    );
    let show = cli(&store, &["show", on_threads.name()]);
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(!show.stdout.contains("Logs kept"), "{}", show.stdout);
}

fn main() {
    pipeline::worker::enter();
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, fn()); 2] = [
        (
            "logs_print_each_stream_or_both_and_show_lists_them",
            logs_print_each_stream_or_both_and_show_lists_them,
        ),
        (
            "a_failed_steps_logs_are_kept_and_threads_keep_none",
            a_failed_steps_logs_are_kept_and_threads_keep_none,
        ),
    ];
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        test();
        eprintln!("test {name} ... ok");
    }
}
