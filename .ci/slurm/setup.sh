#!/usr/bin/env bash
# Install and start a single-node SLURM cluster on 127.0.0.1 for CI (Debian/Ubuntu).
#
#   sudo .ci/slurm/setup.sh          # idempotent: re-running on a healthy cluster is a no-op
#   .ci/slurm/teardown.sh            # stop the daemons, remove state
#
# What it does (each step is skipped when already done):
#   1. apt-get installs Debian's `slurm-wlm` (slurmctld + slurmd + client tools) and `munge`.
#   2. creates a munge key and starts `munged` (SLURM's authentication daemon).
#   3. writes /etc/slurm/slurm.conf for ONE node (this host, 127.0.0.1), partition `debug`
#      (Default=YES), no accounting daemon (so snakemake's SLURM plugin must use `squeue` for
#      job status), no cgroups (proctrack/linuxproc, task/none: containers often forbid cgroups),
#      MinJobAge=3600 so finished jobs stay visible to `squeue`.
#   4. starts `slurmctld` and `slurmd`, waits until `sinfo` shows the node idle.
#   5. smoke check: `srun hostname` and `sbatch --wait --wrap`.
#
# Exit codes: 0 cluster up and smoke-tested;
#             3 cannot set up here (not root, or no apt-get): the caller may skip SLURM tests;
#             4 apt-get could not install the packages (no package mirror reachable);
#             1 the daemons did not come up or the smoke check failed (logs are printed).
#
# Environment overrides: SLURM_CI_PARTITION (default debug), SLURM_CI_MEM_HEADROOM_MB (default
# 1024), SLURM_CI_WAIT_S (seconds to wait for the node, default 60).
set -uo pipefail

PARTITION="${SLURM_CI_PARTITION:-debug}"
HEADROOM_MB="${SLURM_CI_MEM_HEADROOM_MB:-1024}"
WAIT_S="${SLURM_CI_WAIT_S:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_LOG="$LOG_DIR/slurmctld.log"
SLURMD_LOG="$LOG_DIR/slurmd.log"
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
START_S=$SECONDS

say() { echo "[slurm-setup] $*"; }
diagnose() {
    # Print what is needed to understand a failure, then exit 1.
    say "FAILED: $*"
    for f in "$CTLD_LOG" "$SLURMD_LOG" /var/log/munge/munged.log; do
        if [[ -s "$f" ]]; then
            echo "----- last 40 lines of $f -----"
            tail -n 40 "$f"
        fi
    done
    echo "----- sinfo -----"; sinfo -N -l 2>&1 || true
    echo "----- scontrol show node -----"; scontrol show node 2>&1 | head -30 || true
    exit 1
}
pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- 0. can we do this here? -------------------------------------------------------------
if [[ "$(id -u)" -ne 0 ]]; then
    say "SKIP: must run as root to install packages and start slurmctld/slurmd (uid=$(id -u))."
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "SKIP: apt-get not found; this script installs Debian's slurm-wlm and munge with apt."
    exit 3
fi

# --- 1. packages -------------------------------------------------------------------------
need_pkgs=()
for bin in slurmctld slurmd sinfo sbatch munged; do
    command -v "$bin" >/dev/null 2>&1 || { need_pkgs=(slurm-wlm munge); break; }
