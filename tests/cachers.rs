//! Cachers: round trips, cacher identity in the key, file references, lazy handles, and
//! inline loading.

mod common;

#[allow(dead_code)]
#[path = "../examples/custom_cacher.rs"]
mod custom_cacher;

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use common::{status_of, temp_store};
use pipeline::cacher::{FileRef, Files, Raw};
use pipeline::prelude::*;
use pipeline::{BoxError, Reason};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Metrics {
    accuracy: f64,
    per_class: BTreeMap<String, f64>,
}

fn metrics() -> Metrics {
    Metrics {
        accuracy: 0.975,
        per_class: [("cat".to_string(), 0.5), ("dog".to_string(), 1.0 / 3.0)].into(),
    }
}

#[step(outputs(model, report), cacher(report = Json))]
fn train(seed: u64) -> (Vec<u64>, Metrics) {
    (vec![seed, seed * 2], metrics())
}

#[step(cacher = Raw)]
fn embed(n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    v.push(f32::from_bits(0x7fc0_0001)); // a NaN with a payload
    v.push(-0.0);
    v
}

#[step(cacher = custom_cacher::CsvHistogram)]
fn histogram() -> custom_cacher::Histogram {
    custom_cacher::Histogram {
        edges: vec![0.0, 0.1, 1.0 / 3.0],
        counts: vec![3, 0, 7],
    }
}

#[pipeline]
fn every_cacher() -> (
    train::Outputs,
    Artifact<Vec<f32>>,
    Artifact<custom_cacher::Histogram>,
) {
    (train(21), embed(10), histogram())
}

#[test]
fn every_built_in_and_custom_cacher_round_trips() {
    let (_dir, store) = temp_store();
    let run = every_cacher().store(store.clone()).run().unwrap();
    let (trained, embedded, hist) = run.output();

    assert_eq!(trained.model.load().unwrap(), vec![21, 42]);
    assert_eq!(trained.report.load().unwrap(), metrics());
    // The JSON cacher writes human-browsable JSON.
    let text = fs::read_to_string(trained.report.path().unwrap()).unwrap();
    assert!(text.contains("\"accuracy\": 0.975"), "{text}");

    let floats = embedded.load().unwrap();
    let expected = embed::call(10);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&floats), bits(&expected), "raw is bit-exact");

    assert_eq!(hist.load().unwrap(), histogram::call());
    let csv = fs::read_to_string(hist.path().unwrap()).unwrap();
    assert!(csv.starts_with("edge,count\n0.0,3\n"), "{csv}");

    // Each output records its cacher, and a sidecar JSON describes the blob.
    let steps = store.run_steps(run.id()).unwrap();
    let cachers: Vec<&str> = steps
        .iter()
        .flat_map(|s| s.outputs.iter().map(|o| o.cacher.as_str()))
        .collect();
    assert_eq!(cachers, ["bincode", "json", "raw", "csv-histogram"]);
    let sidecar = hist.path().unwrap().with_extension("json");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(sidecar).unwrap()).unwrap();
    assert_eq!(doc["cacher"], "csv-histogram");
    assert_eq!(doc["metadata"]["total"], 10);
    assert_eq!(doc["produced_by"]["step"], "histogram");
}

#[test]
fn inline_save_and_load_by_hash() {
    let (_dir, store) = temp_store();
    let hash = store.save_blob(&vec![1.5f64, -0.0], &Raw).unwrap();
    let back: Vec<f64> = store.load_blob(hash, &Raw).unwrap();
    assert_eq!(back[0], 1.5);
    assert!(back[1].is_sign_negative());
    let wrong = store.load_blob::<Vec<f32>, _>(hash, &Raw).unwrap_err();
    assert!(matches!(wrong, Error::Cacher { .. }), "{wrong:?}");
    assert!(
        wrong.to_string().contains("blob holds `f64` elements"),
        "{wrong}"
    );

    let run = every_cacher().store(store.clone()).run().unwrap();
    let model_hash = run.output().0.model.content_hash().unwrap();
    let model: Vec<u64> = store.artifact_by_hash(model_hash).unwrap().load().unwrap();
    assert_eq!(model, vec![21, 42]);
    let report: Metrics = store.load(run.name(), "train", "report").unwrap();
    assert_eq!(report, metrics());
}

