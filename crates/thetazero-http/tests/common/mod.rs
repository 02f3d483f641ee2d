//! In-process test harness: a real router over a real SQLite store in a
//! temporary directory, called without a socket through `tower::ServiceExt`.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use thetazero_core::model::NewKey;
use thetazero_core::store::Store;
use thetazero_http::{generate_key, AppState, Settings};
use thetazero_ledger::Ledger;
use thetazero_runtime::{Runtime, RuntimeConfig};
use thetazero_store_postgres::PgStore;
use thetazero_store_sqlite::SqliteStore;
use tower::ServiceExt;

/// The engine these suites run on: confined worker processes (the default
/// of `thetazero serve`), or in process with `THETAZERO_TEST_ENGINE=in_process`.
/// The worker program is the sandbox crate's own binary, which
/// `cargo test --workspace` builds next to the test executables.
pub fn engine_mode() -> thetazero_runtime::sandbox::EngineMode {
    use thetazero_runtime::sandbox::{EngineMode, ProcessConfig};
    if std::env::var("THETAZERO_TEST_ENGINE").as_deref() == Ok("in_process") {
        return EngineMode::InProcess;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let program = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("thetazero-sandbox-worker"))
        .filter(|p| p.is_file())
        .expect(
            "the sandbox worker binary is not built: run `cargo build -p thetazero-sandbox --bin thetazero-sandbox-worker` (cargo test --workspace builds it)",
        );
    EngineMode::Process(ProcessConfig::new(program, Vec::new()))
}

pub struct TestApp {
    /// Dropped after the store: the schema of a PostgreSQL run.
    _schema: Option<PgSchema>,
    pub router: Router,
    pub store: Arc<dyn Store>,
    pub ledger: Arc<Ledger>,
    /// The deployment owner's key (account 1).
    pub owner: String,
    _dir: tempfile::TempDir,
}

/// A PostgreSQL schema of its own for one test (`THETAZERO_TEST_BACKEND=postgres`,
/// server at `THETAZERO_TEST_DATABASE_URL`), dropped when the test ends.
pub struct PgSchema {
    name: String,
}

