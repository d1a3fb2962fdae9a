//! The data directory: certificates, signing keys, client keys and secrets generated on first
//! start and reused afterwards, and `demo.json` written on every start.
//!
//! ```text
//! DIR/tls/ca.pem, ca-key.pem            the demo CA (trust ca.pem in clients)
//! DIR/tls/server.pem, server-key.pem    the server certificate (SANs 127.0.0.1, localhost)
//! DIR/keys/access-es256.pem             access-token signing key (ES256)
//! DIR/keys/id-rs256.pem                 id_token signing key (RS256, made with `openssl`)
//! DIR/clients/<client_id>.pem           private keys of the private_key_jwt demo clients
//! DIR/secrets.json                      passwords, password hashes, TOTP secrets, client secret,
//!                                       audit MAC key (mode 0600)
//! DIR/audit/                            the audit log (hash-chained JSON lines)
//! DIR/demo.json                         what a test tool needs to drive the demo
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
};
use serde::{Deserialize, Serialize};

use fhirguard::auth::{HashParams, Password, PasswordHasher, TotpSecret};

use super::EhrError;

/// Writes `bytes` to `path` readable by the owner only (secrets and private keys).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), EhrError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// `n` random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], EhrError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| EhrError::msg("random source failed"))?;
    Ok(out)
}

/// A random URL-safe token of 32 bytes.
pub(crate) fn random_token() -> Result<String, EhrError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A random demo password: four groups of base32-ish characters, easy to type.
fn random_password() -> Result<String, EhrError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let bytes = random_bytes::<20>()?;
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
    }
    Ok(out)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An EC private key (PKCS#8 PEM) for P-256 or P-384.
fn generate_ec_pem(p384: bool) -> Result<String, EhrError> {
    let alg = if p384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
        .map_err(|_| EhrError::msg("EC key generation failed"))?;
    Ok(pem("PRIVATE KEY", doc.as_ref()))
}

/// An RSA-2048 private key (PKCS#8 PEM). `ring` verifies and signs RSA but cannot generate
/// keys, so the demo asks the `openssl` command line tool once per data directory.
fn generate_rsa_pem(path: &Path) -> Result<(), EhrError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-quiet",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            EhrError::msg(format!(
                "running `openssl genpkey` (needed once to make the RS256 keys): {e}"
            ))
        })?;
    if !status.success() {
        return Err(EhrError::msg("`openssl genpkey` failed"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Reads `path`, or creates it with `make` first.
fn load_or(
    path: &Path,
    make: impl FnOnce() -> Result<String, EhrError>,
) -> Result<String, EhrError> {
    if path.exists() {
        return Ok(fs::read_to_string(path)?);
    }
    let text = make()?;
    write_private(path, text.as_bytes())?;
    Ok(text)
}

/// PEM files of the TLS set-up.
pub(crate) struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert_chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The demo CA and the server certificate it signs, generated once per data directory.
pub(crate) fn tls_files(dir: &Path) -> Result<TlsFiles, EhrError> {
    let tls = dir.join("tls");
    fs::create_dir_all(&tls)?;
    let ca_path = tls.join("ca.pem");
    let ca_key_path = tls.join("ca-key.pem");
    let server_path = tls.join("server.pem");
    let server_key_path = tls.join("server-key.pem");
    if !(ca_path.exists() && server_path.exists() && server_key_path.exists()) {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let err = |e: rcgen::Error| EhrError::msg(format!("certificate generation: {e}"));
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fhirguard demo CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        ca_params.not_before = now - time::Duration::days(1);
        ca_params.not_after = now + time::Duration::days(825);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "fhirguard demo EHR");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let server_cert = params.signed_by(&server_key, &issuer).map_err(err)?;

        write_private(&ca_key_path, issuer.key().serialize_pem().as_bytes())?;
        fs::write(&ca_path, ca_cert.pem())?;
        write_private(&server_key_path, server_key.serialize_pem().as_bytes())?;
        fs::write(
            &server_path,
            format!("{}{}", server_cert.pem(), ca_cert.pem()),
        )?;
    }
    Ok(TlsFiles {
        ca_cert: fs::canonicalize(&ca_path)?,
        cert_chain_pem: fs::read(&server_path)?,
        key_pem: fs::read(&server_key_path)?,
    })
}

/// The server's signing keys (PKCS#8 PEM).
pub(crate) struct ServerKeys {
    pub access_es256: String,
    pub id_rs256: String,
}

pub(crate) fn server_keys(dir: &Path) -> Result<ServerKeys, EhrError> {
    let keys = dir.join("keys");
    let access_es256 = load_or(&keys.join("access-es256.pem"), || generate_ec_pem(false))?;
    let id_path = keys.join("id-rs256.pem");
    if !id_path.exists() {
        generate_rsa_pem(&id_path)?;
    }
    Ok(ServerKeys {
        access_es256,
        id_rs256: fs::read_to_string(&id_path)?,
    })
}

/// A private_key_jwt client's key: its file and its PEM.
pub(crate) struct ClientKey {
    pub path: PathBuf,
    pub pem: String,
}

/// `DIR/clients/<id>.pem`, generated once: ES384 (`rsa = false`) or RS384 (`rsa = true`).
pub(crate) fn client_key(dir: &Path, client_id: &str, rsa: bool) -> Result<ClientKey, EhrError> {
    let path = dir.join("clients").join(format!("{client_id}.pem"));
    if !path.exists() {
        if rsa {
            generate_rsa_pem(&path)?;
        } else {
            let pem = generate_ec_pem(true)?;
            write_private(&path, pem.as_bytes())?;
        }
    }
    Ok(ClientKey {
        pem: fs::read_to_string(&path)?,
        path: fs::canonicalize(&path)?,
    })
}

/// One demo account as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredUser {
    pub username: String,
    pub password: String,
    pub password_hash: String,
    pub patient_id: String,
    pub totp_secret: Option<String>,
}

/// Everything secret the data directory keeps between starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Secrets {
    pub users: Vec<StoredUser>,
    pub client_secret: String,
    pub audit_key_b64: String,
}

