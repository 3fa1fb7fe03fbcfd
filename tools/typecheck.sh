#!/usr/bin/env bash
# Type-checks the llm_assets namespace as it is installed, with mypy.
#
# The repository's resources/ and sensors/ folders install as llm_assets.resources and
# llm_assets.sensors (setuptools package-dir in pyproject.toml). mypy finds modules by folder
# and cannot follow that mapping: `mypy llm_assets resources` would check a top-level package
# `resources` that does not exist once installed, and miss how llm_assets.* imports it. So this
# builds the installed layout as a tree of symlinks (every entry of llm_assets/, plus resources
# and sensors) inside mypy's cache folder, which git and ruff already ignore, checks the tree,
# and prints paths as they are in the repository. Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mypy=${MYPY:-$root/.venv/bin/mypy}
case $mypy in */* ) [[ $mypy = /* ]] || mypy=$root/$mypy ;; esac  # a path, from the root
base=$root/.mypy_cache/namespace
tree=$base/llm_assets

rm -rf "$base"
mkdir -p "$tree"
for entry in "$root"/llm_assets/*; do
    [ "$(basename "$entry")" = __pycache__ ] || ln -s "$entry" "$tree/"
done
ln -s "$root/resources" "$tree/resources"
ln -s "$root/sensors" "$tree/sensors"

# From the tree's base, `llm_assets` is the tree, never the repository's llm_assets/ folder.
cd "$base"
"$mypy" --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" "$@" llm_assets \
    | sed -e 's#^llm_assets/resources/#resources/#' -e 's#^llm_assets/sensors/#sensors/#'
