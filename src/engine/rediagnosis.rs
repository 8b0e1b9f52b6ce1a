//! When the diagnosis of a service that needs attention runs again, so that the cause in
//! `selfheal status` and the incident follows what the admin changes meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::ServiceConfig;
use crate::diagnose::config_test::runs_before_restart;
use crate::diagnose::knowledge::config_tests;
use crate::policy::Observation;

/// Minimum time between two diagnoses of one service. A probe whose error text changes at
/// every check then runs the config test at most once per minute.
pub const MIN_GAP: Duration = Duration::from_secs(60);

/// Age at which a diagnosis runs again even though the checks see the same problem, for a
/// service whose config test is quick or absent: a config fixed while the unit stays failed
/// changes nothing a check sees.
pub const REFRESH_QUICK: Duration = Duration::from_secs(60);

/// The same for a service with a slow config test (`spamassassin --lint` takes seconds of
/// CPU time), so that a service left down for days does not run it every minute.
pub const REFRESH_SLOW: Duration = Duration::from_secs(10 * 60);

/// Returns how old a diagnosis of `service` may get while the checks see the same problem.
pub fn refresh_interval(service: &ServiceConfig) -> Duration {
    let preset = service.preset.as_deref().unwrap_or("");
    if runs_before_restart(service)
        || (service.config_test.is_none() && config_tests(preset).is_empty())
    {
        REFRESH_QUICK
    } else {
        REFRESH_SLOW
    }
}

/// Observed state of a service that is not healthy, reduced to the parts that can change the
/// cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symptoms {
    /// The unit's state in systemctl's words, or why it could not be read.
    unit_state: String,
    /// The unit's state when it is not running, and every failing probe.
    problem: String,
    /// The unit's latest start: a new start brings a new journal, even when it fails the
    /// same way.
    invocation_id: Option<String>,
}

impl Symptoms {
    pub fn of(observation: &Observation) -> Symptoms {
        Symptoms {
            unit_state: observation.unit_state(),
            problem: observation.problem(),
            invocation_id: observation
                .unit
                .as_ref()
                .ok()
                .and_then(|unit| unit.invocation_id.clone()),
        }
    }
}

/// The last diagnosis of the open incident: when it ran and what the check before it saw.
#[derive(Debug, Clone)]
pub struct LastDiagnosis {
    pub at: Instant,
    /// `None` when no check preceded it.
    pub symptoms: Option<Symptoms>,
}

/// Schedule of the diagnoses of one service while it needs attention.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Minimum time between two diagnoses.
    pub min_gap: Duration,
    /// Age at which a diagnosis runs again without a change.
    pub refresh: Duration,
    /// `None` until the first diagnosis of this process, so that one restored from the state
    /// database is checked at the first opportunity.
    pub last: Option<LastDiagnosis>,
}

impl Schedule {
    pub fn new(service: &ServiceConfig) -> Schedule {
        Schedule {
            min_gap: MIN_GAP,
            refresh: refresh_interval(service),
            last: None,
        }
    }

    /// Returns whether the diagnosis runs again at `now`, given what the latest check saw: when
    /// it differs from what the check before the last diagnosis saw, or when that diagnosis is
    /// `refresh` old, but never sooner than `min_gap` after it. A change seen within the gap is
    /// not lost: it still differs at the first check after the gap.
    pub fn due(&self, symptoms: &Symptoms, now: Instant) -> bool {
        let Some(last) = &self.last else {
            return true;
        };
        let age = now.saturating_duration_since(last.at);
        if age < self.min_gap {
            return false;
        }
        last.symptoms.as_ref() != Some(symptoms) || age >= self.refresh
    }

    /// Records a diagnosis that ran at `now` after a check that saw `symptoms`.
    pub fn ran(&mut self, symptoms: Option<Symptoms>, now: Instant) {
        self.last = Some(LastDiagnosis { at: now, symptoms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symptoms(problem: &str) -> Symptoms {
        Symptoms {
            unit_state: "failed".into(),
            problem: problem.into(),
            invocation_id: None,
        }
    }

    fn schedule(refresh: Duration) -> Schedule {
        Schedule {
            min_gap: MIN_GAP,
            refresh,
            last: None,
        }
    }

    #[test]
    fn first_check_is_due() {
        assert!(schedule(REFRESH_QUICK).due(&symptoms("a"), Instant::now()));
    }

    #[test]
    fn change_waits_for_the_gap() {
        let start = Instant::now();
        let mut schedule = schedule(Duration::from_secs(3600));
        schedule.ran(Some(symptoms("unit inactive")), start);

        let seconds = |s: u64| start + Duration::from_secs(s);
        // A probe flapping every second changes the text at each check.
        for second in 1..60 {
            assert!(
                !schedule.due(&symptoms(&format!("error {second}")), seconds(second)),
                "{second} s"
            );
        }
        assert!(schedule.due(&symptoms("unit failed"), seconds(60)));
        // Unchanged after the gap: not due until the refresh.
        assert!(!schedule.due(&symptoms("unit inactive"), seconds(61)));
        assert!(!schedule.due(&symptoms("unit inactive"), seconds(3599)));
        assert!(schedule.due(&symptoms("unit inactive"), seconds(3600)));
    }

    #[test]
    fn new_start_is_a_change() {
        let start = Instant::now();
        let mut schedule = schedule(Duration::from_secs(3600));
        let before = symptoms("unit failed");
        schedule.ran(Some(before.clone()), start);
        let restarted = Symptoms {
            invocation_id: Some("0a".repeat(16)),
            ..before.clone()
        };

        let later = start + MIN_GAP;
        assert!(!schedule.due(&before, later));
        assert!(schedule.due(&restarted, later));
    }

    #[test]
    fn refresh_by_config_test_cost() {
        let preset = |name: &str| {
            ServiceConfig::from_preset(
                crate::config::presets::preset(name).unwrap(),
                name,
                crate::config::Mode::Watch,
                crate::config::Timing::NONE,
            )
        };
        assert_eq!(refresh_interval(&preset("unbound")), REFRESH_QUICK);
        assert_eq!(refresh_interval(&preset("spamass-milter")), REFRESH_QUICK);
        assert_eq!(refresh_interval(&preset("spamd")), REFRESH_SLOW);
        assert_eq!(refresh_interval(&preset("mariadb")), REFRESH_SLOW);
        let mut custom = preset("spamd");
        custom.config_test = Some(vec!["/bin/true".into()]);
        assert_eq!(refresh_interval(&custom), REFRESH_QUICK);
    }
}
