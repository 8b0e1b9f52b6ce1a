//! The alert spool in the state database: items waiting to be grouped, messages, and one
//! delivery per route of each message with its retry state.
//!
//! Every write that moves an alert forward happens in one transaction, so a crash leaves each
//! item either queued, or carried by a message whose deliveries are all recorded.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{from_unix_ms, unix_ms, Store};

/// One thing to tell the admin about, as stored when the policy asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolItem {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub service: String,
    /// problem | reminder | recovered
    pub kind: String,
    pub verdict: String,
    pub created_ms: i64,
    /// The alert's facts as JSON.
    pub payload: String,
}

/// A message about to be spooled: the items it carries and the routes it must take.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// problem | reminder | recovered | summary | mixed
    pub kind: &'a str,
    pub message_id: &'a str,
    pub subject: &'a str,
    /// Services the message names, for listings.
    pub service: &'a str,
    pub verdict: &'a str,
    /// The incident, when the message is about exactly one.
    pub incident: Option<i64>,
    /// The message's content as JSON, rendered anew for each attempt.
    pub payload: &'a str,
    pub items: &'a [i64],
    /// Each route gets its own delivery: `mail`, or `webhook NAME`.
    pub routes: &'a [String],
    pub created: SystemTime,
    /// After this time, failed attempts are no longer retried.
    pub expires: SystemTime,
}

/// A delivery whose next attempt is due, with the message it carries.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub alert_id: i64,
    pub route: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// An earlier attempt was cut short by a crash, so the relay may have the message.
    pub outcome_unknown: bool,
    pub last_error: Option<String>,
    pub kind: String,
    pub message_id: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub payload: String,
}

/// One alert message as `selfheal status` and the dashboard list it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub service: String,
    pub verdict: String,
    pub kind: String,
    pub created_ms: i64,
    pub message_id: String,
    pub subject: String,
    /// pending | sent | expired | failed (failed: from a version without the spool)
    pub status: String,
    /// Channels that accepted it, one per route.
    pub channel: Option<String>,
    pub last_error: Option<String>,
    /// Attempts over all routes.
    pub attempts: u32,
    /// Next attempt while it is pending.
    pub next_attempt_ms: Option<i64>,
}

/// One route of a message that has not delivered it, for `selfheal status`.
#[derive(Debug, Clone, Serialize)]
pub struct PendingRoute {
    pub subject: String,
    /// Services the message names.
    pub service: String,
    /// `mail` or `webhook NAME`.
    pub route: String,
    /// pending, or expired: given up.
    pub status: String,
    pub attempts: u32,
    pub created_ms: i64,
    /// Next attempt while pending.
    pub next_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// Spool contents the planner needs to pick up where it stopped.
#[derive(Debug, Clone, Default)]
pub struct SpoolState {
    /// Items stored but not yet in a message, oldest first.
    pub queued: Vec<SpoolItem>,
    /// Items held back by the hourly cap, not yet in a summary, oldest first.
    pub suppressed: Vec<SpoolItem>,
    /// Creation times of the messages (summaries excluded) since the time asked for, oldest
    /// first.
    pub recent_messages_ms: Vec<i64>,
    /// Open incidents that were alerted: (incident, when its first alert was stored, reminders
    /// stored since).
    pub alerted_open: Vec<(i64, i64, u32)>,
}

const ITEM_COLUMNS: &str =
    "SELECT id, incident_id, service, kind, verdict, created_ms, payload FROM alert_items";

fn item_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SpoolItem> {
    Ok(SpoolItem {
        id: row.get(0)?,
        incident_id: row.get(1)?,
        service: row.get(2)?,
        kind: row.get(3)?,
        verdict: row.get(4)?,
        created_ms: row.get(5)?,
        payload: row.get(6)?,
    })
}

impl Store {
    /// Stores an item before anything else happens to it, and marks a problem's incident as
    /// alerted (`queued`).
    pub fn spool_item(
        &self,
        incident: Option<i64>,
        service: &str,
        kind: &str,
        verdict: &str,
        payload: &str,
        at: SystemTime,
    ) -> anyhow::Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO alert_items (incident_id, service, kind, verdict, created_ms, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![incident, service, kind, verdict, unix_ms(at), payload],
        )?;
        let id = tx.last_insert_rowid();
        if kind == "problem" {
            tx.execute(
                "UPDATE incidents SET alert_status = 'queued' WHERE id = ?1",
                params![incident],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    pub fn spool_items(&self, ids: &[i64]) -> anyhow::Result<Vec<SpoolItem>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{ITEM_COLUMNS} WHERE id = ?1"))?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(item) = stmt.query_row(params![id], item_row).optional()? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Returns the latest problem item of `incident`: the alert it was raised with.
    pub fn problem_item(&self, incident: i64) -> anyhow::Result<Option<SpoolItem>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!(
                    "{ITEM_COLUMNS} WHERE incident_id = ?1 AND kind = 'problem' ORDER BY id DESC LIMIT 1"
                ),
                params![incident],
                item_row,
            )
            .optional()?;
        Ok(row)
    }

