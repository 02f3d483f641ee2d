//! `thetazero healthcheck`: GET /healthz of a running server, for a container
//! runtime's health check (the runtime image has no shell and no curl). It
//! speaks plain HTTP/1.1 to a loopback or private address and nothing else.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The server's base URL (http only). Default: the server's own
    /// THETAZERO_LISTEN, reached over loopback when it listens on every
    /// address; else http://127.0.0.1:8420.
    #[arg(long, env = "THETAZERO_HEALTHCHECK_URL")]
    pub url: Option<String>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// The URL of a server that listens on `listen` (`HOST:PORT`), as seen from
/// the same machine.
fn local_url(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        _ => format!("http://{listen}"),
    }
}

pub async fn check(args: HealthArgs) -> Result<()> {
    let url = args.url.clone().unwrap_or_else(|| {
        std::env::var("THETAZERO_LISTEN")
            .map(|l| local_url(&l))
            .unwrap_or_else(|_| "http://127.0.0.1:8420".into())
    });
    let authority = url
        .strip_prefix("http://")
        .context("--url must start with http://")?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("--url must be http://HOST:PORT");
    }
    let status = tokio::time::timeout(Duration::from_millis(args.timeout_ms), get(authority))
        .await
        .with_context(|| format!("{url} did not answer in {} ms", args.timeout_ms))??;
    if status != 200 {
        bail!("{url}/healthz answered {status}");
    }
    println!("ok");
    Ok(())
}

async fn get(authority: &str) -> Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    // The status line is all that is needed; a server that never sends one
    // is caught by the timeout.
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("the answer was not HTTP")?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_url_reaches_every_address_over_loopback() {
        for (listen, url) in [
            ("0.0.0.0:8420", "http://127.0.0.1:8420"),
            ("[::]:9000", "http://[::1]:9000"),
            ("10.0.0.5:8420", "http://10.0.0.5:8420"),
            ("localhost:8420", "http://localhost:8420"),
        ] {
            assert_eq!(super::local_url(listen), url);
        }
    }
}
