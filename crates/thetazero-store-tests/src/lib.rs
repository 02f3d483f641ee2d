//! The conformance suite for `Store` implementations.
//!
//! Each case is one async function over `Arc<dyn Store>`; a backend runs them
//! all with `store_conformance!(factory)`, where `factory` is an async
//! expression yielding a fresh, empty store (and whatever guard keeps it
//! alive). Backends must behave identically: these cases are the contract.

use std::sync::Arc;

use serde_json::json;
use thetazero_core::audit::{AuditEvent, AuditQuery};
use thetazero_core::model::{
    AccountId, AgentId, AgentPatch, AgentSpec, AgentStatus, ApiKey, ExecutionId, ExecutionOutcome,
    ExecutionStatus, KeyId, NewExecution, NewKey, PageRequest, PermissionRequestStatus,
};
use thetazero_core::store::{Store, StoreError};
use thetazero_core::{AgentConfig, Ceilings, KeyScope, Permissions, Preset};

/// Runs every case against the backend made by `$factory`, one test each.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::store_conformance!(@cases $factory;
            bootstrap_happens_once, ids_are_numbered_per_account, keys_round_trip_and_revoke, last_key_managers_race, agents_upsert_by_name,
            agents_are_scoped_by_account, agents_paginate, agent_updates_apply_only_given_fields,
            context_round_trips_and_goes_with_its_agent, audit_indices_are_contiguous_per_account,
            audit_queries_filter, concurrent_writes_all_land, failed_write_does_not_spoil_its_batch,
            executions_start_finish_and_list, executions_go_with_their_agent, storage_is_per_account,
            audit_leaves_and_hashes_form_the_log, checkpoints_are_kept_and_found,
            anchors_move_from_pending_to_a_final_status, settings_are_set_cleared_and_audited,
            permission_requests_are_decided_once, pending_limits_hold_under_concurrency,
            rate_limits_admit_a_burst_then_refuse,
            rate_limits_hold_under_concurrency, concurrent_executions_commit_together_and_fail_alone);
    };
    (@cases $factory:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $factory.await;
                $crate::$case(store).await;
            }
        )*
    };
}

fn key(account: AccountId, byte: u8, owner: bool) -> NewKey {
    NewKey {
        account_id: account,
        name: format!("key-{byte}"),
        prefix: format!("tzk_{byte:08}"),
        hash: [byte; 32],
        scopes: vec![KeyScope::AgentsRead, KeyScope::Keys],
        is_owner: owner,
        created_by: None,
    }
}

fn spec(name: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        version: "1.0.0".into(),
        description: String::new(),
        status: AgentStatus::Ready,
        entry_code: "return 1;".into(),
        config: AgentConfig::default(),
        permissions: Permissions::None,
    }
}

fn event(account: AccountId, action: &str) -> AuditEvent {
    AuditEvent::named(account, action, "test", action.to_string())
}

pub async fn bootstrap_happens_once(store: Arc<dyn Store>) {
    // Two starts racing: exactly one creates the account.
    let (a, b) = tokio::join!(
        store.bootstrap("first", key(AccountId::new(0), 1, true)),
        store.bootstrap("second", key(AccountId::new(0), 2, true))
    );
    let created: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(created.len(), 1);
    let boot = &created[0];
    assert_eq!(
        store.first_account_id().await.unwrap(),
        Some(boot.account.id)
    );
    assert_eq!(boot.key.account_id, boot.account.id);
    assert!(boot.key.is_owner);
    assert!(store
        .bootstrap("third", key(AccountId::new(0), 3, true))
        .await
        .unwrap()
        .is_none());
}

/// Agents, executions, keys and permission requests are numbered within their
/// account: one account's activity never shows in another's ids, which stay
/// within JavaScript's safe integers.
pub async fn ids_are_numbered_per_account(store: Arc<dyn Store>) {
    use thetazero_core::model::id_range;
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    let (b_first, _) = store.upsert_agent(b.id, spec("first")).await.unwrap();
    for i in 0..5 {
        store
            .upsert_agent(a.id, spec(&format!("a{i}")))
            .await
            .unwrap();
        store.reserve_execution_id(a.id).await.unwrap();
    }
    let (b_second, _) = store.upsert_agent(b.id, spec("second")).await.unwrap();
    assert_eq!(
        b_second.id.get(),
        b_first.id.get() + 1,
        "a's activity is not in b's ids"
    );
    let x = store.reserve_execution_id(b.id).await.unwrap();
    let y = store.reserve_execution_id(b.id).await.unwrap();
    assert_eq!(y.get(), x.get() + 1);
    for (account, id) in [(b.id, b_first.id.get()), (b.id, x.get())] {
        let (lo, hi) = id_range(account);
        assert!(id > lo && id < hi, "{id} in {lo}..{hi}");
        assert!(id < (1i64 << 53));
    }
    let kb1 = store
        .create_key(NewKey {
            account_id: b.id,
            ..key(b.id, 61, false)
        })
        .await
        .unwrap();
    store
        .create_key(NewKey {
            account_id: a.id,
            ..key(a.id, 62, false)
        })
        .await
        .unwrap();
    let kb2 = store
        .create_key(NewKey {
            account_id: b.id,
            ..key(b.id, 63, false)
        })
        .await
        .unwrap();
    assert_eq!(kb2.id.get(), kb1.id.get() + 1);
    // Lookups are by (account, id): the same number in another account is
    // another row or none.
    assert!(store.get_agent(a.id, b_first.id).await.unwrap().is_none());
}

