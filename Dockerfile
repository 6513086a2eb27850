# syntax=docker/dockerfile:1
#
# Firegate container image.
#
#   docker build -t firegate .
#   docker run --rm -p 8080:8080 -p 9090:9090 --env-file firegate.env \
#     -v "$PWD/policy.yaml:/etc/firegate/policy.yaml:ro" firegate
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
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/firegate ./cmd/firegate-loadtest

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="firegate" \
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
