"""``dien``: Deep Interest Evolution Network (Zhou et al., AAAI 2019, "Deep Interest Evolution Network
for Click-Through Rate Prediction").

Two GRUs over the history, oldest first (H = ``gru_hidden``, the key width D by default):

    interest extractor   h_t = GRU(e_t, h_{t-1})                          states [M, H] (M real positions)
    auxiliary loss       state h_t predicts behaviour t+1 against a sampled negative:
                         L_aux = -mean_(b,t) [log σ(h_t · e_{t+1}) + log(1 - σ(h_t · ê_{t+1}))]
                         (pairs where both t and t+1 are real; ê: an item the user never touched)
    attention            a_t = softmax_t(unit(q, h_t)) over the row's real positions (the DIN
                         activation unit, dinbench.layers.activation_unit, shared with din)
    interest evolution   h'_t = GRU'(h_t, h'_{t-1}) steered by a_t, the variant (``evolution``):
        augru (default, the paper's)  u'_t = a_t * u_t           (attention scales the update gate)
        agru                           u'_t = a_t                 (attention replaces the update gate)
        aigru                          input h_t -> a_t * h_t     (attention scales the input)
                         h'_t = (1 - u'_t) * h'_{t-1} + u'_t * tanh(W x_t + r_t * (U h'_{t-1} + b))
    pooled               h'_T, the evolved state at the row's last real position   [B, D]

Padding: only the real positions enter the GRUs, laid out time-major with the rows by length
(``TimeMajor``, torch's PackedSequence layout): each row runs for exactly its length, no state ever
reads padding (nor a static batch's fillers), and the pooled state is the one after the row's last
real position. An empty history pools to exactly 0 with finite gradients. Weights [B, L]: the
attention a_t at each history position (summing to 1 over a row's real positions, 0 at padding).

The auxiliary term (``aux_weight`` * L_aux) is computed only in training mode and only when the model
hands the negatives over (``packed.negatives``, see dinbench.poolers.base: the auxiliary-loss seam);
``aux_weight`` 0 turns it off, and then no negatives are drawn at all. The inner product needs the
state in the keys' width: with H != D a bias-free projection H -> D is applied first (and the
candidate is projected D -> H for the attention, as in the authors' code, and the pooled state H -> D).
The attention's last layer has no bias (a softmax ignores a shift common to a row's scores).

Cost: both GRUs (``SteeredGRU``) are loops over the time steps, vectorised over the rows still going
at each step, so the work scales with the real positions, not B * L. The layout needs the rows'
lengths on the host: one device sync per forward on a GPU (and dien is refused under --compile
cuda-graphs, About.cuda_graphs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinbench.layers import activation_unit
from dinbench.poolers import about
from dinbench.poolers.about import EVOLUTIONS
from dinbench.poolers.base import Pooler, normalize_scores
from dinbench.poolers.packed import Packed


class SteeredGRU(nn.Module):
    """A GRU over packed sequences, optionally steered by an attention score per step (``mode``):

        r = σ(W_r x + b_r + U_r h + c_r)      u = σ(W_u x + b_u + U_u h + c_u)
        h~ = tanh(W_n x + b_n + r * (U_n h + c_n))      h' = (1 - u') * h + u' * h~
        gru: u' = u     augru: u' = a * u     agru: u' = a (no update gate)     aigru: x -> a * x, u' = u

    A loop over the time steps in Python, vectorised over the rows still going at each step (measured
    faster on a CPU than torch's nn.GRU over the same packed sequences, whose CPU kernel is also a loop).
    """

    def __init__(self, in_dim: int, hidden: int, mode: str = "gru") -> None:
        super().__init__()
        self.hidden, self.mode = hidden, mode
        self.gates = 2 if mode == "agru" else 3  # reset, [update,] candidate
        self.input = nn.Linear(in_dim, self.gates * hidden)  # W x + b, every step at once
        self.recurrent = nn.Linear(hidden, self.gates * hidden)  # U h + c, per step

    def forward(self, data: torch.Tensor, sizes: list[int], rows: int, attention: torch.Tensor | None = None):
        """data [M, in] (time-major, rows longest first, ``sizes[t]`` rows at step t: ``TimeMajor``),
        ``rows`` R >= sizes[0], attention [M, 1] or None -> (every state [M, H] in the same layout, each
        row's last state [R, H], rows longest first; 0 for a row of no steps)."""
        if self.mode == "aigru":
            data = data * attention
        x = self.input(data)  # [M, G * H]
        steered = attention.split(sizes) if attention is not None else [None] * len(sizes)
        h = x.new_zeros(rows, self.hidden)  # [rows going, H]
        states, finished = [], []  # finished: the last states of rows as they stop, shortest rows first
        for x_t, a_t in zip(x.split(sizes), steered):  # [n, G * H], [n, 1]
            n = x_t.shape[0]
            if n < h.shape[0]:
                finished.append(h[n:])
                h = h[:n]
            x_t, g_t = x_t.chunk(self.gates, dim=-1), self.recurrent(h).chunk(self.gates, dim=-1)
            r = torch.sigmoid(x_t[0] + g_t[0])  # reset gate
            candidate = torch.tanh(x_t[-1] + r * g_t[-1])
            if self.mode == "agru":
                u = a_t  # the attention is the update gate
            else:
                u = torch.sigmoid(x_t[1] + g_t[1])  # update gate
                if self.mode == "augru":
                    u = u * a_t
            h = h + u * (candidate - h)  # (1 - u) h + u h~
            states.append(h)
        finished.append(h)
        every = torch.cat(states) if states else x.new_zeros(0, self.hidden)
        return every, torch.cat(finished[::-1])


class DIENPooler(Pooler, about=about.DIEN):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L] (the evolution's attention).

    Options (defaults in ``options``): aux_weight 1.0, gru_hidden 0 (= D), attention_hidden (80, 40),
    attention_activation 'sigmoid'; evolution 'augru' (the variant).
    """

    packs = True

    def __init__(
        self,
        dim: int,
        aux_weight: float,
        gru_hidden: int,
        attention_hidden: tuple[int, ...],
        attention_activation: str,
        evolution: str = "augru",
    ) -> None:
        super().__init__()
        if evolution not in EVOLUTIONS:
            raise ValueError(f"unknown evolution {evolution!r}; choose one of {', '.join(EVOLUTIONS)}")
        if not 0 <= aux_weight < float("inf"):
            raise ValueError(f"aux_weight must be a finite number, 0 or more (got {aux_weight})")
        if gru_hidden < 0:
            raise ValueError(f"gru_hidden must be 0 (the key width) or more (got {gru_hidden})")
        hidden = gru_hidden or dim
        self.dim, self.hidden, self.evolution, self.aux_weight = dim, hidden, evolution, float(aux_weight)
        self.extractor = SteeredGRU(dim, hidden)
        self.first, self.rest = activation_unit.unit_layers(hidden, attention_hidden, attention_activation,
                                                            score_bias=False)
        self.evolver = SteeredGRU(hidden, hidden, evolution)
        self.query_project = self.aux_project = self.out = None
        if hidden != dim:
            self.query_project = nn.Linear(dim, hidden)  # the candidate in the states' width
            self.out = nn.Linear(hidden, dim)  # the pooled state in the keys' width
            if self.aux_weight > 0:
                self.aux_project = nn.Linear(hidden, dim, bias=False)  # h_t · e_{t+1} in the keys' width
        self._aux: torch.Tensor | None = None

    @property
    def has_auxiliary_loss(self) -> bool:
        return self.aux_weight > 0

    @property
    def needs_negatives(self) -> bool:
        return self.aux_weight > 0

    def auxiliary_loss(self) -> torch.Tensor | None:
        return self._aux

    def pool_packed(self, query: torch.Tensor, packed: Packed, age=None):
        self._aux = None
        t = TimeMajor(packed)
        states = self.extractor(t.gather(packed.keys), t.sizes, t.rows)[0]  # [M, H]: a row's t-th state has read
        # its first t + 1 behaviours
        # attention of the candidate on each listed position's interest state (the DIN unit; fillers: masked)
        interest = t.at_listed(states)  # [N, H]
        q = query if self.query_project is None else self.query_project(query)  # [B, H]
        scores = activation_unit.scores(self.first, self.rest, q, interest, packed.row)  # [N]
        weights = normalize_scores(packed.to_padded(scores), packed.mask, "softmax")  # [B, L], 0 at padding
        listed = weights.view(-1).index_select(0, packed.row * weights.shape[1] + packed.pos)  # [N]
        last = self.evolver(states, t.sizes, t.rows, t.gather(listed.unsqueeze(-1)))[1]  # [B, H], longest first
        pooled = last.index_select(0, t.slot)  # [B, H] in batch order, exactly 0 for an empty history
        if t.m == 0:  # no row has a behaviour: no step ran; keep the keys in the graph (zero gradients)
            pooled = pooled + 0 * packed.keys.sum()
        if self.out is not None:
            pooled = self.out(pooled) * (t.lengths > 0).unsqueeze(-1).to(pooled.dtype)
        if self.training and packed.negatives is not None and self.aux_weight > 0:
            self._aux = self.aux_weight * self._next_behaviour_loss(t, states, packed)
        return pooled, weights

    def _next_behaviour_loss(self, t: "TimeMajor", states: torch.Tensor, packed: Packed) -> torch.Tensor:
        """Mean over the listed positions with a real predecessor in their row of
        -[log σ(h_prev · e) + log(1 - σ(h_prev · ê))] (e: the position's key, ê: its negative)."""
        pred = t.at_previous(states)  # [N, H]: the state before each listed position (0 where none)
        if self.aux_project is not None:
            pred = self.aux_project(pred)  # [N, D]
        pos = (pred * packed.keys).sum(-1)  # [N]
        neg = (pred * packed.negatives).sum(-1)  # [N]
        pairs = t.has_previous  # [N] bool
        per_pair = torch.where(pairs, -(F.logsigmoid(pos) + F.logsigmoid(-neg)), 0.0)
        return per_pair.sum() / pairs.sum().clamp(min=1)


class TimeMajor:
    """The listed positions of a Packed batch laid out for the GRUs: time-major, rows by length (longest
    first, ties in batch order), the layout of torch's PackedSequence:

        data [M, ...]   M = real positions; step t holds the ``sizes[t]`` rows longer than t
        index [N]       where each listed position goes in data (a static batch's fillers: M, a spare slot)

    The rows' lengths are read on the host (one device sync on a GPU); everything else is index arithmetic.
    """

    def __init__(self, packed: Packed) -> None:
        mask = packed.mask  # [B, L]
        device = mask.device
        B, L = mask.shape
        self.rows = B
        self.lengths = mask.sum(1)  # [B]
        lengths = self.lengths.cpu().numpy()  # the one host read
        by_length = np.argsort(-lengths, kind="stable")  # [B] the rows, longest first
        slot = np.empty(B, dtype=np.int64)
        slot[by_length] = np.arange(B)  # [B] each row's place in that order
        longest = int(lengths.max()) if B else 0
        self.sizes = [int(n) for n in (lengths[None, :] > np.arange(longest)[:, None]).sum(1)]  # [T] rows per step
        self.m = sum(self.sizes)  # M
        start = np.full(L + 1, self.m, dtype=np.int64)  # first data row of each step (M past the longest)
        start[:longest] = np.cumsum([0] + self.sizes[:-1])
        self.slot = torch.from_numpy(slot).to(device)  # [B]
        start = torch.from_numpy(start).to(device)  # [L + 1]
        rank = (mask.cumsum(1) - 1).view(-1).index_select(0, packed.row * L + packed.pos)  # [N] step of each position
        real = packed.real if packed.real is not None else torch.ones_like(packed.row, dtype=torch.bool)
        slot_n = self.slot.index_select(0, packed.row)  # [N]
        spare = torch.full_like(packed.row, self.m)
        self.index = torch.where(real, start.index_select(0, rank.clamp(min=0)) + slot_n, spare)  # [N]
        self.has_previous = real & (rank >= 1)  # [N]: a real position with a real one before it in its row
        self.previous = torch.where(self.has_previous, start.index_select(0, (rank - 1).clamp(min=0)) + slot_n, spare)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """values [N, ...] of the listed positions -> data [M, ...] (fillers dropped)."""
        out = values.new_zeros((self.m + 1, *values.shape[1:]))
        return out.index_put((self.index,), values)[: self.m]

    def _spare(self, data: torch.Tensor) -> torch.Tensor:
        return torch.cat([data, data.new_zeros((1, *data.shape[1:]))])  # [M + 1, ...]: row M is 0

    def at_listed(self, data: torch.Tensor) -> torch.Tensor:
        """data [M, ...] -> [N, ...] at each listed position (0 at fillers)."""
        return self._spare(data).index_select(0, self.index)

    def at_previous(self, data: torch.Tensor) -> torch.Tensor:
        """data [M, ...] -> [N, ...] at the real position before each listed one in its row (0 where none)."""
        return self._spare(data).index_select(0, self.previous)
