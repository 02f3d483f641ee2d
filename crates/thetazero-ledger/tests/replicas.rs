//! Several replicas sign checkpoints of the same logs: each server process
//! has its own `Ledger` over the shared store, and each must go on signing
//! after another replica signed a newer checkpoint.

use std::sync::Arc;

use thetazero_core::audit::{AuditEvent, AuditRecord};
use thetazero_core::model::AccountId;
use thetazero_core::store::Store;
use thetazero_ledger::Ledger;
use thetazero_store_sqlite::SqliteStore;

async fn append(store: &Arc<dyn Store>, account: AccountId, n: usize) -> Vec<AuditRecord> {
    store
        .append_audit(
            (0..n)
                .map(|i| AuditEvent::named(account, "api_call", "host_call", format!("call {i}")))
                .collect(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn replicas_sign_in_turn_over_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let account = store.create_account("a").await.unwrap().id;
    let signer = thetazero_audit::AuditSigner::generate("replicas.test").unwrap();
    let key = signer.to_key_string();
    let a = Ledger::new(store.clone(), &key, "replicas.test").unwrap();
    let b = Ledger::new(store.clone(), &key, "replicas.test").unwrap();
    let mut sizes = Vec::new();
    // Each replica signs in turn, after the log grew and the other signed.
    for (round, ledger) in [&a, &b, &a, &b, &b, &a].into_iter().enumerate() {
        append(&store, account, 3 + round).await;
        let signed = ledger
            .checkpoint_all()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(signed, 1, "round {round}");
        sizes.push(
            store
                .latest_checkpoint(account)
                .await
                .unwrap()
                .expect("a checkpoint")
                .size,
        );
    }
    assert_eq!(sizes, vec![3, 7, 12, 18, 25, 33]);
    // A record proof signs a checkpoint when the log grew: either replica
    // serves one, after the other signed last.
    let records = append(&store, account, 2).await;
    for (i, ledger) in [&b, &a, &b].into_iter().enumerate() {
        append(&store, account, 1).await;
        let proof = ledger
            .record_proof(account, records[0].id)
            .await
            .unwrap_or_else(|e| panic!("proof {i}: {e}"));
        assert_eq!(proof.leaf_index, records[0].leaf_index);
        // Whichever replica signed what, a client verifies it with the
        // deployment's one key.
        thetazero_audit::verify_record_proof(&proof, &signer.verifier_key(), None)
            .unwrap_or_else(|e| panic!("proof {i}: {e}"));
    }
}
