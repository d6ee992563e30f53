//! The speech stack shared by every call: one whisper model behind a bounded worker pool, and
//! the TTS engine. Loading refuses with a clear message when a configured model is missing or
//! corrupt (the sha256 manifest of `switchboard models install`).

use crate::asr::pool::AsrPool;
use crate::asr::whisper::{Transcript, Whisper};
use crate::audio::resample::StreamResampler;
use crate::call::{TurnModelConfig, VoiceCheckConfig};
use crate::config::Config;
use crate::models::whisper::GGML_FILE;
use crate::models::{ONNXRUNTIME, SILERO_VAD, SMART_TURN};
use crate::onnx::silero::Silero;
use crate::onnx::smart_turn::SmartTurn;
use crate::tts::cache::BoundedCache;
use crate::tts::espeak::Espeak;
use crate::tts::normalize::for_speech;
use crate::tts::piper::{Piper, PiperOptions, SynthesisUnit};
use crate::tts::{EngineKind, Fallback, PiperUnit, TtsEngine, Voice};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Phrases kept synthesised (greetings and questions repeat across calls).
const TTS_CACHE_ENTRIES: usize = 256;
/// Streamed synthesis hands the call at least this much audio at a time (a Piper clause is one
/// piece however long; espeak-ng's small buffers are gathered).
pub const STREAM_PIECE_MS: usize = 250;
/// The most audio the call waits for before it starts playing a reply (unless the reply is
/// shorter). How much it waits for is what the next clause will take to synthesise at the pace
/// the engine is going (see [`NEXT_CLAUSE_MS`]), so a busy machine plays a little later instead
/// of leaving a gap after "Sure,", and a quiet one starts at once.
pub const STREAM_FIRST_MS: usize = 1000;
/// The audio length of a long next clause, for that estimate.
pub const NEXT_CLAUSE_MS: f64 = 4000.0;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The configured voice: Piper (installed by `switchboard models install`) with espeak-ng as its
/// fallback, or espeak-ng alone.
pub fn load_tts(cfg: &Config) -> Result<Arc<dyn TtsEngine>> {
    let espeak = Espeak::new(None)?;
    let t = &cfg.speech.tts;
    match t.engine {
        EngineKind::Espeak => Ok(Arc::new(espeak)),
        EngineKind::Piper => {
            let need = |name: &str| {
                crate::models::verify(&cfg.models_dir, name).with_context(|| {
                    format!(
                        "the Piper voice needs model {name} (or set [speech.tts] engine = \"espeak\")"
                    )
                })
            };
            let runtime = need(ONNXRUNTIME.name)?.join(ONNXRUNTIME.files[0]);
            let spec = crate::models::spec(&t.piper_voice)
                .filter(|s| s.files.len() == 2 && s.files[0].ends_with(".onnx"))
                .with_context(|| format!("{} is not a Piper voice", t.piper_voice))?;
            let dir = need(spec.name)?;
            let options = PiperOptions {
                sessions: t.piper_sessions,
                intra_threads: t.piper_threads,
                deterministic: t.deterministic,
                cache_units: t.piper_cache_units,
                unit: match t.piper_unit {
                    PiperUnit::Clause => SynthesisUnit::Clause,
                    PiperUnit::Sentence => SynthesisUnit::Sentence,
                },
                ..PiperOptions::default()
            };
            let piper = Piper::load(
                &runtime,
                &dir.join(spec.files[0]),
                &dir.join(spec.files[1]),
                options,
            )?;
            // ONNX Runtime's first run of a session is several times slower than the rest:
            // take it here, not on a caller's first reply.
            piper.synthesize(
                "Thanks for calling, I can help you with your reservation and your bill today.",
                &mut |_| true,
            )?;
            Ok(Arc::new(Fallback::new(Box::new(piper), Box::new(espeak))?))
        }
    }
}

