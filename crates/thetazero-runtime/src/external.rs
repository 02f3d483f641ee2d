//! An external content classifier over HTTP, for operators who run their own
//! (a hosted guard model, for example): `POST {url}` with `{"text": ...}`,
//! answered with `{"injection": 0..1, "toxicity": 0..1}`. Off unless
//! configured; consulted by the filter for borderline text only.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{json, Value};
use thetazero_safety::{ExternalError, ExternalScorer, Scores};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalScorerConfig {
    pub url: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    pub timeout: Duration,
}

pub struct HttpScorer {
    http: reqwest::Client,
    config: ExternalScorerConfig,
}

impl HttpScorer {
    pub fn new(config: ExternalScorerConfig) -> Result<HttpScorer, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // Bounded by the timeout above, not by reqwest's 30 s
            // TCP_USER_TIMEOUT, which one lost keepalive probe triggers.
            .tcp_user_timeout(None)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpScorer { http, config })
    }
}

fn score_of(v: &Value, key: &str) -> Result<f32, ExternalError> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|s| (0.0..=1.0).contains(s))
        .map(|s| s as f32)
        .ok_or_else(|| {
            ExternalError::BadResponse(format!("{key} must be a number between 0 and 1"))
        })
}

impl ExternalScorer for HttpScorer {
    fn score<'a>(
        &'a self,
        text: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Scores, ExternalError>> + Send + 'a>> {
        Box::pin(async move {
            let mut req = self
                .http
                .post(&self.config.url)
                .json(&json!({"text": text}));
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    ExternalError::Timeout
                } else {
                    ExternalError::Unavailable("the classifier could not be reached".into())
                }
            })?;
            if !resp.status().is_success() {
                return Err(ExternalError::Unavailable(format!(
                    "the classifier answered {}",
                    resp.status().as_u16()
                )));
            }
            let v: Value = resp
                .json()
                .await
                .map_err(|_| ExternalError::BadResponse("not JSON".into()))?;
            Ok(Scores {
                injection: score_of(&v, "injection")?,
                toxicity: score_of(&v, "toxicity")?,
            })
        })
    }
}
