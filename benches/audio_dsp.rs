//! Per-20 ms-frame cost of the live audio path: μ-law decode (160 B → f32), 8 kHz → 16 kHz
//! resampling of 160 samples, and both together. After criterion's report, prints ns per frame
//! and the share of one core one call uses (ns / 20 ms).
//!
//! Add to Cargo.toml:
//! [[bench]]
//! name = "audio_dsp"
//! harness = false

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::audio::g711::{decode_ulaw_into, encode_ulaw_from};
use switchboard::audio::resample::StreamResampler;

const FRAME_NS: f64 = 20_000_000.0;

fn ulaw_frame() -> [u8; 160] {
    let mut pcm = [0f32; 160];
    for (i, s) in pcm.iter_mut().enumerate() {
        *s = 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / 8000.0).sin();
    }
    let mut b = [0u8; 160];
    encode_ulaw_from(&pcm, &mut b);
    b
}

fn resampler() -> StreamResampler {
    StreamResampler::new(8000, 16_000, 160).expect("8k->16k is a supported pair")
}

fn benches(c: &mut Criterion) {
    let bytes = ulaw_frame();
    let mut pcm8 = [0f32; 160];
    decode_ulaw_into(&bytes, &mut pcm8);
    let mut out: Vec<f32> = Vec::with_capacity(1024);

    c.bench_function("ulaw_decode_160B", |b| {
        b.iter(|| decode_ulaw_into(black_box(&bytes), black_box(&mut pcm8)))
    });

    let mut rs = resampler();
    c.bench_function("resample_8k_16k_160", |b| {
        b.iter(|| {
            out.clear();
            rs.process(black_box(&pcm8), &mut out);
            black_box(out.len())
        })
    });

    let mut rs = resampler();
    c.bench_function("ulaw_decode_then_resample", |b| {
        b.iter(|| {
            decode_ulaw_into(black_box(&bytes), &mut pcm8);
            out.clear();
            rs.process(&pcm8, &mut out);
            black_box(out.len())
        })
    });

    // Plain summary: mean over ~1 s of back-to-back frames each.
    let mut rs = resampler();
    let report = |name: &str, f: &mut dyn FnMut()| {
        for _ in 0..1000 {
            f();
        }
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < Duration::from_secs(1) {
            for _ in 0..1000 {
                f();
            }
            n += 1000;
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{name:<28} {ns:>9.1} ns/frame = {:.5} % of one core per 20 ms call \
             (~{:.0} streams per core)",
            100.0 * ns / FRAME_NS,
            FRAME_NS / ns
        );
    };
    report("ulaw_decode_160B", &mut || {
        decode_ulaw_into(black_box(&bytes), black_box(&mut pcm8));
    });
    report("resample_8k_16k_160", &mut || {
        out.clear();
        rs.process(black_box(&pcm8), &mut out);
        black_box(out.len());
    });
    report("ulaw_decode_then_resample", &mut || {
        decode_ulaw_into(black_box(&bytes), &mut pcm8);
        out.clear();
        rs.process(&pcm8, &mut out);
        black_box(out.len());
    });
}

criterion_group!(audio_dsp, benches);
criterion_main!(audio_dsp);
