//! The one check of a user name and password against `issuer.users_file`,
//! under the failure limits: the token endpoints' password grant and login,
//! and the gate's own sign-in page (`login`, `provider = "builtin"`) use
//! it, so they count failures in the same counters (per user name and per
//! client address, shared through `[store]` with Redis) and answer a wrong
//! user and a wrong password with the same work and the same time.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::Runtime;
use super::limiter::{Thresholds, slowdown};
use super::shared_limits as counters;
use crate::config::{Config, ConfigError};

/// Why credentials were not accepted.
#[derive(Debug)]
pub enum Refusal {
    /// Too many failures: wait this long.
    Limited(Duration),
    /// Unknown user or wrong password (never said which).
    BadCredentials,
    /// The users file is not loaded (cannot happen after a good start).
    NoUsers,
}

/// A user name fit for a log line: bounded, without control characters.
pub fn log_name(user: &str) -> String {
    user.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The users file and the failure limits of one configuration generation
/// (the counters and the file's last good copy are the process-wide
/// `Runtime`'s, so they survive reloads).
pub struct Passwords {
    runtime: Arc<Runtime>,
    users_file: PathBuf,
    thresholds: Thresholds,
}

impl Passwords {
    /// `issuer.users_file` (required, read now: an error names the key and
    /// the line) and the `[issuer]` failure limits.
    pub fn from_config(config: &Config, runtime: Arc<Runtime>) -> Result<Passwords, ConfigError> {
        let i = &config.issuer;
        let users_file = i.users_file.clone().ok_or_else(|| {
            ConfigError::invalid(
                "issuer.users_file",
                "configuration",
                "must be set: the users who may sign in are read from it",
            )
        })?;
        runtime
            .users
            .load_now(&users_file)
            .map_err(|e| ConfigError::Invalid {
                key: "issuer.users_file".into(),
                origin: users_file.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Passwords {
            runtime,
            users_file,
            thresholds: Thresholds {
                max_user_failures: i.max_failures,
                max_address_failures: i.max_failures_per_address,
                window: i.failure_window,
            },
        })
    }

    /// Is `user` in the users file now?
    pub async fn knows(&self, user: &str) -> bool {
        self.runtime
            .users
            .current(&self.users_file)
            .await
            .is_some_and(|u| u.contains(user))
    }

    /// Checks credentials under the failure limits: refused outright when
    /// locked out (no hash computed), slowed down after each failure. `via`
    /// names the endpoint in the log.
    pub async fn check(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        via: &'static str,
    ) -> Result<(), Refusal> {
        let rt = &self.runtime;
        let users = rt.users.current(&self.users_file).await;
        // A name that is not a user may be a password typed into the wrong
        // field: only known names are logged.
        let known = users.as_ref().is_some_and(|u| u.contains(user));
        let shown = if known {
            log_name(user)
        } else {
            "<unknown user>".into()
        };
        // Shared through Redis when configured (issue 14), local otherwise.
        let redis = rt.store().and_then(|s| s.redis());
        let attempt = match counters::begin(redis, &rt.limiter, user, ip, &self.thresholds).await {
            Ok((a, delay)) => {
                // Past the per-address limit: slowed down, never refused.
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                a
            }
            Err(wait) => {
                warn!(target: "jwtgate::issuer", user = %shown, client = %ip, via, "login refused: too many failures");
                return Err(Refusal::Limited(wait));
            }
        };
        let Some(users) = users else {
            counters::succeeded(redis, &rt.limiter, attempt).await;
            return Err(Refusal::NoUsers);
        };
        // An unknown user is checked against the dummy hash: same work,
        // same time, same answer as a wrong password.
        let (hash, known) = users.hash_for(user);
        let password = password.to_owned();
        let verified = match rt.hashing.acquire().await {
            Ok(_permit) => tokio::task::spawn_blocking(move || hash.verify(&password))
                .await
                .unwrap_or(false),
            Err(_) => false,
        };
        if verified && known {
            counters::succeeded(redis, &rt.limiter, attempt).await;
            return Ok(());
        }
        let failures = counters::failed(&rt.limiter, attempt);
        warn!(target: "jwtgate::issuer", user = %shown, client = %ip, via, failures, "login failed");
        tokio::time::sleep(slowdown(failures)).await;
        Err(Refusal::BadCredentials)
    }
}
