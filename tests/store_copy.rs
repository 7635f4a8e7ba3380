//! `Store::copy_to`: runs, rows and verified bytes go from one store into another
//! (SQLite or PostgreSQL metadata, a folder or S3 bytes). A copy interrupted between blobs
//! or between runs is finished by the next one without duplicates; a target holding runs
//! of its own gets the copied executions renumbered, every reference with them; a corrupt
//! source blob fails its run (and no row of it reaches the target) while the others are
//! copied; a different run under the same id is refused.
//!
//! The PostgreSQL + S3 cases need `PIPELINE_TEST_POSTGRES` and `PIPELINE_TEST_S3` (see
//! `tests/common/services.rs`); without them they say so and pass, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`.

mod common;
#[path = "common/services.rs"]
mod services;

use std::ops::ControlFlow;
use std::path::Path;

use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::{CopyEvent, CopyOptions, CopyReport, Error, Hash128, RunStatus, StoreOptions};
use services::{fresh_database, fresh_prefix};

#[step]
fn load(n: u32) -> Vec<f64> {
    (0..n).map(f64::from).collect()
}

#[step]
fn scale(xs: &[f64], factor: f64) -> Vec<f64> {
    xs.iter().map(|x| x * factor).collect()
}

#[step]
fn total(xs: Vec<f64>) -> f64 {
    xs.into_iter().sum()
}

#[pipeline]
fn three_steps(n: u32, factor: f64) -> Artifact<f64> {
    let xs = load(n);
    let scaled = scale(&xs, factor);
    total(scaled)
}

/// Four runs named `<tag>-1..4`: all executed; all cached; `scale` and `total` executed
/// (factor changed); everything executed (n changed).
fn history(store: &Store, tag: &str) {
    for (i, (n, factor)) in [(10, 2.0), (10, 2.0), (10, 3.0), (20, 3.0)]
        .into_iter()
        .enumerate()
    {
        three_steps(n, factor)
            .store(store.clone())
            .run_name(format!("{tag}-{}", i + 1))
            .run()
            .unwrap();
    }
}

/// A step as the queries show it, with every execution named by its run and step
/// instead of its id (ids differ between stores).
type StepView = (
    String,
    StepStatus,
    Option<Hash128>,
    Option<String>,
    Vec<Hash128>,
    Vec<(String, Option<Hash128>, Option<(String, String)>)>,
    Option<(String, String)>,
    Option<(String, String)>,
);

fn named(store: &Store, id: Option<i64>) -> Option<(String, String)> {
    let id = id?;
    let run = store.execution_run(id).unwrap();
    let step = store.execution(id).unwrap();
    Some((run.name, step.name))
}

/// Per run of `store` whose name starts with `tag`, oldest first: its name, status and
/// steps.
fn view(store: &Store, tag: &str) -> Vec<(String, RunStatus, Vec<StepView>)> {
    let mut runs = store.runs(None).unwrap();
    runs.reverse();
    runs.into_iter()
        .filter(|r| r.name.starts_with(tag))
        .map(|r| {
            let steps = store
                .run_steps(&r.id)
                .unwrap()
                .into_iter()
                .map(|s| {
                    let compared = store
                        .compared_execution(s.execution_id)
                        .unwrap()
                        .map(|c| (c.run_name, c.name));
                    (
                        s.name.clone(),
                        s.status,
                        s.cache_key,
                        s.reason.clone(),
                        s.outputs.iter().map(|o| o.content_hash).collect(),
                        s.inputs
                            .iter()
                            .map(|i| {
                                (
                                    i.name.clone(),
                                    i.content_hash,
                                    named(store, i.producer_execution),
                                )
                            })
                            .collect(),
                        named(store, s.reused_execution),
                        compared,
                    )
                })
                .collect();
            (r.name, r.status, steps)
        })
        .collect()
}

