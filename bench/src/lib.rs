//! Inputs shared by the benchmarks (realistic, deterministic, about 1 MiB)
//! and a counting allocator ([`alloc`]).

pub mod alloc;

/// A pipelined SMTP client stream: complete transactions of EHLO, MAIL with
/// parameters, a few RCPTs, DATA-less RSET/NOOP, about 32 octets a command on
/// average, repeated to about 1 MiB. Returns the bytes and the command count.
pub fn smtp_commands() -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(1 << 20);
    let mut n = 0;
    let mut i = 0u32;
    while out.len() < (1 << 20) {
        let lines = [
            format!("EHLO client{}.example.org\r\n", i % 97),
            format!(
                "MAIL FROM:<sender{}@example.org> SIZE={} BODY=8BITMIME\r\n",
                i % 13,
                1000 + i
            ),
            format!("RCPT TO:<user{}@example.net>\r\n", i % 31),
            format!(
                "RCPT TO:<\"quoted.local\"@[192.0.2.{}]> NOTIFY=SUCCESS,FAILURE\r\n",
                i % 250
            ),
            "RSET\r\n".to_string(),
            "NOOP\r\n".to_string(),
        ];
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            n += 1;
        }
        i += 1;
    }
    (out, n)
}
