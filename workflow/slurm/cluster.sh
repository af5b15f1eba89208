#!/usr/bin/env bash
# A one-node SLURM cluster on this host, to run the SLURM profile (workflow/profiles/slurm) against
# a real scheduler without a real cluster: Debian's slurmctld + slurmd + munge, partitions `cpu`
# (the default) and `gpu`, and no accounting database, like many small clusters (so `sacct` knows
# no jobs and the profile's status command, squeue, is what sees them finish).
#
#   workflow/slurm/cluster.sh install   # apt-get update + install slurmctld slurmd munge slurm-client
#   workflow/slurm/cluster.sh up        # write /etc/slurm/slurm.conf, start munged, slurmctld and
#                                       # slurmd, wait until `sinfo` shows the node idle
#   workflow/slurm/cluster.sh down      # cancel every job, stop the daemons `up` started, remove
#                                       # the config files and the state `up` wrote
#
# Root only (the daemons and the jobs run as root). `up` and `down` are idempotent. A failure ends
# with one line on stderr and exit status 1. `up` refuses to replace a slurm.conf it did not write
# or to run beside SLURM daemons it did not start; a munged already running is used, not stopped,
# and a missing munge key is created (and kept: it belongs to munge, not to this cluster).
# The gpu partition has no real GPU: the node declares one `gpu` GRES whose device file is /dev/null
# (SLURM drops a GPU without a file), so a GPU request (sbatch --gpus=1) is accepted and scheduled,
# but the job finds no CUDA device and runs on the CPU.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
STATE=/var/lib/shpeft-slurm          # slurmctld/slurmd state, pid files, logs; removed by `down`
MARK="# written by shpeft-bench workflow/slurm/cluster.sh"
PACKAGES=(slurmctld slurmd munge slurm-client)

die() { echo "cluster.sh: $*" >&2; exit 1; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

ours() { [[ -f $1 && $(head -1 "$1") == "$MARK"* ]]; }  # a config file this script wrote

stop() {  # stop the process in pid file $1 and wait for it to exit
    alive "$1" || return 0
    local pid; pid=$(cat "$1")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

install() {
    command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} with this system's package manager"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null \
        || die "apt-get install ${PACKAGES[*]} failed"
}

write_conf() {
    local node hardware
    node=$(hostname -s)
    hardware=$(slurmd -C | sed -n 1p)  # NodeName=<host> CPUs=... RealMemory=..., as slurmd sees them
    mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm
    cat >"$CONF" <<EOF
$MARK; removed by its \`down\`
ClusterName=shpeft
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No accounting database: sacct finds no jobs. Finished jobs stay visible to squeue for MinJobAge
# seconds, which must exceed the plugin's status-check interval (it falls back to sacct below 120 s).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
GresTypes=gpu
$hardware NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
EOF
    printf '%s\nNodeName=%s Name=gpu File=/dev/null\n' "$MARK" "$node" >"$GRES"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # already running
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    touch "$STATE/munged.ours"
}

wait_idle() {
    for _ in $(seq 120); do
        [[ $(sinfo -h -N -o %T 2>/dev/null | sort -u) == idle ]] && return 0
        sleep 0.5
    done
    die "the node is not idle after 60 s: $(sinfo -h -N -o '%T %E' 2>&1 | head -1) (logs in $STATE)"
}

up() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null || die "SLURM packages missing (${PACKAGES[*]}): run '$0 install'"
    if [[ -f $CONF ]] && ! ours "$CONF"; then
        die "$CONF exists and was not written by this script; not replacing it"
    fi
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then wait_idle; echo "cluster up (already)"; return; fi
    stop "$STATE/slurmd.pid"  # what is left of a half-started cluster of ours
    stop "$STATE/slurmctld.pid"
    { pgrep -x slurmctld || pgrep -x slurmd; } >/dev/null && die "SLURM daemons not started by this script are running; stop them first"
    write_conf
    start_munge
    slurmctld || die "slurmctld did not start (see $STATE/slurmctld.log)"
    slurmd || die "slurmd did not start (see $STATE/slurmd.log)"
    wait_idle
    echo "cluster up: node $(hostname -s), partitions cpu (default) and gpu, no accounting"
}

down() {
    if alive "$STATE/slurmctld.pid"; then
        squeue -h -o %A | xargs -r scancel
        for _ in $(seq 50); do [[ -z $(squeue -h -t RUNNING,COMPLETING -o %A) ]] && break; sleep 0.2; done
    fi
    stop "$STATE/slurmd.pid"
    stop "$STATE/slurmctld.pid"
    [[ -f $STATE/munged.ours ]] && stop /run/munge/munged.pid
    for file in "$CONF" "$GRES"; do
        if ours "$file"; then rm -f "$file"; fi
    done
    rm -rf "$STATE"
    echo "cluster down"
}

[[ $(id -u) == 0 ]] || die "must run as root (it starts system daemons and writes /etc/slurm)"
case "${1:-}" in
    install) install ;;
    up) up ;;
    down) down ;;
    *) die "usage: $0 install|up|down" ;;
esac
