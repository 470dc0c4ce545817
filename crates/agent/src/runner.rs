//! When to sync: kube-proxy's bounded-frequency runner, as plain data over instants so it is
//! tested without sleeping. Changes are coalesced: a sync runs at least `min` after the previous
//! one; a failed sync is retried after `retry`; a full sync happens at least every `full`.

use crate::config::SyncPeriods;
use std::time::Instant;

/// The runner's memory of past syncs.
#[derive(Debug, Clone)]
pub struct Runner {
    periods: SyncPeriods,
    last_sync: Option<Instant>,
    last_full: Option<Instant>,
    retry_at: Option<Instant>,
}

/// What the next sync should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// When it should start.
    pub at: Instant,
    /// Whether it must read the kernel back.
    pub full: bool,
}

impl Runner {
    /// A runner that has not synced yet.
    pub fn new(periods: SyncPeriods) -> Runner {
        Runner {
            periods,
            last_sync: None,
            last_full: None,
            retry_at: None,
        }
    }

    /// The next sync, given whether changes are pending. `None`: nothing to do until a change
    /// arrives (cannot happen once a first sync ran: the hourly full sync is always due later).
    pub fn next(&self, pending: bool) -> Option<Due> {
        let earliest = self.last_sync.map(|t| t + self.periods.min);
        let not_before = |t: Instant| earliest.map_or(t, |e| t.max(e));
        let Some(last_full) = self.last_full else {
            // Nothing applied yet: the first sync is full, as soon as there is state.
            return pending.then(|| Due {
                at: not_before(
                    self.retry_at
                        .unwrap_or(earliest.unwrap_or_else(Instant::now)),
                ),
                full: true,
            });
        };
        let full_at = last_full + self.periods.full;
        let mut due = Due {
            at: full_at,
            full: true,
        };
        if let Some(retry) = self.retry_at {
            due = Due {
                at: retry.min(due.at),
                full: true,
            };
        } else if pending {
            let at = not_before(self.last_sync.unwrap_or(last_full));
            if at < due.at {
                due = Due { at, full: false };
            }
        }
        due.at = not_before(due.at);
        Some(due)
    }

    /// Records a sync that started at `at`.
    pub fn record(&mut self, at: Instant, full: bool, ok: bool) {
        self.last_sync = Some(at);
        if ok {
            self.retry_at = None;
            if full {
                self.last_full = Some(at);
            }
        } else {
            self.retry_at = Some(at + self.periods.retry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn periods() -> SyncPeriods {
        SyncPeriods {
            min: Duration::from_secs(1),
            retry: Duration::from_secs(30),
            full: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_first_sync_is_full_and_waits_for_state() {
        let r = Runner::new(periods());
        assert_eq!(r.next(false), None);
        let due = r.next(true).expect("due");
        assert!(due.full);
    }

    #[test]
    fn changes_are_coalesced_by_the_minimum_interval() {
        let t0 = Instant::now();
        let mut r = Runner::new(periods());
        r.record(t0, true, true);
        let due = r.next(true).expect("due");
        assert_eq!(
            due,
            Due {
                at: t0 + Duration::from_secs(1),
                full: false
            }
        );
        // Without changes, the next sync is the hourly full one.
        let idle = r.next(false).expect("due");
        assert_eq!(
            idle,
            Due {
                at: t0 + Duration::from_secs(3600),
                full: true
            }
        );
    }

    #[test]
    fn a_zero_minimum_syncs_at_once() {
        let t0 = Instant::now();
        let mut r = Runner::new(SyncPeriods {
            min: Duration::ZERO,
            ..periods()
        });
        r.record(t0, true, true);
        assert_eq!(r.next(true).map(|d| d.at), Some(t0));
    }

    #[test]
    fn a_failure_is_retried_after_the_retry_interval_with_a_full_sync() {
        let t0 = Instant::now();
        let mut r = Runner::new(periods());
        r.record(t0, true, true);
        let t1 = t0 + Duration::from_secs(5);
        r.record(t1, false, false);
        let due = r.next(true).expect("due");
        assert_eq!(
            due,
            Due {
                at: t1 + Duration::from_secs(30),
                full: true
            }
        );
        // Success clears the retry.
        r.record(due.at, true, true);
        assert_eq!(
            r.next(false).map(|d| d.at),
            Some(due.at + Duration::from_secs(3600))
        );
    }

    #[test]
    fn a_failed_first_sync_is_retried() {
        let t0 = Instant::now();
        let mut r = Runner::new(periods());
        r.record(t0, true, false);
        let due = r.next(true).expect("due");
        assert_eq!(
            due,
            Due {
                at: t0 + Duration::from_secs(30),
                full: true
            }
        );
    }
}
