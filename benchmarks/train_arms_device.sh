# Issue 23 on one H100, one device command (about 530 s): the recipe arms of the small LM from
# scratch and QAT recovery on the bf16 arm (benchmarks/train_arms_device.py says how).
# From the repository root, with the SOTU text in text/ (`mxfp4 train corpus -o text/`) carried
# along; results (no weights) in $OUT. Extra arguments go to the driver.
#   bash benchmarks/train_arms_device.sh
export PYTHONPATH=src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
: "${OUT:?set OUT to the results folder}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
timeout -k 10 550 python benchmarks/train_arms_device.py --text-dir text --out "$OUT" --deadline 530 "$@"
echo "train_arms rc $?"; ls -l "$OUT"
