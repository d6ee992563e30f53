//! Sub-agent JSON: `AgentOutput::from_json` and `AgentInput::from_json` on arbitrary bytes; when
//! the bytes are JSON, a success output carrying that value round-trips (floats excepted, which
//! serde_json does not promise to round-trip exactly).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use switchboard::agent::protocol::{AgentInput, AgentOutput};

static INPUT: LazyLock<AgentInput> = LazyLock::new(|| {
    serde_json::from_value(json!({
        "task": "lookup_booking",
        "parameters": {"booking_code": "ABC123"},
        "context": {"threadId": "t-1", "sessionId": "s-1", "callerId": "c-1"},
        "requestId": "req-1",
        "timestamp": 1_700_000_000_000i64
    }))
    .expect("valid input")
});

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = AgentOutput::from_json(data, &INPUT);
    let _ = AgentInput::from_json(data);
    if let Ok(value) = serde_json::from_slice::<Value>(data)
        && !has_float(&value)
    {
        let out = AgentOutput::success(&INPUT, value, 1_700_000_000_001);
        let bytes = serde_json::to_vec(&out).expect("serialises");
        let back = AgentOutput::from_json(&bytes, &INPUT).expect("own output parses");
        assert_eq!(back, out);
    }
});
