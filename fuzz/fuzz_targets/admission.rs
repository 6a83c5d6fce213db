//! AdmissionReview decoding + mutation: any body must give a response or a
//! one-line error, never a panic; a patch, when given, must apply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nemutator_core::fuzzing::admission(data);
});
