//! Replays a call through the whole pipeline — turn-taking, whisper, the conversation engine,
//! espeak-ng and the per-call core — without a network.
//!
//! The caller is either a recorded track on its fixed timeline (if the bot is still talking
//! when the caller speaks again, that is a barge-in, as in a real call), or a script of
//! utterances, each played when the bot has finished plus a pause. The transport is simulated:
//! audio sent by the core is played at real-time rate, marks are echoed when played, `Clear`
//! drops what was not yet played and echoes the pending marks (as Twilio does).
//!
//! On the virtual clock (the default) time advances 20 ms per step and stands still while ASR,
//! the agent and TTS work, so the same input gives the same timeline, as fast as the CPU allows.
//! With `realtime`, steps are paced by the wall clock and processing time is real.

use crate::agent::engine::Engine;
use crate::agent::master::{CallAction, Heard};
use crate::call::{Call, CallConfig, EndAction, Input, Output};
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

/// The simulated transport: plays what it is sent in order at real-time rate.
struct Transport {
    rate: u64,
    buffer: VecDeque<f32>,
    received: u64,
    played: u64,
    marks: VecDeque<(u64, u64)>,
    heard: Vec<f32>,
}

impl Transport {
    /// Plays one step (ending at `t_ms`) and returns the marks now played.
    fn play_step(&mut self, t_ms: u64, echoed: &mut Vec<u64>) {
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
        while let Some((id, at)) = self.marks.front().copied() {
            if at > self.played {
                break;
            }
            self.marks.pop_front();
            echoed.push(id);
        }
    }

