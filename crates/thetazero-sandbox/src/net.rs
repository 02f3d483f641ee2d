//! Outbound HTTPS for `thetazero.http_request`: URL and allow-list checks, SSRF address rules, pinned resolution, capped bodies and manual redirects. It must never look a name up twice or connect to an address it has not checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use thetazero_core::limits::Limits;
use url::{Host as UrlHost, Url};

/// Looks a host name up. Injected so tests never touch real DNS and can answer
/// with private or changing addresses.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String>;
}

/// The operating system's resolver, through tokio.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let addrs = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|_| format!("could not resolve {host}"))?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// How the sandbox reaches the network. `NetworkPolicy::default()` is the
/// production policy; the test-only fields exist so integration tests can stand
/// a local HTTPS server in for a public one.
#[derive(Clone)]
pub struct NetworkPolicy {
    pub resolver: Arc<dyn Resolver>,
    /// Extra trusted roots (PEM), in addition to the Mozilla set. Tests only.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Addresses exempt from the public-address rule. Tests only: production
    /// must leave this empty.
    pub exempt_addrs: Vec<IpAddr>,
    /// Connect to this port instead of the URL's. Tests only.
    pub port_override: Option<u16>,
    /// The server's own operator listeners (metrics): never a destination,
    /// not even for `allow_localhost`.
    pub reserved: Vec<SocketAddr>,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            resolver: Arc::new(SystemResolver),
            extra_roots_pem: Vec::new(),
            exempt_addrs: Vec::new(),
            port_override: None,
            reserved: Vec::new(),
        }
    }
}

impl std::fmt::Debug for NetworkPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkPolicy")
            .field("extra_roots", &self.extra_roots_pem.len())
            .field("exempt_addrs", &self.exempt_addrs)
            .field("port_override", &self.port_override)
            .field("reserved", &self.reserved)
            .finish()
    }
}

/// Why a request was not made or did not complete. The message reaches agent code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Policy refusal: scheme, allow-list, address, redirect. Always before connecting.
    #[error("request refused: {0}")]
    Refused(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("request body larger than {0} bytes")]
    RequestTooLarge(u64),
    #[error("response body larger than {0} bytes")]
    ResponseTooLarge(u64),
    #[error("request timed out")]
    Timeout,
    #[error("request failed: {0}")]
    Failed(String),
}

impl NetError {
    pub fn code(&self) -> &'static str {
        match self {
            NetError::Refused(_) => "NETWORK_REFUSED",
            NetError::BadRequest(_) => "INVALID_ARGUMENT",
            NetError::RequestTooLarge(_) => "REQUEST_TOO_LARGE",
            NetError::ResponseTooLarge(_) => "RESPONSE_TOO_LARGE",
            NetError::Timeout => "HTTP_TIMEOUT",
            NetError::Failed(_) => "NETWORK_ERROR",
        }
    }
}

/// True only for globally routable unicast addresses. Everything the SSRF rules
/// name is refused, including IPv4 addresses embedded in IPv6 forms.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network"
        || a == 10
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || a == 127
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    // Forms that embed an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96.
        return is_public_v4(embedded_v4(seg[6], seg[7]));
    }
    if seg[0] == 0x2002 {
        // 6to4: the tunnel endpoint is an IPv4 address in bits 16..48.
        return is_public_v4(embedded_v4(seg[1], seg[2]));
    }
    // Only global unicast 2000::/3 is public at all; this excludes ::, ::1,
    // IPv4-compatible ::/96, ULA fc00::/7, link-local fe80::/10, site-local,
    // multicast ff00::/8 and discard 100::/64.
    if seg[0] & 0xe000 != 0x2000 {
        return false;
    }
    let refused = match seg[0] {
        // 2001::/23 is IANA's special-purpose block: Teredo 2001::/32,
        // benchmarking 2001:2::/48, ORCHID 2001:10::/28 and 2001:20::/28;
        // 2001:db8::/32 and 3fff::/20 are documentation.
        0x2001 => seg[1] < 0x0200 || seg[1] == 0x0db8,
        0x3fff => seg[1] < 0x1000,
        _ => false,
    };
    !refused
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

