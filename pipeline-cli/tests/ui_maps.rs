//! A map's per-item calls in the dashboard and on the lineage page: one stacked node per
//! template with counts by status, its edges folded, and the calls one by one on request
//! (`?expand=shift`); the run and compare pages' tables group them as `pipeline show` does.

mod common;

use std::path::Path;

use common::{cli, dashboard_page, fresh_dir, render, run_mapped};
use pipeline::prelude::*;

#[step]
fn listed(ks: Vec<u32>) -> Vec<u32> {
    ks
}

#[step]
fn check(k: u32) -> Result<u32, String> {
    if k == 13 {
        Err("13 is refused".into())
    } else {
        Ok(k * 2)
    }
}

/// `check` mapped over the list `ks`: item 13 fails.
#[pipeline(name = "checked")]
fn checked(ks: Vec<u32>) -> Artifact<Vec<u32>> {
    let list = listed(ks);
    list.map(|k| check(k))
}

/// Runs `checked(ks)` as run `name` in the store at `store`; returns the run's id and
/// whether it succeeded (or why not).
fn run_checked(store: &Path, ks: Vec<u32>, name: &str) -> (String, Result<(), String>) {
    let ran = checked(ks)
        .store_path(store)
        .run_name(name)
        .run()
        .map(|_| ())
        .map_err(|e| e.to_string());
    (run_id(store, name), ran)
}

fn run_id(store: &Path, name: &str) -> String {
    pipeline::Store::open(store).unwrap().run(name).unwrap().id
}

/// The body of the dashboard's page at `path` (asserting 200).
fn page(store: &Path, path: &str) -> String {
    let reply = dashboard_page(store, path);
    assert!(reply.starts_with("HTTP/1.1 200"), "GET {path}:\n{reply}");
    reply[reply.find("\r\n\r\n").unwrap() + 4..].to_string()
}

/// The SVG drawing of a page.
fn svg(page: &str) -> &str {
    &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()]
}

/// The opening tags of the drawn nodes (`<g class="node ...">`).
fn nodes(page: &str) -> Vec<&str> {
    svg(page)
        .match_indices("<g class=\"node ")
        .map(|(i, _)| {
            let rest = &svg(page)[i..];
            &rest[..rest.find('>').unwrap()]
        })
        .collect()
}

/// The opening tag of the edge from `from` to `to`, and its label.
fn edge<'p>(page: &'p str, from: &str, to: &str) -> (&'p str, &'p str) {
    let marker = format!("<g class=\"edge\" data-from=\"{from}\" data-to=\"{to}\"");
    let at = svg(page)
        .find(&marker)
        .unwrap_or_else(|| panic!("no edge {from} -> {to}:\n{}", svg(page)));
    let rest = &svg(page)[at..];
    let tag = &rest[..rest.find('>').unwrap()];
    let text = &rest[rest.find("text-anchor=\"middle\">").unwrap() + 21..];
    (tag, &text[..text.find("</text>").unwrap()])
}

