//! Agent code that runs again comes from compiled bytecode: the second and later runs must behave exactly as the first (output, errors, stacks, syntax errors), and runs in different cache scopes never share it. Test-only.
mod common;

use common::*;
use serde_json::json;
use thetazero_sandbox::Status;

#[tokio::test]
async fn repeated_runs_behave_as_the_first() {
    for code in [
        "return {n: input?.n ?? 0, t: typeof thetazero.log}",
        "function f() { throw new RangeError('deep') }\nfunction g() { f() }\ng()",
        "await thetazero.log('x'); return [1, 2, 3].map(x => x * 2)",
    ] {
        let (first, _) = run_code(code).await;
        for _ in 0..3 {
            let (again, _) = run_code(code).await;
            assert_eq!(again.status, first.status, "{code}");
            assert_eq!(again.output, first.output, "{code}");
            assert_eq!(
                again
                    .error
                    .as_ref()
                    .map(|e| (&e.kind, &e.message, &e.stack)),
                first
                    .error
                    .as_ref()
                    .map(|e| (&e.kind, &e.message, &e.stack)),
                "{code}"
            );
        }
    }
    let (r, _) =
        run_code("function f() { throw new RangeError('deep') }\nfunction g() { f() }\ng()").await;
    let stack = r.error.unwrap().stack.unwrap();
    assert!(stack.contains("agent.js:1"), "{stack}");
    assert!(stack.contains("agent.js:2"), "{stack}");
}

#[tokio::test]
async fn a_syntax_error_is_reported_every_time() {
    for _ in 0..2 {
        let (r, _) = run_code("return {").await;
        assert_eq!(r.status, Status::Failed);
        assert_eq!(r.error.as_ref().unwrap().kind, "SyntaxError", "{r:?}");
    }
}

#[tokio::test]
async fn scopes_do_not_share_and_each_gets_the_right_result() {
    let host = MemHost::new();
    for scope in [1u64, 2, 1, 2] {
        let mut j = job("return input", &host);
        j.input = json!({"scope": scope});
        j.code_cache_scope = scope;
        let r = run(j).await;
        assert_eq!(r.output, json!({"scope": scope}));
    }
}
