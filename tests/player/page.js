// In-page side of the player harness (plain browser script, no modules).
// play.mjs drives it through window.harness:
//   harness.start(player, manifestUrl)  'hls' (global Hls) or 'dash' (global dashjs)
//   harness.state()                     JSON-serialisable snapshot
//   harness.switchTo(i)                 force video rendition i (ABR stays off)
// Rendition i is "loaded" once a media segment of it finished loading and
// "rendered" once the player reports the playhead is in it:
//   hls.js:  FRAG_LOADED (main, not init) / LEVEL_SWITCHED
//   dash.js: FRAGMENT_LOADING_COMPLETED (video MediaSegment) / QUALITY_CHANGE_RENDERED
'use strict';

(() => {
  const video = document.getElementById('video');

  const state = {
    player: null,
    started: false,
    playing: false, // first 'playing' event seen
    ended: false,
    renditions: [], // [{index, id, width, height, bitrate}]
    loaded: {}, // index -> true
    rendered: {}, // index -> true
    current: -1, // index of the rendition last reported rendered
    switchRequests: [], // indices passed to switchTo, in order
    videoSizes: [], // distinct videoWidth x videoHeight seen by the <video> (resize events)
    errors: [], // {fatal, source, ...}
    fatal: null, // first fatal error, if any
  };

  const addError = (fatal, source, info) => {
    const e = { fatal, source, ...info };
    state.errors.push(e);
    if (fatal && !state.fatal) state.fatal = e;
  };

  // --- playback progress -------------------------------------------------
  // Media time played = total length of video.played (the ranges the element
  // actually played through; skipped gaps and seeks do not count, replays do
  // not count twice).
  const playedSeconds = () => {
    let sum = 0;
    for (let i = 0; i < video.played.length; i++) sum += video.played.end(i) - video.played.start(i);
    return sum;
  };
  video.addEventListener('playing', () => { state.playing = true; });
  // Independent evidence of what was decoded: the element's intrinsic size.
  video.addEventListener('resize', () => {
    const size = `${video.videoWidth}x${video.videoHeight}`;
    if (!state.videoSizes.includes(size)) state.videoSizes.push(size);
  });
  video.addEventListener('ended', () => { state.ended = true; });
  video.addEventListener('error', () => {
    const me = video.error;
    addError(true, 'video', { code: me && me.code, message: me && me.message });
  });

  // --- hls.js --------------------------------------------------------------
  let hls = null;
  function startHls(url) {
    if (typeof Hls === 'undefined') return addError(true, 'harness', { message: 'hls.js not loaded' });
    if (!Hls.isSupported()) return addError(true, 'harness', { message: 'hls.js: MediaSource not supported' });
    hls = new Hls({
      // Never cap or pick levels by player size/bandwidth; we pick them.
      capLevelToPlayerSize: false,
      startLevel: 0,
    });
    const E = Hls.Events;
    hls.on(E.MANIFEST_PARSED, (_e, data) => {
      state.renditions = data.levels.map((l, index) => ({
        index, id: String(index), width: l.width, height: l.height, bitrate: l.bitrate,
      }));
      // Manual level from the start: this turns hls.js ABR off.
      hls.loadLevel = 0;
      video.play().catch((err) => addError(false, 'play()', { message: String(err) }));
    });
    hls.on(E.FRAG_LOADED, (_e, data) => {
      const f = data.frag;
      if (f.type === 'main' && f.sn !== 'initSegment') state.loaded[f.level] = true;
    });
    hls.on(E.LEVEL_SWITCHED, (_e, data) => {
      state.rendered[data.level] = true;
      state.current = data.level;
    });
    hls.on(E.ERROR, (_e, data) => {
      addError(!!data.fatal, 'hls.js', {
        type: data.type,
        details: data.details,
        reason: data.reason || (data.error && data.error.message) || undefined,
        url: (data.frag && data.frag.url) || data.url || (data.context && data.context.url) || undefined,
        httpStatus: data.response && data.response.code,
      });
    });
    hls.attachMedia(video);
    hls.loadSource(url);
  }

  // --- dash.js -------------------------------------------------------------
  let dash = null;
  const repIndexById = new Map();
  const loadedDashIds = new Set();
  const loadedDashUrls = [];
  function markDashLoaded() {
    for (const [id, i] of repIndexById) {
      const inUrl = (u) => u.split(/[/?#]/).includes(id);
      if (loadedDashIds.has(String(id)) || loadedDashUrls.some(inUrl)) state.loaded[i] = true;
    }
  }
  function startDash(url) {
    if (typeof dashjs === 'undefined') return addError(true, 'harness', { message: 'dash.js not loaded' });
    dash = dashjs.MediaPlayer().create();
    dash.updateSettings({
      debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
      streaming: {
        // ABR off for video (and audio): representations only change when we say so.
        abr: { autoSwitchBitrate: { video: false, audio: false } },
      },
    });
    const E = dashjs.MediaPlayer.events;
    dash.on(E.STREAM_INITIALIZED, () => {
      const reps = dash.getRepresentationsByType('video') || [];
      state.renditions = reps.map((r, index) => {
        repIndexById.set(r.id, index);
        return { index, id: r.id, width: r.width, height: r.height, bitrate: r.bandwidth };
      });
      markDashLoaded();
    });
    // Segments can finish loading before STREAM_INITIALIZED has given the representations
    // (seen under CI load: every rendition stayed "not loaded"), so loads are kept by
    // representation id (or URL, when the request names no representation) and mapped to
    // indices whenever both are known.
    dash.on(E.FRAGMENT_LOADING_COMPLETED, (e) => {
      const req = e.request || {};
      if (e.error || req.mediaType !== 'video' || req.type !== 'MediaSegment') return;
      const id = req.representation ? req.representation.id : req.representationId;
      if (id !== undefined && id !== null) loadedDashIds.add(String(id));
      else if (req.url) loadedDashUrls.push(req.url);
      markDashLoaded();
    });
    dash.on(E.QUALITY_CHANGE_RENDERED, (e) => {
      if (e.mediaType !== 'video' || !e.newRepresentation) return;
      const i = repIndexById.get(e.newRepresentation.id);
      if (i === undefined) return;
      state.rendered[i] = true;
      state.current = i;
    });
    dash.on(E.ERROR, (e) => {
      const err = e.error || {};
      addError(true, 'dash.js', { code: err.code, message: err.message, data: err.data && err.data.url });
    });
    dash.on(E.PLAYBACK_ERROR, (e) => {
      const err = e.error || {};
      addError(true, 'dash.js', { event: 'playbackError', code: err.code, message: err.message });
    });
    dash.initialize(video, url, true);
  }

  window.harness = {
    start(player, url) {
      if (state.started) throw new Error('already started');
      state.started = true;
      state.player = player;
      if (player === 'hls') startHls(url);
      else if (player === 'dash') startDash(url);
      else addError(true, 'harness', { message: `unknown player ${player}` });
    },

    switchTo(i) {
      state.switchRequests.push(i);
      if (hls) {
        // Immediate switch: flushes the buffer and loads rendition i at the
        // playhead; also keeps ABR in manual mode.
        hls.currentLevel = i;
      } else if (dash) {
        // dash.js v5 API; forceReplace=true replaces already-buffered media
        // so the switch is rendered quickly (test media is short).
        dash.setRepresentationForTypeById('video', state.renditions[i].id, true);
      }
    },

    state() {
      if (dash) markDashLoaded();
      return {
        ...state,
        played: playedSeconds(),
        currentTime: video.currentTime,
        duration: video.duration,
        paused: video.paused,
        readyState: video.readyState,
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
      };
    },
  };
})();
