//! The training workload of the profile-guided release build (`scripts/pgo-build`).
//!
//! Not part of the relay. It drives a running relay, configured with
//! `scripts/pgo/switchyard.toml` in front of `bench_upstream`, through the paths production
//! traffic takes, so that the compiler lays out and inlines the code by how often it runs:
//! OpenAI pass-through (plain and with `compat` rewrites), Anthropic translation, the built-in
//! `mock` upstream, streamed and not, model listing, and the common client errors.
//!
//! Every answer is checked (status, and the end of a stream or the error code). Any unexpected
//! answer fails the run, so a profile is never silently trained on a broken path.
//!
//! Usage: `pgo_workload URL KEY [--requests N] [--connections C]`
//! (defaults: 60,000 requests over 32 kept-alive connections).

use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What a call must answer: a status, and a marker its body must contain.
struct Call {
    name: &'static str,
    method: Method,
    path: &'static str,
    body: &'static str,
    right_key: bool,
    status: u16,
    body_contains: &'static str,
    /// How many of every `sum(weights)` requests are this call.
    weight: usize,
}

fn calls() -> Vec<Call> {
    let post = |name, body, status, body_contains, weight| Call {
        name,
        method: Method::POST,
        path: "/v1/chat/completions",
        body,
        right_key: true,
        status,
        body_contains,
        weight,
    };
    vec![
        post(
            "pass-through",
            r#"{"model":"passthrough","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}"#,
            200,
            r#""chat.completion""#,
            8,
        ),
        post(
            "pass-through stream",
            r#"{"model":"passthrough","messages":[{"role":"user","content":"Say hello."}],"stream":true}"#,
            200,
            "data: [DONE]",
            6,
        ),
        post(
            "compat rewrites, tools",
            r#"{"model":"compat/relay-model","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","strict":true,"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"max_completion_tokens":128,"store":false,"parallel_tool_calls":true}"#,
            200,
            r#""chat.completion""#,
            3,
        ),
        post(
            "compat rewrites stream",
            r#"{"model":"compat/relay-model","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Say hello."}],"stream":true,"stream_options":{"include_usage":true},"store":false}"#,
            200,
            "data: [DONE]",
            3,
        ),
        post(
            "anthropic translation",
            r#"{"model":"claude","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello."}],"max_tokens":64,"temperature":0.2}"#,
            200,
            r#""chat.completion""#,
            3,
        ),
        post(
            "anthropic translation stream",
            r#"{"model":"claude","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}"#,
            200,
            "data: [DONE]",
            3,
        ),
        post(
            "built-in mock, tools",
            r#"{"model":"mock","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}"#,
            200,
            r#""tool_calls""#,
            1,
        ),
        post(
            "built-in mock stream",
            r#"{"model":"mock","messages":[{"role":"user","content":"Tell me a short story."}],"stream":true}"#,
            200,
            "data: [DONE]",
            1,
        ),
        Call {
            name: "model list",
            method: Method::GET,
            path: "/v1/models",
            body: "",
            right_key: true,
            status: 200,
            body_contains: r#""passthrough""#,
            weight: 1,
        },
        post(
            "unknown model",
            r#"{"model":"passthru","messages":[{"role":"user","content":"Hi"}]}"#,
            404,
            r#""model_not_found""#,
            1,
        ),
        post(
            "invalid JSON",
            r#"{"model":"passthrough","messages":[{"role":"user","content":"Hi"}"#,
            400,
            r#""invalid_json""#,
            1,
        ),
        Call {
            right_key: false,
            ..post(
                "wrong key",
                r#"{"model":"passthrough","messages":[{"role":"user","content":"Hi"}]}"#,
                401,
                r#""invalid_api_key""#,
                1,
            )
        },
    ]
}

