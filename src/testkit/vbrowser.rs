//! A browser on the in-memory network, for softphone calls on a virtual clock: it signals on
//! `/webrtc/signal` over [`vnet`](super::vnet) exactly as the softphone page does, and its
//! media is the gateway's in-process far end ([`RtcMedia::InProcess`]): a microphone that
//! Opus-encodes a 20 ms frame every 20 ms (a clip when one is playing, silence otherwise) and a
//! speaker that decodes the bot's packets and notes when each audible frame arrived. Only ICE,
//! DTLS and SRTP are left out; `tests/it/webrtc.rs` and the Chromium test keep those real.
//!
//! Times are milliseconds since [`dial`] began, on tokio's clock (virtual under a paused
//! runtime), so two runs of the same call can be compared exactly.
//!
//! [`RtcMedia::InProcess`]: crate::webrtc::peer::RtcMedia::InProcess

use crate::webrtc::peer::{
    FRAME_DURATION, FRAME_SAMPLES, InProcessPeer, OpusDecoder16k, OpusEncoder16k, OpusSettings,
};
use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A decoded frame at least this loud (mean square; about -40 dBFS) is audible.
const AUDIBLE_MEAN_SQUARE: f32 = 1e-4;

/// The far ends the gateway hands out, as `LiveDeps::rtc_media = RtcMedia::InProcess(tx)`.
pub type FarEnds = mpsc::Receiver<(String, InProcessPeer)>;

/// The page's side of the signaling socket: every message received, with when it came.
pub struct Page {
    ws: WebSocketStream<DuplexStream>,
    t0: Instant,
    pub got: Vec<(u64, Value)>,
}

impl Page {
    pub fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    pub async fn send(&mut self, v: Value) -> Result<()> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .context("signaling socket closed")
    }

    /// Reads until a message from the `from`th on matches `pred` (one already received
    /// counts). Returns its index, arrival time and value; an error after `max` or when the
    /// socket closes first.
    pub async fn wait_from(
        &mut self,
        from: usize,
        what: &str,
        max: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(usize, u64, Value)> {
        if let Some(i) = (from..self.got.len()).find(|&i| pred(&self.got[i].1)) {
            return Ok((i, self.got[i].0, self.got[i].1.clone()));
        }
        let deadline = Instant::now() + max;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no {what} within {max:?}; got {:?}", self.values()))?;
            let text = match m {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                _ => bail!(
                    "signaling closed while waiting for {what}; got {:?}",
                    self.values()
                ),
            };
            let v: Value = serde_json::from_str(text.as_str())?;
            self.got.push((self.now_ms(), v.clone()));
            if pred(&v) {
                return Ok((self.got.len() - 1, self.got.last().unwrap().0, v));
            }
        }
    }

    pub async fn wait(
        &mut self,
        what: &str,
        max: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(usize, u64, Value)> {
        self.wait_from(0, what, max, pred).await
    }

    /// Reads every message until the gateway closes the socket (or `max` passes).
    pub async fn read_to_close(&mut self, max: Duration) -> Result<()> {
        let deadline = Instant::now() + max;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("the socket stayed open for {max:?}"),
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    self.got.push((self.now_ms(), v));
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => return Ok(()),
            }
        }
    }

    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.got
            .iter()
            .filter(|(_, v)| v["type"] == t)
            .map(|(_, v)| v)
            .collect()
    }

    pub fn values(&self) -> Vec<&Value> {
        self.got.iter().map(|(_, v)| v).collect()
    }
}

enum Mic {
    /// Play a clip (16 kHz); answers with (start, end) in ms once its last frame is sent.
    Play(Vec<f32>, oneshot::Sender<(u64, u64)>),
    /// Stop sending for good, as a vanished tab does.
    GoSilent,
}

/// What the browser's speaker received.
#[derive(Default, Debug, Clone)]
pub struct Heard {
    /// When each audible frame arrived (ms).
    pub audible: Vec<u64>,
    pub decode_errors: u64,
}

impl Heard {
    pub fn audible_between(&self, from: u64, to: u64) -> usize {
        self.audible
            .iter()
            .filter(|&&t| t >= from && t < to)
            .count()
    }
}

