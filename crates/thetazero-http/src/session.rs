//! Browser sessions for the dashboard: an API key is exchanged once
//! (`POST /api/v1/session`) for an opaque cookie, `HttpOnly`,
//! `SameSite=Strict` and `Secure` behind TLS. The key itself never reaches
//! the browser's storage; the server holds the session in memory and it
//! refers to the key by id, so every request resolves to the same principal
//! as the key would (`Caller`), with the same scope checks.
//!
//! A session ends on sign-out, after [`IDLE`] without a request, and as soon
//! as its key is revoked or its scopes change: the next request gets 401 and
//! the audit streams it opened are closed. A state-changing request made with
//! the cookie must carry the session's CSRF token in `X-CSRF-Token`, whatever
//! its content type, or it gets 403.
//!
//! Sessions live in the memory of the replica that issued them: behind a
//! load balancer with several replicas, route a browser to one replica
//! (sticky sessions) or sign in again after a failover.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::StreamExt;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thetazero_api::types::{SessionView, SignInRequest, SuccessResponse};
use thetazero_api::ErrorCode;
use thetazero_core::model::{AccountId, ApiKey, KeyId};
use thetazero_core::store::Store;
use thetazero_core::KeyScope;
use tokio::sync::watch;

use crate::error::{HttpError, HttpResult};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::views;

/// The cookie's name.
pub const COOKIE: &str = "tz_session";
/// The header a state-changing request made with the cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions one key may hold at once; signing in again past it ends the
/// oldest.
const PER_KEY: usize = 32;
/// Sessions one account may hold at once (over all its keys), so that no
/// tenant can crowd the others out of the replica's table.
const PER_ACCOUNT: usize = 1_000;
/// Sessions one replica holds at most.
const MAX_SESSIONS: usize = 100_000;
/// How often every session's key is looked at again, for revocations made
/// elsewhere (another replica, the CLI).
const SWEEP_EVERY: Duration = Duration::from_secs(2);

struct Session {
    key_id: KeyId,
    account: AccountId,
    /// The key's authority when the session began; any change ends it.
    scopes: Vec<KeyScope>,
    is_owner: bool,
    csrf: String,
    /// Order of creation, for evicting the oldest.
    created: u64,
    last_seen: Instant,
    /// Flips to true when the session ends; streams opened with it close.
    ended: watch::Sender<bool>,
}

impl Session {
    fn end(&self) {
        let _ = self.ended.send(true);
    }

    fn matches(&self, key: &ApiKey) -> bool {
        !key.is_revoked()
            && key.account_id == self.account
            && key.is_owner == self.is_owner
            && key.scopes == self.scopes
    }
}

/// Ends the oldest sessions that `same` selects until one more fits under
/// `limit`.
fn evict_oldest(
    map: &mut HashMap<[u8; 32], Session>,
    same: impl Fn(&Session) -> bool,
    limit: usize,
) {
    let mut mine: Vec<([u8; 32], u64)> = map
        .iter()
        .filter(|(_, s)| same(s))
        .map(|(d, s)| (*d, s.created))
        .collect();
    mine.sort_by_key(|(_, created)| *created);
    let excess = (mine.len() + 1).saturating_sub(limit);
    for (d, _) in mine.into_iter().take(excess) {
        if let Some(s) = map.remove(&d) {
            s.end();
        }
    }
}

/// Every session of this replica, by the SHA-256 of its cookie (a memory
/// dump does not hand out live cookies).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    created: AtomicU64,
    sweeper: OnceLock<()>,
}

