//! The in-process sub-agents (seed 000 "Sub-Agents"): reservations (hotel stays or travel
//! bookings), billing, support, concierge, flight status, loyalty and human handoff. Each is configured from a template's `[[agents]]` entry and the
//! `[tasks.*]` it declares (required fields with validation patterns), talks to the systems of
//! record through `DataSource`, and answers strictly in the protocol of `protocol.rs`:
//! `needs_info` with the fields still missing, a `clarification` when the caller must choose,
//! `error` with a seed error code, or `success` with data. They never speak to the caller —
//! the master owns every word.

use crate::agent::clock::Clock;
use crate::agent::data::{DataSource, DeferredWrite, Flight, Reservation, SourceError};
use crate::agent::protocol::{
    AgentInput, AgentOutput, ClarOption, Clarification, ClarificationType, ErrorCode,
    RequiredField, Validation,
};
use crate::agent::registry::{AgentCard, DispatchError, SubAgent};
use crate::agent::resolve::{self, Resolution};
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
    /// The billing postcode field of each task that declares one (the second factor).
    postcode: BTreeMap<String, FieldSpec>,
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
        let postcode = spec
            .tasks
            .iter()
            .filter_map(|t| {
                let ts = template.tasks.get(t)?;
                let f = ts.optional.iter().find(|f| f.field == "postcode")?;
                Some((t.clone(), f.clone()))
            })
            .collect();
        Self {
            postcode,
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
        // Lists are only alternative readings of a field ("x_candidates": strings).
        if let Some(bad) = input.parameters.iter().find(|(k, v)| {
            v.is_array()
                && !(k.ends_with(CANDIDATES)
                    && v.as_array()
                        .is_some_and(|a| a.len() <= 16 && a.iter().all(Value::is_string)))
        }) {
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
            AgentKind::Flights => self.flights(input, fields),
            AgentKind::Loyalty => self.loyalty(input),
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
        self.missing_with(input, fields, skip, &Map::new())
    }

    /// [`Self::missing`], with `extra` (e.g. the record found) beside the parameters for the
    /// descriptions ("Cancel reservation {reservation.number}…?").
    fn missing_with(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
        skip: &[&str],
        extra: &Map<String, Value>,
    ) -> Vec<RequiredField> {
        let mut ctx = input.parameters.clone();
        ctx.extend(extra.clone());
        let ctx = Value::Object(ctx);
        fields
            .iter()
            .filter(|f| !skip.contains(&f.field.as_str()))
            .filter(|f| !valid(input.parameters.get(&f.field), f))
            .map(|f| RequiredField {
                field: f.field.clone(),
                field_type: f.field_type.as_str().into(),
                description: speech::render(&f.description, &ctx),
                validation: (f.pattern.is_some() || f.example.is_some()).then(|| Validation {
                    pattern: f.pattern.clone(),
                    example: f.example.clone(),
                }),
            })
            .collect()
    }

    // ------------------------------------------------------------------ reservations

    /// Confirm, change or cancel a reservation (or booking). The record is found from what the
    /// caller said (`agent::resolve`): an exact code with a verified caller acts at once; the
    /// record the caller most plausibly means, when not heard exactly, is offered for
    /// confirmation first; anything else is "not found" and reveals nothing.
    fn reservations(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
    ) -> Result<AgentOutput, SourceError> {
        let action = input.task.split('_').next().unwrap_or_default();
        if action == "cancel"
            && let Some(cached) = input.parameters.get("cached_reservation")
        {
            // The caller's yes to the read-back comes first, whichever system answers.
            let mut about = Map::new();
            about.insert("reservation".into(), cached.clone());
            let unconfirmed: Vec<FieldSpec> = fields
                .iter()
                .filter(|f| f.field_type == FieldType::Confirm)
                .cloned()
                .collect();
            let missing = self.missing_with(input, &unconfirmed, &[], &about);
            if !missing.is_empty() {
                return Ok(AgentOutput::needs_info(input, missing, self.now()));
            }
            return self.cancel_cached(input, cached);
        }
        let Some(code_f) = fields.iter().find(|f| f.field_type == FieldType::String) else {
            return Ok(self.err(
                input,
                ErrorCode::InvalidInput,
                "the task declares no code field",
            ));
        };
        let name_f = fields.iter().find(|f| f.field_type == FieldType::Name);
        let identity: Vec<&str> = [
            Some(code_f.field.as_str()),
            name_f.map(|f| f.field.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let caller = input.context.caller_id.as_str();
        let readings = readings(input, &code_f.field);
        let name = name_f
            .and_then(|f| input.param(&f.field))
            .filter(|n| !n.trim().is_empty());
        let target = if readings.is_empty() {
            match self.by_timeframe(input, action)? {
                Some(Ok(r)) => r,
                Some(Err(out)) => return Ok(out),
                None => {
                    let missing = self.missing(input, fields, &[]);
                    return Ok(AgentOutput::needs_info(input, missing, self.now()));
                }
            }
        } else {
            if name.is_none() && name_f.is_some() {
                // The name is asked for whoever calls: it is the second thing that proves the
                // caller holds the booking (the line alone is whatever the client claims).
                let missing = self.missing(input, fields, &[code_f.field.as_str()]);
                return Ok(AgentOutput::needs_info(input, missing, self.now()));
            }
            let records = self.data.reservation_candidates(&readings, name)?;
            match resolve::resolve(&readings, name, caller, &records) {
                Resolution::Act(r) => r.clone(),
                Resolution::Confirm(r) => {
                    return Ok(self.confirm_match(input, code_f, name_f, r));
                }
                Resolution::NotFound => return Ok(not_found(input, self.now())),
            }
        };
        // The record is known; anything else the task needs (a new date), and for a change or
        // a cancellation the caller's yes to the read-back of what will happen.
        let mut about = Map::new();
        about.insert("reservation".into(), self.reservation_json(&target));
        let missing = self.missing_with(input, fields, &identity, &about);
        if !missing.is_empty() {
            return Ok(AgentOutput::needs_info(input, missing, self.now()));
        }
        match action {
            "modify" | "change" => {
                let Some(date) = fields
                    .iter()
                    .find(|f| f.field_type == FieldType::Date)
                    .and_then(|f| input.param(&f.field))
                    .and_then(parse_day)
                else {
                    return Ok(AgentOutput::needs_info(
                        input,
                        self.missing(input, fields, &identity),
                        self.now(),
                    ));
                };
                let moved = self.data.move_reservation(&target.number, date)?;
                Ok(self.ok(input, json!({"reservation": self.reservation_json(&moved)})))
            }
            "cancel" => {
                let c = self.data.cancel_reservation(&target.number)?;
                Ok(self.ok(
                    input,
                    cancellation_json(&c.reservation.number, c.fee, c.refund),
                ))
            }
            _ => Ok(self.ok(
                input,
                json!({"reservation": self.reservation_json(&target)}),
            )),
        }
    }

    /// "Did you mean reservation ABC123 under John Doe?": asked before acting on a record that
    /// was not heard exactly.
    fn confirm_match(
        &self,
        input: &AgentInput,
        code_f: &FieldSpec,
        name_f: Option<&FieldSpec>,
        r: &Reservation,
    ) -> AgentOutput {
        let mut matched = Map::new();
        matched.insert(code_f.field.clone(), json!(r.number));
        if let Some(f) = name_f {
            matched.insert(f.field.clone(), json!(r.guest_name));
        }
        let clar = Clarification {
            question: format!("Did you mean {} under {}?", r.number, r.guest_name),
            options: vec![ClarOption {
                value: r.number.clone(),
                label: format!("{} under {}", r.number, r.guest_name),
            }],
            kind: ClarificationType::Confirmation,
            field: Some(code_f.field.clone()),
        };
        AgentOutput::clarify(input, clar, self.now()).with_data(json!({"match": matched}))
    }

    /// "Cancel my reservation for next week": the caller's line identifies them. `None` when
    /// no timeframe was given (or the task is not a cancellation).
    #[allow(clippy::type_complexity)]
    fn by_timeframe(
        &self,
        input: &AgentInput,
        action: &str,
    ) -> Result<Option<Result<Reservation, AgentOutput>>, SourceError> {
        let Some((start, end)) = timeframe(input.parameters.get("timeframe")) else {
            return Ok(None);
        };
        if action != "cancel" {
            return Ok(None);
        }
        let mine: Vec<Reservation> = self
            .data
            .reservations_of(&input.context.caller_id)?
            .into_iter()
            .filter(|r| {
                r.status != "cancelled" && r.arrival().is_some_and(|d| d >= start && d <= end)
            })
            .collect();
        Ok(match mine.as_slice() {
            [one] => Some(Ok(one.clone())),
            [] => None,
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
                    question: ASK_RESERVATION_TO_CANCEL.into(),
                    options,
                    kind: ClarificationType::SingleChoice,
                    field: Some("reservation_number".into()),
                };
                Some(Err(AgentOutput::clarify(input, clar, self.now())))
            }
        })
    }

    /// Cached-data fallback (seed 000 Scenario 3): the master re-sends what it learned earlier
    /// in the session; if the system of record is still down the cancellation is accepted,
    /// queued for replay, and answered from the cached booking.
    fn cancel_cached(
        &self,
        input: &AgentInput,
        cached: &Value,
    ) -> Result<AgentOutput, SourceError> {
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
        match self.data.cancel_reservation(number) {
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
        }
    }

    /// A reservation as its task's replies see it; a booking also gets its flight's route.
    fn reservation_json(&self, r: &Reservation) -> Value {
        let mut v = reservation_json(r);
        if let Some(number) = &r.flight
            && let Ok(flights) = self.data.flights()
            && let Some(f) = flights.iter().find(|f| &f.number == number)
        {
            v["origin"] = json!(f.origin);
            v["destination"] = json!(f.destination);
        }
        v
    }

    // ------------------------------------------------------------------ billing

    fn billing(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
    ) -> Result<AgentOutput, SourceError> {
        let accounts = self.data.accounts_of(&input.context.caller_id)?;
        // A caller known only by their phone line gives the billing postcode first.
        let by_line = input
            .context
            .metadata
            .get("identifiedBy")
            .and_then(Value::as_str)
            == Some("phone_line");
        if by_line
            && !accounts.is_empty()
            && let Some(pc) = self.postcode.get(&input.task)
        {
            match input.param("postcode").map(|p| {
                p.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
            }) {
                None => {
                    let missing = self.missing(input, std::slice::from_ref(pc), &[]);
                    return Ok(AgentOutput::needs_info(input, missing, self.now()));
                }
                Some(given)
                    if !accounts
                        .iter()
                        .any(|a| !a.postcode.is_empty() && a.postcode == given) =>
                {
                    return Ok(self.err(
                        input,
                        ErrorCode::Unauthorized,
                        "the postcode does not match the caller's accounts",
                    ));
                }
                Some(_) => {}
            }
        }
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
                    let verb = match input.task.as_str() {
                        "make_payment" => ASK_ACCOUNT_TO_PAY,
                        "dispute_charge" => ASK_ACCOUNT_OF_CHARGE,
                        _ => ASK_ACCOUNT_OF_BILL,
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
        if input.task == "dispute_charge" {
            let description = input
                .param("description")
                .map(str::to_string)
                .unwrap_or_else(|| "charge disputed by the caller".into());
            let ticket = self.data.create_ticket(
                &input.context.caller_id,
                "high",
                &format!("billing dispute on {}: {description}", account.id),
            )?;
            return Ok(self.ok(
                input,
                json!({"ticket_id": ticket, "account_id": account.id,
                       "account_label": speech::speakable_label(&account.label())}),
            ));
        }
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
                question: ASK_URGENCY.into(),
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
        // Where it goes: the room (hotel) or the booking (travel), the task's other field.
        let target_field = fields
            .iter()
            .find(|f| f.field != "service")
            .map(|f| f.field.as_str())
            .unwrap_or("room_number");
        let mut target = input.param(target_field).unwrap_or_default().to_string();
        // A booking the service goes on must exist: exactly as said, or the caller's own near it
        // (confirmed first); never attached to a code nobody holds.
        if let Some(spec) = fields.iter().find(|f| f.field == target_field)
            && spec.record.as_deref() == Some("reservation")
        {
            let readings = readings(input, target_field);
            let records = self.data.reservation_candidates(&readings, None)?;
            let exact = records
                .iter()
                .find(|r| readings.iter().any(|c| c.eq_ignore_ascii_case(&r.number)));
            match exact {
                Some(r) => target = r.number.clone(),
                None => match resolve::resolve(&readings, None, &input.context.caller_id, &records)
                {
                    Resolution::Confirm(r) | Resolution::Act(r) => {
                        return Ok(self.confirm_match(input, spec, None, r));
                    }
                    Resolution::NotFound => return Ok(not_found(input, self.now())),
                },
            }
        }
        let target = target.as_str();
        let eta = self.data.request_service(target, &service)?;
        let mut data = json!({"service": service, "eta_minutes": eta});
        data[target_field] = json!(target);
        Ok(self.ok(input, data))
    }

    // ------------------------------------------------------------------ flights

    /// Today's status of a flight: the one named, or the nearest flight number when it was not
    /// heard exactly and only one is near (the reply names the route, so the caller hears which).
    fn flights(
        &self,
        input: &AgentInput,
        fields: &[FieldSpec],
    ) -> Result<AgentOutput, SourceError> {
        let field = fields
            .iter()
            .find(|f| f.field_type == FieldType::String)
            .map(|f| f.field.as_str())
            .unwrap_or("flight_number");
        let readings = readings(input, field);
        if readings.is_empty() {
            let missing = self.missing(input, fields, &[]);
            return Ok(AgentOutput::needs_info(input, missing, self.now()));
        }
        let board = self.data.flights()?;
        let exact = board
            .iter()
            .find(|f| readings.iter().any(|r| r.eq_ignore_ascii_case(&f.number)));
        let flight = exact.or_else(|| {
            let mut near: Vec<(f32, &Flight)> = board
                .iter()
                .map(|f| {
                    let d = readings
                        .iter()
                        .map(|r| resolve::code_distance(r, &f.number))
                        .fold(f32::INFINITY, f32::min);
                    (d, f)
                })
                .filter(|(d, _)| *d <= resolve::MAX_CODE_DISTANCE)
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0));
            match near.as_slice() {
                [(d0, f), rest @ ..] if rest.first().is_none_or(|(d1, _)| d1 > d0) => Some(*f),
                _ => None,
            }
        });
        let Some(f) = flight else {
            return Ok(self.err(
                input,
                ErrorCode::FlightNotFound,
                format!("no flight {} today", readings[0]),
            ));
        };
        let expected = shift_minutes(&f.departs, i64::from(f.delay_minutes));
        let mut data = json!({"flight": {
            "number": f.number, "origin": f.origin, "destination": f.destination,
            "departs": f.departs, "arrives": f.arrives, "arrived": f.arrives, "expected": expected,
            "status": f.status, "delay_minutes": f.delay_minutes, "gate": f.gate,
        }});
        if f.status != "on_time" {
            data["variant"] = json!(f.status);
        }
        Ok(self.ok(input, data))
    }

    // ------------------------------------------------------------------ loyalty

    /// A member's points: by the membership number given, else by the caller's line.
    fn loyalty(&self, input: &AgentInput) -> Result<AgentOutput, SourceError> {
        let member = match input.param("member_number") {
            Some(n) => self.data.member(n)?,
            None => self.data.member_of(&input.context.caller_id)?,
        };
        match member {
            Some(m) => Ok(self.ok(
                input,
                json!({"member": {"points": m.points, "tier": m.tier, "member_number": m.member_number}}),
            )),
            None => Ok(self.err(
                input,
                ErrorCode::MemberNotFound,
                "no loyalty account for this caller",
            )),
        }
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

const ASK_RESERVATION_TO_CANCEL: &str = "Which reservation would you like to cancel?";
const ASK_ACCOUNT_TO_PAY: &str = "Which account would you like to pay?";
const ASK_ACCOUNT_OF_CHARGE: &str = "Which account is the charge on?";
const ASK_ACCOUNT_OF_BILL: &str = "Which account would you like to see the bill for?";
const ASK_URGENCY: &str = "How urgent is it?";

/// The questions an agent of this kind asks word for word (its clarifications that carry no
/// record's data), so that the voice can have them ready before the first caller hears one
/// (`runtime::speech::Speech::prewarm`). What it says about a record is never fixed.
pub fn fixed_questions(kind: &AgentKind) -> &'static [&'static str] {
    match kind {
        AgentKind::Reservations => &[ASK_RESERVATION_TO_CANCEL],
        AgentKind::Billing => &[
            ASK_ACCOUNT_TO_PAY,
            ASK_ACCOUNT_OF_CHARGE,
            ASK_ACCOUNT_OF_BILL,
        ],
        AgentKind::Support => &[ASK_URGENCY],
        AgentKind::Concierge | AgentKind::Handoff | AgentKind::Flights | AgentKind::Loyalty => &[],
    }
}

