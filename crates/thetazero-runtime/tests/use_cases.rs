//! The agent, permission-request and rate-limit use cases called directly,
//! as a CLI or the dashboard would call them: their rules hold and their
//! audit events are written without any HTTP layer in between.

use std::sync::Arc;

use serde_json::json;
use thetazero_core::audit::{AuditAction, AuditQuery};
use thetazero_core::model::{AgentStatus, ApiKey};
use thetazero_core::store::Store;
use thetazero_runtime::agents::{AgentError, Changes, Registration};
use thetazero_runtime::approvals::{ApprovalError, Decision, NewRequest, Relation};
use thetazero_runtime::keys::{generate_key, GeneratedKey};
use thetazero_runtime::rates::{Limited, RateLimits};
use thetazero_runtime::{Caller, Runtime, RuntimeConfig};
use thetazero_store_sqlite::SqliteStore;

struct Fixture {
    runtime: Runtime,
    store: Arc<dyn Store>,
    owner: ApiKey,
    _dir: tempfile::TempDir,
}

async fn fixture(config: RuntimeConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let generated: GeneratedKey = generate_key();
    let boot = store
        .bootstrap(
            "default",
            generated.owner(thetazero_core::model::AccountId::new(0), "owner"),
        )
        .await
        .unwrap()
        .expect("a fresh database");
    let runtime = Runtime::new(store.clone(), config).unwrap();
    Fixture {
        runtime,
        store,
        owner: boot.key,
        _dir: dir,
    }
}

fn registration(name: &str, code: &str) -> Registration {
    Registration {
        name: name.into(),
        entry_code: code.into(),
        ..Registration::default()
    }
}

async fn actions(f: &Fixture) -> Vec<String> {
    f.store
        .query_audit(
            f.owner.account_id,
            &AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.event.action_type)
        .collect()
}

#[tokio::test]
async fn registering_checks_its_rules_and_audits_once_per_change() {
    let f = fixture(RuntimeConfig::default()).await;
    let before = actions(&f).await;
    for (reg, needle) in [
        (registration("bad name", "return 1"), "field \"name\""),
        (registration("a", "  "), "must not be empty"),
        (registration("a", "return '\0'"), "NUL"),
        (
            Registration {
                version: Some("1\u{202E}0".into()),
                ..registration("a", "return 1")
            },
            "invisible",
        ),
        (
            Registration {
                status: Some("killed".into()),
                ..registration("a", "return 1")
            },
            "field \"status\"",
        ),
        (
            Registration {
                compliance: Some(vec!["hipaa".into()]),
                ..registration("a", "return 1")
            },
            "field \"compliance\"",
        ),
    ] {
        let e = f.runtime.register_agent(&f.owner, reg).await.unwrap_err();
        assert!(
            matches!(e, AgentError::Invalid(ref m) if m.contains(needle)),
            "{needle}: {e}"
        );
    }
    // The DEV template belongs to the accounts the operator names.
    let e = f
        .runtime
        .register_agent(
            &f.owner,
            Registration {
                config: Some(json!({"sandbox_template": "DEV"})),
                ..registration("dev", "return 1")
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::DevNotAllowed("config.sandbox_template")),
        "{e}"
    );
    // Nothing was stored or audited by a refusal.
    assert_eq!(actions(&f).await, before);

    let (agent, created) = f
        .runtime
        .register_agent(
            &f.owner,
            Registration {
                compliance: Some(vec!["soc2".into()]),
                ..registration("a", "return 1")
            },
        )
        .await
        .unwrap();
    assert!(created);
    let (again, created) = f
        .runtime
        .register_agent(&f.owner, registration("a", "return 2"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, agent.id);
    let e = f
        .runtime
        .change_agent(&f.owner, agent.id, Changes::default())
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Invalid(ref m) if m.contains("changes nothing")));
    f.runtime
        .change_agent(
            &f.owner,
            agent.id,
            Changes {
                description: Some("sums".into()),
                ..Changes::default()
            },
        )
        .await
        .unwrap();
    f.runtime.delete_agent(&f.owner, agent.id).await.unwrap();
    let e = f
        .runtime
        .delete_agent(&f.owner, agent.id)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::NotFound));
    let mut seen = actions(&f).await.split_off(before.len());
    seen.sort();
    let mut expected: Vec<String> = [
        AuditAction::AgentCreated,
        AuditAction::ComplianceFrameworksSet,
        AuditAction::AgentUpdated,
        AuditAction::AgentUpdated,
        AuditAction::AgentDeleted,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn the_evolution_rate_counts_new_code_per_name_across_deletes() {
    let f = fixture(RuntimeConfig {
        rates: RateLimits {
            code_updates_per_agent_per_hour: 2,
            ..RateLimits::default()
        },
        ..RuntimeConfig::default()
    })
    .await;
    let (agent, _) = f
        .runtime
        .register_agent(&f.owner, registration("evolving", "return 1"))
        .await
        .unwrap();
    // The same code again is not a change.
    f.runtime
        .register_agent(&f.owner, registration("evolving", "return 1"))
        .await
        .unwrap();
    f.runtime.delete_agent(&f.owner, agent.id).await.unwrap();
    f.runtime
        .register_agent(&f.owner, registration("evolving", "return 2"))
        .await
        .unwrap();
    let e = f
        .runtime
        .register_agent(&f.owner, registration("evolving", "return 3"))
        .await
        .unwrap_err();
    let AgentError::RateLimited(refused) = e else {
        panic!("expected a rate refusal, got {e}");
    };
    assert_eq!(refused.which, Limited::CodeUpdatesPerAgent);
    assert_eq!(refused.limit, 2);
    assert!(refused.retry_after_secs >= 1);
    // Another name has its own counter.
    f.runtime
        .register_agent(&f.owner, registration("other", "return 3"))
        .await
        .unwrap();
    assert!(actions(&f)
        .await
        .contains(&AuditAction::RateLimitHit.to_string()));
}

#[tokio::test]
async fn executions_asked_for_count_against_the_key_rate() {
    let f = fixture(RuntimeConfig {
        rates: RateLimits {
            executions_per_key_per_minute: 1,
            ..RateLimits::default()
        },
        ..RuntimeConfig::default()
    })
    .await;
    let (agent, _) = f
        .runtime
        .register_agent(&f.owner, registration("quick", "return 1"))
        .await
        .unwrap();
    let caller = Caller {
        account: f.owner.account_id,
        key_id: Some(f.owner.id),
    };
    let done = f
        .runtime
        .execute_requested(caller, agent.id, json!({}))
        .await
        .unwrap();
    assert_eq!(done.execution.output, Some(json!(1)));
    let e = f
        .runtime
        .execute_requested(caller, agent.id, json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, thetazero_runtime::RuntimeError::RateLimited(ref r) if r.which == Limited::ExecutionsPerKey),
        "{e}"
    );
}