/// `got` with the compared execution of each step left out where `want` has none.
fn without_unknown_comparisons(
    mut got: Vec<(String, RunStatus, Vec<StepView>)>,
    want: &[(String, RunStatus, Vec<StepView>)],
) -> Vec<(String, RunStatus, Vec<StepView>)> {
    for (run, wanted) in got.iter_mut().zip(want) {
        for (step, w) in run.2.iter_mut().zip(&wanted.2) {
            if w.7.is_none() {
                step.7 = None;
            }
        }
    }
    got
}

fn copy(source: &Store, target: &Store) -> CopyReport {
    source.copy_to(target, CopyOptions::default()).unwrap()
}

fn assert_verified(store: &Store) {
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// The stores a copy goes into: a new local one, and, with the services, a new
/// PostgreSQL database with a new S3 prefix. The guards keep them alive.
fn targets(test: &str) -> Vec<(Store, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out: Vec<(Store, Box<dyn std::any::Any>)> = vec![(
        Store::open(dir.path().join("store")).unwrap(),
        Box::new(dir),
    )];
    if let (Some(db), Some(prefix)) = (fresh_database(test), fresh_prefix(test)) {
        let local = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(&db.url, Some(&prefix)).unwrap();
        let store = Store::connect_with(
            &config,
            StoreOptions {
                local_dir: Some(local.path().to_path_buf()),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        out.push((store, Box::new((db, local))));
    }
    out
}

#[test]
fn an_interrupted_copy_is_finished_by_the_next_without_duplicates() {
    let (_dir, source) = common::temp_store();
    history(&source, "h");
    let want = view(&source, "h");
    for (target, _guard) in targets("copy_resume") {
        // Stop after the first blob of the third run: two runs are in, the third's first
        // blob is in the target without its rows.
        let mut runs_started = 0;
        let mut stop = |event: &CopyEvent<'_>| match event {
            CopyEvent::RunStarted { .. } => {
                runs_started += 1;
                ControlFlow::Continue(())
            }
            CopyEvent::BlobCopied { .. } if runs_started == 3 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        };
        let first = source
            .copy_to(
                &target,
                CopyOptions {
                    progress: Some(&mut stop),
                },
            )
            .unwrap();
        assert!(first.interrupted && !first.is_complete(), "{first:?}");
        assert_eq!(first.runs_copied, 2, "{first:?}");
        assert_eq!(target.runs(None).unwrap().len(), 2);
        assert_verified(&target);

        // Stop between runs: after the third run committed.
        let mut after_third = |event: &CopyEvent<'_>| match event {
            CopyEvent::RunCopied { .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        };
        let second = source
            .copy_to(
                &target,
                CopyOptions {
                    progress: Some(&mut after_third),
                },
            )
            .unwrap();
        assert!(second.interrupted, "{second:?}");
        assert_eq!(
            (second.runs_present, second.runs_copied),
            (2, 1),
            "{second:?}"
        );
        // The blob copied before the interruption was found, checked and kept.
        assert!(second.blobs_present >= 1, "{second:?}");

        let last = copy(&source, &target);
        assert!(last.is_complete(), "{last:?}");
        assert_eq!((last.runs_present, last.runs_copied), (3, 1), "{last}");
        assert_eq!(view(&target, "h"), want);
        assert_eq!(target.runs(None).unwrap().len(), 4, "no run twice");
        assert_verified(&target);

        // Nothing left to do.
        let none = copy(&source, &target);
        assert_eq!((none.runs_present, none.runs_copied), (4, 0), "{none}");
        assert_eq!(none.blobs_copied, 0);
        assert_eq!(view(&target, "h"), want);

        // The copied executions kept their ids; new ones on the target take others.
        let next = three_steps(30, 3.0)
            .store(target.clone())
            .run_name("next")
            .run()
            .unwrap();
        assert!(next
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Executed));
        assert_eq!(view(&target, "h"), want);
        assert_verified(&target);
    }
}

#[test]
fn a_target_with_runs_of_its_own_gets_the_copied_ids_renumbered() {
    let (_dir, source) = common::temp_store();
    history(&source, "src");
    let want = view(&source, "src");
    for (target, _guard) in targets("copy_remap") {
        history(&target, "own");
        let own = view(&target, "own");
        let report = copy(&source, &target);
        assert_eq!(report.runs_copied, 4, "{report}");
        // The same keys and outputs: the target's own runs already hold most blobs.
        assert!(report.blobs_present > 0, "{report}");
        // An execution the source compares with none (the first call of a step) is
        // compared with the newest earlier call by id in the target: one of its own runs.
        assert_eq!(
            without_unknown_comparisons(view(&target, "src"), &want),
            want
        );
        assert_eq!(view(&target, "own"), own);
        assert_verified(&target);
        // New runs in the target reuse what was copied, and new ids do not collide.
        let again = three_steps(20, 3.0)
            .store(target.clone())
            .run_name("after")
            .run()
            .unwrap();
        assert!(again
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached));
        assert_eq!(again.output().load().unwrap(), 570.0);

        // And back into a new local store: the same history again.
        let (_back_dir, back) = common::temp_store();
        let report = copy(&target, &back);
        assert_eq!(report.runs_copied, 9, "{report}");
        assert_eq!(without_unknown_comparisons(view(&back, "src"), &want), want);
        assert_eq!(view(&back, "own"), own);
        assert_verified(&back);
    }
}

