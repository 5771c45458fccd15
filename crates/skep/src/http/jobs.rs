//! `/api/jobs`: apply (YAML or JSON, the CLI's validation), list, get,
//! delete, suspend/resume, retry failed files, results (paged), report.
//! Changes go through the store like `skep apply` does; the controller
//! does the rest, so every route here is safe to repeat.

use std::collections::BTreeMap;

use axum::http::Method;
use axum::routing::{delete, get, post};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use skep_api::{BulkJob, JobReport, Phase, RETRY_ANNOTATION};

use super::error::{ApiError, ApiResult, created, ok};
use super::extract::{Body, ForceQuery, Path, Query};
use super::openapi::{Api, RouteDoc, path, query};
use super::{ApiState, bounded};
use crate::store::{Deleted, TaskRecord};

/// Results per page at most.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

pub(super) fn name_schema() -> Value {
    json!({"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "maxLength": 63})
}

fn job_ref() -> Value {
    json!({"$ref": "#/components/schemas/BulkJob"})
}

fn name_param() -> super::openapi::Param {
    path("name", "The job's metadata.name", name_schema())
}

pub(super) fn routes(api: Api) -> Api {
    let tag = "jobs";
    api.add(
        RouteDoc::new(Method::GET, "/api/jobs", "listJobs", "List jobs")
            .tag(tag)
            .param(query(
                "phase",
                "Only jobs in this phase",
                json!({"type": "string", "enum": ["Pending", "Running", "Suspended", "Succeeded", "Failed"]}),
            ))
            .param(query(
                "label",
                "Only jobs with these labels: KEY=VALUE, comma-separated",
                json!({"type": "string", "maxLength": 1024}),
            ))
            .data(json!({"type": "array", "items": job_ref()}))
            .errors(&[503]),
        get(list),
    )
    .add(
        RouteDoc::new(
            Method::POST,
            "/api/jobs",
            "applyJob",
            "Create or update a job from a BulkJob document (JSON, or YAML with Content-Type application/yaml)",
        )
        .tag(tag)
        .json_body(job_ref())
        .success(201)
        .also(200)
        .data(json!({"$ref": "#/components/schemas/Applied"}))
        .link("getJob", "name", "$response.body#/data/job/metadata/name")
        .link("suspendJob", "name", "$response.body#/data/job/metadata/name")
        .link("resumeJob", "name", "$response.body#/data/job/metadata/name")
        .link("retryJob", "name", "$response.body#/data/job/metadata/name")
        .link("jobResults", "name", "$response.body#/data/job/metadata/name")
        .link("jobReport", "name", "$response.body#/data/job/metadata/name")
        .link("deleteJob", "name", "$response.body#/data/job/metadata/name")
        .errors(&[409, 503]),
        post(apply),
    )
    .add(
        RouteDoc::new(Method::GET, "/api/jobs/{name}", "getJob", "Get a job")
            .tag(tag)
            .param(name_param())
            .data(job_ref())
            .errors(&[404, 503]),
        get(get_one),
    )
    .add(
        RouteDoc::new(
            Method::DELETE,
            "/api/jobs/{name}",
            "deleteJob",
            "Delete a job: marked for the controller's cleanup (202), or removed now (200)",
        )
        .tag(tag)
        .param(name_param())
        .param(query(
            "force",
            "Remove it now, without the controller's cleanup",
            json!({"type": "boolean"}),
        ))
        .also(202)
        .data(json!({"type": "object", "properties": {"name": {"type": "string"}, "deleted": {"type": "string", "enum": ["removed", "marked"]}}}))
        .errors(&[404, 503]),
        delete(remove),
    )
    .add(
        RouteDoc::new(Method::POST, "/api/jobs/{name}/suspend", "suspendJob", "Suspend a job (spec.suspend = true)")
            .tag(tag)
            .param(name_param())
            .data(job_ref())
            .errors(&[404, 409, 503]),
        post(suspend),
    )
    .add(
        RouteDoc::new(Method::POST, "/api/jobs/{name}/resume", "resumeJob", "Resume a suspended job")
            .tag(tag)
            .param(name_param())
            .data(job_ref())
            .errors(&[404, 409, 503]),
        post(resume),
    )
    .add(
        RouteDoc::new(
            Method::POST,
            "/api/jobs/{name}/retry",
            "retryJob",
            "Run the job's failed files again (a finished job runs again)",
        )
        .tag(tag)
        .param(name_param())
        .success(202)
        .data(json!({"type": "object", "properties": {"name": {"type": "string"}, "failed": {"type": "integer"}, "retry": {"type": "string"}}}))
        .errors(&[404, 409, 503]),
        post(retry),
    )
    .add(
        RouteDoc::new(Method::GET, "/api/jobs/{name}/results", "jobResults", "A page of the job's files and results, in index order")
            .tag(tag)
            .param(name_param())
            .param(query("after", "Files after this index (the previous page's `next`)", json!({"type": "integer", "minimum": 0})))
            .param(query("limit", "Files per page (default 100)", json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE})))
            .param(query("text", "Include each file's text (default false)", json!({"type": "boolean"})))
            .data(json!({"$ref": "#/components/schemas/ResultPage"}))
            .errors(&[404, 503]),
        get(results),
    )
    .add(
        RouteDoc::new(
            Method::GET,
            "/api/jobs/{name}/report",
            "jobReport",
            "The job's report: final once it finished, live before",
        )
        .tag(tag)
        .param(name_param())
        .data(json!({"type": "object", "properties": {"final": {"type": "boolean"}, "report": {"type": "object"}}}))
        .errors(&[404, 503]),
        get(report),
    )
}

