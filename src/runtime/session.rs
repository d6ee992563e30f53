//! One call session: everything a call does between "media connected" and "case closed",
//! written once for the three drivers — the phone (`runtime::live`, a provider's WebSocket),
//! the browser (`webrtc::call`, a webrtc-rs peer) and replay (`runtime::replay`, a virtual clock
//! and files).
//!
//! A driver owns its clock and its media: it feeds the session caller audio, playout marks,
//! keys, hang-ups and the deadlines the core asks for ([`Session::poll_timeout`]), each with the
//! time on the call's clock, and gives it a [`MediaPort`] to send to. The session owns the pure
//! per-call core (`crate::call::Call`), runs the effects it asks for ([`Effects`]: whisper on the
//! worker pool, speech synthesis on the blocking pool, agent turns in order on the call's one
//! agent task), maps its events onto the logs and the case's audit trail, and closes the case
//! with the outcome. Every effect result comes back tagged with its turn on one channel
//! ([`Session::next_done`]); the core drops stale ones.
//!
//! Cancellation reaches every effect of a cancelled turn: a transcription or synthesis still
//! queued or running is dropped, an agent request still queued is never asked, and an answer that
//! comes back for a turn cancelled meanwhile is recorded as unheard (the agent keeps no reply the
//! caller never heard). A failed effect is an [`Input::EffectFailed`]: the caller hears the
//! template's apology and the call goes on.
//!
//! A live call also shows on the operations dashboard ([`crate::monitor`], from which an operator
//! may end or transfer it: a [`Done::Control`] on the same channel) and, when recordings are on,
//! is recorded as it runs ([`crate::recording`]).
//!
//! Nothing here reads a clock, sleeps or touches a socket; `next_done` and `settle` are the only
//! waits, and a virtual-clock driver calls `settle` so that time stands still while effects run.

use crate::agent::engine::Engine;
use crate::agent::master::Heard;
use crate::call::{
    CALLER_RATE, Call, CallConfig, CallEvent, Effect, EffectKind, EndAction, EventKind, Input,
    Output, Said, TurnId, WireCmd,
};
use crate::metrics;
use crate::monitor::{Control, Feed, LiveCall, Monitor};
use crate::onnx::silero::SileroStream;
use crate::recording::{Recorder, Recordings};
use crate::runtime::speech::Speech;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Where a call's audio goes: the provider's WebSocket, the browser's peer, replay's simulated
/// line. Calls arrive in the order the core decided them.
pub trait MediaPort {
    /// Bot audio, at the rate the session was started with.
    fn send_audio(&mut self, samples: &[f32], now_ms: u64);
    /// Report `id` back ([`Session::mark_played`]) once the audio sent before it has played.
    fn mark(&mut self, id: u64, now_ms: u64);
    /// Drop the audio not yet played, and report the marks still pending (as cleared).
    fn clear(&mut self, now_ms: u64);
    /// A call event, for ports that show them (the softphone page's captions and state).
    fn event(&mut self, _e: &CallEvent) {}
}

/// Marks of a port whose far end echoes none (the browser, Vonage, replay): each is due once the
/// port's play position (samples played, or ms on the clock) reaches where it was placed.
pub struct LocalMarks {
    q: VecDeque<(u64, u64)>,
}

impl Default for LocalMarks {
    fn default() -> Self {
        LocalMarks {
            q: VecDeque::with_capacity(64),
        }
    }
}

impl LocalMarks {
    /// Mark `id` is due when the play position reaches `at`.
    pub fn push(&mut self, at: u64, id: u64) {
        self.q.push_back((at, id));
    }

    /// The next mark due at play position `position`, if any.
    pub fn pop_due(&mut self, position: u64) -> Option<u64> {
        let &(at, id) = self.q.front()?;
        (at <= position).then(|| {
            self.q.pop_front();
            id
        })
    }

    /// Where the next mark falls due, if any is pending.
    pub fn next_at(&self) -> Option<u64> {
        self.q.front().map(|&(at, _)| at)
    }

