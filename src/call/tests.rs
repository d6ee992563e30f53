//! Virtual-clock tests of the per-call core with a scripted world: caller audio made of
//! speech-like bursts, an instant fake ASR/agent/TTS (allowed here: these are unit tests of a
//! pure state machine), and a transport that plays sent audio in real (virtual) time and echoes
//! marks as Twilio does — when played, or all at once on `Clear`. Timelines are asserted exactly.

use super::*;
use crate::turn::tests::signals::{silence, speech_like};

const FRAME: usize = 320; // 20 ms at 16 kHz

/// TTS stand-in: 64 ms of audio per character (about the pace of speech), at 8 kHz.
fn tts_samples(text: &str) -> usize {
    text.chars().count() * 512
}

struct World {
    call: Call,
    now: u64,
    /// Transport: (mark id, sample position in the played stream) not yet echoed.
    marks: Vec<(u64, u64)>,
    /// Samples received by the transport / played so far (8 kHz).
    received: u64,
    played: u64,
    audio_buf: Vec<f32>,
    replies: Vec<&'static str>,
    timeline: Vec<String>,
    interrupted: Vec<String>,
    ended: Option<EndAction>,
    clears: usize,
    /// What the fake ASR hears for each turn, in order (then "caller turn N").
    transcripts: Vec<&'static str>,
    /// What it hears of a caller's pieces transcribed together, in order (then nothing), and
    /// how many samples each such audio had.
    wholes: Vec<&'static str>,
    whole_lens: Vec<usize>,
    /// The length of each utterance transcribed alone.
    alone_lens: Vec<usize>,
    /// A slow ASR: transcriptions are not answered until [`World::answer`].
    hold_asr: bool,
    /// Effects that fail: the next transcription / agent request, and synthesis of these texts.
    fail_asr: bool,
    fail_agent: bool,
    fail_tts: Vec<String>,
    synthesized: Vec<String>,
    /// The end-of-turn model's verdicts for the pauses, in order (answered at once); a NaN is
    /// a failure of the model.
    verdicts: Vec<f32>,
    /// The voice model's probability from each time (ms) on, while the core wants it.
    voice: Vec<(u64, f32)>,
    /// A streamed answer (a reply written "clause|clause|…"): its turn, the clauses still to
    /// come (one every `clause_every` steps), the steps so far and the whole reply (last).
    streaming: Option<(TurnId, Vec<String>, u32, String)>,
    /// Steps (of 20 ms) between a streamed answer's clauses.
    clause_every: u32,
}

impl World {
    fn new(replies: Vec<&'static str>) -> Self {
        Self {
            call: Call::new(CallConfig::default()),
            now: 0,
            marks: vec![],
            received: 0,
            played: 0,
            audio_buf: vec![0.0; 8000],
            replies,
            timeline: vec![],
            interrupted: vec![],
            ended: None,
            clears: 0,
            transcripts: vec![],
            wholes: vec![],
            whole_lens: vec![],
            alone_lens: vec![],
            hold_asr: false,
            fail_asr: false,
            fail_agent: false,
            fail_tts: vec![],
            synthesized: vec![],
            verdicts: vec![],
            voice: vec![],
            streaming: None,
            clause_every: 10,
        }
    }

    /// A world whose call has the voice check, with the model answering `p` from the start.
    fn with_voice(replies: Vec<&'static str>, p: f32) -> Self {
        let mut w = World::new(replies);
        w.call = Call::new(CallConfig {
            voice_check: Some(VoiceCheckConfig::default()),
            ..CallConfig::default()
        });
        w.voice = vec![(0, p)];
        w
    }

    fn greet(&mut self, text: &str) {
        self.call.handle(
            self.now,
            Input::AgentReply {
                turn: 0,
                text: text.into(),
                end: None,
            },
        );
        self.drain();
    }

    /// Runs the outputs to quiescence, answering effects at once (zero processing latency).
    fn drain(&mut self) {
        while let Some(o) = self.call.poll() {
            match o {
                Output::Wire(WireCmd::SendAudio { samples }) => {
                    let n = self.call.take_audio(&mut self.audio_buf[..samples]);
                    assert_eq!(n, samples);
                    self.received += n as u64;
                }
                Output::Wire(WireCmd::Mark { id }) => self.marks.push((id, self.received)),
                Output::Wire(WireCmd::Clear) => {
                    self.clears += 1;
                    self.received = self.played;
                    for (id, _) in std::mem::take(&mut self.marks) {
                        self.call.handle(self.now, Input::MarkPlayed { id });
                    }
                }
                Output::Effect(Effect::Transcribe {
                    turn,
                    audio,
                    whole: true,
                }) => {
                    self.whole_lens.push(audio.len());
                    if self.hold_asr {
                        self.timeline
                            .push(format!("{} transcribing whole {turn}", self.now));
                        continue;
                    }
                    let text = if self.wholes.is_empty() {
                        ""
                    } else {
                        self.wholes.remove(0)
                    };
                    self.timeline
                        .push(format!("{} transcribed whole {turn}: {text}", self.now));
                    let text = text.to_string();
                    self.call.handle(
                        self.now,
                        Input::Transcript {
                            turn,
                            text,
                            whole: true,
                        },
                    );
                }
                Output::Effect(Effect::Transcribe { turn, audio, .. }) => {
                    assert!(audio.len() > 16_000 / 4, "an utterance with pre-roll");
                    self.alone_lens.push(audio.len());
                    if std::mem::take(&mut self.fail_asr) {
                        self.timeline
                            .push(format!("{} transcription failed {turn}", self.now));
                        self.call.handle(
                            self.now,
                            Input::EffectFailed {
                                turn,
                                effect: EffectKind::Asr,
                            },
                        );
                        continue;
                    }
                    if self.hold_asr {
                        self.timeline
                            .push(format!("{} transcribing {turn}", self.now));
                        continue;
                    }
                    let text = if self.transcripts.is_empty() {
                        format!("caller turn {turn}")
                    } else {
                        self.transcripts.remove(0).to_string()
                    };
                    self.timeline
                        .push(format!("{} transcribed {turn}: {text}", self.now));
                    self.call.handle(
                        self.now,
                        Input::Transcript {
                            turn,
                            text,
                            whole: false,
                        },
                    );
                }
                Output::Effect(Effect::AskAgent { turn, said }) => {
                    let text = match said {
                        Said::Speech { text, earlier, .. } if earlier.is_empty() => text,
                        Said::Speech {
                            text,
                            earlier,
                            whole,
                            ..
                        } => {
                            let before: Vec<&str> =
                                earlier.iter().map(|p| p.text.as_str()).collect();
                            let whole = whole.map(|w| format!(" [whole: {w}]"));
                            format!(
                                "{text} (going on from {}: {}){}",
                                earlier[0].turn,
                                before.join(" "),
                                whole.unwrap_or_default()
                            )
                        }
                        Said::Keys(k) => format!("keys {k}"),
                    };
                    if std::mem::take(&mut self.fail_agent) {
                        self.timeline
                            .push(format!("{} agent failed: {text}", self.now));
                        self.call.handle(
                            self.now,
                            Input::EffectFailed {
                                turn,
                                effect: EffectKind::Agent,
                            },
                        );
                        continue;
                    }
                    let reply = if self.replies.is_empty() {
                        "Goodbye."
                    } else {
                        self.replies.remove(0)
                    };
                    let end = (reply == "Goodbye.").then_some(EndAction::Hangup);
                    self.timeline
                        .push(format!("{} agent asked: {text}", self.now));
                    if reply.contains('|') {
                        let mut clauses: Vec<String> =
                            reply.split('|').map(str::to_string).collect();
                        let first = clauses.remove(0);
                        self.streaming = Some((turn, clauses, 0, reply.replace('|', " ")));
                        self.call
                            .handle(self.now, Input::AgentClause { turn, text: first });
                        continue;
                    }
                    self.call.handle(
                        self.now,
                        Input::AgentReply {
                            turn,
                            text: reply.into(),
                            end,
                        },
                    );
                }
                Output::Effect(Effect::Synthesize { turn, text }) => {
                    self.synthesized.push(text.clone());
                    if self.fail_tts.contains(&text) {
                        self.call.handle(
                            self.now,
                            Input::EffectFailed {
                                turn,
                                effect: EffectKind::Tts,
                            },
                        );
                        continue;
                    }
                    let audio = vec![0.1f32; tts_samples(&text)];
                    self.call.handle(
                        self.now,
                        Input::TtsAudio {
                            turn,
                            samples: &audio,
                        },
                    );
                    self.call.handle(self.now, Input::TtsDone { turn });
                }
                Output::Effect(Effect::PredictEnd { turn, audio }) => {
                    assert!(audio.len() <= END_MODEL_WINDOW && audio.len() > 16_000 / 4);
                    let complete = self.verdicts.remove(0);
                    if complete.is_infinite() {
                        // Still thinking: the verdict never comes in this run.
                        self.timeline
                            .push(format!("{} end model thinking {turn}", self.now));
                    } else if complete.is_nan() {
                        self.timeline
                            .push(format!("{} end model failed {turn}", self.now));
                        self.call.handle(
                            self.now,
                            Input::EffectFailed {
                                turn,
                                effect: EffectKind::TurnModel,
                            },
                        );
                    } else {
                        self.call
                            .handle(self.now, Input::EndPrediction { turn, complete });
                    }
                }
                Output::Effect(Effect::CancelTurn { turn }) => {
                    self.timeline.push(format!("{} cancel {turn}", self.now))
                }
                Output::Effect(Effect::Interrupted { heard, .. }) => self.interrupted.push(heard),
                Output::Event(e) => self
                    .timeline
                    .push(format!("{} {}", e.t_ms, describe(&e.kind))),
                Output::End(a) => self.ended = Some(a),
            }
        }
    }

