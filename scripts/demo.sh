#!/usr/bin/env bash
# The demo: installs what is missing (scripts/setup.sh), builds abr (release), generates a 30 s
# 1080p30 sample, packages it to demo/packages/sample (HLS + DASH) and serves demo/packages with a
# player page (hls.js / dash.js) at http://127.0.0.1:$PORT/play/sample (default port 8080) until Ctrl-C.
#
#   bash scripts/demo.sh            PORT=9000 bash scripts/demo.sh
#
# Works on a fresh Debian 12 machine with Rust installed (https://rustup.rs). Everything it
# writes goes to demo/ (git-ignored) and target/.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-8080}
HOST=127.0.0.1
SAMPLE=demo/sample-1080p30.mp4
PKG=demo/packages/sample

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo: error: $*" >&2; exit 1; }

[[ $PORT =~ ^[0-9]+$ ]] && ((PORT >= 1 && PORT <= 65535)) || die "PORT must be a port number (1-65535), got '$PORT'"
# Fail early rather than after the build; abr serve checks again when it binds.
if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  die "port $PORT on $HOST is already in use; stop what uses it or run: PORT=<free port> bash scripts/demo.sh"
fi

start=$SECONDS

step "Installing missing dependencies (scripts/setup.sh)"
bash scripts/setup.sh

step "Building abr (cargo build --release --locked)"
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), then re-run"
cargo build --release --locked

step "Generating a 30 s 1080p30 sample ($SAMPLE)"
bash fixtures/make.sh 1080p30 "$SAMPLE" 30

step "Packaging it ($PKG)"
target/release/abr package "$SAMPLE" --out "$PKG" --force

echo
echo "Package written to $PKG/ ($((SECONDS - start)) s):"
echo "  HLS:  $PKG/hls/master.m3u8"
echo "  DASH: $PKG/dash/manifest.mpd"

step "Serving demo/packages with abr serve (Ctrl-C to stop)"
echo "Player: http://$HOST:$PORT/play/sample   (switch hls.js / dash.js on the page)"
echo "Manifests: http://$HOST:$PORT/sample/hls/master.m3u8  http://$HOST:$PORT/sample/dash/manifest.mpd"
exec target/release/abr serve --root demo/packages --listen "$HOST:$PORT" \
  --player-assets origin/player/node_modules --log-format text
