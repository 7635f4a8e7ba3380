//! `pipeline ui`: a local, read-only dashboard of the store, served over HTTP.
//!
//! ```text
//! /                               runs, newest first (?pipeline=..&status=..)
//! /runs/RUN                       a run: its DAG and step table, live while it runs
//!                                 (?expand=CALL shows a map's calls `CALL[i]` one by one)
//! /runs/RUN/state.json            what the run page polls (?since=VERSION waits for a change)
//! /runs/RUN/live                  the DAG and step table alone, when steps appear
//! /runs/RUN/steps/STEP            a step: why it ran, key components, inputs and outputs
//!                                 (?expand=item lists a split's or gather's every item)
//! /artifacts/HASH                 an artifact: facts, sidecar, lineage and a preview
//! /artifacts/HASH/image           the bytes of an image artifact
//! /compare?a=RUN&b=RUN            two runs side by side
//! /pipelines/PIPELINE/metrics     scalar outputs across runs (logged metrics: on step and compare pages)
//! /assets/app.css, /assets/app.js the only assets, embedded in the binary
//! ```
//!
//! axum on a one-thread Tokio runtime; the store (SQLite, blocking) is read on Tokio's
//! blocking pool, a fresh read per request, so pages show what other processes write.
//! Nothing is written to the store. Every response carries a Content Security Policy that
//! lets a page load only from this server, so no page can make a request elsewhere.

mod auth;
mod chart;
pub mod pages;
mod preview;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path as UrlPath, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pipeline::Store;

use self::pages::{Expand, PageError, PageResult, RunsFilter};
use crate::commands::CliResult;

/// Arguments of `pipeline ui`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on. Any but a loopback address makes every request need the
    /// token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", value_parser = parse_host)]
    host: IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// The access token requests must carry (`Authorization: Bearer TOKEN`, or
    /// `?token=TOKEN` once, which sets a cookie). Without it, a random one is made when
    /// --host is not a loopback address.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Open the dashboard in the default browser.
    #[arg(long)]
    open: bool,
    /// Print one line per request on standard error (method, path, status; never the
    /// token).
    #[arg(long)]
    access_log: bool,
}

fn parse_host(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)"))
}

/// What every handler gets.
#[derive(Clone)]
struct App {
    store: Store,
}

/// Serves the dashboard of `store` until Ctrl-C; prints its address first.
///
/// # Errors
///
/// The address cannot be listened on (in use, not this machine's), the random token or
/// the runtime cannot be made, or the server stops on an I/O error.
pub fn serve(store: Store, path: &Path, args: &Args) -> CliResult<String> {
    let access = auth::Access::new(args.host, args.token.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    runtime.block_on(async {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            format!("cannot listen on {addr}: {e}; choose another --port (0 picks a free one)")
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot read the address listened on: {e}"))?;
        let url = |host: &str| {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            match &access.token {
                Some(t) => format!("http://{host}:{}/?token={}", bound.port(), pages::enc(t)),
                None => format!("http://{host}:{}/", bound.port()),
            }
        };
        let local = if args.host.is_unspecified() || args.host.is_loopback() {
            if args.host.is_ipv4() {
                "127.0.0.1".to_string()
            } else {
                "::1".to_string()
            }
        } else {
            args.host.to_string()
        };
        let mut lines = format!(
            "pipeline ui: serving the store at {} on {}\n",
            path.display(),
            url(&local)
        );
        if args.host.is_unspecified() {
            let name = gethostname::gethostname().to_string_lossy().into_owned();
            lines.push_str(&format!("  from other machines: {}\n", url(&name)));
        }
        lines.push_str("  read-only; Ctrl-C stops it\n");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes()).and_then(|_| out.flush());
        drop(out);
        if args.open {
            open_browser(&url(&local));
        }
        let app = router(App { store }, access, args.access_log);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| format!("the server stopped: {e}"))
    })?;
    Ok(String::new())
}

/// Opens `url` with the desktop's opener; a failure is reported, not fatal. (A process
/// call, where a crate such as `open` would wrap the same three commands.)
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("pipeline ui: cannot open a browser with `{opener}`: {e}; open the address above yourself");
    }
}

fn router(app: App, access: auth::Access, log: bool) -> Router {
    let mut router = Router::new()
        .route("/", get(runs_page))
        .route("/runs/{run}", get(run_page))
        .route("/runs/{run}/state.json", get(run_state))
        .route("/runs/{run}/live", get(run_live))
        .route("/runs/{run}/steps/{step}", get(step_page))
        .route("/artifacts/{hash}", get(artifact_page))
        .route("/artifacts/{hash}/image", get(artifact_image))
        .route("/compare", get(compare_page))
        .route("/pipelines/{pipeline}/metrics", get(metrics_page))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .fallback(not_found)
        .with_state(app)
        .layer(middleware::from_fn_with_state(access, auth::check))
        .layer(middleware::from_fn(security_headers));
    if log {
        router = router.layer(middleware::from_fn(access_log));
    }
    router
}

