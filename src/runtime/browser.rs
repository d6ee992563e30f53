//! The browser driver: one tokio task per signaling WebSocket, racing the page's messages, the
//! peer connection's events (caller audio as 16 kHz 20 ms frames), the 20 ms send clock of the
//! Opus stream, the results of effects and the shutdown signal, and feeding them to a
//! [`Session`] (`runtime::session`), which owns the call — as the phone driver does.
//!
//! Bot audio: the core hands out audio at 16 kHz up to `lead_ms` ahead of real time; it goes into
//! a small bounded local queue, and every 20 ms tick one frame of it (or silence) is Opus-encoded
//! and sent. A browser echoes no marks, so marks are echoed here when the audio before them has
//! been sent: what the caller heard of an interrupted reply is what was sent before the barge-in.
//! `Clear` drops the local queue at once.
//!
//! The call ends when the bot ends it, the page says `hangup`, the WebSocket closes, or the media
//! stops (the peer's watchdog): webrtc-rs notices a closed browser tab only ~30 s later, so the
//! socket is the prompt signal. However it ends, the peer connection is closed, the case is closed
//! with the outcome, and the admission slot is given back.

use crate::call::{CallEvent, EndAction, EventKind, TurnId};
use crate::runtime::calls::{Admission, Pending, Slot};
use crate::runtime::live::LiveDeps;
use crate::runtime::session::{
    CallState, LocalMarks, MediaPort, Session, shown_caller, stop_requested,
};
use crate::webrtc::peer::{
    self, AudioSender, CallCloser, CloseReason, FRAME_SAMPLES, RtcCall, RtcEvent, RtcMedia,
};
use crate::webrtc::signal::{AgentState, EndReason, FromPage, ToPage, Who};
use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// The channel browser calls are recorded under.
pub const CHANNEL: &str = "webrtc";
/// Bot audio leaves the core at this rate (the Opus encoder's input rate).
pub const OUT_RATE: u32 = peer::SAMPLE_RATE;
/// How long the page may take to send its offer after opening the socket.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// The local playout queue holds at most this much bot audio (the core keeps ~200 ms ahead).
const QUEUE_SAMPLES: usize = OUT_RATE as usize * 2;
/// A caller frame at least this loud (mean square; about -40 dBFS) counts as voice when the
/// latency from the caller's last word is measured.
const VOICE_MEAN_SQUARE: f32 = 1e-4;
static SILENCE: [f32; FRAME_SAMPLES] = [0.0; FRAME_SAMPLES];

type Tx = SplitSink<WebSocket, Message>;

