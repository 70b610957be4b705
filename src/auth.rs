//! Identity: verifying resume tokens (JWTs) and minting them for `roomd token`.
//!
//! The algorithm is pinned when the verifier is built: a token whose header
//! names any other algorithm (including `none`) is refused before its
//! signature is even looked at.

use crate::ids::UserId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest token we will try to decode; real tokens are a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// Claims roomd reads from a resume token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Server-wide roles from the token's `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlobalRole {
    Admin,
    User,
    Bot,
}

impl GlobalRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(GlobalRole::Admin),
            "user" => Some(GlobalRole::User),
            "bot" => Some(GlobalRole::Bot),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GlobalRole::Admin => "admin",
            GlobalRole::User => "user",
            GlobalRole::Bot => "bot",
        }
    }
}

/// A verified, signed-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub name: Option<String>,
    pub roles: Vec<GlobalRole>,
    /// Token expiry in ms, echoed as `tokenExpires`.
    pub expires_ms: i64,
    /// Names the token (SHA-256 of it, hex) for `logout`'s revocation list,
    /// without keeping a usable token around.
    pub token_key: String,
}

impl User {
    pub fn has_role(&self, role: GlobalRole) -> bool {
        self.roles.contains(&role)
    }
}

/// Why a token was refused. All map to Meteor.Error 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm not accepted")]
    WrongAlgorithm,
    #[error("malformed token")]
    Malformed,
    #[error("token too large")]
    TooLarge,
    #[error("token lacks a usable username or subject")]
    MissingClaims,
    #[error("token subject is reserved for guests")]
    GuestSubject,
    #[error("token has an audience but none is configured")]
    AudienceNotConfigured,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token issuer not accepted")]
    WrongIssuer,
    #[error("token was ended by logout")]
    Revoked,
    #[error("username belongs to another user")]
    UsernameTaken,
}

impl AuthError {
    /// Human reason sent to the client; says what is wrong without helping
    /// an attacker (no key material, no library messages).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Expired => "Your session has expired. Please log in again.",
            AuthError::NotYetValid => "Token is not valid yet",
            AuthError::BadSignature => "Invalid token signature",
            AuthError::WrongAlgorithm => "Token algorithm is not accepted",
            AuthError::Malformed => "Malformed token",
            AuthError::TooLarge => "Token is too large",
            AuthError::MissingClaims => "Token must carry sub and username claims",
            AuthError::GuestSubject => "Token subject must not start with guest-",
            AuthError::AudienceNotConfigured => {
                "Token has an audience (aud) but roomd accepts none; set --jwt-audience"
            }
            AuthError::WrongAudience => "Token audience (aud) is not accepted (--jwt-audience)",
            AuthError::WrongIssuer => "Token issuer (iss) is not accepted (--jwt-issuer)",
            AuthError::Revoked => "Token was ended by logout. Please log in again.",
            AuthError::UsernameTaken => "Username belongs to another user",
        }
    }
}

