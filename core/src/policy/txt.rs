//! The tag-list TXT records of MTA-STS (`_mta-sts`, RFC 8461 §3.1) and
//! TLS-RPT (`_smtp._tls`, RFC 8460 §3): one tokenizer and one rule for
//! picking the record among all the TXT records of the name, which both
//! modules import.
//!
//! Both RFCs say the same thing in the same words: "If multiple TXT records
//! … are returned by the resolver, records that do not begin with
//! `v=STSv1;` [`v=TLSRPTv1;`] are discarded. If the number of resulting
//! records is not one, or if the resulting record is syntactically invalid,
//! senders MUST assume the recipient domain does not have an available
//! MTA-STS policy [does not implement TLSRPT]." [`select`] is that rule.

/// One `name=value` field of a TXT record.
pub(super) struct TagField<'a> {
    /// The field name, checked against `sts-ext-name`.
    pub(super) name: &'a [u8],
    /// The value, not yet checked (its grammar depends on the field).
    pub(super) value: &'a [u8],
    /// Byte offset of the field in the record.
    pub(super) offset: usize,
}

/// Why a TXT record's tag list did not parse.
pub(super) enum TagError {
    /// The record does not begin with the version tag.
    NotVersion,
    /// The tag list breaks the grammar at `offset`.
    Malformed {
        /// Byte offset in the record.
        offset: usize,
        /// The rule broken.
        reason: &'static str,
    },
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether `record` begins with `version` followed by the end, `;` or
/// whitespace: the filter RFC 8461 §3.1 and RFC 8460 §3 apply before
/// counting records.
pub(super) fn begins_with_version(record: &[u8], version: &[u8]) -> bool {
    match record.strip_prefix(version) {
        Some(rest) => matches!(rest.first(), None | Some(b';' | b' ' | b'\t')),
        None => false,
    }
}

/// `(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`: field names of
/// both TXT records (RFC 8461 §3.1, RFC 8460 §3) and the policy file.
pub(super) fn is_ext_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && rest.len() <= 31
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        }
        None => false,
    }
}

/// `1*(%x21-3A / %x3C / %x3E-7E)`: printable ASCII without space, `;` and `=`.
pub(super) fn is_ext_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&b| matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E))
}

/// Splits a TXT record of the form `version 1*(delim field) [delim]`, with
/// `delim = *WSP ";" *WSP` and `field = name "=" value`, into its fields.
/// The values are returned unchecked, without surrounding whitespace.
///
/// One leniency beyond the ABNF: whitespace at the very end of the record is
/// ignored.
pub(super) fn tag_fields<'a>(
    record: &'a [u8],
    version: &[u8],
) -> Result<Vec<TagField<'a>>, TagError> {
    if !begins_with_version(record, version) {
        return Err(TagError::NotVersion);
    }
    let rest = record.get(version.len()..).unwrap_or_default();
    let mut segments = rest.split(|&b| b == b';').peekable();
    // Between the version and the first `;`: only whitespace.
    let head = segments.next().unwrap_or_default();
    if !head.iter().all(|&b| is_wsp(b)) {
        return Err(TagError::Malformed {
            offset: version.len(),
            reason: "fields must be separated by `;`",
        });
    }
    let mut offset = version.len() + head.len() + 1;
    let mut fields = Vec::new();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let lead = segment.iter().take_while(|&&b| is_wsp(b)).count();
        let body = segment.get(lead..).unwrap_or_default();
        let trail = body.iter().rev().take_while(|&&b| is_wsp(b)).count();
        let body = body.get(..body.len() - trail).unwrap_or_default();
        let at = offset + lead;
        if body.is_empty() {
            if last {
                break; // the optional final delimiter
            }
            return Err(TagError::Malformed {
                offset: at,
                reason: "an empty field (two `;` in a row)",
            });
        }
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return Err(TagError::Malformed {
                offset: at,
                reason: "a field must be `name=value`",
            });
        };
        let (name, value) = body.split_at(eq);
        let value = value.get(1..).unwrap_or_default();
        if !is_ext_name(name) {
            return Err(TagError::Malformed {
                offset: at,
                reason: "a field name is 1 to 32 letters, digits, `_`, `-` or `.`, starting with a letter or digit",
            });
        }
        if value.is_empty() {
            return Err(TagError::Malformed {
                offset: at,
                reason: "a field value must not be empty",
            });
        }
        fields.push(TagField {
            name,
            value,
            offset: at,
        });
        offset += segment.len() + 1;
    }
    Ok(fields)
}