/// Marks a request authenticated by a session cookie; the response body of
/// a stream it opens ends with the session.
#[derive(Clone)]
pub struct SessionEnd(watch::Receiver<bool>);

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The session cookie's value, if the request has one.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, key: &ApiKey) -> (String, String) {
        let cookie = random_token();
        let csrf = random_token();
        let (ended, _) = watch::channel(false);
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| {
            let keep = now.duration_since(s.last_seen) < IDLE;
            if !keep {
                s.end();
            }
            keep
        });
        // Past a key's or an account's share, its oldest sessions end.
        evict_oldest(&mut map, |s| s.key_id == key.id, PER_KEY);
        evict_oldest(&mut map, |s| s.account == key.account_id, PER_ACCOUNT);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(d, _)| *d) {
                if let Some(s) = map.remove(&oldest) {
                    s.end();
                }
            }
        }
        map.insert(
            digest(&cookie),
            Session {
                key_id: key.id,
                account: key.account_id,
                scopes: key.scopes.clone(),
                is_owner: key.is_owner,
                csrf: csrf.clone(),
                created: self.created.fetch_add(1, Ordering::Relaxed),
                last_seen: now,
                ended,
            },
        );
        (cookie, csrf)
    }

    /// Ends the session with this cookie; true if there was one.
    pub fn end(&self, cookie: &str) -> bool {
        match self.lock().remove(&digest(cookie)) {
            Some(s) => {
                s.end();
                true
            }
            None => false,
        }
    }

    /// Ends every session of a key (it was revoked or changed).
    pub fn end_key(&self, key_id: KeyId) {
        self.lock().retain(|_, s| {
            let keep = s.key_id != key_id;
            if !keep {
                s.end();
            }
            keep
        });
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks the session up, refreshes its idle clock and answers its key
    /// id, account and CSRF token.
    fn touch(&self, cookie: &str) -> Option<(KeyId, AccountId, String, watch::Receiver<bool>)> {
        self.touch_at(cookie, Instant::now())
    }

    fn touch_at(
        &self,
        cookie: &str,
        now: Instant,
    ) -> Option<(KeyId, AccountId, String, watch::Receiver<bool>)> {
        let d = digest(cookie);
        let mut map = self.lock();
        let s = map.get_mut(&d)?;
        if now.duration_since(s.last_seen) >= IDLE {
            if let Some(s) = map.remove(&d) {
                s.end();
            }
            return None;
        }
        s.last_seen = now;
        Some((s.key_id, s.account, s.csrf.clone(), s.ended.subscribe()))
    }

    fn still_matches(&self, cookie: &str, key: &ApiKey) -> bool {
        let d = digest(cookie);
        let mut map = self.lock();
        match map.get(&d) {
            Some(s) if s.matches(key) => true,
            Some(_) => {
                if let Some(s) = map.remove(&d) {
                    s.end();
                }
                false
            }
            None => false,
        }
    }

    /// Starts (once) the task that ends sessions whose key was revoked or
    /// changed by someone other than this replica, and idle ones.
    fn ensure_sweeper(self: &Arc<Self>, store: Arc<dyn Store>) {
        let weak: Weak<Sessions> = Arc::downgrade(self);
        self.sweeper.get_or_init(|| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(sessions) = weak.upgrade() else {
                        return;
                    };
                    sessions.sweep(&*store).await;
                }
            });
        });
    }

    async fn sweep(&self, store: &dyn Store) {
        let now = Instant::now();
        let keys: Vec<(AccountId, KeyId)> = {
            let mut map = self.lock();
            map.retain(|_, s| {
                let keep = now.duration_since(s.last_seen) < IDLE;
                if !keep {
                    s.end();
                }
                keep
            });
            let mut keys: Vec<_> = map.values().map(|s| (s.account, s.key_id)).collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        };
        for (account, key_id) in keys {
            match store.get_key(account, key_id).await {
                Ok(found) => {
                    let mut map = self.lock();
                    map.retain(|_, s| {
                        let keep =
                            s.key_id != key_id || found.as_ref().is_some_and(|k| s.matches(k));
                        if !keep {
                            s.end();
                        }
                        keep
                    });
                }
                Err(e) => {
                    tracing::warn!(key_id = key_id.get(), error = %e, "could not check a session's key");
                }
            }
        }
    }
}

/// Authenticates a request by its session cookie, when it has one and no
/// Authorization header: the session's key, loaded afresh (so a revoked or
/// changed key ends the session), after the CSRF check for state-changing
/// methods. `Ok(None)`: the request does not use a session.
pub(crate) async fn authenticate(
    state: &AppState,
    req: &mut Request,
) -> Result<Option<ApiKey>, HttpError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let Some(cookie) = cookie(req.headers()) else {
        return Ok(None);
    };
    let ended = || {
        HttpError::new(
            ErrorCode::Unauthorized,
            "the session has ended: sign in again",
        )
    };
    let (key_id, account, csrf, end) = state.sessions.touch(&cookie).ok_or_else(ended)?;
    if !is_safe(req.method()) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if sent.is_empty() || !bool::from(sent.ct_eq(csrf.as_bytes())) {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "a request made with the session cookie must carry its CSRF token in X-CSRF-Token",
            ));
        }
    }
    let key = match state.store.get_key(account, key_id).await? {
        Some(k) if state.sessions.still_matches(&cookie, &k) => k,
        _ => {
            state.sessions.end(&cookie);
            return Err(ended());
        }
    };
    req.extensions_mut().insert(SessionEnd(end));
    Ok(Some(key))
}

