//! A language model behind any OpenAI-compatible chat-completions endpoint (a hosted API, or
//! your own vLLM / llama.cpp server), used where it earns its latency — and never where the
//! deterministic engine must decide. Off unless `[llm] base_url` is set.
//!
//! Today the model writes, after a call, off every turn's path:
//! - the **hand-off summary** of a transferred call (who, what was asked, what was done, what is
//!   pending), for the person taking it over;
//! - the **call summary** and its disposition.
//!
//! Both are asked as JSON constrained by a schema (`response_format: json_schema`) and checked
//! against it here ([`validate`]); when the model is slow, down or answers something invalid,
//! the engine's own summary is written instead, with the reason. Either way the case records
//! which one it is (`source`: `model` or `engine`). Card numbers are masked before anything is
//! sent and again in what comes back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The API's base URL, up to and including `/v1` (e.g. `https://api.openai.com/v1`,
    /// `http://127.0.0.1:8000/v1`). Empty: no model.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer token); empty or unset:
    /// none is sent.
    pub api_key_env: String,
    /// A request's whole budget; past it the engine's result stands.
    pub timeout_ms: u64,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Write a hand-off summary on the case of a transferred call.
    pub handoff_summary: bool,
    /// Write a summary and disposition on every case when its call ends.
    pub call_summary: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_ms: 8000,
            max_tokens: 300,
            temperature: 0.2,
            handoff_summary: true,
            call_summary: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the model did not answer within {0} ms")]
    Timeout(u64),
    #[error("the model's server answered {0}: {1}")]
    Status(u16, String),
    #[error("the model's server could not be reached: {0}")]
    Transport(String),
    #[error("the model's answer is not valid: {0}")]
    Invalid(String),
}

impl LlmError {
    /// A short reason for the case record.
    pub fn reason(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "timeout",
            LlmError::Status(..) => "server error",
            LlmError::Transport(_) => "unreachable",
            LlmError::Invalid(_) => "invalid answer",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message {
            role: "system",
            content: text.into(),
        }
    }
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: "user",
            content: text.into(),
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: u32,
    temperature: f32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    delta: Option<ChoiceMessage>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

/// The model's client.
pub struct Llm {
    cfg: LlmConfig,
    url: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("url", &self.url)
            .field("model", &self.cfg.model)
            .finish()
    }
}