/// Why [`select`] found no record.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Selection<E> {
    /// No record is left once the others are discarded.
    NoRecord,
    /// More than one record is left: how many.
    Multiple(usize),
    /// The one record left does not parse.
    Invalid(E),
}

/// Picks the record among all the TXT records found at the name (each one's
/// strings already joined) and parses it with `parse` (RFC 8461 §3.1,
/// RFC 8460 §3):
///
/// - among several records, those that do not begin with exactly
///   `version;` are discarded (so `v=STSv1`, `v=STSv1 …` and `v=STSv1<TAB>…`
///   are not counted), and exactly one must remain;
/// - a record returned alone is parsed as it is when it begins with the
///   version tag (the RFCs discard only "if multiple TXT records … are
///   returned"), so `v=STSv1 ; id=1`, which the record grammar allows, still
///   names a policy; one that does not begin with the version tag is
///   [`Selection::NoRecord`].
pub(super) fn select<I, T, E>(
    records: I,
    version: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, Selection<E>>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let records: Vec<I::Item> = records.into_iter().collect();
    let kept: Vec<&[u8]> = match records.as_slice() {
        [only] => Some(only.as_ref())
            .filter(|r| begins_with_version(r, version))
            .into_iter()
            .collect(),
        all => all
            .iter()
            .map(AsRef::as_ref)
            .filter(|r| {
                r.strip_prefix(version)
                    .is_some_and(|rest| rest.first() == Some(&b';'))
            })
            .collect(),
    };
    match kept.as_slice() {
        [one] => parse(one).map_err(Selection::Invalid),
        [] => Err(Selection::NoRecord),
        many => Err(Selection::Multiple(many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(records: &[&str]) -> Result<String, Selection<()>> {
        select(records, b"v=STSv1", |r| {
            Ok(String::from_utf8_lossy(r).into_owned())
        })
    }

    #[test]
    fn among_several_only_records_beginning_with_version_and_semicolon_count() {
        // RFC 8461 §3.1: `v=STSv1`, `v=STSv1 …` and `v=STSv1<TAB>…` do not
        // begin with `v=STSv1;`, so they are discarded before counting.
        for other in [
            "v=STSv1",
            "v=STSv1 id=2",
            "v=STSv1 ; id=2",
            "v=STSv1\tid=2",
            "v=STSv10; id=2",
        ] {
            assert_eq!(
                pick(&[other, "v=STSv1; id=1"]),
                Ok("v=STSv1; id=1".to_owned()),
                "{other:?}"
            );
            assert_eq!(
                pick(&["v=STSv1; id=1", other]),
                Ok("v=STSv1; id=1".to_owned()),
                "{other:?}"
            );
        }
        assert_eq!(
            pick(&["v=STSv1; id=1", "v=STSv1;id=2"]),
            Err(Selection::Multiple(2))
        );
        assert_eq!(
            pick(&["v=STSv1", "v=STSv1 ; id=2"]),
            Err(Selection::NoRecord)
        );
        assert_eq!(pick(&[]), Err(Selection::NoRecord));
    }

    #[test]
    fn a_lone_record_is_parsed_as_it_is() {
        assert_eq!(pick(&["v=STSv1 ; id=1"]), Ok("v=STSv1 ; id=1".to_owned()));
        assert_eq!(pick(&["v=STSv1"]), Ok("v=STSv1".to_owned()));
        assert_eq!(pick(&["v=STSv10; id=1"]), Err(Selection::NoRecord));
        assert_eq!(pick(&["spf"]), Err(Selection::NoRecord));
    }
}
