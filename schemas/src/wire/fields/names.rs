//! The key names the wire parsers look up, and a classifier that tells which one an object key
//! spells in a few dozen instructions (a table built at compile time), instead of comparing
//! every key with every alias byte by byte.
//!
//! A key *spells* a name when it equals the name ignoring ASCII case and the separators `-` and
//! `_` ([`super::key_matches`]). [`id_of_key`] answers exactly that: a key sent as one of the
//! spellings listed in [`NAMES`] is found by one probe of a hash table and one comparison;
//! any other key (another case, separators elsewhere, an unknown key) is canonicalised byte by
//! byte and its canonical form looked up in the same table. The listed spellings only make the
//! common keys fast: leaving one out changes no answer.

use super::key_matches;

/// Every name a wire parser looks up: the canonical spelling (lowercase, no separators) first,
/// then the spellings browsers and relays send (legacy CSP and certificate reports are
/// kebab-case, the Reporting API camelCase, NEL and some relays snake_case). A name's index
/// here is its [`Id`]. Each spelling is checked at compile time to spell its name.
const NAMES: &[&[&str]] = &[
    // CSP and the other Reporting API bodies (`super::super::keys`).
    &["documenturi", "document-uri", "documentURI", "document_uri"],
    &["documenturl", "documentURL", "document-url", "document_url"],
    &["referrer"],
    &["blockeduri", "blocked-uri", "blockedURI", "blocked_uri"],
    &["blockedurl", "blockedURL", "blocked-url", "blocked_url"],
    &[
        "violateddirective",
        "violated-directive",
        "violatedDirective",
        "violated_directive",
    ],
    &[
        "effectivedirective",
        "effective-directive",
        "effectiveDirective",
        "effective_directive",
    ],
    &[
        "originalpolicy",
        "original-policy",
        "originalPolicy",
        "original_policy",
    ],
    &["disposition"],
    &["statuscode", "status-code", "statusCode", "status_code"],
    &["sourcefile", "source-file", "sourceFile", "source_file"],
    &["linenumber", "line-number", "lineNumber", "line_number"],
    &["lineno", "lineNo", "line-no", "line_no"],
    &[
        "columnnumber",
        "column-number",
        "columnNumber",
        "column_number",
    ],
    &["colno", "colNo", "col-no", "col_no"],
    &[
        "scriptsample",
        "script-sample",
        "scriptSample",
        "script_sample",
    ],
    &["sample"],
    // Legacy CSP: old Firefox's request line.
    &["request"],
    // Reporting API envelope, NEL and integrity bodies.
    &["type"],
    &["age"],
    &["url"],
    &["useragent", "user_agent", "userAgent", "user-agent"],
    &["body"],
    &["reportonly", "reportOnly", "report-only", "report_only"],
    &["phase"],
    &["serverip", "server_ip", "serverIp", "serverIP"],
    &["elapsedtime", "elapsed_time", "elapsedTime"],
    &["method"],
    &["protocol"],
    &["samplingfraction", "sampling_fraction", "samplingFraction"],
    // XSS Auditor.
    &["requesturl", "request-url", "requestURL", "request_url"],
    // Certificate reports.
    &["hostname"],
    &["port"],
    &["datetime", "date-time", "dateTime"],
    &["effectiveexpirationdate", "effective-expiration-date"],
    &["includesubdomains", "include-subdomains"],
    &["notedhostname", "noted-hostname"],
    &["servedcertificatechain", "served-certificate-chain"],
    &["validatedcertificatechain", "validated-certificate-chain"],
    &["knownpins", "known-pins"],
    &["scts"],
    &["responsestatus", "response-status"],
    &["certstatus", "cert-status"],
    // Wrappers of single-object bodies (`crate::parse`).
    &["cspreport", "csp-report"],
    &["expectctreport", "expect-ct-report"],
    &["expectstaplereport", "expect-staple-report"],
    &["xssreport", "xss-report"],
];

/// A name's index in [`NAMES`]; below 64, so a set of names is one `u64` ([`IdSet`]).
pub(crate) type Id = u8;

