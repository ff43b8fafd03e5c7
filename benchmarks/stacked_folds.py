"""Would training the folds of a config together pay? One training step (forward, backward) of
PrCRS for each of K folds, one after another, against one step of the K networks stacked into
one batched module (`torch.func.stack_module_state` + `vmap`, each member on its own batch of 64
rows), on one torch thread, as a fold worker runs. Prints the milliseconds of each and their
ratio; adds "stacked_folds" to bench.json. Not part of `make bench`:

    python benchmarks/stacked_folds.py --members 5
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from bench_file import record
from torch.func import functional_call, stack_module_state, vmap

from prcrs.models.backbones import PrCRS


def _ms(step, repeats: int) -> float:
    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) * 1000 / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    k, batch, p = args.members, 64, 42
    nets = [PrCRS(p) for _ in range(k)]
    x, missing, y = torch.randn(k, batch, p), torch.zeros(k, batch, p), torch.randint(0, 2, (k, batch))

    def one_by_one():
        for i, net in enumerate(nets):
            loss = torch.nn.functional.cross_entropy(net(x[i], missing[i]), y[i])
            torch.autograd.grad(loss, list(net.parameters()))

    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    batched = vmap(lambda pr, bu, xi, mi: functional_call(base, (pr, bu), (xi, mi)), randomness="different")

    def stacked():
        logits = batched(params, buffers, x, missing)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), reduction="sum") / batch
        torch.autograd.grad(loss, list(params.values()))

    separate, together = _ms(one_by_one, args.repeats), _ms(stacked, args.repeats)
    record("stacked_folds", {"members": k, "batch": batch, "one_by_one_ms": round(separate, 2),
                             "stacked_ms": round(together, 2), "speedup": round(separate / together, 2)})


if __name__ == "__main__":
    main()
