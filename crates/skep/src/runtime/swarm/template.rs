//! The service skep creates for a pool that has none yet: image, command,
//! environment, bind mounts, networks, resources, placement, stop grace
//! and restart policy, plus the labels that mark it as skep's.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use bollard::models::{
    Limit, Mount, MountType, NetworkAttachmentConfig, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use super::capacity::Reservation;

/// Set to `true` on every service skep created.
pub const OWNED_LABEL: &str = "dev.skep.owned";
/// The pool a service serves.
pub const POOL_LABEL: &str = "dev.skep.pool";
/// What the swarm waits between SIGTERM and SIGKILL. A worker finishes or
/// hands back its file inside its own grace (25 s), so this leaves room.
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Between restarts of a replica that exited with an error.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);
/// The swarm fills in `{{.Node.Hostname}}` per task.
const NODE_HOSTNAME: &str = "{{.Node.Hostname}}";

/// A bind mount, `SRC:DST[:ro]`, both absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

impl FromStr for BindMount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, read_only) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, true),
            [src, dst, "rw"] => (*src, *dst, false),
            _ => return Err(format!("{s:?}: expected SRC:DST or SRC:DST:ro")),
        };
        if !source.starts_with('/') || !target.starts_with('/') {
            return Err(format!("{s:?}: both paths of a bind mount must be absolute"));
        }
        Ok(Self {
            source: source.to_owned(),
            target: target.to_owned(),
            read_only,
        })
    }
}

/// `KEY=VALUE` (the value may be empty or hold more `=`).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// A byte size as Docker writes them: `512M`, `1G`, `1.5g`, `256MiB`,
/// `1048576` (units are powers of 1024).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit (use k, m, g or t)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: not a size like 384M or 1G"))?;
    let bytes = (n * mult as f64).round();
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(bytes as u64)
}

/// Cores to the Engine API's nano-CPUs; `None` for 0 or less.
fn nano_cpus(cores: Option<f64>) -> Option<i64> {
    cores
        .filter(|c| c.is_finite() && *c > 0.0)
        .map(|c| (c * 1e9).round() as i64)
}

fn bytes(b: Option<u64>) -> Option<i64> {
    b.filter(|b| *b > 0).map(|b| i64::try_from(b).unwrap_or(i64::MAX))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Where worker services read the queue URL: a file of this name under
/// `/run/secrets/`, from the Docker secret the controller makes.
pub const QUEUE_SECRET_FILE: &str = "skep_queue";

/// The Docker secret holding the queue URL for the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSecret {
    pub id: String,
    pub name: String,
}

impl QueueSecret {
    /// The secret's name for `url`: `skep-queue-` and a digest of the URL
    /// (a changed URL is a new secret; secrets cannot change).
    pub fn name_for(url: &str) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(url.as_bytes());
        let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("skep-queue-{hex}")
    }
}

/// How a pool's service is made when it does not exist.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceTemplate {
    pub image: String,
    /// The container's arguments (its CMD); empty: the image's own.
    pub args: Vec<String>,
    /// Extra environment. skep adds `SKEP_QUEUE` (from [`Self::queue`]),
    /// `SKEP_NODE` and `SKEP_WORKER_SLOTS` unless set here, and always
    /// sets `SKEP_POOL` itself.
    pub env: Vec<(String, String)>,
    /// The broker the workers read from, passed as `SKEP_QUEUE` (unless
    /// `env` names `SKEP_QUEUE` or `SKEP_QUEUE_FILE`).
    pub queue: Option<String>,
    pub mounts: Vec<BindMount>,
    pub networks: Vec<String>,
    /// Reserved per replica, in cores.
    pub cpu_reservation: Option<f64>,
    pub memory_reservation: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub memory_limit: Option<u64>,
    /// Placement constraints, as `docker service create --constraint`.
    pub constraints: Vec<String>,
    pub stop_grace_period: Duration,
    pub restart_delay: Duration,
}

