//! Per-connection DDP state: whether `connect` happened, who is signed in,
//! which subscriptions are open. Turns each inbound frame into replies.

use crate::auth::{GlobalRole, User};
use crate::conn::{CloseReason, ConnHandle};
use crate::error::MethodError;
use crate::hub::{LoggedEvent, UserEvent};
use crate::ids::{RoomId, UserId};
use crate::limits::{self, MethodClass, SessionLimiter};
use crate::method::{Call, Method, MethodResult};
use crate::metrics::ConnKind;
use crate::permissions::Principal;
use crate::room::{RoomCommand, RoomError, RoomHandle, RoomListener, Topic};
use crate::server::ServerState;
use crate::wire::{self, ClientFrame, FrameError};
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;

/// DDP versions roomd speaks; all behave the same except that `pre1`
/// predates heartbeats.
const SUPPORTED_VERSIONS: [&str; 3] = ["1", "pre2", "pre1"];

/// An open subscription that delivers something (inert subs are not
/// stored: they never fire, and `unsub` answers `nosub` for any id).
#[derive(Debug, Clone)]
pub(crate) enum Sub {
    Room { room: RoomHandle, topic: Topic },
    User { uid: UserId, event: UserEvent },
    Logged(LoggedEvent),
}

impl Sub {
    fn same_target(&self, other: &Sub) -> bool {
        match (self, other) {
            (Sub::Room { room: a, topic: t }, Sub::Room { room: b, topic: u }) => a.id == b.id && t == u,
            (Sub::User { uid: a, event: e }, Sub::User { uid: b, event: f }) => a == b && e == f,
            (Sub::Logged(a), Sub::Logged(b)) => a == b,
            _ => false,
        }
    }
}

pub(crate) struct Session {
    /// The connection's outbound side: replies and events go through it.
    conn: ConnHandle,
    /// What every connection shares (rooms, users, limits, metrics).
    server: Arc<ServerState>,
    /// Whether DDP `connect` succeeded: nothing else is served before it.
    connected: bool,
    /// Whether the client speaks heartbeats (`pre1` predates them).
    heartbeat: bool,
    /// The signed-in user, if any. `None` means guest.
    user: Option<Arc<User>>,
    /// This connection's guest identity, created on its first `join-room`.
    guest_id: Option<UserId>,
    /// Rooms that answered a `join-room` of this connection's guest: on
    /// close, each is told so the guest's seat is released after the grace
    /// period. Calls run to completion before the connection's cleanup, so
    /// recording a room once it answered leaves no ghost.
    guest_rooms: Vec<RoomHandle>,
    /// DDP sub id → what it listens to.
    subs: SubMap,
    /// The user this connection counts as online for.
    online_as: Option<UserId>,
    /// Rate limits and the join-code brake of this connection.
    limiter: SessionLimiter,
    /// Method calls read and not yet answered (see `run_method`); at most
    /// one while calls run one at a time, so a `u32` packs beside the flags.
    pending_calls: u32,
    /// How this connection is counted in `roomd_connections`.
    kind: ConnKind,
    /// The client's address, for the per-address join-code brake.
    peer: std::net::IpAddr,
    /// When the signed-in user's token expires: the connection is closed
    /// then (4010) unless a `login` with a fresher token moved it.
    token_expiry: Option<Instant>,
    /// What the door this session serves gives its calls.
    door: DoorContext,
}

/// The little a door tells the calls of its sessions: whether the session
/// is a connection at all, and how it hears the rooms it joins by code.
/// Everything else about a call is the same from every door.
pub(crate) enum DoorContext {
    /// A DDP connection: rooms reach it through its subscriptions.
    Ddp,
    /// A connection of a door that hears rooms as events (Socket.IO): the
    /// rooms it joins by code send their meeting events to this listener.
    Listening(Arc<dyn RoomListener>),
    /// One HTTP request (REST): not a connection, so signing in neither
    /// marks the user online (no `user-status` flap per request) nor moves
    /// the connection gauges, and it has no client to show the user's own
    /// record to.
    Request,
}

