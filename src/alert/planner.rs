//! When alerts go out: grouping of what happens close together, the hourly cap with its summary,
//! and reminders for incidents that stay open.
//!
//! A pure state machine: queued items and the monotonic time go in, plans come out. The
//! dispatcher carries the plans out against the spool, and tests drive it with a paused clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::AlertConfig;

/// Length of the window the hourly cap counts mails in.
pub const CAP_WINDOW: Duration = Duration::from_secs(3600);

/// Kind of news an item carries to the admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A service needs the admin: restart failed, crash loop, cannot restart, or down in
    /// watch mode.
    Problem,
    /// An alerted incident is still open.
    Reminder,
    /// An alerted incident closed: the service is healthy again.
    Recovered,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Problem => "problem",
            ItemKind::Reminder => "reminder",
            ItemKind::Recovered => "recovered",
        }
    }

    pub fn parse(text: &str) -> Option<ItemKind> {
        match text {
            "problem" => Some(ItemKind::Problem),
            "reminder" => Some(ItemKind::Reminder),
            "recovered" => Some(ItemKind::Recovered),
            _ => None,
        }
    }
}

/// The admin's limits on alert mail (`[alerts]` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Items queued within this time of the first one go out as one message (`group_window`).
    pub group_window: Duration,
    /// Messages per hour; beyond it items are held for one summary (`max_per_hour`).
    pub max_per_hour: u32,
    /// Reminder offsets from an incident's first alert, in order (`reminders`); empty turns
    /// reminders off.
    pub reminders: Vec<Duration>,
    /// After the last offset, a reminder every this long (`reminder_repeat`); `None` stops.
    pub reminder_repeat: Option<Duration>,
}

impl From<&AlertConfig> for Limits {
    fn from(config: &AlertConfig) -> Limits {
        Limits {
            group_window: config.group_window,
            max_per_hour: config.max_per_hour,
            reminders: config.reminders.clone(),
            reminder_repeat: config.reminder_repeat,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&AlertConfig::default())
    }
}

/// An item in the spool, with what the planner needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub item: i64,
    pub incident: Option<i64>,
    pub kind: ItemKind,
}

/// Something the dispatcher must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send these items as one message.
    Send(Vec<i64>),
    /// The hourly cap is reached: hold these items for the summary.
    Suppress(Vec<i64>),
    /// The cap's hour ended with items held back: send one summary that lists them.
    Summary(Vec<i64>),
    /// An alerted incident is still open: queue reminder number `nth` (from 1) for it.
    Remind { incident: i64, nth: u32 },
}

#[derive(Debug, Clone)]
struct CapWindow {
    start: Instant,
    sent: u32,
    suppressed: Vec<i64>,
}

#[derive(Debug, Clone)]
struct ReminderClock {
    alerted: Instant,
    /// Reminders queued so far.
    sent: u32,
}

#[derive(Debug, Clone)]
pub struct Planner {
    limits: Limits,
    group: Vec<Queued>,
    group_due: Option<Instant>,
    window: Option<CapWindow>,
    reminders: BTreeMap<i64, ReminderClock>,
}

impl Planner {
    pub fn new(limits: Limits) -> Planner {
        Planner {
            limits,
            group: Vec::new(),
            group_due: None,
            window: None,
            reminders: BTreeMap::new(),
        }
    }

    /// Picks up after a restart of selfheal: messages already sent in the last hour (oldest
    /// first) count against the cap, and items held back stay held for its summary.
    pub fn restore_window(&mut self, sent_at: &[Instant], suppressed: Vec<i64>, now: Instant) {
        let start = sent_at.first().copied();
        match start {
            Some(start) if now.saturating_duration_since(start) < CAP_WINDOW => {
                self.window = Some(CapWindow {
                    start,
                    sent: u32::try_from(sent_at.len()).unwrap_or(u32::MAX),
                    suppressed,
                });
            }
            // Held items from an hour that has ended go out in a summary at the next poll.
            _ if !suppressed.is_empty() => {
                self.window = Some(CapWindow {
                    start: now.checked_sub(CAP_WINDOW).unwrap_or(now),
                    sent: 0,
                    suppressed,
                });
            }
            _ => {}
        }
    }

    /// Restarts the reminder clock of an incident alerted at `alerted` that has had
    /// `reminders_sent` reminders.
    pub fn restore_reminders(&mut self, incident: i64, alerted: Instant, reminders_sent: u32) {
        self.reminders.insert(
            incident,
            ReminderClock {
                alerted,
                sent: reminders_sent,
            },
        );
    }

    /// Takes a newly spooled item. The first item of a group opens the grouping window.
    pub fn queue(&mut self, item: Queued, now: Instant) {
        if item.kind == ItemKind::Recovered {
            if let Some(incident) = item.incident {
                self.reminders.remove(&incident);
            }
        }
        if self.group.is_empty() {
            self.group_due = Some(now + self.limits.group_window);
        }
        self.group.push(item);
    }

    /// Makes the group being collected due now, for shutdown.
    pub fn flush(&mut self) {
        if !self.group.is_empty() {
            self.group_due = Some(Instant::now());
        }
    }

