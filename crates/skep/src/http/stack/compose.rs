//! A compose file, read into the Docker services `docker stack deploy`
//! would make of it: the subset of keys the stack module documents; any
//! other key is refused by its path (`services.web.ports: …`).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    Limit, ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use serde_yaml::{Mapping, Value};

use crate::http::error::ApiError;
use crate::http::swarm::{STACK_LABEL, check_image, check_service_name};

/// The label `docker stack deploy` puts the image it was given under.
pub(super) const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";
/// Stack and service names at most: `<stack>_<service>` fits Docker's 63.
pub(super) const STACK_NAME_MAX: usize = 31;

/// A stack's or a compose service's name: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$`.
pub(super) fn is_name(name: &str) -> bool {
    name.len() <= STACK_NAME_MAX && check_service_name(name).is_ok()
}

/// Replicas a compose service may ask for at most.
pub(super) const MAX_REPLICAS: u64 = 10_000;
/// Memory a limit or reservation may name at least (besides 0): Docker's.
pub(super) const MIN_MEMORY: i64 = 4 << 20;
/// CPUs a limit or reservation may name at most.
pub(super) const MAX_CPUS: f64 = 1_000_000.0;

/// Why a compose file cannot be deployed (a 400).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// Not YAML at all.
    #[error("the compose file is not valid yaml: {0}")]
    Yaml(#[source] serde_yaml::Error),
    /// YAML, but not a compose file skep deploys: `at` is the key's path.
    #[error("{at}: {problem}")]
    Invalid { at: String, problem: String },
}

type Result<T, E = ComposeError> = std::result::Result<T, E>;

impl From<ComposeError> for ApiError {
    fn from(e: ComposeError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

fn invalid(at: &str, problem: impl Into<String>) -> ComposeError {
    ComposeError::Invalid {
        at: at.to_owned(),
        problem: problem.into(),
    }
}

/// What a compose service becomes.
#[derive(Debug, Clone, PartialEq, Default)]
struct ServiceDef {
    /// The name in the file (the service is `<stack>_<name>`).
    name: String,
    image: String,
    /// `command`: the container's arguments.
    args: Option<Vec<String>>,
    /// `entrypoint`: the container's command.
    entrypoint: Option<Vec<String>>,
    env: Vec<String>,
    container_labels: BTreeMap<String, String>,
    service_labels: BTreeMap<String, String>,
    working_dir: Option<String>,
    user: Option<String>,
    hostname: Option<String>,
    stop_signal: Option<String>,
    /// Nanoseconds.
    stop_grace_period: Option<i64>,
    init: Option<bool>,
    tty: Option<bool>,
    read_only: Option<bool>,
    /// Replicas; `None` for global mode.
    replicas: Option<u64>,
    limit_nano_cpus: Option<i64>,
    limit_memory: Option<i64>,
    limit_pids: Option<i64>,
    reserve_nano_cpus: Option<i64>,
    reserve_memory: Option<i64>,
    constraints: Vec<String>,
    spread: Vec<String>,
    max_replicas_per_node: Option<i64>,
    restart: Option<TaskSpecRestartPolicy>,
}

/// Why a well-known compose key is refused.
fn refusal(key: &str) -> Option<&'static str> {
    Some(match key {
        "networks" => "skep's stack deploy does not create or attach networks",
        "volumes" => "skep's stack deploy does not create volumes or mount anything",
        "secrets" => "skep's stack deploy does not create or attach secrets",
        "configs" => "skep's stack deploy does not create or attach configs",
        "ports" => "skep's stack deploy does not publish ports",
        "build" => "skep's stack deploy does not build images: give an image the nodes have or can pull",
        "env_file" => "skep's stack deploy does not read files: put the variables under environment",
        "restart" => "use deploy.restart_policy",
        _ => return None,
    })
}

/// The entries of mapping `v` at `at`, every key a string in `allowed` (or
/// an `x-` extension, skipped).
fn entries<'a>(v: &'a Value, at: &str, allowed: &[&str]) -> Result<Vec<(&'a str, &'a Value, String)>> {
    let m: &Mapping = v.as_mapping().ok_or_else(|| invalid(at, "must be a mapping"))?;
    let mut out = Vec::new();
    for (k, v) in m {
        let key = k
            .as_str()
            .ok_or_else(|| invalid(at, format!("key {k:?} is not a string")))?;
        let here = if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        };
        if key.starts_with("x-") {
            continue;
        }
        if !allowed.contains(&key) {
            let why = refusal(key).map_or_else(
                || {
                    format!(
                        "not supported by skep's stack deploy (supported here: {})",
                        allowed.join(", ")
                    )
                },
                str::to_owned,
            );
            return Err(invalid(&here, why));
        }
        out.push((key, v, here));
    }
    Ok(out)
}

