//! A simulated phone caller that speaks Twilio's Media Streams protocol over a real WebSocket
//! (tokio-tungstenite), as Twilio does: it streams caller audio in real time, plays the bot's
//! audio back on a real-time playout clock, echoes each mark once the audio before it has played,
//! and on `clear` drops what is buffered and echoes the pending marks at once.
//!
//! Used by the integration tests and by `switchboard load`. A [`Script`] says what the caller
//! does; the returned [`CallLog`] says what it heard and when, from which the latency figures
//! (end of speech → first bot audio, barge-in → clear, gaps in bot audio) are computed.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// μ-law silence.
pub const ULAW_SILENCE: u8 = 0xFF;
const FRAME: usize = 160; // 20 ms at 8 kHz

/// One thing the caller does, in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// Line silence for this long.
    Silence(u64),
    /// Speech (μ-law 8 kHz), streamed in real time.
    Say(Vec<u8>),
    /// A keypad press.
    Dtmf(char),
    /// Silence until the bot has spoken and gone quiet (or `max_ms` passed).
    WaitBotDone { max_ms: u64 },
    /// Silence until the bot has been audible for `ms` (or `max_ms` passed): set up a barge-in.
    WaitBotSpeaking { ms: u64, max_ms: u64 },
    /// Silence until the bot, having begun a reply since this step began, has played `ms` of it
    /// or finished it (or `max_ms` passed): the caller talks over a long reply, waits out a short
    /// one.
    Listen { ms: u64, max_ms: u64 },
    /// `stop`, then close the socket.
    HangUp,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub caller: String,
    pub steps: Vec<Step>,
    /// Headers for the upgrade request (e.g. `x-twilio-signature`).
    pub headers: Vec<(String, String)>,
    /// More `customParameters` for the start message (e.g. the `token` of the gateway's TwiML).
    pub params: Vec<(String, String)>,
    /// Give up on the call after this long.
    pub max_ms: u64,
}

impl Script {
    pub fn new(caller: &str, steps: Vec<Step>) -> Script {
        Script {
            caller: caller.into(),
            steps,
            headers: vec![],
            params: vec![],
            max_ms: 120_000,
        }
    }
}

/// What the caller experienced. Times are ms since the socket opened.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    /// Bot media messages: (arrival, bytes).
    pub media: Vec<(u64, usize)>,
    /// The bot audio the caller actually heard (μ-law), with each reply's start time: audio
    /// cleared before it played is not in it.
    pub heard: Vec<(u64, Vec<u8>)>,
    /// Marks received: (arrival, name).
    pub marks: Vec<(u64, String)>,
    pub clears: Vec<u64>,
    /// When each `Say` began and ended.
    pub speech: Vec<(u64, u64)>,
    /// Each `Say` that began while the bot was audible (its start).
    pub barge_ins: Vec<u64>,
    /// The bot's audio ran dry mid-reply: (when, for how long), ms.
    pub gaps: Vec<(u64, u64)>,
    /// Messages the server sent that a Twilio client would not expect.
    pub unexpected: Vec<String>,
    /// The server closed the socket (ms), if it did.
    pub closed_by_server: Option<u64>,
    pub duration_ms: u64,
}

impl CallLog {
    /// End of each caller utterance → first bot audio after it (ms), for utterances the bot answered.
    pub fn response_latencies(&self) -> Vec<u64> {
        self.speech
            .iter()
            .filter_map(|&(_, end)| {
                self.media
                    .iter()
                    .find(|(t, _)| *t >= end)
                    .map(|(t, _)| t - end)
            })
            .collect()
    }

    /// Start of each barge-in utterance → the `clear` that followed (ms).
    pub fn clear_latencies(&self) -> Vec<u64> {
        self.barge_ins
            .iter()
            .filter_map(|&start| self.clears.iter().find(|&&c| c >= start).map(|c| c - start))
            .collect()
    }

    /// Bytes of bot audio that arrived before and after `t` (ms).
    pub fn audio_bytes_around(&self, t: u64) -> (usize, usize) {
        let before = self
            .media
            .iter()
            .filter(|(at, _)| *at < t)
            .map(|m| m.1)
            .sum();
        let after = self
            .media
            .iter()
            .filter(|(at, _)| *at > t)
            .map(|m| m.1)
            .sum();
        (before, after)
    }

    /// How far (ms) the bot's audio ever ran ahead of the time since its first frame: the
    /// playout lead. Dumping a reply instead of pacing it makes this its length.
    pub fn max_lead_ms(&self) -> i64 {
        let Some(&(first, _)) = self.media.first() else {
            return 0;
        };
        let mut sent_ms = 0i64;
        let mut lead = i64::MIN;
        for (t, b) in &self.media {
            sent_ms += *b as i64 / 8;
            lead = lead.max(sent_ms - (t - first) as i64);
        }
        lead
    }

