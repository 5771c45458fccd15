//! The `skep` command line: kubectl-like verbs over the store, `skep run`
//! for the whole system in one process, and `skep controller`.

mod load;
mod print;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use skep_api::Phase;
use tokio_util::sync::CancellationToken;

use crate::store::{Deleted, Store, StoreError, StoreUrl};

pub use load::{LoadError, load_job_file};

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// The job failed, or a command failed.
    pub const FAILED: u8 = 1;
    /// Bad input: unreadable YAML, a schema violation, bad flags.
    pub const INVALID: u8 = 2;
    /// Interrupted (Ctrl-C / SIGTERM).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(
    name = "skep",
    version,
    about = "Bulk OCR jobs, declared as BulkJob documents and reconciled onto workers",
    long_about = "skep runs bulk OCR jobs. A BulkJob document names a folder of scanned images; \
                  a reconciling controller scans it, scales workers to the file count, feeds them \
                  one task per file and writes every file's text and a report.\n\n\
                  `skep run -f job.yaml` does all of it in one process on one machine."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where jobs and results are kept: sqlite:PATH or mongodb://HOST/DB
    /// (default: skep.db in the user's data folder). SKEP_STORE_FILE may
    /// name a file holding the URL instead (a Docker secret).
    #[arg(long, global = true, env = "SKEP_STORE")]
    pub store: Option<String>,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(long, global = true, env = "SKEP_LOG")]
    pub log: Option<String>,
}

