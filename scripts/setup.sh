#!/usr/bin/env bash
# Installs what abr's build, demo and tests need on Debian 12, idempotently.
# Safe to run repeatedly: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(pkg-config clang libclang-dev ffmpeg
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev libxml2-utils chromium nodejs npm
  nginx libnginx-mod-http-headers-more-filter redis-server redis-tools curl
  slurmctld slurmd slurm-client munge python3 python3-venv)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from outside apt (e.g. the machine image): accept working binaries.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi
if ((${#missing[@]})); then
  echo "setup: apt-get install ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: the player scripts `abr serve` ships (origin/player) and the browser-test harness
# (tests/player: playwright-core driving Debian's chromium, hls.js, dash.js). Reinstalled when the
# lockfile changes. tests/tus: tus-js-client for the upload tests.
for d in origin/player tests/player tests/tus; do
  if [ ! -f "$d/node_modules/.installed" ] || [ "$d/package-lock.json" -nt "$d/node_modules/.installed" ]; then
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
  fi
done

# tuspy (PyPI) for the upload tests, in a venv (Debian 12's pip refuses system-wide installs).
# Reinstalled when requirements.txt changes.
venv=tests/tus/.venv
if [ ! -f "$venv/.installed" ] || [ tests/tus/requirements.txt -nt "$venv/.installed" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/tus/requirements.txt
  touch "$venv/.installed"
fi