    /// Bot audio arriving after `t` (ms).
    pub fn media_after(&self, t: u64) -> usize {
        self.media.iter().filter(|(at, _)| *at > t).count()
    }
}

/// Playout state: Twilio's buffer, modelled on the caller's clock.
struct Playout {
    play_end: Instant,
    /// Marks waiting for their audio to play: (due, name).
    pending: VecDeque<(Instant, String)>,
    /// Current reply's audio, with when each chunk starts playing.
    chunks: VecDeque<(Instant, Vec<u8>)>,
    reply_start: Option<u64>,
    heard: Vec<u8>,
    last_audio: Option<Instant>,
}

/// Runs `script` against `url` (ws://…/twilio/media) and returns what the caller experienced.
pub async fn run(url: &str, script: &Script) -> Result<CallLog> {
    let mut req = url
        .into_client_request()
        .with_context(|| format!("bad URL {url}"))?;
    for (k, v) in &script.headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes())?,
            axum::http::HeaderValue::from_str(v)?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    run_on(ws, script).await
}

/// Runs `script` on an open media WebSocket (a real one, or one of `testkit::vnet`'s).
pub async fn run_on<S>(ws: WebSocketStream<S>, script: &Script) -> Result<CallLog>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let t0 = Instant::now();
    let ms = |t: Instant| t.saturating_duration_since(t0).as_millis() as u64;
    let sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let mut log = CallLog::default();
    let mut seq = 1u64;
    let next = |seq: &mut u64| {
        *seq += 1;
        seq.to_string()
    };
    sink.send(Message::Text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            .to_string()
            .into(),
    ))
    .await?;
    let mut custom = serde_json::Map::new();
    custom.insert("caller".into(), script.caller.clone().into());
    for (k, v) in &script.params {
        custom.insert(k.clone(), v.clone().into());
    }
    sink.send(Message::Text(json!({"event": "start", "sequenceNumber": next(&mut seq), "streamSid": sid,
        "start": {"streamSid": sid, "accountSid": "ACsimulated", "callSid": call_sid, "tracks": ["inbound"],
                  "customParameters": custom,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}).to_string().into()))
        .await?;

    let mut play = Playout {
        play_end: t0,
        pending: VecDeque::new(),
        chunks: VecDeque::new(),
        reply_start: None,
        heard: Vec::new(),
        last_audio: None,
    };
    let mut steps: VecDeque<Step> = script.steps.iter().cloned().collect();
    let mut cur: Option<(Step, usize, Instant)> = None; // step, bytes sent, started
    let mut speech_end = 0usize; // of the current Say
    let mut sent_frames = 0u64;
    let mut chunk_no = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = t0 + Duration::from_millis(script.max_ms);
    let mut frame = [ULAW_SILENCE; FRAME];
    let mut hung_up = false;
    let mut b64 = String::with_capacity(256);
    'outer: loop {
        tokio::select! {
            msg = stream.next() => {
                let now = Instant::now();
                let Some(Ok(msg)) = msg else {
                    log.closed_by_server = Some(ms(now));
                    break;
                };
                let t = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => { log.closed_by_server = Some(ms(now)); break; }
                    Message::Binary(_) => { log.unexpected.push("binary frame".into()); continue; }
                    _ => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    log.unexpected.push(format!("not JSON: {t}"));
                    continue;
                };
                if v["streamSid"] != sid.as_str() {
                    log.unexpected.push(format!("wrong streamSid: {t}"));
                }
                match v["event"].as_str().unwrap_or("") {
                    "media" => {
                        let Some(p) = v["media"]["payload"].as_str() else {
                            log.unexpected.push(format!("media without payload: {t}"));
                            continue;
                        };
                        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(p) else {
                            log.unexpected.push("bad base64".into());
                            continue;
                        };
                        log.media.push((ms(now), bytes.len()));
                        // The buffer ran dry inside a reply and audio resumed within a second:
                        // a gap the caller hears. (Replies are a caller's turn apart: longer.)
                        // (`<=`: on a virtual clock the first audio can arrive the instant the
                        // call starts, with nothing played yet.)
                        if play.play_end <= now {
                            let dry = now - play.play_end;
                            if play.reply_start.is_some() && dry < Duration::from_millis(1000) {
                                if dry >= Duration::from_millis(20) {
                                    log.gaps.push((ms(now), dry.as_millis() as u64));
                                }
                            } else {
                                finish_reply(&mut play, &mut log, now);
                                play.reply_start = Some(ms(now));
                            }
                            play.play_end = now;
                        }
                        let start = play.play_end;
                        play.play_end += Duration::from_micros(bytes.len() as u64 * 125);
                        play.chunks.push_back((start, bytes));
                        play.last_audio = Some(now);
                    }
                    "mark" => {
                        let name = v["mark"]["name"].as_str().unwrap_or("").to_string();
                        log.marks.push((ms(now), name.clone()));
                        play.pending.push_back((play.play_end.max(now), name));
                    }
                    "clear" => {
                        log.clears.push(ms(now));
                        // Audio not yet played is dropped; pending marks are echoed now.
                        play.chunks.retain_mut(|(start, bytes)| {
                            if *start >= now {
                                return false;
                            }
                            let played = ((now - *start).as_micros() / 125) as usize;
                            bytes.truncate(played.min(bytes.len()));
                            true
                        });
                        play.play_end = now;
                        // What follows a clear is a new reply, not a gap in this one.
                        finish_reply(&mut play, &mut log, now);
                        while let Some((_, name)) = play.pending.pop_front() {
                            echo_mark(&mut sink, &sid, &name, &mut seq).await?;
                        }
                    }
                    other => log.unexpected.push(format!("event {other}")),
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if now > deadline {
                    bail!("the call did not finish within {} ms", script.max_ms);
                }
                // Echo marks whose audio has played.
                while play.pending.front().is_some_and(|(due, _)| *due <= now) {
                    let (_, name) = play.pending.pop_front().unwrap_or((now, String::new()));
                    echo_mark(&mut sink, &sid, &name, &mut seq).await?;
                }
                // Move played chunks into `heard`.
                while play.chunks.front().is_some_and(|(s, b)| *s + Duration::from_micros(b.len() as u64 * 125) <= now) {
                    if let Some((_, b)) = play.chunks.pop_front() {
                        play.heard.extend_from_slice(&b);
                    }
                }
                // Stream the caller's audio in real time: every frame that is due.
                let due = (now - t0).as_millis() as u64 / 20;
                while sent_frames < due {
                    sent_frames += 1;
                    if cur.is_none() {
                        let Some(step) = steps.pop_front() else {
                            if !hung_up {
                                break 'outer;
                            }
                            break;
                        };
                        let at = Instant::now();
                        if let Step::Say(audio) = &step {
                            speech_end = voiced_end(audio);
                            // Speech starts at the first audible frame, not the file's lead-in.
                            let onset = ms(at) + voiced_start(audio) as u64 / 8;
                            let speaking = play.play_end > at;
                            log.speech.push((onset, 0));
                            if speaking {
                                log.barge_ins.push(onset);
                            }
                        }
                        cur = Some((step, 0, at));
                    }
                    let Some((step, pos, started)) = cur.as_mut() else { break };
                    let now = Instant::now();
                    let elapsed = ms(now) - ms(*started);
                    let bot_audible = play.play_end > now;
                    // What the waits ask: the bot has spoken since this step began and is quiet
                    // again; it has been audible for so long in its current reply.
                    let spoke = play.last_audio.is_some_and(|l| l > *started);
                    let bot_done = spoke && !bot_audible && play.last_audio.is_some_and(|l| now - l > Duration::from_millis(700));
                    let audible_for = |need: u64| bot_audible && play.reply_start.map_or(0, |s| ms(now).saturating_sub(s)) >= need;
                    let mut finished = false;
                    frame.fill(ULAW_SILENCE);
                    match step {
                        Step::Silence(d) => finished = elapsed + 20 >= *d,
                        Step::Say(audio) => {
                            let n = (audio.len() - *pos).min(FRAME);
                            frame[..n].copy_from_slice(&audio[*pos..*pos + n]);
                            *pos += n;
                            // Speech ends at the last audible sample, not at the file's
                            // trailing silence.
                            if *pos >= speech_end
                                && let Some(last) = log.speech.last_mut()
                                && last.1 == 0
                            {
                                last.1 = ms(Instant::now()) + 20;
                            }
                            if *pos >= audio.len() {
                                finished = true;
                            }
                        }
                        Step::Dtmf(d) => {
                            let m = json!({"event": "dtmf", "streamSid": sid, "sequenceNumber": next(&mut seq),
                                "dtmf": {"track": "inbound_track", "digit": d.to_string()}});
                            sink.send(Message::Text(m.to_string().into())).await?;
                            finished = true;
                        }
                        Step::WaitBotDone { max_ms } => finished = bot_done || elapsed >= *max_ms,
                        Step::Listen { ms: need, max_ms } => {
                            finished = bot_done || (spoke && audible_for(*need)) || elapsed >= *max_ms;
                        }
                        Step::WaitBotSpeaking { ms: need, max_ms } => {
                            finished = audible_for(*need) || elapsed >= *max_ms;
                        }
                        Step::HangUp => {
                            let m = json!({"event": "stop", "streamSid": sid, "sequenceNumber": next(&mut seq),
                                "stop": {"accountSid": "ACsimulated", "callSid": call_sid}});
                            sink.send(Message::Text(m.to_string().into())).await?;
                            let _ = sink.close().await;
                            hung_up = true;
                            cur = None;
                            continue;
                        }
                    }
                    if hung_up {
                        continue;
                    }
                    chunk_no += 1;
                    b64.clear();
                    base64::engine::general_purpose::STANDARD.encode_string(frame, &mut b64);
                    let m = json!({"event": "media", "sequenceNumber": next(&mut seq), "streamSid": sid,
                        "media": {"track": "inbound", "chunk": chunk_no.to_string(),
                                  "timestamp": (chunk_no * 20).to_string(), "payload": b64}});
                    sink.send(Message::Text(m.to_string().into())).await?;
                    if finished {
                        cur = None;
                    }
                }
            }
        }
    }
    let now = Instant::now();
    // Whatever was still buffered plays out (the caller hears the end of the last reply).
    for (_, b) in play.chunks.drain(..) {
        play.heard.extend_from_slice(&b);
    }
    finish_reply(&mut play, &mut log, now);
    if log.closed_by_server.is_none() && !hung_up {
        let _ = sink.close().await;
    }
    log.duration_ms = ms(now);
    Ok(log)
}

