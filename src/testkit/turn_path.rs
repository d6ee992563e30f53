//! One caller turn through the real call core on a virtual clock, with whisper and the
//! end-of-turn model run for real and each result reaching the core as late as it took: what
//! the agent would be asked, and when. The turn-taking tests and `switchboard corpus
//! transcribe` (its `live` rendering) measure callers with it.
//!
//! The core is the one every call runs ([`crate::call::Call`]); what is left out is the rest
//! of a session: the voice check (Silero), the agent and the bot's voice. Results are
//! delivered in the order they were ready, each `took` ms after it was asked for. With a
//! [`Bot`] ([`run_with`]), each request is answered: the answer's audio plays (silence, on the
//! virtual clock) and its marks echo as they play, so a caller who goes on talks over it as
//! on a call.

use crate::call::{CALLER_RATE, Call, CallConfig, Effect, Input, Output, Said, WireCmd};
pub use crate::corpus::GOES_ON;
use std::collections::BTreeMap;

/// Samples in one 20 ms step.
const STEP: usize = CALLER_RATE as usize / 50;

/// What the core did with the caller's audio, on its clock (ms from the first sample).
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// The end-of-turn model was asked at a pause and answered this.
    Verdict(f32),
    /// The turn was over and the agent was asked this.
    Request(String),
    /// The turn was over and the agent was asked this, going on with the words before it (the
    /// caller went on before hearing their answer: see `CallConfig::continue_ms`); `whole`:
    /// every piece heard together, when it was transcribed (`CallConfig::join_pieces`).
    GoesOn { text: String, whole: Option<String> },
}

impl Heard {
    /// A request in the corpus's `live` notation (`+ words // whole` for one that goes on);
    /// None for a verdict.
    pub fn live(&self) -> Option<String> {
        match self {
            Heard::Request(t) => Some(t.clone()),
            Heard::GoesOn { text, whole } => Some(crate::corpus::goes_on(text, whole.as_deref())),
            Heard::Verdict(_) => None,
        }
    }
}

/// The bot on the live path: each request is answered `after_ms` later (the agent and the
/// first synthesised clause) with `speaks_ms` of audio.
#[derive(Debug, Clone, Copy)]
pub struct Bot {
    pub after_ms: u64,
    pub speaks_ms: u64,
}

/// Answers as a one-call line does: the engine's turn and Piper's first clause take about
/// 100 ms (README, "Measured"); a reply of 3 s.
pub const ANSWERING: Bot = Bot {
    after_ms: 100,
    speaks_ms: 3000,
};

/// The longest answer a [`Bot`] gives: 4 s at 8 kHz.
static ANSWER_AUDIO: [f32; 32_000] = [0.0; 32_000];

/// The run: everything [`Heard`], and the slowest result.
#[derive(Debug, Clone, Default)]
pub struct TurnPath {
    pub heard: Vec<(u64, Heard)>,
    /// The slowest result (a transcription or a verdict), ms.
    pub slowest: u64,
}

impl TurnPath {
    /// What the agent was asked, in order, with when (ms).
    pub fn requests(&self) -> Vec<(u64, &str)> {
        self.heard
            .iter()
            .filter_map(|(at, h)| match h {
                Heard::Request(t) | Heard::GoesOn { text: t, .. } => Some((*at, t.as_str())),
                Heard::Verdict(_) => None,
            })
            .collect()
    }

    /// Whether the agent was asked about the caller's words whole in the end: one request, or
    /// every request after the first going on with the words before it.
    pub fn heard_whole(&self) -> bool {
        self.heard
            .iter()
            .filter(|(_, h)| !matches!(h, Heard::Verdict(_)))
            .skip(1)
            .all(|(_, h)| matches!(h, Heard::GoesOn { .. }))
    }

    /// What the agent was asked, in the corpus's `live` notation: requests in order, and one
    /// that goes on with the words before it written `+ words`.
    pub fn live(&self) -> Vec<String> {
        self.heard.iter().filter_map(|(_, h)| h.live()).collect()
    }

    /// The model's verdicts, in order.
    pub fn verdicts(&self) -> Vec<f32> {
        self.heard
            .iter()
            .filter_map(|(_, h)| match h {
                Heard::Verdict(p) => Some(*p),
                Heard::Request(_) | Heard::GoesOn { .. } => None,
            })
            .collect()
    }
}

/// A transcription: the audio in (and whether it is a caller's pieces heard together,
/// `Effect::Transcribe`'s `whole`), its text and the ms it took out.
pub type Transcribe<'a> = dyn FnMut(&[f32], bool) -> (String, u64) + 'a;

