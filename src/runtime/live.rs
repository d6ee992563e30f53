//! The live call driver: one tokio task per call, racing the provider's WebSocket, a 20 ms
//! pacing tick and the results of the effects it started, and feeding all of them to the pure
//! per-call core (`crate::call::Call`). Framing is the provider serializer's job
//! (`crate::transport`); policy is the core's; this task only moves bytes and time.
//!
//! Effects never block the task: ASR runs on the worker pool, TTS on the blocking pool, and
//! agent turns on one agent task per call (a conversation answers one turn at a time). Every
//! result comes back tagged with its turn, and the core drops stale ones. Queues are bounded.
//! Nothing from the network can panic the task: a bad frame is logged with the call id and the
//! call goes on; a dropped socket is a hang-up.

use crate::agent::engine::Engine;
use crate::agent::master::CallAction;
use crate::audio::g711::{decode_ulaw_into, encode_ulaw_from};
use crate::audio::resample::StreamResampler;
use crate::call::{Call, CallConfig, EndAction, Input, Output, TurnId};
use crate::runtime::speech::Speech;
use crate::transport::{Encoding, Inbound, twilio};
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct LiveDeps {
    pub engine: Arc<Engine>,
    pub speech: Speech,
    pub call: CallConfig,
}

/// Work for the call's agent task, in order.
enum AgentJob {
    Ask {
        turn: TurnId,
        text: String,
    },
    /// Barge-in: only this much of the last reply was heard.
    Heard(String),
}

/// Results of effects, tagged with the turn that asked for them.
enum Done {
    Transcript {
        turn: TurnId,
        text: String,
    },
    Reply {
        turn: TurnId,
        text: String,
        end: Option<EndAction>,
    },
    Audio {
        turn: TurnId,
        audio: Arc<Vec<f32>>,
    },
    Failed {
        turn: TurnId,
        what: String,
    },
}

/// Runs one Twilio Media Streams call on `socket` until it ends.
pub async fn twilio_call(socket: WebSocket, deps: Arc<LiveDeps>) {
    let mut call_id = String::from("(before start)");
    if let Err(e) = run_twilio(socket, &deps, &mut call_id).await {
        tracing::warn!(call = %call_id, error = %e, "call ended with an error");
    }
}

