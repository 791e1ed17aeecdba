//! The gap-aware `eventlog` cursor: the highest id seen, plus the ids below it that have not appeared yet.
//!
//! OMERO takes `eventlog` ids from a sequence before its transaction commits, so rows can
//! become visible out of id order, and a rollback leaves an id that never appears. The
//! cursor emits every row once, as soon as it is visible: a row above `high` moves `high`
//! and records the ids it jumped over as a gap; a row inside a gap fills it. A gap is
//! given up (the id counts as rolled back) only after it stayed open for the grace time.
//! The low-water mark, below which nothing can still appear, is just under the oldest gap.

use serde::{Deserialize, Serialize};

/// At most this many open gaps are kept; past it the oldest are given up (and logged).
pub const MAX_GAPS: usize = 10_000;

/// Ids `from..=to`, missing since `since` (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
    pub since: i64,
}

/// Where an `eventlog` reader stands; saved in Herald's store after each journaled batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The highest id seen.
    pub high: i64,
    /// Ids below `high` not seen yet, in id order.
    pub gaps: Vec<Gap>,
}

impl Cursor {
    /// A cursor that has seen everything up to `high`.
    pub fn at(high: i64) -> Cursor {
        Cursor {
            high,
            gaps: Vec::new(),
        }
    }

    /// Every id up to this one was seen or given up; nothing at or below it can still appear.
    pub fn low_water(&self) -> i64 {
        self.gaps.first().map_or(self.high, |gap| gap.from - 1)
    }

    /// Record the visible row `id` at `now` (Unix ms); true when it was not seen before.
    pub fn see(&mut self, id: i64, now: i64) -> bool {
        if id > self.high {
            if id > self.high + 1 {
                self.gaps.push(Gap {
                    from: self.high + 1,
                    to: id - 1,
                    since: now,
                });
            }
            self.high = id;
            return true;
        }
        let Some(index) = self.gaps.iter().position(|g| g.from <= id && id <= g.to) else {
            return false;
        };
        let gap = self.gaps[index];
        let halves = [
            Gap { to: id - 1, ..gap },
            Gap {
                from: id + 1,
                ..gap
            },
        ];
        let kept: Vec<Gap> = halves.into_iter().filter(|g| g.from <= g.to).collect();
        self.gaps.splice(index..=index, kept);
        true
    }

    /// Give up the gaps open for `grace_ms` or longer at `now`, and the oldest past [`MAX_GAPS`];
    /// returns them (their ids count as rolled back).
    pub fn expire(&mut self, now: i64, grace_ms: i64) -> Vec<Gap> {
        let mut given_up = Vec::new();
        self.gaps.retain(|gap| {
            let keep = now - gap.since < grace_ms;
            if !keep {
                given_up.push(*gap);
            }
            keep
        });
        if self.gaps.len() > MAX_GAPS {
            let extra = self.gaps.len() - MAX_GAPS;
            given_up.extend(self.gaps.drain(..extra));
        }
        given_up
    }

    /// The open gaps as two lists (firsts, lasts), for one SQL query.
    pub fn gap_bounds(&self) -> (Vec<i64>, Vec<i64>) {
        self.gaps.iter().map(|g| (g.from, g.to)).unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_order_leave_no_gap() {
        let mut cursor = Cursor::at(10);
        assert!(cursor.see(11, 0));
        assert!(cursor.see(12, 0));
        assert!(!cursor.see(12, 0), "seen twice");
        assert_eq!(cursor, Cursor::at(12));
        assert_eq!(cursor.low_water(), 12);
    }

    #[test]
    fn a_late_commit_fills_its_gap_and_moves_the_low_water_mark() {
        let mut cursor = Cursor::at(10);
        // 11 and 12 were allocated first but 13 committed first.
        assert!(cursor.see(13, 100));
        assert_eq!(cursor.low_water(), 10);
        assert_eq!(cursor.gap_bounds(), (vec![11], vec![12]));
        assert!(cursor.see(12, 200));
        assert_eq!(
            cursor.gaps,
            vec![Gap {
                from: 11,
                to: 11,
                since: 100
            }]
        );
        assert!(cursor.see(11, 300));
        assert!(!cursor.see(11, 300));
        assert_eq!(cursor, Cursor::at(13));
    }

    #[test]
    fn an_id_inside_a_gap_splits_it() {
        let mut cursor = Cursor::at(0);
        cursor.see(10, 5);
        cursor.see(4, 6);
        assert_eq!(cursor.gap_bounds(), (vec![1, 5], vec![3, 9]));
        assert_eq!(cursor.low_water(), 0);
    }

    #[test]
    fn a_rolled_back_id_is_given_up_after_the_grace_only() {
        let mut cursor = Cursor::at(10);
        cursor.see(12, 1_000);
        assert!(cursor.expire(1_000 + 299_999, 300_000).is_empty());
        assert_eq!(cursor.low_water(), 10);
        let given_up = cursor.expire(1_000 + 300_000, 300_000);
        assert_eq!(
            given_up,
            vec![Gap {
                from: 11,
                to: 11,
                since: 1_000
            }]
        );
        assert_eq!(cursor.low_water(), 12);
        assert!(!cursor.see(11, 400_000), "too late: given up");
    }

    #[test]
    fn the_number_of_open_gaps_is_capped_oldest_first() {
        let mut cursor = Cursor::at(0);
        for i in 0..(MAX_GAPS as i64 + 5) {
            cursor.see(2 * i + 2, i);
        }
        let given_up = cursor.expire(0, i64::MAX);
        assert_eq!(given_up.len(), 5);
        assert_eq!(given_up[0].from, 1);
        assert_eq!(cursor.gaps.len(), MAX_GAPS);
    }
}
