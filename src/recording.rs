//! Call recordings, opt-in by `[recording]`: for each call a directory `<dir>/<case id>/` with
//!
//! - `call.wav` — 16 kHz 16-bit stereo, the caller left and the bot right (what the caller heard,
//!   where they heard it): the layout `switchboard replay --out` writes, so
//!   `switchboard replay --track <dir>/<case id>` replays any recorded call;
//! - `timeline.jsonl` — the call's events, one JSON object per line (the objects of replay's
//!   `timeline.json`), card numbers masked;
//! - `meta.json` — who, which provider, when, how it ended.
//!
//! Written as the call runs: the session hands a second of audio at a time to one writer thread,
//! which appends it and rewrites the WAV header's two sizes, so a crash loses at most the last
//! second. The call never waits on the disk: when the writer falls behind, audio is dropped (and
//! said so in the log), never the call's time. Recordings older than `retention_days` are purged
//! with the other records.

use crate::audio::g711::f32_to_i16;
use crate::audio::resample::StreamResampler;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// The recording's rate: the caller's track is 16 kHz already.
pub const RATE: u32 = 16_000;
/// Audio handed to the writer at a time (stereo samples: one second).
const CHUNK: usize = 2 * RATE as usize;
/// Messages the writer may have waiting (about ten seconds of 40 calls).
const QUEUE: usize = 512;
/// Bytes of the canonical PCM header before the samples.
const HEADER: u64 = 44;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Record every call (callers must be told: see README, "Recording calls").
    pub enabled: bool,
    /// Where recordings go; empty: `<data_dir>/recordings`.
    pub dir: PathBuf,
    /// Recordings older than this many days are deleted (0: kept forever).
    pub retention_days: u64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: false,
            dir: PathBuf::new(),
            retention_days: 30,
        }
    }
}

enum Msg {
    Open { id: Arc<str>, meta: Value },
    Audio { id: Arc<str>, pcm: Vec<i16> },
    Line { id: Arc<str>, line: String },
    Close { id: Arc<str>, meta: Value },
}

/// The recordings of a gateway: their directory and the one writer thread.
pub struct Recordings {
    dir: PathBuf,
    retention_days: u64,
    tx: SyncSender<Msg>,
}

impl Recordings {
    /// Creates `dir` and starts the writer thread.
    pub fn start(dir: PathBuf, retention_days: u64) -> io::Result<Arc<Recordings>> {
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = sync_channel(QUEUE);
        let root = dir.clone();
        std::thread::Builder::new()
            .name("recordings".into())
            .spawn(move || writer(&root, rx))?;
        Ok(Arc::new(Recordings {
            dir,
            retention_days,
            tx,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts recording call `id` (its case id), whose bot audio leaves at `out_rate`.
    /// `meta` is written to `meta.json` now and completed when the call ends.
    pub fn recorder(&self, id: &str, mut meta: Value, out_rate: u32) -> Option<Recorder> {
        if !valid_id(id) {
            tracing::warn!(id, "not recording a call whose id is not a plain name");
            return None;
        }
        let resampler = match StreamResampler::new(out_rate, RATE, out_rate as usize / 50) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, out_rate, "not recording: the bot's rate is unsupported");
                return None;
            }
        };
        let id: Arc<str> = Arc::from(id);
        meta["id"] = json!(&*id);
        meta["rate"] = json!(RATE);
        meta["channels"] = json!(["caller", "bot"]);
        meta["started_at_ms"] = json!(unix_ms());
        let mut r = Recorder {
            id: id.clone(),
            tx: self.tx.clone(),
            meta: meta.clone(),
            chunk: Vec::with_capacity(CHUNK),
            bot: VecDeque::with_capacity(RATE as usize * 10),
            resampler,
            resampled: Vec::with_capacity(RATE as usize),
            dropped: 0,
        };
        r.send(Msg::Open { id, meta });
        Some(r)
    }

    /// Every recording's `meta.json` (with its audio size in `bytes`), newest first.
    pub fn list(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut out: Vec<Value> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let dir = e.path();
                let mut meta: Value =
                    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
                let bytes = std::fs::metadata(dir.join("call.wav")).map_or(0, |m| m.len());
                meta["bytes"] = json!(bytes);
                Some(meta)
            })
            .collect();
        out.sort_by_key(|m| std::cmp::Reverse(m["started_at_ms"].as_u64().unwrap_or(0)));
        out
    }

    /// The path of `file` (`call.wav`, `timeline.jsonl`, `meta.json`) of recording `id`, if it
    /// exists.
    pub fn file(&self, id: &str, file: &str) -> Option<PathBuf> {
        if !valid_id(id) || !matches!(file, "call.wav" | "timeline.jsonl" | "meta.json") {
            return None;
        }
        let p = self.dir.join(id).join(file);
        p.is_file().then_some(p)
    }

    /// Deletes recordings that started more than `retention_days` before `now_ms`. Returns how
    /// many.
    pub fn purge(&self, now_ms: u64) -> usize {
        if self.retention_days == 0 {
            return 0;
        }
        let before = now_ms.saturating_sub(self.retention_days.saturating_mul(86_400_000));
        let mut n = 0;
        for m in self.list() {
            let (Some(id), Some(started)) = (m["id"].as_str(), m["started_at_ms"].as_u64()) else {
                continue;
            };
            if started < before && valid_id(id) {
                match std::fs::remove_dir_all(self.dir.join(id)) {
                    Ok(()) => n += 1,
                    Err(e) => tracing::warn!(id, error = %e, "could not delete a recording"),
                }
            }
        }
        n
    }
}