    /// Advances 20 ms: the transport plays, marks echo, the caller's frame arrives, time ticks.
    fn step(&mut self, caller: &[f32]) {
        self.now += 20;
        self.played = (self.played + 160).min(self.received);
        let played = self.played;
        let (done, pending): (Vec<_>, Vec<_>) =
            self.marks.iter().partition(|(_, at)| *at <= played);
        self.marks = pending;
        for (id, _) in done {
            self.call.handle(self.now, Input::MarkPlayed { id });
        }
        self.call.handle(self.now, Input::CallerAudio(caller));
        if self.call.wants_voice() {
            let now = self.now;
            if let Some(&(_, p)) = self.voice.iter().rev().find(|(from, _)| *from <= now) {
                self.call.handle(self.now, Input::Voice { p });
            }
        }
        if let Some((turn, clauses, steps, _)) = self.streaming.as_mut() {
            *steps += 1;
            let turn = *turn;
            if *steps % self.clause_every == 0 {
                if clauses.is_empty() {
                    let (_, _, _, whole) = self.streaming.take().unwrap();
                    self.call.handle(
                        self.now,
                        Input::AgentReply {
                            turn,
                            text: whole,
                            end: None,
                        },
                    );
                } else {
                    let text = clauses.remove(0);
                    self.call
                        .handle(self.now, Input::AgentClause { turn, text });
                }
            }
        }
        // Time reaches the core only at the deadlines it asked for: the exact timelines below
        // hold only if `poll_timeout` names every one.
        if self.call.poll_timeout().is_some_and(|t| t <= self.now) {
            self.call.handle(self.now, Input::Timeout);
        }
        self.drain();
    }

    /// The (held) transcription of `turn` comes back now.
    fn answer(&mut self, turn: TurnId, text: &str) {
        self.transcribed(turn, text, false);
    }

    /// The (held) whole transcription of `turn` comes back now.
    fn answer_whole(&mut self, turn: TurnId, text: &str) {
        self.transcribed(turn, text, true);
    }

    fn transcribed(&mut self, turn: TurnId, text: &str, whole: bool) {
        let what = if whole {
            "transcribed whole"
        } else {
            "transcribed"
        };
        self.timeline
            .push(format!("{} {what} {turn}: {text}", self.now));
        self.call.handle(
            self.now,
            Input::Transcript {
                turn,
                text: text.into(),
                whole,
            },
        );
        self.drain();
    }

    fn play(&mut self, audio: &[f32]) {
        for chunk in audio.chunks(FRAME) {
            self.step(chunk);
        }
    }
}

fn describe(k: &EventKind) -> String {
    match k {
        EventKind::CallerSpeechStart { .. } => "caller speech start".into(),
        EventKind::VoiceConfirmed => "voice confirmed".into(),
        EventKind::CallerSpeechEnd { duration_ms, .. } => {
            format!("caller speech end ({duration_ms} ms)")
        }
        EventKind::CallerNoise { duration_ms } => format!("noise ({duration_ms} ms)"),
        EventKind::Backchannel { duration_ms } => format!("backchannel ({duration_ms} ms)"),
        EventKind::Transcript { turn, text } => format!("transcript {turn}: {text}"),
        EventKind::Continues { turn, earlier } => format!("turn {turn} goes on from {earlier}"),
        EventKind::TranscriptDropped { turn } => format!("transcript {turn} dropped"),
        EventKind::Tentative { turn } => format!("tentative {turn}"),
        EventKind::TentativeDropped { turn } => format!("tentative {turn} dropped"),
        EventKind::EndPredicted { turn, complete } => format!("end predicted {turn}: {complete}"),
        EventKind::BotReply { turn, text } => format!("bot reply {turn}: {text}"),
        EventKind::BotAudioStart { turn } => format!("bot audio start {turn}"),
        EventKind::BotAudioEnd { turn } => format!("bot audio end {turn}"),
        EventKind::BotPaused { turn, since_ms } => format!("bot paused {turn} ({since_ms} ms)"),
        EventKind::BotResumed { turn, from_ms } => format!("bot resumed {turn} from {from_ms} ms"),
        EventKind::BargeIn { turn, heard } => format!("barge-in {turn}: heard {heard:?}"),
        EventKind::Dtmf { digit } => format!("dtmf {digit}"),
        EventKind::Keys { turn, keys } => format!("keys {turn}: {keys}"),
        EventKind::EffectFailed { turn, effect } => format!("{} failed {turn}", effect.as_str()),
        EventKind::HangUp => "hang-up".into(),
        EventKind::CallEnd => "call end".into(),
    }
}

fn ms(n: u64) -> u64 {
    n * 16
}

#[test]
fn a_turn_end_to_end_on_virtual_time() {
    let mut w = World::new(vec!["Your room is confirmed."]);
    w.greet("Hello.");
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(1200), -20.0, 7));
    w.play(&silence(ms(3000)));
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "0 bot reply 0: Hello.\n\
         0 bot audio start 0\n\
         400 bot audio end 0\n\
         1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribed 1: caller turn 1\n\
         2820 caller speech end (1210 ms)\n\
         2820 transcript 1: caller turn 1\n\
         2820 agent asked: caller turn 1\n\
         2820 bot reply 1: Your room is confirmed.\n\
         2820 bot audio start 1\n\
         4300 bot audio end 1",
        "\n{t}"
    );
    assert!(w.interrupted.is_empty());
    assert!(!w.call.is_ended());
}

#[test]
fn a_finished_sentence_ends_the_turn_after_the_quick_stop() {
    // The same call, but the pause's transcript reads as a whole sentence: the turn ends
    // quick_stop_ms (350) into the silence instead of stop_ms (600).
    let mut w = World::new(vec!["Your room is confirmed."]);
    w.transcripts = vec!["Confirm my reservation."];
    w.greet("Hello.");
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(1200), -20.0, 7));
    w.play(&silence(ms(3000)));
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "0 bot reply 0: Hello.\n\
         0 bot audio start 0\n\
         400 bot audio end 0\n\
         1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribed 1: Confirm my reservation.\n\
         2560 caller speech end (1210 ms)\n\
         2560 transcript 1: Confirm my reservation.\n\
         2560 agent asked: Confirm my reservation.\n\
         2560 bot reply 1: Your room is confirmed.\n\
         2560 bot audio start 1\n\
         4040 bot audio end 1",
        "\n{t}"
    );
}

#[test]
fn speech_after_a_pause_drops_the_tentative_transcript() {
    // "Confirm my reservation." ... 400 ms ... "for Friday": the early transcript must not be
    // acted on; the whole utterance is transcribed once it is over.
    let mut w = World::new(vec!["Done."]);
    w.transcripts = vec![
        "Confirm my reservation.",
        "Confirm my reservation for Friday.",
    ];
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(1200), -20.0, 7));
    w.play(&silence(ms(300)));
    w.play(&speech_like(ms(600), -20.0, 8));
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribed 1: Confirm my reservation.\n\
         2540 cancel 1\n\
         2540 tentative 1 dropped\n\
         3320 tentative 2\n\
         3320 transcribed 2: Confirm my reservation for Friday.\n\
         3460 caller speech end (2110 ms)\n\
         3460 transcript 2: Confirm my reservation for Friday.\n\
         3460 agent asked: Confirm my reservation for Friday.\n\
         3460 bot reply 2: Done.\n\
         3460 bot audio start 2\n\
         3780 bot audio end 2",
        "\n{t}"
    );
}

