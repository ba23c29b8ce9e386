//! The issuer's form parsing (`application/x-www-form-urlencoded` bodies of
//! the token and login endpoints).
//!
//! Invariants: a body is accepted iff it is UTF-8 and no (decoded) field
//! name repeats; the fields are exactly the non-empty `&`-separated pairs,
//! in order, `+` a space and percent-escapes decoded, a pair without `=`
//! has an empty value; names are unique.
#![no_main]

use jwtgate::mint::parse_form;
use libfuzzer_sys::fuzz_target;

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

fuzz_target!(|body: &[u8]| {
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
    let repeated = pairs
        .iter()
        .enumerate()
        .any(|(i, (k, _))| pairs[..i].iter().any(|(n, _)| n == k));
    match result {
        Ok(fields) => {
            assert!(!repeated, "a repeated field was accepted");
            assert_eq!(fields, pairs);
        }
        Err(e) => assert!(repeated, "refused without a repeated field: {e}"),
    }
});
