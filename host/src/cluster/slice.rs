//! Which of a resource's objects an informer holds: all of them, or, on a
//! member of a sharded ring, only those its share needs.
//!
//! A member reconciles only the primary objects it owns
//! ([`Shard::owns`]), and reads, besides, the objects they control. An
//! informer that serves only such uses keeps those objects and drops the
//! others as they are decoded, so a member's memory shrinks with its
//! share. The API server cannot filter by share (a field selector cannot
//! hash, and objects carry no shard label), so each member still lists and
//! watches every object; it only stops holding what is not its own.

use crate::replication::Shard;

use super::store::StoredObject;

/// Which objects an informer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slice {
    /// Every object: a kind some guest lists or maps, or the host reads.
    All,
    /// The primary objects in this host's share.
    Share,
    /// The objects whose controller owner is in this host's share.
    Children,
}

impl Slice {
    /// Whether an informer of this slice keeps `object` while the keys are
    /// spread as `shard` says (`None`: they are not, and every object is
    /// kept).
    pub fn keeps(self, shard: Option<&Shard>, object: &StoredObject) -> bool {
        let Some(shard) = shard else {
            return true;
        };
        match self {
            Self::All => true,
            Self::Share => shard.owns(&object.namespace, &object.name),
            // An owner reference names an owner in the object's own
            // namespace, or a cluster-scoped one.
            Self::Children => object.controller.as_ref().is_some_and(|owner| {
                shard.owns(&object.namespace, &owner.name) || shard.owns("", &owner.name)
            }),
        }
    }

    /// How `/status` and the metrics name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Share => "share",
            Self::Children => "children",
        }
    }
}
