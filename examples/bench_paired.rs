//! Interleaved latency measurement for the benchmark harness (`bench/run.sh`).
//!
//! Not part of the relay. oha measures one path at a time, so two paths' figures come from
//! runs seconds apart, and this VM's background drifts by more than the differences being
//! judged. This tool measures all paths in one run: time is cut into slices, each slice sends
//! to one path at the fixed rate, and every cycle gives each path one slice in a shuffled order.
//! A drift then hits every path alike, and the paired unit (one cycle) is what the confidence
//! intervals resample.
//!
//! Usage: `bench_paired [--rate N | --max] [--connections N] [--seconds N] [--slice-ms N]
//! [--warmup-ms N] [--resamples N] [--compare A:B]... --body JSON NAME=URL...`
//!
//! - Each path sees `--rate` requests per second while its slice runs, over `--connections`
//!   keep-alive connections of its own, as with `oha -q RATE -c CONNECTIONS`.
//! - A request's latency counts from the moment the schedule released it, so a request that
//!   waits for a free connection is charged for the wait (open loop, like oha's
//!   `--latency-correction`, which also starts the clock when its rate ticker fires).
//! - The first `--warmup-ms` of every slice is sent but not counted: the path's caches are cold
//!   after the other paths' slices.
//! - The first path is the baseline. A path's *added* latency is its percentile minus the
//!   baseline's. `--compare A:B` reports A's added latency over B's.
//! - Confidence intervals (95 %) come from resampling whole cycles with replacement.
//! - `--max` measures throughput instead, closed loop, as `oha -c CONNECTIONS` does: while a
//!   path's slice runs, each of its connections sends its next request as soon as the last one is
//!   answered, and when the slice ends they stop. The requests answered after a slice's warm-up
//!   and before its end count. The report gives each path's req/s and, for `--compare A:B`, A's
//!   req/s over B's, with the same cycle-resampled intervals.
//!
//! A body containing `"stream":true` asks for streams. Every response must be a 200, a stream
//! must end with `data: [DONE]`, and every request must be answered within 10 s of the last
//! slice; otherwise the tool exits non-zero. It prints one JSON document on stdout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

const PERCENTILES: [(&str, f64); 4] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999)];
/// The percentiles the comparisons and their intervals are given for.
const COMPARED: [(&str, f64); 2] = [("p50", 0.50), ("p99", 0.99)];
const STREAM_END: &[u8] = b"data: [DONE]\n\n";

struct Options {
    rate: u32,
    max: bool,
    connections: usize,
    seconds: u32,
    slice: Duration,
    warmup: Duration,
    resamples: usize,
    compare: Vec<(String, String)>,
    body: Bytes,
    paths: Vec<(String, Uri)>,
}

fn usage(problem: &str) -> ! {
    eprintln!("bench_paired: {problem}");
    eprintln!(
        "usage: bench_paired [--rate N | --max] [--connections N] [--seconds N] [--slice-ms N] \
         [--warmup-ms N] [--resamples N] [--compare A:B]... --body JSON NAME=URL..."
    );
    std::process::exit(2);
}

fn parse_options() -> Options {
    let mut options = Options {
        rate: 1000,
        max: false,
        connections: 16,
        seconds: 10,
        slice: Duration::from_millis(500),
        warmup: Duration::from_millis(20),
        resamples: 2000,
        compare: Vec::new(),
        body: Bytes::new(),
        paths: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        fn number<T: std::str::FromStr>(name: &str, text: String) -> T {
            text.parse().unwrap_or_else(|_| usage(&format!("{name}: not a number: {text}")))
        }
        match arg.as_str() {
            "--rate" => options.rate = number("--rate", value("--rate")),
            "--max" => options.max = true,
            "--connections" => options.connections = number("--connections", value("--connections")),
            "--seconds" => options.seconds = number("--seconds", value("--seconds")),
            "--slice-ms" => options.slice = Duration::from_millis(number("--slice-ms", value("--slice-ms"))),
            "--warmup-ms" => options.warmup = Duration::from_millis(number("--warmup-ms", value("--warmup-ms"))),
            "--resamples" => options.resamples = number("--resamples", value("--resamples")),
            "--compare" => {
                let pair = value("--compare");
                let (a, b) = pair.split_once(':').unwrap_or_else(|| usage(&format!("--compare wants A:B, got {pair}")));
                options.compare.push((a.to_owned(), b.to_owned()));
            }
            "--body" => options.body = Bytes::from(value("--body")),
            path => {
                let (name, url) = path.split_once('=').unwrap_or_else(|| usage(&format!("not NAME=URL: {path}")));
                let uri: Uri = url.parse().unwrap_or_else(|_| usage(&format!("not a URL: {url}")));
                options.paths.push((name.to_owned(), uri));
            }
        }
    }
    if options.paths.len() < 2 {
        usage("give a baseline path and at least one more");
    }
    if options.body.is_empty() {
        usage("--body is required");
    }
    if options.rate == 0 || options.connections == 0 || options.seconds == 0 || options.warmup >= options.slice {
        usage("rate, connections and seconds must be positive, and the warm-up shorter than a slice");
    }
    for (a, b) in &options.compare {
        for name in [a, b] {
            if !options.paths.iter().any(|(path, _)| path == name) {
                usage(&format!("--compare names an unknown path: {name}"));
            }
        }
    }
    options
}