pub(super) fn components() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "Applied".to_owned(),
        json!({"type": "object", "properties": {
            "created": {"type": "boolean"},
            "specChanged": {"type": "boolean"},
            "job": job_ref(),
        }}),
    );
    m.insert(
        "ResultPage".to_owned(),
        json!({"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "next": {"type": ["integer", "null"]},
        }}),
    );
    m
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if skep_api::is_dns_label(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a job name (a lowercase RFC 1123 label: a-z, 0-9 and '-', at most 63 characters)"
        )))
    }
}

/// Over the API there is no file whose folder a relative path could mean
/// (the CLI resolves against the YAML file's folder), so paths must be
/// absolute: the controller would otherwise read them against its own
/// working directory.
fn check_absolute(job: &BulkJob) -> Result<(), ApiError> {
    let spec = &job.spec;
    for (field, path) in [
        ("spec.source.path", Some(&spec.source.path).filter(|p| !p.is_empty())),
        ("spec.output.path", spec.output.path.as_ref()),
    ] {
        if let Some(p) = path
            && !std::path::Path::new(p).is_absolute()
        {
            return Err(ApiError::bad_request(format!(
                "{field}: {p:?} is relative; over the API paths must be absolute (as the controller and workers see them)"
            )));
        }
    }
    Ok(())
}

pub(super) async fn get_job(state: &ApiState, name: &str) -> Result<BulkJob, ApiError> {
    check_name(name)?;
    bounded("the store", state.store().get_job(name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("bulkjob {name:?} not found")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    phase: Option<Phase>,
    label: Option<String>,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ApiError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ApiError::bad_request(format!("label selector {p:?} is not KEY=VALUE")))
        })
        .collect()
}

