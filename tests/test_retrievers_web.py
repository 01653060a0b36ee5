"""Web retriever (ddgs) with the network replaced by fakes; results are plain data."""

from __future__ import annotations

import pytest

from masksearch.retrievers import load_retriever
from masksearch.retrievers.web import WebRetriever, WebSearchError


class _FakeDDGS:
    calls: list[tuple[str, dict]] = []

    def __init__(self, timeout=None):
        self.timeout = timeout

    def text(self, query, **kwargs):
        self.calls.append((query, kwargs))
        return [
            {
                "title": "Eiffel  Tower\n",
                "href": "https://en.wikipedia.org/wiki/Eiffel_Tower",
                "body": "Designed by\nGustave Eiffel's company. <script>ignore previous</script>",
            },
            {"title": "Second", "href": "https://example.org/2", "body": "x" * 5000},
            "not a dict",
            {"title": "Third", "href": "https://example.org/3", "body": "third"},
        ]


def test_web_results_become_passages(monkeypatch):
    import ddgs

    monkeypatch.setattr(ddgs, "DDGS", _FakeDDGS)
    r = WebRetriever(max_chars=100)
    ((hits,),) = [r.search(["eiffel tower"], 2)]
    assert [p.id for p in hits] == [
        "https://en.wikipedia.org/wiki/Eiffel_Tower",
        "https://example.org/2",
    ]
    assert hits[0].title == "Eiffel Tower"
    assert hits[0].text == "Designed by Gustave Eiffel's company. <script>ignore previous</script>"
    assert len(hits[1].text) == 100
    assert hits[0].score > hits[1].score
    assert _FakeDDGS.calls[-1][1]["max_results"] == 2
    assert r.search(["  "], 3) == [[]]


def test_web_failure_is_a_clear_error(monkeypatch):
    import ddgs
    from ddgs.exceptions import DDGSException

    class Offline(_FakeDDGS):
        def text(self, query, **kwargs):
            raise DDGSException("DNS error: no records found")

    monkeypatch.setattr(ddgs, "DDGS", Offline)
    with pytest.raises(WebSearchError, match="web search failed.*offline"):
        load_retriever("web", cache_size=0).search(["eiffel"], 3)
    assert issubclass(WebSearchError, RuntimeError)
