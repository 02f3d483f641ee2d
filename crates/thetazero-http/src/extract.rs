//! Request extractors that fail in the API's own error shape.
//!
//! axum's stock `Json` answers bad input with plain-text bodies; these answer
//! with stable codes: 415 for a wrong content type, 413 past the size cap, 400
//! `invalid_json` for malformed JSON and 400 `invalid_request` naming the field
//! for JSON of the wrong shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use thetazero_api::ErrorCode;

use crate::error::HttpError;
use crate::state::AppState;

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5
            && mime[..mime.len() - 5].contains('/')
            && mime.to_ascii_lowercase().ends_with("+json"))
}

pub(crate) async fn read_json_value(
    req: Request,
    state: &AppState,
) -> Result<serde_json::Value, HttpError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !is_json(content_type) {
        return Err(HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ));
    }
    let limit = state.settings.max_body_bytes;
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            HttpError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {limit} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        HttpError::new(
            ErrorCode::InvalidJson,
            format!("request body is not valid JSON: {e}"),
        )
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json_value(req, state).await?;
        let parsed: T = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                HttpError::invalid(format!("invalid request body: {inner}"))
            } else {
                HttpError::invalid(format!("invalid field {path:?}: {inner}"))
            }
        })?;
        Ok(JsonBody(parsed))
    }
}

/// A JSON body that may also be absent: an empty body without a content type
/// reads as `T::default()` (`POST .../execute` with no input).
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        if !has_type && (empty || axum::body::HttpBody::size_hint(req.body()).exact() == Some(0)) {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(value) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJsonBody(value))
    }
}

/// Any JSON value as the body (context values).
pub struct JsonValue(pub serde_json::Value);

impl FromRequest<AppState> for JsonValue {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_json_value(req, state).await.map(JsonValue)
    }
}

/// Query parameters parsed into `T`, refusing malformed values with a message
/// that names the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                HttpError::invalid(format!(
                    "invalid query parameter {path:?}: {}",
                    e.into_inner()
                ))
            })
    }
}

/// A numeric id from the path; anything else is a 404, as no such resource exists.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(params) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|_| HttpError::not_found("resource"))?;
        let raw = params
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Id)
            .ok_or_else(|| HttpError::not_found("resource"))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn content_types() {
        for (ct, ok) in [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON"), true),
            (Some("application/merge-patch+json"), true),
            (Some("text/plain"), false),
            (Some("application/x-www-form-urlencoded"), false),
            (Some("+json"), false),
            (None, false),
        ] {
            assert_eq!(is_json(ct), ok, "{ct:?}");
        }
    }
}