impl DoorContext {
    fn is_request(&self) -> bool {
        matches!(self, DoorContext::Request)
    }
}

impl Session {
    pub(crate) fn new(conn: ConnHandle, server: Arc<ServerState>, peer: std::net::IpAddr) -> Self {
        Session {
            conn,
            connected: false,
            heartbeat: true,
            user: None,
            guest_id: None,
            guest_rooms: Vec::new(),
            subs: SubMap::default(),
            online_as: None,
            limiter: SessionLimiter::new(&server.session_limits, Instant::now()),
            pending_calls: 0,
            kind: ConnKind::Guest,
            peer,
            token_expiry: None,
            door: DoorContext::Ddp,
            server,
        }
    }

    /// A session for one REST request: signed in by its caller with
    /// [`Session::call`] (`login`), then used for that request's calls only.
    pub(crate) fn per_request(conn: ConnHandle, server: Arc<ServerState>, peer: std::net::IpAddr) -> Self {
        let mut s = Session::new(conn, server, peer);
        s.connected = true;
        s.door = DoorContext::Request;
        s
    }

    /// A session for a door other than DDP (Socket.IO): `listener` hears the
    /// rooms this session joins by code. Its calls go through [`Session::call`].
    pub(crate) fn for_door(
        conn: ConnHandle,
        server: Arc<ServerState>,
        peer: std::net::IpAddr,
        listener: Arc<dyn RoomListener>,
    ) -> Self {
        let mut s = Session::new(conn, server, peer);
        s.connected = true;
        s.door = DoorContext::Listening(listener);
        s
    }

    /// Where rooms joined by code send meeting events, if this door hears them.
    pub(crate) fn room_listener(&self) -> Option<Arc<dyn RoomListener>> {
        match &self.door {
            DoorContext::Listening(l) => Some(l.clone()),
            DoorContext::Ddp | DoorContext::Request => None,
        }
    }

    /// One typed method call from a door other than DDP: the same limits,
    /// brakes, dispatch, metrics and error logging as a DDP `method` frame.
    pub(crate) async fn call<C: Call>(&mut self, call: C) -> Result<C::Output, MethodError> {
        self.call_parsed(call.method(), Ok(call)).await
    }

    /// Like [`Session::call`], for a call whose parameters the door could not
    /// build: `call`'s error is answered where the DDP door answers a bad
    /// parameter, after the limits and the caller checks of `method`, so a
    /// door refuses exactly as DDP does.
    pub(crate) async fn call_parsed<C: Call>(
        &mut self,
        method: Method,
        call: Result<C, MethodError>,
    ) -> Result<C::Output, MethodError> {
        let result = match self.open_call(Some(method)) {
            Opened::Busy(e) => Err(e),
            Opened::Refused(e) => self.close_call(Some(method), None, Err(e)).await,
            Opened::Admitted(a) => {
                let r = match C::precheck(self, method).and(call) {
                    Ok(c) => c.run(self).await,
                    Err(e) => Err(e),
                };
                self.close_call(Some(method), Some(a), r).await
            }
        };
        if let Err(e) = &result {
            log_error(e, method.name(), self.conn.id);
        }
        self.sync_kind();
        self.pending_calls -= 1;
        result
    }

    /// Starts the token-expiry clock for a token expiring at `expires_ms`
    /// (wall clock, ms since the epoch).
    fn set_token_expiry(&mut self, expires_ms: i64) {
        // Capped so the deadline stays representable; a connection living a
        // year on one token signs in again.
        let left = expires_ms.saturating_sub(crate::time::Millis::now().0).clamp(0, 365 * 86_400_000);
        self.token_expiry = Some(Instant::now() + std::time::Duration::from_millis(left as u64));
    }

