//! THE CORE: one phone call as a pure state machine (sans-I/O, after str0m and quinn-proto).
//!
//! `handle(now_ms, Input)` feeds it caller audio, transcripts, agent replies, synthesised audio,
//! playout marks, DTMF, failed effects, hang-up and timeouts; `poll()` drains what it wants done,
//! typed by who does it: [`WireCmd`] (audio to send, marks, `Clear`), [`Effect`] (transcribe, ask
//! the agent, synthesise, cancel a turn, keep only what was heard), [`CallEvent`] (the timeline)
//! and [`EndAction`] (hang up or transfer). `poll_timeout()` names the next moment it needs
//! `Input::Timeout` (pacing, the keypad timeout); between deadlines only inputs change anything.
//! It never reads a clock, spawns, sleeps or touches a socket or a model: the call session
//! (`runtime::session`) and its drivers do that. The same input sequence gives the same outputs,
//! so a recorded call replays to an identical timeline.
//!
//! Turns are numbered (`TurnId`, a generation counter). A new caller utterance or a barge-in
//! moves to the next turn; results tagged with an older turn are dropped on arrival, which makes
//! cancellation race-free. Hang-up is never dropped.
//!
//! Talking over the bot, in two steps:
//! - **Pause** (`hush_ms`, default 150): as soon as sound over the bot has lasted `hush_ms` — before
//!   the detector has even confirmed it as speech — the bot's audio stops: `Clear`, and nothing more
//!   is sent. The caller stops hearing the bot within a few frames of talking over it.
//! - **Barge-in** (`barge_in_ms`, default 300): speech that goes on this long interrupts the reply:
//!   the queued audio is dropped, the turn is cancelled, and `Interrupted { heard }` carries the
//!   part of the reply the caller heard — up to the last playout mark echoed before the pause
//!   (marks are placed every `mark_every_ms` of audio), mapped onto the reply's words.
//! - **Resume**: sound that ends sooner (a cough, a bump, "mhm": silent for `turn.pause_ms`, or
//!   rejected by the detector) was not an interruption: the reply plays on from the last mark the
//!   caller heard (so up to `mark_every_ms` is repeated; nothing is skipped).
//!
//! Going on: a caller who starts speaking again before the answer to their last words has
//! played `continue_ms` (or before it has started) was pausing, not answering ("Sure." … "J K T
//! 4 …"). Their new words are asked with the words before them ([`Said::Speech`]'s `earlier`:
//! every piece said since they last heard an answer), and the agent takes its unheard answer
//! back (`Engine::hear_continued`). The pieces' audio is also transcribed together with the new
//! utterance's (`join_pieces`): whisper hears a name or a code split by a pause far better whole,
//! so the request waits for that transcript ([`Said::Speech`]'s `whole`).
//!
//! To make that possible the playout queue keeps the audio the caller has not yet heard, not just
//! what is not yet sent. Marks carry an epoch that each pause advances: marks echoed after a
//! `Clear` (Twilio echoes the cleared ones) are counted as not heard.
//!
//! The audio path allocates nothing per frame: the playout queue and the detector's buffers are
//! sized at construction; only a finished utterance is copied out (once per turn, to be
//! transcribed, and once into a reused buffer kept to join the pieces of a caller who goes on).

use crate::turn::{TurnConfig, TurnDetector, TurnEvent, TurnState};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

pub type TurnId = u64;

/// Caller audio enters the core at this rate (the transport decodes and resamples to it).
pub const CALLER_RATE: u32 = 16_000;
/// The end-of-turn model hears at most the last 8 s of the utterance.
pub const END_MODEL_WINDOW: usize = 8 * CALLER_RATE as usize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallConfig {
    pub turn: TurnConfig,
    /// Caller speech must last this long over the bot to interrupt it ("mhm" is shorter).
    pub barge_in_ms: u32,
    /// Sound over the bot lasting this long pauses the bot's audio at once (`Clear`); it
    /// resumes if the sound ends before `barge_in_ms`. 0 = no pause, `Clear` at barge-in only.
    pub hush_ms: u32,
    /// A playout mark after every this much audio: what was heard is known to within it.
    pub mark_every_ms: u32,
    /// Audio is sent at most this far ahead of real time (a bounded lead, not a sleep per frame).
    pub lead_ms: u32,
    /// Bot audio leaves the core at this rate (8000 for telephony).
    pub out_rate: u32,
    /// Longest reply audio the playout queue holds.
    pub max_reply_secs: u32,
    /// Keypad digits are collected until `#` or this long without a new digit.
    pub dtmf_timeout_ms: u32,
    /// When the transcript of a pause (see `turn.pause_ms`) reads as a finished sentence, the
    /// turn ends after this much silence instead of `turn.stop_ms`. 0 = always wait `stop_ms`.
    pub quick_stop_ms: u32,
    /// Caller speech that starts before the bot's answer to their last words has played this
    /// long (or before it has started) goes on with those words instead of answering it: the
    /// agent is asked the two as one utterance ([`Said::Speech`]'s `earlier`) and takes its
    /// unheard answer back. A reply needs the answer's first words heard and then planned (~600
    /// ms before a word comes out), and a phone line delays both ways: speech that reaches the
    /// gateway within a second of the answer's first audio is a caller who paused ("Sure. … A B
    /// C 1 2 3"), not one who replied. 0 = never.
    pub continue_ms: u32,
    /// When a caller goes on, their pieces' audio is also transcribed together, one piece after
    /// the other (each begins with the detector's pre-roll, `turn.pre_roll_ms` of the line
    /// before its speech: that is the pause between them). Whisper hears a name or a code split
    /// by a pause better whole: "It's under the name" + "John Doe" against "Jondo" alone. The
    /// agent is asked once that transcript is in ([`Said::Speech`]'s `whole`). false = each
    /// piece is transcribed alone and only their words are joined.
    pub join_pieces: bool,
    /// Said when an effect fails (see [`EffectKind`]); the session sets it from the template.
    #[serde(skip)]
    pub apology: String,
    /// The end-of-turn model, when the session has one: set by the session, not configured here
    /// (see `[speech.turn_model]`).
    #[serde(skip)]
    pub turn_model: Option<TurnModelConfig>,
    /// The voice check (Silero VAD), when the session runs one: set by the session (see
    /// `[speech.vad]`).
    #[serde(skip)]
    pub voice_check: Option<VoiceCheckConfig>,
}

/// `[speech.vad]`: a voice model (Silero VAD) confirms that sound the energy detector takes for
/// speech is a voice before it starts a turn, pauses the bot or interrupts it. The session runs
/// the model only while the detector hears something ([`Call::wants_voice`]) and hands each
/// 32 ms window's probability to the core ([`Input::Voice`]). Noise, music and coughs then
/// neither start turns nor talk over the bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceCheckConfig {
    /// Run the model (when it is installed); otherwise the energy detector alone decides.
    pub enabled: bool,
    /// A window at or above this probability confirms the sound as a voice.
    pub threshold: f32,
    /// ... and only once the sound has peaked at least this loud (band power of a 10 ms frame,
    /// dBFS): a television or people talking across the room are voices too, but 20–30 dB under
    /// the caller's, whose speech peaks around −10 to −22 dBFS on a phone line.
    pub min_level_dbfs: f32,
}

impl Default for VoiceCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.5,
            min_level_dbfs: -35.0,
        }
    }
}

