//! Swarms: agents starting agents with `thetazero.call_agent` and reading
//! executions with `thetazero.get_execution`. A child's budget never exceeds
//! what its parent has left, nesting is bounded, the account's swarm
//! executions per hour are limited, and a kill of the parent stops its child.

mod common;

use common::{agent, execute, running, start, TestApp};
use serde_json::{json, Value};
use thetazero_http::Settings;
use thetazero_runtime::{RuntimeConfig, SwarmConfig};

async fn execution(app: &TestApp, agent: i64, id: i64) -> Value {
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{agent}/executions/{id}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn swarm_app(max_depth: u32, per_hour: u32) -> impl std::future::Future<Output = TestApp> {
    TestApp::with_config(
        Settings::default(),
        RuntimeConfig {
            swarm: SwarmConfig {
                max_depth,
                executions_per_account_per_hour: per_hour,
            },
            ..RuntimeConfig::default()
        },
    )
}

#[tokio::test]
async fn a_parent_runs_a_child_and_reads_its_execution() {
    let app = swarm_app(3, 10).await;
    let child = agent(
        &app,
        json!({"name": "doubler", "entry_code": "return {double: input.n * 2};"}),
    )
    .await;
    let parent = agent(
        &app,
        json!({"name": "boss", "permissions": ["agents:write", "agents:read"], "entry_code": "
            const run = await thetazero.call_agent('doubler', {n: input.n});
            const again = await thetazero.get_execution(run.execution_id);
            const missing = await thetazero.get_execution(999999);
            return {run, again, missing};
        "}),
    )
    .await;
    let done = execute(&app, parent, json!({"n": 21})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let out = &done["output"];
    assert_eq!(out["run"]["status"], "completed");
    assert_eq!(out["run"]["output"], json!({"double": 42}));
    assert_eq!(out["run"]["parent_execution_id"], done["execution_id"]);
    assert_eq!(out["again"]["execution_id"], out["run"]["execution_id"]);
    assert_eq!(out["again"]["output"], json!({"double": 42}));
    assert_eq!(out["missing"], Value::Null);

    // The child is an execution of its own agent, linked to its parent.
    let child_id = out["run"]["execution_id"].as_i64().unwrap();
    let record = execution(&app, child, child_id).await;
    assert_eq!(record["status"], "completed");
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/audit?executionId={child_id}&actionTypes=execution_started"),
            Some(&app.owner),
            None,
        )
        .await;
    let started = &r.body["events"][0];
    assert_eq!(started["execution_id"], child_id, "{}", r.body);
}

#[tokio::test]
async fn swarm_calls_need_their_scopes_and_stay_in_the_account() {
    let app = swarm_app(3, 10).await;
    agent(&app, json!({"name": "target", "entry_code": "return 1;"})).await;
    let reader = agent(
        &app,
        json!({"name": "no-scopes", "entry_code": "
            const out = {};
            try { await thetazero.call_agent('target', {}); } catch (e) { out.call = e.code; }
            try { await thetazero.get_execution(1); } catch (e) { out.get = e.code; }
            return out;
        "}),
    )
    .await;
    let done = execute(&app, reader, json!({})).await;
    assert_eq!(
        done["output"],
        json!({"call": "PERMISSION_DENIED", "get": "PERMISSION_DENIED"}),
        "{done}"
    );

    // Another account's agents and executions are not there.
    let other = app.other_account().await;
    let r = app
        .call(
            "POST",
            "/api/v1/sdk/agents",
            Some(&other),
            Some(json!({"name": "theirs", "permissions": ["agents:write", "agents:read"], "entry_code": "
                const out = {};
                try { await thetazero.call_agent('target', {}); } catch (e) { out.call = e.code; }
                out.get = await thetazero.get_execution(input.id);
                return out;
            "})),
        )
        .await;
    let theirs = r.body["agent"]["id"].as_i64().unwrap();
    let mine = execute(&app, reader, json!({})).await;
    let r = app
        .call(
            "POST",
            &format!("/api/v1/sdk/agents/{theirs}/execute"),
            Some(&other),
            Some(json!({"input": {"id": mine["execution_id"]}})),
        )
        .await;
    assert_eq!(
        r.body["output"],
        json!({"call": "NOT_FOUND", "get": null}),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_child_gets_no_more_budget_than_its_parent_has_left() {
    let app = swarm_app(3, 10).await;
    let greedy = agent(
        &app,
        json!({"name": "greedy", "permissions": ["data:read"], "entry_code": "
            for (let i = 0; i < 20; i++) await thetazero.read_context('k');
            return 'finished';
        "}),
    )
    .await;
    let parent = agent(
        &app,
        json!({"name": "frugal", "permissions": ["agents:write", "data:read"],
               "config": {"max_api_calls_per_run": 5},
               "entry_code": "
            await thetazero.read_context('a');
            const child = await thetazero.call_agent('greedy', {});
            return {status: child.status, execution_id: child.execution_id};
        "}),
    )
    .await;
    let done = execute(&app, parent, json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Five calls: one read and the call itself leave three for the child.
    assert_eq!(done["output"]["status"], "limit_exceeded", "{done}");
    let child = execution(
        &app,
        greedy,
        done["output"]["execution_id"].as_i64().unwrap(),
    )
    .await;
    let message = child["error"]["message"].as_str().unwrap();
    assert!(message.contains("more than 3 host API calls"), "{child}");
}

#[tokio::test]
async fn nesting_is_bounded() {
    let app = swarm_app(3, 10).await;
    let chain = agent(
        &app,
        json!({"name": "chain", "permissions": ["agents:write"], "entry_code": "
            try {
                const child = await thetazero.call_agent('chain', {depth: input.depth + 1});
                return {depth: input.depth, child: child.output};
            } catch (e) {
                return {depth: input.depth, refused: e.code, names_bound: e.message.includes('3 deep')};
            }
        "}),
    )
    .await;
    let done = execute(&app, chain, json!({"depth": 0})).await;
    let deepest = &done["output"]["child"]["child"]["child"];
    assert_eq!(deepest["depth"], 3, "{done}");
    assert_eq!(deepest["refused"], "HOST_REFUSED", "{done}");
    assert_eq!(deepest["names_bound"], true, "{done}");
}

#[tokio::test]
async fn swarm_executions_per_hour_are_limited_and_recorded() {
    let app = swarm_app(3, 3).await;
    agent(&app, json!({"name": "leaf", "entry_code": "return 1;"})).await;
    let spawner = agent(
        &app,
        json!({"name": "spawner", "permissions": ["agents:write"], "entry_code": "
            const out = [];
            for (let i = 0; i < 5; i++) {
                try { out.push((await thetazero.call_agent('leaf', {})).status); }
                catch (e) { out.push(e.code); }
            }
            return out;
        "}),
    )
    .await;
    let done = execute(&app, spawner, json!({})).await;
    assert_eq!(
        done["output"],
        json!([
            "completed",
            "completed",
            "completed",
            "HOST_REFUSED",
            "HOST_REFUSED"
        ]),
        "{done}"
    );
    let r = app
        .call(
            "GET",
            &format!(
                "/api/v1/sdk/audit?executionId={}&actionTypes=rate_limit_hit",
                done["execution_id"]
            ),
            Some(&app.owner),
            None,
        )
        .await;
    let events = r.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", r.body);
    assert!(events.iter().all(|e| e["is_violation"] == true));
}

#[tokio::test]
async fn killing_the_parent_stops_its_child() {
    let app = swarm_app(3, 10).await;
    let spinner = agent(
        &app,
        json!({"name": "spinner", "config": {"cpu_time_limit_ms": 120000}, "entry_code": "while (true) {}"}),
    )
    .await;
    let parent = agent(
        &app,
        json!({"name": "waiter", "permissions": ["agents:write"],
               "config": {"cpu_time_limit_ms": 120000},
               "entry_code": "return await thetazero.call_agent('spinner', {});"}),
    )
    .await;
    let run = start(&app, parent);
    running(&app, spinner, 1).await;
    let r = app
        .call(
            "POST",
            &format!("/api/sdk/agents/{parent}/kill"),
            Some(&app.owner),
            Some(json!({"reason": "stop the swarm"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("the parent stops")
        .unwrap();
    assert_eq!(done["status"], "killed", "{done}");
    // The child stopped with it, though its own agent was not killed.
    running(&app, spinner, 0).await;
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{spinner}/executions"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["executions"][0]["status"], "killed", "{}", r.body);
    let r = app
        .call(
            "GET",
            &format!("/api/v1/sdk/agents/{spinner}"),
            Some(&app.owner),
            None,
        )
        .await;
    assert_eq!(r.body["agent"]["status"], "ready");
}

/// Children started together run one at a time, and the host calls a child
/// spends come out of its parent's budget: a parent and its children
/// together never spend more than the parent was given.
#[tokio::test]
async fn children_spend_their_parents_budget() {
    let app = swarm_app(3, 100).await;
    agent(
        &app,
        json!({"name": "worker", "permissions": ["storage:read"], "entry_code": "
            for (let i = 0; i < input.calls; i++) await thetazero.storage_get('k' + i);
            return input.calls;
        "}),
    )
    .await;
    // Two children asked for at once: the second starts after the first ends.
    let parent = agent(
        &app,
        json!({"name": "fan", "permissions": ["agents:write"], "config": {"max_api_calls_per_run": 50},
               "entry_code": "
            const runs = await Promise.all([
                thetazero.call_agent('worker', {calls: 2}),
                thetazero.call_agent('worker', {calls: 2}),
            ]);
            return runs.map(r => ({status: r.status, started: r.started_at, finished: r.finished_at, calls: r.resource_usage.api_calls}));
        "}),
    )
    .await;
    let done = execute(&app, parent, json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let runs = done["output"].as_array().unwrap();
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("completed"), Some("completed"))
    );
    let (first, second) = if a["started"].as_str() <= b["started"].as_str() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        first["finished"].as_str().unwrap() <= second["started"].as_str().unwrap(),
        "children overlapped: {runs:?}"
    );
    // Two calls of its own (the two call_agent) and two of each child's.
    assert_eq!(done["resource_usage"]["api_calls"], 6, "{done}");

    // A parent with 10 calls: one call_agent, a child that spends 8, so the
    // parent has one left.
    let parent = agent(
        &app,
        json!({"name": "thrifty", "permissions": ["agents:write", "storage:read"], "config": {"max_api_calls_per_run": 10},
               "entry_code": "
            const child = await thetazero.call_agent('worker', {calls: 8});
            await thetazero.storage_get('mine');
            try { await thetazero.storage_get('one-too-many'); return 'not limited'; } catch (e) { return [child.resource_usage.api_calls, e.code]; }
        "}),
    )
    .await;
    let done = execute(&app, parent, json!({})).await;
    assert_ne!(done["output"], "not limited", "{done}");
    assert_eq!(done["status"], "limit_exceeded", "{done}");
}
