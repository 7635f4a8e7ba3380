//! Errors keep their causes: `std::error::Error::source()` reaches the error a step body
//! returned, the I/O error a cacher failed with, and the encoder's error for a parameter;
//! wiring mistakes in a pipeline body are `Error::Graph`.

mod common;

use std::cell::RefCell;
use std::error::Error as _;
use std::io::{Read, Write};

use common::temp_store;
use pipeline::canonical::CanonicalError;
use pipeline::prelude::*;
use pipeline::BoxError;
use serde::{Deserialize, Serialize, Serializer};

/// A step's own error type, with a cause of its own.
#[derive(Debug)]
struct SensorError {
    sensor: u32,
    cause: std::io::Error,
}

impl std::fmt::Display for SensorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sensor {} is offline", self.sensor)
    }
}

impl std::error::Error for SensorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// An error type that is only `Display`: steps may still return it.
#[derive(Debug)]
struct JustText;

impl std::fmt::Display for JustText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("only text")
    }
}

#[step]
fn read_sensor(sensor: u32) -> Result<f64, SensorError> {
    Err(SensorError {
        sensor,
        cause: std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply in 5s"),
    })
}

#[step]
fn textual() -> Result<u32, JustText> {
    Err(JustText)
}

#[pipeline]
fn sensor_pipeline() -> Artifact<f64> {
    read_sensor(7)
}

#[pipeline]
fn textual_pipeline() -> Artifact<u32> {
    textual()
}

/// Every error in the chain below `err`, outermost first.
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e);
        next = e.source();
    }
    out
}

#[test]
fn step_failed_keeps_the_error_the_step_returned() {
    let (_dir, store) = temp_store();
    let err = sensor_pipeline().store(store).run().unwrap_err();
    let Error::StepFailed { step, message, .. } = &err else {
        panic!("expected StepFailed, got {err:?}")
    };
    assert_eq!(step, "read_sensor");
    assert_eq!(message, "sensor 7 is offline");
    assert!(err.to_string().ends_with(": sensor 7 is offline"), "{err}");

    let sources = chain(&err);
    let sensor = sources
        .iter()
        .find_map(|e| e.downcast_ref::<SensorError>())
        .unwrap_or_else(|| panic!("no SensorError in the chain of {err:?}"));
    assert_eq!(sensor.sensor, 7);
    let io = sources
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("no io::Error in the chain of {err:?}"));
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn a_display_only_step_error_keeps_its_text() {
    let (_dir, store) = temp_store();
    let err = textual_pipeline().store(store).run().unwrap_err();
    let Error::StepFailed {
        message, source, ..
    } = &err
    else {
        panic!("expected StepFailed, got {err:?}")
    };
    assert_eq!(message, "only text");
    assert!(source.is_none(), "{source:?}");
}

#[step]
fn boom() -> u32 {
    panic!("boom")
}

#[pipeline]
fn booming() -> Artifact<u32> {
    boom()
}

#[test]
fn a_panicking_step_has_no_source() {
    let (_dir, store) = temp_store();
    let err = booming().store(store).run().unwrap_err();
    assert!(
        matches!(&err, Error::StepFailed { message, source: None, .. } if message == "panicked: boom"),
        "{err:?}"
    );
}

/// Fails with an I/O error when saving and when loading.
#[derive(Default)]
struct Unwritable;

impl Cacher<u32> for Unwritable {
    fn id(&self) -> &str {
        "unwritable"
    }
    fn save(&self, _: &u32, _: &mut dyn Write) -> Result<(), BoxError> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "device is write-protected",
        )
        .into())
    }
    fn load(&self, _: &mut dyn Read) -> Result<u32, BoxError> {
        Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated").into())
    }
}

#[step(cacher = Unwritable)]
fn unsaved() -> u32 {
    1
}

#[pipeline]
fn unsaved_pipeline() -> Artifact<u32> {
    unsaved()
}

#[test]
fn a_cacher_save_error_is_the_source_of_the_step_failure() {
    let (_dir, store) = temp_store();
    let err = unsaved_pipeline().store(store).run().unwrap_err();
    assert!(matches!(&err, Error::StepFailed { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with(
            "cacher `unwritable` could not save output `output`: device is write-protected"
        ),
        "{err}"
    );
    let Some(Error::Cacher {
        cacher,
        action,
        what,
        ..
    }) = err.source().and_then(|s| s.downcast_ref::<Error>())
    else {
        panic!("the source is not an Error::Cacher: {err:?}")
    };
    assert_eq!(
        (cacher.as_str(), *action, what.as_str()),
        ("unwritable", "save", "output `output`")
    );
    let io = chain(&err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("no io::Error in the chain of {err:?}"));
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
}

#[step]
fn stored() -> u32 {
    41
}

#[pipeline]
fn stored_pipeline() -> Artifact<u32> {
    stored()
}

#[test]
fn a_cacher_load_error_is_the_source_of_error_cacher() {
    let (_dir, store) = temp_store();
    let run = stored_pipeline().store(store.clone()).run().unwrap();
    // The bytes were written by bincode; a cacher that fails to read them says why.
    let artifact = store.artifact(run.name(), "stored", "output").unwrap();
    let err = artifact.load_with(&Unwritable).unwrap_err();
    let Error::Cacher { action, source, .. } = &err else {
        panic!("expected Error::Cacher, got {err:?}")
    };
    assert_eq!(*action, "load");
    let io = source
        .downcast_ref::<std::io::Error>()
        .unwrap_or_else(|| panic!("the source is not an io::Error: {source:?}"));
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().ends_with(": truncated"), "{err}");
}

/// A parameter whose `Serialize` impl fails.
#[derive(Debug, Clone, Deserialize)]
struct Secret(u32);

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("secrets are not serializable"))
    }
}

