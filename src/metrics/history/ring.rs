//! A fixed ring of `N` buckets keyed by period number (minutes or hours since
//! the epoch). A slot remembers which period it holds, so a slot left over
//! from an older period reads as zero: a gap in sampling shows as zeros,
//! never as the values of an hour ago. Memory is `N` slots, always.

use super::Counts;

/// One slot: the period it holds and what was counted in it.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The period number, or `None` while the slot was never written.
    period: Option<u64>,
    counts: Counts,
}

/// `N` buckets of one period length.
#[derive(Clone, Debug)]
pub(super) struct Ring<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            slots: [Slot {
                period: None,
                counts: Counts::default(),
            }; N],
        }
    }
}

impl<const N: usize> Ring<N> {
    /// The slot index of `period`.
    fn index(period: u64) -> usize {
        // N is a small constant (60, 24): the remainder always fits.
        usize::try_from(period % N as u64).unwrap_or(0)
    }

    /// Adds `delta` to `period`'s bucket, recycling the slot when it held an
    /// older period.
    pub(super) fn add(&mut self, period: u64, delta: &Counts) {
        let slot = &mut self.slots[Self::index(period)];
        if slot.period != Some(period) {
            slot.period = Some(period);
            slot.counts = Counts::default();
        }
        slot.counts.add(delta);
    }

    /// What `period` holds: zero when its slot holds another period.
    pub(super) fn get(&self, period: u64) -> Counts {
        let slot = &self.slots[Self::index(period)];
        if slot.period == Some(period) {
            slot.counts
        } else {
            Counts::default()
        }
    }

    /// The `N` periods ending with `last` (oldest first), with their counts;
    /// periods before the epoch are left out.
    pub(super) fn window(&self, last: u64) -> impl Iterator<Item = (u64, Counts)> + '_ {
        let first = last.saturating_sub(N as u64 - 1);
        (first..=last).map(move |p| (p, self.get(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(n: u64) -> Counts {
        Counts {
            hit: n,
            ..Counts::default()
        }
    }

    #[test]
    fn a_recycled_slot_starts_from_zero() {
        let mut r = Ring::<4>::default();
        r.add(10, &hits(3));
        r.add(10, &hits(2));
        assert_eq!(r.get(10).hit, 5);
        // Period 14 shares slot 10's place: period 10 is gone, 14 starts at 0.
        r.add(14, &hits(1));
        assert_eq!(r.get(14).hit, 1);
        assert_eq!(r.get(10).hit, 0);
    }

    #[test]
    fn the_window_is_n_periods_oldest_first_and_zero_where_unwritten() {
        let mut r = Ring::<4>::default();
        r.add(7, &hits(7));
        r.add(9, &hits(9));
        let w: Vec<(u64, u64)> = r.window(9).map(|(p, c)| (p, c.hit)).collect();
        assert_eq!(w, vec![(6, 0), (7, 7), (8, 0), (9, 9)]);
        // Near the epoch the window is shorter, never wraps around.
        assert_eq!(r.window(1).count(), 2);
    }
}
