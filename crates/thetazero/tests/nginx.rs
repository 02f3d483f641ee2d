//! The nginx configuration of `docs/deployment.md`, run as written in front of
//! two real replicas on one PostgreSQL database: executions spread over both,
//! the live stream arrives unbuffered, nginx's request id reaches the server,
//! oversized bodies stop at nginx, and a replica killed with SIGKILL is
//! skipped without a failed request.
//!
//! Needs `nginx` on the PATH or in /usr/sbin (`.ci/run` installs it).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, pair, Sse, TestDb};
use serde_json::json;

/// The one ```nginx block of the deployment guide.
fn documented_config() -> String {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deployment.md");
    let text = std::fs::read_to_string(&guide).expect("docs/deployment.md");
    let start = text
        .find("```nginx\n")
        .expect("an nginx block in the guide")
        + 9;
    let len = text[start..].find("```").expect("the block ends");
    text[start..start + len].to_string()
}

fn nginx_binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
    {
        let candidate = Path::new(dir).join("nginx");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("nginx is not installed (Debian: apt-get install nginx-light; .ci/run does this)");
}

/// nginx in the foreground with its own prefix directory; killed on drop.
struct Nginx {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[&str]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let documented = documented_config();
        // Only the addresses change: the upstream's servers become the
        // replicas, the TLS listener a plain one on a free port.
        let mut site = String::new();
        let mut replaced = false;
        for line in documented.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("server 10.0.0.") {
                if !replaced {
                    for up in upstreams {
                        let rest = trimmed.split_once(' ').unwrap().1;
                        let options = rest.split_once(' ').map(|(_, o)| o).unwrap_or(";");
                        site.push_str(&format!("    server {up} {options}\n"));
                    }
                    replaced = true;
                }
            } else if trimmed.starts_with("listen 443 ssl;") {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            } else {
                site.push_str(line);
                site.push('\n');
            }
        }
        assert!(replaced, "the guide's upstream lists servers");
        let p = dir.path().display();
        std::fs::write(dir.path().join("thetazero.conf"), site).unwrap();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "user root;\nworker_processes 1;\ndaemon off;\npid {p}/nginx.pid;\n\
                 error_log {p}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/body;\n  \
                 proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  \
                 uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
                 include {p}/thetazero.conf;\n}}\n"
            ),
        )
        .unwrap();
        let conf = dir.path().join("nginx.conf");
        let check = Command::new(nginx_binary())
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "nginx -t refuses the guide's configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Executions of `/execute` a replica has answered, from its own /metrics.
async fn executions_served(replica: &str, owner: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{replica}/metrics"))
        .bearer_auth(owner)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("thetazero_http_requests_total") && l.contains("/execute"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_nginx_configuration_fronts_two_replicas() {
    let db = TestDb::create().await;
    let mut p = pair(&db).await;
    let host = |u: &str| u.trim_start_matches("http://").to_string();
    let nginx = Nginx::start(&[&host(&p.a.url), &host(&p.b.url)]);
    let front = nginx.url.clone();

    let health = reqwest::get(format!("{front}/readyz")).await.unwrap();
    assert_eq!(health.status(), 200);

    let (status, agent) = call(
        &front,
        "POST",
        "/api/v1/sdk/agents",
        &p.owner,
        Some(json!({"name": "fronted", "entry_code": "await thetazero.log('hi'); return {n: input.n};"})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let id = agent["agent"]["id"].as_i64().unwrap();
    let execute = format!("/api/v1/sdk/agents/{id}/execute");

    // Executions through nginx reach both replicas, and nginx's request id is
    // the one the server logs and answers with.
    let http = reqwest::Client::new();
    for n in 0..12 {
        let resp = http
            .post(format!("{front}{execute}"))
            .bearer_auth(&p.owner)
            .json(&json!({"input": {"n": n}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(
            rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
            "nginx's $request_id reaches the server: {rid}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["output"], json!({"n": n}));
    }
    let (on_a, on_b) = (
        executions_served(&p.a.url, &p.owner).await,
        executions_served(&p.b.url, &p.owner).await,
    );
    assert_eq!(on_a + on_b, 12);
    assert!(
        on_a > 0 && on_b > 0,
        "both replicas served: {on_a} / {on_b}"
    );

    // The live stream through nginx: events arrive while the stream is open,
    // not when a buffer fills or the stream ends, on both paths.
    for path in ["/api/sdk/audit/stream", "/api/v1/sdk/audit/stream"] {
        let (status, sse) =
            Sse::open(&format!("{front}{path}?agentId={id}"), Some(&p.owner), None).await;
        assert_eq!(status, 200);
        let mut sse = sse.unwrap();
        let connected = sse.next().await.expect("connected arrives through nginx");
        assert_eq!(connected.event, "connected");
        let started = Instant::now();
        let (status, _) = call(
            &front,
            "POST",
            &execute,
            &p.owner,
            Some(json!({"input": {"n": 99}})),
        )
        .await;
        assert_eq!(status, 200);
        let events = sse.audits(1).await;
        assert_eq!(events[0].data["agent_id"], id);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an event took {:?} through nginx",
            started.elapsed()
        );
    }

    // A body over the cap stops at nginx with 413.
    let big = "x".repeat(3 << 20);
    let resp = http
        .post(format!("{front}{execute}"))
        .bearer_auth(&p.owner)
        .header("content-type", "application/json")
        .body(format!("{{\"input\": \"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // One replica dies; nginx skips it and no request fails.
    p.a.child.kill().unwrap();
    p.a.child.wait().unwrap();
    for n in 0..12 {
        let (status, run) = call(
            &front,
            "POST",
            &execute,
            &p.owner,
            Some(json!({"input": {"n": n}})),
        )
        .await;
        assert_eq!(
            status,
            200,
            "after a replica died: {run}\n{}",
            nginx.error_log()
        );
        assert_eq!(run["status"], "completed");
    }
    let (_, list) = call(
        &front,
        "GET",
        &format!("/api/v1/sdk/agents/{id}/executions?limit=1"),
        &p.owner,
        None,
    )
    .await;
    assert_eq!(list["total"], 12 + 2 + 12);
}
