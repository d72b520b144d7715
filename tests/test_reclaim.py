"""The full collection, run as the bodies of finished streamed flows add up (usagefix.reclaim)."""

from usagefix.reclaim import DEFAULT_RECLAIM_BYTES, Reclaimer


def test_collects_once_the_budget_is_reached_then_counts_anew() -> None:
    calls: list[str] = []
    r = Reclaimer(budget=100, collect=lambda: calls.append("collect"))
    assert not r.add(60)
    assert not r.add(0)  # a flow whose body was not kept adds nothing
    assert calls == []
    assert r.add(40)
    assert calls == ["collect"] and r.pending == 0
    assert not r.add(99)
    assert r.add(500)  # one body over the budget: one collection, nothing carried over
    assert calls == ["collect", "collect"] and r.pending == 0


def test_start_collects_then_freezes_what_survives() -> None:
    calls: list[str] = []
    r = Reclaimer(collect=lambda: calls.append("collect"), freeze=lambda: calls.append("freeze"))
    r.pending = 5
    r.start()
    assert calls == ["collect", "freeze"] and r.pending == 0
    assert r.budget == DEFAULT_RECLAIM_BYTES
