//! Smart Turn v3.2: end-of-turn detection from the audio of the caller's current turn.
//!
//! # Model
//! `smart-turn-v3.2-cpu.onnx` (BSD-2, Daily; shipped in the PyPI `pipecat-ai` wheel). Input
//! `input_features` f32 [B, 80, 800], output `logits` f32 [B, 1], which is already a probability
//! (sigmoid inside the graph): > 0.5 means the turn is complete.
//!
//! # Features (Whisper log-mel, as `transformers.WhisperFeatureExtractor(chunk_length=8)` with
//! `do_normalize=True`, and pipecat's vendored numpy copy of it)
//! 1. Take the **last** 8 s of 16 kHz audio; shorter audio is zero-padded **at the front**.
//! 2. Zero mean / unit variance over those 128 000 samples (padding included):
//!    `(x - mean) / sqrt(var + 1e-7)`.
//! 3. Centred STFT: reflect-pad 200 samples each side, periodic Hann window, n_fft 400, hop 160
//!    → 801 frames × 201 bins, power spectrum |X|².
//! 4. 80 Slaney-scale, Slaney-normalised triangular mel filters over 0–8000 Hz (built like
//!    `transformers.audio_utils.mel_filter_bank(..., norm="slaney", mel_scale="slaney")`).
//! 5. `log10(max(mel, 1e-10))`, drop the last frame (→ 800), clamp below at (global max − 8),
//!    then `(x + 4) / 4`.
//!
//! Layout of the returned features: mel-major, `features[m * 800 + t]` (the model's [80, 800]).
//! The normalisation is done in f32 like the reference, the STFT in f64 like the reference
//! (which promotes to float64). Max abs difference against `transformers` was 1.2e-7 on most of
//! 40 clips and at most 7.3e-6 (numpy sums the float32 variance pairwise; one ulp of the std);
//! the probabilities were identical to Python onnxruntime's on all 40.
//!
//! # Sensitivity
//! The model is int8-quantised: its output takes discrete values and, for uncertain inputs,
//! jumps by up to ±0.3 when the features change by ~1e-6 (measured in Python). So compare
//! implementations on features; treat probabilities in 0.2–0.8 as uncertain.
//!
//! # Robustness
//! Non-finite samples (NaN, ±inf) count as 0; samples beyond ±1e6 are clipped. Empty audio gives
//! all-silence features (every value −1.5) and a valid probability — about 0.99, "complete", so
//! only ask after speech. Long audio costs the same as 8 s: only the tail is read.
//!
//! # Allocations
//! At load: the FFT plan, the window (400 f64), the sparse mel matrix (~400 non-zero f64), one
//! scratch set (frame 400 f64, spectrum + FFT scratch ~201 complex f64 each, power 201 f64,
//! features 64 000 f32 = 256 KB). Per call: [`SmartTurn::features`] allocates only the returned
//! `Vec` (256 KB). [`SmartTurn::predict`] computes into the scratch and hands ONNX Runtime a
//! borrowed view of it; the only Rust heap allocations are ort's wrappers for the input view and
//! the [1,1] output (3 per prediction, counted with a counting global allocator), plus ONNX
//! Runtime's own internal ones. If the scratch is busy (another thread is computing features or
//! running the model with it), the call allocates a temporary scratch (~270 KB) instead of
//! waiting.
//!
//! # Threads
//! One session behind a `Mutex` (`Session::run` takes `&mut self` in ort 2.0.0-rc.15), 1 intra-op
//! thread, no spinning: concurrent predictions queue for the session. ~40 ms each on one core, so
//! one session serves roughly 25 end-of-turn checks per second; use more `SmartTurn`s (each loads
//! its own 8.7 MB of weights) for more. A second session on [`WIDE_THREADS`] threads serves
//! [`SmartTurn::predict_wide`], for a quiet line where the other core is idle: ~30 ms instead
//! of ~40–50 (`switchboard load --calls 1`, `RUST_LOG=switchboard=debug`, "end of turn
//! predicted"). Both sessions give the same probability to within float summation order.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate the model expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples the model looks at: the last 8 s.
pub const WINDOW_SAMPLES: usize = 8 * SAMPLE_RATE as usize;
/// Mel bands.
pub const N_MELS: usize = 80;
/// STFT frames fed to the model (801 computed by Whisper, the last one dropped).
pub const N_FRAMES: usize = 800;
/// Length of a feature vector, [`N_MELS`] × [`N_FRAMES`].
pub const FEATURES_LEN: usize = N_MELS * N_FRAMES;

