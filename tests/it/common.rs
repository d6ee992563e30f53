//! Shared set-up: the real MiniLM model (installed by the test command's set-up), an engine on
//! an in-memory or file SQLite store, and a virtual clock pinned to a date.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use switchboard::agent::clock::VirtualClock;
use switchboard::agent::embed::{Embedder, MiniLm};
use switchboard::agent::engine::Engine;
use switchboard::config::{Config, RouterMode, SystemMode};
use switchboard::store::Store;

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to `tries` × 100 ms) until something listens on loopback `port`.
pub async fn listening(port: u16, tries: u32) -> bool {
    for _ in 0..tries {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The real sentence-embedding model, loaded once per test binary.
pub fn embedder() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<MiniLm>> = OnceLock::new();
    E.get_or_init(|| {
        let dir =
            switchboard::models::verify(&models_dir(), "all-minilm-l6-v2").unwrap_or_else(|e| {
                panic!("{e} (the test command runs `switchboard models install` first)")
            });
        Arc::new(MiniLm::load(&dir).expect("installed MiniLM loads"))
    })
    .clone()
}

pub struct Setup {
    pub template: &'static str,
    pub today: &'static str,
    pub reservation_system: SystemMode,
    pub semantic: bool,
    pub store: Option<Store>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            template: "hospitality",
            today: "2025-11-24",
            reservation_system: SystemMode::Up,
            semantic: true,
            store: None,
        }
    }
}

pub fn config(s: &Setup) -> Config {
    let mut cfg = Config::embedded().expect("embedded config is valid");
    cfg.template = s.template.into();
    cfg.demo.today = s.today.into();
    cfg.demo.reservation_system = s.reservation_system;
    cfg.router.mode = if s.semantic {
        RouterMode::Semantic
    } else {
        RouterMode::Keyword
    };
    cfg
}

pub fn engine_with(s: Setup, cfg: &Config) -> Engine {
    let store = s
        .store
        .unwrap_or_else(|| Store::open_in_memory().expect("in-memory sqlite"));
    let today = chrono::NaiveDate::parse_from_str(s.today, "%Y-%m-%d").expect("test date");
    let clock = Arc::new(VirtualClock::new(1_764_000_000_000, today));
    let embedder = s.semantic.then(embedder);
    Engine::build(cfg, store, embedder, clock).expect("engine builds")
}

pub fn engine(s: Setup) -> Engine {
    let cfg = config(&s);
    engine_with(s, &cfg)
}

/// The live-call dependencies of a test gateway, with the test's own provider settings and call
/// limits whatever the environment says, and the open (development) API state around them.
pub fn live_state(
    engine: Arc<Engine>,
    speech: switchboard::runtime::speech::Speech,
    cfg: &Config,
) -> (
    Arc<switchboard::runtime::live::LiveDeps>,
    switchboard::http::AppState,
) {
    live_state_with(engine, speech, cfg, |_| {})
}

/// `live_state`, with the live dependencies adjusted by `tweak` before they are shared.
pub fn live_state_with(
    engine: Arc<Engine>,
    speech: switchboard::runtime::speech::Speech,
    cfg: &Config,
    tweak: impl FnOnce(&mut switchboard::runtime::live::LiveDeps),
) -> (
    Arc<switchboard::runtime::live::LiveDeps>,
    switchboard::http::AppState,
) {
    let mut live = switchboard::runtime::live::LiveDeps::new(engine.clone(), speech, cfg).unwrap();
    live.twilio = cfg.twilio.clone();
    live.telnyx = cfg.telnyx.clone();
    live.plivo = cfg.plivo.clone();
    live.calls = cfg.calls.clone();
    tweak(&mut live);
    let live = Arc::new(live);
    let state = switchboard::http::AppState {
        engine,
        http: switchboard::net::client(),
        live: Some(live.clone()),
        public_url: None,
        auth: Arc::new(switchboard::http::auth::ApiAuth::open()),
    };
    (live, state)
}

/// Waits (a virtual clock's time, or real time) until every call has closed its case and
/// freed its slot.
pub async fn calls_idle(live: &switchboard::runtime::live::LiveDeps) {
    for _ in 0..200 {
        if live.registry.active() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("calls still active: {}", live.registry.active());
}

/// Every case the engine opened, one per conversation in its log.
pub async fn cases(engine: &Engine) -> Vec<switchboard::store::Case> {
    let logs = engine
        .logs(switchboard::store::LogQuery::default())
        .await
        .unwrap();
    let mut sessions: Vec<String> = logs.iter().map(|l| l.session_id.clone()).collect();
    sessions.sort();
    sessions.dedup();
    let mut out = vec![];
    for s in sessions {
        let conv = engine.conversation(&s).await.unwrap();
        out.push(engine.case(&conv.case_id).await.unwrap().unwrap());
    }
    out
}

/// The parts of a gateway for calls on a virtual clock: the default test configuration changed
/// by `tweak`, the models in the repository, whisper awaited on the blocking pool, and the live
/// dependencies changed by `live`. `speech`: a speech stack to share, so that two gateways speak
/// alike (its synthesis cache makes their renderings the same).
pub fn virtual_gateway(
    speech: Option<switchboard::runtime::speech::Speech>,
    tweak: impl FnOnce(&mut Config),
    live: impl FnOnce(&mut switchboard::runtime::live::LiveDeps),
) -> (
    axum::Router,
    Arc<Engine>,
    Arc<switchboard::runtime::live::LiveDeps>,
) {
    let setup = Setup::default();
    let mut cfg = config(&setup);
    cfg.models_dir = models_dir();
    tweak(&mut cfg);
    let engine = Arc::new(engine_with(setup, &cfg));
    let speech = speech.unwrap_or_else(|| {
        let mut s = switchboard::runtime::speech::Speech::load(&cfg).unwrap();
        s.asr = s.asr.on_virtual_clock();
        s
    });
    let (deps, state) = live_state_with(engine.clone(), speech, &cfg, live);
    (switchboard::http::router(state), engine, deps)
}

/// `/metrics` of a gateway's router, parsed: every sample line `series value`, where `series` is
/// the name with its labels as written. Panics unless the page is well-formed Prometheus text:
/// each line a comment (`# HELP`/`# TYPE` of a declared family) or one sample of a declared
/// family with a number.
pub async fn metrics(app: &axum::Router) -> std::collections::BTreeMap<String, f64> {
    use tower::ServiceExt;
    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut families = std::collections::BTreeMap::new();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                families
                    .insert(name.to_string(), kind.to_string())
                    .is_none(),
                "{line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(families.contains_key(family), "undeclared family: {line}");
        let v: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().expect(line)
        };
        out.insert(series.to_string(), v);
    }
    out
}
