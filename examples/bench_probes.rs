//! Measures what probes cost: wall time, CPU time and latency. The exit status does not depend
//! on timing. It is 1 when a probe or a service check failed, and 2 when the benchmark cannot
//! start (invalid arguments, invalid config).
//!
//! ```text
//! bench_probes synthetic [--probes 1000] [--concurrency 32] [--runs 5]
//! bench_probes cycle -c CONFIG [--cycles 20] [--pause-ms 200]
//! ```
//!
//! `synthetic` starts a minimal SMTP server, a minimal IMAP server and a plain TCP listener on
//! 127.0.0.1 inside this process. It then runs the probes, a third of each protocol, first with
//! `--concurrency` probes in flight and then one after the other. Each mode runs `--runs`
//! times, and the last row of each mode is the median of its runs. The servers run on a
//! runtime of their own whose threads are named `bench-server`, so that the CPU time of the
//! probes can be separated from theirs.
//!
//! `cycle` loads a selfheal config and checks every service the way the daemon does: one task
//! per service, each reading its unit state and running its probes concurrently
//! (`engine::observe`). It repeats that `--cycles` times and prints the cycle wall time, the
//! CPU time of this process and of the programs the probes ran, and the latency of each
//! service and probe. Run it on a host or rig where the configured services are running.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use selfheal::config::{self, Config, ServiceConfig};
use selfheal::engine::{self, MANAGER_CALL_TIMEOUT};
use selfheal::manager::{Managers, Target};
use selfheal::policy::{Health, Observation};
use selfheal::probe::{self, Endpoint, Outcome, ProbeSpec, Protocol};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

/// Limit of each probe step in synthetic mode: the daemon's default `probe_timeout`.
const SYNTHETIC_TIMEOUT: Duration = config::DEFAULT_PROBE_TIMEOUT;

/// Probes run before the measured runs of synthetic mode, so that the first measured run does
/// not pay for thread start-up and the first accepts.
const WARMUP_PROBES: usize = 30;

/// Name of the threads of the server runtime, and the prefix looked for in /proc/self/task.
const SERVER_THREAD: &str = "bench-server";
const PROBE_THREAD: &str = "bench-probe";

#[derive(Parser)]
#[command(about = "Benchmark selfheal's probes and its check cycle, and print the figures")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Probe in-process SMTP, IMAP and TCP servers on 127.0.0.1.
    Synthetic {
        /// Probes per run, split evenly across SMTP, IMAP and TCP.
        #[arg(long, default_value_t = 1000)]
        probes: usize,
        /// Probes in flight at once in the concurrent mode.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Runs of each mode. The summary row contains their medians.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Check every service of a selfheal config the way the daemon does, repeatedly.
    Cycle {
        /// selfheal config file (TOML).
        #[arg(short = 'c', long)]
        config: PathBuf,
        /// Number of measured check cycles.
        #[arg(long, default_value_t = 20)]
        cycles: usize,
        /// Pause between two cycles, in milliseconds.
        #[arg(long, default_value_t = 200)]
        pause_ms: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.mode {
        Mode::Synthetic {
            probes,
            concurrency,
            runs,
        } => synthetic(probes, concurrency, runs),
        Mode::Cycle {
            config,
            cycles,
            pause_ms,
        } => cycle(&config, cycles, Duration::from_millis(pause_ms)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("bench_probes: {message}");
            ExitCode::from(2)
        }
    }
}

fn probe_runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(PROBE_THREAD)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the tokio runtime of the probes: {error}"))
}

// ---- Synthetic mode ------------------------------------------------------------------------

/// Measurements of one run of one mode.
struct RunFigures {
    wall: Duration,
    /// CPU time (user + system) of the whole process: probes and servers.
    cpu_total: Duration,
    /// CPU time of the process less that of the server runtime's threads.
    cpu_probes: Duration,
    /// CPU time of the server runtime's threads.
    cpu_servers: Duration,
    latency_median: Duration,
    latency_p99: Duration,
    failures: usize,
}

impl RunFigures {
    fn probes_per_second(&self, probes: usize) -> f64 {
        probes as f64 / self.wall.as_secs_f64()
    }
}

