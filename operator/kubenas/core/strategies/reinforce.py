"""REINFORCE with an LSTM controller (Zoph & Le 2017), in torch.

torch is imported when a :class:`Reinforce` is built, never when this module is imported: the
operator imports the strategy registry to validate specs and must not pull torch in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from kubenas.api.strategy import ReinforceSettings
from kubenas.core.space import Architecture, SearchSpace
from kubenas.core.strategies.base import Observation, Strategy
from kubenas.core.strategies.discrete import discretize
from kubenas.core.strategies.ledger import Ledger, fingerprint, rng_state

if TYPE_CHECKING:
    import torch

#: policy samples drawn together when looking for an architecture not proposed before
SAMPLE_BATCH = 32
#: batches tried before falling back to a mutation of the last sample
SAMPLE_BATCHES = 4
#: mutations of the last sample tried before a random unseen architecture is used
MUTATION_TRIES = 32
#: decisions with more values than this (wide int ranges) are thinned to this many for the policy
MAX_CHOICES = 64


class Controller:
    """The policy: an LSTM that emits one decision per step, fed back the embedding of its last choice.

    Written with explicit parameter tensors (rather than ``torch.nn`` modules) so that every weight is
    initialised from the strategy's own generator and nothing touches torch's global RNG.
    """

    def __init__(self, sizes: list[int], hidden: int, generator: torch.Generator) -> None:
        import torch

        def param(*shape: int) -> torch.Tensor:
            t = torch.empty(*shape, dtype=torch.float64)
            t.uniform_(-0.1, 0.1, generator=generator)
            return t.requires_grad_()

        self.sizes = sizes
        self.hidden = hidden
        self.start = param(hidden)
        self.embeddings = [param(n, hidden) for n in sizes[:-1]]
        self.w_input = param(4 * hidden, hidden)
        self.w_hidden = param(4 * hidden, hidden)
        self.bias = param(4 * hidden)
        self.head_weights = [param(n, hidden) for n in sizes]
        self.head_biases = [param(n) for n in sizes]

    def parameters(self) -> list[torch.Tensor]:
        return [
            self.start,
            *self.embeddings,
            self.w_input,
            self.w_hidden,
            self.bias,
            *self.head_weights,
            *self.head_biases,
        ]

    def _step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        gates = x @ self.w_input.T + h @ self.w_hidden.T + self.bias
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def run(
        self,
        batch: int,
        settings: ReinforceSettings,
        choose: Callable[[int, torch.Tensor], torch.Tensor],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Unroll the controller over every decision.

        ``choose(step, log_probs)`` returns the chosen indices of that step (a long tensor of shape
        ``[batch]``): a sampler at ask time, the recorded choices at tell time. Returns the log
        probabilities of the chosen indices and the entropies, one tensor ``[batch]`` per step.
        """
        import torch

        x = self.start.expand(batch, self.hidden)
        h = torch.zeros(batch, self.hidden, dtype=torch.float64)
        c = torch.zeros(batch, self.hidden, dtype=torch.float64)
        chosen_logp: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        for step in range(len(self.sizes)):
            h, c = self._step(x, h, c)
            logits = h @ self.head_weights[step].T + self.head_biases[step]
            if settings.tanh_constant > 0:
                logits = settings.tanh_constant * torch.tanh(logits / settings.tanh_constant)
            log_probs = torch.log_softmax(logits / settings.temperature, dim=1)
            idx = choose(step, log_probs)
            chosen_logp.append(log_probs.gather(1, idx[:, None])[:, 0])
            entropies.append(-(log_probs.exp() * log_probs).sum(dim=1))
            if step + 1 < len(self.sizes):
                x = self.embeddings[step][idx]
        return chosen_logp, entropies


