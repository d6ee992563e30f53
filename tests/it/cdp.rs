//! A small Chrome DevTools Protocol driver for end-to-end tests of the softphone.
//!
//! It launches a headless Chromium with a fresh profile and a fake microphone fed
//! from a WAV file, talks CDP over one browser-level WebSocket, and drives pages
//! through flattened target sessions (`Target.attachToTarget { flatten: true }`):
//! every page command carries its `sessionId` on the same socket.
//!
//! The browser process is killed and its profile directory removed on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex as AsyncMutex, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Sink = futures_util::stream::SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Pending = HashMap<u64, oneshot::Sender<Result<Value>>>;

/// How long one CDP command may take before it is reported as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the browser.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The Chromium binary.
    pub chromium: PathBuf,
    /// A 16-bit PCM WAV to use as the microphone (any sample rate, mono or stereo).
    pub fake_audio: Option<PathBuf>,
    /// Chromium loops the fake-audio file by default; `false` plays it once (`%noloop`).
    pub loop_audio: bool,
    /// Accept camera/microphone prompts (`--use-fake-ui-for-media-stream`). This flag
    /// wins over `Browser.setPermission`: to test a refusal, launch with `false`
    /// (headless then refuses the prompt, or add `--deny-permission-prompts`).
    pub accept_media_prompts: bool,
    /// The initial window (and so viewport) size.
    pub window: (u32, u32),
    /// Added to the command line after the standard flags.
    pub extra_args: Vec<String>,
    /// Forward Chromium's stderr to ours (it is always drained).
    pub echo_stderr: bool,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            chromium: PathBuf::from("/usr/bin/chromium"),
            fake_audio: None,
            loop_audio: true,
            accept_media_prompts: true,
            window: (1280, 860),
            extra_args: Vec::new(),
            echo_stderr: false,
        }
    }
}

/// State shared by the browser, its pages and the socket reader task.
struct Conn {
    sink: AsyncMutex<Sink>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Console messages and uncaught exceptions, per session id.
    logs: Mutex<HashMap<String, Vec<String>>>,
    /// Set when the socket is gone; later commands fail at once with this.
    closed: Mutex<Option<String>>,
}

impl Conn {
    async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        if let Some(why) = self.closed.lock().unwrap().clone() {
            bail!("CDP {method}: connection closed ({why})");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = Value::String(s.to_string());
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let sent = self
            .sink
            .lock()
            .await
            .send(Message::text(msg.to_string()))
            .await;
        if let Err(e) = sent {
            self.pending.lock().unwrap().remove(&id);
            bail!("CDP {method}: send failed: {e}");
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => result.with_context(|| format!("CDP {method}")),
            Ok(Err(_)) => bail!("CDP {method}: connection closed before the reply"),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                bail!("CDP {method}: no reply within {COMMAND_TIMEOUT:?}")
            }
        }
    }

    fn on_message(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            let Some(tx) = self.pending.lock().unwrap().remove(&id) else {
                return;
            };
            let result = match v.get("error") {
                Some(e) => Err(anyhow!(
                    "{} (code {})",
                    e.get("message").and_then(Value::as_str).unwrap_or("error"),
                    e.get("code").unwrap_or(&Value::Null)
                )),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = tx.send(result);
            return;
        }
        // An event. Keep what helps explain a failing test.
        let session = v
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let p = &v["params"];
        let line = match v.get("method").and_then(Value::as_str) {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| a.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or("log"),
                    args.join(" ")
                )
            }
            Some("Runtime.exceptionThrown") => {
                format!("uncaught: {}", exception_text(&p["exceptionDetails"]))
            }
            Some("Log.entryAdded") => format!(
                "log.{}: {} {}",
                p["entry"]["level"].as_str().unwrap_or(""),
                p["entry"]["text"].as_str().unwrap_or(""),
                p["entry"]["url"].as_str().unwrap_or("")
            ),
            _ => return,
        };
        self.logs
            .lock()
            .unwrap()
            .entry(session)
            .or_default()
            .push(line);
    }

    fn close_all(&self, why: String) {
        *self.closed.lock().unwrap() = Some(why.clone());
        for (_, tx) in self.pending.lock().unwrap().drain() {
            let _ = tx.send(Err(anyhow!("connection closed: {why}")));
        }
    }
}

