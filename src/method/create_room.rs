//! `createChannel` and `createPrivateGroup`
//! `(name, members=[], readOnly=false, customFields={}, extraData={})`.

use super::{Call, Method, MethodResult, Params};
use crate::error::MethodError;
use crate::permissions::{Permission, allowed};
use crate::room::state::valid_room_name;
use crate::room::view::{ChannelEntry, RoomInfo};
use crate::room::{CreateOptions, RoomError, RoomRoles, RoomState, RoomType};
use crate::session::Session;
use crate::wire;
use serde_json::{Map, Value};

/// `createChannel`/`createPrivateGroup`'s parameters, checked.
#[derive(Debug, Clone)]
pub(crate) struct CreateRoom {
    pub(crate) kind: RoomType,
    pub(crate) name: String,
    /// Usernames to add; unknown ones are skipped, as Rocket.Chat does.
    pub(crate) members: Vec<String>,
    pub(crate) opts: CreateOptions,
}

impl CreateRoom {
    /// From the DDP params `(name, members, readOnly, customFields, extraData)`.
    pub(super) fn parse(kind: RoomType, p: &Params) -> Result<Self, MethodError> {
        let name = p.opt_str(0, "name")?.unwrap_or("");
        if name.trim().is_empty() {
            return Err(MethodError::InvalidName);
        }
        if !valid_room_name(name) {
            return Err(RoomError::InvalidRoomName(name.to_owned()).into());
        }
        let members = p.opt_str_list(1, "members")?;
        let mut opts = CreateOptions {
            read_only: p.opt_bool(2, "readOnly")?.unwrap_or(false),
            custom_fields: match p.opt_obj(3, "customFields")? {
                Some(o) => {
                    super::params::custom_fields(o)?;
                    o.clone()
                }
                None => Map::new(),
            },
            ..CreateOptions::default()
        };
        if let Some(extra) = p.opt_obj(4, "extraData")? {
            room_options(extra, &mut opts)?;
        }
        Ok(CreateRoom { kind, name: name.to_owned(), members, opts })
    }

    /// From the same fields by name (the REST and Socket.IO doors), checked
    /// as DDP checks them, so each refusal reads the same from every door.
    pub(crate) fn from_fields(
        kind: RoomType,
        name: Option<&Value>,
        members: Option<&Value>,
        read_only: Option<&Value>,
        custom_fields: Option<&Value>,
        extra: Option<&Map<String, Value>>,
    ) -> Result<Self, MethodError> {
        let v = |v: Option<&Value>| v.cloned().unwrap_or(Value::Null);
        let extra = extra.map_or(Value::Null, |e| Value::Object(e.clone()));
        CreateRoom::parse(kind, &Params(vec![v(name), v(members), v(read_only), v(custom_fields), extra]))
    }
}

/// roomd's room options in `extraData`. Rocket.Chat's own keys (broadcast,
/// encrypted, teamId…) are accepted and ignored.
fn room_options(extra: &Map<String, Value>, opts: &mut CreateOptions) -> Result<(), MethodError> {
    match extra.get("maxParticipants") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(u32::MAX) => opts.max_participants = Some(n as u32),
            _ => {
                return Err(MethodError::matching("extraData.maxParticipants", "a positive integer"));
            }
        },
    }
    for (key, slot) in [
        ("locked", &mut opts.locked),
        ("guestAccess", &mut opts.guest_access),
        ("guestChat", &mut opts.guest_chat),
    ] {
        match extra.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => *slot = *b,
            Some(_) => return Err(MethodError::matching(format!("extraData.{key}"), "a boolean")),
        }
    }
    Ok(())
}

impl Call for CreateRoom {
    /// The new room as its creator sees it; each door shapes its document
    /// (DDP and Socket.IO: [`wire::room::created_room`]).
    type Output = RoomInfo;

    fn method(&self) -> Method {
        method_of(self.kind)
    }

