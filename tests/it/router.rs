//! The intent router with the real MiniLM model: paraphrases never given as examples, the
//! keyword fast path, and routing only to capable, healthy agents.

use crate::common::{Setup, config, embedder};
use switchboard::agent::router::{RoutePath, Router};

fn router(template: &str) -> Router {
    let cfg = config(&Setup::default());
    let t = cfg.load_template_named(template).unwrap();
    Router::new(&t, Some(embedder()), cfg.router.temperature).unwrap()
}

/// Paraphrases that appear nowhere in the templates (neither as examples nor as keywords).
const PARAPHRASES: &[(&str, &str)] = &[
    (
        "We're not gonna be able to make it on Thursday, so please drop our room",
        "cancel_reservation",
    ),
    (
        "Is my room for December still booked under my name?",
        "confirm_reservation",
    ),
    (
        "I'd like to shift my stay to a later date",
        "modify_reservation",
    ),
    ("What do I owe for last month?", "get_billing_info"),
    ("How much was I charged in January?", "get_billing_info"),
    (
        "Could I get some more pillows sent up to my room?",
        "request_service",
    ),
    (
        "The air conditioning in my room has stopped working",
        "create_support_ticket",
    ),
    (
        "Where's a nice place to grab dinner around here?",
        "get_recommendations",
    ),
    (
        "I need to talk with somebody real, not a machine",
        "escalate_to_human",
    ),
    (
        "I'd like to settle the amount due right now",
        "make_payment",
    ),
];

#[test]
fn routes_paraphrases_it_was_never_given() {
    let r = router("hospitality");
    let all = |_: &str| true;
    let mut report = String::new();
    let mut wrong = 0;
    for (text, want) in PARAPHRASES {
        let d = r.route(text, &all).unwrap();
        let ok = d.task.as_deref() == Some(*want) && d.confidence >= 0.6;
        if !ok {
            wrong += 1;
        }
        report.push_str(&format!(
            "{} {text:?} -> {:?} {:.2} {:?} (want {want})\n",
            if ok { "ok " } else { "BAD" },
            d.task,
            d.confidence,
            d.path
        ));
    }
    println!("{report}");
    assert_eq!(wrong, 0, "misrouted or below threshold:\n{report}");
}

#[test]
fn keyword_path_decides_without_the_model() {
    let r = router("hospitality");
    let all = |_: &str| true;
    let d = r
        .route("Cancel my reservation for next week", &all)
        .unwrap();
    assert_eq!(
        (d.task.as_deref(), d.path),
        (Some("cancel_reservation"), RoutePath::Keyword)
    );
    // Two tasks named equally strongly: the keyword path does not guess.
    assert_eq!(r.route_keywords("towels and billing", &all), None);
    // Otherwise the longest phrase decides.
    assert_eq!(
        r.route_keywords("towels and my bill", &all).as_deref(),
        Some("get_billing_info")
    );
}

#[test]
fn only_allowed_tasks_are_ranked() {
    let r = router("hospitality");
    let no_billing = |t: &str| t != "get_billing_info" && t != "make_payment";
    let d = r
        .route("What's on my latest invoice?", &no_billing)
        .unwrap();
    assert_ne!(d.task.as_deref(), Some("get_billing_info"));
    assert!(
        d.ranked
            .iter()
            .all(|s| s.task != "get_billing_info" && s.task != "make_payment")
    );
}

#[test]
fn travel_template_routes_to_its_own_tasks() {
    let r = router("travel");
    let all = |_: &str| true;
    let d = r
        .route("I have to call off my trip next month", &all)
        .unwrap();
    assert_eq!(d.task.as_deref(), Some("cancel_booking"), "{d:?}");
}

/// One row of `tests/data/scope.tsv`: in-scope requests, FAQ questions and off-topic requests
/// written as callers say them (a fifth held out: never used to choose the threshold).
struct ScopeRow {
    split: String,
    template: String,
    label: String,
    text: String,
}

fn scope_rows() -> Vec<ScopeRow> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scope.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            ScopeRow {
                split: c[1].into(),
                template: c[2].into(),
                label: c[3].into(),
                text: c[4].into(),
            }
        })
        .collect()
}

