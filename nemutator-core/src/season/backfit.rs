//! The final additive profile: backfitting the accepted periods with
//! recency weights, and choosing the weighting by back-testing.

use super::config::SeasonConfig;
use super::prep::{self, Grid};
use super::profile::Component;

/// Most phase bins of a fitted component.
const MAX_COMPONENT_BINS: i64 = 4032;
/// Half-lives (in cycles of the longest period) the back-test chooses from.
const HALF_LIVES: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 16.0];
/// Half-life (cycles) when the data is too short to back-test.
const SHORT_HALF_LIFE: f64 = 4.0;
/// Level window of a series without rhythm, unless configured.
const NO_RHYTHM_LEVEL_WINDOW: i64 = 7 * 86_400;
/// Backfitting rounds of the final profile.
const BACKFIT_ROUNDS: usize = 3;

/// Whole grid slots in `period` (at least 1).
pub(super) fn slots(period: i64, step: i64) -> usize {
    usize::try_from((period as i128 + step as i128 / 2) / (step.max(1) as i128))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Phase bins of a fitted component of `period`.
pub(super) fn component_bins(period: i64, step: i64) -> usize {
    (period / step.max(1)).clamp(2, MAX_COMPONENT_BINS) as usize
}

/// Weighted mean of the observed `values` per phase bin of `period`, empty
/// bins interpolated around the circle, centred on zero.
/// `bin_of[i]` is the phase bin of slot `i`.
pub(super) fn estimate(
    values: &[f64],
    observed: &[bool],
    bin_of: &[usize],
    period: i64,
    bins: usize,
    weights: Option<&[f64]>,
) -> Component {
    let mut sums = vec![0.0; bins];
    let mut wsum = vec![0.0; bins];
    for (i, (v, b)) in values.iter().zip(bin_of).enumerate() {
        if !observed.get(i).copied().unwrap_or(false) || *b >= bins {
            continue;
        }
        let w = weights.and_then(|w| w.get(i)).copied().unwrap_or(1.0);
        sums[*b] += w * v;
        wsum[*b] += w;
    }
    let filled: Vec<usize> = (0..bins).filter(|b| wsum[*b] > 0.0).collect();
    let mut out: Vec<f64> = (0..bins)
        .map(|b| {
            if wsum[b] > 0.0 {
                sums[b] / wsum[b]
            } else {
                0.0
            }
        })
        .collect();
    if !filled.is_empty() && filled.len() < bins {
        for b in 0..bins {
            if wsum[b] > 0.0 {
                continue;
            }
            // Nearest filled bins before and after, around the circle.
            let prev = filled
                .iter()
                .rev()
                .find(|f| **f < b)
                .or(filled.last())
                .copied()
                .unwrap_or(b);
            let next = filled
                .iter()
                .find(|f| **f > b)
                .or(filled.first())
                .copied()
                .unwrap_or(b);
            let d_prev = (b + bins - prev) % bins;
            let d_next = (next + bins - b) % bins;
            let span = (d_prev + d_next).max(1) as f64;
            out[b] = out[prev] * (d_next as f64 / span) + out[next] * (d_prev as f64 / span);
        }
    }
    let mean = out.iter().sum::<f64>() / bins.max(1) as f64;
    out.iter_mut().for_each(|v| *v -= mean);
    Component {
        period,
        values: out,
    }
}

/// Backfits all accepted periods together (trend = moving average over the
/// longest period, recency-weighted bin means) and returns the components
/// and the level, both in grid units.
/// `idx[j][i]` is the phase bin of slot `i` in `periods[j]`.
pub(super) fn refit(
    grid: &Grid,
    periods: &[i64],
    idx: &[&[usize]],
    choice: Weighting,
) -> (Vec<Component>, f64) {
    let n = grid.values.len();
    let x = &grid.values;
    let longest = periods.iter().copied().max().unwrap_or(0);
    let t_last = grid.time(n.saturating_sub(1));
    let window = choice.level_window.max(grid.step);
    let level_of = |deseason: &[f64]| {
        let (mut s, mut k) = (0.0, 0.0);
        for i in (0..n).rev() {
            if (t_last as i128 - grid.time(i) as i128) >= window as i128 {
                break;
            }
            if grid.observed[i] {
                s += deseason[i];
                k += 1.0;
            }
        }
        if k > 0.0 {
            s / k
        } else {
            0.0
        }
    };
    if periods.is_empty() {
        return (Vec::new(), level_of(x));
    }
    let half_life = choice.half_life_cycles * longest as f64;
    // Recency weights 0.5^(age / half-life), built backwards by one ratio per slot.
    let ratio = if half_life > 0.0 {
        0.5_f64.powf(grid.step as f64 / half_life)
    } else {
        1.0
    };
    let mut weights = vec![1.0; n];
    for i in (0..n.saturating_sub(1)).rev() {
        weights[i] = weights[i + 1] * ratio;
    }
    let mut comps: Vec<Component> = periods
        .iter()
        .map(|p| Component {
            period: *p,
            values: vec![0.0; component_bins(*p, grid.step)],
        })
        .collect();
    let contribution =
        |c: &Component, idx: &[usize], i: usize| c.values.get(idx[i]).copied().unwrap_or(0.0);
    let mut seasonal = vec![0.0; n];
    for _ in 0..BACKFIT_ROUNDS {
        let deseason: Vec<f64> = x.iter().zip(&seasonal).map(|(v, s)| v - s).collect();
        let trend = prep::moving_average(&deseason, slots(longest, grid.step));
        for j in 0..comps.len() {
            let partial: Vec<f64> = (0..n)
                .map(|i| x[i] - trend[i] - seasonal[i] + contribution(&comps[j], idx[j], i))
                .collect();
            let fresh = estimate(
                &partial,
                &grid.observed,
                idx[j],
                comps[j].period,
                comps[j].values.len(),
                Some(&weights),
            );
            for (i, s) in seasonal.iter_mut().enumerate() {
                *s += contribution(&fresh, idx[j], i) - contribution(&comps[j], idx[j], i);
            }
            comps[j] = fresh;
        }
    }
    let deseason: Vec<f64> = x.iter().zip(&seasonal).map(|(v, s)| v - s).collect();
    (comps, level_of(&deseason))
}

/// How history is weighted in the final fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Weighting {
    /// Half-life of the recency weights in cycles of the longest period (0: equal weights).
    pub half_life_cycles: f64,
    /// The level is the deseasonalised mean over this many last seconds.
    pub level_window: i64,
}

