//! Speech recognition with whisper.cpp (whisper-rs): one shared model context, one decoding
//! state per worker, the `audio_ctx` policy of FACTS §3, and a filter that keeps whisper's
//! hallucinations on silence and noise ("Thank you.", "[BLANK_AUDIO]", repeated phrases) away
//! from the agent.
//!
//! Everything here blocks for hundreds of milliseconds: it runs on the ASR worker pool
//! (`asr::pool`), never on an async worker. Input is 16 kHz mono f32.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

pub const SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsrConfig {
    /// Threads for a decode when it is the only one running (FACTS §3: 1 → 2 threads halves the
    /// time alone); decodes side by side take one each (see `cpu`).
    pub threads: u32,
    /// Lower bound of the encoder context of the first, fast pass. Short contexts make some
    /// short clips loop ("No, goodbye. Goodbye. Goodbye. …"); such a pass is detected and
    /// decoded again with `retry_audio_ctx_floor`.
    pub audio_ctx_floor: u32,
    /// Encoder context floor of the second pass, for clips whose first pass looped (FACTS §3:
    /// 768 removed the loops). At or below `audio_ctx_floor`: no second pass.
    pub retry_audio_ctx_floor: u32,
    /// Beam width; 0 = greedy (0.36 s/clip, WER 9.4 %) vs beam 5 (0.43 s, 5.2 %) on tiny.en.
    pub beam_size: u32,
    /// Segments whisper itself rates more likely silence than this are dropped.
    pub no_speech_threshold: f32,
    /// Audio quieter than this RMS (dBFS) is not sent to whisper at all.
    pub min_rms_dbfs: f32,
    /// Give whisper the engine's prompt for each turn (what the bot just asked, the line's
    /// vocabulary). Costs decode time (a 160-character prompt ~50 ms on tiny.en here).
    pub prompt: bool,
    /// A caller's pieces heard together (`call.join_pieces`) are decoded with whisper's
    /// timestamps, segment by segment, instead of as one segment without them. As one segment
    /// whisper often ends the text after the first piece's sentence ("You had under doe, John,
    /// ABC 123." for "… ABC 123. + Push it to the third, please."); with timestamps it goes on
    /// from where that segment ended. Single utterances stay one segment: there the timestamps
    /// scored no better (README, Measured).
    pub joined_segments: bool,
}

impl Default for AsrConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            audio_ctx_floor: 384,
            retry_audio_ctx_floor: 768,
            beam_size: 0,
            no_speech_threshold: 0.6,
            min_rms_dbfs: -50.0,
            prompt: false,
            joined_segments: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("cannot load whisper model {path}: {message}")]
    Load { path: String, message: String },
    #[error("whisper failed: {0}")]
    Decode(String),
    #[error("the ASR worker pool is shut down")]
    PoolClosed,
}

/// What whisper heard in one utterance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transcript {
    /// Empty when suppressed.
    pub text: String,
    /// The raw text whisper produced, before filtering.
    pub raw: String,
    /// Why the text was withheld from the agent, if it was.
    pub suppressed: Option<&'static str>,
    pub no_speech_prob: f32,
    pub audio_ms: u64,
    pub decode_ms: u64,
    /// 1, or 2 when the fast first pass looped and was decoded again.
    pub passes: u8,
}

/// The loaded model, shared by all workers.
#[derive(Clone)]
pub struct Whisper {
    ctx: Arc<WhisperContext>,
    cfg: AsrConfig,
}

impl Whisper {
    pub fn load(path: &Path, cfg: AsrConfig) -> Result<Whisper, AsrError> {
        let err = |message: String| AsrError::Load {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(err(
                "file not found — run `switchboard models install`".into()
            ));
        }
        let p = path
            .to_str()
            .ok_or_else(|| err("path is not UTF-8".into()))?;
        // whisper.cpp's own log lines go through `tracing` (target whisper_rs) instead of stderr.
        static HOOKS: std::sync::Once = std::sync::Once::new();
        HOOKS.call_once(whisper_rs::install_logging_hooks);
        let params = WhisperContextParameters {
            use_gpu: false,
            ..Default::default()
        };
        let ctx = WhisperContext::new_with_params(p, params).map_err(|e| err(e.to_string()))?;
        Ok(Whisper {
            ctx: Arc::new(ctx),
            cfg,
        })
    }

