//! `switchyard doctor` end to end, on the real binary: a config whose dialect was renamed is
//! found, repaired in place with its comments and a backup, and then passes `check`; and, before
//! the repair, the relay still starts, serves the good upstream and answers for the stale one
//! with an error that names the fix.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A config as an operator would have it after an upgrade: commented, and with one upstream
/// still using the old dialect name `openai`.
const STALE: &str = r#"# Production relay. Owner: platform team.
[server]
listen = "127.0.0.1:8080"   # loopback only; the proxy in front terminates TLS

# The offline model, for smoke tests.
[upstreams.demo]
dialect = "mock"

# Migrated from 0.x.
[upstreams.legacy]
dialect = "openai"          # chat completions
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "mock"
targets = [{ upstream = "demo", model = "mock-1" }]

[[models]]
name = "legacy"   # still used by the batch jobs
targets = [{ upstream = "legacy" }]
"#;

/// A fresh directory under Cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("doctor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .expect("run switchyard")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn doctor_finds_and_fixes_a_renamed_dialect_keeping_every_comment() {
    let dir = scratch("fix");
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, STALE).unwrap();
    let path = config.to_str().unwrap();

    let check = switchyard(&["check", "--config", path]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains(&format!("switchyard doctor --fix --config {path}")), "{}", text(&check));

    let doctor = switchyard(&["doctor", "--config", path]);
    let out = text(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("{path}:11:1: upstreams.legacy.dialect: \"openai\" -> \"openai-completions\"")),
        "{out}"
    );
    assert!(out.contains("--fix applies this"), "{out}");
    assert!(out.contains("might have meant \"openai-responses\""), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), STALE, "doctor without --fix changed the file");
    assert!(!dir.join("switchyard.toml.bak").exists());

    let fix = switchyard(&["doctor", "--fix", "--config", path]);
    let out = text(&fix);
    assert_eq!(fix.status.code(), Some(0), "{out}");
    assert!(out.contains("fixed; could not decide: \"openai\" might have meant \"openai-responses\""), "{out}");
    assert!(out.contains("validation: ok"), "{out}");
    let fixed = std::fs::read_to_string(&config).unwrap();
    assert_eq!(fixed, STALE.replace("dialect = \"openai\" ", "dialect = \"openai-completions\" "));
    for comment in STALE.lines().filter_map(|line| line.find('#').map(|at| &line[at..])) {
        assert!(fixed.contains(comment), "lost {comment:?}:\n{fixed}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("switchyard.toml.bak")).unwrap(), STALE);

    let again = switchyard(&["doctor", "--config", path]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("no legacy or stale values found"), "{}", text(&again));
    let fix_again = switchyard(&["doctor", "--fix", "--config", path]);
    assert_eq!(fix_again.status.code(), Some(0), "{}", text(&fix_again));
    assert!(!dir.join("switchyard.toml.bak.1").exists(), "a second --fix wrote another backup");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), fixed);

    let check = switchyard(&["check", "--config", path]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(text(&check).contains("openai-completions"), "{}", text(&check));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn doctor_fix_leaves_a_guess_for_the_user_and_exits_1() {
    let dir = scratch("guess");
    let config = dir.join("switchyard.toml");
    let source = "[upstreams.demo]\ndialect = \"mock\"\nbase_ulr = \"http://x\"\n";
    std::fs::write(&config, source).unwrap();
    let fix = switchyard(&["doctor", "--fix", "--config", config.to_str().unwrap()]);
    let out = text(&fix);
    assert_eq!(fix.status.code(), Some(1), "{out}");
    assert!(out.contains(":3:1: upstreams.demo.base_ulr: rename key `base_ulr` to `base_url`"), "{out}");
    assert!(out.contains("not changed; could not decide"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), source);
    assert!(!dir.join("switchyard.toml.bak").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_fails_and_says_why_when_a_client_key_is_skipped() {
    let dir = scratch("key");
    let config = dir.join("switchyard.toml");
    let source = "[[keys]]\nname = \"only\"\nkey = \"${ONLY_KEY_UNSET}\"\n\n[upstreams.demo]\ndialect = \"mock\"\n\n[[models]]\nname = \"mock\"\ntargets = [{ upstream = \"demo\" }]\n";
    std::fs::write(&config, source).unwrap();
    let path = config.to_str().unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config", path])
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("ONLY_KEY_UNSET")
        .output()
        .unwrap();
    let out = text(&check);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("{path}:3:1: warning: keys.0.key: key \"only\" is disabled")), "{out}");
    assert!(out.contains("keys: (none usable: every request is refused); SKIPPED: only"), "{out}");
    assert!(out.contains("1 client key(s) skipped"), "{out}");
    assert!(!out.contains("\nok"), "{out}");

    let doctor = switchyard(&["doctor", "--config", path]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    assert!(!text(&doctor).contains("validation: ok"), "{}", text(&doctor));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn credentials_in_base_url_disable_the_upstream_and_are_never_printed() {
    let dir = scratch("base-url");
    let config = dir.join("switchyard.toml");
    let source = r#"
[upstreams.userinfo]
dialect = "openai-completions"
base_url = "http://user:PASS-21102@127.0.0.1:21102/v1"

[upstreams.query]
dialect = "openai-completions"
base_url = "http://127.0.0.1:21102/v1?key=SECRET-21102"

[upstreams.demo]
dialect = "mock"

[[models]]
name = "mock"
targets = [{ upstream = "demo" }]
"#;
    std::fs::write(&config, source).unwrap();
    let path = config.to_str().unwrap();
    for args in
        [vec!["check", "--config", path], vec!["probe", "--config", path], vec!["probe", "--json", "--config", path]]
    {
        let output = switchyard(&args);
        let out = text(&output);
        assert!(!out.contains("PASS-21102") && !out.contains("SECRET-21102"), "{args:?} printed a secret:\n{out}");
        assert!(out.contains("has credentials (user:password@) in it"), "{args:?}:\n{out}");
        assert!(out.contains("has a query string"), "{args:?}:\n{out}");
    }
    let check = switchyard(&["check", "--config", path]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains("2 upstream(s) disabled"), "{}", text(&check));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The relay process, killed when the test ends however it ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange on a fresh connection: status and JSON body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let mut payload = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let json =
        serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&payload)));
    (status, json)
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
}

