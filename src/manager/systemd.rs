//! systemd over D-Bus (`org.freedesktop.systemd1` on the system bus).
//!
//! Only the system bus is used, never systemd's private socket `/run/systemd/private`: zbus 5.19
//! hangs there because its executor panics on the Sender field of systemd's replies. Every call is
//! bounded by the call timeout given to [`Systemd::connect`], so a stuck PID 1 or bus daemon turns
//! into an error that names the call instead of a stalled engine.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;
use zbus::message::Type as MessageType;
use zbus::zvariant::{DynamicType, OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, Message, MessageStream};

use super::{
    pid_alive, start_limit_hit, ActiveState, ManagerError, RestartError, RestartReport, UnitStatus,
};

const SYSTEMD_SERVICE: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_INTERFACE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// Capacity of the channel [`Systemd::watch`] returns. A notification only wakes the engine to
/// check a unit, so when the channel is full the new one is dropped.
const WATCH_CHANNEL_CAPACITY: usize = 64;

/// Messages zbus queues per signal subscription before it drops the oldest.
const SIGNAL_QUEUE: usize = 64;

type Properties = HashMap<String, OwnedValue>;

/// A client of systemd's D-Bus API on the system bus, subscribed to unit signals.
pub struct Systemd {
    conn: Connection,
    /// Bound on each D-Bus call (connect, method call, match rule registration).
    call_timeout: Duration,
}

