//! A connection's outbound queue: bounded, many producers (rooms, the hub,
//! the connection's own replies), one consumer (the connection's task, which
//! polls it next to the socket, see `conn::serve`).
//!
//! Why not `tokio::sync::mpsc`: its channel allocates a 32-slot block up
//! front (about 1.5 KiB with its bookkeeping) for every connection, idle or
//! not. This queue is a `VecDeque` that starts empty, grows with bursts and
//! shrinks back, behind a mutex held only for a push or a drain; at tens of
//! thousands of idle connections that difference is most of the memory
//! budget. Producers never wait on it except a connection's own replies.

use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Capacity kept after a drain: none, so an idle connection holds no queue
/// buffer at all (the next frame allocates a small one again).
const KEEP: usize = 0;

/// The most unsent control-frame bytes (pongs) a connection holds: two
/// pongs with the largest payload a ping may carry.
const MAX_CONTROL: usize = 2 * (125 + 2);

/// The byte budgets for unsent frames: one per connection, one for the
/// whole server. A frame counts from the moment it is queued until the
/// writer has handed it to the kernel (queued and in-flight alike), so a
/// client that asks for large replies and never reads them holds at most
/// its per-connection budget, and all such clients together at most the
/// server budget.
///
/// The server total is one atomic counter: a push adds, a write subtracts;
/// no lock is shared between connections.
#[derive(Debug)]
pub(crate) struct Budget {
    per_conn: usize,
    total: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(per_conn: usize, total: usize) -> Self {
        Budget { per_conn: per_conn.max(1), total: total.max(1), used: AtomicUsize::new(0) }
    }

    /// Largest frame (or frame pair) one connection can ever queue.
    pub(crate) fn per_conn(&self) -> usize {
        self.per_conn
    }

