//! `pipeline ui` on a store of the seed example's runs, each page type rendered in headless
//! Chromium (which may reach no host but the server), asserting on the rendered DOM:
//! statuses, reasons, previews and chart points.

#[path = "../../examples/common/digits.rs"]
mod digits;
#[path = "../../examples/common/digits_pipeline.rs"]
mod digits_pipeline;
mod ui_support;

use std::path::Path;
use std::process::Command;

use pipeline::Store;
use serde_json::Value;
use ui_support::*;

/// `pipeline --store STORE show RUN --json`.
fn show(store: &Path, run: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--store")
        .arg(store)
        .args(["show", run, "--json"])
        .env_remove("PIPELINE_HOME")
        .output()
        .expect("run pipeline show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("show --json")
}

/// The content hash of output `output` of step `step` in `run`.
fn output_hash(store: &Path, run: &str, step: &str, output: &str) -> String {
    let shown = show(store, run);
    let s = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {run}"));
    s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == output)
        .unwrap_or_else(|| panic!("no output {output} of {step}"))["content_hash"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Renders `path` and checks that Chromium requested nothing but the server.
fn visit(server: &Server, path: &str) -> String {
    let rendered = render(&format!("{}{path}", server.base), 2000, &[]);
    only_local_requests(&rendered, server);
    rendered.dom
}

/// The `<tr>` of step `name` in the rendered step table.
fn row<'d>(dom: &'d str, name: &str) -> &'d str {
    let marker = format!("<tr data-step=\"{name}\"");
    element(dom, &marker, "</tr>")
}

fn attr<'d>(markup: &'d str, name: &str) -> &'d str {
    let key = format!("{name}=\"");
    let at = markup
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {markup}"))
        + key.len();
    &markup[at..at + markup[at..].find('"').unwrap()]
}