/// Verifies (and, for the CLI, mints) tokens with one secret.
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    /// Whether `--jwt-audience` was given (to explain a refused `aud`).
    audience_set: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Small skew tolerance for clocks that disagree by a few seconds.
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            audience_set: false,
        }
    }

    /// Accepts only tokens whose `aud` names one of `audience` and whose
    /// `iss` is one of `issuer`; either list empty leaves that claim
    /// unchecked, except that a token with an `aud` is refused when no
    /// audience is configured (it was meant for someone else).
    pub fn with_claim_checks(mut self, audience: &[String], issuer: &[String]) -> Self {
        let mut required = vec!["exp", "sub"];
        if !audience.is_empty() {
            self.validation.set_audience(audience);
            self.audience_set = true;
            required.push("aud");
        }
        if !issuer.is_empty() {
            self.validation.set_issuer(issuer);
            required.push("iss");
        }
        self.validation.set_required_spec_claims(&required);
        self
    }

    /// Verifies tokens signed by an identity provider with RS256 (RSA key)
    /// or ES256 (P-256 key), given its public key in PEM. The algorithm
    /// follows the key and is pinned like HS256's. Such an authenticator
    /// cannot mint tokens that it accepts (it holds no private key).
    pub fn public_key(pem: &[u8]) -> Result<Self, String> {
        let (decoding, alg) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (k, Algorithm::RS256)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (k, Algorithm::ES256)
        } else {
            return Err("the public key is neither an RSA nor an EC (P-256) PEM key".into());
        };
        let mut auth = Authenticator::hs256(crate::ids::secret(64).as_bytes());
        auth.decoding = decoding;
        auth.validation.algorithms = vec![alg];
        Ok(auth)
    }

    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
                ErrorKind::InvalidAudience if self.audience_set => AuthError::WrongAudience,
                ErrorKind::InvalidAudience => AuthError::AudienceNotConfigured,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaims,
                // serde reports an absent `username` as a JSON error.
                ErrorKind::Json(e) if e.to_string().contains("missing field") => AuthError::MissingClaims,
                _ => AuthError::Malformed,
            }
        })?;
        let c = data.claims;
        let username = c.username.trim();
        if c.sub.is_empty() || c.sub.len() > 128 || username.is_empty() || username.len() > 128 {
            return Err(AuthError::MissingClaims);
        }
        // `guest-` ids belong to roomd's guests; a token may not claim one,
        // in any case (ids are compared exactly, but people read them).
        if c.sub.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("guest-")) {
            return Err(AuthError::GuestSubject);
        }
        let roles = match &c.roles {
            Some(list) => list.iter().filter_map(|r| GlobalRole::parse(r)).collect(),
            None => vec![GlobalRole::User],
        };
        Ok(User {
            id: UserId(c.sub.clone()),
            username: username.to_owned(),
            name: c.name.clone(),
            roles,
            expires_ms: i64::try_from(c.exp).unwrap_or(i64::MAX / 1000).saturating_mul(1000),
            token_key: token_key(token),
        })
    }

    /// Signs `claims` with a fresh `jti`, and no audience or issuer.
    pub fn mint(&self, claims: &Claims) -> String {
        self.mint_with(claims, &MintOptions::default())
    }

    /// Signs `claims` plus what `options` adds. Every token gets a random
    /// `jti` (22 characters, 132 bits): logout revokes a token by its bytes
    /// ([`token_key`]), and two tokens of one user minted in the same second
    /// would otherwise be the same bytes, so ending one would end both.
    pub fn mint_with(&self, claims: &Claims, options: &MintOptions) -> String {
        /// The signed payload: roomd's claims and the standard ones only a
        /// minted token carries (verification reads `aud` and `iss` through
        /// `Validation`, never into [`Claims`]).
        #[derive(Serialize)]
        struct Minted<'a> {
            #[serde(flatten)]
            claims: &'a Claims,
            jti: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<serde_json::Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            iss: Option<&'a str>,
        }
        let aud = match options.audience.as_slice() {
            [] => None,
            [one] => Some(serde_json::Value::from(one.as_str())),
            many => Some(serde_json::Value::from(many.to_vec())),
        };
        let minted = Minted { claims, jti: crate::ids::secret(22), aud, iss: options.issuer.as_deref() };
        // HS256 signing with an in-memory key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &minted, &self.encoding).unwrap_or_default()
    }
}

/// The standard claims `roomd token` can add for a server that checks them
/// (`--jwt-audience`, `--jwt-issuer`).
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    /// `aud`: one audience is written as a string, several as an array.
    pub audience: Vec<String>,
    /// `iss`.
    pub issuer: Option<String>,
}

/// The revocation-list key of `token`.
pub fn token_key(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the secret came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env,
    File(String),
    /// Generated (or reused) development secret in the data directory.
    DevFile(String),
}