#[test]
fn a_maps_calls_are_one_stacked_node_until_expanded() {
    let store = fresh_dir("stack").join("store");
    run_mapped(&store, 50, "mapped-50");
    let id = run_id(&store, "mapped-50");
    let collapsed = page(&store, &format!("/runs/{id}"));
    // source, numbers_up_to, the split, the stack of 50 `shift` calls, the gather.
    let drawn = nodes(&collapsed);
    assert_eq!(drawn.len(), 5, "{drawn:#?}");
    let stacks: Vec<&&str> = drawn.iter().filter(|n| n.contains(" stack ")).collect();
    assert_eq!(stacks.len(), 1, "{drawn:#?}");
    assert!(
        stacks[0].contains(
            r#"data-group="shift" data-status="executed" data-calls="50" data-counts="50 executed""#
        ),
        "{}",
        stacks[0]
    );
    assert!(
        !svg(&collapsed).contains("data-step=\"shift["),
        "no per-item node"
    );
    assert!(svg(&collapsed).contains(">shift <tspan class=\"calls\">×50</tspan></text>"));
    assert!(svg(&collapsed).contains(r#"<tspan class="count executed">50 executed</tspan>"#));
    // The split's 50 items are one line, and each group of edges one edge.
    assert!(
        svg(&collapsed).contains(">50 items</text>"),
        "{}",
        svg(&collapsed)
    );
    assert!(!svg(&collapsed).contains(">item[1]</text>"));
    assert_eq!(svg(&collapsed).matches("<g class=\"edge\"").count(), 4);
    let (tag, label) = edge(&collapsed, "pipeline.split", "shift");
    assert!(tag.contains("data-calls=\"50\""), "{tag}");
    assert_eq!(label, "k ×50");
    assert_eq!(edge(&collapsed, "source", "shift").1, "xs ×50");
    assert_eq!(
        edge(&collapsed, "shift", "pipeline.gather").1,
        "item[i] ×50"
    );
    // The stacked node links to the page that expands it.
    let href = format!("<a href=\"/runs/{id}?expand=shift\">\n<g class=\"node stack");
    assert!(collapsed.contains(&href), "{}", svg(&collapsed));
    // The table: the first three calls, then one row for the other 47.
    for i in 0..3 {
        assert!(collapsed.contains(&format!(
            "<tr data-step=\"shift[{i}]\" data-status=\"executed\""
        )));
    }
    assert!(!collapsed.contains("<tr data-step=\"shift[3]\""));
    assert!(
        collapsed.contains(r#"<tr class="more" data-group="shift" data-calls="47"><td>shift[3..=49]</td><td class="status">47 more: 47 executed</td>"#),
        "{collapsed}"
    );
    assert!(collapsed.contains(&format!(
        "<a href=\"/runs/{id}?expand=shift\">show each call of shift</a>"
    )));

    // Expanded: every call is a node and a row, in a frame that links back.
    let expanded = page(&store, &format!("/runs/{id}?expand=shift"));
    assert_eq!(nodes(&expanded).len(), 54);
    for i in 0..50 {
        let name = format!("shift[{i}]");
        assert!(
            svg(&expanded).contains(&format!("data-step=\"{name}\" data-status=\"executed\"")),
            "{name}"
        );
        assert!(
            expanded.contains(&format!("<tr data-step=\"{name}\"")),
            "{name}"
        );
        // Each item's edge leaves from its own output line.
        assert_eq!(
            edge(&expanded, "pipeline.split", &name).1,
            format!("item[{i}] → k")
        );
    }
    assert!(!expanded.contains("class=\"more\""));
    assert!(!svg(&expanded).contains(" stack "));
    assert!(
        svg(&expanded).contains(&format!("<a href=\"/runs/{id}\"><text class=\"collapse\"")),
        "{}",
        svg(&expanded)
    );
    assert!(expanded.contains("every call of <b>shift</b> is shown"));

    // The split's step page lists its first items, then one row; the gather's likewise.
    let split = page(&store, &format!("/runs/{id}/steps/pipeline.split"));
    assert_eq!(
        split.matches("<tr data-output=\"item[").count(),
        3,
        "{split}"
    );
    assert!(split.contains(r#"<tr class="more" data-group="item" data-calls="47"><td>item[3..=49]</td><td colspan="5">47 more outputs, "#), "{split}");
    let every = format!("/runs/{id}/steps/pipeline.split?expand=item");
    assert!(split.contains(&format!("<a href=\"{every}\">show each item</a>")));
    let split = page(&store, &every);
    assert_eq!(split.matches("<tr data-output=\"item[").count(), 50);
    assert!(!split.contains("class=\"more\""));
    let gather = page(&store, &format!("/runs/{id}/steps/pipeline.gather"));
    assert_eq!(
        gather.matches("<tr data-input=\"item[").count(),
        3,
        "{gather}"
    );
    assert!(
        gather.contains(r#"<td>item[3..=49]</td><td colspan="3">47 more inputs · "#),
        "{gather}"
    );

    // Collapsed, the page's size does not grow with the list: 500 items, same drawing.
    run_mapped(&store, 500, "mapped-500");
    let id500 = run_id(&store, "mapped-500");
    let big = page(&store, &format!("/runs/{id500}"));
    assert_eq!(nodes(&big).len(), 5);
    assert!(big.contains("data-calls=\"500\" data-counts=\"50 cached, 450 executed\""));
    assert!(
        big.len() < collapsed.len() + 1000,
        "{} bytes for 500 items, {} for 50",
        big.len(),
        collapsed.len()
    );
}

#[test]
fn a_failed_item_shows_on_its_stack_and_in_the_summary_row() {
    let store = fresh_dir("failed").join("store");
    let (id, ran) = run_checked(&store, (0..20).collect(), "checked-20");
    let err = ran.unwrap_err();
    assert!(err.contains("13 is refused"), "{err}");
    let collapsed = page(&store, &format!("/runs/{id}"));
    let drawn = nodes(&collapsed);
    let stack = drawn.iter().find(|n| n.contains(" stack ")).unwrap();
    assert!(
        stack.contains(r#"class="node stack failed" "#)
            && stack.contains(r#"data-counts="19 executed, 1 failed""#),
        "{stack}"
    );
    assert!(svg(&collapsed).contains(r#"<tspan class="count failed">1 failed</tspan>"#));
    assert!(
        svg(&collapsed).contains(">failed: check[13]</text>"),
        "{}",
        svg(&collapsed)
    );
    // The gather after the map was skipped.
    assert!(svg(&collapsed).contains(r#"data-step="pipeline.gather" data-status="skipped""#));
    // One edge from the stack into it, the failed call's (which has no output) among them.
    assert_eq!(
        edge(&collapsed, "check", "pipeline.gather").1,
        "item[i] ×20"
    );
    assert_eq!(
        svg(&collapsed)
            .matches("data-to=\"pipeline.gather\"")
            .count(),
        1
    );
    // The summary row links the failed call's page.
    assert!(
        collapsed.contains(&format!(
            "failed: <a href=\"/runs/{id}/steps/check%5B13%5D\">check[13]</a> · "
        )),
        "{collapsed}"
    );
    assert!(
        collapsed.contains("17 more: 16 executed, 1 failed"),
        "{collapsed}"
    );

    // The first call failing, the stack's lines are still the other calls' output.
    let (id, ran) = run_checked(&store, vec![13, 1, 2], "first-fails");
    assert!(ran.is_err());
    let collapsed = page(&store, &format!("/runs/{id}"));
    let stack = &svg(&collapsed)[svg(&collapsed).find("data-group=\"check\"").unwrap()..];
    let stack = &stack[..stack.find("</g>").unwrap()];
    assert!(stack.contains(">output</text>"), "{stack}");
    assert!(stack.contains(">failed: check[0]</text>"), "{stack}");
}

#[test]
fn equal_items_each_have_their_own_edge() {
    // Items 0 and 2 are equal: the same content, stored once.
    let store = fresh_dir("equal").join("store");
    let (id, ran) = run_checked(&store, vec![5, 6, 5], "equal");
    ran.unwrap();
    let expanded = page(&store, &format!("/runs/{id}?expand=check"));
    for i in 0..3 {
        assert_eq!(
            edge(&expanded, "pipeline.split", &format!("check[{i}]")).1,
            format!("item[{i}] → k")
        );
    }
    // `lineage --json` names that edge's output the same way.
    let graph = cli(&store, &["--json", "lineage", "equal"]).json();
    let into = |to: &str| {
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["to"] == to && e["from"] == "pipeline.split")
            .unwrap()["output"]
            .clone()
    };
    assert_eq!(into("check[0]"), "item[0]");
    assert_eq!(into("check[2]"), "item[2]");
    // The edge into `check[2]` leaves from the split's third output line, not the first.
    let split = svg(&expanded).find("data-step=\"pipeline.split\"").unwrap();
    let line_y = |item: &str| -> f64 {
        let s = svg(&expanded);
        let at = s[split..].find(&format!(">{item}</text>")).unwrap() + split;
        let tag = &s[s[..at].rfind("<text").unwrap()..at];
        let y = &tag[tag.find(" y=\"").unwrap() + 4..];
        y[..y.find('"').unwrap()].parse().unwrap()
    };
    let (tag, _) = edge(&expanded, "pipeline.split", "check[2]");
    let rest = &svg(&expanded)[svg(&expanded).find(tag).unwrap()..];
    let d = &rest[rest.find("d=\"M").unwrap() + 4..];
    let start_y: f64 = d[d.find(',').unwrap() + 1..d.find(' ').unwrap()]
        .parse()
        .unwrap();
    // An output line's text sits 4 px below the middle the edge leaves from.
    assert_eq!(start_y + 4.0, line_y("item[2]"));
    assert_ne!(start_y + 4.0, line_y("item[0]"));
}

#[test]
fn compare_groups_a_maps_calls_and_expands_them() {
    let store = fresh_dir("compare").join("store");
    run_mapped(&store, 12, "twelve-a");
    run_mapped(&store, 12, "twelve-b");
    let (a, b) = (run_id(&store, "twelve-a"), run_id(&store, "twelve-b"));
    let collapsed = page(&store, &format!("/compare?a={a}&b={b}"));
    // The built-in split and gather are bookkeeping, as in `pipeline diff`: not listed,
    // not counted (source, numbers_up_to and 12 shifts).
    assert!(
        !collapsed.contains("<tr data-step=\"pipeline."),
        "{collapsed}"
    );
    assert!(collapsed.contains("0 of 14 steps differ."), "{collapsed}");
    for i in 0..3 {
        assert!(collapsed.contains(&format!("<tr data-step=\"shift[{i}]\" data-same=\"true\">")));
    }
    assert!(!collapsed.contains("<tr data-step=\"shift[3]\""));
    // The built-in split and gather are bookkeeping, as in `pipeline diff`: not listed,
    // not counted (source, numbers_up_to and 12 shifts).
    assert!(
        !collapsed.contains("<tr data-step=\"pipeline."),
        "{collapsed}"
    );
    assert!(collapsed.contains("0 of 14 steps differ."), "{collapsed}");
    assert!(
        collapsed.contains(r#"<tr class="more" data-group="shift" data-calls="9" data-differ="0"><td>shift[3..=11] <span class="dim">(9 more)</span></td><td>9 executed</td><td>9 cached</td><td>0 of 9 differ · "#),
        "{collapsed}"
    );
    let expand = format!("/compare?a={a}&amp;b={b}&amp;expand=shift");
    assert!(collapsed.contains(&expand), "{collapsed}");
    let expanded = page(&store, &format!("/compare?a={a}&b={b}&expand=shift"));
    for i in 0..12 {
        assert!(expanded.contains(&format!("<tr data-step=\"shift[{i}]\" data-same=\"true\">")));
    }
    assert!(!expanded.contains("class=\"more\""));
    assert!(
        expanded.contains(&format!(
            "every call of <b>shift</b> is shown (<a href=\"/compare?a={a}&amp;b={b}\">collapse</a>)"
        )),
        "{expanded}"
    );
}

#[test]
fn the_lineage_page_stacks_a_maps_calls_and_lists_them_in_chromium() {
    let store = fresh_dir("lineage").join("store");
    run_mapped(&store, 50, "mapped-50");
    let file = store.with_file_name("mapped-50.html");
    cli(
        &store,
        &["lineage", "mapped-50", "--html", file.to_str().unwrap()],
    )
    .ok();
    let url = format!("file://{}", file.canonicalize().unwrap().display());
    let dom = render(&url, 2000, &[]).dom;
    // The script ran and saw all 54 calls; the drawing has 5 nodes, one of them the stack.
    assert!(dom.contains("data-rendered=\"54\""), "{dom}");
    assert_eq!(dom.matches("<g class=\"node ").count(), 5, "{dom}");
    assert!(dom.contains(r#"data-group="shift" data-status="executed" data-calls="50""#));
    assert!(!dom.contains("data-step=\"shift[7]\""));
    // Its table sums up the calls past the first three.
    assert!(dom.contains(r#"<tr class="more" data-group="shift"><td>shift[3..=49]</td><td>47 more: 47 executed</td>"#), "{dom}");
}

#[step]
fn upto(n: &u32) -> Vec<u32> {
    (0..*n).collect()
}

#[step]
fn cell(row: &u32, column: &u32) -> u32 {
    10 * row + column
}

/// A map inside a map: per row `r` of `0..n`, per column of `0..r`.
#[pipeline(name = "triangle")]
fn triangle(n: u32) -> Artifact<Vec<Vec<u32>>> {
    let rows = listed((0..n).collect::<Vec<u32>>());
    rows.map(|row| upto(row).map(|column| cell(row, column)))
}

#[test]
fn a_nested_maps_calls_are_one_stack_and_expand_together() {
    let store = fresh_dir("nested").join("store");
    triangle(4)
        .store_path(&store)
        .run_name("triangle-4")
        .run()
        .unwrap();
    let id = run_id(&store, "triangle-4");
    let collapsed = page(&store, &format!("/runs/{id}"));
    let drawn = nodes(&collapsed);
    // 0 + 1 + 2 + 3 cells, from 4 rows: one stack for all of `cell[r][c]`.
    let cells: Vec<&&str> = drawn
        .iter()
        .filter(|n| n.contains("data-group=\"cell\""))
        .collect();
    assert_eq!(cells.len(), 1, "{drawn:#?}");
    assert!(cells[0].contains("data-calls=\"6\""), "{}", cells[0]);
    assert!(
        !svg(&collapsed).contains("data-step=\"cell["),
        "no per-item node"
    );
    assert!(svg(&collapsed).contains(">cell <tspan class=\"calls\">×6</tspan></text>"));
    // `?expand=cell` draws each of the 6 calls, whatever its row.
    let expanded = page(&store, &format!("/runs/{id}?expand=cell"));
    for name in ["cell[1][0]", "cell[3][0]", "cell[3][2]"] {
        assert!(
            svg(&expanded).contains(&format!("data-step=\"{name}\"")),
            "{name} not drawn"
        );
    }
    assert_eq!(svg(&expanded).matches("data-step=\"cell[").count(), 6);
    // Drawn in item order, whatever order the run recorded them in.
    let drawn: Vec<usize> = ["cell[1][0]", "cell[2][0]", "cell[2][1]", "cell[3][0]"]
        .iter()
        .map(|n| svg(&expanded).find(&format!("data-step=\"{n}\"")).unwrap())
        .collect();
    assert!(drawn.windows(2).all(|w| w[0] < w[1]), "{drawn:?}");
    // The table lists the rows' groups together, by row.
    let table = &expanded[expanded.find("<table").unwrap()..];
    let order: Vec<usize> = ["cell[1][0]", "cell[2][0]", "cell[2][1]", "cell[3][0]"]
        .iter()
        .map(|n| {
            table
                .find(&format!(">{n}<"))
                .unwrap_or_else(|| panic!("{n} not listed"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}
