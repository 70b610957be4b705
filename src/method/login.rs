//! `login` with a resume token (a JWT) and `logout`.

use super::{Call, Method, MethodResult, Params};
use crate::auth::AuthError;
use crate::durability::DurabilityError;
use crate::error::MethodError;
use crate::room::RoomError;
use crate::session::Session;
use crate::time::Millis;
use crate::users::Admission;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a login waits for the commit of its user's record by another
/// connection's login; the store answers in milliseconds unless it is gone.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// `login({resume})`: sign in with a token (a JWT), as every door does.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    pub(crate) token: String,
}

/// A sign-in: who, and until when the token holds.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    pub(crate) user: crate::ids::UserId,
    pub(crate) token: String,
    pub(crate) expires: Millis,
}

impl Call for Resume {
    type Output = SignedIn;

    fn method(&self) -> Method {
        Method::Login
    }

    async fn run(self, s: &mut Session) -> Result<SignedIn, MethodError> {
        resume(s, self.token).await
    }
}

/// The DDP door: parses `[{resume}]`, answers DDP's login result.
pub(super) async fn login(s: &mut Session, p: Params) -> MethodResult {
    let opts = p.obj(0, "params[0]")?;
    let token = match opts.get("resume") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(MethodError::matching("resume", "a string")),
        // Password and OAuth logins belong to an identity provider, not here.
        None => return Err(MethodError::UnrecognizedLogin),
    };
    let r = resume(s, token).await?;
    Ok(Some(json!({
        "id": r.user,
        "token": r.token,
        "tokenExpires": r.expires,
        "type": "resume",
    })))
}

async fn resume(s: &mut Session, token: String) -> Result<SignedIn, MethodError> {
    let user = s.server().auth.verify(&token)?;
    let users = &s.server().users;
    if users.is_revoked(&user.token_key) {
        return Err(AuthError::Revoked.into());
    }
    let store = s.server().store.clone();
    let admission = users.admit(&user, store.is_some()).map_err(|_| AuthError::UsernameTaken)?;
    // Durable before acknowledged, like every other change, and whichever
    // connection's login writes the record: a second login of the same
    // user waits for the first one's commit.
    match (admission, &store) {
        (Admission::Store { ops, version }, Some(store)) => {
            store.record(ops).await.map_err(|e| match e {
                // Cluster mode: another node's login claimed the name first.
                DurabilityError::Fenced => MethodError::from(AuthError::UsernameTaken),
                e => {
                    tracing::error!(error = %e, "cannot store user");
                    MethodError::Room(RoomError::Storage)
                }
            })?;
            users.committed(&user.id, version);
        }
        (Admission::Store { .. }, None) => {}
        (Admission::Wait { version }, _) => {
            match tokio::time::timeout(RECORD_WAIT, users.wait_committed(&user.id, version)).await {
                Ok(()) => {}
                Err(_) => {
                    tracing::error!(user = %user.id, "user record not committed in time");
                    return Err(MethodError::Room(RoomError::Storage));
                }
            }
        }
    }
    let result = SignedIn { user: user.id.clone(), token, expires: Millis(user.expires_ms) };
    tracing::debug!(conn = %s.conn().id, user = %user.id, "logged in");
    s.sign_in(user).await;
    Ok(result)
}

/// Ends the connection's identity and the token it signed in with: the
/// token is refused by `login` until it expires (durably, before the
/// result).
pub(super) async fn logout(s: &mut Session) -> MethodResult {
    if let Some(u) = s.user().cloned() {
        // Kept past `exp` by the clock-skew leeway `login` grants.
        let exp = u64::try_from(u.expires_ms / 1000).unwrap_or(0).saturating_add(crate::auth::LEEWAY_SECS);
        let op = s.server().users.revoke(&u.token_key, exp);
        if let Some(store) = &s.server().store {
            store.record(vec![op]).await.map_err(|e| {
                tracing::error!(error = %e, "cannot store logout");
                MethodError::Room(RoomError::Storage)
            })?;
        }
        s.sign_out().await;
    }
    Ok(None)
}
