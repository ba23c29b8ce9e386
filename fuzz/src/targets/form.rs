//! The issuer's form parsing (`application/x-www-form-urlencoded` bodies of
//! the token and login endpoints).
//!
//! Invariants: a body is accepted iff it is UTF-8, no (decoded) field name
//! repeats and it has at most `MAX_FIELDS` fields (the endpoints read four;
//! the bound keeps the check linear before any password is hashed); the
//! fields are exactly the non-empty `&`-separated pairs, in order, `+` a
//! space and percent-escapes decoded, a pair without `=` has an empty
//! value; names are unique. A refusal says why: the first repeated name
//! among the first `MAX_FIELDS` fields, else too many fields.

use jwtgate::mint::parse_form;

/// `mint::endpoints::MAX_FORM_FIELDS`.
const MAX_FIELDS: usize = 32;

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn run(body: &[u8]) {
    let result = parse_form(body);
    let Ok(text) = std::str::from_utf8(body) else {
        assert!(result.is_err(), "a non-UTF-8 body was accepted");
        return;
    };
    let pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    // The first field whose name came before (the parser reads in order
    // and stops at the first problem).
    let first_repeat = pairs
        .iter()
        .enumerate()
        .position(|(i, (k, _))| pairs[..i].iter().any(|(n, _)| n == k));
    match result {
        Ok(fields) => {
            assert!(first_repeat.is_none(), "a repeated field was accepted");
            assert!(
                fields.len() <= MAX_FIELDS,
                "{} fields accepted",
                fields.len()
            );
            assert_eq!(fields, pairs);
        }
        Err(e) => match first_repeat {
            Some(i) if i < MAX_FIELDS => {
                assert!(
                    e.contains("is repeated"),
                    "field {i} repeats, refused with: {e}"
                )
            }
            _ => assert!(
                pairs.len() > MAX_FIELDS && e.contains("form fields"),
                "refused without a repeated field or too many fields ({}): {e}",
                pairs.len()
            ),
        },
    }
}