/// Serves one `/webrtc/signal` WebSocket: waits for the page's offer, answers it, and runs the
/// call until it ends. `pending` came from [`crate::runtime::calls::CallRegistry::connect`].
/// `issued_caller`: the identity the gateway gave this client; None lets the page name one.
pub async fn serve(
    socket: WebSocket,
    deps: Arc<LiveDeps>,
    pending: Pending,
    issued_caller: Option<String>,
) {
    let call_id = format!("rtc-{}", uuid::Uuid::new_v4().simple());
    let span = tracing::info_span!(
        "call",
        provider = CHANNEL,
        id = %call_id,
        case_id = tracing::field::Empty
    );
    async move {
        let (mut tx, mut rx) = socket.split();
        let Some((sdp, named)) = wait_offer(&mut tx, &mut rx, &deps).await else {
            return;
        };
        let caller = issued_caller.unwrap_or(named);
        // The call takes its slot when the page offers it, not when the socket opens.
        let (slot, busy) = match pending.admit() {
            Admission::Admitted(s) => (s, false),
            Admission::Busy(s) => (s, true),
            Admission::Draining => {
                crate::metrics::count(
                    crate::metrics::CALLS_ENDED,
                    &[("provider", CHANNEL), ("outcome", "drained")],
                    1.0,
                );
                let msg = ToPage::Error {
                    message: "the gateway is not taking calls now".into(),
                };
                let _ = tx.send(Message::Text(msg.to_json().into())).await;
                let _ = tx.close().await;
                return;
            }
        };
        let (answer, rtc) = match accept(&sdp, &deps, &call_id).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "the offer was refused");
                let msg = ToPage::Error {
                    message: format!("the gateway could not answer the call: {e}"),
                };
                let _ = tx.send(Message::Text(msg.to_json().into())).await;
                let _ = tx.close().await;
                return;
            }
        };
        let (events, audio, closer) = rtc.split();
        let answer = ToPage::Answer {
            sdp: answer,
            call_id: call_id.clone(),
        };
        if tx
            .send(Message::Text(answer.to_json().into()))
            .await
            .is_err()
        {
            tracing::info!("the page left before the answer");
            closer.close().await;
            return;
        }
        tracing::info!(caller = %shown_caller(&caller), "answered; connecting");
        let mut run = RtcRun::new(deps, slot, busy, call_id, caller, audio, closer.clone());
        if let Err(e) = run.run(&mut tx, rx, events).await {
            tracing::warn!(error = %e, "call ended with an error");
            run.hang_up(&format!("error: {e}"));
            run.reason = EndReason::Error;
        }
        let ended = ToPage::Ended {
            reason: run.reason,
            detail: run.outcome().unwrap_or_default(),
        };
        // The page may be gone already; then there is no one to tell.
        let _ = tx.send(Message::Text(ended.to_json().into())).await;
        let _ = tx.close().await;
        run.finish().await;
    }
    .instrument(span)
    .await
}

/// Answers the page's offer with the gateway's media: a webrtc-rs peer connection, or an
/// in-process far end (`[RtcMedia::InProcess]`, for calls on a virtual clock).
async fn accept(sdp: &str, deps: &LiveDeps, call_id: &str) -> anyhow::Result<(String, RtcCall)> {
    match &deps.rtc_media {
        RtcMedia::Network => peer::accept(sdp, &deps.rtc).await,
        RtcMedia::InProcess(far) => {
            let (call, far_end) = peer::accept_in_process(&deps.rtc)?;
            far.send((call_id.to_string(), far_end))
                .await
                .map_err(|_| anyhow::anyhow!("no one takes in-process calls"))?;
            Ok((peer::IN_PROCESS_ANSWER.to_string(), call))
        }
    }
}

/// Reads page messages until the offer arrives. None: the page left, hung up or never offered.
async fn wait_offer(
    tx: &mut Tx,
    rx: &mut SplitStream<WebSocket>,
    deps: &LiveDeps,
) -> Option<(String, String)> {
    let deadline = tokio::time::sleep(OFFER_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            m = rx.next() => m,
            _ = &mut deadline => {
                tracing::info!("no offer in time");
                let _ = tx.send(Message::Text(ToPage::Error { message: "no offer in time".into() }.to_json().into())).await;
                return None;
            }
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        };
        match serde_json::from_str::<FromPage>(text.as_str()) {
            Ok(FromPage::Call {
                sdp,
                template,
                caller,
            }) => {
                if let Some(t) = template
                    && t != deps.engine.template.name
                {
                    tracing::warn!(
                        asked = %t,
                        serving = %deps.engine.template.name,
                        "this gateway serves one template; the page's choice is ignored"
                    );
                }
                let caller = caller
                    .as_deref()
                    .and_then(crate::agent::caller::normalize)
                    .unwrap_or_else(|| crate::agent::caller::DEMO_CALLER.into());
                return Some((sdp, caller));
            }
            Ok(FromPage::Hangup) => return None,
            Ok(FromPage::Mute { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "bad signaling message ignored");
                let msg = ToPage::Error {
                    message: format!("bad message: {e}"),
                };
                let _ = tx.send(Message::Text(msg.to_json().into())).await;
            }
        }
    }
}

