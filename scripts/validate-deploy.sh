#!/usr/bin/env bash
# Validates the deployment files without a cluster and without helm:
#   - yamllint on the plain manifests, the chart's values and test values
#     (.yamllint.yaml);
#   - kubernetes-validate (strict: unknown fields fail) on every plain
#     manifest, against the oldest Kubernetes the files support and the
#     newest the tool ships schemas for; the Prometheus Operator's CRD kinds
#     (ServiceMonitor, PrometheusRule) have no schema there and are skipped
#     by it (they get the checks below);
#   - scripts/validate_deploy.py: cross-object wiring (selectors, ports,
#     Secret/ConfigMap keys, security contexts, drain timing), every
#     `.Values` path of the chart's templates against values.yaml (and every
#     value used), SWITCHBOARD_* names against settings.rs, metric names
#     against the crates, both PrometheusRules against
#     deploy/prometheus/switchboard-alerts.yml, the Dockerfile and its build
#     context;
#   - the chart rendered by scripts/helm-render (Go text/template + sprig +
#     Helm's functions, built from Debian packages; installed when missing,
#     SB_DEPLOY_RENDER=0 skips it) with values.yaml and each
#     helm/switchboard/ci/*.yaml, then kubernetes-validate and the wiring
#     checks on the output, and values that must be refused;
#   - `kubectl kustomize deploy/kubernetes` when kubectl exists.
# The Python tools live in target/pyenv (shared with scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/pyenv"
py="$venv/bin/python"
# Oldest supported (grpc probes, PDB unhealthyPodEvictionPolicy) and newest
# that kubernetes-validate 1.37.0 ships.
k8s_versions=(1.27.0 1.37.0)
started=$(date +%s)

