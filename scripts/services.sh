#!/usr/bin/env bash
# Starts and stops the real services that the scale-out backends run against, all on
# 127.0.0.1 of this machine:
#
#   PostgreSQL (Debian's package)      metadata      127.0.0.1:54329
#   Garage (an S3 server, crates.io)   artifacts     127.0.0.1:3900 (S3), 3901 (RPC), 3903 (admin)
#   Slurm + munge (Debian's packages)  steps         slurmctld 6817, slurmd 6818
#
# Usage:
#   eval "$(scripts/services.sh start)"     # installs what is missing, starts all three,
#                                           # prints `export NAME=value` lines on stdout
#   scripts/services.sh start postgres s3   # only some of them
#   scripts/services.sh env                 # prints the exports again (services running)
#   scripts/services.sh stop                # stops what `start` started, by PID
#
# Progress and errors go to stderr, so stdout is only the export lines. Starting is
# idempotent: a service whose recorded PID is alive is left running.
#
# State (data, configs, logs, PID files) lives in $PIPELINE_SERVICES_DIR (default
# /tmp/pipeline-services). Garage is built from source once and cached in
# $PIPELINE_SERVICES_CACHE (default ~/.cache/pipeline-services); later runs skip the build
# when the binary is there. The script needs root to install packages and to run the
# PostgreSQL server and munged as their own users, as on CI.
set -euo pipefail

STATE=${PIPELINE_SERVICES_DIR:-/tmp/pipeline-services}
CACHE=${PIPELINE_SERVICES_CACHE:-$HOME/.cache/pipeline-services}
GARAGE_VERSION=2.5.0
PG_PORT=54329
S3_PORT=3900
S3_REGION=garage
S3_BUCKET=pipeline-artifacts

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

