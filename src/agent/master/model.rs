//! The language model on a turn's path (`[llm] route` and `answer`, issue 16). It is asked only
//! when the deterministic engine is not confident — never on a turn the router decided — and
//! always within the turn's budget, with the engine's own result as the fallback when it is slow,
//! down or answers something invalid. The master still owns every word said:
//!
//! - **Routing and slot extraction** (`route`): the router was unsure or found the words out of
//!   scope. The model answers JSON of a schema built from the template (the intents it may name,
//!   the fields it may fill, their validation patterns), checked like any sub-agent's output; each
//!   value is then read by the same extractor as the caller's own words and kept only when the
//!   caller said it (a code's characters in order, a name's words).
//! - **Answers from the template's facts, and small talk** (`answer`): out of scope, or chatting.
//!   The model's text is streamed and spoken clause by clause; each clause passes the output
//!   filter first ([`Filter`]: no card number, no number or code the facts do not hold — the model
//!   knows no records, so any it gives is invented). A filler is said only when the first clause
//!   is not ready within `filler_ms`.
//!
//! Everything the model says is logged as its own (`llm` → `master` in the central log, then the
//! master's words to the caller), and the turn is marked as on the model's path for the metrics.

use super::state::TurnStatus;
use super::{Ctx, END_CALL, Master};
use crate::agent::master::extract::{self, Field, Names};
use crate::config::{FAQ_PREFIX, FieldSpec, FieldType, MASTER_AGENT, Template};
use crate::llm::{Llm, LlmError, Message, take_clause};
use crate::store::{LogMetadata, LogType};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The model's name in the central log and the audit trail.
pub const LLM_ACTOR: &str = "llm";
/// The model's intent for chatting ("how are you?", "you're very kind").
pub const SMALL_TALK: &str = "small_talk";
/// The model's intent for "nothing this line does".
const NONE_OF_THEM: &str = "out_of_scope";
/// A clause is cut at a comma once it has this many words.
const CLAUSE_WORDS: usize = 4;
/// The longest answer the model may give, in clauses.
const MAX_CLAUSES: usize = 4;

/// Where the clauses of a streamed answer go as they are ready (the call's speech): each is
/// spoken while the next is being written. The turn's reply still carries the whole answer.
pub type ClauseSink = mpsc::Sender<String>;

/// The model as the master uses it on a turn's path.
pub struct TurnModel {
    /// The template's model, with the turn budget.
    pub llm: Arc<Llm>,
    /// Agents whose model tier differs from the template's: they extract their tasks' values.
    pub tiers: BTreeMap<String, Arc<Llm>>,
    pub route: bool,
    pub answer: bool,
    pub filler: String,
    pub filler_ms: u64,
    /// Built once from the template: the routing request's schema and instructions, and the
    /// filter for what the model says.
    route_schema: Value,
    route_prompt: String,
    answer_prompt: String,
    filter: Filter,
}

impl TurnModel {
    /// The model for `template`'s turns, from the gateway's client (`llm`) and the template's
    /// choices over it; None when neither role is on.
    pub fn for_template(llm: &Llm, template: &Template) -> Option<TurnModel> {
        let s = llm.settings();
        let t = &template.llm;
        let route = t.route.unwrap_or(s.route);
        let answer = t.answer.unwrap_or(s.answer);
        if !route && !answer {
            return None;
        }
        let main = llm.for_turns().tier(t.model.as_deref(), t.temperature);
        let tiers = template
            .agents
            .iter()
            .filter_map(|a| {
                let m = a.model.as_deref().filter(|m| *m != main.model())?;
                Some((a.id.clone(), Arc::new(main.tier(Some(m), None))))
            })
            .collect();
        // What the model may say: the FAQ answers, the template's `[llm] facts`, the capabilities.
        let mut facts: Vec<String> = template.faq.iter().map(|f| f.answer.clone()).collect();
        facts.extend(t.facts.iter().cloned());
        facts.push(format!(
            "This line can help with {}.",
            template.capabilities
        ));
        Some(TurnModel {
            llm: Arc::new(main),
            tiers,
            route,
            answer,
            filter: Filter::new(template, &facts),
            filler: s.filler.clone(),
            filler_ms: s.filler_ms,
            route_schema: route_schema(template),
            route_prompt: route_prompt(template, None),
            answer_prompt: answer_prompt(template, &facts),
        })
    }
}

