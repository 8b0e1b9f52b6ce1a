//! The recovery rules on paused time: each test drives one service through a story.

use std::time::Duration;

use tokio::time::{advance, Instant};

use super::*;
use crate::manager::{ActiveState, UnitStatus};
use crate::probe::{Outcome, ProbeReport};

fn unit(active: &str, sub: &str, n_restarts: u32) -> UnitStatus {
    UnitStatus {
        load_state: "loaded".into(),
        active_state: ActiveState::parse(active),
        sub_state: sub.into(),
        result: if active == "failed" {
            "signal"
        } else {
            "success"
        }
        .into(),
        main_pid: Some(100),
        main_pid_alive: Some(active == "active"),
        n_restarts: Some(n_restarts),
        exec_main_status: None,
        inactive_exit_usec: 0,
        invocation_id: None,
    }
}

fn probe(ok: bool) -> ProbeReport {
    ProbeReport {
        endpoint: "tcp 127.0.0.1:25".into(),
        outcome: if ok {
            Outcome::healthy(Duration::from_millis(1))
        } else {
            Outcome::Refused {
                error: "connection refused".into(),
            }
        },
    }
}

fn seen(active: &str, sub: &str, probe_ok: bool) -> Input {
    seen_n(active, sub, probe_ok, 0)
}

fn seen_n(active: &str, sub: &str, probe_ok: bool, n_restarts: u32) -> Input {
    Input::Checked(Observation {
        unit: Ok(unit(active, sub, n_restarts)),
        probes: vec![probe(probe_ok)],
        blockers: Vec::new(),
    })
}

fn healthy() -> Input {
    seen("active", "running", true)
}

fn failed() -> Input {
    seen("failed", "failed", false)
}

fn unresponsive() -> Input {
    seen("active", "running", false)
}

fn restart_ok() -> Input {
    Input::RestartFinished(Ok(RestartReport {
        reset_failed: true,
        job_result: "done".into(),
        elapsed: Duration::from_millis(700),
        retried_after_rate_limit: false,
        killed: false,
    }))
}

fn heal() -> ServicePolicy {
    ServicePolicy::new(Mode::Heal, true, Recovery::default())
}

/// Advance paused time and feed one input at the new time.
async fn after(policy: &mut ServicePolicy, secs: u64, input: Input) -> Decision {
    advance(Duration::from_secs(secs)).await;
    policy.step(input, Instant::now())
}

fn alerts(decision: &Decision) -> Vec<Verdict> {
    decision
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Alert { verdict, .. } => Some(*verdict),
            Command::Restart => None,
        })
        .collect()
}

fn restarts(decision: &Decision) -> usize {
    decision
        .commands
        .iter()
        .filter(|c| **c == Command::Restart)
        .count()
}

fn closed_with(decision: &Decision) -> Option<Verdict> {
    decision.events.iter().find_map(|e| match e {
        Event::IncidentClosed { verdict, .. } => Some(*verdict),
        _ => None,
    })
}

/// Kill, restart, verify: the incident closes as healed without an alert.
async fn crash_and_heal(policy: &mut ServicePolicy) {
    let down = after(policy, 0, failed()).await;
    assert_eq!(restarts(&down), 1, "{down:?}");
    let done = after(policy, 1, restart_ok()).await;
    assert_eq!(
        done.next_check,
        Some(Instant::now() + Duration::from_secs(5))
    );
    let verified = after(policy, 5, healthy()).await;
    assert_eq!(closed_with(&verified), Some(Verdict::Healed));
    assert!(alerts(&verified).is_empty());
}

#[tokio::test(start_paused = true)]
async fn healthy_service_needs_nothing() {
    let mut policy = heal();
    let decision = after(&mut policy, 30, healthy()).await;
    assert_eq!(decision, Decision::default());
    assert_eq!(policy.phase(), &Phase::Healthy);
}

#[tokio::test(start_paused = true)]
async fn killed_service_is_restarted_and_healed() {
    let mut policy = heal();
    after(&mut policy, 30, healthy()).await;
    let down = after(&mut policy, 30, failed()).await;
    assert!(matches!(down.events[0], Event::IncidentOpened { .. }));
    assert_eq!(restarts(&down), 1);
    assert!(alerts(&down).is_empty());
    assert_eq!(policy.phase(), &Phase::Restarting { manual: false });

    after(&mut policy, 1, restart_ok()).await;
    let verified = after(&mut policy, 5, healthy()).await;
    assert_eq!(closed_with(&verified), Some(Verdict::Healed));
    assert!(verified.commands.is_empty());
    assert_eq!(policy.phase(), &Phase::Healthy);
    assert!(!policy.has_open_incident());
}