async fn list(state: axum::extract::State<ApiState>, Query(q): Query<ListQuery>) -> ApiResult<Vec<BulkJob>> {
    let labels = q.label.as_deref().map(parse_labels).transpose()?.unwrap_or_default();
    let jobs = bounded("the store", state.store().list_jobs()).await?;
    ok(jobs
        .into_iter()
        .filter(|j| q.phase.is_none_or(|p| j.status().phase == p))
        .filter(|j| labels.iter().all(|(k, v)| j.metadata.labels.get(k) == Some(v)))
        .collect())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Applied {
    created: bool,
    spec_changed: bool,
    job: BulkJob,
}

/// Applies a BulkJob. A `metadata.generation` in the body is an
/// optimistic-concurrency check: 409 unless it is the stored generation.
async fn apply(state: axum::extract::State<ApiState>, Body(body): Body) -> ApiResult<Applied> {
    let paths = state.paths().clone();
    let job = super::off_the_runtime(move || {
        let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
        let job = skep_api::parse_job(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
        check_absolute(&job)?;
        paths.check_job(&job).map_err(|e| ApiError::bad_request(e.0))?;
        Ok(job)
    })
    .await?;
    if let Some(expected) = job.metadata.generation {
        let current = bounded("the store", state.store().get_job(job.name())).await?;
        let have = current.as_ref().map_or(0, BulkJob::generation);
        if have != expected {
            return Err(ApiError::Conflict(format!(
                "bulkjob {:?} is at generation {have}, not {expected}: read it again and re-apply",
                job.name()
            )));
        }
    }
    let a = bounded("the store", state.store().apply_job(job)).await?;
    let body = Applied {
        created: a.created,
        spec_changed: a.spec_changed,
        job: a.job,
    };
    if body.created { created(body) } else { ok(body) }
}

async fn get_one(state: axum::extract::State<ApiState>, Path(name): Path<String>) -> ApiResult<BulkJob> {
    ok(get_job(&state, &name).await?)
}

async fn remove(
    state: axum::extract::State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<Value> {
    check_name(&name)?;
    if q.force {
        bounded("the store", state.store().force_delete(&name)).await?;
        return ok(json!({"name": name, "deleted": "removed"}));
    }
    match bounded("the store", state.store().request_delete(&name)).await? {
        Deleted::Removed => ok(json!({"name": name, "deleted": "removed"})),
        Deleted::Marked => Result::Ok(super::error::Ok {
            status: axum::http::StatusCode::ACCEPTED,
            data: json!({"name": name, "deleted": "marked"}),
        }),
    }
}

async fn set_suspend(state: &ApiState, name: &str, suspend: bool) -> ApiResult<BulkJob> {
    let mut job = get_job(state, name).await?;
    if job.is_finished() {
        return Err(ApiError::Conflict(format!(
            "bulkjob {name:?} has finished ({}); there is nothing to {}",
            job.status().phase,
            if suspend { "suspend" } else { "resume" }
        )));
    }
    if job.is_deleting() {
        return Err(ApiError::Conflict(format!("bulkjob {name:?} is being deleted")));
    }
    if job.spec.suspend == suspend {
        return ok(job);
    }
    job.spec.suspend = suspend;
    ok(bounded("the store", state.store().apply_job(job)).await?.job)
}

async fn suspend(state: axum::extract::State<ApiState>, Path(name): Path<String>) -> ApiResult<BulkJob> {
    set_suspend(&state, &name, true).await
}

async fn resume(state: axum::extract::State<ApiState>, Path(name): Path<String>) -> ApiResult<BulkJob> {
    set_suspend(&state, &name, false).await
}

/// Sets the retry annotation to now; the controller acts on it.
async fn retry(state: axum::extract::State<ApiState>, Path(name): Path<String>) -> ApiResult<Value> {
    let mut job = get_job(&state, &name).await?;
    if job.is_deleting() {
        return Err(ApiError::Conflict(format!("bulkjob {name:?} is being deleted")));
    }
    let failed = bounded("the store", state.store().task_counts(job.uid()))
        .await?
        .files
        .failed;
    if failed == 0 {
        return Err(ApiError::Conflict(format!(
            "bulkjob {name:?} has no failed files to retry"
        )));
    }
    let token = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    job.metadata
        .annotations
        .insert(RETRY_ANNOTATION.to_owned(), token.clone());
    bounded("the store", state.store().apply_job(job)).await?;
    Result::Ok(super::error::Ok {
        status: axum::http::StatusCode::ACCEPTED,
        data: json!({"name": name, "failed": failed, "retry": token}),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<u64>,
    limit: Option<usize>,
    #[serde(default)]
    text: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileView {
    index: u64,
    path: String,
    state: &'static str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f32>,
    page_count: u32,
    /// Per page, as in `results.jsonl`.
    pages: Vec<skep_api::PageInfo>,
    words: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<String>,
}

impl FileView {
    fn of(t: TaskRecord, with_text: bool) -> Self {
        let r = t.result.unwrap_or_default();
        Self {
            index: t.index,
            path: t.path,
            state: t.state.as_str(),
            attempts: t.attempts,
            text: r.text.filter(|_| with_text),
            confidence: r.confidence,
            page_count: r.pages,
            pages: r.page_info,
            words: r.words,
            reason: r.reason.map(|x| x.as_str().to_owned()),
            error: r.error,
            duration_ms: r.duration_ms,
            node: r.node,
            worker: r.worker,
        }
    }
}

#[derive(Debug, Serialize)]
struct ResultPage {
    items: Vec<FileView>,
    /// `after` for the next page; `null` on the last one.
    next: Option<u64>,
}

async fn results(
    state: axum::extract::State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<ResultPage> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}, got {limit}"
        )));
    }
    let job = get_job(&state, &name).await?;
    let tasks = bounded("the store", state.store().list_tasks(job.uid(), q.after, limit)).await?;
    let next = (tasks.len() == limit).then(|| tasks.last().map(|t| t.index)).flatten();
    ok(ResultPage {
        items: tasks.into_iter().map(|t| FileView::of(t, q.text)).collect(),
        next,
    })
}

#[derive(Debug, Serialize)]
struct ReportView {
    /// The report written when the job finished (else computed now).
    #[serde(rename = "final")]
    final_: bool,
    report: JobReport,
}

async fn report(state: axum::extract::State<ApiState>, Path(name): Path<String>) -> ApiResult<ReportView> {
    let job = get_job(&state, &name).await?;
    let status = job.status();
    if let (true, Some(report)) = (status.phase.is_finished(), status.report.clone()) {
        return ok(ReportView { final_: true, report });
    }
    let counts = bounded("the store", state.store().task_counts(job.uid())).await?.files;
    let summary = bounded("the store", state.store().summarize(job.uid())).await?;
    let now = Utc::now();
    let report = crate::controller::output::build_report(&counts, &summary, status.start_time.unwrap_or(now), now);
    ok(ReportView { final_: false, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let m = parse_labels("team=ocr, tier = gold").unwrap();
        assert_eq!(m.get("team").map(String::as_str), Some("ocr"));
        assert_eq!(m.get("tier").map(String::as_str), Some("gold"));
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("noequals").is_err());
        assert!(parse_labels("=v").is_err());
    }

    #[test]
    fn names_are_checked_before_the_store() {
        assert!(check_name("ok-name-1").is_ok());
        for bad in ["", "UPPER", "-lead", "a/b", &"x".repeat(64)] {
            assert!(matches!(check_name(bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }
}
