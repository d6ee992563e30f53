/* Switchboard softphone: calls the voice bot over WebRTC.
 *
 * Signaling: a WebSocket at /webrtc/signal on the page's own origin, JSON text
 * messages (see the gateway docs). The offer is sent once ICE gathering is
 * complete (non-trickle), or after a 2 s cap with whatever was gathered.
 *
 * window.softphone exposes the live state for tests and tooling.
 */
(function () {
  'use strict';

  var GATHER_CAP_MS = 2000;
  var ANSWER_TIMEOUT_MS = 20000;
  var ICE_TIMEOUT_MS = 20000;
  var LAT_GOOD = 800;
  var LAT_OK = 1500;

  function $(id) { return document.getElementById(id); }
  var ui = {
    state: $('state'),
    stateText: document.querySelector('#state .pill-text'),
    timer: $('timer'),
    error: $('error'),
    errorTitle: document.querySelector('#error .alert-title'),
    errorText: document.querySelector('#error .alert-text'),
    errorClose: document.querySelector('#error .alert-close'),
    agent: $('agent'),
    agentLabel: $('agent-state'),
    agentSub: $('agent-sub'),
    template: $('template'),
    call: $('call'),
    hangup: $('hangup'),
    mute: $('mute'),
    muteText: document.querySelector('#mute .btn-mute-text'),
    meter: $('meter'),
    latency: $('latency'),
    latValue: document.querySelector('#latency .latency-value'),
    latMeta: document.querySelector('#latency .latency-meta'),
    spark: document.querySelector('#latency .spark'),
    captions: $('captions'),
    empty: $('empty'),
    callId: $('call-id'),
    device: $('device'),
    netRtt: $('net-rtt'),
    netJitter: $('net-jitter'),
    netLoss: $('net-loss'),
    remote: $('remote')
  };

  var config = { iceServers: [] };
  var templatesLoaded = false;
  var call = null;          // the current call session, or null
  var typingRow = null;     // "bot is thinking" placeholder in the transcript

  var sp = window.softphone = {
    state: 'idle',            // idle | connecting | connected | ended | error
    agentState: null,         // listening | thinking | speaking | null
    captions: [],             // {who, text, turn, at, interrupted, heard, latencyMs}
    latencies: [],            // {turn, ms} in arrival order (one per turn)
    medianLatencyMs: null,
    lastError: null,          // human-readable message of the last error, or null
    endReason: null,          // hangup | transfer | error | busy | local, after a call ended
    endDetail: null,
    callId: null,
    template: null,
    muted: false,
    micLevel: 0,              // 0..1, the meter's current value
    network: null,            // {rttMs, jitterMs, lossPct} while connected
    call: function () { return startCall(); },
    hangup: function () { hangupLocal(); },
    inboundAudio: function () { return rtpTotals('inbound-rtp', ['packetsReceived', 'bytesReceived', 'totalAudioEnergy']); },
    outboundAudio: function () { return rtpTotals('outbound-rtp', ['packetsSent', 'bytesSent']); }
  };

  /* ------------------------------------------------------------------ *
   * UI state
   * ------------------------------------------------------------------ */

  var STATE_TEXT = {
    idle: 'Ready', connecting: 'Connecting…', connected: 'Connected', ended: 'Call ended', error: 'Call failed'
  };
  var AGENT_TEXT = {
    idle: ['Not in a call', 'Pick a template and press Call.'],
    connecting: ['Connecting', 'Setting up the call…'],
    listening: ['Listening', 'Go ahead — the bot is listening.'],
    thinking: ['Thinking', 'Working on a reply…'],
    speaking: ['Speaking', 'Talk over the bot to interrupt it.'],
    ended: ['Call ended', ''],
    failed: ['Call failed', '']
  };

  function setState(state, sub) {
    sp.state = state;
    ui.state.dataset.state = state;
    ui.stateText.textContent = STATE_TEXT[state] || state;
    var active = state === 'connecting' || state === 'connected';
    ui.call.hidden = active;
    ui.hangup.hidden = !active;
    ui.call.disabled = active || !templatesLoaded;
    ui.template.disabled = active || !templatesLoaded;
    ui.mute.disabled = !active;
    if (!active) setMuted(false, true);
    if (state === 'connecting') setAgentView('connecting', sub);
    else if (state === 'connected') setAgentView(sp.agentState || 'listening');
    else if (state === 'ended') setAgentView('ended', sub);
    else if (state === 'error') setAgentView('failed', sub);
    else setAgentView('idle');
    document.title = (state === 'connected' ? '● ' : '') + 'Softphone · Switchboard';
  }

  function setAgentView(key, sub) {
    ui.agent.dataset.agent = key;
    var t = AGENT_TEXT[key] || [key, ''];
    ui.agentLabel.textContent = t[0];
    ui.agentSub.textContent = sub != null ? sub : t[1];
  }

  function setAgentState(state) {
    if (state !== 'listening' && state !== 'thinking' && state !== 'speaking') return;
    sp.agentState = state;
    if (sp.state === 'connected' || sp.state === 'connecting') setAgentView(state);
    if (state === 'thinking') showTyping(); else hideTyping();
  }

  function showError(title, message) {
    sp.lastError = message ? title + ': ' + message : title;
    ui.errorTitle.textContent = title;
    ui.errorText.textContent = message || '';
    ui.errorText.hidden = !message;
    ui.error.hidden = false;
  }
  function clearError() { ui.error.hidden = true; }
  ui.errorClose.addEventListener('click', clearError);

  /* ------------------------------------------------------------------ *
   * Templates and ICE config
   * ------------------------------------------------------------------ */

  /* A gateway with API tokens wants a client token: given in the page's fragment
   * (/softphone#token=…, never sent in a request line) and kept for the tab's session. */
  function accessToken() {
    var m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) {
      try { sessionStorage.setItem('switchboard.token', decodeURIComponent(m[1])); } catch (e) { /* private mode */ }
      history.replaceState(null, '', location.pathname + location.search);
    }
    try { return sessionStorage.getItem('switchboard.token') || ''; } catch (e) { return ''; }
  }

  function getJSON(url) {
    var headers = { accept: 'application/json' };
    var token = accessToken();
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(url, { headers: headers, cache: 'no-store' }).then(function (r) {
      if (r.status === 401) throw new Error('this gateway needs an access token: open the page as /softphone#token=YOUR_CLIENT_TOKEN');
      if (!r.ok) throw new Error(url + ' returned HTTP ' + r.status);
      return r.json();
    });
  }

  function loadTemplates() {
    return getJSON('/softphone/templates').then(function (data) {
      var list = Array.isArray(data.templates) ? data.templates : [];
      if (!list.length) throw new Error('the gateway has no templates');
      var wanted = new URLSearchParams(location.search).get('template') || stored('template') || data.default;
      if (list.indexOf(wanted) < 0) wanted = list.indexOf(data.default) >= 0 ? data.default : list[0];
      ui.template.textContent = '';
      list.forEach(function (name) {
        var o = document.createElement('option');
        o.value = name;
        o.textContent = prettyName(name) + (name === data.default ? ' (default)' : '');
        ui.template.appendChild(o);
      });
      ui.template.value = wanted;
      sp.template = wanted;
      templatesLoaded = true;
      setState(sp.state);
    }).catch(function (e) {
      ui.template.textContent = '';
      var o = document.createElement('option');
      o.textContent = 'Unavailable';
      ui.template.appendChild(o);
      showError('Could not load templates', e.message + '. Reload the page to try again.');
    });
  }

  function loadConfig() {
    return getJSON('/softphone/config').then(function (data) {
      if (Array.isArray(data.iceServers)) config.iceServers = data.iceServers;
    }).catch(function (e) {
      console.warn('softphone: no ICE config, using host candidates only:', e.message);
    });
  }

  ui.template.addEventListener('change', function () {
    sp.template = ui.template.value;
    store('template', sp.template);
  });

  function prettyName(s) { return s.charAt(0).toUpperCase() + s.slice(1).replace(/[-_]+/g, ' '); }
  function stored(k) { try { return localStorage.getItem('softphone.' + k); } catch (e) { return null; } }
  function store(k, v) { try { localStorage.setItem('softphone.' + k, v); } catch (e) { /* private mode */ } }

  /* ------------------------------------------------------------------ *
   * Call lifecycle
   * ------------------------------------------------------------------ */

  function startCall() {
    if (call) return Promise.resolve();
    clearError();
    resetTranscript();
    sp.lastError = null;
    sp.endReason = sp.endDetail = sp.callId = null;
    sp.agentState = null;
    sp.template = ui.template.value;

    var c = call = {
      ws: null, pc: null, stream: null, audioCtx: null, meterTimer: 0, clockTimer: 0, netTimer: 0,
      answerTimer: 0, iceTimer: 0, answered: false, connectedAt: 0, done: false
    };
    setState('connecting', 'Opening the microphone…');
    addEvent('Calling · ' + prettyName(sp.template));

    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.resolve(fail(c, 'Microphone unavailable',
        'The browser only allows microphone access on secure pages — open the softphone over HTTPS or on localhost.'));
    }
    if (typeof RTCPeerConnection === 'undefined') {
      return Promise.resolve(fail(c, 'WebRTC unavailable', 'This browser does not support WebRTC calls.'));
    }

    var wsReady = openSignaling(c);
    wsReady.catch(function () { /* reported by the socket handlers */ });

    return navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false
    }).then(function (stream) {
      if (c.done) { stopStream(stream); return; }
      c.stream = stream;
      startMeter(c, stream);
      var track = stream.getAudioTracks()[0];
      ui.device.textContent = track.label ? 'Using ' + track.label : 'Microphone on';
      ui.device.title = track.label || '';
      var pc = c.pc = new RTCPeerConnection({ iceServers: config.iceServers });
      pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
      pc.ontrack = function (e) {
        ui.remote.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
        var p = ui.remote.play();
        if (p && p.catch) p.catch(function () { /* autoplay: the Call click normally allows it */ });
      };
      pc.onconnectionstatechange = function () { onPeerState(c); };
      pc.oniceconnectionstatechange = function () {
        if (pc.iceConnectionState === 'failed') onPeerState(c, true);
      };
      ui.agentSub.textContent = 'Preparing the connection…';
      return pc.createOffer().then(function (offer) {
        return pc.setLocalDescription(offer);
      }).then(function () {
        return gatheringDone(pc, GATHER_CAP_MS);
      }).then(function () {
        if (c.done) return;
        ui.agentSub.textContent = 'Reaching the gateway…';
        return wsReady.then(function () {
          if (c.done) return;
          send(c, { type: 'call', template: sp.template, sdp: pc.localDescription.sdp });
          ui.agentSub.textContent = 'Calling the bot…';
          c.answerTimer = setTimeout(function () {
            if (!c.answered) fail(c, 'No answer', 'The gateway did not answer within ' + ANSWER_TIMEOUT_MS / 1000 + ' s.');
          }, ANSWER_TIMEOUT_MS);
        });
      });
    }, function (err) {
      fail(c, micErrorTitle(err), micErrorText(err));
    }).catch(function (err) {
      if (!c.done) fail(c, 'Could not start the call', String(err && err.message || err));
    });
  }

  function micErrorTitle(err) {
    var n = err && err.name;
    if (n === 'NotAllowedError' || n === 'SecurityError') return 'Microphone access denied';
    if (n === 'NotFoundError' || n === 'OverconstrainedError') return 'No microphone found';
    if (n === 'NotReadableError' || n === 'AbortError') return 'Microphone is busy';
    return 'Microphone error';
  }
  function micErrorText(err) {
    var n = err && err.name;
    if (n === 'NotAllowedError' || n === 'SecurityError') return 'Allow microphone access for this site in the browser’s address bar, then call again.';
    if (n === 'NotFoundError' || n === 'OverconstrainedError') return 'Connect a microphone or headset and call again.';
    if (n === 'NotReadableError' || n === 'AbortError') return 'Another application is using the microphone. Close it and call again.';
    return String(err && err.message || err);
  }

  function gatheringDone(pc, capMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise(function (resolve) {
      var t = setTimeout(finish, capMs);
      function check() { if (pc.iceGatheringState === 'complete') finish(); }
      function finish() {
        clearTimeout(t);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function onPeerState(c, iceFailed) {
    if (c !== call || c.done) return;
    var s = c.pc.connectionState;
    if (s === 'connected') {
      clearTimeout(c.iceTimer);
      if (sp.state !== 'connected') {
        c.connectedAt = Date.now();
        setState('connected');
        // The gateway starts the call (and its greeting's caption) as soon as media reaches it,
        // which can be a moment before the browser reports the connection: keep the divider
        // above any caption that already arrived.
        var first = sp.captions.length ? sp.captions[0].node : null;
        addEvent('Connected', false, first && first.parentNode === ui.captions ? first : null);
        startClock(c);
        startNetStats(c);
      } else {
        ui.stateText.textContent = STATE_TEXT.connected;
      }
    } else if (s === 'disconnected') {
      ui.stateText.textContent = 'Reconnecting…';
    } else if (s === 'failed' || iceFailed) {
      fail(c, 'Connection failed', 'ICE failed: no audio path to the gateway could be established (a firewall, or a missing TURN server?).');
    }
  }

  function openSignaling(c) {
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/webrtc/signal';
    var token = accessToken();
    if (token) url += '?access_token=' + encodeURIComponent(token);
    return new Promise(function (resolve, reject) {
      var ws;
      try { ws = c.ws = new WebSocket(url); } catch (e) { reject(e); fail(c, 'Signaling failed', e.message); return; }
      var opened = false;
      ws.onopen = function () { opened = true; resolve(); };
      ws.onmessage = function (ev) { onSignal(c, ev.data); };
      ws.onerror = function () { /* followed by close, which reports */ };
      ws.onclose = function (ev) {
        if (!opened) {
          reject(new Error('closed'));
          fail(c, 'Gateway unreachable', 'Could not open the signaling connection (' + url + ').');
        } else if (!c.done) {
          fail(c, 'Signaling connection closed', 'The gateway closed the call’s control channel' +
            (ev.code && ev.code !== 1005 ? ' (code ' + ev.code + (ev.reason ? ', ' + ev.reason : '') + ')' : '') + '.');
        }
      };
    });
  }

  function send(c, msg) {
    if (c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(msg));
  }

  function onSignal(c, raw) {
    if (c !== call || c.done) return;
    var m;
    try { m = JSON.parse(raw); } catch (e) { console.warn('softphone: bad signaling message', raw); return; }
    switch (m.type) {
      case 'answer': onAnswer(c, m); break;
      case 'agent_state': setAgentState(m.state); break;
      case 'caption': addCaption(m.who, m.text, m.turn); break;
      case 'interrupted': markInterrupted(m.turn, m.heard); break;
      case 'latency': addLatency(m.turn, m.ms); break;
      case 'ended': serverEnded(c, m.reason, m.detail); break;
      case 'error':
        if (!c.answered) fail(c, 'The gateway refused the call', m.message || 'unknown error');
        else showError('Gateway error', m.message || 'unknown error');
        break;
      default: console.debug('softphone: ignoring', m.type);
    }
  }

  function onAnswer(c, m) {
    if (c.answered) return;
    c.answered = true;
    clearTimeout(c.answerTimer);
    sp.callId = m.call_id || null;
    ui.callId.textContent = sp.callId ? 'call ' + sp.callId : '';
    ui.callId.title = sp.callId || '';
    ui.agentSub.textContent = 'Connecting audio…';
    c.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }).then(function () {
      c.iceTimer = setTimeout(function () {
        if (c.pc && c.pc.connectionState !== 'connected') {
          fail(c, 'Connection failed', 'ICE did not connect within ' + ICE_TIMEOUT_MS / 1000 + ' s: no audio path to the gateway.');
        }
      }, ICE_TIMEOUT_MS);
      onPeerState(c);
    }, function (e) {
      fail(c, 'Bad answer from the gateway', e.message);
    });
  }

  // [headline, default explanation, transcript line] per `ended` reason
  var ENDED_TEXT = {
    hangup: ['Call ended', 'The bot ended the call.', 'The bot hung up'],
    transfer: ['Transferred', 'The call was handed to a human agent.', 'Transferred to a human agent'],
    error: ['Call failed', 'The gateway ended the call because of an error.', 'The call failed on the gateway'],
    busy: ['Lines busy', 'All lines are busy. Try again in a moment.', 'All lines are busy']
  };

  function serverEnded(c, reason, detail) {
    var t = ENDED_TEXT[reason] || ['Call ended', 'The gateway ended the call (' + reason + ').', 'Call ended'];
    teardown(c);
    sp.endReason = reason || 'hangup';
    sp.endDetail = detail || null;
    if (reason === 'error') showError(t[2], detail || 'No details were given.');
    setState('ended', detail || t[1]);
    ui.agentLabel.textContent = t[0];
    addEvent(t[2] + (detail ? ': ' + detail : '') + durationSuffix(c), reason === 'error' || reason === 'busy');
  }

  function hangupLocal() {
    var c = call;
    if (!c) return;
    send(c, { type: 'hangup' });
    teardown(c);
    sp.endReason = 'local';
    setState('ended', 'You hung up.');
    addEvent('You hung up' + durationSuffix(c));
  }

  function fail(c, title, message) {
    if (c.done) return;
    teardown(c);
    showError(title, message);
    setState('error', title);
    addEvent(title, true);
  }

  function durationSuffix(c) {
    return c.connectedAt ? ' · ' + fmtDuration(Date.now() - c.connectedAt) : '';
  }

  function teardown(c) {
    if (c.done) return;
    c.done = true;
    if (call === c) call = null;
    clearTimeout(c.answerTimer);
    clearTimeout(c.iceTimer);
    clearInterval(c.clockTimer);
    clearInterval(c.meterTimer);
    clearInterval(c.netTimer);
    hideTyping();
    if (c.ws) {
      c.ws.onmessage = c.ws.onclose = c.ws.onerror = null;
      try { c.ws.close(1000, 'hangup'); } catch (e) { /* already closed */ }
    }
    if (c.pc) {
      c.pc.ontrack = c.pc.onconnectionstatechange = c.pc.oniceconnectionstatechange = null;
      try { c.pc.close(); } catch (e) { /* already closed */ }
    }
    if (c.stream) stopStream(c.stream);
    if (c.audioCtx) c.audioCtx.close().catch(function () {});
    ui.remote.srcObject = null;
    setMeter(0);
    sp.agentState = null;
  }

  function stopStream(s) { s.getTracks().forEach(function (t) { t.stop(); }); }

  ui.call.addEventListener('click', function () { startCall(); });
  ui.hangup.addEventListener('click', hangupLocal);
  window.addEventListener('pagehide', function () { if (call) hangupLocal(); });

  /* ------------------------------------------------------------------ *
   * Mute, mic meter, call clock
   * ------------------------------------------------------------------ */

  function setMuted(muted, quiet) {
    sp.muted = muted;
    ui.mute.setAttribute('aria-pressed', String(muted));
    ui.mute.setAttribute('aria-label', muted ? 'Unmute microphone' : 'Mute microphone');
    ui.muteText.textContent = muted ? 'Unmute' : 'Mute';
    ui.meter.classList.toggle('muted', muted);
    if (call && call.stream) call.stream.getAudioTracks().forEach(function (t) { t.enabled = !muted; });
    if (call && !quiet) send(call, { type: 'mute', muted: muted });
  }
  ui.mute.addEventListener('click', function () { setMuted(!sp.muted); });

  function startMeter(c, stream) {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      var ctx = c.audioCtx = new Ctx();
      var src = ctx.createMediaStreamSource(stream);
      var an = ctx.createAnalyser();
      an.fftSize = 1024;
      src.connect(an);
      var buf = new Float32Array(an.fftSize);
      var level = 0;
      if (ctx.state === 'suspended') ctx.resume().catch(function () {});
      c.meterTimer = setInterval(function () {
        an.getFloatTimeDomainData(buf);
        var sum = 0;
        for (var i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        var rms = Math.sqrt(sum / buf.length);
        var db = 20 * Math.log10(rms + 1e-9);
        var target = Math.max(0, Math.min(1, (db + 60) / 60));
        level = sp.muted ? 0 : target > level ? target : level * 0.8 + target * 0.2;
        setMeter(level);
      }, 60);
    } catch (e) {
      console.warn('softphone: no mic meter:', e.message);
    }
  }

  function setMeter(v) {
    sp.micLevel = Math.round(v * 1000) / 1000;
    ui.meter.style.setProperty('--level', v.toFixed(3));
    ui.meter.setAttribute('aria-valuenow', String(Math.round(v * 100)));
  }

  function startClock(c) {
    ui.timer.hidden = false;
    ui.timer.textContent = '00:00';
    c.clockTimer = setInterval(function () { ui.timer.textContent = fmtDuration(Date.now() - c.connectedAt); }, 500);
  }

  // Round trip, jitter and loss of the audio path, from getStats every 2 s.
  function startNetStats(c) {
    var prev = null;
    function poll() {
      if (c.done || !c.pc) return;
      c.pc.getStats().then(function (report) {
        if (c.done) return;
        var pair = null, inbound = null, pairs = {};
        report.forEach(function (s) {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId;
          if (s.type === 'candidate-pair') pairs[s.id] = s;
          if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio') inbound = s;
        });
        var cp = pair ? pairs[pair] : null;
        if (!cp) Object.keys(pairs).forEach(function (k) { if (pairs[k].nominated && pairs[k].state === 'succeeded') cp = pairs[k]; });
        var net = { rttMs: null, jitterMs: null, lossPct: null };
        if (cp && cp.currentRoundTripTime != null) net.rttMs = Math.round(cp.currentRoundTripTime * 1000);
        if (inbound) {
          if (inbound.jitter != null) net.jitterMs = Math.round(inbound.jitter * 1000);
          var lost = inbound.packetsLost || 0, got = inbound.packetsReceived || 0;
          if (prev) {
            var dl = lost - prev.lost, dg = got - prev.got;
            net.lossPct = dl + dg > 0 ? Math.max(0, dl) / (dl + dg) * 100 : 0;
          } else if (got + lost > 0) {
            net.lossPct = lost / (got + lost) * 100;
          }
          prev = { lost: lost, got: got };
        }
        sp.network = net;
        renderNet(net);
      }).catch(function () {});
    }
    poll();
    c.netTimer = setInterval(poll, 2000);
  }

  function renderNet(net) {
    function put(node, v, text, warn, bad) {
      node.textContent = v == null ? '—' : text;
      node.className = 'net-v' + (v == null ? '' : v >= bad ? ' bad' : v >= warn ? ' warn' : '');
    }
    net = net || {};
    put(ui.netRtt, net.rttMs, net.rttMs + ' ms', 250, 500);
    put(ui.netJitter, net.jitterMs, net.jitterMs + ' ms', 30, 60);
    put(ui.netLoss, net.lossPct, net.lossPct != null ? net.lossPct.toFixed(1) + ' %' : '', 2, 5);
  }

  function fmtDuration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    s %= 60;
    return (h ? h + ':' : '') + pad(m) + ':' + pad(s);
  }
  function pad(n) { return (n < 10 ? '0' : '') + n; }

  /* ------------------------------------------------------------------ *
   * Transcript
   * ------------------------------------------------------------------ */

  var BOT_ICON = '<svg class="icon" aria-hidden="true"><use href="#i-bot"/></svg>';
  var USER_ICON = '<svg class="icon" aria-hidden="true"><use href="#i-user"/></svg>';

  function resetTranscript() {
    hideTyping();
    sp.captions = [];
    sp.latencies = [];
    sp.medianLatencyMs = null;
    sp.network = null;
    renderNet(null);
    ui.captions.textContent = '';
    ui.callId.textContent = '';
    ui.timer.hidden = true;
    ui.empty.hidden = true;
    renderLatency();
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // The transcript scrolls inside its panel on wide screens and with the page on
  // narrow ones; either way, follow new lines only if the reader is at the end.
  function ownScroll() { return getComputedStyle(ui.captions).overflowY !== 'visible'; }
  function nearBottom() {
    if (ownScroll()) {
      var s = ui.captions;
      return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    }
    var d = document.documentElement;
    return d.scrollHeight - window.scrollY - window.innerHeight < 120;
  }
  function follow(node) {
    if (ownScroll()) ui.captions.scrollTop = ui.captions.scrollHeight;
    else node.scrollIntoView({ block: 'end', behavior: 'smooth' });
  }
  function append(node) {
    var stick = nearBottom();
    if (typingRow && typingRow.parentNode) ui.captions.insertBefore(node, typingRow);
    else ui.captions.appendChild(node);
    ui.empty.hidden = true;
    if (stick) follow(node);
  }

  function addEvent(text, bad, before) {
    var li = el('li', 'event' + (bad ? ' bad' : ''));
    li.appendChild(el('span', null, text));
    if (before) ui.captions.insertBefore(li, before);
    else append(li);
  }

  function addCaption(who, text, turn) {
    who = who === 'bot' ? 'bot' : 'caller';
    text = String(text == null ? '' : text);
    var at = new Date();
    var entry = { who: who, text: text, turn: turn == null ? null : turn, at: at.toISOString(),
      interrupted: false, heard: null, latencyMs: null };
    if (who === 'bot') {
      hideTyping();
      var lat = latencyFor(turn);
      if (lat != null && !botCaptionFor(turn)) entry.latencyMs = lat;
    }
    sp.captions.push(entry);

    var li = el('li', 'caption');
    li.dataset.who = who;
    if (entry.turn != null) li.dataset.turn = String(entry.turn);
    var avatar = el('span', 'avatar');
    avatar.setAttribute('aria-hidden', 'true');
    avatar.innerHTML = who === 'bot' ? BOT_ICON : USER_ICON;
    var wrap = el('div', 'bubble-wrap');
    var meta = el('div', 'meta');
    meta.appendChild(el('span', 'who', who === 'bot' ? 'Bot' : 'You'));
    var time = el('time', null, at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }));
    time.dateTime = entry.at;
    meta.appendChild(time);
    var bubble = el('div', 'bubble', text);
    wrap.appendChild(meta);
    wrap.appendChild(bubble);
    li.appendChild(avatar);
    li.appendChild(wrap);
    entry.node = li;
    Object.defineProperty(entry, 'node', { enumerable: false });
    if (entry.latencyMs != null) setBadge(entry, entry.latencyMs);
    append(li);
    return entry;
  }

  function botCaptionFor(turn) {
    for (var i = 0; i < sp.captions.length; i++) {
      var e = sp.captions[i];
      if (e.who === 'bot' && e.turn === turn) return e;
    }
    return null;
  }
  function lastBotCaptionFor(turn) {
    for (var i = sp.captions.length - 1; i >= 0; i--) {
      var e = sp.captions[i];
      if (e.who === 'bot' && (turn == null || e.turn === turn)) return e;
    }
    return null;
  }

  function markInterrupted(turn, heard) {
    heard = String(heard == null ? '' : heard);
    var e = lastBotCaptionFor(turn);
    if (!e) e = addCaption('bot', heard, turn);
    var parts = splitHeard(e.text, heard);
    e.interrupted = true;
    e.heard = parts[0];
    var li = e.node;
    li.classList.add('interrupted');
    var bubble = li.querySelector('.bubble');
    bubble.textContent = '';
    if (parts[0]) bubble.appendChild(el('span', 'heard', parts[0]));
    var mark = el('span', 'cut-mark');
    mark.setAttribute('aria-hidden', 'true');
    bubble.appendChild(mark);
    if (parts[1]) {
      var del = el('del', 'unheard', parts[1]);
      bubble.appendChild(del);
    }
    var meta = li.querySelector('.meta');
    if (!meta.querySelector('.badge-cut')) {
      var b = el('span', 'badge badge-cut', 'Interrupted');
      b.title = 'The caller talked over the bot; the struck-through part was not heard.';
      meta.appendChild(b);
    }
  }

  // Splits the bot's reply into the part the caller heard and the rest.
  function splitHeard(text, heard) {
    var h = heard.replace(/\s+/g, ' ').trim();
    if (!h) return ['', text];
    if (text.indexOf(h) === 0) return [h, text.slice(h.length)];
    if (h.length >= text.length) return [text, ''];
    // Fall back to word counts: the heard part may differ in case or spacing.
    var words = h.split(' ').length;
    var tokens = text.split(/(\s+)/);
    var out = '', n = 0, i = 0;
    for (; i < tokens.length && n < words; i++) {
      out += tokens[i];
      if (tokens[i] && !/^\s+$/.test(tokens[i])) n++;
    }
    return [out, tokens.slice(i).join('')];
  }

  function showTyping() {
    if (typingRow || !call) return;
    typingRow = el('li', 'typing-row');
    typingRow.setAttribute('aria-hidden', 'true');
    var inner = '<span class="avatar">' + BOT_ICON + '</span><div class="bubble-wrap"><div class="bubble"><span class="typing"><i></i><i></i><i></i></span></div></div>';
    typingRow.innerHTML = inner;
    var stick = nearBottom();
    ui.captions.appendChild(typingRow);
    if (stick) follow(typingRow);
  }
  function hideTyping() {
    if (typingRow && typingRow.parentNode) typingRow.parentNode.removeChild(typingRow);
    typingRow = null;
  }

  /* ------------------------------------------------------------------ *
   * Latency
   * ------------------------------------------------------------------ */

  function grade(ms) { return ms <= LAT_GOOD ? 'good' : ms <= LAT_OK ? 'ok' : 'slow'; }

  function latencyFor(turn) {
    for (var i = 0; i < sp.latencies.length; i++) if (sp.latencies[i].turn === turn) return sp.latencies[i].ms;
    return null;
  }

  function addLatency(turn, ms) {
    ms = Math.round(Number(ms));
    if (!isFinite(ms) || ms < 0) return;
    var found = false;
    sp.latencies.forEach(function (l) { if (l.turn === turn) { l.ms = ms; found = true; } });
    if (!found) sp.latencies.push({ turn: turn, ms: ms });
    var e = botCaptionFor(turn);
    if (e) setBadge(e, ms);
    renderLatency();
  }

  function setBadge(entry, ms) {
    entry.latencyMs = ms;
    var meta = entry.node.querySelector('.meta');
    var b = meta.querySelector('.badge-latency');
    if (!b) {
      b = el('span', 'badge badge-latency');
      var time = meta.querySelector('time');
      meta.insertBefore(b, time.nextSibling);
    }
    b.className = 'badge badge-latency ' + grade(ms);
    b.textContent = ms + ' ms';
    b.title = 'Response time for this turn: end of your speech to the first audio of the reply';
  }

  function median(xs) {
    if (!xs.length) return null;
    var s = xs.slice().sort(function (a, b) { return a - b; });
    var m = s.length >> 1;
    return s.length % 2 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
  }

  function renderLatency() {
    var ms = sp.latencies.map(function (l) { return l.ms; });
    var med = sp.medianLatencyMs = median(ms);
    ui.latency.dataset.count = String(ms.length);
    ui.latency.dataset.median = med == null ? '' : String(med);
    if (med == null) {
      delete ui.latency.dataset.grade;
      ui.latValue.textContent = '—';
      ui.latMeta.textContent = 'No turns yet';
    } else {
      ui.latency.dataset.grade = grade(med);
      ui.latValue.textContent = String(med);
      ui.latMeta.textContent = 'last ' + ms[ms.length - 1] + ' ms · ' + ms.length + (ms.length === 1 ? ' turn' : ' turns');
    }
    ui.spark.textContent = '';
    var recent = ms.slice(-14);
    var top = Math.max(LAT_OK, Math.max.apply(null, recent.concat([0])));
    recent.forEach(function (v) {
      var bar = el('i', grade(v));
      bar.style.height = Math.max(8, Math.round(v / top * 100)) + '%';
      bar.title = v + ' ms';
      ui.spark.appendChild(bar);
    });
  }

  /* ------------------------------------------------------------------ *
   * Stats for tests
   * ------------------------------------------------------------------ */

  function rtpTotals(type, fields) {
    var zero = {};
    fields.forEach(function (f) { zero[f] = 0; });
    var pc = call && call.pc;
    if (!pc) return Promise.resolve(zero);
    return pc.getStats().then(function (report) {
      report.forEach(function (s) {
        if (s.type === type && (s.kind || s.mediaType) === 'audio') {
          fields.forEach(function (f) { zero[f] += Number(s[f] || 0); });
        }
      });
      return zero;
    });
  }

  /* ------------------------------------------------------------------ */

  setState('idle');
  renderLatency();
  Promise.all([loadTemplates(), loadConfig()]);
})();
