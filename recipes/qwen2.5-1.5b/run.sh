#!/usr/bin/env bash
# MaskSearch SFT->RL for Qwen2.5-1.5B, end to end: RAMP data -> SFT (Stage I) -> RL on HotpotQA
# (Stage II) -> eval on the six benchmarks, every row in one results directory.
# Read recipes/qwen2.5-1.5b/README.md first. Run from the repository root on a GPU machine:
#   CORPUS=wiki18.jsonl TEACHER=openai-compatible:Qwen2.5-72B-Instruct@http://HOST:8000/v1 \
#     bash recipes/qwen2.5-1.5b/run.sh
# Each step is resumable (mask/generate/eval skip what is done; training resumes from the
# latest checkpoint), so a rerun after a failure continues where it stopped.
set -euo pipefail

: "${CORPUS:?set CORPUS to a FlashRAG-format corpus JSONL (id, contents)}"
: "${TEACHER:?set TEACHER to the model spec that masks and generates (e.g. a 72B served by vLLM)}"
JUDGE="${JUDGE:-$TEACHER}"            # LLM judge that keeps only correct trajectories
NGPU="${NGPU:-8}"
N_RAMP="${N_RAMP:-20000}"             # RAMP questions to generate trajectories for
W=runs/qwen2.5-1.5b
BASE=Qwen/Qwen2.5-1.5B-Instruct
ACC="accelerate launch --config_file masksearch/training/configs/accelerate_zero2.yaml --num_processes $NGPU"
mkdir -p "$W/bench"

# 1. retrieval index over the corpus (BM25; `--kind dense` for e5, see docs/retrieval.md)
[ -d "$W/index" ] || masksearch index --corpus "$CORPUS" --out "$W/index"

# 2. RAMP: mask salient spans (LLM span extraction, as the paper), plus a held-out slice
masksearch mask --corpus "$CORPUS" --out "$W/ramp_masked.jsonl" --strategy llm --model "$TEACHER" \
  --max-examples "$((N_RAMP + 512))"
head -n "$N_RAMP" "$W/ramp_masked.jsonl" > "$W/ramp_train.jsonl"
tail -n 512 "$W/ramp_masked.jsonl" > "$W/ramp_heldout.jsonl"

# 3. trajectories from the multi-agent teacher graph, judged (only accepted ones are trained on)
masksearch generate -i "$W/ramp_train.jsonl" --store "$W/ramp_trajectories.sqlite" \
  --agent-mode multi_agent --planner-model "$TEACHER" --judge-model "$JUDGE" \
  --retriever "bm25:$W/index" --max-turns 4 -c 64

# 4. Stage I: SFT on the RAMP trajectories
$ACC -m masksearch.cli train sft -c recipes/qwen2.5-1.5b/sft.yaml

# 5. benchmarks (FlashRAG copies; FanoutQA / FreshQA from their official hosts)
for d in hotpotqa musique 2wikimultihopqa bamboogle fanoutqa freshqa; do
  [ -d "$W/bench/$d" ] || masksearch eval download "$d" --out "$W/bench"
done
first() { find "$1" -maxdepth 1 -type f \( -name '*.jsonl' -o -name '*.json' -o -name '*.csv' \) | sort | head -n 1; }
[ -f "$W/bench/hotpotqa_train.jsonl" ] || {
  masksearch eval download hotpotqa --source flashrag --split train --out "$W/bench/train"
  cp "$(first "$W/bench/train/hotpotqa")" "$W/bench/hotpotqa_train.jsonl"
}
[ -f "$W/bench/hotpotqa_dev.jsonl" ] || head -n 512 "$(first "$W/bench/hotpotqa")" > "$W/bench/hotpotqa_dev.jsonl"

# 6. Stage II: RL (GRPO + DAPO, vLLM rollouts) on HotpotQA questions from the SFT checkpoint
$ACC -m masksearch.cli train rl -c recipes/qwen2.5-1.5b/rl.yaml

# 7. eval: the base model's prompted baselines and the trained agent, one results directory
DATA=()
for d in hotpotqa musique 2wikimultihopqa bamboogle fanoutqa; do DATA+=(-d "$d=$(first "$W/bench/$d")"); done
serve() {  # an OpenAI-compatible vLLM server for a checkpoint; prints its model spec
  local dir=$1 name=$2 port=$3
  vllm serve "$dir" --served-model-name "$name" --port "$port" --gpu-memory-utilization 0.45 \
    > "$W/vllm-$name.log" 2>&1 &
  until curl -sf "http://localhost:$port/v1/models" > /dev/null; do sleep 5; done
  echo "openai-compatible:$name@http://localhost:$port/v1"
}
BASE_SPEC=$(serve "$BASE" qwen2.5-1.5b 8101)
RL_SPEC=$(serve "$W/sft-rl" masksearch-1.5b-sft-rl 8102)
masksearch eval run "${DATA[@]}" -m rag-pe -m agent-pe --model "$BASE_SPEC" \
  --retriever "bm25:$W/index" --base-model Qwen2.5-1.5B --out "$W/eval"
masksearch eval run "${DATA[@]}" -m masksearch --model "$RL_SPEC" --retriever "bm25:$W/index" \
  --base-model Qwen2.5-1.5B --pre-train SFT --post-train RL --out "$W/eval"
# FreshQA needs fresh web results
masksearch eval run -d "freshqa=$(first "$W/bench/freshqa")" -m masksearch --model "$RL_SPEC" \
  --retriever web --base-model Qwen2.5-1.5B --pre-train SFT --post-train RL --out "$W/eval"
masksearch eval report "$W/eval"
kill %1 %2 2> /dev/null || true
echo "table: $W/eval/summary.md (paper targets: recipes/qwen2.5-1.5b/README.md)"
