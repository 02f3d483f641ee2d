//! Running the real binary in tests: start a server on port 0 with a fresh
//! data directory, learn its address and owner key, stop it gracefully.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_thetazero");

pub struct Server {
    pub child: Child,
    pub url: String,
    pub stdout: Vec<String>,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("THETAZERO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start thetazero");
        // stdout carries the owner key line, stderr the listening address.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let tx_err = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("thetazero listening on ") {
                    let _ = tx_err.send(Err(url.to_string()));
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(Ok(line));
            }
        });
        let mut lines = Vec::new();
        let url = loop {
            match rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("server did not start")
            {
                Ok(line) => lines.push(line),
                Err(url) => break url,
            }
        };
        // The owner key line is printed before listening starts.
        while let Ok(Ok(line)) = rx.try_recv() {
            lines.push(line);
        }
        Server {
            child,
            url,
            stdout: lines,
        }
    }

    pub fn owner_key(&self) -> Option<String> {
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix("owner API key: ").map(str::to_string))
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers an agent (`body` is the registration request); answers its id.
pub async fn register(url: &str, key: &str, body: Value) -> i64 {
    let (status, body) = call(url, "POST", "/api/v1/sdk/agents", key, Some(body)).await;
    assert_eq!(status, 201, "{body}");
    body["agent"]["id"].as_i64().unwrap()
}

pub async fn call(
    url: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{url}{path}"),
        )
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub fn admin_url() -> String {
    std::env::var("THETAZERO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL database of its own (server at `THETAZERO_TEST_DATABASE_URL`,
/// default the local one), dropped (with every connection to it) at the end.
pub struct TestDb {
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tz_replicas_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        TestDb { name }
    }

    pub fn url(&self) -> String {
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin);
        format!("{base}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// One parsed SSE frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
    pub comment: bool,
}

/// A minimal SSE reader over a streaming response.
pub struct Sse {
    resp: reqwest::Response,
    buf: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Sse {
    pub async fn open(
        url: &str,
        auth: Option<&str>,
        last_event_id: Option<u64>,
    ) -> (u16, Option<Sse>) {
        let mut req = reqwest::Client::new().get(url);
        if let Some(key) = auth {
            req = req.bearer_auth(key);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, None);
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        (
            status,
            Some(Sse {
                headers: resp.headers().clone(),
                resp,
                buf: String::new(),
            }),
        )
    }

    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                    comment: false,
                };
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        frame.comment = true;
                        frame.event = c.trim().to_string();
                    } else if let Some(e) = line.strip_prefix("event: ") {
                        frame.event = e.to_string();
                    } else if let Some(i) = line.strip_prefix("id: ") {
                        frame.id = i.parse().ok();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        frame.data = serde_json::from_str(d).unwrap();
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` audit events, skipping keepalives and checkpoints.
    pub async fn audits(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = self.next().await.expect("the stream ended early");
            if f.event == "audit" {
                out.push(f);
            }
        }
        out
    }
}

/// Two replicas on one PostgreSQL database sharing one signing key; the
/// first bootstraps the owner account.
pub struct Pair {
    pub a: Server,
    pub b: Server,
    pub owner: String,
    pub key: thetazero_audit::VerifierKey,
    pub _dir: tempfile::TempDir,
}

pub async fn pair(db: &TestDb) -> Pair {
    pair_with(db, &[]).await
}

/// As `pair`, with more `serve` arguments for both replicas.
pub async fn pair_with(db: &TestDb, extra: &[&str]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing.key");
    let url = db.url();
    let mut args = vec![
        "--database-url",
        url.as_str(),
        "--signing-key-file",
        key_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let a = Server::start(&dir.path().join("a"), &args);
    let owner = a.owner_key().expect("the first replica bootstraps");
    let b = Server::start(&dir.path().join("b"), &args);
    assert_eq!(b.owner_key(), None, "the second replica finds the account");
    let (_, key) = call(&a.url, "GET", "/api/v1/sdk/audit/key", &owner, None).await;
    let (_, key_b) = call(&b.url, "GET", "/api/v1/sdk/audit/key", &owner, None).await;
    assert_eq!(key, key_b, "both replicas sign with the deployment's key");
    let key = thetazero_audit::VerifierKey::parse(key["verifier_key"].as_str().unwrap()).unwrap();
    Pair {
        a,
        b,
        owner,
        key,
        _dir: dir,
    }
}

/// A process and its children (a server and its sandbox workers).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // The parent pid is the 2nd field after the command in parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(p);
            }
        }
    }
    pids
}

/// Proportional set size of a process and its children, in KiB.
pub fn pss_kib(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Pss:"))
                        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
                })
                .unwrap_or(0)
        })
        .sum()
}

/// A config file in `dir` for benches: one account's runs at once and its
/// execution rates unlimited, so that the bench, not a quota, sets the load.
pub fn unthrottled_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        "[quotas]\nconcurrent_runs_per_account = 0\n\n[rate_limits]\nexecutions_per_key_per_minute = 0\nexecutions_per_account_per_minute = 0\n",
    )
    .expect("write the bench config");
    config
}

/// POSTs `body` with `key` and answers the JSON reply; panics on a transport
/// or JSON error (benches only).
pub async fn post(client: &reqwest::Client, url: &str, key: &str, body: Value) -> Value {
    client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}
