//! Typed, validated configuration: `config/switchboard.toml`, the app-variant templates
//! (`config/templates/*.toml`) and the demo data. The same files are compiled into the binary,
//! so a fresh checkout runs on embedded defaults; a `--config FILE` (or `config/switchboard.toml`
//! in the working directory) overrides them. There are no globals: the loaded `Config` is passed down.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const EMBEDDED_CONFIG: &str = include_str!("../config/switchboard.toml");
const EMBEDDED_TEMPLATES: &[(&str, &str)] = &[
    (
        "hospitality",
        include_str!("../config/templates/hospitality.toml"),
    ),
    ("travel", include_str!("../config/templates/travel.toml")),
];
const EMBEDDED_DEMO_DATA: &str = include_str!("../config/demo_data.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} is not valid: {message}")]
    Parse { what: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// Public base URL providers reach the gateway at (https://…); empty = the request's Host.
    #[serde(default)]
    pub public_url: String,
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub template: String,
    pub demo_data: String,
    pub router: RouterConfig,
    pub session: SessionConfig,
    pub reliability: ReliabilityConfig,
    pub demo: DemoConfig,
    #[serde(default)]
    pub speech: SpeechConfig,
    #[serde(default)]
    pub calls: CallsConfig,
    #[serde(default)]
    pub twilio: TwilioConfig,
    #[serde(default)]
    pub telnyx: TelnyxConfig,
    #[serde(default)]
    pub plivo: PlivoConfig,
    #[serde(default)]
    pub vonage: VonageConfig,
    #[serde(default)]
    pub webrtc: WebRtcConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub remote_agents: RemoteAgentsConfig,
    #[serde(default)]
    pub recording: crate::recording::RecordingConfig,
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    #[serde(default)]
    pub llm: crate::llm::LlmConfig,
    /// Directory the config file was read from (templates and demo data are looked up beside it).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The audio path: speech recognition, synthesis, turn-taking and barge-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// Which installed whisper model transcribes callers (whisper-tiny.en or whisper-base).
    pub asr_model: String,
    pub asr: crate::asr::whisper::AsrConfig,
    /// Concurrent decodes (0 = one per core; a decode alone takes `asr.threads` cores, decodes
    /// side by side one each).
    pub asr_workers: usize,
    /// The bot's voice (espeak-ng voice name, words per minute, pitch 0–100).
    pub voice: crate::tts::Voice,
    /// Which engine speaks it (Piper by default, espeak-ng as its fallback or alone).
    pub tts: crate::tts::TtsConfig,
    /// The end-of-turn model (Smart Turn) asked at each pause.
    pub turn_model: crate::call::TurnModelConfig,
    /// The voice check (Silero VAD) on the energy detector's speech.
    pub vad: crate::call::VoiceCheckConfig,
    pub call: crate::call::CallConfig,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            asr_model: "whisper-tiny.en".into(),
            asr: Default::default(),
            asr_workers: 0,
            voice: Default::default(),
            tts: Default::default(),
            turn_model: Default::default(),
            vad: Default::default(),
            call: Default::default(),
        }
    }
}

/// Live phone calls: admission control and shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Most calls served at once; a caller over the cap hears `busy_message` and is hung up.
    pub max_active: usize,
    pub busy_message: String,
    /// On SIGTERM: no new calls; active ones may finish for this long before they are ended.
    pub drain_secs: u64,
    /// A media connection that has not started its call this long after connecting is closed.
    pub start_timeout_ms: u64,
    /// A call whose provider sent nothing for this long is over (providers stream continuously,
    /// silence included).
    pub media_timeout_ms: u64,
    /// The longest a call may last; then the bot hangs up.
    pub max_call_secs: u64,
    /// Media connections from one address that may wait to start a call at once.
    pub max_pending_per_ip: usize,
    /// The token Telnyx, Plivo, Exotel and Vonage media URLs must carry (`?token=…`): put it in
    /// the stream URL you configure at the provider. `SWITCHBOARD_MEDIA_TOKEN` overrides it. With
    /// API tokens or provider credentials configured and no media token, those sockets are
    /// refused.
    pub media_token: String,
}

