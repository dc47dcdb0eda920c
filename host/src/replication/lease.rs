//! `coordination.k8s.io/v1` Leases as client-go's leader election uses
//! them: the holder renews `renewTime`; another host takes the Lease only
//! after it has seen the record unchanged for the Lease's duration on its
//! own clock (never by comparing `renewTime` with its clock, which may be
//! skewed), and every write carries the `resourceVersion` it read, so two
//! hosts cannot both win one round.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

/// The label every member Lease of a ring carries, valued with the ring.
pub const RING_LABEL: &str = "paddock.dev/ring";

/// What one attempt to take or renew a Lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This host holds it (it just took or renewed it).
    Held {
        /// Whether it was someone else's (or nobody's) before.
        acquired: bool,
    },
    /// Another host holds it and it has not expired on this host's clock.
    HeldBy(String),
    /// Another host wrote it between this host's read and write.
    Conflict,
}

/// The record this host saw last, and when it first saw it.
#[derive(Debug, Clone)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    resource_version: Option<String>,
    at: Instant,
}

/// One Lease, taken and renewed by `identity`.
#[derive(Debug)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    labels: BTreeMap<String, String>,
    observed: Option<Observed>,
}

impl LeaseLock {
    /// A lock on the Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            labels: BTreeMap::new(),
            observed: None,
        }
    }

    /// Labels the Lease carries when this host creates it.
    #[must_use]
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The holder this host saw last.
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .map(|observed| observed.holder.as_str())
            .filter(|holder| !holder.is_empty())
    }

    /// Notes a record of this Lease read elsewhere (a watch on it): a
    /// changed record restarts its clock, as one read by a try does.
    pub fn saw(&mut self, lease: &Lease) {
        if lease.metadata.name.as_deref() == Some(self.name.as_str()) {
            self.observe(lease);
        }
    }

    /// When a try could next take the Lease if its record does not change:
    /// since it was seen free, or once the record another host holds has
    /// stayed unchanged for the Lease's duration on this host's clock.
    /// `None` while this host holds it, or before any record was seen.
    pub fn next_chance(&self) -> Option<Instant> {
        let observed = self.observed.as_ref()?;
        if observed.holder == self.identity {
            None
        } else if observed.holder.is_empty() {
            Some(observed.at)
        } else {
            Some(observed.at + self.duration)
        }
    }

    /// Takes the Lease if it is free or expired, or renews it if this host
    /// holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(Attempt::Held { acquired: true })
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
                Err(error) => Err(error),
            };
        };
        self.observe(&current);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() && !self.expired() {
            return Ok(Attempt::HeldBy(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let spec = if mine {
            self.spec(
                spec.acquire_time.unwrap_or_else(|| now.clone()),
                now,
                transitions,
            )
        } else {
            self.spec(now.clone(), now, transitions.saturating_add(1))
        };
        let mut lease = current;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                Ok(Attempt::Held { acquired: !mine })
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up if this host holds it, so that another host takes
    /// it at its next try instead of after the Lease's duration.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut current) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(jiff::Timestamp::now());
        current.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..LeaseSpec::default()
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(()),
            // Someone took it meanwhile: it is not ours to release.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn spec(&self, acquire: MicroTime, renew: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds(self.duration)),
            acquire_time: Some(acquire),
            renew_time: Some(renew),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Notes the record read or written; a changed record restarts its
    /// clock.
    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|observed| {
            observed.holder != holder
                || observed.renew_time != spec.renew_time
                || observed.resource_version != lease.metadata.resource_version
        });
        if changed {
            self.observed = Some(Observed {
                holder,
                renew_time: spec.renew_time,
                resource_version: lease.metadata.resource_version.clone(),
                at: Instant::now(),
            });
        }
    }

    /// Whether the record seen has stayed unchanged for the Lease's
    /// duration on this host's clock.
    fn expired(&self) -> bool {
        self.observed
            .as_ref()
            .is_none_or(|observed| observed.at.elapsed() >= self.duration)
    }
}

