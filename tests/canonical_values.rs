//! Equal values give equal keys and equal bytes; the key sees the serde shape of stored
//! types; a stored output that does not decode is a miss.
//!
//! Each case runs its pipeline in separate processes on one store, as a user's program
//! would run twice: hash seeds differ between processes, so `HashSet`s and `HashMap`s
//! iterate in different orders, and a type "edited" between two runs is traced afresh.
//! The child is this test binary itself, started with `--exact child` and environment
//! variables naming the scenario and the version of the stored types.
//!
//! The edits are simulated faithfully: `Split`, `Metrics`, `Mode` and `Report` keep one Rust
//! type (so their type name, the steps' code and everything else in the key stay the same,
//! as after a real edit of a type's definition), while their serde impls delegate to a
//! derived layout picked by `PL_VALUES_SHAPE`: version 1, or version 2 with two fields
//! swapped, a field added, a variant added.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use pipeline::prelude::*;
use pipeline::{Error, RunRecord, StepRecord};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SCENARIO: &str = "PL_VALUES_SCENARIO";
const SHAPE: &str = "PL_VALUES_SHAPE";

// ---------------------------------------------------------------------------------------
// Sets and maps: parameters, nested parameters, outputs under early cutoff.

/// A parameter struct holding sets inside a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    pub name: String,
    pub members: HashMap<String, HashSet<u32>>,
}

#[step]
fn count_tags(tags: &HashSet<String>) -> usize {
    tags.len()
}

#[step]
fn group_sizes(groups: &Groups) -> BTreeMap<String, usize> {
    groups
        .members
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect()
}

/// Always re-runs; returns the same map every time.
#[step(enable_cache = false)]
fn word_counts(n: u64) -> HashMap<String, u64> {
    (0..n).map(|i| (format!("word{i}"), i * i)).collect()
}

#[step]
fn total_words(counts: &HashMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// Always re-runs; returns the same set every time.
#[step(enable_cache = false)]
fn vocabulary(n: u64) -> HashSet<String> {
    (0..n).map(|i| format!("term{i}")).collect()
}

#[step]
fn vocabulary_size(words: &HashSet<String>) -> usize {
    words.len()
}

/// The outputs of `sets_and_maps`.
type SetsAndMaps = (
    Artifact<usize>,
    Artifact<BTreeMap<String, usize>>,
    Artifact<HashMap<String, u64>>,
    Artifact<u64>,
    Artifact<usize>,
);

#[pipeline]
fn sets_and_maps(tags: HashSet<String>, groups: Groups) -> SetsAndMaps {
    let counts = word_counts(40);
    let words = vocabulary(40);
    (
        count_tags(tags),
        group_sizes(groups),
        counts.clone(),
        total_words(&counts),
        vocabulary_size(&words),
    )
}

/// The same 16 tags and the same groups, built anew (with fresh hash seeds) each time.
fn tags() -> HashSet<String> {
    (1..=16).map(|i| format!("tag{i}")).collect()
}

fn groups() -> Groups {
    Groups {
        name: "teams".into(),
        members: (0..12)
            .map(|g| (format!("g{g}"), (0..20).map(|m| m * (g + 1)).collect()))
            .collect(),
    }
}

fn child_sets() {
    let p = sets_and_maps(tags(), groups());
    for _ in 0..2 {
        let run = p.run().unwrap_or_else(|e| panic!("{e}"));
        print_steps(&latest_run("sets_and_maps"));
        let (_, _, counts, _, _) = run.output();
        println!("HASH word_counts {}", counts.content_hash().unwrap());
    }
    // Evidence that this process iterates the sets and maps in its own order.
    println!(
        "ORDER tags {}",
        tags().iter().cloned().collect::<Vec<_>>().join(",")
    );
    println!(
        "ORDER words {}",
        word_counts::call(40)
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
}

#[test]
fn sets_and_maps_hit_the_cache_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let first = run_child(&home, "sets", 1);
    let second = run_child(&home, "sets", 1);
    // Hash seeds differ between the processes, so the iteration orders do too (all 16! or
    // 40! orders are possible; equal orders would make this test prove nothing).
    for what in ["tags", "words"] {
        assert_ne!(
            line(&first, &format!("ORDER {what} ")),
            line(&second, &format!("ORDER {what} ")),
            "the two processes iterated `{what}` in the same order"
        );
    }

    let runs = runs_of(&first, &second);
    // Run 1 executes everything; every later run, in the same process or the next one,
    // reuses the parameter steps and, by early cutoff, the consumers of the always-run
    // steps' maps and sets.
    for (i, steps) in runs.iter().enumerate() {
        let expect = |name: &str, first: &str, later: &str| {
            let want = if i == 0 { first } else { later };
            assert_eq!(
                status(steps, name),
                want,
                "run {} step `{name}`: {steps:?}",
                i + 1
            );
        };
        expect("count_tags", "executed", "cached");
        expect("group_sizes", "executed", "cached");
        expect("word_counts", "executed", "executed");
        expect("vocabulary", "executed", "executed");
        expect("total_words", "executed", "cached");
        expect("vocabulary_size", "executed", "cached");
    }
    // The always-run step wrote the same bytes in both processes.
    let hashes: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|out| lines(out, "HASH word_counts "))
        .collect();
    assert_eq!(hashes.len(), 4);
    assert!(hashes.iter().all(|h| h == &hashes[0]), "{hashes:?}");

    // The values survive: the stored map loads back equal, the sizes are right.
    let store = Store::open(&home).unwrap();
    let last = store.runs(Some("sets_and_maps")).unwrap()[0].name.clone();
    let counts: HashMap<String, u64> = store.load(&last, "word_counts", "output").unwrap();
    assert_eq!(counts, word_counts::call(40));
    let sizes: BTreeMap<String, usize> = store.load(&last, "group_sizes", "output").unwrap();
    assert_eq!(sizes.get("g0"), Some(&20));
    assert_eq!(
        store.load::<usize>(&last, "count_tags", "output").unwrap(),
        16
    );
}

