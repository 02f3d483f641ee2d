//! `thetazero compliance` against the real server: status, report, drill,
//! a package written to disk and verified offline, and a tampered copy
//! refused.

mod common;

use std::io::{Cursor, Read, Write};
use std::process::Command;

use common::{register, Server, BIN};
use serde_json::{json, Value};

fn cli(server: &Server, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("compliance")
        .args(args)
        .env("THETAZERO_BASE_URL", &server.url)
        .env("THETAZERO_API_KEY", key)
        .output()
        .expect("run thetazero")
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_report_drill_package_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let key = server.owner_key().unwrap();
    let id = register(
        &server.url,
        &key,
        json!({"name": "cli-agent", "entry_code": "return 1;", "permissions": "FULL",
               "compliance": ["eu_ai_act", "soc2"]}),
    )
    .await;

    let status = json_of(&cli(
        &server,
        &key,
        &["status", "--json", "--agent", &id.to_string()],
    ));
    let ids: Vec<&str> = status["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["eu_ai_act", "soc2"]);
    let table = cli(&server, &key, &["status", "--agent", &id.to_string()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("holds the FULL preset"), "{text}");
    assert!(text.contains("not a certification"), "{text}");

    let drill = json_of(&cli(&server, &key, &["drill", "--json"]));
    assert_eq!(drill["drill"]["confirmed"], true, "{drill}");

    let report = json_of(&cli(
        &server,
        &key,
        &[
            "report",
            "--format",
            "json",
            "--framework",
            "eu_ai_act",
            "--out",
            "-",
        ],
    ));
    assert_eq!(report["schema"], "thetazero.compliance-report/v1");
    let drill_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "killswitch.drill")
        .unwrap();
    assert_eq!(drill_check["status"], "pass", "{drill_check}");
    let bad = cli(&server, &key, &["report", "--framework", "hipaa"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("hipaa"));

    let zip_path = dir.path().join("evidence.zip");
    let info = json_of(&cli(
        &server,
        &key,
        &[
            "package",
            "eu_ai_act",
            "--out",
            zip_path.to_str().unwrap(),
            "--json",
        ],
    ));
    let bytes = std::fs::read(&zip_path).unwrap();
    assert_eq!(info["bytes"], bytes.len());
    assert_eq!(
        info["sha256"].as_str().unwrap(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );

    let vkey = dir.path().join("vkey");
    let out = Command::new(BIN)
        .args(["audit", "key", "--url", &server.url])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&vkey, &out.stdout).unwrap();
    let ok = json_of(&cli(
        &server,
        &key,
        &[
            "verify",
            zip_path.to_str().unwrap(),
            "--key",
            vkey.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(ok["valid"], true, "{ok}");
    assert_eq!(ok["framework"], "eu_ai_act");

    // Change one evidence file and rebuild the archive.
    let mut archive = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name == "evidence/log.verification.json" {
            data = String::from_utf8(data)
                .unwrap()
                .replace("\"fail\"", "\"pass\"")
                .into_bytes();
            data.extend_from_slice(b" ");
        }
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(&data).unwrap();
    }
    let tampered = dir.path().join("tampered.zip");
    std::fs::write(&tampered, w.finish().unwrap().into_inner()).unwrap();
    let out = cli(
        &server,
        &key,
        &[
            "verify",
            tampered.to_str().unwrap(),
            "--key",
            vkey.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("digest_mismatch evidence/log.verification.json"),
        "{text}"
    );
    assert!(text.contains("INVALID"), "{text}");
}
