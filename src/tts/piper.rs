//! Piper neural text-to-speech (the default voice): VITS voices exported to ONNX, run with ONNX Runtime through
//! `ort`, with espeak-ng supplying the phonemes.
//!
//! # Pipeline
//! 1. espeak-ng turns the text into IPA, one clause at a time, each with the punctuation that
//!    ended it ([`Espeak::phonemize`]; see that module for how terminators are recovered).
//! 2. Clauses are grouped into *units*, each synthesised by one model run. With
//!    [`SynthesisUnit::Sentence`] (the default, as Piper does) clauses are joined until one ends
//!    with `.` `?` `!`; with [`SynthesisUnit::Clause`] every clause is a unit (first audio sooner,
//!    prosody across commas slightly less natural). Either way a unit never exceeds
//!    [`PiperOptions::max_unit_phonemes`]: longer ones are cut at a clause or word boundary,
//!    bounding latency and memory for text without punctuation. Clauses without a terminator
//!    are joined with a space (piper-tts runs them together: "wait... what" → `wˈeɪtwˌʌt`).
//! 3. A unit's phonemes (clause IPA + terminator, plus a space after `, : ;`, NFD-decomposed into
//!    code points) become ids `^ _ (id _)… $` through the voice's `phoneme_id_map`; phonemes
//!    missing from the map are skipped and counted.
//! 4. The model maps ids to audio (`input` int64 [1,N], `input_lengths` int64 [1], `scales` f32
//!    [3] = noise_scale, length_scale, noise_w, optional `sid` int64 [1]) → f32 [1,1,1,T].
//!    Each unit's audio is scaled by the volume (optionally peak-normalised first, as piper-tts
//!    does), clamped to ±1 and handed to the caller as i16 as soon as it is ready.
//!
//! # Randomness
//! The model samples noise (RandomNormalLike) for the durations (`noise_w`) and the waveform
//! (`noise_scale`). [`Scales::deterministic`] sets both to 0, which makes the output a pure
//! function of the text and the thread count: runs with the same `intra_threads` were
//! bit-identical (also across processes and pooled sessions); 1 vs 2 threads differed by 1 LSB
//! in ~0.5 % of samples (float summation order). Replay tests must pin `intra_threads`.
//!
//! # Threads
//! `ort::Session::run` takes `&mut self` in 2.0.0-rc.15, so a session serves one inference at a
//! time. [`Piper`] keeps a pool of [`PiperOptions::sessions`] sessions (default 1, each holding
//! its own copy of the weights); a synthesis borrows one per unit, so concurrent calls interleave
//! unit by unit instead of waiting for each other's whole text. Each session uses
//! `intra_threads` threads (default 1) and never spin-waits.
//!
//! # Unit cache
//! With deterministic scales a unit's audio is a function of its ids, so each synthesised unit
//! is kept (up to [`PiperOptions::cache_units`], the oldest dropped first) and a unit said again
//! in any later reply is not synthesised again: a reply opening with a question the line asks
//! every caller ("Which account would you like to see the bill for?") starts at once even when
//! the rest of it (an amount, a name) is new. `runtime::speech::Speech::prewarm` fills it with a
//! line's fixed sentences at start-up. The cache's lock is held only to look up and insert, never during a
//! model run. A unit is synthesised once even when several calls need it at the same moment (a
//! burst of callers hearing the same question): the others wait for it to land in the cache
//! instead of each running the model on it.
//!
//! # ONNX Runtime
//! The runtime library is loaded at run time (`ort` feature `load-dynamic`); the process's one
//! environment comes from [`crate::onnx`].

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::onnx::{ort_environment, session};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use super::cache::BoundedCache;
use super::espeak::Espeak;
use super::{SynthStats, TtsEngine, TtsError, Voice};

/// Errors here are the engine trait's: `Init` (runtime, model or voice config) and `Synthesis`.
type PiperError = TtsError;

