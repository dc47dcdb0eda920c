//! The fence: whether this host may work now. Workers check it before
//! they take a key and the executor before each write; the elector opens
//! it for as long as the host's Lease is certainly its own.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

/// Until when this host may work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    /// Always: a host that is not replicated.
    Always,
    /// Until this instant (the renew deadline of the last renewal that
    /// succeeded), unless renewed again.
    Until(Instant),
    /// Not now: a standby, or a host that lost its Lease or is stopping.
    Closed,
}

/// Whether this host may work now; cheap to clone, shared by every
/// controller of a runtime.
#[derive(Debug, Clone)]
pub struct Fence {
    term: Arc<watch::Sender<Term>>,
}

impl Default for Fence {
    fn default() -> Self {
        Self::open()
    }
}

impl Fence {
    /// A fence that is always open: the host works alone.
    pub fn open() -> Self {
        Self {
            term: Arc::new(watch::Sender::new(Term::Always)),
        }
    }

    /// A closed fence, opened by an elector.
    pub fn closed() -> Self {
        Self {
            term: Arc::new(watch::Sender::new(Term::Closed)),
        }
    }

    /// Opens the fence until `until` (a renewal extends it).
    pub fn open_until(&self, until: Instant) {
        self.term.send_replace(Term::Until(until));
    }

    /// Closes the fence: no key is taken and no write is made from now on.
    pub fn close(&self) {
        self.term.send_replace(Term::Closed);
    }

    /// Whether this host may work at this moment.
    pub fn allows_now(&self) -> bool {
        allows(*self.term.borrow(), Instant::now())
    }

    /// Until when the fence is open: `None` when closed or always open.
    pub fn open_until_instant(&self) -> Option<Instant> {
        match *self.term.borrow() {
            Term::Until(until) => Some(until),
            Term::Always | Term::Closed => None,
        }
    }

    /// Resolves once this host may work. A term that runs out while
    /// waiting counts as closed until it is renewed.
    pub async fn opened(&self) {
        let mut term = self.term.subscribe();
        loop {
            if allows(*term.borrow_and_update(), Instant::now()) {
                return;
            }
            if term.changed().await.is_err() {
                // The sender lives as long as `self`.
                std::future::pending::<()>().await;
            }
        }
    }
}

fn allows(term: Term, now: Instant) -> bool {
    match term {
        Term::Always => true,
        Term::Until(until) => now < until,
        Term::Closed => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_term_allows_work_only_before_its_end() {
        let fence = Fence::closed();
        assert!(!fence.allows_now());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.allows_now());
        fence.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.allows_now(), "a term that ran out fences");
        fence.close();
        assert!(!fence.allows_now());
        assert!(Fence::open().allows_now());
    }

    #[tokio::test]
    async fn opened_waits_for_a_term() {
        let fence = Fence::closed();
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.opened().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("opened resolves once the fence opens")
            .expect("join");
    }
}
