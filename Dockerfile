# skep images: the controller (`skep`) and the OCR worker (`skep-worker`).
#
# With a registry (the ordinary way; Rust is compiled inside Docker):
#   docker build --target worker     -t skep-worker:dev .
#   docker build --target controller -t skep:dev .
#
# Without a registry (how CI builds them; see scripts/build-images.sh): a
# Debian bookworm base imported from a debootstrap rootfs, and binaries built
# on the host (bookworm too, so the same libtesseract5):
#   cargo build --release -p skep -p skep-worker
#   docker build --build-arg BASE_IMAGE=skep-base:bookworm --target worker-prebuilt     -t skep-worker:dev .
#   docker build --build-arg BASE_IMAGE=skep-base:bookworm --target controller-prebuilt -t skep:dev .
#
# NB: the prebuilt targets come before the `build` stage on purpose: the
# classic builder stops at the target, so building them never needs the
# Rust image.

ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE_IMAGE} AS runtime
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates libtesseract5 liblept5 tesseract-ocr-eng tesseract-ocr-osd \
      poppler-utils qpdf \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 skep \
 && useradd --system --uid 10001 --gid skep --home-dir /var/lib/skep --create-home skep
# Debian's Tesseract uses OpenMP; one thread per engine is 4.5-5x faster on
# a loaded machine (skep runs one engine per slot).
ENV OMP_THREAD_LIMIT=1
USER skep
WORKDIR /var/lib/skep

FROM runtime AS worker-prebuilt
COPY target/release/skep-worker /usr/local/bin/skep-worker
ENTRYPOINT ["/usr/local/bin/skep-worker"]
CMD ["run"]

FROM runtime AS controller-prebuilt
COPY target/release/skep /usr/local/bin/skep
ENTRYPOINT ["/usr/local/bin/skep"]
CMD ["controller"]

FROM ${RUST_IMAGE} AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libtesseract-dev libleptonica-dev clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p skep -p skep-worker \
 && install -D target/release/skep /out/skep \
 && install -D target/release/skep-worker /out/skep-worker

FROM runtime AS worker
COPY --from=build /out/skep-worker /usr/local/bin/skep-worker
ENTRYPOINT ["/usr/local/bin/skep-worker"]
CMD ["run"]

FROM runtime AS controller
COPY --from=build /out/skep /usr/local/bin/skep
ENTRYPOINT ["/usr/local/bin/skep"]
CMD ["controller"]
