//! The fence: whether this host may work now, and on which keys. Workers
//! check it before they take a key and again before they call the guest,
//! and the executor before each write;
//! the elector opens it for as long as the host's Lease is certainly its
//! own, and gives it the members a sharded ring spreads keys over.

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

/// The members a sharded ring's keys are spread over, as this host sees
/// them, and which of them this host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    me: String,
    /// The members, sorted, each with the hash its scores start from.
    members: Vec<(String, u64)>,
}

impl Shard {
    /// `me`'s share among `members` (this host included).
    pub fn new(me: &str, members: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = members.into_iter().collect();
        names.push(me.to_owned());
        names.sort();
        names.dedup();
        Self {
            me: me.to_owned(),
            members: names
                .into_iter()
                .map(|name| {
                    let hash = mix(fnv1a(&[&name]));
                    (name, hash)
                })
                .collect(),
        }
    }

    /// The members, sorted.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(name, _)| name.as_str())
    }

    /// The member that owns the object `namespace/name`, and so the key
    /// `(controller, namespace, name)` of every controller whose primary
    /// it is: the member with the highest score (rendezvous hashing), so
    /// that a member joining or leaving moves only its own share.
    ///
    /// The controller does not enter the score: every controller's keys
    /// for one object have one owner, so a member needs only its share of
    /// a kind's objects whichever controllers watch it (see
    /// [`crate::cluster::Slice`]).
    pub fn owner(&self, namespace: &str, name: &str) -> &str {
        let key = mix(fnv1a(&[namespace, name]));
        self.members
            .iter()
            .max_by_key(|(_, member)| mix(member ^ key))
            .map_or(self.me.as_str(), |(name, _)| name.as_str())
    }

    /// Whether this host owns the object `namespace/name`.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.owner(namespace, name) == self.me
    }

    /// Whether every key some member of `self` owns stays with that member
    /// in `next` (members only joined): moving from `self` to `next`, a
    /// member loses keys but gains none.
    pub fn only_loses_to(&self, next: &Self) -> bool {
        self.me == next.me
            && self
                .members()
                .all(|member| next.members().any(|other| other == member))
    }
}