async fn run_twilio(
    socket: WebSocket,
    deps: &LiveDeps,
    call_id: &mut String,
) -> anyhow::Result<()> {
    let (mut tx, mut rx) = socket.split();
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let mut call = Call::new(deps.call.clone());
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(32);
    let (agent_tx, agent_rx) = mpsc::channel::<AgentJob>(8);
    let mut agent_rx = Some(agent_rx);
    let mut stream_sid = String::new();
    let mut conversation: Option<String> = None;
    let mut resampler = StreamResampler::new(8000, crate::call::CALLER_RATE, 160)?;
    let mut pcm8: Vec<f32> = Vec::with_capacity(1024);
    let mut pcm16: Vec<f32> = Vec::with_capacity(4096);
    let mut out_f32 = vec![0f32; deps.call.out_rate as usize];
    let mut out_ulaw = vec![0u8; deps.call.out_rate as usize];
    let mut text = String::with_capacity(2048);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut bad_frames = 0u32;
    loop {
        tokio::select! {
            msg = rx.next() => {
                let frame = match msg {
                    None | Some(Err(_)) => {
                        call.handle(now(), Input::HangUp);
                        flush_outputs(&mut call, deps, &mut tx, &stream_sid, &conversation, &done_tx, &agent_tx, &mut out_f32, &mut out_ulaw, &mut text).await?;
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                let parsed = match frame {
                    Message::Text(t) => twilio::parse(t.as_str()),
                    Message::Binary(_) => Err(crate::transport::ProtocolError::Binary),
                    Message::Close(_) => {
                        call.handle(now(), Input::HangUp);
                        break;
                    }
                    _ => continue,
                };
                match parsed {
                    Ok(Inbound::Start { stream_id, call_id: cid, format, params }) => {
                        if conversation.is_some() {
                            tracing::warn!(call = %call_id, "second start ignored");
                            continue;
                        }
                        if format.encoding != Encoding::Mulaw || format.sample_rate != 8000 {
                            anyhow::bail!("unsupported media format {format:?}");
                        }
                        *call_id = cid;
                        stream_sid = stream_id;
                        let caller = params.get("caller").cloned().unwrap_or_else(|| "unknown".into());
                        let greeting = deps.engine.start(&caller, "twilio").await?;
                        tracing::info!(call = %call_id, conversation = %greeting.conversation_id, "call started");
                        conversation = Some(greeting.conversation_id.clone());
                        if let Some(rx) = agent_rx.take() {
                            tokio::spawn(agent_worker(deps.engine.clone(), greeting.conversation_id.clone(), rx, done_tx.clone()));
                        }
                        call.handle(now(), Input::AgentReply { turn: 0, text: greeting.reply, end: None });
                    }
                    Ok(Inbound::Media { payload, .. }) => {
                        if conversation.is_none() {
                            continue; // media before start: nothing to attach it to
                        }
                        pcm8.resize(payload.len(), 0.0);
                        decode_ulaw_into(&payload, &mut pcm8);
                        pcm16.clear();
                        resampler.process(&pcm8, &mut pcm16);
                        call.handle(now(), Input::CallerAudio(&pcm16));
                    }
                    Ok(Inbound::Mark { name }) => {
                        if let Ok(id) = name.parse::<u64>() {
                            call.handle(now(), Input::MarkPlayed { id });
                        }
                    }
                    Ok(Inbound::Dtmf { digit }) => call.handle(now(), Input::Dtmf(digit)),
                    Ok(Inbound::Stop) => {
                        call.handle(now(), Input::HangUp);
                        flush_outputs(&mut call, deps, &mut tx, &stream_sid, &conversation, &done_tx, &agent_tx, &mut out_f32, &mut out_ulaw, &mut text).await?;
                        break;
                    }
                    Ok(Inbound::Connected | Inbound::Ignored) => {}
                    Err(e) => {
                        bad_frames += 1;
                        if bad_frames <= 5 {
                            tracing::warn!(call = %call_id, error = %e, "bad frame ignored");
                        }
                    }
                }
            }
            _ = tick.tick() => call.handle(now(), Input::Tick),
            Some(d) = done_rx.recv() => match d {
                Done::Transcript { turn, text } => call.handle(now(), Input::Transcript { turn, text }),
                Done::Reply { turn, text, end } => call.handle(now(), Input::AgentReply { turn, text, end }),
                Done::Audio { turn, audio } => {
                    call.handle(now(), Input::TtsAudio { turn, samples: &audio });
                    call.handle(now(), Input::TtsDone { turn });
                }
                Done::Failed { turn, what } => {
                    tracing::warn!(call = %call_id, turn, "{what}");
                    call.handle(now(), Input::Transcript { turn, text: String::new() });
                }
            },
        }
        flush_outputs(
            &mut call,
            deps,
            &mut tx,
            &stream_sid,
            &conversation,
            &done_tx,
            &agent_tx,
            &mut out_f32,
            &mut out_ulaw,
            &mut text,
        )
        .await?;
        if call.is_ended() {
            break;
        }
    }
    tracing::info!(call = %call_id, "call ended");
    let _ = tx.close().await;
    Ok(())
}

/// One conversation answers one turn at a time: agent requests are queued here.
async fn agent_worker(
    engine: Arc<Engine>,
    conversation: String,
    mut rx: mpsc::Receiver<AgentJob>,
    done: mpsc::Sender<Done>,
) {
    while let Some(job) = rx.recv().await {
        let (turn, text) = match job {
            AgentJob::Ask { turn, text } => (turn, text),
            AgentJob::Heard(heard) => {
                if let Err(e) = engine.interrupted(&conversation, &heard).await {
                    tracing::warn!(conversation = %conversation, error = %e, "could not record the interruption");
                }
                continue;
            }
        };
        let msg = match engine.say(&conversation, &text).await {
            Ok(t) => Done::Reply {
                turn,
                text: t.reply,
                end: t.action.map(|a| match a {
                    CallAction::Hangup => EndAction::Hangup,
                    CallAction::Transfer { to } => EndAction::Transfer { to },
                }),
            },
            Err(e) => Done::Failed {
                turn,
                what: format!("agent failed: {e}"),
            },
        };
        if done.send(msg).await.is_err() {
            break;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn flush_outputs(
    call: &mut Call,
    deps: &LiveDeps,
    tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    stream_sid: &str,
    conversation: &Option<String>,
    done: &mpsc::Sender<Done>,
    agent: &mpsc::Sender<AgentJob>,
    out_f32: &mut [f32],
    out_ulaw: &mut [u8],
    text: &mut String,
) -> anyhow::Result<()> {
    while let Some(o) = call.poll() {
        match o {
            Output::SendAudio { samples } => {
                let n = call.take_audio(&mut out_f32[..samples]);
                encode_ulaw_from(&out_f32[..n], &mut out_ulaw[..n]);
                text.clear();
                twilio::media(stream_sid, &out_ulaw[..n], text);
                tx.send(Message::Text(text.as_str().into())).await?;
            }
            Output::Mark { id } => {
                text.clear();
                twilio::mark(stream_sid, &id.to_string(), text);
                tx.send(Message::Text(text.as_str().into())).await?;
            }
            Output::Clear => {
                text.clear();
                twilio::clear(stream_sid, text);
                tx.send(Message::Text(text.as_str().into())).await?;
            }
            Output::Transcribe { turn, audio } => {
                let speech = deps.speech.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let msg = match speech.transcribe(audio).await {
                        Ok(t) => Done::Transcript { turn, text: t.text },
                        Err(e) => Done::Failed {
                            turn,
                            what: format!("ASR failed: {e}"),
                        },
                    };
                    let _ = done.send(msg).await;
                });
            }
            Output::AskAgent { turn, text } => {
                if agent.send(AgentJob::Ask { turn, text }).await.is_err() {
                    anyhow::bail!("agent worker stopped");
                }
            }
            Output::Synthesize { turn, text } => {
                let speech = deps.speech.clone();
                let done = done.clone();
                let rate = deps.call.out_rate;
                tokio::spawn(async move {
                    let msg = match speech.synthesize(&text, rate).await {
                        Ok(audio) => Done::Audio { turn, audio },
                        Err(e) => Done::Failed {
                            turn,
                            what: format!("TTS failed: {e}"),
                        },
                    };
                    let _ = done.send(msg).await;
                });
            }
            Output::Interrupted { heard, .. } => {
                if conversation.is_some() && agent.send(AgentJob::Heard(heard)).await.is_err() {
                    anyhow::bail!("agent worker stopped");
                }
            }
            Output::CancelTurn { .. } | Output::Event(_) => {}
            Output::End(action) => tracing::info!(?action, "call ending"),
        }
    }
    Ok(())
}
