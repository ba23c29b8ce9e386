//! What a revocation is, and the in-memory set every request is checked
//! against.
//!
//! Two kinds: one token by its `jti`, or every token of one user (matched
//! on the verified user name or on `sub`, optionally only from one `iss`)
//! issued before a moment. An entry carries `expires`: the moment after
//! which it can affect no token any more; the store drops it then (in Redis
//! that is the key's TTL).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Identity;

/// What is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// One token, by its `jti` claim.
    Token { jti: String },
    /// The tokens of `user` (user name or `sub`) issued before `before`
    /// (Unix seconds); with `issuer`, only those whose `iss` equals it.
    User {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        before: u64,
    },
}

/// One stored revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Derived from the rule, so that revoking the same thing twice is one
    /// entry (and the id is safe in a URL path whatever the jti holds).
    pub id: String,
    #[serde(flatten)]
    pub rule: Rule,
    /// Unix seconds when it was made.
    pub created: u64,
    /// Unix seconds after which no token it can affect is still valid.
    pub expires: u64,
}

/// Longest jti, user or issuer accepted in a revocation.
pub const MAX_FIELD_BYTES: usize = 1024;

impl Revocation {
    pub fn new(rule: Rule, created: u64, expires: u64) -> Self {
        Revocation {
            id: id_of(&rule),
            rule,
            created,
            expires,
        }
    }
}

