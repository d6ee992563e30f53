//! Minimal WAV writers for fixtures, recordings and debugging dumps: 16-bit PCM and 8-bit
//! G.711 μ-law. Samples are `f32` in −1..1; out-of-range values clip, NaN becomes silence.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::g711::{f32_to_i16, ulaw_encode};

/// Write interleaved `f32` samples as a 16-bit PCM WAV with the canonical 44-byte header.
///
/// Fails with `InvalidInput` if `channels` is 0, `interleaved.len()` is not a multiple of
/// `channels`, or the data would not fit a WAV's 32-bit sizes.
pub fn write_wav_i16(path: &Path, rate: u32, channels: u16, interleaved: &[f32]) -> io::Result<()> {
    if channels == 0 || !interleaved.len().is_multiple_of(usize::from(channels)) {
        return Err(invalid(format!(
            "{} samples do not make whole frames of {channels} channel(s)",
            interleaved.len()
        )));
    }
    let data_len = data_len(interleaved.len(), 2)?;
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(&riff_header(1, rate, channels, 16, data_len, 0))?;
    for &s in interleaved {
        w.write_all(&f32_to_i16(s).to_le_bytes())?;
    }
    w.flush()
}

/// Write mono `f32` samples as a G.711 μ-law WAV (format tag 7, 8 bits per sample) — the
/// format of 8 kHz telephony fixtures. The header follows the WAVE spec for non-PCM data: an
/// 18-byte `fmt ` chunk (cbSize 0) and a `fact` chunk with the sample count, 58 bytes in all,
/// as sox writes it.
pub fn write_wav_ulaw(path: &Path, rate: u32, mono: &[f32]) -> io::Result<()> {
    let data_len = data_len(mono.len(), 1)?;
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(&riff_header(7, rate, 1, 8, data_len, mono.len() as u32))?;
    let mut buf = [0u8; 4096];
    for chunk in mono.chunks(buf.len()) {
        for (b, &s) in buf.iter_mut().zip(chunk) {
            *b = ulaw_encode(f32_to_i16(s));
        }
        w.write_all(&buf[..chunk.len()])?;
    }
    w.flush()
}

/// Interleave two mono signals into L/R frames; the shorter one is padded with silence.
pub fn interleave_stereo(left: &[f32], right: &[f32]) -> Vec<f32> {
    let n = left.len().max(right.len());
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        out.push(left.get(i).copied().unwrap_or(0.0));
        out.push(right.get(i).copied().unwrap_or(0.0));
    }
    out
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Data chunk size in bytes, checked against the RIFF 32-bit limit (with header room).
fn data_len(samples: usize, bytes_per_sample: u64) -> io::Result<u32> {
    (samples as u64)
        .checked_mul(bytes_per_sample)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= u32::MAX - 64)
        .ok_or_else(|| invalid(format!("{samples} samples are too many for a WAV file")))
}

/// RIFF/WAVE header up to the start of the sample data. PCM (`format` 1): the canonical 44
/// bytes. Other formats: 18-byte `fmt ` chunk plus a `fact` chunk holding `fact_samples`.
pub(crate) fn riff_header(
    format: u16,
    rate: u32,
    channels: u16,
    bits: u16,
    data_len: u32,
    fact_samples: u32,
) -> Vec<u8> {
    let pcm = format == 1;
    let block_align = channels * bits.div_ceil(8);
    let byte_rate = rate.saturating_mul(u32::from(block_align));
    let fmt_len: u32 = if pcm { 16 } else { 18 };
    let fact_len: u32 = if pcm { 0 } else { 12 };
    let riff_len = 4 + (8 + fmt_len) + fact_len + 8 + data_len;
    let mut h = Vec::with_capacity(58);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_len.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&fmt_len.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&byte_rate.to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    if !pcm {
        h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&fact_samples.to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }
    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[i], b[i + 1]])
    }

    #[test]
    fn i16_header_is_canonical_and_clips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.wav");
        write_wav_i16(&path, 8000, 2, &[0.0, 0.5, 2.0, -2.0, f32::NAN, -1.0]).expect("write");
        let b = std::fs::read(&path).expect("read");
        assert_eq!(b.len(), 44 + 12);
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32_at(&b, 4), 36 + 12);
        assert_eq!(&b[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(&b, 16), 16);
        assert_eq!(u16_at(&b, 20), 1);
        assert_eq!(u16_at(&b, 22), 2);
        assert_eq!(u32_at(&b, 24), 8000);
        assert_eq!(u32_at(&b, 28), 32_000);
        assert_eq!(u16_at(&b, 32), 4);
        assert_eq!(u16_at(&b, 34), 16);
        assert_eq!(&b[36..40], b"data");
        assert_eq!(u32_at(&b, 40), 12);
        let s: Vec<i16> = b[44..]
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(s, [0, 16384, 32767, -32768, 0, -32768]);
        assert!(write_wav_i16(&path, 8000, 2, &[0.0; 3]).is_err());
        assert!(write_wav_i16(&path, 8000, 0, &[]).is_err());
    }

    #[test]
    fn ulaw_header() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("u.wav");
        write_wav_ulaw(&path, 8000, &[0.0; 5000]).expect("write");
        let b = std::fs::read(&path).expect("read");
        assert_eq!(b.len(), 58 + 5000);
        assert_eq!(u32_at(&b, 4) as usize, b.len() - 8);
        assert_eq!(u32_at(&b, 16), 18);
        assert_eq!(u16_at(&b, 20), 7);
        assert_eq!(u32_at(&b, 28), 8000);
        assert_eq!(u16_at(&b, 34), 8);
        assert_eq!(&b[38..42], b"fact");
        assert_eq!(u32_at(&b, 46), 5000);
        assert_eq!(&b[50..54], b"data");
        assert_eq!(u32_at(&b, 54), 5000);
        assert!(b[58..].iter().all(|&x| x == 0xFF));
    }

    #[test]
    fn interleave_pads_shorter() {
        assert_eq!(
            interleave_stereo(&[1.0, 2.0, 3.0], &[4.0]),
            [1.0, 4.0, 2.0, 0.0, 3.0, 0.0]
        );
        assert_eq!(interleave_stereo(&[], &[5.0]), [0.0, 5.0]);
        assert!(interleave_stereo(&[], &[]).is_empty());
    }
}
