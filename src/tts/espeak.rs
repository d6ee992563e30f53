//! The espeak-ng engine, through the raw `espeakng-sys` bindings (the `espeakng` 0.2 wrapper
//! segfaults in synthesis).
//!
//! # Process-global library
//! libespeak-ng keeps all of its state (loaded voice, parameters, output buffer, callback) in
//! globals. This module therefore owns one static [`Mutex`] around that state: initialisation
//! happens once per process under it, and every synthesis holds it from setting the voice to
//! the last callback. Concurrent [`Espeak::synthesize`] calls (from any number of [`Espeak`]
//! values) run one after another; a sentence takes a few milliseconds, so this is cheap.
//!
//! # Streaming
//! The library runs in `AUDIO_OUTPUT_SYNCHRONOUS` mode: `espeak_Synth` calls the synth callback
//! on the calling thread with each buffer of samples (about 1,000 at 22050 Hz) before it
//! returns. The callback finds the Rust closure through the `user_data` pointer given to
//! `espeak_Synth`, and checks that pointer against the call in progress before using it. It
//! never unwinds into C: a panic in the closure is caught, synthesis is aborted (callback
//! returns 1) and the panic is resumed after `espeak_Synth` returns and the lock is released.
//!
//! # Phonemes for other engines
//! [`Espeak::phonemize`] gives a neural voice (Piper) the IPA of each clause and the punctuation
//! that ended it. How clauses and their terminators are found:
//! Piper's reference runner uses `espeak_TextToPhonemesWithTerminator` (espeak-ng ≥ 1.52), which
//! reports the punctuation that ended each clause. Debian 12's libespeak-ng 1.51 only has
//! `espeak_TextToPhonemes`, which does not. Rather than splitting the text ourselves (and
//! disagreeing with espeak about "1.5", "e.g. this", "What?!", "Wait...", long clauses, …), we let
//! espeak split it and recover the terminator from the text it consumed:
//!
//! - each call reads one clause and advances the text pointer. When a clause ends before the end
//!   of the text, espeak has already read one character of look-ahead (the first character of
//!   the next clause, kept in its internal `ungot_char`), so the clause's source text ends one
//!   character before the returned pointer;
//! - the terminator is the clause's last non-blank character if it is `.` `,` `?` `!` `:` `;`
//!   and is followed by a blank, the end of the text or a non-alphanumeric character (espeak's
//!   own rule); a run such as `?!` counts as its first character (as espeak does); an en or em
//!   dash between blanks counts as `;` (espeak's "extended dash"); `...` and `…` are an ellipsis,
//!   which Piper maps to no terminator. Punctuation of other scripts (Arabic, CJK, …) is not
//!   recognised and gives no terminator;
//! - anything else (end of text without punctuation, a clause espeak cut because it was too long)
//!   gives `' '`: no terminator.
//!
//! Two deliberate differences from piper-tts: a clause followed by a blank line keeps its
//! punctuation (piper-tts drops it because espeak reports a paragraph instead), and a clause with
//! no punctuation followed by a blank line gets `'.'` (piper-tts ends the sentence without one).
//!
//! This file is the only place in the TTS module with `unsafe`.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_int, c_short, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use espeakng_sys as sys;

use super::{SynthStats, TtsEngine, TtsError, Voice};

/// State of the process-global library, present once it is initialised.
struct Library {
    sample_rate: u32,
    /// The `espeak-ng-data` directory the library loaded.
    data_dir: PathBuf,
    /// Voice currently loaded (loading one reads files, so repeat requests skip it).
    voice: Option<String>,
}

/// Guards every call into libespeak-ng (see the module docs).
static LIBRARY: Mutex<Option<Library>> = Mutex::new(None);

/// The [`CallContext`] of the synthesis in progress, null otherwise. Only set while `LIBRARY`
/// is held; the callback uses a `user_data` pointer only if it equals this one.
static ACTIVE_CALL: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// Locks the library. A poisoned lock is taken over: no code panics while holding it with the
/// library in an inconsistent state (closure panics are caught inside the callback).
fn lock_library() -> MutexGuard<'static, Option<Library>> {
    LIBRARY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The espeak-ng engine. Cheap to create once the library is initialised; all values share the
