"""The optimizers a run can train with (``--optimizer``), and gradient clipping that knows sparse grads.

An embedding table's gradient is row-sparse: a batch touches a few hundred of its rows, whatever
the catalogue's size. ``adam`` and ``sgd`` treat the tables as dense tensors, so every step costs
time in proportion to the catalogue (a zero-filled gradient of the whole table, and Adam moves
every row by its momentum even when the batch did not touch it). The row-sparse optimizers give
the tables sparse gradients (``nn.Embedding(sparse=True)``) and update only the rows a batch
touched, so a step's cost is flat in the catalogue:

==================  ====================================================================
adam                Adam on every parameter, every row of every table at every step (dense).
lazy-adam           Adam; a table's rows and their moments change only when a batch touches
                    them ("lazy" Adam, as TensorFlow's LazyAdam and torch's SparseAdam; the
                    bias correction counts optimizer steps). Equal to ``adam`` when every row
                    is touched at every step.
rowwise-adagrad     Row-wise AdaGrad on the tables, as production CTR systems train them
                    (FBGEMM / TorchRec EXACT_ROWWISE_ADAGRAD): one accumulator per row, the
                    mean squared gradient of the row; touched rows only. Adam on the rest.
sgd                 Plain SGD on every parameter (dense).
==================  ====================================================================

The network's dense parameters (MLP, attention) always train with (fused) Adam, except under
``sgd``; ``--lr`` is the learning rate of both.

Under DistributedDataParallel the tables keep dense gradients (NCCL has no sparse all-reduce); the
row-sparse rules then take a row as touched when its gradient is non-zero, which is the same set.

A row is touched when its gradient is not zero: a row listed in a sparse gradient only with
entries that sum to exactly zero (a CUDA graph's static batch lists filler positions) is left alone.

A dense table gradient off the CPU (a small table on a GPU, DDP, ``--compile cuda-graphs``) is
applied with a mask instead of a list of rows: every row is computed and only the touched ones are
written, with no ``nonzero`` (which waits for the device) and fixed shapes, so a step never syncs
and can be captured in a CUDA graph (at a cost that grows with the table;
``graph_step.SPARSE_TABLES`` keeps large tables sparse inside the graph instead, off until a GPU
measures it). ``capturable=True`` (cuda-graphs) also keeps the step count on the device, so that a
replayed step advances the bias correction without Python running. A sparse
table gradient off the CPU (a large table in an eager GPU run) is summed by row with fixed shapes
too (``optim._summed_by_row``: a stable sort and a segment sum instead of ``coalesce``), and its
lookup zeroes the padding entries instead of dropping them (``embeddings._Table``): no host sync.

This module is the torch-free half (the choices and when a table is sparse), which the run options and
``--help`` need; the optimizers themselves (``make_optimizer``, ``RowSparse``, ``clip_grad_norm``) are
in dinbench.optim (which imports this module; this one imports nothing of it).
"""

from __future__ import annotations

OPTIMIZERS: dict[str, str] = {
    "adam": "Adam on every parameter; every embedding row moves at every step (dense: cost grows with the catalogue)",
    "lazy-adam": "Adam; an embedding row and its moments change only when a batch touches it (cost nearly flat in the catalogue)",
    "rowwise-adagrad": "row-wise AdaGrad on the embedding rows a batch touches (as FBGEMM/TorchRec), Adam on the rest",
    "sgd": "plain SGD on every parameter (dense)",
}
ROW_SPARSE = ("lazy-adam", "rowwise-adagrad")  # the ones that train the tables with sparse gradients
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, also used by the row-sparse rules
ADAGRAD_EPS = 1e-8  # FBGEMM's default
# A table this large gets sparse gradients under a row-sparse optimizer; a smaller one keeps a dense
# gradient, whose non-zero rows are the touched ones (same numbers: reading a small table's gradient
# is cheaper than summing a sparse gradient's repeated rows; measured crossover 12k-50k rows at
# 10k lookups per step, benchmarks/catalogue.py).
SPARSE_MIN_ROWS = 50_000


def help_text() -> str:
    """One line per choice, for ``--optimizer``'s help."""
    return "; ".join(f"{name}: {what}" for name, what in OPTIMIZERS.items()) + "."


def is_row_sparse(name: str) -> bool:
    return name in ROW_SPARSE


def sparse_gradient(rows: int) -> bool:
    """Whether a table of ``rows`` rows trained by a row-sparse optimizer gets a sparse gradient."""
    return rows >= SPARSE_MIN_ROWS
