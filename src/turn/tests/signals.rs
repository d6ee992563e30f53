//! Deterministic test signals: silence, seeded noise, hum, clicks, speech-like bursts, real
//! speech read by hand, and a telephone (8 kHz μ-law) round trip.

use std::f64::consts::PI;

use super::RATE;

/// A seeded linear congruential generator (Knuth's MMIX constants).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Uniform in [-1, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Linear amplitude of an RMS level in dBFS (full-scale square wave = 0 dBFS).
pub fn rms_of_dbfs(dbfs: f64) -> f64 {
    10f64.powf(dbfs / 20.0)
}

pub fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

pub fn silence(n: u64) -> Vec<f32> {
    vec![0.0; n as usize]
}

/// White noise (uniform) with the given RMS level.
pub fn white_noise(n: u64, level_dbfs: f64, seed: u64) -> Vec<f32> {
    let mut rng = Lcg::new(seed);
    let a = rms_of_dbfs(level_dbfs) * 3f64.sqrt();
    (0..n).map(|_| (rng.next_f64() * a) as f32).collect()
}

/// Brown-ish noise (white through a one-pole low-pass at ~100 Hz) with the given RMS level:
/// fans, rumble, road noise.
pub fn rumble(n: u64, level_dbfs: f64, seed: u64) -> Vec<f32> {
    let mut rng = Lcg::new(seed);
    let k = (-2.0 * PI * 100.0 / f64::from(RATE)).exp();
    let mut y = 0.0;
    let mut raw: Vec<f32> = (0..n)
        .map(|_| {
            y = k * y + (1.0 - k) * rng.next_f64();
            y as f32
        })
        .collect();
    scale_to(&mut raw, level_dbfs);
    raw
}

/// Mains hum: fundamental `hz` plus its 2nd and 3rd harmonics at −10 and −15 dB, whole mix
/// at `level_dbfs` RMS.
pub fn hum(n: u64, hz: f64, level_dbfs: f64) -> Vec<f32> {
    let w = 2.0 * PI * hz / f64::from(RATE);
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 * w;
            (t.sin() + 0.316 * (2.0 * t).sin() + 0.178 * (3.0 * t).sin()) as f32
        })
        .collect();
    scale_to(&mut x, level_dbfs);
    x
}

/// 1 ms rectangular clicks of peak `amp` and alternating sign, starting at each of `at`.
pub fn add_clicks(x: &mut [f32], at: &[u64], amp: f32) {
    for (k, &s) in at.iter().enumerate() {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        for v in x.iter_mut().skip(s as usize).take(super::ms(1) as usize) {
            *v += sign * amp;
        }
    }
}

/// A speech-like burst: a harmonic tone (f0 ≈ 140 Hz with a slow ±10 Hz glide, harmonics up
/// to 3000 Hz at 1/k amplitude, i.e. a −6 dB/octave voiced spectrum) under a 4 Hz syllable
/// envelope `0.6 + 0.4·sin(2π·4·t)` (never silent: it starts and ends at 0.6), RMS at
/// `level_dbfs`.
pub fn speech_like(n: u64, level_dbfs: f64, seed: u64) -> Vec<f32> {
    let fs = f64::from(RATE);
    let mut rng = Lcg::new(seed);
    let f0_base = 140.0 + 20.0 * rng.next_f64();
    let phases: Vec<f64> = (0..32).map(|_| rng.next_f64() * PI).collect();
    let mut phase = 0.0f64;
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / fs;
            let f0 = f0_base + 10.0 * (2.0 * PI * 0.7 * t).sin();
            phase += 2.0 * PI * f0 / fs;
            let mut v = 0.0;
            let mut k = 1;
            while (k as f64) * f0 <= 3000.0 && k <= phases.len() {
                v += (k as f64 * phase + phases[k - 1]).sin() / k as f64;
                k += 1;
            }
            let env = 0.6 + 0.4 * (2.0 * PI * 4.0 * t).sin();
            (v * env) as f32
        })
        .collect();
    scale_to(&mut x, level_dbfs);
    x
}

/// Scale `x` to an RMS of `level_dbfs`.
pub fn scale_to(x: &mut [f32], level_dbfs: f64) {
    let r = rms(x);
    if r > 0.0 {
        let g = rms_of_dbfs(level_dbfs) / r;
        x.iter_mut().for_each(|v| *v = (f64::from(*v) * g) as f32);
    }
}

/// `a + b` sample by sample (length of `a`).
pub fn mix(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b.iter().chain(std::iter::repeat(&0.0)))
        .map(|(x, y)| x + y)
        .collect()
}

pub fn concat(parts: &[&[f32]]) -> Vec<f32> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// Directory of Debian's `pocketsphinx-testdata`.
pub const SPHINX: &str = "/usr/share/pocketsphinx/test/data";

/// Read headerless 16-bit little-endian PCM. Panics (failing the test) if the file is missing:
/// the project's setup installs `pocketsphinx-testdata`.
pub fn read_raw_s16le(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (install the Debian package pocketsphinx-testdata)")
    });
    s16le(&bytes)
}

/// Read a 16-bit mono PCM WAV (RIFF chunks walked by hand); returns samples and rate.
pub fn read_wav(path: &str) -> (Vec<f32>, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (install the Debian package pocketsphinx-testdata)")
    });
    assert!(
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "{path}: not WAV"
    );
    let mut i = 12;
    let mut rate = 0;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        let body = &b[i + 8..(i + 8 + len).min(b.len())];
        if id == b"fmt " {
            let format = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert!(
                format == 1 && channels == 1 && bits == 16,
                "{path}: not 16-bit mono PCM"
            );
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
        } else if id == b"data" {
            return (s16le(body), rate);
        }
        i += 8 + len + (len & 1);
    }
    panic!("{path}: no data chunk");
}

fn s16le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect()
}

/// 16 kHz → 8 kHz μ-law → 16 kHz, as a call leg does it: decimate by 2 after a 2-tap average,
/// encode/decode with the G.711 formula, upsample by 2 with linear interpolation.
pub fn telephone_round_trip(x: &[f32]) -> Vec<f32> {
    let narrow: Vec<f32> = x
        .chunks_exact(2)
        .map(|p| ulaw_decode(ulaw_encode(0.5 * (p[0] + p[1]))))
        .collect();
    let mut out = Vec::with_capacity(narrow.len() * 2);
    for (i, &v) in narrow.iter().enumerate() {
        let next = narrow.get(i + 1).copied().unwrap_or(v);
        out.push(v);
        out.push(0.5 * (v + next));
    }
    out
}

/// G.711 μ-law encoding of a float sample (clip 32635, bias 0x84).
pub fn ulaw_encode(x: f32) -> u8 {
    let s = (f64::from(x) * 32768.0).round().clamp(-32768.0, 32767.0) as i32;
    let (sign, mut v) = if s < 0 { (0x80, -s) } else { (0, s) };
    v = v.min(32635) + 0x84;
    let exp = (31 - v.leading_zeros() as i32) - 7;
    let mant = (v >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mant) as u8)
}

/// G.711 μ-law decoding to a float sample.
pub fn ulaw_decode(b: u8) -> f32 {
    let b = !b;
    let exp = i32::from((b >> 4) & 0x07);
    let mant = i32::from(b & 0x0F);
    let mag = (((mant << 3) + 0x84) << exp) - 0x84;
    let s = if b & 0x80 != 0 { -mag } else { mag };
    s as f32 / 32768.0
}
