//! The subcommands. Each returns the text to print, or an error message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pipeline::{Error, GcPolicy, Reason, RunRecord, StepRecord, StepStatus, Store, StoreOptions};
use serde_json::{json, Value};

use crate::fmt::{duration, short, size, table, timestamp};
use crate::{lineage, Cli, Command};

mod verify;

/// An error message for standard error.
pub type CliResult<T> = Result<T, String>;

/// What a command prints on standard output, and its exit code: 0, or 1 when `verify`
/// leaves problems.
pub struct Printed {
    pub text: String,
    pub code: u8,
}

pub fn run(cli: &Cli) -> CliResult<Printed> {
    let path = cli
        .store
        .clone()
        .unwrap_or_else(pipeline::store::default_path);
    // Even a dry run of gc takes the write lock, to see a consistent store.
    let writes = matches!(
        cli.command,
        Command::Gc { .. }
            | Command::Pin { .. }
            | Command::Unpin { .. }
            | Command::Verify { repair: true }
    );
    let store = open_store(&path, writes)?;
    let ctx = Ctx {
        store: &store,
        path: &path,
        json: cli.json,
    };
    let text = match &cli.command {
        Command::Runs { pipeline, limit } => ctx.runs(pipeline.as_deref(), *limit),
        Command::Show { run } => ctx.show(run),
        Command::Explain { run, step } => ctx.explain(run, step),
        Command::Diff { run_a, run_b } => ctx.diff(run_a, run_b),
        Command::Lineage { run, html, dot } => ctx.lineage(run, html.as_deref(), dot.as_deref()),
        Command::Gc {
            keep_last,
            max_size,
            min_age,
            dry_run,
        } => ctx.gc(&GcPolicy {
            keep_last: *keep_last,
            max_bytes: *max_size,
            dry_run: *dry_run,
            min_blob_age: *min_age,
        }),
        Command::Pin { run } => ctx.pin(run, true),
        Command::Unpin { run } => ctx.pin(run, false),
        Command::Verify { repair } => return ctx.verify(*repair),
    }?;
    Ok(Printed { text, code: 0 })
}

/// Opens an existing store, never creating one; read-only unless the command `writes`.
fn open_store(path: &Path, writes: bool) -> CliResult<Store> {
    let hint = "run a pipeline first, or name a store with --store PATH or PIPELINE_HOME";
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(_) => {
            return Err(format!(
                "no pipeline store at {shown}: the directory does not exist; {hint}"
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "no pipeline store at {shown}: it is a file, not a directory; {hint}"
            ))
        }
        Ok(_) => {}
    }
    if !path.join("metadata.sqlite").is_file() {
        return Err(format!(
            "no pipeline store at {shown}: the directory has no metadata.sqlite; {hint}"
        ));
    }
    if !writes {
        let read_only = StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        };
        match Store::open_with(path, read_only) {
            // A store of an older schema is upgraded by a writable open.
            Err(Error::ReadOnly { .. }) => {}
            other => return other.map_err(|e| e.to_string()),
        }
    }
    Store::open(path).map_err(|e| e.to_string())
}

struct Ctx<'a> {
    store: &'a Store,
    path: &'a PathBuf,
    json: bool,
}

