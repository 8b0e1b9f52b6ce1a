//! Alert storms on paused time: the recovery policy of each service and the alert planner run
//! together for simulated hours, and the mails they produce are counted.

use std::time::Duration;

use tokio::time::{advance, Instant};

use selfheal::alert::planner::{ItemKind, Limits, Plan, Planner, Queued};
use selfheal::config::Mode;
use selfheal::manager::{ActiveState, RestartError, RestartReport, UnitStatus};
use selfheal::policy::{Command, Event, Input, Observation, Recovery, ServicePolicy};
use selfheal::probe::{Outcome, ProbeReport};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const INTERVAL: Duration = Duration::from_secs(30);

/// How a simulated service misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trouble {
    /// Something kills it every this many seconds; a restart brings it back.
    KilledEvery(u64),
    /// Its config is broken from the start: every restart fails.
    BrokenConfig,
    /// It dies once at this second; a restart fails until `fixed_at`, then works.
    DiesAt { at: u64, fixed_at: u64 },
}

struct Service {
    trouble: Trouble,
    policy: ServicePolicy,
    up: bool,
    next_check: Instant,
    restarts: u32,
    /// Id of the open incident, and whether it was alerted.
    incident: Option<(i64, bool)>,
}

/// Every mail the planner produced: (seconds since start, kinds of the items it carried).
type Mails = Vec<(u64, Vec<ItemKind>)>;

struct Sim {
    start: Instant,
    services: Vec<Service>,
    planner: Planner,
    next_item: i64,
    next_incident: i64,
    /// Kind of each queued item, by id.
    kinds: Vec<(i64, ItemKind)>,
    mails: Mails,
    summaries: Vec<(u64, usize)>,
}

fn unit(up: bool) -> UnitStatus {
    UnitStatus {
        load_state: "loaded".into(),
        active_state: ActiveState::parse(if up { "active" } else { "failed" }),
        sub_state: if up { "running" } else { "failed" }.into(),
        result: if up { "success" } else { "signal" }.into(),
        main_pid: Some(100),
        main_pid_alive: Some(up),
        n_restarts: Some(0),
        exec_main_status: None,
        inactive_exit_usec: 0,
        invocation_id: None,
    }
}

fn observation(up: bool) -> Observation {
    Observation {
        unit: Ok(unit(up)),
        probes: vec![ProbeReport {
            endpoint: "tcp 127.0.0.1:25".into(),
            outcome: if up {
                Outcome::healthy(Duration::from_millis(1))
            } else {
                Outcome::Refused {
                    error: "connection refused".into(),
                }
            },
        }],
        blockers: Vec::new(),
    }
}

impl Sim {
    fn new(troubles: &[Trouble], limits: Limits) -> Sim {
        let start = Instant::now();
        Sim {
            start,
            services: troubles
                .iter()
                .map(|trouble| Service {
                    trouble: *trouble,
                    policy: ServicePolicy::new(Mode::Heal, true, Recovery::default()),
                    up: !matches!(trouble, Trouble::BrokenConfig),
                    next_check: start,
                    restarts: 0,
                    incident: None,
                })
                .collect(),
            planner: Planner::new(limits),
            next_item: 1,
            next_incident: 1,
            kinds: Vec::new(),
            mails: Vec::new(),
            summaries: Vec::new(),
        }
    }

    fn second(&self) -> u64 {
        Instant::now().duration_since(self.start).as_secs()
    }

    fn queue(&mut self, incident: i64, kind: ItemKind) {
        let item = self.next_item;
        self.next_item += 1;
        self.kinds.push((item, kind));
        self.planner.queue(
            Queued {
                item,
                incident: Some(incident),
                kind,
            },
            Instant::now(),
        );
    }

    fn kind_of(&self, item: i64) -> ItemKind {
        self.kinds
            .iter()
            .find(|(id, _)| *id == item)
            .map(|(_, kind)| *kind)
            .expect("every item was queued")
    }

