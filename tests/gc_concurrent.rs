//! gc is safe beside running pipelines whatever its settings: 200 runs on eight threads,
//! each with its own store handle, while another handle collects garbage in a loop with
//! `min_blob_age` zero (and budgets, `keep_last` 0 or 1, dry runs). No run fails, every
//! output loads, and once nothing runs a last gc removes what is left.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipeline::prelude::*;
use pipeline::GcPolicy;

#[step]
fn gcc_source(n: u32) -> Vec<u32> {
    (0..n * 100).collect()
}

#[step]
fn gcc_scale(xs: &[u32], by: u32) -> Vec<u64> {
    xs.iter().map(|&x| u64::from(x) * u64::from(by)).collect()
}

#[step]
fn gcc_sum(xs: &[u64], tag: u32) -> u64 {
    xs.iter().sum::<u64>() + u64::from(tag)
}

#[pipeline]
fn gc_beside(n: u32, by: u32, tag: u32) -> Artifact<u64> {
    let xs = gcc_source(n);
    let scaled = gcc_scale(&xs, by);
    gcc_sum(&scaled, tag)
}

fn expected(n: u32, by: u32, tag: u32) -> u64 {
    (0..u64::from(n) * 100)
        .map(|x| x * u64::from(by))
        .sum::<u64>()
        + u64::from(tag)
}

#[test]
fn gc_at_every_setting_beside_200_concurrent_runs_fails_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    Store::open(&path).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let collections = Arc::new(AtomicUsize::new(0));
    let collector = {
        let (path, done, collections) = (path.clone(), done.clone(), collections.clone());
        std::thread::spawn(move || {
            let store = Store::open(&path).unwrap();
            let policies = [
                GcPolicy {
                    keep_last: 0,
                    min_blob_age: Duration::ZERO,
                    ..GcPolicy::default()
                },
                GcPolicy {
                    keep_last: 1,
                    max_bytes: Some(0),
                    min_blob_age: Duration::ZERO,
                    ..GcPolicy::default()
                },
                GcPolicy {
                    keep_last: 0,
                    min_blob_age: Duration::ZERO,
                    dry_run: true,
                    ..GcPolicy::default()
                },
                GcPolicy::default(),
            ];
            let mut removed = 0;
            while !done.load(Ordering::SeqCst) {
                let policy = &policies[collections.load(Ordering::SeqCst) % policies.len()];
                removed += store.gc(policy).expect("gc").runs_removed.len();
                collections.fetch_add(1, Ordering::SeqCst);
            }
            removed
        })
    };
    let workers: Vec<_> = (0..8u32)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                let mut failures = Vec::new();
                for i in 0..25u32 {
                    // Few distinct sources and scales, so runs reuse each other's outputs
                    // while gc removes the runs that recorded them.
                    let (n, by, tag) = ((w + i) % 3 + 1, i % 4 + 1, (w * 25 + i) % 10);
                    match gc_beside(n, by, tag).store(store.clone()).run() {
                        Ok(run) => match run.output().load() {
                            Ok(total) => assert_eq!(total, expected(n, by, tag)),
                            Err(e) => failures.push(format!("load: {e}")),
                        },
                        Err(e) => failures.push(format!("run: {e}")),
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    done.store(true, Ordering::SeqCst);
    let removed = collector.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert!(
        collections.load(Ordering::SeqCst) > 0 && removed > 0,
        "gc ran beside the runs and removed some"
    );

    // With nothing running, everything unkept goes, and what stays is intact.
    let store = Store::open(&path).unwrap();
    store
        .gc(&GcPolicy {
            keep_last: 0,
            min_blob_age: Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert!(store.runs(None).unwrap().is_empty());
    let left: Vec<_> = walk(&path.join("artifacts"))
        .into_iter()
        .filter(|p| !p.starts_with(path.join("artifacts").join("tmp")))
        // The store's claim on its folder is not a blob.
        .filter(|p| !p.starts_with(path.join("artifacts").join(".pipeline-stores")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.verify().unwrap().is_ok());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