fn synthetic(probes: usize, concurrency: usize, runs: usize) -> Result<bool, String> {
    if probes == 0 || concurrency == 0 || runs == 0 {
        return Err("--probes, --concurrency and --runs must be at least 1".to_string());
    }
    let servers = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the tokio runtime of the servers: {error}"))?;
    let addresses = servers.block_on(start_servers())?;
    let specs = mixed_specs(&addresses, probes)?;

    let runtime = probe_runtime()?;
    let warmup = mixed_specs(&addresses, WARMUP_PROBES)?;
    runtime.block_on(run_concurrent(Arc::new(warmup), concurrency));

    println!(
        "synthetic: {probes} probes per run ({} smtp, {} imap, {} tcp) to in-process servers on \
         127.0.0.1, step timeout {} s, {} CPUs, load average {}",
        probes.div_ceil(3),
        (probes + 1) / 3,
        probes / 3,
        SYNTHETIC_TIMEOUT.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
    );
    println!(
        "CPU columns: the whole process, the probe side (process minus {SERVER_THREAD} threads), \
         the servers. Rows \"med\" contain the median of each column, probes/s from the median \
         wall, and the failures of all runs together."
    );
    println!(
        "{:<16} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "mode",
        "run",
        "wall s",
        "cpu s",
        "probes s",
        "server s",
        "probes/s",
        "p50 ms",
        "p99 ms",
        "failures"
    );

    let specs = Arc::new(specs);
    let concurrent_label = format!("{concurrency} in flight");
    let mut all_passed = true;
    for (label, in_flight) in [(concurrent_label.as_str(), concurrency), ("sequential", 1)] {
        let mut figures = Vec::new();
        for run in 1..=runs {
            let before = CpuSample::take();
            let started = Instant::now();
            let (latencies, failures) = runtime.block_on(run_concurrent(specs.clone(), in_flight));
            let wall = started.elapsed();
            let after = CpuSample::take();
            let cpu_total = after.process.saturating_sub(before.process);
            let cpu_servers = after.servers.saturating_sub(before.servers);
            let run_figures = RunFigures {
                wall,
                cpu_total,
                cpu_probes: cpu_total.saturating_sub(cpu_servers),
                cpu_servers,
                latency_median: percentile(&latencies, 50.0),
                latency_p99: percentile(&latencies, 99.0),
                failures: failures.len(),
            };
            print_run_row(label, &run.to_string(), &run_figures, probes);
            if let Some(first) = failures.first() {
                eprintln!("{label}, run {run}: first failure: {first}");
                all_passed = false;
            }
            figures.push(run_figures);
        }
        print_run_row(label, "med", &median_figures(&figures), probes);
    }
    drop(runtime);
    servers.shutdown_background();
    Ok(all_passed)
}

fn print_run_row(label: &str, run: &str, figures: &RunFigures, probes: usize) {
    println!(
        "{:<16} {:>3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.0} {:>9.3} {:>9.3} {:>8}",
        label,
        run,
        figures.wall.as_secs_f64(),
        figures.cpu_total.as_secs_f64(),
        figures.cpu_probes.as_secs_f64(),
        figures.cpu_servers.as_secs_f64(),
        figures.probes_per_second(probes),
        millis(figures.latency_median),
        millis(figures.latency_p99),
        figures.failures,
    );
}

/// Takes the median of each column across runs, column by column, and the sum of failures.
fn median_figures(runs: &[RunFigures]) -> RunFigures {
    let column = |value: fn(&RunFigures) -> Duration| {
        let mut values: Vec<Duration> = runs.iter().map(value).collect();
        values.sort_unstable();
        percentile(&values, 50.0)
    };
    RunFigures {
        wall: column(|run| run.wall),
        cpu_total: column(|run| run.cpu_total),
        cpu_probes: column(|run| run.cpu_probes),
        cpu_servers: column(|run| run.cpu_servers),
        latency_median: column(|run| run.latency_median),
        latency_p99: column(|run| run.latency_p99),
        // A median would hide a failure that occurred in only one run.
        failures: runs.iter().map(|run| run.failures).sum(),
    }
}

