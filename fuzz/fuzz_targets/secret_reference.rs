//! Secret references (`vault:PATH#KEY[#VERSION]`, from pod env values and
//! annotations): no panic; what parses formats and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nemutator_core::fuzzing::secret_reference(data);
});
