//! Streaming mono resampling on top of rubato's synchronous FFT resampler.
//!
//! [`StreamResampler`] takes input of any length, buffers it internally into the fixed chunk
//! the FFT resampler works on, and appends output to a caller-owned `Vec`. All working memory
//! is allocated in [`StreamResampler::new`]: `process` does not allocate as long as the output
//! `Vec` has spare capacity (the tests check this with a counting allocator).
//!
//! Why FFT (`rubato::Fft`, `FixedSync::Both`): the rates a telephony gateway meets are all
//! fixed rational pairs, the FFT resampler is the cheapest of rubato's resamplers, it applies
//! an anti-aliasing low-pass (BlackmanHarris² window) on downsampling, and with `Both` every
//! chunk gives the same number of output samples. `Async::new_poly` is never used: it has no
//! anti-aliasing filter.
//!
//! Delay: the FFT resampler delays the signal by half its output block,
//! [`StreamResampler::latency_samples`] output samples (10 ms for 20 ms chunks). When input
//! arrives in pieces that are not whole chunks, up to one chunk more waits in the buffer.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

/// Why a resampler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The pair of rates is out of range or too awkward for a fixed-ratio resampler.
    #[error("unsupported resampling {from} Hz -> {to} Hz: {reason}")]
    UnsupportedRates {
        /// Input rate in Hz.
        from: u32,
        /// Output rate in Hz.
        to: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A chunk size of zero was requested.
    #[error("resampler chunk size must be greater than 0")]
    ZeroChunk,
    /// rubato refused the parameters.
    #[error("resampler construction failed: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
}

/// Lowest and highest sample rate accepted, in Hz.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Streaming mono resampler from one fixed rate to another. Equal rates pass through.
pub struct StreamResampler {
    from: u32,
    to: u32,
    inner: Option<Inner>,
}