/// Whether `host` (normalised) matches an allow-list entry: exactly, or by an
/// explicit `*.` wildcard that needs at least one more label.
pub fn domain_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => host == pattern,
        }
    })
}

/// What a request may do beyond the policy: the agent's allow-list and caps.
pub(crate) struct HttpRules {
    pub allowed_domains: Vec<String>,
    /// An empty allow-list outside STRICT: any public HTTPS host (the
    /// address rules still apply to every name).
    pub any_public_host: bool,
    pub dev_localhost: bool,
    pub limits: Limits,
}

impl HttpRules {
    /// Whether the allow-list admits `host` (normalised).
    pub fn admits(&self, host: &str) -> bool {
        self.any_public_host || domain_allowed(host, &self.allowed_domains)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct HttpCall {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

const MAX_REQUEST_HEADERS: usize = 64;
const MAX_REQUEST_HEADER_BYTES: usize = 16 << 10;
const MAX_RESPONSE_HEADERS: usize = 100;
const MAX_RESPONSE_HEADER_BYTES: usize = 64 << 10;
const FORBIDDEN_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "expect",
];

/// A checked destination: the URL to send and the only addresses to connect to.
struct Target {
    url: Url,
    host: String,
    addrs: Vec<IpAddr>,
}

/// Validates method and headers before anything else happens.
pub(crate) fn validate_call(call: &HttpCall, limits: &Limits) -> Result<(), NetError> {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    if !METHODS.contains(&call.method.as_str()) {
        return Err(NetError::BadRequest(format!(
            "method must be one of {}",
            METHODS.join(", ")
        )));
    }
    if call.headers.len() > MAX_REQUEST_HEADERS {
        return Err(NetError::BadRequest("too many headers".into()));
    }
    let bytes: usize = call.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_REQUEST_HEADER_BYTES {
        return Err(NetError::BadRequest("headers too large".into()));
    }
    for (name, value) in &call.headers {
        let lower = name.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(NetError::BadRequest(format!(
                "header {name:?} may not be set"
            )));
        }
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| NetError::BadRequest(format!("invalid header name {name:?}")))?;
        reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| NetError::BadRequest(format!("invalid value for header {name:?}")))?;
    }
    if let Some(body) = &call.body {
        if body.len() as u64 > limits.max_http_request_bytes {
            return Err(NetError::RequestTooLarge(limits.max_http_request_bytes));
        }
    }
    Ok(())
}

