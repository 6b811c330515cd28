#!/usr/bin/env bash
# render.sh KIND [KEY=VALUE…]   → the YAML of one Kubernetes object of an abr job, on stdout
#
# KIND: pvc | plan | shards | assemble (templates KIND.yaml / KIND-job.yaml beside this script;
# ${KEY} in a template is replaced by the value; no kustomize or envsubst needed). Pipe the
# output to `kubectl apply -f -`. The steps, in order, are in docs/ENGINES.md.
#
# Keys (defaults in brackets):
#   NAME              the package's short name, a DNS label: the Jobs are abr-plan-NAME,
#                     abr-shards-NAME, abr-assemble-NAME                      (plan/shards/assemble)
#   IMAGE             a container image with abr (on PATH) and its FFmpeg libraries
#   SRC, OUT          absolute paths of the source and of the package directory, below MOUNT:
#                     every pod sees the shared volume at MOUNT, so the paths are the same everywhere
#   MOUNT [/media]    where the volume is mounted in every pod
#   PVC [abr-media]   the ReadWriteMany PersistentVolumeClaim
#   SHARD_SECONDS     `abr plan --shard-seconds` (plan; empty: abr's default)
#   PLAN_ARGS         more `abr plan` arguments, space-separated, e.g. "--ladder /media/ladder.toml"
#   TASKS             N, from `abr plan`'s last line `tasks: N`                           (shards)
#   PARALLELISM       pods at once [min(TASKS, 16)]                                       (shards)
#   BACKOFF_PER_INDEX retries of one index [3]                                            (shards)
#   CPU [2], MEMORY [2Gi]  requests (and memory limit) of a shard pod                     (shards)
#   STORAGE_CLASS     an RWX storage class (nfs-client, cephfs, efs-sc…)                  (pvc)
#   STORAGE [1Ti]     the claim's size                                                    (pvc)
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

die() { echo "render.sh: $*" >&2; exit 2; }
(($# >= 1)) || die "usage: render.sh pvc|plan|shards|assemble [KEY=VALUE...]"
kind=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case $kind in
  pvc) template=$here/pvc.yaml ;;
  plan | shards | assemble) template=$here/$kind-job.yaml ;;
  *) die "unknown kind: $kind (pvc, plan, shards, assemble)" ;;
esac

declare -A v=([MOUNT]=/media [PVC]=abr-media [BACKOFF_PER_INDEX]=3 [CPU]=2 [MEMORY]=2Gi
  [STORAGE]=1Ti [SHARD_SECONDS]="" [PLAN_ARGS]="")
keys=" NAME IMAGE SRC OUT MOUNT PVC SHARD_SECONDS PLAN_ARGS TASKS PARALLELISM BACKOFF_PER_INDEX CPU MEMORY STORAGE_CLASS STORAGE "
for kv in "$@"; do
  [[ $kv == *=* ]] || die "not KEY=VALUE: $kv"
  k=${kv%%=*}
  [[ $keys == *" $k "* ]] || die "unknown key: $k"
  v[$k]=${kv#*=}
done

# Checks: every value ends up inside a YAML scalar, so each is held to a safe character set.
need() { [[ -n ${v[$1]:-} ]] || die "$kind needs $1=…"; }
match() { [[ ${v[$1]} =~ $2 ]] || die "bad $1: ${v[$1]} ($3)"; }
dns='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
path='^/[^"\\[:cntrl:]]*$'
under_mount() {
  need "$1"
  match "$1" "$path" "an absolute path without quotes or backslashes"
  [[ ${v[$1]} == "${v[MOUNT]%/}"/* ]] || die "$1=${v[$1]} is not below MOUNT=${v[MOUNT]}"
}
match MOUNT "$path" "an absolute path without quotes or backslashes"
need PVC
match PVC "$dns" "a DNS label"
case $kind in
  pvc)
    need STORAGE_CLASS
    match STORAGE_CLASS '^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$' "a storage class name"
    match STORAGE '^[0-9]+(Ki|Mi|Gi|Ti|Pi)?$' "a size such as 500Gi"
    ;;
  *)
    need NAME
    match NAME "$dns" "a DNS label"
    ((${#v[NAME]} <= 40)) || die "NAME is longer than 40 characters"
    need IMAGE
    match IMAGE '^[A-Za-z0-9][A-Za-z0-9._/:@-]*$' "an image reference"
    under_mount OUT
    ;;
esac
case $kind in
  plan)
    under_mount SRC
    args=()
    [[ -z ${v[SHARD_SECONDS]} ]] || {
      match SHARD_SECONDS '^[0-9]+([.][0-9]+)?$' "seconds"
      args+=(--shard-seconds "${v[SHARD_SECONDS]}")
    }
    read -ra more <<<"${v[PLAN_ARGS]}"
    args+=("${more[@]}")
    rendered=""
    for a in "${args[@]}"; do
      [[ $a =~ ^[^\"\\[:cntrl:]]*$ ]] || die "bad PLAN_ARGS word: $a"
      rendered+=", \"$a\""
    done
    v[PLAN_ARGS]=$rendered
    ;;
  shards)
    need TASKS
    match TASKS '^[1-9][0-9]*$' "a positive integer: the plan's task count"
    : "${v[PARALLELISM]:=$((v[TASKS] < 16 ? v[TASKS] : 16))}"
    match PARALLELISM '^[1-9][0-9]*$' "a positive integer"
    match BACKOFF_PER_INDEX '^[0-9]+$' "a count"
    match CPU '^[0-9]+(\.[0-9]+|m)?$' "a CPU quantity such as 2 or 500m"
    match MEMORY '^[0-9]+(Ki|Mi|Gi|Ti)?$' "a memory quantity such as 2Gi"
    ;;
esac

text=$(<"$template")
for k in "${!v[@]}"; do
  text=${text//"\${$k}"/"${v[$k]}"}
done
[[ $text != *'${'* ]] || die "internal: unset placeholder left in $(basename "$template")"
printf '%s\n' "$text"
