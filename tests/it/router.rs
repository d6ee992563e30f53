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