    fn clear(&mut self, echoed: &mut Vec<u64>) {
        self.received -= self.buffer.len() as u64;
        self.buffer.clear();
        echoed.extend(self.marks.drain(..).map(|(id, _)| id));
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
    engine: &Engine,
    speech: &Speech,
    cfg: CallConfig,
    source: CallerSource,
    caller_id: &str,
    realtime: bool,
) -> Result<ReplayResult> {
    let out_rate = cfg.out_rate as u64;
    let mut call = Call::new(cfg);
    let mut transport = Transport {
        rate: out_rate,
        buffer: VecDeque::new(),
        received: 0,
        played: 0,
        marks: VecDeque::new(),
        heard: vec![],
    };
    let mut timeline: Vec<Value> = vec![];
    let mut caller_track: Vec<f32> = vec![];
    let mut frame = vec![0f32; (IN_RATE * STEP_MS / 1000) as usize];
    let mut audio_buf = vec![0f32; out_rate as usize];
    let mut echoed: Vec<u64> = vec![];
    let mut ended: Option<EndAction> = None;

    let greeting = engine.start(caller_id, "replay").await?;
    let conversation_id = greeting.conversation_id.clone();
    let mut conv = Conv {
        id: conversation_id.clone(),
        prompt: prompt_of(&greeting.asr_prompt),
    };
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
    call.handle(
        0,
        Input::AgentReply {
            turn: 0,
            text: greeting.reply.clone(),
            end: None,
        },
    );
    let wall = tokio::time::Instant::now();
    let mut t: u64 = 0;
    let mut quiet_since: Option<u64> = None;
    loop {
        drive(
            &mut call,
            engine,
            speech,
            &mut conv,
            t,
            &mut transport,
            &mut audio_buf,
            &mut timeline,
            &mut ended,
            &mut script,
        )
        .await?;
        for id in echoed.drain(..) {
            call.handle(t, Input::MarkPlayed { id });
        }
        if call.is_ended() && transport.buffer.is_empty() {
            break;
        }
        t += STEP_MS;
        if t > limit_ms {
            timeline.push(json!({"t_ms": t, "kind": "replay_limit"}));
            break;
        }
        if realtime {
            tokio::time::sleep_until(wall + Duration::from_millis(t)).await;
        }
        transport.play_step(t, &mut echoed);
        for id in echoed.drain(..) {
            call.handle(t, Input::MarkPlayed { id });
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
            input_left = script_frame(s, t, &mut frame, call.bot_speaking());
        }
        caller_track.extend_from_slice(&frame);
        call.handle(t, Input::CallerAudio(&frame));
        call.handle(t, Input::Tick);
        // Stop once the caller is done and the bot has been quiet for a second.
        let busy = input_left || call.bot_speaking() || !transport.buffer.is_empty();
        match (busy, quiet_since) {
            (true, _) => quiet_since = None,
            (false, None) => quiet_since = Some(t),
            (false, Some(q)) if t - q >= 3000 => break,
            _ => {}
        }
    }
    // What the caller heard, brought to the caller track's rate for the stereo recording.
    let bot =
        crate::audio::resample::resample_whole(&transport.heard, out_rate as u32, IN_RATE as u32)?;
    let case_id = greeting.case_id.clone();
    // The call is over: its case is closed with how it ended, as a live call's is.
    let outcome = match &ended {
        Some(EndAction::Hangup) => "bot hung up".to_string(),
        Some(EndAction::Transfer { to }) => format!("transferred to {to}"),
        None => "caller hung up".to_string(),
    };
    engine.finish_call(&conversation_id, &outcome).await?;
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

/// The replayed call's conversation and the recogniser's prompt its last reply left.
struct Conv {
    id: String,
    prompt: Option<Arc<str>>,
}

fn prompt_of(text: &str) -> Option<Arc<str>> {
    (!text.is_empty()).then(|| Arc::from(text))
}

/// Runs the core's outputs to quiescence, performing the effects they ask for.
#[allow(clippy::too_many_arguments)]
async fn drive(
    call: &mut Call,
    engine: &Engine,
    speech: &Speech,
    conv: &mut Conv,
    t: u64,
    transport: &mut Transport,
    audio_buf: &mut [f32],
    timeline: &mut Vec<Value>,
    ended: &mut Option<EndAction>,
    script: &mut Option<Script>,
) -> Result<()> {
    let mut cleared = vec![];
    while let Some(out) = call.poll() {
        match out {
            Output::SendAudio { samples } => {
                let n = call.take_audio(&mut audio_buf[..samples]);
                transport.buffer.extend(&audio_buf[..n]);
                transport.received += n as u64;
            }
            Output::Mark { id } => transport.marks.push_back((id, transport.received)),
            Output::Clear => transport.clear(&mut cleared),
            Output::Transcribe { turn, audio } => {
                let tr = speech.transcribe(audio, conv.prompt.clone()).await?;
                if let Some(why) = tr.suppressed {
                    timeline.push(
                        json!({"t_ms": t, "kind": "transcript_suppressed", "turn": turn,
                        "raw": tr.raw, "reason": why}),
                    );
                }
                call.handle(
                    t,
                    Input::Transcript {
                        turn,
                        text: tr.text,
                    },
                );
            }
            Output::AskAgent {
                turn,
                text,
                speech_ms,
            } => {
                let heard = Heard {
                    text: &text,
                    speech_ms,
                };
                let reply = engine.hear(&conv.id, heard).await?;
                conv.prompt = prompt_of(&reply.asr_prompt);
                timeline.push(
                    json!({"t_ms": t, "kind": "intent", "turn": turn, "intent": reply.intent,
                    "agent": reply.agent, "status": reply.status, "fallback": reply.fallback}),
                );
                let end = reply.action.map(|a| match a {
                    CallAction::Hangup => EndAction::Hangup,
                    CallAction::Transfer { to } => EndAction::Transfer { to },
                });
                call.handle(
                    t,
                    Input::AgentReply {
                        turn,
                        text: reply.reply,
                        end,
                    },
                );
            }
            Output::Synthesize { turn, text } => {
                let audio = speech.synthesize(&text, call.config().out_rate).await?;
                call.handle(
                    t,
                    Input::TtsAudio {
                        turn,
                        samples: &audio,
                    },
                );
                call.handle(t, Input::TtsDone { turn });
            }
            Output::CancelTurn { .. } => {}
            Output::Interrupted { heard, .. } => engine.interrupted(&conv.id, &heard).await?,
            Output::Event(e) => {
                if let (crate::call::EventKind::BotAudioEnd { .. }, Some(s)) =
                    (&e.kind, script.as_mut())
                    && s.current.is_none()
                {
                    s.waiting_since = None;
                    s.next_start = Some(t + s.pause_ms);
                }
                timeline.push(serde_json::to_value(&e)?);
            }
            Output::End(action) => *ended = Some(action),
        }
        for id in cleared.drain(..) {
            call.handle(t, Input::MarkPlayed { id });
        }
    }
    Ok(())
}

/// A readable transcript of a timeline: `[mm:ss.s] who: what`.
pub fn transcript(timeline: &[Value]) -> String {
    let mut out = String::new();
    for e in timeline {
        let t = e["t_ms"].as_u64().unwrap_or(0);
        let stamp = format!("[{:02}:{:04.1}]", t / 60_000, (t % 60_000) as f64 / 1000.0);
        let line = match e["kind"].as_str().unwrap_or("") {
            "transcript" => format!("caller: {}", e["text"].as_str().unwrap_or("")),
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
