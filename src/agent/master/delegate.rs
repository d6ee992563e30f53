//! Delegation and its outcome: the request to a sub-agent (retries, timeouts and the breaker are
//! the dispatcher's), seed 000's fallback chain (cached data → alternative agent → degraded answer
//! → human), and how each outcome is spoken from the template.

use super::extract::identifies;
use super::render::{fill, options_sentence};
use super::state::{DoneTask, EndAction, Fallback, Pending, TurnStatus};
use super::{Ctx, END_CALL, Master};
use crate::agent::protocol::{
    AgentOutput, ClarificationType, ErrorCode, ErrorInfo, RequiredField, Status, Validation,
};
use crate::agent::registry::unavailable;
use crate::agent::speech;
use crate::config::{FieldType, Lines, MASTER_AGENT, TaskSpec, Template};
use crate::store::CaseStatus;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// Which of the template's lines asks for a task's missing fields.
#[derive(Clone, Copy)]
enum Asked {
    /// Nothing of the task was given yet: `ask_fields`.
    First,
    /// Some was given, this is the rest: `still_need`.
    Rest,
    /// A value was given but is not valid: `ask_again`.
    Again,
}

/// The question for a task's missing fields (`descs`: their spoken descriptions).
fn fields_question(
    lines: &Lines,
    spec: Option<&TaskSpec>,
    descs: &[String],
    asked: Asked,
) -> String {
    let list = speech::join_spoken(descs, "and");
    let phrase = spec.map(|s| s.phrase.as_str()).unwrap_or("help with that");
    let line = match asked {
        Asked::Again => &lines.ask_again,
        Asked::Rest => &lines.still_need,
        Asked::First => &lines.ask_fields,
    };
    fill(line, &[("fields", &list), ("phrase", phrase)])
}

/// The questions the master asks for delegated tasks' fields that are the same for every caller:
/// the first question of each task (all its fields) and the questions for one field at a time,
/// with the descriptions the in-process agents give (`agents::LocalAgent`). For the voice to
/// have them ready (`runtime::speech::Speech::prewarm`); a description that names a record's
/// data ("{reservation.number}") is left out.
pub fn field_questions(template: &Template) -> Vec<String> {
    let mut out = vec![];
    for spec in template.tasks.values() {
        if spec.agent.as_deref() == Some(MASTER_AGENT) {
            continue;
        }
        let descs: Vec<String> = spec
            .required
            .iter()
            .filter(|f| f.field_type != FieldType::Confirm)
            .map(|f| f.description.clone())
            .collect();
        if descs.is_empty() || descs.iter().any(|d| d.contains(['{', '}'])) {
            continue;
        }
        out.push(fields_question(
            &template.lines,
            Some(spec),
            &descs,
            Asked::First,
        ));
        for one in &descs {
            for asked in [Asked::Rest, Asked::Again] {
                let one = std::slice::from_ref(one);
                out.push(fields_question(&template.lines, Some(spec), one, asked));
            }
        }
    }
    out
}

impl Master {
    /// Delegates `task`, then speaks the outcome; on failure walks the fallback chain.
    pub(super) async fn dispatch(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        agent: Option<String>,
        mut params: Map<String, Value>,
    ) {
        let candidates = self.dispatcher.registry.candidates(task);
        let primary = agent
            .as_deref()
            .and_then(|id| candidates.iter().find(|a| a.card().id == id).cloned())
            .or_else(|| candidates.first().cloned());
        let Some(primary) = primary else {
            return self
                .fallback(cx, task, None, params, unavailable(task))
                .await;
        };
        let id = primary.card().id.clone();
        cx.turn.agent = Some(id.clone());
        let mut d;
        let mut asked_again = false;
        loop {
            let input = self.input(cx, task, &id, params.clone());
            d = self
                .dispatcher
                .delegate(primary.clone(), input, 0, cx.deadline)
                .await;
            self.record_attempts(cx, &d.attempts);
            // A choice the caller already made in the words that started this ("how much do I
            // owe on the business account?"): answered at once instead of asked.
            if !asked_again
                && let Ok(out) = &d.result
                && let Some((field, value)) = self.already_chosen(cx, task, out, &params)
            {
                params.insert(field, Value::from(value));
                asked_again = true;
                continue;
            }
            break;
        }
        match d.result {
            Ok(out)
                if !(out.status == Status::Error
                    && out.error.as_ref().is_some_and(|e| e.retryable)) =>
            {
                self.speak_output(cx, task, &d.agent, &params, out)
            }
            Ok(out) => {
                let err = out.error.unwrap_or_else(|| unavailable(task));
                self.fallback(cx, task, Some(id), params, err).await
            }
            Err(e)
                if e.code == ErrorCode::InvalidOutput
                    || e.code == ErrorCode::DelegationDepthExceeded =>
            {
                self.escalate(cx, &format!("{id}: {}", e.message)).await
            }
            Err(e) => self.fallback(cx, task, Some(id), params, e).await,
        }
    }

