//! OpenTelemetry traces, off unless an OTLP endpoint is configured (`[telemetry] otlp_endpoint`
//! or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
//!
//! The project's `tracing` spans become OTel spans (`tracing-opentelemetry`): one trace per call
//! (`call`, with the provider, the call id and the case id), a `turn` span per turn with each
//! stage's time from the end of the caller's speech as attributes (`transcript_ms`,
//! `turn_decided_ms`, `agent_answered_ms`, `first_tts_chunk_ms`, `first_audio_ms`), and under it
//! the work of the turn: `asr`, `agent` (and a `subagent` span per sub-agent call inside it),
//! `tts`. A remote sub-agent's request carries the trace on (W3C `traceparent`).
//!
//! Spans are exported in batches over OTLP/HTTP (protobuf) by the SDK's own thread, through the
//! project's HTTP client running on a one-thread runtime of its own: exporting never takes a
//! call's worker, and a collector that is slow or gone only loses spans.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (e.g. `http://127.0.0.1:4318`; spans go to
    /// `/v1/traces`). Empty: the environment's, else no traces.
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Share of calls traced, 0..=1 (the parent's decision is followed below a root).
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            service_name: "switchboard".into(),
            sample_ratio: 1.0,
        }
    }
}

/// Where spans go, if anywhere: the configured base URL, else the environment's.
pub fn traces_endpoint(cfg: &TelemetryConfig) -> Option<String> {
    let base = |b: &str| {
        let b = b.trim().trim_end_matches('/');
        if b.ends_with("/v1/traces") {
            b.to_string()
        } else {
            format!("{b}/v1/traces")
        }
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if !cfg.otlp_endpoint.trim().is_empty() {
        Some(base(&cfg.otlp_endpoint))
    } else if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(e.trim().to_string())
    } else {
        env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| base(&e))
    }
}

/// The running exporter. Dropping it sends the spans still buffered (up to 5 s).
pub struct Telemetry {
    provider: SdkTracerProvider,
    /// The exporter's HTTP requests run here.
    rt: Option<tokio::runtime::Runtime>,
    pub endpoint: String,
}

impl Telemetry {
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("switchboard")
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("switchboard: sending the last spans failed: {e}");
        }
        // Also from within another runtime (a test), without waiting on its threads.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Starts the exporter when an endpoint is configured.
pub fn start(cfg: &TelemetryConfig) -> anyhow::Result<Option<Telemetry>> {
    let Some(endpoint) = traces_endpoint(cfg) else {
        return Ok(None);
    };
    anyhow::ensure!(
        (0.0..=1.0).contains(&cfg.sample_ratio),
        "telemetry.sample_ratio must be between 0 and 1"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .context("starting the trace exporter's runtime")?;
    let client = Http {
        rt: rt.handle().clone(),
        client: crate::net::client_builder()
            .timeout(Duration::from_secs(10))
            .build()?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .with_http_client(client)
        .build()
        .with_context(|| format!("the OTLP exporter for {endpoint}"))?;
    let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
        opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(cfg.sample_ratio),
    ));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    Ok(Some(Telemetry {
        provider,
        rt: Some(rt),
        endpoint,
    }))
}

/// The W3C `traceparent` of the current span, when it is being traced.
pub fn traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The OTLP exporter's HTTP client: the project's reqwest client, its requests run on the
/// exporter's own runtime (the SDK exports from a thread with no runtime).
#[derive(Debug)]
struct Http {
    rt: tokio::runtime::Handle,
    client: reqwest::Client,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Http {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let task = self.rt.spawn(async move {
            let mut req = client.request(parts.method, parts.uri.to_string());
            for (k, v) in &parts.headers {
                req = req.header(k, v);
            }
            let resp = req.body(body).send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = task.await??;
        let mut resp = http::Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_configured_base_with_the_traces_path() {
        let cfg = |e: &str| TelemetryConfig {
            otlp_endpoint: e.into(),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            traces_endpoint(&cfg("http://127.0.0.1:4318")).as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            traces_endpoint(&cfg("http://c:4318/v1/traces/")).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            traces_endpoint(&cfg("https://otel.example.com/")).as_deref(),
            Some("https://otel.example.com/v1/traces")
        );
    }

    #[test]
    fn no_span_no_traceparent() {
        assert_eq!(traceparent(), None);
    }
}
