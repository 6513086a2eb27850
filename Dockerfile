# syntax=docker/dockerfile:1
#
# Firegate container image.
#
#   docker build --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" -t firegate:0.1.0 .
#   docker run --rm firegate:0.1.0 version
#   docker run --rm -p 8080:8080 -p 9090:9090 --env-file firegate.env \
#     -v "$PWD/policy.yaml:/etc/firegate/policy.yaml:ro" firegate:0.1.0
#
# VERSION and REVISION are linked into the binaries (-X) and reported by
# `firegate version` and the firegate_build_info metric. The build context
# has no .git, so without REVISION the revision is "unknown"; without VERSION
# the version is "(devel)". The Helm chart's image.tag defaults to the
# chart's appVersion: tag the image with it and pass the same VERSION.
#
# Stage 1 compiles fully static binaries (CGO_ENABLED=0, -trimpath, stripped).
# Stage 2 is distroless "static": CA certificates, tzdata, /etc/passwd with the
# nonroot user, and nothing else (no shell, no package manager).
# scripts/docker-build-check.sh runs the same go build outside Docker, and
# deploy/deploy_test.go checks this file and that build.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
# Set by BuildKit for multi-platform builds (docker buildx build --platform
# linux/amd64,linux/arm64 ...); empty means the build platform.
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Modules first, so the download layer is cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Release version and source commit, stamped into the binaries (see above).
# Declared here, after the module download, so a new value does not
# invalidate that layer.
ARG VERSION=
ARG REVISION=
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags="-s -w -X github.com/firegate/firegate/metrics.Version=${VERSION} -X github.com/firegate/firegate/metrics.Revision=${REVISION}" \
      -o /out/ ./cmd/firegate ./cmd/firegate-loadtest

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=
ARG REVISION=
LABEL org.opencontainers.image.title="firegate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="Realtime WebSocket gateway: Clerk-authenticated, policy-scoped Firestore snapshot listeners fanned out to clients" \
      org.opencontainers.image.source="https://github.com/firegate/firegate"
COPY --from=build /out/firegate /firegate
COPY --from=build /out/firegate-loadtest /firegate-loadtest
ENV FIREGATE_ADDR=:8080 \
    FIREGATE_ADMIN_ADDR=:9090
# 8080: WebSocket/HTTP (GET /v1/stream). 9090: admin (/metrics, /healthz,
# /readyz, pprof) - never expose 9090 to the internet.
EXPOSE 8080 9090
# distroless "nonroot" is uid/gid 65532; numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/firegate"]
CMD ["serve"]