#[test]
fn a_transcript_arriving_after_its_tentative_turn_was_dropped_is_ignored() {
    // The pause's transcription is slower than the caller: "Sure, it's" ... 300 ms ... "A B C
    // one two three". Its transcript ("Sure, it's safe.") arrives after the caller went on,
    // while the turn id is still the current one; it must not reach the agent.
    let mut w = World::new(vec!["Done."]);
    w.hold_asr = true;
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(1200), -20.0, 7));
    w.play(&silence(ms(300)));
    w.play(&speech_like(ms(600), -20.0, 8));
    w.answer(1, "Sure, it's safe.");
    w.play(&silence(ms(2000)));
    w.answer(2, "Sure, it's ABC 1 2 3.");
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribing 1\n\
         2540 cancel 1\n\
         2540 tentative 1 dropped\n\
         3100 transcribed 1: Sure, it's safe.\n\
         3320 tentative 2\n\
         3320 transcribing 2\n\
         3720 caller speech end (2110 ms)\n\
         5100 transcribed 2: Sure, it's ABC 1 2 3.\n\
         5100 transcript 2: Sure, it's ABC 1 2 3.\n\
         5100 agent asked: Sure, it's ABC 1 2 3.\n\
         5100 bot reply 2: Done.\n\
         5100 bot audio start 2",
        "\n{t}"
    );
}

#[test]
fn a_turn_reserved_after_a_dropped_tentative_is_not_reused_once_dtmf_moved_on() {
    // The caller goes on after a pause (a fresh turn id is put aside for the utterance), then
    // presses a key while still talking: the keypad's request takes a turn of its own, and the
    // utterance, when it pauses, must not share it. (The keypad request gets an empty reply, so
    // the bot stays quiet and the caller's speech is a turn, not a backchannel.)
    let mut w = World::new(vec!["", "Done."]);
    w.hold_asr = true;
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(1200), -20.0, 7));
    w.play(&silence(ms(300)));
    w.play(&speech_like(ms(300), -20.0, 8));
    w.call.handle(w.now, Input::Dtmf('5'));
    w.call.handle(w.now, Input::Dtmf('#'));
    w.drain();
    w.play(&speech_like(ms(300), -20.0, 9));
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribing 1\n\
         2540 cancel 1\n\
         2540 tentative 1 dropped\n\
         2800 dtmf 5\n\
         2800 dtmf #\n\
         2800 cancel 2\n\
         2800 keys 3: 5\n\
         2800 agent asked: keys 5\n\
         2800 bot reply 3: \n\
         2800 bot audio end 3\n\
         3320 cancel 3\n\
         3320 tentative 4\n\
         3320 transcribing 4\n\
         3720 caller speech end (2110 ms)",
        "\n{t}"
    );
}

#[test]
fn transcripts_that_promise_more_do_not_end_the_turn_early() {
    assert!(reads_finished("Confirm my reservation."));
    assert!(reads_finished("What's my bill this month?"));
    assert!(reads_finished("Yes!"));
    assert!(!reads_finished("Confirm my reservation"));
    assert!(!reads_finished("I want to cancel and..."));
    assert!(!reads_finished("I'd like to book a room for the."));
    assert!(!reads_finished("My number is, um."));
    assert!(!reads_finished(""));
    assert!(!reads_finished("."));
}

