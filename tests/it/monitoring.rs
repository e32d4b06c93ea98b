//! The observability pack (deploy/grafana, deploy/prometheus) against the
//! real server: every metric the dashboard and the alerts use is exported
//! by `/metrics`, and the rules pass `promtool check rules`.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use support::TestServer;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The server's metric names that `text` (PromQL in JSON or YAML) uses:
/// the words starting `ao_` or `process_`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &text[i..];
        if starts_word && (rest.starts_with("ao_") || rest.starts_with("process_")) {
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            names.insert(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let ts = TestServer::start().await;
    let exported = reqwest::get(format!("http://{}/metrics", ts.addr()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let samples: BTreeSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard = read("deploy/grafana/always-online.json");
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let alerts = read("deploy/prometheus/alerts.yml");
    let used: BTreeSet<String> = metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    assert!(used.len() > 15, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !samples.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\nexported: {samples:?}"
    );
}

#[test]
fn the_alerting_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
