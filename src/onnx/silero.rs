//! Silero VAD v6: speech probability per 32 ms window, streaming, at 8 or 16 kHz.
//!
//! # Model
//! `silero_vad.onnx` from the PyPI `silero-vad` wheel (MIT; `switchboard models install`
//! extracts it as `silero-vad-6`). Inputs, in this order:
//! `input` f32 [1, C + W], `state` f32 [2, 1, 128], `sr` int64 scalar; outputs `output` f32
//! [1, 1] (speech probability) and `stateN` f32 [2, 1, 128]. W = 512 new samples and C = 64
//! samples of context at 16 kHz; W = 256, C = 32 at 8 kHz.
//!
//! # Context (as `silero_vad.utils_vad.OnnxWrapper` does)
//! The context is the last C samples of the previous model input, i.e. the tail of the previous
//! window; it starts as zeros, and so does the state. Each window's input is context ++ window.
//!
//! # Per-call state
//! [`Silero`] holds the session (shared by all calls); each call gets its own [`SileroStream`]
//! with the recurrent state, the context and the partial window. Streams are `Send`.
//!
//! # Allocations
//! At [`Silero::stream`]: three ORT tensors owned by the stream (input 2.3 KB at 16 kHz, 1.1 KB
//! at 8 kHz; state 1 KB; sr). Windows are written into the input tensor in place and passed to
//! the model as views, so this code allocates nothing per window. Inside `Session::run`, ort
//! wraps the two output tensors ([1,1] and [2,1,128], allocated by ONNX Runtime) — 4 Rust heap
//! allocations per window, counted with a counting global allocator — and ONNX Runtime makes its
//! own internal allocations (mostly from its arena). Input/output names go through stack buffers.
//!
//! # Threads
//! One session behind a `Mutex`, 1 intra-op thread, no spinning. A window costs ~0.09 ms at
//! 16 kHz and ~0.07 ms at 8 kHz, so one session keeps up with hundreds of concurrent calls.
//! Silence, white noise and a 1 kHz tone all stay below 0.1.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

const STATE_LEN: usize = 2 * 128;

/// A loaded Silero VAD model for one sample rate. `Send + Sync`; share it behind an `Arc`.
pub struct Silero {
    session: Mutex<Session>,
    sample_rate: u32,
    window: usize,
    context: usize,
}