/// Smart Turn v3.2 on the installed ONNX Runtime.
pub fn load_turn_model(cfg: &Config) -> Result<SmartTurn> {
    let need = |name: &str| {
        crate::models::verify(&cfg.models_dir, name).with_context(|| {
            format!(
                "the end-of-turn model needs {name} (or set [speech.turn_model] enabled = false)"
            )
        })
    };
    let runtime = need(ONNXRUNTIME.name)?.join(ONNXRUNTIME.files[0]);
    let model = need(SMART_TURN.name)?.join(SMART_TURN.files[0]);
    let env = crate::onnx::ort_environment(&runtime).map_err(anyhow::Error::msg)?;
    SmartTurn::load(&env, &model).map_err(anyhow::Error::msg)
}

/// Silero VAD on the installed ONNX Runtime, at the core's caller rate (16 kHz).
pub fn load_vad(cfg: &Config) -> Result<Silero> {
    let need = |name: &str| {
        crate::models::verify(&cfg.models_dir, name).with_context(|| {
            format!("the voice check needs {name} (or set [speech.vad] enabled = false)")
        })
    };
    let runtime = need(ONNXRUNTIME.name)?.join(ONNXRUNTIME.files[0]);
    let model = need(SILERO_VAD.name)?.join(SILERO_VAD.files[0]);
    let env = crate::onnx::ort_environment(&runtime).map_err(anyhow::Error::msg)?;
    Silero::load(&env, &model, crate::call::CALLER_RATE).map_err(anyhow::Error::msg)
}

#[derive(Clone)]
pub struct Speech {
    pub asr: AsrPool,
    pub tts: Arc<dyn TtsEngine>,
    /// The end-of-turn model (Smart Turn), when `[speech.turn_model]` enables it.
    pub turn_model: Option<Arc<SmartTurn>>,
    turn_model_cfg: TurnModelConfig,
    /// The voice check (Silero VAD), when `[speech.vad]` enables it; one model for every call,
    /// each call with its own stream state.
    pub vad: Option<Arc<Silero>>,
    vad_cfg: VoiceCheckConfig,
    pub voice: Voice,
    /// Synthesised audio by (text, rate). Besides saving work, it makes replays deterministic:
    /// espeak-ng's rendering of a sentence varies by a few milliseconds with what it said before
    /// in the process, so each distinct phrase is rendered once.
    cache: Arc<Mutex<PhraseCache>>,
    /// Whether [`Speech::prewarm`] has work to do (Piper with `prewarm` on).
    prewarm: bool,
}

/// The voice's start-up synthesis ([`Speech::prewarm`]) running on its thread.
pub struct Prewarm {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(usize, std::time::Duration)>,
}

impl Prewarm {
    /// Waits until every sentence is synthesised: how many were, and the time it took.
    pub fn finish(self) -> (usize, std::time::Duration) {
        self.handle.join().unwrap_or_default()
    }

    /// Stops after the clause being synthesised and waits for that (at shutdown: the model's
    /// runtime must not be torn down under a running synthesis).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

/// Whole phrases by (text, rate).
type PhraseCache = BoundedCache<(String, u32), Arc<Vec<f32>>>;

impl Speech {
    pub fn load(cfg: &Config) -> Result<Speech> {
        let s = &cfg.speech;
        let dir = crate::models::verify(&cfg.models_dir, &s.asr_model)
            .with_context(|| format!("speech recognition needs model {}", s.asr_model))?;
        let model = Whisper::load(&dir.join(GGML_FILE), s.asr.clone())?;
        let workers = if s.asr_workers == 0 {
            AsrPool::default_workers()
        } else {
            s.asr_workers
        };
        let asr = AsrPool::start(&model, workers, workers * 4)?;
        let tts = load_tts(cfg)?;
        let turn_model = if s.turn_model.enabled {
            Some(Arc::new(load_turn_model(cfg)?))
        } else {
            None
        };
        let vad = if s.vad.enabled {
            Some(Arc::new(load_vad(cfg)?))
        } else {
            None
        };
        Ok(Speech {
            asr,
            tts,
            turn_model,
            turn_model_cfg: s.turn_model.clone(),
            vad,
            vad_cfg: s.vad.clone(),
            voice: s.voice.clone(),
            cache: Arc::new(Mutex::new(BoundedCache::new(TTS_CACHE_ENTRIES))),
            prewarm: s.tts.prewarm && s.tts.engine == EngineKind::Piper,
        })
    }

