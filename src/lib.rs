//! Switchboard: a voice call-center gateway. Callers reach a master agent that recognises what
//! they want, delegates to sub-agents over a structured JSON protocol and answers in short
//! spoken sentences.
//!
//! # Code map
//! - `config`: typed configuration, templates (app variants) and demo data; embedded defaults.
//! - `agent::protocol`: the master ↔ sub-agent JSON protocol (seed 000) and its validation.
//! - `agent::master`: the master agent — one caller turn in, one reply out; owns every word said.
//! - `agent::router`: intent recognition — keyword fast path, MiniLM semantic path (`agent::embed`).
//! - `agent::slots`: spoken slot extraction ("A B C one two three" → ABC123, dates, names, …).
//! - `agent::registry`: the `SubAgent` trait, registry, health, dispatch with retries/timeouts.
//! - `agent::reliability`: backoff policy and circuit breaker (pure, time passed in).
//! - `agent::agents`, `agent::remote`: in-process sub-agents and HTTP sub-agents.
//! - `agent::data`: the `DataSource` trait and the demo systems of record.
//! - `agent::engine`: conversations across turns and restarts, persisted per turn.
//! - `store`: SQLite — sessions, cases with an append-only audit trail, the central log.
//! - `agent::caller`: the one caller-id rule; `redact`: card numbers, security codes, phones.
//! - `http`: the REST API (axum), the provider endpoints, the softphone page's socket, the
//!   operations dashboard and its admin API (`http::admin`).
//! - `call`: THE CORE — one call as a sans-I/O state machine with typed outputs and deadlines.
//! - `runtime`: the call session (`session`) and its drivers (`live` for providers' WebSockets,
//!   `browser` for WebRTC, `replay` on a virtual clock), admission, the shared speech stack.
//! - `transport`: provider protocols as pure serializers, one `wire::Wire` per stream, and each
//!   provider's webhook signature check (Twilio, Telnyx, Plivo, Vonage).
//! - `webrtc`: the browser softphone's media (webrtc-rs + Opus) and page.
//! - `asr`, `tts`, `turn`, `audio`: whisper and its worker pool, the voice (Piper on ONNX Runtime,
//!   espeak-ng as its fallback and phonemizer), the turn detector, DSP.
//! - `onnx`: the process's one ONNX Runtime environment; `onnx::smart_turn`, the end-of-turn
//!   model asked at each pause; `onnx::silero`, the voice check run while the detector hears
//!   something.
//! - `cpu`: whisper decodes running in the process (a decode takes a second core only alone).
//! - `metrics`: the Prometheus registry and the `/metrics` page.
//! - `monitor`: live calls for the dashboard (`/v1/live`) and an operator's hang-up or transfer.
//! - `llm`: an OpenAI-compatible model for the call's hand-off and post-call summaries (off unless
//!   configured), with the engine's own summary as the fallback.
//! - `telemetry`: OpenTelemetry traces (a trace per call, a span per turn and its work).
//! - `recording`: call recordings (stereo WAV, timeline, metadata), written as calls run.
//! - `models`: installing and verifying models from registry packages (whisper conversion too).
//! - `net`: every outbound HTTP client, built with the one TLS provider.
//! - `testkit`: the far end of a call for tests and `switchboard load`; the serving path never
//!   uses it.
//!
//! # Invariants
//! - Nothing from outside (HTTP bodies, sub-agent answers, config) can panic the process:
//!   it is parsed into types or rejected with an error that says what is wrong.
//! - No lock is held across an `.await`; SQLite runs on the blocking pool (`Store::run`).
//! - The reliability policies and the store never read the clock: time is passed in.

pub mod agent;
pub mod asr;
pub mod audio;
pub mod call;
pub mod config;
pub mod corpus;
pub mod cpu;
pub mod http;
pub mod llm;
pub mod metrics;
pub mod models;
pub mod monitor;
pub mod net;
pub mod onnx;
pub mod recording;
pub mod redact;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod testkit;
pub mod transport;
pub mod tts;
pub mod turn;
pub mod webrtc;