#[test]
fn barge_in_clears_playout_and_keeps_only_what_was_heard() {
    let reply = "I have confirmed your reservation for December first through December fifth, check in is at three.";
    let mut w = World::new(vec![reply]);
    w.play(&silence(ms(500)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(1500))); // the bot starts talking at the end of this
    // the caller talks over the bot 1.5 s into its 6.5 s reply
    w.play(&speech_like(ms(1200), -20.0, 9));
    w.play(&silence(ms(1500)));
    let t = w.timeline.join("\n");
    assert!(t.contains("barge-in 1"), "{t}");
    assert_eq!(w.interrupted.len(), 1, "{t}");
    let heard = &w.interrupted[0];
    assert!(
        !heard.is_empty() && reply.starts_with(heard.as_str()) && heard.len() < reply.len() / 2,
        "heard {heard:?}\n{t}"
    );
    // Audio stopped at once: nothing was sent for the interrupted turn after the barge-in.
    let barge_at: u64 = t
        .lines()
        .find(|l| l.contains("barge-in"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(w.played, w.received, "transport buffer emptied by Clear");
    assert!(
        w.received * 1000 / 8000 <= barge_at,
        "no bot audio beyond the barge-in moment"
    );
    // The interrupted turn's late marks (echoed by the Clear) do not count as heard, and the
    // caller's new utterance gets a fresh turn with the agent.
    assert!(t.contains("transcript 3: caller turn 3"), "{t}");
    assert!(!t.contains("bot audio end 1"), "{t}");
}

#[test]
fn a_short_backchannel_does_not_interrupt() {
    let reply = "I have confirmed your reservation for December first through December fifth.";
    let mut w = World::new(vec![reply]);
    w.play(&silence(ms(500)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(240), -20.0, 5)); // "mhm"
    w.play(&silence(ms(6000)));
    let t = w.timeline.join("\n");
    assert!(!t.contains("barge-in"), "{t}");
    assert!(t.contains("backchannel"), "{t}");
    assert!(t.contains("bot audio end 1"), "{t}");
    assert!(w.interrupted.is_empty());
}

/// The time (ms) of the first timeline line containing `what`.
fn at(t: &str, what: &str) -> u64 {
    t.lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in\n{t}"))
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn talking_over_the_bot_stops_its_audio_within_the_hush_window() {
    // The same without a voice check and with one whose model hears a voice.
    for voice in [None, Some(0.9)] {
        let (w, onset) = over_the_bot(voice, -20.0);
        let t = w.timeline.join("\n");
        let paused = at(&t, "bot paused 1");
        // Paused (with Clear) 150 ms into the speech, to the frame; the barge-in is confirmed later.
        assert!(
            (onset + 150..=onset + 180).contains(&paused),
            "onset {onset}, paused {paused}\n{t}"
        );
        // The pause says how long the sound had lasted: its onset is the speech's, to the frame.
        let line = t.lines().find(|l| l.contains("bot paused 1")).unwrap();
        let since: u64 = line
            .rsplit('(')
            .next()
            .and_then(|s| s.strip_suffix(" ms)"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            since + 20 >= paused - onset && since <= paused - onset + 20,
            "the sound began {since} ms before the pause: onset {onset}, paused {paused}"
        );
        let barge = at(&t, "barge-in 1");
        assert!(barge >= onset + 300 && barge > paused, "{t}");
        assert!(!t.contains("bot resumed"), "{t}");
        // Nothing was played after the pause; exactly one Clear (the barge-in does not clear twice).
        assert!(w.received * 1000 / 8000 <= paused, "{t}");
        assert_eq!(w.clears, 1, "{t}");
    }
}

/// The caller's turn, then sound at `level_dbfs` over the bot's reply from the returned onset
/// on; with a voice check whose model says `voice` of that sound (the caller's own turn is a
/// voice), or without one.
fn over_the_bot(voice: Option<f32>, level_dbfs: f64) -> (World, u64) {
    let reply = "I have confirmed your reservation for December first through December fifth, check in is at three.";
    let mut w = match voice {
        Some(p) => {
            let mut w = World::with_voice(vec![reply], p);
            w.voice = vec![(0, 0.95), (2500, p)];
            w
        }
        None => World::new(vec![reply]),
    };
    w.play(&silence(ms(500)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(1500)));
    let onset = w.now;
    w.play(&speech_like(ms(1200), level_dbfs, 9));
    w.play(&silence(ms(1500)));
    (w, onset)
}

#[test]
fn sound_the_voice_model_rejects_neither_pauses_the_bot_nor_takes_a_turn() {
    let (w, _) = over_the_bot(Some(0.1), -20.0);
    let t = w.timeline.join("\n");
    assert!(
        t.contains("bot reply 1"),
        "the caller's own turn was taken\n{t}"
    );
    assert!(!t.contains("bot paused"), "{t}");
    assert!(!t.contains("barge-in"), "{t}");
    assert!(
        !t.contains("tentative 2") && !t.contains("transcribed 2"),
        "{t}"
    );
    assert!(t.contains("noise (1"), "reported as noise\n{t}");
    assert_eq!(w.clears, 0, "{t}");
    assert!(w.interrupted.is_empty());
    // Nor in the bot's silence: a sound the model rejects is no turn.
    let mut w = World::with_voice(vec![], 0.1);
    w.play(&silence(ms(500)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    assert!(
        !t.contains("tentative") && !t.contains("caller speech start"),
        "{t}"
    );
    assert!(t.contains("noise ("), "{t}");
}

#[test]
fn a_voice_too_quiet_to_be_the_callers_is_background() {
    // A television across the room: a voice, 30 dB under the caller's.
    let (w, _) = over_the_bot(Some(0.99), -42.0);
    let t = w.timeline.join("\n");
    assert!(!t.contains("bot paused") && !t.contains("barge-in"), "{t}");
    // The energy detector did hear it: it is reported as noise.
    assert!(t.contains("noise (1"), "{t}");
    assert_eq!(w.clears, 0, "{t}");
}

#[test]
fn a_start_the_voice_model_confirms_late_is_taken_then() {
    let mut w = World::with_voice(vec!["Sure."], 0.1);
    w.play(&silence(ms(500)));
    let onset = w.now;
    // The model hears a voice only 400 ms into the sound (after the detector's start).
    w.voice = vec![(0, 0.1), (onset + 400, 0.9)];
    w.play(&speech_like(ms(1200), -20.0, 3));
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    let confirmed = at(&t, "voice confirmed");
    let start = at(&t, "caller speech start");
    assert_eq!(
        start, confirmed,
        "the held start happens at the confirmation\n{t}"
    );
    assert!((onset + 400..=onset + 440).contains(&start), "{t}");
    assert!(t.contains("transcribed 1"), "the turn is taken\n{t}");
}

#[test]
fn a_cough_pauses_the_bot_and_it_resumes_from_what_the_caller_heard() {
    let reply = "I have confirmed your reservation for December first through December fifth.";
    let mut w = World::new(vec![reply]);
    w.play(&silence(ms(500)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(240), -20.0, 5)); // a cough, or "mhm"
    w.play(&silence(ms(8000)));
    let t = w.timeline.join("\n");
    let (paused, resumed) = (at(&t, "bot paused 1"), at(&t, "bot resumed 1"));
    assert!(resumed > paused, "{t}");
    assert!(!t.contains("barge-in"), "{t}");
    assert!(t.contains("backchannel") || t.contains("noise"), "{t}");
    assert!(t.contains("bot audio end 1"), "{t}");
    assert!(w.interrupted.is_empty());
    // It resumed from the last mark heard before the pause: at most one mark interval (100 ms)
    // before the pause is repeated, and nothing is skipped — the whole reply was played.
    let line = t.lines().find(|l| l.contains("bot resumed 1")).unwrap();
    let from_ms: u64 = line.split(' ').nth(5).unwrap().parse().unwrap();
    let into = paused - at(&t, "bot audio start 1");
    assert!(
        from_ms <= into && from_ms + 140 >= into,
        "paused {into} ms into the reply\n{t}"
    );
    let reply_len = tts_samples(reply) as u64;
    let repeated = w.played.saturating_sub(reply_len);
    assert!(
        w.played >= reply_len && repeated <= 800 + 320,
        "played {} of a {reply_len}-sample reply\n{t}",
        w.played
    );
    assert_eq!(w.clears, 1, "{t}");
}

#[test]
fn stale_results_are_dropped() {
    let mut c = Call::new(CallConfig::default());
    c.handle(
        0,
        Input::AgentReply {
            turn: 0,
            text: "Hi.".into(),
            end: None,
        },
    );
    while c.poll().is_some() {}
    // a transcript and a reply for turns that are not current
    c.handle(
        10,
        Input::Transcript {
            turn: 5,
            text: "late".into(),
            whole: false,
        },
    );
    c.handle(
        10,
        Input::AgentReply {
            turn: 7,
            text: "late".into(),
            end: None,
        },
    );
    c.handle(
        10,
        Input::TtsAudio {
            turn: 7,
            samples: &[0.5; 100],
        },
    );
    assert_eq!(c.poll(), None);
}

#[test]
fn goodbye_hangs_up_after_the_last_words_play() {
    let mut w = World::new(vec!["Goodbye."]);
    w.play(&silence(ms(400)));
    w.play(&speech_like(ms(800), -20.0, 11));
    w.play(&silence(ms(1500)));
    assert_eq!(w.ended, Some(EndAction::Hangup));
    assert!(w.call.is_ended());
    let t = w.timeline.join("\n");
    let end = t
        .lines()
        .position(|l| l.contains("bot audio end 1"))
        .unwrap();
    let call_end = t.lines().position(|l| l.contains("call end")).unwrap();
    assert!(end < call_end, "{t}");
}

#[test]
fn dtmf_reaches_the_agent_as_typed_keys() {
    let mut w = World::new(vec!["Thanks.", "Connecting you."]);
    for d in ['1', '2', '3', '#'] {
        w.call.handle(w.now, Input::Dtmf(d));
    }
    w.drain();
    w.call.handle(w.now, Input::Dtmf('x'));
    w.play(&silence(ms(2000)));
    w.call.handle(w.now, Input::Dtmf('0'));
    w.drain();
    let asked: Vec<&String> = w
        .timeline
        .iter()
        .filter(|l| l.contains("agent asked"))
        .collect();
    assert_eq!(asked.len(), 2, "{:?}", w.timeline);
    assert!(asked[0].ends_with("agent asked: keys 123"), "{asked:?}");
    assert!(asked[1].ends_with("agent asked: keys 0"), "{asked:?}");
}

#[test]
fn hang_up_is_never_dropped() {
    let mut w = World::new(vec![
        "A long answer that is still playing when the caller hangs up.",
    ]);
    w.play(&silence(ms(300)));
    w.play(&speech_like(ms(800), -20.0, 2));
    w.play(&silence(ms(900)));
    w.call.handle(w.now, Input::HangUp);
    w.drain();
    assert!(w.call.is_ended());
    let t = w.timeline.join("\n");
    assert!(
        t.ends_with("hang-up\n".to_string().trim_end()) || t.contains("hang-up"),
        "{t}"
    );
    assert!(t.lines().last().unwrap().ends_with("call end"), "{t}");
    // nothing happens after the end
    w.call.handle(w.now + 20, Input::Timeout);
    assert_eq!(w.call.poll(), None);
}

#[test]
fn same_input_same_timeline() {
    let run = || {
        let mut w = World::new(vec!["First answer here.", "Second answer."]);
        w.greet("Welcome.");
        w.play(&silence(ms(700)));
        w.play(&speech_like(ms(900), -22.0, 21));
        w.play(&silence(ms(300)));
        w.play(&speech_like(ms(1100), -18.0, 22));
        w.play(&silence(ms(2500)));
        (w.timeline, w.interrupted)
    };
    assert_eq!(run(), run());
}

#[test]
fn heard_words_maps_samples_to_whole_words() {
    assert_eq!(heard_words("one two three four", 0, 100), "");
    assert_eq!(heard_words("one two three four", 50, 100), "one two");
    assert_eq!(
        heard_words("one two three four", 100, 100),
        "one two three four"
    );
    assert_eq!(heard_words("one two three four", 20, 100), "one");
    assert_eq!(heard_words("one two three four", 15, 100), "");
    assert_eq!(heard_words("", 10, 100), "");
    assert_eq!(mark_id(3, 0, 1234), (3 << 40) | 1234);
    assert_eq!(split_mark(mark_id(3, 0, 1234)), (3, 0, 1234));
    assert_eq!(
        split_mark(mark_id(7, 255, 0xFFFF_FFFF)),
        (7, 255, 0xFFFF_FFFF)
    );
    assert_ne!(mark_id(3, 1, 1234), mark_id(3, 2, 1234));
}

const APOLOGY: &str = "Sorry, I had a problem on my side. Could you say that again?";

/// The caller's turn: a second of speech, then silence long enough to end it.
fn caller_turn(w: &mut World, seed: u64) {
    w.play(&speech_like(ms(1000), -20.0, seed));
    w.play(&silence(ms(1500)));
}

#[test]
fn a_failed_synthesis_apologises_and_the_call_goes_on() {
    let mut w = World::new(vec!["Your room is confirmed.", "Anything else?"]);
    w.fail_tts = vec!["Your room is confirmed.".into()];
    w.greet("Hello.");
    w.play(&silence(ms(600)));
    caller_turn(&mut w, 3);
    // The agent keeps none of the reply the caller never heard; the apology is spoken instead.
    assert_eq!(w.interrupted, vec![String::new()], "{:#?}", w.timeline);
    assert!(
        w.timeline.iter().any(|l| l.ends_with("tts failed 1")),
        "{:#?}",
        w.timeline
    );
    assert_eq!(
        w.synthesized,
        vec!["Hello.", "Your room is confirmed.", APOLOGY]
    );
    w.play(&silence(ms(6000)));
    assert!(
        w.timeline.iter().any(|l| l.ends_with("bot audio end 1")),
        "the apology plays to its end: {:#?}",
        w.timeline
    );
    assert!(!w.call.bot_speaking(), "the call is not wedged");
    // A short answer afterwards is a turn, not a backchannel over a bot that never finished.
    w.play(&speech_like(ms(500), -20.0, 5));
    w.play(&silence(ms(1500)));
    let t = w.timeline.join("\n");
    assert!(!t.contains("backchannel"), "{t}");
    assert!(t.contains("agent asked: caller turn 2"), "{t}");
    assert!(t.contains("bot reply 2: Anything else?"), "{t}");
}

#[test]
fn when_the_apology_cannot_be_spoken_either_the_bot_falls_silent_and_listens() {
    let mut w = World::new(vec!["Your room is confirmed.", "Anything else?"]);
    w.fail_tts = vec!["Your room is confirmed.".into(), APOLOGY.into()];
    w.play(&silence(ms(300)));
    caller_turn(&mut w, 4);
    assert!(!w.call.bot_speaking());
    assert_eq!(w.synthesized, vec!["Your room is confirmed.", APOLOGY]);
    caller_turn(&mut w, 6);
    assert!(
        w.timeline
            .iter()
            .any(|l| l.ends_with("bot reply 2: Anything else?")),
        "{:#?}",
        w.timeline
    );
}

#[test]
fn a_farewell_that_cannot_be_spoken_still_ends_the_call() {
    let mut w = World::new(vec!["Goodbye."]);
    w.fail_tts = vec!["Goodbye.".into()];
    w.play(&silence(ms(300)));
    caller_turn(&mut w, 8);
    assert_eq!(w.ended, Some(EndAction::Hangup));
    assert!(w.call.is_ended());
}

#[test]
fn a_failed_transcription_or_agent_is_an_apology_then_the_next_turn() {
    let mut w = World::new(vec!["Sure, what day?"]);
    w.fail_asr = true;
    w.play(&silence(ms(300)));
    caller_turn(&mut w, 9);
    assert!(
        w.timeline.iter().any(|l| l.ends_with("asr failed 1")),
        "{:#?}",
        w.timeline
    );
    assert_eq!(w.synthesized, vec![APOLOGY]);
    w.play(&silence(ms(6000)));
    assert!(!w.call.bot_speaking());
    w.fail_agent = true;
    caller_turn(&mut w, 10);
    assert!(
        w.timeline.iter().any(|l| l.ends_with("agent failed 2")),
        "{:#?}",
        w.timeline
    );
    assert_eq!(w.synthesized, vec![APOLOGY, APOLOGY]);
    w.play(&silence(ms(6000)));
    caller_turn(&mut w, 11);
    assert!(
        w.timeline
            .iter()
            .any(|l| l.ends_with("bot reply 3: Sure, what day?")),
        "{:#?}",
        w.timeline
    );
    // The apology is the call's own words: nothing of it is reported to the agent.
    assert!(w.interrupted.is_empty(), "{:?}", w.interrupted);
}

#[test]
fn poll_timeout_names_the_next_pacing_and_keypad_deadlines() {
    let mut w = World::new(vec![]);
    assert_eq!(w.call.poll_timeout(), None, "an idle call needs no timer");
    w.greet("Hello there, welcome.");
    // The greeting's first 200 ms (lead) went out at once; the next frame is due 20 ms later.
    assert_eq!(w.call.poll_timeout(), Some(20));
    w.play(&silence(ms(4000)));
    assert_eq!(w.call.poll_timeout(), None, "nothing left to pace");
    w.call.handle(w.now, Input::Dtmf('4'));
    w.drain();
    assert_eq!(w.call.poll_timeout(), Some(w.now + 2000));
}

/// One second of silence, 1.2 s of speech, then three seconds of silence.
fn one_utterance(w: &mut World) {
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(1200), -20.0, 7));
    w.play(&silence(ms(3000)));
}

/// The timeline lines that mention any of `what`.
fn timeline_with<'a>(w: &'a World, what: &[&str]) -> Vec<&'a String> {
    w.timeline
        .iter()
        .filter(|l| what.iter().any(|x| l.contains(x)))
        .collect()
}

fn with_end_model(replies: Vec<&'static str>) -> World {
    let mut w = World::new(replies);
    let cfg = CallConfig {
        turn_model: Some(TurnModelConfig::default()),
        ..CallConfig::default()
    };
    w.call = Call::new(cfg);
    w
}

#[test]
fn the_end_model_decides_a_pause_instead_of_the_punctuation() {
    // Done by the model's ear although whisper wrote no full stop: the quick stop, as for a
    // finished sentence without a model (2560).
    let mut w = with_end_model(vec!["Done."]);
    w.transcripts = vec!["Confirm my reservation"];
    w.verdicts = vec![0.9];
    one_utterance(&mut w);
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribed 1: Confirm my reservation\n\
         2420 end predicted 1: 0.9\n\
         2560 caller speech end (1210 ms)\n\
         2560 transcript 1: Confirm my reservation\n\
         2560 agent asked: Confirm my reservation\n\
         2560 bot reply 1: Done.\n\
         2560 bot audio start 1\n\
         2880 bot audio end 1",
        "\n{t}"
    );
}

/// A call that hears "Confirm my reservation." (the end model, when `cfg` has one, scores it
/// done: 0.9) and answers "Done.".
fn confirming(cfg: CallConfig) -> World {
    let mut w = World::new(vec!["Done."]);
    w.call = Call::new(cfg);
    w.transcripts = vec!["Confirm my reservation."];
    w.verdicts = vec![0.9];
    w
}

/// The end model on, a turn it calls done ending `quick_stop_ms` into the silence.
fn end_model_config(quick_stop_ms: u32) -> CallConfig {
    CallConfig {
        turn_model: Some(TurnModelConfig::default()),
        quick_stop_ms,
        ..CallConfig::default()
    }
}

#[test]
fn the_end_model_hears_the_pause_at_listen_ms_while_whisper_starts_sooner() {
    // Transcription starts at a 150 ms pause; the model is asked only once the pause is 200 ms
    // (it hears shorter ones as unfinished); done, the turn ends 300 ms into the silence.
    let mut cfg = end_model_config(300);
    cfg.turn.pause_ms = 150;
    let mut w = confirming(cfg);
    one_utterance(&mut w);
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "1200 caller speech start\n\
         2360 tentative 1\n\
         2360 transcribed 1: Confirm my reservation.\n\
         2420 end predicted 1: 0.9\n\
         2520 caller speech end (1210 ms)\n\
         2520 transcript 1: Confirm my reservation.\n\
         2520 agent asked: Confirm my reservation.\n\
         2520 bot reply 1: Done.\n\
         2520 bot audio start 1\n\
         2840 bot audio end 1",
        "\n{t}"
    );
}

