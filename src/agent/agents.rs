//! The in-process sub-agents (seed 000 "Sub-Agents"): reservations, billing, support,
//! concierge and human handoff. Each is configured from a template's `[[agents]]` entry and the
//! `[tasks.*]` it declares (required fields with validation patterns), talks to the systems of
//! record through `DataSource`, and answers strictly in the protocol of `protocol.rs`:
//! `needs_info` with the fields still missing, a `clarification` when the caller must choose,
//! `error` with a seed error code, or `success` with data. They never speak to the caller —
//! the master owns every word.

use crate::agent::clock::Clock;
use crate::agent::data::{DataSource, DeferredWrite, Reservation, SourceError};
use crate::agent::protocol::{
    AgentInput, AgentOutput, ClarOption, Clarification, ClarificationType, ErrorCode,
    RequiredField, Validation,
};
use crate::agent::registry::{AgentCard, DispatchError, SubAgent};
use crate::agent::speech;
use crate::config::{AgentKind, AgentSpec, FieldSpec, FieldType, Template};
use chrono::NaiveDate;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct LocalAgent {
    card: AgentCard,
    kind: AgentKind,
    required: BTreeMap<String, Vec<FieldSpec>>,
    human_number: String,
    data: Arc<dyn DataSource>,
    clock: Arc<dyn Clock>,
}

impl LocalAgent {
    pub fn new(
        spec: &AgentSpec,
        template: &Template,
        data: Arc<dyn DataSource>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let required = spec
            .tasks
            .iter()
            .filter_map(|t| {
                template
                    .tasks
                    .get(t)
                    .map(|ts| (t.clone(), ts.required.clone()))
            })
            .collect();
        Self {
            card: AgentCard {
                id: spec.id.clone(),
                specialty: spec.specialty.clone(),
                kind: kind_name(&spec.kind).into(),
                tasks: spec.tasks.clone(),
                capabilities: spec.capabilities.clone(),
                endpoint: None,
                health_url: None,
            },
            kind: spec.kind.clone(),
            required,
            human_number: template.human_number.clone(),
            data,
            clock,
        }
    }

    /// Every in-process agent a template declares.
    pub fn all(
        template: &Template,
        data: Arc<dyn DataSource>,
        clock: Arc<dyn Clock>,
    ) -> Vec<Arc<dyn SubAgent>> {
        template
            .agents
            .iter()
            .map(|a| {
                Arc::new(LocalAgent::new(a, template, data.clone(), clock.clone()))
                    as Arc<dyn SubAgent>
            })
            .collect()
    }

