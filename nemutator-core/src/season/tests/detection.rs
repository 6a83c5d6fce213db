//! Period detection: rhythms found, no rhythm invented, robustness, odd input.

use super::*;
use crate::season::{SeasonConfig, SeasonError, TestOutcome};

#[test]
fn finds_daily_period() {
    let p = mk_fit(&mk_daily(4, 0.5, 1));
    assert_eq!(p.periods(), &[DAY]);
}

#[test]
fn finds_daily_period_in_heavy_noise() {
    // Noise standard deviation 2 against a bump of height 4.
    let p = mk_fit(&mk_daily(6, 2.0, 2));
    assert_eq!(p.periods(), &[DAY]);
}

#[test]
fn finds_weekly_period() {
    let p = mk_fit(&mk_weekly(6, 0.5, 3));
    assert_eq!(p.periods(), &[WEEK]);
}

#[test]
fn finds_daily_and_weekly_periods() {
    let p = mk_fit(&mk_daily_weekly(6, 0.4, 4));
    assert_eq!(p.periods(), &[DAY, WEEK]);
}

#[test]
fn finds_twelve_hour_period_without_reporting_the_day() {
    let p = mk_fit(&mk_twelve_hours(3, 0.5, 5));
    assert_eq!(p.periods(), &[12 * HOUR]);
}

#[test]
fn finds_a_period_that_is_not_a_candidate() {
    let s = mk_series(6, 15 * 60, 0.5, 6, |t| {
        10.0 + 2.0 * (2.0 * std::f64::consts::PI * t as f64 / (5.0 * 3600.0)).sin()
    });
    let p = mk_fit(&s);
    assert_eq!(p.periods(), &[5 * HOUR]);
    assert!(p
        .tests()
        .iter()
        .any(|t| t.discovered && t.outcome == TestOutcome::Accepted));
}

#[test]
fn daily_harmonic_is_folded_into_the_day() {
    // A daily shape with a strong 12 h harmonic is one daily rhythm.
    let s = mk_series(4, 15 * 60, 0.3, 7, |t| {
        let x = 2.0 * std::f64::consts::PI * mk_hour(t) / 24.0;
        10.0 + 3.0 * x.sin() + 1.0 * (2.0 * x).cos()
    });
    assert_eq!(mk_fit(&s).periods(), &[DAY]);
}

#[test]
fn no_period_in_white_noise() {
    for seed in 10..15 {
        let p = mk_fit(&mk_white_noise(6, seed));
        assert!(p.periods().is_empty(), "seed {seed}: {:?}", p.periods());
        assert!(p.peak_windows().is_empty());
    }
}

#[test]
fn no_period_in_random_walks() {
    for seed in 20..25 {
        let p = mk_fit(&mk_random_walk(8, seed));
        assert!(p.periods().is_empty(), "seed {seed}: {:?}", p.periods());
    }
}

#[test]
fn no_period_in_shuffled_rhythm() {
    for seed in 30..33 {
        let s = mk_shuffled(&mk_daily_weekly(6, 0.4, 4), seed);
        let p = mk_fit(&s);
        assert!(p.periods().is_empty(), "seed {seed}: {:?}", p.periods());
    }
}

#[test]
fn no_period_in_a_trend_or_a_level_shift() {
    let trend = mk_series(4, 15 * 60, 0.5, 40, |t| (t - T0) as f64 / 3600.0);
    assert!(mk_fit(&trend).periods().is_empty());
    let step = mk_with_level_shift(&mk_white_noise(4, 41), T0 + 15 * DAY, 50.0);
    assert!(mk_fit(&step).periods().is_empty());
}

#[test]
fn rhythm_survives_gaps() {
    let s = mk_with_gaps(&mk_daily_weekly(6, 0.4, 50), 0.4, 51);
    assert_eq!(mk_fit(&s).periods(), &[DAY, WEEK]);
    // A three-day hole.
    let holed: Vec<_> = mk_daily(4, 0.4, 52)
        .into_iter()
        .filter(|s| !(T0 + 8 * DAY..T0 + 11 * DAY).contains(&s.0))
        .collect();
    assert_eq!(mk_fit(&holed).periods(), &[DAY]);
}

#[test]
fn rhythm_survives_outliers() {
    let clean = mk_fit(&mk_daily(4, 0.4, 60));
    let s = mk_with_outliers(&mk_daily(4, 0.4, 60), 0.01, 20.0, 61);
    let p = mk_fit(&s);
    assert_eq!(p.periods(), &[DAY]);
    // The spikes barely move the forecast.
    let noon = T0 + 28 * DAY + 13 * HOUR;
    assert!(
        (p.forecast(noon) - clean.forecast(noon)).abs() < 1.0,
        "{} vs {}",
        p.forecast(noon),
        clean.forecast(noon)
    );
}

