//! `lab serve`: the lab live in a browser (issue 13). One page with its HTML, CSS and JS
//! embedded in the binary ([`PAGE`]), and the JSON API it uses, served on 127.0.0.1 only:
//!
//! - `GET /api/state`, `POST /api/requests`, `PATCH /api/services/{namespace}/{name}`,
//!   `GET /api/conntrack/{node}`, `GET /api/rules/{node}`, `POST /api/plan`,
//!   `GET /api/requests/{n}/diagram.svg`, `GET /api/pcap/{link}`, `GET /api/events`
//!   (server-sent events).
//!
//! Embedded mode: the world runs on its virtual clock, so a request that hangs until its
//! connect timeout answers at once (its virtual elapsed time is shown). Real mode
//! (`--real`, [`real`]): the lab of `lab up`, real curl and nginx; a pump thread keeps the
//! fabric running between API calls, and stopping the server tears the lab down. The
//! state lives in [`live::LiveLab`] behind a mutex; handlers are thin.

pub mod edit;
pub mod live;
pub mod pcap;
pub mod real;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use edit::ApiError;
use live::LiveLab;

/// The page: HTML, CSS and JS in one file, no external resources.
pub const PAGE: &str = include_str!("page.html");

/// Shared by the handlers.
struct Shared {
    lab: Arc<Mutex<LiveLab>>,
    events: broadcast::Sender<String>,
}

type AppState = Arc<Shared>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(self.body())).into_response()
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, LiveLab> {
    // A panic while holding the lock cannot leave the lab half-edited (edits are applied
    // to a copy first), so a poisoned lock is still usable.
    lock_arc(&s.lab)
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))
}

fn emit(s: &Shared, v: Value) {
    // No subscriber is not an error.
    let _ = s.events.send(v.to_string());
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
}

async fn get_state(State(s): State<AppState>) -> Json<Value> {
    Json(lock(&s).state())
}

/// Runs `f` on the lab off the async workers (a real-mode request holds the lab while its
/// curl runs, up to its connect timeout).
async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut LiveLab) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || f(&mut lock(&s2)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

async fn send(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = parse_body(&body)?;
    let (out, events) = blocking(&s, move |lab| {
        let mut events = Vec::new();
        lab.send(&v, &mut |e| events.push(e)).map(|o| (o, events))
    })
    .await?;
    for e in events {
        emit(&s, e);
    }
    Ok(Json(out))
}

async fn list_requests(State(s): State<AppState>) -> Json<Value> {
    Json(json!({"requests": lock(&s).requests()}))
}

async fn patch_service(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let v = parse_body(&body)?;
    let (ns2, name2, v2) = (ns.clone(), name.clone(), v.clone());
    let state = blocking(&s, move |lab| lab.patch(&ns2, &name2, &v2)).await?;
    emit(
        &s,
        json!({"type": "sync", "service": format!("{ns}/{name}"), "change": v,
               "generation": state["generation"], "pods": state["pods"]}),
    );
    Ok(Json(state))
}

async fn conntrack(
    State(s): State<AppState>,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    lock(&s).conntrack(&node).map(Json)
}

async fn rules(State(s): State<AppState>, Path(node): Path<String>) -> Result<Response, ApiError> {
    let text = lock(&s).rules(&node)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn plan(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let out = blocking(&s, |lab| lab.run_plan()).await?;
    emit(&s, json!({"type": "plan", "per_pod": out["per_pod"]}));
    Ok(Json(out))
}

async fn pcap(State(s): State<AppState>, Path(link): Path<String>) -> Result<Response, ApiError> {
    let file = lock(&s).pcap(&link)?;
    let name = format!("{}.pcap", vswitch::pcap::sanitize(&link));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.tcpdump.pcap".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        file,
    )
        .into_response())
}

async fn diagram(
    State(s): State<AppState>,
    Path((n, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let number: usize = n
        .parse()
        .map_err(|_| ApiError::bad("request", format!("{n:?} is not a request number")))?;
    if file != "diagram.svg" {
        return Err(ApiError::bad("file", "only diagram.svg"));
    }
    let lab = lock(&s);
    let svg = lab.diagram(number).ok_or_else(|| ApiError {
        status: 404,
        field: "request".into(),
        message: format!(
            "no request {number} (sent so far: {})",
            lab.requests().len()
        ),
    })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg.to_string()).into_response())
}

async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(msg) if msg == SHUTDOWN => return None,
                Ok(msg) => return Some((Ok(Event::default().data(msg)), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        field: "path".into(),
        message: "no such page or API endpoint (see README: lab serve)".into(),
    }
}

/// Ends every event stream so a graceful shutdown does not wait for open pages.
const SHUTDOWN: &str = "\u{0}shutdown";

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/state", get(get_state))
        .route("/api/requests", post(send).get(list_requests))
        .route("/api/requests/{n}/{file}", get(diagram))
        .route("/api/services/{namespace}/{name}", patch(patch_service))
        .route("/api/conntrack/{node}", get(conntrack))
        .route("/api/rules/{node}", get(rules))
        .route("/api/plan", post(plan))
        .route("/api/pcap/{link}", get(pcap))
        .route("/api/events", get(events))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `lab` on 127.0.0.1:`port` (0 = any free port) until Ctrl-C or SIGTERM; prints
/// `serving http://127.0.0.1:PORT/` on stdout once listening; `open` runs `xdg-open` on it.
/// A real-mode lab is torn down when the server stops (also when it cannot start).
pub fn serve(lab: LiveLab, port: u16, open: bool) -> anyhow::Result<()> {
    let lab = Arc::new(Mutex::new(lab));
    let stop = Arc::new(AtomicBool::new(false));
    let pump = (lock_arc(&lab).mode() == "real")
        .then(|| real::pump(lab.clone(), stop.clone(), |l| l.pump(real::TURN)));
    let served = run_server(lab.clone(), port, open);
    stop.store(true, Ordering::SeqCst);
    if let Some(p) = pump {
        let _ = p.join();
    }
    // The handlers and the pump are gone: this is the last reference.
    let lab = match Arc::try_unwrap(lab) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(_) => anyhow::bail!("lab serve: the lab is still in use at shutdown"),
    };
    if lab.mode() == "real" {
        println!("stopping: tearing the lab down");
    }
    let down = lab.shutdown()?;
    if let Some(d) = down {
        println!("{d}");
    }
    served
}

fn lock_arc(l: &Mutex<LiveLab>) -> std::sync::MutexGuard<'_, LiveLab> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_server(lab: Arc<Mutex<LiveLab>>, port: u16, open: bool) -> anyhow::Result<()> {
    let mode = lock_arc(&lab).mode();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|e| {
                cluster::LabError::invalid("command line", "--port", format!("{port}: {e}"))
            })?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}/");
        println!("serving {url} ({mode} mode; Ctrl-C stops)");
        if open {
            open_browser(&url);
        }
        let (tx, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            lab,
            events: tx.clone(),
        });
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(async move {
                stop_signal().await;
                // A real-mode request in flight stops its curl and answers at once.
                host::cleanup::request_stop();
                let _ = tx.send(SHUTDOWN.to_string());
            })
            .await?;
        println!("stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

/// `--open`: the desktop's browser, when there is one.
fn open_browser(url: &str) {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => {}
        Err(e) => eprintln!("--open: cannot run xdg-open ({e}); open {url} yourself"),
    }
}
