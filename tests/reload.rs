//! Hot reload: valid configs swap in atomically under load, invalid ones are rejected while the
//! last good config keeps serving, and a Kubernetes ConfigMap's `..data` symlink swap is seen.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::Relay;

fn config(models: &[&str]) -> String {
    let mut text = String::from("[upstreams.mock]\ndialect = \"mock\"\n");
    for model in models {
        text.push_str(&format!("\n[[models]]\nname = \"{model}\"\ntargets = [{{ upstream = \"mock\" }}]\n"));
    }
    text
}

/// Writes like an editor: a temp file renamed over the target.
fn save(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

async fn serves(relay: &Relay, model: &str) -> bool {
    let (status, _, _) =
        relay.chat(&[], &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})).await;
    status == 200
}

async fn wait_until(relay: &Relay, model: &str, want: bool) {
    for _ in 0..200 {
        if serves(relay, model).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("model {model} never became {}", if want { "served" } else { "unserved" });
}

async fn content_of(relay: &Relay, model: &str) -> serde_json::Value {
    let (_, _, body) = relay.chat(&[], &json!({"model": model, "messages": []})).await;
    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["choices"][0]["message"]["content"].clone()
}

fn reloads(relay: &Relay, result: &str) -> u64 {
    relay.running.metrics.config_reloads.with_label_values(&[result]).get()
}

#[tokio::test]
async fn a_reload_that_moves_an_upstream_sends_to_its_new_address() {
    use support::{MockUpstream, Reply};
    let completion = |content: &str| {
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})
        .to_string()
    };
    let (old, new) = (
        MockUpstream::always(Reply::json(200, completion("old"))).await,
        MockUpstream::always(Reply::json(200, completion("new"))).await,
    );
    let config = |url: &str| {
        format!("[upstreams.up]\ndialect = \"openai-completions\"\nbase_url = \"{url}/v1\"\n\n[[models]]\nname = \"m\"\ntargets = [{{ upstream = \"up\" }}]\n")
    };
    let dir = std::env::temp_dir().join(format!("switchyard-reload-move-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config(&old.url())).unwrap();
    let relay = Relay::start_watching(&path).await;
    assert_eq!(content_of(&relay, "m").await, "old");

    save(&path, &config(&new.url()));
    for _ in 0..200 {
        if reloads(&relay, "success") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(reloads(&relay, "success"), 1);
    // The old address's pooled connection must not carry requests meant for the new one.
    assert_eq!(content_of(&relay, "m").await, "new");
    assert_eq!(new.received().len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_reload_that_would_take_a_serving_upstream_or_model_out_or_serve_nothing_is_rejected() {
    let dir = std::env::temp_dir().join(format!("switchyard-reload-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config(&["first"])).unwrap();
    let relay = Relay::start_watching(&path).await;
    assert!(serves(&relay, "first").await);

    async fn wait_for_failures(relay: &Relay, count: u64) {
        for _ in 0..200 {
            if reloads(relay, "failure") >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("reload failures stayed below {count}");
    }
    // A typo in the serving upstream would disable it: a startup skips it, a reload keeps the last good.
    save(&path, &config(&["first"]).replace("dialect = \"mock\"", "dialect = \"mock\"\nbase_ulr = \"http://x\""));
    wait_for_failures(&relay, 1).await;
    assert!(serves(&relay, "first").await, "the upstream still serves");
    // A file truncated to nothing.
    save(&path, "");
    wait_for_failures(&relay, 2).await;
    assert!(serves(&relay, "first").await, "the last good config keeps serving");
    // The serving upstream replaced by one with a typo, and the model moved onto it.
    save(
        &path,
        "[upstreams.other]\ndialect = \"mokc\"\n\n[[models]]\nname = \"first\"\ntargets = [{ upstream = \"other\" }]\n",
    );
    wait_for_failures(&relay, 3).await;
    assert!(serves(&relay, "first").await, "the model keeps its upstream");
    assert_eq!(reloads(&relay, "success"), 0);

    save(&path, &config(&["first", "second"]));
    wait_until(&relay, "second", true).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request() {
    let dir = std::env::temp_dir().join(format!("switchyard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config(&["steady"])).unwrap();
    let relay = Arc::new(Relay::start_watching(&path).await);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (relay, stop, sent, failed) = (relay.clone(), stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let stream = sent.load(Ordering::Relaxed) % 2 == 0;
                let body =
                    json!({"model": "steady", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
                let (status, _, answer) = relay.chat(&[], &body).await;
                sent.fetch_add(1, Ordering::Relaxed);
                let complete = !stream || answer.ends_with(b"data: [DONE]\n\n");
                if status != 200 || !complete {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    save(&path, &config(&["steady", "second"]));
    wait_until(&relay, "second", true).await;
    assert_eq!(reloads(&relay, "success"), 1);

    save(
        &path,
        "[upstreams.mock]\ndialect = \"mock\"\n[[models]]\nname = \"steady\"\ntargets = [{ upstream = \"nope\" }]\n",
    );
    for _ in 0..200 {
        if reloads(&relay, "failure") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(reloads(&relay, "failure"), 1, "the invalid config was rejected");
    assert!(serves(&relay, "second").await, "the last good config keeps serving");

    save(&path, &config(&["steady", "third"]));
    wait_until(&relay, "third", true).await;
    wait_until(&relay, "second", false).await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 50, "load kept flowing during the swaps ({sent} requests)");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads (of {sent})");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The kubelet's atomic update of a ConfigMap volume: a new timestamped directory, a
/// `..data_tmp` symlink to it renamed over `..data`, then the old directory removed.
fn kubelet_swap(dir: &Path, generation: usize, text: &str) {
    use std::os::unix::fs::symlink;
    let versioned = dir.join(format!("..2026_11_21_00_00_{generation:02}.000000001"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("switchyard.toml"), text).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(versioned.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if !dir.join("switchyard.toml").exists() {
        symlink("..data/switchyard.toml", dir.join("switchyard.toml")).unwrap();
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_reloaded() {
    let dir = std::env::temp_dir().join(format!("switchyard-configmap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    kubelet_swap(&dir, 1, &config(&["before"]));
    let relay = Relay::start_watching(&dir.join("switchyard.toml")).await;
    assert!(serves(&relay, "before").await);
    for generation in 2..4 {
        let model = format!("after-{generation}");
        kubelet_swap(&dir, generation, &config(&[&model]));
        wait_until(&relay, &model, true).await;
        assert!(!serves(&relay, "before").await);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The relay binary serving `config(&["one"])` from a file of its own, its JSON log read line
/// by line.
struct Binary {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    child: std::process::Child,
    log: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

impl Binary {
    /// Started and listening.
    fn start(test: &str) -> Binary {
        Binary::spawn(test, true)
    }

    /// Started and listening on the embedded default config, with no file to reload.
    fn start_embedded(test: &str) -> Binary {
        Binary::spawn(test, false)
    }

    fn spawn(test: &str, with_file: bool) -> Binary {
        use std::io::BufRead;
        use std::process::{Command, Stdio};

        let dir = std::env::temp_dir().join(format!("switchyard-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchyard.toml");
        std::fs::write(&path, config(&["one"])).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        if with_file {
            command.arg("--config").arg(&path);
        }
        let mut child = command
            // As the deployments log.
            .env("SWITCHYARD_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut binary = Binary { dir, path, child, log };
        binary.wait_for("switchyard listening");
        binary
    }

    /// The next log line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        for line in self.log.by_ref() {
            let line = line.unwrap();
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the relay never logged {needle:?}");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args([name, &pid]).status().unwrap().success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sighup_reloads_the_running_binary() {
    let mut relay = Binary::start("sighup");
    relay.signal("-HUP");
    let reloaded = relay.wait_for("config reloaded");
    assert!(reloaded.contains("Signal"), "{reloaded}");
    assert!(relay.child.try_wait().unwrap().is_none(), "SIGHUP must not stop the relay");
    relay.signal("-TERM");
    let status = relay.child.wait().unwrap();
    assert!(status.success(), "SIGTERM drains and exits 0: {status}");
}

#[test]
fn sighup_without_a_config_file_is_ignored_not_fatal() {
    let mut relay = Binary::start_embedded("sighup-embedded");
    relay.signal("-HUP");
    let ignored = relay.wait_for("SIGHUP ignored");
    assert!(ignored.contains("no config file"), "{ignored}");
    assert!(relay.child.try_wait().unwrap().is_none(), "SIGHUP must not stop the relay");
    relay.signal("-TERM");
    let status = relay.child.wait().unwrap();
    assert!(status.success(), "SIGTERM drains and exits 0: {status}");
}

/// The config file turned into one whose read hangs, as on a hung NFS or FUSE mount: a FIFO
/// that this test keeps open for writing, so a reader's `read` waits for data until released.
struct HungConfig {
    writer: std::sync::Mutex<Option<std::fs::File>>,
    released: AtomicBool,
}

impl HungConfig {
    fn replace(path: &Path) -> Arc<Self> {
        let fifo = path.with_extension("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made =
            std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils) must be installed");
        assert!(made.success(), "mkfifo {} failed", fifo.display());
        // Read and write: opening a FIFO so does not wait for a reader (Linux), and while it is
        // open a reader's `read` waits instead of seeing the end of the file.
        let writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        std::fs::rename(&fifo, path).unwrap();
        Arc::new(HungConfig { writer: std::sync::Mutex::new(Some(writer)), released: AtomicBool::new(false) })
    }

    /// Lets the hung read end (it sees the end of the file).
    fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.writer.lock().unwrap().take();
    }

    /// Releases the read after `after` whatever happens, so that a relay that blocked on it
    /// shows up as a failed assertion rather than a test that never ends.
    fn release_after(self: &Arc<Self>, after: Duration) {
        let hung = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            hung.release();
        });
    }

    fn was_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}

/// How many of process `pid`'s open files are `path`.
fn open_count(pid: u32, path: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

/// Waits until process `pid` has `path` open at least `count` times.
fn wait_for_open(pid: u32, path: &Path, count: usize) {
    for _ in 0..400 {
        if open_count(pid, path) >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("process {pid} never opened {}", path.display());
}

// The default test runtime has one thread, as the relay has in a 1-CPU container: a read of the
// config on that thread would stall every request.
#[tokio::test]
async fn a_config_read_that_hangs_stalls_no_request() {
    let dir = std::env::temp_dir().join(format!("switchyard-hung-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config(&["one"])).unwrap();
    let relay = Relay::start_watching(&path).await;
    assert!(serves(&relay, "one").await);

    let hung = HungConfig::replace(&path);
    hung.release_after(Duration::from_secs(10));
    // Opened by the test's own writer, then by the watcher, whose read now waits.
    let watched = tokio::task::spawn_blocking({
        let path = path.canonicalize().unwrap();
        move || wait_for_open(std::process::id(), &path, 2)
    });
    watched.await.unwrap();
    for _ in 0..5 {
        assert!(serves(&relay, "one").await);
    }
    assert!(!hung.was_released(), "requests were answered only once the hung config read had ended");

    save(&path, &config(&["one", "two"]));
    hung.release();
    wait_until(&relay, "two", true).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_config_read_that_hangs_does_not_hold_up_shutdown() {
    let mut relay = Binary::start("hung-exit");
    let hung = HungConfig::replace(&relay.path);
    hung.release_after(Duration::from_secs(10));
    wait_for_open(relay.child.id(), &relay.path.canonicalize().unwrap(), 1);
    relay.signal("-TERM");
    let status = relay.child.wait().unwrap();
    assert!(!hung.was_released(), "the relay exited only once the hung config read had ended");
    assert!(status.success(), "SIGTERM drains and exits 0: {status}");
    hung.release();
}
