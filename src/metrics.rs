//! What a running gateway measures about itself, served at `/metrics` (admin scope) in
//! Prometheus' text format (version 0.0.4).
//!
//! One registry per process. Recording takes a short lock and never allocates once a series
//! exists; nothing here is called per audio frame — per turn, per call, per decode. Labels are
//! low-cardinality by construction: provider, stage, outcome — never a call id, a caller or text.
//! The exposition format is a page of text, so it is written here rather than taken from the
//! metrics crates (every crate is minutes of a clean build).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Latency buckets in seconds: 50 ms steps up to 1 s, then coarser to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
    0.9, 0.95, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Every metric the gateway exports: name, type, help. `/metrics` lists each family even
/// before its first sample.
const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        TURN_STAGE,
        Kind::Histogram,
        "Time from the end of the caller's speech to each stage of the turn: transcript, turn_decided (the agent asked), agent_answered, first_tts_chunk, first_audio (first reply audio handed to the line).",
    ),
    (
        TURN_LATENCY,
        Kind::Histogram,
        "Time from the end of the caller's speech to the first reply audio, by path: model (the language model routed or answered the turn, its filler included) or engine (it did not).",
    ),
    (
        BARGE_IN_CLEAR,
        Kind::Histogram,
        "Time from the onset of the caller's voice over the bot to the bot's audio being cleared.",
    ),
    (CALLS_ACTIVE, Kind::Gauge, "Calls in progress, by provider."),
    (
        CALLS_STARTED,
        Kind::Counter,
        "Calls admitted and started, by provider.",
    ),
    (
        CALLS_ENDED,
        Kind::Counter,
        "Calls ended, by provider and outcome: resolved (the bot hung up after the goodbye), transferred, caller_hung_up, dropped, refused (over the cap or too many waiting), drained (refused or ended while shutting down).",
    ),
    (
        TURNS,
        Kind::Counter,
        "Caller turns given to the agent, by provider.",
    ),
    (
        INTENTS,
        Kind::Counter,
        "Agent turns by the intent the master recognised (\"none\" when it took none).",
    ),
    (
        AGENT_CALLS,
        Kind::Counter,
        "Calls to sub-agents, by agent and result (ok, error).",
    ),
    (
        AGENT_RETRIES,
        Kind::Counter,
        "Retries of sub-agent calls, by agent.",
    ),
    (
        AGENT_BREAKER_OPEN,
        Kind::Gauge,
        "1 while a sub-agent's circuit breaker is open (as of its latest call), else 0.",
    ),
    (
        ASR_DECODE,
        Kind::Histogram,
        "Whisper decode time per transcription.",
    ),
    (
        ASR_QUEUE,
        Kind::Gauge,
        "Transcriptions waiting for or running on an ASR worker.",
    ),
    (
        ASR_JOBS,
        Kind::Counter,
        "Transcriptions by what became of them: delivered; skipped (the turn moved on before a \
         worker took it: no work done); discarded (the turn moved on while it ran: work wasted).",
    ),
    (
        TTS_SYNTHESIS,
        Kind::Histogram,
        "Time to synthesise a reply, from the request to its last audio.",
    ),
    (
        PROCESS_RSS,
        Kind::Gauge,
        "Resident memory of the gateway process.",
    ),
    (
        PROCESS_CPU,
        Kind::Counter,
        "CPU time (user and system) used by the gateway process.",
    ),
];

pub const TURN_STAGE: &str = "switchboard_turn_stage_seconds";
pub const TURN_LATENCY: &str = "switchboard_turn_latency_seconds";
pub const BARGE_IN_CLEAR: &str = "switchboard_barge_in_clear_seconds";
pub const CALLS_ACTIVE: &str = "switchboard_calls_active";
pub const CALLS_STARTED: &str = "switchboard_calls_started_total";
pub const CALLS_ENDED: &str = "switchboard_calls_ended_total";
pub const TURNS: &str = "switchboard_turns_total";
pub const INTENTS: &str = "switchboard_intents_total";
pub const AGENT_CALLS: &str = "switchboard_agent_calls_total";
pub const AGENT_RETRIES: &str = "switchboard_agent_retries_total";
pub const AGENT_BREAKER_OPEN: &str = "switchboard_agent_breaker_open";
pub const ASR_DECODE: &str = "switchboard_asr_decode_seconds";
pub const ASR_QUEUE: &str = "switchboard_asr_queue_depth";
pub const ASR_JOBS: &str = "switchboard_asr_jobs_total";
pub const TTS_SYNTHESIS: &str = "switchboard_tts_synthesis_seconds";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";