struct RtcRun {
    deps: Arc<LiveDeps>,
    slot: Slot,
    busy: bool,
    call: CallState,
    call_id: String,
    caller: String,
    reason: EndReason,
    muted: bool,
    audio: AudioSender,
    closer: CallCloser,
    port: RtcPort,
    frame: [f32; FRAME_SAMPLES],
    send_errors: u32,
}

/// The browser's side of the call as the session sees it: bot audio waits in a small queue for
/// its 20 ms slot; marks are echoed once the audio before them has been sent; events become the
/// page's captions, agent state and latency figures.
struct RtcPort {
    queue: VecDeque<f32>,
    /// Samples ever queued / sent.
    queued_total: u64,
    sent_total: u64,
    local: LocalMarks,
    /// Messages for the page, sent after each loop turn.
    to_page: Vec<ToPage>,
    state: Option<AgentState>,
    // Latency: the caller's last voiced frame, the end of the turn, the first bot packet.
    last_voice_ms: u64,
    speech_end: Option<(u64, u64)>,
    latency_pending: Option<(TurnId, u64, u64)>,
    latencies: Vec<u64>,
}

impl RtcPort {
    fn set_state(&mut self, s: AgentState) {
        if self.state != Some(s) {
            self.state = Some(s);
            self.to_page.push(ToPage::AgentState { state: s });
        }
    }
}

impl MediaPort for RtcPort {
    fn send_audio(&mut self, samples: &[f32], _now: u64) {
        let room = QUEUE_SAMPLES - self.queue.len();
        if samples.len() > room {
            tracing::warn!(
                dropped = samples.len() - room,
                "playout queue full: audio dropped"
            );
        }
        let n = samples.len().min(room);
        self.queue.extend(&samples[..n]);
        self.queued_total += n as u64;
    }

    fn mark(&mut self, id: u64, _now: u64) {
        self.local.push(self.queued_total, id);
    }

    fn clear(&mut self, _now: u64) {
        // No `clear` in WebRTC: stop sending what is queued, now.
        self.queue.clear();
        self.local.drain().for_each(drop);
        self.queued_total = self.sent_total;
        self.latency_pending = None;
    }

    fn event(&mut self, e: &CallEvent) {
        match &e.kind {
            EventKind::CallerSpeechEnd { .. } => {
                self.speech_end = Some((self.last_voice_ms.min(e.t_ms), e.t_ms));
                self.set_state(AgentState::Thinking);
            }
            EventKind::Transcript { turn, text } if !text.trim().is_empty() => {
                self.to_page.push(ToPage::Caption {
                    who: Who::Caller,
                    text: text.clone(),
                    turn: *turn,
                });
            }
            EventKind::TranscriptDropped { .. } => self.set_state(AgentState::Listening),
            EventKind::BotReply { turn, text } => {
                self.to_page.push(ToPage::Caption {
                    who: Who::Bot,
                    text: text.clone(),
                    turn: *turn,
                });
            }
            EventKind::BotAudioStart { turn } => {
                if let Some((voice, end)) = self.speech_end.take() {
                    self.latency_pending = Some((*turn, voice, end));
                }
                self.set_state(AgentState::Speaking);
            }
            EventKind::BotAudioEnd { .. } => self.set_state(AgentState::Listening),
            EventKind::BargeIn { turn, heard } => {
                self.to_page.push(ToPage::Interrupted {
                    turn: *turn,
                    heard: heard.clone(),
                });
                self.set_state(AgentState::Listening);
            }
            _ => {}
        }
    }
}

