"""Strategy selection and the typed settings of each strategy.

The strategy is a Kubernetes-style discriminated union: ``name`` says which strategy runs and at most
the one member named after it (``evolution``, ``reinforce``, ...) carries its settings. Omitted
settings take the defaults below, which are meant to be good on any search space, not tuned to one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from kubenas.api import kube
from kubenas.api.base import ApiModel, Rule, no_server_default

StrategyName = Literal["random", "grid", "evolution", "reinforce", "tpe", "gp", "progressive", "retrain", "nsga2"]
STRATEGY_NAMES: tuple[str, ...] = (
    "random",
    "grid",
    "evolution",
    "reinforce",
    "tpe",
    "gp",
    "progressive",
    "retrain",
    "nsga2",
)
#: strategies that search several objectives at once (docs/multi-objective.md): random and grid
#: ignore rewards, tpe becomes MOTPE and nsga2 is NSGA-II, both Optuna's
MULTI_OBJECTIVE_STRATEGIES: tuple[str, ...] = ("random", "grid", "tpe", "nsga2")
#: the most architectures a retrain may hold: each is one entry of the stored spec
MAX_RETRAIN = 1000
#: strategies whose candidates derive from earlier ones (a mutated parent, a local search's centre)
LINEAGE_STRATEGIES: tuple[str, ...] = ("evolution", "progressive")
#: strategies that can start from another experiment's best architectures (seedFrom)
SEEDED_STRATEGIES: tuple[str, ...] = ("evolution", "tpe", "progressive", "reinforce")


class RandomSettings(ApiModel):
    """Uniform random sampling. Proposes each architecture at most once while unseen ones remain."""


class GridSettings(ApiModel):
    """Exhaustive enumeration in a seeded shuffled order (so a cut-short grid is still a fair sample)."""

    float_steps: int = Field(5, ge=2, le=100, description="Points taken on each float range.")
    shuffle: bool = Field(True, description="Visit the grid in a seeded random order instead of odometer order.")


class EvolutionSettings(ApiModel):
    """Regularized (aging) evolution, Real et al. 2019: tournament selection, one mutation, oldest dies.

    The defaults (population 20, tournament 10) did best of the settings tried on NAS-Bench-201 and on
    synthetic NK tables at 50 to 300 trials; the paper's large populations suit thousands of trials.
    """

    RULES = (
        Rule(
            "!has(self.sampleSize) || self.sampleSize <= (has(self.populationSize) ? self.populationSize : 20)",
            "sampleSize (the tournament) must not exceed populationSize",
            lambda e: e.sample_size <= e.population_size,
            ".sampleSize",
        ),
    )

    population_size: int = Field(
        20, ge=2, le=100000, description="Architectures alive at once; the first ones are sampled at random."
    )
    sample_size: int = Field(
        10,
        ge=1,
        le=100000,
        json_schema_extra=no_server_default,
        description="Tournament size: parents are the best of this many (default 10, or populationSize when smaller).",
    )
    mutations: int = Field(1, ge=1, le=64, description="Decisions changed per child.")

    @model_validator(mode="before")
    @classmethod
    def _tournament_fits(cls, data: Any) -> Any:
        """A tournament left out is at most the population, so a small population alone is accepted."""
        if not isinstance(data, dict) or "sampleSize" in data or "sample_size" in data:
            return data
        population = data.get("populationSize", data.get("population_size"))
        if isinstance(population, int) and not isinstance(population, bool) and 1 <= population < 10:
            return {**data, "sampleSize": population}
        return data


class ReinforceSettings(ApiModel):
    """REINFORCE with an LSTM controller (Zoph & Le 2017): autoregressive sampling of the decisions."""

    hidden_size: int = Field(64, ge=8, le=1024, description="LSTM hidden units.")
    learning_rate: float = Field(0.01, gt=0, le=1, description="Adam learning rate of the policy.")
    entropy_weight: float = Field(0.0001, ge=0, le=1, description="Bonus on the policy's entropy.")
    baseline_decay: float = Field(0.95, ge=0, lt=1, description="Decay of the moving-average reward baseline.")
    temperature: float = Field(1.0, gt=0, le=100, description="Softmax temperature of the sampling logits.")
    tanh_constant: float = Field(
        2.5, ge=0, le=100, description="Logit clipping C*tanh(l/C) as in ENAS; 0 turns it off."
    )
    reward_normalization: Literal["rank", "zscore", "none"] = Field(
        "rank", description="How rewards are scaled before the baseline: rank among those seen, z-score, or raw."
    )
    float_steps: int = Field(5, ge=2, le=100, description="Grid points the policy chooses among on a float range.")


class TpeSettings(ApiModel):
    """Tree-structured Parzen estimator, through Optuna's TPESampler."""

    startup_trials: int = Field(10, ge=1, le=100000, description="Random trials before the model is used.")
    candidates: int = Field(24, ge=1, le=10000, description="Candidates scored by expected improvement per ask.")
    multivariate: bool = Field(True, description="Model decisions jointly rather than one at a time.")


