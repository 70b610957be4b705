//! `joinRoom(rid, joinCode?)`: a signed-in user joins a public channel.

use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{Joined, RoomCommand};
use crate::session::Session;
use serde_json::Value;

#[derive(Debug, Clone)]
pub(crate) struct JoinRoom {
    pub(crate) rid: String,
    pub(crate) code: Option<String>,
}

impl Call for JoinRoom {
    /// Whether the caller became a member (false: it already was one).
    type Output = bool;

    fn method(&self) -> Method {
        Method::JoinRoom
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<bool, MethodError> {
        let who = s.require_user()?;
        let room = room(s, &self.rid).await?;
        let code = self.code;
        match room.ask(|tx| RoomCommand::JoinSelf { who: Box::new(who), code, respond_to: tx }).await? {
            Joined::New(_) => Ok(true),
            Joined::Existing(_) => Ok(false),
        }
    }
}

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    JoinRoom::precheck(s, Method::JoinRoom)?;
    let c = JoinRoom { rid: p.str(0, "rid")?.to_owned(), code: p.opt_str(1, "joinCode")?.map(str::to_owned) };
    // Already a member: Rocket.Chat returns nothing and posts nothing.
    Ok(c.run(s).await?.then_some(Value::Bool(true)))
}
