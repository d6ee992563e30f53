//! Callers the project never heard, as a measurement: a corpus of caller utterances
//! (`audio-fixtures/callers/utterances.tsv`: what was said, by which synthetic voice, at what
//! tempo, pitch and line noise, in which conversation, meaning which intent and slot values),
//! their transcripts by the project's own ASR (`tests/data/callers.tsv`: plain, and with the
//! initial prompt the engine sets for that point of the conversation), and the score of the
//! conversation engine on them: intent accuracy, slot accuracy (the intended record acted on,
//! every said value taken) and actions taken on a wrong record. A fifth of the corpus is held out
//! and never tuned on; scores are reported for both splits.
//!
//! `switchboard corpus transcribe` makes the transcripts from generated audio
//! (`audio-fixtures/callers/generate.sh`); `switchboard corpus score` and the integration test
//! `corpus` score them.

use crate::agent::engine::{Engine, EngineError};
use crate::agent::master::{Pending, Turn, TurnStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One caller utterance of the corpus.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub id: String,
    /// `dev` or `heldout`.
    pub split: String,
    pub template: String,
    pub caller: String,
    /// What the caller said earlier in the call (text), before this utterance.
    pub context: Vec<String>,
    pub text: String,
    pub intent: String,
    /// Expected slot values (see the spec's header).
    pub slots: BTreeMap<String, String>,
    pub voice: String,
}

fn split_tsv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Reads the corpus spec (tab-separated, with a header).
pub fn load_spec(path: &Path) -> Result<Vec<Utterance>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = split_tsv(&text);
    let Some((head, body)) = rows.split_first() else {
        return Err(format!("{}: empty", path.display()));
    };
    let col = |name: &str| {
        head.iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{}: no column {name}", path.display()))
    };
    let (id, split, template, caller, context, said, intent, slots, voice) = (
        col("id")?,
        col("split")?,
        col("template")?,
        col("caller")?,
        col("context")?,
        col("text")?,
        col("intent")?,
        col("slots")?,
        col("voice")?,
    );
    body.iter()
        .enumerate()
        .map(|(i, r)| {
            let get = |k: usize| {
                r.get(k)
                    .cloned()
                    .ok_or_else(|| format!("{} line {}: too few columns", path.display(), i + 2))
            };
            Ok(Utterance {
                id: get(id)?,
                split: get(split)?,
                template: get(template)?,
                caller: get(caller)?,
                context: get(context)?
                    .split(" | ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                text: get(said)?,
                intent: get(intent)?,
                slots: get(slots)?
                    .split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect(),
                voice: get(voice)?,
            })
        })
        .collect()
}

/// What the ASR wrote for one utterance.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub plain: String,
    pub prompted: String,
    pub prompt: String,
    /// The utterance through the call core on a virtual clock (`testkit::turn_path`, with
    /// the shipped config's turn-taking and prompt setting): what the agent was asked, in order
    /// (more than one when the turn was split at a pause; none when it was never a turn).
    /// `None` in a file without the column.
    pub live: Option<Vec<String>>,
}

/// Between the requests of the `live` column.
const LIVE_SEP: &str = " | ";
/// Before a request of the `live` column that goes on with the words before it.
pub const GOES_ON: &str = "+ ";
/// In such a request, before the transcript of all its pieces' audio heard together.
pub const WHOLE: &str = " // ";

/// A request of the `live` column that goes on with the words before it: `+ words`, or
/// `+ words // whole` when the pieces were also heard together.
pub fn goes_on(words: &str, whole: Option<&str>) -> String {
    match whole {
        Some(w) => format!("{GOES_ON}{words}{WHOLE}{w}"),
        None => format!("{GOES_ON}{words}"),
    }
}

/// Reads `tests/data/callers.tsv`: id, plain, prompted, prompt, live.
pub fn load_transcripts(path: &Path) -> Result<BTreeMap<String, Transcript>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(split_tsv(&text)
        .into_iter()
        .skip(1)
        .filter(|r| r.len() >= 3)
        .map(|r| {
            (
                r[0].clone(),
                Transcript {
                    plain: r[1].clone(),
                    prompted: r[2].clone(),
                    prompt: r.get(3).cloned().unwrap_or_default(),
                    live: r.get(4).map(|l| {
                        l.split(LIVE_SEP)
                            .map(str::trim)
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect()
                    }),
                },
            )
        })
        .collect())
}

