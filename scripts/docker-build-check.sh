#!/usr/bin/env bash
# docker-build-check.sh - run the Dockerfile's build step without Docker and
# check the result is what the distroless static image needs.
#
# It finds the `go build` command of the Dockerfile's build stage, checks it
# carries CGO_ENABLED=0, -trimpath and -ldflags with "-s -w" and the version
# stamping (-X .../metrics.Version=${VERSION} -X .../metrics.Revision=${REVISION}),
# runs that build with the Dockerfile's own -ldflags and packages for linux
# into a temporary directory (or $OUT_DIR), without VCS stamping as in the
# image (its build context has no .git), and checks every binary:
#   - statically linked: no PT_INTERP program header, no NEEDED libraries;
#   - built with CGO_ENABLED=0 and -trimpath (go version -m);
#   - stripped (-ldflags "-s -w"): no .symtab, no DWARF;
#   - firegate: `firegate version` reports VERSION and REVISION (native
#     GOARCH only).
# VERSION and REVISION play the build arguments (default: 0.0.0-check and
# the checkout's HEAD).
# GOARCH=arm64 scripts/docker-build-check.sh checks a cross build.
# Exit status 0 when every check passes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

fail() { echo "FAIL: $*" >&2; exit 1; }

# The build command: join the Dockerfile's continuation lines and take the
# RUN line that runs `go build`.
build_line="$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile | grep -E '^RUN .*go build' || true)"
[ -n "$build_line" ] || fail "no 'RUN ... go build' in Dockerfile"
[ "$(printf '%s\n' "$build_line" | wc -l)" -eq 1 ] || fail "more than one go build in Dockerfile"

# Flags and packages after "go build", without the -o and its value.
args="${build_line#*go build}"
grep -q -- '-trimpath' <<<"$args" || fail "Dockerfile go build lacks -trimpath"
# The -ldflags value, between its double quotes.
ldflags="$(grep -oE -- '-ldflags="[^"]*"' <<<"$args" | head -n 1 || true)"
[ -n "$ldflags" ] || fail "Dockerfile go build lacks a double-quoted -ldflags=\"...\""
ldflags="${ldflags#-ldflags=\"}"
ldflags="${ldflags%\"}"
grep -qE -- '(^| )-s -w( |$)' <<<"$ldflags" || fail "Dockerfile -ldflags lacks -s -w (stripped)"
pkgvar=github.com/firegate/firegate/metrics
grep -qF -- "-X $pkgvar.Version=\${VERSION}" <<<"$ldflags" ||
  fail "Dockerfile -ldflags lacks -X $pkgvar.Version=\${VERSION}"
grep -qF -- "-X $pkgvar.Revision=\${REVISION}" <<<"$ldflags" ||
  fail "Dockerfile -ldflags lacks -X $pkgvar.Revision=\${REVISION}"
version="${VERSION:-0.0.0-check}"
revision="${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
ldflags="${ldflags//\$\{VERSION\}/$version}"
ldflags="${ldflags//\$\{REVISION\}/$revision}"
grep -q 'CGO_ENABLED=0' <<<"$build_line" || fail "Dockerfile go build lacks CGO_ENABLED=0"
mapfile -t pkgs < <(grep -oE '\./cmd/[A-Za-z0-9_./-]+' <<<"$args")
[ "${#pkgs[@]}" -gt 0 ] || fail "no ./cmd/... packages in the Dockerfile go build"

out="${OUT_DIR:-}"
if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

goarch="${GOARCH:-$(go env GOARCH)}"
echo "building ${pkgs[*]} for linux/$goarch into $out (VERSION=$version REVISION=$revision)"
CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" \
  go build -trimpath -buildvcs=false -ldflags="$ldflags" -o "$out/" "${pkgs[@]}"

status=0
check() { # description, command...
  local what="$1"; shift
  if "$@"; then echo "  ok   $what"; else echo "  FAIL $what"; status=1; fi
}
no_interp() { ! LC_ALL=C readelf -lW "$1" 2>/dev/null | grep -q 'INTERP'; }
no_needed() { ! LC_ALL=C readelf -dW "$1" 2>/dev/null | grep -q '(NEEDED)'; }
no_symtab() { ! LC_ALL=C readelf -SW "$1" 2>/dev/null | grep -qE '\] \.symtab '; }
no_dwarf()  { ! LC_ALL=C readelf -SW "$1" 2>/dev/null | grep -qE '\] \.z?debug_info '; }
setting()   { go version -m "$1" | grep -qE "^[[:space:]]+build[[:space:]]+$2\$"; }
reports_version() { [ "$("$1" version)" = "firegate $version (revision $revision, $(go env GOVERSION))" ]; }
file_static() { file -b "$1" | grep -qE 'statically linked|static-pie linked'; }

for pkg in "${pkgs[@]}"; do
  bin="$out/$(basename "$pkg")"
  [ -f "$bin" ] || fail "$bin was not built"
  echo "$bin ($(du -h "$bin" | cut -f1))"
  if command -v readelf >/dev/null; then
    check "no PT_INTERP (static)" no_interp "$bin"
    check "no NEEDED shared libraries" no_needed "$bin"
    check "no .symtab (-s)" no_symtab "$bin"
    check "no DWARF (-w)" no_dwarf "$bin"
  fi
  if command -v file >/dev/null; then
    check "file(1): statically linked" file_static "$bin"
  fi
  if ! command -v readelf >/dev/null && ! command -v file >/dev/null; then
    echo "  (neither readelf nor file is installed: relying on go version -m)"
  fi
  check "CGO_ENABLED=0" setting "$bin" 'CGO_ENABLED=0'
  check "-trimpath" setting "$bin" '-trimpath=true'
  check "GOOS=linux GOARCH=$goarch" setting "$bin" "GOARCH=$goarch"
  if [ "$(basename "$pkg")" = firegate ] && [ "$(go env GOHOSTOS)/$(go env GOHOSTARCH)" = "linux/$goarch" ]; then
    check "firegate version reports VERSION and REVISION" reports_version "$bin"
  fi
done

if [ "$status" -ne 0 ]; then
  fail "binaries are not fit for the distroless static image"
fi
echo "PASS: static, stripped, CGO-free binaries for linux/$goarch"
