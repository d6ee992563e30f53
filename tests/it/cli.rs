//! The `switchboard` binary itself: `chat --json` reads one caller line per stdin line and
//! prints one JSON object per bot reply; `models verify` checks the installed models.

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn chat_json_runs_a_conversation_from_stdin() {
    let data = tempfile::tempdir().unwrap();
    let cfg_path = data.path().join("switchboard.toml");
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchboard.toml"
    ))
    .unwrap()
    .replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", data.path().join("db")),
    )
    .replace(
        "models_dir = \"models\"",
        &format!(
            "models_dir = {:?}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models")
        ),
    )
    .replace("today = \"\"", "today = \"2025-01-15\"");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = bin()
        .args(["chat", "--json", "--config"])
        .arg(&cfg_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What's my bill this month?\nthe business one\nno thanks\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 4, "greeting + three replies: {lines:?}");
    for l in &lines {
        for k in ["reply", "intent", "agent", "status", "case_id"] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
    }
    assert_eq!(lines[1]["intent"], "get_billing_info");
    assert_eq!(lines[1]["status"], "needs_info");
    assert!(
        lines[2]["reply"].as_str().unwrap().contains("$310.00"),
        "{}",
        lines[2]
    );
    // the follow-up offer declined, then goodbye
    assert_eq!(lines[3]["status"], "success");
    let case = &lines[0]["case_id"];
    assert!(lines.iter().all(|l| &l["case_id"] == case));
}

#[test]
fn chat_refuses_to_start_without_its_model() {
    let empty = tempfile::tempdir().unwrap();
    let cfg_path = empty.path().join("switchboard.toml");
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchboard.toml"
    ))
    .unwrap()
    .replace(
        "models_dir = \"models\"",
        &format!("models_dir = {:?}", empty.path()),
    )
    .replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", empty.path().join("db")),
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = bin()
        .args(["chat", "--config"])
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("switchboard models install"), "{err}");
}

#[test]
fn models_verify_passes_on_the_installed_models() {
    let out = bin().args(["models", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all-minilm-l6-v2: ok"));
}

/// A config in a temp dir: its own database, the installed models, a fixed date.
fn temp_config(dir: &std::path::Path, today: &str) -> std::path::PathBuf {
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchboard.toml"
    ))
    .unwrap()
    .replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", dir.join("db")),
    )
    .replace(
        "models_dir = \"models\"",
        &format!(
            "models_dir = {:?}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models")
        ),
    )
    .replace("today = \"\"", &format!("today = {today:?}"));
    let p = dir.join("switchboard.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

#[test]
fn replaying_the_same_call_twice_gives_the_same_timeline_and_a_stereo_recording() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_config(dir.path(), "2025-11-24");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures/scenario1");
    let mut timelines = vec![];
    for run in ["a", "b"] {
        let out_dir = dir.path().join(run);
        let out = bin()
            .args(["replay", "--config"])
            .arg(&cfg)
            .arg("--script")
            .args(["01.wav", "02.wav", "03.wav"].map(|f| format!("{fixtures}/{f}")))
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("caller: ") && stdout.contains("Deluxe Suite"),
            "{stdout}"
        );
        timelines.push(std::fs::read_to_string(out_dir.join("timeline.json")).unwrap());
        let wav = switchboard::audio::decode::read_audio(
            &out_dir.join("call.wav"),
            switchboard::audio::decode::ChannelPick::Right,
        )
        .unwrap();
        assert_eq!((wav.rate, wav.channels_in_file), (16_000, 2));
        assert!(
            wav.samples.iter().any(|s| s.abs() > 0.05),
            "the bot channel has the bot's voice"
        );
    }
    assert_eq!(timelines[0], timelines[1], "replay is deterministic");
    let t: serde_json::Value = serde_json::from_str(&timelines[0]).unwrap();
    assert!(
        t.as_array()
            .unwrap()
            .iter()
            .all(|e| e["t_ms"].is_u64() && e["kind"].is_string())
    );
}

#[test]
fn say_and_transcribe_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("say.wav");
    let out = bin()
        .args(["say", "Please confirm my reservation.", "--out"])
        .arg(&wav)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin().arg("transcribe").arg(&wav).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("confirm my reservation"), "{text}");
    let out = bin()
        .arg("transcribe")
        .arg(dir.path().join("missing.wav"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wav"));
}

#[test]
fn serve_refuses_to_start_when_the_speech_model_is_missing_or_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "asr_model = \"whisper-tiny.en\"",
        "asr_model = \"whisper-base\"",
    );
    // A models dir with a manifest that lists whisper-base but whose file is damaged.
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("whisper-base")).unwrap();
    std::fs::write(models.join("whisper-base/ggml-model.bin"), b"not a model").unwrap();
    let manifest = serde_json::json!({"whisper-base": {"package": "p", "version": "1",
        "files": {"ggml-model.bin": {"bytes": 11, "sha256": "00"}}}});
    std::fs::write(models.join("manifest.json"), manifest.to_string()).unwrap();
    let text = text.replace(
        concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
        models.to_str().unwrap(),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("whisper-base") && err.contains("switchboard models install"),
        "{err}"
    );
}

#[test]
fn realtime_replay_is_paced_by_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = temp_config(dir.path(), "");
    let track = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures/noise/line.wav");
    let started = std::time::Instant::now();
    let out = bin()
        .args(["replay", "--realtime", "--track", track, "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 4 s of line noise, then the replay waits 3 s of quiet before it stops.
    assert!(stdout.contains("7.0 s of call"), "{stdout}");
    assert!(took.as_secs_f64() >= 7.0, "a 7 s call took {took:?}");
}