const N_FFT: usize = 400;
const HOP: usize = 160;
const N_BINS: usize = N_FFT / 2 + 1;
const MEL_FLOOR: f64 = 1e-10;
const NORM_EPS: f64 = 1e-7;
const INPUT_NAME: &str = "input_features";
const OUTPUT_NAME: &str = "logits";

/// One triangular mel filter: its non-zero weights, starting at FFT bin `first_bin`.
struct MelFilter {
    first_bin: usize,
    weights: Box<[f64]>,
}

/// Reusable working memory for one feature computation.
struct Scratch {
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    features: Vec<f32>,
}

/// The Whisper-style log-mel front end (no model). Immutable after construction; `Send + Sync`.
pub struct FeatureExtractor {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Box<[f64]>,
    mel: Box<[MelFilter]>,
}

impl FeatureExtractor {
    pub fn new() -> FeatureExtractor {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        // Periodic Hann (torch.hann_window / np.hanning(N + 1)[:-1]).
        let window = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        let dense = mel_filter_bank(N_BINS, N_MELS, 0.0, 8000.0, SAMPLE_RATE);
        let mel = (0..N_MELS)
            .map(|m| {
                let column = |b: usize| dense[b * N_MELS + m];
                let first = (0..N_BINS).find(|&b| column(b) > 0.0).unwrap_or(0);
                let last = (0..N_BINS).rev().find(|&b| column(b) > 0.0).unwrap_or(0);
                let weights = if last >= first {
                    (first..=last).map(column).collect()
                } else {
                    Box::default()
                };
                MelFilter {
                    first_bin: first,
                    weights,
                }
            })
            .collect();
        FeatureExtractor { fft, window, mel }
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            frame: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            fft_scratch: self.fft.make_scratch_vec(),
            power: vec![0.0; N_BINS],
            features: vec![0.0; FEATURES_LEN],
        }
    }

    /// Computes the features of the last 8 s of `audio_16k` into `scratch.features`.
    fn compute(&self, audio_16k: &[f32], scratch: &mut Scratch) {
        let tail = &audio_16k[audio_16k.len().saturating_sub(WINDOW_SAMPLES)..];
        let lead = WINDOW_SAMPLES - tail.len(); // zeros in front
        // Non-finite samples count as 0; absurd magnitudes are clipped so no f32 step overflows.
        let clean = |x: f32| {
            if x.is_finite() {
                x.clamp(-1e6, 1e6) as f64
            } else {
                0.0
            }
        };

        // Zero mean / unit variance over the padded window. The reference does this in float32
        // ((x - mean) / sqrt(var + 1e-7), every operation rounded to f32); doing the same here
        // (with mean and variance summed in f64, then rounded) brings the features from ~8e-6
        // to ~1e-7 of the reference, which matters because the int8 model's output jumps on
        // input differences of ~1e-6 (see the module docs).
        let n = WINDOW_SAMPLES as f64;
        let mean = (tail.iter().map(|&x| clean(x)).sum::<f64>() / n) as f32;
        let pad_centered = 0.0f32 - mean;
        let mut sq = lead as f64 * (pad_centered as f64) * (pad_centered as f64);
        for &x in tail {
            let d = (clean(x) as f32 - mean) as f64;
            sq += d * d;
        }
        let std = ((sq / n) as f32 + NORM_EPS as f32).sqrt();
        let pad_value = (pad_centered / std) as f64;
        let sample = |j: usize| -> f64 {
            if j < lead {
                pad_value
            } else {
                ((clean(tail[j - lead]) as f32 - mean) / std) as f64
            }
        };
        // Index into the reflect-padded signal (N_FFT/2 each side) → index into the window.
        let reflect = |p: usize| -> usize {
            let i = p as isize - (N_FFT / 2) as isize;
            let last = WINDOW_SAMPLES as isize - 1;
            let i = if i < 0 {
                -i
            } else if i > last {
                2 * last - i
            } else {
                i
            };
            i as usize
        };

        let Scratch {
            frame,
            spectrum,
            fft_scratch,
            power,
            features,
        } = scratch;
        let mut max = f32::NEG_INFINITY;
        for t in 0..N_FRAMES {
            let start = t * HOP;
            for (k, slot) in frame.iter_mut().enumerate() {
                *slot = sample(reflect(start + k)) * self.window[k];
            }
            // Lengths are the plan's own, so this cannot fail; on error the frame stays silent.
            if self
                .fft
                .process_with_scratch(frame, spectrum, fft_scratch)
                .is_err()
            {
                spectrum
                    .iter_mut()
                    .for_each(|c| *c = Complex::new(0.0, 0.0));
            }
            for (p, c) in power.iter_mut().zip(spectrum.iter()) {
                *p = c.norm_sqr();
            }
            for (m, filter) in self.mel.iter().enumerate() {
                let bins = &power[filter.first_bin..filter.first_bin + filter.weights.len()];
                let energy: f64 = bins
                    .iter()
                    .zip(filter.weights.iter())
                    .map(|(p, w)| p * w)
                    .sum();
                let log = energy.max(MEL_FLOOR).log10() as f32;
                max = max.max(log);
                features[m * N_FRAMES + t] = log;
            }
        }
        let floor = max - 8.0;
        for v in features.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
    }
}