    /// Returns the Message-ID of the message that carried the latest problem of `incident`.
    pub fn problem_message_id(&self, incident: i64) -> anyhow::Result<Option<String>> {
        let conn = self.conn();
        let id = conn
            .query_row(
                "SELECT a.message_id FROM alert_items ai JOIN alerts a ON a.id = ai.alert_id
                 WHERE ai.incident_id = ?1 AND ai.kind = 'problem'
                 ORDER BY ai.id DESC LIMIT 1",
                params![incident],
                |row| row.get(0),
            )
            .optional()?;
        Ok(id)
    }

    /// Stores a message carrying `items`, with one pending delivery per route due at once.
    /// Returns the message's row id.
    pub fn spool_message(&self, message: &NewMessage<'_>) -> anyhow::Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let created = unix_ms(message.created);
        tx.execute(
            "INSERT INTO alerts (incident_id, service, verdict, created_ms, message_id, subject,
                 status, kind, payload, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9)",
            params![
                message.incident,
                message.service,
                message.verdict,
                created,
                message.message_id,
                message.subject,
                message.kind,
                message.payload,
                unix_ms(message.expires),
            ],
        )?;
        let alert = tx.last_insert_rowid();
        let item_status = if message.kind == "summary" {
            "summarized"
        } else {
            "grouped"
        };
        for item in message.items {
            tx.execute(
                "UPDATE alert_items SET status = ?2, alert_id = ?3 WHERE id = ?1",
                params![item, item_status, alert],
            )?;
        }
        for route in message.routes {
            tx.execute(
                "INSERT INTO alert_deliveries (alert_id, route, next_attempt_ms) VALUES (?1, ?2, ?3)",
                params![alert, route, created],
            )?;
            // An older message still waiting on this route is tried again now, ahead of this
            // one, instead of holding it back until its own retry.
            tx.execute(
                "UPDATE alert_deliveries SET next_attempt_ms = MIN(next_attempt_ms, ?3)
                 WHERE route = ?1 AND status = 'pending' AND alert_id < ?2",
                params![route, alert, created],
            )?;
        }
        if message.routes.is_empty() {
            tx.execute(
                "UPDATE alerts SET status = 'expired', last_error = 'no alert channel is configured'
                 WHERE id = ?1",
                params![alert],
            )?;
        }
        update_incidents(&tx, alert)?;
        tx.commit()?;
        Ok(alert)
    }

