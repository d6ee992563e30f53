//! The replay driver: a call through the whole pipeline — turn-taking, whisper, the conversation
//! engine, espeak-ng and the per-call core, in the same [`Session`] the phone and the browser
//! use — without a network.
//!
//! The caller is either a recorded track on its fixed timeline (if the bot is still talking
//! when the caller speaks again, that is a barge-in, as in a real call), or a script of
//! utterances, each played when the bot has finished plus a pause. The transport is simulated:
//! audio sent by the core is played at real-time rate, marks are echoed when played, `Clear`
//! drops what was not yet played and echoes the pending marks (as Twilio does).
//!
//! On the virtual clock (the default) time advances 20 ms per step and stands still while ASR,
//! the agent and TTS work (`Session::settle`), so the same input gives the same timeline, as
//! fast as the CPU allows.
//! With `realtime`, steps are paced by the wall clock and processing time is real.

use crate::agent::engine::Engine;
use crate::call::{CallConfig, CallEvent, EndAction, EventKind};
use crate::runtime::session::{LocalMarks, MediaPort, Session, SessionParts};
use crate::runtime::speech::Speech;
use anyhow::Result;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

const STEP_MS: u64 = 20;
const IN_RATE: u64 = 16_000;

pub enum CallerSource {
    /// 16 kHz mono, on the call's timeline from t = 0.
    Track(Vec<f32>),
    /// 16 kHz mono utterances, each after the bot finishes + `pause_ms`.
    Script { clips: Vec<Vec<f32>>, pause_ms: u64 },
}

pub struct ReplayResult {
    pub timeline: Vec<Value>,
    /// What the caller said, 16 kHz, on the call's timeline.
    pub caller: Vec<f32>,
    /// What the caller heard, 16 kHz, on the call's timeline.
    pub bot: Vec<f32>,
    pub conversation_id: String,
    pub case_id: String,
    pub ended: Option<EndAction>,
    pub duration_ms: u64,
}

/// The simulated line: plays what it is sent in order at real-time rate, echoes each mark when
/// its audio has played, and on `Clear` drops what was not yet played and echoes the pending
/// marks at once (as Twilio does).
struct Transport {
    rate: u64,
    buffer: VecDeque<f32>,
    received: u64,
    played: u64,
    marks: LocalMarks,
    heard: Vec<f32>,
    /// Marks played or cleared, for the session.
    echoed: Vec<u64>,
    /// The bot's last reply finished playing (the scripted caller's cue).
    bot_audio_ended: bool,
}

impl MediaPort for Transport {
    fn send_audio(&mut self, samples: &[f32], _now: u64) {
        self.buffer.extend(samples);
        self.received += samples.len() as u64;
    }

    fn mark(&mut self, id: u64, _now: u64) {
        self.marks.push(self.received, id);
    }

    fn clear(&mut self, _now: u64) {
        self.received -= self.buffer.len() as u64;
        self.buffer.clear();
        self.echoed.extend(self.marks.drain());
    }

    fn event(&mut self, e: &CallEvent) {
        if matches!(e.kind, EventKind::BotAudioEnd { .. }) {
            self.bot_audio_ended = true;
        }
    }
}

impl Transport {
    /// Plays one step (ending at `t_ms`); the marks now played go to `echoed`.
    fn play_step(&mut self, t_ms: u64) {
        let start = ((t_ms - STEP_MS) * self.rate / 1000) as usize;
        let n = (STEP_MS * self.rate / 1000) as usize;
        if self.heard.len() < start + n {
            self.heard.resize(start + n, 0.0);
        }
        for i in 0..n {
            match self.buffer.pop_front() {
                Some(s) => {
                    self.heard[start + i] = s;
                    self.played += 1;
                }
                None => break,
            }
        }
        while let Some(id) = self.marks.pop_due(self.played) {
            self.echoed.push(id);
        }
    }
}

