//! `pipeline explain RUN STEP`: why a step executed, or which execution it reused.

use pipeline::report::{text, Explanation};
use pipeline::{RunRecord, StepRecord};

use super::{CliResult, Ctx};

/// Arguments of `pipeline explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
    /// Step name within the run.
    step: String,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let run = ctx.run_record(&args.run)?;
    let steps = ctx.store.run_steps(&run.id).map_err(|e| ctx.error(e))?;
    let step = find_step(&run, &steps, &args.step)?.clone();
    let report = Explanation::new(ctx.store, run, step).map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&report))
}

/// The step called `name` in the run: by name within the run, else by the step's own name
/// when only one call of it is in the run.
fn find_step<'s>(
    run: &RunRecord,
    steps: &'s [StepRecord],
    name: &str,
) -> CliResult<&'s StepRecord> {
    if let Some(s) = steps.iter().find(|s| s.name == name) {
        return Ok(s);
    }
    let calls: Vec<&StepRecord> = steps.iter().filter(|s| s.step == name).collect();
    match calls.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "run `{}` has no step `{name}`; its steps are: {}",
            run.name,
            listed(steps.iter(), &run.id)
        )),
        many => Err(format!(
            "step `{name}` is called {} times in run `{}`; name one of: {}",
            many.len(),
            run.name,
            listed(many.iter().copied(), &run.id)
        )),
    }
}

/// `` `source`, `train_fold[0..=9999]`, `mean` ``: the calls' names, a map's many per-item
/// calls as their range, at most `LISTED_CALLS` names then a count (`listed_calls`).
fn listed<'s>(steps: impl Iterator<Item = &'s StepRecord> + Clone, run_id: &str) -> String {
    let names: Vec<String> = text::call_names(steps.map(|s| s.name.as_str()))
        .iter()
        .map(|n| format!("`{n}`"))
        .collect();
    super::listed_calls(&names, run_id)
}
