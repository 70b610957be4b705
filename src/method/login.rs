//! `login` with a resume token (a JWT) and `logout`.

use super::{MethodResult, Params};
use crate::error::MethodError;
use crate::session::Session;
use crate::time::Millis;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn login(s: &mut Session, p: Params) -> MethodResult {
    let opts = p.obj(0, "params[0]")?;
    let token = match opts.get("resume") {
        Some(Value::String(t)) => t,
        Some(_) => return Err(MethodError::matching("resume", "a string")),
        // Password and OAuth logins belong to an identity provider, not here.
        None => return Err(MethodError::UnrecognizedLogin),
    };
    let user = s.server.auth.verify(token)?;
    if s.server.users.remember(&user)
        && let Some(store) = &s.server.store
    {
        // Durable before acknowledged, like every other change.
        store.commit(vec![crate::store::user_op(&user)]).await.map_err(|e| {
            tracing::error!(error = %e, "cannot store user");
            MethodError::Room(crate::room::RoomError::Storage)
        })?;
    }
    if s.guest_id.is_some() {
        // A guest who signs in stops being that guest: its seats are released
        // (after the usual grace) and its subscriptions end.
        s.drop_all_subs(&MethodError::SubNotAllowed).await;
        s.release_guest().await;
    } else if s.user.as_ref().is_some_and(|u| u.id != user.id) {
        // Subscriptions were granted to the previous identity.
        s.drop_all_subs(&MethodError::SubNotAllowed).await;
    }
    let result = json!({
        "id": user.id,
        "token": token,
        "tokenExpires": Millis(user.expires_ms),
        "type": "resume",
    });
    tracing::debug!(conn = %s.conn().id, user = %user.id, "logged in");
    s.set_online(Some((user.id.clone(), user.username.clone())));
    s.show_own_record(&user);
    s.user = Some(Arc::new(user));
    Ok(Some(result))
}

pub async fn logout(s: &mut Session) -> MethodResult {
    s.hide_own_record();
    if s.user.take().is_some() {
        s.drop_all_subs(&MethodError::SubNotAllowed).await;
        s.set_online(None);
    }
    Ok(None)
}
