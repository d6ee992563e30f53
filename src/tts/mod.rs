//! Text-to-speech: turning the agent's replies into audio for the caller.
//!
//! - [`normalize`]: rewrites written forms ("$125.50", "2025-12-01", "15:00", "ABC123") into the
//!   words a person says, before any engine sees the text.
//! - [`espeak`]: the [`Espeak`](espeak::Espeak) engine over the espeak-ng C library (22050 Hz
//!   mono, formant synthesis, a few milliseconds per sentence); also the phonemizer for Piper.
//! - [`piper`]: the [`Piper`](piper::Piper) neural voice (the default), an ONNX model run by
//!   ONNX Runtime, sentence by sentence.
//! - [`Fallback`]: one engine backed by another (Piper, then espeak-ng if Piper fails).
//!
//! Engines implement [`TtsEngine`], so another one (a neural model, a cloud service) can be added
//! without touching the callers. Synthesis is blocking and streams audio through a callback as it
//! is produced; the callback returning `false` aborts it (barge-in).

pub mod cache;
pub mod espeak;
pub mod normalize;
pub mod piper;

/// Which engine speaks (`[speech.tts] engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The Piper neural voice, with espeak-ng as its fallback.
    Piper,
    /// espeak-ng alone (formant synthesis: robotic, but tiny and instant).
    Espeak,
}

/// `[speech.tts] piper_unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiperUnit {
    Clause,
    Sentence,
}

/// `[speech.tts]`: the engine and, for Piper, its voice.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsConfig {
    pub engine: EngineKind,
    /// The installed Piper voice (`switchboard models install`).
    pub piper_voice: String,
    /// Piper syntheses that can run at once (each holds a copy of the model, ~135 MB).
    pub piper_sessions: usize,
    /// ONNX Runtime threads per synthesis.
    pub piper_threads: usize,
    /// What one Piper model run speaks: "clause" (the default: the first audio is ready as soon
    /// as the first clause is, e.g. "Sure," in ~50 ms) or "sentence" (Piper's own choice: the
    /// intonation carries across commas, but the first audio waits for the whole sentence).
    pub piper_unit: PiperUnit,
    /// No sampled variation: the same sentence always sounds the same, and recorded calls
    /// replay exactly. `false` gives the voice's natural variation from one rendering to the
    /// next (the cache still reuses a phrase once synthesised).
    pub deterministic: bool,
    /// Piper units (clauses) kept synthesised for reuse across replies and calls (~60 KB each);
    /// only with `deterministic`. 0 = none.
    pub piper_cache_units: usize,
    /// At start-up, synthesise the template's fixed sentences (its questions and lines, without
    /// placeholders) in the background, so that the first callers' replies that open with one
    /// find it ready. Piper only.
    pub prewarm: bool,
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig {
            engine: EngineKind::Piper,
            piper_voice: "piper-joe-medium".to_string(),
            piper_sessions: 1,
            piper_threads: 1,
            piper_unit: PiperUnit::Clause,
            deterministic: true,
            piper_cache_units: 512,
            prewarm: true,
        }
    }
}

/// An engine that falls back to another when it fails before any audio: the caller still hears
/// the reply (in the fallback's voice) instead of an apology. A failure after some audio was
/// handed on is returned as it is (the call's recovery then apologises), so nothing is said
/// twice. Both must run at the same sample rate.
pub struct Fallback {
    primary: Box<dyn TtsEngine>,
    fallback: Box<dyn TtsEngine>,
}

impl Fallback {
    pub fn new(
        primary: Box<dyn TtsEngine>,
        fallback: Box<dyn TtsEngine>,
    ) -> Result<Fallback, TtsError> {
        if primary.sample_rate() != fallback.sample_rate() {
            return Err(TtsError::Init(format!(
                "the fallback engine runs at {} Hz, the primary at {} Hz",
                fallback.sample_rate(),
                primary.sample_rate()
            )));
        }
        Ok(Fallback { primary, fallback })
    }
}

impl TtsEngine for Fallback {
    fn sample_rate(&self) -> u32 {
        self.primary.sample_rate()
    }

    fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        on_chunk: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<SynthStats, TtsError> {
        let mut produced = false;
        let result = self.primary.synthesize(text, voice, &mut |chunk| {
            produced |= !chunk.is_empty();
            on_chunk(chunk)
        });
        match result {
            Err(e) if !produced => {
                tracing::warn!(error = %e, "the voice failed; speaking with the fallback engine");
                self.fallback.synthesize(text, voice, on_chunk)
            }
            other => other,
        }
    }
}

/// Which voice to speak with and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Voice {
    /// Engine voice name; for espeak-ng a voice such as "en-us" or "en-gb" (`espeak-ng --voices`).
    pub name: String,
    /// Speaking rate in words per minute (espeak-ng accepts 80..=450 and clamps to that range).
    pub rate_wpm: u32,
    /// Base pitch, 0..=100 (50 is the voice's normal pitch); larger values are clamped to 100.
    pub pitch: u32,
}

impl Default for Voice {
    /// US English at espeak-ng's normal rate (175 wpm) and pitch (50).
    fn default() -> Self {
        Voice {
            name: "en-us".to_string(),
            rate_wpm: 175,
            pitch: 50,
        }
    }
}

/// What one [`TtsEngine::synthesize`] call produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthStats {
    /// Samples passed to `on_chunk` (at [`TtsEngine::sample_rate`]).
    pub samples: usize,
    /// Non-empty chunks passed to `on_chunk`.
    pub chunks: usize,
    /// True when `on_chunk` returned `false` and synthesis stopped early.
    pub aborted: bool,
    /// Microseconds from the call to `synthesize` (including any wait for a shared engine) to the
    /// first chunk handed to `on_chunk`, at least 1; 0 when no audio was produced.
    pub first_chunk_us: u64,
}

/// Why synthesis or engine start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// The engine could not be initialised (missing data files, conflicting configuration).
    #[error("text-to-speech engine initialisation failed: {0}")]
    Init(String),
    /// The engine does not know the requested voice.
    #[error("unknown voice {name:?}: {detail}")]
    UnknownVoice {
        /// The voice name as requested.
        name: String,
        /// What the engine reported.
        detail: String,
    },
    /// The engine rejected a parameter (rate, pitch, …).
    #[error("text-to-speech parameter {parameter} = {value} rejected (engine code {code})")]
    Parameter {
        /// Parameter name.
        parameter: &'static str,
        /// The value that was set.
        value: i64,
        /// The engine's error code.
        code: i32,
    },
    /// The engine failed while synthesising.
    #[error("speech synthesis failed: {0}")]
    Synthesis(String),
}

/// A speech synthesiser. Implementations must be usable from several threads; an engine over a
/// process-global library serialises calls internally (see [`espeak`]).
pub trait TtsEngine: Send + Sync {
    /// Sample rate of the audio passed to `on_chunk`, in Hz.
    fn sample_rate(&self) -> u32;

    /// Synthesises `text` (already normalised for speech), calling `on_chunk` with each chunk of
    /// mono i16 samples as soon as it is produced; `on_chunk` returns false to abort (barge-in).
    /// Blocking: the runtime calls it on a worker thread, never on an async worker.
    ///
    /// A panic in `on_chunk` stops synthesis and is resumed on the calling thread once the
    /// engine is in a clean state.
    fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        on_chunk: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<SynthStats, TtsError>;
}