impl CallsConfig {
    /// Applies `SWITCHBOARD_MEDIA_TOKEN` when set.
    pub fn with_env(mut self) -> Self {
        env_override("SWITCHBOARD_MEDIA_TOKEN", &mut self.media_token);
        self
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            max_active: 20,
            busy_message: "We are experiencing a high call volume. Please call again in a few minutes. Goodbye.".into(),
            drain_secs: 30,
            start_timeout_ms: 10_000,
            media_timeout_ms: 20_000,
            max_call_secs: 3600,
            max_pending_per_ip: 16,
            media_token: String::new(),
        }
    }
}

/// Who may use the HTTP API, and the HTTP server's limits. `SWITCHBOARD_ADMIN_TOKENS` and
/// `SWITCHBOARD_CLIENT_TOKENS` (comma-separated) in the environment add to the tokens in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer tokens with the admin scope: the agent registry, logs, cases, every conversation.
    pub admin_tokens: Vec<String>,
    /// Bearer tokens with the client scope: open a conversation and talk in it (with the
    /// conversation's own handle), place a softphone call. With no token at all the gateway
    /// serves loopback only and every request is trusted (development).
    pub client_tokens: Vec<String>,
    /// Turns (messages, new conversations) per minute for one token (development mode: no limit).
    pub turns_per_minute: u32,
    /// Turns per minute from one client address, whatever tokens it uses (0: no per-address
    /// limit, e.g. behind a reverse proxy that hides the clients' addresses).
    pub turns_per_minute_per_ip: u32,
    /// A client must send its request headers within this long.
    pub header_read_timeout_ms: u64,
    /// Open connections at most (WebSockets count until they are upgraded); the rest wait.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            admin_tokens: vec![],
            client_tokens: vec![],
            turns_per_minute: 120,
            turns_per_minute_per_ip: 300,
            header_read_timeout_ms: 5000,
            max_connections: 4096,
        }
    }
}

impl ApiConfig {
    /// Adds the tokens in `SWITCHBOARD_ADMIN_TOKENS` and `SWITCHBOARD_CLIENT_TOKENS`.
    pub fn with_env(mut self) -> Self {
        for (var, into) in [
            ("SWITCHBOARD_ADMIN_TOKENS", &mut self.admin_tokens),
            ("SWITCHBOARD_CLIENT_TOKENS", &mut self.client_tokens),
        ] {
            if let Ok(v) = std::env::var(var) {
                into.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                );
            }
        }
        self
    }

    /// No token configured: development mode, loopback only.
    pub fn is_open(&self) -> bool {
        self.admin_tokens.is_empty() && self.client_tokens.is_empty()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = self
            .admin_tokens
            .iter()
            .chain(&self.client_tokens)
            .find(|t| t.trim().len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            let shown: String = t.chars().take(4).collect();
            return Err(ConfigError::Invalid(format!(
                "api token {shown}… must be at least 16 characters with no spaces"
            )));
        }
        if self
            .admin_tokens
            .iter()
            .any(|a| self.client_tokens.contains(a))
        {
            return Err(ConfigError::Invalid(
                "api: a token cannot be both an admin and a client token".into(),
            ));
        }
        if self.turns_per_minute == 0
            || self.max_connections < 16
            || self.header_read_timeout_ms < 100
        {
            return Err(ConfigError::Invalid(
                "api: turns_per_minute must be positive, max_connections at least 16, header_read_timeout_ms at least 100".into(),
            ));
        }
        Ok(())
    }
}

/// Where sub-agents registered over the API (`POST /v1/agents`) may live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteAgentsConfig {
    /// Host names (or IPs) agent URLs may point at; `*.example.com` allows subdomains. Empty =
    /// no remote agent can be registered.
    pub allow_hosts: Vec<String>,
    /// Plain http (else https only).
    pub allow_http: bool,
    /// Loopback, private, link-local and other non-public addresses (else refused, also when a
    /// name resolves to one).
    pub allow_private: bool,
    /// Most remote agents registered at once.
    pub max_agents: usize,
}

impl Default for RemoteAgentsConfig {
    fn default() -> Self {
        Self {
            allow_hosts: vec![],
            allow_http: false,
            allow_private: false,
            max_agents: 16,
        }
    }
}