struct Inner {
    fft: Fft<f32>,
    chunk_in: usize,
    chunk_out: usize,
    delay: usize,
    /// Input waiting for a whole chunk; its capacity is `chunk_in` and never grows.
    pending: Vec<f32>,
    total_in: u64,
    total_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("chunk_in", &self.chunk_in())
            .field("chunk_out", &self.chunk_out())
            .field("latency_samples", &self.latency_samples())
            .finish()
    }
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz for input that usually arrives `chunk_in` samples
    /// at a time (160 for 20 ms at 8 kHz). The internal chunk is `chunk_in` rounded up to what
    /// the rate pair allows and to at least 10 ms; see [`Self::chunk_in`].
    ///
    /// Both rates must lie in [`RATE_RANGE`] and their greatest common divisor must be at
    /// least 10 Hz (every pair among 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000 and
    /// 96000 qualifies); otherwise the FFT block would be impractically long.
    pub fn new(from: u32, to: u32, chunk_in: usize) -> Result<Self, ResampleError> {
        let unsupported = |reason| ResampleError::UnsupportedRates { from, to, reason };
        if !RATE_RANGE.contains(&from) || !RATE_RANGE.contains(&to) {
            return Err(unsupported("rates must be between 1000 and 384000 Hz"));
        }
        if chunk_in == 0 {
            return Err(ResampleError::ZeroChunk);
        }
        if from == to {
            return Ok(Self {
                from,
                to,
                inner: None,
            });
        }
        if gcd(from, to) < 10 {
            return Err(unsupported(
                "the rates' greatest common divisor is below 10 Hz",
            ));
        }
        let hint = chunk_in.max(from as usize / 100);
        let fft = Fft::<f32>::new(from as usize, to as usize, hint, 1, FixedSync::Both)?;
        let chunk_in = fft.input_frames_next();
        let chunk_out = fft.output_frames_next();
        let delay = fft.output_delay();
        Ok(Self {
            from,
            to,
            inner: Some(Inner {
                fft,
                chunk_in,
                chunk_out,
                delay,
                pending: Vec::with_capacity(chunk_in),
                total_in: 0,
                total_out: 0,
            }),
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Input samples consumed per internal chunk (0 for passthrough).
    pub fn chunk_in(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.chunk_in)
    }

    /// Output samples produced per internal chunk (0 for passthrough).
    pub fn chunk_out(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.chunk_out)
    }

    /// Algorithmic delay in output samples: the first `latency_samples()` samples of the
    /// output are the filter filling up. 0 for passthrough.
    pub fn latency_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.delay)
    }

    /// Input samples currently buffered, waiting for a whole chunk.
    pub fn buffered_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.pending.len())
    }

    /// Resample `input` (any length) and append the output to `out`.
    ///
    /// Each completed internal chunk appends [`Self::chunk_out`] samples. Does not allocate
    /// unless `out` lacks capacity; reserve `(input.len() / chunk_in + 1) * chunk_out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        let mut rest = input;
        while !rest.is_empty() {
            if inner.pending.is_empty() && rest.len() >= inner.chunk_in {
                // Whole chunk straight from the caller's slice, no copy.
                let (chunk, tail) = rest.split_at(inner.chunk_in);
                run_chunk(&mut inner.fft, chunk, inner.chunk_out, out);
                inner.total_in += chunk.len() as u64;
                inner.total_out += inner.chunk_out as u64;
                rest = tail;
                continue;
            }
            let take = (inner.chunk_in - inner.pending.len()).min(rest.len());
            let (head, tail) = rest.split_at(take);
            inner.pending.extend_from_slice(head);
            rest = tail;
            if inner.pending.len() == inner.chunk_in {
                run_chunk(&mut inner.fft, &inner.pending, inner.chunk_out, out);
                inner.total_in += inner.chunk_in as u64;
                inner.total_out += inner.chunk_out as u64;
                inner.pending.clear();
            }
        }
    }

    /// End of stream: resample what is buffered, padded with silence, and push out the
    /// filter's tail, then reset for a new stream.
    ///
    /// Since the last reset, the output then totals exactly
    /// `ceil(samples_in * to / from) + latency_samples()` samples.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let wanted = (inner.total_in + inner.pending.len() as u64)
            .saturating_mul(u64::from(self.to))
            .div_ceil(u64::from(self.from))
            + inner.delay as u64;
        let mut appended = 0usize;
        if !inner.pending.is_empty() {
            run_chunk(&mut inner.fft, &inner.pending, inner.chunk_out, out);
            inner.total_out += inner.chunk_out as u64;
            appended += inner.chunk_out;
        }
        while inner.total_out < wanted {
            run_chunk(&mut inner.fft, &[], inner.chunk_out, out);
            inner.total_out += inner.chunk_out as u64;
            appended += inner.chunk_out;
        }
        // Only samples appended here are surplus; excess < chunk_out <= appended.
        let excess = usize::try_from(inner.total_out - wanted)
            .unwrap_or(usize::MAX)
            .min(appended);
        out.truncate(out.len() - excess);
        self.reset();
    }

    /// Forget all buffered input and filter state.
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.fft.reset();
            inner.pending.clear();
            inner.total_in = 0;
            inner.total_out = 0;
        }
    }
}

