//! Conversation-engine benchmarks: one routing decision (keyword fast path and MiniLM semantic
//! path) and one full text turn (route + delegate + reply + SQLite persistence).
//!
//! Besides criterion's estimates it prints a report with p50/p99 over many runs, and each path
//! as a ratio of the keyword path measured in the same run (so a loaded machine shifts both).
//! Benches assert nothing. Run: `cargo bench --bench engine`.

use criterion::{Criterion, criterion_group};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::agent::clock::SystemClock;
use switchboard::agent::embed::{Embedder, MiniLm};
use switchboard::agent::engine::Engine;
use switchboard::agent::router::Router;
use switchboard::config::Config;
use switchboard::store::Store;

const KEYWORD_UTTERANCE: &str = "Cancel my reservation for next week";
const SEMANTIC_UTTERANCES: &[&str] = &[
    "We're not gonna be able to make it on Thursday",
    "How much was I charged in January?",
    "The air conditioning in my room has stopped working",
    "Could I get some more pillows sent up to my room?",
];

fn embedder() -> Arc<dyn Embedder> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let path = switchboard::models::verify(&dir, "all-minilm-l6-v2")
        .unwrap_or_else(|e| panic!("{e} (run `switchboard models install` first)"));
    Arc::new(MiniLm::load(&path).expect("MiniLM loads"))
}

fn router(cfg: &Config, e: Arc<dyn Embedder>) -> Router {
    Router::new(
        &cfg.load_template().expect("template"),
        Some(e),
        cfg.router.temperature,
    )
    .expect("router")
}

fn engine(cfg: &Config, e: Arc<dyn Embedder>) -> Engine {
    let clock = Arc::new(SystemClock {
        fixed_today: cfg.fixed_today(),
    });
    Engine::build(
        cfg,
        Store::open_in_memory().expect("sqlite"),
        Some(e),
        clock,
    )
    .expect("engine")
}

fn percentiles(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    let at = |q: f64| d[((d.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

fn sample(n: usize, mut f: impl FnMut(usize)) -> (Duration, Duration) {
    for i in 0..n / 10 {
        f(i); // warm-up
    }
    let runs = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    percentiles(runs)
}

fn report() {
    let cfg = Config::embedded().expect("config");
    let e = embedder();
    let r = router(&cfg, e.clone());
    let all = |_: &str| true;
    let (kw50, kw99) = sample(2000, |_| {
        black_box(r.route(black_box(KEYWORD_UTTERANCE), &all).unwrap());
    });
    let (se50, se99) = sample(300, |i| {
        black_box(
            r.route(SEMANTIC_UTTERANCES[i % SEMANTIC_UTTERANCES.len()], &all)
                .unwrap(),
        );
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let eng = engine(&cfg, e);
    let (tu50, tu99) = sample(200, |_| {
        rt.block_on(async {
            let c = eng.start("user_789", "text").await.unwrap();
            black_box(
                eng.say(
                    &c.conversation_id,
                    "Confirm my reservation ABC123, the name is John Doe",
                )
                .await
                .unwrap(),
            );
        })
    });
    let ratio = |a: Duration| a.as_secs_f64() / kw50.as_secs_f64();
    println!("\n== engine report (p50 / p99; ratio = p50 / keyword-path p50 in this run)");
    println!(
        "routing, keyword path        {:>10.3?} / {:>10.3?}   x{:.0}",
        kw50, kw99, 1.0
    );
    println!(
        "routing, semantic (MiniLM)   {:>10.3?} / {:>10.3?}   x{:.0}",
        se50,
        se99,
        ratio(se50)
    );
    println!(
        "full text turn (start + say) {:>10.3?} / {:>10.3?}   x{:.0}",
        tu50,
        tu99,
        ratio(tu50)
    );
    println!("targets: semantic routing p99 <= 20 ms, keyword path <= 1 ms\n");
}

fn benches(c: &mut Criterion) {
    let cfg = Config::embedded().expect("config");
    let e = embedder();
    let r = router(&cfg, e.clone());
    let all = |_: &str| true;
    c.bench_function("route/keyword", |b| {
        b.iter(|| r.route(black_box(KEYWORD_UTTERANCE), &all).unwrap())
    });
    c.bench_function("route/semantic", |b| {
        b.iter(|| r.route(black_box(SEMANTIC_UTTERANCES[0]), &all).unwrap())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let eng = engine(&cfg, e);
    c.bench_function("turn/confirm_reservation", |b| {
        b.iter(|| {
            rt.block_on(async {
                let conv = eng.start("user_789", "text").await.unwrap();
                eng.say(
                    &conv.conversation_id,
                    "Confirm my reservation ABC123, the name is John Doe",
                )
                .await
                .unwrap()
            })
        })
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = benches
}

fn main() {
    report();
    group();
    Criterion::default().configure_from_args().final_summary();
}
