//! The verifiable audit log through the API: receipts, record proofs that a
//! client verifies by itself, checkpoints and consistency, exports that the
//! offline verifier accepts, and tampering with the database that the
//! verifier detects and names.

mod common;

use std::io::Cursor;

use common::{assert_error, TestApp};
use serde_json::{json, Value};
use thetazero_audit::{
    verify_bundle, verify_receipt, verify_record_proof, RecordProof, VerifierKey,
};

async fn busy_log(app: &TestApp) -> Vec<Value> {
    let code =
        "await thetazero.write_context('k', input.n); return await thetazero.read_context('k');";
    let id = app
        .call("POST", "/api/v1/sdk/agents", Some(&app.owner), Some(json!({"name": "busy", "entry_code": code, "permissions": ["data:read", "data:write"]})))
        .await
        .body["agent"]["id"]
        .as_i64()
        .unwrap();
    let mut executions = Vec::new();
    for n in 0..6 {
        let r = app
            .call(
                "POST",
                &format!("/api/v1/sdk/agents/{id}/execute"),
                Some(&app.owner),
                Some(json!({"input": {"n": n}})),
            )
            .await;
        assert_eq!(r.body["status"], "completed", "{}", r.body);
        executions.push(r.body);
        if n % 2 == 1 {
            app.ledger
                .checkpoint(thetazero_core::model::AccountId::new(1))
                .await
                .unwrap();
        }
    }
    executions
}

async fn verifier(app: &TestApp) -> VerifierKey {
    let r = app.call("GET", "/api/v1/sdk/audit/key", None, None).await;
    VerifierKey::parse(r.body["verifier_key"].as_str().unwrap()).unwrap()
}

async fn bundle(app: &TestApp) -> String {
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/export?format=bundle",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    match r.body {
        Value::String(s) => s,
        // A one-line bundle parses as JSON.
        other => format!("{other}\n"),
    }
}

