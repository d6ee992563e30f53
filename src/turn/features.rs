//! What the turn detector measures per 10 ms frame: power in the telephone band, an adaptive
//! noise floor, and a detector of steady sound. Fixed-size state only: no buffers, no
//! allocation.

/// Telephone band-pass: two 2nd-order Butterworth high-passes (4th order, 24 dB/octave, so
/// 50/60 Hz hum loses ≥ 50 dB) and one 2nd-order low-pass; measures the mean square per frame.
#[derive(Debug, Clone)]
pub(super) struct BandPower {
    hp1: Biquad,
    hp2: Biquad,
    lp: Option<Biquad>,
}

impl BandPower {
    /// A band-pass from `low_hz` to `high_hz` at `rate` Hz. The low-pass is left out when
    /// `high_hz` is too close to Nyquist to matter.
    pub(super) fn new(rate: u32, low_hz: f64, high_hz: f64) -> Self {
        let fs = f64::from(rate);
        let low = low_hz.clamp(10.0, 0.4 * fs);
        let lp = (high_hz < 0.45 * fs && high_hz > low).then(|| Biquad::lowpass(fs, high_hz));
        Self {
            hp1: Biquad::highpass(fs, low),
            hp2: Biquad::highpass(fs, low),
            lp,
        }
    }

    /// Filter one frame (finite samples) and return its band power: the mean square of the
    /// filtered signal (a full-scale square wave would be 1).
    pub(super) fn frame_power(&mut self, frame: &[f32]) -> f64 {
        self.frame_power_with(frame, |_| {})
    }

    /// [`Self::frame_power`], also handing each band-passed sample to `each` (measurements).
    #[inline]
    pub(super) fn frame_power_with(&mut self, frame: &[f32], mut each: impl FnMut(f64)) -> f64 {
        let mut sum = 0.0f64;
        for &x in frame {
            let mut y = self.hp2.process(self.hp1.process(f64::from(x)));
            if let Some(lp) = self.lp.as_mut() {
                y = lp.process(y);
            }
            each(y);
            sum += y * y;
        }
        self.hp1.flush_denormals();
        self.hp2.flush_denormals();
        if let Some(lp) = self.lp.as_mut() {
            lp.flush_denormals();
        }
        sum / frame.len().max(1) as f64
    }

    pub(super) fn reset(&mut self) {
        self.hp1.reset();
        self.hp2.reset();
        if let Some(lp) = self.lp.as_mut() {
            lp.reset();
        }
    }
}

/// Filter states decaying below this are set to zero, so that silence after a signal never
/// runs the filters on subnormal numbers (which are ~100× slower on x86).
const DENORMAL_GUARD: f64 = 1e-30;

/// A biquad in transposed direct form II, in f64 (a 250 Hz high-pass at 16 kHz puts its poles
/// close to 1, where f32 coefficients lose precision).
#[derive(Debug, Clone, Copy)]
pub(super) struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    z1: f64,
    z2: f64,
}

