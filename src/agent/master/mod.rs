//! The master agent (seed 000 "Master Agent (Router Node)"): owns the conversation and every
//! word said to the caller (seed 004: the entry point owns the request). One call to `turn`
//! takes the caller's words and the conversation's state and returns the reply, the new state
//! and what happened (dispatches, case changes, log entries) for the engine to persist.
//!
//! Per turn, in order:
//! 1. "a person, please" at any point; a goodbye at any point — if it is plausible there (not the
//!    first words of a call, not a lone sub-second clip, which whisper often writes as "Bye." for
//!    a "Hi,"), else confirmed first;
//! 2. acts that are not requests (`acts`): "say that again", "forget it", hello, thanks; an FAQ
//!    the template answers, also in the middle of a task (then the pending question is repeated);
//! 3. the answer to the pending question (missing slots, a clarification, a near match to
//!    confirm, a topic choice, a follow-up offer, "anything else?"), where another task named
//!    ("actually, cancel it instead") switches task and keeps what the caller already gave;
//! 4. a new request: a correction of the last task ("no, the name is Jane"), two requests in one
//!    breath (the second is offered afterwards), out of scope (an honest answer, then a person
//!    after repeated misses), or the routed task with the slot values already said and the ones
//!    remembered from earlier tasks.
//!
//! A caller's answer to a pending question stays with the sub-agent that asked: each agent has
//! its own thread and sees only that thread's history (seed 001).

pub mod acts;
mod delegate;
pub mod extract;
pub mod model;
pub mod own_words;
pub mod prompt;
mod record;
pub mod render;
pub mod state;

pub use delegate::field_questions;
pub use render::match_option;
pub use state::{
    Conversation, DoneTask, EndAction, Fallback, Heard, Pending, Queued, Role, Turn, TurnStatus,
    Undo, Utterance,
};

use crate::agent::agents::CANDIDATES;
use crate::agent::clock::Clock;
use crate::agent::protocol::{Clarification, RequiredField};
use crate::agent::registry::Dispatcher;
use crate::agent::router::{OUT_OF_SCOPE, RouteDecision, RoutePath, Router};
use crate::agent::slots::{self, Ordinal};
use crate::config::{FAQ_PREFIX, FieldType, MASTER_AGENT, RouterConfig, Template};
use crate::store::{CaseStatus, LogMetadata, LogType};
use acts::Act;
use extract::{Field, Names, identifies};
use render::{STOP, fill, options_sentence};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const END_CALL: &str = "end_call";

/// The embedded hospitality template, for unit tests.
#[cfg(test)]
pub(crate) fn hospitality() -> Template {
    crate::config::Config::embedded()
        .unwrap()
        .load_template_named("hospitality")
        .unwrap()
}

/// Channels whose conversation is a live call: its case is closed when the call ends.
const VOICE_CHANNELS: &[&str] = &[
    "twilio", "telnyx", "plivo", "exotel", "vonage", "webrtc", "replay",
];

/// Whether a conversation on `channel` is a live call.
pub(crate) fn is_call(channel: &str) -> bool {
    VOICE_CHANNELS.contains(&channel)
}

/// How much more similar than the out-of-scope threshold a clause must be to count as a
/// request of its own.
const CLAUSE_MARGIN: f32 = 0.15;

/// A goodbye this short, alone, is not trusted: whisper writes "Bye." for half a second of "Hi,".
const MIN_GOODBYE_MS: u64 = 1000;

pub struct Master {
    pub template: Arc<Template>,
    pub router: Arc<Router>,
    pub dispatcher: Arc<Dispatcher>,
    pub clock: Arc<dyn Clock>,
    pub router_cfg: RouterConfig,
    pub history_cap: usize,
    /// Budget for one delegation including retries and fallbacks: the caller always hears
    /// something within it.
    pub turn_budget: Duration,
    /// The language model on unsure turns (`[llm] route`, `answer`), when configured.
    pub model: Option<Arc<model::TurnModel>>,
}

/// The turn being produced.
pub(super) struct Ctx<'a> {
    conv: &'a mut Conversation,
    turn: Turn,
    deadline: Instant,
    /// The caller's words this turn.
    said: String,
    /// Where a streamed answer's clauses go as they are ready (a live call's speech).
    clauses: Option<model::ClauseSink>,
}

/// The common part of a pending question: which agent asked, for which task, with what so far.
struct Asked {
    task: String,
    agent: String,
    params: Map<String, Value>,
    asks: u32,
}

impl Master {
    /// Greets the caller at the start of a conversation.
    pub fn greet(&self, conv: &mut Conversation) -> Turn {
        let mut cx = self.ctx(conv);
        let greeting = self.template.greeting.clone();
        self.say(&mut cx, &greeting, None);
        cx.turn.status = TurnStatus::Greeting;
        self.finish(cx, false)
    }