fn synth_err(context: &str) -> impl FnOnce(ort::Error) -> PiperError + '_ {
    move |e| PiperError::Synthesis(format!("{context}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Voice configuration (the model's .onnx.json)
// ---------------------------------------------------------------------------------------------

/// The parts of a Piper voice config (`*.onnx.json`) that synthesis needs.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceConfig {
    pub audio: AudioConfig,
    pub espeak: EspeakConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    /// "espeak" is the only type supported here ("text" and "pinyin" voices exist).
    #[serde(default = "default_phoneme_type")]
    pub phoneme_type: String,
    /// Phoneme (one code point) → ids.
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default = "one")]
    pub num_speakers: u32,
    #[serde(default)]
    pub speaker_id_map: HashMap<String, i64>,
    /// Multi-code-point vowel phonemes (newer multilingual voices); not supported here.
    #[serde(default)]
    pub vowel_clusters: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakConfig {
    pub voice: String,
}

/// The voice's default scales.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct InferenceConfig {
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

fn default_phoneme_type() -> String {
    "espeak".to_string()
}

fn one() -> u32 {
    1
}

impl VoiceConfig {
    /// Reads and checks a voice config file.
    pub fn from_file(path: &Path) -> Result<VoiceConfig, PiperError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PiperError::Init(format!("cannot read voice config {}: {e}", path.display()))
        })?;
        let config: VoiceConfig = serde_json::from_str(&text)
            .map_err(|e| PiperError::Init(format!("bad voice config {}: {e}", path.display())))?;
        if config.phoneme_type != "espeak" {
            return Err(PiperError::Init(format!(
                "voice uses phoneme_type {:?}; only \"espeak\" is supported",
                config.phoneme_type
            )));
        }
        if !config.vowel_clusters.is_empty() {
            return Err(PiperError::Init(
                "voices with vowel_clusters are not supported".into(),
            ));
        }
        if !(8000..=96_000).contains(&config.audio.sample_rate) {
            return Err(PiperError::Init(format!(
                "implausible sample rate {}",
                config.audio.sample_rate
            )));
        }
        Ok(config)
    }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// What one model run synthesises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynthesisUnit {
    /// Clauses joined up to `.` `?` `!` (Piper's behaviour; best prosody).
    #[default]
    Sentence,
    /// Every clause on its own (earlier first audio for sentences with commas).
    Clause,
}

/// Engine options fixed at load time.
#[derive(Debug, Clone)]
pub struct PiperOptions {
    /// Sessions in the pool = inferences that can run at once. Each holds the weights (~100 MB
    /// for a medium voice).
    pub sessions: usize,
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
    pub unit: SynthesisUnit,
    /// Upper bound on phonemes per model run (Piper has none; a 2,000-character text without
    /// punctuation would otherwise be one run of several minutes of audio).
    pub max_unit_phonemes: usize,
    /// Peak-normalise each unit's audio to full scale before `volume`. piper-tts does this by
    /// default; it is off here because units are synthesised separately, so it makes the level
    /// jump between sentences (and between clauses with [`SynthesisUnit::Clause`]), and leaves
    /// no headroom for resampling. The joe voice's raw output peaks at 0.57–0.75 (RMS ≈ 0.05–0.06).
    pub normalize: bool,
    /// Gain applied after normalisation; samples are clamped to ±1.
    pub volume: f32,
    /// Speaker for multi-speaker voices (ignored by single-speaker ones).
    pub speaker_id: i64,
    /// No sampled noise (see [`Scales::deterministic`]): the same text always gives the same
    /// audio, so recorded calls replay exactly.
    pub deterministic: bool,
    /// Synthesised units kept for reuse (see the module docs; only units synthesised without
    /// noise are kept). 0 = none.
    pub cache_units: usize,
}