/// An end-of-turn prediction: the audio in, the verdict (`None`: it failed) and the ms it took
/// out.
pub type Predict<'a> = dyn FnMut(&[f32]) -> (Option<f32>, u64) + 'a;

/// Plays `audio` (16 kHz) into a core with `cfg`, 20 ms a step, then silence: at least 2.5 s,
/// and for as long as results are on their way (up to 30 s) until 2.5 s after the last one. `transcribe` and
/// `predict` (asked only when `cfg.turn_model` is set) return their result and how long it
/// took (ms); a failed prediction is `None`.
pub fn run(
    cfg: CallConfig,
    audio: &[f32],
    transcribe: &mut Transcribe<'_>,
    predict: &mut Predict<'_>,
) -> TurnPath {
    run_with(cfg, audio, None, transcribe, predict)
}

/// [`run`], with `bot` answering each request.
pub fn run_with(
    cfg: CallConfig,
    audio: &[f32],
    bot: Option<Bot>,
    transcribe: &mut Transcribe<'_>,
    predict: &mut Predict<'_>,
) -> TurnPath {
    let out_step = u64::from(cfg.out_rate) / 50;
    let answer_len = bot.map_or(0, |b| {
        ((b.speaks_ms * u64::from(cfg.out_rate) / 1000) as usize).min(ANSWER_AUDIO.len())
    });
    let mut call = Call::new(cfg);
    // The line: bot samples received and played, and marks (id, where) not yet played.
    let (mut received, mut played) = (0u64, 0u64);
    let mut marks: Vec<(u64, u64)> = Vec::new();
    let mut out = vec![0f32; 4096];
    let mut pending: BTreeMap<(u64, u64), Input<'static>> = BTreeMap::new();
    let mut seq = 0;
    let mut path = TurnPath::default();
    let mut last_result = 0usize;
    let mut now = 0u64;
    let quiet = [0f32; STEP];
    let frames = audio
        .chunks(STEP)
        .chain(std::iter::repeat_n(&quiet[..], 1500))
        .enumerate();
    // Past the audio, the caller is silent: stop once nothing is on its way and the core has
    // had 2.5 s of that silence and 2.5 s since the last result to end the turn.
    let end = audio.len().div_ceil(STEP);
    for (i, frame) in frames {
        if i >= end + 125 && pending.is_empty() && i > last_result + 125 {
            break;
        }
        now += 20;
        played = (played + out_step).min(received);
        marks.retain(|&(id, at)| {
            let due = at <= played;
            if due {
                call.handle(now, Input::MarkPlayed { id });
            }
            !due
        });
        call.handle(now, Input::CallerAudio(frame));
        if call.poll_timeout().is_some_and(|t| t <= now) {
            call.handle(now, Input::Timeout);
        }
        loop {
            // Results whose time has come, in the order they were ready.
            while let Some((&(at, k), _)) = pending.iter().next() {
                if at > now {
                    break;
                }
                let input = pending.remove(&(at, k)).expect("the entry just seen");
                call.handle(now, input);
                last_result = i;
            }
            let Some(o) = call.poll() else { break };
            let e = match o {
                Output::Effect(e) => e,
                Output::Wire(WireCmd::SendAudio { samples }) => {
                    let mut left = samples;
                    while left > 0 {
                        let n = left.min(out.len());
                        call.take_audio(&mut out[..n]);
                        left -= n;
                    }
                    received += samples as u64;
                    continue;
                }
                Output::Wire(WireCmd::Mark { id }) => {
                    marks.push((id, received));
                    continue;
                }
                Output::Wire(WireCmd::Clear) => {
                    // As Twilio does: what was not played is dropped and its marks echo now.
                    received = played;
                    for (id, _) in std::mem::take(&mut marks) {
                        call.handle(now, Input::MarkPlayed { id });
                    }
                    continue;
                }
                _ => continue,
            };
            let (input, took) = match e {
                Effect::Transcribe { turn, audio, whole } => {
                    let (text, took) = transcribe(&audio, whole);
                    (Input::Transcript { turn, text, whole }, took)
                }
                Effect::PredictEnd { turn, audio } => {
                    let (verdict, took) = predict(&audio);
                    match verdict {
                        Some(complete) => {
                            path.heard.push((now, Heard::Verdict(complete)));
                            (Input::EndPrediction { turn, complete }, took)
                        }
                        None => (
                            Input::EffectFailed {
                                turn,
                                effect: crate::call::EffectKind::TurnModel,
                            },
                            took,
                        ),
                    }
                }
                Effect::AskAgent {
                    turn,
                    said:
                        Said::Speech {
                            text,
                            earlier,
                            whole,
                            ..
                        },
                } => {
                    let heard = if earlier.is_empty() {
                        Heard::Request(text)
                    } else {
                        Heard::GoesOn { text, whole }
                    };
                    path.heard.push((now, heard));
                    let Some(b) = bot else { continue };
                    let at = now + b.after_ms;
                    let reply = Input::AgentReply {
                        turn,
                        text: "Sure, I can help with that. Let me look that up for you.".into(),
                        end: None,
                    };
                    let audio = Input::TtsAudio {
                        turn,
                        samples: &ANSWER_AUDIO[..answer_len],
                    };
                    for input in [reply, audio, Input::TtsDone { turn }] {
                        seq += 1;
                        pending.insert((at, seq), input);
                    }
                    continue;
                }
                _ => continue,
            };
            path.slowest = path.slowest.max(took);
            seq += 1;
            pending.insert((now + took, seq), input);
        }
    }
    path
}