/// Where the speech in μ-law `audio` starts: the first 20 ms frame louder than -40 dBFS.
pub fn voiced_start(audio: &[u8]) -> usize {
    let mut pcm = [0f32; FRAME];
    for (i, chunk) in audio.chunks(FRAME).enumerate() {
        let n = crate::audio::g711::decode_ulaw_into(chunk, &mut pcm[..chunk.len()]);
        if pcm[..n].iter().map(|x| x * x).sum::<f32>() / n.max(1) as f32 > 1e-4 {
            return i * FRAME;
        }
    }
    audio.len()
}

/// Where the speech in μ-law `audio` ends: just past the last 20 ms frame louder than -40 dBFS.
pub fn voiced_end(audio: &[u8]) -> usize {
    let mut pcm = [0f32; FRAME];
    let mut end = 0;
    for (i, chunk) in audio.chunks(FRAME).enumerate() {
        let n = crate::audio::g711::decode_ulaw_into(chunk, &mut pcm[..chunk.len()]);
        let energy: f32 = pcm[..n].iter().map(|x| x * x).sum::<f32>() / n.max(1) as f32;
        if energy > 1e-4 {
            end = i * FRAME + chunk.len();
        }
    }
    end
}

fn finish_reply(play: &mut Playout, log: &mut CallLog, _now: Instant) {
    for (_, b) in play.chunks.drain(..) {
        play.heard.extend_from_slice(&b);
    }
    if let Some(start) = play.reply_start.take()
        && !play.heard.is_empty()
    {
        log.heard.push((start, std::mem::take(&mut play.heard)));
    }
    play.heard.clear();
}

