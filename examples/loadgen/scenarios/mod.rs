//! Scenarios.
use super::common::*;
use super::*;
use tokio::task::JoinSet;

mod chat;
mod churn;
mod failover;
mod fanout;
mod idle;
mod join;
mod probe;
mod race;

pub(crate) use chat::*;
pub(crate) use churn::*;
pub(crate) use failover::*;
pub(crate) use fanout::*;
pub(crate) use idle::*;
pub(crate) use join::*;
pub(crate) use probe::*;
pub(crate) use race::*;