#[test]
fn a_busy_line_transcribes_a_pause_later() {
    // pause_ms on a quiet line, busy_pause_ms on a busy one: the same utterance is transcribed
    // 50 ms later when the line is busy, and again at 100 ms once it is quiet again.
    let world = |busy: Option<bool>| {
        let mut cfg = end_model_config(250);
        cfg.turn.pause_ms = 100;
        cfg.turn.busy_pause_ms = 150;
        let mut w = confirming(cfg);
        if let Some(b) = busy {
            w.call.handle(0, Input::LineBusy(b));
        }
        one_utterance(&mut w);
        timeline_with(&w, &["tentative", "caller speech end"])
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let quiet = world(None);
    assert_eq!(
        quiet,
        ["2320 tentative 1", "2460 caller speech end (1210 ms)"]
    );
    assert_eq!(
        world(Some(true)),
        ["2360 tentative 1", "2460 caller speech end (1210 ms)"]
    );
    assert_eq!(world(Some(false)), quiet);
    // Without busy_pause_ms, a busy line changes nothing.
    let mut cfg = CallConfig::default();
    cfg.turn.pause_ms = 100;
    let mut w = confirming(cfg);
    w.call.handle(0, Input::LineBusy(true));
    one_utterance(&mut w);
    assert_eq!(timeline_with(&w, &["tentative"]), ["2320 tentative 1"]);
}

/// A busy line's call with the end model (quick stop 300 ms, transcription at a 150 ms pause),
/// whose pauses are transcribed once the model hears the caller done (`busy_verdict_first`) or
/// at once, and whose transcriber answers `transcripts` in turn.
fn busy(verdict_first: bool, transcripts: Vec<&'static str>, verdicts: Vec<f32>) -> World {
    let mut cfg = end_model_config(300);
    cfg.turn.pause_ms = 100;
    cfg.turn.busy_pause_ms = 150;
    cfg.turn_model.as_mut().unwrap().busy_verdict_first = verdict_first;
    let mut w = World::new(vec!["Thanks.", "Thanks."]);
    w.call = Call::new(cfg);
    w.call.handle(0, Input::LineBusy(true));
    w.transcripts = transcripts;
    w.verdicts = verdicts;
    w
}

#[test]
fn a_busy_line_transcribes_a_pause_once_the_model_hears_the_caller_done() {
    // The pause (150 ms) makes the turn tentative; the model hears it at 200 ms and says done:
    // only then does whisper start, and the turn ends at the quick stop as before.
    let mut w = busy(true, vec!["Confirm my reservation."], vec![0.9]);
    one_utterance(&mut w);
    let lines = ["tentative", "transcribed", "end predicted", "asked"];
    assert_eq!(
        timeline_with(&w, &lines),
        [
            "2360 tentative 1",
            "2420 end predicted 1: 0.9",
            "2420 transcribed 1: Confirm my reservation.",
            "2520 agent asked: Confirm my reservation."
        ]
    );
    // Without it, whisper starts at the pause, alongside the model.
    let mut w = busy(false, vec!["Confirm my reservation."], vec![0.9]);
    one_utterance(&mut w);
    assert_eq!(
        timeline_with(&w, &lines),
        [
            "2360 tentative 1",
            "2360 transcribed 1: Confirm my reservation.",
            "2420 end predicted 1: 0.9",
            "2520 agent asked: Confirm my reservation."
        ]
    );
    // A quiet line transcribes at the pause whatever the setting.
    let mut w = busy(true, vec!["Confirm my reservation."], vec![0.9]);
    w.call.handle(0, Input::LineBusy(false));
    one_utterance(&mut w);
    assert_eq!(
        timeline_with(&w, &["tentative", "transcribed"]),
        [
            "2320 tentative 1",
            "2320 transcribed 1: Confirm my reservation."
        ]
    );
}

#[test]
fn on_a_busy_line_a_pause_heard_unfinished_is_not_transcribed_when_the_caller_goes_on() {
    // "My number is" … 500 ms … "A B C one two three.": the model hears the pause unfinished,
    // the caller goes on before stop_ms, and the only transcription is the whole turn's.
    let run = |verdict_first: bool, transcripts| {
        let mut w = busy(verdict_first, transcripts, vec![0.05, 0.95]);
        w.play(&silence(ms(1000)));
        w.play(&speech_like(ms(800), -20.0, 7));
        w.play(&silence(ms(500)));
        w.play(&speech_like(ms(1200), -20.0, 8));
        w.play(&silence(ms(3000)));
        w
    };
    let w = run(true, vec!["My number is ABC123."]);
    assert_eq!(
        timeline_with(&w, &["transcribed", "asked"]),
        [
            "3720 transcribed 2: My number is ABC123.",
            "3820 agent asked: My number is ABC123."
        ]
    );
    // Transcribed at each pause, the first pass is thrown away.
    let w = run(false, vec!["My number is", "My number is ABC123."]);
    assert_eq!(
        timeline_with(&w, &["transcribed", "asked"]),
        [
            "1960 transcribed 1: My number is",
            "3660 transcribed 2: My number is ABC123.",
            "3820 agent asked: My number is ABC123."
        ]
    );
}

#[test]
fn on_a_busy_line_a_pause_heard_unfinished_is_transcribed_at_stop_ms() {
    // The model doubts a finished "Yes, that's right." and the caller says nothing more: the
    // pause is transcribed where the turn would have ended without the hold (stop_ms, 600 ms),
    // and its finished sentence shortens the hold to doubt_hold_ms (300 ms).
    let mut w = busy(true, vec!["Yes, that's right."], vec![0.1]);
    one_utterance(&mut w);
    assert_eq!(
        timeline_with(&w, &["transcribed", "end predicted", "asked"]),
        [
            "2420 end predicted 1: 0.1",
            "2820 transcribed 1: Yes, that's right.",
            "3120 agent asked: Yes, that's right."
        ]
    );
    // The same turn transcribed at the pause ends at the same time.
    let mut w = busy(false, vec!["Yes, that's right."], vec![0.1]);
    one_utterance(&mut w);
    assert_eq!(
        timeline_with(&w, &["asked"]),
        ["3120 agent asked: Yes, that's right."]
    );
}

#[test]
fn on_a_busy_line_a_verdict_that_never_comes_leaves_the_turn_to_stop_ms() {
    // The model does not answer: the turn ends at stop_ms like any other and is transcribed
    // then, whole.
    let mut w = busy(true, vec!["Confirm my reservation."], vec![f32::INFINITY]);
    one_utterance(&mut w);
    assert_eq!(
        timeline_with(
            &w,
            &[
                "tentative",
                "transcribed",
                "end model",
                "speech end",
                "asked"
            ]
        ),
        [
            "2360 tentative 1",
            "2420 end model thinking 1",
            "2820 caller speech end (1210 ms)",
            "2820 transcribed 1: Confirm my reservation.",
            "2820 agent asked: Confirm my reservation."
        ]
    );
    // A failed model starts the transcription at once; the transcript's full stop decides.
    let mut w = busy(true, vec!["Confirm my reservation."], vec![f32::NAN]);
    one_utterance(&mut w);
    assert_eq!(
        timeline_with(&w, &["transcribed", "end model", "asked"]),
        [
            "2420 end model failed 1",
            "2420 transcribed 1: Confirm my reservation.",
            "2520 agent asked: Confirm my reservation."
        ]
    );
}

/// "Sure, it's" ... 900 ms ... "A B C one two three": the pause is longer than `stop_ms` (600),
/// so without the model the caller is cut off and the rest is a second request; with it the
/// pause is held and the caller's whole turn is one request.
#[test]
fn an_unfinished_pause_is_held_so_the_caller_is_not_cut_off() {
    let run = |model: bool| {
        let mut w = if model {
            with_end_model(vec!["Thanks.", "Thanks."])
        } else {
            World::new(vec!["Thanks.", "Thanks."])
        };
        w.transcripts = vec!["Sure, it's.", "Sure, it's ABC123."];
        w.verdicts = vec![0.05, 0.95];
        w.play(&silence(ms(1000)));
        w.play(&speech_like(ms(800), -20.0, 7));
        w.play(&silence(ms(900)));
        w.play(&speech_like(ms(1200), -20.0, 8));
        w.play(&silence(ms(3000)));
        w.timeline
            .iter()
            .filter(|l| l.contains("agent asked"))
            .cloned()
            .collect::<Vec<_>>()
    };
    // Without the model the caller is cut off at "Sure, it's." (and goes on before hearing the
    // answer: the agent is asked their words together; the fake recogniser hears the whole
    // utterance each time).
    assert_eq!(
        run(false),
        [
            "2420 agent asked: Sure, it's.",
            "4260 agent asked: Sure, it's ABC123. (going on from 1: Sure, it's.)"
        ]
    );
    assert_eq!(run(true), ["4260 agent asked: Sure, it's ABC123."]);
}

#[test]
fn an_unfinished_pause_still_ends_the_turn_after_the_hold() {
    // The model hears an unfinished turn and the caller says nothing more: the turn ends after
    // stop_ms + hold_ms (600 + 1400) of silence, not never.
    let mut w = with_end_model(vec!["Thanks."]);
    w.transcripts = vec!["My number is"];
    w.verdicts = vec![0.1];
    one_utterance(&mut w);
    let t = w.timeline.join("\n");
    assert_eq!(
        t,
        "1200 caller speech start\n\
         2420 tentative 1\n\
         2420 transcribed 1: My number is\n\
         2420 end predicted 1: 0.1\n\
         4220 caller speech end (1210 ms)\n\
         4220 transcript 1: My number is\n\
         4220 agent asked: My number is\n\
         4220 bot reply 1: Thanks.\n\
         4220 bot audio start 1\n\
         4680 bot audio end 1",
        "\n{t}"
    );
}

#[test]
fn a_failed_end_model_leaves_the_decision_to_the_transcript() {
    let mut w = with_end_model(vec!["Done."]);
    w.transcripts = vec!["Confirm my reservation."];
    w.verdicts = vec![f32::NAN];
    one_utterance(&mut w);
    let asked = timeline_with(&w, &["agent asked", "failed"]);
    assert_eq!(
        asked,
        [
            "2420 end model failed 1",
            "2560 agent asked: Confirm my reservation."
        ]
    );
}

#[test]
fn a_transcript_that_clearly_goes_on_vetoes_the_models_done() {
    // "No," … the model hears a finished "No" but whisper's comma says more is coming: no quick
    // stop; the turn ends at stop_ms (600) as without a model.
    let mut w = with_end_model(vec!["Done."]);
    w.transcripts = vec!["No,"];
    w.verdicts = vec![0.93];
    one_utterance(&mut w);
    let asked = timeline_with(&w, &["agent asked"]);
    assert_eq!(asked, ["2820 agent asked: No,"]);
    assert!(reads_unfinished("No,"));
    assert!(reads_unfinished("I want to cancel and"));
    assert!(reads_unfinished("Sure, it's..."));
    assert!(!reads_unfinished("Confirm my reservation"));
    assert!(!reads_unfinished("Yes."));
}

#[test]
fn a_streamed_answer_is_spoken_clause_by_clause_as_each_comes() {
    let mut w = World::new(vec![
        "One moment.|Check-in is at three in the afternoon,|and breakfast is included.",
    ]);
    w.play(&silence(ms(400)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(6000)));
    let t = w.timeline.join("\n");
    let asked = at(&t, "agent asked");
    // The first clause plays at once; each later one is said as it comes, 200 ms apart.
    assert_eq!(at(&t, "bot reply 1: One moment."), asked, "{t}");
    assert_eq!(at(&t, "bot audio start 1"), asked, "{t}");
    assert_eq!(at(&t, "bot reply 1: Check-in"), asked + 200, "{t}");
    assert_eq!(at(&t, "bot reply 1: and breakfast"), asked + 400, "{t}");
    assert_eq!(t.matches("bot audio start 1").count(), 1, "{t}");
    assert_eq!(t.matches("bot audio end 1").count(), 1, "{t}");
    // Each clause synthesised on its own; the whole reply adds nothing more.
    assert_eq!(
        w.synthesized,
        [
            "One moment.",
            "Check-in is at three in the afternoon,",
            "and breakfast is included."
        ]
    );
    // The audio ends once all of it has played: 75 characters at 64 ms each.
    let end = at(&t, "bot audio end 1");
    let chars = "One moment.Check-in is at three in the afternoon,and breakfast is included.";
    assert!(
        end >= asked + chars.len() as u64 * 64 - 40 && end <= asked + chars.len() as u64 * 64 + 80,
        "{end} {t}"
    );
    assert!(w.interrupted.is_empty());
}

#[test]
fn a_barge_in_during_a_streamed_answer_keeps_what_was_heard_and_drops_the_rest() {
    let mut w = World::new(vec![
        "One moment.|Check-in is at three in the afternoon,|and breakfast is included.",
    ]);
    // The model is slow: its clauses come 1.2 s apart.
    w.clause_every = 60;
    w.play(&silence(ms(400)));
    w.play(&speech_like(ms(1000), -20.0, 3));
    w.play(&silence(ms(1000)));
    // The caller talks over it 300 ms in: only "One moment." had begun playing.
    w.play(&silence(ms(300)));
    w.play(&speech_like(ms(1200), -20.0, 9));
    w.play(&silence(ms(3000)));
    let t = w.timeline.join("\n");
    assert!(t.contains("barge-in 1"), "{t}");
    assert_eq!(w.interrupted.len(), 1, "{t}");
    let whole = "One moment. Check-in is at three in the afternoon, and breakfast is included.";
    let heard = &w.interrupted[0];
    assert!(
        whole.starts_with(heard.as_str()) && heard.len() < whole.len() / 2,
        "heard {heard:?}\n{t}"
    );
    // Clauses coming after the barge-in are neither shown nor synthesised.
    assert!(!t.contains("bot reply 1: and breakfast"), "{t}");
    assert!(!w.synthesized.iter().any(|s| s.starts_with("and breakfast")));
    assert!(!t.contains("bot audio end 1"), "{t}");
}

/// "Sure." — a pause of `gap_ms` — "A B C one two three.", with the bot's answer to "Sure."
/// starting as soon as that turn ends (at the quick stop, 350 ms into the pause) and long
/// enough to still be playing when the caller goes on. Returns the world, its config given.
fn sure_then_code(cfg: CallConfig, gap_ms: u64, second: &'static str) -> World {
    sure_then(cfg, gap_ms, second, 1500)
}

/// [`sure_then_code`] with the second utterance `second_ms` long.
fn sure_then(cfg: CallConfig, gap_ms: u64, second: &'static str, second_ms: u64) -> World {
    let mut w = World::new(vec![
        "Okay, please go ahead and read me the reservation number when you are ready.",
        "Thanks.",
    ]);
    w.call = Call::new(cfg);
    w.transcripts = vec!["Sure.", second];
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(500), -20.0, 7));
    w.play(&silence(ms(gap_ms)));
    w.play(&speech_like(ms(second_ms), -20.0, 8));
    w.play(&silence(ms(2000)));
    w
}

