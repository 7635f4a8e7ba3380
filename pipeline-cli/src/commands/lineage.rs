//! `pipeline lineage RUN [--html FILE] [--dot FILE]`: draw a run's DAG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pipeline::report::RunGraph;

use super::{to_json, CliResult, Ctx};
use crate::html;

/// Arguments of `pipeline lineage`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run id, name, or a unique prefix of either.
    run: String,
    /// Write an HTML page (inline SVG, no network access) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write Graphviz DOT text to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    dot: Option<PathBuf>,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let graph = RunGraph::new(ctx.store, &args.run).map_err(|e| ctx.error(e))?;
    let mut out = String::new();
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    if let Some(path) = &args.html {
        write(path, &html::page(&graph))?;
        if !ctx.json {
            let _ = writeln!(out, "Wrote {}", path.display());
        }
    }
    match &args.dot {
        Some(p) if p == Path::new("-") => out.push_str(&graph.to_string()),
        Some(path) => {
            write(path, &graph.to_string())?;
            if !ctx.json {
                let _ = writeln!(out, "Wrote {}", path.display());
            }
        }
        None => {}
    }
    if ctx.json {
        return Ok(to_json(&graph));
    }
    if args.html.is_none() && args.dot.is_none() {
        out.push_str(&graph.to_string());
    }
    Ok(out)
}