step() { printf '\n=== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    return 1
  fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "python tools (target/pyenv)"
if [ ! -x "$py" ]; then
  python3 -m venv "$venv"
fi
if ! "$py" -c 'import kubernetes_validate' 2>/dev/null || [ ! -x "$venv/bin/yamllint" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0 yamllint==1.38.0
fi
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version), $("$venv/bin/yamllint" --version)"

plain=(deploy/kubernetes/*.yaml)
manifests=()
for f in "${plain[@]}"; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done

step "yamllint (.yamllint.yaml)"
lint=(.yamllint.yaml deploy/kubernetes helm/switchboard/Chart.yaml helm/switchboard/values.yaml helm/switchboard/ci)
"$venv/bin/yamllint" --strict "${lint[@]}"
echo "  ok: ${lint[*]}"

# Runs kubernetes-validate --strict on files, for every version; prints a
# summary (passed resources, CRD kinds skipped) and fails on any error.
kube_validate() {
  local label=$1
  shift
  local args=() v out="$tmp/kv.out"
  for v in "${k8s_versions[@]}"; do args+=(-k "$v"); done
  if ! "$venv/bin/kubernetes-validate" --strict "${args[@]}" "$@" >"$out" 2>&1; then
    grep -v '^INFO' "$out" >&2 || true
    echo "  FAIL kubernetes-validate: $label" >&2
    return 1
  fi
  if grep -q '^ERROR\|^FATAL' "$out"; then
    grep -v '^INFO' "$out" >&2
    return 1
  fi
  local passed skipped
  passed=$(grep -c '^INFO .* passed' "$out" || true)
  skipped=$(sed -n 's/^WARN .*for kind \([A-Za-z]*\) .*/\1/p' "$out" | sort -u | paste -sd, -)
  echo "  ok: $label: $passed resource validations passed (Kubernetes ${k8s_versions[*]})${skipped:+; no schema, skipped: $skipped}"
}

step "kubernetes-validate --strict: deploy/kubernetes"
kube_validate "${#manifests[@]} files" "${manifests[@]}"
# The checks must be able to fail: a misspelt field is refused.
sed 's/readinessProbe:/readinesProbe:/' deploy/kubernetes/gateway.yaml >"$tmp/misspelt.yaml"
if "$venv/bin/kubernetes-validate" --strict --quiet -k "${k8s_versions[-1]}" "$tmp/misspelt.yaml" >/dev/null 2>&1; then
  echo "  FAIL a misspelt field (readinesProbe) was not refused: is --strict in effect?" >&2
  exit 1
fi
echo "  ok: control: a misspelt field (readinesProbe) is refused"

step "checks of scripts/validate_deploy.py"
"$py" scripts/validate_deploy.py wiring "deploy/kubernetes" "${manifests[@]}"
"$py" scripts/validate_deploy.py values-paths helm/switchboard
"$py" scripts/validate_deploy.py values-keys helm/switchboard helm/switchboard/ci/*.yaml
"$py" scripts/validate_deploy.py names "${plain[@]}" helm/switchboard/values.yaml helm/switchboard/templates/* \
  helm/switchboard/files/* docs/operations.md helm/README.md
"$py" scripts/validate_deploy.py rules deploy/prometheus/switchboard-alerts.yml deploy/kubernetes/prometheusrule.yaml \
  helm/switchboard/files/switchboard-alerts.yml
"$py" scripts/validate_deploy.py dockerfile

step "kustomize (kubectl kustomize deploy/kubernetes)"
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/kubernetes >"$tmp/kustomized.yaml"
  echo "  ok: $(grep -c '^kind:' "$tmp/kustomized.yaml") objects built"
else
  echo "  skipped: no kubectl"
fi

step "the chart, rendered by scripts/helm-render"
gopath=/usr/share/gocode
render_ready() {
  command -v go >/dev/null 2>&1 && [ -d "$gopath/src/github.com/Masterminds/sprig" ] &&
    [ -d "$gopath/src/gopkg.in/yaml.v2" ]
}
if [ "${SB_DEPLOY_RENDER:-1}" != 0 ] && ! render_ready && command -v apt-get >/dev/null 2>&1; then
  echo "installing golang-go, golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v2-dev (Debian)"
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev >/dev/null; } ||
    echo "  (could not install them)"
fi
if [ "${SB_DEPLOY_RENDER:-1}" = 0 ]; then
  echo "  skipped (SB_DEPLOY_RENDER=0)"
elif ! render_ready; then
  # A check that cannot run is a failure, not a pass (SB_DEPLOY_RENDER=0
  # turns it off on purpose).
  echo "error: rendering the chart needs go and Debian's golang-github-masterminds-sprig-dev," \
    "golang-gopkg-yaml.v2-dev, which could not be installed" >&2
  exit 1
else
  renderer="$root/target/helm-render"
  if [ ! -x "$renderer" ] || [ scripts/helm-render/main.go -nt "$renderer" ]; then
    GO111MODULE=off GOPATH="$gopath" GOFLAGS='' GOCACHE="${GOCACHE:-$root/target/go-cache}" \
      go build -o "$renderer" scripts/helm-render/main.go
  fi
  cases=("values.yaml:")
  for f in helm/switchboard/ci/*.yaml; do cases+=("$(basename "$f"):$f"); done
  for case in "${cases[@]}"; do
    name=${case%%:*}
    file=${case#*:}
    out="$tmp/rendered-$name"
    "$renderer" -chart helm/switchboard ${file:+-f "$file"} -name switchboard -namespace chat >"$out"
    "$renderer" -chart helm/switchboard ${file:+-f "$file"} -name switchboard -namespace chat -notes >/dev/null
    echo "  $name: $(grep -c '^kind:' "$out") objects rendered, NOTES.txt renders"
    kube_validate "chart with $name" "$out"
    "$py" scripts/validate_deploy.py wiring "chart with $name" "$out"
  done
  "$py" scripts/validate_deploy.py rules deploy/prometheus/switchboard-alerts.yml deploy/kubernetes/prometheusrule.yaml \
    helm/switchboard/files/switchboard-alerts.yml "$tmp"/rendered-*.yaml
  # Values the chart must refuse, with a message naming the value.
  refused=0
  while IFS='|' read -r values expect; do
    printf '%s\n' "$values" >"$tmp/bad-values.yaml"
    if "$renderer" -chart helm/switchboard -f "$tmp/bad-values.yaml" >/dev/null 2>"$tmp/err"; then
      echo "  FAIL rendered although refused: $values" >&2
      exit 1
    fi
    if ! grep -q "$expect" "$tmp/err"; then
      echo "  FAIL refused without naming $expect: $values" >&2
      cat "$tmp/err" >&2
      exit 1
    fi
    refused=$((refused + 1))
  done <<'EOF'
auth: {mode: rsa}|auth.mode
auth: {mode: publicKey}|auth.publicKey
auth: {mode: jwks}|auth.jwks
redis: {external: {url: "redis://x:6379"}}|redis.internal.enabled
redis: {internal: {enabled: false}}|redis.external
config: {logFormat: text}|config.logFormat
EOF
  echo "  ok: $refused sets of bad values refused with a message naming the value"
fi

step "deployment files valid ($(($(date +%s) - started)) s)"
