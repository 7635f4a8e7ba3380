//! What users see: the exact log lines of DESIGN §6, and damaged blobs that heal with a
//! warning instead of a panic. Every test here uses its own step names, because the log
//! capture is global to this test binary.

mod common;

use std::fs;

use common::{capture_logs, status_of, temp_store};
use pipeline::prelude::*;
use pipeline::Reason;

#[step]
fn log_source() -> u32 {
    7
}

#[step]
fn log_double(x: &u32) -> u32 {
    x * 2
}

#[step]
fn log_broken(x: &u32) -> Result<u32, std::fmt::Error> {
    let _ = x;
    Err(std::fmt::Error)
}

#[pipeline]
fn logged() -> Artifact<u32> {
    let x = log_source();
    log_double(&x)
}

#[step]
fn log_after_broken(x: &u32) -> u32 {
    x + 1
}

#[pipeline]
fn logged_failure() -> Artifact<u32> {
    let x = log_source();
    let broken = log_broken(&x);
    log_after_broken(&broken)
}

fn is_secs(s: &str) -> bool {
    let Some(num) = s.strip_suffix('s') else {
        return false;
    };
    let mut parts = num.split('.');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_digit())
            && b.len() == 3 && b.chars().all(|c| c.is_ascii_digit()))
}

/// Replaces `0.014s` with `<t>` so lines can be compared exactly.
fn normalize(line: &str) -> String {
    line.split(' ')
        .map(|w| {
            let (core, tail) = match w.strip_suffix(['.', ':']) {
                Some(c) => (c, &w[c.len()..]),
                None => (w, ""),
            };
            if is_secs(core) {
                format!("<t>{tail}")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn log_lines_match_the_design() {
    let logs = capture_logs();
    let (_dir, store) = temp_store();
    let p = logged().store(store.clone());
    let first = p.run().unwrap();
    let second = p.run().unwrap();
    let failed = logged_failure().store(store).run().unwrap_err();

    let lines: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("log_") || l.contains("logged"))
        .map(|l| normalize(&l))
        .collect();
    let expected = [
        "INFO Step `log_source` has started.".to_string(),
        "INFO Step `log_source` has finished in <t>.".to_string(),
        "INFO Step `log_double` has started.".to_string(),
        "INFO Step `log_double` has finished in <t>.".to_string(),
        format!("INFO Pipeline run `{}` has finished in <t>.", first.name()),
        "INFO Using cached version of `log_source`.".to_string(),
        "INFO Using cached version of `log_double`.".to_string(),
        format!("INFO Pipeline run `{}` has finished in <t>.", second.name()),
        "INFO Using cached version of `log_source`.".to_string(),
        "INFO Step `log_broken` has started.".to_string(),
        // A failure is an ERROR event, so `RUST_LOG=pipeline=warn` still shows it.
        "ERROR Step `log_broken` failed after <t>: an error occurred when formatting an argument"
            .to_string(),
    ];
    assert_eq!(
        &lines[..expected.len()],
        &expected[..],
        "all lines: {lines:#?}"
    );
    let Error::StepFailed { run, .. } = failed else {
        panic!("{failed:?}")
    };
    // A failed run ends with ERROR `has failed after`, counting failed and skipped steps,
    // and never says `has finished`.
    assert_eq!(
        lines[expected.len()],
        format!("ERROR Pipeline run `{run}` has failed after <t>: 1 step failed, 1 skipped.")
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&run) && l.contains("has finished")),
        "all lines: {lines:#?}"
    );
    // Run names: `<pipeline>-YYYY_MM_DD-HH_MM_SS_ffffff`.
    let suffix = first.name().strip_prefix("logged-").unwrap();
    assert_eq!(suffix.len(), "2026_11_23-12_05_54_573248".len(), "{suffix}");
}

#[step]
fn blob_source(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
fn blob_sum(xs: &[u32]) -> u64 {
    xs.iter().map(|&x| u64::from(x)).sum()
}

#[pipeline]
fn blobs(n: u32) -> Artifact<u64> {
    let xs = blob_source(n);
    blob_sum(&xs)
}

#[test]
fn deleted_blob_is_a_miss_that_rewrites_it() {
    let logs = capture_logs();
    let (_dir, store) = temp_store();
    let p = blobs(100).store(store.clone());
    let first = p.run().unwrap();
    let steps = store.run_steps(first.id()).unwrap();
    let hash = steps[0].outputs[0].content_hash;
    let path = first.store().blob_path(hash);
    fs::remove_file(&path).unwrap();

    let run = p.run().unwrap();
    assert_eq!(status_of(&run, "blob_source"), StepStatus::Executed);
    assert_eq!(
        run.step("blob_source").unwrap().reason(),
        &Reason::BlobMissing {
            output: "output".into()
        }
    );
    assert_eq!(
        status_of(&run, "blob_sum"),
        StepStatus::Cached,
        "same bytes again"
    );
    assert!(path.exists(), "blob rewritten");
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.starts_with("WARN") && l.contains("`blob_source`") && l.contains("missing")));
    assert_eq!(run.output().load().unwrap(), 4950);
    // And the next run is a plain hit again.
    assert_eq!(
        status_of(&p.run().unwrap(), "blob_source"),
        StepStatus::Cached
    );
}