/// Runs every spec, at most `in_flight` at once, each in its own task as the daemon runs each
/// service. Returns the latency of every probe, sorted, and the reports that did not pass.
async fn run_concurrent(
    specs: Arc<Vec<ProbeSpec>>,
    in_flight: usize,
) -> (Vec<Duration>, Vec<probe::ProbeReport>) {
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = Vec::with_capacity(specs.len());
    for index in 0..specs.len() {
        // Taking the permit before the spawn keeps at most `in_flight` tasks alive.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let specs = specs.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let report = probe::run(&specs[index], SYNTHETIC_TIMEOUT).await;
            drop(permit);
            (started.elapsed(), report)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = Vec::new();
    for task in tasks {
        let (latency, report) = task.await.expect("a probe task panicked");
        latencies.push(latency);
        if !report.outcome.is_healthy() {
            failures.push(report);
        }
    }
    latencies.sort_unstable();
    (latencies, failures)
}

/// Addresses of the in-process servers.
struct ServerAddresses {
    smtp: String,
    imap: String,
    tcp: String,
}

/// Builds `count` probe specs: SMTP, IMAP and TCP in turn.
fn mixed_specs(addresses: &ServerAddresses, count: usize) -> Result<Vec<ProbeSpec>, String> {
    let endpoint = |address: &str| Endpoint::parse(address).map(Some);
    let smtp = ProbeSpec::new(
        Protocol::Smtp {
            helo_name: config::DEFAULT_HELO_NAME.to_string(),
        },
        endpoint(&addresses.smtp)?,
        "bench",
    );
    let imap = ProbeSpec::new(Protocol::Imap, endpoint(&addresses.imap)?, "bench");
    let tcp = ProbeSpec::tcp(&addresses.tcp, "bench")?;
    let kinds = [smtp, imap, tcp];
    Ok((0..count).map(|index| kinds[index % 3].clone()).collect())
}

async fn start_servers() -> Result<ServerAddresses, String> {
    let smtp = bind("SMTP").await?;
    let imap = bind("IMAP").await?;
    let tcp = bind("TCP").await?;
    let addresses = ServerAddresses {
        smtp: local_address(&smtp)?,
        imap: local_address(&imap)?,
        tcp: local_address(&tcp)?,
    };
    tokio::spawn(accept_loop(smtp, serve_smtp));
    tokio::spawn(accept_loop(imap, serve_imap));
    // The connect probe only needs the accept, so the TCP server closes at once.
    tokio::spawn(accept_loop(tcp, |stream| async move { drop(stream) }));
    Ok(addresses)
}

async fn bind(what: &str) -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("cannot bind the {what} server to 127.0.0.1: {error}"))
}

fn local_address(listener: &TcpListener) -> Result<String, String> {
    listener
        .local_addr()
        .map(|address| address.to_string())
        .map_err(|error| format!("cannot read a listener's address: {error}"))
}

async fn accept_loop<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(error) => {
                // A failed accept, such as EMFILE, is retried after a pause. The probe whose
                // connection waits in the backlog meanwhile shows it as latency or a timeout.
                eprintln!("bench_probes: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one SMTP session: 220 greeting, 250 to EHLO, 221 to QUIT, 500 to anything else.
async fn serve_smtp(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    if writer
        .write_all(b"220 bench.invalid ESMTP bench_probes\r\n")
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-bench.invalid\r\n250 PIPELINING\r\n",
            "QUIT" => b"221 2.0.0 Bye\r\n",
            _ => b"500 5.5.2 Error: command not recognized\r\n",
        };
        if writer.write_all(reply).await.is_err() || verb == "QUIT" {
            return;
        }
    }
}

/// Serves one IMAP session: `* OK` greeting, CAPABILITY, LOGOUT, and BAD to anything else.
async fn serve_imap(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    if writer
        .write_all(b"* OK [CAPABILITY IMAP4rev1] bench_probes ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split(' ');
        let tag = words.next().unwrap_or("*");
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        let reply = match command.as_str() {
            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK CAPABILITY completed\r\n"),
            "LOGOUT" => format!("* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"),
            _ => format!("{tag} BAD Unknown command\r\n"),
        };
        if writer.write_all(reply.as_bytes()).await.is_err() || command == "LOGOUT" {
            return;
        }
    }
}

// ---- Cycle mode ----------------------------------------------------------------------------

/// Result of one service's check in one cycle.
struct ServiceSample {
    /// Time from the start of the cycle until this service's observation was complete.
    elapsed: Duration,
    observation: Observation,
}

/// Per-cycle figures.
struct CycleSample {
    wall: Duration,
    /// CPU time (user + system) of this process during the cycle.
    cpu_self: Duration,
    /// CPU time of the child processes that ended during the cycle, such as fail2ban-client.
    cpu_children: Duration,
    services: Vec<ServiceSample>,
}

fn cycle(config_path: &std::path::Path, cycles: usize, pause: Duration) -> Result<bool, String> {
    if cycles == 0 {
        return Err("--cycles must be at least 1".to_string());
    }
    let config = config::load(config_path).map_err(|errors| {
        format!(
            "invalid config {}:\n{errors}\nfix it, then check it with `selfheal config check -c {}`",
            config_path.display(),
            config_path.display()
        )
    })?;
    for warning in &config.warnings {
        eprintln!("bench_probes: config warning: {warning}");
    }
    if config.services.is_empty() {
        return Err(format!(
            "{} enables no service; add [services.NAME] tables",
            config_path.display()
        ));
    }
    let runtime = probe_runtime()?;
    runtime.block_on(measure_cycles(config, cycles, pause))
}

