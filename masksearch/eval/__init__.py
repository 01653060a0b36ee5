"""Evaluation: benchmark loaders, metrics, methods, runner and reports.

- `datasets.DatasetSpec`, `datasets.load_items` / `iter_items`: official formats + FlashRAG → `items.EvalItem`
- `scoring.score_prediction`: every metric of `masksearch.scoring` (EM, F1, token recall with the
  HotpotQA rules, cover-EM, substring acc, FanoutQA loose accuracy) for one item; the answer is
  `masksearch.tagformat.final_answer` (no `<answer>` scores 0); `judge.LLMJudge` (FreshQA-style relaxed)
- `methods.build_method("masksearch" | "rag-pe" | "agent-pe", context)`
- `runner.run_eval` (resumable `results.jsonl`), `report.write_report` (tables + chart)
- `download.download(name, out_dir)`; CLI in `commands` (`masksearch eval run|report|download`)

Submodules are imported on use (no heavy imports here).
"""
