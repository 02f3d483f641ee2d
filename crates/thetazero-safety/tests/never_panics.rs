//! Property tests: the filter returns a verdict for any input, never panics, and is deterministic; they check no accuracy.

use proptest::prelude::*;
use thetazero_safety::{looks_like_prose, tokens, Channel, Filter, SafetyConfig, EXCERPT_CHARS};

fn small_window() -> Filter {
    Filter::new(SafetyConfig {
        window_bytes: 64,
        max_text_bytes: 1 << 20,
        ..SafetyConfig::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string(s in any::<String>()) {
        let f = Filter::default();
        let a = f.scan(&s);
        let b = f.scan(&s);
        prop_assert_eq!(&a, &b);
        prop_assert!((0.0..=1.0).contains(&a.injection));
        prop_assert!((0.0..=1.0).contains(&a.toxicity));
        prop_assert!(a.excerpt.map_or(0, |e| e.chars().count()) <= EXCERPT_CHARS);
    }

    #[test]
    fn unicode_heavy_strings_with_small_windows(s in "\\PC{0,400}") {
        let _ = small_window().scan(&s);
        let _ = tokens(&s);
    }

    #[test]
    fn base64_and_hex_lookalikes(s in "[A-Za-z0-9+/=_\\-\\\\x ]{0,300}") {
        let _ = small_window().scan(&s);
    }

    #[test]
    fn json_values(s in any::<String>(), k in any::<String>()) {
        let v = serde_json::json!({ k: [s.clone(), {"x": s}] });
        let _ = Filter::default().scan_json(&v);
    }

    #[test]
    fn json_documents_on_every_channel(
        s in "\\PC{0,300}",
        k in "\\PC{0,40}",
        n in any::<i64>(),
        c in 0usize..5,
    ) {
        let channel = Channel::ALL[c];
        let v = serde_json::json!({ k.clone(): [s.clone(), n, {"x": [s.clone(), null, true]}], "s": s.clone() });
        let f = small_window();
        let a = f.scan_json_channel(&v, channel);
        prop_assert_eq!(&a, &f.scan_json_channel(&v, channel));
        prop_assert_eq!(a.channel, channel);
        prop_assert!((0.0..=1.0).contains(&a.injection));
        prop_assert!(a.excerpt.as_ref().map_or(0, |e| e.chars().count()) <= EXCERPT_CHARS);
        prop_assert_eq!(a.path.is_some(), a.is_block());
        let _ = f.scan_channel(&s, channel);
        let _ = looks_like_prose(&s);
    }
}

#[test]
fn huge_and_odd_inputs() {
    let f = Filter::new(SafetyConfig {
        max_text_bytes: 8 << 20,
        ..SafetyConfig::default()
    });
    for s in [
        "a".repeat(2 << 20),
        "é".repeat(300_000),
        "\u{200b}".repeat(100_000),
        "=".repeat(100_000),
        "QUFB".repeat(100_000),
        "0".repeat(100_000),
        "\\x41".repeat(50_000),
        "\u{0301}".repeat(50_000),
        "🙂".repeat(100_000),
        "\0\u{1}\u{7f}".repeat(10_000),
    ] {
        let v = f.scan(&s);
        assert!((0.0..=1.0).contains(&v.injection), "{v:?}");
    }
    // Over the bound: refused without scanning.
    let v = Filter::default().scan(&"a".repeat(10 << 20));
    assert_eq!(v.rule.as_deref(), Some("prompt_length"));
}