    /// Stops the reminders of an incident that closed.
    pub fn closed(&mut self, incident: i64) {
        self.reminders.remove(&incident);
    }

    /// Returns the plans due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Plan> {
        let mut plans = Vec::new();

        if let Some(window) = &self.window {
            if now.saturating_duration_since(window.start) >= CAP_WINDOW {
                if let Some(window) = self.window.take() {
                    if !window.suppressed.is_empty() {
                        plans.push(Plan::Summary(window.suppressed));
                    }
                }
            }
        }

        if self.group_due.is_some_and(|due| due <= now) && !self.group.is_empty() {
            let group = std::mem::take(&mut self.group);
            self.group_due = None;
            let window = self.window.get_or_insert(CapWindow {
                start: now,
                sent: 0,
                suppressed: Vec::new(),
            });
            let items: Vec<i64> = group.iter().map(|queued| queued.item).collect();
            // Reminders give way to news: a mail of reminders alone does not use up the cap,
            // so that a new problem can still go out. Their own schedule bounds them.
            let only_reminders = group.iter().all(|queued| queued.kind == ItemKind::Reminder);
            if window.sent < self.limits.max_per_hour {
                if !only_reminders {
                    window.sent += 1;
                }
                plans.push(Plan::Send(items));
            } else {
                window.suppressed.extend(&items);
                plans.push(Plan::Suppress(items));
            }
            // A problem starts its incident's reminders, whether it went out or was held: the
            // summary reports it either way.
            for queued in group {
                if let (ItemKind::Problem, Some(incident)) = (queued.kind, queued.incident) {
                    self.reminders.entry(incident).or_insert(ReminderClock {
                        alerted: now,
                        sent: 0,
                    });
                }
            }
        }

        for (incident, clock) in &mut self.reminders {
            if let Some(due) = reminder_due(&self.limits, clock) {
                if due <= now {
                    clock.sent += 1;
                    plans.push(Plan::Remind {
                        incident: *incident,
                        nth: clock.sent,
                    });
                }
            }
        }
        plans
    }

    /// Returns the earliest time [`Planner::poll`] has something to do, if any.
    pub fn next_wake(&self) -> Option<Instant> {
        let window_end = self
            .window
            .as_ref()
            .filter(|window| !window.suppressed.is_empty())
            .map(|window| window.start + CAP_WINDOW);
        let reminders = self
            .reminders
            .values()
            .filter_map(|clock| reminder_due(&self.limits, clock));
        self.group_due
            .into_iter()
            .chain(window_end)
            .chain(reminders)
            .min()
    }
}