/// Resolves the JWT secret: env var, then `--jwt-secret-file`, then a
/// development secret created on first start under `data_dir` and reused.
pub fn load_secret(
    env_secret: Option<&str>,
    secret_file: Option<&Path>,
    data_dir: &Path,
) -> std::io::Result<(Vec<u8>, SecretSource)> {
    if let Some(s) = env_secret.filter(|s| !s.is_empty()) {
        return Ok((s.as_bytes().to_vec(), SecretSource::Env));
    }
    if let Some(p) = secret_file {
        let s = std::fs::read_to_string(p)?;
        let s = s.trim();
        if s.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("secret file {} is empty", p.display()),
            ));
        }
        return Ok((s.as_bytes().to_vec(), SecretSource::File(p.display().to_string())));
    }
    let path = data_dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            Ok((s.trim().as_bytes().to_vec(), SecretSource::DevFile(path.display().to_string())))
        }
        _ => {
            std::fs::create_dir_all(data_dir)?;
            let secret = crate::ids::secret(64);
            write_private(&path, &secret)?;
            Ok((secret.into_bytes(), SecretSource::DevFile(path.display().to_string())))
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            username: "alice".into(),
            name: None,
            roles: None,
            exp,
            nbf: None,
            iat: None,
        }
    }

    /// A P-256 key pair made for this test with `openssl genpkey`.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVad1wVbNnD1VgPqY
+E/8ehGaI9pWavI8jP49j2ni0yKhRANCAATDxfDaZEYxj3mA2YSw/3atvP+FznXM
Eh2pWbgLShWXVnZM+9sz0VJPowHs28vOtH6P5aWCJNSSmFr8AM+wc+Ao
-----END PRIVATE KEY-----
";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEw8Xw2mRGMY95gNmEsP92rbz/hc51
zBIdqVm4C0oVl1Z2TPvbM9FST6MB7NvLzrR+j+WlgiTUkpha/ADPsHPgKA==
-----END PUBLIC KEY-----
";

    #[test]
    fn public_key_tokens_verify_and_algorithm_stays_pinned() {
        let a = Authenticator::public_key(EC_PUBLIC.as_bytes()).unwrap();
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let t = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(now_secs() + 60), &key).unwrap();
        assert_eq!(a.verify(&t).unwrap().username, "alice");
        // An HS256 token (e.g. signed with the public key as an HMAC secret,
        // the classic confusion attack) is refused.
        let hs = Authenticator::hs256(EC_PUBLIC.as_bytes()).mint(&claims(now_secs() + 60));
        assert_eq!(a.verify(&hs), Err(AuthError::WrongAlgorithm));
        assert!(Authenticator::public_key(b"not a key").is_err());
    }

    #[test]
    fn roundtrip_and_rejections() {
        let a = Authenticator::hs256(b"s3cret");
        let t = a.mint(&claims(now_secs() + 60));
        let u = a.verify(&t).unwrap();
        assert_eq!(u.username, "alice");
        assert_eq!(u.roles, vec![GlobalRole::User]);

        let expired = a.mint(&claims(now_secs() - 3600));
        assert_eq!(a.verify(&expired), Err(AuthError::Expired));

        let other = Authenticator::hs256(b"other").mint(&claims(now_secs() + 60));
        assert_eq!(a.verify(&other), Err(AuthError::BadSignature));

        // alg:none: header {"alg":"none","typ":"JWT"}, empty signature.
        let body = t.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert!(a.verify(&none).is_err());
        assert_eq!(a.verify("garbage"), Err(AuthError::Malformed));
    }

    #[test]
    fn minted_tokens_are_unique_and_carry_audience_and_issuer() {
        let a = Authenticator::hs256(b"s3cret");
        let c = claims(now_secs() + 60);
        let (t1, t2) = (a.mint(&c), a.mint(&c));
        assert_ne!(t1, t2, "same claims, same second: still two tokens");
        assert_ne!(a.verify(&t1).unwrap().token_key, a.verify(&t2).unwrap().token_key);
        let checked = Authenticator::hs256(b"s3cret").with_claim_checks(&["roomd".into()], &["idp".into()]);
        // Which of two missing claims is named first is up to jsonwebtoken
        // (a hash set), so this token lacks only the audience.
        let no_aud = a.mint_with(&c, &MintOptions { audience: vec![], issuer: Some("idp".into()) });
        assert_eq!(checked.verify(&no_aud), Err(AuthError::WrongAudience));
        let opts = MintOptions { audience: vec!["roomd".into()], issuer: Some("idp".into()) };
        assert_eq!(checked.verify(&a.mint_with(&c, &opts)).unwrap().username, "alice");
        let opts = MintOptions { audience: vec!["other".into(), "roomd".into()], issuer: Some("idp".into()) };
        assert_eq!(checked.verify(&a.mint_with(&c, &opts)).unwrap().username, "alice");
    }
}
