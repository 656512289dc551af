//! The Grafana dashboards (`deploy/grafana/*.json`) and the Prometheus alert
//! rules (`deploy/prometheus/switchboard-alerts.yml`) against what the
//! processes really export.
//!
//! Every metric a dashboard query or an alert expression names must be
//! exported by a real process: a standalone server and a small cluster (a
//! private Redis, one router, one gateway), run from the built binary and
//! given a little traffic. Counters and labelled series only appear once they
//! have counted something, so the traffic includes the events the panels
//! watch: a refused CONNECT, a recovery attempt, a parse error, a limit, a
//! slow reader, forwarded and server-API requests, bad messages on the
//! gateway's channel, Redis going away and coming back, and the router
//! leaving. Label names used in matchers must exist on the metric, and label
//! values must be ones the code can produce. Each scrape must parse as
//! Prometheus text.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_broker::{Broker, RedisBroker, RedisOptions};
use switchboard_gateway::SidSigner;
use switchboard_testkit::{ConnectError, RedisServer, TestClient, eventually, http, mint_hs256};

/// The dashboards, from the repository root.
const DASHBOARDS: [&str; 2] = ["deploy/grafana/switchboard-overview.json", "deploy/grafana/switchboard-cluster.json"];
/// The alert rules.
const ALERTS: &str = "deploy/prometheus/switchboard-alerts.yml";
/// The example Prometheus configuration.
const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";

/// Metrics the dashboards or alerts use that a process exports only after
/// an event this test cannot cause cheaply, with that event. Each must still
/// be recorded somewhere in the code.
const ONLY_AFTER_THE_EVENT: &[(&str, &str)] =
    &[("switchboard_gateway_cluster_lagged_total", "a gateway falling behind its Redis channel")];

/// Labels Prometheus adds to every series of a target (prometheus.yml).
const TARGET_LABELS: [&str; 4] = ["job", "instance", "pod", "namespace"];

const JWT_SECRET: &str = "dashboards-jwt-secret";
const CLUSTER_SECRET: &str = "dashboards-cluster-secret";
const API_KEY: &str = "dashboards-api-key";
const GATEWAY_ID: &str = "gateway-dashboards";

/// The longest any one wait may take.
const WAIT: Duration = Duration::from_secs(10);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------
// The files

/// A dashboard's queries, after checking its structure.
fn dashboard_queries(path: &str) -> Vec<String> {
    let model: Value = serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
    for key in ["uid", "title"] {
        assert!(model[key].as_str().is_some_and(|s| !s.is_empty()), "{path}: no {key}");
    }
    let variables: Vec<&Value> = model["templating"]["list"].as_array().expect("templating.list").iter().collect();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).copied();
    assert_eq!(variable("datasource").map(|v| &v["type"]), Some(&json!("datasource")), "{path}: $datasource");
    for name in ["job", "pod", "instance"] {
        let found = variable(name).unwrap_or_else(|| panic!("{path}: no ${name} variable"));
        assert_eq!(found["datasource"]["uid"], "${datasource}", "{path}: ${name} reads another data source");
    }

    let mut queries = Vec::new();
    let mut ids = BTreeSet::new();
    let mut stack: Vec<&Value> = model["panels"].as_array().expect("panels").iter().collect();
    assert!(!stack.is_empty(), "{path}: no panels");
    while let Some(panel) = stack.pop() {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "{path}: a panel without a title");
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{path}: panel id of {title:?} used twice");
        if panel["type"] == "row" {
            stack.extend(panel["panels"].as_array().into_iter().flatten());
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{path}: {title:?} reads another data source");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("{path}: {title:?} has no targets"));
        for target in targets {
            let expr = target["expr"].as_str().map(str::trim).unwrap_or_default();
            assert!(!expr.is_empty(), "{path}: {title:?} has a target without expr");
            queries.push(expr.to_owned());
        }
    }
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        queries.push(variable["definition"].as_str().expect("a query variable's definition").to_owned());
    }
    queries
}