/// A set of [`Id`]s, one bit each.
pub(crate) type IdSet = u64;

/// The bit of `id` in an [`IdSet`].
pub(crate) const fn bit(id: Id) -> IdSet {
    1 << id
}

/// The id of the name `key` spells, if any: `Some(id)` exactly when
/// `super::key_matches(key, canonical)` holds for the canonical spelling of name `id`.
pub(crate) fn id_of_key(key: &str) -> Option<Id> {
    if let Some(spelling) = lookup(key.as_bytes()) {
        return Some(spelling.id);
    }
    // Not a listed spelling: its canonical form may still be a name (`DOCUMENT-URI`).
    let mut canonical = [0u8; MAX_CANONICAL_LEN];
    let mut len = 0;
    for b in key.bytes().filter(|b| *b != b'-' && *b != b'_') {
        // Longer than every name: it spells none.
        *canonical.get_mut(len)? = b.to_ascii_lowercase();
        len += 1;
    }
    // A hit is a listed spelling in lowercase without separators: its own canonical form,
    // which is therefore its name's.
    lookup(&canonical[..len]).map(|spelling| spelling.id)
}

/// The id of `alias` when it is a name's canonical spelling (what the wire parsers look up);
/// `None` for anything else, which the caller compares byte by byte.
#[inline(always)]
pub(crate) fn id_of_canonical(alias: &str) -> Option<Id> {
    lookup(alias.as_bytes())
        .filter(|spelling| spelling.canonical)
        .map(|spelling| spelling.id)
}

/// One listed spelling, with what a lookup compares first.
#[derive(Debug, Clone, Copy)]
struct Spelling {
    text: &'static str,
    id: Id,
    /// Whether `text` is the canonical spelling of its name.
    canonical: bool,
    words: Words,
}

/// The listed spelling `key` is, if any: one hash and, almost always, one probe. Inlined: the
/// wire parsers pass constant aliases, whose lookup the optimiser then folds away.
#[inline(always)]
fn lookup(key: &[u8]) -> Option<&'static Spelling> {
    let words = Words::of(key);
    let mut slot = words.slot();
    loop {
        let index = *TABLE.get(slot)?;
        let spelling = SPELLINGS.get(usize::from(index).checked_sub(1)?)?;
        // The words are the whole text up to 24 bytes.
        if spelling.words.eq(&words) && (key.len() <= 24 || spelling.text.as_bytes() == key) {
            return Some(spelling);
        }
        slot = (slot + 1) % TABLE_LEN;
    }
}

/// A key's length and its bytes as little-endian words: the first and last eight (four for a
/// key of 4-7 bytes, the whole key zero-padded for a shorter one) and, past 16 bytes, bytes
/// 8-15. Up to 24 bytes they are the whole key.
#[derive(Debug, Clone, Copy)]
struct Words {
    len: usize,
    head: u64,
    middle: u64,
    tail: u64,
}

impl Words {
    #[inline(always)]
    const fn of(key: &[u8]) -> Self {
        let len = key.len();
        let (head, tail) = if len >= 8 {
            (word(key, 0, 8), word(key, len - 8, 8))
        } else if len >= 4 {
            (word(key, 0, 4), word(key, len - 4, 4))
        } else {
            (word(key, 0, len), 0)
        };
        let middle = if len > 16 { word(key, 8, 8) } else { 0 };
        Self {
            len,
            head,
            middle,
            tail,
        }
    }

    #[inline(always)]
    const fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.head == other.head
            && self.middle == other.middle
            && self.tail == other.tail
    }

    /// The home slot in [`TABLE`]. Only speed depends on it (collisions are probed): with
    /// [`SLOT_MULTIPLIER`] every listed spelling sits in its home slot
    /// (`tests::one_probe_each`). The rotations are not whole bytes, so that a byte where
    /// `head` and `tail` overlap does not cancel out (`columnnumber`, `columnNumber`); the
    /// middle tells `violated-directive` from `violated_directive`.
    #[inline(always)]
    const fn slot(&self) -> usize {
        self.slot_with(SLOT_MULTIPLIER)
    }

    #[inline(always)]
    const fn slot_with(&self, multiplier: u64) -> usize {
        let mixed =
            self.head ^ self.tail.rotate_left(29) ^ self.middle.rotate_left(13) ^ self.len as u64;
        (mixed.wrapping_mul(multiplier) >> (64 - TABLE_BITS)) as usize
    }
}

