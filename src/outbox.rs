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

/// Capacity kept after a drain: none, so an idle connection holds no queue
/// buffer at all (the next frame allocates a small one again).
const KEEP: usize = 0;

/// Bytes a connection may have queued, whatever the frame count: a client
/// that asks for large replies (history pages) and never reads them must
/// not hold the server's memory.
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

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
    /// Total length of the frames in `queue`.
    bytes: usize,
    closed: bool,
}

impl State {
    fn has_room(&self, cap: usize, adding: usize) -> bool {
        // An empty queue always takes one frame, however large (it fits the
        // frame-size limit of whoever built it); otherwise both limits hold.
        self.queue.is_empty() || (self.queue.len() < cap && self.bytes + adding <= MAX_QUEUED_BYTES)
    }
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Outbox {
            state: Mutex::new(State { queue: VecDeque::new(), bytes: 0, closed: false }),
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
            if !st.has_room(self.cap, frame.len()) {
                return Err(PushError::Full);
            }
            st.bytes += frame.len();
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
                let adding = frame.len() + second.as_ref().map_or(0, |f| f.len());
                if st.has_room(self.cap, adding) {
                    st.bytes += adding;
                    st.queue.push_back(frame);
                    // A reply's companion may exceed the cap by one: it is
                    // part of the same answer.
                    st.queue.extend(second);
                    drop(st);
                    self.ready.notify_one();
                    return Ok(());
                }
                if st.bytes + adding > MAX_QUEUED_BYTES {
                    // Waiting cannot help a client that does not read.
                    return Err(PushError::Full);
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
                    let taken: usize = st.queue.iter().take(n).map(|f| f.len()).sum();
                    st.bytes -= taken;
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
        let mut st = self.lock();
        st.bytes = 0;
        st.queue.drain(..).collect()
    }

    /// No more pushes; the writer drains what is there and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_frames_and_bytes_and_drains_in_order() {
        let q = Outbox::new(3);
        for i in 0..3 {
            q.try_push(Utf8Bytes::from(format!("f{i}"))).unwrap();
        }
        assert_eq!(q.try_push(Utf8Bytes::from_static("x")), Err(PushError::Full));
        let mut out = Vec::new();
        assert_eq!(q.pop_many(&mut out, 2).await, 2);
        assert_eq!(out, vec![Utf8Bytes::from_static("f0"), Utf8Bytes::from_static("f1")]);
        // Space again, and a waiting push completes once drained.
        q.try_push(Utf8Bytes::from_static("f3")).unwrap();

        let big = Utf8Bytes::from("x".repeat(MAX_QUEUED_BYTES / 2 + 1));
        let q = Outbox::new(100);
        q.try_push(big.clone()).unwrap();
        assert_eq!(q.try_push(big.clone()), Err(PushError::Full), "byte budget");
        assert_eq!(q.push(big.clone()).await, Err(PushError::Full), "a reply over budget fails, never waits");
        q.close();
        let mut out = Vec::new();
        assert_eq!(q.pop_many(&mut out, 10).await, 1);
        assert_eq!(q.pop_many(&mut out, 10).await, 0, "closed and drained");
        assert_eq!(q.try_push(Utf8Bytes::from_static("late")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn a_waiting_reply_is_queued_when_space_frees() {
        let q = std::sync::Arc::new(Outbox::new(1));
        q.try_push(Utf8Bytes::from_static("a")).unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.push(Utf8Bytes::from_static("b")).await });
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        q.pop_many(&mut out, 1).await;
        assert_eq!(waiter.await.unwrap(), Ok(()));
        q.pop_many(&mut out, 1).await;
        assert_eq!(out, vec![Utf8Bytes::from_static("a"), Utf8Bytes::from_static("b")]);
    }
}