    /// A decoder with its own state (one per worker thread).
    pub fn transcriber(&self) -> Result<Transcriber, AsrError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| AsrError::Decode(e.to_string()))?;
        Ok(Transcriber {
            state,
            eot: self.ctx.token_eot(),
            cfg: self.cfg.clone(),
        })
    }

    pub fn config(&self) -> &AsrConfig {
        &self.cfg
    }
}

pub struct Transcriber {
    state: WhisperState,
    /// Token ids from here up are special (end of text, timestamps, …), not text.
    eot: i32,
    cfg: AsrConfig,
}

impl Transcriber {
    /// Transcribes one utterance (16 kHz mono). Blocking. `prompt` is whisper's initial prompt:
    /// text the speech is likely to resemble (the question just asked, the words and formats
    /// the line expects), which steers spelling of codes and names.
    pub fn transcribe(
        &mut self,
        audio: &[f32],
        prompt: Option<&str>,
    ) -> Result<Transcript, AsrError> {
        self.transcribe_as(audio, prompt, false)
    }

    /// [`Transcriber::transcribe`], or, when `joined` (a caller's pieces heard together,
    /// `Effect::Transcribe`'s `whole`), decoded with whisper's timestamps, segment by segment,
    /// if `joined_segments` is on.
    pub fn transcribe_as(
        &mut self,
        audio: &[f32],
        prompt: Option<&str>,
        joined: bool,
    ) -> Result<Transcript, AsrError> {
        let segments = joined && self.cfg.joined_segments;
        let audio_ms = audio.len() as u64 * 1000 / SAMPLE_RATE as u64;
        let started = Instant::now();
        if audio.is_empty() || rms_dbfs(audio) < self.cfg.min_rms_dbfs {
            return Ok(Transcript {
                text: String::new(),
                raw: String::new(),
                suppressed: Some("silence"),
                no_speech_prob: 1.0,
                audio_ms,
                decode_ms: 0,
                passes: 0,
            });
        }
        // Counted as a running decode (see `cpu`).
        let _running = crate::cpu::running();
        // whisper needs at least one second of audio; pad short clips with silence.
        let min = SAMPLE_RATE as usize + SAMPLE_RATE as usize / 10;
        let padded;
        let input = if audio.len() < min {
            let mut v = Vec::with_capacity(min);
            v.extend_from_slice(audio);
            v.resize(min, 0.0);
            padded = v;
            &padded[..]
        } else {
            audio
        };
        let first = self.cfg.audio_ctx_floor;
        let retry = self.cfg.retry_audio_ctx_floor;
        let cap = (retry > first).then(|| token_cap(input.len()));
        let prompt = prompt
            .map(str::trim)
            .filter(|p| self.cfg.prompt && !p.is_empty());
        let (mut raw, mut no_speech, n_tokens) =
            self.decode(input, first, cap, prompt, segments)?;
        let mut passes = 1;
        if let Some(cap) = cap
            && looped(&raw, n_tokens, cap)
        {
            tracing::debug!(audio_ms, first_pass = %raw, "whisper looped; decoding again");
            (raw, no_speech, _) = self.decode(input, retry, None, prompt, segments)?;
            passes = 2;
        }
        let suppressed =
            hallucination(&raw, no_speech, self.cfg.no_speech_threshold).or_else(|| {
                // whisper's own no-speech probability is unreliable on noise (it said "You" with
                // p = 0.00006 on white line noise): steady audio is not speech, whatever it wrote.
                (modulation_db(audio) < MIN_SPEECH_MODULATION_DB).then_some("steady noise")
            });
        Ok(Transcript {
            text: if suppressed.is_some() {
                String::new()
            } else {
                raw.clone()
            },
            raw,
            suppressed,
            no_speech_prob: no_speech,
            audio_ms,
            decode_ms: started.elapsed().as_millis() as u64,
            passes,
        })
    }

