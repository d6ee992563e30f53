//! The master ↔ sub-agent wire protocol of seed 000 ("Input-Output Model"), as typed serde structs
//! with the seed's JSON field names, plus validation on both sides.
//!
//! Everything that crosses the master/sub-agent boundary — in-process or over HTTP — is one of
//! these types. Input is validated before dispatch (`INVALID_INPUT`), output after it
//! (`INVALID_OUTPUT`); neither path panics on anything a sub-agent sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Seed 000 "Error Categories": the error vocabulary shared by every agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidInput,
    InvalidOutput,
    ExternalApiFailure,
    DatabaseError,
    NetworkError,
    TimeoutError,
    RateLimitError,
    MissingRequiredData,
    Unauthorized,
    Forbidden,
    InternalError,
    UnexpectedError,
    ReservationNotFound,
    AccountNotFound,
    BillNotFound,
    FlightNotFound,
    MemberNotFound,
    UnknownTask,
    AgentUnavailable,
    DelegationDepthExceeded,
    /// Any code this build does not know (e.g. from a remote agent): accepted, not rejected.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Seed 000 retry strategy: external, network, timeout and rate-limit errors are retryable.
    pub fn retryable_by_default(self) -> bool {
        matches!(
            self,
            ErrorCode::ExternalApiFailure
                | ErrorCode::NetworkError
                | ErrorCode::TimeoutError
                | ErrorCode::RateLimitError
                | ErrorCode::DatabaseError
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::InvalidOutput => "INVALID_OUTPUT",
            ErrorCode::ExternalApiFailure => "EXTERNAL_API_FAILURE",
            ErrorCode::DatabaseError => "DATABASE_ERROR",
            ErrorCode::NetworkError => "NETWORK_ERROR",
            ErrorCode::TimeoutError => "TIMEOUT_ERROR",
            ErrorCode::RateLimitError => "RATE_LIMIT_ERROR",
            ErrorCode::MissingRequiredData => "MISSING_REQUIRED_DATA",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::UnexpectedError => "UNEXPECTED_ERROR",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::ReservationNotFound => "RESERVATION_NOT_FOUND",
            ErrorCode::AccountNotFound => "ACCOUNT_NOT_FOUND",
            ErrorCode::BillNotFound => "BILL_NOT_FOUND",
            ErrorCode::FlightNotFound => "FLIGHT_NOT_FOUND",
            ErrorCode::MemberNotFound => "MEMBER_NOT_FOUND",
            ErrorCode::UnknownTask => "UNKNOWN_TASK",
            ErrorCode::AgentUnavailable => "AGENT_UNAVAILABLE",
            ErrorCode::DelegationDepthExceeded => "DELEGATION_DEPTH_EXCEEDED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

/// FIPA-ACL-inspired performatives of seed 000 ("Message Protocol Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Performative {
    /// One-way information sharing; no response expected.
    Inform,
    /// A question that expects an answer.
    Query,
    /// An action request; response required.
    Request,
    /// Confirmation of understanding; no response expected.
    Confirm,
    /// A request for clarification; response required.
    Clarify,
}

impl Performative {
    pub fn expects_response(self) -> bool {
        matches!(
            self,
            Performative::Query | Performative::Request | Performative::Clarify
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub role: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Set when a bot turn was cut off by the caller; `content` then holds only what was heard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub thread_id: String,
    pub session_id: String,
    pub caller_id: String,
    #[serde(default)]
    pub conversation_history: Vec<HistoryEntry>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// Master → sub-agent ("Standard Input Format").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInput {
    pub task: String,
    pub parameters: Map<String, Value>,
    pub context: Context,
    pub request_id: String,
    pub timestamp: i64,
    #[serde(default)]
    pub priority: Priority,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub retry_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    NeedsInfo,
    Error,
    Partial,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::NeedsInfo => "needs_info",
            Status::Error => "error",
            Status::Partial => "partial",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    #[serde(default)]
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Validation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequiredField {
    pub field: String,
    #[serde(rename = "type", default = "default_field_type")]
    pub field_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

fn default_field_type() -> String {
    "string".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClarOption {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClarificationType {
    SingleChoice,
    MultipleChoice,
    Text,
    /// "Did you mean this one?": the single option is the record the agent found most plausible
    /// for what the caller said but did not hear exactly; `data.match` holds its identifying
    /// fields. A yes fills them; the master phrases the question from its template.
    Confirmation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clarification {
    pub question: String,
    #[serde(default)]
    pub options: Vec<ClarOption>,
    #[serde(rename = "type")]
    pub kind: ClarificationType,
    /// Which task parameter the answer fills (an extension of the seed's schema; defaults to `choice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggested_actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Sub-agent → master ("Standard Output Format").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentOutput {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<RequiredField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clarification: Option<Clarification>,
    #[serde(default)]
    pub metadata: OutputMetadata,
    pub request_id: String,
    pub timestamp: i64,
}

/// A protocol violation found by validation; always names what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidInput,
            message: message.into(),
        }
    }
    pub fn invalid_output(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidOutput,
            message: message.into(),
        }
    }
}

impl AgentInput {
    /// Parses and validates raw JSON received by a sub-agent (e.g. over HTTP).
    pub fn from_json(raw: &[u8]) -> Result<Self, ProtocolError> {
        let input: AgentInput = serde_json::from_slice(raw)
            .map_err(|e| ProtocolError::invalid_input(format!("malformed input: {e}")))?;
        input.validate()?;
        Ok(input)
    }

    /// Structural checks the schema cannot express.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.task.trim().is_empty() {
            return Err(ProtocolError::invalid_input("task is empty"));
        }
        if self.request_id.trim().is_empty() {
            return Err(ProtocolError::invalid_input("requestId is empty"));
        }
        if self.context.session_id.is_empty() || self.context.thread_id.is_empty() {
            return Err(ProtocolError::invalid_input(
                "context.sessionId and context.threadId are required",
            ));
        }
        if self.timestamp <= 0 {
            return Err(ProtocolError::invalid_input("timestamp must be positive"));
        }
        if self.timeout == Some(0) {
            return Err(ProtocolError::invalid_input("timeout must be positive"));
        }
        Ok(())
    }

    /// A string parameter, if present and a string.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).and_then(Value::as_str)
    }
}

impl AgentOutput {
    /// Parses and validates raw JSON returned by a sub-agent for `input`.
    pub fn from_json(raw: &[u8], input: &AgentInput) -> Result<Self, ProtocolError> {
        let out: AgentOutput = serde_json::from_slice(raw)
            .map_err(|e| ProtocolError::invalid_output(format!("malformed output: {e}")))?;
        out.validate(input)?;
        Ok(out)
    }

    /// Status-dependent checks: an error carries `error`, needs_info carries `required` or a
    /// `clarification` with options (unless free text), and the request id is echoed.
    pub fn validate(&self, input: &AgentInput) -> Result<(), ProtocolError> {
        if self.request_id != input.request_id {
            return Err(ProtocolError::invalid_output(format!(
                "requestId {:?} does not echo {:?}",
                self.request_id, input.request_id
            )));
        }
        match self.status {
            Status::Error if self.error.is_none() => Err(ProtocolError::invalid_output(
                "status error without an error object",
            )),
            Status::NeedsInfo if self.required.is_empty() && self.clarification.is_none() => {
                Err(ProtocolError::invalid_output(
                    "needs_info without required fields or clarification",
                ))
            }
            _ => {
                if let Some(c) = &self.clarification {
                    if c.question.trim().is_empty() {
                        return Err(ProtocolError::invalid_output(
                            "clarification without question",
                        ));
                    }
                    if c.kind != ClarificationType::Text && c.options.is_empty() {
                        return Err(ProtocolError::invalid_output(
                            "choice clarification without options",
                        ));
                    }
                }
                if let Some(f) = self.required.iter().find(|f| f.field.trim().is_empty()) {
                    return Err(ProtocolError::invalid_output(format!(
                        "required field with empty name ({:?})",
                        f.description
                    )));
                }
                if let Some(conf) = self.metadata.confidence
                    && !(0.0..=1.0).contains(&conf)
                {
                    return Err(ProtocolError::invalid_output("confidence outside 0..1"));
                }
                Ok(())
            }
        }
    }

    pub fn success(input: &AgentInput, data: Value, now_ms: i64) -> Self {
        Self::base(Status::Success, input, now_ms).with_data(data)
    }

    pub fn needs_info(input: &AgentInput, required: Vec<RequiredField>, now_ms: i64) -> Self {
        let mut out = Self::base(Status::NeedsInfo, input, now_ms);
        out.required = required;
        out
    }

    pub fn clarify(input: &AgentInput, clarification: Clarification, now_ms: i64) -> Self {
        let mut out = Self::base(Status::NeedsInfo, input, now_ms);
        out.clarification = Some(clarification);
        out
    }

    pub fn error(
        input: &AgentInput,
        code: ErrorCode,
        message: impl Into<String>,
        details: Value,
        now_ms: i64,
    ) -> Self {
        let mut out = Self::base(Status::Error, input, now_ms);
        out.error = Some(ErrorInfo {
            code,
            message: message.into(),
            details,
            retryable: code.retryable_by_default(),
        });
        out
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    pub fn with_source(mut self, source: &str) -> Self {
        self.metadata.source = Some(source.into());
        self
    }

    fn base(status: Status, input: &AgentInput, now_ms: i64) -> Self {
        Self {
            status,
            data: Value::Null,
            error: None,
            required: vec![],
            clarification: None,
            metadata: OutputMetadata::default(),
            request_id: input.request_id.clone(),
            timestamp: now_ms,
        }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|e| e.code)
    }
}

/// An agent-to-agent message envelope: a performative around a protocol payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub performative: Performative,
    pub from: String,
    pub to: String,
    pub thread_id: String,
    pub message_id: String,
    pub content: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input() -> AgentInput {
        AgentInput::from_json(
            json!({
                "task": "confirm_reservation",
                "parameters": {"reservation_number": "ABC123", "full_name": "John Doe"},
                "context": {"threadId": "thread_123", "sessionId": "session_456", "callerId": "user_789",
                    "conversationHistory": [{"role": "caller", "content": "Confirm my reservation", "timestamp": 1234567890}],
                    "metadata": {"accessLevel": "standard", "language": "en"}},
                "requestId": "req_abc123",
                "timestamp": 1234567890000i64,
                "priority": "normal",
                "timeout": 30000,
                "retryCount": 0
            })
            .to_string()
            .as_bytes(),
        )
        .expect("seed example input is valid")
    }

    #[test]
    fn seed_input_round_trips_with_seed_field_names() {
        let i = input();
        assert_eq!(i.param("reservation_number"), Some("ABC123"));
        assert_eq!(i.context.caller_id, "user_789");
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["requestId"], "req_abc123");
        assert_eq!(v["context"]["threadId"], "thread_123");
        assert_eq!(v["context"]["conversationHistory"][0]["role"], "caller");
        assert_eq!(v["retryCount"], 0);
    }

    #[test]
    fn bad_input_is_invalid_input() {
        for raw in [
            "not json",
            "{}",
            r#"{"task":"","parameters":{},"context":{"threadId":"t","sessionId":"s","callerId":"c"},"requestId":"r","timestamp":1}"#,
            r#"{"task":"x","parameters":[],"context":{"threadId":"t","sessionId":"s","callerId":"c"},"requestId":"r","timestamp":1}"#,
            r#"{"task":"x","parameters":{},"context":{"threadId":"","sessionId":"s","callerId":"c"},"requestId":"r","timestamp":1}"#,
        ] {
            let err = AgentInput::from_json(raw.as_bytes()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidInput, "{raw}");
        }
    }

    #[test]
    fn seed_outputs_parse_and_validate() {
        let i = input();
        let needs = json!({"status":"needs_info","required":[{"field":"reservation_number","type":"string",
            "description":"Your 6-character reservation code","validation":{"pattern":"^[A-Z0-9]{6}$","example":"ABC123"}}],
            "requestId":"req_abc123","timestamp":1234567890000i64});
        let o = AgentOutput::from_json(needs.to_string().as_bytes(), &i).unwrap();
        assert_eq!(o.status, Status::NeedsInfo);
        assert_eq!(
            o.required[0]
                .validation
                .as_ref()
                .unwrap()
                .pattern
                .as_deref(),
            Some("^[A-Z0-9]{6}$")
        );

        let err = json!({"status":"error","error":{"code":"RESERVATION_NOT_FOUND","message":"No reservation found",
            "details":{"searchedFields":["reservation_number"]},"retryable":false},"requestId":"req_abc123","timestamp":1});
        let o = AgentOutput::from_json(err.to_string().as_bytes(), &i).unwrap();
        assert_eq!(o.error_code(), Some(ErrorCode::ReservationNotFound));

        let clar = json!({"status":"needs_info","clarification":{"question":"Which account?","options":[
            {"value":"acc_456","label":"Personal Account (ending in 4567)"}],"type":"single_choice"},
            "metadata":{"processingTime":150,"source":"direct","confidence":0.95,"suggestedActions":["view_details"]},
            "requestId":"req_abc123","timestamp":1});
        let o = AgentOutput::from_json(clar.to_string().as_bytes(), &i).unwrap();
        assert_eq!(o.clarification.unwrap().options[0].value, "acc_456");
        assert_eq!(o.metadata.suggested_actions, vec!["view_details"]);
    }

    #[test]
    fn unknown_error_codes_are_kept_not_rejected() {
        let i = input();
        let raw = json!({"status":"error","error":{"code":"SOMETHING_NEW","message":"x","retryable":true},
            "requestId":"req_abc123","timestamp":1});
        let o = AgentOutput::from_json(raw.to_string().as_bytes(), &i).unwrap();
        assert!(o.error_code() == Some(ErrorCode::Unknown));
        assert!(o.error.unwrap().retryable);
    }

    #[test]
    fn malformed_outputs_are_invalid_output() {
        let i = input();
        for raw in [
            "{".to_string(),
            json!({"status":"weird","requestId":"req_abc123","timestamp":1}).to_string(),
            json!({"status":"error","requestId":"req_abc123","timestamp":1}).to_string(),
            json!({"status":"needs_info","requestId":"req_abc123","timestamp":1}).to_string(),
            json!({"status":"success","requestId":"other","timestamp":1}).to_string(),
            json!({"status":"needs_info","clarification":{"question":"?","options":[],"type":"single_choice"},
                "requestId":"req_abc123","timestamp":1})
            .to_string(),
            json!({"status":"success","metadata":{"confidence":3.0},"requestId":"req_abc123","timestamp":1}).to_string(),
        ] {
            let err = AgentOutput::from_json(raw.as_bytes(), &i).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidOutput, "{raw}");
        }
    }

    #[test]
    fn performatives_serialize_upper_case() {
        assert_eq!(
            serde_json::to_string(&Performative::Clarify).unwrap(),
            "\"CLARIFY\""
        );
        assert!(Performative::Query.expects_response());
        assert!(!Performative::Inform.expects_response());
        assert!(!Performative::Confirm.expects_response());
    }
}