    fn clear_token_expiry(&mut self) {
        self.token_expiry = None;
    }

    /// When the connection's identity ends, if it is signed in.
    pub(crate) fn token_expiry(&self) -> Option<Instant> {
        self.token_expiry
    }

    /// How this connection counts in the connection gauges right now.
    pub(crate) fn kind(&self) -> ConnKind {
        self.kind
    }

    pub(crate) fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    /// What every connection shares.
    pub(crate) fn server(&self) -> &Arc<ServerState> {
        &self.server
    }

    /// The signed-in user, if any.
    pub(crate) fn user(&self) -> Option<&Arc<User>> {
        self.user.as_ref()
    }

    /// This connection's guest identity, once a `join-room` created it.
    pub(crate) fn guest_id(&self) -> Option<&UserId> {
        self.guest_id.as_ref()
    }

    /// Records that `room` answered a `join-room` of this connection's
    /// guest, known from now on as `guest` when the room gave it one. Called
    /// once the room answered, whatever it answered: the room may hold a
    /// seat (or a resumed one) for this connection.
    pub(crate) fn record_guest(&mut self, room: &RoomHandle, guest: Option<UserId>) {
        if let Some(g) = guest {
            self.guest_id = Some(g);
        }
        if !self.guest_rooms.iter().any(|r| r.id == room.id) {
            push_snug(&mut self.guest_rooms, room.clone());
        }
    }

    /// The open subscriptions.
    pub(crate) fn subs(&self) -> &SubMap {
        &self.subs
    }

    /// Keeps subscription `id` (replacing one with the same id).
    pub(crate) fn add_sub(&mut self, id: String, sub: Sub) {
        self.subs.insert(id, sub);
    }

    /// Makes `user` (verified, and its record durable) this connection's
    /// identity: a guest identity is released, subscriptions granted to
    /// another identity end, the user counts as online and sees its own
    /// record, and the token-expiry clock starts.
    pub(crate) async fn sign_in(&mut self, user: User) {
        if self.guest_id.is_some() {
            // A guest who signs in stops being that guest: its seats are released
            // (after the usual grace) and its subscriptions end.
            self.drop_all_subs(&MethodError::SubNotAllowed).await;
            self.release_guest().await;
        } else if self.user.as_ref().is_some_and(|u| u.id != user.id) {
            // Subscriptions were granted to the previous identity.
            self.drop_all_subs(&MethodError::SubNotAllowed).await;
        }
        self.set_online(Some((user.id.clone(), user.username.clone())));
        let user = Arc::new(user);
        self.show_own_record(&user);
        self.set_token_expiry(user.expires_ms);
        self.user = Some(user);
    }

