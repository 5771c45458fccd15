//! The Grafana dashboard and the Prometheus alert rules in `charts/` read
//! only metrics and labels that skep's controller and worker export
//! (issue #5): every PromQL expression is checked against the families the
//! real registries encode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use skep_api::{FailureReason, Outcome, ResultMessage, WIRE_VERSION, WorkerRef};

/// Labels Prometheus attaches to every scraped series from its target
/// (`job="skep-controller"` or `job="skep-worker"`, see charts/README.md).
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// Functions that take a range of a counter (or of a histogram's series).
const COUNTER_FUNCTIONS: [&str; 3] = ["rate", "irate", "increase"];

/// Functions that take a range of a gauge, besides `*_over_time`.
const GAUGE_RANGE_FUNCTIONS: [&str; 5] = ["deriv", "delta", "idelta", "predict_linear", "changes"];

const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn chart(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../charts")
        .join(name)
}

fn dashboard() -> Json {
    let path = chart("grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn alert_rules() -> Yaml {
    let path = chart("alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One exported metric family.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    /// Label names seen on its series once every recording method ran.
    labels: BTreeSet<String>,
    /// Values of the labels a fresh registry already has series for. skep
    /// creates those series up front exactly when the label is a closed set
    /// (phases, outcomes, queue operations), so a matcher on such a label
    /// must name one of these values.
    closed: BTreeMap<String, BTreeSet<String>>,
}

type Families = BTreeMap<String, Family>;

/// The families of the controller's and the worker's registries, as they
/// scrape: fresh, then after every recording method has run once.
fn exported() -> Families {
    let controller = skep::metrics::Metrics::new();
    let worker = skep_worker::metrics::Metrics::new(1).expect("worker metrics");
    let mut families = Families::new();
    for text in [controller.encode().expect("encode"), worker.encode().expect("encode")] {
        read_exposition(&text, &mut families, true);
    }

    let ms = Duration::from_millis(3);
    controller.set_jobs(&[]);
    controller.record_result("failed", Some("corrupt"));
    controller.set_queue("tesseract", &skep_queue::Depth::default());
    controller.set_replicas("tesseract", 2, 1);
    controller.observe_reconcile("job", ms, Some("store"));
    controller.observe_call("store", "ok", ms);
    controller.set_leader(true);
    controller.observe_http("GET", "/api/jobs", 200, ms);
    let result = |outcome| ResultMessage {
        v: WIRE_VERSION,
        job: "job".into(),
        job_uid: "uid".into(),
        index: 0,
        part: 0,
        attempt: 1,
        outcome,
        duration_ms: 1500,
        worker: WorkerRef {
            id: "w".into(),
            node: "n".into(),
        },
    };
    worker.record_result(&result(Outcome::Succeeded {
        text: "text".into(),
        confidence: 90.0,
        pages: 2,
        words: 1,
        page_info: Vec::new(),
        staged: None,
        text_staged: false,
    }));
    worker.record_result(&result(Outcome::Failed {
        reason: FailureReason::Corrupt,
        error: "bad".into(),
    }));
    worker.task_started();
    worker.set_ready(true);
    worker.queue_error(skep_worker::metrics::QueueOp::Publish);
    for text in [controller.encode().expect("encode"), worker.encode().expect("encode")] {
        read_exposition(&text, &mut families, false);
    }
    families
}

/// Reads the Prometheus text format into `families`: `# TYPE` lines name
/// them, sample lines add label names (and, if `fresh`, closed values).
fn read_exposition(text: &str, families: &mut Families, fresh: bool) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                panic!("malformed line {line:?}");
            };
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..name_end];
        let family = if families.contains_key(sample) {
            sample
        } else {
            HISTOGRAM_SUFFIXES
                .iter()
                .find_map(|s| sample.strip_suffix(s).filter(|f| families.contains_key(*f)))
                .unwrap_or_else(|| panic!("sample {sample:?} of no family in {text}"))
        };
        let family = families.get_mut(family).expect("looked up");
        let Some(labels) = line[name_end..].strip_prefix('{') else {
            continue;
        };
        for (label, value) in sample_labels(labels) {
            if label == "le" {
                continue;
            }
            if fresh {
                family.closed.entry(label.clone()).or_default().insert(value);
            }
            family.labels.insert(label);
        }
    }
}

