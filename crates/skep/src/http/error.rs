//! The API's one response shape: `{"success": true, "data": …}` or
//! `{"success": false, "error": "…"}`, with the HTTP status that fits.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::runtime::RuntimeError;
use crate::store::StoreError;

pub type ApiResult<T> = Result<Ok<T>, ApiError>;

/// A successful answer: `{"success": true, "data": T}` with `status`.
#[derive(Debug)]
pub struct Ok<T> {
    pub status: StatusCode,
    pub data: T,
}

/// `200 OK` with `data`.
pub fn ok<T>(data: T) -> ApiResult<T> {
    Result::Ok(Ok {
        status: StatusCode::OK,
        data,
    })
}

/// `201 Created` with `data`.
pub fn created<T>(data: T) -> ApiResult<T> {
    Result::Ok(Ok {
        status: StatusCode::CREATED,
        data,
    })
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<T: Serialize> IntoResponse for Ok<T> {
    fn into_response(self) -> Response {
        let body = Envelope {
            success: true,
            data: Some(&self.data),
            error: None,
        };
        (self.status, Json(body)).into_response()
    }
}

/// Why a request failed. Messages are for the caller: they never carry a
/// token, a password or a stack trace.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or fails validation (400).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one that is not known (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A known token without the scope the route needs (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The object changed under the caller, or is in a state that refuses
    /// the change (409).
    #[error("{0}")]
    Conflict(String),
    /// The request (its body included) was not handled in time (408).
    #[error("{0}")]
    Timeout(String),
    /// Too many at once: event streams over their cap (429).
    #[error("{0}")]
    TooMany(String),
    /// The body is larger than the API accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// Docker or the store cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// A fault of skep itself (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "api request failed");
        }
        let message = self.to_string();
        let body = Envelope::<()> {
            success: false,
            data: None,
            error: Some(&message),
        };
        let mut res = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"skep\""),
            );
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
            StoreError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            // NB: the API writes through an unfenced store; a fenced
            // refusal here would be a leader change mid-call: try again.
            StoreError::Backend(_) | StoreError::Fenced { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Corrupt(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            RuntimeError::Conflict(_) => ApiError::Conflict(e.to_string()),
            RuntimeError::UnknownPool(_) => ApiError::NotFound(e.to_string()),
        }
    }
}

/// Rejections of axum's extractors (a bad JSON body, a bad query string, a
/// bad path segment) in the API's shape, always as 400 (413 for a body past
/// the limit, 415 folded into 400 with its message).
pub fn from_rejection(status: StatusCode, message: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(message)
    } else {
        ApiError::BadRequest(message)
    }
}