impl Systemd {
    /// Connects to the system bus and calls `Manager.Subscribe()`, without which systemd sends no
    /// `JobRemoved` or `PropertiesChanged` signals to this client.
    pub async fn connect(call_timeout: Duration) -> Result<Self, ManagerError> {
        let conn = match tokio::time::timeout(call_timeout, Connection::system()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                return Err(ManagerError(format!(
                    "cannot connect to the system bus: {err}; start dbus (dbus.socket) or let \
                     selfheal use the systemctl command"
                )))
            }
            Err(_) => {
                return Err(ManagerError(format!(
                    "connecting to the system bus timed out after {}; check that dbus-daemon \
                     responds",
                    humantime::format_duration(call_timeout)
                )))
            }
        };
        Self::subscribe(conn, call_timeout).await
    }

    /// Calls `Subscribe` on an established connection. Tests use it with a private bus.
    async fn subscribe(conn: Connection, call_timeout: Duration) -> Result<Self, ManagerError> {
        let systemd = Systemd { conn, call_timeout };
        systemd
            .call(
                "Subscribe()",
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "Subscribe",
                &(),
            )
            .await?;
        Ok(systemd)
    }

    /// Returns whether the unit's file was found and loaded (`LoadState` is "loaded"). Any error
    /// counts as a missing unit and is logged at debug level.
    pub async fn unit_exists(&self, unit: &str) -> bool {
        let load_state = async {
            let path = self.load_unit(unit).await?;
            let call = format!("Get({unit}, LoadState)");
            let reply = self
                .call(
                    &call,
                    path.as_str(),
                    PROPERTIES_INTERFACE,
                    "Get",
                    &(UNIT_INTERFACE, "LoadState"),
                )
                .await?;
            let value: OwnedValue = decode(&call, &reply)?;
            <&str>::try_from(&*value)
                .map(str::to_owned)
                .map_err(|err| CallError::Failed {
                    call,
                    source: Box::new(err.into()),
                })
        };
        match load_state.await {
            Ok(state) => state == "loaded",
            Err(err) => {
                tracing::debug!(unit, error = %err, "cannot read the load state, treating the unit as missing");
                false
            }
        }
    }

    /// Reads the unit's state: `LoadUnit`, then one `GetAll` per interface (Unit, and Service for
    /// `.service` units) with both in flight at once.
    pub async fn status(&self, unit: &str) -> Result<UnitStatus, ManagerError> {
        let path = self.load_unit(unit).await?;
        self.status_at(unit, &path).await
    }

    /// Restarts the unit with a `RestartUnit(unit, "replace")` job and waits for the job's end.
    ///
    /// A failed unit is reset first. A start the rate limit rejected is retried once after
    /// `ResetFailedUnit`. Success means only that the job finished with "done": systemd reports
    /// that as soon as the start command returned, so the caller verifies with a probe.
    pub async fn restart(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> Result<RestartReport, RestartError> {
        self.restart_killing(unit, timeout, None).await
    }

    /// Like [`Systemd::restart`], and sends SIGKILL to the unit's processes (`KillUnit`) when it
    /// is still deactivating `kill_after` into a restart job.
    pub async fn restart_killing(
        &self,
        unit: &str,
        timeout: Duration,
        kill_after: Option<Duration>,
    ) -> Result<RestartReport, RestartError> {
        match tokio::time::timeout(timeout, self.restart_unbounded(unit, kill_after)).await {
            Ok(result) => result,
            Err(_) => Err(RestartError::Timeout(timeout)),
        }
    }

    async fn restart_unbounded(
        &self,
        unit: &str,
        kill_after: Option<Duration>,
    ) -> Result<RestartReport, RestartError> {
        let started = Instant::now();
        let before = self.restart_status(unit).await?;

        let mut reset_failed = false;
        if before.active_state == ActiveState::Failed {
            tracing::info!(unit, result = %before.result, "unit is failed, resetting it before the restart");
            self.reset_failed(unit).await?;
            reset_failed = true;
        }

        // Subscribe before queueing the job: a fast job can end before RestartUnit's reply is
        // read, and systemd sends JobRemoved only once.
        let mut jobs = self.job_removed_stream().await?;

        let (job_result, killed) = self.run_restart_job(unit, &mut jobs, kill_after).await?;
        if job_result == "done" {
            return Ok(RestartReport {
                reset_failed,
                job_result,
                elapsed: started.elapsed(),
                retried_after_rate_limit: false,
                killed,
            });
        }

        let after = self.restart_status(unit).await?;
        if !start_limit_hit(&job_result, &before, &after) {
            return Err(RestartError::JobFailed { result: job_result });
        }

        tracing::info!(
            unit,
            "start rejected by the start rate limit, resetting the unit and restarting once more"
        );
        self.reset_failed(unit).await?;
        let (job_result, killed) = self.run_restart_job(unit, &mut jobs, kill_after).await?;
        if job_result == "done" {
            return Ok(RestartReport {
                reset_failed,
                job_result,
                elapsed: started.elapsed(),
                retried_after_rate_limit: true,
                killed,
            });
        }

        let again = self.restart_status(unit).await?;
        if start_limit_hit(&job_result, &after, &again) {
            Err(RestartError::StartLimit)
        } else {
            Err(RestartError::JobFailed { result: job_result })
        }
    }

    /// Streams the names of the given units (as given, not their object paths) each time systemd
    /// sends `PropertiesChanged` for one of them.
    ///
    /// One task forwards the signals. It ends, and the channel closes, when the bus connection
    /// ends or the receiver is dropped. A unit that cannot be subscribed to (an invalid name, for
    /// one) is skipped with a warning, so it costs only its own signals. The call fails when no
    /// unit of a non-empty list could be subscribed to.
    pub async fn watch(&self, units: Vec<String>) -> Result<mpsc::Receiver<String>, ManagerError> {
        let requested = units.len();
        let mut streams = Vec::with_capacity(requested);
        let mut last_error = None;
        for unit in units {
            match self.unit_changes(&unit).await {
                Ok(stream) => {
                    streams.push(stream.map(move |message| (unit.clone(), message.is_ok())));
                }
                Err(err) => {
                    tracing::warn!(unit, error = %err, "cannot subscribe to the unit's changes, only polling finds its failures");
                    last_error = Some(err);
                }
            }
        }
        if let (true, Some(err)) = (streams.is_empty(), last_error) {
            return Err(err);
        }
        let watched = streams.len();
        let mut changes = stream::select_all(streams);

        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        tokio::spawn(async move {
            if watched == 0 {
                // Nothing can change, so keep the channel open rather than report a lost bus.
                tx.closed().await;
                return;
            }
            loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some((unit, true)) => {
                            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(unit) {
                                return;
                            }
                        }
                        Some((unit, false)) => {
                            tracing::debug!(unit, "system bus reported an error on the unit's signal stream");
                        }
                        None => {
                            tracing::info!("system bus connection ended, no more unit change signals");
                            return;
                        }
                    },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    /// Reads the state during a restart, turning a unit without a unit file into `NotFound`.
    async fn restart_status(&self, unit: &str) -> Result<UnitStatus, RestartError> {
        let path = self
            .load_unit(unit)
            .await
            .map_err(|err| err.into_restart_error(unit))?;
        let status = self
            .status_at(unit, &path)
            .await
            .map_err(|err| RestartError::Manager(err.0))?;
        if status.load_state == "not-found" {
            return Err(RestartError::NotFound(unit.to_string()));
        }
        Ok(status)
    }

    async fn status_at(
        &self,
        unit: &str,
        path: &OwnedObjectPath,
    ) -> Result<UnitStatus, ManagerError> {
        let unit_properties = self.get_all(unit, path, UNIT_INTERFACE);
        // The Service interface exists exactly on units of type service, and the suffix of a
        // valid unit name is its type.
        let service_properties = async {
            if unit.ends_with(".service") {
                self.get_all(unit, path, SERVICE_INTERFACE).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (unit_properties, service_properties) =
            tokio::join!(unit_properties, service_properties);

        status_from_properties(&unit_properties?, service_properties?.as_ref())
            .map_err(|err| ManagerError(format!("reading the state of {unit}: {err}")))
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), RestartError> {
        self.call(
            &format!("ResetFailedUnit({unit})"),
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "ResetFailedUnit",
            &(unit,),
        )
        .await
        .map(drop)
        .map_err(|err| err.into_restart_error(unit))
    }

    /// Queues a restart job and returns its result ("done", "failed", "canceled", ...) from the
    /// matching `JobRemoved` signal, and whether the unit had to be killed because its stop hung
    /// past `kill_after`. Waits without a bound of its own: the caller bounds it.
    async fn run_restart_job(
        &self,
        unit: &str,
        jobs: &mut MessageStream,
        kill_after: Option<Duration>,
    ) -> Result<(String, bool), RestartError> {
        let call = format!("RestartUnit({unit}, replace)");
        let reply = self
            .call(
                &call,
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "RestartUnit",
                &(unit, "replace"),
            )
            .await
            .map_err(|err| err.into_restart_error(unit))?;
        let job: OwnedObjectPath =
            decode(&call, &reply).map_err(|err| err.into_restart_error(unit))?;
        tracing::debug!(unit, job = %job.as_str(), "restart job queued");

        let mut kill_at = kill_after.map(|delay| tokio::time::Instant::now() + delay);
        let mut killed = false;
        loop {
            let next = match kill_at {
                Some(deadline) => match tokio::time::timeout_at(deadline, jobs.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        // Checked once: a unit still stopping now has a hung stop.
                        kill_at = None;
                        killed = self.kill_if_stopping(unit, kill_after).await?;
                        continue;
                    }
                },
                None => jobs.next().await,
            };
            let Some(message) = next else {
                break;
            };
            let message = message.map_err(|err| {
                RestartError::Manager(format!(
                    "system bus failed while waiting for restart job {} of {unit}: {err}",
                    job.as_str()
                ))
            })?;
            // JobRemoved(u id, o job, s unit, s result)
            match message
                .body()
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
            {
                Ok((_, removed, _, result)) if removed == job => return Ok((result, killed)),
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(error = %err, "ignoring a JobRemoved signal with an unexpected body");
                }
            }
        }
        Err(RestartError::Manager(format!(
            "system bus connection closed while waiting for restart job {} of {unit}",
            job.as_str()
        )))
    }

    /// Sends SIGKILL to every process of the unit when it is still deactivating. Returns whether
    /// it did.
    async fn kill_if_stopping(
        &self,
        unit: &str,
        waited: Option<Duration>,
    ) -> Result<bool, RestartError> {
        let status = self.restart_status(unit).await?;
        if status.active_state != ActiveState::Deactivating {
            return Ok(false);
        }
        tracing::warn!(
            unit,
            sub_state = %status.sub_state,
            waited = %waited.map(humantime::format_duration).map(|d| d.to_string()).unwrap_or_default(),
            "stop is hanging, sending SIGKILL to the unit's processes"
        );
        let call = format!("KillUnit({unit}, all, SIGKILL)");
        self.call(
            &call,
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "KillUnit",
            &(unit, "all", libc::SIGKILL),
        )
        .await
        .map_err(|err| err.into_restart_error(unit))?;
        Ok(true)
    }

    /// Whether the unit starts at boot: its unit file is enabled, or another unit wants or
    /// requires it (how systemd-sysv-generator wires up an enabled init script).
    pub async fn unit_enabled(&self, unit: &str) -> Result<bool, ManagerError> {
        let path = self
            .load_unit(unit)
            .await
            .map_err(|err| ManagerError(err.to_string()))?;
        let properties = self
            .get_all(unit, &path, UNIT_INTERFACE)
            .await
            .map_err(|err| ManagerError(err.to_string()))?;
        let state: Option<&str> = optional(&properties, "UnitFileState").map_err(ManagerError)?;
        let wanted = ["WantedBy", "RequiredBy"].iter().any(|name| {
            properties
                .get(*name)
                .and_then(|value| value.try_clone().ok())
                .and_then(|value| Vec::<String>::try_from(value).ok())
                .is_some_and(|units| !units.is_empty())
        });
        Ok(wanted || state.is_some_and(super::enabled_file_state))
    }

    async fn load_unit(&self, unit: &str) -> Result<OwnedObjectPath, CallError> {
        let call = format!("LoadUnit({unit})");
        let reply = self
            .call(&call, MANAGER_PATH, MANAGER_INTERFACE, "LoadUnit", &(unit,))
            .await?;
        decode(&call, &reply)
    }

    async fn get_all(
        &self,
        unit: &str,
        path: &OwnedObjectPath,
        interface: &str,
    ) -> Result<Properties, CallError> {
        let call = format!("GetAll({unit}, {interface})");
        let reply = self
            .call(
                &call,
                path.as_str(),
                PROPERTIES_INTERFACE,
                "GetAll",
                &(interface,),
            )
            .await?;
        decode(&call, &reply)
    }

    async fn job_removed_stream(&self) -> Result<MessageStream, RestartError> {
        let rule = signal_rule(MANAGER_PATH, MANAGER_INTERFACE, "JobRemoved").map_err(|err| {
            RestartError::Manager(format!("building the JobRemoved match rule: {err}"))
        })?;
        self.add_match("AddMatch(JobRemoved)", rule)
            .await
            .map_err(|err| RestartError::Manager(err.to_string()))
    }

    /// Subscribes to `PropertiesChanged` on the unit's object.
    async fn unit_changes(&self, unit: &str) -> Result<MessageStream, ManagerError> {
        let path = self.load_unit(unit).await?;
        self.properties_changed_stream(unit, &path).await
    }

    async fn properties_changed_stream(
        &self,
        unit: &str,
        path: &OwnedObjectPath,
    ) -> Result<MessageStream, ManagerError> {
        let rule = signal_rule(path.as_str(), PROPERTIES_INTERFACE, "PropertiesChanged").map_err(
            |err| {
                ManagerError(format!(
                    "building the PropertiesChanged match rule for {unit}: {err}"
                ))
            },
        )?;
        Ok(self
            .add_match(&format!("AddMatch(PropertiesChanged, {unit})"), rule)
            .await?)
    }

    async fn add_match(&self, call: &str, rule: MatchRule<'_>) -> Result<MessageStream, CallError> {
        let subscribe = MessageStream::for_match_rule(rule, &self.conn, Some(SIGNAL_QUEUE));
        match tokio::time::timeout(self.call_timeout, subscribe).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(CallError::Failed {
                call: call.to_string(),
                source: Box::new(source),
            }),
            Err(_) => Err(CallError::TimedOut {
                call: call.to_string(),
                after: self.call_timeout,
            }),
        }
    }

    /// Calls a method on systemd, bounded by the call timeout. `call` names it in errors.
    async fn call<B>(
        &self,
        call: &str,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<Message, CallError>
    where
        B: serde::Serialize + DynamicType,
    {
        let request =
            self.conn
                .call_method(Some(SYSTEMD_SERVICE), path, Some(interface), method, body);
        match tokio::time::timeout(self.call_timeout, request).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(zbus::Error::MethodError(name, _, _))) if name.as_str() == NO_SUCH_UNIT => {
                Err(CallError::NoSuchUnit {
                    call: call.to_string(),
                })
            }
            Ok(Err(source)) => Err(CallError::Failed {
                call: call.to_string(),
                source: Box::new(source),
            }),
            Err(_) => Err(CallError::TimedOut {
                call: call.to_string(),
                after: self.call_timeout,
            }),
        }
    }
}

