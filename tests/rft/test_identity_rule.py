"""``nn.Identity`` nodes (what BatchNorm folding leaves) are planned and run as their input's value, without a
call: the traced values stay the full run's, the plan names the rule, and the node hands on its input's tensor."""

from __future__ import annotations

import torch
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, TraceCache


class Folded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.Identity()
        self.act = nn.ReLU()
        self.out = nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.out(self.act(self.bn(self.conv(x)))), "same": self.bn(x)}


def test_identity_nodes_pass_their_input_on() -> None:
    torch.manual_seed(0)
    net = Folded().eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    queries = {"y": [(0, 0), (9, 13), (19, 27)], "same": [(5, 6)]}
    got = tracer.gather(x, queries, TraceCache())
    for key, pts in queries.items():
        want = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        assert torch.equal(got[key], want), key
    rules = {row["node"]: row["rule"] for row in tracer.last_plan.node_table()}
    assert rules["bn"] == "identity" and rules["bn_1"] == "identity"
    out = tracer.run(x, {"same": None})
    assert out["same"][0] is x  # the input itself: nothing was called or copied
