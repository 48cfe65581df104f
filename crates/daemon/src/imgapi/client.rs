//! One IMGAPI server, as SmartOS's imgadm talks to it: `GET /ping`,
//! `GET /images` (with filters, page by page), `GET /images/<uuid>` and
//! `GET /images/<uuid>/file` (from a byte offset, for a resumed download).
//!
//! Blocking HTTP/1.1 on **ureq** (rustls with Mozilla's roots; a source
//! marked `insecure` skips the certificate check), called from the
//! daemon's blocking threads. A source URL may carry `?channel=<name>`,
//! which every request then passes on, as IMGAPI's channels want. Every
//! bound is a constant here: connecting, waiting for an answer's head,
//! and each read of a body (a server that stops sending is an error after
//! [`READ_TIMEOUT`], however long the whole file takes).

use std::time::Duration;

use serde_json::Value;
use ureq::http::Response;
use ureq::Body;
use zonevisor_api::{ImageSource, ImageUuid};

/// How long connecting to a source may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a source may take to begin its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one read of an answer's body may wait for bytes.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest image list read (images.smartos.org's whole list is a few MiB).
const MAX_LIST_BYTES: u64 = 256 << 20;
/// The largest manifest or ping answer read.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Images asked for per page of `GET /images` (IMGAPI's maximum).
const PAGE: usize = 1000;
/// Pages read at most (a server that keeps answering full pages).
const MAX_PAGES: usize = 200;

/// Why a source did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The URL is not one this host can talk to.
    #[error("image source URL {url:?} is not valid: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The server could not be reached, or the connection failed.
    #[error("cannot reach image source {url}: {reason}")]
    Unreachable {
        /// The source.
        url: String,
        /// Why (the HTTP client's words).
        reason: String,
    },
    /// The server answered with an error status.
    #[error("image source {url} answered {status} to GET {path}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// The source.
        url: String,
        /// The request's path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (IMGAPI's `message`), if it gave one.
        message: String,
    },
    /// The answer is not what IMGAPI answers.
    #[error("image source {url} sent a bad answer to GET {path}: {why}")]
    BadAnswer {
        /// The source.
        url: String,
        /// The request's path.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

impl SourceError {
    /// Whether the server said the thing asked for is not there.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, SourceError::Status { status: 404, .. })
    }
}

/// An IMGAPI server to talk to.
pub(crate) struct Source {
    /// The URL as configured (what `imgadm get`'s `source` says).
    pub url: String,
    /// Scheme, host and path, without a trailing `/` or a query.
    base: String,
    /// `?channel=` of the URL.
    channel: Option<String>,
    agent: ureq::Agent,
}

/// The answer to `GET /images/<uuid>/file`, its body not read yet.
pub(crate) struct FileAnswer {
    /// 200 (the whole file) or 206 (from the offset asked for).
    pub status: u16,
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    /// `Content-Range`, when sent.
    pub range: Option<String>,
    /// The body.
    pub body: Body,
}

