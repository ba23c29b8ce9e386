//! Browser sign-in (`[login]`, src/login/): OpenID Connect sign-in with sealed session cookies, against the real provider of tests/browser/, a scripted one, and headless Chromium.

mod access_log;
mod backchannel;
mod backchannel_replicas;
mod browser;
mod builtin;
mod common;
mod config;
mod flow;
mod hostile;
mod id_token;
mod logout;
mod redirects;
mod refresh;
mod replicas;
mod return_path;
