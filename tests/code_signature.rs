//! What a step's code signature is made of, seen from one binary: the module that defines
//! the step, the values of the constants its body names, and included files (hashed at
//! compile time when small, at run time when large). Edits and rebuilds are in
//! `tests/rebuild.rs`.

use pipeline::prelude::*;

mod celsius {
    use pipeline::prelude::*;

    const OFFSET: f64 = 0.0;

    #[step]
    pub fn convert(x: f64) -> f64 {
        x + OFFSET
    }
}

mod kelvin {
    use pipeline::prelude::*;

    const OFFSET: f64 = 273.15;

    #[step]
    pub fn convert(x: f64) -> f64 {
        x + OFFSET
    }
}

#[pipeline]
fn to_celsius(x: f64) -> Artifact<f64> {
    celsius::convert(x)
}

#[pipeline]
fn to_kelvin(x: f64) -> Artifact<f64> {
    kelvin::convert(x)
}

// Over 4 KiB: hashed once per process at run time.
#[step]
fn readme_len() -> usize {
    include_str!("../README.md").len()
}

// Under 4 KiB: hashed at compile time.
#[step]
fn manifest_len() -> usize {
    include_str!("../pipeline-macros/Cargo.toml").len()
}

#[test]
fn two_steps_of_the_same_name_in_two_modules_never_share_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = to_celsius(20.0).store_path(dir.path()).run().unwrap();
    assert_eq!(c.output().load().unwrap(), 20.0);

    let k = to_kelvin(20.0).store_path(dir.path()).run().unwrap();
    assert_eq!(k.output().load().unwrap(), 293.15);
    let step = k.step("convert").unwrap();
    assert_eq!(step.status(), StepStatus::Executed);
    // The other module's step is the nearest earlier execution: the reason names the module
    // first, then what else differs from it (the constant's value).
    assert_eq!(
        step.reason().to_string(),
        "a step of this name in another module ran before (`code_signature::celsius`, now \
         `code_signature::kelvin`); value of `OFFSET` changed"
    );
    assert_ne!(step.cache_key(), c.step("convert").unwrap().cache_key());

    // Each is reused by itself.
    let k = to_kelvin(20.0).store_path(dir.path()).run().unwrap();
    assert_eq!(k.step("convert").unwrap().status(), StepStatus::Cached);
    assert_eq!(k.output().load().unwrap(), 293.15);
    let c = to_celsius(20.0).store_path(dir.path()).run().unwrap();
    assert_eq!(c.step("convert").unwrap().status(), StepStatus::Cached);
    assert_eq!(c.output().load().unwrap(), 20.0);
}

#[test]
fn the_values_of_constants_a_body_names_enter_the_run_time_signature() {
    // The same tokens give the same compile-time signature...
    assert_eq!(celsius::convert::SIGNATURE, kelvin::convert::SIGNATURE);
    // ...and the constant's value tells them apart.
    assert_ne!(celsius::convert::signature(), kelvin::convert::signature());
    let parts = &kelvin::convert::__PL_STEP.code().parts;
    assert!(
        parts.iter().any(|p| p.label() == "value of `OFFSET`"),
        "{parts:?}"
    );
}

#[test]
fn large_included_files_are_hashed_at_run_time_and_small_ones_at_compile_time() {
    assert_ne!(readme_len::signature(), readme_len::SIGNATURE);
    assert_eq!(manifest_len::signature(), manifest_len::SIGNATURE);
    let parts = &readme_len::__PL_STEP.code().parts;
    let labels: Vec<String> = parts.iter().map(|p| p.label()).collect();
    assert_eq!(labels, ["step body", "included file `../README.md`"]);
    // The recorded value is the content hash of the file as compiled in.
    let hash = format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(include_bytes!("../README.md"))
    );
    assert_eq!(parts[1].value, hash);
}

#[test]
fn the_store_records_the_module_and_the_parts_beside_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = to_kelvin(1.0).store_path(dir.path()).run().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let steps = store.run_steps(run.id()).unwrap();
    let components = &steps[0].components;
    assert_eq!(components.module, "code_signature::kelvin");
    assert_eq!(
        components.code_signature,
        format!("{:016x}", kelvin::convert::signature())
    );
    let labels: Vec<String> = components.code_parts.iter().map(|p| p.label()).collect();
    assert_eq!(labels, ["step body", "value of `OFFSET`"]);
}