impl Default for PiperOptions {
    fn default() -> Self {
        PiperOptions {
            sessions: 1,
            intra_threads: 1,
            unit: SynthesisUnit::Sentence,
            max_unit_phonemes: 400,
            normalize: false,
            volume: 1.0,
            speaker_id: 0,
            deterministic: true,
            cache_units: 512,
        }
    }
}

/// The model's three scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Waveform noise (expressiveness); 0 = none.
    pub noise_scale: f32,
    /// Speaking time: > 1 slower, < 1 faster.
    pub length_scale: f32,
    /// Duration noise (rhythm variation); 0 = none.
    pub noise_w: f32,
}

impl Scales {
    /// The same scales without noise: output becomes a function of the text alone.
    pub fn deterministic(self) -> Scales {
        Scales {
            noise_scale: 0.0,
            noise_w: 0.0,
            ..self
        }
    }

    /// Replaces values the model cannot use (NaN, infinite, negative, zero length) by the
    /// defaults; keeps length_scale within 0.25..=4.
    fn sanitized(self, defaults: Scales) -> Scales {
        let pick = |v: f32, d: f32, min: f32| if v.is_finite() && v >= min { v } else { d };
        Scales {
            noise_scale: pick(self.noise_scale, defaults.noise_scale, 0.0),
            length_scale: pick(self.length_scale, defaults.length_scale, 0.0).clamp(0.25, 4.0),
            noise_w: pick(self.noise_w, defaults.noise_w, 0.0),
        }
    }
}

/// What one [`Piper::synthesize`] call did.
#[derive(Debug, Clone, Default)]
pub struct PiperStats {
    /// Samples passed to the callback.
    pub samples: usize,
    /// Non-empty chunks passed to the callback (one per unit).
    pub chunks: usize,
    /// The callback returned false.
    pub aborted: bool,
    /// Microseconds from the call to the first chunk (0 if none).
    pub first_chunk_us: u64,
    /// Microseconds spent in espeak-ng.
    pub phonemize_us: u64,
    /// Phonemes not in the voice's id map (skipped).
    pub unknown_phonemes: usize,
    /// One entry per unit synthesised.
    pub units: Vec<UnitStats>,
    /// Units taken from the unit cache instead of the model.
    pub cached_units: usize,
}

#[derive(Debug, Clone, Default)]
pub struct UnitStats {
    /// Phoneme ids sent to the model.
    pub ids: usize,
    /// Samples produced.
    pub samples: usize,
    /// Microseconds waiting for a free session.
    pub wait_us: u64,
    /// Microseconds of inference.
    pub infer_us: u64,
}

// ---------------------------------------------------------------------------------------------
// Session pool
// ---------------------------------------------------------------------------------------------

struct SessionPool {
    free: Mutex<Vec<Session>>,
    returned: Condvar,
}

/// A borrowed session; goes back to the pool on drop (also when unwinding).
struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock().push(session);
            self.pool.returned.notify_one();
        }
    }
}

