//! tempauth: `GET /auth/v1.0` exchanges `X-Auth-User: account:user` + `X-Auth-Key` (or
//! `X-Storage-User`/`X-Storage-Pass`) for a token and the account's storage URL; [`authorize`] checks
//! the token of every Swift and HLM request.
//!
//! Tokens are stateless: `<reseller_prefix>tk<hex payload>.<hex HMAC-SHA256>`, the payload carrying
//! expiry, reseller-admin flag, account and user. Any instance holding the same `token_secret` accepts
//! them, issuing a new token never revokes an older one (python-swiftclient authenticates once per
//! worker thread and uses the tokens in parallel), and nothing is stored. MACs and user keys are
//! compared in constant time.

use crate::config::{SwiftConfig, SwiftUser};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Domain separation for token MACs (and the version of the token format).
const TOKEN_CONTEXT: &[u8] = b"archiveinterface swift token v1\n";
/// Domain separation for comparing user keys.
const KEY_CONTEXT: &[u8] = b"archiveinterface swift key compare\n";

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account with the reseller prefix (`AUTH_test`).
    pub account: String,
    /// The user name within the account.
    pub user: String,
    /// May act on every account of the reseller prefix.
    pub reseller_admin: bool,
    /// When the token stops being valid.
    pub expires: SystemTime,
}

/// The secret that signs tokens: the configured one, or a random one for the life of this process.
fn secret(config: &SwiftConfig) -> Vec<u8> {
    if !config.token_secret.is_empty() {
        return config.token_secret.as_bytes().to_vec();
    }
    static RANDOM: OnceLock<[u8; 32]> = OnceLock::new();
    RANDOM
        .get_or_init(|| {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("the operating system's random source failed");
            bytes
        })
        .to_vec()
}

fn mac(config: &SwiftConfig, context: &[u8], data: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&secret(config)).expect("HMAC takes any key length");
    mac.update(context);
    mac.update(data);
    mac
}

fn token_prefix(config: &SwiftConfig) -> String {
    format!("{}tk", config.reseller_prefix)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A signed token for `user`, valid for `token_ttl_secs` from `now`.
pub(crate) fn issue_token(
    config: &SwiftConfig,
    user: &SwiftUser,
    now: SystemTime,
) -> (String, Identity) {
    let identity = Identity {
        account: format!("{}{}", config.reseller_prefix, user.account),
        user: user.user.clone(),
        reseller_admin: user.reseller_admin,
        expires: UNIX_EPOCH
            + Duration::from_secs(unix_secs(now).saturating_add(config.token_ttl_secs)),
    };
    let payload = format!(
        "{}\n{}\n{}\n{}",
        unix_secs(identity.expires),
        u8::from(identity.reseller_admin),
        identity.account,
        identity.user
    );
    let tag = mac(config, TOKEN_CONTEXT, payload.as_bytes())
        .finalize()
        .into_bytes();
    let token = format!(
        "{}{}.{}",
        token_prefix(config),
        hex::encode(payload.as_bytes()),
        hex::encode(tag)
    );
    (token, identity)
}

/// The identity a token carries, if its MAC is right and it has not expired at `now`.
pub(crate) fn verify_token(config: &SwiftConfig, token: &str, now: SystemTime) -> Option<Identity> {
    let body = token.strip_prefix(&token_prefix(config))?;
    let (payload_hex, tag_hex) = body.split_once('.')?;
    let payload = hex::decode(payload_hex).ok()?;
    let tag = hex::decode(tag_hex).ok()?;
    mac(config, TOKEN_CONTEXT, &payload)
        .verify_slice(&tag)
        .ok()?;
    let payload = String::from_utf8(payload).ok()?;
    let mut parts = payload.splitn(4, '\n');
    let expires = UNIX_EPOCH + Duration::from_secs(parts.next()?.parse().ok()?);
    let reseller_admin = parts.next()? == "1";
    let account = parts.next()?.to_string();
    let user = parts.next()?.to_string();
    (now < expires).then_some(Identity {
        account,
        user,
        reseller_admin,
        expires,
    })
}

/// Constant-time equality of two secrets (compares MACs of both, so neither length nor content leaks).
fn same_key(config: &SwiftConfig, given: &str, stored: &str) -> bool {
    let stored_tag = mac(config, KEY_CONTEXT, stored.as_bytes())
        .finalize()
        .into_bytes();
    mac(config, KEY_CONTEXT, given.as_bytes())
        .verify_slice(&stored_tag)
        .is_ok()
}

fn header_str<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Checks that the request's `X-Auth-Token` (or `X-Storage-Token`) is valid and allows acting on
/// `account` (the URL account, with its reseller prefix): 401 when the token is missing, forged or
/// expired; 403 when it belongs to another account and is not a reseller admin's.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    account: &str,
) -> Result<Identity, ApiError> {
    let config = &state.config.swift;
    let token = header_str(headers, &["x-auth-token", "x-storage-token"])
        .ok_or_else(|| unauthorized("Authentication required: send X-Auth-Token"))?;
    let identity = verify_token(config, token.trim(), SystemTime::now())
        .ok_or_else(|| unauthorized("The token is invalid or has expired"))?;
    let allowed = identity.account == account
        || (identity.reseller_admin && account.starts_with(&config.reseller_prefix));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "User {}:{} may not access account {account}",
                identity.account, identity.user
            ),
        ));
    }
    Ok(identity)
}

