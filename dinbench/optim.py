"""The optimizers of dinbench.optimizers (which holds the choices and their documentation) and
gradient clipping that knows sparse gradients: the torch half, imported when a run trains."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from dinbench import hugepages
from dinbench.optimizers import ADAGRAD_EPS, BETAS, EPS, OPTIMIZERS, ROW_SPARSE


def _fused(params: list[nn.Parameter]) -> dict[str, Any]:
    """Fused kernels where torch has them (one pass over all parameters: Adam's step is ~5x cheaper on CPU)."""
    return {"fused": True} if params and {p.device.type for p in params} <= {"cpu", "cuda"} else {}


def make_optimizer(name: str, model: nn.Module, lr: float, capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``'s parameters. For the row-sparse ones the model's
    embedding tables are found as its ``nn.Embedding`` modules. ``capturable``: every step is free of
    host syncs and host-side state, so it can be captured in a CUDA graph (CUDA parameters only)."""
    params = list(model.parameters())
    graph = {"capturable": True} if capturable else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **_fused(params))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **_fused(params), **graph)
    if name not in ROW_SPARSE:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    table_ids = {id(t) for t in tables}
    dense = [p for p in params if id(p) not in table_ids]
    return RowSparse(dense, tables, lr=lr, rule=name, capturable=capturable)


class RowSparse(torch.optim.Optimizer):
    """Fused Adam on ``dense`` parameters and a row-sparse rule on the embedding ``tables``.

    Two parameter groups, ``param_groups[0]`` the dense parameters (shared with an inner
    ``torch.optim.Adam``, so an lr scheduler's changes reach it) and ``param_groups[1]`` the tables.
    A table's gradient may be sparse (COO, rows repeated) or dense (under DDP): either way only the
    rows present in it (non-zero rows, for a dense one) are read and written.

    State per table: lazy-adam's ``moments`` [rows, 2, dim] (exp_avg and exp_avg_sq of a row side by
    side), rowwise-adagrad's ``sum`` [rows]; plus the global step count.
    """

    def __init__(self, dense: list[nn.Parameter], tables: list[nn.Parameter], lr: float, rule: str,
                 capturable: bool = False) -> None:
        dense_group: dict[str, Any] = {"params": dense}
        graph = {"capturable": True} if capturable else {}
        self.inner = torch.optim.Adam([dense_group], lr=lr, betas=BETAS, eps=EPS, **_fused(dense), **graph)
        super().__init__([dense_group, {"params": tables, "rule": rule}], {"lr": lr})
        self.rule = rule
        self.capturable = capturable
        self._steps = 0
        # capturable: the step count on the device (float64: exact for any count a run reaches)
        self._step_t = torch.zeros((), dtype=torch.float64, device=tables[0].device) if capturable and tables else None
        for table in tables:  # now, not at the first step: its time is the catalogue's size (1.5 GB at 4 M items)
            self._state(table)

    @property
    def steps(self) -> int:
        """Optimizer steps taken (read back from the device when capturable: a host sync)."""
        return int(self._step_t.item()) if self._step_t is not None else self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = value
        if self._step_t is not None:
            self._step_t.fill_(value)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        self.inner.step()
        if self._step_t is not None:
            self._step_t += 1
        else:
            self._steps += 1
        group = self.param_groups[1]
        for table in group["params"]:
            if table.grad is None:
                continue
            if not table.grad.is_sparse and (table.device.type != "cpu" or self.capturable):
                self._masked(table, table.grad, group["lr"])  # no nonzero: no host sync, fixed shapes
                continue
            rows, grad = _touched_rows(table.grad)  # [R] sorted, [R, dim]
            if rows.numel() == 0:
                continue
            if self.rule == "lazy-adam":
                self._lazy_adam(table, rows, grad, group["lr"])
            else:
                self._rowwise_adagrad(table, rows, grad, group["lr"])

    def _state(self, table: torch.Tensor) -> dict[str, torch.Tensor]:
        """A table's state, made (zeros, in huge pages on the CPU) if it has none: lazy-adam's ``moments``
        [rows, 2, dim] (both moments of a row side by side: one random read and write per row, not
        two), rowwise-adagrad's ``sum`` [rows]."""
        state = self.state[table]
        if not state:
            rows, dim = table.shape
            shape = (rows, 2, dim) if self.rule == "lazy-adam" else (rows,)
            state["moments" if self.rule == "lazy-adam" else "sum"] = hugepages.zeros(shape, table.dtype, table.device)
        return state

    def _lazy_adam(self, table: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """Adam on ``rows`` only, with the same operations in the same order as torch's single-tensor
        Adam (so that with every row touched the result is the dense one, bit for bit). Row chunk by
        row chunk (``_chunks``): each row's own arithmetic, so the same numbers as in one piece."""
        state = self._state(table)
        beta1, beta2 = BETAS
        bias_correction1, bias_correction2_sqrt = self._bias_corrections()
        # [2 x rows, dim]: row r's exp_avg at 2r, its exp_avg_sq at 2r + 1 (the same 2 x dim floats in a row).
        # Each moment is gathered into a contiguous tensor of its own: arithmetic on a strided half of a
        # [C, 2, dim] gather ran up to 3.5x slower (sqrt: 0.26 against 0.07 ms for 2,730 rows); the second
        # gather reads the lines the first just brought in. This update of 8,000 rows of a 4 M-row table:
        # 7.6 -> 7.0 ms, the same values.
        flat = state["moments"].view(-1, table.shape[1])
        for part, g in _chunks(rows, grad, table):  # [C] rows, [C, dim] their gradients
            first = part * 2  # [C] each row's exp_avg in flat
            exp_avg = flat.index_select(0, first).lerp_(g, 1 - beta1)  # [C, dim]
            exp_avg_sq = flat.index_select(0, first + 1).mul_(beta2).addcmul_(g, g, value=1 - beta2)  # [C, dim]
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(EPS)
            _write_rows(flat, first, exp_avg)
            _write_rows(flat, first + 1, exp_avg_sq)
            # w + (-lr / bc1) * m / denom, as addcdiv_ rounds it; added in place: one pass over the rows, not
            # a gather and a scatter (3x faster at 4 M rows)
            table.index_add_(0, part, exp_avg.mul(-lr / bias_correction1).div_(denom))

    def _bias_corrections(self) -> tuple[Any, Any]:
        """(1 - beta1^t, sqrt(1 - beta2^t)) for step t: floats, or 0-d device tensors when capturable."""
        beta1, beta2 = BETAS
        if self._step_t is None:
            return 1 - beta1**self._steps, (1 - beta2**self._steps) ** 0.5
        t = self._step_t
        return (1 - torch.pow(beta1, t)).float(), (1 - torch.pow(beta2, t)).sqrt().float()

    @torch.no_grad()
    def _masked(self, table: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """The row rule over the whole table, written only where a row's gradient is non-zero
        (``torch.where``): the same arithmetic as the row-list path for the touched rows, untouched
        rows and their state unchanged. Cost in proportion to the table (meant for small tables and
        GPUs), but no host sync and no data-dependent shapes."""
        touched = _nonzero_rows(grad)[:, None]  # [rows, 1]
        state = self._state(table)
        if self.rule == "lazy-adam":
            beta1, beta2 = BETAS
            moments = state["moments"]
            exp_avg = moments[:, 0].lerp(grad, 1 - beta1)  # [rows, dim]
            exp_avg_sq = moments[:, 1].mul(beta2).addcmul_(grad, grad, value=1 - beta2)  # [rows, dim]
            bias_correction1, bias_correction2_sqrt = self._bias_corrections()
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(EPS)
            step = exp_avg / denom * (-lr / bias_correction1)  # [rows, dim]
            moments[:, 0] = torch.where(touched, exp_avg, moments[:, 0])
            moments[:, 1] = torch.where(touched, exp_avg_sq, moments[:, 1])
            table.add_(torch.where(touched, step, 0.0))
        else:
            acc = state["sum"] + grad.pow(2).mean(1)  # [rows]
            state["sum"].copy_(torch.where(touched[:, 0], acc, state["sum"]))
            step = grad / (acc.sqrt() + ADAGRAD_EPS)[:, None] * -lr  # [rows, dim]
            table.add_(torch.where(touched, step, 0.0))

    def _rowwise_adagrad(self, table: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """sum[r] += mean(g_r^2);  w_r -= lr * g_r / (sqrt(sum[r]) + eps), for the touched rows r (in row chunks)."""
        state = self._state(table)
        for part, g in _chunks(rows, grad, table):  # [C] rows, [C, dim] their gradients
            acc = state["sum"].index_select(0, part).add_(g.pow(2).mean(1))  # [C]
            _write_rows(state["sum"], part, acc)
            table.index_add_(0, part, g.mul(-lr).div_((acc.sqrt() + ADAGRAD_EPS)[:, None]))  # as addcdiv_ rounds it

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Tensors, numbers and strings only (a checkpoint loads with ``weights_only=True``)."""
        tables = self.param_groups[1]["params"]
        return {
            "rule": self.rule,
            "steps": self.steps,
            "lr": [g["lr"] for g in self.param_groups],
            "dense": self.inner.state_dict(),
            "tables": [dict(self.state[t]) for t in tables],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:  # type: ignore[override]
        if saved.get("rule") != self.rule:
            raise ValueError(f"optimizer state of {saved.get('rule')!r}, not {self.rule!r}")
        self.steps = int(saved["steps"])
        self.inner.load_state_dict(saved["dense"])
        for group, lr in zip(self.param_groups, saved["lr"]):
            group["lr"] = lr
        for table, state in zip(self.param_groups[1]["params"], saved["tables"]):
            self.state[table] = {k: hugepages.empty(tuple(v.shape), v.dtype, table.device).copy_(v) for k, v in state.items()}


# Row chunks of a large table (see _chunks): at most this many bytes of table and state rows at a time,
# and only for a table whose weight and state together exceed CACHE_BYTES (a server's last-level cache).
ROW_CHUNK_BYTES = 1 << 20
CACHE_BYTES = 32 << 20


def _chunks(rows: torch.Tensor, grad: torch.Tensor, table: torch.Tensor):
    """(rows [R], grad [R, dim]) in consecutive slices of at most ROW_CHUNK_BYTES of table and state
    rows (lazy-adam's: 3 x dim floats a row), for a table on the CPU larger than CACHE_BYTES; else in one
    piece. Rows are sorted, so each slice is a stretch of addresses. A slice's rows are read, updated
    and written back while they are still in a near cache: at 4 M items (7,800 rows a step, 2.9 MB) the
    moments' write and the table's add otherwise fetch them again from farther away (measured in
    docs/performance.md). Smaller tables sit in the cache whole, and slicing only adds calls."""
    row_bytes = 3 * table.shape[1] * table.element_size()
    if rows.device.type != "cpu" or table.shape[0] * row_bytes <= CACHE_BYTES:
        yield rows, grad
        return
    size = max(1, ROW_CHUNK_BYTES // row_bytes)
    for start in range(0, len(rows), size):
        yield rows[start:start + size], grad[start:start + size]


def _write_rows(dst: torch.Tensor, rows: torch.Tensor, src: torch.Tensor) -> None:
    """dst[rows] = src for distinct ``rows``. On the CPU through numpy, whose scattered row copy is
    about 2x faster than ``index_copy_`` there (measured: 0.8 vs 1.5 ms for 8k rows of 64 floats)."""
    if dst.device.type == "cpu":
        dst.detach().numpy()[rows.numpy()] = src.detach().numpy()
    else:
        dst.index_copy_(0, rows, src)


def _touched_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows [R] long, sorted, their summed gradients [R, dim]) of a table's gradient, sparse or dense:
    the rows whose gradient is not zero (a row listed only with entries that sum to exactly zero, as a
    CUDA graph's static batch lists its fillers, is left alone, as the masked update and DDP leave it).

    A sparse gradient lists a row once per lookup (nnz entries, rows repeated). On the CPU the
    repeats are summed by ``unique`` and ``index_add_`` (each row's entries added in lookup order; as
    fast as the scatter-to-slot form it replaced, which measured 2.5x faster than ``coalesce`` at 10k
    lookups). The rows come back sorted, so that the
    optimizer then reads and writes the table and its state in address order (measured at 4 M
    rows: a third less time than in lookup order). On other devices ``_summed_by_row``: no host sync.
    """
    if not grad.is_sparse:
        rows = _nonzero_rows(grad).nonzero().squeeze(1)  # a row is touched iff its gradient is non-zero (DDP too)
        return rows, grad.index_select(0, rows)
    ids, values = grad._indices()[0], grad._values()  # [nnz], [nnz, dim]
    if grad.device.type != "cpu":
        return _summed_by_row(ids, values)
    rows, inverse = torch.unique(ids, sorted=True, return_inverse=True)  # [R], [nnz]
    summed = torch.zeros(len(rows), values.shape[1], dtype=values.dtype, device=values.device)
    summed.index_add_(0, inverse, values)  # [R, dim]
    touched = _nonzero_rows(summed)  # [R]: a row whose entries sum to exactly zero is not touched
    return (rows, summed) if bool(touched.all()) else (rows[touched], summed[touched])


def _nonzero_rows(x: torch.Tensor) -> torch.Tensor:
    """[R] bool from [R, dim]: whether a row has an entry that is not zero (NaN counts as not zero), as
    ``x.ne(0).any(1)`` says it, in a fifth of its time on a CPU (0.17 against 0.86 ms for 8,000 rows of
    32: the 4 M-item catalogue's step pays it once)."""
    return x.abs().amax(1).ne(0)


def _summed_by_row(ids: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse gradient's entries ids [M], values [M, dim] summed by row without a host sync (for GPUs,
    where ``coalesce`` or ``unique`` would wait for the device to learn how many rows there are):
    (rows [M], sums [M, dim]), the R distinct rows sorted first, then M - R slots of row 0 (the padding
    row) with zero sums; a row whose sum is exactly zero is given as row 0 as well. Row 0's update is
    then a no-op: its gradient is zero (the lookup gives padding entries zero gradients,
    ``embeddings._SparseLookup``), so its state and weight stay zero. Each row's entries are added in
    lookup order (a stable sort, then accumulation in order), as on the CPU path."""
    sorted_ids, order = torch.sort(ids, stable=True)  # [M]
    starts = torch.ones_like(sorted_ids, dtype=torch.bool)  # [M], True at the first entry of each row
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    slot = torch.cumsum(starts, 0) - 1  # [M] the distinct row each sorted entry belongs to, 0..R-1
    rows = torch.zeros_like(ids).index_put_((slot,), sorted_ids)  # [M]: a slot's entries all write its id
    sums = values.new_zeros(values.shape).index_put_((slot,), values.index_select(0, order), accumulate=True)
    # a row whose entries sum to exactly zero is not touched (a static batch's fillers, weighted 0, look up
    # real rows): its slot goes to row 0 too, as the masked update and DDP's rule leave such a row alone
    return torch.where(_nonzero_rows(sums), rows, 0), sums  # [M], [M, dim]


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_`` that also takes sparse gradients (the row-sparse optimizers'
    tables): their norm is that of the coalesced (row-summed) gradient, which is what is applied. Off
    the CPU a sparse gradient is not coalesced: its rows are summed with fixed shapes
    (``_summed_by_row``, the same sums), so clipping adds no host sync to a step."""
    params = [p for p in params if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        nn.utils.clip_grad_norm_(params, max_norm)
        return
    norms = []
    for p in params:
        if p.grad.is_sparse and p.grad.device.type == "cpu":
            p.grad = p.grad.coalesce()
            norms.append(torch.linalg.vector_norm(p.grad.values()))
        elif p.grad.is_sparse:  # the row sums with fixed shapes: coalesce would wait for the device (a host sync)
            norms.append(torch.linalg.vector_norm(_summed_by_row(p.grad._indices()[0], p.grad._values())[1]))
        else:
            norms.append(torch.linalg.vector_norm(p.grad))
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        (p.grad._values() if p.grad.is_sparse else p.grad).mul_(scale)  # a sparse one: its entries, in place