// ---------------------------------------------------------------------------------------
// Stored types edited between runs.

/// Which layout the stored types use in this process (1 unless the parent says 2).
fn shape_version() -> u8 {
    std::env::var(SHAPE)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The derived layouts the stored types delegate to. Their serde names are the types'.
mod layout {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Split")]
    pub struct SplitV1 {
        pub train: u64,
        pub test: u64,
    }

    /// The edit: two fields swapped.
    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Split")]
    pub struct SplitV2 {
        pub test: u64,
        pub train: u64,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Metrics")]
    pub struct MetricsV1 {
        pub loss: f64,
    }

    /// The edit: a field added.
    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Metrics")]
    pub struct MetricsV2 {
        pub loss: f64,
        pub f1: f64,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Mode")]
    pub enum ModeV1 {
        Fast,
        Exact,
    }

    /// The edit: a variant added.
    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Mode")]
    pub enum ModeV2 {
        Fast,
        Exact,
        Sampled,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Report")]
    pub struct ReportV1 {
        pub name: String,
        pub extra: serde_json::Value,
    }

    /// The edit: a required field added, to a type whose shape cannot be traced
    /// (`serde_json::Value` needs a self-describing format).
    #[derive(Serialize, Deserialize)]
    #[serde(rename = "Report")]
    pub struct ReportV2 {
        pub name: String,
        pub extra: serde_json::Value,
        pub count: u64,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub train: u64,
    pub test: u64,
}

impl Serialize for Split {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Split { train, test } = *self;
        match shape_version() {
            1 => layout::SplitV1 { train, test }.serialize(s),
            _ => layout::SplitV2 { test, train }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Split {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match shape_version() {
            1 => {
                let v = layout::SplitV1::deserialize(d)?;
                Split {
                    train: v.train,
                    test: v.test,
                }
            }
            _ => {
                let v = layout::SplitV2::deserialize(d)?;
                Split {
                    train: v.train,
                    test: v.test,
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub loss: f64,
    /// Only stored by version 2.
    pub f1: f64,
}

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match shape_version() {
            1 => layout::MetricsV1 { loss: self.loss }.serialize(s),
            _ => layout::MetricsV2 {
                loss: self.loss,
                f1: self.f1,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match shape_version() {
            1 => Metrics {
                loss: layout::MetricsV1::deserialize(d)?.loss,
                f1: f64::NAN,
            },
            _ => {
                let v = layout::MetricsV2::deserialize(d)?;
                Metrics {
                    loss: v.loss,
                    f1: v.f1,
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Fast,
    Exact,
    /// Only in version 2.
    Sampled,
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (shape_version(), self) {
            (1, Mode::Fast) => layout::ModeV1::Fast.serialize(s),
            (1, Mode::Exact) => layout::ModeV1::Exact.serialize(s),
            (1, Mode::Sampled) => Err(serde::ser::Error::custom("no `Sampled` in version 1")),
            (_, Mode::Fast) => layout::ModeV2::Fast.serialize(s),
            (_, Mode::Exact) => layout::ModeV2::Exact.serialize(s),
            (_, Mode::Sampled) => layout::ModeV2::Sampled.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match shape_version() {
            1 => match layout::ModeV1::deserialize(d)? {
                layout::ModeV1::Fast => Mode::Fast,
                layout::ModeV1::Exact => Mode::Exact,
            },
            _ => match layout::ModeV2::deserialize(d)? {
                layout::ModeV2::Fast => Mode::Fast,
                layout::ModeV2::Exact => Mode::Exact,
                layout::ModeV2::Sampled => Mode::Sampled,
            },
        })
    }
}

#[step]
fn split(n: u64) -> Split {
    let train = n * 4 / 5;
    Split {
        train,
        test: n - train,
    }
}

/// Always re-runs, so it reads `split`'s stored value whenever `split` is cached.
#[step(enable_cache = false)]
fn train_share(s: &Split) -> f64 {
    s.train as f64 / (s.train + s.test) as f64
}

#[step]
fn evaluate(n: u64) -> Metrics {
    Metrics {
        loss: 1.0 / n as f64,
        f1: 0.5,
    }
}

#[step]
fn choose_mode(n: u64) -> Mode {
    if n > 10 {
        Mode::Exact
    } else {
        Mode::Fast
    }
}

#[pipeline]
fn stored_types(
    n: u64,
) -> (
    Artifact<Split>,
    Artifact<f64>,
    Artifact<Metrics>,
    Artifact<Mode>,
) {
    let s = split(n);
    let share = train_share(&s);
    (s, share, evaluate(n), choose_mode(n))
}

fn child_shapes() {
    let run = stored_types(100).run().unwrap_or_else(|e| panic!("{e}"));
    print_steps(&latest_run("stored_types"));
    let (s, share, metrics, mode) = run.output();
    let s = s.load().unwrap_or_else(|e| panic!("{e}"));
    println!("VALUE split {} {}", s.train, s.test);
    println!(
        "VALUE share {}",
        share.load().unwrap_or_else(|e| panic!("{e}"))
    );
    let m = metrics.load().unwrap_or_else(|e| panic!("{e}"));
    println!("VALUE metrics {} {}", m.loss, m.f1);
    println!(
        "VALUE mode {:?}",
        mode.load().unwrap_or_else(|e| panic!("{e}"))
    );
}

#[test]
fn edited_stored_types_re_execute_and_never_load_wrong_values() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let v1 = run_child(&home, "shapes", 1);
    let v2 = run_child(&home, "shapes", 2);
    let v2_again = run_child(&home, "shapes", 2);
    let v1_again = run_child(&home, "shapes", 1);

    for out in [&v1, &v2, &v2_again, &v1_again] {
        assert_eq!(line(out, "VALUE split "), "80 20", "{out}");
        assert_eq!(line(out, "VALUE share "), "0.8", "{out}");
        assert_eq!(line(out, "VALUE mode "), "Exact", "{out}");
    }
    assert_eq!(line(&v2, "VALUE metrics "), "0.01 0.5", "{v2}");

    let steps = |out: &str| parse_steps(out).into_iter().collect::<BTreeMap<_, _>>();
    let (first, edited, again, back) = (steps(&v1), steps(&v2), steps(&v2_again), steps(&v1_again));
    for name in ["split", "evaluate", "choose_mode"] {
        assert_eq!(first[name].0, "executed", "{v1}");
        assert_eq!(again[name].0, "cached", "{v2_again}");
        // Going back to the old definition finds the old entries again.
        assert_eq!(back[name].0, "cached", "{v1_again}");
    }
    // Each edited type re-executes its step, and the reason names the type.
    for (name, ty) in [
        ("split", "Split"),
        ("evaluate", "Metrics"),
        ("choose_mode", "Mode"),
    ] {
        assert_eq!(edited[name].0, "executed", "{v2}");
        assert_eq!(
            edited[name].1,
            format!("output type `{ty}` changed shape"),
            "{v2}"
        );
    }

    // What `pipeline explain` lists for the edited run: the same difference, from the
    // recorded key components.
    let store = Store::open(&home).unwrap();
    let runs = store.runs(Some("stored_types")).unwrap();
    let edited_run = &runs[runs.len() - 2];
    let rec = step_record(&store, edited_run, "split");
    let prev = store
        .previous_execution("split", rec.execution_id)
        .unwrap()
        .expect("an earlier execution of `split`");
    let differences = pipeline::Reason::differences(&prev.components, &rec.components);
    let texts: Vec<String> = differences.iter().map(|d| d.to_string()).collect();
    assert_eq!(texts, ["output type `Split` changed shape"]);

    // This process has the types in version 1. `Store::load` reads the version-1 output,
    // and refuses the version-2 one instead of decoding it into swapped fields.
    assert_eq!(shape_version(), 1);
    let first_run = &runs[runs.len() - 1];
    let old: Split = store.load(&first_run.name, "split", "output").unwrap();
    assert_eq!(
        old,
        Split {
            train: 80,
            test: 20
        }
    );
    match store.load::<Split>(&edited_run.name, "split", "output") {
        Err(Error::TypeMismatch {
            stored, requested, ..
        }) => {
            assert!(stored.contains("serde shape"), "{stored}");
            assert!(requested.contains("edited since"), "{requested}");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// A stored output that fails to decode.

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub extra: serde_json::Value,
    /// Only stored by version 2.
    pub count: Option<u64>,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (name, extra) = (self.name.clone(), self.extra.clone());
        match shape_version() {
            1 => layout::ReportV1 { name, extra }.serialize(s),
            _ => layout::ReportV2 {
                name,
                extra,
                count: self.count.unwrap_or(0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match shape_version() {
            1 => {
                let v = layout::ReportV1::deserialize(d)?;
                Report {
                    name: v.name,
                    extra: v.extra,
                    count: None,
                }
            }
            _ => {
                let v = layout::ReportV2::deserialize(d)?;
                Report {
                    name: v.name,
                    extra: v.extra,
                    count: Some(v.count),
                }
            }
        })
    }
}

#[step(cacher = Json)]
fn report(n: u64) -> Report {
    Report {
        name: format!("report of {n}"),
        extra: serde_json::json!({ "n": n }),
        count: Some(n),
    }
}

/// Always re-runs: reads `report`'s stored value whenever `report` is cached.
#[step(enable_cache = false)]
fn describe(r: &Report) -> String {
    format!("{} ({:?})", r.name, r.count)
}

#[pipeline]
fn reports(n: u64) -> (Artifact<Report>, Artifact<String>) {
    let r = report(n);
    let d = describe(&r);
    (r, d)
}

#[pipeline]
fn report_only(n: u64) -> Artifact<Report> {
    report(n)
}

fn child_undecodable_in_a_step() {
    match reports(7).run() {
        Ok(run) => {
            let (r, d) = run.output();
            let r = r.load().unwrap_or_else(|e| panic!("{e}"));
            println!("VALUE count {:?}", r.count);
            println!(
                "VALUE describe {}",
                d.load().unwrap_or_else(|e| panic!("{e}"))
            );
        }
        Err(e) => println!("ERROR {e}"),
    }
    print_steps(&latest_run("reports"));
}

fn child_undecodable_on_load() {
    let run = report_only(7).run().unwrap_or_else(|e| panic!("{e}"));
    match run.output().load() {
        Ok(r) => println!("VALUE count {:?}", r.count),
        Err(e @ Error::Undecodable { .. }) => println!("ERROR {e}"),
        Err(e) => panic!("expected Error::Undecodable, got {e:?}"),
    }
    print_steps(&latest_run("report_only"));
}

#[test]
fn an_undecodable_output_is_a_miss_on_the_next_run_when_a_step_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let v1 = run_child(&home, "undecodable_step", 1);
    assert_eq!(
        line(&v1, "VALUE count "),
        "None",
        "version 1 stores no count: {v1}"
    );

    // The edit is invisible to the key (`Report`'s shape cannot be traced): the step is
    // reused, and its consumer cannot decode the bytes. That run fails, saying why and
    // that the next run executes `report` again.
    let v2 = run_child(&home, "undecodable_step", 2);
    let steps: BTreeMap<_, _> = parse_steps(&v2).into_iter().collect();
    assert_eq!(steps["report"].0, "cached", "{v2}");
    assert_eq!(steps["describe"].0, "failed", "{v2}");
    let error = line(&v2, "ERROR ");
    assert!(
        error.contains("could not be decoded as `canonical_values::Report`")
            && error.contains("the next run executes `report` again"),
        "{error}"
    );

    // The next run re-executes it, with the reason, and everything loads.
    let healed = run_child(&home, "undecodable_step", 2);
    let steps: BTreeMap<_, _> = parse_steps(&healed).into_iter().collect();
    assert_eq!(steps["report"].0, "executed", "{healed}");
    assert_eq!(
        steps["report"].1,
        "stored output could not be decoded as `Report`"
    );
    assert_eq!(steps["describe"].0, "executed", "{healed}");
    assert_eq!(line(&healed, "VALUE count "), "Some(7)", "{healed}");
    assert_eq!(line(&healed, "VALUE describe "), "report of 7 (Some(7))");

    let settled = run_child(&home, "undecodable_step", 2);
    let steps: BTreeMap<_, _> = parse_steps(&settled).into_iter().collect();
    assert_eq!(steps["report"].0, "cached", "{settled}");
    assert_eq!(line(&settled, "VALUE count "), "Some(7)", "{settled}");
}

#[test]
fn an_undecodable_output_is_a_miss_on_the_next_run_when_the_user_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let v1 = run_child(&home, "undecodable_load", 1);
    assert_eq!(
        line(&v1, "VALUE count "),
        "None",
        "version 1 stores no count: {v1}"
    );

    let v2 = run_child(&home, "undecodable_load", 2);
    assert!(
        line(&v2, "ERROR ").contains("missing field `count`"),
        "{v2}"
    );

    let healed = run_child(&home, "undecodable_load", 2);
    let steps: BTreeMap<_, _> = parse_steps(&healed).into_iter().collect();
    assert_eq!(steps["report"].0, "executed", "{healed}");
    assert_eq!(
        steps["report"].1,
        "stored output could not be decoded as `Report`"
    );
    assert_eq!(line(&healed, "VALUE count "), "Some(7)", "{healed}");
}

// ---------------------------------------------------------------------------------------
// The child and its plumbing.

#[test]
fn child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return; // only does work when started by one of the tests above
    };
    println!(); // the test harness has printed `test child ... ` without a line break
    match scenario.as_str() {
        "sets" => child_sets(),
        "shapes" => child_shapes(),
        "undecodable_step" => child_undecodable_in_a_step(),
        "undecodable_load" => child_undecodable_on_load(),
        other => panic!("unknown scenario `{other}`"),
    }
}

/// Runs `scenario` in a child process on the store at `home`, with the stored types in
/// layout `shape`; returns its standard output.
fn run_child(home: &Path, scenario: &str, shape: u8) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env(SHAPE, shape.to_string())
        .env("PIPELINE_HOME", home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child `{scenario}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn latest_run(pipeline: &str) -> RunRecord {
    let store = Store::open_default().unwrap();
    store.runs(Some(pipeline)).unwrap().remove(0)
}

fn step_record(store: &Store, run: &RunRecord, step: &str) -> StepRecord {
    store
        .run_steps(&run.id)
        .unwrap()
        .into_iter()
        .find(|s| s.name == step)
        .unwrap_or_else(|| panic!("no step `{step}` in run `{}`", run.name))
}

/// Prints one `STEP name status reason` line per step of `run`.
fn print_steps(run: &RunRecord) {
    let store = Store::open_default().unwrap();
    println!("RUN {}", run.name);
    for s in store.run_steps(&run.id).unwrap() {
        println!(
            "STEP {} {} {}",
            s.name,
            s.status,
            s.reason.unwrap_or_default()
        );
    }
}

/// `(name, (status, reason))` per step of a run.
type Steps = Vec<(String, (String, String))>;

/// `(name, (status, reason))` of every `STEP` line.
fn parse_steps(out: &str) -> Steps {
    lines(out, "STEP ")
        .into_iter()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next().unwrap_or_default().to_string();
            let status = parts.next().unwrap_or_default().to_string();
            let reason = parts.next().unwrap_or_default().to_string();
            (name, (status, reason))
        })
        .collect()
}

/// The steps of each run printed by the children, in order.
fn runs_of(first: &str, second: &str) -> Vec<Steps> {
    let mut runs = Vec::new();
    for out in [first, second] {
        for chunk in out.split("RUN ").skip(1) {
            runs.push(parse_steps(chunk));
        }
    }
    assert_eq!(runs.len(), 4, "{first}\n{second}");
    runs
}

fn status<'a>(steps: &'a [(String, (String, String))], name: &str) -> &'a str {
    steps
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, (status, _))| status.as_str())
        .unwrap_or_else(|| panic!("no step `{name}` in {steps:?}"))
}

fn lines(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::to_string)
        .collect()
}

/// The one line starting with `prefix`, without it.
fn line(out: &str, prefix: &str) -> String {
    let found = lines(out, prefix);
    assert_eq!(found.len(), 1, "expected one `{prefix}` line in:\n{out}");
    found.into_iter().next().unwrap_or_default()
}