#[test]
fn a_caller_who_goes_on_before_hearing_the_answer_is_heard_with_the_words_before() {
    // The answer to "Sure." starts 350 ms into the pause and the caller goes on 200 ms later:
    // too soon to be answering it. The agent hears the two as one utterance and takes its
    // answer back (nothing of it was heard: the pause came before the first mark's words).
    let w = sure_then_code(CallConfig::default(), 550, "A B C one two three.");
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(
        asked,
        [
            "1860 agent asked: Sure.",
            "3920 agent asked: A B C one two three. (going on from 1: Sure.)"
        ],
        "\n{t}"
    );
    assert!(t.contains("turn 3 goes on from 1"), "\n{t}");
    assert_eq!(w.interrupted, [""], "\n{t}");
    // 800 ms into the answer is still too soon to be replying to it (a reply is planned only
    // once its first words are heard, and a phone line delays both ways).
    let w = sure_then_code(CallConfig::default(), 1150, "A B C one two three.");
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(asked.len(), 2, "\n{t}");
    assert!(
        asked[1].ends_with("agent asked: A B C one two three. (going on from 1: Sure.)"),
        "\n{t}"
    );
    // Without it (continue_ms = 0), the code is asked on its own and the agent keeps what
    // was heard of its answer to "Sure.".
    let off = CallConfig {
        continue_ms: 0,
        ..CallConfig::default()
    };
    let w = sure_then_code(off, 550, "A B C one two three.");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(
        asked,
        [
            "1860 agent asked: Sure.",
            "3920 agent asked: A B C one two three."
        ]
    );
}