/// `$$` is a `$`; a `$NAME` or `${…}` would need variable substitution.
fn unescape(s: &str, at: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(n) if *n == '{' || *n == '_' || n.is_ascii_alphabetic() => {
                return Err(invalid(
                    at,
                    "variable substitution ($VAR, ${VAR}) is not supported: write the value, or $$ for a literal $",
                ));
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// A scalar as text: a string (see [`unescape`]), a number or a boolean.
fn text(v: &Value, at: &str) -> Result<String> {
    match v {
        Value::String(s) => unescape(s, at),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(at, "must be a string, a number or a boolean")),
    }
}

fn string(v: &Value, at: &str) -> Result<String> {
    match v {
        Value::String(_) => text(v, at),
        _ => Err(invalid(at, "must be a string")),
    }
}

fn boolean(v: &Value, at: &str) -> Result<bool> {
    v.as_bool().ok_or_else(|| invalid(at, "must be true or false"))
}

fn count(v: &Value, at: &str, max: u64) -> Result<u64> {
    v.as_u64()
        .filter(|n| *n <= max)
        .ok_or_else(|| invalid(at, format!("must be a whole number from 0 to {max}")))
}

fn strings(v: &Value, at: &str) -> Result<Vec<String>> {
    let seq = v
        .as_sequence()
        .ok_or_else(|| invalid(at, "must be a list of strings"))?;
    seq.iter()
        .enumerate()
        .map(|(i, x)| text(x, &format!("{at}[{i}]")))
        .collect()
}

/// Splits `s` into words like a POSIX shell (quotes and backslashes; no
/// expansion).
fn split_words(s: &str) -> std::result::Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a ' is not closed"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a \" is not closed"),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a \" is not closed"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("it ends with a lone \\"),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// `command`/`entrypoint`: a list, or a string split into words.
fn words(v: &Value, at: &str) -> Result<Vec<String>> {
    match v {
        Value::String(_) => split_words(&string(v, at)?).map_err(|e| invalid(at, e)),
        Value::Sequence(_) => strings(v, at),
        _ => Err(invalid(at, "must be a string or a list of strings")),
    }
}

/// `environment`, `labels`: a list of `KEY=VALUE` or a map. A key without a
/// value is refused when `need_value` (compose would read it from the
/// deploying shell's environment); else its value is empty.
fn key_values(v: &Value, at: &str, need_value: bool) -> Result<Vec<(String, String)>> {
    let no_value = |at: &str, k: &str| {
        invalid(
            at,
            format!(
                "{k:?} has no value (it would come from the deploying shell's environment, which skep does not read)"
            ),
        )
    };
    let pairs: Vec<(String, String)> = match v {
        Value::Sequence(seq) => seq
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let here = format!("{at}[{i}]");
                let s = string(x, &here)?;
                match s.split_once('=') {
                    Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                    None if need_value => Err(no_value(&here, &s)),
                    None => Ok((s, String::new())),
                }
            })
            .collect::<Result<_>>()?,
        Value::Mapping(m) => m
            .iter()
            .map(|(k, x)| {
                let k = text(k, at)?;
                let here = format!("{at}.{k}");
                match x {
                    Value::Null if need_value => Err(no_value(&here, &k)),
                    Value::Null => Ok((k, String::new())),
                    x => Ok((k, text(x, &here)?)),
                }
            })
            .collect::<Result<_>>()?,
        _ => return Err(invalid(at, "must be a list of KEY=VALUE or a mapping")),
    };
    for (k, _) in &pairs {
        if k.is_empty() || k.contains(['=', ' ', '\t', '\n', '\r', '\x0B', '\x0C']) {
            return Err(invalid(at, format!("{k:?} is not a key")));
        }
    }
    Ok(pairs)
}

