//! `#[helper]` signatures fold into the steps that `uses = [..]` them, transitively: editing
//! a helper's body changes the `SIGNATURE` of every step that uses it, directly or through
//! another helper, and of no other step; a run then re-executes exactly those steps.
//!
//! Modules `v1`, `v2` and `v3` hold the same items token for token, except for one token:
//! `v2` edits `clip` (two levels below `transform`), `v3` edits `scale` (one level below).
//! `copy` is `v1` again.

/// The shared shape of the modules; `$clip_hi` and `$factor` are the edited tokens.
macro_rules! project {
    ($clip_hi:literal, $factor:literal) => {
        use pipeline::prelude::*;

        /// Level 2: used by `scale` only.
        #[helper]
        pub fn clip(x: f64) -> f64 {
            x.clamp(0.0, $clip_hi)
        }

        /// Level 1: used by `transform`.
        #[helper(uses = [clip])]
        pub fn scale(x: f64) -> f64 {
            clip(x * $factor)
        }

        /// Uses no helper.
        #[helper]
        pub fn describe(n: usize) -> String {
            format!("{n} values")
        }

        #[step(uses = [scale])]
        pub fn transform(xs: Vec<f64>) -> Vec<f64> {
            xs.into_iter().map(scale).collect()
        }

        #[step(uses = [describe])]
        pub fn summary(xs: &[f64]) -> String {
            describe(xs.len())
        }

        #[step]
        pub fn total(xs: &[f64]) -> f64 {
            xs.iter().sum()
        }

        #[pipeline(name = "helpers")]
        pub fn helpers(xs: Vec<f64>) -> (Artifact<f64>, Artifact<String>) {
            let scaled = transform(xs);
            (total(&scaled), summary(&scaled))
        }
    };
}

mod v1 {
    project!(1.0, 2.0);
}

// Only their signatures are compared: their wiring functions are never called.
#[allow(dead_code)]
mod v2 {
    project!(0.5, 2.0);
}

#[allow(dead_code)]
mod v3 {
    project!(1.0, 3.0);
}

// The same tokens as `v1` in another module.
mod copy {
    project!(1.0, 2.0);
}

#[test]
fn identical_tokens_give_identical_signatures() {
    assert_eq!(v1::clip::SIGNATURE, copy::clip::SIGNATURE);
    assert_eq!(v1::scale::SIGNATURE, copy::scale::SIGNATURE);
    assert_eq!(v1::transform::SIGNATURE, copy::transform::SIGNATURE);
    assert_eq!(v1::summary::SIGNATURE, copy::summary::SIGNATURE);
    assert_eq!(v1::total::SIGNATURE, copy::total::SIGNATURE);
}

#[test]
fn editing_a_helper_two_levels_down_changes_the_step() {
    assert_ne!(v1::clip::SIGNATURE, v2::clip::SIGNATURE);
    assert_ne!(
        v1::scale::SIGNATURE,
        v2::scale::SIGNATURE,
        "scale uses clip"
    );
    assert_ne!(
        v1::transform::SIGNATURE,
        v2::transform::SIGNATURE,
        "transform uses scale, which uses clip"
    );
}

#[test]
fn editing_a_helper_one_level_down_changes_the_step_only() {
    assert_eq!(
        v1::clip::SIGNATURE,
        v3::clip::SIGNATURE,
        "clip is unchanged"
    );
    assert_ne!(v1::scale::SIGNATURE, v3::scale::SIGNATURE);
    assert_ne!(v1::transform::SIGNATURE, v3::transform::SIGNATURE);
}

#[test]
fn steps_that_do_not_use_the_helper_keep_their_signature() {
    for (a, b) in [
        (v1::summary::SIGNATURE, v2::summary::SIGNATURE),
        (v1::summary::SIGNATURE, v3::summary::SIGNATURE),
        (v1::total::SIGNATURE, v2::total::SIGNATURE),
        (v1::total::SIGNATURE, v3::total::SIGNATURE),
        (v1::describe::SIGNATURE, v2::describe::SIGNATURE),
    ] {
        assert_eq!(a, b);
    }
}

#[test]
fn a_step_signature_differs_from_its_own_tokens_when_it_uses_helpers() {
    // The helper signatures are folded in, not ignored: the same step without `uses`
    // would hash its tokens only, and `transform` differs between v1 and v2 only through
    // `clip`.
    assert_ne!(v1::transform::SIGNATURE, v1::scale::SIGNATURE);
    assert_ne!(v1::transform::SIGNATURE, v1::clip::SIGNATURE);
}

#[test]
fn a_run_reuses_nothing_from_the_same_steps_of_another_module() {
    use pipeline::prelude::*;

    // `v1` and `copy` hold the same tokens, so the same signatures, but they are different
    // steps: the module path is part of each step's identity in the key. (Editing a helper
    // and rebuilding, which is what this module pair used to stand for, is exercised for
    // real in `tests/rebuild.rs`.)
    let dir = tempfile::tempdir().expect("temp dir");
    let xs = vec![0.1, 0.2, 0.25];
    let first = v1::helpers(xs.clone())
        .store_path(dir.path())
        .run()
        .unwrap();
    assert!(first
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Executed));
    let total = first.output().0.load().unwrap();
    assert!((total - 1.1).abs() < 1e-9, "{total}");

    let again = v1::helpers(xs.clone())
        .store_path(dir.path())
        .run()
        .unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));

    let other = copy::helpers(xs).store_path(dir.path()).run().unwrap();
    for step in other.steps() {
        assert_eq!(step.status(), StepStatus::Executed, "{}", step.name());
        assert_eq!(
            step.reason(),
            &Reason::ModuleChanged {
                old: "helpers::v1".into(),
                new: "helpers::copy".into()
            }
        );
    }
}