pub async fn keys_round_trip_and_revoke(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    let created = store.create_key(key(account.id, 7, false)).await.unwrap();
    assert_eq!(created.scopes, vec![KeyScope::AgentsRead, KeyScope::Keys]);
    let (found, hash) = store.find_key_by_hash(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(found, created);
    assert_eq!(hash, [7; 32]);
    assert!(store.find_key_by_hash(&[8; 32]).await.unwrap().is_none());
    // A second key with the same hash is a conflict, not a silent overwrite.
    assert!(matches!(
        store.create_key(key(account.id, 7, false)).await,
        Err(StoreError::Conflict(_))
    ));
    let other = store.create_account("b").await.unwrap();
    assert!(store
        .revoke_key(other.id, created.id)
        .await
        .unwrap()
        .is_none());
    assert!(store.get_key(other.id, created.id).await.unwrap().is_none());
    // The account's only key that can manage keys stays.
    assert!(matches!(
        store.revoke_key(account.id, created.id).await,
        Err(StoreError::LastKeyManager(_))
    ));
    assert!(store
        .get_key(account.id, created.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    let second = store.create_key(key(account.id, 9, false)).await.unwrap();
    let revoked = store
        .revoke_key(account.id, created.id)
        .await
        .unwrap()
        .unwrap();
    let first_revocation = revoked.revoked_at.unwrap();
    let again = store
        .revoke_key(account.id, created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(first_revocation),
        "revoking twice keeps the first time"
    );
    let at = time::OffsetDateTime::now_utc();
    store.touch_key(created.id, at).await.unwrap();
    let touched = store
        .get_key(account.id, created.id)
        .await
        .unwrap()
        .unwrap();
    assert!(touched.last_used_at.is_some());
    // Now `second` is the last one; a revoked key does not count. Neither
    // revoking it nor taking its keys scope is allowed; other changes are.
    assert!(matches!(
        store.revoke_key(account.id, second.id).await,
        Err(StoreError::LastKeyManager(_))
    ));
    let no_audit = || thetazero_core::store::no_audit::<(ApiKey, ApiKey)>();
    assert!(matches!(
        store
            .set_key_scopes_audited(
                account.id,
                second.id,
                vec![KeyScope::AgentsRead],
                no_audit()
            )
            .await,
        Err(StoreError::LastKeyManager(_))
    ));
    let widened = store
        .set_key_scopes_audited(
            account.id,
            second.id,
            vec![KeyScope::AgentsRead, KeyScope::AuditRead, KeyScope::Keys],
            no_audit(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(widened.scopes.len(), 3);
    // A revoked key's scopes stay as they were; another account's key is absent.
    assert!(matches!(
        store
            .set_key_scopes_audited(account.id, created.id, vec![KeyScope::Keys], no_audit())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .set_key_scopes_audited(other.id, second.id, vec![KeyScope::Keys], no_audit())
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.list_keys(account.id).await.unwrap().len(), 2);
    assert_eq!(store.list_keys(other.id).await.unwrap().len(), 0); // The key that made a key is kept with it.
    let child = store
        .create_key(NewKey {
            created_by: Some(created.id),
            scopes: vec![KeyScope::AgentsRead],
            ..key(account.id, 19, false)
        })
        .await
        .unwrap();
    assert_eq!(child.created_by, Some(created.id));
    assert_eq!(
        store
            .get_key(account.id, child.id)
            .await
            .unwrap()
            .unwrap()
            .created_by,
        Some(created.id)
    );
    assert_eq!(created.created_by, None);
}

/// Two revocations at once of an account's two keys that can manage keys:
/// exactly one lands, whatever the interleaving.
pub async fn last_key_managers_race(store: Arc<dyn Store>) {
    for round in 0..5u8 {
        let account = store.create_account("race").await.unwrap();
        let a = store
            .create_key(key(account.id, 100 + 2 * round, true))
            .await
            .unwrap();
        let b = store
            .create_key(key(account.id, 101 + 2 * round, false))
            .await
            .unwrap();
        let (s1, s2) = (store.clone(), store.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { s1.revoke_key(account.id, a.id).await }),
            tokio::spawn(async move { s2.revoke_key(account.id, b.id).await }),
        );
        let results = [ra.unwrap(), rb.unwrap()];
        let landed = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastKeyManager(_))))
            .count();
        assert_eq!((landed, refused), (1, 1), "round {round}: {results:?}");
        let live = store
            .list_keys(account.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .count();
        assert_eq!(live, 1);
    }
}

pub async fn agents_upsert_by_name(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    let (first, created) = store.upsert_agent(account.id, spec("x")).await.unwrap();
    assert!(created);
    let mut changed = spec("x");
    changed.version = "2.0.0".into();
    changed.permissions = Permissions::Preset(Preset::Coder);
    changed.config = AgentConfig::from_json(
        &json!({"memory_limit_mb": 256, "allowed_domains": ["a.example"]}),
        &Ceilings::default(),
    )
    .unwrap();
    let (second, created) = store
        .upsert_agent(account.id, changed.clone())
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(second.id, first.id);
    assert_eq!(second.version, "2.0.0");
    assert_eq!(second.permissions, changed.permissions);
    assert_eq!(second.config, changed.config);
    assert_eq!(
        store
            .get_agent(account.id, first.id)
            .await
            .unwrap()
            .unwrap(),
        second
    );
    assert_eq!(
        store.get_agent_by_name(account.id, "x").await.unwrap(),
        Some(second)
    );
    assert_eq!(
        store.get_agent_by_name(account.id, "y").await.unwrap(),
        None
    );
    let other = store.create_account("b").await.unwrap();
    assert_eq!(
        store.get_agent_by_name(other.id, "x").await.unwrap(),
        None,
        "names are per account"
    );
}

pub async fn agents_are_scoped_by_account(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    let (agent, _) = store.upsert_agent(a.id, spec("x")).await.unwrap();
    let (theirs, created) = store.upsert_agent(b.id, spec("x")).await.unwrap();
    assert!(created, "the same name in another account is another agent");
    assert_ne!(theirs.id, agent.id);
    assert!(store.get_agent(b.id, agent.id).await.unwrap().is_none());
    assert!(store
        .update_agent(
            b.id,
            agent.id,
            AgentPatch {
                version: Some("9".into()),
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_none());
    assert!(!store.delete_agent(b.id, agent.id).await.unwrap());
    assert!(store
        .get_context(b.id, agent.id, "k")
        .await
        .unwrap()
        .is_none());
    assert!(!store.delete_context(b.id, agent.id, "k").await.unwrap());
    assert!(store
        .put_context(b.id, agent.id, "k", &json!(1))
        .await
        .is_err());
    assert_eq!(
        store
            .get_agent(a.id, agent.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        "1.0.0"
    );
}

pub async fn agents_paginate(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    for i in 0..7 {
        store
            .upsert_agent(account.id, spec(&format!("a{i}")))
            .await
            .unwrap();
    }
    let page = |page, limit| PageRequest { page, limit };
    let names = |p: thetazero_core::model::Page<thetazero_core::model::Agent>| {
        (
            p.total,
            p.items.into_iter().map(|a| a.name).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        names(store.list_agents(account.id, page(1, 3)).await.unwrap()),
        (7, vec!["a0".into(), "a1".into(), "a2".into()])
    );
    assert_eq!(
        names(store.list_agents(account.id, page(3, 3)).await.unwrap()),
        (7, vec!["a6".into()])
    );
    assert_eq!(
        names(store.list_agents(account.id, page(4, 3)).await.unwrap()),
        (7, vec![])
    );
    assert_eq!(
        names(
            store
                .list_agents(account.id, page(u64::MAX, 100))
                .await
                .unwrap()
        ),
        (7, vec![])
    );
}

pub async fn agent_updates_apply_only_given_fields(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    let (agent, _) = store.upsert_agent(account.id, spec("x")).await.unwrap();
    let updated = store
        .update_agent(
            account.id,
            agent.id,
            AgentPatch {
                status: Some(AgentStatus::Disabled),
                entry_code: Some("return 2;".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, AgentStatus::Disabled);
    assert_eq!(updated.entry_code, "return 2;");
    assert_eq!(updated.version, agent.version);
    assert_eq!(updated.created_at, agent.created_at);
    assert!(updated.updated_at >= agent.updated_at);
    assert!(store.delete_agent(account.id, agent.id).await.unwrap());
    assert!(store
        .get_agent(account.id, agent.id)
        .await
        .unwrap()
        .is_none());
}

pub async fn context_round_trips_and_goes_with_its_agent(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    let (agent, _) = store.upsert_agent(account.id, spec("x")).await.unwrap();
    for value in [
        json!(null),
        json!(1),
        json!("s"),
        json!({"a": [1, 2.5, {"b": null}]}),
    ] {
        store
            .put_context(account.id, agent.id, "k", &value)
            .await
            .unwrap();
        assert_eq!(
            store
                .get_context(account.id, agent.id, "k")
                .await
                .unwrap()
                .unwrap()
                .value,
            value
        );
    }
    assert!(store
        .delete_context(account.id, agent.id, "k")
        .await
        .unwrap());
    assert!(!store
        .delete_context(account.id, agent.id, "k")
        .await
        .unwrap());
    store
        .put_context(account.id, agent.id, "k", &json!(1))
        .await
        .unwrap();
    store.delete_agent(account.id, agent.id).await.unwrap();
    assert!(store
        .get_context(account.id, agent.id, "k")
        .await
        .unwrap()
        .is_none());
}

pub async fn audit_indices_are_contiguous_per_account(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let account = if i % 2 == 0 { a.id } else { b.id };
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(vec![event(account, "x"), event(account, "y")])
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let records = t.await.unwrap();
        assert_eq!(
            records[1].leaf_index,
            records[0].leaf_index + 1,
            "one append's events are adjacent"
        );
    }
    for account in [a.id, b.id] {
        let page = store
            .query_audit(
                account,
                &AuditQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 40);
        let indices: Vec<u64> = page.items.iter().map(|r| r.leaf_index).collect();
        assert_eq!(indices, (0..40).collect::<Vec<u64>>());
        assert!(page.items.iter().all(|r| r.event.account_id == account));
    }
}

pub async fn audit_queries_filter(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let mut violation = event(a.id, "permission_denied");
    violation.is_violation = true;
    violation.agent_id = Some(AgentId::new(5));
    let mut exec = event(a.id, "execution_started");
    exec.execution_id = Some(ExecutionId::new(9));
    store
        .append_audit(vec![event(a.id, "agent_created"), violation, exec])
        .await
        .unwrap();
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut query = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut query);
        query
    };
    let types = |p: thetazero_core::model::Page<thetazero_core::audit::AuditRecord>| {
        p.items
            .into_iter()
            .map(|r| r.event.action_type)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        types(
            store
                .query_audit(a.id, &q(&|q| q.violations_only = true))
                .await
                .unwrap()
        ),
        ["permission_denied"]
    );
    assert_eq!(
        types(
            store
                .query_audit(a.id, &q(&|q| q.agent_id = Some(AgentId::new(5))))
                .await
                .unwrap()
        ),
        ["permission_denied"]
    );
    assert_eq!(
        types(
            store
                .query_audit(a.id, &q(&|q| q.execution_id = Some(ExecutionId::new(9))))
                .await
                .unwrap()
        ),
        ["execution_started"]
    );
    assert_eq!(
        types(
            store
                .query_audit(
                    a.id,
                    &q(&|q| q.action_types =
                        vec!["agent_created".into(), "execution_started".into()])
                )
                .await
                .unwrap()
        ),
        ["agent_created", "execution_started"]
    );
    let after = store
        .query_audit(a.id, &q(&|q| q.after = Some(0)))
        .await
        .unwrap();
    assert_eq!(after.items.len(), 2);
    let limited = store.query_audit(a.id, &q(&|q| q.limit = 1)).await.unwrap();
    assert_eq!((limited.items.len(), limited.total), (1, 3));
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert_eq!(
        store
            .query_audit(a.id, &q(&|q| q.from = Some(future)))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        store
            .query_audit(a.id, &q(&|q| q.to = Some(future)))
            .await
            .unwrap()
            .total,
        3
    );
}

pub async fn concurrent_writes_all_land(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.upsert_agent(account.id, spec(&format!("c{i}"))).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let page = store
        .list_agents(
            account.id,
            PageRequest {
                page: 1,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 200);
}

pub async fn failed_write_does_not_spoil_its_batch(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    store.create_key(key(account.id, 42, false)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50u8 {
        let store = store.clone();
        // Every fifth write collides with the existing key's hash.
        let byte = if i % 5 == 0 { 42 } else { 100 + i };
        tasks.push(tokio::spawn(async move {
            store.create_key(key(account.id, byte, false)).await
        }));
    }
    let mut failures = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => failures += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(failures, 10);
    assert_eq!(store.list_keys(account.id).await.unwrap().len(), 41);
}

fn new_execution(account: AccountId, agent: AgentId) -> NewExecution {
    NewExecution {
        account_id: account,
        agent_id: agent,
        agent_version: "1.0.0".into(),
        code_sha256: "ab".repeat(32),
        input: json!({"name": "Alice"}),
        key_id: None,
        parent_execution_id: None,
    }
}

async fn begin(
    store: &Arc<dyn Store>,
    account: AccountId,
    agent: AgentId,
) -> thetazero_core::model::Execution {
    let id = store.reserve_execution_id(account).await.unwrap();
    let (execution, record) = store
        .create_execution(
            id,
            new_execution(account, agent),
            event(account, "execution_started"),
        )
        .await
        .unwrap();
    assert_eq!(execution.id, id);
    assert_eq!(record.event.action_type, "execution_started");
    execution
}

fn outcome(status: ExecutionStatus) -> ExecutionOutcome {
    ExecutionOutcome {
        status,
        output: Some(json!({"message": "Hello, Alice!"})),
        report: json!({"resource_usage": {"cpu_ms": 1, "memory_mb": 1, "api_calls": 0, "host_calls": 2}}),
        violation_count: 1,
        was_terminated: status == ExecutionStatus::Killed,
        duration_ms: 3,
    }
}

pub async fn executions_start_finish_and_list(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    let (agent, _) = store.upsert_agent(a.id, spec("x")).await.unwrap();
    let started = begin(&store, a.id, agent.id).await;
    assert_eq!(started.status, ExecutionStatus::Running);
    assert_eq!(started.finished_at, None);
    assert_eq!(started.input, json!({"name": "Alice"}));
    // Another account cannot see or finish it.
    assert!(store
        .get_execution(b.id, started.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .finish_execution(
            b.id,
            started.id,
            outcome(ExecutionStatus::Completed),
            event(b.id, "execution_completed")
        )
        .await
        .unwrap()
        .is_none());
    let (done, ended) = store
        .finish_execution(
            a.id,
            started.id,
            outcome(ExecutionStatus::Completed),
            event(a.id, "execution_completed"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.event.action_type, "execution_completed");
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output, Some(json!({"message": "Hello, Alice!"})));
    assert_eq!(done.report["resource_usage"]["host_calls"], 2);
    assert_eq!((done.violation_count, done.duration_ms), (1, 3));
    assert!(done.finished_at.is_some());
    // Refused finishes recorded nothing: started + completed only.
    let log = store
        .query_audit(
            a.id,
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(log.total, 2);
    assert_eq!(
        store
            .query_audit(
                b.id,
                &AuditQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .total,
        0
    );
    // An ended execution stays ended.
    assert!(store
        .finish_execution(
            a.id,
            started.id,
            outcome(ExecutionStatus::Killed),
            event(a.id, "execution_completed")
        )
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .get_execution(a.id, started.id)
            .await
            .unwrap()
            .unwrap(),
        done
    );

    let second = begin(&store, a.id, agent.id).await;
    store
        .finish_execution(
            a.id,
            second.id,
            outcome(ExecutionStatus::Killed),
            event(a.id, "execution_completed"),
        )
        .await
        .unwrap();
    let third = begin(&store, a.id, agent.id).await;
    let all = store
        .list_executions(a.id, agent.id, None, PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    assert_eq!(all.total, 3);
    let ids: Vec<ExecutionId> = all.items.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![third.id, second.id, started.id], "newest first");
    let killed = store
        .list_executions(
            a.id,
            agent.id,
            Some(ExecutionStatus::Killed),
            PageRequest { page: 1, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!((killed.total, killed.items[0].id), (1, second.id));
    // Reserved ids are unique and increasing.
    let x = store.reserve_execution_id(a.id).await.unwrap();
    let y = store.reserve_execution_id(a.id).await.unwrap();
    assert!(y > x && x > third.id);
    assert!(killed.items[0].was_terminated);
    let none = store
        .list_executions(b.id, agent.id, None, PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
}

pub async fn executions_go_with_their_agent(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let (agent, _) = store.upsert_agent(a.id, spec("x")).await.unwrap();
    let e = begin(&store, a.id, agent.id).await;
    assert!(store.delete_agent(a.id, agent.id).await.unwrap());
    assert!(store.get_execution(a.id, e.id).await.unwrap().is_none());
    let audit = store
        .query_audit(
            a.id,
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.total, 1, "audit records outlive the agent");
}

pub async fn storage_is_per_account(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    assert_eq!(store.storage_get(a.id, "k").await.unwrap(), None);
    store
        .storage_put(a.id, "k", &json!({"n": 1}))
        .await
        .unwrap();
    store
        .storage_put(a.id, "k", &json!({"n": 2}))
        .await
        .unwrap();
    assert_eq!(
        store.storage_get(a.id, "k").await.unwrap(),
        Some(json!({"n": 2}))
    );
    assert_eq!(store.storage_get(b.id, "k").await.unwrap(), None);
}

pub async fn audit_leaves_and_hashes_form_the_log(store: Arc<dyn Store>) {
    use thetazero_audit::merkle;
    let a = store.create_account("a").await.unwrap();
    let mut memory = thetazero_audit::MemoryHashStore::new();
    let mut records = Vec::new();
    for i in 0..37 {
        let mut e = event(
            a.id,
            if i % 3 == 0 {
                "permission_denied"
            } else {
                "api_call"
            },
        );
        e.payload = json!({"i": i});
        e.permission_state = if i % 3 == 0 {
            "denied".into()
        } else {
            "granted".into()
        };
        records.extend(store.append_audit(vec![e]).await.unwrap());
    }
    assert_eq!(store.audit_log_size(a.id).await.unwrap(), 37);
    let leaves = store.audit_leaves(a.id, 0, 100, 100).await.unwrap();
    assert_eq!(leaves.len(), 37);
    for ((index, bytes), record) in leaves.iter().zip(&records) {
        assert_eq!(*index, record.leaf_index);
        assert_eq!(
            merkle::leaf_hash(bytes).0,
            record.leaf_hash,
            "the receipt hashes the stored bytes"
        );
        let leaf =
            thetazero_audit::AuditLeaf::from_bytes(bytes).expect("stored leaves are canonical");
        assert_eq!(leaf.account_id, a.id.get());
        assert_eq!(leaf.action_type, record.event.action_type);
        memory.push(bytes).unwrap();
    }
    // The stored interior hashes give the same root as an independent tree.
    let size = 37;
    let indexes = merkle::indexes_for_root(size).unwrap();
    let hashes = store.audit_hashes(a.id, indexes.clone()).await.unwrap();
    let prefetched = merkle::PrefetchedHashes::new(
        indexes
            .into_iter()
            .zip(hashes.into_iter().map(merkle::Hash)),
    );
    assert_eq!(
        merkle::root(size, &prefetched).unwrap(),
        memory.root().unwrap()
    );
    // Records read back carry the same receipt.
    let by_id = store
        .audit_record(a.id, records[5].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_id.leaf_index, by_id.leaf_hash),
        (records[5].leaf_index, records[5].leaf_hash)
    );
    let b = store.create_account("b").await.unwrap();
    assert!(store
        .audit_record(b.id, records[5].id)
        .await
        .unwrap()
        .is_none());
    // A record's payload is read back for its own account only.
    assert_eq!(
        store.audit_payload(a.id, records[5].id).await.unwrap(),
        Some(json!({"i": 5}))
    );
    assert_eq!(
        store.audit_payload(b.id, records[5].id).await.unwrap(),
        None
    );
    assert!(store.audit_hashes(a.id, vec![1_000_000]).await.is_err());
    let page = store.audit_leaves(a.id, 10, 20, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
}

pub async fn checkpoints_are_kept_and_found(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    store
        .append_audit((0..5).map(|_| event(a.id, "x")).collect())
        .await
        .unwrap();
    store.append_audit(vec![event(b.id, "x")]).await.unwrap();
    let mut needing = store.logs_needing_checkpoint().await.unwrap();
    needing.sort();
    assert_eq!(needing, vec![(a.id, 5, 0), (b.id, 1, 0)]);
    store.store_checkpoint(a.id, 3, "note3").await.unwrap();
    store.store_checkpoint(a.id, 5, "note5").await.unwrap();
    store.store_checkpoint(a.id, 5, "other").await.unwrap();
    let latest = store.latest_checkpoint(a.id).await.unwrap().unwrap();
    assert_eq!(
        (latest.size, latest.note.as_str()),
        (5, "note5"),
        "the first note of a size stays"
    );
    assert_eq!(
        store
            .checkpoint_covering(a.id, 1)
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );
    assert_eq!(
        store
            .checkpoint_covering(a.id, 4)
            .await
            .unwrap()
            .unwrap()
            .size,
        5
    );
    assert!(store.checkpoint_covering(a.id, 6).await.unwrap().is_none());
    assert!(store.latest_checkpoint(b.id).await.unwrap().is_none());
    let all: Vec<u64> = store
        .checkpoints(a.id, 0, 10, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(all, vec![3, 5]);
    assert_eq!(
        store.logs_needing_checkpoint().await.unwrap(),
        vec![(b.id, 1, 0)]
    );
}

pub async fn anchors_move_from_pending_to_a_final_status(store: Arc<dyn Store>) {
    use thetazero_core::audit::AnchorRecord;
    let a = store.create_account("a").await.unwrap();
    store
        .append_audit((0..3).map(|_| event(a.id, "x")).collect())
        .await
        .unwrap();
    assert_eq!(store.audit_logs().await.unwrap(), vec![(a.id, 3)]);
    let anchor = |size: u64, status: &str, failures: u32| AnchorRecord {
        checkpoint_size: size,
        kind: "command".into(),
        status: status.into(),
        external_ref: (status == "confirmed").then(|| format!("0xabc{size}")),
        detail: json!({"size": size}),
        failures,
        retryable: true,
        updated_at: time::OffsetDateTime::now_utc(),
    };
    store
        .put_anchor(a.id, anchor(2, "pending", 0))
        .await
        .unwrap();
    assert!(store
        .last_confirmed_anchor(a.id, "command")
        .await
        .unwrap()
        .is_none());
    store
        .put_anchor(a.id, anchor(2, "confirmed", 0))
        .await
        .unwrap();
    store
        .put_anchor(a.id, anchor(3, "failed", 1))
        .await
        .unwrap();
    let confirmed = store
        .last_confirmed_anchor(a.id, "command")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (confirmed.checkpoint_size, confirmed.external_ref.as_deref()),
        (2, Some("0xabc2"))
    );
    let last = store.last_anchor(a.id, "command").await.unwrap().unwrap();
    assert_eq!(
        (last.checkpoint_size, last.status.as_str(), last.failures),
        (3, "failed", 1)
    );
    let all = store.anchors(a.id, 0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|x| (x.checkpoint_size, x.status.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "confirmed"), (3, "failed")]
    );
    assert_eq!(all[0].detail, json!({"size": 2}));
    assert!(store.last_anchor(a.id, "witness").await.unwrap().is_none());
}

pub async fn settings_are_set_cleared_and_audited(store: Arc<dyn Store>) {
    let a = store.create_account("a").await.unwrap();
    assert_eq!(store.get_setting("halt").await.unwrap(), None);
    let audit = move |what: &'static str| -> thetazero_core::store::Audit<()> {
        Box::new(move |_| vec![event(a.id, what)])
    };
    store
        .put_setting_audited(
            "halt",
            Some("{\"reason\":\"x\"}".into()),
            audit("global_halt_set"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_setting("halt").await.unwrap().as_deref(),
        Some("{\"reason\":\"x\"}")
    );
    store
        .put_setting_audited("halt", Some("y".into()), audit("global_halt_set"))
        .await
        .unwrap();
    assert_eq!(
        store.get_setting("halt").await.unwrap().as_deref(),
        Some("y")
    );
    store
        .put_setting_audited("halt", None, audit("global_halt_cleared"))
        .await
        .unwrap();
    assert_eq!(store.get_setting("halt").await.unwrap(), None);
    let log = store
        .query_audit(
            a.id,
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let types: Vec<String> = log.items.into_iter().map(|r| r.event.action_type).collect();
    assert_eq!(
        types,
        ["global_halt_set", "global_halt_set", "global_halt_cleared"]
    );
}

/// A request's pending limit is checked with its insert: concurrent
/// requests of one agent cannot pass it together, requests of another
/// agent or account do not count, and a decided request frees its place.
pub async fn pending_limits_hold_under_concurrency(store: Arc<dyn Store>) {
    use thetazero_core::model::{NewPermissionRequest, RequestDecision};
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    let (agent, _) = store.upsert_agent(a.id, spec("x")).await.unwrap();
    let (other, _) = store.upsert_agent(a.id, spec("y")).await.unwrap();
    let (elsewhere, _) = store.upsert_agent(b.id, spec("x")).await.unwrap();
    let new = |account: AccountId, agent: AgentId| NewPermissionRequest {
        account_id: account,
        agent_id: agent,
        requested_by: None,
        grant: json!({"allow_network": true}),
        justification: "j".into(),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(2),
        code_sha256: None,
        pending_limit: Some(3),
    };
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            let req = new(a.id, agent.id);
            tokio::spawn(async move {
                store
                    .create_permission_request_audited(req, thetazero_core::store::no_audit())
                    .await
            })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => created.push(r),
            Err(StoreError::PendingLimit { limit: 3, open: 3 }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(created.len(), 3, "exactly the limit is created");
    let pending = store
        .permission_requests(
            a.id,
            None,
            Some(PermissionRequestStatus::Pending),
            Some(agent.id),
            100,
        )
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
    // Another agent, and another account's agent, have their own counts.
    for (account, agent) in [(a.id, other.id), (b.id, elsewhere.id)] {
        store
            .create_permission_request_audited(
                new(account, agent),
                thetazero_core::store::no_audit(),
            )
            .await
            .unwrap();
    }
    // A decided request no longer counts.
    store
        .decide_permission_request_audited(
            a.id,
            created[0].id,
            RequestDecision {
                status: PermissionRequestStatus::Denied,
                decided_by: None,
                reason: None,
                grant_expires_at: None,
            },
            Box::new(|_| Vec::new()),
        )
        .await
        .unwrap()
        .expect("pending");
    store
        .create_permission_request_audited(new(a.id, agent.id), thetazero_core::store::no_audit())
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_permission_request_audited(
                new(a.id, agent.id),
                thetazero_core::store::no_audit()
            )
            .await,
        Err(StoreError::PendingLimit { limit: 3, open: 3 })
    ));
    // An overdue request not yet marked expired does not count either.
    let (late, _) = store.upsert_agent(a.id, spec("late")).await.unwrap();
    let one = |expires_at| NewPermissionRequest {
        expires_at,
        pending_limit: Some(1),
        ..new(a.id, late.id)
    };
    let now = time::OffsetDateTime::now_utc();
    for expires_at in [
        now - time::Duration::seconds(1),
        now + time::Duration::minutes(2),
    ] {
        store
            .create_permission_request_audited(one(expires_at), thetazero_core::store::no_audit())
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .create_permission_request_audited(
                one(now + time::Duration::minutes(2)),
                thetazero_core::store::no_audit()
            )
            .await,
        Err(StoreError::PendingLimit { limit: 1, open: 1 })
    ));
}

pub async fn permission_requests_are_decided_once(store: Arc<dyn Store>) {
    use thetazero_core::model::{NewPermissionRequest, RequestDecision};
    let a = store.create_account("a").await.unwrap();
    let b = store.create_account("b").await.unwrap();
    let (agent, _) = store.upsert_agent(a.id, spec("x")).await.unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
    let new = |justification: &str| NewPermissionRequest {
        account_id: a.id,
        agent_id: agent.id,
        requested_by: Some(KeyId::new(7)),
        grant: json!({"allow_network": true, "scopes": ["network:outbound"]}),
        justification: justification.into(),
        expires_at: expires,
        code_sha256: Some("c0de".into()),
        pending_limit: None,
    };
    let audit = move |what: &'static str| -> thetazero_core::store::Audit<thetazero_core::model::PermissionRequest> {
        Box::new(move |r| vec![event(a.id, what).agent(r.agent_id)])
    };
    let first = store
        .create_permission_request_audited(new("weather"), audit("permission_requested"))
        .await
        .unwrap();
    let second = store
        .create_permission_request_audited(new("news"), audit("permission_requested"))
        .await
        .unwrap();
    assert_eq!(
        (first.status.as_str(), first.requested_by),
        ("pending", Some(KeyId::new(7)))
    );
    // The operator's count spans accounts.
    let (other_agent, _) = store.upsert_agent(b.id, spec("y")).await.unwrap();
    store
        .create_permission_request_audited(
            NewPermissionRequest {
                account_id: b.id,
                agent_id: other_agent.id,
                ..new("other")
            },
            Box::new(move |r| vec![event(b.id, "permission_requested").agent(r.agent_id)]),
        )
        .await
        .unwrap();
    assert_eq!(store.pending_permission_requests_total().await.unwrap(), 3);
    assert_eq!(first.grant["scopes"][0], "network:outbound");
    assert_eq!(first.code_sha256.as_deref(), Some("c0de"));
    let pending = store
        .permission_requests(a.id, None, Some(PermissionRequestStatus::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![second.id, first.id],
        "newest first"
    );
    assert!(store
        .permission_requests(b.id, Some(first.id), None, None, 10)
        .await
        .unwrap()
        .is_empty());
    let decision = |status: &str| RequestDecision {
        status: status.parse().unwrap(),
        decided_by: Some(KeyId::new(1)),
        reason: Some("ok".into()),
        grant_expires_at: None,
    };
    // Another account cannot decide it; a decided one stays decided.
    assert!(store
        .decide_permission_request_audited(b.id, first.id, decision("approved"), audit("x"))
        .await
        .unwrap()
        .is_none());
    let approved = store
        .decide_permission_request_audited(
            a.id,
            first.id,
            decision("approved"),
            audit("permission_approved"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (approved.status.as_str(), approved.decided_by),
        ("approved", Some(KeyId::new(1)))
    );
    assert!(approved.decided_at.is_some());
    assert!(store
        .decide_permission_request_audited(a.id, first.id, decision("denied"), audit("x"))
        .await
        .unwrap()
        .is_none());
    store
        .decide_permission_request_audited(
            a.id,
            second.id,
            decision("expired"),
            audit("permission_expired"),
        )
        .await
        .unwrap()
        .unwrap();
    // Decided ones and ones past their timeout are no longer pending.
    assert_eq!(store.pending_permission_requests_total().await.unwrap(), 1);
    let by_agent = store
        .permission_requests(
            a.id,
            None,
            Some(PermissionRequestStatus::Approved),
            Some(agent.id),
            10,
        )
        .await
        .unwrap();
    assert_eq!(by_agent.len(), 1);
    let log = store
        .query_audit(
            a.id,
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let types: Vec<String> = log.items.into_iter().map(|r| r.event.action_type).collect();
    assert_eq!(
        types,
        [
            "permission_requested",
            "permission_requested",
            "permission_approved",
            "permission_expired"
        ]
    );
    // One past its timeout is no longer pending either.
    store
        .create_permission_request_audited(
            NewPermissionRequest {
                expires_at: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
                ..new("stale")
            },
            audit("permission_requested"),
        )
        .await
        .unwrap();
    assert_eq!(store.pending_permission_requests_total().await.unwrap(), 1);
    // Requests go with their agent.
    store.delete_agent(a.id, agent.id).await.unwrap();
    assert!(store
        .permission_requests(a.id, None, None, None, 10)
        .await
        .unwrap()
        .is_empty());
    let gone = NewPermissionRequest {
        agent_id: agent.id,
        ..new("late")
    };
    assert!(store
        .create_permission_request_audited(gone, audit("x"))
        .await
        .is_err());
}

pub async fn rate_limits_admit_a_burst_then_refuse(store: Arc<dyn Store>) {
    use std::time::Duration;
    use thetazero_core::rate::{RateDecision, RateLimit};
    let hour = |key: &str, limit| RateLimit {
        key: key.into(),
        limit,
        window: Duration::from_secs(3600),
    };
    for i in 0..3 {
        assert_eq!(
            store.rate_acquire(&hour("a", 3)).await.unwrap(),
            RateDecision::Admitted,
            "event {i}"
        );
    }
    match store.rate_acquire(&hour("a", 3)).await.unwrap() {
        RateDecision::Refused { retry_after } => {
            // One interval (20 minutes) less what has passed since the burst.
            assert!(retry_after <= Duration::from_secs(1200), "{retry_after:?}");
            assert!(retry_after > Duration::from_secs(1190), "{retry_after:?}");
        }
        other => panic!("the fourth event in an hour: {other:?}"),
    }
    // Counters are independent, and a zero limit admits nothing.
    assert!(store
        .rate_acquire(&hour("b", 3))
        .await
        .unwrap()
        .is_admitted());
    assert!(!store
        .rate_acquire(&hour("c", 0))
        .await
        .unwrap()
        .is_admitted());
    // A short window refills.
    let fast = RateLimit {
        key: "fast".into(),
        limit: 2,
        window: Duration::from_millis(200),
    };
    assert!(store.rate_acquire(&fast).await.unwrap().is_admitted());
    assert!(store.rate_acquire(&fast).await.unwrap().is_admitted());
    assert!(!store.rate_acquire(&fast).await.unwrap().is_admitted());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.rate_acquire(&fast).await.unwrap().is_admitted());
}

pub async fn rate_limits_hold_under_concurrency(store: Arc<dyn Store>) {
    use std::time::Duration;
    use thetazero_core::rate::RateLimit;
    let limit = RateLimit {
        key: "shared".into(),
        limit: 25,
        window: Duration::from_secs(3600),
    };
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            let limit = limit.clone();
            tokio::spawn(async move { store.rate_acquire(&limit).await.unwrap().is_admitted() })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(
        admitted, 25,
        "exactly the limit, however the calls interleave"
    );
}

/// Many executions recorded at once (a backend may commit them together):
/// each lands with its events, a whole run's two events are adjacent, and one
/// that cannot be written (its agent does not exist) fails alone, leaving
/// nothing behind.
pub async fn concurrent_executions_commit_together_and_fail_alone(store: Arc<dyn Store>) {
    let account = store.create_account("a").await.unwrap();
    let (agent, _) = store.upsert_agent(account.id, spec("x")).await.unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = store.reserve_execution_id(account.id).await.unwrap();
                let target = if i == 7 {
                    AgentId::new(999_999)
                } else {
                    agent.id
                };
                let new = new_execution(account.id, target);
                if i % 2 == 0 {
                    store
                        .record_execution(
                            id,
                            new,
                            event(account.id, "execution_started"),
                            outcome(ExecutionStatus::Completed),
                            event(account.id, "execution_completed"),
                        )
                        .await
                        .map(|(e, first, last)| {
                            assert_eq!(e.status, ExecutionStatus::Completed);
                            assert_eq!(last.leaf_index, first.leaf_index + 1, "adjacent");
                            e
                        })
                } else {
                    store
                        .create_execution(id, new, event(account.id, "execution_started"))
                        .await
                        .map(|(e, _)| {
                            assert_eq!(e.status, ExecutionStatus::Running);
                            e
                        })
                }
            })
        })
        .collect();
    let mut events = 0;
    let mut failures = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(answered) => {
                events += if answered.status == ExecutionStatus::Running {
                    1
                } else {
                    2
                };
                // What a write answers is what a read finds.
                let stored = store.get_execution(account.id, answered.id).await.unwrap();
                assert_eq!(stored.as_ref(), Some(&answered));
            }
            Err(_) => failures += 1,
        }
    }
    assert_eq!(failures, 1, "only the execution of a missing agent fails");
    assert_eq!(store.audit_log_size(account.id).await.unwrap(), events);
    let listed = store
        .list_executions(
            account.id,
            agent.id,
            None,
            PageRequest {
                page: 1,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 23);
}