/// What the live turn path did with the corpus (`switchboard corpus transcribe`).
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    pub n: usize,
    /// Asked more than once, and the last request does not hold all the words: the turn was
    /// split at a pause inside it.
    pub split: usize,
    /// Asked more than once, but each later request went on with the words before it: heard
    /// whole in the end.
    pub joined: usize,
    /// Never asked: the utterance never became a turn.
    pub unheard: usize,
    /// The end-of-turn model heard the caller unfinished at some pause.
    pub doubted: usize,
    /// Speech end → the agent asked (its last request), ms.
    pub latencies: Vec<u64>,
}

impl LiveStats {
    /// Adds one utterance's run; its speech ended at `speech_end_ms`.
    pub fn add(&mut self, path: &TurnPath, speech_end_ms: u64, threshold: f32) {
        self.n += 1;
        let requests = path.requests();
        let whole = path.heard_whole();
        self.split += usize::from(requests.len() > 1 && !whole);
        self.joined += usize::from(requests.len() > 1 && whole);
        self.unheard += usize::from(requests.is_empty());
        self.doubted += usize::from(path.verdicts().iter().any(|&p| p < threshold));
        if let Some((at, _)) = requests.last() {
            self.latencies.push(at.saturating_sub(speech_end_ms));
        }
    }

    pub fn line(&self) -> String {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let p = |q: f64| super::simcall::percentile(&l, q);
        format!(
            "{} utterances: split at a pause {} (and {} more heard whole in the end: the caller \
             went on before hearing an answer), never a turn {}, heard unfinished by the model at \
             some pause {}; speech end → agent asked p50 {} ms, p95 {} ms, max {} ms",
            self.n,
            self.split,
            self.joined,
            self.unheard,
            self.doubted,
            p(50.0),
            p(95.0),
            l.last().copied().unwrap_or(0)
        )
    }
}

/// Where the speech in `audio` (16 kHz) ends (ms): past the last 20 ms step louder than
/// -40 dBFS, as `switchboard load` measures its callers.
pub fn speech_end_ms(audio: &[f32]) -> u64 {
    let loud = audio
        .chunks(STEP)
        .rposition(|f| f.iter().map(|&s| s * s).sum::<f32>() / f.len() as f32 > 1e-4);
    loud.map_or(0, |i| (i as u64 + 1) * 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1.2 s of speech-like sound between silences: one turn, asked once its transcript is in,
    /// and the transcriber's time counts.
    #[test]
    fn a_turn_is_asked_once_its_transcript_is_in() {
        use crate::turn::tests::signals::{silence, speech_like};
        let audio = [
            silence(16_000),
            speech_like(19_200, -20.0, 7),
            silence(16_000),
        ]
        .concat();
        let run_with = |took: u64| {
            let mut calls = 0;
            let path = run(
                CallConfig::default(),
                &audio,
                &mut |_, _| {
                    calls += 1;
                    ("Confirm my reservation.".into(), took)
                },
                &mut |_| (Some(0.9), 0),
            );
            (path, calls)
        };
        let (fast, _) = run_with(0);
        let (slow, _) = run_with(700);
        let [(at_fast, text)] = fast.requests()[..] else {
            panic!("{:?}", fast.heard)
        };
        assert_eq!(text, "Confirm my reservation.");
        let [(at_slow, _)] = slow.requests()[..] else {
            panic!("{:?}", slow.heard)
        };
        // A transcript that takes 700 ms is not in by the time the turn ends at stop_ms: the
        // agent is asked when it arrives.
        assert!(at_slow > at_fast, "{at_slow} vs {at_fast}");
        assert_eq!(slow.slowest, 700);
        assert!(fast.verdicts().is_empty(), "no model configured");
    }
}
