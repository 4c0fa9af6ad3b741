#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the `slurm` tests and for trying lionbench's
# cluster path on a workstation: `cluster.sh start|stop|status`.
#
# start: installs Debian's slurm-wlm and munge when missing (apt-get, as root), starts munged
#   (as the munge user) unless one already answers, then slurmctld and slurmd with a slurm.conf
#   written into the state directory, and waits until the node takes jobs. Idempotent.
# stop:  stops, by the PIDs recorded in the state directory, only the daemons `start` started.
# status: says what runs; exit 0 when the cluster takes jobs.
#
# Everything (slurm.conf, spool, state, logs, PID files) lives in one directory:
# $LIONBENCH_SLURM_DIR, default /tmp/lionbench-slurm. Clients find the cluster through
#   export SLURM_CONF=$LIONBENCH_SLURM_DIR/slurm.conf
set -euo pipefail

DIR=${LIONBENCH_SLURM_DIR:-/tmp/lionbench-slurm}
CONF=$DIR/slurm.conf
PARTITION=${LIONBENCH_SLURM_PARTITION:-debug}
NODE=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "cluster.sh: $*" >&2; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || { say "needs root to install ${missing[*]}"; return 1; }
    say "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$DIR/apt.log" 2>&1 || {
        apt-get update -q >>"$DIR/apt.log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$DIR/apt.log" 2>&1
    } || { say "apt-get install ${missing[*]} failed (see $DIR/apt.log)"; return 1; }
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    munge_ok && return 0  # a munged already answers (the system's or ours): use it
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || {
        say "creating /etc/munge/munge.key"
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    }
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        [ -s /run/munge/munged.pid ] && munge_ok && break
        sleep 0.1
    done
    munge_ok || { say "munged does not answer (see /var/log/munge/munged.log)"; return 1; }
    cp /run/munge/munged.pid "$DIR/munged.pid"
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<CONF
# Written by tests/slurm/cluster.sh: a single-node cluster on $NODE.
ClusterName=lionbench
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The nice value of sbatch/srun reaches the job (nice -n 15 pytest gives niced jobs).
PropagatePrioProcess=1
ReturnToService=2
MpiDefault=none
KillWait=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${LIONBENCH_SLURMCTLD_PORT:-6817}
SlurmdPort=${LIONBENCH_SLURMD_PORT:-6818}
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=60 State=UP OverSubscribe=NO
CONF
}

alive() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

ready() { [ -f "$CONF" ] && sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc|comp)'; }

start() {
    mkdir -p "$DIR"
    if alive slurmctld && alive slurmd && ready; then say "running ($CONF)"; return 0; fi
    install_packages
    start_munge
    write_conf
    alive slurmctld || /usr/sbin/slurmctld -f "$CONF"
    alive slurmd || /usr/sbin/slurmd -f "$CONF"
    for _ in $(seq 100); do
        ready && break
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        sleep 0.2
    done
    ready || { say "the node does not take jobs (logs in $DIR/log)"; status; return 1; }
    say "running: partition $PARTITION on $NODE; export SLURM_CONF=$CONF"
}

stop_pid() {  # stop_pid NAME: TERM the recorded PID, then KILL it if it lingers
    alive "$1" || { rm -f "$DIR/$1.pid"; return 0; }
    local pid
    pid=$(cat "$DIR/$1.pid")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$DIR/$1.pid"
}

stop() {
    [ -d "$DIR" ] || return 0
    if alive slurmctld; then  # jobs left by tests: cancel them before their daemons go
        scancel --full --quiet --state=RUNNING,PENDING "--partition=$PARTITION" 2>/dev/null || true
    fi
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid munged
    say "stopped"
}

status() {
    for d in munged slurmctld slurmd; do
        if alive "$d"; then echo "$d: running (pid $(cat "$DIR/$d.pid"))"; else echo "$d: not ours or not running"; fi
    done
    if ready; then sinfo -p "$PARTITION"; else echo "no node takes jobs"; return 1; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status (state in $DIR)" >&2; exit 2 ;;
esac