impl ServiceTemplate {
    /// The image with skep's defaults: no reservations, no mounts.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            args: Vec::new(),
            env: Vec::new(),
            queue: None,
            mounts: Vec::new(),
            networks: Vec::new(),
            cpu_reservation: None,
            memory_reservation: None,
            cpu_limit: None,
            memory_limit: None,
            constraints: Vec::new(),
            stop_grace_period: DEFAULT_STOP_GRACE_PERIOD,
            restart_delay: DEFAULT_RESTART_DELAY,
        }
    }

    pub fn reservation(&self) -> Reservation {
        Reservation {
            nano_cpus: nano_cpus(self.cpu_reservation),
            memory_bytes: bytes(self.memory_reservation),
        }
    }

    /// Whether the workers get [`Self::queue`] from skep (through a
    /// secret), not from `env`.
    pub fn needs_queue_secret(&self) -> bool {
        let given = |k: &str| self.env.iter().any(|(key, _)| key == k);
        self.queue.is_some() && !given("SKEP_QUEUE") && !given("SKEP_QUEUE_FILE")
    }

    /// The container environment for `pool`, `KEY=VALUE` each. The queue
    /// URL (it may hold a password) is never a value here: with a
    /// `secret`, the workers read it from its file.
    fn environment(&self, pool: &str, slots: u32, secret: Option<&QueueSecret>) -> Vec<String> {
        let given = |k: &str| self.env.iter().any(|(key, _)| key == k);
        let mut env = vec![format!("SKEP_POOL={pool}")];
        if self.needs_queue_secret() && secret.is_some() {
            env.push(format!("SKEP_QUEUE_FILE=/run/secrets/{QUEUE_SECRET_FILE}"));
        }
        if !given("SKEP_NODE") {
            env.push(format!("SKEP_NODE={NODE_HOSTNAME}"));
        }
        if !given("SKEP_WORKER_SLOTS") {
            env.push(format!("SKEP_WORKER_SLOTS={slots}"));
        }
        env.extend(
            self.env
                .iter()
                .filter(|(k, _)| k != "SKEP_POOL")
                .map(|(k, v)| format!("{k}={v}")),
        );
        env
    }

    /// The full spec of service `name` serving `pool` at `replicas`.
    pub fn service_spec(
        &self,
        name: &str,
        pool: &str,
        replicas: u32,
        slots: u32,
        secret: Option<&QueueSecret>,
    ) -> ServiceSpec {
        let labels = HashMap::from([
            (OWNED_LABEL.to_owned(), "true".to_owned()),
            (POOL_LABEL.to_owned(), pool.to_owned()),
        ]);
        let mounts = self
            .mounts
            .iter()
            .map(|m| Mount {
                source: Some(m.source.clone()),
                target: Some(m.target.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let limits = Limit {
            nano_cpus: nano_cpus(self.cpu_limit),
            memory_bytes: bytes(self.memory_limit),
            ..Default::default()
        };
        let reservation = self.reservation();
        let reservations = ResourceObject {
            nano_cpus: reservation.nano_cpus,
            memory_bytes: reservation.memory_bytes,
            ..Default::default()
        };
        let container = TaskSpecContainerSpec {
            image: Some(self.image.clone()),
            labels: Some(labels.clone()),
            args: (!self.args.is_empty()).then(|| self.args.clone()),
            env: Some(self.environment(pool, slots, secret)),
            secrets: secret.filter(|_| self.needs_queue_secret()).map(|s| {
                vec![TaskSpecContainerSpecSecrets {
                    secret_id: Some(s.id.clone()),
                    secret_name: Some(s.name.clone()),
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(QUEUE_SECRET_FILE.to_owned()),
                        uid: Some("0".to_owned()),
                        gid: Some("0".to_owned()),
                        mode: Some(0o444),
                    }),
                }]
            }),
            mounts: (!mounts.is_empty()).then_some(mounts),
            stop_grace_period: Some(nanos(self.stop_grace_period)),
            ..Default::default()
        };
        let task = TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(limits),
                reservations: Some(reservations),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                delay: Some(nanos(self.restart_delay)),
                ..Default::default()
            }),
            placement: (!self.constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(self.constraints.clone()),
                ..Default::default()
            }),
            networks: (!self.networks.is_empty()).then(|| {
                self.networks
                    .iter()
                    .map(|n| NetworkAttachmentConfig {
                        target: Some(n.clone()),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        };
        ServiceSpec {
            name: Some(name.to_owned()),
            labels: Some(labels),
            task_template: Some(task),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::from(replicas)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("384M"), Ok(384 << 20));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("256MiB"), Ok(256 << 20));
        assert_eq!(parse_memory("512mb"), Ok(512 << 20));
        assert_eq!(parse_memory("64k"), Ok(64 << 10));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert_eq!(parse_memory("0"), Ok(0));
        assert!(parse_memory("12X").is_err());
        assert!(parse_memory("M").is_err());
        assert!(parse_memory("-1G").is_err());
    }

    #[test]
    fn bind_mounts() {
        assert_eq!(
            "/data:/data:ro".parse(),
            Ok(BindMount {
                source: "/data".into(),
                target: "/data".into(),
                read_only: true
            })
        );
        let m: BindMount = "/srv/in:/in".parse().expect("valid");
        assert!(!m.read_only);
        assert!("/a:/b:rw".parse::<BindMount>().is_ok_and(|m| !m.read_only));
        assert!("relative:/in".parse::<BindMount>().is_err());
        assert!("/a".parse::<BindMount>().is_err());
        assert!("/a:/b:zz".parse::<BindMount>().is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("EMPTY="), Ok(("EMPTY".into(), String::new())));
        assert!(parse_env("novalue").is_err());
        assert!(parse_env("=x").is_err());
    }

    fn full_template() -> ServiceTemplate {
        ServiceTemplate {
            args: vec!["run".into()],
            env: vec![
                ("SKEP_LOG".into(), "debug".into()),
                ("SKEP_POOL".into(), "wrong".into()),
            ],
            queue: Some("amqp://u:p@rabbit:5672/%2f".into()),
            mounts: vec!["/data:/data:ro".parse().expect("mount")],
            networks: vec!["skep".into()],
            cpu_reservation: Some(0.5),
            memory_reservation: Some(384 << 20),
            cpu_limit: Some(1.0),
            memory_limit: Some(1 << 30),
            constraints: vec!["node.labels.ocr==true".into()],
            ..ServiceTemplate::new("skep-worker:dev")
        }
    }

    #[test]
    fn the_spec_carries_the_whole_template() {
        let secret = QueueSecret {
            id: "sid".into(),
            name: QueueSecret::name_for("amqp://u:p@rabbit:5672/%2f"),
        };
        let spec = full_template().service_spec("skep-worker-scans", "scans", 3, 2, Some(&secret));
        assert_eq!(spec.name.as_deref(), Some("skep-worker-scans"));
        let labels = spec.labels.clone().expect("labels");
        assert_eq!(labels.get(OWNED_LABEL).map(String::as_str), Some("true"));
        assert_eq!(labels.get(POOL_LABEL).map(String::as_str), Some("scans"));
        let replicas = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas);
        assert_eq!(replicas, Some(3));
        let task = spec.task_template.expect("task template");
        let c = task.container_spec.expect("container");
        assert_eq!(c.image.as_deref(), Some("skep-worker:dev"));
        assert_eq!(c.args, Some(vec!["run".to_owned()]));
        assert_eq!(c.stop_grace_period, Some(30_000_000_000));
        let env = c.env.expect("env");
        for want in [
            "SKEP_POOL=scans",
            "SKEP_QUEUE_FILE=/run/secrets/skep_queue",
            "SKEP_NODE={{.Node.Hostname}}",
            "SKEP_WORKER_SLOTS=2",
            "SKEP_LOG=debug",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} missing from {env:?}");
        }
        assert!(
            !env.iter().any(|e| e == "SKEP_POOL=wrong"),
            "the pool is skep's: {env:?}"
        );
        assert!(!env.iter().any(|e| e.contains("u:p@")), "no password in env: {env:?}");
        let secrets = c.secrets.clone().expect("secrets");
        assert_eq!(secrets[0].secret_id.as_deref(), Some("sid"));
        assert_eq!(
            secrets[0].file.as_ref().and_then(|f| f.name.as_deref()),
            Some(QUEUE_SECRET_FILE)
        );
        let m = &c.mounts.expect("mounts")[0];
        assert_eq!(
            (m.typ, m.source.as_deref(), m.target.as_deref(), m.read_only),
            (Some(MountType::BIND), Some("/data"), Some("/data"), Some(true))
        );
        let r = task.resources.expect("resources");
        let res = r.reservations.expect("reservations");
        assert_eq!((res.nano_cpus, res.memory_bytes), (Some(500_000_000), Some(384 << 20)));
        let lim = r.limits.expect("limits");
        assert_eq!((lim.nano_cpus, lim.memory_bytes), (Some(1_000_000_000), Some(1 << 30)));
        let restart = task.restart_policy.expect("restart");
        assert_eq!(restart.condition, Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE));
        assert_eq!(
            task.placement.and_then(|p| p.constraints),
            Some(vec!["node.labels.ocr==true".to_owned()])
        );
        assert_eq!(task.networks.expect("networks")[0].target.as_deref(), Some("skep"));
    }

    #[test]
    fn the_users_queue_wins() {
        let mut t = full_template();
        t.env.push(("SKEP_QUEUE_FILE".into(), "/run/secrets/queue".into()));
        let env = t
            .service_spec("s", "p", 0, 1, None)
            .task_template
            .and_then(|t| t.container_spec)
            .and_then(|c| c.env);
        let env = env.expect("env");
        assert!(!env.iter().any(|e| e.starts_with("SKEP_QUEUE=")), "{env:?}");
        assert!(env.iter().any(|e| e == "SKEP_QUEUE_FILE=/run/secrets/queue"));
    }

    #[test]
    fn a_bare_template_sets_nothing_it_was_not_given() {
        let spec = ServiceTemplate::new("img").service_spec("s", "p", 1, 1, None);
        let task = spec.task_template.expect("task");
        let c = task.container_spec.expect("container");
        assert_eq!(c.args, None, "the image's CMD");
        assert_eq!(c.mounts, None);
        assert_eq!(task.placement, None);
        assert_eq!(task.networks, None);
        let res = task.resources.expect("resources").reservations.expect("reservations");
        assert_eq!((res.nano_cpus, res.memory_bytes), (None, None));
        // Serializes without nulls the daemon would reject.
        let json =
            serde_json::to_string(&ServiceTemplate::new("img").service_spec("s", "p", 1, 1, None)).expect("json");
        assert!(!json.contains("null"), "{json}");
    }
}
