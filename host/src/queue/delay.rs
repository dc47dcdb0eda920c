//! The keys waiting to be added later: a min-heap of deadlines with at most
//! one live deadline per key.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use tokio::time::Instant;

/// Keys scheduled for a later add, like client-go's delaying queue: a key
/// waits for one deadline only, and scheduling it again moves that deadline
/// earlier, never later (`waitingEntryByData`).
///
/// The heap may hold stale entries (a key's superseded deadlines); `deadlines`
/// is the truth, and stale entries are skipped when they surface or swept
/// out when they outnumber the live ones.
#[derive(Debug)]
pub(super) struct DelayHeap<K> {
    heap: BinaryHeap<Entry<K>>,
    /// Each waiting key's deadline and the sequence number of its live entry.
    deadlines: HashMap<K, (Instant, u64)>,
    /// Orders entries with equal deadlines first-scheduled first.
    next_sequence: u64,
}

impl<K: Clone + Eq + Hash> DelayHeap<K> {
    /// An empty heap.
    pub(super) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            deadlines: HashMap::new(),
            next_sequence: 0,
        }
    }

    /// Schedules `key` for `deadline`, unless it already waits for an earlier
    /// (or the same) one. Returns whether `deadline` is now the earliest of
    /// all, so that whoever sleeps until the old earliest must look again.
    pub(super) fn schedule(&mut self, key: K, deadline: Instant) -> bool {
        if let Some(&(current, _)) = self.deadlines.get(&key)
            && current <= deadline
        {
            return false;
        }
        let earliest = self.next_deadline().is_none_or(|next| deadline < next);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.deadlines.insert(key.clone(), (deadline, sequence));
        self.heap.push(Entry {
            deadline,
            sequence,
            key,
        });
        self.sweep_if_stale();
        earliest
    }

    /// The earliest live deadline.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_top();
        self.heap.peek().map(|entry| entry.deadline)
    }

    /// Removes and returns the next key whose deadline is at or before `now`,
    /// earliest first.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<K> {
        self.drop_stale_top();
        if self.heap.peek()?.deadline > now {
            return None;
        }
        let entry = self.heap.pop()?;
        self.deadlines.remove(&entry.key);
        Some(entry.key)
    }

    /// Forgets every waiting key.
    pub(super) fn clear(&mut self) {
        self.heap.clear();
        self.deadlines.clear();
    }

    fn is_live(&self, entry: &Entry<K>) -> bool {
        self.deadlines
            .get(&entry.key)
            .is_some_and(|&(_, sequence)| sequence == entry.sequence)
    }

    fn drop_stale_top(&mut self) {
        while let Some(top) = self.heap.peek() {
            if self.is_live(top) {
                return;
            }
            self.heap.pop();
        }
    }

    /// Rebuilds the heap from its live entries when stale ones dominate, so
    /// that a key moved earlier over and over does not grow it without bound.
    fn sweep_if_stale(&mut self) {
        if self.heap.len() <= 2 * self.deadlines.len() + 16 {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        let live: Vec<Entry<K>> = entries
            .into_iter()
            .filter(|entry| self.is_live(entry))
            .collect();
        self.heap = BinaryHeap::from(live);
    }
}

impl<K> DelayHeap<K> {
    /// How many keys are waiting.
    pub(super) fn len(&self) -> usize {
        self.deadlines.len()
    }
}

/// One scheduled add. Ordered so that [`BinaryHeap`] (a max-heap) pops the
/// earliest deadline, then the first scheduled.
#[derive(Debug)]
struct Entry<K> {
    deadline: Instant,
    sequence: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Entry<K> {}

impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.sequence).cmp(&(self.deadline, self.sequence))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::DelayHeap;

    fn drain_due(heap: &mut DelayHeap<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| heap.pop_due(now)).collect()
    }

    #[test]
    fn pops_due_keys_earliest_first_then_in_scheduling_order() {
        let start = Instant::now();
        let mut heap = DelayHeap::new();
        heap.schedule("late", start + Duration::from_secs(3));
        heap.schedule("first", start + Duration::from_secs(1));
        heap.schedule("second", start + Duration::from_secs(1));
        assert_eq!(heap.len(), 3);
        assert_eq!(heap.next_deadline(), Some(start + Duration::from_secs(1)));
        assert_eq!(drain_due(&mut heap, start), Vec::<&str>::new());
        assert_eq!(
            drain_due(&mut heap, start + Duration::from_secs(2)),
            ["first", "second"]
        );
        assert_eq!(
            drain_due(&mut heap, start + Duration::from_secs(3)),
            ["late"]
        );
        assert_eq!(heap.len(), 0);
        assert_eq!(heap.next_deadline(), None);
    }

    #[test]
    fn rescheduling_moves_a_key_earlier_never_later() {
        let start = Instant::now();
        let mut heap = DelayHeap::new();
        assert!(heap.schedule("a", start + Duration::from_secs(10)));
        assert!(heap.schedule("a", start + Duration::from_secs(2)));
        assert!(!heap.schedule("a", start + Duration::from_secs(5)));
        assert_eq!(heap.len(), 1);
        assert_eq!(heap.next_deadline(), Some(start + Duration::from_secs(2)));
        assert_eq!(drain_due(&mut heap, start + Duration::from_secs(2)), ["a"]);
        // The superseded deadlines do not fire.
        assert_eq!(
            drain_due(&mut heap, start + Duration::from_secs(60)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn schedule_reports_a_new_earliest_deadline() {
        let start = Instant::now();
        let mut heap = DelayHeap::new();
        assert!(heap.schedule("a", start + Duration::from_secs(5)));
        assert!(!heap.schedule("b", start + Duration::from_secs(6)));
        assert!(heap.schedule("c", start + Duration::from_secs(1)));
    }

    #[test]
    fn moving_a_key_earlier_many_times_keeps_the_heap_small() {
        let start = Instant::now();
        let mut heap = DelayHeap::new();
        for step in (1..10_000u64).rev() {
            heap.schedule("a", start + Duration::from_millis(step));
        }
        assert_eq!(heap.len(), 1);
        assert!(heap.heap.len() <= 2 + 16 + 1, "{}", heap.heap.len());
        assert_eq!(drain_due(&mut heap, start + Duration::from_secs(60)), ["a"]);
    }

    #[test]
    fn clear_forgets_everything() {
        let start = Instant::now();
        let mut heap = DelayHeap::new();
        heap.schedule("a", start);
        heap.clear();
        assert_eq!(heap.len(), 0);
        assert_eq!(drain_due(&mut heap, start), Vec::<&str>::new());
    }
}