/// Twilio credentials and REST endpoint. `TWILIO_AUTH_TOKEN` / `TWILIO_ACCOUNT_SID` in the
/// environment override the file (keep secrets out of config files).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    /// Signs webhooks and the media WebSocket upgrade; empty = unsigned requests are accepted.
    pub auth_token: String,
    /// Needed for REST hang-up and transfer.
    pub account_sid: String,
    pub api_base: String,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            auth_token: String::new(),
            account_sid: String::new(),
            api_base: "https://api.twilio.com".into(),
        }
    }
}

impl TwilioConfig {
    /// Applies `TWILIO_AUTH_TOKEN` and `TWILIO_ACCOUNT_SID` when set.
    pub fn with_env(mut self) -> Self {
        env_override("TWILIO_AUTH_TOKEN", &mut self.auth_token);
        env_override("TWILIO_ACCOUNT_SID", &mut self.account_sid);
        self
    }
}

/// Telnyx call control (hang-up, transfer) and webhook signatures. `TELNYX_API_KEY` and
/// `TELNYX_PUBLIC_KEY` override the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelnyxConfig {
    /// Bearer API key; empty = calls are ended by closing the media stream only.
    pub api_key: String,
    pub api_base: String,
    /// The account's webhook public key (base64 Ed25519, from the portal): `/telnyx/voice`
    /// accepts only webhooks it signed.
    pub public_key: String,
}

impl Default for TelnyxConfig {
    fn default() -> Self {
        Self {
            api_key: String::new(),
            api_base: "https://api.telnyx.com".into(),
            public_key: String::new(),
        }
    }
}

/// Vonage's signed webhooks. `VONAGE_SIGNATURE_SECRET` overrides the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VonageConfig {
    /// The account's signature secret: `/vonage/answer` accepts only requests whose JWT it signed
    /// (turn on signed callbacks for the application).
    pub signature_secret: String,
}

impl VonageConfig {
    pub fn with_env(mut self) -> Self {
        env_override("VONAGE_SIGNATURE_SECRET", &mut self.signature_secret);
        self
    }
}

/// Plivo's REST API (hang-up). `PLIVO_AUTH_ID` / `PLIVO_AUTH_TOKEN` override the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlivoConfig {
    pub auth_id: String,
    pub auth_token: String,
    pub api_base: String,
}

impl Default for PlivoConfig {
    fn default() -> Self {
        Self {
            auth_id: String::new(),
            auth_token: String::new(),
            api_base: "https://api.plivo.com".into(),
        }
    }
}

fn env_override(var: &str, into: &mut String) {
    if let Ok(v) = std::env::var(var)
        && !v.trim().is_empty()
    {
        *into = v.trim().to_string();
    }
}

impl TelnyxConfig {
    pub fn with_env(mut self) -> Self {
        env_override("TELNYX_API_KEY", &mut self.api_key);
        env_override("TELNYX_PUBLIC_KEY", &mut self.public_key);
        self
    }
}

impl PlivoConfig {
    pub fn with_env(mut self) -> Self {
        env_override("PLIVO_AUTH_ID", &mut self.auth_id);
        env_override("PLIVO_AUTH_TOKEN", &mut self.auth_token);
        self
    }
}