    /// Ends the signed-in identity (after `logout` made it durable): its
    /// record is removed, its subscriptions end, it goes offline.
    pub(crate) async fn sign_out(&mut self) {
        self.hide_own_record();
        self.user = None;
        self.clear_token_expiry();
        self.drop_all_subs(&MethodError::SubNotAllowed).await;
        self.set_online(None);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    pub(crate) fn heartbeat(&self) -> bool {
        self.heartbeat
    }

    /// The signed-in caller, or `error-invalid-user`.
    pub(crate) fn require_user(&self) -> Result<Principal, MethodError> {
        let u = self.user.as_ref().ok_or(MethodError::InvalidUser)?;
        Ok(user_principal(u))
    }

    /// Handles one text frame; returns false when the connection must end.
    pub(crate) async fn handle_text(&mut self, text: &str) -> bool {
        let raw = text;
        let frame = match wire::parse_client_frame(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = %self.conn.id, error = %e, "bad frame");
                if let (FrameError::UnparsableMethod { id }, true) = (&e, self.connected) {
                    // The call is answered like any failed call, so the
                    // client's pending call ends instead of waiting forever.
                    let err = MethodError::matching("frame", "valid JSON (the call could not be parsed)");
                    return self
                        .conn
                        .send_pair(wire::result_err(id, &err.to_wire("")), wire::updated(id))
                        .await;
                }
                // Before `connect`, anything that is not a valid connect is
                // answered as Meteor does: "Must connect first".
                let reply = match (&e, self.connected) {
                    (FrameError::Parse | FrameError::UnparsableMethod { .. }, _) | (_, true) => e.to_frame(),
                    (
                        FrameError::BadRequest(v)
                        | FrameError::MalformedMethod(v)
                        | FrameError::MalformedSub(v),
                        false,
                    ) => wire::error_frame("Must connect first", v),
                };
                return self.conn.send(reply).await;
            }
        };
        match frame {
            ClientFrame::Connect { version, support: _ } => {
                if self.connected {
                    let v = serde_json::json!({"msg": "connect", "version": version});
                    return self.conn.send(wire::error_frame("Bad request", &v)).await;
                }
                match version.as_deref() {
                    Some(v) if SUPPORTED_VERSIONS.contains(&v) => {
                        self.connected = true;
                        self.heartbeat = v != "pre1";
                        self.conn.send(wire::connected(&crate::ids::secret(17))).await
                    }
                    _ => {
                        let _ = self.conn.send(wire::failed("1")).await;
                        self.conn.close(CloseReason::UnsupportedVersion);
                        false
                    }
                }
            }
            _ if !self.connected => {
                // Echo the frame as sent; it parsed once, so it parses again.
                let v = serde_json::from_str(raw).unwrap_or(serde_json::Value::Null);
                self.conn.send(wire::error_frame("Must connect first", &v)).await
            }
            ClientFrame::Ping { id } => self.conn.send(wire::pong(id)).await,
            ClientFrame::Pong => true,
            ClientFrame::Method { id, method, params } => {
                let mut reply = match self.run_method(&method, params).await {
                    Ok(v) => wire::result_ok(&id, v.as_ref()),
                    Err(e) => {
                        log_error(&e, &method, self.conn.id);
                        wire::result_err(&id, &e.to_wire(&method))
                    }
                };
                // A result the connection could never hold unsent is
                // refused rather than closing the connection for it.
                let updated = wire::updated(&id);
                let max = self.conn.max_frame_bytes().saturating_sub(updated.len());
                if reply.len() > max {
                    let e = MethodError::ReplyTooLarge(max);
                    log_error(&e, &method, self.conn.id);
                    reply = wire::result_err(&id, &e.to_wire(&method));
                }
                self.sync_kind();
                // Queued together so the writer sends both in one write.
                let sent = self.conn.send_pair(reply, updated).await;
                self.pending_calls -= 1;
                sent
            }
            ClientFrame::Sub { id, name, params } => {
                let frames =
                    match self.limiter.admit(&self.server.session_limits, MethodClass::Other, Instant::now())
                    {
                        Ok(()) => crate::sub::subscribe(self, &id, &name, params).await,
                        Err(wait) => {
                            self.server.metrics.rate_limited(MethodClass::Other.label());
                            let e = MethodError::TooManyRequests(limits::millis_ceil(wait));
                            tracing::debug!(conn = %self.conn.id, stream = %name, "sub rate limited");
                            vec![wire::nosub(&id, Some(&e.to_wire("")))]
                        }
                    };
                for f in frames {
                    if !self.conn.send(f).await {
                        return false;
                    }
                }
                true
            }
            ClientFrame::Unsub { id } => {
                self.unsubscribe(&id).await;
                self.conn.send(wire::nosub(&id, None)).await
            }
        }
    }

    /// Runs one method call through the session-level limits, the
    /// dispatcher and the metrics. The caller answers it and then lowers
    /// `pending_calls`.
    async fn run_method(&mut self, name: &str, params: Vec<Value>) -> MethodResult {
        // Parsed once: everything below asks the `Method`. An unknown name
        // still draws from the "other" bucket before it is refused.
        let parsed = Method::parse(name);
        let method = parsed.as_ref().ok().copied();
        match self.open_call(method) {
            Opened::Busy(e) => Err(e),
            Opened::Refused(e) => self.close_call(method, None, Err(e)).await,
            Opened::Admitted(a) => {
                let r = match parsed {
                    Ok(m) => m.apply(self, params).await,
                    Err(e) => Err(e),
                };
                self.close_call(method, Some(a), r).await
            }
        }
    }

    /// A call's start: the cap on unanswered calls, then the session-level
    /// limits ([`Session::admit`]). Raises `pending_calls` in every case.
    fn open_call(&mut self, method: Option<Method>) -> Opened {
        // Calls run one at a time, to completion: the reader takes the next
        // frame only after this call's reply is queued. So a connection has
        // at most one unanswered call, and this cap can only be reached if
        // calls ever run concurrently; it is the guard of that invariant,
        // not a queue bound (TCP backpressure bounds what a client can
        // pipeline).
        if self.pending_calls as usize >= self.server.session_limits.max_pending_calls {
            self.pending_calls += 1;
            self.server.metrics.rate_limited("pending_calls");
            return Opened::Busy(MethodError::TooManyRequests(1));
        }
        self.pending_calls += 1;
        let started = Instant::now();
        let mut created_by = None;
        match self.admit(method, started, &mut created_by) {
            Ok(()) => Opened::Admitted(Admitted { started, created_by }),
            Err(e) => Opened::Refused(e),
        }
    }

    /// A call's end, whatever door it came through: its metrics, the room
    /// creation it was charged given back if it failed, the join-code
    /// brakes told of a wrong code. `admitted` is `None` for a call the
    /// limits refused (it ran nothing, so it is not timed).
    async fn close_call<T>(
        &mut self,
        method: Option<Method>,
        admitted: Option<Admitted>,
        result: Result<T, MethodError>,
    ) -> Result<T, MethodError> {
        if let Some(a) = &admitted {
            let secs = a.started.elapsed().as_secs_f64();
            self.server.metrics.method_call(method, result.is_ok(), secs);
            if let (Some(uid), Err(_)) = (&a.created_by, &result) {
                self.server.room_creations.refund(uid);
            }
        }
        let Some(method) = method else { return result };
        let metrics = &self.server.metrics;
        match (method, &result) {
            (Method::SendMessage, Ok(_)) => metrics.message_sent(),
            (Method::LeaveRoom, Ok(_)) => metrics.left_room(),
            (m, Ok(_)) if m.is_join() => metrics.join_succeeded(),
            (m, Err(e)) if m.is_join() => {
                metrics.join_rejected(e.to_wire("").error.as_string());
                let wrong_code = matches!(e, MethodError::Room(RoomError::CodeInvalid))
                    || (m == Method::JoinByCode && matches!(e, MethodError::RoomNotFound));
                if wrong_code {
                    let now = Instant::now();
                    self.limiter.code_failed(&self.server.session_limits, now);
                    let user = self.user.as_ref().map(|u| &u.id);
                    let hold =
                        self.server.code_brakes.failed(&self.server.session_limits, user, self.peer, now);
                    // An address over its budget gets its wrong answers
                    // late; right codes are answered at once, whoever else
                    // guessed from there.
                    if !hold.is_zero() {
                        tokio::time::sleep(hold).await;
                    }
                }
            }
            _ => {}
        }
        result
    }

    /// The session-boundary limits, checked before dispatch: the method
    /// class's token bucket, the join-code brake, the per-user room
    /// creation rate (`method` is `None` for a name roomd does not know).
    /// Sets `created_by` when a creation was counted, so a failed call can
    /// give it back.
    fn admit(
        &mut self,
        method: Option<Method>,
        now: Instant,
        created_by: &mut Option<UserId>,
    ) -> Result<(), MethodError> {
        let metrics = &self.server.metrics;
        let limits = &self.server.session_limits;
        let class = method.map_or(MethodClass::Other, Method::limit_class);
        let refuse = |label: &'static str, wait: std::time::Duration| {
            metrics.rate_limited(label);
            MethodError::TooManyRequests(limits::millis_ceil(wait))
        };
        self.limiter.admit(limits, class, now).map_err(|w| refuse(class.label(), w))?;
        if method.is_some_and(Method::is_join) {
            self.limiter.may_try_code(limits, now).map_err(|w| refuse("join_codes", w))?;
            let user = self.user.as_ref().map(|u| &u.id);
            self.server.code_brakes.may_try(limits, user, now).map_err(|w| refuse("join_codes", w))?;
        }
        if method.is_some_and(Method::creates_room)
            && limits.rate_limits
            && let Some(u) = &self.user
        {
            self.server
                .room_creations
                .try_take(&u.id, limits.room_creation_spec(), now)
                .map_err(|w| refuse("room_creation", w))?;
            *created_by = Some(u.id.clone());
        }
        Ok(())
    }

    /// Moves this connection between the user and guest gauges after a
    /// login or logout.
    fn sync_kind(&mut self) {
        if self.door.is_request() {
            return;
        }
        let now = if self.user.is_some() { ConnKind::User } else { ConnKind::Guest };
        if now != self.kind {
            self.server.metrics.connection_kind_changed(self.kind, now);
            self.kind = now;
        }
    }

    /// Removes sub `id`; the room stops delivering its topic only when no
    /// other sub of this connection still wants it.
    pub(crate) async fn unsubscribe(&mut self, id: &str) {
        let Some(sub) = self.subs.remove(id) else { return };
        let last = !self.subs.values().any(|s| s.same_target(&sub));
        let conn = self.conn.id;
        match sub {
            // The room always hears of it (it keeps the sub ids it may end
            // itself); it stops the topic only with the last such sub.
            Sub::Room { room, topic } => {
                let sub_id = id.to_owned();
                let _ = room
                    .ask(|tx| RoomCommand::Unsubscribe { conn, topic, sub_id, last, respond_to: tx })
                    .await;
            }
            Sub::User { uid, event } if last => self.server.hub.unlisten_user(&uid, conn, event),
            Sub::Logged(event) if last => self.server.hub.unlisten_logged(conn, event),
            Sub::User { .. } | Sub::Logged(_) => {}
        }
    }

    /// Marks this connection online as `uid` (or offline with `None`),
    /// announcing `user-status` when a user's first connection opens or the
    /// last one closes (in cluster mode: on any node; the other nodes hear
    /// of this node's firsts and lasts).
    fn set_online(&mut self, uid: Option<(UserId, String)>) {
        if self.door.is_request() {
            return;
        }
        if self.online_as.as_ref() == uid.as_ref().map(|(u, _)| u) {
            return;
        }
        let hub = &self.server.hub;
        let log = &self.server.log;
        if let Some(old) = self.online_as.take() {
            let flip = hub.offline(&old);
            if flip.here {
                let name = self.server.users.by_id(&old).map(|u| u.username).unwrap_or_default();
                if flip.everywhere {
                    hub.announce_status(&old, &name, false);
                }
                log.presence(&old, &name, false);
            }
        }
        if let Some((uid, name)) = uid {
            let flip = hub.online(&uid);
            if flip.everywhere {
                hub.announce_status(&uid, &name, true);
            }
            if flip.here {
                log.presence(&uid, &name, true);
            }
            self.online_as = Some(uid);
        }
    }

    /// Sends this connection the record of `user`, who is signing in on it
    /// (`removed` first if it was signed in as someone else); the user's
    /// other connections get `changed` if the record's fields changed.
    /// Called before `self.user` is set.
    fn show_own_record(&mut self, user: &Arc<User>) {
        if self.door.is_request() {
            return;
        }
        let records = &self.server.hub.records;
        if let Some(old) = self.user.as_ref().filter(|old| old.id != user.id) {
            records.hide(&old.id, &self.conn);
        }
        records.show(&self.conn, user);
    }

    /// On `logout`: `removed` for the signed-in user's record.
    fn hide_own_record(&mut self) {
        if self.door.is_request() {
            return;
        }
        if let Some(u) = &self.user {
            self.server.hub.records.hide(&u.id, &self.conn);
        }
    }

    /// Drops every room subscription, answering each with `nosub` carrying
    /// `error` (used when the identity they were granted to goes away).
    async fn drop_all_subs(&mut self, error: &MethodError) {
        let ids: Vec<String> = self.subs.keys().map(str::to_owned).collect();
        for id in ids {
            self.unsubscribe(&id).await;
            let _ = self.conn.send(wire::nosub(&id, Some(&error.to_wire("")))).await;
        }
    }

    /// Ends this connection's guest identity: each room it joined starts the
    /// guest's grace period, as if the connection had closed.
    async fn release_guest(&mut self) {
        let conn = self.conn.id;
        let guest = self.guest_id.take();
        let mut told: Vec<RoomId> = Vec::new();
        for room in std::mem::take(&mut self.guest_rooms) {
            if !told.contains(&room.id) {
                told.push(room.id.clone());
                room.tell(RoomCommand::ConnClosed { conn, guest: guest.clone() }).await;
            }
        }
    }

    /// Cleanup when the connection ends: rooms forget this connection and
    /// start the grace period of its guest memberships.
    pub(crate) async fn finish(&mut self) {
        let conn = self.conn.id;
        let mut told: Vec<RoomId> = Vec::new();
        for room in std::mem::take(&mut self.guest_rooms) {
            if told.contains(&room.id) {
                continue;
            }
            told.push(room.id.clone());
            room.tell(RoomCommand::ConnClosed { conn, guest: self.guest_id.clone() }).await;
        }
        let mut uids = Vec::new();
        for (_, sub) in self.subs.drain() {
            match sub {
                Sub::Room { room, .. } if !told.contains(&room.id) => {
                    told.push(room.id.clone());
                    room.tell(RoomCommand::ConnClosed { conn, guest: None }).await;
                }
                Sub::User { uid, .. } if !uids.contains(&uid) => uids.push(uid),
                _ => {}
            }
        }
        self.server.hub.drop_conn(conn, &uids);
        if let Some(u) = &self.user {
            self.server.hub.records.forget(&u.id, conn);
        }
        self.set_online(None);
    }
}

