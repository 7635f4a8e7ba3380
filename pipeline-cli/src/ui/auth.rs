//! Who may read the dashboard.
//!
//! * Bound to a loopback address without `--token`: anyone on this machine, but only
//!   through a loopback host name (`127.0.0.1`, `localhost`, `[::1]`), so that a web page
//!   elsewhere cannot read the dashboard by pointing a host name of its own at 127.0.0.1
//!   (DNS rebinding).
//! * Otherwise (another `--host`, or `--token` given): every request carries the token, as
//!   `Authorization: Bearer TOKEN`, or as `?token=TOKEN` once, which answers with a
//!   redirect to the same page without it and an HttpOnly cookie holding the token.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Query, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::html_response;
use super::pages::{error_page, PageError};

/// The cookie that carries the token after `?token=`.
pub const COOKIE_NAME: &str = "pipeline_ui_token";

/// The access rule of one server.
#[derive(Debug, Clone)]
pub struct Access {
    /// The token every request must carry; `None` for a loopback server without one.
    pub token: Option<String>,
}

impl Access {
    /// The rule for a server on `host`: a token when `token` is given or `host` is not a
    /// loopback address (a random one when none is given).
    ///
    /// # Errors
    ///
    /// When the operating system's random source fails.
    pub fn new(host: IpAddr, token: Option<String>) -> Result<Access, String> {
        let token = match token {
            // It travels in a header, a query string and a cookie: no spaces or separators.
            Some(t)
                if t.is_empty()
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)) =>
            {
                return Err(
                    "--token takes printable ASCII without spaces, `;`, `,`, `\"` or `\\`".into(),
                )
            }
            Some(t) => Some(t),
            None if host.is_loopback() => None,
            None => Some(random_token()?),
        };
        Ok(Access { token })
    }
}

/// 128 random bits as 32 hex digits.
fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("cannot make a random token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two strings in time that depends on their lengths only, so the time a wrong
/// token takes to refuse tells nothing about the right one. Written here because it is
/// four lines; a crate such as `subtle` would be a dependency for this one loop.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The middleware that applies [`Access`] to every request.
pub async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    let Some(token) = &access.token else {
        if !loopback_host(&req) {
            return refuse(
                StatusCode::FORBIDDEN,
                "This dashboard answers only to 127.0.0.1, localhost or [::1]. To reach it under another name, start it with --token (or --host) and give the token.",
            );
        }
        return next.run(req).await;
    };
    // The scheme is case-insensitive (RFC 9110).
    let bearer = header(&req, AUTHORIZATION.as_str())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let cookie = header(&req, COOKIE.as_str()).and_then(|c| {
        c.split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE_NAME)
            .map(|(_, v)| v.to_string())
    });
    if bearer.is_some_and(|b| same(b, token)) || cookie.is_some_and(|c| same(&c, token)) {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let given = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .ok()
        .and_then(|Query(q)| q.get("token").cloned());
    if given.is_some_and(|g| same(&g, token)) {
        // The token leaves the address (history, logs, referrers) and stays in a cookie.
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
            .collect();
        let mut location = req.uri().path().to_string();
        if !rest.is_empty() {
            location.push('?');
            location.push_str(&rest.join("&"));
        }
        let mut response = StatusCode::SEE_OTHER.into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.insert(LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/"
        )) {
            headers.insert(SET_COOKIE, v);
        }
        return response;
    }
    let mut response = refuse(
        StatusCode::UNAUTHORIZED,
        "This dashboard needs its access token: open the address `pipeline ui` printed (it ends in ?token=..), or send `Authorization: Bearer TOKEN`.",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request names this machine by a loopback name (any port: an SSH tunnel
/// may forward another one).
fn loopback_host(req: &Request) -> bool {
    let Some(host) = header(req, HOST.as_str()) else {
        // HTTP/1.0 without Host: not a browser on a rebinding page.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let page = error_page(&PageError {
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or("Refused").to_string(),
        message: message.into(),
    });
    html_response(status, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(Access::new(host, None).unwrap().token.is_none());
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let t = Access::new(any, None).unwrap().token.unwrap();
        assert_eq!(t.len(), 32);
        assert_ne!(t, Access::new(any, None).unwrap().token.unwrap());
        assert_eq!(
            Access::new(host, Some("s".into()))
                .unwrap()
                .token
                .as_deref(),
            Some("s")
        );
        assert!(Access::new(host, Some("a b".into())).is_err());
        assert!(Access::new(host, Some("a;b".into())).is_err());
        assert!(Access::new(host, Some(String::new())).is_err());
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    fn with_host(host: &str) -> Request {
        Request::builder()
            .header(HOST, host)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn loopback_names() {
        for ok in [
            "127.0.0.1:8765",
            "localhost:9000",
            "[::1]:8765",
            "LOCALHOST",
            "app.localhost:1",
        ] {
            assert!(loopback_host(&with_host(ok)), "{ok}");
        }
        for bad in ["evil.example:8765", "10.0.0.1:8765", "[2001:db8::1]:80"] {
            assert!(!loopback_host(&with_host(bad)), "{bad}");
        }
    }
}