#[tokio::test(start_paused = true)]
async fn slow_starter_is_not_a_failure() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    after(&mut policy, 1, restart_ok()).await;
    // Active but its probe still fails: keep re-checking within the verify window.
    for _ in 0..5 {
        let decision = after(&mut policy, 2, unresponsive()).await;
        assert!(decision.commands.is_empty(), "{decision:?}");
        assert!(decision.next_check.is_some());
    }
    let verified = after(&mut policy, 2, healthy()).await;
    assert_eq!(closed_with(&verified), Some(Verdict::Healed));
}

#[tokio::test(start_paused = true)]
async fn restart_that_never_answers_fails_once() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    after(&mut policy, 1, restart_ok()).await;
    let mut decision = Decision::default();
    for _ in 0..15 {
        decision = after(&mut policy, 2, unresponsive()).await;
        if !decision.commands.is_empty() {
            break;
        }
    }
    assert_eq!(alerts(&decision), vec![Verdict::RestartFailed]);
    assert!(matches!(
        policy.phase(),
        Phase::NeedsAttention {
            verdict: Verdict::RestartFailed,
            ..
        }
    ));
    // Checked every cycle afterwards: no restart, no second alert.
    for _ in 0..10 {
        let later = after(&mut policy, 30, failed()).await;
        assert!(later.commands.is_empty(), "{later:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn failed_start_job_is_conclusive() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    let done = after(
        &mut policy,
        1,
        Input::RestartFinished(Err(RestartError::JobFailed {
            result: "failed".into(),
        })),
    )
    .await;
    assert!(done.commands.is_empty());
    let verified = after(&mut policy, 5, failed()).await;
    assert_eq!(alerts(&verified), vec![Verdict::RestartFailed]);
    let Command::Alert { reason, .. } = &verified.commands[0] else {
        panic!("expected an alert: {verified:?}");
    };
    assert!(
        reason.contains("restart job finished with \"failed\""),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn needs_attention_clears_when_healthy() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    after(&mut policy, 1, restart_ok()).await;
    after(&mut policy, 5, failed()).await;
    assert_eq!(policy.phase().label(), "needs attention");
    let fixed = after(&mut policy, 30, healthy()).await;
    assert_eq!(closed_with(&fixed), Some(Verdict::Recovered));
    assert_eq!(policy.phase(), &Phase::Healthy);
}

#[tokio::test(start_paused = true)]
async fn service_coming_back_is_rechecked_soon() {
    let mut policy = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    after(&mut policy, 0, failed()).await;
    // An admin starts it: active, but not listening yet.
    let starting = after(&mut policy, 30, unresponsive()).await;
    assert_eq!(
        starting.next_check,
        Some(Instant::now() + Duration::from_secs(2))
    );
    let back = after(&mut policy, 2, healthy()).await;
    assert_eq!(closed_with(&back), Some(Verdict::Recovered));
}

#[tokio::test(start_paused = true)]
async fn quick_rechecks_end_after_verify_window() {
    let mut policy = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    after(&mut policy, 0, failed()).await;
    after(&mut policy, 30, unresponsive()).await;
    let late = after(&mut policy, 31, unresponsive()).await;
    assert_eq!(late.next_check, None);
}

#[tokio::test(start_paused = true)]
async fn dying_right_after_heal_is_crash_loop() {
    let mut policy = heal();
    crash_and_heal(&mut policy).await;
    // 10 s after the restart, within the 30 s verify window: it came back and died again.
    let again = after(&mut policy, 4, failed()).await;
    assert_eq!(restarts(&again), 0);
    assert_eq!(alerts(&again), vec![Verdict::CrashLoop]);
    let later = after(&mut policy, 30, failed()).await;
    assert!(later.commands.is_empty());
}

#[tokio::test(start_paused = true)]
async fn restart_budget_stops_a_flapping_service() {
    let mut policy = heal();
    // Dies once a minute: each crash is healed, until the fourth within 15 minutes.
    for _ in 0..3 {
        crash_and_heal(&mut policy).await;
        advance(Duration::from_secs(54)).await;
    }
    assert_eq!(policy.restarts_in_window(Instant::now()), 3);
    let fourth = after(&mut policy, 0, failed()).await;
    assert_eq!(restarts(&fourth), 0);
    assert_eq!(alerts(&fourth), vec![Verdict::CrashLoop]);
    let Command::Alert { reason, .. } = &fourth.commands[0] else {
        panic!("expected an alert");
    };
    assert!(reason.contains("3 restarts within 15m"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn restart_budget_window_slides() {
    let mut policy = heal();
    for _ in 0..3 {
        crash_and_heal(&mut policy).await;
        advance(Duration::from_secs(5 * 60)).await;
    }
    // Restarts at about 0, 5 and 10 minutes; at 15 minutes the first has left the window.
    assert_eq!(policy.restarts_in_window(Instant::now()), 2);
    let down = after(&mut policy, 0, failed()).await;
    assert_eq!(restarts(&down), 1, "{down:?}");
}

#[tokio::test(start_paused = true)]
async fn crash_loop_alert_is_not_repeated_per_flap() {
    let mut policy = heal();
    for _ in 0..3 {
        crash_and_heal(&mut policy).await;
        advance(Duration::from_secs(54)).await;
    }
    let first = after(&mut policy, 0, failed()).await;
    assert_eq!(alerts(&first), vec![Verdict::CrashLoop]);
    // It comes back by itself, then dies again a minute later: still a crash loop, same window.
    after(&mut policy, 30, healthy()).await;
    let second = after(&mut policy, 60, failed()).await;
    assert_eq!(restarts(&second), 0);
    assert!(alerts(&second).is_empty(), "{second:?}");
    assert!(second
        .events
        .iter()
        .any(|e| matches!(e, Event::AlertSuppressed { .. })));
}

#[tokio::test(start_paused = true)]
async fn start_limit_cannot_restart() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    let refused = after(
        &mut policy,
        1,
        Input::RestartFinished(Err(RestartError::StartLimit)),
    )
    .await;
    assert_eq!(alerts(&refused), vec![Verdict::CannotRestart]);
    assert!(matches!(
        policy.phase(),
        Phase::NeedsAttention {
            verdict: Verdict::CannotRestart,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn unknown_unit_cannot_restart() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    let refused = after(
        &mut policy,
        0,
        Input::RestartFinished(Err(RestartError::NotFound("x.service".into()))),
    )
    .await;
    assert_eq!(alerts(&refused), vec![Verdict::CannotRestart]);
}

#[tokio::test(start_paused = true)]
async fn systemd_auto_restart_is_left_alone() {
    let mut policy = heal();
    after(&mut policy, 0, seen_n("active", "running", true, 0)).await;
    let waiting = after(
        &mut policy,
        30,
        seen_n("activating", "auto-restart", false, 0),
    )
    .await;
    assert_eq!(restarts(&waiting), 0);
    assert!(waiting
        .events
        .iter()
        .any(|e| matches!(e, Event::IncidentOpened { .. })));
    assert!(waiting.next_check.is_some());
    let back = after(&mut policy, 1, seen_n("active", "running", true, 1)).await;
    assert_eq!(closed_with(&back), Some(Verdict::RestartedBySystemd));
    assert!(back.commands.is_empty());
}

#[tokio::test(start_paused = true)]
async fn crash_between_checks_is_recorded() {
    let mut policy = heal();
    after(&mut policy, 0, seen_n("active", "running", true, 2)).await;
    let next = after(&mut policy, 30, seen_n("active", "running", true, 3)).await;
    assert!(next.events.contains(&Event::SystemdRestarted { count: 1 }));
    assert_eq!(closed_with(&next), Some(Verdict::RestartedBySystemd));
    assert!(next.commands.is_empty());
}

#[tokio::test(start_paused = true)]
async fn manual_start_resets_n_restarts_quietly() {
    let mut policy = heal();
    after(&mut policy, 0, seen_n("active", "running", true, 4)).await;
    let next = after(&mut policy, 30, seen_n("active", "running", true, 0)).await;
    assert_eq!(next, Decision::default());
}

#[tokio::test(start_paused = true)]
async fn systemd_flapping_becomes_crash_loop() {
    let mut policy = heal();
    after(&mut policy, 0, seen_n("active", "running", true, 0)).await;
    let mut sent = Vec::new();
    for n in 1..=8 {
        let decision = after(&mut policy, 60, seen_n("active", "running", true, n)).await;
        assert_eq!(restarts(&decision), 0);
        sent.extend(alerts(&decision));
    }
    // The fourth restart within the window alerts; the later ones are suppressed.
    assert_eq!(sent, vec![Verdict::CrashLoop]);
}

#[tokio::test(start_paused = true)]
async fn unit_stuck_activating_is_not_restarted() {
    let mut policy = heal();
    after(&mut policy, 0, seen("activating", "start", false)).await;
    let mut decision = Decision::default();
    for _ in 0..20 {
        decision = after(&mut policy, 2, seen("activating", "start", false)).await;
        assert_eq!(restarts(&decision), 0);
        if !decision.commands.is_empty() {
            break;
        }
    }
    assert_eq!(alerts(&decision), vec![Verdict::RestartFailed]);
}

#[tokio::test(start_paused = true)]
async fn slow_probe_is_retried_before_acting() {
    let mut policy = heal();
    let first = after(&mut policy, 0, unresponsive()).await;
    assert!(first.commands.is_empty());
    assert_eq!(
        first.next_check,
        Some(Instant::now() + Duration::from_secs(2))
    );
    let recovered = after(&mut policy, 2, healthy()).await;
    assert!(recovered
        .events
        .contains(&Event::ProbeRecovered { retries: 1 }));
    assert!(!policy.has_open_incident());
}

#[tokio::test(start_paused = true)]
async fn hung_service_is_restarted_after_retries() {
    let mut policy = heal();
    assert!(after(&mut policy, 0, unresponsive())
        .await
        .commands
        .is_empty());
    assert!(after(&mut policy, 2, unresponsive())
        .await
        .commands
        .is_empty());
    let third = after(&mut policy, 2, unresponsive()).await;
    assert_eq!(restarts(&third), 1, "{third:?}");
}

#[tokio::test(start_paused = true)]
async fn dead_main_pid_counts_as_down() {
    let mut policy = heal();
    let mut status = unit("active", "running", 0);
    status.main_pid_alive = Some(false);
    let decision = after(
        &mut policy,
        0,
        Input::Checked(Observation {
            unit: Ok(status),
            probes: vec![],
            blockers: Vec::new(),
        }),
    )
    .await;
    assert_eq!(restarts(&decision), 1);
}

#[tokio::test(start_paused = true)]
async fn active_exited_with_dead_socket_is_restarted() {
    // A sysv unit with RemainAfterExit stays "active (exited)" after its daemon died.
    let mut policy = heal();
    let mut status = unit("active", "exited", 0);
    status.main_pid = None;
    status.main_pid_alive = None;
    let dead_socket = || {
        Input::Checked(Observation {
            unit: Ok(status.clone()),
            probes: vec![probe(false)],
            blockers: Vec::new(),
        })
    };
    after(&mut policy, 0, dead_socket()).await;
    after(&mut policy, 2, dead_socket()).await;
    let decision = after(&mut policy, 2, dead_socket()).await;
    assert_eq!(restarts(&decision), 1);
}

#[tokio::test(start_paused = true)]
async fn watch_mode_alerts_critical_once() {
    let mut policy = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    let down = after(&mut policy, 0, failed()).await;
    assert_eq!(restarts(&down), 0);
    assert_eq!(alerts(&down), vec![Verdict::Down]);
    assert_eq!(policy.phase().label(), "down");
    for _ in 0..5 {
        let later = after(&mut policy, 30, failed()).await;
        assert!(later.commands.is_empty(), "{later:?}");
    }
    let back = after(&mut policy, 30, healthy()).await;
    assert_eq!(closed_with(&back), Some(Verdict::Recovered));
}

#[tokio::test(start_paused = true)]
async fn watch_mode_does_not_alert_non_critical() {
    let mut policy = ServicePolicy::new(Mode::Watch, false, Recovery::default());
    let down = after(&mut policy, 0, failed()).await;
    assert!(down.commands.is_empty());
    assert_eq!(policy.phase().label(), "down");
}

#[tokio::test(start_paused = true)]
async fn watch_mode_names_systemd_restart() {
    let mut policy = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    after(&mut policy, 0, seen_n("active", "running", true, 0)).await;
    after(
        &mut policy,
        30,
        seen_n("activating", "auto-restart", false, 0),
    )
    .await;
    let back = after(&mut policy, 1, seen_n("active", "running", true, 1)).await;
    assert_eq!(closed_with(&back), Some(Verdict::RestartedBySystemd));
    assert!(back.commands.is_empty());
}

#[tokio::test(start_paused = true)]
async fn manual_restart_bypasses_budget() {
    let mut policy = heal();
    for _ in 0..3 {
        crash_and_heal(&mut policy).await;
        advance(Duration::from_secs(54)).await;
    }
    after(&mut policy, 0, failed()).await;
    assert_eq!(policy.phase().label(), "needs attention");
    let manual = after(&mut policy, 10, Input::RestartRequested).await;
    assert_eq!(restarts(&manual), 1);
    after(&mut policy, 1, restart_ok()).await;
    let verified = after(&mut policy, 5, healthy()).await;
    assert_eq!(closed_with(&verified), Some(Verdict::Healed));
}

#[tokio::test(start_paused = true)]
async fn manual_restart_during_restart_is_skipped() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    let second = after(&mut policy, 0, Input::RestartRequested).await;
    assert!(second.commands.is_empty());
    assert!(matches!(second.events[0], Event::RestartSkipped { .. }));
}

#[tokio::test(start_paused = true)]
async fn manual_restart_of_healthy_service_that_breaks_alerts() {
    let mut policy = heal();
    after(&mut policy, 0, healthy()).await;
    let manual = after(&mut policy, 1, Input::RestartRequested).await;
    assert_eq!(restarts(&manual), 1);
    after(&mut policy, 1, restart_ok()).await;
    let verified = after(&mut policy, 5, failed()).await;
    assert!(verified
        .events
        .iter()
        .any(|e| matches!(e, Event::IncidentOpened { .. })));
    assert_eq!(alerts(&verified), vec![Verdict::RestartFailed]);
}

#[tokio::test(start_paused = true)]
async fn manual_restart_of_healthy_service_stays_quiet() {
    let mut policy = heal();
    after(&mut policy, 1, Input::RestartRequested).await;
    after(&mut policy, 1, restart_ok()).await;
    let verified = after(&mut policy, 5, healthy()).await;
    assert!(verified.events.contains(&Event::ManualRestartVerified));
    assert!(!policy.has_open_incident());
}

#[tokio::test(start_paused = true)]
async fn restored_incident_keeps_verdict_and_silence() {
    let restored = Restored {
        open_incident: Some((
            Some(Verdict::RestartFailed),
            "port 25 refused".into(),
            true,
            Duration::from_secs(120),
        )),
        restart_ages: vec![Duration::from_secs(60)],
        crash_loop_alert_age: None,
    };
    let mut policy = ServicePolicy::restore(
        Mode::Heal,
        true,
        Recovery::default(),
        restored,
        Instant::now(),
    );
    assert_eq!(policy.phase().label(), "needs attention");
    assert_eq!(policy.restarts_in_window(Instant::now()), 1);
    let check = after(&mut policy, 30, failed()).await;
    assert!(check.commands.is_empty(), "{check:?}");
    let back = after(&mut policy, 30, healthy()).await;
    assert_eq!(closed_with(&back), Some(Verdict::Recovered));
}

#[tokio::test(start_paused = true)]
async fn restored_incident_keeps_its_age() {
    let restored = Restored {
        open_incident: Some((None, "unit failed".into(), false, Duration::from_secs(300))),
        restart_ages: vec![],
        crash_loop_alert_age: None,
    };
    let mut policy = ServicePolicy::restore(
        Mode::Heal,
        true,
        Recovery::default(),
        restored,
        Instant::now(),
    );
    let back = after(&mut policy, 10, healthy()).await;
    assert!(
        back.events.iter().any(|e| matches!(
            e,
            Event::IncidentClosed { after, .. } if *after == Duration::from_secs(310)
        )),
        "{back:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn death_after_manual_restart_is_healed() {
    let mut policy = heal();
    after(&mut policy, 0, Input::RestartRequested).await;
    after(&mut policy, 1, restart_ok()).await;
    after(&mut policy, 1, healthy()).await;
    // Dies 6 s after the admin's restart: a new failure, not a crash loop.
    let down = after(&mut policy, 4, failed()).await;
    assert_eq!(restarts(&down), 1, "{down:?}");
    assert!(alerts(&down).is_empty());
}

#[tokio::test(start_paused = true)]
async fn restored_budget_still_limits() {
    let restored = Restored {
        open_incident: None,
        restart_ages: vec![
            Duration::from_secs(600),
            Duration::from_secs(300),
            Duration::from_secs(120),
        ],
        crash_loop_alert_age: None,
    };
    let mut policy = ServicePolicy::restore(
        Mode::Heal,
        true,
        Recovery::default(),
        restored,
        Instant::now(),
    );
    let down = after(&mut policy, 0, failed()).await;
    assert_eq!(restarts(&down), 0);
    assert_eq!(alerts(&down), vec![Verdict::CrashLoop]);
}

#[tokio::test(start_paused = true)]
async fn restored_incident_without_verdict_is_reevaluated() {
    let restored = Restored {
        open_incident: Some((None, "unit failed".into(), false, Duration::from_secs(5))),
        restart_ages: vec![],
        crash_loop_alert_age: None,
    };
    let mut policy = ServicePolicy::restore(
        Mode::Heal,
        true,
        Recovery::default(),
        restored,
        Instant::now(),
    );
    let down = after(&mut policy, 0, failed()).await;
    assert_eq!(restarts(&down), 1);
    // The incident was already open: no second "opened" event.
    assert!(!down
        .events
        .iter()
        .any(|e| matches!(e, Event::IncidentOpened { .. })));
}

#[tokio::test(start_paused = true)]
async fn long_pause_forgets_old_restarts() {
    // A suspended machine resumes hours later: old restarts leave the window, nothing bursts.
    let mut policy = heal();
    for _ in 0..3 {
        crash_and_heal(&mut policy).await;
        advance(Duration::from_secs(60)).await;
    }
    advance(Duration::from_secs(6 * 3600)).await;
    let decision = policy.step(healthy(), Instant::now());
    assert_eq!(decision, Decision::default());
    assert_eq!(policy.restarts_in_window(Instant::now()), 0);
}

#[test]
fn verdict_text_round_trips() {
    for verdict in [
        Verdict::Healed,
        Verdict::RestartedBySystemd,
        Verdict::Recovered,
        Verdict::Down,
        Verdict::RestartFailed,
        Verdict::CrashLoop,
        Verdict::CannotRestart,
    ] {
        assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
    }
    assert_eq!(Verdict::parse("exploded"), None);
}

fn failed_blocked(blocker: &str) -> Input {
    Input::Checked(Observation {
        unit: Ok(unit("failed", "failed", 0)),
        probes: vec![probe(false)],
        blockers: vec![blocker.to_string()],
    })
}

#[tokio::test(start_paused = true)]
async fn blocker_skips_restart_and_alerts_once() {
    let mut policy = heal();
    let disk = "disk full on /var (100 %, 0 B free, 12 inodes left)";
    let down = after(&mut policy, 0, failed_blocked(disk)).await;
    assert_eq!(restarts(&down), 0);
    assert_eq!(alerts(&down), vec![Verdict::NotRestarted]);
    assert!(down.events.iter().any(|event| matches!(
        event,
        Event::RestartSkipped { reason } if reason.contains(disk)
    )));
    assert_eq!(policy.phase().label(), "needs attention");

    // Still full: no restart, no second alert, for as long as it lasts.
    for _ in 0..10 {
        let again = after(&mut policy, 30, failed_blocked(disk)).await;
        assert_eq!(restarts(&again), 0);
        assert!(alerts(&again).is_empty());
    }

    // Space is back: restarted at once, within the same incident.
    let freed = after(&mut policy, 30, failed()).await;
    assert_eq!(restarts(&freed), 1);
    assert!(freed
        .events
        .iter()
        .any(|event| matches!(event, Event::BlockerCleared { blocker } if blocker == disk)));
    after(&mut policy, 1, restart_ok()).await;
    let healed = after(&mut policy, 5, healthy()).await;
    assert!(healed.events.iter().any(|event| matches!(
        event,
        Event::IncidentClosed {
            verdict: Verdict::Healed,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn restart_after_blocker_that_fails_alerts_again() {
    let mut policy = heal();
    after(
        &mut policy,
        0,
        failed_blocked("config error: main.cf line 5"),
    )
    .await;
    let freed = after(&mut policy, 30, failed()).await;
    assert_eq!(restarts(&freed), 1);
    after(&mut policy, 1, restart_ok()).await;
    let failed_again = after(&mut policy, 31, failed()).await;
    assert_eq!(alerts(&failed_again), vec![Verdict::RestartFailed]);
}

#[tokio::test(start_paused = true)]
async fn blockers_wanted_only_when_used() {
    let mut policy = heal();
    assert!(policy.wants_blockers());
    after(&mut policy, 0, failed_blocked("disk full on /var")).await;
    assert!(policy.wants_blockers(), "waiting for the blocker to go");

    let mut failed_restart = heal();
    after(&mut failed_restart, 0, failed()).await;
    after(&mut failed_restart, 1, restart_ok()).await;
    after(&mut failed_restart, 31, failed()).await;
    assert_eq!(failed_restart.phase().label(), "needs attention");
    assert!(!failed_restart.wants_blockers());

    let watch = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    assert!(!watch.wants_blockers());
}

#[tokio::test(start_paused = true)]
async fn watch_mode_ignores_blockers() {
    let mut policy = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    let down = after(&mut policy, 0, failed_blocked("disk full on /var")).await;
    assert_eq!(alerts(&down), vec![Verdict::Down]);
}

#[tokio::test(start_paused = true)]
async fn restored_blocked_incident_restarts_when_clear() {
    let restored = Restored {
        open_incident: Some((
            Some(Verdict::NotRestarted),
            "disk full on /var".into(),
            true,
            Duration::from_secs(600),
        )),
        ..Restored::default()
    };
    let mut policy = ServicePolicy::restore(
        Mode::Heal,
        true,
        Recovery::default(),
        restored,
        Instant::now(),
    );
    let still = after(&mut policy, 0, failed_blocked("disk full on /var")).await;
    assert_eq!(restarts(&still), 0);
    let clear = after(&mut policy, 30, failed()).await;
    assert_eq!(restarts(&clear), 1);
}

#[tokio::test(start_paused = true)]
async fn paused_service_is_neither_restarted_nor_alerted() {
    let mut policy = heal();
    after(&mut policy, 0, healthy()).await;
    let pause = after(&mut policy, 1, Input::Pause { until: None }).await;
    assert_eq!(pause.events, vec![Event::Paused { for_: None }]);
    assert_eq!(policy.paused(), Some(None));
    assert!(!policy.wants_blockers());

    // The admin stops it for an hour of maintenance: checked, never restarted, no incident.
    for _ in 0..120 {
        let decision = after(&mut policy, 30, failed()).await;
        assert_eq!(decision, Decision::default());
    }
    assert!(!policy.has_open_incident());

    // Resumed while still down: healed as usual at once.
    let resume = after(&mut policy, 1, Input::Resume).await;
    assert_eq!(resume.events, vec![Event::Resumed { expired: false }]);
    assert_eq!(resume.next_check, Some(Instant::now()));
    crash_and_heal(&mut policy).await;
}

#[tokio::test(start_paused = true)]
async fn pause_window_ends_by_itself() {
    let mut policy = heal();
    let until = Instant::now() + Duration::from_secs(30 * 60);
    let pause = after(&mut policy, 0, Input::Pause { until: Some(until) }).await;
    assert_eq!(
        pause.events,
        vec![Event::Paused {
            for_: Some(Duration::from_secs(30 * 60))
        }]
    );
    assert_eq!(pause.next_check, Some(until));
    let during = after(&mut policy, 29 * 60, failed()).await;
    assert!(during.commands.is_empty());
    assert_eq!(during.next_check, Some(until));

    // The first check after the window resumes and heals in the same step.
    let ended = after(&mut policy, 60, failed()).await;
    assert_eq!(ended.events[0], Event::Resumed { expired: true });
    assert_eq!(restarts(&ended), 1);
    assert_eq!(policy.paused(), None);
}

#[tokio::test(start_paused = true)]
async fn pause_mutes_an_open_incident_until_resumed() {
    let mut policy = ServicePolicy::new(Mode::Watch, true, Recovery::default());
    let down = after(&mut policy, 0, failed()).await;
    assert_eq!(alerts(&down), vec![Verdict::Down]);
    after(&mut policy, 1, Input::Pause { until: None }).await;
    assert_eq!(policy.phase(), &Phase::Healthy);

    // A manual restart in the window runs and is verified, but its failure is not mailed.
    let manual = after(&mut policy, 1, Input::RestartRequested).await;
    assert_eq!(restarts(&manual), 1);
    after(&mut policy, 1, restart_ok()).await;
    let failed_again = after(&mut policy, 15, failed()).await;
    assert!(alerts(&failed_again).is_empty(), "{failed_again:?}");
    assert!(matches!(
        policy.phase(),
        Phase::NeedsAttention {
            verdict: Verdict::RestartFailed,
            ..
        }
    ));

    // Still down after the window: the incident that stayed open is alerted again.
    after(&mut policy, 1, Input::Resume).await;
    let after_window = after(&mut policy, 0, failed()).await;
    assert_eq!(alerts(&after_window), vec![Verdict::Down]);
}

#[tokio::test(start_paused = true)]
async fn incident_closes_when_healthy_after_the_window() {
    let mut policy = heal();
    after(&mut policy, 0, failed()).await;
    after(&mut policy, 0, Input::Pause { until: None }).await;
    // The restart issued before the pause finishes and is verified.
    after(&mut policy, 1, restart_ok()).await;
    let verified = after(&mut policy, 5, healthy()).await;
    assert_eq!(closed_with(&verified), Some(Verdict::Healed));
    after(&mut policy, 60, Input::Resume).await;
    assert_eq!(after(&mut policy, 0, healthy()).await, Decision::default());
}

#[tokio::test(start_paused = true)]
async fn resume_without_pause_changes_nothing() {
    let mut policy = heal();
    assert_eq!(
        after(&mut policy, 0, Input::Resume).await,
        Decision::default()
    );
}

#[tokio::test(start_paused = true)]
async fn cleared_blocker_is_named_after_a_failed_manual_restart() {
    let mut policy = heal();
    let config = "config error: /etc/postfix/main.cf line 50: missing '='";
    after(&mut policy, 0, failed_blocked(config)).await;
    // The admin tries a restart before fixing the file; it fails.
    after(&mut policy, 10, Input::RestartRequested).await;
    after(&mut policy, 1, restart_ok()).await;
    let failed_again = after(&mut policy, 15, failed_blocked(config)).await;
    // It failed for the same cause: still "not restarted", and no second alert.
    assert!(alerts(&failed_again).is_empty(), "{failed_again:?}");
    assert_eq!(
        policy.phase(),
        &Phase::NeedsAttention {
            verdict: Verdict::NotRestarted,
            reason: config.to_string()
        }
    );

    // The file is fixed: the restart names the config error, not the failed restart.
    let fixed = after(&mut policy, 30, failed()).await;
    assert_eq!(restarts(&fixed), 1);
    assert!(
        fixed.events.iter().any(|event| matches!(
            event,
            Event::BlockerCleared { blocker } if blocker == config
        )),
        "{fixed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn restart_after_a_fix_ignores_the_used_budget() {
    let mut policy = heal();
    // Three crashes healed within the window use up the budget.
    for _ in 0..3 {
        crash_and_heal(&mut policy).await;
        after(&mut policy, 60, healthy()).await;
    }
    let config = "config error: /etc/postfix/main.cf line 50: missing '='";
    let blocked = after(&mut policy, 30, failed_blocked(config)).await;
    assert_eq!(alerts(&blocked), vec![Verdict::NotRestarted]);

    // The admin fixes the file: restarted at once, not declared a crash loop.
    let fixed = after(&mut policy, 30, failed()).await;
    assert_eq!(restarts(&fixed), 1, "{fixed:?}");
    assert!(alerts(&fixed).is_empty(), "{fixed:?}");
    after(&mut policy, 1, restart_ok()).await;
    let healed = after(&mut policy, 5, healthy()).await;
    assert_eq!(closed_with(&healed), Some(Verdict::Healed));
}