/// Bytes, as Docker reads `512M`: a number, then b, k, m, g, t or p
/// (powers of 1024), optionally followed by `i` and/or `b`.
fn parse_size(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    // NB: i64::MAX as f64 rounds up to 2^63, which does not fit an i64.
    (bytes.is_finite() && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// Memory Docker takes: 0 (unset) or at least 4 MiB.
fn size(v: &Value, at: &str) -> Result<i64> {
    let bad = || invalid(at, "must be a size in bytes, or like 512M or 1.5G: 0, or at least 4M");
    let bytes = match v {
        Value::Number(n) => n.as_u64().and_then(|n| i64::try_from(n).ok()),
        Value::String(s) => parse_size(s),
        _ => None,
    };
    bytes.filter(|b| *b == 0 || *b >= MIN_MEMORY).ok_or_else(bad)
}

/// Nano-CPUs Docker takes: 0 (unset), or 0.001 to [`MAX_CPUS`] CPUs.
fn nano_cpus(v: &Value, at: &str) -> Result<i64> {
    let cpus = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit() || b == b'.')),
        _ => None,
    };
    cpus.filter(|c| *c == 0.0 || (0.001..=MAX_CPUS).contains(c))
        .map(|c| (c * 1e9).round() as i64)
        .ok_or_else(|| {
            invalid(
                at,
                format!("must be a number of CPUs, 0 or from 0.001 to {MAX_CPUS}, like 0.5"),
            )
        })
}

/// Nanoseconds, from a Go duration (`1m30s`, `500ms`, `2h`): one to four
/// parts, each at most 5 digits (and 9 after a point) and a unit.
fn parse_duration(s: &str) -> Option<i64> {
    let mut rest = s;
    let mut total = 0f64;
    for _ in 0..4 {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "1"));
        if !(1..=5).contains(&whole.len()) || !(1..=9).contains(&fraction.len()) || fraction.contains('.') {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * scale;
        rest = tail;
        if rest.is_empty() {
            return Some(total as i64);
        }
    }
    None
}

fn duration(v: &Value, at: &str) -> Result<i64> {
    v.as_str()
        .and_then(parse_duration)
        .ok_or_else(|| invalid(at, "must be a duration like 10s, 1m30s or 500ms"))
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "labels",
    "working_dir",
    "user",
    "hostname",
    "stop_signal",
    "stop_grace_period",
    "init",
    "tty",
    "read_only",
    "deploy",
];

fn service(name: &str, v: &Value) -> Result<ServiceDef> {
    let at = format!("services.{name}");
    let mut def = ServiceDef {
        name: name.to_owned(),
        replicas: Some(1),
        ..Default::default()
    };
    let mut image = None;
    for (key, v, here) in entries(v, &at, SERVICE_KEYS)? {
        match key {
            "image" => image = Some(string(v, &here)?),
            "command" => def.args = Some(words(v, &here)?),
            "entrypoint" => def.entrypoint = Some(words(v, &here)?),
            "environment" => {
                def.env = key_values(v, &here, true)?
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
            }
            "labels" => def.container_labels = key_values(v, &here, false)?.into_iter().collect(),
            "working_dir" => def.working_dir = Some(string(v, &here)?),
            "user" => def.user = Some(text(v, &here)?),
            "hostname" => def.hostname = Some(string(v, &here)?),
            "stop_signal" => def.stop_signal = Some(string(v, &here)?),
            "stop_grace_period" => def.stop_grace_period = Some(duration(v, &here)?),
            "init" => def.init = Some(boolean(v, &here)?),
            "tty" => def.tty = Some(boolean(v, &here)?),
            "read_only" => def.read_only = Some(boolean(v, &here)?),
            "deploy" => deploy_section(&mut def, v, &here)?,
            _ => unreachable!("entries() lets only SERVICE_KEYS through"),
        }
    }
    let image = image.ok_or_else(|| invalid(&at, format!("service {name:?} has no image")))?;
    if check_image(&image).is_err() {
        return Err(invalid(
            &format!("{at}.image"),
            format!("{image:?} is not an image reference"),
        ));
    }
    def.image = image;
    Ok(def)
}

