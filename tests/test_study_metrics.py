"""The study's metrics: t intervals from sums, minibatch CKA, effective receptive fields, deletion/insertion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fishspine.analysis.study.cka import cka_from_hsic, hsic_matrix, linear_cka
from fishspine.analysis.study.erf import centre_of_mass, erf_maps, mass_radius, unit_centre
from fishspine.analysis.study.faithfulness import auc, deletion_insertion, perturbation_batches
from fishspine.analysis.study.statistics import Interval, student_t_quantile, t_interval, t_intervals

from .conftest import tiny_model

# ---------------------------------------------------------------------------------------------- statistics

# Two-sided 95 % (p = .975) and one 99 % value of Student's t, from printed tables (6+ digits).
T_TABLE = [
    (0.975, 1, 12.706205),
    (0.975, 2, 4.302653),
    (0.975, 4, 2.776445),
    (0.975, 9, 2.262157),
    (0.975, 10, 2.228139),
    (0.975, 30, 2.042272),
    (0.975, 1000, 1.962339),
    (0.995, 5, 4.032143),
]


@pytest.mark.parametrize("p, df, expected", T_TABLE)
def test_t_quantile_matches_table(p, df, expected):
    assert student_t_quantile(p, df) == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("p", [0.001, 0.1, 0.3, 0.5, 0.8, 0.95, 0.999])
def test_t_quantile_closed_forms(p):
    # df = 1 is the Cauchy distribution; df = 2 has a closed-form quantile too.
    assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10, abs=1e-12)
    assert student_t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10, abs=1e-12)
    assert student_t_quantile(1 - p, 7) == pytest.approx(-student_t_quantile(p, 7), abs=1e-12)


def test_t_quantile_tends_to_normal_and_rejects_bad_input():
    assert student_t_quantile(0.975, 10**7) == pytest.approx(1.959964, abs=1e-5)
    for p, df in [(0.0, 3), (1.0, 3), (0.5, 0)]:
        with pytest.raises(ValueError):
            student_t_quantile(p, df)


def _direct_interval(values: np.ndarray, t: float) -> tuple[float, float, float]:
    mean, sd = values.mean(), values.std(ddof=1)
    half = t * sd / math.sqrt(values.size)
    return mean, mean - half, mean + half


def test_t_interval_equals_direct_computation():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=10)
    got = t_interval(values.size, values.sum(), (values**2).sum())
    mean, lo, hi = _direct_interval(values, 2.262157)  # t(.975, df=9) from the table
    assert got.n == 10
    assert (got.mean, got.lo, got.hi) == pytest.approx((mean, lo, hi), rel=1e-6)
    assert got.lo < got.mean < got.hi
    assert got.as_dict() == {"mean": got.mean, "lo": got.lo, "hi": got.hi, "n": 10}
    # A wider confidence gives a wider interval: the confidence is used.
    wide = t_interval(values.size, values.sum(), (values**2).sum(), confidence=0.99)
    assert wide.lo < got.lo and wide.hi > got.hi


def test_t_interval_from_merged_halves_equals_whole():
    values = np.random.default_rng(1).exponential(size=37)
    a, b = values[:20], values[20:]
    merged = t_interval(a.size + b.size, a.sum() + b.sum(), (a**2).sum() + (b**2).sum())
    whole = t_interval(values.size, values.sum(), (values**2).sum())
    assert (merged.mean, merged.lo, merged.hi) == pytest.approx((whole.mean, whole.lo, whole.hi), rel=1e-12)
    assert merged.lo < values.mean() < merged.hi


def test_t_interval_small_n_and_constant_data():
    empty = t_interval(0, 0.0, 0.0)
    assert empty.n == 0 and all(math.isnan(v) for v in (empty.mean, empty.lo, empty.hi))
    one = t_interval(1, 2.5, 6.25)
    assert one.mean == 2.5 and math.isnan(one.lo) and math.isnan(one.hi)
    # Constant data whose sums round to a slightly negative variance: a zero-width interval, not nan.
    values = np.full(7, 0.1)
    const = t_interval(7, values.sum(), (values**2).sum())
    assert const.lo == pytest.approx(0.1) and const.hi == pytest.approx(0.1) and not math.isnan(const.lo)
    assert isinstance(const, Interval)


def test_t_intervals_elementwise_with_per_element_n():
    rng = np.random.default_rng(2)
    samples = [rng.normal(i, 1.0 + i, size=k) for i, k in enumerate([0, 1, 2, 5, 30])]
    n = np.array([s.size for s in samples])
    totals = np.array([s.sum() for s in samples])
    totals_sq = np.array([(s**2).sum() for s in samples])
    mean, lo, hi = t_intervals(n, totals, totals_sq)
    assert np.isnan([mean[0], lo[0], hi[0], lo[1], hi[1]]).all() and mean[1] == samples[1][0]
    for i, t in [(2, 12.706205), (3, 2.776445), (4, 2.045230)]:  # t(.975, df = n - 1) from the table
        np.testing.assert_allclose([mean[i], lo[i], hi[i]], _direct_interval(samples[i], t), rtol=1e-6)
    # One n for all elements: columns of a (5, 3) sample.
    data = rng.normal(size=(5, 3))
    mean, lo, hi = t_intervals(5, data.sum(axis=0), (data**2).sum(axis=0))
    assert mean.shape == (3,)
    for j in range(3):
        np.testing.assert_allclose([mean[j], lo[j], hi[j]], _direct_interval(data[:, j], 2.776445), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- CKA


def _random_orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_linear_cka_identity_symmetry_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    y = x @ rng.normal(size=(6, 4)) + 0.5 * rng.normal(size=(50, 4))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y)
    assert 0.1 < base < 0.99
    assert linear_cka(y, x) == pytest.approx(base, rel=1e-12)
    assert linear_cka(3.7 * x @ _random_orthogonal(6, 1), y) == pytest.approx(base, rel=1e-10)
    # Not invariant to an arbitrary linear map: the invariance test above could fail.
    assert linear_cka(x * np.array([10, 1, 1, 1, 1, 0.1]), y) != pytest.approx(base, rel=1e-3)


def _hsic1_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased HSIC formula, written out with loops and explicit matrices."""
    n = x.shape[0]
    k = np.zeros((n, n))
    l_ = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                k[i, j] = float(np.dot(x[i], x[j]))
                l_[i, j] = float(np.dot(y[i], y[j]))
    one = np.ones(n)
    return (
        np.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l_ @ one
    ) / (n * (n - 3))


