//! Embedded SQLite persistence for Switchboard.
//!
//! # Why this module exists
//! The gateway must survive restarts without losing an in-flight conversation,
//! must be able to show who did what to a customer's case, and must keep one
//! central, queryable record of every message exchanged between callers and
//! agents ("Centralized Logging"). All of that lives in a single SQLite file
//! owned by [`Store`].
//!
//! # Tables
//! - `sessions` — one row per conversation session (upserted as a whole);
//!   `state` is opaque JSON owned by the conversation engine.
//! - `cases` — one row per case: owner, channel, priority, status, resolution.
//! - `case_audit` — the case's audit trail, keyed by `(case_id, seq)` where
//!   `seq` counts 1, 2, 3… per case.
//! - `logs` — the central message log, with indexes on
//!   `(session_id, timestamp)`, `(from_agent)`, `(to_agent)` and `(timestamp)`.
//!
//! The schema version is kept in `PRAGMA user_version`; migrations are applied
//! in order, each in its own transaction, and are idempotent across restarts.
//! A database written by a newer build (higher version) is refused.
//!
//! # Invariants
//! - **Time is an input.** The store never reads the clock; every timestamp is
//!   an `i64` of Unix milliseconds passed in by the caller, so tests are
//!   deterministic.
//! - **The audit trail is append-only**, enforced by the database itself:
//!   triggers abort any `UPDATE` or `DELETE` on `case_audit`. Every change to a
//!   case (creation, status, resolution, free-form actions) writes its audit
//!   entry in the same transaction as the change. As a consequence cases are
//!   never deleted either (the audit rows reference them).
//! - **The log is redacted at write time.** [`Store::append_log`] and
//!   [`Store::append_logs`] run [`redact`] over `message` and
//!   `metadata.error`, so card numbers never reach the disk.
//! - **Parameterised SQL only**: no caller-supplied text is ever spliced into
//!   a statement.
//!
//! # Concurrency
//! One connection sits behind a `std::sync::Mutex`; every method is short and
//! synchronous. Async callers use [`Store::run`], which moves the work to
//! tokio's blocking pool. A poisoned mutex is recovered rather than panicking:
//! a panic inside a transaction rolls it back when the transaction is dropped,
//! so the data stays consistent. The file uses WAL, so other processes can
//! read while the gateway writes.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{Type, Value as SqlValue};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of rows returned by [`Store::query_logs`].
pub const DEFAULT_LOG_LIMIT: usize = 1000;
/// Upper bound on rows returned by [`Store::query_logs`].
pub const MAX_LOG_LIMIT: usize = 10_000;

/// Schema migrations; entry `i` moves the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, cases with append-only audit, central log.
    r#"
    CREATE TABLE sessions (
        id            TEXT PRIMARY KEY NOT NULL,
        caller_id     TEXT NOT NULL,
        template      TEXT NOT NULL,
        case_id       TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        state         TEXT NOT NULL
    );
    CREATE INDEX sessions_expires ON sessions (expires_at_ms);

    CREATE TABLE cases (
        id            TEXT PRIMARY KEY NOT NULL,
        session_id    TEXT NOT NULL,
        customer_id   TEXT NOT NULL,
        owner         TEXT NOT NULL,
        channel       TEXT NOT NULL,
        priority      TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN
            ('new', 'in_progress', 'waiting_customer', 'resolved', 'escalated', 'closed')),
        resolution    TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE INDEX cases_session ON cases (session_id);
    CREATE INDEX cases_customer ON cases (customer_id);

    CREATE TABLE case_audit (
        case_id TEXT NOT NULL REFERENCES cases (id),
        seq     INTEGER NOT NULL,
        at_ms   INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT NOT NULL,
        PRIMARY KEY (case_id, seq)
    );
    CREATE TRIGGER case_audit_no_update BEFORE UPDATE ON case_audit
    BEGIN SELECT RAISE(ABORT, 'case audit is append-only'); END;
    CREATE TRIGGER case_audit_no_delete BEFORE DELETE ON case_audit
    BEGIN SELECT RAISE(ABORT, 'case audit is append-only'); END;

    CREATE TABLE logs (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL,
        timestamp  INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        log_type   TEXT NOT NULL,
        from_agent TEXT NOT NULL,
        to_agent   TEXT NOT NULL,
        message    TEXT NOT NULL,
        message_id TEXT,
        thread_id  TEXT,
        duration   INTEGER,
        success    INTEGER,
        error      TEXT
    );
    CREATE INDEX logs_session_time ON logs (session_id, timestamp);
    CREATE INDEX logs_from ON logs (from_agent);
    CREATE INDEX logs_to ON logs (to_agent);
    CREATE INDEX logs_time ON logs (timestamp);
    "#,
    // 2: remote sub-agents registered over the API, kept across restarts.
    r#"
    CREATE TABLE remote_agents (
        id               TEXT PRIMARY KEY NOT NULL,
        card             TEXT NOT NULL,
        registered_at_ms INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can go wrong in the store.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid transition for case {case_id}: {from} -> {to}")]
    InvalidTransition {
        case_id: String,
        from: CaseStatus,
        to: CaseStatus,
    },
    #[error("blocking task failed: {0}")]
    Join(String),
    /// The database was written by a newer build than this one.
    #[error("unsupported schema version {found} (this build knows up to {known})")]
    UnsupportedSchema { found: i64, known: i64 },
}

/// Returned by the `FromStr` impls of [`CaseStatus`] and [`LogType`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("unknown {kind}: {value:?}")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
}

// ---------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------

/// A persisted conversation session. `state` is opaque to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub caller_id: String,
    pub template: String,
    pub case_id: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
    pub state: serde_json::Value,
}

/// Result of [`Store::load_session`]. A session is `Active` while
/// `now_ms < expires_at_ms` and `Expired` from `expires_at_ms` on.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionLookup {
    Active(SessionRecord),
    Expired(SessionRecord),
    Missing,
}

/// Lifecycle of a case. See [`CaseStatus::can_transition_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    New,
    InProgress,
    WaitingCustomer,
    Resolved,
    Escalated,
    Closed,
}