/// Flips the first byte of the blob file at `path`.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_source_blob_fails_its_run_and_is_not_copied() {
    let (_dir, source) = common::temp_store();
    history(&source, "h");
    // The output of `total` in run h-4 (n = 20, factor 3.0) is in no other run.
    let steps = source.run_steps("h-4").unwrap();
    let total = steps.iter().find(|s| s.name == "total").unwrap();
    let hash = total.outputs[0].content_hash;
    corrupt(&source.blob_path(hash));
    for (target, _guard) in targets("copy_corrupt") {
        let report = copy(&source, &target);
        assert!(!report.is_complete());
        assert_eq!(report.runs_copied, 3, "{report}");
        assert_eq!(report.failed.len(), 1, "{report:?}");
        let (run, error) = &report.failed[0];
        assert_eq!(run, &source.run("h-4").unwrap().id);
        assert!(
            matches!(error, Error::BlobCorrupt { hash: h, .. } if *h == hash.to_hex()),
            "{error:?}"
        );
        assert!(error.to_string().contains(&hash.to_hex()), "{error}");
        // Neither the run's rows nor the bad bytes are in the target.
        assert!(matches!(target.run("h-4"), Err(Error::UnknownRun(_))));
        assert_eq!(target.artifact_store().stat(hash).unwrap(), None);
        assert_verified(&target);
        assert_eq!(view(&target, "h"), view(&source, "h")[..3]);
    }
}

#[test]
fn a_different_run_under_the_same_id_and_the_source_itself_are_refused() {
    let (_dir, source) = common::temp_store();
    history(&source, "h");
    let err = source
        .copy_to(&source.clone(), CopyOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Copy { .. }), "{err:?}");
    assert!(
        err.to_string().contains("the target is the source"),
        "{err}"
    );
    let again = Store::open(source.path()).unwrap();
    let err = source.copy_to(&again, CopyOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("the target is the source"),
        "{err}"
    );

    let (dir, target) = common::temp_store();
    copy(&source, &target);
    // Another run under the id of h-2 in the target.
    let id = source.run("h-2").unwrap().id;
    drop(target);
    let db = rusqlite::Connection::open(dir.path().join("store/metadata.sqlite")).unwrap();
    db.execute("UPDATE runs SET name = 'other' WHERE id = ?1", [&id])
        .unwrap();
    drop(db);
    let target = Store::open(dir.path().join("store")).unwrap();
    let err = source.copy_to(&target, CopyOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Copy { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("different run") && msg.contains(&id) && msg.contains("other"),
        "{msg}"
    );
}
