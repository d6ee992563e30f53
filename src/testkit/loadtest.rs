//! `switchboard load`: N simulated Twilio callers ([`crate::testkit::simcall`]) against a gateway on
//! loopback, and the figures a voice gateway is judged by: end of caller speech → first bot
//! audio, barge-in → `clear`, gaps in the bot's audio, and the gateway's CPU and memory.
//!
//! Every caller runs the same conversation: the greeting; "What's my bill this month?"; then,
//! once the bot's question has played for a second, "The business one." over it (a barge-in);
//! then "Confirm my reservation."; then it hangs up. Callers arrive spread over `ramp_ms`.
//!
//! With `steady_s`, each caller calls again as soon as its call ends, for `steady_s` seconds
//! after the last one arrived: N calls are then on the line all the time, at every stage of the
//! conversation at once (as a call center's lines are), instead of all starting within the ramp.
//! Only calls that began once every caller had arrived count. The report gives the share of
//! time the callers talk; `listen_ms` makes them talk more (they listen to a long reply for that
//! long, then talk over it). With `talkative` the callers say the same things in long turns
//! (`audio-fixtures/talkative`, 4-7 s each: "Hi, good morning. I was going through my paperwork
//! last night, and I wanted to ask what my bill is for this month."): they talk much of the time
//! with one transcription per 4-7 s of speech, where the short turns need one per 1-2 s.

use crate::audio::decode::{ChannelPick, read_audio_at};
use crate::audio::g711::encode_ulaw_from;
use crate::testkit::simcall::{self, CallLog, Script, Step, percentile};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

pub struct LoadOptions {
    /// Concurrent-call counts to run, one after another.
    pub calls: Vec<usize>,
    /// Callers of one run arrive spread evenly over this long.
    pub ramp_ms: u64,
    /// The gateway's media WebSocket (ws://host:port/twilio/media).
    pub url: String,
    /// How long a caller must talk over the bot before it stops (the gateway's
    /// `speech.call.hush_ms`, or `barge_in_ms` when that is 0); reported apart from the
    /// gateway's own reaction time.
    pub clear_window_ms: u64,
    /// 0: each caller makes one call. Otherwise each calls again and again for this many
    /// seconds after the ramp, and only calls begun after the ramp count (see the module docs).
    pub steady_s: u64,
    /// 0: callers wait for each reply to end (but the first, which they interrupt after a
    /// second). Otherwise they listen to each reply for at most this long, then talk.
    pub listen_ms: u64,
    /// The conversation in long turns (`audio-fixtures/talkative`, see the module docs).
    pub talkative: bool,
}

/// One row of the report.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub calls: usize,
    pub completed: usize,
    pub failed: Vec<String>,
    pub responses: Vec<u64>,
    pub clears: Vec<u64>,
    pub gaps: usize,
    pub gap_ms: u64,
    /// Gateway process CPU over the run, in % of one core.
    pub cpu_pct: f64,
    pub rss_mb: f64,
    pub wall_s: f64,
    /// Caller speech (onset to last audible sample) over call time, counted calls only.
    pub talk_ms: u64,
    pub call_ms: u64,
}

struct Fixtures {
    ask: Vec<u8>,
    answer: Vec<u8>,
    confirm: Vec<u8>,
}

fn ulaw(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    let p = dir.join(rel);
    let pcm = read_audio_at(&p, ChannelPick::Mix, 8000)
        .with_context(|| format!("reading caller fixture {}", p.display()))?;
    let mut b = vec![0u8; pcm.len()];
    encode_ulaw_from(&pcm, &mut b);
    Ok(b)
}

/// The conversation (see the module docs). With `listen_ms` > 0 the caller listens to each
/// reply for at most that long and then says the next thing, over the bot if it is still
/// talking: callers who talk more of the time (see `--listen-ms`).
fn script(f: &Fixtures, delay_ms: u64, listen_ms: u64) -> Script {
    // After each utterance: with `listen_ms`, listen that long; otherwise interrupt the first
    // reply after a second and wait out the others.
    let after = |first: bool| match (listen_ms, first) {
        (0, true) => Step::WaitBotSpeaking {
            ms: 1000,
            max_ms: 30_000,
        },
        (0, false) => Step::WaitBotDone { max_ms: 30_000 },
        (ms, _) => Step::Listen { ms, max_ms: 30_000 },
    };
    let steps = vec![
        Step::Silence(delay_ms),
        Step::WaitBotDone { max_ms: 30_000 },
        Step::Say(f.ask.clone()),
        after(true),
        Step::Say(f.answer.clone()),
        after(false),
        Step::Say(f.confirm.clone()),
        after(false),
        Step::HangUp,
    ];
    Script {
        max_ms: 180_000,
        ..Script::new("user_789", steps)
    }
}

/// CPU time (user + system) of this process so far, and its resident set.
fn proc_stats() -> (Duration, f64) {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let rss_kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (Duration::from_millis(ticks * 10), rss_kb / 1024.0)
}

/// What `n` silent calls cost while they are on the line: RSS before and with them (MB) and the
/// process's CPU over 4 s of their silence (% of one core). Each caller hears the greeting and
/// then says nothing for 8 s.
pub async fn idle_cost(url: &str, n: usize) -> Result<(f64, f64, f64)> {
    let (_, before) = proc_stats();
    let script = Script {
        max_ms: 60_000,
        ..Script::new(
            "user_789",
            vec![
                Step::WaitBotDone { max_ms: 30_000 },
                Step::Silence(8_000),
                Step::HangUp,
            ],
        )
    };
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (url, s) = (url.to_string(), script.clone());
            tokio::spawn(async move { simcall::run(&url, &s).await })
        })
        .collect();
    // The greeting has played (~3.5 s with the quiet after it) well before 6 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (cpu0, with) = proc_stats();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (cpu1, _) = proc_stats();
    let cpu = 100.0 * (cpu1 - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    Ok((before, with, cpu))
}