/// Fields the model may fill: codes, names, dates, months and amounts (never a confirmation or a
/// choice, which only the caller's own answer gives).
fn fillable(f: &FieldSpec) -> bool {
    matches!(
        f.field_type,
        FieldType::String
            | FieldType::Name
            | FieldType::Date
            | FieldType::Month
            | FieldType::Amount
    )
}

/// The schema of each fillable field: a string, of its pattern when it has one.
fn model_fields(spec: &[&FieldSpec]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in spec.iter().filter(|f| fillable(f)) {
        let mut s = json!({"type": "string", "maxLength": 80});
        if let (FieldType::String, Some(p)) = (f.field_type, &f.pattern) {
            s["pattern"] = json!(p);
        }
        out.entry(f.field.clone()).or_insert(s);
    }
    out
}

/// Every task's fields.
fn all_fields(template: &Template) -> impl Iterator<Item = &FieldSpec> {
    template
        .tasks
        .values()
        .flat_map(|s| s.required.iter().chain(&s.optional))
}

fn task_fields<'a>(template: &'a Template, task: &str) -> Vec<&'a FieldSpec> {
    template
        .tasks
        .get(task)
        .map(|s| s.required.iter().chain(&s.optional).collect())
        .unwrap_or_default()
}

/// The intents the model may name: the template's tasks but ending the call (a goodbye the
/// engine did not hear is not one the model may hang up on), its FAQ entries, out of scope and
/// small talk.
pub fn intents(template: &Template) -> Vec<String> {
    template
        .tasks
        .keys()
        .filter(|t| *t != END_CALL)
        .cloned()
        .chain(template.faq.iter().map(|f| f.task()))
        .chain([NONE_OF_THEM.to_string(), SMALL_TALK.to_string()])
        .collect()
}

/// The routing answer's schema, built from the template: the intent is one of [`intents`], and
/// `fields` holds the values the caller said, each a string of its field's pattern.
pub fn route_schema(template: &Template) -> Value {
    let all: Vec<&FieldSpec> = all_fields(template).collect();
    fields_schema(intents(template), model_fields(&all))
}

fn fields_schema(intents: Vec<String>, fields: BTreeMap<String, Value>) -> Value {
    json!({
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": intents},
            "fields": {"type": "object", "properties": fields, "additionalProperties": false}
        },
        "required": ["intent", "fields"],
        "additionalProperties": false
    })
}

/// The routing instructions: each intent with what it is for, each field with its description.
fn route_prompt(template: &Template, only: Option<&str>) -> String {
    let mut p = format!(
        "You route the calls of a {} phone line. Read what the caller said and answer JSON: \
         `intent`, the one that fits best, and `fields`, the values the caller said (leave out \
         any they did not say; never make one up).\nIntents:\n",
        template.name
    );
    for t in intents(template) {
        if only.is_some_and(|o| o != t) {
            continue;
        }
        let what = if let Some(spec) = template.tasks.get(&t) {
            format!("to {} ({})", spec.phrase, spec.topic)
        } else if let Some(id) = t.strip_prefix(FAQ_PREFIX) {
            format!("a question about {}", id.replace('_', " "))
        } else if t == SMALL_TALK {
            "greetings, thanks, chit-chat, how are you".into()
        } else {
            "anything else: what this line does not do".into()
        };
        p.push_str(&format!("- {t}: {what}\n"));
    }
    p.push_str("Fields:\n");
    let fields: Vec<&FieldSpec> = match only {
        Some(task) => task_fields(template, task),
        None => all_fields(template).collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for f in fields {
        if !fillable(f) || !seen.insert(&f.field) {
            continue;
        }
        let example = f
            .example
            .as_deref()
            .map(|e| format!(", like {e}"))
            .unwrap_or_default();
        p.push_str(&format!("- {}: {}{example}\n", f.field, f.description));
    }
    p
}

/// The answering instructions: the template's tone and the facts the model may use.
fn answer_prompt(template: &Template, facts: &[String]) -> String {
    let mut p = format!(
        "You answer the phone for a {} line, in a {} tone. Reply to the caller in one or two \
         short spoken sentences, using only these facts:\n",
        template.name, template.tone
    );
    for f in facts {
        p.push_str("- ");
        p.push_str(f);
        p.push('\n');
    }
    p.push_str(
        "If the facts do not answer the question, say kindly that you cannot help with that \
         here, and what you can help with. Never make up names, numbers, prices, times or \
         bookings.",
    );
    p
}

/// What the model decided for an unsure turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// A task, with the values the caller said (already read by the extractor).
    Task(String, Map<String, Value>),
    Faq(String),
    OutOfScope,
    SmallTalk,
}