/// Failure of one D-Bus call to systemd.
#[derive(Debug)]
enum CallError {
    /// systemd replied `org.freedesktop.systemd1.NoSuchUnit`.
    NoSuchUnit {
        call: String,
    },
    TimedOut {
        call: String,
        after: Duration,
    },
    Failed {
        call: String,
        source: Box<zbus::Error>,
    },
}

impl CallError {
    fn into_restart_error(self, unit: &str) -> RestartError {
        match self {
            CallError::NoSuchUnit { .. } => RestartError::NotFound(unit.to_string()),
            other => RestartError::Manager(other.to_string()),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoSuchUnit { call } => {
                write!(f, "systemd D-Bus call {call} failed: no such unit")
            }
            CallError::TimedOut { call, after } => write!(
                f,
                "systemd D-Bus call {call} timed out after {}; check that systemd and the system \
                 bus respond",
                humantime::format_duration(*after)
            ),
            CallError::Failed { call, source } => {
                write!(f, "systemd D-Bus call {call} failed: {source}")
            }
        }
    }
}

impl From<CallError> for ManagerError {
    fn from(err: CallError) -> Self {
        ManagerError(err.to_string())
    }
}

fn decode<T>(call: &str, reply: &Message) -> Result<T, CallError>
where
    T: for<'de> serde::Deserialize<'de> + zbus::zvariant::Type,
{
    reply
        .body()
        .deserialize::<T>()
        .map_err(|source| CallError::Failed {
            call: call.to_string(),
            source: Box::new(source),
        })
}

/// Builds the match rule for one signal sent by systemd.
fn signal_rule<'m>(
    path: &'m str,
    interface: &'m str,
    member: &'m str,
) -> zbus::Result<MatchRule<'m>> {
    Ok(MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(SYSTEMD_SERVICE)?
        .path(path)?
        .interface(interface)?
        .member(member)?
        .build())
}

/// Builds a [`UnitStatus`] from `GetAll` replies. Properties of the Unit interface are required.
/// Those of the Service interface are optional, so one that an older systemd lacks becomes `None`.
fn status_from_properties(
    unit: &Properties,
    service: Option<&Properties>,
) -> Result<UnitStatus, String> {
    let load_state: &str = required(unit, "LoadState")?;
    let active_state: &str = required(unit, "ActiveState")?;
    let sub_state: &str = required(unit, "SubState")?;
    let inactive_exit_usec: u64 = required(unit, "InactiveExitTimestampMonotonic")?;
    let invocation_id = invocation_id(unit)?;

    let mut status = UnitStatus {
        load_state: load_state.to_string(),
        active_state: ActiveState::parse(active_state),
        sub_state: sub_state.to_string(),
        result: String::new(),
        main_pid: None,
        main_pid_alive: None,
        n_restarts: None,
        exec_main_status: None,
        inactive_exit_usec,
        invocation_id,
    };
    if let Some(service) = service {
        let result: Option<&str> = optional(service, "Result")?;
        status.result = result.unwrap_or_default().to_string();
        // MainPID 0 means systemd tracks no main process.
        status.main_pid = optional::<u32>(service, "MainPID")?.filter(|pid| *pid != 0);
        status.main_pid_alive = status.main_pid.map(pid_alive);
        status.n_restarts = optional(service, "NRestarts")?;
        status.exec_main_status = optional(service, "ExecMainStatus")?;
    }
    Ok(status)
}