/// A stable, URL-safe id: the first 128 bits of SHA-256 over the rule.
fn id_of(rule: &Rule) -> String {
    let text = match rule {
        Rule::Token { jti } => format!("token\0{jti}"),
        Rule::User {
            user,
            issuer,
            before,
        } => format!(
            "user\0{user}\0{}\0{before}",
            issuer.as_deref().unwrap_or("\u{1}any")
        ),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The revocations in force, indexed for the per-request check.
#[derive(Default, Clone)]
pub struct RevocationSet {
    entries: HashMap<String, Revocation>,
    jtis: HashSet<String>,
    /// user name or sub → (issuer or any, issued-before)
    users: HashMap<String, Vec<(Option<String>, u64)>>,
}

impl RevocationSet {
    pub fn from_entries(entries: impl IntoIterator<Item = Revocation>) -> Self {
        let mut set = RevocationSet::default();
        for e in entries {
            set.entries.insert(e.id.clone(), e);
        }
        set.reindex();
        set
    }

    fn reindex(&mut self) {
        self.jtis.clear();
        self.users.clear();
        for e in self.entries.values() {
            match &e.rule {
                Rule::Token { jti } => {
                    self.jtis.insert(jti.clone());
                }
                Rule::User {
                    user,
                    issuer,
                    before,
                } => self
                    .users
                    .entry(user.clone())
                    .or_default()
                    .push((issuer.clone(), *before)),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Revocation> {
        self.entries.values()
    }

    pub fn get(&self, id: &str) -> Option<&Revocation> {
        self.entries.get(id)
    }

    /// A copy with `changes` applied (adds, then removals by id) and the
    /// entries expired before `now` dropped.
    pub fn with_changes(&self, changes: &[Change], now: u64) -> Self {
        let mut next = RevocationSet {
            entries: self.entries.clone(),
            ..Default::default()
        };
        for c in changes {
            match c {
                Change::Add(r) => {
                    next.entries.insert(r.id.clone(), r.clone());
                }
                Change::Remove(id) => {
                    next.entries.remove(id);
                }
            }
        }
        next.entries.retain(|_, e| e.expires >= now);
        next.reindex();
        next
    }

    /// Is this `jti` (or session id) revoked by id?
    pub fn revokes_jti(&self, jti: &str) -> bool {
        self.jtis.contains(jti)
    }

    /// Is `principal` (a user rule's name, matched exactly) revoked, for
    /// what `iss` issued at `issued_at`? The browser sessions' provider
    /// keys (a back-channel logout's `sid` or `sub`) are such names.
    pub fn revokes_principal(&self, principal: &str, iss: Option<&str>, issued_at: u64) -> bool {
        self.user_revoked(principal, iss, issued_at as f64)
    }

    /// A user rule for `name` covers what `iss` issued at `issued_at`:
    /// the one test of user rules, for tokens and sessions alike.
    fn user_revoked(&self, name: &str, iss: Option<&str>, issued_at: f64) -> bool {
        self.users.get(name).is_some_and(|rules| {
            rules.iter().any(|(issuer, before)| {
                issuer.as_deref().is_none_or(|want| iss == Some(want))
                    && issued_at <= *before as f64
            })
        })
    }

    /// Does a revocation here apply to this verified token?
    pub fn revokes(&self, id: &Identity) -> bool {
        if let Some(Value::String(jti)) = id.claims.get("jti")
            && self.jtis.contains(jti.as_str())
        {
            return true;
        }
        if self.users.is_empty() {
            return false;
        }
        let sub = match id.claims.get("sub") {
            Some(Value::String(s)) if *s != id.user => Some(s.as_str()),
            _ => None,
        };
        let iss = match id.claims.get("iss") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        // A token without a usable iat cannot show it was issued after the
        // revocation: it is treated as older (fail closed). `iat` has whole
        // seconds, so a token issued in the revocation's own second counts
        // as issued before it (fail closed again).
        let iat = id.claims.get("iat").and_then(Value::as_f64).unwrap_or(0.0);
        [Some(id.user.as_str()), sub]
            .into_iter()
            .flatten()
            .any(|u| self.user_revoked(u, iss, iat))
    }
}

/// One change to the set, as published to the other gates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Add(Revocation),
    Remove(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn identity(claims: Value) -> Identity {
        let claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
        Identity {
            user: claims
                .get("user")
                .or(claims.get("sub"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            exp: 0,
            payload_b64: "".into(),
            issuer: None,
            claims,
        }
    }

    #[test]
    fn jti_and_user_rules() {
        let set = RevocationSet::from_entries([
            Revocation::new(Rule::Token { jti: "j1".into() }, 0, 100),
            Revocation::new(
                Rule::User {
                    user: "alice".into(),
                    issuer: Some("https://idp".into()),
                    before: 1000,
                },
                0,
                100,
            ),
            Revocation::new(
                Rule::User {
                    user: "bob-sub".into(),
                    issuer: None,
                    before: 1000,
                },
                0,
                100,
            ),
        ]);
        assert!(set.revokes(&identity(json!({"sub": "x", "jti": "j1"}))));
        assert!(!set.revokes(&identity(json!({"sub": "x", "jti": "j2"}))));
        assert!(set.revokes(&identity(
            json!({"sub": "alice", "iss": "https://idp", "iat": 999})
        )));
        // Issued in the revocation's own second: revoked (fail closed).
        assert!(set.revokes(&identity(
            json!({"sub": "alice", "iss": "https://idp", "iat": 1000})
        )));
        assert!(!set.revokes(&identity(
            json!({"sub": "alice", "iss": "https://idp", "iat": 1001})
        )));
        assert!(!set.revokes(&identity(
            json!({"sub": "alice", "iss": "https://other", "iat": 1})
        )));
        // No iat: treated as older.
        assert!(set.revokes(&identity(json!({"sub": "alice", "iss": "https://idp"}))));
        // Matched on sub when the user name comes from another claim.
        assert!(set.revokes(&identity(
            json!({"user": "bob", "sub": "bob-sub", "iat": 5})
        )));
    }

    #[test]
    fn principals_by_name_issuer_and_time() {
        let set = RevocationSet::from_entries([Revocation::new(
            Rule::User {
                user: "backchannel-sid:s1".into(),
                issuer: Some("https://idp".into()),
                before: 1000,
            },
            0,
            100,
        )]);
        assert!(set.revokes_principal("backchannel-sid:s1", Some("https://idp"), 1000));
        assert!(set.revokes_principal("backchannel-sid:s1", Some("https://idp"), 5));
        assert!(!set.revokes_principal("backchannel-sid:s1", Some("https://idp"), 1001));
        assert!(!set.revokes_principal("backchannel-sid:s1", Some("https://other"), 5));
        assert!(!set.revokes_principal("backchannel-sid:s1", None, 5));
        assert!(!set.revokes_principal("backchannel-sid:s2", Some("https://idp"), 5));
    }

    #[test]
    fn ids_are_stable_and_changes_apply() {
        let a = Revocation::new(Rule::Token { jti: "j".into() }, 1, 50);
        let b = Revocation::new(Rule::Token { jti: "j".into() }, 2, 60);
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        let set = RevocationSet::default().with_changes(&[Change::Add(a.clone())], 10);
        assert_eq!(set.len(), 1);
        let set = set.with_changes(&[Change::Remove(a.id.clone())], 10);
        assert!(set.is_empty());
        // Expired entries are dropped.
        let set = RevocationSet::default().with_changes(&[Change::Add(a)], 51);
        assert!(set.is_empty());
    }
}
