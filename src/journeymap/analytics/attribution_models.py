"""Attribution models over aggregated journeys: heuristics, Markov removal effects, Shapley.

Everything here works on small aggregated inputs that the engine (or a path file) produced:

* ``PathSet``: distinct channel paths with their conversions, conversion value and null
  (non-converting) journeys, the representation of the ChannelAttribution path format
  (``path;total_conversions;total_conversion_value;total_null``);
* ``Transitions``: counts of (state -> next channel | conversion | null) for a Markov chain
  of order k, where a state is the tuple of the last k channels.

Exactness: conversions and values are integers (values in units of ``10**-value_scale``), so
the heuristic models are computed as sums of integers per (channel, path length) group and
one exact rational division per group; the Markov chain is built from integer counts with
states in sorted order and solved with one LU factorisation per removed channel; the exact
Shapley value sums integers per coalition size before one rational weight per size. Nothing
depends on the order of the input rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

#: codes of the chain's end states in ``Transitions.next``
CONVERSION = -2
NULL = -3
#: the padding code of a state tuple (a state of a journey's first k-1 touches is shorter)
EMPTY = -1
#: dense LU up to this many transient states, sparse (SuperLU) above
_DENSE_MAX_STATES = 200

ShapleyValue = Literal["conversions", "conversion_rate"]


# -- aggregated journeys -----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PathSet:
    """Distinct paths (as channel codes) with conversions, value and nulls.

    Path ``i`` is ``codes[offsets[i]:offsets[i + 1]]``; codes index ``channels``, which is
    sorted by name, so two inputs with the same content have the same codes whatever their
    row order. ``value`` is in units of ``10**-value_scale`` (cents for the lake's money).
    """

    channels: tuple[str, ...]
    offsets: IntArray
    codes: IntArray
    conversions: IntArray
    value: IntArray
    nulls: IntArray
    value_scale: int = 2

    @property
    def n_paths(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> IntArray:
        return np.diff(self.offsets)

    @cached_property
    def _parents(self) -> IntArray:
        return np.repeat(np.arange(self.n_paths, dtype=np.int64), self.lengths)

    def parents(self) -> IntArray:
        """The path index of every touch in ``codes``."""
        return self._parents

    @cached_property
    def _positions(self) -> IntArray:
        return np.arange(len(self.codes), dtype=np.int64) - np.repeat(
            self.offsets[:-1], self.lengths
        )

    def positions(self) -> IntArray:
        """The 0-based position of every touch within its path."""
        return self._positions

    def non_empty(self) -> PathSet:
        """Only the paths with at least one touch."""
        keep = self.lengths > 0
        if keep.all():
            return self
        lengths = self.lengths[keep]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return PathSet(
            self.channels,
            offsets,
            self.codes,  # empty paths own no codes
            self.conversions[keep],
            self.value[keep],
            self.nulls[keep],
            self.value_scale,
        )

    def collapsed(self) -> PathSet:
        """Repeated consecutive identical touches merged into one (``a > a > b`` is ``a > b``)."""
        if len(self.codes) == 0:
            return self
        pos = self.positions()
        keep = np.ones(len(self.codes), dtype=bool)
        keep[1:] = (self.codes[1:] != self.codes[:-1]) | (pos[1:] == 0)
        lengths = np.bincount(self.parents()[keep], minlength=self.n_paths).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return PathSet(
            self.channels,
            offsets,
            self.codes[keep],
            self.conversions,
            self.value,
            self.nulls,
            self.value_scale,
        )

    def value_of(self, units: int | Fraction) -> Decimal:
        """Value units as a Decimal, rounded half-even to the input's precision."""
        return to_decimal(Fraction(units) / 10**self.value_scale, self.value_scale)


def to_decimal(x: Fraction, places: int) -> Decimal:
    """``x`` rounded half-even to ``places`` decimals (exact: no float in between)."""
    scaled = x * 10**places
    n, d = scaled.numerator, scaled.denominator
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return Decimal(q).scaleb(-places)


def _group_sum(keys: IntArray, values: IntArray) -> tuple[IntArray, IntArray]:
    """Exact integer sums of ``values`` per distinct key (keys sorted ascending)."""
    if len(keys) == 0:
        return keys, values
    top = int(keys.max())
    if int(keys.min()) >= 0 and top < 1 << 22 and int(np.abs(values).sum()) < 1 << 53:
        # small non-negative keys and sums that doubles hold exactly: one bincount pass
        sums = np.bincount(keys, weights=values.astype(np.float64), minlength=top + 1)
        present = np.bincount(keys, minlength=top + 1) > 0
        idx = np.flatnonzero(present).astype(np.int64)
        return idx, sums[idx].astype(np.int64)
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    return k[starts], np.add.reduceat(values[order], starts)


# -- heuristic models ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credit:
    """Exact credit per channel code: conversions and value units as fractions."""

    conversions: dict[int, Fraction]
    value: dict[int, Fraction]


def _add(credit: dict[int, Fraction], codes: IntArray, amounts: Sequence[Fraction]) -> None:
    for c, a in zip(codes.tolist(), amounts, strict=True):
        credit[c] = credit.get(c, Fraction(0)) + a


def _touch_groups(
    paths: PathSet, mask: NDArray[np.bool_], divisor: IntArray, per_path: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """For touches in ``mask``: sums of ``per_path`` grouped by (channel, divisor)."""
    parents = paths.parents()[mask]
    codes = paths.codes[mask]
    div = divisor[parents]
    width = int(div.max()) + 1 if len(div) else 1
    keys, sums = _group_sum(codes * width + div, per_path[parents])
    return keys // width, keys % width, sums


def heuristic_credit(
    paths: PathSet,
    model: Literal["first", "last", "linear", "position_based"],
    position_weights: tuple[Fraction, Fraction, Fraction] = (
        Fraction(2, 5),
        Fraction(1, 5),
        Fraction(2, 5),
    ),
) -> Credit:
    """Exact credit of first / last / linear / position-based over converting paths.

    * first, last: all of a journey's credit to its first (last) touch;
    * linear: 1/n to each of its n touches (a channel seen twice gets 2/n);
    * position-based (U-shaped) with weights (first, middle, last), 40/20/40 by default: one
      touch takes all; two touches split first:last (50/50 by default); from three touches on
      the first and last take their weight and the middle touches share the middle weight.
    """
    p = paths.non_empty()
    conv_out: dict[int, Fraction] = {}
    val_out: dict[int, Fraction] = {}
    n = p.lengths
    pos = p.positions()
    parents = p.parents()
    n_touch = n[parents]
    last = n_touch - 1
    for amounts, out in ((p.conversions, conv_out), (p.value, val_out)):
        if model in ("first", "last"):
            mask = pos == 0 if model == "first" else pos == last
            keys, sums = _group_sum(p.codes[mask], amounts[parents[mask]])
            _add(out, keys, [Fraction(int(s)) for s in sums])
        elif model == "linear":
            codes, div, sums = _touch_groups(p, np.ones(len(p.codes), bool), n, amounts)
            _add(out, codes, [Fraction(int(s), int(d)) for s, d in zip(sums, div, strict=True)])
        elif model == "position_based":
            w_first, w_mid, w_last = position_weights
            one = n_touch == 1
            two = n_touch == 2
            many = ~(one | two)
            ends = w_first + w_last
            for mask, weight in (
                (one, Fraction(1)),
                (two & (pos == 0), w_first / ends if ends else Fraction(1, 2)),
                (two & (pos == 1), w_last / ends if ends else Fraction(1, 2)),
                (many & (pos == 0), w_first),
                (many & (pos == last), w_last),
            ):
                keys, sums = _group_sum(p.codes[mask], amounts[parents[mask]])
                _add(out, keys, [weight * int(s) for s in sums])
            middle = many & (pos > 0) & (pos < last)
            codes, div, sums = _touch_groups(p, middle, n - 2, amounts)
            _add(
                out,
                codes,
                [w_mid * Fraction(int(s), int(d)) for s, d in zip(sums, div, strict=True)],
            )
        else:  # pragma: no cover - guarded by the caller
            raise ValueError(model)
    return Credit(conv_out, val_out)


# -- Markov chains -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Transitions:
    """Counts of a k-order chain: ``state`` (k channel codes, ``EMPTY``-padded on the left;
    all ``EMPTY`` is the start) followed by ``next`` (a channel code, ``CONVERSION`` or
    ``NULL``), ``count`` times. Rows may repeat; they are summed."""

    channels: tuple[str, ...]
    order: int
    state: IntArray  # shape (rows, order)
    next: IntArray
    count: IntArray


def transitions_from_paths(paths: PathSet, order: int) -> Transitions:
    """The k-order transition counts of a path set (start, touches, conversion / null)."""
    p = paths.non_empty()
    k = order
    parents = p.parents()
    pos = p.positions()
    journeys = (p.conversions + p.nulls)[parents]
    n_touch = len(p.codes)
    # state after touch i: the last k codes of its path up to i, EMPTY-padded on the left
    after = np.full((n_touch, k), EMPTY, dtype=np.int64)
    for j in range(k):
        ok = pos >= j
        idx = np.flatnonzero(ok)
        after[idx, k - 1 - j] = p.codes[idx - j]
    # state before touch i: the state after touch i-1, or the start for a first touch
    before = np.full((n_touch, k), EMPTY, dtype=np.int64)
    inner = np.flatnonzero(pos > 0)
    before[inner] = after[inner - 1]
    ends = p.offsets[1:] - 1
    states = np.concatenate([before, after[ends], after[ends]])
    nxt = np.concatenate(
        [
            p.codes,
            np.full(len(ends), CONVERSION, np.int64),
            np.full(len(ends), NULL, np.int64),
        ]
    )
    count = np.concatenate([journeys, p.conversions, p.nulls])
    keep = count > 0
    return Transitions(p.channels, k, states[keep], nxt[keep], count[keep])


@dataclass(frozen=True)
class MarkovSolution:
    """Conversion probability of the chain and per removed channel (codes of ``channels``)."""

    channels: tuple[str, ...]
    order: int
    n_states: int
    conversion_probability: float
    without: FloatArray  # P(conversion) with channel c removed, per code
    removal_effects: FloatArray  # 1 - without / conversion_probability


def _next_state(state: IntArray, nxt: IntArray) -> IntArray:
    return np.concatenate([state[:, 1:], nxt[:, None]], axis=1)


def _unique_rows(rows: IntArray, n_channels: int) -> tuple[IntArray, IntArray]:
    """``np.unique(rows, axis=0, return_inverse=True)`` (the same sorted rows and indices),
    through one int64 key per row where it fits: codes are >= EMPTY (-1) and < n_channels,
    so the base-(n_channels + 1) number of ``code + 1`` sorts exactly like the rows."""
    base = n_channels + 1
    k = rows.shape[1]
    if base**k >= 2**62:
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    keys = np.zeros(len(rows), dtype=np.int64)
    for j in range(k):
        keys = keys * base + (rows[:, j] + 1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return rows[first], inverse.reshape(-1)


def _system(counts: FloatArray, src: IntArray, dst: IntArray, outflow: NDArray[Any], n: int) -> Any:
    """``I - Q`` with Q the transient transition probabilities (count sums scaled by
    ``1 / outflow`` per row): a dense array up to ``_DENSE_MAX_STATES`` states (SciPy is then
    not even imported), else a SciPy CSC matrix. Both hold the same numbers: integer counts
    summed exactly, then one product per entry."""
    if n <= _DENSE_MAX_STATES:
        q = np.zeros((n, n))
        np.add.at(q, (src, dst), counts)
        q *= (1.0 / outflow)[:, None]
        return np.eye(n) - q
    import scipy.sparse as sp  # type: ignore[import-untyped]

    q_counts = sp.csr_matrix((counts, (src, dst)), shape=(n, n), dtype=np.float64)
    q = sp.diags(1.0 / outflow) @ q_counts
    return (sp.identity(n, format="csr") - q).tocsc()


def solve_markov(trans: Transitions) -> MarkovSolution:
    """Exact absorption probabilities of the empirical chain, and removal effects.

    Transition probabilities are the counts divided by each state's total outflow. With Q the
    transient-to-transient and r the transient-to-conversion probabilities, the conversion
    probabilities x solve (I - Q) x = r (a linear solve, never an inverse); P(conversion) is
    x at the start. Removing channel c removes every state that contains it: transitions into
    those states end the journey without conversion, i.e. their x is 0, so the system is
    solved again on the remaining states. Removal effect RE_c = 1 - P_-c / P.
    """
    k = trans.order
    n_channels = len(trans.channels)
    start = np.full((1, k), EMPTY, dtype=np.int64)
    to_chan = trans.next >= 0
    nxt_states = _next_state(trans.state[to_chan], trans.next[to_chan])
    # every state, sorted lexicographically (deterministic indices); the start sorts first
    all_states, inverse = _unique_rows(np.concatenate([start, trans.state, nxt_states]), n_channels)
    n = len(all_states)
    start_idx = int(inverse[0])
    src = inverse[1 : 1 + len(trans.state)]
    dst = inverse[1 + len(trans.state) :]
    counts = trans.count.astype(np.float64)
    outflow = np.bincount(src, weights=counts, minlength=n)
    outflow[outflow == 0] = 1.0  # states that were only reached (cannot happen for full paths)
    conv = np.bincount(
        src[trans.next == CONVERSION],
        weights=counts[trans.next == CONVERSION],
        minlength=n,
    )
    r = conv / outflow
    a = _system(counts[to_chan], src[to_chan], dst, outflow, n)

    contains = np.zeros((n_channels, n), dtype=bool)
    for j in range(k):
        col = all_states[:, j]
        valid = col >= 0
        contains[col[valid], np.flatnonzero(valid)] = True

    def p_conv(keep: NDArray[np.bool_]) -> float:
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            return 0.0
        rhs = r[idx]
        if isinstance(a, np.ndarray):
            x = np.linalg.solve(a[np.ix_(idx, idx)], rhs)
        else:
            sub = a[idx][:, idx]
            if len(idx) <= _DENSE_MAX_STATES:
                x = np.linalg.solve(sub.toarray(), rhs)
            else:
                import scipy.sparse.linalg as spla  # type: ignore[import-untyped]

                x = spla.spsolve(sub.tocsc(), rhs)
        pos = int(np.searchsorted(idx, start_idx))
        return float(x[pos])

    full = p_conv(np.ones(n, dtype=bool))
    without = np.zeros(n_channels)
    for c in range(n_channels):
        without[c] = p_conv(~contains[c])
    effects = np.clip(1.0 - without / full, 0.0, None) if full > 0 else np.zeros(n_channels)
    return MarkovSolution(trans.channels, k, n - 1, full, without, effects)


def markov_credit_global(
    sol: MarkovSolution, total_conversions: int, total_value: int
) -> tuple[FloatArray, FloatArray]:
    """The classic allocation (Anderl et al. 2016; ChannelAttribution): each channel gets
    RE_c / sum(RE) of all conversions and of all value."""
    total = float(sol.removal_effects.sum())
    if total <= 0:
        zeros = np.zeros(len(sol.channels))
        return zeros, zeros.copy()
    share = sol.removal_effects / total
    return share * float(total_conversions), share * float(total_value)


def markov_credit_per_journey(sol: MarkovSolution, paths: PathSet) -> tuple[FloatArray, FloatArray]:
    """``marketing-attribution-models`` (mam) allocation: each converting path splits its own
    conversions and value among its touches in proportion to their channels' removal effects
    (a channel seen twice counts twice). A path whose channels all have RE 0 splits evenly."""
    p = paths.non_empty()
    parents = p.parents()
    re = sol.removal_effects[p.codes]
    per_path = np.bincount(parents, weights=re, minlength=p.n_paths)
    zero = per_path[parents] <= 0
    weight = np.where(zero, 1.0 / p.lengths[parents], re / np.where(zero, 1.0, per_path[parents]))
    n = len(p.channels)
    conv = np.bincount(p.codes, weights=weight * p.conversions[parents], minlength=n)
    val = np.bincount(p.codes, weights=weight * p.value[parents], minlength=n)
    return conv.astype(np.float64), val.astype(np.float64)


# -- Shapley ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapleySolution:
    """Shapley values per channel code (conversions and value units) and how they were found."""

    conversions: FloatArray
    value: FloatArray
    method: Literal["exact", "sampled"]
    permutations: int
    #: exact fractions when the characteristic function is additive and enumeration was used
    exact_conversions: dict[int, Fraction] | None = None
    exact_value: dict[int, Fraction] | None = None


def channel_sets(paths: PathSet) -> tuple[list[tuple[int, ...]], IntArray, IntArray, IntArray]:
    """Distinct channel sets of the paths (sorted) with conversions, value and nulls."""
    p = paths.non_empty()
    if p.n_paths == 0:
        empty = np.zeros(0, np.int64)
        return [], empty, empty, empty
    if len(p.channels) <= 62:
        # a path's channel set as a bit mask: OR of 1 << code over its touches
        masks = np.bitwise_or.reduceat(np.left_shift(1, p.codes), p.offsets[:-1])
        uniq, inverse = np.unique(masks, return_inverse=True)
        sums = [
            _group_sum(inverse.astype(np.int64), a)[1] for a in (p.conversions, p.value, p.nulls)
        ]
        sets = {
            tuple(c for c in range(len(p.channels)) if m >> c & 1): i
            for i, m in enumerate(uniq.tolist())
        }
        keys = sorted(sets)
        idx = np.array([sets[k] for k in keys], dtype=np.int64)
        return keys, sums[0][idx], sums[1][idx], sums[2][idx]
    parents = p.parents()
    pairs = np.unique(np.stack([parents, p.codes], axis=1), axis=0)
    members: dict[int, list[int]] = {}
    for path, code in pairs.tolist():
        members.setdefault(path, []).append(code)
    acc: dict[tuple[int, ...], list[int]] = {}
    for i in range(p.n_paths):
        a = acc.setdefault(tuple(members[i]), [0, 0, 0])
        a[0] += int(p.conversions[i])
        a[1] += int(p.value[i])
        a[2] += int(p.nulls[i])
    keys = sorted(acc)
    arr = np.array([acc[k] for k in keys], dtype=np.int64).reshape(-1, 3)
    return keys, arr[:, 0], arr[:, 1], arr[:, 2]


def _subset_sums(n: int, masks: IntArray, weights: IntArray) -> IntArray:
    """v(S) = sum of weights of masks that are subsets of S, for every S (zeta transform)."""
    f = np.zeros(1 << n, dtype=np.int64)
    np.add.at(f, masks, weights)
    for i in range(n):
        view = f.reshape(-1, 2, 1 << i)
        view[:, 1, :] += view[:, 0, :]
    return f


def _exact_additive(n: int, v: IntArray) -> dict[int, Fraction]:
    """Exact Shapley values of an integer-valued game given on all 2^n coalitions."""
    masks = np.arange(1 << n, dtype=np.int64)
    size = np.array([bin(m).count("1") for m in range(1 << n)], dtype=np.int64)
    out: dict[int, Fraction] = {}
    for c in range(n):
        bit = 1 << c
        without = masks[(masks & bit) == 0]
        diff = v[without | bit] - v[without]
        s_keys, s_sums = _group_sum(size[without], diff)
        total = Fraction(0)
        for s, d in zip(s_keys.tolist(), s_sums.tolist(), strict=True):
            total += Fraction(math.factorial(s) * math.factorial(n - s - 1), math.factorial(n)) * d
        out[c] = total
    return out


def shapley(
    paths: PathSet,
    *,
    value: ShapleyValue = "conversions",
    max_exact: int = 12,
    permutations: int = 2000,
    seed: int = 0,
) -> ShapleySolution:
    """Shapley values of the channels (Shapley 1953; for attribution Dalessandro et al. 2012,
    Zhao et al. 2018 "Shapley value methods for attribution modeling in online advertising").

    Characteristic functions (coalition S = a set of channels):

    * ``"conversions"`` (default): v(S) = conversions (for value: conversion value) of the
      journeys whose channel set is a subset of S. This game is the sum of unanimity games of
      the observed channel sets, so its Shapley value is also sum over sets T containing c of
      conversions(T) / |T|; it is computed by enumerating all 2^n coalitions when there are at
      most ``max_exact`` channels, and by that closed form above (both exact).
    * ``"conversion_rate"``: v(S) = conversions / journeys among the journeys whose channel set
      is a subset of S (0 without journeys); credits are the Shapley values scaled to the total
      conversions (value). Exact enumeration up to ``max_exact`` channels; above, the mean
      marginal contribution over ``permutations`` random channel orders drawn with ``seed``.
    """
    n = len(paths.channels)
    keys, conv, val, nulls = channel_sets(paths)
    if n == 0 or not keys:
        z = np.zeros(n)
        return ShapleySolution(z, z.copy(), "exact", 0)
    if value == "conversions":
        if n <= max_exact:
            masks = np.array([sum(1 << c for c in k) for k in keys], dtype=np.int64)
            ex_c = _exact_additive(n, _subset_sums(n, masks, conv))
            ex_v = _exact_additive(n, _subset_sums(n, masks, val))
        else:
            ex_c, ex_v = _dividends(n, keys, conv), _dividends(n, keys, val)
        return ShapleySolution(
            np.array([float(ex_c[c]) for c in range(n)]),
            np.array([float(ex_v[c]) for c in range(n)]),
            "exact",
            0,
            ex_c,
            ex_v,
        )
    if value != "conversion_rate":
        raise ValueError(f"unknown Shapley value function {value!r}")
    if n <= max_exact:
        masks = np.array([sum(1 << c for c in k) for k in keys], dtype=np.int64)
        cv = _subset_sums(n, masks, conv).astype(np.float64)
        tot = cv + _subset_sums(n, masks, nulls)
        rate = np.divide(cv, tot, out=np.zeros_like(cv), where=tot > 0)
        phi = _exact_float(n, rate)
        method: Literal["exact", "sampled"] = "exact"
        used = 0
    else:
        phi = _sampled_rate(n, keys, conv, nulls, permutations, seed)
        method, used = "sampled", permutations
    total_c, total_v = int(conv.sum()), int(val.sum())
    s = float(phi.sum())
    share = phi / s if s != 0 else np.zeros(n)
    return ShapleySolution(share * total_c, share * total_v, method, used)


def _dividends(n: int, keys: list[tuple[int, ...]], w: IntArray) -> dict[int, Fraction]:
    out = {c: Fraction(0) for c in range(n)}
    for k, amount in zip(keys, w.tolist(), strict=True):
        share = Fraction(int(amount), len(k))
        for c in k:
            out[c] += share
    return out


def _exact_float(n: int, v: FloatArray) -> FloatArray:
    masks = np.arange(1 << n, dtype=np.int64)
    size = np.array([bin(m).count("1") for m in range(1 << n)], dtype=np.int64)
    weight = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    )
    phi = np.zeros(n)
    for c in range(n):
        bit = 1 << c
        without = masks[(masks & bit) == 0]
        phi[c] = float(np.sum(weight[size[without]] * (v[without | bit] - v[without])))
    return phi


def _sampled_rate(
    n: int,
    keys: list[tuple[int, ...]],
    conv: IntArray,
    nulls: IntArray,
    permutations: int,
    seed: int,
) -> FloatArray:
    members = np.array([c for k in keys for c in k], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum([len(k) for k in keys])[:-1]]).astype(np.int64)
    journeys = (conv + nulls).astype(np.float64)
    conv_f = conv.astype(np.float64)
    rng = np.random.default_rng(seed)
    phi = np.zeros(n)
    rank = np.empty(n, dtype=np.int64)
    for _ in range(permutations):
        perm = rng.permutation(n)
        rank[perm] = np.arange(n)
        # the position at which each channel set becomes covered by the growing coalition
        covered = np.maximum.reduceat(rank[members], starts)
        cum_c = np.cumsum(np.bincount(covered, weights=conv_f, minlength=n))
        cum_t = np.cumsum(np.bincount(covered, weights=journeys, minlength=n))
        v = np.divide(cum_c, cum_t, out=np.zeros(n), where=cum_t > 0)
        marginal = np.diff(np.concatenate([[0.0], v]))
        phi[perm] += marginal
    return phi / max(permutations, 1)