impl Biquad {
    /// RBJ cookbook Butterworth (Q = 1/√2) high-pass.
    fn highpass(fs: f64, fc: f64) -> Self {
        let (cos, alpha) = Self::omega(fs, fc);
        let b = (1.0 + cos) / 2.0;
        Self::normalised([b, -(1.0 + cos), b], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    /// RBJ cookbook Butterworth (Q = 1/√2) low-pass.
    pub(super) fn lowpass(fs: f64, fc: f64) -> Self {
        let (cos, alpha) = Self::omega(fs, fc);
        let b = (1.0 - cos) / 2.0;
        Self::normalised([b, 1.0 - cos, b], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    fn omega(fs: f64, fc: f64) -> (f64, f64) {
        let w0 = 2.0 * std::f64::consts::PI * fc / fs;
        (w0.cos(), w0.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2))
    }

    fn normalised(b: [f64; 3], a: [f64; 3]) -> Self {
        Self {
            b0: b[0] / a[0],
            b1: b[1] / a[0],
            b2: b[2] / a[0],
            a1: a[1] / a[0],
            a2: a[2] / a[0],
            z1: 0.0,
            z2: 0.0,
        }
    }

    #[inline]
    pub(super) fn process(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.z1;
        self.z1 = self.b1 * x - self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }

    fn flush_denormals(&mut self) {
        if self.z1.abs() < DENORMAL_GUARD {
            self.z1 = 0.0;
        }
        if self.z2.abs() < DENORMAL_GUARD {
            self.z2 = 0.0;
        }
    }

    fn reset(&mut self) {
        self.z1 = 0.0;
        self.z2 = 0.0;
    }
}

/// Adaptive noise floor in linear power: a minimum-follower that falls fast (a pause pulls it
/// down within ~50 ms; smoothing in linear power means a single dropped, all-zero frame costs
/// only 1 dB) and rises slowly (dB per second, so speech never drags it up). Steady sound is
/// learned at once through [`NoiseFloor::set`] (see [`SteadyRun`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct NoiseFloor {
    power: f64,
    initial: f64,
    rise: f64,
}

/// Per-frame smoothing towards a lower frame power (time constant ≈ 45 ms at 10 ms frames).
const FALL: f64 = 0.2;
/// The floor never goes below this power (−120 dB): keeps ratios finite on digital silence.
pub(super) const MIN_POWER: f64 = 1e-12;

impl NoiseFloor {
    /// `initial` is the power assumed before anything was heard; the floor climbs by at most
    /// `rise_db_per_frame` per frame.
    pub(super) fn new(initial: f64, rise_db_per_frame: f64) -> Self {
        let initial = initial.max(MIN_POWER);
        Self {
            power: initial,
            initial,
            rise: 10f64.powf(rise_db_per_frame.max(0.0) / 10.0),
        }
    }

    pub(super) fn power(&self) -> f64 {
        self.power
    }

    /// Follow one frame's band power.
    pub(super) fn update(&mut self, power: f64) {
        if power < self.power {
            self.power += FALL * (power - self.power);
        } else {
            self.power = (self.power * self.rise).min(power);
        }
        self.power = self.power.max(MIN_POWER);
    }

    /// Jump to `power` (steady sound was recognised as noise).
    pub(super) fn set(&mut self, power: f64) {
        self.power = power.max(MIN_POWER);
    }

    pub(super) fn reset(&mut self) {
        self.power = self.initial;
    }
}

/// The current run of consecutive frames whose band power stays within a range of `range_db`:
/// speech rises and falls by 10–30 dB several times a second, while a fan, a hiss or a hum
/// switched on stays within a few dB. A frame that would widen the range past the limit starts
/// a new run.
#[derive(Debug, Clone, Copy)]
pub(super) struct SteadyRun {
    min_db: f64,
    max_db: f64,
    sum_power: f64,
    frames: u32,
}

impl SteadyRun {
    pub(super) fn new() -> Self {
        Self {
            min_db: 0.0,
            max_db: 0.0,
            sum_power: 0.0,
            frames: 0,
        }
    }

    /// Add a frame; returns the run's length in frames and mean power.
    pub(super) fn push(&mut self, power: f64, range_db: f64) -> (u32, f64) {
        let db = power_db(power);
        let (lo, hi) = (self.min_db.min(db), self.max_db.max(db));
        if self.frames == 0 || hi - lo > range_db {
            *self = Self {
                min_db: db,
                max_db: db,
                sum_power: power,
                frames: 1,
            };
        } else {
            self.min_db = lo;
            self.max_db = hi;
            self.sum_power += power;
            self.frames += 1;
        }
        (self.frames, self.sum_power / f64::from(self.frames))
    }

    pub(super) fn reset(&mut self) {
        *self = Self::new();
    }
}

/// Power in dB (−120 dB for silence).
pub(super) fn power_db(power: f64) -> f64 {
    10.0 * power.max(MIN_POWER).log10()
}