    /// Every pending mark, cleared: for a `Clear`, they never play.
    pub fn drain(&mut self) -> impl Iterator<Item = u64> + '_ {
        self.q.drain(..).map(|(_, id)| id)
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// The results of effects, tagged with the turn that asked for them.
pub enum Done {
    Transcript {
        turn: TurnId,
        text: String,
        /// whisper's raw text and why it was withheld, when it was.
        suppressed: Option<(String, &'static str)>,
        /// Of a caller's pieces heard together (`Effect::Transcribe`'s `whole`).
        whole: bool,
    },
    Reply {
        turn: TurnId,
        text: String,
        end: Option<EndAction>,
        /// The turn's routing (intent, agent, status, fallback) for the timeline.
        routing: Value,
    },
    /// A clause of `turn`'s answer ready before the rest (a language model's streamed answer);
    /// the `Reply` still follows with the whole answer.
    Clause { turn: TurnId, text: String },
    /// Synthesised audio for `turn`, streamed: pieces as the engine produces them, then one
    /// with `last` set (possibly empty) when the reply is all synthesised.
    Audio {
        turn: TurnId,
        audio: Arc<Vec<f32>>,
        last: bool,
    },
    /// The end-of-turn model's probability that the caller was done at `turn`'s pause.
    EndPrediction { turn: TurnId, complete: f32 },
    Failed {
        turn: TurnId,
        effect: EffectKind,
        what: String,
    },
    /// The effect was dropped because its turn was cancelled.
    Dropped { turn: TurnId },
    /// An operator's request from the dashboard (not an effect's result).
    Control(Control),
}

/// Work for the call's agent task, in order.
enum AgentJob {
    Ask {
        turn: TurnId,
        said: Said,
        /// The turn's `agent` span (its sub-agent calls are spans within it).
        span: tracing::Span,
    },
    /// Only `heard` of `turn`'s reply reached the caller.
    Heard { turn: TurnId, heard: String },
    /// A call event for the case's audit trail.
    Note(&'static str, Value),
}

/// The recogniser's prompt shared between a call's agent task (which sets it from each reply)
/// and its transcriptions (which read it). Held only to clone or replace the `Arc`.
type Prompt = Arc<std::sync::Mutex<Option<Arc<str>>>>;

fn set_prompt(prompt: &Prompt, text: &str) {
    let p = (!text.is_empty()).then(|| Arc::<str>::from(text));
    *prompt.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

/// Runs the effects the core asks for. Every effect started sends exactly one [`Done`].
struct Effects {
    engine: Arc<Engine>,
    speech: Speech,
    done_tx: mpsc::Sender<Done>,
    agent_tx: Option<mpsc::Sender<AgentJob>>,
    agent_task: Option<tokio::task::JoinHandle<()>>,
    /// One past the highest cancelled turn (0: none): every turn below it is cancelled.
    cancelled: watch::Sender<TurnId>,
    prompt: Prompt,
    /// The turn of the synthesis started last, and what resolves when it is over: a turn's
    /// syntheses run one after the other, so a streamed answer's clauses play in order.
    last_synthesis: Option<(TurnId, tokio::sync::oneshot::Receiver<()>)>,
    /// See [`SessionParts::follow_line`].
    follow_line: bool,
}

impl Effects {
    fn new(
        engine: Arc<Engine>,
        speech: Speech,
        follow_line: bool,
    ) -> (Effects, mpsc::Receiver<Done>) {
        let (done_tx, done_rx) = mpsc::channel(32);
        let fx = Effects {
            engine,
            speech,
            done_tx,
            agent_tx: None,
            agent_task: None,
            cancelled: watch::Sender::new(0),
            prompt: Prompt::default(),
            last_synthesis: None,
            follow_line,
        };
        (fx, done_rx)
    }

    /// Starts the conversation's agent task (in the current tracing span) and records
    /// `call_started` with `detail` on the case.
    fn start_agent(&mut self, conversation: &str, prompt: &str, detail: Value) {
        set_prompt(&self.prompt, prompt);
        let (agent_tx, agent_rx) = mpsc::channel::<AgentJob>(16);
        self.agent_task = Some(tokio::spawn(
            agent_worker(
                self.engine.clone(),
                conversation.to_string(),
                agent_rx,
                self.done_tx.clone(),
                self.prompt.clone(),
                self.cancelled.subscribe(),
            )
            .instrument(tracing::Span::current()),
        ));
        let _ = agent_tx.try_send(AgentJob::Note("call_started", detail));
        self.agent_tx = Some(agent_tx);
    }

    /// Starts `e` (its work traced as a child of `turn_span`, when it has one); returns whether
    /// it will send a [`Done`].
    async fn run(
        &mut self,
        e: Effect,
        rate: u32,
        turn_span: Option<&tracing::Span>,
    ) -> anyhow::Result<bool> {
        let child = |name: &'static str| match (turn_span, name) {
            (Some(p), "asr") => tracing::info_span!(parent: p, "asr"),
            (Some(p), "tts") => tracing::info_span!(parent: p, "tts"),
            (Some(p), "agent") => tracing::info_span!(parent: p, "agent"),
            (Some(p), _) => tracing::info_span!(parent: p, "end_of_turn"),
            (None, _) => tracing::Span::current(),
        };
        match e {
            Effect::Transcribe { turn, audio, whole } => {
                let speech = self.speech.clone();
                let prompt = self
                    .prompt
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                // Dropping the transcription makes the pool skip it if still queued.
                self.spawn_cancellable(turn, child("asr"), async move {
                    let started = std::time::Instant::now();
                    let audio_ms = audio.len() as u64 * 1000 / u64::from(CALLER_RATE);
                    match speech.transcribe(audio, prompt, whole).await {
                        Ok(t) => {
                            if t.passes > 0 {
                                metrics::observe(
                                    metrics::ASR_DECODE,
                                    &[],
                                    metrics::ms(t.decode_ms),
                                );
                            }
                            tracing::debug!(
                                turn,
                                audio_ms,
                                ms = started.elapsed().as_millis() as u64,
                                decode_ms = t.decode_ms,
                                passes = t.passes,
                                whole,
                                "transcribed"
                            );
                            Done::Transcript {
                                turn,
                                suppressed: t.suppressed.map(|why| (t.raw, why)),
                                text: t.text,
                                whole,
                            }
                        }
                        Err(e) if whole => {
                            // The pieces' own transcripts stand: nothing is lost.
                            tracing::warn!(turn, error = %e, "the caller's pieces could not be transcribed together");
                            Done::Transcript {
                                turn,
                                suppressed: None,
                                text: String::new(),
                                whole,
                            }
                        }
                        Err(e) => Done::Failed {
                            turn,
                            effect: EffectKind::Asr,
                            what: format!("ASR failed: {e}"),
                        },
                    }
                });
                Ok(true)
            }
            Effect::Synthesize { turn, text } => {
                let speech = self.speech.clone();
                let done = self.done_tx.clone();
                let cancelled = self.cancelled.subscribe();
                // Each piece goes to the call as soon as it is synthesised (from the TTS worker
                // thread); a cancelled turn stops the engine at its next piece.
                let emit = move |audio: Arc<Vec<f32>>| {
                    if turn < *cancelled.borrow() {
                        return false;
                    }
                    let piece = Done::Audio {
                        turn,
                        audio,
                        last: false,
                    };
                    done.blocking_send(piece).is_ok()
                };
                let before = self
                    .last_synthesis
                    .take()
                    .and_then(|(t, rx)| (t == turn).then_some(rx));
                let (over, over_rx) = tokio::sync::oneshot::channel::<()>();
                self.last_synthesis = Some((turn, over_rx));
                self.spawn_cancellable(turn, child("tts"), async move {
                    // After the one before (done, failed or dropped: its sender is gone).
                    if let Some(b) = before {
                        let _ = b.await;
                    }
                    let _over = over;
                    let started = std::time::Instant::now();
                    match speech.synthesize_stream(&text, rate, emit).await {
                        Ok(()) => {
                            metrics::observe(
                                metrics::TTS_SYNTHESIS,
                                &[],
                                started.elapsed().as_secs_f64(),
                            );
                            Done::Audio {
                                turn,
                                audio: Arc::default(),
                                last: true,
                            }
                        }
                        Err(e) => Done::Failed {
                            turn,
                            effect: EffectKind::Tts,
                            what: format!("TTS failed: {e}"),
                        },
                    }
                });
                Ok(true)
            }
            Effect::AskAgent { turn, said } => {
                let span = child("agent");
                self.agent(AgentJob::Ask { turn, said, span }).await?;
                Ok(true)
            }
            Effect::Interrupted { turn, heard } => {
                self.agent(AgentJob::Heard { turn, heard }).await?;
                Ok(false)
            }
            Effect::PredictEnd { turn, audio } => {
                let Some(model) = self.speech.turn_model.clone() else {
                    // No model: the core only asks when the session gave it one.
                    return Ok(false);
                };
                // Only a call that follows the line's load (not a replay, whose timeline must
                // not depend on what else runs) waits for whisper or takes a second thread.
                let follow = self.follow_line;
                let wait = self.speech.turn_model_wait();
                self.spawn_cancellable(turn, child("end_of_turn"), async move {
                    let asked = std::time::Instant::now();
                    if follow {
                        crate::cpu::after_wide_decodes(wait).await;
                    }
                    let waited = asked.elapsed();
                    // The other core is idle on a quiet line: the model may take it too.
                    let verdict = tokio::task::spawn_blocking(move || {
                        if follow && crate::cpu::quiet() {
                            model.predict_wide(&audio)
                        } else {
                            model.predict(&audio)
                        }
                    })
                    .await;
                    tracing::debug!(
                        turn,
                        waited_ms = waited.as_millis() as u64,
                        ms = (asked.elapsed() - waited).as_millis() as u64,
                        "end of turn predicted"
                    );
                    match verdict {
                        Ok(Ok(complete)) => Done::EndPrediction { turn, complete },
                        Ok(Err(e)) => Done::Failed {
                            turn,
                            effect: EffectKind::TurnModel,
                            what: format!("end-of-turn model failed: {e}"),
                        },
                        Err(e) => Done::Failed {
                            turn,
                            effect: EffectKind::TurnModel,
                            what: format!("end-of-turn model stopped: {e}"),
                        },
                    }
                });
                Ok(true)
            }
            Effect::CancelTurn { turn } => {
                self.cancelled.send_if_modified(|c| {
                    let was = *c;
                    *c = was.max(turn + 1);
                    *c != was
                });
                Ok(false)
            }
        }
    }

    /// Runs `work` for `turn` on its own task; it is dropped (and `Dropped` sent instead) as soon
    /// as the turn is cancelled. Exactly one [`Done`] is sent either way.
    fn spawn_cancellable(
        &self,
        turn: TurnId,
        span: tracing::Span,
        work: impl std::future::Future<Output = Done> + Send + 'static,
    ) {
        let done = self.done_tx.clone();
        let mut cancelled = self.cancelled.subscribe();
        tokio::spawn(
            async move {
                let msg = tokio::select! {
                    d = work => d,
                    _ = cancelled.wait_for(|&c| turn < c) => Done::Dropped { turn },
                };
                let _ = done.send(msg).await;
            }
            .instrument(span),
        );
    }

    async fn agent(&self, job: AgentJob) -> anyhow::Result<()> {
        match &self.agent_tx {
            Some(agent) => {
                if agent.send(job).await.is_err() {
                    anyhow::bail!("agent worker stopped");
                }
            }
            // No conversation (the busy message): nothing to ask.
            None => {
                if let AgentJob::Ask { turn, .. } = job {
                    let _ = self.done_tx.send(Done::Dropped { turn }).await;
                }
            }
        }
        Ok(())
    }

    /// Records a call event on the case. Best-effort: a full queue must not stall the audio path.
    fn note(&self, action: &'static str, detail: Value) {
        if let Some(agent) = &self.agent_tx
            && agent.try_send(AgentJob::Note(action, detail)).is_err()
        {
            tracing::warn!(action, "call event not recorded: agent queue full");
        }
    }
}

/// One conversation answers one turn at a time: agent requests and call events are queued here.
async fn agent_worker(
    engine: Arc<Engine>,
    conversation: String,
    mut rx: mpsc::Receiver<AgentJob>,
    done: mpsc::Sender<Done>,
    prompt: Prompt,
    cancelled: watch::Receiver<TurnId>,
) {
    // The turn whose reply is the conversation's last (the greeting is turn 0).
    let mut last_reply: Option<TurnId> = Some(0);
    // The last turn the engine was asked about.
    let mut last_asked: TurnId = 0;
    // A model's streamed answer: its clauses go to the call as each is ready.
    let (clause_tx, mut clause_rx) = mpsc::channel::<String>(8);
    while let Some(job) = rx.recv().await {
        let (turn, said, span) = match job {
            AgentJob::Ask { turn, said, span } => (turn, said, span),
            AgentJob::Heard { turn, heard } => {
                // Only the reply it is about: a later one may have been given since.
                if last_reply == Some(turn) {
                    if let Err(e) = engine.interrupted(&conversation, &heard).await {
                        tracing::warn!(error = %e, "could not record the interruption");
                    }
                    if heard.is_empty() {
                        last_reply = None;
                    }
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
        if turn < *cancelled.borrow() {
            tracing::debug!(turn, "agent request of a cancelled turn dropped");
            let _ = done.send(Done::Dropped { turn }).await;
            continue;
        }
        // Words that go on with earlier pieces: the engine hears the pieces it was never asked
        // about (the caller went on first) with them, and takes back its last turn when that
        // was one of the pieces. Heard together (`whole`), the pieces replace their joined
        // texts when the engine was asked about none of them, or can take back all it heard.
        let words: String;
        let (mut heard, take_back, whole) = match &said {
            Said::Speech {
                text,
                speech_ms,
                earlier,
                whole,
            } => {
                let (w, ms, take_back, whole) =
                    unheard_words(earlier, last_asked, text, *speech_ms, whole.as_deref());
                words = w;
                (Heard::speech(&words, ms), take_back, whole)
            }
            Said::Keys(keys) => (Heard::keys(keys), false, None),
        };
        heard.clauses = Some(&clause_tx);
        last_asked = turn;
        let conv = conversation.as_str();
        let hear = async {
            if take_back {
                engine.hear_continued(conv, heard, whole).await
            } else {
                engine.hear(conv, heard).await.map(Some)
            }
        }
        .instrument(span);
        tokio::pin!(hear);
        let mut streamed = false;
        let answer = loop {
            tokio::select! {
                biased;
                Some(text) = clause_rx.recv() => {
                    streamed = true;
                    let _ = done.send(Done::Clause { turn, text }).await;
                }
                r = &mut hear => break r,
            }
        };
        while let Ok(text) = clause_rx.try_recv() {
            streamed = true;
            let _ = done.send(Done::Clause { turn, text }).await;
        }
        let msg = match answer {
            // Nothing new was said and the answer before it stands (it could not be taken back).
            Ok(None) => Done::Dropped { turn },
            Ok(Some(t)) => {
                set_prompt(&prompt, &t.asr_prompt);
                // Intent names are the template's (a bounded set), "none" when none was taken.
                metrics::count(
                    metrics::INTENTS,
                    &[("intent", t.intent.as_deref().unwrap_or("none"))],
                    1.0,
                );
                last_reply = Some(turn);
                if turn < *cancelled.borrow() && streamed {
                    // The caller spoke over a streamed answer: the interruption queued behind this
                    // turn says how much of it they heard.
                    Done::Dropped { turn }
                } else if turn < *cancelled.borrow() {
                    // The caller moved on while the agent answered: nobody heard this reply.
                    tracing::debug!(turn, "reply of a cancelled turn recorded as unheard");
                    if let Err(e) = engine.interrupted(&conversation, "").await {
                        tracing::warn!(error = %e, "could not record the unheard reply");
                    }
                    last_reply = None;
                    Done::Dropped { turn }
                } else {
                    Done::Reply {
                        turn,
                        routing: json!({"intent": t.intent, "agent": t.agent,
                                        "status": t.status, "fallback": t.fallback,
                                        "model": t.model}),
                        text: t.reply,
                        end: t.action,
                    }
                }
            }
            Err(e) => Done::Failed {
                turn,
                effect: EffectKind::Agent,
                what: format!("agent failed: {e}"),
            },
        };
        // The call may be over; the remaining jobs (notes) are still recorded.
        let _ = done.send(msg).await;
    }
}

/// What the engine is asked for `text` that goes on with `earlier` (the pieces said since the
/// caller last heard an answer; empty: it stands alone), the engine having last been asked
/// about `last_asked`: the pieces it never heard (the caller went on before they were asked)
/// and `text`, how long they were spoken, and whether its last turn was one of the pieces (then
/// it is taken back, and the engine adds that turn's words).
///
/// `whole` (every piece and `text` transcribed together) replaces the words when the engine
/// was asked about none of the pieces; when it takes its last turn back, it is handed on for
/// the engine to use if that turn heard all the pieces it was asked about (the 4th value).
fn unheard_words<'a>(
    earlier: &[crate::call::Piece],
    last_asked: TurnId,
    text: &str,
    speech_ms: u64,
    whole: Option<&'a str>,
) -> (String, u64, bool, Option<&'a str>) {
    let take_back = earlier.first().is_some_and(|p| p.turn <= last_asked);
    let mut words = String::new();
    let mut ms = speech_ms;
    for p in earlier.iter().filter(|p| p.turn > last_asked) {
        words = crate::call::join_words(&words, &p.text);
        ms += p.speech_ms;
    }
    match whole {
        Some(all) if !take_back => (all.to_string(), ms, false, None),
        _ => (crate::call::join_words(&words, text), ms, take_back, whole),
    }
}

/// Turns whose spans are kept open at once (a turn's span ends when its reply starts playing).
const TRACED_TURNS: usize = 4;

/// The turn span's attribute for a stage's time.
fn stage_field(stage: &str) -> &'static str {
    match stage {
        "transcript" => "transcript_ms",
        "turn_decided" => "turn_decided_ms",
        "agent_answered" => "agent_answered_ms",
        "first_tts_chunk" => "first_tts_chunk_ms",
        _ => "first_audio_ms",
    }
}

/// The turn an effect's result is about.
fn done_turn(d: &Done) -> Option<TurnId> {
    match d {
        Done::Transcript { turn, .. }
        | Done::Reply { turn, .. }
        | Done::Clause { turn, .. }
        | Done::Audio { turn, .. }
        | Done::EndPrediction { turn, .. }
        | Done::Failed { turn, .. }
        | Done::Dropped { turn } => Some(*turn),
        Done::Control(_) => None,
    }
}

/// The case outcome of a call the bot ended.
pub fn end_outcome(action: &EndAction, busy: bool) -> String {
    match action {
        EndAction::Hangup if busy => "busy: over the call cap".to_string(),
        EndAction::Hangup => "bot hung up".to_string(),
        EndAction::Transfer { to } => format!("transferred to {to}"),
    }
}

/// A caller id as the log shows it: phone numbers masked to their last four digits.
pub use crate::redact::shown_caller;

/// Resolves when the gateway asks calls to end (never, if it cannot).
pub async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a session is started with, shared by all calls of a driver.
pub struct SessionParts<'a> {
    pub engine: &'a Arc<Engine>,
    pub speech: &'a Speech,
    pub call: &'a CallConfig,
    /// Bot audio leaves at this rate.
    pub out_rate: u32,
    /// The dashboard's live calls (none for replay).
    pub monitor: Option<&'a Arc<Monitor>>,
    /// Where calls are recorded, when recordings are on.
    pub recordings: Option<&'a Arc<Recordings>>,
    /// Tell the call when the line turns busy or quiet (`cpu::busy_line`), so that it
    /// transcribes pauses less eagerly when the cores are shared: live calls. Off for replay,
    /// whose calls must behave the same whatever else the process runs.
    pub follow_line: bool,
}

/// One call, from media connected to case closed. See the module docs.
pub struct Session {
    /// What the call was last told about the line (see [`SessionParts::follow_line`]).
    line_busy: bool,
    call: Call,
    fx: Effects,
    done_rx: mpsc::Receiver<Done>,
    out_pcm: Vec<f32>,
    out_rate: u32,
    busy: bool,
    conversation: Option<String>,
    case_id: String,
    outcome: Option<String>,
    end: Option<EndAction>,
    /// Effects started whose result has not come back.
    in_flight: usize,
    speech_end_ms: Option<u64>,
    timeline: Option<Vec<Value>>,
    /// The provider or channel, for the metrics' labels.
    channel: String,
    /// Counts the call in `switchboard_calls_active` while the session lives.
    _active: Option<ActiveCall>,
    stages: Stages,
    /// The stage measurements of the latest input, reused.
    measures: Vec<Measure>,
    /// This call's voice-model state (the model is shared), when there is a voice check.
    voice: Option<SileroStream>,
    /// The call on the dashboard.
    feed: Option<Feed>,
    recorder: Option<Recorder>,
    /// Where an operator's transfer goes (the template's human line).
    human_number: String,
    /// The driver's `call` span (the trace of the call), and the recent turns' spans under it.
    call_span: tracing::Span,
    turns: VecDeque<(TurnId, tracing::Span)>,
}

impl Session {
    fn new(parts: &SessionParts<'_>, busy: bool) -> Session {
        let mut cfg = parts.call.clone();
        cfg.out_rate = parts.out_rate;
        cfg.apology = parts.engine.template.lines.apology.clone();
        cfg.turn_model = parts.speech.turn_model_config();
        cfg.voice_check = parts.speech.voice_check_config();
        let voice = match parts.speech.vad.as_ref().map(|m| m.stream()) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "no voice check for this call: the energy detector decides");
                cfg.voice_check = None;
                None
            }
            None => None,
        };
        let (fx, done_rx) = Effects::new(
            parts.engine.clone(),
            parts.speech.clone(),
            parts.follow_line,
        );
        Session {
            line_busy: false,
            voice,
            call: Call::new(cfg),
            fx,
            done_rx,
            out_pcm: vec![0.0; parts.out_rate as usize],
            out_rate: parts.out_rate,
            busy,
            conversation: None,
            case_id: String::new(),
            outcome: None,
            end: None,
            in_flight: 0,
            speech_end_ms: None,
            timeline: None,
            channel: String::new(),
            _active: None,
            stages: Stages::default(),
            measures: Vec::with_capacity(4),
            feed: None,
            recorder: None,
            human_number: parts.engine.template.human_number.clone(),
            call_span: tracing::Span::current(),
            turns: VecDeque::with_capacity(TRACED_TURNS),
        }
    }

