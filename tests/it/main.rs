//! One integration-test binary (compiles once). Every test talks to a real
//! server over real sockets, except `model`, which drives the pure room rules,
//! and `store_rows`, which restores an old-schema data directory.
//!
//! - `proc`: the one way to start the real `roomd` binary (`RoomdCmd`),
//!   child processes that never outlive the test binary, probes.
//! - `ddp`: DDP framing rules 1–8 (connect, order, heartbeats, results,
//!   subscriptions, stream frames, EJSON dates, bad input).
//! - `identity`: resume-token login, refused tokens, logout, guests.
//! - `rooms`: create/join/leave/settings/end/get methods and their errors.
//! - `join_by_code`: `join-room` for users and guests, reconnect grace.
//! - `events`: membership events, who may subscribe, order, no duplicates.
//! - `races`: concurrent joins vs capacity, joins vs lock, vanishing guests.
//! - `model`: model-based property test of `RoomState`.
//! - `memory`: unsent-byte budgets, write stalls, the open-files limit.
//! - `socketio`: the Socket.IO door (raw Engine.IO/Socket.IO client).
//! - `rc_api`: DMs, lists, roles, message rules, typing, user-scoped streams.
//! - `commits`: reply/event order under slow commits, failed commits (the
//!   durability fake).
//! - `store_rows`: today's stored rows restore whole and re-encode byte for byte.
//! - `cluster`: cluster mode on NATS JetStream with real `nats-server` and
//!   roomd processes (skipped, loudly, without a `nats-server`): the core on
//!   one server and two nodes (`cluster::basics`), the three-server failure
//!   scenarios, readiness, and the stream backup and restore
//!   (`cluster::backup`).
//! - `webapp`: `getRoomParticipants`, the embedded web app, the dev sign-in link.
//! - `history`: paging history by `ts` reaches every message once.
//! - `conformance`: one join scenario through every door, decisions compared.
//! - `rest`: the REST doors (Rocket.Chat `/api/v1/…`, Slack `channels.join`).
//! - `keepalive`: HTTP/1.1 keep-alive: idle timeout, request cap, slots, shutdown.
//! - `backup`: `roomd backup`/`restore` under writes, wrong paths, full disk,
//!   damaged and newer files; every earlier schema's fixture restores.

mod proc;
mod support;

mod access;
mod backup;
mod cluster;
mod commits;
mod conformance;
mod ddp;
mod docs;
mod durability;
mod events;
mod history;
mod hostile;
mod http;
mod identity;
mod join_by_code;
mod keepalive;
mod lifecycle;
mod limits;
mod memory;
mod model;
mod races;
mod rc_api;
mod replay;
mod rest;
mod rooms;
mod shutdown;
mod socketio;
mod store_rows;
mod webapp;