class Nsga2Settings(ApiModel):
    """NSGA-II (Deb et al. 2002) through Optuna's NSGAIISampler: non-dominated sorting and crowding
    distance pick the parents of each generation; built for several objectives, it also runs on one."""

    population_size: int = Field(20, ge=2, le=100000, description="Trials per generation; the first are random.")
    crossover_prob: float = Field(
        0.9, ge=0, le=1, description="Probability that a child is a crossover of two parents."
    )


class GpSettings(ApiModel):
    """Gaussian-process Bayesian optimisation, through Optuna's GPSampler (needs torch and scipy)."""

    startup_trials: int = Field(10, ge=1, le=100000, description="Random trials before the model is used.")
    deterministic_objective: bool = Field(
        False, description="Fit the GP without observation noise (only for noise-free objectives)."
    )
    max_points: int = Field(
        200,
        ge=10,
        le=100000,
        description="Completed trials the GP is fitted on at most (the best half, then the most recent): "
        "bounds the cost of an ask.",
    )


class ProgressiveSettings(ApiModel):
    """Model-based search: Bayesian optimisation with a Gaussian process trained on every result."""

    initial_samples: int = Field(
        10, ge=1, le=100000, description="Architectures of a balanced random design before the model is used."
    )
    candidates: int = Field(
        500,
        ge=1,
        le=1000000,
        description="Random candidates the surrogate scores on each ask, beside the neighbours of the best results.",
    )
    float_steps: int = Field(5, ge=2, le=100, description="Grid points searched on a float range.")
    max_points: int = Field(
        600,
        ge=10,
        le=100000,
        description="Results the surrogate is fitted on at most (the best half, then the most recent): "
        "bounds the cost of an ask.",
    )


def experiment_field(description: str) -> Any:
    """An optional field naming another SearchExperiment (a DNS-1035 label, as experiment names are)."""
    return Field(None, min_length=1, max_length=kube.LABEL_MAX, pattern=kube.DNS1035_LABEL, description=description)


class RetrainSource(ApiModel):
    """The finished search whose best architectures are retrained: exactly one of the two fields.

    ``experiment`` names a SearchExperiment (on Kubernetes, in the same namespace; locally, the
    results folder ``<name>`` beside the retrain's own). ``results`` is a local results folder.
    """

    RULES = (
        Rule(
            "has(self.experiment) != has(self.results)",
            "give exactly one of experiment and results",
            lambda s: (s.experiment is None) != (s.results is None),
            ".experiment",
        ),
        Rule(
            "!has(self.results)",
            "results (a local folder) has no meaning on Kubernetes: name the source experiment",
            lambda s: s.results is None,
            ".results",
            kubernetes_only=True,
        ),
    )

    experiment: str | None = experiment_field(
        "The finished SearchExperiment (same namespace; locally results/<name> beside this run's)."
    )
    results: str | None = Field(
        None, min_length=1, max_length=4096, description="A local results folder of a finished run (local mode only)."
    )


class RetrainCandidate(ApiModel):
    """One architecture to retrain, and where it came from (filled in when the source is resolved)."""

    architecture: dict[str, Any] = Field(..., max_length=1024, description="Decision name to chosen value.")
    trial: str | None = Field(None, max_length=253, description="The source trial it was taken from.")
    value: float | None = Field(None, description="The objective metric it reached in the source search.")


