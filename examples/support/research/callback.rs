//! The app's loopback redirect listener (RFC 8252 §7.3, a native app's `http://127.0.0.1:PORT`
//! redirect): it waits for the browser to arrive at the registered redirect URI and hands the
//! full callback URL (code, state, or error) to the app.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::app::AppError;

/// A listener on the redirect URI's loopback address.
pub struct CallbackListener {
    /// The address it listens on.
    pub addr: SocketAddr,
    path: String,
    rx: mpsc::Receiver<String>,
    task: JoinHandle<()>,
}

impl CallbackListener {
    /// Binds the host and port of `redirect_uri` (which must be `http://127.0.0.1:PORT/...`).
    pub async fn bind(redirect_uri: &str) -> Result<Self, AppError> {
        let url = openidconnect::url::Url::parse(redirect_uri)
            .map_err(|e| AppError::new(format!("redirect URI: {e}")))?;
        if url.scheme() != "http" || url.host_str() != Some("127.0.0.1") {
            return Err(AppError::new(
                "the loopback listener needs an http://127.0.0.1:PORT redirect URI",
            ));
        }
        let port = url.port().unwrap_or(80);
        let path = url.path().to_owned();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| AppError::new(format!("listening on 127.0.0.1:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AppError::new(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<String>(4);
        let origin = format!("http://127.0.0.1:{port}");
        let expected = path.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                let origin = origin.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let origin = origin.clone();
                            let expected = expected.clone();
                            async move {
                                let ok = req.uri().path() == expected;
                                if ok {
                                    let target = req
                                        .uri()
                                        .path_and_query()
                                        .map_or("/", |p| p.as_str())
                                        .to_owned();
                                    let _ = tx.try_send(format!("{origin}{target}"));
                                }
                                Ok::<_, Infallible>(page(ok))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            path,
            rx,
            task,
        })
    }

    /// The path it answers on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits for the browser's redirect and returns the full callback URL.
    pub async fn wait(&mut self, timeout: Duration) -> Result<String, AppError> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(url)) => Ok(url),
            Ok(None) => Err(AppError::new("the callback listener stopped")),
            Err(_) => Err(AppError::new(format!(
                "no browser came back to the redirect URI within {} s",
                timeout.as_secs()
            ))),
        }
    }
}

impl Drop for CallbackListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn page(ok: bool) -> Response<Full<Bytes>> {
    let (status, text) = if ok {
        (
            StatusCode::OK,
            "<!doctype html><meta charset=\"utf-8\"><title>Research app</title>\
             <p>The research app received your answer. You can close this window.</p>",
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "<!doctype html><meta charset=\"utf-8\"><title>Not found</title><p>Not found.</p>",
        )
    };
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