/// one process-global library.
#[derive(Debug, Clone)]
pub struct Espeak {
    sample_rate: u32,
    data_dir: PathBuf,
}

impl Espeak {
    /// Initialises libespeak-ng (once per process) and returns an engine.
    ///
    /// `data_path` is a directory holding `espeak-ng-data/` or the `espeak-ng-data` directory
    /// itself; `None` uses the library's default (Debian: `/usr/lib/x86_64-linux-gnu/espeak-ng-data`,
    /// or `$ESPEAK_DATA_PATH`). Once initialised, later calls return an engine over the same
    /// library; asking for a different data directory then is an error, because the library
    /// cannot hold two.
    ///
    /// Initialisation passes `espeakINITIALIZE_DONT_EXIT`: without it, libespeak-ng calls
    /// `exit(1)` when its data files are missing.
    pub fn new(data_path: Option<&Path>) -> Result<Espeak, TtsError> {
        let requested = data_path.map(resolve_data_dir).transpose()?;
        let mut library = lock_library();
        if let Some(lib) = library.as_ref() {
            if let Some(dir) = &requested
                && !same_dir(dir, &lib.data_dir)
            {
                return Err(TtsError::Init(format!(
                    "espeak-ng is process-global and already uses {}; cannot switch to {}",
                    lib.data_dir.display(),
                    dir.display()
                )));
            }
            return Ok(Espeak {
                sample_rate: lib.sample_rate,
                data_dir: lib.data_dir.clone(),
            });
        }

        let c_path = match &requested {
            Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
                TtsError::Init(format!("data path {} contains a NUL byte", dir.display()))
            })?),
            None => None,
        };
        let path_ptr = c_path.as_ref().map_or(ptr::null(), |p| p.as_ptr());
        let options = sys::espeakINITIALIZE_DONT_EXIT as c_int;
        // SAFETY: we hold LIBRARY, so no other thread is inside libespeak-ng. `path_ptr` is null
        // or points to a NUL-terminated string (`c_path`) that outlives the call; the library
        // copies it. Synchronous output needs no audio device.
        let rate = unsafe {
            sys::espeak_Initialize(
                sys::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                path_ptr,
                options,
            )
        };
        if rate <= 0 {
            return Err(TtsError::Init(format!(
                "espeak_Initialize returned {rate}: espeak-ng data not loadable from {}",
                requested.as_ref().map_or_else(
                    || "the default location (install espeak-ng-data)".to_string(),
                    |d| d.display().to_string()
                )
            )));
        }
        // SAFETY: LIBRARY is held. `synth_callback` has the C signature the library expects and
        // stays valid for the life of the process.
        unsafe { sys::espeak_SetSynthCallback(Some(synth_callback)) };

        let mut data_ptr: *const c_char = ptr::null();
        // SAFETY: LIBRARY is held; `espeak_Info` writes a pointer to the library's own static
        // path buffer into `data_ptr` and returns a static version string.
        unsafe { sys::espeak_Info(&mut data_ptr) };
        let data_dir = if data_ptr.is_null() {
            requested.unwrap_or_default()
        } else {
            // SAFETY: non-null pointer to the library's NUL-terminated path buffer, which is
            // not modified while we hold LIBRARY; the bytes are copied out immediately.
            let bytes = unsafe { CStr::from_ptr(data_ptr) }.to_bytes();
            PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
        };

        let sample_rate = rate.unsigned_abs();
        let lib = library.insert(Library {
            sample_rate,
            data_dir: data_dir.clone(),
            voice: None,
        });
        // Load the default voice now (~15 ms of file reading) rather than in the first call's
        // time to first audio. A failure here only means the first call loads it instead.
        let _ = set_voice(lib, &Voice::default().name);
        Ok(Espeak {
            sample_rate,
            data_dir,
        })
    }

    /// The `espeak-ng-data` directory the library loaded.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The IPA of `text` in espeak-ng `voice`, one entry per clause with the punctuation that
    /// ended it (`. , ? ! : ;`, or `' '` for none); language-switch flags such as `(fr)` are
    /// removed and clauses without phonemes left out (blank text gives an empty list). Holds the
    /// process-wide lock, like synthesis.
    pub fn phonemize(&self, text: &str, voice: &str) -> Result<Vec<(String, char)>, TtsError> {
        let mut library = lock_library();
        let lib = library.as_mut().ok_or_else(|| {
            TtsError::Init("espeak-ng is not initialised (use Espeak::new)".to_string())
        })?;
        set_voice(lib, voice)?;
        text_to_ipa_clauses(text).map_err(TtsError::Synthesis)
    }
}

