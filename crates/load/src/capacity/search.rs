//! Which rate to offer next: doubling from the start rate until a step breaks, then
//! bisecting the bracket until it is within the tolerance. Pure, so it is tested alone.

/// The bracket found so far: the highest rate that held and the lowest that broke.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bracket {
    /// The highest rate that held the SLO.
    pub held: Option<f64>,
    /// The lowest rate that broke it.
    pub broke: Option<f64>,
}

/// What the search does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Offer this rate.
    Offer(f64),
    /// The bracket is within the tolerance.
    Found,
    /// The first (lowest) step broke the SLO.
    LowestBroke,
}

/// Growth factor while no step has broken: a step never offers more than twice the last
/// rate that held, so an overload is never more than double what the service just took.
pub const GROWTH: f64 = 2.0;

impl Bracket {
    /// Records that `rate` held (`true`) or broke.
    pub fn record(&mut self, rate: f64, held: bool) {
        if held {
            self.held = Some(self.held.map_or(rate, |h| h.max(rate)));
        } else {
            self.broke = Some(self.broke.map_or(rate, |b| b.min(rate)));
        }
    }

    /// The next step from `start` with relative `tolerance` (0.05 for 5 %).
    pub fn next(&self, start: f64, tolerance: f64) -> Next {
        match (self.held, self.broke) {
            (None, None) => Next::Offer(start),
            (None, Some(_)) => Next::LowestBroke,
            (Some(held), None) => Next::Offer(held * GROWTH),
            (Some(held), Some(broke)) if broke <= held * (1.0 + tolerance) => Next::Found,
            (Some(held), Some(broke)) => Next::Offer((held + broke) / 2.0),
        }
    }

    /// Whether the bracket is within `tolerance`.
    pub fn within(&self, tolerance: f64) -> bool {
        crate::report::capacity::within([self.held, self.broke], tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a service that holds every rate up to `truth`.
    fn search(truth: f64, start: f64, tolerance: f64) -> (Bracket, Vec<f64>, Next) {
        let mut bracket = Bracket::default();
        let mut offered = Vec::new();
        loop {
            match bracket.next(start, tolerance) {
                Next::Offer(rate) => {
                    offered.push(rate);
                    bracket.record(rate, rate <= truth);
                }
                end => return (bracket, offered, end),
            }
        }
    }

    #[test]
    fn doubles_then_bisects_to_the_tolerance() {
        let (bracket, offered, end) = search(1000.0, 50.0, 0.05);
        assert_eq!(end, Next::Found);
        assert_eq!(&offered[..6], &[50.0, 100.0, 200.0, 400.0, 800.0, 1600.0]);
        let (held, broke) = (bracket.held.unwrap(), bracket.broke.unwrap());
        assert!(held <= 1000.0 && broke > 1000.0, "{bracket:?}");
        assert!(broke <= held * 1.05, "{bracket:?}");
        assert_eq!(offered.len(), 10, "{offered:?}");
    }

    #[test]
    fn never_offers_more_than_twice_the_last_rate_that_held() {
        let (_, offered, _) = search(333.0, 10.0, 0.01);
        let mut held = 0.0_f64;
        for rate in offered {
            assert!(held == 0.0 || rate <= 2.0 * held, "{rate} after {held}");
            if rate <= 333.0 {
                held = held.max(rate);
            }
        }
    }

    #[test]
    fn a_broken_first_step_ends_the_search() {
        let (bracket, offered, end) = search(10.0, 50.0, 0.05);
        assert_eq!(end, Next::LowestBroke);
        assert_eq!(offered, [50.0]);
        assert_eq!(bracket.held, None);
    }
}
