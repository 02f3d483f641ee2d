//! The real binary's listener against clients that do not finish: a request
//! head sent in part is cut off after `header_read_timeout_ms`, and the
//! server goes on serving everyone else.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Server;

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_request_head_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("thetazero.toml");
    std::fs::write(&config, "header_read_timeout_ms = 300\n").unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let addr = server.url.trim_start_matches("http://").to_string();

    // Slow clients: each sends part of a head and then nothing.
    let mut slow: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // Meanwhile a whole request is served.
    let body = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("ok"), "{body}");
    // Every slow connection is closed by the server (a read ends) rather
    // than left open; the generous cap only keeps a broken server from
    // hanging the test.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 512];
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!("the server left a half-sent request open: {e}"),
        };
        // Either closed outright or answered with an error status.
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 4"),
            "{text}"
        );
    }
    assert_eq!(server.stop().code(), Some(0));
}