    /// Synthesises the line's fixed sentences (`fixed_sentences` of `strings`: in `serve`, the
    /// template's strings, the master's questions for each task's fields and the in-process
    /// agents' fixed questions) on a thread of its own, so that a reply opening with one finds
    /// it in the voice's unit cache (see `tts::piper`). Live calls share the voice's sessions
    /// with it and wait at most for one of its clauses. None when `[speech.tts] prewarm` is off or the engine is espeak-ng.
    pub fn prewarm(&self, strings: &[String]) -> Option<Prewarm> {
        let sentences = crate::tts::normalize::fixed_sentences(strings.iter().map(String::as_str));
        if !self.prewarm || sentences.is_empty() {
            return None;
        }
        let tts = self.tts.clone();
        let voice = self.voice.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("tts-prewarm".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let mut done = 0;
                for sentence in &sentences {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    // Stopping also ends a sentence after its current clause.
                    let mut go_on = |_: &[i16]| !stopped.load(Ordering::Relaxed);
                    match tts.synthesize(&for_speech(sentence), &voice, &mut go_on) {
                        Ok(stats) if !stats.aborted => done += 1,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(%sentence, "prewarming the voice: {e}"),
                    }
                }
                let took = started.elapsed();
                tracing::info!(
                    sentences = done,
                    of = sentences.len(),
                    ms = took.as_millis() as u64,
                    "the voice has the line's fixed sentences ready"
                );
                (done, took)
            });
        match spawned {
            Ok(handle) => Some(Prewarm { stop, handle }),
            Err(e) => {
                tracing::warn!("could not start prewarming the voice: {e}");
                None
            }
        }
    }

    /// What a call's core is told about the end-of-turn model: its settings when there is one.
    pub fn turn_model_config(&self) -> Option<TurnModelConfig> {
        self.turn_model
            .as_ref()
            .map(|_| self.turn_model_cfg.clone())
    }