#[tokio::test]
async fn every_event_and_execution_carries_a_receipt() {
    let app = TestApp::new().await;
    let executions = busy_log(&app).await;
    for e in &executions {
        assert!(e["leaf_index"].as_u64().is_some(), "{e}");
        assert_eq!(e["leaf_hash"].as_str().unwrap().len(), 44);
    }
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit?limit=1000",
            Some(&app.owner),
            None,
        )
        .await;
    let events = r.body["events"].as_array().unwrap();
    let indices: Vec<u64> = events
        .iter()
        .map(|e| e["leaf_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indices,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "contiguous from 0"
    );
    assert!(events
        .iter()
        .all(|e| e["leaf_hash"].as_str().is_some_and(|h| h.len() == 44)));
    // The execution's receipt is its final event's.
    let last = &executions[5];
    let event = events
        .iter()
        .find(|e| e["leaf_index"] == last["leaf_index"])
        .unwrap();
    assert_eq!(event["action_type"], "execution_completed");
    assert_eq!(event["leaf_hash"], last["leaf_hash"]);
    // A GET of the execution gives the same receipt.
    let detail = app
        .call(
            "GET",
            &format!(
                "/api/v1/sdk/agents/{}/executions/{}",
                last["agent_id"], last["execution_id"]
            ),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(detail.body["leaf_hash"], last["leaf_hash"]);
}

#[tokio::test]
async fn a_record_proof_verifies_on_the_client_and_tampering_does_not() {
    let app = TestApp::new().await;
    busy_log(&app).await;
    let key = verifier(&app).await;
    let events = app
        .call(
            "GET",
            "/api/v1/sdk/audit?limit=1000",
            Some(&app.owner),
            None,
        )
        .await
        .body["events"]
        .clone();
    for event in events.as_array().unwrap().iter().step_by(5) {
        let r = app
            .call(
                "GET",
                &format!("/api/v1/sdk/audit/records/{}/proof", event["id"]),
                Some(&app.owner),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["chain_valid"], true);
        assert_eq!(r.body["leaf_hash"], event["leaf_hash"]);
        let proof: RecordProof = serde_json::from_value(r.body.clone()).unwrap();
        let verified =
            verify_record_proof(&proof, &key, None).expect("verifies with the pinned key");
        let leaf = thetazero_audit::AuditLeaf::from_bytes(&verified.leaf).unwrap();
        assert_eq!(leaf.action_type, event["action_type"].as_str().unwrap());
        // A flipped leaf byte, or a key we do not trust, fails.
        let mut bad = r.body.clone();
        let leaf = bad["leaf_b64"].as_str().unwrap().to_string();
        let flipped = match leaf.strip_prefix('e') {
            Some(rest) => format!("f{rest}"),
            None => format!("e{}", &leaf[1..]),
        };
        bad["leaf_b64"] = json!(flipped);
        let bad: RecordProof = serde_json::from_value(bad).unwrap();
        assert!(verify_record_proof(&bad, &key, None).is_err());
        let stranger = thetazero_audit::AuditSigner::generate("test.thetazero")
            .unwrap()
            .verifier_key();
        assert!(verify_record_proof(&proof, &stranger, None).is_err());
    }
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/records/999999/proof",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
    let other = app.other_account().await;
    let first = events[0]["id"].as_i64().unwrap();
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/audit/records/{first}/proof"),
            Some(&other),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
}

#[tokio::test]
async fn checkpoints_are_signed_and_consistent() {
    let app = TestApp::new().await;
    busy_log(&app).await;
    let key = verifier(&app).await;
    let first = app
        .call(
            "GET",
            "/api/v1/sdk/audit/checkpoint",
            Some(&app.owner),
            None,
        )
        .await
        .body;
    let old = key
        .open_checkpoint(
            first["checkpoint"].as_str().unwrap(),
            Some(first["origin"].as_str().unwrap()),
        )
        .unwrap();
    busy_log_more(&app).await;
    let second = app
        .call(
            "GET",
            "/api/v1/sdk/audit/checkpoint",
            Some(&app.owner),
            None,
        )
        .await
        .body;
    let new = key
        .open_checkpoint(second["checkpoint"].as_str().unwrap(), None)
        .unwrap();
    assert!(new.size > old.size);
    let r = app
        .call(
            "GET",
            &format!(
                "/api/v1/sdk/audit/consistency?from={}&to={}",
                old.size, new.size
            ),
            Some(&app.owner),
            None,
        )
        .await;
    let proof: Vec<thetazero_audit::Hash> = r.body["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let bytes = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                h.as_str().unwrap(),
            )
            .unwrap();
            thetazero_audit::Hash(bytes.try_into().unwrap())
        })
        .collect();
    thetazero_audit::merkle::verify_consistency(&proof, old.size, old.root, new.size, new.root)
        .expect("the new tree extends the old");
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/consistency?from=5&to=999999",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}

async fn busy_log_more(app: &TestApp) {
    app.call(
        "POST",
        "/api/v1/keys",
        Some(&app.owner),
        Some(json!({"name": "more", "scopes": ["audit:read"]})),
    )
    .await;
}

#[tokio::test]
async fn the_exported_bundle_verifies_offline() {
    let app = TestApp::new().await;
    busy_log(&app).await;
    let key = verifier(&app).await;
    let text = bundle(&app).await;
    let report = verify_bundle(Cursor::new(text.as_bytes()), &key);
    assert!(report.is_valid(), "{:?}", report.findings);
    assert!(text.lines().count() > 40);
    // Pinned to another key, the same bundle fails.
    let stranger = thetazero_audit::AuditSigner::generate("test.thetazero")
        .unwrap()
        .verifier_key();
    assert!(!verify_bundle(Cursor::new(text.as_bytes()), &stranger).is_valid());
    // Filters belong to CSV.
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/export?format=bundle&from=2026-01-01",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/export?format=xml",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}

