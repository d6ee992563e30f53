//! The record a turn leaves: what the bot said (history and central log), case status changes,
//! audit entries, and each delegation's request and reply in the central log.

use super::state::{Role, Utterance};
use super::{Ctx, Master};
use crate::agent::protocol::{AgentInput, Context, HistoryEntry, Priority};
use crate::agent::registry::Attempt;
use crate::config::MASTER_AGENT;
use crate::store::{CaseStatus, LogEntry, LogMetadata, LogType};
use serde_json::{Map, Value, json};

impl Master {
    /// Says something that expects an answer: the case waits on the customer.
    pub(super) fn ask(&self, cx: &mut Ctx<'_>, text: &str, agent: Option<&str>) {
        self.say(cx, text, agent);
        cx.conv.last_question = text.to_string();
        self.set_case(cx, CaseStatus::WaitingCustomer, "asked the caller");
    }

    pub(super) fn say(&self, cx: &mut Ctx<'_>, text: &str, agent: Option<&str>) {
        let thread = agent.and_then(|a| cx.conv.threads.get(a).cloned());
        cx.conv.history.push(Utterance {
            role: Role::Agent,
            content: text.to_string(),
            timestamp: self.clock.now_ms(),
            thread,
            interrupted: false,
        });
        let excess = cx.conv.history.len().saturating_sub(self.history_cap);
        cx.conv.history.drain(..excess);
        if !cx.turn.reply.is_empty() {
            cx.turn.reply.push(' ');
        }
        cx.turn.reply.push_str(text);
        let caller = cx.conv.caller_id.clone();
        self.log(
            cx,
            LogType::AgentToCaller,
            MASTER_AGENT,
            &caller,
            text,
            LogMetadata::default(),
        );
    }

    pub(super) fn set_case(&self, cx: &mut Ctx<'_>, to: CaseStatus, note: &str) {
        let from = cx.conv.case_status;
        if from == to || cx.conv.escalated || !from.can_transition_to(to) {
            return;
        }
        cx.conv.case_status = to;
        cx.turn.case_changes.push((to, note.to_string()));
    }

    pub(super) fn system(&self, cx: &mut Ctx<'_>, text: &str) {
        tracing::info!(conversation = %cx.conv.id, "{text}");
        self.log(
            cx,
            LogType::System,
            MASTER_AGENT,
            MASTER_AGENT,
            text,
            LogMetadata::default(),
        );
    }

    pub(super) fn log(
        &self,
        cx: &mut Ctx<'_>,
        t: LogType,
        from: &str,
        to: &str,
        message: &str,
        metadata: LogMetadata,
    ) {
        cx.turn.logs.push(LogEntry {
            id: format!("log_{}", uuid::Uuid::new_v4().simple()),
            timestamp: self.clock.now_ms(),
            session_id: cx.conv.id.clone(),
            log_type: t,
            from: from.into(),
            to: to.into(),
            message: message.into(),
            metadata,
        });
    }

    /// Builds the protocol input for `agent`, tagging the latest caller words with its thread.
    pub(super) fn input(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        agent: &str,
        params: Map<String, Value>,
    ) -> AgentInput {
        cx.conv.seq += 1;
        let thread = cx
            .conv
            .threads
            .entry(agent.to_string())
            .or_insert_with(|| format!("thread_{}_{agent}", cx.conv.id))
            .clone();
        if let Some(u) = cx
            .conv
            .history
            .iter_mut()
            .rev()
            .find(|u| u.role == Role::Caller)
            && u.thread.is_none()
        {
            u.thread = Some(thread.clone());
        }
        let history = cx
            .conv
            .history
            .iter()
            .filter(|u| u.thread.as_deref() == Some(thread.as_str()))
            .map(|u| HistoryEntry {
                role: u.role.as_str().into(),
                content: u.content.clone(),
                timestamp: Some(u.timestamp),
                interrupted: u.interrupted,
            })
            .collect();
        let mut metadata = Map::new();
        metadata.insert("accessLevel".into(), json!("standard"));
        metadata.insert("language".into(), json!("en"));
        metadata.insert("caseId".into(), json!(cx.conv.case_id));
        metadata.insert("channel".into(), json!(cx.conv.channel));
        if cx.conv.by_line {
            metadata.insert("identifiedBy".into(), json!("phone_line"));
        }
        AgentInput {
            task: task.into(),
            parameters: params,
            context: Context {
                thread_id: thread,
                session_id: cx.conv.id.clone(),
                caller_id: cx.conv.caller_id.clone(),
                conversation_history: history,
                metadata,
            },
            request_id: format!("req_{:03}", cx.conv.seq),
            timestamp: self.clock.now_ms(),
            priority: Priority::Normal,
            timeout: Some(self.dispatcher.attempt_timeout.as_millis() as u64),
            retry_count: 0,
        }
    }

    pub(super) fn record_attempts(&self, cx: &mut Ctx<'_>, attempts: &[Attempt]) {
        for a in attempts {
            let thread = cx.conv.threads.get(&a.agent).cloned();
            let request = json!({"task": a.task, "parameters": a.parameters, "requestId": a.request_id, "retryCount": a.retry});
            self.log(
                cx,
                LogType::AgentToAgent,
                MASTER_AGENT,
                &a.agent,
                &format!("REQUEST {request}"),
                LogMetadata {
                    message_id: Some(a.request_id.clone()),
                    thread_id: thread.clone(),
                    ..Default::default()
                },
            );
            let reply = match &a.output {
                Some(o) => serde_json::to_string(o).unwrap_or_default(),
                None => format!("{} {}", a.outcome, a.error_code.clone().unwrap_or_default()),
            };
            let performative = match a.outcome.as_str() {
                "needs_info" => "CLARIFY",
                _ => "INFORM",
            };
            self.log(
                cx,
                LogType::AgentToAgent,
                &a.agent,
                MASTER_AGENT,
                &format!("{performative} {reply}"),
                LogMetadata {
                    message_id: Some(a.request_id.clone()),
                    thread_id: thread,
                    duration: Some(a.elapsed_ms as i64),
                    success: Some(matches!(
                        a.outcome.as_str(),
                        "success" | "needs_info" | "partial"
                    )),
                    error: a.error_code.clone(),
                },
            );
            if a.retry > 0 {
                self.system(
                    cx,
                    &format!("retry {} of {} to {}", a.retry, a.task, a.agent),
                );
            }
        }
        cx.turn.attempts.extend_from_slice(attempts);
        cx.turn.audit.extend(attempts.iter().map(|a| {
            (
                "delegated".to_string(),
                json!({"agent": a.agent, "task": a.task, "requestId": a.request_id, "retry": a.retry,
                       "outcome": a.outcome, "error": a.error_code, "source": a.source}),
            )
        }));
    }
}
