//! Maintenance windows (paused healing) and the audit log of admin actions.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{unix_ms, Store};

/// A service whose healing an admin paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PauseRow {
    pub service: String,
    /// End of the window (Unix ms); none until resumed.
    pub until_ms: Option<i64>,
    pub actor: String,
    pub at_ms: i64,
}

/// One admin action: a login attempt, a restart, a pause or a resume, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub at_ms: i64,
    pub actor: String,
    pub address: String,
    pub action: String,
    pub service: Option<String>,
    pub outcome: String,
}

impl Store {
    /// Records `now` as the time selfheal first ran here, unless one is recorded.
    pub fn note_start(&self, now: SystemTime) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('first_start_ms', ?1)",
            params![unix_ms(now)],
        )?;
        Ok(())
    }

    /// Returns the time selfheal first ran here (Unix ms), if it ever did.
    pub fn first_start_ms(&self) -> anyhow::Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM meta WHERE key = 'first_start_ms'",
                [],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn set_pause(&self, pause: &PauseRow) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO pauses (service, until_ms, actor, at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(service) DO UPDATE SET until_ms = ?2, actor = ?3, at_ms = ?4",
            params![pause.service, pause.until_ms, pause.actor, pause.at_ms],
        )?;
        Ok(())
    }

    pub fn clear_pause(&self, service: &str) -> anyhow::Result<()> {
        self.conn()
            .execute("DELETE FROM pauses WHERE service = ?1", params![service])?;
        Ok(())
    }

    /// Returns the window still open for `service` at `now`, if any, and removes an ended one.
    pub fn pause_for(&self, service: &str, now: SystemTime) -> anyhow::Result<Option<PauseRow>> {
        let row = self
            .conn()
            .query_row(
                "SELECT service, until_ms, actor, at_ms FROM pauses WHERE service = ?1",
                params![service],
                |row| {
                    Ok(PauseRow {
                        service: row.get(0)?,
                        until_ms: row.get(1)?,
                        actor: row.get(2)?,
                        at_ms: row.get(3)?,
                    })
                },
            )
            .optional()?;
        match row {
            Some(pause) if pause.until_ms.is_some_and(|until| until <= unix_ms(now)) => {
                self.clear_pause(service)?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    pub fn add_audit(&self, row: &AuditRow) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO audit (at_ms, actor, address, action, service, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.at_ms,
                row.actor,
                row.address,
                row.action,
                row.service,
                row.outcome
            ],
        )?;
        Ok(())
    }

    /// Returns the latest `limit` audit rows, newest first.
    pub fn audit(&self, limit: usize) -> anyhow::Result<Vec<AuditRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at_ms, actor, address, action, service, outcome FROM audit
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |row| {
            Ok(AuditRow {
                at_ms: row.get(0)?,
                actor: row.get(1)?,
                address: row.get(2)?,
                action: row.get(3)?,
                service: row.get(4)?,
                outcome: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pause_ends_with_its_window() {
        let store = Store::open_in_memory().unwrap();
        let now = SystemTime::now();
        let pause = PauseRow {
            service: "postfix".into(),
            until_ms: Some(unix_ms(now + Duration::from_secs(1800))),
            actor: "admin".into(),
            at_ms: unix_ms(now),
        };
        store.set_pause(&pause).unwrap();
        assert_eq!(store.pause_for("postfix", now).unwrap(), Some(pause));
        assert_eq!(
            store
                .pause_for("postfix", now + Duration::from_secs(1801))
                .unwrap(),
            None
        );
        // The ended window was removed.
        assert_eq!(store.pause_for("postfix", now).unwrap(), None);
    }

    #[test]
    fn pause_until_resumed() {
        let store = Store::open_in_memory().unwrap();
        let now = SystemTime::now();
        store
            .set_pause(&PauseRow {
                service: "dovecot".into(),
                until_ms: None,
                actor: "admin".into(),
                at_ms: unix_ms(now),
            })
            .unwrap();
        let later = now + Duration::from_secs(86400 * 30);
        assert!(store.pause_for("dovecot", later).unwrap().is_some());
        store.clear_pause("dovecot").unwrap();
        assert!(store.pause_for("dovecot", later).unwrap().is_none());
    }

    #[test]
    fn first_start_is_kept() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.first_start_ms().unwrap(), None);
        store.note_start(super::super::from_unix_ms(1_000)).unwrap();
        store.note_start(super::super::from_unix_ms(2_000)).unwrap();
        assert_eq!(store.first_start_ms().unwrap(), Some(1_000));
    }

    #[test]
    fn audit_newest_first() {
        let store = Store::open_in_memory().unwrap();
        for (at_ms, action) in [(1, "login"), (2, "restart")] {
            store
                .add_audit(&AuditRow {
                    at_ms,
                    actor: "admin".into(),
                    address: "127.0.0.1".into(),
                    action: action.into(),
                    service: None,
                    outcome: "ok".into(),
                })
                .unwrap();
        }
        let rows = store.audit(10).unwrap();
        assert_eq!(rows[0].action, "restart");
        assert_eq!(rows[1].action, "login");
    }
}