impl RtcRun {
    fn new(
        deps: Arc<LiveDeps>,
        slot: Slot,
        busy: bool,
        call_id: String,
        caller: String,
        audio: AudioSender,
        closer: CallCloser,
    ) -> Self {
        RtcRun {
            deps,
            slot,
            busy,
            call: CallState::default(),
            call_id,
            caller,
            reason: EndReason::Hangup,
            muted: false,
            audio,
            closer,
            port: RtcPort {
                queue: VecDeque::with_capacity(QUEUE_SAMPLES),
                queued_total: 0,
                sent_total: 0,
                local: LocalMarks::default(),
                to_page: Vec::with_capacity(8),
                state: None,
                last_voice_ms: 0,
                speech_end: None,
                latency_pending: None,
                latencies: Vec::new(),
            },
            frame: [0.0; FRAME_SAMPLES],
            send_errors: 0,
        }
    }

    fn now(&self) -> u64 {
        self.call.now()
    }

    fn outcome(&self) -> Option<String> {
        self.call.outcome()
    }

    async fn run(
        &mut self,
        tx: &mut Tx,
        mut rx: SplitStream<WebSocket>,
        mut events: mpsc::Receiver<RtcEvent>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(peer::FRAME_DURATION);
        // Burst: a late tick is caught up, so the send clock keeps pace with the core's.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut stop = self.deps.registry.stop_signal();
        loop {
            tokio::select! {
                msg = rx.next() => match msg {
                    Some(Ok(Message::Text(t))) => self.page_message(t.as_str()),
                    Some(Ok(Message::Close(_))) | None => self.hang_up("caller hung up"),
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "signaling connection failed");
                        self.hang_up("connection dropped");
                    }
                    Some(Ok(_)) => {}
                },
                ev = events.recv() => match ev {
                    Some(RtcEvent::Connected) => self.connected().await?,
                    Some(RtcEvent::Audio(f)) => self.caller_audio(&f.samples),
                    Some(RtcEvent::Closed(r)) => {
                        tracing::info!(reason = ?r, "media ended");
                        match r {
                            CloseReason::MediaTimeout | CloseReason::RemoteClosed => {
                                self.hang_up("caller hung up")
                            }
                            CloseReason::ConnectTimeout => {
                                self.reason = EndReason::Error;
                                self.hang_up("media never connected")
                            }
                            _ => {
                                self.reason = EndReason::Error;
                                self.hang_up("media connection failed")
                            }
                        }
                    }
                    None => self.hang_up("media connection failed"),
                },
                _ = tick.tick() => self.tick().await?,
                                Some(d) = self.call.next_done() => self.call.done_now(d),
                                _ = stop_requested(&mut stop) => self.call.shutdown(),
            }
            self.flush().await?;
            self.send_page(tx).await;
            if self.call.over() {
                break;
            }
        }
        self.flush().await?;
        self.send_page(tx).await;
        Ok(())
    }

    fn page_message(&mut self, text: &str) {
        match serde_json::from_str::<FromPage>(text) {
            Ok(FromPage::Hangup) => self.hang_up("caller hung up"),
            Ok(FromPage::Mute { muted }) => {
                tracing::info!(muted, "caller mute");
                self.muted = muted;
            }
            Ok(FromPage::Call { .. }) => {
                self.port.to_page.push(ToPage::Error {
                    message: "a call is already in progress on this connection".into(),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad signaling message ignored");
                self.port.to_page.push(ToPage::Error {
                    message: format!("bad message: {e}"),
                });
            }
        }
    }

    fn hang_up(&mut self, outcome: &str) {
        let now = self.now();
        self.call.hang_up(now, outcome);
    }

    /// The media path is up: the call starts (the case is opened) and the greeting plays.
    async fn connected(&mut self) -> anyhow::Result<()> {
        if self.call.session().is_some() {
            return Ok(());
        }
        let now = self.now();
        tracing::info!(ms = now, "media connected");
        let parts = self.deps.parts(OUT_RATE);
        if self.busy {
            tracing::warn!(
                cap = self.deps.registry.max_active(),
                "over the call cap: playing the busy message"
            );
            self.reason = EndReason::Busy;
            self.call.start(Session::busy(
                &parts,
                CHANNEL,
                &self.deps.calls.busy_message,
                now,
            ));
            return Ok(());
        }
        let detail = json!({"call_id": self.call_id, "format": "opus/48000 → pcm/16000",
                            "template": self.deps.engine.template.name});
        let session = Session::start(&parts, &self.caller, CHANNEL, detail, now).await?;
        if let Some(conv) = session.conversation_id() {
            self.slot.bind(&self.call_id, conv);
        }
        self.call.start(session);
        self.port.set_state(AgentState::Listening);
        Ok(())
    }

    fn caller_audio(&mut self, samples: &[f32; FRAME_SAMPLES]) {
        let now = self.now();
        let Some(session) = self.call.session_mut() else {
            return;
        };
        if self.muted {
            // Time goes on for the turn detector: a muted caller is silent.
            session.caller_audio(now, &SILENCE);
            return;
        }
        let ms = samples.iter().map(|s| s * s).sum::<f32>() / FRAME_SAMPLES as f32;
        if ms >= VOICE_MEAN_SQUARE {
            self.port.last_voice_ms = now;
        }
        session.caller_audio(now, samples);
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        self.call.flush(now, &mut self.port).await
    }

    /// Every 20 ms: the core's deadline if it has come, one frame of bot audio (or silence) is
    /// sent, and the marks whose audio has been sent are echoed.
    async fn tick(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        let Some(session) = self.call.session_mut() else {
            return Ok(());
        };
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.timeout(now);
        }
        // The core's audio for this tick (it paces itself on `now`) joins the queue first.
        session.flush(now, &mut self.port).await?;
        let port = &mut self.port;
        let n = port.queue.len().min(FRAME_SAMPLES);
        let had_audio = n > 0;
        for (dst, src) in self.frame.iter_mut().zip(port.queue.drain(..n)) {
            *dst = src;
        }
        self.frame[n..].fill(0.0);
        port.sent_total += n as u64;
        if let Err(e) = self.audio.send_frame(&self.frame).await {
            self.send_errors += 1;
            if self.send_errors <= 3 {
                tracing::warn!(error = %e, "sending a frame failed");
            }
        }
        let port = &mut self.port;
        if had_audio && let Some((turn, voice_ms, end_ms)) = port.latency_pending.take() {
            let ms = now.saturating_sub(voice_ms);
            let turn_end_ms = now.saturating_sub(end_ms);
            tracing::info!(
                turn,
                ms,
                turn_end_ms,
                "caller's last word to the first bot audio packet"
            );
            port.latencies.push(ms);
            port.to_page.push(ToPage::Latency {
                turn,
                ms,
                turn_end_ms,
            });
        }
        let now = self.now();
        while let Some(id) = self.port.local.pop_due(self.port.sent_total) {
            if let Some(s) = self.call.session_mut() {
                s.mark_played(now, id);
            }
        }
        Ok(())
    }

    async fn send_page(&mut self, tx: &mut Tx) {
        if let Some(action) = self.call.session().and_then(Session::end_action) {
            self.reason = match action {
                EndAction::Hangup if self.busy => EndReason::Busy,
                EndAction::Hangup => EndReason::Hangup,
                EndAction::Transfer { .. } => EndReason::Transfer,
            };
        }
        if self.port.to_page.is_empty() {
            return;
        }
        for m in self.port.to_page.drain(..) {
            // A page that went away is noticed on the receiving side.
            if tx.feed(Message::Text(m.to_json().into())).await.is_err() {
                break;
            }
        }
        let _ = tx.flush().await;
    }

    /// Closes the peer connection, then the case with the outcome, after every queued agent job
    /// has been recorded.
    async fn finish(&mut self) {
        self.closer.close().await;
        let stats = self.audio.stats();
        let detail = json!({"latency_ms": self.port.latencies, "rtp_packets_in": stats.rtp_packets_in,
                            "frames_sent": stats.frames_sent, "frames_concealed": stats.frames_concealed});
        self.call.finish(detail).await;
    }
}
