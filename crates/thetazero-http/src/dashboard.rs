//! The web dashboard: plain ES modules and CSS, committed in `dashboard/`
//! and embedded in the binary, so `thetazero serve` serves it with no build
//! step and nothing is fetched at run time. `GET /` is the page; its assets
//! are under `/dashboard/`. Every response carries a strict
//! Content-Security-Policy (only this origin's scripts, styles and
//! connections; no inline script; no framing).

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// The policy on every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// Every asset: its name under `/dashboard/`, its type and its bytes.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../dashboard/app.js")),
    ("api.js", JS, include_str!("../dashboard/api.js")),
    ("ui.js", JS, include_str!("../dashboard/ui.js")),
    ("pages.js", JS, include_str!("../dashboard/pages.js")),
    ("charts.js", JS, include_str!("../dashboard/charts.js")),
    (
        "highlight.js",
        JS,
        include_str!("../dashboard/highlight.js"),
    ),
    (
        "verify-page.js",
        JS,
        include_str!("../dashboard/verify-page.js"),
    ),
    // The JavaScript SDK's verifier, byte for byte (a test checks it).
    ("verify.js", JS, include_str!("../dashboard/verify.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../dashboard/icon.svg"),
    ),
];

const INDEX: &str = include_str!("../dashboard/index.html");

fn secured(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (status, headers, body).into_response()
}

async fn index() -> Response {
    secured(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => secured(StatusCode::OK, content_type, body),
        None => secured(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such file\n",
        ),
    }
}

/// `GET /` and `GET /dashboard/{file}`, public: the page holds no data;
/// everything it shows comes from the API under the session's key.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/{file}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_ships_the_sdks_verifier_unchanged() {
        let sdk =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdks/js/src/verify.js");
        let sdk = std::fs::read_to_string(&sdk).expect("the JavaScript SDK's verifier");
        let shipped = ASSETS
            .iter()
            .find(|(n, _, _)| *n == "verify.js")
            .map(|(_, _, b)| *b)
            .unwrap_or_default();
        assert!(
            sdk == shipped,
            "crates/thetazero-http/dashboard/verify.js differs from sdks/js/src/verify.js: copy it again"
        );
    }

    #[test]
    fn no_asset_loads_anything_from_elsewhere() {
        for (name, _, body) in ASSETS.iter().chain([("index.html", "", INDEX)].iter()) {
            for needle in ["http://", "https://", "//cdn", "@import", "fonts.g"] {
                let found = body
                    .lines()
                    .filter(|l| l.contains(needle))
                    .filter(|l| !l.contains("http://www.w3.org/2000/svg"))
                    .count();
                assert_eq!(found, 0, "{name} mentions {needle}");
            }
        }
    }
}