/// One counted request: which cycle it was sent in, and its latencies in microseconds.
#[derive(Clone, Copy)]
struct Sample {
    cycle: usize,
    total_us: f64,
    first_byte_us: f64,
}

/// A request the schedule has released: when, in which cycle, and whether it counts.
struct Due {
    at: Instant,
    cycle: usize,
    counted: bool,
}

#[derive(Default)]
struct Tally {
    samples: Vec<Sample>,
    /// With `--max`: requests answered within each cycle's counted part of the path's slice.
    completions: Vec<u64>,
    errors: BTreeMap<String, u64>,
    sent: u64,
}

/// With `--max`: the slice that is running, which the closed-loop workers follow.
#[derive(Clone, Copy)]
struct Slice {
    path: usize,
    cycle: usize,
    counted: bool,
    count_from: Instant,
    ends: Instant,
}

struct Turns {
    running: std::cell::Cell<Option<Slice>>,
    /// Per path: its slice has started.
    started: Vec<tokio::sync::Notify>,
    finished: std::cell::Cell<bool>,
}

struct Path {
    name: String,
    /// The request target: the URL's path and query.
    target: Uri,
    host: HeaderValue,
    address: SocketAddr,
}

async fn connect(path: &Path) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(path.address).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The worker's connection, opened first if it has none; a failure to open it is counted.
async fn connected<'a>(
    sender: &'a mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    path: &Path,
    tally: &std::cell::RefCell<Tally>,
) -> Option<&'a mut hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    if sender.is_none() {
        match connect(path).await {
            Ok(opened) => *sender = Some(opened),
            Err(error) => {
                *tally.borrow_mut().errors.entry(error).or_default() += 1;
                return None;
            }
        }
    }
    sender.as_mut()
}

/// Sends one request and reads its whole answer: (time to the response head, time to the end).
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &Path,
    body: &Bytes,
    stream: bool,
    due: Instant,
) -> Result<(Duration, Duration), String> {
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = path.target.clone();
    let headers = request.headers_mut();
    headers.insert(HOST, path.host.clone());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(USER_AGENT, HeaderValue::from_static("bench_paired"));
    let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
    let first_byte = due.elapsed();
    let status = response.status();
    let collected = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    let total = due.elapsed();
    if status != StatusCode::OK {
        return Err(format!("status {}", status.as_u16()));
    }
    if stream && !collected.ends_with(STREAM_END) {
        return Err("stream did not end with data: [DONE]".to_owned());
    }
    if collected.is_empty() {
        return Err("empty body".to_owned());
    }
    Ok((first_byte, total))
}

async fn worker(
    path: Rc<Path>,
    queue: Rc<Mutex<mpsc::UnboundedReceiver<Due>>>,
    tally: Rc<std::cell::RefCell<Tally>>,
    body: Bytes,
    stream: bool,
) {
    let mut sender = None;
    loop {
        let Some(due) = queue.lock().await.recv().await else { return };
        let Some(connection) = connected(&mut sender, &path, &tally).await else { continue };
        let result = exchange(connection, &path, &body, stream, due.at).await;
        let mut tally = tally.borrow_mut();
        tally.sent += 1;
        match result {
            Ok((first_byte, total)) if due.counted => tally.samples.push(Sample {
                cycle: due.cycle,
                total_us: total.as_secs_f64() * 1e6,
                first_byte_us: first_byte.as_secs_f64() * 1e6,
            }),
            Ok(_) => {}
            Err(error) => {
                *tally.errors.entry(error).or_default() += 1;
                sender = None;
            }
        }
    }
}

