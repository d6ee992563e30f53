//! Text-to-speech: turning the agent's replies into audio for the caller.
//!
//! - [`normalize`]: rewrites written forms ("$125.50", "2025-12-01", "15:00", "ABC123") into the
//!   words a person says, before any engine sees the text.
//! - [`espeak`]: the [`Espeak`](espeak::Espeak) engine over the espeak-ng C library (22050 Hz
//!   mono, formant synthesis, a few milliseconds per sentence).
//!
//! Engines implement [`TtsEngine`], so another one (a neural model, a cloud service) can be added
//! without touching the callers. Synthesis is blocking and streams audio through a callback as it
//! is produced; the callback returning `false` aborts it (barge-in).

pub mod espeak;
pub mod normalize;

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