/// The `name="value"` pairs of a sample line from just after its `{`.
fn sample_labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches([',', ' ']).to_owned();
        if name.is_empty() || name.starts_with('}') {
            return pairs;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} in {text:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        pairs.push((name, value));
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A number or a duration.
    Num,
    /// A Grafana variable: `$pool`, `${pool}`, `$__rate_interval`.
    Var,
    Punct(char),
}

fn lex(expr: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = expr.chars().peekable();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                chars.by_ref().take_while(|c| *c != '\n').for_each(drop);
            }
            '"' | '\'' | '`' => {
                let mut s = String::new();
                while let Some(d) = chars.next() {
                    match d {
                        '\\' if c != '`' => s.extend(chars.next()),
                        d if d == c => break,
                        d => s.push(d),
                    }
                }
                toks.push(Tok::Str(s));
            }
            '$' => {
                if chars.next_if_eq(&'{').is_some() {
                    chars.by_ref().take_while(|c| *c != '}').for_each(drop);
                } else {
                    while chars.next_if(|c| word(*c)).is_some() {}
                }
                toks.push(Tok::Var);
            }
            c if c.is_ascii_digit() || c == '.' => {
                while chars.next_if(|c| word(*c) || *c == '.').is_some() {}
                toks.push(Tok::Num);
            }
            c if word(c) => {
                let mut s = String::from(c);
                while let Some(d) = chars.next_if(|c| word(*c)) {
                    s.push(d);
                }
                toks.push(Tok::Ident(s));
            }
            c => toks.push(Tok::Punct(c)),
        }
    }
    toks
}

/// A metric named in an expression.
#[derive(Debug)]
struct MetricRef {
    /// As written, e.g. `skep_worker_page_seconds_bucket`.
    name: String,
    /// Label matchers of its selector: label, operator, value.
    matchers: Vec<(String, String, String)>,
    /// Followed by a range, e.g. `[5m]`.
    ranged: bool,
    /// The function whose argument list it is directly in.
    function: Option<String>,
    tok: usize,
}

/// Label names an expression groups or matches by (`by`, `without`, `on`,
/// `ignoring`, `group_left`, `group_right`, Grafana's `label_values`).
#[derive(Debug)]
struct LabelUse {
    clause: String,
    labels: Vec<String>,
    /// Token range of the expression the labels must exist on.
    scope: (usize, usize),
}

#[derive(Debug, Default)]
struct Parsed {
    metrics: Vec<MetricRef>,
    label_uses: Vec<LabelUse>,
}

impl Parsed {
    fn metrics_in(&self, (lo, hi): (usize, usize)) -> impl Iterator<Item = &MetricRef> {
        self.metrics.iter().filter(move |m| lo <= m.tok && m.tok <= hi)
    }
}