/// `[speech.turn_model]`: an audio model of "is the caller done?" (Smart Turn) asked at each
/// pause, alongside the speculative transcription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnModelConfig {
    /// Use the model (when it is installed); otherwise a pause's transcript ending a sentence
    /// decides, as without it.
    pub enabled: bool,
    /// At or above this probability the caller is done: the turn ends after `quick_stop_ms`.
    pub threshold: f32,
    /// Below it the caller is still going ("Sure, it's…"): the pause may last this much longer
    /// than `turn.stop_ms` before the turn ends anyway (the silence fallback).
    pub hold_ms: u32,
    /// The same when the pause's transcript reads as a finished sentence all the same ("Yes,
    /// that's right."): the model and the words disagree, so the pause is held for less. Short
    /// enough that a caller who goes on after it does so before the answer has played
    /// `continue_ms`, and is heard whole (`CallConfig::continue_ms`).
    pub doubt_hold_ms: u32,
    /// The model hears a pause once it has lasted this long. It was trained on turns that end
    /// in about 200 ms of silence, and hears less than that as unfinished: "What's my bill this
    /// month?" scored 0.33 after 150 ms of silence and 0.94 after 200. The speculative
    /// transcription may start sooner (`turn.pause_ms`).
    pub listen_ms: u32,
    /// On a quiet line, the model waits up to this long for a transcription running on two
    /// threads to finish, instead of taking one of its threads (whisper's threads spin for each
    /// other, so both would finish later; see `cpu`). The runtime's, not the core's. 0 = never
    /// wait.
    pub wait_decode_ms: u32,
    /// On a busy line (see [`Input::LineBusy`]), a pause is transcribed only once the model
    /// hears the caller done, or once the pause reaches `turn.stop_ms` when it does not (or has
    /// not answered): pauses inside a turn then cost a model pass, not a whisper pass thrown
    /// away when the caller goes on. A finished turn's transcript starts later by the model's
    /// time (`listen_ms` and one pass instead of `turn.busy_pause_ms`).
    pub busy_verdict_first: bool,
}

impl Default for TurnModelConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.5,
            hold_ms: 1400,
            doubt_hold_ms: 300,
            listen_ms: 200,
            wait_decode_ms: 600,
            busy_verdict_first: true,
        }
    }
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            turn: TurnConfig::default(),
            barge_in_ms: 300,
            hush_ms: 150,
            mark_every_ms: 100,
            lead_ms: 200,
            out_rate: 8000,
            max_reply_secs: 60,
            dtmf_timeout_ms: 2000,
            quick_stop_ms: 350,
            continue_ms: 1000,
            join_pieces: true,
            apology: "Sorry, I had a problem on my side. Could you say that again?".into(),
            turn_model: None,
            voice_check: None,
        }
    }
}

/// What the bot does when its last words have played.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndAction {
    Hangup,
    Transfer { to: String },
}

#[derive(Debug)]
pub enum Input<'a> {
    /// Caller audio, 16 kHz mono, any length.
    CallerAudio(&'a [f32]),
    /// The voice model's probability that the caller audio given last (its latest 32 ms
    /// window) is a voice; only counted while [`Call::wants_voice`].
    Voice {
        p: f32,
    },
    /// The final transcript of `turn`'s utterance; empty when nothing usable was heard.
    /// `whole`: of the audio of a `whole` [`Effect::Transcribe`].
    Transcript {
        turn: TurnId,
        text: String,
        whole: bool,
    },
    /// A clause of `turn`'s answer, ready before the rest (a language model's streamed answer):
    /// spoken at once; later clauses and the final [`Input::AgentReply`] (the whole answer, which
    /// begins with the clauses given) continue it.
    AgentClause {
        turn: TurnId,
        text: String,
    },
    /// What the agent answers for `turn` (the greeting is turn 0).
    AgentReply {
        turn: TurnId,
        text: String,
        end: Option<EndAction>,
    },
    /// Synthesised audio for `turn`, at `out_rate`.
    TtsAudio {
        turn: TurnId,
        samples: &'a [f32],
    },
    TtsDone {
        turn: TurnId,
    },
    /// Whether the line (the process's calls) is busy: transcription at a pause then waits for
    /// `turn.busy_pause_ms` instead of `turn.pause_ms`. Not given = quiet.
    LineBusy(bool),
    /// The end-of-turn model's probability that the caller was done at `turn`'s pause.
    EndPrediction {
        turn: TurnId,
        complete: f32,
    },
    /// An effect the core asked for failed (the recogniser, the agent, the synthesiser): see
    /// [`EffectKind`] for what the caller hears.
    EffectFailed {
        turn: TurnId,
        effect: EffectKind,
    },
    /// The transport reports a mark as played (or cleared).
    MarkPlayed {
        id: u64,
    },
    Dtmf(char),
    HangUp,
    /// The deadline [`Call::poll_timeout`] gave has come (pacing, the keypad timeout).
    Timeout,
}

/// Which effect failed, and how the call recovers. Each time the caller hears the apology line
/// (`CallConfig::apology`, from the template) and the call goes on listening:
/// - `Asr`: the turn's words are lost; the apology asks the caller to say them again.
/// - `Agent`: no answer came; the same.
/// - `TurnModel`: nothing is said; the pause's transcript decides as if there were no model.
/// - `Tts`: the reply cannot be spoken; the agent keeps only what the caller heard of it
///   ([`Effect::Interrupted`]) and the apology is spoken instead. If the apology cannot be
///   spoken either, the bot falls silent and listens. A reply that ends the call still ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    Asr,
    Agent,
    Tts,
    TurnModel,
}

impl EffectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectKind::Asr => "asr",
            EffectKind::Agent => "agent",
            EffectKind::Tts => "tts",
            EffectKind::TurnModel => "turn_model",
        }
    }
}

/// What the core wants done, by kind: each driver matches every variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// For the transport (the provider's wire, the browser's peer).
    Wire(WireCmd),
    /// Work to run; results come back as inputs tagged with their turn.
    Effect(Effect),
    /// For the timeline, the logs and the case's audit trail.
    Event(CallEvent),
    /// The call is over once this is done: hang up or transfer.
    End(EndAction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireCmd {
    /// Send the next `samples` of bot audio: copy them out with `Call::take_audio`.
    SendAudio { samples: usize },
    /// Report back (`Input::MarkPlayed`) when the audio sent before this has played.
    Mark { id: u64 },
    /// Drop everything queued at the transport.
    Clear,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Transcribe `audio`; `whole`: it is the pieces the caller said since they last heard an
    /// answer and the utterance of `turn`, joined (see [`CallConfig::join_pieces`]). A whole
    /// transcription that fails comes back as an empty `whole` transcript, never as a failure:
    /// the pieces' own transcripts are there.
    Transcribe {
        turn: TurnId,
        audio: Vec<f32>,
        whole: bool,
    },
    AskAgent {
        turn: TurnId,
        said: Said,
    },
    Synthesize {
        turn: TurnId,
        text: String,
    },
    /// Ask the end-of-turn model whether the caller is done: `audio` is the utterance so far,
    /// its pause included (at most the last 8 s, 16 kHz).
    PredictEnd {
        turn: TurnId,
        audio: Vec<f32>,
    },
    /// Everything still running or queued for `turn` and earlier is stale: drop it.
    CancelTurn {
        turn: TurnId,
    },
    /// The agent's history must keep only `heard` of `turn`'s reply.
    Interrupted {
        turn: TurnId,
        heard: String,
    },
}

/// What the caller gave for a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Words as transcribed, and how long they were spoken; `earlier`: the pieces they go on
    /// with, in order (empty: they stand alone) — what the caller said since they last heard an
    /// answer (see [`CallConfig::continue_ms`]).
    ///
    /// `whole`: when they go on, the transcript of every piece's audio and theirs heard together
    /// (None: not transcribed together, or nothing came of it). It holds the same words as
    /// `earlier` and `text`, heard better: the agent takes it instead of joining their texts
    /// when it can take back everything it heard of `earlier`.
    Speech {
        text: String,
        speech_ms: u64,
        earlier: Vec<Piece>,
        whole: Option<String>,
    },
    /// Keys pressed on the keypad (`0`-`9`, `*`), without the closing `#`.
    Keys(String),
}