    /// A call over the cap on `channel`: `message` is played and the bot hangs up; no
    /// conversation is opened.
    pub fn busy(parts: &SessionParts<'_>, channel: &str, message: &str, now: u64) -> Session {
        let mut s = Session::new(parts, true);
        s.channel = channel.to_string();
        s.call.handle(
            now,
            Input::AgentReply {
                turn: 0,
                text: message.to_string(),
                end: Some(EndAction::Hangup),
            },
        );
        s
    }

    /// Opens the conversation and its case for `caller` (one rule: [`crate::agent::caller`]) on
    /// `channel`, records `call_started` with `detail` (plus the channel), and starts the greeting.
    pub async fn start(
        parts: &SessionParts<'_>,
        caller: &str,
        channel: &str,
        mut detail: Value,
        now: u64,
    ) -> anyhow::Result<Session> {
        let mut s = Session::new(parts, false);
        s.channel = channel.to_string();
        let caller = crate::agent::caller::normalize(caller).unwrap_or_else(|| "unknown".into());
        let greeting = parts.engine.start_call(&caller, channel).await?;
        metrics::count(metrics::CALLS_STARTED, &[("provider", channel)], 1.0);
        s._active = Some(ActiveCall::new(channel));
        let conv = greeting.conversation_id.clone();
        let shown = shown_caller(&caller);
        tracing::info!(conversation = %conv, caller = %shown, "call started");
        s.call_span.record("case_id", greeting.case_id.as_str());
        if let Some(recs) = parts.recordings {
            s.recorder = recs.recorder(
                &greeting.case_id,
                json!({"provider": channel, "caller": &shown, "case_id": &greeting.case_id,
                       "conversation_id": &conv}),
                parts.out_rate,
            );
        }
        if let Some(monitor) = parts.monitor {
            let tx = s.fx.done_tx.clone();
            s.feed = Some(monitor.open(
                LiveCall {
                    id: greeting.case_id.clone(),
                    provider: channel.to_string(),
                    caller: shown,
                    case_id: greeting.case_id.clone(),
                    started_at_ms: crate::runtime::stream_token::now_ms(),
                    state: crate::monitor::State::Listening,
                    lines: VecDeque::new(),
                    barge_ins: 0,
                },
                now,
                move |c| tx.try_send(Done::Control(c)).is_ok(),
            ));
        }
        detail["provider"] = json!(channel);
        s.fx.start_agent(&conv, &greeting.asr_prompt, detail);
        s.conversation = Some(conv);
        s.case_id = greeting.case_id.clone();
        s.call.handle(
            now,
            Input::AgentReply {
                turn: 0,
                text: greeting.reply,
                end: None,
            },
        );
        Ok(s)
    }