impl Source {
    /// A client for `source` (an IMGAPI one).
    pub(crate) fn new(source: &ImageSource) -> Result<Source, SourceError> {
        let url = source.url.trim().to_string();
        let bad = |why: &str| SourceError::BadUrl { url: url.clone(), why: why.to_string() };
        let normalized = zonevisor_api::normalize_url(&url);
        let (base, query) = match normalized.split_once('?') {
            Some((b, q)) => (b.to_string(), Some(q.to_string())),
            None => (normalized.clone(), None),
        };
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or_else(|| bad("it must begin with http:// or https://"))?;
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it names no host"));
        }
        let channel = query.as_deref().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "channel").map(|(_, v)| v))
        });
        base.parse::<ureq::http::Uri>().map_err(|e| bad(&e.to_string()))?;
        Ok(Source { url, base, channel, agent: agent(source.insecure) })
    }

    /// The full URL of `path` (`/images`) with `query` and the channel.
    fn url_of(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = query.to_vec();
        if let Some(c) = &self.channel {
            pairs.push(("channel", c));
        }
        if pairs.is_empty() {
            format!("{}{path}", self.base)
        } else {
            let q = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            format!("{}{path}?{q}", self.base)
        }
    }

    fn unreachable(&self, e: ureq::Error) -> SourceError {
        SourceError::Unreachable { url: self.url.clone(), reason: crate::chain(&e) }
    }

    /// `GET path` with `query`; any status is an answer.
    fn get(&self, path: &str, query: &[(&str, &str)], range_from: u64) -> Result<Response<Body>, SourceError> {
        let mut req = self.agent.get(self.url_of(path, query)).header("Accept", "application/json, */*");
        if range_from > 0 {
            req = req.header("Range", format!("bytes={range_from}-"));
        }
        req.call().map_err(|e| self.unreachable(e))
    }

    /// An error status as a [`SourceError::Status`], with IMGAPI's message.
    fn status_error(&self, path: &str, mut resp: Response<Body>) -> SourceError {
        let status = resp.status().as_u16();
        let text = resp.body_mut().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        SourceError::Status { url: self.url.clone(), path: path.to_string(), status, message }
    }

    /// `GET path` as JSON of at most `limit` bytes.
    fn get_json(&self, path: &str, query: &[(&str, &str)], limit: u64) -> Result<Value, SourceError> {
        let mut resp = self.get(path, query, 0)?;
        if !resp.status().is_success() {
            return Err(self.status_error(path, resp));
        }
        let bad = |why: String| SourceError::BadAnswer { url: self.url.clone(), path: path.to_string(), why };
        let bytes = resp.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(n) => bad(format!("the answer is larger than {n} bytes")),
            other => self.unreachable(other),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))
    }

    /// `GET /ping`: the server answers as an IMGAPI server does.
    pub(crate) fn ping(&self) -> Result<(), SourceError> {
        let v = self.get_json("/ping", &[], MAX_MANIFEST_BYTES)?;
        if v.get("imgapi") == Some(&Value::Bool(true)) || v.get("ping").and_then(Value::as_str) == Some("pong") {
            Ok(())
        } else {
            Err(SourceError::BadAnswer {
                url: self.url.clone(),
                path: "/ping".into(),
                why: "it does not say it is an IMGAPI server (no \"imgapi\": true)".into(),
            })
        }
    }

    /// `GET /v2/` of a Docker registry: it answers 200, or 401 asking for
    /// a token, as the distribution API says.
    pub(crate) fn ping_registry(&self) -> Result<(), SourceError> {
        let resp = self.get("/v2/", &[], 0)?;
        match resp.status().as_u16() {
            200 | 401 => Ok(()),
            _ => Err(self.status_error("/v2/", resp)),
        }
    }

    /// `GET /images` with `filters` (IMGAPI's: `name`, `version`, `os`,
    /// `type`, `state`, ...; the server lists only active images unless
    /// `state` says otherwise), every page.
    pub(crate) fn list_images(&self, filters: &[(&str, &str)]) -> Result<Vec<Value>, SourceError> {
        let mut out: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut marker: Option<String> = None;
        let limit = PAGE.to_string();
        for _ in 0..MAX_PAGES {
            let mut query: Vec<(&str, &str)> = filters.to_vec();
            query.push(("limit", &limit));
            if let Some(m) = &marker {
                query.push(("marker", m));
            }
            let page = self.get_json("/images", &query, MAX_LIST_BYTES)?;
            let page = page.as_array().cloned().ok_or_else(|| SourceError::BadAnswer {
                url: self.url.clone(),
                path: "/images".into(),
                why: "not a JSON array of manifests".into(),
            })?;
            let full = page.len() >= PAGE;
            let mut added = 0;
            for m in page {
                let Some(uuid) = m.get("uuid").and_then(Value::as_str).map(str::to_string) else { continue };
                if seen.insert(uuid.clone()) {
                    marker = Some(uuid);
                    out.push(m);
                    added += 1;
                }
            }
            // IMGAPI's marker is inclusive: a page that adds nothing is the end.
            if !full || added == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /images/<uuid>`: the manifest (any state), or `None` when the
    /// server has no such image.
    pub(crate) fn get_image(&self, uuid: ImageUuid) -> Result<Option<Value>, SourceError> {
        match self.get_json(&format!("/images/{uuid}"), &[], MAX_MANIFEST_BYTES) {
            Ok(v) if v.is_object() => Ok(Some(v)),
            Ok(_) => Err(SourceError::BadAnswer {
                url: self.url.clone(),
                path: format!("/images/{uuid}"),
                why: "not a JSON object".into(),
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /images/<uuid>/file`, from byte `from` (a `Range` request when
    /// `from` is not 0). An error status is an error.
    pub(crate) fn open_file(&self, uuid: ImageUuid, from: u64) -> Result<FileAnswer, SourceError> {
        let path = format!("/images/{uuid}/file");
        let resp = self.get(&path, &[], from)?;
        if !resp.status().is_success() {
            return Err(self.status_error(&path, resp));
        }
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let length = header("content-length").and_then(|v| v.trim().parse().ok());
        let range = header("content-range");
        Ok(FileAnswer { status: resp.status().as_u16(), length, range, body: resp.into_body() })
    }
}

/// The HTTP client of one source: its timeouts, no status as an error (the
/// callers read IMGAPI's error bodies), and the certificate check unless
/// `insecure`.
fn agent(insecure: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().disable_verification(insecure).build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(ANSWER_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(format!("zonevisor-imgadm/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build();
    ureq::Agent::new_with_config(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonevisor_api::SourceType;

    fn source(url: &str) -> Result<Source, SourceError> {
        Source::new(&ImageSource { url: url.into(), source_type: SourceType::Imgapi, insecure: false })
    }

    #[test]
    fn urls_keep_their_channel_and_lose_a_trailing_slash() {
        let s = source("https://images.example.com/?channel=dev").unwrap();
        assert_eq!(s.url_of("/images", &[("name", "a b")]), "https://images.example.com/images?name=a+b&channel=dev");
        let s = source("images.example.com:8080/imgapi/").unwrap();
        assert_eq!(s.url_of("/ping", &[]), "http://images.example.com:8080/imgapi/ping");
        for bad in ["ftp://x", "http://", "http:// x"] {
            assert!(matches!(source(bad), Err(SourceError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn an_unreachable_source_is_named() {
        // A port nothing listens on: refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let s = source(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = s.ping().unwrap_err();
        assert!(matches!(e, SourceError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&format!("cannot reach image source http://127.0.0.1:{port}")), "{e}");
    }
}
