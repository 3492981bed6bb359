"""``--refine``'s JSON names the board order that won, not only its cuts: under ``--assign
auto`` the same cuts are ranked on both orders, and ``best_cut_positions`` alone cannot say
which one the measurements chose. Failed before: no ``best_platforms``."""

from __future__ import annotations

from hwsched.schedule import rank_splits
from hwsched.schedule.refine import refine, split_key
from hwsched.schedule.synthetic import synthetic_graph


def test_best_platforms_names_the_winning_order():
    ranking = rank_splits(synthetic_graph(8, seed=1), ["rpi4", "jetson_nano"], "gige",
                          assign="auto", stages=2)
    same_cuts = [c for c in ranking.candidates if c.cut_positions == (4,)]
    orders = {c.assignment for c in same_cuts}
    assert len(orders) == 2  # both orders of the same cuts were ranked
    for winner in same_cuts:  # the measurements make each order win in turn
        stage_ms = {split_key(c): [1e-3 if c is winner else 1e3] * len(c.stages)
                    for c in same_cuts}
        document = refine(same_cuts, stage_ms, "throughput").to_dict()
        assert document["best_cut_positions"] == [4]
        assert document["best_platforms"] == [s.cost.platform for s in winner.stages]
