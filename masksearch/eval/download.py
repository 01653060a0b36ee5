"""Download the benchmarks from their official hosts or the FlashRAG mirror on Hugging Face.

Each download lands atomically (temp file + rename) and is then parsed with our loader, so a
truncated or HTML-error download is reported instead of silently kept. Offline, every source
fails with a `DownloadError` naming the URL and the manual alternative.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from masksearch.errors import InputError, MaskSearchError

log = logging.getLogger(__name__)

FLASHRAG_REPO = "RUC-NLPIR/FlashRAG_datasets"
FRESHQA_SHEET_ID = "1p0qXk1iqSwV9Pq2DpivwtxfKUjLyK_n-k3jgtlDb_54"  # "FreshQA May 13, 2024" (README)


class DownloadError(MaskSearchError):
    """A benchmark could not be fetched (offline, moved, or not what we expected)."""


@dataclass(frozen=True)
class Source:
    """Where one benchmark split comes from. `member`: file inside a zip archive."""

    url: str
    filename: str
    member: str | None = None
    extra_members: tuple[str, ...] = ()


def official_source(name: str, split: str, sheet_id: str = FRESHQA_SHEET_ID) -> Source:
    if name == "hotpotqa":
        if split not in ("dev", "train"):
            raise DownloadError("HotpotQA answers are public for train and dev only")
        fname = "hotpot_dev_distractor_v1.json" if split == "dev" else "hotpot_train_v1.1.json"
        return Source(f"http://curtis.ml.cmu.edu/datasets/hotpot/{fname}", fname)
    if name == "fanoutqa":
        if split != "dev":
            raise DownloadError(
                "FanoutQA answers are public for dev only (test goes to the leaderboard)"
            )
        return Source(
            "https://raw.githubusercontent.com/zhudotexe/fanoutqa/main/fanoutqa/data/"
            "fanout-final-dev.json",
            "fanout-final-dev.json",
        )
    if name == "musique":
        fname = f"musique_ans_v1.0_{split}.jsonl"
        return Source(
            "https://drive.usercontent.google.com/download?id=1tGdADlNjWFaHLeZZGShh2IRcpO6Lv24h"
            "&export=download&confirm=t",
            fname,
            member=f"data/{fname}",
        )
    if name == "2wikimultihopqa":
        return Source(
            "https://www.dropbox.com/s/7ep3h8unu2njfxv/data_ids.zip?dl=1",
            f"{split}.json",
            member=f"{split}.json",
            extra_members=("id_aliases.json",),
        )
    if name == "freshqa":
        return Source(
            f"https://docs.google.com/spreadsheets/d/{sheet_id}/export?format=csv", "freshqa.csv"
        )
    raise DownloadError(f"no official download for {name!r}; use --source flashrag")


FLASHRAG_CONFIGS = {
    "hotpotqa": "hotpotqa",
    "2wikimultihopqa": "2wikimultihopqa",
    "musique": "musique",
    "bamboogle": "bamboogle",
}
DEFAULT_SPLIT = {"bamboogle": "test", "freshqa": "test"}


def download(
    name: str,
    out_dir: str | Path,
    *,
    source: str = "official",
    split: str | None = None,
    sheet_id: str = FRESHQA_SHEET_ID,
    timeout: float = 60.0,
) -> Path:
    """Fetch one benchmark split into `out_dir/<name>/`; returns the data file (validated)."""
    from masksearch.eval.datasets import DatasetSpec, canonical_name, load_items
    from masksearch.fileio import check_output_dir, output_error

    name = canonical_name(name)
    split = split or DEFAULT_SPLIT.get(name, "dev")
    if name == "bamboogle" and source == "official":
        source = "flashrag"  # the official copy is a Google Sheet without a stable export; FlashRAG mirrors it
    # every argument is checked before anything is fetched or created
    if source == "flashrag":
        if name not in FLASHRAG_CONFIGS:
            raise DownloadError(f"{name!r} is not in FlashRAG_datasets; use --source official")
        official = None
    elif source == "official":
        official = official_source(name, split, sheet_id)
    else:
        raise DownloadError(f"unknown source {source!r} (official or flashrag)")
    target_dir = check_output_dir(Path(out_dir) / name, what="--out")
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, target_dir) from None
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".download-") as tmp:
        work = Path(tmp)
        if official is None:
            path = _flashrag(name, split, work)
        else:
            path = _official(official, work, timeout, name)
        spec = DatasetSpec(name, path, split if name == "freshqa" and split != "all" else None)
        try:
            n = len(load_items(spec))  # validate before anything lands in target_dir
        except InputError as e:
            raise DownloadError(
                f"the downloaded {name} file is not what we expected ({e.reason}, "
                f"field {e.field}, line {e.line}); nothing was saved"
            ) from None
        if n == 0:
            raise DownloadError(f"{name} download holds no questions (split {split!r})")
        for f in work.iterdir():
            if f.is_file():
                f.replace(target_dir / f.name)
    log.info("%s: %d questions in %s", name, n, target_dir / path.name)
    return target_dir / path.name


def _flashrag(name: str, split: str, target_dir: Path) -> Path:
    config = FLASHRAG_CONFIGS.get(name)
    if config is None:
        raise DownloadError(f"{name!r} is not in FlashRAG_datasets; use --source official")
    filename = f"{config}/{split}.jsonl"
    try:
        from huggingface_hub import hf_hub_download

        cached = hf_hub_download(repo_id=FLASHRAG_REPO, repo_type="dataset", filename=filename)
    except Exception as e:  # noqa: BLE001 - offline, missing file, auth, ...
        raise DownloadError(
            f"could not download {filename} from the Hugging Face dataset {FLASHRAG_REPO} "
            f"({type(e).__name__}: {str(e)[:200]}). Check the network (and HF_HUB_OFFLINE), or fetch "
            f"https://huggingface.co/datasets/{FLASHRAG_REPO}/blob/main/{filename} by hand and pass it "
            f"with --dataset {name}=PATH"
        ) from None
    dest = target_dir / f"flashrag_{split}.jsonl"
    shutil.copyfile(cached, dest)
    return dest


def _official(src: Source, work: Path, timeout: float, name: str) -> Path:
    import httpx

    raw = work / ".raw"
    try:
        with httpx.stream("GET", src.url, follow_redirects=True, timeout=timeout) as resp:
            resp.raise_for_status()
            with open(raw, "wb") as fh:
                for chunk in resp.iter_bytes(1 << 20):
                    fh.write(chunk)
    except httpx.HTTPError as e:
        raise DownloadError(
            f"could not download {src.url} ({type(e).__name__}: {e}). Check the network, or "
            f"download it by hand and pass it with --dataset {name}=PATH"
        ) from None
    if src.member is None:
        raw.replace(work / src.filename)
    else:
        _extract(raw, src, src.member, work)
        raw.unlink()
    return work / src.filename


def _extract(archive: Path, src: Source, main: str, work: Path) -> None:
    """Unpack `main` (the split's file, as `src.filename`) and `src.extra_members`."""
    if not zipfile.is_zipfile(archive):
        raise DownloadError(
            f"{src.url} did not return a zip archive (the host may ask for a manual "
            "download or a login); download it by hand"
        )
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        for member, dest in [(main, src.filename), *((m, m) for m in src.extra_members)]:
            found = next((n for n in names if n == member or n.endswith("/" + member)), None)
            if found is None:
                raise DownloadError(f"{member} not found in the archive from {src.url}")
            with zf.open(found) as fin, open(work / dest, "wb") as fout:
                shutil.copyfileobj(fin, fout)