/// `(data-x, data-y)` of each chart point in `markup`.
fn points(markup: &str) -> Vec<(f64, f64)> {
    markup
        .match_indices("<circle class=\"point\"")
        .map(|(i, _)| {
            let tag = &markup[i..i + markup[i..].find('>').unwrap()];
            (
                attr(tag, "data-x").parse().unwrap(),
                attr(tag, "data-y").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn runs_page_lists_runs_newest_first_with_counts_and_filters() {
    let store = store();
    let server = Server::start(store, &[]);
    let dom = visit(&server, "/");
    let order: Vec<&str> = dom
        .match_indices("<tr data-run=\"")
        .map(|(i, m)| {
            let rest = &dom[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    let mut expected = vec![SHOWCASE.to_string()];
    expected.extend(SWEEP.iter().rev().map(|g| sweep_run(*g)));
    expected.extend([SEED_FAILED, SEED_CACHED, SEED_FIRST].map(String::from));
    assert_eq!(order, expected, "newest first");
    let cached = element(&dom, &format!("<tr data-run=\"{SEED_CACHED}\""), "</tr>");
    assert!(cached.contains("data-status=\"completed\""), "{cached}");
    assert!(
        cached.contains("<td class=\"n executed\">0</td>"),
        "{cached}"
    );
    assert!(cached.contains("<td class=\"n cached\">4</td>"), "{cached}");
    let failed = element(&dom, &format!("<tr data-run=\"{SEED_FAILED}\""), "</tr>");
    assert!(failed.contains("data-status=\"failed\""), "{failed}");
    assert!(failed.contains("<td class=\"n failed\">1</td>"), "{failed}");
    assert!(
        failed.contains("<td class=\"n skipped\">1</td>"),
        "{failed}"
    );
    let sweep = element(
        &dom,
        &format!("<tr data-run=\"{}\"", sweep_run(SWEEP[0])),
        "</tr>",
    );
    assert!(sweep.contains("<td class=\"n executed\">2</td>"), "{sweep}");
    assert!(sweep.contains("<td class=\"n cached\">2</td>"), "{sweep}");

    let filtered = visit(&server, "/?pipeline=digits_pipeline&status=failed");
    assert_eq!(filtered.matches("<tr data-run=").count(), 1, "{filtered}");
    assert!(filtered.contains(&format!("<tr data-run=\"{SEED_FAILED}\"")));
    let showcase = visit(&server, "/?pipeline=showcase");
    assert_eq!(showcase.matches("<tr data-run=").count(), 1, "{showcase}");
}

#[test]
fn run_pages_draw_the_dag_coloured_by_status_with_reasons() {
    let store = store();
    let server = Server::start(store, &[]);
    let steps = [
        "digits_data_loader",
        "normalizer",
        "svc_trainer",
        "evaluator",
    ];

    let first = visit(&server, &format!("/runs/{SEED_FIRST}"));
    for s in steps {
        assert!(
            svg_node(&first, s).contains("class=\"node executed\""),
            "{}",
            svg_node(&first, s)
        );
        assert!(row(&first, s).contains("data-status=\"executed\""));
    }
    assert!(
        row(&first, "svc_trainer").contains("no earlier execution"),
        "{}",
        row(&first, "svc_trainer")
    );
    assert_eq!(
        first.matches("class=\"edge\"").count(),
        7,
        "loader -> normalizer (2), -> trainer (2), -> evaluator (3)"
    );

    let cached = visit(&server, &format!("/runs/{SEED_CACHED}"));
    for s in steps {
        let n = svg_node(&cached, s);
        assert!(n.contains("class=\"node cached\""), "{n}");
        assert!(n.contains("<tspan class=\"badge\">cached</tspan>"), "{n}");
        assert!(
            row(&cached, s).contains("reused execution"),
            "{}",
            row(&cached, s)
        );
    }

    let failed = visit(&server, &format!("/runs/{SEED_FAILED}"));
    assert!(svg_node(&failed, "svc_trainer").contains("class=\"node failed\""));
    assert!(
        row(&failed, "svc_trainer").contains("gamma must be finite and &gt; 0, got -1"),
        "{}",
        row(&failed, "svc_trainer")
    );
    assert!(svg_node(&failed, "evaluator").contains("class=\"node skipped\""));
    assert!(
        row(&failed, "evaluator").contains("upstream step `svc_trainer` failed"),
        "{}",
        row(&failed, "evaluator")
    );
    // A finished run is not watched.
    assert!(!failed.contains("data-live-state"), "{failed}");

    let sweep = visit(&server, &format!("/runs/{}", sweep_run(0.032)));
    assert!(svg_node(&sweep, "normalizer").contains("class=\"node cached\""));
    assert!(
        row(&sweep, "svc_trainer").contains("parameter `gamma` changed"),
        "{}",
        row(&sweep, "svc_trainer")
    );
    assert!(row(&sweep, "svc_trainer").contains("-&gt; 0.032)"));
    // Each node links to its step's page.
    assert!(sweep.contains("/steps/svc_trainer\">"), "{sweep}");

    // Three calls of `shift` side by side are framed as one fan-out group.
    let showcase = visit(&server, &format!("/runs/{SHOWCASE}"));
    assert!(
        showcase.contains("class=\"fanout\" data-step=\"shift\" data-calls=\"3\""),
        "{showcase}"
    );
}

#[test]
fn step_pages_explain_reruns_and_link_inputs_to_producers() {
    let store = store();
    let server = Server::start(store, &[]);
    let run = sweep_run(0.032);
    let dom = visit(&server, &format!("/runs/{run}/steps/svc_trainer"));
    let why = element(&dom, "id=\"explanation\"", "</section>");
    assert!(
        why.contains("It ran because: parameter `gamma` changed"),
        "{why}"
    );
    assert!(
        why.contains("class=\"change\">parameter `gamma` changed ("),
        "{why}"
    );
    assert!(
        why.contains("Compared with the earlier execution of the same call"),
        "{why}"
    );
    // Inputs: the scaled features came from this run's (cached) normalizer.
    let inputs = element(&dom, "id=\"inputs\"", "</section>");
    assert!(inputs.contains("data-input=\"x_train\""), "{inputs}");
    assert!(
        inputs.contains("/steps/normalizer\">normalizer</a>"),
        "{inputs}"
    );
    assert!(
        inputs.contains("<code>0.032</code>"),
        "the gamma parameter: {inputs}"
    );
    // Outputs: the model, consumed by the evaluator of the same run.
    let outputs = element(&dom, "id=\"outputs\"", "</section>");
    assert!(
        outputs.contains("/steps/evaluator\">evaluator</a>"),
        "{outputs}"
    );
    assert!(outputs.contains(&format!(">{run}</a>")), "{outputs}");
    let components = element(&dom, "id=\"components\"", "</section>");
    assert!(components.contains("cache key"), "{components}");

    let cached = visit(&server, &format!("/runs/{SEED_CACHED}/steps/normalizer"));
    let why = element(&cached, "id=\"explanation\"", "</section>");
    assert!(why.contains("Cached: reused execution"), "{why}");
    assert!(
        why.contains(&format!(">{SEED_FIRST}</a>")),
        "links the run it reused: {why}"
    );

    let failed = visit(&server, &format!("/runs/{SEED_FAILED}/steps/svc_trainer"));
    assert!(failed.contains("<span class=\"key failed\">failed</span>"));
    let error = element(&failed, "id=\"error\"", "</section>");
    assert!(
        error.contains("gamma must be finite and &gt; 0, got -1"),
        "{error}"
    );
}

#[test]
fn artifact_pages_preview_numbers_tables_json_and_images() {
    let store = store();
    let server = Server::start(store, &[]);

    // A Vec<f64> (bincode): statistics, a histogram and a line with a point per value.
    let samples = output_hash(store, SHOWCASE, "samples", "output");
    let dom = visit(&server, &format!("/artifacts/{samples}"));
    let stat = |name: &str| {
        let cell = element(&dom, &format!("data-stat=\"{name}\""), "</dd>");
        cell[cell.find('>').unwrap() + 1..cell.len() - 5].to_string()
    };
    assert_eq!(stat("count"), "20");
    assert_eq!(stat("min"), "1");
    assert_eq!(stat("max"), "20");
    assert_eq!(stat("mean"), "10.5");
    assert_eq!(stat("median"), "10.5");
    let line = element(&dom, "class=\"chart line\"", "</svg>");
    let pts = points(line);
    assert_eq!(pts.len(), 20, "{line}");
    assert_eq!(pts[0], (0.0, 1.0));
    assert_eq!(pts[19], (19.0, 20.0));
    assert!(
        line.contains(">index (position in the vector)</text>"),
        "{line}"
    );
    let hist = element(&dom, "class=\"chart histogram\"", "</svg>");
    let total: usize = hist
        .match_indices("data-count=\"")
        .map(|(i, m)| {
            let rest = &hist[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(total, 20, "{hist}");
    let facts = element(&dom, "id=\"facts\"", "</dl>");
    assert!(
        facts.contains("<code>alloc::vec::Vec&lt;f64&gt;</code>"),
        "{facts}"
    );
    assert!(facts.contains("bincode v1"), "{facts}");
    assert!(facts.contains(&samples), "{facts}");
    let sidecar = element(&dom, "id=\"sidecar\"", "</section>");
    assert!(sidecar.contains("produced_by"), "{sidecar}");

    // The seed's labels (Vec<u32>): 300 values, each digit 0..=9.
    let labels = output_hash(store, SEED_FIRST, "digits_data_loader", "y_train");
    let dom = visit(&server, &format!("/artifacts/{labels}"));
    assert!(dom.contains("data-stat=\"count\">300</dd>"), "{dom}");
    assert!(dom.contains("data-stat=\"min\">0</dd>") && dom.contains("data-stat=\"max\">9</dd>"));
    assert_eq!(
        points(element(&dom, "class=\"chart line\"", "</svg>")).len(),
        300
    );

    // A Vec of structs stored as JSON: a table of its first rows.
    let table = output_hash(store, SHOWCASE, "leaderboard", "output");
    let dom = visit(&server, &format!("/artifacts/{table}"));
    let t = element(&dom, "data-kind=\"table\"", "</table>");
    assert!(t.contains("<th>id</th><th>label</th><th>score</th>"), "{t}");
    assert!(
        t.contains("<td>model-0</td>") && t.contains("<td>model-19</td>"),
        "{t}"
    );
    assert!(!t.contains("model-20"), "first 20 rows only: {t}");
    assert!(dom.contains("20 of 30 rows."), "{dom}");

    // JSON scalar: the seed's accuracy.
    let accuracy = output_hash(store, SEED_FIRST, "evaluator", "output");
    let dom = visit(&server, &format!("/artifacts/{accuracy}"));
    let stored: f64 = Store::open(store)
        .unwrap()
        .load(SEED_FIRST, "evaluator", "output")
        .unwrap();
    assert!(
        dom.contains(&format!("data-kind=\"value\"><code>{stored}</code>")),
        "{dom}"
    );

    // Images: PNG bytes and SVG text, served from the artifact's image address.
    let png = output_hash(store, SHOWCASE, "thumbnail_png", "output");
    let dom = visit(&server, &format!("/artifacts/{png}"));
    assert!(
        dom.contains(&format!(
            "data-mime=\"image/png\" src=\"/artifacts/{png}/image\""
        )),
        "{dom}"
    );
    let image = server.get(&format!("/artifacts/{png}/image"), &[]);
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(image.bytes, PNG);
    let svg = output_hash(store, SHOWCASE, "curve_svg", "output");
    let dom = visit(&server, &format!("/artifacts/{svg}"));
    assert!(dom.contains("data-mime=\"image/svg+xml\""), "{dom}");

    // A struct stored with bincode cannot be read without its type: said so, with bytes.
    let matrix = output_hash(store, SEED_FIRST, "normalizer", "x_train");
    let dom = visit(&server, &format!("/artifacts/{matrix}"));
    let opaque = element(&dom, "data-kind=\"opaque\"", "</p>");
    assert!(opaque.contains("Json"), "{opaque}");
    assert!(dom.contains("class=\"hex\""), "{dom}");
    // Its lineage: written by the normalizer, consumed by the trainer and the evaluator.
    let lineage = element(&dom, "id=\"lineage\"", "</section>");
    assert!(lineage.contains("/steps/svc_trainer\">"), "{lineage}");
}

#[test]
fn compare_page_shows_both_runs_the_diff_and_scalar_outputs() {
    let store = store();
    let server = Server::start(store, &[]);
    let b = sweep_run(0.512);
    let dom = visit(&server, &format!("/compare?a={SEED_FIRST}&b={b}"));
    assert!(dom.contains("2 of 4 steps differ."), "{dom}");
    let trainer = element(&dom, "<tr data-step=\"svc_trainer\"", "</tr>");
    assert!(trainer.contains("data-same=\"false\""), "{trainer}");
    assert!(
        trainer.contains("parameter `gamma` changed (0.256 -&gt; 0.512)"),
        "{trainer}"
    );
    let loader = element(&dom, "<tr data-step=\"digits_data_loader\"", "</tr>");
    assert!(loader.contains("data-same=\"true\""), "{loader}");
    assert!(loader.contains("<span class=\"key executed\">executed</span>"));
    assert!(loader.contains("<span class=\"key cached\">cached</span>"));
    let s = Store::open(store).unwrap();
    let acc_a: f64 = s.load(SEED_FIRST, "evaluator", "output").unwrap();
    let acc_b: f64 = s.load(&b, "evaluator", "output").unwrap();
    let scalars = element(&dom, "<tr data-output=\"evaluator\"", "</tr>");
    let fmt = |v: f64| {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    assert!(
        scalars.contains(&format!("<td>{}</td><td>{}</td>", fmt(acc_a), fmt(acc_b))),
        "{scalars} ({acc_a}, {acc_b})"
    );
}

#[test]
fn metrics_page_charts_accuracy_against_the_swept_gamma() {
    let store = store();
    let server = Server::start(store, &[]);
    let dom = visit(&server, "/pipelines/digits_pipeline/metrics");
    assert!(dom.contains("log_metric"), "{dom}");
    // The accuracy the evaluator logged, charted against gamma like its output.
    let logged = element(&dom, "data-metric=\"evaluator.accuracy\"", "</section>");
    assert!(
        logged.contains(">evaluator.accuracy (logged metric)</text>"),
        "{logged}"
    );
    assert!(
        logged.contains(">svc_trainer.gamma (parameter)</text>"),
        "{logged}"
    );
    let logged_points = points(logged);
    let chart = element(&dom, "data-metric=\"evaluator\"", "</section>");
    assert!(
        chart.contains(">svc_trainer.gamma (parameter)</text>"),
        "{chart}"
    );
    assert!(chart.contains(">evaluator (step output)</text>"), "{chart}");
    let s = Store::open(store).unwrap();
    let mut expected: Vec<(f64, f64)> = vec![
        (0.256, s.load(SEED_FIRST, "evaluator", "output").unwrap()),
        (0.256, s.load(SEED_CACHED, "evaluator", "output").unwrap()),
    ];
    for g in SWEEP {
        expected.push((g, s.load(&sweep_run(g), "evaluator", "output").unwrap()));
    }
    expected.sort_by(|a, b| a.0.total_cmp(&b.0));
    let got = points(chart);
    assert_eq!(
        got, expected,
        "one point per run with an accuracy; the failed run has none"
    );
    assert_eq!(logged_points, expected, "the logged accuracy is the output");
    assert!(got.iter().all(|&(_, y)| y > 0.0 && y <= 1.0));
}

#[test]
fn screenshots_of_the_run_step_artifact_and_metrics_pages() {
    let store = store();
    let server = Server::start(store, &[]);
    let samples = output_hash(store, SHOWCASE, "samples", "output");
    let dir = fresh_dir("screenshots");
    let pages = [
        ("ui-run.png", format!("/runs/{SEED_FAILED}"), "1400,820"),
        (
            "ui-step.png",
            format!("/runs/{}/steps/svc_trainer", sweep_run(0.032)),
            "1400,840",
        ),
        (
            "ui-artifact.png",
            format!("/artifacts/{samples}"),
            "1400,900",
        ),
        (
            "ui-metrics.png",
            "/pipelines/digits_pipeline/metrics".to_string(),
            "1400,560",
        ),
    ];
    for (file, path, size) in pages {
        let shot = dir.join(file);
        render(
            &format!("{}{path}", server.base),
            2000,
            &[
                format!("--screenshot={}", shot.display()),
                format!("--window-size={size}"),
            ],
        );
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{file}: {} bytes",
            bytes.len()
        );
        // `UI_SCREENSHOTS=docs` keeps them for the README.
        if let Some(keep) = std::env::var_os("UI_SCREENSHOTS") {
            std::fs::copy(&shot, Path::new(&keep).join(file)).expect("keep the screenshot");
        }
    }
}
