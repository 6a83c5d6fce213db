//! The season model's CSV reader and the fit on whatever it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nemutator_core::season::{parse_series_csv, DefaultSeasonModel, SeasonModel};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(series) = parse_series_csv(text) {
            let _ = DefaultSeasonModel::default().fit(&series);
        }
    }
});
