//! Callers the project never heard: 172 utterances in natural phrasings, spoken by seven
//! synthetic voices that are not the bot's (flite kal, slt, rms, awb; Festival slt-hts, kal, ked)
//! at other tempos and pitches, a third over a noisy line, through 8 kHz mu-law, transcribed by
//! the project's own whisper (`tests/data/callers.tsv`, made by `switchboard corpus transcribe`
//! from `audio-fixtures/callers/generate.sh`'s audio). The engine is scored on what the caller
//! said (a perfect recogniser), on whisper's plain transcript (the live path by default) and on
//! its transcript with the prompt the engine sets at that point of the call (`[speech.asr]
//! prompt = true`). A fifth is held out: never tuned on, reported beside the rest.

use crate::common::{Setup, engine};
use std::collections::BTreeMap;
use std::path::Path;
use switchboard::agent::engine::Engine;
use switchboard::corpus::{self, Score, Variant};

fn root(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_never_heard_are_understood() {
    let spec = corpus::load_spec(&root("audio-fixtures/callers/utterances.tsv")).unwrap();
    let ts = corpus::load_transcripts(&root("tests/data/callers.tsv")).unwrap();
    assert!(spec.len() >= 150, "{} utterances", spec.len());
    let voices: std::collections::BTreeSet<&str> = spec.iter().map(|u| u.voice.as_str()).collect();
    assert!(voices.len() >= 5, "{voices:?}");
    let held = spec.iter().filter(|u| u.split == "heldout").count();
    assert!(
        held * 5 >= spec.len() - 5,
        "{held} held out of {}",
        spec.len()
    );
    let mut engines: BTreeMap<String, Engine> = BTreeMap::new();
    for t in ["hospitality", "travel"] {
        engines.insert(
            t.to_string(),
            engine(Setup {
                template: t,
                ..Setup::default()
            }),
        );
    }
    // The transcripts were made with the prompts the engine sets now; a change to the prompt
    // needs `switchboard corpus transcribe` again.
    for u in &spec {
        let t = ts
            .get(&u.id)
            .unwrap_or_else(|| panic!("{}: no transcript", u.id));
        let (_, last) = corpus::set_up(&engines[&u.template], u).await.unwrap();
        assert_eq!(
            last.asr_prompt, t.prompt,
            "{}: the prompt changed since the transcripts were made; run `switchboard corpus transcribe`",
            u.id
        );
    }
    let mut report = String::new();
    let mut scores: BTreeMap<(&str, &str), Score> = BTreeMap::new();
    for variant in Variant::ALL {
        for split in ["dev", "heldout"] {
            let mut score = Score::default();
            for u in spec.iter().filter(|u| u.split == split) {
                let heard = variant.pick(u, ts.get(&u.id)).unwrap();
                let o = corpus::play(&engines[&u.template], u, &heard)
                    .await
                    .unwrap();
                if o.wrong_record {
                    report.push_str(&o.detail);
                }
                score.add(&o);
            }
            report.push_str(&format!(
                "{:15} {split:7} {}\n",
                variant.name(),
                score.line()
            ));
            scores.insert((variant.key(), split), score);
        }
    }
    println!("{report}");
    for s in scores.values() {
        assert_eq!(s.wrong_record, 0, "an action on a wrong record:\n{report}");
        // A code heard badly is read back with the record only when the caller's name carries
        // it: never someone else's booking.
        assert_eq!(s.wrong_readback, 0, "a wrong record read back:\n{report}");
    }
    // What the engine does with the caller's words (targets: 95 %).
    let text = &scores[&("text", "dev")];
    assert!(
        text.intent_accuracy() >= 0.95 && text.slot_accuracy() >= 0.95,
        "{report}"
    );
    let text = &scores[&("text", "heldout")];
    assert!(
        text.intent_accuracy() >= 0.90 && text.slot_accuracy() >= 0.85,
        "{report}"
    );
    // Through whisper tiny.en on these voices: guards at the figures measured, far from the
    // 95 % target — most misses are words whisper did not hear ("This video is 117 on time
    // today" for "Is B A one seventeen on time today?"). The live path by default (no prompt):
    // dev 84.8 % intent, 58.1 % slots; held out 79.4 %, 59.3 % (before the resolver weighed the
    // name and the code together: 48.6 % and 51.9 % slots).
    let live = &scores[&("plain", "dev")];
    assert!(
        live.intent_accuracy() >= 0.82 && live.slot_accuracy() >= 0.55,
        "{report}"
    );
    let live = &scores[&("plain", "heldout")];
    assert!(
        live.intent_accuracy() >= 0.75 && live.slot_accuracy() >= 0.55,
        "{report}"
    );
    // With the engine's prompt: dev 89.1 %, 60.0 %; held out 85.3 %, 55.6 %.
    let prompted = &scores[&("prompted", "dev")];
    assert!(
        prompted.intent_accuracy() >= 0.86 && prompted.slot_accuracy() >= 0.57,
        "{report}"
    );
    let prompted = &scores[&("prompted", "heldout")];
    assert!(
        prompted.intent_accuracy() >= 0.80 && prompted.slot_accuracy() >= 0.51,
        "{report}"
    );
    // Through the call core's turn-taking (`testkit::turn_path`, the live column, the bot
    // answering each request): dev 81.9 %, 49.5 %; held out 82.4 %, 40.7 %. 47 of 172 turns
    // are asked in pieces, 45 of them whole in the end (the caller went on before hearing the
    // answer), their pieces' audio transcribed together (`call.join_pieces`; without it, in the
    // same hour: dev 79.7 %, 47.6 %, held out the same). Still below the whole clip's slots.
    let live = &scores[&("live", "dev")];
    assert!(
        live.intent_accuracy() >= 0.79 && live.slot_accuracy() >= 0.47,
        "{report}"
    );
    let live = &scores[&("live", "heldout")];
    assert!(
        live.intent_accuracy() >= 0.79 && live.slot_accuracy() >= 0.37,
        "{report}"
    );
}
