#!/bin/sh
# Test hook: writes to stdout without end.
exec yes 0xdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef
