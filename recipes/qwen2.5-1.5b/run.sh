#!/usr/bin/env bash
# Every row of the MaskSearch paper's table on Qwen2.5-1.5B, in one script:
#   rag-pe, agent-pe        prompting baselines on the base model
#   distill                 Distilled Search-R1: SFT on HotpotQA teacher trajectories
#   search-r1               Search-R1: RL on HotpotQA
#   sft-sft                 MaskSearch SFT/SFT: SFT on RAMP trajectories, then on HotpotQA ones
#   rl-rl                   MaskSearch RL/RL: RL on RAMP questions (curriculum), then on HotpotQA
# Read recipes/qwen2.5-1.5b/README.md first. From the repository root of a clone, on a GPU machine:
#   pip install -e '.[train,deepspeed]' vllm
#   CORPUS=wiki18.jsonl TEACHER=openai-compatible:Qwen2.5-72B-Instruct@http://HOST:8000/v1 \
#     bash recipes/qwen2.5-1.5b/run.sh [--dry-run] [--rows a,b] [--skip STAGE]...
#
# --dry-run       print every stage's command (what it needs, what it makes) and check that each
#                 input a stage needs is made by an earlier stage or already exists; run nothing
# --rows LIST     only these rows (comma-separated; default: all six) and the stages they need
# --skip STAGE    do not run STAGE (its outputs must already exist; the check says so otherwise)
#
# Stages resume: a stage whose outputs exist and whose done-marker ($W/.done/STAGE) was written
# after it succeeded is skipped; an interrupted stage reruns and continues (mask/generate/eval skip
# finished items, training resumes from its latest checkpoint-*). The vLLM servers the eval stages
# start run in their own process groups and are stopped when the stage ends, and on exit, error,
# Ctrl-C or SIGTERM (trap), workers included.
set -euo pipefail

DRY=0
ROWS_ARG="rag-pe,agent-pe,distill,search-r1,sft-sft,rl-rl"
SKIP=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --rows) ROWS_ARG=${2:?--rows needs a list}; shift ;;
    --skip) SKIP+=("${2:?--skip needs a stage name}"); shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

: "${CORPUS:?set CORPUS to a FlashRAG-format corpus JSONL (id, contents)}"
: "${TEACHER:?set TEACHER to the model spec that masks and generates (e.g. a 72B served by vLLM)}"
JUDGE="${JUDGE:-$TEACHER}"          # LLM judge that keeps only correct trajectories
NGPU="${NGPU:-8}"
N_RAMP="${N_RAMP:-20000}"           # RAMP questions to generate trajectories for (and RL Stage I)
N_HQA="${N_HQA:-20000}"             # HotpotQA train questions to generate trajectories for
W="${W:-runs/qwen2.5-1.5b}"
BASE="${BASE:-Qwen/Qwen2.5-1.5B-Instruct}"
R=recipes/qwen2.5-1.5b
ACC="accelerate launch --config_file masksearch/training/configs/accelerate_zero2.yaml --num_processes $NGPU -m masksearch.cli"
RETR="bm25:$W/index"
TAGS="--base-model Qwen2.5-1.5B"
DATASETS="hotpotqa musique 2wikimultihopqa bamboogle fanoutqa"   # + freshqa with web search

IFS=, read -r -a ROWS <<< "$ROWS_ARG"
for r in "${ROWS[@]}"; do
  case "$r" in rag-pe|agent-pe|distill|search-r1|sft-sft|rl-rl) ;;
    *) echo "error: unknown row $r (rag-pe, agent-pe, distill, search-r1, sft-sft, rl-rl)" >&2; exit 2 ;;
  esac
done

# -- servers: own process group each, stopped on stage end / exit / interrupt --------------------
SERVER_PIDS=()
stop_servers() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill -TERM -- "-$pid" 2> /dev/null || true
  done
  for pid in "${SERVER_PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2> /dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2> /dev/null || true
  done
  SERVER_PIDS=()
}
trap stop_servers EXIT
trap 'stop_servers; exit 130' INT
trap 'stop_servers; exit 143' TERM