    /// Feeds one input to service `index` and carries out what follows, restarts included.
    fn step(&mut self, index: usize, input: Input) {
        let now = Instant::now();
        let decision = self.services[index].policy.step(input, now);
        for event in &decision.events {
            match event {
                Event::IncidentOpened { .. } => {
                    self.services[index].incident = Some((self.next_incident, false));
                    self.next_incident += 1;
                }
                Event::IncidentClosed { .. } => {
                    if let Some((incident, alerted)) = self.services[index].incident.take() {
                        if alerted {
                            self.queue(incident, ItemKind::Recovered);
                        } else {
                            self.planner.closed(incident);
                        }
                    }
                }
                _ => {}
            }
        }
        self.services[index].next_check = decision.next_check.unwrap_or(now + INTERVAL);
        for command in decision.commands {
            match command {
                Command::Alert { .. } => {
                    let incident = match &mut self.services[index].incident {
                        Some((incident, alerted)) => {
                            *alerted = true;
                            *incident
                        }
                        // A flapping service alerts between incidents.
                        None => {
                            self.next_incident += 1;
                            self.next_incident - 1
                        }
                    };
                    self.queue(incident, ItemKind::Problem);
                }
                Command::Restart => {
                    let second = self.second();
                    let service = &mut self.services[index];
                    service.restarts += 1;
                    let works = match service.trouble {
                        Trouble::KilledEvery(_) => true,
                        Trouble::BrokenConfig => false,
                        Trouble::DiesAt { fixed_at, .. } => second >= fixed_at,
                    };
                    let result = if works {
                        service.up = true;
                        Ok(RestartReport {
                            reset_failed: true,
                            job_result: "done".into(),
                            elapsed: Duration::from_millis(700),
                            retried_after_rate_limit: false,
                            killed: false,
                        })
                    } else {
                        Err(RestartError::JobFailed {
                            result: "failed".into(),
                        })
                    };
                    self.step(index, Input::RestartFinished(result));
                }
            }
        }
    }

    /// Runs for `length` of paused time, one second at a time.
    async fn run(&mut self, length: Duration) {
        let end = Instant::now() + length;
        while Instant::now() < end {
            advance(SECOND).await;
            let second = self.second();
            for index in 0..self.services.len() {
                match self.services[index].trouble {
                    Trouble::KilledEvery(period) if second % period == 0 => {
                        self.services[index].up = false;
                    }
                    Trouble::DiesAt { at, .. } if second == at => self.services[index].up = false,
                    _ => {}
                }
                if Instant::now() >= self.services[index].next_check {
                    let up = self.services[index].up;
                    self.step(index, Input::Checked(observation(up)));
                }
            }
            for plan in self.planner.poll(Instant::now()) {
                match plan {
                    Plan::Send(items) => {
                        let kinds = items.iter().map(|item| self.kind_of(*item)).collect();
                        self.mails.push((second, kinds));
                    }
                    Plan::Summary(items) => self.summaries.push((second, items.len())),
                    Plan::Suppress(_) => {}
                    Plan::Remind { incident, .. } => self.queue(incident, ItemKind::Reminder),
                }
            }
        }
    }
}

/// One service killed every 40 s and another with a broken config, for 30 minutes. The killed
/// one is restarted until its budget is spent, then alerted once as a crash loop. The broken one
/// is alerted once. That makes two mails, and no reminder is due yet.
#[tokio::test(start_paused = true)]
async fn killed_and_broken_for_half_an_hour() {
    let mut sim = Sim::new(
        &[Trouble::KilledEvery(40), Trouble::BrokenConfig],
        Limits::default(),
    );
    sim.run(30 * MINUTE).await;

    eprintln!("mails: {:?}", sim.mails);
    eprintln!(
        "restarts: killed {}, broken {}",
        sim.services[0].restarts, sim.services[1].restarts
    );
    assert_eq!(sim.mails.len(), 2, "{:?}", sim.mails);
    assert!(sim
        .mails
        .iter()
        .all(|(_, kinds)| kinds == &vec![ItemKind::Problem]));
    assert!(sim.summaries.is_empty());
    // The restart budget (3 in 15 min) bounds the restarts; a broken config gets one try.
    assert!(
        sim.services[0].restarts <= 6,
        "{}",
        sim.services[0].restarts
    );
    assert_eq!(sim.services[1].restarts, 1);
}

