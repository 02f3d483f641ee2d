//! The role setup in docs/postgres-roles.sql, run as written (with names made
//! unique): the owner migrates, the application works, and the application
//! role cannot change or remove audit records. Must drop every role it makes.

mod common;

use common::{connect, Schema};
use thetazero_core::audit::AuditEvent;
use thetazero_core::store::Store;
use thetazero_store_postgres::{parse_url, PgOptions, PgStore};
use tokio_postgres::error::SqlState;

const DOC: &str = include_str!("../docs/postgres-roles.sql");

fn part<'a>(doc: &'a str, marker: &str) -> &'a str {
    let start = doc.find(marker).expect("marker present") + marker.len();
    let rest = &doc[start..];
    match rest.find("-- [") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_can_only_append_to_the_audit_log() {
    // The guard's schema is replaced by the one the doc creates; the guard
    // still drops the schema and the roles afterwards.
    let mut guard = Schema::create().await;
    let suffix = guard.name.trim_start_matches("tz_test_").to_string();
    let owner = format!("tz_owner_{suffix}");
    let app = format!("tz_app_{suffix}");
    let schema = format!("tz_roles_{suffix}");
    let rename = |sql: &str| {
        sql.replace("thetazero_owner", &owner)
            .replace("thetazero_app", &app)
            .replace("thetazero.", &format!("{schema}."))
            .replace("SCHEMA thetazero", &format!("SCHEMA {schema}"))
            .replace(
                "search_path = thetazero",
                &format!("search_path = {schema}"),
            )
    };
    let superuser = connect(&parse_url(&common::base_url()).unwrap()).await;
    superuser
        .batch_execute(&format!("DROP SCHEMA {}", guard.name))
        .await
        .unwrap();
    guard.name = schema.clone();
    guard.roles = vec![app.clone(), owner.clone()];
    superuser
        .batch_execute(&rename(part(DOC, "-- [setup]")))
        .await
        .unwrap();

    let as_role = |role: &str| {
        let mut config = parse_url(&common::base_url()).unwrap();
        config.user(role);
        config
    };
    // The owner's first start applies the migrations; then its grants.
    PgStore::connect_config(as_role(&owner), PgOptions::default())
        .await
        .unwrap();
    connect(&as_role(&owner))
        .await
        .batch_execute(&rename(part(DOC, "-- [grants]")))
        .await
        .unwrap();

    // The application starts (no migration pending) and does its work.
    let store = PgStore::connect_config(as_role(&app), PgOptions::default())
        .await
        .unwrap();
    let boot = store
        .bootstrap(
            "first",
            thetazero_core::model::NewKey {
                account_id: thetazero_core::model::AccountId::new(0),
                name: "owner".into(),
                prefix: "tzk_0000".into(),
                hash: [1; 32],
                scopes: vec![],
                is_owner: true,
                created_by: None,
            },
        )
        .await
        .unwrap();
    assert!(boot.is_some());
    let account = store.create_account("a").await.unwrap().id;
    store
        .append_audit(vec![AuditEvent::named(
            account,
            "agent_created",
            "agent",
            "x",
        )
        .payload(serde_json::json!({"k": 1}))])
        .await
        .unwrap();
    let (agent, _) = store
        .upsert_agent(
            account,
            thetazero_core::model::AgentSpec {
                name: "x".into(),
                version: "1.0.0".into(),
                description: String::new(),
                status: thetazero_core::model::AgentStatus::Ready,
                entry_code: "return 1;".into(),
                config: thetazero_core::AgentConfig::default(),
                permissions: thetazero_core::Permissions::None,
            },
        )
        .await
        .unwrap();
    let id = store.reserve_execution_id(account).await.unwrap();
    store
        .create_execution(
            id,
            thetazero_core::model::NewExecution {
                account_id: account,
                agent_id: agent.id,
                agent_version: "1.0.0".into(),
                code_sha256: "ab".repeat(32),
                input: serde_json::json!({}),
                key_id: None,
                parent_execution_id: None,
            },
            AuditEvent::named(account, "execution_started", "execution", "x"),
        )
        .await
        .unwrap();
    store.store_checkpoint(account, 2, "note").await.unwrap();
    store
        .storage_put(account, "k", &serde_json::json!(1))
        .await
        .unwrap();

    // As the application role, rewriting the log is refused by privilege
    // before any trigger runs, and so is disabling the triggers.
    let client = connect(&as_role(&app)).await;
    for sql in [
        "UPDATE audit_events SET description = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DELETE FROM audit_leaves",
        "UPDATE audit_hashes SET hash = hash",
        "TRUNCATE audit_checkpoints",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_delete",
        "INSERT INTO schema_migrations (name) VALUES ('9999_forged')",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        let code = err.code().cloned();
        assert!(
            code == Some(SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err:?}"
        );
    }
    let n: i64 = client
        .query_one("SELECT COUNT(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}
