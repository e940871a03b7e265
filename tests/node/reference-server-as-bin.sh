#!/bin/sh
# Lets the Rust e2e tests run against the reference JS server, to check the tests themselves:
#   FIELDNOTES_BIN=$PWD/tests/node/reference-server-as-bin.sh cargo test -p fieldnotes-e2e
# Accepts the same `serve --listen ADDR --data-dir DIR` command line as our binary.
[ "$1" = serve ] && shift
exec node "$(dirname "$0")/reference-server.mjs" "$@"