/// Words the caller said as one turn, asked of the agent as `turn` (whether or not it was
/// asked before the caller went on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub turn: TurnId,
    pub text: String,
    pub speech_ms: u64,
}

/// The longest words a turn goes on with: past it a new turn stands alone.
pub const MAX_EARLIER_CHARS: usize = 1000;
/// The longest audio transcribed whole (whisper hears 30 s at once): past it, only the pieces'
/// words are joined.
pub const MAX_WHOLE_SAMPLES: usize = 25 * CALLER_RATE as usize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallEvent {
    pub t_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The caller's voice began `since_ms` ago (the detector's onset, before it was sure).
    CallerSpeechStart {
        since_ms: u64,
    },
    /// The voice model confirmed the sound being heard as a voice.
    VoiceConfirmed,
    /// The caller's turn of `duration_ms` of speech ended `silence_ms` ago (the silence the
    /// detector waited for).
    CallerSpeechEnd {
        duration_ms: u64,
        silence_ms: u64,
    },
    CallerNoise {
        duration_ms: u64,
    },
    Backchannel {
        duration_ms: u64,
    },
    Transcript {
        turn: TurnId,
        text: String,
    },
    /// `turn`'s words go on with the caller's words asked as `earlier` and after, whose answer
    /// they had not heard: the agent hears them as one utterance.
    Continues {
        turn: TurnId,
        earlier: TurnId,
    },
    TranscriptDropped {
        turn: TurnId,
    },
    /// The caller paused: the speech so far is being transcribed before the turn is over.
    Tentative {
        turn: TurnId,
    },
    /// The caller went on after a pause: the tentative transcript is dropped.
    TentativeDropped {
        turn: TurnId,
    },
    /// The end-of-turn model's verdict on a pause (probability the caller was done).
    EndPredicted {
        turn: TurnId,
        complete: f32,
    },
    BotReply {
        turn: TurnId,
        text: String,
    },
    BotAudioStart {
        turn: TurnId,
    },
    BotAudioEnd {
        turn: TurnId,
    },
    /// Sound over the bot: its audio stopped (`Clear`) until the sound proves an interruption.
    /// The sound began `since_ms` ago.
    BotPaused {
        turn: TurnId,
        since_ms: u64,
    },
    /// The sound over the bot ended without interrupting it: playout goes on from `from_ms` into
    /// the reply (the last mark the caller heard).
    BotResumed {
        turn: TurnId,
        from_ms: u64,
    },
    BargeIn {
        turn: TurnId,
        heard: String,
    },
    Dtmf {
        digit: char,
    },
    /// Keys the caller pressed, given to the agent as `turn`.
    Keys {
        turn: TurnId,
        keys: String,
    },
    /// An effect of `turn` failed; the apology follows.
    EffectFailed {
        turn: TurnId,
        effect: EffectKind,
    },
    HangUp,
    CallEnd,
}

/// The reply being spoken.
struct Playout {
    turn: TurnId,
    text: String,
    /// Samples synthesised so far / in total once [`Playout::done`].
    synthesised: u64,
    /// Samples handed to the transport (since the last pause: rewound to `heard` by a pause).
    sent: u64,
    /// Sample offset up to which the caller has heard (last echoed mark).
    heard: u64,
    next_mark_at: u64,
    /// Paused by sound over the bot: nothing is sent until it resumes or is interrupted.
    paused: bool,
    /// Advanced by every pause; marks of an older epoch were cleared, not heard.
    epoch: u8,
    started_ms: Option<u64>,
    /// When its first audio was sent (not moved by a resume).
    first_audio_ms: Option<u64>,
    end: Option<EndAction>,
    ended: bool,
    /// The call's own words (the apology), not the agent's: the agent hears nothing of them.
    own: bool,
    /// More clauses may come (the agent's answer is streamed and not yet whole).
    open: bool,
    /// Synthesis requests not yet done: the text is all synthesised when none is and the
    /// answer is whole.
    synthesising: u32,
}

impl Playout {
    /// All of the reply is synthesised: it is whole and no synthesis is left.
    fn done(&self) -> bool {
        !self.open && self.synthesising == 0
    }
}

pub struct Call {
    cfg: CallConfig,
    detector: TurnDetector,
    events_buf: Vec<TurnEvent>,
    outputs: VecDeque<Output>,
    /// The reply's audio from `base` (the caller has heard everything before it) on: sent but
    /// not yet heard (`taken` samples), then waiting to be sent (bounded, preallocated).
    queue: VecDeque<f32>,
    queue_cap: usize,
    /// Reply sample offset of `queue[0]`.
    base: u64,
    /// Samples at the front of `queue` the driver has taken (sent, not yet heard).
    taken: usize,
    /// Queued samples after `taken` announced by `SendAudio` but not yet taken by the driver.
    announced: usize,
    turn: TurnId,
    playout: Option<Playout>,
    /// Caller speech that started while the bot was talking (sample index), if any.
    overlap_start: Option<u64>,
    /// The voice model confirmed the sound the detector is hearing (reset when it goes quiet).
    voiced: bool,
    /// A speech start the detector reported before the voice model confirmed it (its onset).
    unvoiced_start: Option<u64>,
    dtmf: String,
    dtmf_last_ms: u64,
    ended: bool,
    now_ms: u64,
    /// A turn transcribed at a pause, not yet over.
    tentative: Option<Tentative>,
    /// A fresh turn id taken when a tentative turn was dropped: nothing was asked under it, and
    /// the next utterance to pause or end uses it, if the turn has not moved on since (DTMF).
    reserved: Option<TurnId>,
    /// How long the utterance being transcribed was spoken.
    speech_ms: Option<u64>,
    /// The pieces the caller said since they last heard an answer, in order: the last is the
    /// one the agent was last asked about.
    asked: Vec<Piece>,
    /// The utterance being spoken began before the caller heard the answer to `asked`.
    continuing: bool,
    /// The audio of `asked`'s pieces and of the utterance last sent to be transcribed.
    pieces_audio: PiecesAudio,
    /// The whole transcription of the current turn, once asked for: its text when in.
    whole: Option<(TurnId, Option<String>)>,
    /// A request that waits for the whole transcript of its turn.
    parked: Option<(TurnId, Said)>,
}

/// The audio of the pieces a caller said since they last heard an answer, one after the other,
/// then the utterance last sent to be transcribed (of turn `tail`), which becomes a piece if it
/// is asked: [`Effect::Transcribe`]'s `whole` hears all of it. One buffer, reused.
#[derive(Default)]
struct PiecesAudio {
    audio: Vec<f32>,
    /// Where the pieces end in `audio`.
    pieces: usize,
    tail: Option<TurnId>,
    /// A piece's audio is missing (or they grew past [`MAX_WHOLE_SAMPLES`]): nothing is
    /// transcribed together until the pieces are forgotten.
    broken: bool,
}

/// The speech before a pause, transcribed speculatively (`turn` was allocated for it).
struct Tentative {
    turn: TurnId,
    /// Where the speech paused (sample position).
    end: u64,
    start: u64,
    text: Option<String>,
    /// Its transcription failed: the apology is said when the turn ends.
    failed: bool,
    /// The end-of-turn model's verdict: `Some(true)` done, `Some(false)` still going, `None`
    /// not in yet (or no model, or it failed: then the transcript decides).
    done: Option<bool>,
    /// Waiting for the model's verdict.
    asked: bool,
    /// The pause's audio went to the model (once the pause is `listen_ms` long).
    sent: bool,
    /// Its transcription has started. Not yet when the line is busy and the model has not
    /// heard the caller done (`busy_verdict_first`).
    transcribing: bool,
}