/// The same storm for a day and a half: each open incident adds reminders at 1 h, 6 h and 24 h
/// after its alert, and nothing else.
#[tokio::test(start_paused = true)]
async fn storm_reminders_over_a_day() {
    let mut sim = Sim::new(
        &[Trouble::KilledEvery(40), Trouble::BrokenConfig],
        Limits::default(),
    );
    sim.run(36 * HOUR).await;

    let problems = sim
        .mails
        .iter()
        .filter(|(_, kinds)| kinds.contains(&ItemKind::Problem))
        .count();
    let reminders: Vec<u64> = sim
        .mails
        .iter()
        .filter(|(_, kinds)| kinds.contains(&ItemKind::Reminder))
        .map(|(second, _)| *second)
        .collect();
    eprintln!("mails: {:?}", sim.mails);
    assert_eq!(problems, 2, "{:?}", sim.mails);
    assert_eq!(reminders.len(), 6, "{:?}", sim.mails);
    assert!(sim.summaries.is_empty());
}

/// A service that dies, cannot be restarted for 20 minutes, and then comes back after the
/// admin fixed it: one alert and one "recovered" mail.
#[tokio::test(start_paused = true)]
async fn alerted_then_recovered() {
    let mut sim = Sim::new(
        &[Trouble::DiesAt {
            at: 60,
            fixed_at: 1200,
        }],
        Limits::default(),
    );
    sim.run(10 * MINUTE).await;
    assert_eq!(sim.mails.len(), 1, "{:?}", sim.mails);

    // The admin fixes it and restarts it; selfheal's next check finds it healthy.
    advance(11 * MINUTE).await;
    sim.services[0].up = true;
    sim.run(5 * MINUTE).await;
    assert_eq!(
        sim.mails
            .iter()
            .map(|(_, kinds)| kinds.clone())
            .collect::<Vec<_>>(),
        vec![vec![ItemKind::Problem], vec![ItemKind::Recovered]]
    );
}

/// Twenty services with broken configs going down one minute apart: ten mails in the first
/// hour, then one summary naming the other ten.
#[tokio::test(start_paused = true)]
async fn hourly_cap_holds_the_rest_for_a_summary() {
    let troubles: Vec<Trouble> = (0..20)
        .map(|index| Trouble::DiesAt {
            at: 60 + index * 60,
            fixed_at: u64::MAX,
        })
        .collect();
    let mut sim = Sim::new(
        &troubles,
        Limits {
            reminders: Vec::new(),
            ..Limits::default()
        },
    );
    sim.run(2 * HOUR).await;

    eprintln!("mails: {:?}\nsummaries: {:?}", sim.mails, sim.summaries);
    assert_eq!(sim.mails.len(), 10, "{:?}", sim.mails);
    assert_eq!(sim.summaries.len(), 1, "{:?}", sim.summaries);
    assert_eq!(sim.summaries[0].1, 10);
    // The summary goes out when the hour that began with the first mail ends.
    let first = sim.mails[0].0;
    assert_eq!(sim.summaries[0].0, first + 3600);
}

/// Three services failing within the same check cycle go out as one mail.
#[tokio::test(start_paused = true)]
async fn simultaneous_failures_share_one_mail() {
    let troubles = [
        Trouble::DiesAt {
            at: 100,
            fixed_at: u64::MAX,
        },
        Trouble::DiesAt {
            at: 101,
            fixed_at: u64::MAX,
        },
        Trouble::DiesAt {
            at: 103,
            fixed_at: u64::MAX,
        },
    ];
    let mut sim = Sim::new(&troubles, Limits::default());
    sim.run(10 * MINUTE).await;
    assert_eq!(
        sim.mails,
        vec![(sim.mails[0].0, vec![ItemKind::Problem; 3])],
        "{:?}",
        sim.mails
    );
}
