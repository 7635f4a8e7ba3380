//! `pipeline diff RUN_A RUN_B`: two runs compared step by step.

use pipeline::report::RunDiff;

use super::{CliResult, Ctx};

/// Arguments of `pipeline diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier run (id, name or unique prefix).
    run_a: String,
    /// The later run (id, name or unique prefix).
    run_b: String,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let report = RunDiff::new(ctx.store, &args.run_a, &args.run_b).map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&report))
}