fn pg_base_url() -> String {
    std::env::var("THETAZERO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl PgSchema {
    async fn create() -> PgSchema {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tz_http_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let (client, conn) = tokio_postgres::connect(&pg_base_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        PgSchema { name }
    }

    fn url(&self) -> String {
        let base = pg_base_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&pg_base_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> TestApp {
        Self::with_config(settings, RuntimeConfig::default()).await
    }

    pub async fn with_config(settings: Settings, mut config: RuntimeConfig) -> TestApp {
        config.sandbox.mode = engine_mode();
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, schema): (Arc<dyn Store>, Option<PgSchema>) =
            match std::env::var("THETAZERO_TEST_BACKEND").as_deref() {
                Ok("postgres") => {
                    let schema = PgSchema::create().await;
                    let store = PgStore::connect(&schema.url())
                        .await
                        .expect("connect PostgreSQL");
                    (Arc::new(store), Some(schema))
                }
                _ => (
                    Arc::new(SqliteStore::open(&dir.path().join("t.db")).expect("open store")),
                    None,
                ),
            };
        let key = generate_key();
        store
            .bootstrap(
                "default",
                NewKey {
                    account_id: thetazero_core::model::AccountId::new(0),
                    name: "owner".into(),
                    prefix: key.prefix.clone(),
                    hash: key.hash,
                    scopes: vec![],
                    is_owner: true,
                    created_by: None,
                },
            )
            .await
            .expect("bootstrap")
            .expect("fresh database");
        let runtime = Arc::new(Runtime::new(store.clone(), config).expect("runtime"));
        let signer = thetazero_audit::AuditSigner::generate("test.thetazero").unwrap();
        let ledger = Arc::new(
            Ledger::new(store.clone(), &signer.to_key_string(), "test.thetazero").unwrap(),
        );
        let router = thetazero_http::router(AppState::new(
            store.clone(),
            runtime,
            ledger.clone(),
            settings,
        ));
        TestApp {
            _schema: schema,
            router,
            store,
            ledger,
            owner: key.secret,
            _dir: dir,
        }
    }

    /// The same store and ledger served with another configuration, as
    /// after the operator edits it and restarts the server.
    pub fn restart(mut self, mut config: RuntimeConfig) -> TestApp {
        config.sandbox.mode = engine_mode();
        let runtime = Arc::new(Runtime::new(self.store.clone(), config).expect("runtime"));
        self.router = thetazero_http::router(AppState::new(
            self.store.clone(),
            runtime,
            self.ledger.clone(),
            Settings::default(),
        ));
        self
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("t.db")
    }

    /// Edits the database behind the server's back, as an operator with
    /// direct access could: the audit tables' triggers are dropped (SQLite) or
    /// bypassed with `session_replication_role = replica` (PostgreSQL, as a
    /// superuser), then `sqlite` or `postgres` runs as one batch.
    pub async fn tamper(&self, sqlite: &str, postgres: &str) {
        match &self._schema {
            None => {
                let conn = rusqlite::Connection::open(self.db_path()).expect("open database");
                let triggers: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit%'")
                    .and_then(|mut st| {
                        st.query_map([], |r| r.get(0))?
                            .collect::<Result<Vec<String>, _>>()
                    })
                    .expect("list triggers");
                for t in triggers {
                    conn.execute_batch(&format!("DROP TRIGGER {t}"))
                        .expect("drop trigger");
                }
                conn.execute_batch(sqlite)
                    .unwrap_or_else(|e| panic!("{sqlite}: {e}"));
            }
            Some(schema) => {
                let (client, conn) = tokio_postgres::connect(&schema.url(), tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL");
                tokio::spawn(conn);
                client
                    .batch_execute(&format!(
                        "SET session_replication_role = replica; {postgres}"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{postgres}: {e}"));
            }
        }
    }

    /// Runs one query returning a single text column, on either backend.
    pub async fn query_text(&self, sql: &str) -> Vec<String> {
        match &self._schema {
            None => {
                let conn = rusqlite::Connection::open(self.db_path()).expect("open database");
                let mut st = conn.prepare(sql).expect("prepare");
                st.query_map([], |r| r.get(0))
                    .expect("query")
                    .collect::<Result<Vec<String>, _>>()
                    .expect("rows")
            }
            Some(schema) => {
                let (client, conn) = tokio_postgres::connect(&schema.url(), tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL");
                tokio::spawn(conn);
                client
                    .query(sql, &[])
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| r.get(0))
                    .collect()
            }
        }
    }

    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.raw(req).await
    }

    /// Creates a key with the given scopes; answers its secret and id.
    pub async fn key_with(&self, owner: &str, scopes: &[&str]) -> (String, i64) {
        let r = self
            .call(
                "POST",
                "/api/v1/keys",
                Some(owner),
                Some(serde_json::json!({"name": "test", "scopes": scopes})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["secret"].as_str().unwrap().to_string(),
            r.body["key"]["id"].as_i64().unwrap(),
        )
    }

    /// Creates a second account; answers its owner key.
    pub async fn other_account(&self) -> String {
        let r = self
            .call(
                "POST",
                "/api/v1/accounts",
                Some(&self.owner),
                Some(serde_json::json!({"name": "other team"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["secret"].as_str().unwrap().to_string()
    }

    pub async fn register(&self, key: &str, name: &str) -> i64 {
        let r = self
            .call(
                "POST",
                "/api/v1/sdk/agents",
                Some(key),
                Some(serde_json::json!({"name": name, "entry_code": "return 1;"})),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        r.body["agent"]["id"].as_i64().unwrap()
    }
}

/// Asserts the error shape and code.
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "body: {}", reply.body);
    assert_eq!(reply.body["success"], false, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
    let rid = reply.body["error"]["request_id"].as_str().unwrap_or("");
    assert!(rid.starts_with("req_"), "request id in {}", reply.body);
    assert!(!reply.body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .is_empty());
}

/// Starts an execution in the background; answers its eventual response.
pub fn start(app: &TestApp, id: i64) -> tokio::task::JoinHandle<Value> {
    start_with(app, &app.owner, id)
}

/// As `start`, with another key.
pub fn start_with(app: &TestApp, key: &str, id: i64) -> tokio::task::JoinHandle<Value> {
    let router = app.router.clone();
    let owner = key.to_string();
    tokio::spawn(async move {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method("POST")
            .uri(format!("/api/v1/sdk/agents/{id}/execute"))
            .header("authorization", format!("Bearer {owner}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    })
}

/// Waits until the agent has `n` executions recorded as running.
pub async fn running(app: &TestApp, id: i64, n: u64) {
    for _ in 0..2000 {
        let r = app
            .call(
                "GET",
                &format!("/api/v1/sdk/agents/{id}/executions?status=running"),
                Some(&app.owner),
                None,
            )
            .await;
        if r.body["total"].as_u64() == Some(n) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the executions never started");
}

/// Registers an agent with the owner key; answers its id.
pub async fn agent(app: &TestApp, body: Value) -> i64 {
    let r = app
        .call("POST", "/api/v1/sdk/agents", Some(&app.owner), Some(body))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    r.body["agent"]["id"].as_i64().unwrap()
}

/// Executes an agent with the owner key; answers the execution response.
pub async fn execute(app: &TestApp, id: i64, input: Value) -> Value {
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{id}/execute"),
            Some(&app.owner),
            Some(serde_json::json!({"input": input})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The action types of the audit events a query finds, oldest first.
pub async fn audit_types(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/audit?limit=1000&{query}"),
            Some(&app.owner),
            None,
        )
        .await;
    r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action_type"].as_str().unwrap().to_string())
        .collect()
}