struct Script {
    clips: VecDeque<Vec<f32>>,
    pause_ms: u64,
    current: Option<(Vec<f32>, usize)>,
    next_start: Option<u64>,
    waiting_since: Option<u64>,
}

pub async fn replay(
    engine: Arc<Engine>,
    speech: Speech,
    cfg: CallConfig,
    source: CallerSource,
    caller_id: &str,
    realtime: bool,
) -> Result<ReplayResult> {
    let out_rate = cfg.out_rate as u64;
    let parts = SessionParts {
        engine: &engine,
        speech: &speech,
        call: &cfg,
        out_rate: cfg.out_rate,
        monitor: None,
        recordings: None,
        follow_line: false,
    };
    let mut transport = Transport {
        rate: out_rate,
        buffer: VecDeque::new(),
        received: 0,
        played: 0,
        marks: LocalMarks::default(),
        heard: vec![],
        echoed: vec![],
        bot_audio_ended: false,
    };
    let mut caller_track: Vec<f32> = vec![];
    let mut frame = vec![0f32; (IN_RATE * STEP_MS / 1000) as usize];

    let mut session = Session::start(&parts, caller_id, "replay", json!({}), 0).await?;
    session.record_timeline();
    let conversation_id = session.conversation_id().unwrap_or_default().to_string();
    let case_id = session.case_id().to_string();
    let (track, mut script) = match source {
        CallerSource::Track(t) => (t, None),
        CallerSource::Script { clips, pause_ms } => (
            vec![],
            Some(Script {
                clips: clips.into(),
                pause_ms,
                current: None,
                next_start: None,
                waiting_since: Some(0),
            }),
        ),
    };
    let limit_ms = track.len() as u64 * 1000 / IN_RATE
        + 60_000
        + script.as_ref().map_or(0, |s| {
            s.clips
                .iter()
                .map(|c| c.len() as u64 * 1000 / IN_RATE + 30_000)
                .sum()
        });
    let wall = tokio::time::Instant::now();
    let mut t: u64 = 0;
    let mut quiet_since: Option<u64> = None;
    let mut limit_hit = false;
    loop {
        // Time stands still while the effects of this step run.
        settle(&mut session, t, &mut transport).await?;
        if std::mem::take(&mut transport.bot_audio_ended)
            && let Some(s) = script.as_mut()
            && s.current.is_none()
        {
            s.waiting_since = None;
            s.next_start = Some(t + s.pause_ms);
        }
        if session.is_over() && transport.buffer.is_empty() {
            break;
        }
        t += STEP_MS;
        if t > limit_ms {
            limit_hit = true;
            break;
        }
        if realtime {
            tokio::time::sleep_until(wall + Duration::from_millis(t)).await;
        }
        transport.play_step(t);
        for id in transport.echoed.drain(..) {
            session.mark_played(t, id);
        }
        // The caller's next 20 ms.
        frame.fill(0.0);
        let from = (t - STEP_MS) as usize * IN_RATE as usize / 1000;
        let mut input_left = false;
        if !track.is_empty() {
            if from < track.len() {
                let n = frame.len().min(track.len() - from);
                frame[..n].copy_from_slice(&track[from..from + n]);
                input_left = true;
            }
        } else if let Some(s) = script.as_mut() {
            input_left = script_frame(s, t, &mut frame, session.bot_speaking());
        }
        caller_track.extend_from_slice(&frame);
        session.caller_audio(t, &frame);
        if session.poll_timeout().is_some_and(|d| d <= t) {
            session.timeout(t);
        }
        // Stop once the caller is done and the bot has been quiet for a while.
        let busy = input_left || session.bot_speaking() || !transport.buffer.is_empty();
        match (busy, quiet_since) {
            (true, _) => quiet_since = None,
            (false, None) => quiet_since = Some(t),
            (false, Some(q)) if t - q >= 3000 => break,
            _ => {}
        }
    }
    let mut timeline = session.take_timeline();
    if limit_hit {
        timeline.push(json!({"t_ms": t, "kind": "replay_limit"}));
    }
    let ended = session.end_action().cloned();
    // The call is over: its case is closed with how it ended, as a live call's is.
    if ended.is_none() {
        session.hang_up(t, "caller hung up");
    }
    session.finish(json!({})).await;
    // What the caller heard, brought to the caller track's rate for the stereo recording.
    let bot =
        crate::audio::resample::resample_whole(&transport.heard, out_rate as u32, IN_RATE as u32)?;
    Ok(ReplayResult {
        timeline,
        caller: caller_track,
        bot,
        conversation_id,
        case_id,
        ended,
        duration_ms: t,
    })
}

