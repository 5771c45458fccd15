//! `GET /api/workers`: the workers the controller hears from by their
//! heartbeats (see [`crate::controller::workers`]), wherever they run.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::error::{ApiResult, ok};
use super::openapi::{Api, RouteDoc};
use crate::controller::workers::WorkerInfo;

pub(super) fn routes(api: Api) -> Api {
    api.add(
        RouteDoc::new(
            Method::GET,
            "/api/workers",
            "listWorkers",
            "Workers heard from by their heartbeats, by pool: host, slots, files done, last seen; \
             stale ones (three beats missed) are marked and no longer count in their pool's window. \
             Empty on a controller that is not leading.",
        )
        .tag("workers")
        .data(json!({"type": "array", "items": {"$ref": "#/components/schemas/Worker"}})),
        get(list),
    )
}

pub(super) fn components() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "Worker".to_owned(),
        json!({"type": "object", "required": ["id", "node", "pool", "slots", "lastSeenMs", "stale"], "properties": {
            "id": {"type": "string"},
            "node": {"type": "string"},
            "pool": {"type": "string"},
            "slots": {"type": "integer", "minimum": 0},
            "version": {"type": "string"},
            "succeeded": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0},
            "inFlight": {"type": "integer", "minimum": 0},
            "intervalMs": {"type": "integer", "minimum": 0, "description": "How often it beats"},
            "leaving": {"type": "boolean"},
            "v": {"type": "integer", "description": "Its wire version"},
            "lastSeenMs": {"type": "integer", "description": "Unix milliseconds of its last heartbeat"},
            "stale": {"type": "boolean"},
        }}),
    );
    m
}

async fn list(State(state): State<ApiState>) -> ApiResult<Vec<WorkerInfo>> {
    ok(state.workers().list(chrono::Utc::now().timestamp_millis()))
}
