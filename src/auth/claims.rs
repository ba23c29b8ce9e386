//! Checks on the verified payload.
//!
//! Written here rather than left to `jsonwebtoken::Validation` because the
//! gate must say exactly why a token fails ("expired 42s ago"), must treat a
//! time claim of the wrong JSON type as a rejection (the crate's `iat` is not
//! checked at all), and decides `aud` per key source.

use serde_json::{Map, Value};

use super::error::VerifyError;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number. Fractions are
/// allowed by the RFC and truncated; anything else is a rejection.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
            {
                Ok(Some(f as u64))
            } else {
                Err(VerifyError::BadClaim(format!(
                    "claim {name} is not a valid NumericDate"
                )))
            }
        }
        Some(_) => Err(VerifyError::BadClaim(format!(
            "claim {name} is not a number"
        ))),
    }
}

/// Checks `exp` (required), `nbf` and `iat` against `now` with `leeway`;
/// returns `exp`.
pub(crate) fn check_times(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
) -> Result<u64, VerifyError> {
    let exp = numeric_date(claims, "exp")?.ok_or(VerifyError::MissingExp)?;
    if now > exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { ago: now - exp });
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(VerifyError::NotYetValid { in_secs: nbf - now });
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(VerifyError::IssuedInFuture { in_secs: iat - now });
    }
    Ok(exp)
}

/// When `expected` is set, `iss` must be a string equal to it.
pub(crate) fn check_issuer(
    claims: &Map<String, Value>,
    expected: Option<&str>,
) -> Result<(), VerifyError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match claims.get("iss") {
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(Value::String(_)) => Err(VerifyError::WrongIssuer),
        Some(_) => Err(VerifyError::BadClaim("claim iss is not a string".into())),
        None => Err(VerifyError::WrongIssuer),
    }
}

/// When `audiences` is non-empty, `aud` (a string or an array of strings)
/// must contain one of them. When it is empty, `aud` is not checked.
pub(crate) fn check_audience(
    claims: &Map<String, Value>,
    audiences: &[String],
) -> Result<(), VerifyError> {
    if audiences.is_empty() {
        return Ok(());
    }
    let ok = match claims.get("aud") {
        Some(Value::String(s)) => audiences.iter().any(|a| a == s),
        Some(Value::Array(items)) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| audiences.iter().any(|a| a == s))),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(VerifyError::WrongAudience)
    }
}

/// The first non-empty string among `username_claims`.
pub(crate) fn username(
    claims: &Map<String, Value>,
    username_claims: &[String],
) -> Result<String, VerifyError> {
    username_claims
        .iter()
        .find_map(|c| {
            claims
                .get(c)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_owned)
        .ok_or_else(|| VerifyError::NoUser(username_claims.join(", ")))
}

/// Looks up a claim by dot path (`realm_access.roles`): an exact top-level
/// key wins over the path.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn times() {
        let now = 1_000_000;
        assert_eq!(
            check_times(&m(json!({"exp": now + 10})), now, 60).unwrap(),
            now + 10
        );
        assert!(matches!(
            check_times(&m(json!({"exp": now - 100})), now, 60),
            Err(VerifyError::Expired { ago: 100 })
        ));
        assert!(check_times(&m(json!({"exp": now - 30})), now, 60).is_ok());
        assert!(matches!(
            check_times(&m(json!({})), now, 60),
            Err(VerifyError::MissingExp)
        ));
        assert!(matches!(
            check_times(&m(json!({"exp": "9999999999"})), now, 60),
            Err(VerifyError::BadClaim(_))
        ));
        assert!(matches!(
            check_times(&m(json!({"exp": -5})), now, 60),
            Err(VerifyError::BadClaim(_))
        ));
        assert!(matches!(
            check_times(&m(json!({"exp": now + 10, "nbf": now + 100})), now, 60),
            Err(VerifyError::NotYetValid { .. })
        ));
        assert!(matches!(
            check_times(&m(json!({"exp": now + 10, "iat": now + 100})), now, 60),
            Err(VerifyError::IssuedInFuture { .. })
        ));
        assert!(matches!(
            check_times(&m(json!({"exp": now + 10, "iat": "x"})), now, 60),
            Err(VerifyError::BadClaim(_))
        ));
        assert!(check_times(&m(json!({"exp": (now + 10) as f64 + 0.5})), now, 60).is_ok());
    }

    #[test]
    fn audience_and_user() {
        let c = m(json!({"aud": ["a", "b"], "sub": "", "user": "bob"}));
        assert!(check_audience(&c, &["b".into()]).is_ok());
        assert!(check_audience(&c, &["c".into()]).is_err());
        assert!(check_audience(&c, &[]).is_ok());
        assert_eq!(username(&c, &["sub".into(), "user".into()]).unwrap(), "bob");
        assert!(username(&c, &["login".into()]).is_err());
    }

    #[test]
    fn dot_path() {
        let c = m(json!({"realm_access": {"roles": ["x"]}, "a.b": 1}));
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["x"])));
        assert_eq!(lookup(&c, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(&c, "nope.x"), None);
    }
}
