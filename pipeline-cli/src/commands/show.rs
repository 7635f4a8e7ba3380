//! `pipeline show RUN`: a run's steps.

use pipeline::report::RunDetail;

use super::{CliResult, Ctx};

/// Arguments of `pipeline show`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let report = RunDetail::new(ctx.store, &args.run).map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&report))
}
