//! CSV input, JSON/CSV reports and the heat map.

use super::*;
use crate::season::{
    heatmap_html, heatmap_svg, parse_series_csv, predictions_csv, season_report_json, Prediction,
    Season, SeasonError,
};

fn mk_csv_error(text: &str) -> (usize, String) {
    match parse_series_csv(text) {
        Err(SeasonError::Csv { line, message }) => (line, message),
        other => panic!("expected a CSV error, got {other:?}"),
    }
}

#[test]
fn csv_reads_samples() {
    let s = parse_series_csv("timestamp,value\n1700000000,1.5\r\n\n1700000060, 2 \n1700000120.9,NaN\n1700000180.7,-3e2\n");
    assert_eq!(
        s,
        Ok(vec![
            (1_700_000_000, 1.5),
            (1_700_000_060, 2.0),
            (1_700_000_180, -300.0)
        ])
    );
    assert_eq!(parse_series_csv("\u{feff}Timestamp, Value\n"), Ok(vec![]));
}

#[test]
fn csv_errors_name_the_line() {
    let (line, msg) = mk_csv_error("");
    assert_eq!(line, 1);
    assert!(msg.contains("header"), "{msg}");
    let (line, msg) = mk_csv_error("time,value\n1,2\n");
    assert_eq!(line, 1);
    assert!(msg.contains("expected the header"), "{msg}");
    let (line, msg) = mk_csv_error("timestamp,value\n1,2\n2,abc\n");
    assert_eq!((line, msg.as_str()), (3, "bad value \"abc\""));
    let (line, msg) = mk_csv_error("timestamp,value\n\n1,2\nnoon,2\n");
    assert_eq!((line, msg.as_str()), (4, "bad timestamp \"noon\""));
    let (line, msg) = mk_csv_error("timestamp,value\n1,2,3\n");
    assert_eq!(line, 2);
    assert!(msg.contains("2 fields"), "{msg}");
    let (line, msg) = mk_csv_error("timestamp,value\n1,inf\n");
    assert_eq!(line, 2);
    assert!(msg.contains("not finite"), "{msg}");
    let (line, _) = mk_csv_error("timestamp,value\n1e300,1\n");
    assert_eq!(line, 2);
    let e = SeasonError::Csv {
        line: 7,
        message: "bad value \"x\"".into(),
    };
    assert_eq!(e.to_string(), "line 7: bad value \"x\"");
    // Long garbage is cut short in the message, which stays on one line.
    let (_, msg) = mk_csv_error(&format!("timestamp,value\n1,{}\n", "x".repeat(500)));
    assert!(msg.chars().count() < 80 && !msg.contains('\n'), "{msg}");
}

#[test]
fn json_report_has_the_documented_shape() {
    let p = mk_fit(&mk_daily(3, 0.3, 300));
    let preds = p.predict(T0, T0 + 2 * HOUR, HOUR);
    let v = season_report_json(&p, &preds);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["peak_windows", "periods", "predictions"]);
    assert_eq!(v["periods"], serde_json::json!([86400]));
    let w = &v["peak_windows"][0];
    assert_eq!(w["period"], 86400);
    assert!(w["start"].is_i64() && w["end"].is_i64());
    assert_eq!(v["predictions"].as_array().map(Vec::len), Some(3));
    let first = &v["predictions"][0];
    assert_eq!(first["timestamp"], T0);
    assert_eq!(first["season"], "off-peak");
    assert!(first["forecast"].is_f64());
    let mut pk: Vec<&str> = first
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    pk.sort_unstable();
    assert_eq!(pk, ["forecast", "season", "timestamp"]);
}

#[test]
fn json_report_without_rhythm_has_empty_periods() {
    let p = mk_fit(&mk_white_noise(3, 310));
    let v = season_report_json(&p, &[]);
    assert_eq!(
        v,
        serde_json::json!({"periods": [], "peak_windows": [], "predictions": []})
    );
}

#[test]
fn predictions_csv_is_exact() {
    let preds = [
        Prediction {
            timestamp: 10,
            season: Season::Peak,
            forecast: 2.5,
        },
        Prediction {
            timestamp: 20,
            season: Season::OffPeak,
            forecast: -1.0,
        },
    ];
    assert_eq!(
        predictions_csv(&preds),
        "timestamp,season,forecast\n10,peak,2.5\n20,off-peak,-1\n"
    );
    assert_eq!(predictions_csv(&[]), "timestamp,season,forecast\n");
}

#[test]
fn heatmap_is_self_contained_and_marks_peaks() {
    let s = mk_daily_weekly(2, 0.3, 320);
    let p = mk_fit(&s);
    let html = heatmap_html(&p, &s);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    // The only URL is the SVG namespace.
    assert_eq!(html.matches("http").count(), 1);
    // 7 x 24 cells and one outline per weekday's window (two periods, 7 days).
    let svg = heatmap_svg(&p, &s);
    assert_eq!(svg.matches("<title>").count(), 7 * 24);
    let outlines = svg.matches(r##"fill="none" stroke="#1f4fd8""##).count();
    assert_eq!(
        outlines,
        7 + 1,
        "{outlines} outlines (7 windows + the legend)"
    );
    assert!(html.contains("Mon "));
    // Without rhythm: no outline but the legend's.
    let flat = mk_fit(&mk_white_noise(2, 321));
    assert_eq!(
        heatmap_svg(&flat, &[])
            .matches(r##"stroke="#1f4fd8""##)
            .count(),
        1
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The CSV reader answers every input with samples or a one-line error.
        #[test]
        fn csv_never_panics(text in ".{0,300}", rows in prop::collection::vec(("[-0-9.e]{0,12}", "[-0-9.eNaif]{0,12}"), 0..20)) {
            let doc = format!("timestamp,value\n{}", rows.iter().map(|(a, b)| format!("{a},{b}\n")).collect::<String>());
            for input in [text, doc] {
                if let Err(e) = parse_series_csv(&input) {
                    prop_assert!(!e.to_string().contains('\n'));
                }
            }
        }
    }
}
