#!/usr/bin/env bash
# Checks (and where possible installs) what the tests need: Go, Java,
# Google's Firestore emulator (package google-cloud-cli-firestore-emulator,
# preinstalled on the project's machines) and staticcheck (pinned below,
# built from the Go module proxy into .tools/bin). Go modules come from
# go.mod.
set -euo pipefail
need_apt=()
command -v go >/dev/null || { echo "setup: Go is required (https://go.dev/dl)"; exit 1; }
command -v java >/dev/null || need_apt+=(default-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}"; fi
fi
found=""
for root in "${CLOUDSDK_ROOT_DIR:-}" "$(dirname "$(dirname "$(readlink -f "$(command -v gcloud 2>/dev/null || echo /nonexistent)")")")" /usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk /opt/google-cloud-sdk; do
  if [ -n "$root" ] && [ -x "$root/platform/cloud-firestore-emulator/cloud_firestore_emulator" ]; then found="$root"; break; fi
done
if [ -z "$found" ]; then
  cat <<'MSG'
setup: Google's Firestore emulator was not found. Install the Debian package
google-cloud-cli-firestore-emulator from Google's Cloud SDK apt repository
(it brings the emulator under /usr/lib/google-cloud-sdk), or set
CLOUDSDK_ROOT_DIR to an SDK root that has platform/cloud-firestore-emulator.
MSG
  exit 1
fi
go mod download
# staticcheck: the release that supports this Go version, pinned.
staticcheck_version=v0.8.2 # staticcheck 2026.2.2
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! "$root/.tools/bin/staticcheck" -version 2>/dev/null | grep -q "(${staticcheck_version#v})"; then
  echo "setup: installing staticcheck $staticcheck_version into .tools/bin"
  GOBIN="$root/.tools/bin" go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
echo "setup: ok (Go $(go env GOVERSION), emulator under $found)"
