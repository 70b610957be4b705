//! A connection's outbound queue: bounded, many producers (rooms, the hub,
//! the connection's own replies), one consumer (its writer task).
//!
//! Why not `tokio::sync::mpsc`: its channel allocates a 32-slot block up
//! front (about 1.5 KiB with its bookkeeping) for every connection, idle or
//! not. This queue is a `VecDeque` that starts empty, grows with bursts and
//! shrinks back, behind a mutex held only for a push or a drain; at tens of
//! thousands of idle connections that difference is most of the memory
//! budget. Producers never wait on it except a connection's own replies.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Capacity kept after a drain; a larger buffer left by a burst is released.
const KEEP: usize = 8;

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when frames arrive or the queue closes.
    ready: Notify,
    /// Wakes a reply waiting for space.
    space: Notify,
    cap: usize,
}

struct State {
    queue: VecDeque<Utf8Bytes>,
    closed: bool,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Outbox {
            state: Mutex::new(State { queue: VecDeque::new(), closed: false }),
            ready: Notify::new(),
            space: Notify::new(),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated
        // (push/drain are single calls), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn try_push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(PushError::Closed);
            }
            if st.queue.len() >= self.cap {
                return Err(PushError::Full);
            }
            st.queue.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Pushes, waiting for space while the queue is full.
    pub async fn push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        self.push_frames(frame, None).await
    }

    /// Pushes two frames with one wake-up of the writer.
    pub async fn push_pair(&self, first: Utf8Bytes, second: Utf8Bytes) -> Result<(), PushError> {
        self.push_frames(first, Some(second)).await
    }

    async fn push_frames(&self, frame: Utf8Bytes, second: Option<Utf8Bytes>) -> Result<(), PushError> {
        loop {
            // Registered before the check, so a drain in between is not missed.
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(PushError::Closed);
                }
                if st.queue.len() < self.cap {
                    st.queue.push_back(frame);
                    // A reply's companion may exceed the cap by one: it is
                    // part of the same answer.
                    st.queue.extend(second);
                    drop(st);
                    self.ready.notify_one();
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Moves up to `max` frames into `out`, waiting while the queue is empty.
    /// Returns 0 once the queue is closed and drained.
    pub async fn pop_many(&self, out: &mut Vec<Utf8Bytes>, max: usize) -> usize {
        loop {
            let ready = self.ready.notified();
            {
                let mut st = self.lock();
                if !st.queue.is_empty() {
                    let n = st.queue.len().min(max);
                    out.extend(st.queue.drain(..n));
                    if st.queue.is_empty() && st.queue.capacity() > KEEP {
                        st.queue.shrink_to(KEEP);
                    }
                    drop(st);
                    self.space.notify_waiters();
                    return n;
                }
                if st.closed {
                    return 0;
                }
            }
            ready.await;
        }
    }

    /// Takes whatever is queued now, without waiting.
    pub fn drain_now(&self) -> Vec<Utf8Bytes> {
        self.lock().queue.drain(..).collect()
    }

    /// No more pushes; the writer drains what is there and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.space.notify_waiters();
    }
}