/// The metrics (identifiers `skep_…`) of a PromQL expression with their
/// selectors, and the label clauses with the sub-expression each applies
/// to. The only place expressions are taken apart.
fn parse(expr: &str) -> Parsed {
    let toks = lex(expr);
    let mut partner = vec![usize::MAX; toks.len()];
    let mut open = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct('(') => open.push(i),
            Tok::Punct(')') => {
                let o = open.pop().unwrap_or_else(|| panic!("unbalanced ) in {expr:?}"));
                partner[o] = i;
                partner[i] = o;
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "unbalanced ( in {expr:?}");

    let ident = |i: usize| match toks.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, c: char| toks.get(i) == Some(&Tok::Punct(c));
    let mut parsed = Parsed::default();
    let mut functions: Vec<(usize, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        while functions.last().is_some_and(|(close, _)| *close < i) {
            functions.pop();
        }
        let function = functions.last().and_then(|(_, f)| f.clone());
        match &toks[i] {
            Tok::Ident(kw)
                if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&kw.as_str())
                    && punct(i + 1, '(') =>
            {
                let close = partner[i + 1];
                let labels = (i + 2..close).filter_map(ident).map(str::to_owned).collect();
                let scope = match kw.as_str() {
                    // `sum by (l) (e)` or `sum (e) by (l)`
                    "by" | "without" if punct(close + 1, '(') => (close + 1, partner[close + 1]),
                    "by" | "without" if i > 0 && punct(i - 1, ')') => (partner[i - 1], i - 1),
                    "by" | "without" => panic!("{kw} without an aggregated expression in {expr:?}"),
                    // NB: vector matching labels must be on both sides;
                    // the whole expression stands in for "both sides".
                    _ => (0, toks.len()),
                };
                parsed.label_uses.push(LabelUse {
                    clause: kw.clone(),
                    labels,
                    scope,
                });
                i = close + 1;
                continue;
            }
            Tok::Ident(f) if punct(i + 1, '(') => {
                functions.push((partner[i + 1], Some(f.clone())));
                i += 2;
                continue;
            }
            Tok::Punct('(') => functions.push((partner[i], None)),
            Tok::Ident(label)
                if function.as_deref() == Some("label_values") && i > 0 && punct(i - 1, ',') && punct(i + 1, ')') =>
            {
                let open = partner[i + 1];
                parsed.label_uses.push(LabelUse {
                    clause: "label_values".into(),
                    labels: vec![label.clone()],
                    scope: (open, i + 1),
                });
            }
            Tok::Ident(name) if name.starts_with("skep_") => {
                let mut m = MetricRef {
                    name: name.clone(),
                    matchers: Vec::new(),
                    ranged: false,
                    function,
                    tok: i,
                };
                let mut j = i + 1;
                if punct(j, '{') {
                    j += 1;
                    while !punct(j, '}') {
                        let label =
                            ident(j).unwrap_or_else(|| panic!("cannot read the selector of {name} in {expr:?}"));
                        let mut op = String::new();
                        j += 1;
                        while let Some(Tok::Punct(c)) = toks.get(j) {
                            op.push(*c);
                            j += 1;
                        }
                        let Some(Tok::Str(value)) = toks.get(j) else {
                            panic!("no value for {label} in the selector of {name} in {expr:?}");
                        };
                        m.matchers.push((label.to_owned(), op, value.clone()));
                        j += 1;
                        if punct(j, ',') {
                            j += 1;
                        }
                    }
                    j += 1;
                }
                m.ranged = punct(j, '[');
                parsed.metrics.push(m);
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

/// What is wrong with `expr` against the exported `families`, one line
/// each, prefixed with `whence` (the panel or alert it comes from).
fn check_expr(whence: &str, expr: &str, families: &Families) -> Vec<String> {
    let parsed = parse(expr);
    let mut problems = Vec::new();
    let one_line = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut fail = |what: String| problems.push(format!("{whence}: {what}\n    in {one_line}"));
    // Labels each metric reference can carry; None for an unknown metric.
    let labels_of = |m: &MetricRef| -> Option<BTreeSet<String>> {
        let (family, suffix) = resolve(&m.name, families)?;
        let mut labels = families[family].labels.clone();
        labels.extend(TARGET_LABELS.map(String::from));
        labels.insert("__name__".into());
        if suffix == "_bucket" {
            labels.insert("le".into());
        }
        Some(labels)
    };

    for m in &parsed.metrics {
        let Some((family, suffix)) = resolve(&m.name, families) else {
            fail(format!("metric {} is not exported", m.name));
            continue;
        };
        let kind = families[family].kind.as_str();
        let function = m.function.as_deref().unwrap_or("");
        match (kind, suffix) {
            ("histogram", "") => fail(format!("histogram {family} used without _bucket, _sum or _count")),
            (_, "_bucket" | "_sum" | "_count") if kind != "histogram" => {
                fail(format!("{} names {family}{suffix} but {family} is a {kind}", m.name));
            }
            ("counter" | "histogram", _) if !(m.ranged && COUNTER_FUNCTIONS.contains(&function)) => {
                fail(format!("{} is a counter: read it with rate() or increase()", m.name));
            }
            ("gauge", _)
                if m.ranged && !(GAUGE_RANGE_FUNCTIONS.contains(&function) || function.ends_with("_over_time")) =>
            {
                fail(format!(
                    "{} is a gauge: {function}() over its range is meaningless",
                    m.name
                ));
            }
            _ => {}
        }
        let labels = labels_of(m).expect("resolved");
        for (label, op, value) in &m.matchers {
            if !labels.contains(label) {
                fail(format!("{} has no label {label}", m.name));
                continue;
            }
            let Some(closed) = families[family].closed.get(label) else {
                continue;
            };
            let values: Vec<&str> = match op.as_str() {
                "=" => vec![value.as_str()],
                "=~" if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '|' || c == '_') => {
                    value.split('|').collect()
                }
                _ => Vec::new(),
            };
            for v in values.into_iter().filter(|v| !closed.contains(*v)) {
                fail(format!(
                    "{}{{{label}}} is never {v:?} (it is one of {closed:?})",
                    m.name
                ));
            }
        }
    }

    for lu in &parsed.label_uses {
        let scoped: Vec<&MetricRef> = parsed.metrics_in(lu.scope).collect();
        for label in &lu.labels {
            for m in &scoped {
                if labels_of(m).is_some_and(|labels| !labels.contains(label)) {
                    fail(format!("{}({label}) but {} has no label {label}", lu.clause, m.name));
                }
            }
        }
    }
    problems
}

/// The family a metric name as written reads and the histogram suffix it
/// carries (`""` for none), or None if no family matches.
fn resolve<'a>(name: &'a str, families: &Families) -> Option<(&'a str, &'a str)> {
    if families.contains_key(name) {
        return Some((name, ""));
    }
    HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
        let family = name.strip_suffix(suffix)?;
        families.contains_key(family).then(|| (family, &name[family.len()..]))
    })
}

