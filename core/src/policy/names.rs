//! Host-name rules shared by the policy modules.

/// Whether the last label of `name` (without its trailing dot) is a number:
/// all decimal digits, or `0x`/`0X` and hex digits.
///
/// Resolvers and URL parsers read such a name as an IPv4 address
/// (`inet_aton` takes `1.2.3`, `127.1`, `0x7f000001` and `2130706433`;
/// the WHATWG URL host parser's "ends in a number" rule does the same), and
/// no host name has one: "a valid host name can never have the
/// dotted-decimal form #.#.#.#, since at least the highest-level component
/// label will be alphabetic" (RFC 1123 §2.1), and a top-level domain is
/// never all-numeric (RFC 3696 §2). The policy modules refuse these names
/// wherever a DNS name is expected, so that an address can never be matched
/// as a name (a DNS-ID `*.0.2.1` against `192.0.2.1.`).
pub(super) fn ends_in_number(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::ends_in_number;

    #[test]
    fn names_that_resolvers_read_as_addresses() {
        for name in [
            "192.0.2.1",
            "192.0.2.1.",
            "1.2.3",
            "127.1",
            "0x7f000001",
            "0X7F000001",
            "2130706433",
            "0177.0.0.1",
            "example.0x",
            "a.b.123",
        ] {
            assert!(ends_in_number(name), "{name}");
        }
        for name in [
            "mx.example.com",
            "mx.example.com.",
            "1.2.3.example",
            "123.example",
            "0x7f000001.example",
            "0xg",
            "x1",
            "",
        ] {
            assert!(!ends_in_number(name), "{name}");
        }
    }
}