#[test]
fn a_relay_with_a_stale_upstream_serves_the_rest_and_names_the_fix() {
    let dir = scratch("serve");
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, STALE).unwrap();
    let path = config.to_str().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config", path, "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("SWITCHYARD_LOG", "info")
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard serve");
    let mut relay = Relay(child);
    let stderr = relay.0.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    let addr: SocketAddr = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(remaining)
            .unwrap_or_else(|_| panic!("no listening line; log so far:\n{}", log.join("\n")));
        log.push(line.clone());
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["message"].as_str().is_some_and(|m| m.starts_with("switchyard listening")) {
            break event["addr"].as_str().expect("an addr field").parse().unwrap();
        }
    };

    let warned = log.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|event| {
        let message = event["message"].as_str().unwrap_or("");
        event["level"] == "WARN"
            && message.contains("upstreams.legacy.dialect")
            && message.contains(&format!("switchyard doctor --fix --config {path}"))
    });
    assert!(warned, "no warning naming the legacy upstream and doctor:\n{}", log.join("\n"));

    let chat = |model: &str| {
        http(
            addr,
            "POST",
            "/v1/chat/completions",
            Some(&format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)),
        )
    };
    let (status, body) = chat("mock");
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].is_string(), "{body}");

    let (status, body) = chat("legacy");
    assert_eq!(status, 503, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "upstream_disabled", "{body}");
    assert_eq!(error["upstream"], "legacy", "{body}");
    let message = error["message"].as_str().unwrap_or("");
    assert!(message.contains(&format!("switchyard doctor --fix --config {path}")), "{body}");

    let (status, body) = http(addr, "GET", "/readyz", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["upstreams"]["legacy"]["state"], "disabled", "{body}");
    assert_eq!(body["upstreams"]["demo"]["state"], "enabled", "{body}");

    drop(relay);
    std::fs::remove_dir_all(&dir).unwrap();
}
