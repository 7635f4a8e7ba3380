//! Fan-in (issue 18): a `Vec<Artifact<T>>` built by a loop in a pipeline body, passed to a
//! step that takes `&[T]`, `&Vec<T>` or `Vec<T>`, through the built-in `gather` call.
//! Each test counts the executions of every step, per item.

mod common;

use common::{count, executed, temp_store};
use pipeline::prelude::*;
use pipeline::Reason;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Metrics {
    lambda: f64,
    score: f64,
}

#[step]
fn fit(lambda: f64, tag: &str) -> Metrics {
    count(format!("fit {tag} {lambda}"));
    if lambda < 0.0 {
        panic!("negative lambda {lambda}");
    }
    Metrics {
        lambda,
        // Best at lambda = 1.
        score: 1.0 / (1.0 + (lambda - 1.0).abs()),
    }
}

#[step]
fn select_best(all: &[Metrics], tag: &str) -> Metrics {
    count(format!("select_best {tag}"));
    all.iter()
        .cloned()
        .fold(None::<Metrics>, |best, m| match best {
            Some(b) if b.score >= m.score => Some(b),
            _ => Some(m),
        })
        .unwrap_or(Metrics {
            lambda: f64::NAN,
            score: 0.0,
        })
}

#[step]
fn lambdas_of(all: Vec<Metrics>, tag: &str) -> Vec<f64> {
    count(format!("lambdas_of {tag}"));
    all.into_iter().map(|m| m.lambda).collect()
}

#[pipeline]
fn sweep(lambdas: Vec<f64>, tag: String) -> (Artifact<Metrics>, Artifact<Vec<f64>>) {
    let all: Vec<Artifact<Metrics>> = lambdas.iter().map(|&l| fit(l, tag.clone())).collect();
    let best = select_best(&all, tag.clone());
    let order = lambdas_of(all, tag);
    (best, order)
}

