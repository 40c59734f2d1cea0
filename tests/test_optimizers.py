"""The row-sparse optimizers (dinbench.optimizers): what they update, and that lazy Adam is Adam
when every row is touched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dinbench.optim import RowSparse, clip_grad_norm, make_optimizer
from dinbench.optimizers import OPTIMIZERS


class Tiny(nn.Module):
    """An embedding table and a dense layer, like the CTR model in miniature."""

    def __init__(self, rows: int = 7, dim: int = 3, sparse: bool = True) -> None:
        super().__init__()
        self.table = nn.Embedding(rows, dim, sparse=sparse)
        self.out = nn.Linear(dim, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.table(ids)).squeeze(-1)  # [B]


def _twins(sparse: bool = True) -> tuple[Tiny, Tiny]:
    torch.manual_seed(0)
    a = Tiny(sparse=sparse)
    b = Tiny(sparse=False)
    b.load_state_dict(a.state_dict())
    return a, b


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for ids in batches:
        opt.zero_grad(set_to_none=True)
        (model(ids) - 1.0).square().mean().backward()
        opt.step()


def test_lazy_adam_equals_dense_adam_when_every_row_is_touched():
    lazy_model, dense_model = _twins()
    for m in (lazy_model, dense_model):
        m.out.requires_grad_(False)  # the table alone trains (the dense layer's kernels differ: fused)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randperm(7, generator=gen) for _ in range(6)]  # every row, once per step
    lazy = make_optimizer("lazy-adam", lazy_model, 0.05)
    assert isinstance(lazy, RowSparse)
    dense = torch.optim.Adam(dense_model.parameters(), lr=0.05, foreach=False)  # torch's single-tensor Adam
    _train(lazy_model, lazy, batches)
    _train(dense_model, dense, batches)
    assert torch.equal(lazy_model.table.weight, dense_model.table.weight)  # bit for bit


def test_lazy_adam_with_repeated_rows_matches_dense_adam_up_to_rounding():
    lazy_model, dense_model = _twins()
    for m in (lazy_model, dense_model):
        m.out.requires_grad_(False)
    gen = torch.Generator().manual_seed(2)
    batches = [torch.cat([torch.randperm(7, generator=gen), torch.randint(0, 7, (9,), generator=gen)]) for _ in range(5)]
    _train(lazy_model, make_optimizer("lazy-adam", lazy_model, 0.05), batches)
    _train(dense_model, torch.optim.Adam(dense_model.parameters(), lr=0.05, foreach=False), batches)
    torch.testing.assert_close(lazy_model.table.weight, dense_model.table.weight, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["lazy-adam", "rowwise-adagrad"])
def test_row_sparse_optimizers_leave_untouched_rows_alone(name):
    model, dense_model = _twins()
    before = model.table.weight.detach().clone()
    batches = [torch.tensor([1, 2, 2]), torch.tensor([2, 4])]
    _train(model, make_optimizer(name, model, 0.05), batches)
    _train(dense_model, make_optimizer("adam", dense_model, 0.05), batches)
    touched = torch.zeros(7, dtype=torch.bool)
    touched[[1, 2, 4]] = True
    after = model.table.weight.detach()
    assert torch.equal(after[~touched], before[~touched])
    assert not torch.equal(after[touched], before[touched])
    # dense Adam keeps moving row 1 at step 2 by its momentum, though step 2 did not touch it
    assert not torch.equal(dense_model.table.weight[1], after[1])


def test_rowwise_adagrad_is_the_fbgemm_rule():
    torch.manual_seed(0)
    model = Tiny()
    w0 = model.table.weight.detach().clone()
    opt = make_optimizer("rowwise-adagrad", model, 0.1)
    ids = torch.tensor([3, 3, 5])
    opt.zero_grad()
    (model(ids) - 1.0).square().mean().backward()
    g = model.table.weight.grad.coalesce().to_dense()  # [7, 3]
    opt.step()
    acc = g.pow(2).mean(1)  # [7] one accumulator per row
    expected = w0 - 0.1 * g / (acc.sqrt() + 1e-8)[:, None]
    expected[[0, 1, 2, 4, 6]] = w0[[0, 1, 2, 4, 6]]
    torch.testing.assert_close(model.table.weight.detach(), expected)
    assert torch.equal(opt.state[model.table.weight]["sum"][[3, 5]], acc[[3, 5]])


@pytest.mark.parametrize("name", ["lazy-adam", "rowwise-adagrad"])
def test_dense_table_gradients_take_the_same_steps(name):
    """Under DDP the tables keep dense gradients: a row counts as touched when its gradient is non-zero."""
    sparse_model, dense_model = _twins()
    batches = [torch.tensor([1, 2, 2]), torch.tensor([2, 4, 6])]
    _train(sparse_model, make_optimizer(name, sparse_model, 0.05), batches)
    _train(dense_model, make_optimizer(name, dense_model, 0.05), batches)
    torch.testing.assert_close(sparse_model.table.weight, dense_model.table.weight, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["lazy-adam", "rowwise-adagrad"])
def test_state_dict_round_trip_continues_identically(name):
    a, _ = _twins()
    b, _ = _twins()
    batches = [torch.tensor([1, 2]), torch.tensor([2, 5]), torch.tensor([0, 5])]
    opt_a = make_optimizer(name, a, 0.05)
    _train(a, opt_a, batches[:2])
    saved = copy.deepcopy(opt_a.state_dict())  # as a checkpoint holds it (torch's own state_dict shares tensors)
    b.load_state_dict(a.state_dict())
    opt_b = make_optimizer(name, b, 0.05)
    opt_b.load_state_dict(saved)
    _train(a, opt_a, batches[2:])
    _train(b, opt_b, batches[2:])
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_lr_scheduler_reaches_both_groups():
    model, _ = _twins()
    opt = make_optimizer("lazy-adam", model, 0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train(model, opt, [torch.tensor([1])])
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05]
    assert opt.inner.param_groups[0]["lr"] == 0.05


def test_clip_grad_norm_treats_sparse_and_dense_alike():
    sparse_model, dense_model = _twins()
    for m in (sparse_model, dense_model):
        m.zero_grad()
        (m(torch.tensor([1, 1, 3])) * 10).sum().backward()
        clip_grad_norm(m.parameters(), 0.5)
    torch.testing.assert_close(sparse_model.table.weight.grad.to_dense(), dense_model.table.weight.grad)
    torch.testing.assert_close(sparse_model.out.weight.grad, dense_model.out.weight.grad)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in dense_model.parameters()]))
    assert total == pytest.approx(0.5, rel=1e-4)


def test_every_optimizer_choice_has_help(cli):
    invoke, _, _ = cli
    out = invoke("run", "--help", dirs=False)
    for name in OPTIMIZERS:
        assert name in out.output


@pytest.mark.parametrize("name", ["lazy-adam", "rowwise-adagrad"])
def test_a_run_records_its_optimizer_and_resumes_identically(name, tiny, tmp_path, monkeypatch):
    """The record says which optimizer ran, and an interrupted run resumes (its optimizer state
    from the checkpoint) to exactly the numbers of an uninterrupted one."""
    from dinbench.checkpoint import RunInterrupted
    from dinbench.config import RunConfig
    from dinbench.train import train_run

    from dinbench import optimizers

    monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", 1)  # the sparse path (the tiny tables are small)
    cfg = RunConfig(dataset="synthetic", pooler="din", epochs=2, batch_size=64, optimizer=name)
    _, whole = train_run(cfg, tiny, tmp_path / "whole")
    assert whole["config"]["optimizer"] == name
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == 5  # mid-way through epoch 1

    with pytest.raises(RunInterrupted) as info:
        train_run(cfg, tiny, tmp_path / "again", stop=stop)
    _, resumed = train_run(cfg, tiny, tmp_path / "again", resume_dir=info.value.run_dir)
    assert resumed["test"] == whole["test"]
    assert [e.get("valid") for e in resumed["epochs"]] == [e.get("valid") for e in whole["epochs"]]


def test_unknown_optimizer_is_one_line(cli):
    invoke, _, _ = cli
    out = invoke("run", "--dataset", "synthetic", "--optimizer", "adamw")
    assert out.exit_code != 0
    assert "adamw" in out.output and "lazy-adam" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("min_rows", [1, 10**9], ids=["sparse gradients", "dense gradients"])
def test_the_model_updates_only_the_touched_rows(tiny, monkeypatch, min_rows):
    """With a row-sparse optimizer the CTR model's large tables get sparse gradients (mini-batch L2
    and clipping included: a dense term would turn them dense, and the cost back to the catalogue's)
    and small ones dense gradients; either way only the rows the batch touched change."""
    from dinbench import optimizers
    from dinbench.config import RunConfig
    from dinbench.runtime import LocalRuntime
    from dinbench.train import Trainer

    monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", min_rows)
    cfg = RunConfig(dataset="synthetic", pooler="din", optimizer="lazy-adam", l2_minibatch=0.01, grad_clip=1.0)
    trainer = Trainer(cfg, tiny, LocalRuntime())
    emb = trainer.learner.model.embeddings
    before = emb.item.weight.detach().clone()
    trainer.step(torch.arange(64).numpy())
    grad = emb.item.weight.grad
    assert grad.is_sparse == (min_rows == 1) and emb.category.weight.grad.is_sparse == (min_rows == 1)
    touched = torch.zeros(len(before), dtype=torch.bool)
    touched[grad.coalesce().indices()[0] if grad.is_sparse else grad.abs().sum(1).nonzero().squeeze(1)] = True
    assert 0 < touched.sum() < len(before)
    assert torch.equal(emb.item.weight.detach()[~touched], before[~touched])
    assert not torch.equal(emb.item.weight.detach()[touched], before[touched])


def test_sparse_and_dense_table_gradients_give_the_same_run(tiny, monkeypatch, tmp_path):
    from dinbench import optimizers
    from dinbench.config import RunConfig
    from dinbench.train import train_run

    cfg = RunConfig(dataset="synthetic", pooler="din", epochs=1, batch_size=64, optimizer="lazy-adam")
    monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", 1)
    _, sparse = train_run(cfg, tiny, tmp_path / "sparse")
    monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", 10**9)
    _, dense = train_run(cfg, tiny, tmp_path / "dense")
    for metric in ("auc", "gauc", "logloss"):
        assert sparse["test"][metric] == pytest.approx(dense["test"][metric], abs=1e-5)


@pytest.mark.parametrize("rule", ["lazy-adam", "rowwise-adagrad"])
def test_masked_update_equals_the_row_list_update(rule):
    """The sync-free masked path (GPUs, CUDA graphs) changes exactly the touched rows, by the same
    amounts as the row-list path, and leaves the others and their state alone."""
    torch.manual_seed(0)
    rows_model, masked_model = Tiny(sparse=False), Tiny(sparse=False)
    masked_model.load_state_dict(rows_model.state_dict())
    opt_rows, opt_masked = make_optimizer(rule, rows_model, 0.05), make_optimizer(rule, masked_model, 0.05)
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randint(0, 4, (5,), generator=gen) for _ in range(4)]  # rows 4..6 never touched
    before = masked_model.table.weight.detach().clone()
    for ids in batches:
        for model, opt in ((rows_model, opt_rows), (masked_model, opt_masked)):
            opt.zero_grad(set_to_none=True)
            (model(ids) - 1.0).square().mean().backward()
            if opt is opt_masked:  # force the masked path on the CPU (as a GPU's small tables take it)
                opt.inner.step()
                opt.steps = opt.steps + 1
                opt._masked(model.table.weight, model.table.weight.grad, 0.05)
            else:
                opt.step()
    torch.testing.assert_close(masked_model.table.weight, rows_model.table.weight, rtol=0, atol=1e-7)
    assert torch.equal(masked_model.table.weight[4:], before[4:])
    key = "moments" if rule == "lazy-adam" else "sum"
    torch.testing.assert_close(opt_masked.state[masked_model.table.weight][key],
                               opt_rows.state[rows_model.table.weight][key], rtol=0, atol=1e-7)
    assert not opt_masked.state[masked_model.table.weight][key][4:].any()


def test_a_sparse_gradient_s_rows_come_sorted_and_summed():
    """The rows a sparse gradient touched come back once each, in address order (the optimizer then
    reads and writes the table in that order), with their repeated entries summed as ``coalesce`` does."""
    from dinbench.optim import _touched_rows

    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 1000, (3000,), generator=gen)  # many rows repeated
    grad = torch.sparse_coo_tensor(ids[None], torch.randn(3000, 4, generator=gen), (1000, 4))
    rows, summed = _touched_rows(grad)
    expected = grad.coalesce()
    assert torch.equal(rows, expected.indices()[0]) and bool((rows[1:] > rows[:-1]).all())
    assert torch.allclose(summed, expected.values(), atol=1e-6)


@pytest.mark.parametrize("rule, key, shape", [("lazy-adam", "moments", (7, 2, 3)), ("rowwise-adagrad", "sum", (7,))])
def test_the_tables_state_is_made_with_the_optimizer_not_at_the_first_step(rule, key, shape):
    """Its size is the catalogue's (1.5 GB at 4 M items): made up front, an out-of-memory comes before
    training starts and the first step is not seconds longer than the others."""
    model = Tiny()
    opt = make_optimizer(rule, model, 0.05)
    state = opt.state[model.table.weight]
    assert state[key].shape == shape and not state[key].any()


@pytest.mark.parametrize("rule, key", [("lazy-adam", "moments"), ("rowwise-adagrad", "sum")])
def test_a_large_table_updated_in_row_chunks_takes_the_same_steps(rule, key, monkeypatch):
    """A table over CACHE_BYTES is updated a few rows at a time (optim._chunks); every number is the one
    the update in one piece gives, bit for bit."""
    from dinbench import optim

    def run(cache_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(optim, "CACHE_BYTES", cache_bytes)
        monkeypatch.setattr(optim, "ROW_CHUNK_BYTES", 3 * 4 * 4 * 5)  # 5 rows of dim 4 a chunk
        torch.manual_seed(0)
        model = Tiny(rows=60, dim=4)
        opt = make_optimizer(rule, model, 0.05)
        gen = torch.Generator().manual_seed(7)
        _train(model, opt, [torch.randint(0, 60, (40,), generator=gen) for _ in range(5)])  # ~30 rows a step
        return model.table.weight.detach().clone(), opt.state[model.table.weight][key].clone()

    pieces = []
    real_chunks = optim._chunks

    def counted(*args):
        for piece in real_chunks(*args):
            pieces.append(len(piece[0]))
            yield piece

    monkeypatch.setattr(optim, "_chunks", counted)
    chunked = run(cache_bytes=0)
    assert max(pieces) == 5 and len(pieces) > 2 * 5  # several pieces a step
    pieces.clear()
    whole = run(cache_bytes=1 << 40)
    assert len(pieces) == 5  # one a step
    assert torch.equal(chunked[0], whole[0]) and torch.equal(chunked[1], whole[1])


def test_rows_are_summed_without_data_dependent_shapes_as_the_cpu_path_sums_them():
    """The GPU path of a sparse table gradient (optim._summed_by_row): the distinct rows, sorted, then
    row-0 slots with zero sums; each row's sum as the CPU path adds it (entries in lookup order)."""
    from dinbench.optim import _summed_by_row, _touched_rows

    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 40, (300,), generator=gen)  # [M] rows repeated, no padding id
    values = torch.randn(300, 5, generator=gen)  # [M, dim]
    rows, sums = _summed_by_row(ids, values)
    want_rows, want_sums = _touched_rows(torch.sparse_coo_tensor(ids[None], values, (40, 5)))
    r = len(want_rows)
    assert rows.shape == (300,) and sums.shape == (300, 5)  # fixed by M, whatever R is
    assert torch.equal(rows[:r], want_rows) and torch.equal(sums[:r], want_sums)
    assert not rows[r:].any() and not sums[r:].any()  # the rest: row 0, nothing to add


