//! Property tests for leaf bytes: canonical round trip, one spelling per
//! leaf, and no panic on garbage. Tests only.

// Tests may unwrap: a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use thetazero_audit::leaf::{
    bounded_summary, AuditLeaf, Decision, Digest, LEAF_TYPE, MAX_SAFE_INTEGER,
};

fn id() -> impl Strategy<Value = i64> {
    prop_oneof![
        0..1000i64,
        0..=MAX_SAFE_INTEGER,
        Just(MAX_SAFE_INTEGER),
        Just(0)
    ]
}

fn time() -> impl Strategy<Value = String> {
    (
        1970u32..2200,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        prop::bool::ANY,
        0u32..1_000_000,
    )
        .prop_map(|(y, mo, d, h, mi, s, micro, f)| {
            if micro {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:06}Z")
            } else {
                format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                    f % 1000
                )
            }
        })
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

prop_compose! {
    fn leaf()(
        account_id in id(),
        agent_id in prop::option::of(id()),
        execution_id in prop::option::of(id()),
        key_id in prop::option::of(id()),
        action_type in "[a-z][a-z0-9_]{0,30}",
        action_category in "[a-z][a-z0-9_.]{0,30}",
        permission_state in "[a-z][a-z0-9_]{0,30}",
        time in time(),
        decision in prop_oneof![Just(Decision::Allow), Just(Decision::Deny), Just(Decision::None)],
        is_violation in any::<bool>(),
        input_digest in prop::option::of(digest()),
        output_digest in prop::option::of(digest()),
        summary in any::<String>(),
        payload_commitment in digest(),
    ) -> AuditLeaf {
        AuditLeaf {
            leaf_type: LEAF_TYPE.into(),
            account_id, agent_id, execution_id, action_type, action_category, time,
            permission_state, decision, is_violation, key_id, input_digest, output_digest,
            summary: bounded_summary(&summary), payload_commitment,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_round_trip(l in leaf()) {
        let bytes = l.to_bytes().unwrap();
        let back = AuditLeaf::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &l);
        prop_assert_eq!(&back.to_bytes().unwrap(), &bytes);
        // The fast encoder is exactly RFC 8785 as a general JCS crate does it.
        prop_assert_eq!(serde_jcs::to_vec(&l).unwrap(), bytes.clone());
        prop_assert!(thetazero_audit::leaf::is_canonical_fast(&bytes));
    }

    #[test]
    fn mutated_bytes_never_panic_and_stay_unique(l in leaf(), pos in any::<usize>(), byte in any::<u8>()) {
        let bytes = l.to_bytes().unwrap();
        let mut m = bytes.clone();
        let i = pos % m.len();
        m[i] = byte;
        // Either refused, or a leaf whose canonical bytes are exactly these:
        // no second spelling of any leaf is accepted.
        let full = AuditLeaf::from_bytes(&m);
        if let Ok(parsed) = &full {
            prop_assert_eq!(parsed.to_bytes().unwrap(), m.clone());
        }
        // The fast check the bundle verifier uses agrees with the full parser.
        prop_assert_eq!(AuditLeaf::check_bytes(&m).is_ok(), full.is_ok());
        prop_assert_eq!(thetazero_audit::leaf::is_canonical_fast(&m), full.is_ok());
    }

    #[test]
    fn garbage_never_panics(g in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = AuditLeaf::from_bytes(&g);
        prop_assert!(!thetazero_audit::leaf::is_canonical_fast(&g) || AuditLeaf::from_bytes(&g).is_ok());
    }

    #[test]
    fn json_shaped_garbage_never_panics(s in r#"\{("[a-z_]{1,16}":(null|true|-?[0-9]{1,20}|"[^"]{0,10}"|\[\]|\{\}),?){0,16}\}"#) {
        let _ = AuditLeaf::from_bytes(s.as_bytes());
    }
}