/// Turns a user-given data path into the `espeak-ng-data` directory, checking it holds the
/// phoneme tables (the library would otherwise silently fall back to its default location).
fn resolve_data_dir(path: &Path) -> Result<PathBuf, TtsError> {
    for dir in [path.join("espeak-ng-data"), path.to_path_buf()] {
        if dir.join("phontab").is_file() {
            return Ok(dir);
        }
    }
    Err(TtsError::Init(format!(
        "no espeak-ng data at {} (expected phontab in it or in its espeak-ng-data/)",
        path.display()
    )))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Per-call state the C callback reaches through `user_data`.
struct CallContext<'a> {
    on_chunk: &'a mut dyn FnMut(&[i16]) -> bool,
    started: Instant,
    stats: SynthStats,
    panic: Option<Box<dyn Any + Send>>,
}

/// The synth callback registered with libespeak-ng: `wav` holds `n` samples (null at the end),
/// `events` a list whose entries carry the `user_data` given to `espeak_Synth`. Returns 0 to
/// go on, 1 to abort.
unsafe extern "C" fn synth_callback(
    wav: *mut c_short,
    n: c_int,
    events: *mut sys::espeak_EVENT,
) -> c_int {
    if events.is_null() {
        return 1;
    }
    // SAFETY: libespeak-ng passes a valid, terminated event array; its first entry always
    // exists (at worst the LIST_TERMINATED entry) and carries `user_data`.
    let user_data = unsafe { (*events).user_data };
    if user_data.is_null() || user_data != ACTIVE_CALL.load(Ordering::Acquire) {
        return 1; // not a call we started: never dereference an unknown pointer
    }
    // SAFETY: `user_data` is the `CallContext` of the synthesis in progress: `synthesize` set
    // ACTIVE_CALL to it while holding LIBRARY, keeps it alive until `espeak_Synth` returns, and
    // does not touch it during the call. The callback runs on that same thread, so this is the
    // only live reference.
    let ctx = unsafe { &mut *user_data.cast::<CallContext<'_>>() };
    if ctx.stats.aborted || ctx.panic.is_some() {
        return 1;
    }
    let Ok(len) = usize::try_from(n) else {
        return 0;
    };
    if wav.is_null() || len == 0 {
        return 0;
    }
    // SAFETY: libespeak-ng hands `n` valid i16 samples at `wav`, unchanged until we return.
    let samples = unsafe { std::slice::from_raw_parts(wav.cast_const(), len) };
    if ctx.stats.chunks == 0 {
        let us = u64::try_from(ctx.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        ctx.stats.first_chunk_us = us.max(1);
    }
    ctx.stats.chunks += 1;
    ctx.stats.samples += len;
    let on_chunk = &mut ctx.on_chunk;
    match catch_unwind(AssertUnwindSafe(|| on_chunk(samples))) {
        Ok(true) => 0,
        Ok(false) => {
            ctx.stats.aborted = true;
            1
        }
        Err(payload) => {
            ctx.panic = Some(payload);
            ctx.stats.aborted = true;
            1
        }
    }
}

/// Sets one synthesis parameter.
fn set_parameter(
    parameter: sys::espeak_PARAMETER,
    name: &'static str,
    value: u32,
) -> Result<(), TtsError> {
    let value = c_int::try_from(value).unwrap_or(c_int::MAX);
    // SAFETY: only called from `synthesize` while LIBRARY is held; plain integer arguments.
    let code = unsafe { sys::espeak_SetParameter(parameter, value, 0) };
    if code == sys::espeak_ERROR_EE_OK {
        Ok(())
    } else {
        Err(TtsError::Parameter {
            parameter: name,
            value: i64::from(value),
            code,
        })
    }
}

/// Loads `name` as the current voice unless it already is. Like the `espeak-ng -v` command,
/// it tries a voice name or file first ("en-us", "English_(America)") and then a language tag
/// ("en-gb", whose voice file is called `en`).
fn set_voice(lib: &mut Library, name: &str) -> Result<(), TtsError> {
    if lib.voice.as_deref() == Some(name) {
        return Ok(());
    }
    let unknown = |detail: String| TtsError::UnknownVoice {
        name: name.to_string(),
        detail,
    };
    if name.trim().is_empty() {
        return Err(unknown("empty voice name".to_string()));
    }
    let c_name =
        CString::new(name).map_err(|_| unknown("voice name contains a NUL byte".to_string()))?;
    lib.voice = None;
    // SAFETY: LIBRARY is held (we have `&mut Library` from its guard); `c_name` is a
    // NUL-terminated string that outlives the call.
    let mut code = unsafe { sys::espeak_SetVoiceByName(c_name.as_ptr()) };
    if code == sys::espeak_ERROR_EE_NOT_FOUND {
        let mut spec = sys::espeak_VOICE {
            name: ptr::null(),
            languages: c_name.as_ptr(),
            identifier: ptr::null(),
            gender: 0,
            age: 0,
            variant: 0,
            xx1: 0,
            score: 0,
            spare: ptr::null_mut(),
        };
        // SAFETY: LIBRARY is held; `spec` is a fully initialised voice description whose only
        // pointer, `languages`, is the NUL-terminated `c_name`; both outlive the call, and the
        // library only reads them.
        code = unsafe { sys::espeak_SetVoiceByProperties(&mut spec) };
    }
    match code {
        sys::espeak_ERROR_EE_OK => {
            lib.voice = Some(name.to_string());
            Ok(())
        }
        sys::espeak_ERROR_EE_NOT_FOUND => Err(unknown(format!(
            "espeak-ng has no such voice or language in {} (see `espeak-ng --voices`)",
            lib.data_dir.display()
        ))),
        other => Err(unknown(format!("espeak-ng returned {other} selecting it"))),
    }
}

/// Converts `text` to IPA with espeak-ng, one entry per clause: the clause's IPA (language-switch
/// flags such as `(en)` removed) and its terminator, one of `. , ? ! : ;` or `' '` for none.
/// Clauses that produce no phonemes (only punctuation, symbols espeak does not speak) are left
/// out, so blank or punctuation-only text gives an empty list.
///
/// # Caller's duties
/// libespeak-ng is process-global. The caller must hold `LIBRARY`, must have initialised it (`espeak_Initialize`) and selected the voice (the Piper voice
/// config's `espeak.voice`, e.g. "en-us"), and must not have enabled SSML or `[[phoneme]]` input
/// in its `espeak_Synth` flags (those are sticky library globals).
fn text_to_ipa_clauses(text: &str) -> Result<Vec<(String, char)>, String> {
    // espeak reads a NUL-terminated string, so interior NULs would cut the text short; other
    // control characters (0x01 starts an embedded command) are turned into blanks as well.
    let text: String = text
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let c_text = CString::new(text.as_str()).map_err(|_| "text contains a NUL byte".to_string())?;
    let len = text.len();
    let base = c_text.as_ptr() as usize;
    let ipa_mode = sys::espeakPHONEMES_IPA as c_int;
    let text_mode = sys::espeakCHARS_UTF8 as c_int;

    // espeak keeps the look-ahead character of the last clause it read in a global. A run that
    // was stopped early (an aborted espeak_Synth) can leave one behind, and the next call would
    // prepend it to our text. Reading an empty string consumes it.
    let empty: &CStr = c"";
    let mut flush: *const c_void = empty.as_ptr().cast();
    // SAFETY: the caller holds the espeak lock (see above) and the library is initialised.
    // `flush` points to a NUL-terminated string that outlives the call; espeak only reads it and
    // writes the advanced pointer (or null) back into `flush`.
    unsafe { sys::espeak_TextToPhonemes(&mut flush, text_mode, ipa_mode) };

    let mut clauses = Vec::new();
    let mut cursor: *const c_void = c_text.as_ptr().cast();
    let mut clause_start = 0usize;
    let mut consumed = 0usize;
    // Every call consumes at least one byte; the bound only guards against a library bug.
    for _ in 0..=len + 2 {
        if cursor.is_null() {
            return Ok(clauses);
        }
        // SAFETY: as above; `cursor` points into `c_text` (NUL-terminated, alive until the end of
        // this function). espeak decodes from it, advances it past the text it read (or sets it
        // to null at the end) and returns a pointer to its own static phoneme buffer, valid until
        // the next call, which we copy out at once.
        let phonemes: *const c_char =
            unsafe { sys::espeak_TextToPhonemes(&mut cursor, text_mode, ipa_mode) };
        if phonemes.is_null() {
            return Err("espeak_TextToPhonemes could not decode the text".to_string());
        }
        // SAFETY: non-null, NUL-terminated, owned by espeak and unchanged until the next call.
        let ipa = unsafe { CStr::from_ptr(phonemes) }.to_string_lossy();
        let ipa = strip_language_flags(&ipa);

        let clause_end = if cursor.is_null() {
            len
        } else {
            let offset = (cursor as usize).wrapping_sub(base);
            if offset <= consumed || offset > len {
                return Err(format!(
                    "espeak_TextToPhonemes moved the text pointer from byte {consumed} to {offset} of {len}"
                ));
            }
            consumed = offset;
            // Step back over the look-ahead character, which starts the next clause.
            let mut end = offset - 1;
            while end > clause_start && !text.is_char_boundary(end) {
                end -= 1;
            }
            end.max(clause_start)
        };
        let terminator = clause_terminator(&text, clause_start, clause_end);
        clause_start = clause_end;
        if !ipa.trim().is_empty() {
            clauses.push((ipa, terminator));
        }
    }
    Err("espeak_TextToPhonemes did not reach the end of the text".to_string())
}

/// Removes espeak's language-switch flags, e.g. `(fr)` around a word it reads as French: any
/// `(`, at least one character, `)`.
fn strip_language_flags(ipa: &str) -> String {
    let mut out = String::with_capacity(ipa.len());
    let mut rest = ipa;
    while let Some(open) = rest.find('(') {
        match rest[open + 1..].find(')') {
            Some(close) if close > 0 => {
                out.push_str(&rest[..open]);
                rest = &rest[open + 1 + close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The terminator of the clause whose source text is `text[start..end]` (see the module docs).
fn clause_terminator(text: &str, start: usize, end: usize) -> char {
    let (Some(clause), Some(after)) = (text.get(start..end), text.get(end..)) else {
        return ' '; // not char boundaries: cannot happen, but never panic
    };
    let body = clause.trim_end();
    let blank_after = &clause[body.len()..];
    let Some(last) = body.chars().next_back() else {
        return ' ';
    };
    // espeak only ends a clause on punctuation followed by a blank, the end of the text or a
    // non-alphanumeric character (bracket, quote); "3.14" or "1,000" cut by espeak's clause
    // length limit are not terminators.
    let followed_ok =
        !blank_after.is_empty() || after.chars().next().is_none_or(|c| !c.is_alphanumeric());
    let punctuation = match last {
        '.' if body.ends_with("...") => None, // ellipsis: no terminator in Piper
        '.' | ',' | ':' | ';' => Some(last),
        '?' | '!' => body
            .chars()
            .rev()
            .take_while(|c| matches!(c, '?' | '!'))
            .last(),
        // espeak's "extended dashes" (en/em dash, …) end a clause like a semicolon.
        '\u{2013}' | '\u{2014}' | '\u{2E3A}' | '\u{2E3B}' | '\u{FE31}' | '\u{FE32}' => Some(';'),
        '\u{037E}' => Some('?'), // Greek question mark
        _ => None,
    };
    match punctuation {
        Some(p) if followed_ok => p,
        _ if blank_after.matches('\n').count() >= 2 && last != '…' && !body.ends_with("...") => {
            '.'
        }
        _ => ' ',
    }
}

impl TtsEngine for Espeak {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Synthesises with espeak-ng, holding the process-wide lock for the whole call. The rate is
    /// clamped to 80..=450 wpm and the pitch to 0..=100. Text is read as UTF-8 with SSML off; NUL
    /// characters are dropped; blank text produces no audio. Each sentence ends with espeak's
    /// end-of-sentence pause, so sentences synthesised one by one join naturally.
    fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        on_chunk: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<SynthStats, TtsError> {
        let started = Instant::now();
        let c_text = CString::new(text.replace('\0', ""))
            .map_err(|_| TtsError::Synthesis("text contains a NUL byte".to_string()))?;

        let mut guard = lock_library();
        let Some(lib) = guard.as_mut() else {
            return Err(TtsError::Init(
                "espeak-ng is not initialised (use Espeak::new)".to_string(),
            ));
        };
        set_voice(lib, &voice.name)?;
        let rate = voice
            .rate_wpm
            .clamp(sys::espeakRATE_MINIMUM, sys::espeakRATE_MAXIMUM);
        set_parameter(sys::espeak_PARAMETER_espeakRATE, "rate", rate)?;
        set_parameter(
            sys::espeak_PARAMETER_espeakPITCH,
            "pitch",
            voice.pitch.min(100),
        )?;
        if text.trim().is_empty() {
            return Ok(SynthStats::default());
        }

        let mut ctx = CallContext {
            on_chunk,
            started,
            stats: SynthStats::default(),
            panic: None,
        };
        let ctx_ptr: *mut c_void = ptr::from_mut(&mut ctx).cast();
        let flags = sys::espeakCHARS_UTF8 | sys::espeakENDPAUSE; // no espeakSSML: SSML off
        let size = c_text.as_bytes_with_nul().len();
        ACTIVE_CALL.store(ctx_ptr, Ordering::Release);
        // SAFETY: LIBRARY is held for the whole call. `c_text` is NUL-terminated UTF-8 and `size`
        // its length including the NUL; the position arguments select "from the start, to the
        // end"; no unique-id pointer is requested. `ctx_ptr` points to `ctx`, which lives on
        // this stack frame until after `espeak_Synth` returns (synchronous mode: every callback
        // happens before that, on this thread) and is not otherwise touched meanwhile.
        let code = unsafe {
            sys::espeak_Synth(
                c_text.as_ptr().cast(),
                size,
                0,
                sys::espeak_POSITION_TYPE_POS_CHARACTER,
                0,
                flags,
                ptr::null_mut(),
                ctx_ptr,
            )
        };
        ACTIVE_CALL.store(ptr::null_mut(), Ordering::Release);
        let CallContext { stats, panic, .. } = ctx;
        drop(guard);

        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        // An abort makes some libespeak-ng versions report EE_INTERNAL_ERROR: that is expected.
        if code != sys::espeak_ERROR_EE_OK && !stats.aborted {
            return Err(TtsError::Synthesis(format!(
                "espeak_Synth returned {code} after {} samples",
                stats.samples
            )));
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SENTENCE: &str = "I have confirmed your reservation for December 1st.";

    fn engine() -> Espeak {
        Espeak::new(None).expect("espeak-ng initialises (libespeak-ng-dev installed)")
    }

    fn terminators(text: &str) -> Vec<char> {
        engine()
            .phonemize(text, "en-us")
            .expect("phonemize")
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    #[test]
    fn clause_terminators_follow_espeaks_rules() {
        let t = |s: &str| clause_terminator(s, 0, s.len());
        assert_eq!(t("Hello."), '.');
        assert_eq!(t("Hello, "), ',');
        assert_eq!(t("Really?! "), '?');
        assert_eq!(t("Wow!? "), '!');
        assert_eq!(t("Wait... "), ' ');
        assert_eq!(t("Wait\u{2026} "), ' ');
        assert_eq!(t("euros \u{2014} "), ';');
        assert_eq!(clause_terminator("9\u{2013}5", 0, 2), ' '); // not a char boundary
        assert_eq!(t("Hello"), ' ');
        assert_eq!(t("Heading\n\n"), '.');
        assert_eq!(clause_terminator("3.14", 0, 2), ' ');
        assert_eq!(clause_terminator("(really?) yes", 0, 8), '?');
        assert_eq!(t(""), ' ');
        assert_eq!(
            strip_language_flags("(fr)b\u{254}\u{303}(en) w"),
            "b\u{254}\u{303} w"
        );
        assert_eq!(strip_language_flags("a(b"), "a(b");
    }

    #[test]
    fn phonemes_come_clause_by_clause() {
        assert_eq!(
            terminators("Hello, world. How are you? Fine!"),
            vec![',', '.', '?', '!']
        );
        assert_eq!(
            terminators("It costs 1.5 dollars, e.g. this one"),
            vec![',', ' ']
        );
        assert_eq!(terminators("Note: one; two"), vec![':', ';', ' ']);
        assert!(terminators("").is_empty());
        assert!(terminators("...").is_empty());
        let ipa = engine().phonemize("Is that right?", "en-us").unwrap();
        assert_eq!(ipa.len(), 1);
        assert!(ipa[0].0.contains("\u{f0}"), "{ipa:?}"); // the "th" of "that"
    }

    /// A synthesis stopped by barge-in leaves espeak's look-ahead character behind; the next
    /// phonemization must not see it.
    #[test]
    fn phonemes_after_an_aborted_synthesis_are_clean() {
        let e = engine();
        let fresh = e.phonemize("Is that right?", "en-us").unwrap();
        let stats = e
            .synthesize(
                "Zebra, xylophone. Another sentence here.",
                &Voice::default(),
                &mut |_| false,
            )
            .unwrap();
        assert!(stats.aborted);
        assert_eq!(e.phonemize("Is that right?", "en-us").unwrap(), fresh);
    }

    fn collect(engine: &Espeak, text: &str, voice: &Voice) -> (Vec<i16>, SynthStats) {
        let mut audio = Vec::new();
        let stats = engine
            .synthesize(text, voice, &mut |chunk| {
                audio.extend_from_slice(chunk);
                true
            })
            .expect("synthesis succeeds");
        (audio, stats)
    }

    /// espeak-ng's generator carries a little state between calls, so the same sentence can
    /// differ by a few hundred samples (~10 ms) from one call to the next.
    fn about_equal(a: usize, b: usize) -> bool {
        a.abs_diff(b) * 50 < a.max(b)
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn sentence_streams_real_audio() {
        let tts = engine();
        assert_eq!(tts.sample_rate(), 22050);
        assert!(tts.data_dir().join("phontab").is_file());
        let (audio, stats) = collect(&tts, SENTENCE, &Voice::default());
        let seconds = audio.len() as f64 / 22050.0;
        assert_eq!(stats.samples, audio.len());
        assert!(seconds > 1.5, "only {seconds:.2} s of audio");
        assert!(stats.chunks > 10, "only {} chunks", stats.chunks);
        assert!(!stats.aborted);
        assert!(stats.first_chunk_us > 0);
        let level = rms(&audio);
        assert!(level > 500.0, "RMS {level:.0} is near silence");
    }

    #[test]
    fn abort_after_first_chunk_stops_early() {
        let tts = engine();
        let (_, full) = collect(&tts, SENTENCE, &Voice::default());
        let mut calls = 0;
        let stats = tts
            .synthesize(SENTENCE, &Voice::default(), &mut |_| {
                calls += 1;
                false
            })
            .expect("an aborted synthesis is not an error");
        assert!(stats.aborted);
        assert_eq!((calls, stats.chunks), (1, 1));
        assert!(
            stats.samples * 10 < full.samples,
            "{} vs {}",
            stats.samples,
            full.samples
        );
        // The library is usable again straight after an abort.
        let (_, again) = collect(&tts, SENTENCE, &Voice::default());
        assert!(
            about_equal(again.samples, full.samples),
            "{again:?} vs {full:?}"
        );
    }

    #[test]
    fn concurrent_threads_are_serialised() {
        let tts = engine();
        let (_, alone) = collect(&tts, SENTENCE, &Voice::default());
        let results: Vec<SynthStats> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let tts = tts.clone();
                    s.spawn(move || {
                        let mut all = Vec::new();
                        for _ in 0..5 {
                            all.push(collect(&tts, SENTENCE, &Voice::default()).1);
                        }
                        all
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("synthesis thread does not panic"))
                .collect()
        });
        assert_eq!(results.len(), 20);
        for stats in results {
            assert!(
                about_equal(stats.samples, alone.samples),
                "{stats:?} vs {alone:?}"
            );
            assert!(!stats.aborted && stats.chunks > 10);
        }
    }

    #[test]
    fn unknown_voice_is_an_error() {
        let tts = engine();
        for name in ["xx-nonexistent", "", "en\0us"] {
            let voice = Voice {
                name: name.to_string(),
                ..Voice::default()
            };
            let err = tts
                .synthesize(SENTENCE, &voice, &mut |_| true)
                .expect_err("unknown voice must fail");
            assert!(matches!(err, TtsError::UnknownVoice { .. }), "{err}");
        }
        // And the engine still works with a good voice afterwards.
        let (audio, _) = collect(&tts, SENTENCE, &Voice::default());
        assert!(audio.len() > 22050);
    }

    #[test]
    fn faster_rate_is_shorter() {
        let tts = engine();
        let at = |rate_wpm| {
            let voice = Voice {
                rate_wpm,
                ..Voice::default()
            };
            collect(&tts, SENTENCE, &voice).1.samples
        };
        let (slow, fast) = (at(120), at(240));
        assert!(
            fast * 10 < slow * 7,
            "240 wpm: {fast} samples, 120 wpm: {slow}"
        );
    }

    #[test]
    fn other_voice_and_pitch_work() {
        let tts = engine();
        let voice = Voice {
            name: "en-gb".to_string(),
            rate_wpm: 1000,
            pitch: 500,
        };
        let (audio, stats) = collect(&tts, "Hello there.", &voice);
        assert!(stats.chunks > 0 && rms(&audio) > 500.0);
        let (_, blank) = collect(&tts, "  \n", &Voice::default());
        assert_eq!(blank, SynthStats::default());
    }

    #[test]
    fn panicking_callback_is_resumed_and_engine_survives() {
        let tts = engine();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = tts.synthesize(SENTENCE, &Voice::default(), &mut |_| panic!("consumer bug"));
        }));
        assert!(result.is_err());
        let (audio, _) = collect(&tts, SENTENCE, &Voice::default());
        assert!(audio.len() > 22050);
    }

    #[test]
    fn bad_data_path_is_an_error() {
        let err = Espeak::new(Some(Path::new("/nonexistent/espeak")))
            .expect_err("missing data must fail");
        assert!(matches!(err, TtsError::Init(_)), "{err}");
    }

    #[test]
    fn per_sentence_timing() {
        let tts = engine();
        let _ = collect(&tts, SENTENCE, &Voice::default());
        let mut worst = Duration::ZERO;
        for _ in 0..10 {
            let t = Instant::now();
            let (_, stats) = collect(&tts, SENTENCE, &Voice::default());
            worst = worst.max(t.elapsed());
            assert!(stats.first_chunk_us < 200_000);
        }
        assert!(worst < Duration::from_secs(1), "{worst:?} for one sentence");
    }
}
