//! Decode an audio file to mono `f32` with symphonia 0.5: WAV (PCM 8/16/24/32-bit, float,
//! μ-law, A-law, IMA/MS ADPCM), FLAC, MP3 and Ogg/Vorbis.
//!
//! For files: prompts, fixtures and call recordings, not the live path (this allocates freely).
//! Stereo call recordings usually carry one party per channel, so the caller picks a channel
//! with [`ChannelPick`] or mixes them down.
//!
//! Robustness: a packet the codec cannot decode is skipped and decoding carries on; a file with
//! no decodable audio, a demuxer error, or a file that ends well before the length it declares
//! is a [`DecodeError`] naming the file. A panic inside symphonia is caught and reported as an
//! error too.
//!
//! Symphonia 0.5.5 quirks: ADPCM WAVs decode to whole blocks (the `fact` length is not applied,
//! so up to one block of silence is appended); a μ-law/A-law WAV must have the 18-byte `fmt ` chunk the WAVE spec
//! asks for (16-byte ones are refused as malformed); a WAV data size of ≥ 2 GiB is taken as a
//! streaming writer's placeholder (espeak-ng `--stdout` writes 0x7FFFF000) and is not checked.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

use super::resample::{ResampleError, resample_whole};

/// Which channel of a multi-channel file to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelPick {
    /// Average of all channels.
    #[default]
    Mix,
    /// Channel 0 (also fine for a mono file).
    Left,
    /// Channel 1 (an error for a mono file).
    Right,
    /// Channel `n`, counting from 0.
    Index(usize),
}

impl ChannelPick {
    fn index(self) -> Option<usize> {
        match self {
            ChannelPick::Mix => None,
            ChannelPick::Left => Some(0),
            ChannelPick::Right => Some(1),
            ChannelPick::Index(i) => Some(i),
        }
    }
}

/// A decoded file: one channel of samples in −1..1.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The picked (or mixed) channel.
    pub samples: Vec<f32>,
    /// Sample rate of the file in Hz.
    pub rate: u32,
    /// How many channels the file has.
    pub channels_in_file: u16,
}

/// Why a file could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be opened or read.
    #[error("cannot read audio file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a container symphonia recognises, or the header is damaged.
    #[error("{path}: not a readable WAV/FLAC/MP3/Ogg file ({reason})")]
    Unrecognised {
        /// The file.
        path: PathBuf,
        /// symphonia's explanation.
        reason: String,
    },
    /// The container holds no audio track, or one whose codec is not supported.
    #[error("{path}: unsupported audio ({reason})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The requested channel does not exist.
    #[error("{path}: channel {requested} requested but the file has {channels} channel(s)")]
    NoSuchChannel {
        /// The file.
        path: PathBuf,
        /// Requested channel index (0-based).
        requested: usize,
        /// Channels in the file.
        channels: u16,
    },
    /// The audio data is damaged beyond skipping a packet.
    #[error("{path}: corrupt audio data ({reason})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file ends well before the length its header declares.
    #[error("{path}: truncated, header declares {declared} frames but only {decoded} decode")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Frames the header declares.
        declared: u64,
        /// Frames actually decoded.
        decoded: u64,
    },
    /// Resampling the decoded audio failed (unsupported rate pair).
    #[error("{path}: {source}")]
    Resample {
        /// The file.
        path: PathBuf,
        /// The resampler's error.
        source: ResampleError,
    },
}

/// Decode `path` and keep the channel `channel` asks for.
pub fn read_audio(path: &Path, channel: ChannelPick) -> Result<Decoded, DecodeError> {
    match catch_unwind(AssertUnwindSafe(|| decode_file(path, channel))) {
        Ok(r) => r,
        Err(_) => Err(DecodeError::Corrupt {
            path: path.to_path_buf(),
            reason: "the decoder panicked on this input".into(),
        }),
    }
}

/// [`read_audio`], then resample the whole clip to `rate` Hz (filter delay trimmed, so the
/// result stays aligned with the file).
pub fn read_audio_at(
    path: &Path,
    channel: ChannelPick,
    rate: u32,
) -> Result<Vec<f32>, DecodeError> {
    let d = read_audio(path, channel)?;
    resample_whole(&d.samples, d.rate, rate).map_err(|source| DecodeError::Resample {
        path: path.to_path_buf(),
        source,
    })
}