/// Closes a response's body when the session that opened it ends (the live
/// audit stream of a revoked key).
pub(crate) fn close_with_session(response: Response, end: SessionEnd) -> Response {
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return response;
    }
    let SessionEnd(mut rx) = end;
    let (parts, body) = response.into_parts();
    let ended = async move {
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let body = Body::from_stream(body.into_data_stream().take_until(Box::pin(ended)));
    Response::from_parts(parts, body)
}

/// Whether the browser reached us over TLS (directly or through a proxy
/// that says so), so the cookie must be `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        })
        || headers
            .get("forwarded")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"))
}

fn set_cookie(value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn key_view(key: &ApiKey, deployment_owner: bool, csrf: &str) -> SessionView {
    SessionView {
        success: true,
        key: views::key(key),
        deployment_owner,
        csrf_token: csrf.into(),
        idle_timeout_s: IDLE.as_secs(),
    }
}

/// A request from another origin carries `Origin`; the dashboard's own never
/// names another host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(host);
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    if authority.eq_ignore_ascii_case(host) {
        return true;
    }
    // A proxy that passes on `$host` drops the port: then the names alone
    // must match.
    !host.is_empty()
        && !host.contains(':')
        && authority.rsplit_once(':').is_some_and(|(name, port)| {
            name.eq_ignore_ascii_case(host) && port.bytes().all(|b| b.is_ascii_digit())
        })
}

/// `POST /api/v1/session`: exchanges an API key for a session cookie.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignInRequest>,
) -> HttpResult<Response> {
    if !same_origin(&headers) {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            "sign-in is accepted from the dashboard's own origin only",
        ));
    }
    let value = format!("Bearer {}", body.api_key.trim());
    let key = crate::auth::authenticate(&state, Some(Ok(value))).await?;
    let deployment_owner =
        key.is_owner && state.store.first_account_id().await? == Some(key.account_id);
    state.sessions.ensure_sweeper(state.store.clone());
    let (cookie, csrf) = state.sessions.start(&key);
    let mut response = (
        StatusCode::CREATED,
        Json(key_view(&key, deployment_owner, &csrf)),
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&cookie, None, over_tls(&headers)),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/session`: who is signed in, and the CSRF token for the
/// page's state-changing requests.
pub async fn current(State(state): State<AppState>, mut req: Request) -> HttpResult<Response> {
    let Some(cookie) = cookie(req.headers()) else {
        return Err(HttpError::new(ErrorCode::Unauthorized, "not signed in"));
    };
    let key = authenticate(&state, &mut req)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::Unauthorized, "not signed in"))?;
    let csrf = state
        .sessions
        .touch(&cookie)
        .map(|(_, _, csrf, _)| csrf)
        .ok_or_else(|| HttpError::new(ErrorCode::Unauthorized, "not signed in"))?;
    let deployment_owner =
        key.is_owner && state.store.first_account_id().await? == Some(key.account_id);
    let mut response = Json(key_view(&key, deployment_owner, &csrf)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /api/v1/session`: signs out (with the CSRF token).
