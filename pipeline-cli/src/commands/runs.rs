//! `pipeline runs [PIPELINE] [-n N]`: the runs of the store, newest first.

use pipeline::report::RunList;

use super::{CliResult, Ctx};

/// Arguments of `pipeline runs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the runs of this pipeline.
    pipeline: Option<String>,
    /// Show at most N runs.
    #[arg(long, short = 'n', value_name = "N")]
    limit: Option<usize>,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let report =
        RunList::new(ctx.store, args.pipeline.as_deref(), args.limit).map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&report))
}