/// Runs every call count in `opts` and returns one row per count. `fixtures` is the
/// audio-fixtures directory. CPU and memory are this process's: run the gateway in-process.
pub async fn run(opts: &LoadOptions, fixtures: &Path) -> Result<Vec<Row>> {
    let f = if opts.talkative {
        Fixtures {
            ask: ulaw(fixtures, "talkative/ask.wav")?,
            answer: ulaw(fixtures, "talkative/answer.wav")?,
            confirm: ulaw(fixtures, "talkative/confirm.wav")?,
        }
    } else {
        Fixtures {
            ask: ulaw(fixtures, "bargein/ask.wav")?,
            answer: ulaw(fixtures, "bargein/answer.wav")?,
            confirm: ulaw(fixtures, "scenario1/01.wav")?,
        }
    };
    let mut rows = vec![];
    for &n in &opts.calls {
        eprintln!(
            "load: {n} concurrent call(s), arriving over {} ms ...",
            opts.ramp_ms
        );
        let (cpu0, _) = proc_stats();
        let t0 = Instant::now();
        let mut tasks = vec![];
        for i in 0..n {
            let delay = if n > 1 {
                opts.ramp_ms * i as u64 / (n as u64 - 1)
            } else {
                0
            };
            let first = script(&f, delay, opts.listen_ms);
            let again = script(&f, 0, opts.listen_ms);
            let url = opts.url.clone();
            let ramp_end = t0 + Duration::from_millis(opts.ramp_ms);
            let until = ramp_end + Duration::from_secs(opts.steady_s);
            let steady = opts.steady_s > 0;
            tasks.push(tokio::spawn(async move {
                let mut logs = vec![];
                let mut s = &first;
                loop {
                    let began = Instant::now();
                    let log = simcall::run(&url, s).await;
                    // In a steady run, calls begun during the ramp do not count.
                    if !steady || began >= ramp_end {
                        logs.push(log);
                    }
                    if !steady || Instant::now() >= until {
                        break;
                    }
                    s = &again;
                }
                logs
            }));
        }
        let mut row = Row {
            calls: n,
            ..Default::default()
        };
        for t in tasks {
            match t.await {
                Ok(logs) => {
                    for log in logs {
                        match log {
                            Ok(log) => add(&mut row, &log),
                            Err(e) => row.failed.push(format!("{e:#}")),
                        }
                    }
                }
                Err(e) => row.failed.push(e.to_string()),
            }
        }
        let wall = t0.elapsed();
        let (cpu1, rss) = proc_stats();
        row.wall_s = wall.as_secs_f64();
        row.cpu_pct = 100.0 * (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64();
        row.rss_mb = rss;
        eprintln!(
            "{}",
            format_rows(std::slice::from_ref(&row), opts.clear_window_ms)
        );
        rows.push(row);
        // Let the gateway close the last calls' records before the next run.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(rows)
}

fn add(row: &mut Row, log: &CallLog) {
    let answered = log.response_latencies();
    // Three utterances, each answered, and each barge-in (one, or with `listen_ms` as many as
    // the replies were long) got its clear.
    let barge_ins = log.barge_ins.len();
    if answered.len() == 3
        && barge_ins >= 1
        && log.clear_latencies().len() == barge_ins
        && log.unexpected.is_empty()
    {
        row.completed += 1;
    } else {
        row.failed.push(format!(
            "answered {}/3 utterances, {} clear(s) for {} barge-in(s), {} unexpected message(s)",
            answered.len(),
            log.clears.len(),
            barge_ins,
            log.unexpected.len()
        ));
    }
    row.responses.extend(answered);
    row.clears.extend(log.clear_latencies());
    row.gaps += log.gaps.len();
    row.gap_ms += log.gaps.iter().map(|g| g.1).sum::<u64>();
    row.talk_ms += log
        .speech
        .iter()
        .map(|&(start, end)| end.saturating_sub(start))
        .sum::<u64>();
    row.call_ms += log.duration_ms;
}

/// The report table (Markdown). `window_ms` is the configured time sound must last over the bot
/// before it stops, which the "reaction" column takes out of onset → clear.
pub fn format_rows(rows: &[Row], window_ms: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| calls | completed | callers talk | speech end → first bot audio p50 / p95 / max (ms) | barge-in onset → clear p50 / p95 (ms) | of which reaction after the {window_ms} ms window p50 / p95 | gaps in bot audio | gateway CPU (% of a core) | RSS (MB) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let reaction: Vec<u64> = r
            .clears
            .iter()
            .map(|c| c.saturating_sub(window_ms))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {}/{} | {:.0} % | {} / {} / {} | {} / {} | {} / {} | {} ({} ms) | {:.0} | {:.0} |",
            r.calls,
            r.completed,
            r.completed + r.failed.len(),
            100.0 * r.talk_ms as f64 / r.call_ms.max(1) as f64,
            percentile(&r.responses, 50.0),
            percentile(&r.responses, 95.0),
            r.responses.iter().max().copied().unwrap_or(0),
            percentile(&r.clears, 50.0),
            percentile(&r.clears, 95.0),
            percentile(&reaction, 50.0),
            percentile(&reaction, 95.0),
            r.gaps,
            r.gap_ms,
            r.cpu_pct,
            r.rss_mb,
        );
    }
    for r in rows {
        for f in r.failed.iter().take(5) {
            let _ = writeln!(s, "  {} calls: {f}", r.calls);
        }
    }
    s
}
