//! Resource faults during runs: failing and panicking cachers, a full disk, a read-only
//! store, and garbage collection beside a running pipeline. Each gives an error that says
//! what happened, and nothing partial becomes visible.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use common::{age_all_blobs, status_of, temp_store};
use pipeline::prelude::*;
use pipeline::{BoxError, GcPolicy, StoreOptions};

/// Writes `limit` bytes, then fails like a full disk.
#[derive(Default)]
struct DiskFullAfter;

const LIMIT: usize = 1000;

impl Cacher<Vec<u8>> for DiskFullAfter {
    fn id(&self) -> &str {
        "disk-full"
    }
    fn save(&self, v: &Vec<u8>, out: &mut dyn Write) -> Result<(), BoxError> {
        out.write_all(&v[..LIMIT.min(v.len())])?;
        if v.len() > LIMIT {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            )
            .into());
        }
        Ok(())
    }
    fn load(&self, input: &mut dyn Read) -> Result<Vec<u8>, BoxError> {
        let mut v = Vec::new();
        input.read_to_end(&mut v)?;
        Ok(v)
    }
}

/// Panics while saving.
#[derive(Default)]
struct Panicky;

impl Cacher<u32> for Panicky {
    fn id(&self) -> &str {
        "panicky"
    }
    fn save(&self, _: &u32, out: &mut dyn Write) -> Result<(), BoxError> {
        out.write_all(b"partial")?;
        panic!("cacher bug");
    }
    fn load(&self, _: &mut dyn Read) -> Result<u32, BoxError> {
        Ok(0)
    }
}

#[step(cacher = DiskFullAfter)]
fn big_output(n: usize) -> Vec<u8> {
    vec![5; n]
}

#[step(cacher = Panicky)]
fn panicky_output() -> u32 {
    1
}

#[pipeline]
fn disk_full(n: usize) -> Artifact<Vec<u8>> {
    big_output(n)
}

#[pipeline]
fn cacher_panics() -> Artifact<u32> {
    panicky_output()
}

/// Temporary blob files (`artifacts/tmp/` also holds each open handle's lock file).
fn temp_files(store: &Store) -> usize {
    fs::read_dir(store.path().join("artifacts/tmp"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .count()
        })
        .unwrap_or(0)
}

fn blob_count(store: &Store) -> usize {
    fs::read_dir(store.path().join("artifacts"))
        .unwrap()
        .flatten()
        // Not temporary files, nor the store's claim on its folder.
        .filter(|e| e.file_name() != "tmp" && e.file_name() != ".pipeline-stores")
        .map(|e| fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0))
        .sum()
}

