#!/usr/bin/env bash
# Smoke-tests a built Hearth image the way an operator first runs it: the image alone, no compose.
#
#   deploy/smoke-image.sh [IMAGE]        default hearth:cpu (see the CPU build line in deploy/Dockerfile)
#
# Checks: it runs as the unprivileged hearth user (uid 10001); its llama.cpp is the portable build
# (no AMX kernels); `hearth doctor` passes with compose.yaml's security_opt lines, sandbox probe
# included; without those lines doctor warns that the sandbox is refused, naming the fix; the
# bundled model answers a question over the demo handbook, citing it; SIGTERM stops the container
# cleanly. Exits non-zero at the first check that fails, saying which.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-hearth:cpu}"
secure=(--security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined)
fail() { echo "smoke-image: FAILED: $*" >&2; exit 1; }
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

echo ">> $image: user"
uid="$(docker run --rm --entrypoint id "$image" -u)"
[ "$uid" = 10001 ] || fail "the image runs as uid $uid, not the hearth user (10001)"

echo ">> $image: portable llama.cpp"
docker run --rm --entrypoint sh "$image" -c '! grep -q ggml_backend_amx /opt/venv/lib/hearth-llama/libggml-cpu.so' \
  || fail "the image's libggml-cpu.so holds the AMX kernels (a native build)"

echo ">> $image: hearth doctor, with compose.yaml's security_opt lines"
docker run --rm "${secure[@]}" "$image" doctor | tee "$out" || fail "hearth doctor failed (output above)"
grep -q '^OK   sandbox: no capabilities' "$out" || fail "doctor did not run the sandbox probe"

echo ">> $image: hearth doctor, without them (the sandbox is refused with the fix; chat still works, so it is a warning)"
docker run --rm "$image" doctor > "$out" 2>&1 || true
grep '^WARN sandbox' "$out" || { cat "$out"; fail "doctor did not warn that Docker's default profiles refuse the sandbox"; }
grep -q 'security_opt' "$out" || { cat "$out"; fail "the sandbox warning does not name compose's security_opt lines"; }

echo ">> $image: index the demo handbook and ask the bundled model"
docker run --rm "${secure[@]}" -v "$PWD/deploy/demo:/srv/demo:ro" --tmpfs /data:uid=10001,gid=10001 \
  --entrypoint sh "$image" -c '
    set -e
    hearth --config /srv/demo/hearth.yaml index
    hearth --config /srv/demo/hearth.yaml ask "How many vacation days do new employees get?"' | tee "$out" \
  || fail "index or ask failed in the container (output above)"
grep -qi 'leave' "$out" || fail "the answer does not cite the leave policy"

echo ">> $image: serve, then SIGTERM"
name="hearth-smoke-$$"
docker run -d --name "$name" "${secure[@]}" --tmpfs /data:uid=10001,gid=10001 "$image" serve > /dev/null
for _ in $(seq 1 90); do
  docker exec "$name" hearth doctor --ready --server http://127.0.0.1:8080 > /dev/null 2>&1 && break
  sleep 2
done
docker exec "$name" hearth doctor --ready --server http://127.0.0.1:8080 || { docker logs "$name" | tail -20; docker rm -f "$name"; fail "serve never became ready"; }
docker stop -t 30 "$name" > /dev/null
code="$(docker inspect -f '{{.State.ExitCode}}' "$name")"
docker logs "$name" 2>&1 | tail -5
docker rm "$name" > /dev/null
[ "$code" = 0 ] || fail "serve exited with $code on SIGTERM, not 0"
echo ">> $image: all smoke checks passed"