/// A Lease's duration in whole seconds, as the API holds it.
pub fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// A member's own Lease in the ring: created on joining, its `renewTime`
/// renewed, deleted on leaving. Nobody else writes it.
#[derive(Debug)]
pub struct MemberLease {
    api: Api<Lease>,
    name: String,
    ring: String,
    identity: String,
    duration: Duration,
}

impl MemberLease {
    /// The member Lease of `identity` in `ring`.
    pub fn new(api: Api<Lease>, ring: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: member_lease_name(ring, identity),
            ring: ring.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Renews the Lease, creating it when it is missing.
    pub async fn renew(&self) -> Result<(), kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([(RING_LABEL.to_owned(), self.ring.clone())])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(seconds(self.duration)),
                renew_time: Some(now),
                ..LeaseSpec::default()
            }),
        };
        self.api
            .patch(
                &self.name,
                &PatchParams::apply("paddock-ring").force(),
                &Patch::Apply(&with_kind(lease)),
            )
            .await
            .map(drop)
    }

    /// Deletes the Lease: this member leaves the ring now rather than when
    /// its Lease expires.
    pub async fn delete(&self) -> Result<(), kube::Error> {
        match self.api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// A Lease with its `apiVersion` and `kind`, as server-side apply wants.
fn with_kind(lease: Lease) -> serde_json::Value {
    let mut value = serde_json::to_value(lease).unwrap_or_default();
    value["apiVersion"] = "coordination.k8s.io/v1".into();
    value["kind"] = "Lease".into();
    value
}

/// The name of `identity`'s member Lease in `ring`: a DNS subdomain
/// however the identity is spelled.
pub fn member_lease_name(ring: &str, identity: &str) -> String {
    let cleaned: String = identity
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    let name = format!("{ring}-member-{cleaned}");
    let mut name: String = name.chars().take(253).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

/// One member of a ring, as its Lease shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its identity.
    pub identity: String,
    /// When it last renewed its Lease, by its own clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<jiff::Timestamp>,
}

/// The live members of a ring: those whose member Lease changed within its
/// duration, on this host's clock.
#[derive(Debug, Default)]
pub struct Roster {
    seen: BTreeMap<String, (Option<MicroTime>, Instant, Duration)>,
}

impl Roster {
    /// Lists the ring's member Leases and returns the live members, by
    /// identity.
    pub async fn refresh(
        &mut self,
        api: &Api<Lease>,
        ring: &str,
    ) -> Result<Vec<Member>, kube::Error> {
        let leases = api
            .list(&ListParams::default().labels(&format!("{RING_LABEL}={ring}")))
            .await?;
        let now = Instant::now();
        let mut live = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for lease in leases {
            let name = lease.metadata.name.clone().unwrap_or_default();
            let spec = lease.spec.unwrap_or_default();
            let duration = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(1).max(1)).unwrap_or(1),
            );
            let entry =
                self.seen
                    .entry(name.clone())
                    .or_insert((spec.renew_time.clone(), now, duration));
            if entry.0 != spec.renew_time {
                *entry = (spec.renew_time.clone(), now, duration);
            }
            names.insert(name);
            let Some(identity) = spec.holder_identity else {
                continue;
            };
            if now.duration_since(entry.1) < entry.2 {
                live.push(Member {
                    identity,
                    renewed: spec.renew_time.map(|time| time.0),
                });
            }
        }
        self.seen.retain(|name, _| names.contains(name));
        live.sort_by(|a, b| a.identity.cmp(&b.identity));
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lease_names_are_dns_subdomains() {
        assert_eq!(
            member_lease_name("paddock", "Node_7:abc"),
            "paddock-member-node-7-abc"
        );
        assert_eq!(member_lease_name("paddock", "a-"), "paddock-member-a");
        assert!(member_lease_name("r", &"x".repeat(400)).len() <= 253);
    }
}
