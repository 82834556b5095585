//! Think-times: the pause before a request, drawn as JMeter's timers draw it (Taurus's
//! `think-time` formulas), for the program interpreter and the plain users' fast path.

use std::time::Duration;

use crate::plan::{Request, ThinkTime};
use crate::variables::{Random, UserVariables};

/// The pause before `request`: its think-time, drawn from its distribution.
pub fn think_pause(request: &Request, variables: &mut UserVariables) -> Duration {
    draw(request.think, request.think_time, variables.random())
}

/// A think-time drawn as JMeter's timers draw it (Taurus `think-time` formulas).
pub fn draw(think: ThinkTime, constant: Duration, random: &mut Random) -> Duration {
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let drawn_ms = match think {
        ThinkTime::Constant => return constant,
        ThinkTime::Uniform { mean, spread } => {
            (millis(mean) - millis(spread) + random.unit() * 2.0 * millis(spread)).abs()
        }
        ThinkTime::Gaussian { mean, deviation } => {
            random.normal(millis(mean), millis(deviation)).abs()
        }
        ThinkTime::Poisson { mean, offset } => {
            let lambda = (millis(mean) - millis(offset)).round().max(0.0);
            millis(offset) + random.poisson(lambda)
        }
    };
    Duration::from_secs_f64((drawn_ms / 1000.0).clamp(0.0, crate::plan::MAX_DURATION.as_secs_f64()))
}

/// The pause before `request` on the fast path: the constant think-time unless it has a
/// distribution.
pub fn think_pause_fast(request: &Request, random: &mut Random) -> Duration {
    if request.think == ThinkTime::Constant {
        return request.think_time;
    }
    draw(request.think, request.think_time, random)
}

/// A random source for the fast path's think-times.
pub fn user_random(user: u32) -> Random {
    Random::seeded(u64::from(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(think: ThinkTime) -> (f64, f64) {
        let mut random = Random::seeded(7);
        let draws: Vec<f64> = (0..20_000)
            .map(|_| draw(think, Duration::ZERO, &mut random).as_secs_f64() * 1000.0)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn distributions_have_taurus_means_and_spreads() {
        let ms = Duration::from_millis;
        let (mean, sd) = stats(ThinkTime::Uniform {
            mean: ms(1000),
            spread: ms(500),
        });
        assert!(
            (mean - 1000.0).abs() < 10.0 && (sd - 288.7).abs() < 10.0,
            "{mean} {sd}"
        );
        let (mean, sd) = stats(ThinkTime::Gaussian {
            mean: ms(1000),
            deviation: ms(100),
        });
        assert!(
            (mean - 1000.0).abs() < 5.0 && (sd - 100.0).abs() < 5.0,
            "{mean} {sd}"
        );
        let (mean, sd) = stats(ThinkTime::Poisson {
            mean: ms(1000),
            offset: ms(200),
        });
        assert!(
            (mean - 1000.0).abs() < 2.0 && (sd - 28.3).abs() < 2.0,
            "{mean} {sd}"
        );
        let (mean, _) = stats(ThinkTime::Poisson {
            mean: ms(20),
            offset: ms(10),
        });
        assert!((mean - 20.0).abs() < 0.5, "{mean}");
    }
}