/// Writes the transcripts file (tabs and newlines inside a transcript become spaces).
pub fn write_transcripts(path: &Path, t: &BTreeMap<String, Transcript>) -> std::io::Result<()> {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let live = t.values().any(|x| x.live.is_some());
    let mut out = String::from("id\tplain\tprompted\tprompt");
    out.push_str(if live { "\tlive\n" } else { "\n" });
    for (id, x) in t {
        let _ = write!(
            out,
            "{id}\t{}\t{}\t{}",
            clean(&x.plain),
            clean(&x.prompted),
            clean(&x.prompt)
        );
        if live {
            let requests: Vec<String> = x
                .live
                .iter()
                .flatten()
                .map(|r| clean(r).replace('|', " "))
                .collect();
            let _ = write!(out, "\t{}", requests.join(LIVE_SEP));
        }
        out.push('\n');
    }
    std::fs::write(path, out)
}

/// Starts a conversation for `u` and says its context; returns the conversation id and the
/// last turn (whose `asr_prompt` is the prompt for `u`'s words).
pub async fn set_up(engine: &Engine, u: &Utterance) -> Result<(String, Turn), EngineError> {
    let greeting = engine.start(&u.caller, "corpus").await?;
    let id = greeting.conversation_id.clone();
    let mut last = greeting;
    for line in &u.context {
        last = engine.say(&id, line).await?;
    }
    Ok((id, last))
}

/// How the engine did on one utterance.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub intent_ok: bool,
    /// `None` when the utterance carries no slot values.
    pub slots_ok: Option<bool>,
    /// An action (a successful task) on a record other than the intended one.
    pub wrong_record: bool,
    /// A record other than the intended one was read back for confirmation (the caller heard
    /// a booking that was not the one they meant; they declined it).
    pub wrong_readback: bool,
    /// Each model call of the utterance's turn (`[llm] route` / `answer`; none: the turn did
    /// not take the model's path): its role, how long it took (ms), and whether it was used
    /// (else the engine's result stood).
    pub model_calls: Vec<(String, u64, bool)>,
    pub detail: String,
}

/// The code field of a slot map (reservation_number, booking_reference, flight_number, …).
const CODE_FIELDS: &[&str] = &["reservation_number", "booking_reference"];

fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        Value::Object(m) => match (m.get("start"), m.get("end")) {
            (Some(Value::String(a)), Some(Value::String(b))) => format!("{a}..{b}"),
            _ => v.to_string(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn slot_matches(key: &str, got: &str, want: &str) -> bool {
    match key {
        // Keywords the extracted value should contain.
        "service" | "description" => got.to_lowercase().contains(&want.to_lowercase()),
        "full_name" => {
            crate::agent::resolve::name_match(got, want) == crate::agent::resolve::NameMatch::Exact
        }
        "timeframe" => got == want || got.split("..").next() == Some(want),
        _ => got == want,
    }
}

/// A bot turn for the failure report: "[intent status]: reply".
fn said_back(t: &Turn) -> String {
    format!(
        "[{} {}]: {}",
        t.intent.as_deref().unwrap_or("-"),
        t.status.as_str(),
        t.reply
    )
}

/// Says one request of the `live` column: one written `+ words` (or `+ words // whole`) goes
/// on with the words before it, as `Engine::hear_continued`. None: it said nothing new and the
/// answer before it stands.
async fn say_piece(engine: &Engine, id: &str, piece: &str) -> Result<Option<Turn>, EngineError> {
    use crate::agent::master::Heard;
    match piece.strip_prefix(GOES_ON.trim_end()) {
        Some(rest) => {
            let (words, whole) = match rest.split_once(WHOLE.trim()) {
                Some((w, all)) => (w, Some(all.trim())),
                None => (rest, None),
            };
            engine
                .hear_continued(id, Heard::text(words.trim()), whole)
                .await
        }
        None => engine.say(id, piece).await.map(Some),
    }
}

/// Plays `heard` (what the ASR wrote for `u`: one request, or several when the turn was split)
/// into a conversation set up for `u`, as a careful caller would go on: a read-back of the
/// intended record is confirmed, any other is declined (a match heard inexactly, and a change or
/// cancellation before it runs). Nothing heard (the utterance never became a request) fails it.
pub async fn play(engine: &Engine, u: &Utterance, heard: &[&str]) -> Result<Outcome, EngineError> {
    let Some((last_heard, first_heard)) = heard.split_last() else {
        return Ok(Outcome {
            intent_ok: false,
            slots_ok: (!u.slots.is_empty()).then_some(false),
            wrong_record: false,
            wrong_readback: false,
            model_calls: vec![],
            detail: format!("{} [{}] {:?}\n  heard nothing\n", u.id, u.voice, u.text),
        });
    };
    let (id, before) = set_up(engine, u).await?;
    let mut detail = format!(
        "{} [{}] {:?}\n  context: {:?}\n  expected: {} {:?}\n  heard: {heard:?}\n",
        u.id, u.voice, u.text, u.context, u.intent, u.slots
    );
    let _ = writeln!(detail, "  bot before {}", said_back(&before));
    // The first pieces of a split turn are said (and answered) first, as on a call; a piece
    // that goes on with the words before it takes their answer back, as on a call.
    let mut earlier = vec![];
    for piece in first_heard {
        if let Some(t) = say_piece(engine, &id, piece).await? {
            let _ = writeln!(detail, "  bot {}", said_back(&t));
            earlier.push(t);
        }
    }
    let mut turn = match say_piece(engine, &id, last_heard).await? {
        Some(t) => t,
        None => earlier.pop().unwrap_or(before.clone()),
    };
    let model_calls = earlier
        .iter()
        .chain(std::iter::once(&turn))
        .flat_map(|t| t.audit.iter())
        .filter(|(a, _)| a == "model")
        .map(|(_, d)| {
            (
                d["role"].as_str().unwrap_or_default().to_string(),
                d["ms"].as_u64().unwrap_or_default(),
                d.get("fallback").is_none(),
            )
        })
        .collect();
    let _ = writeln!(
        detail,
        "  bot [{} {}{}]: {}",
        turn.intent.as_deref().unwrap_or("-"),
        turn.status.as_str(),
        turn.model
            .map(|m| format!(", model: {m}"))
            .unwrap_or_default(),
        turn.reply
    );
    let intent = turn.intent.clone().unwrap_or_default();
    let want_code = CODE_FIELDS
        .iter()
        .find_map(|k| u.slots.get(*k).map(|v| (*k, v)));
    let mut attempts: Vec<_> = earlier
        .iter()
        .chain(std::iter::once(&turn))
        .flat_map(|t| t.attempts.iter().cloned())
        .collect();
    let mut wrong_readback = false;
    if turn.status == TurnStatus::Confirming {
        let conv = engine.conversation(&id).await?;
        if let Pending::ConfirmMatch { matched, .. } = &conv.pending {
            let right = matched.iter().all(|(k, v)| {
                u.slots
                    .get(k)
                    .is_none_or(|want| slot_matches(k, &param_text(v), want))
            });
            wrong_readback = !right;
            let answer = if right { "Yes, that's right." } else { "No." };
            turn = engine.say(&id, answer).await?;
            let _ = writeln!(
                detail,
                "  caller: {answer}\n  bot [{}]: {}",
                turn.status.as_str(),
                turn.reply
            );
            attempts.extend(turn.attempts.clone());
        }
    }
    // A change or a cancellation is read back before it runs: a careful caller agrees when it
    // names the intended record, and says no otherwise.
    if turn.status == TurnStatus::NeedsInfo {
        let conv = engine.conversation(&id).await?;
        if let Pending::Slots {
            fields, params: p, ..
        } = &conv.pending
            && fields.len() == 1
            && crate::config::FieldType::parse(&fields[0].field_type)
                == crate::config::FieldType::Confirm
        {
            let right = CODE_FIELDS
                .iter()
                .all(|k| match (u.slots.get(*k), p.get(*k)) {
                    (Some(want), Some(v)) => slot_matches(k, &param_text(v), want),
                    (Some(_), None) => false,
                    (None, _) => true,
                });
            let answer = if right { "Yes, go ahead." } else { "No." };
            turn = engine.say(&id, answer).await?;
            let _ = writeln!(
                detail,
                "  caller: {answer}\n  bot [{}]: {}",
                turn.status.as_str(),
                turn.reply
            );
            attempts.extend(turn.attempts.clone());
        }
    }
    let mut params = attempts
        .last()
        .map(|a| a.parameters.clone())
        .unwrap_or(Value::Null);
    // What the agent made of a free-text request ("a club sandwich" → room service) is in its
    // answer.
    if let (Some(Value::Object(data)), Value::Object(p)) = (
        attempts
            .last()
            .and_then(|a| a.output.as_ref())
            .map(|o| o.data.clone()),
        &mut params,
    ) {
        if let Some(service) = data.get("service") {
            p.insert("service".into(), service.clone());
        }
        // The flight the agent found for a number heard inexactly.
        if let Some(n) = data.get("flight").and_then(|f| f.get("number")) {
            p.insert("flight_number".into(), n.clone());
        }
    }
    // Only values the intended task takes can be asked of it.
    let fields: Vec<String> = engine
        .template
        .tasks
        .get(&u.intent)
        .map(|t| {
            t.required
                .iter()
                .chain(&t.optional)
                .map(|f| f.field.clone())
                .collect()
        })
        .unwrap_or_default();
    let expected: BTreeMap<&String, &String> =
        u.slots.iter().filter(|(k, _)| fields.contains(k)).collect();
    let succeeded = turn.status == TurnStatus::Success;
    let wrong_record = match want_code {
        Some((k, want)) => attempts.iter().any(|a| {
            a.outcome == "success"
                && a.parameters
                    .get(k)
                    .is_some_and(|v| !slot_matches(k, &param_text(v), want))
        }),
        None => false,
    };
    let slots_ok = (!expected.is_empty()).then(|| {
        let values = expected.iter().all(|(k, want)| {
            slot_matches(k, &param_text(params.get(k).unwrap_or(&Value::Null)), want)
        });
        // A code with a name must reach the record itself, not just be heard.
        let resolved = want_code.is_none() || !u.slots.contains_key("full_name") || succeeded;
        values && resolved && !wrong_record
    });
    if slots_ok == Some(false) {
        let _ = writeln!(detail, "  params: {params}");
    }
    if wrong_record {
        let _ = writeln!(detail, "  ACTED ON A WRONG RECORD");
    }
    Ok(Outcome {
        intent_ok: intent == u.intent,
        slots_ok,
        wrong_record,
        wrong_readback,
        model_calls,
        detail,
    })
}

/// Totals for a set of utterances.
#[derive(Debug, Clone, Default)]
pub struct Score {
    pub n: usize,
    pub intent_ok: usize,
    pub slot_n: usize,
    pub slot_ok: usize,
    pub wrong_record: usize,
    pub wrong_readback: usize,
    /// Turns on the language model's path.
    pub model: usize,
    /// Model calls by role: (ms, used).
    pub model_calls: BTreeMap<String, Vec<(u64, bool)>>,
}

impl Score {
    pub fn add(&mut self, o: &Outcome) {
        self.n += 1;
        self.intent_ok += usize::from(o.intent_ok);
        if let Some(ok) = o.slots_ok {
            self.slot_n += 1;
            self.slot_ok += usize::from(ok);
        }
        self.wrong_record += usize::from(o.wrong_record);
        self.wrong_readback += usize::from(o.wrong_readback);
        self.model += usize::from(!o.model_calls.is_empty());
        for (role, ms, used) in &o.model_calls {
            self.model_calls
                .entry(role.clone())
                .or_default()
                .push((*ms, *used));
        }
    }

    /// Per model role: calls, how many were used, and their time (p50, max).
    pub fn model_line(&self) -> Option<String> {
        if self.model_calls.is_empty() {
            return None;
        }
        let mut out = String::from("model calls:");
        for (role, calls) in &self.model_calls {
            let mut ms: Vec<u64> = calls.iter().map(|c| c.0).collect();
            ms.sort_unstable();
            let used = calls.iter().filter(|c| c.1).count();
            let _ = write!(
                out,
                " {role} {} (used {used}), p50 {} ms, max {} ms;",
                calls.len(),
                ms[ms.len() / 2],
                ms[ms.len() - 1]
            );
        }
        Some(out)
    }

    pub fn intent_accuracy(&self) -> f64 {
        self.intent_ok as f64 / self.n.max(1) as f64
    }

    pub fn slot_accuracy(&self) -> f64 {
        self.slot_ok as f64 / self.slot_n.max(1) as f64
    }

    pub fn line(&self) -> String {
        format!(
            "intent {}/{} = {:.1} %, slots {}/{} = {:.1} %, actions on a wrong record {}, \
             wrong records read back {}, on the model's path {}",
            self.intent_ok,
            self.n,
            100.0 * self.intent_accuracy(),
            self.slot_ok,
            self.slot_n,
            100.0 * self.slot_accuracy(),
            self.wrong_record,
            self.wrong_readback,
            self.model
        )
    }
}

/// Which transcript of an utterance is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// What the caller said, as written (an upper bound: a perfect recogniser).
    Text,
    /// whisper without a prompt (the live path by default).
    Plain,
    /// whisper with the engine's prompt (`[speech.asr] prompt = true`).
    Prompted,
    /// Through the call core's turn-taking, as a call hears it (the `live` column).
    Live,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Text => "spoken text",
            Variant::Plain => "ASR, no prompt",
            Variant::Prompted => "ASR, prompted",
            Variant::Live => "live turn path",
        }
    }

    /// The name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Text => "text",
            Variant::Plain => "plain",
            Variant::Prompted => "prompted",
            Variant::Live => "live",
        }
    }

    /// What the engine hears of `u` in this variant (`None`: not in the transcripts).
    pub fn pick<'a>(self, u: &'a Utterance, t: Option<&'a Transcript>) -> Option<Vec<&'a str>> {
        match self {
            Variant::Text => Some(vec![u.text.as_str()]),
            Variant::Plain => t.map(|t| vec![t.plain.as_str()]),
            Variant::Prompted => t.map(|t| vec![t.prompted.as_str()]),
            Variant::Live => t
                .and_then(|t| t.live.as_ref())
                .map(|l| l.iter().map(String::as_str).collect()),
        }
    }

    pub const ALL: [Variant; 4] = [
        Variant::Text,
        Variant::Plain,
        Variant::Prompted,
        Variant::Live,
    ];
}
