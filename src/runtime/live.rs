//! The live call driver: one tokio task per call, racing the provider's WebSocket, a 20 ms
//! pacing tick, the results of the effects it started and the shutdown signal, and feeding all
//! of them to the pure per-call core (`crate::call::Call`). Framing is the provider's
//! [`Wire`]; policy is the core's; this task only moves bytes and time.
//!
//! Effects never block the task: ASR runs on the worker pool, TTS on the blocking pool, and
//! agent turns on one agent task per call (a conversation answers one turn at a time; the same
//! task records call events on the case, in order). Every result comes back tagged with its
//! turn, and the core drops stale ones. Queues are bounded.
//!
//! Nothing from the network can panic the task: a bad frame is logged with the call id and the
//! call goes on; a dropped socket is a hang-up. However the call ends, its case is closed with
//! the outcome, and its admission slot is given back.

use crate::agent::engine::Engine;
use crate::agent::master::{CallAction, Heard};
use crate::audio::g711::{decode_alaw_into, decode_l16le_into, decode_ulaw_into};
use crate::audio::resample::StreamResampler;
use crate::call::{CALLER_RATE, Call, CallConfig, EndAction, EventKind, Input, Output, TurnId};
use crate::config::{CallsConfig, Config, PlivoConfig, TelnyxConfig, TwilioConfig};
use crate::runtime::calls::{Admission, CallRegistry, Pending, Slot};
use crate::runtime::speech::Speech;
use crate::transport::wire::{Frame, Wire};
use crate::transport::{Encoding, Inbound, ProtocolError, Provider, plivo, telnyx, twilio};
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// Everything a live call needs, shared by all calls.
pub struct LiveDeps {
    pub engine: Arc<Engine>,
    pub speech: Speech,
    pub call: CallConfig,
    pub calls: CallsConfig,
    pub twilio: TwilioConfig,
    pub telnyx: TelnyxConfig,
    pub plivo: PlivoConfig,
    /// For provider REST calls (hang-up, transfer).
    pub http: reqwest::Client,
    pub registry: Arc<CallRegistry>,
    /// The media settings of browser calls (`[webrtc]`).
    pub rtc: crate::webrtc::peer::RtcSettings,
    /// Per-call stream tokens handed out for providers that do not sign their media socket.
    pub stream_tokens: crate::http::stream_token::StreamTokens,
}

