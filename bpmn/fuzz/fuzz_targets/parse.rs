//! Any bytes: `ringflow_bpmn::parse` must return, never panic, and every error it reports
//! must carry a position and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = ringflow_bpmn::parse(data) {
        assert!(!error.diagnostics.is_empty());
        for diagnostic in &error.diagnostics {
            assert!(diagnostic.position.line >= 1);
            assert!(!diagnostic.message.is_empty());
        }
    }
});
