#!/usr/bin/env bash
# The whole test suite: prerequisites from Debian, then vitest; ends with one
# plain "tests: N passed, N failed" line for readers of CI logs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-prereqs.sh
report=$(mktemp)
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
set -e
node -e '
  const fs = require("fs");
  try {
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  } catch { console.log("tests: 0 passed, 1 failed"); }
' "$report"
rm -f "$report"
exit $status