impl Call {
    pub fn new(cfg: CallConfig) -> Self {
        let queue_cap = (cfg.max_reply_secs.max(1) * cfg.out_rate) as usize;
        Self {
            detector: TurnDetector::new(cfg.turn.clone(), CALLER_RATE),
            events_buf: Vec::with_capacity(8),
            outputs: VecDeque::with_capacity(64),
            queue: VecDeque::with_capacity(queue_cap),
            queue_cap,
            base: 0,
            taken: 0,
            announced: 0,
            turn: 0,
            playout: None,
            overlap_start: None,
            voiced: false,
            unvoiced_start: None,
            dtmf: String::with_capacity(16),
            dtmf_last_ms: 0,
            ended: false,
            now_ms: 0,
            tentative: None,
            reserved: None,
            speech_ms: None,
            asked: Vec::new(),
            continuing: false,
            pieces_audio: PiecesAudio::default(),
            whole: None,
            parked: None,
            cfg,
        }
    }

    pub fn config(&self) -> &CallConfig {
        &self.cfg
    }

    /// The current turn: results for any other are stale.
    pub fn turn(&self) -> TurnId {
        self.turn
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether the session should run the voice model on the caller audio it just gave: there is
    /// one, and the detector hears something (the model's state is fresh at each onset).
    pub fn wants_voice(&self) -> bool {
        self.cfg.voice_check.is_some() && self.detector.state() != TurnState::Quiet
    }

    /// Whether the sound being heard counts as a voice: confirmed by the voice model, or there
    /// is no model.
    fn is_voice(&self) -> bool {
        self.voiced || self.cfg.voice_check.is_none()
    }

    /// Whether the bot is talking (audio queued, in flight, or still being synthesised).
    pub fn bot_speaking(&self) -> bool {
        self.playout.as_ref().is_some_and(|p| !p.ended)
    }

    /// When the core next needs [`Input::Timeout`] (ms on the call's clock), if ever: the next
    /// frame of queued bot audio to pace out, or the keypad timeout. Between deadlines only
    /// inputs change anything, so a driver sleeps until this or its next input, whichever is
    /// first. A deadline in the past means "now".
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.ended {
            return None;
        }
        let mut next =
            (!self.dtmf.is_empty()).then(|| self.dtmf_last_ms + self.cfg.dtmf_timeout_ms as u64);
        if let Some(p) = self.playout.as_ref().filter(|p| !p.ended && !p.paused)
            && let Some(started) = p.started_ms
        {
            let rate = self.cfg.out_rate as u64;
            let queued = (self.queue.len() - self.taken - self.announced) as u64;
            let frame = rate / 50;
            let n = if queued >= frame {
                frame
            } else if p.done() {
                queued
            } else {
                0
            };
            if n > 0 {
                // `pace` sends the next n once (t - started + lead) * rate / 1000 >= sent + n.
                let at = (started + ((p.sent + n) * 1000).div_ceil(rate))
                    .saturating_sub(self.cfg.lead_ms as u64)
                    .max(self.now_ms);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Copies the next queued bot samples into `out` (after `Output::SendAudio`).
    pub fn take_audio(&mut self, out: &mut [f32]) -> usize {
        let n = out
            .len()
            .min(self.announced)
            .min(self.queue.len() - self.taken);
        for (dst, src) in out
            .iter_mut()
            .zip(self.queue.range(self.taken..self.taken + n))
        {
            *dst = *src;
        }
        self.taken += n;
        self.announced -= n;
        n
    }

    /// Empties the playout queue (a new reply, an interruption, the end of the call).
    fn reset_queue(&mut self) {
        self.queue.clear();
        self.base = 0;
        self.taken = 0;
        self.announced = 0;
    }

    pub fn handle(&mut self, now_ms: u64, input: Input<'_>) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.ended {
            return;
        }
        match input {
            Input::CallerAudio(samples) => self.caller_audio(samples),
            Input::Voice { p } => self.voice(p),
            Input::Transcript { turn, text, whole } => {
                if turn != self.turn {
                    return;
                }
                if whole {
                    self.whole_transcript(turn, text);
                    return;
                }
                if let Some(t) = self.tentative.as_mut().filter(|t| t.turn == turn) {
                    // The caller may still go on: hold the text until the turn is over.
                    t.text = Some(text.trim().to_string());
                    self.hold_unfinished();
                    self.quick_stop();
                    return;
                }
                let text = text.trim().to_string();
                let speech_ms = self.speech_ms.unwrap_or(0);
                self.ask_speech(turn, text, speech_ms);
            }
            Input::LineBusy(busy) => self.detector.set_busy(busy),
            Input::EndPrediction { turn, complete } => {
                let Some(m) = self.cfg.turn_model.clone() else {
                    return;
                };
                let Some(t) = self
                    .tentative
                    .as_mut()
                    .filter(|t| t.turn == turn && turn == self.turn)
                else {
                    return;
                };
                let done = complete >= m.threshold;
                t.done = Some(done);
                t.asked = false;
                self.event(EventKind::EndPredicted {
                    turn,
                    complete: (complete * 1000.0).round() / 1000.0,
                });
                if done {
                    self.transcribe_pause();
                }
                self.transcribe_held();
                self.hold_unfinished();
                self.quick_stop();
            }
            Input::AgentClause { turn, text } => {
                if turn != self.turn {
                    // Stale: its final reply says what the agent keeps.
                    return;
                }
                if self
                    .playout
                    .as_ref()
                    .is_some_and(|p| p.turn == turn && (p.ended || !p.open))
                {
                    // Interrupted (or whole already): the rest is not said.
                    return;
                }
                self.event(EventKind::BotReply {
                    turn,
                    text: text.clone(),
                });
                match self.playout.as_mut().filter(|p| p.turn == turn) {
                    Some(p) => {
                        p.text.push(' ');
                        p.text.push_str(&text);
                        p.synthesising += 1;
                        self.effect(Effect::Synthesize { turn, text });
                    }
                    None => {
                        self.speak(turn, text, None, false);
                        if let Some(p) = self.playout.as_mut() {
                            p.open = true;
                        }
                    }
                }
            }
            Input::AgentReply { turn, text, end } => {
                if let Some(p) = self
                    .playout
                    .as_mut()
                    .filter(|p| p.turn == turn && turn == self.turn && p.open)
                {
                    // The streamed answer is whole: what was not yet given as clauses follows.
                    p.open = false;
                    let rest = text
                        .strip_prefix(p.text.as_str())
                        .map(str::trim)
                        .unwrap_or_default()
                        .to_string();
                    if p.ended {
                        return;
                    }
                    p.end = end;
                    if !rest.is_empty() {
                        p.text.push(' ');
                        p.text.push_str(&rest);
                        p.synthesising += 1;
                        self.event(EventKind::BotReply {
                            turn,
                            text: rest.clone(),
                        });
                        self.effect(Effect::Synthesize { turn, text: rest });
                    }
                    self.pace();
                    self.check_finished();
                    return;
                }
                if turn != self.turn {
                    if turn < self.turn {
                        // The caller moved on before this answer came: it is never spoken, and
                        // the agent must not remember it as said.
                        self.effect(Effect::Interrupted {
                            turn,
                            heard: String::new(),
                        });
                    }
                    return;
                }
                self.event(EventKind::BotReply {
                    turn,
                    text: text.clone(),
                });
                self.speak(turn, text, end, false);
            }
            Input::EffectFailed { turn, effect } => self.effect_failed(turn, effect),
            Input::TtsAudio { turn, samples } => {
                let Some(p) = self
                    .playout
                    .as_mut()
                    .filter(|p| p.turn == turn && turn == self.turn)
                else {
                    return;
                };
                let room = self.queue_cap - self.queue.len();
                let take = samples.len().min(room);
                self.queue.extend(&samples[..take]);
                p.synthesised += take as u64;
                self.pace();
            }
            Input::TtsDone { turn } => {
                if let Some(p) = self
                    .playout
                    .as_mut()
                    .filter(|p| p.turn == turn && turn == self.turn)
                {
                    p.synthesising = p.synthesising.saturating_sub(1);
                }
                self.pace();
                self.check_finished();
            }
            Input::MarkPlayed { id } => {
                let (turn, epoch, offset) = split_mark(id);
                if let Some(p) = self
                    .playout
                    .as_mut()
                    .filter(|p| p.turn == turn && turn == self.turn && p.epoch == epoch)
                {
                    p.heard = p.heard.max(offset);
                    // Heard audio is never replayed: drop it from the queue.
                    let done = (p.heard.saturating_sub(self.base) as usize).min(self.taken);
                    self.queue.drain(..done);
                    self.base += done as u64;
                    self.taken -= done;
                }
                self.check_finished();
            }
            Input::Dtmf(d) => self.dtmf(d),
            Input::HangUp => {
                self.event(EventKind::HangUp);
                if self.bot_speaking() || self.turn > 0 {
                    self.effect(Effect::CancelTurn { turn: self.turn });
                }
                self.finish_call();
            }
            Input::Timeout => {
                self.pace();
                if !self.dtmf.is_empty()
                    && self.now_ms.saturating_sub(self.dtmf_last_ms)
                        >= self.cfg.dtmf_timeout_ms as u64
                {
                    self.flush_dtmf();
                }
                self.check_finished();
            }
        }
    }

    fn caller_audio(&mut self, samples: &[f32]) {
        self.events_buf.clear();
        self.detector.push(samples, &mut self.events_buf);
        for i in 0..self.events_buf.len() {
            match self.events_buf[i] {
                TurnEvent::SpeechStart { at } => {
                    if self.is_voice() {
                        self.speech_started(at);
                    } else {
                        self.unvoiced_start = Some(at);
                    }
                }
                TurnEvent::SpeechEnd { start, end, .. } => {
                    self.overlap_start = None;
                    self.unvoiced_start = None;
                    let duration_ms = (end - start) * 1000 / CALLER_RATE as u64;
                    if !self.is_voice() {
                        // Sound the voice model never took for a voice: noise, not a turn.
                        self.event(EventKind::CallerNoise { duration_ms });
                        continue;
                    }
                    let silence_ms =
                        self.detector.position().saturating_sub(end) * 1000 / CALLER_RATE as u64;
                    self.event(EventKind::CallerSpeechEnd {
                        duration_ms,
                        silence_ms,
                    });
                    if let Some(t) = self.tentative.take() {
                        if t.turn == self.turn && t.end == end {
                            if t.transcribing {
                                self.commit(t);
                                continue;
                            }
                            // Deferred and never transcribed (no verdict, or "still going"):
                            // the turn is over and keeps its id, transcribed whole below.
                            self.reserved = Some(t.turn);
                        } else {
                            self.event(EventKind::TentativeDropped { turn: t.turn });
                        }
                    }
                    if self.bot_speaking() {
                        // Over the bot and too short to interrupt it ("mhm", "right"): a
                        // backchannel. The bot goes on; it is not a turn.
                        self.event(EventKind::Backchannel { duration_ms });
                        continue;
                    }
                    self.next_turn();
                    self.speech_ms = Some(duration_ms);
                    let audio = self.detector.utterance().to_vec();
                    self.transcribe(self.turn, audio);
                }
                TurnEvent::Discarded { start, end } => {
                    self.overlap_start = None;
                    self.unvoiced_start = None;
                    self.event(EventKind::CallerNoise {
                        duration_ms: (end - start) * 1000 / CALLER_RATE as u64,
                    });
                }
                TurnEvent::Pause { start, end } => {
                    // Only a caller's turn is transcribed early; speech over the bot is a
                    // barge-in or a backchannel, decided by the rules below.
                    if self.bot_speaking() || self.tentative.is_some() || !self.is_voice() {
                        continue;
                    }
                    self.next_turn();
                    self.event(EventKind::Tentative { turn: self.turn });
                    let asked = self.cfg.turn_model.is_some();
                    let defer = self.detector.is_busy()
                        && self
                            .cfg
                            .turn_model
                            .as_ref()
                            .is_some_and(|m| m.busy_verdict_first);
                    self.tentative = Some(Tentative {
                        turn: self.turn,
                        end,
                        start,
                        text: None,
                        failed: false,
                        done: None,
                        asked,
                        sent: false,
                        transcribing: false,
                    });
                    if !defer {
                        self.transcribe_pause();
                    }
                    self.predict_end();
                }
                TurnEvent::Resume => {
                    if let Some(t) = self.tentative.take() {
                        // The turn goes on: its early transcript, still on its way, is stale.
                        // The turn moves on now (so that transcript is dropped on arrival like
                        // any stale result); the utterance takes the new id when it pauses or ends.
                        self.effect(Effect::CancelTurn { turn: t.turn });
                        self.turn += 1;
                        self.reserved = Some(self.turn);
                        self.event(EventKind::TentativeDropped { turn: t.turn });
                    }
                }
            }
        }
        if self.detector.state() == TurnState::Quiet {
            self.voiced = false;
            self.unvoiced_start = None;
        }
        self.transcribe_held();
        self.predict_end();
        self.quick_stop();
        self.talk_over();
    }

    /// Starts transcribing the current tentative turn's speech up to its pause, once.
    fn transcribe_pause(&mut self) {
        let Some(t) = self
            .tentative
            .as_mut()
            .filter(|t| !t.transcribing && t.turn == self.turn)
        else {
            return;
        };
        t.transcribing = true;
        let (turn, end) = (t.turn, t.end);
        let audio = self.detector.utterance_until(end).to_vec();
        self.transcribe(turn, audio);
    }

    /// Transcribes the utterance of `turn`, and, when it goes on with pieces whose answer the
    /// caller has not heard, the pieces' audio and its own together (`join_pieces`). Its audio
    /// is kept after the pieces' (copied into a buffer that is reused) to join them if it is
    /// asked.
    fn transcribe(&mut self, turn: TurnId, audio: Vec<f32>) {
        self.whole = None;
        let p = &mut self.pieces_audio;
        p.audio.truncate(p.pieces);
        p.tail = None;
        if self.cfg.join_pieces && p.pieces + audio.len() <= MAX_WHOLE_SAMPLES {
            p.audio.extend_from_slice(&audio);
            p.tail = Some(turn);
        }
        let joins = self.continuing && !self.asked.is_empty() && p.pieces > 0 && !p.broken;
        let whole = (joins && p.tail.is_some()).then(|| p.audio.clone());
        self.effect(Effect::Transcribe {
            turn,
            audio,
            whole: false,
        });
        if let Some(audio) = whole {
            self.whole = Some((turn, None));
            self.effect(Effect::Transcribe {
                turn,
                audio,
                whole: true,
            });
        }
    }

    /// The whole transcript of `turn` (the current turn) is in: a request waiting for it goes.
    fn whole_transcript(&mut self, turn: TurnId, text: String) {
        let Some(w) = self.whole.as_mut().filter(|w| w.0 == turn) else {
            return;
        };
        let text = text.trim().to_string();
        w.1 = Some(text.clone());
        let Some((t, mut said)) = self.parked.take() else {
            return;
        };
        if t != turn {
            return;
        }
        if let Said::Speech { whole, .. } = &mut said {
            *whole = (!text.is_empty()).then_some(text);
        }
        self.effect(Effect::AskAgent { turn, said });
    }

    /// Forgets the pieces said since the caller last heard an answer: what comes next stands
    /// alone.
    fn forget_pieces(&mut self) {
        self.asked.clear();
        let p = &mut self.pieces_audio;
        p.audio.drain(..p.pieces);
        p.pieces = 0;
        p.broken = false;
    }

    /// A deferred pause the model heard as unfinished is transcribed once it reaches
    /// `turn.stop_ms` (where the turn would end without the hold): the hold's length then
    /// depends on whether its transcript reads as a finished sentence.
    fn transcribe_held(&mut self) {
        let stop = self.detector.config().stop_ms as u64 * CALLER_RATE as u64 / 1000;
        let position = self.detector.position();
        let due = self.tentative.as_ref().is_some_and(|t| {
            !t.transcribing
                && t.done == Some(false)
                && self.detector.state() == TurnState::Stopping
                && position.saturating_sub(t.end) >= stop
        });
        if due {
            self.transcribe_pause();
        }
    }

    /// Sends the pause's audio (its last [`END_MODEL_WINDOW`] samples) to the end-of-turn model
    /// once the pause has lasted `listen_ms`, if it is still the current tentative turn's.
    fn predict_end(&mut self) {
        let Some(m) = self.cfg.turn_model.as_ref() else {
            return;
        };
        let listen = m.listen_ms as u64 * CALLER_RATE as u64 / 1000;
        let position = self.detector.position();
        let Some(t) = self.tentative.as_mut().filter(|t| {
            t.asked && !t.sent && t.turn == self.turn && position.saturating_sub(t.end) >= listen
        }) else {
            return;
        };
        if self.detector.state() != TurnState::Stopping {
            return;
        }
        t.sent = true;
        let turn = t.turn;
        let utt = self.detector.utterance();
        let keep = utt.len().min(END_MODEL_WINDOW);
        let audio = utt[utt.len() - keep..].to_vec();
        self.effect(Effect::PredictEnd { turn, audio });
    }

    /// The detector confirmed speech with its onset at `at` (and it is a voice).
    fn speech_started(&mut self, at: u64) {
        let since_ms = self.detector.position().saturating_sub(at) * 1000 / CALLER_RATE as u64;
        self.event(EventKind::CallerSpeechStart { since_ms });
        self.continuing = self.answer_unheard(self.now_ms.saturating_sub(since_ms));
        if self.bot_speaking() {
            self.overlap_start = Some(at);
        }
    }

    /// The voice model's verdict on the latest window: a voice confirms the sound the detector
    /// is hearing, and a speech start held back for it happens now (with its real onset).
    fn voice(&mut self, p: f32) {
        let Some(check) = &self.cfg.voice_check else {
            return;
        };
        if self.voiced
            || self.detector.state() == TurnState::Quiet
            || p.is_nan()
            || p < check.threshold
            || self.detector.sound_peak_db() < f64::from(check.min_level_dbfs)
        {
            return;
        }
        self.voiced = true;
        self.event(EventKind::VoiceConfirmed);
        if let Some(at) = self.unvoiced_start.take() {
            self.speech_started(at);
        }
        self.talk_over();
    }

    /// Sound over the bot: pause it, resume it, or interrupt it (see the module docs).
    fn talk_over(&mut self) {
        self.pause_or_resume();
        if let Some(start) = self.overlap_start
            && self.bot_speaking()
            && self.detector.state() == TurnState::Speaking
            && self.detector.position().saturating_sub(start)
                >= self.cfg.barge_in_ms as u64 * CALLER_RATE as u64 / 1000
        {
            self.overlap_start = None;
            self.barge_in();
        }
    }

    /// Moves to a new turn for the utterance that just paused or ended (the reserved one if any),
    /// cancelling whatever the previous turn still has in flight.
    fn next_turn(&mut self) {
        if self.reserved.take() == Some(self.turn) {
            return;
        }
        let stale = self.turn;
        self.turn += 1;
        if stale > 0 {
            self.effect(Effect::CancelTurn { turn: stale });
        }
    }

    /// The turn transcribed at a pause is over: act on its transcript (now, or when it arrives
    /// through the ordinary `Transcript` path, the turn id being current).
    fn commit(&mut self, t: Tentative) {
        if t.failed {
            self.apologise(t.turn, EffectKind::Asr);
            return;
        }
        let Some(text) = t.text else { return };
        let speech_ms = (t.end - t.start) * 1000 / CALLER_RATE as u64;
        self.ask_speech(t.turn, text, speech_ms);
    }

    /// The caller's utterance of `turn` is over and transcribed: the agent is asked about it,
    /// together with the words before it when it went on with them (`continuing`). An empty
    /// transcript (a sound whisper found no words in) asks nothing, unless it went on with
    /// words whose answer it cancelled: those are asked again, alone.
    fn ask_speech(&mut self, turn: TurnId, text: String, speech_ms: u64) {
        let chars: usize = self.asked.iter().map(|p| p.text.len()).sum();
        let goes_on = std::mem::take(&mut self.continuing)
            && !self.asked.is_empty()
            && chars + text.len() < MAX_EARLIER_CHARS;
        if text.is_empty() {
            self.event(EventKind::TranscriptDropped { turn });
            if !goes_on {
                return;
            }
        } else {
            self.event(EventKind::Transcript {
                turn,
                text: text.clone(),
            });
        }
        let earlier = if goes_on {
            self.event(EventKind::Continues {
                turn,
                earlier: self.asked[0].turn,
            });
            self.asked.clone()
        } else {
            self.forget_pieces();
            Vec::new()
        };
        self.asked.push(Piece {
            turn,
            text: text.clone(),
            speech_ms,
        });
        self.keep_piece_audio(turn);
        // Going on with a whole transcription under way: the request waits for it.
        let whole = match self.whole.as_ref().filter(|w| w.0 == turn && goes_on) {
            Some((_, None)) => {
                let said = Said::Speech {
                    text,
                    speech_ms,
                    earlier,
                    whole: None,
                };
                self.parked = Some((turn, said));
                return;
            }
            Some((_, Some(w))) if !w.is_empty() => Some(w.clone()),
            _ => None,
        };
        self.effect(Effect::AskAgent {
            turn,
            said: Said::Speech {
                text,
                speech_ms,
                earlier,
                whole,
            },
        });
    }

    /// The piece just asked as `turn` joins the pieces' audio (it is the kept utterance, if
    /// that is `turn`'s; otherwise the pieces cannot be joined).
    fn keep_piece_audio(&mut self, turn: TurnId) {
        let p = &mut self.pieces_audio;
        if p.tail.take() == Some(turn) {
            p.pieces = p.audio.len();
        } else {
            p.broken = true;
        }
    }

    /// Whether speech that began at `onset_ms` came before the caller could have heard the
    /// answer to their last words: that answer has not started playing, or began playing less
    /// than `continue_ms` before. An answer that played to its end, or the call's own apology,
    /// was heard.
    fn answer_unheard(&self, onset_ms: u64) -> bool {
        let Some(last) = self.asked.last().map(|p| p.turn) else {
            return false;
        };
        if self.cfg.continue_ms == 0 {
            return false;
        }
        match self.playout.as_ref().filter(|p| p.turn == last) {
            None => true,
            Some(p) if p.own => false,
            Some(p) if p.ended && p.heard >= p.synthesised && p.done() => false,
            Some(p) => p
                .first_audio_ms
                .is_none_or(|t| onset_ms < t + u64::from(self.cfg.continue_ms)),
        }
    }

    /// When the end-of-turn model heard an unfinished turn at this pause, lets the pause last
    /// longer before it ends the turn: `hold_ms`, or `doubt_hold_ms` once the transcript reads
    /// as a finished sentence. Set again as each result arrives (the model usually answers
    /// before whisper).
    fn hold_unfinished(&mut self) {
        let (Some(m), Some(t)) = (self.cfg.turn_model.as_ref(), self.tentative.as_ref()) else {
            return;
        };
        if t.turn != self.turn || t.done != Some(false) {
            return;
        }
        let finished = t.text.as_deref().is_some_and(reads_finished);
        let ms = if finished { m.doubt_hold_ms } else { m.hold_ms };
        self.detector.hold_pause(ms);
    }

    /// Ends the turn after `quick_stop_ms` of silence instead of `stop_ms` when the pause's
    /// transcript reads as a finished sentence.
    fn quick_stop(&mut self) {
        let quick = self.cfg.quick_stop_ms as u64 * CALLER_RATE as u64 / 1000;
        let ready = self.tentative.as_ref().is_some_and(|t| {
            // The model's verdict when there is one; without it (none, failed) the transcript's.
            // A transcript that clearly goes on ("No, …", "and") vetoes the model's "done": the
            // turn then ends at `stop_ms` as usual.
            let finished = match t.done {
                Some(done) => done && t.text.as_deref().is_some_and(|x| !reads_unfinished(x)),
                None => !t.asked && t.text.as_deref().is_some_and(reads_finished),
            };
            quick > 0
                && t.turn == self.turn
                && finished
                && self.detector.state() == TurnState::Stopping
                && self.detector.position().saturating_sub(t.end) >= quick
        });
        if !ready {
            return;
        }
        let Some(t) = self.tentative.take() else {
            return;
        };
        if self.detector.end_at_pause() != Some((t.start, t.end)) {
            self.event(EventKind::TentativeDropped { turn: t.turn });
            return;
        }
        let duration_ms = (t.end - t.start) * 1000 / CALLER_RATE as u64;
        let silence_ms = self.detector.position().saturating_sub(t.end) * 1000 / CALLER_RATE as u64;
        self.event(EventKind::CallerSpeechEnd {
            duration_ms,
            silence_ms,
        });
        self.commit(t);
    }

    /// Pauses the bot's audio once sound over it has lasted `hush_ms`; resumes it when that
    /// sound is gone without having become a barge-in (see the module docs).
    fn pause_or_resume(&mut self) {
        let hush = self.cfg.hush_ms as u64 * CALLER_RATE as u64 / 1000;
        let position = self.detector.position();
        let onset = self.detector.sound_onset();
        let voice = self.is_voice();
        let Some(p) = self.playout.as_mut().filter(|p| !p.ended) else {
            return;
        };
        if !p.paused {
            if hush > 0
                && voice
                && p.started_ms.is_some()
                && onset.is_some_and(|at| position.saturating_sub(at) >= hush)
            {
                // Rewind to what the caller has heard; the rest is sent again on resume.
                p.paused = true;
                p.epoch = p.epoch.wrapping_add(1);
                p.sent = self.base;
                p.next_mark_at = self.base;
                let turn = p.turn;
                let since_ms = onset.map_or(0, |at| {
                    position.saturating_sub(at) * 1000 / CALLER_RATE as u64
                });
                self.taken = 0;
                self.announced = 0;
                self.drop_pending_audio();
                self.wire(WireCmd::Clear);
                self.event(EventKind::BotPaused { turn, since_ms });
            }
            return;
        }
        // Silent for the pause (`pause_ms`, or `busy_pause_ms` on a busy line: Stopping past
        // it) or the sound was rejected (Quiet).
        let pause = self.detector.pause_samples();
        let gone = match self.detector.state() {
            TurnState::Quiet => true,
            TurnState::Stopping => {
                pause > 0 && position.saturating_sub(self.detector.silence_start()) >= pause
            }
            TurnState::Starting | TurnState::Speaking => false,
        };
        if gone {
            p.paused = false;
            // Pacing restarts as if the heard part had just played.
            let rate = self.cfg.out_rate as u64;
            p.started_ms = Some(self.now_ms.saturating_sub(p.sent * 1000 / rate));
            let (turn, from_ms) = (p.turn, p.sent * 1000 / rate);
            self.event(EventKind::BotResumed { turn, from_ms });
            self.pace();
        }
    }

    /// Drops `SendAudio`/`Mark` outputs not yet polled: their audio is no longer to be sent.
    fn drop_pending_audio(&mut self) {
        self.outputs.retain(|o| {
            !matches!(
                o,
                Output::Wire(WireCmd::SendAudio { .. } | WireCmd::Mark { .. })
            )
        });
    }

    fn barge_in(&mut self) {
        let Some(p) = self.playout.as_mut() else {
            return;
        };
        let heard = heard_words(
            &p.text,
            p.heard,
            if p.done() {
                p.synthesised
            } else {
                p.synthesised.max(p.sent)
            },
        );
        let turn = p.turn;
        let already_cleared = p.paused;
        let own = p.own;
        p.ended = true;
        p.end = None;
        self.reset_queue();
        if !already_cleared {
            self.drop_pending_audio();
            self.wire(WireCmd::Clear);
        }
        self.effect(Effect::CancelTurn { turn });
        if !own {
            self.effect(Effect::Interrupted {
                turn,
                heard: heard.clone(),
            });
        }
        self.event(EventKind::BargeIn { turn, heard });
        // Results still on their way for the interrupted turn are stale from now on.
        self.turn += 1;
    }

    /// Sends audio up to `lead_ms` ahead of real time, with a mark every `mark_every_ms`.
    fn pace(&mut self) {
        let rate = self.cfg.out_rate as u64;
        let frame = rate / 50;
        let mark_every = (self.cfg.mark_every_ms as u64 * rate / 1000).max(1);
        let now = self.now_ms;
        let Some(p) = self.playout.as_mut().filter(|p| !p.ended && !p.paused) else {
            return;
        };
        if self.queue.len() == self.taken + self.announced {
            return;
        }
        let first = p.started_ms.is_none();
        let started = *p.started_ms.get_or_insert(now);
        if first {
            p.first_audio_ms = Some(now);
            let turn = p.turn;
            self.outputs.push_back(Output::Event(CallEvent {
                t_ms: now,
                kind: EventKind::BotAudioStart { turn },
            }));
        }
        let allowed = (now.saturating_sub(started) + self.cfg.lead_ms as u64) * rate / 1000;
        loop {
            let queued = (self.queue.len() - self.taken - self.announced) as u64;
            // Whole frames while synthesis is still producing; the tail once it is done.
            let n = if queued >= frame {
                frame
            } else if p.done() {
                queued
            } else {
                break;
            };
            if n == 0 || p.sent + n > allowed {
                break;
            }
            self.outputs.push_back(Output::Wire(WireCmd::SendAudio {
                samples: n as usize,
            }));
            self.announced += n as usize;
            p.sent += n;
            if p.sent >= p.next_mark_at + mark_every || (p.done() && p.sent == p.synthesised) {
                p.next_mark_at = p.sent;
                self.outputs.push_back(Output::Wire(WireCmd::Mark {
                    id: mark_id(p.turn, p.epoch, p.sent),
                }));
            }
        }
    }

    fn check_finished(&mut self) {
        let now = self.now_ms;
        let Some(p) = self.playout.as_mut().filter(|p| !p.ended) else {
            return;
        };
        if p.done() && p.sent == p.synthesised && p.heard >= p.sent {
            p.ended = true;
            let (turn, end) = (p.turn, p.end.take());
            self.outputs.push_back(Output::Event(CallEvent {
                t_ms: now,
                kind: EventKind::BotAudioEnd { turn },
            }));
            if let Some(action) = end {
                self.outputs.push_back(Output::End(action));
                self.finish_call();
            }
        }
    }

    fn dtmf(&mut self, d: char) {
        if !(d.is_ascii_digit() || d == '*' || d == '#') {
            return;
        }
        self.event(EventKind::Dtmf { digit: d });
        self.dtmf_last_ms = self.now_ms;
        if d == '#' {
            self.flush_dtmf();
            return;
        }
        self.dtmf.push(d);
        // Keypad 0 on its own is the operator.
        if self.dtmf == "0" || self.dtmf.len() >= 12 {
            self.flush_dtmf();
        }
    }

    fn flush_dtmf(&mut self) {
        if self.dtmf.is_empty() {
            return;
        }
        let keys = std::mem::replace(&mut self.dtmf, String::with_capacity(16));
        // Keys stand alone: nothing said before them goes on with them or after them.
        self.forget_pieces();
        self.continuing = false;
        if self.bot_speaking() {
            self.barge_in();
        } else if self.turn > 0 {
            self.effect(Effect::CancelTurn { turn: self.turn });
        }
        self.turn += 1;
        self.event(EventKind::Keys {
            turn: self.turn,
            keys: keys.clone(),
        });
        self.effect(Effect::AskAgent {
            turn: self.turn,
            said: Said::Keys(keys),
        });
    }

    fn finish_call(&mut self) {
        self.reset_queue();
        self.event(EventKind::CallEnd);
        self.ended = true;
    }

    fn effect(&mut self, e: Effect) {
        self.outputs.push_back(Output::Effect(e));
    }

    fn wire(&mut self, c: WireCmd) {
        self.outputs.push_back(Output::Wire(c));
    }

    /// Starts speaking `text` for `turn` (a reply, the greeting, an apology).
    fn speak(&mut self, turn: TurnId, text: String, end: Option<EndAction>, own: bool) {
        self.reset_queue();
        self.playout = Some(Playout {
            turn,
            text: text.clone(),
            synthesised: 0,
            sent: 0,
            heard: 0,
            next_mark_at: 0,
            paused: false,
            epoch: 0,
            started_ms: None,
            first_audio_ms: None,
            end,
            ended: false,
            own,
            open: false,
            synthesising: 1,
        });
        self.effect(Effect::Synthesize { turn, text });
    }

    /// The recovery for a failed effect (see [`EffectKind`]).
    fn effect_failed(&mut self, turn: TurnId, effect: EffectKind) {
        if turn != self.turn {
            return;
        }
        match effect {
            EffectKind::TurnModel => {
                if let Some(t) = self.tentative.as_mut().filter(|t| t.turn == turn) {
                    // No verdict: the transcript decides, as without a model.
                    t.asked = false;
                    self.transcribe_pause();
                    self.quick_stop();
                }
            }
            EffectKind::Asr => {
                if let Some(t) = self.tentative.as_mut().filter(|t| t.turn == turn) {
                    // The caller may still go on; the apology waits for the end of the turn.
                    t.failed = true;
                    t.text = Some(String::new());
                    return;
                }
                self.apologise(turn, effect);
            }
            EffectKind::Agent => self.apologise(turn, effect),
            EffectKind::Tts => {
                let Some(p) = self.playout.as_mut().filter(|p| p.turn == turn && !p.ended) else {
                    return;
                };
                let heard = heard_words(&p.text, p.heard, p.synthesised.max(1));
                let unheard = p.heard < p.synthesised || !p.done();
                let apologising = p.own;
                let end = p.end.take();
                p.ended = true;
                self.event(EventKind::EffectFailed { turn, effect });
                if let Some(action) = end {
                    // The call ends as the agent decided, spoken or not.
                    self.reset_queue();
                    self.outputs.push_back(Output::End(action));
                    self.finish_call();
                    return;
                }
                if unheard && !apologising {
                    // The agent keeps only what the caller heard of its reply.
                    self.effect(Effect::Interrupted { turn, heard });
                }
                if apologising || self.cfg.apology.is_empty() {
                    self.reset_queue();
                    self.drop_pending_audio();
                    self.wire(WireCmd::Clear);
                    self.event(EventKind::BotAudioEnd { turn });
                    return;
                }
                let apology = self.cfg.apology.clone();
                self.reset_queue();
                self.drop_pending_audio();
                self.wire(WireCmd::Clear);
                self.event(EventKind::BotReply {
                    turn,
                    text: apology.clone(),
                });
                self.speak(turn, apology, None, true);
            }
        }
    }

    /// An effect of `turn` failed before the agent answered: the caller hears the apology.
    fn apologise(&mut self, turn: TurnId, effect: EffectKind) {
        self.event(EventKind::EffectFailed { turn, effect });
        // The caller is asked to say it again: what comes next stands alone.
        self.forget_pieces();
        self.continuing = false;
        if self.cfg.apology.is_empty() {
            return;
        }
        let apology = self.cfg.apology.clone();
        self.event(EventKind::BotReply {
            turn,
            text: apology.clone(),
        });
        self.speak(turn, apology, None, true);
    }

    fn event(&mut self, kind: EventKind) {
        self.outputs.push_back(Output::Event(CallEvent {
            t_ms: self.now_ms,
            kind,
        }));
    }
}

/// `earlier` and `words` as one utterance (either may be empty).
pub fn join_words(earlier: &str, words: &str) -> String {
    match (earlier.trim(), words.trim()) {
        ("", w) | (w, "") => w.to_string(),
        (e, w) => format!("{e} {w}"),
    }
}

/// Words a sentence does not end on.
const GOES_ON: &[&str] = &[
    "and", "or", "but", "so", "because", "um", "uh", "er", "like", "the", "a", "an", "to", "of",
    "for", "my", "with", "is", "it's", "if", "then", "that", "which", "on", "in", "at",
];

fn last_word(t: &str) -> String {
    t.split_whitespace()
        .last()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase()
}

/// Whether a transcript reads as a finished sentence: it ends with `.`, `?` or `!` (whisper
/// punctuates) and not on a word that promises more ("and", "um", "the", "my", ...).
pub fn reads_finished(text: &str) -> bool {
    let t = text.trim();
    if t.ends_with("...") || !t.ends_with(['.', '?', '!']) {
        return false;
    }
    let last = last_word(t);
    !last.is_empty() && !GOES_ON.contains(&last.as_str())
}

/// Whether a transcript clearly goes on: it ends with a comma, a dash or an ellipsis ("No, …")
/// or on a word that promises more. Unpunctuated text that ends on an ordinary word is neither
/// finished nor unfinished.
pub fn reads_unfinished(text: &str) -> bool {
    let t = text.trim();
    if t.ends_with([',', '-', ';', ':']) || t.ends_with("...") || t.ends_with('\u{2026}') {
        return true;
    }
    GOES_ON.contains(&last_word(t).as_str())
}

/// A mark's id: the turn in the top 24 bits, the pause epoch in the next 8, and the reply's
/// sample offset in the low 32.
pub fn mark_id(turn: TurnId, epoch: u8, offset: u64) -> u64 {
    ((turn & 0xFF_FFFF) << 40) | ((epoch as u64) << 32) | (offset & 0xFFFF_FFFF)
}

/// `(turn, epoch, offset)` of a mark id.
pub fn split_mark(id: u64) -> (TurnId, u8, u64) {
    (id >> 40, (id >> 32) as u8, id & 0xFFFF_FFFF)
}

/// The words of `text` a listener heard after `heard` of `total` samples: speech time is taken
/// as proportional to characters, and only whole words count.
pub fn heard_words(text: &str, heard: u64, total: u64) -> String {
    if total == 0 || heard == 0 {
        return String::new();
    }
    if heard >= total {
        return text.to_string();
    }
    let cut = (text.chars().count() as u64 * heard / total) as usize;
    let mut out = String::new();
    let mut pos = 0;
    for word in text.split_whitespace() {
        let end = pos + word.chars().count();
        if end > cut {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        pos = end + 1;
    }
    out
}

#[cfg(test)]
mod tests;
