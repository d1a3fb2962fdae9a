//! The S4S research app and its scripted patient, shared by `examples/research_app.rs`,
//! `examples/s4s_walkthrough.rs` and the integration tests.
//!
//! * [`http`]: a small HTTPS client (hyper + tokio-rustls, ring) trusting the demo's CA, plugged
//!   into `oauth2`/`openidconnect` through their async-HTTP-client trait.
//! * [`app`]: the app itself — SMART discovery, standalone launch with PKCE, id_token
//!   verification, refresh, download.
//! * [`callback`]: the loopback redirect listener.
//! * [`patient`]: a scripted patient driving the portal's plain HTML forms.
//! * [`story`]: the Sync for Science story, step by step, each step checked.

#![allow(dead_code)]

pub mod app;
pub mod callback;
pub mod http;
pub mod patient;
pub mod story;

use std::path::{Path, PathBuf};

use serde_json::Value;

use app::AppError;

/// What the research app needs from the demo's `demo.json`.
#[derive(Debug, Clone)]
pub struct DemoInfo {
    /// FHIR base URL.
    pub fhir_base: String,
    /// Portal base URL.
    pub portal_url: String,
    /// The connected-apps page.
    pub connected_apps_url: String,
    /// The CA certificate file to trust.
    pub ca_cert: PathBuf,
    /// The research app's client id.
    pub client_id: String,
    /// Its name as registered.
    pub client_name: String,
    /// Its loopback redirect URI.
    pub redirect_uri: String,
    /// The scopes it asks for.
    pub scope: String,
    /// The whole document.
    pub raw: Value,
}

/// The demo's research app client id.
pub const RESEARCH_CLIENT: &str = "research-app";

impl DemoInfo {
    /// Reads `demo.json` at `path`.
    pub fn load(path: &Path) -> Result<Self, AppError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AppError::new(format!("reading {}: {e}", path.display())))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| AppError::new(format!("{}: {e}", path.display())))?;
        Self::from_json(raw)
    }

    /// Picks the public research-app client and its loopback redirect URI out of `demo.json`.
    pub fn from_json(raw: Value) -> Result<Self, AppError> {
        let s = |k: &str| -> Result<String, AppError> {
            raw[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| AppError::new(format!("demo.json has no \"{k}\"")))
        };
        let fhir_base = s("fhir_base_url")?;
        let portal_url = s("portal_url")?;
        let connected_apps_url = raw["connected_apps_url"]
            .as_str()
            .map_or_else(|| format!("{portal_url}/apps"), str::to_owned);
        let ca_cert = PathBuf::from(s("ca_cert")?);
        let clients = raw["clients"].as_array().cloned().unwrap_or_default();
        let client = clients
            .iter()
            .find(|c| c["client_id"] == RESEARCH_CLIENT)
            .or_else(|| clients.iter().find(|c| c["type"] == "public"))
            .ok_or_else(|| AppError::new("demo.json lists no public client"))?;
        let client_id = client["client_id"].as_str().unwrap_or_default().to_owned();
        let client_name = client["name"].as_str().unwrap_or(&client_id).to_owned();
        let redirect_uri = client["redirect_uris"]
            .as_array()
            .and_then(|uris| {
                uris.iter()
                    .filter_map(Value::as_str)
                    .find(|u| u.starts_with("http://127.0.0.1:"))
            })
            .ok_or_else(|| AppError::new("the research app has no loopback redirect URI"))?
            .to_owned();
        let scope = client["scope"]
            .as_str()
            .unwrap_or("launch/patient openid fhirUser offline_access patient/*.rs")
            .to_owned();
        Ok(Self {
            fhir_base,
            portal_url,
            connected_apps_url,
            ca_cert,
            client_id,
            client_name,
            redirect_uri,
            scope,
            raw,
        })
    }

    /// The demo account `username` (its password and TOTP secret).
    pub fn patient(&self, username: &str) -> Result<(patient::Patient, String), AppError> {
        let user = self.raw["users"]
            .as_array()
            .and_then(|users| users.iter().find(|u| u["username"] == username))
            .ok_or_else(|| AppError::new(format!("demo.json has no user \"{username}\"")))?;
        let patient = patient::Patient {
            username: username.to_owned(),
            password: user["password"].as_str().unwrap_or_default().to_owned(),
            totp_secret: user["totp_secret"].as_str().map(str::to_owned),
        };
        let patient_id = user["patient_id"].as_str().unwrap_or_default().to_owned();
        Ok((patient, patient_id))
    }

    /// The research app's registration, as [`app::AppConfig`].
    pub fn app_config(&self) -> app::AppConfig {
        app::AppConfig {
            fhir_base: self.fhir_base.clone(),
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scope: self.scope.clone(),
        }
    }

    /// An HTTPS client trusting the demo's CA.
    pub fn http_client(&self) -> Result<http::HttpsClient, AppError> {
        http::HttpsClient::trusting_file(&self.ca_cert).map_err(|e| AppError::new(e.to_string()))
    }
}