/// `n` bytes of `key` from `start`, little-endian (the optimiser makes one load of it).
#[inline(always)]
const fn word(key: &[u8], start: usize, n: usize) -> u64 {
    let mut word = 0;
    let mut i = 0;
    while i < n {
        word |= (key[start + i] as u64) << (8 * i);
        i += 1;
    }
    word
}

/// Found by `tests::search_slot_multiplier` (run it when `one_probe_each` fails).
const SLOT_MULTIPLIER: u64 = 0x3154_41d7_0076_8445;

const TABLE_BITS: u32 = 10;
const TABLE_LEN: usize = 1 << TABLE_BITS;

/// The longest canonical name: a canonical form longer than this spells no name.
const MAX_CANONICAL_LEN: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < NAMES.len() {
        if NAMES[i][0].len() > max {
            max = NAMES[i][0].len();
        }
        i += 1;
    }
    max
};

const SPELLING_COUNT: usize = {
    let mut count = 0;
    let mut i = 0;
    while i < NAMES.len() {
        count += NAMES[i].len();
        i += 1;
    }
    count
};

/// Every spelling of [`NAMES`], flattened, checked: each spells its name, names are canonical
/// and distinct, and there are at most 64.
static SPELLINGS: [Spelling; SPELLING_COUNT] = {
    assert!(NAMES.len() <= 64, "an IdSet is a u64");
    let empty = Spelling {
        text: "",
        id: 0,
        canonical: false,
        words: Words::of(b""),
    };
    let mut out = [empty; SPELLING_COUNT];
    let mut n = 0;
    let mut id = 0;
    while id < NAMES.len() {
        let name = NAMES[id][0];
        assert!(
            key_matches(name, name),
            "a name is lowercase without separators"
        );
        let mut other = 0;
        while other < id {
            assert!(!key_matches(NAMES[other][0], name), "a name twice");
            other += 1;
        }
        let mut s = 0;
        while s < NAMES[id].len() {
            let text = NAMES[id][s];
            assert!(key_matches(text, name), "a spelling of another name");
            out[n] = Spelling {
                text,
                id: id as Id,
                canonical: s == 0,
                words: Words::of(text.as_bytes()),
            };
            n += 1;
            s += 1;
        }
        id += 1;
    }
    out
};