    /// Keeps every event (and each turn's routing) as JSON, for replay's timeline.
    pub fn record_timeline(&mut self) {
        self.timeline.get_or_insert_with(Vec::new);
    }

    pub fn take_timeline(&mut self) -> Vec<Value> {
        self.timeline.take().unwrap_or_default()
    }

    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_deref()
    }

    pub fn case_id(&self) -> &str {
        &self.case_id
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }

    pub fn bot_speaking(&self) -> bool {
        self.call.bot_speaking()
    }

    /// The call is over: the bot ended it, the caller hung up, or the driver gave an outcome.
    pub fn is_over(&self) -> bool {
        self.call.is_ended() || self.outcome.is_some()
    }

    /// How the bot ended the call, if it did (for the provider's call control).
    pub fn end_action(&self) -> Option<&EndAction> {
        self.end.as_ref()
    }

    pub fn outcome(&self) -> Option<&str> {
        self.outcome.as_deref()
    }

    /// Caller audio, 16 kHz. A busy call ignores it.
    pub fn caller_audio(&mut self, now: u64, samples: &[f32]) {
        if self.busy {
            return;
        }
        if self.fx.follow_line {
            let busy = crate::cpu::busy_line();
            if busy != self.line_busy {
                self.line_busy = busy;
                self.call.handle(now, Input::LineBusy(busy));
            }
        }
        self.call.handle(now, Input::CallerAudio(samples));
        if let Some(r) = self.recorder.as_mut() {
            r.caller(samples);
        }
        let Some(voice) = self.voice.as_mut() else {
            return;
        };
        if !self.call.wants_voice() {
            // Fresh state for the next sound (nothing to do when it is fresh already).
            voice.reset();
            return;
        }
        let p = match voice.try_push(samples) {
            Ok(p) => p,
            Err(e) => {
                // Fail open: the energy detector decides, as without a voice check.
                if voice.errors() == 1 {
                    tracing::warn!(error = %e, "the voice check failed; taking the sound as a voice");
                }
                Some(1.0)
            }
        };
        if let Some(p) = p {
            self.call.handle(now, Input::Voice { p });
        }
    }

    pub fn mark_played(&mut self, now: u64, id: u64) {
        self.call.handle(now, Input::MarkPlayed { id });
    }

    pub fn dtmf(&mut self, now: u64, digit: char) {
        if !self.busy {
            self.call.handle(now, Input::Dtmf(digit));
        }
    }

    /// The call ends from outside the core (the caller hung up, a deadline, shutdown): the first
    /// outcome given is the one recorded.
    pub fn hang_up(&mut self, now: u64, outcome: &str) {
        self.call.handle(now, Input::HangUp);
        self.outcome.get_or_insert_with(|| outcome.to_string());
    }

    /// The gateway ends the call (a deadline, shutdown): the provider is told to hang up too.
    pub fn end_by_gateway(&mut self, now: u64, outcome: &str) {
        self.hang_up(now, outcome);
        self.end.get_or_insert(EndAction::Hangup);
    }

    /// When the core next needs [`Session::timeout`], on the call's clock.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.call.poll_timeout()
    }

    pub fn timeout(&mut self, now: u64) {
        self.call.handle(now, Input::Timeout);
    }

    /// The next effect result (cancel-safe, for `select!`).
    pub async fn next_done(&mut self) -> Option<Done> {
        self.done_rx.recv().await
    }

    /// Gives an effect's result to the core.
    pub fn done(&mut self, now: u64, d: Done) {
        if let Done::Control(c) = d {
            self.control(now, c);
            return;
        }
        // A streamed piece is not the effect's end; its last piece (or any other result) is.
        if !matches!(d, Done::Audio { last: false, .. } | Done::Clause { .. }) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.stages.done(now, &d, &mut self.measures);
        self.record_measures(done_turn(&d));
        match d {
            Done::Transcript {
                turn,
                text,
                suppressed,
                whole,
            } => {
                if let Some((raw, why)) = suppressed
                    && self.keeps_timeline()
                {
                    self.keep(
                        json!({"t_ms": now, "kind": "transcript_suppressed", "turn": turn,
                                     "raw": raw, "reason": why}),
                    );
                }
                self.call
                    .handle(now, Input::Transcript { turn, text, whole })
            }
            Done::Reply {
                turn,
                text,
                end,
                mut routing,
            } => {
                if self.keeps_timeline() {
                    routing["t_ms"] = json!(now);
                    routing["kind"] = json!("intent");
                    routing["turn"] = json!(turn);
                    self.keep(routing);
                }
                self.call.handle(now, Input::AgentReply { turn, text, end })
            }
            Done::Clause { turn, text } => self.call.handle(now, Input::AgentClause { turn, text }),
            Done::Audio { turn, audio, last } => {
                let call = &mut self.call;
                if !audio.is_empty() {
                    call.handle(
                        now,
                        Input::TtsAudio {
                            turn,
                            samples: &audio,
                        },
                    );
                }
                if last {
                    call.handle(now, Input::TtsDone { turn });
                }
            }
            Done::EndPrediction { turn, complete } => self
                .call
                .handle(now, Input::EndPrediction { turn, complete }),
            Done::Failed { turn, effect, what } => {
                tracing::warn!(turn, effect = effect.as_str(), "{what}");
                self.call.handle(now, Input::EffectFailed { turn, effect });
            }
            Done::Dropped { .. } | Done::Control(_) => {}
        }
    }

    /// An operator ends the call or sends it to the human line; the case records who did.
    fn control(&mut self, now: u64, c: Control) {
        if self.is_over() {
            return;
        }
        match c {
            Control::HangUp => {
                self.fx.note("operator_hang_up", json!({}));
                self.end_by_gateway(now, "hung up by an operator");
            }
            Control::Transfer => {
                let to = self.human_number.clone();
                self.fx.note("operator_transfer", json!({}));
                self.hang_up(now, &format!("transferred by an operator to {to}"));
                self.end.get_or_insert(EndAction::Transfer { to });
            }
        }
        tracing::info!(outcome = ?self.outcome, "an operator ends the call");
    }

    /// Whether timeline entries are kept (for replay or a recording).
    fn keeps_timeline(&self) -> bool {
        self.timeline.is_some() || self.recorder.is_some()
    }

    /// A timeline entry, for replay's timeline and the recording.
    fn keep(&mut self, v: Value) {
        if let Some(r) = self.recorder.as_mut() {
            r.line(&v);
        }
        if let Some(tl) = self.timeline.as_mut() {
            tl.push(v);
        }
    }

    /// Runs the core's outputs to quiescence: effects are started, wire commands go to `port`,
    /// events to the logs, the audit trail and `port`.
    pub async fn flush<P: MediaPort>(&mut self, now: u64, port: &mut P) -> anyhow::Result<()> {
        while let Some(o) = self.call.poll() {
            match o {
                Output::Wire(WireCmd::SendAudio { samples }) => {
                    let samples = samples.min(self.out_pcm.len());
                    let n = self.call.take_audio(&mut self.out_pcm[..samples]);
                    port.send_audio(&self.out_pcm[..n], now);
                    if let Some(r) = self.recorder.as_mut() {
                        r.bot(&self.out_pcm[..n]);
                    }
                }
                Output::Wire(WireCmd::Mark { id }) => port.mark(id, now),
                Output::Wire(WireCmd::Clear) => {
                    port.clear(now);
                    if let Some(r) = self.recorder.as_mut() {
                        r.clear();
                    }
                }
                Output::Effect(e) => {
                    if let Effect::AskAgent { turn, said } = &e {
                        metrics::count(metrics::TURNS, &[("provider", &self.channel)], 1.0);
                        self.stages.asked(now, *turn, said, &mut self.measures);
                        self.record_measures(Some(*turn));
                    }
                    let span = match &e {
                        Effect::Transcribe { turn, .. }
                        | Effect::Synthesize { turn, .. }
                        | Effect::AskAgent { turn, .. }
                        | Effect::PredictEnd { turn, .. } => Some(self.turn_span(*turn)),
                        _ => None,
                    };
                    if self.fx.run(e, self.out_rate, span.as_ref()).await? {
                        self.in_flight += 1;
                    }
                }
                Output::Event(e) => {
                    self.event(&e);
                    port.event(&e);
                    if self.keeps_timeline() {
                        self.keep(serde_json::to_value(&e)?);
                    }
                }
                Output::End(action) => {
                    tracing::info!(?action, "the bot ends the call");
                    self.outcome = Some(end_outcome(&action, self.busy));
                    self.end = Some(action);
                }
            }
        }
        Ok(())
    }

    /// Waits for every effect in flight and gives its result to the core (then flushes), until
    /// none is left: on a virtual clock, time stands still while effects run.
    pub async fn settle<P: MediaPort>(&mut self, now: u64, port: &mut P) -> anyhow::Result<()> {
        self.flush(now, port).await?;
        while self.in_flight > 0 {
            let Some(d) = self.done_rx.recv().await else {
                break;
            };
            self.done(now, d);
            self.flush(now, port).await?;
        }
        Ok(())
    }

    /// Records the latest measurements in the metrics, and a stage's time on its turn's span.
    fn record_measures(&mut self, turn: Option<TurnId>) {
        for m in self.measures.drain(..) {
            m.record();
            if let (Measure::Stage(stage, ms), Some(turn)) = (m, turn)
                && let Some((_, span)) = self.turns.iter().find(|(t, _)| *t == turn)
            {
                span.record(stage_field(stage), ms);
            }
        }
    }

    /// The span of `turn`'s work (created under the call's span at its first effect).
    fn turn_span(&mut self, turn: TurnId) -> tracing::Span {
        if let Some((_, s)) = self.turns.iter().find(|(t, _)| *t == turn) {
            return s.clone();
        }
        if self.turns.len() >= TRACED_TURNS {
            self.turns.pop_front();
        }
        let empty = tracing::field::Empty;
        let s = tracing::info_span!(
            parent: &self.call_span,
            "turn",
            turn,
            transcript_ms = empty,
            turn_decided_ms = empty,
            agent_answered_ms = empty,
            first_tts_chunk_ms = empty,
            first_audio_ms = empty,
        );
        self.turns.push_back((turn, s.clone()));
        s
    }

    /// Logs an event and records the ones the case keeps.
    fn event(&mut self, e: &CallEvent) {
        tracing::debug!(t_ms = e.t_ms, event = ?e.kind, "call event");
        if let Some(f) = &self.feed {
            f.event(e);
        }
        self.stages.event(e, &mut self.measures);
        if let EventKind::BotAudioStart { turn } = e.kind {
            // The turn's reply is on the line: its span ends once its work does.
            self.record_measures(Some(turn));
            self.turns.retain(|(t, _)| *t != turn);
        } else {
            self.record_measures(None);
        }
        let note = match &e.kind {
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
            EventKind::BotPaused { turn, .. } => {
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
            EventKind::Continues { turn, earlier } => {
                tracing::info!(
                    turn,
                    earlier,
                    "the caller went on before hearing the answer: heard together"
                );
                Some(("turn_continued", json!({"turn": turn, "earlier": earlier})))
            }
            EventKind::TranscriptDropped { turn } => {
                Some(("transcript_dropped", json!({"turn": turn})))
            }
            EventKind::EffectFailed { turn, effect } => {
                tracing::warn!(
                    turn,
                    effect = effect.as_str(),
                    "an effect failed: apologising"
                );
                Some((
                    "effect_failed",
                    json!({"turn": turn, "effect": effect.as_str()}),
                ))
            }
            _ => None,
        };
        if let Some((action, detail)) = note {
            self.fx.note(action, detail);
        }
    }

    /// Records `call_ended` (`outcome`, or "connection dropped" when none was given, plus
    /// `detail`'s fields), waits for every queued agent job, then closes the case. Returns the
    /// outcome.
    pub async fn finish(&mut self, mut detail: Value) -> String {
        let outcome = self
            .outcome
            .clone()
            .unwrap_or_else(|| "connection dropped".into());
        if let Some(agent) = self.fx.agent_tx.take() {
            detail["outcome"] = json!(outcome);
            let _ = agent.send(AgentJob::Note("call_ended", detail)).await;
        }
        if let Some(task) = self.fx.agent_task.take()
            && tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
        {
            tracing::warn!("the agent task did not finish in time");
        }
        if let Some(conv) = &self.conversation
            && let Err(e) = self.fx.engine.finish_call(conv, &outcome).await
        {
            tracing::warn!(error = %e, "could not close the case");
        }
        tracing::info!(outcome = %outcome, "call ended");
        if let Some(r) = self.recorder.take() {
            r.finish(&outcome);
        }
        if let Some(f) = self.feed.take() {
            f.end(&outcome);
        }
        metrics::count(
            metrics::CALLS_ENDED,
            &[
                ("provider", &self.channel),
                ("outcome", outcome_class(&outcome, self.busy)),
            ],
            1.0,
        );
        self._active = None;
        outcome
    }
}