/// The calls in a fixed interleaved order, each as often as its weight, so that every
/// connection sends a realistic mix rather than long runs of one kind.
fn schedule(calls: &[Call]) -> Vec<usize> {
    let rounds = calls.iter().map(|call| call.weight).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| calls.iter().enumerate().filter(move |(_, call)| call.weight > round).map(|(index, _)| index))
        .collect()
}

struct Options {
    authority: String,
    key: String,
    requests: usize,
    connections: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("missing URL")?;
    let key = args.next().ok_or("missing KEY")?;
    let authority = url.strip_prefix("http://").ok_or("URL must start with http://")?.trim_end_matches('/').to_owned();
    let mut options = Options { authority, key, requests: 60_000, connections: 32 };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = value.parse::<usize>().ok().filter(|n| *n > 0).ok_or(format!("{flag} needs a positive number"))?;
        match flag.as_str() {
            "--requests" => options.requests = number,
            "--connections" => options.connections = number,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

/// Sends `count` calls on one kept-alive connection, starting at `offset` in the schedule.
/// Returns the number of answers that were not the expected one (each is printed).
async fn drive_connection(
    options: &Options,
    calls: &[Call],
    order: &[usize],
    offset: usize,
    count: usize,
) -> Result<usize, String> {
    let stream = TcpStream::connect(&options.authority)
        .await
        .map_err(|error| format!("cannot connect to {}: {error}", options.authority))?;
    let (mut sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|error| format!("HTTP/1 handshake: {error}"))?;
    tokio::spawn(connection);
    let right = format!("Bearer {}", options.key);
    let mut unexpected = 0;
    for step in 0..count {
        let call = &calls[order[(offset + step) % order.len()]];
        let request = Request::builder()
            .method(call.method.clone())
            .uri(call.path)
            .header(HOST, &options.authority)
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, if call.right_key { right.as_str() } else { "Bearer sk-not-this-one" })
            .body(Full::new(Bytes::from_static(call.body.as_bytes())))
            .map_err(|error| format!("building {}: {error}", call.name))?;
        sender.ready().await.map_err(|error| format!("connection closed before {}: {error}", call.name))?;
        let response = sender.send_request(request).await.map_err(|error| format!("{}: {error}", call.name))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{}: reading the body: {error}", call.name))?
            .to_bytes();
        let found = memchr::memmem::find(&body, call.body_contains.as_bytes()).is_some();
        if status != call.status || !found {
            unexpected += 1;
            eprintln!(
                "pgo_workload: {}: expected {} with {}, got {status}: {}",
                call.name,
                call.status,
                call.body_contains,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
    }
    Ok(unexpected)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("pgo_workload: {problem}");
            eprintln!("usage: pgo_workload URL KEY [--requests N] [--connections C]");
            return ExitCode::from(2);
        }
    };
    let calls = calls();
    let order = schedule(&calls);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let outcome = runtime.block_on(async {
        let options = std::sync::Arc::new(options);
        let calls = std::sync::Arc::new(calls);
        let order = std::sync::Arc::new(order);
        let per_connection = options.requests.div_ceil(options.connections);
        let tasks: Vec<_> = (0..options.connections)
            .map(|connection| {
                let (options, calls, order) = (options.clone(), calls.clone(), order.clone());
                tokio::spawn(async move {
                    let offset = connection * order.len() / options.connections;
                    drive_connection(&options, &calls, &order, offset, per_connection).await
                })
            })
            .collect();
        let mut unexpected = 0;
        for task in tasks {
            unexpected += task.await.map_err(|error| error.to_string())??;
        }
        Ok::<_, String>((unexpected, per_connection * options.connections))
    });
    match outcome {
        Ok((0, sent)) => {
            println!("pgo_workload: {sent} requests, every answer as expected");
            ExitCode::SUCCESS
        }
        Ok((unexpected, sent)) => {
            eprintln!("pgo_workload: {unexpected} of {sent} answers were not the expected ones");
            ExitCode::FAILURE
        }
        Err(problem) => {
            eprintln!("pgo_workload: {problem}");
            ExitCode::FAILURE
        }
    }
}