/// What the master decides for `text`: "out" (out of scope), "faq" or "in", at `threshold`.
fn scope_of(
    r: &Router,
    d: &switchboard::agent::router::RouteDecision,
    threshold: f32,
) -> &'static str {
    let _ = r;
    let out = d.path == RoutePath::Semantic
        && (d.task.as_deref() == Some(switchboard::agent::router::OUT_OF_SCOPE)
            || d.similarity < threshold);
    if out || d.path == RoutePath::None {
        "out"
    } else if d.task.as_deref().is_some_and(|t| t.starts_with("faq_")) {
        "faq"
    } else {
        "in"
    }
}

/// Precision and recall of "out of scope", and accuracy of in-scope / FAQ / out labels.
struct ScopeScore {
    n: usize,
    tp: usize,
    fp: usize,
    fn_: usize,
    correct: usize,
}

impl ScopeScore {
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }
}

fn score(
    rows: &[(&ScopeRow, switchboard::agent::router::RouteDecision)],
    r: &Router,
    t: f32,
) -> ScopeScore {
    let mut s = ScopeScore {
        n: 0,
        tp: 0,
        fp: 0,
        fn_: 0,
        correct: 0,
    };
    for (row, d) in rows {
        let got = scope_of(r, d, t);
        s.n += 1;
        s.correct += usize::from(got == row.label);
        match (got == "out", row.label == "out") {
            (true, true) => s.tp += 1,
            (true, false) => s.fp += 1,
            (false, true) => s.fn_ += 1,
            _ => {}
        }
    }
    s
}

/// The out-of-scope decision, measured: the threshold (`router.scope_threshold` = 0.35) was
/// chosen on the dev split, favouring precision (a real request taken for off-topic costs more
/// than an off-topic one answered); the held-out split is reported beside it. Measured at 0.35:
/// held-out precision 0.90 / 1.00, recall 0.82 / 0.73 (hospitality / travel). Asserts they stay
/// near there.
#[test]
fn out_of_scope_is_calibrated_on_callers_phrasings() {
    let cfg = config(&Setup::default());
    let threshold = cfg.router.scope_threshold;
    let mut report = String::new();
    let mut held = vec![];
    for template in ["hospitality", "travel"] {
        let r = router(template);
        let t = cfg.load_template_named(template).unwrap();
        let mut names: Vec<String> = t.tasks.keys().cloned().collect();
        names.extend(t.faq.iter().map(|f| f.task()));
        names.push(switchboard::agent::router::OUT_OF_SCOPE.into());
        let allowed = |x: &str| names.iter().any(|n| n == x);
        let rows = scope_rows();
        let decided: Vec<(&ScopeRow, switchboard::agent::router::RouteDecision)> = rows
            .iter()
            .filter(|row| row.template == template)
            .map(|row| (row, r.route(&row.text, &allowed).unwrap()))
            .collect();
        for split in ["dev", "heldout"] {
            let part: Vec<_> = decided
                .iter()
                .filter(|(row, _)| row.split == split)
                .map(|(row, d)| (*row, d.clone()))
                .collect();
            let s = score(&part, &r, threshold);
            report.push_str(&format!(
                "{template} {split:7} n={:3}  out-of-scope precision {:.2} recall {:.2}  label accuracy {:.2}\n",
                s.n,
                s.precision(),
                s.recall(),
                s.accuracy()
            ));
            if split == "dev" {
                for sweep in [0.25, 0.30, 0.35, 0.40, 0.45] {
                    let s = score(&part, &r, sweep);
                    report.push_str(&format!(
                        "    dev at {sweep:.2}: precision {:.2} recall {:.2} accuracy {:.2}\n",
                        s.precision(),
                        s.recall(),
                        s.accuracy()
                    ));
                }
            } else {
                held.push(s);
            }
        }
    }
    println!("out of scope at threshold {threshold}:\n{report}");
    for s in &held {
        assert!(
            s.precision() >= 0.85 && s.recall() >= 0.7 && s.accuracy() >= 0.8,
            "held-out out-of-scope figures fell:\n{report}"
        );
    }
}
