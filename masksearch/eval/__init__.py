"""Evaluation: benchmark loaders, metrics, methods, runner and reports.

- `datasets.DatasetSpec`, `datasets.load_items` / `iter_items`: official formats + FlashRAG → `items.EvalItem`
- `metrics`: EM, F1, token recall (HotpotQA rules), cover-EM, substring acc, FanoutQA loose accuracy
- `scoring.extract_answer`, `scoring.score_prediction`; `judge.LLMJudge` (FreshQA-style relaxed)
- `methods.build_method("masksearch" | "rag-pe" | "agent-pe", context)`
- `runner.run_eval` (resumable `results.jsonl`), `report.write_report` (tables + chart)
- `download.download(name, out_dir)`; CLI in `commands` (`masksearch eval run|report|download`)

Submodules are imported on use (no heavy imports here).
"""
