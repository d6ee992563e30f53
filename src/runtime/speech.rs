//! The speech stack shared by every call: one whisper model behind a bounded worker pool, and
//! the TTS engine. Loading refuses with a clear message when a configured model is missing or
//! corrupt (the sha256 manifest of `switchboard models install`).

use crate::asr::pool::AsrPool;
use crate::asr::whisper::{Transcript, Whisper};
use crate::audio::resample::resample_whole;
use crate::config::Config;
use crate::models::whisper::GGML_FILE;
use crate::tts::espeak::Espeak;
use crate::tts::normalize::for_speech;
use crate::tts::{TtsEngine, Voice};
use anyhow::{Context, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Phrases kept synthesised (greetings and questions repeat across calls).
const TTS_CACHE_ENTRIES: usize = 256;

#[derive(Clone)]
pub struct Speech {
    pub asr: AsrPool,
    pub tts: Arc<dyn TtsEngine>,
    pub voice: Voice,
    /// Synthesised audio by (text, rate). Besides saving work, it makes replays deterministic:
    /// espeak-ng's rendering of a sentence varies by a few milliseconds with what it said before
    /// in the process, so each distinct phrase is rendered once.
    cache: Arc<Mutex<TtsCache>>,
}

#[derive(Default)]
struct TtsCache {
    map: HashMap<(String, u32), Arc<Vec<f32>>>,
    order: VecDeque<(String, u32)>,
}

impl Speech {
    pub fn load(cfg: &Config) -> Result<Speech> {
        let s = &cfg.speech;
        let dir = crate::models::verify(&cfg.models_dir, &s.asr_model)
            .with_context(|| format!("speech recognition needs model {}", s.asr_model))?;
        let model = Whisper::load(&dir.join(GGML_FILE), s.asr.clone())?;
        let workers = if s.asr_workers == 0 {
            AsrPool::default_workers(s.asr.threads)
        } else {
            s.asr_workers
        };
        let asr = AsrPool::start(&model, workers, workers * 4)?;
        let tts: Arc<dyn TtsEngine> = Arc::new(Espeak::new(None)?);
        Ok(Speech {
            asr,
            tts,
            voice: s.voice.clone(),
            cache: Arc::default(),
        })
    }

    /// Transcribes an utterance on the ASR pool; `prompt` is whisper's initial prompt.
    pub async fn transcribe(
        &self,
        audio: Vec<f32>,
        prompt: Option<Arc<str>>,
    ) -> Result<Transcript> {
        Ok(self.asr.transcribe(audio, prompt).await?)
    }

    /// Synthesises `text` (normalised for speech) and returns it at `rate`, off the async workers.
    pub async fn synthesize(&self, text: &str, rate: u32) -> Result<Arc<Vec<f32>>> {
        let key = (text.to_string(), rate);
        if let Some(hit) = self.lock_cache().map.get(&key) {
            return Ok(hit.clone());
        }
        let tts = self.tts.clone();
        let voice = self.voice.clone();
        let text = for_speech(text);
        let audio = tokio::task::spawn_blocking(move || -> Result<Vec<f32>> {
            let mut pcm: Vec<f32> = Vec::with_capacity(tts.sample_rate() as usize * 4);
            tts.synthesize(&text, &voice, &mut |chunk| {
                pcm.extend(chunk.iter().map(|s| *s as f32 / 32768.0));
                true
            })?;
            Ok(resample_whole(&pcm, tts.sample_rate(), rate)?)
        })
        .await??;
        let audio = Arc::new(audio);
        let mut cache = self.lock_cache();
        if cache.order.len() >= TTS_CACHE_ENTRIES
            && let Some(old) = cache.order.pop_front()
        {
            cache.map.remove(&old);
        }
        cache.order.push_back(key.clone());
        Ok(cache.map.entry(key).or_insert(audio).clone())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, TtsCache> {
        // Entries are inserted whole; a poisoned lock leaves nothing half-written.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