class RetrainSettings(ApiModel):
    """Train the best architectures of a finished search again, with this experiment's trial settings.

    The two-phase workflow of NAS: search on a cheap proxy (few cells, few epochs), then retrain the
    top k in full. The candidates are the ``topK`` best distinct architectures of ``source`` (succeeded
    trials by reward), resolved once when the run starts and then kept in the accepted spec, so a
    restarted run replays the same list; or the ``architectures`` given here. They are proposed in
    order; a maxTrials above their number trains each again, with another trial seed.
    """

    RULES = (
        Rule(
            "has(self.source) || (has(self.architectures) && self.architectures.size() > 0)",
            "a retrain needs a source search or a list of architectures",
            lambda r: r.source is not None or bool(r.architectures),
            ".source",
        ),
    )

    source: RetrainSource | None = Field(None, description="The finished search whose best architectures to retrain.")
    top_k: int = Field(3, ge=1, le=MAX_RETRAIN, description="How many of the source's best distinct architectures.")
    architectures: list[RetrainCandidate] = Field(
        default_factory=list,
        max_length=MAX_RETRAIN,
        description="The architectures to retrain, best first (filled from source when empty).",
    )


class SeedFrom(RetrainSource):
    """Start the search from the best architectures of another, finished search (architecture transfer).

    The ``topK`` best distinct architectures of the source (succeeded trials by reward) are proposed
    first: evolution's first population, TPE's enqueued trials, the progressive search's first samples
    (its first centres), REINFORCE's first samples. They are read once when the run starts and kept in
    the accepted spec (``architectures``), like a retrain's, so a restarted run replays the same list.
    """

    top_k: int = Field(5, ge=1, le=MAX_RETRAIN, description="How many of the source's best distinct architectures.")
    architectures: list[RetrainCandidate] = Field(
        default_factory=list,
        max_length=MAX_RETRAIN,
        description="The architectures to start from, best first (filled from the source when the run starts).",
    )


class StrategySpec(ApiModel):
    """Which search strategy runs, its seed, and its settings (only those of the strategy named)."""

    RULES = (
        *(
            Rule(
                f"!has(self.{n}) || self.name == '{n}'",
                f"settings for '{n}' given but name is not '{n}'",
                lambda s, n=n: getattr(s, n) is None or s.name == n,
                f".{n}",
            )
            for n in STRATEGY_NAMES
        ),
        Rule(
            "self.name != 'retrain' || has(self.retrain)",
            "a retrain needs its settings: retrain.source or retrain.architectures",
            lambda s: s.name != "retrain" or s.retrain is not None,
            ".retrain",
        ),
        Rule(
            f"!has(self.seedFrom) || self.name in {list(SEEDED_STRATEGIES)}",
            f"seedFrom needs a strategy that can start from given architectures: {', '.join(SEEDED_STRATEGIES)}",
            lambda s: s.seed_from is None or s.name in SEEDED_STRATEGIES,
            ".seedFrom",
        ),
    )

    name: StrategyName = Field(..., description="The search strategy.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed: the same seed and history give the same decisions.")
    random: RandomSettings | None = Field(None, description="Settings when name is random.")
    grid: GridSettings | None = Field(None, description="Settings when name is grid.")
    evolution: EvolutionSettings | None = Field(None, description="Settings when name is evolution.")
    reinforce: ReinforceSettings | None = Field(None, description="Settings when name is reinforce.")
    tpe: TpeSettings | None = Field(None, description="Settings when name is tpe.")
    gp: GpSettings | None = Field(None, description="Settings when name is gp.")
    progressive: ProgressiveSettings | None = Field(None, description="Settings when name is progressive.")
    retrain: RetrainSettings | None = Field(
        None, description="Settings when name is retrain (source or architectures)."
    )
    seed_from: SeedFrom | None = Field(
        None, description="Start from the best architectures of another, finished search (architecture transfer)."
    )
    nsga2: Nsga2Settings | None = Field(None, description="Settings when name is nsga2.")

    def settings(self) -> ApiModel:
        """The effective settings of the named strategy (defaults where omitted)."""
        given = getattr(self, self.name)
        if given is not None:
            return given
        return SETTINGS_TYPES[self.name]()


SETTINGS_TYPES: dict[str, type[ApiModel]] = {
    "random": RandomSettings,
    "grid": GridSettings,
    "evolution": EvolutionSettings,
    "reinforce": ReinforceSettings,
    "tpe": TpeSettings,
    "gp": GpSettings,
    "progressive": ProgressiveSettings,
    "retrain": RetrainSettings,
    "nsga2": Nsga2Settings,
}