/// The demo accounts: login name, patient, whether a TOTP authenticator is enrolled.
pub(crate) const ACCOUNTS: &[(&str, &str, bool)] =
    &[("dustin", "355", false), ("lucien", "85", true)];

/// Loads `DIR/secrets.json`, or generates every secret and writes it.
pub(crate) fn secrets(dir: &Path, hasher: &PasswordHasher) -> Result<Secrets, EhrError> {
    let path = dir.join("secrets.json");
    if path.exists() {
        let text = fs::read_to_string(&path)?;
        return serde_json::from_str(&text)
            .map_err(|e| EhrError::msg(format!("{}: {e}", path.display())));
    }
    let mut users = Vec::new();
    for (username, patient, totp) in ACCOUNTS {
        let password = random_password()?;
        let hash = hasher
            .hash(&Password::new(password.clone()))
            .map_err(|e| EhrError::msg(format!("password hashing: {e}")))?;
        let totp_secret = if *totp {
            let secret =
                TotpSecret::generate(20).map_err(|e| EhrError::msg(format!("TOTP: {e}")))?;
            Some(secret.to_base32().to_string())
        } else {
            None
        };
        users.push(StoredUser {
            username: (*username).to_owned(),
            password,
            password_hash: hash.encode(),
            patient_id: (*patient).to_owned(),
            totp_secret,
        });
    }
    let client_secret = fhirguard::token::ClientSecret::generate()
        .ok_or_else(|| EhrError::msg("random source failed"))?
        .expose()
        .to_owned();
    let secrets = Secrets {
        users,
        client_secret,
        audit_key_b64: base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>()?),
    };
    let text = serde_json::to_vec_pretty(&secrets).map_err(|e| EhrError::msg(e.to_string()))?;
    write_private(&path, &text)?;
    Ok(secrets)
}

/// The password hasher of the demo: OWASP 2023 parameters.
pub(crate) fn hasher() -> Result<PasswordHasher, EhrError> {
    PasswordHasher::new(HashParams::default())
        .map_err(|e| EhrError::msg(format!("password hasher: {e}")))
}