fn decode_file(path: &Path, pick: ChannelPick) -> Result<Decoded, DecodeError> {
    let p = || path.to_path_buf();
    let file = File::open(path).map_err(|source| DecodeError::Io { path: p(), source })?;
    let mss = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let fmt_opts = FormatOptions {
        enable_gapless: true,
        ..FormatOptions::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &fmt_opts, &MetadataOptions::default())
        .map_err(|e| match e {
            SymError::IoError(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
                DecodeError::Io { path: p(), source }
            }
            e => DecodeError::Unrecognised {
                path: p(),
                reason: e.to_string(),
            },
        })?;
    let mut format = probed.format;

    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL && t.codec_params.sample_rate.is_some())
        .ok_or_else(|| DecodeError::Unsupported {
            path: p(),
            reason: "no audio track with a known sample rate".into(),
        })?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let rate = params.sample_rate.unwrap_or_default();
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| DecodeError::Unsupported {
            path: p(),
            reason: e.to_string(),
        })?;

    let mut channels: Option<u16> = params
        .channels
        .and_then(|c| u16::try_from(c.count()).ok())
        .filter(|&c| c > 0);
    if let (Some(want), Some(have)) = (pick.index(), channels)
        && want >= usize::from(have)
    {
        return Err(no_such_channel(path, want, have));
    }

    let mut samples = Vec::new();
    let mut frames: u64 = 0;
    let mut skipped = 0usize;
    let mut last_skip_reason = String::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            // A new chained stream: what came before is the file's audio.
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                return Err(DecodeError::Corrupt {
                    path: p(),
                    reason: format!("demuxer failed after {frames} frames: {e}"),
                });
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        if packet.buf().is_empty() {
            break;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                if spec.rate != rate {
                    return Err(DecodeError::Corrupt {
                        path: p(),
                        reason: format!("sample rate changes from {rate} to {} Hz", spec.rate),
                    });
                }
                let n_ch = u16::try_from(spec.channels.count()).unwrap_or(u16::MAX);
                match channels {
                    None => channels = Some(n_ch),
                    Some(c) if c != n_ch => {
                        return Err(DecodeError::Corrupt {
                            path: p(),
                            reason: format!("channel count changes from {c} to {n_ch}"),
                        });
                    }
                    Some(_) => {}
                }
                if let Some(want) = pick.index()
                    && want >= usize::from(n_ch)
                {
                    return Err(no_such_channel(path, want, n_ch));
                }
                frames += buf.frames() as u64;
                append(&buf, pick, &mut samples);
            }
            // A damaged packet: skip it and carry on.
            Err(SymError::DecodeError(e)) => {
                skipped += 1;
                last_skip_reason = e.to_string();
            }
            Err(SymError::IoError(e)) => {
                skipped += 1;
                last_skip_reason = e.to_string();
            }
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                return Err(DecodeError::Corrupt {
                    path: p(),
                    reason: format!("decoder failed after {frames} frames: {e}"),
                });
            }
        }
    }

    if frames == 0 && skipped > 0 {
        return Err(DecodeError::Corrupt {
            path: p(),
            reason: format!("none of {skipped} packet(s) decoded, last error: {last_skip_reason}"),
        });
    }
    let channels = channels.unwrap_or(1);
    if let Some(declared) = params.n_frames {
        // Allow a couple of codec frames of slack (encoder delay/padding bookkeeping).
        let slack = declared / 200 + 2304;
        let bytes_per_frame =
            u64::from(params.bits_per_coded_sample.unwrap_or(8).div_ceil(8)) * u64::from(channels);
        let placeholder = declared.saturating_mul(bytes_per_frame.max(1)) >= 0x7FFF_0000;
        if !placeholder && frames + slack < declared {
            return Err(DecodeError::Truncated {
                path: p(),
                declared,
                decoded: frames,
            });
        }
    }
    Ok(Decoded {
        samples,
        rate,
        channels_in_file: channels,
    })
}

fn no_such_channel(path: &Path, requested: usize, channels: u16) -> DecodeError {
    DecodeError::NoSuchChannel {
        path: path.to_path_buf(),
        requested,
        channels,
    }
}

fn append(buf: &AudioBufferRef<'_>, pick: ChannelPick, out: &mut Vec<f32>) {
    match buf {
        AudioBufferRef::U8(b) => append_typed(b, pick, out),
        AudioBufferRef::U16(b) => append_typed(b, pick, out),
        AudioBufferRef::U24(b) => append_typed(b, pick, out),
        AudioBufferRef::U32(b) => append_typed(b, pick, out),
        AudioBufferRef::S8(b) => append_typed(b, pick, out),
        AudioBufferRef::S16(b) => append_typed(b, pick, out),
        AudioBufferRef::S24(b) => append_typed(b, pick, out),
        AudioBufferRef::S32(b) => append_typed(b, pick, out),
        AudioBufferRef::F32(b) => append_typed(b, pick, out),
        AudioBufferRef::F64(b) => append_typed(b, pick, out),
    }
}

