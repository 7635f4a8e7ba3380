//! Independent steps run at the same time.

mod common;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use common::temp_store;
use pipeline::prelude::*;

// Each step sends to the other and waits for the other's message: that only succeeds when
// both run at once. A timeout turns a serial schedule into a failure instead of a hang.
static LEFT: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(None);
static RIGHT: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(None);

fn rendezvous(slot: &Mutex<Option<(Sender<()>, Receiver<()>)>>) -> bool {
    let (tx, rx) = slot.lock().unwrap().take().expect("channel set up");
    tx.send(()).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).is_ok()
}

#[step(enable_cache = false)]
fn left(tag: u8) -> bool {
    let _ = tag;
    rendezvous(&LEFT)
}

#[step(enable_cache = false)]
fn right(tag: u8) -> bool {
    let _ = tag;
    rendezvous(&RIGHT)
}

#[pipeline]
fn pair() -> (Artifact<bool>, Artifact<bool>) {
    (left(1), right(2))
}

#[test]
fn independent_steps_run_concurrently() {
    let (_dir, store) = temp_store();
    let (to_right, from_left) = channel();
    let (to_left, from_right) = channel();
    *LEFT.lock().unwrap() = Some((to_right, from_right));
    *RIGHT.lock().unwrap() = Some((to_left, from_left));
    let run = pair().store(store).max_parallelism(2).run().unwrap();
    let (l, r) = run.output();
    assert!(
        l.load().unwrap(),
        "left never heard from right: steps ran one after the other"
    );
    assert!(r.load().unwrap(), "right never heard from left");
}