    /// One whisper pass with the encoder context floor `floor`, stopping after `max_tokens`
    /// tokens if given (the first, guarded pass, which also gets no temperature fallback: a loop
    /// is handled by the second pass instead; with `segments`, per segment). `segments`: decode
    /// with timestamps, segment by segment, instead of as one segment without them. Returns the
    /// trimmed text, whisper's no-speech probability (the least of its segments': one with speech
    /// makes the clip speech) and the number of text tokens.
    fn decode(
        &mut self,
        input: &[f32],
        floor: u32,
        max_tokens: Option<u32>,
        prompt: Option<&str>,
        segments: bool,
    ) -> Result<(String, f32, usize), AsrError> {
        let strategy = if self.cfg.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.cfg.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        // A second core only when no other decode is running (see `cpu`).
        let threads = crate::cpu::decode_threads(self.cfg.threads);
        params.set_n_threads(threads as i32);
        let _wide = (threads > 1).then(crate::cpu::wide);
        params.set_language(Some("en"));
        params.set_translate(false);
        params.set_single_segment(!segments);
        params.set_no_timestamps(!segments);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_audio_ctx(audio_ctx_for(input.len(), floor));
        if let Some(p) = prompt {
            params.set_initial_prompt(p);
        }
        if let Some(n) = max_tokens {
            params.set_max_tokens(n as i32);
            params.set_temperature_inc(0.0);
        }
        self.state
            .full(params, input)
            .map_err(|e| AsrError::Decode(e.to_string()))?;
        let eot = self.eot;
        let mut raw = String::new();
        let mut no_speech: Option<f32> = None;
        let mut tokens = 0;
        for seg in self.state.as_iter() {
            if let Ok(s) = seg.to_str_lossy() {
                raw.push_str(&s);
            }
            let p = seg.no_speech_probability();
            no_speech = Some(no_speech.map_or(p, |n| n.min(p)));
            tokens += (0..seg.n_tokens())
                .filter_map(|i| seg.get_token(i))
                .filter(|t| t.token_id() < eot)
                .count();
        }
        Ok((raw.trim().to_string(), no_speech.unwrap_or(0.0), tokens))
    }
}

/// The most text tokens a first pass may produce for `samples` of audio: generous for fast
/// speech (read digits run at about 5 tokens a second), far below a loop's output.
pub fn token_cap(samples: usize) -> u32 {
    let secs = samples as f64 / SAMPLE_RATE as f64;
    10 + (7.0 * secs).ceil() as u32
}

/// Whether a first pass looks like whisper's short-context loop: it ran into its token cap, or
/// its text repeats a phrase of two or more words back to back ("Go forward 10 meters. Go
/// forward 10 meters."). A caller who really repeats himself only costs a second pass.
pub fn looped(text: &str, tokens: usize, cap: u32) -> bool {
    if tokens >= cap as usize {
        return true;
    }
    let words = words(text);
    repeated(&words, 2..=words.len() / 2, 2) || repeats(&words)
}

/// The words of `text`, lowercased, without punctuation around them.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Encoder context for a clip: ~50 frames per second of audio, never below the floor
/// (short contexts loop on clips under ~3.5 s) and never above whisper's 1500.
pub fn audio_ctx_for(samples: usize, floor: u32) -> i32 {
    let secs = samples as f64 / SAMPLE_RATE as f64;
    let ctx = (secs * 50.0).ceil() as u32 + 32;
    ctx.clamp(floor.min(1500), 1500) as i32
}

pub fn rms_dbfs(audio: &[f32]) -> f32 {
    if audio.is_empty() {
        return f32::NEG_INFINITY;
    }
    let sum: f64 = audio.iter().map(|s| (*s as f64) * (*s as f64)).sum();
    let rms = (sum / audio.len() as f64).sqrt();
    if rms <= 0.0 {
        f32::NEG_INFINITY
    } else {
        (20.0 * rms.log10()) as f32
    }
}

/// Phrases whisper emits on silence and noise (its training data's subtitles).
const SILENCE_PHRASES: &[&str] = &[
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "thanks for listening",
    "you",
    "bye",
    "so",
    "okay",
    "please subscribe",
    "subtitles by",
];

/// How much the loudness of 20 ms frames varies (standard deviation, dB): speech rises and falls
/// with its syllables (typically 8–15 dB), steady line noise hardly moves (about 1 dB).
pub fn modulation_db(audio: &[f32]) -> f32 {
    let frames: Vec<f64> = audio
        .chunks(SAMPLE_RATE as usize / 50)
        .map(|f| {
            let e =
                f.iter().map(|s| (*s as f64) * (*s as f64)).sum::<f64>() / f.len().max(1) as f64;
            10.0 * e.max(1e-10).log10()
        })
        .collect();
    if frames.len() < 2 {
        return 0.0;
    }
    let mean = frames.iter().sum::<f64>() / frames.len() as f64;
    let var = frames.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / frames.len() as f64;
    var.sqrt() as f32
}

/// Below this modulation the audio is taken as noise, not speech.
const MIN_SPEECH_MODULATION_DB: f32 = 3.0;