/// Reads `InvocationID` (D-Bus type `ay`, 16 bytes) as 32 hex digits. systemd sends no bytes,
/// or all zero bytes, for a unit that has not started since boot, which gives `None`, as does
/// a systemd that lacks the property.
fn invocation_id(unit: &Properties) -> Result<Option<String>, String> {
    let Some(value) = unit.get("InvocationID") else {
        return Ok(None);
    };
    let unexpected = || {
        format!(
            "property InvocationID has the unexpected D-Bus type {}",
            value.value_signature()
        )
    };
    let array = <&zbus::zvariant::Array>::try_from(&**value).map_err(|_| unexpected())?;
    let mut hex = String::with_capacity(32);
    for element in array.inner() {
        let Value::U8(byte) = element else {
            return Err(unexpected());
        };
        hex.push_str(&format!("{byte:02x}"));
    }
    Ok(hex.bytes().any(|digit| digit != b'0').then_some(hex))
}

fn required<'p, T>(properties: &'p Properties, name: &str) -> Result<T, String>
where
    T: TryFrom<&'p Value<'static>, Error = zbus::zvariant::Error>,
{
    optional(properties, name)?.ok_or_else(|| format!("systemd returned no {name} property"))
}

fn optional<'p, T>(properties: &'p Properties, name: &str) -> Result<Option<T>, String>
where
    T: TryFrom<&'p Value<'static>, Error = zbus::zvariant::Error>,
{
    match properties.get(name) {
        None => Ok(None),
        Some(value) => T::try_from(&**value).map(Some).map_err(|err| {
            format!(
                "property {name} has the unexpected D-Bus type {}: {err}",
                value.value_signature()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    //! The backend against a mock of systemd's D-Bus API served on a private dbus-daemon. The mock
    //! keeps each unit's state and plays the parts of a restart job that the backend relies on:
    //! the job path in the reply, `JobRemoved` with a result, and `PropertiesChanged`.

    use super::*;

    use std::path::Path;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};
    use zbus::names::BusName;
    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::ObjectPath;

    /// Bound on each test, so a lost signal or a hung mock fails the test instead of stalling it.
    const TEST_TIMEOUT: Duration = Duration::from_secs(20);

    /// A dbus-daemon of the test's own, listening on a socket in a temporary directory.
    struct TestBus {
        address: String,
        daemon: Child,
        _dir: tempfile::TempDir,
    }

    impl TestBus {
        /// Starts the daemon. Fails the test when dbus-daemon is not installed: these tests
        /// must not pass without checking anything.
        async fn start() -> Option<TestBus> {
            let program = Path::new("/usr/bin/dbus-daemon");
            assert!(
                program.exists(),
                "/usr/bin/dbus-daemon is missing: install the Debian package dbus \
                 (rig/install-packages.sh does)"
            );

            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("bus.conf");
            std::fs::write(&config, bus_config(&dir.path().join("bus"))).unwrap();

            let mut daemon = Command::new(program)
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--nopidfile", "--print-address=1"])
                .stdout(Stdio::piped())
                // As root it warns that it cannot raise its fd limit, which no test needs.
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();

            // The daemon prints its address once it listens.
            let stdout = daemon.stdout.take().unwrap();
            let mut address = String::new();
            BufReader::new(stdout)
                .read_line(&mut address)
                .await
                .unwrap();
            assert!(!address.trim().is_empty(), "dbus-daemon printed no address");

            Some(TestBus {
                address: address.trim().to_string(),
                daemon,
                _dir: dir,
            })
        }

        async fn connection(&self) -> Connection {
            zbus::connection::Builder::address(self.address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap()
        }
    }

    /// A bus configuration that listens on `socket` and lets every connection own any name and
    /// call anything.
    fn bus_config(socket: &Path) -> String {
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context=\"default\">
    <allow send_destination=\"*\" eavesdrop=\"true\"/>
    <allow eavesdrop=\"true\"/>
    <allow own=\"*\"/>
  </policy>
</busconfig>
",
            socket.display()
        )
    }

    #[derive(Clone)]
    struct MockUnit {
        load_state: &'static str,
        active_state: &'static str,
        sub_state: &'static str,
        result: String,
        main_pid: u32,
        inactive_exit_usec: u64,
        /// `InvocationID`: empty until the first start, then 16 bytes that each start changes.
        invocation_id: Vec<u8>,
        /// Start jobs the rate limit still rejects. Unlike systemd, ResetFailedUnit keeps this
        /// count, so a test can make the retry fail too.
        rate_limited_starts: u32,
        /// Starts run but the service fails (the unit enters activating, then failed).
        start_fails: bool,
        /// Job result to send instead of the simulated one ("canceled", "dependency", ...).
        forced_result: Option<&'static str>,
        /// The job never ends.
        hang: bool,
        /// RestartUnit returns NoSuchUnit although LoadUnit found the unit, as after its unit file
        /// was removed.
        vanished: bool,
    }

    impl MockUnit {
        fn new(active_state: &'static str, result: &str) -> MockUnit {
            MockUnit {
                load_state: "loaded",
                active_state,
                sub_state: match active_state {
                    "active" => "running",
                    "failed" => "failed",
                    _ => "dead",
                },
                result: result.to_string(),
                main_pid: 0,
                inactive_exit_usec: 5_000_000,
                invocation_id: Vec::new(),
                rate_limited_starts: 0,
                start_fails: false,
                forced_result: None,
                hang: false,
                vanished: false,
            }
        }
    }

    #[derive(Default)]
    struct MockState {
        units: HashMap<String, MockUnit>,
        /// Method calls received, as "Method unit".
        calls: Vec<String>,
        next_job: u32,
        /// Send JobRemoved before the RestartUnit reply, as a job that ends at once could.
        job_ends_before_reply: bool,
    }

    type Shared = Arc<Mutex<MockState>>;

    fn lock(state: &Shared) -> std::sync::MutexGuard<'_, MockState> {
        state.lock().unwrap()
    }

    /// systemd's object path for a unit: bytes other than ASCII letters and digits become `_xx`.
    fn unit_object_path(unit: &str) -> String {
        let mut path = String::from("/org/freedesktop/systemd1/unit/");
        for byte in unit.bytes() {
            if byte.is_ascii_alphanumeric() {
                path.push(byte as char);
            } else {
                path.push_str(&format!("_{byte:02x}"));
            }
        }
        path
    }

    #[derive(Debug, zbus::DBusError)]
    #[zbus(prefix = "org.freedesktop.systemd1")]
    enum MockError {
        #[zbus(error)]
        ZBus(zbus::Error),
        NoSuchUnit(String),
    }

    struct MockManager {
        state: Shared,
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl MockManager {
        async fn subscribe(&self) {
            lock(&self.state).calls.push("Subscribe".to_string());
        }

        async fn load_unit(&self, name: String) -> Result<OwnedObjectPath, MockError> {
            if name == "slow.service" {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            lock(&self.state).calls.push(format!("LoadUnit {name}"));
            Ok(OwnedObjectPath::try_from(unit_object_path(&name)).unwrap())
        }

        async fn reset_failed_unit(&self, name: String) -> Result<(), MockError> {
            let mut state = lock(&self.state);
            state.calls.push(format!("ResetFailedUnit {name}"));
            let unit = state
                .units
                .get_mut(&name)
                .ok_or_else(|| MockError::NoSuchUnit(format!("Unit {name} not loaded.")))?;
            if unit.active_state == "failed" {
                unit.active_state = "inactive";
                unit.sub_state = "dead";
            }
            unit.result = "success".to_string();
            Ok(())
        }

        async fn restart_unit(
            &self,
            name: String,
            mode: String,
            #[zbus(connection)] conn: &Connection,
        ) -> Result<OwnedObjectPath, MockError> {
            let (job, ending) = {
                let mut state = lock(&self.state);
                state.calls.push(format!("RestartUnit {name} {mode}"));
                state.next_job += 1;
                let id = state.next_job;
                let ends_early = state.job_ends_before_reply;
                let unit = match state.units.get_mut(&name) {
                    Some(unit) if unit.load_state == "loaded" && !unit.vanished => unit,
                    _ => return Err(MockError::NoSuchUnit(format!("Unit {name} not found."))),
                };
                let result = run_mock_start(unit);
                let job = format!("/org/freedesktop/systemd1/job/{id}");
                (
                    job.clone(),
                    result.map(|result| (id, job, result, ends_early)),
                )
            };

            if let Some((id, job_path, result, ends_early)) = ending {
                let conn = conn.clone();
                let name = name.clone();
                let end_job = async move {
                    // A job of another unit ends first, with the other result, so the client
                    // must match the job path.
                    let decoy = if result == "done" { "failed" } else { "done" };
                    emit_job_removed(
                        &conn,
                        id + 1000,
                        &format!("/org/freedesktop/systemd1/job/{}", id + 1000),
                        "other.service",
                        decoy,
                    )
                    .await;
                    emit_properties_changed(&conn, &name).await;
                    emit_job_removed(&conn, id, &job_path, &name, result).await;
                };
                if ends_early {
                    end_job.await;
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        end_job.await;
                    });
                }
            }
            Ok(OwnedObjectPath::try_from(job).unwrap())
        }

        #[zbus(signal)]
        async fn job_removed(
            emitter: &SignalEmitter<'_>,
            id: u32,
            job: ObjectPath<'_>,
            unit: &str,
            result: &str,
        ) -> zbus::Result<()>;
    }

    /// Applies a restart job to the unit's state; returns the job result, or `None` for a job
    /// that never ends.
    fn run_mock_start(unit: &mut MockUnit) -> Option<&'static str> {
        if unit.hang {
            return None;
        }
        if unit.rate_limited_starts > 0 {
            // Rejected before activating: the timestamp stays, and systemd 252 only replaces a
            // "success" result with "start-limit-hit".
            unit.rate_limited_starts -= 1;
            unit.active_state = "failed";
            unit.sub_state = "failed";
            if unit.result == "success" {
                unit.result = "start-limit-hit".to_string();
            }
            return Some(unit.forced_result.unwrap_or("failed"));
        }
        unit.inactive_exit_usec += 1_000_000;
        let starts = unit
            .invocation_id
            .first()
            .map_or(1, |byte| byte.wrapping_add(1));
        unit.invocation_id = vec![starts; 16];
        if unit.start_fails {
            unit.active_state = "failed";
            unit.sub_state = "failed";
            unit.result = "exit-code".to_string();
            return Some(unit.forced_result.unwrap_or("failed"));
        }
        unit.active_state = "active";
        unit.sub_state = "running";
        unit.result = "success".to_string();
        Some(unit.forced_result.unwrap_or("done"))
    }

    async fn emit_job_removed(conn: &Connection, id: u32, job: &str, unit: &str, result: &str) {
        let job = ObjectPath::try_from(job).unwrap();
        conn.emit_signal(
            None::<BusName<'_>>,
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "JobRemoved",
            &(id, job, unit, result),
        )
        .await
        .unwrap();
    }

    async fn emit_properties_changed(conn: &Connection, unit: &str) {
        let changed: HashMap<&str, Value<'_>> = HashMap::new();
        conn.emit_signal(
            None::<BusName<'_>>,
            unit_object_path(unit).as_str(),
            PROPERTIES_INTERFACE,
            "PropertiesChanged",
            &(UNIT_INTERFACE, changed, Vec::<&str>::new()),
        )
        .await
        .unwrap();
    }

    struct MockUnitObject {
        name: String,
        state: Shared,
    }

    impl MockUnitObject {
        fn unit(&self) -> MockUnit {
            lock(&self.state).units[&self.name].clone()
        }
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
    impl MockUnitObject {
        #[zbus(property)]
        async fn load_state(&self) -> String {
            self.unit().load_state.to_string()
        }

        #[zbus(property)]
        async fn active_state(&self) -> String {
            self.unit().active_state.to_string()
        }

        #[zbus(property)]
        async fn sub_state(&self) -> String {
            self.unit().sub_state.to_string()
        }

        #[zbus(property)]
        async fn inactive_exit_timestamp_monotonic(&self) -> u64 {
            self.unit().inactive_exit_usec
        }

        #[zbus(property, name = "InvocationID")]
        async fn invocation_id(&self) -> Vec<u8> {
            self.unit().invocation_id
        }
    }

    struct MockServiceObject {
        name: String,
        state: Shared,
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Service")]
    impl MockServiceObject {
        #[zbus(property)]
        async fn result(&self) -> String {
            lock(&self.state).units[&self.name].result.clone()
        }

        #[zbus(property, name = "MainPID")]
        async fn main_pid(&self) -> u32 {
            lock(&self.state).units[&self.name].main_pid
        }

        #[zbus(property, name = "NRestarts")]
        async fn n_restarts(&self) -> u32 {
            3
        }

        #[zbus(property)]
        async fn exec_main_status(&self) -> i32 {
            89
        }
    }

    /// A mock systemd on a private bus and a backend connected to it.
    struct Fixture {
        state: Shared,
        systemd: Systemd,
        server: Connection,
        bus: TestBus,
    }

    impl Fixture {
        /// Serves `units` (names ending in `.service` also get the Service interface) and
        /// connects the backend with a 2 s call timeout.
        async fn start(units: Vec<(&str, MockUnit)>) -> Option<Fixture> {
            Self::start_with(units, Duration::from_secs(2)).await
        }

        async fn start_with(
            units: Vec<(&str, MockUnit)>,
            call_timeout: Duration,
        ) -> Option<Fixture> {
            let bus = TestBus::start().await?;
            let state: Shared = Arc::default();
            let mut builder = zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .name(SYSTEMD_SERVICE)
                .unwrap()
                .serve_at(
                    MANAGER_PATH,
                    MockManager {
                        state: Arc::clone(&state),
                    },
                )
                .unwrap();
            for (name, unit) in units {
                lock(&state).units.insert(name.to_string(), unit);
                let path = ObjectPath::try_from(unit_object_path(name)).unwrap();
                builder = builder
                    .serve_at(
                        path.clone(),
                        MockUnitObject {
                            name: name.to_string(),
                            state: Arc::clone(&state),
                        },
                    )
                    .unwrap();
                if name.ends_with(".service") {
                    builder = builder
                        .serve_at(
                            path.clone(),
                            MockServiceObject {
                                name: name.to_string(),
                                state: Arc::clone(&state),
                            },
                        )
                        .unwrap();
                }
            }
            let server = builder.build().await.unwrap();
            let systemd = Systemd::subscribe(bus.connection().await, call_timeout)
                .await
                .unwrap();
            Some(Fixture {
                state,
                systemd,
                server,
                bus,
            })
        }

        fn calls(&self, prefix: &str) -> Vec<String> {
            lock(&self.state)
                .calls
                .iter()
                .filter(|call| call.starts_with(prefix))
                .cloned()
                .collect()
        }

        async fn restart(
            &self,
            unit: &str,
            timeout: Duration,
        ) -> Result<RestartReport, RestartError> {
            tokio::time::timeout(TEST_TIMEOUT, self.systemd.restart(unit, timeout))
                .await
                .expect("test timed out")
        }
    }

    fn status(active_state: &str, result: &str, inactive_exit_usec: u64) -> UnitStatus {
        UnitStatus {
            load_state: "loaded".to_string(),
            active_state: ActiveState::parse(active_state),
            sub_state: String::new(),
            result: result.to_string(),
            main_pid: None,
            main_pid_alive: None,
            n_restarts: None,
            exec_main_status: None,
            inactive_exit_usec,
            invocation_id: None,
        }
    }

    #[test]
    fn start_limit_detection() {
        let before = status("active", "success", 100);

        // Rejected: never entered activating, Result stale from earlier failures.
        assert!(start_limit_hit(
            "failed",
            &before,
            &status("failed", "exit-code", 100)
        ));
        // Rejected, and systemd did set the result.
        assert!(start_limit_hit(
            "failed",
            &before,
            &status("failed", "start-limit-hit", 100)
        ));
        // Started and failed by itself.
        assert!(!start_limit_hit(
            "failed",
            &before,
            &status("failed", "exit-code", 200)
        ));
        // A dependency failed: not the unit's own rate limit.
        assert!(!start_limit_hit(
            "dependency",
            &before,
            &status("inactive", "success", 100)
        ));
    }

    #[test]
    fn properties_to_status() {
        let unit: Properties = [
            (
                "LoadState",
                OwnedValue::from(zbus::zvariant::Str::from("loaded")),
            ),
            (
                "ActiveState",
                OwnedValue::from(zbus::zvariant::Str::from("failed")),
            ),
            (
                "SubState",
                OwnedValue::from(zbus::zvariant::Str::from("failed")),
            ),
            (
                "InactiveExitTimestampMonotonic",
                OwnedValue::from(758_182_569u64),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        let service: Properties = [
            (
                "Result",
                OwnedValue::from(zbus::zvariant::Str::from("signal")),
            ),
            ("MainPID", OwnedValue::from(0u32)),
            ("NRestarts", OwnedValue::from(2u32)),
            ("ExecMainStatus", OwnedValue::from(9i32)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();

        let status = status_from_properties(&unit, Some(&service)).unwrap();

        assert_eq!(status.active_state, ActiveState::Failed);
        assert_eq!(status.result, "signal");
        assert_eq!(status.main_pid, None);
        assert_eq!(status.n_restarts, Some(2));
        assert_eq!(status.exec_main_status, Some(9));
        assert_eq!(status.inactive_exit_usec, 758_182_569);
    }

    #[test]
    fn invocation_id_from_bytes() {
        let with_id = |bytes: Vec<u8>| -> Properties {
            let array = zbus::zvariant::Array::from(bytes);
            [(
                "InvocationID".to_string(),
                OwnedValue::try_from(Value::from(array)).unwrap(),
            )]
            .into_iter()
            .collect()
        };

        let id = invocation_id(&with_id((0..16).collect())).unwrap();
        let zero = invocation_id(&with_id(vec![0; 16])).unwrap();
        let empty = invocation_id(&with_id(Vec::new())).unwrap();
        let absent = invocation_id(&Properties::new()).unwrap();
        let mut wrong = Properties::new();
        wrong.insert("InvocationID".to_string(), OwnedValue::from(7u64));

        assert_eq!(id.as_deref(), Some("000102030405060708090a0b0c0d0e0f"));
        assert_eq!(zero, None);
        assert_eq!(empty, None);
        assert_eq!(absent, None);
        let error = invocation_id(&wrong).unwrap_err();
        assert!(error.contains("unexpected D-Bus type t"), "{error}");
    }

    #[test]
    fn properties_wrong_or_missing() {
        let mut unit: Properties = [
            (
                "LoadState",
                OwnedValue::from(zbus::zvariant::Str::from("loaded")),
            ),
            (
                "ActiveState",
                OwnedValue::from(zbus::zvariant::Str::from("active")),
            ),
            (
                "SubState",
                OwnedValue::from(zbus::zvariant::Str::from("running")),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();

        let missing = status_from_properties(&unit, None).unwrap_err();
        unit.insert(
            "InactiveExitTimestampMonotonic".to_string(),
            OwnedValue::from(zbus::zvariant::Str::from("soon")),
        );
        let wrong = status_from_properties(&unit, None).unwrap_err();

        assert!(
            missing.contains("no InactiveExitTimestampMonotonic"),
            "{missing}"
        );
        assert!(
            wrong.contains("InactiveExitTimestampMonotonic has the unexpected D-Bus type s"),
            "{wrong}"
        );
    }

    #[tokio::test]
    async fn status_reads_both_interfaces() {
        let mut dovecot = MockUnit::new("active", "success");
        dovecot.main_pid = std::process::id();
        let Some(fixture) = Fixture::start(vec![("dovecot.service", dovecot)]).await else {
            return;
        };

        let status = tokio::time::timeout(TEST_TIMEOUT, fixture.systemd.status("dovecot.service"))
            .await
            .unwrap()
            .unwrap();

        assert_eq!(status.load_state, "loaded");
        assert_eq!(status.active_state, ActiveState::Active);
        assert_eq!(status.sub_state, "running");
        assert_eq!(status.result, "success");
        assert_eq!(status.main_pid, Some(std::process::id()));
        assert_eq!(status.main_pid_alive, Some(true));
        assert_eq!(status.n_restarts, Some(3));
        assert_eq!(status.exec_main_status, Some(89));
        assert_eq!(status.inactive_exit_usec, 5_000_000);
        assert_eq!(fixture.calls("Subscribe"), ["Subscribe"]);
    }

    #[tokio::test]
    async fn status_of_socket_unit() {
        let Some(fixture) =
            Fixture::start(vec![("mail.socket", MockUnit::new("active", ""))]).await
        else {
            return;
        };

        let status = tokio::time::timeout(TEST_TIMEOUT, fixture.systemd.status("mail.socket"))
            .await
            .unwrap()
            .unwrap();

        assert_eq!(status.active_state, ActiveState::Active);
        assert_eq!(status.result, "");
        assert_eq!(status.main_pid, None);
        assert_eq!(status.n_restarts, None);
        assert_eq!(status.exec_main_status, None);
    }

    #[tokio::test]
    async fn status_call_times_out() {
        let Some(fixture) = Fixture::start_with(Vec::new(), Duration::from_millis(300)).await
        else {
            return;
        };
        let started = Instant::now();

        let err = tokio::time::timeout(TEST_TIMEOUT, fixture.systemd.status("slow.service"))
            .await
            .unwrap()
            .unwrap_err();

        assert!(
            err.0
                .contains("LoadUnit(slow.service) timed out after 300ms"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn unit_exists_reads_load_state() {
        let mut missing = MockUnit::new("inactive", "success");
        missing.load_state = "not-found";
        let Some(fixture) = Fixture::start(vec![
            ("dovecot.service", MockUnit::new("active", "success")),
            ("nosuch.service", missing),
        ])
        .await
        else {
            return;
        };

        let exists = fixture.systemd.unit_exists("dovecot.service").await;
        let not_found = fixture.systemd.unit_exists("nosuch.service").await;
        // The mock serves no object for this one, so reading it fails.
        let unserved = fixture.systemd.unit_exists("ghost.service").await;

        assert!(exists);
        assert!(!not_found);
        assert!(!unserved);
    }

    #[tokio::test]
    async fn subscribe_without_systemd_fails() {
        let Some(bus) = TestBus::start().await else {
            return;
        };

        let result = Systemd::subscribe(bus.connection().await, Duration::from_secs(2)).await;

        let err = result
            .err()
            .expect("Subscribe must fail without systemd on the bus");
        assert!(err.0.contains("Subscribe()"), "{err}");
    }

    #[tokio::test]
    async fn restart_resets_failed_unit() {
        let Some(fixture) =
            Fixture::start(vec![("dovecot.service", MockUnit::new("failed", "signal"))]).await
        else {
            return;
        };

        let report = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap();

        assert!(report.reset_failed);
        assert!(!report.retried_after_rate_limit);
        assert_eq!(report.job_result, "done");
        assert_eq!(
            fixture.calls("ResetFailedUnit"),
            ["ResetFailedUnit dovecot.service"]
        );
        assert_eq!(
            fixture.calls("RestartUnit"),
            ["RestartUnit dovecot.service replace"]
        );
    }

    #[tokio::test]
    async fn status_reads_invocation_id() {
        let Some(fixture) = Fixture::start(vec![(
            "dovecot.service",
            MockUnit::new("inactive", "success"),
        )])
        .await
        else {
            return;
        };
        let never_started =
            tokio::time::timeout(TEST_TIMEOUT, fixture.systemd.status("dovecot.service"))
                .await
                .unwrap()
                .unwrap();
        fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap();
        let started = tokio::time::timeout(TEST_TIMEOUT, fixture.systemd.status("dovecot.service"))
            .await
            .unwrap()
            .unwrap();

        assert_eq!(never_started.invocation_id, None);
        assert_eq!(started.invocation_id.as_deref(), Some(&*"01".repeat(16)));
    }

    #[tokio::test]
    async fn restart_running_unit() {
        let Some(fixture) = Fixture::start(vec![(
            "dovecot.service",
            MockUnit::new("active", "success"),
        )])
        .await
        else {
            return;
        };

        let report = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap();

        assert!(!report.reset_failed);
        assert_eq!(report.job_result, "done");
        assert!(fixture.calls("ResetFailedUnit").is_empty());
    }

    #[tokio::test]
    async fn job_end_before_reply_not_missed() {
        let Some(fixture) = Fixture::start(vec![(
            "dovecot.service",
            MockUnit::new("active", "success"),
        )])
        .await
        else {
            return;
        };
        lock(&fixture.state).job_ends_before_reply = true;

        let report = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap();

        assert_eq!(report.job_result, "done");
    }

    #[tokio::test]
    async fn restart_retries_after_rate_limit() {
        // Result stays "exit-code" from the failures that used up the limit, so only the
        // unchanged timestamp shows that the start was rejected.
        let mut dovecot = MockUnit::new("active", "exit-code");
        dovecot.rate_limited_starts = 1;
        let Some(fixture) = Fixture::start(vec![("dovecot.service", dovecot)]).await else {
            return;
        };

        let report = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap();

        assert!(!report.reset_failed);
        assert!(report.retried_after_rate_limit);
        assert_eq!(report.job_result, "done");
        assert_eq!(fixture.calls("RestartUnit").len(), 2);
        assert_eq!(fixture.calls("ResetFailedUnit").len(), 1);
    }

    #[tokio::test]
    async fn restart_rejected_twice_is_start_limit() {
        let mut dovecot = MockUnit::new("failed", "exit-code");
        dovecot.rate_limited_starts = 2;
        let Some(fixture) = Fixture::start(vec![("dovecot.service", dovecot)]).await else {
            return;
        };

        let err = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap_err();

        assert_eq!(err, RestartError::StartLimit);
        assert_eq!(fixture.calls("RestartUnit").len(), 2);
        assert_eq!(fixture.calls("ResetFailedUnit").len(), 2);
    }

    #[tokio::test]
    async fn failed_start_not_retried() {
        let mut dovecot = MockUnit::new("active", "success");
        dovecot.start_fails = true;
        let Some(fixture) = Fixture::start(vec![("dovecot.service", dovecot)]).await else {
            return;
        };

        let err = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap_err();

        assert_eq!(
            err,
            RestartError::JobFailed {
                result: "failed".to_string()
            }
        );
        assert_eq!(fixture.calls("RestartUnit").len(), 1);
    }

    #[tokio::test]
    async fn canceled_job_is_job_failed() {
        let mut dovecot = MockUnit::new("active", "success");
        dovecot.forced_result = Some("canceled");
        let Some(fixture) = Fixture::start(vec![("dovecot.service", dovecot)]).await else {
            return;
        };

        let err = fixture
            .restart("dovecot.service", Duration::from_secs(5))
            .await
            .unwrap_err();

        assert_eq!(
            err,
            RestartError::JobFailed {
                result: "canceled".to_string()
            }
        );
        assert_eq!(fixture.calls("RestartUnit").len(), 1);
    }

    #[tokio::test]
    async fn restart_missing_unit() {
        let mut missing = MockUnit::new("inactive", "success");
        missing.load_state = "not-found";
        let mut vanished = MockUnit::new("active", "success");
        vanished.vanished = true;
        let Some(fixture) = Fixture::start(vec![
            ("nosuch.service", missing),
            ("vanished.service", vanished),
        ])
        .await
        else {
            return;
        };

        let not_found = fixture
            .restart("nosuch.service", Duration::from_secs(5))
            .await;
        let no_such_unit = fixture
            .restart("vanished.service", Duration::from_secs(5))
            .await;

        assert_eq!(
            not_found,
            Err(RestartError::NotFound("nosuch.service".to_string()))
        );
        assert_eq!(
            no_such_unit,
            Err(RestartError::NotFound("vanished.service".to_string()))
        );
        assert_eq!(
            fixture.calls("RestartUnit"),
            ["RestartUnit vanished.service replace"]
        );
    }

    #[tokio::test]
    async fn restart_hang_times_out() {
        let mut dovecot = MockUnit::new("active", "success");
        dovecot.hang = true;
        let Some(fixture) = Fixture::start(vec![("dovecot.service", dovecot)]).await else {
            return;
        };
        let started = Instant::now();

        let err = fixture
            .restart("dovecot.service", Duration::from_millis(400))
            .await
            .unwrap_err();

        assert_eq!(err, RestartError::Timeout(Duration::from_millis(400)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn watch_forwards_unit_names() {
        let Some(fixture) = Fixture::start(vec![
            ("postfix@-.service", MockUnit::new("active", "success")),
            ("dovecot.service", MockUnit::new("active", "success")),
        ])
        .await
        else {
            return;
        };
        let mut changes = fixture
            .systemd
            .watch(vec!["postfix@-.service".to_string()])
            .await
            .unwrap();

        // A change of an unwatched unit first: it must not come through.
        emit_properties_changed(&fixture.server, "dovecot.service").await;
        emit_properties_changed(&fixture.server, "postfix@-.service").await;
        let first = tokio::time::timeout(TEST_TIMEOUT, changes.recv())
            .await
            .unwrap();

        assert_eq!(first.as_deref(), Some("postfix@-.service"));
        assert!(changes.try_recv().is_err());
    }

    #[tokio::test]
    async fn watch_skips_invalid_unit() {
        let Some(fixture) = Fixture::start_with(
            vec![("dovecot.service", MockUnit::new("active", "success"))],
            Duration::from_millis(300),
        )
        .await
        else {
            return;
        };

        // The mock delays LoadUnit of slow.service past the 300 ms call timeout.
        let mut changes = tokio::time::timeout(
            TEST_TIMEOUT,
            fixture.systemd.watch(vec![
                "slow.service".to_string(),
                "dovecot.service".to_string(),
            ]),
        )
        .await
        .unwrap()
        .unwrap();
        let only_invalid = tokio::time::timeout(
            TEST_TIMEOUT,
            fixture.systemd.watch(vec!["slow.service".to_string()]),
        )
        .await
        .unwrap();
        emit_properties_changed(&fixture.server, "dovecot.service").await;
        let change = tokio::time::timeout(TEST_TIMEOUT, changes.recv())
            .await
            .unwrap();

        assert_eq!(change.as_deref(), Some("dovecot.service"));
        let err = only_invalid.expect_err("watching only a failing unit must fail");
        assert!(err.0.contains("LoadUnit(slow.service) timed out"), "{err}");
    }

    #[tokio::test]
    async fn watch_drops_when_full() {
        let Some(fixture) = Fixture::start(vec![(
            "dovecot.service",
            MockUnit::new("active", "success"),
        )])
        .await
        else {
            return;
        };
        let mut changes = fixture
            .systemd
            .watch(vec!["dovecot.service".to_string()])
            .await
            .unwrap();

        for _ in 0..(WATCH_CHANNEL_CAPACITY + 40) {
            emit_properties_changed(&fixture.server, "dovecot.service").await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut received = 0;
        while changes.try_recv().is_ok() {
            received += 1;
        }
        // The forwarding task must still run after the overflow.
        emit_properties_changed(&fixture.server, "dovecot.service").await;
        let after = tokio::time::timeout(TEST_TIMEOUT, changes.recv())
            .await
            .unwrap();

        assert!(
            (1..=WATCH_CHANNEL_CAPACITY).contains(&received),
            "{received}"
        );
        assert_eq!(after.as_deref(), Some("dovecot.service"));
    }

    #[tokio::test]
    async fn watch_closes_when_bus_ends() {
        let Some(mut fixture) = Fixture::start(vec![(
            "dovecot.service",
            MockUnit::new("active", "success"),
        )])
        .await
        else {
            return;
        };
        let mut changes = fixture
            .systemd
            .watch(vec!["dovecot.service".to_string()])
            .await
            .unwrap();

        fixture.bus.daemon.kill().await.unwrap();
        let end = tokio::time::timeout(TEST_TIMEOUT, changes.recv())
            .await
            .unwrap();

        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn watch_nothing_stays_open() {
        let Some(fixture) = Fixture::start(Vec::new()).await else {
            return;
        };

        let mut changes = fixture.systemd.watch(Vec::new()).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), changes.recv()).await;

        assert!(waited.is_err(), "channel closed or yielded: {waited:?}");
    }
}