/// Whether the model's `value` is in the caller's words: a code's letters and digits together
/// (spaces and punctuation aside: whisper's "a BC123" holds ABC123), a name's every word; other
/// kinds are read from the words themselves by the extractor.
fn said_by_caller(f: &FieldSpec, value: &str, text: &str) -> bool {
    let alnum = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    match f.field_type {
        FieldType::String => {
            let want = alnum(value);
            !want.is_empty() && alnum(text).contains(&want)
        }
        FieldType::Name => {
            let words: Vec<String> = text
                .split(|c: char| !c.is_alphanumeric() && c != '\'')
                .map(str::to_lowercase)
                .collect();
            let mut parts = value.split_whitespace().peekable();
            parts.peek().is_some() && parts.all(|p| words.contains(&p.to_lowercase()))
        }
        _ => true,
    }
}

/// The model's values for `task`'s fields, each read by the extractor like the caller's words,
/// and kept only when the caller said it.
pub fn read_fields(
    template: &Template,
    task: &str,
    fields: &Map<String, Value>,
    text: &str,
    today: chrono::NaiveDate,
) -> Map<String, Value> {
    let mut out = Map::new();
    for f in task_fields(template, task) {
        let Some(v) = fields.get(&f.field).and_then(Value::as_str) else {
            continue;
        };
        if !fillable(f) || !said_by_caller(f, v, text) {
            continue;
        }
        let mut got = Map::new();
        if extract::extract_into(&Field::of_spec(f), v, today, Names::Bare, &mut got)
            && got
                .get(&f.field)
                .and_then(Value::as_str)
                .is_none_or(|s| f.accepts(s))
        {
            out.extend(got);
        }
    }
    out
}

/// The output filter for the model's words: what the caller may hear.
pub struct Filter {
    /// Every number the facts hold (digits only).
    numbers: Vec<String>,
    /// The template's code fields: a code of one of these shapes is a record.
    codes: Vec<regex::Regex>,
}

impl Filter {
    pub fn new(template: &Template, facts: &[String]) -> Filter {
        let numbers = facts.iter().flat_map(|f| numbers_in(f)).collect();
        let codes = all_fields(template)
            .filter(|f| f.field_type == FieldType::String)
            .filter_map(|f| f.regex.clone())
            .collect();
        Filter { numbers, codes }
    }

    /// Why `clause` may not be said, if it may not.
    pub fn refuse(&self, clause: &str) -> Option<&'static str> {
        if crate::redact::redact(clause) != clause {
            return Some("a card number");
        }
        if numbers_in(clause).iter().any(|n| !self.numbers.contains(n)) {
            return Some("a number the facts do not hold");
        }
        // Letters and digits together (a bare number was checked above).
        let code = clause
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| {
                w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(|c| c.is_ascii_alphabetic())
            })
            .any(|w| {
                self.codes
                    .iter()
                    .any(|re| re.is_match(&w.to_ascii_uppercase()))
            });
        if code {
            return Some("a record's code");
        }
        None
    }
}

