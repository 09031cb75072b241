# Source on the lent GPU machine (device `run`): install the carried wheels into /tmp/site, use the checkout.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
for bundle in "$@"; do
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/"$bundle"/*.whl
done
# `slscale bench` alone (a script, so that `timeout` can run it): other commands import packages the GPU lacks.
mkdir -p /tmp/bin && export PATH=/tmp/bin:$PATH
cat >/tmp/bin/slscale <<'SCRIPT'
#!/usr/bin/env bash
[ "$1" = bench ] || { echo "error: only 'slscale bench' runs on the GPU machine" >&2; exit 2; }
shift
exec python3 -c 'import sys, typer; from sl_scaling.cli.bench import command; sys.argv[0] = "slscale bench"; typer.run(command)' "$@"
SCRIPT
chmod +x /tmp/bin/slscale
