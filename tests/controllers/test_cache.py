"""The watch-fed cache keeps the newest version of each object."""

from __future__ import annotations

from vlm_operator.k8s.cache import WatchCache


def body(name: str, revision: str, **extra: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "n", "resourceVersion": revision}, **extra}


def test_an_older_version_does_not_replace_a_newer_one() -> None:
    cache = WatchCache()
    cache.put("Deployment", body("d", "20", note="new"))
    cache.put("Deployment", body("d", "7", note="old"))
    assert (cache.get("Deployment", "n", "d") or {})["note"] == "new"
    cache.remove("Deployment", "n", "d")
    assert cache.get("Deployment", "n", "d") is None


def test_reads_are_copies_and_seeding_marks_the_kind_synced() -> None:
    cache = WatchCache()
    assert not cache.synced("Node")
    cache.replace_all("Node", [{"metadata": {"name": "a"}}])
    assert cache.synced("Node")
    read = cache.bodies("Node")
    read[0]["metadata"]["name"] = "changed"
    assert cache.names("Node") == [("", "a")]


def test_a_snapshot_is_rebuilt_only_after_a_change() -> None:
    cache = WatchCache()
    cache.replace_all("Node", [body("a", "1")])
    first = cache.snapshot("Node")
    assert cache.snapshot("Node") is first
    cache.put("Node", body("b", "2"))
    assert {item["metadata"]["name"] for item in cache.snapshot("Node")} == {"a", "b"}
