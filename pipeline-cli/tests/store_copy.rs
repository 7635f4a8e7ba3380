//! `pipeline store copy`: the seed example's store goes from a local folder into
//! PostgreSQL + S3 and back into a new local folder. `verify` is clean on each side, and
//! every copy explains, diffs, draws and lists the runs word for word as the original does
//! (a copy into a new store keeps the execution ids). A second copy finds everything
//! there and copies nothing.
//!
//! Needs `PIPELINE_TEST_POSTGRES` and `PIPELINE_TEST_S3` (see
//! `tests/common/services.rs`); without them the test says so and passes, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`.

mod common;
#[path = "../../examples/common/digits.rs"]
mod digits;
#[path = "../../examples/common/digits_pipeline.rs"]
mod digits_pipeline;
#[path = "../../tests/common/services.rs"]
mod services;

use std::ffi::OsStr;
use std::path::Path;

use common::{run_with_env, Ran};
use digits::DEFAULT_C;
use digits_pipeline::{digits_pipeline, STEPS};
use pipeline::Store;
use services::{fresh_database, fresh_prefix};

/// Training rows of the seed pipeline (of 1437), as in `tests/seed_example.rs`.
const TRAIN_LIMIT: usize = 300;

/// The runs, oldest first: executed, cached, another gamma (trainer and evaluator run
/// again), and a failed one (gamma = -1: the trainer fails, the evaluator is skipped).
const RUNS: [&str; 4] = ["seed-first", "seed-cached", "seed-gamma", "seed-failed"];

fn seed_store(path: &Path) {
    let store = Store::open(path).expect("open store");
    let seed = |gamma: f64| digits_pipeline(gamma, DEFAULT_C, Some(TRAIN_LIMIT), true);
    for (name, gamma) in RUNS.iter().zip([0.256, 0.256, 0.512]) {
        seed(gamma)
            .store(store.clone())
            .run_name(*name)
            .run()
            .expect("seed run");
    }
    let failed = seed(-1.0).store(store).run_name(RUNS[3]).run();
    assert!(failed.is_err(), "gamma = -1 fails the trainer");
}

/// What the viewing commands print about the runs: `runs`, `explain` of every step of
/// every run, `lineage` of every run, `diff` of the first run with each other.
fn views(cli: &dyn Fn(&[&str]) -> Ran) -> Vec<(String, Option<i32>, String)> {
    let mut out = Vec::new();
    let mut view = |args: &[&str]| {
        let ran = cli(args);
        out.push((args.join(" "), ran.code, ran.stdout + &ran.stderr));
    };
    view(&["runs"]);
    view(&["runs", "--json"]);
    for run in RUNS {
        for step in STEPS {
            view(&["explain", run, step]);
            view(&["explain", run, step, "--json"]);
        }
    }
    for run in RUNS {
        view(&["lineage", run, "--json"]);
    }
    for other in &RUNS[1..] {
        view(&["diff", RUNS[0], other]);
        view(&["diff", RUNS[0], other, "--json"]);
    }
    out
}

fn assert_same(
    what: &str,
    got: &[(String, Option<i32>, String)],
    want: &[(String, Option<i32>, String)],
) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: `pipeline {}` differs", w.0);
        assert_eq!(w.1, Some(0), "`pipeline {}` failed: {}", w.0, w.2);
    }
}