async fn measure_cycles(config: Config, cycles: usize, pause: Duration) -> Result<bool, String> {
    let connect_started = Instant::now();
    let managers = Arc::new(Managers::connect(MANAGER_CALL_TIMEOUT).await);
    let connect_time = connect_started.elapsed();

    // The daemon resolves each service's unit once at start, not in every cycle.
    let resolve_started = Instant::now();
    let mut services: Vec<(Arc<ServiceConfig>, Arc<Target>)> = Vec::new();
    for service in &config.services {
        let target = engine::resolve_target(&managers, service).await;
        services.push((Arc::new(service.clone()), Arc::new(target)));
    }
    let resolve_time = resolve_started.elapsed();

    println!(
        "cycle: {} services, service manager {} (connected in {:.1} ms, units resolved in \
         {:.1} ms), {} CPUs, load average {}",
        services.len(),
        managers.backend_name(),
        millis(connect_time),
        millis(resolve_time),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
    );

    // The first cycle may pay for first-time work, such as the first D-Bus calls and programs
    // not yet in the page cache. It is shown apart and left out of the figures.
    let first = run_cycle(&managers, &services).await;
    println!(
        "first cycle (not counted): {:.1} ms wall",
        millis(first.wall)
    );
    let mut samples = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        tokio::time::sleep(pause).await;
        samples.push(run_cycle(&managers, &services).await);
    }

    print_cycle_summary(&samples);
    let all_healthy = print_service_table(&services, &samples);
    let status_times = measure_status_calls(&managers, &services, cycles).await;
    print_status_table(&services, &status_times);
    Ok(all_healthy)
}

/// Checks every service once, one task per service as the daemon runs them, and waits for all.
async fn run_cycle(
    managers: &Arc<Managers>,
    services: &[(Arc<ServiceConfig>, Arc<Target>)],
) -> CycleSample {
    let before = CpuSample::take();
    let started = Instant::now();
    let tasks: Vec<_> = services
        .iter()
        .map(|(service, target)| {
            let managers = managers.clone();
            let service = service.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let observation = engine::observe(&managers, &target, &service).await;
                ServiceSample {
                    elapsed: started.elapsed(),
                    observation,
                }
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("a service check task panicked"));
    }
    let wall = started.elapsed();
    let after = CpuSample::take();
    CycleSample {
        wall,
        cpu_self: after.process.saturating_sub(before.process),
        cpu_children: after.children.saturating_sub(before.children),
        services: results,
    }
}

fn print_cycle_summary(samples: &[CycleSample]) {
    let mut walls: Vec<Duration> = samples.iter().map(|sample| sample.wall).collect();
    walls.sort_unstable();
    let mut cpu_self: Vec<Duration> = samples.iter().map(|sample| sample.cpu_self).collect();
    cpu_self.sort_unstable();
    let mut cpu_children: Vec<Duration> =
        samples.iter().map(|sample| sample.cpu_children).collect();
    cpu_children.sort_unstable();
    println!(
        "{} cycles: wall median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        samples.len(),
        millis(percentile(&walls, 50.0)),
        millis(percentile(&walls, 90.0)),
        millis(walls[walls.len() - 1]),
    );
    println!(
        "CPU per cycle (median): this process {:.1} ms, child processes {:.1} ms",
        millis(percentile(&cpu_self, 50.0)),
        millis(percentile(&cpu_children, 50.0)),
    );
}

