#!/usr/bin/env bash
# The README's first steps, as a newcomer runs them: `make run`, then the first CLI call in another
# shell, then Ctrl-C/SIGTERM. Fails unless Paris ranks first and the server drains and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
setsid make run >"$log" 2>&1 &
group=$!
cleanup() { kill -TERM -- "-$group" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  if .venv/bin/rerankd health --timeout 1 >/dev/null 2>&1; then break; fi
  sleep 1
done
.venv/bin/rerankd health
answer=$(.venv/bin/rerankd rerank "What is the capital of France?" \
  --doc "Berlin is the capital of Germany." \
  --doc "Paris is the capital of France." \
  --doc "Madrid is the capital of Spain." --json)
echo "$answer"
python3 -c 'import json,sys; r=json.loads(sys.argv[1])["results"]; assert r[0]["text"].startswith("Paris"), r' "$answer"
.venv/bin/rerankd rerank "The tech company Apple is known for its innovative products like the iPhone." \
  --doc "Apple is a popular fruit known for its sweetness and crisp texture." \
  --doc "Apple Inc. has revolutionized the tech industry with its sleek designs and user-friendly interfaces." \
  --doc "Many people enjoy eating apples as a healthy snack." \
  --doc "An apple a day keeps the doctor away, as the saying goes." | tee /dev/stderr | sed -n 3p | grep -q "Apple Inc."
server=$(pgrep -g "$group" -f "rerankd serve" | head -n 1)
kill -TERM "$server"
for _ in $(seq 1 30); do kill -0 "$server" 2>/dev/null || break; sleep 1; done
if kill -0 "$server" 2>/dev/null; then echo "server still running 30 s after SIGTERM"; cat "$log"; exit 1; fi
wait "$group" || { echo "make run exited non-zero after SIGTERM"; cat "$log"; exit 1; }
grep -q '"msg":"stopped"' "$log" || { echo "no clean drain in the log"; cat "$log"; exit 1; }
trap - EXIT
echo "make run smoke test: OK"
