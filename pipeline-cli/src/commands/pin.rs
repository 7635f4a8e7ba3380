//! `pipeline pin RUN` and `pipeline unpin RUN`: whether garbage collection always keeps a
//! run.

use std::fmt;

use pipeline::report::RunView;
use serde::Serialize;

use super::{CliResult, Ctx};

/// Arguments of `pipeline pin` and `pipeline unpin`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
}

/// What `pin` and `unpin` print.
#[derive(Serialize)]
struct Pinned {
    run: RunView,
    pinned: bool,
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.pinned { "Pinned" } else { "Unpinned" };
        writeln!(f, "{what} run `{}`.", self.run.0.name)
    }
}

pub fn exec(ctx: &Ctx<'_>, args: &Args, pinned: bool) -> CliResult<String> {
    let record = ctx.run_record(&args.run)?;
    let result = if pinned {
        ctx.store.pin(&record.id)
    } else {
        ctx.store.unpin(&record.id)
    };
    result.map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&Pinned {
        run: RunView(record),
        pinned,
    }))
}
