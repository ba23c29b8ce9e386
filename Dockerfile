# jwtgate container image (not built in CI: no Docker engine runs there).
#   docker build -t jwtgate:latest .
#   docker run --rm -p 8080:8080 -p 9901:9901 -e TOKENS_SECRET=... \
#     -v $PWD/jwtgate.toml:/etc/jwtgate/jwtgate.toml:ro jwtgate:latest

# --- build ---------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# aws-lc-rs compiles C code; the rust image brings the C toolchain it needs.
# benches/ is copied because Cargo.toml declares the bench target.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin jwtgate \
 && install -m 0755 target/release/jwtgate /usr/local/bin/jwtgate

# --- runtime -------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: https upstreams and identity providers are verified against
# the system CA bundle (plus upstream.ca_file / auth.issuers[].ca_file).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 jwtgate \
 && useradd --system --uid 10001 --gid jwtgate --no-create-home --shell /usr/sbin/nologin jwtgate \
 && mkdir -p /etc/jwtgate
COPY --from=build /usr/local/bin/jwtgate /usr/local/bin/jwtgate
USER 10001:10001
EXPOSE 8080 9901
# SIGTERM drains in-flight requests (drain_timeout) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/jwtgate"]
CMD ["serve", "--config", "/etc/jwtgate/jwtgate.toml"]