/// Which queue carries tasks and results.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// `memory:` (in-process, the default), `amqp://USER:PASS@HOST:PORT/VHOST`
    /// (RabbitMQ), `nsq://HOST:4150[,HOST:4150...]` (NSQ, nsqds named) or
    /// `nsqlookup://HOST:4161[,...]` (NSQ, nsqds found through nsqlookupd).
    /// SKEP_QUEUE_FILE may name a file holding the URL instead.
    #[arg(long, env = "SKEP_QUEUE")]
    pub queue: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job to the end in this process: store, controller and local
    /// workers (one per core). Exit code 0 when the job succeeded.
    Run(RunArgs),
    /// Create or update a job in the store.
    Apply {
        /// The BulkJob YAML or JSON file (`-` for stdin).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List jobs, or show one.
    Get {
        name: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a job in detail: status, conditions, report.
    Describe { name: String },
    /// Delete a job. A controller cleans up first (scales back, purges tasks).
    Delete {
        name: String,
        /// Remove it now, without waiting for a controller's cleanup.
        #[arg(long)]
        force: bool,
        /// Wait until it is gone.
        #[arg(long)]
        wait: bool,
    },
    /// Wait until a job finishes; exit code 0 when it succeeded.
    Wait {
        name: String,
        /// Give up after this many seconds (exit code 1).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Run the controller until interrupted; `skep apply` jobs to it. Workers
    /// run as tasks of this process (`--runtime local`, the default), as a
    /// Docker Swarm service per pool (`--runtime swarm`), or anywhere the
    /// controller does not start them (`--runtime external`); the last two
    /// need a queue the workers can reach.
    Controller(Box<ControllerArgs>),
    /// Print the BulkJob JSON Schema (crds/bulkjob.schema.json).
    Crd,
    /// Print the REST API's OpenAPI document (what `skep controller
    /// --listen` serves at /api/openapi.json).
    Openapi,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The BulkJob YAML or JSON file (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Print the final job: `table` (a summary), `yaml` or `json`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Local worker replicas at most (default: one per core; 0: none in
    /// this process, for workers started elsewhere on the --queue broker).
    #[arg(long, env = "SKEP_WORKERS")]
    pub workers: Option<u32>,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub s3: S3Args,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Where `skep controller` runs worker replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Worker tasks inside this process.
    #[default]
    Local,
    /// A Docker Swarm service per pool, through DOCKER_HOST (default
    /// unix:///var/run/docker.sock), which must be a swarm manager.
    Swarm,
    /// Workers this controller does not start (any host, any cluster): a
    /// pool's running replicas are the workers beating on it; the desired
    /// count is computed and exported for an outside autoscaler. Needs a
    /// broker.
    External,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Where worker replicas run.
    #[arg(long, env = "SKEP_RUNTIME", value_enum, default_value_t)]
    pub runtime: RuntimeKind,
    /// Local worker replicas at most (default: one per core; local runtime;
    /// 0: none in this process, for workers started elsewhere on the
    /// --queue broker).
    #[arg(long, env = "SKEP_WORKERS")]
    pub workers: Option<u32>,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub paths: PathArgs,
    #[command(flatten)]
    pub files: FileUrlArgs,
    #[command(flatten)]
    pub s3: S3Args,
    /// Seconds between full resyncs.
    #[arg(long, env = "SKEP_RESYNC_SECONDS", default_value_t = crate::controller::DEFAULT_RESYNC.as_secs())]
    pub resync_seconds: u64,
    /// Seconds a pool waits after a change before it scales down.
    #[arg(long, env = "SKEP_SCALE_DOWN_COOLDOWN_SECONDS", default_value_t = crate::controller::DEFAULT_SCALE_DOWN_COOLDOWN.as_secs())]
    pub scale_down_cooldown_seconds: u64,
    // NB: last, so that its help heading covers its flags only.
    #[command(flatten)]
    pub swarm: SwarmArgs,
}

/// The HTTP server: REST API, dashboard, metrics.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Serve the REST API (/api, OpenAPI at /api/openapi.json), the
    /// dashboard (/), /metrics, /livez and /readyz on this address, e.g.
    /// 0.0.0.0:8080. Without it, no HTTP server runs.
    #[arg(long, env = "SKEP_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// File of API bearer tokens, one `TOKEN SCOPE` per line (scope `read`
    /// or `admin`), as a Docker secret mounts it. Without it (and without
    /// --api-no-auth) every /api route answers 401.
    #[arg(long, env = "SKEP_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Serve the API without auth: for a controller bound to loopback on a
    /// developer's machine only.
    #[arg(long, env = "SKEP_API_NO_AUTH", conflicts_with = "api_tokens_file")]
    pub api_no_auth: bool,
    /// Serve the HTTP API only, without reconciling: an API and dashboard
    /// replica beside the active controller. Needs --listen.
    #[arg(long, env = "SKEP_API_ONLY", requires = "listen")]
    pub api_only: bool,
    /// Open HTTP connections at most; a connection over the cap is closed as
    /// soon as it is accepted.
    #[arg(long, env = "SKEP_HTTP_MAX_CONNECTIONS", default_value_t = crate::http::server::DEFAULT_MAX_CONNECTIONS)]
    pub http_max_connections: usize,
    /// Seconds a client has to send a request's headers (slow-header clients
    /// are cut off).
    #[arg(long, env = "SKEP_HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = crate::http::server::DEFAULT_HEADER_TIMEOUT.as_secs())]
    pub http_header_timeout_seconds: u64,
    /// Seconds a connection may go without a byte read or written (idle
    /// keep-alive connections, event streams nobody reads) before it is
    /// closed.
    #[arg(long, env = "SKEP_HTTP_IDLE_TIMEOUT_SECONDS", default_value_t = crate::http::server::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub http_idle_timeout_seconds: u64,
    /// Seconds a request (its body included) may take to be answered; 408
    /// after. Event streams then stream under the idle timeout.
    #[arg(long, env = "SKEP_HTTP_REQUEST_TIMEOUT_SECONDS", default_value_t = crate::http::server::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    pub http_request_timeout_seconds: u64,
    /// Event streams (`/api/events`, `/api/jobs/NAME/events`) open at most;
    /// more answer 429.
    #[arg(long, env = "SKEP_API_MAX_STREAMS", default_value_t = crate::http::events::DEFAULT_MAX_STREAMS)]
    pub api_max_streams: usize,
    /// Let the API scale, change the image of and remove any service of the
    /// swarm, not only skep's own (label dev.skep.owned=true) and never one
    /// mounting the Docker socket: an admin token then controls every
    /// service, the controller's own included.
    #[arg(long, env = "SKEP_API_MANAGE_ANY_SERVICE")]
    pub api_manage_any_service: bool,
    /// Switch off stack deploy and removal over the API.
    #[arg(long, env = "SKEP_API_NO_STACKS")]
    pub api_no_stacks: bool,
    /// Switch off image changes of services over the API.
    #[arg(long, env = "SKEP_API_NO_IMAGE_CHANGE")]
    pub api_no_image_change: bool,
    /// Event streams open at most per API token; more answer 429.
    #[arg(long, env = "SKEP_API_MAX_STREAMS_PER_TOKEN", default_value_t = crate::http::events::DEFAULT_MAX_STREAMS_PER_TOKEN)]
    pub api_max_streams_per_token: usize,
}

impl ApiArgs {
    pub fn swarm_policy(&self) -> crate::http::SwarmPolicy {
        crate::http::SwarmPolicy {
            manage_any_service: self.api_manage_any_service,
            no_stacks: self.api_no_stacks,
            no_image_change: self.api_no_image_change,
        }
    }

    /// The server's limits from the flags; each must be above 0.
    pub fn limits(&self) -> Result<crate::http::Limits, CliError> {
        let secs = |flag: &str, v: u64| {
            if v == 0 {
                Err(CliError::invalid(format!("{flag} must be at least 1")))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        for (flag, v) in [
            ("--http-max-connections", self.http_max_connections),
            ("--api-max-streams", self.api_max_streams),
            ("--api-max-streams-per-token", self.api_max_streams_per_token),
        ] {
            if v == 0 {
                return Err(CliError::invalid(format!("{flag} must be at least 1")));
            }
        }
        Ok(crate::http::Limits {
            max_connections: self.http_max_connections,
            header_timeout: secs("--http-header-timeout-seconds", self.http_header_timeout_seconds)?,
            idle_timeout: secs("--http-idle-timeout-seconds", self.http_idle_timeout_seconds)?,
            request_timeout: secs("--http-request-timeout-seconds", self.http_request_timeout_seconds)?,
            max_streams: self.api_max_streams,
            max_streams_per_token: self.api_max_streams_per_token,
        })
    }
}

/// Signed file URLs, for workers with no mount of a folder source.
#[derive(Debug, Args)]
pub struct FileUrlArgs {
    /// The URL workers reach this controller's HTTP server at (e.g.
    /// http://skep-controller:8080). Each task of a folder source then
    /// carries a URL for its one file, signed and expiring with the task's
    /// dispatch lease, served at /files; a worker that cannot see the path
    /// reads the file through it. Needs --listen.
    #[arg(long, env = "SKEP_FILE_URL_BASE")]
    pub file_url_base: Option<String>,
    /// File holding the key that signs file URLs (32 bytes or more, e.g. a
    /// Docker secret). Every controller and --api-only replica serving the
    /// same jobs needs the same key; without one, a key is made at start
    /// and the URLs in tasks queued by an earlier process are refused (the
    /// files are retried with fresh URLs).
    #[arg(long, env = "SKEP_FILE_URL_KEY_FILE")]
    pub file_url_key_file: Option<PathBuf>,
}

impl FileUrlArgs {
    /// The key: from the key file, else a new one when URLs are signed.
    pub fn key(&self) -> Result<Option<crate::files::FileKey>, CliError> {
        match (&self.file_url_key_file, &self.file_url_base) {
            (Some(path), _) => crate::files::FileKey::from_file(path)
                .map(Some)
                .map_err(|e| CliError::invalid(format!("--file-url-key-file: {e}"))),
            (None, Some(_)) => {
                tracing::info!(
                    "file URLs are signed with a key made at start (no --file-url-key-file): \
                     URLs queued by an earlier process will be refused and their files retried"
                );
                Ok(Some(crate::files::FileKey::random()))
            }
            (None, None) => Ok(None),
        }
    }

    /// The signer of task URLs, if `--file-url-base` is given.
    pub fn urls(
        &self,
        key: Option<&crate::files::FileKey>,
        listen: Option<&std::net::SocketAddr>,
    ) -> Result<Option<crate::files::FileUrls>, CliError> {
        let (Some(base), Some(key)) = (&self.file_url_base, key) else {
            return Ok(None);
        };
        if listen.is_none() {
            return Err(CliError::invalid(
                "--file-url-base needs --listen: the file URLs are served by this controller's HTTP server",
            ));
        }
        crate::files::FileUrls::new(base, key.clone())
            .map(Some)
            .map_err(|e| CliError::invalid(format!("--file-url-base: {e}")))
    }
}

/// Which folders jobs may read and write.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// A folder jobs may use as source or output (repeat; SKEP_ALLOW_PATHS
    /// takes a colon-separated list). A job whose source or output is
    /// elsewhere (symlinks resolved) is refused over the API (400) and
    /// failed by the controller (PathNotAllowed) without being touched.
    #[arg(long = "allow-path", env = "SKEP_ALLOW_PATHS", value_delimiter = ':')]
    pub allow_paths: Vec<PathBuf>,
    /// An object-storage prefix jobs may use as source, s3://BUCKET[/PREFIX]
    /// (repeat; SKEP_ALLOW_S3 takes a comma-separated list). Other buckets
    /// the controller's keys can read stay out of jobs' reach.
    #[arg(long = "allow-s3", env = "SKEP_ALLOW_S3", value_delimiter = ',', value_parser = parse_object_url)]
    pub allow_s3: Vec<skep_api::ObjectUrl>,
    /// An object-storage prefix jobs may write their outputs under,
    /// s3://BUCKET[/PREFIX] (repeat; SKEP_ALLOW_S3_OUTPUT, comma-separated).
    /// Separate from --allow-s3: reading a bucket grants no writing there.
    #[arg(long = "allow-s3-output", env = "SKEP_ALLOW_S3_OUTPUT", value_delimiter = ',', value_parser = parse_object_url)]
    pub allow_s3_output: Vec<skep_api::ObjectUrl>,
    /// Let jobs use any folder this process can reach, as root if it runs
    /// as root, and any bucket its keys can read: only where every admin
    /// token holder may read and write the whole host.
    #[arg(long, env = "SKEP_ALLOW_ANY_PATH", conflicts_with_all = ["allow_paths", "allow_s3", "allow_s3_output"])]
    pub allow_any_path: bool,
}

fn parse_object_url(s: &str) -> Result<skep_api::ObjectUrl, String> {
    skep_api::ObjectUrl::parse(s)
}

/// How the controller reaches object storage, for `s3://` sources. Keys
/// come from files (Docker secrets) or the AWS_* environment, never from
/// a job.
#[derive(Debug, Args)]
pub struct S3Args {
    /// Endpoint of an S3-compatible server (e.g. http://minio:9000);
    /// default AWS S3 in --s3-region. An endpoint means path-style
    /// requests (http://HOST/BUCKET/KEY) unless --s3-virtual-hosted.
    #[arg(long, env = "SKEP_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Region (AWS_REGION when unset, else us-east-1).
    #[arg(long, env = "SKEP_S3_REGION")]
    pub s3_region: Option<String>,
    /// File holding the access key id (else AWS_ACCESS_KEY_ID).
    #[arg(long, env = "SKEP_S3_ACCESS_KEY_ID_FILE")]
    pub s3_access_key_id_file: Option<PathBuf>,
    /// File holding the secret access key (else AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "SKEP_S3_SECRET_ACCESS_KEY_FILE")]
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// Bucket in the host name (BUCKET.HOST) with an --s3-endpoint.
    #[arg(long, env = "SKEP_S3_VIRTUAL_HOSTED")]
    pub s3_virtual_hosted: bool,
}

impl S3Args {
    /// The object stores: none when no keys are given.
    pub fn stores(&self) -> Result<crate::objects::ObjectStores, CliError> {
        use crate::objects::secret;
        let id = secret(
            self.s3_access_key_id_file.as_ref(),
            "AWS_ACCESS_KEY_ID",
            "--s3-access-key-id-file",
        )
        .map_err(CliError::invalid)?;
        let key = secret(
            self.s3_secret_access_key_file.as_ref(),
            "AWS_SECRET_ACCESS_KEY",
            "--s3-secret-access-key-file",
        )
        .map_err(CliError::invalid)?;
        let from_env = self.s3_access_key_id_file.is_none() && self.s3_secret_access_key_file.is_none();
        let (id, key) = match (id, key) {
            (Some(id), Some(key)) => (id, key),
            (None, None) if self.s3_endpoint.is_none() => return Ok(crate::objects::ObjectStores::none()),
            _ => {
                return Err(CliError::invalid(
                    "object storage needs both an access key id and a secret access key \
                     (--s3-access-key-id-file and --s3-secret-access-key-file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                ));
            }
        };
        if let Some(e) = &self.s3_endpoint {
            let parsed = url::Url::parse(e).map_err(|err| CliError::invalid(format!("--s3-endpoint: {err}")))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || !parsed.username().is_empty()
                || parsed.password().is_some()
            {
                return Err(CliError::invalid(
                    "--s3-endpoint: an http:// or https:// URL with no credentials in it",
                ));
            }
        }
        let region = self
            .s3_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        Ok(crate::objects::ObjectStores::new(crate::objects::S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region,
            access_key_id: id,
            secret_access_key: key,
            // NB: a session token belongs to keys from the environment;
            // keys from files are long-lived ones.
            session_token: from_env
                .then(|| std::env::var("AWS_SESSION_TOKEN").ok())
                .flatten()
                .filter(|t| !t.is_empty()),
            virtual_hosted: self.s3_endpoint.is_none() || self.s3_virtual_hosted,
        }))
    }
}

impl PathArgs {
    pub fn policy(&self) -> Result<crate::paths::PathPolicy, CliError> {
        if self.allow_any_path {
            tracing::warn!(
                "--allow-any-path: jobs may read and write any folder this process can reach; \
                 anyone with an admin token can read files anywhere on this host"
            );
            return Ok(crate::paths::PathPolicy::Any);
        }
        let roots: Vec<PathBuf> = self
            .allow_paths
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .cloned()
            .collect();
        if roots.is_empty() {
            tracing::warn!(
                "no --allow-path: every job with a source folder will be refused; \
                 give --allow-path DIR (or SKEP_ALLOW_PATHS) for the folders jobs may use"
            );
        }
        Ok(crate::paths::PathPolicy::under(&roots)
            .map_err(|e| CliError::invalid(format!("--allow-path: {e}")))?
            .with_objects(crate::paths::ObjectPrefixes {
                read: self.allow_s3.clone(),
                write: self.allow_s3_output.clone(),
            }))
    }
}

/// The swarm runtime: how pool `P` maps to service `<prefix>P`, and the
/// template for creating that service when it does not exist.
#[derive(Debug, Args)]
#[command(next_help_heading = "Swarm runtime (--runtime swarm)")]
pub struct SwarmArgs {
    /// Image of the worker services skep creates. Without it, each pool's
    /// service must exist already (deployed from a stack file, say).
    #[arg(long, env = "SKEP_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    /// Extra worker environment, KEY=VALUE (repeat, or comma-separate).
    /// SKEP_QUEUE (the controller's queue), SKEP_POOL, SKEP_NODE and
    /// SKEP_WORKER_SLOTS are set unless given here (SKEP_POOL always).
    #[arg(long = "worker-env", env = "SKEP_WORKER_ENV", value_delimiter = ',', value_parser = crate::runtime::swarm::parse_env)]
    pub worker_env: Vec<(String, String)>,
    /// Bind mounts of the workers, SRC:DST[:ro] (repeat, or comma-separate).
    #[arg(long = "worker-mount", env = "SKEP_WORKER_MOUNTS", value_delimiter = ',')]
    pub worker_mounts: Vec<crate::runtime::swarm::BindMount>,
    /// Networks the workers join (repeat, or comma-separate).
    #[arg(long = "worker-network", env = "SKEP_WORKER_NETWORK", value_delimiter = ',')]
    pub worker_networks: Vec<String>,
    /// CPU reserved per worker replica, in cores (0: none).
    #[arg(long, env = "SKEP_WORKER_CPUS", default_value_t = DEFAULT_WORKER_CPUS)]
    pub worker_cpus: f64,
    /// Memory reserved per worker replica, e.g. 512M or 1G (0: none).
    #[arg(long, env = "SKEP_WORKER_MEMORY", default_value = DEFAULT_WORKER_MEMORY, value_parser = crate::runtime::swarm::parse_memory)]
    pub worker_memory: u64,
    /// CPU limit per worker replica, in cores (default: none).
    #[arg(long, env = "SKEP_WORKER_CPU_LIMIT")]
    pub worker_cpu_limit: Option<f64>,
    /// Memory limit per worker replica, e.g. 1G (default: none).
    #[arg(long, env = "SKEP_WORKER_MEMORY_LIMIT", value_parser = crate::runtime::swarm::parse_memory)]
    pub worker_memory_limit: Option<u64>,
    /// Placement constraints of the workers, e.g. node.labels.ocr==true
    /// (repeat, or comma-separate).
    #[arg(long = "worker-constraint", env = "SKEP_WORKER_CONSTRAINTS", value_delimiter = ',')]
    pub worker_constraints: Vec<String>,
    /// Service name = this prefix + the pool name.
    #[arg(long, env = "SKEP_SERVICE_PREFIX", default_value = crate::runtime::swarm::DEFAULT_SERVICE_PREFIX)]
    pub service_prefix: String,
    /// OCR slots per worker replica.
    #[arg(long, env = "SKEP_WORKER_SLOTS", default_value_t = crate::runtime::swarm::DEFAULT_SLOTS_PER_REPLICA)]
    pub worker_slots: u32,
    /// Multiplies the worker replicas counted per node (as many as its CPUs
    /// and memory fit by the reservations; one per core without any).
    #[arg(long, env = "SKEP_NODE_FACTOR", default_value_t = crate::runtime::swarm::DEFAULT_NODE_FACTOR)]
    pub node_factor: f64,
}

/// Default `--worker-cpus`.
pub const DEFAULT_WORKER_CPUS: f64 = 1.0;
/// Default `--worker-memory`.
pub const DEFAULT_WORKER_MEMORY: &str = "384M";

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: exit::FAILED,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: exit::INVALID,
            message: message.into(),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::failed(e.to_string())
    }
}

impl From<crate::controller::Error> for CliError {
    fn from(e: crate::controller::Error) -> Self {
        CliError::failed(e.to_string())
    }
}

pub type CliResult = Result<u8, CliError>;

/// The default store file: `skep.db` in the user's data folder.
pub fn default_store_path() -> PathBuf {
    directories::ProjectDirs::from("dev", "skep", "skep")
        .map(|d| d.data_dir().join("skep.db"))
        .unwrap_or_else(|| PathBuf::from("skep.db"))
}

fn store_url(global: &GlobalArgs) -> Result<StoreUrl, CliError> {
    Ok(StoreUrl::from_env_or(global.store.as_deref())
        .map_err(CliError::invalid)?
        .unwrap_or_else(|| StoreUrl::Sqlite(default_store_path())))
}

/// The queue URL named by `--queue`, `SKEP_QUEUE` or the file named by
/// `SKEP_QUEUE_FILE` (`memory:`, in-process, when none is set), as given
/// and as parsed.
fn queue_url(args: &QueueArgs) -> Result<(String, skep_queue::QueueUrl), CliError> {
    let raw = match (
        &args.queue,
        std::env::var("SKEP_QUEUE_FILE").ok().filter(|s| !s.trim().is_empty()),
    ) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| CliError::invalid(format!("SKEP_QUEUE_FILE: cannot read {path}: {}", e.kind())))?,
        (None, None) => "memory:".to_owned(),
    };
    let raw = raw.trim().to_owned();
    let url = skep_queue::QueueUrl::parse(&raw).map_err(|e| CliError::invalid(format!("--queue: {e}")))?;
    Ok((raw, url))
}

async fn connect_queue(url: &skep_queue::QueueUrl) -> Result<std::sync::Arc<dyn skep_queue::TaskQueue>, CliError> {
    url.connect()
        .await
        .map_err(|e| CliError::failed(format!("cannot connect to the queue {url}: {e}")))
}

async fn open_store(global: &GlobalArgs) -> Result<Arc<dyn Store>, CliError> {
    let url = store_url(global)?;
    url.open()
        .await
        .map_err(|e| CliError::failed(format!("cannot open the store {url}: {e}")))
}

/// Runs a parsed command line; the caller maps the result to an exit code.
pub async fn execute(cli: Cli) -> CliResult {
    match cli.command {
        Command::Crd => {
            print!("{}", skep_api::schema_pretty());
            Ok(exit::OK)
        }
        Command::Openapi => {
            let doc = crate::http::openapi_document();
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).map_err(|e| CliError::failed(e.to_string()))?
            );
            Ok(exit::OK)
        }
        Command::Run(args) => run::run(&cli.global, args).await,
        Command::Apply { file, output } => {
            let job = load_job_file(&file).map_err(|e| CliError::invalid(e.to_string()))?;
            let store = open_store(&cli.global).await?;
            let applied = store.apply_job(job).await?;
            match output {
                OutputFormat::Table => {
                    let verb = match (applied.created, applied.spec_changed) {
                        (true, _) => "created",
                        (false, true) => "configured",
                        (false, false) => "unchanged",
                    };
                    println!("bulkjob.skep.dev/{} {verb}", applied.job.name());
                }
                f => print::job(&applied.job, f)?,
            }
            Ok(exit::OK)
        }
        Command::Get { name, output } => {
            let store = open_store(&cli.global).await?;
            let jobs = match name {
                Some(n) => vec![store.get_job(&n).await?.ok_or(StoreError::NotFound(n))?],
                None => store.list_jobs().await?,
            };
            print::jobs(&jobs, output)?;
            Ok(exit::OK)
        }
        Command::Describe { name } => {
            let store = open_store(&cli.global).await?;
            let job = store.get_job(&name).await?.ok_or(StoreError::NotFound(name))?;
            print::describe(&job);
            Ok(exit::OK)
        }
        Command::Delete { name, force, wait } => {
            let store = open_store(&cli.global).await?;
            if force {
                store.force_delete(&name).await?;
                println!("bulkjob.skep.dev/{name} deleted (forced: no cleanup ran)");
                return Ok(exit::OK);
            }
            match store.request_delete(&name).await? {
                Deleted::Removed => println!("bulkjob.skep.dev/{name} deleted"),
                Deleted::Marked if wait => {
                    eprintln!("bulkjob.skep.dev/{name} marked for deletion; waiting for the controller's cleanup");
                    while store.get_job(&name).await?.is_some() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    println!("bulkjob.skep.dev/{name} deleted");
                }
                Deleted::Marked => println!(
                    "bulkjob.skep.dev/{name} marked for deletion; a running controller cleans it up \
                     (--force removes it now)"
                ),
            }
            Ok(exit::OK)
        }
        Command::Wait { name, timeout } => {
            let store = open_store(&cli.global).await?;
            let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
            loop {
                let job = store.get_job(&name).await?.ok_or(StoreError::NotFound(name.clone()))?;
                let phase = job.status().phase;
                if phase.is_finished() {
                    println!("bulkjob.skep.dev/{name} {phase}");
                    return Ok(if phase == Phase::Succeeded {
                        exit::OK
                    } else {
                        exit::FAILED
                    });
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return Err(CliError::failed(format!(
                        "timed out waiting for {name} (phase {phase})"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Command::Controller(args) => run::controller(&cli.global, *args).await,
    }
}

/// Cancelled on the first Ctrl-C or SIGTERM; a second one exits at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            }
            if n == 0 {
                eprintln!("stopping: finishing files in flight (again to stop at once)");
                t.cancel();
            } else {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
    token
}

/// Log targets capped whatever `--log` says: they print secrets at debug.
pub const QUIET_TARGETS: &str = "bollard=warn";

/// The binary's whole `main`, after argument parsing.
pub fn main_with(cli: Cli) -> ExitCode {
    let default_level = match cli.command {
        Command::Controller(_) => "info",
        _ => "warn",
    };
    let filter = cli.global.log.clone().unwrap_or_else(|| default_level.to_owned());
    // NB: bollard logs whole Docker responses at debug (a manager's join
    // token, services' environment): never below warn, whatever the filter.
    let filter = format!("{filter},{QUIET_TARGETS}");
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match rt.block_on(execute(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