#[test]
fn a_caller_who_goes_on_is_also_heard_with_the_pieces_audio_together() {
    // The caller's pieces are also transcribed together (join_pieces), at the pause as the
    // code alone is: the audio of "Sure." then the audio of the code (each with its pre-roll).
    // The agent is asked with that transcript beside the pieces' own.
    let cfg = CallConfig::default();
    let mut w = World::new(vec![
        "Okay, please go ahead and read me the reservation number when you are ready.",
        "Thanks.",
    ]);
    w.call = Call::new(cfg);
    w.transcripts = vec!["Sure.", "A B C one two three."];
    w.wholes = vec!["Sure, ABC123."];
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(500), -20.0, 7));
    w.play(&silence(ms(550)));
    w.play(&speech_like(ms(1500), -20.0, 8));
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked", "whole"]);
    assert_eq!(
        asked,
        [
            "1860 agent asked: Sure.",
            "3780 transcribed whole 3: Sure, ABC123.",
            "3920 agent asked: A B C one two three. (going on from 1: Sure.) [whole: Sure, ABC123.]"
        ],
        "\n{t}"
    );
    // Exactly the two utterances transcribed alone, one after the other.
    let [first, second] = w.alone_lens[..] else {
        panic!("{:?}\n{t}", w.alone_lens)
    };
    assert_eq!(w.whole_lens, [first + second], "\n{t}");

    // An empty whole transcript (whisper heard nothing in it, or it failed) leaves the pieces'
    // own words, as without it.
    let w = sure_then_code(CallConfig::default(), 550, "A B C one two three.");
    assert_eq!(w.whole_lens.len(), 1);
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(
        asked[1],
        "3920 agent asked: A B C one two three. (going on from 1: Sure.)"
    );

    // join_pieces = false: nothing is transcribed together.
    let off = CallConfig {
        join_pieces: false,
        ..CallConfig::default()
    };
    let w = sure_then_code(off, 550, "A B C one two three.");
    assert!(w.whole_lens.is_empty());
    assert_eq!(w.alone_lens.len(), 2);
}