#[test]
fn rhythm_survives_a_level_shift() {
    let s = mk_with_level_shift(&mk_daily(4, 0.4, 70), T0 + 13 * DAY + 5 * HOUR, 25.0);
    let p = mk_fit(&s);
    assert_eq!(p.periods(), &[DAY]);
    // The level follows the shift.
    assert!(p.level() > 30.0, "level {}", p.level());
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let s = mk_daily(3, 0.4, 80);
    let mut idx: Vec<usize> = (0..s.len()).collect();
    let mut rng = mk_noise(81);
    for i in (1..idx.len()).rev() {
        idx.swap(i, rng.below(i + 1));
    }
    let shuffled: Vec<Sample> = idx.iter().map(|i| s[*i]).collect();
    assert_eq!(mk_fit(&s), mk_fit(&shuffled));
    let mut doubled = s.clone();
    doubled.extend_from_slice(&s);
    assert_eq!(mk_fit(&doubled).periods(), &[DAY]);
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let model = DefaultSeasonModel::default();
    assert_eq!(model.fit(&[]), Err(SeasonError::EmptySeries));
    assert_eq!(
        model.fit(&[(T0, f64::NAN), (T0 + 60, f64::INFINITY)]),
        Err(SeasonError::EmptySeries)
    );
    let one = mk_fit(&[(T0, 5.0)]);
    assert!(one.periods().is_empty());
    assert_eq!(one.forecast(T0 + DAY), 5.0);
    let same_time = mk_fit(&[(T0, 1.0), (T0, 3.0)]);
    assert_eq!(same_time.forecast(T0), 2.0);
    let constant = mk_fit(&mk_series(3, 600, 0.0, 0, |_| 7.0));
    assert!(constant.periods().is_empty());
    assert!((constant.forecast(T0) - 7.0).abs() < 1e-9);
    let extremes = [
        (i64::MIN, 1.0),
        (0, 2.0),
        (i64::MAX, 3.0),
        (i64::MAX - 1, f64::MAX),
        (1, -f64::MAX),
    ];
    let p = mk_fit(&extremes);
    assert!(p.periods().is_empty());
    assert!(p.forecast(i64::MAX).is_finite() && p.forecast(i64::MIN).is_finite());
    let huge: Vec<_> = mk_daily(3, 0.4, 90)
        .into_iter()
        .map(|(t, v)| (t, v * 1e300))
        .collect();
    let p = mk_fit(&huge);
    assert_eq!(p.periods(), &[DAY]);
    assert!(p.forecast(T0 + 13 * HOUR).is_finite());
}

#[test]
fn too_short_for_two_cycles_reports_no_period() {
    // Nine days: enough for the day, not for the week.
    let s: Vec<_> = mk_daily_weekly(2, 0.3, 100)
        .into_iter()
        .filter(|s| s.0 < T0 + 9 * DAY)
        .collect();
    let p = mk_fit(&s);
    assert_eq!(p.periods(), &[DAY]);
    let week = p
        .tests()
        .iter()
        .find(|t| t.period == WEEK)
        .map(|t| t.outcome);
    assert_eq!(week, Some(TestOutcome::Untestable));
}

#[test]
fn config_is_validated() {
    let bad = [
        SeasonConfig {
            candidate_periods: vec![0],
            ..Default::default()
        },
        SeasonConfig {
            significance: 0.0,
            ..Default::default()
        },
        SeasonConfig {
            shuffles: 1,
            ..Default::default()
        },
        SeasonConfig {
            peak_quantile: 1.0,
            ..Default::default()
        },
        SeasonConfig {
            hysteresis: 0.7,
            ..Default::default()
        },
        SeasonConfig {
            lead: -1,
            ..Default::default()
        },
        SeasonConfig {
            half_life_cycles: f64::NAN,
            ..Default::default()
        },
    ];
    for config in bad {
        let r = DefaultSeasonModel::new(config.clone()).fit(&mk_daily(1, 0.1, 1));
        assert!(
            matches!(r, Err(SeasonError::InvalidConfig(_))),
            "{config:?} gave {r:?}"
        );
    }
    assert_eq!(SeasonConfig::default().validate(), Ok(()));
}

#[test]
fn config_deserialises_with_defaults() {
    let c: SeasonConfig = serde_json::from_str(r#"{"lead": 7200, "peak_scope": "longest-period"}"#)
        .unwrap_or_default();
    assert_eq!(c.lead, 7200);
    assert_eq!(c.peak_scope, crate::season::PeakScope::LongestPeriod);
    assert_eq!(
        c.candidate_periods,
        SeasonConfig::default().candidate_periods
    );
    assert!(serde_json::from_str::<SeasonConfig>(r#"{"leed": 1}"#).is_err());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any series, however odd, fits without panicking and forecasts finite values.
        #[test]
        fn fit_never_panics(points in prop::collection::vec((any::<i64>(), any::<f64>()), 0..200),
                            dense in prop::collection::vec((0i64..2_000_000, -1e6f64..1e6), 0..400)) {
            for s in [points, dense] {
                if let Ok(p) = DefaultSeasonModel::default().fit(&s) {
                    for (t, _) in s.iter().take(20) {
                        prop_assert!(p.forecast(*t).is_finite());
                        let _ = p.season_at(*t);
                    }
                    let _ = p.predict(0, 100_000, 977);
                }
            }
        }
    }
}
