//! Group health: partitions of the reports topic that no live member consumes.
//!
//! Apache Kafka's coordinator evicts a member whose session timed out and rebalances the
//! survivors. tansu 0.6's coordinator, when it is a heartbeat that finds the dead member, drops
//! it but keeps it as the group's leader and keeps that generation's assignment: the survivors'
//! heartbeats go on succeeding, each keeps its old share, and the dead member's partitions are
//! consumed by nobody, for good (RELIABILITY.md, finding 4). A processor restarted alone after a
//! SIGKILL can end up owning no partition at all.
//!
//! The check, every `--kafka-group-check-secs` while this instance owns fewer partitions than
//! the last look counted (an owner of every partition has nothing to find, and the describe
//! calls block the loop for up to 2 s each while Kafka is unreachable): describe the group and
//! the topic. When the group is `Stable`, has exactly one member (this instance) and this
//! instance owns fewer partitions than the topic has, on [`STRIKES`] looks in a row, the
//! instance leaves the group and joins again ([`crate::consume::Consumer::rejoin`]). The leave makes tansu forget the dead leader
//! and the join gives every partition to the live member. On Kafka a lone member of a stable
//! group owns every partition, so the check does not fire there (a topic that just grew
//! partitions is the exception, and a rejoin is then what picks them up sooner).
//!
//! Not detected: an orphaned share among two or more live members. tansu's DescribeGroups
//! answers no member assignments, so an instance cannot tell whether the others own the rest.

use std::time::{Duration, Instant};

/// Orphaned looks in a row before the instance rejoins: one look can fall between a
/// rebalance's join and its sync.
pub const STRIKES: u32 = 2;

/// What one look at the group and its topic saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The coordinator's name for the group's state (`Stable`, `PreparingRebalance`, ...).
    pub state: String,
    /// Members the coordinator lists.
    pub members: usize,
    /// Partitions of the topic.
    pub partitions: usize,
}

impl GroupView {
    /// Whether partitions are left to nobody, as far as an instance owning `owned` can tell.
    pub fn orphaned(&self, owned: usize) -> bool {
        self.state == "Stable" && self.members == 1 && owned < self.partitions
    }
}

/// When to look, and when what was seen calls for a rejoin.
#[derive(Debug)]
pub struct GroupCheck {
    /// `None`: the check is off.
    interval: Option<Duration>,
    next: Instant,
    strikes: u32,
    /// The topic's partition count at the last look that described it.
    partitions: Option<usize>,
}

impl GroupCheck {
    /// Check every `interval` (zero: never), the first one `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        let interval = (!interval.is_zero()).then_some(interval);
        Self {
            interval,
            next: now + interval.unwrap_or_default(),
            strikes: 0,
            partitions: None,
        }
    }

    /// Whether to look now, for an instance owning `owned` partitions. One that owns every
    /// partition the last look counted has nothing to find (the usual single-processor
    /// deployment makes no describe calls, which block the loop while Kafka is unreachable).
    pub fn due(&self, owned: usize, now: Instant) -> bool {
        self.interval.is_some()
            && now >= self.next
            && self.partitions.is_none_or(|partitions| owned < partitions)
    }

    /// Record a look (`None`: the group or topic could not be described) taken while owning
    /// `owned` partitions. True when the instance should leave the group and join again.
    pub fn observe(&mut self, view: Option<&GroupView>, owned: usize, now: Instant) -> bool {
        self.next = now + self.interval.unwrap_or_default();
        if let Some(view) = view.filter(|view| view.partitions > 0) {
            self.partitions = Some(view.partitions);
        }
        if view.is_some_and(|view| view.orphaned(owned)) {
            self.strikes += 1;
        } else {
            self.strikes = 0;
        }
        if self.strikes >= STRIKES {
            self.strikes = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, members: usize, partitions: usize) -> GroupView {
        GroupView {
            state: state.to_owned(),
            members,
            partitions,
        }
    }

    #[test]
    fn only_a_lone_member_of_a_stable_group_short_of_partitions_is_orphaned() {
        assert!(view("Stable", 1, 4).orphaned(0));
        assert!(view("Stable", 1, 4).orphaned(3));
        assert!(!view("Stable", 1, 4).orphaned(4));
        assert!(!view("Stable", 2, 4).orphaned(2), "others may own the rest");
        assert!(!view("PreparingRebalance", 1, 4).orphaned(0));
        assert!(!view("CompletingRebalance", 1, 4).orphaned(0));
        assert!(!view("Empty", 0, 4).orphaned(0));
    }

    #[test]
    fn rejoins_after_consecutive_orphaned_looks_only() {
        let start = Instant::now();
        let step = Duration::from_secs(10);
        let mut check = GroupCheck::new(step, start);
        assert!(!check.due(0, start));
        assert!(check.due(0, start + step));

        let orphaned = view("Stable", 1, 4);
        let healthy = view("Stable", 2, 4);
        assert!(!check.observe(Some(&orphaned), 0, start + step));
        assert!(
            !check.due(0, start + step),
            "the next look is an interval later"
        );
        assert!(
            check.due(3, start + step * 2),
            "owns 3 of the 4 partitions seen"
        );
        assert!(
            !check.due(4, start + step * 2),
            "owns every partition seen: nothing to find"
        );
        // A healthy look, or a failed one, resets the count.
        assert!(!check.observe(Some(&healthy), 2, start + step * 2));
        assert!(!check.observe(Some(&orphaned), 0, start + step * 3));
        assert!(!check.observe(None, 0, start + step * 4));
        assert!(!check.observe(Some(&orphaned), 0, start + step * 5));
        assert!(check.observe(Some(&orphaned), 0, start + step * 6));
        // Counting starts again after a rejoin.
        assert!(!check.observe(Some(&orphaned), 0, start + step * 7));
        assert!(check.observe(Some(&orphaned), 0, start + step * 8));
    }

    #[test]
    fn zero_interval_turns_the_check_off() {
        let start = Instant::now();
        let check = GroupCheck::new(Duration::ZERO, start);
        assert!(!check.due(0, start + Duration::from_secs(3600)));
    }
}
