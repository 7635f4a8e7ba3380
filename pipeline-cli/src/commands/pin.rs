//! `pipeline pin RUN` and `pipeline unpin RUN`: whether garbage collection always keeps a
//! run.

use pipeline::report::PinChange;

use super::{CliResult, Ctx};

/// Arguments of `pipeline pin` and `pipeline unpin`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args, pinned: bool) -> CliResult<String> {
    let report = PinChange::apply(ctx.store, &args.run, pinned).map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&report))
}