/// `http(s)://<host>` of the request, for the storage URL.
fn base_url(state: &AppState, headers: &HeaderMap, uri: &Uri) -> String {
    let host = header_str(headers, &["host"])
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| format!("{}:{}", state.config.address, state.config.port));
    let scheme = match header_str(headers, &["x-forwarded-proto"]) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// `GET /auth/v1.0`.
pub(super) async fn get_auth(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed("GET, HEAD").into_response();
    }
    let config = &state.config.swift;
    let login = header_str(&headers, &["x-auth-user", "x-storage-user"]);
    let key = header_str(&headers, &["x-auth-key", "x-storage-pass"]);
    let (Some(login), Some(key)) = (login, key) else {
        return unauthorized("Send X-Auth-User (account:user) and X-Auth-Key").into_response();
    };
    let (account, user) = login.split_once(':').unwrap_or(("", login));
    // Every configured key is compared, so the time taken does not tell which users exist.
    let mut found = None;
    for candidate in &config.users {
        let key_ok = same_key(config, key, &candidate.key);
        // A user configured without a key can never log in (an empty X-Auth-Key must not match it).
        if candidate.account == account && candidate.user == user && key_ok && !key.is_empty() {
            found = Some(candidate);
        }
    }
    let Some(user) = found else {
        return unauthorized("Wrong user or key").into_response();
    };
    let (token, identity) = issue_token(config, user, SystemTime::now());
    let storage_url = format!(
        "{}/v1/{}",
        base_url(&state, &headers, &uri),
        identity.account
    );
    let body = serde_json::json!({"storage": {"default": "local", "local": storage_url}});
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    let out = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    out.insert("x-auth-token", value(&token));
    out.insert("x-storage-token", value(&token));
    out.insert("x-storage-url", value(&storage_url));
    out.insert(
        "x-auth-token-expires",
        HeaderValue::from(config.token_ttl_secs),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> SwiftConfig {
        SwiftConfig {
            token_secret: secret.into(),
            token_ttl_secs: 60,
            ..SwiftConfig::default()
        }
    }

    fn user() -> SwiftUser {
        SwiftUser {
            account: "test".into(),
            user: "tester".into(),
            key: "testing".into(),
            reseller_admin: false,
        }
    }

    #[test]
    fn tokens_verify_until_they_expire() {
        let c = config("s3cret");
        let now = SystemTime::now();
        let (token, id) = issue_token(&c, &user(), now);
        assert!(token.starts_with("AUTH_tk"));
        assert_eq!(id.account, "AUTH_test");
        assert_eq!(verify_token(&c, &token, now), Some(id.clone()));
        assert_eq!(
            verify_token(&c, &token, now + Duration::from_secs(61)),
            None
        );
        // A second token does not revoke the first.
        let (other, _) = issue_token(&c, &user(), now + Duration::from_secs(1));
        assert_ne!(token, other);
        assert!(verify_token(&c, &token, now).is_some());
    }

    #[test]
    fn forged_and_foreign_tokens_fail() {
        let c = config("s3cret");
        let now = SystemTime::now();
        let (token, _) = issue_token(&c, &user(), now);
        assert_eq!(verify_token(&config("other"), &token, now), None);
        // Changing the payload (here: the account) breaks the MAC.
        let (body, tag) = token
            .strip_prefix("AUTH_tk")
            .unwrap()
            .split_once('.')
            .unwrap();
        let payload = String::from_utf8(hex::decode(body).unwrap()).unwrap();
        let forged = format!(
            "AUTH_tk{}.{tag}",
            hex::encode(payload.replace("AUTH_test", "AUTH_admin"))
        );
        assert_eq!(verify_token(&c, &forged, now), None);
        for junk in ["", "AUTH_tk", "AUTH_tkzz.zz", "AUTH_tk00.", "tk00.00"] {
            assert_eq!(verify_token(&c, junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn random_secret_is_stable_within_the_process() {
        let c = config("");
        let (token, _) = issue_token(&c, &user(), SystemTime::now());
        assert!(verify_token(&c, &token, SystemTime::now()).is_some());
        assert!(same_key(&c, "testing", "testing"));
        assert!(!same_key(&c, "testing", "testinG"));
        assert!(!same_key(&c, "", "testing"));
    }
}