impl SessionPool {
    fn lock(&self) -> MutexGuard<'_, Vec<Session>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> PooledSession<'_> {
        let mut free = self.lock();
        loop {
            if let Some(session) = free.pop() {
                return PooledSession {
                    pool: self,
                    session: Some(session),
                };
            }
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Unit cache
// ---------------------------------------------------------------------------------------------

/// A unit's ids and the bits of its length scale (the noise scales are 0 for every cached unit).
type UnitKey = (Vec<i64>, u32);

// ---------------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------------

/// A loaded Piper voice. `Send + Sync`: share it behind an `Arc`.
pub struct Piper {
    config: VoiceConfig,
    options: PiperOptions,
    ids: HashMap<char, Vec<i64>>,
    bos: Vec<i64>,
    eos: Vec<i64>,
    pad: Vec<i64>,
    /// Model has a `sid` input (multi-speaker voice).
    has_sid: bool,
    output_name: String,
    pool: SessionPool,
    /// The phonemizer (the process-wide espeak-ng library).
    espeak: Espeak,
    /// Synthesised units (see the module docs).
    cache: Mutex<BoundedCache<UnitKey, Arc<[i16]>>>,
    /// Cacheable units being synthesised now, and the signal that one of them landed.
    in_flight: Mutex<HashSet<UnitKey>>,
    landed: Condvar,
}

/// Takes a unit off the in-flight set when its synthesis ends, however it ends, and wakes the
/// syntheses waiting for it.
struct Landing<'a> {
    piper: &'a Piper,
    key: &'a UnitKey,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.piper.lock_in_flight().remove(self.key);
        self.piper.landed.notify_all();
    }
}

impl std::fmt::Debug for Piper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Piper")
            .field("espeak_voice", &self.config.espeak.voice)
            .field("sample_rate", &self.config.audio.sample_rate)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Piper {
    /// Loads ONNX Runtime (once per process), the voice config and `options.sessions` sessions
    /// of the model, and checks that they fit together.
    pub fn load(
        ort_lib: &Path,
        onnx: &Path,
        config_json: &Path,
        options: PiperOptions,
    ) -> Result<Piper, PiperError> {
        let config = VoiceConfig::from_file(config_json)?;
        let espeak = Espeak::new(None)?;
        let mut ids = HashMap::new();
        for (phoneme, id) in &config.phoneme_id_map {
            let mut chars = phoneme.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if !id.is_empty() => {
                    ids.insert(c, id.clone());
                }
                _ => {
                    return Err(PiperError::Init(format!(
                        "phoneme_id_map entry {phoneme:?} → {id:?} is not one code point with ids"
                    )));
                }
            }
        }
        let special = |c: char| {
            ids.get(&c)
                .cloned()
                .ok_or_else(|| PiperError::Init(format!("phoneme_id_map has no {c:?}")))
        };
        let (bos, eos, pad) = (special('^')?, special('$')?, special('_')?);

        let env = ort_environment(ort_lib).map_err(PiperError::Init)?;
        if !onnx.is_file() {
            return Err(PiperError::Init(format!("no model at {}", onnx.display())));
        }
        let options = PiperOptions {
            sessions: options.sessions.max(1),
            intra_threads: options.intra_threads.max(1),
            max_unit_phonemes: options.max_unit_phonemes.max(16),
            ..options
        };
        let mut sessions = Vec::with_capacity(options.sessions);
        for _ in 0..options.sessions {
            sessions.push(session(&env, onnx, options.intra_threads).map_err(PiperError::Init)?);
        }
        let first = sessions
            .first()
            .ok_or_else(|| PiperError::Init("no session".into()))?;
        let inputs: Vec<&str> = first.inputs().iter().map(|i| i.name()).collect();
        for needed in ["input", "input_lengths", "scales"] {
            if !inputs.contains(&needed) {
                return Err(PiperError::Init(format!(
                    "{} is not a Piper model: no input {needed:?} (inputs {inputs:?})",
                    onnx.display()
                )));
            }
        }
        let has_sid = inputs.contains(&"sid");
        let output_name = first
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| PiperError::Init(format!("{} has no outputs", onnx.display())))?;
        let cache = Mutex::new(BoundedCache::new(options.cache_units));
        Ok(Piper {
            config,
            options,
            ids,
            bos,
            eos,
            pad,
            has_sid,
            output_name,
            pool: SessionPool {
                free: Mutex::new(sessions),
                returned: Condvar::new(),
            },
            espeak,
            cache,
            in_flight: Mutex::new(HashSet::new()),
            landed: Condvar::new(),
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// The voice's default scales (from its config).
    pub fn default_scales(&self) -> Scales {
        let i = self.config.inference;
        Scales {
            noise_scale: i.noise_scale,
            length_scale: i.length_scale,
            noise_w: i.noise_w,
        }
    }

    /// One clause's phonemes as Piper builds them: IPA + terminator (+ a space after `, : ;`),
    /// NFD-decomposed into code points. `terminator` `' '` means none.
    fn clause_phonemes(ipa: &str, terminator: char, out: &mut Vec<char>) {
        let mut s = String::with_capacity(ipa.len() + 2);
        s.push_str(ipa);
        if terminator != ' ' {
            s.push(terminator);
            if matches!(terminator, ',' | ':' | ';') {
                s.push(' ');
            }
        }
        out.extend(s.nfd());
    }

    /// Ids for a sequence of phonemes: `^ _ (id _)… $`. Returns the ids and how many phonemes
    /// were not in the map (skipped).
    fn ids_for(&self, phonemes: &[char]) -> (Vec<i64>, usize) {
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend_from_slice(&self.bos);
        ids.extend_from_slice(&self.pad);
        let mut unknown = 0;
        for p in phonemes {
            match self.ids.get(p) {
                Some(id) => {
                    ids.extend_from_slice(id);
                    ids.extend_from_slice(&self.pad);
                }
                None => unknown += 1,
            }
        }
        ids.extend_from_slice(&self.eos);
        (ids, unknown)
    }

    /// The model ids for one clause (IPA from espeak, terminator `. , ? ! : ;` or `' '`), and the
    /// number of phonemes skipped because the voice does not know them.
    pub fn phoneme_ids(&self, ipa: &str, terminator: char) -> (Vec<i64>, usize) {
        let mut phonemes = Vec::new();
        Self::clause_phonemes(ipa, terminator, &mut phonemes);
        self.ids_for(&phonemes)
    }

    /// Groups clauses into units of phonemes (see the module docs).
    fn plan_units(&self, clauses: &[(String, char)]) -> Vec<Vec<char>> {
        let max = self.options.max_unit_phonemes;
        let mut units = Vec::new();
        let mut current: Vec<char> = Vec::new();
        for (ipa, terminator) in clauses {
            let mut clause = Vec::new();
            Self::clause_phonemes(ipa, *terminator, &mut clause);
            if !current.is_empty() && current.len() + 1 + clause.len() > max {
                units.push(std::mem::take(&mut current));
            }
            // A clause without a terminator (ellipsis, a cut in a long clause) would run into the
            // next one's first word; piper-tts lets it, here they are kept apart by a space.
            if current.last().is_some_and(|c| !c.is_whitespace()) {
                current.push(' ');
            }
            // A clause longer than the limit is cut after the last space that fits.
            while clause.len() > max {
                let cut = clause[..max]
                    .iter()
                    .rposition(|&c| c == ' ')
                    .filter(|&i| i > 0)
                    .map_or(max, |i| i + 1);
                units.push(clause.drain(..cut).collect());
            }
            current.extend(clause);
            let sentence_end = matches!(terminator, '.' | '?' | '!');
            if sentence_end || self.options.unit == SynthesisUnit::Clause {
                units.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            units.push(current);
        }
        units.retain(|u| u.iter().any(|c| !c.is_whitespace()));
        units
    }

    /// The units `text` would be synthesised as: each unit's phonemes and ids (for tests,
    /// debugging and comparison with piper-tts).
    pub fn text_to_ids(&self, text: &str) -> Result<Vec<(String, Vec<i64>)>, PiperError> {
        let clauses = self.espeak.phonemize(text, &self.config.espeak.voice)?;
        Ok(self
            .plan_units(&clauses)
            .into_iter()
            .map(|phonemes| {
                let ids = self.ids_for(&phonemes).0;
                (phonemes.into_iter().collect(), ids)
            })
            .collect())
    }

    /// Runs the model on one unit's ids; returns raw f32 audio (nominally within ±1). Waits for
    /// a free session if all are busy. Empty ids give empty audio.
    pub fn synthesize_clause(&self, ids: &[i64], scales: Scales) -> Result<Vec<f32>, PiperError> {
        self.synthesize_clause_timed(ids, scales)
            .map(|(audio, _)| audio)
    }

    fn synthesize_clause_timed(
        &self,
        ids: &[i64],
        scales: Scales,
    ) -> Result<(Vec<f32>, UnitStats), PiperError> {
        let mut stats = UnitStats {
            ids: ids.len(),
            ..UnitStats::default()
        };
        if ids.is_empty() {
            return Ok((Vec::new(), stats));
        }
        let scales = scales.sanitized(self.default_scales());
        let n = ids.len();
        let input =
            TensorRef::from_array_view(([1usize, n], ids)).map_err(synth_err("input tensor"))?;
        let n_i64 =
            i64::try_from(n).map_err(|_| PiperError::Synthesis("too many phoneme ids".into()))?;
        let lengths = Tensor::from_array(([1usize], vec![n_i64]))
            .map_err(synth_err("input_lengths tensor"))?;
        let scales_t = Tensor::from_array((
            [3usize],
            vec![scales.noise_scale, scales.length_scale, scales.noise_w],
        ))
        .map_err(synth_err("scales tensor"))?;
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = vec![
            ("input", input.into()),
            ("input_lengths", lengths.into()),
            ("scales", scales_t.into()),
        ];
        if self.has_sid {
            let sid = Tensor::from_array(([1usize], vec![self.options.speaker_id]))
                .map_err(synth_err("sid tensor"))?;
            inputs.push(("sid", sid.into()));
        }

        let waited = Instant::now();
        let mut pooled = self.pool.take();
        stats.wait_us = micros(waited);
        let session = pooled
            .session
            .as_mut()
            .ok_or_else(|| PiperError::Synthesis("session pool returned nothing".into()))?;
        let started = Instant::now();
        let outputs = session.run(inputs).map_err(synth_err("inference"))?;
        let value = outputs.get(&self.output_name).ok_or_else(|| {
            PiperError::Synthesis(format!("model returned no {:?}", self.output_name))
        })?;
        let (_, audio) = value
            .try_extract_tensor::<f32>()
            .map_err(synth_err("reading the audio"))?;
        let audio = audio.to_vec();
        drop(outputs);
        drop(pooled);
        stats.infer_us = micros(started);
        stats.samples = audio.len();
        Ok((audio, stats))
    }

    /// Converts one unit's raw audio to i16 as piper-tts does: optional peak normalisation,
    /// volume, clamp to ±1, scale by 32767 (truncating). NaN becomes 0.
    pub fn to_i16(&self, audio: &[f32]) -> Vec<i16> {
        let mut gain = self.options.volume;
        if !gain.is_finite() {
            gain = 1.0;
        }
        if self.options.normalize {
            let peak = audio
                .iter()
                .filter(|x| x.is_finite())
                .fold(0.0f32, |m, x| m.max(x.abs()));
            gain = if peak < 1e-8 { 0.0 } else { gain / peak };
        }
        audio
            .iter()
            .map(|&x| {
                let y = (x * gain).clamp(-1.0, 1.0); // NaN stays NaN …
                (y * 32767.0) as i16 // … and casts to 0
            })
            .collect()
    }

    fn lock_in_flight(&self) -> MutexGuard<'_, HashSet<UnitKey>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A cacheable unit: from the cache, or synthesised and cached, or — when another synthesis
    /// of it is under way — that one's result once it lands (see the module docs).
    fn cached_unit(
        &self,
        key: &UnitKey,
        scales: Scales,
        stats: &mut PiperStats,
    ) -> Result<Arc<[i16]>, PiperError> {
        {
            // Lock order: in-flight set, then cache (a landing synthesis inserts into the cache
            // before it takes the set's lock, and never holds both).
            let mut flying = self.lock_in_flight();
            loop {
                if let Some(samples) = self.lock_cache().get(key) {
                    stats.cached_units += 1;
                    return Ok(samples);
                }
                if !flying.contains(key) {
                    break;
                }
                flying = self
                    .landed
                    .wait(flying)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Not cached (or evicted, or the other synthesis failed): this one synthesises it.
            flying.insert(key.clone());
        }
        let _landing = Landing { piper: self, key };
        let (audio, unit) = self.synthesize_clause_timed(&key.0, scales)?;
        stats.units.push(unit);
        let samples: Arc<[i16]> = self.to_i16(&audio).into();
        if !samples.is_empty() {
            self.lock_cache().insert(key.clone(), samples.clone());
        }
        Ok(samples)
    }

    fn lock_cache(&self) -> MutexGuard<'_, BoundedCache<UnitKey, Arc<[i16]>>> {
        // Entries are inserted whole: a poisoned lock leaves nothing half-written.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Units in the unit cache now.
    pub fn cached_units(&self) -> usize {
        self.lock_cache().len()
    }

    /// Synthesises `text` with the voice's default scales. See [`Piper::synthesize_with`].
    pub fn synthesize(
        &self,
        text: &str,
        on_chunk: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<PiperStats, PiperError> {
        self.synthesize_with(text, self.default_scales(), on_chunk)
    }

    /// Synthesises `text` unit by unit, calling `on_chunk` with each unit's i16 audio (at
    /// [`Piper::sample_rate`]) as soon as it is ready; `on_chunk` returning false stops after that
    /// unit (not an error). Blank or unspeakable text produces no audio and no error.
    pub fn synthesize_with(
        &self,
        text: &str,
        scales: Scales,
        on_chunk: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<PiperStats, PiperError> {
        let started = Instant::now();
        let mut stats = PiperStats::default();
        let clauses = self.espeak.phonemize(text, &self.config.espeak.voice)?;
        stats.phonemize_us = micros(started);
        // Only noiseless units are a function of their ids (see the module docs).
        let scales = scales.sanitized(self.default_scales());
        let cacheable = scales.noise_scale == 0.0 && scales.noise_w == 0.0;
        for phonemes in self.plan_units(&clauses) {
            let (ids, unknown) = self.ids_for(&phonemes);
            stats.unknown_phonemes += unknown;
            let key = (ids, scales.length_scale.to_bits());
            let samples = if cacheable {
                self.cached_unit(&key, scales, &mut stats)?
            } else {
                let (audio, unit) = self.synthesize_clause_timed(&key.0, scales)?;
                stats.units.push(unit);
                Arc::from(self.to_i16(&audio))
            };
            if samples.is_empty() {
                continue;
            }
            if stats.chunks == 0 {
                stats.first_chunk_us = micros(started).max(1);
            }
            stats.chunks += 1;
            stats.samples += samples.len();
            if !on_chunk(&samples) {
                stats.aborted = true;
                break;
            }
        }
        Ok(stats)
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl TtsEngine for Piper {
    fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    /// Synthesises sentence by sentence, each handed to `on_chunk` as soon as it is ready. The
    /// voice's `rate_wpm` scales the speaking time against espeak-ng's normal 175 wpm (Piper has
    /// no pitch control; `pitch` and the espeak voice name are not used: the phonemes come from
    /// the Piper voice's own espeak voice).
    fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        on_chunk: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<SynthStats, TtsError> {
        let mut scales = self.default_scales();
        if voice.rate_wpm > 0 {
            scales.length_scale *= 175.0 / voice.rate_wpm as f32;
        }
        if self.options.deterministic {
            scales = scales.deterministic();
        }
        let stats = self.synthesize_with(text, scales, on_chunk)?;
        if stats.unknown_phonemes > 0 {
            tracing::debug!(
                unknown = stats.unknown_phonemes,
                "phonemes the Piper voice does not know were skipped"
            );
        }
        Ok(SynthStats {
            samples: stats.samples,
            chunks: stats.chunks,
            aborted: stats.aborted,
            first_chunk_us: stats.first_chunk_us,
        })
    }
}
