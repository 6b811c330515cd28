#!/usr/bin/env bash
# submit.sh SRC OUT [SHARD_SECONDS [ABR_PLAN_ARGS…]]
#
# Packages SRC into OUT on a Slurm cluster: runs `abr plan` here (a probe of SRC, seconds), then
# submits the plan's N tasks as one job array (shard.sbatch, indices 0..N-1) and the assemble
# step (assemble.sbatch) with --dependency=afterok on the array. Prints, on stdout:
#
#   tasks=N
#   array_job=JOBID
#   assemble_job=JOBID
#
# (so `eval "$(submit.sh …)"` sets them); the plan's own output goes to stderr. Extra arguments
# after SHARD_SECONDS go to `abr plan` (--ladder L, --segment-duration D, --formats …, --force).
# Running it again with the same arguments reuses the plan's finished tasks.
#
# Shared storage: SRC, OUT's parent directory, the log directory and the abr binary must be at
# the same paths on this machine and on every compute node (SRC and OUT are made absolute here).
#
# Environment:
#   ABR                    abr binary, exported to the jobs (default: abr on PATH)
#   ABR_SLURM_LOG_DIR      where the jobs' output goes (default: OUT's parent/.<name>.slurm-logs,
#                          hidden so that `abr serve` never serves it); one file per array element
#                          (shard-ARRAYID_I.out) and assemble-JOBID.out
#   ABR_SBATCH_ARGS        extra sbatch options for both jobs (e.g. "--partition=video --account=x")
#   ABR_SHARD_SBATCH_ARGS  extra sbatch options for the array (e.g. "--cpus-per-task=8 --mem=4G
#                          --time=30")
#   ABR_ARRAY_THROTTLE     at most this many elements at once (sbatch --array=0-N-1%K)
#   ABR_ASSEMBLE_SBATCH_ARGS extra sbatch options for the assemble job
#   ABR_SHARD_ATTEMPTS, ABR_SHARD_RETRY_DELAY: see shard.sbatch
# sbatch's own input variables (SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS, …) apply too.
set -euo pipefail

usage() {
  echo "usage: submit.sh SRC OUT [SHARD_SECONDS [ABR_PLAN_ARGS...]]" >&2
  exit 2
}
(($# >= 2)) || usage
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(realpath -m -- "$1")
out=$(realpath -m -- "$2")
shift 2
plan=(plan "$src" --out "$out")
if (($# > 0)); then
  [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "submit.sh: bad SHARD_SECONDS: $1" >&2; usage; }
  plan+=(--shard-seconds "$1")
  shift
fi
plan+=("$@")

export ABR=${ABR:-abr}
command -v "$ABR" >/dev/null || { echo "submit.sh: abr binary not found: $ABR (set ABR)" >&2; exit 1; }
command -v sbatch >/dev/null || { echo "submit.sh: sbatch not found (Slurm client tools)" >&2; exit 1; }

name=$(basename -- "$out")
logs=${ABR_SLURM_LOG_DIR:-$(dirname -- "$out")/.$name.slurm-logs}
mkdir -p -- "$logs"

# The plan: its last stdout line is `tasks: N`; everything it prints is shown on stderr.
planned=$("$ABR" "${plan[@]}")
printf '%s\n' "$planned" >&2
last=${planned##*$'\n'}
[[ $last =~ ^tasks:\ ([1-9][0-9]*)$ ]] || { echo "submit.sh: no 'tasks: N' line from abr plan" >&2; exit 1; }
tasks=${BASH_REMATCH[1]}

read -ra common <<<"${ABR_SBATCH_ARGS:-}"
read -ra shard_args <<<"${ABR_SHARD_SBATCH_ARGS:-}"
read -ra assemble_args <<<"${ABR_ASSEMBLE_SBATCH_ARGS:-}"
range=0-$((tasks - 1))
[[ -z ${ABR_ARRAY_THROTTLE:-} ]] || range+="%$ABR_ARRAY_THROTTLE"

# --parsable prints "JOBID" or "JOBID;CLUSTER".
array=$(sbatch --parsable --array="$range" --job-name="abr-shard-$name" \
  --output="$logs/shard-%A_%a.out" "${common[@]}" "${shard_args[@]}" \
  "$here/shard.sbatch" "$out")
array=${array%%;*}
assemble=$(sbatch --parsable --dependency="afterok:$array" --job-name="abr-assemble-$name" \
  --output="$logs/assemble-%j.out" "${common[@]}" "${assemble_args[@]}" \
  "$here/assemble.sbatch" "$out")
assemble=${assemble%%;*}

echo "tasks=$tasks"
echo "array_job=$array"
echo "assemble_job=$assemble"