async fn check_target(
    url: &Url,
    rules: &HttpRules,
    policy: &NetworkPolicy,
) -> Result<Target, NetError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NetError::Refused(
            "credentials in the URL are not allowed".into(),
        ));
    }
    let is_localhost = match url.host() {
        Some(UrlHost::Domain(d)) => d.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        Some(UrlHost::Ipv4(ip)) => ip.is_loopback(),
        Some(UrlHost::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let dev_local = rules.dev_localhost && is_localhost;
    match url.scheme() {
        "https" => {}
        "http" if dev_local => {}
        other => {
            return Err(NetError::Refused(format!(
                "scheme {other:?} is not allowed; use https"
            )))
        }
    }
    let host = url
        .host()
        .ok_or_else(|| NetError::Refused("the URL has no host".into()))?;
    let mut url = url.clone();
    url.set_fragment(None);
    let (name, addrs) = match host {
        UrlHost::Domain(d) => {
            // `url` has already lowercased and IDNA-encoded the name.
            let name = d.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err(NetError::Refused("the URL has no host".into()));
            }
            if dev_local {
                (name, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
            } else {
                if !rules.admits(&name) {
                    return Err(NetError::Refused(format!(
                        "{name} is not in allowed_domains"
                    )));
                }
                let addrs = tokio::time::timeout(
                    Duration::from_millis(rules.limits.http_timeout_ms),
                    policy.resolver.resolve(&name),
                )
                .await
                .map_err(|_| NetError::Timeout)?
                .map_err(NetError::Failed)?;
                if addrs.is_empty() {
                    return Err(NetError::Failed(format!("{name} has no addresses")));
                }
                (name, addrs)
            }
        }
        UrlHost::Ipv4(ip) => {
            let text = ip.to_string();
            if !dev_local && !rules.admits(&text) {
                return Err(NetError::Refused(format!(
                    "{text} is not in allowed_domains"
                )));
            }
            (text, vec![IpAddr::V4(ip)])
        }
        UrlHost::Ipv6(ip) => {
            if !dev_local {
                return Err(NetError::Refused(
                    "IPv6 literals cannot be allow-listed".into(),
                ));
            }
            (format!("[{ip}]"), vec![IpAddr::V6(ip)])
        }
    };
    let port = url.port_or_known_default().unwrap_or(443);
    if let Some(own) = policy.reserved.iter().find(|r| {
        r.port() == port
            && (r.ip().is_unspecified()
                || addrs.contains(&r.ip())
                || (r.ip().is_loopback() && addrs.iter().any(|a| a.is_loopback())))
    }) {
        return Err(NetError::Refused(format!(
            "{name}:{port} is this server's own operator listener ({own})"
        )));
    }
    if !dev_local {
        if let Some(bad) = addrs
            .iter()
            .find(|ip| !is_public_ip(**ip) && !policy.exempt_addrs.contains(ip))
        {
            return Err(NetError::Refused(format!(
                "{name} resolves to a non-public address ({bad})"
            )));
        }
    }
    if name != url.host_str().unwrap_or_default() && !name.starts_with('[') {
        url.set_host(Some(&name))
            .map_err(|_| NetError::BadRequest("invalid host".into()))?;
    }
    if let Some(port) = policy.port_override {
        url.set_port(Some(port))
            .map_err(|_| NetError::BadRequest("invalid port".into()))?;
    }
    Ok(Target {
        url,
        host: name,
        addrs,
    })
}

/// Answers only for the checked name, with only the checked addresses, so the
/// connection cannot be re-resolved (no DNS rebinding between check and use).
struct PinnedResolver {
    host: String,
    addrs: Vec<IpAddr>,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let result: Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> =
            if name.as_str().eq_ignore_ascii_case(&self.host) {
                let addrs: Vec<SocketAddr> = self
                    .addrs
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 0))
                    .collect();
                Ok(Box::new(addrs.into_iter()))
            } else {
                Err("lookup of an unchecked name refused".into())
            };
        Box::pin(std::future::ready(result))
    }
}

fn client_for(
    target: &Target,
    policy: &NetworkPolicy,
    limits: &Limits,
) -> Result<reqwest::Client, NetError> {
    let mut builder = reqwest::Client::builder()
        // The run's deadline bounds the request, not reqwest's 30 s
        // TCP_USER_TIMEOUT, which one lost keepalive probe triggers.
        .tcp_user_timeout(None)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PinnedResolver {
            host: target.host.clone(),
            addrs: target.addrs.clone(),
        }))
        .timeout(Duration::from_millis(limits.http_timeout_ms))
        .connect_timeout(Duration::from_millis(limits.http_timeout_ms))
        .pool_max_idle_per_host(0)
        .user_agent(concat!("thetazero-sandbox/", env!("CARGO_PKG_VERSION")));
    for pem in &policy.extra_roots_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|_| NetError::Failed("invalid extra root certificate".into()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|_| NetError::Failed("could not build the HTTP client".into()))
}

