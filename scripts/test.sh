#!/usr/bin/env bash
# The whole test suite: prerequisites from Debian, a type check of the tests,
# then vitest; ends with one plain "tests: N passed, N failed, N skipped" line
# for readers of CI logs (skipped counts skipped and todo tests: a skip is
# not a pass).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-prereqs.sh
# tsconfig.json (the build) covers src/ and scripts/ only; vitest strips types
# without checking them. A type error in a test fails the run before it starts.
if ! npx tsc -p tsconfig.test.json --noEmit; then
  echo "tests: not run: type errors (npx tsc -p tsconfig.test.json --noEmit)"
  exit 2
fi
report=$(mktemp)
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
set -e
node -e '
  const fs = require("fs");
  try {
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  } catch { console.log("tests: 0 passed, 1 failed, 0 skipped (no vitest report)"); }
' "$report"
rm -f "$report"
exit $status