    /// How long the end-of-turn model may wait for a two-thread transcription to finish
    /// (`[speech.turn_model] wait_decode_ms`, see `cpu::after_wide_decodes`).
    pub fn turn_model_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.turn_model_cfg.wait_decode_ms.into())
    }

    /// What a call's core is told about the voice check: its settings when there is a model.
    pub fn voice_check_config(&self) -> Option<VoiceCheckConfig> {
        self.vad.as_ref().map(|_| self.vad_cfg.clone())
    }

    /// Transcribes an utterance on the ASR pool; `prompt` is whisper's initial prompt.
    pub async fn transcribe(
        &self,
        audio: Vec<f32>,
        prompt: Option<Arc<str>>,
        joined: bool,
    ) -> Result<Transcript> {
        Ok(self.asr.transcribe(audio, prompt, joined).await?)
    }

    /// Synthesises `text` (normalised for speech) and returns it at `rate`, off the async workers.
    pub async fn synthesize(&self, text: &str, rate: u32) -> Result<Arc<Vec<f32>>> {
        let whole = Arc::new(Mutex::new(Vec::new()));
        let sink = whole.clone();
        self.synthesize_stream(text, rate, move |piece| {
            lock(&sink).extend_from_slice(&piece);
            true
        })
        .await?;
        let audio = std::mem::take(&mut *lock(&whole));
        Ok(Arc::new(audio))
    }

    /// Synthesises `text` and hands its audio at `rate` to `emit` piece by piece as the engine
    /// produces it (a clause at a time for Piper, the first piece long enough to cover the next
    /// clause's synthesis, see [`STREAM_FIRST_MS`]; pieces of at least [`STREAM_PIECE_MS`] for
    /// espeak-ng), so the caller hears the first clauses while the next are synthesised.
    /// `emit` runs on a blocking worker thread (it may block, e.g. `blocking_send`) and returns
    /// false to stop (the turn was cancelled). A phrase synthesised before comes whole from the
    /// cache. The pieces joined are exactly the whole clip resampled at once.
    pub async fn synthesize_stream(
        &self,
        text: &str,
        rate: u32,
        mut emit: impl FnMut(Arc<Vec<f32>>) -> bool + Send + 'static,
    ) -> Result<()> {
        let key = (text.to_string(), rate);
        let hit = self.lock_cache().get(&key);
        if let Some(hit) = hit {
            tokio::task::spawn_blocking(move || emit(hit)).await?;
            return Ok(());
        }
        let tts = self.tts.clone();
        let voice = self.voice.clone();
        let text = for_speech(text);
        let whole = tokio::task::spawn_blocking(move || -> Result<Option<Vec<f32>>> {
            let from = tts.sample_rate();
            let mut rs = StreamResampler::new(from, rate, (from as usize / 10).max(1))?;
            let mut skip = rs.latency_samples();
            let piece_len = (rate as usize * STREAM_PIECE_MS / 1000).max(1);
            let started = std::time::Instant::now();
            // Samples to have in hand before the first piece goes: enough to cover the next
            // clause's synthesis at the real-time factor so far, between a piece and a second.
            let first_len = |have: usize| -> usize {
                let audio_ms = have as f64 * 1000.0 / f64::from(rate);
                let rtf = started.elapsed().as_secs_f64() * 1000.0 / audio_ms.max(1.0);
                let ms =
                    (rtf * NEXT_CLAUSE_MS).clamp(STREAM_PIECE_MS as f64, STREAM_FIRST_MS as f64);
                (f64::from(rate) * ms / 1000.0) as usize
            };
            let mut whole: Vec<f32> = Vec::with_capacity(rate as usize * 4);
            let mut sent = 0usize;
            let mut input: Vec<f32> = Vec::new();
            let mut open = true;
            let mut send = |whole: &[f32], sent: &mut usize, open: &mut bool| {
                if *open && whole.len() > *sent {
                    *open = emit(Arc::new(whole[*sent..].to_vec()));
                    *sent = whole.len();
                }
            };
            let stats = tts.synthesize(&text, &voice, &mut |chunk| {
                input.clear();
                input.extend(chunk.iter().map(|s| *s as f32 / 32768.0));
                let before = whole.len();
                rs.process(&input, &mut whole);
                // The resampler's delay is silence it adds at the start: drop it.
                let trim = skip.min(whole.len() - before);
                whole.drain(before..before + trim);
                skip -= trim;
                let wanted = if sent == 0 {
                    first_len(whole.len())
                } else {
                    piece_len
                };
                if whole.len() - sent >= wanted {
                    send(&whole, &mut sent, &mut open);
                }
                open
            })?;
            if stats.aborted {
                return Ok(None);
            }
            let before = whole.len();
            rs.flush(&mut whole);
            let trim = skip.min(whole.len() - before);
            whole.drain(before..before + trim);
            // Exactly the whole clip's length resampled at once (the flush pads a chunk).
            let samples = (stats.samples as u64 * u64::from(rate)).div_ceil(u64::from(from));
            whole.truncate(samples as usize);
            sent = sent.min(whole.len());
            send(&whole, &mut sent, &mut open);
            Ok(open.then_some(whole))
        })
        .await??;
        // Only a phrase spoken to its end is kept.
        let Some(audio) = whole else {
            return Ok(());
        };
        self.lock_cache().insert(key, Arc::new(audio));
        Ok(())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, PhraseCache> {
        // Entries are inserted whole; a poisoned lock leaves nothing half-written.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