#[test]
fn a_list_of_outputs_reaches_a_step_in_order_and_is_cached_per_item() {
    let (_dir, store) = temp_store();
    let tag = "order";
    let run = sweep(vec![0.1, 1.0, 10.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    let (best, order) = run.output();
    assert_eq!(best.load().unwrap().lambda, 1.0);
    assert_eq!(order.load().unwrap(), vec![0.1, 1.0, 10.0]);
    // Three fits, one gather per consumer, two consumers.
    let gathers: Vec<_> = run
        .steps()
        .iter()
        .filter(|s| s.step() == "pipeline.gather")
        .collect();
    assert_eq!(gathers.len(), 2, "{:?}", common::statuses(&run));
    // Both gather the same items, so they have one key: one executes, the other reuses it.
    let executed_gathers = gathers
        .iter()
        .filter(|s| s.status() == StepStatus::Executed)
        .count();
    assert_eq!(executed_gathers, 1, "{:?}", common::statuses(&run));
    for l in [0.1, 1.0, 10.0] {
        assert_eq!(executed(&format!("fit {tag} {l}")), 1);
    }

    // Nothing changed: everything, the gathers included, is reused.
    let again = sweep(vec![0.1, 1.0, 10.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    assert!(
        again
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached),
        "{:?}",
        common::statuses(&again)
    );
    assert_eq!(executed(&format!("select_best {tag}")), 1);

    // Reordered: no fit runs again; the gathered lists follow the new order, so the steps
    // that take them run on the new lists.
    let reordered = sweep(vec![10.0, 0.1, 1.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    for l in [0.1, 1.0, 10.0] {
        assert_eq!(executed(&format!("fit {tag} {l}")), 1, "fit {l}");
    }
    assert_eq!(reordered.output().1.load().unwrap(), vec![10.0, 0.1, 1.0]);
    assert_eq!(reordered.output().0.load().unwrap().lambda, 1.0);
}

#[test]
fn appending_or_editing_one_item_runs_only_that_item() {
    let (_dir, store) = temp_store();
    let tag = "edit";
    sweep(vec![0.5, 2.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();

    // Appended: only the new item's fit runs, then the gathers and their consumers.
    let appended = sweep(vec![0.5, 2.0, 1.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(executed(&format!("fit {tag} 0.5")), 1);
    assert_eq!(executed(&format!("fit {tag} 2")), 1);
    assert_eq!(executed(&format!("fit {tag} 1")), 1);
    assert_eq!(appended.output().0.load().unwrap().lambda, 1.0);
    assert_eq!(executed(&format!("select_best {tag}")), 2);
    // The gather's miss says the list grew (not "declarations changed").
    let gather = appended
        .steps()
        .iter()
        .find(|s| s.step() == "pipeline.gather" && s.status() == StepStatus::Executed)
        .expect("a gather executed");
    assert_eq!(
        gather.reason().changes(),
        [
            Reason::ListItemChanged {
                index: 2,
                producer: "fit_3".into()
            },
            Reason::ListLengthChanged { old: 2, new: 3 }
        ]
    );
    assert_eq!(
        gather.reason().to_string(),
        "item 2 changed (produced by `fit_3`); the list has 3 items, was 2"
    );

    // Edited: the last item's value changes; only its fit runs.
    let edited = sweep(vec![0.5, 2.0, 1.5], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(executed(&format!("fit {tag} 1.5")), 1);
    assert_eq!(executed(&format!("fit {tag} 0.5")), 1);
    assert_eq!(edited.output().1.load().unwrap(), vec![0.5, 2.0, 1.5]);
    // The gather's miss names the item that changed.
    let gather = edited
        .steps()
        .iter()
        .find(|s| s.step() == "pipeline.gather" && s.status() == StepStatus::Executed)
        .expect("a gather executed");
    // Items are compared by content: the one new item, by its position.
    match gather.reason() {
        Reason::ListItemChanged { index, producer } => {
            assert_eq!(*index, 2);
            assert!(producer.starts_with("fit"), "{producer}");
        }
        other => panic!("unexpected reason {other:?}"),
    }
    // The steps that take the list say how it changed, read through the gather.
    let best = edited.step("select_best").expect("select_best");
    assert_eq!(best.status(), StepStatus::Executed);
    assert!(
        best.reason()
            .to_string()
            .starts_with("input `all` changed: item 2 changed (produced by `fit"),
        "{}",
        best.reason()
    );
}

#[test]
fn an_empty_list_gathers_to_an_empty_vec() {
    let (_dir, store) = temp_store();
    let run = sweep(Vec::new(), "empty".into())
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(run.output().1.load().unwrap(), Vec::<f64>::new());
    assert!(run.output().0.load().unwrap().lambda.is_nan());
    let again = sweep(Vec::new(), "empty".into())
        .store(store)
        .run()
        .unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
}

#[test]
fn a_failing_item_skips_the_gather_and_a_fixed_rerun_runs_only_it() {
    let (_dir, store) = temp_store();
    let tag = "fail";
    let failed = sweep(vec![0.5, -1.0, 3.0], tag.into())
        .store(store.clone())
        .run();
    let Err(pipeline::Error::StepFailed { step, .. }) = &failed else {
        panic!("expected a failed step, got {:?}", failed.map(|_| ()));
    };
    assert!(step.starts_with("fit"), "{step}");
    assert_eq!(executed(&format!("fit {tag} 0.5")), 1);
    assert_eq!(executed(&format!("fit {tag} 3")), 1);
    assert_eq!(executed(&format!("select_best {tag}")), 0);

    let fixed = sweep(vec![0.5, 1.0, 3.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(executed(&format!("fit {tag} 0.5")), 1);
    assert_eq!(executed(&format!("fit {tag} 3")), 1);
    assert_eq!(executed(&format!("fit {tag} 1")), 1);
    assert_eq!(fixed.output().0.load().unwrap().lambda, 1.0);
}

#[test]
fn lineage_records_one_edge_per_item() {
    let (_dir, store) = temp_store();
    let run = sweep(vec![0.1, 1.0], "lineage".into())
        .store(store.clone())
        .run()
        .unwrap();
    let steps = store.run_steps(run.id()).unwrap();
    let gather = steps
        .iter()
        .find(|s| s.step == "pipeline.gather")
        .expect("a gather call is recorded");
    let inputs: Vec<&str> = gather
        .components
        .inputs
        .iter()
        .map(pipeline::InputComponent::name)
        .collect();
    assert_eq!(inputs, ["item[0]", "item[1]"]);
}

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}

#[test]
fn the_gather_runs_in_the_driver_when_steps_run_in_worker_processes() {
    let (_dir, store) = temp_store();
    // Counters live in each worker process, so this test checks results and statuses.
    let run = common::on_backend(
        sweep(vec![3.0, 1.0, 0.2], "processes".into()).store(store.clone()),
        pipeline::config::ExecutorKind::Processes,
    )
    .run()
    .unwrap();
    assert_eq!(run.output().0.load().unwrap().lambda, 1.0);
    assert_eq!(run.output().1.load().unwrap(), vec![3.0, 1.0, 0.2]);
    let again = common::on_backend(
        sweep(vec![3.0, 1.0, 0.2], "processes".into()).store(store),
        pipeline::config::ExecutorKind::Processes,
    )
    .run()
    .unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
}

#[test]
fn a_gather_whose_items_all_changed_lists_the_first_three_and_counts_the_rest() {
    let (_dir, store) = temp_store();
    let tag = "many";
    sweep(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    let again = sweep(vec![1.5, 2.5, 3.5, 4.5, 5.5, 6.5], tag.into())
        .store(store)
        .run()
        .unwrap();
    let gather = again
        .steps()
        .iter()
        .find(|s| s.step() == "pipeline.gather" && s.status() == StepStatus::Executed)
        .expect("a gather executed");
    let Reason::Changes { changes } = gather.reason() else {
        panic!("{:?}", gather.reason());
    };
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(changes[3], Reason::MoreItemsChanged { more: 3 });
    let text = gather.reason().to_string();
    assert!(
        text.starts_with("item 0 changed (produced by `fit"),
        "{text}"
    );
    assert!(text.contains("; item 2 changed"), "{text}");
    assert!(!text.contains("item 3"), "{text}");
    assert!(text.ends_with("3 more items changed"), "{text}");
}

/// The sweep of acceptance 4: one `fit` per lambda, fanned in to `select_best(&all)`.
#[pipeline]
fn sweep_best(lambdas: Vec<f64>, tag: String) -> Artifact<Metrics> {
    let all: Vec<Artifact<Metrics>> = lambdas.iter().map(|&l| fit(l, tag.clone())).collect();
    select_best(&all, tag)
}

#[test]
fn a_lambda_inserted_at_the_front_runs_one_fit_and_the_fan_in_and_diff_reports_those_two() {
    let (_dir, store) = temp_store();
    let tag = "front";
    let before = sweep_best(vec![0.5, 1.0, 2.0, 4.0, 8.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    let after = sweep_best(vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    // One fit executes (the new lambda's), then the fan-in.
    for l in [0.25, 0.5, 1.0, 2.0, 4.0, 8.0] {
        assert_eq!(executed(&format!("fit {tag} {l}")), 1, "fit {l}");
    }
    assert_eq!(executed(&format!("select_best {tag}")), 2);
    let user_executed: Vec<&str> = after
        .steps()
        .iter()
        .filter(|s| s.status() == StepStatus::Executed && !s.step().starts_with("pipeline."))
        .map(|s| s.name())
        .collect();
    assert_eq!(
        user_executed,
        ["fit", "select_best"],
        "{:?}",
        common::statuses(&after)
    );

    // `diff` reports exactly those two as changed: the new fit, and the fan-in, which says
    // how its list changed. The built-in gather is bookkeeping, not a changed step.
    let diff = pipeline::report::RunDiff::new(&store, before.id(), after.id()).unwrap();
    let changed: Vec<(&str, &str)> = diff
        .changed()
        .map(|s| (s.name.as_str(), s.verdict()))
        .collect();
    assert_eq!(
        changed,
        [("fit", "only in B"), ("select_best", "different")],
        "{diff}"
    );
    let best = diff.steps.iter().find(|s| s.name == "select_best").unwrap();
    assert_eq!(best.changes.len(), 1, "{:?}", best.changes);
    assert_eq!(
        best.changes[0].reason,
        Reason::ListInputChanged {
            name: "all".into(),
            changes: vec![
                Reason::ListItemChanged {
                    index: 0,
                    producer: "fit".into()
                },
                Reason::ListLengthChanged { old: 5, new: 6 }
            ]
        }
    );
    assert_eq!(
        best.changes[0].text,
        "input `all` changed: item 0 changed (produced by `fit`); the list has 6 items, was 5"
    );
    // The gather is still in the model, marked.
    let gather = diff
        .steps
        .iter()
        .find(|s| s.name == "pipeline.gather")
        .expect("the gather is in the diff");
    assert!(gather.builtin && !gather.same_key);
    let text = diff.to_string();
    assert!(!text.contains("pipeline.gather"), "{text}");
    assert!(text.contains("\n2 of 7 steps differ.\n"), "{text}");
    // The fits that moved are the same calls as before.
    for (b, a) in [("fit_2", "fit"), ("fit_6", "fit_5")] {
        let step = diff.steps.iter().find(|s| s.name == b).unwrap();
        assert!(step.same_key, "{b}: {text}");
        assert_eq!(step.name_a.as_deref(), Some(a), "{text}");
    }
    // And the run's own record of why `select_best` ran says the same.
    assert_eq!(
        after.step("select_best").unwrap().reason().to_string(),
        best.changes[0].text
    );
}

#[test]
fn a_reordered_list_reads_as_the_same_items_in_another_order() {
    let (_dir, store) = temp_store();
    let tag = "reorder-reason";
    let a = sweep_best(vec![1.0, 2.0, 3.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    let b = sweep_best(vec![3.0, 1.0, 2.0], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    let gather = b
        .steps()
        .iter()
        .find(|s| s.step() == "pipeline.gather")
        .unwrap();
    assert_eq!(gather.reason(), &Reason::ListReordered);
    assert_eq!(
        b.step("select_best").unwrap().reason().to_string(),
        "input `all` changed: the same items, in another order"
    );
    let diff = pipeline::report::RunDiff::new(&store, a.id(), b.id()).unwrap();
    let changed: Vec<&str> = diff.changed().map(|s| s.name.as_str()).collect();
    assert_eq!(changed, ["select_best"], "{diff}");
}

#[test]
#[should_panic(expected = "`pipeline::gather` was called outside a `#[pipeline]` body")]
fn gather_outside_a_pipeline_body_panics_with_a_message_about_gather() {
    // Not `add_step`'s message, which would name the built-in `pipeline.gather::call(..)`.
    let _ = pipeline::gather(Vec::<Artifact<u64>>::new());
}

/// Calls `fit` on a thread of its own, inside the body.
#[pipeline]
fn fit_on_a_thread(lambda: f64) -> Artifact<Metrics> {
    std::thread::spawn(move || fit(lambda, "thread".to_string()))
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
#[should_panic(expected = "or on another thread than the body's")]
fn a_step_called_on_a_thread_the_body_started_says_so() {
    let _ = fit_on_a_thread(1.0);
}

/// `pipeline::gather` of references, as a step call takes `&all`.
#[pipeline]
fn gathered_by_reference(lambdas: Vec<f64>) -> (Artifact<Vec<Metrics>>, Artifact<Vec<Metrics>>) {
    let all: Vec<Artifact<Metrics>> = lambdas
        .iter()
        .map(|&l| fit(l, "by-ref".to_string()))
        .collect();
    (pipeline::gather(&all), pipeline::gather(all))
}

#[test]
fn gather_takes_handles_or_references_to_them_alike() {
    let (_dir, store) = temp_store();
    let run = gathered_by_reference(vec![0.5, 2.0])
        .store(store)
        .run()
        .unwrap();
    let (by_ref, by_value) = run.output();
    let lambdas = |m: Vec<Metrics>| m.iter().map(|m| m.lambda).collect::<Vec<_>>();
    assert_eq!(lambdas(by_ref.load().unwrap()), [0.5, 2.0]);
    assert_eq!(lambdas(by_value.load().unwrap()), [0.5, 2.0]);
    // One list, one key: the second gather reuses the first's execution.
    assert_eq!(
        by_ref.content_hash().unwrap(),
        by_value.content_hash().unwrap()
    );
}
