//! "did you mean `auth.issuers`?" for an unknown configuration key: the
//! closest key beside it, else a key of the same name elsewhere (a table
//! written at the wrong level).

use super::{Config, IssuerTrustConfig, RouteConfig};

/// How alike two key names must be (Jaro-Winkler) to be suggested.
const CLOSE: f64 = 0.8;

/// The full path to suggest for `field`, unknown under `parent`, whose
/// known siblings are `expected`.
pub(super) fn suggest(parent: &[String], field: &str, expected: &[&str]) -> Option<String> {
    let field_lc = field.to_ascii_lowercase();
    let best = expected
        .iter()
        .map(|c| (strsim::jaro_winkler(&field_lc, c), *c))
        .filter(|(score, _)| *score >= CLOSE)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, name)) = best {
        let mut path: Vec<&str> = parent.iter().map(String::as_str).collect();
        path.push(name);
        return Some(path.join("."));
    }
    // Elsewhere: a known key whose last part is this name.
    let here = parent
        .iter()
        .filter(|p| p.parse::<usize>().is_err())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(".");
    known_keys()
        .into_iter()
        .filter(|k| k.rsplit('.').next() == Some(field_lc.as_str()))
        .find(|k| k.rsplit_once('.').map_or("", |(p, _)| p) != here)
}

/// Every key of the configuration, as dotted paths (array tables by the
/// keys of one element).
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.push(path.clone());
            // Maps of user-chosen names (claims_headers, issuer.claims)
            // are empty by default, so there is nothing to descend into.
            walk(&path, v, out);
        }
    }
    let mut out = Vec::new();
    let tables = [
        ("", serde_json::to_value(Config::default())),
        (
            "auth.issuers",
            serde_json::to_value(IssuerTrustConfig::default()),
        ),
        ("routes", serde_json::to_value(RouteConfig::default())),
    ];
    for (prefix, value) in tables {
        if let Ok(v) = value {
            walk(prefix, &v, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(parent: &[&str], field: &str, expected: &[&str]) -> Option<String> {
        let parent: Vec<String> = parent.iter().map(|p| p.to_string()).collect();
        suggest(&parent, field, expected)
    }

    #[test]
    fn near_sibling_then_same_name_elsewhere() {
        let auth = &["leeway", "issuers", "secret", "token_from"];
        assert_eq!(
            s(&["auth"], "issuer", auth).as_deref(),
            Some("auth.issuers")
        );
        assert_eq!(s(&["auth"], "leway", auth).as_deref(), Some("auth.leeway"));
        let top = &["listen", "auth", "upstream", "forward"];
        assert_eq!(s(&[], "issuers", top).as_deref(), Some("auth.issuers"));
        assert_eq!(s(&[], "upgrades", top).as_deref(), Some("forward.upgrades"));
        assert_eq!(s(&["auth"], "zzz_nothing", auth), None);
    }
}
