//! A bare hyper reverse proxy, for the benchmark only: what hyper's HTTP/1 server and client cost
//! on their own, as a floor under the relay (bench/HISTORY.md, "What the relay's extra over nginx
//! is made of").
//!
//! Usage: `bare_proxy LISTEN UPSTREAM [--one-task]` (both `host:port`). Each client connection gets
//! one upstream connection; request and response bodies pass through untouched. By default the
//! upstream connection is opened on the first request and runs in a task of its own, as in hyper's
//! examples and hyper-util's pool, so every response chunk crosses between two tasks. With
//! `--one-task` it is opened when the client connects and driven by the client connection's own
//! task, as the relay's `upstream/h1.rs` drives its plain-http connections: the floor for streams.
//!
//! No routing, body parse, header policy, retry, timeout, metrics or logs, and no error handling
//! beyond what keeps it answering the benchmark: a failure drops the connection. One thread, as
//! the relay runs on one CPU. Ctrl-C (SIGINT) ends it cleanly.

use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Sender = client::SendRequest<Incoming>;

/// Sends `request` on the client connection's upstream connection (`slot`), opening it first if
/// needed. The sender goes back into the slot once the response head is in; the next request on
/// the connection waits (`ready`) until this response's body has been read.
async fn forward(
    upstream: &'static str,
    slot: Arc<Mutex<Option<Sender>>>,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let taken = slot.lock().map_err(|_| "poisoned")?.take();
    let mut sender = match taken {
        Some(sender) => sender,
        None => {
            let (sender, connection) = connect(upstream).await?;
            tokio::spawn(connection);
            sender
        }
    };
    sender.ready().await?;
    let (mut parts, body) = request.into_parts();
    parts.uri = parts.uri.path_and_query().map_or("/", |path| path.as_str()).parse()?;
    parts.headers.insert(hyper::header::HOST, upstream.parse()?);
    let response = sender.send_request(Request::from_parts(parts, body)).await;
    *slot.lock().map_err(|_| "poisoned")? = Some(sender);
    Ok(response?)
}

/// An HTTP/1 connection to `upstream`: the sender, and the connection future that must be polled
/// for it to make progress.
async fn connect(
    upstream: &'static str,
) -> Result<(Sender, client::Connection<TokioIo<TcpStream>, Incoming>), Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    Ok(client::handshake(TokioIo::new(stream)).await?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_proxy LISTEN UPSTREAM [--one-task] (host:port each)");
        std::process::exit(2);
    };
    let one_task = match args.next().as_deref() {
        None => false,
        Some("--one-task") => true,
        Some(other) => {
            eprintln!("bare_proxy: unknown argument {other:?}");
            std::process::exit(2);
        }
    };
    let upstream: &'static str = Box::leak(upstream.into_boxed_str());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        // Returning from main on Ctrl-C, rather than dying of the signal, lets a build with
        // `-Cprofile-generate` write its profile at exit (bench/README.md: the floor, profile-guided).
        tokio::select! {
            served = serve(listener, upstream, one_task) => served?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// Accepts connections and serves each in a task of its own, until accepting fails.
async fn serve(listener: TcpListener, upstream: &'static str, one_task: bool) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        if one_task {
            tokio::spawn(serve_in_one_task(stream, upstream));
        } else {
            tokio::spawn(serve_connection(stream, upstream, Arc::new(Mutex::new(None))));
        }
    }
}

/// Serves one client connection, forwarding its requests on the upstream connection in `slot`.
async fn serve_connection(stream: TcpStream, upstream: &'static str, slot: Arc<Mutex<Option<Sender>>>) {
    let service = service_fn(move |request| forward(upstream, slot.clone(), request));
    let _ = server::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// Serves the client connection and drives its upstream connection in the same task. Once the
/// client connection ends, its service and with it the only sender are dropped, which ends the
/// upstream connection too.
async fn serve_in_one_task(stream: TcpStream, upstream: &'static str) {
    let Ok((sender, connection)) = connect(upstream).await else { return };
    let serving = serve_connection(stream, upstream, Arc::new(Mutex::new(Some(sender))));
    let _ = tokio::join!(serving, connection);
}