    /// Handles one caller utterance.
    pub async fn turn(&self, conv: &mut Conversation, heard: Heard<'_>) -> Turn {
        let mut cx = self.ctx(conv);
        cx.clauses = heard.clauses.cloned();
        // Keys are given one by one, as a caller reads digits out ("4 5 6").
        let text = if heard.keys {
            let keys: Vec<String> = heard
                .text
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(String::from)
                .collect();
            keys.join(" ")
        } else {
            heard.text.trim().to_string()
        };
        cx.said = text.clone();
        let now = self.clock.now_ms();
        cx.conv.history.push(Utterance {
            role: Role::Caller,
            content: text.clone(),
            timestamp: now,
            thread: None,
            interrupted: false,
        });
        let caller = cx.conv.caller_id.clone();
        self.log(
            &mut cx,
            LogType::CallerToAgent,
            &caller,
            MASTER_AGENT,
            &text,
            LogMetadata::default(),
        );
        if cx.conv.ended {
            self.after_end(&mut cx);
            return self.finish(cx, false);
        }
        if slots::tokens(&text).is_empty() {
            let line = self.template.lines.not_caught.clone();
            self.say(&mut cx, &line, None);
            cx.turn.status = TurnStatus::NotUnderstood;
            return self.finish(cx, false);
        }
        cx.conv.caller_turns += 1;
        let repeated = self.answer(&mut cx, &text, heard).await;
        self.finish(cx, repeated)
    }