impl Default for FeatureExtractor {
    fn default() -> Self {
        FeatureExtractor::new()
    }
}

/// Slaney mel scale (librosa's default, `htk=False`).
fn hz_to_mel(hz: f64) -> f64 {
    if hz >= 1000.0 {
        15.0 + (hz / 1000.0).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= 15.0 {
        1000.0 * ((6.4f64.ln() / 27.0) * (mel - 15.0)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// `numpy.linspace(start, stop, num)`, including its exact last point.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| start + i as f64 * step).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// Dense [num_frequency_bins × num_mel_filters] (row-major) filter bank, as
/// `transformers.audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")` builds it.
fn mel_filter_bank(bins: usize, mels: usize, fmin: f64, fmax: f64, sampling_rate: u32) -> Vec<f64> {
    let edges: Vec<f64> = linspace(hz_to_mel(fmin), hz_to_mel(fmax), mels + 2)
        .into_iter()
        .map(mel_to_hz)
        .collect();
    let fft_freqs = linspace(0.0, (sampling_rate / 2) as f64, bins);
    let mut out = vec![0.0; bins * mels];
    for (b, &f) in fft_freqs.iter().enumerate() {
        for m in 0..mels {
            let down = (f - edges[m]) / (edges[m + 1] - edges[m]);
            let up = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
            let enorm = 2.0 / (edges[m + 2] - edges[m]);
            out[b * mels + m] = down.min(up).max(0.0) * enorm;
        }
    }
    out
}

/// Intra-op threads of the session [`SmartTurn::predict_wide`] uses.
pub const WIDE_THREADS: usize = 2;

/// A loaded Smart Turn model. `Send + Sync`: share it behind an `Arc`.
pub struct SmartTurn {
    extractor: FeatureExtractor,
    scratch: Mutex<Scratch>,
    session: Mutex<Session>,
    /// The same model on [`WIDE_THREADS`] threads.
    wide: Mutex<Session>,
}

impl std::fmt::Debug for SmartTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartTurn").finish_non_exhaustive()
    }
}

impl SmartTurn {
    /// Loads the model (a session on 1 intra-op thread and one on [`WIDE_THREADS`], no
    /// spinning), checks its input and output, and runs one inference on silence on each (which
    /// also takes the first-run cost out of the first call).
    pub fn load(env: &Environment, onnx: &Path) -> Result<SmartTurn, String> {
        let session = crate::onnx::session(env, onnx, 1)?;
        let wide = crate::onnx::session(env, onnx, WIDE_THREADS)?;
        let input = session
            .inputs()
            .iter()
            .find(|i| i.name() == INPUT_NAME)
            .ok_or_else(|| {
                format!(
                    "{} is not a Smart Turn model: no input {INPUT_NAME:?}",
                    onnx.display()
                )
            })?;
        if let Some(shape) = input.dtype().tensor_shape()
            && (shape.len() != 3 || shape[1] != N_MELS as i64 || shape[2] != N_FRAMES as i64)
        {
            return Err(format!(
                "{}: input {INPUT_NAME:?} has shape {shape:?}, expected [B, 80, 800]",
                onnx.display()
            ));
        }
        if session.inputs().len() != 1 || !session.outputs().iter().any(|o| o.name() == OUTPUT_NAME)
        {
            return Err(format!(
                "{} is not a Smart Turn model (inputs/outputs differ)",
                onnx.display()
            ));
        }
        let extractor = FeatureExtractor::new();
        let scratch = extractor.scratch();
        let turn = SmartTurn {
            extractor,
            scratch: Mutex::new(scratch),
            session: Mutex::new(session),
            wide: Mutex::new(wide),
        };
        for p in [turn.predict(&[])?, turn.predict_wide(&[])?] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "{}: probability {p} on silence is not in [0, 1]",
                    onnx.display()
                ));
            }
        }
        Ok(turn)
    }

    /// The model's input for `audio_16k` (mono, 16 kHz, nominally ±1): 80 × 800 values,
    /// `[m * 800 + t]`. Allocates the returned vector.
    pub fn features(&self, audio_16k: &[f32]) -> Vec<f32> {
        self.with_scratch(|s| {
            self.extractor.compute(audio_16k, s);
            s.features.clone()
        })
    }

    /// Probability (0..1) that the turn in `audio_16k` (mono, 16 kHz; only the last 8 s count) is
    /// complete. Blocks for one inference (~40 ms on one core) plus any queued ones.
    pub fn predict(&self, audio_16k: &[f32]) -> Result<f32, String> {
        self.with_scratch(|s| {
            self.extractor.compute(audio_16k, s);
            self.predict_features(&s.features)
        })
    }

    /// [`SmartTurn::predict`] on the [`WIDE_THREADS`]-thread session, for when the other cores
    /// are idle; on the one-thread session if another prediction holds the wide one.
    pub fn predict_wide(&self, audio_16k: &[f32]) -> Result<f32, String> {
        self.with_scratch(|s| {
            self.extractor.compute(audio_16k, s);
            match self.wide.try_lock() {
                Ok(mut wide) => run(&mut wide, &s.features),
                Err(TryLockError::Poisoned(p)) => run(&mut p.into_inner(), &s.features),
                Err(TryLockError::WouldBlock) => self.predict_features(&s.features),
            }
        })
    }

    /// Runs the model on precomputed features (`FEATURES_LEN` values, layout as [`SmartTurn::features`]).
    pub fn predict_features(&self, features: &[f32]) -> Result<f32, String> {
        run(&mut lock(&self.session), features)
    }

    /// Runs `f` with the shared scratch, or with a fresh one if another thread holds it.
    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        match self.scratch.try_lock() {
            Ok(mut guard) => f(&mut guard),
            Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => f(&mut self.extractor.scratch()),
        }
    }
}