pub(crate) fn user_principal(u: &User) -> Principal {
    Principal {
        id: u.id.clone(),
        username: u.username.clone(),
        name: u.name.clone(),
        admin: u.has_role(GlobalRole::Admin),
        bot: u.has_role(GlobalRole::Bot),
        guest: false,
    }
}

/// How a call's start went ([`Session::open_call`]).
enum Opened {
    /// Over the cap on unanswered calls: refused before anything else.
    Busy(MethodError),
    /// Refused by a limit (rate, join-code brake, room creations).
    Refused(MethodError),
    Admitted(Admitted),
}

/// A call the limits let through.
struct Admitted {
    started: Instant,
    /// The user charged a room creation for it, given back if it fails.
    created_by: Option<UserId>,
}

/// The one place method errors are logged: client mistakes at `debug`,
/// server faults at `error`.
fn log_error(e: &MethodError, method: &str, conn: crate::ids::ConnId) {
    if e.is_server_fault() {
        tracing::error!(%conn, method, error = %e, "method failed");
    } else {
        tracing::debug!(%conn, method, error = %e, "method refused");
    }
}

/// Below this many elements, [`push_snug`] grows a vector one slot at a
/// time. The embedded web app holds two subs per room and a guest joins one
/// room by code, while `Vec`'s first push reserves 4 slots: 288 B for one
/// sub, 160 B for one room, per idle connection (BENCHMARKS.md, issue 21).
const SNUG_UP_TO: usize = 4;