/// The alert rules' expressions, after checking the rules' structure.
fn alert_queries() -> Vec<String> {
    let rules: Value = serde_norway::from_str(&read(ALERTS)).unwrap_or_else(|e| panic!("{ALERTS}: not YAML: {e}"));
    let groups = rules["groups"].as_array().filter(|g| !g.is_empty()).expect("a list of groups");
    let mut names = BTreeSet::new();
    let mut queries = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some_and(|n| !n.is_empty()), "a group without a name");
        for rule in group["rules"].as_array().filter(|r| !r.is_empty()).expect("a group's rules") {
            let alert = rule["alert"].as_str().expect("only alerting rules");
            assert!(alert.starts_with("Switchboard") && names.insert(alert), "{alert}: not unique or not ours");
            let expr = rule["expr"].as_str().map(str::trim).unwrap_or_default();
            assert!(!expr.is_empty(), "{alert}: no expr");
            assert!(rule["for"].is_string(), "{alert}: no `for`");
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("warning" | "critical")), "{alert}: severity {severity:?}");
            for key in ["summary", "description"] {
                assert!(rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{alert}: no {key}");
            }
            let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
            let anchor = runbook.strip_prefix("docs/operations.md#").unwrap_or_default();
            assert!(
                !anchor.is_empty() && anchor.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{alert}: runbook {runbook:?} is not docs/operations.md#<anchor>"
            );
            queries.push(expr.to_owned());
        }
    }
    queries
}

/// Every query of every dashboard and alert.
fn all_queries() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for path in DASHBOARDS {
        all.extend(dashboard_queries(path).into_iter().map(|q| (path.to_owned(), q)));
    }
    all.extend(alert_queries().into_iter().map(|q| (ALERTS.to_owned(), q)));
    all
}

// ---------------------------------------------------------------------------
// PromQL: the metric selectors of an expression

/// A label matcher of a selector: `label op "value"`.
#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// A Switchboard metric named in a query, with its matchers.
#[derive(Debug, Clone)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

/// A cursor over text, for the small parsers of this file.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.at += s.len();
        }
        found
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// `[A-Za-z_:][A-Za-z0-9_:]*` (colons only if `colons`).
    fn identifier(&mut self, colons: bool) -> Option<&'a str> {
        let start = self.at;
        let ok = |c: char, first: bool| {
            c == '_' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit()) || (colons && c == ':')
        };
        if !self.peek().is_some_and(|c| ok(c, true)) {
            return None;
        }
        while self.peek().is_some_and(|c| ok(c, false)) {
            self.bump();
        }
        Some(&self.text[start..self.at])
    }

    /// A quoted string (`"`, `'` or a backquote); escapes as in Go.
    fn quoted(&mut self) -> Result<String, String> {
        let quote = self.bump().filter(|q| matches!(q, '"' | '\'' | '`')).ok_or("expected a quoted string")?;
        let mut value = String::new();
        loop {
            match self.bump().ok_or("unterminated string")? {
                c if c == quote => return Ok(value),
                '\\' if quote != '`' => match self.bump().ok_or("unterminated escape")? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
    }

    /// `{label op "value", ...}`, the opening brace already eaten.
    fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
        let mut matchers = Vec::new();
        loop {
            self.skip_spaces();
            if self.eat("}") {
                return Ok(matchers);
            }
            let label = self.identifier(false).ok_or_else(|| format!("expected a label at {:?}", self.rest()))?;
            self.skip_spaces();
            let op = ["=~", "!~", "!=", "="].into_iter().find(|op| self.eat(op)).ok_or("expected a matcher")?;
            self.skip_spaces();
            let value = self.quoted()?;
            matchers.push(Matcher { label: label.to_owned(), op: op.to_owned(), value });
            self.skip_spaces();
            if !self.eat(",") && self.peek() != Some('}') {
                return Err(format!("expected , or }} at {:?}", self.rest()));
            }
        }
    }
}

/// The `switchboard_*` selectors of a PromQL expression (strings, other
/// metrics' matchers and label lists are skipped).
fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    let mut cursor = Cursor::new(expr);
    let mut found = Vec::new();
    while let Some(c) = cursor.peek() {
        if matches!(c, '"' | '\'' | '`') {
            cursor.quoted()?;
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations (`5m`, `1e3`) are not names.
            while cursor.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.') {
                cursor.bump();
            }
        } else if let Some(name) = cursor.identifier(true) {
            let after = cursor.at;
            cursor.skip_spaces();
            let matchers = if cursor.eat("{") { cursor.matchers()? } else { Vec::new() };
            if name.starts_with("switchboard_") {
                found.push(Selector { name: name.to_owned(), matchers });
            } else if matchers.is_empty() {
                cursor.at = after;
            }
        } else {
            cursor.bump();
        }
    }
    let depth = expr.chars().fold(0i32, |depth, c| match c {
        '(' => depth + 1,
        ')' => depth - 1,
        _ => depth,
    });
    if depth != 0 {
        return Err("unbalanced parentheses".to_owned());
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// The Prometheus text format

/// One sample of a scrape.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples of a scrape; an error names the first line that is not
/// `# HELP`/`# TYPE`/a comment, or `name{label="value",...} value [timestamp]`.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            match words.as_slice() {
                ["TYPE", name, kind] if is_metric_name(name) && TYPES.contains(kind) => {}
                ["TYPE", ..] => return Err(fail("bad TYPE line")),
                ["HELP", name, ..] if is_metric_name(name) => {}
                ["HELP", ..] => return Err(fail("bad HELP line")),
                _ => {}
            }
            continue;
        }
        samples.push(parse_sample(line).map_err(|why| fail(&why))?);
    }
    Ok(samples)
}