impl Llm {
    /// The configured model, or None when `base_url` is empty.
    pub fn from_config(cfg: &LlmConfig) -> Result<Option<Llm>, String> {
        if cfg.base_url.trim().is_empty() {
            return Ok(None);
        }
        let base = cfg.base_url.trim().trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let parsed = url::Url::parse(&url).map_err(|e| format!("llm.base_url: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("llm.base_url must be http or https".into());
        }
        let key = (!cfg.api_key_env.is_empty())
            .then(|| std::env::var(&cfg.api_key_env).ok())
            .flatten()
            .filter(|k| !k.trim().is_empty());
        let client = crate::net::client_builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .build()
            .map_err(|e| format!("the model's HTTP client: {e}"))?;
        Ok(Some(Llm {
            cfg: cfg.clone(),
            url,
            key,
            client,
        }))
    }

    /// Sends one completion request; a response other than 2xx is an error.
    async fn send(
        &self,
        messages: &[Message],
        stream: bool,
        response_format: Option<Value>,
    ) -> Result<reqwest::Response, LlmError> {
        let body = Request {
            model: &self.cfg.model,
            messages,
            max_tokens: self.cfg.max_tokens,
            temperature: self.cfg.temperature,
            stream,
            response_format,
        };
        let mut r = self.client.post(&self.url).json(&body);
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.map_err(|e| self.map_err(e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(LlmError::Status(
                status.as_u16(),
                text.chars().take(200).collect(),
            ));
        }
        Ok(resp)
    }

    /// `work` within the request budget.
    async fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        let budget = Duration::from_millis(self.cfg.timeout_ms.max(1));
        tokio::time::timeout(budget, work)
            .await
            .map_err(|_| LlmError::Timeout(self.cfg.timeout_ms))?
    }

    fn map_err(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout(self.cfg.timeout_ms)
        } else {
            // Only the kind of failure: no address or server text.
            LlmError::Transport(
                if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                }
                .into(),
            )
        }
    }

    /// One completion's text. With `schema` (`(name, JSON schema)`), the server is asked to
    /// answer JSON of that shape.
    pub async fn chat(
        &self,
        messages: &[Message],
        schema: Option<(&str, &Value)>,
    ) -> Result<String, LlmError> {
        let format = schema.map(|(name, s)| {
            json!({"type": "json_schema",
                   "json_schema": {"name": name, "strict": true, "schema": s}})
        });
        self.within(async {
            let resp = self.send(messages, false, format).await?;
            let text = resp.text().await.map_err(|e| self.map_err(e))?;
            let r: Response = serde_json::from_str(&text)
                .map_err(|e| LlmError::Invalid(format!("not a chat completion: {e}")))?;
            r.choices
                .into_iter()
                .next()
                .and_then(|c| c.message)
                .and_then(|m| m.content)
                .ok_or_else(|| LlmError::Invalid("no message in the completion".into()))
        })
        .await
    }

    /// A completion streamed: `on_delta` gets each piece of text as it arrives (server-sent
    /// events); returns the whole text.
    pub async fn chat_stream(
        &self,
        messages: &[Message],
        mut on_delta: impl FnMut(&str),
    ) -> Result<String, LlmError> {
        self.within(async {
            let mut resp = self.send(messages, true, None).await?;
            let mut buf = Vec::<u8>::new();
            let mut whole = String::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.map_err(e))? {
                buf.extend_from_slice(&chunk);
                // Each complete line; an SSE event's data is on its `data:` lines.
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(data) = line.trim().strip_prefix("data:") else {
                        continue;
                    };
                    let data = data.trim();
                    if data == "[DONE]" {
                        return Ok(whole);
                    }
                    let r: Response = serde_json::from_str(data)
                        .map_err(|e| LlmError::Invalid(format!("a bad stream event: {e}")))?;
                    if let Some(piece) = r
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.delta)
                        .and_then(|d| d.content)
                        && !piece.is_empty()
                    {
                        on_delta(&piece);
                        whole.push_str(&piece);
                    }
                }
            }
            Ok(whole)
        })
        .await
    }

    /// A JSON answer of `schema`'s shape, parsed and checked against it.
    pub async fn chat_json(
        &self,
        messages: &[Message],
        name: &str,
        schema: &Value,
    ) -> Result<Value, LlmError> {
        let text = self.chat(messages, Some((name, schema))).await?;
        let v: Value = serde_json::from_str(text.trim())
            .map_err(|e| LlmError::Invalid(format!("not JSON ({e}): {}", clip(&text))))?;
        validate(&v, schema).map_err(LlmError::Invalid)?;
        Ok(v)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Checks `v` against the subset of JSON Schema the project's schemas use: `type` (object,
/// string, integer, number, boolean, array), `properties`, `required`,
/// `additionalProperties: false`, `enum`, `pattern`, `maxLength`, `items`.
pub fn validate(v: &Value, schema: &Value) -> Result<(), String> {
    validate_at(v, schema, "$")
}

fn validate_at(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            _ => true,
        };
        if !ok {
            return Err(format!("{at} is not a {t}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        return Err(format!("{at} is not one of {options:?}"));
    }
    if let Some(s) = v.as_str() {
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && s.chars().count() as u64 > max
        {
            return Err(format!("{at} is longer than {max}"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(p).map_err(|e| format!("{at}: bad pattern: {e}"))?;
            if !re.is_match(s) {
                return Err(format!("{at} does not match {p}"));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    return Err(format!("{at}.{k} is missing"));
                }
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate_at(val, s, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}.{k} is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate_at(x, items, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The call's words as the model reads them: one line per utterance, masked.
pub fn transcript_text(lines: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (who, text) in lines {
        out.push_str(who);
        out.push_str(": ");
        out.push_str(&crate::redact::redact(text));
        out.push('\n');
    }
    out
}

/// The hand-off summary's shape.
pub fn handoff_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "who": {"type": "string", "maxLength": 100},
            "asked": {"type": "string", "maxLength": 200},
            "done": {"type": "string", "maxLength": 200},
            "pending": {"type": "string", "maxLength": 200}
        },
        "required": ["who", "asked", "done", "pending"],
        "additionalProperties": false
    })
}

/// Dispositions a call summary may give.
pub const DISPOSITIONS: &[&str] = &["resolved", "transferred", "abandoned", "unresolved"];

/// The call summary's shape.
pub fn summary_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string", "maxLength": 300},
            "disposition": {"type": "string", "enum": DISPOSITIONS}
        },
        "required": ["summary", "disposition"],
        "additionalProperties": false
    })
}

/// Masks card numbers in every string of a model's answer.
pub fn mask_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(m) = crate::redact::redact(s) {
                *s = m;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_strings),
        Value::Object(o) => o.values_mut().for_each(mask_strings),
        _ => {}
    }
}

/// What a finished call's summaries are written from.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub case_id: String,
    /// Masked as in the logs.
    pub caller: String,
    pub outcome: String,
    /// (who, what), in order.
    pub lines: Vec<(&'static str, String)>,
    /// The values the caller gave (reservation number, name, …).
    pub slots: Value,
}

impl CallRecord {
    fn transferred(&self) -> bool {
        self.outcome.starts_with("transferred")
    }

    fn last(&self, who: &str) -> String {
        self.lines
            .iter()
            .rev()
            .find(|(w, _)| *w == who)
            .map(|(_, t)| crate::redact::redact(t).into_owned())
            .unwrap_or_default()
    }