impl Ctx<'_> {
    /// Turns a store error into a message that names the command to use next.
    fn error(&self, e: Error) -> String {
        match e {
            Error::UnknownRun(run) => format!(
                "no run `{run}` in the store at {}; list runs with `pipeline runs`",
                self.path.display()
            ),
            Error::AmbiguousRun { prefix, candidates } => {
                let mut shown: Vec<String> = candidates
                    .iter()
                    .take(8)
                    .map(|c| format!("`{c}`"))
                    .collect();
                if candidates.len() > 8 {
                    shown.push(format!("and {} more", candidates.len() - 8));
                }
                format!(
                    "run prefix `{prefix}` is ambiguous: it matches {} runs ({}); give more characters or the full name",
                    candidates.len(),
                    shown.join(", ")
                )
            }
            other => other.to_string(),
        }
    }

    fn run_record(&self, run: &str) -> CliResult<RunRecord> {
        self.store.run(run).map_err(|e| self.error(e))
    }

    fn steps(&self, run: &RunRecord) -> CliResult<Vec<StepRecord>> {
        self.store.run_steps(&run.id).map_err(|e| self.error(e))
    }

    fn runs(&self, pipeline: Option<&str>, limit: Option<usize>) -> CliResult<String> {
        let mut runs = self.store.runs(pipeline).map_err(|e| self.error(e))?;
        if let Some(n) = limit {
            runs.truncate(n);
        }
        if self.json {
            return Ok(to_json(&Value::Array(runs.iter().map(run_json).collect())));
        }
        if runs.is_empty() {
            return Ok(match pipeline {
                Some(p) => {
                    let known = self.store.pipelines().map_err(|e| self.error(e))?;
                    if known.is_empty() {
                        format!("No runs of pipeline `{p}` (the store has no runs).\n")
                    } else {
                        format!(
                            "No runs of pipeline `{p}`; the store has runs of: {}.\n",
                            known.join(", ")
                        )
                    }
                }
                None => "No runs in the store.\n".to_string(),
            });
        }
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    short_id(&r.id).to_string(),
                    r.name.clone(),
                    r.pipeline.clone(),
                    status_text(r),
                    timestamp(r.started_at_us),
                    r.duration.map(duration).unwrap_or_else(|| "-".into()),
                    r.executed.to_string(),
                    r.cached.to_string(),
                    r.failed.to_string(),
                    r.skipped.to_string(),
                ]
            })
            .collect();
        Ok(table(
            &[
                "ID",
                "NAME",
                "PIPELINE",
                "STATUS",
                "STARTED (UTC)",
                "DURATION",
                "EXECUTED",
                "CACHED",
                "FAILED",
                "SKIPPED",
            ],
            &rows,
        ))
    }

    fn show(&self, run: &str) -> CliResult<String> {
        let run = self.run_record(run)?;
        let steps = self.steps(&run)?;
        if self.json {
            return Ok(to_json(&json!({
                "run": run_json(&run),
                "steps": steps.iter().map(step_json).collect::<Vec<_>>(),
            })));
        }
        let mut out = String::new();
        let _ = writeln!(out, "{}", run_header(&run));
        let _ = writeln!(out);
        let mut rows = Vec::new();
        for s in &steps {
            let mut outputs = s.outputs.iter().map(|o| {
                format!(
                    "{} {} {} {}",
                    o.name,
                    size(o.size),
                    o.cacher,
                    short(&o.content_hash)
                )
            });
            rows.push(vec![
                s.name.clone(),
                s.status.to_string(),
                duration(s.duration),
                s.cache_key.as_deref().map(short).unwrap_or("-").to_string(),
                outputs.next().unwrap_or_else(|| "-".into()),
            ]);
            for more in outputs {
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    more,
                ]);
            }
        }
        out.push_str(&table(
            &["STEP", "STATUS", "DURATION", "CACHE KEY", "OUTPUTS"],
            &rows,
        ));
        for s in &steps {
            match s.status {
                StepStatus::Failed => {
                    let _ = writeln!(
                        out,
                        "\n`{}` failed: {}",
                        s.name,
                        s.error.as_deref().unwrap_or("(no message recorded)")
                    );
                }
                StepStatus::Skipped => {
                    let _ = writeln!(
                        out,
                        "\n`{}` was skipped: {}",
                        s.name,
                        s.reason.as_deref().unwrap_or("an upstream step failed")
                    );
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn explain(&self, run: &str, step: &str) -> CliResult<String> {
        let run = self.run_record(run)?;
        let steps = self.steps(&run)?;
        let rec = find_step(&run, &steps, step)?;
        let mut out = String::new();
        let mut changes_json = Vec::new();
        let mut previous_json = Value::Null;
        let mut reused_json = Value::Null;
        let reason = rec.reason.clone().unwrap_or_default();
        match rec.status {
            StepStatus::Cached => {
                let id = rec.reused_execution.ok_or_else(|| {
                    format!(
                        "step `{}` in run `{}` is recorded as cached but names no reused execution",
                        rec.name, run.name
                    )
                })?;
                match self.reused(id)? {
                    Some((used, used_run)) => {
                        let _ = writeln!(
                            out,
                            "Step `{}` in run `{}` was cached: it reused execution {id} (step `{}` in run `{}`, started {} UTC, ran in {}).",
                            rec.name,
                            run.name,
                            used.name,
                            used_run.name,
                            timestamp(used.started_at_us),
                            duration(used.duration),
                        );
                        reused_json = json!({
                            "execution_id": id,
                            "step": used.name,
                            "run_id": used_run.id,
                            "run_name": used_run.name,
                            "started_at_us": used.started_at_us,
                            "duration_s": used.duration.as_secs_f64(),
                            "removed": false,
                        });
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "Step `{}` in run `{}` was cached: it reused execution {id}, whose run has since been removed from the store (e.g. by `pipeline gc`); the outputs it reused are recorded with this step.",
                            rec.name, run.name,
                        );
                        reused_json = json!({ "execution_id": id, "removed": true });
                    }
                }
                if let Some(key) = &rec.cache_key {
                    let _ = writeln!(out, "Cache key: {key}");
                }
                for o in &rec.outputs {
                    let _ = writeln!(
                        out,
                        "  output `{}`: {} ({}, content {})",
                        o.name,
                        size(o.size),
                        o.cacher,
                        short(&o.content_hash)
                    );
                }
            }
            StepStatus::Skipped => {
                let _ = writeln!(
                    out,
                    "Step `{}` in run `{}` was skipped: {}.",
                    rec.name,
                    run.name,
                    if reason.is_empty() {
                        "an upstream step failed"
                    } else {
                        &reason
                    }
                );
            }
            StepStatus::Running => {
                let _ = writeln!(
                    out,
                    "Step `{}` in run `{}` is executing now (started {} UTC).",
                    rec.name,
                    run.name,
                    timestamp(rec.started_at_us)
                );
            }
            StepStatus::Executed | StepStatus::Failed => {
                match rec.status {
                    StepStatus::Executed => {
                        let _ = writeln!(
                            out,
                            "Step `{}` in run `{}` executed in {}: {}.",
                            rec.name,
                            run.name,
                            duration(rec.duration),
                            reason
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            out,
                            "Step `{}` in run `{}` failed after {}: {}",
                            rec.name,
                            run.name,
                            duration(rec.duration),
                            rec.error.as_deref().unwrap_or("(no message recorded)")
                        );
                        let _ = writeln!(out, "It ran because: {reason}.");
                    }
                }
                let compared = self
                    .store
                    .compared_execution(rec.execution_id)
                    .map_err(|e| self.error(e))?;
                match compared {
                    None => {
                        let _ = writeln!(
                            out,
                            "No earlier execution of step `{}` is recorded: this was its first.",
                            rec.step
                        );
                    }
                    Some(prev) => {
                        let still = self.reused(prev.execution_id)?;
                        let prev_key = prev.components.cache_key().to_hex();
                        match &still {
                            Some((p, _)) => {
                                let _ = writeln!(
                                    out,
                                    "Compared with the earlier execution of the same call: execution {} (`{}` in run `{}`, {}, started {} UTC):",
                                    prev.execution_id,
                                    prev.name,
                                    prev.run_name,
                                    p.status,
                                    timestamp(p.started_at_us)
                                );
                            }
                            None => {
                                let _ = writeln!(
                                    out,
                                    "Compared with the earlier execution of the same call: execution {} (`{}` in run `{}`, since removed from the store; its key components were recorded with this step):",
                                    prev.execution_id, prev.name, prev.run_name,
                                );
                            }
                        }
                        previous_json = json!({
                            "execution_id": prev.execution_id,
                            "step": prev.name,
                            "status": still.as_ref().map(|(p, _)| p.status),
                            "run_id": prev.run_id,
                            "run_name": prev.run_name,
                            "started_at_us": still.as_ref().map(|(p, _)| p.started_at_us),
                            "cache_key": prev_key,
                            "removed": still.is_none(),
                        });
                        let changes = Reason::differences(&prev.components, &rec.components);
                        if changes.is_empty() {
                            let same = rec.cache_key.as_deref() == Some(prev_key.as_str());
                            let _ = writeln!(
                                out,
                                "  no key component changed{}; it ran because: {}.",
                                if same { " (same cache key)" } else { "" },
                                reason
                            );
                        }
                        for change in &changes {
                            let _ = writeln!(out, "  - {change}");
                            let mut entry = serde_json::to_value(change).unwrap_or(Value::Null);
                            if let Value::Object(map) = &mut entry {
                                map.insert("text".into(), json!(change.to_string()));
                            }
                            match change {
                                Reason::InputChanged { name, producer } => {
                                    let detail =
                                        self.input_detail(&prev.components, rec, name, producer);
                                    for line in &detail.lines {
                                        let _ = writeln!(out, "      {line}");
                                    }
                                    if let Value::Object(map) = &mut entry {
                                        map.insert("detail".into(), detail.json);
                                    }
                                }
                                Reason::DeclarationChanged => {
                                    let (old, new) = (
                                        declarations(&prev.components),
                                        declarations(&rec.components),
                                    );
                                    let _ = writeln!(out, "      before: {old}");
                                    let _ = writeln!(out, "      now:    {new}");
                                    if let Value::Object(map) = &mut entry {
                                        map.insert("old_declarations".into(), json!(old));
                                        map.insert("new_declarations".into(), json!(new));
                                    }
                                }
                                _ => {}
                            }
                            changes_json.push(entry);
                        }
                    }
                }
            }
        }
        if self.json {
            return Ok(to_json(&json!({
                "run": run_json(&run),
                "step": rec.name,
                "status": rec.status,
                "execution_id": rec.execution_id,
                "reason": rec.reason,
                "error": rec.error,
                "cache_key": rec.cache_key,
                "previous": previous_json,
                "changes": changes_json,
                "reused": reused_json,
            })));
        }
        Ok(out)
    }

    /// Execution `id` and its run, or `None` when it is no longer in the store (garbage
    /// collection removed its run).
    fn reused(&self, id: i64) -> CliResult<Option<(StepRecord, RunRecord)>> {
        let found = self
            .store
            .execution(id)
            .and_then(|e| Ok((e, self.store.execution_run(id)?)));
        match found {
            Ok(found) => Ok(Some(found)),
            Err(Error::UnknownRun(_)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Where a changed input came from, then and now.
    fn input_detail(
        &self,
        prev: &pipeline::KeyComponents,
        rec: &StepRecord,
        name: &str,
        producer: &str,
    ) -> InputDetail {
        let hash_of = |c: &pipeline::KeyComponents| {
            c.inputs.iter().find_map(|i| match i {
                pipeline::InputComponent::Artifact {
                    name: n,
                    content_hash,
                    ..
                } if n == name => Some(content_hash.clone()),
                _ => None,
            })
        };
        let (old_hash, new_hash) = (hash_of(prev), hash_of(&rec.components));
        let mut lines = vec![format!(
            "content {} -> {}",
            old_hash.as_deref().map(short).unwrap_or("?"),
            new_hash.as_deref().map(short).unwrap_or("?"),
        )];
        let producer_execution = rec
            .inputs
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.producer_execution);
        let mut json = json!({
            "old_content_hash": old_hash,
            "new_content_hash": new_hash,
            "producer": producer,
            "producer_execution": producer_execution,
        });
        match producer_execution.map(|id| (self.store.execution(id), self.store.execution_run(id)))
        {
            Some((Ok(p), Ok(r))) => {
                lines.push(format!(
                    "produced by `{producer}`: execution {} (`{}` in run `{}`, {}); see `pipeline explain {} {}`",
                    p.execution_id, p.name, r.name, p.status, r.name, p.name
                ));
                json["producer_run"] = json!(r.name);
            }
            _ => lines.push(format!("produced by `{producer}`")),
        }
        InputDetail { lines, json }
    }

    fn diff(&self, a: &str, b: &str) -> CliResult<String> {
        let cmp = self.store.compare_runs(a, b).map_err(|e| self.error(e))?;
        if self.json {
            let steps: Vec<Value> = cmp
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "name_a": s.name_a,
                        "status_a": s.status_a,
                        "status_b": s.status_b,
                        "same_key": s.same_key,
                        "changes": s.changes.iter().map(|c| {
                            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                            if let Value::Object(m) = &mut v {
                                m.insert("text".into(), json!(c.to_string()));
                            }
                            v
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            return Ok(to_json(&json!({
                "run_a": run_json(&cmp.run_a),
                "run_b": run_json(&cmp.run_b),
                "steps": steps,
            })));
        }
        let mut out = String::new();
        let _ = writeln!(out, "A: {}", run_header(&cmp.run_a));
        let _ = writeln!(out, "B: {}", run_header(&cmp.run_b));
        let _ = writeln!(out);
        let status = |s: Option<StepStatus>| s.map(|s| s.to_string()).unwrap_or("-".into());
        let rows: Vec<Vec<String>> = cmp
            .steps
            .iter()
            .map(|s| {
                let verdict = if s.same_key {
                    "same".to_string()
                } else if s.status_a.is_none() {
                    "only in B".to_string()
                } else if s.status_b.is_none() {
                    "only in A".to_string()
                } else if s.changes.is_empty() {
                    "different".to_string()
                } else {
                    format!(
                        "different: {}",
                        s.changes
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                };
                // A call paired with a differently named one in A (calls in a loop).
                let name = match &s.name_a {
                    Some(a) if *a != s.name && s.status_b.is_some() => {
                        format!("{} (A: {a})", s.name)
                    }
                    _ => s.name.clone(),
                };
                vec![name, status(s.status_a), status(s.status_b), verdict]
            })
            .collect();
        out.push_str(&table(&["STEP", "A", "B", "CACHE KEY"], &rows));
        let changed = cmp.changed().count();
        let _ = writeln!(out, "\n{} of {} steps differ.", changed, cmp.steps.len());
        Ok(out)
    }

    fn gc(&self, policy: &GcPolicy) -> CliResult<String> {
        let report = self.store.gc(policy).map_err(|e| self.error(e))?;
        if self.json {
            return Ok(to_json(
                &serde_json::to_value(&report).unwrap_or(Value::Null),
            ));
        }
        let (verb, blob_verb) = if report.dry_run {
            ("Would remove", "would free")
        } else {
            ("Removed", "freed")
        };
        let mut out = String::new();
        let total = report.runs_kept + report.runs_removed.len();
        if report.runs_removed.is_empty() {
            let _ = writeln!(out, "{verb} no runs (of {total}).");
        } else {
            let _ = writeln!(out, "{verb} {} of {total} runs:", report.runs_removed.len());
            for name in &report.runs_removed {
                let _ = writeln!(out, "  {name}");
            }
        }
        let _ = writeln!(
            out,
            "{verb} {} unreferenced blob(s): {blob_verb} {} ({} bytes).",
            report.blobs_removed,
            size(report.bytes_freed),
            report.bytes_freed
        );
        if report.blobs_removed == 0 && !report.runs_removed.is_empty() {
            let _ = writeln!(
                out,
                "(Blob files younger than {} are kept; lower --min-age to include them.)",
                duration(policy.min_blob_age)
            );
        }
        if report.temp_files_removed > 0 {
            let _ = writeln!(
                out,
                "{verb} {} temporary file(s) left by dead processes.",
                report.temp_files_removed
            );
        }
        let _ = writeln!(
            out,
            "Kept {} run(s), whose blobs take {}.",
            report.runs_kept,
            size(report.bytes_kept)
        );
        if report.dry_run {
            let _ = writeln!(out, "Dry run: nothing was removed.");
        }
        Ok(out)
    }

    fn pin(&self, run: &str, pinned: bool) -> CliResult<String> {
        let record = self.run_record(run)?;
        let result = if pinned {
            self.store.pin(&record.id)
        } else {
            self.store.unpin(&record.id)
        };
        result.map_err(|e| self.error(e))?;
        let what = if pinned { "Pinned" } else { "Unpinned" };
        if self.json {
            return Ok(to_json(
                &json!({ "run": run_json(&record), "pinned": pinned }),
            ));
        }
        Ok(format!("{what} run `{}`.\n", record.name))
    }

    fn lineage(&self, run: &str, html: Option<&Path>, dot: Option<&Path>) -> CliResult<String> {
        let run = self.run_record(run)?;
        let steps = self.steps(&run)?;
        let graph = lineage::Graph::new(run, steps);
        let mut out = String::new();
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        if let Some(path) = html {
            write(path, &graph.html())?;
            if !self.json {
                let _ = writeln!(out, "Wrote {}", path.display());
            }
        }
        match dot {
            Some(p) if p == Path::new("-") => out.push_str(&graph.dot()),
            Some(path) => {
                write(path, &graph.dot())?;
                if !self.json {
                    let _ = writeln!(out, "Wrote {}", path.display());
                }
            }
            None => {}
        }
        if self.json {
            return Ok(to_json(&graph.json()));
        }
        if html.is_none() && dot.is_none() {
            out.push_str(&graph.dot());
        }
        Ok(out)
    }
}

struct InputDetail {
    lines: Vec<String>,
    json: Value,
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
            steps
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        many => Err(format!(
            "step `{name}` is called {} times in run `{}`; name one of: {}",
            many.len(),
            run.name,
            many.iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn declarations(c: &pipeline::KeyComponents) -> String {
    let inputs: Vec<String> = c
        .inputs
        .iter()
        .map(|i| match i {
            pipeline::InputComponent::Artifact { name, .. } => format!("{name} (artifact)"),
            pipeline::InputComponent::Parameter {
                name, type_name, ..
            } => format!("{name}: {type_name}"),
        })
        .collect();
    let outputs: Vec<String> = c
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{}: {} ({} v{})",
                o.name, o.type_name, o.cacher, o.cacher_version
            )
        })
        .collect();
    format!(
        "inputs [{}], outputs [{}]",
        inputs.join(", "),
        outputs.join(", ")
    )
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn status_text(r: &RunRecord) -> String {
    serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn run_header(r: &RunRecord) -> String {
    format!(
        "run `{}` (id {}) of pipeline `{}`: {}, started {} UTC, took {}; {} executed, {} cached, {} failed, {} skipped",
        r.name,
        r.id,
        r.pipeline,
        status_text(r),
        timestamp(r.started_at_us),
        r.duration.map(duration).unwrap_or_else(|| "-".into()),
        r.executed,
        r.cached,
        r.failed,
        r.skipped
    )
}

/// A record as JSON, with `duration` replaced by `duration_s` (seconds, a float).
fn with_seconds(mut v: Value, d: Option<std::time::Duration>) -> Value {
    if let Value::Object(map) = &mut v {
        map.remove("duration");
        map.insert("duration_s".into(), json!(d.map(|d| d.as_secs_f64())));
    }
    v
}

pub fn run_json(r: &RunRecord) -> Value {
    let mut v = with_seconds(serde_json::to_value(r).unwrap_or(Value::Null), r.duration);
    if let Value::Object(map) = &mut v {
        map.insert(
            "started".into(),
            json!(format!("{}Z", timestamp(r.started_at_us).replace(' ', "T"))),
        );
    }
    v
}

pub fn step_json(s: &StepRecord) -> Value {
    with_seconds(
        serde_json::to_value(s).unwrap_or(Value::Null),
        Some(s.duration),
    )
}

fn to_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}
