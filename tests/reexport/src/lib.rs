//! Re-exports `pipeline` as `reexport::pl`, the way a framework built on `pipeline` would.
//! Its tests use `#[step(crate = ::reexport::pl)]` and friends; see `tests/crate_path.rs`.

pub use upstream as pl;

/// Steps defined inside the re-exporting crate itself reach the library via `crate::pl`.
pub mod steps {
    use crate::pl::prelude::*;

    /// Doubles every value.
    #[step(crate = crate::pl)]
    pub fn double(xs: Vec<f64>) -> Vec<f64> {
        xs.into_iter().map(|x| x * 2.0).collect()
    }
}