#[test]
fn a_stored_artifact_is_found_by_run_step_output_or_hash_and_loads_typed() {
    let (_dir, store) = temp_store();
    let run = every_cacher().store(store.clone()).run().unwrap();
    let (trained, embedded, hist) = run.output();

    // By run, step and output: the record and where it came from.
    let report = store.artifact(run.name(), "train", "report").unwrap();
    assert_eq!(report.name(), "report");
    assert_eq!(report.step(), "train");
    assert_eq!(report.cacher(), "json");
    assert_eq!(
        report.content_hash(),
        trained.report.content_hash().unwrap()
    );
    assert_eq!(report.path(), trained.report.path().unwrap());
    assert_eq!(report.size(), trained.report.size().unwrap());
    assert_eq!(report.record().type_name, report.type_name());
    let execution = run.step("train").unwrap().execution_id().unwrap();
    assert_eq!(report.execution_id(), execution);
    // Built-in cachers load with `load`, any cacher with `load_with`.
    assert_eq!(report.load::<Metrics>().unwrap(), metrics());
    assert_eq!(report.load_with::<Metrics, _>(&Json).unwrap(), metrics());
    assert_eq!(
        store.load::<Metrics>(run.id(), "train", "report").unwrap(),
        metrics()
    );

    // By content hash: the same artifact, as typed.
    let by_hash = store.artifact_by_hash(report.content_hash()).unwrap();
    assert_eq!(by_hash.record().content_hash, report.content_hash());
    assert_eq!((by_hash.step(), by_hash.name()), ("train", "report"));
    assert_eq!(by_hash.load::<Metrics>().unwrap(), metrics());

    // A custom cacher is named in the error of `load`, and works through `load_with`.
    let raw = store
        .artifact_by_hash(embedded.content_hash().unwrap())
        .unwrap();
    let err = raw.load::<Vec<f32>>().unwrap_err();
    assert!(
        matches!(&err, Error::Cacher { cacher, .. } if cacher == "raw"),
        "{err:?}"
    );
    assert!(err.to_string().contains("load_with"), "{err}");
    assert_eq!(raw.load_with::<Vec<f32>, _>(&Raw).unwrap().len(), 12);
    let csv = store.artifact(run.id(), "histogram", "output").unwrap();
    assert_eq!(
        csv.load_with(&custom_cacher::CsvHistogram).unwrap(),
        hist.load().unwrap()
    );

    // The wrong type is refused before any byte is decoded, naming both types.
    let err = report.load::<Vec<u64>>().unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    let err = report.load_with(&Bincode).map(|_: u8| ()).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
}

#[test]
fn lookup_errors_are_distinct_variants() {
    let (_dir, store) = temp_store();
    let run = every_cacher().store(store.clone()).run().unwrap();
    let wrong_type = store
        .load::<String>(run.id(), "train", "model")
        .unwrap_err();
    assert!(
        matches!(wrong_type, Error::TypeMismatch { .. }),
        "{wrong_type:?}"
    );
    let unknown_run = store
        .load::<u64>("no-such-run", "train", "model")
        .unwrap_err();
    assert!(
        matches!(unknown_run, Error::UnknownRun(_)),
        "{unknown_run:?}"
    );
    assert!(unknown_run.to_string().contains("Store::runs"));
    let unknown_hash = store
        .artifact_by_hash("00000000000000000000000000000000".parse().unwrap())
        .unwrap_err();
    assert!(
        matches!(unknown_hash, Error::UnknownArtifact(_)),
        "{unknown_hash:?}"
    );
    let unknown_step = store.load::<u64>(run.id(), "nope", "output").unwrap_err();
    assert!(
        matches!(unknown_step, Error::UnknownStep { .. }),
        "{unknown_step:?}"
    );
}

// A cacher whose version can change, to show that the version enters the key.
static FORMAT_VERSION: AtomicU32 = AtomicU32::new(1);

#[derive(Default)]
struct Versioned;