/// The back-test's outcome: the weighting, and, when a cycle could be held
/// out, the components fitted without it with that weighting and the first
/// held-out slot (the peak windows are back-tested on them).
pub(super) struct BackTest {
    /// The chosen weighting.
    pub weighting: Weighting,
    /// Components fitted on the slots before `.1`, and that slot.
    pub held_out: Option<(Vec<Component>, usize)>,
}

/// The configured weighting, with the automatic parts (0 in the config)
/// chosen by back-testing: refit without the last cycle of the longest
/// period, forecast it, keep the choice with the least mean absolute error.
/// Half-lives of 0.5, 1, 2, 4 and 16 cycles and level windows of the
/// shortest and the longest period are tried. Data too short to hold a cycle
/// out gets 4 cycles and the longest period (or what is configured).
pub(super) fn choose_weighting(
    grid: &Grid,
    periods: &[i64],
    idx: &[&[usize]],
    config: &SeasonConfig,
) -> BackTest {
    let (Some(shortest), Some(longest)) =
        (periods.iter().copied().min(), periods.iter().copied().max())
    else {
        let window = if config.level_window > 0 {
            config.level_window
        } else {
            NO_RHYTHM_LEVEL_WINDOW
        };
        return BackTest {
            weighting: Weighting {
                half_life_cycles: 0.0,
                level_window: window,
            },
            held_out: None,
        };
    };
    let half_lives: Vec<f64> = if config.half_life_cycles > 0.0 {
        vec![config.half_life_cycles]
    } else {
        HALF_LIVES.to_vec()
    };
    let windows: Vec<i64> = if config.level_window > 0 {
        vec![config.level_window]
    } else {
        vec![shortest, longest]
    };
    let fallback = Weighting {
        half_life_cycles: if config.half_life_cycles > 0.0 {
            config.half_life_cycles
        } else {
            SHORT_HALF_LIFE
        },
        level_window: if config.level_window > 0 {
            config.level_window
        } else {
            longest
        },
    };
    let n = grid.values.len();
    let hold = slots(longest, grid.step);
    // A single configured choice is still fitted once: the peak windows
    // are back-tested on it.
    if (n as f64) < (config.min_cycles + 1.0) * hold as f64 || hold >= n {
        return BackTest {
            weighting: fallback,
            held_out: None,
        };
    }
    let train = Grid {
        t0: grid.t0,
        step: grid.step,
        values: grid.values[..n - hold].to_vec(),
        observed: grid.observed[..n - hold].to_vec(),
        scale: grid.scale,
    };
    let train_idx: Vec<&[usize]> = idx.iter().map(|v| &v[..(n - hold).min(v.len())]).collect();
    let mut best = (f64::INFINITY, fallback, None);
    for &half_life_cycles in &half_lives {
        for &level_window in &windows {
            let choice = Weighting {
                half_life_cycles,
                level_window,
            };
            let (comps, level) = refit(&train, periods, &train_idx, choice);
            let (mut err, mut k) = (0.0, 0.0);
            for i in n - hold..n {
                if grid.observed[i] {
                    let t = grid.time(i);
                    let f = level + comps.iter().map(|c| c.value_at(t)).sum::<f64>();
                    err += (f - grid.values[i]).abs();
                    k += 1.0;
                }
            }
            if k > 0.0 && err / k < best.0 {
                best = (err / k, choice, Some(comps));
            }
        }
    }
    BackTest {
        weighting: best.1,
        held_out: best.2.map(|c| (c, n - hold)),
    }
}