struct Histogram {
    /// Per bucket (not cumulative), the last one for values above every bound.
    counts: Vec<u64>,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    /// (family, rendered labels) → value.
    counters: BTreeMap<(&'static str, String), f64>,
    gauges: BTreeMap<(&'static str, String), f64>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// `a="x",b="y"`, values escaped as the format wants.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// Adds `n` to a counter.
pub fn count(name: &'static str, pairs: &[(&str, &str)], n: f64) {
    *registry()
        .counters
        .entry((name, labels(pairs)))
        .or_default() += n;
}

/// A counter's value now (0 if it was never counted).
pub fn counter(name: &'static str, pairs: &[(&str, &str)]) -> f64 {
    registry()
        .counters
        .get(&(name, labels(pairs)))
        .copied()
        .unwrap_or(0.0)
}

/// Adds `delta` (may be negative) to a gauge.
pub fn gauge_add(name: &'static str, pairs: &[(&str, &str)], delta: f64) {
    *registry().gauges.entry((name, labels(pairs))).or_default() += delta;
}

/// Sets a gauge.
pub fn gauge_set(name: &'static str, pairs: &[(&str, &str)], value: f64) {
    registry().gauges.insert((name, labels(pairs)), value);
}

/// Records one observation, in seconds.
pub fn observe(name: &'static str, pairs: &[(&str, &str)], seconds: f64) {
    if !seconds.is_finite() {
        return;
    }
    let mut r = registry();
    let h = r
        .histograms
        .entry((name, labels(pairs)))
        .or_insert_with(|| Histogram {
            counts: vec![0; LATENCY_BUCKETS.len() + 1],
            sum: 0.0,
        });
    let i = LATENCY_BUCKETS
        .iter()
        .position(|b| seconds <= *b)
        .unwrap_or(LATENCY_BUCKETS.len());
    h.counts[i] += 1;
    h.sum += seconds;
}

/// The `q` quantile (0 to 1) of a histogram's observations so far, as the upper bound of the
/// bucket it falls in (seconds; +Inf above the last bound). None before any observation.
pub fn quantile(name: &'static str, pairs: &[(&str, &str)], q: f64) -> Option<f64> {
    let r = registry();
    let h = r.histograms.get(&(name, labels(pairs)))?;
    bucket_quantile(&h.counts, q)
}

/// The `q` quantile of per-bucket `counts` (over [`LATENCY_BUCKETS`], then one above them): the
/// upper bound of the bucket that holds the observation of rank ⌈q·n⌉.
fn bucket_quantile(counts: &[u64], q: f64) -> Option<f64> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    Some(f64::INFINITY)
}

/// Milliseconds on a call's clock as seconds.
pub fn ms(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn with_le(labels: &str, le: &str) -> String {
    if labels.is_empty() {
        format!("le=\"{le}\"")
    } else {
        format!("{labels},le=\"{le}\"")
    }
}

fn series(out: &mut String, name: &str, labels: &str, value: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {}", number(value));
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {}", number(value));
    }
}

/// Resident memory (bytes) and CPU time (seconds) of this process, from /proc.
fn process() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) — utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if tick <= 0 || page <= 0 {
        return None;
    }
    Some((pages * page as f64, (utime + stime) / tick as f64))
}