pub fn kind_name(kind: &AgentKind) -> &'static str {
    match kind {
        AgentKind::Reservations => "reservations",
        AgentKind::Billing => "billing",
        AgentKind::Support => "support",
        AgentKind::Concierge => "concierge",
        AgentKind::Handoff => "handoff",
        AgentKind::Flights => "flights",
        AgentKind::Loyalty => "loyalty",
    }
}

/// Whether a parameter value satisfies a field's type and validation pattern.
pub fn valid(value: Option<&Value>, field: &FieldSpec) -> bool {
    let Some(v) = value else { return false };
    match field.field_type {
        FieldType::Confirm => v.as_bool() == Some(true),
        FieldType::Amount => speech::to_cents(v).is_some_and(|c| c > 0),
        _ => v.as_str().is_some_and(|s| field.accepts(s)),
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
        "flight": r.flight,
        "check_in": r.check_in,
        "check_out": r.check_out,
        "departs": r.check_in,
        "arrives": r.check_out,
        "total": r.total as f64 / 100.0,
        "cancellation_fee": r.cancellation_fee as f64 / 100.0,
        "change_fee": r.change_fee as f64 / 100.0,
    })
}

/// Suffix of a parameter holding alternative readings of a field (strings, best first).
pub const CANDIDATES: &str = "_candidates";

/// Readings of a code field: the value, then its `_candidates`, distinct, upper case.
fn readings(input: &AgentInput, field: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let first = input.param(field).map(str::to_string);
    let rest = input
        .parameters
        .get(&format!("{field}{CANDIDATES}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string);
    for r in first.into_iter().chain(rest) {
        let r = r.trim().to_ascii_uppercase();
        if !r.is_empty() && r.len() <= 32 && !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// An RFC 3339 time moved by `minutes`, in the same format (unchanged if it does not parse).
fn shift_minutes(ts: &str, minutes: i64) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| {
            (t.with_timezone(&chrono::Utc) + chrono::Duration::minutes(minutes))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|_| ts.to_string())
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
        ("food", "room service"),
        ("sandwich", "room service"),
        ("something to eat", "room service"),
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