/// Resample one chunk (`input.len() <= chunk_in`, shorter means zero-padded) onto `out`.
fn run_chunk(fft: &mut Fft<f32>, input: &[f32], chunk_out: usize, out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + chunk_out, 0.0);
    let full = input.len() == fft.input_frames_next();
    let inp = InterleavedSlice::new(input, 1, input.len())
        .expect("invariant: a mono slice of n samples holds n frames");
    let mut outp = InterleavedSlice::new_mut(&mut out[start..], 1, chunk_out)
        .expect("invariant: the slice was just resized to chunk_out samples");
    let partial = Indexing {
        input_offset: 0,
        output_offset: 0,
        partial_len: Some(input.len()),
        active_channels_mask: None,
    };
    fft.process_into_buffer(&inp, &mut outp, if full { None } else { Some(&partial) })
        .expect("invariant: buffers are sized from input_frames_next/output_frames_next");
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resample a whole clip from `from` Hz to `to` Hz, with the filter delay trimmed: the result
/// has `ceil(input.len() * to / from)` samples, aligned with the input.
pub fn resample_whole(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    // 100 ms chunks: a longer FFT block gives a sharper filter; latency does not matter here.
    let mut rs = StreamResampler::new(from, to, (from as usize / 10).max(1))?;
    if rs.inner.is_none() {
        return Ok(input.to_vec());
    }
    let delay = rs.latency_samples();
    let expected = (input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let mut out = Vec::with_capacity(expected + delay + rs.chunk_out());
    rs.process(input, &mut out);
    rs.flush(&mut out);
    out.drain(..delay.min(out.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::f32::consts::TAU;

    /// Counts allocations made by the current thread while `COUNTING` is set on it, so tests
    /// running in parallel do not disturb each other.
    struct CountingAlloc;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    fn note_alloc() {
        // try_with: thread-locals may be gone while a thread shuts down.
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            }
        });
    }

    // SAFETY: forwards every call to the system allocator unchanged.
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note_alloc();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note_alloc();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note_alloc();
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAlloc = CountingAlloc;

    fn count_allocs(f: impl FnOnce()) -> u64 {
        ALLOCS.with(|a| a.set(0));
        COUNTING.with(|c| c.set(true));
        f();
        COUNTING.with(|c| c.set(false));
        ALLOCS.with(|a| a.get())
    }

    fn sine(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    fn zero_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    /// Feeds `input` in `frame`-sized pieces and flushes.
    fn stream(rs: &mut StreamResampler, input: &[f32], frame: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for c in input.chunks(frame) {
            rs.process(c, &mut out);
        }
        rs.flush(&mut out);
        out
    }

    #[test]
    fn upsample_8k_16k_keeps_frequency_and_amplitude() {
        let input = sine(1000.0, 8000, 1.0, 0.5);
        let mut rs = StreamResampler::new(8000, 16_000, 160).expect("valid rates");
        assert_eq!((rs.chunk_in(), rs.chunk_out()), (160, 320));
        assert_eq!(rs.latency_samples(), 160, "10 ms at 16 kHz");
        let out = stream(&mut rs, &input, 160);
        let delay = rs.latency_samples();
        let body = &out[delay + 320..delay + 16_000 - 320];
        // 1 kHz: 2 crossings per ms.
        let zc = zero_crossings(body) as f32;
        let want = 2.0 * 1000.0 * body.len() as f32 / 16_000.0;
        assert!((zc - want).abs() <= 2.0, "zero crossings {zc} vs {want}");
        let r = rms(body);
        let want = 0.5 / 2f32.sqrt();
        assert!((r / want - 1.0).abs() < 0.05, "rms {r} vs {want}");
    }

    #[test]
    fn downsample_48k_16k_rejects_10k_tone() {
        let pass = sine(1000.0, 48_000, 1.0, 0.5);
        let stop = sine(10_000.0, 48_000, 1.0, 0.5);
        let mut rs = StreamResampler::new(48_000, 16_000, 960).expect("valid rates");
        let p = stream(&mut rs, &pass, 960);
        let s = stream(&mut rs, &stop, 960);
        let skip = 2 * rs.chunk_out();
        let rp = rms(&p[skip..p.len() - skip]);
        let rsn = rms(&s[skip..s.len() - skip]);
        let atten_db = 20.0 * (rp / rsn).log10();
        assert!(
            (rp / (0.5 / 2f32.sqrt()) - 1.0).abs() < 0.05,
            "pass rms {rp}"
        );
        assert!(atten_db > 30.0, "10 kHz only {atten_db:.1} dB down");
    }

    #[test]
    fn all_pipeline_pairs_have_right_length_and_gain() {
        let pairs = [
            (8000, 16_000),
            (16_000, 8000),
            (48_000, 16_000),
            (16_000, 48_000),
            (22_050, 8000),
            (22_050, 16_000),
            (22_050, 48_000),
            (24_000, 16_000),
            (44_100, 16_000),
            (44_100, 48_000),
            (16_000, 16_000),
        ];
        for (from, to) in pairs {
            let frame = from as usize / 50; // 20 ms
            let input = sine(440.0, from, 1.0, 0.5);
            let mut rs = StreamResampler::new(from, to, frame).expect("valid rates");
            let mut out = Vec::new();
            // Odd piece size: exercises the internal buffering.
            for c in input.chunks(frame / 2 + 7) {
                rs.process(c, &mut out);
            }
            let expect = to as usize; // 1 s of output
            let before_flush = out.len() as i64;
            let slack = rs.chunk_out().max(1) as i64;
            assert!(
                (before_flush - expect as i64).abs() <= slack,
                "{from}->{to}: {before_flush} samples before flush, want {expect} ± {slack}"
            );
            let delay = rs.latency_samples();
            rs.flush(&mut out);
            assert_eq!(out.len(), expect + delay, "{from}->{to} after flush");
            let body = &out[delay + to as usize / 20..out.len() - to as usize / 20];
            let r = rms(body) / (0.5 / 2f32.sqrt());
            assert!((r - 1.0).abs() < 0.05, "{from}->{to}: gain {r}");
            let zc = zero_crossings(body) as f32;
            let want = 2.0 * 440.0 * body.len() as f32 / to as f32;
            assert!(
                (zc - want).abs() <= 2.0,
                "{from}->{to}: {zc} crossings vs {want}"
            );
        }
    }

    #[test]
    fn whole_clip_is_aligned_and_exact_length() {
        let input = sine(300.0, 8000, 0.5, 0.5);
        let out = resample_whole(&input, 8000, 16_000).expect("valid rates");
        assert_eq!(out.len(), 8000);
        // Aligned: sample 2n of the output ≈ sample n of the input (away from the edges).
        for n in (400..3600).step_by(37) {
            assert!((out[2 * n] - input[n]).abs() < 0.02, "n={n}");
        }
        let same = resample_whole(&input, 8000, 8000).expect("valid rates");
        assert_eq!(same, input);
        let tiny = resample_whole(&[0.1; 3], 22_050, 8000).expect("valid rates");
        assert_eq!(tiny.len(), 2);
        assert!(
            resample_whole(&[], 44_100, 16_000)
                .expect("valid rates")
                .is_empty()
        );
    }

    #[test]
    fn passthrough_and_errors() {
        let mut rs = StreamResampler::new(16_000, 16_000, 320).expect("valid rates");
        let mut out = Vec::new();
        rs.process(&[0.1, 0.2, 0.3], &mut out);
        rs.flush(&mut out);
        assert_eq!(out, [0.1, 0.2, 0.3]);
        assert_eq!(rs.latency_samples(), 0);
        assert!(matches!(
            StreamResampler::new(8000, 16_000, 0),
            Err(ResampleError::ZeroChunk)
        ));
        assert!(StreamResampler::new(0, 16_000, 160).is_err());
        assert!(StreamResampler::new(8000, 1_000_000, 160).is_err());
        let e = StreamResampler::new(44_101, 16_000, 160).expect_err("gcd 1");
        assert!(e.to_string().contains("44101"), "{e}");
    }

    #[test]
    fn no_allocation_after_warm_up() {
        let input = sine(1000.0, 8000, 0.02, 0.5);
        let mut rs = StreamResampler::new(8000, 16_000, 160).expect("valid rates");
        let mut out: Vec<f32> = Vec::with_capacity(4096);
        rs.process(&input, &mut out); // warm-up
        let cap = out.capacity();
        let n = count_allocs(|| {
            for i in 0..1000 {
                out.clear();
                rs.process(&input, &mut out);
                // Uneven pieces use the internal buffer.
                rs.process(&input[..(i % 150) + 1], &mut out);
            }
        });
        assert_eq!(n, 0, "allocations on the live path");
        assert_eq!(out.capacity(), cap);
        // The counter itself works.
        assert!(count_allocs(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);

        let mut down = StreamResampler::new(48_000, 16_000, 960).expect("valid rates");
        let input = sine(1000.0, 48_000, 0.02, 0.5);
        down.process(&input, &mut out);
        let n = count_allocs(|| {
            for _ in 0..1000 {
                out.clear();
                down.process(&input, &mut out);
            }
        });
        assert_eq!(n, 0, "allocations 48k->16k");
    }
}
