//! Execution slots: the host-wide pool of threads that run guest calls,
//! shared fairly between flows (a tenant's namespace, or one operator
//! controller), as the API server's priority and fairness shares its seats.
//!
//! Every guest call (load, reconcile, map) takes a slot before it gets a
//! blocking thread and gives it back when the call ends, so guests never
//! hold more threads than the pool has slots, whatever they do. A tenant's
//! flow holds at most its own share of the slots; what it asks beyond that
//! waits in its own queue. A freed slot goes to the next flow with waiting
//! calls, round robin, so a neighbour's call waits for at most one slot to
//! free however many calls another tenant has queued.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How often a caller waiting for a spare slot looks again, whether or not
/// it was told of one.
const SPARE_RECHECK: Duration = Duration::from_millis(50);

/// How long past its deadline a call may hold its slot before the pool
/// counts as stalled.
const STALL_GRACE: Duration = Duration::from_secs(5);

/// Who a guest call is for; calls of one flow share that flow's slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flow {
    /// The controllers of one tenant: a namespace's `WasmController`s.
    /// A tenant holds at most the pool's per-tenant share of slots.
    Tenant(Arc<str>),
    /// One controller the operator declared; capped only by the pool.
    Operator(Arc<str>),
}

impl Flow {
    /// The flow of a controller: its tenant's namespace if a tenant
    /// declared it, else its own name.
    pub fn of(controller: &str, tenant: Option<&str>) -> Self {
        match tenant {
            Some(namespace) => Self::Tenant(namespace.into()),
            None => Self::Operator(controller.into()),
        }
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tenant(namespace) => write!(f, "tenant {namespace}"),
            Self::Operator(name) => write!(f, "controller {name}"),
        }
    }
}

/// The pool of execution slots. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct ExecutionSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    per_tenant: usize,
    state: Mutex<State>,
    /// Told whenever the last held slot is freed.
    idle: tokio::sync::Notify,
    /// Told whenever a slot is freed and no call waits for it.
    spare: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    running: HashMap<Flow, usize>,
    waiting: HashMap<Flow, VecDeque<oneshot::Sender<Slot>>>,
    /// Flows with waiting calls, in the order they are served.
    turns: VecDeque<Flow>,
    /// Calls holding a slot: when they started and their deadline.
    calls: HashMap<u64, (Instant, Option<Duration>)>,
    next_call: u64,
}

/// A held slot; dropping it frees it for the next waiting call.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<Inner>,
    flow: Flow,
    call: u64,
    /// Whether dropping it frees it (not when the pool took it back).
    held: bool,
}

/// A reading of the pool, for `/status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotsStatus {
    /// Slots in the pool.
    pub total: usize,
    /// The most slots one tenant holds at once.
    pub per_tenant: usize,
    /// Slots held now.
    pub running: usize,
    /// Calls waiting for a slot.
    pub waiting: usize,
}

/// The default pool size: four slots per core, at least four.
pub fn default_slots() -> usize {
    (cores() * 4).max(4)
}