fn deploy_section(def: &mut ServiceDef, v: &Value, at: &str) -> Result<()> {
    let keys = ["mode", "replicas", "labels", "resources", "placement", "restart_policy"];
    let mut global = false;
    let mut replicas = None;
    for (key, v, here) in entries(v, at, &keys)? {
        match key {
            "mode" => {
                global = match v.as_str() {
                    Some("replicated") => false,
                    Some("global") => true,
                    _ => return Err(invalid(&here, "must be replicated or global")),
                }
            }
            "replicas" => replicas = Some(count(v, &here, MAX_REPLICAS)?),
            "labels" => def.service_labels = key_values(v, &here, false)?.into_iter().collect(),
            "resources" => {
                for (key, v, here) in entries(v, &here, &["limits", "reservations"])? {
                    let limits = key == "limits";
                    let allowed: &[&str] = if limits {
                        &["cpus", "memory", "pids"]
                    } else {
                        &["cpus", "memory"]
                    };
                    for (key, v, here) in entries(v, &here, allowed)? {
                        match (limits, key) {
                            (true, "cpus") => def.limit_nano_cpus = Some(nano_cpus(v, &here)?),
                            (true, "memory") => def.limit_memory = Some(size(v, &here)?),
                            (true, _) => def.limit_pids = Some(count(v, &here, i64::MAX as u64)? as i64),
                            (false, "cpus") => def.reserve_nano_cpus = Some(nano_cpus(v, &here)?),
                            (false, _) => def.reserve_memory = Some(size(v, &here)?),
                        }
                    }
                }
            }
            "placement" => {
                for (key, v, here) in entries(v, &here, &["constraints", "preferences", "max_replicas_per_node"])? {
                    match key {
                        "constraints" => def.constraints = strings(v, &here)?,
                        "preferences" => {
                            let seq = v.as_sequence().ok_or_else(|| invalid(&here, "must be a list"))?;
                            for (i, p) in seq.iter().enumerate() {
                                let here = format!("{here}[{i}]");
                                for (_, v, here) in entries(p, &here, &["spread"])? {
                                    def.spread.push(string(v, &here)?);
                                }
                            }
                        }
                        _ => def.max_replicas_per_node = Some(count(v, &here, i64::MAX as u64)? as i64),
                    }
                }
            }
            _ => def.restart = Some(restart_policy(v, &here)?),
        }
    }
    if global && replicas.is_some() {
        return Err(invalid(
            at,
            "replicas does not go with mode: global (one task per node)",
        ));
    }
    def.replicas = if global { None } else { Some(replicas.unwrap_or(1)) };
    Ok(())
}

fn restart_policy(v: &Value, at: &str) -> Result<TaskSpecRestartPolicy> {
    let mut p = TaskSpecRestartPolicy::default();
    for (key, v, here) in entries(v, at, &["condition", "delay", "max_attempts", "window"])? {
        match key {
            "condition" => {
                p.condition = Some(match v.as_str() {
                    Some("none") => TaskSpecRestartPolicyConditionEnum::NONE,
                    Some("on-failure") => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                    Some("any") => TaskSpecRestartPolicyConditionEnum::ANY,
                    _ => return Err(invalid(&here, "must be none, on-failure or any")),
                });
            }
            "delay" => p.delay = Some(duration(v, &here)?),
            "window" => p.window = Some(duration(v, &here)?),
            _ => p.max_attempts = Some(count(v, &here, i64::MAX as u64)? as i64),
        }
    }
    Ok(p)
}