serve() {  # serve DIR NAME PORT: an OpenAI-compatible vLLM server, ready when this returns
  local dir=$1 name=$2 port=$3
  mkdir -p "$W/logs"
  setsid vllm serve "$dir" --served-model-name "$name" --port "$port" \
    --gpu-memory-utilization 0.45 > "$W/logs/vllm-$name.log" 2>&1 &
  SERVER_PIDS+=("$!")
  local pid=$!
  for _ in $(seq 1 360); do
    curl -sf "http://localhost:$port/v1/models" > /dev/null && return 0
    kill -0 "$pid" 2> /dev/null || { echo "error: vLLM for $dir died, see $W/logs/vllm-$name.log" >&2; return 1; }
    sleep 5
  done
  echo "error: vLLM for $dir not ready after 30 min" >&2
  return 1
}

bench_args() {  # -d NAME=FILE for the five datasets searched in the corpus
  local d
  for d in $DATASETS; do printf -- '-d %s=%s ' "$d" "$(cat "$W/bench/$d.file")"; done
}

eval_model() {  # eval_model DIR NAME PORT METHODS TAGS...: serve a model, run eval, stop it
  local dir=$1 name=$2 port=$3 methods=$4; shift 4
  serve "$dir" "$name" "$port"
  local spec="openai-compatible:$name@http://localhost:$port/v1" m margs=()
  for m in $methods; do margs+=(-m "$m"); done
  # shellcheck disable=SC2046
  masksearch eval run $(bench_args) "${margs[@]}" --model "$spec" --retriever "$RETR" "$@" \
    --out "$W/eval"
  # FreshQA asks about the present: it searches the web
  masksearch eval run -d "freshqa=$(cat "$W/bench/freshqa.file")" "${margs[@]}" --model "$spec" \
    --retriever web "$@" --out "$W/eval"
  stop_servers
}

fetch_bench() {  # fetch_bench NAME [download args]: download, record the data file's path
  local name=$1; shift
  local path
  path=$(masksearch eval download "$name" --out "$W/bench" "$@" | sed -n 's/^saved //p' | tail -n 1)
  [ -n "$path" ] && printf '%s\n' "$path" > "$W/bench/$name.file"
}

fetch_hotpotqa_train() {  # FlashRAG's HotpotQA train split (question, golden_answers)
  local path
  path=$(masksearch eval download hotpotqa --source flashrag --split train --out "$W/bench/train" \
    | sed -n 's/^saved //p' | tail -n 1)
  [ -n "$path" ] && printf '%s\n' "$path" > "$W/bench/hotpotqa_train.file"
}

split_hotpotqa() {  # HotpotQA train → 512 held out (RL monitoring), teacher questions, RL questions
  shuf --random-source=<(yes) "$(cat "$W/bench/hotpotqa_train.file")" > "$W/hotpotqa_train.shuf.jsonl"
  head -n 512 "$W/hotpotqa_train.shuf.jsonl" > "$W/hotpotqa_heldout.jsonl"
  tail -n +513 "$W/hotpotqa_train.shuf.jsonl" > "$W/hotpotqa_rl_questions.jsonl"
  head -n "$N_HQA" "$W/hotpotqa_rl_questions.jsonl" > "$W/hotpotqa_sft_questions.jsonl"
}

split_ramp() {
  head -n "$N_RAMP" "$W/ramp_masked.jsonl" > "$W/ramp_train.jsonl"
  tail -n 512 "$W/ramp_masked.jsonl" > "$W/ramp_heldout.jsonl"
}

# -- stages -------------------------------------------------------------------------------------
declare -A MADE=()
MODE=check
N_STAGES=0
wants() {  # wants ROW...: true when one of these rows is selected
  local r s
  for r in "$@"; do for s in "${ROWS[@]}"; do [ "$r" = "$s" ] && return 0; done; done
  return 1
}
skipped() { local s; for s in "${SKIP[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

# stage NAME "NEEDS" "MAKES" COMMAND: NEEDS/MAKES are space-separated paths
stage() {
  local name=$1 needs=$2 makes=$3 cmd=$4 p
  for p in $needs; do
    if [ -z "${MADE[$p]:-}" ] && [ ! -e "$p" ]; then
      echo "error: stage $name needs $p, which no earlier stage makes and which does not exist" >&2
      exit 2
    fi
  done
  if skipped "$name"; then
    [ "$MODE" = print ] && printf '[%s] skipped (--skip): its outputs must exist: %s\n\n' "$name" "$makes"
    return 0
  fi
  for p in $makes; do MADE[$p]=$name; done
  N_STAGES=$((N_STAGES + 1))
  case "$MODE" in
    check) return 0 ;;
    print)
      printf '[%s]\n  needs: %s\n  makes: %s\n  $ %s\n\n' "$name" "${needs:-(nothing)}" "$makes" "$cmd"
      return 0 ;;
  esac
  local done_all=1
  for p in $makes; do [ -e "$p" ] || done_all=0; done
  if [ -e "$W/.done/$name" ] && [ "$done_all" = 1 ]; then
    echo "== $name: done, skipped"
    return 0
  fi
  echo "== $name"
  eval "$cmd"
  for p in $makes; do
    [ -e "$p" ] || { echo "error: stage $name finished without making $p" >&2; exit 1; }
  done
  mkdir -p "$W/.done" && touch "$W/.done/$name"
}

