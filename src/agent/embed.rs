//! Sentence embeddings for the intent router.
//!
//! The router compares what the caller said with example utterances of each intent; it needs a
//! vector per utterance whose cosine similarity tracks meaning. [`MiniLm`] runs
//! sentence-transformers all-MiniLM-L6-v2 locally with candle on the CPU (no network, no
//! Python): BERT forward pass, mean pooling over the attention mask, L2 normalisation — the
//! same computation as sentence-transformers.
//!
//! Guarantees:
//! - Every returned vector has [`Embedder::dim`] finite components and unit L2 norm (the zero
//!   vector cannot occur: pooling always sees at least the `[CLS]`/`[SEP]` tokens).
//! - Any input text is accepted: empty text works, text longer than 256 tokens is truncated
//!   (the model's training length), never a panic.
//! - A batch gives the same vectors as embedding each text alone (padding is masked out);
//!   batches are padded only to their longest text, not to a fixed length.

use std::path::{Path, PathBuf};

use super::bert::{Bert, BertConfig};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{PaddingStrategy, Tokenizer};

/// Longest input in tokens (sentence-transformers' `max_seq_length` for this model).
pub const MAX_TOKENS: usize = 256;

/// Turns texts into sentence embeddings.
pub trait Embedder: Send + Sync {
    /// L2-normalised embeddings, one per text, same order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Length of every embedding.
    fn dim(&self) -> usize;
}

/// What can go wrong loading or running the embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{path} is missing — run `switchboard models install`")]
    MissingFile { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a usable BERT config: {reason} — run `switchboard models install` to reinstall"
    )]
    Config { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
}

/// all-MiniLM-L6-v2 on the CPU. Loading takes ~0.1 s; share one instance (it is `Sync`).
pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    dim: usize,
    device: Device,
}

impl MiniLm {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `model_dir`
    /// (as installed by `switchboard models install`).
    pub fn load(model_dir: &Path) -> Result<MiniLm, EmbedError> {
        let device = Device::Cpu;

        let config_path = model_dir.join("config.json");
        let config_text = read(&config_path)?;
        let config: BertConfig =
            serde_json::from_slice(&config_text).map_err(|e| EmbedError::Config {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(reason) = config.unsupported() {
            return Err(EmbedError::Config {
                path: config_path,
                reason,
            });
        }
        if config.hidden_size == 0 || config.max_position_embeddings < MAX_TOKENS {
            return Err(EmbedError::Config {
                path: config_path,
                reason: format!(
                    "hidden_size {} / max_position_embeddings {} cannot embed {MAX_TOKENS} tokens",
                    config.hidden_size, config.max_position_embeddings
                ),
            });
        }

        let tokenizer_path = model_dir.join("tokenizer.json");
        let tokenizer_bytes = read(&tokenizer_path)?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| EmbedError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        // The shipped tokenizer pads every input to 128 tokens (4-5x the work for an utterance)
        // and truncates at 128; sentence-transformers uses longest-in-batch padding and 256.
        let mut padding = tokenizer.get_padding().cloned().unwrap_or_default();
        padding.strategy = PaddingStrategy::BatchLongest;
        padding.pad_to_multiple_of = None;
        tokenizer.with_padding(Some(padding));
        let mut truncation = tokenizer.get_truncation().cloned().unwrap_or_default();
        truncation.max_length = MAX_TOKENS;
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;

        // Read into memory rather than mmap: no `unsafe`, and the file may be replaced by a
        // reinstall while we run.
        let weights_path = model_dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = Bert::load(vb, &config)?;

        Ok(MiniLm {
            model,
            tokenizer,
            dim: config.hidden_size,
            device,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EmbedError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            EmbedError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

impl Embedder for MiniLm {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let batch = encodings.len();
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        if batch != texts.len() || len == 0 || encodings.iter().any(|e| e.len() != len) {
            return Err(EmbedError::Tokenizer(format!(
                "expected {} encodings padded to one length, got {batch} of lengths {:?}",
                texts.len(),
                encodings.iter().map(|e| e.len()).collect::<Vec<_>>()
            )));
        }
        let mut ids = Vec::with_capacity(batch * len);
        let mut type_ids = Vec::with_capacity(batch * len);
        let mut mask = Vec::with_capacity(batch * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            type_ids.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (batch, len), &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, (batch, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch, len), &self.device)?;

        let hidden = self.model.forward(&ids, &type_ids, &mask)?; // (batch, len, dim)

        // Mean over real tokens only.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (batch, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (batch, dim)
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (batch, 1)
        let mean = summed.broadcast_div(&counts)?;
        // L2 normalisation (eps as torch.nn.functional.normalize).
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let normed = mean.broadcast_div(&norms)?;
        Ok(normed.to_vec2::<f32>()?)
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

/// Cosine similarity of two L2-normalised vectors (their dot product). Vectors of different
/// lengths are compared over the shorter one.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn model() -> &'static MiniLm {
        static MODEL: OnceLock<MiniLm> = OnceLock::new();
        MODEL.get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-minilm-l6-v2");
            MiniLm::load(&dir).unwrap_or_else(|e| {
                panic!(
                    "cannot load the embedding model from {}: {e}\n\
                     run `switchboard models install` (the test script does this first)",
                    dir.display()
                )
            })
        })
    }

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn dim_and_unit_norm() {
        let m = model();
        assert_eq!(m.dim(), 384);
        let vs = m
            .embed(&["Hello there.", "I'd like to book a table for two at seven."])
            .unwrap();
        assert_eq!(vs.len(), 2);
        for v in &vs {
            assert_eq!(v.len(), 384);
            assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));
        }
        assert!(m.embed(&[]).unwrap().is_empty());
    }

    #[test]
    fn similar_meaning_is_closer() {
        let vs = model()
            .embed(&[
                "What's my bill this month?",
                "How much do I owe?",
                "Cancel my hotel room",
            ])
            .unwrap();
        let near = cosine(&vs[0], &vs[1]);
        let far = cosine(&vs[0], &vs[2]);
        assert!(near > far, "bill~owe {near} should beat bill~hotel {far}");
        assert!((cosine(&vs[0], &vs[0]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn batch_equals_singles() {
        let m = model();
        let texts = [
            "Hi",
            "I need to move my appointment from Tuesday to Thursday afternoon, please.",
            "Can you tell me your opening hours?",
        ];
        let batch = m.embed(&texts).unwrap();
        for (text, b) in texts.iter().zip(&batch) {
            let single = m.embed(&[text]).unwrap().remove(0);
            let diff = single
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-4, "{text:?}: max difference {diff}");
        }
    }

    #[test]
    fn empty_and_huge_inputs() {
        let huge: String = "please transfer me to a human agent right now "
            .repeat(300)
            .chars()
            .take(10_000)
            .collect();
        assert_eq!(huge.chars().count(), 10_000);
        let odd = "a".repeat(10_000); // one "word" longer than WordPiece accepts: [UNK]
        let vs = model().embed(&["", &huge, &odd, "   \n\t "]).unwrap();
        assert_eq!(vs.len(), 4);
        for v in &vs {
            assert_eq!(v.len(), 384);
            assert!(v.iter().all(|x| x.is_finite()));
            assert!((norm(v) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn missing_model_dir_says_how_to_fix() {
        let tmp = std::env::temp_dir().join("switchboard-no-such-model-dir");
        let err = MiniLm::load(&tmp)
            .err()
            .expect("a missing directory cannot load");
        assert!(matches!(err, EmbedError::MissingFile { .. }), "{err:?}");
        assert!(err.to_string().contains("switchboard models install"));
    }

    #[test]
    fn cosine_of_unit_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    }
}
