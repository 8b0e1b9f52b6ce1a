//! The state database (SQLite): incidents with their history, restarts for the restart budget,
//! alerts, the last known state of each service, maintenance windows and the audit log.
//!
//! Times are wall-clock Unix milliseconds, for display and for carrying budgets across a restart
//! of selfheal; decisions use the monotonic clock. Stored verdict and status strings are a
//! contract: add new values, never change the meaning of old ones. The schema version lives in
//! `PRAGMA user_version` and each migration runs once, in a transaction.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

mod admin;
mod alerts;

pub use admin::{AuditRow, PauseRow};
pub use alerts::{AlertRow, DueDelivery, NewMessage, PendingRoute, SpoolItem, SpoolState};

/// Migrations in order; entry N brings the schema from version N to N + 1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    unit TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    problem TEXT NOT NULL,
    -- verdict that needed the admin, or the closing verdict of a quiet incident
    verdict TEXT,
    reason TEXT,
    -- how an incident that needed the admin ended: recovered, healed, ...
    resolution TEXT,
    -- none | pending | sent | failed
    alert_status TEXT NOT NULL DEFAULT 'none'
);
CREATE INDEX incidents_service ON incidents(service, closed_ms);
CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX incident_events_incident ON incident_events(incident_id);
CREATE TABLE restarts (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    manual INTEGER NOT NULL
);
CREATE INDEX restarts_service ON restarts(service, at_ms);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER REFERENCES incidents(id),
    service TEXT NOT NULL,
    verdict TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- pending | sent | failed
    status TEXT NOT NULL,
    channel TEXT,
    reply TEXT,
    last_error TEXT,
    sent_ms INTEGER
);
CREATE TABLE service_state (
    service TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    checked_ms INTEGER,
    last_probe TEXT,
    last_action TEXT,
    last_action_ms INTEGER
);
"#,
    // The alert spool. An alert item is one thing to tell the admin about (a problem, a reminder,
    // a recovery), stored the moment the policy requests it. Items that go out together form one
    // message (a row of `alerts`), which has one delivery per route: the mail ladder and each
    // webhook of its own. Alerts stored by a version without the spool cannot be resent.
    r#"
ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'problem';
ALTER TABLE alerts ADD COLUMN payload TEXT;
ALTER TABLE alerts ADD COLUMN expires_ms INTEGER;
UPDATE alerts SET status = 'failed',
    last_error = COALESCE(last_error, 'interrupted before selfheal kept an alert spool')
    WHERE status = 'pending';
CREATE TABLE alert_items (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER REFERENCES incidents(id),
    service TEXT NOT NULL,
    -- problem | reminder | recovered
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    -- the alert's facts as JSON
    payload TEXT NOT NULL,
    -- queued | grouped | suppressed | summarized
    status TEXT NOT NULL DEFAULT 'queued',
    -- the message that carries it
    alert_id INTEGER REFERENCES alerts(id)
);
CREATE INDEX alert_items_status ON alert_items(status);
CREATE INDEX alert_items_incident ON alert_items(incident_id);
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    -- 'mail' (relays, sendmail, fallback webhooks) or 'webhook NAME'
    route TEXT NOT NULL,
    -- pending | sent | expired
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    -- set while an attempt runs; still set after a crash means the outcome is unknown
    in_flight_ms INTEGER,
    channel TEXT,
    reply TEXT,
    last_error TEXT,
    sent_ms INTEGER
);
CREATE INDEX alert_deliveries_due ON alert_deliveries(status, next_attempt_ms);
"#,
    // Why an incident needed the admin: the diagnosis findings as a JSON array.
    r#"
ALTER TABLE incidents ADD COLUMN diagnosis TEXT;
"#,
    // Maintenance windows, and who did what through the dashboard, the API or the CLI.
    r#"
CREATE TABLE pauses (
    service TEXT PRIMARY KEY,
    -- NULL: until resumed
    until_ms INTEGER,
    actor TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    -- the user name, 'token NAME' or 'root (control socket)'
    actor TEXT NOT NULL,
    address TEXT NOT NULL,
    -- login | logout | restart | pause | resume
    action TEXT NOT NULL,
    service TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(at_ms);
"#,
    // Facts about the database itself, such as when selfheal first ran, so that the history
    // does not show the time before it as "up". An older database starts at its oldest record.
    r#"
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value)
    SELECT 'first_start_ms', MIN(ms) FROM (
        SELECT MIN(opened_ms) AS ms FROM incidents
        UNION ALL SELECT MIN(since_ms) FROM service_state
    ) WHERE ms IS NOT NULL
    HAVING MIN(ms) IS NOT NULL;
