//! `http_request` and the SSRF rules: refusals with an injected resolver (before any connect), and the positive path against a local HTTPS server with a test CA. Test-only; no traffic leaves 127.0.0.1.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use thetazero_sandbox::{
    ExecutionReport, NetworkPolicy, Resolver, Sandbox, SandboxConfig, Scope, Status, Template,
};

struct TestResolver {
    calls: AtomicUsize,
    rebind_calls: AtomicUsize,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[async_trait]
impl Resolver for TestResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let table: HashMap<&str, Vec<&str>> = HashMap::from([
            ("api.example.com", vec!["127.0.0.1"]),
            ("other.example.com", vec!["127.0.0.1"]),
            ("private.example.com", vec!["10.0.0.5"]),
            ("meta.example.com", vec!["169.254.169.254"]),
            ("mixed.example.com", vec!["93.184.215.14", "10.0.0.1"]),
            ("v6loop.example.com", vec!["::1"]),
            ("ula.example.com", vec!["fd00::1"]),
            ("mapped.example.com", vec!["::ffff:10.0.0.1"]),
            ("nat64.example.com", vec!["64:ff9b::a9fe:a9fe"]),
            ("sixtofour.example.com", vec!["2002:7f00:1::1"]),
            (
                "teredo.example.com",
                vec!["2001:0:4136:e378:8000:63bf:3fff:fdd2"],
            ),
            ("cgnat.example.com", vec!["100.64.0.1"]),
            ("bench.example.com", vec!["198.18.0.1"]),
            ("doc.example.com", vec!["192.0.2.1"]),
            ("multicast.example.com", vec!["224.0.0.1"]),
            ("broadcast.example.com", vec!["255.255.255.255"]),
            ("reserved.example.com", vec!["240.0.0.1"]),
            ("zero.example.com", vec!["0.0.0.0"]),
            ("linklocal6.example.com", vec!["fe80::1"]),
            ("compat.example.com", vec!["::7f00:1"]),
            ("unspec6.example.com", vec!["::"]),
            ("mcast6.example.com", vec!["ff02::1"]),
            ("xn--bcher-kva.example", vec!["10.1.1.1"]),
            ("empty.example.com", vec![]),
        ]);
        if host == "rebind.example.com" {
            // Public-looking (exempt in the test policy) first, private after.
            let n = self.rebind_calls.fetch_add(1, Ordering::SeqCst);
            return Ok(vec![if n == 0 {
                ip("127.0.0.1")
            } else {
                ip("10.0.0.1")
            }]);
        }
        match table.get(host) {
            Some(addrs) => Ok(addrs.iter().map(|a| ip(a)).collect()),
            None => Err(format!("no such host {host}")),
        }
    }
}

struct Server {
    port: u16,
    ca_pem: Vec<u8>,
    hits: Arc<AtomicUsize>,
}

/// Requests to `/hang` that arrived.
static HANGING: AtomicUsize = AtomicUsize::new(0);

async fn handle(
    req: Request<hyper::body::Incoming>,
    hits: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().to_string();
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(v.to_str().unwrap_or("").into()),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json_response = |v: Value| {
        Response::builder()
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap()
    };
    let redirect = |to: &str| {
        Response::builder()
            .status(302)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    Ok(match path.as_str() {
        "/data" => json_response(json!({"items": [1, 2, 3]})),
        "/echo" => json_response(
            json!({"method": method, "headers": headers, "body": String::from_utf8_lossy(&body)}),
        ),
        "/text" => Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from("plain")))
            .unwrap(),
        "/big" => Response::builder()
            .body(Full::new(Bytes::from(vec![b'x'; 6 << 20])))
            .unwrap(),
        "/loop" => redirect("/loop"),
        // Answers only after the longest run any test allows.
        "/hang" => {
            HANGING.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            json_response(json!({"late": true}))
        }
        "/redirect" => {
            let to = query.strip_prefix("to=").unwrap_or("/data");
            redirect(&url_decode(to))
        }
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    })
}