    /// Signed in, and holding the method's permission.
    fn precheck(s: &Session, method: Method) -> Result<(), MethodError> {
        let who = s.require_user()?;
        if method.permission().is_some_and(|perm| !allowed(perm, &who, RoomRoles::NONE)) {
            return Err(RoomError::ActionNotAllowed("Creating a room").into());
        }
        Ok(())
    }

    async fn run(self, s: &mut Session) -> Result<RoomInfo, MethodError> {
        CreateRoom::precheck(s, self.method())?;
        let who = s.require_user()?;
        let CreateRoom { kind, name, members, opts } = self;
        let mut others = Vec::new();
        for u in &members {
            if let Some(r) = s.server().users.by_username(u)
                && r.id != who.id
                && !others.iter().any(|o: &crate::room::UserRef| o.id == r.id)
            {
                others.push(r);
            }
        }
        RoomState::check_initial_capacity(1 + others.len(), opts.max_participants)?;
        Ok(s.server().create_room(name, kind, &who, others, opts).await?)
    }
}

/// The method creating a room of `kind`.
fn method_of(kind: RoomType) -> Method {
    match kind {
        RoomType::Private => Method::CreatePrivateGroup,
        _ => Method::CreateChannel,
    }
}

/// The DDP door: the document plus `rid` and `inserted`.
pub(super) async fn call(s: &mut Session, p: Params, kind: RoomType) -> MethodResult {
    CreateRoom::precheck(s, method_of(kind))?;
    let created = CreateRoom::parse(kind, &p)?.run(s).await?;
    Ok(Some(wire::room::created_room(&created)))
}

/// Slack's `channels.join` by name: the public channel named `name` in any
/// letter case joined, or a new one of the caller's, decided in one step by
/// the lobby ([`ServerState::join_or_create_channel`]: of concurrent callers
/// exactly one creates; the others join its room). Creating needs
/// `create-c` and a token of the caller's room creation budget, taken only
/// by the caller who creates and given back if the creation fails. The
/// caller joins an existing room by its rules (type, archive, join code,
/// lock, capacity).
///
/// [`ServerState::join_or_create_channel`]: crate::server::ServerState::join_or_create_channel
#[derive(Debug, Clone)]
pub(crate) struct JoinOrCreateChannel {
    pub(crate) name: String,
}

impl Call for JoinOrCreateChannel {
    type Output = ChannelEntry;

    /// A join, as far as limits and metrics go (Slack's join endpoints draw
    /// from the join bucket).
    fn method(&self) -> Method {
        Method::JoinRoom
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<ChannelEntry, MethodError> {
        let who = s.require_user()?;
        let name = self.name.as_str();
        if !valid_room_name(name) {
            return Err(RoomError::InvalidRoomName(name.to_owned()).into());
        }
        let server = s.server().clone();
        let limits = &server.session_limits;
        let mut charged = false;
        let r = server
            .join_or_create_channel(name, &who, || {
                if !allowed(Permission::CreateC, &who, RoomRoles::NONE) {
                    return Err(MethodError::from(RoomError::ActionNotAllowed("Creating a room")));
                }
                if limits.rate_limits {
                    let now = tokio::time::Instant::now();
                    server.room_creations.try_take(&who.id, limits.room_creation_spec(), now).map_err(
                        |wait| {
                            server.metrics.rate_limited("room_creation");
                            MethodError::TooManyRequests(crate::limits::millis_ceil(wait))
                        },
                    )?;
                    charged = true;
                }
                Ok(())
            })
            .await;
        if charged && r.is_err() {
            server.room_creations.refund(&who.id);
        }
        r
    }
}

/// Slack's `conversations.join`: the public channel with id `rid` joined.
#[derive(Debug, Clone)]
pub(crate) struct JoinChannel {
    pub(crate) rid: String,
}

impl Call for JoinChannel {
    type Output = ChannelEntry;

    fn method(&self) -> Method {
        Method::JoinRoom
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<ChannelEntry, MethodError> {
        let who = s.require_user()?;
        let room = super::room(s, &self.rid).await?;
        Ok(room.join_channel(who).await?)
    }
}
