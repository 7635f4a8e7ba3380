//! `pipeline replay RUN STEP`: this CLI has none of the user's steps, so it cannot run one;
//! it checks that the run has the step and prints the command that replays it, the user's
//! own binary with `--pipeline-replay` (handled by `pipeline::worker::enter()`).

use super::{CliResult, Ctx};

/// Arguments of `pipeline replay`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
    /// The step call's name in the run (`train`, `train_2`).
    step: String,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args, store_flag: bool) -> CliResult<String> {
    let run = ctx.store.run(&args.run).map_err(|e| ctx.error(e))?;
    let steps = ctx.store.run_steps(&run.id).map_err(|e| ctx.error(e))?;
    if !steps.iter().any(|s| s.name == args.step) {
        let names: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
        return Err(format!(
            "run `{}` has no step call `{}`; its steps are: {}",
            run.name,
            args.step,
            super::listed_calls(&names, &run.id)
        ));
    }
    // The store as given here, so the binary finds the same one.
    let store = if store_flag {
        format!(" --store {}", shell_word(&ctx.path.display().to_string()))
    } else {
        String::new()
    };
    let command = format!(
        "<your-binary> --pipeline-replay {} {}{store}",
        shell_word(&run.id),
        shell_word(&args.step)
    );
    if ctx.json {
        return Ok(format!(
            "{}\n",
            serde_json::json!({ "run": run.id, "step": args.step, "command": command })
        ));
    }
    Ok(format!(
        "This command has none of your steps, so it cannot run one. Replay step `{}` of run `{}` with your own binary (its `main` calls `pipeline::worker::enter()` first):\n\n    {command}\n\nIt runs the step on the run's recorded inputs and says whether its outputs equal the recorded ones (exit code 0 equal, 1 different).\n",
        args.step, run.name
    ))
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