fn url_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// One server per sandbox, so the strict sandbox's hit counter only sees its own traffic.
fn server_for(exempt: bool) -> &'static Server {
    static LOCAL: OnceLock<Server> = OnceLock::new();
    static STRICT: OnceLock<Server> = OnceLock::new();
    let cell = if exempt { &LOCAL } else { &STRICT };
    cell.get_or_init(|| {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "thetazero test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec![
            "api.example.com".to_string(),
            "other.example.com".to_string(),
            "rebind.example.com".to_string(),
        ])
        .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let server_hits = hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let hits = server_hits.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service =
                            hyper::service::service_fn(move |req| handle(req, hits.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Server {
            port,
            ca_pem: ca.pem().into_bytes(),
            hits,
        }
    })
}

struct Net {
    sandbox: Sandbox,
    resolver: Arc<TestResolver>,
}

/// `exempt`: the test policy that lets 127.0.0.1 stand in for a public server.
fn net(exempt: bool) -> &'static Net {
    static STRICT: OnceLock<Net> = OnceLock::new();
    static LOCAL: OnceLock<Net> = OnceLock::new();
    let cell = if exempt { &LOCAL } else { &STRICT };
    cell.get_or_init(|| {
        let resolver = Arc::new(TestResolver {
            calls: AtomicUsize::new(0),
            rebind_calls: AtomicUsize::new(0),
        });
        let s = server_for(exempt);
        let network = NetworkPolicy {
            resolver: resolver.clone(),
            extra_roots_pem: vec![s.ca_pem.clone()],
            exempt_addrs: if exempt {
                vec![ip("127.0.0.1")]
            } else {
                vec![]
            },
            port_override: Some(s.port),
            reserved: vec![],
        };
        let sandbox = Sandbox::new(SandboxConfig {
            workers: 2,
            queue_capacity: 256,
            network,
            mode: engine_mode(),
            ..SandboxConfig::default()
        })
        .unwrap();
        Net { sandbox, resolver }
    })
}

async fn fetch(exempt: bool, allowed: &[&str], call: &str) -> (ExecutionReport, Arc<MemHost>) {
    let host = MemHost::new();
    let mut j = job(
        &format!("try {{ const r = await thetazero.http_request({call}); return {{ok: true, status: r.status, body: r.body, headers: r.headers}} }} catch (e) {{ return {{ok: false, code: e.code, message: e.message}} }}"),
        &host,
    );
    j.scopes = BTreeSet::from([Scope::NetworkOutbound, Scope::DataRead]);
    j.allow_network = true;
    j.allowed_domains = allowed.iter().map(|s| s.to_string()).collect();
    let r = net(exempt).sandbox.execute(j).await.unwrap();
    assert_eq!(r.status, Status::Completed, "{call}: {r:?}");
    (r, host)
}