/// Slot -> 1 + index in [`SPELLINGS`] (0: empty), filled with linear probing. Mostly empty, so
/// a miss ends at once and a perfect placement is easy to find (1 KiB).
static TABLE: [u8; TABLE_LEN] = {
    assert!(SPELLING_COUNT < TABLE_LEN / 4 && SPELLING_COUNT < u8::MAX as usize);
    let mut table = [0u8; TABLE_LEN];
    let mut i = 0;
    while i < SPELLING_COUNT {
        let s = &SPELLINGS[i];
        let mut slot = s.words.slot();
        while table[slot] != 0 {
            slot = (slot + 1) % TABLE_LEN;
        }
        table[slot] = (i + 1) as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::key_matches;
    use super::*;

    /// The reference: the name `key` spells, by comparing it with every canonical name as
    /// `Fields` did before the table.
    fn id_by_comparison(key: &str) -> Option<Id> {
        NAMES
            .iter()
            .position(|spellings| key_matches(key, spellings[0]))
            .map(|id| id as Id)
    }

    #[test]
    fn every_spelling_and_its_variants_are_classified_as_by_comparison() {
        let mut checked = 0;
        for (id, spellings) in NAMES.iter().enumerate() {
            for spelling in *spellings {
                for key in [
                    spelling.to_string(),
                    spelling.to_ascii_uppercase(),
                    spelling.replace('-', "_"),
                    spelling.replace('_', "-"),
                    format!("-{spelling}_"),
                    format!("{spelling}x"),
                    spelling[1..].to_string(),
                    spelling[..spelling.len() - 1].to_string(),
                ] {
                    assert_eq!(id_of_key(&key), id_by_comparison(&key), "{key:?}");
                    checked += 1;
                }
                assert_eq!(id_of_key(spelling), Some(id as Id), "{spelling}");
            }
            assert_eq!(id_of_canonical(spellings[0]), Some(id as Id));
        }
        assert!(checked > 800, "{checked}");
    }

    #[test]
    fn only_canonical_aliases_have_an_id() {
        for alias in ["document-uri", "documentURI", "DOCUMENTURI", "document", ""] {
            assert_eq!(id_of_canonical(alias), None, "{alias:?}");
        }
        assert!(id_of_canonical("documenturi").is_some());
    }

    /// Every listed spelling is found in its home slot: a lookup of a common key is one probe.
    /// If a new spelling breaks this, answers stay right (collisions are probed); run
    /// `cargo test -p schemas search_slot_multiplier -- --ignored --nocapture` for another
    /// `SLOT_MULTIPLIER`.
    #[test]
    fn one_probe_each() {
        for (index, s) in SPELLINGS.iter().enumerate() {
            let home = s.words.slot();
            assert_eq!(usize::from(TABLE[home]), index + 1, "{}", s.text);
        }
    }

    #[test]
    #[ignore = "a tool: prints a SLOT_MULTIPLIER that places every spelling in its home slot"]
    fn search_slot_multiplier() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..1_000_000 {
            // xorshift: odd multipliers, reproducibly.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let multiplier = state | 1;
            let mut used = vec![false; TABLE_LEN];
            let perfect = SPELLINGS
                .iter()
                .all(|s| !std::mem::replace(&mut used[s.words.slot_with(multiplier)], true));
            if perfect {
                println!("SLOT_MULTIPLIER = {multiplier:#x}");
                return;
            }
        }
        panic!("no multiplier found: raise TABLE_BITS");
    }

    #[test]
    fn long_and_odd_keys() {
        for key in [
            "",
            "-",
            "_-_",
            "document------------------------------------uri",
            "validated-certificate-chainx",
            "validated-certificate-chaiN",
            "Validated_Certificate_Chain",
            "\u{e9}",
            "documentur\u{e9}",
            "document\u{130}uri",
        ] {
            assert_eq!(id_of_key(key), id_by_comparison(key), "{key:?}");
        }
    }

    /// Keys built from names' spellings, cut, recased, with separators and other bytes
    /// inserted: near misses as well as hits.
    fn near_name() -> impl Strategy<Value = String> {
        let spelling = prop::sample::select(
            NAMES
                .iter()
                .flat_map(|spellings| spellings.iter().copied())
                .collect::<Vec<_>>(),
        );
        let edit = prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::sample::select(vec!["-", "_", "A", "z", "\u{e9}", "", "--"]),
                any::<bool>(),
            ),
            0..4,
        );
        (spelling, edit, any::<u32>()).prop_map(|(spelling, edits, case_mask)| {
            let mut key: Vec<char> = spelling
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if case_mask & (1 << (i % 32)) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for (at, text, remove) in edits {
                let at = at.index(key.len() + 1);
                if remove && at < key.len() {
                    key.remove(at);
                } else {
                    for (i, c) in text.chars().enumerate() {
                        key.insert(at + i, c);
                    }
                }
            }
            key.into_iter().collect()
        })
    }

    proptest! {
        #[test]
        fn classifies_near_names_as_by_comparison(key in near_name()) {
            prop_assert_eq!(id_of_key(&key), id_by_comparison(&key));
        }

        #[test]
        fn classifies_any_key_as_by_comparison(key in "[a-zA-Z_\\-\u{e9}]{0,30}|\\PC{0,12}") {
            prop_assert_eq!(id_of_key(&key), id_by_comparison(&key));
            prop_assert_eq!(
                id_of_canonical(&key),
                id_by_comparison(&key).filter(|id| NAMES[usize::from(*id)][0] == key)
            );
        }
    }
}
