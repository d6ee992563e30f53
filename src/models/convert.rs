//! CTranslate2 whisper model → ggml file that whisper.cpp (through whisper-rs) loads.
//!
//! Why it exists: the only whisper weights reachable from where Switchboard is installed come
//! from registry packages in CTranslate2 format (`model.bin`, `tokenizer.json`), while
//! whisper.cpp reads its own ggml format. This is the project's own converter, run once at
//! install time; it needs no Python and no network.
//!
//! What it guarantees:
//! - Streaming: `model.bin` is indexed in a first pass (headers only, data skipped), then each
//!   tensor is copied in bounded chunks; at no time is more than one chunk of weights in memory.
//! - Every check whisper.cpp makes while loading (tensor names, count, shapes, element types,
//!   byte sizes, `n_audio_state == n_text_state`) is made here first, so a model that converts
//!   loads; anything unexpected — a truncated or corrupt `model.bin`, an int8-quantized model,
//!   a tokenizer whose special tokens are not where whisper.cpp expects them — is a
//!   [`ConvertError`] that says what is wrong. Nothing here panics on file contents.
//! - The output is written to a temporary file in the destination directory, synced, then
//!   renamed: an interrupted conversion never leaves a partial file under the final name.
//! - The output is deterministic: the same input gives byte-identical output.
//!
//! Output layout (ftype 1): magic, 11 i32 hparams, slaney mel filters (computed here with
//! librosa's formula; equal to OpenAI's `mel_filters.npz`), the regular BPE vocabulary (bytes
//! recovered by inverting GPT-2's byte↔unicode table; whisper.cpp adds the special tokens
//! itself), then tensors: 2-D/3-D weights as f16, 1-D tensors, conv biases (as n×1) and
//! positional embeddings as f32.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use half::f16;
use serde::Deserialize;

/// What a finished conversion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertStats {
    /// Tensors written (167 for tiny/tiny.en, 245 for base).
    pub tensors: usize,
    /// Size of the ggml file.
    pub bytes: u64,
    /// Vocabulary size of the model (rows of the token embedding).
    pub n_vocab: usize,
    /// Whether whisper.cpp will treat the model as multilingual (`n_vocab >= 51865`).
    pub multilingual: bool,
}

