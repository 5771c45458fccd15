//! axum's extractors with their rejections in the API's response shape.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::response::IntoResponse;

use super::error::{ApiError, from_rejection};

/// A JSON body; a malformed one is a 400 in the API's shape.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// A query string; a malformed one is a 400 in the API's shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path segments; a malformed one is a 400 in the API's shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The raw body (size-limited); too large is a 413 in the API's shape.
#[derive(Debug)]
pub struct Body(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        bytes::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(ApiError::from)
    }
}

/// `?force=true|false` (default false), the one query of the routes that
/// remove or leave something.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    #[serde(default)]
    pub force: bool,
}

fn rejected(r: impl IntoResponse + std::fmt::Display) -> ApiError {
    let message = r.to_string();
    from_rejection(r.into_response().status(), message)
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        rejected(r)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        rejected(r)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        rejected(r)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        rejected(r)
    }
}
