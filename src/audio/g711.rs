//! G.711 μ-law and A-law (ITU-T G.711, the classic Sun `g711.c` algorithm) and 16-bit linear
//! little-endian PCM ("L16" as the telephony WebSockets send it).
//!
//! Decoding goes through 256-entry tables built at compile time by `const fn`; encoding is a
//! few integer operations. The slice functions write into caller-provided buffers and never
//! allocate, so they are safe on the 20 ms live path. They convert
//! `min(src.len(), dst.len())` samples and return that count.
//!
//! Float conversion: `i16 / 32768.0` on the way in; on the way out `x * 32768`, rounded and
//! clipped to `i16` (so ±1.0 and beyond clip, NaN becomes 0).

/// μ-law code of a zero sample (digital silence).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law code of the smallest positive sample (+8), the usual A-law silence byte.
pub const ALAW_SILENCE: u8 = 0xD5;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Encode one linear sample to μ-law.
pub const fn ulaw_encode(s: i16) -> u8 {
    let mut v = s as i32;
    let sign: i32 = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    if v > ULAW_CLIP {
        v = ULAW_CLIP;
    }
    v += ULAW_BIAS;
    // v is in 0x84..=0x7FFF: the highest set bit is 7..=14, giving exponent 0..=7.
    let exp = (31 - v.leading_zeros() as i32) - 7;
    let mant = (v >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mant) as u8)
}

const fn ulaw_decode_calc(b: u8) -> i16 {
    let b = !b;
    let exp = ((b >> 4) & 0x07) as i32;
    let mant = (b & 0x0F) as i32;
    let mag = (((mant << 3) + ULAW_BIAS) << exp) - ULAW_BIAS;
    if b & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// Encode one linear sample to A-law.
pub const fn alaw_encode(s: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut v = (s as i32) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    // Segment = number of significant bits above the 5-bit first segment.
    let seg = if v < 0x20 {
        0
    } else {
        (32 - v.leading_zeros() as i32) - 5
    };
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let q = if seg < 2 { v >> 1 } else { v >> seg };
    (((seg << 4) | (q & 0x0F)) ^ mask) as u8
}

const fn alaw_decode_calc(b: u8) -> i16 {
    let a = (b ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

/// `alaw`: build the A-law table, else μ-law. (`const fn` cannot call through a fn pointer.)
const fn build_i16(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    t
}

const fn to_f32(t: &[i16; 256]) -> [f32; 256] {
    let mut f = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        f[i] = t[i] as f32 / 32768.0;
        i += 1;
    }
    f
}

/// μ-law byte → linear sample, indexed by the code byte.
pub static ULAW_DECODE: [i16; 256] = build_i16(false);
/// A-law byte → linear sample, indexed by the code byte.
pub static ALAW_DECODE: [i16; 256] = build_i16(true);
static ULAW_DECODE_F32: [f32; 256] = to_f32(&build_i16(false));
static ALAW_DECODE_F32: [f32; 256] = to_f32(&build_i16(true));

/// Decode one μ-law byte to a linear sample (table lookup).
#[inline]
pub fn ulaw_decode(b: u8) -> i16 {
    ULAW_DECODE[b as usize]
}

/// Decode one A-law byte to a linear sample (table lookup).
#[inline]
pub fn alaw_decode(b: u8) -> i16 {
    ALAW_DECODE[b as usize]
}

/// `f32` in −1..1 → `i16`, rounded and clipped; NaN → 0.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * 32768.0).round() as i16
}

/// `i16` → `f32` in −1..1.
#[inline]
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// Decode μ-law bytes into `dst`; returns the number of samples written.
pub fn decode_ulaw_into(src: &[u8], dst: &mut [f32]) -> usize {
    lookup_into(&ULAW_DECODE_F32, src, dst)
}

/// Decode A-law bytes into `dst`; returns the number of samples written.
pub fn decode_alaw_into(src: &[u8], dst: &mut [f32]) -> usize {
    lookup_into(&ALAW_DECODE_F32, src, dst)
}

/// Encode samples to μ-law bytes in `dst`; returns the number of bytes written.
pub fn encode_ulaw_from(src: &[f32], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = ulaw_encode(f32_to_i16(s));
    }
    n
}

/// Encode samples to A-law bytes in `dst`; returns the number of bytes written.
pub fn encode_alaw_from(src: &[f32], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = alaw_encode(f32_to_i16(s));
    }
    n
}

/// Decode 16-bit little-endian PCM bytes into `dst`; a trailing odd byte is ignored.
/// Returns the number of samples written.
pub fn decode_l16le_into(src: &[u8], dst: &mut [f32]) -> usize {
    let n = (src.len() / 2).min(dst.len());
    for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = i16_to_f32(i16::from_le_bytes([b[0], b[1]]));
    }
    n
}

/// Encode samples as 16-bit little-endian PCM into `dst` (2 bytes per sample).
/// Returns the number of samples written.
pub fn encode_l16le_from(src: &[f32], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len() / 2);
    for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_i16(s).to_le_bytes());
    }
    n
}

