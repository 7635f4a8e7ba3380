//! `pipeline ui`'s access rules and its answers to what is not a page: the token off
//! loopback, loopback host names, 404 pages for unknown paths and runs, error pages for a
//! damaged store, and pages that name no other host.

#[path = "../../examples/common/digits.rs"]
mod digits;
#[path = "../../examples/common/digits_pipeline.rs"]
mod digits_pipeline;
mod ui_support;

use std::path::Path;

use ui_support::*;

#[test]
fn off_loopback_every_request_needs_the_token() {
    let store = store();
    let server = Server::start(store, &["--host", "0.0.0.0", "--access-log"]);
    let token = server
        .token
        .clone()
        .expect("a token is printed with the address");
    assert_eq!(token.len(), 32, "{}", server.banner);
    assert!(
        server.banner.contains("from other machines: http://"),
        "{}",
        server.banner
    );

    let refused = server.get("/", &[]);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert!(refused.body.contains("access token"), "{}", refused.body);
    assert!(!refused.body.contains(&token));
    for path in ["/assets/app.js", "/runs/seed-first", "/../../etc/passwd"] {
        assert_eq!(server.get(path, &[]).status, 401, "{path}");
    }
    let wrong = server.get(
        "/",
        &["Authorization: Bearer 0123456789abcdef0123456789abcdef"],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(server.get("/?token=nope", &[]).status, 401);

    let bearer = format!("Authorization: Bearer {token}");
    let page = server.get("/", &[&bearer]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<tr data-run=\"seed-first\""),
        "{}",
        page.body
    );

    // `?token=` once: a redirect without it, and a cookie that opens every page.
    let first = server.get(&format!("/runs/seed-first?token={token}"), &[]);
    assert_eq!(first.status, 303);
    assert_eq!(first.header("location"), Some("/runs/seed-first"));
    let cookie = first.header("set-cookie").expect("a cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let with_cookie = server.get("/runs/seed-first", &[&format!("Cookie: {pair}")]);
    assert_eq!(with_cookie.status, 200, "{}", with_cookie.body);
    assert!(with_cookie.body.contains("class=\"node executed\""));

    // The access log names the requests but never the token.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = server.log();
    assert!(log.contains("GET /runs/seed-first 303"), "{log}");
    assert!(log.contains("GET / 401"), "{log}");
    assert!(!log.contains(&token), "{log}");
}

#[test]
fn a_given_token_is_required_too() {
    let server = Server::start(store(), &["--token", "s3cret/token+x"]);
    // Printed percent-encoded, as the query string needs it.
    assert_eq!(server.token.as_deref(), Some("s3cret%2Ftoken%2Bx"));
    assert_eq!(server.get("/", &[]).status, 401);
    assert_eq!(
        server
            .get("/", &["Authorization: Bearer s3cret/token+x"])
            .status,
        200
    );
    assert_eq!(
        server
            .get("/", &["authorization: bearer s3cret/token+x"])
            .status,
        200
    );
    assert_eq!(server.get("/?token=s3cret%2Ftoken%2Bx", &[]).status, 303);
    assert_eq!(server.get("/?token=s3cret/token", &[]).status, 401);
    // A token that cannot travel in a cookie is refused at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--store")
        .arg(store())
        .args(["ui", "--port", "0", "--token", "two words"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token takes printable ASCII"));
}

#[test]
fn on_loopback_only_loopback_host_names_are_served() {
    let server = Server::start(store(), &[]);
    assert!(server.token.is_none(), "{}", server.banner);
    assert_eq!(server.get("/", &[]).status, 200);
    let port = server.port;
    // A page elsewhere whose own host name points at 127.0.0.1 (DNS rebinding).
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: evil.example:8765\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    for host in ["localhost:9999", "[::1]:8765"] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{host}: {reply}");
    }
}

#[test]
fn paths_outside_the_app_and_unknown_runs_get_a_404_page() {
    let store = store();
    let server = Server::start(store, &[]);
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/assets/../../Cargo.toml",
        "/assets/app.css/../../../etc/passwd",
        "/runs/no-such-run",
        "/runs/seed-first/steps/no-such-step",
        "/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/artifacts/not-a-hash",
        "/artifacts/00000000000000000000000000000000",
        "/artifacts/00000000000000000000000000000000/image",
        "/pipelines/no-such-pipeline/metrics",
        "/runs/no-such-run/state.json",
    ] {
        let reply = server.get(path, &[]);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(!reply.body.contains("root:"), "{path} leaked a file");
        if !path.ends_with(".json") {
            assert!(
                reply.body.contains("<h1>Not found</h1>"),
                "{path}: {}",
                reply.body
            );
        }
    }
    // A prefix matching several runs names them.
    let ambiguous = server.get("/runs/sweep", &[]);
    assert_eq!(ambiguous.status, 404);
    assert!(ambiguous.body.contains("ambiguous"), "{}", ambiguous.body);
    // Not an image: 404, not bytes.
    let hash = {
        let page = server.page("/runs/seed-first");
        let at = page.find("href=\"/artifacts/").unwrap() + "href=\"/artifacts/".len();
        page[at..at + 32].to_string()
    };
    assert_eq!(
        server.get(&format!("/artifacts/{hash}/image"), &[]).status,
        404
    );
    // Still serving.
    assert_eq!(server.get("/", &[]).status, 200);
}

#[test]
fn a_damaged_store_gives_error_pages_not_a_crash() {
    let dir = fresh_dir("damaged");
    let copy = dir.join("store");
    copy_dir(store(), &copy);
    let server = Server::start(&copy, &[]);
    let page = server.page("/runs/seed-first");
    // A missing blob: the artifact page says why there is no preview.
    let at = page.find("href=\"/artifacts/").unwrap() + "href=\"/artifacts/".len();
    let hash = page[at..at + 32].to_string();
    let blob = copy.join("artifacts").join(&hash[..2]).join(&hash);
    std::fs::remove_file(&blob).unwrap();
    let artifact = server.page(&format!("/artifacts/{hash}"));
    assert!(
        artifact.contains("No preview: the bytes cannot be read"),
        "{artifact}"
    );
    // A row this version cannot read (a store written by a newer one): 500 pages that say
    // so, and the server lives on.
    let db = rusqlite::Connection::open(copy.join("metadata.sqlite")).unwrap();
    db.execute(
        "UPDATE runs SET status = 'exploded' WHERE name = 'seed-cached'",
        [],
    )
    .unwrap();
    drop(db);
    for path in [
        "/",
        "/runs/seed-first",
        "/compare?a=seed-first&b=seed-cached",
    ] {
        let reply = server.get(path, &[]);
        assert_eq!(reply.status, 500, "{path}: {}", reply.body);
        assert!(
            reply.body.contains("The store cannot be read"),
            "{}",
            reply.body
        );
        assert!(reply.body.contains("exploded"), "{}", reply.body);
    }
    assert_eq!(server.get("/assets/app.css", &[]).status, 200);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn no_page_names_another_host_and_every_page_forbids_loading_from_one() {
    let store = store();
    let server = Server::start(store, &[]);
    let runs = server.page("/");
    let hash = {
        let page = server.page("/runs/showcase-run");
        let at = page.find("href=\"/artifacts/").unwrap() + "href=\"/artifacts/".len();
        page[at..at + 32].to_string()
    };
    let paths = [
        "/".to_string(),
        "/runs/seed-failed".to_string(),
        "/runs/showcase-run".to_string(),
        "/runs/seed-failed/steps/svc_trainer".to_string(),
        format!("/artifacts/{hash}"),
        "/compare?a=seed-first&b=seed-failed".to_string(),
        "/pipelines/digits_pipeline/metrics".to_string(),
        "/assets/app.js".to_string(),
        "/assets/app.css".to_string(),
        "/no-such-page".to_string(),
    ];
    assert!(runs.contains("/assets/app.js"));
    for path in &paths {
        let reply = server.get(path, &[]);
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
        // The SVG namespace is a name, not an address anything is loaded from.
        let text = reply.body.replace("http://www.w3.org/2000/svg", "");
        for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
            assert!(!text.contains(scheme), "{path} names `{scheme}`:\n{text}");
        }
    }
}