/// Why a conversion failed. Nothing is left under the output name when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is missing from the CTranslate2 model directory")]
    Missing { path: PathBuf },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: unsupported model: {reason}")]
    Unsupported { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> ConvertError {
    ConvertError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn unsupported(path: &Path, reason: impl Into<String>) -> ConvertError {
    ConvertError::Unsupported {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// ggml file magic ("ggml" as a little-endian u32).
const GGML_MAGIC: u32 = 0x6767_6d6c;
/// ggml ftype "mostly f16".
const FTYPE_F16: u64 = 1;
/// whisper.cpp's fixed audio front end.
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: usize = 400;
/// CTranslate2 binary format versions with this header layout (typed variables since 4,
/// aliases since 3; 6 is current).
const CT2_MIN_VERSION: u32 = 4;
const CT2_MAX_VERSION: u32 = 6;
/// Elements converted per chunk while streaming tensor data.
const CHUNK_ELEMS: usize = 1 << 16;

/// Converts the CTranslate2 whisper model in `ct2_dir` (`model.bin` plus `tokenizer.json`, or
/// `vocabulary.txt` if there is no `tokenizer.json`) to a ggml file at `out`.
/// Progress lines go to `progress`.
pub fn convert_ct2_to_ggml(
    ct2_dir: &Path,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ConvertStats, ConvertError> {
    let started = Instant::now();
    let model_path = ct2_dir.join("model.bin");
    let mut model = Ct2Model::open(&model_path)?;
    progress(&format!(
        "model.bin: {} v{}, {} variables, {:.1} MB",
        model.spec,
        model.version,
        model.vars.len(),
        model.file_len as f64 / 1e6
    ));
    let hp = HParams::from_model(&model)?;
    let plan = plan_tensors(&model, &hp)?;
    check_key_biases(&mut model, &plan)?;
    let vocab = load_vocab(ct2_dir, &hp, &model_path)?;
    progress(&format!(
        "hparams: n_vocab {}, audio {}×{} heads×{} state, text {}×{} heads×{} state, {} mels; \
         {} regular tokens from {}",
        hp.n_vocab,
        hp.n_audio_layer,
        hp.n_audio_head,
        hp.n_audio_state,
        hp.n_text_layer,
        hp.n_text_head,
        hp.n_text_state,
        hp.n_mels,
        vocab.tokens.len(),
        vocab.source
    ));
    let filters = mel_filters(SAMPLE_RATE, N_FFT, hp.n_mels);

    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ggml-model.bin".to_string());
    let tmp = dir.join(format!(".{file_name}.{}.partial", std::process::id()));
    progress(&format!(
        "writing {} tensors to {}",
        plan.tensors.len(),
        out.display()
    ));
    let result =
        write_ggml(&tmp, &mut model, &hp, &filters, &vocab, &plan.tensors).and_then(|bytes| {
            fs::rename(&tmp, out).map_err(io_err(out))?;
            Ok(bytes)
        });
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    progress(&format!(
        "wrote {} ({:.1} MB, {} tensors) in {:.1} s",
        out.display(),
        bytes as f64 / 1e6,
        plan.tensors.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(ConvertStats {
        tensors: plan.tensors.len(),
        bytes,
        n_vocab: hp.n_vocab,
        multilingual: hp.multilingual,
    })
}

// ---------------------------------------------------------------------------------------------
// CTranslate2 model.bin

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> u64 {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::Bf16)
    }
}

/// One variable of `model.bin`: its header, and where its data sits in the file.
#[derive(Debug)]
struct Var {
    dims: Vec<u64>,
    dtype: DType,
    offset: u64,
    /// The data itself, kept only for scalars (head counts); weights are read when written.
    small: Option<Vec<u8>>,
}

struct Ct2Model {
    path: PathBuf,
    reader: BufReader<File>,
    file_len: u64,
    version: u32,
    spec: String,
    vars: HashMap<String, Var>,
}

/// Bounds-checked little-endian reads of the `model.bin` header; every read checks the file is
/// long enough first, so a truncated file is an error naming the offset, never a panic.
struct HeaderReader<'a> {
    path: &'a Path,
    r: &'a mut BufReader<File>,
    pos: u64,
    len: u64,
}

impl HeaderReader<'_> {
    fn need(&self, n: u64, what: &str) -> Result<(), ConvertError> {
        if self.len.saturating_sub(self.pos) < n {
            return Err(corrupt(
                self.path,
                format!(
                    "truncated: {what} needs {n} bytes at offset {}, the file has {} bytes",
                    self.pos, self.len
                ),
            ));
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ConvertError> {
        self.need(n, what)?;
        // `need` bounded n by the file length; header fields are at most 64 KiB.
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(io_err(self.path))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ConvertError> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.r.read_exact(&mut buf).map_err(io_err(self.path))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ConvertError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A CTranslate2 string: u16 length, then bytes including a trailing NUL.
    fn string(&mut self, what: &str) -> Result<String, ConvertError> {
        let len = self.u16(what)?;
        let raw = self.bytes(u64::from(len), what)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
        String::from_utf8(raw.to_vec()).map_err(|_| {
            corrupt(
                self.path,
                format!("{what} at offset {} is not UTF-8", self.pos),
            )
        })
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        self.need(n, what)?;
        let delta = i64::try_from(n).map_err(|_| corrupt(self.path, "offset overflow"))?;
        self.r.seek_relative(delta).map_err(io_err(self.path))?;
        self.pos += n;
        Ok(())
    }
}

impl Ct2Model {
    /// Reads the header of every variable (skipping the data) and the alias list.
    fn open(path: &Path) -> Result<Ct2Model, ConvertError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ConvertError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut h = HeaderReader {
            path,
            r: &mut reader,
            pos: 0,
            len: file_len,
        };
        let version = h.u32("format version")?;
        if !(CT2_MIN_VERSION..=CT2_MAX_VERSION).contains(&version) {
            return Err(corrupt(
                path,
                format!(
                    "format version {version} (expected {CT2_MIN_VERSION}..={CT2_MAX_VERSION}): not a CTranslate2 model.bin, or an unsupported format"
                ),
            ));
        }
        let spec = h.string("spec name")?;
        if spec != "WhisperSpec" {
            return Err(unsupported(
                path,
                format!("model spec is `{spec}`, not `WhisperSpec`"),
            ));
        }
        let _revision = h.u32("spec revision")?;
        let count = h.u32("variable count")?;
        let mut vars = HashMap::new();
        for i in 0..count {
            let what = format!("variable {i} of {count}");
            let name = h.string(&what)?;
            let rank = h.u8(&what)?;
            if rank > 4 {
                return Err(corrupt(path, format!("variable `{name}` has rank {rank}")));
            }
            let mut dims = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                dims.push(u64::from(h.u32(&what)?));
            }
            let code = h.u8(&what)?;
            let dtype = DType::from_code(code).ok_or_else(|| {
                corrupt(
                    path,
                    format!("variable `{name}` has unknown type code {code}"),
                )
            })?;
            let nbytes = u64::from(h.u32(&what)?);
            let expected = dims
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| corrupt(path, format!("variable `{name}` is impossibly large")))?;
            if nbytes != expected {
                return Err(corrupt(
                    path,
                    format!(
                        "variable `{name}` {dims:?} {dtype:?} holds {nbytes} bytes, its shape needs {expected}"
                    ),
                ));
            }
            let offset = h.pos;
            let small = if nbytes <= 8 {
                Some(h.bytes(nbytes, &format!("data of `{name}`"))?)
            } else {
                h.skip(nbytes, &format!("data of `{name}`"))?;
                None
            };
            let var = Var {
                dims,
                dtype,
                offset,
                small,
            };
            if vars.insert(name.clone(), var).is_some() {
                return Err(corrupt(path, format!("variable `{name}` appears twice")));
            }
        }
        {
            let aliases = h.u32("alias count")?;
            for _ in 0..aliases {
                let alias = h.string("alias name")?;
                let target = h.string("alias target")?;
                if !vars.contains_key(&target) {
                    return Err(corrupt(
                        path,
                        format!("alias `{alias}` points to missing variable `{target}`"),
                    ));
                }
            }
        }
        if h.pos != file_len {
            return Err(corrupt(
                path,
                format!(
                    "{} unexpected bytes after the last record (ends at {}, file has {})",
                    file_len - h.pos,
                    h.pos,
                    file_len
                ),
            ));
        }
        Ok(Ct2Model {
            path: path.to_path_buf(),
            reader,
            file_len,
            version,
            spec,
            vars,
        })
    }

    fn var(&self, name: &str) -> Result<&Var, ConvertError> {
        self.vars
            .get(name)
            .ok_or_else(|| corrupt(&self.path, format!("variable `{name}` is missing")))
    }

    /// An integer scalar (head counts are int16 in practice).
    fn int_scalar(&self, name: &str) -> Result<Option<i64>, ConvertError> {
        let Some(var) = self.vars.get(name) else {
            return Ok(None);
        };
        let bad = || corrupt(&self.path, format!("`{name}` is not an integer scalar"));
        let data = var.small.as_deref().ok_or_else(bad)?;
        if !var.dims.iter().all(|&d| d == 1) {
            return Err(bad());
        }
        let v = match (var.dtype, data) {
            (DType::I8, &[a]) => i64::from(a as i8),
            (DType::I16, &[a, b]) => i64::from(i16::from_le_bytes([a, b])),
            (DType::I32, &[a, b, c, d]) => i64::from(i32::from_le_bytes([a, b, c, d])),
            _ => return Err(bad()),
        };
        Ok(Some(v))
    }

    /// Number of `<side>/layer_<i>/` blocks (a plain prefix match would also count `layer_norm`).
    fn layer_count(&self, side: &str) -> Result<usize, ConvertError> {
        let prefix = format!("{side}/layer_");
        let mut seen = BTreeSet::new();
        for name in self.vars.keys() {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let digits: &str = rest.split('/').next().unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                continue; // `layer_norm/...`
            }
            if rest.len() == digits.len() {
                continue; // no `/` after the index
            }
            let i: usize = digits
                .parse()
                .map_err(|_| corrupt(&self.path, format!("bad layer index in `{name}`")))?;
            seen.insert(i);
        }
        let n = seen.len();
        if seen.iter().copied().ne(0..n) {
            return Err(corrupt(
                &self.path,
                format!("{side} layers are not numbered 0..{n}: {seen:?}"),
            ));
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Hyper-parameters and the tensor plan

#[derive(Debug, Clone)]
struct HParams {
    n_vocab: usize,
    n_audio_ctx: u64,
    n_audio_state: u64,
    n_audio_head: u64,
    n_audio_layer: usize,
    n_text_ctx: u64,
    n_text_state: u64,
    n_text_head: u64,
    n_text_layer: usize,
    n_mels: usize,
    multilingual: bool,
}

impl HParams {
    fn from_model(m: &Ct2Model) -> Result<HParams, ConvertError> {
        let p = &m.path;
        let dims2 = |name: &str| -> Result<(u64, u64), ConvertError> {
            match m.var(name)?.dims.as_slice() {
                &[a, b] => Ok((a, b)),
                d => Err(corrupt(
                    p,
                    format!("`{name}` has shape {d:?}, expected 2-D"),
                )),
            }
        };
        let (n_audio_ctx, n_audio_state) = dims2("encoder/position_encodings/encodings")?;
        let (n_text_ctx, n_text_state) = dims2("decoder/position_encodings/encodings")?;
        let (n_vocab, emb_state) = dims2("decoder/embeddings/weight")?;
        let n_mels = match m.var("encoder/conv1/weight")?.dims.as_slice() {
            &[_, mels, 3] => mels,
            d => {
                return Err(corrupt(
                    p,
                    format!("`encoder/conv1/weight` has shape {d:?}, expected [state, mels, 3]"),
                ));
            }
        };
        if n_audio_state != n_text_state || emb_state != n_text_state {
            // whisper.cpp asserts this and would abort the process.
            return Err(unsupported(
                p,
                format!(
                    "audio state {n_audio_state}, text state {n_text_state}, embedding width {emb_state} differ"
                ),
            ));
        }
        let heads = |side: &str, state: u64| -> Result<u64, ConvertError> {
            let name = format!("{side}/num_heads");
            // Whisper's head width is 64 in every size; older conversions lack the scalar.
            let h = m.int_scalar(&name)?.unwrap_or((state / 64) as i64);
            match u64::try_from(h) {
                Ok(h) if h > 0 && state.is_multiple_of(h) => Ok(h),
                _ => Err(corrupt(
                    p,
                    format!("`{name}` = {h} does not divide {state}"),
                )),
            }
        };
        let n_audio_head = heads("encoder", n_audio_state)?;
        let n_text_head = heads("decoder", n_text_state)?;
        let n_audio_layer = m.layer_count("encoder")?;
        let n_text_layer = m.layer_count("decoder")?;
        if n_audio_layer == 0 || n_text_layer == 0 {
            return Err(corrupt(p, "the model has no encoder or no decoder layers"));
        }
        let fits = |v: u64| v > 0 && i32::try_from(v).is_ok();
        if ![
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_text_ctx,
            n_mels,
            n_audio_state.saturating_mul(4),
        ]
        .into_iter()
        .all(fits)
        {
            return Err(corrupt(p, "a dimension is zero or does not fit in i32"));
        }
        let n_vocab = usize::try_from(n_vocab).map_err(|_| corrupt(p, "n_vocab too large"))?;
        let n_mels = usize::try_from(n_mels).map_err(|_| corrupt(p, "n_mels too large"))?;
        Ok(HParams {
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head,
            n_audio_layer,
            n_text_ctx,
            n_text_state,
            n_text_head,
            n_text_layer,
            n_mels,
            // whisper.cpp's own rule (`whisper_vocab::is_multilingual`).
            multilingual: n_vocab >= 51865,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutType {
    F32,
    F16,
}

impl OutType {
    fn code(self) -> u64 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
        }
    }

    fn size(self) -> u64 {
        match self {
            OutType::F32 => 4,
            OutType::F16 => 2,
        }
    }
}

/// One ggml tensor: a contiguous run of elements of one CTranslate2 variable.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    src: String,
    /// First element of the run inside the source variable.
    start: u64,
    /// ggml `ne` order (innermost first), as written to the file.
    ne: Vec<u64>,
    ty: OutType,
}

impl Planned {
    fn elems(&self) -> u64 {
        self.ne.iter().product()
    }
}

struct Planner<'a> {
    m: &'a Ct2Model,
    out: Vec<Planned>,
    /// Key-bias slices of the fused projections: not written, but they must be zero.
    zero: Vec<Planned>,
}

impl Planner<'_> {
    /// Plans `rows` rows starting at `first_row` of `src` (whose shape must be `shape`) as the
    /// ggml tensor `name`, optionally reshaped (`ne` overrides the reversed shape).
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: String,
        src: &str,
        shape: &[u64],
        first_row: u64,
        rows: u64,
        ty: OutType,
        ne: Option<Vec<u64>>,
    ) -> Result<(), ConvertError> {
        let var = self.m.var(src)?;
        if var.dims != shape {
            return Err(corrupt(
                &self.m.path,
                format!(
                    "`{src}` has shape {:?}, expected {shape:?} for {name}",
                    var.dims
                ),
            ));
        }
        if !var.dtype.is_float() {
            return Err(unsupported(
                &self.m.path,
                format!(
                    "`{src}` is {:?}: quantized (int8/int16) CTranslate2 models are not supported, \
                     use a float16 or float32 conversion",
                    var.dtype
                ),
            ));
        }
        let row_elems: u64 = shape.iter().skip(1).product();
        let mut piece: Vec<u64> = shape.to_vec();
        if let Some(first) = piece.first_mut() {
            *first = rows;
        }
        let ne = ne.unwrap_or_else(|| piece.iter().rev().copied().collect());
        self.out.push(Planned {
            name,
            src: src.to_string(),
            start: first_row * row_elems,
            ne,
            ty,
        });
        Ok(())
    }

    fn whole(&mut self, name: &str, src: &str, shape: &[u64]) -> Result<(), ConvertError> {
        let ty = if shape.len() >= 2 {
            OutType::F16
        } else {
            OutType::F32
        };
        let rows = shape.first().copied().unwrap_or(1);
        self.push(name.to_string(), src, shape, 0, rows, ty, None)
    }

    fn layer_norm(&mut self, name: &str, src: &str, n: u64) -> Result<(), ConvertError> {
        self.whole(&format!("{name}.weight"), &format!("{src}/gamma"), &[n])?;
        self.whole(&format!("{name}.bias"), &format!("{src}/beta"), &[n])
    }

    fn linear(&mut self, name: &str, src: &str, rows: u64, cols: u64) -> Result<(), ConvertError> {
        self.whole(
            &format!("{name}.weight"),
            &format!("{src}/weight"),
            &[rows, cols],
        )?;
        self.whole(&format!("{name}.bias"), &format!("{src}/bias"), &[rows])
    }

    /// Splits a fused projection (`parts` blocks of n rows stacked) into whisper.cpp tensors.
    /// A `None` bias name means whisper.cpp has no bias there (the key): the slice is dropped
    /// after checking it is zero.
    fn fused(
        &mut self,
        src: &str,
        n: u64,
        outs: &[(&str, Option<&str>)],
    ) -> Result<(), ConvertError> {
        let parts = outs.len() as u64;
        let wsrc = format!("{src}/weight");
        let bsrc = format!("{src}/bias");
        for (i, (wname, bname)) in outs.iter().enumerate() {
            let first = i as u64 * n;
            self.push(
                wname.to_string(),
                &wsrc,
                &[parts * n, n],
                first,
                n,
                OutType::F16,
                None,
            )?;
            match bname {
                Some(bname) => self.push(
                    bname.to_string(),
                    &bsrc,
                    &[parts * n],
                    first,
                    n,
                    OutType::F32,
                    None,
                )?,
                None => {
                    self.push(
                        format!("{wname} (dropped bias)"),
                        &bsrc,
                        &[parts * n],
                        first,
                        n,
                        OutType::F32,
                        None,
                    )?;
                    if let Some(dropped) = self.out.pop() {
                        self.zero.push(dropped);
                    }
                }
            }
        }
        Ok(())
    }

    fn block_common(
        &mut self,
        side: &str,
        ct2: &str,
        i: usize,
        n: u64,
    ) -> Result<(), ConvertError> {
        let g = format!("{side}.blocks.{i}");
        let c = format!("{ct2}/layer_{i}");
        self.layer_norm(
            &format!("{g}.attn_ln"),
            &format!("{c}/self_attention/layer_norm"),
            n,
        )?;
        let (q, qb) = (
            format!("{g}.attn.query.weight"),
            format!("{g}.attn.query.bias"),
        );
        let k = format!("{g}.attn.key.weight");
        let (v, vb) = (
            format!("{g}.attn.value.weight"),
            format!("{g}.attn.value.bias"),
        );
        self.fused(
            &format!("{c}/self_attention/linear_0"),
            n,
            &[(&q, Some(&qb)), (&k, None), (&v, Some(&vb))],
        )?;
        self.linear(
            &format!("{g}.attn.out"),
            &format!("{c}/self_attention/linear_1"),
            n,
            n,
        )?;
        self.layer_norm(&format!("{g}.mlp_ln"), &format!("{c}/ffn/layer_norm"), n)?;
        self.linear(
            &format!("{g}.mlp.0"),
            &format!("{c}/ffn/linear_0"),
            4 * n,
            n,
        )?;
        self.linear(
            &format!("{g}.mlp.2"),
            &format!("{c}/ffn/linear_1"),
            n,
            4 * n,
        )
    }
}

/// Every tensor whisper.cpp expects, mapped to its CTranslate2 source, shapes checked; and the
/// key-bias slices that are dropped (which must be zero).
fn plan_tensors(m: &Ct2Model, hp: &HParams) -> Result<Plan, ConvertError> {
    let mut p = Planner {
        m,
        out: Vec::new(),
        zero: Vec::new(),
    };
    let n = hp.n_audio_state;
    let mels = hp.n_mels as u64;
    p.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        &[hp.n_audio_ctx, n],
    )?;
    // Positional embeddings are f32 in whisper.cpp although they are 2-D.
    if let Some(last) = p.out.last_mut() {
        last.ty = OutType::F32;
    }
    p.whole(
        "encoder.conv1.weight",
        "encoder/conv1/weight",
        &[n, mels, 3],
    )?;
    p.push(
        "encoder.conv1.bias".into(),
        "encoder/conv1/bias",
        &[n],
        0,
        n,
        OutType::F32,
        Some(vec![1, n]),
    )?;
    p.whole("encoder.conv2.weight", "encoder/conv2/weight", &[n, n, 3])?;
    p.push(
        "encoder.conv2.bias".into(),
        "encoder/conv2/bias",
        &[n],
        0,
        n,
        OutType::F32,
        Some(vec![1, n]),
    )?;
    p.layer_norm("encoder.ln_post", "encoder/layer_norm", n)?;
    for i in 0..hp.n_audio_layer {
        p.block_common("encoder", "encoder", i, n)?;
    }

    let n = hp.n_text_state;
    p.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        &[hp.n_text_ctx, n],
    )?;
    if let Some(last) = p.out.last_mut() {
        last.ty = OutType::F32;
    }
    p.whole(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        &[hp.n_vocab as u64, n],
    )?;
    p.layer_norm("decoder.ln", "decoder/layer_norm", n)?;
    for i in 0..hp.n_text_layer {
        p.block_common("decoder", "decoder", i, n)?;
        let g = format!("decoder.blocks.{i}");
        let c = format!("decoder/layer_{i}/attention");
        p.layer_norm(&format!("{g}.cross_attn_ln"), &format!("{c}/layer_norm"), n)?;
        p.linear(
            &format!("{g}.cross_attn.query"),
            &format!("{c}/linear_0"),
            n,
            n,
        )?;
        let k = format!("{g}.cross_attn.key.weight");
        let (v, vb) = (
            format!("{g}.cross_attn.value.weight"),
            format!("{g}.cross_attn.value.bias"),
        );
        p.fused(&format!("{c}/linear_1"), n, &[(&k, None), (&v, Some(&vb))])?;
        p.linear(
            &format!("{g}.cross_attn.out"),
            &format!("{c}/linear_2"),
            n,
            n,
        )?;
    }
    Ok(Plan {
        tensors: p.out,
        zero: p.zero,
    })
}

struct Plan {
    tensors: Vec<Planned>,
    zero: Vec<Planned>,
}

/// whisper.cpp has no key bias: the fused projections carry a zero slice there, which is
/// dropped. If it is not zero the model is not a plain whisper conversion.
fn check_key_biases(m: &mut Ct2Model, plan: &Plan) -> Result<(), ConvertError> {
    for t in &plan.zero {
        let mut nonzero = false;
        stream_elems(m, t, &mut |chunk: &[f32]| {
            nonzero |= chunk.iter().any(|&x| x != 0.0);
            Ok(())
        })?;
        if nonzero {
            return Err(unsupported(
                &m.path,
                format!("`{}` has a non-zero key bias; whisper.cpp has none", t.src),
            ));
        }
    }
    Ok(())
}

/// Reads the planned run of elements in chunks, converted to f32.
fn stream_elems(
    m: &mut Ct2Model,
    t: &Planned,
    sink: &mut dyn FnMut(&[f32]) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    let var = m.var(&t.src)?;
    let dtype = var.dtype;
    let esize = dtype.size();
    let total = t.elems();
    // The variable lies inside the file (checked when the header was read); the planned run
    // must lie inside the variable.
    let var_elems: u64 = var.dims.iter().product();
    if t.start.checked_add(total).is_none_or(|end| end > var_elems) {
        return Err(corrupt(
            &m.path,
            format!("slice of `{}` out of range", t.src),
        ));
    }
    let pos = var.offset + t.start * esize;
    m.reader
        .seek(SeekFrom::Start(pos))
        .map_err(io_err(&m.path))?;
    let mut raw = vec![0u8; CHUNK_ELEMS * esize as usize];
    let mut vals = Vec::with_capacity(CHUNK_ELEMS);
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK_ELEMS as u64) as usize;
        let buf = &mut raw[..n * esize as usize];
        m.reader.read_exact(buf).map_err(io_err(&m.path))?;
        vals.clear();
        match dtype {
            DType::F32 => vals.extend(
                buf.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            DType::F16 => vals.extend(
                buf.chunks_exact(2)
                    .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
            ),
            DType::Bf16 => vals.extend(
                buf.chunks_exact(2)
                    .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
            ),
            DType::I8 | DType::I16 | DType::I32 => {
                return Err(unsupported(&m.path, format!("`{}` is not float", t.src)));
            }
        }
        sink(&vals)?;
        left -= n as u64;
    }
    Ok(())
}

