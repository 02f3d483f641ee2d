#!/bin/sh
# Test hook: records its pid in "$1", then never finishes. exec keeps the
# pid, so the test can check that this very process was killed.
printf '%s\n' "$$" > "$1"
exec sleep 300