    fn answer(&self, input: &AgentInput) -> AgentOutput {
        let Some(fields) = self.required.get(&input.task) else {
            return self.err(
                input,
                ErrorCode::UnknownTask,
                format!("{} does not do {}", self.card.id, input.task),
            );
        };
        if let Some(bad) = input.parameters.iter().find(|(_, v)| v.is_array()) {
            return self.err(
                input,
                ErrorCode::InvalidInput,
                format!("parameter {} must not be a list", bad.0),
            );
        }
        let r = match self.kind {
            AgentKind::Reservations => self.reservations(input, fields),
            AgentKind::Billing => self.billing(input, fields),
            AgentKind::Support => self.support(input),
            AgentKind::Concierge => self.concierge(input, fields),
            AgentKind::Handoff => Ok(self.ok(
                input,
                json!({"transfer_to": self.human_number, "queue_position": 1,
                       "reason": input.param("reason").unwrap_or("caller request")}),
            )),
        };
        r.unwrap_or_else(|e| match e {
            SourceError::Unavailable(what) => {
                let mut out = self.err(
                    input,
                    ErrorCode::ExternalApiFailure,
                    format!("Could not connect to {what}"),
                );
                if let Some(err) = out.error.as_mut() {
                    err.details = json!({"error_type": "NetworkError", "retryable": true});
                }
                out
            }
            SourceError::Rejected(msg) => self.err(input, ErrorCode::InvalidInput, msg),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn ok(&self, input: &AgentInput, data: Value) -> AgentOutput {
        let mut out = AgentOutput::success(input, data, self.now()).with_source("direct");
        out.metadata.confidence = Some(1.0);
        out
    }

    fn err(&self, input: &AgentInput, code: ErrorCode, msg: impl Into<String>) -> AgentOutput {
        AgentOutput::error(input, code, msg, Value::Null, self.now())
    }

    /// Required fields of the task that are missing or fail their validation pattern.
    fn missing(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
        skip: &[&str],
    ) -> Vec<RequiredField> {
        fields
            .iter()
            .filter(|f| !skip.contains(&f.field.as_str()))
            .filter(|f| !valid(input.parameters.get(&f.field), f))
            .map(|f| RequiredField {
                field: f.field.clone(),
                field_type: f.field_type.as_str().into(),
                description: speech::render(
                    &f.description,
                    &Value::Object(input.parameters.clone()),
                ),
                validation: (f.pattern.is_some() || f.example.is_some()).then(|| Validation {
                    pattern: f.pattern.clone(),
                    example: f.example.clone(),
                }),
            })
            .collect()
    }

    // ------------------------------------------------------------------ reservations

    fn reservations(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
    ) -> Result<AgentOutput, SourceError> {
        let action = input.task.split('_').next().unwrap_or_default();
        let caller = &input.context.caller_id;
        if action == "cancel" {
            return self.cancel(input, fields);
        }
        let missing = self.missing(input, fields, &[]);
        if !missing.is_empty() {
            return Ok(AgentOutput::needs_info(input, missing, self.now()));
        }
        let number = input.param("reservation_number").unwrap_or_default();
        let name = input.param("full_name").unwrap_or_default();
        let Some(r) = self.data.find_reservation(number)? else {
            return Ok(not_found(input, self.now()));
        };
        if !same_name(&r.guest_name, name) && r.caller_id != *caller {
            return Ok(not_found(input, self.now()));
        }
        match action {
            "modify" => {
                let Some(date) = input.param("new_date").and_then(parse_day) else {
                    return Ok(AgentOutput::needs_info(
                        input,
                        self.missing(input, fields, &[]),
                        self.now(),
                    ));
                };
                let moved = self.data.move_reservation(&r.number, date)?;
                Ok(self.ok(input, json!({"reservation": reservation_json(&moved)})))
            }
            _ => Ok(self.ok(input, json!({"reservation": reservation_json(&r)}))),
        }
    }

    fn cancel(&self, input: &AgentInput, fields: &[FieldSpec]) -> Result<AgentOutput, SourceError> {
        let caller = &input.context.caller_id;
        // Cached-data fallback (seed 000 Scenario 3): the master re-sends what it learned earlier
        // in the session; if the system of record is still down the cancellation is accepted,
        // queued for replay, and answered from the cached booking.
        if let Some(cached) = input.parameters.get("cached_reservation") {
            let number = cached.get("number").and_then(Value::as_str);
            let fee = cached.get("cancellation_fee").and_then(speech::to_cents);
            let total = cached.get("total").and_then(speech::to_cents);
            let (Some(number), Some(fee), Some(total)) = (number, fee, total) else {
                return Ok(self.err(
                    input,
                    ErrorCode::InvalidInput,
                    "cached_reservation lacks number, total or fee",
                ));
            };
            return match self.data.cancel_reservation(number) {
                Ok(c) => Ok(self.ok(
                    input,
                    cancellation_json(&c.reservation.number, c.fee, c.refund),
                )),
                Err(SourceError::Unavailable(_)) => {
                    self.data.defer_write(DeferredWrite {
                        kind: "cancel_reservation".into(),
                        reference: number.to_string(),
                        at: self.now().to_string(),
                    })?;
                    let mut out = self.ok(input, cancellation_json(number, fee, total - fee));
                    out.metadata.source = Some("cached_data".into());
                    out.metadata.note =
                        Some("Used cached data due to external system unavailability".into());
                    Ok(out)
                }
                Err(e) => Err(e),
            };
        }
        let target = if let Some(number) = input.param("reservation_number").filter(|n| {
            fields
                .iter()
                .find(|f| f.field == "reservation_number")
                .is_none_or(|f| valid(Some(&Value::String((*n).into())), f))
        }) {
            let Some(r) = self.data.find_reservation(number)? else {
                return Ok(not_found(input, self.now()));
            };
            let name_ok = input
                .param("full_name")
                .is_some_and(|n| same_name(&r.guest_name, n));
            if r.caller_id != *caller && !name_ok {
                if input.param("full_name").is_none() {
                    let missing = self.missing(input, fields, &["reservation_number"]);
                    return Ok(AgentOutput::needs_info(input, missing, self.now()));
                }
                return Ok(not_found(input, self.now()));
            }
            r
        } else if let Some((start, end)) = timeframe(input.parameters.get("timeframe")) {
            // "Cancel my reservation for next week": the caller's line identifies them.
            let mine: Vec<Reservation> = self
                .data
                .reservations_of(caller)?
                .into_iter()
                .filter(|r| {
                    r.status != "cancelled" && r.arrival().is_some_and(|d| d >= start && d <= end)
                })
                .collect();
            match mine.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Ok(AgentOutput::needs_info(
                        input,
                        self.missing(input, fields, &[]),
                        self.now(),
                    ));
                }
                many => {
                    let options = many
                        .iter()
                        .map(|r| ClarOption {
                            value: r.number.clone(),
                            label: format!(
                                "Reservation {} on {}",
                                r.number,
                                r.arrival().map(speech::spoken_date).unwrap_or_default()
                            ),
                        })
                        .collect();
                    let clar = Clarification {
                        question: "Which reservation would you like to cancel?".into(),
                        options,
                        kind: ClarificationType::SingleChoice,
                        field: Some("reservation_number".into()),
                    };
                    return Ok(AgentOutput::clarify(input, clar, self.now()));
                }
            }
        } else {
            return Ok(AgentOutput::needs_info(
                input,
                self.missing(input, fields, &[]),
                self.now(),
            ));
        };
        let c = self.data.cancel_reservation(&target.number)?;
        Ok(self.ok(
            input,
            cancellation_json(&c.reservation.number, c.fee, c.refund),
        ))
    }

    // ------------------------------------------------------------------ billing

    fn billing(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
    ) -> Result<AgentOutput, SourceError> {
        let accounts = self.data.accounts_of(&input.context.caller_id)?;
        let account = match input.param("account_id") {
            Some(id) => match accounts.iter().find(|a| a.id == id) {
                Some(a) => a.clone(),
                None => {
                    return Ok(self.err(
                        input,
                        ErrorCode::AccountNotFound,
                        "no such account for this caller",
                    ));
                }
            },
            None => match accounts.as_slice() {
                [] => {
                    return Ok(self.err(
                        input,
                        ErrorCode::AccountNotFound,
                        "the caller has no accounts",
                    ));
                }
                [one] => one.clone(),
                many => {
                    let verb = if input.task == "make_payment" {
                        "Which account would you like to pay?"
                    } else {
                        "Which account would you like to see the bill for?"
                    };
                    let clar = Clarification {
                        question: verb.into(),
                        options: many
                            .iter()
                            .map(|a| ClarOption {
                                value: a.id.clone(),
                                label: a.label(),
                            })
                            .collect(),
                        kind: ClarificationType::SingleChoice,
                        field: Some("account_id".into()),
                    };
                    return Ok(AgentOutput::clarify(input, clar, self.now()));
                }
            },
        };
        if input.task == "make_payment" {
            let mut params = input.parameters.clone();
            params.insert("account_id".into(), json!(account.id));
            params.insert(
                "account_label".into(),
                json!(speech::speakable_label(&account.label())),
            );
            let view = AgentInput {
                parameters: params,
                ..input.clone()
            };
            let missing = self.missing(&view, fields, &["account_id"]);
            if !missing.is_empty() {
                return Ok(AgentOutput::needs_info(input, missing, self.now()));
            }
            let cents = input
                .parameters
                .get("amount")
                .and_then(speech::to_cents)
                .unwrap_or(0);
            let confirmation = self.data.record_payment(&account.id, cents)?;
            return Ok(self.ok(
                input,
                json!({"account_id": account.id, "amount": cents as f64 / 100.0, "confirmation": confirmation}),
            ));
        }
        let month = input
            .param("month")
            .filter(|m| m.len() == 7 && m.as_bytes()[4] == b'-')
            .map(str::to_string)
            .unwrap_or_else(|| self.clock.today().format("%Y-%m").to_string());
        let Some(bill) = self.data.bill(&account.id, &month)? else {
            let mut out = self.err(
                input,
                ErrorCode::BillNotFound,
                format!("no bill for {month}"),
            );
            if let Some(e) = out.error.as_mut() {
                e.details = json!({"account_id": account.id, "month": month});
            }
            return Ok(out);
        };
        let mut out = self.ok(
            input,
            json!({
                "account_id": bill.account_id,
                "month": bill.month,
                "total_amount": bill.total as f64 / 100.0,
                "currency": bill.currency,
                "items": bill.items.iter().map(|i| json!({"description": i.description, "amount": i.amount as f64 / 100.0})).collect::<Vec<_>>(),
                "due_date": bill.due_date,
                "status": bill.status,
            }),
        );
        if bill.status == "pending" {
            out.metadata.suggested_actions = vec!["make_payment".into()];
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ support

    fn support(&self, input: &AgentInput) -> Result<AgentOutput, SourceError> {
        let severity = input
            .param("severity")
            .map(str::to_ascii_lowercase)
            .filter(|s| ["low", "medium", "high"].contains(&s.as_str()));
        let Some(severity) = severity else {
            let clar = Clarification {
                question: "How urgent is it?".into(),
                options: ["low", "medium", "high"]
                    .iter()
                    .map(|s| ClarOption {
                        value: (*s).into(),
                        label: format!("{s} priority"),
                    })
                    .collect(),
                kind: ClarificationType::SingleChoice,
                field: Some("severity".into()),
            };
            return Ok(AgentOutput::clarify(input, clar, self.now()));
        };
        let description = input
            .param("description")
            .map(str::to_string)
            .or_else(|| {
                input
                    .context
                    .conversation_history
                    .iter()
                    .find(|h| h.role == "caller")
                    .map(|h| h.content.clone())
            })
            .unwrap_or_else(|| "no description".into());
        let ticket = self
            .data
            .create_ticket(&input.context.caller_id, &severity, &description)?;
        Ok(self.ok(
            input,
            json!({"ticket_id": ticket, "severity": severity, "description": description}),
        ))
    }

    // ------------------------------------------------------------------ concierge

    fn concierge(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
    ) -> Result<AgentOutput, SourceError> {
        if input.task == "get_recommendations" {
            return Ok(self.ok(
                input,
                json!({"recommendations": self.data.recommendations()?}),
            ));
        }
        let missing = self.missing(input, fields, &[]);
        if !missing.is_empty() {
            return Ok(AgentOutput::needs_info(input, missing, self.now()));
        }
        let asked = input.param("service").unwrap_or_default();
        let service = service_name(asked);
        let room = input.param("room_number").unwrap_or_default();
        let eta = self.data.request_service(room, &service)?;
        Ok(self.ok(
            input,
            json!({"service": service, "room_number": room, "eta_minutes": eta}),
        ))
    }
}

#[async_trait::async_trait]
impl SubAgent for LocalAgent {
    fn card(&self) -> &AgentCard {
        &self.card
    }

    async fn handle(&self, input: AgentInput) -> Result<AgentOutput, DispatchError> {
        if let Err(e) = input.validate() {
            return Ok(AgentOutput::error(
                &input,
                e.code,
                e.message,
                Value::Null,
                self.now(),
            ));
        }
        let started = self.now();
        let mut out = self.answer(&input);
        out.metadata.processing_time = Some((self.now() - started).max(0) as u64);
        Ok(out)
    }
}

pub fn kind_name(kind: &AgentKind) -> &'static str {
    match kind {
        AgentKind::Reservations => "reservations",
        AgentKind::Billing => "billing",
        AgentKind::Support => "support",
        AgentKind::Concierge => "concierge",
        AgentKind::Handoff => "handoff",
    }
}

/// Whether a parameter value satisfies a field's type and validation pattern.
pub fn valid(value: Option<&Value>, field: &FieldSpec) -> bool {
    let Some(v) = value else { return false };
    match field.field_type {
        FieldType::Confirm => v.as_bool() == Some(true),
        FieldType::Amount => speech::to_cents(v).is_some_and(|c| c > 0),
        _ => {
            let Some(s) = v.as_str() else { return false };
            if s.trim().is_empty() {
                return false;
            }
            match &field.pattern {
                Some(p) => regex::Regex::new(p).is_ok_and(|re| re.is_match(s)),
                None => true,
            }
        }
    }
}

fn not_found(input: &AgentInput, now: i64) -> AgentOutput {
    AgentOutput::error(
        input,
        ErrorCode::ReservationNotFound,
        "No reservation found with the provided details",
        json!({"searchedFields": ["reservation_number", "full_name"],
               "suggestions": ["Verify the reservation number", "Check if the name matches exactly"]}),
        now,
    )
}

fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    !b.trim().is_empty() && norm(a) == norm(b)
}

fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

/// A timeframe parameter: `{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}` or a single day.
fn timeframe(v: Option<&Value>) -> Option<(NaiveDate, NaiveDate)> {
    match v? {
        Value::String(s) => parse_day(s).map(|d| (d, d)),
        Value::Object(m) => Some((
            parse_day(m.get("start")?.as_str()?)?,
            parse_day(m.get("end")?.as_str()?)?,
        )),
        _ => None,
    }
}

fn reservation_json(r: &Reservation) -> Value {
    json!({
        "number": r.number,
        "date": r.check_in.get(..10).unwrap_or_default(),
        "status": r.status,
        "guest_name": r.guest_name,
        "room_type": r.room_type,
        "check_in": r.check_in,
        "check_out": r.check_out,
        "total": r.total as f64 / 100.0,
        "cancellation_fee": r.cancellation_fee as f64 / 100.0,
    })
}

fn cancellation_json(number: &str, fee: i64, refund: i64) -> Value {
    json!({"reservation": {
        "number": number,
        "status": "cancelled",
        "cancellation_fee": fee as f64 / 100.0,
        "refund_amount": refund as f64 / 100.0,
    }})
}

/// Spoken name of a requested service ("could you send up some towels" → "extra towels").
fn service_name(asked: &str) -> String {
    const CATALOG: &[(&str, &str)] = &[
        ("towel", "extra towels"),
        ("pillow", "extra pillows"),
        ("blanket", "an extra blanket"),
        ("room service", "room service"),
        ("wake", "a wake-up call"),
        ("taxi", "a taxi"),
        ("cab", "a taxi"),
        ("clean", "housekeeping"),
        ("housekeeping", "housekeeping"),
        ("late checkout", "a late checkout"),
        ("bag", "extra baggage"),
        ("meal", "a special meal"),
        ("seat", "a seat change"),
        ("transfer", "an airport transfer"),
        ("wheelchair", "wheelchair assistance"),
    ];
    let lower = asked.to_lowercase();
    CATALOG
        .iter()
        .find(|(k, _)| lower.contains(k))
        .map(|(_, v)| (*v).to_string())
        .unwrap_or_else(|| asked.trim().trim_end_matches(['.', '?', '!']).to_string())
}

/// Parameters as a JSON object (helper for callers building inputs).
pub fn params(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}
