//! `pipeline gc`: remove old runs and the blobs nothing references any more.

use pipeline::report::GcSummary;
use pipeline::GcPolicy;

use super::{CliResult, Ctx};

/// Arguments of `pipeline gc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Newest runs kept per pipeline.
    #[arg(long, value_name = "N", default_value_t = 10)]
    keep_last: usize,
    /// Size budget for the kept runs' blobs, e.g. `500M`, `2GiB`, `1048576`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Leave unreferenced blob files younger than this, e.g. `10m`, `1h`, `0s`. Any age is
    /// safe beside running pipelines: what they rely on is kept until they end.
    #[arg(long, value_name = "AGE", default_value = "10m", value_parser = parse_age)]
    min_age: std::time::Duration,
    /// Print what would be removed and how many bytes it frees, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<String> {
    let policy = GcPolicy {
        keep_last: args.keep_last,
        max_bytes: args.max_size,
        dry_run: args.dry_run,
        min_blob_age: args.min_age,
    };
    let report = GcSummary::run(ctx.store, &policy).map_err(|e| ctx.error(e))?;
    Ok(ctx.print(&report))
}

/// `1048576`, `512K`, `500M`, `2G`, `2GiB`, `1.5gb` (units are powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 500M, 2GiB, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit `{other}` (use K, M, G or T)")),
    };
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `30s`, `10m`, `2h`, `1d`, or plain seconds.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not an age (e.g. 30s, 10m, 2h)"))?;
    let secs = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("unknown age unit `{other}` (use s, m, h or d)")),
    };
    std::time::Duration::try_from_secs_f64(value * secs).map_err(|e| e.to_string())
}
