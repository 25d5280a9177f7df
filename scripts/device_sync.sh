#!/usr/bin/env bash
# Before a device call: packs, into .cache/ (ignored by git; carry it with
# `carry: [".devkit", ".cache"]`), the last commit's version of every tracked file that differs
# from it in the working tree (git archive of those paths) and the list of untracked files. On
# the device machine, `SYNC=1 bash scripts/device_check.sh` then deletes those untracked files
# from the copied tree and unpacks the packed files with fresh mtimes, so the build there is
# exactly the last commit (the copy's own .git is stale, and other work in progress — helpers
# editing the same checkout — is dropped). Only the differing files travel twice, which keeps the
# call under the device tool's 64 MiB limit when other inputs (.cache/node.xz) travel too.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
git ls-files --others --exclude-standard >.cache/untracked.txt
mapfile -t changed < <(git diff --name-only HEAD)
if [ ${#changed[@]} -gt 0 ]; then
  git archive HEAD -- "${changed[@]}" | gzip -1 >.cache/head.tgz
else
  tar czf .cache/head.tgz -T /dev/null
fi
echo "packed $(git log -1 --oneline): ${#changed[@]} changed files to restore ($(du -h .cache/head.tgz | cut -f1)), $(wc -l <.cache/untracked.txt) untracked files to drop"
