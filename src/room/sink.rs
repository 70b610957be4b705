//! How a room reaches the DDP connections subscribed to its streams: a
//! [`RoomSink`], the little the room needs of a connection. The room
//! knows nothing of the socket, its queue or why it closes (as with
//! [`super::RoomListener`] for the doors that hear events).

use crate::ids::ConnId;
use std::fmt::Debug;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A subscribed connection, as the room holds it (`Arc<dyn RoomSink>`:
/// the connection's own shared state, coerced, not a new allocation).
pub trait RoomSink: Send + Sync + Debug {
    /// Which connection this is: the room keeps one entry per connection
    /// and forgets it by this id when the connection goes.
    fn id(&self) -> ConnId;

    /// Queues a ready frame without waiting. Returns false if the
    /// connection is gone or could not take it; in the latter case the
    /// sink itself has closed it as a slow consumer (its queue is bounded),
    /// so the room only forgets it and never needs a close reason.
    fn try_send(&self, frame: Utf8Bytes) -> bool;
}
