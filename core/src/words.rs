//! Case-insensitive keyword lookup by one folded word: the SMTP verbs and
//! the POP3 keywords (at most 8 octets each) are compared as a `u64` built
//! from their upper-case octets, instead of a search with a case-insensitive
//! comparison per entry.

/// A keyword table entry: the name as a word, its length, the name, and what
/// the caller maps it to.
pub(crate) type Entry<T> = (u64, usize, &'static str, T);

/// `name` (at most 8 octets, upper case) as a little-endian word.
const fn word(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut w = 0u64;
    let mut i = 0;
    while i < b.len() && i < 8 {
        w |= (b[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// Builds a lookup table from `(NAME, value)` pairs at compile time.
pub(crate) const fn table<T: Copy, const N: usize>(
    names: [(&'static str, T); N],
    filler: T,
) -> [Entry<T>; N] {
    let mut t = [(0, 0, "", filler); N];
    let mut i = 0;
    while i < N {
        let (name, v) = names[i];
        t[i] = (word(name), name.len(), name, v);
        i += 1;
    }
    t
}

/// The entry whose name equals `text`, ASCII case-insensitively. The length
/// is compared too, so a shorter name padded with zero octets never matches
/// a text that ends in NUL.
pub(crate) fn lookup<T: Copy>(table: &[Entry<T>], text: &[u8]) -> Option<(&'static str, T)> {
    let mut w = [0u8; 8];
    w.get_mut(..text.len())?.copy_from_slice(text);
    let folded = u64::from_le_bytes(w.map(|c| c.to_ascii_uppercase()));
    table
        .iter()
        .find(|&&(word, len, _, _)| word == folded && len == text.len())
        .map(|&(_, _, name, v)| (name, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_exact() {
        static T: [Entry<u8>; 3] = table([("MAIL", 1), ("TOP", 2), ("STARTTLS", 3)], 0);
        assert_eq!(lookup(&T, b"mail"), Some(("MAIL", 1)));
        assert_eq!(lookup(&T, b"MaIl"), Some(("MAIL", 1)));
        assert_eq!(lookup(&T, b"top"), Some(("TOP", 2)));
        assert_eq!(lookup(&T, b"starttls"), Some(("STARTTLS", 3)));
        assert_eq!(lookup(&T, b"TOP\0"), None);
        assert_eq!(lookup(&T, b"MAI"), None);
        assert_eq!(lookup(&T, b"MAILX"), None);
        assert_eq!(lookup(&T, b"STARTTLSX"), None);
        assert_eq!(lookup(&T, b""), None);
        assert_eq!(lookup(&T, "MAİL".as_bytes()), None);
    }
}