/// Why `text` should not reach the agent, if it should not.
pub fn hallucination(text: &str, no_speech_prob: f32, threshold: f32) -> Option<&'static str> {
    let t = text.trim();
    let words = words(t);
    if words.is_empty() {
        return Some("empty");
    }
    if t.starts_with('[') || t.starts_with('(') || t.starts_with('*') || t.starts_with('♪') {
        return Some("non-speech tag");
    }
    let joined = words.join(" ");
    if no_speech_prob > threshold {
        return Some("no speech");
    }
    if SILENCE_PHRASES.contains(&joined.as_str()) && no_speech_prob > threshold / 3.0 {
        return Some("silence phrase");
    }
    if repeats(&words) {
        return Some("repetition loop");
    }
    None
}

/// A phrase of 1–6 words repeated three or more times in a row ("ten of clubs. ten of clubs. …").
fn repeats(words: &[String]) -> bool {
    repeated(words, 1..=6, 3)
}

/// Whether some phrase of a length in `lens` (words) stands `times` times back to back.
fn repeated(words: &[String], lens: std::ops::RangeInclusive<usize>, times: usize) -> bool {
    lens.take_while(|n| words.len() >= n * times).any(|n| {
        (0..=words.len() - n * times).any(|start| {
            let p = &words[start..start + n];
            // "no no no" style single-word emphasis is human; loops are longer.
            (n > 1 || words.len() > 4)
                && (1..times).all(|k| &words[start + k * n..start + (k + 1) * n] == p)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_policy() {
        assert_eq!(audio_ctx_for(16_000, 768), 768, "1 s clip: the floor");
        assert_eq!(audio_ctx_for(16_000 * 20, 768), 1032);
        assert_eq!(audio_ctx_for(16_000 * 60, 768), 1500);
    }

    #[test]
    fn a_looping_first_pass_is_recognised() {
        let cap = token_cap(16_000 * 13 / 10);
        assert_eq!(cap, 20, "1.3 s of audio");
        assert!(looped("No, goodbye. Goodbye. Goodbye. Goodbye.", 20, cap));
        assert!(looped(
            "Go forward 10 meters. Go forward 10 meters.",
            12,
            cap
        ));
        assert!(looped("Ten of clubs ten of clubs", 8, 100));
        assert!(!looped("No, goodbye.", 4, cap));
        assert!(!looped("No, no, no.", 6, cap), "one-word emphasis");
        assert!(!looped(
            "Sure, it's ABC 1, 2, 3 and the name is John Doe.",
            19,
            token_cap(16_000 * 37 / 10)
        ));
        assert!(!looped("", 0, cap));
    }

    #[test]
    fn hallucinations_are_recognised() {
        assert_eq!(hallucination("", 0.0, 0.6), Some("empty"));
        assert_eq!(
            hallucination(" [BLANK_AUDIO]", 0.0, 0.6),
            Some("non-speech tag")
        );
        assert_eq!(hallucination("(music)", 0.0, 0.6), Some("non-speech tag"));
        assert_eq!(
            hallucination("Thank you.", 0.3, 0.6),
            Some("silence phrase")
        );
        assert_eq!(
            hallucination("Confirm my reservation", 0.9, 0.6),
            Some("no speech")
        );
        assert_eq!(
            hallucination(
                "Ten of clubs. Ten of clubs. Ten of clubs. Ten of clubs.",
                0.0,
                0.6
            ),
            Some("repetition loop")
        );
        assert_eq!(
            hallucination("Thank you.", 0.01, 0.6),
            None,
            "a caller may really say it"
        );
        assert_eq!(hallucination("No, no, no.", 0.0, 0.6), None);
        assert_eq!(hallucination("Confirm my reservation", 0.05, 0.6), None);
    }

    #[test]
    fn speech_is_modulated_noise_is_not() {
        let steady: Vec<f32> = (0..16_000)
            .map(|i| if i % 2 == 0 { 0.01 } else { -0.01 })
            .collect();
        assert!(modulation_db(&steady) < 0.1);
        let syllables: Vec<f32> = (0..16_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (0.01 + 0.3 * (t * 4.0 * std::f32::consts::TAU).sin().powi(2)) * (t * 900.0).sin()
            })
            .collect();
        assert!(
            modulation_db(&syllables) > 5.0,
            "{}",
            modulation_db(&syllables)
        );
    }

    #[test]
    fn loudness() {
        assert_eq!(rms_dbfs(&[]), f32::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[0.0; 100]), f32::NEG_INFINITY);
        assert!((rms_dbfs(&[0.5; 100]) - (-6.02)).abs() < 0.01);
    }
}