/// When the next reminder of `clock` is due: the offsets in order, then every
/// `reminder_repeat` after the last one.
fn reminder_due(limits: &Limits, clock: &ReminderClock) -> Option<Instant> {
    let sent = clock.sent as usize;
    if let Some(offset) = limits.reminders.get(sent) {
        return Some(clock.alerted + *offset);
    }
    let last = *limits.reminders.last()?;
    let repeat = limits.reminder_repeat?;
    let extra = u32::try_from(sent + 1 - limits.reminders.len()).ok()?;
    Some(clock.alerted + last + repeat.checked_mul(extra)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn problem(item: i64, incident: i64) -> Queued {
        Queued {
            item,
            incident: Some(incident),
            kind: ItemKind::Problem,
        }
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn items_within_window_go_out_together() {
        let start = Instant::now();
        let mut planner = Planner::new(limits());
        planner.queue(problem(1, 10), start);
        planner.queue(problem(2, 20), start + Duration::from_secs(3));
        planner.queue(problem(3, 30), start + Duration::from_secs(9));
        assert!(planner.poll(start + Duration::from_secs(9)).is_empty());
        assert_eq!(planner.next_wake(), Some(start + Duration::from_secs(10)));

        let plans = planner.poll(start + Duration::from_secs(10));
        assert_eq!(plans, vec![Plan::Send(vec![1, 2, 3])]);

        planner.queue(problem(4, 40), start + Duration::from_secs(11));
        assert_eq!(
            planner.poll(start + Duration::from_secs(21)),
            vec![Plan::Send(vec![4])]
        );
    }

    #[test]
    fn zero_window_sends_at_once() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            ..limits()
        });
        planner.queue(problem(1, 10), start);
        assert_eq!(planner.poll(start), vec![Plan::Send(vec![1])]);
    }

    #[test]
    fn cap_holds_items_then_summarises() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            max_per_hour: 2,
            reminders: Vec::new(),
            reminder_repeat: None,
        });
        let mut sent = Vec::new();
        for item in 1..=5 {
            let now = start + MIN * item as u32;
            planner.queue(problem(item, item), now);
            sent.extend(planner.poll(now));
        }
        assert_eq!(
            sent,
            vec![
                Plan::Send(vec![1]),
                Plan::Send(vec![2]),
                Plan::Suppress(vec![3]),
                Plan::Suppress(vec![4]),
                Plan::Suppress(vec![5]),
            ]
        );
        // The hour started with the first message, one minute after `start`.
        assert_eq!(planner.next_wake(), Some(start + MIN + HOUR));
        assert!(planner.poll(start + HOUR).is_empty());
        assert_eq!(
            planner.poll(start + MIN + HOUR),
            vec![Plan::Summary(vec![3, 4, 5])]
        );
        assert_eq!(planner.next_wake(), None);

        // A new hour starts with the next message.
        planner.queue(problem(6, 6), start + 2 * HOUR);
        assert_eq!(planner.poll(start + 2 * HOUR), vec![Plan::Send(vec![6])]);
    }

    #[test]
    fn reminders_do_not_use_up_the_cap() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            max_per_hour: 2,
            reminders: vec![MIN],
            reminder_repeat: Some(MIN),
        });
        planner.queue(problem(1, 10), start);
        assert_eq!(planner.poll(start), vec![Plan::Send(vec![1])]);
        let mut next = 2;
        for minute in 1..=5 {
            let now = start + MIN * minute;
            for plan in planner.poll(now) {
                assert!(matches!(plan, Plan::Remind { .. }), "{plan:?}");
                planner.queue(
                    Queued {
                        item: next,
                        incident: Some(10),
                        kind: ItemKind::Reminder,
                    },
                    now,
                );
                assert_eq!(planner.poll(now), vec![Plan::Send(vec![next])]);
                next += 1;
            }
        }
        // A new problem still goes out: five reminders used none of the cap.
        let now = start + 6 * MIN;
        planner.queue(problem(100, 20), now);
        let plans = planner.poll(now);
        assert!(plans.contains(&Plan::Send(vec![100])), "{plans:?}");
    }

    #[test]
    fn reminders_grow_then_repeat_daily() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            ..limits()
        });
        planner.queue(problem(1, 10), start);
        assert_eq!(planner.poll(start), vec![Plan::Send(vec![1])]);

        let mut reminders = Vec::new();
        let mut now = start;
        while now < start + 80 * HOUR {
            now += MIN;
            for plan in planner.poll(now) {
                if let Plan::Remind { nth, .. } = plan {
                    reminders.push((now.duration_since(start), nth));
                }
            }
        }
        assert_eq!(
            reminders,
            vec![
                (HOUR, 1),
                (6 * HOUR, 2),
                (24 * HOUR, 3),
                (48 * HOUR, 4),
                (72 * HOUR, 5)
            ]
        );
    }

    #[test]
    fn recovery_stops_reminders() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            ..limits()
        });
        planner.queue(problem(1, 10), start);
        planner.poll(start);
        planner.queue(
            Queued {
                item: 2,
                incident: Some(10),
                kind: ItemKind::Recovered,
            },
            start + 30 * MIN,
        );
        assert_eq!(planner.poll(start + 30 * MIN), vec![Plan::Send(vec![2])]);
        assert!(planner.poll(start + 2 * HOUR).is_empty());
        assert_eq!(planner.next_wake(), None);
    }

    #[test]
    fn reminders_off() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            reminders: Vec::new(),
            ..limits()
        });
        planner.queue(problem(1, 10), start);
        planner.poll(start);
        assert_eq!(planner.next_wake(), None);
    }

    #[test]
    fn reminders_without_repeat_stop() {
        let start = Instant::now();
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            reminders: vec![HOUR],
            reminder_repeat: None,
            ..limits()
        });
        planner.queue(problem(1, 10), start);
        planner.poll(start);
        assert_eq!(
            planner.poll(start + HOUR),
            vec![Plan::Remind {
                incident: 10,
                nth: 1
            }]
        );
        assert_eq!(planner.next_wake(), None);
    }

    #[test]
    fn restored_window_keeps_count() {
        let start = Instant::now() + 2 * HOUR;
        let mut planner = Planner::new(Limits {
            group_window: Duration::ZERO,
            max_per_hour: 2,
            ..limits()
        });
        planner.restore_window(&[start - 30 * MIN, start - 10 * MIN], vec![7], start);
        planner.queue(problem(8, 8), start);
        assert_eq!(planner.poll(start), vec![Plan::Suppress(vec![8])]);
        assert_eq!(
            planner.poll(start + 30 * MIN),
            vec![Plan::Summary(vec![7, 8])]
        );
    }

    #[test]
    fn restored_items_of_an_ended_hour_are_summarised() {
        let start = Instant::now() + 2 * HOUR;
        let mut planner = Planner::new(limits());
        planner.restore_window(&[], vec![3, 4], start);
        assert_eq!(planner.poll(start), vec![Plan::Summary(vec![3, 4])]);
    }

    #[test]
    fn restored_reminder_clock() {
        let start = Instant::now() + 10 * HOUR;
        let mut planner = Planner::new(limits());
        // Alerted 7 h ago with one reminder sent: the next is due at 24 h.
        planner.restore_reminders(10, start - 7 * HOUR, 1);
        assert_eq!(
            planner.poll(start),
            vec![Plan::Remind {
                incident: 10,
                nth: 2
            }]
        );
        assert_eq!(planner.next_wake(), Some(start + 17 * HOUR));
    }
}
