//! Fuzzes the search-parameter value parser across every parameter type.
#![no_main]

use fhirguard::sanitize::parse_value;
use libfuzzer_sys::fuzz_target;

/// (resource type, parameter) pairs covering each value type and the control parameters.
const PARAMS: [(&str, &str); 16] = [
    ("Observation", "code"),
    ("Observation", "patient"),
    ("Observation", "subject"),
    ("Observation", "date"),
    ("Observation", "value-quantity"),
    ("Patient", "family"),
    ("Questionnaire", "url"),
    ("Observation", "_id"),
    ("Observation", "_count"),
    ("Observation", "_sort"),
    ("Observation", "_include"),
    ("Observation", "_revinclude"),
    ("Observation", "_summary"),
    ("Observation", "_elements"),
    ("Observation", "_total"),
    ("Observation", "_lastUpdated"),
];
const MODIFIERS: [Option<&str>; 8] = [
    None,
    Some("missing"),
    Some("not"),
    Some("text"),
    Some("of-type"),
    Some("in"),
    Some("identifier"),
    Some("Patient"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let (t, name) = PARAMS[usize::from(sel & 0x0f) % PARAMS.len()];
    let modifier = MODIFIERS[usize::from(sel >> 4) % MODIFIERS.len()];
    let _ = parse_value(t, name, modifier, raw);
});