def test_hsic_matrix_equals_formula():
    rng = np.random.default_rng(3)
    feats = [rng.normal(size=(6, 3)), rng.normal(size=(6, 5)) + 1.0, rng.normal(size=(6, 2))]
    h = hsic_matrix([torch.from_numpy(f).float() for f in feats])
    assert h.dtype == torch.float64 and h.shape == (3, 3)
    f32 = [torch.from_numpy(f).float().double().numpy() for f in feats]
    expected = np.array([[_hsic1_loops(a, b) for b in f32] for a in f32])
    np.testing.assert_allclose(h.numpy(), expected, rtol=1e-10, atol=1e-12)
    cka = cka_from_hsic(h.numpy())
    np.testing.assert_allclose(np.diag(cka), 1.0)
    np.testing.assert_allclose(cka, cka.T)


def test_hsic_matrix_invariances():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 5))
    y = rng.normal(size=(8, 3))
    h = hsic_matrix([torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(2.5 * x @ _random_orthogonal(5, 5))])
    cka = cka_from_hsic(h.numpy())
    assert cka[0, 2] == pytest.approx(1.0, abs=1e-10)
    assert cka[2, 1] == pytest.approx(cka[0, 1], abs=1e-10)


def test_minibatch_cka_similar_near_one_independent_near_zero():
    rng = np.random.default_rng(5)
    q = _random_orthogonal(16, 6)
    total = np.zeros((3, 3))
    for _ in range(40):
        x = rng.normal(size=(16, 16)) + rng.normal(size=(1, 16))  # a batch offset, removed by the centring
        similar = x @ q * 2.0 + 0.05 * rng.normal(size=(16, 16))
        independent = rng.normal(size=(16, 16))
        total += hsic_matrix([torch.from_numpy(a) for a in (x, similar, independent)]).numpy()
    cka = cka_from_hsic(total)
    assert cka[0, 1] > 0.99
    assert abs(cka[0, 2]) < 0.05 and abs(cka[1, 2]) < 0.05