/// Flips one byte of `path`, keeping its size, and sets its mtime to `mtime`.
fn flip_first_byte(path: &std::path::Path, mtime: std::time::SystemTime) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    bytes[0] ^= 0x01;
    fs::write(path, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    bytes
}

#[test]
fn corrupt_blob_is_a_miss_that_rewrites_it() {
    let logs = capture_logs();
    let (_dir, store) = temp_store();
    let p = blobs(200).store(store.clone());
    let first = p.run().unwrap();
    let path = first.output().path().unwrap();
    let later =
        fs::metadata(&path).unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
    let bytes = flip_first_byte(&path, later);

    // Loading the damaged blob directly is an error, not a panic.
    let err = first.output().load().unwrap_err();
    assert!(matches!(err, Error::BlobCorrupt { .. }), "{err:?}");

    let run = p.run().unwrap();
    assert_eq!(status_of(&run, "blob_sum"), StepStatus::Executed);
    assert_eq!(
        run.step("blob_sum").unwrap().reason(),
        &Reason::BlobCorrupt {
            output: "output".into()
        }
    );
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.starts_with("WARN") && l.contains("`blob_sum`") && l.contains("corrupt")));
    assert_eq!(run.output().load().unwrap(), 19900);
    assert_ne!(fs::read(&path).unwrap(), bytes, "blob rewritten");
}

/// Bit rot that keeps size and mtime passes the stat check, so it is caught when the bytes
/// are read: the load fails with `BlobCorrupt`, and the next run re-executes the step.
#[test]
fn corruption_invisible_to_stat_is_caught_on_load_and_healed_by_the_next_run() {
    let (_dir, store) = temp_store();
    let p = blobs(300).store(store.clone());
    let first = p.run().unwrap();
    let path = first.output().path().unwrap();
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    flip_first_byte(&path, mtime);

    let cached = p.run().unwrap();
    assert_eq!(status_of(&cached, "blob_sum"), StepStatus::Cached);
    let err = cached.output().load().unwrap_err();
    assert!(matches!(err, Error::BlobCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("rerun"), "{err}");

    let healed = p.run().unwrap();
    assert_eq!(status_of(&healed, "blob_sum"), StepStatus::Executed);
    assert_eq!(healed.output().load().unwrap(), 44850);
}

#[test]
fn loading_as_the_wrong_type_names_both_types() {
    let (_dir, store) = temp_store();
    let run = blobs(10).store(store.clone()).run().unwrap();
    let err = store
        .load::<String>(run.name(), "blob_sum", "output")
        .unwrap_err();
    match &err {
        Error::TypeMismatch {
            stored, requested, ..
        } => {
            assert_eq!(stored, "u64");
            assert_eq!(requested, "alloc::string::String");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`u64`") && message.contains("String"),
        "{message}"
    );
    let ok: u64 = store.load(run.name(), "blob_sum", "output").unwrap();
    assert_eq!(ok, 45);
}

/// Fails with `Err` on its first attempt only (counted in-process: threads backend).
#[step(retries = 2, retry_delay = "10ms")]
fn retry_flaky(x: u32) -> Result<u32, std::fmt::Error> {
    let ctx = pipeline::context().expect("inside a step");
    if ctx.attempt() == 1 {
        Err(std::fmt::Error)
    } else {
        Ok(x)
    }
}

#[pipeline]
fn retrying_pipeline() -> Artifact<u32> {
    retry_flaky(3)
}

#[test]
fn a_retry_is_a_warn_line_and_only_a_final_failure_an_error() {
    let logs = capture_logs();
    let (_dir, store) = temp_store();
    retrying_pipeline().store(store).run().unwrap();
    let lines: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("retry_flaky"))
        .collect();
    let retry = lines
        .iter()
        .find(|l| l.contains("retrying"))
        .unwrap_or_else(|| panic!("no retry line: {lines:#?}"));
    let (head, tail) = retry.split_once(" retrying in ").unwrap();
    assert_eq!(head, "WARN Step `retry_flaky` failed (attempt 1 of 3),");
    // 10 ms plus up to 10 % jitter, then the error.
    let (delay, error) = tail.split_once(": ").unwrap();
    assert!(delay.ends_with("ms") && delay.starts_with("1"), "{retry}");
    assert_eq!(error, "an error occurred when formatting an argument");
    assert!(!lines.iter().any(|l| l.starts_with("ERROR")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INFO Step `retry_flaky` has finished in")),
        "{lines:#?}"
    );
}