/// Refused before any connect: the code says so and the server saw nothing new
/// from this case (the strict sandbox can only reach it through exempt addresses,
/// and it has none).
#[tokio::test]
async fn ssrf_refusals() {
    let allowed = [
        "*.example.com",
        "api.example.com",
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "xn--bcher-kva.example",
        "192.168.1.1",
    ];
    let cases: Vec<(&str, &str)> = vec![
        // Schemes.
        ("'http://api.example.com/data'", "scheme"),
        ("'ftp://api.example.com/'", "scheme"),
        ("'file:///etc/passwd'", "scheme"),
        ("'gopher://api.example.com/'", "scheme"),
        ("'data:text/plain,hello'", "scheme"),
        ("'ws://api.example.com/'", "scheme"),
        ("'HTTP://api.example.com/'", "scheme"),
        // IPv4 literal forms of loopback and metadata, allow-listed so the address rule decides.
        ("'https://2130706433/'", "non-public"),
        ("'https://0x7f000001/'", "non-public"),
        ("'https://017700000001/'", "non-public"),
        ("'https://127.1/'", "non-public"),
        ("'https://0x7f.1/'", "non-public"),
        ("'https://0177.0.0.1/'", "non-public"),
        ("'https://%31%32%37.0.0.1/'", "non-public"),
        ("'https://169.254.169.254/latest/meta-data/'", "non-public"),
        ("'https://2852039166/'", "non-public"),
        ("'https://0.0.0.0/'", "non-public"),
        ("'https://10.0.0.1/'", "non-public"),
        ("'https://192.168.1.1/'", "non-public"),
        // IPv6 literals are never allow-listed.
        ("'https://[::1]/'", "IPv6"),
        ("'https://[::ffff:127.0.0.1]/'", "IPv6"),
        ("'https://[::ffff:a9fe:a9fe]/'", "IPv6"),
        ("'https://[fd00::1]/'", "IPv6"),
        // Names that resolve to non-public addresses.
        ("'https://api.example.com/data'", "non-public"),
        ("'https://private.example.com/'", "non-public"),
        ("'https://meta.example.com/'", "non-public"),
        ("'https://mixed.example.com/'", "non-public"),
        ("'https://v6loop.example.com/'", "non-public"),
        ("'https://ula.example.com/'", "non-public"),
        ("'https://mapped.example.com/'", "non-public"),
        ("'https://nat64.example.com/'", "non-public"),
        ("'https://sixtofour.example.com/'", "non-public"),
        ("'https://teredo.example.com/'", "non-public"),
        ("'https://cgnat.example.com/'", "non-public"),
        ("'https://bench.example.com/'", "non-public"),
        ("'https://doc.example.com/'", "non-public"),
        ("'https://multicast.example.com/'", "non-public"),
        ("'https://broadcast.example.com/'", "non-public"),
        ("'https://reserved.example.com/'", "non-public"),
        ("'https://zero.example.com/'", "non-public"),
        ("'https://linklocal6.example.com/'", "non-public"),
        ("'https://compat.example.com/'", "non-public"),
        ("'https://unspec6.example.com/'", "non-public"),
        ("'https://mcast6.example.com/'", "non-public"),
        // IDNA: the Unicode name matches its xn-- allow-list entry, then the address rule refuses.
        ("'https://bücher.example/'", "non-public"),
        ("'https://BÜCHER.example./'", "non-public"),
        // Allow-list edges.
        ("'https://evil.com/'", "allowed_domains"),
        ("'https://example.com/'", "allowed_domains"),
        ("'https://evilexample.com/'", "allowed_domains"),
        ("'https://api.example.com.evil.com/'", "allowed_domains"),
        ("'https://example.com.evil.com/'", "allowed_domains"),
        // Userinfo and fragment tricks.
        ("'https://user:pass@api.example.com/'", "credentials"),
        ("'https://api.example.com@evil.com/'", "credentials"),
        ("'https://evil.com#@api.example.com/'", "allowed_domains"),
        ("'https://evil.com?@api.example.com/'", "allowed_domains"),
    ];
    assert!(cases.len() >= 50);
    let before = server_for(false).hits.load(Ordering::SeqCst);
    let mut failures = Vec::new();
    for (call, reason) in &cases {
        let (r, _) = fetch(false, &allowed, call).await;
        let ok = r.output["ok"] == json!(false)
            && r.output["code"] == json!("NETWORK_REFUSED")
            && r.output["message"].as_str().unwrap_or("").contains(reason);
        if !ok {
            failures.push(format!("{call}: {}", r.output));
        }
        if ok {
            assert_eq!(r.violation_count, 1, "{call}");
            assert!(!r.host_call_audit[0].allowed, "{call}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        server_for(false).hits.load(Ordering::SeqCst),
        before,
        "a refused request reached the server"
    );
}

#[tokio::test]
async fn wildcard_needs_a_label() {
    // `*.example.com` matches sub-domains only; exact entries match only themselves.
    let (r, _) = fetch(true, &["*.example.com"], "'https://api.example.com/data'").await;
    assert_eq!(r.output["ok"], json!(true), "{r:?}");
    let (r, _) = fetch(
        true,
        &["other.example.com"],
        "'https://api.example.com/data'",
    )
    .await;
    assert_eq!(r.output["code"], json!("NETWORK_REFUSED"));
    let (r, _) = fetch(
        true,
        &["*.api.example.com"],
        "'https://api.example.com/data'",
    )
    .await;
    assert_eq!(r.output["code"], json!("NETWORK_REFUSED"));
}

#[tokio::test]
async fn positive_path_and_normalisation() {
    let allowed = ["api.example.com"];
    for call in [
        "'https://api.example.com/data'",
        "'https://API.Example.COM/data'",
        "'https://api.example.com./data'",
        "'https://api.example.com/data#fragment'",
        "'https://api.example.com/redirect?to=%2Fdata'",
    ] {
        let (r, _) = fetch(true, &allowed, call).await;
        assert_eq!(r.output["ok"], json!(true), "{call}: {}", r.output);
        assert_eq!(r.output["status"], json!(200), "{call}");
        assert_eq!(r.output["body"], json!({"items": [1, 2, 3]}), "{call}");
    }
    let (r, _) = fetch(true, &allowed, "'https://api.example.com/text'").await;
    assert_eq!(r.output["body"], json!("plain"));
    let (r, _) = fetch(
        true,
        &allowed,
        "'https://api.example.com/echo', 'post', {'x-test': 'yes'}, {a: 1}",
    )
    .await;
    assert_eq!(r.output["body"]["method"], json!("POST"));
    assert_eq!(r.output["body"]["headers"]["x-test"], json!("yes"));
    assert_eq!(
        r.output["body"]["headers"]["content-type"],
        json!("application/json")
    );
    assert_eq!(r.output["body"]["body"], json!("{\"a\":1}"));
}

#[tokio::test]
async fn redirects_are_checked_like_requests() {
    let allowed = ["api.example.com", "private.example.com", "127.0.0.1"];
    for (to, reason) in [
        ("https%3A%2F%2Fprivate.example.com%2F", "non-public"),
        ("https%3A%2F%2Fevil.com%2F", "allowed_domains"),
        ("http%3A%2F%2Fapi.example.com%2Fdata", "scheme"),
        ("https%3A%2F%2F169.254.169.254%2F", "allowed_domains"),
        ("https%3A%2F%2Fuser%40api.example.com%2F", "credentials"),
        ("file%3A%2F%2F%2Fetc%2Fpasswd", "scheme"),
    ] {
        let (r, _) = fetch(
            true,
            &allowed,
            &format!("'https://api.example.com/redirect?to={to}'"),
        )
        .await;
        assert_eq!(
            r.output["code"],
            json!("NETWORK_REFUSED"),
            "{to}: {}",
            r.output
        );
        assert!(
            r.output["message"].as_str().unwrap().contains(reason),
            "{to}: {}",
            r.output
        );
    }
    let (r, _) = fetch(true, &allowed, "'https://api.example.com/loop'").await;
    assert_eq!(r.output["code"], json!("NETWORK_REFUSED"));
    assert!(r.output["message"].as_str().unwrap().contains("redirects"));
}

#[tokio::test]
async fn rebinding_is_impossible_because_names_resolve_once() {
    let n = net(true);
    let before = n.resolver.rebind_calls.load(Ordering::SeqCst);
    let (r, _) = fetch(
        true,
        &["rebind.example.com"],
        "'https://rebind.example.com/data'",
    )
    .await;
    assert_eq!(r.output["ok"], json!(true), "{}", r.output);
    assert_eq!(
        n.resolver.rebind_calls.load(Ordering::SeqCst) - before,
        1,
        "resolved more than once"
    );
}

#[tokio::test]
async fn caps_and_bad_requests() {
    let allowed = ["api.example.com"];
    let (r, _) = fetch(true, &allowed, "'https://api.example.com/big'").await;
    assert_eq!(
        r.output["code"],
        json!("RESPONSE_TOO_LARGE"),
        "{}",
        r.output
    );
    let (r, _) = fetch(
        true,
        &allowed,
        "'https://api.example.com/echo', 'POST', {}, 'x'.repeat(2 << 20)",
    )
    .await;
    assert_eq!(r.output["code"], json!("REQUEST_TOO_LARGE"), "{}", r.output);
    for call in [
        "'https://api.example.com/echo', 'GET', {Host: 'evil.com'}",
        "'https://api.example.com/echo', 'GET', {'Proxy-Authorization': 'x'}",
        "'https://api.example.com/echo', 'GET', {'bad name': 'x'}",
        "'https://api.example.com/echo', 'GET', {'x': 'a\\r\\nInjected: 1'}",
        "'https://api.example.com/echo', 'TRACE'",
        "'https://api.example.com/echo', 'GET', {'x': 1}",
        "'not a url'",
    ] {
        let (r, _) = fetch(true, &allowed, call).await;
        assert!(
            r.output["code"] == json!("INVALID_ARGUMENT")
                || r.output["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("must be"),
            "{call}: {}",
            r.output
        );
    }
    let (r, _) = fetch(true, &allowed, "'https://empty.example.com/'").await;
    assert_eq!(r.output["code"], json!("NETWORK_REFUSED"));
}

/// An empty allow-list means any public HTTPS host on STANDARD and no host at
/// all on STRICT; the address rules apply either way.
#[tokio::test]
async fn an_empty_allow_list_is_any_public_host_outside_strict() {
    let (r, _) = fetch(true, &[], "'https://api.example.com/data'").await;
    assert_eq!(r.output["ok"], json!(true), "{}", r.output);
    assert_eq!(r.output["body"], json!({"items": [1, 2, 3]}));
    for host in [
        "private.example.com",
        "meta.example.com",
        "mixed.example.com",
        "127.0.0.1",
        "10.0.0.1",
    ] {
        let (r, _) = fetch(false, &[], &format!("'https://{host}/'")).await;
        assert_eq!(
            r.output["code"],
            json!("NETWORK_REFUSED"),
            "{host}: {}",
            r.output
        );
    }
    let (r, _) = fetch(true, &[], "'http://api.example.com/data'").await;
    assert_eq!(r.output["code"], json!("NETWORK_REFUSED"), "plain HTTP");

    let host = MemHost::new();
    let mut j = job(
        "try { await thetazero.http_request('https://api.example.com/data'); return 'reached' } catch (e) { return e.message }",
        &host,
    );
    j.scopes = BTreeSet::from([Scope::NetworkOutbound]);
    j.allow_network = true;
    j.template = Template::Strict;
    let r = net(true).sandbox.execute(j).await.unwrap();
    let message = r.output.as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("allowed_domains"),
        "STRICT, empty list: {r:?}"
    );
}

#[tokio::test]
async fn dev_localhost_only_on_dev() {
    // STANDARD with allow_localhost: still refused.
    let (r, _) = fetch(true, &[], "'http://localhost/'").await;
    assert_eq!(r.output["code"], json!("NETWORK_REFUSED"));
    let host = MemHost::new();
    let mut j = job(
        "try { await thetazero.http_request('http://127.0.0.1/') } catch (e) { return e.code }",
        &host,
    );
    j.scopes = BTreeSet::from([Scope::NetworkOutbound]);
    j.allow_network = true;
    j.allow_localhost = true;
    let r = net(false).sandbox.execute(j.clone()).await.unwrap();
    assert_eq!(
        r.output,
        json!("NETWORK_REFUSED"),
        "STANDARD ignores allow_localhost"
    );
    j.template = Template::Dev;
    j.code = "try { const r = await thetazero.http_request('http://localhost/data'); return r.status } catch (e) { return e.code }".into();
    let r = net(false).sandbox.execute(j).await.unwrap();
    // The test server speaks TLS only, so plain HTTP fails, but it was not refused by policy.
    assert_eq!(r.output, json!("NETWORK_ERROR"), "{r:?}");
}

#[tokio::test]
async fn spec_host_api_example() {
    let code = r#"const tz = thetazero;
// Structured logging
await tz.log("Starting execution", "info");
await tz.log(`Agent: ${tz.agentName} v${tz.agentVersion}`);
// Outbound HTTPS (requires allow_network: true)
const resp = await tz.http_request(
  "https://api.example.com/data",
  "GET",
  { "Authorization": "Bearer token" }
);
await tz.log(`Status: ${resp.status}`);
// Context store
const prevCount = await tz.read_context("run_count") ?? 0;
// Final result — write_result() or return value both work
await tz.write_result({
  processed: resp.body.items.length,
  run_number: prevCount + 1,
});"#;
    let host = MemHost::new();
    let mut j = job(code, &host);
    j.agent_name = "my-summarizer".into();
    j.agent_version = "1.0.0".into();
    j.execution_id = 4821;
    j.scopes = BTreeSet::from([Scope::NetworkOutbound, Scope::DataRead]);
    j.allow_network = true;
    j.allowed_domains = vec!["api.example.com".into()];
    let r = net(true).sandbox.execute(j).await.unwrap();
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.output, json!({"processed": 3, "run_number": 1}));
    let logs: Vec<_> = r.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        logs,
        [
            "Starting execution",
            "Agent: my-summarizer v1.0.0",
            "Status: 200"
        ]
    );
    assert_eq!(r.resource_usage.api_calls, 2);
    let fns: Vec<_> = r
        .host_call_audit
        .iter()
        .map(|a| a.function.as_str())
        .collect();
    assert_eq!(
        fns,
        [
            "log",
            "log",
            "http_request",
            "log",
            "read_context",
            "write_result"
        ]
    );
    assert_eq!(
        r.host_call_audit[2].args_summary,
        "GET https://api.example.com/data"
    );
}