alive() { # alive PIDFILE: the recorded process is running
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

apt_install() { # apt_install PACKAGE...: installs Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root; install them, then run this again"
  mkdir -p "$STATE"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    >"$STATE/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed; see $STATE/apt.log"
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  echo "$d"
}

start_postgres() {
  apt_install postgresql
  local bin dir=$STATE/postgres
  bin=$(pg_bin)
  if [ -f "$dir/data/postmaster.pid" ] && kill -0 "$(head -n 1 "$dir/data/postmaster.pid")" 2>/dev/null \
    && [ -f "$dir/password" ]; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    return 0
  fi
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  # Connections over TCP need a password (scram-sha-256), as on a real server, so the
  # tests can check that a wrong one is refused and that the password never shows. The
  # superuser `postgres` stays trusted on the Unix socket, for the setup below.
  if [ ! -f "$dir/data/PG_VERSION" ] || [ ! -f "$dir/password" ]; then
    if [ -f "$dir/data/postmaster.pid" ]; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir/data" "$dir/password"
    log "initdb into $dir/data"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 >"$dir/initdb.log" 2>&1 \
      || die "initdb failed; see $dir/initdb.log"
    local password
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c fsync=off" start >&2 \
      || die "PostgreSQL did not start; see $dir/server.log"
    runuser -u postgres -- "$bin/psql" -h "$dir" -p "$PG_PORT" -U postgres -q -v ON_ERROR_STOP=1 \
      -c "CREATE ROLE pipeline LOGIN CREATEDB PASSWORD '$password'" \
      -c "CREATE DATABASE pipeline OWNER pipeline" >>"$dir/initdb.log" 2>&1 \
      || die "creating the role and database failed; see $dir/initdb.log"
    (umask 077; echo "$password" >"$dir/password")
    return 0
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c fsync=off" start >&2 \
    || die "PostgreSQL did not start; see $dir/server.log"
}

stop_postgres() {
  local dir=$STATE/postgres pid
  [ -f "$dir/data/postmaster.pid" ] || return 0
  pid=$(head -n 1 "$dir/data/postmaster.pid")
  log "stopping PostgreSQL (pid $pid)"
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

env_postgres() {
  echo "export PIPELINE_METADATA=postgres://pipeline:$(cat "$STATE/postgres/password")@127.0.0.1:$PG_PORT/pipeline"
}

# ---------------------------------------------------------------- Garage (S3)
garage_bin() {
  if command -v garage >/dev/null 2>&1; then command -v garage; return; fi
  local cached=$CACHE/garage-$GARAGE_VERSION/bin/garage
  if [ ! -x "$cached" ]; then
    log "building Garage $GARAGE_VERSION from crates.io (once; about 10 min on 2 cores)"
    cargo install "garage@$GARAGE_VERSION" --locked --no-default-features \
      --features bundled-libs,lmdb,sqlite --root "$CACHE/garage-$GARAGE_VERSION" \
      --target-dir "$CACHE/garage-target" >&2 || die "building Garage failed"
    rm -rf "$CACHE/garage-target"
  fi
  echo "$cached"
}

start_s3() {
  local bin dir=$STATE/garage
  bin=$(garage_bin)
  mkdir -p "$dir"
  if alive "$dir/garage.pid"; then
    log "Garage already running on 127.0.0.1:$S3_PORT"
    return 0
  fi
  if [ ! -f "$dir/garage.toml" ]; then
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EOF
  fi
  local g=("$bin" -c "$dir/garage.toml")
  log "starting Garage on 127.0.0.1:$S3_PORT"
  "${g[@]}" server >"$dir/server.log" 2>&1 &
  echo $! >"$dir/garage.pid"
  for _ in $(seq 100); do "${g[@]}" status >/dev/null 2>&1 && break; sleep 0.2; done
  "${g[@]}" status >/dev/null 2>&1 || die "Garage did not answer; see $dir/server.log"
  if [ ! -f "$dir/credentials" ]; then
    local node kid ksec
    node=$("${g[@]}" node id -q | cut -d@ -f1)
    "${g[@]}" layout assign -z dc1 -c 1G "$node" >&2
    "${g[@]}" layout apply --version 1 >&2
    "${g[@]}" bucket create "$S3_BUCKET" >&2
    kid=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    ksec=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    "${g[@]}" key import --yes -n pipeline-key "$kid" "$ksec" >&2
    "${g[@]}" bucket allow --read --write --owner "$S3_BUCKET" --key pipeline-key >&2
    printf '%s %s\n' "$kid" "$ksec" >"$dir/credentials"
    chmod 600 "$dir/credentials"
  fi
}

stop_s3() {
  local dir=$STATE/garage
  alive "$dir/garage.pid" || return 0
  log "stopping Garage (pid $(cat "$dir/garage.pid"))"
  kill "$(cat "$dir/garage.pid")" 2>/dev/null || true
  rm -f "$dir/garage.pid"
}

env_s3() {
  local dir=$STATE/garage kid ksec
  [ -f "$dir/credentials" ] || return 0
  read -r kid ksec <"$dir/credentials"
  echo "export PIPELINE_ARTIFACTS=s3://$S3_BUCKET/pipeline"
  echo "export AWS_ENDPOINT=http://127.0.0.1:$S3_PORT"
  echo "export AWS_REGION=$S3_REGION"
  echo "export AWS_ACCESS_KEY_ID=$kid"
  echo "export AWS_SECRET_ACCESS_KEY=$ksec"
  echo "export AWS_ALLOW_HTTP=true"
}

# ---------------------------------------------------------------- Slurm
start_slurm() {
  apt_install slurm-wlm munge
  local dir=$STATE/slurm
  mkdir -p "$dir/state" "$dir/spool"
  if ! alive /run/munge/munged.pid; then
    mkdir -p /run/munge
    chown munge:munge /run/munge
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged >&2
  fi
  cat >"$dir/slurm.conf" <<EOF
ClusterName=pipeline
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  if ! alive "$dir/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -f "$SLURM_CONF" >&2
  fi
  if ! alive "$dir/slurmd.pid"; then
    log "starting slurmd"
    slurmd -f "$SLURM_CONF" -N localhost >&2
  fi
  for _ in $(seq 100); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && return 0
    sleep 0.2
  done
  die "the Slurm node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log"
}

stop_slurm() {
  local dir=$STATE/slurm f
  for f in "$dir/slurmd.pid" "$dir/slurmctld.pid" /run/munge/munged.pid; do
    if alive "$f"; then
      log "stopping $(basename "$f" .pid) (pid $(cat "$f"))"
      kill "$(cat "$f")" 2>/dev/null || true
    fi
  done
}

env_slurm() {
  [ -f "$STATE/slurm/slurm.conf" ] || return 0
  echo "export PIPELINE_EXECUTOR=slurm"
  echo "export SLURM_CONF=$STATE/slurm/slurm.conf"
}

# ---------------------------------------------------------------- main
services() { # the services named on the command line (all of them by default), checked
  [ $# -eq 0 ] && set -- postgres s3 slurm
  for s in "$@"; do
    case "$s" in
      postgres | s3 | slurm) echo "$s" ;;
      *) die "unknown service \`$s\`; expected postgres, s3 or slurm" ;;
    esac
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  start | env | stop)
    names=$(services "$@")
    if [ "$cmd" != env ]; then
      for s in $names; do "${cmd}_$s"; done
    fi
    if [ "$cmd" != stop ]; then
      for s in $names; do "env_$s"; done
    fi
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