#[tokio::test]
async fn a_killed_agent_s_status_is_the_kill_switch_s() {
    let f = fixture(RuntimeConfig::default()).await;
    let (agent, _) = f
        .runtime
        .register_agent(&f.owner, registration("stopped", "return 1"))
        .await
        .unwrap();
    let caller = Caller {
        account: f.owner.account_id,
        key_id: Some(f.owner.id),
    };
    f.runtime
        .kill_agent(caller, agent.id, "test".into())
        .await
        .unwrap();
    let (writer, _) = f
        .runtime
        .create_key(&f.owner, "writer".into(), &["agents:write".into()])
        .await
        .unwrap();
    let revive = || Changes {
        status: Some("ready".into()),
        ..Changes::default()
    };
    let e = f
        .runtime
        .change_agent(&writer, agent.id, revive())
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Killed), "{e}");
    // Re-registering the name does not revive it either.
    let (same, _) = f
        .runtime
        .register_agent(&writer, registration("stopped", "return 1"))
        .await
        .unwrap();
    assert_eq!(same.status, AgentStatus::Killed);
    let ready = f
        .runtime
        .change_agent(&f.owner, agent.id, revive())
        .await
        .unwrap();
    assert_eq!(ready.status, AgentStatus::Ready);
}

#[tokio::test]
async fn requests_are_decided_only_by_keys_outside_the_requester_s_line() {
    let f = fixture(RuntimeConfig::default()).await;
    let (agent, _) = f
        .runtime
        .register_agent(&f.owner, registration("asker", "return 1"))
        .await
        .unwrap();
    let scopes = [
        "agents:write".to_string(),
        "approvals".to_string(),
        "keys".to_string(),
    ];
    let (requester, _) = f
        .runtime
        .create_key(&f.owner, "requester".into(), &scopes)
        .await
        .unwrap();
    let (child, _) = f
        .runtime
        .create_key(&requester, "child".into(), &scopes)
        .await
        .unwrap();
    let ask = || NewRequest {
        agent_id: agent.id,
        permissions: json!({"scopes": ["storage:read"]}),
        justification: "reads its notes".into(),
        timeout_ms: Some(60_000),
    };
    let e = f
        .runtime
        .request_permissions(
            &requester,
            NewRequest {
                timeout_ms: Some(0),
                ..ask()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApprovalError::Invalid(ref m) if m.contains("timeout_ms")));
    let request = f
        .runtime
        .request_permissions(&requester, ask())
        .await
        .unwrap();
    for key in [&requester, &child] {
        let e = f
            .runtime
            .decide_permission_request(key, request.id, true, Decision::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ApprovalError::Forbidden(_)), "{e}");
    }
    let (decided, relation) = f
        .runtime
        .decide_permission_request(&f.owner, request.id, true, Decision::default())
        .await
        .unwrap();
    assert_eq!(relation, Relation::Ancestor);
    assert_eq!(
        decided.status,
        thetazero_core::model::PermissionRequestStatus::Approved
    );
    let e = f
        .runtime
        .decide_permission_request(&f.owner, request.id, false, Decision::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ApprovalError::NotPending(_)), "{e}");

    // The operator may forbid ancestors too.
    let f = fixture(RuntimeConfig {
        approvals_forbid_ancestors: true,
        ..RuntimeConfig::default()
    })
    .await;
    let (agent, _) = f
        .runtime
        .register_agent(&f.owner, registration("asker", "return 1"))
        .await
        .unwrap();
    let (requester, _) = f
        .runtime
        .create_key(&f.owner, "requester".into(), &scopes)
        .await
        .unwrap();
    let request = f
        .runtime
        .request_permissions(
            &requester,
            NewRequest {
                agent_id: agent.id,
                ..ask()
            },
        )
        .await
        .unwrap();
    let e = f
        .runtime
        .decide_permission_request(&f.owner, request.id, true, Decision::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ApprovalError::Forbidden(m) if m.contains("approvals_forbid_ancestors")));
}