/// A live driver's call before and after its session exists, and the call's clock: until the
/// media starts there is no session, and a call that ends then (refused, no start, the page
/// left) has only an outcome.
pub struct CallState {
    session: Option<Session>,
    early_outcome: Option<String>,
    started: tokio::time::Instant,
}

impl Default for CallState {
    fn default() -> Self {
        CallState {
            session: None,
            early_outcome: None,
            started: tokio::time::Instant::now(),
        }
    }
}

impl CallState {
    /// Milliseconds on the call's clock (since its socket was accepted).
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// When the call's clock reads `ms`.
    pub fn instant_at(&self, ms: u64) -> tokio::time::Instant {
        self.started + Duration::from_millis(ms)
    }

    /// An effect's result, now.
    pub fn done_now(&mut self, d: Done) {
        let now = self.now();
        self.done(now, d);
    }

    /// The gateway is shutting down: the call ends.
    pub fn shutdown(&mut self) {
        tracing::warn!("ending the call: the gateway is shutting down");
        let now = self.now();
        self.end_by_gateway(now, "ended at shutdown");
    }

    pub fn start(&mut self, s: Session) {
        self.session = Some(s);
    }

    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    pub fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    pub fn over(&self) -> bool {
        self.early_outcome.is_some() || self.session.as_ref().is_some_and(Session::is_over)
    }

