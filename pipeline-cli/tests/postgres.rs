//! The `pipeline` binary on a store whose metadata is in PostgreSQL
//! (`PIPELINE_METADATA=postgres://..`) and whose artifact bytes are in S3
//! (`PIPELINE_ARTIFACTS=s3://..`): `runs`, `explain`, `diff` and `lineage` say what they say
//! on the same history in a local store.
//!
//! `PIPELINE_TEST_POSTGRES` names a server whose user may create databases, and
//! `PIPELINE_TEST_S3` a bucket and prefix (with the standard `AWS_*` variables, which the
//! binary inherits); `scripts/services.sh` starts both. Without them the test says so and
//! passes, unless `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing service a
//! failure.

mod common;
#[path = "../../tests/common/services.rs"]
mod services;

use std::ffi::OsStr;

use common::{build_history_in, history, run_with_env, Ran, RUNS};
use pipeline::config::StoreConfig;
use pipeline::{Store, StoreOptions};
use services::{fresh_database, fresh_prefix};

/// Run ids and dates differ between stores; the rest of the output must not.
fn without_ids(text: &str, ids: &[String]) -> String {
    ids.iter()
        .fold(text.to_string(), |t, id| t.replace(id.as_str(), "<id>"))
}

#[test]
fn runs_explain_diff_and_lineage_work_on_postgres_metadata() {
    let Some(db) = fresh_database("cli_postgres") else {
        return;
    };
    let Some(prefix) = fresh_prefix("cli") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some(&prefix)).unwrap();
    let store = Store::connect_with(
        &config,
        StoreOptions {
            local_dir: Some(home.path().to_path_buf()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    build_history_in(store.clone());

    let env = [
        ("PIPELINE_METADATA", OsStr::new(&db.url)),
        ("PIPELINE_ARTIFACTS", OsStr::new(&prefix)),
        ("PIPELINE_HOME", home.path().as_os_str()),
    ];
    let pg = |args: &[&str]| run_with_env(args, &env);
    let local = |args: &[&str]| {
        let mut all = vec!["--store", history().to_str().unwrap()];
        all.extend_from_slice(args);
        run_with_env(&all, &[])
    };
    let ids = |store: &Store| -> Vec<String> {
        store
            .runs(None)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let pg_ids = ids(&store);
    let local_ids = ids(&Store::open(history()).unwrap());

    // `runs`: the three runs, newest first, with the same counts as on SQLite.
    let runs = pg(&["runs", "--json"]).json();
    let local_runs = local(&["runs", "--json"]).json();
    let summary = |runs: &serde_json::Value| -> Vec<(String, u64, u64)> {
        runs.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["executed"].as_u64().unwrap(),
                    r["cached"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&runs), summary(&local_runs));
    assert_eq!(summary(&runs)[0].0, RUNS[2]);
    let text = pg(&["runs"]).ok();
    assert!(RUNS.iter().all(|r| text.contains(r)), "{text}");

    // `explain`: the changed parameter with both values, compared with run-beta.
    let out = pg(&["explain", "run-gamma", "scale"]).ok();
    assert!(
        out.contains("parameter `factor` changed (2.0 -> 3.0)"),
        "{out}"
    );
    assert!(out.contains("in run `run-beta`"), "{out}");
    let explained = pg(&["explain", "run-beta", "total"]).ok();
    let explained_locally = local(&["explain", "run-beta", "total"]).ok();
    assert_eq!(
        strip_numbers(&without_ids(&explained, &pg_ids)),
        strip_numbers(&without_ids(&explained_locally, &local_ids)),
    );

    // `diff`: word for word what SQLite's says, but for ids, times and durations.
    let diff = pg(&["diff", "run-alpha", "run-beta"]).ok();
    assert!(diff.contains("step body changed"), "{diff}");
    assert!(diff.contains("2 of 3 steps differ."), "{diff}");
    assert_eq!(
        strip_numbers(&without_ids(&diff, &pg_ids)),
        strip_numbers(&without_ids(
            &local(&["diff", "run-alpha", "run-beta"]).ok(),
            &local_ids
        ))
    );

    // `lineage`: the same graph.
    let graph = pg(&["lineage", "run-beta", "--json"]).json();
    let edges: Vec<(&str, &str)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(edges, [("source", "scale"), ("scale", "total")]);
    let dot = pg(&["lineage", "run-beta"]).ok();
    assert!(dot.contains("label=\"source\\ncached"), "{dot}");
    assert!(dot.contains("label=\"scale\\nexecuted"), "{dot}");

    // `verify` reads every object back through the bucket.
    let verified = pg(&["verify"]).ok();
    assert!(verified.contains(": no problems."), "{verified}");

    // Errors name the store without its password.
    let wrong: Ran = pg(&["explain", "run-delta", "scale"]);
    let err = wrong.fails();
    assert!(err.contains("run-delta"), "{err}");
    if let Some(password) = url::Url::parse(&db.url).unwrap().password() {
        assert!(!err.contains(password), "the password leaked: {err}");
    }
}

/// Execution ids, times and durations differ between stores; digits are left out of the
/// comparisons.
fn strip_numbers(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_digit()).collect()
}

#[test]
fn viewing_commands_create_nothing_in_an_empty_database() {
    let Some(db) = fresh_database("cli_empty") else {
        return;
    };
    let Some(prefix) = fresh_prefix("cli-empty") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("PIPELINE_METADATA", OsStr::new(&db.url)),
        ("PIPELINE_ARTIFACTS", OsStr::new(&prefix)),
        ("PIPELINE_HOME", home.path().as_os_str()),
    ];
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let tables = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                &[],
            )
            .unwrap()
            .get(0)
    };
    for args in [
        &["runs"][..],
        &["show", "run-alpha"],
        &["explain", "run-alpha", "scale"],
        &["diff", "run-alpha", "run-beta"],
        &["lineage", "run-alpha"],
        &["verify"],
    ] {
        let err = run_with_env(args, &env).fails();
        assert!(
            err.contains("holds no pipeline store") && err.contains("PIPELINE_METADATA"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("PIPELINE_HOME"), "{args:?}: {err}");
        if let Some(password) = url::Url::parse(&db.url).unwrap().password() {
            assert!(!err.contains(password), "the password leaked: {err}");
        }
        assert_eq!(tables(&mut admin), 0, "{args:?} created tables");
    }
}
