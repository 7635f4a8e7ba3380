#![deny(missing_docs, unused)]
//! Steps and helpers at module level pass the module-level check wherever the module is,
//! also inside a function body and beside a same-named step elsewhere; a pipeline may be
//! defined inside a function body.

use pipeline::prelude::*;

/// Doubles.
#[step]
pub fn double(x: u32) -> u32 {
    x * 2
}

/// Clips.
#[helper]
pub fn clip(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

/// Same names one module down.
pub mod nested {
    use pipeline::prelude::*;

    /// Doubles, differently.
    #[step(uses = [clip])]
    pub fn double(x: u32) -> u32 {
        x + x
    }

    /// Clips, differently.
    #[helper]
    pub fn clip(x: f64) -> f64 {
        x.min(1.0)
    }
}

fn main() {
    mod local {
        use pipeline::prelude::*;

        #[step]
        pub fn triple(x: u32) -> u32 {
            x * 3
        }
    }

    #[pipeline]
    fn wired(x: u32) -> Artifact<u32> {
        let y = double(x);
        let z = nested::double(&y);
        local::triple(&z)
    }

    let _: Pipeline<Artifact<u32>> = wired(1);
    assert_eq!(double::call(2), 4);
    assert_eq!(nested::double::call(2), 4);
    assert_eq!(local::triple::call(2), 6);
    assert_eq!(clip(2.0), 1.0);
    assert_eq!(nested::clip(2.0), 1.0);
}
