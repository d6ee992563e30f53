//! Intent recognition: which task does the caller want? Two paths.
//!
//! - **Keyword path** (deterministic, microseconds): configured phrases matched on word
//!   boundaries. A phrase that names exactly one task decides it.
//! - **Semantic path** (the embedded default): the utterance's MiniLM sentence embedding is
//!   compared with every configured example utterance; a task's score is its best example's
//!   cosine similarity, and the confidence is a softmax over task scores, so it measures how
//!   clearly one task wins rather than an absolute similarity (which for real paraphrases
//!   ranges 0.2–0.75 and makes a poor cutoff; FACTS §11).
//!
//! Besides the template's tasks the router knows its FAQ entries (`faq_<id>`, answered by the
//! master from the template) and an `out_of_scope` class made of the template's examples of what
//! the line cannot do. Each decision also carries the best raw cosine similarity, on which the
//! master's out-of-scope threshold is calibrated (see `config/switchboard.toml`).
//!
//! The router only ranks tasks the caller may be routed to (`allowed`: capable, healthy agents).

use crate::agent::embed::{Embedder, cosine};
use crate::agent::slots;
use crate::config::Template;

/// The router's name for "none of the line's tasks" (the template's out-of-scope examples).
pub const OUT_OF_SCOPE: &str = "out_of_scope";
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutePath {
    Keyword,
    Semantic,
    None,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    pub task: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteDecision {
    /// Best task (even when below threshold; the caller decides what to do with it).
    pub task: Option<String>,
    pub confidence: f32,
    /// Tasks ranked best first, with their confidence.
    pub ranked: Vec<Scored>,
    pub path: RoutePath,
    /// The best example's cosine similarity (semantic path; 1 on the keyword path).
    pub similarity: f32,
}

impl RouteDecision {
    pub fn none() -> Self {
        Self {
            task: None,
            confidence: 0.0,
            ranked: vec![],
            path: RoutePath::None,
            similarity: 0.0,
        }
    }
}

struct Example {
    task: String,
    vector: Vec<f32>,
}

pub struct Router {
    keywords: Vec<(Vec<String>, String)>,
    embedder: Option<Arc<dyn Embedder>>,
    examples: RwLock<Vec<Example>>,
    /// Softmax temperature over cosine scores (`router.temperature`).
    temperature: f32,
}

#[derive(Debug, thiserror::Error)]
#[error("intent router: {0}")]
pub struct RouterError(pub String);

impl Router {
    /// Builds the keyword index and, with an embedder, embeds every example of every task.
    pub fn new(
        template: &Template,
        embedder: Option<Arc<dyn Embedder>>,
        temperature: f32,
    ) -> Result<Router, RouterError> {
        let mut keywords: Vec<(Vec<String>, String)> = template
            .tasks
            .iter()
            .flat_map(|(task, spec)| {
                spec.keywords
                    .iter()
                    .map(move |k| (keyword_tokens(k), task.clone()))
            })
            .chain(template.faq.iter().flat_map(|f| {
                f.keywords
                    .iter()
                    .map(move |k| (keyword_tokens(k), f.task()))
            }))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        // Longest phrases first: "cancel my reservation" beats "my reservation".
        keywords.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
        let router = Router {
            keywords,
            embedder,
            examples: RwLock::new(vec![]),
            temperature: temperature.max(1e-3),
        };
        for (task, spec) in &template.tasks {
            let refs: Vec<&str> = spec.examples.iter().map(String::as_str).collect();
            router.add_examples(task, &refs)?;
        }
        for f in &template.faq {
            let refs: Vec<&str> = f.examples.iter().map(String::as_str).collect();
            router.add_examples(&f.task(), &refs)?;
        }
        let refs: Vec<&str> = template
            .out_of_scope
            .examples
            .iter()
            .map(String::as_str)
            .collect();
        router.add_examples(OUT_OF_SCOPE, &refs)?;
        Ok(router)
    }

    pub fn is_semantic(&self) -> bool {
        self.embedder.is_some()
    }

    /// Adds example utterances for a task (e.g. a remote agent registering a new task).
    pub fn add_examples(&self, task: &str, examples: &[&str]) -> Result<(), RouterError> {
        let Some(e) = &self.embedder else {
            return Ok(());
        };
        if examples.is_empty() {
            return Ok(());
        }
        let vectors = e
            .embed(examples)
            .map_err(|err| RouterError(err.to_string()))?;
        let mut ex = self.examples.write().unwrap_or_else(|p| p.into_inner());
        ex.extend(vectors.into_iter().map(|vector| Example {
            task: task.to_string(),
            vector,
        }));
        Ok(())
    }

    /// The keyword fast path alone: the task named by the longest matching phrase, if only one
    /// task has a phrase of that length in the utterance.
    pub fn route_keywords(&self, text: &str, allowed: &dyn Fn(&str) -> bool) -> Option<String> {
        let toks = keyword_tokens(text);
        let mut best: Option<(usize, &str)> = None;
        let mut tie = false;
        for (phrase, task) in &self.keywords {
            if !allowed(task) || !contains_phrase(&toks, phrase) {
                continue;
            }
            match best {
                None => best = Some((phrase.len(), task)),
                Some((len, t)) if len == phrase.len() && t != task => tie = true,
                _ => {}
            }
        }
        match best {
            Some((_, t)) if !tie => Some(t.to_string()),
            _ => None,
        }
    }

    /// Semantic ranking of the allowed tasks (empty without an embedder), and the best raw
    /// cosine similarity.
    pub fn rank_semantic(
        &self,
        text: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<Scored>, f32), RouterError> {
        let Some(e) = &self.embedder else {
            return Ok((vec![], 0.0));
        };
        if text.trim().is_empty() {
            return Ok((vec![], 0.0));
        }
        let v = e
            .embed(&[text])
            .map_err(|err| RouterError(err.to_string()))?;
        let Some(v) = v.into_iter().next() else {
            return Ok((vec![], 0.0));
        };
        let ex = self.examples.read().unwrap_or_else(|p| p.into_inner());
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for x in ex.iter().filter(|x| allowed(&x.task)) {
            let s = cosine(&v, &x.vector);
            let slot = best.entry(x.task.as_str()).or_insert(f32::MIN);
            if s > *slot {
                *slot = s;
            }
        }
        let max = best.values().copied().fold(f32::MIN, f32::max);
        let exps: Vec<(&str, f32)> = best
            .iter()
            .map(|(t, s)| (*t, ((s - max) / self.temperature).exp()))
            .collect();
        let sum: f32 = exps.iter().map(|(_, e)| e).sum();
        let mut ranked: Vec<Scored> = exps
            .into_iter()
            .map(|(t, e)| Scored {
                task: t.to_string(),
                score: if sum > 0.0 { e / sum } else { 0.0 },
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.task.cmp(&b.task)));
        Ok((ranked, max.max(0.0)))
    }

    /// Keyword path first; the semantic path when no keyword decides.
    pub fn route(
        &self,
        text: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<RouteDecision, RouterError> {
        if let Some(task) = self.route_keywords(text, allowed) {
            return Ok(RouteDecision {
                ranked: vec![Scored {
                    task: task.clone(),
                    score: 1.0,
                }],
                task: Some(task),
                confidence: 1.0,
                path: RoutePath::Keyword,
                similarity: 1.0,
            });
        }
        let (ranked, similarity) = self.rank_semantic(text, allowed)?;
        let Some(top) = ranked.first() else {
            return Ok(RouteDecision::none());
        };
        Ok(RouteDecision {
            task: Some(top.task.clone()),
            confidence: top.score,
            path: RoutePath::Semantic,
            ranked,
            similarity,
        })
    }
}

/// Words for keyword matching: hyphenated words split, so "bye-bye" and "check-in" match
/// "bye bye" and "check in" either way they are written.
fn keyword_tokens(text: &str) -> Vec<String> {
    slots::tokens(text)
        .iter()
        .flat_map(|t| {
            t.split('-')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn contains_phrase(toks: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && toks.windows(phrase.len()).any(|w| w == phrase)
}