/// The digit runs of `s` ("6:30" is 6 and 30; "1,200" is 1200).
fn numbers_in(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let b: Vec<char> = s.chars().collect();
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            cur.push(c);
        } else if c == ',' && !cur.is_empty() && b.get(i + 1).is_some_and(char::is_ascii_digit) {
            continue;
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Master {
    /// The time a model call on this turn may take: its budget, within the turn's.
    fn model_budget(&self, cx: &Ctx<'_>, llm: &Llm) -> Duration {
        let own = Duration::from_millis(llm.settings().timeout_ms);
        own.min(cx.deadline.saturating_duration_since(Instant::now()))
    }

    /// A JSON answer of `schema`'s shape from `llm` within this turn's budget, and its time (ms).
    async fn ask_json(
        &self,
        cx: &Ctx<'_>,
        llm: &Llm,
        messages: &[Message],
        name: &str,
        schema: &Value,
    ) -> (Result<Value, LlmError>, u64) {
        let started = std::time::Instant::now();
        let budget = self.model_budget(cx, llm);
        let answer = tokio::time::timeout(budget, llm.chat_json(messages, name, schema))
            .await
            .unwrap_or(Err(LlmError::Timeout(budget.as_millis() as u64)));
        (answer, started.elapsed().as_millis() as u64)
    }

    /// Logs the model's output (or its failure) and audits it.
    fn log_model(&self, cx: &mut Ctx<'_>, role: &str, out: Result<&str, &LlmError>, ms: u64) {
        let (message, success, error) = match out {
            Ok(text) => (text.to_string(), true, None),
            Err(e) => (String::new(), false, Some(e.reason().to_string())),
        };
        self.log(
            cx,
            LogType::AgentToAgent,
            LLM_ACTOR,
            MASTER_AGENT,
            &message,
            LogMetadata {
                duration: Some(ms as i64),
                success: Some(success),
                error: error.clone(),
                ..LogMetadata::default()
            },
        );
        let mut detail = json!({"role": role, "ms": ms});
        if let Some(e) = error {
            detail["fallback"] = json!(e);
        }
        cx.turn.audit.push(("model".into(), detail));
        cx.turn.model = Some(match (cx.turn.model, role) {
            (Some("route"), "answer") => "route+answer",
            (_, "route") => "route",
            _ => "answer",
        });
    }

    /// Asks the model what an unsure request is; None (the engine decides) when it is off,
    /// slow, down or invalid.
    pub(super) async fn model_route(&self, cx: &mut Ctx<'_>, text: &str) -> Option<Routed> {
        let m = self.model.as_ref().filter(|m| m.route)?;
        let messages = [
            Message::system(m.route_prompt.clone()),
            Message::user(crate::redact::redact(text)),
        ];
        let (answer, ms) = self
            .ask_json(cx, &m.llm, &messages, "route", &m.route_schema)
            .await;
        let v = match answer {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(error = %e, "the model could not route the turn: the engine decides");
                self.log_model(cx, "route", Err(&e), ms);
                return None;
            }
        };
        self.log_model(cx, "route", Ok(&v.to_string()), ms);
        let intent = v["intent"].as_str().unwrap_or_default().to_string();
        let fields = v["fields"].as_object().cloned().unwrap_or_default();
        Some(match intent.as_str() {
            SMALL_TALK => Routed::SmallTalk,
            NONE_OF_THEM => Routed::OutOfScope,
            t if t.starts_with(FAQ_PREFIX) => Routed::Faq(intent),
            _ => {
                // The task's own agent reads its values when its model tier differs.
                let tier = self
                    .template
                    .agents
                    .iter()
                    .filter(|a| a.tasks.contains(&intent))
                    .find_map(|a| m.tiers.get(&a.id).cloned());
                let fields = match tier {
                    Some(tier) => self
                        .tier_fields(cx, &tier, &intent, text)
                        .await
                        .unwrap_or(fields),
                    None => fields,
                };
                let today = self.clock.today();
                let read = read_fields(&self.template, &intent, &fields, text, today);
                Routed::Task(intent, read)
            }
        })
    }

    /// An agent's own model tier reads the values of its task.
    async fn tier_fields(
        &self,
        cx: &mut Ctx<'_>,
        tier: &Llm,
        task: &str,
        text: &str,
    ) -> Option<Map<String, Value>> {
        let schema = fields_schema(
            vec![task.to_string()],
            model_fields(&task_fields(&self.template, task)),
        );
        let messages = [
            Message::system(route_prompt(&self.template, Some(task))),
            Message::user(crate::redact::redact(text)),
        ];
        let (answer, ms) = self.ask_json(cx, tier, &messages, "fields", &schema).await;
        match answer {
            Ok(v) => {
                self.log_model(cx, "route", Ok(&v.to_string()), ms);
                v["fields"].as_object().cloned()
            }
            Err(e) => {
                self.log_model(cx, "route", Err(&e), ms);
                None
            }
        }
    }

    /// The model answers from the template's facts (or chats), clause by clause through
    /// `clauses` as each passes the filter. Returns whether anything was said; nothing is, and
    /// the engine answers, when the model is off, slow, down, or its first clause is refused.
    pub(super) async fn model_answer(&self, cx: &mut Ctx<'_>, text: &str) -> bool {
        let Some(m) = self.model.as_ref().filter(|m| m.answer) else {
            return false;
        };
        let mut messages = vec![Message::system(m.answer_prompt.clone())];
        if !cx.conv.last_reply.is_empty() {
            messages.push(Message {
                role: "assistant",
                content: cx.conv.last_reply.clone(),
            });
        }
        messages.push(Message::user(crate::redact::redact(text)));
        let started = std::time::Instant::now();
        let budget = self.model_budget(cx, &m.llm);
        // Clauses pass the filter as they come; the first refused one ends the answer. What was
        // said stays said when the budget runs out.
        let (tx, mut rx) = mpsc::channel::<String>(MAX_CLAUSES);
        let stream = async {
            let mut buf = String::new();
            let mut sent = 0;
            let mut push = |c: String| {
                if sent < MAX_CLAUSES {
                    sent += 1;
                    // Never full: it holds more than is ever sent.
                    let _ = tx.try_send(c);
                }
            };
            let r = m
                .llm
                .chat_stream(&messages, |piece| {
                    buf.push_str(piece);
                    while let Some(c) = take_clause(&mut buf, CLAUSE_WORDS) {
                        push(c);
                    }
                })
                .await;
            let rest = buf.trim().to_string();
            if r.is_ok() && !rest.is_empty() {
                push(rest);
            }
            drop(tx);
            r
        };
        // Clauses are spoken as they come only when they begin the turn's reply (the call
        // continues the streamed words with the rest of the reply).
        let sink = cx.clauses.clone().filter(|_| cx.turn.reply.is_empty());
        let mut said: Vec<String> = vec![];
        let mut refused: Option<&'static str> = None;
        let mut filler: Option<String> = None;
        let mut first_ms: Option<u64> = None;
        let collect = async {
            let filler_at = tokio::time::sleep(Duration::from_millis(m.filler_ms));
            tokio::pin!(filler_at);
            loop {
                let next = tokio::select! {
                    c = rx.recv() => c,
                    _ = &mut filler_at, if said.is_empty() && filler.is_none()
                        && !m.filler.is_empty() && sink.is_some() => {
                        // The model's path was taken and nothing is ready yet.
                        if let Some(s) = &sink {
                            let _ = s.send(m.filler.clone()).await;
                        }
                        filler = Some(m.filler.clone());
                        continue;
                    }
                };
                let Some(clause) = next else { break };
                if refused.is_some() {
                    continue;
                }
                if let Some(why) = m.filter.refuse(&clause) {
                    refused = Some(why);
                    continue;
                }
                if let Some(s) = &sink {
                    let _ = s.send(clause.clone()).await;
                }
                first_ms.get_or_insert(started.elapsed().as_millis() as u64);
                said.push(clause);
            }
        };
        let result =
            match tokio::time::timeout(budget, async { tokio::join!(collect, stream).1 }).await {
                Ok(r) => r,
                Err(_) => Err(LlmError::Timeout(budget.as_millis() as u64)),
            };
        let ms = started.elapsed().as_millis() as u64;
        let whole = said.join(" ");
        if said.is_empty() {
            // Nothing may be said: the engine answers (after the filler, if it was said).
            let e = match result {
                Err(e) => e,
                Ok(_) => LlmError::Invalid(refused.unwrap_or("an empty answer").to_string()),
            };
            tracing::info!(error = %e, "the model did not answer: the engine answers");
            self.log_model(cx, "answer", Err(&e), ms);
        } else {
            self.log_model(cx, "answer", Ok(&whole), ms);
            if let Some((_, d)) = cx.turn.audit.last_mut() {
                // When the caller began to hear it.
                d["first_clause_ms"] = json!(first_ms);
            }
            if let Some(why) = refused {
                cx.turn
                    .audit
                    .push(("model_refused".into(), json!({"reason": why})));
            }
        }
        if let Some(f) = filler {
            self.say(cx, &f, None);
        }
        if said.is_empty() {
            return false;
        }
        self.say(cx, &whole, None);
        cx.turn.status = TurnStatus::Answered;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        crate::agent::master::hospitality()
    }

    #[test]
    fn the_route_schema_names_the_template_s_intents_and_fields_with_their_patterns() {
        let t = template();
        let s = route_schema(&t);
        let intents: Vec<&str> = s["properties"]["intent"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(intents.contains(&"confirm_reservation"));
        assert!(intents.contains(&"faq_check_in"));
        assert!(intents.contains(&SMALL_TALK) && intents.contains(&NONE_OF_THEM));
        assert!(!intents.contains(&END_CALL));
        let fields = &s["properties"]["fields"]["properties"];
        assert_eq!(fields["reservation_number"]["pattern"], "^[A-Z0-9]{6}$");
        assert_eq!(fields["full_name"]["type"], "string");
        // Confirmations and choices are the caller's own answers, never the model's.
        assert!(fields.get("confirmed").is_none() && fields.get("account_id").is_none());
        let ok = json!({"intent": "confirm_reservation",
                        "fields": {"reservation_number": "ABC123", "full_name": "John Doe"}});
        crate::llm::validate(&ok, &s).unwrap();
        let bad = json!({"intent": "confirm_reservation", "fields": {"reservation_number": "AB"}});
        assert!(crate::llm::validate(&bad, &s).is_err());
        let prompt = route_prompt(&t, None);
        assert!(prompt.contains("- confirm_reservation: to "), "{prompt}");
        assert!(prompt.contains("- reservation_number: your reservation number, like KTP560"));
    }

    #[test]
    fn the_model_s_values_are_kept_only_when_the_caller_said_them() {
        let t = template();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let said = "um it's about the booking a BC123 for John Doe";
        let fields = json!({"reservation_number": "ABC123", "full_name": "John Doe"});
        let got = read_fields(
            &t,
            "confirm_reservation",
            fields.as_object().unwrap(),
            said,
            today,
        );
        assert_eq!(got["reservation_number"], "ABC123");
        assert_eq!(got["full_name"], "John Doe");
        // Invented: a code and a name the caller never said.
        let invented = json!({"reservation_number": "KTP560", "full_name": "Jane Roe"});
        let got = read_fields(
            &t,
            "confirm_reservation",
            invented.as_object().unwrap(),
            said,
            today,
        );
        assert!(got.is_empty(), "{got:?}");
        // A code's characters scattered through the words are not the code.
        let scattered = json!({"reservation_number": "ABC123"});
        let got = read_fields(
            &t,
            "confirm_reservation",
            scattered.as_object().unwrap(),
            "a room at the back, quiet, with 1 bed for 2 or 3 nights",
            today,
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn the_filter_refuses_card_numbers_invented_numbers_and_codes() {
        let t = template();
        let llm = Llm::from_config(&crate::llm::LlmConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        // The filter the model's answers meet: built with the turn model from the template.
        let m = TurnModel::for_template(&llm, &t).unwrap();
        let f = &m.filter;
        assert_eq!(f.refuse("Breakfast is from 6:30 to 10:30 AM."), None);
        assert_eq!(f.refuse("Check-in is at 3 PM, I'm happy to help!"), None);
        assert_eq!(
            f.refuse("Your card 4111 1111 1111 1111 is on file."),
            Some("a card number")
        );
        assert_eq!(
            f.refuse("Check-in is at 2 PM."),
            Some("a number the facts do not hold")
        );
        assert_eq!(
            f.refuse("Your booking is KTP560."),
            Some("a number the facts do not hold")
        );
        // Only numbers the facts hold, but in a record's shape.
        assert_eq!(f.refuse("Your booking is HRB100."), Some("a record's code"));
        assert_eq!(numbers_in("1,200 rooms, 6:30"), vec!["1200", "6", "30"]);
    }
}
