//! The catalogs' identifier sets, checked against the published editions
//! they name, and the rules every catalog keeps.

use std::collections::BTreeSet;

use serde_json::json;
use thetazero_compliance::catalog::{catalog, catalogs, validate_ids, Coverage, FRAMEWORKS};
use thetazero_compliance::checks::{CheckResult, CheckStatus, CHECKS};
use thetazero_compliance::report::control;

fn ids(framework: &str) -> Vec<String> {
    catalog(framework)
        .unwrap()
        .requirements
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn nist_ai_rmf_has_all_72_subcategories() {
    let ids = ids("nist_ai_rmf");
    assert_eq!(ids.len(), 72);
    // Subcategories per category, as in NIST AI 100-1 Tables 1-4.
    let expected: &[(&str, &[u32])] = &[
        ("GOVERN", &[7, 3, 2, 3, 2, 2]),
        ("MAP", &[6, 3, 5, 2, 2]),
        ("MEASURE", &[3, 13, 3, 3]),
        ("MANAGE", &[4, 4, 2, 3]),
    ];
    let mut want = BTreeSet::new();
    for (function, counts) in expected {
        for (c, n) in counts.iter().enumerate() {
            for s in 1..=*n {
                want.insert(format!("{function} {}.{s}", c + 1));
            }
        }
    }
    let got: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(got, want);
    for (function, n) in [("GOVERN", 19), ("MAP", 18), ("MEASURE", 22), ("MANAGE", 13)] {
        assert_eq!(
            ids.iter()
                .filter(|i| i.starts_with(&format!("{function} ")))
                .count(),
            n,
            "{function}"
        );
    }
}

#[test]
fn iso_42001_has_the_38_annex_a_controls() {
    let ids = ids("iso_42001");
    let expected: &[(&str, &[u32])] = &[
        ("A.2", &[2, 3, 4]),
        ("A.3", &[2, 3]),
        ("A.4", &[2, 3, 4, 5, 6]),
        ("A.5", &[2, 3, 4, 5]),
        ("A.6.1", &[2, 3]),
        ("A.6.2", &[2, 3, 4, 5, 6, 7, 8]),
        ("A.7", &[2, 3, 4, 5, 6]),
        ("A.8", &[2, 3, 4, 5]),
        ("A.9", &[2, 3, 4]),
        ("A.10", &[2, 3, 4]),
    ];
    let want: BTreeSet<String> = expected
        .iter()
        .flat_map(|(p, ns)| ns.iter().map(move |n| format!("{p}.{n}")))
        .collect();
    assert_eq!(ids.len(), 38);
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert!(ids.contains(&"A.6.2.8".to_string()), "event logs");
}

#[test]
fn owasp_is_llm01_to_llm10() {
    let want: Vec<String> = (1..=10).map(|n| format!("LLM{n:02}")).collect();
    assert_eq!(ids("owasp_llm_top10"), want);
    assert!(catalog("owasp_llm_top10")
        .unwrap()
        .attribution
        .contains("CC BY-SA"));
}

#[test]
fn soc2_ids_are_trust_services_criteria() {
    let ids = ids("soc2");
    // Criteria per series in the 2017 TSC.
    let series: &[(&str, &[u32])] = &[
        ("CC1", &[1, 2, 3, 4, 5]),
        ("CC2", &[1, 2, 3]),
        ("CC3", &[1, 2, 3, 4]),
        ("CC4", &[1, 2]),
        ("CC5", &[1, 2, 3]),
        ("CC6", &[1, 2, 3, 4, 5, 6, 7, 8]),
        ("CC7", &[1, 2, 3, 4, 5]),
        ("CC8", &[1]),
        ("CC9", &[1, 2]),
        ("A1", &[1, 2, 3]),
        ("C1", &[1, 2]),
        ("PI1", &[1, 2, 3, 4, 5]),
        ("P1", &[1]),
        ("P2", &[1]),
        ("P3", &[1, 2]),
        ("P4", &[1, 2, 3]),
        ("P5", &[1, 2]),
        ("P6", &[1, 2, 3, 4, 5, 6, 7]),
        ("P7", &[1]),
        ("P8", &[1]),
    ];
    let want: BTreeSet<String> = series
        .iter()
        .flat_map(|(p, ns)| ns.iter().map(move |n| format!("{p}.{n}")))
        .collect();
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(ids.len(), want.len());
}

/// Paragraph counts and point letters of the articles the catalog cites,
/// as in Regulation (EU) 2024/1689 (OJ L, 12.7.2024).
fn eu_article(article: u32) -> Option<(u32, &'static [(u32, char)])> {
    Some(match article {
        4 => (0, &[]),
        5 => (8, &[]),
        9 => (10, &[(5, 'c')]),
        10 => (6, &[]),
        11 => (3, &[]),
        12 => (3, &[(2, 'c')]),
        13 => (3, &[(3, 'f')]),
        14 => (5, &[(3, 'b'), (4, 'e')]),
        15 => (5, &[]),
        17 => (4, &[]),
        18 => (3, &[]),
        19 => (2, &[]),
        20 => (2, &[]),
        26 => (12, &[]),
        27 => (5, &[]),
        49 => (5, &[]),
        50 => (7, &[]),
        72 => (4, &[]),
        73 => (11, &[]),
        _ => return None,
    })
}

#[test]
fn eu_ai_act_references_exist_in_the_regulation() {
    let ids = ids("eu_ai_act");
    assert!(!ids.is_empty());
    for id in &ids {
        let rest = id.strip_prefix("Art. ").unwrap_or_else(|| panic!("{id}"));
        let (article, tail) = match rest.find('(') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let article: u32 = article.parse().unwrap_or_else(|_| panic!("{id}"));
        assert!(
            (1..=113).contains(&article),
            "{id}: the Regulation has 113 articles"
        );
        let (paragraphs, points) =
            eu_article(article).unwrap_or_else(|| panic!("{id}: article not in the table"));
        let parts: Vec<&str> = tail.split(['(', ')']).filter(|s| !s.is_empty()).collect();
        if let Some(p) = parts.first() {
            let p: u32 = p.parse().unwrap_or_else(|_| panic!("{id}"));
            assert!(
                p >= 1 && p <= paragraphs,
                "{id}: paragraph {p} of {paragraphs}"
            );
            if let Some(point) = parts.get(1) {
                let c = point.chars().next().unwrap();
                let last = points
                    .iter()
                    .find(|(para, _)| *para == p)
                    .map(|(_, l)| *l)
                    .unwrap_or_else(|| panic!("{id}: paragraph {p} has no points"));
                assert!(('a'..=last).contains(&c) && point.len() == 1, "{id}");
            }
            assert!(parts.len() <= 2, "{id}");
        }
    }
    for must in [
        "Art. 12(1)",
        "Art. 14(4)(e)",
        "Art. 19(1)",
        "Art. 26(6)",
        "Art. 73(1)",
    ] {
        assert!(ids.contains(&must.to_string()), "{must}");
    }
}

#[test]
fn every_catalog_names_its_edition_and_keeps_the_rules() {
    let known: BTreeSet<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
    let mut used = BTreeSet::new();
    for f in FRAMEWORKS {
        let c = catalog(f).unwrap();
        assert_eq!(c.framework, f);
        assert!(!c.edition.is_empty() && !c.transcription.is_empty() && !c.attribution.is_empty());
        assert_eq!(c.sha256.len(), 64);
        let mut seen = BTreeSet::new();
        for r in &c.requirements {
            assert!(seen.insert(r.id.clone()), "{f}: {} twice", r.id);
            assert!(!r.title.is_empty() && r.title.len() <= 90, "{f} {}", r.id);
            match r.coverage {
                Coverage::Organizational | Coverage::NotApplicable => {
                    assert!(
                        r.checks.is_empty(),
                        "{f} {}: organizational with checks",
                        r.id
                    )
                }
                Coverage::Automated | Coverage::Partial => {
                    assert!(!r.checks.is_empty(), "{f} {}: no checks", r.id)
                }
            }
            if r.coverage != Coverage::Automated {
                assert!(
                    r.customer_supplies.is_some(),
                    "{f} {}: what the customer supplies",
                    r.id
                );
            }
            for check in &r.checks {
                assert!(
                    known.contains(check.as_str()),
                    "{f} {}: unknown check {check}",
                    r.id
                );
                used.insert(check.clone());
            }
        }
        // Organizational requirements are listed, never hidden.
        assert!(c
            .requirements
            .iter()
            .any(|r| r.coverage == Coverage::Organizational));
    }
    assert_eq!(
        used.len(),
        known.len(),
        "every check evidences some control"
    );
}

#[test]
fn unknown_framework_ids_are_named() {
    let e = validate_ids(&["soc2".into(), "hipaa".into()]).unwrap_err();
    assert!(e.to_string().contains("\"hipaa\""), "{e}");
    assert!(catalogs(&["nope".into()]).is_err());
    assert_eq!(catalogs(&[]).unwrap().len(), 5);
    assert_eq!(catalogs(&["soc2".into(), "soc2".into()]).unwrap().len(), 1);
}

fn result(id: &str, status: CheckStatus) -> CheckResult {
    CheckResult {
        id: id.into(),
        title: String::new(),
        status,
        reasons: match status {
            CheckStatus::Pass => vec![],
            _ => vec![format!("{id} said no")],
        },
        evidence_file: format!("evidence/{id}.json"),
        evidence: json!(null),
    }
}

#[test]
fn an_erroring_check_leaves_its_controls_not_assessed() {
    let c = catalog("eu_ai_act").unwrap();
    let art12 = c
        .requirements
        .iter()
        .find(|r| r.id == "Art. 12(2)")
        .unwrap();
    let mut checks: Vec<CheckResult> = art12
        .checks
        .iter()
        .map(|id| result(id, CheckStatus::Pass))
        .collect();
    assert_eq!(control(art12, &checks)["result"], "satisfied");
    checks[1].status = CheckStatus::Fail;
    checks[1].reasons = vec!["bad".into()];
    let v = control(art12, &checks);
    assert_eq!(v["result"], "not_satisfied");
    assert_eq!(
        v["coverage"], "partial",
        "coverage is never merged into the result"
    );
    // An error wins over a failure: nothing is known.
    checks[0].status = CheckStatus::Error;
    assert_eq!(control(art12, &checks)["result"], "not_assessed");
    // A missing check is no better.
    assert_eq!(control(art12, &checks[1..])["result"], "not_assessed");
    let org = c.requirements.iter().find(|r| r.id == "Art. 10").unwrap();
    let v = control(org, &checks);
    assert_eq!(v["coverage"], "organizational");
    assert_eq!(v["result"], json!(null));
}

/// NIST AI 600-1 (July 2024): the suggested actions per AI RMF subcategory,
/// as counted in the profile's Section 3 tables.
const PROFILE_ACTIONS: &[(&str, &[(&str, u32)])] = &[
    (
        "GOVERN",
        &[
            ("1.1", 1),
            ("1.2", 2),
            ("1.3", 7),
            ("1.4", 2),
            ("1.5", 3),
            ("1.6", 3),
            ("1.7", 2),
            ("2.1", 5),
            ("3.2", 5),
            ("4.1", 3),
            ("4.2", 3),
            ("4.3", 3),
            ("5.1", 2),
            ("6.1", 10),
            ("6.2", 7),
        ],
    ),
    (
        "MAP",
        &[
            ("1.1", 4),
            ("1.2", 2),
            ("2.1", 2),
            ("2.2", 2),
            ("2.3", 5),
            ("3.4", 6),
            ("4.1", 10),
            ("5.1", 6),
            ("5.2", 2),
        ],
    ),
    (
        "MEASURE",
        &[
            ("1.1", 9),
            ("1.3", 3),
            ("2.2", 4),
            ("2.3", 4),
            ("2.5", 6),
            ("2.6", 7),
            ("2.7", 9),
            ("2.8", 4),
            ("2.9", 2),
            ("2.10", 3),
            ("2.11", 5),
            ("2.12", 4),
            ("2.13", 1),
            ("3.2", 1),
            ("3.3", 5),
            ("4.2", 5),
        ],
    ),
    (
        "MANAGE",
        &[
            ("1.3", 2),
            ("2.2", 9),
            ("2.3", 1),
            ("2.4", 4),
            ("3.1", 5),
            ("3.2", 9),
            ("4.1", 7),
            ("4.2", 3),
            ("4.3", 3),
        ],
    ),
];

/// `GV-1.7-001` as (function, subcategory, number), or why it is malformed.
fn parse_action(id: &str) -> Result<(&'static str, String, u32), String> {
    let mut parts = id.split('-');
    let (Some(tag), Some(sub), Some(n), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{id}: not TAG-x.y-NNN"));
    };
    let function = match tag {
        "GV" => "GOVERN",
        "MP" => "MAP",
        "MS" => "MEASURE",
        "MG" => "MANAGE",
        _ => return Err(format!("{id}: unknown function tag {tag:?}")),
    };
    let (major, minor) = sub
        .split_once('.')
        .ok_or_else(|| format!("{id}: subcategory {sub:?} is not x.y"))?;
    for p in [major, minor] {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.starts_with('0') {
            return Err(format!("{id}: subcategory {sub:?} is not x.y"));
        }
    }
    if n.len() != 3 || !n.bytes().all(|b| b.is_ascii_digit()) || n == "000" {
        return Err(format!("{id}: number {n:?} is not 001-999"));
    }
    Ok((function, sub.to_string(), n.parse().unwrap()))
}

#[test]
fn action_ids_are_parsed_strictly() {
    assert_eq!(
        parse_action("MS-2.10-003"),
        Ok(("MEASURE", "2.10".to_string(), 3))
    );
    for bad in [
        "GV4.3--001",
        "GV-4.3-01",
        "XX-1.1-001",
        "GV-1-001",
        "GV-01.1-001",
        "GV-1.1-000",
        "GV-1.1-001-2",
        "gv-1.1-001",
    ] {
        assert!(parse_action(bad).is_err(), "{bad}");
    }
}

#[test]
fn nist_ai_600_1_actions_sit_under_the_subcategory_they_name() {
    let c = catalog("nist_ai_rmf").unwrap();
    assert!(c.edition.contains("NIST AI 600-1") && c.edition.contains("July 2024"));
    assert!(c.transcription.contains("NIST AI 600-1") && c.transcription.contains("July 2024"));
    let mut seen = BTreeSet::new();
    let mut per_function = std::collections::BTreeMap::new();
    let mut got = std::collections::BTreeMap::new();
    for r in &c.requirements {
        let (function, sub) = r.id.split_once(' ').unwrap();
        let mut numbers = Vec::new();
        for a in &r.actions {
            let (f, s, n) = parse_action(&a.id).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (f, s.as_str()),
                (function, sub),
                "{} sits under {}",
                a.id,
                r.id
            );
            assert!(seen.insert(a.id.clone()), "{} twice", a.id);
            numbers.push(n);
        }
        // Numbered 001..n in order, without gaps.
        assert_eq!(
            numbers,
            (1..=r.actions.len() as u32).collect::<Vec<_>>(),
            "{}",
            r.id
        );
        if !r.actions.is_empty() {
            *per_function.entry(function.to_string()).or_insert(0) += r.actions.len();
            got.insert(r.id.clone(), r.actions.len() as u32);
        }
    }
    let want: std::collections::BTreeMap<String, u32> = PROFILE_ACTIONS
        .iter()
        .flat_map(|(f, subs)| subs.iter().map(move |(s, n)| (format!("{f} {s}"), *n)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 49, "subcategories with actions");
    assert_eq!(seen.len(), 212, "actions transcribed");
    for (function, n) in [("GOVERN", 58), ("MAP", 39), ("MEASURE", 72), ("MANAGE", 43)] {
        assert_eq!(per_function[function], n, "{function}");
    }
    // The identifier printed as "GV4.3--001" is kept in its canonical form,
    // and the example "GV-1.1-002" of the explanatory text is not an action.
    assert!(seen.contains("GV-4.3-001"));
    assert!(!seen.contains("GV-1.1-002"));
    // Only the NIST AI RMF catalog carries profile actions.
    for f in FRAMEWORKS.iter().filter(|f| **f != "nist_ai_rmf") {
        assert!(
            catalog(f)
                .unwrap()
                .requirements
                .iter()
                .all(|r| r.actions.is_empty()),
            "{f}"
        );
    }
}

#[test]
fn an_action_claims_only_checks_its_subcategory_rests_on() {
    let c = catalog("nist_ai_rmf").unwrap();
    let mut evidenced = BTreeSet::new();
    for r in &c.requirements {
        for a in r.actions.iter().filter(|a| !a.checks.is_empty()) {
            assert!(
                r.coverage.assessed(),
                "{}: {} under an organizational subcategory",
                a.id,
                r.id
            );
            for k in &a.checks {
                assert!(
                    r.checks.contains(k),
                    "{}: {k} is not one of {}'s checks",
                    a.id,
                    r.id
                );
            }
            assert!(
                a.note.as_deref().is_some_and(|n| !n.is_empty()),
                "{}: say what part",
                a.id
            );
            evidenced.insert(a.id.as_str().to_string());
        }
    }
    // Most actions are organizational: these are the ones a check evidences.
    let want: BTreeSet<String> = ["GV-1.7-001", "MS-2.7-004", "MS-2.7-009", "MS-2.8-003"]
        .map(String::from)
        .into();
    assert_eq!(evidenced, want);
}

#[test]
fn an_evidenced_action_takes_its_result_from_its_own_checks() {
    let c = catalog("nist_ai_rmf").unwrap();
    let ms27 = c
        .requirements
        .iter()
        .find(|r| r.id == "MEASURE 2.7")
        .unwrap();
    let mut checks: Vec<CheckResult> = ms27
        .checks
        .iter()
        .map(|id| result(id, CheckStatus::Pass))
        .collect();
    let action = |v: &serde_json::Value, id: &str| {
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .clone()
    };
    let v = control(ms27, &checks);
    assert_eq!(v["actions"].as_array().unwrap().len(), 9);
    assert_eq!(action(&v, "MS-2.7-004")["result"], "satisfied");
    assert_eq!(
        action(&v, "MS-2.7-001")["result"],
        json!(null),
        "organizational"
    );
    // A failing configuration check fails MS-2.7-009 but not MS-2.7-004.
    let i = checks
        .iter()
        .position(|c| c.id == "config.permissions")
        .unwrap();
    checks[i].status = CheckStatus::Fail;
    checks[i].reasons = vec!["agent x holds the FULL preset".into()];
    let v = control(ms27, &checks);
    assert_eq!(v["result"], "not_satisfied");
    assert_eq!(action(&v, "MS-2.7-009")["result"], "not_satisfied");
    assert!(action(&v, "MS-2.7-009")["reasons"]
        .to_string()
        .contains("FULL preset"));
    assert_eq!(action(&v, "MS-2.7-004")["result"], "satisfied");
    // An erroring check leaves the action it evidences not assessed.
    let j = checks.iter().position(|c| c.id == "audit.denials").unwrap();
    checks[j].status = CheckStatus::Error;
    assert_eq!(
        action(&control(ms27, &checks), "MS-2.7-004")["result"],
        "not_assessed"
    );
}