#[inline]
fn lookup_into(table: &[f32; 256], src: &[u8], dst: &mut [f32]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &b) in dst.iter_mut().zip(src) {
        *d = table[b as usize];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_all_codes_round_trip() {
        for b in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(b));
            // 0x7F is "negative zero": it decodes to 0, which encodes to the positive zero 0xFF.
            let want = if b == 0x7F { 0xFF } else { b };
            assert_eq!(back, want, "code {b:#04x}");
        }
    }

    #[test]
    fn alaw_all_codes_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "code {b:#04x}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(ulaw_decode(ULAW_SILENCE), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_decode(ALAW_SILENCE), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        // Table matches the direct computation.
        for b in 0..=255u8 {
            assert_eq!(ULAW_DECODE[b as usize], ulaw_decode_calc(b));
            assert_eq!(ALAW_DECODE[b as usize], alaw_decode_calc(b));
        }
    }

    /// Sorts codes by their decoded value and checks that encoding is monotonic in the input
    /// and decode tables are strictly ordered within each sign half.
    #[test]
    fn decode_tables_monotonic() {
        // μ-law: 0x80..=0xFF are positive, decreasing from 0x80 (max) to 0xFF (0).
        for b in 0x80..0xFFu8 {
            assert!(ulaw_decode(b) > ulaw_decode(b + 1), "ulaw {b:#04x}");
        }
        // 0x00..=0x7F negative, increasing from 0x00 (min) to 0x7F (0).
        for b in 0x00..0x7Fu8 {
            assert!(ulaw_decode(b) < ulaw_decode(b + 1), "ulaw {b:#04x}");
        }
        // A-law: after removing the 0x55 XOR mask, magnitude grows with the code.
        let mut pos: Vec<i16> = (0..128u8).map(|m| alaw_decode((m | 0x80) ^ 0x55)).collect();
        let neg: Vec<i16> = (0..128u8).map(|m| alaw_decode(m ^ 0x55)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        assert!(neg.windows(2).all(|w| w[0] > w[1]));
        pos.sort_unstable();
        assert_eq!(pos[0], 8);
        // Encoding is monotonic over the whole i16 range.
        let mut prev_u = ulaw_decode(ulaw_encode(i16::MIN));
        let mut prev_a = alaw_decode(alaw_encode(i16::MIN));
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "sample {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(32635), 0x80);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        let mut u = [0u8; 5];
        encode_ulaw_from(&[2.0, -2.0, f32::NAN, f32::INFINITY, 1.0], &mut u);
        assert_eq!(u, [0x80, 0x00, ULAW_SILENCE, 0x80, 0x80]);
        let mut l = [0u8; 6];
        encode_l16le_from(&[1.5, -1.5, 0.5], &mut l);
        assert_eq!(l, [0xFF, 0x7F, 0x00, 0x80, 0x00, 0x40]);
    }

    #[test]
    fn quantisation_error_is_small() {
        // Worst-case relative error of 8-bit companding is about 1/16 of the step's segment.
        for s in (-32000i32..32000).step_by(7) {
            let s = s as i16;
            let eu = (i32::from(ulaw_decode(ulaw_encode(s))) - i32::from(s)).abs();
            let ea = (i32::from(alaw_decode(alaw_encode(s))) - i32::from(s)).abs();
            let tol = (i32::from(s).abs() / 16).max(16);
            assert!(eu <= tol, "ulaw {s}: err {eu}");
            assert!(ea <= tol, "alaw {s}: err {ea}");
        }
    }

    #[test]
    fn slices() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let mut f = vec![0f32; 256];
        assert_eq!(decode_ulaw_into(&bytes, &mut f), 256);
        assert!(f.iter().all(|x| (-1.0..1.0).contains(x)));
        let mut back = vec![0u8; 256];
        assert_eq!(encode_ulaw_from(&f, &mut back), 256);
        for (b, &r) in bytes.iter().zip(&back) {
            assert_eq!(r, if *b == 0x7F { 0xFF } else { *b });
        }
        decode_alaw_into(&bytes, &mut f);
        encode_alaw_from(&f, &mut back);
        assert_eq!(back, bytes);
        // Short destination: only what fits is written.
        let mut short = [0f32; 3];
        assert_eq!(decode_ulaw_into(&bytes, &mut short), 3);

        let pcm: Vec<u8> = [0i16, 1, -1, i16::MAX, i16::MIN, 12345]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .chain([0xAB]) // odd trailing byte is ignored
            .collect();
        let mut f = [0f32; 8];
        assert_eq!(decode_l16le_into(&pcm, &mut f), 6);
        assert_eq!(f[3], 32767.0 / 32768.0);
        assert_eq!(f[4], -1.0);
        let mut out = [0u8; 12];
        assert_eq!(encode_l16le_from(&f[..6], &mut out), 6);
        assert_eq!(&out[..], &pcm[..12]);
    }
}