#[step]
fn use_secret(secret: &Secret) -> u32 {
    secret.0
}

#[pipeline]
fn secret_pipeline() -> Artifact<u32> {
    use_secret(Secret(3))
}

#[test]
fn a_parameter_that_cannot_be_encoded_names_itself_and_keeps_the_cause() {
    let (_dir, store) = temp_store();
    let err = secret_pipeline().store(store).run().unwrap_err();
    let Error::Parameter { step, name, source } = &err else {
        panic!("expected Error::Parameter, got {err:?}")
    };
    assert_eq!((step.as_str(), name.as_str()), ("use_secret", "secret"));
    let canonical = source
        .downcast_ref::<CanonicalError>()
        .unwrap_or_else(|| panic!("the source is not a CanonicalError: {source:?}"));
    assert!(
        canonical.0.contains("secrets are not serializable"),
        "{canonical:?}"
    );
    assert!(
        err.to_string()
            .starts_with("parameter `secret` of step `use_secret` cannot be encoded: "),
        "{err}"
    );
}

thread_local! {
    static LEAKED: RefCell<Option<Artifact<u32>>> = const { RefCell::new(None) };
}

#[step]
fn plus_one(x: &u32) -> u32 {
    x + 1
}

#[pipeline]
fn leaking() -> Artifact<u32> {
    let x = stored();
    LEAKED.with(|l| *l.borrow_mut() = Some(x.clone()));
    x
}

#[pipeline]
fn borrowing() -> Artifact<u32> {
    let foreign = LEAKED
        .with(|l| l.borrow_mut().take())
        .expect("`leaking` was built first");
    plus_one(&foreign)
}

#[test]
fn an_artifact_of_another_pipeline_is_a_graph_error() {
    let (_dir, store) = temp_store();
    let _first = leaking();
    let err = borrowing().store(store).run().unwrap_err();
    let Error::Graph { pipeline, problem } = &err else {
        panic!("expected Error::Graph, got {err:?}")
    };
    assert_eq!(pipeline, "borrowing");
    assert!(
        problem.contains("input `x` of step `plus_one` is an artifact of another pipeline"),
        "{problem}"
    );
    assert!(!err.to_string().contains("(pipeline body)"), "{err}");
}

/// Sets a stored text by hand, as a newer version or a hand edit would.
fn overwrite(store: &Store, sql: &str) {
    let db = rusqlite::Connection::open(store.path().join("metadata.sqlite")).unwrap();
    assert!(db.execute(sql, []).unwrap() > 0, "{sql} changed no row");
}

#[test]
fn an_unknown_stored_step_status_is_an_error_not_a_default() {
    let (_dir, store) = temp_store();
    let run = stored_pipeline().store(store.clone()).run().unwrap();
    overwrite(&store, "UPDATE executions SET status = 'paused'");
    let err = store.run_steps(run.name()).unwrap_err();
    let Error::UnknownStoredValue { what, value, .. } = &err else {
        panic!("expected Error::UnknownStoredValue, got {err:?}")
    };
    assert_eq!((*what, value.as_str()), ("step status", "paused"));
    assert!(
        err.to_string()
            .contains("holds unknown step status `paused`"),
        "{err}"
    );
}

#[test]
fn an_unknown_stored_run_status_is_an_error_not_a_default() {
    let (_dir, store) = temp_store();
    stored_pipeline().store(store.clone()).run().unwrap();
    overwrite(&store, "UPDATE runs SET status = 'archived'");
    let err = store.runs(None).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownStoredValue { what: "run status", value, .. } if value == "archived"),
        "{err:?}"
    );
}

#[test]
fn unknown_stored_key_components_are_an_error_not_an_empty_record() {
    let (_dir, store) = temp_store();
    let run = stored_pipeline().store(store.clone()).run().unwrap();
    overwrite(
        &store,
        r#"UPDATE executions SET components = '{"format": 99, "inputs": [{"kind": "future"}]}'"#,
    );
    let err = store.run_steps(run.name()).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownStoredValue { what: "key components", value, .. } if value.contains("future")),
        "{err:?}"
    );
}
