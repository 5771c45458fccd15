//! `skep run` (local worker replicas) and `skep controller` (local or swarm
//! worker replicas), on the store and queue their flags name (SQLite and
//! in-process by default).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use skep_api::{BulkJob, Phase};
use skep_queue::TaskQueue;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    CliError, CliResult, ControllerArgs, GlobalArgs, OutputFormat, RunArgs, RuntimeKind, SwarmArgs, connect_queue,
    exit, load_job_file, open_store, print, queue_url,
};
use crate::controller::workers::Registry;
use crate::controller::{Controller, ControllerConfig};
use crate::runtime::swarm::{ServiceTemplate, SwarmConfig};
use crate::runtime::{ExternalRuntime, LocalRuntime, Runtime, SwarmRuntime};
use crate::store::{LeaseState, Store};

/// How often `skep run` reads the job's status for its progress bar.
const POLL: Duration = Duration::from_millis(250);
/// Without a terminal, a progress line this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn lease_waiter(state: &LeaseState) {
    let secs = (state.expires_ms - chrono::Utc::now().timestamp_millis()).max(0) as f64 / 1000.0;
    eprintln!(
        "waiting for the controller lease held by {} (expires in {secs:.0}s; another skep run or controller uses this store)",
        state.holder
    );
}

struct Embedded {
    store: Arc<dyn Store>,
    queue: Arc<dyn TaskQueue>,
    runtime: Arc<LocalRuntime>,
}

fn embedded(store: Arc<dyn Store>, queue: Arc<dyn TaskQueue>, workers: Option<u32>) -> Embedded {
    // NB: 0 is allowed: no worker in this process; workers started
    // elsewhere take the tasks from a shared broker.
    let runtime = Arc::new(LocalRuntime::new(queue.clone(), workers.unwrap_or_else(cores)));
    Embedded { store, queue, runtime }
}

pub async fn run(global: &GlobalArgs, args: RunArgs) -> CliResult {
    let job = load_job_file(&args.file).map_err(|e| CliError::invalid(e.to_string()))?;
    let (_, queue_url) = queue_url(&args.queue)?;
    if args.workers == Some(0) && queue_url.backend() == "memory" {
        return Err(CliError::invalid(
            "--workers 0 runs no worker in this process, and the in-process queue (memory:) reaches no other: \
             give --queue amqp://… or nsq://… for workers started elsewhere, or at least 1 worker",
        ));
    }
    let objects = args.s3.stores()?;
    let store = open_store(global).await?;
    let applied = store.apply_job(job).await?;
    let name = applied.job.name().to_owned();
    if applied.job.is_finished() {
        if applied.spec_changed {
            eprintln!(
                "note: {name} already finished; a finished job is not run again when its spec changes \
                 (skep delete {name}, then run it again)"
            );
        } else {
            eprintln!("{name} already finished (skep delete {name} to run it again)");
        }
        return finish(&applied.job, args.output);
    }

    let queue = connect_queue(&queue_url).await?;
    let shutdown = super::shutdown_on_signals();
    let parts = embedded(store.clone(), queue, args.workers);
    let cfg = ControllerConfig {
        running_requeue: Duration::from_secs(1),
        resync: Duration::from_secs(10),
        // NB: one process, one job: no other job to flap for.
        scale_down_cooldown: Duration::ZERO,
        objects,
        ..ControllerConfig::default()
    };
    let runtime: Arc<dyn Runtime> = parts.runtime.clone();
    // NB: the controller stops on its own token, after the workers: see
    // `stop_in_order`.
    let ctl_stop = CancellationToken::new();
    let queue = parts.queue.clone();
    let controller = tokio::spawn(lead(parts.store, parts.queue, runtime, cfg, ctl_stop.clone()));

    let outcome = watch_progress(store.as_ref(), &name, args.quiet, &shutdown, &controller).await;
    shutdown.cancel();
    stop_in_order(&parts.runtime, queue.as_ref(), Some(&controller)).await;
    ctl_stop.cancel();
    let stopped = controller.await;
    let job = outcome?;
    if let Ok(Err(e)) = stopped {
        return Err(CliError::failed(format!("the controller stopped: {e}")));
    }
    match job {
        Some(job) => finish(&job, args.output),
        None => {
            eprintln!("interrupted; run the same command again to resume {name}");
            Ok(exit::INTERRUPTED)
        }
    }
}

