# Debian packages the test suite starts for real: Orthanc + its DICOMweb plugin (a PACS for the DICOMweb adapter
# tests), dcmtk (a modality's storescu and its compressors, for the C-STORE tests), Chromium (the browser tests),
# etcd, Patroni and HAProxy (the scaled-out topology the failover tests build: tests/topology).
# Installed when missing and apt-get is usable (root, or passwordless sudo); otherwise the tests that need them say
# they are skipped, and under CI=true they fail instead.
# Usage: . scripts/lib/system-deps.sh; ensure_system_deps
ensure_system_deps() {
  local missing=()
  command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
  ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || missing+=(orthanc-dicomweb)
  command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)  # storescu, dcmcjpeg, dcmcrle, dcmcjpls: a modality's side
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # the pages are Chinese first: without a CJK font the screenshots show boxes
  ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v patroni >/dev/null 2>&1 || missing+=(patroni)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "note: ${missing[*]} not installed and apt-get needs root; the tests that need them will be skipped" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: ${missing[*]} not installed and there is no apt-get; the tests that need them will be skipped" >&2
    return 0
  fi
  echo "==> installing ${missing[*]} (apt-get)"
  # the packages' services are not started inside containers (policy-rc.d); the tests start what they need
  $sudo apt-get update -qq >/dev/null || echo "warning: apt-get update failed" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "warning: could not install ${missing[*]}" >&2
}

# The test suite's npm packages, each pinned in its package-lock.json: axe-core (tests/e2e/a11y: the browser tests
# inject it to audit every page for accessibility, WCAG 2.1 A/AA) and fhir-kit-client (tests/interop/js: the Node
# FHIR client the interoperability tests drive against a live registry). Installed with `npm ci` when missing or of
# another version; without npm those tests are skipped with the reason (under CI=true they fail instead).
ensure_test_js() {
  local dir_package dir package want have
  for dir_package in tests/e2e/a11y:axe-core tests/interop/js:fhir-kit-client; do
    dir=${dir_package%%:*}
    package=${dir_package#*:}
    want=$(sed -n "s/.*\"$package\": \"\([^\"]*\)\".*/\1/p" "$dir/package.json")
    have=$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$dir/node_modules/$package/package.json" 2>/dev/null || true)
    if [ -n "$want" ] && [ "$want" = "$have" ]; then
      continue
    fi
    if ! command -v npm >/dev/null 2>&1; then
      echo "note: npm not found; the tests that need $package will be skipped" >&2
      continue
    fi
    echo "==> installing $package $want for the tests (npm ci in $dir)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent >/dev/null) || echo "warning: npm ci failed in $dir" >&2
  done
}
