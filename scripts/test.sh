#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need when it is missing,
# then runs `cargo test --workspace`. Nothing is skipped. CI (`.ci/run`) calls this script
# after `cargo fmt` and `cargo clippy`. Extra arguments go to `cargo test`
# (e.g. `bash scripts/test.sh -- --nocapture`).
#
# Needs: a Rust toolchain (cargo) and, for what is missing, Debian's apt-get run as root
# or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $* (run this script as root or install sudo)"
        return 1
    fi
}

APT_UPDATED=0
# Installs Debian packages with apt-get, updating the package lists once per run. Another
# apt-get (a second checkout's tests, unattended upgrades) may hold dpkg's lock: wait for it.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "cannot install $* : apt-get not found; install it by hand and rerun"
        return 1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root "${apt[@]}" update
        APT_UPDATED=1
    fi
    as_root "${apt[@]}" install -y "$@"
}

# --- Tools the tests need -----------------------------------------------------------------

# Headless Chromium renders the lineage page in pipeline-cli/tests/lineage_browser.rs and
# the `pipeline ui` pages in pipeline-cli/tests/ui_*.rs;
# `$CHROMIUM`, when set, names the binary the test uses instead.
need_chromium() {
    if [ -n "${CHROMIUM:-}" ]; then
        return
    fi
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        return
    fi
    log "installing chromium (for the lineage page test)"
    apt_install chromium
}

# --- Services the tests need --------------------------------------------------------------

# PostgreSQL, the S3 server (Garage) and the one-node Slurm cluster come with the backends
# that use them: `scripts/services.sh start NAME..` installs and starts them and prints
# `export NAME=value` lines; the EXIT trap stops them again. SERVICES lists the ones the
# suite needs.
#
# The tests reach a service only through test-only variables (PIPELINE_TEST_POSTGRES,
# PIPELINE_TEST_S3, PIPELINE_TEST_SLURM), never through the PIPELINE_* settings or the
# SLURM_CONF a user's shell may hold: every ordinary test pins its own store. PIPELINE_TEST_REQUIRE_SERVICES=1 makes a test whose service is missing
# fail instead of skipping, so this script can never pass with a service down.
SERVICES=(postgres s3 slurm)
start_services() {
    unset PIPELINE_METADATA PIPELINE_ARTIFACTS PIPELINE_EXECUTOR PIPELINE_HOME
    [ ${#SERVICES[@]} -gt 0 ] || return 0
    log "starting services: ${SERVICES[*]} (scripts/services.sh start)"
    trap 'scripts/services.sh stop "${SERVICES[@]}" || true' EXIT
    local exports
    exports=$(scripts/services.sh start "${SERVICES[@]}")
    eval "$exports"
    export PIPELINE_TEST_POSTGRES=${PIPELINE_METADATA:-}
    export PIPELINE_TEST_S3=${PIPELINE_ARTIFACTS:-}
    # The Slurm tests (pipeline-core's cluster::slurm_tests) name the cluster's slurm.conf
    # themselves, so a user's own SLURM_CONF cannot send test jobs to a real cluster.
    export PIPELINE_TEST_SLURM=${SLURM_CONF:-}
    unset PIPELINE_METADATA PIPELINE_ARTIFACTS PIPELINE_EXECUTOR SLURM_CONF
    export PIPELINE_TEST_REQUIRE_SERVICES=1
}

need_chromium
start_services

log "cargo test --workspace $*"
cargo test --workspace "$@"
# `async fn` steps need the `tokio` feature; the default build pins the error that names it
# (tests/ui/step/async-fn.rs), so they are tested in a build of their own.
log "cargo test --features tokio --test async_steps"
cargo test --features tokio --test async_steps
