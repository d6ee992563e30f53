//! Pure audio DSP for the gateway: G.711 / L16 codecs, streaming resampling, file decoding and
//! WAV writing.
//!
//! Rules for everything below this module:
//! - no tokio, no threads, no network; the only I/O is in the file helpers of [`decode`] and
//!   [`wav`], which are meant for fixtures, recordings and prompts, never for the live path;
//! - the live path (one 20 ms frame at a time: [`g711`] slice functions and
//!   [`resample::StreamResampler::process`]) does not allocate once warmed up: every function
//!   writes into a buffer the caller owns;
//! - audio is mono `f32` in −1.0..=1.0 unless a function says otherwise.

pub mod decode;
pub mod g711;
pub mod resample;
pub mod wav;

/// A position or duration in a stream, counted in samples at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MediaTime {
    /// Number of samples (per channel) since the start of the stream.
    pub samples: u64,
    /// Sample rate in Hz the samples are counted at.
    pub rate: u32,
}

impl MediaTime {
    /// A time of `samples` samples at `rate` Hz.
    pub const fn new(samples: u64, rate: u32) -> Self {
        Self { samples, rate }
    }

    /// The time in whole milliseconds, rounded down; 0 when `rate` is 0.
    pub const fn ms(&self) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        // u128 keeps `samples * 1000` from overflowing for any u64 sample count.
        (self.samples as u128 * 1000 / self.rate as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::MediaTime;

    #[test]
    fn media_time_ms() {
        assert_eq!(MediaTime::new(160, 8000).ms(), 20);
        assert_eq!(MediaTime::new(16_000, 16_000).ms(), 1000);
        assert_eq!(MediaTime::new(441, 22_050).ms(), 20);
        assert_eq!(MediaTime::new(7, 8000).ms(), 0);
        assert_eq!(MediaTime::new(123, 0).ms(), 0);
        assert_eq!(MediaTime::new(u64::MAX, 1000).ms(), u64::MAX);
    }
}
