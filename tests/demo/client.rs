//! A small HTTPS client for the end-to-end tests: hyper over tokio-rustls, trusting only the
//! demo's CA, with a cookie jar and helpers to read the portal's forms.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// One response, fully read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}\n{}", self.status, self.headers, self.text())
    }
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.text()))
    }
}

/// A browser-ish client: cookies are kept per client.
pub struct Browser {
    tls: Arc<rustls::ClientConfig>,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(ca_pem: &[u8], base: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            tls: Arc::new(config),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    /// A second client with the same cookies (the same session), for concurrent requests.
    pub fn twin(&self) -> Browser {
        Browser {
            tls: Arc::clone(&self.tls),
            base: self.base.clone(),
            cookies: self.cookies.clone(),
        }
    }

    /// A bare TLS connection to the server (for requests hyper would not send).
    pub async fn connect_raw(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let uri: http::Uri = self.base.parse().unwrap();
        let host = uri.host().unwrap().to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        connector
            .connect(ServerName::try_from(host).unwrap(), tcp)
            .await
            .unwrap()
    }

    pub async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        };
        let uri: http::Uri = url.parse().unwrap();
        let host = uri.host().unwrap().to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        let name = ServerName::try_from(host.clone()).unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{host}:{port}"));
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header(header::COOKIE, cookie);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(Bytes::from(body))).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for value in headers.get_all(header::SET_COOKIE) {
            let s = value.to_str().unwrap();
            let pair = s.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || s.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], Vec::new()).await
    }

    pub async fn get_with(&mut self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, Vec::new()).await
    }

    pub async fn post_form(
        &mut self,
        url: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = form(fields);
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.send(Method::POST, url, &h, body.into_bytes()).await
    }
}

pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The value of the (first) `<input … name="NAME" value="…">` in a page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')?;
    Some(html_escape::decode_html_entities(&html[start..start + end]).into_owned())
}

/// The `action` of the form containing `marker`.
pub fn form_action(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let form_start = html[..at].rfind("<form")?;
    let tag = &html[form_start..];
    let a = tag.find("action=\"")? + "action=\"".len();
    let end = tag[a..].find('"')?;
    Some(tag[a..a + end].to_owned())
}

/// Query parameters of a URL.
pub fn query(url: &str) -> BTreeMap<String, String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