/// The browser softphone's media leg (WebRTC).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcConfig {
    /// The address each call's UDP socket binds to (an ephemeral port per call). 127.0.0.1 serves
    /// browsers on this machine only; 0.0.0.0 binds every non-loopback interface (production).
    pub bind: std::net::IpAddr,
    /// STUN/TURN servers for both the page and the gateway. Empty = host candidates only.
    pub ice_servers: Vec<IceServerConfig>,
    /// A call whose browser sent no audio for this long is over (a closed tab is otherwise only
    /// noticed ~30 s later by ICE consent failure).
    pub media_timeout_ms: u64,
    /// A call not connected this long after the answer is over.
    pub connect_timeout_ms: u64,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ice_servers: vec![],
            media_timeout_ms: 3000,
            connect_timeout_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IceServerConfig {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:host:443?transport=tcp`.
    pub urls: Vec<String>,
    /// TURN credentials (given to the page too: use short-lived ones in production).
    pub username: String,
    pub credential: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterMode {
    Semantic,
    Keyword,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub mode: RouterMode,
    pub model: String,
    pub threshold: f32,
    pub temperature: f32,
    pub max_failures: u32,
    /// A request whose best example similarity is below this (and that no keyword decides) is
    /// out of scope; so is one whose nearest examples are the template's out-of-scope examples.
    #[serde(default = "default_scope_threshold")]
    pub scope_threshold: f32,
}

fn default_scope_threshold() -> f32 {
    0.35
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub ttl_secs: u64,
    pub history_cap: usize,
    /// Conversations kept in memory at most (the least recently active beyond it are reloaded
    /// from the store when they speak again).
    #[serde(default = "default_max_in_memory")]
    pub max_in_memory: usize,
    /// How often expired conversations leave memory and old records are purged.
    #[serde(default = "default_sweep_secs")]
    pub sweep_secs: u64,
    /// Expired sessions and central-log entries are deleted after this many days (cases and
    /// their audit trails stay).
    #[serde(default = "default_retention_days")]
    pub retention_days: u64,
}

fn default_max_in_memory() -> usize {
    10_000
}
fn default_sweep_secs() -> u64 {
    60
}
fn default_retention_days() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReliabilityConfig {
    pub task_timeout_ms: u64,
    pub turn_budget_ms: u64,
    pub max_retries: u32,
    pub initial_backoff_ms: u64,
    pub backoff_multiplier: f64,
    pub max_backoff_ms: u64,
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    pub max_delegation_depth: u32,
    pub health_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemMode {
    Up,
    Down,
    FailWrites,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    pub reservation_system: SystemMode,
    #[serde(default)]
    pub today: String,
}

impl Config {
    /// Loads `path`, or `config/switchboard.toml` if it exists, or the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let default_path = Path::new("config/switchboard.toml");
        let chosen = match path {
            Some(p) => Some(p.to_path_buf()),
            None if default_path.is_file() => Some(default_path.to_path_buf()),
            None => None,
        };
        match chosen {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                let mut cfg = Self::parse(&text, &p.display().to_string())?;
                cfg.base_dir = p.parent().map(Path::to_path_buf);
                Ok(cfg)
            }
            None => Self::embedded(),
        }
    }

    /// The defaults compiled into the binary.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::parse(EMBEDDED_CONFIG, "embedded config")
    }

    pub fn parse(text: &str, what: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            what: what.into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.api.validate()?;
        for ice in &self.webrtc.ice_servers {
            if ice.urls.is_empty() {
                return Err(ConfigError::Invalid(
                    "webrtc.ice_servers: every entry needs at least one url".into(),
                ));
            }
            if let Some(u) = ice.urls.iter().find(|u| {
                !["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|p| u.starts_with(p))
            }) {
                return Err(ConfigError::Invalid(format!(
                    "webrtc.ice_servers: {u:?} is not a stun:, stuns:, turn: or turns: url"
                )));
            }
        }
        if self.webrtc.media_timeout_ms < 500 {
            return Err(ConfigError::Invalid(
                "webrtc.media_timeout_ms must be at least 500".into(),
            ));
        }
        let r = &self.router;
        if !(0.0..=1.0).contains(&r.threshold) {
            return Err(ConfigError::Invalid(
                "router.threshold must be in 0..1".into(),
            ));
        }
        let rel = &self.reliability;
        if rel.task_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "reliability.task_timeout_ms must be positive".into(),
            ));
        }
        if rel.backoff_multiplier < 1.0 {
            return Err(ConfigError::Invalid(
                "reliability.backoff_multiplier must be at least 1".into(),
            ));
        }
        if rel.max_delegation_depth == 0 {
            return Err(ConfigError::Invalid(
                "reliability.max_delegation_depth must be at least 1".into(),
            ));
        }
        if self.session.history_cap == 0 || self.session.ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "session.ttl_secs and session.history_cap must be positive".into(),
            ));
        }
        if !self.demo.today.is_empty()
            && chrono::NaiveDate::parse_from_str(&self.demo.today, "%Y-%m-%d").is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "demo.today {:?} is not YYYY-MM-DD",
                self.demo.today
            )));
        }
        Ok(())
    }

    /// The date the agents take as "today": `demo.today` if set, else the demo data's own
    /// calendar (its `today`, so the demo behaves the same on any date), else `None` (the real
    /// date).
    pub fn fixed_today(&self) -> Option<chrono::NaiveDate> {
        let parse = |s: &str| chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
        parse(&self.demo.today).or_else(|| {
            #[derive(Deserialize)]
            struct Calendar {
                today: Option<String>,
            }
            let text = self.demo_data_text().ok()?;
            let cal: Calendar = toml::from_str(&text).ok()?;
            cal.today.as_deref().and_then(parse)
        })
    }

    /// Loads the configured template (a file beside the config, else an embedded one).
    pub fn load_template(&self) -> Result<Template, ConfigError> {
        self.load_template_named(&self.template)
    }

    pub fn load_template_named(&self, name: &str) -> Result<Template, ConfigError> {
        let text = self.template_text(name)?;
        Template::parse(&text, &format!("templates/{name}.toml"))
    }

    /// The strings the configured template's file holds (prompts, questions, replies, but also
    /// field names and patterns), with the master's lines, which the file may leave to their
    /// defaults, from `template` (that file loaded, as the engine has it): what the bot's fixed
    /// sentences are taken from (see `tts::normalize::fixed_sentences`).
    pub fn template_strings(&self, template: &Template) -> Result<Vec<String>, ConfigError> {
        let text = self.template_text(&self.template)?;
        let file = format!("templates/{}.toml", self.template);
        let mut out = vec![];
        let file: toml::Value =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid(format!("{file}: {e}")))?;
        collect_strings(&file, &mut out);
        let lines = toml::Value::try_from(&template.lines)
            .map_err(|e| ConfigError::Invalid(format!("the master's lines: {e}")))?;
        collect_strings(&lines, &mut out);
        Ok(out)
    }

    /// A template file's text (beside the config, else embedded).
    fn template_text(&self, name: &str) -> Result<String, ConfigError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid(format!(
                "template name {name:?} is not a plain name"
            )));
        }
        let file = format!("templates/{name}.toml");
        Ok(match self.read_beside(&file)? {
            Some(t) => t,
            None => EMBEDDED_TEMPLATES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "unknown template {name:?}; available: {}",
                        EMBEDDED_TEMPLATES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        })
    }

    /// The demo data file's text (beside the config, else embedded).
    pub fn demo_data_text(&self) -> Result<String, ConfigError> {
        Ok(self
            .read_beside(&self.demo_data)?
            .unwrap_or_else(|| EMBEDDED_DEMO_DATA.to_string()))
    }

    fn read_beside(&self, rel: &str) -> Result<Option<String>, ConfigError> {
        let Some(base) = &self.base_dir else {
            return Ok(None);
        };
        let p = base.join(rel);
        if !p.is_file() {
            return Ok(None);
        }
        std::fs::read_to_string(&p)
            .map(Some)
            .map_err(|source| ConfigError::Read { path: p, source })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("switchboard.db")
    }

    /// Where calls are recorded: `[recording] dir`, or `<data_dir>/recordings`.
    pub fn recordings_dir(&self) -> PathBuf {
        if self.recording.dir.as_os_str().is_empty() {
            self.data_dir.join("recordings")
        } else {
            self.recording.dir.clone()
        }
    }
}

/// An app variant: which agents answer, what they can do, and how the master speaks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub tone: String,
    pub greeting: String,
    pub farewell: String,
    pub anything_else: String,
    pub human_number: String,
    /// What the line can do, for "I can help with …" ("reservations, billing and hotel services").
    pub capabilities: String,
    /// Words callers and the bot use on this line, for the speech recogniser's prompt.
    #[serde(default)]
    pub vocabulary: Vec<String>,
    pub agents: Vec<AgentSpec>,
    pub tasks: BTreeMap<String, TaskSpec>,
    /// Questions the line answers from its own facts (check-in time, Wi-Fi, address).
    #[serde(default)]
    pub faq: Vec<FaqEntry>,
    /// What callers ask that the line cannot do: examples for the out-of-scope decision.
    #[serde(default)]
    pub out_of_scope: OutOfScope,
    /// Every other sentence the master says, with defaults.
    #[serde(default)]
    pub lines: Lines,
    /// This line's use of the language model (over `[llm]` in the gateway's config).
    #[serde(default)]
    pub llm: TemplateLlm,
}

/// A template's own choices over the gateway's `[llm]`: each unset one is the gateway's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateLlm {
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub route: Option<bool>,
    pub answer: Option<bool>,
    /// What the model may say about the line beyond its FAQ answers (facts for `answer`).
    #[serde(default)]
    pub facts: Vec<String>,
}

/// A question the line answers itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    pub id: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    pub answer: String,
}

impl FaqEntry {
    /// The router's name for this entry.
    pub fn task(&self) -> String {
        format!("{FAQ_PREFIX}{}", self.id)
    }
}

/// Router names of FAQ entries start with this.
pub const FAQ_PREFIX: &str = "faq_";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutOfScope {
    #[serde(default)]
    pub examples: Vec<String>,
}

/// The master's own sentences. `{fields}` is a spoken list of what is asked, `{phrase}` a task's
/// phrase, `{capabilities}` the template's, `{topic}` a task's topic.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lines {
    pub not_caught: String,
    pub ask_fields: String,
    pub still_need: String,
    pub ask_again: String,
    pub which_topic: String,
    pub what_about: String,
    pub out_of_scope: String,
    pub confirm_goodbye: String,
    pub goodbye_declined: String,
    pub what_else: String,
    pub dropped: String,
    pub nothing_to_repeat: String,
    pub hello: String,
    pub how_are_you: String,
    pub thanks: String,
    pub queued_offer: String,
    pub match_declined: String,
    pub hold_for_person: String,
    pub resume: String,
    pub could_not: String,
    /// Said on a call when the recogniser, the agent or the synthesiser failed for a turn.
    pub apology: String,
    /// A choice a remote agent asks for, in the master's words (`{field}`: what is chosen).
    pub choose: String,
}

/// Every string in `v`, depth first.
fn collect_strings(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        toml::Value::Table(t) => t.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

impl Default for Lines {
    fn default() -> Self {
        let s = |x: &str| x.to_string();
        Lines {
            not_caught: s("Sorry, I didn't catch that. Could you say it again?"),
            ask_fields: s(
                "I'll need a bit more information to {phrase}. Can you please provide {fields}?",
            ),
            still_need: s("Thanks. I still need {fields}."),
            ask_again: s("Sorry, I didn't catch {fields}. Could you say it again?"),
            which_topic: s("Is this about {a} or {b}?"),
            what_about: s(
                "Sorry, I didn't quite get that. Could you tell me what you're calling about?",
            ),
            out_of_scope: s(
                "I'm sorry, I can't help with that on this line. I can help with {capabilities}.",
            ),
            confirm_goodbye: s(
                "Sorry, was that goodbye? If there's something I can help with, just tell me.",
            ),
            goodbye_declined: s("Okay. What can I help you with?"),
            what_else: s("Sure. What else can I help you with?"),
            dropped: s("Okay, I've dropped that."),
            nothing_to_repeat: s("How can I help you today?"),
            hello: s("Hello! How can I help you today?"),
            how_are_you: s("I'm doing well, thanks for asking. How can I help you today?"),
            thanks: s("You're welcome."),
            queued_offer: s("You also asked about {topic}. Shall I {phrase} now?"),
            match_declined: s("Sorry about that. Could you give me {fields} again?"),
            hold_for_person: s("Please hold while I connect you with a member of our team."),
            resume: s("Now, back to your request."),
            could_not: s("Sorry, I couldn't {phrase} just now."),
            apology: s("Sorry, I had a problem on my side. Could you say that again?"),
            choose: s("Which {field} would you like?"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Hotel stays or travel bookings: confirm, change, cancel (resolves spoken codes and names).
    Reservations,
    Billing,
    Support,
    Concierge,
    Handoff,
    /// Flight status.
    Flights,
    /// Loyalty points.
    Loyalty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub id: String,
    pub kind: AgentKind,
    pub specialty: String,
    pub capabilities: Vec<String>,
    pub tasks: Vec<String>,
    /// This agent's model tier (seed 000): the model that extracts its tasks' slot values when
    /// `[llm] route` is on. None: the template's model.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// "master" for tasks the master handles itself (ending the call); otherwise from `agents`.
    #[serde(default)]
    pub agent: Option<String>,
    /// Spoken topic for "Is this about X or Y?".
    pub topic: String,
    /// Spoken verb phrase: "I'll need a bit more information to {phrase}."
    pub phrase: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub required: Vec<FieldSpec>,
    #[serde(default)]
    pub optional: Vec<FieldSpec>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub follow_up: Option<FollowUp>,
    /// The task changes something (cancels, moves, pays): a correction after it is done is
    /// confirmed before the task runs again.
    #[serde(default)]
    pub writes: bool,
    #[serde(default)]
    pub replies: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub field: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub description: String,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub example: Option<String>,
    /// Spoken names for the start of a code ("british airways" = "BA").
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// The value names a record the agent must find first ("reservation": a reservation or
    /// booking), so a service is never attached to a code nobody holds.
    #[serde(default)]
    pub record: Option<String>,
    /// `pattern`, compiled once when the template is loaded.
    #[serde(skip)]
    pub regex: Option<regex::Regex>,
}

impl FieldSpec {
    /// Whether `value` satisfies the field's pattern (no pattern: anything non-empty).
    pub fn accepts(&self, value: &str) -> bool {
        !value.trim().is_empty() && self.regex.as_ref().is_none_or(|re| re.is_match(value))
    }

    /// `aliases` as (spoken, code) pairs, longest first.
    pub fn alias_pairs(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .aliases
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        v
    }
}

/// How a field's value is extracted from speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A code matched against `pattern` ("A B C one two three" → ABC123).
    String,
    Name,
    Date,
    Month,
    Amount,
    /// Free text: the caller's whole answer.
    Text,
    /// Filled from a clarification's options.
    Choice,
    /// low | medium | high, from how the caller says it ("really urgent", "no rush").
    Urgency,
    /// Yes/no confirmation before acting.
    Confirm,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Name => "name",
            FieldType::Date => "date",
            FieldType::Month => "month",
            FieldType::Amount => "amount",
            FieldType::Text => "text",
            FieldType::Choice => "choice",
            FieldType::Urgency => "urgency",
            FieldType::Confirm => "confirm",
        }
    }

    pub fn parse(s: &str) -> FieldType {
        match s {
            "name" => FieldType::Name,
            "date" => FieldType::Date,
            "month" => FieldType::Month,
            "amount" | "number" => FieldType::Amount,
            "text" => FieldType::Text,
            "choice" => FieldType::Choice,
            "urgency" => FieldType::Urgency,
            "confirm" | "boolean" => FieldType::Confirm,
            _ => FieldType::String,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    pub task: String,
    pub question: String,
    /// next task's parameter ← field of this task's result data
    #[serde(default)]
    pub carry: BTreeMap<String, String>,
}

pub const MASTER_AGENT: &str = "master";

impl Template {
    pub fn parse(text: &str, what: &str) -> Result<Template, ConfigError> {
        let mut t: Template = toml::from_str(text).map_err(|e| ConfigError::Parse {
            what: what.into(),
            message: e.to_string(),
        })?;
        t.validate()?;
        t.compile()?;
        Ok(t)
    }

    /// Compiles every field's pattern once.
    fn compile(&mut self) -> Result<(), ConfigError> {
        for (name, task) in self.tasks.iter_mut() {
            for f in task.required.iter_mut().chain(task.optional.iter_mut()) {
                if let Some(p) = &f.pattern {
                    f.regex = Some(regex::Regex::new(p).map_err(|e| {
                        ConfigError::Invalid(format!(
                            "task {name} field {}: bad pattern: {e}",
                            f.field
                        ))
                    })?);
                }
            }
        }
        Ok(())
    }

    /// The field spec of `field` in `task`, required or optional.
    pub fn field(&self, task: &str, field: &str) -> Option<&FieldSpec> {
        let t = self.tasks.get(task)?;
        t.required
            .iter()
            .chain(&t.optional)
            .find(|f| f.field == field)
    }

    /// The FAQ entry a router name (`faq_<id>`) stands for.
    pub fn faq(&self, task: &str) -> Option<&FaqEntry> {
        let id = task.strip_prefix(FAQ_PREFIX)?;
        self.faq.iter().find(|f| f.id == id)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, task) in &self.tasks {
            let owner = self.agent_for_task(name);
            if owner.is_none() && task.agent.as_deref() != Some(MASTER_AGENT) {
                return Err(ConfigError::Invalid(format!(
                    "template {}: task {name} has no agent declaring it",
                    self.name
                )));
            }
            if task.keywords.is_empty() && task.examples.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "template {}: task {name} has neither keywords nor examples",
                    self.name
                )));
            }
            for f in task.required.iter().chain(&task.optional) {
                if let Some(p) = &f.pattern {
                    regex::Regex::new(p).map_err(|e| {
                        ConfigError::Invalid(format!(
                            "task {name} field {}: bad pattern: {e}",
                            f.field
                        ))
                    })?;
                }
            }
            if let Some(fu) = &task.follow_up
                && !self.tasks.contains_key(&fu.task)
            {
                return Err(ConfigError::Invalid(format!(
                    "task {name}: follow-up task {} is not declared",
                    fu.task
                )));
            }
        }
        for f in &self.faq {
            if f.answer.trim().is_empty() || (f.keywords.is_empty() && f.examples.is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "template {}: faq {} needs an answer and keywords or examples",
                    self.name, f.id
                )));
            }
            if self.tasks.contains_key(&f.task()) {
                return Err(ConfigError::Invalid(format!(
                    "template {}: faq {} clashes with task {}",
                    self.name,
                    f.id,
                    f.task()
                )));
            }
        }
        for a in &self.agents {
            for t in &a.tasks {
                if !self.tasks.contains_key(t) {
                    return Err(ConfigError::Invalid(format!(
                        "agent {} declares task {t} that has no [tasks.{t}] section",
                        a.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The first agent declaring `task`.
    pub fn agent_for_task(&self, task: &str) -> Option<&AgentSpec> {
        self.agents
            .iter()
            .find(|a| a.tasks.iter().any(|t| t == task))
    }

    /// The human-handoff task, if the template has a handoff agent.
    pub fn handoff_task(&self) -> Option<&str> {
        self.agents
            .iter()
            .find(|a| a.kind == AgentKind::Handoff)
            .and_then(|a| a.tasks.first())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_and_templates_load() {
        let cfg = Config::embedded().unwrap();
        assert_eq!(cfg.router.threshold, 0.6);
        for name in ["hospitality", "travel"] {
            let t = cfg.load_template_named(name).unwrap();
            assert_eq!(t.name, name);
            assert!(t.agents.len() >= 5, "{name} has {} agents", t.agents.len());
            assert!(t.handoff_task().is_some());
        }
        assert!(cfg.demo_data_text().unwrap().contains("ABC123"));
    }

    #[test]
    fn bad_values_are_rejected_with_a_reason() {
        let good = EMBEDDED_CONFIG;
        let bad = good.replace("threshold = 0.6", "threshold = 1.6");
        let err = Config::parse(&bad, "x").unwrap_err().to_string();
        assert!(err.contains("router.threshold"), "{err}");
        let bad = good.replace("mode = \"semantic\"", "mode = \"psychic\"");
        let err = Config::parse(&bad, "x").unwrap_err().to_string();
        assert!(err.contains("x is not valid"), "{err}");
        let bad = good.replace("today = \"\"", "today = \"next tuesday\"");
        assert!(Config::parse(&bad, "x").is_err());
        let cfg = Config::embedded().unwrap();
        assert!(cfg.load_template_named("../etc/passwd").is_err());
        let err = cfg.load_template_named("casino").unwrap_err().to_string();
        assert!(err.contains("hospitality, travel"), "{err}");
    }
}