/// One inference of `session` on `features` (`FEATURES_LEN` values).
fn run(session: &mut Session, features: &[f32]) -> Result<f32, String> {
    if features.len() != FEATURES_LEN {
        return Err(format!(
            "expected {FEATURES_LEN} feature values, got {}",
            features.len()
        ));
    }
    let input = TensorRef::from_array_view(([1usize, N_MELS, N_FRAMES], features))
        .map_err(|e| format!("input tensor: {e}"))?;
    let outputs = session
        .run(ort::inputs![input])
        .map_err(|e| format!("Smart Turn inference: {e}"))?;
    let value = outputs
        .get(OUTPUT_NAME)
        .ok_or_else(|| format!("model returned no {OUTPUT_NAME:?}"))?;
    let (_, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| format!("reading {OUTPUT_NAME:?}: {e}"))?;
    match data.first() {
        Some(p) if p.is_finite() => Ok(p.clamp(0.0, 1.0)),
        Some(p) => Err(format!("model returned {p}")),
        None => Err("model returned an empty output".into()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_bank_is_slaney() {
        let bank = mel_filter_bank(N_BINS, N_MELS, 0.0, 8000.0, SAMPLE_RATE);
        // Every filter has some weight; every weight is finite and non-negative.
        for m in 0..N_MELS {
            let sum: f64 = (0..N_BINS).map(|b| bank[b * N_MELS + m]).sum();
            assert!(sum > 0.0, "filter {m} empty");
        }
        assert!(bank.iter().all(|w| w.is_finite() && *w >= 0.0));
        // Below 1 kHz the Slaney scale is linear: 3 mel per 200 Hz.
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        assert!((mel_to_hz(hz_to_mel(3000.0)) - 3000.0).abs() < 1e-9);
    }

    #[test]
    fn odd_audio_gives_finite_features() {
        let fx = FeatureExtractor::new();
        let mut s = fx.scratch();
        for audio in [
            vec![],
            vec![f32::NAN; 1000],
            vec![f32::INFINITY, f32::NEG_INFINITY, 0.5],
            vec![1e30; 500],
            vec![3e38, -3e38, 1.0],
            (0..300_000).map(|i| (i as f32 * 0.01).sin()).collect(),
        ] {
            fx.compute(&audio, &mut s);
            assert!(s.features.iter().all(|v| v.is_finite()));
        }
        fx.compute(&[], &mut s);
        assert!(s.features.iter().all(|&v| v == -1.5));
    }
}