    pub fn outcome(&self) -> Option<String> {
        self.session
            .as_ref()
            .and_then(|s| s.outcome().map(str::to_string))
            .or_else(|| self.early_outcome.clone())
    }

    /// The call ends from outside (see [`Session::hang_up`]); the first outcome is kept.
    pub fn hang_up(&mut self, now: u64, outcome: &str) {
        match &mut self.session {
            Some(s) => s.hang_up(now, outcome),
            None => {
                self.early_outcome
                    .get_or_insert_with(|| outcome.to_string());
            }
        }
    }

    /// The gateway ends the call (see [`Session::end_by_gateway`]).
    pub fn end_by_gateway(&mut self, now: u64, outcome: &str) {
        match &mut self.session {
            Some(s) => s.end_by_gateway(now, outcome),
            None => {
                self.early_outcome
                    .get_or_insert_with(|| outcome.to_string());
            }
        }
    }

    /// The next effect result; never resolves before the session exists (for `select!`).
    pub async fn next_done(&mut self) -> Option<Done> {
        match &mut self.session {
            Some(s) => s.next_done().await,
            None => std::future::pending().await,
        }
    }

    pub fn done(&mut self, now: u64, d: Done) {
        if let Some(s) = &mut self.session {
            s.done(now, d);
        }
    }

