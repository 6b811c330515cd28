#!/usr/bin/env bash
# ffmpeg shim for scripts/bench/shaka_veryfast.py: `-preset slow` -> `-preset veryfast`, then
# exec the real (bundled) ffmpeg named by $SHAKA_REAL_FFMPEG. Every other argument is kept.
args=()
prev=
for a in "$@"; do
  if [[ $prev == -preset && $a == slow ]]; then a=veryfast; fi
  args+=("$a")
  prev=$a
done
exec "${SHAKA_REAL_FFMPEG:?}" "${args[@]}"