/// Makes the request, following redirects only after the same checks, and
/// returns `{status, headers, body}` (body parsed when the response is JSON).
pub(crate) async fn http_request(
    call: HttpCall,
    rules: &HttpRules,
    policy: &NetworkPolicy,
) -> Result<Value, NetError> {
    validate_call(&call, &rules.limits)?;
    let mut url =
        Url::parse(&call.url).map_err(|e| NetError::BadRequest(format!("invalid URL: {e}")))?;
    let mut method = call.method;
    let mut body = call.body;
    let mut headers = call.headers;
    let mut hops = 0u64;
    loop {
        let target = check_target(&url, rules, policy).await?;
        let client = client_for(&target, policy, &rules.limits)?;
        let parsed_method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| NetError::BadRequest("invalid method".into()))?;
        let mut request = client.request(parsed_method, target.url.clone());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        let response = request.send().await.map_err(map_reqwest)?;
        let status = response.status();
        if status.is_redirection() {
            if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
                hops += 1;
                if hops > rules.limits.max_redirects {
                    return Err(NetError::Refused(format!(
                        "more than {} redirects",
                        rules.limits.max_redirects
                    )));
                }
                let location = location
                    .to_str()
                    .map_err(|_| NetError::Failed("invalid redirect location".into()))?;
                let next = url
                    .join(location)
                    .map_err(|_| NetError::Failed("invalid redirect location".into()))?;
                // A 303, or a 301/302 after POST, becomes a GET without a body
                // (what browsers do); 307/308 keep method and body.
                let code = status.as_u16();
                if code == 303 || ((code == 301 || code == 302) && method == "POST") {
                    method = "GET".into();
                    body = None;
                    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
                }
                if next.host_str() != url.host_str() {
                    headers.retain(|(k, _)| {
                        !k.eq_ignore_ascii_case("authorization")
                            && !k.eq_ignore_ascii_case("cookie")
                    });
                }
                url = next;
                continue;
            }
        }
        return read_response(response, &rules.limits).await;
    }
}

fn map_reqwest(e: reqwest::Error) -> NetError {
    if e.is_timeout() {
        NetError::Timeout
    } else if e.is_connect() {
        NetError::Failed("could not connect".into())
    } else {
        NetError::Failed("the request failed".into())
    }
}

async fn read_response(
    mut response: reqwest::Response,
    limits: &Limits,
) -> Result<Value, NetError> {
    let status = response.status().as_u16();
    let mut headers = Map::new();
    let mut header_bytes = 0usize;
    if response.headers().len() > MAX_RESPONSE_HEADERS {
        return Err(NetError::Failed("too many response headers".into()));
    }
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        header_bytes += name.as_str().len() + value.len();
        if header_bytes > MAX_RESPONSE_HEADER_BYTES {
            return Err(NetError::Failed("response headers too large".into()));
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
    let cap = limits.max_http_response_bytes;
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(NetError::ResponseTooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(map_reqwest)? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(NetError::ResponseTooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    let body = if is_json {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    } else {
        Value::String(String::from_utf8_lossy(&body).into_owned())
    };
    Ok(serde_json::json!({ "status": status, "headers": headers, "body": body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for (ip, public) in [
            ("93.184.215.14", true),
            ("8.8.8.8", true),
            ("2606:4700::1111", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::808:808", true),
            ("2002:808:808::1", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("172.32.0.1", true),
            ("192.168.0.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("100.128.0.1", true),
            ("0.1.2.3", false),
            ("192.0.0.8", false),
            ("192.0.2.1", false),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("198.51.100.1", false),
            ("203.0.113.1", false),
            ("224.0.0.1", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("::", false),
            ("::1", false),
            ("::127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b:1::1", false),
            ("2002:a00:1::1", false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),
            ("2001:db8::1", false),
            ("2001:2::1", false),
            ("3fff::1", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("100::1", false),
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public_ip(addr), public, "{ip}");
        }
    }

    #[test]
    fn allow_list_matching() {
        let allowed = vec!["api.example.com".to_string(), "*.corp.example".to_string()];
        for (host, ok) in [
            ("api.example.com", true),
            ("example.com", false),
            ("x.api.example.com", false),
            ("a.corp.example", true),
            ("a.b.corp.example", true),
            ("corp.example", false),
            ("evilcorp.example", false),
            (".corp.example", false),
        ] {
            assert_eq!(domain_allowed(host, &allowed), ok, "{host}");
        }
    }
}