/// Copies one planned tensor's data into `w`, converting to its output type. An f16 → f16
/// copy is byte-exact.
fn write_tensor_data(
    m: &mut Ct2Model,
    t: &Planned,
    w: &mut dyn Write,
    out_path: &Path,
) -> Result<(), ConvertError> {
    let mut bytes = Vec::with_capacity(CHUNK_ELEMS * 4);
    stream_elems(m, t, &mut |vals: &[f32]| {
        bytes.clear();
        match t.ty {
            OutType::F32 => {
                for v in vals {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            OutType::F16 => {
                // f16 → f32 → f16 round-trips exactly; bf16/f32 sources round to nearest.
                for v in vals {
                    bytes.extend_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
                }
            }
        }
        w.write_all(&bytes).map_err(io_err(out_path))
    })
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

struct Vocab {
    /// Regular BPE tokens, in id order, as raw bytes.
    tokens: Vec<Vec<u8>>,
    source: &'static str,
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: TokenizerModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct TokenizerModel {
    vocab: HashMap<String, u32>,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
}

const EOT: &str = "<|endoftext|>";

/// GPT-2's byte → printable-unicode table, inverted (char → byte).
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            u32::from(b)
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(c) = char::from_u32(cp) {
            map.insert(c, b);
        }
    }
    map
}

fn load_vocab(dir: &Path, hp: &HParams, model_path: &Path) -> Result<Vocab, ConvertError> {
    let tok_path = dir.join("tokenizer.json");
    let txt_path = dir.join("vocabulary.txt");
    let (by_id, eot, path, source): (Vec<Option<String>>, usize, PathBuf, &'static str) =
        match fs::read(&tok_path) {
            Ok(bytes) => {
                let tj: TokenizerJson = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(&tok_path, format!("not a tokenizer.json: {e}")))?;
                let eot = tj
                    .added_tokens
                    .iter()
                    .find(|t| t.content == EOT)
                    .map(|t| t.id)
                    .or_else(|| tj.model.vocab.get(EOT).copied())
                    .ok_or_else(|| corrupt(&tok_path, format!("no {EOT} token")))?
                    as usize;
                if eot > hp.n_vocab {
                    return Err(corrupt(&tok_path, format!("{EOT} id {eot} beyond n_vocab")));
                }
                let mut by_id: Vec<Option<String>> = vec![None; eot];
                for (tok, id) in tj.model.vocab {
                    let Some(slot) = by_id.get_mut(id as usize) else {
                        continue; // special tokens: whisper.cpp adds its own
                    };
                    if slot.is_some() {
                        return Err(corrupt(&tok_path, format!("two tokens have id {id}")));
                    }
                    *slot = Some(tok);
                }
                (by_id, eot, tok_path, "tokenizer.json")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let text = match fs::read_to_string(&txt_path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(ConvertError::Missing { path: tok_path });
                    }
                    Err(e) => return Err(io_err(&txt_path)(e)),
                };
                let lines: Vec<&str> = text.split('\n').collect();
                let eot = lines
                    .iter()
                    .position(|l| *l == EOT)
                    .ok_or_else(|| corrupt(&txt_path, format!("no {EOT} line")))?;
                let by_id = lines[..eot].iter().map(|l| Some(l.to_string())).collect();
                (by_id, eot, txt_path, "vocabulary.txt")
            }
            Err(e) => return Err(io_err(&tok_path)(e)),
        };
    // whisper.cpp hard-codes the special token ids: eot 50256 (.en) or 50257 (multilingual).
    let want = if hp.multilingual { 50257 } else { 50256 };
    if eot != want {
        return Err(unsupported(
            &path,
            format!(
                "{EOT} has id {eot}, whisper.cpp expects {want} for {} model of n_vocab {} ({})",
                if hp.multilingual {
                    "a multilingual"
                } else {
                    "an English-only"
                },
                hp.n_vocab,
                model_path.display()
            ),
        ));
    }
    let table = unicode_to_byte();
    let mut tokens = Vec::with_capacity(eot);
    for (id, tok) in by_id.into_iter().enumerate() {
        let tok = tok.ok_or_else(|| corrupt(&path, format!("no token with id {id}")))?;
        let bytes = tok
            .chars()
            .map(|c| table.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                corrupt(
                    &path,
                    format!("token {id} {tok:?} is not GPT-2 byte-level encoded"),
                )
            })?;
        tokens.push(bytes);
    }
    Ok(Vocab { tokens, source })
}

