#!/usr/bin/env bash
# Stop the single-node CI cluster started by .ci/slurm/setup.sh and remove its state.
#
# Stops only the daemons named in setup.sh's pid files (slurmd, slurmctld, munged), cancels
# any jobs still queued first, and removes the job state, spool and logs. Packages stay
# installed (re-running setup.sh is then fast). Safe to run when nothing is running.
# Set SLURM_CI_KEEP_LOGS=1 to keep /var/log/slurm (e.g. to upload as a CI artifact).
set -uo pipefail

say() { echo "[slurm-teardown] $*"; }
pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ "$(id -u)" -ne 0 ]]; then
    say "not root: nothing to tear down (setup.sh needs root too)"
    exit 0
fi

if command -v scancel >/dev/null 2>&1 && pid_alive /run/slurmctld.pid; then
    scancel --quiet --partition "${SLURM_CI_PARTITION:-debug}" 2>/dev/null || true
fi

for pf in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    if pid_alive "$pf"; then
        pid="$(cat "$pf")"
        say "stopping $(ps -o comm= -p "$pid") (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid still alive after 10 s: sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pf"
done

rm -rf /var/spool/slurmctld /var/spool/slurmd
if [[ "${SLURM_CI_KEEP_LOGS:-0}" != 1 ]]; then
    rm -rf /var/log/slurm
fi
rm -f /etc/slurm/slurm.conf
say "done"