/// A browser in a call: its page (signaling), microphone and speaker.
pub struct Browser {
    pub page: Page,
    pub call_id: String,
    mic: mpsc::Sender<Mic>,
    heard: Arc<Mutex<Heard>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Places a call as the page does: opens the signaling socket, offers, takes the answer and
/// the gateway's far end for it, connects the media and turns the microphone on.
/// `caller`: the caller id the page names (None: the gateway's choice).
pub async fn dial(
    app: axum::Router,
    far_ends: &mut FarEnds,
    path: &str,
    caller: Option<&str>,
) -> Result<Browser> {
    let t0 = Instant::now();
    let ws = super::vnet::websocket(app, path, &[]).await?;
    let mut page = Page {
        ws,
        t0,
        got: vec![],
    };
    let mut offer = json!({"type": "call", "template": "hospitality", "sdp": "in-process offer"});
    if let Some(c) = caller {
        offer["caller"] = json!(c);
    }
    page.send(offer).await?;
    let (_, _, answer) = page
        .wait("answer", Duration::from_secs(10), |v| {
            v["type"] == "answer" || v["type"] == "error"
        })
        .await?;
    if answer["type"] == "error" {
        bail!("the gateway refused the call: {answer}");
    }
    let call_id = answer["call_id"]
        .as_str()
        .ok_or_else(|| anyhow!("answer without a call id: {answer}"))?
        .to_string();
    let (id, mut far) = tokio::time::timeout(Duration::from_secs(5), far_ends.recv())
        .await
        .map_err(|_| anyhow!("no far end for {call_id}"))?
        .ok_or_else(|| anyhow!("the gateway's far ends are gone"))?;
    if id != call_id {
        bail!("far end of {id} handed out for {call_id}");
    }
    let audio = far
        .take_audio()
        .ok_or_else(|| anyhow!("far end without audio"))?;
    far.connect();
    let heard = Arc::new(Mutex::new(Heard::default()));
    let (mic_tx, mic_rx) = mpsc::channel(8);
    let tasks = vec![
        tokio::spawn(microphone(far, mic_rx, t0)),
        tokio::spawn(speaker(audio, heard.clone(), t0)),
    ];
    Ok(Browser {
        page,
        call_id,
        mic: mic_tx,
        heard,
        tasks,
    })
}

impl Browser {
    /// Says `clip` (16 kHz) into the microphone; returns when its last frame has been sent,
    /// with the clip's (start, end) in ms.
    pub async fn say(&self, clip: Vec<f32>) -> Result<(u64, u64)> {
        self.start_saying(clip)
            .await?
            .await
            .map_err(|_| anyhow!("the microphone stopped"))
    }

    /// Starts saying `clip`; the receiver gets the clip's (start, end) in ms once it is sent.
    pub async fn start_saying(&self, clip: Vec<f32>) -> Result<oneshot::Receiver<(u64, u64)>> {
        let (tx, rx) = oneshot::channel();
        self.mic
            .send(Mic::Play(clip, tx))
            .await
            .map_err(|_| anyhow!("the microphone is off"))?;
        Ok(rx)
    }

    pub fn heard(&self) -> Heard {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The page's Hang up button.
    pub async fn hang_up(&mut self) -> Result<()> {
        self.page.send(json!({"type": "hangup"})).await
    }

    pub async fn mute(&mut self, muted: bool) -> Result<()> {
        self.page
            .send(json!({"type": "mute", "muted": muted}))
            .await
    }

    /// The tab goes away without a word: no more audio.
    pub async fn go_silent(&self) {
        let _ = self.mic.send(Mic::GoSilent).await;
    }

    /// Waits for the microphone and speaker to stop (the call's media is over).
    pub async fn finish(self) -> (Page, Heard) {
        drop(self.mic);
        for t in self.tasks {
            let _ = t.await;
        }
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.page, heard)
    }
}

/// A clip in the microphone: its samples, how far it has been sent, when it started (MAX: not
/// yet) and who to tell when it is done.
type Playing = (Vec<f32>, usize, u64, oneshot::Sender<(u64, u64)>);

async fn microphone(mut far: InProcessPeer, mut cmds: mpsc::Receiver<Mic>, t0: Instant) {
    let Ok(mut enc) = OpusEncoder16k::new(&OpusSettings::default()) else {
        return;
    };
    let mut tick = tokio::time::interval(FRAME_DURATION);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut queue: VecDeque<Playing> = VecDeque::new();
    let mut frame = [0.0f32; FRAME_SAMPLES];
    let mut seq: u16 = 0;
    let mut silent = false;
    loop {
        tokio::select! {
            c = cmds.recv() => match c {
                Some(Mic::Play(clip, done)) => queue.push_back((clip, 0, u64::MAX, done)),
                Some(Mic::GoSilent) => {
                    // The far end stays (its signal path too) until the browser is finished.
                    far.go_silent();
                    silent = true;
                }
                None => return,
            },
            _ = tick.tick(), if !silent => {
                let now = t0.elapsed().as_millis() as u64;
                frame.fill(0.0);
                let mut finished = false;
                if let Some((clip, pos, start, _)) = queue.front_mut() {
                    if *start == u64::MAX {
                        *start = now;
                    }
                    let n = (clip.len() - *pos).min(FRAME_SAMPLES);
                    frame[..n].copy_from_slice(&clip[*pos..*pos + n]);
                    *pos += n;
                    finished = *pos >= clip.len();
                }
                if finished && let Some((_, _, start, done)) = queue.pop_front() {
                    let _ = done.send((start, now + FRAME_DURATION.as_millis() as u64));
                }
                let Ok(packet) = enc.encode(&frame) else { return };
                seq = seq.wrapping_add(1);
                if !far.send(seq, packet).await {
                    // The call no longer takes audio: it is over.
                    return;
                }
            }
        }
    }
}

async fn speaker(mut audio: mpsc::Receiver<bytes::Bytes>, heard: Arc<Mutex<Heard>>, t0: Instant) {
    let Ok(mut dec) = OpusDecoder16k::new() else {
        return;
    };
    let mut pcm = vec![0.0f32; FRAME_SAMPLES * 6];
    while let Some(packet) = audio.recv().await {
        let now = t0.elapsed().as_millis() as u64;
        let decoded = dec.decode_into(&packet, &mut pcm);
        let mut h = heard.lock().unwrap_or_else(|p| p.into_inner());
        match decoded {
            Ok(n) if n > 0 => {
                let ms = pcm[..n].iter().map(|s| s * s).sum::<f32>() / n as f32;
                if ms >= AUDIBLE_MEAN_SQUARE {
                    h.audible.push(now);
                }
            }
            _ => h.decode_errors += 1,
        }
    }
}
