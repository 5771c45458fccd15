//! One table for routes, scopes and docs: every API route is added through
//! [`Api::add`] with its [`RouteDoc`], so the router, the auth layer's scope
//! for each route and the OpenAPI document at `/api/openapi.json` cannot
//! drift apart.

use std::collections::HashMap;

use axum::Router;
use axum::http::Method;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::auth::Scope;

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub description: &'static str,
    pub schema: Value,
}

/// A path parameter (always required).
pub fn path(name: &'static str, description: &'static str, schema: Value) -> Param {
    Param {
        name,
        location: In::Path,
        required: true,
        description,
        schema,
    }
}

/// An optional query parameter.
pub fn query(name: &'static str, description: &'static str, schema: Value) -> Param {
    Param {
        name,
        location: In::Query,
        required: false,
        description,
        schema,
    }
}

/// What a route answers on success.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `{"success": true, "data": <schema>}` as JSON.
    Data(Value),
    /// A stream of server-sent events.
    EventStream,
    /// Plain text.
    Text,
}

/// One route of the API.
#[derive(Clone, Debug)]
pub struct RouteDoc {
    pub method: Method,
    /// In axum's and OpenAPI's shared syntax: `/api/jobs/{name}`.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub scope: Scope,
    pub params: Vec<Param>,
    /// Request body: media type and schema.
    pub body: Option<(&'static str, Value)>,
    pub success: u16,
    pub answer: Answer,
    /// Error statuses the route can answer besides 400/401/403.
    pub errors: &'static [u16],
    /// OpenAPI links of the success response: (operationId, parameter,
    /// runtime expression), e.g. a created job's name for `getJob`.
    pub links: Vec<(&'static str, &'static str, &'static str)>,
    /// Other success statuses with the same answer (200 for an update
    /// beside 201 for a create).
    pub also: Vec<u16>,
}

impl RouteDoc {
    pub fn new(method: Method, path: &'static str, operation_id: &'static str, summary: &'static str) -> Self {
        let scope = if method == Method::GET {
            Scope::Read
        } else {
            Scope::Admin
        };
        Self {
            method,
            path,
            operation_id,
            tag: "",
            summary,
            scope,
            params: Vec::new(),
            body: None,
            success: 200,
            answer: Answer::Data(json!({})),
            errors: &[],
            links: Vec::new(),
            also: Vec::new(),
        }
    }

    /// `status` is a success too, with the same answer.
    pub fn also(mut self, status: u16) -> Self {
        self.also.push(status);
        self
    }

    /// The success response supplies `parameter` of `operation_id` from
    /// `expression` (`$response.body#/data/...`).
    pub fn link(mut self, operation_id: &'static str, parameter: &'static str, expression: &'static str) -> Self {
        self.links.push((operation_id, parameter, expression));
        self
    }

    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn param(mut self, p: Param) -> Self {
        self.params.push(p);
        self
    }

    pub fn json_body(mut self, schema: Value) -> Self {
        self.body = Some(("application/json", schema));
        self
    }

    pub fn body(mut self, media: &'static str, schema: Value) -> Self {
        self.body = Some((media, schema));
        self
    }

    pub fn data(mut self, schema: Value) -> Self {
        self.answer = Answer::Data(schema);
        self
    }

    pub fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    pub fn success(mut self, status: u16) -> Self {
        self.success = status;
        self
    }

    pub fn errors(mut self, statuses: &'static [u16]) -> Self {
        self.errors = statuses;
        self
    }
}

/// The API being assembled: the router and the table beside it.
pub struct Api {
    router: Router<ApiState>,
    routes: Vec<RouteDoc>,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

impl Api {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    /// Mounts `handler` at `doc.path` (axum merges the methods of one path).
    pub fn add(mut self, doc: RouteDoc, handler: MethodRouter<ApiState>) -> Self {
        self.router = self.router.route(doc.path, handler);
        self.routes.push(doc);
        self
    }

    pub fn into_parts(self) -> (Router<ApiState>, Vec<RouteDoc>) {
        (self.router, self.routes)
    }
}

/// The scope of each documented route, by method and path.
pub fn scopes(routes: &[RouteDoc]) -> HashMap<(Method, String), Scope> {
    routes
        .iter()
        .map(|r| ((r.method.clone(), r.path.to_owned()), r.scope))
        .collect()
}

fn envelope(data: &Value) -> Value {
    json!({
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"type": "boolean", "const": true}, "data": data},
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad input",
        401 => "No token, or an unknown one",
        403 => "The token lacks the scope",
        404 => "Not found",
        409 => "Conflict with the current state or version",
        408 => "The request was not handled within the request timeout",
        413 => "Body too large",
        429 => "Too many event streams open",
        503 => "Docker or the store cannot be reached",
        _ => "See the error message",
    }
}

/// The OpenAPI 3.1 document for `routes`. `components` are JSON Schemas
/// that route schemas refer to as `#/components/schemas/NAME`.
pub fn document(routes: &[RouteDoc], components: Map<String, Value>) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let mut responses = Map::new();
        let ok = match &r.answer {
            Answer::Data(schema) => json!({
                "description": reason(r.success),
                "content": {"application/json": {"schema": envelope(schema)}},
            }),
            Answer::EventStream => json!({
                "description": "Server-sent events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }),
            Answer::Text => json!({
                "description": reason(r.success),
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }),
        };
        let mut ok = ok;
        if !r.links.is_empty() {
            let links: Map<String, Value> = r
                .links
                .iter()
                .map(|(op, param, expr)| (op.to_string(), json!({"operationId": op, "parameters": {*param: expr}})))
                .collect();
            ok["links"] = Value::Object(links);
        }
        for s in &r.also {
            let mut other = ok.clone();
            other["description"] = json!(reason(*s));
            if let Some(o) = other.as_object_mut() {
                o.remove("links");
            }
            responses.insert(s.to_string(), other);
        }
        responses.insert(r.success.to_string(), ok);
        let mut statuses = vec![400, 401, 403, 408];
        statuses.extend_from_slice(r.errors);
        if r.body.is_some() {
            statuses.push(413);
        }
        statuses.sort_unstable();
        statuses.dedup();
        for s in statuses {
            responses.insert(
                s.to_string(),
                json!({
                    "description": reason(s),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }),
            );
        }
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": match p.location { In::Path => "path", In::Query => "query" },
                    "required": p.required,
                    "description": p.description,
                    "schema": p.schema,
                })
            })
            .collect();
        let mut op = json!({
            "operationId": r.operation_id,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": [r.scope.as_str()]}],
            "x-skep-scope": r.scope.as_str(),
        });
        if let Some((media, schema)) = &r.body {
            op["requestBody"] = json!({"required": true, "content": {*media: {"schema": schema}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_ascii_lowercase()] = op;
    }
    let mut schemas = components;
    schemas.insert(
        "Error".to_owned(),
        json!({
            "type": "object",
            "required": ["success", "error"],
            "properties": {"success": {"type": "boolean", "const": false}, "error": {"type": "string"}},
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "skep",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Bulk OCR jobs on Docker Swarm: jobs, their results and the swarm they run on. \
                            Every answer is {\"success\": true, \"data\": …} or {\"success\": false, \"error\": \"…\"}. \
                            GET routes need a token with the read scope, the others the admin scope.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}