/// Starts the terms of leadership of a process that leads again after
/// losing its lease (`skep run` and `skep controller`).
struct Terms {
    store: Arc<dyn Store>,
    queue: Arc<dyn TaskQueue>,
    runtime: Arc<dyn Runtime>,
    cfg: ControllerConfig,
    /// Whether a term began in this process.
    led: bool,
}

impl Terms {
    /// Waits for the lease and starts a term (`None`: stopped first).
    async fn start(&mut self, stop: &CancellationToken) -> crate::controller::Result<Option<Controller>> {
        // NB: leading again in the same process: the in-process queue still
        // holds what was dispatched.
        self.cfg.redispatch_lost_tasks = !self.led;
        let started = Controller::start(
            self.store.clone(),
            self.queue.clone(),
            self.runtime.clone(),
            self.cfg.clone(),
            stop.clone(),
            lease_waiter,
        )
        .await?;
        self.led |= started.is_some();
        Ok(started)
    }
}

/// How long `skep run` waits for a store out of reach (its progress reads
/// failing, its controller unable to lead) before it gives up.
const STORE_PATIENCE: Duration = Duration::from_secs(300);

/// Runs the controller of `skep run` until `stop`, as `skep controller`
/// does: a lease lost while the job runs (a store too slow to renew it in
/// time, seen with a MongoDB wire server at full load; a store out of
/// reach; another controller) is taken again once it can be, while the
/// local workers go on, and the in-process queue still holds what was
/// dispatched. It gives up after [`STORE_PATIENCE`] of failures with no
/// term of leadership in between.
async fn lead(
    store: Arc<dyn Store>,
    queue: Arc<dyn TaskQueue>,
    runtime: Arc<dyn Runtime>,
    cfg: ControllerConfig,
    stop: CancellationToken,
) -> crate::controller::Result<()> {
    let mut terms = Terms {
        store,
        queue,
        runtime,
        cfg,
        led: false,
    };
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        let res = match terms.start(&stop).await {
            Ok(None) => return Ok(()),
            Ok(Some(c)) => {
                failing_since = None;
                c.wait().await
            }
            Err(e) => Err(e),
        };
        match res {
            Err(e) if !stop.is_cancelled() => {
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= STORE_PATIENCE {
                    return Err(e);
                }
                tracing::warn!(error = %e, "the controller stepped down; leading again once it can");
                if !matches!(e, crate::controller::Error::LeaseLost(_)) {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
            other => return other,
        }
    }
}

/// How long the stop waits for the controller to ingest the workers' last
/// results.
const DRAIN_RESULTS: Duration = Duration::from_secs(30);

/// The stop order of a process with local workers: the workers stop first
/// (each finishes its file or hands it back, and publishes its result),
/// then the controller, still running, ingests what they published; only
/// then may it stop. Stopping the controller first would drop finished
/// work with the in-process queue, and the next run would read it again.
async fn stop_in_order(
    local: &LocalRuntime,
    queue: &dyn TaskQueue,
    controller: Option<&tokio::task::JoinHandle<crate::controller::Result<()>>>,
) {
    let report = local.shutdown().await;
    tracing::info!(
        succeeded = report.succeeded,
        failed = report.failed,
        handed_back = report.handed_back,
        "local workers stopped; ingesting their last results"
    );
    let deadline = tokio::time::Instant::now() + DRAIN_RESULTS;
    loop {
        if controller.is_some_and(|c| c.is_finished()) {
            return;
        }
        match queue.depth(skep_api::RESULTS_TOPIC).await {
            Ok(d) if d.total() == 0 => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot see the results queue; stopping without waiting for it");
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("results still waiting after {DRAIN_RESULTS:?}; their files are read again next time");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finish(job: &BulkJob, output: OutputFormat) -> CliResult {
    match output {
        OutputFormat::Table => print::summary(job),
        f => print::job(job, f)?,
    }
    Ok(if job.status().phase == Phase::Succeeded {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// Shows progress until the job finishes (`Some`), or until shutdown or
/// the controller stops (`None`).
async fn watch_progress(
    store: &dyn Store,
    name: &str,
    quiet: bool,
    shutdown: &CancellationToken,
    controller: &tokio::task::JoinHandle<crate::controller::Result<()>>,
) -> Result<Option<BulkJob>, CliError> {
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if quiet || !tty {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:32}] {pos}/{len} pages  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar.set_message("scanning");
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut last_log = tokio::time::Instant::now();
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() || controller.is_finished() {
            bar.abandon();
            return Ok(None);
        }
        // NB: a store out of reach for a while is waited for, as the
        // controller waits for it (see `lead`).
        let read = match store.get_job(name).await {
            Ok(read) => {
                unreachable_since = None;
                read
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(|| {
                    if !quiet {
                        bar.suspend(|| eprintln!("{name}: the store is out of reach ({e}); waiting for it"));
                    }
                    tokio::time::Instant::now()
                });
                if since.elapsed() >= STORE_PATIENCE {
                    bar.abandon();
                    return Err(e.into());
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
        };
        let Some(job) = read else {
            bar.abandon();
            return Err(CliError::failed(format!("{name} was deleted while it ran")));
        };
        let s = job.status();
        // NB: the bar and its ETA count pages (a file not opened yet is one
        // page): one long document is most of a job's work.
        let scanning = !s.is_true(skep_api::condition::SCANNED);
        if s.files.total > 0 {
            bar.set_length(s.pages.total.max(s.files.total));
            bar.set_position(s.pages.done);
            bar.set_message(if scanning {
                format!("scanning: {} files found so far", s.files.total)
            } else {
                format!(
                    "{}/{} files, {} failed, {} workers",
                    s.files.finished(),
                    s.files.total,
                    s.files.failed,
                    s.replicas.running
                )
            });
        }
        if !quiet && !tty && last_log.elapsed() >= LOG_EVERY && scanning {
            eprintln!("{name}: scanning, {} files found so far", s.files.total);
            last_log = tokio::time::Instant::now();
        } else if !quiet && !tty && last_log.elapsed() >= LOG_EVERY {
            eprintln!(
                "{name}: {} {}/{} files done ({}/{} pages), {} failed, {} workers",
                s.phase,
                s.files.finished(),
                s.files.total,
                s.pages.done,
                s.pages.total,
                s.files.failed,
                s.replicas.running
            );
            last_log = tokio::time::Instant::now();
        }
        if s.phase.is_finished() {
            bar.finish_and_clear();
            return Ok(Some(job));
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The swarm runtime's configuration from its flags; workers get
/// `queue` (the controller's own queue URL) unless `--worker-env` names one.
fn swarm_config(args: &SwarmArgs, queue: String) -> Result<SwarmConfig, CliError> {
    if !(args.node_factor.is_finite() && args.node_factor > 0.0) {
        return Err(CliError::invalid(format!(
            "--node-factor must be above 0, got {}",
            args.node_factor
        )));
    }
    for (flag, v) in [
        ("--worker-cpus", Some(args.worker_cpus)),
        ("--worker-cpu-limit", args.worker_cpu_limit),
    ] {
        if v.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Err(CliError::invalid(format!("{flag} must be 0 or more cores")));
        }
    }
    if args.service_prefix.is_empty() {
        return Err(CliError::invalid("--service-prefix must not be empty"));
    }
    let template = args.worker_image.as_ref().map(|image| ServiceTemplate {
        env: args.worker_env.clone(),
        queue: Some(queue),
        mounts: args.worker_mounts.clone(),
        networks: args.worker_networks.clone(),
        cpu_reservation: Some(args.worker_cpus),
        memory_reservation: Some(args.worker_memory),
        cpu_limit: args.worker_cpu_limit,
        memory_limit: args.worker_memory_limit,
        constraints: args.worker_constraints.clone(),
        ..ServiceTemplate::new(image.clone())
    });
    Ok(SwarmConfig {
        service_prefix: args.service_prefix.clone(),
        slots_per_replica: args.worker_slots.max(1),
        node_factor: args.node_factor,
        template,
        ..SwarmConfig::default()
    })
}

pub async fn controller(global: &GlobalArgs, args: ControllerArgs) -> CliResult {
    let paths = args.paths.policy()?;
    if args.api.api_only && args.files.file_url_base.is_some() && args.files.file_url_key_file.is_none() {
        return Err(CliError::invalid(
            "--api-only serves the file URLs another controller signs: give it the same --file-url-key-file",
        ));
    }
    let file_key = args.files.key()?;
    if args.api.api_only {
        return api_only(global, &args.api, paths, file_key).await;
    }
    let file_urls = args.files.urls(file_key.as_ref(), args.api.listen.as_ref())?;
    let (raw_queue, queue_url) = queue_url(&args.queue)?;
    let swarm = match args.runtime {
        RuntimeKind::Local if args.workers == Some(0) && queue_url.backend() == "memory" => {
            return Err(CliError::invalid(
                "--workers 0 runs no worker in this process, and the in-process queue (memory:) reaches no other: \
                 give --queue amqp://… or nsq://… for workers started elsewhere",
            ));
        }
        RuntimeKind::Local => None,
        RuntimeKind::External if queue_url.backend() == "memory" => {
            return Err(CliError::invalid(
                "--runtime external needs a queue the outside workers can reach (--queue amqp://…, nsq://… or SKEP_QUEUE); \
                 memory: lives inside this process",
            ));
        }
        RuntimeKind::External => None,
        RuntimeKind::Swarm if queue_url.backend() == "memory" => {
            return Err(CliError::invalid(
                "--runtime swarm needs a queue the worker services can reach (--queue amqp://…, nsq://… or SKEP_QUEUE); \
                 memory: lives inside this process",
            ));
        }
        RuntimeKind::Swarm => Some(swarm_config(&args.swarm, raw_queue)?),
    };
    // NB: the swarm first: a daemon that is not a manager is the likeliest
    // misconfiguration, and checking it costs nothing.
    let swarm = match swarm {
        Some(cfg) => {
            let swarm = SwarmRuntime::connect(cfg)
                .await
                .map_err(|e| CliError::failed(format!("cannot use the swarm: {e}")))?;
            tracing::info!(docker = swarm.endpoint(), service_prefix = %swarm.config().service_prefix, "swarm runtime connected");
            Some(swarm)
        }
        None => None,
    };
    let store = open_store(global).await?;
    let queue = connect_queue(&queue_url).await?;
    let shutdown = super::shutdown_on_signals();
    let metrics = crate::metrics::Metrics::new();
    let registry = Registry::new();
    let ready = crate::http::Readiness::default();
    let server = match &args.api.listen {
        Some(addr) => Some(
            start_http(
                addr,
                &args.api,
                HttpParts {
                    store: store.clone(),
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                    paths: paths.clone(),
                    file_key: file_key.clone(),
                    workers: registry.clone(),
                },
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    // NB: supervised: a server that ends before shutdown (a panic, a failed
    // accept loop) stops the whole process with an error, so that the swarm
    // restarts it, instead of leaving a controller nobody can reach.
    let server = server.map(|handle| {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let ended = server_ended(handle).await;
            if shutdown.is_cancelled() {
                return ended.map(|()| false);
            }
            tracing::error!(
                error = ended.as_ref().err().map(String::as_str).unwrap_or("it returned"),
                "the HTTP server stopped; stopping the controller"
            );
            shutdown.cancel();
            Ok(true)
        })
    });
    let (runtime, local): (Arc<dyn Runtime>, Option<Arc<LocalRuntime>>) = match (swarm, args.runtime) {
        (Some(swarm), _) => (Arc::new(swarm), None),
        (None, RuntimeKind::External) => (Arc::new(ExternalRuntime::new(registry.clone())), None),
        (None, _) => {
            let local = embedded(store.clone(), queue.clone(), args.workers).runtime;
            (local.clone(), Some(local))
        }
    };
    let cfg = ControllerConfig {
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        scale_down_cooldown: Duration::from_secs(args.scale_down_cooldown_seconds),
        default_output_root: std::env::current_dir().unwrap_or_default().join("skep-output"),
        metrics,
        paths,
        file_urls,
        objects: args.s3.stores()?,
        workers: registry.clone(),
        ..ControllerConfig::default()
    };
    let backend = runtime.backend();
    // NB: losing the lease (another controller took it, or the store was
    // out of reach too long to be sure) steps down to standby, never ends
    // the process: it leads again once it can.
    // NB: on a signal, local workers stop first and their last results are
    // ingested before the controller stops (see `stop_in_order`).
    let ctl_stop = CancellationToken::new();
    let stopper = {
        let (shutdown, ctl_stop, local, queue) = (shutdown.clone(), ctl_stop.clone(), local.clone(), queue.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if let Some(local) = &local {
                stop_in_order(local, queue.as_ref(), None).await;
            }
            ctl_stop.cancel();
        })
    };
    let mut terms = Terms {
        store: store.clone(),
        queue: queue.clone(),
        runtime: runtime.clone(),
        cfg,
        led: false,
    };
    let res = loop {
        let c = match terms.start(&ctl_stop).await {
            Ok(Some(c)) => c,
            Ok(None) => break Ok(()),
            Err(e) if !shutdown.is_cancelled() => {
                tracing::warn!(error = %e, "cannot start leading; standing by and trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
            Err(e) => break Err(e),
        };
        ready.set(true);
        tracing::info!(runtime = backend, "controller running; Ctrl-C to stop");
        let res = c.wait().await;
        ready.set(false);
        match res {
            Err(crate::controller::Error::LeaseLost(by)) if !shutdown.is_cancelled() => {
                tracing::warn!(
                    lease_holder = %by,
                    "stepped down: no longer sure to hold the controller lease; standing by to lead again"
                );
            }
            // NB: any other failure (the store's watch ended in an outage,
            // say) steps down too: the lease is released for another
            // controller, and this one tries again after a pause.
            Err(e) if !shutdown.is_cancelled() => {
                tracing::error!(error = %e, "the controller stopped; standing by to lead again");
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
            other => break other,
        }
    };
    shutdown.cancel();
    let _ = stopper.await;
    if let Some(local) = local {
        local.shutdown().await;
    }
    if let Some(server) = server {
        match server.await {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => return Err(CliError::failed("the HTTP server stopped before shutdown")),
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server failed"),
            Err(e) => return Err(CliError::failed(format!("the HTTP server's supervisor ended: {e}"))),
        }
    }
    res?;
    // NB: interrupted while waiting for the lease: 130, as before.
    Ok(if terms.led { exit::OK } else { exit::INTERRUPTED })
}

/// `skep controller --api-only`: the HTTP server on the store, no
/// reconciling, until Ctrl-C.
async fn api_only(
    global: &GlobalArgs,
    api: &super::ApiArgs,
    paths: crate::paths::PathPolicy,
    file_key: Option<crate::files::FileKey>,
) -> CliResult {
    let Some(addr) = &api.listen else {
        return Err(CliError::invalid("--api-only needs --listen"));
    };
    let store = open_store(global).await?;
    let shutdown = super::shutdown_on_signals();
    let ready = crate::http::Readiness::default();
    ready.set(true);
    let parts = HttpParts {
        store,
        metrics: crate::metrics::Metrics::new(),
        ready,
        paths,
        file_key,
        workers: Registry::new(),
    };
    let server = start_http(addr, api, parts, shutdown).await?;
    tracing::info!("serving the API only (--api-only): this process does not reconcile");
    server_ended(server)
        .await
        .map(|()| exit::OK)
        .map_err(|e| CliError::failed(format!("the HTTP server failed: {e}")))
}

/// Waits for the HTTP server task; its failure (or panic) as text.
async fn server_ended(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), String> {
    match server.await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the task ended: {e}")),
    }
}

/// Binds `addr` and serves the API, dashboard and metrics until
/// `shutdown`. A bind failure is the command's failure; the server runs
/// while this process waits for the controller lease too (its /readyz
/// says 503 until the lease is taken).
/// What the HTTP server shares with the rest of the process.
struct HttpParts {
    store: Arc<dyn Store>,
    metrics: crate::metrics::Metrics,
    ready: crate::http::Readiness,
    paths: crate::paths::PathPolicy,
    file_key: Option<crate::files::FileKey>,
    workers: Registry,
}

async fn start_http(
    addr: &std::net::SocketAddr,
    args: &super::ApiArgs,
    parts: HttpParts,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, CliError> {
    let HttpParts {
        store,
        metrics,
        ready,
        paths,
        file_key,
        workers,
    } = parts;
    use crate::http::auth::{Auth, Tokens};
    let auth = match (&args.api_tokens_file, args.api_no_auth) {
        (Some(path), _) => {
            Auth::Tokens(Tokens::from_file(path).map_err(|e| CliError::invalid(format!("--api-tokens-file: {e}")))?)
        }
        (None, true) => {
            tracing::warn!(
                "the API runs without auth (--api-no-auth): anyone who reaches {addr} can change jobs and the swarm"
            );
            Auth::Disabled
        }
        (None, false) => {
            tracing::warn!("no --api-tokens-file: every /api route answers 401 until one is given");
            Auth::Tokens(Tokens::default())
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::failed(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("cannot listen on {addr}: {e}")))?;
    let limits = args.limits()?;
    let app = crate::http::router(crate::http::ServerParts {
        store,
        docker: crate::http::Docker::from_env(),
        metrics: metrics.clone(),
        auth,
        ready,
        limits,
        paths,
        swarm_policy: args.swarm_policy(),
        shutdown: shutdown.clone(),
        file_key,
        workers,
    });
    tracing::info!(listen = %local, ?limits, "serving the API, dashboard and metrics");
    Ok(tokio::spawn(
        crate::http::serve(listener, app, limits, metrics, shutdown).instrument(tracing::info_span!("http")),
    ))
}
