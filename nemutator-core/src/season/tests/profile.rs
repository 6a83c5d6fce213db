//! Peak windows, lead time, forecasts, splitting and persistence.

use super::*;
use crate::season::{PeakWindow, Prediction, Season, SeasonConfig};

#[test]
fn peak_window_covers_business_hours_each_day() {
    let p = mk_fit(&mk_daily(4, 0.3, 200));
    assert_eq!(p.cycle(), DAY);
    let w = p.peak_windows();
    assert_eq!(w.len(), 1, "{w:?}");
    // The bump peaks at 13:00; the top 30 % of the day is about 10:00-16:00.
    assert!(w[0].start >= 9 * HOUR && w[0].start <= 11 * HOUR, "{w:?}");
    assert!(w[0].end >= 15 * HOUR && w[0].end <= 17 * HOUR, "{w:?}");
    let day = T0 + 30 * DAY;
    assert!(p.is_peak(day + 13 * HOUR));
    assert!(!p.is_peak(day + 3 * HOUR));
}

#[test]
fn peak_windows_do_not_flap() {
    // Heavy noise: still one contiguous window per day, none shorter than min_peak.
    for seed in 210..214 {
        let p = mk_fit(&mk_daily_weekly(6, 1.0, seed));
        let config = SeasonConfig::default();
        let windows = p.peak_windows();
        assert!(!windows.is_empty());
        assert!(
            windows.iter().all(|w| w.end - w.start >= config.min_peak),
            "{windows:?}"
        );
        // At most one window starts on each weekday.
        let mut per_day = [0; 7];
        for w in &windows {
            per_day[(w.start / DAY) as usize] += 1;
        }
        assert!(per_day.iter().all(|n| *n <= 1), "seed {seed}: {windows:?}");
        // Season changes at most twice a day over a week at 5-minute resolution.
        let changes = (0..WEEK / 300)
            .map(|i| p.is_peak(T0 + i * 300))
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] != w[1])
            .count();
        assert!(changes <= 14, "seed {seed}: {changes} changes");
    }
}

#[test]
fn weekly_scope_leaves_quiet_days_off_peak() {
    let s = mk_daily_weekly(6, 0.3, 220);
    let longest = DefaultSeasonModel::new(SeasonConfig {
        peak_scope: crate::season::PeakScope::LongestPeriod,
        ..Default::default()
    });
    let p = longest.fit(&s).unwrap_or_else(|e| panic!("{e}"));
    let sunday_noon = T0 + 6 * DAY + 13 * HOUR;
    let monday_noon = T0 + 13 * HOUR;
    assert!(p.is_peak(monday_noon));
    assert!(!p.is_peak(sunday_noon));
    // The default scope gives Sunday its own (smaller) peak.
    assert!(mk_fit(&s).is_peak(sunday_noon));
}

#[test]
fn lead_time_switches_to_peak_before_the_window() {
    let p = mk_fit(&mk_daily(4, 0.3, 230));
    let w = p.peak_windows()[0];
    let day = T0 + 40 * DAY;
    let start = day + w.start;
    assert_eq!(p.lead(), HOUR);
    assert!(!p.is_peak(start - 30 * 60));
    assert_eq!(p.season_at(start - 30 * 60), Season::Peak);
    assert_eq!(p.season_at(start - HOUR), Season::Peak);
    assert_eq!(p.season_at(start - HOUR - 60), Season::OffPeak);
    assert_eq!(p.season_at(day + w.end), Season::OffPeak);
    let no_lead = p.clone().with_lead(0);
    assert_eq!(no_lead.season_at(start - 60), Season::OffPeak);
    assert_eq!(no_lead.season_at(start), Season::Peak);
}

#[test]
fn lead_time_wraps_around_the_cycle() {
    let mut p = SeasonProfile::flat(1.0, 2 * HOUR);
    p.cycle = DAY;
    p.periods = vec![DAY];
    p.peak_windows = vec![PeakWindow {
        period: DAY,
        start: HOUR,
        end: 3 * HOUR,
    }];
    // 23:30 the day before is 1.5 h ahead of the 01:00 start.
    assert_eq!(p.season_at(T0 - 30 * 60), Season::Peak);
    assert_eq!(p.season_at(T0 - 2 * HOUR), Season::OffPeak);
}

#[test]
fn no_rhythm_means_one_season_and_a_flat_forecast() {
    let p = mk_fit(&mk_white_noise(4, 240));
    let preds = p.predict(T0, T0 + WEEK, HOUR);
    assert!(preds.iter().all(|x| x.season == Season::OffPeak));
    assert!(preds.iter().all(|x| x.forecast == p.level()));
    assert!((p.level() - 10.0).abs() < 0.3, "level {}", p.level());
}