/// The services of the compose file `text`, in the file's order.
fn parse(text: &str) -> Result<Vec<ServiceDef>> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(ComposeError::Yaml)?;
    doc.apply_merge().map_err(ComposeError::Yaml)?;
    let mut services = None;
    for (key, v, here) in entries(&doc, "", &["version", "services"])? {
        match key {
            "version" if !(v.is_string() || v.is_number()) => {
                return Err(invalid(&here, "must be a string or a number"));
            }
            "version" => {}
            _ => services = Some(v),
        }
    }
    let services = services.ok_or_else(|| invalid("services", "the compose file has no services"))?;
    let m = services
        .as_mapping()
        .ok_or_else(|| invalid("services", "must be a mapping"))?;
    let mut defs = Vec::new();
    for (k, v) in m {
        let name = k
            .as_str()
            .ok_or_else(|| invalid("services", format!("service name {k:?} is not a string")))?;
        if !is_name(name) {
            return Err(invalid(
                &format!("services.{name}"),
                format!(
                    "{name:?} is not a service name (a letter or digit, then letters, digits, '_', '.' or '-'; \
                     at most {STACK_NAME_MAX} characters)"
                ),
            ));
        }
        defs.push(service(name, v)?);
    }
    if defs.is_empty() {
        return Err(invalid("services", "the compose file has no services"));
    }
    Ok(defs)
}

fn none_if_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The Docker service `docker stack deploy` would make of `def`.
fn spec(stack: &str, def: &ServiceDef) -> ServiceSpec {
    let mut labels = def.service_labels.clone();
    labels.insert(STACK_LABEL.to_owned(), stack.to_owned());
    labels.insert(STACK_IMAGE_LABEL.to_owned(), def.image.clone());
    // NB: skep made it, so skep's service routes may change it.
    labels.insert(
        crate::runtime::swarm::template::OWNED_LABEL.to_owned(),
        "true".to_owned(),
    );
    let mut container_labels = def.container_labels.clone();
    container_labels.insert(STACK_LABEL.to_owned(), stack.to_owned());
    let limits =
        (def.limit_nano_cpus.is_some() || def.limit_memory.is_some() || def.limit_pids.is_some()).then_some(Limit {
            nano_cpus: def.limit_nano_cpus,
            memory_bytes: def.limit_memory,
            pids: def.limit_pids,
        });
    let reservations = (def.reserve_nano_cpus.is_some() || def.reserve_memory.is_some()).then(|| ResourceObject {
        nano_cpus: def.reserve_nano_cpus,
        memory_bytes: def.reserve_memory,
        ..Default::default()
    });
    let placement = TaskSpecPlacement {
        constraints: none_if_empty(def.constraints.clone()),
        preferences: none_if_empty(
            def.spread
                .iter()
                .map(|s| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(s.clone()),
                    }),
                })
                .collect(),
        ),
        max_replicas: def.max_replicas_per_node,
        ..Default::default()
    };
    ServiceSpec {
        name: Some(format!("{stack}_{}", def.name)),
        labels: Some(labels.into_iter().collect()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(def.image.clone()),
                labels: Some(container_labels.into_iter().collect()),
                command: def.entrypoint.clone(),
                args: def.args.clone(),
                env: none_if_empty(def.env.clone()),
                dir: def.working_dir.clone(),
                user: def.user.clone(),
                hostname: def.hostname.clone(),
                stop_signal: def.stop_signal.clone(),
                stop_grace_period: def.stop_grace_period,
                init: def.init,
                tty: def.tty,
                read_only: def.read_only,
                ..Default::default()
            }),
            resources: (limits.is_some() || reservations.is_some()).then(|| TaskSpecResources {
                limits,
                reservations,
                ..Default::default()
            }),
            restart_policy: def.restart.clone(),
            placement: Some(placement),
            ..Default::default()
        }),
        mode: Some(match def.replicas {
            Some(n) => ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::try_from(n).unwrap_or(i64::MAX)),
                }),
                ..Default::default()
            },
            None => ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// The Docker services of compose file `text` for stack `stack`, in the
