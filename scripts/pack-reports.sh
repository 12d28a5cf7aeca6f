#!/usr/bin/env bash
# Usage: scripts/pack-reports.sh ARCHIVE SECONDS COMMAND...
# Runs COMMAND for at most SECONDS, then packs every file under reports/ that it wrote or changed into
# ARCHIVE (.tgz), and exits with COMMAND's status (124: stopped at SECONDS).
#
# For the GPU machine (`make validate-gpu PACK=$OUT/reports.tgz`): a device call that outruns its own
# limit is killed with everything in it, packing included, so the command gets a shorter limit of its
# own. Only what changed is packed, so unpacking it here (`tar -xzf .../reports.tgz`) adds the run's
# files to reports/<device-slug>/ and overwrites nothing else; the next call sends them back with the
# tree, and `validate` continues from them.
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ARCHIVE SECONDS COMMAND..." >&2; exit 2; }
archive=$1 seconds=$2
shift 2
since=$(mktemp)
trap 'rm -f "$since"' EXIT
# SIGINT, as Ctrl-C would, so the run stops as it does for a person; SIGKILL if it is still there 30 s later.
timeout -s INT -k 30 "$seconds" "$@"
status=$?
[ "$status" -eq 124 ] && echo "stopped after $seconds s: run the same command again to continue" >&2
mkdir -p "$(dirname "$archive")"
find reports -type f -newer "$since" ! -name '*.lock' -print0 | tar -czf "$archive" --null -T -
echo "packed into $archive:"
tar -tzf "$archive" | sed 's/^/  /'
exit "$status"