/// A closed-loop connection of `--max`: sends while its path's slice runs, one request after
/// another, and waits for the path's next slice otherwise.
async fn max_worker(
    index: usize,
    path: Rc<Path>,
    turns: Rc<Turns>,
    tally: Rc<std::cell::RefCell<Tally>>,
    body: Bytes,
    stream: bool,
) {
    let mut sender = None;
    loop {
        let slice = match turns.running.get() {
            Some(slice) if slice.path == index && Instant::now() < slice.ends => slice,
            _ if turns.finished.get() => return,
            // Single-threaded: no slice can start between the check above and this wait.
            _ => {
                turns.started[index].notified().await;
                continue;
            }
        };
        let Some(connection) = connected(&mut sender, &path, &tally).await else { continue };
        let sent = Instant::now();
        let result = exchange(connection, &path, &body, stream, sent).await;
        let answered = Instant::now();
        let mut tally = tally.borrow_mut();
        tally.sent += 1;
        match result {
            Ok(_) if slice.counted && answered >= slice.count_from && answered <= slice.ends => {
                tally.completions[slice.cycle] += 1;
            }
            Ok(_) => {}
            Err(error) => {
                *tally.errors.entry(error).or_default() += 1;
                sender = None;
            }
        }
    }
}

/// The index of the `q`-quantile among `len` sorted values, by the nearest rank (as oha and
/// most load generators do).
fn rank(len: usize, q: f64) -> usize {
    ((q * len as f64).ceil() as usize).clamp(1, len) - 1
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[rank(sorted.len(), q)]
}

