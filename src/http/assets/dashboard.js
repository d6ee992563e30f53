/* Switchboard operations dashboard.
 *
 * Live calls come over server-sent events from /v1/live, read with fetch() because
 * EventSource cannot send the Authorization header. Agents, cases, recordings and
 * /metrics are polled. Server strings only ever reach the page as text nodes.
 *
 * window.dashboard exposes the live state for tests and tooling.
 */
(() => {
  'use strict';

  const TOKEN_KEY = 'switchboard-admin-token';
  const RECONNECT_MS = 2000;
  const ENDED_LINGER_MS = 10000;
  const STAGES = ['transcript', 'turn_decided', 'agent_answered', 'first_tts_chunk', 'first_audio'];
  const CHART_MAX_S = 2;
  const KEEP = Symbol('keep');   // setCells: leave this cell as it is

  const $ = (sel, root = document) => root.querySelector(sel);
  const ui = {
    status: $('#status'), token: $('#token'), calls: $('#calls'), recent: $('#recent'),
    callsCount: $('#calls-count'), latency: $('#latency'), counters: $('#counters'),
    detail: $('#case-detail'), agents: $('#agents'), cases: $('#cases'), recordings: $('#recordings')
  };

  const calls = new Map();   // live call id -> card {call, node, state, lines, elapsed, barges}
  let gen = 0;               // bumped by stop(): loops of an older generation end themselves
  let abort = null;          // AbortController of the current /v1/live request
  const timers = new Set();
  let detailFor = null;      // what #case-detail shows: {kind: 'case'|'timeline', id, updated}
  let player = null;         // the recording loaded for playback: {id, url}

  const db = window.dashboard = { status: '', calls, metrics: null, parseMetrics, quantile };

  /* ------------------------------------------------------------ helpers */

  // h('tag.class1.class2', {prop: value, dataset: {...}}, ...children). Children are nodes or
  // strings; strings become text nodes, never HTML. null children are skipped.
  function h(tag, props, ...kids) {
    const [name, ...cls] = tag.split('.');
    const e = document.createElement(name);
    if (cls.length) e.className = cls.join(' ');
    if (props) {
      const { dataset, ...rest } = props;
      Object.assign(e, rest);
      if (dataset) Object.assign(e.dataset, dataset);
    }
    e.append(...kids.filter(k => k != null).map(k => (k instanceof Node ? k : String(k))));
    return e;
  }
  const mono = (text, cls = '') => h('span.mono' + cls, { title: text ?? '' }, text ?? '—');
  const badge = (text, tone) => h('span.badge' + (tone ? '.' + tone : ''), null, text ?? '—');
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const pad = n => String(n).padStart(2, '0');

  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    const hr = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    s %= 60;
    return (hr ? hr + ':' + pad(m) : m) + ':' + pad(s);
  }
  const clock = ms => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  function when(ms) {
    if (ms == null) return '—';
    const d = new Date(ms);
    if (d.toDateString() === new Date().toDateString()) return clock(ms);
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + clock(ms).slice(0, 5);
  }
  const secs = v => (!isFinite(v) ? '—' : v < 1 ? Math.round(v * 1000) + ' ms' : v.toFixed(2) + ' s');
  const bytes = n => (n == null ? '—' : n < 1048576 ? Math.round(n / 1024) + ' KB' : (n / 1048576).toFixed(1) + ' MB');

  // Fills a row's cells from strings (null shows "—"), nodes, or KEEP.
  function setCells(tr, values) {
    values.forEach((v, i) => {
      const td = tr.cells[i] || tr.insertCell();
      if (v === KEEP) return;
      if (v instanceof Node) td.replaceChildren(v);
      else td.textContent = v == null || v === '' ? '—' : String(v);
    });
  }

  // Keeps one <tr data-ATTR="id"> per item in the items' order, reusing rows so that focus,
  // selection and a playing <audio> survive a poll. fill(tr, item, fresh) sets the cells.
  function syncRows(section, items, attr, fill) {
    const tbody = $('tbody', section);
    $('table', section).hidden = !items.length;
    $('.empty:not(.off)', section).hidden = items.length > 0;
    const old = new Map([...tbody.rows].map(tr => [tr.getAttribute('data-' + attr), tr]));
    items.forEach((item, i) => {
      let tr = old.get(item.id);
      const fresh = !tr;
      if (fresh) (tr = h('tr')).setAttribute('data-' + attr, item.id);
      old.delete(item.id);
      fill(tr, item, fresh);
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    });
    old.forEach(tr => tr.remove());
    markSelected();
  }

  function miniTable(heads, rows) {
    const t = h('table.table', null, h('thead', null, h('tr', null, ...heads.map(x => h('th', null, x)))), h('tbody'));
    rows.forEach(r => setCells(t.tBodies[0].insertRow(), r));
    return t;
  }
  const json = v => h('span.json', null, v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v));

  function setStatus(text, state) {
    db.status = ui.status.textContent = text;
    ui.status.dataset.state = state;
  }

  /* ------------------------------------------------------------ auth and requests */

  // A token in the fragment (/admin#token=…: fragments are never sent to the server) wins.
  function takeToken() {
    const m = /(?:^|[#&])token=([^&]*)/.exec(location.hash);
    if (m) {
      let t = m[1];
      try { t = decodeURIComponent(t); } catch { /* keep it raw */ }
      saveToken(t);
      history.replaceState(null, '', location.pathname + location.search);
    }
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
  }
  function saveToken(t) {
    try { t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage off */ }
  }
  let token = takeToken();
  ui.token.value = token;

  $('#token-form').addEventListener('submit', e => {
    e.preventDefault();
    saveToken(token = ui.token.value.trim());
    start();
  });

  // fetch with the token (none in open mode). Throws an Error with .auth on 401/403 (after
  // stopping everything) and with .status on any other failure.
  async function api(path, init = {}) {
    const headers = { ...init.headers };
    if (token) headers.authorization = 'Bearer ' + token;
    const r = await fetch(path, { cache: 'no-store', ...init, headers });
    if (r.status === 401 || r.status === 403) {
      stop();
      setStatus(r.status === 401 ? 'admin token needed' : 'this token is not an admin token', 'error');
      throw Object.assign(new Error('HTTP ' + r.status), { auth: true });
    }
    if (!r.ok) {
      let code = '';
      try { code = (await r.json()).error.code + ' '; } catch { /* not the API's JSON error */ }
      throw Object.assign(new Error(`${code}(HTTP ${r.status})`), { status: r.status });
    }
    return r;
  }
  const getJSON = path => api(path, { headers: { accept: 'application/json' } }).then(r => r.json());

  /* ------------------------------------------------------------ lifecycle */

  const pollers = {
    agents: [5000, loadAgents], cases: [5000, loadCases],
    recordings: [10000, loadRecordings], metrics: [5000, loadMetrics]
  };

  // Runs one loader and notes in its panel's header when it last worked, or why not.
  async function refresh(name) {
    const meta = $(`[data-meta="${name}"]`);
    try {
      await pollers[name][1]();
      if (meta) meta.textContent = 'updated ' + clock(Date.now());
      meta?.classList.remove('error');
    } catch (e) {
      if (e.auth) return;
      console.warn(`dashboard: ${name}:`, e);
      if (meta) meta.textContent = 'unavailable · ' + e.message;
      meta?.classList.add('error');
    }
  }

  function stop() {
    gen++;
    abort?.abort();
    timers.forEach(clearTimeout);
    timers.clear();
  }

  function start() {
    stop();
    const g = gen;
    setStatus('connecting…', 'connecting');
    runStream(g);
    for (const [name, [ms]] of Object.entries(pollers)) {
      const tick = async () => {
        await refresh(name);
        if (g !== gen) return;
        const t = setTimeout(() => { timers.delete(t); tick(); }, ms);
        timers.add(t);
      };
      tick();
    }
  }

  /* ------------------------------------------------------------ live stream */

  async function runStream(g) {
    while (g === gen) {
      try {
        abort = new AbortController();
        const r = await api('/v1/live', { signal: abort.signal, headers: { accept: 'text/event-stream' } });
        await readEvents(r.body, g);
      } catch (e) {
        if (g !== gen) return;          // stopped: a new token was saved, or a 401/403
        console.warn('dashboard: live stream:', e.message);
      }
      if (g !== gen) return;
      setStatus('reconnecting…', 'connecting');
      await sleep(RECONNECT_MS);
    }
  }

  // Splits the byte stream into SSE frames: a frame's "data:" lines joined with "\n", a blank
  // line ends it; comments (": keep-alive") and other fields are ignored.
  async function readEvents(body, g) {
    const reader = body.getReader(), dec = new TextDecoder();
    let buf = '', data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || g !== gen) return;
        buf += dec.decode(value, { stream: true });
        // A "\r" at the very end may be the first half of "\r\n": wait for the next chunk.
        for (let m; (m = /\r\n|\n|\r(?!$)/.exec(buf));) {
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === '') {
            if (data.length) dispatch(data.join('\n'));
            data = [];
          } else if (line.startsWith('data:')) {
            data.push(line.slice(line[5] === ' ' ? 6 : 5));
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  function dispatch(text) {
    let ev;
    try { ev = JSON.parse(text); } catch { console.warn('dashboard: bad event', text); return; }
    if (db.status !== 'live') setStatus('live', 'live');
    const c = calls.get(ev.id);
    switch (ev.type) {
      case 'snapshot':
        calls.forEach(card => card.node.remove());
        calls.clear();
        (ev.calls || []).forEach(upsertCall);
        renderCallsEmpty();
        break;
      case 'call_started': upsertCall(ev.call); break;
      case 'state': if (c) setCallState(c, ev.state); break;
      case 'line': if (c) addLine(c, ev.who === 'bot' ? 'bot' : 'caller', ev.text, ev.t_ms); break;
      case 'barge_in':
        if (!c) break;
        c.barges.textContent = c.call.barge_ins = (c.call.barge_ins || 0) + 1;
        addLine(c, 'barge', `⟂ caller cut in — heard: "${ev.heard ?? ''}"`, ev.t_ms);
        break;
      case 'call_ended': endCall(ev.id, ev.outcome); break;
    }
  }

  /* ------------------------------------------------------------ call cards */

  const kv = (label, value) => h('span.kv', null, h('span.k', null, label), value);

  function buildCard(call) {
    const c = {
      call, state: h('span.state'), lines: h('ol.lines'),
      elapsed: h('span.elapsed.mono'), barges: h('span.barge-ins', null, call.barge_ins || 0)
    };
    const button = (cls, text, onclick) => h('button.btn.' + cls, { type: 'button', onclick }, text);
    c.node = h('article.call', { dataset: { id: call.id } },
      h('header.call-head', null,
        h('div.call-who', null, mono(call.caller || 'unknown caller', '.call-caller'), h('span.tag.provider', null, call.provider || '?')),
        c.state),
      h('div.call-meta', null,
        kv('case', h('button.linkish.mono.case-id', {
          type: 'button', title: 'Show this case', disabled: !call.case_id, onclick: () => showCase(call.case_id)
        }, call.case_id || '—')),
        kv('elapsed', c.elapsed), kv('barge-ins', c.barges)),
      c.lines,
      h('footer.call-actions', null,
        button('hangup', 'Hang up', () => act(c, 'hangup')),
        button('transfer', 'Transfer to a human', () => act(c, 'transfer')),
        h('span.call-msg')));
    setCallState(c, call.state);
    tickCall(c);
    for (const l of call.lines || []) addLine(c, l.who === 'bot' ? 'bot' : 'caller', l.text, l.t_ms);
    return c;
  }

  function setCallState(c, state) {
    c.call.state = c.state.textContent = state;
    c.state.className = 'state state-' + state;
  }

  // Who and when are drawn by CSS from the class and data-t, so a line's text is what was said.
  function addLine(c, cls, text, tMs) {
    const box = c.lines;
    // Follow the conversation unless the reader has scrolled up.
    const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    box.append(h('li.line.' + cls, tMs != null ? { dataset: { t: duration(tMs) } } : null, text ?? ''));
    if (stick) box.scrollTop = box.scrollHeight;
  }

  const tickCall = c => { c.elapsed.textContent = duration(Date.now() - c.call.started_at_ms); };
  setInterval(() => calls.forEach(tickCall), 1000);

  function renderCallsEmpty() {
    const empty = $('.empty', ui.calls);
    if (calls.size) empty?.remove();
    else if (!empty) ui.calls.append(h('p.empty', null, 'No live calls'));
    ui.callsCount.textContent = calls.size ? `${calls.size} live` : '';
  }

  function upsertCall(call) {
    if (!call?.id) return;
    const old = calls.get(call.id), c = buildCard(call);
    if (old) old.node.replaceWith(c.node);
    else ui.calls.append(c.node);
    calls.set(call.id, c);
    c.lines.scrollTop = c.lines.scrollHeight;
    renderCallsEmpty();
  }

  // An ended call leaves #calls but stays visible below it, greyed out with its outcome, a while.
  function endCall(id, outcome) {
    const c = calls.get(id);
    if (c) {
      calls.delete(id);
      c.node.classList.add('ended');
      c.node.dataset.outcome = outcome || '';
      c.node.querySelectorAll('.call-actions .btn').forEach(b => { b.disabled = true; });
      c.state.after(h('span.tag.outcome', null, outcome || 'ended'));
      ui.recent.prepend(c.node);
      c.lines.scrollTop = c.lines.scrollHeight;
      setTimeout(() => c.node.remove(), ENDED_LINGER_MS);
      renderCallsEmpty();
    }
    // The call's case and recording have just been written (the WAV's header a moment later).
    refresh('cases');
    refresh('recordings');
    setTimeout(() => refresh('recordings'), 1500);
  }

  async function act(c, action) {
    const msg = $('.call-msg', c.node), buttons = c.node.querySelectorAll('.call-actions .btn');
    buttons.forEach(b => { b.disabled = true; });
    msg.className = 'call-msg';
    msg.textContent = action === 'hangup' ? 'hanging up…' : 'transferring…';
    try {
      await api(`/v1/calls/${encodeURIComponent(c.call.id)}/${action}`, { method: 'POST' });
      msg.textContent = action === 'hangup' ? 'hang-up requested' : 'transfer requested';
    } catch (e) {
      msg.classList.add('bad');
      msg.textContent = e.auth ? 'not allowed' : e.status === 404 ? 'call is no longer live' : 'failed: ' + e.message;
    }
    setTimeout(() => {
      msg.textContent = '';
      if (calls.get(c.call.id) === c) buttons.forEach(b => { b.disabled = false; });
    }, 4000);
  }

  /* ------------------------------------------------------------ agents and cases */

  async function loadAgents() {
    const agents = (await getJSON('/v1/agents')).agents || [];
    syncRows(ui.agents, agents, 'agent', (tr, a) => {
      const endpoint = a.endpoint == null ? '' : typeof a.endpoint === 'string' ? a.endpoint : JSON.stringify(a.endpoint);
      const tone = { closed: 'good', half_open: 'warn', open: 'bad' }[a.breaker];
      setCells(tr, [
        h('div', null, h('span.mono', { title: endpoint }, a.id), h('span.sub', null, a.specialty || '')),
        h('span.tag', null, a.kind || '?'),
        h('span', { title: 'capabilities: ' + ((a.capabilities || []).join(', ') || 'none') }, (a.tasks || []).join(', ') || '—'),
        badge(a.healthy ? 'healthy' : 'unhealthy', a.healthy ? 'good' : 'bad'),
        badge((a.breaker || '?').replace('_', '-'), tone),
        a.consecutive_failures ?? 0, a.last_error ? h('span.error-text', null, a.last_error) : null]);
    });
  }

  async function loadCases() {
    const cases = (await getJSON('/v1/cases?limit=20')).cases || [];
    syncRows(ui.cases, cases, 'case', (tr, k, fresh) => {
      if (fresh) tr.tabIndex = 0;
      const status = badge(k.status, { open: 'info', closed: '' }[k.status] ?? 'warn');
      if (k.resolution) status.title = k.resolution;
      setCells(tr, [mono(k.id, '.id'), k.customer_id, k.channel,
        badge(k.priority, /high|urgent|critical/i.test(k.priority || '') ? 'bad' : ''),
        status, k.owner, when(k.updated_at_ms)]);
      // The case on show changed: show its new audit entries.
      if (detailFor?.kind === 'case' && detailFor.id === k.id &&
          detailFor.updated != null && detailFor.updated !== k.updated_at_ms) showCase(k.id, true);
    });
  }

  const openCase = e => {
    const tr = e.target.closest('tr[data-case]');
    if (!tr || (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ')) return;
    e.preventDefault();
    showCase(tr.dataset.case);
  };
  $('tbody', ui.cases).addEventListener('click', openCase);
  $('tbody', ui.cases).addEventListener('keydown', openCase);

  function markSelected() {
    document.querySelectorAll('tr.selected').forEach(tr => tr.classList.remove('selected'));
    const attr = detailFor && (detailFor.kind === 'case' ? 'data-case' : 'data-recording');
    document.querySelectorAll(`tr[${attr}]`).forEach(tr => {
      if (tr.getAttribute(attr) === detailFor.id) tr.classList.add('selected');
    });
  }

  // Shows `what` (loaded by load()) in #case-detail; quiet: no "loading…" placeholder.
  async function showDetail(kind, id, title, load, quiet) {
    detailFor = { kind, id };
    markSelected();
    if (!quiet) ui.detail.replaceChildren(h('h3', null, title), h('p.muted', null, 'loading…'));
    try {
      const body = await load();
      if (detailFor?.kind === kind && detailFor.id === id) ui.detail.replaceChildren(h('h3', null, title), ...body);
    } catch (e) {
      if (!e.auth) ui.detail.replaceChildren(h('h3', null, title), h('p.error-text', null, 'Could not load: ' + e.message));
    }
  }

  const showCase = (id, quiet) => showDetail('case', id, 'Case ' + id, async () => {
    const k = await getJSON('/v1/cases/' + encodeURIComponent(id));
    if (detailFor?.id === id) detailFor.updated = k.updated_at_ms;
    const facts = [['status', k.status], ['resolution', k.resolution], ['owner', k.owner],
      ['customer', k.customer_id], ['session', k.session_id], ['channel', k.channel], ['priority', k.priority],
      ['created', when(k.created_at_ms)], ['updated', when(k.updated_at_ms)]];
    const audit = (k.audit || []).map(a => [when(a.at_ms), a.actor, h('span.mono', null, a.action), json(a.detail)]);
    return [
      h('dl.facts', null, ...facts.flatMap(([dt, dd]) => [h('dt', null, dt), h('dd', null, dd ?? '—')])),
      audit.length ? miniTable(['Time', 'Actor', 'Action', 'Detail'], audit) : h('p.empty', null, 'No audit entries')];
  }, quiet);

  /* ------------------------------------------------------------ recordings */

  async function loadRecordings() {
    let list;
    try {
      list = (await getJSON('/v1/recordings')).recordings || [];
    } catch (e) {
      if (e.status !== 404) throw e;
      list = null;                         // the gateway keeps no recordings
    }
    $('.off', ui.recordings).hidden = !!list;
    syncRows(ui.recordings, list || [], 'recording', (tr, r, fresh) => {
      const live = r.ended_at_ms == null;
      setCells(tr, [mono(r.id, '.id'), r.provider, mono(r.caller), mono(r.case_id, '.id'),
        when(r.started_at_ms), live ? 'live' : duration(r.ended_at_ms - r.started_at_ms),
        r.outcome ? h('span.tag', null, r.outcome) : live ? badge('in progress', 'good') : null,
        bytes(r.bytes),
        !fresh ? KEEP : h('div.actions', null,
          h('button.btn.play', { type: 'button', onclick: e => play(r.id, tr, e.currentTarget) }, 'Play'),
          h('button.linkish.timeline', { type: 'button', onclick: () => showTimeline(r.id) }, 'timeline')),
        KEEP]);
      tr.cells[9].className = 'rec-player';
    });
    if (!list) $('.empty', ui.recordings).hidden = true;
    if (player && !ui.recordings.querySelector(`tr[data-recording="${CSS.escape(player.id)}"]`)) stopPlayer();
  }

  function stopPlayer() {
    if (!player) return;
    const audio = ui.recordings.querySelector(`tr[data-recording="${CSS.escape(player.id)}"] audio`);
    audio?.pause();
    audio?.remove();
    URL.revokeObjectURL(player.url);
    player = null;
  }

  // The WAV needs the Authorization header, so it is fetched as a blob, not given as a URL.
  async function play(id, tr, btn) {
    btn.disabled = true;
    btn.textContent = 'Loading…';
    try {
      const blob = await (await api(`/v1/recordings/${encodeURIComponent(id)}/call.wav`)).blob();
      stopPlayer();
      player = { id, url: URL.createObjectURL(blob) };
      const audio = h('audio', { controls: true, src: player.url });
      tr.cells[9].replaceChildren(audio);
      audio.play().catch(() => { /* autoplay refused: the controls are there */ });
    } catch (e) {
      if (!e.auth) tr.cells[9].replaceChildren(h('span.error-text', null, 'could not load ' + e.message));
    } finally {
      btn.disabled = false;
      btn.textContent = 'Play';
    }
  }

  // timeline.jsonl: one event a line, {"t_ms": ms since the call began, "kind": ..., ...}.
  function showTimeline(id) {
    ui.detail.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    return showDetail('timeline', id, 'Timeline of ' + id, async () => {
      const text = await (await api(`/v1/recordings/${encodeURIComponent(id)}/timeline`)).text();
      const rows = text.split('\n').filter(l => l.trim()).map(line => {
        let o = null;
        try { o = JSON.parse(line); } catch { /* shown raw */ }
        if (!o || typeof o !== 'object') return ['', '', json(line)];
        const { t_ms: t, kind, type, ...rest } = o;
        return [t != null ? duration(t) + '.' + String(t % 1000).padStart(3, '0') : '',
          h('span.mono', null, kind ?? type ?? ''), json(Object.keys(rest).length ? rest : '')];
      });
      return [rows.length ? miniTable(['Time', 'Event', 'Detail'], rows) : h('p.empty', null, 'The timeline is empty')];
    });
  }

  /* ------------------------------------------------------------ metrics */

  // Prometheus text format: `name{label="value",...} value [timestamp]`, label values
  // escaping \\, \" and \n. Returns [{name, labels, value}].
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
      const m = /^\s*([a-zA-Z_:][\w:]*)\s*(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;                    // comments, blank or malformed lines
      const labels = {};
      for (const [, k, v] of (m[2] || '').matchAll(/([a-zA-Z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"/g)) {
        labels[k] = v.replace(/\\(.)/g, (_, ch) => (ch === 'n' ? '\n' : ch));
      }
      const value = { '+Inf': Infinity, '-Inf': -Infinity }[m[3]] ?? Number(m[3]);
      out.push({ name: m[1], labels, value });
    }
    return out;
  }

  // One histogram per value of label `key` (summing over any other labels):
  // Map key -> {buckets: [[le, cumulative count], ...] sorted, +Inf last; sum; count}.
  function histograms(samples, family, key) {
    const series = new Map();
    const get = k => series.get(k) || series.set(k, { les: new Map(), sum: 0, count: 0 }).get(k);
    for (const s of samples) {
      const k = key ? s.labels[key] ?? '' : '';
      if (s.name === family + '_bucket') {
        const le = s.labels.le === '+Inf' ? Infinity : parseFloat(s.labels.le), hist = get(k);
        if (!isNaN(le)) hist.les.set(le, (hist.les.get(le) || 0) + s.value);
      } else if (s.name === family + '_sum') get(k).sum += s.value;
      else if (s.name === family + '_count') get(k).count += s.value;
    }
    series.forEach(hist => { hist.buckets = [...hist.les].sort((a, b) => a[0] - b[0]); });
    return series;
  }

  // As Prometheus' histogram_quantile: linear interpolation within the bucket holding the
  // rank (the first starting at 0); a rank in the +Inf bucket gives the highest finite bound.
  function quantile(q, buckets) {
    const n = buckets.length;
    if (n < 2 || buckets[n - 1][0] !== Infinity || !(buckets[n - 1][1] > 0)) return NaN;
    const rank = q * buckets[n - 1][1];
    const i = buckets.findIndex(b => b[1] >= rank);
    if (i === n - 1) return buckets[n - 2][0];
    const [end, cum] = buckets[i], [start, before] = i > 0 ? buckets[i - 1] : [0, 0];
    if (i === 0 && end <= 0) return end;
    return start + (end - start) * (rank - before) / (cum - before);
  }

  // An SVG bar per bucket up to CHART_MAX_S, of its own (non-cumulative) count.
  function chart(buckets) {
    const NS = 'http://www.w3.org/2000/svg', W = 200, H = 30, AXIS = 11;
    const svg = document.createElementNS(NS, 'svg');
    const add = (parent, tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      if (text != null) e.textContent = text;
      return parent.appendChild(e);
    };
    const bars = [];
    buckets.forEach(([le, cum], i) => {
      const [from, prev] = i ? buckets[i - 1] : [0, 0];
      if (le <= CHART_MAX_S) bars.push({ from, le, n: Math.max(0, cum - prev) });
    });
    for (const [k, v] of Object.entries({ width: W, height: H + AXIS, viewBox: `0 0 ${W} ${H + AXIS}`, role: 'img',
      'aria-label': `observations per bucket, 0 to ${CHART_MAX_S} s` })) svg.setAttribute(k, v);
    const max = Math.max(1, ...bars.map(b => b.n)), bw = W / Math.max(1, bars.length);
    bars.forEach((b, i) => {
      const ht = b.n ? Math.max(2, b.n / max * (H - 2)) : 1;
      const r = add(svg, 'rect', { class: b.n ? 'bar' : 'bar zero', x: i * bw + 0.5, y: H - ht, width: Math.max(1, bw - 1.5), height: ht, rx: 1 });
      add(r, 'title', {}, `${secs(b.from)}–${secs(b.le)}: ${b.n}`);
    });
    add(svg, 'line', { x1: 0, x2: W, y1: H + 0.5, y2: H + 0.5 });
    // The buckets are not evenly spaced in time: label a few bounds where their bars end.
    for (const [t, label] of [[0, '0'], [0.5, '0.5'], [1, '1 s']]) {
      const i = t ? bars.findIndex(b => b.le === t) + 1 : 0;
      if (t && !i) continue;
      add(svg, 'text', { x: i * bw, y: H + AXIS - 1, 'text-anchor': i ? 'middle' : 'start' }, label);
    }
    return h('div.chart', null, svg);
  }

  function stageRow(label, key, hist) {
    const tr = h('tr', { dataset: { stage: key } });
    if (!(hist?.count > 0)) {
      setCells(tr, [h('span.stage-name', null, label), h('span.muted', null, 'no samples yet')]);
      tr.cells[1].colSpan = 5;
      return tr;
    }
    setCells(tr, [h('span.stage-name', null, label), hist.count, secs(hist.sum / hist.count),
      secs(quantile(0.5, hist.buckets)), secs(quantile(0.95, hist.buckets)), chart(hist.buckets)]);
    for (let i = 1; i <= 4; i++) tr.cells[i].className = 'num';
    return tr;
  }

  async function loadMetrics() {
    const samples = parseMetrics(await (await api('/metrics', { headers: { accept: 'text/plain' } })).text());
    const stages = histograms(samples, 'switchboard_turn_stage_seconds', 'stage');
    const barge = histograms(samples, 'switchboard_barge_in_clear_seconds', null).get('');

    const table = miniTable(['Stage', 'Count', 'Mean', 'p50', 'p95', `Per bucket, 0–${CHART_MAX_S} s`], []);
    [...table.tHead.rows[0].cells].slice(1, 5).forEach(th => { th.className = 'num'; });
    const names = [...STAGES, ...[...stages.keys()].filter(s => !STAGES.includes(s)).sort()];
    names.forEach(s => table.tBodies[0].append(stageRow(s.replace(/_/g, ' '), s, stages.get(s))));
    table.tBodies[0].append(stageRow('barge-in clear', 'barge_in_clear', barge));
    ui.latency.replaceChildren(table);

    // Gauges and counters: null when the family has no sample yet.
    const sum = name => {
      const list = samples.filter(s => s.name === name);
      return list.length ? list.reduce((a, s) => a + s.value, 0) : null;
    };
    const byOutcome = new Map();
    for (const s of samples) {
      if (s.name !== 'switchboard_calls_ended_total') continue;
      const o = s.labels.outcome || '?';
      byOutcome.set(o, (byOutcome.get(o) || 0) + s.value);
    }
    const rss = sum('process_resident_memory_bytes');
    const tile = (key, label, value, unit, extra) => h('div.tile', { dataset: { counter: key } },
      h('div.tile-k', null, label),
      value == null ? h('div.tile-v.none', null, 'no samples yet') : h('div.tile-v', null, value, unit ? h('small', null, unit) : null),
      extra);
    const outcomes = [...byOutcome].sort((a, b) => b[1] - a[1])
      .map(([o, n]) => h('li', null, h('span', null, o.replace(/_/g, ' ')), h('span', null, n)));
    ui.counters.replaceChildren(
      tile('calls_active', 'Active calls', sum('switchboard_calls_active')),
      tile('calls_ended', 'Ended calls', sum('switchboard_calls_ended_total'), null,
        outcomes.length ? h('ul.tile-list', null, ...outcomes) : null),
      tile('asr_queue', 'ASR queue depth', sum('switchboard_asr_queue_depth')),
      tile('memory', 'Resident memory', rss == null ? null : (rss / 1048576).toFixed(1), 'MB'));

    db.metrics = { stages: Object.fromEntries(stages), barge, outcomes: Object.fromEntries(byOutcome) };
  }

  start();
})();
