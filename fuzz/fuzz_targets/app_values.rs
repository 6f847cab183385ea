#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starttls_fuzz_logic::appvalues::app_values(data));
