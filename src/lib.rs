//! roomd: a realtime room server speaking Meteor DDP, wire-compatible with
//! the rooms part of the Rocket.Chat Realtime API, plus a meeting-room
//! `join-room` by shareable code for users and guests.
//!
//! # Layout
//! - [`server`]: accept loop, hyper's HTTP/1 connection, the WebSocket hand-over,
//!   shutdown; [`ServerState`](server::ServerState), built whole from its parts.
//! - `routes`: the axum router: `/websocket`, probes, `/api`, 404s.
//! - `http`: the `Host`/`Origin` policy and the upgrade checks (pure).
//! - `webapp`: the meeting-room web app's embedded files and their headers.
//! - `metrics`: Prometheus metrics (`GET /metrics`). `limits`: rate limits.
//! - `conn`: one connection's reader/writer tasks, close reasons. `outbox`: its bounded outbound queue.
//! - `session`: per-connection DDP state (connected, identity, subs), changed
//!   only through its methods; frame handling.
//! - [`wire`]: the only module that parses inbound frames or shapes outbound ones;
//!   `wire::room`, the room's documents, built from the rules' typed views.
//! - [`method`]: [`Method`](method::Method), the method name parsed once (name,
//!   limit class, permission, `apply`); one file per method, named after what it does.
//! - [`socketio`]: the Socket.IO door (`/socket.io/`): events as thin
//!   adapters onto the same methods, meeting events from the rooms.
//! - [`rest`]: the REST doors under `/api`: Rocket.Chat's room endpoints and
//!   Slack's `channels.join`, thin adapters onto the same methods through a
//!   per-request session.
//! - `sub`: stream subscriptions.
//! - [`room`]: pure rules (`state`, `throttle`) and the typed views its reads
//!   return (`view`), the handle and commands
//!   (`handle`), the actor that owns a room: its loop and commit pipeline
//!   (`actor`) and what each command does (`commands`), effects to frames
//!   (`publish`), ended rooms answered from the same checks (`ended`), data (`model`);
//!   `room::log`, the room-log seam: the room operations (`RoomOp`), the one
//!   `apply` they go through (`replicated`), and the `RoomLog` trait with its
//!   local implementation (sequence now, apply now, durable through
//!   [`durability`]). The room core, `lobby` and `session` name no cluster.
//! - `lobby`: creating rooms (name, code, actor, registration) and restoring them.
//! - `hub`: user-scoped streams (notify-user, __my_messages__, notify-logged).
//! - `account`: the signed-in user's own `users` record.
//! - [`durability`]: the seam to durable state (append a room's batch, record
//!   global facts, restore); a fake for tests.
//! - [`store`]: its first implementation, SQLite: schema, restore, group-commit
//!   writer; `store::rows`, the versioned stored rows.
//! - [`cluster`]: cluster mode (`--cluster`): every room a replicated state
//!   machine whose log is a NATS JetStream subject; appends and create-only
//!   claims, the stored entry types, the applier that hands every entry to
//!   its room, node liveness, presence and typing across nodes
//!   (docs/cluster.md). `cluster::room_log` is its implementation of the
//!   room-log seam (append, apply when delivered; claims in the stream).
//! - `registry`: rooms by id, name, code. `users`: users seen, their rooms.
//! - [`auth`]: JWT verification and minting. [`permissions`]: who may do what.
//! - `error`: method errors and the one mapping of every error to a wire code.
//!
//! Modules are private unless the binary or the tests need them
//! (`unreachable_pub` is on: whatever the crate does not export is
//! `pub(crate)`); [`ServerState`](server::ServerState) keeps its parts
//! `pub(crate)` and offers the few reads tests need as methods.
//!
//! # Invariants
//! - Only a room's actor mutates that room; every join is check-and-insert in
//!   one actor step.
//! - Rooms reach connections only by `try_send` on a bounded queue; a full
//!   queue disconnects the client as a slow consumer.
//! - Only `wire` knows frame and document JSON; only `error` knows wire error
//!   codes; only `Method::parse` reads a method name.
//! - A connection handles one frame at a time, to completion; on close or
//!   shutdown it finishes the frame in hand and starts no other.
//! - Nothing is acknowledged before it is durable: a room actor holds a
//!   command's reply and events until its `Durability` has committed its
//!   changes, and releases them in command order.
//! - Three kinds of types: domain types have no serde shapes; stored rows
//!   (`store::rows`) and wire shapes (`wire`) are built from them.

mod account;
pub mod auth;
pub mod cluster;
pub mod config;
mod conn;
pub mod durability;
mod error;
mod http;
mod hub;
pub mod ids;
mod limits;
mod lobby;
pub mod method;
mod metrics;
mod outbox;
pub mod permissions;
mod registry;
pub mod rest;
pub mod room;
mod routes;
pub mod server;
mod session;
pub mod socketio;
pub mod store;
mod sub;
pub mod time;
mod users;
mod webapp;
pub mod wire;
