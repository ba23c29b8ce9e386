//! The admin and forward-auth listeners (src/admin/).

mod forward_auth;
mod listener;
mod sessions;
