//! The admin and forward-auth listeners (src/admin/).

mod forward_auth;
mod forward_auth_nginx;
mod listener;
mod sessions;
