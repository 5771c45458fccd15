//! axum's extractors with their rejections in the API's response shape.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::response::IntoResponse;

use super::error::{ApiError, from_rejection};

/// A JSON body; a malformed one, or one nesting deeper than
/// [`skep_api::MAX_DEPTH`], is a 400 in the API's shape. Parsed on the
/// blocking pool.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            });
        if !json {
            return Err(ApiError::bad_request(
                "expected a body with `Content-Type: application/json`",
            ));
        }
        let Body(bytes) = Body::from_request(req, state).await?;
        super::off_the_runtime(move || {
            let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
            skep_api::check_depth(text, skep_api::MAX_DEPTH).map_err(|e| ApiError::bad_request(e.to_string()))?;
            axum::Json::<T>::from_bytes(&bytes)
                .map(|j| Json(j.0))
                .map_err(ApiError::from)
        })
        .await
    }
}

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
