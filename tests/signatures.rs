//! Code signatures hash tokens, not text: reformatting a step or editing its comments and
//! doc comments keeps its `SIGNATURE` (so it stays cached), and a one-token change gives a
//! new one.

mod tidy {
    use pipeline::prelude::*;

    #[step(outputs(low, high))]
    pub fn split(xs: Vec<f64>, at: f64) -> (Vec<f64>, Vec<f64>) {
        xs.into_iter().partition(|&x| x < at)
    }

    #[step]
    pub fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    }
}

// The same tokens, laid out differently, with comments and doc comments added.
#[rustfmt::skip]
mod messy {
    use pipeline::prelude::*;

    /// Splits values at a threshold.
    ///
    /// Doc comments are not part of the signature.
    #[step(  outputs( low,high ) )]
    pub fn split(
        xs: Vec<f64>,      // the values
        at: f64            /* the threshold */
    ) -> ( Vec<f64>, Vec<f64> )
    {
        // Comments are not tokens.
        xs.into_iter()
          .partition(
              |&x| x < at
          )
    }

    #[doc = "An attribute-style doc comment is ignored too."]
    #[step]
    pub fn mean(xs:&[f64])->f64{xs.iter().sum::<f64>()/xs.len().max(1) as f64}
}

// One token changed in each step.
mod edited {
    use pipeline::prelude::*;

    #[step(outputs(low, high))]
    pub fn split(xs: Vec<f64>, at: f64) -> (Vec<f64>, Vec<f64>) {
        xs.into_iter().partition(|&x| x <= at)
    }

    #[step]
    pub fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len().max(2) as f64
    }
}

// The same step with a `version` salt.
mod bumped {
    use pipeline::prelude::*;

    #[step]
    pub fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    }

    #[step(version = "2")]
    pub fn mean_v2(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    }
}

#[test]
fn formatting_comments_and_doc_comments_keep_the_signature() {
    assert_eq!(tidy::split::SIGNATURE, messy::split::SIGNATURE);
    assert_eq!(tidy::mean::SIGNATURE, messy::mean::SIGNATURE);
}

#[test]
fn one_changed_token_gives_a_new_signature() {
    assert_ne!(tidy::split::SIGNATURE, edited::split::SIGNATURE);
    assert_ne!(tidy::mean::SIGNATURE, edited::mean::SIGNATURE);
}

#[test]
fn different_steps_have_different_signatures() {
    assert_ne!(tidy::split::SIGNATURE, tidy::mean::SIGNATURE);
}

#[test]
fn the_module_path_is_not_part_of_the_signature() {
    assert_eq!(tidy::mean::SIGNATURE, bumped::mean::SIGNATURE);
}

#[test]
fn a_version_salt_changes_the_signature() {
    // `mean_v2` differs from `mean` by its name and its `version`; compare it with a
    // step that differs by the name only to see the salt's own effect.
    mod renamed {
        use pipeline::prelude::*;
        #[step]
        pub fn mean_v2(xs: &[f64]) -> f64 {
            xs.iter().sum::<f64>() / xs.len().max(1) as f64
        }
    }
    assert_ne!(renamed::mean_v2::SIGNATURE, bumped::mean_v2::SIGNATURE);
}