/// Runs the session's effects to completion at `t`, echoing cleared marks as they come.
async fn settle(session: &mut Session, t: u64, transport: &mut Transport) -> Result<()> {
    loop {
        tokio::time::timeout(Duration::from_secs(300), session.settle(t, transport))
            .await
            .map_err(|_| anyhow::anyhow!("an effect did not finish within 300 s"))??;
        if transport.echoed.is_empty() {
            return Ok(());
        }
        for id in std::mem::take(&mut transport.echoed) {
            session.mark_played(t, id);
        }
    }
}

/// Next caller frame of a scripted call; false when the script is over.
fn script_frame(s: &mut Script, t: u64, frame: &mut [f32], bot_speaking: bool) -> bool {
    if s.current.is_none()
        && let Some(start) = s.next_start
        && t >= start
    {
        s.next_start = None;
        s.current = s.clips.pop_front().map(|c| (c, 0));
    }
    if let Some((clip, pos)) = s.current.as_mut() {
        let n = frame.len().min(clip.len() - *pos);
        frame[..n].copy_from_slice(&clip[*pos..*pos + n]);
        *pos += n;
        if *pos >= clip.len() {
            s.current = None;
            s.waiting_since = Some(t);
        }
        return true;
    }
    // No reply within 10 s of silence (e.g. nothing was understood): the caller goes on.
    if bot_speaking && s.waiting_since.is_some() {
        s.waiting_since = Some(t);
    }
    if let Some(since) = s.waiting_since
        && s.next_start.is_none()
        && t.saturating_sub(since) > 10_000
    {
        s.waiting_since = None;
        s.next_start = Some(t);
    }
    !s.clips.is_empty() || s.current.is_some()
}

/// A readable transcript of a timeline: `[mm:ss.s] who: what`.
pub fn transcript(timeline: &[Value]) -> String {
    let mut out = String::new();
    for e in timeline {
        let t = e["t_ms"].as_u64().unwrap_or(0);
        let stamp = format!("[{:02}:{:04.1}]", t / 60_000, (t % 60_000) as f64 / 1000.0);
        let line = match e["kind"].as_str().unwrap_or("") {
            "transcript" => format!("caller: {}", e["text"].as_str().unwrap_or("")),
            "keys" => format!("caller: (keys {})", e["keys"].as_str().unwrap_or("")),
            "effect_failed" => format!(
                "        ({} failed: apologising)",
                e["effect"].as_str().unwrap_or("-")
            ),
            "bot_reply" => format!("bot:    {}", e["text"].as_str().unwrap_or("")),
            "intent" => format!(
                "        ({} → {}, {})",
                e["intent"].as_str().unwrap_or("-"),
                e["agent"].as_str().unwrap_or("-"),
                e["status"].as_str().unwrap_or("-")
            ),
            "barge_in" => format!(
                "        (caller interrupted; heard: {:?})",
                e["heard"].as_str().unwrap_or("")
            ),
            "transcript_suppressed" => format!(
                "        (ignored {:?}: {})",
                e["raw"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or("")
            ),
            "call_end" => "        (call ended)".to_string(),
            _ => continue,
        };
        out.push_str(&format!("{stamp} {line}\n"));
    }
    out
}
