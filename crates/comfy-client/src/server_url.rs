//! The address of one ComfyUI server, as the user gave it, turned into HTTP and WebSocket URLs.

use std::path::Path;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::tls::TlsSettings;

/// The default address of a local ComfyUI.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8188";

/// A server's base URL. Accepts `http`, `https`, `ws` and `wss`; a path (a reverse-proxy prefix)
/// is kept and every endpoint is placed under it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Always `http` or `https`, path ending in `/`.
    base: Url,
    /// Headers for every request and the WebSocket upgrade (`--header`), e.g. a proxy's
    /// `Authorization: Bearer ...`. Their values are marked sensitive and never printed.
    headers: HeaderMap,
    /// How an https server's certificate is checked.
    tls: TlsSettings,
}

/// Without credentials or header values, whatever prints it.
impl std::fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerUrl")
            .field("base", &self.redacted())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("'{0}' is not a URL: {1}")]
    Invalid(String, String),
    #[error("'{0}' is not an http(s):// or ws(s):// URL")]
    Scheme(String),
    /// A `--header` that is not `Name: value`; the value is never repeated.
    #[error("a header must read 'Name: value'{}: {why}", .name.as_ref().map(|n| format!(" (header {n})")).unwrap_or_default())]
    Header { name: Option<String>, why: String },
    /// `--ca-cert` names a file that holds no usable certificate.
    #[error("{0}")]
    CaCert(String),
}