// ---------------------------------------------------------------------------------------------
// Mel filters

/// librosa's `mel(sr, n_fft, n_mels)` with its defaults (slaney mel scale, slaney norm,
/// fmin 0, fmax sr/2), row-major `n_mels × (1 + n_fft/2)`, replicating numpy's order of
/// operations and its f32 rounding (weights stored as f32 before the f64 normalisation).
pub fn mel_filters(sr: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |f: f64| {
        if f >= MIN_LOG_HZ {
            min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
        } else {
            f / F_SP
        }
    };
    let mel_to_hz = |m: f64| {
        if m >= min_log_mel {
            MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
        } else {
            F_SP * m
        }
    };
    let n_bins = 1 + n_fft / 2;
    // numpy.fft.rfftfreq
    let val = 1.0 / (n_fft as f64 * (1.0 / sr));
    let fftfreqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * val).collect();
    // mel_frequencies: numpy.linspace(min_mel, max_mel, n_mels + 2), endpoint exact.
    let n_pts = n_mels + 2;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let step = (hi - lo) / (n_pts - 1) as f64;
    let mel_f: Vec<f64> = (0..n_pts)
        .map(|i| {
            let m = if i == n_pts - 1 {
                hi
            } else {
                i as f64 * step + lo
            };
            mel_to_hz(m)
        })
        .collect();
    let mut weights = vec![0f32; n_mels * n_bins];
    for i in 0..n_mels {
        let fdiff_lo = mel_f[i + 1] - mel_f[i];
        let fdiff_hi = mel_f[i + 2] - mel_f[i + 1];
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[i] - f) / fdiff_lo;
            let upper = (mel_f[i + 2] - f) / fdiff_hi;
            // numpy's SIMD `maximum(0, x)` returns x when both are zero, so the filters hold
            // one -0.0. Spelled out: f64::min/max, and the optimiser, may pick either zero.
            let m = if upper < lower { upper } else { lower };
            let w = if m > 0.0 {
                m as f32
            } else if m == 0.0 && m.is_sign_negative() {
                -0.0
            } else {
                0.0
            };
            weights[i * n_bins + k] = (f64::from(w) * enorm) as f32;
        }
    }
    weights
}