def test_a_sparse_table_trains_without_host_syncs_off_the_cpu():
    """On the meta device tensors have no data, so an op whose output size depends on the data
    (torch's padding filter in the sparse embedding backward, coalesce, unique, nonzero) raises: a whole
    lazy-adam and rowwise-adagrad step of a large (sparse) table there runs without one, so on a GPU it
    never waits for the device."""
    from dinbench.model.embeddings import _table

    class Large(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = _table(100_000, 4, sparse=True)  # >= SPARSE_MIN_ROWS: a sparse gradient
            self.out = nn.Linear(4, 1)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.out(self.table(ids)).sum()

    for name in ("lazy-adam", "rowwise-adagrad"):
        model = Large().to("meta")
        assert model.table.sparse
        opt = make_optimizer(name, model, 0.01)
        model(torch.zeros(8, 5, dtype=torch.long, device="meta")).backward()  # padding ids among them
        assert model.table.weight.grad.is_sparse
        opt.step()


def test_a_row_whose_entries_sum_to_zero_is_left_alone_on_both_paths():
    """A row listed only with entries that sum to exactly zero (a static batch's fillers) is not
    touched: the CPU path drops it, the fixed-shape path gives its slot to the no-op row 0, and a
    lazy-adam step moves neither its weight nor its moments, as the masked update leaves such a row."""
    from dinbench.optim import _summed_by_row, _touched_rows

    ids = torch.tensor([2, 5, 2, 7])
    v = torch.tensor([0.5, -1.0, 2.0])
    values = torch.stack([v, torch.zeros(3), -v, torch.ones(3)])  # row 2: v - v = 0, row 5: 0, row 7: 1
    rows, sums = _touched_rows(torch.sparse_coo_tensor(ids[None], values, (10, 3)))
    assert rows.tolist() == [7] and torch.equal(sums, torch.ones(1, 3))
    rows, sums = _summed_by_row(ids, values)
    assert rows.tolist() == [0, 0, 7, 0] and torch.equal(sums[2], torch.ones(3)) and not sums[[0, 1, 3]].any()
    table = nn.Parameter(torch.randn(10, 3))
    opt = RowSparse([], [table], lr=0.1, rule="lazy-adam")
    opt.state[table]["moments"].fill_(0.25)  # moments a step with a zero gradient would decay
    before, moments = table.detach().clone(), opt.state[table]["moments"].clone()
    table.grad = torch.sparse_coo_tensor(ids[None], values, (10, 3))
    opt.step()
    after = table.detach()
    assert torch.equal(after[[2, 5]], before[[2, 5]]) and torch.equal(opt.state[table]["moments"][[2, 5]], moments[[2, 5]])
    assert not torch.equal(after[7], before[7])


def test_a_captured_steps_sequence_on_a_sparse_table_has_no_data_dependent_shapes():
    """What a CUDA graph would capture with sparse tables (graph_step.SPARSE_TABLES): gradients zeroed in
    place (never set to None), a fixed number of lookups with padding ids among them, clipping, and a
    capturable step (step count on the device), twice; on the meta device, where any op whose output
    size depends on the data raises (coalesce did, in clipping)."""
    from dinbench.model.embeddings import _table

    class Large(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = _table(100_000, 4, sparse=True)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table(ids).sum()

    for name in ("lazy-adam", "rowwise-adagrad"):
        model = Large().to("meta")
        opt = RowSparse([], [model.table.weight], lr=0.01, rule=name, capturable=True)
        for _ in range(2):
            opt.zero_grad(set_to_none=False)
            model(torch.zeros(8, 5, dtype=torch.long, device="meta")).backward()
            clip_grad_norm(model.parameters(), 1.0)
            opt.step()
        grad = model.table.weight.grad
        assert grad.is_sparse and grad._nnz() == 40  # the lookups' count, whatever the ids


def test_the_padding_row_stays_zero_when_its_entries_reach_the_row_sums():
    """Off the CPU the padding entries come with zero gradients instead of being dropped: the update
    of row 0 is then nothing, its weight and state stay zero, and every other row gets the CPU path's."""
    from dinbench.model.embeddings import _SparseLookup
    from dinbench.optim import _summed_by_row

    torch.manual_seed(0)
    weight = torch.randn(10, 3)
    weight[0] = 0
    ids = torch.tensor([0, 3, 0, 3, 7, 0])
    grad_out = torch.randn(6, 3)
    w = weight.clone().requires_grad_()
    _SparseLookup.apply(w, ids, True).backward(grad_out)
    rows, sums = _summed_by_row(w.grad._indices()[0], w.grad._values())
    assert rows.tolist() == [0, 3, 7, 0, 0, 0]
    assert torch.equal(sums[0], torch.zeros(3))  # the padding row's entries: zero
    torch.testing.assert_close(sums[1], grad_out[1] + grad_out[3])
    table = nn.Parameter(torch.zeros(10, 3))
    opt = RowSparse([], [table], lr=0.1, rule="lazy-adam")
    opt.steps = 1  # the first step, as RowSparse.step counts it before the rows are updated
    with torch.no_grad():
        opt._lazy_adam(table, rows, sums, 0.1)  # as a GPU step would call it
    moved = table.detach()
    assert not moved[0].any() and not opt.state[table]["moments"][0].any()
    assert moved[3].abs().min() > 0 and moved[7].abs().min() > 0


def test_a_dense_gradient_s_touched_rows_are_its_nonzero_rows():
    """The dense branch of ``_touched_rows`` (small tables on a CPU, DDP) selects the rows with an entry
    that is not zero, NaN and inf included, -0.0 not, as every other path does; their gradients as they are."""
    from dinbench.optim import _touched_rows

    grad = torch.zeros(12, 4)
    grad[2, 1], grad[5, 3], grad[7, 0], grad[9] = float("nan"), float("inf"), -1e-45, torch.tensor([1.0, -1.0, 0.0, 0.0])
    grad[4] = -0.0
    rows, values = _touched_rows(grad)
    assert rows.tolist() == [2, 5, 7, 9]
    assert torch.equal(values[1:], grad[[5, 7, 9]]) and values[0].isnan().any()


def test_a_row_is_touched_iff_an_entry_is_not_zero():
    """optim._nonzero_rows, the touched-row test of every path: ne(0).any(1), NaN, inf and -0.0 included."""
    from dinbench.optim import _nonzero_rows

    x = torch.randn(50, 8)
    x[::3] = 0.0
    x[1] = -0.0
    # one entry in an otherwise zero row (rows 3, 6, 9): NaN, inf, the smallest subnormal; -0.0 mixed in
    x[3, 2], x[6, 5], x[9, 0] = float("nan"), float("inf"), -1e-45
    x[13, :] = torch.tensor([0.0, -0.0] * 4)
    touched = _nonzero_rows(x)
    assert touched.dtype == torch.bool and touched.shape == (50,)
    assert torch.equal(touched, x.ne(0).any(1))
    assert not touched[0] and not touched[12] and not touched[13]
    assert touched[3] and touched[6] and touched[9] and touched[2]
    assert _nonzero_rows(torch.zeros(0, 8)).shape == (0,)