fn remote_object_text(o: &Value) -> String {
    match o.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => o
            .get("unserializableValue")
            .or_else(|| o.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("undefined")
            .to_string(),
    }
}

fn exception_text(d: &Value) -> String {
    let desc = d["exception"]["description"]
        .as_str()
        .or_else(|| d["exception"]["value"].as_str());
    match desc {
        Some(s) => s.to_string(),
        None => format!(
            "{} at line {}:{}",
            d["text"].as_str().unwrap_or("exception"),
            d["lineNumber"],
            d["columnNumber"]
        ),
    }
}

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    conn: Arc<Conn>,
    reader: tokio::task::JoinHandle<()>,
}

impl Browser {
    /// Starts Chromium and connects to its DevTools socket.
    pub async fn launch(opts: LaunchOptions) -> Result<Browser> {
        let profile = std::env::temp_dir().join(format!(
            "cdp-profile-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("creating {}", profile.display()))?;

        let mut args: Vec<String> = vec![
            "--headless".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--mute-audio".into(),
            "--password-store=basic".into(),
            "--use-mock-keychain".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--use-fake-device-for-media-stream".into(),
            // Chromium leaves loopback out of ICE gathering unless told; without this
            // a peer on 127.0.0.1 (the gateway under test) is unreachable.
            "--allow-loopback-in-peer-connection".into(),
            // Pages that never called getUserMedia hide host candidates behind mDNS names,
            // which nothing here resolves.
            "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter".into(),
            // Hidden or background targets must not have their timers throttled mid-call.
            "--disable-background-timer-throttling".into(),
            "--disable-renderer-backgrounding".into(),
            "--disable-backgrounding-occluded-windows".into(),
            format!("--window-size={},{}", opts.window.0, opts.window.1),
            format!("--user-data-dir={}", profile.display()),
            "--remote-debugging-port=0".into(),
        ];
        if opts.accept_media_prompts {
            args.push("--use-fake-ui-for-media-stream".into());
        }
        if let Some(wav) = &opts.fake_audio {
            // The audio service resolves a relative path against another directory and
            // then just logs "Failed to read"; the microphone is silent.
            let wav = std::fs::canonicalize(wav)
                .with_context(|| format!("fake audio {}", wav.display()))?;
            check_wav(&wav)?;
            let suffix = if opts.loop_audio { "" } else { "%noloop" };
            args.push(format!(
                "--use-file-for-fake-audio-capture={}{}",
                wav.display(),
                suffix
            ));
        }
        args.extend(opts.extra_args.iter().cloned());
        args.push("about:blank".into());

        let mut child = Command::new(&opts.chromium)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", opts.chromium.display()))?;

        // Chromium must keep being read from: a full stderr pipe blocks the browser.
        let stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
        let echo = opts.echo_stderr;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if echo {
                    eprintln!("[chromium] {line}");
                }
                let _ = line_tx.send(line);
            }
        });

