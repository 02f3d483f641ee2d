//! Command-hook anchor against the scripts in tests/hooks: the note reaches
//! the hook intact, failures carry the stderr tail, hangs are killed at the
//! timeout, floods are capped. Must not run anything through a shell
//! command line: the scripts are passed to /bin/sh as a file.

// Tests may unwrap: a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use thetazero_anchor::{
    build, Anchor, AnchorConfig, AnchorError, AnchorRequest, CommandAnchor, STDERR_TAIL_BYTES,
    STDOUT_LIMIT_BYTES,
};

fn hook(name: &str) -> String {
    format!("{}/tests/hooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("anchor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn anchor(script: &str, extra: &[&str], timeout_ms: u64) -> Arc<dyn Anchor> {
    let mut args = vec![hook(script)];
    args.extend(extra.iter().map(|s| s.to_string()));
    build(&AnchorConfig::Command {
        program: "/bin/sh".into(),
        args,
        timeout_ms: Some(timeout_ms),
    })
    .unwrap()
}

fn request() -> AnchorRequest {
    // Not a real signed note: the command anchor passes the text through
    // untouched, which is what is checked here.
    let note = "tz.example/audit/1\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— tz.example/audit/1 c2ln\n";
    AnchorRequest {
        origin: "tz.example/audit/1".into(),
        checkpoint_note: note.into(),
        size: 7,
        previous_size: 3,
        consistency_proof: vec![[1; 32]],
    }
}

#[tokio::test]
async fn hook_gets_the_note_and_returns_a_reference() {
    let out = scratch("published-note");
    let a = anchor("publish.sh", &[out.to_str().unwrap()], 10_000);
    assert_eq!(a.kind(), "command");
    assert!(a.confirms());
    let req = request();
    let receipt = a.anchor(req.clone()).await.unwrap();

    assert_eq!(std::fs::read_to_string(&out).unwrap(), req.checkpoint_note);
    let want = format!("0x{:x}", Sha256::digest(req.checkpoint_note.as_bytes()));
    assert_eq!(receipt.external_ref.as_deref(), Some(want.as_str()));
    assert_eq!(receipt.cosignature, None);
    assert_eq!(receipt.detail["checkpoint_size"], 7);
    let env = std::fs::read_to_string(format!("{}.env", out.display())).unwrap();
    assert_eq!(env, "tz.example/audit/1 7 3\n");
}

#[tokio::test]
async fn non_zero_exit_carries_the_stderr_tail() {
    let err = anchor("fail.sh", &[], 10_000)
        .anchor(request())
        .await
        .unwrap_err();
    let AnchorError::CommandFailed {
        status,
        stderr_tail,
    } = &err
    else {
        panic!("want CommandFailed, got {err:?}");
    };
    assert_eq!(status, "exit status 3");
    assert!(
        stderr_tail.ends_with("fatal: chain rpc unreachable"),
        "{stderr_tail}"
    );
    // Only the tail is kept: the first noise lines are gone.
    assert!(stderr_tail.len() <= STDERR_TAIL_BYTES);
    assert!(!stderr_tail.contains("noise line 0\n"));
    assert!(err.is_retryable());
    assert_eq!(err.code(), "command_failed");
}

#[tokio::test]
async fn hanging_hook_is_killed_at_the_timeout() {
    let pidfile = scratch("hang.pid");
    let _ = std::fs::remove_file(&pidfile);
    let err = anchor("hang.sh", &[pidfile.to_str().unwrap()], 500)
        .anchor(request())
        .await
        .unwrap_err();
    assert_eq!(err, AnchorError::Timeout(Duration::from_millis(500)));
    assert!(err.is_retryable());
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    // Killed and reaped: the process no longer exists. Without /proc this
    // check would pass vacuously, so its absence fails the test.
    assert!(Path::new("/proc/self").exists(), "needs /proc");
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "hook {pid} still running"
    );
}

#[tokio::test]
async fn flooding_hook_is_capped_and_stopped() {
    // A generous timeout, so only the cap can end this.
    let err = anchor("flood.sh", &[], 60_000)
        .anchor(request())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AnchorError::CommandOutputTooLarge {
            limit: STDOUT_LIMIT_BYTES
        }
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn hook_without_output_or_program() {
    let err = anchor("silent.sh", &[], 10_000)
        .anchor(request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "command_bad_output");

    let missing = CommandAnchor::new(
        "/nonexistent/thetazero-hook".into(),
        vec![],
        Duration::from_secs(5),
    );
    let err = missing.anchor(request()).await.unwrap_err();
    assert_eq!(err.code(), "command_spawn");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn arguments_are_not_interpreted_by_a_shell() {
    // The argument reaches the hook as one literal word: `$(...)` and `;`
    // would run something if a shell parsed the command line.
    let out = scratch("literal; echo pwned $(id)");
    let a = anchor("publish.sh", &[out.to_str().unwrap()], 10_000);
    a.anchor(request()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        request().checkpoint_note
    );
}
