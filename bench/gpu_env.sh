# Sourced by the GPU scripts (bench/gpu_check.sh, bench/gpu_speed.sh) on a lent GPU machine, which has no network:
# installs the packages its image lacks from the wheels carried in .whl/ (README "Where the time goes"), then the
# environment both scripts run under.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
