//! The BERT encoder behind [`super::embed::MiniLm`], written for the one shape it runs: a
//! post-norm BERT (absolute positions, GELU with erf) on the CPU, inference only, weights named
//! as Hugging Face saves a `BertModel` (`embeddings.*`, `encoder.layer.N.*`; a `bert.` prefix is
//! accepted too). Dropout is the identity at inference and is left out.
//!
//! It needs only candle's tensors and layers, not a model zoo: the project builds one encoder,
//! and a general model library cost minutes of every clean build.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use serde::Deserialize;

/// The fields of `config.json` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn gelu() -> String {
    "gelu".to_string()
}

fn absolute() -> String {
    "absolute".to_string()
}

impl BertConfig {
    /// Why this encoder cannot run the model, if it cannot.
    pub fn unsupported(&self) -> Option<String> {
        if self.hidden_act != "gelu" {
            return Some(format!("hidden_act {:?} (only \"gelu\")", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return Some(format!(
                "position_embedding_type {:?} (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A loaded encoder: token ids in, one hidden vector per token out.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Bert> {
        if let Some(why) = cfg.unsupported() {
            candle_core::bail!("unsupported BERT config: {why}");
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let e = vb.pp("embeddings");
        let word = embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?;
        let position = embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let token_type = embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let embedding_norm = layer_norm(h, eps, e.pp("LayerNorm"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: linear(h, h, a.pp("self.query"))?,
                    key: linear(h, h, a.pp("self.key"))?,
                    value: linear(h, h, a.pp("self.value"))?,
                    attention_out: linear(h, h, a.pp("output.dense"))?,
                    attention_norm: layer_norm(h, eps, a.pp("output.LayerNorm"))?,
                    intermediate: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                    output: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                    output_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// `ids`, `type_ids` and `mask` are (batch, len) u32; `mask` is 1 for a real token and 0
    /// for padding. Returns (batch, len, hidden) f32.
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?;
        let x = (self.word.forward(ids)? + self.token_type.forward(type_ids)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mut x = self.embedding_norm.forward(&x)?;
        // Padding gets the most negative score before the softmax: its weight comes out 0.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(1)?.unsqueeze(1)?; // (batch, 1, 1, len)
        let bias = (mask.ones_like()? - &mask)?.affine(f32::MIN as f64, 0.0)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &bias)?;
        }
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, len, hidden) = x.dims3()?;
        // (batch, len, hidden) -> (batch, heads, len, head_dim)
        let split = |t: Tensor| {
            t.reshape((batch, len, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(l.query.forward(x)?)?;
        let k = split(l.key.forward(x)?)?;
        let v = split(l.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, len, hidden))?;
        let attended = l
            .attention_norm
            .forward(&(l.attention_out.forward(&context)? + x)?)?;
        let inner = l.intermediate.forward(&attended)?.gelu_erf()?;
        l.output_norm
            .forward(&(l.output.forward(&inner)? + &attended)?)
    }
}