#[tokio::test]
async fn csv_export_is_for_review_and_defuses_formulas() {
    let app = TestApp::new().await;
    app.call(
        "POST",
        "/api/v1/sdk/agents",
        Some(&app.owner),
        Some(json!({"name": "x", "entry_code": "1", "description": "d"})),
    )
    .await;
    app.call(
        "POST",
        "/api/v1/keys",
        Some(&app.owner),
        Some(json!({"name": "=HYPERLINK(\"http://evil\")", "scopes": ["audit:read"]})),
    )
    .await;
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/export?format=csv",
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // Plain RFC 4180 CSV: the header row first; the notice rides beside it.
    assert!(r.headers["x-thetazero-notice"]
        .to_str()
        .unwrap()
        .contains("not verifiable on its own"));
    let text = r.body.as_str().unwrap();
    assert!(
        text.starts_with("leaf_index,leaf_hash,time,"),
        "{}",
        &text[..80.min(text.len())]
    );
    assert!(
        !text.contains(",=HYPERLINK"),
        "a formula cell must be defused: {text}"
    );
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/audit/export?format=csv&actionTypes=key_created",
            Some(&app.owner),
            None,
        )
        .await;
    let rows = r.body.as_str().unwrap().lines().count();
    assert_eq!(rows, 2, "header, one event");
}

#[tokio::test]
async fn execution_receipts_are_signed_and_bind_the_code() {
    let app = TestApp::new().await;
    let executions = busy_log(&app).await;
    let key = verifier(&app).await;
    let e = &executions[2];
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/executions/{}/verify", e["execution_id"]),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The isolation the run actually had, as the engine of this suite gives it.
    let expected = match common::engine_mode() {
        thetazero_runtime::sandbox::EngineMode::InProcess => "in_process",
        thetazero_runtime::sandbox::EngineMode::Process(_) => "process_sandbox",
    };
    assert_eq!(r.body["tee_mode"], expected);
    assert_eq!(r.body["chain_valid"], true);
    assert_eq!(r.body["code_sha256"], e["code_sha256"]);
    let verified =
        verify_receipt(r.body["receipt"].as_str().unwrap(), &key).expect("the receipt verifies");
    assert_eq!(
        verified.receipt.execution_id,
        e["execution_id"].as_i64().unwrap()
    );
    assert_eq!(
        verified.receipt.code_hash.to_hex(),
        e["code_sha256"].as_str().unwrap()
    );
    assert!(verified.receipt.audit_last_leaf >= verified.receipt.audit_first_leaf);
    assert_eq!(r.body["attestation_id"].as_str().unwrap().len(), 64);
    let r = app
        .call(
            "GET",
            "/api/v1/sdk/executions/424242/verify",
            Some(&app.owner),
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
}

/// Tampering with the database behind the server's back (triggers dropped or
/// bypassed, as an operator with direct access could) is caught by the
/// offline verifier, on either backend.
#[tokio::test]
async fn tampering_with_the_database_is_detected_and_named() {
    // (what, SQLite, PostgreSQL, the verifier's finding)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "change one byte of a leaf",
            "UPDATE audit_leaves SET leaf_bytes = CAST(replace(CAST(leaf_bytes AS TEXT), 'execution', 'executiox') AS BLOB) WHERE leaf_index = 3",
            "UPDATE audit_leaves SET leaf_bytes = convert_to(replace(convert_from(leaf_bytes, 'UTF8'), 'execution', 'executiox'), 'UTF8') WHERE leaf_index = 3",
            "checkpoint_root_mismatch",
        ),
        (
            "delete a middle row",
            "DELETE FROM audit_leaves WHERE leaf_index = 4",
            "DELETE FROM audit_leaves WHERE leaf_index = 4",
            "index_gap",
        ),
        (
            "reorder two rows",
            // SQLite keys a leaf by account and index packed in one integer.
            "UPDATE audit_leaves SET leaf_key = leaf_key + 1000000 WHERE leaf_index = 5;
             UPDATE audit_leaves SET leaf_key = leaf_key - 1 WHERE leaf_index = 6;
             UPDATE audit_leaves SET leaf_key = leaf_key - 999999 WHERE leaf_index = 1000005;",
            "UPDATE audit_leaves SET leaf_index = -1 WHERE leaf_index = 5;
             UPDATE audit_leaves SET leaf_index = 5 WHERE leaf_index = 6;
             UPDATE audit_leaves SET leaf_index = 6 WHERE leaf_index = -1;",
            "checkpoint_root_mismatch",
        ),
        (
            "corrupt a checkpoint's signature",
            "UPDATE audit_checkpoints SET note = replace(note, '— ', '— x') WHERE size = (SELECT MIN(size) FROM audit_checkpoints)",
            "UPDATE audit_checkpoints SET note = replace(note, '— ', '— x') WHERE size = (SELECT MIN(size) FROM audit_checkpoints)",
            "bad_signature",
        ),
    ];
    for (what, sqlite, postgres, finding) in cases {
        let app = TestApp::new().await;
        busy_log(&app).await;
        let key = verifier(&app).await;
        let clean = bundle(&app).await;
        assert!(
            verify_bundle(Cursor::new(clean.as_bytes()), &key).is_valid(),
            "{what}: clean first"
        );
        app.tamper(sqlite, postgres).await;
        let tampered = bundle(&app).await;
        let report = verify_bundle(Cursor::new(tampered.as_bytes()), &key);
        assert!(!report.is_valid(), "{what}: not detected");
        assert!(
            report.has(finding),
            "{what}: expected {finding}, found {:?}",
            report.findings
        );
    }
}