/// FNV-1a over the parts, each followed by a byte no name holds.
///
/// The scores are defined here, not by std's hasher, whose output may
/// change between Rust releases: every version of the host must agree on
/// the owner of a key during a rolling upgrade.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// SplitMix64's finaliser: every input bit reaches every output bit, so
/// that members named alike (`paddock-0`, `paddock-1`) score independently.
fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Whether this host may work now, and on which keys; cheap to clone,
/// shared by every controller of a runtime.
#[derive(Debug, Clone)]
pub struct Fence {
    term: Arc<watch::Sender<Term>>,
    /// The members keys are spread over; followed by the informers that
    /// hold only this host's share ([`crate::cluster::Slice`]).
    shard: Arc<watch::Sender<Option<Arc<Shard>>>>,
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
            shard: Arc::new(watch::Sender::new(None)),
        }
    }

    /// A closed fence, opened by an elector.
    pub fn closed() -> Self {
        Self {
            term: Arc::new(watch::Sender::new(Term::Closed)),
            shard: Arc::new(watch::Sender::new(None)),
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

    /// Spreads the keys over these members from now on (`None`: this
    /// host takes every key, as a leader or a host alone does).
    pub fn set_shard(&self, shard: Option<Shard>) {
        let shard = shard.map(Arc::new);
        self.shard.send_if_modified(|current| {
            if *current == shard {
                return false;
            }
            *current = shard;
            true
        });
    }

    /// The members the keys are spread over, if they are.
    pub fn shard(&self) -> Option<Arc<Shard>> {
        self.shard.borrow().clone()
    }

    /// The members keys are spread over, now and as they change.
    pub fn shards(&self) -> watch::Receiver<Option<Arc<Shard>>> {
        self.shard.subscribe()
    }

    /// Whether this host may work on the keys of primary object
    /// `namespace/name` at this moment: the fence is open and the object
    /// is in its share.
    pub fn allows(&self, namespace: &str, name: &str) -> bool {
        self.allows_now() && self.owns(namespace, name)
    }

    /// Whether the object is in this host's share (every object is when
    /// the keys are not spread).
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.shard
            .borrow()
            .as_ref()
            .is_none_or(|shard| shard.owns(namespace, name))
    }

    /// Until when the fence is open: `None` when closed or always open.
    pub fn open_until_instant(&self) -> Option<Instant> {
        match *self.term.borrow() {
            Term::Until(until) => Some(until),
            Term::Always | Term::Closed => None,
        }
    }

    /// Resolves once this host may no longer work on the keys of primary
    /// object `namespace/name`: its term ran out (unless renewed first),
    /// the fence closed, or the object left its share. A write in flight
    /// is raced against it, so that no write outlives the term it began in.
    pub async fn forbids(&self, namespace: &str, name: &str) {
        let mut term = self.term.subscribe();
        let mut shard = self.shard.subscribe();
        loop {
            let now = *term.borrow_and_update();
            shard.borrow_and_update();
            if !allows(now, Instant::now()) || !self.owns(namespace, name) {
                return;
            }
            let end = match now {
                Term::Until(until) => tokio::time::Instant::from_std(until),
                // An open fence ends only by a change (a closed one
                // returned above).
                Term::Always | Term::Closed => tokio::time::Instant::now() + FOREVER,
            };
            // The senders live as long as `self`: neither `changed` fails.
            tokio::select! {
                () = tokio::time::sleep_until(end) => {}
                _ = term.changed() => {}
                _ = shard.changed() => {}
            }
        }
    }

    /// `write`'s output, or `None` when this host may no longer work on
    /// the keys of `namespace/name` before `write` completes (see
    /// [`Fence::forbids`]): then `write` is dropped, abandoned unanswered.
    pub async fn within<T>(
        &self,
        namespace: &str,
        name: &str,
        write: impl Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            biased;
            done = write => Some(done),
            () = self.forbids(namespace, name) => None,
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

/// Long enough to stand for never, short enough for any timer.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(86_400 * 365);

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

    fn keys() -> impl Iterator<Item = (String, String)> {
        (0..3000).map(|i| (format!("ns-{}", i % 7), format!("object-{i}")))
    }

    #[test]
    fn every_key_has_one_owner_and_a_join_moves_only_the_joiners_share() {
        let members = |names: &[&str]| {
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>()
        };
        let three: Vec<Shard> = ["a", "b", "c"]
            .iter()
            .map(|me| Shard::new(me, members(&["a", "b", "c"])))
            .collect();
        let mut shares = [0usize; 3];
        for (namespace, name) in keys() {
            let owners: Vec<usize> = (0..3)
                .filter(|i| three[*i].owns(&namespace, &name))
                .collect();
            assert_eq!(owners.len(), 1, "{namespace}/{name}: {owners:?}");
            shares[owners[0]] += 1;
        }
        for share in shares {
            assert!((800..1200).contains(&share), "an even spread: {shares:?}");
        }
        // A fourth member takes keys only from the others, never moving a
        // key between two of the three.
        let four = Shard::new("a", members(&["a", "b", "c", "d"]));
        for (namespace, name) in keys() {
            let before = three[0].owner(&namespace, &name);
            let after = four.owner(&namespace, &name);
            assert!(
                after == before || after == "d",
                "{namespace}/{name}: {before} -> {after}"
            );
        }
        assert!(three[0].only_loses_to(&four), "a join only takes keys");
        assert!(!four.only_loses_to(&three[0]), "a leave gives keys");
        // The namespace is part of the object's name: objects named alike
        // in different namespaces spread independently.
        let differ = (0..3000)
            .filter(|i| {
                let name = format!("object-{i}");
                three[0].owner("shop", &name) != three[0].owner("office", &name)
            })
            .count();
        assert!(differ > 1000, "{differ}");
    }

    #[test]
    fn members_named_alike_share_independently_of_the_key_names() {
        let two = Shard::new("paddock-0", ["paddock-1".to_owned()]);
        // Keys named d0, d1, ...: the owner must not follow the last digit.
        let mut by_parity = [[0usize; 2]; 2];
        for i in 0..10_000 {
            let mine = usize::from(two.owns("default", &format!("d{i}")));
            by_parity[i % 2][mine] += 1;
        }
        for counts in by_parity {
            for count in counts {
                assert!((2200..2800).contains(&count), "{by_parity:?}");
            }
        }
    }

    #[test]
    fn a_fence_with_a_shard_allows_only_its_share() {
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(60));
        fence.set_shard(Some(Shard::new("a", ["a".to_owned(), "b".to_owned()])));
        let (mine, theirs): (Vec<_>, Vec<_>) = keys()
            .take(100)
            .partition(|(namespace, name)| fence.allows(namespace, name));
        assert!(!mine.is_empty() && !theirs.is_empty());
        fence.set_shard(None);
        assert!(
            theirs
                .iter()
                .all(|(namespace, name)| fence.allows(namespace, name))
        );
        fence.close();
        assert!(
            !mine
                .iter()
                .any(|(namespace, name)| fence.allows(namespace, name))
        );
    }

    #[tokio::test]
    async fn forbids_resolves_when_the_term_ends_the_fence_closes_or_the_key_moves() {
        let within = |what: &'static str| {
            move |waited: Result<(), tokio::time::error::Elapsed>| {
                waited.unwrap_or_else(|_| panic!("{what} forbids within 10 s"));
            }
        };
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_millis(200));
        within("the end of the term")(
            tokio::time::timeout(Duration::from_secs(10), fence.forbids("ns", "x")).await,
        );
        assert!(!fence.allows_now());

        // A renewal before the end keeps the key allowed past it.
        fence.open_until(Instant::now() + Duration::from_millis(300));
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.forbids("ns", "x").await }
        });
        // The waiter starts on the short term before it is renewed.
        tokio::task::yield_now().await;
        fence.open_until(Instant::now() + Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !waiting.is_finished(),
            "a renewed term allows past the first one's end"
        );
        // The key moves to a member that joined.
        let taker = (0..)
            .map(|n| format!("b{n}"))
            .find(|b| Shard::new("a", [b.clone()]).owner("ns", "x") == b)
            .expect("some member takes the key");
        fence.set_shard(Some(Shard::new("a", ["a".to_owned()])));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the key is still this host's");
        fence.set_shard(Some(Shard::new("a", [taker])));
        within("a move of the key")(
            tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .map(|joined| joined.expect("join")),
        );

        // Closing the fence.
        fence.set_shard(None);
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.forbids("ns", "x").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "an open fence allows");
        fence.close();
        within("closing the fence")(
            tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .map(|joined| joined.expect("join")),
        );
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