done
if ((${#need_pkgs[@]})); then
    say "installing ${need_pkgs[*]} with apt-get (DEBIAN_FRONTEND=noninteractive)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq >/tmp/slurm-ci-apt.log 2>&1 ||
        ! apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" \
            >>/tmp/slurm-ci-apt.log 2>&1; then
        tail -n 30 /tmp/slurm-ci-apt.log
        say "apt-get could not install ${need_pkgs[*]} (log: /tmp/slurm-ci-apt.log)."
        exit 4
    fi
else
    say "slurm-wlm and munge already installed"
fi
say "$(slurmctld -V)"

# Report on cgroups (informational: this config never uses them, so it works without).
if [[ -w /sys/fs/cgroup ]] && mkdir /sys/fs/cgroup/.slurm-ci-probe 2>/dev/null; then
    rmdir /sys/fs/cgroup/.slurm-ci-probe
    say "cgroups: writable (not used: proctrack/linuxproc, task/none)"
else
    say "cgroups: not writable here (fine: this config does not use cgroups)"
fi

# --- 2. munge ------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating munge key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pid_alive "$MUNGE_PID"; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" \
        --log-file=/var/log/munge/munged.log || diagnose "munged did not start"
fi
munge -n | unmunge >/dev/null || diagnose "munge credential round trip failed"

# --- 3. slurm.conf -------------------------------------------------------------------------
HOST="$(hostname -s)"
NCPU="$(nproc)"
TOTAL_MB="$(free -m | awk '/^Mem:/ {print $2}')"
MEM_MB=$((TOTAL_MB - HEADROOM_MB))
((MEM_MB < 512)) && MEM_MB=$((TOTAL_MB / 2))
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
NEW_CONF="$(mktemp)"
cat >"$NEW_CONF" <<EOF
# Written by .ci/slurm/setup.sh: a single-node test cluster on 127.0.0.1.
ClusterName=dmmvae-ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups: process tracking through /proc, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting daemon: sacct has nothing to read; the snakemake plugin uses squeue.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep finished jobs visible to squeue for an hour (the plugin polls squeue for status).
MinJobAge=3600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Trust the CPUs/RealMemory below even if hardware detection differs (containers).
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldLogFile=${CTLD_LOG}
SlurmdLogFile=${SLURMD_LOG}
SlurmctldDebug=info
SlurmdDebug=info
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=1
if [[ -f "$CONF" ]] && cmp -s "$NEW_CONF" "$CONF"; then
    conf_changed=0
    rm -f "$NEW_CONF"
else
    mv "$NEW_CONF" "$CONF"
    chmod 0644 "$CONF"
    say "wrote $CONF (node $HOST: CPUs=$NCPU RealMemory=${MEM_MB}MB, partition $PARTITION)"
fi

# --- 4. daemons ----------------------------------------------------------------------------
node_state() { sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n1; }
if ((conf_changed == 0)) && pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" &&
    [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; then
    say "slurmctld and slurmd already running with this config"
else
    # Stop daemons this script started earlier (by pid file), then start fresh.
    for pf in "$SLURMD_PID" "$CTLD_PID"; do
        if pid_alive "$pf"; then
            kill "$(cat "$pf")" 2>/dev/null || true
            for _ in $(seq 20); do pid_alive "$pf" || break; sleep 0.25; done
        fi
        rm -f "$pf"
    done
    say "starting slurmctld"
    slurmctld -c || diagnose "slurmctld did not start"
    for _ in $(seq 40); do scontrol ping >/dev/null 2>&1 && break; sleep 0.25; done
    scontrol ping 2>/dev/null | grep -q UP || diagnose "slurmctld does not answer scontrol ping"
    say "starting slurmd"
    slurmd -N "$HOST" || diagnose "slurmd did not start"
fi

say "waiting up to ${WAIT_S}s for node $HOST to be idle"
deadline=$((SECONDS + WAIT_S))
state=""
while ((SECONDS < deadline)); do
    state="$(node_state)"
    [[ "$state" == idle* || "$state" == mix* ]] && break
    if [[ "$state" == down* || "$state" == drain* ]]; then
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 1
done
[[ "$state" == idle* || "$state" == mix* ]] || diagnose "node $HOST is '$state', not idle"
sinfo

# --- 5. smoke check ------------------------------------------------------------------------
out="$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1)" ||
    diagnose "srun hostname failed: $out"
say "srun hostname -> $out"
smoke_log="$(mktemp /tmp/slurm-ci-smoke.XXXXXX)"
timeout 90 sbatch --wait -t 1 --mem 64 -o "$smoke_log" --wrap 'echo sbatch-ok' >/dev/null 2>&1 ||
    diagnose "sbatch --wait --wrap failed ($(cat "$smoke_log" 2>/dev/null))"
grep -q sbatch-ok "$smoke_log" || diagnose "sbatch job ran but wrote no output to $smoke_log"
rm -f "$smoke_log"
say "sbatch --wait --wrap -> ok"
say "SLURM cluster up in $((SECONDS - START_S)) s (partition $PARTITION, node $HOST)"
