#!/bin/sh
# Test hook: a lot of stderr, then the reason, then a non-zero exit.
cat > /dev/null
i=0
while [ "$i" -lt 400 ]; do
  printf 'noise line %d\n' "$i" >&2
  i=$((i + 1))
done
printf 'fatal: chain rpc unreachable\n' >&2
exit 3