    fn ctx<'a>(&self, conv: &'a mut Conversation) -> Ctx<'a> {
        let turn = Turn {
            reply: String::new(),
            intent: None,
            confidence: None,
            agent: None,
            status: TurnStatus::Answered,
            case_id: conv.case_id.clone(),
            conversation_id: conv.id.clone(),
            action: None,
            ended: false,
            attempts: vec![],
            fallback: None,
            asr_prompt: String::new(),
            case_changes: vec![],
            audit: vec![],
            logs: vec![],
            model: None,
        };
        Ctx {
            conv,
            turn,
            deadline: Instant::now() + self.turn_budget,
            said: String::new(),
            clauses: None,
        }
    }

    /// The turn's reply is remembered for "say that again" (unless it was that repeat), and the
    /// recogniser's prompt for the caller's next words is set from what is now pending.
    fn finish(&self, cx: Ctx<'_>, repeated: bool) -> Turn {
        let Ctx { conv, mut turn, .. } = cx;
        if !repeated {
            conv.last_reply = turn.reply.clone();
        }
        turn.asr_prompt = prompt::for_pending(&self.template, &conv.pending);
        turn
    }

    /// A conversation that has ended hangs up again (or transfers again): never a live line
    /// that only says it has ended.
    fn after_end(&self, cx: &mut Ctx<'_>) {
        if cx.conv.escalated {
            let line = self.template.lines.hold_for_person.clone();
            self.say(cx, &line, None);
            cx.turn.status = TurnStatus::Escalated;
            cx.turn.action = Some(EndAction::Transfer {
                to: self.template.human_number.clone(),
            });
        } else {
            let farewell = self.template.farewell.clone();
            self.say(cx, &farewell, None);
            cx.turn.status = TurnStatus::Ended;
            cx.turn.action = Some(EndAction::Hangup);
        }
        cx.turn.ended = true;
    }

    /// Returns whether the reply was a repeat of the previous one.
    async fn answer(&self, cx: &mut Ctx<'_>, text: &str, heard: Heard<'_>) -> bool {
        let closing = matches!(
            cx.conv.pending,
            Pending::AnythingElse | Pending::FollowUp { .. }
        );
        // "A person, please" (or 0 on the keypad) is honoured whatever was pending.
        if let Some(h) = self.template.handoff_task()
            && ((heard.keys && text == "0")
                || self.router.route_keywords(text, &|t| t == h).is_some())
        {
            cx.turn.intent = Some(h.to_string());
            cx.turn.confidence = Some(1.0);
            self.escalate(cx, "caller asked for a person").await;
            return false;
        }
        // So is a goodbye, when it is plausible here.
        if !matches!(cx.conv.pending, Pending::ConfirmEnd)
            && self
                .router
                .route_keywords(text, &|t| t == END_CALL)
                .is_some()
        {
            cx.turn.intent = Some(END_CALL.into());
            cx.turn.confidence = Some(1.0);
            self.goodbye(cx, text, heard, closing);
            return false;
        }
        match acts::classify(text) {
            Some(Act::Repeat) => {
                let again = if cx.conv.last_reply.is_empty() {
                    self.template.lines.nothing_to_repeat.clone()
                } else {
                    cx.conv.last_reply.clone()
                };
                self.say(cx, &again, None);
                cx.turn.status = TurnStatus::Answered;
                return true;
            }
            Some(Act::Drop) => {
                cx.conv.pending = Pending::None;
                cx.conv.queued = None;
                let line = format!(
                    "{} {}",
                    self.template.lines.dropped, self.template.anything_else
                );
                self.say(cx, &line, None);
                cx.conv.pending = Pending::AnythingElse;
                cx.turn.status = TurnStatus::Answered;
                return false;
            }
            Some(act @ (Act::Hello | Act::HowAreYou | Act::Thanks))
                if matches!(cx.conv.pending, Pending::None | Pending::AnythingElse) =>
            {
                let lines = &self.template.lines;
                let line = match act {
                    Act::Hello => lines.hello.clone(),
                    Act::HowAreYou => lines.how_are_you.clone(),
                    _ => format!("{} {}", lines.thanks, self.template.anything_else),
                };
                self.say(cx, &line, None);
                if act == Act::Thanks {
                    cx.conv.pending = Pending::AnythingElse;
                }
                cx.turn.status = TurnStatus::Answered;
                return false;
            }
            _ => {}
        }
        // A question the line answers itself, also in the middle of a task.
        if let Some(faq) = self
            .router
            .route_keywords(text, &|t| t.starts_with(FAQ_PREFIX))
        {
            self.answer_faq(cx, &faq, 1.0);
            return false;
        }
        if cx.conv.pending != Pending::None {
            self.set_case(cx, CaseStatus::InProgress, "caller answered");
        }
        match std::mem::take(&mut cx.conv.pending) {
            Pending::None => self.new_request(cx, text, acts::corrects(text)).await,
            Pending::Slots {
                task,
                agent,
                params,
                fields,
                asks,
            } => {
                let asked = Asked {
                    task,
                    agent,
                    params,
                    asks,
                };
                self.answer_slots(cx, text, asked, fields).await
            }
            Pending::Clarify {
                task,
                agent,
                params,
                clarification,
                asks,
            } => {
                let asked = Asked {
                    task,
                    agent,
                    params,
                    asks,
                };
                self.answer_clarify(cx, text, asked, clarification).await
            }
            Pending::ConfirmMatch {
                task,
                agent,
                params,
                matched,
            } => {
                let asked = Asked {
                    task,
                    agent,
                    params,
                    asks: 0,
                };
                self.answer_match(cx, text, asked, matched).await
            }
            Pending::TopicChoice {
                candidates,
                utterance,
            } => self.answer_topic(cx, text, candidates, utterance).await,
            Pending::FollowUp { task, params } => {
                let (no, rest) = acts::strip_opening(text);
                let nothing_more = rest.is_empty() || acts::only_closing(&rest);
                // "Okay, thank you. And I'd also like to confirm my reservation": the "okay"
                // acknowledges the offer; what follows asks for another task by name.
                let elsewhere = !nothing_more
                    && self
                        .switch_keyword(&rest, &task)
                        .is_some_and(|t| t != END_CALL);
                match slots::extract_yes_no(text) {
                    Some(true) if !no && !elsewhere => {
                        // "Yes, it's the business account": what follows the yes is heard too.
                        let params = if nothing_more {
                            params
                        } else {
                            self.params_for(cx, &task, &rest, params)
                        };
                        cx.turn.intent = Some(task.clone());
                        self.start_task(cx, &task, params).await;
                    }
                    Some(false) if nothing_more => {
                        let reply = format!("Okay. {}", self.template.anything_else);
                        self.say(cx, &reply, None);
                        cx.turn.status = TurnStatus::Success;
                        cx.conv.pending = Pending::AnythingElse;
                    }
                    _ => {
                        let rest = if rest.is_empty() {
                            text.to_string()
                        } else {
                            rest
                        };
                        self.new_request(cx, &rest, acts::corrects(text)).await
                    }
                }
            }
            Pending::AnythingElse => {
                let (no, rest) = acts::strip_opening(text);
                let said = slots::extract_yes_no(text);
                if rest.is_empty() || acts::only_closing(&rest) {
                    if no || said == Some(false) {
                        self.end_call(cx);
                    } else {
                        let line = self.template.lines.what_else.clone();
                        self.say(cx, &line, None);
                        cx.turn.status = TurnStatus::Answered;
                    }
                } else {
                    // "No, sorry, the name is John Doe": a correction, not a goodbye.
                    self.new_request(cx, &rest, no || acts::corrects(text))
                        .await
                }
            }
            Pending::ConfirmEnd => {
                let (no, rest) = acts::strip_opening(text);
                let bye = self
                    .router
                    .route_keywords(text, &|t| t == END_CALL)
                    .is_some();
                if !bye && !rest.is_empty() && !acts::only_closing(&rest) {
                    // Not an answer but a request ("Hi, I'd like to confirm my reservation").
                    self.new_request(cx, &rest, false).await
                } else if no && !bye {
                    let line = self.template.lines.goodbye_declined.clone();
                    self.say(cx, &line, None);
                    cx.turn.status = TurnStatus::Answered;
                } else {
                    self.end_call(cx)
                }
            }
        }
        false
    }

    /// A goodbye is taken at once when it is plausible: not the first words of the call, and not
    /// a lone sub-second clip (whisper's "Bye." for a "Hi,"). Otherwise it is confirmed.
    fn goodbye(&self, cx: &mut Ctx<'_>, text: &str, heard: Heard<'_>, closing: bool) {
        let lone_clip =
            heard.speech_ms.is_some_and(|ms| ms < MIN_GOODBYE_MS) && slots::tokens(text).len() <= 2;
        let first_words = cx.conv.caller_turns <= 1 && !closing;
        if !(lone_clip || first_words) {
            return self.end_call(cx);
        }
        cx.turn.audit.push((
            "goodbye_unconfirmed".into(),
            json!({"text": text, "speech_ms": heard.speech_ms, "first_words": first_words}),
        ));
        let line = self.template.lines.confirm_goodbye.clone();
        self.ask(cx, &line, None);
        cx.turn.status = TurnStatus::Confirming;
        cx.conv.pending = Pending::ConfirmEnd;
    }

    /// Answers an FAQ entry; in the middle of a task the pending question is asked again.
    fn answer_faq(&self, cx: &mut Ctx<'_>, task: &str, confidence: f32) {
        let Some(faq) = self.template.faq(task) else {
            return;
        };
        cx.turn.intent = Some(task.to_string());
        cx.turn.confidence = Some(confidence);
        cx.turn.status = TurnStatus::Answered;
        cx.turn
            .audit
            .push(("answered_faq".into(), json!({"faq": faq.id})));
        let answer = faq.answer.clone();
        match &cx.conv.pending {
            Pending::None | Pending::AnythingElse | Pending::ConfirmEnd => {
                self.say(
                    cx,
                    &format!("{answer} {}", self.template.anything_else),
                    None,
                );
                cx.conv.pending = Pending::AnythingElse;
            }
            _ => {
                // Back to the question in hand.
                let again = cx.conv.last_question.clone();
                self.say(cx, &format!("{answer} {again}"), None);
            }
        }
    }

    /// Routes off the async workers (the embedding takes milliseconds of CPU). All tasks the
    /// template declares, its FAQ entries and its out-of-scope examples are ranked — not only
    /// tasks with a healthy agent right now — so a request whose agent is down is recognised for
    /// what it is and goes down the fallback chain instead of being mistaken for something else.
    async fn route(&self, text: &str, candidates: Option<Vec<String>>) -> RouteDecision {
        let router = self.router.clone();
        let text = text.to_string();
        let tasks: Vec<String> = candidates.unwrap_or_else(|| self.routable());
        let job = tokio::task::spawn_blocking(move || {
            router.route(&text, &|t| tasks.iter().any(|x| x == t))
        });
        match job.await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "intent router failed");
                RouteDecision::none()
            }
            Err(e) => {
                tracing::error!(error = %e, "intent router task failed");
                RouteDecision::none()
            }
        }
    }

    /// Every name the router may choose for a new request.
    fn routable(&self) -> Vec<String> {
        self.template
            .tasks
            .keys()
            .cloned()
            .chain(self.template.faq.iter().map(|f| f.task()))
            .chain(std::iter::once(OUT_OF_SCOPE.to_string()))
            .collect()
    }

    fn is_task(&self, name: &str) -> bool {
        self.template.tasks.contains_key(name)
    }

    /// Whether a decision names a request the line handles (not out of scope).
    fn in_scope(&self, d: &RouteDecision) -> bool {
        match d.path {
            RoutePath::Keyword => true,
            RoutePath::Semantic => {
                d.task.as_deref() != Some(OUT_OF_SCOPE)
                    && d.similarity >= self.router_cfg.scope_threshold
            }
            RoutePath::None => false,
        }
    }

    /// A request, not an answer to a pending question. `correcting`: the caller's words
    /// suggest a correction ("no", "I said", "actually").
    async fn new_request(&self, cx: &mut Ctx<'_>, text: &str, correcting: bool) {
        let all = self.routable();
        let keyword = self
            .router
            .route_keywords(text, &|t| all.iter().any(|x| x == t));
        // A correction of the task just done: "no, the name is Jane Smith", "I said ABC124".
        if keyword.is_none()
            && correcting
            && let Some(done) = cx.conv.last_task.clone()
        {
            let mut params = done.params.clone();
            if self.extract_identity(&done.task, text, &mut params) > 0 {
                return self.redo(cx, done, params).await;
            }
        }
        // Two requests in one breath: the first is handled, the second offered afterwards.
        // Requests on one topic ("this is Mark Stone, reservation ABC124. I need to move my
        // arrival") are one request with its details.
        let clauses = acts::request_clauses(text);
        if clauses.len() >= 2 {
            // (task, clause, similarity), the clearest clause per topic.
            let mut found: Vec<(String, String, f32)> = vec![];
            for c in &clauses {
                let d = self.route(&acts::routing_text(c), None).await;
                let topic = |t: &str| self.template.tasks.get(t).map(|s| s.topic.as_str());
                // A clause is a request of its own only when it clearly says one ("This is room
                // 2305." does not).
                let clear = d.path == RoutePath::Keyword
                    || (d.confidence >= self.router_cfg.threshold
                        && d.similarity >= self.router_cfg.scope_threshold + CLAUSE_MARGIN);
                if let Some(t) = d.task.clone()
                    && self.is_task(&t)
                    && t != END_CALL
                    && self.in_scope(&d)
                    && clear
                {
                    match found.iter_mut().find(|(x, _, _)| topic(x) == topic(&t)) {
                        Some(same) if same.2 < d.similarity => *same = (t, c.clone(), d.similarity),
                        Some(_) => {}
                        None => found.push((t, c.clone(), d.similarity)),
                    }
                }
            }
            // One clear request among details ("This is Mark Stone, reservation ABC124. I need
            // to push my arrival"): that one, with the details of the whole utterance.
            if let [(only, _, _)] = found.as_slice() {
                cx.turn.intent = Some(only.clone());
                cx.turn.confidence = Some(1.0);
                cx.conv.misunderstood = 0;
                let only = only.clone();
                let params = self.params_for(cx, &only, text, Map::new());
                return self.start_task(cx, &only, params).await;
            }
            if let [(first, _, _), (second, second_text, _), ..] = found.as_slice() {
                // The first request's details are everywhere but in the second's clause.
                let first_text = text.replacen(second_text.as_str(), " ", 1);
                let today = self.clock.today();
                cx.conv.queued = Some(Queued {
                    task: second.clone(),
                    params: extract::for_task(&self.template, second, second_text, today),
                });
                cx.turn.intent = Some(first.clone());
                cx.turn.confidence = Some(1.0);
                cx.turn.audit.push((
                    "routed".into(),
                    json!({"task": first, "queued": second, "path": "clauses"}),
                ));
                cx.conv.misunderstood = 0;
                let params = self.params_for(cx, first, &first_text, Map::new());
                let first = first.clone();
                return self.start_task(cx, &first, params).await;
            }
        }
        let decision = self.route(&acts::routing_text(text), None).await;
        cx.turn.intent = decision.task.clone();
        cx.turn.confidence = Some(decision.confidence);
        cx.turn.audit.push((
            "routed".into(),
            json!({"task": decision.task, "confidence": decision.confidence, "path": decision.path,
                   "similarity": decision.similarity,
                   "ranked": decision.ranked.iter().take(3).collect::<Vec<_>>()}),
        ));
        let task = decision.task.clone().unwrap_or_default();
        let unclear = decision.path != RoutePath::Keyword
            && (!self.in_scope(&decision) || decision.confidence < self.router_cfg.threshold);
        // Details for the task just done, said without a request ("Member number 48213377").
        if unclear
            && keyword.is_none()
            && let Some(done) = cx.conv.last_task.clone()
        {
            let mut params = done.params.clone();
            if self.extract_identity(&done.task, text, &mut params) > 0 {
                return self.redo(cx, done, params).await;
            }
        }
        // The router is unsure: the model's reading, when there is a model and it answers.
        if unclear && keyword.is_none() {
            match self.model_route(cx, text).await {
                Some(model::Routed::Task(task, said)) if self.task_available(&task) => {
                    cx.turn.intent = Some(task.clone());
                    cx.turn.confidence = None;
                    cx.turn.audit.push((
                        "routed".into(),
                        json!({"task": task, "path": "model", "fields": said.keys().collect::<Vec<_>>()}),
                    ));
                    cx.conv.misunderstood = 0;
                    let params = self.params_for(cx, &task, text, Map::new());
                    // The engine's own readings first; the model's fill the rest.
                    let mut merged = said;
                    merged.extend(params);
                    return self.start_task(cx, &task, merged).await;
                }
                Some(model::Routed::Faq(faq)) if self.template.faq(&faq).is_some() => {
                    cx.turn
                        .audit
                        .push(("routed".into(), json!({"task": faq, "path": "model"})));
                    cx.conv.misunderstood = 0;
                    return self.answer_faq(cx, &faq, 1.0);
                }
                // Small talk the model cannot answer falls to the engine below.
                Some(model::Routed::SmallTalk) if self.model_answer(cx, text).await => {
                    cx.turn.intent = Some(model::SMALL_TALK.into());
                    cx.conv.pending = Pending::None;
                    return;
                }
                Some(model::Routed::OutOfScope) => return self.out_of_scope(cx, text).await,
                _ => {}
            }
        }
        if decision.path == RoutePath::Semantic && !self.in_scope(&decision) {
            return self.out_of_scope(cx, text).await;
        }
        if task.starts_with(FAQ_PREFIX) && decision.confidence >= self.router_cfg.threshold {
            cx.conv.misunderstood = 0;
            return self.answer_faq(cx, &task, decision.confidence);
        }
        if self.is_task(&task) && decision.confidence >= self.router_cfg.threshold {
            cx.conv.misunderstood = 0;
            if task == END_CALL {
                return self.end_call(cx);
            }
            let params = self.params_for(cx, &task, text, Map::new());
            return self.start_task(cx, &task, params).await;
        }
        cx.conv.misunderstood += 1;
        if cx.conv.misunderstood >= self.router_cfg.max_failures.max(1) {
            return self.escalate(cx, "could not understand the request").await;
        }
        let candidates: Vec<String> = decision
            .ranked
            .iter()
            .filter(|s| s.task != END_CALL && self.is_task(&s.task))
            .take(2)
            .map(|s| s.task.clone())
            .collect();
        let question = match candidates.as_slice() {
            [a, b] => self.topic_question(a, b),
            _ => self.template.lines.what_about.clone(),
        };
        self.ask(cx, &question, None);
        cx.turn.status = TurnStatus::ClarifyTopic;
        cx.conv.pending = if candidates.len() == 2 {
            Pending::TopicChoice {
                candidates,
                utterance: text.to_string(),
            }
        } else {
            Pending::None
        };
    }

    /// Nothing the line does: say what it can do; after repeated misses, a person.
    async fn out_of_scope(&self, cx: &mut Ctx<'_>, text: &str) {
        cx.turn.intent = Some(OUT_OF_SCOPE.into());
        cx.conv.misunderstood += 1;
        cx.turn
            .audit
            .push(("out_of_scope".into(), json!({"text": text})));
        if cx.conv.misunderstood >= self.router_cfg.max_failures.max(1) {
            return self
                .escalate(cx, "the caller's requests are outside what this line does")
                .await;
        }
        // The model may answer from the line's facts (unless it just failed to, as small
        // talk); else the line says what it can do.
        let tried = cx.turn.model.is_some_and(|m| m.contains("answer"));
        if !tried && self.model_answer(cx, text).await {
            cx.turn.status = TurnStatus::OutOfScope;
            cx.conv.pending = Pending::None;
            return;
        }
        let line = fill(
            &self.template.lines.out_of_scope,
            &[("capabilities", &self.template.capabilities)],
        );
        self.say(cx, &line, None);
        cx.turn.status = TurnStatus::OutOfScope;
        cx.conv.pending = Pending::None;
    }

    /// Does the last task again with corrected values: at once for a lookup, after a yes for a
    /// task that changes something ("Shall I cancel your reservation with those details?").
    async fn redo(&self, cx: &mut Ctx<'_>, done: DoneTask, params: Map<String, Value>) {
        cx.turn.intent = Some(done.task.clone());
        cx.turn
            .audit
            .push(("corrected".into(), json!({"task": done.task})));
        let writes = self
            .template
            .tasks
            .get(&done.task)
            .is_some_and(|t| t.writes);
        if !writes {
            return self
                .dispatch(cx, &done.task, Some(done.agent), params)
                .await;
        }
        let phrase = self
            .template
            .tasks
            .get(&done.task)
            .map_or("do that", |t| t.phrase.as_str());
        self.ask(cx, &format!("Shall I {phrase} with those details?"), None);
        cx.turn.status = TurnStatus::Confirming;
        cx.conv.pending = Pending::FollowUp {
            task: done.task,
            params,
        };
    }

    /// "Is this about billing or a reservation?" — or, when both tasks share a topic,
    /// "Would you like to confirm your reservation or cancel your reservation?"
    fn topic_question(&self, a: &str, b: &str) -> String {
        let (ta, tb) = (self.template.tasks.get(a), self.template.tasks.get(b));
        match (ta, tb) {
            (Some(x), Some(y)) if x.topic != y.topic => fill(
                &self.template.lines.which_topic,
                &[("a", &x.topic), ("b", &y.topic)],
            ),
            (Some(x), Some(y)) => format!("Would you like to {} or {}?", x.phrase, y.phrase),
            _ => self.template.lines.what_about.clone(),
        }
    }

    async fn answer_topic(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        candidates: Vec<String>,
        utterance: String,
    ) {
        let chosen = self.pick_topic(text, &candidates).await;
        match chosen {
            Some(task) => {
                cx.conv.misunderstood = 0;
                cx.turn.intent = Some(task.clone());
                cx.turn.confidence = Some(1.0);
                let combined = format!("{utterance} {text}");
                let params = self.params_for(cx, &task, &combined, Map::new());
                self.start_task(cx, &task, params).await;
            }
            None => {
                cx.conv.misunderstood += 1;
                if cx.conv.misunderstood >= self.router_cfg.max_failures.max(1) {
                    return self.escalate(cx, "could not understand the request").await;
                }
                // Maybe the caller simply said something new.
                self.new_request(cx, text, false).await
            }
        }
    }

    async fn pick_topic(&self, text: &str, candidates: &[String]) -> Option<String> {
        if let Some(o) = slots::extract_ordinal(text) {
            let i = match o {
                Ordinal::Nth(n) => n.checked_sub(1)?,
                Ordinal::Last => candidates.len().checked_sub(1)?,
            };
            return candidates.get(i).cloned();
        }
        let allowed = |t: &str| candidates.iter().any(|c| c == t);
        if let Some(t) = self.router.route_keywords(text, &allowed) {
            return Some(t);
        }
        let toks = slots::tokens(text);
        let mut hits: Vec<&String> = candidates
            .iter()
            .filter(|c| {
                self.template.tasks.get(c.as_str()).is_some_and(|spec| {
                    slots::tokens(&format!("{} {}", spec.topic, spec.phrase))
                        .iter()
                        .filter(|w| w.len() > 3 && !STOP.contains(&w.as_str()))
                        .any(|w| {
                            toks.iter()
                                .any(|t| t == w || t.trim_end_matches('s') == w.as_str())
                        })
                })
            })
            .collect();
        if hits.len() == 1 {
            return hits.pop().cloned();
        }
        let d = self.route(text, Some(candidates.to_vec())).await;
        d.task.filter(|_| d.confidence >= self.router_cfg.threshold)
    }

    /// Slot values for `task`: `base`, what the caller said now, and the identifying values
    /// remembered from earlier tasks (a reservation number given once is not asked again).
    fn params_for(
        &self,
        cx: &Ctx<'_>,
        task: &str,
        text: &str,
        base: Map<String, Value>,
    ) -> Map<String, Value> {
        let mut params = base;
        params.extend(extract::for_task(
            &self.template,
            task,
            text,
            self.clock.today(),
        ));
        if let Some(spec) = self.template.tasks.get(task) {
            for f in spec.required.iter().chain(&spec.optional) {
                if identifies(f.field_type)
                    && !params.contains_key(&f.field)
                    && let Some(v) = cx.conv.slots.get(&f.field)
                {
                    params.insert(f.field.clone(), v.clone());
                }
            }
        }
        params
    }

    /// Extracts the identifying fields (codes and names) of `task` from an answer into
    /// `params`; returns how many were found.
    fn extract_identity(&self, task: &str, text: &str, params: &mut Map<String, Value>) -> usize {
        let Some(spec) = self.template.tasks.get(task) else {
            return 0;
        };
        let today = self.clock.today();
        let mut got = 0;
        for f in spec.required.iter().chain(&spec.optional) {
            if !identifies(f.field_type) {
                continue;
            }
            let old = params
                .get(&f.field)
                .and_then(Value::as_str)
                .map(str::to_string);
            if !extract::extract_into(&Field::of_spec(f), text, today, Names::Bare, params) {
                continue;
            }
            got += 1;
            // "It's one two four, not one two three": part of the code, the rest as before.
            if let (Some(old), Some(new)) = (old, params.get(&f.field).and_then(Value::as_str))
                && !f.accepts(new)
                && let Some(spliced) = extract::splice(&old, new, f)
            {
                params.insert(f.field.clone(), Value::from(spliced));
                params.remove(&format!("{}{CANDIDATES}", f.field));
            }
        }
        got
    }

    /// Another task named by its keywords while `current` waits for an answer.
    fn switch_keyword(&self, text: &str, current: &str) -> Option<String> {
        let allowed = |t: &str| t != current && self.is_task(t) && self.task_available(t);
        self.router.route_keywords(text, &allowed)
    }

    /// Another task the caller turned to while a question about `current` was pending. When
    /// the words answer nothing that was asked (`unanswered`): a task named by its keywords, or
    /// the one the router is confident of. When they do answer it, only a change of mind
    /// ("actually", "instead", "on second thought") where the router prefers another task to
    /// the current one ("…, and we'd like to come on the twelfth instead" stays a change of date).
    async fn switch_target(&self, text: &str, current: &str, unanswered: bool) -> Option<String> {
        let usable = |t: &str| self.is_task(t) && self.task_available(t);
        if unanswered && let Some(t) = self.switch_keyword(text, current) {
            return Some(t);
        }
        if !(unanswered || acts::changes_mind(text)) {
            return None;
        }
        let tasks: Vec<String> = self
            .template
            .tasks
            .keys()
            .filter(|t| usable(t) && (!unanswered || t.as_str() != current))
            .cloned()
            .collect();
        let d = self.route(&acts::routing_text(text), Some(tasks)).await;
        let sure = d.confidence >= self.router_cfg.threshold && self.in_scope(&d);
        d.task.filter(|t| sure && t != current)
    }

    /// Switches from `from_params`' task to `task`, keeping the values both tasks take.
    async fn switch_task(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        from_params: &Map<String, Value>,
        text: &str,
    ) {
        cx.turn.intent = Some(task.to_string());
        cx.turn
            .audit
            .push(("switched_task".into(), json!({"to": task})));
        let mut base = Map::new();
        if let Some(spec) = self.template.tasks.get(task) {
            for f in spec.required.iter().chain(&spec.optional) {
                for key in [f.field.clone(), format!("{}{CANDIDATES}", f.field)] {
                    if let Some(v) = from_params.get(&key) {
                        base.insert(key, v.clone());
                    }
                }
            }
        }
        let params = self.params_for(cx, task, text, base);
        self.start_task(cx, task, params).await;
    }

    async fn answer_slots(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        asked: Asked,
        fields: Vec<RequiredField>,
    ) {
        let Asked {
            task,
            agent,
            mut params,
            asks,
        } = asked;
        cx.turn.intent = Some(task.clone());
        let today = self.clock.today();
        // A yes/no confirmation is answered before anything else.
        if let Some(confirm) = fields
            .iter()
            .find(|f| FieldType::parse(&f.field_type) == FieldType::Confirm)
        {
            match slots::extract_yes_no(text) {
                Some(true) => {
                    params.insert(confirm.field.clone(), Value::Bool(true));
                    return self.dispatch(cx, &task, Some(agent), params).await;
                }
                Some(false) if self.switch_keyword(text, &task).is_none() => {
                    let declined = self
                        .template
                        .tasks
                        .get(&task)
                        .and_then(|t| t.replies.get("declined"))
                        .cloned()
                        .unwrap_or_else(|| "Okay, I won't do that.".into());
                    let reply = format!("{declined} {}", self.template.anything_else);
                    self.say(cx, &reply, Some(&agent));
                    cx.turn.status = TurnStatus::Success;
                    cx.conv.pending = Pending::AnythingElse;
                    return;
                }
                _ => {}
            }
        }
        // What was asked, and any other value of the task the caller gave (a correction).
        let before = params.clone();
        let mut got = 0;
        for f in &fields {
            let field = Field::of_required(&self.template, &task, f);
            if matches!(field.ft, FieldType::Confirm | FieldType::Choice) {
                continue;
            }
            if extract::extract_into(&field, text, today, Names::Bare, &mut params) {
                got += 1;
            }
        }
        if got == 0 {
            got += self.extract_identity(&task, text, &mut params);
        }
        // "Actually, cancel it instead": another task. With the details asked for in the same
        // breath, only a task named by its keywords ("…, and cancel my reservation").
        let switch = if got == 0 {
            self.switch_target(text, &task, true).await
        } else if acts::changes_mind(text) {
            self.switch_keyword(text, &task)
        } else {
            None
        };
        if let Some(other) = switch {
            return self.switch_task(cx, &other, &params, text).await;
        }
        if got == 0 {
            if asks >= 2 {
                return self.escalate(cx, "could not collect the details").await;
            }
            let line = self.template.lines.ask_again.clone();
            let asked = Asked {
                task,
                agent,
                params: before,
                asks: asks + 1,
            };
            return self.ask_for(cx, &line, asked, fields);
        }
        self.add_said(&task, text, &mut params);
        self.dispatch(cx, &task, Some(agent), params).await
    }

    /// Values of `task` the caller volunteered beside the answer ("the personal one, and it's
    /// a hundred dollars"), and what they added to a description the task keeps.
    fn add_said(&self, task: &str, text: &str, params: &mut Map<String, Value>) {
        let said = extract::for_task(&self.template, task, text, self.clock.today());
        let Some(spec) = self.template.tasks.get(task) else {
            return;
        };
        let toks = slots::tokens(text);
        let money = text.contains('$')
            || toks
                .iter()
                .any(|t| matches!(t.as_str(), "dollar" | "dollars" | "bucks" | "cents"));
        for f in spec.required.iter().chain(&spec.optional) {
            let Some(v) = said.get(&f.field) else {
                continue;
            };
            // "The personal one" is not an amount of one dollar.
            if f.field_type == FieldType::Amount && !money {
                continue;
            }
            match (f.field_type, params.get(&f.field)) {
                (FieldType::Text, Some(Value::String(old)))
                    if !old.contains(text.trim()) && slots::tokens(text).len() > 3 =>
                {
                    params.insert(
                        f.field.clone(),
                        Value::from(format!("{old} {}", text.trim())),
                    );
                }
                (_, None) => {
                    params.insert(f.field.clone(), v.clone());
                    let key = format!("{}{CANDIDATES}", f.field);
                    if let Some(c) = said.get(&key) {
                        params.insert(key, c.clone());
                    }
                }
                _ => {}
            }
        }
    }

    async fn answer_clarify(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        asked: Asked,
        clar: Clarification,
    ) {
        let Asked {
            task,
            agent,
            mut params,
            asks,
        } = asked;
        cx.turn.intent = Some(task.clone());
        let field = clar.field.clone().unwrap_or_else(|| "choice".into());
        let urgency = self
            .template
            .field(&task, &field)
            .is_some_and(|f| f.field_type == FieldType::Urgency);
        let chosen = match render::match_option(text, &clar.options) {
            Some(i) => Some(clar.options[i].value.clone()),
            None if urgency => slots::extract_urgency(text).map(|u| u.as_str().to_string()),
            None => None,
        };
        match chosen {
            Some(value) => {
                params.insert(field, Value::from(value.clone()));
                self.add_said(&task, text, &mut params);
                cx.turn
                    .audit
                    .push(("clarified".into(), json!({"task": task, "choice": value})));
                self.dispatch(cx, &task, Some(agent), params).await
            }
            None => {
                if let Some(other) = self.switch_target(text, &task, true).await {
                    return self.switch_task(cx, &other, &params, text).await;
                }
                if asks >= 2 {
                    return self
                        .escalate(cx, "could not resolve the clarification")
                        .await;
                }
                self.add_said(&task, text, &mut params);
                let q = format!("Sorry, which one? {}", options_sentence(&clar.options));
                self.ask(cx, &q, Some(&agent));
                cx.turn.status = TurnStatus::NeedsInfo;
                cx.conv.pending = Pending::Clarify {
                    task,
                    agent,
                    params,
                    clarification: clar,
                    asks: asks + 1,
                };
            }
        }
    }

    /// The answer to "I have reservation ABC123 under John Doe. Is that right?"
    async fn answer_match(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        asked: Asked,
        matched: Map<String, Value>,
    ) {
        let Asked {
            task,
            agent,
            mut params,
            ..
        } = asked;
        cx.turn.intent = Some(task.clone());
        let said = slots::extract_yes_no(text);
        let mut corrected = params.clone();
        let got = self.extract_identity(&task, text, &mut corrected);
        // Another task instead of an answer ("Cancel my reservation for next week"), or after a
        // yes ("Yes — and actually, cancel it").
        let unanswered = said.is_none() && got == 0;
        if let Some(other) = self.switch_target(text, &task, unanswered).await {
            if said == Some(true) {
                params.extend(matched);
            } else {
                // The booking read back was not confirmed: its code and name go no further.
                for k in matched.keys() {
                    params.remove(k);
                    params.remove(&format!("{k}{CANDIDATES}"));
                }
            }
            return self.switch_task(cx, &other, &params, text).await;
        }
        match said {
            Some(true) if got == 0 => {
                for k in matched.keys() {
                    params.remove(&format!("{k}{CANDIDATES}"));
                }
                params.extend(matched);
                cx.turn
                    .audit
                    .push(("match_confirmed".into(), json!({"task": task})));
                self.dispatch(cx, &task, Some(agent), params).await
            }
            _ if got > 0 => self.dispatch(cx, &task, Some(agent), corrected).await,
            Some(false) => {
                // Not that one: ask for the identifying details again.
                let fields: Vec<RequiredField> = self
                    .template
                    .tasks
                    .get(&task)
                    .map(|s| {
                        s.required
                            .iter()
                            .filter(|f| identifies(f.field_type))
                            .map(|f| RequiredField {
                                field: f.field.clone(),
                                field_type: f.field_type.as_str().into(),
                                description: f.description.clone(),
                                validation: None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for f in &fields {
                    params.remove(&f.field);
                    params.remove(&format!("{}{CANDIDATES}", f.field));
                    cx.conv.slots.remove(&f.field);
                }
                let line = self.template.lines.match_declined.clone();
                let asked = Asked {
                    task,
                    agent,
                    params,
                    asks: 0,
                };
                self.ask_for(cx, &line, asked, fields);
            }
            _ => {
                // Neither yes nor no: ask the same question again.
                let again = cx.conv.last_question.clone();
                self.ask(cx, &again, Some(&agent));
                cx.turn.status = TurnStatus::Confirming;
                cx.conv.pending = Pending::ConfirmMatch {
                    task,
                    agent,
                    params,
                    matched,
                };
            }
        }
    }

    /// Asks for `fields` with `line` (`{fields}` is their spoken list) and waits for the answer.
    fn ask_for(&self, cx: &mut Ctx<'_>, line: &str, asked: Asked, fields: Vec<RequiredField>) {
        let descs: Vec<String> = fields.iter().map(|f| f.description.clone()).collect();
        let q = fill(
            line,
            &[("fields", &crate::agent::speech::join_spoken(&descs, "and"))],
        );
        self.ask(cx, &q, Some(&asked.agent));
        cx.turn.status = TurnStatus::NeedsInfo;
        cx.conv.pending = Pending::Slots {
            task: asked.task,
            agent: asked.agent,
            params: asked.params,
            fields,
            asks: asked.asks,
        };
    }

    fn task_available(&self, task: &str) -> bool {
        if task == END_CALL {
            return true;
        }
        self.dispatcher.registry.can_serve(task)
    }

    async fn start_task(&self, cx: &mut Ctx<'_>, task: &str, params: Map<String, Value>) {
        self.set_case(cx, CaseStatus::InProgress, &format!("working on {task}"));
        if Some(task) == self.template.handoff_task() {
            return self.escalate(cx, "caller asked for a person").await;
        }
        self.dispatch(cx, task, None, params).await
    }
}