def test_minibatch_cka_approaches_full_batch_cka():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4000, 6))
    y = np.tanh(x @ rng.normal(size=(6, 5))) + 0.3 * rng.normal(size=(4000, 5))
    total = sum(
        hsic_matrix([torch.from_numpy(x[i : i + 500]), torch.from_numpy(y[i : i + 500])]).numpy()
        for i in range(0, 4000, 500)
    )
    assert cka_from_hsic(total)[0, 1] == pytest.approx(linear_cka(x, y), abs=0.02)


def test_hsic_matrix_rejects_small_or_mismatched_batches():
    with pytest.raises(ValueError):
        hsic_matrix([torch.zeros(3, 4), torch.zeros(3, 2)])
    with pytest.raises(ValueError):
        hsic_matrix([torch.zeros(5, 4), torch.zeros(6, 2)])


def test_cka_from_hsic_nan_where_diagonal_not_positive():
    cka = cka_from_hsic(np.array([[4.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 1.0]]))
    assert cka[0, 2] == pytest.approx(0.25) and cka[0, 0] == 1.0
    assert np.isnan(cka[1]).all() and np.isnan(cka[:, 1]).all()


# ---------------------------------------------------------------------------------------------------- ERF


def _symmetric_positive_conv(c_in: int, c_out: int, k: int, stride: int, seed: int) -> nn.Conv2d:
    """A bias-free conv with positive weights, each kernel mirror-symmetric in rows and in columns."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2 if k % 2 else 0, bias=False)
    w = torch.rand(c_out, c_in, k, k, generator=g) + 0.1
    with torch.no_grad():
        conv.weight.copy_(w + w.flip(2) + w.flip(3) + w.flip(2, 3))
    return conv


class _ConvStack(nn.Module):
    """Linear conv layers, exposing `forward_features` like a Backbone: {level: map}."""

    def __init__(self, layers: list[nn.Conv2d], levels: dict[int, int]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.levels = levels  # level -> index of the layer whose output it is

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            for level, j in self.levels.items():
                if j == i:
                    out[level] = x
        return out


def _support(m: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(m)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_erf_of_stride_one_stack_is_the_analytic_receptive_field():
    torch.manual_seed(0)
    layers = [_symmetric_positive_conv(3, 4, 3, 1, 0), _symmetric_positive_conv(4, 4, 3, 1, 1)]
    layers.append(_symmetric_positive_conv(4, 5, 3, 1, 2))
    model = _ConvStack(layers, {0: 0, 1: 2})
    x = torch.randn(2, 3, 15, 15)
    maps = erf_maps(model, x)
    assert set(maps) == {0, 1}
    assert all(p.grad is None for p in model.parameters())
    for level, size in [(0, 3), (1, 7)]:
        m = maps[level]
        assert m.shape == (2, 15, 15) and m.dtype == torch.float32
        for image in m.numpy():
            nonzero = image > 0
            assert nonzero.sum() == size * size  # the whole square, nothing outside it
            r = size // 2
            assert _support(image) == (7 - r, 7 + r, 7 - r, 7 + r)
            cy, cx = centre_of_mass(image)
            assert unit_centre((15, 15), (15, 15)) == (7.0, 7.0)
            assert (cy, cx) == pytest.approx((7.0, 7.0), abs=1e-5)


def test_erf_of_strided_stack_is_centred_on_unit_centre():
    # conv3 s1 -> conv2 s2 -> conv3 s1 on 16 x 16: the 8 x 8 map's unit (4, 4) sees input rows 5..12.
    layers = [_symmetric_positive_conv(3, 4, 3, 1, 3), _symmetric_positive_conv(4, 4, 2, 2, 4)]
    layers.append(_symmetric_positive_conv(4, 4, 3, 1, 5))
    model = _ConvStack(layers, {3: 2})
    maps = erf_maps(model, torch.randn(1, 3, 16, 12))
    image = maps[3][0].numpy()
    assert image.shape == (16, 12)
    # 16 x 12 input -> 8 x 6 map; centre unit (4, 3): rows 5..12, columns 3..10.
    assert _support(image) == (5, 12, 3, 10)
    assert (image > 0).sum() == 8 * 8
    centre = unit_centre((16, 12), (8, 6))
    assert centre == (8.5, 6.5)
    assert centre_of_mass(image) == pytest.approx(centre, abs=1e-5)
    assert mass_radius(image, centre, 1.0) == pytest.approx(math.hypot(3.5, 3.5))


def test_erf_maps_are_per_image():
    # A nonlinearity makes the gradient depend on the image: each map must come from its own image.
    model = _ConvStack([_symmetric_positive_conv(3, 4, 3, 1, 6), nn.Conv2d(4, 4, 3, padding=1)], {0: 1})
    model.layers.insert(1, nn.ReLU())
    model.levels = {0: 2}
    x = torch.randn(3, 3, 9, 9)
    both = erf_maps(model, x)[0]
    for i in range(3):
        torch.testing.assert_close(both[i], erf_maps(model, x[i : i + 1])[0][0])
    assert not torch.equal(both[0], both[1])
    # Against the definition, image by image: |d (centre unit summed over channels) / d input|, summed over colour.
    for i in range(3):
        xi = x[i : i + 1].clone().requires_grad_(True)
        out = model.forward_features(xi)[0]
        (grad,) = torch.autograd.grad(out[0, :, 4, 4].sum(), xi)
        torch.testing.assert_close(both[i], grad[0].abs().sum(dim=0))


def test_mass_radius_on_hand_made_maps():
    single = np.zeros((9, 9))
    single[4, 4] = 2.0
    assert mass_radius(single, (4.0, 4.0), 0.5) == 0.0
    assert mass_radius(single, (4.0, 4.0), 1.0) == 0.0
    assert centre_of_mass(single) == (4.0, 4.0)
    # Two pixels at distances 3 and 5 holding 60 % and 40 % of the mass.
    two = np.zeros((11, 11))
    two[5, 8] = 0.6
    two[1, 2] = 0.4  # distance hypot(4, 3) = 5 from (5, 5)
    assert mass_radius(two, (5.0, 5.0), 0.5) == 3.0
    assert mass_radius(two, (5.0, 5.0), 0.6) == 3.0
    assert mass_radius(two, (5.0, 5.0), 0.61) == 5.0
    assert mass_radius(two, (5.0, 5.0), 1.0) == 5.0
    # A uniform disc of radius 10: all the mass within 10, half of it within about 10 / sqrt(2).
    rows, cols = np.indices((41, 41))
    dist = np.hypot(rows - 20, cols - 20)
    disc = (dist <= 10).astype(float)
    assert mass_radius(disc, (20.0, 20.0), 1.0) == 10.0
    half = mass_radius(disc, (20.0, 20.0), 0.5)
    assert disc[dist <= half].sum() >= 0.5 * disc.sum() > disc[dist < half].sum()
    assert half == pytest.approx(10 / math.sqrt(2), abs=0.5)
    assert centre_of_mass(disc) == pytest.approx((20.0, 20.0))


def test_all_zero_map_gives_nan():
    zero = np.zeros((5, 5))
    assert math.isnan(mass_radius(zero, (2.0, 2.0), 0.5))
    assert all(math.isnan(v) for v in centre_of_mass(zero))


# ------------------------------------------------------------------------------------------- faithfulness


def test_perturbation_batches_shapes_and_ends():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 6) + 0.5
    sal = torch.rand(8, 6)
    deletion = perturbation_batches(x, sal, 4, "deletion")
    insertion = perturbation_batches(x, sal, 4, "insertion", blur_sigma=1.5)
    assert deletion.shape == insertion.shape == (5, 3, 8, 6)
    torch.testing.assert_close(deletion[0], x[0], rtol=0, atol=0)
    assert torch.count_nonzero(deletion[-1]) == 0
    torch.testing.assert_close(insertion[-1], x[0], rtol=0, atol=0)
    assert not torch.equal(insertion[0], x[0])
    # The blurred start: a normalised Gaussian keeps the mean roughly and shrinks the spread.
    assert insertion[0].std() < x.std()
    # Step k removes/inserts k/4 of the 48 pixels, the most salient first.
    order = torch.argsort(sal.flatten(), descending=True)
    for k in range(5):
        removed = (deletion[k] == 0).all(dim=0).flatten()
        assert removed.sum() == 12 * k
        assert removed[order[: 12 * k]].all()
        inserted = (insertion[k] == x[0]).all(dim=0).flatten()
        assert inserted[order[: 12 * k]].all()
    with pytest.raises(ValueError):
        perturbation_batches(x, sal, 4, "erase")


def test_perturbation_order_is_stable_on_ties():
    x = torch.ones(1, 3, 2, 4)
    sal = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])  # four tied top pixels: 1, 2, 4, 6
    deletion = perturbation_batches(x, sal, 8, "deletion")
    expected_order = [1, 2, 4, 6, 0, 3, 5, 7]
    for k in range(1, 9):
        removed = torch.nonzero((deletion[k] == 0).all(dim=0).flatten()).flatten().tolist()
        assert sorted(removed) == sorted(expected_order[:k])


class _RegionScore:
    """Score = mean over a fixed square region of a fixed positive colour mix of the input."""

    def __init__(self, h: int, w: int):
        self.region = torch.zeros(h, w, dtype=torch.bool)
        self.region[4:10, 6:12] = True
        self.mix = torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1)
        self.calls: list[int] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls.append(batch.shape[0])
        return (batch * self.mix).sum(dim=1)[:, self.region].mean(dim=1)


def test_evidence_saliency_beats_random_and_inverted():
    h, w = 16, 20
    torch.manual_seed(1)
    model = _RegionScore(h, w)
    # Bright inside the region, dark around: blurring loses the evidence, so insertion can restore it.
    x = 0.1 * torch.rand(1, 3, h, w)
    x[:, :, model.region] += 1.0
    evidence = (x * model.mix).sum(dim=1)[0] * model.region
    random = torch.rand(h, w, generator=torch.Generator().manual_seed(3))
    results = {}
    for name, sal in [("evidence", evidence), ("random", random), ("inverted", -evidence)]:
        deletion, insertion = deletion_insertion(model, x, sal, steps=10, batch=4, blur_sigma=2.0)
        assert deletion.shape == insertion.shape == (11,) and deletion.dtype == np.float64
        assert deletion[0] == pytest.approx(float(model(x)[0])) == insertion[-1]
        results[name] = (auc(deletion), auc(insertion))
    assert model.calls[:3] == [4, 4, 3]  # chunks of `batch`
    assert results["evidence"][0] < results["random"][0] and results["evidence"][0] < results["inverted"][0]
    assert results["evidence"][1] > results["random"][1] and results["evidence"][1] > results["inverted"][1]


def test_auc():
    assert auc(np.full(17, 0.37)) == pytest.approx(0.37)
    assert auc(np.linspace(0.0, 1.0, 9)) == pytest.approx(0.5)
    assert auc(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        auc(np.array([1.0]))


def test_erf_maps_on_a_zoo_model():
    model = tiny_model("resnet50")
    x = torch.randn(2, 3, 64, 64)
    maps = erf_maps(model, x)
    assert list(maps) == list(model.forward_features(x))
    assert all(p.grad is None for p in model.parameters())
    for m in maps.values():
        assert m.shape == (2, 64, 64) and torch.isfinite(m).all() and (m >= 0).all() and (m.sum(dim=(1, 2)) > 0).all()
    # The shallowest level's receptive field is small: its map's peak lies near the unit's input position.
    level = min(maps)
    cy, cx = unit_centre((64, 64), (64 >> level, 64 >> level))
    py, px = np.unravel_index(maps[level][0].numpy().argmax(), (64, 64))
    assert abs(py - cy) <= 2**level and abs(px - cx) <= 2**level