/// An HTML response.
fn html_response(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn page(result: PageResult) -> Response {
    match result {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(e) => error_response(&e),
    }
}

fn error_response(e: &PageError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    html_response(status, pages::error_page(e))
}

/// Runs `f` on the store in Tokio's blocking pool; a panic in it becomes a 500 page.
async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Store) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => result,
        Err(e) => Err(PageError {
            status: 500,
            title: "Internal error".into(),
            message: if e.is_panic() {
                "reading the store panicked while making this page; this is a bug in `pipeline ui`, please report it".into()
            } else {
                format!("the page was not made: {e}")
            },
        }),
    }
}

/// A path parameter, or the 404 page when it cannot be decoded.
/// A path parameter whose rejection is our "no such page" error page, not axum's text.
struct Param<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Param<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match UrlPath::<T>::from_request_parts(parts, state).await {
            Ok(UrlPath(v)) => Ok(Param(v)),
            Err(e) => Err(error_response(&PageError::not_found(format!(
                "no such page: {e}"
            )))),
        }
    }
}

async fn runs_page(State(app): State<App>, Query(filter): Query<RunsFilter>) -> Response {
    page(blocking(&app, move |s| pages::runs(s, &filter)).await)
}

/// A query's pairs, in order (`?expand=a&expand=b` repeats a key).
type Pairs = Query<Vec<(String, String)>>;

async fn run_page(State(app): State<App>, Param(run): Param<String>, Query(q): Pairs) -> Response {
    let expand = Expand::from_query(&q);
    page(blocking(&app, move |s| pages::run(s, &run, &expand)).await)
}

async fn run_live(State(app): State<App>, Param(run): Param<String>, Query(q): Pairs) -> Response {
    let expand = Expand::from_query(&q);
    page(blocking(&app, move |s| pages::run_live_fragment(s, &run, &expand)).await)
}

#[derive(serde::Deserialize)]
struct Since {
    since: Option<String>,
}

/// How long `state.json?since=..` waits for a change before answering anyway.
const LONG_POLL: Duration = Duration::from_secs(20);
/// How often it reads the store while it waits.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// The run's live state as JSON. With `?since=VERSION`, waits (up to 20 s) until the
/// state differs from that version or the run is no longer running: one request per
/// change instead of one per second.
async fn run_state(
    State(app): State<App>,
    run: Result<UrlPath<String>, PathRejection>,
    Query(since): Query<Since>,
) -> Response {
    let run = match run {
        Ok(UrlPath(run)) => run,
        Err(e) => return json_error(&PageError::not_found(format!("no such page: {e}"))),
    };
    let deadline = Instant::now() + LONG_POLL;
    loop {
        let id = run.clone();
        let state = match blocking(&app, move |s| pages::live_state(s, &id)).await {
            Ok(state) => state,
            Err(e) => return json_error(&e),
        };
        let changed = since.since.as_deref() != Some(state.version.as_str());
        if changed || state.run.status != "running" || Instant::now() >= deadline {
            let body = serde_json::to_string(&state).unwrap_or_else(|_| "{}".into());
            return (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response();
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn json_error(e: &PageError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "error": e.message }).to_string();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn step_page(
    State(app): State<App>,
    Param((run, step)): Param<(String, String)>,
    Query(q): Pairs,
) -> Response {
    let expand = Expand::from_query(&q);
    page(blocking(&app, move |s| pages::step(s, &run, &step, &expand)).await)
}

async fn artifact_page(State(app): State<App>, Param(hash): Param<String>) -> Response {
    page(blocking(&app, move |s| pages::artifact(s, &hash)).await)
}

async fn artifact_image(State(app): State<App>, Param(hash): Param<String>) -> Response {
    match blocking(&app, move |s| pages::artifact_image(s, &hash)).await {
        Ok((mime, bytes)) => (
            StatusCode::OK,
            [
                (CONTENT_TYPE, mime),
                // An SVG opened on its own runs no script and loads nothing.
                (
                    CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn compare_page(State(app): State<App>, Query(q): Pairs) -> Response {
    let value = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let expand = Expand::from_query(&q);
    let (Some(a), Some(b)) = (value("a"), value("b")) else {
        return error_response(&PageError {
            status: 400,
            title: "Two runs are needed".into(),
            message:
                "compare two runs with /compare?a=RUN&b=RUN, or with the form on the runs page"
                    .into(),
        });
    };
    page(blocking(&app, move |s| pages::compare(s, &a, &b, &expand)).await)
}

async fn metrics_page(State(app): State<App>, Param(pipeline): Param<String>) -> Response {
    page(blocking(&app, move |s| pages::metrics(s, &pipeline)).await)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

fn asset(mime: &'static str, text: &'static str) -> Response {
    (StatusCode::OK, [(CONTENT_TYPE, mime)], text).into_response()
}

async fn not_found(req: Request) -> Response {
    error_response(&PageError::not_found(format!(
        "there is no page at `{}`",
        req.uri().path()
    )))
}

/// Headers on every response: a Content Security Policy that lets pages load scripts,
/// styles, images and data from this server only (and run no inline script), no caching
/// (pages change while runs go), no MIME sniffing, no referrer, no framing.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /runs/abc 200` on standard error, with any `token` parameter left out.
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
        .collect();
    let shown = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let response = next.run(req).await;
    eprintln!("{method} {shown} {}", response.status().as_u16());
    response
}
