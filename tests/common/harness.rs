//! The test runner of the test binaries that have a `main` of their own (`harness =
//! false`): `tests/workers.rs` and `tests/slurm.rs`, whose `main` must call
//! `pipeline::worker::enter()` first, since the backends start that very binary as each
//! step's worker. Runs the tests named on the command line (substrings; all without one),
//! one after the other, and exits 101 when one fails, as libtest does.

/// Runs `tests` (name, function) and exits the process with libtest's status.
pub fn run(tests: &[(&str, fn())]) -> ! {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for &(name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {}", failed.join(", "));
        std::process::exit(101);
    }
    std::process::exit(0)
}
