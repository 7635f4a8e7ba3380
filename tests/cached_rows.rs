//! A cached step is recorded as one execution row pointing at the execution whose artifact
//! and input rows stand for its own (schema 5, issue 14), and every reader follows that
//! pointer: run records, loads, lineage, verification, garbage collection, later hits.

mod common;

use common::{age_all_blobs, status_of, temp_store};
use pipeline::prelude::*;
use pipeline::GcPolicy;
use rusqlite::Connection;

#[step]
fn rows_source(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
fn rows_sum(xs: &[u32], offset: u64) -> u64 {
    xs.iter().map(|&x| u64::from(x)).sum::<u64>() + offset
}

#[pipeline]
fn rows_pipeline(offset: u64) -> Artifact<u64> {
    let xs = rows_source(100);
    rows_sum(&xs, offset)
}

const SUM: u64 = 4950;

fn db(store: &Store) -> Connection {
    Connection::open(store.path().join("metadata.sqlite")).unwrap()
}

/// `(execution rows, rows pointing elsewhere, own artifact rows, own input rows)` of a run
/// (the pipeline has 2 steps, 2 outputs and 3 inputs: `n`, `xs`, `offset`).
fn row_counts(store: &Store, run: &str) -> (i64, i64, i64, i64) {
    db(store)
        .query_row(
            "SELECT count(*), count(e.outputs_of), \
             (SELECT count(*) FROM artifacts a JOIN executions x ON x.id = a.execution_id \
              WHERE x.run_id = ?1), \
             (SELECT count(*) FROM inputs i JOIN executions x ON x.id = i.execution_id \
              WHERE x.run_id = ?1) \
             FROM executions e WHERE e.run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

fn all_cached<O>(run: &Run<O>) -> bool {
    run.steps().iter().all(|s| s.status() == StepStatus::Cached)
}

#[test]
fn a_cached_step_is_one_row_and_readers_follow_its_pointer() {
    let (_dir, store) = temp_store();
    let first = rows_pipeline(0).store(store.clone()).run().unwrap();
    let second = rows_pipeline(0).store(store.clone()).run().unwrap();
    assert!(all_cached(&second));
    assert_eq!(row_counts(&store, first.id()), (2, 0, 2, 3));
    assert_eq!(
        row_counts(&store, second.id()),
        (2, 2, 0, 0),
        "one row per cached step, no copied artifact or input rows"
    );

    // Their key components are stored once, on the rows they point at.
    let empty: i64 = db(&store)
        .query_row(
            "SELECT count(*) FROM executions WHERE run_id = ?1 AND components = ''",
            [second.id()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(empty, 2);

    // Run records: the cached steps show the outputs, inputs and key components of what
    // they reused.
    let executed = store.run_steps(first.id()).unwrap();
    let cached = store.run_steps(second.id()).unwrap();
    for (e, c) in executed.iter().zip(&cached) {
        assert_eq!(c.status, StepStatus::Cached);
        assert_eq!(c.reused_execution, Some(e.execution_id));
        let hashes = |r: &pipeline::store::StepRecord| {
            r.outputs
                .iter()
                .map(|o| (o.name.clone(), o.content_hash, o.size))
                .collect::<Vec<_>>()
        };
        assert_eq!(hashes(c), hashes(e), "outputs of `{}`", c.name);
        assert!(!c.outputs.is_empty());
        let inputs = |r: &pipeline::store::StepRecord| {
            r.inputs
                .iter()
                .map(|i| (i.name.clone(), i.content_hash))
                .collect::<Vec<_>>()
        };
        assert_eq!(inputs(c), inputs(e), "inputs of `{}`", c.name);
        assert_eq!(
            serde_json::to_string(&c.components).unwrap(),
            serde_json::to_string(&e.components).unwrap()
        );
        assert_eq!(c.parameters, e.parameters);
    }
    assert_eq!(
        store
            .load::<u64>(second.name(), "rows_sum", "output")
            .unwrap(),
        SUM
    );
    assert_eq!(second.output().load().unwrap(), SUM);

    // Lineage: the cached rows reuse the source's output and consume it.
    let source_hash = &executed[0].outputs[0].content_hash;
    let lineage = store.lineage(*source_hash).unwrap();
    let ids = |refs: &[pipeline::store::ExecutionRef]| {
        refs.iter().map(|r| r.execution_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&lineage.producers), [executed[0].execution_id]);
    assert_eq!(ids(&lineage.reused_by), [cached[0].execution_id]);
    assert_eq!(
        ids(&lineage.consumers),
        [executed[1].execution_id, cached[1].execution_id]
    );
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn gc_keeps_what_a_kept_cached_row_points_at() {
    let (_dir, store) = temp_store();
    let first = rows_pipeline(1).store(store.clone()).run().unwrap();
    let second = rows_pipeline(1).store(store.clone()).run().unwrap();
    assert!(all_cached(&second));
    // Old enough that only references protect them.
    age_all_blobs(&store);
    let policy = GcPolicy {
        keep_last: 1,
        min_blob_age: std::time::Duration::from_secs(120),
        ..GcPolicy::default()
    };
    let dry = store
        .gc(&GcPolicy {
            dry_run: true,
            ..policy.clone()
        })
        .unwrap();
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed, [first.name().to_string()]);
    assert_eq!(
        report.blobs_removed, 0,
        "the kept run reuses them: {report:?}"
    );
    assert_eq!(
        (dry.runs_removed.clone(), dry.blobs_removed, dry.bytes_kept),
        (
            report.runs_removed.clone(),
            report.blobs_removed,
            report.bytes_kept
        )
    );
    assert!(report.bytes_kept > 0);

    // The kept run took over the rows of the execution it reused.
    assert_eq!(row_counts(&store, second.id()), (2, 0, 2, 3));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        store
            .load::<u64>(second.name(), "rows_sum", "output")
            .unwrap(),
        SUM + 1
    );

    // Later runs still hit, pointing at the kept run's rows; and survive its removal too.
    let third = rows_pipeline(1).store(store.clone()).run().unwrap();
    assert!(all_cached(&third));
    assert_eq!(row_counts(&store, third.id()), (2, 2, 0, 0));
    let fourth = rows_pipeline(1).store(store.clone()).run().unwrap();
    age_all_blobs(&store);
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed.len(), 2, "{report:?}");
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert_eq!(row_counts(&store, fourth.id()), (2, 0, 2, 3));
    assert_eq!(fourth.output().load().unwrap(), SUM + 1);
    let fifth = rows_pipeline(1).store(store.clone()).run().unwrap();
    assert!(all_cached(&fifth));
    assert_eq!(fifth.output().load().unwrap(), SUM + 1);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");

    // With nothing kept, the blobs go.
    age_all_blobs(&store);
    let report = store
        .gc(&GcPolicy {
            keep_last: 0,
            ..policy
        })
        .unwrap();
    // Two outputs, and the stored forms of the two parameters.
    assert_eq!(report.blobs_removed, 4, "{report:?}");
}

/// Turns the cached rows of `run` into rows as schema 4 wrote them: copies of the artifact
/// and input rows of the execution each reused, and no pointer.
fn copy_rows_like_schema_4(conn: &Connection, run: &str) {
    conn.execute(
        "INSERT INTO artifacts(execution_id, name, position, content_hash, size, type_name, \
         cacher, cacher_version, metadata) \
         SELECT e.id, a.name, a.position, a.content_hash, a.size, a.type_name, a.cacher, \
         a.cacher_version, NULL FROM executions e JOIN artifacts a ON a.execution_id = e.outputs_of \
         WHERE e.run_id = ?1",
        [run],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO inputs(execution_id, name, position, content_hash, producer_execution) \
         SELECT e.id, i.name, i.position, i.content_hash, i.producer_execution \
         FROM executions e JOIN inputs i ON i.execution_id = e.outputs_of WHERE e.run_id = ?1",
        [run],
    )
    .unwrap();
    conn.execute(
        "UPDATE executions SET outputs_of = NULL, components = \
         (SELECT h.components FROM executions h WHERE h.id = executions.outputs_of) \
         WHERE run_id = ?1",
        [run],
    )
    .unwrap();
}

#[test]
fn a_store_of_schema_4_with_copied_rows_migrates_and_keeps_serving() {
    let (_dir, store) = temp_store();
    let first = rows_pipeline(2).store(store.clone()).run().unwrap();
    let second = rows_pipeline(2).store(store.clone()).run().unwrap();
    let path = store.path().to_path_buf();
    drop(store);
    {
        let conn = db_at(&path);
        copy_rows_like_schema_4(&conn, second.id());
        // The executed run is gone, as a schema-4 gc left it: the copies stand for it.
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF;
             DELETE FROM artifacts WHERE execution_id IN
                 (SELECT id FROM executions WHERE run_id = '{run}');
             DELETE FROM inputs WHERE execution_id IN
                 (SELECT id FROM executions WHERE run_id = '{run}');
             DELETE FROM executions WHERE run_id = '{run}';
             DELETE FROM runs WHERE id = '{run}';
             DROP INDEX executions_by_step;
             CREATE INDEX executions_by_step ON executions(step, status);
             ALTER TABLE executions DROP COLUMN fingerprint;
             DROP INDEX executions_by_outputs_of;
             DROP INDEX executions_by_key;
             ALTER TABLE executions DROP COLUMN outputs_of;
             CREATE INDEX executions_by_key ON executions(cache_key, status);
             ALTER TABLE leases DROP COLUMN execution_id;
             ALTER TABLE leases DROP COLUMN claimed_at_us;
             DROP TABLE holds;
             DROP TABLE condemned;
             ALTER TABLE inputs DROP COLUMN value_blob;
             ALTER TABLE executions DROP COLUMN attempts;
             ALTER TABLE executions DROP COLUMN metadata;
             ALTER TABLE executions DROP COLUMN metrics;
             PRAGMA user_version = 4;",
            run = first.id()
        ))
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 9);
    assert_eq!(
        store
            .load::<u64>(second.name(), "rows_sum", "output")
            .unwrap(),
        SUM + 2
    );
    // A hit on a copied row whose reused execution is gone points at the copies.
    let third = rows_pipeline(2).store(store.clone()).run().unwrap();
    assert!(all_cached(&third));
    assert_eq!(row_counts(&store, third.id()), (2, 2, 0, 0));
    let steps = store.run_steps(third.id()).unwrap();
    let old = store.run_steps(second.id()).unwrap();
    for (t, o) in steps.iter().zip(&old) {
        assert_eq!(t.reused_execution, Some(o.execution_id), "{}", t.name);
        assert_eq!(t.outputs.len(), 1);
        assert_eq!(t.outputs[0].content_hash, o.outputs[0].content_hash);
    }
    assert_eq!(third.output().load().unwrap(), SUM + 2);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    // And gc hands the copies over when their run goes.
    age_all_blobs(&store);
    let report = store
        .gc(&GcPolicy {
            keep_last: 1,
            min_blob_age: std::time::Duration::from_secs(120),
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.runs_removed, [second.name().to_string()]);
    // Only the stored forms of the two parameters, which schema 4 never wrote (dropping
    // schema 8's column above left them unreferenced); every output stays.
    assert_eq!(report.blobs_removed, 2, "{report:?}");
    assert_eq!(third.output().load().unwrap(), SUM + 2);
    let fourth = rows_pipeline(2).store(store.clone()).run().unwrap();
    assert_eq!(status_of(&fourth, "rows_sum"), StepStatus::Cached);
    assert_eq!(fourth.output().load().unwrap(), SUM + 2);
}

fn db_at(path: &std::path::Path) -> Connection {
    Connection::open(path.join("metadata.sqlite")).unwrap()
}