/// The page `/metrics` serves.
pub fn render() -> String {
    if let Some((rss, cpu)) = process() {
        let mut r = registry();
        r.gauges.insert((PROCESS_RSS, String::new()), rss);
        r.counters.insert((PROCESS_CPU, String::new()), cpu);
    }
    let r = registry();
    let mut out = String::new();
    for &(family, kind, help) in FAMILIES {
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {}", kind.as_str());
        match kind {
            Kind::Counter | Kind::Gauge => {
                let map = if kind == Kind::Counter {
                    &r.counters
                } else {
                    &r.gauges
                };
                for ((f, l), v) in map.range((family, String::new())..) {
                    if *f != family {
                        break;
                    }
                    series(&mut out, family, l, *v);
                }
            }
            Kind::Histogram => {
                for ((f, l), h) in r.histograms.range((family, String::new())..) {
                    if *f != family {
                        break;
                    }
                    let mut cumulative = 0;
                    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                        cumulative += h.counts[i];
                        let le = with_le(l, &number(*bound));
                        series(
                            &mut out,
                            &format!("{family}_bucket"),
                            &le,
                            cumulative as f64,
                        );
                    }
                    cumulative += h.counts[LATENCY_BUCKETS.len()];
                    series(
                        &mut out,
                        &format!("{family}_bucket"),
                        &with_le(l, "+Inf"),
                        cumulative as f64,
                    );
                    series(&mut out, &format!("{family}_sum"), l, h.sum);
                    series(&mut out, &format!("{family}_count"), l, cumulative as f64);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is the process's and unit tests run in parallel: each test uses its own
    // label values and looks only at its own lines.
    fn lines_with(page: &str, needle: &str) -> Vec<String> {
        page.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        observe(TURN_STAGE, &[("stage", "unit-test-a")], 0.12);
        observe(TURN_STAGE, &[("stage", "unit-test-a")], 0.4);
        observe(TURN_STAGE, &[("stage", "unit-test-a")], 30.0);
        observe(TURN_STAGE, &[("stage", "unit-test-a")], f64::NAN);
        let page = render();
        let mine = lines_with(&page, "stage=\"unit-test-a\"");
        let get = |prefix: &str| {
            mine.iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {mine:?}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let b = |le: &str| format!("{TURN_STAGE}_bucket{{stage=\"unit-test-a\",le=\"{le}\"}}");
        assert_eq!(get(&b("0.1")), "0");
        assert_eq!(get(&b("0.15")), "1");
        assert_eq!(get(&b("0.4")), "2");
        assert_eq!(get(&b("10")), "2");
        assert_eq!(get(&b("+Inf")), "3");
        assert_eq!(get(&format!("{TURN_STAGE}_count")), "3");
        let sum: f64 = get(&format!("{TURN_STAGE}_sum")).parse().unwrap();
        assert!((sum - 30.52).abs() < 1e-9, "{sum}");
        // 50 ms steps below 1 s.
        assert_eq!(
            LATENCY_BUCKETS.iter().filter(|b| **b <= 1.0).count(),
            20,
            "{LATENCY_BUCKETS:?}"
        );
    }

    #[test]
    fn counters_gauges_and_escaped_labels() {
        count(
            CALLS_ENDED,
            &[("provider", "unit\"x\\"), ("outcome", "a\nb")],
            1.0,
        );
        count(
            CALLS_ENDED,
            &[("provider", "unit\"x\\"), ("outcome", "a\nb")],
            2.0,
        );
        gauge_add(CALLS_ACTIVE, &[("provider", "unit-gauge")], 1.0);
        gauge_add(CALLS_ACTIVE, &[("provider", "unit-gauge")], -1.0);
        let page = render();
        assert!(
            page.contains(
                "switchboard_calls_ended_total{provider=\"unit\\\"x\\\\\",outcome=\"a\\nb\"} 3\n"
            ),
            "{page}"
        );
        assert!(
            page.contains("switchboard_calls_active{provider=\"unit-gauge\"} 0\n"),
            "{page}"
        );
        // Every family is declared once, with its type, even before a sample.
        for (name, kind, _) in FAMILIES {
            assert_eq!(
                page.matches(&format!("# TYPE {name} {}\n", kind.as_str()))
                    .count(),
                1,
                "{name}"
            );
        }
        let rss = page
            .lines()
            .find(|l| l.starts_with("process_resident_memory_bytes "))
            .expect("the process's memory");
        let rss: f64 = rss.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(rss > 1e6, "{rss}");
    }

    #[test]
    fn a_quantile_is_the_bound_of_the_bucket_its_rank_falls_in() {
        let mut counts = vec![0; LATENCY_BUCKETS.len() + 1];
        assert_eq!(bucket_quantile(&counts, 0.5), None);
        // 0.05 s ×1, 0.3 s ×8, 2.0 s ×1: the median is in the 0.3 bucket, the 95th is the tenth.
        counts[0] = 1;
        counts[5] = 8;
        counts[22] = 1;
        assert_eq!(LATENCY_BUCKETS[5], 0.3);
        assert_eq!(bucket_quantile(&counts, 0.5), Some(0.3));
        assert_eq!(bucket_quantile(&counts, 0.9), Some(0.3));
        assert_eq!(bucket_quantile(&counts, 0.95), Some(LATENCY_BUCKETS[22]));
        assert_eq!(bucket_quantile(&counts, 0.0), Some(0.05));
        // Above every bound.
        counts[LATENCY_BUCKETS.len()] = 90;
        assert_eq!(bucket_quantile(&counts, 0.5), Some(f64::INFINITY));
        // Through the registry.
        observe(TTS_SYNTHESIS, &[("unit", "quantile")], 0.12);
        observe(TTS_SYNTHESIS, &[("unit", "quantile")], 0.7);
        assert_eq!(
            quantile(TTS_SYNTHESIS, &[("unit", "quantile")], 0.5),
            Some(0.15)
        );
        assert_eq!(
            quantile(TTS_SYNTHESIS, &[("unit", "quantile")], 1.0),
            Some(0.7)
        );
        assert_eq!(quantile(TTS_SYNTHESIS, &[("unit", "none")], 0.5), None);
    }
}
