#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for testing the SLURM profile for real.
#
#   scripts/slurm-local.sh up      install slurm-wlm + munge if missing (apt, as root), write a
#                                  slurm.conf for this host, start munged, slurmctld, slurmd,
#                                  wait until the node is idle
#   scripts/slurm-local.sh down    cancel the cluster's jobs, stop every daemon `up` started
#   scripts/slurm-local.sh env     print the `export SLURM_CONF=...` line for clients
#
# Everything lives in $SLURM_LOCAL_DIR (default /tmp/slurm-local): slurm.conf, gres.conf,
# state, spool, logs and the PIDs of the daemons started here (pids). Clients find the
# cluster through SLURM_CONF, and through a symlink /etc/slurm/slurm.conf -> the
# slurm.conf here: inside a job, snakemake's jobstep executor drops every SLURM_* variable
# (SLURM_CONF included) before its `srun`, which then reads the default path. `up` refuses
# to replace an /etc/slurm/slurm.conf it did not make; `down` removes its symlink.
# A munged that is already running is used, not restarted, and `down` leaves it alone.
# systemd is not needed: the daemons are started by hand.
#
# The node gets this machine's real CPUs and memory (`slurmd -C`) and $SLURM_LOCAL_GPUS
# stand-in GPUs of type $SLURM_LOCAL_GPU_TYPE (default 2 x "testgpu"; device nodes with no
# GPU behind them), so jobs asking for --gpus / --gres=gpu:... are scheduled, and see
# CUDA_VISIBLE_DEVICES, as on a GPU node. Partitions: $SLURM_LOCAL_PARTITIONS (default
# "debug gpu", the first one the default). Ports: $SLURM_LOCAL_CTLD_PORT and
# $SLURM_LOCAL_SLURMD_PORT (default 6817, 6818).
# No accounting (no slurmdbd): `sacct` does not work, use squeue for job status.
#
# Needs root (slurmd; the apt install; starting munged as the munge user).
set -euo pipefail

DIR="$(realpath -m "${SLURM_LOCAL_DIR:-/tmp/slurm-local}")"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
GPUS="${SLURM_LOCAL_GPUS:-2}"
GPU_TYPE="${SLURM_LOCAL_GPU_TYPE:-testgpu}"
# Partitions, all over the one node; the first is the default (a "gpu" partition lets
# tests check that GPU rules are routed to their own partition).
PARTITIONS="${SLURM_LOCAL_PARTITIONS:-debug gpu}"
UP_TIMEOUT="${SLURM_LOCAL_TIMEOUT:-90}"
CONF="$DIR/slurm.conf"
PIDS="$DIR/pids"
SYSTEM_CONF=/etc/slurm/slurm.conf

STARTING=0
log() { echo "slurm-local: $*" >&2; }
die() {
    log "error: $*"
    # a failed `up` leaves nothing running behind
    if [ "$STARTING" = 1 ]; then STARTING=0; cmd_down; fi
    exit 1
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root: install slurm-wlm and munge (apt-get install slurm-wlm munge)"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install SLURM and munge with this system's package manager"
    log "installing slurm-wlm munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$DIR/apt.log" 2>&1; then
        apt-get update -q >>"$DIR/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$DIR/apt.log" 2>&1 \
            || die "apt-get install slurm-wlm munge failed (log: $DIR/apt.log): $(tail -n 3 "$DIR/apt.log")"
    fi
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        log "munged already running: using it"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "munged is not running and only root can start it as the munge user"
    id munge >/dev/null 2>&1 || die "no 'munge' user (the munge package creates it)"
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    # As the munge user, in the foreground (so $! is munged itself), detached from this shell.
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground --force \
        >"$DIR/munged.out" 2>&1 </dev/null &
    echo "munged $!" >>"$PIDS"
    for _ in $(seq 1 50); do
        munge_works && return 0
        alive "$!" || die "munged exited: $(tail -n 5 "$DIR/munged.out")"
        sleep 0.2
    done
    die "munged does not answer (log: $DIR/munged.out)"
}

write_conf() {
    local host node
    host="$(hostname -s)"
    # This machine's real CPUs, sockets, cores and memory, as slurmd sees them.
    node="$(slurmd -C | head -1)"
    case "$node" in NodeName=*) ;; *) die "slurmd -C gave no node line: $node" ;; esac
    node="${node#NodeName=* }"   # drop "NodeName=<host>"
    # A fresh cluster every time: no jobs, node states or drain reasons from an earlier one.
    rm -rf "$DIR/state" "$DIR/spool" && mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a single-node test cluster on $host.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# No accounting: no slurmdbd, so sacct cannot answer; finished jobs stay visible to