#[test]
fn seed_store_goes_to_postgres_and_s3_and_back() {
    let Some(db) = fresh_database("store_copy") else {
        return;
    };
    let Some(prefix) = fresh_prefix("store-copy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let back = dir.path().join("back");
    let home = dir.path().join("home");
    seed_store(&original);
    let local = |store: &Path| {
        let store = store.to_path_buf();
        move |args: &[&str]| {
            let mut all = vec!["--store", store.to_str().unwrap()];
            all.extend_from_slice(args);
            run_with_env(&all, &[])
        }
    };
    let env = [
        ("PIPELINE_METADATA", OsStr::new(&db.url)),
        ("PIPELINE_ARTIFACTS", OsStr::new(&prefix)),
        ("PIPELINE_HOME", home.as_os_str()),
    ];
    let remote = |args: &[&str]| run_with_env(args, &env);
    local(&original)(&["pin", RUNS[1]]).ok();
    let before = views(&local(&original));

    // Local -> PostgreSQL + S3.
    let copy = local(&original)(&[
        "store",
        "copy",
        "--to-metadata",
        &db.url,
        "--to-artifacts",
        &prefix,
    ]);
    let (stdout, stderr) = (copy.stdout.clone(), copy.stderr.clone());
    copy.ok();
    assert!(
        stdout.starts_with("copied 4 runs, "),
        "{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("; 0 runs, "), "{stdout}");
    assert!(stderr.contains("[4/4] run `seed-failed`"), "{stderr}");
    if let Some(password) = url::Url::parse(&db.url).unwrap().password() {
        assert!(!stderr.contains(password), "the password leaked: {stderr}");
        assert!(!stdout.contains(password), "the password leaked: {stdout}");
    }
    assert!(remote(&["verify"]).ok().contains(": no problems."));
    assert!(local(&original)(&["verify"])
        .ok()
        .contains(": no problems."));
    assert_same("PostgreSQL + S3", &views(&remote), &before);

    // Again: everything is there, nothing is copied or duplicated.
    let again = local(&original)(&[
        "store",
        "copy",
        "--to-metadata",
        &db.url,
        "--to-artifacts",
        &prefix,
    ])
    .ok();
    assert!(
        again.starts_with("copied 0 runs, 0 artifacts (0.0 MB); 4 runs, "),
        "{again}"
    );
    let json = local(&original)(&[
        "store",
        "copy",
        "--to-metadata",
        &db.url,
        "--to-artifacts",
        &prefix,
        "--json",
    ])
    .json();
    assert_eq!(json["runs_copied"], 0, "{json}");
    assert_eq!(json["runs_present"], 4, "{json}");
    assert_eq!(json["failed"], serde_json::json!([]), "{json}");
    assert_same("PostgreSQL + S3, copied twice", &views(&remote), &before);

    // PostgreSQL + S3 -> a new local folder.
    let back_again = remote(&["store", "copy", "--to", back.to_str().unwrap()]).ok();
    assert!(back_again.starts_with("copied 4 runs, "), "{back_again}");
    assert!(local(&back)(&["verify"]).ok().contains(": no problems."));
    assert_same("back in a local folder", &views(&local(&back)), &before);
    // The pin came along.
    let db_back = rusqlite::Connection::open(back.join("metadata.sqlite")).unwrap();
    let mut pinned: Vec<(String, bool)> = db_back
        .prepare("SELECT name, pinned FROM runs")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    pinned.sort();
    assert_eq!(
        pinned,
        [
            (RUNS[1].to_string(), true),
            (RUNS[3].to_string(), false),
            (RUNS[0].to_string(), false),
            (RUNS[2].to_string(), false),
        ]
    );

    // The copy loads: the cached run's accuracy, through the copied bytes.
    let back_store = Store::open(&back).unwrap();
    let accuracy: f64 = back_store.load(RUNS[1], "evaluator", "output").unwrap();
    let original_accuracy: f64 = Store::open(&original)
        .unwrap()
        .load(RUNS[1], "evaluator", "output")
        .unwrap();
    assert_eq!(accuracy, original_accuracy);
}

#[test]
fn copy_refuses_the_source_itself_a_missing_or_newer_target_and_names_a_corrupt_blob() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    digits_pipeline(0.256, DEFAULT_C, Some(100), true)
        .store_path(&original)
        .run_name("only")
        .run()
        .unwrap();
    let store = original.to_str().unwrap();
    let err = run_with_env(&["--store", store, "store", "copy", "--to", store], &[]).fails();
    assert!(err.contains("the target is the source"), "{err}");
    let ran = run_with_env(&["--store", store, "store", "copy"], &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("--to"), "{}", ran.stderr);
    let ran = run_with_env(
        &[
            "--store",
            store,
            "store",
            "copy",
            "--to-metadata",
            "sqlite:/tmp/x/metadata.sqlite",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("--to-artifacts"), "{}", ran.stderr);

    // A target written by a newer version.
    let newer = dir.path().join("newer");
    drop(Store::open(&newer).unwrap());
    rusqlite::Connection::open(newer.join("metadata.sqlite"))
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let err = run_with_env(
        &[
            "--store",
            store,
            "store",
            "copy",
            "--to",
            newer.to_str().unwrap(),
        ],
        &[],
    )
    .fails();
    assert!(err.contains("newer than"), "{err}");

    // A corrupt blob: its run is named and not copied, the command exits with 1.
    let source = Store::open(&original).unwrap();
    let steps = source.run_steps("only").unwrap();
    let evaluator = steps.iter().find(|s| s.name == "evaluator").unwrap();
    let blob = source.blob_path(evaluator.outputs[0].content_hash);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let target = dir.path().join("target");
    let ran = run_with_env(
        &[
            "--store",
            store,
            "store",
            "copy",
            "--to",
            target.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stdout.starts_with("copied 0 runs, ") && ran.stdout.contains("; 1 run failed"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("run `only`")
            && ran.stderr.contains("not copied: blob ")
            && ran.stderr.contains("is corrupt"),
        "{}",
        ran.stderr
    );
    let listed = run_with_env(&["--store", target.to_str().unwrap(), "runs"], &[]).ok();
    assert!(!listed.contains("only"), "{listed}");
}
