"""What the registry, the command line and ``--help`` know of each pooler: its description, options
and traits, declared here without torch so that ``dinbench --help`` starts in a fraction of a second.

Each pooler class takes its declaration with ``class DINPooler(Pooler, about=about.DIN)``, which sets
the class's ``description``, ``options``, ``uses_candidate`` and ``uses_order``; the registry
(dinbench.poolers) holds the same declaration and imports the class (and torch) only when a pooler
is built. A pooler written outside dinbench may instead set those four class attributes itself and
register the class (``Entry(MyPooler)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dinbench.layers import ACTIVATIONS
from dinbench.options import (
    Option, at_least_one, choice, log_uniform, positive_number, sizes_at_least_one, zero_or_more,
)

NORMALIZATIONS = ("none", "softmax")
AGE_UNITS = ("position", "time")
BST_POSITIONS = ("order", "time", "none")
EVOLUTIONS = ("augru", "agru", "aigru")  # dien's interest-evolution GRUs; the first is the default


def finite_weight(v) -> str | None:
    return None if 0 <= v < float("inf") else "must be a finite number, 0 or more"


def dropout_rate(v) -> str | None:
    return None if 0 <= v < 1 else "must lie in [0, 1)"


@dataclass(frozen=True)
class About:
    description: str
    options: tuple[Option, ...] = ()  # passed to the class's __init__ by name
    uses_candidate: bool = False  # attention-style poolers need the candidate (ranking only)
    uses_order: bool = False  # the output depends on the order of the history positions
    cuda_graphs: bool = True  # --compile cuda-graphs can train it (else refused in one line, graph_step.check)
    # --compile auto captures it on a CUDA device: set only once a GPU measured that its captured runs pay
    # and keep the eager run's metrics (benchmarks/gpu.py, tests/test_compile.py on CUDA; docs/performance.md).
    # Measured on an H200 (2026-11-30): average and din (ninth session); time-decay, dot, bilinear, multihead,
    # bst, sim (sim:soft), eta and max (eleventh session: 3.0-5.3x eager at batch 1,024)
    graphs_by_default: bool = False
    # --compile auto compiles it (torch.compile) on a CPU for a long run (runtime.cpu_compile_mode): set only once
    # benchmarks/compile.py measured on a CPU that the compiled steps pay for the compile and keep the eager
    # run's metrics (docs/defaults.md). Measured (2026-12-01, 2-core AMD EPYC, 1 thread): average 1.3-1.5x
    # once compiled, 1.17x end to end over 5 M rows; din 1.04-1.23x once compiled by dataset and 1.00x end to
    # end over 5 M rows, so din stays eager
    compiles_on_cpu: bool = False


NONE = About("no history: zeros (candidate only; the floor showing what history is worth)")
LAST = About("the most recent behaviour only (no candidate)", uses_order=True)
SUM = About("masked sum of the history (the paper's BaseModel; no candidate)")
AVERAGE = About("masked mean of the history (no candidate; fits ranking and two-tower)", graphs_by_default=True,
                compiles_on_cpu=True)
MAX = About("element-wise max over the history (no candidate)", graphs_by_default=True)
TIME_DECAY = About(
    "recency-weighted mean, weight 2^(-age/half_life) (no candidate)",
    options=(
        Option("half_life", 5.0, "half-life (positions, or time units with --decay-age time).", float,
               check=positive_number, search=log_uniform(1.0, 100.0)),
        Option("decay_age", "position", "age by 'position' from the most recent, or by 'time' (dataset time unit).",
               choices=AGE_UNITS),
        Option("learn_decay", False, "learn the half-life.", bool, search=choice(False, True)),
    ),
    uses_order=True,  # with age by position; age by time is order-free
    graphs_by_default=True,
)
DOT = About("scaled dot-product target attention q·k/√D (no parameters)", uses_candidate=True,
            graphs_by_default=True)
BILINEAR = About("bilinear target attention qᵀWk, W learned (starts near the scaled dot product)", uses_candidate=True,
                 graphs_by_default=True)
# the DIN activation unit's options, shared by din and dien (both build it with dinbench.layers.activation_unit)
ATTENTION_HIDDEN = Option("attention_hidden", (80, 40), "hidden sizes of the activation unit.", tuple,
                          check=sizes_at_least_one, search=choice((40, 20), (80, 40), (200, 80)))
ATTENTION_ACTIVATION = Option("attention_activation", "sigmoid", "activation of the unit: sigmoid (authors' code), "
                              "prelu, dice or relu.", choices=ACTIVATIONS, search=choice(*ACTIVATIONS))
DIN = About(
    "DIN activation unit: MLP over [q, k, q-k, q*k] scores each history item",
    options=(
        ATTENTION_HIDDEN,
        ATTENTION_ACTIVATION,
        Option("outer_product", False, "add the outer product of q and k to the unit's input.", bool),
    ),
    uses_candidate=True,
    graphs_by_default=True,  # din:none and din:softmax, measured on an H200 (2026-11-30)
)
# The long-sequence retrieval poolers (sim, eta) share the retrieval budget and the activation unit's options.
TOP_K = Option(
    "top_k", 50, "behaviours retrieved per history for the attention (SIM/ETA's K; 50 = the default "
    "--max-len: the attention costs what din's costs on the histories it was designed for).",
    int, check=at_least_one, search=choice(16, 50, 100, 200))
RETRIEVAL_ATTENTION = DIN.options[:2]  # attention_hidden, attention_activation: the same unit as din's
SIM = About(
    "SIM: retrieve at most top_k behaviours (soft: largest inner product with the candidate; hard: the "
    "candidate's category, most recent first), then softmax target attention with din's activation unit",
    options=(TOP_K, *RETRIEVAL_ATTENTION),
    uses_candidate=True,
    uses_order=True,  # hard keeps the most recent top_k of the category; soft is order-free (up to ties)
    graphs_by_default=True,
)
ETA = About(
    "ETA: retrieve the top_k behaviours nearest the candidate in Hamming distance of SimHash codes "
    "(fixed random hyperplanes), then softmax target attention with din's activation unit",
    options=(
        TOP_K,
        Option("hash_bits", 64, "SimHash bits (random hyperplanes); more bits, closer to the cosine ordering.",
               int, check=at_least_one, search=choice(16, 32, 64, 128)),
        *RETRIEVAL_ATTENTION,
    ),
    uses_candidate=True,
    uses_order=True,  # equal Hamming distances go to the most recent positions
    graphs_by_default=True,
)
MULTIHEAD = About(
    "multi-head target attention (candidate = query, history = keys/values)",
    options=(Option("heads", 4, "number of heads (divides 2 x embedding dim).", int, check=at_least_one,
                    search=choice(1, 2, 4, 8)),),
    uses_candidate=True,
    graphs_by_default=True,
)
BST = About(
    "Behavior Sequence Transformer: a transformer encoder over the history and the candidate; "
    "pools the candidate's output",
    options=(
        Option("layers", 1, "transformer blocks.", int, check=at_least_one, search=choice(1, 2)),
        Option("heads", 2, "number of heads (divides the key width: 2 x embedding dim with joint groups).", int,
               check=at_least_one, search=choice(1, 2, 4)),
        Option("position", "order", "position embedding by 'order' (rank from the most recent), by 'time' "
               "(log2-bucketed age), or 'none'.", choices=BST_POSITIONS),
        Option("dropout", 0.0, "dropout in the transformer blocks (0: deterministic).", float,
               check=dropout_rate),
    ),
    uses_candidate=True,
    uses_order=True,  # with position 'order'; 'time' and 'none' are order-free
    graphs_by_default=True,
)
DIEN = About(
    "DIEN: a GRU extracts interest states from the history (auxiliary next-behaviour loss), a GRU steered by "
    "the candidate's attention evolves them; pools the final state",
    options=(
        Option("aux_weight", 1.0, "dien: weight of the auxiliary next-behaviour loss (0: off, no negatives drawn).",
               float, check=finite_weight, search=choice(0.0, 0.5, 1.0, 2.0)),
        Option("gru_hidden", 0, "dien: hidden size of both GRUs (0: the key width, as in the paper).", int,
               check=zero_or_more, search=choice(0, 32, 64)),
        ATTENTION_HIDDEN,
        ATTENTION_ACTIVATION,
    ),
    uses_candidate=True,
    uses_order=True,
    cuda_graphs=False,  # its time-step loops and auxiliary loss are not captured
)
