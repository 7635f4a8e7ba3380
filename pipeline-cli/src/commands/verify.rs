//! `pipeline verify [--repair]`: check every blob and sidecar; restore sidecars.

use pipeline::report::VerifySummary;

use super::{CliResult, Ctx, Printed};

/// Arguments of `pipeline verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Restore what the metadata alone can restore (sidecars).
    #[arg(long)]
    pub repair: bool,
}

/// Exit code 1 when problems remain after the check (and the repair).
pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<Printed> {
    let report = VerifySummary::run(ctx.store, args.repair).map_err(|e| ctx.error(e))?;
    Ok(Printed {
        text: ctx.print(&report),
        code: u8::from(!report.ok),
    })
}