impl Cacher<u32> for Versioned {
    fn id(&self) -> &str {
        "versioned"
    }
    fn version(&self) -> u32 {
        FORMAT_VERSION.load(SeqCst)
    }
    fn save(&self, v: &u32, out: &mut dyn std::io::Write) -> Result<(), BoxError> {
        out.write_all(&v.to_le_bytes())?;
        Ok(())
    }
    fn load(&self, input: &mut dyn std::io::Read) -> Result<u32, BoxError> {
        let mut b = [0u8; 4];
        input.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

#[step(cacher = Versioned)]
fn versioned_value() -> u32 {
    42
}

#[pipeline]
fn versioned() -> Artifact<u32> {
    versioned_value()
}

#[test]
fn a_new_cacher_version_reexecutes_the_step() {
    let (_dir, store) = temp_store();
    // The cacher's version is read when the pipeline is built.
    let build = || versioned().store(store.clone());
    build().run().unwrap();
    assert_eq!(
        status_of(&build().run().unwrap(), "versioned_value"),
        StepStatus::Cached
    );
    FORMAT_VERSION.store(2, SeqCst);
    let run = build().run().unwrap();
    assert_eq!(status_of(&run, "versioned_value"), StepStatus::Executed);
    assert_eq!(
        run.step("versioned_value").unwrap().reason(),
        &Reason::DeclarationChanged
    );
    assert_eq!(run.output().load().unwrap(), 42);
}

// File references: the key follows the bytes of the referenced directory.
#[step]
fn directory_size(data: &FileRef) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(data.path()).unwrap() {
        total += entry.unwrap().metadata().unwrap().len();
    }
    total
}

#[pipeline]
fn file_input(dir: std::path::PathBuf) -> Artifact<u64> {
    directory_size(FileRef::new(dir))
}

#[test]
fn a_changed_byte_or_name_in_a_referenced_directory_reexecutes_the_consumer() {
    let (dir, store) = temp_store();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.csv"), "1,2,3\n").unwrap();
    fs::write(data.join("b.csv"), "4,5,6\n").unwrap();
    let run = |store: &Store| file_input(data.clone()).store(store.clone()).run().unwrap();

    assert_eq!(
        status_of(&run(&store), "directory_size"),
        StepStatus::Executed
    );
    assert_eq!(
        status_of(&run(&store), "directory_size"),
        StepStatus::Cached
    );

    // Touching mtime alone keeps the step cached.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(data.join("a.csv"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(
        status_of(&run(&store), "directory_size"),
        StepStatus::Cached
    );

    // One changed byte re-executes.
    fs::write(data.join("b.csv"), "4,5,7\n").unwrap();
    let changed = run(&store);
    assert_eq!(status_of(&changed, "directory_size"), StepStatus::Executed);
    assert!(matches!(
        changed.step("directory_size").unwrap().reason(),
        Reason::ParameterChanged { name, .. } if name == "data"
    ));

    // A rename re-executes too.
    fs::rename(data.join("b.csv"), data.join("c.csv")).unwrap();
    assert_eq!(
        status_of(&run(&store), "directory_size"),
        StepStatus::Executed
    );
}

#[step(cacher = Files)]
fn export_model(dir: std::path::PathBuf) -> FileRef {
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("weights.bin"), [1u8, 2, 3]).unwrap();
    FileRef::new(dir)
}

#[pipeline]
fn exported(dir: std::path::PathBuf) -> Artifact<FileRef> {
    export_model(dir)
}

#[test]
fn files_cacher_keeps_a_copy_that_survives_the_original() {
    let (dir, store) = temp_store();
    let out = dir.path().join("model");
    let run = exported(out.clone()).store(store).run().unwrap();
    fs::remove_dir_all(&out).unwrap();
    let copy = run.output().load().unwrap();
    assert_ne!(copy.path(), out.as_path());
    assert_eq!(
        fs::read(copy.path().join("weights.bin")).unwrap(),
        [1, 2, 3]
    );
}

// Lazy handles: a step that takes `Artifact<T>` gets the handle, not the bytes.
#[step]
fn big_blob(n: usize) -> Vec<u8> {
    vec![9; n]
}

#[step]
fn describe(blob: Artifact<Vec<u8>>) -> String {
    format!(
        "{} bytes at {}",
        blob.size().unwrap(),
        blob.content_hash().unwrap()
    )
}

#[step]
fn first_byte(blob: Artifact<Vec<u8>>) -> u8 {
    blob.load().unwrap()[0]
}

#[pipeline]
fn lazy(n: usize) -> Artifact<String> {
    let blob = big_blob(n);
    describe(&blob)
}

#[pipeline]
fn loads(n: usize) -> Artifact<u8> {
    let blob = big_blob(n);
    first_byte(&blob)
}

#[test]
fn an_unloaded_handle_reads_no_bytes() {
    let (_dir, store) = temp_store();
    let run = lazy(4096).store(store.clone()).run().unwrap();
    assert_eq!(status_of(&run, "describe"), StepStatus::Executed);
    assert_eq!(
        store.stats().blob_reads,
        0,
        "describe never loaded the blob"
    );
    let text = run.output().load().unwrap();
    // 4096 bytes plus bincode's 3-byte length prefix.
    assert!(text.starts_with("4099 bytes at "), "{text}");
    assert_eq!(
        store.stats().blob_reads,
        1,
        "only the string output was read"
    );

    let before = store.stats().blob_reads;
    let run = loads(4096).store(store.clone()).run().unwrap();
    assert_eq!(status_of(&run, "first_byte"), StepStatus::Executed);
    assert_eq!(
        store.stats().blob_reads,
        before + 1,
        "load() reads the blob once"
    );
}
