// The library page of `abr serve --ingest` (served at `/`): the principal's videos with live
// state, a resumable tus upload, play / cancel / retry / delete. No build step; every name and
// reason reaches the DOM through textContent only.
'use strict';
(() => {
  const TOKEN_KEY = 'abr.library.token';
  const UPLOADS = new URL('/api/v1/uploads', location.href).href;
  const VIDEOS = '/api/v1/videos';
  const CHUNK = 8 * 1024 * 1024;
  const POLL_MS = 1000;
  const PAGE = 20;

  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const auth = () => ({ Authorization: `Bearer ${token()}` });

  let cursor = null; // `after` of the page shown (null: the newest)
  let timer = null;
  let current = null; // the running tus.Upload
  const rows = new Map(); // video id → its <tr>

  // ---- Token: asked once per tab (sessionStorage), asked again on a 401 ----

  function askToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    $('main').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  function signedIn() {
    $('login').hidden = true;
    $('main').hidden = false;
    refresh();
    showUnfinished();
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    signedIn();
  });

  // ---- The list: polled every second, rows updated in place ----

  async function api(method, path) {
    const res = await fetch(path, { method, headers: auth(), cache: 'no-store' });
    if (res.status === 401) {
      askToken('The token was refused: enter it again.');
      throw new Error('unauthorized');
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `${method} ${path}: HTTP ${res.status}`);
    return body;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (cursor) q.set('after', cursor);
      const page = await api('GET', `${VIDEOS}?${q}`);
      render(page);
      $('list-error').textContent = '';
    } catch (e) {
      if (e.message === 'unauthorized') return;
      $('list-error').textContent = `Cannot list the videos: ${e.message}`;
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  function render(page) {
    const tbody = $('videos').tBodies[0];
    const seen = new Set();
    page.videos.forEach((v, i) => {
      seen.add(v.id);
      let tr = rows.get(v.id);
      if (!tr) {
        tr = newRow(v);
        rows.set(v.id, tr);
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      update(tr, v);
    });
    for (const [id, tr] of rows) {
      if (!seen.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    }
    $('empty').hidden = page.videos.length > 0 || cursor !== null;
    $('older').hidden = !page.next;
    $('older').dataset.next = page.next || '';
    $('first').hidden = cursor === null;
  }

  function cell(tr, cls) {
    const td = document.createElement('td');
    td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function button(label, cls, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = cls;
    b.textContent = label;
    b.addEventListener('click', onClick);
    return b;
  }

  function newRow(v) {
    const tr = document.createElement('tr');
    tr.dataset.id = v.id;
    cell(tr, 'name').textContent = v.name;
    cell(tr, 'filename').textContent = v.filename || '';
    cell(tr, 'size').textContent = bytes(v.size);
    const state = cell(tr, 'state');
    state.appendChild(document.createElement('span')).className = 'state-name';
    state.appendChild(document.createElement('span')).className = 'reason';
    const prog = cell(tr, 'progress');
    const bar = prog.appendChild(document.createElement('progress'));
    bar.max = 100;
    prog.appendChild(document.createElement('span')).className = 'percent';
    const act = cell(tr, 'actions');
    const play = act.appendChild(document.createElement('a'));
    play.className = 'play';
    play.textContent = 'Play';
    act.appendChild(button('Cancel', 'cancel', () => action(v, 'POST', `${VIDEOS}/${encodeURIComponent(v.id)}/cancel`)));
    act.appendChild(button('Retry', 'retry', () => action(v, 'POST', `${VIDEOS}/${encodeURIComponent(v.id)}/retry`)));
    act.appendChild(
      button('Delete', 'delete', () => {
        if (confirm(`Delete ${v.name}? Its package is removed.`)) {
          action(v, 'DELETE', `${VIDEOS}/${encodeURIComponent(v.id)}`);
        }
      }),
    );
    return tr;
  }

  function update(tr, v) {
    tr.dataset.state = v.state;
    tr.querySelector('.state-name').textContent = v.state;
    tr.querySelector('.reason').textContent = v.reason || '';
    let percent = null;
    let detail = '';
    if (v.state === 'uploading') {
      percent = v.size ? (100 * v.received) / v.size : 0;
      detail = `${bytes(v.received)} received`;
    } else if (v.state === 'processing') {
      percent = v.percent;
      detail = `${v.tasks_done}/${v.tasks_total} tasks`;
      if (v.eta_s !== undefined) detail += `, ${v.eta_s} s left`;
    } else if (v.state === 'ready') {
      percent = 100;
    }
    const bar = tr.querySelector('progress');
    bar.hidden = percent === null;
    if (percent !== null) bar.value = percent;
    tr.querySelector('.percent').textContent =
      percent === null ? '' : ` ${percent.toFixed(0)} %${detail ? ` (${detail})` : ''}`;
    const play = tr.querySelector('a.play');
    const url = v.state === 'ready' && v.urls && v.urls.play;
    play.hidden = !url;
    if (url) play.href = url;
    else play.removeAttribute('href');
    tr.querySelector('.cancel').hidden = !['queued', 'processing'].includes(v.state);
    tr.querySelector('.retry').hidden = !['failed', 'cancelled'].includes(v.state);
  }

  async function action(v, method, path) {
    try {
      await api(method, path);
      $('list-error').textContent = '';
    } catch (e) {
      if (e.message !== 'unauthorized') $('list-error').textContent = `${v.name}: ${e.message}`;
    }
    refresh();
  }

  $('older').addEventListener('click', () => {
    cursor = $('older').dataset.next || null;
    refresh();
  });
  $('first').addEventListener('click', () => {
    cursor = null;
    refresh();
  });

  // ---- Upload: tus-js-client, resumed from its localStorage record of the same file ----

  // A valid package name from a file name: extension dropped, other characters as '-'.
  function nameFrom(filename) {
    const base = filename.replace(/\.[^.]*$/, '') || filename;
    const n = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[.-]+/, '').slice(0, 128);
    return n || 'video';
  }

  function status(text, isError) {
    const s = $('upload-status');
    s.textContent = text;
    s.className = isError ? 'error' : '';
  }

  $('upload').addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = $('file').files[0];
    if (!file || current) return;
    const name = $('name').value.trim() || nameFrom(file.name);
    const bar = $('upload-progress');
    bar.value = 0;
    const upload = new tus.Upload(file, {
      endpoint: UPLOADS,
      chunkSize: CHUNK,
      retryDelays: [0, 1000, 3000, 5000],
      metadata: { filename: file.name, name },
      headers: auth(),
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => {
        bar.value = total ? (100 * sent) / total : 0;
        status(`${file.name}: ${bytes(sent)} of ${bytes(total)}`);
      },
      onSuccess: () => {
        current = null;
        bar.value = 100;
        status(`${file.name}: uploaded as ${name}`);
        $('pause').hidden = true;
        $('upload').reset();
        refresh();
        showUnfinished();
      },
      onError: (err) => {
        current = null;
        $('pause').hidden = true;
        const res = err.originalResponse;
        if (res && res.getStatus() === 401) {
          askToken('The token was refused: enter it again.');
          return;
        }
        let why = err.message;
        if (res) {
          try {
            why = JSON.parse(res.getBody()).error || why;
          } catch {
            why = res.getBody() || why;
          }
        }
        status(`${file.name}: ${why}`, true);
      },
    });
    current = upload;
    try {
      const previous = await upload.findPreviousUploads();
      if (previous.length) {
        previous.sort((a, b) => (Date.parse(b.creationTime) || 0) - (Date.parse(a.creationTime) || 0));
        upload.resumeFromPreviousUpload(previous[0]);
        status(`${file.name}: resuming`);
      } else {
        status(`${file.name}: starting`);
      }
    } catch (err) {
      status(`${file.name}: cannot read earlier uploads (${err.message}); starting anew`);
    }
    $('pause').hidden = false;
    upload.start();
    setTimeout(refresh, 200);
  });

  $('pause').addEventListener('click', () => {
    if (!current) return;
    current.abort();
    current = null;
    $('pause').hidden = true;
    status('Paused: pick the same file and upload again to resume.');
    showUnfinished();
  });

  // Names the uploads tus-js-client remembers as unfinished (a reload interrupted them).
  async function showUnfinished() {
    const storage = tus.defaultOptions && tus.defaultOptions.urlStorage;
    if (!storage || !storage.findAllUploads) return;
    try {
      const all = await storage.findAllUploads();
      const names = all.map((u) => (u.metadata && u.metadata.filename) || '?');
      $('unfinished').textContent = names.length
        ? `Unfinished: ${names.join(', ')} — pick the same file again to resume.`
        : '';
    } catch {
      $('unfinished').textContent = '';
    }
  }

  function bytes(n) {
    if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
    if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
    if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
    return `${n} B`;
  }

  if (token()) signedIn();
  else askToken();
})();