    pub async fn flush<P: MediaPort>(&mut self, now: u64, port: &mut P) -> anyhow::Result<()> {
        match &mut self.session {
            Some(s) => s.flush(now, port).await,
            None => Ok(()),
        }
    }

    /// Closes the case (see [`Session::finish`]), or logs how a call without one ended.
    pub async fn finish(&mut self, detail: Value) {
        match &mut self.session {
            Some(s) => {
                s.finish(detail).await;
            }
            None => {
                let outcome = self
                    .early_outcome
                    .as_deref()
                    .unwrap_or("connection dropped");
                tracing::info!(outcome = %outcome, "call ended");
            }
        }
    }
}

/// The outcome of a call as the metrics class it: a handful of values, never the free text.
fn outcome_class(outcome: &str, busy: bool) -> &'static str {
    if busy || outcome.starts_with("busy") {
        "refused"
    } else if outcome.starts_with("transferred") {
        "transferred"
    } else if outcome == "bot hung up" {
        "resolved"
    } else if outcome.contains("shutdown") {
        "drained"
    } else if outcome == "caller hung up" {
        "caller_hung_up"
    } else if outcome.contains("operator") {
        "operator_ended"
    } else {
        "dropped"
    }
}

/// One call in `switchboard_calls_active`, and on the line for whisper's thread choice
/// (`cpu`), for as long as it lives, however the session ends.
struct ActiveCall {
    channel: String,
    _line: crate::cpu::Counted,
}

impl ActiveCall {
    fn new(channel: &str) -> ActiveCall {
        metrics::gauge_add(metrics::CALLS_ACTIVE, &[("provider", channel)], 1.0);
        ActiveCall {
            channel: channel.to_string(),
            _line: crate::cpu::on_the_line(),
        }
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        metrics::gauge_add(metrics::CALLS_ACTIVE, &[("provider", &self.channel)], -1.0);
    }
}

