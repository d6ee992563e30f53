//! whisper's initial prompt for the caller's next words, built from what the bot just asked and
//! the template's vocabulary. whisper continues the style of its prompt: a prompt that shows a
//! code written "KTP560" makes it write a spelled code as one block instead of "a BC 1, 2, 3";
//! one that names the line's services spells them as the line does ("Wi-Fi", "check-in").

use super::state::Pending;
use crate::agent::protocol::RequiredField;
use crate::config::{FieldType, Template};

/// Longest prompt, in characters (whisper keeps at most half its 448-token context for it).
const MAX_PROMPT: usize = 400;

fn field_example(template: &Template, task: &str, f: &RequiredField) -> Option<String> {
    let spec = template.field(task, &f.field);
    let ft = spec
        .map(|s| s.field_type)
        .unwrap_or_else(|| FieldType::parse(&f.field_type));
    let example = spec
        .and_then(|s| s.example.clone())
        .or_else(|| f.validation.as_ref().and_then(|v| v.example.clone()));
    Some(match ft {
        FieldType::String => format!("Sure, it's {}.", example?),
        FieldType::Name => "And the name is Maria Lopez.".to_string(),
        FieldType::Date => "On December 3rd.".to_string(),
        FieldType::Month => "For October.".to_string(),
        FieldType::Amount => "$40.".to_string(),
        FieldType::Urgency => "It's urgent.".to_string(),
        FieldType::Confirm => "Yes, that's right.".to_string(),
        FieldType::Text | FieldType::Choice => return None,
    })
}

/// The prompt for the caller's answer to `pending` on `template`'s line.
pub fn for_pending(template: &Template, pending: &Pending) -> String {
    let mut parts: Vec<String> = vec![];
    match pending {
        Pending::Slots { task, fields, .. } => {
            parts.extend(
                fields
                    .iter()
                    .filter_map(|f| field_example(template, task, f)),
            );
        }
        Pending::Clarify { clarification, .. } => {
            let labels: Vec<&str> = clarification
                .options
                .iter()
                .map(|o| o.label.as_str())
                .collect();
            parts.push(format!("{}.", labels.join(", ")));
        }
        Pending::ConfirmMatch { .. } | Pending::ConfirmEnd | Pending::FollowUp { .. } => {
            parts.push("Yes, that's right. No.".into());
        }
        Pending::TopicChoice { .. } | Pending::AnythingElse | Pending::None => {
            // The way a request with its details is written.
            if let Some((task, code)) = template.tasks.iter().find_map(|(name, t)| {
                t.required
                    .iter()
                    .find(|f| f.field_type == FieldType::String && f.record.is_none())
                    .and_then(|f| f.example.clone())
                    .filter(|_| t.required.iter().any(|f| f.field_type == FieldType::Name))
                    .map(|code| (name, code))
            }) {
                let phrase = template.tasks[task].phrase.replace("your ", "my ");
                parts.push(format!(
                    "Hi, I'd like to {phrase}, it's {code} for Maria Lopez."
                ));
            }
        }
    }
    if !template.vocabulary.is_empty() {
        parts.push(format!("{}.", template.vocabulary.join(", ")));
    }
    let mut out = parts.join(" ");
    if out.len() > MAX_PROMPT {
        let mut end = MAX_PROMPT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}
