//! The engine across turns: persistence and resume after a restart, expiry, per-agent threads,
//! clarification by ordinal, repeated misunderstanding → human, barge-in truncation, redaction.

use crate::common::{Setup, config, engine, engine_with};
use std::time::Duration;
use switchboard::agent::engine::EngineError;
use switchboard::store::{LogQuery, LogType, Store};

#[tokio::test(start_paused = true)]
async fn conversation_resumes_from_sqlite_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/switchboard.db");
    let id = {
        let e = engine(Setup {
            store: Some(Store::open(&db).unwrap()),
            ..Setup::default()
        });
        let c = e.start("user_789", "text").await.unwrap();
        let t = e
            .say(&c.conversation_id, "Confirm my reservation")
            .await
            .unwrap();
        assert_eq!(t.status.as_str(), "needs_info");
        c.conversation_id
    }; // engine and store dropped: the process "restarts"
    let e = engine(Setup {
        store: Some(Store::open(&db).unwrap()),
        ..Setup::default()
    });
    let t = e
        .say(&id, "It's ABC123, the name is John Doe")
        .await
        .unwrap();
    assert_eq!(t.status.as_str(), "success", "{}", t.reply);
    assert!(t.reply.contains("Deluxe Suite"));
    let logs = e
        .logs(LogQuery {
            session_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let callers: Vec<&str> = logs
        .iter()
        .filter(|l| l.log_type == LogType::CallerToAgent)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        callers,
        [
            "Confirm my reservation",
            "It's ABC123, the name is John Doe"
        ]
    );
    let case = e.case(&t.case_id).await.unwrap().unwrap();
    assert_eq!(case.status.as_str(), "resolved");
    let actions: Vec<&str> = case.audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.starts_with(&["created"]), "{actions:?}");
    assert!(
        actions.contains(&"routed")
            && actions.contains(&"delegated")
            && actions.contains(&"status")
    );
}