#[tokio::test]
async fn truncating_past_an_issued_receipt_is_detected() {
    let app = TestApp::new().await;
    let executions = busy_log(&app).await;
    let key = verifier(&app).await;
    let receipt = &executions[5];
    let keep = receipt["leaf_index"].as_i64().unwrap() - 2;
    let sql = format!(
        "DELETE FROM audit_leaves WHERE leaf_index >= {keep};
         DELETE FROM audit_checkpoints WHERE size > {keep};
         UPDATE audit_log_heads SET size = {keep};"
    );
    app.tamper(&sql, &sql).await;
    let mut text = bundle(&app).await;
    // The client adds the receipts it holds before verifying.
    text.push_str(&format!(
        "{}\n",
        json!({"type": "receipt", "leaf_index": receipt["leaf_index"], "leaf_hash": receipt["leaf_hash"]})
    ));
    let report = verify_bundle(Cursor::new(text.as_bytes()), &key);
    assert!(
        report.has("receipt_not_included") || report.has("receipt_not_covered"),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let app = TestApp::new().await;
    busy_log(&app).await;
    let key = verifier(&app).await;
    let first = "FROM audit_checkpoints ORDER BY size LIMIT 1";
    let size = app
        .query_text(&format!("SELECT CAST(size AS TEXT) {first}"))
        .await
        .remove(0);
    let note = app
        .query_text(&format!("SELECT note {first}"))
        .await
        .remove(0);
    // The same checkpoint body, signed by an impostor with the same key name.
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let impostor = thetazero_audit::AuditSigner::generate(key.name()).unwrap();
    let forged = impostor.sign_note(body.as_bytes()).unwrap();
    assert_ne!(forged, note);
    let sql = format!(
        "UPDATE audit_checkpoints SET note = '{}' WHERE size = {size}",
        forged.replace('\'', "''")
    );
    app.tamper(&sql, &sql).await;
    let report = verify_bundle(Cursor::new(bundle(&app).await.as_bytes()), &key);
    assert!(!report.is_valid());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.name.contains("signature") || f.name.contains("key")),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_forged_consistency_proof_in_an_exported_bundle_is_named() {
    let app = TestApp::new().await;
    busy_log(&app).await;
    let key = verifier(&app).await;
    let text = bundle(&app).await;
    let mut forged = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if !forged && v["type"] == "consistency" && !v["proof"].as_array().unwrap().is_empty() {
                // Replace the first hash of the proof with another valid-looking one.
                v["proof"][0] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
                forged = true;
            }
            v.to_string()
        })
        .collect();
    assert!(forged, "the bundle has a consistency proof to forge");
    let report = verify_bundle(Cursor::new(lines.join("\n").into_bytes()), &key);
    assert!(!report.is_valid());
    assert!(
        report.has("consistency_proof_invalid"),
        "{:?}",
        report.findings
    );
}