/// The compared quantiles of unsorted values, by selection rather than a sort: the bootstrap
/// takes them thousands of times.
fn compared_quantiles(mut values: Vec<f64>) -> Vec<f64> {
    if values.is_empty() {
        return vec![f64::NAN; COMPARED.len()];
    }
    let len = values.len();
    COMPARED.iter().map(|&(_, q)| *values.select_nth_unstable_by(rank(len, q), f64::total_cmp).1).collect()
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// The 2.5th and 97.5th percentiles of bootstrap estimates.
fn interval(mut estimates: Vec<f64>) -> [f64; 2] {
    estimates.retain(|e| e.is_finite());
    if estimates.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    let estimates = sorted(estimates);
    [quantile(&estimates, 0.025), quantile(&estimates, 0.975)]
}

/// Microseconds and req/s, to two decimals.
fn json_number(value: f64) -> serde_json::Value {
    rounded(value, 100.0)
}

/// Ratios, to four decimals: the report judges them against a target, and a bound of 0.795 or
/// 1.2549 rounded to two decimals would land on it.
fn json_ratio(value: f64) -> serde_json::Value {
    rounded(value, 10_000.0)
}

fn rounded(value: f64, scale: f64) -> serde_json::Value {
    serde_json::Number::from_f64((value * scale).round() / scale)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Per path, the latencies (of one kind) grouped by cycle, so that cycles can be resampled.
fn by_cycle(samples: &[Sample], cycles: usize, pick: fn(&Sample) -> f64) -> Vec<Vec<f64>> {
    let mut grouped = vec![Vec::new(); cycles];
    for sample in samples {
        grouped[sample.cycle].push(pick(sample));
    }
    grouped
}

fn pooled(groups: &[Vec<f64>], cycles: &[usize]) -> Vec<f64> {
    cycles.iter().flat_map(|&c| groups[c].iter().copied()).collect()
}

/// The index of a path `--compare` names (checked when the options were parsed).
fn path_index(options: &Options, name: &str) -> usize {
    options.paths.iter().position(|(n, _)| n == name).expect("checked when parsed")
}

/// `resamples` draws of `cycles` cycle numbers with replacement.
fn resampled_cycles(cycles: usize, resamples: usize) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let all_cycles: Vec<usize> = (0..cycles).collect();
    (0..resamples)
        .map(|_| (0..cycles).map(|_| *all_cycles.choose(&mut rng).expect("at least one cycle")).collect())
        .collect()
}

fn counts_and_settings(
    options: &Options,
    tallies: &[Tally],
    cycles: usize,
    report: &mut serde_json::Map<String, serde_json::Value>,
) {
    report.insert(
        "counts".to_owned(),
        options
            .paths
            .iter()
            .zip(tallies)
            .map(|((name, _), t)| {
                let counted = if options.max { t.completions.iter().sum::<u64>() as usize } else { t.samples.len() };
                (name.clone(), serde_json::json!({ "counted": counted, "sent": t.sent, "errors": t.errors }))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    report.insert(
        "settings".to_owned(),
        serde_json::json!({
            "rate": if options.max { serde_json::Value::Null } else { options.rate.into() },
            "max": options.max, "connections": options.connections, "seconds_per_path": options.seconds,
            "slice_ms": options.slice.as_millis() as u64, "warmup_ms": options.warmup.as_millis() as u64,
            "cycles": cycles, "resamples": options.resamples,
        }),
    );
}

/// `--max`: each path's req/s over the counted parts of its slices, and the compared paths'
/// ratios, with intervals from resampled cycles.
fn analyse_throughput(options: &Options, tallies: &[Tally], cycles: usize) -> serde_json::Value {
    let counted_seconds = (options.slice - options.warmup).as_secs_f64();
    let rate = |tally: &Tally, drawn: &[usize]| {
        drawn.iter().map(|&c| tally.completions[c]).sum::<u64>() as f64 / (drawn.len() as f64 * counted_seconds)
    };
    let all_cycles: Vec<usize> = (0..cycles).collect();
    let resampled = resampled_cycles(cycles, options.resamples);
    let paths: serde_json::Map<_, _> = options
        .paths
        .iter()
        .zip(tallies)
        .map(|((name, _), tally)| {
            (name.clone(), serde_json::json!({ "req_per_s": json_number(rate(tally, &all_cycles)) }))
        })
        .collect();
    let mut comparisons = serde_json::Map::new();
    for (a, b) in &options.compare {
        let (ia, ib) = (path_index(options, a), path_index(options, b));
        let ratio = |drawn: &[usize]| rate(&tallies[ia], drawn) / rate(&tallies[ib], drawn);
        let ratios = resampled.iter().map(|drawn| ratio(drawn)).collect();
        comparisons.insert(
            format!("{a}:{b}"),
            serde_json::json!({
                "ratio": json_ratio(ratio(&all_cycles)),
                "ratio_ci95": interval(ratios).map(json_ratio),
            }),
        );
    }
    let mut report = serde_json::Map::new();
    report.insert("throughput".to_owned(), serde_json::json!({ "paths": paths, "compare": comparisons }));
    counts_and_settings(options, tallies, cycles, &mut report);
    serde_json::Value::Object(report)
}

fn analyse(options: &Options, tallies: &[Tally], cycles: usize) -> serde_json::Value {
    let all_cycles: Vec<usize> = (0..cycles).collect();
    let resampled = resampled_cycles(cycles, options.resamples);
    let mut report = serde_json::Map::new();
    for (metric, pick) in
        [("total", (|s: &Sample| s.total_us) as fn(&Sample) -> f64), ("first_byte", |s: &Sample| s.first_byte_us)]
    {
        let groups: Vec<Vec<Vec<f64>>> = tallies.iter().map(|t| by_cycle(&t.samples, cycles, pick)).collect();
        // estimates[path][resample][compared percentile]
        let estimates: Vec<Vec<Vec<f64>>> = groups
            .iter()
            .map(|g| resampled.iter().map(|cycles| compared_quantiles(pooled(g, cycles))).collect())
            .collect();
        let point: Vec<Vec<f64>> = groups.iter().map(|g| compared_quantiles(pooled(g, &all_cycles))).collect();
        let mut paths = serde_json::Map::new();
        for (index, ((name, _), group)) in options.paths.iter().zip(&groups).enumerate() {
            let values = sorted(pooled(group, &all_cycles));
            let mut entry = serde_json::Map::new();
            for (label, q) in PERCENTILES {
                entry.insert(
                    label.to_owned(),
                    if values.is_empty() { serde_json::Value::Null } else { json_number(quantile(&values, q)) },
                );
            }
            if index > 0 {
                for (k, (label, _)) in COMPARED.iter().enumerate() {
                    let added = point[index][k] - point[0][k];
                    let ci = interval(estimates[index].iter().zip(&estimates[0]).map(|(p, b)| p[k] - b[k]).collect());
                    entry.insert(format!("added_{label}"), json_number(added));
                    entry.insert(
                        format!("added_{label}_ci95"),
                        serde_json::json!([json_number(ci[0]), json_number(ci[1])]),
                    );
                }
            }
            paths.insert(name.clone(), serde_json::Value::Object(entry));
        }
        let mut comparisons = serde_json::Map::new();
        for (a, b) in &options.compare {
            let (ia, ib) = (path_index(options, a), path_index(options, b));
            let mut entry = serde_json::Map::new();
            for (k, (label, _)) in COMPARED.iter().enumerate() {
                let added = |i: usize, e: &[Vec<Vec<f64>>], r: usize| e[i][r][k] - e[0][r][k];
                let ratio = (point[ia][k] - point[0][k]) / (point[ib][k] - point[0][k]);
                let difference = point[ia][k] - point[ib][k];
                let ratios =
                    (0..options.resamples).map(|r| added(ia, &estimates, r) / added(ib, &estimates, r)).collect();
                let differences = (0..options.resamples).map(|r| estimates[ia][r][k] - estimates[ib][r][k]).collect();
                let clearly_above_zero =
                    |i: usize| interval((0..options.resamples).map(|r| added(i, &estimates, r)).collect())[0] > 0.0;
                entry.insert(format!("{label}_difference"), json_number(difference));
                entry.insert(
                    format!("{label}_difference_ci95"),
                    serde_json::json!(interval(differences).map(json_number)),
                );
                // A proxy cannot answer sooner than the upstream it calls, so an added latency
                // whose interval reaches zero or below is the run's noise, not the proxy's: a
                // ratio with either side so is not a measurement (it would divide by noise, or
                // pass on it).
                let ratio_defined = clearly_above_zero(ia) && clearly_above_zero(ib);
                entry.insert(
                    format!("{label}_ratio"),
                    if ratio_defined { json_ratio(ratio) } else { serde_json::Value::Null },
                );
                entry.insert(
                    format!("{label}_ratio_ci95"),
                    if ratio_defined {
                        serde_json::json!(interval(ratios).map(json_ratio))
                    } else {
                        serde_json::Value::Null
                    },
                );
            }
            comparisons.insert(format!("{a}:{b}"), serde_json::Value::Object(entry));
        }
        report.insert(metric.to_owned(), serde_json::json!({ "paths": paths, "compare": comparisons }));
    }
    counts_and_settings(options, tallies, cycles, &mut report);
    serde_json::Value::Object(report)
}

async fn run(options: Options) -> Result<serde_json::Value, String> {
    let stream = std::str::from_utf8(&options.body).is_ok_and(|b| b.contains("\"stream\":true"));
    let slices_per_path =
        (Duration::from_secs(u64::from(options.seconds)).as_nanos() / options.slice.as_nanos()).max(1) as usize;
    let turns = Rc::new(Turns {
        running: std::cell::Cell::new(None),
        started: options.paths.iter().map(|_| tokio::sync::Notify::new()).collect(),
        finished: std::cell::Cell::new(false),
    });
    let mut queues = Vec::new();
    let mut tallies = Vec::new();
    for (index, (name, uri)) in options.paths.iter().enumerate() {
        let authority = uri.authority().ok_or_else(|| format!("{name}: URL without host"))?;
        let address = tokio::net::lookup_host(authority.as_str())
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .next()
            .ok_or_else(|| format!("{name}: no address"))?;
        let target = match uri.path_and_query() {
            Some(path_and_query) => path_and_query.as_str().parse().map_err(|e| format!("{name}: {e}"))?,
            None => Uri::from_static("/"),
        };
        let path = Rc::new(Path {
            name: name.clone(),
            target,
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{name}: {e}"))?,
            address,
        });
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Rc::new(Mutex::new(receiver));
        let tally = Rc::new(std::cell::RefCell::new(Tally {
            completions: vec![0; if options.max { slices_per_path } else { 0 }],
            ..Tally::default()
        }));
        for _ in 0..options.connections {
            let body = options.body.clone();
            if options.max {
                tokio::task::spawn_local(max_worker(index, path.clone(), turns.clone(), tally.clone(), body, stream));
            } else {
                tokio::task::spawn_local(worker(path.clone(), receiver.clone(), tally.clone(), body, stream));
            }
        }
        queues.push((path, sender));
        tallies.push(tally);
    }

    let interval = Duration::from_secs(1) / options.rate;
    let mut rng = StdRng::seed_from_u64(0xbe9c);
    let mut order: Vec<usize> = (0..queues.len()).collect();
    // Cycle 0 is a warm-up for every path and is not counted.
    for cycle in 0..=slices_per_path {
        order.shuffle(&mut rng);
        for &index in &order {
            let slice_start = Instant::now();
            if options.max {
                let ends = slice_start + options.slice;
                turns.running.set(Some(Slice {
                    path: index,
                    cycle: cycle.saturating_sub(1),
                    counted: cycle > 0,
                    count_from: slice_start + options.warmup,
                    ends,
                }));
                turns.started[index].notify_waiters();
                tokio::time::sleep_until(tokio::time::Instant::from_std(ends)).await;
                turns.running.set(None);
                continue;
            }
            let mut due = tokio::time::Instant::from_std(slice_start);
            while due.into_std() < slice_start + options.slice {
                tokio::time::sleep_until(due).await;
                let at = Instant::now();
                let counted = cycle > 0 && at >= slice_start + options.warmup;
                queues[index]
                    .1
                    .send(Due { at, cycle: cycle.saturating_sub(1), counted })
                    .map_err(|_| format!("{}: all workers stopped", queues[index].0.name))?;
                due += interval;
            }
        }
    }
    drop(queues);
    turns.finished.set(true);
    for started in &turns.started {
        started.notify_waiters();
    }
    // Let the last answers arrive; the workers end when their queue is closed and empty (with
    // `--max`: when the run is over).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tallies.iter().any(|t| Rc::strong_count(t) > 1) {
        if Instant::now() >= deadline {
            return Err("requests still unanswered 10 s after the last slice".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tallies: Vec<Tally> = tallies.into_iter().map(|t| std::mem::take(&mut *t.borrow_mut())).collect();
    let failed: Vec<String> = options
        .paths
        .iter()
        .zip(&tallies)
        .filter(|(_, t)| !t.errors.is_empty())
        .map(|((name, _), t)| format!("{name}: {:?}", t.errors))
        .collect();
    if !failed.is_empty() {
        return Err(format!("requests failed: {}", failed.join("; ")));
    }
    Ok(if options.max {
        analyse_throughput(&options, &tallies, slices_per_path)
    } else {
        analyse(&options, &tallies, slices_per_path)
    })
}

fn main() {
    let options = parse_options();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(options)) {
        Ok(report) => println!("{report}"),
        Err(error) => {
            eprintln!("bench_paired: {error}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(paths: &[&str], compare: (&str, &str)) -> Options {
        Options {
            rate: 1000,
            max: false,
            connections: 1,
            seconds: 1,
            slice: Duration::from_millis(500),
            warmup: Duration::from_millis(20),
            resamples: 300,
            compare: vec![(compare.0.to_owned(), compare.1.to_owned())],
            body: Bytes::from_static(b"{}"),
            paths: paths.iter().map(|p| ((*p).to_owned(), Uri::from_static("http://127.0.0.1:1/"))).collect(),
        }
    }

    /// Every path sees the same per-cycle drift (up to 45 µs) and the same spread within a
    /// cycle; nginx adds 40 µs to each request and the relay 50 µs.
    fn drifting_tallies(offsets: &[f64], cycles: usize) -> Vec<Tally> {
        offsets
            .iter()
            .map(|offset| Tally {
                samples: (0..cycles)
                    .flat_map(|cycle| {
                        let drift = ((cycle * 37) % 50) as f64;
                        (0..100).map(move |i| {
                            let latency = 100.0 + (i % 20) as f64 + drift + offset;
                            Sample { cycle, total_us: latency, first_byte_us: latency }
                        })
                    })
                    .collect(),
                completions: Vec::new(),
                errors: BTreeMap::new(),
                sent: 100 * cycles as u64,
            })
            .collect()
    }

    #[test]
    fn throughput_ratios_pair_cycles_so_a_shared_drift_drops_out() {
        let options = Options { max: true, ..options(&["nginx", "relay"], ("relay", "nginx")) };
        let cycles = 10;
        // The machine's speed moves from cycle to cycle; the relay always does 80 % of nginx's work.
        let tallies: Vec<Tally> = [1.0, 0.8]
            .iter()
            .map(|share| Tally {
                completions: (0..cycles).map(|c| ((1000 + 300 * ((c * 7) % 5)) as f64 * share) as u64).collect(),
                ..Tally::default()
            })
            .collect();
        let report = analyse_throughput(&options, &tallies, cycles);
        let compared = &report["throughput"]["compare"]["relay:nginx"];
        assert_eq!(compared["ratio"], 0.8);
        assert_eq!(compared["ratio_ci95"], serde_json::json!([0.8, 0.8]));
        // 480 ms counted per slice (500 ms, 20 ms warm-up).
        let nginx: u64 = tallies[0].completions.iter().sum();
        let expected = nginx as f64 / (cycles as f64 * 0.48);
        assert_eq!(report["throughput"]["paths"]["nginx"]["req_per_s"], json_number(expected));
        assert_eq!(report["counts"]["relay"]["counted"], tallies[1].completions.iter().sum::<u64>());
        assert_eq!(report["settings"]["max"], true);
    }

    #[test]
    fn ratios_keep_the_precision_a_verdict_needs() {
        let options = Options { max: true, ..options(&["nginx", "relay"], ("relay", "nginx")) };
        let tallies: Vec<Tally> = [10_000, 7_960]
            .iter()
            .map(|&answered| Tally { completions: vec![answered; 4], ..Tally::default() })
            .collect();
        let report = analyse_throughput(&options, &tallies, 4);
        let compared = &report["throughput"]["compare"]["relay:nginx"];
        assert_eq!(compared["ratio"], serde_json::json!(0.796), "not rounded up onto the 0.8 target");
        assert_eq!(compared["ratio_ci95"], serde_json::json!([0.796, 0.796]));
    }

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 0.999), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        let shuffled: Vec<f64> = (0..1000).map(|i| f64::from((i * 7919) % 1000)).collect();
        assert_eq!(
            compared_quantiles(shuffled.clone()),
            vec![quantile(&sorted(shuffled.clone()), 0.5), quantile(&sorted(shuffled), 0.99)]
        );
    }

    #[test]
    fn a_drift_shared_by_every_path_drops_out_of_the_comparison() {
        let report = analyse(
            &options(&["direct", "nginx", "relay"], ("relay", "nginx")),
            &drifting_tallies(&[0.0, 40.0, 50.0], 12),
            12,
        );
        let nginx = &report["total"]["paths"]["nginx"];
        assert_eq!(nginx["added_p50"], 40.0);
        assert_eq!(nginx["added_p99_ci95"], serde_json::json!([40.0, 40.0]));
        let compared = &report["total"]["compare"]["relay:nginx"];
        assert_eq!(compared["p50_difference"], 10.0);
        assert_eq!(compared["p50_difference_ci95"], serde_json::json!([10.0, 10.0]));
        assert_eq!(compared["p99_ratio"], 1.25);
        assert_eq!(compared["p99_ratio_ci95"], serde_json::json!([1.25, 1.25]));
    }

    #[test]
    fn no_ratio_unless_both_paths_add_latency_clearly_above_zero() {
        // (direct, nginx, relay) offsets: nginx adds nothing, then the relay adds nothing.
        for (offsets, difference) in [([0.0, 0.0, 5.0], 5.0), ([0.0, 40.0, 0.0], -40.0)] {
            let report =
                analyse(&options(&["direct", "nginx", "relay"], ("relay", "nginx")), &drifting_tallies(&offsets, 8), 8);
            for metric in ["total", "first_byte"] {
                let compared = &report[metric]["compare"]["relay:nginx"];
                for label in ["p50", "p99"] {
                    assert_eq!(compared[format!("{label}_ratio")], serde_json::Value::Null, "{offsets:?}");
                    assert_eq!(compared[format!("{label}_ratio_ci95")], serde_json::Value::Null, "{offsets:?}");
                    assert_eq!(compared[format!("{label}_difference")], difference, "{offsets:?}");
                }
            }
        }
    }

    #[test]
    fn the_interval_widens_with_noise_of_one_path_alone() {
        let mut tallies = drifting_tallies(&[0.0, 40.0, 50.0], 12);
        for sample in &mut tallies[2].samples {
            sample.total_us += ((sample.cycle * 13) % 30) as f64;
        }
        let report = analyse(&options(&["direct", "nginx", "relay"], ("relay", "nginx")), &tallies, 12);
        let ci =
            report["total"]["compare"]["relay:nginx"]["p50_difference_ci95"].as_array().expect("an interval").clone();
        let (low, high) = (ci[0].as_f64().expect("a number"), ci[1].as_f64().expect("a number"));
        assert!(low < high, "{ci:?}");
        assert!(low >= 10.0 && high <= 40.0, "{ci:?}");
    }
}