    /// The option of a sub-agent's choice question that the caller's words this turn already
    /// name, with the field it fills.
    fn already_chosen(
        &self,
        cx: &Ctx<'_>,
        task: &str,
        out: &AgentOutput,
        params: &Map<String, Value>,
    ) -> Option<(String, String)> {
        let clar = out.clarification.as_ref()?;
        if clar.kind == ClarificationType::Confirmation {
            return None;
        }
        let field = clar.field.clone()?;
        if params.contains_key(&field) {
            return None;
        }
        if self
            .template
            .field(task, &field)
            .is_some_and(|f| f.field_type == FieldType::Urgency)
        {
            let u = crate::agent::slots::extract_urgency(&cx.said)?;
            return Some((field, u.as_str().to_string()));
        }
        let i = super::render::match_option_words(&cx.said, &clar.options)?;
        Some((field, clar.options[i].value.clone()))
    }

    /// Seed 000 fallback chain: cached data → alternative agent → degraded answer → human.
    async fn fallback(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        failed: Option<String>,
        params: Map<String, Value>,
        error: ErrorInfo,
    ) {
        self.system(
            cx,
            &format!(
                "{task} failed with {}: {}; trying fallbacks",
                error.code, error.message
            ),
        );
        // 1. Cached data from earlier in the session, re-sent to the same agent.
        if let Some(agent_id) = &failed
            && let Some(Value::Object(cached)) = cx.conv.cache.get(agent_id).cloned()
            && let Some(agent) = self.dispatcher.registry.get(agent_id)
            && Instant::now() < cx.deadline
        {
            let mut p = params.clone();
            for (k, v) in &cached {
                p.insert(format!("cached_{k}"), v.clone());
            }
            for (k, v) in &cx.conv.slots {
                p.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let input = self.input(cx, task, agent_id, p.clone());
            let d = self.dispatcher.delegate(agent, input, 0, cx.deadline).await;
            self.record_attempts(cx, &d.attempts);
            if let Ok(out) = d.result
                && out.status != Status::Error
            {
                cx.turn.fallback = Some(Fallback::CachedData);
                cx.turn.audit.push((
                    "fallback".into(),
                    json!({"task": task, "used": "cached_data"}),
                ));
                return self.speak_output(cx, task, &d.agent, &p, out);
            }
        }
        // 2. Another healthy agent that declares the task.
        let alternatives: Vec<_> = self
            .dispatcher
            .registry
            .candidates(task)
            .into_iter()
            .filter(|a| Some(&a.card().id) != failed.as_ref())
            .collect();
        for alt in alternatives {
            if Instant::now() >= cx.deadline {
                break;
            }
            let id = alt.card().id.clone();
            let input = self.input(cx, task, &id, params.clone());
            let d = self.dispatcher.delegate(alt, input, 0, cx.deadline).await;
            self.record_attempts(cx, &d.attempts);
            if let Ok(out) = d.result
                && out.status != Status::Error
            {
                cx.turn.fallback = Some(Fallback::AlternativeAgent);
                cx.turn.agent = Some(id.clone());
                cx.turn.audit.push((
                    "fallback".into(),
                    json!({"task": task, "used": "alternative_agent", "agent": id}),
                ));
                return self.speak_output(cx, task, &d.agent, &params, out);
            }
        }
        // 3. A degraded answer for transient failures, if the template has one.
        let degraded = self
            .template
            .tasks
            .get(task)
            .and_then(|t| t.replies.get("degraded"));
        if let Some(text) = degraded
            && (error.retryable || error.code == ErrorCode::AgentUnavailable)
        {
            let body = speech::render(text, &Value::Object(params.clone()));
            cx.turn.fallback = Some(Fallback::Degraded);
            cx.turn.audit.push((
                "fallback".into(),
                json!({"task": task, "used": "degraded", "error": error.code}),
            ));
            self.close(cx, &body, failed.as_deref());
            cx.turn.status = TurnStatus::Fallback;
            return;
        }
        // 4. A person.
        cx.turn.fallback = Some(Fallback::Human);
        self.escalate(cx, &format!("{task} failed: {}", error.message))
            .await
    }

    /// Ends an answer: offers the second request the caller made in the same breath, if any,
    /// else asks whether there is anything else.
    pub(super) fn close(&self, cx: &mut Ctx<'_>, body: &str, agent: Option<&str>) {
        if let Some(q) = cx.conv.queued.take()
            && let Some(spec) = self.template.tasks.get(&q.task)
        {
            let offer = fill(
                &self.template.lines.queued_offer,
                &[("topic", &spec.topic), ("phrase", &spec.phrase)],
            );
            self.ask(cx, &join(body, &offer), agent);
            cx.conv.pending = Pending::FollowUp {
                task: q.task,
                params: q.params,
            };
            return;
        }
        self.say(cx, &join(body, &self.template.anything_else), agent);
        cx.conv.pending = Pending::AnythingElse;
    }

    fn speak_output(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        agent: &str,
        params: &Map<String, Value>,
        out: AgentOutput,
    ) {
        // A remote agent's words are never spoken: the template's are (see `own_words`).
        let remote = self
            .dispatcher
            .registry
            .get(agent)
            .is_none_or(|a| a.card().is_remote());
        let out = if remote {
            match super::own_words::own_words(&self.template, task, params, out) {
                Ok(o) => o,
                Err(why) => {
                    tracing::warn!(agent, task, %why, "a remote agent's answer was not used");
                    self.system(cx, &format!("answer from {agent} not used: {why}"));
                    cx.turn.audit.push((
                        "agent_answer_refused".into(),
                        json!({"task": task, "agent": agent, "why": why}),
                    ));
                    let spec = self.template.tasks.get(task);
                    let body = fill(
                        &self.template.lines.could_not,
                        &[(
                            "phrase",
                            spec.map(|s| s.phrase.as_str()).unwrap_or("do that"),
                        )],
                    );
                    cx.turn.status = TurnStatus::Error;
                    self.close(cx, &body, Some(agent));
                    return;
                }
            }
        } else {
            out
        };
        cx.turn.status = match out.status {
            Status::Success => TurnStatus::Success,
            Status::NeedsInfo => TurnStatus::NeedsInfo,
            Status::Error => TurnStatus::Error,
            Status::Partial => TurnStatus::Partial,
        };
        let spec = self.template.tasks.get(task);
        match out.status {
            Status::Success | Status::Partial => {
                cx.conv.cache.insert(agent.into(), out.data.clone());
                // What identified the record is remembered for the next task and for repeats.
                if let Some(spec) = spec {
                    for f in spec.required.iter().chain(&spec.optional) {
                        if identifies(f.field_type)
                            && let Some(v) = params.get(&f.field)
                        {
                            cx.conv.slots.insert(f.field.clone(), v.clone());
                        }
                    }
                }
                // A yes given for this action is not a yes for the next one: a correction or
                // a repeat reads back again before it writes.
                let mut kept = params.clone();
                if let Some(spec) = spec {
                    for f in spec.required.iter().chain(&spec.optional) {
                        if f.field_type == FieldType::Confirm {
                            kept.remove(&f.field);
                        }
                    }
                }
                cx.conv.last_task = Some(DoneTask {
                    task: task.into(),
                    agent: agent.into(),
                    params: kept,
                });
                let mut ctx = params.clone();
                if let Value::Object(d) = &out.data {
                    ctx.extend(d.clone());
                }
                let ctx = Value::Object(ctx);
                let variant = out
                    .data
                    .get("variant")
                    .and_then(Value::as_str)
                    .and_then(|v| spec.and_then(|s| s.replies.get(&format!("success_{v}"))));
                let body = variant
                    .or_else(|| spec.and_then(|s| s.replies.get("success")))
                    .map(|t| speech::render(t, &ctx))
                    .unwrap_or_else(|| "That's done.".into());
                if Some(task) == self.template.handoff_task() {
                    return self.say(cx, &body, Some(agent));
                }
                self.set_case(cx, CaseStatus::Resolved, &format!("{task} done"));
                // Offer the follow-up the sub-agent suggested, if the template knows how (and
                // the caller has not queued another request).
                let follow = spec.and_then(|s| s.follow_up.as_ref()).filter(|f| {
                    cx.conv.queued.is_none()
                        && out.metadata.suggested_actions.contains(&f.task)
                        && self.task_available(&f.task)
                });
                match follow {
                    Some(f) => {
                        let carried: Map<String, Value> = f
                            .carry
                            .iter()
                            .filter_map(|(to, from)| ctx.get(from).map(|v| (to.clone(), v.clone())))
                            .collect();
                        self.ask(cx, &join(&body, &f.question), Some(agent));
                        cx.conv.pending = Pending::FollowUp {
                            task: f.task.clone(),
                            params: carried,
                        };
                    }
                    None => self.close(cx, &body, Some(agent)),
                }
            }
            Status::NeedsInfo => {
                if let Some(clar) = out.clarification {
                    if clar.kind == ClarificationType::Confirmation {
                        let matched = out
                            .data
                            .get("match")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default();
                        let line = spec.and_then(|s| s.replies.get("confirm_match"));
                        let q = match line {
                            Some(t) => speech::render(t, &out.data),
                            None => {
                                let label = clar.options.first().map_or("", |o| o.label.as_str());
                                format!("Did you mean {label}?")
                            }
                        };
                        self.ask(cx, &q, Some(agent));
                        cx.turn.status = TurnStatus::Confirming;
                        cx.conv.pending = Pending::ConfirmMatch {
                            task: task.into(),
                            agent: agent.into(),
                            params: params.clone(),
                            matched,
                        };
                        return;
                    }
                    let q = format!("{} {}", clar.question, options_sentence(&clar.options));
                    self.ask(cx, &q, Some(agent));
                    cx.conv.pending = Pending::Clarify {
                        task: task.into(),
                        agent: agent.into(),
                        params: params.clone(),
                        clarification: clar,
                        asks: 0,
                    };
                    return;
                }
                let confirm = out
                    .required
                    .iter()
                    .find(|f| FieldType::parse(&f.field_type) == FieldType::Confirm)
                    .cloned();
                let asking: Vec<RequiredField> = match confirm {
                    // Everything else is known: ask the yes/no question the agent phrased.
                    Some(c) if out.required.len() == 1 => {
                        self.ask(cx, &c.description, Some(agent));
                        vec![c]
                    }
                    _ => {
                        let fields: Vec<RequiredField> = out
                            .required
                            .iter()
                            .filter(|f| FieldType::parse(&f.field_type) != FieldType::Confirm)
                            .cloned()
                            .collect();
                        let descs: Vec<String> =
                            fields.iter().map(|f| f.description.clone()).collect();
                        let given = spec.is_some_and(|s| {
                            s.required.iter().any(|f| params.contains_key(&f.field))
                        });
                        let again = fields.iter().any(|f| params.contains_key(&f.field));
                        let asked = if again {
                            Asked::Again
                        } else if given {
                            Asked::Rest
                        } else {
                            Asked::First
                        };
                        let q = fields_question(&self.template.lines, spec, &descs, asked);
                        self.ask(cx, &q, Some(agent));
                        fields
                    }
                };
                cx.conv.pending = Pending::Slots {
                    task: task.into(),
                    agent: agent.into(),
                    params: params.clone(),
                    fields: asking,
                    asks: 0,
                };
            }
            Status::Error => {
                let code = out.error_code().unwrap_or(ErrorCode::UnexpectedError);
                let text = spec.and_then(|s| s.replies.get(code.as_str()));
                match text {
                    Some(t) => {
                        let reply = speech::render(t, &Value::Object(params.clone()));
                        self.ask(cx, &reply, Some(agent));
                        // Re-ask the identifying codes for a not-found answer.
                        let fields: Vec<RequiredField> = spec
                            .map(|s| {
                                s.required
                                    .iter()
                                    .chain(&s.optional)
                                    .filter(|f| f.field_type == FieldType::String)
                                    .map(|f| RequiredField {
                                        field: f.field.clone(),
                                        field_type: f.field_type.as_str().into(),
                                        description: f.description.clone(),
                                        validation: Some(Validation {
                                            pattern: f.pattern.clone(),
                                            example: f.example.clone(),
                                        }),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        // The old values stay in the request: "the name is actually Jane"
                        // retries with the code already given.
                        let p = params.clone();
                        for f in &fields {
                            cx.conv.slots.remove(&f.field);
                        }
                        cx.conv.pending = if fields.is_empty() {
                            Pending::None
                        } else {
                            Pending::Slots {
                                task: task.into(),
                                agent: agent.into(),
                                params: p,
                                fields,
                                asks: 0,
                            }
                        };
                    }
                    None => {
                        let body = fill(
                            &self.template.lines.could_not,
                            &[(
                                "phrase",
                                spec.map(|s| s.phrase.as_str()).unwrap_or("do that"),
                            )],
                        );
                        self.close(cx, &body, Some(agent));
                    }
                }
            }
        }
    }

    pub(super) async fn escalate(&self, cx: &mut Ctx<'_>, reason: &str) {
        cx.turn
            .intent
            .get_or_insert_with(|| self.template.handoff_task().unwrap_or("escalate").into());
        self.system(cx, &format!("escalating to a human: {reason}"));
        let mut reply = self.template.lines.hold_for_person.clone();
        let mut to = self.template.human_number.clone();
        if let Some(task) = self.template.handoff_task()
            && let Some(agent) = self.dispatcher.registry.candidates(task).into_iter().next()
        {
            let id = agent.card().id.clone();
            // Where a call is transferred and what is said is never a remote agent's word.
            let built_in = !agent.card().is_remote();
            cx.turn.agent = Some(id.clone());
            let mut p = Map::new();
            p.insert("reason".into(), Value::from(reason));
            let input = self.input(cx, task, &id, p);
            let deadline = Instant::now() + self.dispatcher.attempt_timeout;
            let d = self.dispatcher.delegate(agent, input, 0, deadline).await;
            self.record_attempts(cx, &d.attempts);
            if let Ok(out) = d.result
                && out.status == Status::Success
                && built_in
            {
                if let Some(n) = out.data.get("transfer_to").and_then(Value::as_str) {
                    to = n.to_string();
                }
                if let Some(t) = self
                    .template
                    .tasks
                    .get(task)
                    .and_then(|s| s.replies.get("success"))
                {
                    reply = speech::render(t, &out.data);
                }
            }
        }
        self.set_case(cx, CaseStatus::Escalated, reason);
        self.say(cx, &reply, cx.turn.agent.clone().as_deref());
        cx.turn.status = TurnStatus::Escalated;
        cx.turn.action = Some(EndAction::Transfer { to });
        cx.turn.ended = true;
        cx.conv.ended = true;
        cx.conv.escalated = true;
        cx.conv.pending = Pending::None;
    }

    /// The caller's goodbye. A text conversation's case closes now; a call's closes when the
    /// call does (the caller may still talk over the goodbye, which revives the conversation).
    pub(super) fn end_call(&self, cx: &mut Ctx<'_>) {
        cx.turn.intent = Some(END_CALL.into());
        let farewell = self.template.farewell.clone();
        self.say(cx, &farewell, None);
        if !super::is_call(&cx.conv.channel) {
            self.set_case(cx, CaseStatus::Closed, "caller ended the call");
        }
        cx.turn.status = TurnStatus::Ended;
        cx.turn.action = Some(EndAction::Hangup);
        cx.turn.ended = true;
        cx.conv.ended = true;
        cx.conv.pending = Pending::None;
        cx.conv.queued = None;
    }
}

/// Two sentences as one reply.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a} {b}"),
    }
}