    /// Holds items back because the hourly cap is reached; a summary names them later.
    pub fn suppress_items(&self, ids: &[i64]) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE alert_items SET status = 'suppressed' WHERE id = ?1",
                params![id],
            )?;
            tx.execute(
                "UPDATE incidents SET alert_status = 'suppressed'
                 WHERE id = (SELECT incident_id FROM alert_items WHERE id = ?1 AND kind = 'problem')",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Returns the deliveries due at `now`, oldest message first.
    pub fn due_deliveries(&self, now: SystemTime) -> anyhow::Result<Vec<DueDelivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.id, d.alert_id, d.route, d.attempts, d.in_flight_ms, d.last_error,
                    a.kind, a.message_id, a.created_ms, a.expires_ms, a.payload
             FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1
               -- Messages on one route go out in order, so a recovery never overtakes the
               -- alert it closes.
               AND NOT EXISTS (SELECT 1 FROM alert_deliveries o
                               WHERE o.route = d.route AND o.status = 'pending'
                                 AND o.alert_id < d.alert_id)
             ORDER BY d.alert_id, d.id",
        )?;
        let rows = stmt.query_map(params![unix_ms(now)], |row| {
            Ok(DueDelivery {
                id: row.get(0)?,
                alert_id: row.get(1)?,
                route: row.get(2)?,
                attempts: row.get(3)?,
                outcome_unknown: row.get::<_, Option<i64>>(4)?.is_some(),
                last_error: row.get(5)?,
                kind: row.get(6)?,
                message_id: row.get(7)?,
                created_ms: row.get(8)?,
                expires_ms: row.get::<_, Option<i64>>(9)?.unwrap_or(i64::MAX),
                payload: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// When the next pending delivery is due, if any is pending.
    pub fn next_delivery_due(&self) -> anyhow::Result<Option<SystemTime>> {
        let ms: Option<i64> = self.conn().query_row(
            "SELECT MIN(next_attempt_ms) FROM alert_deliveries WHERE status = 'pending'",
            [],
            |row| row.get(0),
        )?;
        Ok(ms.map(from_unix_ms))
    }

    /// Records that an attempt starts, before any byte goes out. If selfheal dies before
    /// [`Store::delivery_sent`] or [`Store::delivery_failed`], the delivery stays marked as
    /// in flight and the next attempt treats the outcome as unknown.
    pub fn delivery_started(&self, delivery: i64, at: SystemTime) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE alert_deliveries SET attempts = attempts + 1, in_flight_ms = ?2 WHERE id = ?1",
            params![delivery, unix_ms(at)],
        )?;
        Ok(())
    }

    pub fn delivery_sent(
        &self,
        delivery: i64,
        channel: &str,
        reply: &str,
        at: SystemTime,
    ) -> anyhow::Result<()> {
        self.finish_delivery(
            delivery,
            "UPDATE alert_deliveries SET status = 'sent', in_flight_ms = NULL, channel = ?2,
                 reply = ?3, sent_ms = ?4, last_error = NULL WHERE id = ?1",
            params![delivery, channel, reply, unix_ms(at)],
        )
    }

    /// Records a failed attempt and when to try again.
    pub fn delivery_failed(
        &self,
        delivery: i64,
        error: &str,
        next_attempt: SystemTime,
    ) -> anyhow::Result<()> {
        self.finish_delivery(
            delivery,
            "UPDATE alert_deliveries SET in_flight_ms = NULL, last_error = ?2,
                 next_attempt_ms = ?3 WHERE id = ?1",
            params![delivery, error, unix_ms(next_attempt)],
        )
    }

    /// Gives up on a delivery: it failed until its message expired.
    pub fn delivery_expired(&self, delivery: i64, error: &str) -> anyhow::Result<()> {
        self.finish_delivery(
            delivery,
            "UPDATE alert_deliveries SET status = 'expired', in_flight_ms = NULL, last_error = ?2
             WHERE id = ?1",
            params![delivery, error],
        )
    }

    fn finish_delivery(
        &self,
        delivery: i64,
        sql: &str,
        values: impl rusqlite::Params,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(sql, values)?;
        let alert: i64 = tx.query_row(
            "SELECT alert_id FROM alert_deliveries WHERE id = ?1",
            params![delivery],
            |row| row.get(0),
        )?;
        // A message is sent once every route delivered it, and expired once a route gave up
        // and none is left to try.
        tx.execute(
            "UPDATE alerts SET
                 status = CASE
                     WHEN EXISTS (SELECT 1 FROM alert_deliveries
                                  WHERE alert_id = ?1 AND status = 'pending') THEN 'pending'
                     WHEN EXISTS (SELECT 1 FROM alert_deliveries
                                  WHERE alert_id = ?1 AND status = 'expired') THEN 'expired'
                     ELSE 'sent' END,
                 channel = (SELECT group_concat(channel, '; ') FROM alert_deliveries
                            WHERE alert_id = ?1 AND status = 'sent'),
                 reply = (SELECT group_concat(reply, '; ') FROM alert_deliveries
                          WHERE alert_id = ?1 AND status = 'sent'),
                 sent_ms = (SELECT MAX(sent_ms) FROM alert_deliveries WHERE alert_id = ?1),
                 last_error = (SELECT last_error FROM alert_deliveries
                               WHERE alert_id = ?1 AND status != 'sent' AND last_error IS NOT NULL
                               ORDER BY id LIMIT 1)
             WHERE id = ?1",
            params![alert],
        )?;
        update_incidents(&tx, alert)?;
        tx.commit()?;
        Ok(())
    }

    /// Number of messages by status: (sent, pending, expired or failed).
    pub fn alert_counts(&self) -> anyhow::Result<(i64, i64, i64)> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM alerts GROUP BY status")?;
        let mut counts = (0, 0, 0);
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (status, count) = row?;
            match status.as_str() {
                "sent" => counts.0 += count,
                "pending" => counts.1 += count,
                _ => counts.2 += count,
            }
        }
        Ok(counts)
    }

    /// Messages newest first, with their delivery progress.
    pub fn alerts(&self, limit: usize) -> anyhow::Result<Vec<AlertRow>> {
        self.alert_rows("", limit)
    }

    /// Messages not delivered on every route yet, oldest first.
    pub fn undelivered_alerts(&self) -> anyhow::Result<Vec<AlertRow>> {
        let mut rows = self.alert_rows("WHERE a.status = 'pending'", usize::MAX >> 1)?;
        rows.reverse();
        Ok(rows)
    }

    /// Lists each route still trying to deliver its message, and each route that gave up on a
    /// message about an incident still open, oldest first.
    pub fn undelivered_routes(&self) -> anyhow::Result<Vec<PendingRoute>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT a.subject, a.service, d.route, d.status, d.attempts, a.created_ms,
                    d.next_attempt_ms, d.last_error
             FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE d.status = 'pending'
                OR (d.status = 'expired' AND EXISTS (
                        SELECT 1 FROM alert_items ai JOIN incidents i ON i.id = ai.incident_id
                        WHERE ai.alert_id = a.id AND i.closed_ms IS NULL))
             ORDER BY a.id, d.id",
        )?;
        let rows = stmt.query_map([], |row| {
            let status: String = row.get(3)?;
            Ok(PendingRoute {
                subject: row.get(0)?,
                service: row.get(1)?,
                route: row.get(2)?,
                next_attempt_ms: if status == "pending" {
                    row.get(6)?
                } else {
                    None
                },
                status,
                attempts: row.get(4)?,
                created_ms: row.get(5)?,
                last_error: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn alert_rows(&self, filter: &str, limit: usize) -> anyhow::Result<Vec<AlertRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT a.id, a.incident_id, a.service, a.verdict, a.kind, a.created_ms, a.message_id,
                    a.subject, a.status, a.channel, a.last_error,
                    (SELECT COALESCE(SUM(attempts), 0) FROM alert_deliveries WHERE alert_id = a.id),
                    (SELECT MIN(next_attempt_ms) FROM alert_deliveries
                     WHERE alert_id = a.id AND status = 'pending')
             FROM alerts a {filter} ORDER BY a.id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit as i64], |row| {
            Ok(AlertRow {
                id: row.get(0)?,
                incident_id: row.get(1)?,
                service: row.get(2)?,
                verdict: row.get(3)?,
                kind: row.get(4)?,
                created_ms: row.get(5)?,
                message_id: row.get(6)?,
                subject: row.get(7)?,
                status: row.get(8)?,
                channel: row.get(9)?,
                last_error: row.get(10)?,
                attempts: row.get(11)?,
                next_attempt_ms: row.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Reads the spool's state for the planner: what was queued or held back, the messages since
    /// `since`, and the alerted incidents still open.
    pub fn spool_state(&self, since: SystemTime) -> anyhow::Result<SpoolState> {
        let conn = self.conn();
        let items = |status: &str| -> anyhow::Result<Vec<SpoolItem>> {
            let mut stmt =
                conn.prepare(&format!("{ITEM_COLUMNS} WHERE status = ?1 ORDER BY id"))?;
            let rows = stmt.query_map(params![status], item_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        };
        let queued = items("queued")?;
        let suppressed = items("suppressed")?;

        let mut stmt = conn.prepare(
            "SELECT created_ms FROM alerts
             WHERE payload IS NOT NULL AND kind != 'summary' AND created_ms >= ?1
             ORDER BY created_ms",
        )?;
        let recent_messages_ms = stmt
            .query_map(params![unix_ms(since)], |row| row.get(0))?
            .collect::<Result<Vec<i64>, _>>()?;

        let mut stmt = conn.prepare(
            "SELECT i.id,
                    MIN(CASE WHEN ai.kind = 'problem' THEN ai.created_ms END),
                    SUM(CASE WHEN ai.kind = 'reminder' THEN 1 ELSE 0 END)
             FROM incidents i JOIN alert_items ai ON ai.incident_id = i.id
             WHERE i.closed_ms IS NULL
             GROUP BY i.id
             HAVING MIN(CASE WHEN ai.kind = 'problem' THEN ai.created_ms END) IS NOT NULL
             ORDER BY i.id",
        )?;
        let alerted_open = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;

        Ok(SpoolState {
            queued,
            suppressed,
            recent_messages_ms,
            alerted_open,
        })
    }

    /// When the last crash-loop alert for `service` was stored.
    pub fn last_crash_loop_alert(&self, service: &str) -> anyhow::Result<Option<SystemTime>> {
        let ms: Option<i64> = self.conn().query_row(
            "SELECT MAX(at) FROM (
                 SELECT MAX(created_ms) AS at FROM alert_items
                 WHERE service = ?1 AND kind = 'problem' AND verdict = 'crash loop'
                 UNION ALL
                 SELECT MAX(created_ms) FROM alerts
                 WHERE service = ?1 AND payload IS NULL AND verdict = 'crash loop')",
            params![service],
            |row| row.get(0),
        )?;
        Ok(ms.map(from_unix_ms))
    }
}

/// Copies a message's status to the incidents whose problem it carries, so that an incident
/// shows whether its alert reached the admin.
fn update_incidents(tx: &rusqlite::Transaction<'_>, alert: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE incidents SET alert_status = (SELECT status FROM alerts WHERE id = ?1)
         WHERE id IN (SELECT incident_id FROM alert_items WHERE alert_id = ?1 AND kind = 'problem')",
        params![alert],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn message<'a>(items: &'a [i64], routes: &'a [String], secs: u64) -> NewMessage<'a> {
        NewMessage {
            kind: "problem",
            message_id: "<m1@host>",
            subject: "[selfheal] host: postfix restart failed",
            service: "postfix",
            verdict: "restart failed",
            incident: None,
            payload: "{}",
            items,
            routes,
            created: at(secs),
            expires: at(secs + 3 * 86_400),
        }
    }

    #[test]
    fn item_to_sent_message() {
        let store = Store::open_in_memory().unwrap();
        let incident = store.open_incident("postfix", "u", "p", at(0)).unwrap();
        let item = store
            .spool_item(
                Some(incident),
                "postfix",
                "problem",
                "restart failed",
                "{}",
                at(1),
            )
            .unwrap();
        assert_eq!(
            store.incident(incident).unwrap().unwrap().alert_status,
            "queued"
        );
        let state = store.spool_state(at(0)).unwrap();
        assert_eq!(state.queued.len(), 1);
        assert_eq!(state.alerted_open, vec![(incident, unix_ms(at(1)), 0)]);

        let routes = vec!["mail".to_string(), "webhook ops".to_string()];
        let alert = store.spool_message(&message(&[item], &routes, 2)).unwrap();
        assert!(store.spool_state(at(0)).unwrap().queued.is_empty());
        assert_eq!(
            store.incident(incident).unwrap().unwrap().alert_status,
            "pending"
        );

        let due = store.due_deliveries(at(2)).unwrap();
        assert_eq!(due.len(), 2);
        assert!(store.due_deliveries(at(1)).unwrap().is_empty());

        store.delivery_started(due[0].id, at(2)).unwrap();
        store
            .delivery_sent(due[0].id, "relay a", "250 ok", at(3))
            .unwrap();
        store.delivery_started(due[1].id, at(2)).unwrap();
        store
            .delivery_failed(due[1].id, "HTTP 500", at(60))
            .unwrap();
        let row = &store.alerts(10).unwrap()[0];
        assert_eq!(row.id, alert);
        assert_eq!(row.status, "pending");
        assert_eq!(row.attempts, 2);
        assert_eq!(row.next_attempt_ms, Some(unix_ms(at(60))));
        assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(store.undelivered_alerts().unwrap().len(), 1);
        assert_eq!(store.next_delivery_due().unwrap(), Some(at(60)));

        store.delivery_started(due[1].id, at(60)).unwrap();
        store
            .delivery_sent(due[1].id, "webhook ops (json)", "HTTP 200 OK", at(61))
            .unwrap();
        let row = &store.alerts(10).unwrap()[0];
        assert_eq!(row.status, "sent");
        assert_eq!(row.channel.as_deref(), Some("relay a; webhook ops (json)"));
        assert_eq!(row.last_error, None);
        assert_eq!(
            store.incident(incident).unwrap().unwrap().alert_status,
            "sent"
        );
        assert_eq!(store.next_delivery_due().unwrap(), None);
    }

    #[test]
    fn route_keeps_message_order() {
        let store = Store::open_in_memory().unwrap();
        let routes = vec!["mail".to_string()];
        store.spool_message(&message(&[], &routes, 0)).unwrap();
        let first = store.due_deliveries(at(0)).unwrap().remove(0);
        store.delivery_started(first.id, at(0)).unwrap();
        store.delivery_failed(first.id, "refused", at(600)).unwrap();

        // A newer message on the same route waits for the older one, which is due again now.
        let mut second = message(&[], &routes, 10);
        second.message_id = "<m2@host>";
        store.spool_message(&second).unwrap();
        let due = store.due_deliveries(at(10)).unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].message_id, "<m1@host>");

        store.delivery_started(due[0].id, at(10)).unwrap();
        store
            .delivery_sent(due[0].id, "relay a", "250 ok", at(11))
            .unwrap();
        let due = store.due_deliveries(at(11)).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].message_id, "<m2@host>");
    }

    #[test]
    fn crash_during_attempt_leaves_outcome_unknown() {
        let store = Store::open_in_memory().unwrap();
        let routes = vec!["mail".to_string()];
        store.spool_message(&message(&[], &routes, 0)).unwrap();
        let due = store.due_deliveries(at(0)).unwrap();
        assert!(!due[0].outcome_unknown);
        store.delivery_started(due[0].id, at(0)).unwrap();

        let due = store.due_deliveries(at(0)).unwrap();
        assert!(due[0].outcome_unknown);
        assert_eq!(due[0].attempts, 1);
        assert_eq!(due[0].message_id, "<m1@host>");
    }

    #[test]
    fn expired_delivery_expires_message() {
        let store = Store::open_in_memory().unwrap();
        let incident = store.open_incident("postfix", "u", "p", at(0)).unwrap();
        let item = store
            .spool_item(Some(incident), "postfix", "problem", "down", "{}", at(0))
            .unwrap();
        let routes = vec!["mail".to_string()];
        store.spool_message(&message(&[item], &routes, 0)).unwrap();
        let due = store.due_deliveries(at(0)).unwrap();
        store.delivery_expired(due[0].id, "relay refused").unwrap();
        let row = &store.alerts(10).unwrap()[0];
        assert_eq!(row.status, "expired");
        assert_eq!(row.last_error.as_deref(), Some("relay refused"));
        assert_eq!(
            store.incident(incident).unwrap().unwrap().alert_status,
            "expired"
        );
        assert!(store.undelivered_alerts().unwrap().is_empty());
    }

    #[test]
    fn suppressed_items_wait_for_summary() {
        let store = Store::open_in_memory().unwrap();
        let incident = store.open_incident("postfix", "u", "p", at(0)).unwrap();
        let item = store
            .spool_item(Some(incident), "postfix", "problem", "down", "{}", at(0))
            .unwrap();
        store.suppress_items(&[item]).unwrap();
        assert_eq!(
            store.incident(incident).unwrap().unwrap().alert_status,
            "suppressed"
        );
        let state = store.spool_state(at(0)).unwrap();
        assert_eq!(state.suppressed.len(), 1);
        assert!(state.queued.is_empty());

        let routes = vec!["mail".to_string()];
        let items = [item];
        let mut summary = message(&items, &routes, 3600);
        summary.kind = "summary";
        store.spool_message(&summary).unwrap();
        let state = store.spool_state(at(0)).unwrap();
        assert!(state.suppressed.is_empty());
        assert!(
            state.recent_messages_ms.is_empty(),
            "a summary is not counted"
        );
    }

    #[test]
    fn crash_loop_alert_time() {
        let store = Store::open_in_memory().unwrap();
        store
            .spool_item(None, "postfix", "problem", "crash loop", "{}", at(5))
            .unwrap();
        store
            .spool_item(None, "postfix", "problem", "restart failed", "{}", at(9))
            .unwrap();
        assert_eq!(store.last_crash_loop_alert("postfix").unwrap(), Some(at(5)));
        assert_eq!(store.last_crash_loop_alert("dovecot").unwrap(), None);
    }

    #[test]
    fn message_without_routes_expires() {
        let store = Store::open_in_memory().unwrap();
        store.spool_message(&message(&[], &[], 0)).unwrap();
        let row = &store.alerts(10).unwrap()[0];
        assert_eq!(row.status, "expired");
        assert!(store.due_deliveries(at(0)).unwrap().is_empty());
    }
}
