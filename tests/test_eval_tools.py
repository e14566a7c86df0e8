"""Pure parts of the evaluation tools in tools/eval."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "eval"))


def test_blurred_posteriors_are_distributions_whose_gap_grows_with_the_mix():
    from fixed_head import Head, blurred

    torch.manual_seed(0)
    log_p = (3 * torch.randn(50, 7)).log_softmax(-1)
    gaps = []
    for amount in (0.05, 0.3, 1.0):
        q, gap = blurred(log_p, amount)
        assert torch.allclose(q.exp().sum(-1), torch.ones(50), atol=1e-5)
        expect = float((log_p.exp() * (log_p - q)).sum(-1).mean())
        assert gap == pytest.approx(expect, rel=1e-5)
        gaps.append(gap)
    assert 0 < gaps[0] < gaps[1] < gaps[2]
    q, _ = blurred(log_p, 1.0)  # all of it: every frame is the utterance average
    assert torch.allclose(q.exp(), log_p.exp().mean(0, keepdim=True).expand(50, 7), atol=1e-6)
    # a head that reads probabilities sees exp of its input; one that reads log-probabilities the input
    head = Head(7, 5, probabilities=True).eval()
    same = Head(7, 5, probabilities=False).eval()
    same.load_state_dict(head.state_dict())
    pad = torch.zeros(1, 50, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(head(log_p[None], pad), same(log_p.exp()[None], pad), atol=1e-5)