// ---------------------------------------------------------------------------------------------
// ggml writer

/// A writer that counts the bytes passing through it.
struct Counting<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_ggml(
    tmp: &Path,
    m: &mut Ct2Model,
    hp: &HParams,
    filters: &[f32],
    vocab: &Vocab,
    plan: &[Planned],
) -> Result<u64, ConvertError> {
    let file = File::create(tmp).map_err(io_err(tmp))?;
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, file),
        bytes: 0,
    };
    let put = |w: &mut Counting<BufWriter<File>>, v: u64| -> Result<(), ConvertError> {
        // Dimensions were checked to fit in i32 when planning; token lengths are tiny.
        let v = i32::try_from(v).map_err(|_| corrupt(tmp, format!("{v} does not fit in i32")))?;
        w.write_all(&v.to_le_bytes()).map_err(io_err(tmp))
    };
    w.write_all(&GGML_MAGIC.to_le_bytes())
        .map_err(io_err(tmp))?;
    for v in [
        hp.n_vocab as u64,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer as u64,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer as u64,
        hp.n_mels as u64,
        FTYPE_F16,
        hp.n_mels as u64,
        (1 + N_FFT / 2) as u64,
    ] {
        put(&mut w, v)?;
    }
    for f in filters {
        w.write_all(&f.to_le_bytes()).map_err(io_err(tmp))?;
    }
    put(&mut w, vocab.tokens.len() as u64)?;
    for tok in &vocab.tokens {
        put(&mut w, tok.len() as u64)?;
        w.write_all(tok).map_err(io_err(tmp))?;
    }
    for t in plan {
        put(&mut w, t.ne.len() as u64)?;
        put(&mut w, t.name.len() as u64)?;
        put(&mut w, t.ty.code())?;
        for &d in &t.ne {
            put(&mut w, d)?;
        }
        w.write_all(t.name.as_bytes()).map_err(io_err(tmp))?;
        let before = w.bytes;
        write_tensor_data(m, t, &mut w, tmp)?;
        let want = t.elems() * t.ty.size();
        if w.bytes - before != want {
            return Err(corrupt(
                &m.path,
                format!(
                    "`{}`: wrote {} bytes, expected {want}",
                    t.src,
                    w.bytes - before
                ),
            ));
        }
    }
    let bytes = w.bytes;
    let file = w
        .inner
        .into_inner()
        .map_err(|e| io_err(tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(tmp))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CTranslate2 `model.bin` writer for synthetic whisper models.
    struct Builder {
        vars: Vec<(String, Vec<u32>, u8, Vec<u8>)>,
        next: u32,
    }

    impl Builder {
        /// Deterministic, distinct, f16-exact values (multiples of 1/1024 below 2).
        fn values(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    self.next = self.next.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ((self.next >> 16) % 2048) as f32 / 1024.0
                })
                .collect()
        }

        fn tensor(&mut self, name: &str, dims: &[u32], f32_data: bool) {
            let n = dims.iter().product::<u32>() as usize;
            let vals = self.values(n);
            let (code, data) = if f32_data {
                (0, vals.iter().flat_map(|v| v.to_le_bytes()).collect())
            } else {
                let bytes = vals
                    .iter()
                    .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
                    .collect();
                (4, bytes)
            };
            self.vars
                .push((name.to_string(), dims.to_vec(), code, data));
        }

        fn zero_slice(&mut self, name: &str, from: usize, to: usize) {
            let var = self.vars.iter_mut().find(|v| v.0 == name).unwrap();
            let size = if var.2 == 0 { 4 } else { 2 };
            var.3[from * size..to * size].fill(0);
        }

        fn bytes(&self) -> Vec<u8> {
            self.bytes_and_headers().0
        }

        /// The file, and the byte ranges of each variable's header (name to byte count).
        fn bytes_and_headers(&self) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
            let mut headers = Vec::new();
            let mut out = Vec::new();
            let string = |out: &mut Vec<u8>, s: &str| {
                out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            };
            out.extend_from_slice(&6u32.to_le_bytes());
            string(&mut out, "WhisperSpec");
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
            for (name, dims, code, data) in &self.vars {
                let start = out.len();
                string(&mut out, name);
                out.push(dims.len() as u8);
                for d in dims {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.push(*code);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                headers.push(start..out.len());
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&1u32.to_le_bytes());
            string(&mut out, "decoder/projection/weight");
            string(&mut out, "decoder/embeddings/weight");
            (out, headers)
        }
    }

    const N: u32 = 8;

    /// A 1-layer English-only whisper with state 8 (1 head) and the real vocabulary size.
    fn synthetic() -> Builder {
        let mut b = Builder {
            vars: Vec::new(),
            next: 1,
        };
        for side in ["encoder", "decoder"] {
            b.vars.push((
                format!("{side}/num_heads"),
                vec![],
                2,
                1i16.to_le_bytes().to_vec(),
            ));
        }
        b.tensor("encoder/position_encodings/encodings", &[1500, N], false);
        b.tensor("encoder/conv1/weight", &[N, 80, 3], false);
        b.tensor("encoder/conv1/bias", &[N], false);
        b.tensor("encoder/conv2/weight", &[N, N, 3], false);
        b.tensor("encoder/conv2/bias", &[N], true);
        b.tensor("encoder/layer_norm/gamma", &[N], true);
        b.tensor("encoder/layer_norm/beta", &[N], false);
        b.tensor("decoder/position_encodings/encodings", &[448, N], true);
        b.tensor("decoder/embeddings/weight", &[51864, N], false);
        b.tensor("decoder/layer_norm/gamma", &[N], false);
        b.tensor("decoder/layer_norm/beta", &[N], false);
        for side in ["encoder", "decoder"] {
            let l = format!("{side}/layer_0");
            for ln in ["self_attention/layer_norm", "ffn/layer_norm"] {
                b.tensor(&format!("{l}/{ln}/gamma"), &[N], false);
                b.tensor(&format!("{l}/{ln}/beta"), &[N], false);
            }
            b.tensor(
                &format!("{l}/self_attention/linear_0/weight"),
                &[3 * N, N],
                true,
            );
            b.tensor(
                &format!("{l}/self_attention/linear_0/bias"),
                &[3 * N],
                false,
            );
            let n = N as usize;
            b.zero_slice(&format!("{l}/self_attention/linear_0/bias"), n, 2 * n);
            b.tensor(
                &format!("{l}/self_attention/linear_1/weight"),
                &[N, N],
                false,
            );
            b.tensor(&format!("{l}/self_attention/linear_1/bias"), &[N], false);
            b.tensor(&format!("{l}/ffn/linear_0/weight"), &[4 * N, N], false);
            b.tensor(&format!("{l}/ffn/linear_0/bias"), &[4 * N], false);
            b.tensor(&format!("{l}/ffn/linear_1/weight"), &[N, 4 * N], false);
            b.tensor(&format!("{l}/ffn/linear_1/bias"), &[N], false);
        }
        let l = "decoder/layer_0/attention";
        b.tensor(&format!("{l}/layer_norm/gamma"), &[N], false);
        b.tensor(&format!("{l}/layer_norm/beta"), &[N], false);
        b.tensor(&format!("{l}/linear_0/weight"), &[N, N], false);
        b.tensor(&format!("{l}/linear_0/bias"), &[N], false);
        b.tensor(&format!("{l}/linear_1/weight"), &[2 * N, N], false);
        b.tensor(&format!("{l}/linear_1/bias"), &[2 * N], false);
        b.zero_slice(&format!("{l}/linear_1/bias"), 0, N as usize);
        b.tensor(&format!("{l}/linear_2/weight"), &[N, N], false);
        b.tensor(&format!("{l}/linear_2/bias"), &[N], false);
        b
    }

    fn write_dir(dir: &Path, model: &[u8]) {
        fs::write(dir.join("model.bin"), model).unwrap();
        // vocabulary.txt: 50256 byte-level tokens, then the special tokens.
        let mut text = String::new();
        for i in 0..50256 {
            text.push_str(&format!("t{i}\n"));
        }
        text.push_str("<|endoftext|>\n<|startoftranscript|>\n");
        // Replace tokens 0 and 1 with byte-level ones: "Ġhello" → " hello", "Ċ" → "\n".
        let text = text.replacen("t0\nt1\n", "Ġhello\nĊ\n", 1);
        fs::write(dir.join("vocabulary.txt"), text).unwrap();
    }

    /// Parsed ggml file: hparams, vocabulary, tensors by name (ne, type, data).
    struct Ggml {
        hparams: Vec<i32>,
        filters: Vec<f32>,
        vocab: Vec<Vec<u8>>,
        tensors: HashMap<String, (Vec<i32>, i32, Vec<u8>)>,
        order: Vec<String>,
    }

    fn parse_ggml(bytes: &[u8]) -> Ggml {
        let mut pos = 0;
        let i32_at = |pos: &mut usize| {
            let v = i32::from_le_bytes(bytes[*pos..*pos + 4].try_into().unwrap());
            *pos += 4;
            v
        };
        assert_eq!(i32_at(&mut pos) as u32, GGML_MAGIC);
        let hparams: Vec<i32> = (0..11).map(|_| i32_at(&mut pos)).collect();
        let (n_mel, n_fft) = (i32_at(&mut pos), i32_at(&mut pos));
        let n = (n_mel * n_fft) as usize;
        let filters = bytes[pos..pos + 4 * n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        pos += 4 * n;
        let n_vocab = i32_at(&mut pos);
        let mut vocab = Vec::new();
        for _ in 0..n_vocab {
            let len = i32_at(&mut pos) as usize;
            vocab.push(bytes[pos..pos + len].to_vec());
            pos += len;
        }
        let mut tensors = HashMap::new();
        let mut order = Vec::new();
        while pos < bytes.len() {
            let n_dims = i32_at(&mut pos);
            let name_len = i32_at(&mut pos) as usize;
            let ty = i32_at(&mut pos);
            let ne: Vec<i32> = (0..n_dims).map(|_| i32_at(&mut pos)).collect();
            let name = String::from_utf8(bytes[pos..pos + name_len].to_vec()).unwrap();
            pos += name_len;
            let size = ne.iter().product::<i32>() as usize * if ty == 0 { 4 } else { 2 };
            let data = bytes[pos..pos + size].to_vec();
            pos += size;
            order.push(name.clone());
            assert!(tensors.insert(name, (ne, ty, data)).is_none());
        }
        Ggml {
            hparams,
            filters,
            vocab,
            tensors,
            order,
        }
    }

    fn f16_bytes_to_f32(data: &[u8]) -> Vec<f32> {
        data.chunks_exact(2)
            .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect()
    }

    fn f32_bytes(data: &[u8]) -> Vec<f32> {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn source_values(b: &Builder, name: &str) -> Vec<f32> {
        let var = b.vars.iter().find(|v| v.0 == name).unwrap();
        if var.2 == 0 {
            f32_bytes(&var.3)
        } else {
            f16_bytes_to_f32(&var.3)
        }
    }

    #[test]
    fn synthetic_model_converts_with_whisper_cpp_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let b = synthetic();
        write_dir(tmp.path(), &b.bytes());
        let out = tmp.path().join("out/ggml.bin");
        let mut lines = Vec::new();
        let stats =
            convert_ct2_to_ggml(tmp.path(), &out, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(stats.tensors, 7 + 15 + 4 + 24);
        assert_eq!(stats.n_vocab, 51864);
        assert!(!stats.multilingual);
        let bytes = fs::read(&out).unwrap();
        assert_eq!(bytes.len() as u64, stats.bytes);
        let g = parse_ggml(&bytes);
        let n = N as i32;
        assert_eq!(
            g.hparams,
            [51864, 1500, n, 1, 1, 448, n, 1, 1, 80, 1],
            "n_vocab, audio ctx/state/head/layer, text ctx/state/head/layer, n_mels, ftype"
        );
        assert_eq!(g.filters.len(), 80 * 201);
        assert_eq!(g.vocab.len(), 50256);
        assert_eq!(g.vocab[0], b" hello");
        assert_eq!(g.vocab[1], b"\n");
        assert_eq!(g.vocab[2], b"t2");
        assert_eq!(g.order.len(), stats.tensors);
        assert!(!g.tensors.keys().any(|k| k.contains("key.bias")));

        // Shapes and types as whisper.cpp creates them.
        let t = |name: &str| g.tensors.get(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(t("encoder.positional_embedding").0, [n, 1500]);
        assert_eq!(t("encoder.positional_embedding").1, 0);
        assert_eq!(t("encoder.conv1.weight").0, [3, 80, n]);
        assert_eq!(t("encoder.conv1.weight").1, 1);
        assert_eq!(t("encoder.conv2.bias").0, [1, n]);
        assert_eq!(t("encoder.conv2.bias").1, 0);
        assert_eq!(t("decoder.token_embedding.weight").0, [n, 51864]);
        assert_eq!(t("decoder.token_embedding.weight").1, 1);
        assert_eq!(t("encoder.blocks.0.mlp.0.weight").0, [n, 4 * n]);
        assert_eq!(t("encoder.blocks.0.mlp.2.weight").0, [4 * n, n]);
        assert_eq!(t("decoder.blocks.0.cross_attn_ln.bias").1, 0);

        // Fused projections split by rows; values preserved (f32 → f16 exact for these).
        let nn = (N * N) as usize;
        let qkv = source_values(&b, "encoder/layer_0/self_attention/linear_0/weight");
        for (i, part) in ["query", "key", "value"].iter().enumerate() {
            let got = f16_bytes_to_f32(&t(&format!("encoder.blocks.0.attn.{part}.weight")).2);
            assert_eq!(got, qkv[i * nn..(i + 1) * nn], "{part}");
        }
        let kv_bias = source_values(&b, "decoder/layer_0/attention/linear_1/bias");
        let got = f32_bytes(&t("decoder.blocks.0.cross_attn.value.bias").2);
        assert_eq!(got, kv_bias[N as usize..]);
        let pe = source_values(&b, "decoder/position_encodings/encodings");
        assert_eq!(f32_bytes(&t("decoder.positional_embedding").2), pe);

        // Deterministic output; no temporary file left behind.
        convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap();
        assert_eq!(fs::read(&out).unwrap(), bytes);
        assert_eq!(fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_or_corrupt_model_bin_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let b = synthetic();
        let (good, headers) = b.bytes_and_headers();
        write_dir(tmp.path(), &good);
        let out = tmp.path().join("out.bin");
        let mut cuts: Vec<usize> = (0..200).collect();
        cuts.extend((1..64).map(|i| good.len() * i / 64));
        cuts.extend([good.len() - 60, good.len() - 1]);
        for cut in cuts {
            fs::write(tmp.path().join("model.bin"), &good[..cut]).unwrap();
            let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
            assert!(
                matches!(err, ConvertError::Corrupt { .. }),
                "cut at {cut}: {err}"
            );
            assert!(!out.exists());
        }
        let msg = {
            fs::write(tmp.path().join("model.bin"), &good[..good.len() / 2]).unwrap();
            convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {})
                .unwrap_err()
                .to_string()
        };
        assert!(msg.contains("truncated"), "{msg}");

        // Trailing garbage (e.g. a part appended twice).
        let mut long = good.clone();
        long.extend_from_slice(&good[..100]);
        fs::write(tmp.path().join("model.bin"), &long).unwrap();
        let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("unexpected bytes"), "{err}");

        // Not a CTranslate2 file at all.
        fs::write(tmp.path().join("model.bin"), b"PK\x03\x04 a zip file").unwrap();
        let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("format version"), "{err}");

        // A flipped byte in any variable header (name, rank, dims, type, byte count):
        // an error, never a panic.
        for (i, range) in headers.iter().enumerate() {
            for pos in [
                range.start,
                range.start + 3,
                range.end - 9,
                range.end - 5,
                range.end - 1,
            ] {
                let mut bad = good.clone();
                bad[pos] ^= 0xA5;
                fs::write(tmp.path().join("model.bin"), &bad).unwrap();
                let result = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {});
                assert!(result.is_err(), "variable {i}, byte {pos}");
            }
        }

        fs::remove_file(tmp.path().join("model.bin")).unwrap();
        let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ConvertError::Missing { .. }), "{err:?}");
    }

    #[test]
    fn unsupported_models_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.bin");
        // Non-zero key bias.
        let mut b = synthetic();
        let var = b
            .vars
            .iter_mut()
            .find(|v| v.0 == "encoder/layer_0/self_attention/linear_0/bias")
            .unwrap();
        var.3[N as usize * 2] = 0x3c; // an f16 1.0-ish value inside the key slice
        var.3[N as usize * 2 + 1] = 0x3c;
        write_dir(tmp.path(), &b.bytes());
        let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("non-zero key bias"), "{err}");

        // int8 weights.
        let mut b = synthetic();
        let var = b
            .vars
            .iter_mut()
            .find(|v| v.0 == "encoder/layer_0/ffn/linear_0/weight")
            .unwrap();
        var.2 = 1;
        var.3.truncate(var.3.len() / 2);
        write_dir(tmp.path(), &b.bytes());
        let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("quantized"), "{err}");

        // A multilingual-sized embedding with an English-only vocabulary.
        let mut b = synthetic();
        let var = b
            .vars
            .iter_mut()
            .find(|v| v.0 == "decoder/embeddings/weight")
            .unwrap();
        var.1[0] = 51865;
        var.3.extend_from_slice(&[0; 2 * N as usize]);
        write_dir(tmp.path(), &b.bytes());
        let err = convert_ct2_to_ggml(tmp.path(), &out, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("expects 50257"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn mel_filters_match_openai_mel_filters_npz() {
        use sha2::{Digest, Sha256};
        // `mel_80` of OpenAI whisper's assets/mel_filters.npz: sha256 of its 80×201 f32 LE
        // values, and a few of them as bit patterns.
        let f = mel_filters(16_000.0, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        for (i, bits) in [
            (0, 0x8000_0000u32),
            (1, 0x3ccb_aca4),
            (202, 0x3b02_7873),
            (203, 0x3cbb_5d95),
            (12361, 0x39b0_19e3),
            (16078, 0x39eb_476a),
        ] {
            assert_eq!(f[i].to_bits(), bits, "filter value {i}");
        }
        assert_eq!(f.iter().filter(|v| **v != 0.0).count(), 391);
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "4f2701b1d287d74a0dc9871026e9519d98cb76426615f2539b0d151a0ae4ec2e"
        );
    }
}