/// Prints each service's check latency and the median latency of each of its probes. Returns
/// whether every service was healthy in every measured cycle.
fn print_service_table(
    services: &[(Arc<ServiceConfig>, Arc<Target>)],
    samples: &[CycleSample],
) -> bool {
    println!(
        "{:<16} {:<22} {:>7} {:>9} {:>9} {:>9}  probes (median latency of healthy runs)",
        "service", "unit", "healthy", "p50 ms", "p90 ms", "max ms"
    );
    let mut all_healthy = true;
    for (index, (service, target)) in services.iter().enumerate() {
        let mut elapsed: Vec<Duration> = samples
            .iter()
            .map(|sample| sample.services[index].elapsed)
            .collect();
        elapsed.sort_unstable();
        let observations: Vec<&Observation> = samples
            .iter()
            .map(|sample| &sample.services[index].observation)
            .collect();
        let healthy = observations
            .iter()
            .filter(|observation| observation.health() == Health::Healthy)
            .count();
        println!(
            "{:<16} {:<22} {:>7} {:>9.2} {:>9.2} {:>9.2}  {}",
            service.name,
            target.label(),
            format!("{healthy}/{}", samples.len()),
            millis(percentile(&elapsed, 50.0)),
            millis(percentile(&elapsed, 90.0)),
            millis(elapsed[elapsed.len() - 1]),
            probe_latencies(service, &observations),
        );
        if let Some(unhealthy) = observations
            .iter()
            .find(|observation| observation.health() != Health::Healthy)
        {
            eprintln!("{}: not healthy: {}", service.name, unhealthy.problem());
            all_healthy = false;
        }
    }
    all_healthy
}

/// Returns "smtp 127.0.0.1:25 1.23 ms, ..." for the probes of one service.
fn probe_latencies(service: &ServiceConfig, observations: &[&Observation]) -> String {
    if service.probes.is_empty() {
        return "none".to_string();
    }
    let mut parts = Vec::new();
    for (index, spec) in service.probes.iter().enumerate() {
        let mut latencies: Vec<Duration> = observations
            .iter()
            .filter_map(
                |observation| match &observation.probes.get(index)?.outcome {
                    Outcome::Healthy { latency, .. } => Some(*latency),
                    _ => None,
                },
            )
            .collect();
        latencies.sort_unstable();
        if latencies.is_empty() {
            parts.push(format!("{spec} never healthy"));
        } else {
            parts.push(format!(
                "{spec} {:.2} ms",
                millis(percentile(&latencies, 50.0))
            ));
        }
    }
    parts.join(", ")
}

/// Times the unit state reads alone: `rounds` rounds of all services at once. Returns the
/// sorted times per service.
async fn measure_status_calls(
    managers: &Arc<Managers>,
    services: &[(Arc<ServiceConfig>, Arc<Target>)],
    rounds: usize,
) -> Vec<Vec<Duration>> {
    let mut times = vec![Vec::with_capacity(rounds); services.len()];
    for _ in 0..rounds {
        let tasks: Vec<_> = services
            .iter()
            .map(|(_, target)| {
                let managers = managers.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let _ = managers.status(&target).await;
                    started.elapsed()
                })
            })
            .collect();
        for (index, task) in tasks.into_iter().enumerate() {
            times[index].push(task.await.expect("a status task panicked"));
        }
    }
    for service_times in &mut times {
        service_times.sort_unstable();
    }
    times
}

fn print_status_table(services: &[(Arc<ServiceConfig>, Arc<Target>)], times: &[Vec<Duration>]) {
    let cells: Vec<String> = services
        .iter()
        .zip(times)
        .map(|((service, _), times)| {
            format!("{} {:.2}", service.name, millis(percentile(times, 50.0)))
        })
        .collect();
    println!(
        "unit state read alone, all services at once, median ms: {}",
        cells.join(", ")
    );
}

// ---- Shared helpers ------------------------------------------------------------------------

/// Returns the 1, 5 and 15 minute load averages from /proc/loadavg, because other work on the
/// machine changes every figure.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Returns the nearest-rank percentile `p` (0 to 100) of `sorted`, or zero when it is empty.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// CPU time used so far, user and system together.
struct CpuSample {
    process: Duration,
    /// CPU time of the ended child processes that this process has waited for.
    children: Duration,
    /// Threads of the server runtime that are still alive.
    servers: Duration,
}

impl CpuSample {
    fn take() -> CpuSample {
        CpuSample {
            process: rusage(libc::RUSAGE_SELF),
            children: rusage(libc::RUSAGE_CHILDREN),
            servers: threads_cpu(SERVER_THREAD),
        }
    }
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes only into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let timeval = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// Sums the CPU time of this process's threads whose name starts with `prefix`, from
/// /proc/self/task/*/stat. NOTE: the kernel counts it in clock ticks (10 ms at the usual
/// USER_HZ of 100), so the figure is that coarse.
fn threads_cpu(prefix: &str) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The name is field 2 in parentheses and may contain spaces, so split at its end.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        // After the name come state (field 3) ... utime (field 14) and stime (field 15).
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |number: usize| -> u64 {
            fields
                .get(number - 3)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        ticks += field(14) + field(15);
    }
    Duration::from_micros(ticks * 1_000_000 / ticks_per_second)
}