/// A kill while the agent waits on the network: the pending request is
/// dropped and the execution ends `killed` at once, not when the server
/// answers or the request times out.
#[tokio::test]
async fn a_cancel_stops_a_pending_http_request() {
    let host = MemHost::new();
    let mut j = job(
        "await thetazero.http_request('https://api.example.com/hang'); return 'answered';",
        &host,
    );
    j.scopes = BTreeSet::from([Scope::NetworkOutbound]);
    j.allow_network = true;
    j.allowed_domains = vec!["api.example.com".into()];
    j.limits.cpu_time_ms = 120_000;
    let cancel = j.cancel.clone();
    let before = HANGING.load(Ordering::SeqCst);
    let run = tokio::spawn(net(true).sandbox.execute(j));
    // Wait until the request reached the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while HANGING.load(Ordering::SeqCst) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let killed_at = std::time::Instant::now();
    cancel.cancel();
    let report = tokio::time::timeout(std::time::Duration::from_secs(5), run)
        .await
        .expect("the kill does not wait for the server")
        .unwrap()
        .unwrap();
    assert_eq!(report.status, Status::Killed, "{report:?}");
    assert!(report.was_terminated);
    assert!(killed_at.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn the_servers_own_metrics_listener_is_never_a_destination() {
    // Even DEV with allow_localhost, which reaches the server's loopback
    // services, cannot reach the operator's metrics listener.
    let sandbox = Sandbox::new(SandboxConfig {
        workers: 1,
        queue_capacity: 16,
        network: NetworkPolicy {
            reserved: vec!["127.0.0.1:9420".parse().unwrap()],
            ..NetworkPolicy::default()
        },
        mode: engine_mode(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let host = MemHost::new();
    let mut j = job("", &host);
    j.scopes = BTreeSet::from([Scope::NetworkOutbound]);
    j.allow_network = true;
    j.allow_localhost = true;
    j.template = Template::Dev;
    for (url, refused) in [
        ("http://localhost:9420/metrics", true),
        ("http://127.0.0.1:9420/metrics", true),
        ("http://[::1]:9420/metrics", true),
        ("http://127.0.0.1:9/metrics", false),
    ] {
        j.code = format!("try {{ await thetazero.http_request('{url}'); return 'reached' }} catch (e) {{ return [e.code, e.message] }}");
        let r = sandbox.execute(j.clone()).await.unwrap();
        let message = r.output[1].as_str().unwrap_or_default().to_string();
        assert_eq!(
            message.contains("operator listener"),
            refused,
            "{url}: {}",
            r.output
        );
        if refused {
            assert_eq!(r.output[0], json!("NETWORK_REFUSED"), "{url}");
        }
    }
}
