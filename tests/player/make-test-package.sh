#!/usr/bin/env bash
# tests/player/make-test-package.sh OUT_DIR [DURATION_S]
#
# Builds a reference HLS + DASH package with the ffmpeg CLI alone (no abr
# packager), laid out like abr's output, so play.mjs can be checked on its own:
#   OUT_DIR/hls/master.m3u8, OUT_DIR/hls/v<N>/index.m3u8, OUT_DIR/hls/v<N>/seg_00000.ts ...
#   OUT_DIR/dash/manifest.mpd, OUT_DIR/dash/<rep>/init.mp4, OUT_DIR/dash/<rep>/seg_00001.m4s ...
# Three video renditions (1280x720, 854x480, 640x360; 2 s GOPs/segments) plus
# AAC stereo audio. Default duration 12 s.
set -euo pipefail

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 OUT_DIR [DURATION_S]" >&2; exit 2; }
OUT=$1
DUR=${2:-12}

rm -rf "$OUT/hls" "$OUT/dash"
mkdir -p "$OUT/hls" "$OUT/dash"

INPUTS=(-f lavfi -i "testsrc2=size=1280x720:rate=30"
        -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$DUR")
SPLIT="[0:v]split=3[v0][v1i][v2i];[v1i]scale=854:480[v1];[v2i]scale=640:360[v2]"
# Fixed 2 s GOPs without scene-cut keyframes so every rendition has aligned segments.
VENC=(-c:v libx264 -preset veryfast -pix_fmt yuv420p -profile:v high
      -g 60 -keyint_min 60 -sc_threshold 0
      -b:v:0 1500k -maxrate:v:0 1800k -bufsize:v:0 3000k
      -b:v:1 800k -maxrate:v:1 960k -bufsize:v:1 1600k
      -b:v:2 400k -maxrate:v:2 480k -bufsize:v:2 800k)
AENC=(-c:a aac -b:a 64k -ac 2 -ar 48000)
FF=(ffmpeg -hide_banner -nostdin -loglevel error -y)

# HLS: one muxed (video+audio) TS variant per rendition, master playlist.
mkdir -p "$OUT/hls/v0" "$OUT/hls/v1" "$OUT/hls/v2"
(
  cd "$OUT/hls"
  "${FF[@]}" "${INPUTS[@]}" -filter_complex "$SPLIT" \
    -map "[v0]" -map "[v1]" -map "[v2]" -map 1:a -map 1:a -map 1:a \
    "${VENC[@]}" "${AENC[@]}" \
    -f hls -hls_time 2 -hls_playlist_type vod -hls_flags independent_segments \
    -hls_segment_filename "v%v/seg_%05d.ts" \
    -master_pl_name master.m3u8 \
    -var_stream_map "v:0,a:0 v:1,a:1 v:2,a:2" "v%v/index.m3u8"
)

# DASH: 3 video representations in one adaptation set + 1 audio one.
# Representation ids are 0,1,2 (video) and 3 (audio); the dash muxer does not
# create directories, so make them first.
mkdir -p "$OUT/dash/0" "$OUT/dash/1" "$OUT/dash/2" "$OUT/dash/3"
(
  cd "$OUT/dash"
  "${FF[@]}" "${INPUTS[@]}" -filter_complex "$SPLIT" \
    -map "[v0]" -map "[v1]" -map "[v2]" -map 1:a \
    "${VENC[@]}" "${AENC[@]}" \
    -f dash -seg_duration 2 -use_template 1 -use_timeline 0 \
    -adaptation_sets "id=0,streams=v id=1,streams=a" \
    -init_seg_name '$RepresentationID$/init.mp4' \
    -media_seg_name '$RepresentationID$/seg_$Number%05d$.m4s' \
    manifest.mpd
)

echo "$OUT"