/// Every panel of the dashboard, those nested in rows included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn panel_name(panel: &Json) -> String {
    format!("panel {} (id {})", panel["title"], panel["id"])
}

/// Every PromQL expression of the dashboard (panel targets and template
/// queries), each with where it comes from.
fn dashboard_expressions(dashboard: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let whence = format!("{} target {}", panel_name(panel), t["refId"].as_str().unwrap_or("?"));
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{whence} has no expr"));
            out.push((whence, expr.to_owned()));
        }
    }
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"].get("query").unwrap_or(&var["query"]);
        let query = query
            .as_str()
            .unwrap_or_else(|| panic!("variable {} has no query", var["name"]));
        out.push((format!("variable {}", var["name"]), query.to_owned()));
    }
    out
}

/// Every rule's expression, with the rule's name.
fn rule_expressions(rules: &Yaml) -> Vec<(String, String)> {
    rule_list(rules)
        .into_iter()
        .map(|rule| {
            let name = rule_name(rule);
            let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{name} has no expr"));
            (name, expr.to_owned())
        })
        .collect()
}

fn rule_list(rules: &Yaml) -> Vec<&Yaml> {
    let groups = rules["groups"].as_sequence().expect("alerts.yml has groups");
    assert!(!groups.is_empty(), "alerts.yml has no groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("a group has rules"))
        .collect()
}

fn rule_name(rule: &Yaml) -> String {
    match (rule["alert"].as_str(), rule["record"].as_str()) {
        (Some(a), _) => format!("alert {a}"),
        (_, Some(r)) => format!("recording rule {r}"),
        _ => panic!("a rule with neither alert nor record: {rule:?}"),
    }
}

fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn every_metric_and_label_the_charts_use_is_exported() {
    let families = exported();
    let mut all = dashboard_expressions(&dashboard());
    assert!(all.len() > 20, "too few dashboard expressions found: {all:?}");
    let rules = rule_expressions(&alert_rules());
    assert!(rules.len() >= 9, "too few rules found: {rules:?}");
    all.extend(rules);
    let problems: Vec<String> = all
        .iter()
        .flat_map(|(whence, expr)| check_expr(whence, expr, &families))
        .collect();
    assert_no_problems(&problems);
}

#[test]
fn every_exported_family_is_on_the_dashboard() {
    let families = exported();
    let dashboard = dashboard();
    let used: BTreeSet<String> = dashboard_expressions(&dashboard)
        .iter()
        .flat_map(|(_, expr)| parse(expr).metrics)
        .filter_map(|m| resolve(&m.name, &families).map(|(f, _)| f.to_owned()))
        .collect();
    let unused: Vec<&String> = families.keys().filter(|f| !used.contains(*f)).collect();
    assert!(unused.is_empty(), "no dashboard panel shows {unused:?}");
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "skep-overview");
    assert_eq!(d["title"], "skep");
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 38),
        "schemaVersion {}",
        d["schemaVersion"]
    );
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"datasource") && vars.contains(&"pool"),
        "variables {vars:?}"
    );

    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in panels(&d) {
        let name = panel_name(panel);
        if !panel["id"].is_u64() || !ids.insert(panel["id"].to_string()) {
            problems.push(format!("{name}: id missing or not unique"));
        }
        if panel["type"] != "row" && panel["targets"].as_array().is_none_or(|t| t.is_empty()) {
            problems.push(format!("{name}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in panel["targets"].as_array().into_iter().flatten() {
            if !refs.insert(t["refId"].to_string()) {
                problems.push(format!("{name}: refId {} twice", t["refId"]));
            }
        }
    }
    no_fixed_datasource("dashboard", &d, &mut problems);
    assert_no_problems(&problems);
}

/// Every `datasource` names the `${datasource}` variable (or Grafana's own
/// for annotations), never a uid of one installation.
fn no_fixed_datasource(at: &str, value: &Json, problems: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            let at = map.get("title").map_or_else(|| at.to_owned(), |t| format!("{at}, {t}"));
            if let Some(uid) = map.get("datasource").and_then(|ds| ds.get("uid"))
                && uid != "${datasource}"
                && uid != "-- Grafana --"
            {
                problems.push(format!("{at}: datasource uid {uid} is not ${{datasource}}"));
            }
            for v in map.values() {
                no_fixed_datasource(&at, v, problems);
            }
        }
        Json::Array(list) => list.iter().for_each(|v| no_fixed_datasource(at, v, problems)),
        _ => {}
    }
}

