//! Anchoring checkpoints through the ledger with a command hook: confirmed
//! anchors fill `anchor_tx_hash` in record proofs and mark the log anchored;
//! a failing hook is recorded as failed and retried after its backoff; an
//! unchanged checkpoint is anchored again once the interval passes.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thetazero_anchor::{CommandAnchor, Heartbeat};
use thetazero_core::audit::AuditEvent;
use thetazero_core::store::Store;
use thetazero_ledger::Ledger;
use thetazero_store_sqlite::SqliteStore;

fn hook(dir: &std::path::Path, body: &str) -> PathBuf {
    let path = dir.join("hook.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn setup(
    body: &str,
) -> (
    Arc<dyn Store>,
    Ledger,
    thetazero_core::model::AccountId,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let account = store.create_account("a").await.unwrap().id;
    store
        .append_audit(
            (0..5)
                .map(|i| AuditEvent::named(account, "api_call", "host_call", format!("call {i}")))
                .collect(),
        )
        .await
        .unwrap();
    let signer = thetazero_audit::AuditSigner::generate("anchor.test").unwrap();
    let program = hook(dir.path(), body);
    let anchor = Arc::new(CommandAnchor::new(program, vec![], Duration::from_secs(10)));
    let ledger = Ledger::new(store.clone(), &signer.to_key_string(), "anchor.test")
        .unwrap()
        .with_anchor(anchor);
    (store, ledger, account, dir)
}

#[tokio::test]
async fn a_confirmed_anchor_fills_anchor_tx_hash() {
    // The hook reads the checkpoint note and answers a reference derived from it.
    let (store, ledger, account, dir) =
        setup("cat > \"$0.note\"; echo 0x$(sha256sum \"$0.note\" | cut -c1-16)").await;
    assert!(!ledger.anchored(account).await.unwrap());
    let confirmed = ledger
        .anchor_round(&Heartbeat::new(Duration::from_secs(300)))
        .await
        .unwrap();
    assert_eq!(confirmed, 1);
    assert!(ledger.anchored(account).await.unwrap());
    let note = std::fs::read_to_string(dir.path().join("hook.sh.note")).unwrap();
    let latest = store.latest_checkpoint(account).await.unwrap().unwrap();
    assert_eq!(note, latest.note, "the hook received the signed checkpoint");
    let first = store
        .audit_record(account, thetazero_core::model::AuditRecordId::new(1))
        .await
        .unwrap()
        .unwrap();
    let proof = ledger.record_proof(account, first.id).await.unwrap();
    let tx = proof
        .anchor_tx_hash
        .clone()
        .expect("anchor_tx_hash is filled");
    assert!(tx.starts_with("0x") && tx.len() == 18, "{tx}");
    assert_eq!(proof.anchors.len(), 1);
    assert_eq!(proof.anchors[0].status, "confirmed");
    assert_eq!(proof.anchors[0].checkpoint_size, 5);
    // Nothing new and the interval not passed: nothing to do.
    assert_eq!(
        ledger
            .anchor_round(&Heartbeat::new(Duration::from_secs(300)))
            .await
            .unwrap(),
        0
    );
    // The log grows: anchoring waits for the interval (a chain transaction
    // every five minutes, not one per event), then takes the new checkpoint.
    store
        .append_audit(vec![AuditEvent::named(
            account,
            "api_call",
            "host_call",
            "more",
        )])
        .await
        .unwrap();
    assert_eq!(
        ledger
            .anchor_round(&Heartbeat::new(Duration::from_secs(300)))
            .await
            .unwrap(),
        0
    );
    assert!(
        !ledger.anchored(account).await.unwrap(),
        "the newest checkpoint is not anchored yet"
    );
    assert_eq!(
        ledger
            .anchor_round(&Heartbeat::new(Duration::ZERO))
            .await
            .unwrap(),
        1
    );
    assert!(ledger.anchored(account).await.unwrap());
    let bundle = String::from_utf8(ledger.bundle_bytes(account).await.unwrap()).unwrap();
    assert_eq!(bundle.matches("\"type\":\"anchor\"").count(), 2);
    let report =
        thetazero_audit::verify_bundle(std::io::Cursor::new(bundle), ledger.verifier_key());
    assert!(report.is_valid(), "{:?}", report.findings);
}

#[tokio::test]
async fn a_failing_hook_is_recorded_and_retried_after_its_backoff() {
    let (store, ledger, account, dir) = setup("echo 'chain unreachable' >&2; exit 3").await;
    let heartbeat = Heartbeat::new(Duration::from_secs(300));
    assert_eq!(ledger.anchor_round(&heartbeat).await.unwrap(), 0);
    let last = store
        .last_anchor(account, "command")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.status.as_str(), last.failures), ("failed", 1));
    assert!(last.retryable);
    assert!(last.detail.to_string().contains("chain unreachable"));
    assert!(!ledger.anchored(account).await.unwrap());
    // Within the backoff, nothing is tried.
    assert_eq!(ledger.anchor_round(&heartbeat).await.unwrap(), 0);
    assert_eq!(
        store
            .last_anchor(account, "command")
            .await
            .unwrap()
            .unwrap()
            .failures,
        1
    );
    // The hook recovers; with no backoff left the retry confirms.
    hook(dir.path(), "echo 0xrecovered");
    let eager = Heartbeat {
        retry_initial: Duration::ZERO,
        ..Heartbeat::new(Duration::from_secs(300))
    };
    assert_eq!(ledger.anchor_round(&eager).await.unwrap(), 1);
    let last = store
        .last_anchor(account, "command")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (last.status.as_str(), last.external_ref.as_deref()),
        ("confirmed", Some("0xrecovered"))
    );
}

#[tokio::test]
async fn an_idle_log_is_anchored_again_after_the_interval() {
    let (store, ledger, account, _dir) = setup("echo 0xsame").await;
    assert_eq!(
        ledger
            .anchor_round(&Heartbeat::new(Duration::from_secs(300)))
            .await
            .unwrap(),
        1
    );
    let before = store
        .last_anchor(account, "command")
        .await
        .unwrap()
        .unwrap()
        .updated_at;
    // An interval of zero: the unchanged checkpoint is due at once.
    assert_eq!(
        ledger
            .anchor_round(&Heartbeat::new(Duration::ZERO))
            .await
            .unwrap(),
        1
    );
    let after = store
        .last_anchor(account, "command")
        .await
        .unwrap()
        .unwrap()
        .updated_at;
    assert!(
        after > before,
        "silence is visible: the same checkpoint was anchored again"
    );
}