fn is_metric_name(name: &str) -> bool {
    let mut cursor = Cursor::new(name);
    cursor.identifier(true) == Some(name)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let mut cursor = Cursor::new(line);
    let name = cursor.identifier(true).ok_or("no metric name")?.to_owned();
    let mut labels = BTreeMap::new();
    if cursor.eat("{") {
        loop {
            if cursor.eat("}") {
                break;
            }
            let label = cursor.identifier(false).ok_or("bad label name")?.to_owned();
            if !cursor.eat("=") {
                return Err("expected =".to_owned());
            }
            let value = cursor.quoted()?;
            if labels.insert(label, value).is_some() {
                return Err("a label twice".to_owned());
            }
            if !cursor.eat(",") && cursor.peek() != Some('}') {
                return Err("expected , or }".to_owned());
            }
        }
    }
    if !cursor.eat(" ") {
        return Err("expected a space before the value".to_owned());
    }
    let mut fields = cursor.rest().split(' ');
    let value = fields.next().unwrap_or_default();
    let valid = value.parse::<f64>().is_ok() && !value.is_empty();
    if !valid {
        return Err(format!("bad value {value:?}"));
    }
    match (fields.next(), fields.next()) {
        (None, _) => {}
        (Some(timestamp), None) if timestamp.parse::<i64>().is_ok() => {}
        _ => return Err("trailing text".to_owned()),
    }
    Ok(Sample { name, labels })
}

// ---------------------------------------------------------------------------
// The checks

/// Every `.rs` file under `crates/*/src`, concatenated: where metric names
/// and label values are written.
fn source_code() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    for krate in std::fs::read_dir(repository().join("crates")).expect("crates/").flatten() {
        walk(&krate.path().join("src"), &mut out);
    }
    out
}

/// Label values a matcher may compare with: each alternative of a simple
/// regular expression (`a|b|c`), else the value itself.
fn alternatives(matcher: &Matcher) -> Vec<String> {
    if matcher.op.contains('~') {
        let simple = matcher.value.bytes().all(|b| b.is_ascii_alphanumeric() || b"|._ ".contains(&b));
        if !simple {
            return Vec::new();
        }
        return matcher.value.split('|').map(str::to_owned).collect();
    }
    vec![matcher.value.clone()]
}