#[tokio::test(start_paused = true)]
async fn sessions_expire_and_unknown_ids_are_not_found() {
    let s = Setup {
        semantic: false,
        ..Setup::default()
    };
    let mut cfg = config(&s);
    cfg.session.ttl_secs = 60;
    let e = engine_with(s, &cfg);
    let c = e.start("user_789", "text").await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    e.say(&c.conversation_id, "hello").await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(matches!(
        e.say(&c.conversation_id, "hello").await,
        Err(EngineError::Expired(_))
    ));
    assert!(matches!(
        e.say("conv_nope", "hello").await,
        Err(EngineError::NotFound(_))
    ));
    let long = "a".repeat(5000);
    assert!(matches!(
        e.say(&c.conversation_id, &long).await,
        Err(EngineError::InvalidInput(_))
    ));
    assert!(matches!(
        e.start("", "text").await,
        Err(EngineError::InvalidInput(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn each_sub_agent_sees_only_its_own_thread() {
    let e = engine(Setup {
        today: "2025-01-15",
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    let id = &c.conversation_id;
    e.say(id, "Confirm my reservation").await.unwrap();
    e.say(id, "ABC123, John Doe").await.unwrap();
    let t = e
        .say(id, "Actually, what's my bill this month?")
        .await
        .unwrap();
    assert_eq!(t.agent.as_deref(), Some("billing_agent"));
    let t = e.say(id, "the second one").await.unwrap();
    assert_eq!(
        t.attempts.last().unwrap().parameters["account_id"],
        "acc_789",
        "{}",
        t.reply
    );
    assert!(t.reply.contains("$310.00"), "{}", t.reply);
    let conv = e.conversation(id).await.unwrap();
    let billing_thread = conv.threads.get("billing_agent").unwrap();
    let reservation_thread = conv.threads.get("reservation_agent").unwrap();
    assert_ne!(billing_thread, reservation_thread);
    let in_thread = |th: &str| -> Vec<String> {
        conv.history
            .iter()
            .filter(|u| u.thread.as_deref() == Some(th))
            .map(|u| u.content.clone())
            .collect()
    };
    let billing = in_thread(billing_thread);
    assert!(billing.iter().any(|s| s == "the second one"), "{billing:?}");
    assert!(
        !billing
            .iter()
            .any(|s| s.contains("ABC123") || s.contains("Confirm")),
        "{billing:?}"
    );
    assert!(
        in_thread(reservation_thread)
            .iter()
            .any(|s| s == "ABC123, John Doe")
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_misunderstanding_goes_to_a_human() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    let t = e
        .say(&c.conversation_id, "purple monkey dishwasher")
        .await
        .unwrap();
    assert_eq!(t.status.as_str(), "clarify_topic");
    assert!(!t.ended);
    let t = e.say(&c.conversation_id, "flibbertigibbet").await.unwrap();
    assert_eq!(t.status.as_str(), "escalated", "{}", t.reply);
    assert!(t.ended);
    assert!(
        matches!(t.action, Some(switchboard::agent::master::EndAction::Transfer { ref to }) if to == "+15005550006")
    );
}

#[tokio::test(start_paused = true)]
async fn caller_can_ask_for_a_person_or_hang_up_at_any_point() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    e.say(&c.conversation_id, "Confirm my reservation")
        .await
        .unwrap();
    let t = e
        .say(&c.conversation_id, "I want to speak to a human")
        .await
        .unwrap();
    assert_eq!(
        (t.status.as_str(), t.agent.as_deref()),
        ("escalated", Some("human_handoff"))
    );
    assert!(t.reply.contains("transferring you"), "{}", t.reply);
    let c = e.start("user_789", "text").await.unwrap();
    e.say(&c.conversation_id, "Confirm my reservation")
        .await
        .unwrap();
    let t = e
        .say(&c.conversation_id, "never mind, goodbye")
        .await
        .unwrap();
    assert_eq!((t.status.as_str(), t.ended), ("ended", true));
    assert!(matches!(
        t.action,
        Some(switchboard::agent::master::EndAction::Hangup)
    ));
}

#[tokio::test(start_paused = true)]
async fn barge_in_keeps_only_what_was_heard() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    e.say(&c.conversation_id, "Confirm my reservation")
        .await
        .unwrap();
    e.interrupted(&c.conversation_id, "I'll need a bit more information")
        .await
        .unwrap();
    let conv = e.conversation(&c.conversation_id).await.unwrap();
    let last = conv
        .history
        .iter()
        .rev()
        .find(|u| u.role == switchboard::agent::master::Role::Agent)
        .unwrap();
    assert_eq!(last.content, "I'll need a bit more information");
    assert!(last.interrupted);
}

#[tokio::test(start_paused = true)]
async fn card_numbers_never_reach_the_log() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    e.say(
        &c.conversation_id,
        "my card is 4111 1111 1111 1111 and I want to pay my bill",
    )
    .await
    .unwrap();
    let logs = e
        .logs(LogQuery {
            session_id: Some(c.conversation_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!logs.is_empty());
    for l in &logs {
        assert!(!l.message.contains("4111 1111 1111 1111"), "{}", l.message);
    }
    assert!(
        logs.iter()
            .any(|l| l.message.contains("[card ending 1111]"))
    );
}

#[tokio::test(start_paused = true)]
async fn travel_template_books_not_reserves() {
    let e = engine(Setup {
        template: "travel",
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    assert_eq!(c.reply, "Hello, how can I help with your travel today?");
    let t = e
        .say(&c.conversation_id, "I want to confirm my booking")
        .await
        .unwrap();
    assert_eq!(
        (t.intent.as_deref(), t.agent.as_deref()),
        (Some("confirm_booking"), Some("booking_agent"))
    );
    assert!(t.reply.contains("your booking reference"), "{}", t.reply);
    let t = e
        .say(
            &c.conversation_id,
            "juliet kilo tango four eight two, the name is John Doe",
        )
        .await
        .unwrap();
    assert!(
        t.reply.contains(
            "You're confirmed on flight BA117 from London Heathrow to New York JFK, departing December 3rd at 8:25 AM."
        ),
        "{}",
        t.reply
    );
    // The hotel's records are not the airline's.
    let c = e.start("user_789", "text").await.unwrap();
    e.say(&c.conversation_id, "I want to confirm my booking")
        .await
        .unwrap();
    let t = e
        .say(&c.conversation_id, "ABC123, the name is John Doe")
        .await
        .unwrap();
    assert!(t.reply.contains("couldn't find a booking"), "{}", t.reply);
}

#[tokio::test(start_paused = true)]
async fn unsure_router_asks_between_the_top_two_topics() {
    let e = engine(Setup::default());
    let c = e.start("user_789", "text").await.unwrap();
    let t = e
        .say(
            &c.conversation_id,
            "I have a question about my payment for the room",
        )
        .await
        .unwrap();
    assert_eq!(t.status.as_str(), "clarify_topic", "{t:?}");
    assert!(t.confidence.unwrap() < 0.6);
    assert_eq!(t.reply, "Is this about billing or a reservation?");
    // The answer picks the billing candidate the router had ranked (paying, here).
    let t = e.say(&c.conversation_id, "billing").await.unwrap();
    assert_eq!(
        (t.intent.as_deref(), t.agent.as_deref()),
        (Some("make_payment"), Some("billing_agent"))
    );
    assert_eq!(t.status.as_str(), "needs_info");
}

#[tokio::test(start_paused = true)]
async fn history_is_capped() {
    let s = Setup {
        semantic: false,
        ..Setup::default()
    };
    let mut cfg = config(&s);
    cfg.session.history_cap = 4;
    let e = engine_with(s, &cfg);
    let c = e.start("user_789", "text").await.unwrap();
    for _ in 0..3 {
        e.say(&c.conversation_id, "Confirm my reservation")
            .await
            .unwrap();
    }
    let conv = e.conversation(&c.conversation_id).await.unwrap();
    assert_eq!(conv.history.len(), 4);
    assert_eq!(
        conv.history.last().unwrap().role,
        switchboard::agent::master::Role::Agent
    );
}

/// "Hi," said alone before a pause reaches whisper as half a second that it writes "Bye.": a
/// goodbye as the first words of a call, or as a lone sub-second clip, is confirmed, not obeyed.
#[tokio::test(start_paused = true)]
async fn an_implausible_goodbye_is_confirmed_and_a_real_one_ends_the_call() {
    use switchboard::agent::master::Heard;
    let e = engine(Setup::default());
    let c = e.start("user_789", "twilio").await.unwrap();
    let id = &c.conversation_id;
    let short = |text| Heard::speech(text, 480);
    let t = e.hear(id, short("Bye.")).await.unwrap();
    assert_eq!(t.status.as_str(), "confirming", "{}", t.reply);
    assert!(!t.ended && t.action.is_none());
    // The caller goes on with what they called about.
    let t = e
        .say(id, "I'd like to confirm my reservation")
        .await
        .unwrap();
    assert_eq!(t.intent.as_deref(), Some("confirm_reservation"));
    let t = e.say(id, "ABC123, John Doe").await.unwrap();
    assert_eq!(t.status.as_str(), "success");
    // Mid-call, a lone sub-second "Bye." is still only asked about…
    let t = e.hear(id, short("Bye.")).await.unwrap();
    assert_eq!(t.status.as_str(), "confirming", "{}", t.reply);
    let t = e.say(id, "No, what time is breakfast?").await.unwrap();
    assert!(t.reply.contains("Breakfast is served"), "{}", t.reply);
    // …while a goodbye as the answer to "anything else?" is taken at once.
    let t = e
        .hear(id, Heard::speech("No, that's all, goodbye.", 1400))
        .await
        .unwrap();
    assert_eq!(t.status.as_str(), "ended");
    assert!(matches!(
        t.action,
        Some(switchboard::agent::master::EndAction::Hangup)
    ));
}

/// Talking over the goodbye revives the conversation; an ended conversation hangs up again
/// instead of leaving a live line that only says it has ended.
#[tokio::test(start_paused = true)]
async fn a_goodbye_talked_over_revives_the_call_and_an_ended_one_hangs_up() {
    let e = engine(Setup::default());
    let c = e.start("user_789", "twilio").await.unwrap();
    let id = &c.conversation_id;
    e.say(id, "Confirm my reservation").await.unwrap();
    e.say(id, "ABC123, John Doe").await.unwrap();
    let t = e.say(id, "No thanks, bye").await.unwrap();
    assert!(t.ended);
    // The caller talks over "Thank you for calling…".
    e.interrupted(id, "Thank you for").await.unwrap();
    let t = e.say(id, "Wait, what's my bill this month?").await.unwrap();
    assert_eq!(t.intent.as_deref(), Some("get_billing_info"), "{}", t.reply);
    assert!(!t.ended);
    let t = e.say(id, "the personal one").await.unwrap();
    assert!(t.reply.contains("$125.50"), "{}", t.reply);
    let t = e.say(id, "No. Goodbye.").await.unwrap();
    assert!(t.ended);
    // Words after the goodbye has played: the line is hung up again, not kept open.
    let t = e.say(id, "hello?").await.unwrap();
    assert!(t.ended);
    assert!(matches!(
        t.action,
        Some(switchboard::agent::master::EndAction::Hangup)
    ));
    assert!(!t.reply.contains("has ended"), "{}", t.reply);
}

/// Off-topic requests get an honest answer of what the line does, then a person; a complaint
/// about a charge goes to billing, not to a reservation task; FAQ questions are answered from the
/// template, also in the middle of a task; small talk is answered.
#[tokio::test(start_paused = true)]
async fn out_of_scope_faq_and_small_talk() {
    let e = engine(Setup::default());
    let c = e.start("user_789", "text").await.unwrap();
    let id = &c.conversation_id;
    for text in [
        "What's the weather tomorrow?",
        "Can you help me with my math homework?",
    ] {
        let c = e.start("user_789", "text").await.unwrap();
        let t = e.say(&c.conversation_id, text).await.unwrap();
        assert_eq!(t.status.as_str(), "out_of_scope", "{text}: {}", t.reply);
        assert!(
            t.reply.contains("I can help with reservations"),
            "{}",
            t.reply
        );
        let t = e
            .say(&c.conversation_id, "Who won the game last night?")
            .await
            .unwrap();
        assert_eq!(t.status.as_str(), "escalated", "{}", t.reply);
    }
    let t = e
        .say(id, "You charged me twice for the same night")
        .await
        .unwrap();
    assert_eq!(t.intent.as_deref(), Some("dispute_charge"), "{}", t.reply);
    let t = e.say(id, "the business one").await.unwrap();
    assert!(t.reply.contains("billing dispute"), "{}", t.reply);
    let c = e.start("user_000", "text").await.unwrap();
    let id = &c.conversation_id;
    let t = e.say(id, "Hi, how are you?").await.unwrap();
    assert!(t.reply.contains("doing well"), "{}", t.reply);
    let t = e.say(id, "Confirm my reservation").await.unwrap();
    assert_eq!(t.status.as_str(), "needs_info");
    let t = e.say(id, "Sorry, what time is check-in?").await.unwrap();
    assert!(
        t.reply.starts_with("Check-in is at 3 PM") && t.reply.contains("reservation number"),
        "the pending question is asked again: {}",
        t.reply
    );
    let t = e.say(id, "ABC123, John Doe").await.unwrap();
    assert_eq!(t.status.as_str(), "success", "{}", t.reply);
    // Asked again later, a finished request gives its result again.
    let t = e
        .say(id, "Can you confirm my reservation again?")
        .await
        .unwrap();
    assert_eq!(t.status.as_str(), "success", "{}", t.reply);
    assert!(t.reply.contains("Deluxe Suite"), "{}", t.reply);
}

/// A spoken code whisper did not write exactly is read back before anything is done, and a
/// wrong code never reveals someone else's booking.
#[tokio::test(start_paused = true)]
async fn near_matches_are_confirmed_and_wrong_codes_reveal_nothing() {
    let e = engine(Setup::default());
    let c = e.start("user_000", "text").await.unwrap();
    let id = &c.conversation_id;
    e.say(id, "Cancel my reservation").await.unwrap();
    let t = e.say(id, "It's a BC 1, 2, 3, Jondo.").await.unwrap();
    assert_eq!(t.status.as_str(), "confirming", "{}", t.reply);
    assert_eq!(
        t.reply,
        "I have reservation ABC123 under John Doe. Is that right?"
    );
    assert!(t.attempts.iter().all(|a| a.outcome != "success"));
    // The booking is the caller's; the cancellation itself is read back before it runs.
    let t = e.say(id, "Yes.").await.unwrap();
    assert_eq!(
        t.reply,
        "To confirm: cancel reservation ABC123, with a cancellation fee of $25.00. Shall I go ahead?"
    );
    let t = e.say(id, "Yes, go ahead.").await.unwrap();
    assert!(
        t.reply.contains("I've cancelled your reservation ABC123"),
        "{}",
        t.reply
    );
    // Someone else's code with a name that is not theirs.
    let c = e.start("user_000", "text").await.unwrap();
    let id = &c.conversation_id;
    e.say(id, "Confirm my reservation").await.unwrap();
    let t = e.say(id, "K L M four eight two, Jane Roe").await.unwrap();
    assert!(t.reply.contains("couldn't find"), "{}", t.reply);
    assert!(
        !t.reply.contains("Priya") && !t.reply.contains("KLM482"),
        "{}",
        t.reply
    );
}

/// A phone call's caller is the customer the data source knows the number as; an unknown
/// number owns nothing, and the number is masked on the case.
#[tokio::test(start_paused = true)]
async fn a_phone_caller_is_identified_by_the_number_the_provider_gives() {
    let e = engine(Setup {
        today: "2025-01-15",
        ..Setup::default()
    });
    let t = e.start_call("+1 (555) 010-0789", "twilio").await.unwrap();
    let c = e.conversation(&t.conversation_id).await.unwrap();
    assert_eq!(c.caller_id, "user_789");
    let case = e.case(&t.case_id).await.unwrap().unwrap();
    let id = case
        .audit
        .iter()
        .find(|a| a.action == "caller_identified")
        .expect("the identification is on the case");
    assert_eq!(id.detail["customer"], "user_789");
    assert_eq!(id.detail["number"], "+*******0789");
    let r = e
        .say(&t.conversation_id, "What's my bill this month?")
        .await
        .unwrap();
    // A number identifies the caller but can be spoofed: the billing postcode comes first.
    assert!(r.reply.contains("billing postcode"), "{}", r.reply);
    let r = e.say(&t.conversation_id, "It's 12345.").await.unwrap();
    assert!(r.reply.contains("doesn't match"), "{}", r.reply);
    assert!(!r.reply.contains('$'), "{}", r.reply);
    let r = e
        .say(&t.conversation_id, "Sorry, it's nine four one oh seven.")
        .await
        .unwrap();
    assert!(r.reply.contains("Personal Account"), "{}", r.reply);
    let r = e
        .say(&t.conversation_id, "The personal one.")
        .await
        .unwrap();
    assert!(r.reply.contains('$'), "{}", r.reply);

    let t = e.start_call("+15559990000", "twilio").await.unwrap();
    let c = e.conversation(&t.conversation_id).await.unwrap();
    assert_eq!(c.caller_id, "+15559990000");
    let r = e
        .say(&t.conversation_id, "What's my bill this month?")
        .await
        .unwrap();
    assert!(
        !r.reply.contains('$'),
        "an unknown number was read a bill: {}",
        r.reply
    );
}

/// The clarifying questions sub-agents ask before any record is known open the bot's reply word
/// for word, and are among the agents' `fixed_questions`, which the voice synthesises at
/// start-up: the first caller to hear one does not wait for the voice.
#[tokio::test(start_paused = true)]
async fn agents_fixed_questions_open_their_replies_word_for_word() {
    use switchboard::agent::agents::fixed_questions;
    use switchboard::config::AgentKind;
    let e = engine(Setup::default());
    for (said, kind) in [
        ("What's my bill this month?", AgentKind::Billing),
        ("I want to pay my bill.", AgentKind::Billing),
        ("My wifi is not working.", AgentKind::Support),
    ] {
        let c = e.start("user_789", "twilio").await.unwrap();
        let t = e.say(&c.conversation_id, said).await.unwrap();
        let first = t.reply.split_inclusive('?').next().unwrap_or_default();
        assert!(
            fixed_questions(&kind).contains(&first),
            "{said:?} → {:?}: its first sentence is not one of {:?}",
            t.reply,
            fixed_questions(&kind)
        );
    }
}

/// The master's first question for a task's fields is the same for every caller, and is among
/// `field_questions` (which the voice synthesises at start-up), as is its question for one field
/// given wrong.
#[tokio::test(start_paused = true)]
async fn the_first_question_for_a_tasks_fields_is_ready_before_any_caller() {
    use switchboard::agent::master::field_questions;
    let e = engine(Setup::default());
    let ready = switchboard::tts::normalize::fixed_sentences(
        field_questions(&e.template).iter().map(String::as_str),
    );
    let mut asked = 0;
    for said in [
        "Confirm my reservation.",
        "I'd like to cancel my reservation.",
        "I need to change my booking.",
    ] {
        let c = e.start("user_789", "twilio").await.unwrap();
        let t = e.say(&c.conversation_id, said).await.unwrap();
        let sentences = switchboard::tts::normalize::fixed_sentences([t.reply.as_str()]);
        assert!(!sentences.is_empty(), "{said:?} → {:?}", t.reply);
        for s in &sentences {
            assert!(
                ready.contains(s),
                "{said:?} → {s:?} is not among {ready:#?}"
            );
            asked += 1;
        }
    }
    assert!(asked >= 6, "{asked}");
}

/// A call on user_789's line that has heard its business bill and the offer that follows it.
async fn offered_a_payment(e: &switchboard::agent::engine::Engine) -> String {
    let c = e.start("user_789", "twilio").await.unwrap();
    let id = c.conversation_id;
    e.say(&id, "What's my bill this month?").await.unwrap();
    let t = e.say(&id, "The business one.").await.unwrap();
    assert!(t.reply.contains("make a payment?"), "{}", t.reply);
    id
}

/// An offer after a task ("Would you like me to help you make a payment?") answered with an
/// acknowledgement and another request by name goes to that request; a yes with more about the
/// offered task takes the offer.
#[tokio::test(start_paused = true)]
async fn an_okay_then_another_request_does_not_take_the_offer() {
    let e = engine(Setup::default());
    let id = offered_a_payment(&e).await;
    let t = e
        .say(
            &id,
            "Okay, thank you. And while I have you, I'd also like to confirm my reservation for next week.",
        )
        .await
        .unwrap();
    assert_eq!(
        t.intent.as_deref(),
        Some("confirm_reservation"),
        "{}",
        t.reply
    );
    assert!(!t.reply.contains("pay"), "{}", t.reply);
    let id = offered_a_payment(&e).await;
    let t = e
        .say(&id, "Yes please, from the business account.")
        .await
        .unwrap();
    assert_eq!(t.intent.as_deref(), Some("make_payment"), "{}", t.reply);
}

/// The caller's utterances in the conversation's history, in order.
async fn caller_said(e: &switchboard::agent::engine::Engine, id: &str) -> Vec<String> {
    let conv = e.conversation(id).await.unwrap();
    conv.history
        .iter()
        .filter(|u| u.role == switchboard::agent::master::Role::Caller)
        .map(|u| u.content.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn words_said_before_an_unheard_answer_are_heard_again_with_what_followed() {
    use switchboard::agent::master::Heard;
    // "Confirm my reservation." … "It's ABC" (a pause: the bot answers, unheard) … "123, John
    // Doe": the answer to "It's ABC" is taken back and the two are one utterance.
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    let id = c.conversation_id.as_str();
    e.say(id, "Confirm my reservation").await.unwrap();
    e.say(id, "It's ABC").await.unwrap();
    let t = e
        .hear_continued(id, Heard::text("123, John Doe"), None)
        .await
        .unwrap()
        .expect("a turn");
    assert_eq!(t.status.as_str(), "success", "{}", t.reply);
    assert_eq!(
        caller_said(&e, id).await,
        ["Confirm my reservation", "It's ABC 123, John Doe"]
    );
    assert!(t.reply.contains("Deluxe Suite"), "{}", t.reply);
    // Heard piece by piece instead, the second piece is a code and a name of its own: at best
    // a near match, read back for the caller's yes (one more exchange).
    let c = e.start("user_789", "text").await.unwrap();
    let id = c.conversation_id.as_str();
    e.say(id, "Confirm my reservation").await.unwrap();
    e.say(id, "It's ABC").await.unwrap();
    let t = e.say(id, "123, John Doe").await.unwrap();
    assert_eq!(t.status.as_str(), "confirming", "{}", t.reply);
}

#[tokio::test(start_paused = true)]
async fn the_pieces_heard_together_replace_their_joined_words() {
    use switchboard::agent::master::Heard;
    // Alone, whisper hears the second piece as "1, 2, 3, Jondo"; the pieces' audio together
    // as "It's ABC123, John Doe.". The turn taken back heard everything since the caller last
    // heard an answer, so the transcript of it all is heard instead of the joined pieces.
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    let id = c.conversation_id.as_str();
    e.say(id, "Confirm my reservation").await.unwrap();
    e.say(id, "It's").await.unwrap();
    e.hear_continued(id, Heard::text("A, B, C"), Some("It's ABC"))
        .await
        .unwrap()
        .expect("a turn");
    // That turn heard everything since the caller last heard an answer: the transcript of all
    // three pieces replaces it in turn.
    let t = e
        .hear_continued(
            id,
            Heard::text("1, 2, 3, Jondo"),
            Some("It's ABC123, John Doe."),
        )
        .await
        .unwrap()
        .expect("a turn");
    assert_eq!(t.status.as_str(), "success", "{}", t.reply);
    assert!(t.reply.contains("Deluxe Suite"), "{}", t.reply);
    assert_eq!(
        caller_said(&e, id).await,
        ["Confirm my reservation", "It's ABC123, John Doe."]
    );
    // The booking was found and read out: that turn is not taken back, and a transcript that
    // holds its words again is not heard: the new words are heard alone.
    e.hear_continued(
        id,
        Heard::text("thanks"),
        Some("It's ABC123, John Doe, thanks."),
    )
    .await
    .unwrap()
    .expect("a turn");
    assert_eq!(
        caller_said(&e, id).await,
        ["Confirm my reservation", "It's ABC123, John Doe.", "thanks"]
    );
    // Without a transcript of the whole, the pieces' words are joined, as before.
    let c = e.start("user_789", "text").await.unwrap();
    let id = c.conversation_id.as_str();
    e.say(id, "Confirm my reservation").await.unwrap();
    e.say(id, "It's ABC").await.unwrap();
    e.hear_continued(id, Heard::text("1, 2, 3, Jondo"), None)
        .await
        .unwrap()
        .expect("a turn");
    assert_eq!(
        caller_said(&e, id).await,
        ["Confirm my reservation", "It's ABC 1, 2, 3, Jondo"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_turn_that_carried_out_a_task_is_never_taken_back() {
    use switchboard::agent::master::Heard;
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let c = e.start("user_789", "text").await.unwrap();
    let id = c.conversation_id.as_str();
    e.say(id, "Cancel my reservation").await.unwrap();
    let t = e.say(id, "ABC123, John Doe").await.unwrap();
    assert_eq!(
        t.status.as_str(),
        "needs_info",
        "a read-back first: {}",
        t.reply
    );
    let t = e.say(id, "Yes").await.unwrap();
    assert_eq!(t.status.as_str(), "success", "{}", t.reply);
    // The caller went on before hearing that it was cancelled: nothing new, nothing redone.
    let again = e.hear_continued(id, Heard::text(""), None).await.unwrap();
    assert!(again.is_none());
    // Words that go on are heard alone: "Yes" is not heard a second time.
    let t = e
        .hear_continued(id, Heard::text("thanks"), None)
        .await
        .unwrap()
        .expect("a turn");
    assert_ne!(t.status.as_str(), "success", "{}", t.reply);
    let said = caller_said(&e, id).await;
    assert_eq!(said.last().map(String::as_str), Some("thanks"), "{said:?}");
    assert_eq!(said.iter().filter(|s| *s == "Yes").count(), 1, "{said:?}");
    // Going on again: "thanks" changed nothing and is taken back; "Yes" stays behind it. The
    // recogniser's transcript of all the pieces since the caller last heard an answer holds the
    // "Yes" that was acted on: it is not heard, the words are joined instead.
    e.hear_continued(
        id,
        Heard::text("one more thing"),
        Some("Yes, thanks, one more thing."),
    )
    .await
    .unwrap()
    .expect("a turn");
    let said = caller_said(&e, id).await;
    assert_eq!(
        said.last().map(String::as_str),
        Some("thanks one more thing"),
        "{said:?}"
    );
    assert_eq!(said.iter().filter(|s| *s == "Yes").count(), 1, "{said:?}");
    assert!(!said.iter().any(|s| s == "thanks"), "{said:?}");
}