/// The caller says "Sure." (transcribed at once and answered), then the recogniser turns slow
/// (results held until given) and the caller, 150 ms later, goes on.
fn sure_then_slow_asr() -> World {
    let mut w = World::new(vec![
        "Okay, please go ahead and read me the reservation number when you are ready.",
        "Thanks.",
    ]);
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(500), -20.0, 7));
    w.play(&silence(ms(400)));
    w.hold_asr = true;
    w.answer(1, "Sure.");
    w.play(&silence(ms(150)));
    w
}

#[test]
fn a_request_that_goes_on_waits_for_the_pieces_heard_together() {
    // Slow transcription: the code's own transcript is in before the whole one; the agent is
    // asked only when the whole transcript arrives.
    let mut w = sure_then_slow_asr();
    w.play(&speech_like(ms(1500), -20.0, 8));
    w.play(&silence(ms(2000)));
    let turn = w.call.turn();
    w.answer(turn, "A B C one two three.");
    let t = w.timeline.join("\n");
    assert_eq!(timeline_with(&w, &["asked"]).len(), 1, "\n{t}");
    assert!(t.contains(&format!("transcribing whole {turn}")), "\n{t}");
    w.answer_whole(turn, "Sure, ABC123.");
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(asked.len(), 2, "\n{t}");
    assert!(
        asked[1].ends_with(
            "agent asked: A B C one two three. (going on from 1: Sure.) [whole: Sure, ABC123.]"
        ),
        "\n{t}"
    );
    // A whole transcript that comes after the turn moved on is stale: nothing more is asked.
    w.answer_whole(turn - 1, "stale");
    assert_eq!(timeline_with(&w, &["asked"]).len(), 2);
}

#[test]
fn pieces_go_on_together_while_a_request_waits_for_its_whole_transcript() {
    // The caller goes on a second time while the second piece waits for the transcript of the
    // first two together: the third goes on with both pieces, and is heard with all three.
    let mut w = sure_then_slow_asr();
    w.play(&speech_like(ms(700), -20.0, 8));
    w.play(&silence(ms(1000)));
    let second = w.call.turn();
    w.answer(second, "A B C.");
    // The second piece's request is waiting; the caller speaks again.
    w.play(&speech_like(ms(700), -20.0, 9));
    w.play(&silence(ms(1000)));
    let third = w.call.turn();
    assert!(third > second);
    w.answer_whole(second, "Sure, ABC.");
    w.answer(third, "One two three.");
    w.answer_whole(third, "Sure, ABC123.");
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(asked.len(), 2, "\n{t}");
    assert!(
        asked[1].ends_with(
            "agent asked: One two three. (going on from 1: Sure. A B C.) [whole: Sure, ABC123.]"
        ),
        "\n{t}"
    );
    let [a, b, c] = w.alone_lens[..] else {
        panic!("{:?}\n{t}", w.alone_lens)
    };
    assert_eq!(w.whole_lens, [a + b, a + b + c], "\n{t}");
}

#[test]
fn a_caller_who_speaks_once_the_answer_has_played_a_while_stands_alone() {
    // The same caller, but they go on 1.3 s into the answer (past `continue_ms`): they heard
    // it, and what they say now is their reply to it (the barge-in keeps what they heard).
    let w = sure_then_code(CallConfig::default(), 1650, "No, wait.");
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(asked.len(), 2, "\n{t}");
    assert!(asked[1].ends_with("agent asked: No, wait."), "\n{t}");
    assert!(!t.contains("goes on"), "\n{t}");
    assert_eq!(w.interrupted.len(), 1, "\n{t}");
    assert!(!w.interrupted[0].is_empty(), "\n{t}");
}

#[test]
fn words_the_caller_goes_on_with_chain_until_an_answer_is_heard() {
    // "Sure." … "A B C" … "one two three.": each piece goes on before the answer is heard, so
    // the last is asked with everything since the caller last heard an answer.
    let mut w = World::new(vec![
        "Okay, please go ahead and read me the reservation number when you are ready.",
        "Okay, please go ahead and read me the rest of the number when you are ready.",
        "Thanks.",
    ]);
    w.transcripts = vec!["Sure.", "A B C.", "One two three."];
    w.play(&silence(ms(1000)));
    for seed in [7, 8, 9] {
        w.play(&speech_like(ms(700), -20.0, seed));
        w.play(&silence(ms(550)));
    }
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    let asked: Vec<_> = w
        .timeline
        .iter()
        .filter_map(|l| l.split_once("agent asked: ").map(|(_, a)| a))
        .collect();
    assert_eq!(
        asked,
        [
            "Sure.",
            "A B C. (going on from 1: Sure.)",
            "One two three. (going on from 1: Sure. A B C.)"
        ],
        "\n{t}"
    );
    // Then the answer plays to its end: what comes after it stands alone.
    w.transcripts = vec!["Thank you."];
    w.play(&speech_like(ms(700), -20.0, 10));
    w.play(&silence(ms(2000)));
    let last = w
        .timeline
        .iter()
        .rev()
        .find(|l| l.contains("asked"))
        .unwrap();
    assert!(last.ends_with("agent asked: Thank you."), "{last}");
}

#[test]
fn a_sound_without_words_after_the_callers_words_asks_them_again() {
    // The caller's "Sure." is answered, then a sound whisper finds no words in starts before
    // the answer is heard: it cancels that answer, so the words are asked again (the agent
    // takes its unheard answer back and answers anew) instead of leaving the caller in silence.
    let w = sure_then_code(CallConfig::default(), 550, "");
    let t = w.timeline.join("\n");
    let asked = timeline_with(&w, &["asked"]);
    assert_eq!(
        asked,
        [
            "1860 agent asked: Sure.",
            "4180 agent asked:  (going on from 1: Sure.)"
        ],
        "\n{t}"
    );
    assert!(t.contains("transcript 3 dropped"), "\n{t}");
    assert!(t.contains("bot reply 3: Thanks."), "\n{t}");
}

#[test]
fn keys_stand_alone_and_what_follows_them_too() {
    // "Sure." is answered, the caller presses keys before hearing it, then speaks: neither the
    // keys nor the speech after them goes on with "Sure.".
    let mut w = World::new(vec![
        "Okay, please go ahead and read me the reservation number when you are ready.",
        "Okay, please go ahead and read me the reservation number when you are ready.",
        "Thanks.",
    ]);
    w.transcripts = vec!["Sure.", "A B C one two three."];
    w.play(&silence(ms(1000)));
    w.play(&speech_like(ms(500), -20.0, 7));
    w.play(&silence(ms(400)));
    for d in ['1', '2', '#'] {
        w.call.handle(w.now, Input::Dtmf(d));
        w.drain();
    }
    w.play(&silence(ms(100)));
    w.play(&speech_like(ms(1500), -20.0, 8));
    w.play(&silence(ms(2000)));
    let t = w.timeline.join("\n");
    assert!(!t.contains("going on"), "\n{t}");
    assert!(t.contains("agent asked: keys 12"), "\n{t}");
}
