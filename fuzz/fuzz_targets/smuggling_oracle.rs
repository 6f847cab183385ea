#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starttls_fuzz_logic::smuggling::smuggling_oracle(data));