impl CaseStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [CaseStatus; 6] = [
        CaseStatus::New,
        CaseStatus::InProgress,
        CaseStatus::WaitingCustomer,
        CaseStatus::Resolved,
        CaseStatus::Escalated,
        CaseStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::New => "new",
            CaseStatus::InProgress => "in_progress",
            CaseStatus::WaitingCustomer => "waiting_customer",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Escalated => "escalated",
            CaseStatus::Closed => "closed",
        }
    }

    /// Whether `self -> to` is an allowed change of status. A status never
    /// "transitions" to itself (that is a no-op, see [`Store::set_case_status`]).
    pub fn can_transition_to(self, to: CaseStatus) -> bool {
        use CaseStatus::*;
        matches!(
            (self, to),
            (New, InProgress | WaitingCustomer | Escalated | Closed)
                | (InProgress, WaitingCustomer | Resolved | Escalated | Closed)
                | (WaitingCustomer, InProgress | Resolved | Escalated | Closed)
                | (Resolved, InProgress | Closed | Escalated)
                | (Escalated, Closed)
        )
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaseStatus {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CaseStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "case status",
                value: s.to_owned(),
            })
    }
}

/// Input to [`Store::create_case`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCase {
    pub session_id: String,
    pub customer_id: String,
    pub owner: String,
    /// "text", "twilio", "webrtc", ...
    pub channel: String,
    pub priority: String,
}

/// A case with its full audit trail (oldest entry first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    pub id: String,
    pub session_id: String,
    pub customer_id: String,
    pub owner: String,
    pub channel: String,
    pub priority: String,
    pub status: CaseStatus,
    pub resolution: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub audit: Vec<AuditEntry>,
}

/// One immutable audit entry; `seq` counts 1, 2, 3… within its case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// Direction of a logged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogType {
    CallerToAgent,
    AgentToCaller,
    AgentToAgent,
    System,
}

impl LogType {
    pub const ALL: [LogType; 4] = [
        LogType::CallerToAgent,
        LogType::AgentToCaller,
        LogType::AgentToAgent,
        LogType::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogType::CallerToAgent => "caller_to_agent",
            LogType::AgentToCaller => "agent_to_caller",
            LogType::AgentToAgent => "agent_to_agent",
            LogType::System => "system",
        }
    }
}

impl fmt::Display for LogType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogType {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "log type",
                value: s.to_owned(),
            })
    }
}

/// One entry of the central message log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub id: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub session_id: String,
    #[serde(rename = "type")]
    pub log_type: LogType,
    pub from: String,
    pub to: String,
    pub message: String,
    pub metadata: LogMetadata,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogMetadata {
    pub message_id: Option<String>,
    pub thread_id: Option<String>,
    /// Milliseconds.
    pub duration: Option<i64>,
    pub success: Option<bool>,
    pub error: Option<String>,
}

/// Filters for [`Store::query_logs`]; all set filters must match.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub session_id: Option<String>,
    /// Matches entries whose `from` OR `to` equals this agent.
    pub agent: Option<String>,
    pub log_type: Option<LogType>,
    /// Inclusive lower bound on `timestamp`.
    pub from_ms: Option<i64>,
    /// Inclusive upper bound on `timestamp`.
    pub to_ms: Option<i64>,
    /// Default [`DEFAULT_LOG_LIMIT`], capped at [`MAX_LOG_LIMIT`].
    pub limit: Option<usize>,
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// A case's row (`id, session_id, customer_id, owner, channel, priority, status, resolution,
/// created_at_ms, updated_at_ms`), without its audit trail.
fn case_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Case> {
    Ok(Case {
        id: r.get(0)?,
        session_id: r.get(1)?,
        customer_id: r.get(2)?,
        owner: r.get(3)?,
        channel: r.get(4)?,
        priority: r.get(5)?,
        status: parse_col(r, 6)?,
        resolution: r.get(7)?,
        created_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
        audit: Vec::new(),
    })
}

