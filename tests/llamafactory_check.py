"""Load and tokenize our ShareGPT exports with LLaMA-Factory's own code (its `get_dataset`:
`dataset_info.json` → ShareGPT converter → template → supervised tokenization).

Run with a Python that has `llamafactory` (it pins its own torch/transformers, so keep it in a
separate venv):

    python tests/llamafactory_check.py --dataset-dir DIR --tokenizer TOKDIR \\
        --dataset masksearch_tags --dataset masksearch_tool_calls --template qwen --template llama3

Exit 0 when every dataset loads under every template with no example dropped, labels only on the
agent's turns (never on `<information>`), and each function call rendered; one line per check.
`tests/test_export.py` runs it (marked slow) when such a Python is available.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def check(dataset_dir: str, tokenizer: str, dataset: str, template: str) -> list[str]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    rows = json.loads(
        (
            Path(dataset_dir)
            / json.loads((Path(dataset_dir) / "dataset_info.json").read_text())[dataset][
                "file_name"
            ]
        ).read_text()
    )
    with tempfile.TemporaryDirectory() as out:
        model_args, data_args, training_args, _, _ = get_train_args(
            {
                "stage": "sft",
                "do_train": True,
                "model_name_or_path": tokenizer,
                "dataset": dataset,
                "dataset_dir": dataset_dir,
                "template": template,
                "cutoff_len": 8192,
                "output_dir": out,
                "overwrite_cache": True,
                "report_to": "none",
                "finetuning_type": "full",
            }
        )
        module = load_tokenizer(model_args)
        tok = module["tokenizer"]
        tmpl = get_template_and_fix_tokenizer(tok, data_args)
        ds = get_dataset(tmpl, model_args, data_args, training_args, stage="sft", **module)[
            "train_dataset"
        ]
    problems = []
    if len(ds) != len(rows):
        problems.append(f"{len(rows)} rows in, {len(ds)} tokenized (LLaMA-Factory dropped some)")
    for i, ex in enumerate(ds):
        labelled = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != -100]
        text = tok.decode(labelled)
        full = tok.decode(ex["input_ids"])
        if "<information>" not in full:
            problems.append(f"row {i}: the retrieved text is missing from the input")
        if "<information>" in text or "Doc 1(" in text:
            problems.append(f"row {i}: retrieved text carries labels")
        if "<answer>" not in text:
            problems.append(f"row {i}: the answer turn is not trained")
        if "famous tower Paris" not in text:
            problems.append(f"row {i}: the search turn is not trained")
        if "Which tower in Paris?" not in text:
            problems.append(f"row {i}: the thought before the search is not trained")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset-dir", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--dataset", action="append", required=True)
    ap.add_argument("--template", action="append", required=True)
    args = ap.parse_args()
    import llamafactory

    failed = 0
    for template in args.template:
        for dataset in args.dataset:
            try:
                problems = check(args.dataset_dir, args.tokenizer, dataset, template)
            except Exception as e:  # noqa: BLE001 - report and go on with the next pair
                problems = [f"{type(e).__name__}: {e}"[:400]]
            status = "ok" if not problems else "FAIL: " + "; ".join(problems[:3])
            print(
                f"llamafactory {llamafactory.__version__} template={template} dataset={dataset}: {status}"
            )
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
