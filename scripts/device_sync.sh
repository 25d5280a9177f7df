#!/usr/bin/env bash
# Before a device call: packs the last commit (git archive) and the list of untracked files into
# .cache/ (ignored by git; carry it with `carry: [".devkit", ".cache"]`). On the device machine,
# `SYNC=1 bash scripts/device_check.sh` then deletes those untracked files from the copied tree
# and unpacks the commit with fresh mtimes, so the build there is exactly the last commit (the
# copy's own .git is stale and other work in progress is dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
git archive HEAD | gzip -1 >.cache/head.tgz
git ls-files --others --exclude-standard >.cache/untracked.txt
echo "packed $(git log -1 --oneline) ($(du -h .cache/head.tgz | cut -f1)), $(wc -l <.cache/untracked.txt) untracked files to drop"