impl LiveDeps {
    pub fn new(engine: Arc<Engine>, speech: Speech, cfg: &Config) -> anyhow::Result<LiveDeps> {
        let calls = cfg.calls.clone().with_env();
        Ok(LiveDeps {
            stream_tokens: crate::http::stream_token::StreamTokens::new(&calls.media_token),
            engine,
            speech,
            call: cfg.speech.call.clone(),
            calls,
            twilio: cfg.twilio.clone().with_env(),
            telnyx: cfg.telnyx.clone().with_env(),
            plivo: cfg.plivo.clone().with_env(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            registry: Arc::new(CallRegistry::with_pending_limits(
                cfg.calls.max_active,
                (cfg.calls.max_active * 4).max(64),
                cfg.calls.max_pending_per_ip,
            )),
            rtc: crate::webrtc::settings(&cfg.webrtc),
        })
    }
}

/// Work for the call's agent task, in order.
enum AgentJob {
    Ask {
        turn: TurnId,
        text: String,
        speech_ms: Option<u64>,
    },
    /// Barge-in: only this much of the last reply was heard.
    Heard(String),
    /// A call event for the case's audit trail.
    Note(&'static str, serde_json::Value),
}

/// Results of effects, tagged with the turn that asked for them.
pub(crate) enum Done {
    Transcript {
        turn: TurnId,
        text: String,
    },
    Reply {
        turn: TurnId,
        text: String,
        end: Option<EndAction>,
    },
    Audio {
        turn: TurnId,
        audio: Arc<Vec<f32>>,
    },
    Failed {
        turn: TurnId,
        what: String,
    },
}

/// The effects a call's core asks for, run the same way for phone and browser calls: ASR on the
/// worker pool (a queued transcription of a cancelled turn is dropped), TTS on the blocking pool,
/// and agent turns, barge-in notes and case events in order on the call's one agent task. Results
/// come back on the receiver [`Effects::new`] returns, for [`apply_done`].
pub(crate) struct Effects {
    deps: Arc<LiveDeps>,
    done_tx: mpsc::Sender<Done>,
    agent_tx: Option<mpsc::Sender<AgentJob>>,
    agent_task: Option<tokio::task::JoinHandle<()>>,
    asr_task: Option<(TurnId, tokio::task::JoinHandle<()>)>,
    conversation: Option<String>,
    /// whisper's prompt for the caller's next words, set by the agent after each reply.
    prompt: Prompt,
}

/// The recogniser's prompt shared between a call's agent task (which sets it from each reply)
/// and its transcriptions (which read it). Held only to clone or replace the `Arc`.
type Prompt = Arc<std::sync::Mutex<Option<Arc<str>>>>;

fn set_prompt(prompt: &Prompt, text: &str) {
    let p = (!text.is_empty()).then(|| Arc::<str>::from(text));
    *prompt.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

impl Effects {
    pub(crate) fn new(deps: Arc<LiveDeps>) -> (Effects, mpsc::Receiver<Done>) {
        let (done_tx, done_rx) = mpsc::channel(32);
        let fx = Effects {
            deps,
            done_tx,
            agent_tx: None,
            agent_task: None,
            asr_task: None,
            conversation: None,
            prompt: Prompt::default(),
        };
        (fx, done_rx)
    }

    /// Starts the conversation's agent task (in the current tracing span) and records
    /// `call_started` with `detail` on the case. `prompt` is the recogniser's prompt the
    /// greeting left for the caller's first words.
    pub(crate) fn start_agent(
        &mut self,
        conversation: &str,
        prompt: &str,
        detail: serde_json::Value,
    ) {
        set_prompt(&self.prompt, prompt);
        let (agent_tx, agent_rx) = mpsc::channel::<AgentJob>(16);
        self.agent_task = Some(tokio::spawn(
            agent_worker(
                self.deps.engine.clone(),
                conversation.to_string(),
                agent_rx,
                self.done_tx.clone(),
                self.prompt.clone(),
            )
            .instrument(tracing::Span::current()),
        ));
        let _ = agent_tx.try_send(AgentJob::Note("call_started", detail));
        self.agent_tx = Some(agent_tx);
        self.conversation = Some(conversation.to_string());
    }

    /// Performs `o` if it is an effect (bot audio at `rate`); any other output is handed back.
    pub(crate) async fn run(&mut self, o: Output, rate: u32) -> anyhow::Result<Option<Output>> {
        match o {
            Output::Transcribe { turn, audio } => {
                let speech = self.deps.speech.clone();
                let done = self.done_tx.clone();
                let prompt = self
                    .prompt
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let task = tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let audio_ms = audio.len() as u64 * 1000 / u64::from(CALLER_RATE);
                    let msg = match speech.transcribe(audio, prompt).await {
                        Ok(t) => {
                            tracing::debug!(
                                turn,
                                audio_ms,
                                ms = started.elapsed().as_millis() as u64,
                                decode_ms = t.decode_ms,
                                passes = t.passes,
                                "transcribed"
                            );
                            Done::Transcript { turn, text: t.text }
                        }
                        Err(e) => Done::Failed {
                            turn,
                            what: format!("ASR failed: {e}"),
                        },
                    };
                    let _ = done.send(msg).await;
                });
                self.asr_task = Some((turn, task));
            }
            Output::Synthesize { turn, text } => {
                let speech = self.deps.speech.clone();
                let done = self.done_tx.clone();
                tokio::spawn(async move {
                    let msg = match speech.synthesize(&text, rate).await {
                        Ok(audio) => Done::Audio { turn, audio },
                        Err(e) => Done::Failed {
                            turn,
                            what: format!("TTS failed: {e}"),
                        },
                    };
                    let _ = done.send(msg).await;
                });
            }
            Output::AskAgent {
                turn,
                text,
                speech_ms,
            } => {
                self.agent(AgentJob::Ask {
                    turn,
                    text,
                    speech_ms,
                })
                .await?
            }
            Output::Interrupted { heard, .. } => self.agent(AgentJob::Heard(heard)).await?,
            Output::CancelTurn { turn } => {
                // Aborting the waiter makes the pool skip the job if it is still queued.
                if let Some((t, task)) = self.asr_task.take() {
                    if t == turn {
                        task.abort();
                    } else {
                        self.asr_task = Some((t, task));
                    }
                }
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    async fn agent(&self, job: AgentJob) -> anyhow::Result<()> {
        if let Some(agent) = &self.agent_tx
            && agent.send(job).await.is_err()
        {
            anyhow::bail!("agent worker stopped");
        }
        Ok(())
    }

    /// Records a call event on the case. Best-effort: a full queue must not stall the audio path.
    pub(crate) fn note(&self, action: &'static str, detail: serde_json::Value) {
        if let Some(agent) = &self.agent_tx
            && agent.try_send(AgentJob::Note(action, detail)).is_err()
        {
            tracing::warn!(action, "call event not recorded: agent queue full");
        }
    }

    /// Records `call_ended` (`outcome` plus `detail`'s fields), waits for every queued agent job,
    /// then closes the case with the outcome.
    pub(crate) async fn finish(&mut self, outcome: &str, mut detail: serde_json::Value) {
        if let Some(agent) = self.agent_tx.take() {
            detail["outcome"] = json!(outcome);
            let _ = agent.send(AgentJob::Note("call_ended", detail)).await;
        }
        if let Some(task) = self.agent_task.take()
            && tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
        {
            tracing::warn!("the agent task did not finish in time");
        }
        if let Some(conv) = &self.conversation
            && let Err(e) = self.deps.engine.finish_call(conv, outcome).await
        {
            tracing::warn!(error = %e, "could not close the case");
        }
        tracing::info!(outcome = %outcome, "call ended");
    }
}

/// Gives an effect's result to the core.
pub(crate) fn apply_done(call: &mut Call, now: u64, d: Done) {
    match d {
        Done::Transcript { turn, text } => call.handle(now, Input::Transcript { turn, text }),
        Done::Reply { turn, text, end } => call.handle(now, Input::AgentReply { turn, text, end }),
        Done::Audio { turn, audio } => {
            call.handle(
                now,
                Input::TtsAudio {
                    turn,
                    samples: &audio,
                },
            );
            call.handle(now, Input::TtsDone { turn });
        }
        Done::Failed { turn, what } => {
            tracing::warn!(turn, "{what}");
            call.handle(
                now,
                Input::Transcript {
                    turn,
                    text: String::new(),
                },
            );
        }
    }
}

/// The case outcome of a call the bot ended.
pub(crate) fn end_outcome(action: &EndAction, busy: bool) -> String {
    match action {
        EndAction::Hangup if busy => "busy: over the call cap".to_string(),
        EndAction::Hangup => "bot hung up".to_string(),
        EndAction::Transfer { to } => format!("transferred to {to}"),
    }
}

/// A caller id as the log shows it: phone numbers masked to their last four digits.
pub fn shown_caller(caller: &str) -> String {
    if caller.chars().filter(char::is_ascii_digit).count() >= 6 {
        crate::agent::redact::mask_phone(caller)
    } else {
        caller.to_string()
    }
}

/// The channel name a provider's calls are recorded under.
pub fn channel(p: Provider) -> &'static str {
    match p {
        Provider::Twilio => "twilio",
        Provider::Telnyx => "telnyx",
        Provider::Plivo => "plivo",
        Provider::Exotel => "exotel",
        Provider::Vonage => "vonage",
    }
}

/// Runs one media-stream call on `socket` until it ends. `pending` came from
/// [`CallRegistry::connect`] when the WebSocket was accepted; the call takes its slot at `start`.
pub async fn serve_call(
    socket: WebSocket,
    deps: Arc<LiveDeps>,
    provider: Provider,
    pending: Pending,
    base_url: Option<String>,
) {
    let span = tracing::info_span!(
        "call",
        provider = channel(provider),
        id = tracing::field::Empty
    );
    let mut run = CallRun::new(deps, provider, pending, span.clone(), base_url);
    async move {
        if let Err(e) = run.run(socket).await {
            tracing::warn!(error = %e, "call ended with an error");
            run.outcome.get_or_insert_with(|| format!("error: {e}"));
        }
        run.finish().await;
    }
    .instrument(span)
    .await
}

struct CallRun {
    deps: Arc<LiveDeps>,
    /// The gateway's public base URL as the provider reached it (Plivo fetches a transfer's XML
    /// from there).
    base_url: Option<String>,
    wire: Wire,
    /// Until the call starts: its place among connections waiting to start.
    pending: Option<Pending>,
    /// From the start: its call slot.
    slot: Option<Slot>,
    busy: bool,
    /// When the provider last sent anything (ms on the call's clock).
    last_inbound_ms: u64,
    span: tracing::Span,
    call: Option<Call>,
    call_id: String,
    fx: Effects,
    done_rx: mpsc::Receiver<Done>,
    started: Instant,
    end: Option<EndAction>,
    outcome: Option<String>,
    // Inbound audio.
    resampler: Option<StreamResampler>,
    pcm_in: Vec<f32>,
    pcm16: Vec<f32>,
    // Outbound audio.
    out_pcm: Vec<f32>,
    frames: Vec<Frame>,
    /// Providers without marks (Vonage): when each mark's audio will have played, on our clock.
    local_marks: VecDeque<(u64, u64)>,
    play_end_ms: u64,
    // Diagnostics.
    bad_frames: u32,
    early_media: u32,
    speech_end_ms: Option<u64>,
}

impl CallRun {
    fn new(
        deps: Arc<LiveDeps>,
        provider: Provider,
        pending: Pending,
        span: tracing::Span,
        base_url: Option<String>,
    ) -> Self {
        let (fx, done_rx) = Effects::new(deps.clone());
        CallRun {
            wire: Wire::new(provider),
            pending: Some(pending),
            slot: None,
            busy: false,
            last_inbound_ms: 0,
            span,
            call: None,
            call_id: String::new(),
            fx,
            done_rx,
            started: Instant::now(),
            end: None,
            outcome: None,
            resampler: None,
            pcm_in: Vec::with_capacity(4096),
            pcm16: Vec::with_capacity(8192),
            out_pcm: vec![0.0; 16000],
            frames: Vec::with_capacity(16),
            local_marks: VecDeque::with_capacity(64),
            play_end_ms: 0,
            bad_frames: 0,
            early_media: 0,
            speech_end_ms: None,
            deps,
            base_url,
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(&mut self, socket: WebSocket) -> anyhow::Result<()> {
        let (mut tx, mut rx) = socket.split();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut stop = self.deps.registry.stop_signal();
        loop {
            tokio::select! {
                msg = rx.next() => {
                    let frame = match msg {
                        Some(Ok(m)) => {
                            self.last_inbound_ms = self.now();
                            m
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "connection failed");
                            self.hang_up("connection dropped");
                            break;
                        }
                        None => {
                            self.hang_up("connection dropped");
                            break;
                        }
                    };
                    let parsed = match &frame {
                        Message::Text(t) => self.wire.parse_text(t.as_str()),
                        Message::Binary(b) => self.wire.parse_binary(b),
                        Message::Close(_) => {
                            self.hang_up("caller hung up");
                            break;
                        }
                        _ => continue,
                    };
                    self.inbound(parsed).await?;
                }
                _ = tick.tick() => {
                    let now = self.now();
                    if let Some(why) = self.overdue(now) {
                        tracing::warn!("{why}");
                        if self.call.is_some() {
                            self.hang_up(why);
                            self.end = Some(EndAction::Hangup);
                        } else {
                            self.outcome = Some(why.to_string());
                        }
                    }
                    if let Some(call) = &mut self.call {
                        call.handle(now, Input::Tick);
                    }
                    self.wire.idle(&mut self.frames);
                    while let Some(&(due, id)) = self.local_marks.front() {
                        if due > now {
                            break;
                        }
                        self.local_marks.pop_front();
                        if let Some(call) = &mut self.call {
                            call.handle(now, Input::MarkPlayed { id });
                        }
                    }
                }
                Some(d) = self.done_rx.recv() => self.done(d),
                _ = async {
                    if stop.wait_for(|s| *s).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {
                    tracing::warn!("ending the call: the gateway is shutting down");
                    self.hang_up("ended at shutdown");
                    self.end = Some(EndAction::Hangup);
                }
            }
            self.flush_outputs().await?;
            self.send_frames(&mut tx).await?;
            if self.call.as_ref().is_some_and(Call::is_ended) || self.outcome.is_some() {
                break;
            }
        }
        self.flush_outputs().await?;
        let _ = self.send_frames(&mut tx).await;
        if let Some(action) = self.end.clone() {
            self.provider_end(&action).await;
        }
        let _ = tx.close().await;
        Ok(())
    }

    /// A deadline the call has passed: no start, no media, too long.
    fn overdue(&self, now: u64) -> Option<&'static str> {
        let c = &self.deps.calls;
        if self.outcome.is_some() {
            None
        } else if !self.wire.is_started() {
            (now >= c.start_timeout_ms).then_some("no start message in time: connection closed")
        } else if now.saturating_sub(self.last_inbound_ms) >= c.media_timeout_ms {
            Some("the provider sent nothing for too long: call ended")
        } else if now >= c.max_call_secs.saturating_mul(1000) {
            Some("the call reached its maximum length: call ended")
        } else {
            None
        }
    }

    fn hang_up(&mut self, outcome: &str) {
        let now = self.now();
        if let Some(call) = &mut self.call {
            call.handle(now, Input::HangUp);
        }
        self.outcome.get_or_insert_with(|| outcome.to_string());
    }

    async fn inbound(&mut self, parsed: Result<Inbound, ProtocolError>) -> anyhow::Result<()> {
        let now = self.now();
        match parsed {
            Ok(Inbound::Start {
                stream_id,
                call_id,
                format,
                params,
            }) => {
                if self.wire.is_started() {
                    tracing::warn!("a second start was ignored");
                    return Ok(());
                }
                let admission = match self.pending.take() {
                    Some(p) => p.admit(),
                    None => Admission::Draining,
                };
                let slot = match admission {
                    Admission::Admitted(s) => s,
                    Admission::Busy(s) => {
                        self.busy = true;
                        s
                    }
                    Admission::Draining => {
                        tracing::warn!("call refused at start: the gateway is shutting down");
                        self.outcome = Some("refused: shutting down".into());
                        return Ok(());
                    }
                };
                self.slot = Some(slot);
                self.span.record("id", call_id.as_str());
                self.call_id = call_id;
                self.wire.start(&stream_id, format)?;
                if format.sample_rate != crate::call::CALLER_RATE {
                    self.resampler = Some(StreamResampler::new(
                        format.sample_rate,
                        crate::call::CALLER_RATE,
                        format.sample_rate as usize / 50,
                    )?);
                }
                let mut cfg = self.deps.call.clone();
                cfg.out_rate = self.wire.out_rate();
                let mut call = Call::new(cfg);
                if self.busy {
                    tracing::warn!(
                        cap = self.deps.registry.max_active(),
                        "over the call cap: playing the busy message"
                    );
                    call.handle(
                        now,
                        Input::AgentReply {
                            turn: 0,
                            text: self.deps.calls.busy_message.clone(),
                            end: Some(EndAction::Hangup),
                        },
                    );
                    self.call = Some(call);
                    return Ok(());
                }
                let caller = params
                    .get("caller")
                    .or_else(|| params.get("from"))
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .unwrap_or("unknown")
                    .chars()
                    .take(64)
                    .collect::<String>();
                if let Some(t) = params.get("template")
                    && *t != self.deps.engine.template.name
                {
                    tracing::warn!(
                        asked = %t,
                        serving = %self.deps.engine.template.name,
                        "this gateway serves one template; the call's template parameter is ignored"
                    );
                }
                let channel = channel(self.wire.provider());
                let greeting = self.deps.engine.start_call(&caller, channel).await?;
                let conv = greeting.conversation_id.clone();
                tracing::info!(conversation = %conv, caller = %shown_caller(&caller), "call started");
                if let Some(slot) = &self.slot {
                    slot.bind(&self.call_id, &conv);
                }
                // The stream's parameters go on the case with phone numbers masked.
                let shown: BTreeMap<&String, String> =
                    params.iter().map(|(k, v)| (k, shown_caller(v))).collect();
                self.fx.start_agent(
                    &conv,
                    &greeting.asr_prompt,
                    json!({"provider": channel, "call_id": self.call_id, "stream_id": stream_id,
                           "format": format!("{:?}/{}", format.encoding, format.sample_rate),
                           "params": shown}),
                );
                call.handle(
                    now,
                    Input::AgentReply {
                        turn: 0,
                        text: greeting.reply,
                        end: None,
                    },
                );
                self.call = Some(call);
            }
            Ok(Inbound::Media { payload, seq, .. }) => {
                if !self.wire.is_started() {
                    self.early_media += 1;
                    if self.early_media == 1 {
                        tracing::warn!("media before start ignored");
                    }
                    return Ok(());
                }
                self.wire.push_media(payload, seq);
                self.feed_media(now);
            }
            Ok(Inbound::Mark { name }) => {
                if let (Ok(id), Some(call)) = (name.parse::<u64>(), &mut self.call) {
                    call.handle(now, Input::MarkPlayed { id });
                }
            }
            Ok(Inbound::Dtmf { digit }) => {
                if let Some(call) = &mut self.call
                    && !self.busy
                {
                    call.handle(now, Input::Dtmf(digit));
                }
            }
            Ok(Inbound::Stop) => {
                self.wire.drain_media();
                self.feed_media(now);
                self.hang_up("caller hung up");
            }
            Ok(Inbound::Connected | Inbound::Ignored) => {}
            Err(e) => {
                self.bad_frames += 1;
                if self.bad_frames <= 5 || self.bad_frames.is_multiple_of(100) {
                    tracing::warn!(error = %e, count = self.bad_frames, "bad frame ignored");
                }
            }
        }
        Ok(())
    }

    /// Decodes queued inbound media to 16 kHz and gives it to the core.
    fn feed_media(&mut self, now: u64) {
        let Some(call) = &mut self.call else { return };
        let format = self.wire.format();
        while let Some(payload) = self.wire.next_media() {
            if self.busy {
                continue;
            }
            let n = match format.encoding {
                Encoding::L16 => payload.len() / 2,
                _ => payload.len(),
            };
            self.pcm_in.resize(n, 0.0);
            match format.encoding {
                Encoding::Mulaw => decode_ulaw_into(&payload, &mut self.pcm_in),
                Encoding::Alaw => decode_alaw_into(&payload, &mut self.pcm_in),
                Encoding::L16 => decode_l16le_into(&payload, &mut self.pcm_in),
            };
            match &mut self.resampler {
                Some(r) => {
                    self.pcm16.clear();
                    r.process(&self.pcm_in, &mut self.pcm16);
                    call.handle(now, Input::CallerAudio(&self.pcm16));
                }
                None => call.handle(now, Input::CallerAudio(&self.pcm_in)),
            }
        }
    }

    fn done(&mut self, d: Done) {
        let now = self.now();
        if let Some(call) = &mut self.call {
            apply_done(call, now, d);
        }
    }

    async fn flush_outputs(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        let Some(call) = &mut self.call else {
            return Ok(());
        };
        while let Some(o) = call.poll() {
            let Some(o) = self.fx.run(o, self.wire.out_rate()).await? else {
                continue;
            };
            match o {
                Output::SendAudio { samples } => {
                    let samples = samples.min(self.out_pcm.len());
                    let n = call.take_audio(&mut self.out_pcm[..samples]);
                    self.wire.audio(&self.out_pcm[..n], &mut self.frames);
                    let ms = n as u64 * 1000 / u64::from(self.wire.out_rate());
                    self.play_end_ms = self.play_end_ms.max(now) + ms;
                }
                Output::Mark { id } => {
                    if self.wire.native_marks() {
                        self.wire.mark(id, &mut self.frames);
                    } else {
                        self.local_marks.push_back((self.play_end_ms, id));
                    }
                }
                Output::Clear => {
                    self.wire.clear(&mut self.frames);
                    self.local_marks.clear();
                    self.play_end_ms = now;
                }
                Output::Event(e) => {
                    tracing::debug!(t_ms = e.t_ms, event = ?e.kind, "call event");
                    let note = match e.kind {
                        EventKind::CallerSpeechEnd { .. } => {
                            self.speech_end_ms = Some(e.t_ms);
                            None
                        }
                        EventKind::BotAudioStart { turn } => {
                            if let Some(t0) = self.speech_end_ms.take() {
                                tracing::info!(
                                    turn,
                                    ms = e.t_ms.saturating_sub(t0),
                                    "end of caller speech to first bot audio"
                                );
                            }
                            None
                        }
                        EventKind::BotPaused { turn } => {
                            tracing::info!(turn, "sound over the bot: playback paused");
                            None
                        }
                        EventKind::BotResumed { turn, from_ms } => {
                            tracing::info!(turn, from_ms, "not an interruption: playback resumed");
                            None
                        }
                        EventKind::BargeIn { turn, heard } => {
                            tracing::info!(turn, heard = %heard, "barge-in: the reply is interrupted");
                            Some(("barge_in", json!({"turn": turn, "heard": heard})))
                        }
                        EventKind::Dtmf { digit } => Some(("dtmf", json!({"digit": digit}))),
                        EventKind::TranscriptDropped { turn } => {
                            Some(("transcript_dropped", json!({"turn": turn})))
                        }
                        _ => None,
                    };
                    if let Some((action, detail)) = note {
                        self.fx.note(action, detail);
                    }
                }
                Output::End(action) => {
                    tracing::info!(?action, "the bot ends the call");
                    self.outcome = Some(end_outcome(&action, self.busy));
                    self.end = Some(action);
                }
                // Effects were run above.
                _ => {}
            }
        }
        Ok(())
    }

    async fn send_frames(
        &mut self,
        tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    ) -> anyhow::Result<()> {
        if self.frames.is_empty() {
            return Ok(());
        }
        for f in self.frames.drain(..) {
            tx.feed(match f {
                Frame::Text(t) => Message::Text(t.into()),
                Frame::Binary(b) => Message::Binary(b.into()),
            })
            .await?;
        }
        tx.flush().await?;
        Ok(())
    }

    /// Hangs up or transfers through the provider's REST API: Twilio, Telnyx and Plivo (hang-up,
    /// transfer). Without credentials, or for Exotel and Vonage, the call ends by closing the
    /// media stream.
    async fn provider_end(&self, action: &EndAction) {
        let http = &self.deps.http;
        let req = match self.wire.provider() {
            Provider::Twilio => {
                let tw = &self.deps.twilio;
                if tw.account_sid.is_empty() || tw.auth_token.is_empty() {
                    None
                } else {
                    let form = match action {
                        EndAction::Hangup => twilio::hangup_form(),
                        EndAction::Transfer { to } => twilio::transfer_form(to),
                    };
                    Some(
                        http.post(twilio::call_url(
                            &tw.api_base,
                            &tw.account_sid,
                            &self.call_id,
                        ))
                        .basic_auth(&tw.account_sid, Some(&tw.auth_token))
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(serde_urlencoded::to_string(&form).unwrap_or_default()),
                    )
                }
            }
            Provider::Telnyx if !self.deps.telnyx.api_key.is_empty() => {
                let tx = &self.deps.telnyx;
                let (url, body) = match action {
                    EndAction::Hangup => {
                        (telnyx::hangup_url(&tx.api_base, &self.call_id), json!({}))
                    }
                    EndAction::Transfer { to } => (
                        telnyx::transfer_url(&tx.api_base, &self.call_id),
                        json!({ "to": to }),
                    ),
                };
                Some(
                    http.post(url)
                        .bearer_auth(&tx.api_key)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_string()),
                )
            }
            Provider::Plivo if !self.deps.plivo.auth_id.is_empty() => {
                let pl = &self.deps.plivo;
                let url = plivo::call_url(&pl.api_base, &pl.auth_id, &self.call_id);
                match (action, &self.base_url) {
                    (EndAction::Hangup, _) => Some(
                        http.delete(url)
                            .basic_auth(&pl.auth_id, Some(&pl.auth_token)),
                    ),
                    (EndAction::Transfer { to }, Some(base)) => {
                        let xml_url = plivo::transfer_xml_url(base, &pl.auth_token, to);
                        Some(
                            http.post(url)
                                .basic_auth(&pl.auth_id, Some(&pl.auth_token))
                                .header(reqwest::header::CONTENT_TYPE, "application/json")
                                .body(plivo::transfer_body(&xml_url)),
                        )
                    }
                    (EndAction::Transfer { .. }, None) => {
                        tracing::warn!(
                            ?action,
                            "no public URL (config public_url, or a Host header) for Plivo to fetch the transfer from: closing the stream"
                        );
                        None
                    }
                }
            }
            p => {
                tracing::info!(
                    ?action,
                    provider = channel(p),
                    "no REST call control configured: closing the media stream"
                );
                return;
            }
        };
        let Some(req) = req else {
            tracing::warn!(
                ?action,
                "no provider credentials configured: closing the stream instead of a REST call update"
            );
            return;
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => tracing::info!(?action, "provider call updated"),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                tracing::info!("the provider says the call is already gone")
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), ?action, "the provider refused the call update")
            }
            Err(e) => tracing::warn!(error = %e, ?action, "provider call update failed"),
        }
    }