/// Handle to the database; cheap to clone (all clones share one connection).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, creating parent
    /// directories, enabling WAL, and applying pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", parent.display())),
                ))
            })?;
        }
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A private, non-persistent database (tests, ephemeral runs).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Returns the resulting mode ("wal", or "memory" for in-memory dbs).
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Locks the connection, recovering from poisoning: any transaction that
    /// was open when a holder panicked was rolled back when it was dropped.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on tokio's blocking pool so async callers never block a
    /// worker thread. A panic inside `f` comes back as [`StoreError::Join`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    // ----- sessions --------------------------------------------------------

    /// Inserts or fully replaces the session with `s.id`.
    pub fn save_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let state = serde_json::to_string(&s.state)?;
        self.conn().execute(
            "INSERT INTO sessions (id, caller_id, template, case_id, created_at_ms,
                                   updated_at_ms, expires_at_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET
                caller_id = excluded.caller_id, template = excluded.template,
                case_id = excluded.case_id, created_at_ms = excluded.created_at_ms,
                updated_at_ms = excluded.updated_at_ms,
                expires_at_ms = excluded.expires_at_ms, state = excluded.state",
            params![
                s.id,
                s.caller_id,
                s.template,
                s.case_id,
                s.created_at_ms,
                s.updated_at_ms,
                s.expires_at_ms,
                state
            ],
        )?;
        Ok(())
    }

    /// Loads a session; `Expired` once `now_ms >= expires_at_ms`.
    pub fn load_session(&self, id: &str, now_ms: i64) -> Result<SessionLookup, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, caller_id, template, case_id, created_at_ms, updated_at_ms,
                        expires_at_ms, state
                 FROM sessions WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        SessionRecord {
                            id: r.get(0)?,
                            caller_id: r.get(1)?,
                            template: r.get(2)?,
                            case_id: r.get(3)?,
                            created_at_ms: r.get(4)?,
                            updated_at_ms: r.get(5)?,
                            expires_at_ms: r.get(6)?,
                            state: serde_json::Value::Null,
                        },
                        r.get::<_, String>(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((mut rec, state)) = row else {
            return Ok(SessionLookup::Missing);
        };
        rec.state = serde_json::from_str(&state)?;
        Ok(if now_ms < rec.expires_at_ms {
            SessionLookup::Active(rec)
        } else {
            SessionLookup::Expired(rec)
        })
    }

    /// Deletes sessions whose expiry lies more than `keep_for_ms` before
    /// `now_ms` (strictly: `expires_at_ms < now_ms - keep_for_ms`; a negative
    /// `keep_for_ms` counts as 0). Returns how many were deleted.
    pub fn purge_expired_sessions(
        &self,
        now_ms: i64,
        keep_for_ms: i64,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(keep_for_ms.max(0));
        let n = self
            .conn()
            .execute("DELETE FROM sessions WHERE expires_at_ms < ?1", [cutoff])?;
        Ok(n)
    }

    // ----- remote agents ---------------------------------------------------

    /// Keeps a registered remote agent's card (JSON) so a restart registers it again.
    pub fn save_remote_agent(
        &self,
        id: &str,
        card: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO remote_agents (id, card, registered_at_ms) VALUES (?1, ?2, ?3)",
            params![id, serde_json::to_string(card)?, now_ms],
        )?;
        Ok(())
    }

    pub fn delete_remote_agent(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM remote_agents WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Registered remote agents' cards, oldest first.
    pub fn remote_agents(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT card FROM remote_agents ORDER BY registered_at_ms, id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = vec![];
        for r in rows {
            out.push(serde_json::from_str(&r?)?);
        }
        Ok(out)
    }

    /// Deletes central-log entries written before `before_ms`. Returns how many.
    pub fn purge_logs_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM logs WHERE timestamp < ?1", [before_ms])?)
    }

    // ----- cases -----------------------------------------------------------

    /// Creates a case in status `New` with a `created` audit entry.
    pub fn create_case(&self, c: &NewCase, now_ms: i64) -> Result<Case, StoreError> {
        let id = format!("case_{}", uuid::Uuid::new_v4().simple());
        let detail = serde_json::json!({
            "session_id": c.session_id,
            "customer_id": c.customer_id,
            "owner": c.owner,
            "channel": c.channel,
            "priority": c.priority,
        });
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO cases (id, session_id, customer_id, owner, channel, priority,
                                status, resolution, created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?8)",
            params![
                id,
                c.session_id,
                c.customer_id,
                c.owner,
                c.channel,
                c.priority,
                CaseStatus::New.as_str(),
                now_ms
            ],
        )?;
        let entry = append_audit(&tx, &id, &c.owner, "created", &detail, now_ms)?;
        tx.commit()?;
        Ok(Case {
            id,
            session_id: c.session_id.clone(),
            customer_id: c.customer_id.clone(),
            owner: c.owner.clone(),
            channel: c.channel.clone(),
            priority: c.priority.clone(),
            status: CaseStatus::New,
            resolution: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            audit: vec![entry],
        })
    }

    /// Moves a case to `to`, appending a `status` audit entry
    /// (`{from, to, note}`) in the same transaction. Setting the current
    /// status again is a no-op that writes nothing. Disallowed moves fail
    /// with [`StoreError::InvalidTransition`]; unknown cases with `NotFound`.
    pub fn set_case_status(
        &self,
        case_id: &str,
        to: CaseStatus,
        actor: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from = current_status(&tx, case_id)?;
        if from == to {
            return Ok(());
        }
        if !from.can_transition_to(to) {
            return Err(StoreError::InvalidTransition {
                case_id: case_id.to_owned(),
                from,
                to,
            });
        }
        tx.execute(
            "UPDATE cases SET status = ?2, updated_at_ms = ?3 WHERE id = ?1",
            params![case_id, to.as_str(), now_ms],
        )?;
        let detail = serde_json::json!({ "from": from, "to": to, "note": note });
        append_audit(&tx, case_id, actor, "status", &detail, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// Appends a free-form audit entry (e.g. "note", "transfer", "tool_call")
    /// and bumps the case's `updated_at_ms`.
    pub fn append_case_action(
        &self,
        case_id: &str,
        actor: &str,
        action: &str,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        touch_case(&tx, case_id, now_ms)?;
        append_audit(&tx, case_id, actor, action, detail, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the case's resolution text; audited as `resolution` with
    /// `{resolution, previous}`. Allowed in any status.
    pub fn set_case_resolution(
        &self,
        case_id: &str,
        resolution: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT resolution FROM cases WHERE id = ?1",
                [case_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
        tx.execute(
            "UPDATE cases SET resolution = ?2, updated_at_ms = ?3 WHERE id = ?1",
            params![case_id, resolution, now_ms],
        )?;
        let detail = serde_json::json!({ "resolution": resolution, "previous": previous });
        append_audit(&tx, case_id, actor, "resolution", &detail, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// The case with its whole audit trail, or `None` if unknown.
    /// The `limit` most recently updated cases, without their audit trails.
    pub fn recent_cases(&self, limit: usize) -> Result<Vec<Case>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, session_id, customer_id, owner, channel, priority, status,
                    resolution, created_at_ms, updated_at_ms
             FROM cases ORDER BY updated_at_ms DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], case_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get_case(&self, case_id: &str) -> Result<Option<Case>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, session_id, customer_id, owner, channel, priority, status,
                        resolution, created_at_ms, updated_at_ms
                 FROM cases WHERE id = ?1",
                [case_id],
                case_row,
            )
            .optional()?;
        let Some(mut case) = row else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at_ms, actor, action, detail FROM case_audit
             WHERE case_id = ?1 ORDER BY seq",
        )?;
        let raw = stmt
            .query_map([case_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (seq, at_ms, actor, action, detail) in raw {
            case.audit.push(AuditEntry {
                seq,
                at_ms,
                actor,
                action,
                detail: serde_json::from_str(&detail)?,
            });
        }
        Ok(Some(case))
    }

    // ----- central log -----------------------------------------------------

    /// Appends one log entry (redacted; see [`redact`]).
    pub fn append_log(&self, e: &LogEntry) -> Result<(), StoreError> {
        self.append_logs(std::slice::from_ref(e))
    }

    /// Appends entries in one transaction, in slice order (redacted).
    pub fn append_logs(&self, es: &[LogEntry]) -> Result<(), StoreError> {
        if es.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (id, timestamp, session_id, log_type, from_agent, to_agent,
                                   message, message_id, thread_id, duration, success, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for e in es {
                let m = &e.metadata;
                stmt.execute(params![
                    e.id,
                    e.timestamp,
                    e.session_id,
                    e.log_type.as_str(),
                    e.from,
                    e.to,
                    redact(&e.message),
                    m.message_id,
                    m.thread_id,
                    m.duration,
                    m.success,
                    m.error.as_deref().map(redact),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Entries matching every set filter, ordered by timestamp then insertion.
    pub fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let mut sql = String::from(
            "SELECT id, timestamp, session_id, log_type, from_agent, to_agent, message,
                    message_id, thread_id, duration, success, error
             FROM logs WHERE 1 = 1",
        );
        // Only fixed SQL fragments are appended; every value is a parameter.
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(s) = &q.session_id {
            args.push(SqlValue::Text(s.clone()));
            sql.push_str(&format!(" AND session_id = ?{}", args.len()));
        }
        if let Some(a) = &q.agent {
            args.push(SqlValue::Text(a.clone()));
            let n = args.len();
            sql.push_str(&format!(" AND (from_agent = ?{n} OR to_agent = ?{n})"));
        }
        if let Some(t) = q.log_type {
            args.push(SqlValue::Text(t.as_str().to_owned()));
            sql.push_str(&format!(" AND log_type = ?{}", args.len()));
        }
        if let Some(from) = q.from_ms {
            args.push(SqlValue::Integer(from));
            sql.push_str(&format!(" AND timestamp >= ?{}", args.len()));
        }
        if let Some(to) = q.to_ms {
            args.push(SqlValue::Integer(to));
            sql.push_str(&format!(" AND timestamp <= ?{}", args.len()));
        }
        let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT).min(MAX_LOG_LIMIT);
        // `limit <= MAX_LOG_LIMIT`, so it always fits in an i64.
        args.push(SqlValue::Integer(limit as i64));
        sql.push_str(&format!(" ORDER BY timestamp, seq LIMIT ?{}", args.len()));

        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(LogEntry {
                    id: r.get(0)?,
                    timestamp: r.get(1)?,
                    session_id: r.get(2)?,
                    log_type: parse_col(r, 3)?,
                    from: r.get(4)?,
                    to: r.get(5)?,
                    message: r.get(6)?,
                    metadata: LogMetadata {
                        message_id: r.get(7)?,
                        thread_id: r.get(8)?,
                        duration: r.get(9)?,
                        success: r.get(10)?,
                        error: r.get(11)?,
                    },
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    // `found` is within 0..=MIGRATIONS.len() here, so the cast is lossless.
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(())
}

/// Parses a TEXT column into an enum, reporting bad data as a conversion error.
fn parse_col<T>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr<Err = ParseEnumError>,
{
    let s: String = r.get(idx)?;
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn current_status(conn: &Connection, case_id: &str) -> Result<CaseStatus, StoreError> {
    conn.query_row("SELECT status FROM cases WHERE id = ?1", [case_id], |r| {
        parse_col(r, 0)
    })
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))
}

fn touch_case(conn: &Connection, case_id: &str, now_ms: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE cases SET updated_at_ms = ?2 WHERE id = ?1",
        params![case_id, now_ms],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("case {case_id}")));
    }
    Ok(())
}

/// Appends the next audit entry of `case_id`; must run inside a write
/// transaction so that `seq` allocation cannot race.
fn append_audit(
    conn: &Connection,
    case_id: &str,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
    now_ms: i64,
) -> Result<AuditEntry, StoreError> {
    let detail = redact_json(detail);
    let seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM case_audit WHERE case_id = ?1",
        [case_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO case_audit (case_id, seq, at_ms, actor, action, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            case_id,
            seq,
            now_ms,
            actor,
            action,
            serde_json::to_string(&detail)?
        ],
    )?;
    Ok(AuditEntry {
        seq,
        at_ms: now_ms,
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
    })
}

// ---------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------

/// Masks payment data in free text before it is stored: card numbers (in digits or spoken as
/// words) and security codes (see [`crate::redact`]).
pub fn redact(text: &str) -> String {
    crate::redact::redact(text).into_owned()
}

/// [`redact`] on every string inside a JSON value (case notes and audit details).
fn redact_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(redact(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact_json).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), redact_json(v))).collect())
        }
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(id: &str, expires_at_ms: i64) -> SessionRecord {
        SessionRecord {
            id: id.to_owned(),
            caller_id: "+15550001111".to_owned(),
            template: "support".to_owned(),
            case_id: "case_x".to_owned(),
            created_at_ms: 1_000,
            updated_at_ms: 1_000,
            expires_at_ms,
            state: json!({"step": "greeting", "slots": {"name": null}}),
        }
    }

    fn new_case() -> NewCase {
        NewCase {
            session_id: "sess-1".to_owned(),
            customer_id: "cust-1".to_owned(),
            owner: "agent-billing".to_owned(),
            channel: "twilio".to_owned(),
            priority: "normal".to_owned(),
        }
    }

    fn log(id: &str, ts: i64, session: &str, t: LogType, from: &str, to: &str) -> LogEntry {
        LogEntry {
            id: id.to_owned(),
            timestamp: ts,
            session_id: session.to_owned(),
            log_type: t,
            from: from.to_owned(),
            to: to.to_owned(),
            message: format!("message {id}"),
            metadata: LogMetadata::default(),
        }
    }

    fn ids(entries: &[LogEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.id.as_str()).collect()
    }

    // ----- sessions ----------------------------------------------------------

    #[test]
    fn session_upsert_and_load() {
        let store = Store::open_in_memory().unwrap();
        let mut s = session("s1", 10_000);
        store.save_session(&s).unwrap();
        assert_eq!(
            store.load_session("s1", 5_000).unwrap(),
            SessionLookup::Active(s.clone())
        );

        s.updated_at_ms = 2_000;
        s.expires_at_ms = 20_000;
        s.template = "billing".to_owned();
        s.state = json!({"step": "collect", "n": [1, 2, 3]});
        store.save_session(&s).unwrap();
        assert_eq!(
            store.load_session("s1", 15_000).unwrap(),
            SessionLookup::Active(s.clone())
        );
        let count: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn session_expired_and_missing() {
        let store = Store::open_in_memory().unwrap();
        let s = session("s1", 10_000);
        store.save_session(&s).unwrap();
        assert_eq!(
            store.load_session("s1", 9_999).unwrap(),
            SessionLookup::Active(s.clone())
        );
        assert_eq!(
            store.load_session("s1", 10_000).unwrap(),
            SessionLookup::Expired(s.clone())
        );
        assert_eq!(
            store.load_session("s1", 99_999).unwrap(),
            SessionLookup::Expired(s)
        );
        assert_eq!(
            store.load_session("nope", 0).unwrap(),
            SessionLookup::Missing
        );
    }

    #[test]
    fn purge_expired_sessions_keeps_grace_period() {
        let store = Store::open_in_memory().unwrap();
        store.save_session(&session("old", 1_000)).unwrap();
        store.save_session(&session("edge", 5_000)).unwrap();
        store.save_session(&session("recent", 8_000)).unwrap();
        store.save_session(&session("live", 50_000)).unwrap();
        // cutoff = 10_000 - 5_000 = 5_000: only expiries strictly before go.
        assert_eq!(store.purge_expired_sessions(10_000, 5_000).unwrap(), 1);
        assert_eq!(
            store.load_session("old", 10_000).unwrap(),
            SessionLookup::Missing
        );
        assert!(matches!(
            store.load_session("edge", 10_000).unwrap(),
            SessionLookup::Expired(_)
        ));
        assert_eq!(store.purge_expired_sessions(10_000, 0).unwrap(), 2);
        assert!(matches!(
            store.load_session("live", 10_000).unwrap(),
            SessionLookup::Active(_)
        ));
        assert_eq!(store.purge_expired_sessions(10_000, 0).unwrap(), 0);
        // Negative grace behaves as zero: never deletes live sessions.
        assert_eq!(store.purge_expired_sessions(10_000, -1_000_000).unwrap(), 0);
    }

    // ----- restart survival --------------------------------------------------

    #[test]
    fn data_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/x.db");
        let s = session("s1", 100_000);
        let case_id;
        {
            let store = Store::open(&path).unwrap();
            store.save_session(&s).unwrap();
            let case = store.create_case(&new_case(), 1_000).unwrap();
            case_id = case.id.clone();
            store
                .set_case_status(
                    &case_id,
                    CaseStatus::InProgress,
                    "agent-billing",
                    "picked up",
                    2_000,
                )
                .unwrap();
            store
                .append_case_action(
                    &case_id,
                    "agent-billing",
                    "note",
                    &json!({"text": "hi"}),
                    3_000,
                )
                .unwrap();
            store
                .append_logs(&[
                    log(
                        "l1",
                        1_000,
                        "s1",
                        LogType::CallerToAgent,
                        "caller",
                        "router",
                    ),
                    log(
                        "l2",
                        1_001,
                        "s1",
                        LogType::AgentToCaller,
                        "router",
                        "caller",
                    ),
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);

        assert_eq!(
            store.load_session("s1", 50_000).unwrap(),
            SessionLookup::Active(s)
        );
        let case = store.get_case(&case_id).unwrap().unwrap();
        assert_eq!(case.status, CaseStatus::InProgress);
        assert_eq!(case.updated_at_ms, 3_000);
        let actions: Vec<&str> = case.audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["created", "status", "note"]);
        assert_eq!(
            case.audit.iter().map(|a| a.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            case.audit[1].detail,
            json!({"from": "new", "to": "in_progress", "note": "picked up"})
        );
        let logs = store.query_logs(&LogQuery::default()).unwrap();
        assert_eq!(ids(&logs), ["l1", "l2"]);
        assert_eq!(
            logs[0],
            log(
                "l1",
                1_000,
                "s1",
                LogType::CallerToAgent,
                "caller",
                "router"
            )
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        drop(Store::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        match Store::open(&path) {
            Err(StoreError::UnsupportedSchema { found, known }) => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert_eq!(known, SCHEMA_VERSION);
            }
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
    }

    // ----- cases ---------------------------------------------------------------

    #[test]
    fn create_case_starts_new_with_created_audit() {
        let store = Store::open_in_memory().unwrap();
        let case = store.create_case(&new_case(), 1_000).unwrap();
        assert!(case.id.starts_with("case_"));
        assert_eq!(case.id.len(), "case_".len() + 32);
        assert!(
            case.id["case_".len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_eq!(case.status, CaseStatus::New);
        assert_eq!(case.resolution, None);
        assert_eq!(case.created_at_ms, 1_000);
        assert_eq!(case.updated_at_ms, 1_000);
        assert_eq!(
            case.audit,
            vec![AuditEntry {
                seq: 1,
                at_ms: 1_000,
                actor: "agent-billing".to_owned(),
                action: "created".to_owned(),
                detail: json!({
                    "session_id": "sess-1", "customer_id": "cust-1",
                    "owner": "agent-billing", "channel": "twilio", "priority": "normal"
                }),
            }]
        );
        assert_eq!(store.get_case(&case.id).unwrap(), Some(case.clone()));
        let other = store.create_case(&new_case(), 1_000).unwrap();
        assert_ne!(other.id, case.id);
        assert_eq!(store.get_case("case_missing").unwrap(), None);
    }

    /// A known path from `New` to each status, using allowed moves only.
    fn path_to(status: CaseStatus) -> Vec<CaseStatus> {
        use CaseStatus::*;
        match status {
            New => vec![],
            InProgress => vec![InProgress],
            WaitingCustomer => vec![WaitingCustomer],
            Resolved => vec![InProgress, Resolved],
            Escalated => vec![Escalated],
            Closed => vec![Closed],
        }
    }

    #[test]
    fn transition_table_matches_spec() {
        use CaseStatus::*;
        let allowed = [
            (New, InProgress),
            (New, WaitingCustomer),
            (New, Escalated),
            (New, Closed),
            (InProgress, WaitingCustomer),
            (InProgress, Resolved),
            (InProgress, Escalated),
            (InProgress, Closed),
            (WaitingCustomer, InProgress),
            (WaitingCustomer, Resolved),
            (WaitingCustomer, Escalated),
            (WaitingCustomer, Closed),
            (Resolved, InProgress),
            (Resolved, Closed),
            (Resolved, Escalated),
            (Escalated, Closed),
        ];
        for from in CaseStatus::ALL {
            for to in CaseStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn every_transition_through_the_store() {
        let store = Store::open_in_memory().unwrap();
        let mut allowed_seen = 0;
        let mut forbidden_seen = 0;
        for from in CaseStatus::ALL {
            for to in CaseStatus::ALL {
                if from == to {
                    continue;
                }
                let case = store.create_case(&new_case(), 0).unwrap();
                for (t, step) in (1..).zip(path_to(from)) {
                    store
                        .set_case_status(&case.id, step, "setup", "", t)
                        .unwrap();
                }
                let before = store.get_case(&case.id).unwrap().unwrap();
                assert_eq!(before.status, from);
                let res = store.set_case_status(&case.id, to, "agent-x", "why", 100);
                let after = store.get_case(&case.id).unwrap().unwrap();
                if from.can_transition_to(to) {
                    allowed_seen += 1;
                    res.unwrap();
                    assert_eq!(after.status, to);
                    assert_eq!(after.updated_at_ms, 100);
                    assert_eq!(after.audit.len(), before.audit.len() + 1);
                    let last = after.audit.last().unwrap();
                    assert_eq!(last.seq, before.audit.len() as i64 + 1);
                    assert_eq!(last.actor, "agent-x");
                    assert_eq!(last.action, "status");
                    assert_eq!(last.at_ms, 100);
                    assert_eq!(
                        last.detail,
                        json!({"from": from.as_str(), "to": to.as_str(), "note": "why"})
                    );
                } else {
                    forbidden_seen += 1;
                    match res {
                        Err(StoreError::InvalidTransition {
                            case_id,
                            from: f,
                            to: t,
                        }) => {
                            assert_eq!(case_id, case.id);
                            assert_eq!((f, t), (from, to));
                        }
                        other => {
                            panic!("{from} -> {to}: expected InvalidTransition, got {other:?}")
                        }
                    }
                    assert_eq!(after, before, "{from} -> {to} must change nothing");
                }
            }
        }
        assert_eq!(allowed_seen, 16);
        assert_eq!(forbidden_seen, 14);
    }

    #[test]
    fn invalid_transition_error_message() {
        let err = StoreError::InvalidTransition {
            case_id: "case_1".to_owned(),
            from: CaseStatus::Closed,
            to: CaseStatus::New,
        };
        assert_eq!(
            err.to_string(),
            "invalid transition for case case_1: closed -> new"
        );
    }

    #[test]
    fn same_status_is_a_silent_noop() {
        let store = Store::open_in_memory().unwrap();
        let case = store.create_case(&new_case(), 1_000).unwrap();
        store
            .set_case_status(&case.id, CaseStatus::New, "a", "again", 2_000)
            .unwrap();
        assert_eq!(store.get_case(&case.id).unwrap().unwrap(), case);
        store
            .set_case_status(&case.id, CaseStatus::Closed, "a", "", 3_000)
            .unwrap();
        let closed = store.get_case(&case.id).unwrap().unwrap();
        store
            .set_case_status(&case.id, CaseStatus::Closed, "a", "", 4_000)
            .unwrap();
        assert_eq!(store.get_case(&case.id).unwrap().unwrap(), closed);
    }

    #[test]
    fn unknown_case_is_not_found() {
        let store = Store::open_in_memory().unwrap();
        assert!(matches!(
            store.set_case_status("case_nope", CaseStatus::Closed, "a", "", 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.append_case_action("case_nope", "a", "note", &json!({}), 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.set_case_resolution("case_nope", "done", "a", 1),
            Err(StoreError::NotFound(_))
        ));
        let n: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM case_audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn actions_and_resolution_are_audited() {
        let store = Store::open_in_memory().unwrap();
        let case = store.create_case(&new_case(), 1_000).unwrap();
        store
            .append_case_action(
                &case.id,
                "agent-tech",
                "transfer",
                &json!({"to": "tier2"}),
                2_000,
            )
            .unwrap();
        store
            .set_case_resolution(&case.id, "refund issued", "agent-billing", 3_000)
            .unwrap();
        store
            .set_case_resolution(&case.id, "refund + credit", "supervisor", 4_000)
            .unwrap();
        let got = store.get_case(&case.id).unwrap().unwrap();
        assert_eq!(got.resolution.as_deref(), Some("refund + credit"));
        assert_eq!(got.updated_at_ms, 4_000);
        assert_eq!(got.status, CaseStatus::New);
        assert_eq!(got.audit.len(), 4);
        assert_eq!(
            got.audit[1],
            AuditEntry {
                seq: 2,
                at_ms: 2_000,
                actor: "agent-tech".to_owned(),
                action: "transfer".to_owned(),
                detail: json!({"to": "tier2"}),
            }
        );
        assert_eq!(
            got.audit[2].detail,
            json!({"resolution": "refund issued", "previous": null})
        );
        assert_eq!(got.audit[2].action, "resolution");
        assert_eq!(got.audit[3].actor, "supervisor");
        assert_eq!(
            got.audit[3].detail,
            json!({"resolution": "refund + credit", "previous": "refund issued"})
        );
    }

    #[test]
    fn audit_is_append_only_in_the_database() {
        let store = Store::open_in_memory().unwrap();
        let case = store.create_case(&new_case(), 1_000).unwrap();
        let conn = store.conn();
        let err = conn
            .execute("UPDATE case_audit SET actor = 'mallory'", [])
            .unwrap_err();
        assert!(
            err.to_string().contains("case audit is append-only"),
            "{err}"
        );
        let err = conn.execute("DELETE FROM case_audit", []).unwrap_err();
        assert!(
            err.to_string().contains("case audit is append-only"),
            "{err}"
        );
        // The case itself cannot be deleted out from under its audit trail.
        assert!(conn.execute("DELETE FROM cases", []).is_err());
        drop(conn);
        assert_eq!(store.get_case(&case.id).unwrap().unwrap(), case);
    }

    #[test]
    fn case_status_strings_and_serde() {
        for s in CaseStatus::ALL {
            assert_eq!(s.as_str().parse::<CaseStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(CaseStatus::WaitingCustomer.as_str(), "waiting_customer");
        assert_eq!(
            "Closed".parse::<CaseStatus>(),
            Err(ParseEnumError {
                kind: "case status",
                value: "Closed".to_owned()
            })
        );
    }

    #[test]
    fn corrupt_status_is_an_error_not_a_panic() {
        let store = Store::open_in_memory().unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO logs (id, timestamp, session_id, log_type, from_agent, to_agent, message)
                 VALUES ('bad', 1, 's', 'shouting', 'a', 'b', 'm')",
                [],
            )
            .unwrap();
        assert!(matches!(
            store.query_logs(&LogQuery::default()),
            Err(StoreError::Sqlite(
                rusqlite::Error::FromSqlConversionFailure(3, _, _)
            ))
        ));
    }

    // ----- logs ------------------------------------------------------------------

    fn seeded_logs() -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .append_logs(&[
                log("a1", 100, "s1", LogType::CallerToAgent, "caller", "router"),
                log("a2", 200, "s1", LogType::AgentToAgent, "router", "billing"),
                log("a3", 300, "s1", LogType::AgentToCaller, "billing", "caller"),
                log("b1", 150, "s2", LogType::CallerToAgent, "caller", "router"),
                log("b2", 250, "s2", LogType::AgentToAgent, "router", "tech"),
                log("b3", 300, "s2", LogType::System, "system", "tech"),
            ])
            .unwrap();
        store
    }

    #[test]
    fn log_roundtrip_with_metadata() {
        let store = Store::open_in_memory().unwrap();
        let mut e = log("m1", 42, "s1", LogType::AgentToAgent, "router", "billing");
        e.metadata = LogMetadata {
            message_id: Some("msg-1".to_owned()),
            thread_id: Some("thr-1".to_owned()),
            duration: Some(1234),
            success: Some(false),
            error: Some("timeout".to_owned()),
        };
        store.append_log(&e).unwrap();
        assert_eq!(store.query_logs(&LogQuery::default()).unwrap(), vec![e]);
        store.append_logs(&[]).unwrap();
        assert_eq!(store.query_logs(&LogQuery::default()).unwrap().len(), 1);
    }

    #[test]
    fn log_query_orders_by_time_then_insertion() {
        let store = seeded_logs();
        let all = store.query_logs(&LogQuery::default()).unwrap();
        assert_eq!(ids(&all), ["a1", "b1", "a2", "b2", "a3", "b3"]);
    }

    #[test]
    fn log_query_by_session() {
        let store = seeded_logs();
        let q = LogQuery {
            session_id: Some("s2".to_owned()),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["b1", "b2", "b3"]);
        let q = LogQuery {
            session_id: Some("nope".to_owned()),
            ..Default::default()
        };
        assert!(store.query_logs(&q).unwrap().is_empty());
    }

    #[test]
    fn log_query_by_agent_matches_from_or_to() {
        let store = seeded_logs();
        let q = LogQuery {
            agent: Some("billing".to_owned()),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["a2", "a3"]);
        let q = LogQuery {
            agent: Some("tech".to_owned()),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["b2", "b3"]);
        let q = LogQuery {
            agent: Some("router".to_owned()),
            ..Default::default()
        };
        assert_eq!(
            ids(&store.query_logs(&q).unwrap()),
            ["a1", "b1", "a2", "b2"]
        );
        // Injection attempts are plain values.
        let q = LogQuery {
            agent: Some("x' OR '1'='1".to_owned()),
            ..Default::default()
        };
        assert!(store.query_logs(&q).unwrap().is_empty());
    }

    #[test]
    fn log_query_by_type() {
        let store = seeded_logs();
        let q = LogQuery {
            log_type: Some(LogType::CallerToAgent),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["a1", "b1"]);
        let q = LogQuery {
            log_type: Some(LogType::System),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["b3"]);
    }

    #[test]
    fn log_query_time_range_is_inclusive() {
        let store = seeded_logs();
        let q = LogQuery {
            from_ms: Some(150),
            to_ms: Some(250),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["b1", "a2", "b2"]);
        let q = LogQuery {
            from_ms: Some(300),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["a3", "b3"]);
        let q = LogQuery {
            to_ms: Some(100),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["a1"]);
        let q = LogQuery {
            from_ms: Some(301),
            ..Default::default()
        };
        assert!(store.query_logs(&q).unwrap().is_empty());
    }

    #[test]
    fn log_query_combined_filters() {
        let store = seeded_logs();
        let q = LogQuery {
            session_id: Some("s1".to_owned()),
            agent: Some("router".to_owned()),
            log_type: Some(LogType::AgentToAgent),
            from_ms: Some(200),
            to_ms: Some(200),
            limit: None,
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["a2"]);
        let q = LogQuery {
            session_id: Some("s2".to_owned()),
            agent: Some("caller".to_owned()),
            from_ms: Some(100),
            to_ms: Some(300),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["b1"]);
        let q = LogQuery {
            session_id: Some("s1".to_owned()),
            log_type: Some(LogType::System),
            ..Default::default()
        };
        assert!(store.query_logs(&q).unwrap().is_empty());
    }

    #[test]
    fn log_query_limit_default_and_cap() {
        let store = seeded_logs();
        let q = LogQuery {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(ids(&store.query_logs(&q).unwrap()), ["a1", "b1"]);
        let q = LogQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert!(store.query_logs(&q).unwrap().is_empty());

        let store = Store::open_in_memory().unwrap();
        let many: Vec<LogEntry> = (0..10_050)
            .map(|i| log(&format!("e{i}"), i, "s", LogType::System, "system", "x"))
            .collect();
        store.append_logs(&many).unwrap();
        assert_eq!(
            store.query_logs(&LogQuery::default()).unwrap().len(),
            DEFAULT_LOG_LIMIT
        );
        let q = LogQuery {
            limit: Some(usize::MAX),
            ..Default::default()
        };
        let capped = store.query_logs(&q).unwrap();
        assert_eq!(capped.len(), MAX_LOG_LIMIT);
        assert_eq!(capped.last().unwrap().id, "e9999");
    }

    #[test]
    fn append_logs_is_one_transaction() {
        let store = Store::open_in_memory().unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER reject_bad BEFORE INSERT ON logs WHEN NEW.id = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'rejected'); END;",
            )
            .unwrap();
        let batch = [
            log("ok1", 1, "s", LogType::System, "system", "x"),
            log("bad", 2, "s", LogType::System, "system", "x"),
        ];
        assert!(store.append_logs(&batch).is_err());
        assert!(store.query_logs(&LogQuery::default()).unwrap().is_empty());
    }

    #[test]
    fn log_entry_json_shape() {
        let mut e = log("m1", 42, "s1", LogType::CallerToAgent, "caller", "router");
        e.metadata.message_id = Some("msg".to_owned());
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "m1", "timestamp": 42, "sessionId": "s1", "type": "caller_to_agent",
                "from": "caller", "to": "router", "message": "message m1",
                "metadata": {"messageId": "msg", "threadId": null, "duration": null,
                             "success": null, "error": null}
            })
        );
        assert_eq!(serde_json::from_value::<LogEntry>(v).unwrap(), e);
        for t in LogType::ALL {
            assert_eq!(t.as_str().parse::<LogType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        assert!("CallerToAgent".parse::<LogType>().is_err());
    }

    #[test]
    fn stored_logs_are_redacted() {
        let store = Store::open_in_memory().unwrap();
        let mut e = log("r1", 1, "s1", LogType::CallerToAgent, "caller", "billing");
        e.message = "my card is 4111 1111 1111 1111 and cvv 123, pay 125.50".to_owned();
        e.metadata.error = Some("declined card 5500-0000-0000-0004".to_owned());
        store.append_log(&e).unwrap();
        let raw: (String, String) = store
            .conn()
            .query_row("SELECT message, error FROM logs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            raw.0,
            "my card is [card ending 1111] and cvv [security code], pay 125.50"
        );
        assert_eq!(raw.1, "declined card [card ending 0004]");
        let got = store.query_logs(&LogQuery::default()).unwrap();
        assert_eq!(got[0].message, raw.0);
        assert_eq!(got[0].metadata.error.as_deref(), Some(raw.1.as_str()));
    }

    #[test]
    fn audit_details_are_redacted() {
        let store = Store::open_in_memory().unwrap();
        let case = store.create_case(&new_case(), 1).unwrap();
        store
            .append_case_action(
                &case.id,
                "master",
                "note",
                &json!({"said": ["card 4111 1111 1111 1111"], "n": 3}),
                2,
            )
            .unwrap();
        let got = store.get_case(&case.id).unwrap().unwrap();
        let last = got.audit.last().unwrap();
        assert_eq!(
            last.detail,
            json!({"said": ["card [card ending 1111]"], "n": 3})
        );
    }

    #[test]
    fn old_logs_are_purged() {
        let store = Store::open_in_memory().unwrap();
        for (i, t) in [100, 200, 300].into_iter().enumerate() {
            store
                .append_log(&log(&format!("l{i}"), t, "s", LogType::System, "a", "b"))
                .unwrap();
        }
        assert_eq!(store.purge_logs_before(250).unwrap(), 2);
        let left = store.query_logs(&LogQuery::default()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].timestamp, 300);
    }

    // ----- concurrency ---------------------------------------------------------------

    #[tokio::test]
    async fn run_executes_on_blocking_pool() {
        let store = Store::open_in_memory().unwrap();
        let s = session("s1", 10_000);
        let saved = s.clone();
        store.run(move |st| st.save_session(&saved)).await.unwrap();
        let got = store.run(|st| st.load_session("s1", 1)).await.unwrap();
        assert_eq!(got, SessionLookup::Active(s));
        let err = store
            .run(|st| st.set_case_status("case_nope", CaseStatus::Closed, "a", "", 1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        let err = store
            .run(|_| -> Result<(), StoreError> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Join(_)));
        // Many concurrent writers through clones.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let st = store.clone();
                tokio::spawn(async move {
                    st.run(move |s| {
                        s.append_log(&log(&format!("c{i}"), i, "s", LogType::System, "sys", "x"))
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(store.query_logs(&LogQuery::default()).unwrap().len(), 8);
    }

    #[test]
    fn poisoned_mutex_is_recovered_and_tx_rolled_back() {
        let store = Store::open_in_memory().unwrap();
        let st = store.clone();
        let joined = std::thread::spawn(move || {
            let mut conn = st.conn();
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO logs (id, timestamp, session_id, log_type, from_agent, to_agent, message)
                 VALUES ('half', 1, 's', 'system', 'a', 'b', 'm')",
                [],
            )
            .unwrap();
            panic!("crash mid-transaction");
        })
        .join();
        assert!(joined.is_err());
        assert!(store.conn.is_poisoned());
        assert!(store.query_logs(&LogQuery::default()).unwrap().is_empty());
        store
            .append_log(&log("after", 2, "s", LogType::System, "a", "b"))
            .unwrap();
        assert_eq!(
            ids(&store.query_logs(&LogQuery::default()).unwrap()),
            ["after"]
        );
    }
}