        let ws_url = match wait_devtools_url(&mut child, &profile, &line_rx).await {
            Ok(u) => u,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&profile);
                return Err(e);
            }
        };
        // Keep draining the lines after startup, off the async runtime.
        std::thread::spawn(move || while line_rx.recv().is_ok() {});

        // Screenshots arrive as one base64 text message; lift tungstenite's limits.
        let config = WebSocketConfig::default()
            .max_message_size(Some(512 << 20))
            .max_frame_size(Some(512 << 20));
        let connected =
            tokio_tungstenite::connect_async_with_config(ws_url.as_str(), Some(config), true).await;
        let (ws, _) = match connected {
            Ok(x) => x,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&profile);
                bail!("connecting to {ws_url}: {e}");
            }
        };
        let (sink, mut stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: AsyncMutex::new(sink),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            logs: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
        });
        let reader_conn = conn.clone();
        let reader = tokio::spawn(async move {
            let why = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => reader_conn.on_message(t.as_str()),
                    Some(Ok(Message::Close(f))) => break format!("closed by the browser: {f:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("socket error: {e}"),
                    None => break "socket ended".to_string(),
                }
            };
            reader_conn.close_all(why);
        });

        Ok(Browser {
            child,
            profile,
            conn,
            reader,
        })
    }

    /// A browser-level CDP command (no session).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.conn.send(None, method, params).await
    }

    /// Opens a new tab, attaches to it and loads `url` (waits for the load event).
    pub async fn new_page(&self, url: &str) -> Result<Page> {
        let created = self
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = created["targetId"]
            .as_str()
            .context("createTarget: no targetId")?
            .to_string();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session_id = attached["sessionId"]
            .as_str()
            .context("attachToTarget: no sessionId")?
            .to_string();
        let page = Page {
            conn: self.conn.clone(),
            session_id,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        page.call("Log.enable", json!({})).await?;
        page.goto(url).await?;
        Ok(page)
    }

    /// Asks the browser to quit, then cleans up as `Drop` would.
    pub async fn close(mut self) -> Result<()> {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.call("Browser.close", json!({})),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(()) // Drop kills whatever is left and removes the profile.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helper processes may still be writing to the profile for a moment.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.profile) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Waits for "DevTools listening on ws://..." on stderr, or for the
/// DevToolsActivePort file (port on line 1, browser path on line 2).
async fn wait_devtools_url(
    child: &mut Child,
    profile: &Path,
    lines: &std::sync::mpsc::Receiver<String>,
) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tail: Vec<String> = Vec::new();
    let port_file = profile.join("DevToolsActivePort");
    loop {
        while let Ok(line) = lines.try_recv() {
            if let Some(i) = line.find("DevTools listening on ") {
                return Ok(line[i + "DevTools listening on ".len()..]
                    .trim()
                    .to_string());
            }
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut it = text.lines();
            if let (Some(port), Some(path)) = (it.next(), it.next())
                && port.trim().parse::<u16>().is_ok()
            {
                return Ok(format!("ws://127.0.0.1:{}{}", port.trim(), path.trim()));
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "chromium exited ({status}) before DevTools was ready:\n{}",
                tail.join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "chromium gave no DevTools URL within 30 s:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Chromium's fake capture accepts only integer PCM WAV (format 1, or extensible
/// with a PCM sub-format), at any sample rate; it resamples. Anything else (μ-law,
/// float) is rejected with only a log line, and the "microphone" is silent.
fn check_wav(path: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        bail!("{}: not a RIFF/WAVE file", path.display());
    }
    let mut off = 12;
    while off + 8 <= data.len() {
        let id = &data[off..off + 4];
        let len = u32::from_le_bytes(data[off + 4..off + 8].try_into().unwrap()) as usize;
        if id == b"fmt " && off + 8 + 16 <= data.len() {
            let f = &data[off + 8..];
            let mut format = u16::from_le_bytes([f[0], f[1]]);
            let bits = u16::from_le_bytes([f[14], f[15]]);
            if format == 0xfffe && len >= 40 && f.len() >= 26 {
                format = u16::from_le_bytes([f[24], f[25]]);
            }
            if format != 1 {
                bail!(
                    "{}: WAV format {format} is not integer PCM; Chromium's fake microphone would be silent \
                     (convert it, e.g. `sox in.wav -e signed-integer -b 16 out.wav`)",
                    path.display()
                );
            }
            if bits != 16 {
                eprintln!(
                    "cdp: {} has {bits}-bit samples; 16-bit is the safe choice",
                    path.display()
                );
            }
            return Ok(());
        }
        off += 8 + len + (len & 1);
    }
    bail!("{}: no fmt chunk", path.display())
}

/// One tab, driven through its flattened CDP session.
pub struct Page {
    conn: Arc<Conn>,
    session_id: String,
}

impl Page {
    /// A CDP command in this page's session.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.conn.send(Some(&self.session_id), method, params).await
    }

    /// Navigates and waits until `document.readyState` is "complete".
    pub async fn goto(&self, url: &str) -> Result<()> {
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = r.get("errorText").and_then(Value::as_str) {
            bail!("loading {url}: {err}");
        }
        self.wait_for(
            &format!(
                "location.href !== 'about:blank' || {} === 'about:blank'",
                json!(url)
            ),
            Duration::from_secs(15),
        )
        .await?;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(15),
        )
        .await
        .with_context(|| format!("loading {url}"))?;
        Ok(())
    }

    /// Evaluates an expression (awaiting a returned promise) and returns its value
    /// as JSON. A thrown exception or rejected promise is an error.
    pub async fn eval(&self, js: &str) -> Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": js,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                    "replMode": false,
                }),
            )
            .await?;
        if let Some(d) = r.get("exceptionDetails") {
            bail!("JS exception in `{}`: {}", short(js), exception_text(d));
        }
        let res = &r["result"];
        Ok(match res.get("value") {
            Some(v) => v.clone(),
            // undefined, or NaN/Infinity/-0/bigint, which JSON cannot hold
            None => res
                .get("unserializableValue")
                .and_then(Value::as_str)
                .map(|s| Value::String(s.to_string()))
                .unwrap_or(Value::Null),
        })
    }

    /// Polls `js` every 100 ms until it is truthy; returns that value. Exceptions
    /// while polling count as "not yet" (the page may still be loading).
    pub async fn wait_for(&self, js: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.eval(js).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => last = format!("last value {v}"),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for `{}` ({last})",
                    short(js)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the centre of the first element matching `selector` with real mouse
    /// events (so the page gets a user gesture). Fails if it is missing, hidden,
    /// disabled or covered by another element.
    pub async fn click(&self, selector: &str) -> Result<()> {
        let sel = json!(selector);
        let js = format!(
            r#"(() => {{
                const el = document.querySelector({sel});
                if (!el) throw new Error('no element matches ' + {sel});
                el.scrollIntoView({{ block: 'center', inline: 'center', behavior: 'instant' }});
                const r = el.getBoundingClientRect();
                if (r.width === 0 || r.height === 0) throw new Error({sel} + ' is not visible');
                if (el.disabled) throw new Error({sel} + ' is disabled');
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const top = document.elementFromPoint(x, y);
                if (top && top !== el && !el.contains(top))
                    throw new Error({sel} + ' is covered by ' + top.outerHTML.slice(0, 80));
                return [x, y];
            }})()"#
        );
        let xy = self.eval(&js).await?;
        let (x, y) = (xy[0].as_f64().unwrap_or(0.0), xy[1].as_f64().unwrap_or(0.0));
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        )
        .await?;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "fromSurface": true }),
            )
            .await?;
        let b64 = r["data"].as_str().context("captureScreenshot: no data")?;
        let png = base64_decode(b64)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Sets the viewport (CSS pixels) and device scale factor; `mobile` enables
    /// touch-style viewport handling.
    pub async fn set_viewport(
        &self,
        width: u32,
        height: u32,
        scale: f64,
        mobile: bool,
    ) -> Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        )
        .await?;
        Ok(())
    }

    /// Console messages, uncaught exceptions and browser log entries seen so far.
    pub fn console(&self) -> Vec<String> {
        self.conn
            .logs
            .lock()
            .unwrap()
            .get(&self.session_id)
            .cloned()
            .unwrap_or_default()
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "NaN" && s != "-0",
        _ => true,
    }
}

fn short(js: &str) -> String {
    let one_line: String = js.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        one_line.chars().take(117).collect::<String>() + "..."
    } else {
        one_line
    }
}

/// Standard base64 (CDP's encoding for binary payloads).
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s)
        .context("bad base64 from the browser")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(base64_decode("a").is_err());
    }

    #[test]
    fn truthiness_follows_js() {
        assert!(!truthy(&json!(null)));
        assert!(!truthy(&json!(0)));
        assert!(!truthy(&json!("")));
        assert!(truthy(&json!([])));
        assert!(truthy(&json!({})));
        assert!(truthy(&json!("x")));
    }
}
