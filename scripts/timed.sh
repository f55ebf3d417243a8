#!/bin/sh
# timed.sh PHASE COMMAND...: runs COMMAND and then prints how long the phase took, so that
# `make test` shows where its minutes go. Exits with COMMAND's status.
phase=$1
shift
start=$(date +%s)
status=0
"$@" || status=$?
echo "phase $phase: $(($(date +%s) - start)) s$([ "$status" -eq 0 ] || echo " (failed, exit $status)")"
exit "$status"
