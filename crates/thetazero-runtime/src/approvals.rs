//! Permission requests' rules that more than one caller applies: a request
//! left pending past its time is recorded `expired`, with its audit event,
//! by whoever finds it first (a run that stops waiting for it, or a read over
//! the API).

use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{
    AccountId, PermissionRequest, PermissionRequestId, PermissionRequestStatus, RequestDecision,
};
use thetazero_core::store::{Store, StoreResult};

/// Records request `id` expired, unless it was decided meanwhile (then the
/// store changes nothing and answers the request as it is, or `None` if it
/// no longer exists). `why` goes into the request's decision reason.
pub async fn expire(
    store: &dyn Store,
    account: AccountId,
    id: PermissionRequestId,
    why: &str,
) -> StoreResult<Option<PermissionRequest>> {
    store
        .decide_permission_request_audited(
            account,
            id,
            RequestDecision {
                status: PermissionRequestStatus::Expired,
                decided_by: None,
                reason: Some(why.to_string()),
                grant_expires_at: None,
            },
            Box::new(move |r| {
                vec![AuditEvent::approval(
                    account,
                    AuditAction::PermissionExpired,
                    r,
                    None,
                    format!("permission request {} expired without a decision", r.id),
                )]
            }),
        )
        .await
}
