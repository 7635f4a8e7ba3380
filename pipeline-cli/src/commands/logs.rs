//! `pipeline logs RUN STEP`: what a step that ran in a worker process or a Slurm job wrote
//! to stdout and stderr, as the store keeps it (the last 16 MiB of each).

use pipeline::store::{ExecutionLog, LogStream};

use super::{CliResult, Ctx};

/// Arguments of `pipeline logs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
    /// The step call's name in the run (`train`, `train_2`).
    step: String,
    /// Print its stdout only, as it was written.
    #[arg(long, conflicts_with = "stderr")]
    stdout: bool,
    /// Print its stderr only, as it was written.
    #[arg(long)]
    stderr: bool,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let run = ctx.run_record(&args.run)?;
    let steps = ctx.store.run_steps(&run.id).map_err(|e| ctx.error(e))?;
    let Some(step) = steps.iter().find(|s| s.name == args.step) else {
        let names: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
        return Err(format!(
            "run `{}` has no step call `{}`; its steps are: {}",
            run.name,
            args.step,
            super::listed_calls(&names, &run.id)
        ));
    };
    let kept = ctx
        .store
        .execution_logs(step.execution_id)
        .map_err(|e| ctx.error(e))?;
    if kept.is_empty() {
        return Err(format!(
            "step `{}` of run `{}` has no logs in the store: it is {}, and logs are kept only of \
             steps that ran in a worker process or a Slurm job (PIPELINE_EXECUTOR=processes or \
             slurm) whose driver saw the job end; steps on threads print to the driver's own \
             output",
            step.name, run.name, step.status
        ));
    }
    let only = if args.stdout {
        Some(LogStream::Stdout)
    } else if args.stderr {
        Some(LogStream::Stderr)
    } else {
        None
    };
    let chosen: Vec<&ExecutionLog> = kept
        .iter()
        .filter(|l| only.is_none_or(|s| l.stream == s))
        .collect();
    let mut read = Vec::with_capacity(chosen.len());
    for log in &chosen {
        let bytes = ctx.store.read_log(log).map_err(|e| ctx.error(e))?;
        read.push((*log, String::from_utf8_lossy(&bytes).into_owned()));
    }
    if ctx.json {
        let streams: Vec<serde_json::Value> = read
            .iter()
            .map(|(log, text)| {
                serde_json::json!({
                    "stream": log.stream,
                    "content_hash": log.content_hash,
                    "size": log.size,
                    "total_size": log.total_size,
                    "truncated": log.truncated(),
                    "text": text,
                })
            })
            .collect();
        return Ok(super::to_json(&serde_json::json!({
            "run": run.id,
            "step": step.name,
            "execution_id": step.execution_id,
            "logs": streams,
        })));
    }
    // One stream: its bytes as written, for pipes. Both: each under a header.
    if only.is_some() {
        return Ok(read.into_iter().map(|(_, text)| text).collect());
    }
    let mut out = String::new();
    for (log, text) in read {
        let cut = if log.truncated() {
            format!(
                ", its first {} bytes not kept",
                log.total_size.saturating_sub(log.size)
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "==> {} of `{}` ({} bytes{cut}) <==\n",
            log.stream, step.name, log.total_size
        ));
        out.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