#[test]
fn a_full_disk_fails_the_step_and_leaves_nothing_partial() {
    let (_dir, store) = temp_store();
    let err = disk_full(5000).store(store.clone()).run().unwrap_err();
    let Error::StepFailed {
        step, message, run, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(step, "big_output");
    assert!(
        message.contains("cacher `disk-full` could not save output `output`"),
        "{message}"
    );
    assert!(message.contains("no space left on device"), "{message}");
    assert_eq!(
        temp_files(&store),
        0,
        "the partial temporary file is removed"
    );
    // Only the parameter's stored form, written when the step claimed its key.
    assert_eq!(blob_count(&store), 1, "no output blob becomes visible");
    let steps = store.run_steps(run).unwrap();
    assert_eq!(steps[0].status, StepStatus::Failed);
    assert!(steps[0].outputs.is_empty());
    assert!(store.verify().unwrap().is_ok());
    // Within the limit it works, and the failed attempt is never reused.
    let run = disk_full(10).store(store.clone()).run().unwrap();
    assert_eq!(run.output().load().unwrap(), vec![5; 10]);
}

#[test]
fn a_panicking_cacher_fails_the_step_without_a_panic_across_the_api() {
    let (_dir, store) = temp_store();
    let err = cacher_panics().store(store.clone()).run().unwrap_err();
    assert!(
        matches!(&err, Error::StepFailed { message, .. } if message.contains("cacher bug")),
        "{err:?}"
    );
    assert_eq!(temp_files(&store), 0);
    assert_eq!(blob_count(&store), 0);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_read_only_store_refuses_to_run_and_stays_unchanged() {
    let (_dir, store) = temp_store();
    disk_full(10).store(store.clone()).run().unwrap();
    let before = store.runs(None).unwrap().len();
    let ro = Store::open_with(
        store.path(),
        StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let err = disk_full(20).store(ro.clone()).run().unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(store.runs(None).unwrap().len(), before);
    // Reading still works.
    let last = &ro.runs(None).unwrap()[0];
    let v: Vec<u8> = ro
        .load_with(&last.id, "big_output", "output", &DiskFullAfter)
        .unwrap();
    assert_eq!(v.len(), 10);
}

// Garbage collection beside a running pipeline.
static STARTED: Mutex<Option<Sender<()>>> = Mutex::new(None);
static RESUME: Mutex<Option<Receiver<()>>> = Mutex::new(None);

#[step]
fn gc_source(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
fn gc_slow_sum(xs: Artifact<Vec<u32>>, tag: u32) -> u64 {
    if let Some(tx) = STARTED.lock().unwrap().take() {
        tx.send(()).unwrap();
        let rx = RESUME.lock().unwrap().take().unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    // Loads the cached upstream output only after the collection ran.
    let sum: u64 = xs.load().unwrap().iter().map(|&x| u64::from(x)).sum();
    sum + u64::from(tag)
}

#[pipeline]
fn gc_pipeline(tag: u32) -> Artifact<u64> {
    let xs = gc_source(1000);
    gc_slow_sum(&xs, tag)
}

#[test]
fn gc_during_a_run_loses_nothing_the_run_needs() {
    let (_dir, store) = temp_store();
    gc_pipeline(1).store(store.clone()).run().unwrap();
    age_all_blobs(&store);

    let (started_tx, started_rx) = channel();
    let (resume_tx, resume_rx) = channel();
    *STARTED.lock().unwrap() = Some(started_tx);
    *RESUME.lock().unwrap() = Some(resume_rx);
    let running = {
        let store = store.clone();
        std::thread::spawn(move || gc_pipeline(2).store(store).run())
    };
    started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // The second run reused `gc_source` from the first; collect everything collectable.
    let report = store
        .gc(&GcPolicy {
            keep_last: 0,
            min_blob_age: Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.runs_removed.len(), 1, "{report:?}");
    resume_tx.send(()).unwrap();
    let run = running.join().unwrap().unwrap();
    assert_eq!(status_of(&run, "gc_source"), StepStatus::Cached);
    assert_eq!(run.output().load().unwrap(), 499_502);
    assert!(store.verify().unwrap().is_ok(), "{:?}", store.verify());
    // The next run is still a cache hit, served by the second run's record.
    let again = gc_pipeline(2).store(store.clone()).run().unwrap();
    assert_eq!(status_of(&again, "gc_slow_sum"), StepStatus::Cached);
    assert_eq!(again.output().load().unwrap(), 499_502);
}

#[test]
fn gc_keeps_recent_and_pinned_runs_and_fits_a_budget() {
    let (_dir, store) = temp_store();
    let names: Vec<String> = (0..4)
        .map(|i| {
            gc_pipeline(100 + i)
                .store(store.clone())
                .run()
                .unwrap()
                .name()
                .to_string()
        })
        .collect();
    store.pin(&names[0]).unwrap();
    age_all_blobs(&store);
    let policy = GcPolicy {
        keep_last: 2,
        min_blob_age: Duration::ZERO,
        ..GcPolicy::default()
    };

    let dry = store
        .gc(&GcPolicy {
            dry_run: true,
            ..policy.clone()
        })
        .unwrap();
    assert_eq!(dry.runs_removed, [names[1].clone()]);
    assert_eq!(
        store.runs(None).unwrap().len(),
        4,
        "a dry run removes nothing"
    );
    assert_eq!(
        dry.blobs_removed, 2,
        "the second run's own sum and its own `tag`'s stored form: {dry:?}"
    );

    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed, [names[1].clone()]);
    assert_eq!(
        (report.blobs_removed, report.bytes_freed),
        (dry.blobs_removed, dry.bytes_freed)
    );
    let kept: Vec<String> = store
        .runs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(kept, [names[3].clone(), names[2].clone(), names[0].clone()]);
    assert!(store.verify().unwrap().is_ok());
    for name in &kept {
        let _: u64 = store.load(name, "gc_slow_sum", "output").unwrap();
    }

    // A budget of one byte drops every unpinned run.
    let tight = store
        .gc(&GcPolicy {
            max_bytes: Some(1),
            ..policy
        })
        .unwrap();
    assert_eq!(tight.runs_removed.len(), 2);
    let kept: Vec<String> = store
        .runs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(kept, [names[0].clone()], "only the pinned run stays");
    let _: u64 = store.load(&names[0], "gc_slow_sum", "output").unwrap();
}

#[test]
fn gc_spares_blobs_a_cache_hit_just_used() {
    let (_dir, store) = temp_store();
    gc_pipeline(7).store(store.clone()).run().unwrap();
    age_all_blobs(&store);
    // A fully cached run marks the blobs it reuses as used.
    let again = gc_pipeline(7).store(store.clone()).run().unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
    let policy = GcPolicy {
        keep_last: 0,
        ..GcPolicy::default()
    };
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed.len(), 2);
    // The outputs were just reused; the parameters' stored forms were not (a cache hit
    // does not read them), and their executions are gone.
    assert_eq!(report.blobs_removed, 2, "only the parameters: {report:?}");
    // Once they are old, nothing references them and they go.
    age_all_blobs(&store);
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.blobs_removed, 2, "{report:?}");
    assert!(store.verify().unwrap().is_ok());
}