#[test]
fn forecast_follows_the_rhythm() {
    let p = mk_fit(&mk_daily(4, 0.3, 250));
    let day = T0 + 35 * DAY;
    assert!(
        (p.forecast(day + 13 * HOUR) - 14.0).abs() < 0.5,
        "{}",
        p.forecast(day + 13 * HOUR)
    );
    assert!(
        (p.forecast(day + 2 * HOUR) - 10.0).abs() < 0.5,
        "{}",
        p.forecast(day + 2 * HOUR)
    );
}

#[test]
fn predict_steps_are_inclusive_and_bounded() {
    let p = mk_fit(&mk_daily(2, 0.3, 260));
    let preds = p.predict(T0, T0 + DAY, HOUR);
    assert_eq!(preds.len(), 25);
    assert_eq!(preds[0].timestamp, T0);
    assert_eq!(preds[24].timestamp, T0 + DAY);
    assert!(p.predict(T0, T0 + DAY, 0).is_empty());
    assert!(p.predict(T0, T0 - 1, 60).is_empty());
    assert_eq!(
        p.predict(i64::MIN, i64::MAX, 1).len(),
        crate::season::MAX_PREDICTIONS
    );
    assert_eq!(p.predict(i64::MAX - 10, i64::MAX, 3).len(), 4);
}

#[test]
fn split_by_season_uses_windows_without_lead() {
    let s = mk_daily(3, 0.3, 270);
    let p = mk_fit(&s);
    let (peak, off) = p.split_by_season(&s);
    assert_eq!(peak.len() + off.len(), s.len());
    assert!(peak.iter().all(|x| p.is_peak(x.0)));
    assert!(off.iter().all(|x| !p.is_peak(x.0)));
    // Just before a window: peak season (lead), but off-peak history.
    let w = p.peak_windows()[0];
    let before = T0 + DAY + w.start - 15 * 60;
    assert_eq!(p.season_at(before), Season::Peak);
    assert!(off.iter().any(|x| x.0 == before));
    // Peak history is the busy part of the day.
    let mean = |v: &[Sample]| v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64;
    assert!(mean(&peak) > mean(&off) + 2.0);
    let (p2, o2) = p.split_by_season(&[(T0, f64::NAN)]);
    assert!(p2.is_empty() && o2.is_empty());
}

#[test]
fn profile_survives_a_round_trip() {
    let p = mk_fit(&mk_daily_weekly(3, 0.4, 280));
    let json = serde_json::to_string(&p).unwrap_or_default();
    let back: SeasonProfile = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    // serde_json may round the last bit of a float: compare within 1e-9.
    assert_eq!(back.periods(), p.periods());
    assert_eq!(back.peak_windows(), p.peak_windows());
    assert_eq!(back.lead(), p.lead());
    for (a, b) in back
        .predict(T0, T0 + WEEK, 1800)
        .iter()
        .zip(&p.predict(T0, T0 + WEEK, 1800))
    {
        assert_eq!((a.timestamp, a.season), (b.timestamp, b.season));
        assert!((a.forecast - b.forecast).abs() < 1e-9 * b.forecast.abs().max(1.0));
    }
    let v = serde_json::to_value(&back).unwrap_or_default();
    for key in [
        "version",
        "periods",
        "components",
        "level",
        "cycle",
        "peak_windows",
        "lead",
        "tests",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
}

#[test]
fn malformed_stored_profile_does_not_panic() {
    let json = r#"{"version":1,"periods":[0],"components":[{"period":0,"values":[]},{"period":-5,"values":[1.0]},{"period":86400,"values":[]}],
        "level":1.0,"cycle":-3,"peak_windows":[{"period":0,"start":5,"end":1}],"lead":-10,"step":0,
        "fitted_from":0,"fitted_to":0,"half_life_cycles":0.0,"level_window":0,"tests":[]}"#;
    let p: SeasonProfile = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.forecast(T0), 1.0);
    assert_eq!(p.season_at(T0), Season::OffPeak);
    assert_eq!(p.predict(T0, T0 + 10, 5).len(), 3);
}

#[test]
fn prediction_serialises_as_documented() {
    let p = Prediction {
        timestamp: 1_700_000_000,
        season: Season::OffPeak,
        forecast: 1.5,
    };
    assert_eq!(
        serde_json::to_string(&p).unwrap_or_default(),
        r#"{"timestamp":1700000000,"season":"off-peak","forecast":1.5}"#
    );
    assert_eq!(Season::Peak.to_string(), "peak");
    assert_eq!(Season::OffPeak.as_str(), "off-peak");
    assert_eq!("off-peak".parse::<Season>(), Ok(Season::OffPeak));
    assert!("busy".parse::<Season>().is_err());
}

#[test]
fn peak_window_labels() {
    let w = PeakWindow {
        period: WEEK,
        start: 8 * HOUR,
        end: 18 * HOUR + 30 * 60,
    };
    assert_eq!(w.label(), "Mon 08:00–Mon 18:30");
    let d = PeakWindow {
        period: DAY,
        start: 22 * HOUR,
        end: DAY,
    };
    assert_eq!(d.label(), "22:00–24:00");
}