"#,
];

pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Formats Unix milliseconds as RFC 3339 in UTC to the second, or `-` for 0 and earlier.
pub fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    humantime::format_rfc3339_seconds(from_unix_ms(ms)).to_string()
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub service: String,
    pub unit: String,
    pub opened_ms: i64,
    pub closed_ms: Option<i64>,
    pub problem: String,
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub resolution: Option<String>,
    pub alert_status: String,
    /// Findings of the diagnosis when the incident needed the admin, most specific first.
    pub diagnosis: Vec<crate::diagnose::Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub at_ms: i64,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStateRow {
    pub service: String,
    pub state: String,
    pub since_ms: i64,
    pub checked_ms: Option<i64>,
    pub last_probe: Option<String>,
    pub last_action: Option<String>,
    pub last_action_ms: Option<i64>,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Open (creating it and its directory if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create state directory {}", dir.display()))?;
                set_mode(dir, 0o700);
            }
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open state database {}", path.display()))?;
        Self::setup(conn).with_context(|| format!("state database {}", path.display()))
    }

    /// Opens the database only if it exists, for commands that only read it. `None` when
    /// selfheal has never run here.
    pub fn open_existing(path: &Path) -> anyhow::Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    pub fn open_in_memory() -> anyhow::Result<Store> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> anyhow::Result<Store> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL lets the CLI read while the daemon writes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "schema version {version} is newer than this selfheal knows ({}); \
                 run the newer selfheal or move the database aside",
                MIGRATIONS.len()
            );
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration to schema version {}", index + 1))?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn open_incident(
        &self,
        service: &str,
        unit: &str,
        problem: &str,
        at: SystemTime,
    ) -> anyhow::Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO incidents (service, unit, opened_ms, problem) VALUES (?1, ?2, ?3, ?4)",
            params![service, unit, unix_ms(at), problem],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn add_event(
        &self,
        incident: i64,
        at: SystemTime,
        kind: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO incident_events (incident_id, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![incident, unix_ms(at), kind, detail],
        )?;
        Ok(())
    }

    pub fn set_verdict(&self, incident: i64, verdict: &str, reason: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE incidents SET verdict = ?2, reason = ?3 WHERE id = ?1",
            params![incident, verdict, reason],
        )?;
        Ok(())
    }

    /// Stores what the diagnosis found for an incident, replacing an earlier diagnosis.
    pub fn set_diagnosis(
        &self,
        incident: i64,
        findings: &[crate::diagnose::Finding],
    ) -> anyhow::Result<()> {
        let json = serde_json::to_string(findings)?;
        self.conn().execute(
            "UPDATE incidents SET diagnosis = ?2 WHERE id = ?1",
            params![incident, json],
        )?;
        Ok(())
    }

    /// Close an incident. A quiet incident takes `verdict` as its verdict; one that had needed
    /// the admin keeps that verdict and records `verdict` as its resolution.
    pub fn close_incident(
        &self,
        incident: i64,
        at: SystemTime,
        verdict: &str,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE incidents SET closed_ms = ?2,
                 resolution = CASE WHEN verdict IS NULL THEN NULL ELSE ?3 END,
                 verdict = COALESCE(verdict, ?3)
             WHERE id = ?1",
            params![incident, unix_ms(at), verdict],
        )?;
        Ok(())
    }

    /// Closes the open incidents of services that are no longer configured, with resolution
    /// "no longer watched". Returns how many it closed.
    pub fn close_unwatched(&self, watched: &[&str], at: SystemTime) -> anyhow::Result<usize> {
        let open = self.incidents(true, usize::MAX >> 1)?;
        let mut closed = 0;
        for incident in open
            .iter()
            .filter(|i| !watched.contains(&i.service.as_str()))
        {
            self.conn().execute(
                "UPDATE incidents SET closed_ms = ?2, resolution = 'no longer watched' WHERE id = ?1",
                params![incident.id, unix_ms(at)],
            )?;
            closed += 1;
        }
        Ok(closed)
    }

    pub fn record_restart(
        &self,
        service: &str,
        at: SystemTime,
        manual: bool,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO restarts (service, at_ms, manual) VALUES (?1, ?2, ?3)",
            params![service, unix_ms(at), manual],
        )?;
        Ok(())
    }

    /// Automatic restarts of `service` at or after `since`, oldest first.
    pub fn restarts_since(
        &self,
        service: &str,
        since: SystemTime,
    ) -> anyhow::Result<Vec<SystemTime>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at_ms FROM restarts WHERE service = ?1 AND manual = 0 AND at_ms >= ?2 ORDER BY at_ms",
        )?;
        let rows = stmt.query_map(params![service, unix_ms(since)], |row| row.get::<_, i64>(0))?;
        Ok(rows
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(from_unix_ms)
            .collect())
    }

    pub fn open_incident_for(&self, service: &str) -> anyhow::Result<Option<IncidentRow>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("{INCIDENT_COLUMNS} WHERE service = ?1 AND closed_ms IS NULL ORDER BY id DESC LIMIT 1"),
                params![service],
                incident_row,
            )
            .optional()?;
        Ok(row)
    }

    pub fn incident(&self, id: i64) -> anyhow::Result<Option<IncidentRow>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("{INCIDENT_COLUMNS} WHERE id = ?1"),
                params![id],
                incident_row,
            )
            .optional()?;
        Ok(row)
    }

    /// Incidents newest first; only open ones when `open_only`.
    pub fn incidents(&self, open_only: bool, limit: usize) -> anyhow::Result<Vec<IncidentRow>> {
        let conn = self.conn();
        let filter = if open_only {
            "WHERE closed_ms IS NULL"
        } else {
            ""
        };
        let mut stmt = conn.prepare(&format!(
            "{INCIDENT_COLUMNS} {filter} ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit as i64], incident_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Incidents of one service (or all), newest first; only open ones when `open_only`.
    pub fn incidents_of(
        &self,
        service: Option<&str>,
        open_only: bool,
        limit: usize,
    ) -> anyhow::Result<Vec<IncidentRow>> {
        let conn = self.conn();
        let open = if open_only {
            "AND closed_ms IS NULL"
        } else {
            ""
        };
        let mut stmt = conn.prepare(&format!(
            "{INCIDENT_COLUMNS} WHERE (?1 IS NULL OR service = ?1) {open} ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![service, limit as i64], incident_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Incidents open at any time since `since`: still open, or closed after it. Oldest first.
    pub fn incidents_since(&self, since: SystemTime) -> anyhow::Result<Vec<IncidentRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{INCIDENT_COLUMNS} WHERE closed_ms IS NULL OR closed_ms >= ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![unix_ms(since)], incident_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn events(&self, incident: i64) -> anyhow::Result<Vec<EventRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at_ms, kind, detail FROM incident_events WHERE incident_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![incident], |row| {
            Ok(EventRow {
                at_ms: row.get(0)?,
                kind: row.get(1)?,
                detail: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn save_service_state(&self, row: &ServiceStateRow) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO service_state (service, state, since_ms, checked_ms, last_probe, last_action, last_action_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(service) DO UPDATE SET state = ?2, since_ms = ?3, checked_ms = ?4,
                 last_probe = ?5, last_action = ?6, last_action_ms = ?7",
            params![
                row.service,
                row.state,
                row.since_ms,
                row.checked_ms,
                row.last_probe,
                row.last_action,
                row.last_action_ms
            ],
        )?;
        Ok(())
    }

    pub fn service_states(&self) -> anyhow::Result<Vec<ServiceStateRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT service, state, since_ms, checked_ms, last_probe, last_action, last_action_ms
             FROM service_state ORDER BY service",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(ServiceStateRow {
                service: row.get(0)?,
                state: row.get(1)?,
                since_ms: row.get(2)?,
                checked_ms: row.get(3)?,
                last_probe: row.get(4)?,
                last_action: row.get(5)?,
                last_action_ms: row.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

const INCIDENT_COLUMNS: &str = "SELECT id, service, unit, opened_ms, closed_ms, problem, verdict, \
    reason, resolution, alert_status, diagnosis FROM incidents";

fn incident_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        id: row.get(0)?,
        service: row.get(1)?,
        unit: row.get(2)?,
        opened_ms: row.get(3)?,
        closed_ms: row.get(4)?,
        problem: row.get(5)?,
        verdict: row.get(6)?,
        reason: row.get(7)?,
        resolution: row.get(8)?,
        alert_status: row.get(9)?,
        // A diagnosis written by another version that cannot be read is left out.
        diagnosis: row
            .get::<_, Option<String>>(10)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), %error, "cannot restrict permissions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn incident_lifecycle() {
        let store = Store::open_in_memory().unwrap();
        let id = store
            .open_incident("postfix", "postfix@-.service", "unit failed", at(0))
            .unwrap();
        store
            .add_event(id, at(1), "restart_issued", "automatic")
            .unwrap();
        assert_eq!(store.open_incident_for("postfix").unwrap().unwrap().id, id);
        store.close_incident(id, at(7), "healed").unwrap();
        assert!(store.open_incident_for("postfix").unwrap().is_none());
        let row = &store.incidents(false, 10).unwrap()[0];
        assert_eq!(row.verdict.as_deref(), Some("healed"));
        assert_eq!(row.resolution, None);
        assert_eq!(row.closed_ms, Some(unix_ms(at(7))));
        assert_eq!(store.events(id).unwrap()[0].kind, "restart_issued");
    }

    #[test]
    fn alerted_incident_keeps_verdict_on_close() {
        let store = Store::open_in_memory().unwrap();
        let id = store
            .open_incident("dovecot", "dovecot.service", "failed", at(0))
            .unwrap();
        store
            .set_verdict(id, "restart failed", "exit status 89")
            .unwrap();
        store.close_incident(id, at(60), "recovered").unwrap();
        let row = &store.incidents(false, 10).unwrap()[0];
        assert_eq!(row.verdict.as_deref(), Some("restart failed"));
        assert_eq!(row.resolution.as_deref(), Some("recovered"));
    }

    #[test]
    fn restarts_since_skips_manual_and_old() {
        let store = Store::open_in_memory().unwrap();
        store.record_restart("postfix", at(0), false).unwrap();
        store.record_restart("postfix", at(100), true).unwrap();
        store.record_restart("postfix", at(200), false).unwrap();
        store.record_restart("dovecot", at(200), false).unwrap();
        assert_eq!(
            store.restarts_since("postfix", at(50)).unwrap(),
            vec![at(200)]
        );
    }

    #[test]
    fn reopen_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        {
            let store = Store::open(&path).unwrap();
            store.open_incident("postfix", "u", "p", at(0)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.incidents(true, 10).unwrap().len(), 1);
    }

    #[test]
    fn newer_schema_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = Store::open(&path).err().unwrap();
        assert!(
            format!("{error:#}").contains("schema version 99"),
            "{error:#}"
        );
    }

    #[test]
    fn diagnosis_round_trip() {
        use crate::diagnose::{Cause, Finding};
        let store = Store::open_in_memory().unwrap();
        let id = store.open_incident("postfix", "u", "p", at(0)).unwrap();
        assert!(store.incident(id).unwrap().unwrap().diagnosis.is_empty());
        let findings = vec![
            Finding::new(Cause::DiskFull, "disk full on /var", "free space")
                .with_evidence(["/var: 0 B available"])
                .blocking(),
        ];
        store.set_diagnosis(id, &findings).unwrap();
        assert_eq!(store.incident(id).unwrap().unwrap().diagnosis, findings);
    }

    #[test]
    fn unwatched_incidents_close() {
        let store = Store::open_in_memory().unwrap();
        store.open_incident("postfix", "u", "p", at(0)).unwrap();
        store.open_incident("old-filter", "u", "p", at(0)).unwrap();
        assert_eq!(store.close_unwatched(&["postfix"], at(9)).unwrap(), 1);
        let open = store.incidents(true, 10).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].service, "postfix");
        let all = store.incidents(false, 10).unwrap();
        let old = all.iter().find(|i| i.service == "old-filter").unwrap();
        assert_eq!(old.resolution.as_deref(), Some("no longer watched"));
    }
}
