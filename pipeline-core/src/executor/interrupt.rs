//! Ctrl-C (SIGINT) and SIGTERM during a run whose steps run elsewhere (Slurm jobs, worker
//! processes): the run is cancelled rather than the driver killed. No further step starts,
//! the backend cancels the jobs still active (`scancel`), those steps and the ones that
//! never started are recorded skipped (cancelled), and the run is recorded cancelled;
//! `run()` returns [`Error::Cancelled`](crate::Error::Cancelled).
//!
//! A second signal during the run, or one while no such run is going on, has the default
//! effect: the process ends. The handlers come from `signal-hook`, installed once per
//! process on the first such run; they only set flags, and a watcher thread of the run acts
//! on them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::backend::Backend;
use crate::cancel::CancelToken;

/// The process-wide flags the signal handlers set and read.
struct Flags {
    /// A signal arrived during a watched run.
    pressed: Arc<AtomicBool>,
    /// Signals have their default effect (no watched run, or a second signal).
    default: Arc<AtomicBool>,
    /// Watched runs going on.
    runs: AtomicUsize,
}

fn flags() -> Option<&'static Flags> {
    static FLAGS: OnceLock<Option<Flags>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            let flags = Flags {
                pressed: Arc::new(AtomicBool::new(false)),
                default: Arc::new(AtomicBool::new(true)),
                runs: AtomicUsize::new(0),
            };
            #[cfg(unix)]
            {
                use signal_hook::consts::{SIGINT, SIGTERM};
                for signal in [SIGINT, SIGTERM] {
                    // The default action first, when asked for; else only the flag.
                    let installed = signal_hook::flag::register_conditional_default(
                        signal,
                        Arc::clone(&flags.default),
                    )
                    .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flags.pressed)));
                    if let Err(e) = installed {
                        tracing::debug!(target: "pipeline", "No handler for signal {signal}: {e}");
                        return None;
                    }
                }
                Some(flags)
            }
            #[cfg(not(unix))]
            {
                let _ = flags;
                None
            }
        })
        .as_ref()
}

/// Watches for Ctrl-C while it lives; see the module documentation.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts watching for Ctrl-C on behalf of a run with `token` and `backend`.
pub(crate) fn watch(token: CancelToken, backend: Arc<dyn Backend>) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let Some(flags) = flags() else {
        return Watch { stop, thread: None };
    };
    if flags.runs.fetch_add(1, Ordering::SeqCst) == 0 {
        flags.pressed.store(false, Ordering::SeqCst);
        flags.default.store(false, Ordering::SeqCst);
    }
    let quit = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        while !quit.load(Ordering::SeqCst) {
            if flags.pressed.swap(false, Ordering::SeqCst) {
                tracing::warn!(
                    target: "pipeline",
                    "Interrupted: cancelling the run's {} jobs (again to quit at once).",
                    backend.name()
                );
                // The next signal ends the process.
                flags.default.store(true, Ordering::SeqCst);
                token.cancel();
                backend.cancel_all();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Watch {
        stop,
        thread: Some(thread),
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            if let Some(flags) = flags() {
                if flags.runs.fetch_sub(1, Ordering::SeqCst) == 1 {
                    flags.default.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}