/// A recording id is a case id: letters, digits, `-` and `_` only (never a path).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One call's recording, fed by its session. Nothing here allocates per audio frame: the
/// interleaved chunk is handed over (and a new one made) once a second.
pub struct Recorder {
    id: Arc<str>,
    tx: SyncSender<Msg>,
    meta: Value,
    /// Interleaved caller/bot samples not yet handed to the writer.
    chunk: Vec<i16>,
    /// Bot audio sent and not yet played, 16 kHz: it plays one sample per caller sample.
    bot: VecDeque<f32>,
    resampler: StreamResampler,
    resampled: Vec<f32>,
    /// Messages the writer had no room for.
    dropped: u64,
}

impl Recorder {
    /// Caller audio, 16 kHz: the recording's clock. The bot's audio waiting to play is laid
    /// beside it.
    pub fn caller(&mut self, samples: &[f32]) {
        for &s in samples {
            let b = self.bot.pop_front().unwrap_or(0.0);
            self.chunk.push(f32_to_i16(s));
            self.chunk.push(f32_to_i16(b));
            if self.chunk.len() >= CHUNK {
                self.hand_over();
            }
        }
    }

    /// Bot audio sent to the caller, at the session's output rate.
    pub fn bot(&mut self, samples: &[f32]) {
        self.resampled.clear();
        self.resampler.process(samples, &mut self.resampled);
        self.bot.extend(self.resampled.iter().copied());
    }

    /// The bot's audio was cleared: what had not played was never heard.
    pub fn clear(&mut self) {
        self.bot.clear();
    }

    /// One timeline entry (card numbers in its words are masked; its numbers are kept: a
    /// probability's digits are not a card).
    pub fn line(&mut self, entry: &Value) {
        let mut entry = entry.clone();
        redact_strings(&mut entry);
        let line = entry.to_string();
        self.send(Msg::Line {
            id: self.id.clone(),
            line,
        });
    }

    /// The call is over: the bot's last words still queued are laid over silence, and
    /// `meta.json` gets `outcome` and the end time.
    pub fn finish(mut self, outcome: &str) {
        // At most ten seconds of a reply the caller hung up on.
        let tail = self.bot.len().min(RATE as usize * 10);
        for _ in 0..tail {
            let b = self.bot.pop_front().unwrap_or(0.0);
            self.chunk.push(0);
            self.chunk.push(f32_to_i16(b));
        }
        if !self.chunk.is_empty() {
            self.hand_over();
        }
        let mut meta = std::mem::take(&mut self.meta);
        meta["ended_at_ms"] = json!(unix_ms());
        meta["outcome"] = json!(outcome);
        if self.dropped > 0 {
            meta["dropped_messages"] = json!(self.dropped);
        }
        let id = self.id.clone();
        self.send(Msg::Close { id, meta });
    }

    fn hand_over(&mut self) {
        let pcm = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.send(Msg::Audio {
            id: self.id.clone(),
            pcm,
        });
    }

