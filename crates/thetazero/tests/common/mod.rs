//! Running the real binary in tests: start a server on port 0 with a fresh
//! data directory, learn its address and owner key, stop it gracefully.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

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