/// The default share of one tenant: half the cores, at least one.
pub fn default_per_tenant() -> usize {
    (cores() / 2).max(1)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Default for ExecutionSlots {
    fn default() -> Self {
        Self::new(default_slots(), default_per_tenant())
    }
}

impl ExecutionSlots {
    /// A pool of `total` slots of which one tenant holds at most
    /// `per_tenant` (both at least 1).
    pub fn new(total: usize, per_tenant: usize) -> Self {
        let total = total.max(1);
        Self {
            inner: Arc::new(Inner {
                total,
                per_tenant: per_tenant.clamp(1, total),
                state: Mutex::new(State {
                    free: total,
                    ..State::default()
                }),
                idle: tokio::sync::Notify::new(),
                spare: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Runs `work` on a blocking thread once `flow` gets a slot, and frees
    /// the slot when `work` returns, even if the caller stopped waiting for
    /// it. `deadline` is how long the call may run (`None`: no deadline,
    /// such as a compile); a call holding its slot well past it marks the
    /// pool as stalled.
    pub async fn run<T: Send + 'static>(
        &self,
        flow: &Flow,
        deadline: Option<Duration>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let slot = self.acquire(flow, deadline).await;
        // The blocking thread carries on the caller's span, so what the
        // guest logs is tagged with the controller and the object.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            span.in_scope(work)
        })
        .await
    }

    /// Waits for a slot for `flow`. Cancel safe: a slot handed to a caller
    /// that stopped waiting goes to the next one.
    pub async fn acquire(&self, flow: &Flow, deadline: Option<Duration>) -> Slot {
        loop {
            let receiver = {
                let mut state = self.inner.lock();
                let idle_queue = state.waiting.get(flow).is_none_or(VecDeque::is_empty);
                if state.free > 0 && idle_queue && self.inner.may_run(&state, flow) {
                    return self.inner.start(&mut state, flow.clone(), deadline);
                }
                let (sender, receiver) = oneshot::channel();
                state
                    .waiting
                    .entry(flow.clone())
                    .or_default()
                    .push_back(sender);
                if !state.turns.contains(flow) {
                    state.turns.push_back(flow.clone());
                }
                receiver
            };
            // The pool drops a waiter's sender only by sending it a slot.
            if let Ok(slot) = receiver.await {
                // The call's own deadline, from now that it starts.
                let mut state = self.inner.lock();
                if let Some(call) = state.calls.get_mut(&slot.call) {
                    *call = (Instant::now(), deadline);
                }
                return slot;
            }
        }
    }

    /// A slot for `flow` if one is free now and no call waits for one:
    /// work that must never delay a controller's own calls (a shadow run)
    /// takes only what nobody else asks for.
    pub fn try_acquire(&self, flow: &Flow, deadline: Option<Duration>) -> Option<Slot> {
        let mut state = self.inner.lock();
        let nobody_waits = state.waiting.values().all(VecDeque::is_empty);
        (state.free > 0 && nobody_waits && self.inner.may_run(&state, flow))
            .then(|| self.inner.start(&mut state, flow.clone(), deadline))
    }

    /// Waits for a slot for `flow` that nobody else waits for, as
    /// [`ExecutionSlots::try_acquire`] takes it: work that must never
    /// delay a controller's own calls runs on what is spare. Cancel safe.
    pub async fn acquire_spare(&self, flow: &Flow, deadline: Option<Duration>) -> Slot {
        loop {
            let spare = self.inner.spare.notified();
            if let Some(slot) = self.try_acquire(flow, deadline) {
                return slot;
            }
            // A slot freed while calls waited is told to nobody here; the
            // next free slot after they are served is, and a short wait
            // bounds the rest.
            let _ = tokio::time::timeout(SPARE_RECHECK, spare).await;
        }
    }

    /// Why the pool is stalled, if a call holds its slot well past its
    /// deadline (a guest stuck where the deadline cannot reach it).
    pub fn stalled(&self) -> Option<String> {
        let state = self.inner.lock();
        let now = Instant::now();
        let stuck = state
            .calls
            .values()
            .filter_map(|(started, deadline)| {
                let limit = deadline.as_ref()?.saturating_add(STALL_GRACE);
                let held = now.saturating_duration_since(*started);
                (held > limit).then_some(held)
            })
            .max()?;
        Some(format!(
            "a guest call has held its execution slot for {} s, past its deadline",
            stuck.as_secs()
        ))
    }

    /// Waits until no call holds a slot, for at most `timeout`; whether
    /// the pool drained. A host shutting down waits for this, so that no
    /// guest call outlives the runtime its WASI waits need.
    pub async fn drained(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.lock().free == self.inner.total {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }

    /// The pool's size and use now.
    pub fn status(&self) -> SlotsStatus {
        let state = self.inner.lock();
        SlotsStatus {
            total: self.inner.total,
            per_tenant: self.inner.per_tenant,
            running: self.inner.total - state.free,
            waiting: state.waiting.values().map(VecDeque::len).sum(),
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `flow` may take one more slot.
    fn may_run(&self, state: &State, flow: &Flow) -> bool {
        match flow {
            Flow::Tenant(_) => state.running.get(flow).copied().unwrap_or(0) < self.per_tenant,
            Flow::Operator(_) => true,
        }
    }

    fn start(self: &Arc<Self>, state: &mut State, flow: Flow, deadline: Option<Duration>) -> Slot {
        state.free -= 1;
        *state.running.entry(flow.clone()).or_default() += 1;
        let call = state.next_call;
        state.next_call += 1;
        state.calls.insert(call, (Instant::now(), deadline));
        Slot {
            inner: Arc::clone(self),
            flow,
            call,
            held: true,
        }
    }

    /// Hands free slots to waiting calls, one flow at a time in turn.
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        let mut unserved = 0;
        while state.free > 0 && unserved < state.turns.len() {
            let Some(flow) = state.turns.pop_front() else {
                return;
            };
            if !self.may_run(state, &flow) {
                state.turns.push_back(flow);
                unserved += 1;
                continue;
            }
            let Some(sender) = state.waiting.get_mut(&flow).and_then(VecDeque::pop_front) else {
                state.waiting.remove(&flow);
                continue;
            };
            if state
                .waiting
                .get(&flow)
                .is_some_and(|queue| !queue.is_empty())
            {
                state.turns.push_back(flow.clone());
            } else {
                state.waiting.remove(&flow);
            }
            unserved = 0;
            let slot = self.start(state, flow, None);
            if let Err(mut slot) = sender.send(slot) {
                // The caller stopped waiting: take the slot back here (the
                // lock is held, so not through its `Drop`).
                self.finish(state, &slot.flow, slot.call);
                slot.held = false;
            }
        }
    }

    fn finish(&self, state: &mut State, flow: &Flow, call: u64) {
        state.free += 1;
        if state.free == self.total {
            self.idle.notify_waiters();
        }
        if state.waiting.values().all(VecDeque::is_empty) {
            self.spare.notify_waiters();
        }
        state.calls.remove(&call);
        if let Some(running) = state.running.get_mut(flow) {
            *running -= 1;
            if *running == 0 {
                state.running.remove(flow);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut state = self.inner.lock();
        self.inner.finish(&mut state, &self.flow, self.call);
        self.inner.dispatch(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Flow {
        Flow::Tenant(name.into())
    }

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_share() {
        let slots = ExecutionSlots::new(4, 1);
        let first = slots.acquire(&tenant("a"), None).await;
        let blocked =
            tokio::time::timeout(Duration::from_millis(20), slots.acquire(&tenant("a"), None))
                .await;
        assert!(blocked.is_err(), "a second slot for tenant a waits");
        // Another tenant is served at once from the free slots.
        let other = slots.acquire(&tenant("b"), None).await;
        assert_eq!(slots.status().running, 2);
        drop((first, other));
        assert_eq!(slots.status().running, 0);
    }

    #[tokio::test]
    async fn trying_takes_only_a_slot_nobody_waits_for() {
        let slots = ExecutionSlots::new(2, 1);
        let first = slots.try_acquire(&tenant("a"), None).expect("a free slot");
        assert!(
            slots.try_acquire(&tenant("a"), None).is_none(),
            "a tenant's share holds"
        );
        let second = slots.acquire(&tenant("b"), None).await;
        assert!(
            slots.try_acquire(&tenant("c"), None).is_none(),
            "the pool is full"
        );
        drop(second);
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(&tenant("a"), None).await }
        });
        tokio::task::yield_now().await;
        // `a` waits (its share is held): a free slot is not taken from
        // under a waiting call.
        let mut tries = 0;
        while slots.status().waiting == 0 && tries < 100 {
            tokio::task::yield_now().await;
            tries += 1;
        }
        assert_eq!(slots.status().waiting, 1);
        assert!(
            slots.try_acquire(&tenant("c"), None).is_none(),
            "a call waits"
        );
        drop(first);
        drop(waiting.await.expect("the waiting call gets its slot"));
        assert!(slots.try_acquire(&tenant("c"), None).is_some());
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_next_flow_in_turn() {
        let slots = ExecutionSlots::new(1, 1);
        let held = slots.acquire(&Flow::Operator("busy".into()), None).await;
        // Tenant a queues three calls, then tenant b queues one.
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (index, flow) in [tenant("a"), tenant("a"), tenant("a"), tenant("b")]
            .into_iter()
            .enumerate()
        {
            let pool = slots.clone();
            let order_tx = order_tx.clone();
            waiters.push(tokio::spawn(async move {
                let slot = pool.acquire(&flow, None).await;
                order_tx.send(index).expect("the test listens");
                drop(slot);
            }));
            // Queue them in this order.
            while slots.status().waiting < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        let mut served = Vec::new();
        for _ in 0..4 {
            served.push(order.recv().await.expect("every waiter is served"));
        }
        // b's one call goes second, not behind all of a's.
        assert_eq!(served, [0, 3, 1, 2]);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_gives_its_turn_away() {
        let slots = ExecutionSlots::new(1, 1);
        let held = slots.acquire(&tenant("a"), None).await;
        let gone =
            tokio::time::timeout(Duration::from_millis(10), slots.acquire(&tenant("b"), None))
                .await;
        assert!(gone.is_err());
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(&tenant("c"), None).await })
        };
        while slots.status().waiting < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let slot = waiting.await.expect("c is served");
        assert_eq!(slots.status().running, 1);
        drop(slot);
        assert_eq!(
            slots.status(),
            SlotsStatus {
                total: 1,
                per_tenant: 1,
                running: 0,
                waiting: 0
            }
        );
    }

    #[tokio::test]
    async fn work_runs_on_a_blocking_thread_and_frees_its_slot() {
        let slots = ExecutionSlots::new(2, 1);
        let answer = slots
            .run(&tenant("a"), Some(Duration::from_secs(1)), || 6 * 7)
            .await
            .expect("runs");
        assert_eq!(answer, 42);
        assert!(slots.drained(Duration::from_secs(1)).await);
        assert_eq!(slots.status().running, 0);
        assert!(slots.stalled().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_held_past_its_deadline_stalls_the_pool() {
        let slots = ExecutionSlots::new(2, 1);
        let _slot = slots
            .acquire(&tenant("a"), Some(Duration::from_millis(100)))
            .await;
        assert!(slots.stalled().is_none());
        // Stall detection reads the real clock: age the call by hand.
        {
            let mut state = slots.inner.lock();
            for (started, _) in state.calls.values_mut() {
                *started -= Duration::from_secs(6);
            }
        }
        let stalled = slots.stalled().expect("stalled");
        assert!(stalled.contains("past its deadline"), "{stalled}");
    }
}