plan() {
  local any_eval_data
  # shared: the retrieval index and the benchmarks (every row is evaluated)
  stage index "$CORPUS_PATH" "$W/index" \
    "masksearch index --corpus $CORPUS --out $W/index"
  for d in $DATASETS freshqa; do
    case "$d" in
      fanoutqa|freshqa) stage "bench-$d" "" "$W/bench/$d.file" "fetch_bench $d" ;;
      *) stage "bench-$d" "" "$W/bench/$d.file" "fetch_bench $d --source flashrag" ;;
    esac
  done
  any_eval_data="$(for d in $DATASETS freshqa; do printf '%s ' "$W/bench/$d.file"; done)"

  # HotpotQA train questions: teacher trajectories (SFT rows) and RL questions
  if wants distill search-r1 sft-sft rl-rl; then
    stage bench-hotpotqa-train "" "$W/bench/hotpotqa_train.file" "fetch_hotpotqa_train"
    stage hotpotqa-split "$W/bench/hotpotqa_train.file" \
      "$W/hotpotqa_heldout.jsonl $W/hotpotqa_rl_questions.jsonl $W/hotpotqa_sft_questions.jsonl" \
      "split_hotpotqa"
  fi
  if wants distill sft-sft; then
    stage hotpotqa-trajectories "$W/hotpotqa_sft_questions.jsonl $W/index" \
      "$W/hotpotqa_trajectories.sqlite" \
      "masksearch generate -i $W/hotpotqa_sft_questions.jsonl --store $W/hotpotqa_trajectories.sqlite --agent-mode multi_agent --planner-model $TEACHER --judge-model $JUDGE --retriever $RETR --max-turns 4 -c 64"
  fi
  # RAMP: masked passages (Stage I data of both MaskSearch rows)
  if wants sft-sft rl-rl; then
    stage ramp-mask "$CORPUS_PATH" "$W/ramp_masked.jsonl" \
      "masksearch mask --corpus $CORPUS --out $W/ramp_masked.jsonl --strategy llm --model $TEACHER --max-examples $((N_RAMP + 512))"
    stage ramp-split "$W/ramp_masked.jsonl" "$W/ramp_train.jsonl $W/ramp_heldout.jsonl" "split_ramp"
  fi
  if wants sft-sft; then
    stage ramp-trajectories "$W/ramp_train.jsonl $W/index" "$W/ramp_trajectories.sqlite" \
      "masksearch generate -i $W/ramp_train.jsonl --store $W/ramp_trajectories.sqlite --agent-mode multi_agent --planner-model $TEACHER --judge-model $JUDGE --retriever $RETR --max-turns 4 -c 64"
  fi
  local rl_eval="$W/hotpotqa_heldout.jsonl"
  # Distilled Search-R1: SFT of the base model on HotpotQA trajectories
  if wants distill; then
    stage train-distill "$W/hotpotqa_trajectories.sqlite" "$W/distill" \
      "$ACC train sft -c $R/sft.yaml --model $BASE --records $W/hotpotqa_trajectories.sqlite --output-dir $W/distill"
  fi
  # Search-R1: RL of the base model on HotpotQA
  if wants search-r1; then
    stage train-search-r1 "$W/hotpotqa_rl_questions.jsonl $W/index $rl_eval" "$W/search-r1" \
      "$ACC train rl -c $R/rl.yaml --model $BASE --records $W/hotpotqa_rl_questions.jsonl --retriever $RETR --output-dir $W/search-r1 --set eval_questions=[$rl_eval]"
  fi
  # MaskSearch SFT/SFT: Stage I SFT on RAMP trajectories, Stage II SFT on HotpotQA trajectories
  if wants sft-sft; then
    stage train-sft "$W/ramp_trajectories.sqlite" "$W/sft" \
      "$ACC train sft -c $R/sft.yaml --model $BASE --records $W/ramp_trajectories.sqlite --output-dir $W/sft"
    stage train-sft-sft "$W/sft $W/hotpotqa_trajectories.sqlite" "$W/sft-sft" \
      "$ACC train sft -c $R/sft.yaml --model $W/sft --records $W/hotpotqa_trajectories.sqlite --output-dir $W/sft-sft"
  fi
  # MaskSearch RL/RL: Stage I RL on RAMP questions (curriculum by mask count), Stage II on HotpotQA
  if wants rl-rl; then
    stage train-rl "$W/ramp_train.jsonl $W/ramp_heldout.jsonl $W/index" "$W/rl" \
      "$ACC train rl -c $R/rl.yaml --model $BASE --records $W/ramp_train.jsonl --retriever $RETR --output-dir $W/rl --set curriculum.enabled=true --set eval_questions=[$W/ramp_heldout.jsonl]"
    stage train-rl-rl "$W/rl $W/hotpotqa_rl_questions.jsonl $W/index $rl_eval" "$W/rl-rl" \
      "$ACC train rl -c $R/rl.yaml --model $W/rl --records $W/hotpotqa_rl_questions.jsonl --retriever $RETR --output-dir $W/rl-rl --set eval_questions=[$rl_eval]"
  fi
  # eval: one results directory, one vLLM server at a time
  local methods="" markers=""
  for r in "${ROWS[@]}"; do
    case "$r" in rag-pe|agent-pe) markers="$markers $W/.eval/base" ;; *) markers="$markers $W/.eval/$r" ;; esac
  done
  wants rag-pe && methods="rag-pe"
  wants agent-pe && methods="$methods agent-pe"
  if [ -n "$methods" ]; then
    stage eval-base "$any_eval_data $W/index" "$W/.eval/base" \
      "eval_model $BASE qwen2.5-1.5b 8101 '$methods' $TAGS && mkdir -p $W/.eval && touch $W/.eval/base"
  fi
  wants distill && stage eval-distill "$any_eval_data $W/index $W/distill" "$W/.eval/distill" \
    "eval_model $W/distill distilled-search-r1-1.5b 8102 masksearch $TAGS --post-train SFT --label 'Distilled Search-R1' && mkdir -p $W/.eval && touch $W/.eval/distill"
  wants search-r1 && stage eval-search-r1 "$any_eval_data $W/index $W/search-r1" "$W/.eval/search-r1" \
    "eval_model $W/search-r1 search-r1-1.5b 8103 masksearch $TAGS --post-train RL --label 'Search-R1' && mkdir -p $W/.eval && touch $W/.eval/search-r1"
  wants sft-sft && stage eval-sft-sft "$any_eval_data $W/index $W/sft-sft" "$W/.eval/sft-sft" \
    "eval_model $W/sft-sft masksearch-1.5b-sft-sft 8104 masksearch $TAGS --pre-train SFT --post-train SFT && mkdir -p $W/.eval && touch $W/.eval/sft-sft"
  wants rl-rl && stage eval-rl-rl "$any_eval_data $W/index $W/rl-rl" "$W/.eval/rl-rl" \
    "eval_model $W/rl-rl masksearch-1.5b-rl-rl 8105 masksearch $TAGS --pre-train RL --post-train RL && mkdir -p $W/.eval && touch $W/.eval/rl-rl"
  stage report "$(printf '%s\n' $markers | sort -u | tr '\n' ' ')" "$W/eval/summary.md" \
    "masksearch eval report $W/eval"
  return 0
}

CORPUS_PATH=$CORPUS
[ "$DRY" = 1 ] && [ ! -e "$CORPUS" ] && MADE[$CORPUS]=external   # a dry run needs no corpus yet
MODE=check plan
if [ "$DRY" = 1 ]; then
  MADE=()
  [ ! -e "$CORPUS" ] && MADE[$CORPUS]=external
  echo "# rows: ${ROWS[*]}  (W=$W, $NGPU GPUs)"
  echo
  N_STAGES=0
  MODE=print plan
  echo "# $N_STAGES stages; every input is made by an earlier stage or exists"
  exit 0
fi
MADE=()
mkdir -p "$W/bench"
MODE=run plan
echo "table: $W/eval/summary.md (paper targets: $R/README.md)"