/// Checks every selector of `queries` against the scraped samples.
fn check_against(queries: &[(String, String)], samples: &[Sample]) {
    let code = source_code();
    let mut labels: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for sample in samples {
        let seen = labels.entry(&sample.name).or_default();
        for (label, value) in &sample.labels {
            seen.entry(label).or_default().insert(value);
        }
    }
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (file, expr) in queries {
        if expr.contains("histogram_quantile") {
            problems.push(format!("{file}: histograms are exported as summaries, no buckets: {expr}"));
        }
        let selectors = selectors(expr).unwrap_or_else(|e| panic!("{file}: {e}: {expr}"));
        for selector in selectors {
            used.insert(selector.name.clone());
            let Some(seen) = labels.get(selector.name.as_str()) else {
                match ONLY_AFTER_THE_EVENT.iter().find(|(name, _)| *name == selector.name) {
                    Some(_) if code.contains(&format!("\"{}\"", selector.name)) => {}
                    Some(_) => problems.push(format!("{file}: {} is recorded nowhere in the code", selector.name)),
                    None => problems.push(format!("{file}: {} is not exported by any process", selector.name)),
                }
                continue;
            };
            for matcher in &selector.matchers {
                if TARGET_LABELS.contains(&matcher.label.as_str()) {
                    continue;
                }
                let Some(values) = seen.get(matcher.label.as_str()) else {
                    problems.push(format!("{file}: {} has no label {:?}", selector.name, matcher.label));
                    continue;
                };
                for value in alternatives(matcher) {
                    let known = values.contains(value.as_str()) || code.contains(&format!("\"{value}\""));
                    if !known {
                        problems
                            .push(format!("{file}: {}{{{}}}: no such value {value:?}", selector.name, matcher.label));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "dashboards and alerts vs. /metrics:\n{}", problems.join("\n"));
    for (name, event) in ONLY_AFTER_THE_EVENT {
        assert!(used.contains(*name), "{name} ({event}) is no longer used: remove it from ONLY_AFTER_THE_EVENT");
    }
}

#[test]
fn the_dashboards_and_alert_rules_are_well_formed() {
    let queries = all_queries();
    assert!(queries.len() > 40, "only {} queries", queries.len());
    let mut names = BTreeSet::new();
    for (file, expr) in &queries {
        let selectors = selectors(expr).unwrap_or_else(|e| panic!("{file}: {e}: {expr}"));
        names.extend(selectors.into_iter().map(|s| s.name));
    }
    for name in &names {
        assert!(!name.ends_with("_bucket"), "{name}: histograms are exported as summaries, without buckets");
    }
    // The example configuration loads the rules and has the jobs they name.
    let config: Value = serde_norway::from_str(&read(PROMETHEUS)).expect("prometheus.yml is YAML");
    assert!(config["rule_files"].as_array().expect("rule_files").contains(&json!("switchboard-alerts.yml")));
    let jobs: BTreeSet<&str> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .filter_map(|j| j["job_name"].as_str())
        .collect();
    for job in ["switchboard-gateway", "switchboard-router", "switchboard-standalone"] {
        assert!(jobs.contains(job), "prometheus.yml: no job {job}");
    }
    for expr in alert_queries() {
        let mut cursor = Cursor::new(&expr);
        while let Some(found) = cursor.rest().find("job=\"") {
            cursor.at += found + "job=".len();
            let job = cursor.quoted().expect("a job name");
            assert!(
                jobs.contains(job.as_str()),
                "an alert names the job {job:?}, which prometheus.yml does not scrape"
            );
        }
    }
}

#[test]
fn the_exposition_parser_rejects_what_prometheus_would() {
    let good =
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\nb 1.5e-3 1700000000\nc NaN\n";
    assert_eq!(parse_exposition(good).map(|s| s.len()), Ok(3));
    for bad in ["a_total{x=1} 3", "a_total 3 4 5", "a-b 1", "a_total{x=\"1\"}3", "a_total", "# TYPE a nope"] {
        assert!(parse_exposition(bad).is_err(), "{bad:?} accepted");
    }
    let parsed =
        selectors(r#"sum by (x) (rate(switchboard_a_total{job=~"$job", y!="b"}[5m])) / up{z="switchboard_no"}"#)
            .expect("parses");
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].name, "switchboard_a_total");
    assert_eq!(parsed[0].matchers.len(), 2);
}

// ---------------------------------------------------------------------------
// The processes

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A `switchboard` child process, killed when dropped.
struct Process(Child);

impl Process {
    /// Starts `switchboard [role]` with `env` (and no SWITCHBOARD_* setting
    /// from this test's own environment).
    fn start(role: Option<&str>, env: &[(&str, String)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command.args(role);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SWITCHBOARD_")) {
            command.env_remove(name);
        }
        command.env("SWITCHBOARD_LOG", "error");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn();
        Process(child.expect("the binary starts"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ready(admin: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(admin).await.is_ok()
        && http::request(admin, "GET", "/readyz", &[], None).await.status == 200
}

async fn scrape(admin: SocketAddr) -> String {
    let response = http::request(admin, "GET", "/metrics", &[], None).await;
    assert_eq!(response.status, 200, "GET /metrics on {admin}");
    response.text
}

/// Scrapes `admin` until it exports `name`; the last scrape.
async fn exported(admin: SocketAddr, name: &str) -> String {
    eventually(&format!("{name} on {admin}"), WAIT, || async {
        let text = scrape(admin).await;
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("/metrics of {admin}: {e}"));
        samples.iter().any(|s| s.name == name).then_some(text)
    })
    .await
}

fn auth(user: &str) -> Value {
    json!({ "token": mint_hs256(JWT_SECRET, user, user, "user", 300) })
}

async fn api(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> http::HttpResponse {
    let body = body.map(|b| b.to_string());
    let key = format!("Bearer {API_KEY}");
    http::request(addr, method, path, &[("authorization", &key)], body.as_deref().map(str::as_bytes)).await
}

/// Two users chatting in a room, and the events the panels count besides.
async fn chat_traffic(addr: SocketAddr) {
    let mut alice = TestClient::connect(addr, "/", auth("alice")).await.expect("alice connects");
    let mut bob = TestClient::connect(addr, "/", auth("bob")).await.expect("bob connects");
    for client in [&alice, &bob] {
        assert_eq!(client.ack("room:join", json!("lobby")).await, json!({"ok": true}));
    }
    alice.emit("room:message", &[json!({"roomId": "lobby", "text": "hello"})]);
    assert_eq!(bob.wait_for("room:message").await.data()["text"], "hello");
    let sent = alice.ack("message:send", json!({"roomId": "lobby", "content": "kept"})).await;
    let id = sent["id"].as_str().unwrap_or_else(|| panic!("message:send answered {sent}")).to_owned();
    let read = bob.ack("message:read", json!({"roomId": "lobby", "messageId": id})).await;
    assert!(read.get("error").is_none(), "message:read answered {read}");
    alice.clear();

    let too_long = alice.ack("room:join", json!("r".repeat(200))).await;
    assert!(too_long.get("error").is_some(), "a 200-character room name was accepted: {too_long}");
    let refused = TestClient::connect(addr, "/", json!({"token": "not a token"})).await;
    assert!(matches!(refused, Err(ConnectError::Refused { .. })), "{refused:?}");
    let mut recovering = auth("carol");
    recovering["pid"] = json!("no-such-pid");
    recovering["offset"] = json!("0-0");
    let mut carol = TestClient::connect(addr, "/", recovering).await.expect("carol connects");
    // An Engine.IO message whose content is not a Socket.IO packet.
    carol.send_raw("4not a Socket.IO packet");
    carol.wait_disconnect().await;

    for (method, path, body) in [
        ("POST", "/api/emit", Some(json!({"event": "news", "data": 1, "rooms": ["lobby"]}))),
        ("POST", "/api/notify", Some(json!({"userId": "bob", "data": {"text": "ping"}}))),
        ("POST", "/api/users/bob/join", Some(json!({"room": "side"}))),
        ("GET", "/api/users/online", None),
        ("GET", "/api/rooms/lobby/members", None),
        ("GET", "/api/rooms/lobby/history", None),
    ] {
        let response = api(addr, method, path, body).await;
        assert_eq!(response.status, 200, "{method} {path}: {}", response.text);
    }
    let wrong_key = http::request(addr, "GET", "/api/users/online", &[("x-api-key", "wrong")], None).await;
    assert_eq!(wrong_key.status, 401);

    alice.disconnect();
    bob.disconnect();
    alice.wait_disconnect().await;
    bob.wait_disconnect().await;
}

/// A polling client that joins `lobby` and then never polls, while the
/// server API fills its queue past SWITCHBOARD_MAX_PENDING_BYTES.
async fn slow_reader(addr: SocketAddr) {
    let open = http::request(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], None).await;
    let handshake: Value = open.text.strip_prefix('0').and_then(|j| serde_json::from_str(j).ok()).expect("an OPEN");
    let sid = handshake["sid"].as_str().expect("a sid").to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for packet in [format!("40{}", auth("erin")), r#"42["room:join","lobby"]"#.to_owned()] {
        let posted = http::request(addr, "POST", &path, &[], Some(packet.as_bytes())).await;
        assert_eq!(posted.status, 200, "POST {packet}: {}", posted.text);
    }
    eventually("erin in lobby", WAIT, || async {
        let members = api(addr, "GET", "/api/rooms/lobby/members", None).await;
        members.body["users"].as_array().is_some_and(|users| users.contains(&json!("erin"))).then_some(())
    })
    .await;
    let text = "x".repeat(1000);
    for _ in 0..12 {
        let emitted = api(addr, "POST", "/api/emit", Some(json!({"event": "news", "data": text, "rooms": ["lobby"]})));
        assert_eq!(emitted.await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_use_is_exported() {
    let queries = all_queries();
    let mut redis = RedisServer::start();
    let standalone = (local(free_port()), local(free_port()));
    let gateway = (local(free_port()), local(free_port()));
    let router_admin = local(free_port());
    let common = [("SWITCHBOARD_JWT_SECRET", JWT_SECRET.to_owned()), ("SWITCHBOARD_API_KEY", API_KEY.to_owned())];

    let _standalone = Process::start(
        None,
        &[
            common[0].clone(),
            common[1].clone(),
            ("SWITCHBOARD_LISTEN", standalone.0.to_string()),
            ("SWITCHBOARD_ADMIN_LISTEN", standalone.1.to_string()),
            // Small queues, so that a client that stops reading is cut off soon.
            ("SWITCHBOARD_MAX_HTTP_BUFFER_SIZE", "4KiB".to_owned()),
            ("SWITCHBOARD_MAX_PENDING_BYTES", "8KiB".to_owned()),
        ],
    );
    let mut router = Process::start(
        Some("router"),
        &[
            ("SWITCHBOARD_REDIS_URL", redis.url()),
            ("SWITCHBOARD_GRPC_LISTEN", local(free_port()).to_string()),
            ("SWITCHBOARD_ADMIN_LISTEN", router_admin.to_string()),
            ("SWITCHBOARD_NODE_ID", "router-dashboards".to_owned()),
        ],
    );
    let _gateway = Process::start(
        Some("gateway"),
        &[
            common[0].clone(),
            common[1].clone(),
            ("SWITCHBOARD_REDIS_URL", redis.url()),
            ("SWITCHBOARD_LISTEN", gateway.0.to_string()),
            ("SWITCHBOARD_ADMIN_LISTEN", gateway.1.to_string()),
            ("SWITCHBOARD_NODE_ID", GATEWAY_ID.to_owned()),
            ("SWITCHBOARD_CLUSTER_SECRET", CLUSTER_SECRET.to_owned()),
        ],
    );
    for admin in [standalone.1, router_admin, gateway.1] {
        eventually(&format!("{admin} ready"), WAIT, || async { ready(admin).await.then_some(()) }).await;
    }

    // Traffic on both, and a slow reader on the standalone server.
    tokio::join!(chat_traffic(standalone.0), chat_traffic(gateway.0));
    slow_reader(standalone.0).await;
    let standalone_scrape = exported(standalone.1, "switchboard_gateway_slow_reader_disconnects_total").await;
    exported(standalone.1, "switchboard_gateway_parse_errors_total").await;

    // Cluster only: a request for a session of a gateway that is gone, and
    // messages on the gateway's channel that are not deliveries.
    let gone = SidSigner::new("gateway-gone", CLUSTER_SECRET.as_bytes()).mint();
    let forwarded = format!("/socket.io/?EIO=4&transport=polling&sid={gone}");
    assert_eq!(http::request(gateway.0, "GET", &forwarded, &[], None).await.status, 400);
    let broker = RedisBroker::connect(&redis.url(), RedisOptions::default()).await.expect("redis");
    let channel = format!("sb:gw:{GATEWAY_ID}");
    for message in [Bytes::from_static(b"\xff\xff\xff"), Bytes::new()] {
        assert_eq!(broker.publish(&channel, message).await.expect("PUBLISH"), 1, "the gateway listens on {channel}");
    }
    drop(broker);
    exported(gateway.1, "switchboard_gateway_cluster_unsupported_messages_total").await;
    exported(gateway.1, "switchboard_gateway_cluster_commands_total").await;
    exported(router_admin, "switchboard_router_batches_total").await;

    // Redis goes away and comes back.
    redis.stop();
    exported(gateway.1, "switchboard_broker_redis_errors_total").await;
    redis.restart();
    exported(gateway.1, "switchboard_broker_redis_reconnects_total").await;

    // The router leaves: the gateway's session with it fails.
    let router_scrape = scrape(router_admin).await;
    let _ = router.0.kill();
    let _ = router.0.wait();
    let gateway_scrape = exported(gateway.1, "switchboard_gateway_router_session_failures_total").await;

    let mut samples = Vec::new();
    for (who, text) in [("standalone", &standalone_scrape), ("router", &router_scrape), ("gateway", &gateway_scrape)] {
        let parsed = parse_exposition(text).unwrap_or_else(|e| panic!("/metrics of the {who}: {e}"));
        assert!(parsed.iter().all(|s| s.name.starts_with("switchboard_")), "{who}: a metric not named switchboard_*");
        samples.extend(parsed);
    }
    check_against(&queries, &samples);
}
