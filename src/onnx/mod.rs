//! ONNX models run with ONNX Runtime through `ort`: the process's one runtime environment and
//! the session settings every model here uses.
//!
//! The runtime library is loaded at run time (`ort` feature `load-dynamic`) from the PyPI
//! `onnxruntime` wheel that `switchboard models install` extracts (`models/onnxruntime/`); no
//! runtime is downloaded at build time. `ort` allows one environment per process, even after the
//! first is dropped: [`ort_environment`] creates it once and hands out clones, and refuses a
//! second, different library (`ort` would silently keep the first).
//!
//! Sessions run with one intra-op and one inter-op thread and never spin-wait: on 2 shared
//! cores, parallelism comes from concurrent calls, and two jobs spinning two threads each slowed
//! each other 2–25× (FACTS §12).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;
use ort::session::Session;

pub mod silero;
pub mod smart_turn;

static ORT_ENV: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// The process's ONNX Runtime environment, loading the runtime library from `ort_lib` the first
/// time. Asking for a different library afterwards is an error: only one can be loaded.
pub fn ort_environment(ort_lib: &Path) -> Result<Environment, String> {
    let mut slot = ORT_ENV.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((loaded, env)) = slot.as_ref() {
        if same_file(loaded, ort_lib) {
            return Ok(env.clone());
        }
        return Err(format!(
            "ONNX Runtime is already loaded from {}; cannot also load {}",
            loaded.display(),
            ort_lib.display()
        ));
    }
    if !ort_lib.is_file() {
        return Err(format!("no ONNX Runtime library at {}", ort_lib.display()));
    }
    let env = ort::init_from(ort_lib)
        .map_err(|e| format!("loading ONNX Runtime from {}: {e}", ort_lib.display()))?
        .with_name("switchboard")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))?;
    *slot = Some((ort_lib.to_path_buf(), env.clone()));
    Ok(env)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A session for the model at `onnx`: `intra_threads` intra-op threads (at least 1), one
/// inter-op thread, no spin-waiting. Builder errors are turned into text (they are not `Send`).
pub fn session(env: &Environment, onnx: &Path, intra_threads: usize) -> Result<Session, String> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: ort::Error<ort::session::builder::SessionBuilder>| format!("{what}: {e}")
    };
    if !onnx.is_file() {
        return Err(format!("no model at {}", onnx.display()));
    }
    Session::builder(env)
        .map_err(|e| format!("session builder: {e}"))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(err("intra-op threads"))?
        .with_inter_threads(1)
        .map_err(err("inter-op threads"))?
        .with_intra_op_spinning(false)
        .map_err(err("intra-op spinning"))?
        .with_inter_op_spinning(false)
        .map_err(err("inter-op spinning"))?
        .commit_from_file(onnx)
        .map_err(|e| format!("loading {}: {e}", onnx.display()))
}
