# jwtgate container image. No Docker engine runs in CI: deploy/check.sh lints
# this file with hadolint, and the image is built by the release pipeline.
#   docker build -t jwtgate:0.1.0 .
#   docker run --rm -p 8080:8080 -p 9901:9901 -e TOKENS_SECRET=... \
#     -v $PWD/jwtgate.toml:/etc/jwtgate/jwtgate.toml:ro jwtgate:0.1.0
#
# Base images are named by tag. Pin them by digest in the release pipeline
# (`FROM image:tag@sha256:...`, kept fresh by Renovate or Dependabot): no
# registry can be reached from where this file is written, and a digest that
# was not read from the registry would be an invention.

# --- build ---------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to jwtgate's sources
# rebuilds only jwtgate, not the ~300 crates below it. The stubs give cargo
# the targets Cargo.toml declares (lib, bin, bench) without our code.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/verify.rs \
 && cargo build --release --locked --bin jwtgate \
 && rm -rf src benches
# aws-lc-rs compiles C code; the rust image brings the C toolchain it needs.
COPY src ./src
COPY benches ./benches
# COPY keeps the files' old modification times: touch them so that cargo
# sees they are newer than the stub build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin jwtgate \
 && install -m 0755 target/release/jwtgate /usr/local/bin/jwtgate

# --- runtime -------------------------------------------------------------
# distroless "cc": glibc, libgcc, CA certificates (for https upstreams and
# identity providers) and nothing else: no shell, no package manager. The
# binary links glibc dynamically as built above (same Debian 12 glibc), which
# is what aws-lc is built and tested against here.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="jwtgate" \
      org.opencontainers.image.description="A reverse proxy that lets a request through only with a valid JWT bearer token" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /usr/local/bin/jwtgate /usr/local/bin/jwtgate
# nonroot: uid/gid 65532, as the Kubernetes manifests expect.
USER 65532:65532
EXPOSE 8080 9901
# No curl in the image: the binary asks its own admin listener's /readyz
# (127.0.0.1:9901 unless --url or --config says otherwise); exit 0 = healthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/jwtgate", "healthcheck"]
# SIGTERM drains in-flight requests (drain_timeout) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/jwtgate"]
CMD ["serve", "--config", "/etc/jwtgate/jwtgate.toml"]
