//! Checks that the Rust featuriser and every model stage (prompt, content, toxicity, second stage) reproduce the scores `training/train.py` computed; it tests nothing else.

use thetazero_safety::{content_model_scores, model_scores, second_stage_score};

#[derive(serde::Deserialize)]
struct Row {
    text: String,
    injection: f64,
    toxicity: f64,
    content_injection: f64,
    second_stage_injection: f64,
}

#[test]
fn rust_scores_match_python_scores() {
    let fixture = include_str!("fixtures/parity.jsonl");
    let mut n = 0;
    let mut worst = 0.0f64;
    for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
        let row: Row = serde_json::from_str(line).expect("fixture line parses");
        let got = model_scores(&row.text);
        let content = content_model_scores(&row.text);
        let second = second_stage_score(&row.text);
        for (name, rust, python) in [
            ("injection", f64::from(got.injection), row.injection),
            ("toxicity", f64::from(got.toxicity), row.toxicity),
            (
                "content injection",
                f64::from(content.injection),
                row.content_injection,
            ),
            (
                "content toxicity",
                f64::from(content.toxicity),
                row.toxicity,
            ),
            (
                "second stage injection",
                f64::from(second),
                row.second_stage_injection,
            ),
        ] {
            let diff = (rust - python).abs();
            worst = worst.max(diff);
            assert!(
                diff <= 1e-4,
                "{name} of {:?}: rust {rust} python {python}",
                row.text
            );
        }
        n += 1;
    }
    // The fixture must actually exercise the model: hundreds of texts with
    // scores on both sides of the thresholds.
    assert!(n >= 300, "only {n} fixture rows");
    assert!(worst <= 1e-4);
}

#[test]
fn fixture_spans_both_decisions() {
    let fixture = include_str!("fixtures/parity.jsonl");
    let rows: Vec<Row> = fixture
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(rows.iter().any(|r| r.injection >= 0.35));
    assert!(rows.iter().any(|r| r.injection < 0.35));
    assert!(rows.iter().any(|r| r.toxicity >= 0.4));
    assert!(rows.iter().any(|r| r.toxicity < 0.4));
    assert!(rows.iter().any(|r| r.second_stage_injection >= 0.35));
    assert!(rows.iter().any(|r| r.second_stage_injection < 0.35));
}