/// Appends one channel (or the mix) of a planar buffer. The caller has checked the index.
fn append_typed<S>(buf: &AudioBuffer<S>, pick: ChannelPick, out: &mut Vec<f32>)
where
    S: Sample + IntoSample<f32>,
{
    let n_ch = buf.spec().channels.count();
    match pick.index() {
        Some(c) if c < n_ch => out.extend(buf.chan(c).iter().map(|&s| s.into_sample())),
        Some(_) => {}
        None if n_ch <= 1 => {
            if n_ch == 1 {
                out.extend(buf.chan(0).iter().map(|&s| s.into_sample()));
            }
        }
        None => {
            let start = out.len();
            out.resize(start + buf.frames(), 0.0);
            let scale = 1.0 / n_ch as f32;
            for c in 0..n_ch {
                for (o, &s) in out[start..].iter_mut().zip(buf.chan(c)) {
                    let v: f32 = s.into_sample();
                    *o += v * scale;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711;
    use crate::audio::wav::{interleave_stereo, write_wav_i16, write_wav_ulaw};
    use std::f32::consts::TAU;
    use std::process::Command;

    fn sine(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    /// Correlation-free check that two signals match closely after quantisation.
    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn dominant_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn wav_i16_mono_round_trip() {
        let dir = tmp();
        let path = dir.path().join("a.wav");
        let x = sine(440.0, 16_000, 0.5, 0.5);
        write_wav_i16(&path, 16_000, 1, &x).expect("write");
        let d = read_audio(&path, ChannelPick::Mix).expect("decode");
        assert_eq!((d.rate, d.channels_in_file), (16_000, 1));
        assert_eq!(d.samples.len(), x.len());
        assert!(max_abs_diff(&d.samples, &x) < 1.0 / 32768.0 + 1e-6);
        // Left on a mono file is channel 0; Right is an error.
        assert_eq!(
            read_audio(&path, ChannelPick::Left).expect("left").samples,
            d.samples
        );
        let e = read_audio(&path, ChannelPick::Right).expect_err("mono has no right");
        assert!(
            matches!(e, DecodeError::NoSuchChannel { channels: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn wav_ulaw_decodes_like_g711() {
        let dir = tmp();
        let path = dir.path().join("u.wav");
        let x = sine(1000.0, 8000, 0.5, 0.5);
        write_wav_ulaw(&path, 8000, &x).expect("write");
        let d = read_audio(&path, ChannelPick::Mix).expect("decode μ-law WAV");
        assert_eq!((d.rate, d.channels_in_file), (8000, 1));
        let mut codes = vec![0u8; x.len()];
        g711::encode_ulaw_from(&x, &mut codes);
        let mut want = vec![0f32; x.len()];
        g711::decode_ulaw_into(&codes, &mut want);
        assert_eq!(d.samples.len(), want.len());
        assert!(
            max_abs_diff(&d.samples, &want) < 1e-6,
            "symphonia and g711.rs disagree"
        );
    }

    #[test]
    fn stereo_pick_left_right_mix() {
        let dir = tmp();
        let path = dir.path().join("s.wav");
        let left = sine(300.0, 8000, 0.5, 0.5);
        let right = sine(1200.0, 8000, 0.25, 0.25); // shorter: padded with silence
        write_wav_i16(&path, 8000, 2, &interleave_stereo(&left, &right)).expect("write");
        let l = read_audio(&path, ChannelPick::Left).expect("left");
        let r = read_audio(&path, ChannelPick::Right).expect("right");
        let m = read_audio(&path, ChannelPick::Mix).expect("mix");
        let i1 = read_audio(&path, ChannelPick::Index(1)).expect("index 1");
        assert_eq!(l.channels_in_file, 2);
        assert_eq!(l.samples.len(), 4000);
        assert!(max_abs_diff(&l.samples, &left) < 1e-4);
        assert!(max_abs_diff(&r.samples[..2000], &right) < 1e-4);
        assert!(r.samples[2000..].iter().all(|&v| v == 0.0));
        assert_eq!(r.samples, i1.samples);
        let mixed: Vec<f32> = l
            .samples
            .iter()
            .zip(&r.samples)
            .map(|(a, b)| (a + b) / 2.0)
            .collect();
        assert!(max_abs_diff(&m.samples, &mixed) < 1e-6);
        let e = read_audio(&path, ChannelPick::Index(2)).expect_err("no third channel");
        assert!(e.to_string().contains("channel 2"), "{e}");
    }

    #[test]
    fn read_audio_at_resamples() {
        let dir = tmp();
        let path = dir.path().join("r.wav");
        write_wav_i16(&path, 8000, 1, &sine(500.0, 8000, 1.0, 0.5)).expect("write");
        let y = read_audio_at(&path, ChannelPick::Mix, 16_000).expect("decode+resample");
        assert_eq!(y.len(), 16_000);
        let body = &y[800..15_200];
        assert!((rms(body) / (0.5 / 2f32.sqrt()) - 1.0).abs() < 0.05);
        // 500 Hz: 1000 crossings per second.
        let zc = dominant_crossings(body) as f32;
        assert!(
            (zc - 1000.0 * body.len() as f32 / 16_000.0).abs() <= 2.0,
            "{zc}"
        );
    }

    #[test]
    fn corrupt_and_truncated_files_are_errors() {
        let dir = tmp();
        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        let e = read_audio(&empty, ChannelPick::Mix).expect_err("empty");
        assert!(matches!(e, DecodeError::Unrecognised { .. }), "{e}");

        let noise = dir.path().join("noise.mp3");
        let bytes: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&noise, &bytes).expect("write");
        assert!(read_audio(&noise, ChannelPick::Mix).is_err());

        let missing = dir.path().join("missing.wav");
        let e = read_audio(&missing, ChannelPick::Mix).expect_err("missing");
        assert!(matches!(e, DecodeError::Io { .. }), "{e}");

        // A WAV cut in half: data chunk declares 1 s, file holds 0.5 s.
        let good = dir.path().join("good.wav");
        write_wav_i16(&good, 16_000, 1, &sine(440.0, 16_000, 1.0, 0.5)).expect("write");
        let full = std::fs::read(&good).expect("read");
        let cut = dir.path().join("cut.wav");
        std::fs::write(&cut, &full[..full.len() / 2]).expect("write");
        let e = read_audio(&cut, ChannelPick::Mix).expect_err("truncated");
        assert!(
            matches!(
                e,
                DecodeError::Truncated {
                    declared: 16_000,
                    ..
                }
            ),
            "{e}"
        );
        // Header only, cut inside the fmt chunk.
        let hdr = dir.path().join("hdr.wav");
        std::fs::write(&hdr, &full[..30]).expect("write");
        assert!(read_audio(&hdr, ChannelPick::Mix).is_err());

        // A streaming writer's placeholder size (espeak-ng --stdout) is not "truncated".
        let mut stream = full.clone();
        stream[4..8].copy_from_slice(&0x7FFF_F024u32.to_le_bytes());
        stream[40..44].copy_from_slice(&0x7FFF_F000u32.to_le_bytes());
        let st = dir.path().join("stream.wav");
        std::fs::write(&st, &stream).expect("write");
        let d = read_audio(&st, ChannelPick::Mix).expect("placeholder sizes decode");
        assert_eq!(d.samples.len(), 16_000);

        // Every byte after the header flipped in a FLAC: must not panic.
        let flac = sox_convert(&good, "flac");
        let mut f = std::fs::read(&flac).expect("read");
        let n = f.len();
        for b in &mut f[n / 3..] {
            *b ^= 0x5A;
        }
        let bad = dir.path().join("bad.flac");
        std::fs::write(&bad, &f).expect("write");
        let _ = read_audio(&bad, ChannelPick::Mix); // Ok (skipped packets) or Err, never a panic
        let cutflac = dir.path().join("cut.flac");
        std::fs::write(&cutflac, &std::fs::read(&flac).expect("read")[..n / 2]).expect("write");
        let e = read_audio(&cutflac, ChannelPick::Mix).expect_err("truncated flac");
        assert!(matches!(e, DecodeError::Truncated { .. }), "{e}");
    }

    /// Converts `src` with sox to a sibling file with extension `ext`. Panics (fails the test)
    /// if sox is missing: the project's setup installs it.
    fn sox_convert(src: &Path, ext: &str) -> PathBuf {
        let dst = src.with_extension(ext);
        let out = Command::new("sox")
            .arg(src)
            .arg(&dst)
            .output()
            .expect("sox must be installed (apt-get install sox) for the decode tests");
        assert!(
            out.status.success(),
            "sox {} -> {ext} failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dst
    }

    #[test]
    fn flac_and_ogg_vorbis_via_sox() {
        let dir = tmp();
        let wav = dir.path().join("t.wav");
        let left = sine(440.0, 16_000, 1.0, 0.5);
        let right = sine(880.0, 16_000, 1.0, 0.25);
        write_wav_i16(&wav, 16_000, 2, &interleave_stereo(&left, &right)).expect("write");

        let flac = sox_convert(&wav, "flac");
        let d = read_audio(&flac, ChannelPick::Right).expect("flac");
        assert_eq!(
            (d.rate, d.channels_in_file, d.samples.len()),
            (16_000, 2, 16_000)
        );
        assert!(max_abs_diff(&d.samples, &right) < 1e-4, "FLAC is lossless");

        let ogg = sox_convert(&wav, "ogg");
        let d = read_audio(&ogg, ChannelPick::Left).expect("ogg vorbis");
        assert_eq!((d.rate, d.channels_in_file), (16_000, 2));
        assert!(
            (d.samples.len() as i64 - 16_000).abs() <= 1024,
            "{}",
            d.samples.len()
        );
        let body = &d.samples[1600..14_400];
        assert!(
            (rms(body) / (0.5 / 2f32.sqrt()) - 1.0).abs() < 0.1,
            "{}",
            rms(body)
        );
        let zc = dominant_crossings(body) as f32;
        assert!(
            (zc - 880.0 * body.len() as f32 / 16_000.0).abs() <= 4.0,
            "{zc}"
        );
    }

    /// MP3 fixture: 0.5 s of 440 Hz at 16 kHz mono, made with LAME 3.100 (`-V 9`, so it has a
    /// Xing/LAME tag and gapless trimming gives exactly 8000 samples). Shipped because neither
    /// sox (without libsox-fmt-mp3) nor any other tool on a fresh machine writes MP3.
    #[test]
    fn mp3_fixture() {
        let dir = tmp();
        let path = dir.path().join("tone.mp3");
        let bytes = include_bytes!("testdata/tone440_16k.mp3");
        std::fs::write(&path, bytes).expect("write");
        let d = read_audio(&path, ChannelPick::Mix).expect("mp3");
        assert_eq!(
            (d.rate, d.channels_in_file, d.samples.len()),
            (16_000, 1, 8000)
        );
        let body = &d.samples[800..7200];
        assert!(
            (rms(body) / (0.5 / 2f32.sqrt()) - 1.0).abs() < 0.1,
            "{}",
            rms(body)
        );
        let zc = dominant_crossings(body) as f32;
        assert!(
            (zc - 880.0 * body.len() as f32 / 16_000.0).abs() <= 4.0,
            "{zc}"
        );

        let cut = dir.path().join("cut.mp3");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
        let e = read_audio(&cut, ChannelPick::Mix).expect_err("truncated mp3");
        assert!(
            matches!(e, DecodeError::Truncated { declared: 8000, .. }),
            "{e}"
        );
    }

    /// The other WAV sample formats, written by sox from a 16-bit original.
    #[test]
    fn wav_variants_via_sox() {
        let dir = tmp();
        let src = dir.path().join("src.wav");
        let x = sine(700.0, 8000, 0.5, 0.5);
        write_wav_i16(&src, 8000, 1, &x).expect("write");
        let variants: [(&str, &[&str], f32); 7] = [
            ("s24.wav", &["-b", "24"], 1e-4),
            ("s32.wav", &["-b", "32"], 1e-4),
            ("f32.wav", &["-e", "floating-point", "-b", "32"], 1e-4),
            ("ulaw.wav", &["-e", "u-law"], 0.02),
            ("alaw.wav", &["-e", "a-law"], 0.02),
            ("ima.wav", &["-e", "ima-adpcm"], 0.1),
            ("msadpcm.wav", &["-e", "ms-adpcm"], 0.1),
        ];
        for (name, args, tol) in variants {
            let dst = dir.path().join(name);
            let out = Command::new("sox")
                .arg(&src)
                .args(args)
                .arg(&dst)
                .output()
                .expect("sox must be installed (apt-get install sox) for the decode tests");
            assert!(
                out.status.success(),
                "sox {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let d = read_audio(&dst, ChannelPick::Mix).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d.rate, 8000, "{name}");
            // ADPCM decodes whole blocks: up to one block of padding at the end.
            let pad = if name.contains("adpcm") || name.starts_with("ima") {
                1024
            } else {
                0
            };
            let n = d.samples.len();
            assert!(n >= x.len() && n <= x.len() + pad, "{name}: {n} samples");
            let err = max_abs_diff(&d.samples[..x.len()], &x);
            assert!(err < tol, "{name}: max error {err}");
        }
    }
}