/// file's order, or why it cannot be deployed.
pub(super) fn service_specs(stack: &str, text: &str) -> Result<Vec<ServiceSpec>> {
    Ok(parse(text)?.iter().map(|d| spec(stack, d)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> ServiceDef {
        let mut defs = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(defs.len(), 1);
        defs.remove(0)
    }

    fn refused(yaml: &str) -> String {
        match parse(yaml) {
            Ok(d) => panic!("accepted: {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn environment_as_a_list_or_a_map() {
        let list = one("services:\n  web:\n    image: a:1\n    environment:\n      - A=1\n      - B=x=y\n");
        assert_eq!(list.env, ["A=1", "B=x=y"]);
        let map =
            one("services:\n  web:\n    image: a:1\n    environment:\n      A: 1\n      B: 'x y'\n      C: true\n");
        assert_eq!(map.env, ["A=1", "B=x y", "C=true"]);
        let e = refused("services:\n  web:\n    image: a:1\n    environment:\n      - HOME\n");
        assert!(
            e.contains("services.web.environment[0]") && e.contains("no value"),
            "{e}"
        );
        let e = refused("services:\n  web:\n    image: a:1\n    environment:\n      HOME:\n");
        assert!(e.contains("services.web.environment.HOME"), "{e}");
        let e = refused("services:\n  web:\n    image: a:1\n    environment:\n      'A=B': c\n");
        assert!(e.contains("is not a key"), "{e}");
    }

    #[test]
    fn memory_units_are_powers_of_1024() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("100b"), Some(100));
        assert_eq!(parse_size("2kb"), Some(2048));
        assert_eq!(parse_size("1p"), Some(1 << 50));
        for bad in ["", "M", "12Q", "1.2.3G", "-1M", ".5G", "99999999999p", " 1M"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        let def = one(
            "services:\n  web:\n    image: a:1\n    deploy:\n      resources:\n        limits: {cpus: '0.5', memory: 512M}\n        reservations: {cpus: 0.25, memory: 1073741824}\n",
        );
        assert_eq!(
            (
                def.limit_nano_cpus,
                def.limit_memory,
                def.reserve_nano_cpus,
                def.reserve_memory
            ),
            (Some(500_000_000), Some(512 << 20), Some(250_000_000), Some(1 << 30))
        );
        let e = refused(
            "services:\n  web:\n    image: a:1\n    deploy:\n      resources:\n        limits: {memory: lots}\n",
        );
        assert!(e.contains("services.web.deploy.resources.limits.memory"), "{e}");
        for (limit, key) in [
            ("memory: 1k", "memory"),
            ("memory: 1048576", "memory"),
            ("cpus: 0.0001", "cpus"),
        ] {
            let yaml = format!(
                "services:\n  web:\n    image: a:1\n    deploy:\n      resources:\n        limits: {{{limit}}}\n"
            );
            let e = refused(&yaml);
            assert!(
                e.contains(&format!("services.web.deploy.resources.limits.{key}")),
                "{limit}: {e}"
            );
        }
    }

    #[test]
    fn keys_that_change_behaviour_are_refused_by_name() {
        for (yaml, key) in [
            (
                "services:\n  web:\n    image: a\n    ports: ['80:80']\n",
                "services.web.ports",
            ),
            (
                "services:\n  web:\n    image: a\n    volumes: ['/x:/y']\n",
                "services.web.volumes",
            ),
            (
                "services:\n  web:\n    image: a\n    networks: [n]\n",
                "services.web.networks",
            ),
            (
                "services:\n  web:\n    image: a\n    secrets: [s]\n",
                "services.web.secrets",
            ),
            (
                "services:\n  web:\n    image: a\n    configs: [c]\n",
                "services.web.configs",
            ),
            ("services:\n  web:\n    image: a\n    build: .\n", "services.web.build"),
            ("services:\n  web:\n    image: a\nnetworks:\n  n: {}\n", "networks"),
            ("services:\n  web:\n    image: a\nvolumes:\n  v: {}\n", "volumes"),
            ("services:\n  web:\n    image: a\nsecrets:\n  s: {file: x}\n", "secrets"),
            (
                "services:\n  web:\n    image: a\n    deploy:\n      update_config: {parallelism: 2}\n",
                "services.web.deploy.update_config",
            ),
            (
                "services:\n  web:\n    image: a\n    healthcheck: {test: [CMD, 'true']}\n",
                "services.web.healthcheck",
            ),
        ] {
            let e = refused(yaml);
            assert!(e.starts_with(&format!("{key}: ")), "{key}: {e}");
        }
    }

    #[test]
    fn a_service_without_an_image_or_a_file_that_is_not_yaml_is_refused() {
        let e = refused("services:\n  worker:\n    command: [sleep, '1']\n");
        assert!(e.contains("\"worker\" has no image"), "{e}");
        assert!(refused("services: [").contains("not valid yaml"));
        assert!(refused("version: '3.8'\n").contains("no services"));
        assert!(refused("services: {}\n").contains("no services"));
        assert!(refused("- a\n").contains("must be a mapping"));
        let e = refused("services:\n  web:\n    image: a\n    deploy: {mode: global, replicas: 2}\n");
        assert!(e.contains("services.web.deploy"), "{e}");
        let e = refused(&format!("services:\n  {}:\n    image: a\n", "x".repeat(32)));
        assert!(e.contains("not a service name"), "{e}");
    }

    #[test]
    fn commands_split_like_a_shell_and_variables_are_not_substituted() {
        let def = one(
            "services:\n  web:\n    image: a\n    command: sh -c 'echo hello; exec sleep infinity'\n    entrypoint: [\"/bin/env\", \"-i\"]\n",
        );
        assert_eq!(
            def.args.as_deref(),
            Some(
                &[
                    "sh".to_owned(),
                    "-c".to_owned(),
                    "echo hello; exec sleep infinity".to_owned()
                ][..]
            )
        );
        assert_eq!(
            def.entrypoint.as_deref(),
            Some(&["/bin/env".to_owned(), "-i".to_owned()][..])
        );
        assert_eq!(
            split_words(r#"a "b c" d\ e 'f"g'"#),
            Ok(vec!["a".into(), "b c".into(), "d e".into(), "f\"g".into()])
        );
        assert!(split_words("echo 'open").is_err());
        let def = one("services:\n  web:\n    image: a\n    command: [sh, -c, 'echo $$HOME costs $5']\n");
        assert_eq!(def.args.as_ref().map(|a| a[2].as_str()), Some("echo $HOME costs $5"));
        let e = refused("services:\n  web:\n    image: 'a:${TAG}'\n");
        assert!(e.contains("services.web.image") && e.contains("substitution"), "{e}");
    }

    #[test]
    fn a_full_service_becomes_the_spec_stack_deploy_would_make() {
        let yaml = "\
version: '3.8'
x-common: &common
  image: skep-base:bookworm
services:
  ocr:
    <<: *common
    labels: [team=ocr]
    stop_grace_period: 1m30s
    deploy:
      replicas: 3
      labels: {tier: gold}
      placement:
        constraints: [node.role==worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3}
  agent:
    image: skep-base:bookworm
    deploy: {mode: global}
";
        let defs = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
        let ocr = spec("st", &defs[0]);
        assert_eq!(ocr.name.as_deref(), Some("st_ocr"));
        let labels = ocr.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(STACK_LABEL).map(String::as_str), Some("st"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("gold"));
        let task = ocr.task_template.clone().unwrap_or_default();
        let c = task.container_spec.unwrap_or_default();
        assert_eq!(c.image.as_deref(), Some("skep-base:bookworm"));
        assert_eq!(
            c.labels.unwrap_or_default().get("team").map(String::as_str),
            Some("ocr")
        );
        assert_eq!(c.stop_grace_period, Some(90_000_000_000));
        let p = task.placement.unwrap_or_default();
        assert_eq!(p.constraints, Some(vec!["node.role==worker".to_owned()]));
        assert_eq!(p.max_replicas, Some(2));
        let r = task.restart_policy.unwrap_or_default();
        assert_eq!((r.delay, r.max_attempts), (Some(5_000_000_000), Some(3)));
        assert_eq!(ocr.mode.and_then(|m| m.replicated).and_then(|r| r.replicas), Some(3));
        let agent = spec("st", &defs[1]);
        assert!(agent.mode.is_some_and(|m| m.global.is_some() && m.replicated.is_none()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(10_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1e9s",
            " 1s",
            "1.s",
            "123456s",
            "1s1s1s1s1s",
            "1.2.3s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
