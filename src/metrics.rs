//! Prometheus metrics: the service runners record into them, the dashboard serves them at
//! `/metrics`. Names follow Prometheus conventions (base units, `_total` for counters); they
//! are part of the interface, as alerting rules refer to them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabel {
    service: String,
    /// `auto` or `manual`.
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    service: String,
    /// `healed`, `failed` or `cannot_restart`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    /// `sent`, `pending` (still retrying) or `failed` (given up).
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Probe and check durations: 1 ms to about 16 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric selfheal exports, shared by the runners and the web server.
pub struct Metrics {
    registry: Registry,
    up: Family<ServiceLabel, Gauge>,
    needs_attention: Family<ServiceLabel, Gauge>,
    paused: Family<ServiceLabel, Gauge>,
    incident_open: Family<ServiceLabel, Gauge>,
    probe_duration: HistogramFamily<ServiceLabel>,
    check_duration: HistogramFamily<ServiceLabel>,
    restarts: Family<RestartLabel, Counter>,
    outcomes: Family<OutcomeLabel, Counter>,
    alerts: Family<AlertLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("selfheal");
        let metrics = Metrics {
            up: Family::default(),
            needs_attention: Family::default(),
            paused: Family::default(),
            incident_open: Family::default(),
            probe_duration: Family::new_with_constructor(duration_histogram),
            check_duration: Family::new_with_constructor(duration_histogram),
            restarts: Family::default(),
            outcomes: Family::default(),
            alerts: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "service_up",
            "1 while the service is healthy, 0 otherwise",
            metrics.up.clone(),
        );
        registry.register(
            "service_needs_attention",
            "1 while selfheal cannot heal the service and waits for the admin",
            metrics.needs_attention.clone(),
        );
        registry.register(
            "service_paused",
            "1 while an admin has paused healing of the service",
            metrics.paused.clone(),
        );
        registry.register(
            "incident_open",
            "1 while the service has an open incident",
            metrics.incident_open.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time the service's slowest probe took to answer",
            metrics.probe_duration.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "Time one check of the service took: unit state and every probe",
            metrics.check_duration.clone(),
        );
        registry.register(
            "restarts",
            "Restarts selfheal issued",
            metrics.restarts.clone(),
        );
        registry.register(
            "restart_outcomes",
            "How restarts ended: healed, failed (not healthy after the verify window) or \
             cannot_restart (the service manager refused)",
            metrics.outcomes.clone(),
        );
        registry.register(
            "alert_messages",
            "Alert messages in the spool: sent, pending (still retrying) or failed (given up \
             after expire_after)",
            metrics.alerts.clone(),
        );
        registry.register(
            "build",
            "The running selfheal",
            Info::new(BuildLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    fn label(service: &str) -> ServiceLabel {
        ServiceLabel {
            service: service.to_string(),
        }
    }

    /// Records the state a service is in after a check or an action.
    pub fn set_state(&self, service: &str, up: bool, needs_attention: bool, paused: bool) {
        let label = Self::label(service);
        self.up.get_or_create(&label).set(i64::from(up));
        self.needs_attention
            .get_or_create(&label)
            .set(i64::from(needs_attention));
        self.paused.get_or_create(&label).set(i64::from(paused));
    }

    pub fn set_incident_open(&self, service: &str, open: bool) {
        self.incident_open
            .get_or_create(&Self::label(service))
            .set(i64::from(open));
    }

    pub fn observe_check(&self, service: &str, check_seconds: f64, probe_seconds: Option<f64>) {
        let label = Self::label(service);
        self.check_duration
            .get_or_create(&label)
            .observe(check_seconds);
        if let Some(seconds) = probe_seconds {
            self.probe_duration.get_or_create(&label).observe(seconds);
        }
    }

    pub fn restart_issued(&self, service: &str, manual: bool) {
        self.restarts
            .get_or_create(&RestartLabel {
                service: service.to_string(),
                trigger: if manual { "manual" } else { "auto" }.to_string(),
            })
            .inc();
    }

    pub fn restart_outcome(&self, service: &str, outcome: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabel {
                service: service.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sets the spool's message counts, read from the store before each scrape.
    pub fn set_alerts(&self, sent: i64, pending: i64, failed: i64) {
        for (state, count) in [("sent", sent), ("pending", pending), ("failed", failed)] {
            self.alerts
                .get_or_create(&AlertLabel {
                    state: state.to_string(),
                })
                .set(count);
        }
    }

    /// The text exposition format, version 0.0.4 (OpenMetrics-compatible with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let metrics = Metrics::new();
        metrics.set_state("postfix", true, false, false);
        metrics.observe_check("postfix", 0.012, Some(0.004));
        metrics.restart_issued("postfix", false);
        metrics.restart_outcome("postfix", "healed");
        metrics.set_alerts(3, 1, 0);
        metrics.set_incident_open("postfix", false);
        let text = metrics.encode();
        for line in [
            "selfheal_service_up{service=\"postfix\"} 1",
            "selfheal_service_needs_attention{service=\"postfix\"} 0",
            "selfheal_restarts_total{service=\"postfix\",trigger=\"auto\"} 1",
            "selfheal_restart_outcomes_total{service=\"postfix\",outcome=\"healed\"} 1",
            "selfheal_alert_messages{state=\"pending\"} 1",
            "selfheal_probe_duration_seconds_count{service=\"postfix\"} 1",
            "selfheal_check_duration_seconds_sum{service=\"postfix\"} 0.012",
            "selfheal_incident_open{service=\"postfix\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains("selfheal_build_info{version=\""), "{text}");

        // Every series the shipped alerting rules use is one selfheal exports.
        let rules = include_str!("../dist/prometheus/selfheal.rules.yml");
        let mut used = 0;
        for (index, _) in rules.match_indices("selfheal_") {
            let name: String = rules[index..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.ends_with(".rules") || name == "selfheal_" {
                continue;
            }
            used += 1;
            assert!(
                text.contains(&format!("\n{name}{{")),
                "{name} is not exported:\n{text}"
            );
        }
        assert!(used >= 6, "the rules use {used} selfheal series");
    }
}