    /// The engine's hand-off summary: who, their last request, the bot's last answer.
    pub fn engine_handoff(&self) -> Value {
        json!({
            "who": self.caller,
            "asked": self.last("caller"),
            "done": self.last("agent"),
            "pending": format!("{} (values given: {})", self.outcome, self.slots),
        })
    }

    /// The engine's call summary: how many turns, the last request, and the outcome's class.
    pub fn engine_summary(&self) -> Value {
        let turns = self.lines.iter().filter(|(w, _)| *w == "caller").count();
        let disposition = if self.transferred() {
            "transferred"
        } else if self.outcome == "bot hung up" {
            "resolved"
        } else if self.outcome == "caller hung up" {
            "abandoned"
        } else {
            "unresolved"
        };
        json!({
            "summary": format!(
                "{turns} caller turn(s); last request: {:?}; ended: {}",
                self.last("caller"),
                self.outcome
            ),
            "disposition": disposition,
        })
    }
}

/// One summary for the case's audit trail.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `handoff_summary` or `call_summary`.
    pub action: &'static str,
    pub detail: Value,
    /// Written by the model (else by the engine: `detail.reason` says why).
    pub by_model: bool,
}

/// The call's summaries: the hand-off summary when the call was transferred
/// (`handoff_summary`), and the call summary (`call_summary`), each by the model when it answers
/// in time with valid JSON, else by the engine with the reason.
pub async fn summarize_call(llm: &Llm, call: &CallRecord) -> Vec<Summary> {
    let lines: Vec<(&str, &str)> = call.lines.iter().map(|(w, t)| (*w, t.as_str())).collect();
    let transcript = transcript_text(&lines);
    let mut jobs: Vec<(&str, Value, String, Value)> = vec![];
    if llm.cfg.handoff_summary && call.transferred() {
        jobs.push((
            "handoff_summary",
            handoff_schema(),
            "You hand a phone call over to a human colleague. From the transcript, write JSON: \
             who is calling, what they asked, what was done, what is still pending. Short, \
             factual, only what the transcript says."
                .to_string(),
            call.engine_handoff(),
        ));
    }
    if llm.cfg.call_summary {
        jobs.push((
            "call_summary",
            summary_schema(),
            format!(
                "Summarise this phone call in one or two sentences and give its disposition \
                 (one of {}). The call ended: {}. Only what the transcript says.",
                DISPOSITIONS.join(", "),
                call.outcome
            ),
            call.engine_summary(),
        ));
    }
    let mut out = vec![];
    for (action, schema, instructions, fallback) in jobs {
        let started = std::time::Instant::now();
        let messages = [
            Message::system(instructions),
            Message::user(transcript.clone()),
        ];
        let (mut detail, by_model) = match llm.chat_json(&messages, action, &schema).await {
            Ok(mut v) => {
                mask_strings(&mut v);
                v["source"] = json!("model");
                v["model"] = json!(llm.cfg.model);
                (v, true)
            }
            Err(e) => {
                tracing::warn!(case = %call.case_id, action, error = %e, "the model's summary failed: the engine's is kept");
                let mut v = fallback;
                v["source"] = json!("engine");
                v["reason"] = json!(e.reason());
                (v, false)
            }
        };
        detail["ms"] = json!(started.elapsed().as_millis() as u64);
        out.push(Summary {
            action,
            detail,
            by_model,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_schema_subset() {
        let s = summary_schema();
        assert!(validate(&json!({"summary": "ok", "disposition": "resolved"}), &s).is_ok());
        assert_eq!(
            validate(&json!({"summary": "ok"}), &s),
            Err("$.disposition is missing".into())
        );
        assert!(
            validate(&json!({"summary": "ok", "disposition": "happy"}), &s)
                .unwrap_err()
                .contains("not one of")
        );
        assert_eq!(
            validate(&json!({"summary": 3, "disposition": "resolved"}), &s),
            Err("$.summary is not a string".into())
        );
        assert_eq!(
            validate(
                &json!({"summary": "a", "disposition": "resolved", "extra": 1}),
                &s
            ),
            Err("$.extra is not allowed".into())
        );
        let p = json!({"type": "object", "properties": {"room": {"type": "string", "pattern": "^[0-9]{3,4}$"}}});
        assert!(validate(&json!({"room": "412"}), &p).is_ok());
        assert!(validate(&json!({"room": "41a"}), &p).is_err());
    }

    #[test]
    fn answers_are_masked_and_a_model_is_only_built_when_configured() {
        let mut v = json!({"done": ["card 4111 1111 1111 1111 charged"]});
        mask_strings(&mut v);
        assert!(!v.to_string().contains("4111 1111 1111 1111"), "{v}");
        assert!(Llm::from_config(&LlmConfig::default()).unwrap().is_none());
        let bad = LlmConfig {
            base_url: "ftp://x/v1".into(),
            ..LlmConfig::default()
        };
        assert!(Llm::from_config(&bad).is_err());
    }
}