async fn echo_mark<S>(sink: &mut S, sid: &str, name: &str, seq: &mut u64) -> Result<()>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    *seq += 1;
    let m = json!({"event": "mark", "sequenceNumber": seq.to_string(), "streamSid": sid, "mark": {"name": name}});
    sink.send(Message::Text(m.to_string().into())).await?;
    Ok(())
}

/// Percentile (nearest rank) of `v`; 0 when empty.
pub fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_ends_at_the_last_loud_frame() {
        let mut a = vec![ULAW_SILENCE; 1600];
        let mut loud = [0f32; 320];
        for (i, x) in loud.iter_mut().enumerate() {
            *x = if i % 2 == 0 { 0.5 } else { -0.5 };
        }
        crate::audio::g711::encode_ulaw_from(&loud, &mut a[480..800]);
        assert_eq!(voiced_end(&a), 800);
        assert_eq!(voiced_start(&a), 480);
        assert_eq!(voiced_end(&[ULAW_SILENCE; 320]), 0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [5, 1, 4, 2, 3];
        assert_eq!(percentile(&v, 50.0), 3);
        assert_eq!(percentile(&v, 95.0), 5);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn latencies_pair_each_utterance_with_the_next_bot_audio() {
        let log = CallLog {
            media: vec![(100, 160), (2500, 160), (2520, 160), (9000, 160)],
            speech: vec![(1000, 2200), (5000, 8700)],
            clears: vec![6400],
            barge_ins: vec![6000],
            ..Default::default()
        };
        assert_eq!(log.response_latencies(), [300, 300]);
        assert_eq!(log.clear_latencies(), [400]);
        assert_eq!(log.media_after(2500), 2);
    }
}