impl ServerUrl {
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let trimmed = input.trim();
        // "host:port" alone is common on the command line; read it as http.
        let with_scheme = if !trimmed.contains("://") && !trimmed.is_empty() {
            format!("http://{trimmed}")
        } else {
            trimmed.to_string()
        };
        let mut url = Url::parse(&with_scheme)
            .map_err(|e| UrlError::Invalid(input.to_string(), e.to_string()))?;
        let scheme = match url.scheme() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            _ => return Err(UrlError::Scheme(input.to_string())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::Invalid(input.to_string(), "no host".into()));
        }
        if url.scheme() != scheme {
            // Switching between special schemes keeps everything else.
            let rest = &url.as_str()[url.scheme().len()..];
            url = Url::parse(&format!("{scheme}{rest}"))
                .map_err(|e| UrlError::Invalid(input.to_string(), e.to_string()))?;
        }
        // A trailing `/ws` names the socket, not a prefix.
        let mut path = url.path().trim_end_matches('/').to_string();
        if let Some(stripped) = path.strip_suffix("/ws") {
            path = stripped.to_string();
        }
        url.set_path(&format!("{path}/"));
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self {
            base: url,
            headers: HeaderMap::new(),
            tls: TlsSettings::default(),
        })
    }

    /// `http(s)://host:port/prefix/` + `path` (given without a leading slash or with one).
    pub fn http(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path(), path.trim_start_matches('/'));
        url.set_path(&joined);
        url
    }

    /// The WebSocket URL for `client_id`.
    pub fn websocket(&self, client_id: &str) -> Url {
        let mut url = self.http("ws");
        let scheme = if self.base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        // http→ws is a change between special schemes, which `set_scheme` allows.
        let _ = url.set_scheme(scheme);
        url.query_pairs_mut().append_pair("clientId", client_id);
        url
    }

    /// Adds a header given as `Name: value` to every request. Errors name the header, never
    /// its value.
    pub fn with_header(mut self, line: &str) -> Result<Self, UrlError> {
        let Some((name, value)) = line.split_once(':') else {
            return Err(UrlError::Header {
                name: None,
                why: "there is no ':' after the name".into(),
            });
        };
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| UrlError::Header {
                name: Some(name.trim().chars().take(40).collect()),
                why: "that is not a header name".into(),
            })?;
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| UrlError::Header {
            name: Some(name.to_string()),
            why: "its value has characters a header cannot carry".into(),
        })?;
        value.set_sensitive(true);
        self.headers.append(name, value);
        Ok(self)
    }

    /// Without any header named `name` (given one of the same name from another place).
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.remove(name);
        self
    }

    /// What this client sends to prove who it is, in words and without any secret: for the
    /// message when a server or proxy refuses it (401, 403, 407).
    pub fn credentials_sent(&self) -> String {
        let mut sent = Vec::new();
        if !self.base.username().is_empty() || self.base.password().is_some() {
            sent.push("basic auth from the URL".to_string());
        }
        let names: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        match names.as_slice() {
            [] => {}
            [one] => sent.push(format!("the header {one}")),
            several => sent.push(format!("the headers {}", several.join(", "))),
        }
        if sent.is_empty() {
            "no credentials (put user:password@ in the URL, or add --header 'Authorization: ...')"
                .to_string()
        } else {
            sent.join(" and ")
        }
    }

    /// Also trusts the CA certificates (PEM) in `path` (`--ca-cert`).
    pub fn with_ca_cert(mut self, path: &Path) -> Result<Self, UrlError> {
        self.tls = self.tls.with_ca_file(path).map_err(UrlError::CaCert)?;
        Ok(self)
    }

    /// Accepts any certificate (`--insecure`).
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.tls = self.tls.with_insecure(insecure);
        self
    }

    /// Whether the certificate goes unchecked: only true when asked for, over https.
    pub fn insecure(&self) -> bool {
        self.tls.insecure() && self.is_https()
    }

    pub fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }

    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The headers `--header` added.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL for people to read: credentials replaced, no trailing slash.
    pub fn redacted(&self) -> String {
        let mut url = self.base.clone();
        if !url.username().is_empty() {
            let _ = url.set_username("***");
        }
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        url.as_str().trim_end_matches('/').to_string()
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_sent_are_named_never_shown() {
        let plain = ServerUrl::parse("http://box").unwrap();
        assert!(plain.credentials_sent().starts_with("no credentials"));
        let both = ServerUrl::parse("https://alice:pw@box")
            .and_then(|u| u.with_header("Authorization: Bearer tok"))
            .unwrap();
        assert_eq!(
            both.credentials_sent(),
            "basic auth from the URL and the header authorization"
        );
        assert!(!both.credentials_sent().contains("alice"));
    }

    #[test]
    fn headers_are_kept_and_never_printed() {
        let u = ServerUrl::parse("https://user:pw@box/comfy")
            .and_then(|u| u.with_header("Authorization: Bearer s3cret-token"))
            .and_then(|u| u.with_header("X-Extra:  two  "))
            .unwrap();
        assert_eq!(u.headers().len(), 2);
        assert_eq!(u.headers()["x-extra"], "two");
        for printed in [
            u.to_string(),
            format!("{u:?}"),
            format!("{:?}", u.headers()),
        ] {
            assert!(!printed.contains("s3cret"), "{printed}");
            assert!(!printed.contains("pw"), "{printed}");
        }
        let bad = u
            .clone()
            .with_header("Authorization Bearer s3cret")
            .unwrap_err();
        assert!(!bad.to_string().contains("s3cret"), "{bad}");
        let bad = u.with_header("X-Token: s3cret\u{7}").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "a header must read 'Name: value' (header x-token): its value has characters a header cannot carry"
        );
    }

    #[test]
    fn prefix_is_kept_for_http_and_ws() {
        let u = ServerUrl::parse("https://box.example/comfy").unwrap();
        assert_eq!(u.http("/queue").as_str(), "https://box.example/comfy/queue");
        assert_eq!(
            u.websocket("abc").as_str(),
            "wss://box.example/comfy/ws?clientId=abc"
        );
    }

    #[test]
    fn ws_scheme_and_bare_host_are_accepted() {
        let u = ServerUrl::parse("ws://127.0.0.1:8188/ws").unwrap();
        assert_eq!(u.http("prompt").as_str(), "http://127.0.0.1:8188/prompt");
        let u = ServerUrl::parse("127.0.0.1:8188").unwrap();
        assert_eq!(u.http("queue").as_str(), "http://127.0.0.1:8188/queue");
    }

    #[test]
    fn other_schemes_are_refused_with_the_input_named() {
        let err = ServerUrl::parse("ftp://x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'ftp://x' is not an http(s):// or ws(s):// URL"
        );
        assert!(ServerUrl::parse("http://").is_err());
    }

    #[test]
    fn credentials_are_redacted() {
        let u = ServerUrl::parse("https://me:secret@box:8443/").unwrap();
        assert_eq!(u.redacted(), "https://***:***@box:8443");
    }
}
