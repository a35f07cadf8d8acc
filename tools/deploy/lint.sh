#!/usr/bin/env bash
# Lints the Kubernetes deployment files: deploy/kubernetes (plain manifests, through `kubectl kustomize`) and the Helm
# chart deploy/helm/celer, rendered with its default values and each deploy/helm/celer/ci/*-values.yaml.
#
#   yamllint         the values files, the kustomization and every rendered manifest (tools/deploy/yamllint.yaml)
#   render           `helm lint` + `helm template` when helm is on PATH; else tools/deploy/helm-template, a renderer
#                    built here from Debian's Go and Sprig (apt-get install golang-go golang-github-masterminds-sprig-dev
#                    golang-github-ghodss-yaml-dev)
#   refusals         each tools/deploy/chart-failures/*.yaml must fail to render with the message on its "# expect:" line
#   schemas          every rendered object against the Kubernetes API's JSON schemas (npm: kubernetes-models and the
#                    KEDA and Prometheus Operator models, installed under .cache/deploy-lint)
#   flags            every --flag the manifests pass to Celer is in `celer serve --help` / `celer router --help` of
#                    the built CLI (src/Celer.Cli/bin/Release/net10.0/celer)
#
# A check whose tool is missing is skipped with a line saying so; any failure makes the exit status 1. Ends with
# "N passed, N failed, N skipped" (checks, not tests).
set -uo pipefail
cd "$(dirname "$0")/../.."

cache=.cache/deploy-lint
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$cache"
passed=0 failed=0 skipped=0
pass() { echo "PASS  $1"; passed=$((passed + 1)); }
fail() { echo "FAIL  $1"; failed=$((failed + 1)); }
skip() { echo "SKIP  $1"; skipped=$((skipped + 1)); }
# run NAME COMMAND...: one check, its output shown only when it fails.
run() {
  local name=$1; shift
  if "$@" >"$out/log" 2>&1; then pass "$name"; else fail "$name"; sed 's/^/      /' "$out/log"; fi
}

chart=deploy/helm/celer
value_sets=(default "$chart"/ci/*-values.yaml)

# --- the renderer: helm, or tools/deploy/helm-template built from Debian's packages ---
renderer=""
if command -v helm >/dev/null 2>&1; then
  renderer=helm
  run "helm lint $chart" helm lint "$chart"
else
  gocode=/usr/share/gocode/src/github.com
  if command -v go >/dev/null 2>&1 && [[ -d $gocode/Masterminds/sprig && -d $gocode/ghodss/yaml ]]; then
    # Debian installs Sprig v3 and SemVer v3 without the /v3 of their import paths: a GOPATH of links adds it.
    gopath="$out/gopath"
    mkdir -p "$gopath/src/github.com/Masterminds/sprig" "$gopath/src/github.com/Masterminds/semver"
    ln -s "$gocode/Masterminds/sprig" "$gopath/src/github.com/Masterminds/sprig/v3"
    ln -s "$gocode/Masterminds/semver" "$gopath/src/github.com/Masterminds/semver/v3"
    if GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$PWD/$cache/gocache" \
      go build -o "$cache/helm-template" ./tools/deploy/helm-template >"$out/log" 2>&1; then
      renderer="$cache/helm-template"
      pass "build tools/deploy/helm-template"
    else
      fail "build tools/deploy/helm-template"; sed 's/^/      /' "$out/log"
    fi
  else
    skip "render $chart: neither helm nor Go with Sprig (apt-get install golang-go golang-github-masterminds-sprig-dev golang-github-ghodss-yaml-dev)"
  fi
fi

# render VALUES_FILE|default OUTPUT: the chart as release "celer" in namespace "serving".
render() {
  local values=()
  [[ $1 != default ]] && values=(-f "$1")
  if [[ $renderer == helm ]]; then
    helm template celer "$chart" --namespace serving "${values[@]}" >"$2"
  else
    "$renderer" --name celer --namespace serving "${values[@]}" "$chart" >"$2"
  fi
}

manifests=()
if [[ -n $renderer ]]; then
  for values in "${value_sets[@]}"; do
    rendered="$out/chart-$(basename "$values" .yaml).yaml"
    if render "$values" "$rendered" 2>"$out/log"; then
      pass "render $chart with $values"
      manifests+=("$rendered")
    else
      fail "render $chart with $values"; sed 's/^/      /' "$out/log"
    fi
  done
  for case in tools/deploy/chart-failures/*.yaml; do
    expect=$(sed -n 's/^# expect: //p' "$case")
    if render "$case" /dev/null 2>"$out/log"; then
      fail "refuse $case (it rendered)"
    elif grep -qF -- "$expect" "$out/log"; then
      pass "refuse $case"
    else
      fail "refuse $case (message lacks: $expect)"; sed 's/^/      /' "$out/log"
    fi
  done
fi

# --- the plain manifests ---
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize deploy/kubernetes >"$out/kustomize.yaml" 2>"$out/log"; then
    pass "kubectl kustomize deploy/kubernetes"
    manifests+=("$out/kustomize.yaml")
  else
    fail "kubectl kustomize deploy/kubernetes"; sed 's/^/      /' "$out/log"
  fi
else
  skip "kubectl kustomize deploy/kubernetes: kubectl not found"
fi

# --- yamllint ---
if command -v yamllint >/dev/null 2>&1; then
  run "yamllint values, kustomization and failure cases" \
    yamllint -s -c tools/deploy/yamllint.yaml "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci deploy/kubernetes tools/deploy/chart-failures
  # Rendered output is what Helm writes, so only errors count there, not style (its toYaml quoting, for one).
  if ((${#manifests[@]} > 0)); then
    run "yamllint rendered manifests" yamllint -d "{extends: relaxed, rules: {line-length: disable}}" "${manifests[@]}"
  fi
else
  skip "yamllint: not installed (apt-get install yamllint)"
fi

# --- schemas and flags (node + npm packages, installed once under .cache/deploy-lint) ---
node_ready=false
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  packages=(kubernetes-models@5.1.0 @kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0 yaml@2.8.1)
  if [[ -d $cache/node_modules/kubernetes-models && -d $cache/node_modules/yaml ]] ||
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$cache" "${packages[@]}" >"$out/log" 2>&1; then
    node_ready=true
  else
    fail "npm install ${packages[*]}"; sed 's/^/      /' "$out/log"
  fi
else
  skip "schemas and flags: node/npm not found"
fi
if $node_ready && ((${#manifests[@]} > 0)); then
  abs=()
  for m in "${manifests[@]}"; do abs+=("$(realpath "$m")"); done
  run "Kubernetes schemas of ${#manifests[@]} manifest sets" \
    bash -c 'cd "$1" && shift && node "$@"' _ "$cache" "$PWD/tools/deploy/validate-manifests.mjs" "${abs[@]}"
  celer=src/Celer.Cli/bin/Release/net10.0/celer
  if [[ -x $celer ]]; then
    "$celer" serve --help >"$out/serve-help.txt" 2>&1
    "$celer" router --help >"$out/router-help.txt" 2>&1
    run "Celer flags in the manifests exist" \
      bash -c 'cd "$1" && shift && node "$@"' _ "$cache" "$PWD/tools/deploy/check-flags.mjs" "$out/serve-help.txt" "$out/router-help.txt" "${abs[@]}"
  else
    skip "Celer flags: $celer not built (dotnet build Celer.slnx -c Release)"
  fi
fi

echo "deploy-lint: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