impl std::fmt::Debug for Silero {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Silero")
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl Silero {
    /// Loads the model for `sample_rate` 8000 or 16000 and checks its inputs and outputs.
    pub fn load(env: &Environment, onnx: &Path, sample_rate: u32) -> Result<Silero, String> {
        let (window, context) = match sample_rate {
            8000 => (256, 32),
            16000 => (512, 64),
            other => return Err(format!("Silero VAD runs at 8000 or 16000 Hz, not {other}")),
        };
        let session = super::session(env, onnx, 1)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        // The run passes inputs by position, so the order matters.
        if inputs != ["input", "state", "sr"] || outputs.len() != 2 {
            return Err(format!(
                "{} is not a Silero VAD v5/v6 model (inputs {inputs:?}, outputs {outputs:?})",
                onnx.display()
            ));
        }
        Ok(Silero {
            session: Mutex::new(session),
            sample_rate,
            window,
            context,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// New samples per model run (256 at 8 kHz, 512 at 16 kHz; 32 ms).
    pub fn window_samples(&self) -> usize {
        self.window
    }

    /// A fresh stream (zero state and context) for one call.
    pub fn stream(self: &Arc<Self>) -> Result<SileroStream, String> {
        let total = self.context + self.window;
        let input = Tensor::from_array(([1usize, total], vec![0.0f32; total]))
            .map_err(|e| format!("input tensor: {e}"))?;
        let state = Tensor::from_array(([2usize, 1, 128], vec![0.0f32; STATE_LEN]))
            .map_err(|e| format!("state tensor: {e}"))?;
        let sr = Tensor::from_array(((), vec![i64::from(self.sample_rate)]))
            .map_err(|e| format!("sr tensor: {e}"))?;
        Ok(SileroStream {
            model: Arc::clone(self),
            input,
            state,
            sr,
            filled: 0,
            last: None,
            windows: 0,
            errors: 0,
            fresh: true,
        })
    }
}

/// One call's VAD state. Feed it audio at the model's sample rate in any frame size.
pub struct SileroStream {
    model: Arc<Silero>,
    /// [1, C + W]: context, then the window being filled.
    input: Tensor<f32>,
    state: Tensor<f32>,
    sr: Tensor<i64>,
    /// New samples in the current window.
    filled: usize,
    last: Option<f32>,
    windows: u64,
    errors: u64,
    /// Nothing pushed since creation or the last reset (a reset then has nothing to do).
    fresh: bool,
}

impl std::fmt::Debug for SileroStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroStream")
            .field("windows", &self.windows)
            .field("errors", &self.errors)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl SileroStream {
    /// Appends `frame` (mono, the model's rate, nominally ±1; non-finite samples count as 0) and
    /// runs the model on every window it completes. Returns the probability of the last window
    /// completed during this call, or `None` if none was (or the model failed: see
    /// [`SileroStream::try_push`], [`SileroStream::errors`]).
    pub fn push(&mut self, frame: &[f32]) -> Option<f32> {
        self.try_push(frame).unwrap_or_default()
    }

    /// As [`SileroStream::push`], reporting a model failure (the stream continues with the next
    /// window; the failed window's samples are dropped and the state kept).
    pub fn try_push(&mut self, mut frame: &[f32]) -> Result<Option<f32>, String> {
        let (context, window) = (self.model.context, self.model.window);
        let mut latest = None;
        self.fresh &= frame.is_empty();
        while !frame.is_empty() {
            let take = (window - self.filled).min(frame.len());
            let (_, data) = self
                .input
                .try_extract_tensor_mut::<f32>()
                .map_err(|e| format!("input tensor: {e}"))?;
            let dst = &mut data[context + self.filled..context + self.filled + take];
            for (d, &s) in dst.iter_mut().zip(&frame[..take]) {
                *d = if s.is_finite() { s } else { 0.0 };
            }
            self.filled += take;
            frame = &frame[take..];
            if self.filled == window {
                self.filled = 0;
                match self.run() {
                    Ok(p) => {
                        latest = Some(p);
                        self.last = Some(p);
                        self.windows += 1;
                    }
                    Err(e) => {
                        self.errors += 1;
                        return Err(e);
                    }
                }
            }
        }
        Ok(latest)
    }

    fn run(&mut self) -> Result<f32, String> {
        let prob = {
            let mut session = self
                .model
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let outputs = session
                .run(ort::inputs![&self.input, &self.state, &self.sr])
                .map_err(|e| format!("Silero inference: {e}"))?;
            let (_, p) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("reading output: {e}"))?;
            let (_, new_state) = outputs[1]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("reading stateN: {e}"))?;
            if new_state.len() != STATE_LEN {
                return Err(format!(
                    "stateN has {} values, expected {STATE_LEN}",
                    new_state.len()
                ));
            }
            let (_, state) = self
                .state
                .try_extract_tensor_mut::<f32>()
                .map_err(|e| format!("state tensor: {e}"))?;
            state.copy_from_slice(new_state);
            p.first().copied().ok_or("empty output")?
        };
        // The next context is the tail of this input.
        let (_, data) = self
            .input
            .try_extract_tensor_mut::<f32>()
            .map_err(|e| format!("input tensor: {e}"))?;
        let total = data.len();
        data.copy_within(total - self.model.context..total, 0);
        if prob.is_finite() {
            Ok(prob)
        } else {
            Err(format!("model returned {prob}"))
        }
    }

    /// Probability of the most recent window, if any.
    pub fn last_probability(&self) -> Option<f32> {
        self.last
    }

    /// Windows run so far.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Model failures so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Back to the initial state (zero state and context, empty window); nothing to do, and
    /// nothing done, when nothing was pushed since the last reset.
    pub fn reset(&mut self) {
        if self.fresh {
            return;
        }
        self.fresh = true;
        // Our own CPU tensors: extraction cannot fail in practice; if it did, nothing is reset.
        if let Ok((_, d)) = self.input.try_extract_tensor_mut::<f32>() {
            d.fill(0.0);
        }
        if let Ok((_, d)) = self.state.try_extract_tensor_mut::<f32>() {
            d.fill(0.0);
        }
        self.filled = 0;
        self.last = None;
    }
}
