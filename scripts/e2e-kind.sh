#!/usr/bin/env bash
# End to end on a real (kind) cluster: the cluster, kube-prometheus-stack, the image, the
# chart; then a concept-drift scenario must lead to a retraining Job that promotes a new
# model, after which the DriftPolicy returns to Monitoring.
#
# Needs docker, kind, helm and kubectl. It cannot run on machines without a container
# engine (such as this project's CI); `make test` checks this script and the files it uses.
# Usage: scripts/e2e-kind.sh [--keep]   (--keep leaves the cluster up afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=driftkeeper
NAMESPACE=driftkeeper
RELEASE=dk
POLICY="$RELEASE-driftkeeper"
IMAGE_TAG=e2e
KPS_VERSION="${KPS_VERSION:-82.6.0}"  # the kube-prometheus-stack chart (released 2026-03)

for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e needs $tool" >&2; exit 2; }
done

step() { printf '\n== %s\n' "$*"; }
cleanup() {
  if [[ "${1:-}" != "--keep" ]]; then kind delete cluster --name "$CLUSTER"; fi
}
trap 'cleanup "${1:-}"' EXIT

step "cluster"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config kind-config.yaml

step "kube-prometheus-stack (Prometheus, Grafana on node port 30300)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KPS_VERSION" --namespace monitoring --create-namespace --wait --timeout 10m \
  --set grafana.service.type=NodePort --set grafana.service.nodePort=30300

step "image"
docker build -t "driftkeeper:$IMAGE_TAG" .
kind load docker-image "driftkeeper:$IMAGE_TAG" --name "$CLUSTER"

step "chart"
helm upgrade --install "$RELEASE" charts/driftkeeper --namespace "$NAMESPACE" \
  --create-namespace --wait --timeout 10m -f charts/driftkeeper/ci/kind-values.yaml \
  --set image.tag="$IMAGE_TAG" --set simulator.enabled=false \
  --set monitoring.serviceMonitor.labels.release=kube-prometheus-stack \
  --set monitoring.prometheusRule.labels.release=kube-prometheus-stack \
  --set policy.spec.retraining.cooldown=1m \
  --set policy.spec.retraining.trainingData.minFeedbackRows=1500 \
  --set policy.spec.promotion.evaluationRows=300
helm test "$RELEASE" --namespace "$NAMESPACE"
kubectl -n "$NAMESPACE" get driftpolicies

step "concept drift: D/E/F diamonds become 25% dearer"
kubectl -n "$NAMESPACE" delete pod e2e-simulator --ignore-not-found
kubectl -n "$NAMESPACE" run e2e-simulator --image="driftkeeper:$IMAGE_TAG" \
  --image-pull-policy=IfNotPresent --restart=Never -- \
  simulate --url "http://$POLICY:8080" --scenario concept --rate 60 --duration 420

step "a retraining Job runs and succeeds"
deadline=$((SECONDS + 900))
until kubectl -n "$NAMESPACE" get jobs -l "driftkeeper.io/policy=$POLICY" -o name | grep -q .; do
  (( SECONDS < deadline )) || { echo "no retraining Job" >&2; exit 1; }
  sleep 10
done
kubectl -n "$NAMESPACE" wait --for=condition=complete --timeout=15m \
  jobs -l "driftkeeper.io/policy=$POLICY"

step "the new model is promoted"
outcome=""
until [[ "$outcome" == promoted ]]; do
  (( SECONDS < deadline )) || { echo "not promoted: $outcome" >&2; exit 1; }
  outcome=$(kubectl -n "$NAMESPACE" get dp "$POLICY" -o jsonpath='{.status.lastRetrain.outcome}')
  sleep 5
done
version=$(kubectl -n "$NAMESPACE" get dp "$POLICY" -o jsonpath='{.status.modelVersion}')
[[ "$version" != v1 ]] || { echo "still serving v1" >&2; exit 1; }

step "the policy is back to Monitoring"
phase=""
deadline=$((SECONDS + 900))
until [[ "$phase" == Monitoring ]]; do
  (( SECONDS < deadline )) || { echo "phase stuck at $phase" >&2; exit 1; }
  phase=$(kubectl -n "$NAMESPACE" get dp "$POLICY" -o jsonpath='{.status.phase}')
  sleep 10
done
kubectl -n "$NAMESPACE" get driftpolicies
echo "e2e passed: retrained, promoted $version, monitoring again"
