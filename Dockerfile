# The nemutator image: a static-enough release build on Debian, run as
# non-root on distroless. Build: docker build -t ghcr.io/nemutator/nemutator:0.1.0 .
# The compiled BPF program ships in the repository, so no clang is needed.
# The debug line tables are stripped (112 MB -> 25 MB; symbols kept): exec
# injection copies this binary into each pod's in-memory emptyDir.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p nemutator-bin \
    && cp target/release/nemutator /nemutator \
    && strip --strip-debug /nemutator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /nemutator /usr/local/bin/nemutator
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/nemutator"]
CMD ["webhook"]
