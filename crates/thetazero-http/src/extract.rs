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

/// Whether a body declared with this content type is read as JSON. A body
/// that parses as JSON is accepted with no declared type, with
/// `application/json` or any `*/*+json`, and with `text/plain` of any charset:
/// `fetch` with a string body sends `text/plain;charset=UTF-8`, and the spec's
/// own snippets do exactly that. Every other declared type is refused.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime.is_empty() {
        return true;
    }
    mime == "application/json"
        || mime == "text/plain"
        || (mime.len() > 5 && mime[..mime.len() - 5].contains('/') && mime.ends_with("+json"))
}

/// The body's bytes, when its declared type may hold JSON.
async fn read_body(req: Request, state: &AppState) -> Result<axum::body::Bytes, HttpError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !is_json(content_type) {
        return Err(HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a JSON body (Content-Type: application/json, or text/plain holding JSON)",
        ));
    }
    let limit = state.settings.max_body_bytes;
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            HttpError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {limit} bytes"),
            )
        })
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, HttpError> {
    serde_json::from_slice(bytes).map_err(|e| {
        HttpError::new(
            ErrorCode::InvalidJson,
            format!("request body is not valid JSON: {e}"),
        )
    })
}

/// Writes every whole number spelled as a float (`64.0`, `1e3`) as the
/// integer it is. JSON has one number type and JSON Schema's `integer` admits
/// `64.0`, so a client (or a generator working from the OpenAPI document) may
/// send one where an integer field is declared; serde's integer types would
/// refuse it. Fractions stay floats and are refused by integer fields as
/// before.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return };
            // 2^63 and 2^64 are exact as f64; the bounds are exclusive above.
            const I64_END: f64 = 9_223_372_036_854_775_808.0;
            const U64_END: f64 = 18_446_744_073_709_551_616.0;
            if f.fract() != 0.0 {
                return;
            }
            if (-I64_END..I64_END).contains(&f) {
                *value = Value::from(f as i64);
            } else if (0.0..U64_END).contains(&f) {
                *value = Value::from(f as u64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

fn shape<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, HttpError> {
    // Every typed body is an object. serde also fills a struct from an array
    // of its fields in order (`["why"]` as a kill request), which the
    // document does not allow and no client means.
    if value.is_array() {
        return Err(HttpError::invalid(
            "invalid request body: expected a JSON object, not an array",
        ));
    }
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            HttpError::invalid(format!("invalid request body: {inner}"))
        } else {
            HttpError::invalid(format!("invalid field {path:?}: {inner}"))
        }
    })
}

pub(crate) async fn read_json_value(
    req: Request,
    state: &AppState,
) -> Result<serde_json::Value, HttpError> {
    parse_json(&read_body(req, state).await?)
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json_value(req, state).await?;
        Ok(JsonBody(shape(value)?))
    }
}

/// A JSON body that may also be absent: an empty body, or JSON `null`,
/// reads as `T::default()` (`POST .../execute` with no input, a decision
/// with no reason). The OpenAPI document states such a body as optional
/// and nullable.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        match parse_json(&bytes)? {
            serde_json::Value::Null => Ok(OptionalJsonBody(T::default())),
            value => Ok(OptionalJsonBody(shape(value)?)),
        }
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

/// A numeric id from the path, as the kind of id the route names (`Id<AgentId>`);
/// anything else is a 404, as no such resource exists. This is where a path's
/// integer becomes an id.
pub struct Id<T>(pub T);

/// The ids a path may carry.
pub trait PathId: Sized {
    fn from_path(raw: i64) -> Self;
}

macro_rules! path_ids {
    ($($name:ident),*) => {$(
        impl PathId for thetazero_core::model::$name {
            fn from_path(raw: i64) -> Self {
                thetazero_core::model::$name::new(raw)
            }
        }
    )*};
}

path_ids!(
    AgentId,
    AuditRecordId,
    ExecutionId,
    KeyId,
    PermissionRequestId
);

impl<S: Send + Sync, T: PathId> FromRequestParts<S> for Id<T> {
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
            .map(|id| Id(T::from_path(id)))
            .ok_or_else(|| HttpError::not_found("resource"))
    }
}

#[cfg(test)]
mod tests {
    use super::{is_json, whole_numbers_as_integers};
    use serde_json::json;

    #[test]
    fn whole_numbers_spelled_as_floats_read_as_integers() {
        let check = |input: &str, want: serde_json::Value| {
            let mut v: serde_json::Value = serde_json::from_str(input).unwrap();
            whole_numbers_as_integers(&mut v);
            assert_eq!(v, want, "{input}");
            // And the result is what serde's integers take, or refuse.
            assert_eq!(
                v.is_u64() || v.is_i64(),
                want.is_u64() || want.is_i64(),
                "{input}"
            );
        };
        check("64.0", json!(64));
        check("1e3", json!(1000));
        check("-0.0", json!(0));
        check("-42.0", json!(-42));
        check("64", json!(64));
        check("64.5", json!(64.5));
        check("1e300", json!(1e300));
        check(
            "18446744073709549568.0",
            json!(18_446_744_073_709_549_568u64),
        );
        check(
            r#"{"a": [1.0, {"b": 2.0}], "c": "3.0", "d": 0.25}"#,
            json!({"a": [1, {"b": 2}], "c": "3.0", "d": 0.25}),
        );
    }

    #[test]
    fn content_types() {
        for (ct, ok) in [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON"), true),
            (Some("application/merge-patch+json"), true),
            (Some("text/plain"), true),
            (Some("text/plain;charset=UTF-8"), true),
            (Some("application/x-www-form-urlencoded"), false),
            (Some("text/html"), false),
            (Some("+json"), false),
            (None, true),
        ] {
            assert_eq!(is_json(ct), ok, "{ct:?}");
        }
    }
}