    fn send(&mut self, m: Msg) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped == 1 {
                    tracing::warn!(
                        id = %self.id,
                        "the recording writer is behind: part of this call's recording is lost"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
            }
        }
    }
}

/// One open recording on the writer's side.
struct Open {
    wav: File,
    timeline: File,
    data_bytes: u64,
}

fn writer(root: &Path, rx: Receiver<Msg>) {
    let mut open: HashMap<Arc<str>, Open> = HashMap::new();
    // Ids whose files failed: not retried (one warning each).
    let mut failed: std::collections::HashSet<Arc<str>> = Default::default();
    while let Ok(m) = rx.recv() {
        let id = match &m {
            Msg::Open { id, .. } | Msg::Audio { id, .. } | Msg::Line { id, .. } => id.clone(),
            Msg::Close { id, .. } => id.clone(),
        };
        let dir = root.join(&*id);
        let result = match m {
            Msg::Open { meta, .. } => create(&dir, &meta).map(|o| {
                open.insert(id.clone(), o);
            }),
            Msg::Audio { pcm, .. } => match open.get_mut(&id) {
                Some(o) => append_audio(o, &pcm),
                None => Ok(()),
            },
            Msg::Line { line, .. } => match open.get_mut(&id) {
                Some(o) => o
                    .timeline
                    .write_all(line.as_bytes())
                    .and_then(|()| o.timeline.write_all(b"\n")),
                None => Ok(()),
            },
            Msg::Close { meta, .. } => {
                open.remove(&id);
                failed.remove(&id);
                write_meta(&dir, &meta)
            }
        };
        if let Err(e) = result
            && failed.insert(id.clone())
        {
            tracing::warn!(id = %id, dir = %dir.display(), error = %e, "recording failed");
            open.remove(&id);
        }
    }
}

fn create(dir: &Path, meta: &Value) -> io::Result<Open> {
    std::fs::create_dir_all(dir)?;
    write_meta(dir, meta)?;
    let mut wav = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("call.wav"))?;
    wav.write_all(&crate::audio::wav::riff_header(1, RATE, 2, 16, 0, 0))?;
    let timeline = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("timeline.jsonl"))?;
    Ok(Open {
        wav,
        timeline,
        data_bytes: 0,
    })
}

