//! `[services.NAME]` tables: presets, systemd units or start and stop commands, the `probe` and
//! `probes` keys, and the timing keys, which the top level also sets as defaults.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use toml_edit::{TableLike, Value};

use super::checker::{example_of, join_key, Checker, Field, Keys};
use crate::config::presets::{self, Preset};
use crate::config::{Mode, ServiceConfig, Timing, DEFAULT_PROBE_TIMEOUT, DEFAULT_RESTART_TIMEOUT};
use crate::diagnose::config_test::{find_program, PROGRAM_DIRS};
use crate::manager::CommandSpec;
use crate::probe::ProbeSpec;

/// Keys allowed both at the top level, as defaults, and in a service table.
pub(super) const TIMING_KEYS: Keys = &[
    ("probe_timeout", r#"probe_timeout = "5s""#),
    ("probe_retries", "probe_retries = 2"),
    ("retry_interval", r#"retry_interval = "2s""#),
    ("verify_after", r#"verify_after = "5s""#),
    ("verify_timeout", r#"verify_timeout = "30s""#),
    ("max_restarts", "max_restarts = 3"),
    ("restart_window", r#"restart_window = "15min""#),
    ("restart_timeout", r#"restart_timeout = "2min""#),
];

pub(super) const SERVICE_KEYS: Keys = &[
    ("enabled", "enabled = true"),
    ("preset", r#"preset = "postfix""#),
    ("mode", r#"mode = "watch""#),
    ("critical", "critical = true"),
    ("unit", r#"unit = "ai-filter.service""#),
    ("units", r#"units = ["mariadb.service", "mysql.service"]"#),
    ("probe", r#"probe = { tcp = "127.0.0.1:10030" }"#),
    (
        "probes",
        r#"probes = [{ tcp = "127.0.0.1:25" }, { unix = "/run/x.sock" }]"#,
    ),
    ("start", r#"start = "/etc/init.d/ai-filter start""#),
    ("stop", r#"stop = "/etc/init.d/ai-filter stop""#),
    (
        "restart",
        r#"restart = ["/etc/init.d/ai-filter", "restart"]"#,
    ),
    ("pidfile", r#"pidfile = "/run/ai-filter.pid""#),
    ("process", r#"process = "ai-filter""#),
    (
        "config_test",
        r#"config_test = ["/usr/sbin/ai-filter", "--check-config"]"#,
    ),
];

/// Service keys that make a service managed by commands instead of a systemd unit.
const COMMAND_KEYS: [&str; 5] = ["start", "stop", "restart", "pidfile", "process"];

/// Unit types of systemd, which end a unit name as its suffix.
const UNIT_SUFFIXES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
    "slice",
    "scope",
];

/// Maximum length in bytes of a process name that can match, because Linux keeps only the
/// first 15 bytes in `/proc/PID/comm`.
const MAX_PROCESS_NAME: usize = 15;

/// Upper bound of `max_restarts` and `probe_retries`. Higher values only delay the alert about
/// a service that keeps failing.
const MAX_COUNT: i64 = 100;

/// Keys read from one service table, each already validated on its own.
#[derive(Default)]
struct ServiceKeys {
    enabled: Option<bool>,
    /// Whether a `preset` key is present, even one naming no preset.
    preset_key: bool,
    preset: Option<&'static Preset>,
    mode: Option<Mode>,
    critical: Option<bool>,
    /// Lines of the `unit` and `units` keys when present.
    unit_line: Option<usize>,
    units_line: Option<usize>,
    units: Option<Vec<String>>,
    probe_line: Option<usize>,
    probes_line: Option<usize>,
    probes: Option<Vec<ProbeSpec>>,
    timing: Timing,
    /// Command keys present, in file order, with their lines.
    command_keys: Vec<(&'static str, usize)>,
    start: Option<Vec<String>>,
    stop: Option<Vec<String>>,
    restart: Option<Vec<String>>,
    pidfile: Option<PathBuf>,
    process: Option<String>,
    config_test: Option<Vec<String>>,
}

impl ServiceKeys {
    fn has_command_key(&self, name: &str) -> bool {
        self.command_keys.iter().any(|(key, _)| *key == name)
    }
}

impl Checker<'_> {
    /// Reads `field` into `timing` when it is a timing key; returns false for any other key.
    pub(super) fn timing_key(&mut self, field: &Field<'_>, timing: &mut Timing) -> bool {
        match field.name {
            "probe_timeout" => timing.probe_timeout = self.duration(field, false),
            "probe_retries" => timing.probe_retries = self.count(field, 0..=MAX_COUNT),
            "retry_interval" => timing.retry_interval = self.duration(field, true),
            "verify_after" => timing.verify_after = self.duration(field, true),
            "verify_timeout" => timing.verify_timeout = self.duration(field, false),
            "max_restarts" => timing.max_restarts = self.count(field, 1..=MAX_COUNT),
            "restart_window" => timing.restart_window = self.duration(field, false),
            "restart_timeout" => timing.restart_timeout = self.duration(field, false),
            _ => return false,
        }
        true
    }

    /// Reads the `[services]` table. Returns the enabled services and the names of the ones
    /// turned off with `enabled = false`.
    pub(super) fn services(
        &mut self,
        field: &Field<'_>,
        mode: Mode,
        defaults: Timing,
    ) -> (Vec<ServiceConfig>, Vec<String>) {
        let Some(table) = self.table(field, "a table of services such as [services.postfix]")
        else {
            return (Vec::new(), Vec::new());
        };

        let mut enabled: Vec<(ServiceConfig, usize)> = Vec::new();
        let mut disabled = Vec::new();
        for entry in self.fields(table, &field.path, field.line, &[]) {
            let Some((service, is_enabled)) = self.service(&entry, mode, defaults) else {
                continue;
            };
            if !is_enabled {
                disabled.push(service.name);
                continue;
            }
            if let Some((other, _)) = enabled
                .iter()
                .find(|(other, _)| !other.units.is_empty() && other.units == service.units)
            {
                let message = format!(
                    "service `{}` has the same units as `{}`, so both would restart the same \
                     unit; set `unit` to the one this service watches",
                    service.name, other.name
                );
                self.warn(
                    entry.key_line,
                    &entry.path,
                    message,
                    example_of(SERVICE_KEYS, "unit"),
                );
            }
            enabled.push((service, entry.key_line));
        }
        let services = enabled.into_iter().map(|(service, _)| service).collect();
        (services, disabled)
    }

    /// Reads one `[services.NAME]` table; returns the service and whether it is enabled.
    fn service(
        &mut self,
        field: &Field<'_>,
        mode: Mode,
        defaults: Timing,
    ) -> Option<(ServiceConfig, bool)> {
        let name = field.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.error(
                field.key_line,
                &field.path,
                format!("invalid service name {name:?}; use letters, digits, - and _ only"),
                "[services.postfix-out]",
            );
        }
        let Some(table) = field.node.table() else {
            self.error(
                field.line,
                &field.path,
                format!(
                    "expected a table, found {}; a service is a table such as \
                     [services.{name}]",
                    self.describe(field.node)
                ),
                &format!("[services.{name}]"),
            );
            return None;
        };

        let keys = self.service_keys(table, field);
        let preset = if keys.preset_key {
            keys.preset
        } else {
            presets::preset(name)
        };
        self.check_service_kind(field, &keys, preset);

        let has_commands = !keys.command_keys.is_empty();
        let commands = has_commands.then(|| CommandSpec {
            start: keys.start.clone(),
            stop: keys.stop.clone(),
            restart: keys.restart.clone(),
            pidfile: keys.pidfile.clone(),
            process: keys.process.clone(),
        });
        let units = if has_commands {
            Vec::new()
        } else {
            keys.units.clone().unwrap_or_else(|| {
                preset.map_or_else(Vec::new, |preset| {
                    preset.units.iter().map(|unit| unit.to_string()).collect()
                })
            })
        };
        let probes = keys
            .probes
            .clone()
            .unwrap_or_else(|| preset.map_or_else(Vec::new, Preset::probe_specs));
        let timing = keys
            .timing
            .or(preset.map_or(Timing::NONE, |preset| preset.timing))
            .or(defaults);

        let service = ServiceConfig {
            name: name.to_string(),
            preset: preset.map(|preset| preset.name.to_string()),
            mode: keys.mode.unwrap_or(mode),
            critical: keys
                .critical
                .unwrap_or(preset.is_some_and(|preset| preset.critical)),
            units,
            commands,
            probes,
            probe_timeout: timing.probe_timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT),
            restart_timeout: timing.restart_timeout.unwrap_or(DEFAULT_RESTART_TIMEOUT),
            recovery: timing.recovery(),
            config_test: keys.config_test.clone(),
            discovered_under: None,
        };
        Some((service, keys.enabled.unwrap_or(true)))
    }

    fn service_keys(&mut self, table: &dyn TableLike, field: &Field<'_>) -> ServiceKeys {
        let mut keys = ServiceKeys::default();
        for entry in self.fields(table, &field.path, field.line, &[SERVICE_KEYS, TIMING_KEYS]) {
            if let Some(command_key) = COMMAND_KEYS.iter().find(|key| **key == entry.name) {
                keys.command_keys.push((command_key, entry.key_line));
            }
            match entry.name {
                "enabled" => keys.enabled = self.boolean(&entry),
                "preset" => {
                    keys.preset_key = true;
                    keys.preset = self.preset_key(&entry);
                }
                "mode" => keys.mode = self.mode(&entry),
                "critical" => keys.critical = self.boolean(&entry),
                "unit" => {
                    keys.unit_line = Some(entry.key_line);
                    keys.units = self.unit_names(&entry);
                }
                "units" => {
                    keys.units_line = Some(entry.key_line);
                    if keys.unit_line.is_none() {
                        keys.units = self.unit_names(&entry);
                    } else {
                        self.unit_names(&entry);
                    }
                }
                "probe" => {
                    keys.probe_line = Some(entry.key_line);
                    keys.probes = self.probe_key(&entry);
                }
                "probes" => {
                    keys.probes_line = Some(entry.key_line);
                    keys.probes = self.probes_key(&entry);
                }
                "start" => keys.start = self.command(&entry),
                "stop" => keys.stop = self.command(&entry),
                "restart" => keys.restart = self.command(&entry),
                "pidfile" => keys.pidfile = self.absolute_path(&entry),
                "process" => keys.process = self.process_name(&entry),
                "config_test" => keys.config_test = self.config_test(&entry),
                _ => {
                    if !self.timing_key(&entry, &mut keys.timing) {
                        self.unknown_key(&entry, &[SERVICE_KEYS, TIMING_KEYS]);
                    }
                }
            }
        }
        keys
    }

    /// Reports keys that do not fit together: unit and commands, unit and units, probe and
    /// probes, commands without a way to start or to find the process, and a table that is
    /// neither a preset nor a custom service.
    fn check_service_kind(
        &mut self,
        field: &Field<'_>,
        keys: &ServiceKeys,
        preset: Option<&'static Preset>,
    ) {
        let path = &field.path;
        if let (Some(_), Some(line)) = (keys.unit_line, keys.units_line) {
            self.error(
                line,
                &join_key(path, "units"),
                "`unit` and `units` are both set; keep `units` to list several candidates"
                    .to_string(),
                example_of(SERVICE_KEYS, "units"),
            );
        }
        if let (Some(_), Some(line)) = (keys.probe_line, keys.probes_line) {
            self.error(
                line,
                &join_key(path, "probes"),
                "`probe` and `probes` are both set; keep `probes` to list several endpoints"
                    .to_string(),
                example_of(SERVICE_KEYS, "probes"),
            );
        }

        let unit_key = match (keys.unit_line, keys.units_line) {
            (Some(_), _) => Some("unit"),
            (None, Some(_)) => Some("units"),
            (None, None) => None,
        };
        if let (Some(unit_key), Some((command_key, line))) = (unit_key, keys.command_keys.first()) {
            self.error(
                *line,
                &join_key(path, command_key),
                format!(
                    "`{command_key}` belongs to a service managed by commands, but `{unit_key}` \
                     makes it a systemd service; keep one of them"
                ),
                &format!(r#"unit = "{}.service""#, field.name),
            );
        }

        // With a unit key as well, the conflict above is the one problem to fix.
        if !keys.command_keys.is_empty() && unit_key.is_none() {
            if !keys.has_command_key("start") && !keys.has_command_key("restart") {
                self.error(
                    field.line,
                    path,
                    "a service managed by commands needs a `start` or `restart` command"
                        .to_string(),
                    &format!(r#"restart = "/etc/init.d/{} restart""#, field.name),
                );
            }
            if !keys.has_command_key("pidfile") && !keys.has_command_key("process") {
                self.error(
                    field.line,
                    path,
                    "a service managed by commands needs `pidfile` or `process`, so selfheal \
                     can tell whether it runs"
                        .to_string(),
                    &format!(r#"pidfile = "/run/{}.pid""#, field.name),
                );
            }
        }

        let custom = unit_key.is_some() || !keys.command_keys.is_empty();
        if !custom && preset.is_none() && !keys.preset_key {
            self.error(
                field.line,
                path,
                format!(
                    "unknown preset \"{}\"; the presets are: {}; a custom service needs \
                     `unit` or `start`/`restart` commands",
                    field.name,
                    presets::preset_names()
                ),
                &format!(r#"unit = "{}.service""#, field.name),
            );
        }
    }

    fn preset_key(&mut self, field: &Field<'_>) -> Option<&'static Preset> {
        let name = self.string(field)?;
        let preset = presets::preset(name);
        if preset.is_none() {
            self.invalid(
                field,
                format!(
                    "unknown preset \"{name}\"; the presets are: {}",
                    presets::preset_names()
                ),
            );
        }
        preset
    }

    fn unit_names(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        let units = self.string_list(field)?;
        if units.is_empty() {
            self.invalid(field, "must name at least one unit".to_string());
            return None;
        }
        let mut valid = true;
        for unit in &units {
            if let Err(reason) = check_unit_name(unit) {
                self.invalid(field, format!("invalid unit name \"{unit}\": {reason}"));
                valid = false;
            }
        }
        valid.then_some(units)
    }

    fn process_name(&mut self, field: &Field<'_>) -> Option<String> {
        let name = self.word(field)?;
        if name.contains('/') {
            self.invalid(
                field,
                format!("process name \"{name}\" contains /; give the name, not the path"),
            );
            return None;
        }
        if name.len() > MAX_PROCESS_NAME {
            self.invalid(
                field,
                format!(
                    "process name \"{name}\" is longer than {MAX_PROCESS_NAME} bytes, and Linux \
                     keeps only that much in /proc/PID/comm, so it never matches; give the \
                     first {MAX_PROCESS_NAME} bytes"
                ),
            );
            return None;
        }
        Some(name.to_string())
    }

    /// Reads `config_test` and checks that its program exists where the diagnosis looks for
    /// it: an absolute path, or a bare name in the system's program directories. A test that
    /// cannot run would leave the config untested while everything looked fine.
    fn config_test(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        let argv = self.command(field)?;
        let program = argv.first()?;
        let Some(path) = find_program(program) else {
            let message = if program.starts_with('/') {
                format!("config test program {program} not found; install it or fix the path")
            } else {
                format!(
                    "config test program \"{program}\" not found in {}; give its absolute \
                     path or install it",
                    PROGRAM_DIRS.join(", ")
                )
            };
            self.invalid(field, message);
            return None;
        };
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 => {
                Some(argv)
            }
            Ok(_) => {
                self.invalid(
                    field,
                    format!(
                        "config test program {} is not an executable file; check the path and \
                         its mode",
                        path.display()
                    ),
                );
                None
            }
            Err(err) => {
                self.invalid(
                    field,
                    format!(
                        "config test program {} cannot be read: {err}; check the path",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    /// Reads the `probe` key: one probe table, or `false` for none.
    fn probe_key(&mut self, field: &Field<'_>) -> Option<Vec<ProbeSpec>> {
        match field.node.value().and_then(Value::as_bool) {
            Some(false) => return Some(Vec::new()),
            Some(true) => {
                self.invalid(
                    field,
                    "`probe = true` names no endpoint; give a probe table such as \
                     { smtp = \"127.0.0.1:25\" }, or false for none"
                        .to_string(),
                );
                return None;
            }
            None => {}
        }
        if field.node.table().is_none() {
            self.wrong_type(
                field,
                "a probe table such as { smtp = \"127.0.0.1:25\" }, or false",
            );
            return None;
        }
        self.probe(field).map(|probe| vec![probe])
    }

    /// Reads the `probes` key: an array of probe tables, empty for none.
    fn probes_key(&mut self, field: &Field<'_>) -> Option<Vec<ProbeSpec>> {
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of probe tables");
            return None;
        };
        let probes: Vec<ProbeSpec> = elements
            .iter()
            .filter_map(|element| self.probe(element))
            .collect();
        (probes.len() == elements.len()).then_some(probes)
    }
}

fn check_unit_name(unit: &str) -> Result<(), String> {
    if !unit
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '@' | '\\'))
    {
        return Err(
            "a unit name has only letters, digits and the characters : - _ . @ \\".to_string(),
        );
    }
    match unit.rsplit_once('.') {
        Some((stem, suffix)) if !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix) => Ok(()),
        _ => Err(format!(
            "a unit name ends in its type, such as .service; the types are: {}",
            UNIT_SUFFIXES.join(", ")
        )),
    }
}
