//! `thetazero healthcheck`: GET /healthz of a running server, for a container
//! runtime's health check (the runtime image has no shell and no curl). It
//! speaks plain HTTP/1.1 to a loopback or private address and nothing else.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The server's base URL (http only).
    #[arg(
        long,
        env = "THETAZERO_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:8420"
    )]
    pub url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

pub async fn check(args: HealthArgs) -> Result<()> {
    let authority = args
        .url
        .strip_prefix("http://")
        .context("--url must start with http://")?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("--url must be http://HOST:PORT");
    }
    let status = tokio::time::timeout(Duration::from_millis(args.timeout_ms), get(authority))
        .await
        .with_context(|| format!("{} did not answer in {} ms", args.url, args.timeout_ms))??;
    if status != 200 {
        bail!("{}/healthz answered {status}", args.url);
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