#[test]
fn every_alert_has_for_severity_and_annotations() {
    let readme = std::fs::read_to_string(chart("README.md")).expect("charts/README.md");
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let rules = alert_rules();
    for rule in rule_list(&rules) {
        let Some(alert) = rule["alert"].as_str() else {
            continue;
        };
        let mut fail = |what: &str| problems.push(format!("alert {alert}: {what}"));
        if !names.insert(alert) {
            fail("defined twice");
        }
        if rule["for"].as_str().is_none() {
            fail("no `for`");
        }
        if !rule["labels"]["severity"]
            .as_str()
            .is_some_and(|s| SEVERITIES.contains(&s))
        {
            fail("labels.severity is not one of critical, warning, info");
        }
        for key in ["summary", "description", "runbook"] {
            if rule["annotations"][key].as_str().is_none_or(str::is_empty) {
                fail(&format!("no annotations.{key}"));
            }
        }
        if !readme.contains(&format!("### {alert}")) {
            fail(&format!("no runbook section `### {alert}` in charts/README.md"));
        }
    }
    assert_no_problems(&problems);
    for required in [
        "SkepJobStuck",
        "SkepHighFileErrorRate",
        "SkepReplicasBelowDesired",
        "SkepReconcileErrors",
        "SkepNoLeader",
        "SkepQueueBacklogGrowing",
        "SkepBackendSlow",
        "SkepWorkerNotReady",
        "SkepWorkerQueueErrors",
    ] {
        assert!(names.contains(required), "no alert {required} in charts/alerts.yml");
    }
}

#[test]
fn the_check_rejects_broken_expressions() {
    let families = exported();
    for (expr, complaint) in [
        ("sum(skep_jobz)", "skep_jobz is not exported"),
        ("rate(skep_jobs_bucket[5m])", "skep_jobs is a gauge"),
        ("rate(skep_worker_ocr_seconds[5m])", "used without _bucket"),
        ("skep_files_processed_total", "is a counter"),
        ("rate(skep_queue_depth[5m])", "is a gauge"),
        ("skep_queue_depth{queue=\"a\"}", "has no label queue"),
        ("skep_jobs{phase=\"running\"}", "is never \"running\""),
        (
            "rate(skep_files_processed_total{outcome=~\"ok|failed\"}[5m])",
            "is never \"ok\"",
        ),
        ("sum by (pool) (skep_jobs)", "by(pool) but skep_jobs has no label pool"),
        ("sum(skep_jobs) by (pool)", "by(pool) but skep_jobs has no label pool"),
        (
            "histogram_quantile(0.9, sum by (le) (rate(skep_worker_pages_total[5m])))",
            "no label le",
        ),
        ("label_values(skep_jobs, pool)", "label_values(pool)"),
        (
            "skep_queue_depth and on (phase) skep_jobs",
            "on(phase) but skep_queue_depth",
        ),
    ] {
        let problems = check_expr("test", expr, &families);
        assert!(
            problems.iter().any(|p| p.contains(complaint)),
            "{expr}: expected {complaint:?}, got {problems:?}"
        );
    }
    for expr in [
        "histogram_quantile(0.95, sum by (le, backend) (rate(skep_backend_call_duration_seconds_bucket{job=\"skep-controller\"}[$__rate_interval])))",
        "sum(rate(skep_worker_ocr_seconds_sum[5m])) / sum(rate(skep_worker_ocr_seconds_count[5m]))",
        "deriv(skep_queue_depth{pool=~\"$pool\"}[15m]) > 0 and on (pool) skep_pool_replicas_running < 1",
        "label_values(skep_pool_replicas_desired, pool)",
        "skep_jobs{phase=\"Running\"} # a comment naming skep_nothing",
    ] {
        assert_no_problems(&check_expr("test", expr, &families));
    }
}