/// Appends samples, then makes the header's sizes say so: the file is a whole WAV after every
/// second of the call.
fn append_audio(o: &mut Open, pcm: &[i16]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(pcm.len() * 2);
    for s in pcm {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    // Past 4 GB the WAV sizes cannot say so: stop there (about 18 hours of call).
    let total = o.data_bytes + bytes.len() as u64;
    if total + HEADER > u64::from(u32::MAX) {
        return Ok(());
    }
    o.wav.seek(SeekFrom::Start(HEADER + o.data_bytes))?;
    o.wav.write_all(&bytes)?;
    o.data_bytes = total;
    let data = o.data_bytes as u32;
    o.wav.seek(SeekFrom::Start(4))?;
    o.wav.write_all(&(36 + data).to_le_bytes())?;
    o.wav.seek(SeekFrom::Start(40))?;
    o.wav.write_all(&data.to_le_bytes())?;
    Ok(())
}

/// `meta.json`, replaced whole (written beside and renamed).
fn write_meta(dir: &Path, meta: &Value) -> io::Result<()> {
    let tmp = dir.join("meta.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(meta)?)?;
    std::fs::rename(tmp, dir.join("meta.json"))
}

/// Masks card numbers in every string of `v` (keys are the gateway's own names).
fn redact_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(r) = crate::redact::redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_strings),
        Value::Object(m) => m.values_mut().for_each(redact_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::decode::{ChannelPick, read_audio_at};

    fn wait_for(p: &Path, f: impl Fn(&Path) -> bool) {
        for _ in 0..200 {
            if f(p) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{} never became ready", p.display());
    }

    #[test]
    fn a_recording_is_a_whole_wav_after_each_second_and_lays_the_bot_where_it_played() {
        let tmp = tempfile::tempdir().unwrap();
        let recs = Recordings::start(tmp.path().to_path_buf(), 30).unwrap();
        let mut r = recs
            .recorder("case-1", json!({"provider": "twilio"}), 8000)
            .unwrap();
        // 1.5 s: the caller says 0.25 everywhere; the bot sends 0.5 s of 0.5 at 8 kHz at 1 s.
        let frame = [0.25f32; 320];
        for i in 0..75 {
            if i == 50 {
                r.bot(&[0.5f32; 4000]);
            }
            r.caller(&frame);
        }
        let wav = tmp.path().join("case-1/call.wav");
        // One second was handed over: the file is a valid WAV of one second already.
        wait_for(&wav, |p| {
            std::fs::metadata(p).is_ok_and(|m| m.len() == HEADER + 64_000)
        });
        let left = read_audio_at(&wav, ChannelPick::Left, RATE).unwrap();
        assert_eq!(left.len(), 16_000);
        r.line(&json!({"kind": "transcript", "text": "my card is 4111 1111 1111 1111"}));
        // A probability whose digits pass the card check stays a number (the whole line was
        // once masked, which left `0.[card ending 2185]` in a recording).
        let p = 0.997_581_899_166_107_2;
        assert!(crate::redact::redact(&p.to_string()).contains("card ending"));
        r.line(&json!({"kind": "end_predicted", "complete": p}));
        r.finish("caller hung up");
        let meta = tmp.path().join("case-1/meta.json");
        wait_for(&meta, |p| {
            std::fs::read_to_string(p).is_ok_and(|s| s.contains("caller hung up"))
        });
        let left = read_audio_at(&wav, ChannelPick::Left, RATE).unwrap();
        let right = read_audio_at(&wav, ChannelPick::Right, RATE).unwrap();
        assert_eq!(left.len(), 24_000, "1.5 s of call");
        assert!((left[100] - 0.25).abs() < 1e-3);
        // The bot is silent until it spoke at 1.0 s, then 0.5 (past the resampler's delay).
        assert!(right[..16_000].iter().all(|&s| s == 0.0));
        assert!(right[16_000..].iter().any(|&s| (s - 0.5).abs() < 0.02));
        let timeline = std::fs::read_to_string(tmp.path().join("case-1/timeline.jsonl")).unwrap();
        assert_eq!(timeline.lines().count(), 2);
        assert!(!timeline.contains("4111 1111 1111 1111"), "{timeline}");
        for line in timeline.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if v["kind"] == "end_predicted" {
                assert_eq!(v["complete"].as_f64(), Some(p));
            }
        }
        let listed = recs.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], "case-1");
        assert_eq!(listed[0]["provider"], "twilio");
        assert_eq!(listed[0]["bytes"], HEADER + 96_000);
        assert!(recs.file("case-1", "call.wav").is_some());
        assert!(recs.file("../case-1", "call.wav").is_none());
        assert!(recs.file("case-1", "../meta.json").is_none());
        assert!(recs.recorder("a/b", json!({}), 8000).is_none());
    }

    #[test]
    fn clear_drops_the_bot_audio_not_yet_played_and_purge_keeps_recent_calls() {
        let tmp = tempfile::tempdir().unwrap();
        let recs = Recordings::start(tmp.path().to_path_buf(), 1).unwrap();
        let mut r = recs.recorder("case-2", json!({}), 16_000).unwrap();
        r.bot(&[0.5f32; 16_000]);
        r.caller(&[0.0f32; 8_000]);
        r.clear();
        r.caller(&[0.0f32; 8_000]);
        r.finish("resolved");
        let meta = tmp.path().join("case-2/meta.json");
        wait_for(&meta, |p| {
            std::fs::read_to_string(p).is_ok_and(|s| s.contains("resolved"))
        });
        let wav = tmp.path().join("case-2/call.wav");
        let right = read_audio_at(&wav, ChannelPick::Right, RATE).unwrap();
        assert_eq!(right.len(), 16_000, "no tail: the rest was cleared");
        assert!(right[..8_000].iter().all(|&s| (s - 0.5).abs() < 1e-3));
        assert!(right[8_000..].iter().all(|&s| s == 0.0));
        let now = unix_ms();
        assert_eq!(recs.purge(now), 0, "a call of today is kept");
        assert_eq!(
            recs.purge(now + 2 * 86_400_000),
            1,
            "two days later it is gone"
        );
        assert!(recs.list().is_empty());
    }
}