# squeue for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 $node Gres=gpu:$GPU_TYPE:$GPUS State=UNKNOWN
EOF
    local default=YES p
    for p in $PARTITIONS; do
        echo "PartitionName=$p Nodes=ALL Default=$default MaxTime=INFINITE State=UP" >>"$CONF"
        default=NO
    done
    # slurmd drops GPUs without a File, and a File must be a device node: stand-ins that
    # are /dev/null's twins (char 1:3). Jobs that ask for GPUs are scheduled on them and
    # get CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS like on a GPU node; nothing is fenced
    # (TaskPlugin=task/none).
    local files="" i
    rm -rf "$DIR/gpus" && mkdir -p "$DIR/gpus"
    for i in $(seq 0 $((GPUS - 1))); do
        mknod -m 0666 "$DIR/gpus/gpu$i" c 1 3 || die "mknod $DIR/gpus/gpu$i failed (stand-in GPU device)"
        files="${files:+$files,}$DIR/gpus/gpu$i"
    done
    echo "NodeName=$host Name=gpu Type=$GPU_TYPE File=$files" >"$DIR/gres.conf"
}

link_system_conf() {
    if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
        if [ ! -L "$SYSTEM_CONF" ] || [ "$(readlink "$SYSTEM_CONF")" != "$CONF" ]; then
            die "$SYSTEM_CONF exists and is not this cluster's (another local cluster up, or a real SLURM setup): jobs' srun would read it"
        fi
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$CONF" "$SYSTEM_CONF"
}

unlink_system_conf() {
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        rm -f "$SYSTEM_CONF"
    fi
}

node_state() { { SLURM_CONF="$CONF" sinfo -h -N -o %T 2>/dev/null || true; } | head -1; }

cmd_up() {
    mkdir -p "$DIR"
    if [ -f "$PIDS" ]; then
        local all_alive=1 name pid
        while read -r name pid; do alive "$pid" || all_alive=0; done <"$PIDS"
        if [ "$all_alive" = 1 ] && [ "$(node_state)" = idle ]; then
            log "already up ($CONF)"
            return 0
        fi
        log "stale state in $DIR: stopping what is left and starting afresh"
        cmd_down
    fi
    install_packages
    : >"$PIDS"
    STARTING=1
    start_munge
    write_conf
    link_system_conf
    [ "$(id -u)" -eq 0 ] || die "slurmd needs root"
    # SLURM_CONF also for the daemons: slurmd finds gres.conf next to the slurm.conf it names.
    export SLURM_CONF="$CONF"
    setsid slurmctld -D -c -f "$CONF" >"$DIR/slurmctld.out" 2>&1 </dev/null &
    echo "slurmctld $!" >>"$PIDS"
    setsid slurmd -D -f "$CONF" >"$DIR/slurmd.out" 2>&1 </dev/null &
    echo "slurmd $!" >>"$PIDS"
    local state="" waited=0
    while [ "$waited" -lt $((UP_TIMEOUT * 2)) ]; do
        state="$(node_state)"
        [ "$state" = idle ] && break
        case "$state" in
            inval* | drain* | down*)
                die "node $state: $(SLURM_CONF="$CONF" sinfo -h -N -o %E) (logs in $DIR)" ;;
        esac
        while read -r name pid; do
            alive "$pid" || die "$name exited: $(tail -n 5 "$DIR/$name.out" "$DIR/$name.log" 2>/dev/null)"
        done <"$PIDS"
        sleep 0.5
        waited=$((waited + 1))
    done
    [ "$state" = idle ] || die "node not idle after ${UP_TIMEOUT}s (state '${state}'; logs in $DIR)"
    STARTING=0
    log "up: node $(hostname -s) idle, partitions $PARTITIONS; export SLURM_CONF=$CONF"
}

cmd_down() {
    [ -f "$PIDS" ] || { unlink_system_conf; log "nothing to stop ($PIDS missing)"; return 0; }
    # Jobs first: their processes (slurmstepd and below) do not end with slurmd.
    if [ -f "$CONF" ] && alive "$(awk '$1 == "slurmctld" {print $2}' "$PIDS")"; then
        SLURM_CONF="$CONF" scancel --full --signal=KILL --state=RUNNING 2>/dev/null || true
        SLURM_CONF="$CONF" scancel --full 2>/dev/null || true
        for _ in $(seq 1 20); do
            [ -z "$(SLURM_CONF="$CONF" squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    # Stop in reverse start order: slurmd, slurmctld, munged.
    local name pid
    tac "$PIDS" | while read -r name pid; do
        alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
        if alive "$pid"; then
            log "$name ($pid) ignored SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name ($pid)"
    done
    rm -f "$PIDS"
    unlink_system_conf
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