    /// Unsent bytes across the server right now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes from the server budget, or nothing if they do not fit.
    fn reserve(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before + n > self.total {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// The unsent bytes of a connection whose writer is not roomd's: a
/// Socket.IO socket, whose packets the engine queues and writes itself.
/// Under the same two budgets as an [`Outbox`]: a packet counts from being
/// handed to the engine until the kernel has accepted as many bytes on its
/// socket (reported by the socket's [`Wire`](crate::conn::Wire)), or, for
/// long-polling, until a poll has taken it.
#[derive(Debug)]
pub(crate) struct Backlog {
    budget: Arc<Budget>,
    unsent: AtomicUsize,
    /// Bytes released since the start: the write-stall watch looks for
    /// movement here.
    released: AtomicU64,
}

impl Backlog {
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Backlog { budget, unsent: AtomicUsize::new(0), released: AtomicU64::new(0) }
    }

    /// Counts `n` more unsent bytes, or says which budget they break (and
    /// counts nothing).
    pub(crate) fn add(&self, n: usize) -> Result<(), PushError> {
        if n > self.budget.per_conn {
            return Err(PushError::TooLarge);
        }
        self.unsent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.budget.per_conn).then_some(u + n)
            })
            .map_err(|_| PushError::Full)?;
        if !self.budget.reserve(n) {
            self.unsent.fetch_sub(n, Ordering::AcqRel);
            return Err(PushError::ServerFull);
        }
        Ok(())
    }

    /// `n` bytes left (handed to the kernel, or taken by a poll); more than
    /// is counted releases what is counted (framing bytes, pings).
    pub(crate) fn written(&self, n: usize) {
        let before = self
            .unsent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(n)))
            .unwrap_or_default();
        let released = before.min(n);
        self.budget.release(released);
        if released > 0 {
            self.released.fetch_add(released as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    /// Bytes released so far.
    pub(crate) fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.budget.release(std::mem::take(self.unsent.get_mut()));
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// This connection's queue (frames or bytes) is full.
    Full,
    /// The server-wide byte budget is spent.
    ServerFull,
    /// The frame alone is larger than a connection's byte budget.
    TooLarge,
    Closed,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the connection's task when frames arrive or the queue closes.
    /// One consumer, polled (not awaited) beside the socket: a waker slot,
    /// not a `Notify`.
    ready: AtomicWaker,
    /// Set when a source other than the queue (the socket's read side, the
    /// heartbeat timer, a close) woke the connection's task: see
    /// [`Outbox::side_wake`].
    side_woken: AtomicBool,
    /// Wakes a reply waiting for space, and whoever waits for the
    /// connection to close ([`Outbox::changed`]).
    space: Notify,
    /// Frames a connection may hold queued (`--outbound-queue`); a `u32`,
    /// packed beside `side_woken` (every connection holds an outbox).
    cap: u32,
    budget: Arc<Budget>,
}

struct State {
    queue: VecDeque<Utf8Bytes>,
    /// WebSocket control frames (pongs) the connection's frame reader
    /// wrote, already framed: the writer puts them between two frames.
    /// Boxed on the first: most connections never get a ping, and every
    /// connection holds its outbox (a word, not a `Vec`'s three, keeps the
    /// connection's one allocation in a smaller size class).
    #[allow(clippy::box_collection, reason = "a word inline instead of three; pongs are rare")]
    control: Option<Box<Vec<u8>>>,
    /// Unsent bytes: the frames in `queue` plus those the writer has taken
    /// but not yet written (released by [`Outbox::written`]).
    bytes: usize,
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(cap: usize, budget: Arc<Budget>) -> Self {
        Outbox {
            state: Mutex::new(State { queue: VecDeque::new(), control: None, bytes: 0, closed: false }),
            ready: AtomicWaker::new(),
            side_woken: AtomicBool::new(true),
            space: Notify::new(),
            cap: u32::try_from(cap.max(1)).unwrap_or(u32::MAX),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated
        // (push/drain are single calls), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks both budgets for `adding` more bytes and takes them.
    /// `Ok(false)`: not now, but it could fit once the writer catches up.
    fn admit(&self, st: &mut State, adding: usize) -> Result<bool, PushError> {
        if st.closed {
            return Err(PushError::Closed);
        }
        if adding > self.budget.per_conn {
            return Err(PushError::TooLarge);
        }
        if st.queue.len() >= self.cap as usize || st.bytes + adding > self.budget.per_conn {
            return Ok(false);
        }
        if !self.budget.reserve(adding) {
            return Err(PushError::ServerFull);
        }
        st.bytes += adding;
        Ok(true)
    }

    /// Queues an event without waiting; a full queue is the caller's sign of
    /// a slow consumer.
    pub(crate) fn try_push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        {
            let mut st = self.lock();
            if !self.admit(&mut st, frame.len())? {
                return Err(PushError::Full);
            }
            st.queue.push_back(frame);
        }
        self.ready.wake();
        Ok(())
    }

    /// Pushes, waiting for space while the queue is full.
    pub(crate) async fn push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        self.push_frames(frame, None).await
    }

    /// Pushes two frames with one wake-up of the writer.
    pub(crate) async fn push_pair(&self, first: Utf8Bytes, second: Utf8Bytes) -> Result<(), PushError> {
        self.push_frames(first, Some(second)).await
    }

    /// A reply waits for space: the writer frees it as the client reads, and
    /// a client that does not read is cut by the write-stall timeout, which
    /// ends the wait.
    async fn push_frames(&self, frame: Utf8Bytes, second: Option<Utf8Bytes>) -> Result<(), PushError> {
        let adding = frame.len() + second.as_ref().map_or(0, |f| f.len());
        loop {
            // Registered before the check, so a drain in between is not missed.
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.lock();
                if self.admit(&mut st, adding)? {
                    // A reply's companion may exceed the frame cap by one:
                    // it is part of the same answer.
                    st.queue.push_back(frame);
                    st.queue.extend(second);
                    drop(st);
                    self.ready.wake();
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Moves up to `max` frames into `out` and any control bytes into
    /// `control`; pending while there are neither. `Ready(0)` once the queue
    /// is closed and drained. The frames' bytes stay counted until
    /// [`Outbox::written`].
    pub(crate) fn poll_pop_many(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Utf8Bytes>,
        control: &mut Vec<u8>,
        max: usize,
    ) -> Poll<usize> {
        // Registered before the check, so a push in between is not missed.
        self.ready.register(cx.waker());
        let mut st = self.lock();
        if let Some(mut c) = st.control.take() {
            control.append(&mut c);
        }
        if !st.queue.is_empty() {
            let n = st.queue.len().min(max);
            out.extend(st.queue.drain(..n));
            if st.queue.is_empty() && st.queue.capacity() > KEEP {
                st.queue.shrink_to(KEEP);
            }
            drop(st);
            // The frame count went down even if the bytes did not.
            self.space.notify_waiters();
            return Poll::Ready(n);
        }
        if !control.is_empty() {
            return Poll::Ready(1);
        }
        if st.closed {
            return Poll::Ready(0);
        }
        Poll::Pending
    }

    /// Makes `waker` (the connection's task) the one woken by pushes and by
    /// the side waker. Registered on every poll, before the side flag is
    /// read, so a wake in between is not missed.
    pub(crate) fn register(&self, waker: &Waker) {
        self.ready.register(waker);
    }

    /// What the waker the connection's task gives to the sources it rarely
    /// hears from (the socket's read side, the heartbeat timer, a close)
    /// does: it marks that one of them woke the task, then wakes it. A
    /// wake from a room (a push) leaves the mark alone, so the task then
    /// writes without polling those sources: one wake per delivered frame
    /// costs what the old writer task's did (BENCHMARKS.md, issue 21). The
    /// waker itself is the connection's shared state (`conn::ConnShared`),
    /// which holds this outbox inline: no memory per connection.
    pub(crate) fn side_wake(&self) {
        // Marked before the wake: the task reads the mark after it has
        // registered, so it either sees it or is woken again.
        self.side_woken.store(true, Ordering::Release);
        self.ready.wake();
    }

    /// Wakes every reply waiting for space and every [`Outbox::changed`]
    /// waiter: the connection is closing (`conn::ConnHandle::close`).
    pub(crate) fn wake_waiters(&self) {
        self.space.notify_waiters();
    }

    /// Completes at the next [`Outbox::wake_waiters`], drain or write (a
    /// caller enables it, then checks what it waits for): the connection's
    /// close signal shares the `Notify` replies wait on for space, so a
    /// connection pays for one.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.space.notified()
    }

    /// Makes the next [`Outbox::take_side_woken`] say yes: the task's
    /// first poll of a wait looks at every source.
    pub(crate) fn mark_side_woken(&self) {
        self.side_woken.store(true, Ordering::Release);
    }

    /// Whether a side source woke the task since the last call; clears it.
    pub(crate) fn take_side_woken(&self) -> bool {
        self.side_woken.swap(false, Ordering::AcqRel)
    }

    /// [`Outbox::poll_pop_many`] as a future.
    #[cfg(test)]
    pub(crate) async fn pop_many(
        &self,
        out: &mut Vec<Utf8Bytes>,
        control: &mut Vec<u8>,
        max: usize,
    ) -> usize {
        std::future::poll_fn(|cx| self.poll_pop_many(cx, out, control, max)).await
    }

    /// Queues a control frame the frame reader wrote (a pong, the answer to
    /// a client's close), already framed: tungstenite hands each frame over
    /// in one write (it buffers nothing, see `server::ws_config`). Bounded:
    /// a frame that would go past [`MAX_CONTROL`] unsent bytes replaces
    /// those before it, which RFC 6455 allows for pongs (answering the
    /// latest ping is enough) and which keeps a client that pings and never
    /// reads from growing this buffer; the close answer, tungstenite's last
    /// write, always stays.
    pub(crate) fn push_control(&self, bytes: &[u8]) {
        {
            let mut st = self.lock();
            if st.closed || bytes.len() > MAX_CONTROL {
                return;
            }
            let control = st.control.get_or_insert_default();
            if control.len() + bytes.len() > MAX_CONTROL {
                control.clear();
            }
            control.extend_from_slice(bytes);
        }
        self.ready.wake();
    }

    /// Takes the control bytes not yet written (the close path).
    pub(crate) fn take_control(&self) -> Vec<u8> {
        self.lock().control.take().map(|c| *c).unwrap_or_default()
    }

    /// The writer handed `bytes` of popped frames to the kernel.
    pub(crate) fn written(&self, bytes: usize) {
        {
            let mut st = self.lock();
            let n = bytes.min(st.bytes);
            st.bytes -= n;
            self.budget.release(n);
        }
        self.space.notify_waiters();
    }

    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Unsent bytes of this connection (queued and in flight).
    #[cfg(test)]
    pub(crate) fn unsent(&self) -> usize {
        self.lock().bytes
    }

    /// Takes whatever is queued now, without waiting (for the close path;
    /// the bytes stay counted until [`Outbox::finish`]).
    pub(crate) fn drain_now(&self) -> Vec<Utf8Bytes> {
        self.lock().queue.drain(..).collect()
    }

    /// No more pushes; the writer drains what is there and stops.
    #[cfg(test)]
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.wake();
        self.space.notify_waiters();
    }

    /// The connection is gone: drops what is queued and gives every unsent
    /// byte back to the server budget.
    pub(crate) fn finish(&self) {
        let dropped = {
            let mut st = self.lock();
            st.closed = true;
            self.budget.release(std::mem::take(&mut st.bytes));
            st.control = None;
            std::mem::take(&mut st.queue)
        };
        drop(dropped);
        self.space.notify_waiters();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        self.budget.release(std::mem::take(&mut st.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_conn: usize, total: usize) -> Arc<Budget> {
        Arc::new(Budget::new(per_conn, total))
    }

    #[tokio::test]
    async fn bounded_by_frames_and_bytes_and_drains_in_order() {
        let q = Outbox::new(3, budget(1 << 20, 1 << 30));
        for i in 0..3 {
            q.try_push(Utf8Bytes::from(format!("f{i}"))).unwrap();
        }
        assert_eq!(q.try_push(Utf8Bytes::from_static("x")), Err(PushError::Full));
        let mut out = Vec::new();
        assert_eq!(q.pop_many(&mut out, &mut Vec::new(), 2).await, 2);
        assert_eq!(out, vec![Utf8Bytes::from_static("f0"), Utf8Bytes::from_static("f1")]);
        q.try_push(Utf8Bytes::from_static("f3")).unwrap();
        q.close();
        assert_eq!(q.pop_many(&mut out, &mut Vec::new(), 10).await, 2);
        assert_eq!(q.pop_many(&mut out, &mut Vec::new(), 10).await, 0, "closed and drained");
        assert_eq!(q.try_push(Utf8Bytes::from_static("late")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn bytes_count_until_written_and_replies_too() {
        let b = budget(100, 1000);
        let q = Outbox::new(100, b.clone());
        q.try_push(Utf8Bytes::from("x".repeat(60))).unwrap();
        assert_eq!(q.try_push(Utf8Bytes::from("y".repeat(41))), Err(PushError::Full), "per-connection bytes");
        assert_eq!(q.push(Utf8Bytes::from("z".repeat(101))).await, Err(PushError::TooLarge));
        let mut out = Vec::new();
        q.pop_many(&mut out, &mut Vec::new(), 10).await;
        // Taken by the writer but not written: still counted.
        assert_eq!((q.unsent(), b.used()), (60, 60));
        assert_eq!(q.try_push(Utf8Bytes::from("y".repeat(41))), Err(PushError::Full));
        q.written(60);
        assert_eq!((q.unsent(), b.used()), (0, 0));
        q.try_push(Utf8Bytes::from("y".repeat(41))).unwrap();
        q.finish();
        assert_eq!(b.used(), 0, "a finished connection gives its bytes back");
    }

    #[tokio::test]
    async fn the_server_budget_is_shared() {
        let b = budget(100, 150);
        let (q1, q2) = (Outbox::new(10, b.clone()), Outbox::new(10, b.clone()));
        q1.try_push(Utf8Bytes::from("a".repeat(100))).unwrap();
        assert_eq!(q2.try_push(Utf8Bytes::from("b".repeat(51))), Err(PushError::ServerFull));
        assert_eq!(q2.push(Utf8Bytes::from("b".repeat(51))).await, Err(PushError::ServerFull));
        q2.try_push(Utf8Bytes::from("b".repeat(50))).unwrap();
        assert_eq!(b.used(), 150);
        drop(q1);
        assert_eq!(b.used(), 50, "dropping an outbox releases its bytes");
    }

    #[tokio::test]
    async fn a_waiting_reply_is_queued_when_space_frees() {
        let q = Arc::new(Outbox::new(1, budget(1 << 20, 1 << 30)));
        q.try_push(Utf8Bytes::from_static("a")).unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.push(Utf8Bytes::from_static("b")).await });
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        q.pop_many(&mut out, &mut Vec::new(), 1).await;
        assert_eq!(waiter.await.unwrap(), Ok(()));
        q.pop_many(&mut out, &mut Vec::new(), 1).await;
        assert_eq!(out, vec![Utf8Bytes::from_static("a"), Utf8Bytes::from_static("b")]);
    }

    #[tokio::test]
    async fn a_reply_waits_for_bytes_to_be_written() {
        let q = Arc::new(Outbox::new(10, budget(100, 1000)));
        q.try_push(Utf8Bytes::from("a".repeat(80))).unwrap();
        let mut out = Vec::new();
        q.pop_many(&mut out, &mut Vec::new(), 10).await;
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.push(Utf8Bytes::from("b".repeat(50))).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "80 unsent + 50 is over the budget");
        q.written(80);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[test]
    fn a_backlog_counts_until_written_under_both_budgets() {
        let b = budget(100, 150);
        let (one, two) = (Backlog::new(b.clone()), Backlog::new(b.clone()));
        one.add(60).unwrap();
        assert_eq!(one.add(41), Err(PushError::Full), "per-connection bytes");
        assert_eq!(one.add(101), Err(PushError::TooLarge));
        two.add(90).unwrap();
        assert_eq!(one.add(10), Err(PushError::ServerFull));
        assert_eq!((one.unsent(), b.used()), (60, 150), "a refused add counts nothing");
        one.written(70);
        assert_eq!(
            (one.unsent(), one.released(), b.used()),
            (0, 60, 90),
            "framing bytes release nothing more"
        );
        drop(two);
        assert_eq!(b.used(), 0, "a dropped backlog gives its bytes back");
    }

    #[tokio::test]
    async fn control_frames_wake_the_writer_and_stay_bounded() {
        let q = Outbox::new(4, budget(1000, 10_000));
        q.push_control(&[0x8a, 0x01, b'a']);
        let (mut out, mut control) = (Vec::new(), Vec::new());
        assert_eq!(q.pop_many(&mut out, &mut control, 10).await, 1, "control alone wakes the writer");
        assert!(out.is_empty());
        assert_eq!(control, [0x8a, 0x01, b'a']);
        // A flood of pongs keeps the latest, within the bound.
        for i in 0..100u8 {
            q.push_control(&[0x8a, 125].into_iter().chain(std::iter::repeat_n(i, 125)).collect::<Vec<_>>());
        }
        let left = q.take_control();
        assert!(left.len() <= MAX_CONTROL, "{}", left.len());
        assert_eq!(left.last(), Some(&99));
    }
}
