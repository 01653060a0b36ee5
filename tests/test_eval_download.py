"""`eval download` without the network: offline errors, archive extraction, validation before saving."""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from masksearch.eval import download as dl
from masksearch.eval.datasets import DatasetSpec, load_items

DATA = Path(__file__).parent / "data" / "eval"


def fake_stream(body: bytes | Exception, seen: list[str]):
    @contextmanager
    def stream(method, url, **kwargs):
        seen.append(url)
        if isinstance(body, Exception):
            raise body
        request = httpx.Request(method, url)
        yield httpx.Response(200, content=body, request=request)

    return stream


def test_offline_http_error_is_clear(monkeypatch, tmp_path):
    seen: list[str] = []
    monkeypatch.setattr(
        httpx, "stream", fake_stream(httpx.ConnectError("Name or service not known"), seen)
    )
    with pytest.raises(dl.DownloadError) as err:
        dl.download("fanoutqa", tmp_path)
    msg = str(err.value)
    assert (
        "raw.githubusercontent.com/zhudotexe/fanoutqa" in msg and "--dataset fanoutqa=PATH" in msg
    )
    assert seen and not list((tmp_path / "fanoutqa").glob("*.json"))


def test_offline_hf_error_is_clear(monkeypatch, tmp_path):
    import huggingface_hub

    def boom(**kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    with pytest.raises(dl.DownloadError, match="RUC-NLPIR/FlashRAG_datasets.*bamboogle=PATH"):
        dl.download("bamboogle", tmp_path)  # official bamboogle comes from the FlashRAG mirror


def test_flashrag_copy_is_validated(monkeypatch, tmp_path):
    import huggingface_hub

    got = {}

    def fake(**kwargs):
        got.update(kwargs)
        return str(DATA / "flashrag_hotpotqa_dev.jsonl")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    path = dl.download("hotpotqa", tmp_path, source="flashrag")
    assert got == {
        "repo_id": "RUC-NLPIR/FlashRAG_datasets",
        "repo_type": "dataset",
        "filename": "hotpotqa/dev.jsonl",
    }
    assert path == tmp_path / "hotpotqa" / "flashrag_dev.jsonl"
    assert len(load_items(DatasetSpec("hotpotqa", path))) == 2


def test_official_json_saved_after_validation(monkeypatch, tmp_path):
    seen: list[str] = []
    monkeypatch.setattr(
        httpx, "stream", fake_stream((DATA / "fanout-final-dev.json").read_bytes(), seen)
    )
    path = dl.download("fanout", tmp_path)
    assert path.name == "fanout-final-dev.json" and path.parent.name == "fanoutqa"
    assert [p.name for p in path.parent.iterdir()] == ["fanout-final-dev.json"]  # no temp leftovers

    monkeypatch.setattr(httpx, "stream", fake_stream(b"<html>quota exceeded</html>", seen))
    with pytest.raises(dl.DownloadError, match="invalid JSON.*nothing was saved"):
        dl.download("hotpotqa", tmp_path)
    assert not (tmp_path / "hotpotqa" / "hotpot_dev_distractor_v1.json").exists()


def test_2wiki_zip_extracts_data_and_aliases(monkeypatch, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data_ids/dev.json", (DATA / "2wiki" / "dev.json").read_text(encoding="utf-8"))
        zf.writestr(
            "data_ids/id_aliases.json",
            (DATA / "2wiki" / "id_aliases.json").read_text(encoding="utf-8"),
        )
        zf.writestr("data_ids/train.json", json.dumps([]))
    seen: list[str] = []
    monkeypatch.setattr(httpx, "stream", fake_stream(buf.getvalue(), seen))
    path = dl.download("2wiki", tmp_path)
    assert "dropbox.com" in seen[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["dev.json", "id_aliases.json"]
    assert "Deutschland" in load_items(DatasetSpec("2wikimultihopqa", path))[1].golden_answers


def test_non_zip_archive_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(httpx, "stream", fake_stream(b"<html>Google Drive virus scan</html>", []))
    with pytest.raises(dl.DownloadError, match="did not return a zip archive"):
        dl.download("musique", tmp_path)


def test_freshqa_sheet_url_and_no_test_answers():
    assert dl.official_source("freshqa", "test", "SHEET").url == (
        "https://docs.google.com/spreadsheets/d/SHEET/export?format=csv"
    )
    with pytest.raises(dl.DownloadError, match="dev only"):
        dl.official_source("fanoutqa", "test")


@pytest.mark.network
def test_real_fanoutqa_download(tmp_path):
    path = dl.download("fanoutqa", tmp_path)
    assert len(load_items(DatasetSpec("fanoutqa", path))) == 310