/// Pushes `item`, growing a full vector by exactly one slot while it is
/// short: a connection's small vectors then hold what it uses, not 4 slots.
/// The reallocations this costs are a few, on subscribe or join, never on
/// the per-message path; past [`SNUG_UP_TO`] growth is amortized again.
fn push_snug<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() && v.len() < SNUG_UP_TO {
        v.reserve_exact(1);
    }
    v.push(item);
}

/// A connection's open subscriptions by DDP sub id. A short vector, not a
/// hash map: connections hold a handful of subs (bounded by the
/// subscription limit), and an empty vector costs nothing per idle
/// connection. The id is a `Box<str>`, not a `String`: an entry is then 64
/// bytes, an allocator size class, where 72 took the 80-byte one (16 B per
/// open subscription, BENCHMARKS.md issue 21).
#[derive(Debug, Default)]
pub(crate) struct SubMap(Vec<(Box<str>, Sub)>);

impl SubMap {
    pub(crate) fn insert(&mut self, id: String, sub: Sub) {
        match self.0.iter_mut().find(|(k, _)| **k == *id) {
            Some(slot) => slot.1 = sub,
            None => push_snug(&mut self.0, (id.into_boxed_str(), sub)),
        }
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Sub> {
        let i = self.0.iter().position(|(k, _)| **k == *id)?;
        Some(self.0.swap_remove(i).1)
    }

    pub(crate) fn contains_key(&self, id: &str) -> bool {
        self.0.iter().any(|(k, _)| **k == *id)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Sub> {
        self.0.iter().map(|(_, s)| s)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Box<str>, Sub)> + '_ {
        self.0.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::push_snug;

    /// An open subscription's entry fits the allocator's 64-byte class
    /// (with a `String` id it was 72 bytes, so 80 in mimalloc and glibc).
    #[test]
    fn a_subscription_entry_is_64_bytes() {
        fn entry<T>(_: &[T]) -> usize {
            std::mem::size_of::<T>()
        }
        let mut subs = super::SubMap::default();
        assert_eq!(entry(&subs.0), 64);
        assert!(subs.remove("1").is_none());
        let sub = super::Sub::Logged(crate::hub::LoggedEvent::UserStatus);
        subs.insert("1".to_owned(), sub.clone());
        subs.insert("2".to_owned(), sub.clone());
        subs.insert("1".to_owned(), sub);
        assert_eq!(subs.len(), 2, "the same id replaces its entry");
        assert!(subs.contains_key("2") && subs.remove("1").is_some() && !subs.contains_key("1"));
        assert_eq!(subs.keys().collect::<Vec<_>>(), ["2"]);
    }

    /// Every connection's task holds its session for its whole life, idle
    /// or not; its rate-limit buckets were 168 of its 368 bytes (debug).
    /// Now they are four token counts and one instant, the rates read from
    /// the server's limits (`limits::SessionLimiter`).
    #[test]
    fn a_session_stays_small() {
        let session = std::mem::size_of::<super::Session>();
        eprintln!("session {session} B");
        assert!(session <= 240, "the session is {session} bytes");
    }

    /// A short vector holds what it uses (what an idle connection keeps),
    /// and a long one still grows amortized.
    #[test]
    fn push_snug_grows_one_slot_while_short() {
        let mut v: Vec<u64> = Vec::new();
        for n in 1..=super::SNUG_UP_TO {
            push_snug(&mut v, n as u64);
            assert_eq!(v.capacity(), n, "after {n} pushes");
        }
        for n in super::SNUG_UP_TO + 1..=64 {
            push_snug(&mut v, n as u64);
        }
        assert_eq!(v, (1..=64).collect::<Vec<u64>>());
        assert!(v.capacity() < 128, "amortized growth past the short range: {}", v.capacity());
    }
}