    /// Closes the case with the outcome, after every queued agent job has been recorded.
    async fn finish(&mut self) {
        let outcome = self
            .outcome
            .clone()
            .unwrap_or_else(|| "connection dropped".into());
        let detail = json!({"bad_frames": self.bad_frames, "media_before_start": self.early_media});
        self.fx.finish(&outcome, detail).await;
    }
}

/// One conversation answers one turn at a time: agent requests and call events are queued here.
async fn agent_worker(
    engine: Arc<Engine>,
    conversation: String,
    mut rx: mpsc::Receiver<AgentJob>,
    done: mpsc::Sender<Done>,
    prompt: Prompt,
) {
    while let Some(job) = rx.recv().await {
        let (turn, text, speech_ms) = match job {
            AgentJob::Ask {
                turn,
                text,
                speech_ms,
            } => (turn, text, speech_ms),
            AgentJob::Heard(heard) => {
                if let Err(e) = engine.interrupted(&conversation, &heard).await {
                    tracing::warn!(error = %e, "could not record the interruption");
                }
                continue;
            }
            AgentJob::Note(action, detail) => {
                if let Err(e) = engine.note(&conversation, action, detail).await {
                    tracing::warn!(error = %e, action, "could not record a call event");
                }
                continue;
            }
        };
        let heard = Heard {
            text: &text,
            speech_ms,
        };
        let msg = match engine.hear(&conversation, heard).await {
            Ok(t) => {
                set_prompt(&prompt, &t.asr_prompt);
                Done::Reply {
                    turn,
                    text: t.reply,
                    end: t.action.map(|a| match a {
                        CallAction::Hangup => EndAction::Hangup,
                        CallAction::Transfer { to } => EndAction::Transfer { to },
                    }),
                }
            }
            Err(e) => Done::Failed {
                turn,
                what: format!("agent failed: {e}"),
            },
        };
        // The call may be over; the remaining jobs (notes) are still recorded.
        let _ = done.send(msg).await;
    }
}