pub async fn sign_out(State(state): State<AppState>, mut req: Request) -> HttpResult<Response> {
    let Some(cookie) = cookie(req.headers()) else {
        return Err(HttpError::new(ErrorCode::Unauthorized, "not signed in"));
    };
    authenticate(&state, &mut req)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::Unauthorized, "not signed in"))?;
    state.sessions.end(&cookie);
    let mut response = Json(SuccessResponse { success: true }).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", Some(0), over_tls(req.headers())),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tz_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("tz_sessionx=1"));
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let plain = set_cookie("v", None, false);
        assert_eq!(plain, "tz_session=v; Path=/; HttpOnly; SameSite=Strict");
        let tls = set_cookie("v", None, true);
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
        assert!(!over_tls(&HeaderMap::new()));
    }

    fn key(id: i64, scopes: Vec<KeyScope>) -> ApiKey {
        ApiKey {
            id: KeyId::new(id),
            account_id: AccountId::new(1),
            name: "k".into(),
            prefix: "tzk_abcdefgh".into(),
            scopes,
            is_owner: false,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            last_used_at: None,
            revoked_at: None,
            created_by: None,
        }
    }

    #[test]
    fn a_session_ends_after_twelve_idle_hours_and_its_streams_with_it() {
        let sessions = Sessions::default();
        let k = key(7, vec![KeyScope::AgentsRead]);
        let (cookie, csrf) = sessions.start(&k);
        let t0 = Instant::now();
        let (key_id, account, token, mut ended) = sessions.touch_at(&cookie, t0).unwrap();
        assert_eq!(
            (key_id, account, token),
            (KeyId::new(7), AccountId::new(1), csrf)
        );
        assert!(!*ended.borrow_and_update());
        // Each request restarts the idle clock.
        let t1 = t0 + IDLE - Duration::from_secs(1);
        assert!(sessions.touch_at(&cookie, t1).is_some());
        assert!(sessions
            .touch_at(&cookie, t1 + IDLE - Duration::from_secs(1))
            .is_some());
        let late = t1 + IDLE - Duration::from_secs(1) + IDLE;
        assert!(sessions.touch_at(&cookie, late).is_none());
        assert!(*ended.borrow_and_update(), "its streams are told");
        assert!(sessions.is_empty());
        assert!(sessions.touch_at(&cookie, t0).is_none(), "gone for good");
    }

    #[test]
    fn a_changed_key_does_not_match_its_sessions() {
        let sessions = Sessions::default();
        let k = key(7, vec![KeyScope::AgentsRead, KeyScope::AgentsWrite]);
        let (cookie, _) = sessions.start(&k);
        assert!(sessions.still_matches(&cookie, &k));
        let mut narrowed = k.clone();
        narrowed.scopes = vec![KeyScope::AgentsRead];
        assert!(!sessions.still_matches(&cookie, &narrowed));
        assert!(sessions.is_empty());
        let (cookie, _) = sessions.start(&k);
        let mut revoked = k.clone();
        revoked.revoked_at = Some(time::OffsetDateTime::UNIX_EPOCH);
        assert!(!sessions.still_matches(&cookie, &revoked));
    }

    #[test]
    fn one_key_holds_a_bounded_number_of_sessions() {
        let sessions = Sessions::default();
        let k = key(7, vec![KeyScope::AgentsRead]);
        let first = sessions.start(&k).0;
        for _ in 0..PER_KEY {
            sessions.start(&k);
        }
        assert_eq!(sessions.len(), PER_KEY);
        assert!(sessions.touch(&first).is_none(), "the oldest ended");
        sessions.end_key(KeyId::new(7));
        assert!(sessions.is_empty());
        // And one account a bounded number over all its keys.
        let first = sessions.start(&key(1, vec![KeyScope::AgentsRead])).0;
        for id in 2..=PER_ACCOUNT as i64 {
            sessions.start(&key(id, vec![KeyScope::AgentsRead]));
        }
        assert_eq!(sessions.len(), PER_ACCOUNT);
        let mut other = key(5000, vec![KeyScope::AgentsRead]);
        other.account_id = AccountId::new(2);
        let theirs = sessions.start(&other).0;
        assert_eq!(
            sessions.len(),
            PER_ACCOUNT + 1,
            "another account is not affected"
        );
        sessions.start(&key(4000, vec![KeyScope::AgentsRead]));
        assert!(
            sessions.touch(&first).is_none(),
            "the account's oldest ended"
        );
        assert!(sessions.touch(&theirs).is_some());
    }

    #[test]
    fn only_the_own_origin_may_sign_in() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8420"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8420"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        let origin = |h: &mut HeaderMap, v: &'static str| {
            h.insert(header::ORIGIN, HeaderValue::from_static(v));
        };
        origin(&mut h, "http://127.0.0.1:9999");
        assert!(
            !same_origin(&h),
            "another port of a host that names its port"
        );
        // Behind a proxy that sends `Host: $host` (no port).
        h.insert(header::HOST, HeaderValue::from_static("dash.example"));
        origin(&mut h, "https://dash.example:8443");
        assert!(same_origin(&h));
        origin(&mut h, "https://evil.example:8443");
        assert!(!same_origin(&h));
        origin(&mut h, "null");
        assert!(!same_origin(&h));
    }
}