class Reinforce(Strategy):
    """Policy-gradient search: an LSTM controller samples architectures and learns from each reward.

    * Ask: the controller samples the decisions autoregressively (int and float ranges are
      discretized into their grid values). A sample that was already proposed is drawn again, so a
      concentrated policy keeps exploring next to its mode instead of repeating it.
    * Tell: the reward is normalised (``reward_normalization``: its rank among the rewards seen so
      far, or a z-score), a moving-average baseline is subtracted, and one Adam step follows the
      gradient of ``advantage * log p(architecture) + entropy_weight * entropy``. The log-probability
      is recomputed at tell time from the recorded choices under the current policy, so tells in any
      order, and asks made ahead of rewards, are handled alike.
    * Failed and infeasible trials get the worst usable reward seen so far (nothing, before one
      exists), which pushes the policy away from them.

    The policy is a cache of the history: replaying asks and tells rebuilds it bit for bit (float64,
    one CPU thread, every random draw from generators seeded by ``seed``).
    """

    name = "reinforce"

    def __init__(self, space: SearchSpace, settings: ReinforceSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        import torch

        # The controller is tiny: threads only add scheduling noise and contention.
        torch.set_num_threads(1)
        self.grid = discretize(space, settings.float_steps, MAX_CHOICES)
        sizes = [d.cardinality for d in self.grid.decisions]
        generator = torch.Generator().manual_seed(seed)
        self.controller = Controller(sizes, settings.hidden_size, generator)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=settings.learning_rate, foreach=False)
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger(space)
        self.choices: dict[int, tuple[int, ...]] = {}
        self.rewards: list[float] = []
        self.baseline: float | None = None

    # -- ask ----------------------------------------------------------------------------------
    def _sample(self, batch: int = SAMPLE_BATCH) -> list[tuple[int, ...]]:
        """``batch`` independent draws from the current policy, as decision indices."""
        import torch

        def sample(step: int, log_probs: torch.Tensor) -> torch.Tensor:
            probs = log_probs.exp().numpy()
            cdf = np.cumsum(probs, axis=1)
            u = self.rng.random((probs.shape[0], 1)) * cdf[:, -1:]
            return torch.as_tensor(np.minimum((cdf < u).sum(axis=1), probs.shape[1] - 1))

        picks: list[torch.Tensor] = []

        def record(step: int, log_probs: torch.Tensor) -> torch.Tensor:
            idx = sample(step, log_probs)
            picks.append(idx)
            return idx

        with torch.no_grad():
            self.controller.run(batch, self.settings, record)
        stacked = torch.stack(picks, dim=1).tolist()
        return [tuple(int(i) for i in row) for row in stacked]

    def start_from(self, architectures: Sequence[Architecture]) -> None:
        """The first samples are these: the policy learns from their rewards like from its own samples."""
        self.ledger.first.extend(architectures)

    def _ask(self) -> Architecture:
        chosen: tuple[int, ...] | None = None
        last: tuple[int, ...] | None = None
        seeded = self.ledger.next_first()
        if seeded is not None:
            chosen = self.grid.indices(seeded)
        for _ in range(SAMPLE_BATCHES if chosen is None else 0):
            for indices in self._sample():
                last = indices
                if self.ledger.is_new(self.grid.from_indices(indices)):
                    chosen = indices
                    break
            if chosen is not None:
                break
        if chosen is None:
            assert last is not None
            parent = self.grid.from_indices(last)
            arch = self.ledger.fresh(lambda: self.grid.mutate(parent, self.rng, 1), self.rng, MUTATION_TRIES)
            chosen = self.grid.indices(arch)
        arch = self.grid.from_indices(chosen)
        self.choices[self.asked] = chosen
        self.ledger.record_ask(arch)
        return arch

    # -- tell ---------------------------------------------------------------------------------
    def _normalised(self, reward: float) -> float:
        s: ReinforceSettings = self.settings
        seen = np.asarray(self.rewards)
        if s.reward_normalization == "rank":
            return float(((seen < reward).sum() + 0.5 * (seen == reward).sum()) / len(seen))
        if s.reward_normalization == "zscore":
            std = float(seen.std()) if len(seen) > 1 else 0.0
            return (reward - float(seen.mean())) / std if std > 0 else 0.0
        return reward

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        import torch

        result = self.ledger.record_tell(index, architecture, observation)
        if result.reward is not None:
            self.rewards.append(result.reward)
            reward = result.reward
        else:
            penalty = self.ledger.penalty()
            if penalty is None or index not in self.choices:
                return
            reward = penalty
        value = self._normalised(reward)
        s: ReinforceSettings = self.settings
        if self.baseline is None:
            self.baseline = value
        advantage = value - self.baseline
        self.baseline = s.baseline_decay * self.baseline + (1 - s.baseline_decay) * value

        recorded = torch.as_tensor(self.choices[index])

        def replay_choice(step: int, log_probs: torch.Tensor) -> torch.Tensor:
            return recorded[step : step + 1]

        log_probs, entropies = self.controller.run(1, s, replay_choice)
        loss = -advantage * torch.stack(log_probs).sum() - s.entropy_weight * torch.stack(entropies).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def state_digest(self) -> str:
        h = hashlib.sha256()
        for p in self.controller.parameters():
            h.update(p.detach().numpy().tobytes())
        for state in self.optimizer.state.values():
            for key in sorted(state):
                h.update(state[key].detach().numpy().tobytes())
        return fingerprint(self.name, self.ledger.digest_parts(), self.baseline, h.hexdigest(), rng_state(self.rng))


class PathSampler(Reinforce):
    """The same policy as a sampler of supernet paths (ENAS): every ask is one plain draw from the policy.

    Unlike the search strategy it does not look for architectures not proposed before: while a
    supernet trains the policy is meant to draw its favourite paths again and again, and each draw's
    own reward (told per path) is what it learns from. Not a ``spec.strategy``: the one-shot search's
    controller uses it (:mod:`kubenas.core.enas`).
    """

    name = "reinforce-paths"

    def __init__(self, space: SearchSpace, settings: ReinforceSettings, seed: int) -> None:
        super().__init__(space, settings, seed)
        #: draws of the current policy not handed out yet: one LSTM run serves a block of asks
        self._drawn: list[tuple[int, ...]] = []

    def _ask(self) -> Architecture:
        if not self._drawn:
            self._drawn = self._sample(SAMPLE_BATCH)[::-1]
        chosen = self._drawn.pop()
        arch = self.grid.from_indices(chosen)
        self.choices[self.asked] = chosen
        self.ledger.record_ask(arch)
        return arch

    def _tell(self, index: int, architecture: Architecture, observation: Observation) -> None:
        super()._tell(index, architecture, observation)
        self._drawn = []  # the policy moved: later asks draw from the new one