/// A measurement for the metrics, in ms on the call's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    /// `switchboard_turn_stage_seconds{stage}`: from the end of the caller's speech.
    Stage(&'static str, u64),
    /// `switchboard_barge_in_clear_seconds`: from the onset of the voice over the bot.
    BargeInClear(u64),
    /// `switchboard_turn_latency_seconds{path}`: end of speech to first audio, by whether the
    /// turn took the language model's path (`model`) or not (`engine`).
    Latency(&'static str, u64),
}

impl Measure {
    fn record(self) {
        match self {
            Measure::Stage(stage, ms) => {
                metrics::observe(metrics::TURN_STAGE, &[("stage", stage)], metrics::ms(ms))
            }
            Measure::BargeInClear(ms) => {
                metrics::observe(metrics::BARGE_IN_CLEAR, &[], metrics::ms(ms))
            }
            Measure::Latency(path, ms) => {
                metrics::observe(metrics::TURN_LATENCY, &[("path", path)], metrics::ms(ms))
            }
        }
    }
}

/// Each turn's stages on the call's clock, measured from the end of the caller's speech, and
/// barge-in onset to clear. Pure: events, effect results and agent requests in, [`Measure`]s
/// out.
#[derive(Default)]
struct Stages {
    /// When the caller's latest speech ended, until a turn is decided on it.
    speech_end: Option<u64>,
    /// When each recent turn's transcript arrived (a pause's transcript can come first).
    transcripts: VecDeque<(TurnId, u64)>,
    /// The turn being measured, its speech end, and whether its first audio chunk came.
    turn: Option<(TurnId, u64, bool)>,
    /// The measured turn took the language model's path.
    model: bool,
}

impl Stages {
    fn event(&mut self, e: &CallEvent, out: &mut Vec<Measure>) {
        match &e.kind {
            EventKind::CallerSpeechStart { .. } => {
                self.speech_end = None;
            }
            EventKind::CallerSpeechEnd { silence_ms, .. } => {
                self.speech_end = Some(e.t_ms.saturating_sub(*silence_ms));
            }
            // The clear goes out with this event: the sound began `since_ms` before it.
            EventKind::BotPaused { since_ms, .. } => out.push(Measure::BargeInClear(*since_ms)),
            EventKind::BotAudioStart { turn } => {
                if let Some((t, from, _)) = self.turn
                    && t == *turn
                {
                    let ms = e.t_ms.saturating_sub(from);
                    out.push(Measure::Stage("first_audio", ms));
                    out.push(Measure::Latency(
                        if self.model { "model" } else { "engine" },
                        ms,
                    ));
                    self.turn = None;
                }
            }
            _ => {}
        }
    }

    /// The core asks the agent about `turn`: the turn is decided.
    fn asked(&mut self, now: u64, turn: TurnId, said: &Said, out: &mut Vec<Measure>) {
        let Said::Speech { .. } = said else {
            // Keys: no speech to measure from.
            return;
        };
        let Some(from) = self.speech_end.take() else {
            return;
        };
        if let Some(&(_, at)) = self.transcripts.iter().rev().find(|(t, _)| *t == turn) {
            out.push(Measure::Stage("transcript", at.saturating_sub(from)));
        }
        out.push(Measure::Stage("turn_decided", now.saturating_sub(from)));
        self.turn = Some((turn, from, false));
        self.model = false;
    }

    fn done(&mut self, now: u64, d: &Done, out: &mut Vec<Measure>) {
        match d {
            Done::Transcript { turn, .. } => {
                if self.transcripts.len() == 4 {
                    self.transcripts.pop_front();
                }
                self.transcripts.push_back((*turn, now));
            }
            Done::Reply { turn, routing, .. } => {
                if let Some((t, from, _)) = self.turn
                    && t == *turn
                {
                    self.model |= !routing["model"].is_null();
                    out.push(Measure::Stage("agent_answered", now.saturating_sub(from)));
                }
            }
            Done::Clause { turn, .. } if self.turn.is_some_and(|(t, _, _)| t == *turn) => {
                self.model = true;
            }
            Done::Audio { turn, audio, .. } if !audio.is_empty() => {
                if let Some((t, from, first_seen)) = self.turn.as_mut()
                    && *t == *turn
                    && !*first_seen
                {
                    *first_seen = true;
                    out.push(Measure::Stage("first_tts_chunk", now.saturating_sub(*from)));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod stage_tests {
    use super::*;

    fn piece(turn: TurnId, text: &str) -> crate::call::Piece {
        crate::call::Piece {
            turn,
            text: text.into(),
            speech_ms: 100,
        }
    }

    #[test]
    fn the_engine_hears_the_pieces_it_was_never_asked_about_and_takes_back_its_own() {
        // Standing alone.
        assert_eq!(
            unheard_words(&[], 3, "Sure.", 500, None),
            ("Sure.".into(), 500, false, None)
        );
        // "Sure." was asked (turn 1, the engine's last): it is taken back, and the engine adds
        // its words itself.
        let sure = [piece(1, "Sure.")];
        assert_eq!(
            unheard_words(&sure, 1, "ABC", 500, None),
            ("ABC".into(), 500, true, None)
        );
        // "Sure." asked, "ABC" dropped before it was asked (turn 2): the engine takes back
        // "Sure." and hears "ABC" with the new words.
        let both = [piece(1, "Sure."), piece(2, "ABC")];
        assert_eq!(
            unheard_words(&both, 1, "123", 500, None),
            ("ABC 123".into(), 600, true, None)
        );
        // Neither was asked (the engine's last turn came before them): nothing is taken back.
        assert_eq!(
            unheard_words(&both, 0, "123", 500, None),
            ("Sure. ABC 123".into(), 700, false, None)
        );
        // Nothing new (a sound without words): the pieces not asked, or nothing but the
        // take-back.
        assert_eq!(
            unheard_words(&both, 2, "", 0, None),
            (String::new(), 0, true, None)
        );
        // Heard together: asked about none of the pieces, the engine hears the whole
        // transcript instead of their joined words; taking its turn back, it is handed the
        // whole transcript beside the new words, to use if that turn heard every piece.
        let all = Some("Sure, ABC123.");
        assert_eq!(
            unheard_words(&both, 0, "123", 500, all),
            ("Sure, ABC123.".into(), 700, false, None)
        );
        assert_eq!(
            unheard_words(&both, 1, "123", 500, all),
            ("ABC 123".into(), 600, true, all)
        );
    }

    fn ev(t_ms: u64, kind: EventKind) -> CallEvent {
        CallEvent { t_ms, kind }
    }

    fn speech() -> Said {
        Said::Speech {
            text: "confirm my reservation".into(),
            speech_ms: 1500,
            earlier: vec![],
            whole: None,
        }
    }

    #[test]
    fn a_turn_is_measured_from_the_end_of_speech_to_its_first_audio() {
        let mut s = Stages::default();
        let mut out = vec![];
        s.event(
            &ev(1000, EventKind::CallerSpeechStart { since_ms: 80 }),
            &mut out,
        );
        // The pause's transcript of turn 1 arrives 300 ms after the speech ended at 2500 ms.
        s.done(
            2800,
            &Done::Transcript {
                turn: 1,
                text: "confirm my reservation".into(),
                suppressed: None,
                whole: false,
            },
            &mut out,
        );
        s.event(
            &ev(
                2850,
                EventKind::CallerSpeechEnd {
                    duration_ms: 1580,
                    silence_ms: 350,
                },
            ),
            &mut out,
        );
        s.asked(2850, 1, &speech(), &mut out);
        s.done(
            2870,
            &Done::Reply {
                turn: 1,
                text: "Sure.".into(),
                end: None,
                routing: Value::Null,
            },
            &mut out,
        );
        let piece = |turn, n: usize| Done::Audio {
            turn,
            audio: Arc::new(vec![0.0; n]),
            last: false,
        };
        s.done(2900, &piece(0, 160), &mut out); // an older turn's audio: not this one's
        s.done(2960, &piece(1, 0), &mut out); // empty: not audio yet
        s.done(2990, &piece(1, 160), &mut out);
        s.done(3100, &piece(1, 160), &mut out);
        s.event(&ev(3000, EventKind::BotAudioStart { turn: 1 }), &mut out);
        s.event(&ev(3500, EventKind::BotAudioStart { turn: 1 }), &mut out);
        assert_eq!(
            out,
            [
                Measure::Stage("transcript", 300),
                Measure::Stage("turn_decided", 350),
                Measure::Stage("agent_answered", 370),
                Measure::Stage("first_tts_chunk", 490),
                Measure::Stage("first_audio", 500),
                Measure::Latency("engine", 500),
            ]
        );
        // A turn on the model's path: its first clause (a filler) comes before the reply.
        out.clear();
        s.event(
            &ev(
                5000,
                EventKind::CallerSpeechEnd {
                    duration_ms: 900,
                    silence_ms: 400,
                },
            ),
            &mut out,
        );
        s.asked(5000, 2, &speech(), &mut out);
        s.done(
            5700,
            &Done::Clause {
                turn: 2,
                text: "One moment.".into(),
            },
            &mut out,
        );
        s.event(&ev(5900, EventKind::BotAudioStart { turn: 2 }), &mut out);
        assert_eq!(
            out,
            [
                Measure::Stage("turn_decided", 400),
                Measure::Stage("first_audio", 1300),
                Measure::Latency("model", 1300),
            ]
        );
        // The next turn is the engine's again.
        out.clear();
        s.event(
            &ev(
                8000,
                EventKind::CallerSpeechEnd {
                    duration_ms: 900,
                    silence_ms: 400,
                },
            ),
            &mut out,
        );
        s.asked(8000, 3, &speech(), &mut out);
        s.event(&ev(8300, EventKind::BotAudioStart { turn: 3 }), &mut out);
        assert_eq!(out.last(), Some(&Measure::Latency("engine", 700)));
    }

    #[test]
    fn keys_and_stale_speech_are_not_measured_and_barge_in_counts_from_the_onset() {
        let mut s = Stages::default();
        let mut out = vec![];
        s.event(
            &ev(
                2000,
                EventKind::CallerSpeechEnd {
                    duration_ms: 400,
                    silence_ms: 600,
                },
            ),
            &mut out,
        );
        // New speech began: the earlier end is not this turn's.
        s.event(
            &ev(2500, EventKind::CallerSpeechStart { since_ms: 100 }),
            &mut out,
        );
        s.asked(2600, 2, &Said::Keys("0".into()), &mut out);
        s.asked(2700, 3, &speech(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The sound over the bot began 150 ms before its audio was cleared; the earlier
        // speech start (the caller's turn, not over the bot) is not its onset.
        s.event(
            &ev(
                5550,
                EventKind::BotPaused {
                    turn: 1,
                    since_ms: 150,
                },
            ),
            &mut out,
        );
        assert_eq!(out, [Measure::BargeInClear(150)]);
    }
}
