#!/bin/sh
# Test hook: succeeds without printing a reference.
cat > /dev/null
